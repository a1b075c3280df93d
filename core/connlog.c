/* Buffered connection log (see connlog.h). Each row is one malloc'd block holding its strings,
 * because rows outlive the request arena until the next flush. */
#include "core/connlog.h"
#include "core/clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

#define MAX_PATH_LOGGED 1024

typedef struct row {
    char at[HL_CLOCK_ISO_LEN];
    int status;
    char *ip, *protocol, *method, *path; /* all inside the same allocation */
} row;

struct hl_connlog {
    hl_db *db;
    row **rows;
    size_t count, max;
};

hl_connlog *hl_connlog_new(hl_db *db, size_t max_rows)
{
    hl_connlog *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->db = db;
    c->max = max_rows ? max_rows : 512;
    c->rows = calloc(c->max, sizeof *c->rows);
    if (!c->rows) {
        free(c);
        return NULL;
    }
    return c;
}

size_t hl_connlog_pending(const hl_connlog *c) { return c ? c->count : 0; }

void hl_connlog_add(hl_connlog *c, const char *ip, const char *protocol, const char *method,
                    const char *path, int status)
{
    if (!c)
        return;
    if (c->count == c->max) {
        hl_err err;
        if (hl_connlog_flush(c, &err) < 0) {
            hl_log(HL_LOG_ERROR, "connection log: %s", err.msg);
            return;
        }
    }
    ip = ip ? ip : "";
    protocol = protocol ? protocol : "";
    method = method ? method : "";
    path = path ? path : "";
    size_t li = strlen(ip), lp = strlen(protocol), lm = strlen(method), lpa = strlen(path);
    if (lpa > MAX_PATH_LOGGED)
        lpa = MAX_PATH_LOGGED;
    row *r = malloc(sizeof *r + li + lp + lm + lpa + 4);
    if (!r)
        return;
    char *p = (char *)(r + 1);
    r->ip = p;
    memcpy(p, ip, li + 1);
    p += li + 1;
    r->protocol = p;
    memcpy(p, protocol, lp + 1);
    p += lp + 1;
    r->method = p;
    memcpy(p, method, lm + 1);
    p += lm + 1;
    r->path = p;
    memcpy(p, path, lpa);
    p[lpa] = '\0';
    r->status = status;
    hl_clock_iso(hl_clock_now(), r->at); /* business time: its retention is counted on it */
    c->rows[c->count++] = r;
}

static int write_rows(hl_db *db, void *ud, hl_err *err)
{
    hl_connlog *c = ud;
    for (size_t i = 0; i < c->count; i++) {
        row *r = c->rows[i];
        int rc = hl_db_run(db, err,
                           "INSERT INTO hl_connection_log (at, ip, protocol, method, path, status) "
                           "VALUES (?, ?, ?, ?, ?, ?)",
                           "sssssi", r->at, r->ip, r->protocol, r->method, r->path, r->status);
        if (rc < 0)
            return rc;
    }
    return HL_OK;
}

int hl_connlog_flush(hl_connlog *c, hl_err *err)
{
    if (!c || !c->count)
        return 0;
    int rc = c->db ? hl_db_tx(c->db, write_rows, c, err) : HL_OK;
    int n = (int)c->count;
    /* Rows are dropped even when the write failed: a full disk must not grow memory forever. */
    for (size_t i = 0; i < c->count; i++)
        free(c->rows[i]);
    c->count = 0;
    return rc < 0 ? rc : n;
}

void hl_connlog_free(hl_connlog *c)
{
    if (!c)
        return;
    hl_err err;
    if (hl_connlog_flush(c, &err) < 0)
        hl_log(HL_LOG_ERROR, "connection log: %s", err.msg);
    free(c->rows);
    free(c);
}
