/* Lua plugins in a worker: loads the plugin's main file into its sandboxed state (core/lua.c)
 * and gives it the `halle` API table: routes, hook callbacks, SQL through the plugin's access
 * policy, settings, logging and privacy/cookie declarations. Every call into Lua goes through
 * hl_lua_call, so limits apply and an error becomes a 500 for that request, never a crash. */
#include "halle-config.h"

#include <lauxlib.h>
#include <lua.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/host.h"
#include "core/services.h"
#include "core/log.h"
#include "core/lua.h"
#include "core/request.h"
#include "core/router.h"
#include "core/accounts.h"
#include "core/caps.h"
#include "core/mail.h"
#include "core/markdown.h"
#include "core/mustache.h"
#include "core/webauth.h"
#include "core/file.h"
#include "core/i18n.h"
#include "core/text.h"

#define JSON_DEPTH 32
#define STOP_MARK "halle.stop"

typedef struct lua_cb {
    halle_host *host;
    int ref;  /* registry reference to the Lua function */
} lua_cb;

static halle_host *host_of(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "halle.host");
    halle_host *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

/* ---- JSON <-> Lua --------------------------------------------------------------------- */

static void push_json(lua_State *L, json_t *v, int depth)
{
    luaL_checkstack(L, 4, "JSON value too deep");
    if (!v || depth > JSON_DEPTH) {
        lua_pushnil(L);
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            push_json(L, x, depth + 1);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)json_array_size(v), 0);
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            push_json(L, x, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING: lua_pushlstring(L, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: lua_pushinteger(L, (lua_Integer)json_integer_value(v)); break;
    case JSON_REAL: lua_pushnumber(L, json_real_value(v)); break;
    case JSON_TRUE: lua_pushboolean(L, 1); break;
    case JSON_FALSE: lua_pushboolean(L, 0); break;
    default: lua_pushnil(L); break;
    }
}

static json_t *to_json(lua_State *L, int idx, int depth)
{
    idx = lua_absindex(L, idx);
    if (depth > JSON_DEPTH)
        return NULL;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: return json_null();
    case LUA_TBOOLEAN: return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        return lua_isinteger(L, idx) ? json_integer((json_int_t)lua_tointeger(L, idx)) : json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return json_stringn(s, len); /* NULL for invalid UTF-8 */
    }
    case LUA_TTABLE: {
        luaL_checkstack(L, 4, "table too deep");
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        if (n > 0) {
            json_t *a = json_array();
            for (lua_Integer i = 1; a && i <= n; i++) {
                lua_rawgeti(L, idx, i);
                json_t *x = to_json(L, -1, depth + 1);
                lua_pop(L, 1);
                json_array_append_new(a, x ? x : json_null());
            }
            return a;
        }
        json_t *o = json_object();
        lua_pushnil(L);
        while (o && lua_next(L, idx)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                json_t *x = to_json(L, -1, depth + 1);
                if (x)
                    json_object_set_new(o, lua_tostring(L, -2), x);
            }
            lua_pop(L, 1);
        }
        return o;
    }
    default: return NULL;
    }
}

/* A limit or an out-of-memory error can leave a plugin's SQL call through a long jump, before
 * it cleared its policy and budget: every way into Lua clears them after, so the core's own SQL
 * never runs under a plugin's rules. */
static void sql_reset(halle_host *h)
{
    hl_db *db = hl_worker_db(h->worker);
    hl_db_set_budget(db, NULL, NULL, 0, 0, 0);
    hl_db_set_policy(db, NULL, NULL);
}

static int plugin_call(halle_host *h, int nargs, int nresults, hl_err *err)
{
    int rc = hl_lua_call(h->lua, nargs, nresults, err);
    sql_reset(h);
    return rc;
}

/* ---- requests ------------------------------------------------------------------------- */

/* hide(name) says which entries a contained plugin must not see (credentials). */
static void push_params(lua_State *L, const hl_params *p, int (*hide)(const char *))
{
    lua_createtable(L, 0, (int)p->count);
    for (size_t i = p->count; i-- > 0;) { /* first occurrence wins, as hl_params_value */
        if (hide && hide(p->items[i].name))
            continue;
        if (p->items[i].filename) {
            lua_createtable(L, 0, 4);
            lua_pushstring(L, p->items[i].filename);
            lua_setfield(L, -2, "filename");
            lua_pushstring(L, p->items[i].content_type);
            lua_setfield(L, -2, "content_type");
            lua_pushlstring(L, p->items[i].value, p->items[i].value_len);
            lua_setfield(L, -2, "data");
        } else {
            lua_pushlstring(L, p->items[i].value, p->items[i].value_len);
        }
        lua_setfield(L, -2, p->items[i].name);
    }
}

/* Credentials never reach Lua code (docs/security.md): the session and CSRF cookies, the
 * headers that carry them or other secrets, and the _csrf field of forms. */
static int hidden_field(const char *name) { return name && !strcmp(name, "_csrf"); }

/* In hooks a plugin sees other code's requests: the core's login, sign-up and password forms
 * and its one-time links (/verify?token=, /password/reset?token=) carry passwords and tokens
 * that are credentials too. Its own routes' fields are its own business. */
static int hidden_field_hook(const char *name)
{
    return name && (hidden_field(name) || strcasestr(name, "password") || strcasestr(name, "token") ||
                    strcasestr(name, "secret"));
}

static int req_header(lua_State *L)
{
    hl_request *r = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1);
    lua_pushstring(L, hl_webauth_secret_header(name) ? NULL : hl_request_header(r, name));
    return 1;
}

/* The CSRF token itself is a credential (with the session it lets a page post as the user), so
 * req.csrf() gives a placeholder instead, random per process, which the core replaces with the
 * real token in the HTML body the handler returns. Lua code never holds the token. */
static char csrf_mark[48];

static const char *csrf_placeholder(void)
{
    if (!csrf_mark[0]) {
        unsigned char bin[12];
        randombytes_buf(bin, sizeof bin);
        char hex[sizeof bin * 2 + 1];
        sodium_bin2hex(hex, sizeof hex, bin, sizeof bin);
        snprintf(csrf_mark, sizeof csrf_mark, "halle-csrf-%s", hex);
    }
    return csrf_mark;
}

/* req.csrf(): what a plugin's form puts in its _csrf field. A function, not a field, because
 * giving a visitor a token sets a cookie. */
static int req_csrf(lua_State *L)
{
    hl_request *r = lua_touserdata(L, lua_upvalueindex(1));
    hl_webauth_csrf(r);
    lua_pushstring(L, csrf_placeholder());
    return 1;
}

/* Writes a handler's HTML body with the CSRF placeholder replaced by the request's token. */
static int write_body(hl_request *r, const char *s, size_t len)
{
    const char *mark = csrf_mark[0] ? csrf_mark : NULL;
    size_t mlen = mark ? strlen(mark) : 0;
    while (mark && len >= mlen) {
        const char *hit = memmem(s, len, mark, mlen);
        if (!hit)
            break;
        if (hl_response_write(r, s, (size_t)(hit - s)) != HL_OK || hl_response_puts(r, hl_webauth_csrf(r)) != HL_OK)
            return HL_ENOMEM;
        len -= (size_t)(hit - s) + mlen;
        s = hit + mlen;
    }
    return hl_response_write(r, s, len);
}

/* A contained plugin may set its own cookies, never the core's credential cookies (a fixed
 * session would log a visitor into the attacker's account). */
static void set_header(hl_request *r, halle_host *h, const char *name, const char *value)
{
    char who[80];
    snprintf(who, sizeof who, "plugin %s", h->name);
    hl_webauth_plugin_header(r, who, name, value);
}

static void push_roles(lua_State *L, unsigned roles)
{
    lua_createtable(L, 4, 0);
    int n = 0;
    for (unsigned bit = 1; bit; bit <<= 1)
        if ((roles & bit) && hl_role_name(bit)) {
            lua_pushstring(L, hl_role_name(bit));
            lua_rawseti(L, -2, ++n);
        }
}

/* The request as a plain table; valid for the duration of the call only. */
static void push_request(lua_State *L, hl_request *r, int in_hook)
{
    lua_createtable(L, 0, 8);
    lua_pushstring(L, r->method_name);
    lua_setfield(L, -2, "method");
    lua_pushstring(L, r->path);
    lua_setfield(L, -2, "path");
    push_params(L, &r->params, NULL);
    lua_setfield(L, -2, "params");
    push_params(L, &r->query, in_hook ? hidden_field_hook : hidden_field);
    lua_setfield(L, -2, "query");
    push_params(L, &r->form, in_hook ? hidden_field_hook : hidden_field);
    lua_setfield(L, -2, "form");
    push_params(L, &r->cookies, hl_webauth_secret_cookie);
    lua_setfield(L, -2, "cookies");
    lua_pushstring(L, r->remote_ip);
    lua_setfield(L, -2, "ip");
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, req_header, 1);
    lua_setfield(L, -2, "header");
    lua_pushlightuserdata(L, r);
    lua_pushcclosure(L, req_csrf, 1);
    lua_setfield(L, -2, "csrf");
    if (r->user) {
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, (lua_Integer)r->user->id);
        lua_setfield(L, -2, "id");
        lua_pushstring(L, r->user->name);
        lua_setfield(L, -2, "name");
        push_roles(L, r->user->roles);
        lua_setfield(L, -2, "roles");
        lua_setfield(L, -2, "user");
    }
}

static int fail_request(hl_request *r, halle_host *h, const char *msg)
{
    hl_log(HL_LOG_ERROR, "%s (%s %s)", msg, r->method_name, r->path);
    (void)h;
    return hl_response_error(r, 500, NULL);
}

/* Turns what a handler returned into the response: a string is an HTML body; a table may
 * hold status, body, json, content_type and headers. */
static int apply_result(lua_State *L, hl_request *r, halle_host *h)
{
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        return write_body(r, s, len);
    }
    if (!lua_istable(L, -1))
        return fail_request(r, h, "a route handler must return a string or a table");
    lua_getfield(L, -1, "status");
    if (lua_isinteger(L, -1))
        hl_response_status(r, (int)lua_tointeger(L, -1));
    lua_pop(L, 1);
    lua_getfield(L, -1, "headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
                set_header(r, h, lua_tostring(L, -2), lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "content_type");
    if (lua_type(L, -1) == LUA_TSTRING)
        hl_response_header(r, "Content-Type", lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_getfield(L, -1, "json");
    if (!lua_isnil(L, -1)) {
        json_t *j = to_json(L, -1, 0);
        lua_pop(L, 1);
        if (!j)
            return fail_request(r, h, "a route handler returned a value that is not JSON");
        int rc = hl_response_json(r, r->status, j);
        json_decref(j);
        return rc;
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "body");
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        write_body(r, s, len);
    }
    lua_pop(L, 1);
    return HL_OK;
}

static int route_handler(hl_request *r, void *ud)
{
    lua_cb *cb = ud;
    halle_host *h = cb->host;
    /* Suspended after repeated failures (core/hooks.c): its pages are off until a restart. */
    if (hl_hooks_suspended(hl_worker_hooks(h->worker), h->name))
        return hl_response_error(r, 503, NULL);
    lua_State *L = hl_lua_state(h->lua);
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cb->ref);
    push_request(L, r, 0);
    lua_pushlightuserdata(L, r);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.request");
    hl_err err;
    hl_err_clear(&err);
    int rc = plugin_call(h, 1, 1, &err);
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.request");
    if (rc != HL_OK) {
        lua_settop(L, top);
        return fail_request(r, h, err.msg);
    }
    rc = apply_result(L, r, h);
    lua_settop(L, top);
    return rc;
}

/* ---- hooks ---------------------------------------------------------------------------- */

static int hook_trampoline(void *ud, hl_hook_call *call)
{
    lua_cb *cb = ud;
    halle_host *h = cb->host;
    lua_State *L = hl_lua_state(h->lua);
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cb->ref);
    push_json(L, call->value, 0);
    if (call->ctx)
        push_request(L, call->ctx, 1);
    else
        lua_pushnil(L);
    /* halle.tr, req_lang and the hook runners follow the request the hook runs for. */
    lua_getfield(L, LUA_REGISTRYINDEX, "halle.request");
    void *outer = lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_pushlightuserdata(L, call->ctx);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.request");
    hl_err err;
    hl_err_clear(&err);
    int rc = plugin_call(h, 2, 3, &err);
    if (outer)
        lua_pushlightuserdata(L, outer);
    else
        lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.request");
    if (rc != HL_OK) {
        snprintf(call->stop.message, sizeof call->stop.message, "%s", err.msg);
        lua_settop(L, top);
        return HL_ERR;
    }
    /* return halle.stop(status, message): a table with the stop mark. */
    int result = HL_HOOK_CONTINUE;
    if (lua_istable(L, -3) && lua_getmetatable(L, -3)) {
        luaL_getmetatable(L, STOP_MARK);
        int is_stop = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (is_stop) {
            lua_getfield(L, -3, "status");
            lua_getfield(L, -4, "message");
            call->stop.status = (int)luaL_optinteger(L, -2, 403);
            snprintf(call->stop.message, sizeof call->stop.message, "%s", luaL_optstring(L, -1, ""));
            lua_settop(L, top);
            return HL_HOOK_STOP;
        }
    }
    if (!lua_isnil(L, -3)) { /* a filter's new value */
        json_t *v = to_json(L, -3, 0);
        if (v) {
            json_decref(call->value);
            call->value = v;
        }
    }
    lua_settop(L, top);
    return result;
}

static void cb_free(void *ud)
{
    free(ud);
}

static lua_cb *new_cb(lua_State *L, int fn_idx)
{
    lua_cb *cb = malloc(sizeof *cb);
    if (!cb)
        luaL_error(L, "out of memory");
    cb->host = host_of(L);
    lua_pushvalue(L, fn_idx);
    cb->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return cb;
}

/* ---- the halle table ------------------------------------------------------------------ */

static unsigned parse_methods(lua_State *L, const char *s)
{
    unsigned m = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        unsigned b = hl_router_method_from_name(t);
        if (!b)
            luaL_error(L, "unknown HTTP method '%s'", t);
        m |= b;
    }
    return m;
}

/* halle.route(methods, pattern, fn [, {token_auth = true}]) */
static int l_route(lua_State *L)
{
    unsigned methods = parse_methods(L, luaL_checkstring(L, 1));
    const char *pattern = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    unsigned flags = 0;
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        lua_getfield(L, 4, "token_auth");
        if (lua_toboolean(L, -1))
            flags |= HL_ROUTE_TOKEN_AUTH;
        lua_pop(L, 1);
        lua_settop(L, 3);
    }
    halle_host *h = host_of(L);
    lua_cb *cb = new_cb(L, 3);
    char name[96];
    snprintf(name, sizeof name, "%s.route", h->name);
    hl_err err;
    hl_err_clear(&err);
    /* The callback is owned by the host's list so that it is freed with the plugin. */
    if (hl_worker_route_flags(h->worker, methods, pattern, name, flags, route_handler, cb, &err) != HL_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, cb->ref);
        free(cb);
        return luaL_error(L, "%s", err.msg);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "halle.routes");
    lua_pushlightuserdata(L, cb);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}

int hl_luaplugin_hook_ref(halle_host *h, hl_hooks *hooks, const char *hook, int ref, int priority, hl_err *err)
{
    lua_cb *cb = malloc(sizeof *cb);
    if (!cb)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    cb->host = h;
    cb->ref = ref;
    return hl_hooks_add(hooks, hook, priority, hook_trampoline, cb, cb_free, h->name, err);
}

static int l_hook(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    int prio = (int)luaL_optinteger(L, 3, HL_HOOK_DEFAULT_PRIORITY);
    halle_host *h = host_of(L);
    lua_pushvalue(L, 2);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    hl_err err;
    hl_err_clear(&err);
    if (hl_luaplugin_hook_ref(h, hl_worker_hooks(h->worker), name, ref, prio, &err) != HL_OK)
        return luaL_error(L, "%s", err.msg);
    return 0;
}

static int l_stop(lua_State *L)
{
    lua_Integer status = luaL_optinteger(L, 1, 403);
    const char *msg = luaL_optstring(L, 2, "");
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, msg);
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, STOP_MARK);
    return 1;
}

static int l_log(lua_State *L)
{
    const char *level = luaL_checkstring(L, 1);
    const char *msg = luaL_checkstring(L, 2);
    int lv = !strcmp(level, "debug") ? HL_LOG_DEBUG : !strcmp(level, "warn") ? HL_LOG_WARN
           : !strcmp(level, "error") ? HL_LOG_ERROR : HL_LOG_INFO;
    hl_log(lv, "plugin %s: %s", host_of(L)->name, msg);
    return 0;
}

static int l_setting(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    push_json(L, json_object_get(host_of(L)->settings, name), 0);
    return 1;
}

/* Prepares and binds Lua values under the plugin's policy. Leaves the policy set; the caller
 * clears it. */
static hl_stmt *prepare(lua_State *L, halle_host *h, hl_err *err)
{
    const char *sql = luaL_checkstring(L, 1);
    hl_db *db = hl_worker_db(h->worker);
    if (hl_db_set_policy(db, &h->policy, err) != HL_OK)
        return NULL;
    hl_stmt *st = hl_db_prepare(db, sql, err);
    if (!st)
        return NULL;
    int n = lua_gettop(L);
    for (int i = 2; i <= n; i++) {
        int rc;
        switch (lua_type(L, i)) {
        case LUA_TNIL: rc = hl_db_bind_null(st, i - 1); break;
        case LUA_TBOOLEAN: rc = hl_db_bind_int64(st, i - 1, lua_toboolean(L, i)); break;
        case LUA_TNUMBER:
            rc = lua_isinteger(L, i) ? hl_db_bind_int64(st, i - 1, lua_tointeger(L, i))
                                     : hl_db_bind_double(st, i - 1, lua_tonumber(L, i));
            break;
        case LUA_TSTRING: {
            size_t len;
            const char *s = lua_tolstring(L, i, &len);
            rc = hl_db_bind_text(st, i - 1, s, len);
            break;
        }
        default: rc = hl_err_set(err, HL_EINVAL, "parameter %d: cannot bind a %s", i - 1, luaL_typename(L, i));
        }
        if (rc) {
            if (!err->msg[0])
                hl_err_set(err, rc, "parameter %d does not fit the statement", i - 1);
            hl_db_done(st);
            return NULL;
        }
    }
    return st;
}

/* A plugin's SQL runs on the budget of the Lua call that issued it: SQLite's progress handler
 * charges its steps to the same instruction count and deadline (so a recursive CTE without end
 * is cut), no value may pass SQL_MAX_VALUE bytes (randomblob(200000000) fails at once), and
 * one call returns at most SQL_MAX_ROWS rows and SQL_MAX_BYTES bytes, under the state's
 * memory cap, so the rows never need more memory than the plugin may have. */
#define SQL_STEPS 1000
#define SQL_MAX_VALUE (1 << 20)
#define SQL_MAX_TEXT (100 * 1000)
#define SQL_MAX_ROWS 100000
#define SQL_MAX_BYTES ((size_t)8 << 20)

static int sql_budget(void *ud)
{
    return hl_lua_charge(ud, SQL_STEPS);
}

static int db_call(lua_State *L, int want_rows)
{
    halle_host *h = host_of(L);
    hl_db *db = hl_worker_db(h->worker);
    hl_err err;
    hl_err_clear(&err);
    hl_db_set_budget(db, sql_budget, h->lua, SQL_STEPS, SQL_MAX_VALUE, SQL_MAX_TEXT);
    hl_stmt *st = prepare(L, h, &err);
    if (!st) {
        hl_db_set_budget(db, NULL, NULL, 0, 0, 0);
        hl_db_set_policy(db, NULL, NULL);
        return luaL_error(L, "%s", err.msg);
    }
    lua_newtable(L);
    int rc, row = 0;
    size_t bytes = 0;
    while ((rc = hl_db_step(st, &err)) == HL_DB_ROW) {
        if (!want_rows)
            continue;
        int nc = hl_db_col_count(st);
        for (int c = 0; c < nc; c++)
            bytes += hl_db_col_bytes(st, c) + 16;
        if (bytes > SQL_MAX_BYTES) {
            rc = hl_err_set(&err, HL_ETOOBIG, "more than %zu MiB of rows in one query: add a LIMIT", SQL_MAX_BYTES >> 20);
            break;
        }
        lua_createtable(L, 0, nc);
        for (int c = 0; c < nc; c++) {
            switch (hl_db_col_type(st, c)) {
            case HL_DB_INTEGER: lua_pushinteger(L, (lua_Integer)hl_db_col_int64(st, c)); break;
            case HL_DB_FLOAT: lua_pushnumber(L, hl_db_col_double(st, c)); break;
            case HL_DB_TEXT: lua_pushstring(L, hl_db_col_text(st, c)); break;
            case HL_DB_BLOB: lua_pushlstring(L, hl_db_col_blob(st, c), hl_db_col_bytes(st, c)); break;
            default: lua_pushnil(L); break;
            }
            lua_setfield(L, -2, hl_db_col_name(st, c));
        }
        lua_rawseti(L, -2, ++row);
        if (row > SQL_MAX_ROWS) {
            rc = hl_err_set(&err, HL_ETOOBIG, "more than %d rows: add a LIMIT", SQL_MAX_ROWS);
            break;
        }
    }
    hl_db_done(st);
    hl_db_set_budget(db, NULL, NULL, 0, 0, 0);
    hl_db_set_policy(db, NULL, NULL);
    if (rc == HL_EBUSY)
        h->sql_busy = 1;
    if (rc < 0)
        return luaL_error(L, "%s", err.msg);
    if (!want_rows)
        lua_pushinteger(L, 0);
    return 1;
}

static int l_db_query(lua_State *L) { return db_call(L, 1); }
static int l_db_exec(lua_State *L) { return db_call(L, 0); }

/* The Lua work of halle.db.idempotent runs inside the key's transaction: an error in it (the
 * sandbox's stop included) must not jump over the C frames that hold the transaction open, so it
 * is caught here, the transaction rolled back, and then raised again. */
typedef struct lua_idem {
    lua_State *L;
    int fn;       /* stack index of the work function */
    int raised;   /* its error object is on top of the stack */
} lua_idem;

static int lua_idem_work(halle_host *h, void *ud, int *status, char **body)
{
    lua_idem *c = ud;
    lua_State *L = c->L;
    if (c->raised) { /* a conflict made the transaction start again: forget the last error */
        lua_pop(L, 1);
        c->raised = 0;
    }
    h->sql_busy = 0;
    lua_pushvalue(L, c->fn);
    if (lua_pcall(L, 0, 2, 0) != LUA_OK) {
        c->raised = 1;
        snprintf(h->last_error, sizeof h->last_error, "%s", "the work raised an error");
        /* its SQL met a conflict (PostgreSQL's serialization failure, SQLite's busy file):
         * the transaction is rolled back and the work run again, as for C code */
        return h->sql_busy ? HALLE_EBUSY : HALLE_ERROR;
    }
    int ok = 0;
    lua_Integer st = lua_tointegerx(L, -2, &ok);
    size_t n = 0;
    const char *b = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (!ok || st <= 0 || st > 999 || (lua_type(L, -1) != LUA_TNIL && !b)) {
        lua_pop(L, 2);
        snprintf(h->last_error, sizeof h->last_error, "%s",
                 "halle.db.idempotent: the work returns a status (1..999) and a string body or nil");
        return HALLE_ERROR;
    }
    *status = (int)st;
    *body = b ? strndup(b, n) : NULL;
    lua_pop(L, 2);
    return b && !*body ? HALLE_ERROR : HALLE_OK;
}

/* status, body, replayed = halle.db.idempotent(scope, key, fingerprint_or_nil, function) */
static int l_db_idempotent(lua_State *L)
{
    halle_host *h = host_of(L);
    const char *scope = luaL_checkstring(L, 1), *key = luaL_checkstring(L, 2);
    const char *fp = luaL_optstring(L, 3, NULL);
    luaL_checktype(L, 4, LUA_TFUNCTION);
    lua_settop(L, 4);
    lua_idem c = {L, 4, 0};
    int status = 0;
    char *body = NULL;
    int rc = hl_host_api()->db_idempotent(h, scope, key, fp, lua_idem_work, &c, &status, &body);
    if (c.raised)
        return lua_error(L);
    if (rc < 0)
        return luaL_error(L, "%s", h->last_error);
    lua_pushinteger(L, status);
    if (body)
        lua_pushstring(L, body);
    else
        lua_pushnil(L);
    free(body);
    lua_pushboolean(L, rc == 1);
    return 3;
}

/* n = halle.db.counter_next(scope), inside halle.db.idempotent's work (a transaction). */
static int l_db_counter_next(lua_State *L)
{
    halle_host *h = host_of(L);
    int64_t n = 0;
    int rc = hl_host_api()->db_counter_next(h, luaL_checkstring(L, 1), &n);
    if (rc == HALLE_EBUSY)
        h->sql_busy = 1; /* a conflict: the transaction runs again */
    if (rc != HALLE_OK)
        return luaL_error(L, "%s", h->last_error);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* Declarations the privacy engine and cookie banner collect through their filters. */
static int declare(lua_State *L, const char *list)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, LUA_REGISTRYINDEX, list);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    return 0;
}
static int l_privacy_declare(lua_State *L) { return declare(L, "halle.privacy"); }
static int l_cookie_declare(lua_State *L) { return declare(L, "halle.cookies"); }

/* Appends the plugin's declarations to the value (an array) of privacy.register or
 * cookies.declare. */
static int declarations_filter(void *ud, hl_hook_call *call)
{
    halle_host *h = ud;
    lua_State *L = hl_lua_state(h->lua);
    const char *list = !strcmp(call->hook, "privacy.register") ? "halle.privacy" : "halle.cookies";
    if (!json_is_array(call->value)) {
        json_decref(call->value);
        call->value = json_array();
    }
    lua_getfield(L, LUA_REGISTRYINDEX, list);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        json_t *v = to_json(L, -1, 0);
        lua_pop(L, 1);
        if (json_is_object(v))
            json_object_set_new(v, "plugin", json_string(h->name));
        if (v)
            json_array_append_new(call->value, v);
    }
    lua_pop(L, 1);
    return HL_HOOK_CONTINUE;
}

/* halle.can(req, action, object, owner): the core's permission check for the request's user.
 * action is "view", "edit", "create" or "delete"; object a capability's name
 * ("market.catalog"), a core object's ("operator_pages", "user_account", "user_locks") or,
 * deprecated, one of the market's old short names ("catalog": "market.catalog"). */
static int l_can(lua_State *L)
{
    static const char *const actions[] = {"view", "edit", "create", "delete", NULL};
    static const char *const old[] = {"group_settings", "group_members", "group_orders", "producer_account",
                                      "catalog", "producer_orders", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    int action = luaL_checkoption(L, 2, NULL, actions) + 1;
    const char *object = luaL_checkstring(L, 3);
    lua_Integer owner = luaL_optinteger(L, 4, 0);
    char name[64];
    for (int i = 0; old[i]; i++)
        if (!strcmp(object, old[i]))
            object = (snprintf(name, sizeof name, "market.%s", old[i]), name);
    lua_getfield(L, LUA_REGISTRYINDEX, "halle.request");
    hl_request *r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    lua_pushboolean(L, r && hl_auth_can_name(r->user, (hl_action)action, object, (int64_t)owner));
    return 1;
}

/* halle.capability(name, rules): registers one of the plugin's objects, as api->capability
 * does; rules is a list of {role = "producer" (or "client", "coordinator", "operator"; absent:
 * any logged-in user), scope = "any" | "group" | "owner", actions = {"view", "edit", ...}}.
 * Lua plugins have no ownership callback: for "owner", the object is the owning user's id.
 * Returns the capability's id. */
static int l_capability(lua_State *L)
{
    static const char *const roles[] = {"client", "producer", "coordinator", "operator", NULL};
    static const char *const scopes[] = {"any", "group", "owner", NULL};
    static const char *const actions[] = {"view", "edit", "create", "delete", NULL};
    const char *name = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    halle_cap_rule rules[HL_CAPS_MAX_RULES];
    size_t n = (size_t)luaL_len(L, 2);
    if (n > HL_CAPS_MAX_RULES)
        return luaL_error(L, "capability %s: at most %d rules", name, HL_CAPS_MAX_RULES);
    for (size_t i = 0; i < n; i++) {
        lua_geti(L, 2, (lua_Integer)i + 1);
        luaL_checktype(L, -1, LUA_TTABLE);
        lua_getfield(L, -1, "role");
        rules[i].role = lua_isnil(L, -1) ? 0 : 1u << luaL_checkoption(L, -1, NULL, roles);
        lua_getfield(L, -2, "scope");
        rules[i].scope = (unsigned)luaL_checkoption(L, -1, "any", scopes);
        lua_getfield(L, -3, "actions");
        luaL_checktype(L, -1, LUA_TTABLE);
        rules[i].actions = 0;
        for (lua_Integer k = 1, m = luaL_len(L, -1); k <= m; k++) {
            lua_geti(L, -1, k);
            rules[i].actions |= HALLE_CAN(luaL_checkoption(L, -1, NULL, actions) + 1);
            lua_pop(L, 1);
        }
        lua_pop(L, 4);
    }
    halle_host *h = host_of(L);
    int id = hl_host_capability(h, name, rules, n, NULL, NULL);
    if (id < 0)
        return luaL_error(L, "%s", h->last_error);
    lua_pushinteger(L, id);
    return 1;
}

static int l_mail(lua_State *L)
{
    const char *to = luaL_checkstring(L, 1), *subject = luaL_checkstring(L, 2), *body = luaL_checkstring(L, 3);
    hl_err err;
    hl_err_clear(&err);
    int64_t id = hl_mail_queue(hl_worker_db(host_of(L)->worker), to, subject, body, &err);
    if (id < 0)
        return luaL_error(L, "%s", err.msg);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* ---- jobs: halle.job(name, schedule, fn), halle.job_at(name, when, payload), halle.now() */

/* Runs in the jobs process, under the same limits as a hook; an error fails the run. */
static int lua_job_run(void *ud, const char *payload, hl_err *err)
{
    lua_cb *cb = ud;
    lua_State *L = hl_lua_state(cb->host->lua);
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cb->ref);
    if (payload)
        lua_pushstring(L, payload);
    else
        lua_pushnil(L);
    int rc = plugin_call(cb->host, 1, 0, err);
    lua_settop(L, top);
    return rc;
}

static int l_job(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1), *schedule = luaL_checkstring(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    halle_host *h = host_of(L);
    lua_cb *cb = new_cb(L, 3);
    hl_err err;
    hl_err_clear(&err);
    if (hl_host_add_job(h, name, schedule, lua_job_run, cb, cb_free, &err) != HL_OK) {
        luaL_unref(L, LUA_REGISTRYINDEX, cb->ref);
        free(cb);
        return luaL_error(L, "%s", err.msg);
    }
    return 0;
}

static int l_job_at(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_Integer when = luaL_optinteger(L, 2, 0);
    const char *payload = luaL_optstring(L, 3, NULL);
    halle_host *h = host_of(L);
    char full[128];
    hl_err err;
    hl_err_clear(&err);
    int64_t id = hl_host_job_name(h, name, full, sizeof full) != HL_OK
                     ? hl_err_set(&err, HL_EINVAL, "job '%s': a plugin queues only its own jobs", name)
                     : hl_jobs_enqueue(hl_worker_db(h->worker), full, (int64_t)when, payload, &err);
    if (id < 0)
        return luaL_error(L, "%s", err.msg);
    lua_pushinteger(L, (lua_Integer)id);
    return 1;
}

/* halle.user_get(id) -> {id, name, email} or nil; halle.user_search(q, max) -> {ids} */
static int l_user_get(lua_State *L)
{
    const halle_api *api = hl_host_api();
    json_t *u = api->user_get(host_of(L), (int64_t)luaL_checkinteger(L, 1));
    if (!u) {
        lua_pushnil(L);
        return 1;
    }
    push_json(L, u, 0);
    json_decref(u);
    return 1;
}

static int l_user_search(lua_State *L)
{
    const halle_api *api = hl_host_api();
    halle_host *h = host_of(L);
    json_t *ids = api->user_search(h, luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, 100));
    if (!ids)
        return luaL_error(L, "%s", api->last_error(h));
    push_json(L, ids, 0);
    json_decref(ids);
    return 1;
}

/* halle.rate_allow(key, window_seconds, max) -> allowed, retry_after */
static int l_rate_allow(lua_State *L)
{
    halle_host *h = host_of(L);
    const char *key = luaL_checkstring(L, 1);
    lua_Integer window = luaL_checkinteger(L, 2), max = luaL_checkinteger(L, 3);
    if (window <= 0 || window > 86400 * 366 || max <= 0 || max > 1000000000)
        return luaL_error(L, "rate_allow: window and max must be positive");
    const halle_api *api = hl_host_api();
    int retry = 0;
    int rc = api->rate_allow(h, key, (int)window, (int)max, &retry);
    if (rc < 0)
        return luaL_error(L, "%s", api->last_error(h));
    lua_pushboolean(L, rc == 1);
    lua_pushinteger(L, retry);
    return 2;
}

static int l_now(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)hl_clock_now());
    return 1;
}

static hl_request *current_request(lua_State *L);

/* ---- templates: halle.render(name, context) ------------------------------------------- */

struct hl_host_tpl {
    char *name;
    hl_tpl *tpl;
};

static int tpl_name_ok(const char *n)
{
    if (!*n || strlen(n) > 100 || strstr(n, "..") || n[0] == '/')
        return 0;
    for (; *n; n++)
        if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_' || *n == '-' || *n == '/'))
            return 0;
    return 1;
}

/* templates/NAME.mustache beneath the plugin's folder only (a symbolic link out is refused,
 * and logged: it is an attack or a packaging mistake). */
static char *read_plugin_file(const char *dir, const char *name, size_t *len)
{
    if (!tpl_name_ok(name))
        return NULL;
    char rel[160];
    snprintf(rel, sizeof rel, "templates/%s.mustache", name);
    char *buf = NULL;
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_file_read_beneath(dir, rel, (size_t)1 << 20, &buf, len, NULL, &err);
    if (rc != HL_OK && rc != HL_ENOTFOUND)
        hl_log(HL_LOG_WARN, "template refused: %s", err.msg);
    return rc == HL_OK ? buf : NULL;
}

static char *tpl_loader(void *ud, const char *name, size_t *len)
{
    return read_plugin_file(ud, name, len);
}

static int l_render(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    halle_host *h = host_of(L);
    /* {{_ Texte}} tags are translated when compiling: one compiled template per language. */
    hl_request *r = current_request(L);
    hl_i18n_tpl tr = {r ? r->i18n : NULL, r && r->lang ? r->lang : "fr"};
    char key[160];
    snprintf(key, sizeof key, "%s:%s", tr.lang, name);
    hl_tpl *tpl = NULL;
    for (size_t i = 0; i < h->ntpls; i++)
        if (!strcmp(h->tpls[i].name, key))
            tpl = h->tpls[i].tpl;
    hl_err err;
    hl_err_clear(&err);
    if (!tpl) {
        const char *dir = NULL;
        lua_getfield(L, LUA_REGISTRYINDEX, "halle.dir");
        dir = lua_tostring(L, -1);
        lua_pop(L, 1);
        size_t len = 0;
        char *text = dir ? read_plugin_file(dir, name, &len) : NULL;
        if (!text)
            return luaL_error(L, "no template templates/%s.mustache in plugin %s", name, h->name);
        char label[160];
        snprintf(label, sizeof label, "%s/templates/%s.mustache", h->name, name);
        hl_tpl_opts o = {.loader = tpl_loader, .loader_ud = (void *)dir, .strict_partials = 1,
                         .translate = tr.i18n ? hl_i18n_tpl_translate : NULL, .translate_ud = &tr};
        tpl = hl_tpl_compile(label, text, len, &o, &err);
        free(text);
        if (!tpl)
            return luaL_error(L, "%s", err.msg);
        struct hl_host_tpl *n = realloc(h->tpls, (h->ntpls + 1) * sizeof *n);
        if (!n) {
            hl_tpl_free(tpl);
            return luaL_error(L, "out of memory");
        }
        h->tpls = n;
        h->tpls[h->ntpls].name = strdup(key);
        h->tpls[h->ntpls++].tpl = tpl;
    }
    json_t *ctx = lua_isnoneornil(L, 2) ? json_object() : to_json(L, 2, 0);
    char *out = NULL;
    size_t olen = 0;
    int rc = hl_tpl_render(tpl, ctx, &out, &olen, &err);
    json_decref(ctx);
    if (rc != HL_OK) {
        free(out);
        return luaL_error(L, "%s", err.msg);
    }
    lua_pushlstring(L, out, olen);
    free(out);
    return 1;
}

static int l_markdown(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    char *html = NULL;
    hl_err err;
    hl_err_clear(&err);
    if (hl_markdown_render(text, len, &html, &err) != HL_OK)
        return luaL_error(L, "%s", err.msg);
    lua_pushstring(L, html);
    free(html);
    return 1;
}

/* halle.enabled_for(scope): is this (group-level) plugin turned on for "group:ID"? */
static int l_enabled_for(lua_State *L)
{
    halle_host *h = host_of(L);
    lua_pushboolean(L, hl_plugin_scope_enabled(hl_worker_db(h->worker), h->name, luaL_checkstring(L, 1)));
    return 1;
}

/* ---- the SDK in Lua: language, transactions, hooks, formatting, text ------------------ */

/* The request of the running route handler or hook, NULL in jobs and at load time. */
static hl_request *current_request(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "halle.request");
    hl_request *r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return r;
}

/* An optional language argument, else the page's, else French. */
static const char *lang_arg(lua_State *L, int idx)
{
    if (!lua_isnoneornil(L, idx))
        return luaL_checkstring(L, idx);
    hl_request *r = current_request(L);
    return r && r->lang ? r->lang : "fr";
}

/* halle.tr(msgid): the French source text in the page's language. */
static int l_tr(lua_State *L)
{
    const char *msgid = luaL_checkstring(L, 1);
    hl_request *r = current_request(L);
    lua_pushstring(L, r ? hl_request_tr(r, msgid) : msgid);
    return 1;
}

static int l_req_lang(lua_State *L)
{
    lua_pushstring(L, lang_arg(L, 1));
    return 1;
}

typedef struct lua_tx {
    lua_State *L;
    int failed;   /* the function raised an error: its message is on the stack */
    int refused;  /* it returned false */
} lua_tx;

static int lua_tx_run(hl_db *db, void *ud, hl_err *err)
{
    (void)db;
    lua_tx *t = ud;
    halle_host *h = host_of(t->L);
    lua_settop(t->L, 1); /* a conflict may run it again: no error or result of the last attempt */
    t->failed = 0;
    h->sql_busy = 0;
    lua_pushvalue(t->L, 1);
    if (lua_pcall(t->L, 0, 1, 0) != LUA_OK) {
        t->failed = 1;
        /* a conflict in its SQL: the transaction is rolled back and run again */
        return hl_err_set(err, h->sql_busy ? HL_EBUSY : HL_ERR, "%s",
                          lua_tostring(t->L, -1) ? lua_tostring(t->L, -1) : "error");
    }
    if (lua_type(t->L, -1) == LUA_TBOOLEAN && !lua_toboolean(t->L, -1)) {
        t->refused = 1;
        return hl_err_set(err, HL_ERR, "the transaction's function returned false");
    }
    return HL_OK;
}

/* halle.db.tx(fn): fn runs in a transaction, committed when it returns (anything but false),
 * rolled back when it returns false (then tx returns false) or raises an error (raised again). */
static int db_tx(lua_State *L, int durable)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    halle_host *h = host_of(L);
    lua_tx t = {L, 0, 0};
    hl_err err;
    hl_err_clear(&err);
    int rc = durable ? hl_db_tx_durable(hl_worker_db(h->worker), lua_tx_run, &t, &err)
                     : hl_db_tx(hl_worker_db(h->worker), lua_tx_run, &t, &err);
    if (t.failed)
        return lua_error(L);
    if (t.refused) {
        lua_pushboolean(L, 0);
        return 1;
    }
    if (rc != HL_OK)
        return luaL_error(L, "%s", err.msg);
    if (lua_isnil(L, -1))
        lua_pushboolean(L, 1);
    return 1;
}

static int l_db_tx(lua_State *L) { return db_tx(L, 0); }
/* halle.db.tx_durable(fn): the same, committed with synchronous=FULL (money: core/db.h). */
static int l_db_tx_durable(lua_State *L) { return db_tx(L, 1); }

/* halle.declare_hook("PLUGIN.event", "action" | "filter") */
static int l_declare_hook(lua_State *L)
{
    static const char *const kinds[] = {"action", "filter", NULL};
    const char *name = luaL_checkstring(L, 1);
    int kind = luaL_checkoption(L, 2, "action", kinds) ? HALLE_HOOK_FILTER : HALLE_HOOK_ACTION;
    const halle_api *api = hl_host_api();
    halle_host *h = host_of(L);
    if (api->declare_hook(h, name, kind) != HALLE_OK)
        return luaL_error(L, "declare_hook %s: %s", name, api->last_error(h));
    return 0;
}

/* halle.run_filter(hook, value) -> value [, stopped message]: the value every callback
 * returned; when one refused, nil and its message. */
static int l_run_filter(lua_State *L)
{
    const char *hook = luaL_checkstring(L, 1);
    json_t *v = lua_isnoneornil(L, 2) ? json_null() : to_json(L, 2, 0);
    if (!v)
        return luaL_error(L, "run_filter %s: the value is not JSON", hook);
    const halle_api *api = hl_host_api();
    halle_host *h = host_of(L);
    int rc = api->run_filter(h, current_request(L), hook, &v);
    if (rc < 0) {
        json_decref(v);
        return luaL_error(L, "run_filter %s: %s", hook, api->last_error(h));
    }
    if (rc == HALLE_HOOK_STOP) {
        json_decref(v);
        lua_pushnil(L);
        lua_pushstring(L, api->last_error(h));
        return 2;
    }
    push_json(L, v, 0);
    json_decref(v);
    return 1;
}

static int l_run_action(lua_State *L)
{
    const char *hook = luaL_checkstring(L, 1);
    json_t *v = lua_isnoneornil(L, 2) ? json_null() : to_json(L, 2, 0);
    if (!v)
        return luaL_error(L, "run_action %s: the data is not JSON", hook);
    const halle_api *api = hl_host_api();
    halle_host *h = host_of(L);
    int rc = api->run_action(h, current_request(L), hook, v);
    json_decref(v);
    if (rc < 0)
        return luaL_error(L, "run_action %s: %s", hook, api->last_error(h));
    return 0;
}

/* halle.format_price(cents [, currency [, lang]]), format_number(v, decimals [, lang]),
 * format_date(epoch [, lang]): in the page's language unless lang is given. */
static int l_format_price(lua_State *L)
{
    lua_Integer cents = luaL_checkinteger(L, 1);
    const char *cur = luaL_optstring(L, 2, "EUR");
    char buf[64];
    if (hl_host_api()->format_price(lang_arg(L, 3), (int64_t)cents, cur, buf, sizeof buf) != HALLE_OK)
        return luaL_error(L, "format_price: not a price");
    lua_pushstring(L, buf);
    return 1;
}

static int l_format_number(lua_State *L)
{
    lua_Number v = luaL_checknumber(L, 1);
    lua_Integer dec = luaL_optinteger(L, 2, 0);
    char buf[64];
    if (dec < 0 || dec > 9 || hl_host_api()->format_number(lang_arg(L, 3), (double)v, (int)dec, buf, sizeof buf) != HALLE_OK)
        return luaL_error(L, "format_number: not a number or decimals not 0-9");
    lua_pushstring(L, buf);
    return 1;
}

static int l_format_date(lua_State *L)
{
    lua_Integer epoch = luaL_checkinteger(L, 1);
    char buf[96];
    if (hl_host_format_date(lang_arg(L, 2), (int64_t)epoch, buf, sizeof buf) != HL_OK)
        return luaL_error(L, "format_date: not a date");
    lua_pushstring(L, buf);
    return 1;
}

/* halle.text_valid(s, max_bytes [, multiline]) -> number of characters, or nil */
static int l_text_valid(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    lua_Integer max = luaL_checkinteger(L, 2);
    long n = max < 0 || strlen(s) != len ? -1 : hl_text_chars(s, (size_t)max, lua_toboolean(L, 3));
    if (n < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, n);
    return 1;
}

static int l_fold(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    if (len > 64 * 1024)
        return luaL_error(L, "fold: text longer than 64 KiB");
    size_t cap = 2 * len + 1;
    char *out = lua_newuserdatauv(L, cap, 0); /* garbage-collected, counted by the memory cap */
    size_t n = hl_text_fold(s, out, cap);
    lua_pushlstring(L, out, n);
    return 1;
}

static int l_like_pattern(lua_State *L)
{
    const char *q = luaL_checkstring(L, 1);
    char out[2100];
    if (hl_text_like(q, out, sizeof out))
        return luaL_error(L, "like_pattern: search text too long");
    lua_pushstring(L, out);
    return 1;
}

/* halle.paginate(page, limit, total [, base]) -> {page, pages, offset, links...} */
static int l_paginate(lua_State *L)
{
    lua_Integer page = luaL_checkinteger(L, 1), limit = luaL_checkinteger(L, 2), total = luaL_checkinteger(L, 3);
    const char *base = luaL_optstring(L, 4, "");
    if (limit < 1 || limit > 100000 || page > 1000000000 || page < -1000000000 || strlen(base) > 1000)
        return luaL_error(L, "paginate: limit must be 1-100000, base at most 1000 bytes");
    json_t *o = hl_text_paginate((long)page, (long)limit, (long long)total, base);
    if (!o)
        return luaL_error(L, "out of memory");
    push_json(L, o, 0);
    json_decref(o);
    return 1;
}

/* ---- one list: every struct halle_api member and its Lua twin --------------------------- */

/* What Lua sees, installed from this list only: "halle.X" or "halle.T.X". */
static const struct {
    const char *name;
    lua_CFunction fn;
} lua_fns[] = {
    {"route", l_route}, {"hook", l_hook}, {"stop", l_stop}, {"log", l_log}, {"setting", l_setting},
    {"can", l_can}, {"capability", l_capability}, {"mail", l_mail}, {"render", l_render}, {"markdown", l_markdown},
    {"enabled_for", l_enabled_for}, {"job", l_job}, {"job_at", l_job_at}, {"now", l_now},
    {"rate_allow", l_rate_allow}, {"user_get", l_user_get}, {"user_search", l_user_search}, {"tr", l_tr}, {"req_lang", l_req_lang}, {"declare_hook", l_declare_hook},
    {"run_filter", l_run_filter}, {"run_action", l_run_action}, {"format_price", l_format_price},
    {"format_number", l_format_number}, {"format_date", l_format_date}, {"text_valid", l_text_valid},
    {"fold", l_fold}, {"like_pattern", l_like_pattern}, {"paginate", l_paginate},
    {"db.query", l_db_query}, {"db.exec", l_db_exec}, {"db.tx", l_db_tx}, {"db.tx_durable", l_db_tx_durable},
    {"db.idempotent", l_db_idempotent}, {"db.counter_next", l_db_counter_next},
    {"privacy.declare", l_privacy_declare}, {"cookies.declare", l_cookie_declare},
};

/* Each C API member (include/halle/plugin.h) with its Lua counterpart: a function of the
 * halle table (HL_TWIN "halle.x", checked against lua_fns), a field of the request table a
 * handler or hook receives (HL_REQ "req.x"), or an exemption saying why Lua needs none.
 * tests/integration/test_luaapi.py parses the header and this list: a member added to the C
 * API without a line here fails it, and so does a twin Lua does not have. */
#define HL_TWIN(c, lua) {c, lua, NULL}
#define HL_REQ(c, field) {c, field, NULL}
#define HL_EXEMPT(c, why) {c, NULL, why}
static const hl_lua_twin lua_twins[] = {
    HL_EXEMPT("api_version", "data, not a function"),
    HL_EXEMPT("struct_size", "data, not a function"),
    HL_TWIN("log", "halle.log"),
    HL_TWIN("route", "halle.route"),
    HL_TWIN("hook", "halle.hook"),
    HL_TWIN("declare_hook", "halle.declare_hook"),
    HL_TWIN("setting", "halle.setting"),
    HL_EXEMPT("last_error", "a failed call raises a Lua error carrying the message"),
    HL_EXEMPT("call_value", "a hook callback receives the value as its first argument"),
    HL_EXEMPT("call_set_value", "a filter callback returns the new value"),
    HL_EXEMPT("call_request", "a hook callback receives the request table as its second argument"),
    HL_TWIN("call_stop", "halle.stop"),
    HL_REQ("req_method", "req.method"),
    HL_REQ("req_path", "req.path"),
    HL_REQ("req_param", "req.form"),
    HL_REQ("req_route_param", "req.params"),
    HL_REQ("req_header", "req.header"),
    HL_REQ("req_cookie", "req.cookies"),
    HL_EXEMPT("req_body", "form fields and files are in req.form; raw bodies are for token-auth C plugins"),
    HL_EXEMPT("resp_status", "a handler returns {status = N}"),
    HL_EXEMPT("resp_header", "a handler returns {headers = {...}}"),
    HL_EXEMPT("resp_write", "a handler returns a string or {body = ...}"),
    HL_EXEMPT("resp_html", "a handler returns a string; halle.render escapes"),
    HL_EXEMPT("resp_json", "a handler returns {json = value}"),
    HL_EXEMPT("resp_error", "a handler returns {status = N, body = ...} or raises an error (500)"),
    HL_TWIN("db_run", "halle.db.exec"),
    HL_TWIN("db_query", "halle.db.query"),
    HL_EXEMPT("db_step", "halle.db.query returns every row as a table"),
    HL_EXEMPT("db_col_count", "halle.db.query returns rows as tables"),
    HL_EXEMPT("db_col_int", "halle.db.query returns rows as tables"),
    HL_EXEMPT("db_col_double", "halle.db.query returns rows as tables"),
    HL_EXEMPT("db_col_text", "halle.db.query returns rows as tables"),
    HL_EXEMPT("db_done", "halle.db.query finishes its statement"),
    HL_REQ("req_user", "req.user"),
    HL_TWIN("can", "halle.can"),
    HL_TWIN("mail", "halle.mail"),
    HL_REQ("req_csrf", "req.csrf"),
    HL_EXEMPT("resp_redirect", "a handler returns {status = 303, headers = {Location = ...}}"),
    HL_TWIN("render", "halle.render"),
    HL_EXEMPT("set_group_theme", "Lua plugins render their own templates (halle.render), not the theme chain"),
    HL_REQ("req_file", "req.form"),
    HL_REQ("req_user_name", "req.user"),
    HL_EXEMPT("user_add_role", "role changes are the operator's and trusted C plugins' (docs/security.md)"),
    HL_TWIN("db_tx", "halle.db.tx"),
    HL_EXEMPT("db_last_id", "use INSERT ... RETURNING id with halle.db.query"),
    HL_EXEMPT("command", "command-line commands run with full rights: C plugins only"),
    HL_TWIN("markdown", "halle.markdown"),
    HL_EXEMPT("free", "memory is garbage-collected in Lua"),
    HL_EXEMPT("scope_plugins", "the group plugin settings page is the market's (C)"),
    HL_EXEMPT("scope_set", "turning plugins on is the coordinator's, through a C plugin's page"),
    HL_TWIN("scope_enabled", "halle.enabled_for"),
    HL_TWIN("run_filter", "halle.run_filter"),
    HL_TWIN("run_action", "halle.run_action"),
    HL_EXEMPT("themes", "choosing a theme is the market's (C)"),
    HL_EXEMPT("user_remove_role", "role changes are the operator's and trusted C plugins' (docs/security.md)"),
    HL_EXEMPT("site_url", "links in Lua pages are relative"),
    HL_TWIN("tr", "halle.tr"),
    HL_TWIN("req_lang", "halle.req_lang"),
    HL_EXEMPT("db_col_blob", "halle.db.query returns blobs as strings"),
    HL_EXEMPT("db_col_bytes", "halle.db.query returns blobs as strings (#s)"),
    HL_TWIN("route_flags", "halle.route"),
    HL_TWIN("job", "halle.job"),
    HL_TWIN("job_at", "halle.job_at"),
    HL_TWIN("now", "halle.now"),
    HL_TWIN("rate_allow", "halle.rate_allow"),
    HL_TWIN("format_price", "halle.format_price"),
    HL_TWIN("format_number", "halle.format_number"),
    HL_TWIN("format_date", "halle.format_date"),
    HL_TWIN("text_valid", "halle.text_valid"),
    HL_TWIN("fold", "halle.fold"),
    HL_TWIN("like_pattern", "halle.like_pattern"),
    HL_TWIN("paginate", "halle.paginate"),
    HL_TWIN("rows_json", "halle.db.query"),
    HL_TWIN("user_get", "halle.user_get"),
    HL_TWIN("user_search", "halle.user_search"),
    HL_EXEMPT("user_create", "creating accounts is the operator's and trusted C plugins' (docs/security.md)"),
    HL_EXEMPT("db_insert", "use INSERT ... RETURNING id with halle.db.query"),
    HL_EXEMPT("db_col_is_null", "halle.db.query gives NULL as nil"),
    HL_EXEMPT("db_errmsg", "a failed statement raises a Lua error carrying the message"),
    HL_TWIN("db_tx_durable", "halle.db.tx_durable"),
    HL_TWIN("db_idempotent", "halle.db.idempotent"),
    HL_TWIN("db_counter_next", "halle.db.counter_next"),
    HL_TWIN("capability", "halle.capability"),
    HL_TWIN("can_name", "halle.can"),
};

const hl_lua_twin *hl_luaplugin_twins(size_t *n)
{
    *n = sizeof lua_twins / sizeof lua_twins[0];
    return lua_twins;
}

int hl_luaplugin_has(const char *name)
{
    if (!name || strncmp(name, "halle.", 6))
        return 0;
    for (size_t i = 0; i < sizeof lua_fns / sizeof lua_fns[0]; i++)
        if (!strcmp(lua_fns[i].name, name + 6))
            return 1;
    return 0;
}

/* Sets every function of lua_fns into the table on top of the stack (sub-tables made). */
static void install_fns(lua_State *L)
{
    for (size_t i = 0; i < sizeof lua_fns / sizeof lua_fns[0]; i++) {
        const char *dot = strchr(lua_fns[i].name, '.');
        if (!dot) {
            lua_pushcfunction(L, lua_fns[i].fn);
            lua_setfield(L, -2, lua_fns[i].name);
            continue;
        }
        lua_pushlstring(L, lua_fns[i].name, (size_t)(dot - lua_fns[i].name));
        if (lua_rawget(L, -2) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushlstring(L, lua_fns[i].name, (size_t)(dot - lua_fns[i].name));
            lua_pushvalue(L, -2);
            lua_rawset(L, -4);
        }
        lua_pushcfunction(L, lua_fns[i].fn);
        lua_setfield(L, -2, dot + 1);
        lua_pop(L, 1);
    }
}

int hl_luaplugin_load(halle_host *h, const hl_plugin_list *all, const hl_plugin_info *p, hl_err *err)
{
    hl_lua_limits lim = {0, 0, 0};
    h->lua = hl_lua_new(p->name, p->path, &lim, err);
    if (!h->lua)
        return err->code ? err->code : HL_ERR;
    int rc = hl_plugin_policy(all, p, &h->policy);
    if (rc)
        return hl_err_set(err, rc, "out of memory");
    lua_State *L = hl_lua_state(h->lua);
    lua_pushlightuserdata(L, h);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.host");
    lua_pushstring(L, p->path);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.dir");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.routes");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.privacy");
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "halle.cookies");
    luaL_newmetatable(L, STOP_MARK);
    lua_pop(L, 1);

    /* The sandbox created a global `halle` table (holding re); the API joins it. */
    if (lua_getglobal(L, "halle") != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setglobal(L, "halle");
    }
    install_fns(L);
    lua_pushstring(L, p->name);
    lua_setfield(L, -2, "name");
    lua_pop(L, 1);

    hl_hooks *hooks = hl_worker_hooks(h->worker);
    if ((rc = hl_hooks_add(hooks, "privacy.register", HL_HOOK_DEFAULT_PRIORITY, declarations_filter, h, NULL, h->name, err)) ||
        (rc = hl_hooks_add(hooks, "cookies.declare", HL_HOOK_DEFAULT_PRIORITY, declarations_filter, h, NULL, h->name, err)))
        return rc;
    const char *main_file = json_string_value(json_object_get(p->manifest, "main"));
    rc = hl_lua_run_file(h->lua, main_file ? main_file : "main.lua", err);
    sql_reset(h);
    return rc;
}

void hl_luaplugin_unload(halle_host *h)
{
    if (!h->lua)
        return;
    lua_State *L = hl_lua_state(h->lua);
    if (lua_getfield(L, LUA_REGISTRYINDEX, "halle.routes") == LUA_TTABLE) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            free(lua_touserdata(L, -1));
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    hl_lua_free(h->lua);
    h->lua = NULL;
    for (size_t i = 0; i < h->ntpls; i++) {
        free(h->tpls[i].name);
        hl_tpl_free(h->tpls[i].tpl);
    }
    free(h->tpls);
    h->tpls = NULL;
    h->ntpls = 0;
    hl_plugin_policy_free(&h->policy);
}
