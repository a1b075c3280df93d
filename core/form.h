/* Parsers for what a client sends besides the path: query strings, urlencoded and multipart
 * form bodies, cookies, and percent-decoding. Everything is allocated from the request arena;
 * malformed input is reported as HL_EINVAL with a message fit for a 400 page. */
#ifndef HL_FORM_H
#define HL_FORM_H

#include <stddef.h>

#include "core/arena.h"
#include "core/error.h"

typedef struct hl_param {
    const char *name;         /* NUL-terminated, decoded */
    const char *value;        /* NUL-terminated, decoded (binary file data may hold NULs) */
    size_t value_len;
    const char *filename;     /* multipart file parts only, else NULL */
    const char *content_type; /* multipart parts only, else NULL */
} hl_param;

typedef struct hl_params {
    hl_param *items;
    size_t count;
    size_t cap;
} hl_params;

typedef struct hl_form_limits {
    size_t max_fields;     /* most name/value pairs accepted (0 = 1000) */
    size_t max_file_size;  /* largest uploaded file part in bytes (0 = no limit) */
    size_t max_files;      /* most file parts (0 = 20) */
} hl_form_limits;

/* Appends (name, value) to p; returns HL_OK or HL_ENOMEM. */
int hl_params_add(hl_arena *a, hl_params *p, const char *name, const char *value, size_t value_len);
/* First parameter with this name, or NULL. */
const hl_param *hl_params_get(const hl_params *p, const char *name);
/* Value of the first parameter with this name, or NULL. */
const char *hl_params_value(const hl_params *p, const char *name);

/* Percent-decodes s[0..len). With plus_as_space, '+' becomes ' ' (form encoding). Rejects
 * truncated or non-hex escapes and decoded NUL bytes with HL_EINVAL. */
int hl_form_percent_decode(hl_arena *a, const char *s, size_t len, int plus_as_space,
                           char **out, size_t *out_len, hl_err *err);

/* Parses "a=1&b=x%20y" (query strings and application/x-www-form-urlencoded bodies). */
int hl_form_parse_urlencoded(hl_arena *a, const char *s, size_t len,
                             const hl_form_limits *lim, hl_params *out, hl_err *err);

/* Parses a multipart/form-data body. content_type is the full header value (the boundary is
 * read from it). Text fields land in fields; file parts too, with filename and content_type
 * set. A file over lim->max_file_size gives HL_ETOOBIG. */
int hl_form_parse_multipart(hl_arena *a, const char *content_type, const char *body,
                            size_t len, const hl_form_limits *lim, hl_params *fields,
                            hl_err *err);

/* Parses a Cookie header ("a=1; b=2"). Cookie values are not percent-decoded (RFC 6265);
 * surrounding double quotes are removed. Malformed pairs are skipped, as browsers do. */
int hl_form_parse_cookies(hl_arena *a, const char *header, hl_params *out, hl_err *err);

#endif
