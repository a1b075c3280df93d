/* Built-in HTML pages: the page frame and the error pages (400, 403, 404, 405, 413, 500...).
 * They are plain on purpose and will be replaced by theme templates when a theme provides
 * them; they must never depend on anything that could itself fail. */
#ifndef HL_PAGE_H
#define HL_PAGE_H

#include "core/request.h"

/* Writes the start of an HTML page (doctype, head with title and the theme's stylesheet,
 * header with the site name). title is escaped. */
int hl_page_begin(hl_request *req, const char *title);
int hl_page_end(hl_request *req);
/* A complete error page for status with an explanation and a link home. */
int hl_page_error(hl_request *req, int status, const char *message);

#endif
