/* Instance creation (see instance.h). Nothing is overwritten: an existing halle.conf stops
 * init, so running it twice cannot lose an operator's settings or data. */
#include "core/instance.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/db.h"
#include "core/log.h"
#include "core/migrate.h"

static int make_dir(const char *path, mode_t mode, hl_err *err)
{
    if (mkdir(path, mode) == 0)
        return HL_OK;
    struct stat st;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return chmod(path, mode) == 0 ? HL_OK : hl_err_set(err, HL_EIO, "%s: %s", path, strerror(errno));
    return hl_err_set(err, HL_EIO, "cannot create folder %s: %s", path, strerror(errno));
}

int hl_instance_init(const char *dir, const hl_instance_opts *opts, hl_err *err)
{
    char conf[4096], sub[4096];
    if (strlen(dir) > 3000)
        return hl_err_set(err, HL_EINVAL, "folder name too long");
    snprintf(conf, sizeof conf, "%s/halle.conf", dir);
    if (access(conf, F_OK) == 0)
        return hl_err_set(err, HL_EINVAL, "%s already exists: this folder is already an instance", conf);
    int rc = make_dir(dir, 0755, err);
    if (rc)
        return rc;
    snprintf(sub, sizeof sub, "%s/data", dir);
    if ((rc = make_dir(sub, 0700, err)))
        return rc;
    snprintf(sub, sizeof sub, "%s/logs", dir);
    if ((rc = make_dir(sub, 0750, err)))
        return rc;
    const char *name = opts && opts->name ? opts->name : (opts && opts->demo ? "halle — démo" : "halle");
    if (strchr(name, '\n') || strchr(name, '\r'))
        return hl_err_set(err, HL_EINVAL, "the site name must fit on one line");
    if ((rc = hl_config_write_default(conf, name, opts ? opts->database : NULL,
                                       opts ? opts->archive_database : NULL, err)))
        return rc;
    hl_config *cfg = hl_config_load(conf, err);
    if (!cfg)
        return err ? err->code : HL_ERR;
    rc = hl_migrate_instance(cfg, NULL, NULL, err);
    if (rc != HL_OK) {
        /* Leave nothing half-made: a second init must be able to start again. */
        if (!hl_db_is_url(cfg->db_path))
            unlink(cfg->db_path);
        if (!hl_db_is_url(cfg->archive_path))
            unlink(cfg->archive_path);
        unlink(conf);
    }
    hl_config_free(cfg);
    return rc;
}

int hl_instance_lock(const hl_config *cfg, const char *what, hl_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/halle.lock", cfg->dir ? cfg->dir : ".");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return hl_err_set(err, HL_EIO, "cannot open the lock file %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char line[64] = "", cmd[32] = "serve";
        ssize_t n = pread(fd, line, sizeof line - 1, 0);
        line[n > 0 ? n : 0] = '\0';
        line[strcspn(line, "\n")] = '\0';
        close(fd);
        /* "PID COMMAND"; a file written before the command was recorded holds the pid only. */
        char *sp = strchr(line, ' ');
        if (sp) {
            *sp = '\0';
            snprintf(cmd, sizeof cmd, "%s", sp + 1);
        }
        if (e == EWOULDBLOCK && !strcmp(cmd, "serve"))
            return hl_err_set(err, HL_EBUSY,
                              "this instance is already being served (halle serve, pid %s; lock %s): "
                              "stop it first",
                              *line ? line : "?", path);
        if (e == EWOULDBLOCK)
            return hl_err_set(err, HL_EBUSY, "this instance is in use by halle %s (pid %s; lock %s): wait for it to end",
                              cmd, *line ? line : "?", path);
        return hl_err_set(err, HL_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    char line[64];
    int len = snprintf(line, sizeof line, "%d %.32s\n", (int)getpid(), what);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len)
        hl_log(HL_LOG_WARN, "cannot write the pid to %s", path);
    return fd;
}
