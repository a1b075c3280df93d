/* `halle serve`: the master process that starts N workers (core/worker.c) and one jobs
 * process, restarts the dead, kills the stuck (request_hard_limit), stops them gracefully on
 * SIGTERM/SIGINT and replaces them one by one on SIGHUP. */
#ifndef HL_SERVE_H
#define HL_SERVE_H

#include "core/config.h"
#include "core/error.h"

/* The jobs process's body (core/jobsproc.c's hl_jobsproc_main), handed in by main; NULL runs
 * no jobs process. */
typedef int (*hl_jobs_main)(const hl_config *cfg, hl_err *err);

/* Runs the master: instance lock, migrations, checks, workers and the jobs process. Returns
 * when the server has stopped (HL_OK) or could not start (error with message). */
int hl_serve(hl_config *cfg, hl_jobs_main jobs_main, hl_err *err);

#endif
