/* The plugin host (see host.h): the halle_api table, whose functions translate the public SDK
 * types to the core's, and loading plugins into a worker. */
#include "core/host.h"

#include <dlfcn.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/accounts.h"
#include "core/caps.h"
#include "core/clock.h"
#include "core/services.h"
#include "core/jobs.h"
#include "core/mail.h"
#include "core/markdown.h"
#include "core/page.h"
#include "core/theme.h"
#include "core/log.h"
#include "core/request.h"
#include "core/router.h"
#include "core/text.h"
#include "core/i18n.h"
#include "core/webauth.h"

static void set_error(halle_host *h, const char *msg)
{
    /* Longer messages are cut: last_error is a short summary for the caller. */
    snprintf(h->last_error, sizeof h->last_error, "%.*s", (int)sizeof h->last_error - 1, msg ? msg : "");
}

static void api_log(halle_host *h, int level, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    hl_log(level, "plugin %s: %s", h->name, msg);
    /* An error logged by a job is what its failed run records (halle jobs list). */
    if (level >= HALLE_LOG_ERROR)
        set_error(h, msg);
}

static int api_route_flags(halle_host *h, unsigned methods, const char *pattern, unsigned flags, halle_handler fn,
                           void *ud)
{
    hl_err err;
    hl_err_clear(&err);
    char name[96];
    snprintf(name, sizeof name, "%s.route", h->name);
    unsigned core_flags = 0;
    if (flags & HALLE_ROUTE_TOKEN_AUTH)
        core_flags |= HL_ROUTE_TOKEN_AUTH;
    if (flags & ~(unsigned)HALLE_ROUTE_TOKEN_AUTH)
        core_flags |= 0x80000000u; /* refused by the router, with a message */
    int rc = hl_worker_route_flags(h->worker, methods, pattern, name, core_flags, (hl_handler)fn, ud, &err);
    set_error(h, err.msg);
    return rc;
}

static int api_rate_allow(halle_host *h, const char *key, int window_seconds, int max, int *retry_after)
{
    hl_err err;
    hl_err_clear(&err);
    char full[200];
    if (!key || snprintf(full, sizeof full, "plugin:%s:%s", h->name, key) >= (int)sizeof full) {
        set_error(h, "rate_allow: key missing or longer than 150 bytes");
        return HALLE_ERROR;
    }
    int rc = hl_rate_check(hl_worker_db(h->worker), full, window_seconds, max, retry_after, &err);
    if (rc < 0) {
        set_error(h, err.msg);
        return HALLE_ERROR;
    }
    return rc;
}

/* A C plugin is the operator's own code and sees addresses; a Lua plugin only if its SQL could
 * read them (its manifest asks for hl_users and the core grants it): the user API gives it no
 * more than its policy does. */
static int sees_email(const halle_host *h)
{
    return h->kind != HL_PLUGIN_LUA || hl_db_policy_reads(&h->policy, "hl_users", "email");
}

static json_t *api_user_get(halle_host *h, int64_t id)
{
    hl_user u;
    hl_err err;
    hl_err_clear(&err);
    if (hl_user_get(hl_worker_db(h->worker), id, &u, &err) != HL_OK || u.deleted) {
        set_error(h, err.msg[0] ? err.msg : "no such user");
        return NULL;
    }
    json_t *roles = json_array(), *groups = json_array();
    for (unsigned bit = 1; bit && roles; bit <<= 1)
        if ((u.roles & bit) && hl_role_name(bit))
            json_array_append_new(roles, json_string(hl_role_name(bit)));
    for (size_t i = 0; i < u.nscopes && groups; i++)
        if (u.scopes[i].role == HL_ROLE_COORDINATOR)
            json_array_append_new(groups, json_integer((json_int_t)u.scopes[i].group));
    /* "coordinates" is the one record of who runs a group: plugins keep no copy of it. */
    json_t *out = json_pack("{s:I, s:s, s:o, s:o}", "id", (json_int_t)u.id, "name", u.name, "roles", roles,
                            "coordinates", groups);
    if (out && sees_email(h))
        json_object_set_new(out, "email", json_string(u.email));
    if (!out)
        set_error(h, "out of memory");
    return out;
}

static json_t *api_user_search(halle_host *h, const char *q, int max)
{
    if (!q || max <= 0 || max > 1000) {
        set_error(h, "user_search: q missing or max not in 1..1000");
        return NULL;
    }
    int64_t *ids = malloc((size_t)max * sizeof *ids);
    hl_err err;
    hl_err_clear(&err);
    int n = ids ? hl_user_search(hl_worker_db(h->worker), q, sees_email(h), ids, max, &err) : HL_ENOMEM;
    json_t *out = n >= 0 ? json_array() : NULL;
    for (int i = 0; out && i < n; i++)
        json_array_append_new(out, json_integer((json_int_t)ids[i]));
    free(ids);
    if (!out)
        set_error(h, err.msg[0] ? err.msg : "out of memory");
    return out;
}

static int64_t api_user_create(halle_host *h, const char *email, const char *name)
{
    hl_err err;
    hl_err_clear(&err);
    int64_t id = hl_user_create_seeded(hl_worker_db(h->worker), email, name, &err);
    if (id <= 0)
        set_error(h, err.msg);
    return id > 0 ? id : HALLE_ERROR;
}

static int api_route(halle_host *h, unsigned methods, const char *pattern, halle_handler fn, void *ud)
{
    return api_route_flags(h, methods, pattern, 0, fn, ud);
}

static int api_hook(halle_host *h, const char *hook, int priority, halle_hook_fn fn, void *ud)
{
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_hooks_add(hl_worker_hooks(h->worker), hook, priority, (hl_hook_fn)fn, ud, NULL, h->name, &err);
    set_error(h, err.msg);
    return rc;
}

static int api_declare_hook(halle_host *h, const char *name, int kind)
{
    hl_err err;
    hl_err_clear(&err);
    size_t nl = strlen(h->name);
    if (strncmp(name, h->name, nl) || name[nl] != '.') {
        set_error(h, "a plugin's own hooks are named PLUGIN.event");
        return HL_EINVAL;
    }
    int rc = hl_hooks_declare(hl_worker_hooks(h->worker), name, (hl_hook_kind)kind, &err);
    set_error(h, err.msg);
    return rc;
}

static const char *api_setting(halle_host *h, const char *name)
{
    json_t *v = json_object_get(h->settings, name);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_true(v))
        return "on";
    if (json_is_false(v))
        return "off";
    if (json_is_integer(v)) {
        /* Stored back into the object as text so that the pointer lives as long as the host. */
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        json_object_set_new(h->settings, name, json_string(buf));
        return json_string_value(json_object_get(h->settings, name));
    }
    return NULL;
}

static const char *api_last_error(halle_host *h) { return h->last_error; }

static json_t *api_call_value(halle_hook_call *c) { return c->value; }
static void api_call_set_value(halle_hook_call *c, json_t *v)
{
    json_decref(c->value);
    c->value = v;
}
static halle_request *api_call_request(halle_hook_call *c) { return c->ctx; }
static int api_call_stop(halle_hook_call *c, int status, const char *message)
{
    c->stop.status = status;
    snprintf(c->stop.message, sizeof c->stop.message, "%s", message ? message : "");
    return HL_HOOK_STOP;
}

static const char *api_req_method(halle_request *r) { return r->method_name; }
static const char *api_req_path(halle_request *r) { return r->path; }
static const char *api_req_param(halle_request *r, const char *n) { return hl_request_param(r, n); }
static const char *api_req_route_param(halle_request *r, const char *n) { return hl_params_value(&r->params, n); }
static const char *api_req_header(halle_request *r, const char *n) { return hl_request_header(r, n); }
static const char *api_req_cookie(halle_request *r, const char *n) { return hl_params_value(&r->cookies, n); }
static const void *api_req_body(halle_request *r, size_t *len)
{
    if (len)
        *len = r->body_len;
    return r->body;
}

static void api_resp_status(halle_request *r, int s) { hl_response_status(r, s); }
static int api_resp_header(halle_request *r, const char *n, const char *v) { return hl_response_header(r, n, v); }
static int api_resp_write(halle_request *r, const void *d, size_t l) { return hl_response_write(r, d, l); }
static int api_resp_html(halle_request *r, const char *t) { return hl_response_html(r, t); }
static int api_resp_json(halle_request *r, int s, json_t *v) { return hl_response_json(r, s, v); }
static int api_resp_error(halle_request *r, int s, const char *m) { return hl_response_error(r, s, m); }

static hl_stmt *query_va(halle_host *h, const char *sql, const char *types, va_list ap)
{
    hl_err err;
    hl_err_clear(&err);
    hl_stmt *st = hl_db_prepare(hl_worker_db(h->worker), sql, &err);
    if (!st) {
        set_error(h, err.msg);
        return NULL;
    }
    if (hl_db_bindva(st, types, ap, &err) != HL_OK) {
        set_error(h, err.msg);
        hl_db_done(st);
        return NULL;
    }
    return st;
}

static int api_db_run(halle_host *h, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    hl_stmt *st = query_va(h, sql, types, ap);
    va_end(ap);
    if (!st)
        return HL_ERR;
    hl_err err;
    hl_err_clear(&err);
    int rc;
    while ((rc = hl_db_step(st, &err)) == HL_DB_ROW)
        ;
    hl_db_done(st);
    set_error(h, err.msg);
    return rc;
}

static halle_stmt *api_db_query(halle_host *h, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    hl_stmt *st = query_va(h, sql, types, ap);
    va_end(ap);
    return st;
}

static int api_db_step(halle_stmt *st) { return hl_db_step(st, NULL); }
static int api_db_col_count(halle_stmt *st) { return hl_db_col_count(st); }
static int64_t api_db_col_int(halle_stmt *st, int c) { return hl_db_col_int64(st, c); }
static double api_db_col_double(halle_stmt *st, int c) { return hl_db_col_double(st, c); }
static const char *api_db_col_text(halle_stmt *st, int c) { return hl_db_col_text(st, c); }
static void api_db_done(halle_stmt *st) { hl_db_done(st); }

static int64_t api_req_user(halle_request *r) { return r->user ? r->user->id : 0; }
static int api_can(halle_request *r, int action, int object, int64_t owner)
{
    return r && hl_auth_can(r->user, (hl_action)action, object, owner);
}
static int api_can_name(halle_request *r, int action, const char *capability, int64_t object)
{
    return r && hl_auth_can_name(r->user, (hl_action)action, capability, object);
}
/* A plugin names only its own capabilities (PLUGIN.word), as its hooks and jobs. */
int hl_host_capability(halle_host *h, const char *name, const halle_cap_rule *rules, size_t nrules,
                       hl_caps_owns_fn owns, void *ud)
{
    hl_err err;
    hl_err_clear(&err);
    size_t len = strlen(h->name);
    if (!name || strncmp(name, h->name, len) != 0 || name[len] != '.') {
        set_error(h, "a capability's name starts with the plugin's name and a dot");
        return HALLE_ERROR;
    }
    int id = hl_caps_register(name, rules, nrules, owns, h, ud, &err);
    if (id < 0)
        set_error(h, err.msg);
    return id < 0 ? HALLE_ERROR : id;
}
static int api_capability(halle_host *h, const char *name, const halle_cap_rule *rules, size_t nrules,
                          int (*owns)(halle_host *h, int64_t user_id, int64_t object, void *ud), void *ud)
{
    return hl_host_capability(h, name, rules, nrules, owns, ud);
}
static int64_t api_mail(halle_host *h, const char *to, const char *subject, const char *body)
{
    hl_err err;
    hl_err_clear(&err);
    int64_t id = hl_mail_queue(hl_worker_db(h->worker), to, subject, body, &err);
    set_error(h, err.msg);
    return id;
}

static const char *api_req_csrf(halle_request *r) { return hl_webauth_csrf(r); }
static int api_resp_redirect(halle_request *r, const char *location) { return hl_response_redirect(r, 303, location); }

static int api_render(halle_request *r, const char *name, json_t *ctx)
{
    json_t *full = hl_page_context(r);
    if (!full)
        return HL_ENOMEM;
    if (json_is_object(ctx))
        json_object_update_recursive(full, ctx);
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_page_render(r, name, full, &err);
    json_decref(full);
    if (rc != HL_OK)
        hl_log(HL_LOG_ERROR, "render %s: %s", name, err.msg);
    return rc;
}

static void api_set_group_theme(halle_request *r, const char *theme)
{
    r->group_theme = theme ? hl_arena_strdup(r->arena, theme) : NULL;
}

static const void *api_req_file(halle_request *r, const char *field, size_t *len, const char **filename,
                                const char **content_type)
{
    const hl_param *p = hl_params_get(&r->form, field);
    if (!p || !p->filename)
        return NULL;
    if (len)
        *len = p->value_len;
    if (filename)
        *filename = p->filename;
    if (content_type)
        *content_type = p->content_type;
    return p->value;
}

static const char *api_req_user_name(halle_request *r) { return r->user ? r->user->name : NULL; }

static int api_user_add_role(halle_host *h, int64_t user_id, unsigned role, int64_t group_id)
{
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_user_add_role(hl_worker_db(h->worker), user_id, role, group_id, &err);
    set_error(h, err.msg);
    return rc;
}

typedef struct tx_call {
    halle_host *h;
    int (*fn)(halle_host *, void *);
    void *ud;
} tx_call;

static int tx_trampoline(hl_db *db, void *ud, hl_err *err)
{
    (void)db;
    tx_call *c = ud;
    int rc = c->fn(c->h, c->ud);
    return rc == HALLE_OK ? HL_OK : hl_err_set(err, rc < 0 ? rc : HL_ERR, "%s", c->h->last_error);
}

static int api_db_tx(halle_host *h, int (*fn)(halle_host *, void *), void *ud)
{
    tx_call c = {h, fn, ud};
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_db_tx(hl_worker_db(h->worker), tx_trampoline, &c, &err);
    if (rc)
        set_error(h, err.msg);
    return rc;
}

static int64_t api_db_last_id(halle_host *h) { return hl_db_last_insert_id(hl_worker_db(h->worker)); }

static int api_db_tx_durable(halle_host *h, int (*fn)(halle_host *, void *), void *ud)
{
    tx_call c = {h, fn, ud};
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_db_tx_durable(hl_worker_db(h->worker), tx_trampoline, &c, &err);
    if (rc)
        set_error(h, err.msg);
    return rc;
}

static int api_db_insert(halle_host *h, int64_t *id, const char *sql, const char *types, ...)
{
    va_list ap;
    hl_err err;
    hl_err_clear(&err);
    va_start(ap, types);
    int rc = hl_db_insertva(hl_worker_db(h->worker), &err, id, sql, types, ap);
    va_end(ap);
    set_error(h, err.msg);
    return rc;
}

static int api_db_col_is_null(halle_stmt *st, int c) { return hl_db_col_is_null(st, c); }
static const char *api_db_errmsg(halle_host *h) { return hl_db_errmsg(hl_worker_db(h->worker)); }

/* A plugin's keys and counters live under its name, so one plugin cannot replay or advance
 * another's. */
static int own_scope(halle_host *h, const char *scope, char *out, size_t n)
{
    if (!scope || !*scope || (size_t)snprintf(out, n, "%s:%s", h->name, scope) >= n) {
        set_error(h, "scope is empty or too long");
        return HL_EINVAL;
    }
    return HL_OK;
}

typedef struct idem_call {
    halle_host *h;
    int (*fn)(halle_host *, void *, int *, char **);
    void *ud;
} idem_call;

static int idem_trampoline(hl_db *db, void *ud, hl_db_result *res, hl_err *err)
{
    (void)db;
    idem_call *c = ud;
    int rc = c->fn(c->h, c->ud, &res->status, &res->body);
    return rc == HALLE_OK ? HL_OK : hl_err_set(err, rc < 0 ? rc : HL_ERR, "%s", c->h->last_error);
}

static int api_db_idempotent(halle_host *h, const char *scope, const char *key, const char *fingerprint,
                             int (*fn)(halle_host *, void *, int *, char **), void *ud, int *status,
                             char **body)
{
    char sc[HL_DB_IDEM_KEY_MAX + 1];
    if (!fn || !status || !body)
        return HL_EINVAL;
    *status = 0;
    *body = NULL;
    int rc = own_scope(h, scope, sc, sizeof sc);
    if (rc != HL_OK)
        return rc;
    idem_call c = {h, fn, ud};
    hl_db_result res;
    hl_err err;
    hl_err_clear(&err);
    rc = hl_db_idempotent(hl_worker_db(h->worker), sc, key, fingerprint, idem_trampoline, &c, &res, &err);
    if (rc != HL_OK) {
        set_error(h, err.msg);
        return rc;
    }
    *status = res.status;
    *body = res.body;
    return res.replayed;
}

static int api_db_counter_next(halle_host *h, const char *scope, int64_t *n)
{
    char sc[HL_DB_IDEM_KEY_MAX + 1];
    int rc = own_scope(h, scope, sc, sizeof sc);
    if (rc != HL_OK)
        return rc;
    hl_err err;
    hl_err_clear(&err);
    rc = hl_db_counter_next(hl_worker_db(h->worker), sc, n, &err);
    if (rc)
        set_error(h, err.msg);
    return rc;
}

struct hl_host_cmd {
    char *name;
    char *usage;
    int (*fn)(halle_host *, int, char **);
};

static int api_command(halle_host *h, const char *name, const char *usage, int (*fn)(halle_host *, int, char **))
{
    if (!name || !*name || !fn)
        return HL_EINVAL;
    struct hl_host_cmd *n = realloc(h->cmds, (h->ncmds + 1) * sizeof *n);
    if (!n)
        return HL_ENOMEM;
    h->cmds = n;
    h->cmds[h->ncmds].name = strdup(name);
    h->cmds[h->ncmds].usage = strdup(usage ? usage : "");
    h->cmds[h->ncmds].fn = fn;
    h->ncmds++;
    return HL_OK;
}

static char *api_markdown(const char *text)
{
    char *html = NULL;
    return text && hl_markdown_render(text, strlen(text), &html, NULL) == HL_OK ? html : NULL;
}

static void api_free(void *p) { free(p); }

static json_t *api_scope_plugins(halle_host *h, const char *scope)
{
    return hl_plugin_scope_list(hl_worker_config(h->worker), hl_worker_db(h->worker), scope);
}

static int api_scope_set(halle_host *h, const char *plugin, const char *scope, int enabled)
{
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_plugin_scope_set(hl_worker_config(h->worker), hl_worker_db(h->worker), plugin, scope, enabled, &err);
    set_error(h, err.msg);
    return rc;
}

static int api_scope_enabled(halle_host *h, const char *plugin, const char *scope)
{
    return hl_plugin_scope_enabled(hl_worker_db(h->worker), plugin, scope);
}

static int api_run_filter(halle_host *h, halle_request *r, const char *hook, json_t **value)
{
    hl_hooks *hooks = hl_worker_hooks(h->worker);
    int id = hl_hooks_id(hooks, hook);
    if (id < 0) {
        set_error(h, "no such hook");
        return HL_ENOTFOUND;
    }
    hl_hook_stop stop;
    memset(&stop, 0, sizeof stop);
    int rc = hl_hooks_run_filter(hooks, id, value, r, &stop);
    set_error(h, stop.message);
    return rc;
}

static int api_run_action(halle_host *h, halle_request *r, const char *hook, json_t *data)
{
    hl_hooks *hooks = hl_worker_hooks(h->worker);
    int id = hl_hooks_id(hooks, hook);
    if (id < 0) {
        set_error(h, "no such hook");
        return HL_ENOTFOUND;
    }
    return hl_hooks_run_action(hooks, id, data, r);
}

static json_t *api_themes(halle_host *h)
{
    json_t *out = json_array();
    hl_themes *t = hl_worker_themes(h->worker);
    for (size_t i = 0; out && t && i < hl_themes_count(t); i++) {
        const hl_theme_info *ti = hl_themes_get(t, i);
        json_array_append_new(out, json_pack("{s:s, s:s, s:s?}", "name", ti->name, "description",
                                             ti->description ? ti->description : "", "parent", ti->parent));
    }
    return out;
}

static const char *api_site_url(halle_host *h)
{
    const hl_config *cfg = hl_worker_config(h->worker);
    return cfg && cfg->base_url ? cfg->base_url : "";
}

static const char *api_tr(halle_request *r, const char *msgid) { return r ? hl_request_tr(r, msgid) : msgid; }
static const char *api_req_lang(halle_request *r) { return r && r->lang ? r->lang : "fr"; }
static const void *api_db_col_blob(halle_stmt *st, int c) { return hl_db_col_blob(st, c); }
static size_t api_db_col_bytes(halle_stmt *st, int c) { return hl_db_col_bytes(st, c); }

/* ---- formatting and text (API version 9) ------------------------------------------- */

static int api_format_price(const char *lang, int64_t cents, const char *currency, char *buf, size_t len)
{
    return hl_i18n_format_price(lang, (long long)cents, currency ? currency : "EUR", buf, len);
}

static int api_format_number(const char *lang, double v, int decimals, char *buf, size_t len)
{
    return hl_i18n_format_number(lang, v, decimals, buf, len);
}

int hl_host_format_date(const char *lang, int64_t epoch, char *buf, size_t len)
{
    time_t t = (time_t)epoch;
    struct tm tm;
    if (buf && len)
        buf[0] = '\0';
    if (!gmtime_r(&t, &tm))
        return HL_EINVAL;
    return hl_i18n_format_date(lang, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, buf, len);
}

static long api_text_valid(const char *s, size_t max_bytes, int multiline)
{
    return hl_text_chars(s, max_bytes, multiline);
}

static size_t api_fold(const char *in, char *out, size_t len) { return hl_text_fold(in, out, len); }

static int api_like_pattern(const char *q, char *out, size_t len)
{
    return hl_text_like(q, out, len) ? HL_ETOOBIG : HL_OK;
}

static json_t *api_paginate(long page, long limit, long long total, const char *base)
{
    return hl_text_paginate(page, limit, total, base);
}

static json_t *api_rows_json(halle_stmt *st)
{
    json_t *rows = json_array();
    int rc = HL_OK;
    while (rows && (rc = hl_db_step(st, NULL)) == HL_DB_ROW) {
        json_t *o = json_object();
        int nc = hl_db_col_count(st);
        for (int c = 0; o && c < nc; c++) {
            json_t *v;
            switch (hl_db_col_type(st, c)) {
            case HL_DB_INTEGER: v = json_integer((json_int_t)hl_db_col_int64(st, c)); break;
            case HL_DB_FLOAT: v = json_real(hl_db_col_double(st, c)); break;
            case HL_DB_TEXT: v = json_string(hl_db_col_text(st, c)); break;
            case HL_DB_BLOB: continue;
            default: v = json_null(); break;
            }
            json_object_set_new(o, hl_db_col_name(st, c), v ? v : json_null());
        }
        if (!o || json_array_append_new(rows, o)) {
            json_decref(rows);
            return NULL;
        }
    }
    if (rows && rc < 0) {
        json_decref(rows);
        return NULL;
    }
    return rows;
}

/* ---- jobs (API version 8) ------------------------------------------------------------- */

int hl_host_job_name(const halle_host *h, const char *name, char *out, size_t len)
{
    /* A plugin's jobs live under its name, as its hooks and tables do, and it queues only its
     * own: another plugin's once-job with a payload of its choosing would be a way for a
     * contained (Lua) plugin to act with that plugin's rights. */
    size_t n = strlen(h->name);
    if (!name || !*name)
        return HL_EINVAL;
    if (!strncmp(name, h->name, n) && name[n] == '.')
        name += n + 1;
    if (strchr(name, '.'))
        return HL_EINVAL;
    return snprintf(out, len, "%s.%s", h->name, name) >= (int)len ? HL_ETOOBIG : HL_OK;
}

int hl_host_add_job(halle_host *h, const char *name, const char *schedule, hl_job_fn fn, void *ud,
                    void (*ud_free)(void *), hl_err *err)
{
    char full[128];
    if (!name || strchr(name, '.') || hl_host_job_name(h, name, full, sizeof full) != HL_OK)
        return hl_err_set(err, HL_EINVAL, "job name '%s': a plain name (the plugin's name is added)",
                          name ? name : "");
    return hl_jobs_add(hl_worker_jobs(h->worker), full, schedule, fn, ud, ud_free, err);
}

typedef struct c_job {
    halle_host *h;
    int (*fn)(halle_host *h, const char *payload, void *ud);
    void *ud;
} c_job;

static int c_job_run(void *ud, const char *payload, hl_err *err)
{
    c_job *j = ud;
    j->h->last_error[0] = '\0';
    int rc = j->fn(j->h, payload, j->ud);
    if (rc != HALLE_OK)
        return hl_err_set(err, HL_ERR, "%s", j->h->last_error[0] ? j->h->last_error : "the job failed");
    return HL_OK;
}

static int api_job(halle_host *h, const char *name, const char *schedule,
                   int (*fn)(halle_host *h, const char *payload, void *ud), void *ud)
{
    hl_err err;
    hl_err_clear(&err);
    c_job *j = fn ? malloc(sizeof *j) : NULL;
    if (!j) {
        set_error(h, fn ? "out of memory" : "job: NULL function");
        return HALLE_ERROR;
    }
    *j = (c_job){h, fn, ud};
    if (hl_host_add_job(h, name, schedule, c_job_run, j, free, &err) != HL_OK) {
        free(j);
        set_error(h, err.msg);
        return HALLE_ERROR;
    }
    return HALLE_OK;
}

static int64_t api_job_at(halle_host *h, const char *name, int64_t when, const char *payload)
{
    hl_err err;
    hl_err_clear(&err);
    char full[128];
    int64_t id = hl_host_job_name(h, name, full, sizeof full) != HL_OK
                     ? hl_err_set(&err, HL_EINVAL, "job '%s': a plugin queues only its own jobs", name ? name : "")
                     : hl_jobs_enqueue(hl_worker_db(h->worker), full, when, payload, &err);
    set_error(h, err.msg);
    return id;
}

static int64_t api_now(halle_host *h)
{
    (void)h;
    return hl_clock_now();
}

static int api_user_remove_role(halle_host *h, int64_t user_id, unsigned role, int64_t group_id)
{
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_user_remove_role(hl_worker_db(h->worker), user_id, role, group_id, &err);
    set_error(h, err.msg);
    return rc;
}

/* The public constants must keep the core's values: plugins compiled against the header pass
 * them straight through. */
_Static_assert(HALLE_ACT_DELETE == (int)HL_ACT_DELETE && HALLE_OBJ_USER_LOCKS == (int)HL_OBJ_USER_LOCKS &&
                   (unsigned)HALLE_ROLE_OPERATOR == (unsigned)HL_ROLE_OPERATOR &&
                   (unsigned)HALLE_ROLE_COORDINATOR == (unsigned)HL_ROLE_COORDINATOR &&
                   (unsigned)HALLE_GET == (unsigned)HL_METHOD_GET && (unsigned)HALLE_OPTIONS == (unsigned)HL_METHOD_OPTIONS,
               "plugin.h constants out of step with the core");

static const halle_api api = {
    .api_version = HALLE_API_VERSION,
    .struct_size = sizeof(halle_api),
    .log = api_log,
    .route = api_route,
    .hook = api_hook,
    .declare_hook = api_declare_hook,
    .setting = api_setting,
    .last_error = api_last_error,
    .call_value = api_call_value,
    .call_set_value = api_call_set_value,
    .call_request = api_call_request,
    .call_stop = api_call_stop,
    .req_method = api_req_method,
    .req_path = api_req_path,
    .req_param = api_req_param,
    .req_route_param = api_req_route_param,
    .req_header = api_req_header,
    .req_cookie = api_req_cookie,
    .req_body = api_req_body,
    .resp_status = api_resp_status,
    .resp_header = api_resp_header,
    .resp_write = api_resp_write,
    .resp_html = api_resp_html,
    .resp_json = api_resp_json,
    .resp_error = api_resp_error,
    .db_run = api_db_run,
    .db_query = api_db_query,
    .db_step = api_db_step,
    .db_col_count = api_db_col_count,
    .db_col_int = api_db_col_int,
    .db_col_double = api_db_col_double,
    .db_col_text = api_db_col_text,
    .db_done = api_db_done,
    .req_user = api_req_user,
    .can = api_can,
    .mail = api_mail,
    .req_csrf = api_req_csrf,
    .resp_redirect = api_resp_redirect,
    .render = api_render,
    .set_group_theme = api_set_group_theme,
    .req_file = api_req_file,
    .req_user_name = api_req_user_name,
    .user_add_role = api_user_add_role,
    .db_tx = api_db_tx,
    .db_last_id = api_db_last_id,
    .command = api_command,
    .markdown = api_markdown,
    .free = api_free,
    .scope_plugins = api_scope_plugins,
    .scope_set = api_scope_set,
    .scope_enabled = api_scope_enabled,
    .run_filter = api_run_filter,
    .run_action = api_run_action,
    .themes = api_themes,
    .user_remove_role = api_user_remove_role,
    .site_url = api_site_url,
    .tr = api_tr,
    .req_lang = api_req_lang,
    .db_col_blob = api_db_col_blob,
    .db_col_bytes = api_db_col_bytes,
    .route_flags = api_route_flags,
    .rate_allow = api_rate_allow,
    .user_get = api_user_get,
    .user_search = api_user_search,
    .user_create = api_user_create,
    .job = api_job,
    .job_at = api_job_at,
    .now = api_now,
    .format_price = api_format_price,
    .format_number = api_format_number,
    .format_date = hl_host_format_date,
    .text_valid = api_text_valid,
    .fold = api_fold,
    .like_pattern = api_like_pattern,
    .paginate = api_paginate,
    .rows_json = api_rows_json,
    .db_insert = api_db_insert,
    .db_col_is_null = api_db_col_is_null,
    .db_errmsg = api_db_errmsg,
    .db_tx_durable = api_db_tx_durable,
    .db_idempotent = api_db_idempotent,
    .db_counter_next = api_db_counter_next,
    .capability = api_capability,
    .can_name = api_can_name,
};

const halle_api *hl_host_api(void) { return &api; }

/* The catalogue (docs/hooks.md). Filters are named *.before or describe a transformation. */
static const struct {
    const char *name;
    hl_hook_kind kind;
} core_hooks[] = {
    {"request.before", HL_HOOK_FILTER},  {"response.before", HL_HOOK_FILTER},
    {"ui.navigation", HL_HOOK_FILTER},   {"render.context", HL_HOOK_FILTER},
    {"routes.registered", HL_HOOK_ACTION}, {"user.created", HL_HOOK_ACTION},
    {"privacy.register", HL_HOOK_FILTER}, {"cookies.declare", HL_HOOK_FILTER},
    {"cron.minutely", HL_HOOK_ACTION},   {"cron.hourly", HL_HOOK_ACTION},
    {"cron.daily", HL_HOOK_ACTION},      {"mail.sent", HL_HOOK_ACTION},
};

int hl_host_declare_core_hooks(hl_hooks *h, hl_err *err)
{
    for (size_t i = 0; i < sizeof core_hooks / sizeof core_hooks[0]; i++) {
        int rc = hl_hooks_declare(h, core_hooks[i].name, core_hooks[i].kind, err);
        if (rc)
            return rc;
    }
    return HL_OK;
}

/* ---- loading -------------------------------------------------------------------------- */

static int load_c(halle_host *host, const hl_plugin_info *p, hl_err *err)
{
    host->so = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!host->so)
        return hl_err_set(err, HL_EINVAL, "%s: cannot load: %s", p->path, dlerror());
    host->desc = dlsym(host->so, "halle_plugin_descriptor");
    if (!host->desc)
        return hl_err_set(err, HL_EINVAL, "%s: no halle_plugin_descriptor", p->path);
    int rc = host->desc->init(host, &api);
    if (rc != HALLE_OK) {
        host->desc = NULL; /* no fini for a plugin whose init failed */
        return hl_err_set(err, HL_ERR, "init failed: %s", host->last_error[0] ? host->last_error : "no reason given");
    }
    return HL_OK;
}

static void host_free(halle_host *h)
{
    if (!h)
        return;
    if (h->kind == HL_PLUGIN_C) {
        if (h->desc && h->desc->fini)
            h->desc->fini(h);
    } else {
        hl_luaplugin_unload(h);
    }
    hl_caps_forget(h);
    /* The library stays mapped: hook callbacks and routes registered by it may still be in
     * the tables being freed, and the process is exiting anyway. */
    json_decref(h->settings);
    for (size_t i = 0; i < h->ncmds; i++) {
        free(h->cmds[i].name);
        free(h->cmds[i].usage);
    }
    free(h->cmds);
    free(h->name);
    free(h);
}

/* privacy.register and cookies.declare for what a plugin's manifest declares (a C plugin's
 * manifest_json, a Lua plugin's plugin.json): ud is the manifest's list, with the plugin's name. */
static int manifest_declarations(void *ud, hl_hook_call *call)
{
    json_t *list = ud;
    if (!json_is_array(call->value)) {
        json_decref(call->value);
        call->value = json_array();
    }
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(list, "items"), i, v) {
        json_t *copy = json_deep_copy(v);
        if (copy)
            json_object_set(copy, "plugin", json_object_get(list, "plugin"));
        if (copy)
            json_array_append_new(call->value, copy);
    }
    return HL_HOOK_CONTINUE;
}

static void json_free_ud(void *ud) { json_decref(ud); }

static int add_manifest_declarations(hl_hooks *hooks, const hl_plugin_info *p, hl_err *err)
{
    static const char *const keys[2][2] = {{"privacy", "privacy.register"}, {"cookies", "cookies.declare"}};
    for (int i = 0; i < 2; i++) {
        json_t *items = json_object_get(p->manifest, keys[i][0]);
        if (!json_array_size(items))
            continue;
        json_t *ud = json_pack("{s:O, s:s}", "items", items, "plugin", p->name);
        int rc = ud ? hl_hooks_add(hooks, keys[i][1], HL_HOOK_DEFAULT_PRIORITY, manifest_declarations, ud, json_free_ud,
                                   p->name, err)
                    : hl_err_set(err, HL_ENOMEM, "out of memory");
        if (rc)
            return rc;
    }
    return HL_OK;
}

/* user.created, for every account made in a process that has plugins loaded (sign-up,
 * seeding through api->user_create, plugin commands). No request: the account may be made
 * outside one. */
static void fire_user_created(void *ud, int64_t id, const char *email, unsigned roles)
{
    hl_hooks *hooks = hl_worker_hooks(ud);
    int hid = hooks ? hl_hooks_id(hooks, "user.created") : -1;
    if (hid < 0 || !hl_hooks_count(hooks, hid))
        return;
    json_t *data = json_pack("{s:I, s:s, s:i}", "id", (json_int_t)id, "email", email ? email : "", "roles",
                             (int)(roles ? roles : HL_ROLE_CLIENT));
    if (data)
        hl_hooks_run_action(hooks, hid, data, NULL);
    json_decref(data);
}

int hl_host_load_all(struct hl_worker *w, halle_host ***hosts, size_t *n, hl_err *err)
{
    *hosts = NULL;
    *n = 0;
    hl_plugin_list l;
    int rc = hl_plugin_discover(hl_worker_config(w), hl_worker_db(w), &l, err);
    if (rc)
        return rc;
    halle_host **out = calloc(l.count ? l.count : 1, sizeof *out);
    if (!out) {
        hl_plugin_list_free(&l);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    size_t k = 0;
    /* A plugin loads after those it requires (their hooks must be declared before it adds
     * callbacks to them): passes over the list, loading those whose requirements are loaded;
     * one whose requirement was refused is refused too. */
    char *state = calloc(l.count ? l.count : 1, 1); /* 0 waiting, 1 loaded, 2 refused or off */
    if (!state) {
        free(out);
        hl_plugin_list_free(&l);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < l.count; i++)
        if (!l.items[i].enabled)
            state[i] = 2;
    for (int progress = 1; progress;) {
        progress = 0;
        for (size_t i = 0; i < l.count; i++) {
            if (state[i])
                continue;
            const hl_plugin_info *p = &l.items[i];
            int ready = 1;
            char missing[64] = "";
            char *reqs = strdup(p->requires ? p->requires : ""), *save = NULL;
            for (char *t = reqs ? strtok_r(reqs, ",", &save) : NULL; t; t = strtok_r(NULL, ",", &save)) {
                size_t j;
                for (j = 0; j < l.count && strcmp(l.items[j].name, t); j++)
                    ;
                if (j == l.count || state[j] == 2) {
                    ready = -1;
                    snprintf(missing, sizeof missing, "%s", t);
                    break;
                }
                if (state[j] == 0)
                    ready = 0;
            }
            free(reqs);
            if (ready == 0)
                continue;
            progress = 1;
            state[i] = 2;
            if (ready < 0) {
                hl_log(HL_LOG_ERROR, "plugin %s refused: it requires %s, which is not loaded; starting without it",
                       p->name, missing);
                continue;
            }
            if (p->error) {
                hl_log(HL_LOG_ERROR, "plugin %s refused: %s; starting without it", p->name, p->error);
                continue;
            }
            halle_host *h = calloc(1, sizeof *h);
            if (!h)
                continue;
            h->worker = w;
            h->name = strdup(p->name);
            h->kind = p->kind;
            h->settings = hl_plugin_settings(hl_worker_db(w), p);
            hl_err e;
            hl_err_clear(&e);
            size_t nroutes = hl_router_count(w->router);
            int njobs = hl_jobs_count(hl_worker_jobs(w));
            int lrc = p->kind == HL_PLUGIN_C ? load_c(h, p, &e) : hl_luaplugin_load(h, &l, p, &e);
            if (lrc == HL_OK)
                lrc = add_manifest_declarations(hl_worker_hooks(w), p, &e);
            if (lrc != HL_OK) {
                hl_log(HL_LOG_ERROR, "plugin %s refused: %s; starting without it", p->name, e.msg);
                /* what it registered before failing would point into it once it is freed */
                hl_hooks_remove_owner(hl_worker_hooks(w), p->name);
                hl_router_truncate(w->router, nroutes);
                hl_jobs_truncate(hl_worker_jobs(w), njobs);
                host_free(h);
                continue;
            }
            state[i] = 1;
            out[k++] = h;
        }
    }
    for (size_t i = 0; i < l.count; i++)
        if (!state[i]) /* only a requirement cycle leaves plugins waiting */
            hl_log(HL_LOG_ERROR, "plugin %s refused: its requirements form a cycle; starting without it",
                   l.items[i].name);
    free(state);
    hl_plugin_list_free(&l);
    *hosts = out;
    *n = k;
    hl_accounts_on_created(fire_user_created, w);
    return HL_OK;
}

void hl_host_unload_all(halle_host **hosts, size_t n)
{
    hl_accounts_on_created(NULL, NULL);
    for (size_t i = 0; i < n; i++)
        host_free(hosts[i]);
    free(hosts);
}

int hl_host_run_command(struct hl_worker *w, int argc, char **argv)
{
    hl_err err;
    hl_err_clear(&err);
    halle_host **hosts = NULL;
    size_t n = 0;
    int rc = 2;
    if (hl_host_load_all(w, &hosts, &n, &err) != HL_OK) {
        fprintf(stderr, "halle: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    halle_host *h = NULL;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(hosts[i]->name, argv[0]))
            h = hosts[i];
    if (!h) {
        fprintf(stderr, "halle: unknown command '%s' (nor an enabled plugin of that name); see halle --help\n", argv[0]);
        goto out;
    }
    for (size_t i = 0; argc > 1 && i < h->ncmds; i++)
        if (!strcmp(h->cmds[i].name, argv[1])) {
            optind = 1;
            rc = h->cmds[i].fn(h, argc - 1, argv + 1);
            goto out;
        }
    fprintf(stderr, "usage: halle %s COMMAND [ARGS]\n\ncommands of the %s plugin:\n", argv[0], argv[0]);
    for (size_t i = 0; i < h->ncmds; i++)
        fprintf(stderr, "  %s %s\n", h->cmds[i].name, h->cmds[i].usage);
out:
    hl_host_unload_all(hosts, n);
    return rc;
}
