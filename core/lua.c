/* Sandboxed Lua 5.4 states for plugins (see lua.h): the restricted standard library, the
 * counting allocator, the limit hook, require() confined to the plugin folder, and halle.re,
 * PCRE2-backed matching that replaces Lua's unbounded string patterns. */
#include "core/lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "core/log.h"

/* How the limits behave (the header gives the contract):
 * - The count hook is set once, at creation, and never removed: coroutines inherit it from
 *   the thread that creates them, also those created by one call and resumed by a later one.
 *   It returns at once when no call is active.
 * - A limit hit sets a flag that lasts until the outermost hl_lua_call returns; the hook then
 *   re-arms the running thread to fire at every instruction and the allocator refuses all
 *   growth, so pcall loops, __close handlers and other coroutines fail at once. A thread left
 *   at count 1 is put back to HOOK_COUNT by the hook the next time it runs on it.
 * - Memory: a call during which the cap was hit fails with HL_ETOOBIG "memory limit
 *   exceeded", even if the plugin caught the error and went on or returned normally. The cap
 *   counts garbage too: Lua retries its own allocations after an emergency collection, and
 *   only a failed retry is a hit; the auxiliary library's string buffers are not retried, so
 *   string.rep collects first when it would not fit, but table.concat or string.format near
 *   the cap may count as a hit that a collection would have avoided (keep the cap at about
 *   twice the plugin's live data). Between calls the cap is not enforced (see may_grow).
 * - halle.re keeps up to RE_CACHE compiled patterns and PCRE2's match frames (at most
 *   RE_HEAP_LIMIT_KB) outside the Lua allocator, so outside the cap: a few MB at most.
 * - Work done in C rather than in the VM is charged to the same budget (table functions,
 *   string scans, regular expression steps); the cost of a single VM instruction still grows
 *   with its operands (comparing two long strings), so the deadline can be overshot by up
 *   to HOOK_COUNT such instructions, each bounded by the memory cap.
 * - collectgarbage() only answers "count"; __gc metamethods are refused (a finalizer would
 *   run outside any call, unlimited). */

#define DEFAULT_MEMORY ((size_t)32 << 20)
#define DEFAULT_INSTRUCTIONS 50000000LL
#define DEFAULT_DEADLINE_MS 2000
#define HOOK_COUNT 1000              /* instructions between two checks of the limits */
#define CLOCK_EVERY_BYTES (1 << 20)  /* a call that allocates this much checks the clock */
#define FILE_MAX (1 << 20)           /* largest source file a plugin may load */
#define NAME_MAX_LEN 64
#define MODNAME_MAX 200

#define RE_CACHE 32
#define RE_MAX_PATTERN 1024
#define RE_MAX_SUBJECT (1 << 20)
#define RE_MAX_CAPTURES 32           /* as Lua's own patterns */
#define RE_MATCH_LIMIT 100000
#define RE_DEPTH_LIMIT 1000
#define RE_HEAP_LIMIT_KB 1024
#define RE_CHECK_EVERY 1024          /* pattern steps between two checks of the limits */

#define NO_PATTERNS "string patterns are not available in plugins; use halle.re"

enum { STOP_NONE, STOP_INSTRUCTIONS, STOP_TIME, STOP_MEMORY };
static const char *const stop_msg[] = {
    NULL, "instruction limit exceeded", "time limit exceeded", "memory limit exceeded"};
/* Registry keys (addresses) of the preallocated stop messages and the require() cache. */
static char stop_key[4];
static char loaded_key;

typedef struct re_entry {
    char *pat;
    size_t len;
    pcre2_code *code;
    int ncap;
    unsigned long used; /* LRU clock */
} re_entry;

struct hl_lua {
    lua_State *L;
    char *name;
    char *dir; /* NULL: the plugin has no folder (require and run_file fail) */
    size_t mem, mem_limit;
    long long budget, used;
    int deadline_ms;
    long long deadline_ns;
    int depth;   /* nested hl_lua_call: the limits apply while > 0 */
    int protect; /* inside a protected load or set-up: refusing memory is safe */
    int stop;    /* the limit hit in the current call (STOP_*), sticky until it ends */
    size_t grown; /* bytes allocated since the clock was last read */
    /* The last refused allocation: Lua retries it once after an emergency collection. */
    int refused;
    void *refused_ptr;
    size_t refused_size;
    pcre2_match_context *mctx;
    pcre2_match_data *md;
    unsigned long steps; /* pattern steps since the last check */
    re_entry re[RE_CACHE];
    unsigned long re_clock;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- limits ------------------------------------------------------------------------- */

/* Adds n instructions of work to the current call; sets H->stop if a limit is passed. */
static int account(hl_lua *H, unsigned long long n)
{
    if (H->stop)
        return H->stop;
    if (H->used > H->budget || n > (unsigned long long)(H->budget - H->used))
        H->stop = STOP_INSTRUCTIONS;
    else if ((H->used += (long long)n, now_ns() > H->deadline_ns))
        H->stop = STOP_TIME;
    return H->stop;
}

/* Raises the stop message. It was allocated at creation, because a stopped call gets no
 * more memory and the error must still carry the right words. */
static int raise_stop(lua_State *L, hl_lua *H)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &stop_key[H->stop]);
    return lua_error(L);
}

/* Count hook, set once on the main thread and inherited by every coroutine. Once a limit is
 * passed it re-arms itself to run at every instruction of the running thread, so a pcall
 * loop or a coroutine gets the error again at once. A thread left at count 1 by an earlier
 * call is put back to HOOK_COUNT the next time the hook runs on it. */
static void sb_hook(lua_State *L, lua_Debug *ar)
{
    hl_lua *H = hl_lua_from_state(L);
    int count = lua_gethookcount(L);
    (void)ar;
    if (H->depth && account(H, (unsigned long long)count)) {
        if (count != 1)
            lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
        raise_stop(L, H);
    }
    if (count != HOOK_COUNT)
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, HOOK_COUNT);
}

/* Charges n instructions for work a C function is about to do without running the VM
 * (table.move over a huge range), so such work counts against the same budget. */
static void charge(lua_State *L, unsigned long long n)
{
    hl_lua *H = hl_lua_from_state(L);
    if (H->depth && account(H, n)) {
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
        raise_stop(L, H);
    }
}

/* The memory cap was hit: the call fails, even if the plugin caught the error. */
static void refusal_final(hl_lua *H)
{
    H->refused = 0;
    if (H->depth && !H->stop)
        H->stop = STOP_MEMORY;
}

/* Decides whether the state may grow by `grow` bytes. The cap binds while plugin code runs
 * (a call, a load): there a refusal becomes a Lua error. Between calls the host pushes
 * values without a protected call, and a refusal would abort the process, so it may not
 * be refused. */
static int may_grow(hl_lua *H, void *ptr, size_t grow, size_t nsize)
{
    if (!H->depth && !H->protect)
        return 1;
    if (H->depth) {
        if (H->stop) /* nothing more for a stopped call: each instruction fails at once */
            return 0;
        if ((H->grown += grow) >= CLOCK_EVERY_BYTES) {
            H->grown = 0;
            if (now_ns() > H->deadline_ns) {
                H->stop = STOP_TIME;
                return 0;
            }
        }
    }
    if (H->mem <= H->mem_limit && grow <= H->mem_limit - H->mem) /* the host may have gone over */
        return 1;
    if (H->refused) { /* the retry of the same block (see sb_alloc) */
        refusal_final(H);
    } else {
        H->refused = 1;
        H->refused_ptr = ptr;
        H->refused_size = nsize;
    }
    return 0;
}

static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    hl_lua *H = ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        H->mem -= old;
        return NULL;
    }
    if (nsize > old) {
        /* Lua's core answers a refusal with an emergency collection and asks again for the
         * same block at once; the auxiliary library's buffers do not. So a refusal is final
         * when it is refused again, or when the next request is another one. */
        if (H->refused && (ptr != H->refused_ptr || nsize != H->refused_size))
            refusal_final(H);
        if (!may_grow(H, ptr, nsize - old, nsize))
            return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    H->mem = H->mem - old + nsize;
    if (nsize > old)
        H->refused = 0; /* the retry succeeded */
    return p;
}

/* ---- base library ----------------------------------------------------------------------- */

/* Replacements that guard a standard function keep it as upvalue 1 and call it directly on
 * their own stack once the arguments are known to be safe. */
static int call_orig(lua_State *L)
{
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

static void wrap(lua_State *L, int lib, const char *name, lua_CFunction f)
{
    lua_getfield(L, lib, name);
    lua_pushcclosure(L, f, 1);
    lua_setfield(L, lib, name);
}

static void set_fn(lua_State *L, int lib, const char *name, lua_CFunction f)
{
    if (f)
        lua_pushcfunction(L, f);
    else
        lua_pushnil(L);
    lua_setfield(L, lib, name);
}

static int sb_print(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    hl_log(HL_LOG_INFO, "plugin %s: %s", H->name, lua_tostring(L, -1));
    return 0;
}

/* Functions that scan their string arguments in C without allocating (utf8.len over 30 MB,
 * the lexer over a chunk of blanks) do work the hook does not see and the allocator does not
 * time, so they charge the bytes to the budget, which also reads the clock, first. */
static void charge_bytes(lua_State *L, size_t n)
{
    if (n >= 4096)
        charge(L, n / 16);
}

static int sb_bytes(lua_State *L)
{
    size_t total = 0, len;
    for (int i = lua_gettop(L); i > 0; i--)
        if (lua_type(L, i) == LUA_TSTRING) {
            lua_tolstring(L, i, &len);
            total += len;
        }
    charge_bytes(L, total);
    return call_orig(L);
}

/* load() takes text only and runs it in the plugin's globals unless given another env. */
static int sb_load(lua_State *L)
{
    int has_env = lua_gettop(L) >= 4;
    size_t len;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &len) : NULL;
    if (s && len > 0 && s[0] == LUA_SIGNATURE[0]) {
        luaL_pushfail(L);
        lua_pushliteral(L, "binary chunks are not allowed in plugins");
        return 2;
    }
    if (s)
        charge_bytes(L, len);
    lua_settop(L, 4);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    if (!has_env) {
        lua_pushglobaltable(L);
        lua_replace(L, 4);
    }
    return call_orig(L);
}

/* Only "count": the other options change the collector's behaviour for the whole state. */
static int sb_collectgarbage(lua_State *L)
{
    if (strcmp(luaL_optstring(L, 1, "collect"), "count") != 0)
        return luaL_error(L, "collectgarbage: only \"count\" is available in plugins");
    return call_orig(L);
}

/* A finalizer would run whenever the collector decides, outside any call and its limits
 * (at the latest in lua_close), so plugins may not set one. */
static int sb_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        int t = lua_rawget(L, 2); /* the collector reads it raw too */
        lua_pop(L, 1);
        if (t != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not available in plugins");
    }
    return call_orig(L);
}

/* ---- files and require ------------------------------------------------------------------ */

/* Reads a module or the main file beneath the plugin's folder (core/file.h: a symbolic link
 * leading out is refused), with the reason in why. */
static int read_file(const hl_lua *H, const char *rel, size_t max, char **out, size_t *outlen, char *why, size_t whylen)
{
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_file_read_beneath(H->dir, rel, max, out, outlen, NULL, &err);
    if (rc != HL_OK)
        snprintf(why, whylen, "%.*s", (int)(whylen > 0 ? whylen - 1 : 0), rc == HL_ENOTFOUND ? "not found" : err.msg);
    return rc;
}

/* Module names are dot-separated parts of [A-Za-z0-9_], so a name can only reach a .lua
 * file below the plugin folder. */
static int valid_modname(const char *s, size_t len)
{
    if (len == 0 || len > MODNAME_MAX)
        return 0;
    int part = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (!part)
                return 0;
            part = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_') {
            part++;
        } else {
            return 0;
        }
    }
    return part > 0;
}

static int sb_require(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    if (!valid_modname(name, len))
        return luaL_error(L, "require: invalid module name (use names like \"util\" or \"lib.util\")");
    lua_settop(L, 1);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &loaded_key); /* 2 */
    if (lua_getfield(L, 2, name) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    if (!H->dir)
        return luaL_error(L, "require: plugin %s has no folder to load modules from", H->name);

    char rel[MODNAME_MAX + 8];
    for (size_t i = 0; i <= len; i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    strcat(rel, ".lua");
    lua_pushfstring(L, "%s/%s", H->dir, rel);                       /* 3 */
    const char *chunk = lua_pushfstring(L, "@%s/%s", H->name, rel); /* 4 */

    /* No Lua call may raise between the read and the free: the load is protected. */
    char *src, why[600];
    size_t srclen;
    int rc = read_file(H, rel, FILE_MAX, &src, &srclen, why, sizeof why);
    if (rc != HL_OK)
        return luaL_error(L, "require: module \"%s\" (%s in plugin %s): %s", name, rel, H->name, why);
    int st = luaL_loadbufferx(L, src, srclen, chunk, "t"); /* 5 */
    free(src);
    if (st != LUA_OK)
        return lua_error(L);
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 2, name);
    return 1;
}

/* ---- string and table guards ------------------------------------------------------------ */

static int no_patterns(lua_State *L)
{
    return luaL_error(L, NO_PATTERNS);
}

/* Converts a Lua string index (negative counts from the end) to a 0-based offset, or
 * returns len + 1 when it is past the end. */
static size_t start_offset(lua_Integer i, size_t len)
{
    if (i > 0)
        return (lua_Unsigned)i - 1 > len ? len + 1 : (size_t)i - 1;
    if (i == 0)
        return 0;
    if ((lua_Unsigned)-(i + 1) >= len)
        return 0;
    return len - (size_t)-i;
}

/* string.find in plain mode only, with memmem (linear) instead of Lua's quadratic search. */
static int sb_find(lua_State *L)
{
    size_t len, nlen;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *needle = luaL_checklstring(L, 2, &nlen);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), len);
    if (!lua_toboolean(L, 4))
        return luaL_error(L, NO_PATTERNS);
    charge_bytes(L, len - (init < len ? init : len));
    if (init > len) {
        luaL_pushfail(L);
        return 1;
    }
    const char *p = memmem(s + init, len - init, needle, nlen);
    if (!p) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)(p - s) + 1);
    lua_pushinteger(L, (lua_Integer)(p - s + (ptrdiff_t)nlen));
    return 2;
}

/* string.rep("", n) would loop n times without allocating anything the cap could stop.
 * The result is built in an auxiliary-library buffer, whose allocation Lua does not retry
 * after an emergency collection as it does for its own objects; so when the buffer and the
 * string will not fit, the garbage is collected first rather than the cap declared hit. */
static int sb_rep(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    size_t room = H->mem_limit - (H->mem < H->mem_limit ? H->mem : H->mem_limit);
    size_t need = (lua_Unsigned)n < SIZE_MAX / 4 / (l + lsep) ? 2 * (size_t)n * (l + lsep) : SIZE_MAX;
    if (H->depth && !H->stop && need > room && need <= H->mem_limit)
        lua_gc(L, LUA_GCCOLLECT);
    return call_orig(L);
}

/* The table functions loop in C over ranges that a plugin chooses (a border of a sparse
 * table can be 2^60), out of the hook's reach, so each charges its range to the budget
 * first. The length of a table with __len could differ between the guard's reading and
 * the function's, so those tables are refused. */
static lua_Integer guarded_len(lua_State *L, const char *fn)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (luaL_getmetafield(L, 1, "__len") != LUA_TNIL)
        luaL_error(L, "table.%s: tables with a __len metamethod are not supported in plugins", fn);
    return (lua_Integer)lua_rawlen(L, 1);
}

static unsigned long long span(lua_Integer from, lua_Integer to)
{
    return to < from ? 0 : (unsigned long long)((lua_Unsigned)to - (lua_Unsigned)from) + 1;
}

static int sb_tinsert(lua_State *L)
{
    lua_Integer n = guarded_len(L, "insert");
    charge(L, lua_gettop(L) >= 3 ? (unsigned long long)n + 1 : 1);
    return call_orig(L);
}

static int sb_tremove(lua_State *L)
{
    charge(L, (unsigned long long)guarded_len(L, "remove") + 1);
    return call_orig(L);
}

static int sb_tconcat(lua_State *L)
{
    lua_Integer n = guarded_len(L, "concat");
    charge(L, span(luaL_optinteger(L, 3, 1), luaL_optinteger(L, 4, n)));
    return call_orig(L);
}

static int sb_tunpack(lua_State *L)
{
    lua_Integer n = guarded_len(L, "unpack");
    charge(L, span(luaL_optinteger(L, 2, 1), luaL_optinteger(L, 3, n)));
    return call_orig(L);
}

static int sb_tsort(lua_State *L)
{
    unsigned long long n = (unsigned long long)guarded_len(L, "sort"), lg = 1;
    for (unsigned long long m = n; m > 1; m >>= 1)
        lg++;
    charge(L, n > ULLONG_MAX / 64 ? ULLONG_MAX : n * lg);
    return call_orig(L);
}

static int sb_tmove(lua_State *L)
{
    charge(L, span(luaL_checkinteger(L, 2), luaL_checkinteger(L, 3)));
    return call_orig(L);
}

/* ---- halle.re ----------------------------------------------------------------------------- */

/* PCRE2 limits only bound the work at one starting position, and a subject has a million of
 * them, so every pattern is compiled with automatic callouts and this one charges the steps
 * to the call's budget and reads the clock every RE_CHECK_EVERY steps. */
static int re_callout(pcre2_callout_block *cb, void *data)
{
    hl_lua *H = data;
    (void)cb;
    if (++H->steps < RE_CHECK_EVERY)
        return 0;
    H->steps = 0;
    return H->depth && account(H, RE_CHECK_EVERY) ? PCRE2_ERROR_CALLOUT : 0;
}

static re_entry *re_get(lua_State *L, hl_lua *H, int arg)
{
    size_t len;
    const char *pat = luaL_checklstring(L, arg, &len);
    if (len > RE_MAX_PATTERN)
        luaL_error(L, "regular expression longer than %d bytes", RE_MAX_PATTERN);
    re_entry *victim = &H->re[0];
    for (int i = 0; i < RE_CACHE; i++) {
        re_entry *e = &H->re[i];
        if (e->code && e->len == len && memcmp(e->pat, pat, len) == 0) {
            e->used = ++H->re_clock;
            return e;
        }
        if (!e->code || (victim->code && e->used < victim->used))
            victim = e;
    }
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_AUTO_CALLOUT | PCRE2_NEVER_BACKSLASH_C,
                                     &ecode, &eoff, NULL);
    if (!code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof msg);
        luaL_error(L, "invalid regular expression at offset %d: %s", (int)eoff, (const char *)msg);
    }
    uint32_t ncap = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &ncap);
    char *copy = ncap <= RE_MAX_CAPTURES ? malloc(len + 1) : NULL;
    if (!copy) {
        pcre2_code_free(code);
        if (ncap > RE_MAX_CAPTURES)
            luaL_error(L, "regular expression has more than %d captures", RE_MAX_CAPTURES);
        luaL_error(L, "not enough memory");
    }
    memcpy(copy, pat, len);
    pcre2_code_free(victim->code);
    free(victim->pat);
    victim->pat = copy;
    victim->len = len;
    victim->code = code;
    victim->ncap = (int)ncap;
    victim->used = ++H->re_clock;
    return victim;
}

static const char *re_subject(lua_State *L, int arg, size_t *len)
{
    const char *s = luaL_checklstring(L, arg, len);
    if (*len > RE_MAX_SUBJECT)
        luaL_error(L, "subject longer than %d bytes for halle.re", RE_MAX_SUBJECT);
    return s;
}

/* Matches from offset start; returns 1 with the ovector filled, 0 for no match, and raises
 * for limits and errors. */
static int re_exec(lua_State *L, hl_lua *H, re_entry *e, const char *s, size_t len, size_t start,
                   uint32_t opts)
{
    int rc = pcre2_match(e->code, (PCRE2_SPTR)s, len, start, opts, H->md, H->mctx);
    if (rc > 0)
        return 1;
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (rc == PCRE2_ERROR_CALLOUT) {
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
        raise_stop(L, H);
    }
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT)
        luaL_error(L, "regular expression too complex");
    PCRE2_UCHAR msg[160];
    if (rc == 0)
        snprintf((char *)msg, sizeof msg, "too many captures");
    else
        pcre2_get_error_message(rc, msg, sizeof msg);
    return luaL_error(L, "regular expression: %s", (const char *)msg);
}

/* Pushes capture i (0 = whole match); false for a group that did not take part. */
static void push_capture(lua_State *L, hl_lua *H, const char *s, int i)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(H->md);
    if (ov[2 * i] == PCRE2_UNSET)
        lua_pushboolean(L, 0);
    else
        lua_pushlstring(L, s + ov[2 * i], ov[2 * i + 1] > ov[2 * i] ? ov[2 * i + 1] - ov[2 * i] : 0);
}

/* The captures, or the whole match when the pattern has none. */
static int push_captures(lua_State *L, hl_lua *H, re_entry *e, const char *s)
{
    if (e->ncap == 0) {
        push_capture(L, H, s, 0);
        return 1;
    }
    luaL_checkstack(L, e->ncap, "too many captures");
    for (int i = 1; i <= e->ncap; i++)
        push_capture(L, H, s, i);
    return e->ncap;
}

static int re_find_or_match(lua_State *L, int find)
{
    hl_lua *H = hl_lua_from_state(L);
    size_t len;
    const char *s = re_subject(L, 1, &len);
    re_entry *e = re_get(L, H, 2);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), len);
    if (init > len || !re_exec(L, H, e, s, len, init, 0)) {
        luaL_pushfail(L);
        return 1;
    }
    if (!find)
        return push_captures(L, H, e, s);
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(H->md);
    lua_pushinteger(L, (lua_Integer)ov[0] + 1);
    lua_pushinteger(L, (lua_Integer)(ov[1] > ov[0] ? ov[1] : ov[0]));
    luaL_checkstack(L, e->ncap, "too many captures");
    for (int i = 1; i <= e->ncap; i++)
        push_capture(L, H, s, i);
    return 2 + e->ncap;
}

static int re_find(lua_State *L) { return re_find_or_match(L, 1); }
static int re_match(lua_State *L) { return re_find_or_match(L, 0); }

/* Finds the next match at or after *pos. As in Lua 5.4, an empty match may not start where
 * the previous match ended (*last); PCRE2 then looks further on by itself, UTF-8 aware. */
static int re_next(lua_State *L, hl_lua *H, re_entry *e, const char *s, size_t len, size_t *pos,
                   size_t *last)
{
    if (*pos > len)
        return 0;
    if (!re_exec(L, H, e, s, len, *pos, *pos == *last ? PCRE2_NOTEMPTY_ATSTART : 0)) {
        *pos = len + 1;
        return 0;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(H->md);
    *pos = *last = ov[1] > ov[0] ? ov[1] : ov[0];
    return 1;
}

/* Upvalues: subject, pattern, next offset, end of the last match (-1 for none). */
static int re_gmatch_step(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    size_t len;
    const char *s = lua_tolstring(L, lua_upvalueindex(1), &len);
    re_entry *e = re_get(L, H, lua_upvalueindex(2)); /* may have left the cache meanwhile */
    lua_Integer p = lua_tointeger(L, lua_upvalueindex(3));
    lua_Integer l = lua_tointeger(L, lua_upvalueindex(4));
    size_t pos = (size_t)p, last = l < 0 ? SIZE_MAX : (size_t)l;
    if (!re_next(L, H, e, s, len, &pos, &last))
        return 0;
    lua_pushinteger(L, (lua_Integer)pos);
    lua_replace(L, lua_upvalueindex(3));
    lua_pushinteger(L, (lua_Integer)last);
    lua_replace(L, lua_upvalueindex(4));
    return push_captures(L, H, e, s);
}

static int re_gmatch(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    size_t len;
    re_subject(L, 1, &len);
    re_get(L, H, 2); /* report a bad pattern here, not at the first step */
    lua_settop(L, 2);
    lua_pushinteger(L, 0);
    lua_pushinteger(L, -1);
    lua_pushcclosure(L, re_gmatch_step, 4);
    return 1;
}

/* Appends the replacement with %0-%9 expanded (%1 is the whole match when the pattern has
 * no captures, as in Lua) and %% as a percent sign. */
static void add_replacement(lua_State *L, luaL_Buffer *b, hl_lua *H, re_entry *e, const char *s,
                            const char *r, size_t rlen)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(H->md);
    for (size_t i = 0; i < rlen; i++) {
        if (r[i] != '%') {
            luaL_addchar(b, r[i]);
            continue;
        }
        if (++i == rlen || (r[i] != '%' && (r[i] < '0' || r[i] > '9')))
            luaL_error(L, "invalid use of '%%' in replacement string");
        if (r[i] == '%') {
            luaL_addchar(b, '%');
            continue;
        }
        int k = r[i] - '0';
        if (k == 1 && e->ncap == 0)
            k = 0;
        else if (k > e->ncap)
            luaL_error(L, "invalid capture index %%%d in replacement string", k);
        if (ov[2 * k] != PCRE2_UNSET && ov[2 * k + 1] > ov[2 * k])
            luaL_addlstring(b, s + ov[2 * k], ov[2 * k + 1] - ov[2 * k]);
    }
}

static int re_gsub(lua_State *L)
{
    hl_lua *H = hl_lua_from_state(L);
    size_t len, rlen;
    const char *s = re_subject(L, 1, &len);
    re_entry *e = re_get(L, H, 2);
    const char *r = luaL_checklstring(L, 3, &rlen);
    lua_Integer max = luaL_optinteger(L, 4, LUA_MAXINTEGER);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t pos = 0, last = SIZE_MAX, copied = 0;
    lua_Integer n = 0;
    while (n < max && re_next(L, H, e, s, len, &pos, &last)) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(H->md);
        if (ov[0] > copied)
            luaL_addlstring(&b, s + copied, ov[0] - copied);
        add_replacement(L, &b, H, e, s, r, rlen);
        copied = last;
        n++;
    }
    luaL_addlstring(&b, s + copied, len - copied);
    luaL_pushresult(&b);
    lua_pushinteger(L, n);
    return 2;
}

static const luaL_Reg re_funcs[] = {
    {"find", re_find}, {"match", re_match}, {"gmatch", re_gmatch}, {"gsub", re_gsub}, {NULL, NULL}};

/* ---- state ------------------------------------------------------------------------------ */

static const luaL_Reg libs[] = {
    {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
    {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
    {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_COLIBNAME, luaopen_coroutine},
    {NULL, NULL}};

/* Builds the sandbox; runs under lua_pcall so that running out of memory is an error. */
static int setup(lua_State *L)
{
    for (const luaL_Reg *l = libs; l->name; l++) {
        luaL_requiref(L, l->name, l->func, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    set_fn(L, g, "dofile", NULL);
    set_fn(L, g, "loadfile", NULL);
    set_fn(L, g, "print", sb_print);
    set_fn(L, g, "require", sb_require);
    wrap(L, g, "load", sb_load);
    wrap(L, g, "collectgarbage", sb_collectgarbage);
    wrap(L, g, "setmetatable", sb_setmetatable);
    wrap(L, g, "tonumber", sb_bytes);

    /* os: only the clock and calendar; registered as the loaded "os" too, for messages. */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);
    lua_createtable(L, 0, 4);
    static const char *const os_keep[] = {"time", "clock", "date", "difftime"};
    for (int i = 0; i < 4; i++) {
        lua_getfield(L, -2, os_keep[i]);
        lua_setfield(L, -2, os_keep[i]);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, LUA_OSLIBNAME);
    lua_pop(L, 1);
    lua_setfield(L, g, LUA_OSLIBNAME);
    lua_pop(L, 1);

    /* Edited in place: the string metatable's __index is this same table. */
    lua_getfield(L, g, LUA_STRLIBNAME);
    int str = lua_gettop(L);
    set_fn(L, str, "dump", NULL);
    set_fn(L, str, "match", no_patterns);
    set_fn(L, str, "gmatch", no_patterns);
    set_fn(L, str, "gsub", no_patterns);
    set_fn(L, str, "find", sb_find);
    wrap(L, str, "rep", sb_rep);
    wrap(L, str, "byte", sb_bytes);
    wrap(L, str, "pack", sb_bytes);
    wrap(L, str, "unpack", sb_bytes);
    wrap(L, str, "packsize", sb_bytes);
    lua_pop(L, 1);

    lua_getfield(L, g, LUA_UTF8LIBNAME);
    int utf = lua_gettop(L);
    wrap(L, utf, "len", sb_bytes);
    wrap(L, utf, "offset", sb_bytes);
    wrap(L, utf, "codepoint", sb_bytes);
    lua_pop(L, 1);

    lua_getfield(L, g, LUA_TABLIBNAME);
    int tab = lua_gettop(L);
    wrap(L, tab, "insert", sb_tinsert);
    wrap(L, tab, "remove", sb_tremove);
    wrap(L, tab, "concat", sb_tconcat);
    wrap(L, tab, "unpack", sb_tunpack);
    wrap(L, tab, "sort", sb_tsort);
    wrap(L, tab, "move", sb_tmove);
    lua_pop(L, 1);

    luaL_newlib(L, re_funcs);
    lua_pushvalue(L, -1);
    lua_setfield(L, g, "re");
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "re");
    lua_setfield(L, g, "halle");

    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &loaded_key);
    for (int i = STOP_INSTRUCTIONS; i <= STOP_MEMORY; i++) {
        lua_pushstring(L, stop_msg[i]);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &stop_key[i]);
    }
    return 0;
}

static int sb_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    hl_log(HL_LOG_ERROR, "lua panic: %s", msg ? msg : "(error object is not a string)");
    return 0; /* Lua aborts */
}

static int valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x21 || c == 0x7f || c == '/' || c == '\\' || c == '"')
            return 0;
    }
    return 1;
}

hl_lua *hl_lua_new(const char *name, const char *dir, const hl_lua_limits *lim, hl_err *err)
{
    if (!name || !valid_name(name)) {
        hl_err_set(err, HL_EINVAL, "invalid plugin name for a Lua state");
        return NULL;
    }
    if (dir && (!*dir || strlen(dir) > PATH_MAX - MODNAME_MAX - 16)) {
        hl_err_set(err, HL_EINVAL, "plugin %s: invalid folder", name);
        return NULL;
    }
    hl_lua *H = calloc(1, sizeof *H);
    if (!H || !(H->name = strdup(name)) || (dir && !(H->dir = strdup(dir)))) {
        hl_lua_free(H);
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    H->mem_limit = lim && lim->memory ? lim->memory : DEFAULT_MEMORY;
    H->budget = lim && lim->instructions > 0 ? lim->instructions : DEFAULT_INSTRUCTIONS;
    H->deadline_ms = lim && lim->deadline_ms > 0 ? lim->deadline_ms : DEFAULT_DEADLINE_MS;

    H->mctx = pcre2_match_context_create(NULL);
    H->md = pcre2_match_data_create(RE_MAX_CAPTURES + 1, NULL);
    if (!H->mctx || !H->md) {
        hl_lua_free(H);
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    pcre2_set_match_limit(H->mctx, RE_MATCH_LIMIT);
    pcre2_set_depth_limit(H->mctx, RE_DEPTH_LIMIT);
    pcre2_set_heap_limit(H->mctx, RE_HEAP_LIMIT_KB);
    pcre2_set_callout(H->mctx, re_callout, H);

    H->protect = 1;
    H->L = lua_newstate(sb_alloc, H);
    if (!H->L) {
        hl_lua_free(H);
        hl_err_set(err, HL_ETOOBIG, "plugin %s: memory limit too small for a Lua state", name);
        return NULL;
    }
    lua_atpanic(H->L, sb_panic);
    lua_sethook(H->L, sb_hook, LUA_MASKCOUNT, HOOK_COUNT);
    lua_pushcfunction(H->L, setup);
    int st = lua_pcall(H->L, 0, 0, 0);
    H->protect = 0;
    if (st != LUA_OK) {
        hl_err_set(err, st == LUA_ERRMEM ? HL_ETOOBIG : HL_ERR, "plugin %s: cannot set up Lua: %s", name,
                   st == LUA_ERRMEM ? "memory limit too small" : lua_tostring(H->L, -1));
        hl_lua_free(H);
        return NULL;
    }
    return H;
}

void hl_lua_free(hl_lua *H)
{
    if (!H)
        return;
    if (H->L)
        lua_close(H->L);
    for (int i = 0; i < RE_CACHE; i++) {
        pcre2_code_free(H->re[i].code);
        free(H->re[i].pat);
    }
    pcre2_match_data_free(H->md);
    pcre2_match_context_free(H->mctx);
    free(H->name);
    free(H->dir);
    free(H);
}

struct lua_State *hl_lua_state(hl_lua *H) { return H ? H->L : NULL; }

hl_lua *hl_lua_from_state(struct lua_State *s)
{
    void *ud = NULL;
    if (!s || lua_getallocf(s, &ud) != sb_alloc)
        return NULL;
    return ud;
}

const char *hl_lua_name(const hl_lua *H) { return H ? H->name : NULL; }

size_t hl_lua_memory(const hl_lua *H) { return H ? H->mem : 0; }

int hl_lua_charge(hl_lua *H, unsigned long n)
{
    if (!H || !H->depth)
        return 0;
    if (account(H, n)) {
        /* The plugin's code must not go on either: arm the hook to fire at once. */
        lua_sethook(H->L, sb_hook, LUA_MASKCOUNT, 1);
        return 1;
    }
    return 0;
}

/* Keeps the "file:line:" position of string errors; names the type of any other value. */
static int msgh(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TSTRING)
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

int hl_lua_call(hl_lua *H, int nargs, int nresults, hl_err *err)
{
    if (!H || nargs < 0 || nresults < LUA_MULTRET)
        return hl_err_set(err, HL_EINVAL, "hl_lua_call: invalid arguments");
    lua_State *L = H->L;
    int base = lua_gettop(L) - nargs; /* the function */
    if (base < 1)
        return hl_err_set(err, HL_EINVAL, "plugin %s: hl_lua_call: no function on the stack", H->name);
    if (!lua_checkstack(L, (nresults > 0 ? nresults : 0) + 2)) {
        lua_settop(L, base - 1);
        return hl_err_set(err, HL_ENOMEM, "plugin %s: Lua stack full", H->name);
    }
    int outer = H->depth == 0;
    if (!outer && H->stop) { /* a callback from a call that is already being stopped */
        lua_settop(L, base - 1);
        return hl_err_set(err, HL_ETOOBIG, "plugin %s: %s", H->name, stop_msg[H->stop]);
    }
    if (outer) {
        H->refused = 0;
        H->used = 0;
        H->stop = STOP_NONE;
        H->grown = 0;
        H->steps = 0;
        H->deadline_ns = now_ns() + (long long)H->deadline_ms * 1000000LL;
    }
    lua_pushcfunction(L, msgh);
    lua_insert(L, base);
    H->depth++;
    int st = lua_pcall(L, nargs, nresults, base);
    if (outer && H->refused) /* nothing came after the last refusal */
        refusal_final(H);
    H->depth--;
    lua_remove(L, base);
    int stop = H->stop;
    if (outer) {
        H->stop = STOP_NONE;
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, HOOK_COUNT);
    }
    if (!stop && st == LUA_ERRMEM)
        stop = STOP_MEMORY;
    if (st == LUA_OK && !stop)
        return HL_OK;
    if (stop) {
        lua_settop(L, base - 1);
        return hl_err_set(err, HL_ETOOBIG, "plugin %s: %s", H->name, stop_msg[stop]);
    }
    const char *msg = lua_tostring(L, -1);
    hl_err_set(err, HL_ERR, "plugin %s: %s", H->name, msg ? msg : "(error object is not a string)");
    lua_settop(L, base - 1);
    return HL_ERR;
}

/* Loads text (never bytecode) under the memory cap and runs it with hl_lua_call. */
static int load_and_run(hl_lua *H, const char *chunkname, const char *code, size_t len, hl_err *err)
{
    lua_State *L = H->L;
    if (len > 0 && code[0] == LUA_SIGNATURE[0])
        return hl_err_set(err, HL_EINVAL, "plugin %s: binary chunks are not allowed", H->name);
    if (!lua_checkstack(L, 2))
        return hl_err_set(err, HL_ENOMEM, "plugin %s: Lua stack full", H->name);
    H->protect++;
    int st = luaL_loadbufferx(L, code, len, chunkname, "t");
    H->protect--;
    H->refused = 0;
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        int rc = st == LUA_ERRMEM ? hl_err_set(err, HL_ETOOBIG, "plugin %s: memory limit exceeded", H->name)
                                  : hl_err_set(err, HL_ERR, "plugin %s: %s", H->name, msg ? msg : "cannot load chunk");
        lua_pop(L, 1);
        return rc;
    }
    return hl_lua_call(H, 0, 0, err);
}

int hl_lua_run_string(hl_lua *H, const char *chunkname, const char *code, size_t len, hl_err *err)
{
    if (!H || !code)
        return hl_err_set(err, HL_EINVAL, "hl_lua_run_string: no state or no code");
    char name[128];
    snprintf(name, sizeof name, "=%s", chunkname && *chunkname ? chunkname : "?");
    return load_and_run(H, name, code, len, err);
}

/* A relative path with no empty, "." or ".." component. */
static int valid_relpath(const char *p)
{
    size_t n = strlen(p);
    if (n == 0 || n > 255 || p[0] == '/')
        return 0;
    for (const char *c = p; *c;) {
        size_t k = strcspn(c, "/");
        if (k == 0 || (k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        c += k;
        if (*c == '/')
            c++;
        if (*c == '\0' && c[-1] == '/')
            return 0;
    }
    return 1;
}

int hl_lua_run_file(hl_lua *H, const char *relpath, hl_err *err)
{
    if (!H || !relpath)
        return hl_err_set(err, HL_EINVAL, "hl_lua_run_file: no state or no path");
    if (!valid_relpath(relpath))
        return hl_err_set(err, HL_EINVAL, "plugin %s: invalid file name \"%.64s\" (relative, no \"..\")", H->name,
                          relpath);
    if (!H->dir)
        return hl_err_set(err, HL_EINVAL, "plugin %s: no folder to load %s from", H->name, relpath);
    char chunk[PATH_MAX], why[600];
    if ((size_t)snprintf(chunk, sizeof chunk, "@%s/%s", H->name, relpath) >= sizeof chunk)
        return hl_err_set(err, HL_EINVAL, "plugin %s: path too long", H->name);
    char *src;
    size_t len;
    int rc = read_file(H, relpath, FILE_MAX, &src, &len, why, sizeof why);
    if (rc != HL_OK)
        return hl_err_set(err, rc, "plugin %s: cannot load %s: %s", H->name, relpath, why);
    rc = load_and_run(H, chunk, src, len, err);
    free(src);
    return rc;
}
