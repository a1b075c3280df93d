/* Client addresses behind trusted proxies (core/proxy.c): which headers are believed, from
 * whom, and how far. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "core/proxy.h"

static const char *client(const char *spec, const char *peer, const char *fwd, const char *xff)
{
    static char out[64];
    hl_err err = {0};
    hl_proxies *p = hl_proxies_parse(spec, &err);
    if (!p)
        fail_msg("parse %s: %s", spec, err.msg);
    hl_proxies_client(p, peer, fwd, xff, out, sizeof out);
    hl_proxies_free(p);
    return out;
}

static void test_parse(void **state)
{
    (void)state;
    hl_err err = {0};
    hl_proxies *p = hl_proxies_parse("127.0.0.1, 10.0.0.0/8 ::1 2001:db8::/32", &err);
    assert_non_null(p);
    assert_int_equal(hl_proxies_count(p), 4);
    assert_true(hl_proxies_trusted(p, "10.200.3.4"));
    assert_true(hl_proxies_trusted(p, "127.0.0.1"));
    assert_true(hl_proxies_trusted(p, "::1"));
    assert_true(hl_proxies_trusted(p, "2001:db8:1::5"));
    assert_false(hl_proxies_trusted(p, "11.0.0.1"));
    assert_false(hl_proxies_trusted(p, "127.0.0.2"));
    assert_false(hl_proxies_trusted(p, "2001:db9::1"));
    assert_false(hl_proxies_trusted(p, "not an address"));
    hl_proxies_free(p);
    const char *bad[] = {"10.0.0.0/33", "10.0.0.0/", "banana", "::1/129", "1.2.3.4/8x", "300.1.1.1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        hl_err e = {0};
        assert_null(hl_proxies_parse(bad[i], &e));
        assert_non_null(strstr(e.msg, "trusted_proxies"));
    }
    p = hl_proxies_parse(NULL, &err);
    assert_non_null(p);
    assert_int_equal(hl_proxies_count(p), 0);
    hl_proxies_free(p);
}

static void test_client(void **state)
{
    (void)state;
    /* No trusted proxy: the headers are anyone's to forge. */
    assert_string_equal(client("", "198.51.100.7", NULL, "203.0.113.5"), "198.51.100.7");
    /* From a peer that is not trusted: ignored too. */
    assert_string_equal(client("10.0.0.0/8", "198.51.100.7", NULL, "203.0.113.5"), "198.51.100.7");
    /* From a trusted proxy: the rightmost address that is not a trusted proxy. */
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, "203.0.113.5"), "203.0.113.5");
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, "1.1.1.1, 203.0.113.5, 10.0.0.9"), "203.0.113.5");
    /* A client's forged left part is never reached. */
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, "127.0.0.1, 203.0.113.5"), "203.0.113.5");
    /* All trusted: the leftmost. */
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, "10.1.1.1, 10.0.0.9"), "10.1.1.1");
    /* A malformed hop ends the walk at the last trusted one. */
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, "garbage"), "10.0.0.2");
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, "203.0.113.5, junk, 10.0.0.9"), "10.0.0.9");
    /* Forwarded (RFC 7239) wins over X-Forwarded-For; quotes, ports and IPv6 brackets. */
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", "for=192.0.2.60;proto=http;by=203.0.113.43", "1.2.3.4"),
                        "192.0.2.60");
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", "for=\"[2001:db8:cafe::17]:4711\"", NULL), "2001:db8:cafe::17");
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", "for=192.0.2.43, for=10.0.0.5", NULL), "192.0.2.43");
    assert_string_equal(client("10.0.0.0/8 ::1", "::1", NULL, "203.0.113.5:1234"), "203.0.113.5");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_client),
    };
    return cmocka_run_group_tests_name("proxy", tests, NULL, NULL);
}
