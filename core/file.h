/* Files of plugins and themes, read only beneath their folder: a symbolic link (or "..") that
 * leads outside is refused, so a hostile plugin cannot serve halle.conf, the database or
 * /etc/passwd through a template, a module or a static file. */
#ifndef HL_FILE_H
#define HL_FILE_H

#include <stddef.h>
#include <sys/stat.h>

#include "core/error.h"

/* Opens root/rel for reading if, every symbolic link resolved, it stays beneath root and is a
 * regular file (O_NONBLOCK: a FIFO cannot block the caller). Returns the descriptor, with *st
 * filled when st is not NULL, or a negative code with err set: HL_ENOTFOUND when there is no
 * such file, HL_EINVAL when the path leads outside root or is not a regular
 * file. rel is relative; absolute paths and ".." that climbs out are refused too. */
int hl_file_open_beneath(const char *root, const char *rel, struct stat *st, hl_err *err);

/* Reads root/rel (as above) whole, at most max bytes, into a malloc'd NUL-terminated buffer. */
int hl_file_read_beneath(const char *root, const char *rel, size_t max, char **out, size_t *len,
                         struct stat *st, hl_err *err);

/* Walks the folder root: HL_OK, or HL_EINVAL with a message naming the first symbolic link in
 * it that leads outside root or nowhere ("ROOT/x/y.mustache -> /etc/passwd leads outside"). */
int hl_file_check_tree(const char *root, hl_err *err);

#endif
