/* Unit tests for Markdown rendering: formatting works; raw HTML, scripts and links to other
 * schemes than http, https and mailto never come out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/markdown.h"

static char *md(const char *text)
{
    char *out = NULL;
    hl_err err;
    assert_int_equal(hl_markdown_render(text, strlen(text), &out, &err), HL_OK);
    return out;
}

static void test_formatting(void **state)
{
    (void)state;
    char *h = md("# Bienvenue\n\nDes *légumes* et du **pain**.\n\n- pommes\n- poires\n");
    assert_non_null(strstr(h, "<h1>Bienvenue</h1>"));
    assert_non_null(strstr(h, "<em>légumes</em>"));
    assert_non_null(strstr(h, "<strong>pain</strong>"));
    assert_non_null(strstr(h, "<li>pommes</li>"));
    free(h);
}

static void test_raw_html_dropped(void **state)
{
    (void)state;
    const char *hostile[] = {
        "<script>alert(1)</script>",
        "texte <img src=x onerror=alert(1)> fin",
        "<iframe src=\"https://evil.example\"></iframe>",
        "<a href=\"javascript:alert(1)\">x</a>",
        "<style>body{display:none}</style>",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        char *h = md(hostile[i]);
        assert_null(strstr(h, "<script"));
        assert_null(strstr(h, "<img"));
        assert_null(strstr(h, "<iframe"));
        assert_null(strstr(h, "<style"));
        assert_null(strstr(h, "onerror="));
        free(h);
    }
}

static void test_links(void **state)
{
    (void)state;
    char *h = md("[site](https://example.org) [mail](mailto:a@b.fr) [page](/groups/amap) [plain](http://x.fr)");
    assert_non_null(strstr(h, "href=\"https://example.org\""));
    assert_non_null(strstr(h, "href=\"mailto:a@b.fr\""));
    assert_non_null(strstr(h, "href=\"/groups/amap\""));
    assert_non_null(strstr(h, "href=\"http://x.fr\""));
    free(h);
    const char *bad[] = {"[x](javascript:alert(1))", "[x](JaVaScRiPt:alert(1))", "[x](data:text/html;base64,PHNjcmlwdD4=)",
                         "[x](vbscript:msgbox)", "[x](file:///etc/passwd)", "[x](ftp://example.org/f)",
                         "![i](javascript:alert(1))", "<javascript:alert(1)>", "[x](tel:+33100000000)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        h = md(bad[i]);
        /* The text may still show the address; what matters is that no link or image uses it. */
        const char *forbidden[] = {"href=\"javascript", "href=\"JaVaScRiPt", "href=\"data:", "src=\"data:",
                                   "href=\"vbscript", "href=\"file:", "href=\"ftp:", "href=\"tel:",
                                   "src=\"javascript"};
        for (size_t j = 0; j < sizeof forbidden / sizeof forbidden[0]; j++)
            if (strstr(h, forbidden[j]))
                fail_msg("'%s' gave %s", bad[i], h);
        free(h);
    }
}

static void test_limits(void **state)
{
    (void)state;
    size_t n = 300 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    char *out = NULL;
    hl_err err;
    assert_int_equal(hl_markdown_render(big, n, &out, &err), HL_ETOOBIG);
    assert_null(out);
    free(big);
    /* Deep nesting and invalid UTF-8 do not crash. */
    char deep[4001];
    memset(deep, '>', 4000);
    deep[4000] = '\0';
    free(md(deep));
    free(md("\xff\xfe invalid \xc3"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formatting), cmocka_unit_test(test_raw_html_dropped), cmocka_unit_test(test_links),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests_name("markdown", tests, NULL, NULL);
}
