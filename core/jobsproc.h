/* The jobs process: a process beside the workers (started and restarted by the master) that
 * loads the plugins as a worker does, registers the core's jobs (cron.* hooks, mail, purge)
 * and runs what is due every second; the same set-up serves `halle jobs list | run | tick`. */
#ifndef HL_JOBSPROC_H
#define HL_JOBSPROC_H

#include "core/config.h"
#include "core/db.h"
#include "core/error.h"
#include "core/jobs.h"

typedef struct hl_jobsproc hl_jobsproc;

/* Loads the plugins and registers every job (core and plugins), recorded in hl_jobs.
 * wait_mail: the mail job waits for its messages' outcome (the CLI) instead of leaving them
 * in flight for the loop (the jobs process). */
hl_jobsproc *hl_jobsproc_open(const hl_config *cfg, int wait_mail, hl_err *err);
hl_jobs *hl_jobsproc_jobs(hl_jobsproc *p);
hl_db *hl_jobsproc_db(hl_jobsproc *p);
void hl_jobsproc_close(hl_jobsproc *p);

/* The process's body: runs due jobs every second and moves mail along until SIGTERM/SIGINT.
 * Matches hl_jobs_main (core/http.h). */
int hl_jobsproc_main(const hl_config *cfg, hl_err *err);

#endif
