/* halle plugin SDK: the one header a C plugin includes. A plugin exports one descriptor,
 * `halle_plugin_descriptor`, and reaches the core only through the function table handed to
 * its init function, so a plugin never links against core symbols and keeps working with any
 * newer halle of the same ABI. Rules (as SQLite and nginx keep theirs):
 *   - HALLE_PLUGIN_ABI changes only on a breaking change; a plugin built for another ABI is
 *     refused with a message.
 *   - functions are only ever appended to struct halle_api, and HALLE_API_VERSION grows with
 *     each addition; a plugin states the oldest API version it needs (min_api_version).
 * Hook values are jansson JSON values (https://jansson.readthedocs.io); build with
 * `pkg-config --cflags --libs halle-plugin jansson`. */
#ifndef HALLE_PLUGIN_H
#define HALLE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HALLE_PLUGIN_ABI 1
#define HALLE_API_VERSION 9

typedef struct json_t json_t;              /* jansson */
typedef struct halle_host halle_host;      /* this plugin, as the core knows it */
typedef struct hl_request halle_request;   /* one HTTP exchange */
typedef struct hl_hook_call halle_hook_call;
typedef struct hl_stmt halle_stmt;

enum { HALLE_LOG_DEBUG = 0, HALLE_LOG_INFO = 1, HALLE_LOG_WARN = 2, HALLE_LOG_ERROR = 3 };

enum {
    HALLE_GET = 1u << 0, HALLE_HEAD = 1u << 1, HALLE_POST = 1u << 2, HALLE_PUT = 1u << 3,
    HALLE_DELETE = 1u << 4, HALLE_PATCH = 1u << 5, HALLE_OPTIONS = 1u << 6
};

/* Return codes: 0 is success; negative values are errors. */
enum { HALLE_OK = 0, HALLE_ERROR = -1 };
/* Errors of the storage functions besides HALLE_ERROR (API version 9): bad input or another
 * constraint (NOT NULL, CHECK), the database stayed locked, a UNIQUE/PRIMARY KEY violation (the
 * row exists), a FOREIGN KEY violation, and an idempotency key reused for another request. */
enum { HALLE_EINVAL = -2, HALLE_EBUSY = -7, HALLE_EUNIQUE = -8, HALLE_EFOREIGN = -9, HALLE_ECONFLICT = -10 };
/* What a hook callback returns. */
enum { HALLE_HOOK_CONTINUE = 0, HALLE_HOOK_STOP = 1 };
enum { HALLE_HOOK_ACTION = 1, HALLE_HOOK_FILTER = 2 };
/* Permissions (halle_api.can): actions, and the core's own objects. A plugin's objects are
 * capabilities it registers (halle_api.capability) and passes to can() by id or name. */
enum { HALLE_ACT_VIEW = 1, HALLE_ACT_EDIT, HALLE_ACT_CREATE, HALLE_ACT_DELETE };
enum { HALLE_OBJ_OPERATOR_PAGES = 1, HALLE_OBJ_USER_ACCOUNT = 2, HALLE_OBJ_USER_LOCKS = 9 };
/* Deprecated (ABI 1 only, removed with the next ABI): the market's objects, which the core no
 * longer knows. can() answers them with the capability the market registers under the name in
 * the comment, and refuses them when it is not loaded. Use the names. */
enum {
    HALLE_OBJ_GROUP_SETTINGS = 3,   /* "market.group_settings" */
    HALLE_OBJ_GROUP_MEMBERS = 4,    /* "market.group_members" */
    HALLE_OBJ_GROUP_ORDERS = 5,     /* "market.group_orders" */
    HALLE_OBJ_PRODUCER_ACCOUNT = 6, /* "market.producer_account" */
    HALLE_OBJ_CATALOG = 7,          /* "market.catalog" */
    HALLE_OBJ_PRODUCER_ORDERS = 8   /* "market.producer_orders" */
};
/* Capabilities (halle_api.capability): ids given by the core start here. */
#define HALLE_CAP_FIRST 1000
/* Which users a rule grants actions to. HALLE_SCOPE_ANY: whoever holds the role (anywhere);
 * HALLE_SCOPE_GROUP: whoever holds the role in the group whose id is the object passed to
 * can(); HALLE_SCOPE_OWNER: whoever holds the role and owns the object (the capability's owns
 * callback decides; without one, the object is a user id and its user owns it). */
enum { HALLE_SCOPE_ANY = 0, HALLE_SCOPE_GROUP = 1, HALLE_SCOPE_OWNER = 2 };
/* The actions of a rule: HALLE_CAN(HALLE_ACT_VIEW) | HALLE_CAN(HALLE_ACT_EDIT) ... */
#define HALLE_CAN(action) (1u << (action))
#define HALLE_CAN_ALL (HALLE_CAN(HALLE_ACT_VIEW) | HALLE_CAN(HALLE_ACT_EDIT) | HALLE_CAN(HALLE_ACT_CREATE) | \
                       HALLE_CAN(HALLE_ACT_DELETE))
typedef struct halle_cap_rule {
    unsigned role;      /* one HALLE_ROLE_*, or 0 for any logged-in user */
    unsigned scope;     /* HALLE_SCOPE_* */
    unsigned actions;   /* HALLE_CAN(...) bits */
} halle_cap_rule;
/* Roles (halle_api.user_add_role). */
enum { HALLE_ROLE_CLIENT = 1, HALLE_ROLE_PRODUCER = 2, HALLE_ROLE_COORDINATOR = 4, HALLE_ROLE_OPERATOR = 8 };
/* Route flags (halle_api.route_flags). HALLE_ROUTE_TOKEN_AUTH: the route authenticates with a
 * token in a header (Authorization), never with cookies; it gets no session user and needs no
 * CSRF token. Declaring it is the only way a route escapes the CSRF check. */
enum { HALLE_ROUTE_TOKEN_AUTH = 1u };
/* Database step results. */
enum { HALLE_DB_DONE = 0, HALLE_DB_ROW = 1 };

typedef int (*halle_handler)(halle_request *req, void *ud);
typedef int (*halle_hook_fn)(void *ud, halle_hook_call *call);

typedef struct halle_api {
    unsigned api_version;   /* HALLE_API_VERSION of the running core */
    size_t struct_size;     /* sizeof(struct halle_api) in the running core */

    /* -- API version 1 -- */
    void (*log)(halle_host *h, int level, const char *fmt, ...);
    /* Adds a route (PCRE2 pattern matched against the whole path, named captures become
     * route parameters). Routes of plugins are tried after the core's. */
    int (*route)(halle_host *h, unsigned methods, const char *pattern, halle_handler fn, void *ud);
    /* Adds a hook callback (lower priority first, default 10). */
    int (*hook)(halle_host *h, const char *hook, int priority, halle_hook_fn fn, void *ud);
    /* Declares a hook of the plugin's own, named "PLUGIN.event". */
    int (*declare_hook)(halle_host *h, const char *name, int kind);
    /* A setting of this plugin (from the operator's form), or its default; NULL if unset. */
    const char *(*setting)(halle_host *h, const char *name);
    /* The message of the last failed call of this plugin. */
    const char *(*last_error)(halle_host *h);

    /* Hook calls */
    json_t *(*call_value)(halle_hook_call *c);
    void (*call_set_value)(halle_hook_call *c, json_t *value);   /* takes the reference */
    halle_request *(*call_request)(halle_hook_call *c);          /* NULL outside a request */
    int (*call_stop)(halle_hook_call *c, int status, const char *message); /* returns HALLE_HOOK_STOP */

    /* Requests */
    const char *(*req_method)(halle_request *r);
    const char *(*req_path)(halle_request *r);
    const char *(*req_param)(halle_request *r, const char *name);       /* query, then form */
    const char *(*req_route_param)(halle_request *r, const char *name);
    const char *(*req_header)(halle_request *r, const char *name);
    const char *(*req_cookie)(halle_request *r, const char *name);
    const void *(*req_body)(halle_request *r, size_t *len);

    /* Responses */
    void (*resp_status)(halle_request *r, int status);
    int (*resp_header)(halle_request *r, const char *name, const char *value);
    int (*resp_write)(halle_request *r, const void *data, size_t len);
    int (*resp_html)(halle_request *r, const char *text);              /* escaped */
    int (*resp_json)(halle_request *r, int status, json_t *value);
    int (*resp_error)(halle_request *r, int status, const char *message);

    /* Storage: the instance's main database, bound parameters only. types: 'i' int,
     * 'I' int64_t, 'd' double, 's' text, 't' text+length, 'b' blob+length, 'n' NULL. */
    int (*db_run)(halle_host *h, const char *sql, const char *types, ...);
    halle_stmt *(*db_query)(halle_host *h, const char *sql, const char *types, ...);
    int (*db_step)(halle_stmt *st);
    int (*db_col_count)(halle_stmt *st);
    int64_t (*db_col_int)(halle_stmt *st, int col);
    double (*db_col_double)(halle_stmt *st, int col);
    const char *(*db_col_text)(halle_stmt *st, int col);
    void (*db_done)(halle_stmt *st);

    /* -- API version 2 -- */
    /* The logged-in user's id, 0 for a visitor. */
    int64_t (*req_user)(halle_request *r);
    /* The core's one permission check: may the request's user do action on object (a core
     * HALLE_OBJ_* or a capability id), owned by owner (a user, group or plugin object id)? 1 or 0. */
    int (*can)(halle_request *r, int action, int object, int64_t owner);
    /* Queues a plain-text mail (sent by the core's mail queue). Returns > 0 or an error. */
    int64_t (*mail)(halle_host *h, const char *to, const char *subject, const char *body);

    /* -- API version 3 -- */
    /* The token a form must carry in its _csrf field. */
    const char *(*req_csrf)(halle_request *r);
    int (*resp_redirect)(halle_request *r, const char *location);  /* 303 See Other */
    /* Renders the theme template `name` (looked up along the theme chain: the group's theme
     * if set, the site theme, parents, default; e.g. "market/group" is
     * THEME/templates/market/group.mustache) with ctx merged over the page context (site,
     * user, csrf, lang, page.url). Does not take the reference. */
    int (*render)(halle_request *r, const char *name, json_t *ctx);
    /* The page belongs to a local group with this theme: it comes first in the chain. */
    void (*set_group_theme)(halle_request *r, const char *theme);
    /* An uploaded file of a multipart form: its bytes, or NULL. */
    const void *(*req_file)(halle_request *r, const char *field, size_t *len, const char **filename,
                            const char **content_type);
    const char *(*req_user_name)(halle_request *r);
    int (*user_add_role)(halle_host *h, int64_t user_id, unsigned role, int64_t group_id);
    /* Runs fn in a transaction: committed when it returns HALLE_OK, rolled back otherwise. */
    int (*db_tx)(halle_host *h, int (*fn)(halle_host *h, void *ud), void *ud);
    int64_t (*db_last_id)(halle_host *h);
    /* Adds `halle PLUGIN NAME [ARGS]` to the command line (e.g. `halle market import FILE`).
     * fn runs in the halle process, with the instance's database and no request. Returns its
     * exit status (0 success, 1 failure with a message on stderr, 2 usage). */
    int (*command)(halle_host *h, const char *name, const char *usage, int (*fn)(halle_host *h, int argc, char **argv));

    /* -- API version 4 -- */
    /* Markdown written by users (a group's intro, a producer's description) as safe HTML: raw
     * HTML dropped, links only http, https, mailto or relative. Returns a string to release
     * with api->free, or NULL. */
    char *(*markdown)(const char *text);
    void (*free)(void *p);

    /* -- API version 5 -- */
    /* Group-level plugins (manifest "group_level": true): a local group turns them on for its
     * own pages. scope is "group:ID". The list is [{name, description, enabled}] (new reference,
     * json_decref it); scope_set checks nothing about the caller: check can() first. */
    json_t *(*scope_plugins)(halle_host *h, const char *scope);
    int (*scope_set)(halle_host *h, const char *plugin, const char *scope, int enabled);
    int (*scope_enabled)(halle_host *h, const char *plugin, const char *scope);

    /* -- API version 6 -- */
    /* Runs a hook (the core's or a plugin's, declared with declare_hook) with the callbacks of
     * every plugin. run_filter may replace *value; it returns HALLE_HOOK_CONTINUE,
     * HALLE_HOOK_STOP (a callback refused: last_error holds its message) or an error. r may be
     * NULL outside a request. */
    int (*run_filter)(halle_host *h, halle_request *r, const char *hook, json_t **value);
    int (*run_action)(halle_host *h, halle_request *r, const char *hook, json_t *data);
    /* The installed themes: [{name, description, parent}]. New reference. */
    json_t *(*themes)(halle_host *h);
    int (*user_remove_role)(halle_host *h, int64_t user_id, unsigned role, int64_t group_id);
    /* The public address of the site (base_url), without a trailing slash. */
    const char *(*site_url)(halle_host *h);

    /* -- API version 7 -- */
    /* The translation of a French source string into the page's language (the instance's po/
     * catalogs); the msgid itself when there is none. */
    const char *(*tr)(halle_request *r, const char *msgid);
    /* The page's language ("fr", "en"). */
    const char *(*req_lang)(halle_request *r);
    /* Blob columns (images). */
    const void *(*db_col_blob)(halle_stmt *st, int col);
    size_t (*db_col_bytes)(halle_stmt *st, int col);

    /* -- API version 8 -- */
    /* route with HALLE_ROUTE_* flags. */
    int (*route_flags)(halle_host *h, unsigned methods, const char *pattern, unsigned flags, halle_handler fn,
                       void *ud);
    /* Registers a job, run by the jobs process (not by workers) under the name PLUGIN.name.
     * schedule: "every N" (seconds), "daily HH:MM" (UTC) or "once" (runs what job_at queues,
     * with its payload; recurring jobs get a NULL payload). fn returns HALLE_OK, or an error
     * after logging why with api->log(h, HALLE_LOG_ERROR, ...): that message is recorded. A run is claimed with
     * a lease, so it never runs twice at once, even across machines; a run that died is
     * retried after its lease; queued runs that fail are retried with backoff, then kept as
     * dead (halle jobs list). Call from init. */
    int (*job)(halle_host *h, const char *name, const char *schedule,
               int (*fn)(halle_host *h, const char *payload, void *ud), void *ud);
    /* Queues one run of this plugin's once-job name at when (epoch seconds, 0 = now) with
     * payload (text, may be NULL). Another plugin's jobs cannot be queued (use a hook).
     * Returns the queue id (> 0) or an error. */
    int64_t (*job_at)(halle_host *h, const char *name, int64_t when, const char *payload);
    /* The time, in epoch seconds, that dates must use: the system clock, or HALLE_NOW in tests. */
    int64_t (*now)(halle_host *h);
    /* Fixed-window rate limit shared by every worker and machine (in the database): counts a
     * hit for key (the plugin's own namespace) and returns 1 if at most max hits fell in the
     * current window of window_seconds, 0 if over (then *retry_after, may be NULL, gets the
     * seconds until the window ends: send it as Retry-After with a 429), or an error. */
    int (*rate_allow)(halle_host *h, const char *key, int window_seconds, int max, int *retry_after);
    /* -- API version 9: formatting and text (the same in Lua: docs/plugins.md) -- */
    /* In the language lang ("fr", "en"...; NULL is French): prices in integer cents with an
     * ISO 4217 currency (NULL is EUR): "12,50 €" / "€12.50"; numbers with 0-9 decimals:
     * "1 234,5" / "1,234.5"; dates of epoch seconds (UTC): "mercredi 25 novembre 2026" /
     * "Wednesday, 25 November 2026". HALLE_OK, or an error with buf "" (too small, bad value). */
    int (*format_price)(const char *lang, int64_t cents, const char *currency, char *buf, size_t len);
    int (*format_number)(const char *lang, double v, int decimals, char *buf, size_t len);
    int (*format_date)(const char *lang, int64_t epoch, char *buf, size_t len);
    /* The number of characters of s if it is valid UTF-8 of at most max_bytes bytes without
     * control characters (newlines and tabs allowed when multiline), else -1. */
    long (*text_valid)(const char *s, size_t max_bytes, int multiline);
    /* Search and sort key: lower case, accents removed, blanks squeezed ("  Épeautre  Bio" ->
     * "epeautre bio"). Store it in a NAME_folded column on write, search that column. Returns
     * the length written to out (cut on a character boundary). */
    size_t (*fold)(const char *in, char *out, size_t len);
    /* The pattern for `folded_column LIKE ? ESCAPE '\'`: q folded, '%' '_' '\' escaped,
     * wrapped in '%'; "" when q is blank. HALLE_OK, or an error when out is too small. */
    int (*like_pattern)(const char *q, char *out, size_t len);
    /* Page links for templates: {page, pages, total, limit, offset, prev, next, prev_url,
     * next_url, links: [{page, url, current}]} (page clamped; use its offset in the query).
     * base is the page's path and query; "page=N" is added. New reference, NULL on error. */
    json_t *(*paginate)(long page, long limit, long long total, const char *base);
    /* The rows of a query as a JSON array of objects named by the columns (integers, reals,
     * text, null; blobs are left out). Steps st to its end; call db_done after. New
     * reference, NULL on error (a failed step, out of memory). */
    json_t *(*rows_json)(halle_stmt *st);
    /* Users, without touching the core's tables (version 9 too). A live user as {id, name,
     * email, roles: ["client", "coordinator", ...], coordinates: [group ids]} (new reference),
     * or NULL when there is none (or it was deleted). "coordinates" is the only record of who
     * runs a group: keep no copy. Show the address only on pages the core lets the viewer see
     * (api->can); a Lua plugin gets it only if its manifest may read hl_users. */
    json_t *(*user_get)(halle_host *h, int64_t id);
    /* Ids of users whose name or address (Lua: as for user_get) contains q (case-insensitive),
     * at most max (<= 1000):
     * a JSON array of integers (new reference), NULL on error. */
    json_t *(*user_search)(halle_host *h, const char *q, int max);
    /* For seeding (demo data): a verified account with no usable password (its owner sets one
     * with "forgot password"); returns its id, or the id of the account that already has this
     * address, or an error. Not offered to Lua plugins. */
    int64_t (*user_create)(halle_host *h, const char *email, const char *name);

    /* -- API version 9: the storage contract for money -- */
    /* Inserts with "... RETURNING id" and gives the new row's id (portable, unlike db_last_id). */
    int (*db_insert)(halle_host *h, int64_t *id, const char *sql, const char *types, ...);
    int (*db_col_is_null)(halle_stmt *st, int col);
    /* The message of the last failed statement (db_step gives only the code). */
    const char *(*db_errmsg)(halle_host *h);
    /* db_tx whose commit is on disk when it returns (synchronous=FULL): for what carries money.
     * Outermost, or inside another durable transaction. */
    int (*db_tx_durable)(halle_host *h, int (*fn)(halle_host *h, void *ud), void *ud);
    /* Idempotency key: fn does the work once for (scope, key) and sets *status (> 0) and *body
     * (malloc'd text or NULL, e.g. JSON); a repeat of the key gets them back without calling
     * fn. Scopes are the plugin's own (stored as PLUGIN:scope). Returns 0 (done now), 1
     * (replayed) or an error (HALLE_ECONFLICT: the key was used with another fingerprint).
     * Release *body with api->free. */
    int (*db_idempotent)(halle_host *h, const char *scope, const char *key, const char *fingerprint,
                         int (*fn)(halle_host *h, void *ud, int *status, char **body), void *ud,
                         int *status, char **body);
    /* Gapless counter (invoice numbers): the next number of the plugin's scope, inside the
     * caller's transaction (db_tx / db_tx_durable), given back if that transaction fails. */
    int (*db_counter_next)(halle_host *h, const char *scope, int64_t *n);

    /* -- API version 9: capabilities -- */
    /* Registers one of the plugin's objects as a capability named "PLUGIN.word" (call from
     * init): rules say which roles may do what (a user gets the union of the rules that match;
     * visitors get nothing); owns, may be NULL, answers whether user_id owns object for
     * HALLE_SCOPE_OWNER rules (a producer owns its catalogs: only the plugin knows). Returns the
     * capability's id (>= HALLE_CAP_FIRST), to pass to can() as its object, or an error. */
    int (*capability)(halle_host *h, const char *name, const halle_cap_rule *rules, size_t nrules,
                      int (*owns)(halle_host *h, int64_t user_id, int64_t object, void *ud), void *ud);
    /* can() with the capability's name ("market.catalog") or a core object's ("operator_pages",
     * "user_account", "user_locks"); unknown names are refused (0). */
    int (*can_name)(halle_request *r, int action, const char *capability, int64_t object);
} halle_api;

typedef struct halle_plugin {
    unsigned abi_version;      /* HALLE_PLUGIN_ABI */
    size_t struct_size;        /* sizeof(struct halle_plugin) */
    unsigned min_api_version;  /* oldest API version the plugin works with */
    const char *name;          /* [a-z][a-z0-9]*, unique on an instance; its tables are NAME_* */
    const char *version;
    const char *description;
    const char *requires;      /* comma-separated plugin names, or NULL */
    /* Called once per worker process at start-up; registers routes and hooks. Returns
     * HALLE_OK, or an error (the plugin is then refused and the server starts without it). */
    int (*init)(halle_host *h, const halle_api *api);
    void (*fini)(halle_host *h);  /* may be NULL */
    /* Since API 9 (an older plugin's smaller struct_size tells the core it is absent): the
     * plugin's manifest as JSON text, what a Lua plugin's plugin.json says beyond the fields
     * above: "settings" (the schema: operators set them with `halle plugin set` or the admin
     * page, the plugin reads them with api->setting), "group_level" (true: local groups turn it
     * on for their pages), "privacy" ([{purpose, legal_basis, data, recipients, retention}]) and
     * "cookies" ([{name, purpose, duration_days}]). NULL for none. Checked as plugin.json is: a
     * bad manifest refuses the plugin, naming the problem. */
    const char *manifest_json;
} halle_plugin;

/* Fills the fixed fields of the descriptor: HALLE_PLUGIN_DESCRIPTOR(name, version, ...). */
#define HALLE_PLUGIN_DESCRIPTOR                                                              \
    __attribute__((visibility("default"))) const halle_plugin halle_plugin_descriptor

#define HALLE_PLUGIN_HEADER HALLE_PLUGIN_ABI, sizeof(halle_plugin)

#ifdef __cplusplus
}
#endif
#endif
