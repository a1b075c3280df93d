/* Migrations of an instance (see migrate.h): the core's numbered files for the main and the
 * archive databases, and the enabled plugins' own, applied in that order. */
#include "core/migrate.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/accounts.h"
#include "core/db.h"
#include "core/log.h"
#include "core/plugin.h"

/* The highest number among dir's migration files (NNN_name.sql), 0 when there are none. */
static long newest_file(const char *dir)
{
    DIR *d = opendir(dir);
    long best = 0;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char *end;
        long n = strtol(de->d_name, &end, 10);
        size_t len = strlen(de->d_name);
        if (end != de->d_name && *end == '_' && len > 4 && !strcmp(de->d_name + len - 4, ".sql") && n > best)
            best = n;
    }
    if (d)
        closedir(d);
    return best;
}

/* A database migrated by a newer halle than this one (after a downgrade, or a machine not yet
 * upgraded among several) must not be served: this code does not know its tables. */
static int check_not_newer(hl_db *db, const char *component, const char *dir, hl_err *err)
{
    int have = hl_db_schema_version(db, component, err);
    if (have < 0)
        return have;
    long know = newest_file(dir);
    if (have > know)
        return hl_err_set(err, HL_EINVAL,
                          "the database's %s schema is at version %d, but this halle knows only up to %ld: it was "
                          "upgraded by a newer halle. Run that version (or restore the backup taken before the "
                          "upgrade); halle will not serve tables it does not know.",
                          component, have, know);
    return HL_OK;
}

/* Where only `halle migrate` may bring the schema up to date (a shared PostgreSQL database,
 * where servers of the old version may still be running), an older schema stops the command. */
static int check_not_older(hl_db *db, const char *component, const char *dir, hl_err *err)
{
    int have = hl_db_schema_version(db, component, err);
    if (have < 0)
        return have;
    long know = newest_file(dir);
    if (have < know)
        return hl_err_set(err, HL_EINVAL,
                          "the database's %s schema is at version %d, but this halle needs version %ld. "
                          "Run `halle migrate` once, on one machine, then start the servers "
                          "(docs/scaling.md, upgrades).",
                          component, have, know);
    return HL_OK;
}

static int migrate_file(const char *path, unsigned flags, const char *component,
                        const char *dir, int apply, int *applied, hl_err *err)
{
    hl_db *db = hl_db_open(path, flags, err);
    if (!db)
        return err ? err->code : HL_ERR;
    int rc = check_not_newer(db, component, dir, err);
    if (rc == HL_OK && !apply)
        rc = check_not_older(db, component, dir, err);
    else if (rc == HL_OK)
        rc = hl_db_migrate(db, component, dir, applied, err);
    /* What SQL cannot do in a migration: fold the names of accounts made before name_folded. */
    if (rc == HL_OK && apply && !strcmp(component, "core"))
        rc = hl_accounts_refold_all(db, err);
    hl_db_close(db);
    return rc;
}

/* Enabled plugins' new migrations (after an upgrade) run at start too, so that a plugin never
 * serves with an older schema than its code expects. */
static int migrate_plugins(const hl_config *cfg, int apply, hl_err *err)
{
    hl_db *db = hl_db_open(cfg->db_path, 0, err);
    if (!db)
        return err && err->code ? err->code : HL_ERR;
    hl_plugin_list l;
    int rc = hl_plugin_discover(cfg, db, &l, err);
    for (size_t i = 0; rc == HL_OK && i < l.count; i++) {
        const hl_plugin_info *p = &l.items[i];
        if (!p->enabled || p->error)
            continue;
        hl_err e;
        hl_err_clear(&e);
        char *dir = hl_plugin_migrations_dir(cfg, p);
        rc = dir ? check_not_newer(db, p->name, dir, &e) : HL_OK;
        if (rc == HL_OK && dir && !apply)
            rc = check_not_older(db, p->name, dir, &e);
        free(dir);
        if (rc != HL_OK) {
            hl_err_set(err, rc, "plugin %s: %s", p->name, e.msg);
            break;
        }
        if (apply && hl_plugin_migrate(cfg, db, p, &e) != HL_OK)
            hl_log(HL_LOG_ERROR, "plugin %s: %s", p->name, e.msg); /* the plugin is refused later */
    }
    hl_plugin_list_free(&l);
    hl_db_close(db);
    return rc;
}

/* Migrations run under a lock that holds across machines (PostgreSQL's advisory lock): two
 * `halle migrate` started at once on two machines run one after the other, and the second
 * finds nothing left to do. */
static int run_all(const hl_config *cfg, int apply, int *applied_main, int *applied_archive,
                   hl_err *err)
{
    char dir[4096];
    const char *share = hl_config_share_dir(cfg);
    hl_db *lock = NULL;
    if (apply && hl_db_is_url(cfg->db_path)) {
        if (!(lock = hl_db_open(cfg->db_path, 0, err)))
            return err && err->code ? err->code : HL_ERR;
        int rc = hl_db_lock(lock, "halle:migrate", 1, err);
        if (rc != HL_OK) {
            hl_db_close(lock);
            return rc;
        }
    }
    snprintf(dir, sizeof dir, "%s/core/migrations/main", share);
    int rc = migrate_file(cfg->db_path, HL_DB_CREATE, "core", dir, apply, applied_main, err);
    if (rc == HL_OK)
        rc = migrate_plugins(cfg, apply, err);
    if (rc == HL_OK) {
        snprintf(dir, sizeof dir, "%s/core/migrations/archive", share);
        rc = migrate_file(cfg->archive_path, HL_DB_CREATE, "archive", dir, apply, applied_archive,
                          err);
    }
    if (lock) {
        hl_db_lock(lock, "halle:migrate", 0, NULL);
        hl_db_close(lock);
    }
    return rc;
}

int hl_migrate_instance(const hl_config *cfg, int *applied_main, int *applied_archive, hl_err *err)
{
    return run_all(cfg, 1, applied_main, applied_archive, err);
}

int hl_migrate_ready(const hl_config *cfg, hl_err *err)
{
    if (!hl_db_is_url(cfg->db_path))
        return run_all(cfg, 1, NULL, NULL, err);
    return run_all(cfg, 0, NULL, NULL, err);
}
