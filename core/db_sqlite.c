/* SQLite backend of the storage API (see db.h, db_backend.h): one connection per worker
 * process in WAL mode, a small LRU cache of prepared statements keyed by SQL text, and the
 * access policy that confines a plugin's SQL through SQLite's authorizer. */
#include "core/db_backend.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/file.h"
#include "core/log.h"

#define CACHE_MAX 128            /* cached statements per connection */
#define BUSY_MS 5000
#define POLICY_MAX_LIST 256      /* entries per readable/hidden list */
#define POLICY_MAX_NAME 128      /* bytes per table name or "table.column" entry */

/* What an allowed DDL action of the statement being compiled lets through afterwards (see
 * authorize): SQLite compiles the schema updates of CREATE, ALTER and DROP as nested SQL that
 * goes through the authorizer like the user's own. */
enum { CTX_CREATE = 1, CTX_ALTER = 2, CTX_DROP = 4 };

/* Deep copy of an hl_db_policy, in one allocation. */
typedef struct policy {
    const char *owner, *prefix;
    size_t plen;
    const char **readable; /* NULL-terminated */
    const char **hidden;   /* NULL-terminated "table.column" */
} policy;

typedef struct sq_db sq_db;

typedef struct sq_stmt {
    hl_stmt base;         /* base.db is db, base.in_use whether it is handed out */
    sqlite3_stmt *st;
    sq_db *db;
    char *key;            /* SQL text when cached; NULL for a one-off statement */
    uint32_t hash;
    uint64_t used;        /* LRU clock value of the last hand-out */
    unsigned pgen;        /* policy generation it was compiled under, 0 for none */
    unsigned ctx;         /* CTX_* of its compilation, restored while it runs */
    struct sq_stmt *prev, *next; /* list of one-off statements, so close can finalize them */
} sq_stmt;

struct sq_db {
    hl_db base;
    sqlite3 *h;
    uint64_t tick;
    int ncache;
    sq_stmt *cache[CACHE_MAX];
    sq_stmt *loose;
    policy *pol;          /* NULL: trusted code, nothing is checked */
    unsigned pgen;        /* bumped on every policy change */
    unsigned ctx;         /* CTX_* of the statement being compiled or run */
    int auth_on;          /* the authorizer is installed (once: installing expires statements) */
    int denied;           /* the policy refused something since the last stmt_begin */
    char denial[256];
    int budget_on;        /* hl_db_set_budget's bounds are in force */
    int saved_length, saved_sql; /* the limits they replaced */
};

/* ---------------------------------------------------------------- helpers */

/* rc is an extended result code (sqlite3_extended_errcode) or a primary one: constraint
 * violations are told apart so that callers can answer "already exists" or "refers to nothing"
 * instead of "bad input". */
static int map_rc(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY: return HL_EUNIQUE;
    case SQLITE_CONSTRAINT_FOREIGNKEY: return HL_EFOREIGN;
    default: break;
    }
    switch (rc & 0xff) {
    case SQLITE_OK: return HL_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return HL_EBUSY;
    case SQLITE_CONSTRAINT:
    case SQLITE_RANGE:
    case SQLITE_MISUSE: return HL_EINVAL;
    case SQLITE_NOMEM: return HL_ENOMEM;
    case SQLITE_TOOBIG:
    case SQLITE_INTERRUPT: return HL_ETOOBIG; /* a budget set by hl_db_set_budget ran out */
    default: return HL_ERR;
    }
}

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}

static void stmt_free(sq_stmt *st)
{
    sqlite3_finalize(st->st);
    free(st->key);
    free(st);
}

/* Called before each compile or step: a denial message belongs to one statement, and a
 * statement runs with the DDL context it was compiled with (SQLite may recompile it, and an
 * ALTER runs a PRAGMA quick_check while it executes). db.c's own SQL keeps the message of the
 * plugin statement that failed before it (e.g. the ROLLBACK after a failed migration). */
static void stmt_begin(sq_db *db, unsigned ctx)
{
    db->ctx = ctx;
    db->denied = 0;
    if (!db->base.internal)
        db->denial[0] = '\0';
}

/* The policy refused something while compiling (or while running: VACUUM and schema changes
 * compile SQL then). SQLite says SQLITE_AUTH for most refusals but SQLITE_ERROR ("not
 * authorized to use function") for functions, hence the flag. Returns 0 if not the case. */
static int auth_error(sq_db *db, int rc, hl_err *err)
{
    if (db->denied)
        return hl_err_set(err, HL_EINVAL, "not authorized: %s", db->denial);
    if ((rc & 0xff) == SQLITE_AUTH)
        return hl_err_set(err, HL_EINVAL, "not authorized");
    return 0;
}

/* The code of a failed call and its message, kept on the connection too (hl_db_errmsg) for
 * callers that passed no hl_err (the plugin API's step). */
static int sql_error(sq_db *db, int rc, hl_err *err)
{
    hl_err local;
    if (!err)
        err = &local;
    int code = auth_error(db, rc, err);
    if (!code) {
        int ext = sqlite3_extended_errcode(db->h);
        code = hl_err_set(err, map_rc((ext & 0xff) == (rc & 0xff) ? ext : rc), "%s",
                          sqlite3_errmsg(db->h));
    }
    snprintf(db->base.errmsg, sizeof db->base.errmsg, "%s", err->msg);
    return code;
}

/* ---------------------------------------------------------------- open / close */

static hl_db *sq_open(const char *path, unsigned flags, hl_err *err)
{
    sq_db *db = NULL;
    char *fs = NULL, msg[256];
    int code = HL_ERR, created = 0, oflags;
    sqlite3_stmt *jm = NULL;

    if (!path || !*path) {
        hl_err_set(err, HL_EINVAL, "database path is empty");
        return NULL;
    }
    if (flags & ~(unsigned)(HL_DB_CREATE | HL_DB_READONLY)) {
        hl_err_set(err, HL_EINVAL, "cannot open database %s: unknown flags 0x%x", path, flags);
        return NULL;
    }
    if ((flags & HL_DB_CREATE) && (flags & HL_DB_READONLY)) {
        hl_err_set(err, HL_EINVAL, "cannot open database %s: create and read-only conflict", path);
        return NULL;
    }
    if (strlen(path) >= PATH_MAX) {
        hl_err_set(err, HL_ETOOBIG, "database path is too long");
        return NULL;
    }
    /* SQLite treats "file:..." as a URI and ":memory:" as no file at all; we always mean the
     * file of that name, so such names get a "./" in front. */
    size_t plen = strlen(path);
    int prefix = strncmp(path, "file:", 5) == 0 || path[0] == ':';
    if (!(db = calloc(1, sizeof *db)) || !(fs = malloc(plen + 3))) {
        free(fs);
        free(db);
        hl_err_set(err, HL_ENOMEM, "cannot open database %s: out of memory", path);
        return NULL;
    }
    snprintf(fs, plen + 3, "%s%s", prefix ? "./" : "", path);

    if (flags & HL_DB_CREATE) {
        /* Create it ourselves so the mode is 0600 whatever the umask; SQLite then gives the
         * -wal and -shm files the same mode. */
        int fd = open(fs, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            created = 1;
        } else if (errno != EEXIST) {
            snprintf(msg, sizeof msg, "%s", strerror(errno));
            code = errno == ENOENT ? HL_ENOTFOUND : HL_EIO;
            goto fail;
        }
    }

    oflags = SQLITE_OPEN_NOMUTEX;
    if (flags & HL_DB_READONLY)
        oflags |= SQLITE_OPEN_READONLY;
    else
        oflags |= SQLITE_OPEN_READWRITE | ((flags & HL_DB_CREATE) ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(fs, &db->h, oflags, NULL);
    if (rc != SQLITE_OK) {
        snprintf(msg, sizeof msg, "%s", db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
        code = map_rc(rc);
        goto fail;
    }
    sqlite3_busy_timeout(db->h, BUSY_MS);

    /* This is also the first real read of the file, so a non-database fails here. */
    rc = sqlite3_prepare_v2(db->h, "PRAGMA journal_mode=WAL", -1, &jm, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(jm);
    if (rc != SQLITE_ROW) {
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db->h));
        code = map_rc(rc);
        goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(jm, 0);
    /* A read-only connection cannot switch modes; it reads whatever the file uses. */
    if (!(flags & HL_DB_READONLY) && (!mode || strcasecmp(mode, "wal") != 0)) {
        snprintf(msg, sizeof msg, "journal mode is %s, not wal", mode ? mode : "unknown");
        goto fail;
    }
    sqlite3_finalize(jm);
    jm = NULL;

    char *emsg = NULL;
    rc = sqlite3_exec(db->h, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL", NULL, NULL,
                      &emsg);
    if (rc != SQLITE_OK) {
        snprintf(msg, sizeof msg, "%s", emsg ? emsg : sqlite3_errmsg(db->h));
        sqlite3_free(emsg);
        code = map_rc(rc);
        goto fail;
    }
    free(fs);
    return &db->base;

fail:
    hl_err_set(err, code == HL_OK ? HL_ERR : code, "cannot open database %s: %s", path, msg);
    sqlite3_finalize(jm);
    sqlite3_close(db->h);
    if (created)
        unlink(fs);
    free(fs);
    free(db);
    return NULL;
}

static void sq_close(hl_db *base)
{
    sq_db *db = (sq_db *)base;
    for (int i = 0; i < db->ncache; i++)
        stmt_free(db->cache[i]);
    while (db->loose) {
        sq_stmt *next = db->loose->next;
        stmt_free(db->loose);
        db->loose = next;
    }
    sqlite3_close(db->h);
    free(db->pol);
    free(db);
}

/* Like sqlite3_exec, which it replaces so that the DDL context and the denial message are
 * reset for each statement of the text (see authorize). */
static int sq_exec(hl_db *base, const char *sql, hl_err *err)
{
    sq_db *db = (sq_db *)base;
    while (*sql) {
        sqlite3_stmt *st = NULL;
        const char *next = NULL;
        stmt_begin(db, 0);
        int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, &next);
        if (rc != SQLITE_OK)
            return sql_error(db, rc, err);
        if (!st) { /* only a comment, spaces or ';' */
            if (!next || next == sql)
                break;
            sql = next;
            continue;
        }
        sql = next;
        unsigned ctx = db->ctx;
        do {
            stmt_begin(db, ctx);
            rc = sqlite3_step(st);
        } while (rc == SQLITE_ROW);
        if (rc != SQLITE_DONE) {
            rc = sql_error(db, rc, err);
            sqlite3_finalize(st);
            return rc;
        }
        sqlite3_finalize(st);
    }
    return HL_OK;
}

/* ---------------------------------------------------------------- statements */

/* Compiles exactly one statement: a second one in the text would be silently ignored by
 * sqlite3_prepare, which hides mistakes (and injected SQL), so it is an error. */
static int compile(sq_db *db, const char *sql, sqlite3_stmt **out, unsigned *ctx, hl_err *err)
{
    sqlite3_stmt *st = NULL, *extra = NULL;
    const char *tail = NULL;
    stmt_begin(db, 0);
    int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, &tail);
    if (rc != SQLITE_OK && auth_error(db, rc, err))
        return HL_EINVAL;
    if (rc != SQLITE_OK)
        return hl_err_set(err, map_rc(rc), "cannot prepare SQL: %s", sqlite3_errmsg(db->h));
    if (!st)
        return hl_err_set(err, HL_EINVAL, "cannot prepare SQL: empty statement");
    *ctx = db->ctx;
    if (tail && *tail) {
        db->ctx = 0;
        rc = sqlite3_prepare_v2(db->h, tail, -1, &extra, NULL);
        if (rc != SQLITE_OK || extra) {
            sqlite3_finalize(extra);
            sqlite3_finalize(st);
            return hl_err_set(err, HL_EINVAL,
                              "cannot prepare SQL: more than one statement (use hl_db_exec)");
        }
    }
    *out = st;
    return HL_OK;
}

/* Frees a cache slot if the cache is full by finalizing the least recently used statement
 * that nobody holds. Returns 0 when every cached statement is in use. */
static int make_room(sq_db *db)
{
    int victim = -1;
    if (db->ncache < CACHE_MAX)
        return 1;
    for (int i = 0; i < db->ncache; i++)
        if (!db->cache[i]->base.in_use && (victim < 0 || db->cache[i]->used < db->cache[victim]->used))
            victim = i;
    if (victim < 0)
        return 0;
    stmt_free(db->cache[victim]);
    db->cache[victim] = db->cache[--db->ncache];
    return 1;
}

/* Under a policy the cache is bypassed both ways, because SQLite consults the authorizer when
 * it compiles a statement, not when it runs it: a statement cached by trusted code was never
 * checked and must not reach a plugin, and one compiled for a plugin must not outlive its
 * policy. Keying the cache by owner would work too, but one-off statements are simpler and
 * plugin SQL is not where the cache matters. */
static int prepare(sq_db *db, const char *sql, sq_stmt **out, hl_err *err)
{
    sq_stmt *hit = NULL, *st;
    sqlite3_stmt *raw = NULL;
    unsigned ctx = 0;
    *out = NULL;
    if (!db || !sql)
        return hl_err_set(err, HL_EINVAL, "hl_db_prepare: NULL argument");
    uint32_t h = hash_str(sql);
    for (int i = 0; i < db->ncache && !db->pol; i++) {
        if (db->cache[i]->hash == h && strcmp(db->cache[i]->key, sql) == 0) {
            hit = db->cache[i];
            break;
        }
    }
    if (hit && !hit->base.in_use) {
        hit->base.in_use = 1;
        hit->used = ++db->tick;
        *out = hit;
        return HL_OK;
    }
    int rc = compile(db, sql, &raw, &ctx, err);
    if (rc != HL_OK)
        return rc;
    if (!(st = calloc(1, sizeof *st))) {
        sqlite3_finalize(raw);
        return hl_err_set(err, HL_ENOMEM, "cannot prepare SQL: out of memory");
    }
    st->st = raw;
    st->db = db;
    st->base.db = &db->base;
    st->hash = h;
    st->base.in_use = 1;
    st->used = ++db->tick;
    st->pgen = db->pol ? db->pgen : 0;
    st->ctx = ctx;
    /* The text is already cached but busy (e.g. a nested loop over the same query): this copy
     * is a one-off so that one sqlite3_stmt is never handed out twice. */
    if (!hit && !db->pol && make_room(db) && (st->key = strdup(sql))) {
        db->cache[db->ncache++] = st;
    } else {
        st->next = db->loose;
        if (db->loose)
            db->loose->prev = st;
        db->loose = st;
    }
    *out = st;
    return HL_OK;
}

static int sq_prepare(hl_db *base, const char *sql, hl_stmt **out, hl_err *err)
{
    sq_stmt *st;
    int rc = prepare((sq_db *)base, sql, &st, err);
    *out = rc == HL_OK ? &st->base : NULL;
    return rc;
}

static void sq_done(hl_stmt *base)
{
    sq_stmt *st = (sq_stmt *)base;
    sqlite3_reset(st->st);
    sqlite3_clear_bindings(st->st);
    if (st->key) {
        st->base.in_use = 0;
        return;
    }
    sq_db *db = st->db;
    if (st->prev)
        st->prev->next = st->next;
    else
        db->loose = st->next;
    if (st->next)
        st->next->prev = st->prev;
    stmt_free(st);
}

/* ---------------------------------------------------------------- binding */

#define SQ(st) (((sq_stmt *)(st))->st)

static int sq_param_count(hl_stmt *st) { return sqlite3_bind_parameter_count(SQ(st)); }

static int sq_bind_int64(hl_stmt *st, int idx, int64_t v)
{
    return map_rc(sqlite3_bind_int64(SQ(st), idx, (sqlite3_int64)v));
}

static int sq_bind_double(hl_stmt *st, int idx, double v)
{
    return map_rc(sqlite3_bind_double(SQ(st), idx, v));
}

static int sq_bind_text(hl_stmt *st, int idx, const char *s, size_t len)
{
    return map_rc(sqlite3_bind_text64(SQ(st), idx, s, (sqlite3_uint64)len, SQLITE_TRANSIENT,
                                      SQLITE_UTF8));
}

static int sq_bind_blob(hl_stmt *st, int idx, const void *p, size_t len)
{
    if (len == 0) /* an empty blob, not NULL: sqlite3_bind_blob would store NULL */
        return map_rc(sqlite3_bind_zeroblob(SQ(st), idx, 0));
    return map_rc(sqlite3_bind_blob64(SQ(st), idx, p, (sqlite3_uint64)len, SQLITE_TRANSIENT));
}

static int sq_bind_null(hl_stmt *st, int idx) { return map_rc(sqlite3_bind_null(SQ(st), idx)); }

static const char *sq_bind_error(hl_stmt *st) { return sqlite3_errmsg(((sq_stmt *)st)->db->h); }

/* ---------------------------------------------------------------- steps and columns */

static int sq_step(hl_stmt *base, hl_err *err)
{
    sq_stmt *st = (sq_stmt *)base;
    /* SQLite recompiles a statement when the schema changed, under whatever policy is in force
     * then: a plugin's statement could otherwise run unchecked after its policy is cleared. */
    if (st->pgen && st->pgen != st->db->pgen)
        return hl_err_set(err, HL_EINVAL,
                          "step: statement was prepared under an access policy no longer in force");
    stmt_begin(st->db, st->ctx);
    int rc = sqlite3_step(st->st);
    if (rc == SQLITE_ROW)
        return HL_DB_ROW;
    if (rc == SQLITE_DONE)
        return HL_DB_DONE;
    return sql_error(st->db, rc, err);
}

static int sq_col_count(hl_stmt *st) { return sqlite3_column_count(SQ(st)); }

static const char *sq_col_name(hl_stmt *st, int col) { return sqlite3_column_name(SQ(st), col); }

/* No current row reads as NULL. */
static int has_row(hl_stmt *st, int col) { return col < sqlite3_data_count(SQ(st)); }

static int sq_col_type(hl_stmt *st, int col)
{
    if (!has_row(st, col))
        return HL_DB_NULL;
    switch (sqlite3_column_type(SQ(st), col)) {
    case SQLITE_INTEGER: return HL_DB_INTEGER;
    case SQLITE_FLOAT: return HL_DB_FLOAT;
    case SQLITE_TEXT: return HL_DB_TEXT;
    case SQLITE_BLOB: return HL_DB_BLOB;
    default: return HL_DB_NULL;
    }
}

static int64_t sq_col_int64(hl_stmt *st, int col)
{
    return has_row(st, col) ? (int64_t)sqlite3_column_int64(SQ(st), col) : 0;
}

static double sq_col_double(hl_stmt *st, int col)
{
    return has_row(st, col) ? sqlite3_column_double(SQ(st), col) : 0.0;
}

static const char *sq_col_text(hl_stmt *st, int col)
{
    return has_row(st, col) ? (const char *)sqlite3_column_text(SQ(st), col) : NULL;
}

static const void *sq_col_blob(hl_stmt *st, int col)
{
    return has_row(st, col) ? sqlite3_column_blob(SQ(st), col) : NULL;
}

static size_t sq_col_bytes(hl_stmt *st, int col)
{
    return has_row(st, col) ? (size_t)sqlite3_column_bytes(SQ(st), col) : 0;
}

/* ---------------------------------------------------------------- connection services */

#define SDB(db) ((sq_db *)(db))

static int64_t sq_changes(hl_db *db) { return sqlite3_changes(SDB(db)->h); }

static int64_t sq_last_insert_id(hl_db *db) { return sqlite3_last_insert_rowid(SDB(db)->h); }

/* Durability of commits. In WAL mode synchronous=NORMAL writes a commit to the WAL without
 * fsync: a power cut (not a crash of the process) may lose the last transactions, never
 * corrupt the file. FULL fsyncs the WAL at every commit. Measured on the build machine
 * (tests/bench/bench_db.c, run by scripts/bench; docs/operators.md, storage): about 43 us per
 * small transaction with NORMAL, 186-216 us with FULL, 4-5 times more, and far worse where an
 * fsync takes milliseconds. So FULL is not the default: only what carries money (an order, a
 * payment, an invoice number) asks for it with hl_db_tx_durable. SQLite refuses to change
 * synchronous inside a transaction: db.c sets it around the durable one. */
static int sq_set_durable(hl_db *base, int full, hl_err *err)
{
    return sq_exec(base, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err);
}

/* IMMEDIATE takes the write lock now, so a busy database fails here (after the busy timeout)
 * rather than half-way through the work. */
static int sq_begin(hl_db *base, int durable, hl_err *err)
{
    (void)durable; /* set_durable did it */
    return sq_exec(base, "BEGIN IMMEDIATE", err);
}

static int sq_in_tx(hl_db *db) { return !sqlite3_get_autocommit(SDB(db)->h); }

static void sq_set_busy_timeout(hl_db *db, int ms) { sqlite3_busy_timeout(SDB(db)->h, ms); }

static int sq_readonly(hl_db *db) { return sqlite3_db_readonly(SDB(db)->h, "main") == 1; }

/* ---------------------------------------------------------------- access policy */

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* SQLite folds identifiers in ASCII only, and so do these (strcasecmp depends on locale). */
static int ieq(const char *a, const char *b)
{
    if (!a || !b)
        return 0;
    while (*a && lower((unsigned char)*a) == lower((unsigned char)*b))
        a++, b++;
    return lower((unsigned char)*a) == lower((unsigned char)*b);
}

static int istarts(const char *s, const char *pre)
{
    if (!s)
        return 0;
    for (; *pre; s++, pre++)
        if (lower((unsigned char)*s) != lower((unsigned char)*pre))
            return 0;
    return 1;
}

static const char *S(const char *s) { return s ? s : ""; }

static int listed(const char *const *list, const char *name)
{
    for (; list && *list; list++)
        if (ieq(*list, name))
            return 1;
    return 0;
}

/* "news" owns news_x, not newsletter_x. */
static int owns(const char *prefix, size_t plen, const char *name)
{
    return prefix && istarts(name, prefix) && name[plen] == '_';
}

static int own(const policy *p, const char *name)
{
    return owns(p->prefix, p->plen, name);
}

/* The indexes SQLite makes for PRIMARY KEY and UNIQUE; the name is reserved, so a plugin
 * cannot give it to an index of its own on someone else's table. */
static int own_index(const policy *p, const char *name)
{
    return own(p, name) || istarts(name, "sqlite_autoindex_");
}

static int is_schema(const char *t)
{
    return ieq(t, "sqlite_master") || ieq(t, "sqlite_schema") || ieq(t, "sqlite_temp_master") ||
           ieq(t, "sqlite_temp_schema");
}

static int is_hidden(const char *const *hidden, const char *table, const char *col)
{
    size_t tl = strlen(S(table));
    for (const char *const *h = hidden; h && *h; h++) {
        const char *e = *h;
        size_t i = 0;
        while (i < tl && e[i] && lower((unsigned char)e[i]) == lower((unsigned char)table[i]))
            i++;
        if (i == tl && e[i] == '.' && ieq(e + i + 1, S(col)))
            return 1;
    }
    return 0;
}

/* Records the first refusal of the statement being compiled or run (later ones follow from
 * it) and logs it: a plugin probing what it may not do should show up in the operator's log. */
static int deny(sq_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int deny(sq_db *db, const char *fmt, ...)
{
    if (!db->denied) {
        db->denied = 1;
        va_list ap;
        int n = snprintf(db->denial, sizeof db->denial, "plugin %s may not ", db->pol->owner);
        if (n > 0 && (size_t)n < sizeof db->denial) {
            va_start(ap, fmt);
            vsnprintf(db->denial + n, sizeof db->denial - (size_t)n, fmt, ap);
            va_end(ap);
        }
        hl_log(HL_LOG_WARN, "%s", db->denial);
    }
    return SQLITE_DENY;
}

static int auth_read(sq_db *db, const char *table, const char *col, const char *inner)
{
    const policy *p = db->pol;
    unsigned ctx = db->ctx;
    if (is_schema(table)) {
        /* Only the nested schema updates of an allowed DDL statement: CREATE reads nothing but
         * the rowid; ALTER and DROP read names and SQL, but neither can hold a user-written
         * subquery, and a trigger they fire (FK cascade) runs with its name in inner. */
        if (ctx && ieq(col, "rowid"))
            return SQLITE_OK;
        if ((ctx & (CTX_ALTER | CTX_DROP)) && !inner)
            return SQLITE_OK;
        return deny(db, "read the schema (%s)", S(table));
    }
    if (!inner && (ctx & (CTX_ALTER | CTX_DROP)) && ieq(table, "sqlite_sequence"))
        return SQLITE_OK;
    /* ALTER ... ADD COLUMN with NOT NULL or CHECK verifies the existing rows this way. */
    if (!inner && (ctx & CTX_ALTER) && ieq(table, "pragma_quick_check"))
        return SQLITE_OK;
    if (istarts(table, "sqlite_") || !(own(p, table) || listed(p->readable, table)))
        return deny(db, "read table %s", S(table));
    if (is_hidden((const char *const *)p->hidden, table, col))
        return deny(db, "read %s.%s", S(table), S(col));
    return SQLITE_OK;
}

int hl_db_policy_reads(const hl_db_policy *p, const char *table, const char *column)
{
    if (!p || !table || istarts(table, "sqlite_"))
        return 0;
    if (!owns(p->prefix, p->prefix ? strlen(p->prefix) : 0, table) && !listed(p->readable, table))
        return 0;
    return !column || !is_hidden(p->hidden, table, column);
}

static int auth_write(sq_db *db, const char *table, const char *inner)
{
    /* SQLite refuses direct writes to the schema table (writable_schema is off and PRAGMA is
     * denied): these are the schema updates of a DDL statement, checked by its own action. */
    if (is_schema(table))
        return SQLITE_OK;
    /* AUTOINCREMENT inserts update sqlite_sequence unreported; DROP and ALTER report it. */
    if (!inner && (db->ctx & (CTX_ALTER | CTX_DROP)) && ieq(table, "sqlite_sequence"))
        return SQLITE_OK;
    if (own(db->pol, table))
        return SQLITE_OK;
    return deny(db, "write table %s", S(table));
}

/* SQLite's own helpers that ALTER TABLE's nested SQL calls; sqlite_rename_table is left out
 * on purpose: a rename reports the old name only, and the new one could be anything
 * (a table the core will create later, with the plugin's triggers on it). */
static const char *const alter_functions[] = {"sqlite_rename_column", "sqlite_rename_test",
                                              "sqlite_rename_quotefix", "sqlite_drop_column",
                                              NULL};

static int auth_function(sq_db *db, const char *name)
{
    if (ieq(name, "load_extension") || istarts(name, "fts3_tokenizer"))
        return deny(db, "call %s()", S(name));
    if (istarts(name, "sqlite_")) {
        if ((db->ctx & CTX_ALTER) && ieq(name, "sqlite_rename_table"))
            return deny(db, "rename tables");
        if ((db->ctx & CTX_ALTER) && listed(alter_functions, name))
            return SQLITE_OK;
        return deny(db, "call %s()", S(name));
    }
    return SQLITE_OK;
}

/* An allowed DDL action also opens its context for the rest of the compilation. */
static int open_ctx(sq_db *db, unsigned ctx)
{
    db->ctx |= ctx;
    return SQLITE_OK;
}

/* The authorizer: called by SQLite for each action of a statement it compiles. a1/a2 depend
 * on the action (see sqlite3_set_authorizer); dbname is "main", "temp", an attached name or
 * NULL; inner names the trigger or view whose code is being compiled. */
static int authorize(void *ud, int action, const char *a1, const char *a2, const char *dbname,
                     const char *inner)
{
    sq_db *db = ud;
    const policy *p = db->pol;
    if (!p || db->base.internal)
        return SQLITE_OK;
    if (action == SQLITE_ALTER_TABLE) /* it passes the database first, and no dbname */
        dbname = a1;
    /* RENAME COLUMN also fixes temp triggers, through the temp schema table. */
    if (dbname && !ieq(dbname, "main") &&
        !(ieq(dbname, "temp") && (db->ctx & CTX_ALTER) && is_schema(a1))) {
        if (ieq(dbname, "temp"))
            return deny(db, "use temporary tables");
        return deny(db, "use database %s", dbname);
    }
    switch (action) {
    case SQLITE_SELECT:
    case SQLITE_RECURSIVE: /* what a SELECT or recursive CTE reads is reported on its own */
        return SQLITE_OK;
    case SQLITE_READ:
        return auth_read(db, a1, a2, inner);
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
        return auth_write(db, a1, inner);
    case SQLITE_FUNCTION:
        return auth_function(db, a2);
    case SQLITE_CREATE_TABLE:
        if ((db->ctx & CTX_CREATE) && ieq(a1, "sqlite_sequence")) /* first AUTOINCREMENT */
            return SQLITE_OK;
        return own(p, a1) ? open_ctx(db, CTX_CREATE) : deny(db, "create table %s", S(a1));
    case SQLITE_CREATE_VIEW:
        /* A view or trigger runs later, in other code's statements, with that code's rights:
         * contained code may not leave such code behind, even on its own tables. */
        return deny(db, "create view %s (views and triggers are refused to plugins)", S(a1));
    case SQLITE_CREATE_INDEX:
        if (own_index(p, a1) && own(p, a2))
            return open_ctx(db, CTX_CREATE);
        return deny(db, "create index %s on table %s", S(a1), S(a2));
    case SQLITE_CREATE_TRIGGER:
        return deny(db, "create trigger %s on table %s (views and triggers are refused to plugins)", S(a1), S(a2));
    case SQLITE_DROP_TABLE:
    case SQLITE_DROP_VIEW:
        if (own(p, a1))
            return open_ctx(db, CTX_DROP);
        return deny(db, "drop %s %s", action == SQLITE_DROP_VIEW ? "view" : "table", S(a1));
    case SQLITE_DROP_INDEX:
        if (own_index(p, a1) && own(p, a2))
            return open_ctx(db, CTX_DROP);
        return deny(db, "drop index %s", S(a1));
    case SQLITE_DROP_TRIGGER:
        if (own(p, a1) && own(p, a2))
            return open_ctx(db, CTX_DROP);
        return deny(db, "drop trigger %s", S(a1));
    case SQLITE_ALTER_TABLE:
        return own(p, a2) ? open_ctx(db, CTX_ALTER) : deny(db, "alter table %s", S(a2));
    case SQLITE_REINDEX: /* CREATE INDEX builds the new index this way */
        if ((db->ctx & CTX_CREATE) && own_index(p, a1))
            return SQLITE_OK;
        return deny(db, "run REINDEX");
    case SQLITE_PRAGMA: /* the rows check of ALTER ... ADD COLUMN (see auth_read) */
        if ((db->ctx & CTX_ALTER) && ieq(a1, "quick_check") && own(p, a2))
            return SQLITE_OK;
        return deny(db, "run PRAGMA %s", S(a1));
    case SQLITE_ATTACH:
        return deny(db, "attach databases");
    case SQLITE_DETACH:
        return deny(db, "detach databases");
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT:
        return deny(db, "begin, commit or roll back transactions itself");
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_DROP_TEMP_INDEX:
    case SQLITE_DROP_TEMP_VIEW:
    case SQLITE_DROP_TEMP_TRIGGER:
        return deny(db, "use temporary tables");
    default: /* ANALYZE, virtual tables, and codes newer than this file */
        return deny(db, "run this kind of statement (authorizer action %d)", action);
    }
}

static int valid_prefix(const char *s)
{
    size_t n = 0;
    for (; s && s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    /* Core tables are hl_*, SQLite's sqlite_*: such a prefix would own them. */
    return n > 0 && !ieq(s, "hl") && !istarts(s, "hl_") && !ieq(s, "sqlite") &&
           !istarts(s, "sqlite_");
}

/* Counts (*n) and checks a NULL-terminated list, adding the bytes its strings need to
 * *bytes. Entries are bounded before strlen-like scans, so a missing terminator in a
 * "table.column" cannot run far. */
static int check_list(const char *const *list, int dotted, const char *what, size_t *n,
                      size_t *bytes, hl_err *err)
{
    for (*n = 0; list && list[*n]; (*n)++) {
        const char *e = list[*n];
        size_t len = strnlen(e, POLICY_MAX_NAME + 1);
        const char *dot = memchr(e, '.', len);
        if (*n == POLICY_MAX_LIST)
            return hl_err_set(err, HL_ETOOBIG, "policy: more than %d %s entries",
                              POLICY_MAX_LIST, what);
        if (len == 0 || len > POLICY_MAX_NAME || (dotted && (!dot || dot == e || !dot[1])))
            return hl_err_set(err, HL_EINVAL, "policy: invalid %s entry %zu", what, *n + 1);
        *bytes += len + 1;
    }
    return HL_OK;
}

static char *put(char **cur, const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = memcpy(*cur, s, len);
    *cur += len;
    return d;
}

static int policy_copy(const hl_db_policy *in, policy **out, hl_err *err)
{
    size_t bytes = 0, nr, nh;
    int rc;
    *out = NULL;
    if (!hl_db_valid_component(in->owner))
        return hl_err_set(err, HL_EINVAL, "policy: invalid owner name");
    if (!valid_prefix(in->prefix))
        return hl_err_set(err, HL_EINVAL, "policy for %s: invalid or reserved table prefix",
                          in->owner);
    if ((rc = check_list(in->readable, 0, "readable", &nr, &bytes, err)) != HL_OK ||
        (rc = check_list(in->hidden, 1, "hidden", &nh, &bytes, err)) != HL_OK)
        return rc;
    size_t olen = strlen(in->owner) + 1, plen = strlen(in->prefix);
    size_t ptrs = (nr + 1 + nh + 1) * sizeof(char *);
    policy *p = malloc(sizeof *p + ptrs + bytes + olen + plen + 1);
    if (!p)
        return hl_err_set(err, HL_ENOMEM, "policy: out of memory");
    p->readable = (const char **)(p + 1);
    p->hidden = p->readable + nr + 1;
    char *cur = (char *)(p->hidden + nh + 1);
    p->owner = put(&cur, in->owner);
    p->prefix = put(&cur, in->prefix);
    p->plen = plen;
    for (size_t i = 0; i < nr; i++)
        p->readable[i] = put(&cur, in->readable[i]);
    p->readable[nr] = NULL;
    for (size_t i = 0; i < nh; i++)
        p->hidden[i] = put(&cur, in->hidden[i]);
    p->hidden[nh] = NULL;
    *out = p;
    return HL_OK;
}

static void sq_set_budget(hl_db *base, int (*check)(void *ud), void *ud, int every, int max_length,
                          int max_sql)
{
    sq_db *db = SDB(base);
    if (!check) {
        if (db->budget_on) {
            sqlite3_progress_handler(db->h, 0, NULL, NULL);
            sqlite3_limit(db->h, SQLITE_LIMIT_LENGTH, db->saved_length);
            sqlite3_limit(db->h, SQLITE_LIMIT_SQL_LENGTH, db->saved_sql);
            db->budget_on = 0;
        }
        return;
    }
    if (!db->budget_on) {
        db->saved_length = sqlite3_limit(db->h, SQLITE_LIMIT_LENGTH, -1);
        db->saved_sql = sqlite3_limit(db->h, SQLITE_LIMIT_SQL_LENGTH, -1);
        db->budget_on = 1;
    }
    sqlite3_progress_handler(db->h, every > 0 ? every : 1000, check, ud);
    sqlite3_limit(db->h, SQLITE_LIMIT_LENGTH, max_length);
    sqlite3_limit(db->h, SQLITE_LIMIT_SQL_LENGTH, max_sql);
}

static int sq_set_policy(hl_db *base, const hl_db_policy *pol, hl_err *err)
{
    sq_db *db = SDB(base);
    policy *np = NULL;
    if (pol) {
        int rc = policy_copy(pol, &np, err);
        /* Installed once and left in place: installing expires every prepared statement. */
        if (rc == HL_OK && !db->auth_on) {
            if (sqlite3_set_authorizer(db->h, authorize, db) != SQLITE_OK)
                rc = hl_err_set(err, HL_ERR, "set policy: %s", sqlite3_errmsg(db->h));
            else
                db->auth_on = 1;
        }
        if (rc != HL_OK) {
            free(np);
            return rc;
        }
        db->denial[0] = '\0';
    }
    free(db->pol);
    db->pol = np;
    if (++db->pgen == 0) /* 0 marks statements prepared without a policy */
        db->pgen = 1;
    return HL_OK;
}

static const char *sq_policy_denial(hl_db *db) { return SDB(db)->denial; }

const hl_db_backend hl_db_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .exec = sq_exec,
    .prepare = sq_prepare,
    .done = sq_done,
    .param_count = sq_param_count,
    .bind_int64 = sq_bind_int64,
    .bind_double = sq_bind_double,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .bind_error = sq_bind_error,
    .step = sq_step,
    .col_count = sq_col_count,
    .col_name = sq_col_name,
    .col_type = sq_col_type,
    .col_int64 = sq_col_int64,
    .col_double = sq_col_double,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .col_bytes = sq_col_bytes,
    .changes = sq_changes,
    .last_insert_id = sq_last_insert_id,
    .set_durable = sq_set_durable,
    .begin = sq_begin,
    .in_tx = sq_in_tx,
    .set_busy_timeout = sq_set_busy_timeout,
    .readonly = sq_readonly,
    .set_policy = sq_set_policy,
    .policy_denial = sq_policy_denial,
    .set_budget = sq_set_budget,
    .sync_ids = NULL,
    .after_migration = NULL,
    .lock = NULL,
};
