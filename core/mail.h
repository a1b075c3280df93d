/* Outgoing mail: messages are queued in the database (so nothing is lost if the server stops,
 * and mail queued in a transaction commits with it) and sent over SMTP by the jobs process
 * through libcurl's multi interface, many at once, so one slow server delays nothing else.
 * Each message is claimed with a lease (two senders never send it twice); failures are
 * retried with backoff and end as dead letters the operator lists (halle mail list). */
#ifndef HL_MAIL_H
#define HL_MAIL_H

#include <jansson.h>
#include <stdint.h>

#include "core/db.h"
#include "core/error.h"

typedef struct hl_mail_config {
    const char *smtp_url;     /* smtp://host:port or smtps://...; NULL or "" = mail is only queued */
    const char *from;         /* "halle <noreply@example.org>" */
    const char *username;     /* SMTP auth, may be NULL */
    const char *password;
    int timeout_s;            /* per message (0 = 20) */
    /* Called for each message the server accepted (e.g. to fire mail.sent); may be NULL. */
    void (*on_sent)(void *ud, int64_t id, const char *to);
    void *on_sent_ud;
} hl_mail_config;

/* Queues a plain-text UTF-8 message. to is one address. Header injection (CR/LF in to or
 * subject) and malformed addresses are refused with HL_EINVAL. Returns the queue id (> 0) or
 * a negative error. */
int64_t hl_mail_queue(hl_db *db, const char *to, const char *subject, const char *body, hl_err *err);

/* Sends up to max queued messages that are due and waits for the outcome of each; each
 * success marks the row sent, each failure records the error and schedules a retry
 * (hl_clock_retry_delay: 1 min, 5 min, 30 min, 2 h, then a dead letter after 5 attempts).
 * Returns the number sent, or a negative error if the queue cannot be read. */
int hl_mail_send_due(hl_db *db, const hl_mail_config *cfg, int max, hl_err *err);

/* The same without waiting, for the jobs process's loop: start claims up to max due messages
 * and puts them on their way (returns how many); poll waits at most timeout_ms for progress,
 * records what finished and returns how many are still in flight. The configuration must
 * outlive the sender. free drops what is in flight (the leases bring it back later). */
typedef struct hl_mail_sender hl_mail_sender;
hl_mail_sender *hl_mail_sender_new(const hl_mail_config *cfg, hl_err *err);
int hl_mail_sender_start(hl_mail_sender *m, hl_db *db, int max, hl_err *err);
int hl_mail_sender_poll(hl_mail_sender *m, hl_db *db, int timeout_ms, hl_err *err);
int hl_mail_sender_in_flight(const hl_mail_sender *m);
int hl_mail_sender_sent(const hl_mail_sender *m);
void hl_mail_sender_free(hl_mail_sender *m);

/* For operators: the newest 500 messages not sent (all = 1: sent ones too), as
 * [{id, state ("queued", "dead" or "sent"), to, subject, created_at, next_attempt_at, attempts,
 * last_error}]. New reference, or NULL with err set. */
json_t *hl_mail_list(hl_db *db, int all, hl_err *err);
/* Puts a dead letter back in the queue, due now, with its attempts reset. */
int hl_mail_retry(hl_db *db, int64_t id, hl_err *err);

/* Checks an address: one @, a dot in the domain, no spaces or control characters, at most 254
 * bytes. */
int hl_mail_address_valid(const char *addr);

#endif
