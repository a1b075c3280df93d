/* Markdown for texts that coordinators and producers write (a group's intro, a producer's
 * description): CommonMark through libcmark, with raw HTML dropped and links restricted to
 * http, https and mailto, so that a text can never carry a script onto a page. */
#ifndef HL_MARKDOWN_H
#define HL_MARKDOWN_H

#include <stddef.h>

#include "core/error.h"

/* Renders text (UTF-8, at most 256 KB) to HTML; *out is malloc'd and NUL-terminated. */
int hl_markdown_render(const char *text, size_t len, char **out, hl_err *err);

#endif
