/* Outgoing mail: messages are queued in the database (so nothing is lost if the server stops)
 * and sent over SMTP with libcurl by a timer in one worker; failures are retried with
 * backoff and recorded. */
#ifndef HL_MAIL_H
#define HL_MAIL_H

#include "core/db.h"
#include "core/error.h"

typedef struct hl_mail_config {
    const char *smtp_url;     /* smtp://host:port or smtps://...; NULL or "" = mail is only queued */
    const char *from;         /* "halle <noreply@example.org>" */
    const char *username;     /* SMTP auth, may be NULL */
    const char *password;
    int timeout_s;            /* per message (0 = 20) */
} hl_mail_config;

/* Queues a plain-text UTF-8 message. to is one address. Header injection (CR/LF in to or
 * subject) and malformed addresses are refused with HL_EINVAL. Returns the queue id (> 0) or
 * a negative error. */
int64_t hl_mail_queue(hl_db *db, const char *to, const char *subject, const char *body, hl_err *err);

/* Sends up to max queued messages that are due; each success marks the row sent, each failure
 * records the error and schedules a retry (1 min, 5 min, 30 min, 2 h, then given up after 5
 * attempts). Returns the number sent, or a negative error if the queue cannot be read. */
int hl_mail_send_due(hl_db *db, const hl_mail_config *cfg, int max, hl_err *err);

/* Checks an address: one @, a dot in the domain, no spaces or control characters, at most 254
 * bytes. */
int hl_mail_address_valid(const char *addr);

#endif
