/* Instance folders: `halle init DIR` lays out halle.conf, data/ (both databases, 0600) and
 * logs/, and applies the core migrations so that the instance is ready to serve; the instance
 * lock that keeps one process at a time serving (or copying) it. */
#ifndef HL_INSTANCE_H
#define HL_INSTANCE_H

#include "core/config.h"
#include "core/error.h"

typedef struct hl_instance_opts {
    const char *name;   /* site name; NULL for a default */
    int demo;           /* demo instance: demo name and data */
    const char *database;         /* postgresql:// URI; NULL: data/halle.db */
    const char *archive_database; /* NULL: data/archive.db, or the database's name + _archive */
} hl_instance_opts;

int hl_instance_init(const char *dir, const hl_instance_opts *opts, hl_err *err);

/* Takes the instance lock (halle.lock beside halle.conf, flock) for the command `what`
 * ("serve", "migrate-data"), recorded in the file with the pid for the message another
 * process gets. The lock goes with the processes holding the fd, so a crash leaves nothing to
 * clean up. Returns the fd to keep open (closing it releases the lock), or a negative error:
 * HL_EBUSY, naming the command and pid, when another process holds it. */
int hl_instance_lock(const hl_config *cfg, const char *what, hl_err *err);

#endif
