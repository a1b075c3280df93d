/* What orders.c (placing, changing, cancelling, the confirmation, the member's list, the
 * closing job) and reports.c (the distribution's reports) share. */
#ifndef MARKET_ORDERS_H
#define MARKET_ORDERS_H

#include "plugins/market/market.h"

#include <stdarg.h>

/* A distribution with its group and place, as orders and reports need it. */
typedef struct mk_dist {
    int64_t id, group_id, min_cents, max_cents;
    char slug[128], group_name[256], theme[64], status[16];
    char opens_at[32], closes_at[32], starts_at[32], ends_at[32];
    char place[600];
} mk_dist;

/* 1 found, 0 none, -1 error. */
int mk_dist_load(int64_t id, mk_dist *d);

/* The order window at now (ISO text): open, not open yet, closed, cancelled. */
enum { MK_WINDOW_OPEN = 0, MK_WINDOW_NOT_YET, MK_WINDOW_CLOSED, MK_WINDOW_CANCELLED };
int mk_dist_window(const mk_dist *d, const char *now);

/* "2026-12-05T17:00:00Z" -> "samedi 5 décembre 2026, 17:00" in lang (NULL: French); the ISO
 * text itself when it is not one. */
void mk_when_text(const char *lang, const char *iso, char *out, size_t len);

/* A growing text buffer (mails, CSV lines). p is NULL-free once sb_init ran; sb_free frees. */
typedef struct mk_sbuf {
    char *p;
    size_t n, cap;
    int failed;
} mk_sbuf;
void mk_sb_init(mk_sbuf *b);
void mk_sb_printf(mk_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mk_sb_free(mk_sbuf *b);

/* A user's name for lists (api->user_get), "" when the account is gone. */
void mk_user_name(int64_t uid, char *out, size_t len);

/* The distribution's summary as plain text (mails of the closing job): per product totals,
 * then each member's lines; producer_id 0 = every producer. */
void mk_dist_summary(mk_sbuf *b, const mk_dist *d, int64_t producer_id);

#endif
