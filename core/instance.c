/* Instance creation (see instance.h). Nothing is overwritten: an existing halle.conf stops
 * init, so running it twice cannot lose an operator's settings or data. */
#include "core/instance.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/db.h"
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
