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

#define HL_ERR_PARTS 2
#define HL_ERR_ARGS 3

/* One sentence of a message meant for people: its msgid, a printf format in the source language
 * (a string literal, never freed), and its arguments as text with their kinds ('s' shown as it
 * is, 't' itself a msgid, 'l' a ", "-separated list of msgids). */
typedef struct hl_err_part {
    const char *msgid;
    int nargs;
    char kinds[HL_ERR_ARGS];
    char args[HL_ERR_ARGS][128];
} hl_err_part;

typedef struct hl_err {
    int code;
    char msg[512];       /* in the source language: for logs and callers that do not translate */
    int nparts;          /* > 0: msg is made of these sentences, translated where shown */
    hl_err_part parts[HL_ERR_PARTS];
} hl_err;

/* Records code and a printf-style message in err (which may be NULL). Returns code so that
 * callers can write `return hl_err_set(err, HL_EINVAL, "...")`. */
int hl_err_set(hl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void hl_err_clear(hl_err *err);
/* Records a message for people as a msgid and its arguments, so that the place that shows it
 * translates it (hl_err_render): types has one letter per argument, 'd' an int, 'z' a size_t,
 * 's' a string shown as it is, 't' a string that is itself a msgid, 'l' a ", "-separated list
 * of msgids. hl_err_msg starts the message; hl_err_more adds a sentence to it. */
int hl_err_msg(hl_err *err, int code, const char *msgid, const char *types, ...);
int hl_err_more(hl_err *err, const char *msgid, const char *types, ...);
/* err's message with each msgid translated by tr(ud, msgid) (NULL: as written), sentences
 * joined by a space; the plain msg when err has no sentences. Writes into out, returns it. */
const char *hl_err_render(const hl_err *err, const char *(*tr)(void *ud, const char *msgid), void *ud, char *out,
                          size_t len);

#endif
