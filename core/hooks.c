/* Hooks (see hooks.h): a table of named actions and filters. Each hook keeps its callbacks in
 * one flat array already in run order, so that running a hook by id is a plain loop with no
 * lookup, no string compare and no allocation. */
#include "core/hooks.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define NAME_MAX_LEN 64
#define OWNER_MAX_LEN 64
/* Bounds on what a broken plugin looping on declare/add can make the core allocate. */
#define MAX_HOOKS 4096
#define MAX_CALLBACKS 4096

typedef struct callback {
    int priority;
    unsigned long seq; /* registration counter: breaks priority ties */
    hl_hook_fn fn;
    void *ud;
    void (*ud_free)(void *);
    char *owner;
    size_t oi;         /* the owner's index in hl_hooks.owners */
} callback;

/* A plugin (or the core) owning callbacks: its run of consecutive failures, and whether it has
 * been suspended in this process because of them. */
typedef struct owner_state {
    char *name;
    int fails;
    int suspended;
} owner_state;

typedef struct hook {
    char name[NAME_MAX_LEN + 1];
    hl_hook_kind kind;
    callback *cbs; /* sorted by (priority, seq) at all times */
    size_t n, cap;
} hook;

struct hl_hooks {
    hook *hooks;     /* declaration order; the index is the id */
    size_t n, cap;
    int32_t *slots;  /* open addressing on the name: hook index, or -1 when empty */
    size_t nslots;   /* power of two, at least twice n so probes stay short */
    unsigned long seq;
    int frozen;
    int running;     /* dispatch depth: the arrays must not move under a running loop */
    owner_state *owners; /* grows at registration only, so callbacks keep their index */
    size_t nowners;
    int fail_limit;      /* consecutive failures before an owner is suspended (0 = never) */
    void (*on_suspend)(void *ud, const char *owner, const char *why);
    void *suspend_ud;
};

/* Length of a valid hook name, or 0. Reads at most NAME_MAX_LEN + 1 bytes. */
static size_t name_len(const char *s)
{
    size_t n;
    if (!s)
        return 0;
    for (n = 0; s[n]; n++) {
        char c = s[n];
        if (n == NAME_MAX_LEN)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return 0;
    }
    return n;
}

/* Owners show up in logs and in messages shown to users: keep them short and printable. */
static int owner_ok(const char *s)
{
    size_t n;
    if (!s || !*s)
        return 0;
    for (n = 0; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n == OWNER_MAX_LEN || c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

static uint32_t hash(const char *s)
{
    uint32_t x = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 16777619u;
    return x;
}

static int find(const hl_hooks *h, const char *name)
{
    size_t mask = h->nslots - 1, i;
    for (i = hash(name) & mask;; i = (i + 1) & mask) {
        int32_t s = h->slots[i];
        if (s < 0)
            return -1;
        if (!strcmp(h->hooks[s].name, name))
            return s;
    }
}

static void slot_put(int32_t *slots, size_t nslots, const char *name, int32_t id)
{
    size_t mask = nslots - 1, i;
    for (i = hash(name) & mask; slots[i] >= 0; i = (i + 1) & mask)
        ;
    slots[i] = id;
}

static int rehash(hl_hooks *h, size_t nslots)
{
    int32_t *slots = malloc(nslots * sizeof *slots);
    size_t i;
    if (!slots)
        return HL_ENOMEM;
    for (i = 0; i < nslots; i++)
        slots[i] = -1;
    for (i = 0; i < h->n; i++)
        slot_put(slots, nslots, h->hooks[i].name, (int32_t)i);
    free(h->slots);
    h->slots = slots;
    h->nslots = nslots;
    return HL_OK;
}

static hook *get(const hl_hooks *h, int id)
{
    if (!h || id < 0 || (size_t)id >= h->n)
        return NULL;
    return &h->hooks[id];
}

static const char *kind_name(hl_hook_kind kind)
{
    return kind == HL_HOOK_FILTER ? "a filter" : "an action";
}

hl_hooks *hl_hooks_new(void)
{
    hl_hooks *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (rehash(h, 64) != HL_OK) {
        free(h);
        return NULL;
    }
    return h;
}

void hl_hooks_free(hl_hooks *h)
{
    size_t i, j;
    if (!h)
        return;
    for (i = 0; i < h->n; i++) {
        hook *k = &h->hooks[i];
        for (j = 0; j < k->n; j++) {
            if (k->cbs[j].ud_free)
                k->cbs[j].ud_free(k->cbs[j].ud);
            free(k->cbs[j].owner);
        }
        free(k->cbs);
    }
    for (i = 0; i < h->nowners; i++)
        free(h->owners[i].name);
    free(h->owners);
    free(h->hooks);
    free(h->slots);
    free(h);
}

int hl_hooks_declare(hl_hooks *h, const char *name, hl_hook_kind kind, hl_err *err)
{
    int id;
    hook *k;
    if (!h)
        return hl_err_set(err, HL_EINVAL, "hooks: no hook table");
    if (!name_len(name))
        return hl_err_set(err, HL_EINVAL,
                          "invalid hook name \"%.64s\": use 1-64 characters among a-z 0-9 _ .",
                          name ? name : "");
    if (kind != HL_HOOK_ACTION && kind != HL_HOOK_FILTER)
        return hl_err_set(err, HL_EINVAL, "hook %s: kind must be action or filter", name);
    id = find(h, name);
    if (id >= 0) {
        if (h->hooks[id].kind == kind)
            return HL_OK;
        return hl_err_set(err, HL_EINVAL, "hook %s is already declared as %s", name,
                          kind_name(h->hooks[id].kind));
    }
    if (h->frozen)
        return hl_err_set(err, HL_EINVAL, "hooks are frozen: hooks must be declared at start-up");
    if (h->running)
        return hl_err_set(err, HL_EBUSY, "hook %s cannot be declared while a hook is running", name);
    if (h->n >= MAX_HOOKS)
        return hl_err_set(err, HL_ETOOBIG, "hook %s: too many hooks (at most %d)", name, MAX_HOOKS);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 32;
        hook *hooks = realloc(h->hooks, cap * sizeof *hooks);
        if (!hooks)
            return hl_err_set(err, HL_ENOMEM, "hook %s: out of memory", name);
        h->hooks = hooks;
        h->cap = cap;
    }
    if ((h->n + 1) * 2 > h->nslots && rehash(h, h->nslots * 2) != HL_OK)
        return hl_err_set(err, HL_ENOMEM, "hook %s: out of memory", name);
    k = &h->hooks[h->n];
    memset(k, 0, sizeof *k);
    strcpy(k->name, name); /* fits: name_len checked it */
    k->kind = kind;
    slot_put(h->slots, h->nslots, k->name, (int32_t)h->n);
    h->n++;
    return HL_OK;
}

/* Run order: priority first, then registration order, so equal priorities keep the order in
 * which plugins registered (the seq compare is what makes the order stable). */
static int runs_before(const callback *a, const callback *b)
{
    if (a->priority != b->priority)
        return a->priority < b->priority;
    return a->seq < b->seq;
}

static int add_callback(hl_hooks *h, const char *name, int priority, hl_hook_fn fn, void *ud,
                        void (*ud_free)(void *), const char *owner, hl_err *err)
{
    hook *k;
    callback cb;
    size_t lo, hi;
    int id;

    if (!h)
        return hl_err_set(err, HL_EINVAL, "hooks: no hook table");
    if (h->frozen)
        return hl_err_set(err, HL_EINVAL, "hooks are frozen: callbacks must be added at start-up");
    if (!name_len(name))
        return hl_err_set(err, HL_EINVAL,
                          "invalid hook name \"%.64s\": use 1-64 characters among a-z 0-9 _ .",
                          name ? name : "");
    if (!fn)
        return hl_err_set(err, HL_EINVAL, "hook %s: no callback function", name);
    if (!owner_ok(owner))
        return hl_err_set(err, HL_EINVAL,
                          "hook %s: the callback's owner must be 1-64 printable characters", name);
    if (h->running)
        return hl_err_set(err, HL_EBUSY, "hook %s: callbacks cannot be added while a hook is running",
                          name);
    id = find(h, name);
    if (id < 0)
        return hl_err_set(err, HL_ENOTFOUND, "hook %s is not declared", name);
    k = &h->hooks[id];
    if (k->n >= MAX_CALLBACKS)
        return hl_err_set(err, HL_ETOOBIG, "hook %s: too many callbacks (at most %d)", name,
                          MAX_CALLBACKS);
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        callback *cbs = realloc(k->cbs, cap * sizeof *cbs);
        if (!cbs)
            return hl_err_set(err, HL_ENOMEM, "hook %s: out of memory", name);
        k->cbs = cbs;
        k->cap = cap;
    }
    cb.priority = priority;
    cb.seq = h->seq;
    cb.fn = fn;
    cb.ud = ud;
    cb.ud_free = ud_free;
    for (cb.oi = 0; cb.oi < h->nowners && strcmp(h->owners[cb.oi].name, owner); cb.oi++)
        ;
    if (cb.oi == h->nowners) {
        owner_state *o = realloc(h->owners, (h->nowners + 1) * sizeof *o);
        if (!o)
            return hl_err_set(err, HL_ENOMEM, "hook %s: out of memory", name);
        h->owners = o;
        memset(&o[h->nowners], 0, sizeof *o);
        if (!(o[h->nowners].name = strdup(owner)))
            return hl_err_set(err, HL_ENOMEM, "hook %s: out of memory", name);
        h->nowners++;
    }
    cb.owner = strdup(owner);
    if (!cb.owner)
        return hl_err_set(err, HL_ENOMEM, "hook %s: out of memory", name);
    h->seq++;

    /* Binary search for the first callback that must run after the new one, then insert:
     * the array stays sorted so a hook can run before freeze, and freeze has nothing to do. */
    lo = 0;
    hi = k->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (runs_before(&k->cbs[mid], &cb))
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(&k->cbs[lo + 1], &k->cbs[lo], (k->n - lo) * sizeof *k->cbs);
    k->cbs[lo] = cb;
    k->n++;
    return HL_OK;
}

int hl_hooks_add(hl_hooks *h, const char *name, int priority, hl_hook_fn fn, void *ud,
                 void (*ud_free)(void *), const char *owner, hl_err *err)
{
    int rc = add_callback(h, name, priority, fn, ud, ud_free, owner, err);
    if (rc != HL_OK && ud_free)
        ud_free(ud); /* the table took ownership of ud, even on failure */
    return rc;
}

void hl_hooks_remove_owner(hl_hooks *h, const char *owner)
{
    if (!h || !owner || h->frozen || h->running)
        return;
    for (size_t i = 0; i < h->n; i++) {
        hook *k = &h->hooks[i];
        size_t kept = 0;
        for (size_t j = 0; j < k->n; j++) {
            callback *c = &k->cbs[j];
            if (strcmp(c->owner, owner) != 0) {
                k->cbs[kept++] = *c;
                continue;
            }
            if (c->ud_free)
                c->ud_free(c->ud);
            free(c->owner);
        }
        k->n = kept; /* the order of the others is kept, so they stay sorted */
    }
}

void hl_hooks_freeze(hl_hooks *h)
{
    size_t i;
    if (!h)
        return;
    /* The arrays are kept sorted on insert; freezing only trims them to their final size. */
    for (i = 0; i < h->n; i++) {
        hook *k = &h->hooks[i];
        if (k->n && k->n < k->cap) {
            callback *cbs = realloc(k->cbs, k->n * sizeof *cbs);
            if (cbs) {
                k->cbs = cbs;
                k->cap = k->n;
            }
        }
    }
    h->frozen = 1;
}

int hl_hooks_frozen(const hl_hooks *h) { return h ? h->frozen : 0; }

int hl_hooks_id(const hl_hooks *h, const char *name)
{
    int id;
    if (!h || !name_len(name))
        return HL_ENOTFOUND;
    id = find(h, name);
    return id < 0 ? HL_ENOTFOUND : id;
}

hl_hook_kind hl_hooks_kind(const hl_hooks *h, int id)
{
    hook *k = get(h, id);
    return k ? k->kind : (hl_hook_kind)0;
}

size_t hl_hooks_count(const hl_hooks *h, int id)
{
    hook *k = get(h, id);
    return k ? k->n : 0;
}

void hl_hooks_set_failure_limit(hl_hooks *h, int limit,
                                void (*on_suspend)(void *ud, const char *owner, const char *why), void *ud)
{
    if (!h)
        return;
    h->fail_limit = limit > 0 ? limit : 0;
    h->on_suspend = on_suspend;
    h->suspend_ud = ud;
}

int hl_hooks_suspended(const hl_hooks *h, const char *owner)
{
    for (size_t i = 0; h && owner && i < h->nowners; i++)
        if (!strcmp(h->owners[i].name, owner))
            return h->owners[i].suspended;
    return 0;
}

/* A failed callback: logged; after fail_limit failures in a row its owner is suspended. */
static void failed_callback(hl_hooks *h, const hook *k, const callback *cb, const char *why)
{
    owner_state *o = &h->owners[cb->oi];
    hl_log(HL_LOG_ERROR, "hook %s: callback of %s failed (skipped): %s", k->name, cb->owner, why);
    if (o->suspended || !h->fail_limit || ++o->fails < h->fail_limit)
        return;
    o->suspended = 1;
    hl_log(HL_LOG_ERROR, "plugin %s suspended in this process after %d failures in a row (last: hook %s: %s)",
           cb->owner, o->fails, k->name, why);
    if (h->on_suspend) {
        char reason[600];
        snprintf(reason, sizeof reason, "%d failures in a row; last: hook %s: %s", o->fails, k->name, why);
        h->on_suspend(h->suspend_ud, cb->owner, reason);
    }
}

int hl_hooks_run_action(hl_hooks *h, int id, json_t *data, void *ctx)
{
    hook *k = get(h, id);
    int failed = 0;
    size_t i;

    if (!h) {
        hl_log(HL_LOG_ERROR, "hooks: action %d run without a hook table", id);
        return HL_EINVAL;
    }
    if (!k) {
        hl_log(HL_LOG_ERROR, "hooks: no hook with id %d", id);
        return HL_ENOTFOUND;
    }
    if (k->kind != HL_HOOK_ACTION) {
        hl_log(HL_LOG_ERROR, "hook %s is a filter, not an action", k->name);
        return HL_EINVAL;
    }
    h->running++;
    for (i = 0; i < k->n; i++) {
        callback *cb = &k->cbs[i];
        hl_hook_call call;
        int rc;
        if (h->owners[cb->oi].suspended)
            continue;
        call.hook = k->name;
        call.value = data; /* each callback gets the event as it was, whatever the last did */
        call.ctx = ctx;
        call.owner = cb->owner;
        call.stop.status = 0;
        call.stop.message[0] = '\0';
        rc = cb->fn(cb->ud, &call);
        /* HL_HOOK_STOP (or any positive code) counts as success: an action tells plugins that
         * something has already happened, so there is nothing left to refuse, and one plugin
         * must not keep the others from hearing about it. */
        if (rc >= 0) {
            h->owners[cb->oi].fails = 0;
            continue;
        }
        call.stop.message[sizeof call.stop.message - 1] = '\0';
        failed++;
        char why[64];
        snprintf(why, sizeof why, "error %d", rc);
        failed_callback(h, k, cb, call.stop.message[0] ? call.stop.message : why);
    }
    h->running--;
    return failed;
}

static int stop_set(hl_hook_stop *stop, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills stop for a failure of the dispatch itself (not of a callback); returns code. */
static int stop_set(hl_hook_stop *stop, int code, const char *fmt, ...)
{
    va_list ap;
    stop->status = 500;
    va_start(ap, fmt);
    vsnprintf(stop->message, sizeof stop->message, fmt, ap);
    va_end(ap);
    return code;
}

static int status_ok(int status) { return status >= 100 && status <= 599; }

int hl_hooks_run_filter(hl_hooks *h, int id, json_t **value, void *ctx, hl_hook_stop *stop)
{
    hook *k = get(h, id);
    hl_hook_stop scratch;
    hl_hook_call call;
    int rc = HL_HOOK_CONTINUE;
    size_t i;

    if (!stop)
        stop = &scratch;
    stop->status = 0;
    stop->message[0] = '\0';
    if (!h)
        return stop_set(stop, HL_EINVAL, "hooks: filter %d run without a hook table", id);
    if (!k)
        return stop_set(stop, HL_ENOTFOUND, "hooks: no hook with id %d", id);
    if (k->kind != HL_HOOK_FILTER)
        return stop_set(stop, HL_EINVAL, "hook %s is an action, not a filter", k->name);

    call.hook = k->name;
    call.value = value ? *value : NULL;
    call.ctx = ctx;
    call.owner = NULL;
    call.stop.status = 0;
    call.stop.message[0] = '\0';
    h->running++;
    for (i = 0; i < k->n; i++) {
        callback *cb = &k->cbs[i];
        if (h->owners[cb->oi].suspended)
            continue;
        call.owner = cb->owner;
        call.stop.status = 0;
        call.stop.message[0] = '\0';
        rc = cb->fn(cb->ud, &call);
        if (value)
            *value = call.value;
        call.stop.message[sizeof call.stop.message - 1] = '\0'; /* in case a callback filled it */
        if (rc == HL_HOOK_CONTINUE) {
            h->owners[cb->oi].fails = 0;
            continue;
        }
        if (rc == HL_HOOK_STOP) {
            h->owners[cb->oi].fails = 0;
            *stop = call.stop;
            if (stop->status && !status_ok(stop->status))
                stop->status = 500;
            break;
        }
        /* A callback that fails (an error, a limit hit, an unknown code) is skipped for this
         * run: the chain goes on with the value it had, so one broken plugin cannot take
         * every page down with it. */
        failed_callback(h, k, cb, rc > 0 ? "callback returned an unknown code"
                                  : call.stop.message[0] ? call.stop.message : "failed");
        rc = HL_HOOK_CONTINUE;
    }
    h->running--;
    if (!value)
        json_decref(call.value); /* nobody to hand a replaced value to */
    return rc;
}

void hl_hooks_each(const hl_hooks *h, void (*fn)(void *ud, const char *name, hl_hook_kind kind, size_t n),
                   void *ud)
{
    size_t i;
    if (!h || !fn)
        return;
    for (i = 0; i < h->n; i++) /* h->hooks re-read each time: fn may declare a hook */
        fn(ud, h->hooks[i].name, h->hooks[i].kind, h->hooks[i].n);
}
