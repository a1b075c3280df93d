/* The connection log the privacy policies promise (date and time, IP, protocol, method, page,
 * status), kept in the database so that the retention engine can purge it. Rows are buffered
 * in memory and written in one transaction per second, so logging costs no fsync per request. */
#ifndef HL_CONNLOG_H
#define HL_CONNLOG_H

#include "core/db.h"
#include "core/error.h"

typedef struct hl_connlog hl_connlog;

hl_connlog *hl_connlog_new(hl_db *db, size_t max_rows);
/* Buffers one row; flushes by itself when the buffer is full. */
void hl_connlog_add(hl_connlog *c, const char *ip, const char *protocol, const char *method,
                    const char *path, int status);
/* Writes the buffered rows; returns the count written or a negative error. */
int hl_connlog_flush(hl_connlog *c, hl_err *err);
size_t hl_connlog_pending(const hl_connlog *c);
/* Flushes then frees. */
void hl_connlog_free(hl_connlog *c);

#endif
