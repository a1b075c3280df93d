/* Built-in HTML pages: the page frame and the error pages (400, 403, 404, 405, 413, 500...).
 * They are plain on purpose and will be replaced by theme templates when a theme provides
 * them; they must never depend on anything that could itself fail. */
#ifndef HL_PAGE_H
#define HL_PAGE_H

#include <jansson.h>

#include "core/request.h"

/* Writes the start of an HTML page (doctype, head with title and the theme's stylesheet,
 * header with the site name). title is escaped. */
int hl_page_begin(hl_request *req, const char *title);
int hl_page_end(hl_request *req);
/* Form helpers: every form posts with the CSRF token; labels are tied to inputs for screen
 * readers; values and help texts are escaped. */
int hl_page_form_begin(hl_request *req, const char *action, const char *id);
int hl_page_form_end(hl_request *req, const char *button);
/* type: text, email, password, tel, checkbox, textarea, hidden. attrs is raw (trusted, from
 * the code: "required autocomplete=\"email\""), may be NULL. */
int hl_page_field(hl_request *req, const char *type, const char *name, const char *label,
                  const char *value, const char *attrs, const char *help);
/* kind: "ok", "error", "info". */
int hl_page_notice(hl_request *req, const char *kind, const char *message);

/* The context every themed page gets: lang, site {name, description}, user {name, operator}
 * and csrf when logged in, page {url}, merged with req->meta. New reference. */
json_t *hl_page_context(hl_request *req);
/* Renders the theme template name with ctx (see core/theme.h for the lookup) into the
 * response. */
int hl_page_render(hl_request *req, const char *name, json_t *ctx, hl_err *err);

/* A complete error page for status with an explanation and a link home. */
int hl_page_error(hl_request *req, int status, const char *message);

#endif
