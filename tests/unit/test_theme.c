/* Unit tests for themes: manifests and their errors, lookup chains, overrides of templates and
 * partials along the chain, compile errors with file and line, the template cache (and its
 * development-mode reload), static paths, and the real themes shipped in themes/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/theme.h"

#define SRCDIR_DEFAULT "/work/main"

static char root[256];

/* ---------------------------------------------------------------- helpers */

static void mkdirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    }
    mkdir(buf, 0755);
}

/* Writes root/rel (creating folders); text is written as is, without a newline. */
static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdirs(path);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Moves root/rel's modification time 2 s ahead, so that a rewrite is seen without sleeping. */
static void bump_mtime(const char *rel)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", root, rel);
    assert_int_equal(stat(path, &st), 0);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    ts[1].tv_sec += 2;
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int make_root(void)
{
    snprintf(root, sizeof root, "/tmp/halle-test-theme-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* default, alpha (parent default), beta (parent alpha) and group (no parent: default). Files
 * have no trailing newline so that outputs can be compared exactly. */
static int setup(void **state)
{
    (void)state;
    if (make_root())
        return -1;
    put("default/theme.conf", "# the base\nname = default\nversion = 1.0\n");
    put("default/templates/layout.mustache", "<html>{{$body}}none{{/body}}|{{> footer}}</html>");
    put("default/templates/page.mustache", "{{< layout}}{{$body}}page {{x}}{{/body}}{{/layout}}");
    put("default/templates/who.mustache", "default who {{> footer}}");
    put("default/templates/account/login.mustache", "login {{> forms/field}}");
    put("default/partials/forms/field.mustache", "field {{x}}");
    put("default/partials/footer.mustache", "default-footer");
    put("alpha/theme.conf", "name = alpha\nparent = default\n");
    put("alpha/templates/who.mustache", "alpha who {{> footer}}");
    put("alpha/partials/footer.mustache", "alpha-footer");
    put("beta/theme.conf", "name = beta\r\nparent = alpha\r\ndescription = Beta: #a4471f = terracotta\r\n");
    put("beta/templates/who.mustache", "beta who {{> footer}}");
    put("beta/templates/layout.mustache", "<beta>{{$body}}{{/body}}|{{> footer}}</beta>");
    put("beta/partials/footer.mustache", "beta-footer");
    put("group/theme.conf", "name = group\nversion = 2.0\ndescription = Group theme\n");
    put("group/templates/who.mustache", "group who {{> footer}}");
    put("README", "plain files next to the themes are ignored");
    return 0;
}

static hl_themes *load(int dev)
{
    hl_err err = {0};
    hl_themes *t = hl_themes_load(root, dev, &err);
    if (!t)
        fail_msg("load: %s", err.msg);
    return t;
}

static const char *const C_DEFAULT[] = {"default"};
static const char *const C_ALPHA[] = {"alpha", "default"};
static const char *const C_BETA[] = {"beta", "alpha", "default"};
static const char *const C_GROUP[] = {"group", "beta", "alpha", "default"};
#define N(c) (sizeof(c) / sizeof *(c))

/* Renders name along chain with {"x": 1}; returns the output (caller frees) or fails. */
static char *render(hl_themes *t, const char *const *chain, size_t n, const char *name)
{
    hl_err err = {0};
    json_t *ctx = json_pack("{s:i}", "x", 1);
    char *out = NULL;
    size_t len = 0;
    int rc = hl_themes_render(t, chain, n, name, ctx, &out, &len, &err);
    json_decref(ctx);
    if (rc)
        fail_msg("render %s: %s", name, err.msg);
    assert_int_equal(strlen(out), len);
    return out;
}

static void expect_render(hl_themes *t, const char *const *chain, size_t n, const char *name, const char *want)
{
    char *out = render(t, chain, n, name);
    assert_string_equal(out, want);
    free(out);
}

/* Expects compiling name to fail with code and a message containing each of the fragments
 * (NULL-terminated). */
static void expect_error(hl_themes *t, const char *const *chain, size_t n, const char *name, int code, ...)
{
    hl_err err = {0};
    assert_null(hl_themes_template(t, chain, n, name, &err));
    assert_int_equal(err.code, code);
    va_list ap;
    va_start(ap, code);
    for (const char *frag; (frag = va_arg(ap, const char *));)
        if (!strstr(err.msg, frag))
            fail_msg("error '%s' lacks '%s'", err.msg, frag);
    va_end(ap);
}

/* ---------------------------------------------------------------- manifests */

static void manifests_read(void **state)
{
    (void)state;
    hl_themes *t = load(0);
    assert_int_equal(hl_themes_count(t), 4);
    const char *names[] = {"alpha", "beta", "default", "group"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(hl_themes_get(t, i)->name, names[i]);
    assert_null(hl_themes_get(t, 4));
    const hl_theme_info *b = hl_themes_find(t, "beta");
    assert_non_null(b);
    assert_string_equal(b->parent, "alpha");
    assert_string_equal(b->description, "Beta: #a4471f = terracotta"); /* '#' inside a value */
    assert_null(b->version);
    assert_null(hl_themes_find(t, "alpha")->parent); /* parent default is reported as none */
    assert_null(hl_themes_find(t, "default")->parent);
    assert_string_equal(hl_themes_find(t, "default")->version, "1.0");
    const hl_theme_info *g = hl_themes_find(t, "group");
    assert_null(g->parent);
    assert_string_equal(g->version, "2.0");
    assert_string_equal(g->description, "Group theme");
    assert_null(hl_themes_find(t, "nope"));
    assert_null(hl_themes_find(t, NULL));
    assert_null(hl_themes_find(NULL, "default"));
    assert_int_equal(hl_themes_count(NULL), 0);
    hl_themes_free(t);
    hl_themes_free(NULL);
}

/* Loads root after writing rel = text; expects failure with msg containing frag. */
static void expect_bad(const char *rel, const char *text, const char *frag)
{
    put(rel, text);
    hl_err err = {0};
    hl_themes *t = hl_themes_load(root, 0, &err);
    if (t) {
        hl_themes_free(t);
        fail_msg("%s loaded: %s", rel, text);
    }
    assert_int_not_equal(err.code, HL_OK);
    if (!strstr(err.msg, frag))
        fail_msg("error '%s' lacks '%s'", err.msg, frag);
}

static void manifest_errors(void **state)
{
    (void)state;
    char frag[400];
    snprintf(frag, sizeof frag, "%s/alpha/theme.conf:3: unknown key 'colour'", root);
    expect_bad("alpha/theme.conf", "name = alpha\n# palette\ncolour = red\n", frag);
    expect_bad("alpha/theme.conf", "name = beta\n", "alpha/theme.conf:1: name 'beta' differs from the folder name 'alpha'");
    expect_bad("alpha/theme.conf", "version = 1\n", "alpha/theme.conf: missing key 'name'");
    expect_bad("alpha/theme.conf", "name = alpha\nparent = zzz\n", "alpha/theme.conf:2: unknown parent 'zzz'");
    expect_bad("alpha/theme.conf", "name = alpha\nparent = alpha\n", "parent cycle (alpha -> alpha)");
    expect_bad("alpha/theme.conf", "name = alpha\nparent = beta\n", "parent cycle (alpha -> beta -> alpha)");
    expect_bad("alpha/theme.conf", "name = alpha\nname = alpha\n", "alpha/theme.conf:2: duplicate key 'name'");
    expect_bad("alpha/theme.conf", "name = alpha\njust words\n", "alpha/theme.conf:2: expected 'key = value'");
    expect_bad("alpha/theme.conf", "name = alpha\nversion =\n", "alpha/theme.conf:2: empty value for 'version'");
    expect_bad("alpha/theme.conf", "name = alpha\nparent = ../x\n", "alpha/theme.conf:2: invalid parent name");
    expect_bad("alpha/theme.conf", "name = Alpha\n", "alpha/theme.conf:1: invalid name");
    expect_bad("alpha/theme.conf", "name = alpha\ndescription = a\x01z\n", "alpha/theme.conf:2: control character");
    expect_bad("alpha/theme.conf", "name = alpha\ndescription = a\rz\n", "alpha/theme.conf:2: control character");
    expect_bad("alpha/theme.conf", "name = alpha\ndescription = \xc3\x28\n", "alpha/theme.conf:2: invalid UTF-8");
    expect_bad("alpha/theme.conf", "name = alpha\ndescription = \xed\xa0\x80\n", "alpha/theme.conf:2: invalid UTF-8");
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char text[500];
    snprintf(text, sizeof text, "name = alpha\ndescription = %s\n", big);
    expect_bad("alpha/theme.conf", text, "alpha/theme.conf:2: 'description' longer than");
    put("alpha/theme.conf", "name = alpha\n");
    expect_bad("default/theme.conf", "name = default\nparent = alpha\n", "default/theme.conf:2: the default theme has no parent");
    put("default/theme.conf", "name = default\n");

    /* A folder without manifest, a folder with a bad name, no default at all. */
    expect_bad("delta/templates/x.mustache", "x", "delta/theme.conf: missing manifest");
    put("delta/theme.conf", "name = delta\n");
    expect_bad("Bad/theme.conf", "name = bad\n", "Bad: folder name is not a theme name");
    char path[512];
    snprintf(path, sizeof path, "%s/Bad", root);
    assert_int_equal(nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/default", root);
    snprintf(to, sizeof to, "%s/.default-off", root); /* hidden folders are skipped */
    assert_int_equal(rename(from, to), 0);
    expect_bad("alpha/theme.conf", "name = alpha\n", "missing default theme");
    assert_int_equal(rename(to, from), 0);

    /* A manifest that is not a regular file, or too big. */
    snprintf(path, sizeof path, "%s/delta/theme.conf", root);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_bad("alpha/theme.conf", "name = alpha\n", "delta/theme.conf: not a regular file");
    assert_int_equal(unlink(path), 0);
    char *huge = malloc(70000);
    assert_non_null(huge);
    memset(huge, '#', 69999);
    huge[69999] = '\0';
    expect_bad("delta/theme.conf", huge, "delta/theme.conf: larger than");
    free(huge);
    put("delta/theme.conf", "name = delta\n");

    hl_err err = {0};
    assert_null(hl_themes_load("/nonexistent/halle-themes", 0, &err));
    assert_int_equal(err.code, HL_ENOTFOUND);
    assert_null(hl_themes_load(NULL, 0, &err));
    assert_int_equal(err.code, HL_EINVAL);
    hl_themes *t = load(0); /* everything repaired */
    assert_int_equal(hl_themes_count(t), 5);
    hl_themes_free(t);
}

/* ---------------------------------------------------------------- chains */

static void chains(void **state)
{
    (void)state;
    hl_themes *t = load(0);
    const char *out[8];
    size_t n = hl_themes_chain(t, "group", "beta", out, 8);
    assert_int_equal(n, 4);
    assert_string_equal(out[0], "group");
    assert_string_equal(out[1], "beta");
    assert_string_equal(out[2], "alpha");
    assert_string_equal(out[3], "default");
    /* The site theme comes before the group theme's parents. */
    n = hl_themes_chain(t, "beta", "group", out, 8);
    assert_int_equal(n, 4);
    assert_string_equal(out[0], "beta");
    assert_string_equal(out[1], "group");
    assert_string_equal(out[2], "alpha");
    assert_string_equal(out[3], "default");
    n = hl_themes_chain(t, NULL, "beta", out, 8);
    assert_int_equal(n, 3);
    assert_string_equal(out[0], "beta");
    assert_string_equal(out[1], "alpha");
    assert_string_equal(out[2], "default");
    n = hl_themes_chain(t, "beta", "alpha", out, 8); /* duplicates removed */
    assert_int_equal(n, 3);
    assert_string_equal(out[1], "alpha");
    n = hl_themes_chain(t, "alpha", "alpha", out, 8);
    assert_int_equal(n, 2);
    n = hl_themes_chain(t, "nope", "../alpha", out, 8); /* unknown skipped */
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "default");
    n = hl_themes_chain(t, "nope", "alpha", out, 8);
    assert_int_equal(n, 2);
    assert_string_equal(out[0], "alpha");
    n = hl_themes_chain(t, NULL, NULL, out, 8);
    assert_int_equal(n, 1);
    assert_string_equal(out[0], "default");
    n = hl_themes_chain(t, "default", "default", out, 8);
    assert_int_equal(n, 1);
    n = hl_themes_chain(t, "group", "beta", out, 2); /* truncated */
    assert_int_equal(n, 2);
    assert_string_equal(out[1], "beta");
    assert_int_equal(hl_themes_chain(t, "group", "beta", out, 0), 0);
    assert_int_equal(hl_themes_chain(NULL, "group", "beta", out, 8), 0);
    hl_themes_free(t);
}

/* ---------------------------------------------------------------- templates */

static void overrides(void **state)
{
    (void)state;
    hl_themes *t = load(0);
    expect_render(t, C_DEFAULT, N(C_DEFAULT), "who", "default who default-footer");
    expect_render(t, C_ALPHA, N(C_ALPHA), "who", "alpha who alpha-footer");
    expect_render(t, C_BETA, N(C_BETA), "who", "beta who beta-footer");
    /* group has no footer: the next theme's partial is used. */
    expect_render(t, C_GROUP, N(C_GROUP), "who", "group who beta-footer");
    /* Parents ({{< layout}}) are found in templates/ along the chain, partials in partials/. */
    expect_render(t, C_DEFAULT, N(C_DEFAULT), "page", "<html>page 1|default-footer</html>");
    expect_render(t, C_ALPHA, N(C_ALPHA), "page", "<html>page 1|alpha-footer</html>");
    expect_render(t, C_BETA, N(C_BETA), "page", "<beta>page 1|beta-footer</beta>");
    /* Names with folders. */
    expect_render(t, C_BETA, N(C_BETA), "account/login", "login field 1");
    /* Within one theme, partials/ comes before templates/; a theme's copy of either wins over
     * its parent's. */
    put("alpha/partials/layout.mustache", "[{{$body}}{{/body}}]");
    put("alpha/templates/layout.mustache", "<alpha-template/>");
    put("alpha/templates/page2.mustache", "{{< layout}}{{$body}}p2{{/body}}{{/layout}}");
    expect_render(t, C_ALPHA, N(C_ALPHA), "page2", "[p2]");
    expect_render(t, C_BETA, N(C_BETA), "page2", "<beta>p2|beta-footer</beta>");
    hl_themes_free(t);
}

static void compile_errors(void **state)
{
    (void)state;
    hl_themes *t = load(0);
    char file[400];

    expect_error(t, C_BETA, N(C_BETA), "nope", HL_ENOTFOUND, "nope: no such template in themes beta, alpha, default",
                 NULL);

    /* A syntax error names the file (the template, or the partial's own file) and the line. */
    put("beta/templates/bad.mustache", "line one\n{{#open}}\nthree\n{{/close}}\n");
    snprintf(file, sizeof file, "%s/beta/templates/bad.mustache:4:", root);
    expect_error(t, C_BETA, N(C_BETA), "bad", HL_EINVAL, file, "close", NULL);
    put("beta/templates/bad2.mustache", "line one\n{{#open}}\nthree\n");
    expect_error(t, C_BETA, N(C_BETA), "bad2", HL_EINVAL, "beta/templates/bad2.mustache:", "line 2", NULL);
    put("alpha/partials/broken.mustache", "fine\n\n{{/stray}}");
    put("beta/templates/uses-broken.mustache", "x {{> broken}}");
    snprintf(file, sizeof file, "%s/alpha/partials/broken.mustache:3:", root);
    expect_error(t, C_BETA, N(C_BETA), "uses-broken", HL_EINVAL, file, NULL);

    /* A missing partial (or parent) is a compile error naming it and where it was looked for. */
    put("beta/templates/ghostly.mustache", "x\n{{> ghost}}");
    snprintf(file, sizeof file, "%s/beta/templates/ghostly.mustache:2:", root);
    expect_error(t, C_BETA, N(C_BETA), "ghostly", HL_ENOTFOUND, file, "partial 'ghost' not found",
                 "in themes beta, alpha, default", NULL);
    put("default/templates/orphan.mustache", "{{< nolayout}}{{/nolayout}}");
    expect_error(t, C_BETA, N(C_BETA), "orphan", HL_ENOTFOUND, "partial 'nolayout' not found", NULL);
    /* A partial name that could leave the theme is never looked up. */
    put("default/templates/escape.mustache", "{{> ../../theme}}{{> /etc/passwd}}");
    expect_error(t, C_DEFAULT, 1, "escape", HL_ENOTFOUND, "partial '../../theme' not found", NULL);
    put("default/templates/escape2.mustache", "{{> account/../../x}}");
    expect_error(t, C_DEFAULT, 1, "escape2", HL_ENOTFOUND, "not found", NULL);

    /* Files that are too big or not regular are errors, not "not found". */
    char *huge = malloc((1u << 20) + 2);
    assert_non_null(huge);
    memset(huge, 'a', (1u << 20) + 1);
    huge[(1u << 20) + 1] = '\0';
    put("default/templates/huge.mustache", huge);
    expect_error(t, C_DEFAULT, 1, "huge", HL_ETOOBIG, "huge.mustache: larger than 1048576 bytes", NULL);
    put("default/partials/hugep.mustache", huge);
    put("default/templates/uses-huge.mustache", "{{> hugep}}");
    expect_error(t, C_DEFAULT, 1, "uses-huge", HL_ETOOBIG, "partial 'hugep' not found",
                 "hugep.mustache: larger than 1048576 bytes", NULL);
    free(huge);
    char path[512];
    snprintf(path, sizeof path, "%s/default/templates/fifo.mustache", root);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_error(t, C_DEFAULT, 1, "fifo", HL_EINVAL, "fifo.mustache: not a regular file", NULL);
    snprintf(path, sizeof path, "%s/default/templates/dir.mustache", root);
    assert_int_equal(mkdir(path, 0755), 0);
    expect_error(t, C_DEFAULT, 1, "dir", HL_EINVAL, "dir.mustache: not a regular file", NULL);
    /* The files looked up for one template are bounded: 70 partials found only at the end of a
     * chain of 64 themes would take 8890 lookups. */
    char many_refs[70 * 16] = "", rel[64];
    for (int i = 0; i < 70; i++) {
        snprintf(rel, sizeof rel, "default/partials/p%d.mustache", i);
        put(rel, "p");
        snprintf(rel, sizeof rel, "{{> p%d}}", i);
        strcat(many_refs, rel);
    }
    put("default/templates/many.mustache", many_refs);
    const char *long_chain[64];
    for (int i = 0; i < 63; i++)
        long_chain[i] = "beta";
    long_chain[63] = "default";
    expect_error(t, long_chain, 64, "many", HL_ETOOBIG, "more than 8192 files looked up", NULL);
    char *out = render(t, C_BETA, N(C_BETA), "many"); /* fine along a normal chain */
    assert_int_equal(strlen(out), 70);
    free(out);
    /* A 1 MB file exactly is accepted. */
    char *max = malloc(1u << 20 | 1);
    assert_non_null(max);
    memset(max, 'b', 1u << 20);
    max[1u << 20] = '\0';
    put("default/templates/max.mustache", max);
    free(max);
    out = render(t, C_DEFAULT, 1, "max");
    assert_int_equal(strlen(out), 1u << 20);
    free(out);
    hl_themes_free(t);
}

static void invalid_names(void **state)
{
    (void)state;
    hl_themes *t = load(0);
    char long_name[120];
    memset(long_name, 'a', 101);
    long_name[101] = '\0';
    const char *bad[] = {"../x", "/abs", "a..b", "", "Who", "who.mustache", "a//b", "a/", "a b", "a\\b", "%2e%2e",
                         "who\n", long_name};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_error(t, C_BETA, N(C_BETA), bad[i], HL_EINVAL, "invalid template name", NULL);
    long_name[100] = '\0'; /* 100 is allowed (and simply absent) */
    expect_error(t, C_BETA, N(C_BETA), long_name, HL_ENOTFOUND, "no such template", NULL);
    expect_error(t, C_BETA, N(C_BETA), NULL, HL_EINVAL, "missing argument", NULL);

    /* Chains: only loaded themes, 1 to 64 of them. */
    const char *unknown[] = {"beta", "zeta", "default"};
    expect_error(t, unknown, 3, "who", HL_ENOTFOUND, "unknown theme 'zeta'", NULL);
    const char *sneaky[] = {"../beta", "default"};
    expect_error(t, sneaky, 2, "who", HL_EINVAL, "invalid theme name", NULL);
    const char *null_name[] = {NULL};
    expect_error(t, null_name, 1, "who", HL_EINVAL, "invalid theme name", NULL);
    expect_error(t, C_BETA, 0, "who", HL_EINVAL, "theme chain", NULL);
    expect_error(t, NULL, 1, "who", HL_EINVAL, "missing argument", NULL);
    const char *many[65];
    for (size_t i = 0; i < 65; i++)
        many[i] = "default";
    expect_error(t, many, 65, "who", HL_EINVAL, "theme chain", NULL);
    expect_render(t, many, 64, "who", "default who default-footer");

    hl_err err = {0};
    assert_null(hl_themes_template(NULL, C_BETA, 3, "who", &err));
    char *out = (char *)"untouched";
    size_t len = 7;
    assert_int_equal(hl_themes_render(t, C_BETA, 3, "../x", NULL, &out, &len, &err), HL_EINVAL);
    assert_null(out);
    assert_int_equal(len, 0);
    assert_int_equal(hl_themes_render(t, C_BETA, 3, "who", NULL, NULL, &len, &err), HL_EINVAL);
    assert_int_equal(hl_themes_render(t, C_BETA, 3, "nope", NULL, &out, &len, NULL), HL_ENOTFOUND);
    hl_themes_free(t);
}

/* ---------------------------------------------------------------- cache */

static void cache(void **state)
{
    (void)state;
    hl_themes *t = load(0);
    hl_err err = {0};
    const hl_tpl *a = hl_themes_template(t, C_BETA, N(C_BETA), "who", &err);
    assert_non_null(a);
    assert_ptr_equal(hl_themes_template(t, C_BETA, N(C_BETA), "who", &err), a);
    const hl_tpl *b = hl_themes_template(t, C_ALPHA, N(C_ALPHA), "who", &err);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(hl_themes_template(t, C_BETA, N(C_BETA), "who", &err), a);
    /* Enough entries to grow the table, each still found. */
    const hl_tpl *first[40];
    for (int i = 0; i < 40; i++) {
        char name[32], rel[64];
        snprintf(name, sizeof name, "gen/t%d", i);
        snprintf(rel, sizeof rel, "default/templates/%s.mustache", name);
        put(rel, "gen {{x}}");
        assert_non_null(first[i] = hl_themes_template(t, C_DEFAULT, 1, name, &err));
    }
    for (int i = 0; i < 40; i++) {
        char name[32];
        snprintf(name, sizeof name, "gen/t%d", i);
        assert_ptr_equal(hl_themes_template(t, C_DEFAULT, 1, name, &err), first[i]);
    }

    /* Without development mode, changed files are not looked at again. */
    put("beta/partials/footer.mustache", "BETA-FOOTER");
    bump_mtime("beta/partials/footer.mustache");
    put("group/partials/footer.mustache", "group-footer");
    assert_ptr_equal(hl_themes_template(t, C_BETA, N(C_BETA), "who", &err), a);
    expect_render(t, C_BETA, N(C_BETA), "who", "beta who beta-footer");
    hl_themes_free(t);
}

static void dev_mode(void **state)
{
    (void)state;
    hl_themes *t = load(1);
    hl_err err = {0};
    expect_render(t, C_BETA, N(C_BETA), "who", "beta who beta-footer");
    const hl_tpl *a = hl_themes_template(t, C_BETA, N(C_BETA), "who", &err);
    assert_ptr_equal(hl_themes_template(t, C_BETA, N(C_BETA), "who", &err), a); /* unchanged: kept */

    /* Same size, same inode: only the modification time tells. */
    put("beta/partials/footer.mustache", "BETA-FOOTER");
    bump_mtime("beta/partials/footer.mustache");
    expect_render(t, C_BETA, N(C_BETA), "who", "beta who BETA-FOOTER");

    /* A file appearing earlier in the chain takes over. */
    expect_render(t, C_GROUP, N(C_GROUP), "who", "group who BETA-FOOTER");
    put("group/partials/footer.mustache", "group-footer");
    expect_render(t, C_GROUP, N(C_GROUP), "who", "group who group-footer");

    /* A file disappearing falls back to the next theme. */
    char path[512];
    snprintf(path, sizeof path, "%s/group/partials/footer.mustache", root);
    assert_int_equal(unlink(path), 0);
    expect_render(t, C_GROUP, N(C_GROUP), "who", "group who BETA-FOOTER");

    /* A broken edit is reported; once fixed, the template works again. */
    put("beta/templates/who.mustache", "beta who {{#x}}");
    bump_mtime("beta/templates/who.mustache");
    snprintf(path, sizeof path, "%s/beta/templates/who.mustache:1:", root);
    expect_error(t, C_BETA, N(C_BETA), "who", HL_EINVAL, path, NULL);
    put("beta/templates/who.mustache", "fixed {{> footer}}");
    expect_render(t, C_BETA, N(C_BETA), "who", "fixed BETA-FOOTER");

    /* The parent of a layout is a dependency too. */
    expect_render(t, C_ALPHA, N(C_ALPHA), "page", "<html>page 1|alpha-footer</html>");
    put("default/templates/layout.mustache", "<new>{{$body}}{{/body}}</new>");
    expect_render(t, C_ALPHA, N(C_ALPHA), "page", "<new>page 1</new>");
    hl_themes_free(t);
}

/* ---------------------------------------------------------------- static files */

static void expect_static(hl_themes *t, const char *rel, const char *theme)
{
    char *p = hl_themes_static_path(t, C_BETA, N(C_BETA), rel);
    if (!theme) {
        if (p)
            fail_msg("%s served as %s", rel, p);
        return;
    }
    assert_non_null(p);
    char want[600];
    snprintf(want, sizeof want, "%s/%s/static/%s", root, theme, rel);
    char real[600];
    assert_non_null(realpath(want, real));
    assert_string_equal(p, real);
    assert_true(p[0] == '/');
    free(p);
}

static void static_paths(void **state)
{
    (void)state;
    put("default/static/halle.css", "default css");
    put("default/static/img/logo.svg", "<svg/>");
    put("default/static/.hidden", "secret");
    put("default/static/img/.git/config", "secret");
    put("alpha/static/halle.css", "alpha css");
    put("alpha/static/Fonts/A_b-1.woff2", "font");
    put("outside.txt", "not served");
    char link[512], target[512];
    snprintf(link, sizeof link, "%s/beta/static/link.css", root);
    snprintf(target, sizeof target, "%s/outside.txt", root);
    mkdirs(link);
    rmdir(link);
    assert_int_equal(symlink(target, link), 0);
    /* A theme whose folder holds a link leading out of it is refused, naming the link. */
    hl_err err = {0};
    assert_null(hl_themes_load(root, 0, &err));
    assert_non_null(strstr(err.msg, "theme beta refused"));
    assert_non_null(strstr(err.msg, "beta/static/link.css -> "));
    assert_non_null(strstr(err.msg, "leads outside the folder"));
    snprintf(link, sizeof link, "%s/beta/static/link.css", root);
    assert_int_equal(unlink(link), 0);
    /* A link to another theme's folder leads out of beta's too. */
    snprintf(link, sizeof link, "%s/beta/static/linked", root);
    snprintf(target, sizeof target, "%s/default/static/img", root);
    assert_int_equal(symlink(target, link), 0);
    assert_null(hl_themes_load(root, 0, &err));
    assert_non_null(strstr(err.msg, "beta/static/linked -> "));
    assert_int_equal(unlink(link), 0);
    /* One that stays inside is fine (static files skip links all the same). */
    snprintf(target, sizeof target, "%s/beta/theme.conf", root);
    assert_int_equal(symlink(target, link), 0);
    hl_themes *t = load(0);
    expect_static(t, "halle.css", "alpha");
    expect_static(t, "img/logo.svg", "default");
    expect_static(t, "Fonts/A_b-1.woff2", "alpha");
    const char *refused[] = {"nope.css", "../theme.conf", "/etc/passwd", "img/../halle.css", "img/./logo.svg",
                             ".hidden", "img/.git/config", "img//logo.svg", "img", "img/", "", "a\\b",
                             "halle.css?x", "link.css", "linked/logo.svg", "..", "halle.css\n"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        expect_static(t, refused[i], NULL);
    const char *odd[] = {"zeta", "../alpha", "beta", NULL, "default"};
    char *p = hl_themes_static_path(t, odd, 5, "img/logo.svg"); /* unknown and invalid names skipped */
    assert_non_null(p);
    assert_non_null(strstr(p, "/default/static/img/logo.svg"));
    free(p);
    assert_null(hl_themes_static_path(t, C_BETA, N(C_BETA), NULL));
    assert_null(hl_themes_static_path(NULL, C_BETA, N(C_BETA), "halle.css"));
    assert_null(hl_themes_static_path(t, NULL, 1, "halle.css"));
    hl_themes_free(t);
}

/* ---------------------------------------------------------------- the shipped themes */

static char *render_real(hl_themes *t, const char *const *chain, size_t n, const char *name, json_t *ctx)
{
    hl_err err = {0};
    char *out = NULL;
    size_t len = 0;
    if (hl_themes_render(t, chain, n, name, ctx, &out, &len, &err))
        fail_msg("%s: %s", name, err.msg);
    return out;
}

static void must_have(const char *out, const char *frag)
{
    if (!strstr(out, frag))
        fail_msg("output lacks '%s':\n%s", frag, out);
}

static void must_lack(const char *out, const char *frag)
{
    if (strstr(out, frag))
        fail_msg("output has '%s':\n%s", frag, out);
}

/* The part of out from the first `from` to the end of the first `to` after it (malloc'd). */
static char *cut(const char *out, const char *from, const char *to)
{
    const char *a = strstr(out, from);
    assert_non_null(a);
    const char *b = strstr(a, to);
    assert_non_null(b);
    return strndup(a, (size_t)(b + strlen(to) - a));
}

static void common_frame(const char *out)
{
    if (strncmp(out, "<!DOCTYPE html>\n<html lang=\"fr\">\n", 33))
        fail_msg("output does not start with the doctype:\n%s", out);
    must_have(out, "<meta charset=\"utf-8\">");
    must_have(out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    must_have(out, "<meta property=\"og:type\" content=\"website\">");
    must_have(out, "<meta property=\"og:description\" content=\"Vente directe &amp; locale\">");
    must_have(out, "<meta property=\"og:url\" content=\"https://example.org/p?a=1&amp;b=2\">");
    must_have(out, "<meta property=\"og:image\" content=\"https://example.org/i.png\">");
    must_have(out, "<meta property=\"og:site_name\" content=\"Marché &lt;test&gt;\">");
    must_have(out, "<link rel=\"stylesheet\" href=\"/static/halle.css\">");
    must_have(out, "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">");
    must_have(out, "<a class=\"skip\" href=\"#main\">");
    must_have(out, "<a class=\"brand\" href=\"/\">Marché &lt;test&gt;</a>");
    must_have(out, "<main id=\"main\">");
    must_have(out, "<footer class=\"site\">\n<p>Propulsé par halle · vente directe sans commission</p>\n</footer>");
    must_lack(out, "<test>");
    must_lack(out, "style=");
    must_lack(out, "<style");
    must_lack(out, "<script");
    must_lack(out, "{{");
    must_lack(out, "}}");
    must_lack(out, "\n\n"); /* standalone tags leave no blank lines */
    size_t len = strlen(out);
    assert_true(len > 7 && !strcmp(out + len - 8, "</html>\n"));
}

static void real_themes(void **state)
{
    (void)state;
    const char *src = getenv("HALLE_SRCDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/themes", src && *src ? src : SRCDIR_DEFAULT);
    hl_err err = {0};
    hl_themes *t = hl_themes_load(dir, 0, &err);
    if (!t)
        fail_msg("%s: %s", dir, err.msg);
    const hl_theme_info *m = hl_themes_find(t, "marche");
    assert_non_null(m);
    assert_string_equal(m->description, "Couleurs du marché : terracotta et moutarde");
    assert_null(m->parent); /* its parent is default */
    assert_non_null(hl_themes_find(t, "default"));
    const char *chain[4];
    assert_int_equal(hl_themes_chain(t, NULL, "marche", chain, 4), 2);
    assert_string_equal(chain[0], "marche");
    assert_string_equal(chain[1], "default");
    static const char *const D[] = {"default"};
    static const char *const M[] = {"marche", "default"};

    /* marche overrides the stylesheet only; the favicon, layout and partials are default's. */
    char *p = hl_themes_static_path(t, M, 2, "halle.css");
    assert_non_null(p);
    assert_non_null(strstr(p, "/marche/static/halle.css"));
    free(p);
    p = hl_themes_static_path(t, M, 2, "favicon.svg");
    assert_non_null(p);
    assert_non_null(strstr(p, "/default/static/favicon.svg"));
    free(p);
    char path[600];
    snprintf(path, sizeof path, "%s/marche/templates/layout.mustache", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/marche/partials", dir);
    assert_int_not_equal(access(path, F_OK), 0);

    json_t *ctx = json_pack("{s:s, s:{s:s, s:s}, s:{s:s, s:s}, s:s}", "lang", "fr", "site", "name", "Marché <test>",
                            "description", "Vente directe & locale", "page", "url", "https://example.org/p?a=1&b=2",
                            "image", "https://example.org/i.png", "csrf", "tok\"en<");
    assert_non_null(ctx);

    /* Signed out. */
    char *home_d = render_real(t, D, 1, "home", ctx);
    char *home_m = render_real(t, M, 2, "home", ctx);
    common_frame(home_d);
    common_frame(home_m);
    must_have(home_d, "<title>Accueil · Marché &lt;test&gt;</title>");
    must_have(home_d, "<meta property=\"og:title\" content=\"Accueil\">");
    must_have(home_d, "<h1>Marché &lt;test&gt;</h1>");
    must_have(home_d, "<article><h2>Clients</h2>");
    must_have(home_d, "<article><h2>Producteurs</h2>");
    must_have(home_d, "<article><h2>Groupes locaux</h2>");
    must_have(home_d, "sans commission.</p>");
    must_have(home_d, "<a href=\"/login\">Se connecter</a>");
    must_have(home_d, "<a href=\"/signup\">Créer un compte</a>");
    must_lack(home_d, "Mon compte");
    must_lack(home_d, "_csrf");
    must_have(home_m, "<h1>Marché &lt;test&gt;</h1>");
    must_have(home_m, "Le marché de vos producteurs");
    must_lack(home_d, "Le marché de vos producteurs");
    assert_string_not_equal(home_d, home_m);
    char *hd = cut(home_d, "<header", "</header>"), *hm = cut(home_m, "<header", "</header>");
    assert_string_equal(hd, hm); /* the same layout and nav, from default */
    free(hd);
    free(hm);
    hd = cut(home_d, "<!DOCTYPE", "<main id=\"main\">");
    hm = cut(home_m, "<!DOCTYPE", "<main id=\"main\">");
    assert_string_equal(hd, hm);
    free(hd);
    free(hm);
    free(home_d);
    free(home_m);

    /* Signed in, then as an operator. */
    assert_int_equal(json_object_set_new(ctx, "user", json_pack("{s:s}", "email", "a@example.org")), 0);
    home_m = render_real(t, M, 2, "home", ctx);
    must_have(home_m, "<a href=\"/account\">Mon compte</a>");
    must_have(home_m, "<form method=\"post\" action=\"/logout\" class=\"inline\">");
    must_have(home_m, "<input type=\"hidden\" name=\"_csrf\" value=\"tok&quot;en&lt;\">");
    must_have(home_m, "<button type=\"submit\">Se déconnecter</button>");
    must_lack(home_m, "Administration");
    must_lack(home_m, "Se connecter");
    free(home_m);
    assert_int_equal(json_object_set_new(ctx, "user", json_pack("{s:s, s:b}", "email", "a@example.org", "operator", 1)), 0);
    home_d = render_real(t, D, 1, "home", ctx);
    must_have(home_d, "<a href=\"/admin\">Administration</a>");
    must_have(home_d, "Mon compte");
    free(home_d);

    /* Error pages: same frame in both themes; the detail is escaped. */
    json_object_del(ctx, "user");
    assert_int_equal(json_object_set_new(ctx, "status", json_integer(404)), 0);
    assert_int_equal(json_object_set_new(ctx, "reason", json_string("Not Found")), 0);
    assert_int_equal(json_object_set_new(ctx, "explanation", json_string("Cette page n'existe pas.")), 0);
    assert_int_equal(json_object_set_new(ctx, "detail", json_string("/<script>")), 0);
    for (int i = 0; i < 2; i++) {
        char *out = render_real(t, i ? M : D, i ? 2 : 1, "error", ctx);
        common_frame(out);
        must_have(out, "<title>404 Not Found · Marché &lt;test&gt;</title>");
        must_have(out, "<meta property=\"og:title\" content=\"404 Not Found\">");
        must_have(out, "<section class=\"error\" data-status=\"404\">");
        must_have(out, "<h1>404 Not Found</h1>");
        must_have(out, "<p>Cette page n&#39;existe pas.</p>");
        must_have(out, "<p class=\"detail\">/&lt;script&gt;</p>");
        must_have(out, "<a href=\"/\">Retour à l&#39;accueil</a>");
        must_have(out, "Se connecter");
        free(out);
    }
    json_object_del(ctx, "detail");
    json_object_del(ctx, "explanation");
    char *out = render_real(t, D, 1, "error", ctx);
    must_have(out, "<p>La requête n&#39;a pas abouti.</p>");
    must_lack(out, "class=\"detail\"");
    free(out);

    /* Without page.url/page.image there are no empty OpenGraph tags. */
    json_object_del(ctx, "page");
    out = render_real(t, D, 1, "home", ctx);
    must_lack(out, "og:url");
    must_lack(out, "og:image");
    must_have(out, "og:title");
    free(out);
    json_decref(ctx);
    hl_themes_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(manifests_read, setup, teardown),
        cmocka_unit_test_setup_teardown(manifest_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(chains, setup, teardown),
        cmocka_unit_test_setup_teardown(overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(compile_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(invalid_names, setup, teardown),
        cmocka_unit_test_setup_teardown(cache, setup, teardown),
        cmocka_unit_test_setup_teardown(dev_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(static_paths, setup, teardown),
        cmocka_unit_test(real_themes),
    };
    return cmocka_run_group_tests_name("theme", tests, NULL, NULL);
}
