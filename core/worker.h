/* A worker process: services, plugins, and the request pipeline on one SO_REUSEPORT socket
 * (core/serve.c starts N of them); and the same services without serving, for the jobs
 * process and the commands that load plugins. */
#ifndef HL_WORKER_H
#define HL_WORKER_H

#include <stdint.h>

#include "core/config.h"
#include "core/error.h"
#include "core/services.h"

/* What the master sees of each worker: an entry of a page shared (MAP_SHARED) before the
 * workers are forked, in which the worker writes when the request it is handling started (0
 * when idle). CLOCK_MONOTONIC is the same clock in every process. A stuck worker cannot answer
 * anything, so the master must read this without its help. */
typedef struct hl_beat {
    int64_t pid;
    int64_t busy_since_us;
} hl_beat;

/* Runs worker `id` until SIGTERM/SIGINT: opens the services, loads the plugins, listens, and
 * writes one byte to ready_fd (if >= 0) once it accepts connections. beat (may be NULL) is its
 * heartbeat entry. Returns HL_OK after a clean stop. */
int hl_worker_run(const hl_config *cfg, int id, int ready_fd, hl_beat *beat, hl_err *err);

/* The services without serving (id -1), for the jobs process and `halle PLUGIN COMMAND`. */
hl_worker *hl_worker_cli_new(const hl_config *cfg, hl_err *err);
void hl_worker_cli_free(hl_worker *w);

/* Loads what every worker would (themes, translations, trusted_proxies) and frees it: the
 * master calls it before forking, so that a mistake is told once, on the terminal. */
int hl_worker_check(const hl_config *cfg, hl_err *err);

#endif
