/* Unit tests for core/form.c: percent-decoding, urlencoded, multipart and cookie parsing,
 * with hostile inputs (bad escapes, oversized and truncated bodies) and a seeded fuzz loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/form.h"

/* A string literal and its length, NULs included. */
#define LIT(s) s, sizeof(s) - 1

#define CT "multipart/form-data; boundary=XyZ"

static int setup(void **state)
{
    *state = hl_arena_new(0);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    hl_arena_free(*state);
    return 0;
}

/* Copies s into a heap block of exactly len bytes, so ASan flags any read past len. */
static char *exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    if (len)
        memcpy(p, s, len);
    return p;
}

static int parse_mp(hl_arena *a, const char *ct, const char *body, size_t len,
                    const hl_form_limits *lim, hl_params *p, hl_err *err)
{
    char *copy = exact(body, len);
    hl_err_clear(err);
    int rc = hl_form_parse_multipart(a, ct, copy, len, lim, p, err);
    free(copy);
    return rc;
}

/* ---------------------------------------------------------------- params */

static void test_params_add_copies(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    char name[8] = "k", value[8] = "v1";
    assert_int_equal(hl_params_add(a, &p, name, value, 2), HL_OK);
    strcpy(name, "X");
    strcpy(value, "zz");
    assert_string_equal(hl_params_value(&p, "k"), "v1");
    assert_null(hl_params_get(&p, "X"));

    assert_int_equal(hl_params_add(a, &p, "k", "v2", 2), HL_OK);
    assert_int_equal(hl_params_add(a, &p, "bin", "a\0b", 3), HL_OK);
    assert_int_equal(hl_params_add(a, &p, "empty", NULL, 0), HL_OK);
    assert_string_equal(hl_params_value(&p, "k"), "v1"); /* first one wins */
    const hl_param *bin = hl_params_get(&p, "bin");
    assert_non_null(bin);
    assert_int_equal(bin->value_len, 3);
    assert_memory_equal(bin->value, "a\0b\0", 4);
    assert_null(bin->filename);
    assert_null(bin->content_type);
    assert_string_equal(hl_params_value(&p, "empty"), "");

    assert_int_equal(hl_params_add(a, &p, NULL, "x", 1), HL_EINVAL);
    assert_int_equal(hl_params_add(a, &p, "n", NULL, 3), HL_EINVAL);
    assert_int_equal(p.count, 4);
    assert_null(hl_params_get(NULL, "k"));
    assert_null(hl_params_get(&p, NULL));
    assert_null(hl_params_value(&p, "missing"));
}

static void test_params_grow(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    char name[16], value[16];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "n%d", i);
        snprintf(value, sizeof value, "v%d", i);
        assert_int_equal(hl_params_add(a, &p, name, value, strlen(value)), HL_OK);
    }
    assert_int_equal(p.count, 300);
    assert_true(p.cap >= 300);
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "n%d", i);
        snprintf(value, sizeof value, "v%d", i);
        assert_string_equal(p.items[i].name, name);
        assert_string_equal(hl_params_value(&p, name), value);
    }
}

/* ---------------------------------------------------------------- percent-decoding */

static void test_decode_ok(void **state)
{
    hl_arena *a = *state;
    hl_err err;
    char *out;
    size_t n;
    const char in[] = "a%20b%2fc%2F+d%C3%A9";
    char *s = exact(in, sizeof in - 1);
    assert_int_equal(hl_form_percent_decode(a, s, sizeof in - 1, 1, &out, &n, &err), HL_OK);
    assert_string_equal(out, "a b/c/ d\xc3\xa9");
    assert_int_equal(n, strlen(out));
    assert_int_equal(hl_form_percent_decode(a, s, sizeof in - 1, 0, &out, &n, &err), HL_OK);
    assert_string_equal(out, "a b/c/+d\xc3\xa9");
    /* len stops the decoder before the end of the buffer. */
    assert_int_equal(hl_form_percent_decode(a, s, 4, 1, &out, &n, &err), HL_OK);
    assert_string_equal(out, "a ");
    assert_int_equal(n, 2);
    free(s);
}

static void test_decode_empty(void **state)
{
    hl_arena *a = *state;
    hl_err err;
    char *out = NULL;
    size_t n = 99;
    assert_int_equal(hl_form_percent_decode(a, NULL, 0, 1, &out, &n, &err), HL_OK);
    assert_string_equal(out, "");
    assert_int_equal(n, 0);
    assert_int_equal(hl_form_percent_decode(a, "", 0, 0, &out, NULL, &err), HL_OK);
    assert_string_equal(out, "");
    hl_err_clear(&err);
    assert_int_equal(hl_form_percent_decode(a, NULL, 3, 1, &out, &n, &err), HL_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(hl_form_percent_decode(a, "x", 1, 1, NULL, &n, NULL), HL_EINVAL);
}

static void expect_decode_error(hl_arena *a, const char *in, size_t len, const char *needle)
{
    hl_err err;
    char *out = NULL;
    size_t n = 0;
    char *s = exact(in, len);
    hl_err_clear(&err);
    assert_int_equal(hl_form_percent_decode(a, s, len, 1, &out, &n, &err), HL_EINVAL);
    assert_int_equal(err.code, HL_EINVAL);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    free(s);
}

static void test_decode_bad(void **state)
{
    hl_arena *a = *state;
    expect_decode_error(a, LIT("%"), "bad percent-escape at byte 0");
    expect_decode_error(a, LIT("%4"), "bad percent-escape at byte 0");
    expect_decode_error(a, LIT("%zz"), "bad percent-escape at byte 0");
    expect_decode_error(a, LIT("abc%4g"), "bad percent-escape at byte 3");
    expect_decode_error(a, LIT("abcdefghijkl%"), "bad percent-escape at byte 12");
    expect_decode_error(a, LIT("ok%2"), "byte 2");
    expect_decode_error(a, LIT("%g1"), "byte 0");
    expect_decode_error(a, LIT("a%00b"), "NUL");
    expect_decode_error(a, LIT("a\0b"), "NUL byte at byte 1");
    /* "%4" at the end of the slice must not peek at the byte after it. */
    expect_decode_error(a, "%41", 2, "byte 0");
    /* The error path passes no err at all: must not crash. */
    char *out;
    assert_int_equal(hl_form_percent_decode(a, "%", 1, 0, &out, NULL, NULL), HL_EINVAL);
}

/* ---------------------------------------------------------------- urlencoded */

static int parse_ue(hl_arena *a, const char *s, size_t len, const hl_form_limits *lim,
                    hl_params *p, hl_err *err)
{
    char *copy = exact(s, len);
    hl_err_clear(err);
    int rc = hl_form_parse_urlencoded(a, copy, len, lim, p, err);
    free(copy);
    return rc;
}

static void test_urlencoded_ok(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    assert_int_equal(parse_ue(a, LIT("a=1&b=x%20y&c&&d=&a=2&=skip&e+f=g+h%26i=j&k==v"), NULL,
                              &p, &err), HL_OK);
    assert_int_equal(p.count, 7);
    const char *names[] = {"a", "b", "c", "d", "a", "e f", "k"};
    const char *values[] = {"1", "x y", "", "", "2", "g h&i=j", "=v"};
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(p.items[i].name, names[i]);
        assert_string_equal(p.items[i].value, values[i]);
        assert_int_equal(p.items[i].value_len, strlen(values[i]));
        assert_null(p.items[i].filename);
        assert_null(p.items[i].content_type);
    }
    assert_string_equal(hl_params_value(&p, "a"), "1");
    assert_null(hl_params_get(&p, ""));

    /* Appends to what is already there; len bounds the input. */
    assert_int_equal(parse_ue(a, "z=9&y=8", 3, NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 8);
    assert_string_equal(hl_params_value(&p, "z"), "9");
    assert_null(hl_params_get(&p, "y"));
}

static void test_urlencoded_empty(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    assert_int_equal(hl_form_parse_urlencoded(a, NULL, 0, NULL, &p, &err), HL_OK);
    assert_int_equal(parse_ue(a, LIT("&&&"), NULL, &p, &err), HL_OK);
    assert_int_equal(parse_ue(a, LIT("=&=x&&="), NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 0);
    hl_err_clear(&err);
    assert_int_equal(hl_form_parse_urlencoded(a, NULL, 5, NULL, &p, &err), HL_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(hl_form_parse_urlencoded(a, "a=1", 3, NULL, NULL, NULL), HL_EINVAL);
}

static void test_urlencoded_bad(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    assert_int_equal(parse_ue(a, LIT("ok=1"), NULL, &p, &err), HL_OK);
    assert_int_equal(parse_ue(a, LIT("a=1&b=%zz"), NULL, &p, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "bad percent-escape at byte 6"));
    assert_int_equal(parse_ue(a, LIT("a=1&b%=2"), NULL, &p, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "byte 5"));
    assert_int_equal(parse_ue(a, LIT("a=1&b=%"), NULL, &p, &err), HL_EINVAL);
    assert_int_equal(parse_ue(a, LIT("a=%00"), NULL, &p, &err), HL_EINVAL);
    assert_int_equal(parse_ue(a, LIT("a%00=1"), NULL, &p, &err), HL_EINVAL);
    assert_int_equal(parse_ue(a, LIT("a=x\0y"), NULL, &p, &err), HL_EINVAL);
    /* Failed calls leave earlier results alone. */
    assert_int_equal(p.count, 1);
    assert_string_equal(hl_params_value(&p, "ok"), "1");
    assert_null(hl_params_get(&p, "a"));
}

static char *repeat(const char *unit, size_t times, size_t *len)
{
    size_t u = strlen(unit);
    char *s = malloc(u * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++)
        memcpy(s + i * u, unit, u);
    s[u * times] = '\0';
    *len = u * times;
    return s;
}

static void test_urlencoded_limits(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    size_t len;
    char *s = repeat("f=1&", 1000, &len);
    assert_int_equal(parse_ue(a, s, len, NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 1000);
    free(s);

    p.count = 0;
    s = repeat("f=1&", 1001, &len);
    assert_int_equal(parse_ue(a, s, len, NULL, &p, &err), HL_ETOOBIG);
    assert_int_equal(err.code, HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "1000"));
    assert_int_equal(p.count, 0);
    free(s);

    s = repeat("x=y&", 200000, &len);
    assert_int_equal(parse_ue(a, s, len, NULL, &p, &err), HL_ETOOBIG);
    free(s);

    hl_form_limits lim = {.max_fields = 5};
    assert_int_equal(parse_ue(a, LIT("a&b&c&d&e"), &lim, &p, &err), HL_OK);
    assert_int_equal(p.count, 5);
    p.count = 0;
    assert_int_equal(parse_ue(a, LIT("a&b&c&d&e&f"), &lim, &p, &err), HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "5"));
    assert_int_equal(p.count, 0);

    /* Empty pairs are free: a megabyte of '&' is no field at all. */
    s = repeat("&", 1 << 20, &len);
    assert_int_equal(parse_ue(a, s, len, &lim, &p, &err), HL_OK);
    assert_int_equal(p.count, 0);
    free(s);
}

/* ---------------------------------------------------------------- multipart */

static void test_multipart_ok(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    const char body[] =
        "This is the preamble.\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"title\"\r\n"
        "\r\n"
        "Hello, world\r\n"
        "--XyZ  \t\r\n" /* transport padding */
        "content-disposition:form-data;name=plain ; filename*=UTF-8''x\r\n"
        "X-Other: ignored\r\n"
        "\r\n"
        "\r\n"
        "--XyZ\r\n"
        "CONTENT-TYPE:   image/png  \r\n"
        "Content-Disposition: FORM-DATA; name=\"pic\"; filename=\"cat.png\"\r\n"
        "\r\n"
        "\x89PNG\r\n\x1a\n"
        "\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"title\"\r\n"
        "\r\n"
        "\r\n"
        "--XyZ--\r\n"
        "epilogue, ignored\r\n--XyZ\r\ngarbage";
    assert_int_equal(parse_mp(a, CT, LIT(body), NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 4);

    assert_string_equal(p.items[0].name, "title");
    assert_string_equal(p.items[0].value, "Hello, world");
    assert_int_equal(p.items[0].value_len, 12);
    assert_null(p.items[0].filename);
    assert_string_equal(p.items[0].content_type, "text/plain");

    assert_string_equal(p.items[1].name, "plain");
    assert_string_equal(p.items[1].value, "");
    assert_int_equal(p.items[1].value_len, 0);
    assert_null(p.items[1].filename);

    const hl_param *pic = hl_params_get(&p, "pic");
    assert_non_null(pic);
    assert_string_equal(pic->filename, "cat.png");
    assert_string_equal(pic->content_type, "image/png");
    assert_int_equal(pic->value_len, 8);
    assert_memory_equal(pic->value, "\x89PNG\r\n\x1a\n", 8);

    assert_string_equal(p.items[3].value, "");
    assert_int_equal(p.items[3].value_len, 0);
    assert_string_equal(hl_params_value(&p, "title"), "Hello, world");
}

static void test_multipart_content_type(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    const char body[] = "--a b'c\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--a b'c--";
    assert_int_equal(parse_mp(a, "Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'c\"",
                              LIT(body), NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 1);
    assert_string_equal(hl_params_value(&p, "x"), "1");

    /* 70 characters is the most RFC 2046 allows. */
    char ct[200], b70[71], body70[300];
    memset(b70, 'b', 70);
    b70[70] = '\0';
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%s", b70);
    int n = snprintf(body70, sizeof body70,
                     "--%s\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\nv\r\n--%s--",
                     b70, b70);
    p.count = 0;
    assert_int_equal(parse_mp(a, ct, body70, (size_t)n, NULL, &p, &err), HL_OK);
    assert_string_equal(hl_params_value(&p, "k"), "v");

    /* An empty multipart body with only the close delimiter holds no fields. */
    p.count = 0;
    assert_int_equal(parse_mp(a, CT, LIT("--XyZ--"), NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 0);
}

static void expect_mp_error(hl_arena *a, const char *ct, const char *body, size_t len,
                            const hl_form_limits *lim, int code, const char *needle)
{
    hl_params p = {0};
    hl_err err;
    assert_int_equal(hl_params_add(a, &p, "before", "1", 1), HL_OK);
    int rc = parse_mp(a, ct, body, len, lim, &p, &err);
    if (rc != code)
        fail_msg("expected %d, got %d (%s) for body '%.*s'", code, rc, err.msg, (int)len, body);
    assert_int_equal(err.code, code);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_int_equal(p.count, 1); /* rolled back */
}

#define OKPART "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"

static void test_multipart_bad_content_type(void **state)
{
    hl_arena *a = *state;
    const char body[] = OKPART "--XyZ--";
    expect_mp_error(a, NULL, LIT(body), NULL, HL_EINVAL, "Content-Type");
    expect_mp_error(a, "text/plain; boundary=XyZ", LIT(body), NULL, HL_EINVAL,
                    "not multipart/form-data");
    expect_mp_error(a, "multipart/form-data", LIT(body), NULL, HL_EINVAL, "no multipart boundary");
    expect_mp_error(a, "multipart/form-data; charset=utf-8", LIT(body), NULL, HL_EINVAL,
                    "no multipart boundary");
    expect_mp_error(a, "multipart/form-data; boundary=", LIT(body), NULL, HL_EINVAL,
                    "no multipart boundary");
    expect_mp_error(a, "multipart/form-data; boundary=\"\"", LIT(body), NULL, HL_EINVAL,
                    "no multipart boundary");
    expect_mp_error(a, "multipart/form-data; boundary=\"XyZ", LIT(body), NULL, HL_EINVAL,
                    "malformed");
    expect_mp_error(a, "multipart/form-data; boundary", LIT(body), NULL, HL_EINVAL,
                    "malformed");
    expect_mp_error(a, "multipart/form-data; boundary=XyZ; boundary=Q", LIT(body), NULL,
                    HL_EINVAL, "more than one boundary");
    expect_mp_error(a, "multipart/form-data; boundary=\"a\tb\"", LIT(body), NULL, HL_EINVAL,
                    "invalid character");
    expect_mp_error(a, "multipart/form-data; boundary=\"ab \"", LIT(body), NULL, HL_EINVAL,
                    "invalid character");

    char ct[200];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%071d", 0);
    expect_mp_error(a, ct, LIT(body), NULL, HL_EINVAL, "longer than 70");
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=\"%0100d\"", 0);
    expect_mp_error(a, ct, LIT(body), NULL, HL_EINVAL, "longer than 70");
}

static void test_multipart_bad_body(void **state)
{
    hl_arena *a = *state;
    /* Boundary absent, truncated, or closing delimiter missing. */
    expect_mp_error(a, CT, NULL, 0, NULL, HL_EINVAL, "does not contain its boundary");
    expect_mp_error(a, CT, LIT("no boundary here"), NULL, HL_EINVAL, "does not contain");
    expect_mp_error(a, CT, LIT("--XyZ"), NULL, HL_EINVAL, "truncated");
    expect_mp_error(a, CT, LIT("--XyZ\r\n"), NULL, HL_EINVAL, "truncated");
    expect_mp_error(a, CT, LIT(OKPART), NULL, HL_EINVAL, "truncated");
    expect_mp_error(a, CT, LIT(OKPART "--XyZ"), NULL, HL_EINVAL, "truncated");
    expect_mp_error(a, CT, LIT(OKPART "--Xy"), NULL, HL_EINVAL, "truncated");
    expect_mp_error(a, CT, LIT("--XyZ\r\nContent-Disposition: form-da"), NULL, HL_EINVAL,
                    "truncated");
    /* A boundary line followed by junk, e.g. a longer string sharing the prefix. */
    expect_mp_error(a, CT, LIT(OKPART "--XyZW\r\n"), NULL, HL_EINVAL, "malformed boundary line");
    expect_mp_error(a, CT, LIT("--XyZ junk\r\n"), NULL, HL_EINVAL, "malformed boundary line");
    /* Header section problems. */
    expect_mp_error(a, CT, LIT("--XyZ\r\nContent-Disposition: form-data; name=a\r\n1\r\n--XyZ--"),
                    NULL, HL_EINVAL, "blank line");
    expect_mp_error(a, CT, LIT("--XyZ\r\n\r\n--XyZ--"), NULL, HL_EINVAL, "blank line");
    expect_mp_error(a, CT, LIT("--XyZ\r\n\r\nvalue\r\n--XyZ--"), NULL, HL_EINVAL,
                    "missing Content-Disposition");
    expect_mp_error(a, CT, LIT("--XyZ\r\nContent-Type: text/plain\r\n\r\nv\r\n--XyZ--"), NULL,
                    HL_EINVAL, "missing Content-Disposition");
    expect_mp_error(a, CT, LIT("--XyZ\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "missing field name");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "missing field name");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; filename=a\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "missing field name");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "not form-data");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "malformed Content-Disposition");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=a; name=b\r\n\r\n"
                        "v\r\n--XyZ--"), NULL, HL_EINVAL, "repeated 'name'");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
                        "Content-Disposition: form-data; name=b\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "repeated Content-Disposition");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=a\r\nNoColon\r\n\r\n"
                        "v\r\n--XyZ--"), NULL, HL_EINVAL, "malformed header line");
    /* CR/LF smuggled into a header value. */
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
                        "Content-Type: text/html\rSet-Cookie: x=1\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "stray CR");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
                        "Content-Type: text/html\nSet-Cookie: x=1\r\n\r\nv\r\n--XyZ--"),
                    NULL, HL_EINVAL, "control character");
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=\"a\0b\"\r\n\r\n"
                        "v\r\n--XyZ--"), NULL, HL_EINVAL, "control character");
    /* One bad part spoils the whole body, including the good parts before it. */
    expect_mp_error(a, CT, LIT(OKPART "--XyZ\r\nX: y\r\n\r\nv\r\n--XyZ--"), NULL, HL_EINVAL,
                    "part 2");
}

static void test_multipart_header_limit(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    /* Headers of just under 8 KB are fine; over 8 KB are refused. */
    size_t cap = 20000;
    char *body = malloc(cap);
    assert_non_null(body);
    for (int over = 0; over <= 1; over++) {
        size_t filler = over ? 8200 : 8000;
        size_t n = (size_t)snprintf(body, cap,
                                    "--XyZ\r\nContent-Disposition: form-data; name=big\r\nX-Pad: ");
        memset(body + n, 'p', filler);
        n += filler;
        n += (size_t)snprintf(body + n, cap - n, "\r\n\r\nv\r\n--XyZ--\r\n");
        p.count = 0;
        int rc = parse_mp(a, CT, body, n, NULL, &p, &err);
        if (over) {
            assert_int_equal(rc, HL_EINVAL);
            assert_non_null(strstr(err.msg, "headers larger than 8192 bytes"));
        } else {
            assert_int_equal(rc, HL_OK);
            assert_string_equal(hl_params_value(&p, "big"), "v");
        }
    }
    /* A header section that never ends, in a large body. */
    size_t n = (size_t)snprintf(body, cap, "--XyZ\r\nX-Pad: ");
    memset(body + n, 'q', 15000);
    n += 15000;
    n += (size_t)snprintf(body + n, cap - n, "\r\n--XyZ--");
    expect_mp_error(a, CT, body, n, NULL, HL_EINVAL, "larger than 8192");
    free(body);
}

static void test_multipart_binary(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    /* File content holding NULs, CRLFs, and the delimiter minus its last character. */
    const char data[] = "\0\0\r\n\r\n--Xy\r\n-XyZ\n--XyZ\r--XyZ\0\r\n--xyz\r\n\xff--XyZ\r";
    size_t dlen = sizeof data - 1;
    char body[512];
    size_t n = (size_t)snprintf(body, sizeof body,
                                "--XyZ\r\nContent-Disposition: form-data; name=\"up\"; "
                                "filename=\"d.bin\"\r\nContent-Type: application/octet-stream"
                                "\r\n\r\n");
    memcpy(body + n, data, dlen);
    n += dlen;
    n += (size_t)snprintf(body + n, sizeof body - n, "\r\n--XyZ--");

    /* Guard the fixture itself: the real delimiter must not be in the data. */
    assert_null(memmem(data, dlen, "\r\n--XyZ", 7));
    assert_int_equal(parse_mp(a, CT, body, n, NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 1);
    assert_string_equal(p.items[0].filename, "d.bin");
    assert_string_equal(p.items[0].content_type, "application/octet-stream");
    assert_int_equal(p.items[0].value_len, dlen);
    assert_memory_equal(p.items[0].value, data, dlen);
    assert_int_equal(p.items[0].value[dlen], '\0');
}

static void test_multipart_binary_with_delim(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    /* Content holding "\r\n--XyZ" itself ends the part there; what follows must then be a
     * valid boundary line, so a stray "--XyZx" is an error rather than silently accepted. */
    expect_mp_error(a, CT,
                    LIT("--XyZ\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\n"
                        "ab\r\n--XyZx\r\ncd\r\n--XyZ--"), NULL, HL_EINVAL, "malformed boundary");
    /* "--XyZ" without the CRLF before it is content. */
    assert_int_equal(parse_mp(a, CT,
                              LIT("--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\n"
                                  "x--XyZ x--XyZ--\r\n--XyZ--"), NULL, &p, &err), HL_OK);
    assert_string_equal(hl_params_value(&p, "f"), "x--XyZ x--XyZ--");
    /* Right after the blank line, though, the header's CRLF makes it a real delimiter. */
    expect_mp_error(a, CT, LIT("--XyZ\r\nContent-Disposition: form-data; name=f\r\n\r\n"
                               "--XyZ x\r\n--XyZ--"), NULL, HL_EINVAL, "blank line");
}

static void test_multipart_names(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    const char body[] =
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"a\\\"b;c\"; filename=\"say \\\"hi\\\".txt\"\r\n"
        "\r\n"
        "1\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"win\"; filename=\"C:\\Users\\me\\x.jpg\"\r\n"
        "\r\n"
        "2\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"unix\"; filename=\"../../etc/passwd\"\r\n"
        "\r\n"
        "3\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"dots\"; filename=\"a/..\"\r\n"
        "\r\n"
        "4\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"none\"; filename=\"\"\r\n"
        "\r\n"
        "\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"bs\\\\\"; filename=\"dir\\\\f.txt\"\r\n"
        "\r\n"
        "6\r\n"
        "--XyZ\r\n"
        "Content-Disposition: form-data; name=\"\xc3\xa9t\xc3\xa9\"; filename*=UTF-8''x.txt\r\n"
        "\r\n"
        "7\r\n"
        "--XyZ--";
    assert_int_equal(parse_mp(a, CT, LIT(body), NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 7);
    assert_string_equal(p.items[0].name, "a\"b;c");
    assert_string_equal(p.items[0].filename, "say \"hi\".txt");
    assert_string_equal(p.items[0].content_type, "text/plain");
    assert_string_equal(p.items[1].filename, "x.jpg");
    assert_string_equal(p.items[2].filename, "passwd");
    assert_string_equal(p.items[3].filename, "");
    assert_string_equal(p.items[4].name, "none");
    assert_non_null(p.items[4].filename);
    assert_string_equal(p.items[4].filename, "");
    assert_int_equal(p.items[4].value_len, 0);
    assert_string_equal(p.items[5].name, "bs\\");
    assert_string_equal(p.items[5].filename, "f.txt");
    assert_string_equal(p.items[6].name, "\xc3\xa9t\xc3\xa9");
    assert_null(p.items[6].filename); /* filename* is ignored */
    assert_string_equal(hl_params_value(&p, "\xc3\xa9t\xc3\xa9"), "7");
}

static void test_multipart_limits(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    const char file10[] =
        "--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"dir/x.jpg\"\r\n\r\n"
        "0123456789\r\n--XyZ--";
    hl_form_limits lim = {.max_file_size = 10};
    assert_int_equal(parse_mp(a, CT, LIT(file10), &lim, &p, &err), HL_OK);
    assert_int_equal(p.items[0].value_len, 10);
    lim.max_file_size = 9;
    expect_mp_error(a, CT, LIT(file10), &lim, HL_ETOOBIG, "file 'x.jpg' is larger than 9 bytes");

    /* The size limit is for files only; text fields are bounded by the body size. */
    const char text[] = "--XyZ\r\nContent-Disposition: form-data; name=t\r\n\r\n"
                        "0123456789abcdef\r\n--XyZ--";
    p.count = 0;
    assert_int_equal(parse_mp(a, CT, LIT(text), &lim, &p, &err), HL_OK);

#define FILEPART(n) "--XyZ\r\nContent-Disposition: form-data; name=f; filename=" n "\r\n\r\nx\r\n"
    const char three[] = FILEPART("1") FILEPART("2") FILEPART("3") OKPART "--XyZ--";
    hl_form_limits two = {.max_files = 2};
    expect_mp_error(a, CT, LIT(three), &two, HL_ETOOBIG, "too many uploaded files");
    hl_form_limits fields3 = {.max_fields = 3};
    expect_mp_error(a, CT, LIT(three), &fields3, HL_ETOOBIG, "too many form fields");
    hl_form_limits fine = {.max_fields = 4, .max_files = 3, .max_file_size = 1};
    p.count = 0;
    assert_int_equal(parse_mp(a, CT, LIT(three), &fine, &p, &err), HL_OK);
    assert_int_equal(p.count, 4);

    /* Defaults: 20 files, 1000 fields. */
    size_t len;
    char *many = repeat(FILEPART("f"), 21, &len);
    char *body = malloc(len + 16);
    assert_non_null(body);
    memcpy(body, many, len);
    memcpy(body + len, "--XyZ--", 7);
    expect_mp_error(a, CT, body, len + 7, NULL, HL_ETOOBIG, "more than 20");
    p.count = 0;
    assert_int_equal(parse_mp(a, CT, body + strlen(FILEPART("f")), len + 7 - strlen(FILEPART("f")),
                              NULL, &p, &err), HL_OK);
    assert_int_equal(p.count, 20);
    free(many);
    free(body);

    many = repeat(OKPART, 1001, &len);
    body = malloc(len + 16);
    assert_non_null(body);
    memcpy(body, many, len);
    memcpy(body + len, "--XyZ--", 7);
    expect_mp_error(a, CT, body, len + 7, NULL, HL_ETOOBIG, "more than 1000");
    free(many);
    free(body);
}

/* Bodies built to make a naive scanner rescan: must finish quickly and parse correctly. */
static void test_multipart_hostile_scan(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    const char head[] = "--XyZ\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\n";
    const char *units[] = {"\r\n--Xy", "\r", "\r\n", "\r\n--XyZ--"};
    for (size_t u = 0; u < 4; u++) {
        size_t ulen = strlen(units[u]);
        size_t times = (2u << 20) / ulen;
        size_t n = sizeof head - 1 + times * ulen + 16;
        char *body = malloc(n);
        assert_non_null(body);
        size_t k = sizeof head - 1;
        memcpy(body, head, k);
        for (size_t i = 0; i < times; i++, k += ulen)
            memcpy(body + k, units[u], ulen);
        if (u == 3) {
            /* The first close delimiter ends the body at once. */
            p.count = 0;
            assert_int_equal(hl_form_parse_multipart(a, CT, body, k, NULL, &p, &err), HL_OK);
            assert_int_equal(p.count, 1);
            assert_int_equal(p.items[0].value_len, 0);
        } else {
            /* No closing delimiter: truncated, after one linear scan. */
            hl_err_clear(&err);
            assert_int_equal(hl_form_parse_multipart(a, CT, body, k, NULL, &p, &err), HL_EINVAL);
            assert_non_null(strstr(err.msg, "truncated"));
            memcpy(body + k, "\r\n--XyZ--", 9);
            p.count = 0;
            assert_int_equal(hl_form_parse_multipart(a, CT, body, k + 9, NULL, &p, &err), HL_OK);
            assert_int_equal(p.items[0].value_len, times * ulen);
        }
        free(body);
    }
}

/* ---------------------------------------------------------------- cookies */

static void test_cookies_ok(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    assert_int_equal(hl_form_parse_cookies(a, "a=1; b=2", &p, &err), HL_OK);
    assert_int_equal(p.count, 2);
    assert_string_equal(hl_params_value(&p, "a"), "1");
    assert_string_equal(hl_params_value(&p, "b"), "2");

    p.count = 0;
    assert_int_equal(hl_form_parse_cookies(a,
        " \tsid = \"abc def\" ;;noeq; =anon;  e=;q=\"\";\"x\"=y; t=a=b ;p=%20+; one=\"; "
        "tab\t=\tv\t", &p, &err), HL_OK);
    const char *names[] = {"sid", "e", "q", "\"x\"", "t", "p", "one", "tab"};
    const char *values[] = {"abc def", "", "", "y", "a=b", "%20+", "\"", "v"};
    assert_int_equal(p.count, 8);
    for (size_t i = 0; i < 8; i++) {
        assert_string_equal(p.items[i].name, names[i]);
        assert_string_equal(p.items[i].value, values[i]);
        assert_int_equal(p.items[i].value_len, strlen(values[i]));
        assert_null(p.items[i].filename);
    }
}

static void test_cookies_empty(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    assert_int_equal(hl_form_parse_cookies(a, NULL, &p, &err), HL_OK);
    assert_int_equal(hl_form_parse_cookies(a, "", &p, &err), HL_OK);
    assert_int_equal(hl_form_parse_cookies(a, " ; ;;\t", &p, &err), HL_OK);
    assert_int_equal(hl_form_parse_cookies(a, "novalue; =x", &p, &err), HL_OK);
    assert_int_equal(p.count, 0);
    hl_err_clear(&err);
    assert_int_equal(hl_form_parse_cookies(a, "a=1", NULL, &err), HL_EINVAL);
    assert_true(err.msg[0] != '\0');
}

static void test_cookies_many(void **state)
{
    hl_arena *a = *state;
    hl_params p = {0};
    hl_err err;
    size_t cap = 150 * 16, n = 0;
    char *h = malloc(cap);
    assert_non_null(h);
    for (int i = 0; i < 150; i++)
        n += (size_t)snprintf(h + n, cap - n, "c%d=%d; ", i, i);
    assert_int_equal(hl_form_parse_cookies(a, h, &p, &err), HL_OK);
    assert_int_equal(p.count, 100);
    assert_string_equal(p.items[0].name, "c0");
    assert_string_equal(p.items[99].name, "c99");
    assert_string_equal(p.items[99].value, "99");
    assert_null(hl_params_get(&p, "c100"));
    free(h);

    /* Skipped junk does not count against the cap, and costs only a linear scan. */
    size_t len;
    char *junk = repeat("x;", 100000, &len);
    char *h2 = malloc(len + 8);
    assert_non_null(h2);
    memcpy(h2, junk, len);
    strcpy(h2 + len, "k=v");
    p.count = 0;
    assert_int_equal(hl_form_parse_cookies(a, h2, &p, &err), HL_OK);
    assert_int_equal(p.count, 1);
    assert_string_equal(hl_params_value(&p, "k"), "v");
    free(junk);
    free(h2);
}

/* ---------------------------------------------------------------- fuzz */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t xorshift(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static size_t rnd(size_t n) { return n ? (size_t)(xorshift() % n) : 0; }

static const struct {
    const char *s;
    size_t n;
} seeds[] = {
    {LIT("a=1&b=x%20y&c&&d=%41%42+e&=x")},
    {LIT("sid=\"abc\"; theme=dark; x; =y; t=a=b")},
    {LIT("--XyZ\r\nContent-Disposition: form-data; name=\"a\\\"b\"\r\n\r\nhello\r\n"
         "--XyZ\r\nContent-Disposition: form-data; name=f; filename=\"C:\\x\\y.png\"\r\n"
         "Content-Type: image/png\r\n\r\n\x89PNG\0\r\n--Xy\r\n\r\n--XyZ--\r\n")},
    {LIT("preamble\r\n--XyZ \r\ncontent-disposition: form-data; name=z\r\n\r\n\r\n--XyZ--")},
};

static const char interesting[] = "%&=+;\"\\\r\n-:XyZ0aF \t\0/";

/* Produces either random bytes biased towards syntax characters or a mutated seed. */
static size_t fuzz_input(char *buf, size_t cap)
{
    size_t n;
    if (rnd(3) == 0) {
        n = rnd(cap);
        for (size_t i = 0; i < n; i++)
            buf[i] = rnd(2) ? interesting[rnd(sizeof interesting - 1)] : (char)rnd(256);
        return n;
    }
    size_t which = rnd(sizeof seeds / sizeof *seeds);
    n = seeds[which].n;
    memcpy(buf, seeds[which].s, n);
    for (size_t m = rnd(8); m > 0; m--) {
        size_t at = rnd(n + 1);
        switch (rnd(4)) {
        case 0: /* flip a byte */
            if (n)
                buf[rnd(n)] = rnd(2) ? interesting[rnd(sizeof interesting - 1)] : (char)rnd(256);
            break;
        case 1: /* delete a run */
            if (at < n) {
                size_t k = rnd(n - at) + 1;
                memmove(buf + at, buf + at + k, n - at - k);
                n -= k;
            }
            break;
        case 2: /* insert a byte */
            if (n < cap) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = interesting[rnd(sizeof interesting - 1)];
                n++;
            }
            break;
        default: /* truncate */
            n = at;
            break;
        }
    }
    return n;
}

static void check_params(const hl_params *p, int names_nonempty)
{
    for (size_t i = 0; i < p->count; i++) {
        assert_non_null(p->items[i].name);
        assert_non_null(p->items[i].value);
        assert_int_equal(p->items[i].value[p->items[i].value_len], '\0');
        if (names_nonempty)
            assert_true(p->items[i].name[0] != '\0');
    }
}

static void check_rc(int rc, const hl_err *err)
{
    if (rc != HL_OK && !(rc < 0 && err->msg[0] != '\0' && err->code == rc))
        fail_msg("parser returned %d with message '%s'", rc, err->msg);
}

static void test_fuzz(void **state)
{
    (void)state;
    enum { CAP = 600, ROUNDS = 2000 };
    char buf[CAP];
    const char *cts[] = {CT, "multipart/form-data; boundary=\"XyZ\"", "multipart/form-data",
                         "multipart/form-data; boundary=X"};
    size_t ok = 0;
    for (int round = 0; round < ROUNDS; round++) {
        size_t n = fuzz_input(buf, CAP);
        char *in = exact(buf, n);
        hl_arena *a = hl_arena_new(512);
        assert_non_null(a);
        if (round % 10 == 9)
            hl_arena_set_cap(a, rnd(2048)); /* exercise the out-of-memory paths too */
        hl_err err;
        int rc;

        hl_params p = {0};
        char *out = NULL;
        size_t out_len = 0;
        hl_err_clear(&err);
        rc = hl_form_percent_decode(a, in, n, (int)rnd(2), &out, &out_len, &err);
        check_rc(rc, &err);
        if (rc == HL_OK) {
            assert_int_equal(out[out_len], '\0');
            assert_int_equal(strlen(out), out_len);
        }

        hl_err_clear(&err);
        rc = hl_form_parse_urlencoded(a, in, n, NULL, &p, &err);
        check_rc(rc, &err);
        check_params(&p, 1);
        ok += rc == HL_OK;

        /* A mutated Content-Type now and then, built from the same bytes. */
        char ct[128];
        const char *ctp = cts[rnd(4)];
        if (rnd(4) == 0) {
            size_t k = n < sizeof ct - 1 ? n : sizeof ct - 1;
            memcpy(ct, in, k);
            ct[k] = '\0';
            ctp = ct;
        }
        p = (hl_params){0};
        hl_form_limits lim = {.max_fields = rnd(4), .max_file_size = rnd(8), .max_files = rnd(3)};
        hl_err_clear(&err);
        rc = hl_form_parse_multipart(a, ctp, in, n, rnd(2) ? &lim : NULL, &p, &err);
        check_rc(rc, &err);
        check_params(&p, 1);
        if (rc != HL_OK)
            assert_int_equal(p.count, 0);
        ok += rc == HL_OK;

        char *cookie = malloc(n + 1);
        assert_non_null(cookie);
        memcpy(cookie, in, n);
        cookie[n] = '\0';
        p = (hl_params){0};
        hl_err_clear(&err);
        rc = hl_form_parse_cookies(a, cookie, &p, &err);
        check_rc(rc, &err);
        check_params(&p, 1);
        assert_true(p.count <= 100);
        free(cookie);

        hl_arena_free(a);
        free(in);
    }
    /* The mutated seeds must still parse sometimes, or the loop tests only error paths. */
    assert_true(ok > ROUNDS / 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_params_add_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_params_grow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decode_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urlencoded_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urlencoded_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urlencoded_bad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_urlencoded_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_content_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_bad_content_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_bad_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_header_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_binary_with_delim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipart_hostile_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cookies_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cookies_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cookies_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz, setup, teardown),
    };
    return cmocka_run_group_tests_name("form", tests, NULL, NULL);
}
