/* halle.conf reader (see config.h). A table of known keys drives parsing, so that adding a key
 * is one line and every key gets the same validation and error messages. */
#include "halle-config.h"
#include "core/config.h"
#include "core/db.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum kind { K_STR, K_PATH, K_INT, K_SIZE, K_BOOL, K_LISTEN, K_LEVEL };

typedef struct key_def {
    const char *key;
    enum kind kind;
    size_t off;
    long min, max; /* K_INT bounds */
} key_def;

#define OFF(f) offsetof(hl_config, f)
static const key_def keys[] = {
    {"name", K_STR, OFF(name), 0, 0},
    {"listen", K_LISTEN, 0, 0, 0},
    {"workers", K_INT, OFF(workers), 0, 256},
    {"base_url", K_STR, OFF(base_url), 0, 0},
    {"data_dir", K_PATH, OFF(data_dir), 0, 0},
    {"database", K_PATH, OFF(db_path), 0, 0},
    {"archive_database", K_PATH, OFF(archive_path), 0, 0},
    {"log_file", K_PATH, OFF(log_file), 0, 0},
    {"log_level", K_LEVEL, OFF(log_level), 0, 0},
    {"access_log", K_BOOL, OFF(access_log), 0, 0},
    {"connection_log", K_BOOL, OFF(connection_log), 0, 0},
    {"share_dir", K_PATH, OFF(share_dir), 0, 0},
    {"theme", K_STR, OFF(theme), 0, 0},
    {"max_header_size", K_SIZE, OFF(max_header_size), 1024, 1L << 20},
    {"max_body_size", K_SIZE, OFF(max_body_size), 1024, 1L << 30},
    {"max_upload_size", K_SIZE, OFF(max_upload_size), 1, 1L << 30},
    {"read_timeout", K_INT, OFF(read_timeout), 1, 3600},
    {"shutdown_timeout", K_INT, OFF(shutdown_timeout), 0, 3600},
    {"request_hard_limit", K_INT, OFF(request_hard_limit), 1, 86400},
    {"hook_failure_limit", K_INT, OFF(hook_failure_limit), 0, 1000000},
    {"trusted_proxies", K_STR, OFF(trusted_proxies), 0, 0},
    {"dev_mode", K_BOOL, OFF(dev_mode), 0, 0},
    {"plugin_dirs", K_STR, OFF(plugin_dirs), 0, 0},
    {"smtp_url", K_STR, OFF(smtp_url), 0, 0},
    {"mail_from", K_STR, OFF(mail_from), 0, 0},
    {"smtp_user", K_STR, OFF(smtp_user), 0, 0},
    {"smtp_password", K_STR, OFF(smtp_password), 0, 0},
    {"mail_interval", K_INT, OFF(mail_interval), 1, 3600},
    {"session_idle", K_INT, OFF(session_idle), 60, 365 * 86400},
    {"session_lifetime", K_INT, OFF(session_lifetime), 60, 365 * 86400},
    {"lockout_minutes", K_INT, OFF(lockout_minutes), 1, 10080},
    {"login_rate_limit", K_INT, OFF(login_rate_limit), 1, 100000},
    {"password_cost", K_STR, OFF(password_cost), 0, 0},
    {"terms_version", K_STR, OFF(terms_version), 0, 0},
};

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int set_str(char **dst, const char *v, hl_err *err)
{
    char *p = strdup(v);
    if (!p)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    free(*dst);
    *dst = p;
    return HL_OK;
}

static int resolve_path(const hl_config *c, char **dst, const char *v, hl_err *err)
{
    /* a database may be a postgresql:// URI rather than a file */
    if (v[0] == '/' || (v[0] == '-' && v[1] == '\0') || !c->dir || hl_db_is_url(v))
        return set_str(dst, v, err);
    size_t n = strlen(c->dir) + strlen(v) + 2;
    char *p = malloc(n);
    if (!p)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    snprintf(p, n, "%s/%s", c->dir, v);
    free(*dst);
    *dst = p;
    return HL_OK;
}

/* Accepts "123", "64k", "10M", "1G" (binary multiples). */
static int parse_size(const char *v, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v || v[0] == '-')
        return -1;
    unsigned long long mul = 1;
    switch (tolower((unsigned char)*end)) {
    case '\0': break;
    case 'k': mul = 1024ULL; end++; break;
    case 'm': mul = 1024ULL * 1024; end++; break;
    case 'g': mul = 1024ULL * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end || n > SIZE_MAX / mul)
        return -1;
    *out = (size_t)(n * mul);
    return 0;
}

int hl_config_set_listen(hl_config *c, const char *v, hl_err *err)
{
    const char *colon;
    char host[256];
    if (v[0] == '[') {
        const char *close = strchr(v, ']');
        if (!close || close[1] != ':')
            return hl_err_set(err, HL_EINVAL, "listen: expected [IPv6]:PORT, got '%s'", v);
        colon = close + 1;
        if ((size_t)(close - v - 1) >= sizeof host)
            return hl_err_set(err, HL_EINVAL, "listen: address too long");
        memcpy(host, v + 1, (size_t)(close - v - 1));
        host[close - v - 1] = '\0';
    } else {
        colon = strrchr(v, ':');
        if (!colon)
            return hl_err_set(err, HL_EINVAL, "listen: expected HOST:PORT, got '%s'", v);
        if ((size_t)(colon - v) >= sizeof host || colon == v)
            return hl_err_set(err, HL_EINVAL, "listen: bad address in '%s'", v);
        memcpy(host, v, (size_t)(colon - v));
        host[colon - v] = '\0';
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 0 || port > 65535)
        return hl_err_set(err, HL_EINVAL, "listen: bad port in '%s' (0-65535)", v);
    int rc = set_str(&c->listen_host, host, err);
    if (rc)
        return rc;
    c->listen_port = (int)port;
    return HL_OK;
}

int hl_config_set(hl_config *c, const char *key, const char *v, hl_err *err)
{
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const key_def *k = &keys[i];
        if (strcmp(k->key, key) != 0)
            continue;
        char *base = (char *)c;
        switch (k->kind) {
        case K_STR:
            return set_str((char **)(base + k->off), v, err);
        case K_PATH:
            if (!*v)
                return hl_err_set(err, HL_EINVAL, "%s: empty path", key);
            return resolve_path(c, (char **)(base + k->off), v, err);
        case K_LISTEN:
            return hl_config_set_listen(c, v, err);
        case K_LEVEL:
            if (strcmp(v, "debug") && strcmp(v, "info") && strcmp(v, "warn") && strcmp(v, "error"))
                return hl_err_set(err, HL_EINVAL,
                                  "%s: '%s' is not one of debug, info, warn, error", key, v);
            return set_str((char **)(base + k->off), v, err);
        case K_BOOL:
            if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
                *(int *)(base + k->off) = 1;
            else if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
                *(int *)(base + k->off) = 0;
            else
                return hl_err_set(err, HL_EINVAL, "%s: expected on or off, got '%s'", key, v);
            return HL_OK;
        case K_INT: {
            char *end;
            errno = 0;
            long n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < k->min || n > k->max)
                return hl_err_set(err, HL_EINVAL, "%s: expected a whole number from %ld to %ld, got '%s'",
                                  key, k->min, k->max, v);
            *(int *)(base + k->off) = (int)n;
            return HL_OK;
        }
        case K_SIZE: {
            size_t n;
            if (parse_size(v, &n) || n < (size_t)k->min || n > (size_t)k->max)
                return hl_err_set(err, HL_EINVAL,
                                  "%s: expected a size from %ld to %ld bytes (suffixes k, M, G), got '%s'",
                                  key, k->min, k->max, v);
            *(size_t *)(base + k->off) = n;
            return HL_OK;
        }
        }
    }
    return hl_err_set(err, HL_EINVAL, "unknown key '%s'", key);
}

hl_config *hl_config_new(const char *dir, hl_err *err)
{
    hl_config *c = calloc(1, sizeof *c);
    if (!c) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    c->dir = xstrdup(dir);
    c->name = xstrdup("halle");
    c->listen_host = xstrdup("127.0.0.1");
    c->listen_port = 8080;
    c->workers = 0;
    c->base_url = xstrdup("http://127.0.0.1:8080");
    c->log_file = xstrdup("-");
    c->log_level = xstrdup("info");
    c->access_log = 1;
    c->connection_log = 1;
    c->theme = xstrdup("default");
    c->max_header_size = 16 * 1024;
    c->max_body_size = 16 * 1024 * 1024;
    c->max_upload_size = 10 * 1024 * 1024;
    c->read_timeout = 30;
    c->shutdown_timeout = 20;
    c->request_hard_limit = 30;
    c->hook_failure_limit = 5;
    c->smtp_url = xstrdup("");
    c->mail_from = xstrdup("halle <noreply@localhost>");
    c->mail_interval = 5;
    c->session_idle = 86400;
    c->session_lifetime = 30 * 86400;
    c->lockout_minutes = 15;
    c->login_rate_limit = 20;
    c->password_cost = xstrdup("interactive");
    c->terms_version = xstrdup("2026-11");
    if (!c->name || !c->listen_host || !c->base_url || !c->log_file || !c->log_level ||
        !c->theme || (dir && !c->dir) || resolve_path(c, &c->data_dir, "data", err)) {
        hl_config_free(c);
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    return c;
}

int hl_config_archive_url(const char *url, char **out)
{
    *out = NULL;
    const char *auth = hl_db_is_url(url) ? strstr(url, "://") + 3 : NULL;
    const char *slash = auth ? strchr(auth, '/') : NULL;
    const char *q = slash ? slash + strcspn(slash, "?") : NULL;
    if (!slash || q == slash + 1)
        return HL_EINVAL;
    size_t n = strlen(url) + sizeof "_archive";
    if (!(*out = malloc(n)))
        return HL_ENOMEM;
    snprintf(*out, n, "%.*s_archive%s", (int)(q - url), url, q);
    return HL_OK;
}

static int archive_url(hl_config *c, hl_err *err)
{
    int rc = hl_config_archive_url(c->db_path, &c->archive_path);
    if (rc == HL_EINVAL)
        return hl_err_set(err, HL_EINVAL,
                          "%s: database: the URI must name the database (postgresql://HOST/NAME)",
                          c->path ? c->path : "configuration");
    return rc == HL_OK ? HL_OK : hl_err_set(err, HL_ENOMEM, "out of memory");
}

/* Fills in what depends on other keys once the file is read. */
static int finish(hl_config *c, hl_err *err)
{
    size_t n = strlen(c->data_dir) + 32;
    if (!c->db_path) {
        if (!(c->db_path = malloc(n)))
            return hl_err_set(err, HL_ENOMEM, "out of memory");
        snprintf(c->db_path, n, "%s/halle.db", c->data_dir);
    }
    if (!c->archive_path && hl_db_is_url(c->db_path)) {
        int rc = archive_url(c, err);
        if (rc != HL_OK)
            return rc;
    }
    if (!c->archive_path) {
        if (!(c->archive_path = malloc(n)))
            return hl_err_set(err, HL_ENOMEM, "out of memory");
        snprintf(c->archive_path, n, "%s/archive.db", c->data_dir);
    }
    if (strcmp(c->password_cost, "interactive") && strcmp(c->password_cost, "moderate") && strcmp(c->password_cost, "min"))
        return hl_err_set(err, HL_EINVAL, "%s: password_cost must be interactive, moderate or min",
                          c->path ? c->path : "configuration");
    if (c->max_upload_size > c->max_body_size)
        c->max_upload_size = c->max_body_size;
    return HL_OK;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

hl_config *hl_config_load(const char *path, hl_err *err)
{
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        hl_err_set(err, HL_ENOTFOUND, "%s: cannot read configuration: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = fopen(abs, "r");
    if (!f) {
        hl_err_set(err, HL_ENOTFOUND, "%s: cannot read configuration: %s", path, strerror(errno));
        return NULL;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", abs);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    hl_config *c = hl_config_new(dir, err);
    if (!c) {
        fclose(f);
        return NULL;
    }
    c->path = strdup(abs);
    char line[4096];
    int lineno = 0;
    hl_err e;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            hl_err_set(err, HL_EINVAL, "%s:%d: line longer than %zu characters", path, lineno,
                       sizeof line - 2);
            goto fail;
        }
        char *s = trim(line);
        if (!*s || *s == '#' || *s == ';')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            hl_err_set(err, HL_EINVAL, "%s:%d: expected 'key = value', got '%s'", path, lineno, s);
            goto fail;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val);
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = '\0';
            val++;
        }
        if (hl_config_set(c, key, val, &e) != HL_OK) {
            hl_err_set(err, e.code, "%s:%d: %s", path, lineno, e.msg);
            goto fail;
        }
    }
    if (ferror(f)) {
        hl_err_set(err, HL_EIO, "%s: read error", path);
        goto fail;
    }
    fclose(f);
    if (finish(c, err) != HL_OK) {
        hl_config_free(c);
        return NULL;
    }
    return c;
fail:
    fclose(f);
    hl_config_free(c);
    return NULL;
}

void hl_config_free(hl_config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->dir);
    free(c->name);
    free(c->listen_host);
    free(c->base_url);
    free(c->data_dir);
    free(c->db_path);
    free(c->archive_path);
    free(c->log_file);
    free(c->log_level);
    free(c->share_dir);
    free(c->trusted_proxies);
    free(c->theme);
    free(c->plugin_dirs);
    free(c->smtp_url);
    free(c->mail_from);
    free(c->smtp_user);
    free(c->smtp_password);
    free(c->password_cost);
    free(c->terms_version);
    free(c);
}

int hl_config_write_default(const char *path, const char *site_name, const char *database,
                            const char *archive, hl_err *err)
{
    if ((database && strpbrk(database, "\r\n")) || (archive && strpbrk(archive, "\r\n")))
        return hl_err_set(err, HL_EINVAL, "a database must fit on one line");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return hl_err_set(err, HL_EIO, "%s: cannot create: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return hl_err_set(err, HL_EIO, "%s: cannot write: %s", path, strerror(errno));
    }
    fprintf(f,
            "# halle instance configuration. Paths are relative to this file's folder.\n"
            "# Every key is described in docs/operators.md.\n\n"
            "name = %s\n"
            "listen = 127.0.0.1:8080\n"
            "base_url = http://127.0.0.1:8080\n"
            "# worker processes; 0 = one per CPU\n"
            "workers = 0\n\n"
            "data_dir = data\n"
            "# '-' logs to standard error\n"
            "log_file = logs/halle.log\n"
            "log_level = info\n"
            "access_log = on\n"
            "connection_log = on\n\n"
            "theme = default\n\n"
            "max_header_size = 16k\n"
            "max_body_size = 16M\n"
            "max_upload_size = 10M\n"
            "read_timeout = 30\n"
            "shutdown_timeout = 20\n"
            "# a worker stuck in one request this many seconds is killed and replaced\n"
            "request_hard_limit = 30\n"
            "# a plugin whose hook callbacks fail this many times in a row is suspended (0 = never)\n"
            "hook_failure_limit = 5\n",
            site_name);
    if (database)
        fprintf(f, "\n# the database: a file, or postgresql://USER@HOST:PORT/NAME (docs/scaling.md)\n"
                   "database = %s\n", database);
    if (archive)
        fprintf(f, "archive_database = %s\n", archive);
    if (fclose(f) != 0)
        return hl_err_set(err, HL_EIO, "%s: write failed: %s", path, strerror(errno));
    return HL_OK;
}

#ifndef HALLE_SHARE_DIR
#define HALLE_SHARE_DIR "/usr/local/share/halle"
#endif

const char *hl_config_share_dir(const hl_config *cfg)
{
    if (cfg && cfg->share_dir)
        return cfg->share_dir;
    const char *env = getenv("HALLE_SHARE_DIR");
    return env && *env ? env : HALLE_SHARE_DIR;
}
