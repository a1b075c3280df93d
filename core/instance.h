/* Instance folders: `halle init DIR` lays out halle.conf, data/ (both databases, 0600) and
 * logs/, and applies the core migrations so that the instance is ready to serve. */
#ifndef HL_INSTANCE_H
#define HL_INSTANCE_H

#include "core/error.h"

typedef struct hl_instance_opts {
    const char *name;   /* site name; NULL for a default */
    int demo;           /* demo instance: demo name and data */
    const char *database;         /* postgresql:// URI; NULL: data/halle.db */
    const char *archive_database; /* NULL: data/archive.db, or the database's name + _archive */
} hl_instance_opts;

int hl_instance_init(const char *dir, const hl_instance_opts *opts, hl_err *err);

#endif
