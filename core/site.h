/* The core's own pages and endpoints: home page, health check, status API, theme static files,
 * and development aids (only with dev_mode = on). Plugins add the rest. */
#ifndef HL_SITE_H
#define HL_SITE_H

#include "core/config.h"
#include "core/error.h"
#include "core/static.h"

struct hl_worker;
int hl_site_register(struct hl_worker *w, const hl_config *cfg, hl_static *statics, hl_err *err);

#endif
