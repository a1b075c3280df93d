/* Unit tests for core/lua.c: the plugin sandbox with real Lua code: calls and errors, the
 * instruction, time and memory limits (also under pcall and in coroutines), what the
 * restricted library removes or refuses, require() in a plugin folder, and halle.re. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/lua.h"

/* Small limits so that the suite is quick; the deadline is generous where a test expects the
 * instruction limit, so that a slow run (valgrind) still hits the limit it is about. */
static const hl_lua_limits LIM = {8u << 20, 10000000, 3000};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static hl_lua *mk(const char *dir, const hl_lua_limits *lim)
{
    hl_err err = {0};
    hl_lua *H = hl_lua_new("demo", dir, lim ? lim : &LIM, &err);
    if (!H)
        fail_msg("hl_lua_new: %s", err.msg);
    return H;
}

static int run(hl_lua *H, const char *code, hl_err *err)
{
    hl_err_clear(err);
    return hl_lua_run_string(H, "test.lua", code, strlen(code), err);
}

static void ok(hl_lua *H, const char *code)
{
    hl_err err;
    int top = lua_gettop(hl_lua_state(H));
    if (run(H, code, &err) != HL_OK)
        fail_msg("expected success, got %d: %s\n--- code:\n%s", err.code, err.msg, code);
    assert_int_equal(lua_gettop(hl_lua_state(H)), top);
}

/* Runs code that must fail with rc and a message containing want. */
static void fails(hl_lua *H, const char *code, int rc, const char *want)
{
    hl_err err;
    int top = lua_gettop(hl_lua_state(H));
    int got = run(H, code, &err);
    if (got != rc || !strstr(err.msg, want))
        fail_msg("expected %d \"%s\", got %d \"%s\"\n--- code:\n%s", rc, want, got, err.msg, code);
    assert_int_equal(lua_gettop(hl_lua_state(H)), top);
}

/* The server keeps using a state after a plugin error or a cut: it must still work. */
static void still_works(hl_lua *H)
{
    ok(H, "function answer(x) return x * 2 end");
    lua_State *L = hl_lua_state(H);
    lua_getglobal(L, "answer");
    lua_pushinteger(L, 21);
    hl_err err;
    assert_int_equal(hl_lua_call(H, 1, 1, &err), HL_OK);
    assert_int_equal(lua_tointeger(L, -1), 42);
    lua_pop(L, 1);
    assert_int_equal(lua_gettop(L), 0);
}

static void test_call_returns_values(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    lua_State *L = hl_lua_state(H);
    ok(H, "function add(a, b) return a + b, 'sum of ' .. a .. ' and ' .. b end");
    lua_getglobal(L, "add");
    lua_pushinteger(L, 2);
    lua_pushinteger(L, 3);
    hl_err err;
    assert_int_equal(hl_lua_call(H, 2, 2, &err), HL_OK);
    assert_int_equal(lua_gettop(L), 2);
    assert_int_equal(lua_tointeger(L, 1), 5);
    assert_string_equal(lua_tostring(L, 2), "sum of 2 and 3");
    lua_settop(L, 0);

    /* LUA_MULTRET, and values below the function are left alone. */
    lua_pushliteral(L, "below");
    ok(H, "function three() return 1, 2, 3 end");
    lua_getglobal(L, "three");
    assert_int_equal(hl_lua_call(H, 0, LUA_MULTRET, &err), HL_OK);
    assert_int_equal(lua_gettop(L), 4);
    assert_string_equal(lua_tostring(L, 1), "below");
    assert_int_equal(lua_tointeger(L, 4), 3);
    lua_settop(L, 0);

    assert_ptr_equal(hl_lua_from_state(L), H);
    assert_string_equal(hl_lua_name(H), "demo");
    assert_true(hl_lua_memory(H) > 0 && hl_lua_memory(H) < LIM.memory);
    hl_lua_free(H);
}

static void test_errors(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    lua_State *L = hl_lua_state(H);
    hl_err err;
    assert_int_equal(run(H, "local x = 1\nlocal function f()\n  error('boom')\nend\nf()\n", &err), HL_ERR);
    assert_string_equal(err.msg, "plugin demo: test.lua:3: boom");

    /* A runtime error in a function called later, with the stack put back as it was. */
    ok(H, "function bad(t)\n  return t.field.missing\nend");
    lua_pushliteral(L, "keep");
    lua_getglobal(L, "bad");
    lua_newtable(L);
    assert_int_equal(hl_lua_call(H, 1, 1, &err), HL_ERR);
    assert_non_null(strstr(err.msg, "plugin demo: test.lua:2:"));
    assert_non_null(strstr(err.msg, "field"));
    assert_int_equal(lua_gettop(L), 1);
    lua_settop(L, 0);

    fails(H, "error({})", HL_ERR, "plugin demo: (error object is a table value)");
    fails(H, "error(42)", HL_ERR, "(error object is a number value)");
    fails(H, "error()", HL_ERR, "(error object is a nil value)");
    fails(H, "x = = 1", HL_ERR, "plugin demo: test.lua:1:");
    fails(H, "local t = setmetatable({}, {__index = function() error('deep') end}) return t.x", HL_ERR,
          "test.lua:1: deep");

    /* Hostile uses of the C interface. */
    assert_int_equal(hl_lua_call(H, 0, 0, &err), HL_EINVAL); /* nothing on the stack */
    lua_pushnil(L);
    assert_int_equal(hl_lua_call(H, 3, 0, &err), HL_EINVAL); /* fewer values than nargs */
    assert_int_equal(hl_lua_call(H, -1, 0, &err), HL_EINVAL);
    lua_settop(L, 0);
    lua_pushinteger(L, 7); /* not a function */
    assert_int_equal(hl_lua_call(H, 0, 0, &err), HL_ERR);
    assert_int_equal(lua_gettop(L), 0);
    assert_int_equal(hl_lua_call(NULL, 0, 0, &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_string(H, "x", NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_string(H, "x", "\x1bLua\x54", 5, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "binary"));
    assert_int_equal(hl_lua_run_string(H, NULL, "return 1", 8, &err), HL_OK);
    assert_int_equal(hl_lua_run_string(H, "x", "error('e')", 10, NULL), HL_ERR); /* err may be NULL */
    assert_null(hl_lua_from_state(NULL));
    lua_State *plain = luaL_newstate();
    assert_null(hl_lua_from_state(plain));
    lua_close(plain);
    still_works(H);
    hl_lua_free(H);

    assert_null(hl_lua_new(NULL, NULL, NULL, &err));
    assert_int_equal(err.code, HL_EINVAL);
    assert_null(hl_lua_new("../evil", NULL, NULL, &err));
    assert_null(hl_lua_new("", NULL, NULL, &err));
    assert_null(hl_lua_new("demo", "", NULL, &err));
    hl_lua_limits tiny = {2000, 0, 0};
    assert_null(hl_lua_new("demo", NULL, &tiny, &err));
    assert_int_equal(err.code, HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "memory"));
    hl_lua_free(NULL);
}

static void test_instruction_limit(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    double t0 = now();
    fails(H, "while true do end", HL_ETOOBIG, "plugin demo: instruction limit exceeded");
    assert_true(now() - t0 < LIM.deadline_ms / 1000.0);
    still_works(H);

    fails(H, "while true do pcall(function() while true do end end) end", HL_ETOOBIG,
          "instruction limit exceeded");
    still_works(H);
    fails(H, "local function h() while true do end end while true do xpcall(h, h) end", HL_ETOOBIG,
          "instruction limit exceeded");
    still_works(H);
    /* A plugin that catches the error and tries again gets it again at once. */
    fails(H, "local n = 0 while true do local ok, e = pcall(function() while true do end end) n = n + 1 "
             "if n > 1 then error('pcall swallowed the stop: ' .. tostring(e)) end end",
          HL_ETOOBIG, "instruction limit exceeded");
    /* to-be-closed variables run their __close and are stopped too */
    fails(H, "local x <close> = setmetatable({}, {__close = function() while true do end end}) while true do end",
          HL_ETOOBIG, "instruction limit exceeded");
    still_works(H);
    /* Recursion through C ends with a stack overflow, an ordinary error; deep Lua recursion
     * grows the Lua stack past the memory cap first. */
    fails(H, "local t = setmetatable({}, {__index = function(t, k) return t[k] end}) return t.x", HL_ERR,
          "stack overflow");
    fails(H, "local function f() return 1 + f() end f()", HL_ETOOBIG, "memory limit exceeded");
    still_works(H);
    hl_lua_free(H);
}

static void test_coroutines(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    fails(H, "local co = coroutine.wrap(function() while true do end end) co()", HL_ETOOBIG,
          "instruction limit exceeded");
    fails(H, "while true do coroutine.resume(coroutine.create(function() while true do end end)) end", HL_ETOOBIG,
          "instruction limit exceeded");
    /* Coroutines created while loading and resumed by a later call inherit the hook. */
    ok(H, "co1 = coroutine.create(function() while true do end end)\n"
          "co2 = coroutine.create(function() local i = 0 while true do i = i + 1 coroutine.yield(i) end end)");
    fails(H, "while true do coroutine.resume(co1) end", HL_ETOOBIG, "instruction limit exceeded");
    ok(H, "assert(not coroutine.resume(co1))"); /* it does not come back to life */
    /* co2 was never cut: it still works across calls, and a loop inside it is cut later. */
    ok(H, "assert(select(2, coroutine.resume(co2)) == 1) assert(select(2, coroutine.resume(co2)) == 2)");
    ok(H, "co3 = coroutine.wrap(function() coroutine.yield(1) while true do end end) assert(co3() == 1)");
    fails(H, "co3()", HL_ETOOBIG, "instruction limit exceeded");
    /* A coroutine that was re-armed to fire at every instruction runs normally afterwards. */
    ok(H, "co4 = coroutine.wrap(function() while true do pcall(function() while true do end end) "
          "coroutine.yield() end end)");
    fails(H, "co4()", HL_ETOOBIG, "instruction limit exceeded");
    ok(H, "co5 = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end return 'done' end)");
    ok(H, "assert(co5() == 1 and co5() == 2 and co5() == 3 and co5() == 'done')");
    still_works(H);
    hl_lua_free(H);
}

static void test_time_limit(void **state)
{
    (void)state;
    hl_lua_limits lim = {8u << 20, 1000000000000L, 100};
    hl_lua *H = mk(NULL, &lim);
    double t0 = now();
    fails(H, "while true do end", HL_ETOOBIG, "plugin demo: time limit exceeded");
    double dt = now() - t0;
    assert_true(dt >= 0.09 && dt < 2.0);
    still_works(H);

    /* Big copies inside single instructions: the allocator reads the clock. */
    t0 = now();
    fails(H, "local s = string.rep('x', 1e6) while true do local t = s .. s end", HL_ETOOBIG, "time limit exceeded");
    assert_true(now() - t0 < 2.0);
    /* PCRE2's limits apply per starting position; a million positions under them would run for
     * minutes, but the callouts stop the match at the deadline. */
    t0 = now();
    fails(H, "re.find(string.rep('a', 1e6), '(?:a|a){0,15}[bc]')", HL_ETOOBIG, "time limit exceeded");
    assert_true(now() - t0 < 2.0);
    fails(H, "while true do pcall(re.find, string.rep('a', 1e5), '(?:a|a){0,15}[bc]') end", HL_ETOOBIG,
          "time limit exceeded");
    /* C functions that scan long strings without allocating read the clock too. */
    const char *scans[] = {"local blank = string.rep(' ', 3e6) while true do load(blank) end",
                           "local big = string.rep('a', 3e6) while true do utf8.len(big) end",
                           "local big = string.rep('a', 3e6) while true do string.find(big, 'b', 1, true) end"};
    for (size_t i = 0; i < sizeof scans / sizeof *scans; i++) {
        t0 = now();
        fails(H, scans[i], HL_ETOOBIG, "time limit exceeded");
        assert_true(now() - t0 < 1.0);
    }
    ok(H, "assert(utf8.len('été') == 3 and tonumber('12') == 12 and string.byte('A') == 65)");
    /* Each call has its own deadline: quick calls in a row all succeed. */
    for (int i = 0; i < 5; i++)
        ok(H, "local n = 0 for i = 1, 1000 do n = n + i end assert(n == 500500)");
    still_works(H);
    hl_lua_free(H);

    /* With a budget and no tight deadline the same match is cut by the instruction limit:
     * pattern steps count as instructions. */
    hl_lua_limits steps = {8u << 20, 1000000, 3000};
    H = mk(NULL, &steps);
    t0 = now();
    fails(H, "re.find(string.rep('a', 1e6), '(?:a|a){0,15}[bc]')", HL_ETOOBIG, "instruction limit exceeded");
    assert_true(now() - t0 < LIM.deadline_ms / 1000.0);
    hl_lua_free(H);
}

static void test_memory_limit(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    const char *bomb = "local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end";
    fails(H, bomb, HL_ETOOBIG, "plugin demo: memory limit exceeded");
    assert_true(hl_lua_memory(H) <= LIM.memory);
    still_works(H);

    /* Caught by pcall, the call still fails: the cap was hit during it. */
    fails(H, "local ok = pcall(function() local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end end)\n"
             "return ok",
          HL_ETOOBIG, "memory limit exceeded");
    fails(H, "while true do pcall(function() local t = {} while true do t[#t + 1] = string.rep('x', 1e6) end end) end",
          HL_ETOOBIG, "memory limit exceeded");
    fails(H, "local s = string.rep('x', 1e10)", HL_ERR, "resulting string too large");
    fails(H, "local s = string.rep('x', 1e9)", HL_ETOOBIG, "memory limit exceeded");
    fails(H, "local ok, e = pcall(string.rep, 'x', 1e9) assert(not ok)", HL_ETOOBIG, "memory limit exceeded");
    fails(H, "local co = coroutine.wrap(function() local t = {} while true do t[#t+1] = {} end end) co()",
          HL_ETOOBIG, "memory limit exceeded");
    still_works(H);

    /* Much garbage but little live data is not a hit: the collector makes room. These
     * allocate a few hundred MB in all, which under a sanitizer on a loaded machine can take
     * longer than the usual test deadline: the time limit is not what is tested here. */
    hl_lua_free(H);
    hl_lua_limits roomy = LIM;
    roomy.deadline_ms = 20000;
    roomy.instructions = 1000000000;
    H = mk(NULL, &roomy);
    ok(H, "for i = 1, 100 do local s = string.rep('0123456789', 1e5) .. i end");
    ok(H, "local keep = {} for i = 1, 4 do keep[i] = string.rep('0123456789', 1e5) .. i end\n"
          "for i = 1, 200 do local s = string.rep('abcdefghij', 5e4) .. i end");
    /* Big strings that fit are fine; string.rep of nothing does no work at all. */
    ok(H, "assert(#string.rep('ab', 1e6) == 2e6)");
    double t0 = now();
    ok(H, "assert(string.rep('', 1e15) == '' and string.rep('', 1e15, '') == '' and string.rep('a', -1) == '')");
    ok(H, "assert(string.rep('a', 3, ',') == 'a,a,a')");
    assert_true(now() - t0 < 1.0);
    still_works(H);
    hl_lua_free(H);
}

static void test_table_guards(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    ok(H, "local t = {3, 1, 2} table.sort(t) assert(table.concat(t, ',') == '1,2,3')\n"
          "table.insert(t, 4) table.insert(t, 1, 0) assert(table.concat(t, ',') == '0,1,2,3,4')\n"
          "assert(table.remove(t) == 4 and table.remove(t, 1) == 0 and #t == 3)\n"
          "local a, b, c = table.unpack(t) assert(a == 1 and c == 3)\n"
          "local m = table.move({1, 2, 3}, 1, 3, 2) assert(table.concat(m, ',') == '1,1,2,3')\n"
          "table.sort(t, function(x, y) return x > y end) assert(t[1] == 3)\n"
          "assert(table.concat({}, ',') == '' and select('#', table.unpack({})) == 0)");
    /* Loops in C over ranges chosen by the plugin are charged to the budget first. */
    double t0 = now();
    fails(H, "table.move({}, 1, math.maxinteger - 1, 2)", HL_ETOOBIG, "instruction limit exceeded");
    fails(H, "table.move({}, math.mininteger, -2, 1)", HL_ETOOBIG, "instruction limit exceeded");
    /* a sparse table whose border is 2^60, so #t is huge with ~60 entries */
    ok(H, "sparse = {true} local k = 2 while k <= 2^60 do sparse[k] = true sparse[k + 1] = true k = k * 2 end\n"
          "assert(#sparse > 1e15)");
    fails(H, "table.insert(sparse, 1, 0)", HL_ETOOBIG, "instruction limit exceeded");
    fails(H, "table.remove(sparse, 1)", HL_ETOOBIG, "instruction limit exceeded");
    fails(H, "table.concat(sparse, '')", HL_ETOOBIG, "instruction limit exceeded");
    /* every missing element reads as a number through a C __index: 2^29 of them to sort */
    fails(H, "local t = setmetatable({1}, {__index = rawlen}) local k = 2\n"
             "while k <= 2^29 do t[k] = 1 t[k + 1] = 1 k = k * 2 end assert(#t > 2^28) table.sort(t)",
          HL_ETOOBIG, "instruction limit exceeded");
    fails(H, "table.concat({}, '', 1, 1e15)", HL_ETOOBIG, "instruction limit exceeded");
    assert_true(now() - t0 < LIM.deadline_ms / 1000.0);
    fails(H, "table.insert(setmetatable({}, {__len = function() return 1e15 end}), 1, 0)", HL_ERR, "__len");
    fails(H, "table.sort(setmetatable({}, {__len = function() return 5 end}))", HL_ERR, "__len");
    fails(H, "table.insert('abc', 1)", HL_ERR, "bad argument #1 to 'insert'");
    still_works(H);
    hl_lua_free(H);
}

static void test_removed(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    ok(H, "assert(io == nil and debug == nil and package == nil and dofile == nil and loadfile == nil)\n"
          "assert(os.execute == nil and os.exit == nil and os.getenv == nil and os.remove == nil)\n"
          "assert(os.rename == nil and os.tmpname == nil and os.setlocale == nil)\n"
          "assert(type(os.time()) == 'number' and type(os.clock()) == 'number')\n"
          "assert(type(os.date('%Y')) == 'string' and os.difftime(2, 1) == 1)\n"
          "assert(string.dump == nil and getmetatable('').__index == string)\n"
          "assert(getmetatable('').__index.dump == nil and ('x'):rep(3) == 'xxx')\n"
          "assert(type(collectgarbage('count')) == 'number')\n"
          "assert(type(math.floor) == 'function' and type(utf8.char) == 'function')\n"
          "assert(type(coroutine.create) == 'function' and type(table.concat) == 'function')");
    fails(H, "collectgarbage()", HL_ERR, "only \"count\"");
    fails(H, "collectgarbage('stop')", HL_ERR, "only \"count\"");
    fails(H, "setmetatable({}, {__gc = function() while true do end end})", HL_ERR, "__gc");
    ok(H, "assert(getmetatable(setmetatable({}, {__index = {a = 1}})).__index.a == 1)");
    fails(H, "local f = string.dump(print)", HL_ERR, "attempt to call a nil value");
    fails(H, "return io.open('/etc/passwd')", HL_ERR, "attempt to index a nil value");
    still_works(H);
    hl_lua_free(H);
}

static void test_load(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    /* no way to produce bytecode, and bytecode is refused */
    ok(H, "assert(not pcall(function() return load(string.dump(function() end)) end))");
    ok(H, "local f, e = load('\\27Lua\\84\\0\\25\\147\\r\\n\\26\\n') assert(f == nil and e:find('binary', 1, true))");
    ok(H, "local f, e = load('\\27Lua', 'x', 'b') assert(f == nil and e:find('binary', 1, true))");
    ok(H, "local sent = false\n"
          "local f, e = load(function() if sent then return nil end sent = true return '\\27Lua\\84' end)\n"
          "assert(f == nil and e:find('binary', 1, true))");
    /* text works, in the sandbox's globals, whatever mode is asked for */
    ok(H, "local f = load('from_load = 7 return 1 + 1, io, string.dump') local a, b, c = f()\n"
          "assert(a == 2 and b == nil and c == nil and from_load == 7)");
    ok(H, "assert(load('return 5', 'chunk', 'b')() == 5)");
    ok(H, "assert(load('return y', 'c', 't', {y = 9})() == 9)");
    ok(H, "local f, e = load('x = ') assert(f == nil and e:find('unexpected', 1, true))");
    /* loaded code is under the same limits */
    fails(H, "load('while true do end')()", HL_ETOOBIG, "instruction limit exceeded");
    still_works(H);
    hl_lua_free(H);
}

static char tmpdir[64];

static void write_file(const char *rel, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm(const char *rel, int dir)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    assert_int_equal(dir ? rmdir(path) : unlink(path), 0);
}

static void test_require_and_files(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/hl_lua_test_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char sub[128];
    snprintf(sub, sizeof sub, "%s/lib", tmpdir);
    assert_int_equal(mkdir(sub, 0755), 0);
    snprintf(sub, sizeof sub, "%s/dir.lua", tmpdir);
    assert_int_equal(mkdir(sub, 0755), 0);
    write_file("util.lua", "loads = (loads or 0) + 1\nlocal M = {}\nfunction M.twice(x) return 2 * x end\nreturn M\n");
    write_file("lib/text.lua", "local name = ...\nreturn { name = name, upper = string.upper }\n");
    write_file("noreturn.lua", "noreturn_ran = true\n");
    write_file("bad.lua", "local x = \n");
    write_file("fails.lua", "local a = 1\nerror('module failed')\n");
    write_file("cycle_a.lua", "return require('cycle_b')\n");
    write_file("cycle_b.lua", "return require('cycle_a')\n");
    write_file("main.lua", "main_ran = true\nfunction hello(n)\n  return 'hello ' .. n\nend\n"
                           "function broken()\n  local t = nil\n  return t.x\nend\n");
    /* a file just over the limit */
    char *big = malloc((1 << 20) + 2);
    assert_non_null(big);
    memset(big, '-', (1 << 20) + 1);
    big[(1 << 20) + 1] = '\0';
    write_file("big.lua", big);
    free(big);

    hl_lua *H = mk(tmpdir, NULL);
    hl_err err;
    assert_int_equal(hl_lua_run_file(H, "main.lua", &err), HL_OK);
    lua_State *L = hl_lua_state(H);
    lua_getglobal(L, "hello");
    lua_pushliteral(L, "you");
    assert_int_equal(hl_lua_call(H, 1, 1, &err), HL_OK);
    assert_string_equal(lua_tostring(L, -1), "hello you");
    lua_pop(L, 1);
    lua_getglobal(L, "broken");
    assert_int_equal(hl_lua_call(H, 0, 0, &err), HL_ERR);
    assert_non_null(strstr(err.msg, "plugin demo: demo/main.lua:7:"));

    ok(H, "local u = require('util') local u2 = require('util')\n"
          "assert(u == u2 and loads == 1 and u.twice(4) == 8)\n"
          "local t = require('lib.text') assert(t.name == 'lib.text' and t.upper('a') == 'A')\n"
          "assert(require('noreturn') == true and noreturn_ran)");
    ok(H, "assert(require('util').twice(5) == 10 and loads == 1)"); /* cached across calls */
    const char *refused[] = {"../x", "/etc/passwd", "a/b", "", ".a", "a.", "a..b", "a b", "a\\0b",
                             "..", "lib/../util", "a-b", "é"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char code[128];
        snprintf(code, sizeof code, "require('%s')", refused[i]);
        fails(H, code, HL_ERR, "invalid module name");
    }
    fails(H, "require(string.rep('a', 300))", HL_ERR, "invalid module name");
    fails(H, "require()", HL_ERR, "bad argument #1 to 'require'");
    fails(H, "require('missing')", HL_ERR, "not found");
    fails(H, "require('util.lua')", HL_ERR, "util/lua.lua in plugin demo): not found");
    fails(H, "require('dir')", HL_ERR, "not a regular file");
    fails(H, "require('big')", HL_ERR, "larger than");
    fails(H, "require('bad')", HL_ERR, "demo/bad.lua:2:");
    fails(H, "require('fails')", HL_ERR, "demo/fails.lua:2: module failed");
    fails(H, "require('cycle_a')", HL_ERR, "stack overflow"); /* modules requiring each other */
    still_works(H);

    assert_int_equal(hl_lua_run_file(H, "../etc/passwd", &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, "/etc/passwd", &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, "lib/../../x.lua", &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, "lib//text.lua", &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, "", &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, "missing.lua", &err), HL_ENOTFOUND);
    assert_int_equal(hl_lua_run_file(H, "big.lua", &err), HL_ETOOBIG);
    assert_int_equal(hl_lua_run_file(H, "dir.lua", &err), HL_EINVAL);
    assert_int_equal(hl_lua_run_file(H, "bad.lua", &err), HL_ERR);
    assert_non_null(strstr(err.msg, "demo/bad.lua:2:"));
    assert_int_equal(hl_lua_run_file(H, "lib/text.lua", &err), HL_OK);
    hl_lua_free(H);

    /* A state without a folder has no modules at all. */
    H = mk(NULL, NULL);
    fails(H, "require('util')", HL_ERR, "no folder");
    assert_int_equal(hl_lua_run_file(H, "main.lua", &err), HL_EINVAL);
    hl_lua_free(H);

    rm("util.lua", 0);
    rm("lib/text.lua", 0);
    rm("noreturn.lua", 0);
    rm("bad.lua", 0);
    rm("fails.lua", 0);
    rm("cycle_a.lua", 0);
    rm("cycle_b.lua", 0);
    rm("main.lua", 0);
    rm("big.lua", 0);
    rm("lib", 1);
    rm("dir.lua", 1);
    assert_int_equal(rmdir(tmpdir), 0);
}

static void test_string_functions(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    ok(H, "assert(string.find('a.b', '.', 1, true) == 2)\n"
          "local s, e = ('hello'):find('ll', 1, true) assert(s == 3 and e == 4)\n"
          "assert(string.find('abcabc', 'bc', 3, true) == 5 and string.find('abcabc', 'bc', -2, true) == 5)\n"
          "assert(string.find('abc', 'x', 1, true) == nil and string.find('abc', 'a', 10, true) == nil)\n"
          "local s2, e2 = string.find('abc', '', 2, true) assert(s2 == 2 and e2 == 1)\n"
          "assert(string.find('abc', 'a', -100, true) == 1 and string.find('', '', 1, true) == 1)\n"
          "assert(string.upper('abc') == 'ABC' and string.format('%d-%s', 4, 'x') == '4-x')");
    const char *pattern_calls[] = {"string.find('abc', 'b')", "string.find('abc', 'b', 1)", "string.find('abc', '%a+', 1, false)",
                                   "string.match('abc', 'b')", "string.gmatch('abc', '.')", "string.gsub('abc', 'b', 'x')",
                                   "('abc'):match('(a*)*c')", "('abc'):gsub('b', 'x')"};
    for (size_t i = 0; i < sizeof pattern_calls / sizeof *pattern_calls; i++)
        fails(H, pattern_calls[i], HL_ERR, "string patterns are not available in plugins; use halle.re");
    /* Plain search is linear: a quadratic search would take minutes here. */
    double t0 = now();
    ok(H, "assert(string.find(string.rep('a', 2e6), string.rep('a', 1e6) .. 'b', 1, true) == nil)");
    assert_true(now() - t0 < 1.0);
    hl_lua_free(H);
}

static void test_re(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    ok(H, "assert(halle.re == re)\n"
          "local s, e, a, b = re.find('hello world', '(w)(o)') assert(s == 7 and e == 8 and a == 'w' and b == 'o')\n"
          "assert(re.find('hello', 'l+') == 3 and select(2, re.find('hello', 'l+')) == 4)\n"
          "assert(re.find('abcabc', 'b', 3) == 5 and re.find('abc', 'b', -1) == nil and re.find('abc', 'x') == nil)\n"
          "assert(re.find('abc', 'a', 10) == nil)\n"
          "local k, v = re.match('key=value', '(\\\\w+)=(\\\\w+)') assert(k == 'key' and v == 'value')\n"
          "assert(re.match('abc', 'b') == 'b' and re.match('abc', 'x') == nil)\n"
          "local y, m = halle.re.match('2026-11-25', '(\\\\d+)-(\\\\d+)') assert(y == '2026' and m == '11')\n"
          "local x1, x2 = re.match('a', '(a)|(b)') assert(x1 == 'a' and x2 == false)\n"
          "assert(re.match('ÉTÉ', '(*UTF)^\\\\w{3}$') == nil and re.match('été', '(*UTF)(*UCP)^\\\\w{3}$') == 'été')\n"
          "assert(re.match('ABC', '(?i)abc') == 'ABC')");
    ok(H, "local words = {} for w in re.gmatch('one two  three', '\\\\w+') do words[#words + 1] = w end\n"
          "assert(#words == 3 and words[3] == 'three')\n"
          "local kv = {} for k, v in re.gmatch('a=1, b=2', '(\\\\w)=(\\\\d)') do kv[k] = tonumber(v) end\n"
          "assert(kv.a == 1 and kv.b == 2)\n"
          "local n = 0 for e in re.gmatch('ab', '') do n = n + 1 assert(e == '') end assert(n == 3)\n"
          "n = 0 for e in re.gmatch('abc', '\\\\w*') do n = n + 1 end assert(n == 1)\n"
          "local it = re.gmatch('aXbX', 'X') assert(it() == 'X' and it() == 'X' and it() == nil and it() == nil)");
    ok(H, "local r, n = re.gsub('hello world', '(\\\\w+)', '<%1>') assert(r == '<hello> <world>' and n == 2)\n"
          "r, n = re.gsub('hello world', 'o', '0') assert(r == 'hell0 w0rld' and n == 2)\n"
          "r, n = re.gsub('abc', 'b', '[%0%%]') assert(r == 'a[b%]c' and n == 1)\n"
          "r, n = re.gsub('abc', '\\\\w', '%1%1') assert(r == 'aabbcc' and n == 3)\n"
          "r, n = re.gsub('abc', 'x*', '-') assert(r == '-a-b-c-' and n == 4)\n"
          "r, n = re.gsub('aaa', 'a', 'b', 2) assert(r == 'bba' and n == 2)\n"
          "r, n = re.gsub('x', '(a)?x', '[%1]') assert(r == '[]' and n == 1)\n"
          "r, n = re.gsub('', 'z', 'y') assert(r == '' and n == 0)");
    fails(H, "re.gsub('abc', 'b', '%q')", HL_ERR, "invalid use of '%' in replacement string");
    fails(H, "re.gsub('abc', 'b', 'x%')", HL_ERR, "invalid use of '%'");
    fails(H, "re.gsub('abc', '(b)', '%2')", HL_ERR, "invalid capture index %2");
    fails(H, "re.find('abc', '(')", HL_ERR, "missing closing parenthesis");
    fails(H, "re.match('abc', '[z-a]')", HL_ERR, "invalid regular expression at offset");
    fails(H, "re.gmatch('abc', '(?<')", HL_ERR, "invalid regular expression");
    fails(H, "re.find('abc', string.rep('a', 1025))", HL_ERR, "longer than 1024");
    fails(H, "re.find(string.rep('a', 1048577), 'a')", HL_ERR, "subject longer than");
    fails(H, "re.find('abc', string.rep('(a)', 33))", HL_ERR, "more than 32 captures");
    fails(H, "re.find('abc', '\\\\C')", HL_ERR, "invalid regular expression");
    fails(H, "re.find('\\255', '(*UTF)a')", HL_ERR, "regular expression:");
    fails(H, "re.find(nil, 'a')", HL_ERR, "bad argument #1 to 'find'");
    fails(H, "re.find('a', {})", HL_ERR, "bad argument #2 to 'find'");
    ok(H, "assert(re.find(string.rep('a', 1048576), 'b') == nil)");
    /* catastrophic backtracking stops at PCRE2's limits, quickly */
    double t0 = now();
    fails(H, "re.find(string.rep('a', 30) .. 'b', '(a+)+$')", HL_ERR, "regular expression too complex");
    fails(H, "re.match(string.rep('a', 30) .. 'b', '(a|aa)+$')", HL_ERR, "regular expression too complex");
    ok(H, "local ok, e = pcall(re.gsub, string.rep('a', 30) .. 'b', '(a+)+$', '') assert(not ok and e:find('too complex', 1, true))");
    assert_true(now() - t0 < 1.0);
    /* more patterns than the cache holds, reused in turn */
    ok(H, "for round = 1, 3 do for i = 1, 40 do assert(re.match('x' .. i .. 'y', 'x(' .. i .. ')y') == tostring(i)) end end");
    ok(H, "local it = re.gmatch('a1b2c3', '\\\\d') assert(it() == '1')\n"
          "for i = 1, 40 do re.find('z', 'z' .. i) end assert(it() == '2' and it() == '3' and it() == nil)");
    still_works(H);
    hl_lua_free(H);
}

static void test_print_goes_to_log(void **state)
{
    (void)state;
    char logpath[] = "/tmp/hl_lua_log_XXXXXX", outpath[] = "/tmp/hl_lua_out_XXXXXX";
    int lfd = mkstemp(logpath), ofd = mkstemp(outpath);
    assert_true(lfd >= 0 && ofd >= 0);
    close(lfd);
    hl_err err;
    assert_int_equal(hl_log_open(logpath, "info", &err), HL_OK);
    hl_lua *H = mk(NULL, NULL);
    fflush(stdout);
    int saved = dup(1);
    assert_true(saved >= 0);
    dup2(ofd, 1);
    ok(H, "print('hello from lua', 42, nil, true) print()");
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    hl_log_close();
    hl_lua_free(H);

    char buf[4096] = {0};
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "level=info"));
    assert_non_null(strstr(buf, "plugin demo: hello from lua\\x0942\\x09nil\\x09true"));
    struct stat st;
    assert_int_equal(fstat(ofd, &st), 0);
    assert_int_equal(st.st_size, 0); /* nothing on stdout */
    close(ofd);
    unlink(logpath);
    unlink(outpath);
}

static void test_states_independent(void **state)
{
    (void)state;
    hl_lua *A = mk(NULL, NULL), *B = mk(NULL, NULL);
    ok(A, "shared = 1 string.extra = 'a' getmetatable('').__index.more = 2 re.added = 3");
    ok(B, "assert(shared == nil and string.extra == nil and ('x').more == nil and re.added == nil)");
    ok(A, "assert(shared == 1 and ('x').more == 2)");
    /* a cut in one state leaves the other alone */
    fails(A, "while true do end", HL_ETOOBIG, "instruction limit exceeded");
    ok(B, "local n = 0 for i = 1, 100000 do n = n + 1 end assert(n == 100000)");
    assert_ptr_equal(hl_lua_from_state(hl_lua_state(B)), B);
    hl_lua_free(A);
    hl_lua_free(B);
}

/* A C function in the state that calls back into Lua with hl_lua_call, as the bridge does
 * for hooks fired from a plugin's own call. */
static int reenter(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    lua_getglobal(L, "inner");
    hl_err err;
    int rc = hl_lua_call(H, 0, 1, &err);
    if (rc != HL_OK)
        return luaL_error(L, "inner failed: %s", err.msg);
    return 1;
}

static void test_nested_calls(void **state)
{
    (void)state;
    hl_lua *H = mk(NULL, NULL);
    lua_State *L = hl_lua_state(H);
    lua_register(L, "reenter", reenter);
    ok(H, "function inner() return 'in' end assert(reenter() == 'in')");
    fails(H, "function inner() error('x') end reenter()", HL_ERR, "inner failed: plugin demo: test.lua:1: x");
    /* The inner call is cut, and the outer one too: the budget is the outer call's. */
    fails(H, "function inner() while true do end end pcall(reenter) while true do end", HL_ETOOBIG,
          "instruction limit exceeded");
    still_works(H);
    hl_lua_free(H);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_call_returns_values),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_instruction_limit),
        cmocka_unit_test(test_coroutines),
        cmocka_unit_test(test_time_limit),
        cmocka_unit_test(test_memory_limit),
        cmocka_unit_test(test_table_guards),
        cmocka_unit_test(test_removed),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_require_and_files),
        cmocka_unit_test(test_string_functions),
        cmocka_unit_test(test_re),
        cmocka_unit_test(test_print_goes_to_log),
        cmocka_unit_test(test_states_independent),
        cmocka_unit_test(test_nested_calls),
    };
    return cmocka_run_group_tests_name("lua", tests, NULL, NULL);
}
