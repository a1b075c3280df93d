/* In-memory static asset table (see static.h): an open-addressing hash of relative paths to
 * file contents, validators computed once at load. */
#include "core/static.h"
#include "core/file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct entry {
    hl_static_file f;
    char *path_buf;
    unsigned char *data_buf;
    uint64_t hash;
} entry;

struct hl_static {
    entry *slots;   /* open addressing; path_buf NULL = empty */
    size_t cap;     /* power of two */
    size_t count;
    size_t total;
};

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static const struct {
    const char *ext, *type;
} types[] = {
    {"css", "text/css; charset=utf-8"},   {"js", "text/javascript; charset=utf-8"},
    {"html", "text/html; charset=utf-8"}, {"txt", "text/plain; charset=utf-8"},
    {"svg", "image/svg+xml"},             {"png", "image/png"},
    {"jpg", "image/jpeg"},                {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},                 {"webp", "image/webp"},
    {"ico", "image/x-icon"},              {"woff2", "font/woff2"},
    {"woff", "font/woff"},                {"json", "application/json"},
    {"webmanifest", "application/manifest+json"}, {"pdf", "application/pdf"},
};

const char *hl_static_content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (dot && !strchr(dot, '/')) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcasecmp(dot + 1, types[i].ext))
                return types[i].type;
    }
    return "application/octet-stream";
}

hl_static *hl_static_new(void)
{
    hl_static *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = 64;
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

static entry *slot_for(entry *slots, size_t cap, const char *path, size_t len, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    for (;;) {
        entry *e = &slots[i];
        if (!e->path_buf || (e->hash == h && strlen(e->path_buf) == len && !memcmp(e->path_buf, path, len)))
            return e;
        i = (i + 1) & (cap - 1);
    }
}

static int grow(hl_static *s)
{
    size_t ncap = s->cap * 2;
    entry *ns = calloc(ncap, sizeof *ns);
    if (!ns)
        return HL_ENOMEM;
    for (size_t i = 0; i < s->cap; i++) {
        entry *e = &s->slots[i];
        if (e->path_buf)
            *slot_for(ns, ncap, e->path_buf, strlen(e->path_buf), e->hash) = *e;
    }
    free(s->slots);
    s->slots = ns;
    s->cap = ncap;
    return HL_OK;
}

static int add_file(hl_static *s, const char *root, const char *rel, const hl_static_limits *lim,
                    hl_err *err)
{
    struct stat st;
    char *text = NULL;
    size_t len = 0;
    /* Beneath the folder only (core/file.h), even if a component was swapped for a link
     * since the walk saw it. */
    int rc = hl_file_read_beneath(root, rel, (size_t)1 << 30, &text, &len, &st, err);
    if (rc)
        return rc;
    unsigned char *data = (unsigned char *)text;
    size_t max_total = lim && lim->max_total ? lim->max_total : (256u << 20);
    size_t max_files = lim && lim->max_files ? lim->max_files : 10000;
    if (s->total + len > max_total || s->count >= max_files) {
        free(data);
        return hl_err_set(err, HL_ETOOBIG, "static files over the limit (%zu files, %zu bytes) at %s",
                          max_files, max_total, rel);
    }
    if ((s->count + 1) * 4 > s->cap * 3 && grow(s) != HL_OK) {
        free(data);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    size_t rl = strlen(rel);
    uint64_t h = fnv1a(rel, rl);
    entry *e = slot_for(s->slots, s->cap, rel, rl, h);
    if (e->path_buf) { /* replaced by a child theme's file */
        s->total -= e->f.len;
        free(e->data_buf);
    } else {
        if (!(e->path_buf = strdup(rel))) {
            free(data);
            return hl_err_set(err, HL_ENOMEM, "out of memory");
        }
        s->count++;
    }
    e->hash = h;
    e->data_buf = data;
    e->f.path = e->path_buf;
    e->f.data = data;
    e->f.len = len;
    e->f.content_type = hl_static_content_type(rel);
    e->f.mtime = st.st_mtime;
    snprintf(e->f.etag, sizeof e->f.etag, "\"%016llx\"", (unsigned long long)(fnv1a(data, len) ^ len));
    struct tm tm;
    gmtime_r(&st.st_mtime, &tm);
    strftime(e->f.last_modified, sizeof e->f.last_modified, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    s->total += len;
    return HL_OK;
}

static int walk(hl_static *s, const char *root, const char *rel, const hl_static_limits *lim,
                int depth, hl_err *err)
{
    if (depth > 16)
        return hl_err_set(err, HL_EINVAL, "%s/%s: folders nested too deep", root, rel);
    char dirpath[4096];
    if ((size_t)snprintf(dirpath, sizeof dirpath, "%s%s%s", root, *rel ? "/" : "", rel) >= sizeof dirpath)
        return hl_err_set(err, HL_EINVAL, "path too long under %s", root);
    DIR *d = opendir(dirpath);
    if (!d)
        return (errno == ENOENT && depth == 0) ? HL_OK
                                               : hl_err_set(err, HL_EIO, "cannot read %s: %s", dirpath, strerror(errno));
    struct dirent *de;
    int rc = HL_OK;
    while (rc == HL_OK && (de = readdir(d))) {
        if (de->d_name[0] == '.') /* skips ., .. and hidden files such as editor swap files */
            continue;
        char nrel[4096], full[4096]; /* full: for lstat only */
        if ((size_t)snprintf(nrel, sizeof nrel, "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= sizeof nrel ||
            (size_t)snprintf(full, sizeof full, "%s/%s", dirpath, de->d_name) >= sizeof full) {
            rc = hl_err_set(err, HL_EINVAL, "path too long under %s", dirpath);
            break;
        }
        struct stat st;
        if (lstat(full, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode))
            rc = walk(s, root, nrel, lim, depth + 1, err);
        else if (S_ISREG(st.st_mode))
            rc = add_file(s, root, nrel, lim, err);
    }
    closedir(d);
    return rc;
}

int hl_static_load_dir(hl_static *s, const char *dir, const hl_static_limits *lim, hl_err *err)
{
    return walk(s, dir, "", lim, 0, err);
}

const hl_static_file *hl_static_find(const hl_static *s, const char *path, size_t len)
{
    if (!s || !s->count)
        return NULL;
    entry *e = slot_for(s->slots, s->cap, path, len, fnv1a(path, len));
    return e->path_buf ? &e->f : NULL;
}

size_t hl_static_count(const hl_static *s) { return s ? s->count : 0; }

void hl_static_free(hl_static *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->cap; i++) {
        free(s->slots[i].path_buf);
        free(s->slots[i].data_buf);
    }
    free(s->slots);
    free(s);
}
