/* The core as plugins see it: the halle_api function table handed to C plugins, the host
 * record of each loaded plugin, and loading the enabled plugins into a worker at start-up. */
#ifndef HL_HOST_H
#define HL_HOST_H

#include "core/error.h"
#include "core/hooks.h"
#include "core/jobs.h"
#include "core/plugin.h"
#include "include/halle/plugin.h"

struct hl_worker;
struct hl_lua;

struct halle_host {
    struct hl_worker *worker;
    char *name;
    hl_plugin_kind kind;
    void *so;                     /* C: dlopen handle */
    const halle_plugin *desc;     /* C: descriptor */
    struct hl_lua *lua;           /* Lua: the plugin's state in this worker */
    hl_db_policy policy;          /* Lua: what its SQL may touch */
    json_t *settings;
    char last_error[512];
    int sql_busy;         /* the plugin's last SQL failed on a lock or serialization conflict */
    struct hl_host_tpl *tpls;     /* Lua: templates compiled by halle.render, by name */
    size_t ntpls;
    struct hl_host_cmd *cmds;     /* commands added to the CLI (halle PLUGIN NAME) */
    size_t ncmds;
};

/* Runs `halle PLUGIN COMMAND ARGS...` on a process's services (core/worker.h's
 * hl_worker_cli_new): loads the enabled plugins as a worker would (without serving), finds
 * the command and runs it. Returns an exit status (2 for an unknown plugin or command, with
 * usage on stderr). */
int hl_host_run_command(struct hl_worker *w, int argc, char **argv);

/* Loads every enabled plugin into the worker; a plugin that fails is logged with its reason
 * and skipped. Returns the hosts (free with hl_host_unload_all). */
int hl_host_load_all(struct hl_worker *w, halle_host ***hosts, size_t *n, hl_err *err);
void hl_host_unload_all(halle_host **hosts, size_t n);

/* The API table given to C plugins (also used by tests). */
const halle_api *hl_host_api(void);
/* A date of epoch seconds (UTC) in lang, as api->format_date (shared with Lua's halle.format_date). */
int hl_host_format_date(const char *lang, int64_t epoch, char *buf, size_t len);

/* Declares the core's hook catalogue (docs/hooks.md). */
int hl_host_declare_core_hooks(hl_hooks *h, hl_err *err);

/* Jobs of a plugin (C and Lua alike): name is plain, the job is registered as PLUGIN.name. */
int hl_host_add_job(halle_host *h, const char *name, const char *schedule, hl_job_fn fn, void *ud,
                    void (*ud_free)(void *), hl_err *err);
/* The full name of one of the plugin's own jobs: PLUGIN.name for "name" or "PLUGIN.name";
 * HL_EINVAL for another plugin's or the core's (a plugin queues only its own jobs). */
int hl_host_job_name(const halle_host *h, const char *name, char *out, size_t len);

/* Registers a capability of the plugin (C and Lua alike): its name must be PLUGIN.word.
 * Returns the id, or HALLE_ERROR with the plugin's last_error set. */
int hl_host_capability(halle_host *h, const char *name, const halle_cap_rule *rules, size_t nrules,
                       int (*owns)(halle_host *h, int64_t user_id, int64_t object, void *ud), void *ud);

/* Loads a Lua plugin into the worker (core/luaplugin.c). */
int hl_luaplugin_load(halle_host *host, const hl_plugin_list *all, const hl_plugin_info *p, hl_err *err);
void hl_luaplugin_unload(halle_host *host);
/* The one list of C API members and their Lua counterparts (core/luaplugin.c): lua is
 * "halle.x" (a function), "req.x" (a field of the request table) or NULL with why. */
typedef struct hl_lua_twin {
    const char *c;
    const char *lua;
    const char *why;
} hl_lua_twin;
const hl_lua_twin *hl_luaplugin_twins(size_t *n);
/* 1 when the halle table of every Lua plugin has the function "halle.x" / "halle.t.x". */
int hl_luaplugin_has(const char *name);
/* Adds the Lua function held at registry reference ref as a callback of hook (used by
 * halle.hook and by scripts/bench). */
int hl_luaplugin_hook_ref(halle_host *h, hl_hooks *hooks, const char *hook, int ref, int priority, hl_err *err);

#endif
