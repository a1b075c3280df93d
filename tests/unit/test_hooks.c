/* Unit tests for core/hooks.c: run order (priority, then registration), filters transforming,
 * replacing or refusing a value, actions surviving failing callbacks, the freeze, and bad
 * names, ids and arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/hooks.h"
#include "core/log.h"

/* Tags of the callbacks that ran, in order. */
static int trace[8192];
static size_t ntrace;
static int freed;

static void trace_reset(void)
{
    ntrace = 0;
    freed = 0;
}

static int rec(void *ud, hl_hook_call *call)
{
    (void)call;
    assert_true(ntrace < sizeof trace / sizeof *trace);
    trace[ntrace++] = (int)(intptr_t)ud;
    return HL_HOOK_CONTINUE;
}

static void count_free(void *ud)
{
    (void)ud;
    freed++;
}

static hl_hooks *new_table(void)
{
    hl_hooks *h = hl_hooks_new();
    assert_non_null(h);
    return h;
}

static void declare(hl_hooks *h, const char *name, hl_hook_kind kind)
{
    hl_err err = {0};
    if (hl_hooks_declare(h, name, kind, &err) != HL_OK)
        fail_msg("declaring %s: %s", name, err.msg);
}

static void add(hl_hooks *h, const char *name, int prio, hl_hook_fn fn, void *ud, const char *owner)
{
    hl_err err = {0};
    if (hl_hooks_add(h, name, prio, fn, ud, NULL, owner, &err) != HL_OK)
        fail_msg("adding to %s: %s", name, err.msg);
}

static int id_of(hl_hooks *h, const char *name)
{
    int id = hl_hooks_id(h, name);
    assert_true(id >= 0);
    return id;
}

static void assert_trace(const int *want, size_t n)
{
    assert_int_equal(ntrace, n);
    for (size_t i = 0; i < n; i++)
        if (trace[i] != want[i])
            fail_msg("position %zu: callback %d ran, expected %d", i, trace[i], want[i]);
}

/* Order */

static void test_priority_order(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    static const int want[] = {5, 3, 7, 2, 4, 1, 6};
    declare(h, "order.made", HL_HOOK_ACTION);
    add(h, "order.made", 20, rec, (void *)1, "p1");
    add(h, "order.made", HL_HOOK_DEFAULT_PRIORITY, rec, (void *)2, "p2");
    add(h, "order.made", -5, rec, (void *)3, "p3");
    add(h, "order.made", 10, rec, (void *)4, "p4");
    add(h, "order.made", INT_MIN, rec, (void *)5, "p5");
    add(h, "order.made", INT_MAX, rec, (void *)6, "p6");
    add(h, "order.made", -5, rec, (void *)7, "p7");
    int id = id_of(h, "order.made");
    assert_int_equal(hl_hooks_count(h, id), 7);

    /* Running before the freeze already follows the final order. */
    trace_reset();
    assert_int_equal(hl_hooks_run_action(h, id, NULL, NULL), 0);
    assert_trace(want, 7);

    assert_false(hl_hooks_frozen(h));
    hl_hooks_freeze(h);
    assert_true(hl_hooks_frozen(h));
    trace_reset();
    assert_int_equal(hl_hooks_run_action(h, id, NULL, NULL), 0);
    assert_trace(want, 7);
    assert_int_equal(hl_hooks_count(h, id), 7);
    hl_hooks_free(h);
}

static void test_random_priorities_stable(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    int prio[100];
    unsigned seed = 12345;
    declare(h, "product.before_edit", HL_HOOK_FILTER);
    for (int i = 0; i < 100; i++) {
        seed = seed * 1103515245u + 12345u;
        prio[i] = (int)((seed >> 16) % 7) - 3; /* many ties, so stability matters */
        add(h, "product.before_edit", prio[i], rec, (void *)(intptr_t)i, "core");
    }
    int id = id_of(h, "product.before_edit");
    for (int pass = 0; pass < 2; pass++) {
        int seen[100] = {0};
        trace_reset();
        assert_int_equal(hl_hooks_run_filter(h, id, NULL, NULL, NULL), HL_HOOK_CONTINUE);
        assert_int_equal(ntrace, 100);
        for (size_t i = 0; i < 100; i++) {
            assert_false(seen[trace[i]]);
            seen[trace[i]] = 1;
            if (i == 0)
                continue;
            int a = trace[i - 1], b = trace[i];
            if (!(prio[a] < prio[b] || (prio[a] == prio[b] && a < b)))
                fail_msg("callback %d (priority %d) ran before %d (priority %d)", a, prio[a], b,
                         prio[b]);
        }
        hl_hooks_freeze(h);
    }
    hl_hooks_free(h);
}

/* Filters */

static int append(void *ud, hl_hook_call *call)
{
    char buf[256];
    const char *s = json_string_value(call->value);
    assert_non_null(s);
    snprintf(buf, sizeof buf, "%s%s", s, (const char *)ud);
    assert_int_equal(json_string_set(call->value, buf), 0);
    return HL_HOOK_CONTINUE;
}

/* Checks what the dispatcher fills in. */
static int check_call(void *ud, hl_hook_call *call)
{
    assert_string_equal(call->hook, "page.title");
    assert_string_equal(call->owner, "seo");
    assert_ptr_equal(call->ctx, ud);
    assert_int_equal(call->stop.status, 0);
    assert_string_equal(call->stop.message, "");
    return HL_HOOK_CONTINUE;
}

static void test_filter_transforms_string(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    int ctx;
    hl_hook_stop stop;
    declare(h, "page.title", HL_HOOK_FILTER);
    add(h, "page.title", 30, append, "c", "p3");
    add(h, "page.title", 5, append, "a", "p1");
    add(h, "page.title", HL_HOOK_DEFAULT_PRIORITY, append, "b", "p2");
    add(h, "page.title", 0, check_call, &ctx, "seo");
    hl_hooks_freeze(h);

    json_t *v = json_string("x");
    memset(&stop, 'z', sizeof stop); /* reset by the run */
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "page.title"), &v, &ctx, &stop),
                     HL_HOOK_CONTINUE);
    assert_string_equal(json_string_value(v), "xabc");
    assert_int_equal(stop.status, 0);
    assert_string_equal(stop.message, "");
    json_decref(v);
    hl_hooks_free(h);
}

static int incr(void *ud, hl_hook_call *call)
{
    (void)ud;
    json_integer_set(call->value, json_integer_value(call->value) + 1);
    return HL_HOOK_CONTINUE;
}

static void test_filter_increments(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    declare(h, "basket.total", HL_HOOK_FILTER);
    for (int i = 0; i < 10; i++)
        add(h, "basket.total", i % 3, incr, NULL, "shop");
    hl_hooks_freeze(h);
    json_t *v = json_integer(0);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "basket.total"), &v, NULL, NULL),
                     HL_HOOK_CONTINUE);
    assert_int_equal(json_integer_value(v), 10);
    json_decref(v);
    hl_hooks_free(h);
}

static int replace_with_object(void *ud, hl_hook_call *call)
{
    (void)ud;
    json_decref(call->value);
    call->value = json_pack("{s:i}", "step", 1);
    assert_non_null(call->value);
    return HL_HOOK_CONTINUE;
}

static int replace_with_integer(void *ud, hl_hook_call *call)
{
    (void)ud;
    assert_true(json_is_object(call->value));
    assert_int_equal(json_integer_value(json_object_get(call->value, "step")), 1);
    json_decref(call->value);
    call->value = json_integer(42);
    return HL_HOOK_CONTINUE;
}

static int expect_null(void *ud, hl_hook_call *call)
{
    (void)ud;
    assert_null(call->value);
    return HL_HOOK_CONTINUE;
}

static void test_filter_replaces_value(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    declare(h, "cart.item", HL_HOOK_FILTER);
    add(h, "cart.item", 1, replace_with_object, NULL, "a");
    add(h, "cart.item", 2, replace_with_integer, NULL, "b");
    int id = id_of(h, "cart.item");

    json_t *v = json_string("original"); /* the filter now owns this reference */
    assert_int_equal(hl_hooks_run_filter(h, id, &v, NULL, NULL), HL_HOOK_CONTINUE);
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), 42);
    json_decref(v);

    /* No place to return the value: what callbacks stored is released, not leaked. */
    assert_int_equal(hl_hooks_run_filter(h, id, NULL, NULL, NULL), HL_HOOK_CONTINUE);

    /* A NULL value is passed as such. */
    declare(h, "cart.empty", HL_HOOK_FILTER);
    add(h, "cart.empty", 0, expect_null, NULL, "a");
    v = NULL;
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "cart.empty"), &v, NULL, NULL),
                     HL_HOOK_CONTINUE);
    assert_null(v);
    hl_hooks_free(h);
}

static int refuse(void *ud, hl_hook_call *call)
{
    call->stop.status = (int)(intptr_t)ud;
    snprintf(call->stop.message, sizeof call->stop.message, "the shop is closed");
    return HL_HOOK_STOP;
}

static void test_filter_stop(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_hook_stop stop;
    declare(h, "order.before_create", HL_HOOK_FILTER);
    add(h, "order.before_create", 1, append, "a", "p1");
    add(h, "order.before_create", 2, refuse, (void *)403, "closing");
    add(h, "order.before_create", 3, rec, (void *)99, "p3");
    add(h, "order.before_create", 3, append, "never", "p3");
    hl_hooks_freeze(h);
    int id = id_of(h, "order.before_create");

    json_t *v = json_string("x");
    trace_reset();
    assert_int_equal(hl_hooks_run_filter(h, id, &v, NULL, &stop), HL_HOOK_STOP);
    assert_int_equal(stop.status, 403);
    assert_string_equal(stop.message, "the shop is closed");
    assert_int_equal(ntrace, 0); /* later callbacks did not run */
    assert_string_equal(json_string_value(v), "xa"); /* earlier changes are kept */

    /* Without a stop buffer the result is the same. */
    assert_int_equal(hl_hooks_run_filter(h, id, &v, NULL, NULL), HL_HOOK_STOP);
    assert_string_equal(json_string_value(v), "xaa");
    json_decref(v);
    hl_hooks_free(h);

    /* A stop without a status keeps 0 ("none"); a nonsense status becomes 500. */
    h = new_table();
    declare(h, "a.before", HL_HOOK_FILTER);
    declare(h, "b.before", HL_HOOK_FILTER);
    add(h, "a.before", 0, refuse, (void *)0, "p");
    add(h, "b.before", 0, refuse, (void *)42, "p");
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "a.before"), NULL, NULL, &stop), HL_HOOK_STOP);
    assert_int_equal(stop.status, 0);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "b.before"), NULL, NULL, &stop), HL_HOOK_STOP);
    assert_int_equal(stop.status, 500);
    hl_hooks_free(h);
}

static int fail_msg_cb(void *ud, hl_hook_call *call)
{
    (void)ud;
    snprintf(call->stop.message, sizeof call->stop.message, "bad quantity");
    return HL_EINVAL;
}

static int fail_silent(void *ud, hl_hook_call *call)
{
    (void)ud;
    (void)call;
    return HL_EIO;
}

static int fail_422(void *ud, hl_hook_call *call)
{
    (void)ud;
    call->stop.status = 422;
    snprintf(call->stop.message, sizeof call->stop.message, "too many");
    return HL_ERR;
}

static int return_seven(void *ud, hl_hook_call *call)
{
    (void)ud;
    (void)call;
    return 7;
}

/* Fills the whole message buffer, without a terminating NUL. */
static int fail_overflow(void *ud, hl_hook_call *call)
{
    (void)ud;
    memset(call->stop.message, 'x', sizeof call->stop.message);
    return HL_ERR;
}

static void test_filter_error(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_hook_stop stop;
    declare(h, "f.msg", HL_HOOK_FILTER);
    declare(h, "f.silent", HL_HOOK_FILTER);
    declare(h, "f.status", HL_HOOK_FILTER);
    declare(h, "f.seven", HL_HOOK_FILTER);
    declare(h, "f.overflow", HL_HOOK_FILTER);
    add(h, "f.msg", 0, rec, (void *)1, "first");
    add(h, "f.msg", 1, fail_msg_cb, NULL, "shop");
    add(h, "f.msg", 2, rec, (void *)2, "last");
    add(h, "f.silent", 0, fail_silent, NULL, "shop");
    add(h, "f.status", 0, fail_422, NULL, "stock");
    add(h, "f.seven", 0, return_seven, NULL, "odd");
    add(h, "f.overflow", 0, fail_overflow, NULL, "big");
    hl_hooks_freeze(h);

    /* A failing callback is skipped: the chain goes on, and the run is not an error. */
    static const int want[] = {1, 2};
    trace_reset();
    json_t *v = json_object();
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.msg"), &v, NULL, &stop), HL_HOOK_CONTINUE);
    assert_trace(want, 2);
    assert_int_equal(stop.status, 0);
    json_decref(v);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.silent"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.status"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.seven"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.overflow"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    /* Without a limit set, nobody is suspended, however often it fails. */
    assert_int_equal(hl_hooks_suspended(h, "shop"), 0);
    assert_int_equal(hl_hooks_run_filter(h, 9999, NULL, NULL, &stop), HL_ENOTFOUND);
    hl_hooks_free(h);
}

static char suspended_owner[64], suspended_why[600];
static int suspensions;

static void on_suspend(void *ud, const char *owner, const char *why)
{
    (void)ud;
    suspensions++;
    snprintf(suspended_owner, sizeof suspended_owner, "%s", owner);
    snprintf(suspended_why, sizeof suspended_why, "%s", why);
}

static int flaky_fails = 0;
static int flaky(void *ud, hl_hook_call *call)
{
    (void)ud;
    if (flaky_fails > 0) {
        flaky_fails--;
        snprintf(call->stop.message, sizeof call->stop.message, "flaky");
        return HL_ERR;
    }
    return HL_HOOK_CONTINUE;
}

/* After `limit` failures in a row an owner is suspended: its callbacks no longer run, the
 * others do; a success in between starts the count again. */
static void test_suspension(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_hook_stop stop;
    declare(h, "f.x", HL_HOOK_FILTER);
    declare(h, "a.y", HL_HOOK_ACTION);
    add(h, "f.x", 0, flaky, NULL, "shop");
    add(h, "f.x", 1, rec, (void *)7, "other");
    add(h, "a.y", 0, flaky, NULL, "shop");
    hl_hooks_set_failure_limit(h, 3, on_suspend, NULL);
    hl_hooks_freeze(h);
    suspensions = 0;
    flaky_fails = 2;
    for (int i = 0; i < 3; i++) /* fail, fail, succeed: the count starts again */
        assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.x"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_suspended(h, "shop"), 0);
    flaky_fails = 100;
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.x"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_run_action(h, id_of(h, "a.y"), NULL, NULL), 1); /* actions count too */
    assert_int_equal(hl_hooks_suspended(h, "shop"), 0);
    assert_int_equal(suspensions, 0);
    trace_reset();
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.x"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_suspended(h, "shop"), 1);
    assert_int_equal(suspensions, 1);
    assert_string_equal(suspended_owner, "shop");
    assert_non_null(strstr(suspended_why, "3 failures in a row"));
    assert_non_null(strstr(suspended_why, "flaky"));
    int left = flaky_fails;
    static const int want[] = {7, 7};
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "f.x"), NULL, NULL, &stop), HL_HOOK_CONTINUE);
    assert_int_equal(hl_hooks_run_action(h, id_of(h, "a.y"), NULL, NULL), 0);
    assert_int_equal(flaky_fails, left); /* the suspended callbacks were not called */
    assert_trace(want, 2);
    assert_int_equal(suspensions, 1);
    assert_int_equal(hl_hooks_suspended(h, "other"), 0);
    hl_hooks_free(h);
}

/* Actions */

static json_t *other_data;

static int action_check(void *ud, hl_hook_call *call)
{
    assert_ptr_equal(call->value, ud); /* a previous callback's change is not seen */
    assert_string_equal(call->hook, "mail.sent");
    assert_int_equal(call->stop.status, 0);
    assert_string_equal(call->stop.message, "");
    call->value = other_data;
    return HL_HOOK_CONTINUE;
}

static int action_fail(void *ud, hl_hook_call *call)
{
    call->stop.status = 418;
    snprintf(call->stop.message, sizeof call->stop.message, "%s", (const char *)ud);
    return HL_EIO;
}

static int action_stop(void *ud, hl_hook_call *call)
{
    (void)ud;
    snprintf(call->stop.message, sizeof call->stop.message, "no");
    return HL_HOOK_STOP;
}

static void test_action_runs_all(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    char path[] = "/tmp/test_hooks_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(hl_log_open(path, "info", &err), HL_OK);

    json_t *data = json_pack("{s:s}", "to", "a@example.org");
    other_data = json_object();
    declare(h, "mail.sent", HL_HOOK_ACTION);
    add(h, "mail.sent", 0, rec, (void *)1, "core");
    add(h, "mail.sent", 1, action_fail, "disk full", "mailer");
    add(h, "mail.sent", 2, action_check, data, "check");
    add(h, "mail.sent", 3, action_stop, NULL, "refuser");
    add(h, "mail.sent", 4, action_check, data, "check");
    add(h, "mail.sent", 5, action_fail, "", "sms");
    add(h, "mail.sent", 6, rec, (void *)2, "core");
    hl_hooks_freeze(h);

    static const int want[] = {1, 2};
    trace_reset();
    assert_int_equal(hl_hooks_run_action(h, id_of(h, "mail.sent"), data, NULL), 2);
    assert_trace(want, 2);
    hl_log_close();

    char buf[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(path);
    assert_non_null(strstr(buf, "level=error"));
    assert_non_null(strstr(buf, "hook mail.sent: callback of mailer failed (skipped): disk full"));
    assert_non_null(strstr(buf, "hook mail.sent: callback of sms failed (skipped): error -6"));
    assert_null(strstr(buf, "refuser")); /* a stop from an action is not a failure */

    json_decref(data);
    json_decref(other_data);
    hl_hooks_free(h);
}

/* Registration */

static void test_add_after_freeze(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    declare(h, "cron.daily", HL_HOOK_ACTION);
    add(h, "cron.daily", 0, rec, NULL, "core");
    hl_hooks_freeze(h);
    int id = id_of(h, "cron.daily");

    trace_reset();
    assert_int_equal(hl_hooks_add(h, "cron.daily", 0, rec, NULL, count_free, "late", &err), HL_EINVAL);
    assert_string_equal(err.msg, "hooks are frozen: callbacks must be added at start-up");
    assert_int_equal(freed, 1);
    assert_int_equal(hl_hooks_count(h, id), 1);

    /* A heap ud is released (ASan would report the leak otherwise). */
    assert_int_equal(hl_hooks_add(h, "cron.daily", 0, rec, malloc(16), free, "late", NULL), HL_EINVAL);

    /* Declaring is over too, but confirming a declared hook is harmless. */
    assert_int_equal(hl_hooks_declare(h, "cron.weekly", HL_HOOK_ACTION, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "frozen"));
    assert_int_equal(hl_hooks_declare(h, "cron.daily", HL_HOOK_ACTION, &err), HL_OK);
    assert_int_equal(hl_hooks_id(h, "cron.weekly"), HL_ENOTFOUND);
    hl_hooks_free(h);
}

static void test_undeclared_hook(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    trace_reset();
    assert_int_equal(hl_hooks_add(h, "no.such", 0, rec, NULL, count_free, "p", &err), HL_ENOTFOUND);
    assert_string_equal(err.msg, "hook no.such is not declared");
    assert_int_equal(freed, 1);
    assert_int_equal(hl_hooks_id(h, "no.such"), HL_ENOTFOUND);
    assert_int_equal(hl_hooks_add(h, "no.such", 0, rec, malloc(8), free, "p", NULL), HL_ENOTFOUND);
    hl_hooks_free(h);
}

static void test_redeclare(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    assert_int_equal(hl_hooks_declare(h, "product.before_delete", HL_HOOK_FILTER, &err), HL_OK);
    int id = id_of(h, "product.before_delete");
    assert_int_equal(hl_hooks_declare(h, "product.before_delete", HL_HOOK_FILTER, &err), HL_OK);
    assert_int_equal(hl_hooks_id(h, "product.before_delete"), id);
    assert_int_equal(hl_hooks_declare(h, "product.before_delete", HL_HOOK_ACTION, &err), HL_EINVAL);
    assert_string_equal(err.msg, "hook product.before_delete is already declared as a filter");
    assert_int_equal(hl_hooks_kind(h, id), HL_HOOK_FILTER);

    assert_int_equal(hl_hooks_declare(h, "x.y", (hl_hook_kind)0, &err), HL_EINVAL);
    assert_int_equal(hl_hooks_declare(h, "x.y", (hl_hook_kind)7, &err), HL_EINVAL);
    assert_int_equal(hl_hooks_id(h, "x.y"), HL_ENOTFOUND);
    hl_hooks_free(h);
}

static void test_bad_names(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    char long65[66], long64[65], huge[10000];
    memset(long65, 'a', 65);
    long65[65] = '\0';
    memset(long64, 'b', 64);
    long64[64] = '\0';
    memset(huge, 'c', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    const char *bad[] = {"", long65, huge, "Order", "a b", "a-b", "caf\xc3\xa9", "a/b", "a\nb",
                         "a\"b", "%s%n", NULL};

    declare(h, "real", HL_HOOK_ACTION);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        freed = 0;
        err.msg[0] = '\0';
        assert_int_equal(hl_hooks_declare(h, bad[i], HL_HOOK_ACTION, &err), HL_EINVAL);
        assert_non_null(strstr(err.msg, "invalid hook name"));
        assert_int_equal(hl_hooks_id(h, bad[i]), HL_ENOTFOUND);
        assert_int_equal(hl_hooks_add(h, bad[i], 0, rec, NULL, count_free, "p", &err), HL_EINVAL);
        assert_int_equal(freed, 1);
    }
    /* Limits and the full alphabet are accepted. */
    declare(h, long64, HL_HOOK_FILTER);
    declare(h, "plugin_2.event.sub_name9", HL_HOOK_ACTION);
    assert_int_equal(hl_hooks_kind(h, id_of(h, long64)), HL_HOOK_FILTER);
    assert_int_equal(hl_hooks_id(h, "Real"), HL_ENOTFOUND); /* names are case-sensitive */
    hl_hooks_free(h);
}

static void test_bad_args(void **state)
{
    (void)state;
    hl_err err = {0};
    hl_hook_stop stop;
    json_t *v = NULL;

    /* No table. */
    trace_reset();
    assert_int_equal(hl_hooks_declare(NULL, "a", HL_HOOK_ACTION, &err), HL_EINVAL);
    assert_int_equal(hl_hooks_add(NULL, "a", 0, rec, NULL, count_free, "p", &err), HL_EINVAL);
    assert_int_equal(freed, 1);
    assert_int_equal(hl_hooks_id(NULL, "a"), HL_ENOTFOUND);
    assert_int_equal(hl_hooks_kind(NULL, 0), 0);
    assert_int_equal(hl_hooks_count(NULL, 0), 0);
    assert_int_equal(hl_hooks_frozen(NULL), 0);
    hl_hooks_freeze(NULL);
    hl_hooks_each(NULL, NULL, NULL);
    assert_int_equal(hl_log_open("/dev/null", "info", &err), HL_OK);
    assert_int_equal(hl_hooks_run_action(NULL, 0, NULL, NULL), HL_EINVAL);
    hl_log_close();
    assert_int_equal(hl_hooks_run_filter(NULL, 0, &v, NULL, &stop), HL_EINVAL);
    assert_int_equal(stop.status, 500);
    assert_true(stop.message[0] != '\0');
    hl_hooks_free(NULL);

    /* Bad callback or owner; err may be NULL. */
    hl_hooks *h = new_table();
    declare(h, "a", HL_HOOK_FILTER);
    char owner65[66];
    memset(owner65, 'o', 65);
    owner65[65] = '\0';
    const char *bad_owners[] = {NULL, "", owner65, "a\tb", "a\x7f"};
    freed = 0;
    assert_int_equal(hl_hooks_add(h, "a", 0, NULL, NULL, count_free, "p", &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "no callback function"));
    for (size_t i = 0; i < sizeof bad_owners / sizeof *bad_owners; i++) {
        assert_int_equal(hl_hooks_add(h, "a", 0, rec, NULL, count_free, bad_owners[i], &err), HL_EINVAL);
        assert_non_null(strstr(err.msg, "owner"));
    }
    assert_int_equal(hl_hooks_add(h, "a", 0, rec, NULL, count_free, NULL, NULL), HL_EINVAL);
    assert_int_equal(freed, 2 + (int)(sizeof bad_owners / sizeof *bad_owners));
    assert_int_equal(hl_hooks_count(h, id_of(h, "a")), 0);
    /* A NULL ud_free is fine, and so is a NULL err on success. */
    assert_int_equal(hl_hooks_add(h, "a", 0, rec, NULL, NULL, "p", NULL), HL_OK);
    hl_hooks_each(h, NULL, NULL);
    hl_hooks_free(h);
}

static void test_ud_free_on_free(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    declare(h, "a", HL_HOOK_ACTION);
    declare(h, "b", HL_HOOK_FILTER);
    trace_reset();
    for (int i = 0; i < 3; i++) {
        assert_int_equal(hl_hooks_add(h, "a", i, rec, malloc(32), free, "p", &err), HL_OK);
        assert_int_equal(hl_hooks_add(h, "b", -i, rec, NULL, count_free, "p", &err), HL_OK);
    }
    assert_int_equal(hl_hooks_add(h, "b", 0, rec, NULL, NULL, "p", &err), HL_OK);
    hl_hooks_freeze(h);
    assert_int_equal(freed, 0);
    hl_hooks_free(h);
    assert_int_equal(freed, 3);
}

static void test_bad_id(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    hl_hook_stop stop;
    declare(h, "act", HL_HOOK_ACTION);
    declare(h, "fil", HL_HOOK_FILTER);
    add(h, "act", 0, rec, (void *)1, "p");
    add(h, "fil", 0, rec, (void *)2, "p");
    int act = id_of(h, "act"), fil = id_of(h, "fil");
    const int bad[] = {-1, HL_ENOTFOUND, 2, 1000, INT_MAX, INT_MIN};

    assert_int_equal(hl_log_open("/dev/null", "info", &err), HL_OK);
    trace_reset();
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *v = json_true();
        assert_int_equal(hl_hooks_run_action(h, bad[i], NULL, NULL), HL_ENOTFOUND);
        assert_int_equal(hl_hooks_run_filter(h, bad[i], &v, NULL, &stop), HL_ENOTFOUND);
        assert_int_equal(stop.status, 500);
        assert_non_null(strstr(stop.message, "no hook with id"));
        assert_ptr_equal(v, json_true());
        assert_int_equal(hl_hooks_run_filter(h, bad[i], NULL, NULL, NULL), HL_ENOTFOUND);
        assert_int_equal(hl_hooks_kind(h, bad[i]), 0);
        assert_int_equal(hl_hooks_count(h, bad[i]), 0);
    }
    /* The wrong kind of run. */
    assert_int_equal(hl_hooks_run_filter(h, act, NULL, NULL, &stop), HL_EINVAL);
    assert_string_equal(stop.message, "hook act is an action, not a filter");
    assert_int_equal(hl_hooks_run_action(h, fil, NULL, NULL), HL_EINVAL);
    hl_log_close();
    assert_int_equal(ntrace, 0);
    hl_hooks_free(h);
}

typedef struct listing {
    char names[8][80];
    hl_hook_kind kinds[8];
    size_t counts[8];
    size_t n;
} listing;

static void list_one(void *ud, const char *name, hl_hook_kind kind, size_t n)
{
    listing *l = ud;
    assert_true(l->n < 8);
    snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
    l->kinds[l->n] = kind;
    l->counts[l->n] = n;
    l->n++;
}

static void test_each_order(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    listing l = {0};
    declare(h, "z.last", HL_HOOK_ACTION);
    declare(h, "a.first", HL_HOOK_FILTER);
    declare(h, "m.mid", HL_HOOK_ACTION);
    declare(h, "a.first", HL_HOOK_FILTER); /* no duplicate */
    add(h, "a.first", 0, rec, NULL, "p");
    add(h, "a.first", 0, rec, NULL, "p");
    add(h, "m.mid", 0, rec, NULL, "p");
    hl_hooks_each(h, list_one, &l);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.names[0], "z.last");
    assert_string_equal(l.names[1], "a.first");
    assert_string_equal(l.names[2], "m.mid");
    assert_int_equal(l.kinds[0], HL_HOOK_ACTION);
    assert_int_equal(l.kinds[1], HL_HOOK_FILTER);
    assert_int_equal(l.counts[0], 0);
    assert_int_equal(l.counts[1], 2);
    assert_int_equal(l.counts[2], 1);
    /* Ids follow declaration order too. */
    assert_int_equal(hl_hooks_id(h, "z.last"), 0);
    assert_int_equal(hl_hooks_id(h, "m.mid"), 2);
    hl_hooks_free(h);
}

/* A callback that registers, declares and runs another hook while its own hook runs. */
static int reenter(void *ud, hl_hook_call *call)
{
    hl_hooks *h = ud;
    hl_err err = {0};
    int before = freed;
    assert_int_equal(hl_hooks_add(h, "outer", 0, rec, NULL, count_free, "p", &err), HL_EBUSY);
    assert_int_equal(freed, before + 1);
    assert_int_equal(hl_hooks_declare(h, "new.hook", HL_HOOK_ACTION, &err), HL_EBUSY);
    assert_int_equal(hl_hooks_run_filter(h, hl_hooks_id(h, "inner"), &call->value, NULL, NULL),
                     HL_HOOK_CONTINUE);
    return HL_HOOK_CONTINUE;
}

static void test_reentrancy(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    declare(h, "outer", HL_HOOK_FILTER);
    declare(h, "inner", HL_HOOK_FILTER);
    add(h, "outer", 0, reenter, h, "p");
    add(h, "outer", 1, incr, NULL, "p");
    add(h, "inner", 0, incr, NULL, "p");
    trace_reset();
    json_t *v = json_integer(0);
    assert_int_equal(hl_hooks_run_filter(h, id_of(h, "outer"), &v, NULL, NULL), HL_HOOK_CONTINUE);
    assert_int_equal(json_integer_value(v), 2);
    assert_int_equal(freed, 1);
    json_decref(v);
    /* Once the run is over, registration works again. */
    add(h, "outer", 2, rec, NULL, "p");
    declare(h, "new.hook", HL_HOOK_ACTION);
    assert_int_equal(hl_hooks_count(h, id_of(h, "outer")), 3);
    hl_hooks_free(h);
}

static void test_many_hooks_and_limits(void **state)
{
    (void)state;
    hl_hooks *h = new_table();
    hl_err err = {0};
    char name[32];
    int i, rc;
    for (i = 0;; i++) {
        snprintf(name, sizeof name, "plugin.h%d", i);
        rc = hl_hooks_declare(h, name, i % 2 ? HL_HOOK_FILTER : HL_HOOK_ACTION, &err);
        if (rc != HL_OK)
            break;
        assert_true(i < 100000);
    }
    assert_int_equal(rc, HL_ETOOBIG);
    assert_true(i >= 1000);
    for (int j = 0; j < i; j++) {
        snprintf(name, sizeof name, "plugin.h%d", j);
        assert_int_equal(hl_hooks_id(h, name), j);
        assert_int_equal(hl_hooks_kind(h, j), j % 2 ? HL_HOOK_FILTER : HL_HOOK_ACTION);
    }

    /* Callbacks on one hook are bounded too, and the refused ud is released. */
    freed = 0;
    for (i = 0;; i++) {
        rc = hl_hooks_add(h, "plugin.h0", i % 5, rec, NULL, count_free, "p", &err);
        if (rc != HL_OK)
            break;
        assert_true(i < 100000);
    }
    assert_int_equal(rc, HL_ETOOBIG);
    assert_int_equal(freed, 1);
    assert_int_equal(hl_hooks_count(h, 0), (size_t)i);
    hl_hooks_free(h);
    assert_int_equal(freed, 1 + i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_random_priorities_stable),
        cmocka_unit_test(test_filter_transforms_string),
        cmocka_unit_test(test_filter_increments),
        cmocka_unit_test(test_filter_replaces_value),
        cmocka_unit_test(test_filter_stop),
        cmocka_unit_test(test_filter_error),
        cmocka_unit_test(test_suspension),
        cmocka_unit_test(test_action_runs_all),
        cmocka_unit_test(test_add_after_freeze),
        cmocka_unit_test(test_undeclared_hook),
        cmocka_unit_test(test_redeclare),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_ud_free_on_free),
        cmocka_unit_test(test_bad_id),
        cmocka_unit_test(test_each_order),
        cmocka_unit_test(test_reentrancy),
        cmocka_unit_test(test_many_hooks_and_limits),
    };
    return cmocka_run_group_tests_name("hooks", tests, NULL, NULL);
}
