/* Sandboxed Lua 5.4 for plugins: one state per plugin per worker, kept alive across requests.
 * The sandbox removes io, os (but time/clock/date), debug, package loading outside the plugin
 * folder, loadfile/dofile, string.dump and binary chunks; caps memory with a custom allocator;
 * and bounds every call with an instruction budget and a wall-clock deadline enforced by a
 * count hook that, once exceeded, fires at every instruction so pcall cannot swallow the stop.
 * Lua string patterns can backtrack without bound inside C, out of the hook's reach, so the
 * pattern functions are replaced by PCRE2-backed ones with match and depth limits (halle.re). */
#ifndef HL_LUA_H
#define HL_LUA_H

#include <stddef.h>

#include "core/error.h"

struct lua_State;

typedef struct hl_lua_limits {
    size_t memory;        /* bytes the state may hold (0 = 32 MiB) */
    long instructions;    /* VM instructions per call (0 = 50 million) */
    int deadline_ms;      /* wall-clock time per call (0 = 2000) */
} hl_lua_limits;

typedef struct hl_lua hl_lua;

/* Creates a sandboxed state for plugin name whose files are under dir. require("x.y") loads
 * dir/x/y.lua (text only, names of [A-Za-z0-9_] parts). print() writes to the log. */
hl_lua *hl_lua_new(const char *name, const char *dir, const hl_lua_limits *lim, hl_err *err);
void hl_lua_free(hl_lua *L);

/* Loads and runs a file of the plugin (path relative to its folder) under the limits. */
int hl_lua_run_file(hl_lua *L, const char *relpath, hl_err *err);
/* Loads and runs text under the limits (chunkname appears in error messages). */
int hl_lua_run_string(hl_lua *L, const char *chunkname, const char *code, size_t len, hl_err *err);

/* The raw state, for the core's bridge to push API functions and call plugin callbacks. */
struct lua_State *hl_lua_state(hl_lua *L);
hl_lua *hl_lua_from_state(struct lua_State *s);
const char *hl_lua_name(const hl_lua *L);

/* Calls the function below nargs arguments on the stack (as lua_pcall) with the limits armed.
 * On error the stack is left as before the function was pushed, and err holds
 * "plugin NAME: FILE:LINE: message", or names the limit hit: "instruction limit exceeded",
 * "time limit exceeded", "memory limit exceeded". Returns HL_OK, HL_ERR for a Lua error,
 * HL_ETOOBIG for a limit. On success nresults values are left on the stack. */
int hl_lua_call(hl_lua *L, int nargs, int nresults, hl_err *err);

/* Charges n instructions to the current call for work the plugin asked of C code outside the
 * VM (its SQL, through a progress handler). Returns nonzero once a limit is passed: the caller
 * stops that work, and the call then fails with the limit even if the plugin catches errors. */
int hl_lua_charge(hl_lua *L, unsigned long n);

/* Memory currently held by the state, in bytes. */
size_t hl_lua_memory(const hl_lua *L);

#endif
