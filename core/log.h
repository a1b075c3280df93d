/* Structured logging: one logfmt line per event ("ts=... level=info pid=... msg=..."), to
 * stderr or a file opened in append mode, so that several worker processes can share it. */
#ifndef HL_LOG_H
#define HL_LOG_H

#include "core/error.h"

enum { HL_LOG_DEBUG = 0, HL_LOG_INFO = 1, HL_LOG_WARN = 2, HL_LOG_ERROR = 3 };

/* path "-" or NULL means stderr. */
int hl_log_open(const char *path, const char *level, hl_err *err);
void hl_log_close(void);
int hl_log_enabled(int level);
/* msg is quoted and escaped; extra is appended as is and must already be logfmt
 * (key=value pairs built with hl_log_quote). */
void hl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes one ready line (no trailing newline needed) as a single write(2). */
void hl_log_line(int level, const char *fields);
/* Quotes s for logfmt into buf (always NUL-terminated; control characters escaped). */
const char *hl_log_quote(const char *s, char *buf, size_t len);
/* Current UTC time as "YYYY-MM-DDTHH:MM:SSZ" (buf at least 21 bytes). */
const char *hl_log_timestamp(char *buf, size_t len);

#endif
