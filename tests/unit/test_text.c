/* Unit tests for the SDK's text and formatting helpers (core/text.c, api->format_*) and for
 * the parity of the C and Lua APIs: include/halle/plugin.h is parsed, and every member of
 * struct halle_api must have a Lua twin installed in the halle table, or an exemption with a
 * reason, in core/luaplugin.c's one list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/host.h"
#include "core/text.h"

#define SRCDIR_DEFAULT "/work/main"
#define NNBSP "\xe2\x80\xaf"
#define NBSP "\xc2\xa0"
#define EURO "\xe2\x82\xac"

static void test_valid(void **state)
{
    (void)state;
    assert_int_equal(hl_text_chars("Épeautre", 100, 0), 8);
    assert_int_equal(hl_text_chars("", 100, 0), 0);
    assert_int_equal(hl_text_chars("abc", 2, 0), -1);                 /* too many bytes */
    assert_int_equal(hl_text_chars("a\nb", 10, 0), -1);               /* newline, one line */
    assert_int_equal(hl_text_chars("a\nb\tc", 10, 1), 5);             /* allowed in multiline */
    assert_int_equal(hl_text_chars("a\x01" "b", 10, 1), -1);          /* control */
    assert_int_equal(hl_text_chars("a\x7f", 10, 1), -1);              /* DEL */
    assert_int_equal(hl_text_chars("\xc2\x85", 10, 1), -1);           /* C1 control (NEL) */
    assert_int_equal(hl_text_chars("\xc0\xaf", 10, 0), -1);           /* overlong '/' */
    assert_int_equal(hl_text_chars("\xed\xa0\x80", 10, 0), -1);       /* surrogate */
    assert_int_equal(hl_text_chars("\xf4\x90\x80\x80", 10, 0), -1);   /* past U+10FFFF */
    assert_int_equal(hl_text_chars("\xe2\x82", 10, 0), -1);           /* cut sequence */
    assert_int_equal(hl_text_chars(NULL, 10, 0), -1);
}

static void test_fold(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(hl_text_fold("Épeautre", out, sizeof out), 8);
    assert_string_equal(out, "epeautre");
    hl_text_fold("  Œufs   de  CAILLE" NBSP "à la  Ferme ", out, sizeof out);
    assert_string_equal(out, "oeufs de caille a la ferme");
    hl_text_fold("Crème brûlée, ÇA, Ÿ, ñ, æ, ß", out, sizeof out);
    assert_string_equal(out, "creme brulee, ca, y, n, ae, ss");
    hl_text_fold("Ελληνικά", out, sizeof out); /* other letters kept as they are */
    assert_string_equal(out, "Ελληνικά");
    hl_text_fold("ééééé", out, 4); /* cut on a character boundary */
    assert_string_equal(out, "eee");
    char small[4];
    hl_text_fold("日本", small, sizeof small); /* 3-byte letters: only one fits */
    assert_string_equal(small, "日");
    hl_text_fold("a\xff" "b", out, sizeof out); /* bytes that are not UTF-8 are dropped */
    assert_string_equal(out, "ab");
}

static void test_like(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(hl_text_like("Épeautre", out, sizeof out), 0);
    assert_string_equal(out, "%epeautre%");
    assert_int_equal(hl_text_like("100%_\\x", out, sizeof out), 0);
    assert_string_equal(out, "%100\\%\\_\\\\x%");
    assert_int_equal(hl_text_like("   ", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(hl_text_like("abcdefgh", out, 8), -1);
    assert_string_equal(out, "");
}

static void test_paginate(void **state)
{
    (void)state;
    json_t *p = hl_text_paginate(3, 10, 95, "/groups?q=pain");
    assert_non_null(p);
    assert_int_equal(json_integer_value(json_object_get(p, "pages")), 10);
    assert_int_equal(json_integer_value(json_object_get(p, "offset")), 20);
    assert_int_equal(json_integer_value(json_object_get(p, "prev")), 2);
    assert_int_equal(json_integer_value(json_object_get(p, "next")), 4);
    assert_string_equal(json_string_value(json_object_get(p, "next_url")), "/groups?q=pain&page=4");
    json_t *links = json_object_get(p, "links");
    assert_int_equal(json_array_size(links), 9);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(links, 0), "page")), 1);
    assert_true(json_is_true(json_object_get(json_array_get(links, 2), "current")));
    json_decref(p);
    p = hl_text_paginate(99, 10, 95, "/groups"); /* clamped to the last page */
    assert_int_equal(json_integer_value(json_object_get(p, "page")), 10);
    assert_int_equal(json_integer_value(json_object_get(p, "offset")), 90);
    assert_null(json_object_get(p, "next"));
    assert_string_equal(json_string_value(json_object_get(p, "prev_url")), "/groups?page=9");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(p, "links"), 0), "page")), 2);
    json_decref(p);
    p = hl_text_paginate(0, 10, 0, NULL); /* nothing: one empty page */
    assert_int_equal(json_integer_value(json_object_get(p, "pages")), 1);
    assert_int_equal(json_integer_value(json_object_get(p, "page")), 1);
    json_decref(p);
    assert_null(hl_text_paginate(1, 0, 10, ""));
}

static void test_format(void **state)
{
    (void)state;
    const halle_api *api = hl_host_api();
    char buf[96];
    assert_int_equal(api->format_price("fr", 1250, NULL, buf, sizeof buf), 0);
    assert_string_equal(buf, "12,50" NBSP EURO);
    assert_int_equal(api->format_price("en", 123450, "EUR", buf, sizeof buf), 0);
    assert_string_equal(buf, EURO "1,234.50");
    assert_int_equal(api->format_number("fr", 1234.5, 1, buf, sizeof buf), 0);
    assert_string_equal(buf, "1" NNBSP "234,5");
    assert_int_equal(api->format_number("en", 1234.5, 2, buf, sizeof buf), 0);
    assert_string_equal(buf, "1,234.50");
    /* 2026-11-25 12:00 UTC */
    assert_int_equal(api->format_date("fr", 1795608000, buf, sizeof buf), 0);
    assert_string_equal(buf, "mercredi 25 novembre 2026");
    assert_int_equal(api->format_date("en", 1795608000, buf, sizeof buf), 0);
    assert_string_equal(buf, "Wednesday, 25 November 2026");
    assert_int_not_equal(api->format_date("en", 1795608000, buf, 5), 0);
    assert_string_equal(buf, "");
    assert_int_equal(api->text_valid("Pain", 10, 0), 4);
    assert_int_equal(api->fold("ÉTÉ", buf, sizeof buf), 3);
    assert_string_equal(buf, "ete");
}

/* The member names of struct halle_api, in order, parsed from the header: a function
 * pointer "(*name)(" or a data field "type name;". */
static size_t api_members(char names[][64], size_t max)
{
    const char *dir = getenv("HALLE_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/include/halle/plugin.h", dir && *dir ? dir : SRCDIR_DEFAULT);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *start = strstr(text, "typedef struct halle_api {"), *end = strstr(text, "} halle_api;");
    assert_non_null(start);
    assert_non_null(end);
    *end = '\0';
    size_t count = 0;
    int in_comment = 0, continued = 0;
    for (char *line = strtok(start + strlen("typedef struct halle_api {"), "\n"); line; line = strtok(NULL, "\n")) {
        char *s = line;
        while (*s == ' ')
            s++;
        if (in_comment) {
            if (strstr(s, "*/"))
                in_comment = 0;
            continue;
        }
        if (!strncmp(s, "/*", 2)) {
            in_comment = !strstr(s, "*/");
            continue;
        }
        char *tail = strstr(s, "/*"); /* a comment after the declaration */
        if (tail)
            *tail = '\0';
        if (!*s)
            continue;
        int was_continued = continued;
        continued = !strchr(s, ';'); /* the declaration goes on at the next line */
        if (was_continued)
            continue;
        char *fp = strstr(s, "(*");
        char name[64] = "";
        if (fp && sscanf(fp + 2, "%63[a-z_0-9]", name) == 1) {
        } else if (strchr(s, ';') && !strchr(s, '(') && !strchr(s, ')')) {
            char *semi = strchr(s, ';'), *b = semi;
            while (b > s && (b[-1] == '_' || (b[-1] >= 'a' && b[-1] <= 'z') || (b[-1] >= '0' && b[-1] <= '9')))
                b--;
            snprintf(name, sizeof name, "%.*s", (int)(semi - b), b);
        } else {
            continue; /* the continuation of a declaration */
        }
        assert_true(count < max);
        snprintf(names[count++], 64, "%s", name);
    }
    return count;
}

static void test_lua_parity(void **state)
{
    (void)state;
    static char names[256][64];
    size_t n = api_members(names, 256), nt;
    assert_true(n > 70);
    assert_string_equal(names[0], "api_version");
    assert_string_equal(names[2], "log");
    const hl_lua_twin *tw = hl_luaplugin_twins(&nt);
    int missing = 0;
    for (size_t i = 0; i < n; i++) {
        const hl_lua_twin *t = NULL;
        for (size_t k = 0; k < nt; k++)
            if (!strcmp(tw[k].c, names[i]))
                t = &tw[k];
        if (!t) {
            fprintf(stderr, "# halle_api.%s has no Lua twin and no exemption in core/luaplugin.c\n", names[i]);
            missing++;
        } else if (!t->lua && (!t->why || strlen(t->why) < 10)) {
            fprintf(stderr, "# halle_api.%s: an exemption needs its reason\n", names[i]);
            missing++;
        } else if (t->lua && !strncmp(t->lua, "halle.", 6) && !hl_luaplugin_has(t->lua)) {
            fprintf(stderr, "# halle_api.%s: %s is not in the Lua halle table\n", names[i], t->lua);
            missing++;
        } else if (t->lua && strncmp(t->lua, "halle.", 6) && strncmp(t->lua, "req.", 4)) {
            fprintf(stderr, "# halle_api.%s: twin %s is neither halle.* nor req.*\n", names[i], t->lua);
            missing++;
        }
    }
    /* and no line of the list names a member that does not exist (a rename left behind) */
    for (size_t k = 0; k < nt; k++) {
        int found = 0;
        for (size_t i = 0; i < n; i++)
            found |= !strcmp(tw[k].c, names[i]);
        if (!found) {
            fprintf(stderr, "# the Lua twin list names halle_api.%s, which the header lacks\n", tw[k].c);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
    /* the check itself works: an unknown name is not a Lua function */
    assert_false(hl_luaplugin_has("halle.no_such_function"));
    assert_true(hl_luaplugin_has("halle.db.tx"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),    cmocka_unit_test(test_fold),   cmocka_unit_test(test_like),
        cmocka_unit_test(test_paginate), cmocka_unit_test(test_format), cmocka_unit_test(test_lua_parity),
    };
    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
