/* Error codes and the message buffer every fallible core function fills in, so that the
 * caller (CLI, HTTP handler, plugin) can show the user what went wrong. */
#ifndef HL_ERROR_H
#define HL_ERROR_H

#include <stddef.h>

enum {
    HL_OK = 0,
    HL_ERR = -1,      /* generic failure; see the message */
    HL_EINVAL = -2,   /* bad input */
    HL_ENOMEM = -3,
    HL_ETOOBIG = -4,  /* input over a configured limit */
    HL_ENOTFOUND = -5,
    HL_EIO = -6,
    HL_EBUSY = -7,    /* the database stayed locked (after the busy timeout and retries) */
    HL_EUNIQUE = -8,  /* a UNIQUE or PRIMARY KEY constraint: the row exists already */
    HL_EFOREIGN = -9, /* a FOREIGN KEY constraint: the row refers to one that does not exist */
    HL_ECONFLICT = -10 /* the request conflicts with what is stored (e.g. an idempotency key
                        * reused for a different request) */
};

typedef struct hl_err {
    int code;
    char msg[512];
} hl_err;

/* Records code and a printf-style message in err (which may be NULL). Returns code so that
 * callers can write `return hl_err_set(err, HL_EINVAL, "...")`. */
int hl_err_set(hl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hl_err_clear(hl_err *err);

#endif
