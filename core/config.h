/* Instance configuration: halle.conf ("key = value" lines), defaults, validation. Errors name
 * the file, the line and the problem, because operators edit this file by hand. */
#ifndef HL_CONFIG_H
#define HL_CONFIG_H

#include <stddef.h>

#include "core/error.h"

typedef struct hl_config {
    char *path;          /* the file read (absolute), NULL for defaults only */
    char *dir;           /* folder of the file: relative paths are resolved against it */
    char *name;          /* site name shown on pages */
    char *listen_host;   /* e.g. 127.0.0.1 */
    int listen_port;
    int workers;         /* worker processes; 0 = one per CPU */
    char *base_url;      /* public URL, e.g. https://halle.example.org */
    char *data_dir;      /* holds halle.db and archive.db */
    char *db_path;
    char *archive_path;
    char *log_file;      /* "-" = stderr */
    char *log_level;     /* debug, info, warn, error */
    int access_log;      /* one line per request in the log */
    int connection_log;  /* connection log rows in the database */
    char *share_dir;     /* migrations, themes (installed data) */
    char *theme;         /* site theme */
    size_t max_header_size;
    size_t max_body_size;
    size_t max_upload_size;  /* per uploaded file */
    int read_timeout;        /* seconds of client silence before the connection is dropped */
    int shutdown_timeout;    /* seconds SIGTERM waits for in-flight requests */
    int request_hard_limit;  /* seconds one request may hold a worker before it is killed */
    char *trusted_proxies;   /* addresses/CIDR blocks whose X-Forwarded-For/Forwarded is believed */
    int hook_failure_limit;  /* hook failures in a row before a plugin is suspended (0 = never) */
    char *smtp_url;          /* smtp://127.0.0.1:25; empty = mail is only queued */
    char *mail_from;         /* From: of outgoing mail */
    char *smtp_user;
    char *smtp_password;
    int mail_interval;       /* seconds between sends of the mail queue */
    int session_idle;        /* seconds a session lives without use */
    int session_lifetime;    /* seconds a session lives at most */
    int lockout_minutes;     /* temporary lock after 3 failed logins */
    int login_rate_limit;    /* login attempts per IP address per 5 minutes */
    char *password_cost;     /* interactive (default), moderate, or min (tests only) */
    char *terms_version;     /* version of the terms users accept at sign-up */
    char *plugin_dirs;       /* ':'-separated folders searched for plugins, NULL = defaults */
    int dev_mode;            /* reload templates and static files when they change */
} hl_config;

/* Defaults for everything; paths relative to dir (may be NULL for the current folder). */
hl_config *hl_config_new(const char *dir, hl_err *err);
/* Reads path over the defaults. Unknown keys, bad values and unreadable files are errors
 * formatted "FILE:LINE: problem". */
hl_config *hl_config_load(const char *path, hl_err *err);
/* Sets one key from a string (used by the loader and by command-line overrides). */
int hl_config_set(hl_config *c, const char *key, const char *value, hl_err *err);
/* Parses "HOST:PORT" (IPv6 as [::1]:8080) into the config. */
int hl_config_set_listen(hl_config *c, const char *value, hl_err *err);
void hl_config_free(hl_config *c);
/* The folder holding installed data (migrations, themes, po, plugins): share_dir from the
 * configuration, else $HALLE_SHARE_DIR, else the compiled-in default. */
const char *hl_config_share_dir(const hl_config *cfg);
/* The archive of an instance on PostgreSQL is another database: by default the main one's
 * name followed by _archive, on the same server ("postgresql://h/halle" gives
 * "postgresql://h/halle_archive"). *out is malloc'd; HL_EINVAL when url names no database. */
int hl_config_archive_url(const char *url, char **out);
/* Writes a commented default halle.conf to path (mode 0600, fails if it exists). */
int hl_config_write_default(const char *path, const char *site_name, const char *database,
                            const char *archive, hl_err *err);

#endif
