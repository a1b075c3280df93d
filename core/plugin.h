/* Plugins: discovery (C shared objects exporting a halle_plugin descriptor; Lua folders with a
 * plugin.json manifest), validation with messages that name the file and the problem, the
 * per-instance registry of enabled plugins (hl_plugins table), and loading them into a
 * worker. A broken plugin is refused, never a crash: the server starts without it. */
#ifndef HL_PLUGIN_H
#define HL_PLUGIN_H

#include <jansson.h>

#include "core/config.h"
#include "core/db.h"
#include "core/error.h"

typedef enum hl_plugin_kind { HL_PLUGIN_C = 1, HL_PLUGIN_LUA = 2 } hl_plugin_kind;

typedef struct hl_plugin_info {
    char *name;
    char *version;
    char *description;
    hl_plugin_kind kind;
    char *path;         /* the .so file, or the Lua plugin's folder */
    char *requires;     /* comma-separated names, "" if none */
    char *error;        /* why the plugin cannot be loaded, NULL if it can */
    json_t *manifest;   /* Lua: plugin.json; C: built from the descriptor */
    int enabled;        /* from the registry */
    int group_level;    /* manifest "group_level": true: local groups may turn it on for their pages */
} hl_plugin_info;

typedef struct hl_plugin_list {
    hl_plugin_info *items;
    size_t count;
} hl_plugin_list;

/* The folders searched, in order (first found wins for a name): plugin_dirs from the
 * configuration, else INSTANCE/plugins, the compiled-in C plugin folder, SHARE/plugins. */
int hl_plugin_dirs(const hl_config *cfg, char ***dirs, size_t *n, hl_err *err);
void hl_plugin_dirs_free(char **dirs, size_t n);

/* Finds every plugin and reads the registry (db may be NULL: nothing enabled). */
int hl_plugin_discover(const hl_config *cfg, hl_db *db, hl_plugin_list *out, hl_err *err);
void hl_plugin_list_free(hl_plugin_list *l);
const hl_plugin_info *hl_plugin_find(const hl_plugin_list *l, const char *name);

/* Validates, checks requirements, runs the plugin's migrations, records it enabled. */
int hl_plugin_enable(const hl_config *cfg, hl_db *db, const char *name, hl_err *err);
/* Records it disabled (its data is kept). Refused while an enabled plugin requires it. */
int hl_plugin_disable(const hl_config *cfg, hl_db *db, const char *name, hl_err *err);

/* Runs the plugin's numbered migrations (component = plugin name), if it has a migrations
 * folder (see hl_plugin_migrations_dir). A Lua plugin's run under its database policy: it can
 * only create tables named after it. */
int hl_plugin_migrate(const hl_config *cfg, hl_db *db, const hl_plugin_info *p, hl_err *err);
/* Where the plugin's migrations live (malloc'd): FOLDER/migrations for Lua, a folder named
 * after the plugin beside the library for C. */
char *hl_plugin_migrations_dir(const hl_config *cfg, const hl_plugin_info *p);
/* The access policy of a Lua plugin (own tables + the manifest's "permissions": {"read": [...]},
 * minus what the core never shows). Free with hl_plugin_policy_free. */
int hl_plugin_policy(const hl_plugin_list *all, const hl_plugin_info *p, hl_db_policy *out);
void hl_plugin_policy_free(hl_db_policy *pol);
/* What a Lua plugin may do with tables, from that same policy (one source of truth for the CLI's
 * `plugin info` and the operator's page): {"writes": "NAME_*", "reads": [tables],
 * "never_sees": ["table.column"], "refused": [tables the manifest asked for, never granted]}.
 * NULL when out of memory. */
json_t *hl_plugin_permissions(const hl_plugin_list *all, const hl_plugin_info *p);

/* Enabling, disabling a plugin or changing a setting bumps the configuration's version in the
 * database (hl_settings.config_version); every master (one per machine) watches it and restarts
 * its workers one by one when it changes, so the change reaches every machine. */
int hl_plugin_config_changed(hl_db *db, hl_err *err);
int64_t hl_plugin_config_version(hl_db *db);

/* Suspensions (core/hooks.c suspends a plugin whose callbacks keep failing): recorded per
 * process slot (worker number, -1 for the jobs process) for the operator to see; cleared for a
 * slot when its process starts again. hl_plugin_suspensions returns {plugin: [{worker, reason,
 * since}]} (new reference, {} when none or on error). */
void hl_plugin_record_suspension(hl_db *db, const char *plugin, int worker, const char *reason);
void hl_plugin_clear_suspensions(hl_db *db, int worker);
json_t *hl_plugin_suspensions(hl_db *db);

/* Group-level plugins: a scope ("group:12") turns an instance-enabled, group_level plugin on
 * or off for itself. */
int hl_plugin_scope_set(const hl_config *cfg, hl_db *db, const char *plugin, const char *scope, int enabled,
                        hl_err *err);
/* 1 when plugin is on for scope (and enabled on the instance), else 0. */
int hl_plugin_scope_enabled(hl_db *db, const char *plugin, const char *scope);
/* The group-level plugins enabled on the instance, each with its state for scope:
 * [{name, description, enabled}]. New reference. */
json_t *hl_plugin_scope_list(const hl_config *cfg, hl_db *db, const char *scope);

/* The plugin's settings: stored values over the manifest's defaults, as a JSON object. */
json_t *hl_plugin_settings(hl_db *db, const hl_plugin_info *p);
/* Validates and stores one setting against the manifest's schema. */
int hl_plugin_set_setting(hl_db *db, const hl_plugin_info *p, const char *key, const char *value,
                          hl_err *err);

#endif
