/* Plugin discovery, validation and the registry (see plugin.h). Validation happens here, at
 * enable time and again at every start, so that a plugin that broke after an upgrade is
 * refused with a message instead of taking the server down. */
#include "halle-config.h"
#include "core/plugin.h"

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "core/services.h"
#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"
#include "include/halle/plugin.h"

#ifndef HALLE_PLUGIN_DIR
#define HALLE_PLUGIN_DIR "/usr/local/lib/halle/plugins"
#endif

static char *xstrdup(const char *s) { return strdup(s ? s : ""); }

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = NULL;
    if (vasprintf(&p, fmt, ap) < 0)
        p = NULL;
    va_end(ap);
    return p;
}

/* Plugin names are [a-z][a-z0-9]*: no '_', so that the table prefix NAME_ of one plugin can
 * never cover another's (plugin "news" must not own the tables of a plugin "news_a"). Every
 * core table is hl_*, so "hl" is reserved, and "sqlite" for SQLite's own tables. */
static int valid_name(const char *s)
{
    if (!s || !islower((unsigned char)s[0]) || strlen(s) > 40 || !strcmp(s, "hl") || !strcmp(s, "sqlite"))
        return 0;
    for (; *s; s++)
        if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s))
            return 0;
    return 1;
}

int hl_plugin_dirs(const hl_config *cfg, char ***dirs, size_t *n, hl_err *err)
{
    char *spec;
    if (cfg->plugin_dirs)
        spec = xstrdup(cfg->plugin_dirs);
    else
        spec = xprintf("%s/plugins:%s:%s/plugins", cfg->dir ? cfg->dir : ".", HALLE_PLUGIN_DIR,
                       hl_config_share_dir(cfg));
    if (!spec)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    size_t cap = 1;
    for (char *p = spec; *p; p++)
        cap += *p == ':';
    char **out = calloc(cap, sizeof *out);
    size_t k = 0;
    if (!out) {
        free(spec);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    char *save = NULL;
    for (char *tok = strtok_r(spec, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        if (!*tok)
            continue;
        /* Relative folders in the configuration are relative to the configuration file. */
        out[k] = (tok[0] == '/' || !cfg->dir) ? xstrdup(tok) : xprintf("%s/%s", cfg->dir, tok);
        if (out[k])
            k++;
    }
    free(spec);
    *dirs = out;
    *n = k;
    return HL_OK;
}

void hl_plugin_dirs_free(char **dirs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
}

/* ---- reading one plugin --------------------------------------------------------------- */

static void info_free(hl_plugin_info *p)
{
    free(p->name);
    free(p->version);
    free(p->description);
    free(p->path);
    free(p->requires);
    free(p->error);
    json_decref(p->manifest);
    memset(p, 0, sizeof *p);
}

/* Reads the descriptor of a C plugin. The library is closed again: workers open it themselves. */
static void read_c_manifest(const halle_plugin *d, const char *path, hl_plugin_info *p);

static void read_c_plugin(const char *path, hl_plugin_info *p)
{
    p->kind = HL_PLUGIN_C;
    p->path = xstrdup(path);
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        p->error = xprintf("%s: cannot load: %s", path, dlerror());
        const char *base = strrchr(path, '/');
        p->name = xstrdup(base ? base + 1 : path);
        char *dot = strstr(p->name, ".so");
        if (dot)
            *dot = '\0';
        return;
    }
    const halle_plugin *d = dlsym(so, "halle_plugin_descriptor");
    if (!d) {
        p->error = xprintf("%s: no halle_plugin_descriptor symbol: not a halle plugin", path);
    } else if (d->abi_version != HALLE_PLUGIN_ABI) {
        p->error = xprintf("%s: built for plugin ABI %u, this halle has ABI %u: rebuild it against the installed SDK",
                           path, d->abi_version, HALLE_PLUGIN_ABI);
    } else if (d->struct_size < offsetof(halle_plugin, fini) + sizeof d->fini) {
        p->error = xprintf("%s: descriptor too small (%zu bytes): corrupt or not a halle plugin", path, d->struct_size);
    } else if (d->min_api_version > HALLE_API_VERSION) {
        p->error = xprintf("%s: needs plugin API %u, this halle provides %u: upgrade halle", path,
                           d->min_api_version, HALLE_API_VERSION);
    } else if (!valid_name(d->name)) {
        p->error = xprintf("%s: invalid plugin name (lower-case letters and digits, starting with a letter; 'hl' and 'sqlite' are reserved: their tables are the core's and SQLite's)", path);
    } else if (!d->init) {
        p->error = xprintf("%s: descriptor has no init function", path);
    }
    if (d && d->abi_version == HALLE_PLUGIN_ABI && valid_name(d->name)) {
        p->name = xstrdup(d->name);
        p->version = xstrdup(d->version);
        p->description = xstrdup(d->description);
        p->requires = xstrdup(d->requires);
    }
    if (!p->name) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        p->name = xstrdup(base);
        char *dot = strstr(p->name, ".so");
        if (dot)
            *dot = '\0';
    }
    json_t *own = json_pack("{s:s, s:s?, s:s?, s:s}", "name", p->name, "version", p->version, "description",
                            p->description, "kind", "c");
    /* The descriptor's fields win over the manifest's. */
    p->manifest = json_object();
    if (d && !p->error && p->manifest)
        read_c_manifest(d, path, p);
    dlclose(so);
    if (p->manifest && own)
        json_object_update(p->manifest, own);
    json_decref(own);
}

static char *join_requires(json_t *req, char **error, const char *mpath)
{
    if (!req)
        return xstrdup("");
    if (!json_is_array(req)) {
        *error = xprintf("%s: 'requires' must be a list of plugin names", mpath);
        return xstrdup("");
    }
    size_t i, len = 1;
    json_t *v;
    json_array_foreach(req, i, v) {
        if (!json_is_string(v) || !valid_name(json_string_value(v))) {
            *error = xprintf("%s: 'requires' item %zu is not a plugin name", mpath, i + 1);
            return xstrdup("");
        }
        len += strlen(json_string_value(v)) + 1;
    }
    char *out = calloc(1, len);
    json_array_foreach(req, i, v) {
        if (i)
            strcat(out, ",");
        strcat(out, json_string_value(v));
    }
    return out;
}

static const char *check_settings(json_t *settings)
{
    if (!settings)
        return NULL;
    if (!json_is_object(settings))
        return "'settings' must be an object of setting name to description";
    const char *key;
    json_t *s;
    json_object_foreach(settings, key, s) {
        const char *type = json_string_value(json_object_get(s, "type"));
        if (!json_is_object(s) || !type)
            return "each setting needs a 'type'";
        if (strcmp(type, "string") && strcmp(type, "integer") && strcmp(type, "boolean") && strcmp(type, "choice"))
            return "a setting's type must be string, integer, boolean or choice";
        if (!strcmp(type, "choice") && !json_is_array(json_object_get(s, "choices")))
            return "a choice setting needs a 'choices' list";
    }
    return NULL;
}

/* Each item of a declaration list ("privacy", "cookies") is an object of text, numbers and
 * booleans naming key (the purpose, the cookie's name). */
static const char *check_declarations(json_t *list, const char *what, const char *key)
{
    static char msg[128];
    if (!list)
        return NULL;
    size_t i;
    json_t *v;
    if (!json_is_array(list))
        goto bad;
    json_array_foreach(list, i, v) {
        if (!json_is_object(v) || !json_is_string(json_object_get(v, key)))
            goto bad;
    }
    return NULL;
bad:
    snprintf(msg, sizeof msg, "'%s' must be a list of objects, each with a '%s'", what, key);
    return msg;
}

/* What plugin.json and a C plugin's manifest_json have in common, checked alike: NULL when
 * fine, else the problem. */
static const char *check_manifest(json_t *m)
{
    if (!json_is_object(m))
        return "the manifest must be a JSON object";
    json_t *gl = json_object_get(m, "group_level");
    if (gl && !json_is_boolean(gl))
        return "'group_level' must be true or false";
    const char *bad = check_settings(json_object_get(m, "settings"));
    if (!bad)
        bad = check_declarations(json_object_get(m, "privacy"), "privacy", "purpose");
    if (!bad)
        bad = check_declarations(json_object_get(m, "cookies"), "cookies", "name");
    return bad;
}

/* A C plugin's manifest_json (descriptors of API 9 and later), merged under the descriptor's
 * own fields. Sets p->error when it is invalid. */
static void read_c_manifest(const halle_plugin *d, const char *path, hl_plugin_info *p)
{
    if (d->struct_size < offsetof(halle_plugin, manifest_json) + sizeof d->manifest_json || !d->manifest_json)
        return;
    json_error_t je;
    json_t *m = json_loadb(d->manifest_json, strnlen(d->manifest_json, (size_t)1 << 20), JSON_REJECT_DUPLICATES, &je);
    const char *bad = m ? check_manifest(m) : NULL;
    if (!m)
        p->error = xprintf("%s: manifest_json:%d: invalid manifest: %s", path, je.line, je.text);
    else if (bad)
        p->error = xprintf("%s: manifest_json: %s", path, bad);
    else if (json_object_get(m, "permissions") || json_object_get(m, "main"))
        p->error = xprintf("%s: manifest_json: 'permissions' and 'main' are for Lua plugins", path);
    if (p->error) {
        json_decref(m);
        return;
    }
    json_object_update(p->manifest, m);
    json_decref(m);
    p->group_level = json_is_true(json_object_get(p->manifest, "group_level"));
}

static void read_lua_plugin(const char *dir, hl_plugin_info *p)
{
    p->kind = HL_PLUGIN_LUA;
    p->path = xstrdup(dir);
    char *mpath = xprintf("%s/plugin.json", dir);
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    /* Every file of a Lua plugin is read beneath its folder; a link that leads out is refused
     * here, at listing, enabling and start alike, naming the link. */
    hl_err ferr;
    hl_err_clear(&ferr);
    if (hl_file_check_tree(dir, &ferr) != HL_OK) {
        p->error = xprintf("refused: %s", ferr.msg);
        p->name = xstrdup(base);
        free(mpath);
        return;
    }
    json_error_t je;
    char *text = NULL;
    size_t tlen = 0;
    if (hl_file_read_beneath(dir, "plugin.json", (size_t)1 << 20, &text, &tlen, NULL, &ferr) == HL_OK)
        p->manifest = json_loadb(text, tlen, JSON_REJECT_DUPLICATES, &je);
    else
        snprintf(je.text, sizeof je.text, "%.159s", ferr.msg), je.line = 0;
    free(text);
    if (!p->manifest) {
        p->error = xprintf("%s:%d: invalid manifest: %s", mpath, je.line, je.text);
        p->name = xstrdup(base);
        free(mpath);
        return;
    }
    json_t *m = p->manifest;
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *version = json_string_value(json_object_get(m, "version"));
    const char *main_file = json_string_value(json_object_get(m, "main"));
    p->name = xstrdup(name ? name : base);
    p->version = xstrdup(version);
    p->description = xstrdup(json_string_value(json_object_get(m, "description")));
    p->group_level = json_is_true(json_object_get(m, "group_level"));
    p->requires = join_requires(json_object_get(m, "requires"), &p->error, mpath);
    const char *bad_settings = check_manifest(m);
    json_t *perms = json_object_get(m, "permissions");
    json_t *read = perms ? json_object_get(perms, "read") : NULL;
    if (p->error) {
        /* already set */
    } else if (!json_is_object(m)) {
        p->error = xprintf("%s: the manifest must be a JSON object", mpath);
    } else if (!valid_name(name)) {
        p->error = xprintf("%s: 'name' is missing or invalid (lower-case letters and digits, starting with a letter; 'hl' and 'sqlite' are reserved: their tables are the core's and SQLite's)", mpath);
    } else if (!version || !*version) {
        p->error = xprintf("%s: 'version' is missing", mpath);
    } else if (bad_settings) {
        p->error = xprintf("%s: %s", mpath, bad_settings);
    } else if ((perms && !json_is_object(perms)) || (read && !json_is_array(read))) {
        p->error = xprintf("%s: 'permissions' must look like {\"read\": [\"table\", ...]}", mpath);
    } else if (main_file && (strstr(main_file, "..") || main_file[0] == '/')) {
        p->error = xprintf("%s: 'main' must be a file inside the plugin folder", mpath);
    } else {
        char *mainpath = xprintf("%s/%s", dir, main_file ? main_file : "main.lua");
        if (access(mainpath, R_OK) != 0)
            p->error = xprintf("%s: missing (the plugin's code)", mainpath);
        free(mainpath);
    }
    free(mpath);
}

/* ---- discovery ------------------------------------------------------------------------ */

static int push(hl_plugin_list *l, hl_plugin_info *p)
{
    if (hl_plugin_find(l, p->name)) { /* an earlier folder wins */
        info_free(p);
        return HL_OK;
    }
    hl_plugin_info *n = realloc(l->items, (l->count + 1) * sizeof *n);
    if (!n) {
        info_free(p);
        return HL_ENOMEM;
    }
    l->items = n;
    l->items[l->count++] = *p;
    return HL_OK;
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp(((const hl_plugin_info *)a)->name, ((const hl_plugin_info *)b)->name);
}

static void scan_dir(const char *dir, hl_plugin_list *l)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *full = xprintf("%s/%s", dir, de->d_name);
        struct stat st;
        if (!full || stat(full, &st) != 0) {
            free(full);
            continue;
        }
        hl_plugin_info p;
        memset(&p, 0, sizeof p);
        size_t nl = strlen(de->d_name);
        if (S_ISREG(st.st_mode) && nl > 3 && !strcmp(de->d_name + nl - 3, ".so")) {
            read_c_plugin(full, &p);
            push(l, &p);
        } else if (S_ISDIR(st.st_mode)) {
            char *manifest = xprintf("%s/plugin.json", full);
            if (manifest && access(manifest, F_OK) == 0) {
                read_lua_plugin(full, &p);
                push(l, &p);
            }
            free(manifest);
        }
        free(full);
    }
    closedir(d);
}

const hl_plugin_info *hl_plugin_find(const hl_plugin_list *l, const char *name)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->items[i].name, name))
            return &l->items[i];
    return NULL;
}

int hl_plugin_discover(const hl_config *cfg, hl_db *db, hl_plugin_list *out, hl_err *err)
{
    memset(out, 0, sizeof *out);
    char **dirs;
    size_t n;
    int rc = hl_plugin_dirs(cfg, &dirs, &n, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        scan_dir(dirs[i], out);
    hl_plugin_dirs_free(dirs, n);
    if (out->count)
        qsort(out->items, out->count, sizeof *out->items, cmp_info);
    if (!db)
        return HL_OK;
    hl_stmt *st = hl_db_query(db, err, "SELECT name FROM hl_plugins WHERE enabled = 1", NULL);
    if (!st)
        return err ? err->code : HL_ERR;
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW) {
        hl_plugin_info *p = (hl_plugin_info *)hl_plugin_find(out, hl_db_col_text(st, 0));
        if (p)
            p->enabled = 1;
    }
    hl_db_done(st);
    return rc < 0 ? rc : HL_OK;
}

void hl_plugin_list_free(hl_plugin_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        info_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* ---- registry ------------------------------------------------------------------------- */

static const char *now_iso(char *buf, size_t len) { return hl_log_timestamp(buf, len); }

static int requires_each(const char *list, int (*fn)(const char *name, void *ud), void *ud)
{
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save))
        if (*t)
            rc = fn(t, ud);
    free(copy);
    return rc;
}

typedef struct req_check {
    const hl_plugin_list *list;
    const char *plugin;
    hl_err *err;
} req_check;

static int check_required(const char *name, void *ud)
{
    req_check *c = ud;
    const hl_plugin_info *r = hl_plugin_find(c->list, name);
    if (!r)
        return hl_err_set(c->err, HL_ENOTFOUND, "plugin %s requires %s, which is not installed", c->plugin, name);
    if (!r->enabled)
        return hl_err_set(c->err, HL_EINVAL, "plugin %s requires %s: enable %s first", c->plugin, name, name);
    return 0;
}

char *hl_plugin_migrations_dir(const hl_config *cfg, const hl_plugin_info *p)
{
    if (p->kind == HL_PLUGIN_LUA)
        return xprintf("%s/migrations", p->path);
    /* C plugins: a folder named after the plugin beside the library, else the installed data
     * folder (SHARE/plugins/NAME/migrations, where make install puts those of bundled plugins). */
    char *dir = xstrdup(p->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    char *m = xprintf("%s/%s/migrations", slash ? dir : ".", p->name);
    free(dir);
    struct stat st;
    if (m && stat(m, &st) == 0 && S_ISDIR(st.st_mode))
        return m;
    free(m);
    return xprintf("%s/plugins/%s/migrations", hl_config_share_dir(cfg), p->name);
}

/* Core tables a Lua plugin may be granted read access to (when its manifest asks, shown by
 * `halle plugin info`), and columns it never sees. */
static const char *const core_readable[] = {"hl_settings", "hl_users", NULL};
static const char *const core_hidden[] = {"hl_users.password_hash", "hl_sessions.id_hash", "hl_sessions.csrf",
                                          "hl_user_tokens.token_hash", NULL};

/* A table named in a manifest's permissions is granted if the core lists it as readable (never
 * sessions or tokens: hl_sessions and hl_user_tokens are not in that list), or
 * if it belongs to a C plugin (market_products...). Other core tables (hl_*), SQLite's own and the
 * tables of Lua plugins (contained, so not shared with each other) are never granted. */
static int grantable(const hl_plugin_list *all, const char *table)
{
    for (size_t i = 0; core_readable[i]; i++)
        if (!strcmp(core_readable[i], table))
            return 1;
    if (!strncasecmp(table, "hl_", 3) || !strncasecmp(table, "sqlite_", 7))
        return 0;
    const char *us = strchr(table, '_');
    if (!us)
        return 1; /* not a plugin's table */
    if (!all)
        return 0;
    for (size_t i = 0; i < all->count; i++) {
        const hl_plugin_info *q = &all->items[i];
        if (strlen(q->name) == (size_t)(us - table) && !strncasecmp(q->name, table, (size_t)(us - table)))
            return q->kind == HL_PLUGIN_C;
    }
    /* Tables of features not yet written as plugins (users, products...) are decided by the
     * authorizer's hidden-column list. */
    return 1;
}

int hl_plugin_policy(const hl_plugin_list *all, const hl_plugin_info *p, hl_db_policy *out)
{
    memset(out, 0, sizeof *out);
    json_t *read = json_object_get(json_object_get(p->manifest, "permissions"), "read");
    size_t n = json_array_size(read), k = 0;
    const char **list = calloc(n + 1, sizeof *list);
    if (!list)
        return HL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *t = json_string_value(json_array_get(read, i));
        if (t && grantable(all, t))
            list[k++] = strdup(t);
    }
    out->owner = strdup(p->name);
    out->prefix = strdup(p->name);
    out->readable = list;
    out->hidden = core_hidden;
    return out->owner && out->prefix ? HL_OK : HL_ENOMEM;
}

void hl_plugin_policy_free(hl_db_policy *pol)
{
    if (pol->readable)
        for (size_t i = 0; pol->readable[i]; i++)
            free((char *)pol->readable[i]);
    free((void *)pol->readable);
    free((char *)pol->owner);
    free((char *)pol->prefix);
    memset(pol, 0, sizeof *pol);
}

static int migrate_dir(hl_db *db, const hl_plugin_info *p, const char *dir, hl_err *err)
{
    if (p->kind != HL_PLUGIN_LUA)
        return hl_db_migrate(db, p->name, dir, NULL, err);
    hl_db_policy pol;
    int rc = hl_plugin_policy(NULL, p, &pol);
    if (rc == HL_OK)
        rc = hl_db_set_policy(db, &pol, err);
    if (rc == HL_OK) {
        rc = hl_db_migrate(db, p->name, dir, NULL, err);
        hl_db_set_policy(db, NULL, NULL);
    }
    hl_plugin_policy_free(&pol);
    return rc;
}

int hl_plugin_migrate(const hl_config *cfg, hl_db *db, const hl_plugin_info *p, hl_err *err)
{
    char *dir = hl_plugin_migrations_dir(cfg, p);
    struct stat st;
    int rc = HL_OK;
    if (!dir)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) /* a plugin without tables has no folder */
        rc = migrate_dir(db, p, dir, err);
    free(dir);
    return rc;
}

/* Compiles (never runs) the plugin's main file, so that a syntax error is refused at enable
 * time with the file and line. Compiling runs no plugin code, so no sandbox is needed. */
static int check_lua_syntax(const hl_plugin_info *p, hl_err *err)
{
    const char *main_file = json_string_value(json_object_get(p->manifest, "main"));
    char *path = xprintf("%s/%s", p->path, main_file ? main_file : "main.lua");
    lua_State *L = luaL_newstate();
    int rc = HL_OK;
    if (!path || !L)
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
    else if (luaL_loadfilex(L, path, "t") != LUA_OK)
        rc = hl_err_set(err, HL_EINVAL, "plugin %s refused: %s", p->name, lua_tostring(L, -1));
    if (L)
        lua_close(L);
    free(path);
    return rc;
}

int hl_plugin_enable(const hl_config *cfg, hl_db *db, const char *name, hl_err *err)
{
    hl_plugin_list l;
    int rc = hl_plugin_discover(cfg, db, &l, err);
    if (rc)
        return rc;
    const hl_plugin_info *p = hl_plugin_find(&l, name);
    if (!p) {
        rc = hl_err_set(err, HL_ENOTFOUND, "no plugin named '%s' (see 'halle plugin list')", name);
        goto out;
    }
    if (p->error) {
        rc = hl_err_set(err, HL_EINVAL, "plugin %s refused: %s", name, p->error);
        goto out;
    }
    if (p->kind == HL_PLUGIN_LUA && (rc = check_lua_syntax(p, err)))
        goto out;
    req_check c = {&l, name, err};
    if ((rc = requires_each(p->requires, check_required, &c)))
        goto out;
    if ((rc = hl_plugin_migrate(cfg, db, p, err)))
        goto out;
    char ts[32];
    rc = hl_db_run(db, err,
                   "INSERT INTO hl_plugins (name, enabled, version, changed_at) VALUES (?, 1, ?, ?) "
                   "ON CONFLICT (name) DO UPDATE SET enabled = 1, version = excluded.version, changed_at = excluded.changed_at",
                   "sss", name, p->version, now_iso(ts, sizeof ts));
    rc = rc < 0 ? rc : hl_plugin_config_changed(db, err);
out:
    hl_plugin_list_free(&l);
    return rc;
}

typedef struct dep_check {
    const char *name;
    int found;
} dep_check;

static int is_dep(const char *n, void *ud)
{
    dep_check *d = ud;
    if (!strcmp(n, d->name))
        d->found = 1;
    return 0;
}

int hl_plugin_disable(const hl_config *cfg, hl_db *db, const char *name, hl_err *err)
{
    hl_plugin_list l;
    int rc = hl_plugin_discover(cfg, db, &l, err);
    if (rc)
        return rc;
    const hl_plugin_info *p = hl_plugin_find(&l, name);
    if (!p || !p->enabled) {
        rc = hl_err_set(err, HL_ENOTFOUND, "plugin '%s' is not enabled", name);
        goto out;
    }
    for (size_t i = 0; i < l.count; i++) {
        dep_check d = {name, 0};
        if (l.items[i].enabled && requires_each(l.items[i].requires, is_dep, &d) == 0 && d.found) {
            rc = hl_err_set(err, HL_EINVAL, "plugin %s requires %s: disable %s first", l.items[i].name, name,
                            l.items[i].name);
            goto out;
        }
    }
    char ts[32];
    rc = hl_db_run(db, err, "UPDATE hl_plugins SET enabled = 0, changed_at = ? WHERE name = ?", "ss",
                   now_iso(ts, sizeof ts), name);
    rc = rc < 0 ? rc : hl_plugin_config_changed(db, err);
out:
    hl_plugin_list_free(&l);
    return rc;
}

/* ---- settings ------------------------------------------------------------------------- */

json_t *hl_plugin_settings(hl_db *db, const hl_plugin_info *p)
{
    json_t *out = json_object();
    json_t *schema = p->manifest ? json_object_get(p->manifest, "settings") : NULL;
    const char *key;
    json_t *s;
    json_object_foreach(schema, key, s) {
        json_t *def = json_object_get(s, "default");
        if (def)
            json_object_set(out, key, def);
    }
    if (!db)
        return out;
    hl_stmt *st = hl_db_query(db, NULL, "SELECT key, value FROM hl_plugin_settings WHERE plugin = ?", "s", p->name);
    while (st && hl_db_step(st, NULL) == HL_DB_ROW) {
        json_t *v = json_loads(hl_db_col_text(st, 1), JSON_DECODE_ANY, NULL);
        if (v)
            json_object_set_new(out, hl_db_col_text(st, 0), v);
    }
    hl_db_done(st);
    return out;
}

int hl_plugin_set_setting(hl_db *db, const hl_plugin_info *p, const char *key, const char *value, hl_err *err)
{
    json_t *schema = p->manifest ? json_object_get(json_object_get(p->manifest, "settings"), key) : NULL;
    if (!schema)
        return hl_err_set(err, HL_EINVAL, "plugin %s has no setting '%s'", p->name, key);
    const char *type = json_string_value(json_object_get(schema, "type"));
    json_t *v = NULL;
    if (!strcmp(type, "integer")) {
        char *end;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        json_t *min = json_object_get(schema, "min"), *max = json_object_get(schema, "max");
        if (errno || end == value || *end)
            return hl_err_set(err, HL_EINVAL, "%s: '%s' is not a whole number", key, value);
        if ((min && n < json_integer_value(min)) || (max && n > json_integer_value(max)))
            return hl_err_set(err, HL_EINVAL, "%s: %lld is out of range", key, n);
        v = json_integer(n);
    } else if (!strcmp(type, "boolean")) {
        if (!strcmp(value, "on") || !strcmp(value, "true") || !strcmp(value, "1"))
            v = json_true();
        else if (!strcmp(value, "off") || !strcmp(value, "false") || !strcmp(value, "0"))
            v = json_false();
        else
            return hl_err_set(err, HL_EINVAL, "%s: expected on or off", key);
    } else if (!strcmp(type, "choice")) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(schema, "choices"), i, c) {
            if (json_is_string(c) && !strcmp(json_string_value(c), value))
                v = json_string(value);
        }
        if (!v)
            return hl_err_set(err, HL_EINVAL, "%s: '%s' is not one of the choices", key, value);
    } else {
        json_t *maxlen = json_object_get(schema, "max_length");
        size_t limit = maxlen ? (size_t)json_integer_value(maxlen) : 4096;
        if (strlen(value) > limit)
            return hl_err_set(err, HL_EINVAL, "%s: longer than %zu characters", key, limit);
        v = json_string(value);
        if (!v)
            return hl_err_set(err, HL_EINVAL, "%s: not valid UTF-8", key);
    }
    char *text = json_dumps(v, JSON_ENCODE_ANY);
    json_decref(v);
    int rc = hl_db_run(db, err,
                       "INSERT INTO hl_plugin_settings (plugin, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                       "sss", p->name, key, text);
    free(text);
    return rc < 0 ? rc : hl_plugin_config_changed(db, err);
}

/* ---- the configuration's version ------------------------------------------------------------ */

int hl_plugin_config_changed(hl_db *db, hl_err *err)
{
    char ts[32];
    int rc = hl_db_run(db, err,
                       "INSERT INTO hl_settings (name, value, updated_at) VALUES ('config_version', '1', ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = CAST(CAST(hl_settings.value AS INTEGER) + 1 AS TEXT), "
                       "updated_at = excluded.updated_at",
                       "s", now_iso(ts, sizeof ts));
    return rc < 0 ? rc : HL_OK;
}

int64_t hl_plugin_config_version(hl_db *db)
{
    hl_stmt *st = hl_db_query(db, NULL, "SELECT value FROM hl_settings WHERE name = 'config_version'", NULL);
    int64_t v = 0;
    if (st && hl_db_step(st, NULL) == HL_DB_ROW && hl_db_col_text(st, 0))
        v = strtoll(hl_db_col_text(st, 0), NULL, 10);
    hl_db_done(st);
    return v;
}

/* ---- group-level plugins ------------------------------------------------------------------ */

static int valid_scope(const char *scope)
{
    if (!scope || strncmp(scope, "group:", 6) || !scope[6] || strlen(scope) > 26)
        return 0;
    for (const char *p = scope + 6; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

int hl_plugin_scope_set(const hl_config *cfg, hl_db *db, const char *plugin, const char *scope, int enabled,
                        hl_err *err)
{
    if (!valid_scope(scope))
        return hl_err_set(err, HL_EINVAL, "invalid scope '%s' (group:ID)", scope ? scope : "");
    hl_plugin_list l;
    int rc = hl_plugin_discover(cfg, db, &l, err);
    if (rc)
        return rc;
    const hl_plugin_info *p = hl_plugin_find(&l, plugin);
    if (!p || !p->enabled)
        rc = hl_err_set(err, HL_ENOTFOUND, "plugin '%s' is not enabled on this instance", plugin);
    else if (!p->group_level)
        rc = hl_err_set(err, HL_EINVAL, "plugin '%s' cannot be turned on per group", plugin);
    hl_plugin_list_free(&l);
    if (rc)
        return rc;
    char ts[32];
    rc = hl_db_run(db, err,
                   "INSERT INTO hl_plugin_scopes (plugin, scope, enabled, changed_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (plugin, scope) DO UPDATE SET enabled = excluded.enabled, changed_at = excluded.changed_at",
                   "ssis", plugin, scope, enabled ? 1 : 0, now_iso(ts, sizeof ts));
    return rc < 0 ? rc : HL_OK;
}

int hl_plugin_scope_enabled(hl_db *db, const char *plugin, const char *scope)
{
    hl_stmt *st = hl_db_query(db, NULL,
                              "SELECT s.enabled FROM hl_plugin_scopes s JOIN hl_plugins p ON p.name = s.plugin "
                              "WHERE s.plugin = ? AND s.scope = ? AND p.enabled = 1",
                              "ss", plugin, scope);
    int on = st && hl_db_step(st, NULL) == HL_DB_ROW && hl_db_col_int64(st, 0) == 1;
    hl_db_done(st);
    return on;
}

json_t *hl_plugin_scope_list(const hl_config *cfg, hl_db *db, const char *scope)
{
    json_t *out = json_array();
    hl_plugin_list l;
    if (!out || hl_plugin_discover(cfg, db, &l, NULL) != HL_OK)
        return out;
    for (size_t i = 0; i < l.count; i++) {
        const hl_plugin_info *p = &l.items[i];
        if (p->enabled && p->group_level && !p->error)
            json_array_append_new(out, json_pack("{s:s, s:s, s:b}", "name", p->name, "description",
                                                 p->description ? p->description : "", "enabled",
                                                 valid_scope(scope) && hl_plugin_scope_enabled(db, p->name, scope)));
    }
    hl_plugin_list_free(&l);
    return out;
}

json_t *hl_plugin_permissions(const hl_plugin_list *all, const hl_plugin_info *p)
{
    hl_db_policy pol;
    if (hl_plugin_policy(all, p, &pol) != HL_OK)
        return NULL;
    json_t *reads = json_array(), *never = json_array(), *refused = json_array();
    for (size_t i = 0; pol.readable && pol.readable[i]; i++)
        json_array_append_new(reads, json_string(pol.readable[i]));
    for (size_t i = 0; pol.hidden && pol.hidden[i]; i++) {
        const char *dot = strchr(pol.hidden[i], '.');
        for (size_t j = 0; dot && pol.readable && pol.readable[j]; j++)
            if (strlen(pol.readable[j]) == (size_t)(dot - pol.hidden[i]) &&
                !strncmp(pol.readable[j], pol.hidden[i], (size_t)(dot - pol.hidden[i])))
                json_array_append_new(never, json_string(pol.hidden[i]));
    }
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(json_object_get(p->manifest, "permissions"), "read"), i, t) {
        const char *name = json_string_value(t);
        int granted = 0;
        for (size_t j = 0; name && pol.readable && pol.readable[j]; j++)
            granted |= !strcmp(pol.readable[j], name);
        if (name && !granted)
            json_array_append_new(refused, json_string(name));
    }
    char *own = xprintf("%s_*", p->name);
    json_t *out = json_pack("{s:s, s:o, s:o, s:o}", "writes", own ? own : "", "reads", reads, "never_sees", never,
                            "refused", refused);
    free(own);
    hl_plugin_policy_free(&pol);
    return out;
}

void hl_plugin_record_suspension(hl_db *db, const char *plugin, int worker, const char *reason)
{
    char now[32];
    time_t t = (time_t)hl_clock_now();
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    hl_err err;
    hl_err_clear(&err);
    if (hl_db_run(db, &err,
                  "INSERT INTO hl_plugin_suspensions (plugin, worker, reason, suspended_at) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (plugin, worker) DO UPDATE SET reason = excluded.reason, suspended_at = excluded.suspended_at",
                  "sIss", plugin, (int64_t)worker, reason, now) < 0)
        hl_log(HL_LOG_ERROR, "cannot record the suspension of plugin %s: %s", plugin, err.msg);
}

void hl_plugin_clear_suspensions(hl_db *db, int worker)
{
    hl_err err;
    hl_err_clear(&err);
    if (hl_db_run(db, &err, "DELETE FROM hl_plugin_suspensions WHERE worker = ?", "I", (int64_t)worker) < 0)
        hl_log(HL_LOG_WARN, "cannot clear plugin suspensions: %s", err.msg);
}

json_t *hl_plugin_suspensions(hl_db *db)
{
    json_t *out = json_object();
    hl_err err;
    hl_err_clear(&err);
    hl_stmt *st = hl_db_query(db, &err, "SELECT plugin, worker, reason, suspended_at FROM hl_plugin_suspensions "
                                        "ORDER BY plugin, worker", NULL);
    while (st && out && hl_db_step(st, &err) == HL_DB_ROW) {
        const char *name = hl_db_col_text(st, 0);
        json_t *list = json_object_get(out, name);
        if (!list) {
            list = json_array();
            json_object_set_new(out, name, list);
        }
        json_array_append_new(list, json_pack("{s:I, s:s, s:s}", "worker", (json_int_t)hl_db_col_int64(st, 1), "reason",
                                              hl_db_col_text(st, 2), "since", hl_db_col_text(st, 3)));
    }
    hl_db_done(st);
    return out;
}
