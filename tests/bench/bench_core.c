/* Micro-benchmarks of the hot paths, run by scripts/bench: routing a path through a table of
 * 50 routes, and dispatching a filter hook to a C callback and to a Lua callback (through the
 * same trampoline the Lua plugins use). Prints nanoseconds per operation. */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/hooks.h"
#include "core/host.h"
#include "core/lua.h"
#include "core/router.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int c_filter(void *ud, hl_hook_call *call)
{
    (void)ud;
    json_integer_set(call->value, json_integer_value(call->value) + 1);
    return HL_HOOK_CONTINUE;
}

static int dummy(void) { return 0; }

static void bench_router(void)
{
    hl_router *r = hl_router_new();
    hl_err err;
    char pat[128];
    for (int i = 0; i < 48; i++) {
        snprintf(pat, sizeof pat, "/section%d/(?<slug>[a-z0-9-]+)", i);
        hl_router_add(r, HL_METHOD_GET, pat, "r", (void *)dummy, NULL, &err);
    }
    hl_router_add(r, HL_METHOD_GET, "/groups/(?<group>[a-z0-9-]+)/products/(?<id>[0-9]+)", "p", (void *)dummy, NULL, &err);
    hl_router_add(r, HL_METHOD_GET, "/", "home", (void *)dummy, NULL, &err);
    hl_arena *a = hl_arena_new(8192);
    const int n = 200000;
    const char *path = "/groups/amap-du-plateau/products/1234";
    double t0 = now_ns();
    for (int i = 0; i < n; i++) {
        hl_route_match m;
        hl_router_match(r, HL_METHOD_GET, path, strlen(path), a, &m);
        hl_arena_reset(a);
    }
    printf("router: match the last of 50 routes, 2 captures   %8.0f ns\n", (now_ns() - t0) / n);
    hl_arena_free(a);
    hl_router_free(r);
}

static void bench_hooks(void)
{
    hl_err err;
    hl_hooks *h = hl_hooks_new();
    hl_hooks_declare(h, "bench.c", HL_HOOK_FILTER, &err);
    hl_hooks_declare(h, "bench.lua", HL_HOOK_FILTER, &err);
    hl_hooks_add(h, "bench.c", 10, c_filter, NULL, NULL, "bench", &err);

    halle_host host;
    memset(&host, 0, sizeof host);
    host.name = "bench";
    hl_lua_limits lim = {0, 0, 0};
    host.lua = hl_lua_new("bench", ".", &lim, &err);
    if (!host.lua) {
        printf("lua: %s\n", err.msg);
        return;
    }
    lua_State *L = hl_lua_state(host.lua);
    const char *code = "function cb(v) return v + 1 end";
    if (hl_lua_run_string(host.lua, "bench", code, strlen(code), &err) != HL_OK) {
        printf("lua: %s\n", err.msg);
        return;
    }
    lua_getglobal(L, "cb");
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (hl_luaplugin_hook_ref(&host, h, "bench.lua", ref, 10, &err) != HL_OK) {
        printf("hook: %s\n", err.msg);
        return;
    }
    hl_hooks_freeze(h);
    int idc = hl_hooks_id(h, "bench.c"), idl = hl_hooks_id(h, "bench.lua");
    json_t *v = json_integer(0);
    const int n = 1000000;
    double t0 = now_ns();
    for (int i = 0; i < n; i++)
        hl_hooks_run_filter(h, idc, &v, NULL, NULL);
    printf("hooks: filter dispatch to one C callback          %8.0f ns\n", (now_ns() - t0) / n);
    t0 = now_ns();
    for (int i = 0; i < n; i++)
        hl_hooks_run_filter(h, idl, &v, NULL, NULL);
    double lua_ns = (now_ns() - t0) / n;
    printf("hooks: filter dispatch to one Lua callback        %8.0f ns   (target < 1000 ns)\n", lua_ns);
    if (json_integer_value(v) != 2 * (json_int_t)n)
        printf("hooks: WRONG RESULT %lld\n", (long long)json_integer_value(v));
    json_decref(v);
    hl_hooks_free(h);
    hl_lua_free(host.lua);
}

int main(void)
{
    bench_router();
    bench_hooks();
    return 0;
}
