/* `halle migrate-data`: copies an instance's SQLite databases (main and archive) into empty
 * PostgreSQL databases created with the same migrations, table by table in foreign-key order,
 * then checks row counts and money sums table by table. */
#ifndef HL_MIGRATE_DATA_H
#define HL_MIGRATE_DATA_H

#include <stdio.h>

#include "core/config.h"
#include "core/error.h"

typedef struct hl_migrate_data_opts {
    const char *to;          /* the main database's target: postgresql:// URI (or a SQLite file) */
    const char *archive_to;  /* the archive's; NULL: the URI's database name + "_archive" */
    int force;               /* empty a target that holds rows instead of refusing it */
    FILE *out;               /* the checks' table and the halle.conf lines (NULL: stdout) */
    FILE *progress;          /* a bar when it is a terminal, else a line per table (NULL: stderr) */
} hl_migrate_data_opts;

/* Copies the instance of cfg (on SQLite, not being served: the caller holds the instance lock,
 * hl_instance_lock, for the whole run) into the targets. The source is first migrated as every command does; the
 * targets get the core's, the archive's and the source's plugins' migrations, and must end at
 * the same versions as the source. A target holding any row (outside hl_migrations) is refused
 * unless o->force, which empties its tables. Each database is copied in one transaction that
 * also runs the checks: a difference rolls it back and fails with HL_ECONFLICT naming the
 * tables. Refusals are HL_EINVAL (HL_EBUSY while the instance is served). */
int hl_migrate_data(const hl_config *cfg, const hl_migrate_data_opts *o, hl_err *err);

#endif
