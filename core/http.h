/* HTTP serving: the master process that binds, forks and supervises worker processes, and the
 * worker's libevent loop that parses each request, routes it and sends the reply. */
#ifndef HL_HTTP_H
#define HL_HTTP_H

#include "core/config.h"
#include "core/error.h"
#include "core/request.h"
#include "core/router.h"

typedef struct hl_worker hl_worker;

/* Registers a route on the worker's router (core routes at start-up; plugins later). */
int hl_http_route(hl_worker *w, unsigned methods, const char *pattern, const char *name,
                  hl_handler handler, void *ud, hl_err *err);
/* The same with HL_ROUTE_* flags (core/router.h): HL_ROUTE_TOKEN_AUTH for routes that
 * authenticate by a header token, which then get no session and need no CSRF token. */
int hl_http_route_flags(hl_worker *w, unsigned methods, const char *pattern, const char *name, unsigned flags,
                        hl_handler handler, void *ud, hl_err *err);

/* What a worker holds, for the plugin host. */
hl_db *hl_worker_db(hl_worker *w);
hl_db *hl_worker_archive(hl_worker *w);
const hl_config *hl_worker_config(hl_worker *w);
struct hl_hooks *hl_worker_hooks(hl_worker *w);
struct hl_themes *hl_worker_themes(hl_worker *w);
struct hl_i18n *hl_worker_i18n(hl_worker *w);
struct hl_jobs *hl_worker_jobs(hl_worker *w);

/* A worker that serves nothing, for commands that load plugins (halle PLUGIN COMMAND). */
hl_worker *hl_worker_cli_new(const hl_config *cfg, hl_err *err);
void hl_worker_cli_free(hl_worker *w);

/* The jobs process's main function (hl_jobsproc_main), handed to the master by main.c:
 * runs until SIGTERM. */
typedef int (*hl_jobs_main)(const hl_config *cfg, hl_err *err);

/* Runs the master: the instance lock (one serve per instance), migrations, bind check, N
 * workers and the jobs process (jobs_main; NULL for none), restart of whichever dies, kill
 * and replacement of a worker stuck in one request past request_hard_limit, graceful stop on
 * SIGTERM/SIGINT within shutdown_timeout, rolling restart with a fresh configuration on
 * SIGHUP. Returns when the server has stopped (HL_OK) or could not start (error with message). */
int hl_http_serve(hl_config *cfg, hl_jobs_main jobs_main, hl_err *err);

/* The folder holding installed data (migrations, themes): share_dir from the configuration,
 * else $HALLE_SHARE_DIR, else the compiled-in default. */
const char *hl_http_share_dir(const hl_config *cfg);

/* Opens the instance databases and applies core migrations to both (used by serve, migrate
 * and init). Prints nothing; applied counts are returned through the pointers (may be NULL). */
int hl_http_migrate(const hl_config *cfg, int *applied_main, int *applied_archive, hl_err *err);

#endif
