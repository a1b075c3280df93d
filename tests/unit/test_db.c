/* Unit tests for the storage layer (core/db.c): opening, binding, statement cache,
 * transactions and migrations, run against real SQLite files in a temporary directory. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/db.h"

typedef struct {
    char dir[64];
    char path[128];
    hl_db *db;
} fx;

static void rm_rf(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            char sub[1024];
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

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
        rm_rf(f->dir);
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
    rm_rf(f->dir);
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
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name, n) VALUES (?, ?)", "si", "a", 2),
                     HL_EINVAL);
    assert_non_null(strstr(err.msg, "UNIQUE"));
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name) VALUES (?)", "n"), HL_EINVAL);
    assert_non_null(strstr(err.msg, "NOT NULL"));
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO p (name, n) VALUES (?, ?)", "si", "b", -1),
                     HL_EINVAL);
    assert_non_null(strstr(err.msg, "CHECK"));
    /* foreign_keys=ON is in effect. */
    assert_int_equal(hl_db_run(f->db, &err, "INSERT INTO c VALUES (?)", "i", 99), HL_EINVAL);
    assert_non_null(strstr(err.msg, "FOREIGN KEY"));
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
#undef T
    };
    return cmocka_run_group_tests_name("db", tests, NULL, NULL);
}
