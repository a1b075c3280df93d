/* Migrations of an instance (see migrate.h): the core's numbered files for the main and the
 * archive databases, and the enabled plugins' own, applied in that order. */
#include "core/migrate.h"

#include <stdio.h>

#include "core/db.h"
#include "core/log.h"
#include "core/plugin.h"

static int migrate_file(const char *path, unsigned flags, const char *component,
                        const char *dir, int *applied, hl_err *err)
{
    hl_db *db = hl_db_open(path, flags, err);
    if (!db)
        return err ? err->code : HL_ERR;
    int rc = hl_db_migrate(db, component, dir, applied, err);
    hl_db_close(db);
    return rc;
}

/* Enabled plugins' new migrations (after an upgrade) run at start too, so that a plugin never
 * serves with an older schema than its code expects. */
static int migrate_plugins(const hl_config *cfg, hl_err *err)
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
        if (hl_plugin_migrate(cfg, db, p, &e) != HL_OK)
            hl_log(HL_LOG_ERROR, "plugin %s: %s", p->name, e.msg); /* the plugin is refused later */
    }
    hl_plugin_list_free(&l);
    hl_db_close(db);
    return rc;
}

int hl_migrate_instance(const hl_config *cfg, int *applied_main, int *applied_archive, hl_err *err)
{
    char dir[4096];
    const char *share = hl_config_share_dir(cfg);
    snprintf(dir, sizeof dir, "%s/core/migrations/main", share);
    int rc = migrate_file(cfg->db_path, HL_DB_CREATE, "core", dir, applied_main, err);
    if (rc)
        return rc;
    if ((rc = migrate_plugins(cfg, err)) != HL_OK)
        return rc;
    snprintf(dir, sizeof dir, "%s/core/migrations/archive", share);
    return migrate_file(cfg->archive_path, HL_DB_CREATE, "archive", dir, applied_archive, err);
}

