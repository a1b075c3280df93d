/* Business time: one clock for everything that stores or compares dates (sessions, tokens,
 * mail, jobs, plugins), which tests move with HALLE_NOW, and the retry schedule shared by the
 * mail queue and queued jobs. Supervision timeouts use CLOCK_MONOTONIC instead. */
#ifndef HL_CLOCK_H
#define HL_CLOCK_H

#include <stdint.h>

/* Length of an ISO-8601 UTC stamp "YYYY-MM-DDTHH:MM:SSZ" with its NUL, rounded up. */
#define HL_CLOCK_ISO_LEN 24

/* Seconds since the epoch: $HALLE_NOW when set (epoch seconds, or "YYYY-MM-DDTHH:MM:SSZ",
 * or "YYYY-MM-DD HH:MM:SS" taken as UTC), else the system clock. A HALLE_NOW that does not
 * parse is ignored (the system clock is used). */
int64_t hl_clock_now(void);

/* t as "YYYY-MM-DDTHH:MM:SSZ": fixed width, so text order is time order on SQLite and
 * PostgreSQL alike. Returns out. */
char *hl_clock_iso(int64_t t, char out[HL_CLOCK_ISO_LEN]);

/* Parses what hl_clock_iso writes (and the forms HALLE_NOW accepts). 0, or -1 if s is not
 * such a time. */
int hl_clock_parse(const char *s, int64_t *out);

/* Retries of failing work (mail, queued jobs): after the n-th failure (n >= 1) wait
 * hl_clock_retry_delay(n) seconds: 1 min, 5 min, 30 min, 2 h. At HL_CLOCK_RETRY_MAX failures
 * the work is given up (dead letter). */
#define HL_CLOCK_RETRY_MAX 5
long hl_clock_retry_delay(int64_t failures);

#endif
