/* Static assets of the active theme, loaded into memory at start-up: serving a file is a hash
 * lookup and a reference to bytes already in memory, never a filesystem access, so a request
 * path cannot reach outside the theme's static/ folder. */
#ifndef HL_STATIC_H
#define HL_STATIC_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "core/error.h"

typedef struct hl_static hl_static;

typedef struct hl_static_file {
    const char *path;         /* relative to static/, e.g. "css/halle.css" */
    const unsigned char *data;
    size_t len;
    const char *content_type;
    char etag[24];            /* quoted strong validator */
    char last_modified[32];   /* RFC 7231 date */
    time_t mtime;
} hl_static_file;

typedef struct hl_static_limits {
    size_t max_files;     /* 0 = 10000 */
    size_t max_total;     /* bytes, 0 = 256 MiB */
} hl_static_limits;

hl_static *hl_static_new(void);
/* Loads every regular file under dir (recursively, symlinks not followed). Files already
 * loaded under the same relative path are replaced, so loading a parent theme then a child
 * theme gives the child's files precedence. A missing dir is not an error. */
int hl_static_load_dir(hl_static *s, const char *dir, const hl_static_limits *lim, hl_err *err);
const hl_static_file *hl_static_find(const hl_static *s, const char *path, size_t len);
size_t hl_static_count(const hl_static *s);
void hl_static_free(hl_static *s);
const char *hl_static_content_type(const char *path);

#endif
