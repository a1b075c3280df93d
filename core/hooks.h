/* Hooks: named extension points of two kinds. Actions notify every callback; filters pass a
 * value through each callback in turn, and any callback may stop the chain with a response
 * (e.g. refuse an order with a message). Lower priority runs first (default 10), ties in
 * registration order; once start-up ends the table is frozen and each hook's callbacks are
 * sorted once into a flat array, so dispatch is a loop over an array. C and Lua callbacks
 * share one interface: the Lua bridge registers a C trampoline with the Lua function as ud. */
#ifndef HL_HOOKS_H
#define HL_HOOKS_H

#include <jansson.h>

#include "core/error.h"

#define HL_HOOK_DEFAULT_PRIORITY 10

typedef enum hl_hook_kind { HL_HOOK_ACTION = 1, HL_HOOK_FILTER = 2 } hl_hook_kind;

/* What a callback returns. */
enum {
    HL_HOOK_CONTINUE = 0, /* go on with the next callback */
    HL_HOOK_STOP = 1      /* filters only: stop the chain; call->stop says why */
    /* negative: an error (HL_E*); the message goes in call->stop.message */
};

typedef struct hl_hook_stop {
    int status;          /* HTTP status to answer with (e.g. 403, 409, 422), 0 if none */
    char message[512];   /* shown to the user, escaped; for errors, logged */
} hl_hook_stop;

typedef struct hl_hook_call {
    const char *hook;    /* the hook's name */
    /* Filters: the value being transformed; a callback may modify it in place or replace it
     * (json_decref the old one, store a new reference). Actions: the event's data, read-only.
     * May be NULL. */
    json_t *value;
    void *ctx;           /* the hl_request * for hooks run inside a request, else NULL */
    const char *owner;   /* filled by the dispatcher: owner of the callback being run */
    hl_hook_stop stop;
} hl_hook_call;

typedef int (*hl_hook_fn)(void *ud, hl_hook_call *call);

typedef struct hl_hooks hl_hooks;

hl_hooks *hl_hooks_new(void);
/* Frees the table; calls each callback's ud_free(ud). */
void hl_hooks_free(hl_hooks *h);

/* Declares a hook (the core declares its catalogue; plugins may declare their own, named
 * "plugin.event"). Names: 1-64 chars of [a-z0-9_.]. Declaring an existing name with the same
 * kind is a no-op; with another kind it is HL_EINVAL. */
int hl_hooks_declare(hl_hooks *h, const char *name, hl_hook_kind kind, hl_err *err);

/* Adds a callback. The hook must be declared (HL_ENOTFOUND with a message otherwise) and the
 * table not frozen (HL_EINVAL after hl_hooks_freeze). owner names the plugin ("core" for the
 * core) in logs and errors. ud_free (may be NULL) is called on ud when the table is freed,
 * and also right away when adding fails. priority may be any int. */
int hl_hooks_add(hl_hooks *h, const char *name, int priority, hl_hook_fn fn, void *ud,
                 void (*ud_free)(void *), const char *owner, hl_err *err);

/* Removes every callback owner added (calling their ud_free), before the table is frozen: a
 * plugin refused half-way through its loading leaves nothing that points into it. */
void hl_hooks_remove_owner(hl_hooks *h, const char *owner);

/* Ends registration: sorts every hook's callbacks (priority, then registration order). */
void hl_hooks_freeze(hl_hooks *h);
int hl_hooks_frozen(const hl_hooks *h);

/* Looks a hook up once; the id is then used to run it without a string lookup. Returns a
 * non-negative id, or HL_ENOTFOUND. */
int hl_hooks_id(const hl_hooks *h, const char *name);
hl_hook_kind hl_hooks_kind(const hl_hooks *h, int id);
size_t hl_hooks_count(const hl_hooks *h, int id); /* callbacks registered on the hook */

/* Runs an action: every callback, in order; a failing callback is logged (owner, hook,
 * message) and the others still run. Returns the number of callbacks that failed. */
int hl_hooks_run_action(hl_hooks *h, int id, json_t *data, void *ctx);

/* Runs a filter over *value (which callbacks may replace; the caller owns the final
 * reference). Returns HL_HOOK_CONTINUE when the chain ran through, HL_HOOK_STOP when a callback
 * stopped it (stop filled), or a negative error when the hook cannot run (unknown id, not a
 * filter). A callback that fails is logged and skipped (see hl_hooks_set_failure_limit). */
int hl_hooks_run_filter(hl_hooks *h, int id, json_t **value, void *ctx, hl_hook_stop *stop);

/* Calls fn for each declared hook (for docs and `halle hooks`). */
/* Failures: a callback that fails is logged and skipped for that run (filters go on with the
 * value they had). After `limit` failures in a row of callbacks of one owner (a plugin), that
 * owner is suspended in this process: its callbacks are skipped from then on, and on_suspend
 * (may be NULL) is told, so that the worker can record it for the operator. 0 = never. */
void hl_hooks_set_failure_limit(hl_hooks *h, int limit,
                                void (*on_suspend)(void *ud, const char *owner, const char *why), void *ud);
/* Is this owner suspended in this process? */
int hl_hooks_suspended(const hl_hooks *h, const char *owner);

void hl_hooks_each(const hl_hooks *h, void (*fn)(void *ud, const char *name, hl_hook_kind kind, size_t n),
                   void *ud);

#endif
