/* Unit tests for the clock (core/clock.c), jobs (core/jobs.c) and the purge job's SQL
 * (hl_accounts_purge), on a fresh SQLite file with the main migrations: schedules, leases
 * between two registries on two connections, queued runs with retries and dead letters. Time
 * moves through HALLE_NOW. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/testutil.h"

#include "core/accounts.h"
#include "core/clock.h"
#include "core/db.h"
#include "core/jobs.h"

#define T0 1893456000 /* 2030-01-01T00:00:00Z */

typedef struct {
    char dir[64];
    char path[128];
    hl_db *db, *db2;
} fx;

static void set_now(int64_t t)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)t);
    setenv("HALLE_NOW", buf, 1);
}

static int setup(void **state)
{
    hl_err err = {0};
    char mig[1024];
    const char *src = getenv("HALLE_SRCDIR");
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/hl_jobs_test_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/main.db", f->dir);
    snprintf(mig, sizeof mig, "%s/core/migrations/main", src && *src ? src : ".");
    f->db = hl_db_open(f->path, HL_DB_CREATE, &err);
    if (!f->db || hl_db_migrate(f->db, "main", mig, NULL, &err) != HL_OK ||
        !(f->db2 = hl_db_open(f->path, 0, &err))) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    set_now(T0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    hl_db_close(f->db);
    hl_db_close(f->db2);
    hl_test_rm_rf(f->dir);
    free(f);
    unsetenv("HALLE_NOW");
    return 0;
}

static int64_t q_int(hl_db *db, const char *sql, const char *arg)
{
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err, sql, "s", arg);
    int64_t v = st && hl_db_step(st, &err) == HL_DB_ROW ? hl_db_col_int64(st, 0) : -1;
    hl_db_done(st);
    return v;
}

static char *q_text(hl_db *db, const char *sql, const char *arg)
{
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err, sql, "s", arg);
    const char *s = st && hl_db_step(st, &err) == HL_DB_ROW ? hl_db_col_text(st, 0) : NULL;
    char *out = s ? strdup(s) : NULL;
    hl_db_done(st);
    return out;
}

static void test_clock(void **state)
{
    (void)state;
    int64_t t;
    char buf[HL_CLOCK_ISO_LEN];
    assert_int_equal(hl_clock_now(), T0);
    setenv("HALLE_NOW", "2030-01-01T00:00:05Z", 1);
    assert_int_equal(hl_clock_now(), T0 + 5);
    setenv("HALLE_NOW", "2030-01-01 00:00:07", 1);
    assert_int_equal(hl_clock_now(), T0 + 7);
    setenv("HALLE_NOW", "not a time", 1);
    assert_true(hl_clock_now() > T0 - 10 * 365 * 86400LL && hl_clock_now() < T0); /* the real clock */
    assert_string_equal(hl_clock_iso(T0 + 3661, buf), "2030-01-01T01:01:01Z");
    assert_int_equal(hl_clock_parse("2030-01-01T01:01:01Z", &t), 0);
    assert_int_equal(t, T0 + 3661);
    assert_int_equal(hl_clock_parse("2030-13-01T01:01:01Z", &t), -1);
    assert_int_equal(hl_clock_parse("2030-01-01T01:01:01Zjunk", &t), -1);
    assert_int_equal(hl_clock_parse("-5", &t), -1);
    assert_int_equal(hl_clock_retry_delay(1), 60);
    assert_int_equal(hl_clock_retry_delay(4), 7200);
    assert_int_equal(hl_clock_retry_delay(99), 7200);
    assert_int_equal(hl_clock_retry_delay(-3), 60);
}

static int counter_fn(void *ud, const char *payload, hl_err *err)
{
    int *n = ud;
    (*n)++;
    if (payload && !strcmp(payload, "fail"))
        return hl_err_set(err, HL_ERR, "payload says fail");
    return HL_OK;
}

static void test_registration(void **state)
{
    (void)state;
    hl_err err = {0};
    int n = 0;
    hl_jobs *j = hl_jobs_new();
    assert_int_equal(hl_jobs_add(j, "a.every", "every 60", counter_fn, &n, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_add(j, "a.daily", "daily 03:30", counter_fn, &n, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_add(j, "a.once", "once", counter_fn, &n, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_add(j, "a.every", "every 60", counter_fn, &n, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "already registered"));
    const char *bad_sched[] = {"every", "every 0", "every -5", "every 5x", "daily 3:30", "daily 24:00",
                               "daily 03:60", "hourly", "", NULL};
    for (int i = 0; bad_sched[i]; i++)
        assert_int_equal(hl_jobs_add(j, "a.bad", bad_sched[i], counter_fn, &n, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_jobs_add(j, "A.Upper", "once", counter_fn, &n, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_jobs_add(j, "a b", "once", counter_fn, &n, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_jobs_add(j, "a.x", "once", NULL, &n, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_jobs_count(j), 3);
    hl_jobs_freeze(j);
    assert_int_equal(hl_jobs_add(j, "a.late", "once", counter_fn, &n, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "start-up"));
    assert_int_equal(hl_jobs_count(j), 3);
    hl_jobs_free(j);
}

static void test_schedule(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int every = 0, daily = 0;
    hl_jobs *j = hl_jobs_new();
    assert_int_equal(hl_jobs_add(j, "t.every", "every 60", counter_fn, &every, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_add(j, "t.daily", "daily 03:30", counter_fn, &daily, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_sync(j, f->db, &err), HL_OK);
    char *next = q_text(f->db, "SELECT next_run FROM hl_jobs WHERE name = ?", "t.daily");
    assert_string_equal(next, "2030-01-01T03:30:00Z");
    free(next);
    assert_int_equal(hl_jobs_run_due(j, f->db, &err), 1);
    assert_int_equal(every, 1);
    assert_int_equal(hl_jobs_run_due(j, f->db, &err), 0); /* not due before +60 s */
    set_now(T0 + 60);
    assert_int_equal(hl_jobs_run_due(j, f->db, &err), 1);
    set_now(T0 + 3 * 3600 + 1800);
    assert_int_equal(hl_jobs_run_due(j, f->db, &err), 2);
    assert_int_equal(daily, 1);
    next = q_text(f->db, "SELECT next_run FROM hl_jobs WHERE name = ?", "t.daily");
    assert_string_equal(next, "2030-01-02T03:30:00Z");
    free(next);
    assert_int_equal(q_int(f->db, "SELECT runs FROM hl_jobs WHERE name = ?", "t.every"), 3);

    /* Sync again (a restart): the schedule is kept; a changed one is taken. */
    assert_int_equal(hl_jobs_sync(j, f->db, &err), HL_OK);
    next = q_text(f->db, "SELECT next_run FROM hl_jobs WHERE name = ?", "t.daily");
    assert_string_equal(next, "2030-01-02T03:30:00Z");
    free(next);
    hl_jobs *j2 = hl_jobs_new();
    assert_int_equal(hl_jobs_add(j2, "t.daily", "daily 05:00", counter_fn, &daily, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_sync(j2, f->db, &err), HL_OK);
    next = q_text(f->db, "SELECT next_run FROM hl_jobs WHERE name = ?", "t.daily");
    assert_string_equal(next, "2030-01-01T05:00:00Z");
    free(next);
    hl_jobs_free(j2);
    hl_jobs_free(j);
}

/* A job that, while it runs, lets a second registry on another connection try the same job:
 * the lease must keep it out. */
typedef struct nested {
    hl_jobs *other;
    hl_db *other_db;
    int runs, inner_rc, inner_ran;
} nested;

static int inner_fn(void *ud, const char *payload, hl_err *err)
{
    (void)payload;
    (void)err;
    nested *n = ud;
    n->runs++;
    return HL_OK;
}

static int outer_fn(void *ud, const char *payload, hl_err *err)
{
    (void)payload;
    nested *n = ud;
    n->runs++;
    hl_err e = {0};
    n->inner_ran = hl_jobs_run_due(n->other, n->other_db, &e);
    n->inner_rc = hl_jobs_run_now(n->other, n->other_db, "t.shared", &e);
    (void)err;
    return HL_OK;
}

static void test_lease(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    nested n = {0};
    hl_jobs *a = hl_jobs_new(), *b = hl_jobs_new();
    n.other = b;
    n.other_db = f->db2;
    assert_int_equal(hl_jobs_add(a, "t.shared", "every 60", outer_fn, &n, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_add(b, "t.shared", "every 60", inner_fn, &n, NULL, &err), HL_OK);
    assert_int_equal(hl_jobs_sync(a, f->db, &err), HL_OK);
    assert_int_equal(hl_jobs_run_due(a, f->db, &err), 1);
    assert_int_equal(n.runs, 1);     /* the other process did not run it */
    assert_int_equal(n.inner_ran, 0);
    assert_int_equal(n.inner_rc, HL_EBUSY);

    /* A run that died holds its lease: nobody runs the job until it has passed. */
    set_now(T0 + 100);
    assert_int_equal(hl_db_run(f->db, &err,
                               "UPDATE hl_jobs SET lease_until = ?, lease_owner = 'dead' WHERE name = 't.shared'",
                               "s", "2030-01-01T00:06:40Z"),
                     1);
    assert_int_equal(hl_jobs_run_due(b, f->db2, &err), 0);
    assert_int_equal(hl_jobs_run_now(b, f->db2, "t.shared", &err), HL_EBUSY);
    set_now(T0 + 400);
    assert_int_equal(hl_jobs_run_due(b, f->db2, &err), 1);
    assert_int_equal(n.runs, 2);
    assert_int_equal(q_int(f->db, "SELECT lease_until IS NULL FROM hl_jobs WHERE name = ?", "t.shared"), 1);
    assert_int_equal(hl_jobs_run_now(b, f->db2, "t.none", &err), HL_ENOTFOUND);
    hl_jobs_free(a);
    hl_jobs_free(b);
}

static void test_queue(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int n = 0;
    hl_jobs *j = hl_jobs_new();
    assert_int_equal(hl_jobs_add(j, "t.once", "once", counter_fn, &n, NULL, &err), HL_OK);
    assert_true(hl_jobs_enqueue(f->db, "t.once", 0, "ok", &err) > 0);
    int64_t later = hl_jobs_enqueue(f->db, "t.once", T0 + 600, "later", &err);
    assert_true(later > 0);
    assert_true(hl_jobs_enqueue(f->db, "t.once", 0, "fail", &err) > 0);
    assert_true(hl_jobs_enqueue(f->db, "t.nobody", 0, NULL, &err) > 0);
    assert_int_equal(hl_jobs_enqueue(f->db, "Bad Name", 0, NULL, &err), HL_EINVAL);
    char *big = malloc(70000);
    memset(big, 'x', 69999);
    big[69999] = '\0';
    assert_int_equal(hl_jobs_enqueue(f->db, "t.once", 0, big, &err), HL_ETOOBIG);
    free(big);

    assert_int_equal(hl_jobs_run_due(j, f->db, &err), 3); /* ok, fail, and the unknown job */
    assert_int_equal(n, 2);
    assert_int_equal(q_int(f->db, "SELECT done_at IS NOT NULL FROM hl_job_queue WHERE payload = ?", "ok"), 1);
    assert_int_equal(q_int(f->db, "SELECT dead_at IS NOT NULL FROM hl_job_queue WHERE job = ?", "t.nobody"), 1);
    char *at = q_text(f->db, "SELECT run_at FROM hl_job_queue WHERE payload = ?", "fail");
    assert_string_equal(at, "2030-01-01T00:01:00Z");
    free(at);
    int64_t t = T0;
    static const long delay[] = {60, 300, 1800, 7200};
    for (int i = 0; i < 4; i++) {
        t += delay[i];
        set_now(t);
        assert_true(hl_jobs_run_due(j, f->db, &err) >= 1);
    }
    assert_int_equal(q_int(f->db, "SELECT attempts FROM hl_job_queue WHERE payload = ?", "fail"), 5);
    assert_int_equal(q_int(f->db, "SELECT dead_at IS NOT NULL FROM hl_job_queue WHERE payload = ?", "fail"), 1);
    assert_int_equal(q_int(f->db, "SELECT done_at IS NOT NULL FROM hl_job_queue WHERE payload = ?", "later"), 1);

    /* A run whose process keeps dying (its claims count) ends dead too, without running. */
    set_now(T0 + 100000);
    int64_t crashy = hl_jobs_enqueue(f->db, "t.once", 0, "crashy", &err);
    assert_int_equal(hl_db_run(f->db, &err, "UPDATE hl_job_queue SET attempts = 5 WHERE id = ?", "I", crashy), 1);
    int before = n;
    assert_int_equal(hl_jobs_run_due(j, f->db, &err), 1);
    assert_int_equal(n, before);
    char *why = q_text(f->db, "SELECT last_error FROM hl_job_queue WHERE payload = ?", "crashy");
    assert_non_null(strstr(why, "kept dying"));
    free(why);

    json_t *st = hl_jobs_status(j, f->db, &err);
    assert_non_null(st);
    size_t dead = 0, i;
    json_t *it;
    json_array_foreach(json_object_get(st, "queue"), i, it) dead += !strcmp(json_string_value(json_object_get(it, "state")), "dead");
    assert_int_equal(dead, 3);
    json_decref(st);
    hl_jobs_free(j);
}

static void test_purge(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    assert_true(hl_db_run(f->db, &err,
                          "INSERT INTO hl_users (email, name, password_hash, terms_version, terms_accepted_at, "
                          "age_certified_at, created_at) VALUES ('a@b.cd', 'A', 'x', '1', 'x', 'x', 'x')",
                          "") == 1);
    int64_t uid = hl_db_last_insert_id(f->db);
    const char *rows =
        "INSERT INTO hl_sessions (id_hash, user_id, csrf, created_at, last_seen_at, ip, user_agent) VALUES "
        "('idle', ?, 'c', '2029-12-30T00:00:00Z', '2029-12-30T00:00:00Z', '', ''), "
        "('old', ?, 'c', '2029-11-01T00:00:00Z', '2029-12-31T23:59:00Z', '', ''), "
        "('live', ?, 'c', '2029-12-31T00:00:00Z', '2029-12-31T23:00:00Z', '', '')";
    assert_int_equal(hl_db_run(f->db, &err, rows, "III", uid, uid, uid), 3);
    assert_int_equal(hl_db_run(f->db, &err,
                               "INSERT INTO hl_user_tokens (token_hash, user_id, kind, expires_at, used_at) VALUES "
                               "('used', ?, 'reset', '2030-01-02T00:00:00Z', '2029-12-31T00:00:00Z'), "
                               "('expired', ?, 'reset', '2029-12-31T00:00:00Z', NULL), "
                               "('valid', ?, 'reset', '2030-01-02T00:00:00Z', NULL)",
                               "III", uid, uid, uid),
                     3);
    assert_int_equal(hl_db_run(f->db, &err,
                               "INSERT INTO hl_rate_limits (key, window_start, hits) VALUES ('gone', ?, 1), "
                               "('kept', ?, 1)",
                               "II", (int64_t)T0 - 2 * 86400, (int64_t)T0 - 3600),
                     2);
    assert_int_equal(hl_accounts_purge(f->db, 86400, 30 * 86400, &err), 5);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_sessions WHERE id_hash <> ?", "live"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_user_tokens WHERE token_hash <> ?", "valid"), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_rate_limits WHERE key <> ?", "kept"), 0);
    assert_int_equal(hl_accounts_purge(f->db, 86400, 30 * 86400, &err), 0);
    assert_int_equal(hl_accounts_purge(f->db, 0, 30, &err), HL_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clock, setup, teardown),
        cmocka_unit_test(test_registration),
        cmocka_unit_test_setup_teardown(test_schedule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
