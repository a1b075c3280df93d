/* Bringing an instance's databases up to date: used by `halle init`, `halle migrate` and
 * `halle serve` before the workers start. */
#ifndef HL_MIGRATE_H
#define HL_MIGRATE_H

#include "core/config.h"
#include "core/error.h"

/* Opens the instance databases and applies the core's migrations to both, and the new
 * migrations of enabled plugins to the main one. Prints nothing; applied counts are returned
 * through the pointers (may be NULL). */
int hl_migrate_instance(const hl_config *cfg, int *applied_main, int *applied_archive, hl_err *err);
/* Before serving or running a command: on SQLite (one machine) the same as
 * hl_migrate_instance; on PostgreSQL, where other machines may still run the older version,
 * only checks, and an older schema is an error that says to run `halle migrate`. A newer
 * schema is an error on both. */
int hl_migrate_ready(const hl_config *cfg, hl_err *err);

#endif
