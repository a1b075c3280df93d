/* Themes (see theme.h): manifests read once at start-up, templates looked up along a chain of
 * themes and compiled once per (chain, name), so that a request only pays a hash lookup; in
 * development mode the files a template was built from are checked on each use. */
#include "core/theme.h"
#include "core/file.h"
#include "core/i18n.h"
#include "core/utf8.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THEMES 256
#define MAX_CHAIN 64            /* themes in one lookup chain */
#define MAX_NAME 40             /* theme name */
#define MAX_TPL_NAME 100        /* template or partial name */
#define MAX_REL 255             /* static path */
#define MAX_FILE (1u << 20)     /* one template or partial file */
#define MAX_MANIFEST (64u << 10)
#define MAX_VERSION 40
#define MAX_DESCRIPTION 300
#define MAX_DEPS 8192           /* files looked up for one template: bounds compile work */

typedef struct theme {
    hl_theme_info info;        /* points into the strings below */
    char *name, *version, *description, *parent;
    char *dir;                 /* ROOT/NAME, absolute */
    char *conf;                /* ROOT/NAME/theme.conf, for messages */
    int parent_line;           /* line of the parent key, 0 if none */
    int up;                    /* index of the parent theme, -1 for default */
} theme;

/* A path a compiled template depends on: a file that was read, or one that was looked for
 * earlier in the chain and did not exist (it would win if it appeared). */
typedef struct file_rec {
    char *path;
    char *partial;             /* the name a template used for it, NULL for the template */
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_rec;

typedef struct entry {
    struct entry *next;
    uint32_t hash;
    char *key;                 /* "a,b,default:name" */
    hl_tpl *tpl;
    file_rec *files;
    size_t nfiles;
} entry;

struct hl_themes {
    char *root;
    int dev_mode;
    theme *themes;             /* sorted by name */
    size_t count;
    entry **buckets;
    size_t nbuckets, nentries;
    const hl_i18n *i18n;       /* for {{_ text}} tags; NULL: templates show the French source */
};

/* ---------------------------------------------------------------- names */

static int valid_theme_name(const char *s)
{
    if (!s || *s < 'a' || *s > 'z')
        return 0;
    size_t n = 1;
    for (const char *p = s + 1; *p; p++, n++)
        if (n >= MAX_NAME || !((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return 0;
    return 1;
}

/* Template and partial names become file names: a closed alphabet with no '.' at all rules
 * out "..", hidden files and extensions before the filesystem is touched. */
static int valid_tpl_name(const char *s)
{
    if (!s || !*s || *s == '/')
        return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (n >= MAX_TPL_NAME)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '/'))
            return 0;
        if (c == '/' && (p[1] == '/' || p[1] == '\0'))
            return 0;
    }
    return 1;
}

/* Static paths may have dots (extensions) but no segment may start with one: that refuses
 * "..", "." and hidden files alike. */
static int valid_static_rel(const char *s)
{
    if (!s || !*s || *s == '/')
        return 0;
    size_t n = 0;
    for (const char *p = s; *p; p++, n++) {
        char c = *p;
        if (n >= MAX_REL)
            return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.' || c == '/'))
            return 0;
        if (c == '.' && (p == s || p[-1] == '/'))
            return 0;
        if (c == '/' && (p[1] == '/' || p[1] == '\0'))
            return 0;
    }
    return !strstr(s, "..");
}

/* ---------------------------------------------------------------- files */

/* Reads root/rel whole, at most cap bytes, beneath the theme's folder only (core/file.h: a
 * symbolic link leading out is refused). Returns 1 with *out (malloc'd, NUL-terminated), 0 if
 * there is no such file, -1 on any other problem (err set). */
static int read_file(const char *root, const char *rel, size_t cap, char **out, size_t *len, struct stat *st,
                     hl_err *err)
{
    int rc = hl_file_read_beneath(root, rel, cap, out, len, st, err);
    return rc == HL_OK ? 1 : rc == HL_ENOTFOUND ? 0 : -1;
}

static char *path_join(const char *a, const char *b, const char *c, const char *d)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s%s", a, b, c, d);
    return p;
}

/* ---------------------------------------------------------------- manifests */

static char *trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = '\0';
    return s;
}

static int set_key(theme *th, char **slot, const char *key, const char *value, size_t max, int line, hl_err *err)
{
    if (*slot)
        return hl_err_set(err, HL_EINVAL, "%s:%d: duplicate key '%s'", th->conf, line, key);
    if (!*value)
        return hl_err_set(err, HL_EINVAL, "%s:%d: empty value for '%s'", th->conf, line, key);
    if (strlen(value) > max)
        return hl_err_set(err, HL_EINVAL, "%s:%d: '%s' longer than %zu bytes", th->conf, line, key, max);
    if (!(*slot = strdup(value)))
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    return HL_OK;
}

/* "key = value" lines; '#' starts a comment only at the start of a line, so that a description
 * may mention a colour like #a4471f. */
static int parse_manifest(theme *th, const char *folder, char *text, size_t len, hl_err *err)
{
    char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        for (char *q = p; q < eol; q++)
            if (((unsigned char)*q < 0x20 && *q != '\t' && !(*q == '\r' && q + 1 == eol)) || *q == 0x7f)
                return hl_err_set(err, HL_EINVAL, "%s:%d: control character", th->conf, line);
        if (!hl_utf8_valid(p, (size_t)(eol - p)))
            return hl_err_set(err, HL_EINVAL, "%s:%d: invalid UTF-8", th->conf, line);
        char *next = eol < end ? eol + 1 : end;
        char *s = trim(p, eol);
        p = next;
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            return hl_err_set(err, HL_EINVAL, "%s:%d: expected 'key = value'", th->conf, line);
        char *key = trim(s, eq), *value = trim(eq + 1, eq + 1 + strlen(eq + 1));
        int rc;
        if (!strcmp(key, "name")) {
            if (!valid_theme_name(value))
                return hl_err_set(err, HL_EINVAL, "%s:%d: invalid name (a-z first, then a-z, 0-9, '-'; up to %d)",
                                  th->conf, line, MAX_NAME);
            if (strcmp(value, folder))
                return hl_err_set(err, HL_EINVAL, "%s:%d: name '%s' differs from the folder name '%s'", th->conf,
                                  line, value, folder);
            rc = set_key(th, &th->name, key, value, MAX_NAME, line, err);
        } else if (!strcmp(key, "version")) {
            rc = set_key(th, &th->version, key, value, MAX_VERSION, line, err);
        } else if (!strcmp(key, "description")) {
            rc = set_key(th, &th->description, key, value, MAX_DESCRIPTION, line, err);
        } else if (!strcmp(key, "parent")) {
            if (!valid_theme_name(value))
                return hl_err_set(err, HL_EINVAL, "%s:%d: invalid parent name", th->conf, line);
            th->parent_line = line;
            rc = set_key(th, &th->parent, key, value, MAX_NAME, line, err);
        } else {
            return hl_err_set(err, HL_EINVAL, "%s:%d: unknown key '%.40s'", th->conf, line, key);
        }
        if (rc)
            return rc;
    }
    if (!th->name)
        return hl_err_set(err, HL_EINVAL, "%s: missing key 'name'", th->conf);
    return HL_OK;
}

static void theme_clear(theme *th)
{
    free(th->name);
    free(th->version);
    free(th->description);
    free(th->parent);
    free(th->dir);
    free(th->conf);
}

static int load_one(hl_themes *t, const char *folder, hl_err *err)
{
    if (t->count >= MAX_THEMES)
        return hl_err_set(err, HL_ETOOBIG, "%s: more than %d themes", t->root, MAX_THEMES);
    theme *th = &t->themes[t->count];
    memset(th, 0, sizeof *th);
    th->up = -1;
    th->dir = path_join(t->root, "/", folder, "");
    th->conf = th->dir ? path_join(th->dir, "/theme.conf", "", "") : NULL;
    if (!th->conf) {
        theme_clear(th);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    t->count++; /* from here on hl_themes_free releases it */
    if (!valid_theme_name(folder))
        return hl_err_set(err, HL_EINVAL, "%s: folder name is not a theme name (a-z first, then a-z, 0-9, '-'; up to %d)",
                          th->dir, MAX_NAME);
    char *text;
    size_t len;
    struct stat st;
    int rc = hl_file_check_tree(th->dir, err);
    if (rc != HL_OK)
        return hl_err_set(err, rc, "theme %s refused: %s", folder, err ? err->msg : "");
    rc = read_file(th->dir, "theme.conf", MAX_MANIFEST, &text, &len, &st, err);
    if (rc == 0)
        return hl_err_set(err, HL_ENOTFOUND, "%s: missing manifest", th->conf);
    if (rc < 0)
        return err ? err->code : HL_EIO;
    rc = parse_manifest(th, folder, text, len, err);
    free(text);
    if (rc)
        return rc;
    if (!strcmp(th->name, "default") && th->parent)
        return hl_err_set(err, HL_EINVAL, "%s:%d: the default theme has no parent", th->conf, th->parent_line);
    th->info.name = th->name;
    th->info.version = th->version;
    th->info.description = th->description;
    return HL_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const theme *)a)->name, ((const theme *)b)->name);
}

static int index_of(const hl_themes *t, const char *name)
{
    size_t lo = 0, hi = t->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(name, t->themes[mid].name);
        if (!c)
            return (int)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Links every theme to its parent (default when none is named) and refuses cycles. */
static int link_parents(hl_themes *t, hl_err *err)
{
    int def = index_of(t, "default");
    if (def < 0)
        return hl_err_set(err, HL_ENOTFOUND, "%s/default: missing default theme", t->root);
    for (size_t i = 0; i < t->count; i++) {
        theme *th = &t->themes[i];
        if ((int)i == def)
            continue;
        th->up = def;
        if (th->parent) {
            int up = index_of(t, th->parent);
            if (up < 0)
                return hl_err_set(err, HL_EINVAL, "%s:%d: unknown parent '%s'", th->conf, th->parent_line, th->parent);
            th->up = up;
            if (up != def)
                th->info.parent = th->parent;
        }
    }
    /* Any walk that never ends enters a cycle, and the cycle's members walk back to themselves:
     * report one of those, with the whole loop. */
    for (size_t i = 0; i < t->count; i++) {
        int j = t->themes[i].up;
        for (size_t steps = 0; j >= 0 && j != (int)i && steps < t->count; steps++)
            j = t->themes[j].up;
        if (j != (int)i)
            continue;
        theme *th = &t->themes[i];
        char path[400];
        size_t n = (size_t)snprintf(path, sizeof path, "%s", th->name);
        for (j = th->up; n < sizeof path; j = t->themes[j].up) {
            n += (size_t)snprintf(path + n, sizeof path - n, " -> %s", t->themes[j].name);
            if (j == (int)i)
                break;
        }
        return hl_err_set(err, HL_EINVAL, "%s:%d: parent cycle (%s)", th->conf, th->parent_line, path);
    }
    return HL_OK;
}

hl_themes *hl_themes_load(const char *root, int dev_mode, hl_err *err)
{
    if (!root || !*root)
        return hl_err_set(err, HL_EINVAL, "themes folder missing"), NULL;
    hl_themes *t = calloc(1, sizeof *t);
    if (!t || !(t->themes = calloc(MAX_THEMES, sizeof *t->themes))) {
        free(t);
        return hl_err_set(err, HL_ENOMEM, "out of memory"), NULL;
    }
    t->dev_mode = dev_mode;
    if (!(t->root = realpath(root, NULL))) {
        hl_err_set(err, HL_ENOTFOUND, "%s: %s", root, strerror(errno));
        hl_themes_free(t);
        return NULL;
    }
    DIR *d = opendir(t->root);
    if (!d) {
        hl_err_set(err, HL_EIO, "%s: %s", t->root, strerror(errno));
        hl_themes_free(t);
        return NULL;
    }
    int rc = HL_OK;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = path_join(t->root, "/", de->d_name, "");
        if (!p) {
            rc = hl_err_set(err, HL_ENOMEM, "out of memory");
            break;
        }
        struct stat st;
        int isdir = stat(p, &st) == 0 && S_ISDIR(st.st_mode);
        free(p);
        if (isdir) /* plain files (a README) may sit next to the themes */
            rc = load_one(t, de->d_name, err);
    }
    closedir(d);
    if (!rc) {
        qsort(t->themes, t->count, sizeof *t->themes, by_name);
        rc = link_parents(t, err);
    }
    if (rc) {
        hl_themes_free(t);
        return NULL;
    }
    return t;
}

static void free_files(file_rec *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].path);
        free(f[i].partial);
    }
    free(f);
}

void hl_themes_free(hl_themes *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (entry *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            hl_tpl_free(e->tpl);
            free_files(e->files, e->nfiles);
            free(e->key);
            free(e);
        }
    }
    free(t->buckets);
    for (size_t i = 0; i < t->count; i++)
        theme_clear(&t->themes[i]);
    free(t->themes);
    free(t->root);
    free(t);
}

size_t hl_themes_count(const hl_themes *t) { return t ? t->count : 0; }

const hl_theme_info *hl_themes_get(const hl_themes *t, size_t i)
{
    return t && i < t->count ? &t->themes[i].info : NULL;
}

const hl_theme_info *hl_themes_find(const hl_themes *t, const char *name)
{
    int i = t && name ? index_of(t, name) : -1;
    return i < 0 ? NULL : &t->themes[i].info;
}

/* ---------------------------------------------------------------- chains */

static size_t chain_add(const char **out, size_t n, size_t max, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(out[i], name))
            return n;
    if (n < max)
        out[n++] = name;
    return n;
}

/* Every lineage ends at default, which is added once at the very end so that the site theme's
 * ancestors still come before it. */
static size_t chain_lineage(const hl_themes *t, int i, const char **out, size_t n, size_t max)
{
    for (size_t steps = 0; i >= 0 && steps < t->count; i = t->themes[i].up, steps++)
        if (strcmp(t->themes[i].name, "default"))
            n = chain_add(out, n, max, t->themes[i].name);
    return n;
}

size_t hl_themes_chain(const hl_themes *t, const char *group_theme, const char *site_theme,
                       const char **out, size_t max)
{
    if (!t || !out)
        return 0;
    int g = group_theme ? index_of(t, group_theme) : -1;
    int s = site_theme ? index_of(t, site_theme) : -1;
    size_t n = 0;
    if (g >= 0)
        n = chain_add(out, n, max, t->themes[g].name);
    if (s >= 0)
        n = chain_add(out, n, max, t->themes[s].name);
    if (g >= 0)
        n = chain_lineage(t, t->themes[g].up, out, n, max);
    if (s >= 0)
        n = chain_lineage(t, t->themes[s].up, out, n, max);
    int d = index_of(t, "default");
    if (d >= 0)
        n = chain_add(out, n, max, t->themes[d].name);
    return n;
}

/* ---------------------------------------------------------------- compiling */

/* What the loader callback needs: the chain, and the files it read or looked for. */
typedef struct loadctx {
    const theme *chain[MAX_CHAIN];
    size_t n;
    file_rec *files;
    size_t nfiles, cap;
    int failed;               /* out of memory while recording */
    hl_err note;              /* a problem the loader can only report as "not found" */
} loadctx;

static int record(loadctx *c, char *path, const char *partial, const struct stat *st)
{
    if (c->nfiles >= MAX_DEPS) {
        if (!c->note.msg[0])
            hl_err_set(&c->note, HL_ETOOBIG, "more than %d files looked up", MAX_DEPS);
        free(path);
        return -1;
    }
    if (c->nfiles == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        file_rec *f = realloc(c->files, cap * sizeof *f);
        if (!f)
            goto oom;
        c->files = f;
        c->cap = cap;
    }
    file_rec *f = &c->files[c->nfiles];
    memset(f, 0, sizeof *f);
    if (partial && !(f->partial = strdup(partial)))
        goto oom;
    f->path = path;
    if (st) {
        f->exists = 1;
        f->dev = st->st_dev;
        f->ino = st->st_ino;
        f->size = st->st_size;
        f->mtime = st->st_mtim;
    }
    c->nfiles++;
    return 0;
oom:
    free(path);
    c->failed = 1;
    return -1;
}

/* Looks for NAME.mustache in each theme of the chain, in each of the given folders. Returns 1
 * (found, *text set), 0 (nowhere) or -1 (read error or too many files in c->note; or out of
 * memory, c->failed). */
static int find_file(loadctx *c, const char *const *dirs, const char *name, const char *partial, char **text,
                     size_t *len)
{
    for (size_t i = 0; i < c->n; i++) {
        for (const char *const *d = dirs; *d; d++) {
            char *path = malloc(strlen(c->chain[i]->dir) + strlen(*d) + strlen(name) + 16);
            if (!path) {
                c->failed = 1;
                return -1;
            }
            sprintf(path, "%s/%s/%s.mustache", c->chain[i]->dir, *d, name);
            struct stat st;
            hl_err e;
            /* Recorded by its full path (dev mode watches it); read beneath the theme's folder. */
            int rc = read_file(c->chain[i]->dir, path + strlen(c->chain[i]->dir) + 1, MAX_FILE, text, len, &st, &e);
            if (rc < 0) {
                if (!c->note.msg[0])
                    c->note = e;
                free(path);
                return -1;
            }
            if (record(c, path, partial, rc ? &st : NULL)) {
                if (rc)
                    free(*text);
                return -1;
            }
            if (rc)
                return 1;
        }
    }
    return 0;
}

/* Partials and parents: in each theme of the chain, partials/NAME then templates/NAME, so that
 * the nearest theme wins whichever folder it used (a layout is a template of its own). */
static char *loader(void *ud, const char *name, size_t *len)
{
    static const char *const dirs[] = {"partials", "templates", NULL};
    loadctx *c = ud;
    char *text = NULL;
    /* An invalid name is just not found: the compile error then names the file and line. */
    if (!valid_tpl_name(name) || find_file(c, dirs, name, name, &text, len) != 1)
        return NULL;
    return text;
}

static void chain_names(const loadctx *c, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s", i ? ", " : "", c->chain[i]->name);
}

/* hl_tpl names a partial's errors by the name the template used ("footer:3: ..."): give the
 * file instead, say where a missing partial was looked for, and add a read error the loader
 * had to turn into "not found". */
static void explain(const loadctx *c, hl_err *e)
{
    char msg[sizeof e->msg];
    snprintf(msg, sizeof msg, "%s", e->msg);
    for (size_t i = 0; i < c->nfiles; i++) {
        const file_rec *f = &c->files[i];
        size_t pl = f->partial && f->exists ? strlen(f->partial) : 0;
        if (pl && !strncmp(msg, f->partial, pl) && msg[pl] == ':' && msg[pl + 1] >= '0' && msg[pl + 1] <= '9') {
            snprintf(e->msg, sizeof e->msg, "%s%s", f->path, msg + pl);
            snprintf(msg, sizeof msg, "%s", e->msg);
            break;
        }
    }
    size_t ml = strlen(msg);
    if (c->note.msg[0]) {
        snprintf(e->msg, sizeof e->msg, "%.300s: %.200s", msg, c->note.msg);
        e->code = c->note.code;
    } else if (e->code == HL_ENOTFOUND && ml >= 9 && !strcmp(msg + ml - 9, "not found")) {
        char names[300];
        chain_names(c, names, sizeof names);
        snprintf(e->msg, sizeof e->msg, "%.260s in themes %.230s", msg, names);
    }
}

/* Compiles name along the chain. On success *files lists what it was built from. */
static hl_tpl *compile(const theme *const *chain, size_t n, const char *name, const hl_i18n *i18n,
                       const char *lang, file_rec **files, size_t *nfiles, hl_err *err)
{
    static const char *const dirs[] = {"templates", NULL};
    loadctx *c = calloc(1, sizeof *c);
    if (!c)
        return hl_err_set(err, HL_ENOMEM, "out of memory"), NULL;
    c->n = n;
    memcpy(c->chain, chain, n * sizeof *chain);
    char *text = NULL;
    size_t len = 0;
    hl_tpl *tpl = NULL;
    int rc = find_file(c, dirs, name, NULL, &text, &len);
    if (rc == 0) {
        char names[300];
        chain_names(c, names, sizeof names);
        hl_err_set(err, HL_ENOTFOUND, "%s: no such template in themes %s", name, names);
    } else if (rc < 0) {
        if (c->failed)
            hl_err_set(err, HL_ENOMEM, "out of memory");
        else if (err)
            *err = c->note;
    } else {
        hl_tpl_opts opts = {.loader = loader, .loader_ud = c, .strict_partials = 1}; /* used only while compiling */
        /* {{_ text}} tags are translated here, once per language, so rendering costs nothing. */
        hl_i18n_tpl tr = {i18n, lang};
        if (i18n && lang) {
            opts.translate = hl_i18n_tpl_translate;
            opts.translate_ud = &tr;
        }
        hl_err e = {0};
        tpl = hl_tpl_compile(c->files[c->nfiles - 1].path, text, len, &opts, &e);
        free(text);
        if (c->failed) {
            hl_tpl_free(tpl);
            tpl = NULL;
            hl_err_set(&e, HL_ENOMEM, "out of memory");
        } else if (!tpl) {
            explain(c, &e);
        }
        if (!tpl && err)
            *err = e;
    }
    if (tpl) {
        *files = c->files;
        *nfiles = c->nfiles;
    } else {
        free_files(c->files, c->nfiles);
    }
    free(c);
    return tpl;
}

/* Development mode: has any file the template was built from changed, gone or (for one looked
 * for earlier in the chain) appeared? Files a changed partial would newly include are found by
 * the recompilation itself. */
static int changed(const entry *e)
{
    for (size_t i = 0; i < e->nfiles; i++) {
        const file_rec *f = &e->files[i];
        struct stat st;
        int exists = stat(f->path, &st) == 0;
        if (exists != f->exists)
            return 1;
        if (exists && (st.st_dev != f->dev || st.st_ino != f->ino || st.st_size != f->size ||
                       st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec))
            return 1;
    }
    return 0;
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static int grow_table(hl_themes *t)
{
    size_t n = t->nbuckets ? t->nbuckets * 2 : 16;
    entry **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < t->nbuckets; i++) {
        for (entry *e = t->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
    return 0;
}

/* The cache owns what it returns. In development mode a recompiled template replaces (and
 * frees) the previous one, so a caller must not keep the pointer past its next call for the
 * same chain and name; outside development mode it lives until hl_themes_free. */
void hl_themes_set_i18n(hl_themes *t, const hl_i18n *i18n)
{
    if (t)
        t->i18n = i18n;
}

const hl_tpl *hl_themes_template(hl_themes *t, const char *const *chain, size_t n, const char *name,
                                 hl_err *err)
{
    return hl_themes_template_lang(t, chain, n, name, NULL, err);
}

const hl_tpl *hl_themes_template_lang(hl_themes *t, const char *const *chain, size_t n, const char *name,
                                      const char *lang, hl_err *err)
{
    if (!t || !chain || !name)
        return hl_err_set(err, HL_EINVAL, "missing argument"), NULL;
    if (n == 0 || n > MAX_CHAIN)
        return hl_err_set(err, HL_EINVAL, "theme chain of %zu themes (1 to %d)", n, MAX_CHAIN), NULL;
    if (!valid_tpl_name(name))
        return hl_err_set(err, HL_EINVAL, "invalid template name (a-z, 0-9, '_', '-', '/'; up to %d)",
                          MAX_TPL_NAME), NULL;
    const theme *themes[MAX_CHAIN];
    char key[MAX_CHAIN * (MAX_NAME + 1) + MAX_TPL_NAME + 40];
    size_t kl = 0;
    if (lang && (strlen(lang) > 16 || strchr(lang, '|')))
        return hl_err_set(err, HL_EINVAL, "invalid language"), NULL;
    if (lang && t->i18n)
        kl += (size_t)sprintf(key, "%s|", lang);
    else
        lang = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!valid_theme_name(chain[i]))
            return hl_err_set(err, HL_EINVAL, "invalid theme name in chain"), NULL;
        int k = index_of(t, chain[i]);
        if (k < 0)
            return hl_err_set(err, HL_ENOTFOUND, "unknown theme '%s' in chain", chain[i]), NULL;
        themes[i] = &t->themes[k];
        kl += (size_t)sprintf(key + kl, "%s%s", i ? "," : "", themes[i]->name);
    }
    sprintf(key + kl, ":%s", name);
    uint32_t h = hash_str(key);
    entry *e = NULL;
    if (t->nbuckets)
        for (e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next)
            if (e->hash == h && !strcmp(e->key, key))
                break;
    if (e && !(t->dev_mode && changed(e)))
        return e->tpl;
    file_rec *files = NULL;
    size_t nfiles = 0;
    hl_tpl *tpl = compile(themes, n, name, t->i18n, lang, &files, &nfiles, err);
    if (!tpl)
        return NULL; /* a stale entry is kept, so that a caller's pointer stays valid */
    if (e) {
        hl_tpl_free(e->tpl);
        free_files(e->files, e->nfiles);
        e->tpl = tpl;
        e->files = files;
        e->nfiles = nfiles;
        return tpl;
    }
    if (t->nentries >= t->nbuckets && grow_table(t))
        goto oom;
    if (!(e = calloc(1, sizeof *e)))
        goto oom;
    if (!(e->key = strdup(key))) {
        free(e);
        goto oom;
    }
    e->hash = h;
    e->tpl = tpl;
    e->files = files;
    e->nfiles = nfiles;
    e->next = t->buckets[h & (t->nbuckets - 1)];
    t->buckets[h & (t->nbuckets - 1)] = e;
    t->nentries++;
    return tpl;
oom:
    hl_tpl_free(tpl);
    free_files(files, nfiles);
    return hl_err_set(err, HL_ENOMEM, "out of memory"), NULL;
}

int hl_themes_render(hl_themes *t, const char *const *chain, size_t n, const char *name, json_t *context,
                     char **out, size_t *out_len, hl_err *err)
{
    return hl_themes_render_lang(t, chain, n, name, NULL, context, out, out_len, err);
}

int hl_themes_render_lang(hl_themes *t, const char *const *chain, size_t n, const char *name, const char *lang,
                          json_t *context, char **out, size_t *out_len, hl_err *err)
{
    hl_err local;
    if (!err)
        err = &local;
    if (!out || !out_len)
        return hl_err_set(err, HL_EINVAL, "missing output");
    *out = NULL;
    *out_len = 0;
    const hl_tpl *tpl = hl_themes_template_lang(t, chain, n, name, lang, err);
    if (!tpl)
        return err->code ? err->code : HL_ERR;
    return hl_tpl_render(tpl, context, out, out_len, err);
}

/* ---------------------------------------------------------------- static files */

/* Like core/static.c, symlinks below static/ are not followed: lstat each segment. */
static int regular_below(char *path, size_t base)
{
    struct stat st;
    for (char *p = path + base + 1; (p = strchr(p, '/')); p++) {
        *p = '\0';
        int ok = lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
        *p = '/';
        if (!ok)
            return 0;
    }
    return lstat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *hl_themes_static_path(const hl_themes *t, const char *const *chain, size_t n, const char *rel)
{
    if (!t || !chain || n > MAX_CHAIN || !valid_static_rel(rel))
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int k = chain[i] && valid_theme_name(chain[i]) ? index_of(t, chain[i]) : -1;
        if (k < 0)
            continue;
        char *path = path_join(t->themes[k].dir, "/static/", rel, "");
        if (!path)
            return NULL;
        if (regular_below(path, strlen(t->themes[k].dir) + strlen("/static")))
            return path;
        free(path);
    }
    return NULL;
}
