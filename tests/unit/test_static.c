/* Unit tests for the in-memory static file table: loading, precedence of a child theme,
 * validators, content types, and that nothing outside the folder can be reached. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/static.h"

static char root[256];

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    assert_int_equal(system(cmd), 0);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof root, "/tmp/halle-test-static-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    put("parent/static/halle.css", "body{}");
    put("parent/static/img/logo.svg", "<svg/>");
    put("parent/static/.hidden", "secret");
    put("child/static/halle.css", "body{color:red}");
    put("outside.txt", "not served");
    char link[512], target[512];
    snprintf(link, sizeof link, "%s/parent/static/link.txt", root);
    snprintf(target, sizeof target, "%s/outside.txt", root);
    return symlink(target, link);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static const hl_static_file *find(hl_static *s, const char *p)
{
    return hl_static_find(s, p, strlen(p));
}

static void test_load_and_override(void **state)
{
    (void)state;
    hl_static *s = hl_static_new();
    hl_err err;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/parent/static", root);
    assert_int_equal(hl_static_load_dir(s, dir, NULL, &err), HL_OK);
    const hl_static_file *css = find(s, "halle.css");
    assert_non_null(css);
    assert_int_equal(css->len, 6);
    char etag_parent[24];
    strcpy(etag_parent, css->etag);
    assert_string_equal(css->content_type, "text/css; charset=utf-8");
    assert_non_null(find(s, "img/logo.svg"));
    assert_string_equal(find(s, "img/logo.svg")->content_type, "image/svg+xml");
    assert_null(find(s, ".hidden"));       /* hidden files are skipped */
    assert_null(find(s, "link.txt"));      /* symlinks are not followed */
    assert_null(find(s, "../outside.txt"));
    assert_null(find(s, "/etc/passwd"));
    snprintf(dir, sizeof dir, "%s/child/static", root);
    assert_int_equal(hl_static_load_dir(s, dir, NULL, &err), HL_OK);
    css = find(s, "halle.css");
    assert_memory_equal(css->data, "body{color:red}", 15);
    assert_string_not_equal(css->etag, etag_parent);
    assert_int_equal(hl_static_count(s), 2);
    hl_static_free(s);
}

static void test_limits_and_missing(void **state)
{
    (void)state;
    hl_static *s = hl_static_new();
    hl_err err;
    assert_int_equal(hl_static_load_dir(s, "/nonexistent/static", NULL, &err), HL_OK);
    assert_int_equal(hl_static_count(s), 0);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/parent/static", root);
    hl_static_limits lim = {.max_files = 1, .max_total = 0};
    assert_int_equal(hl_static_load_dir(s, dir, &lim, &err), HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "limit"));
    hl_static_free(s);
}

static void test_many_files(void **state)
{
    (void)state;
    for (int i = 0; i < 300; i++) {
        char rel[64], body[32];
        snprintf(rel, sizeof rel, "many/f%03d.txt", i);
        snprintf(body, sizeof body, "file %d", i);
        put(rel, body);
    }
    hl_static *s = hl_static_new();
    hl_err err;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/many", root);
    assert_int_equal(hl_static_load_dir(s, dir, NULL, &err), HL_OK);
    assert_int_equal(hl_static_count(s), 300);
    for (int i = 0; i < 300; i++) {
        char rel[32], body[32];
        snprintf(rel, sizeof rel, "f%03d.txt", i);
        snprintf(body, sizeof body, "file %d", i);
        const hl_static_file *f = find(s, rel);
        assert_non_null(f);
        assert_int_equal(f->len, strlen(body));
        assert_memory_equal(f->data, body, f->len);
    }
    assert_string_equal(hl_static_content_type("x.unknown"), "application/octet-stream");
    assert_string_equal(hl_static_content_type("a.b/noext"), "application/octet-stream");
    hl_static_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_override), cmocka_unit_test(test_limits_and_missing),
        cmocka_unit_test(test_many_files),
    };
    return cmocka_run_group_tests_name("static", tests, setup, teardown);
}
