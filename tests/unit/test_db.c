/* Unit tests for the storage layer (core/db.c): opening, binding, statement cache,
 * transactions, migrations and plugin access policies, run against real SQLite files in a
 * temporary directory. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/testutil.h"

#include "core/db.h"
#include "core/log.h"

typedef struct {
    char dir[64];
    char path[128];
    hl_db *db;
} fx;


static int setup(void **state)
{
    hl_err err = {0};
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/hl_db_test_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/main.db", f->dir);
    f->db = hl_db_open(f->path, HL_DB_CREATE, &err);
    if (!f->db) {
        fprintf(stderr, "setup: %s\n", err.msg);
        hl_test_rm_rf(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    hl_db_close(f->db);
    hl_test_rm_rf(f->dir);
    free(f);
    return 0;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static void make_dir(const char *base, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", base, name);
    assert_int_equal(mkdir(out, 0700), 0);
}

/* Single integer result of a query without parameters. */
static int64_t scalar(hl_db *db, const char *sql)
{
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err, sql, NULL);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    int64_t v = hl_db_col_int64(st, 0);
    hl_db_done(st);
    return v;
}

static int table_exists(hl_db *db, const char *name)
{
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err,
                              "SELECT count(*) FROM sqlite_master"
                              " WHERE type = 'table' AND name = ?",
                              "s", name);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    int n = (int)hl_db_col_int64(st, 0);
    hl_db_done(st);
    return n;
}

/* ---------------------------------------------------------------- open */

static void test_open_create_mode(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char p[256], wal[300];
    struct stat sb;

    /* A permissive umask must not leak into the file mode. */
    mode_t old = umask(0);
    snprintf(p, sizeof p, "%s/fresh.db", f->dir);
    hl_db *db = hl_db_open(p, HL_DB_CREATE, &err);
    umask(old);
    assert_non_null(db);
    assert_string_equal(hl_db_path(db), p);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(hl_db_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1)", &err), HL_OK);
    snprintf(wal, sizeof wal, "%s-wal", p);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    hl_db_close(db);

    /* Re-opening an existing file with CREATE keeps its data. */
    db = hl_db_open(p, HL_DB_CREATE, &err);
    assert_non_null(db);
    assert_int_equal(scalar(db, "SELECT x FROM t"), 1);
    hl_db_close(db);

    /* Without CREATE a missing file is an error naming it. */
    snprintf(p, sizeof p, "%s/absent.db", f->dir);
    assert_null(hl_db_open(p, 0, &err));
    assert_non_null(strstr(err.msg, "cannot open database"));
    assert_non_null(strstr(err.msg, p));
    assert_int_not_equal(stat(p, &sb), 0);
}

static void test_open_missing_dir(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char p[256];

    snprintf(p, sizeof p, "%s/no/such/dir/x.db", f->dir);
    assert_null(hl_db_open(p, HL_DB_CREATE, &err));
    assert_true(err.code < 0);
    assert_non_null(strstr(err.msg, "cannot open database"));
    assert_non_null(strstr(err.msg, p));

    hl_err_clear(&err);
    assert_null(hl_db_open(p, 0, &err));
    assert_true(err.code < 0);
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "unable to open database file"));
}

static void test_open_bad_input(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char p[256], cwd[1024];
    struct stat sb;

    assert_null(hl_db_open(NULL, HL_DB_CREATE, &err));
    assert_int_equal(err.code, HL_EINVAL);
    assert_null(hl_db_open("", HL_DB_CREATE, &err));
    assert_int_equal(err.code, HL_EINVAL);
    assert_null(hl_db_open(f->path, 0x80, &err));
    assert_int_equal(err.code, HL_EINVAL);
    assert_null(hl_db_open(f->path, HL_DB_CREATE | HL_DB_READONLY, NULL));

    /* A file that is not a database. */
    char junk[4096];
    memset(junk, 'A', sizeof junk - 1);
    junk[sizeof junk - 1] = '\0';
    write_file(f->dir, "junk.db", junk);
    snprintf(p, sizeof p, "%s/junk.db", f->dir);
    assert_null(hl_db_open(p, HL_DB_CREATE, &err));
    assert_non_null(strstr(err.msg, p));
    assert_non_null(strstr(err.msg, "not a database"));
    assert_int_equal(stat(p, &sb), 0); /* not ours: left alone */

    /* "file:" names are files, not URIs that could pick other options. */
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    hl_db *db = hl_db_open("file:odd.db?mode=memory", HL_DB_CREATE, &err);
    int ok = db != NULL;
    int exists = stat("file:odd.db?mode=memory", &sb) == 0;
    hl_db_close(db);
    assert_int_equal(chdir(cwd), 0);
    assert_true(ok);
    assert_true(exists);
}

static void test_pragmas(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_stmt *st = hl_db_query(f->db, &err, "PRAGMA journal_mode", NULL);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(st, 0), "wal");
    hl_db_done(st);
    assert_int_equal(scalar(f->db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(scalar(f->db, "PRAGMA synchronous"), 1); /* NORMAL */
    assert_int_equal(scalar(f->db, "PRAGMA busy_timeout"), 5000);
}

static void test_busy_timeout(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    struct timespec t0, t1;

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t(x)", &err), HL_OK);
    hl_db *other = hl_db_open(f->path, 0, &err);
    assert_non_null(other);
    assert_int_equal(hl_db_exec(other, "PRAGMA busy_timeout=100", &err), HL_OK);

    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (?)", "i", 1), 1);

    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(hl_db_run(other, &err, "INSERT INTO t VALUES (?)", "i", 2), HL_EBUSY);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 80);
    assert_true(ms < 4000);
    assert_int_equal(err.code, HL_EBUSY);
    assert_non_null(strstr(err.msg, "locked"));
    assert_int_equal(hl_db_begin(other, &err), HL_EBUSY);

    /* Readers are not blocked by the writer (WAL) and see the committed state. */
    assert_int_equal(scalar(other, "SELECT count(*) FROM t"), 0);

    assert_int_equal(hl_db_commit(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(other, &err, "INSERT INTO t VALUES (?)", "i", 2), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 2);
    hl_db_close(other);
}

/* ---------------------------------------------------------------- binding */

static void test_bind_types(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    const unsigned char blob[] = {0, 1, 2, 0, 255};
    int64_t big = INT64_C(9007199254740993); /* not representable as a double */

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE v(i, big, d, s, t, b, n)", &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?)",
                               "iIdstbn", -7, big, 3.25, "h\xc3\xa9llo", "abcdef", (size_t)3,
                               blob, sizeof blob),
                     1);
    assert_int_equal(hl_db_last_insert_id(f->db), 1);

    hl_stmt *st = hl_db_query(f->db, &err, "SELECT * FROM v WHERE i = ?", "i", -7);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_count(st), 7);
    assert_string_equal(hl_db_col_name(st, 1), "big");
    assert_int_equal(hl_db_col_type(st, 0), HL_DB_INTEGER);
    assert_int_equal(hl_db_col_int64(st, 0), -7);
    assert_true(hl_db_col_int64(st, 1) == big);
    assert_int_equal(hl_db_col_type(st, 2), HL_DB_FLOAT);
    assert_true(hl_db_col_double(st, 2) == 3.25);
    assert_int_equal(hl_db_col_type(st, 3), HL_DB_TEXT);
    assert_string_equal(hl_db_col_text(st, 3), "h\xc3\xa9llo");
    assert_string_equal(hl_db_col_text(st, 4), "abc");
    assert_int_equal(hl_db_col_bytes(st, 4), 3);
    assert_int_equal(hl_db_col_type(st, 5), HL_DB_BLOB);
    const void *b = hl_db_col_blob(st, 5);
    assert_int_equal(hl_db_col_bytes(st, 5), sizeof blob);
    assert_memory_equal(b, blob, sizeof blob);
    assert_int_equal(hl_db_col_type(st, 6), HL_DB_NULL);
    assert_int_equal(hl_db_step(st, &err), HL_DB_DONE);
    hl_db_done(st);

    /* The explicit binders and hl_db_bindv on a prepared statement. */
    st = hl_db_prepare(f->db, "INSERT INTO v (i, big, d, s, b) VALUES (?, ?, ?, ?, ?)", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_bind_int64(st, 1, 8), HL_OK);
    assert_int_equal(hl_db_bind_int64(st, 2, INT64_MIN), HL_OK);
    assert_int_equal(hl_db_bind_double(st, 3, -0.5), HL_OK);
    char text[] = "copy\0me";
    assert_int_equal(hl_db_bind_text(st, 4, text, 7), HL_OK);
    assert_int_equal(hl_db_bind_blob(st, 5, "xyz", 3), HL_OK);
    text[0] = 'X'; /* bound values were copied */
    assert_int_equal(hl_db_bind_int64(st, 6, 1), HL_EINVAL); /* out of range */
    assert_int_equal(hl_db_bind_null(st, 0), HL_EINVAL);
    assert_int_equal(hl_db_step(st, &err), HL_DB_DONE);
    hl_db_done(st);
    st = hl_db_query(f->db, &err, "SELECT big, d, s, length(s), b FROM v WHERE i = ?", "I",
                     (int64_t)8);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_true(hl_db_col_int64(st, 0) == INT64_MIN);
    assert_true(hl_db_col_double(st, 1) == -0.5);
    assert_int_equal(hl_db_col_bytes(st, 2), 7);
    assert_memory_equal(hl_db_col_text(st, 2), "copy\0me", 7);
    assert_memory_equal(hl_db_col_blob(st, 4), "xyz", 3);
    hl_db_done(st);

    st = hl_db_prepare(f->db, "SELECT ? || ?", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_bindv(st, "si", "n", 5), HL_OK);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(st, 0), "n5");
    hl_db_done(st);
}

static void test_null_handling(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE n(a, b, c, d, e)", &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO n VALUES (?, ?, ?, ?, ?)", "stnbb",
                               (const char *)NULL, (const char *)NULL, (size_t)5,
                               (const void *)NULL, (size_t)0, "\0", (size_t)1),
                     1);
    hl_stmt *st = hl_db_query(f->db, &err,
                              "SELECT a, b, c, d, e, typeof(d), a IS NULL FROM n", "");
    assert_non_null(st);
    /* Before the first step there is no row to read. */
    assert_null(hl_db_col_text(st, 0));
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(hl_db_col_type(st, i), HL_DB_NULL);
        assert_null(hl_db_col_text(st, i));
        assert_int_equal(hl_db_col_bytes(st, i), 0);
        assert_int_equal(hl_db_col_int64(st, i), 0);
    }
    /* A NULL pointer with length 0 is an empty blob, not SQL NULL. */
    assert_string_equal(hl_db_col_text(st, 5), "blob");
    assert_int_equal(hl_db_col_bytes(st, 3), 0);
    assert_int_equal(hl_db_col_bytes(st, 4), 1);
    assert_int_equal(hl_db_col_int64(st, 6), 1);
    /* Columns out of range read as NULL. */
    assert_null(hl_db_col_text(st, 7));
    assert_null(hl_db_col_text(st, -1));
    assert_null(hl_db_col_blob(st, 99));
    assert_int_equal(hl_db_col_type(st, 99), HL_DB_NULL);
    assert_int_equal(hl_db_col_int64(st, -5), 0);
    assert_true(hl_db_col_double(st, 100) == 0.0);
    assert_null(hl_db_col_name(st, 7));
    assert_int_equal(hl_db_col_bytes(st, 7), 0);
    hl_db_done(st);

    /* A NULL blob with a length is a caller bug. */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO n (a) VALUES (?)", "b",
                               (const void *)NULL, (size_t)3),
                     HL_EINVAL);
    assert_non_null(strstr(err.msg, "parameter 1"));
    st = hl_db_prepare(f->db, "SELECT ?", &err);
    assert_int_equal(hl_db_bind_text(st, 1, NULL, 10), HL_OK);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_type(st, 0), HL_DB_NULL);
    hl_db_done(st);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM n"), 1);
}

static void test_param_count(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_run(f->db, &err, "SELECT ?, ?", "i", 1), HL_EINVAL);
    assert_non_null(strstr(err.msg, "2 parameter"));
    assert_int_equal(hl_db_run(f->db, &err, "SELECT ?, ?", "iii", 1, 2, 3), HL_EINVAL);
    assert_int_equal(hl_db_run(f->db, &err, "SELECT ?", NULL), HL_EINVAL);
    assert_int_equal(hl_db_run(f->db, &err, "SELECT 1", "i", 1), HL_EINVAL);
    assert_null(hl_db_query(f->db, &err, "SELECT ?1, ?2", "s", "x"));
    assert_int_equal(err.code, HL_EINVAL);

    /* No parameters: NULL and "" both work. */
    assert_int_equal(hl_db_run(f->db, &err, "SELECT 1", NULL), 0);
    assert_int_equal(hl_db_run(f->db, &err, "SELECT 1", ""), 0);
    /* Numbered parameters count by their highest index. */
    hl_stmt *st = hl_db_query(f->db, &err, "SELECT ?2 - ?1", "ii", 10, 50);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_int64(st, 0), 40);
    hl_db_done(st);
    /* A failed query gave its statement back: the same SQL is usable again. */
    st = hl_db_query(f->db, &err, "SELECT ?1, ?2", "ss", "x", "y");
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(st, 1), "y");
    hl_db_done(st);
}

static void test_unknown_type(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_run(f->db, &err, "SELECT ?", "x", 1), HL_EINVAL);
    assert_non_null(strstr(err.msg, "'x'"));
    assert_int_equal(hl_db_run(f->db, &err, "SELECT ?, ?", "i\x01", 1, 2), HL_EINVAL);
    assert_non_null(strstr(err.msg, "0x01"));
    assert_int_equal(hl_db_run(f->db, &err, "SELECT ?", "\xff", 1), HL_EINVAL);
    assert_non_null(strstr(err.msg, "0xff"));

    hl_stmt *st = hl_db_prepare(f->db, "SELECT ?", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_bindv(st, "q", 1), HL_EINVAL);
    assert_int_equal(hl_db_bindv(st, "ii", 1, 2), HL_EINVAL);
    hl_db_done(st);
    assert_int_equal(hl_db_bindv(NULL, "i", 1), HL_EINVAL);
}

/* ---------------------------------------------------------------- statement cache */

static void test_cache_reuse(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    const char *sql = "SELECT ? + 1";

    hl_stmt *a = hl_db_prepare(f->db, sql, &err);
    assert_non_null(a);
    assert_int_equal(hl_db_bindv(a, "i", 1), HL_OK);
    assert_int_equal(hl_db_step(a, &err), HL_DB_ROW);
    hl_db_done(a);

    hl_stmt *b = hl_db_prepare(f->db, sql, &err);
    assert_ptr_equal(a, b);
    /* It came back reset and unbound. */
    assert_int_equal(hl_db_step(b, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_type(b, 0), HL_DB_NULL);

    /* Still in use: a second request gets a different statement. */
    hl_stmt *c = hl_db_prepare(f->db, sql, &err);
    assert_non_null(c);
    assert_ptr_not_equal(b, c);
    assert_int_equal(hl_db_bindv(c, "i", 41), HL_OK);
    assert_int_equal(hl_db_step(c, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_int64(c, 0), 42);
    hl_db_done(c);
    hl_db_done(b);
    assert_ptr_equal(hl_db_prepare(f->db, sql, &err), a);
    hl_db_done(a);

    /* Stepping a statement given back is refused. */
    assert_int_equal(hl_db_step(a, &err), HL_EINVAL);
}

static void test_cache_nested_loops(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    const char *sql = "SELECT x FROM t ORDER BY x";
    int pairs = 0;

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2), (3)",
                                &err),
                     HL_OK);
    hl_stmt *outer = hl_db_query(f->db, &err, sql, NULL);
    assert_non_null(outer);
    while (hl_db_step(outer, &err) == HL_DB_ROW) {
        hl_stmt *inner = hl_db_query(f->db, &err, sql, NULL);
        assert_non_null(inner);
        assert_ptr_not_equal(inner, outer);
        while (hl_db_step(inner, &err) == HL_DB_ROW)
            pairs += (int)(hl_db_col_int64(outer, 0) * hl_db_col_int64(inner, 0));
        hl_db_done(inner);
    }
    hl_db_done(outer);
    assert_int_equal(pairs, 36);
}

static int64_t stmt_count(hl_db *db, const char *sql)
{
    hl_err err = {0};
    hl_stmt *st = sql ? hl_db_query(db, &err, "SELECT count(*) FROM sqlite_stmt WHERE sql = ?",
                                    "s", sql)
                      : hl_db_query(db, &err, "SELECT count(*) FROM sqlite_stmt", NULL);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    int64_t n = hl_db_col_int64(st, 0);
    hl_db_done(st);
    return n;
}

static void test_cache_eviction(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char sql[64];

    hl_stmt *probe = hl_db_prepare(f->db, "SELECT count(*) FROM sqlite_stmt", &err);
    if (!probe)
        skip(); /* SQLite built without the sqlite_stmt table */
    hl_db_done(probe);

    hl_stmt *held = hl_db_prepare(f->db, "SELECT 'held'", &err);
    assert_non_null(held);
    for (int i = 0; i < 300; i++) {
        snprintf(sql, sizeof sql, "SELECT %d", i);
        hl_stmt *st = hl_db_prepare(f->db, sql, &err);
        assert_non_null(st);
        assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
        assert_int_equal(hl_db_col_int64(st, 0), i);
        hl_db_done(st);
    }
    /* Bounded: at most 128 live statements (the counting query included). */
    int64_t live = stmt_count(f->db, NULL);
    assert_true(live <= 128);
    assert_true(live >= 100);
    /* The statement in use was not evicted. */
    assert_int_equal(hl_db_step(held, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(held, 0), "held");
    assert_int_equal(stmt_count(f->db, "SELECT 'held'"), 1);
    hl_db_done(held);
    assert_int_equal(stmt_count(f->db, "SELECT 0"), 0);
    assert_int_equal(stmt_count(f->db, "SELECT 299"), 1);

    /* Least recently used goes first: touch 250, then push 80 more in, enough to evict
     * everything older than 251 but not 299. */
    hl_db_done(hl_db_prepare(f->db, "SELECT 250", &err));
    for (int i = 0; i < 80; i++) {
        snprintf(sql, sizeof sql, "SELECT 'more %d'", i);
        hl_db_done(hl_db_prepare(f->db, sql, &err));
    }
    assert_int_equal(stmt_count(f->db, "SELECT 250"), 1);
    assert_int_equal(stmt_count(f->db, "SELECT 251"), 0);
    assert_int_equal(stmt_count(f->db, "SELECT 299"), 1);

    /* With every slot held, extra statements are one-offs and still work. */
    hl_stmt *all[130];
    for (int i = 0; i < 130; i++) {
        snprintf(sql, sizeof sql, "SELECT %d + 1000", i);
        all[i] = hl_db_prepare(f->db, sql, &err);
        assert_non_null(all[i]);
    }
    for (int i = 0; i < 130; i++) {
        assert_int_equal(hl_db_step(all[i], &err), HL_DB_ROW);
        assert_int_equal(hl_db_col_int64(all[i], 0), i + 1000);
        hl_db_done(all[i]);
    }
}

static void test_prepare_errors(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_null(hl_db_prepare(f->db, "SELEC 1", &err));
    assert_true(err.code < 0);
    assert_non_null(strstr(err.msg, "syntax error"));
    assert_null(hl_db_prepare(f->db, "   ", &err));
    assert_int_equal(err.code, HL_EINVAL);
    assert_null(hl_db_prepare(f->db, "", &err));
    assert_null(hl_db_prepare(f->db, NULL, &err));
    assert_null(hl_db_prepare(NULL, "SELECT 1", &err));
    assert_int_equal(err.code, HL_EINVAL);
    /* Trailing whitespace and comments are fine; a second statement is not. */
    hl_stmt *st = hl_db_prepare(f->db, "SELECT 1; -- done\n ", &err);
    assert_non_null(st);
    hl_db_done(st);
    assert_null(hl_db_prepare(f->db, "SELECT 1; SELECT 2", &err));
    assert_int_equal(err.code, HL_EINVAL);
    assert_non_null(strstr(err.msg, "more than one statement"));

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE (", &err), HL_ERR);
    assert_non_null(strstr(err.msg, "syntax error"));
    assert_int_equal(hl_db_exec(NULL, "SELECT 1", &err), HL_EINVAL);
    assert_int_equal(hl_db_exec(f->db, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_step(NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_bind_int64(NULL, 1, 1), HL_EINVAL);
    assert_int_equal(hl_db_bind_text(NULL, 1, "x", 1), HL_EINVAL);
    assert_int_equal(hl_db_col_count(NULL), 0);
    assert_null(hl_db_col_text(NULL, 0));
    assert_int_equal(hl_db_last_insert_id(NULL), 0);
    assert_null(hl_db_path(NULL));
    hl_db_done(NULL);
    hl_db_close(NULL);
}

static void test_constraints(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_exec(f->db,
                                "CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
                                " n INTEGER CHECK (n >= 0));"
                                "CREATE TABLE c(pid INTEGER REFERENCES p(id))",
                                &err),
                     HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name, n) VALUES (?, ?)", "si", "a", 1),
                     1);
    /* a unique violation is told apart from bad input (NOT NULL, CHECK below) */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name, n) VALUES (?, ?)", "si", "a", 2),
                     HL_EUNIQUE);
    assert_non_null(strstr(err.msg, "UNIQUE"));
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (id, name) VALUES (?, ?)", "is", 1, "z"),
                     HL_EUNIQUE);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name) VALUES (?)", "n"), HL_EINVAL);
    assert_non_null(strstr(err.msg, "NOT NULL"));
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name, n) VALUES (?, ?)", "si", "b", -1),
                     HL_EINVAL);
    assert_non_null(strstr(err.msg, "CHECK"));
    /* foreign_keys=ON is in effect. */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO c VALUES (?)", "i", 99), HL_EFOREIGN);
    assert_non_null(strstr(err.msg, "FOREIGN KEY"));
    /* a step given no hl_err keeps the message on the connection */
    hl_stmt *st = hl_db_query(f->db, &err, "INSERT INTO p (name, n) VALUES (?, ?)", "si", "a", 3);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, NULL), HL_EUNIQUE);
    hl_db_done(st);
    assert_non_null(strstr(hl_db_errmsg(f->db), "UNIQUE constraint failed: p.name"));
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO c VALUES (?)", "i", 1), 1);
    assert_int_equal(hl_db_run(f->db, &err, "UPDATE p SET n = n + ?", "i", 1), 1);
    assert_int_equal(hl_db_run(f->db, &err, "DELETE FROM c WHERE pid = ?", "i", 5), 0);
}

/* ---------------------------------------------------------------- transactions */

static void test_tx_basic(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t(x)", &err), HL_OK);
    assert_int_equal(hl_db_commit(f->db, &err), HL_EINVAL);
    assert_int_equal(hl_db_rollback(f->db), HL_EINVAL);
    assert_int_equal(hl_db_rollback(NULL), HL_EINVAL);

    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (?)", "i", 1), 1);
    assert_int_equal(hl_db_commit(f->db, &err), HL_OK);

    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (?)", "i", 2), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 2);
    assert_int_equal(hl_db_rollback(f->db), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 1);
    assert_int_equal(scalar(f->db, "SELECT x FROM t"), 1);
}

static void test_tx_nested(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t(x)", &err), HL_OK);
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (1)", NULL), 1);
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (2)", NULL), 1);
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (3)", NULL), 1);
    assert_int_equal(hl_db_commit(f->db, &err), HL_OK); /* 3 folds into level 2 */
    assert_int_equal(hl_db_rollback(f->db), HL_OK);     /* drops 2 and 3 */
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (4)", NULL), 1);
    assert_int_equal(hl_db_commit(f->db, &err), HL_OK);
    assert_int_equal(hl_db_commit(f->db, &err), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 2);
    assert_int_equal(scalar(f->db, "SELECT sum(x) FROM t"), 5);
    assert_int_equal(hl_db_commit(f->db, &err), HL_EINVAL);

    /* An outer rollback undoes committed inner levels too. */
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO t VALUES (100)", NULL), 1);
    assert_int_equal(hl_db_commit(f->db, &err), HL_OK);
    assert_int_equal(hl_db_rollback(f->db), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT sum(x) FROM t"), 5);
}

typedef struct {
    int value;
    int fail;
    int inner; /* run a nested failing transaction */
} tx_arg;

static int tx_insert(hl_db *db, void *ud, hl_err *err)
{
    tx_arg *a = ud;
    int rc = hl_db_run(db, err, "INSERT INTO t VALUES (?)", "i", a->value);
    if (rc < 0)
        return rc;
    if (a->inner) {
        tx_arg in = {a->value * 10, 1, 0};
        if (hl_db_tx(db, tx_insert, &in, err) != HL_EINVAL)
            return HL_ERR;
    }
    if (a->fail)
        return hl_err_set(err, HL_EINVAL, "refused %d", a->value);
    return HL_OK;
}

static void test_tx_fn(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t(x)", &err), HL_OK);
    tx_arg ok = {1, 0, 0}, bad = {2, 1, 0}, nest = {3, 0, 1};
    assert_int_equal(hl_db_tx(f->db, tx_insert, &ok, &err), HL_OK);
    assert_int_equal(hl_db_tx(f->db, tx_insert, &bad, &err), HL_EINVAL);
    assert_string_equal(err.msg, "refused 2");
    assert_int_equal(hl_db_tx(f->db, tx_insert, &nest, &err), HL_OK);
    /* 1 and 3 kept; 2 and the inner 30 rolled back. */
    assert_int_equal(scalar(f->db, "SELECT sum(x) FROM t"), 4);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 2);
    assert_int_equal(hl_db_tx(f->db, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_tx(NULL, tx_insert, &ok, &err), HL_EINVAL);
    /* Depth is balanced again: a plain commit has nothing to commit. */
    assert_int_equal(hl_db_commit(f->db, &err), HL_EINVAL);
}

/* ---------------------------------------------------------------- migrations */

static void test_migrate_basic(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char dir[256];
    int applied = -1;

    make_dir(f->dir, "mig", dir, sizeof dir);
    write_file(dir, "001_init.sql", "CREATE TABLE a(x INTEGER);\n");
    write_file(dir, "002_more-data.sql", "CREATE TABLE b(y); INSERT INTO a VALUES (7);");
    /* Names that are not migrations are ignored. */
    write_file(dir, "README.md", "not sql");
    write_file(dir, "01_short.sql", "DROP TABLE a;");
    write_file(dir, "004_x.sql.bak", "DROP TABLE a;");
    write_file(dir, "005_bad name.sql", "DROP TABLE a;");
    write_file(dir, "006.sql", "DROP TABLE a;");
    write_file(dir, "007_.sql", "DROP TABLE a;");
    write_file(dir, ".008_hidden.sql", "DROP TABLE a;");

    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 0);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 2);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 2);
    assert_int_equal(scalar(f->db, "SELECT x FROM a"), 7);
    assert_int_equal(table_exists(f->db, "b"), 1);

    hl_stmt *st = hl_db_query(f->db, &err,
                              "SELECT name, applied_at FROM hl_migrations WHERE component = ? "
                              "ORDER BY version",
                              "s", "core");
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(st, 0), "001_init.sql");
    const char *at = hl_db_col_text(st, 1);
    assert_int_equal(strlen(at), 20);
    assert_true(at[4] == '-' && at[10] == 'T' && at[13] == ':' && at[19] == 'Z');
    assert_true(!strncmp(at, "20", 2));
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(st, 0), "002_more-data.sql");
    assert_int_equal(hl_db_step(st, &err), HL_DB_DONE);
    hl_db_done(st);

    /* A new file: only it runs. */
    write_file(dir, "003_third.sql", "INSERT INTO a VALUES (8);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 1);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 3);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM a"), 2);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM a"), 2);

    /* Components are independent. */
    assert_int_equal(hl_db_schema_version(f->db, "market", &err), 0);
    assert_int_equal(hl_db_migrate_one(f->db, "market", 1, "embedded", "CREATE TABLE m(z);", &err),
                     HL_OK);
    assert_int_equal(hl_db_schema_version(f->db, "market", &err), 1);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 3);
    assert_int_equal(hl_db_migrate_one(f->db, "market", 1, "again", "CREATE TABLE m2(z);", &err),
                     HL_EINVAL);
    assert_non_null(strstr(err.msg, "already applied"));
    assert_int_equal(table_exists(f->db, "m2"), 0);
}

static void test_migrate_failure(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char dir[256];
    int applied = -1;

    make_dir(f->dir, "mig", dir, sizeof dir);
    write_file(dir, "001_ok.sql", "CREATE TABLE a(x);");
    write_file(dir, "002_bad.sql",
               "CREATE TABLE later(x);\nINSERT INTO later VALUES (1);\n"
               "INSERT INTO nosuch VALUES (1);");
    write_file(dir, "003_next.sql", "CREATE TABLE never(x);");

    assert_int_not_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_non_null(strstr(err.msg, "migration core/002_bad.sql failed: "));
    assert_non_null(strstr(err.msg, "no such table: nosuch"));
    assert_int_equal(applied, 1);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 1);
    assert_int_equal(table_exists(f->db, "a"), 1);
    assert_int_equal(table_exists(f->db, "later"), 0);
    assert_int_equal(table_exists(f->db, "never"), 0);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM hl_migrations"), 1);
    /* Nothing left open. */
    assert_int_equal(hl_db_commit(f->db, &err), HL_EINVAL);

    write_file(dir, "002_bad.sql", "CREATE TABLE later(x);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 2);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 3);
}

static void test_migrate_numbering(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char dir[256];

    make_dir(f->dir, "gap", dir, sizeof dir);
    write_file(dir, "001_a.sql", "CREATE TABLE a(x);");
    write_file(dir, "003_c.sql", "CREATE TABLE c(x);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "gap"));
    assert_non_null(strstr(err.msg, "001_a.sql"));
    assert_non_null(strstr(err.msg, "003_c.sql"));
    /* Checked before anything runs. */
    assert_int_equal(table_exists(f->db, "a"), 0);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 0);

    make_dir(f->dir, "dup", dir, sizeof dir);
    write_file(dir, "001_a.sql", "CREATE TABLE a(x);");
    write_file(dir, "002_b.sql", "CREATE TABLE b(x);");
    write_file(dir, "0002_b2.sql", "CREATE TABLE b2(x);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "0002_b2.sql"));
    assert_non_null(strstr(err.msg, "002_b.sql"));
    assert_int_equal(table_exists(f->db, "a"), 0);

    make_dir(f->dir, "start", dir, sizeof dir);
    write_file(dir, "002_b.sql", "CREATE TABLE b(x);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "002_b.sql"));

    make_dir(f->dir, "zero", dir, sizeof dir);
    write_file(dir, "000_z.sql", "CREATE TABLE z(x);");
    write_file(dir, "001_a.sql", "CREATE TABLE a(x);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "000_z.sql"));

    make_dir(f->dir, "huge", dir, sizeof dir);
    write_file(dir, "99999999999999999999999_x.sql", "CREATE TABLE h(x);");
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "99999999999999999999999_x.sql"));

    /* An empty directory is simply nothing to do. */
    int applied = -1;
    make_dir(f->dir, "empty", dir, sizeof dir);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(table_exists(f->db, "a"), 0);
}

static void test_migrate_missing_dir(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char dir[256];
    int applied = -1;

    snprintf(dir, sizeof dir, "%s/nowhere", f->dir);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_ENOTFOUND);
    assert_non_null(strstr(err.msg, dir));
    assert_int_equal(applied, 0);
}

static void test_migrate_hostile(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char dir[256], p[512];

    /* Over 1 MB. */
    make_dir(f->dir, "big", dir, sizeof dir);
    size_t n = 1024 * 1024 + 16;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memcpy(big, "-- ", 3);
    memset(big + 3, 'x', n - 3);
    big[n] = '\0';
    write_file(dir, "001_big.sql", big);
    free(big);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "001_big.sql"));
    assert_non_null(strstr(err.msg, "1 MB"));

    /* A directory and a FIFO with migration names: refused, no hang. */
    make_dir(f->dir, "odd", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/001_dir.sql", dir);
    assert_int_equal(mkdir(p, 0700), 0);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "001_dir.sql"));
    make_dir(f->dir, "fifo", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/001_fifo.sql", dir);
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));

    /* A NUL byte would hide the rest of the file from SQLite. */
    make_dir(f->dir, "nul", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/001_nul.sql", dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fwrite("CREATE TABLE a(x);\0DROP TABLE a;", 1, 32, fp);
    fclose(fp);
    assert_int_equal(hl_db_migrate(f->db, "core", dir, NULL, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "NUL"));
    assert_int_equal(table_exists(f->db, "a"), 0);

    /* A file that manages its own transaction is refused and leaves no record. */
    assert_int_not_equal(hl_db_migrate_one(f->db, "core", 1, "001_tx.sql",
                                           "BEGIN; CREATE TABLE t1(x); COMMIT;", &err),
                         HL_OK);
    assert_non_null(strstr(err.msg, "migration core/001_tx.sql failed"));
    assert_int_equal(table_exists(f->db, "t1"), 0);
    assert_int_not_equal(hl_db_migrate_one(f->db, "core", 1, "001_commit.sql",
                                           "CREATE TABLE t2(x); COMMIT;", &err),
                         HL_OK);
    assert_non_null(strstr(err.msg, "transaction"));
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 0);
    assert_int_equal(hl_db_commit(f->db, &err), HL_EINVAL);

    /* Bad arguments. */
    assert_int_equal(hl_db_migrate(f->db, "../etc", dir, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate(f->db, "", dir, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate(f->db, NULL, dir, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate(f->db, "core", NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate(NULL, "core", dir, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate_one(f->db, "core", 0, "x", "SELECT 1;", &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate_one(f->db, "core", -3, "x", "SELECT 1;", &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate_one(f->db, "core", 1, "", "SELECT 1;", &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate_one(f->db, "core", 1, "x", NULL, &err), HL_EINVAL);
    assert_int_equal(hl_db_migrate_one(f->db, "a b", 1, "x", "SELECT 1;", &err), HL_EINVAL);
    assert_int_equal(hl_db_schema_version(f->db, "x'--", &err), HL_EINVAL);
    assert_int_equal(hl_db_schema_version(NULL, "core", &err), HL_EINVAL);
}

/* ---------------------------------------------------------------- misc */

static void test_archive_file(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char p[256];

    snprintf(p, sizeof p, "%s/archive.db", f->dir);
    hl_db *arc = hl_db_open(p, HL_DB_CREATE, &err);
    assert_non_null(arc);
    assert_string_equal(hl_db_path(arc), p);
    assert_string_not_equal(hl_db_path(arc), hl_db_path(f->db));
    const char *schema = "CREATE TABLE log(msg TEXT)";
    assert_int_equal(hl_db_exec(f->db, schema, &err), HL_OK);
    assert_int_equal(hl_db_exec(arc, schema, &err), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO log VALUES (?)", "s", "live"), 1);
    assert_int_equal(hl_db_run(arc, &err, "INSERT INTO log VALUES (?)", "s", "old 1"), 1);
    assert_int_equal(hl_db_run(arc, &err, "INSERT INTO log VALUES (?)", "s", "old 2"), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM log"), 1);
    assert_int_equal(scalar(arc, "SELECT count(*) FROM log"), 2);
    /* Transactions are per connection. */
    assert_int_equal(hl_db_begin(arc, &err), HL_OK);
    assert_int_equal(hl_db_run(arc, &err, "DELETE FROM log", NULL), 2);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO log VALUES (?)", "s", "live 2"), 1);
    assert_int_equal(hl_db_rollback(arc), HL_OK);
    hl_db_close(arc);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM log"), 2);

    arc = hl_db_open(p, HL_DB_READONLY, &err);
    assert_non_null(arc);
    assert_int_equal(scalar(arc, "SELECT count(*) FROM log"), 2);
    assert_int_equal(hl_db_run(arc, &err, "INSERT INTO log VALUES (?)", "s", "x"), HL_ERR);
    assert_non_null(strstr(err.msg, "readonly"));
    hl_db_close(arc);

    /* Migration state can be read through a read-only connection. */
    assert_int_equal(hl_db_migrate_one(f->db, "core", 1, "001_x.sql", "CREATE TABLE x(a);", &err),
                     HL_OK);
    arc = hl_db_open(f->path, HL_DB_READONLY, &err);
    assert_non_null(arc);
    assert_int_equal(hl_db_schema_version(arc, "core", &err), 1);
    assert_int_equal(hl_db_schema_version(arc, "other", &err), 0);
    hl_db_close(arc);
}

static void test_injection(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    const char *evil[] = {"x'); DROP TABLE users; --", "' OR '1'='1", "\"; DELETE FROM users; --",
                          "Robert'); DROP TABLE students;--", "%s%n%x", "?"};
    size_t n = sizeof evil / sizeof evil[0];

    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE users(name TEXT)", &err), HL_OK);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO users VALUES (?)", "s", evil[i]), 1);
    assert_int_equal(table_exists(f->db, "users"), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM users"), (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        hl_stmt *st = hl_db_query(f->db, &err, "SELECT name FROM users WHERE name = ?", "s",
                                  evil[i]);
        assert_non_null(st);
        assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
        assert_string_equal(hl_db_col_text(st, 0), evil[i]);
        assert_int_equal(hl_db_step(st, &err), HL_DB_DONE);
        hl_db_done(st);
    }
    hl_stmt *st = hl_db_query(f->db, &err, "SELECT count(*) FROM users WHERE name = ?", "s",
                              "nobody' OR '1'='1");
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_int64(st, 0), 0);
    hl_db_done(st);
    /* A smuggled second statement is refused, not run. */
    assert_int_equal(hl_db_run(f->db, &err, "SELECT 1; DROP TABLE users", NULL), HL_EINVAL);
    assert_int_equal(table_exists(f->db, "users"), 1);
}


/* ---------------------------------------------------------------- access policy */

static const char *const news_readable[] = {"products", "users", NULL};
static const char *const news_hidden[] = {"users.password_hash", NULL};
static const hl_db_policy news_policy = {"news", "news", news_readable, news_hidden};

/* Core tables a plugin meets, with denials logged to a file of the fixture (not the test
 * output). */
static int setup_policy(void **state)
{
    hl_err err = {0};
    char log[160];
    if (setup(state) != 0)
        return -1;
    fx *f = *state;
    snprintf(log, sizeof log, "%s/log", f->dir);
    if (hl_log_open(log, "info", &err) != HL_OK ||
        hl_db_exec(f->db,
                   "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, "
                   "password_hash TEXT);"
                   "INSERT INTO users(name, password_hash) VALUES ('alice', 'h1'), ('bob', 'h2');"
                   "CREATE TABLE products(id INTEGER PRIMARY KEY, name TEXT);"
                   "INSERT INTO products(name) VALUES ('pen'), ('ink');"
                   "CREATE TABLE market_orders(id INTEGER PRIMARY KEY, item TEXT);"
                   "INSERT INTO market_orders(item) VALUES ('secret');"
                   "CREATE TABLE newsletter_subscribers(email TEXT);"
                   "INSERT INTO newsletter_subscribers VALUES ('x@example.org');",
                   &err) != HL_OK) {
        fprintf(stderr, "setup_policy: %s\n", err.msg);
        hl_log_close();
        teardown(state);
        return -1;
    }
    return 0;
}

static int teardown_policy(void **state)
{
    hl_log_close();
    return teardown(state);
}

static void set_news(hl_db *db)
{
    hl_err err = {0};
    assert_int_equal(hl_db_set_policy(db, &news_policy, &err), HL_OK);
    assert_string_equal(hl_db_policy_denial(db), "");
}

static void clear_policy(hl_db *db)
{
    hl_err err = {0};
    assert_int_equal(hl_db_set_policy(db, NULL, &err), HL_OK);
}

static void allowed(hl_db *db, const char *sql)
{
    hl_err err = {0};
    int rc = hl_db_exec(db, sql, &err);
    if (rc != HL_OK)
        fail_msg("refused: %s: %s", sql, err.msg);
}

/* Refused, by both ways in, with the reason in err and in hl_db_policy_denial. */
static void denied(hl_db *db, const char *sql, const char *why)
{
    hl_err err = {0};
    const char *lead = "not authorized: plugin news may not ";
    hl_stmt *st = hl_db_prepare(db, sql, &err);
    if (st) {
        hl_db_done(st);
        fail_msg("allowed: %s", sql);
    }
    if (err.code != HL_EINVAL || strncmp(err.msg, lead, strlen(lead)) != 0 || !strstr(err.msg, why))
        fail_msg("%s: expected '%s', got %d '%s'", sql, why, err.code, err.msg);
    assert_string_equal(hl_db_policy_denial(db), err.msg + strlen("not authorized: "));
    hl_err_clear(&err);
    assert_int_equal(hl_db_exec(db, sql, &err), HL_EINVAL);
    if (!strstr(err.msg, why))
        fail_msg("exec %s: expected '%s', got '%s'", sql, why, err.msg);
}

static const char *first_text(hl_db *db, const char *sql)
{
    static char buf[128];
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err, sql, NULL);
    if (!st)
        fail_msg("%s: %s", sql, err.msg);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    snprintf(buf, sizeof buf, "%s", hl_db_col_text(st, 0));
    hl_db_done(st);
    return buf;
}

static void test_policy_tables(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    set_news(f->db);
    /* Its own tables: everything. */
    allowed(f->db, "CREATE TABLE news_items(id INTEGER PRIMARY KEY, title TEXT)");
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO news_items(title) VALUES (?)", "s", "hi"),
                     1);
    assert_int_equal(hl_db_run(f->db, &err, "UPDATE news_items SET title = ?", "s", "hello"), 1);
    assert_string_equal(first_text(f->db, "SELECT title FROM news_items"), "hello");
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM NEWS_ITEMS"), 1); /* any case */
    allowed(f->db, "CREATE TABLE News_Upper(a)");
    allowed(f->db, "CREATE TABLE news_(a)");

    /* Readable tables: read only. */
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM products"), 2);
    assert_string_equal(first_text(f->db, "SELECT name FROM products ORDER BY id"), "pen");
    assert_string_equal(
        first_text(f->db, "SELECT n.title || ' ' || p.name FROM news_items n, products p "
                          "ORDER BY p.id DESC"),
        "hello ink");
    denied(f->db, "INSERT INTO products(name) VALUES ('x')", "write table products");
    denied(f->db, "UPDATE products SET name = 'x'", "write table products");
    denied(f->db, "DELETE FROM products", "write table products");
    denied(f->db, "INSERT INTO news_items(title) SELECT item FROM market_orders",
           "read table market_orders");

    /* Hidden columns, however they are reached. */
    assert_string_equal(first_text(f->db, "SELECT name FROM users ORDER BY id"), "alice");
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM users"), 2);
    denied(f->db, "SELECT password_hash FROM users", "read users.password_hash");
    denied(f->db, "SELECT * FROM users", "read users.password_hash");
    denied(f->db, "SELECT users.* FROM news_items, users", "read users.password_hash");
    denied(f->db, "SELECT PassWord_Hash FROM USERS", "password_hash");
    denied(f->db, "SELECT count(*) FROM users WHERE password_hash LIKE 'h%'",
           "read users.password_hash");
    denied(f->db, "SELECT name FROM users ORDER BY password_hash", "read users.password_hash");
    denied(f->db, "SELECT (SELECT max(password_hash) FROM users)", "read users.password_hash");
    denied(f->db, "INSERT INTO news_items(title) SELECT password_hash FROM users",
           "read users.password_hash");

    /* Other tables: nothing, including another plugin's whose name starts alike. */
    denied(f->db, "SELECT count(*) FROM market_orders", "read table market_orders");
    denied(f->db, "SELECT * FROM newsletter_subscribers", "read table newsletter_subscribers");
    denied(f->db, "INSERT INTO newsletter_subscribers VALUES ('y')",
           "write table newsletter_subscribers");
    allowed(f->db, "CREATE TABLE news_x(a)");
    denied(f->db, "CREATE TABLE newsletter_x(a)", "create table newsletter_x");
    denied(f->db, "CREATE TABLE news(a)", "create table news");
    denied(f->db, "CREATE TABLE newsx(a)", "create table newsx");

    /* Schema changes outside the prefix. */
    denied(f->db, "CREATE TABLE users2(a)", "create table users2");
    denied(f->db, "CREATE TABLE IF NOT EXISTS users(a)", "create table users");
    denied(f->db, "DROP TABLE products", "drop table products");
    denied(f->db, "DROP TABLE IF EXISTS market_orders", "drop table market_orders");
    denied(f->db, "ALTER TABLE products ADD COLUMN price INTEGER", "alter table products");
    denied(f->db, "CREATE INDEX news_i ON products(name)", "create index news_i on table products");
    denied(f->db, "CREATE INDEX products_i ON news_items(title)", "create index products_i");
    denied(f->db, "CREATE TRIGGER news_t AFTER INSERT ON products BEGIN DELETE FROM news_x; END",
           "create trigger news_t on table products");
    denied(f->db, "CREATE TRIGGER users_t AFTER INSERT ON news_x BEGIN DELETE FROM news_x; END",
           "create trigger users_t");
    denied(f->db, "CREATE VIEW users_v AS SELECT 1", "create view users_v");
    denied(f->db, "CREATE TEMP TABLE news_tmp(a)", "use temporary tables");
    denied(f->db, "CREATE TEMP VIEW news_tv AS SELECT 1", "use temporary tables");
    denied(f->db, "CREATE TEMP TRIGGER news_tt AFTER INSERT ON news_x BEGIN SELECT 1; END",
           "use temporary tables");

    clear_policy(f->db);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM products"), 2);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM market_orders"), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM newsletter_subscribers"), 1);
    assert_int_equal(table_exists(f->db, "users2"), 0);
    assert_int_equal(table_exists(f->db, "newsletter_x"), 0);
    assert_int_equal(table_exists(f->db, "news_tmp"), 0);
    assert_int_equal(table_exists(f->db, "news_x"), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                   " AND name = 'news_i'"),
                     0);
}

static void test_policy_statements(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char sql[256], other[160];

    snprintf(other, sizeof other, "%s/other.db", f->dir);
    set_news(f->db);
    snprintf(sql, sizeof sql, "ATTACH '%s' AS a", other);
    denied(f->db, sql, "attach databases");
    assert_int_equal(access(other, F_OK), -1); /* not even created */
    denied(f->db, "DETACH a", "detach databases");
    /* VACUUM compiles its SQL while it runs: refused then. */
    hl_stmt *st = hl_db_prepare(f->db, "VACUUM", &err);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_EINVAL);
    assert_string_equal(err.msg, "not authorized: plugin news may not attach databases");
    hl_db_done(st);
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", other);
    assert_int_equal(hl_db_exec(f->db, sql, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "not authorized: plugin news may not "));
    assert_int_equal(access(other, F_OK), -1);

    denied(f->db, "PRAGMA table_info(users)", "run PRAGMA table_info");
    denied(f->db, "PRAGMA writable_schema=1", "run PRAGMA writable_schema");
    denied(f->db, "PRAGMA foreign_keys=OFF", "run PRAGMA foreign_keys");
    denied(f->db, "PRAGMA main.quick_check(users)", "run PRAGMA quick_check");
    /* Eponymous virtual tables: the first refusal may be the schema read of their set-up. */
    denied(f->db, "SELECT * FROM pragma_table_info('users')", "may not");
    denied(f->db, "SELECT * FROM json_each('[1]')", "may not");

    denied(f->db, "SELECT load_extension('x')", "call load_extension()");
    denied(f->db, "SELECT LOAD_EXTENSION('/tmp/x.so', 'init')", "call load_extension()");
    denied(f->db, "SELECT sqlite_version()", "call sqlite_version()");
    denied(f->db, "SELECT sqlite_compileoption_used('THREADSAFE')", "call sqlite_compileoption");
    denied(f->db, "SELECT fts3_tokenizer('simple')", "call fts3_tokenizer()");
    assert_string_equal(first_text(f->db, "SELECT upper('a') || length('abc') || abs(-2)"),
                        "A32");
    assert_int_equal(scalar(f->db, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                                   "FROM c WHERE x < 5) SELECT sum(x) FROM c"),
                     15);

    /* The schema names every table of every plugin. */
    denied(f->db, "SELECT sql FROM sqlite_master", "read the schema");
    denied(f->db, "SELECT name FROM sqlite_schema WHERE type = 'table'", "read the schema");
    denied(f->db, "SELECT count(*) FROM sqlite_master", "read the schema");
    denied(f->db, "SELECT * FROM sqlite_temp_master", "temporary");
    denied(f->db, "SELECT * FROM sqlite_sequence", "read table sqlite_sequence");
    denied(f->db, "UPDATE sqlite_sequence SET seq = 9223372036854775807",
           "write table sqlite_sequence");
    denied(f->db, "DELETE FROM sqlite_sequence", "write table sqlite_sequence");
    /* SQLite itself refuses writes to the schema table. */
    assert_int_not_equal(hl_db_exec(f->db, "DELETE FROM sqlite_master", &err), HL_OK);
    assert_non_null(strstr(err.msg, "may not be modified"));

    /* Transactions belong to db.c (hl_db_tx), which a plugin's code cannot end early. */
    denied(f->db, "BEGIN", "transactions");
    denied(f->db, "COMMIT", "transactions");
    denied(f->db, "ROLLBACK", "transactions");
    denied(f->db, "SAVEPOINT x", "transactions");
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK);
    allowed(f->db, "CREATE TABLE news_t(a)");
    assert_int_equal(hl_db_begin(f->db, &err), HL_OK); /* a savepoint */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO news_t VALUES (1)", NULL), 1);
    denied(f->db, "RELEASE hl_sp_1", "transactions");
    denied(f->db, "ROLLBACK TO hl_sp_1", "transactions");
    assert_int_equal(hl_db_rollback(f->db), HL_OK);
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO news_t VALUES (2)", NULL), 1);
    assert_int_equal(hl_db_commit(f->db, &err), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT sum(a) FROM news_t"), 2);

    /* Migration bookkeeping is db.c's. */
    denied(f->db, "INSERT INTO hl_migrations VALUES ('core', 99, 'x', 'y')",
           "write table hl_migrations");
    denied(f->db, "DELETE FROM hl_migrations", "write table hl_migrations");
    denied(f->db, "SELECT * FROM hl_migrations", "read table hl_migrations");

    /* Everything else SQLite can do. */
    denied(f->db, "ANALYZE", "may not");
    denied(f->db, "REINDEX", "run REINDEX");
    denied(f->db, "CREATE VIRTUAL TABLE news_f USING fts5(a)", "may not");

    /* A second statement is refused before anything runs. */
    assert_int_equal(hl_db_run(f->db, &err, "SELECT 1; DROP TABLE products", NULL), HL_EINVAL);
    clear_policy(f->db);
    assert_int_equal(table_exists(f->db, "products"), 1);
    assert_int_equal(table_exists(f->db, "news_f"), 0);
    assert_int_equal(table_exists(f->db, "sqlite_stat1"), 0);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM hl_migrations"), 0);
    assert_int_equal(scalar(f->db, "SELECT seq FROM sqlite_sequence WHERE name = 'users'"), 2);
}

static void test_policy_own_ddl(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    set_news(f->db);
    allowed(f->db, "CREATE TABLE news_a(id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT UNIQUE)");
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO news_a(t) VALUES ('x'), ('y')", NULL), 2);
    assert_int_equal(hl_db_last_insert_id(f->db), 2);
    allowed(f->db, "CREATE INDEX news_a_t2 ON news_a(t, id)");
    allowed(f->db, "CREATE UNIQUE INDEX IF NOT EXISTS news_a_t3 ON news_a(t)");
    /* Views and triggers run later, in other code's statements: refused even on own tables. */
    denied(f->db, "CREATE VIEW news_v AS SELECT t FROM news_a", "create view news_v");
    allowed(f->db, "CREATE TABLE news_log(msg TEXT)");
    denied(f->db, "CREATE TRIGGER news_tr AFTER INSERT ON news_a BEGIN "
                  "INSERT INTO news_log VALUES (new.t); END", "create trigger news_tr");
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO news_a(t) VALUES ('z')", NULL), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM news_log"), 0);
    allowed(f->db, "ALTER TABLE news_a ADD COLUMN n INTEGER NOT NULL DEFAULT 0 CHECK (n >= 0)");
    allowed(f->db, "ALTER TABLE news_a ADD COLUMN note TEXT");
    allowed(f->db, "ALTER TABLE news_a RENAME COLUMN n TO m");
    assert_int_equal(scalar(f->db, "SELECT sum(m) FROM news_a"), 0);
    allowed(f->db, "ALTER TABLE news_a DROP COLUMN note");
    /* SQLite does not tell the new name of a renamed table. */
    denied(f->db, "ALTER TABLE news_log RENAME TO hl_settings", "rename tables");
    denied(f->db, "ALTER TABLE news_log RENAME TO news_log2", "rename tables");
    allowed(f->db, "DROP INDEX news_a_t2");
    allowed(f->db, "DROP TABLE news_a");
    allowed(f->db, "DROP TABLE IF EXISTS news_nothing");

    /* Ways round the checks through its own objects. */
    denied(f->db, "CREATE TABLE news_s AS SELECT sql FROM sqlite_master", "read the schema");
    denied(f->db, "CREATE TABLE news_p AS SELECT password_hash FROM users",
           "read users.password_hash");
    denied(f->db, "CREATE VIEW news_pw AS SELECT password_hash FROM users", "create view news_pw");
    denied(f->db, "CREATE TRIGGER news_evil AFTER INSERT ON news_log BEGIN DELETE FROM products; END",
           "create trigger news_evil");

    clear_policy(f->db);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM products"), 2);
    assert_int_equal(table_exists(f->db, "news_log"), 1);
    assert_int_equal(table_exists(f->db, "news_log2"), 0);
    assert_int_equal(table_exists(f->db, "hl_settings"), 0);
    assert_int_equal(table_exists(f->db, "news_a"), 0);
    assert_int_equal(table_exists(f->db, "news_s"), 0);
    assert_int_equal(table_exists(f->db, "news_p"), 0);
}

static void test_policy_cache(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    const char *secret = "SELECT password_hash FROM users WHERE id = 1";

    /* Trusted code caches statements the policy would refuse. */
    hl_stmt *core = hl_db_prepare(f->db, secret, &err);
    assert_non_null(core);
    assert_int_equal(hl_db_step(core, &err), HL_DB_ROW);
    hl_db_done(core);
    hl_stmt *names = hl_db_prepare(f->db, "SELECT name FROM users", &err);
    assert_non_null(names);
    hl_db_done(names);

    set_news(f->db);
    denied(f->db, secret, "read users.password_hash");
    assert_null(hl_db_query(f->db, &err, secret, NULL));
    assert_int_equal(hl_db_run(f->db, &err, secret, NULL), HL_EINVAL);
    assert_non_null(strstr(err.msg, "not authorized"));
    /* Allowed SQL gets a fresh statement, not the cached one, and never enters the cache. */
    hl_stmt *a = hl_db_prepare(f->db, "SELECT name FROM users", &err);
    assert_non_null(a);
    assert_ptr_not_equal(a, names);
    assert_int_equal(hl_db_step(a, &err), HL_DB_ROW);
    hl_db_done(a);

    /* Statements prepared under a policy die with it. */
    hl_stmt *held = hl_db_prepare(f->db, "SELECT count(*) FROM products", &err);
    assert_non_null(held);
    assert_int_equal(hl_db_step(held, &err), HL_DB_ROW);
    clear_policy(f->db);
    assert_int_equal(hl_db_step(held, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "no longer in force"));
    hl_db_done(held);
    set_news(f->db);
    held = hl_db_prepare(f->db, "SELECT count(*) FROM products", &err);
    assert_non_null(held);
    set_news(f->db); /* another policy, even an equal one */
    assert_int_equal(hl_db_step(held, &err), HL_EINVAL);
    hl_db_done(held);

    /* Trusted again: the cached statements are back, and work. */
    clear_policy(f->db);
    core = hl_db_prepare(f->db, secret, &err);
    assert_non_null(core);
    assert_int_equal(hl_db_step(core, &err), HL_DB_ROW);
    assert_string_equal(hl_db_col_text(core, 0), "h1");
    hl_db_done(core);
    assert_ptr_equal(hl_db_prepare(f->db, "SELECT name FROM users", &err), names);
    hl_db_done(names);
    assert_string_equal(first_text(f->db, "SELECT password_hash FROM users WHERE id = 2"), "h2");
    allowed(f->db, "PRAGMA table_info(users)");
    assert_int_equal(table_exists(f->db, "users"), 1);
}

/* SQLite compiles a statement again when the schema changed; that is checked too. */
static void test_policy_recompile(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    /* Plugins may not create views, but a view that trusted code (here another connection,
     * as another worker would) changes under a prepared statement is checked again when
     * SQLite recompiles it. */
    assert_int_equal(hl_db_exec(f->db, "CREATE VIEW news_v AS SELECT name FROM users", &err), HL_OK);
    set_news(f->db);
    hl_stmt *st = hl_db_prepare(f->db, "SELECT * FROM news_v", &err);
    assert_non_null(st);
    hl_db *other = hl_db_open(f->path, 0, &err);
    assert_non_null(other);
    assert_int_equal(hl_db_exec(other, "DROP VIEW news_v; CREATE VIEW news_v AS SELECT password_hash FROM users", &err),
                     HL_OK);
    hl_db_close(other);
    assert_int_equal(hl_db_step(st, &err), HL_EINVAL);
    assert_string_equal(err.msg, "not authorized: plugin news may not read users.password_hash");
    assert_string_equal(hl_db_policy_denial(f->db), "plugin news may not read users.password_hash");
    hl_db_done(st);
    clear_policy(f->db);
}

static void test_policy_migrate(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char dir[256];
    int applied = -1;

    make_dir(f->dir, "news", dir, sizeof dir);
    write_file(dir, "001_items.sql",
               "CREATE TABLE news_items(id INTEGER PRIMARY KEY AUTOINCREMENT, t TEXT);\n"
               "CREATE INDEX news_items_t ON news_items(t);");
    write_file(dir, "002_seed.sql", "INSERT INTO news_items(t) VALUES ('hello');");

    /* A fresh database: setting the policy creates hl_migrations, which the plugin cannot. */
    assert_int_equal(table_exists(f->db, "hl_migrations"), 0);
    set_news(f->db);
    assert_int_equal(hl_db_migrate(f->db, "news", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 2);
    assert_int_equal(hl_db_schema_version(f->db, "news", &err), 2);
    assert_int_equal(hl_db_migrate(f->db, "news", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 0);

    /* A table outside its prefix: the whole file is rolled back. */
    write_file(dir, "003_bad.sql", "CREATE TABLE news_more(a);\nCREATE TABLE users2(a);");
    assert_int_equal(hl_db_migrate(f->db, "news", dir, &applied, &err), HL_EINVAL);
    assert_string_equal(err.msg, "migration news/003_bad.sql failed: not authorized: plugin news "
                                 "may not create table users2");
    assert_string_equal(hl_db_policy_denial(f->db), "plugin news may not create table users2");
    assert_int_equal(applied, 0);
    assert_int_equal(hl_db_schema_version(f->db, "news", &err), 2);
    assert_int_equal(hl_db_commit(f->db, &err), HL_EINVAL); /* nothing left open */

    /* Nor may it end the transaction the migration runs in. */
    write_file(dir, "003_bad.sql", "INSERT INTO news_items(t) VALUES ('x'); COMMIT;");
    assert_int_equal(hl_db_migrate(f->db, "news", dir, &applied, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "transactions"));
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM news_items"), 1);

    /* Only its own component: a "core" row would make the core skip a migration. */
    assert_int_equal(hl_db_migrate(f->db, "core", dir, &applied, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "may not migrate component core"));
    assert_int_equal(hl_db_migrate_one(f->db, "core", 1, "001_x.sql", "SELECT 1;", &err),
                     HL_EINVAL);
    assert_int_equal(hl_db_migrate_one(f->db, "newsletter", 1, "001_x.sql", "SELECT 1;", &err),
                     HL_EINVAL);

    write_file(dir, "003_bad.sql", "ALTER TABLE news_items ADD COLUMN n INTEGER NOT NULL "
                                   "DEFAULT 1;");
    assert_int_equal(hl_db_migrate(f->db, "news", dir, &applied, &err), HL_OK);
    assert_int_equal(applied, 1);
    assert_int_equal(scalar(f->db, "SELECT sum(n) FROM news_items"), 1);

    clear_policy(f->db);
    assert_int_equal(table_exists(f->db, "news_more"), 0);
    assert_int_equal(table_exists(f->db, "users2"), 0);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM hl_migrations"), 3);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM hl_migrations WHERE component <> "
                                   "'news'"),
                     0);
    assert_int_equal(hl_db_schema_version(f->db, "core", &err), 0);
}

static void test_policy_bad_input(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char longname[200];
    const char *many[256 + 2];
    const char *const nodot[] = {"users", NULL}, *const lead[] = {".x", NULL},
                      *const trail[] = {"users.", NULL}, *const empty[] = {"", NULL};
    const char *const longl[] = {longname, NULL};
    struct {
        const char *owner, *prefix;
        const char *const *readable, *const *hidden;
    } bad[] = {
        {NULL, "news", NULL, NULL},   {"", "news", NULL, NULL},    {"a b", "news", NULL, NULL},
        {"news", NULL, NULL, NULL},   {"news", "", NULL, NULL},    {"news", "ne ws", NULL, NULL},
        {"news", "news;", NULL, NULL}, {"news", "news%", NULL, NULL}, {"news", "hl", NULL, NULL},
        {"news", "HL", NULL, NULL},   {"news", "hl_plugin", NULL, NULL},
        {"news", "sqlite", NULL, NULL}, {"news", "SQLite_x", NULL, NULL},
        {"news", longname, NULL, NULL}, {"news", "news", empty, NULL},
        {"news", "news", longl, NULL}, {"news", "news", NULL, nodot},
        {"news", "news", NULL, lead}, {"news", "news", NULL, trail},
        {"news", "news", many, NULL},
    };

    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    for (int i = 0; i < 256 + 1; i++)
        many[i] = "products";
    many[256 + 1] = NULL;

    assert_int_equal(hl_db_set_policy(NULL, &news_policy, &err), HL_EINVAL);
    assert_string_equal(hl_db_policy_denial(NULL), "");
    assert_string_equal(hl_db_policy_denial(f->db), "");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hl_db_policy p = {bad[i].owner, bad[i].prefix, bad[i].readable, bad[i].hidden};
        hl_err_clear(&err);
        int rc = hl_db_set_policy(f->db, &p, &err);
        if (rc != HL_EINVAL && rc != HL_ETOOBIG)
            fail_msg("policy %zu accepted", i);
        assert_true(err.msg[0] != '\0');
        /* No policy came into force. */
        assert_string_equal(first_text(f->db, "SELECT password_hash FROM users WHERE id = 1"),
                            "h1");
    }
    /* A failed change leaves the policy in force as it was. */
    set_news(f->db);
    hl_db_policy p = {"news", "hl", NULL, NULL};
    assert_int_equal(hl_db_set_policy(f->db, &p, &err), HL_EINVAL);
    denied(f->db, "SELECT password_hash FROM users", "read users.password_hash");
    denied(f->db, "CREATE TABLE hl_x(a)", "create table hl_x");
    clear_policy(f->db);
    assert_int_equal(hl_db_set_policy(f->db, NULL, NULL), HL_OK); /* clearing twice is fine */

    /* Exactly the limit is fine; no lists at all means nothing readable. */
    many[256] = NULL;
    hl_db_policy full = {"news", "news", many, NULL};
    assert_int_equal(hl_db_set_policy(f->db, &full, &err), HL_OK);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM products"), 2);
    denied(f->db, "SELECT count(*) FROM users", "read table users");
    hl_db_policy bare = {"news", "news", NULL, NULL};
    assert_int_equal(hl_db_set_policy(f->db, &bare, &err), HL_OK);
    denied(f->db, "SELECT count(*) FROM products", "read table products");
    allowed(f->db, "CREATE TABLE news_x(a); INSERT INTO news_x VALUES (1)");
    clear_policy(f->db);
}

/* The policy is copied: the caller's strings may go away at once. */
static void test_policy_deep_copy(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char *owner = strdup("news"), *prefix = strdup("news");
    char **readable = calloc(3, sizeof *readable), **hidden = calloc(2, sizeof *hidden);
    assert_true(owner && prefix && readable && hidden);
    readable[0] = strdup("users");
    readable[1] = strdup("products");
    hidden[0] = strdup("USERS.Password_Hash");
    assert_true(readable[0] && readable[1] && hidden[0]);
    hl_db_policy p = {owner, prefix, (const char *const *)readable, (const char *const *)hidden};

    assert_int_equal(hl_db_set_policy(f->db, &p, &err), HL_OK);
    for (int i = 0; i < 2; i++) {
        memset(readable[i], 'x', strlen(readable[i]));
        free(readable[i]);
    }
    memset(hidden[0], 'x', strlen(hidden[0]));
    memset(owner, 'x', strlen(owner));
    memset(prefix, 'x', strlen(prefix));
    free(hidden[0]);
    free(readable);
    free(hidden);
    free(owner);
    free(prefix);

    assert_string_equal(first_text(f->db, "SELECT name FROM users ORDER BY id"), "alice");
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM products"), 2);
    denied(f->db, "SELECT password_hash FROM users", "read users.password_hash");
    allowed(f->db, "CREATE TABLE news_x(a)");
    clear_policy(f->db);
}

/* Denials reach the operator's log, with the plugin's name. */
static void test_policy_log(void **state)
{
    fx *f = *state;
    char path[160], buf[4096];

    set_news(f->db);
    denied(f->db, "SELECT password_hash FROM users", "read users.password_hash");
    denied(f->db, "ATTACH 'x.db' AS x", "attach databases");
    clear_policy(f->db);
    snprintf(path, sizeof path, "%s/log", f->dir);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "level=warn"));
    assert_non_null(strstr(buf, "msg=\"plugin news may not read users.password_hash\""));
    assert_non_null(strstr(buf, "msg=\"plugin news may not attach databases\""));
}

/* A read-only connection (e.g. the archive) takes a policy too. */
static void test_policy_readonly(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    hl_db *ro = hl_db_open(f->path, HL_DB_READONLY, &err);
    assert_non_null(ro);
    assert_int_equal(hl_db_set_policy(ro, &news_policy, &err), HL_OK);
    assert_string_equal(first_text(ro, "SELECT name FROM users ORDER BY id"), "alice");
    denied(ro, "SELECT password_hash FROM users", "read users.password_hash");
    denied(ro, "SELECT count(*) FROM market_orders", "read table market_orders");
    hl_db_close(ro); /* with the policy still set */
}

/* ---------------------------------------------------------------- storage contract for money */

static void migrate_main(hl_db *db)
{
    hl_err err = {0};
    char mig[1024];
    const char *src = getenv("HALLE_SRCDIR");
    snprintf(mig, sizeof mig, "%s/core/migrations/main", src && *src ? src : ".");
    if (hl_db_migrate(db, "main", mig, NULL, &err) != HL_OK)
        fail_msg("migrate: %s", err.msg);
}

static void test_col_is_null(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_stmt *st = hl_db_query(f->db, &err, "SELECT NULL, 0, '', ?", "n");
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    assert_int_equal(hl_db_col_is_null(st, 0), 1);
    assert_int_equal(hl_db_col_is_null(st, 1), 0);
    assert_int_equal(hl_db_col_is_null(st, 2), 0);
    assert_int_equal(hl_db_col_is_null(st, 3), 1);
    assert_int_equal(hl_db_col_is_null(st, 9), 1); /* out of range reads as NULL */
    hl_db_done(st);
    assert_int_equal(hl_db_col_is_null(NULL, 0), 1);
}

static void test_insert_returning(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int64_t id = -1;
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)", &err), HL_OK);
    assert_int_equal(hl_db_insert(f->db, &err, &id, "INSERT INTO t (name) VALUES (?) RETURNING id", "s", "a"), HL_OK);
    assert_int_equal(id, 1);
    assert_int_equal(hl_db_insert(f->db, &err, &id, "INSERT INTO t (name) VALUES (?) RETURNING id", "s", "b"), HL_OK);
    assert_int_equal(id, 2);
    assert_int_equal(hl_db_insert(f->db, &err, &id, "INSERT INTO t (name) VALUES (?) RETURNING id", "s", "a"),
                     HL_EUNIQUE);
    assert_int_equal(id, 0);
    /* without RETURNING there is no id to give: an error, not a stale one */
    assert_int_equal(hl_db_insert(f->db, &err, &id, "INSERT INTO t (name) VALUES (?)", "s", "c"), HL_EINVAL);
    assert_non_null(strstr(err.msg, "RETURNING"));
    assert_int_equal(hl_db_insert(f->db, &err, &id, "INSERT INTO t (name) VALUES (?) RETURNING name", "s", "d"),
                     HL_EINVAL);
    assert_int_equal(hl_db_insert(f->db, &err, NULL, "INSERT INTO t (name) VALUES ('e') RETURNING id", ""),
                     HL_EINVAL);
}

static int touch_tx(hl_db *db, void *ud, hl_err *err)
{
    int *runs = ud;
    (*runs)++;
    return hl_db_run(db, err, "INSERT INTO t (v) VALUES (?)", "i", *runs) < 0 ? err->code : HL_OK;
}

/* A child that holds the write lock for hold_ms, telling the parent through a pipe once it has it. */
static pid_t lock_holder(const char *path, int hold_ms)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        hl_err e = {0};
        hl_db *db = hl_db_open(path, 0, &e);
        int ok = db && hl_db_begin(db, &e) == HL_OK;
        if (write(fds[1], ok ? "1" : "0", 1) != 1)
            _exit(2);
        struct timespec ts = {hold_ms / 1000, (hold_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        ok = ok && hl_db_commit(db, &e) == HL_OK;
        hl_db_close(db);
        _exit(ok ? 0 : 1);
    }
    char c = 0;
    close(fds[1]);
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    assert_int_equal(c, '1');
    return pid;
}

static void wait_ok(pid_t pid)
{
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Busy is retried inside hl_db_tx: a lock held past one busy timeout but less than the
 * retries' total is waited out; a lock held longer ends in HL_EBUSY, with the work undone. */
static void test_tx_busy_retry(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int runs = 0;
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE t (v INTEGER)", &err), HL_OK);
    hl_db_set_busy_timeout(f->db, 30);

    pid_t pid = lock_holder(f->path, 150);
    assert_int_equal(hl_db_tx(f->db, touch_tx, &runs, &err), HL_OK);
    wait_ok(pid);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 1);

    hl_db_set_busy_timeout(f->db, 10);
    pid = lock_holder(f->path, 2500);
    err = (hl_err){0};
    assert_int_equal(hl_db_tx(f->db, touch_tx, &runs, &err), HL_EBUSY);
    assert_int_equal(err.code, HL_EBUSY);
    assert_non_null(strstr(err.msg, "busy"));
    wait_ok(pid);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM t"), 1);
    assert_int_equal(hl_db_in_tx(f->db), 0);
}

static int sync_tx(hl_db *db, void *ud, hl_err *err)
{
    (void)err;
    *(int64_t *)ud = scalar(db, "PRAGMA synchronous");
    return HL_OK;
}

static int nested_durable(hl_db *db, void *ud, hl_err *err)
{
    return hl_db_tx_durable(db, sync_tx, ud, err);
}

/* Durable transactions commit with synchronous=FULL (2), others with NORMAL (1). */
static void test_tx_durable(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int64_t level = -1;
    assert_int_equal(hl_db_tx(f->db, sync_tx, &level, &err), HL_OK);
    assert_int_equal(level, 1);
    assert_int_equal(hl_db_tx_durable(f->db, sync_tx, &level, &err), HL_OK);
    assert_int_equal(level, 2);
    assert_int_equal(scalar(f->db, "PRAGMA synchronous"), 1);
    /* inside an ordinary transaction it cannot be honoured: refused, not silently weaker */
    assert_int_equal(hl_db_tx(f->db, nested_durable, &level, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "durable"));
    level = -1;
    assert_int_equal(hl_db_tx_durable(f->db, nested_durable, &level, &err), HL_OK);
    assert_int_equal(level, 2);
    assert_int_equal(scalar(f->db, "PRAGMA synchronous"), 1);
}

typedef struct {
    int runs;
    int fail;
    const char *body;
} idem_work;

static int idem_fn(hl_db *db, void *ud, hl_db_result *res, hl_err *err)
{
    idem_work *w = ud;
    w->runs++;
    int rc = hl_db_run(db, err, "INSERT INTO work (n) VALUES (?)", "i", w->runs);
    if (rc < 0)
        return rc;
    if (w->fail)
        return hl_err_set(err, HL_ERR, "the work failed");
    res->status = 201;
    res->body = strdup(w->body);
    return res->body ? HL_OK : HL_ENOMEM;
}

static void test_idempotent(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_db_result res;
    migrate_main(f->db);
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE work (n INTEGER)", &err), HL_OK);

    idem_work w = {0, 0, "{\"order\":1}"};
    assert_int_equal(hl_db_idempotent(f->db, "test", "k1", "fp", idem_fn, &w, &res, &err), HL_OK);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "{\"order\":1}");
    assert_int_equal(res.replayed, 0);
    hl_db_result_free(&res);

    /* the repeat gets the first result, and the work is not done again */
    w.body = "{\"order\":2}";
    assert_int_equal(hl_db_idempotent(f->db, "test", "k1", "fp", idem_fn, &w, &res, &err), HL_OK);
    assert_int_equal(res.status, 201);
    assert_string_equal(res.body, "{\"order\":1}");
    assert_int_equal(res.replayed, 1);
    hl_db_result_free(&res);
    assert_int_equal(w.runs, 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM work"), 1);

    /* the same key for another request is a conflict; another scope is another key */
    assert_int_equal(hl_db_idempotent(f->db, "test", "k1", "other", idem_fn, &w, &res, &err), HL_ECONFLICT);
    assert_null(res.body);
    assert_int_equal(hl_db_idempotent(f->db, "other", "k1", "fp", idem_fn, &w, &res, &err), HL_OK);
    assert_int_equal(res.replayed, 0);
    hl_db_result_free(&res);
    assert_int_equal(w.runs, 2);

    /* a failed attempt stores nothing: the key can be tried again */
    w.fail = 1;
    assert_int_equal(hl_db_idempotent(f->db, "test", "k2", NULL, idem_fn, &w, &res, &err), HL_ERR);
    assert_string_equal(err.msg, "the work failed");
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM work"), 2);
    w.fail = 0;
    assert_int_equal(hl_db_idempotent(f->db, "test", "k2", NULL, idem_fn, &w, &res, &err), HL_OK);
    assert_int_equal(res.replayed, 0);
    hl_db_result_free(&res);

    /* bad keys */
    assert_int_equal(hl_db_idempotent(f->db, "test", "", NULL, idem_fn, &w, &res, &err), HL_EINVAL);
    assert_int_equal(hl_db_idempotent(f->db, "test", "a b", NULL, idem_fn, &w, &res, &err), HL_EINVAL);
    char long_key[HL_DB_IDEM_KEY_MAX + 2];
    memset(long_key, 'x', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    assert_int_equal(hl_db_idempotent(f->db, "test", long_key, NULL, idem_fn, &w, &res, &err), HL_EINVAL);

    /* keys are forgotten after their time (the business clock, HALLE_NOW in tests) */
    setenv("HALLE_NOW", "2026-01-01T00:00:00Z", 1);
    assert_int_equal(hl_db_idempotent(f->db, "test", "old", NULL, idem_fn, &w, &res, &err), HL_OK);
    hl_db_result_free(&res);
    setenv("HALLE_NOW", "2026-01-30T00:00:00Z", 1);
    assert_int_equal(hl_db_idempotency_purge(f->db, 30 * 86400, &err), 0);
    setenv("HALLE_NOW", "2026-02-01T00:00:00Z", 1);
    assert_int_equal(hl_db_idempotency_purge(f->db, 30 * 86400, &err), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM hl_idempotency WHERE idem_key = 'old'"), 0);
    assert_int_equal(hl_db_idempotency_purge(f->db, 0, &err), HL_EINVAL);
    unsetenv("HALLE_NOW");
}

#define RACERS 4

/* Processes racing with one key: the work is done once and every one gets its result. */
static void test_idempotent_concurrent(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    migrate_main(f->db);
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE work (n INTEGER)", &err), HL_OK);
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            hl_err e = {0};
            hl_db_result r;
            char body[32];
            snprintf(body, sizeof body, "child %d", i);
            idem_work w = {0, 0, body};
            hl_db *db = hl_db_open(f->path, 0, &e);
            int ok = db && hl_db_idempotent(db, "race", "same-key", NULL, idem_fn, &w, &r, &e) == HL_OK &&
                     r.status == 201 && r.body && strncmp(r.body, "child ", 6) == 0;
            /* each child writes the body it got, so the parent can compare them */
            ok = ok && hl_db_run(db, &e, "INSERT INTO work (n) VALUES (?)", "i", -(r.body[6] - '0') - 1) == 1;
            hl_db_result_free(&r);
            hl_db_close(db);
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < RACERS; i++)
        wait_ok(pids[i]);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM work WHERE n > 0"), 1);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM work WHERE n < 0"), RACERS);
    assert_int_equal(scalar(f->db, "SELECT count(DISTINCT n) FROM work WHERE n < 0"), 1);
}

typedef struct {
    const char *scope;
    int rollback;
    int64_t n;
} counter_work;

static int counter_tx(hl_db *db, void *ud, hl_err *err)
{
    counter_work *c = ud;
    int rc = hl_db_counter_next(db, c->scope, &c->n, err);
    if (rc != HL_OK)
        return rc;
    if (hl_db_run(db, err, "INSERT INTO invoices (scope, n) VALUES (?, ?)", "sI", c->scope, c->n) < 0)
        return err->code;
    return c->rollback ? hl_err_set(err, HL_ERR, "rolled back on purpose") : HL_OK;
}

static void test_counter(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int64_t n = -1;
    migrate_main(f->db);
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE invoices (scope TEXT, n INTEGER, UNIQUE (scope, n))", &err),
                     HL_OK);
    /* outside a transaction the number could not be given back: refused */
    assert_int_equal(hl_db_counter_next(f->db, "invoice:2026", &n, &err), HL_EINVAL);
    assert_int_equal(n, 0);

    counter_work c = {"invoice:2026", 0, 0};
    assert_int_equal(hl_db_tx_durable(f->db, counter_tx, &c, &err), HL_OK);
    assert_int_equal(c.n, 1);
    c.rollback = 1;
    assert_int_equal(hl_db_tx(f->db, counter_tx, &c, &err), HL_ERR);
    assert_int_equal(c.n, 2);
    c.rollback = 0;
    assert_int_equal(hl_db_tx(f->db, counter_tx, &c, &err), HL_OK);
    assert_int_equal(c.n, 2); /* the rolled-back number came back: no gap */
    counter_work other = {"invoice:2027", 0, 0};
    assert_int_equal(hl_db_tx(f->db, counter_tx, &other, &err), HL_OK);
    assert_int_equal(other.n, 1);
}

/* Processes taking numbers at once, some rolling back: the committed numbers are 1..N. */
static void test_counter_concurrent(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    enum { EACH = 25 };
    migrate_main(f->db);
    assert_int_equal(hl_db_exec(f->db, "CREATE TABLE invoices (scope TEXT, n INTEGER, UNIQUE (scope, n))", &err),
                     HL_OK);
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            hl_err e = {0};
            hl_db *db = hl_db_open(f->path, 0, &e);
            int ok = db != NULL;
            for (int k = 0; ok && k < EACH; k++) {
                counter_work c = {"inv", k % 5 == i % 5, 0}; /* one in five rolls back */
                int rc = hl_db_tx(db, counter_tx, &c, &e);
                ok = c.rollback ? rc == HL_ERR : rc == HL_OK;
            }
            if (!ok)
                fprintf(stderr, "child %d: %s\n", i, e.msg);
            hl_db_close(db);
            _exit(ok ? 0 : 1);
        }
    }
    for (int i = 0; i < RACERS; i++)
        wait_ok(pids[i]);
    int64_t total = RACERS * (EACH - EACH / 5);
    assert_int_equal(scalar(f->db, "SELECT count(*) FROM invoices"), total);
    assert_int_equal(scalar(f->db, "SELECT min(n) FROM invoices"), 1);
    assert_int_equal(scalar(f->db, "SELECT max(n) FROM invoices"), total);
    assert_int_equal(scalar(f->db, "SELECT count(DISTINCT n) FROM invoices"), total);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_open_create_mode),
        T(test_open_missing_dir),
        T(test_open_bad_input),
        T(test_pragmas),
        T(test_busy_timeout),
        T(test_bind_types),
        T(test_null_handling),
        T(test_param_count),
        T(test_unknown_type),
        T(test_cache_reuse),
        T(test_cache_nested_loops),
        T(test_cache_eviction),
        T(test_prepare_errors),
        T(test_constraints),
        T(test_tx_basic),
        T(test_tx_nested),
        T(test_tx_fn),
        T(test_migrate_basic),
        T(test_migrate_failure),
        T(test_migrate_numbering),
        T(test_migrate_missing_dir),
        T(test_migrate_hostile),
        T(test_archive_file),
        T(test_injection),
        T(test_col_is_null),
        T(test_insert_returning),
        T(test_tx_busy_retry),
        T(test_tx_durable),
        T(test_idempotent),
        T(test_idempotent_concurrent),
        T(test_counter),
        T(test_counter_concurrent),
#undef T
#define P(fn) cmocka_unit_test_setup_teardown(fn, setup_policy, teardown_policy)
        P(test_policy_tables),
        P(test_policy_statements),
        P(test_policy_own_ddl),
        P(test_policy_cache),
        P(test_policy_recompile),
        P(test_policy_migrate),
        P(test_policy_bad_input),
        P(test_policy_deep_copy),
        P(test_policy_log),
        P(test_policy_readonly),
#undef P
    };
    return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}
