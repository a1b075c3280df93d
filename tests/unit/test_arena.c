/* Unit tests for the request arena: alignment, growth, caps, reset and formatted strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/arena.h"

static void test_alignment_and_growth(void **state)
{
    (void)state;
    hl_arena *a = hl_arena_new(256);
    assert_non_null(a);
    for (int i = 1; i < 500; i++) {
        unsigned char *p = hl_arena_alloc(a, (size_t)i);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i); /* ASan catches any overlap or overflow */
    }
    assert_true(hl_arena_used(a) > 500);
    hl_arena_free(a);
}

static void test_large_allocation(void **state)
{
    (void)state;
    hl_arena *a = hl_arena_new(1024);
    char *small = hl_arena_strdup(a, "small");
    char *big = hl_arena_alloc(a, 1 << 20);
    assert_non_null(big);
    memset(big, 1, 1 << 20);
    char *after = hl_arena_strdup(a, "after");
    assert_string_equal(small, "small");
    assert_string_equal(after, "after");
    hl_arena_free(a);
}

static void test_cap(void **state)
{
    (void)state;
    hl_arena *a = hl_arena_new(1024);
    hl_arena_set_cap(a, 4096);
    assert_non_null(hl_arena_alloc(a, 2000));
    assert_null(hl_arena_alloc(a, 4000));
    assert_null(hl_arena_alloc(a, SIZE_MAX));
    assert_null(hl_arena_calloc(a, SIZE_MAX / 2, 4));
    hl_arena_free(a);
}

static void test_reset_reuses(void **state)
{
    (void)state;
    hl_arena *a = hl_arena_new(4096);
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 100; i++)
            assert_non_null(hl_arena_alloc(a, 100));
        assert_non_null(hl_arena_alloc(a, 100000));
        hl_arena_reset(a);
        assert_int_equal(hl_arena_used(a), 0);
    }
    hl_arena_free(a);
}

static void test_strings(void **state)
{
    (void)state;
    hl_arena *a = hl_arena_new(64);
    assert_string_equal(hl_arena_printf(a, "%s-%d", "lot", 42), "lot-42");
    assert_string_equal(hl_arena_strndup(a, "abcdef", 3), "abc");
    assert_null(hl_arena_strdup(a, NULL));
    char *g = hl_arena_strdup(a, "grow");
    char *g2 = hl_arena_grow(a, g, 5, 100);
    assert_string_equal(g2, "grow");
    char *z = hl_arena_calloc(a, 10, 10);
    for (int i = 0; i < 100; i++)
        assert_int_equal(z[i], 0);
    hl_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_growth), cmocka_unit_test(test_large_allocation),
        cmocka_unit_test(test_cap), cmocka_unit_test(test_reset_reuses), cmocka_unit_test(test_strings),
    };
    return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
