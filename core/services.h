/* The services of one halle process (a worker, the jobs process, a command of the CLI): its
 * configuration, databases, router, hooks, themes, translations and jobs. Plain data, filled
 * and owned by the process (core/worker.c); the layers above storage (pages, plugin hosts, the
 * Lua bridge) read them here, so that none of them depends on the worker process. The type
 * keeps its first name, hl_worker: plugin hosts hold "the worker" they were loaded into. */
#ifndef HL_SERVICES_H
#define HL_SERVICES_H

#include "core/config.h"
#include "core/db.h"
#include "core/error.h"
#include "core/request.h"
#include "core/router.h"

struct hl_hooks;
struct hl_themes;
struct hl_i18n;
struct hl_jobs;

typedef struct hl_worker {
    const hl_config *cfg;
    int id;                     /* worker number; -1 for the jobs process and the CLI */
    hl_db *db;
    hl_db *archive;
    hl_router *router;
    struct hl_hooks *hooks;
    struct hl_themes *themes;
    struct hl_i18n *i18n;
    struct hl_jobs *jobs;       /* what plugins register; only the jobs process runs them */
} hl_worker;

static inline hl_db *hl_worker_db(hl_worker *w) { return w ? w->db : NULL; }
static inline hl_db *hl_worker_archive(hl_worker *w) { return w ? w->archive : NULL; }
static inline const hl_config *hl_worker_config(hl_worker *w) { return w ? w->cfg : NULL; }
static inline struct hl_hooks *hl_worker_hooks(hl_worker *w) { return w ? w->hooks : NULL; }
static inline struct hl_themes *hl_worker_themes(hl_worker *w) { return w ? w->themes : NULL; }
static inline struct hl_i18n *hl_worker_i18n(hl_worker *w) { return w ? w->i18n : NULL; }
static inline struct hl_jobs *hl_worker_jobs(hl_worker *w) { return w ? w->jobs : NULL; }

/* Registers a route on the process's router (core routes at start-up, plugins at load). */
static inline int hl_worker_route(hl_worker *w, unsigned methods, const char *pattern, const char *name,
                                  hl_handler handler, void *ud, hl_err *err)
{
    return hl_router_add(w->router, methods, pattern, name, (void *)handler, ud, err);
}

/* The same with HL_ROUTE_* flags (core/router.h): HL_ROUTE_TOKEN_AUTH for routes that
 * authenticate by a header token, which then get no session and need no CSRF token. */
static inline int hl_worker_route_flags(hl_worker *w, unsigned methods, const char *pattern, const char *name,
                                        unsigned flags, hl_handler handler, void *ud, hl_err *err)
{
    return hl_router_add_flags(w->router, methods, pattern, name, flags, (void *)handler, ud, err);
}

#endif
