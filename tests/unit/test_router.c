/* Unit tests for core/router.c: route registration, matching with named captures, method
 * handling (404/405/HEAD), the literal-prefix shortcut, and hostile paths and patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/router.h"

/* Distinct handler addresses; the router never calls them. */
static int h1, h2, h3, h4;

typedef struct fixture {
    hl_router *r;
    hl_arena *a;
    hl_route_match m;
} fixture;

static fixture *fx_new(void)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->r = hl_router_new();
    f->a = hl_arena_new(0);
    assert_non_null(f->r);
    assert_non_null(f->a);
    return f;
}

static void fx_free(fixture *f)
{
    hl_router_free(f->r);
    hl_arena_free(f->a);
    free(f);
}

static void add(fixture *f, unsigned methods, const char *pattern, const char *name, void *h)
{
    hl_err err = {0};
    int rc = hl_router_add(f->r, methods, pattern, name, h, NULL, &err);
    if (rc != HL_OK)
        fail_msg("adding %s: %s", pattern, err.msg);
}

static hl_route_result match(fixture *f, unsigned method, const char *path)
{
    return hl_router_match(f->r, method, path, strlen(path), f->a, &f->m);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_literal_routes(void **state)
{
    (void)state;
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/", "home", &h1);
    add(f, HL_METHOD_GET, "/about", "about", &h2);
    add(f, HL_METHOD_GET, "/feed\\.xml", "feed", &h3);
    assert_int_equal(hl_router_count(f->r), 3);

    assert_int_equal(match(f, HL_METHOD_GET, "/"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h1);
    assert_string_equal(f->m.name, "home");
    assert_int_equal(f->m.params.count, 0);

    assert_int_equal(match(f, HL_METHOD_GET, "/about"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    assert_int_equal(match(f, HL_METHOD_GET, "/feed.xml"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h3);

    /* Anchored at both ends; an escaped dot is a dot. */
    assert_int_equal(match(f, HL_METHOD_GET, "/about/"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, "/abou"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, "x/about"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, "/feedXxml"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, ""), HL_ROUTE_NOT_FOUND);
    assert_null(f->m.handler);
    fx_free(f);
}

static void test_named_captures(void **state)
{
    (void)state;
    fixture *f = fx_new();
    int ud = 7;
    hl_err err = {0};
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET,
                                   "/blog/(?<year>[0-9]{4})/(?<month>[0-9]{2})/(?<slug>[a-z-]+)",
                                   "post", &h1, &ud, &err),
                     HL_OK);
    add(f, HL_METHOD_GET, "/f(?:/(?<opt>[a-z]+))?(?<ext>\\.json)?", "opt", &h2);

    assert_int_equal(match(f, HL_METHOD_GET, "/blog/2024/05/hello-world"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h1);
    assert_ptr_equal(f->m.ud, &ud);
    assert_int_equal(f->m.params.count, 3);
    /* In the order of the pattern, not of the name table. */
    assert_string_equal(f->m.params.items[0].name, "year");
    assert_string_equal(f->m.params.items[0].value, "2024");
    assert_int_equal(f->m.params.items[0].value_len, 4);
    assert_string_equal(f->m.params.items[1].name, "month");
    assert_string_equal(f->m.params.items[1].value, "05");
    assert_string_equal(f->m.params.items[2].name, "slug");
    assert_string_equal(f->m.params.items[2].value, "hello-world");

    assert_int_equal(match(f, HL_METHOD_GET, "/blog/2024/5/hello"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, "/blog/2024/05/Hello"), HL_ROUTE_NOT_FOUND);

    /* Unset optional groups give no parameter. */
    assert_int_equal(match(f, HL_METHOD_GET, "/f"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    assert_int_equal(f->m.params.count, 0);
    assert_int_equal(match(f, HL_METHOD_GET, "/f/abc"), HL_ROUTE_FOUND);
    assert_int_equal(f->m.params.count, 1);
    assert_string_equal(hl_params_value(&f->m.params, "opt"), "abc");
    assert_null(hl_params_value(&f->m.params, "ext"));
    assert_int_equal(match(f, HL_METHOD_GET, "/f.json"), HL_ROUTE_FOUND);
    assert_int_equal(f->m.params.count, 1);
    assert_string_equal(hl_params_value(&f->m.params, "ext"), ".json");
    fx_free(f);
}

static void test_captures_keep_text(void **state)
{
    (void)state;
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/tag/(?<tag>[^/]+)", "tag", &h1);
    add(f, HL_METHOD_GET, "/ascii/(?<w>[a-z]+)", "ascii", &h2);

    /* The router does not decode: escapes that look percent-encoded stay as they are. */
    assert_int_equal(match(f, HL_METHOD_GET, "/tag/caf%C3%A9%20x"), HL_ROUTE_FOUND);
    assert_string_equal(hl_params_value(&f->m.params, "tag"), "caf%C3%A9%20x");

    /* Decoded UTF-8 is matched by character; the value is the bytes. */
    assert_int_equal(match(f, HL_METHOD_GET, "/tag/caf\xc3\xa9 x+y"), HL_ROUTE_FOUND);
    const hl_param *p = hl_params_get(&f->m.params, "tag");
    assert_non_null(p);
    assert_int_equal(p->value_len, 9);
    assert_memory_equal(p->value, "caf\xc3\xa9 x+y", 9);
    assert_int_equal(match(f, HL_METHOD_GET, "/ascii/caf\xc3\xa9"), HL_ROUTE_NOT_FOUND);

    /* The value is copied: it survives the caller's buffer. */
    char buf[32];
    strcpy(buf, "/tag/volatile");
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, buf, strlen(buf), f->a, &f->m),
                     HL_ROUTE_FOUND);
    memset(buf, 'X', sizeof buf);
    assert_string_equal(hl_params_value(&f->m.params, "tag"), "volatile");
    fx_free(f);
}

static void test_first_match_wins(void **state)
{
    (void)state;
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/x/(?<a>[0-9]+)", "numeric", &h1);
    add(f, HL_METHOD_GET, "/x/(?<b>[^/]+)", "any", &h2);
    add(f, HL_METHOD_GET, "/x/1", "literal", &h3);

    assert_int_equal(match(f, HL_METHOD_GET, "/x/1"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h1);
    assert_string_equal(f->m.name, "numeric");
    assert_string_equal(hl_params_value(&f->m.params, "a"), "1");
    assert_null(hl_params_value(&f->m.params, "b"));

    assert_int_equal(match(f, HL_METHOD_GET, "/x/one"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    assert_string_equal(hl_params_value(&f->m.params, "b"), "one");
    fx_free(f);
}

static void test_not_found_and_bad_args(void **state)
{
    (void)state;
    fixture *f = fx_new();
    assert_int_equal(match(f, HL_METHOD_GET, "/"), HL_ROUTE_NOT_FOUND);
    add(f, HL_METHOD_GET, "/a", NULL, &h1);
    assert_int_equal(match(f, HL_METHOD_GET, "/b"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(f->m.allow, 0);
    assert_null(f->m.handler);

    /* A route registered without a name reports NULL. */
    assert_int_equal(match(f, HL_METHOD_GET, "/a"), HL_ROUTE_FOUND);
    assert_null(f->m.name);

    assert_int_equal(hl_router_match(NULL, HL_METHOD_GET, "/a", 2, f->a, &f->m),
                     HL_ROUTE_NOT_FOUND);
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, "/a", 2, NULL, &f->m),
                     HL_ROUTE_NOT_FOUND);
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, "/a", 2, f->a, NULL),
                     HL_ROUTE_NOT_FOUND);
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, NULL, 5, f->a, &f->m),
                     HL_ROUTE_NOT_FOUND);
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, NULL, 0, f->a, &f->m),
                     HL_ROUTE_NOT_FOUND);
    /* len is honoured: "/ab" cut to 2 bytes is "/a". */
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, "/ab", 2, f->a, &f->m),
                     HL_ROUTE_FOUND);
    assert_int_equal(hl_router_count(NULL), 0);
    hl_router_free(NULL);
    fx_free(f);
}

static void test_method_not_allowed(void **state)
{
    (void)state;
    fixture *f = fx_new();
    char buf[128];
    add(f, HL_METHOD_GET, "/item/(?<id>\\d+)", "show", &h1);
    add(f, HL_METHOD_POST, "/item/\\d+", "update", &h2);
    add(f, HL_METHOD_DELETE, "/other", "other", &h3);
    add(f, HL_METHOD_PATCH, "/item/[a-z]+", "patch-word", &h4);

    assert_int_equal(match(f, HL_METHOD_PUT, "/item/5"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_GET | HL_METHOD_HEAD | HL_METHOD_POST);
    assert_null(f->m.handler);
    assert_int_equal(f->m.params.count, 0);
    assert_string_equal(hl_router_allow_string(f->m.allow, buf, sizeof buf), "GET, HEAD, POST");

    /* OPTIONS is not implied: it is just another method nobody registered. */
    assert_int_equal(match(f, HL_METHOD_OPTIONS, "/other"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_DELETE);

    assert_int_equal(match(f, HL_METHOD_POST, "/item/5"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    assert_int_equal(f->m.allow, 0);
    assert_int_equal(match(f, HL_METHOD_GET, "/item/abc"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_PATCH);
    assert_int_equal(match(f, HL_METHOD_PUT, "/nothing"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(f->m.allow, 0);

    /* A method that is not one known bit matches nothing, but the path is still known. */
    assert_int_equal(match(f, 0, "/other"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_DELETE);
    assert_int_equal(match(f, HL_METHOD_GET | HL_METHOD_POST, "/item/5"),
                     HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_GET | HL_METHOD_HEAD | HL_METHOD_POST);
    assert_int_equal(match(f, 0x80, "/item/5"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(match(f, 0x80, "/zzz"), HL_ROUTE_NOT_FOUND);
    fx_free(f);
}

static void test_head_via_get(void **state)
{
    (void)state;
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/page/(?<n>[0-9]+)", "page", &h1);
    add(f, HL_METHOD_POST, "/form", "form", &h2);
    add(f, HL_METHOD_HEAD, "/ping", "ping", &h3);

    assert_int_equal(match(f, HL_METHOD_HEAD, "/page/3"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h1);
    assert_string_equal(hl_params_value(&f->m.params, "n"), "3");

    assert_int_equal(match(f, HL_METHOD_HEAD, "/form"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_POST);
    /* HEAD does not imply GET. */
    assert_int_equal(match(f, HL_METHOD_HEAD, "/ping"), HL_ROUTE_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, "/ping"), HL_ROUTE_METHOD_NOT_ALLOWED);
    assert_int_equal(f->m.allow, HL_METHOD_HEAD);
    fx_free(f);
}

static void test_add_rejects(void **state)
{
    (void)state;
    fixture *f = fx_new();
    hl_err err = {0};

    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, NULL, "x", &h1, NULL, &err), HL_EINVAL);
    assert_int_equal(err.code, HL_EINVAL);
    assert_true(strlen(err.msg) > 0);
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "", "x", &h1, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_router_add(f->r, 0, "/x", "x", &h1, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "method"));
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET | 0x80, "/x", "x", &h1, NULL, &err),
                     HL_EINVAL);
    assert_int_equal(hl_router_add(f->r, 0xffffffffu, "/x", "x", &h1, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "/x", "x", NULL, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "handler"));
    assert_int_equal(hl_router_add(NULL, HL_METHOD_GET, "/x", "x", &h1, NULL, &err), HL_EINVAL);
    /* err is optional. */
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "(", "x", &h1, NULL, NULL), HL_EINVAL);

    memset(&err, 0, sizeof err);
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "/post/(?<id>[0-9]+", "x", &h1, NULL, &err),
                     HL_EINVAL);
    assert_int_equal(err.code, HL_EINVAL);
    assert_non_null(strstr(err.msg, "/post/(?<id>[0-9]+"));
    assert_non_null(strstr(err.msg, "missing closing parenthesis"));
    assert_non_null(strstr(err.msg, "offset 18"));

    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "/a[z-a]", "x", &h1, NULL, &err),
                     HL_EINVAL);
    assert_non_null(strstr(err.msg, "offset"));
    /* Invalid UTF-8 in a pattern is a pattern error. */
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "/\xff", "x", &h1, NULL, &err), HL_EINVAL);
    /* \C could split a UTF-8 character. */
    assert_int_equal(hl_router_add(f->r, HL_METHOD_GET, "/\\C", "x", &h1, NULL, &err), HL_EINVAL);

    assert_int_equal(hl_router_count(f->r), 0);
    assert_int_equal(match(f, HL_METHOD_GET, "/x"), HL_ROUTE_NOT_FOUND);
    fx_free(f);
}

static void test_prefix_shortcut_is_exact(void **state)
{
    (void)state;
    /* Each pattern must match exactly the listed paths: the literal prefix computed from it
     * must never reject a path the regex accepts. */
    static const struct {
        const char *pattern;
        const char *yes[3];
        const char *no[3];
    } cases[] = {
        {"/ab?c", {"/ac", "/abc", NULL}, {"/abbc", "/a", NULL}},
        {"/ab*c", {"/ac", "/abbbc", NULL}, {"/a", NULL, NULL}},
        {"/ab+", {"/ab", "/abbb", NULL}, {"/a", NULL, NULL}},
        {"/a{2}b", {"/aab", NULL, NULL}, {"/ab", "/aaab", NULL}},
        {"/caf\xc3\xa9?", {"/caf", "/caf\xc3\xa9", NULL}, {"/cafe", "/caf\xc3", NULL}},
        {"/a|/b", {"/a", "/b", NULL}, {"/ab", "/", NULL}},
        {"/p(?<n>x)|/q", {"/px", "/q", NULL}, {"/p", NULL, NULL}},
        {"/x\\/y\\.z", {"/x/y.z", NULL, NULL}, {"/x/yaz", NULL, NULL}},
        {"/v\\d", {"/v5", NULL, NULL}, {"/vd", "/v", NULL}},
        {"\\Q/a.b\\E", {"/a.b", NULL, NULL}, {"/axb", NULL, NULL}},
        {"/[|]x", {"/|x", NULL, NULL}, {"/x", NULL, NULL}},
        {"/s(?:a|b)", {"/sa", "/sb", NULL}, {"/s", NULL, NULL}},
        {"(?i)/ABC", {"/abc", "/AbC", NULL}, {"/ab", NULL, NULL}},
        {"/k(?i)ABC", {"/kabc", NULL, NULL}, {"/Kabc", NULL, NULL}},
        {"/c(?#(|)x", {"/cx", NULL, NULL}, {"/c", NULL, NULL}},
        {"/p(?x)a#(\n|/q", {"/pa", "/q", NULL}, {"/p", NULL, NULL}},
        {"/v(*MARK:[)|/w", {"/v", "/w", NULL}, {"/x", NULL, NULL}},
        {"/lit{", {"/lit{", NULL, NULL}, {"/lit", NULL, NULL}},
        {"/r]}", {"/r]}", NULL, NULL}, {"/r", NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture *f = fx_new();
        add(f, HL_METHOD_GET, cases[i].pattern, "p", &h1);
        for (size_t j = 0; j < 3 && cases[i].yes[j]; j++)
            if (match(f, HL_METHOD_GET, cases[i].yes[j]) != HL_ROUTE_FOUND)
                fail_msg("%s should match %s", cases[i].pattern, cases[i].yes[j]);
        for (size_t j = 0; j < 3 && cases[i].no[j]; j++)
            if (match(f, HL_METHOD_GET, cases[i].no[j]) != HL_ROUTE_NOT_FOUND)
                fail_msg("%s should not match %s", cases[i].pattern, cases[i].no[j]);
        fx_free(f);
    }
}

static void test_hostile_paths(void **state)
{
    (void)state;
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/files/(?<p>.+)/edit", "edit", &h1);
    add(f, HL_METHOD_GET, "/tag/(?<t>[^/]+)", "tag", &h2);
    add(f, HL_METHOD_GET, "/caf\xc3\xa9", "cafe", &h3);
    add(f, HL_METHOD_GET, "(?<all>.*)", "catchall", &h4);

    /* Invalid UTF-8 never matches, not even the catch-all. */
    static const char *bad[] = {"/tag/\xff\xfe", "/tag/\xc3", "/tag/\xc0\xaf",
                                "/tag/\xed\xa0\x80", "/tag/\xf4\x90\x80\x80", "/caf\xc3",
                                "\x80", "/caf\xc3\xa9\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(match(f, HL_METHOD_GET, bad[i]), HL_ROUTE_NOT_FOUND);

    /* Embedded NUL, control bytes and a newline are ordinary (valid UTF-8) bytes. */
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, "/tag/a\0b", 8, f->a, &f->m),
                     HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    assert_int_equal(f->m.params.items[0].value_len, 3);
    assert_memory_equal(f->m.params.items[0].value, "a\0b", 3);
    assert_int_equal(match(f, HL_METHOD_GET, "/tag/\x01\x7f\t"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    /* '.' does not cross a newline, so the catch-all does not take it either. */
    assert_int_equal(match(f, HL_METHOD_GET, "/files/a\nb/edit"), HL_ROUTE_NOT_FOUND);

    /* 100 KB paths. */
    size_t n = 100 * 1024;
    char *big = malloc(n + 16);
    assert_non_null(big);
    memcpy(big, "/files/", 7);
    memset(big + 7, 'x', n);
    memcpy(big + 7 + n, "/edit", 6);
    assert_int_equal(match(f, HL_METHOD_GET, big), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h1);
    assert_int_equal(f->m.params.items[0].value_len, n);

    big[7 + n] = '\0';
    assert_int_equal(match(f, HL_METHOD_GET, big), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h4);
    assert_int_equal(f->m.params.items[0].value_len, n + 7);

    big[n / 2] = '\xff';
    assert_int_equal(match(f, HL_METHOD_GET, big), HL_ROUTE_NOT_FOUND);
    free(big);

    /* Every byte value, alone after the prefix: no crash, and only valid UTF-8 matches. */
    for (int c = 0; c < 256; c++) {
        char p[8] = "/tag/";
        p[5] = (char)c;
        hl_route_result res = hl_router_match(f->r, HL_METHOD_GET, p, 6, f->a, &f->m);
        if (c >= 0x80)
            assert_int_equal(res, HL_ROUTE_NOT_FOUND);
        else if (c != '/' && c != '\n')
            assert_ptr_equal(f->m.handler, &h2);
    }
    fx_free(f);
}

static void test_pathological_pattern(void **state)
{
    (void)state;
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/(a+)+$", "evil", &h1);
    add(f, HL_METHOD_GET, "/n/(?:(?:a|aa)+)+b", "evil2", &h2);
    add(f, HL_METHOD_GET, "/(a+)+$|/(?<tail>a+bc)", "evil3", &h3);

    char path[256] = "/";
    memset(path + 1, 'a', 200);
    strcpy(path + 201, "b");
    double t = now();
    assert_int_equal(match(f, HL_METHOD_GET, path), HL_ROUTE_NOT_FOUND);

    char path2[256] = "/n/";
    memset(path2 + 3, 'a', 200);
    strcpy(path2 + 203, "bc");
    assert_int_equal(match(f, HL_METHOD_GET, path2), HL_ROUTE_NOT_FOUND);
    /* Without a limit each of these would run for longer than the age of the universe. */
    assert_true(now() - t < 5.0);

    /* The router's limit is tighter than PCRE2's default (10 million): with 17 a's the first
     * alternative gives up within the limit and the second matches; with 20 it needs a few
     * million steps, which PCRE2's default would allow, and the match is abandoned. */
    char path3[64] = "/";
    memset(path3 + 1, 'a', 17);
    strcpy(path3 + 18, "bc");
    assert_int_equal(match(f, HL_METHOD_GET, path3), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h3);
    assert_int_equal(strlen(hl_params_value(&f->m.params, "tail")), 19);
    memset(path3 + 1, 'a', 20);
    strcpy(path3 + 21, "bc");
    assert_int_equal(match(f, HL_METHOD_GET, path3), HL_ROUTE_NOT_FOUND);

    /* The patterns still work on friendly input. */
    assert_int_equal(match(f, HL_METHOD_GET, "/aaa"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h1);
    assert_int_equal(match(f, HL_METHOD_GET, "/n/aaab"), HL_ROUTE_FOUND);
    assert_ptr_equal(f->m.handler, &h2);
    fx_free(f);
}

static void test_allow_string(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(hl_router_allow_string(HL_METHOD_ANY, buf, sizeof buf),
                        "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS");
    assert_string_equal(hl_router_allow_string(HL_METHOD_OPTIONS | HL_METHOD_GET, buf, sizeof buf),
                        "GET, OPTIONS");
    assert_string_equal(hl_router_allow_string(0, buf, sizeof buf), "");
    /* Bits past the known methods are ignored. */
    assert_string_equal(hl_router_allow_string(0xffffff00u | HL_METHOD_PUT, buf, sizeof buf),
                        "PUT");

    /* Truncation keeps whole names and never writes past len. */
    static const struct {
        size_t len;
        const char *want;
    } cut[] = {{1, ""}, {3, ""}, {4, "GET"}, {9, "GET"}, {10, "GET, HEAD"},
               {15, "GET, HEAD"}, {16, "GET, HEAD, POST"}};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        memset(buf, '#', sizeof buf);
        const char *s = hl_router_allow_string(HL_METHOD_ANY, buf, cut[i].len);
        assert_ptr_equal(s, buf);
        assert_string_equal(s, cut[i].want);
        for (size_t j = cut[i].len; j < sizeof buf; j++)
            assert_int_equal(buf[j], '#');
    }
    memset(buf, '#', sizeof buf);
    assert_string_equal(hl_router_allow_string(HL_METHOD_ANY, buf, 0), "");
    assert_int_equal(buf[0], '#');
    assert_string_equal(hl_router_allow_string(HL_METHOD_ANY, NULL, 10), "");
}

static void test_method_from_name(void **state)
{
    (void)state;
    assert_int_equal(hl_router_method_from_name("GET"), HL_METHOD_GET);
    assert_int_equal(hl_router_method_from_name("HEAD"), HL_METHOD_HEAD);
    assert_int_equal(hl_router_method_from_name("POST"), HL_METHOD_POST);
    assert_int_equal(hl_router_method_from_name("PUT"), HL_METHOD_PUT);
    assert_int_equal(hl_router_method_from_name("DELETE"), HL_METHOD_DELETE);
    assert_int_equal(hl_router_method_from_name("PATCH"), HL_METHOD_PATCH);
    assert_int_equal(hl_router_method_from_name("OPTIONS"), HL_METHOD_OPTIONS);
    assert_int_equal(hl_router_method_from_name("get"), 0);
    assert_int_equal(hl_router_method_from_name("GETS"), 0);
    assert_int_equal(hl_router_method_from_name("GE"), 0);
    assert_int_equal(hl_router_method_from_name(" GET"), 0);
    assert_int_equal(hl_router_method_from_name("CONNECT"), 0);
    assert_int_equal(hl_router_method_from_name(""), 0);
    assert_int_equal(hl_router_method_from_name(NULL), 0);

    /* Round trip through the Allow string. */
    char buf[16];
    for (unsigned bit = 1; bit <= HL_METHOD_OPTIONS; bit <<= 1)
        assert_int_equal(hl_router_method_from_name(hl_router_allow_string(bit, buf, sizeof buf)),
                         bit);
}

static void test_many_routes(void **state)
{
    (void)state;
    fixture *f = fx_new();
    enum { N = 500 };
    static int ids[N];
    char pat[64], path[64];
    for (int i = 0; i < N; i++) {
        ids[i] = i;
        hl_err err = {0};
        /* A mix of literal, captured and alternation (no usable prefix) patterns. */
        if (i % 3 == 0)
            snprintf(pat, sizeof pat, "/lit%d", i);
        else if (i % 3 == 1)
            snprintf(pat, sizeof pat, "/r%d/(?<id>[0-9]+)", i);
        else
            snprintf(pat, sizeof pat, "/a%d|/b%d/(?<x>[a-z]+)", i, i);
        assert_int_equal(hl_router_add(f->r, i % 2 ? HL_METHOD_POST : HL_METHOD_GET, pat, NULL,
                                       &ids[i], &ids[i], &err),
                         HL_OK);
    }
    assert_int_equal(hl_router_count(f->r), N);

    for (int i = 0; i < N; i++) {
        unsigned method = i % 2 ? HL_METHOD_POST : HL_METHOD_GET;
        hl_arena_reset(f->a);
        if (i % 3 == 0)
            snprintf(path, sizeof path, "/lit%d", i);
        else if (i % 3 == 1)
            snprintf(path, sizeof path, "/r%d/%d", i, i * 7);
        else
            snprintf(path, sizeof path, "/b%d/abc", i);
        assert_int_equal(match(f, method, path), HL_ROUTE_FOUND);
        assert_ptr_equal(f->m.ud, &ids[i]);
        if (i % 3 == 1) {
            char want[16];
            snprintf(want, sizeof want, "%d", i * 7);
            assert_string_equal(hl_params_value(&f->m.params, "id"), want);
        } else if (i % 3 == 2) {
            assert_string_equal(hl_params_value(&f->m.params, "x"), "abc");
        }
        /* The other method is a 405 naming this route's methods. */
        assert_int_equal(match(f, method == HL_METHOD_GET ? HL_METHOD_POST : HL_METHOD_PUT, path),
                         HL_ROUTE_METHOD_NOT_ALLOWED);
        assert_int_equal(f->m.allow, method == HL_METHOD_GET ? HL_METHOD_GET | HL_METHOD_HEAD
                                                             : HL_METHOD_POST);
    }
    assert_int_equal(match(f, HL_METHOD_GET, "/lit1000"), HL_ROUTE_NOT_FOUND);
    assert_int_equal(match(f, HL_METHOD_GET, "/lit3x"), HL_ROUTE_NOT_FOUND);
    fx_free(f);
}

static void test_arena_cap(void **state)
{
    (void)state;
    /* A capture too big for the request's arena gives no half-filled match. */
    fixture *f = fx_new();
    add(f, HL_METHOD_GET, "/t/(?<v>.*)", "t", &h1);
    hl_arena *small = hl_arena_new(256);
    assert_non_null(small);
    hl_arena_set_cap(small, 1024);
    char path[4096];
    memset(path, 'z', sizeof path);
    memcpy(path, "/t/", 3);
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, path, sizeof path, small, &f->m),
                     HL_ROUTE_NOT_FOUND);
    assert_null(f->m.handler);
    assert_int_equal(f->m.params.count, 0);
    assert_int_equal(hl_router_match(f->r, HL_METHOD_GET, path, 64, small, &f->m),
                     HL_ROUTE_FOUND);
    assert_int_equal(f->m.params.items[0].value_len, 61);
    hl_arena_free(small);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_routes),
        cmocka_unit_test(test_named_captures),
        cmocka_unit_test(test_captures_keep_text),
        cmocka_unit_test(test_first_match_wins),
        cmocka_unit_test(test_not_found_and_bad_args),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_head_via_get),
        cmocka_unit_test(test_add_rejects),
        cmocka_unit_test(test_prefix_shortcut_is_exact),
        cmocka_unit_test(test_hostile_paths),
        cmocka_unit_test(test_pathological_pattern),
        cmocka_unit_test(test_allow_string),
        cmocka_unit_test(test_method_from_name),
        cmocka_unit_test(test_many_routes),
        cmocka_unit_test(test_arena_cap),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
