/* Unit tests for the PostgreSQL backend (core/db_pg.c) through the storage API: SQL rewriting,
 * types, errors, transactions, counters and keys, migrations, and a plugin's confinement under
 * its role. Each test gets a fresh database on the server named by HALLE_TEST_PG (a superuser
 * URI of the private cluster scripts/test starts); without it the tests are skipped. */
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

#include "tests/unit/testutil.h"

#include "core/db.h"

typedef struct {
    char name[64];
    char uri[512];
    hl_db *db;
} fx;

static int counter;

/* The admin URI with its database name replaced by name. */
static int uri_for(const char *name, char *out, size_t n)
{
    const char *admin = getenv("HALLE_TEST_PG");
    if (!admin || !*admin)
        return -1;
    const char *auth = strstr(admin, "://");
    const char *slash = auth ? strchr(auth + 3, '/') : NULL;
    size_t keep = slash ? (size_t)(slash - admin) : strlen(admin);
    const char *q = slash ? strchr(slash, '?') : NULL;
    snprintf(out, n, "%.*s/%s%s", (int)keep, admin, name, q ? q : "");
    return 0;
}

static int admin_exec(const char *sql)
{
    hl_err err = {0};
    hl_db *a = hl_db_open(getenv("HALLE_TEST_PG"), 0, &err);
    if (!a) {
        fprintf(stderr, "admin: %s\n", err.msg);
        return -1;
    }
    int rc = hl_db_exec(a, sql, &err);
    if (rc)
        fprintf(stderr, "admin: %s: %s\n", sql, err.msg);
    hl_db_close(a);
    return rc;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    if (!getenv("HALLE_TEST_PG") || !*getenv("HALLE_TEST_PG"))
        return 0;
    char sql[160];
    snprintf(f->name, sizeof f->name, "hl_ut_%d_%d", (int)getpid(), ++counter);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", f->name);
    if (admin_exec(sql) || uri_for(f->name, f->uri, sizeof f->uri))
        return -1;
    hl_err err = {0};
    f->db = hl_db_open(f->uri, 0, &err);
    if (!f->db)
        fprintf(stderr, "open %s: %s\n", f->uri, err.msg);
    return f->db ? 0 : -1;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->db) {
        char sql[160];
        hl_db_close(f->db);
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", f->name);
        admin_exec(sql);
    }
    free(f);
    return 0;
}

#define NEED_PG(f)                                                                                 \
    do {                                                                                           \
        if (!(f)->db)                                                                              \
            skip();                                                                                \
    } while (0)

static int64_t scalar(hl_db *db, const char *sql)
{
    hl_err err = {0};
    hl_stmt *st = hl_db_prepare(db, sql, &err);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    int64_t v = hl_db_col_int64(st, 0);
    hl_db_done(st);
    return v;
}

static void test_backend_and_redact(void **state)
{
    fx *f = *state;
    char *r = hl_db_redact("postgresql://halle:s3cret@db.example:5432/halle?sslmode=require&password=other");
    assert_non_null(r);
    assert_null(strstr(r, "s3cret"));
    assert_null(strstr(r, "other"));
    assert_non_null(strstr(r, "halle@db.example:5432/halle?sslmode=require"));
    free(r);
    assert_true(hl_db_is_url("postgres://x/y"));
    assert_false(hl_db_is_url("/var/lib/halle/halle.db"));
    NEED_PG(f);
    assert_string_equal(hl_db_backend_name(f->db), "postgresql");
}

static void test_open_refused(void **state)
{
    (void)state;
    hl_err err = {0};
    hl_db *db = hl_db_open("postgresql://nobody:pw@127.0.0.1:1/none", 0, &err);
    assert_null(db);
    assert_non_null(strstr(err.msg, "cannot open database postgresql://nobody@127.0.0.1:1/none"));
    assert_null(strstr(err.msg, "pw@"));
}

/* The dialect: INTEGER PRIMARY KEY gives ids, INTEGER holds 64 bits, REAL, BLOB, ? params. */
static void test_types(void **state)
{
    fx *f = *state;
    NEED_PG(f);
    hl_err err = {0};
    assert_int_equal(hl_db_exec(f->db,
                                "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, r REAL, "
                                "s TEXT, b BLOB, blob BLOB); -- a comment with a ? in it\n"
                                "CREATE INDEX t_n ON t (n)",
                                &err),
                     HL_OK);
    int64_t id1, id2;
    static const unsigned char blob[] = {0, 1, 2, 0xff, 0};
    assert_int_equal(hl_db_insert(f->db, &err, &id1, "INSERT INTO t (n, r, s, b) VALUES (?, ?, ?, ?) RETURNING id",
                                  "Idsb", (int64_t)5000000000LL, 2.5, "l'été ? oui", blob, sizeof blob),
                     HL_OK);
    assert_int_equal(hl_db_insert(f->db, &err, &id2, "INSERT INTO t (n) VALUES (?) RETURNING id", "i", 7), HL_OK);
    assert_true(id1 > 0 && id2 == id1 + 1);
    hl_stmt *st = hl_db_query(f->db, &err, "SELECT n, r, s, b, id, CAST(n AS INTEGER), blob FROM t WHERE id = ?", "I", id1);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_type(st, 0), HL_DB_INTEGER);
    assert_true(hl_db_col_int64(st, 0) == 5000000000LL);
    assert_int_equal(hl_db_col_type(st, 1), HL_DB_FLOAT);
    assert_true(hl_db_col_double(st, 1) == 2.5);
    assert_string_equal(hl_db_col_text(st, 2), "l'été ? oui");
    assert_int_equal(hl_db_col_type(st, 3), HL_DB_BLOB);
    assert_int_equal(hl_db_col_bytes(st, 3), sizeof blob);
    assert_memory_equal(hl_db_col_blob(st, 3), blob, sizeof blob);
    assert_string_equal(hl_db_col_name(st, 4), "id");
    assert_int_equal(hl_db_col_type(st, 5), HL_DB_INTEGER); /* CAST(? AS INTEGER) */
    assert_int_equal(hl_db_step(st, &err), HL_DB_DONE);
    hl_db_done(st);
    /* the other row's NULLs */
    st = hl_db_query(f->db, &err, "SELECT r, s FROM t WHERE id = ?", "I", id2);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_true(hl_db_col_is_null(st, 0) && hl_db_col_is_null(st, 1));
    assert_null(hl_db_col_text(st, 1));
    hl_db_done(st);
    /* SUM of integers is numeric in PostgreSQL, an integer here; a comparison is 0 or 1 */
    assert_true(scalar(f->db, "SELECT SUM(n) FROM t") == 5000000007LL);
    st = hl_db_prepare(f->db, "SELECT SUM(n), COUNT(*) > 1 FROM t", &err);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_type(st, 0), HL_DB_INTEGER);
    assert_int_equal(hl_db_col_int64(st, 1), 1);
    hl_db_done(st);
    /* group_concat with its separator */
    st = hl_db_prepare(f->db, "SELECT group_concat(s, '|') FROM (SELECT 'a' AS s UNION ALL SELECT 'b') x", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_true(!strcmp(hl_db_col_text(st, 0), "a|b") || !strcmp(hl_db_col_text(st, 0), "b|a"));
    hl_db_done(st);
    /* changed rows */
    assert_int_equal(hl_db_run(f->db, &err, "UPDATE t SET s = ? WHERE n > ?", "si", "x", 0), 2);
    /* LIKE ignores ASCII case, as SQLite's */
    assert_int_equal(hl_db_run(f->db, &err, "UPDATE t SET s = 'Abc-Def' WHERE id = ?", "I", id2), 1);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM t WHERE s LIKE 'abc%'"), 1);
    /* a parameter whose type the server cannot infer */
    st = hl_db_query(f->db, &err, "SELECT ? IS NULL", "n");
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_int64(st, 0), 1);
    hl_db_done(st);
}

static void test_errors(void **state)
{
    fx *f = *state;
    NEED_PG(f);
    hl_err err = {0};
    assert_int_equal(hl_db_exec(f->db,
                                "CREATE TABLE p (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE);"
                                "CREATE TABLE c (id INTEGER PRIMARY KEY, p_id INTEGER NOT NULL REFERENCES p (id))",
                                &err),
                     HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (email) VALUES (?)", "s", "a@x"), 1);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (email) VALUES (?)", "s", "a@x"), HL_EUNIQUE);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO c (p_id) VALUES (?)", "i", 99), HL_EFOREIGN);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (email) VALUES (?)", "n"), HL_EINVAL);
    assert_non_null(strstr(hl_db_errmsg(f->db), "null"));
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (email) VALUES (?) ON CONFLICT (email) DO NOTHING", "s", "a@x"), 0);
    assert_null(hl_db_prepare(f->db, "  ; ", &err));
    assert_int_equal(hl_db_run(f->db, &err, "SELECT 1; SELECT 2", ""), HL_ERR);
}

static int tx_insert_then_fail(hl_db *db, void *ud, hl_err *err)
{
    (void)ud;
    int rc = hl_db_run(db, err, "INSERT INTO k (v) VALUES ('inner')", "");
    if (rc < 0)
        return rc;
    return hl_err_set(err, HL_EINVAL, "changed my mind");
}

static int tx_outer(hl_db *db, void *ud, hl_err *err)
{
    int rc = hl_db_run(db, err, "INSERT INTO k (v) VALUES ('outer')", "");
    if (rc < 0)
        return rc;
    hl_err inner = {0};
    assert_int_equal(hl_db_tx(db, tx_insert_then_fail, ud, &inner), HL_EINVAL);
    int64_t n;
    return hl_db_counter_next(db, "invoice:2026", &n, err);
}

static int idem_work(hl_db *db, void *ud, hl_db_result *res, hl_err *err)
{
    int *calls = ud;
    (*calls)++;
    int rc = hl_db_run(db, err, "INSERT INTO k (v) VALUES ('paid')", "");
    if (rc < 0)
        return rc;
    res->status = 201;
    res->body = strdup("{\"ok\":true}");
    return HL_OK;
}

static void test_transactions_money(void **state)
{
    fx *f = *state;
    NEED_PG(f);
    hl_err err = {0};
    char dir[] = "/tmp/hl_pg_mig_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/001_core.sql", dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    /* the core's money tables, as migration 010 makes them */
    fputs("CREATE TABLE hl_idempotency (scope TEXT NOT NULL, idem_key TEXT NOT NULL, fingerprint TEXT NOT NULL DEFAULT '',"
          " status INTEGER NOT NULL, body TEXT, created_at TEXT NOT NULL, PRIMARY KEY (scope, idem_key));\n"
          "CREATE TABLE hl_counters (scope TEXT PRIMARY KEY, value BIGINT NOT NULL);\n"
          "CREATE TABLE k (id INTEGER PRIMARY KEY, v TEXT NOT NULL);\n"
          "CREATE TABLE cat (id INTEGER PRIMARY KEY, name TEXT NOT NULL);\n"
          "INSERT INTO cat (id, name) VALUES (1, 'fruits'), (2, 'legumes');\n",
          fp);
    fclose(fp);
    int applied = 0;
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 1);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 1);
    /* the migration's rows with their ids: the next generated id follows them */
    int64_t cid;
    assert_int_equal(hl_db_insert(f->db, &err, &cid, "INSERT INTO cat (name) VALUES ('oeufs') RETURNING id", ""), HL_OK);
    assert_int_equal(cid, 3);
    unlink(path);
    rmdir(dir);

    /* a nested failure rolls back its savepoint only; the counter is gapless */
    assert_int_equal(hl_db_tx_durable(f->db, tx_outer, NULL, &err), HL_OK);
    assert_int_equal(hl_db_tx(f->db, tx_outer, NULL, &err), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM k WHERE v = 'outer'"), 2);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM k WHERE v = 'inner'"), 0);
    assert_int_equal(scalar(f->db, "SELECT value FROM hl_counters WHERE scope = 'invoice:2026'"), 2);
    assert_false(hl_db_in_tx(f->db));

    int calls = 0;
    hl_db_result res;
    assert_int_equal(hl_db_idempotent(f->db, "pay", "key-1", "fp", idem_work, &calls, &res, &err), HL_OK);
    assert_int_equal(res.status, 201);
    assert_false(res.replayed);
    hl_db_result_free(&res);
    assert_int_equal(hl_db_idempotent(f->db, "pay", "key-1", "fp", idem_work, &calls, &res, &err), HL_OK);
    assert_true(res.replayed);
    assert_string_equal(res.body, "{\"ok\":true}");
    hl_db_result_free(&res);
    assert_int_equal(hl_db_idempotent(f->db, "pay", "key-1", "other", idem_work, &calls, &res, &err), HL_ECONFLICT);
    hl_db_result_free(&res);
    assert_int_equal(calls, 1);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM k WHERE v = 'paid'"), 1);

    /* copied rows keep their ids; the next id follows them */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO k (id, v) VALUES (100, 'copied')", ""), 1);
    assert_int_equal(hl_db_sync_ids(f->db, "k", &err), HL_OK);
    int64_t id;
    assert_int_equal(hl_db_insert(f->db, &err, &id, "INSERT INTO k (v) VALUES ('new') RETURNING id", ""), HL_OK);
    assert_int_equal(id, 101);
    assert_int_equal(hl_db_sync_ids(f->db, "k; DROP TABLE k", &err), HL_EINVAL);
    assert_int_equal(hl_db_lock(f->db, "halle:migrate", 1, &err), HL_OK);
    assert_int_equal(hl_db_lock(f->db, "halle:migrate", 0, &err), HL_OK);
}

/* What a Lua plugin's SQL may do on PostgreSQL: its own tables, the readable columns, nothing
 * else, and no way back to the connection's own role. */
static void test_policy(void **state)
{
    fx *f = *state;
    NEED_PG(f);
    hl_err err = {0};
    assert_int_equal(hl_db_exec(f->db,
                                "CREATE TABLE hl_users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, password_hash TEXT);"
                                "INSERT INTO hl_users (name, password_hash) VALUES ('Ann', 'secret');"
                                "CREATE TABLE hl_sessions (id_hash TEXT PRIMARY KEY)",
                                &err),
                     HL_OK);
    static const char *const readable[] = {"hl_users", NULL};
    static const char *const hidden[] = {"hl_users.password_hash", NULL};
    hl_db_policy pol = {.owner = "luax", .prefix = "luax", .readable = readable, .hidden = hidden};
    assert_int_equal(hl_db_set_policy(f->db, &pol, &err), HL_OK);
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE luax_notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n"
                                       "CREATE INDEX luax_notes_body ON luax_notes (body)", &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO luax_notes (body) VALUES (?)", "s", "hello"), 1);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM luax_notes"), 1);
    hl_stmt *st = hl_db_prepare(f->db, "SELECT name FROM hl_users", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(st, 0), "Ann");
    hl_db_done(st);

    static const char *const refused[] = {
        "SELECT password_hash FROM hl_users",
        "SELECT * FROM hl_users",
        "SELECT id_hash FROM hl_sessions",
        "UPDATE hl_users SET name = 'x'",
        "DROP TABLE hl_users",
        "CREATE TABLE other_t (x INTEGER)",
        "CREATE TABLE luax_t2 AS SELECT * FROM hl_sessions",
        "ALTER TABLE luax_notes RENAME TO hl_evil",
        "CREATE VIEW luax_v AS SELECT 1",
        "CREATE FUNCTION luax_f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "RESET ROLE",
        "SET ROLE postgres",
        "SET search_path = public",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT pg_catalog.set_config('role', 'postgres', false)",
        "SELECT E'\\'', set_config('role', 'postgres', false) --'",
        "SELECT U&'\\0041', 1",
        "SELECT $x$ $x$, 1",
        "SELECT \"set_config\"('role', 'postgres', false)",
        "SELECT rolname FROM pg_roles",
        "SELECT table_name FROM information_schema.tables",
        "SELECT query_to_xml('SELECT 1', true, true, '')",
        "SELECT 1 INTO luax_copy",
        "COMMIT",
        "BEGIN",
        "DO $$ BEGIN RESET ROLE; END $$",
        "COPY hl_users TO STDOUT",
        "SELECT 1; SELECT 2",
        "DEALLOCATE ALL",
        "DISCARD ALL",
        "LOCK TABLE hl_users",
        NULL};
    for (int i = 0; refused[i]; i++) {
        hl_err e = {0};
        st = hl_db_prepare(f->db, refused[i], &e);
        int rc = st ? hl_db_step(st, &e) : e.code;
        hl_db_done(st);
        if (rc >= 0)
            fail_msg("plugin SQL was not refused: %s", refused[i]);
    }
    /* a refused literal statement in a migration stops the rest */
    assert_int_not_equal(hl_db_exec(f->db, "CREATE TABLE luax_a (x INTEGER); RESET ROLE", &err), HL_OK);
    /* the plugin's role stayed in force through all of it, and only the policy ends it */
    st = hl_db_prepare(f->db, "SELECT COUNT(*) FROM luax_notes", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    hl_db_done(st);
    assert_int_equal(hl_db_set_policy(f->db, NULL, &err), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM hl_users WHERE password_hash = 'secret'"), 1);
    assert_int_equal(scalar(f->db, "SELECT current_user = session_user"), 1);
    /* the plugin's table lives in its schema, owned by its role; trusted code names it as on
     * SQLite, on this connection and on a new one */
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM hlp_luax.luax_notes"), 1);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM luax_notes"), 1);
    hl_db *other = hl_db_open(f->uri, 0, &err);
    assert_non_null(other);
    assert_int_equal(scalar(other, "SELECT COUNT(*) FROM luax_notes"), 1);
    hl_db_close(other);
}

/* The server ends the session (a restart, an administrator): the next statement connects again. */
static void test_reconnect(void **state)
{
    fx *f = *state;
    NEED_PG(f);
    hl_err err = {0};
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT)", &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO r (v) VALUES (?)", "s", "kept"), 1);
    int64_t pid = scalar(f->db, "SELECT pg_backend_pid()");
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld)", (long long)pid);
    assert_int_equal(admin_exec(sql), 0);
    usleep(200 * 1000);
    assert_int_equal(scalar(f->db, "SELECT COUNT(*) FROM r"), 1);
    assert_true(scalar(f->db, "SELECT pg_backend_pid()") != pid);
    /* prepared statements are made again on the new session */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO r (v) VALUES (?)", "s", "new"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_backend_and_redact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transactions_money, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
    };
    return cmocka_run_group_tests_name("db_pg", tests, NULL, NULL);
}
