/* Business time (see clock.h): the system clock, or the one HALLE_NOW fixes for tests, and the
 * retry schedule of failing work. */
#include "core/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int hl_clock_parse(const char *s, int64_t *out)
{
    if (!s)
        return -1;
    size_t n = strlen(s);
    char *end = NULL;
    if (n && n <= 19 && s[0] >= '0' && s[0] <= '9' && !strchr(s, '-')) {
        long long v = strtoll(s, &end, 10);
        if (*end || v < 0)
            return -1;
        *out = v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int used = 0;
    char sep = 0;
    if (n < 19 || sscanf(s, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep,
                         &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 7 ||
        (sep != 'T' && sep != ' ') || used != 19)
        return -1;
    if (s[19] && strcmp(s + 19, "Z"))
        return -1;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int64_t hl_clock_now(void)
{
    /* Read at every call: cheap next to what the caller does with the time, and a test may
     * change it between calls in one process. */
    const char *env = getenv("HALLE_NOW");
    int64_t t;
    if (env && *env && hl_clock_parse(env, &t) == 0)
        return t;
    return (int64_t)time(NULL);
}

char *hl_clock_iso(int64_t t, char out[HL_CLOCK_ISO_LEN])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(out, HL_CLOCK_ISO_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, HL_CLOCK_ISO_LEN, "1970-01-01T00:00:00Z");
    return out;
}

long hl_clock_retry_delay(int64_t failures)
{
    static const long delay[HL_CLOCK_RETRY_MAX - 1] = {60, 300, 1800, 7200};
    if (failures < 1)
        failures = 1;
    if (failures > HL_CLOCK_RETRY_MAX - 1)
        failures = HL_CLOCK_RETRY_MAX - 1;
    return delay[failures - 1];
}
