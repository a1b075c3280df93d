/* Structured logging (see log.h). Each line is built in a buffer and written with one write(2)
 * on an O_APPEND descriptor, so lines from concurrent workers never interleave. */
#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int log_fd = 2;
static int log_level = HL_LOG_INFO;
static const char *level_names[] = {"debug", "info", "warn", "error"};

int hl_log_open(const char *path, const char *level, hl_err *err)
{
    if (level) {
        for (int i = 0; i < 4; i++)
            if (!strcmp(level, level_names[i]))
                log_level = i;
    }
    if (!path || !strcmp(path, "-")) {
        log_fd = 2;
        return HL_OK;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return hl_err_set(err, HL_EIO, "cannot open log file %s: %s", path, strerror(errno));
    if (log_fd > 2)
        close(log_fd);
    log_fd = fd;
    return HL_OK;
}

void hl_log_close(void)
{
    if (log_fd > 2)
        close(log_fd);
    log_fd = 2;
}

int hl_log_enabled(int level) { return level >= log_level; }

const char *hl_log_timestamp(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

const char *hl_log_quote(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    if (len < 3) {
        if (len)
            buf[0] = '\0';
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 5 < len; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void hl_log_line(int level, const char *fields)
{
    if (!hl_log_enabled(level))
        return;
    char line[4096], ts[32];
    int n = snprintf(line, sizeof line, "ts=%s level=%s pid=%d %s\n", hl_log_timestamp(ts, sizeof ts),
                     level_names[level < 0 || level > 3 ? 1 : level], (int)getpid(), fields);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = sizeof line - 1;
        line[n - 1] = '\n';
    }
    ssize_t w;
    do
        w = write(log_fd, line, (size_t)n);
    while (w < 0 && errno == EINTR);
}

void hl_log(int level, const char *fmt, ...)
{
    if (!hl_log_enabled(level))
        return;
    char msg[2048], q[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char fields[3100];
    snprintf(fields, sizeof fields, "msg=%s", hl_log_quote(msg, q, sizeof q));
    hl_log_line(level, fields);
}
