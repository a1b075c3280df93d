/* SQLite backend of the storage API (see db.h): one connection per worker process, a small
 * LRU cache of prepared statements keyed by SQL text, typed binding, nested transactions on
 * savepoints, numbered migration files recorded per component, and the access policy that
 * confines a plugin's SQL through SQLite's authorizer. */
#include "core/db.h"

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
#define TX_BUSY_TRIES 5          /* attempts of an outermost hl_db_tx when the database is busy */
#define TX_BACKOFF_MS 20         /* first pause between them, doubled each time, with jitter */
#define TX_MAX_DEPTH 1000        /* deeper nesting is a runaway recursion, not a design */
#define MIG_MAX_BYTES (1024 * 1024)
#define MIG_MAX_FILES 10000
#define MIG_MAX_NUMBER 999999L
#define NAME_MAX_LEN 255
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

struct hl_stmt {
    sqlite3_stmt *st;
    hl_db *db;
    char *key;            /* SQL text when cached; NULL for a one-off statement */
    uint32_t hash;
    uint64_t used;        /* LRU clock value of the last hand-out */
    int in_use;
    unsigned pgen;        /* policy generation it was compiled under, 0 for none */
    unsigned ctx;         /* CTX_* of its compilation, restored while it runs */
    hl_stmt *prev, *next; /* list of one-off statements, so close can finalize them */
};

struct hl_db {
    sqlite3 *h;
    char *path;
    int depth;            /* open transaction levels (1 = BEGIN, more = savepoints) */
    uint64_t tick;
    int ncache;
    hl_stmt *cache[CACHE_MAX];
    hl_stmt *loose;
    policy *pol;          /* NULL: trusted code, nothing is checked */
    unsigned pgen;        /* bumped on every policy change */
    unsigned ctx;         /* CTX_* of the statement being compiled or run */
    int internal;         /* > 0 while db.c runs its own fixed SQL (transactions, hl_migrations) */
    int auth_on;          /* the authorizer is installed (once: installing expires statements) */
    int denied;           /* the policy refused something since the last stmt_begin */
    char denial[256];
    int durable;          /* the open transaction commits with synchronous=FULL */
    char errmsg[512];     /* message of the last failed statement (hl_db_errmsg) */
    int budget_on;        /* hl_db_set_budget's bounds are in force */
    int saved_length, saved_sql; /* the limits they replaced */
};

static const char MIG_TABLE_SQL[] =
    "CREATE TABLE IF NOT EXISTS hl_migrations ("
    "component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
    "applied_at TEXT NOT NULL, PRIMARY KEY (component, version))";

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

static void stmt_free(hl_stmt *st)
{
    sqlite3_finalize(st->st);
    free(st->key);
    free(st);
}

/* Called before each compile or step: a denial message belongs to one statement, and a
 * statement runs with the DDL context it was compiled with (SQLite may recompile it, and an
 * ALTER runs a PRAGMA quick_check while it executes). db.c's own SQL keeps the message of the
 * plugin statement that failed before it (e.g. the ROLLBACK after a failed migration). */
static void stmt_begin(hl_db *db, unsigned ctx)
{
    db->ctx = ctx;
    db->denied = 0;
    if (!db->internal)
        db->denial[0] = '\0';
}

/* The policy refused something while compiling (or while running: VACUUM and schema changes
 * compile SQL then). SQLite says SQLITE_AUTH for most refusals but SQLITE_ERROR ("not
 * authorized to use function") for functions, hence the flag. Returns 0 if not the case. */
static int auth_error(hl_db *db, int rc, hl_err *err)
{
    if (db->denied)
        return hl_err_set(err, HL_EINVAL, "not authorized: %s", db->denial);
    if ((rc & 0xff) == SQLITE_AUTH)
        return hl_err_set(err, HL_EINVAL, "not authorized");
    return 0;
}

/* The code of a failed call and its message, kept on the connection too (hl_db_errmsg) for
 * callers that passed no hl_err (the plugin API's step). */
static int sql_error(hl_db *db, int rc, hl_err *err)
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
    snprintf(db->errmsg, sizeof db->errmsg, "%s", err->msg);
    return code;
}

/* ---------------------------------------------------------------- open / close */

hl_db *hl_db_open(const char *path, unsigned flags, hl_err *err)
{
    hl_db *db = NULL;
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
    if (!(db = calloc(1, sizeof *db)) || !(db->path = strdup(path)) ||
        !(fs = malloc(plen + 3))) {
        free(fs);
        if (db)
            free(db->path);
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
    return db;

fail:
    hl_err_set(err, code == HL_OK ? HL_ERR : code, "cannot open database %s: %s", path, msg);
    sqlite3_finalize(jm);
    sqlite3_close(db->h);
    if (created)
        unlink(fs);
    free(fs);
    free(db->path);
    free(db);
    return NULL;
}

void hl_db_close(hl_db *db)
{
    if (!db)
        return;
    for (int i = 0; i < db->ncache; i++)
        stmt_free(db->cache[i]);
    while (db->loose) {
        hl_stmt *next = db->loose->next;
        stmt_free(db->loose);
        db->loose = next;
    }
    sqlite3_close(db->h);
    free(db->pol);
    free(db->path);
    free(db);
}

const char *hl_db_path(const hl_db *db) { return db ? db->path : NULL; }

/* Like sqlite3_exec, which it replaces so that the DDL context and the denial message are
 * reset for each statement of the text (see authorize). */
int hl_db_exec(hl_db *db, const char *sql, hl_err *err)
{
    if (!db || !sql)
        return hl_err_set(err, HL_EINVAL, "hl_db_exec: NULL argument");
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
static int compile(hl_db *db, const char *sql, sqlite3_stmt **out, unsigned *ctx, hl_err *err)
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
static int make_room(hl_db *db)
{
    int victim = -1;
    if (db->ncache < CACHE_MAX)
        return 1;
    for (int i = 0; i < db->ncache; i++)
        if (!db->cache[i]->in_use && (victim < 0 || db->cache[i]->used < db->cache[victim]->used))
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
static int prepare(hl_db *db, const char *sql, hl_stmt **out, hl_err *err)
{
    hl_stmt *hit = NULL, *st;
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
    if (hit && !hit->in_use) {
        hit->in_use = 1;
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
    st->hash = h;
    st->in_use = 1;
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

hl_stmt *hl_db_prepare(hl_db *db, const char *sql, hl_err *err)
{
    hl_stmt *st;
    prepare(db, sql, &st, err);
    return st;
}

void hl_db_done(hl_stmt *st)
{
    if (!st)
        return;
    sqlite3_reset(st->st);
    sqlite3_clear_bindings(st->st);
    if (st->key) {
        st->in_use = 0;
        return;
    }
    hl_db *db = st->db;
    if (st->prev)
        st->prev->next = st->next;
    else
        db->loose = st->next;
    if (st->next)
        st->next->prev = st->prev;
    stmt_free(st);
}

/* ---------------------------------------------------------------- binding */

int hl_db_bind_int64(hl_stmt *st, int idx, int64_t v)
{
    return st ? map_rc(sqlite3_bind_int64(st->st, idx, (sqlite3_int64)v)) : HL_EINVAL;
}

int hl_db_bind_double(hl_stmt *st, int idx, double v)
{
    return st ? map_rc(sqlite3_bind_double(st->st, idx, v)) : HL_EINVAL;
}

int hl_db_bind_text(hl_stmt *st, int idx, const char *s, size_t len)
{
    if (!st)
        return HL_EINVAL;
    if (!s)
        return hl_db_bind_null(st, idx);
    return map_rc(sqlite3_bind_text64(st->st, idx, s, (sqlite3_uint64)len, SQLITE_TRANSIENT,
                                      SQLITE_UTF8));
}

int hl_db_bind_blob(hl_stmt *st, int idx, const void *p, size_t len)
{
    if (!st || (!p && len))
        return HL_EINVAL;
    if (!p) /* an empty blob, not NULL: sqlite3_bind_blob would store NULL */
        return map_rc(sqlite3_bind_zeroblob(st->st, idx, 0));
    return map_rc(sqlite3_bind_blob64(st->st, idx, p, (sqlite3_uint64)len, SQLITE_TRANSIENT));
}

int hl_db_bind_null(hl_stmt *st, int idx)
{
    return st ? map_rc(sqlite3_bind_null(st->st, idx)) : HL_EINVAL;
}

/* The whole type string is checked before any va_arg, since a wrong string means we cannot
 * know what the caller passed. */
static int bind_list(hl_stmt *st, const char *types, va_list ap, hl_err *err)
{
    size_t n = types ? strlen(types) : 0;
    if (!st)
        return hl_err_set(err, HL_EINVAL, "bind: NULL statement");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)types[i];
        if (!strchr("iIdstbn", c)) {
            if (isprint(c))
                return hl_err_set(err, HL_EINVAL, "bind: unknown type '%c' at position %zu", c,
                                  i + 1);
            return hl_err_set(err, HL_EINVAL, "bind: unknown type byte 0x%02x at position %zu",
                              c, i + 1);
        }
    }
    int want = sqlite3_bind_parameter_count(st->st);
    if (n != (size_t)want)
        return hl_err_set(err, HL_EINVAL, "bind: SQL takes %d parameter(s) but %zu given", want,
                          n);
    for (size_t i = 0; i < n; i++) {
        int idx = (int)i + 1, rc = HL_OK;
        const char *s;
        const void *p;
        size_t len;
        switch (types[i]) {
        case 'i': rc = hl_db_bind_int64(st, idx, va_arg(ap, int)); break;
        case 'I': rc = hl_db_bind_int64(st, idx, va_arg(ap, int64_t)); break;
        case 'd': rc = hl_db_bind_double(st, idx, va_arg(ap, double)); break;
        case 's':
            s = va_arg(ap, const char *);
            rc = hl_db_bind_text(st, idx, s, s ? strlen(s) : 0);
            break;
        case 't':
            s = va_arg(ap, const char *);
            len = va_arg(ap, size_t);
            rc = hl_db_bind_text(st, idx, s, len);
            break;
        case 'b':
            p = va_arg(ap, const void *);
            len = va_arg(ap, size_t);
            rc = hl_db_bind_blob(st, idx, p, len);
            break;
        default: rc = hl_db_bind_null(st, idx); break;
        }
        if (rc != HL_OK)
            return hl_err_set(err, rc, "bind: parameter %d: %s", idx,
                              rc == HL_EINVAL && types[i] == 'b' ? "NULL blob with a length"
                                                                 : sqlite3_errmsg(st->db->h));
    }
    return HL_OK;
}

int hl_db_bindva(hl_stmt *st, const char *types, va_list ap, hl_err *err)
{
    return bind_list(st, types, ap, err);
}

int hl_db_bindv(hl_stmt *st, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = bind_list(st, types, ap, NULL);
    va_end(ap);
    return rc;
}

int hl_db_step(hl_stmt *st, hl_err *err)
{
    if (!st || !st->in_use)
        return hl_err_set(err, HL_EINVAL, "step: statement is not in use");
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
    hl_err local;
    int code = sql_error(st->db, rc, &local);
    if (code != HL_EBUSY && code != HL_EINVAL && code != HL_EUNIQUE && code != HL_EFOREIGN)
        code = HL_ERR;
    local.code = code;
    if (err)
        *err = local;
    return code;
}

const char *hl_db_errmsg(hl_db *db) { return db ? db->errmsg : ""; }


/* ---------------------------------------------------------------- columns */

/* Out-of-range columns (or no current row) read as NULL instead of undefined behaviour. */
static int col_ok(hl_stmt *st, int col)
{
    return st && st->in_use && col >= 0 && col < sqlite3_data_count(st->st);
}

int hl_db_col_count(hl_stmt *st) { return st ? sqlite3_column_count(st->st) : 0; }

const char *hl_db_col_name(hl_stmt *st, int col)
{
    if (!st || col < 0 || col >= sqlite3_column_count(st->st))
        return NULL;
    return sqlite3_column_name(st->st, col);
}

int hl_db_col_type(hl_stmt *st, int col)
{
    if (!col_ok(st, col))
        return HL_DB_NULL;
    switch (sqlite3_column_type(st->st, col)) {
    case SQLITE_INTEGER: return HL_DB_INTEGER;
    case SQLITE_FLOAT: return HL_DB_FLOAT;
    case SQLITE_TEXT: return HL_DB_TEXT;
    case SQLITE_BLOB: return HL_DB_BLOB;
    default: return HL_DB_NULL;
    }
}

int64_t hl_db_col_int64(hl_stmt *st, int col)
{
    return col_ok(st, col) ? (int64_t)sqlite3_column_int64(st->st, col) : 0;
}

double hl_db_col_double(hl_stmt *st, int col)
{
    return col_ok(st, col) ? sqlite3_column_double(st->st, col) : 0.0;
}

const char *hl_db_col_text(hl_stmt *st, int col)
{
    return col_ok(st, col) ? (const char *)sqlite3_column_text(st->st, col) : NULL;
}

const void *hl_db_col_blob(hl_stmt *st, int col)
{
    return col_ok(st, col) ? sqlite3_column_blob(st->st, col) : NULL;
}

size_t hl_db_col_bytes(hl_stmt *st, int col)
{
    return col_ok(st, col) ? (size_t)sqlite3_column_bytes(st->st, col) : 0;
}

int hl_db_col_is_null(hl_stmt *st, int col)
{
    return !col_ok(st, col) || sqlite3_column_type(st->st, col) == SQLITE_NULL;
}

/* ---------------------------------------------------------------- one-shot helpers */

static int query_va(hl_db *db, hl_err *err, const char *sql, const char *types, va_list ap,
                    hl_stmt **out)
{
    int rc = prepare(db, sql, out, err);
    if (rc != HL_OK)
        return rc;
    rc = bind_list(*out, types, ap, err);
    if (rc != HL_OK) {
        hl_db_done(*out);
        *out = NULL;
    }
    return rc;
}

int hl_db_run(hl_db *db, hl_err *err, const char *sql, const char *types, ...)
{
    hl_stmt *st;
    va_list ap;
    va_start(ap, types);
    int rc = query_va(db, err, sql, types, ap, &st);
    va_end(ap);
    if (rc != HL_OK)
        return rc;
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW)
        ;
    if (rc == HL_DB_DONE)
        rc = sqlite3_changes(db->h);
    hl_db_done(st);
    return rc;
}

hl_stmt *hl_db_query(hl_db *db, hl_err *err, const char *sql, const char *types, ...)
{
    hl_stmt *st;
    va_list ap;
    va_start(ap, types);
    query_va(db, err, sql, types, ap, &st);
    va_end(ap);
    return st;
}

int hl_db_insert(hl_db *db, hl_err *err, int64_t *id, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int rc = hl_db_insertva(db, err, id, sql, types, ap);
    va_end(ap);
    return rc;
}

int hl_db_insertva(hl_db *db, hl_err *err, int64_t *id, const char *sql, const char *types, va_list ap)
{
    hl_stmt *st;
    if (!id)
        return hl_err_set(err, HL_EINVAL, "insert: NULL id");
    *id = 0;
    int rc = query_va(db, err, sql, types, ap, &st);
    if (rc != HL_OK)
        return rc;
    rc = hl_db_step(st, err);
    if (rc == HL_DB_ROW) {
        if (hl_db_col_type(st, 0) != HL_DB_INTEGER)
            rc = hl_err_set(err, HL_EINVAL, "insert: RETURNING gave no integer id");
        else
            *id = hl_db_col_int64(st, 0);
        /* the rest of the rows (a multi-row insert) are still inserted; the first id is kept */
        while (rc == HL_DB_ROW)
            rc = hl_db_step(st, err);
        if (rc == HL_DB_DONE)
            rc = HL_OK;
    } else if (rc == HL_DB_DONE) {
        rc = hl_err_set(err, HL_EINVAL, "insert: no row returned (SQL without RETURNING?)");
    }
    hl_db_done(st);
    if (rc != HL_OK)
        *id = 0;
    return rc;
}

int64_t hl_db_last_insert_id(hl_db *db)
{
    return db ? (int64_t)sqlite3_last_insert_rowid(db->h) : 0;
}

/* ---------------------------------------------------------------- transactions */

/* db.c's own fixed SQL passes the policy: a plugin may not end or roll back a transaction the
 * core opened (nor ours), but hl_db_tx on its behalf must work. */
static int internal_exec(hl_db *db, const char *sql, hl_err *err)
{
    db->internal++;
    int rc = hl_db_exec(db, sql, err);
    db->internal--;
    return rc;
}

int hl_db_begin(hl_db *db, hl_err *err)
{
    char sql[64];
    if (!db)
        return hl_err_set(err, HL_EINVAL, "begin: NULL database");
    if (db->depth >= TX_MAX_DEPTH)
        return hl_err_set(err, HL_ETOOBIG, "begin: transactions nested too deep");
    /* IMMEDIATE takes the write lock now, so a busy database fails here (after the busy
     * timeout) rather than half-way through the work. */
    if (db->depth == 0)
        snprintf(sql, sizeof sql, "BEGIN IMMEDIATE");
    else
        snprintf(sql, sizeof sql, "SAVEPOINT hl_sp_%d", db->depth);
    int rc = internal_exec(db, sql, err);
    if (rc != HL_OK)
        return rc;
    db->depth++;
    return HL_OK;
}

/* On failure the transaction stays open: the caller must hl_db_rollback. */
int hl_db_commit(hl_db *db, hl_err *err)
{
    char sql[64];
    if (!db || db->depth == 0)
        return hl_err_set(err, HL_EINVAL, "commit: no transaction is open");
    if (sqlite3_get_autocommit(db->h))
        return hl_err_set(err, HL_ERR, "commit: the transaction was already rolled back");
    if (db->depth == 1)
        snprintf(sql, sizeof sql, "COMMIT");
    else
        snprintf(sql, sizeof sql, "RELEASE hl_sp_%d", db->depth - 1);
    int rc = internal_exec(db, sql, err);
    if (rc != HL_OK)
        return rc;
    db->depth--;
    return HL_OK;
}

int hl_db_rollback(hl_db *db)
{
    char sql[96];
    if (!db || db->depth == 0)
        return HL_EINVAL;
    db->depth--;
    /* SQLite rolls the whole transaction back by itself on some errors (I/O, out of memory):
     * then there is nothing left to undo at any level. */
    if (sqlite3_get_autocommit(db->h))
        return HL_OK;
    if (db->depth == 0)
        snprintf(sql, sizeof sql, "ROLLBACK");
    else
        snprintf(sql, sizeof sql, "ROLLBACK TO hl_sp_%d; RELEASE hl_sp_%d", db->depth,
                 db->depth);
    return internal_exec(db, sql, NULL);
}

/* Durability of commits. In WAL mode synchronous=NORMAL writes a commit to the WAL without
 * fsync: a power cut (not a crash of the process) may lose the last transactions, never
 * corrupt the file. FULL fsyncs the WAL at every commit. Measured on the build machine
 * (tests/bench/bench_db.c, run by scripts/bench; docs/operators.md, storage): about 43 us per
 * small transaction with NORMAL, 186-216 us with FULL, 4-5 times more, and far worse where an
 * fsync takes milliseconds. So FULL is not the default: only what carries money (an order, a
 * payment, an invoice number) asks for it with hl_db_tx_durable. SQLite refuses to
 * change synchronous inside a transaction, hence the rule that a durable transaction is
 * outermost or nested in another durable one. */
static int set_sync(hl_db *db, int full, hl_err *err)
{
    return internal_exec(db, full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", err);
}

static void backoff(int attempt)
{
    /* 20, 40, 80, 160 ms plus up to half again at random, so that processes that collided
     * do not collide again in step */
    long ms = (long)TX_BACKOFF_MS << attempt;
    ms += rand() % (ms / 2 + 1);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int tx_run(hl_db *db, int durable, int (*fn)(hl_db *db, void *ud, hl_err *err), void *ud,
                  hl_err *err)
{
    if (!db || !fn)
        return hl_err_set(err, HL_EINVAL, "tx: NULL argument");
    if (db->depth > 0) {
        /* a savepoint: a busy database cannot happen inside (BEGIN IMMEDIATE holds the write
         * lock), and the outer transaction decides about commits and retries */
        if (durable && !db->durable)
            return hl_err_set(err, HL_EINVAL,
                              "tx: a durable transaction cannot be nested in an ordinary one");
        int rc = hl_db_begin(db, err);
        if (rc != HL_OK)
            return rc;
        rc = fn(db, ud, err);
        if (rc == HL_OK)
            rc = hl_db_commit(db, err);
        if (rc != HL_OK)
            hl_db_rollback(db);
        return rc;
    }
    int rc = HL_OK;
    if (durable && (rc = set_sync(db, 1, err)) != HL_OK)
        return rc;
    db->durable = durable;
    for (int attempt = 0; attempt < TX_BUSY_TRIES; attempt++) {
        if (attempt > 0)
            backoff(attempt - 1);
        rc = hl_db_begin(db, err);
        if (rc == HL_OK) {
            rc = fn(db, ud, err);
            if (rc == HL_OK)
                rc = hl_db_commit(db, err);
            if (rc != HL_OK)
                hl_db_rollback(db);
        }
        if (rc != HL_EBUSY)
            break;
    }
    if (rc == HL_EBUSY)
        hl_err_set(err, HL_EBUSY, "database is busy (%d attempts): %s", TX_BUSY_TRIES,
                   db->errmsg);
    db->durable = 0;
    if (durable) {
        int r2 = set_sync(db, 0, rc == HL_OK ? err : NULL);
        if (rc == HL_OK)
            rc = r2;
    }
    return rc;
}

int hl_db_tx(hl_db *db, int (*fn)(hl_db *db, void *ud, hl_err *err), void *ud, hl_err *err)
{
    return tx_run(db, 0, fn, ud, err);
}

int hl_db_tx_durable(hl_db *db, int (*fn)(hl_db *db, void *ud, hl_err *err), void *ud,
                     hl_err *err)
{
    return tx_run(db, 1, fn, ud, err);
}

int hl_db_in_tx(const hl_db *db) { return db && db->depth > 0; }

void hl_db_set_busy_timeout(hl_db *db, int ms)
{
    if (db)
        sqlite3_busy_timeout(db->h, ms > 0 ? ms : 0);
}

/* ---------------------------------------------------------------- money: keys and counters */

/* Idempotency keys (table hl_idempotency, migration 010). The key row is claimed by an
 * INSERT ... ON CONFLICT DO NOTHING in the transaction that does the work: a second request
 * with the key waits for the first one's transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
 * conflicting uncommitted row) and then finds the stored result. A failed first attempt rolls
 * the claim back with the work, so the key can be tried again. */
typedef struct idem_ctx {
    const char *scope, *key, *fingerprint;
    hl_db_idem_fn fn;
    void *ud;
    hl_db_result *res;
} idem_ctx;

static int idem_tx(hl_db *db, void *ud, hl_err *err)
{
    idem_ctx *c = ud;
    hl_db_result *res = c->res;
    char now[HL_CLOCK_ISO_LEN];
    hl_clock_iso(hl_clock_now(), now);
    int rc = hl_db_run(db, err,
                       "INSERT INTO hl_idempotency (scope, idem_key, fingerprint, status, created_at) "
                       "VALUES (?, ?, ?, 0, ?) ON CONFLICT (scope, idem_key) DO NOTHING",
                       "ssss", c->scope, c->key, c->fingerprint ? c->fingerprint : "", now);
    if (rc < 0)
        return rc;
    if (rc == 0) { /* the key was used: give its stored result */
        hl_stmt *st = hl_db_query(db, err,
                                  "SELECT fingerprint, status, body FROM hl_idempotency "
                                  "WHERE scope = ? AND idem_key = ?",
                                  "ss", c->scope, c->key);
        if (!st)
            return err && err->code ? err->code : HL_ERR;
        rc = hl_db_step(st, err);
        if (rc == HL_DB_ROW) {
            const char *fp = hl_db_col_text(st, 0);
            if (strcmp(fp ? fp : "", c->fingerprint ? c->fingerprint : "") != 0) {
                rc = hl_err_set(err, HL_ECONFLICT,
                                "idempotency key %s was used for a different request", c->key);
            } else {
                res->status = (int)hl_db_col_int64(st, 1);
                const char *body = hl_db_col_text(st, 2);
                res->replayed = 1;
                rc = HL_OK;
                if (body && !(res->body = strdup(body)))
                    rc = hl_err_set(err, HL_ENOMEM, "idempotency: out of memory");
            }
        } else if (rc == HL_DB_DONE) {
            rc = hl_err_set(err, HL_ERR, "idempotency key %s vanished", c->key);
        }
        hl_db_done(st);
        return rc;
    }
    res->status = 0;
    res->body = NULL;
    rc = c->fn(db, c->ud, res, err);
    if (rc != HL_OK)
        return rc;
    if (res->status <= 0)
        return hl_err_set(err, HL_EINVAL, "idempotency: the work gave no status");
    rc = hl_db_run(db, err,
                   "UPDATE hl_idempotency SET status = ?, body = ? WHERE scope = ? AND idem_key = ?",
                   "isss", res->status, res->body, c->scope, c->key);
    return rc < 0 ? rc : HL_OK;
}

int hl_db_idempotent(hl_db *db, const char *scope, const char *key, const char *fingerprint,
                     hl_db_idem_fn fn, void *ud, hl_db_result *res, hl_err *err)
{
    if (!db || !scope || !key || !fn || !res)
        return hl_err_set(err, HL_EINVAL, "idempotency: NULL argument");
    memset(res, 0, sizeof *res);
    size_t kn = strlen(key), sn = strlen(scope);
    if (kn == 0 || kn > HL_DB_IDEM_KEY_MAX || sn == 0 || sn > HL_DB_IDEM_KEY_MAX)
        return hl_err_set(err, HL_EINVAL, "idempotency: key and scope take 1 to %d bytes",
                          HL_DB_IDEM_KEY_MAX);
    for (size_t i = 0; i < kn; i++)
        if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e)
            return hl_err_set(err, HL_EINVAL, "idempotency: the key is printable ASCII only");
    idem_ctx c = {scope, key, fingerprint, fn, ud, res};
    int rc = hl_db_tx(db, idem_tx, &c, err);
    if (rc != HL_OK) {
        free(res->body);
        memset(res, 0, sizeof *res);
    }
    return rc;
}

int hl_db_idempotency_purge(hl_db *db, int64_t max_age_seconds, hl_err *err)
{
    char before[HL_CLOCK_ISO_LEN];
    if (max_age_seconds <= 0)
        return hl_err_set(err, HL_EINVAL, "idempotency purge: the age must be positive");
    hl_clock_iso(hl_clock_now() - max_age_seconds, before);
    return hl_db_run(db, err, "DELETE FROM hl_idempotency WHERE created_at < ?", "s", before);
}

void hl_db_result_free(hl_db_result *res)
{
    if (res) {
        free(res->body);
        res->body = NULL;
    }
}

/* The row is created at 0 and incremented in one statement, which takes the row's write lock
 * until the caller's transaction ends (SQLite: the database's; PostgreSQL: the row's): the
 * next process waits, so numbers are handed out one after another, and a rollback gives its
 * number back. */
int hl_db_counter_next(hl_db *db, const char *scope, int64_t *n, hl_err *err)
{
    if (!db || !scope || !n)
        return hl_err_set(err, HL_EINVAL, "counter: NULL argument");
    *n = 0;
    if (db->depth == 0)
        return hl_err_set(err, HL_EINVAL,
                          "counter %s: take a number inside the transaction that uses it", scope);
    size_t sn = strlen(scope);
    if (sn == 0 || sn > HL_DB_IDEM_KEY_MAX)
        return hl_err_set(err, HL_EINVAL, "counter: the scope takes 1 to %d bytes", HL_DB_IDEM_KEY_MAX);
    return hl_db_insert(db, err, n,
                        "INSERT INTO hl_counters (scope, value) VALUES (?, 1) "
                        "ON CONFLICT (scope) DO UPDATE SET value = hl_counters.value + 1 "
                        "RETURNING value",
                        "s", scope);
}

/* ---------------------------------------------------------------- migrations */

static int valid_component(const char *c)
{
    size_t n = 0;
    if (!c)
        return 0;
    for (; c[n]; n++) {
        unsigned char ch = (unsigned char)c[n];
        if (n >= 64 || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                         (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return n > 0;
}

/* Runs a query giving at most one integer; *out gets column 0 of the first row (0 when there
 * is no row or it is NULL). Returns HL_DB_ROW, HL_DB_DONE or a negative error. */
static int query_int(hl_db *db, hl_err *err, int64_t *out, const char *sql, const char *types,
                     ...)
{
    hl_stmt *st;
    va_list ap;
    *out = 0;
    va_start(ap, types);
    int rc = query_va(db, err, sql, types, ap, &st);
    va_end(ap);
    if (rc != HL_OK)
        return rc;
    rc = hl_db_step(st, err);
    if (rc == HL_DB_ROW)
        *out = hl_db_col_int64(st, 0);
    hl_db_done(st);
    return rc;
}

/* HL_DB_ROW when applied, HL_DB_DONE when not, negative on error. hl_migrations is read as
 * db.c's own SQL, so that a plugin's migrations can be checked under its policy. */
static int is_applied(hl_db *db, const char *component, int version, hl_err *err)
{
    int64_t one;
    db->internal++;
    int rc = query_int(db, err, &one,
                       "SELECT 1 FROM hl_migrations WHERE component = ? AND version = ?", "si",
                       component, version);
    db->internal--;
    return rc;
}

/* A read-only connection cannot create the table; reading then reports it missing. Under a
 * policy it exists already: hl_db_set_policy created it. */
static int ensure_table(hl_db *db, hl_err *err)
{
    if (db->pol || sqlite3_db_readonly(db->h, "main") == 1)
        return HL_OK;
    return hl_db_exec(db, MIG_TABLE_SQL, err);
}

/* A plugin records its own migrations only: a row for "core" would make the core skip one. */
static int component_allowed(hl_db *db, const char *component, hl_err *err)
{
    if (db->pol && strcmp(component, db->pol->owner) != 0)
        return hl_err_set(err, HL_EINVAL, "migrate: plugin %s may not migrate component %s",
                          db->pol->owner, component);
    return HL_OK;
}

int hl_db_migrate_one(hl_db *db, const char *component, int version, const char *name,
                      const char *sql, hl_err *err)
{
    hl_err e = {0};
    char when[32];
    struct tm tm;
    time_t now = time(NULL);

    if (!db || !name || !sql)
        return hl_err_set(err, HL_EINVAL, "migrate: NULL argument");
    if (!valid_component(component))
        return hl_err_set(err, HL_EINVAL, "migrate: invalid component name");
    if (component_allowed(db, component, err) != HL_OK)
        return HL_EINVAL;
    if (!*name || strlen(name) > NAME_MAX_LEN)
        return hl_err_set(err, HL_EINVAL, "migrate: invalid migration name");
    if (version < 1)
        return hl_err_set(err, HL_EINVAL, "migration %s/%s: version %d is not positive",
                          component, name, version);
    if (!gmtime_r(&now, &tm) || !strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return hl_err_set(err, HL_ERR, "migrate: cannot format the current time");

    int rc = ensure_table(db, err);
    if (rc != HL_OK || (rc = hl_db_begin(db, err)) != HL_OK)
        return rc;
    rc = is_applied(db, component, version, &e);
    if (rc == HL_DB_ROW) {
        hl_db_rollback(db);
        return hl_err_set(err, HL_EINVAL, "migration %s/%s: version %d is already applied",
                          component, name, version);
    }
    if (rc == HL_DB_DONE)
        rc = hl_db_exec(db, sql, &e);
    /* A COMMIT or ROLLBACK inside the file would end our transaction and make the record
     * below land outside it. */
    if (rc == HL_OK && sqlite3_get_autocommit(db->h)) {
        hl_err_set(&e, HL_EINVAL, "it ends the transaction itself (no BEGIN/COMMIT allowed)");
        rc = HL_EINVAL;
    }
    if (rc == HL_OK) {
        db->internal++;
        rc = hl_db_run(db, &e,
                       "INSERT INTO hl_migrations (component, version, name, applied_at) "
                       "VALUES (?, ?, ?, ?)",
                       "siss", component, version, name, when);
        db->internal--;
        if (rc >= 0)
            rc = hl_db_commit(db, &e);
    }
    if (rc != HL_OK) {
        hl_db_rollback(db);
        return hl_err_set(err, rc, "migration %s/%s failed: %s", component, name, e.msg);
    }
    return HL_OK;
}

int hl_db_schema_version(hl_db *db, const char *component, hl_err *err)
{
    int64_t v;
    if (!db || !valid_component(component))
        return hl_err_set(err, HL_EINVAL, "schema version: invalid argument");
    int rc = ensure_table(db, err);
    if (rc != HL_OK)
        return rc;
    db->internal++;
    rc = query_int(db, err, &v, "SELECT MAX(version) FROM hl_migrations WHERE component = ?",
                   "s", component);
    db->internal--;
    if (rc < 0)
        return rc;
    return v < 0 ? 0 : v > INT_MAX ? INT_MAX : (int)v;
}

typedef struct {
    long num;
    char *name;
} mig_file;

/* Number of a file named like 001_init.sql; -1 for names that are not migrations, -2 for
 * numbers too large to be real. */
static long mig_number(const char *name)
{
    const char *p = name, *d;
    long v = 0;
    int big = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > MIG_MAX_NUMBER)
            big = 1;
        else
            v = v * 10 + (*p - '0');
        p++;
    }
    if (p - name < 3 || *p != '_')
        return -1;
    for (d = ++p; (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
         p++)
        ;
    if (p == d || strcmp(p, ".sql") != 0)
        return -1;
    return big || v > MIG_MAX_NUMBER ? -2 : v;
}

static int mig_cmp(const void *a, const void *b)
{
    const mig_file *x = a, *y = b;
    if (x->num != y->num)
        return x->num < y->num ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* A migration file beneath its folder only (core/file.h: a symbolic link leading out, as a
 * hostile plugin might plant, is refused). */
static int read_sql(const char *dir, const char *name, const char *shown, char **out, hl_err *err)
{
    size_t got = 0;
    hl_err e;
    hl_err_clear(&e);
    int rc = hl_file_read_beneath(dir, name, MIG_MAX_BYTES, out, &got, NULL, &e);
    if (rc == HL_ETOOBIG)
        return hl_err_set(err, rc, "migration %s is larger than 1 MB", shown);
    if (rc != HL_OK)
        return hl_err_set(err, rc, "cannot read migration %s: %s", shown, e.msg);
    if (memchr(*out, '\0', got)) {
        free(*out);
        *out = NULL;
        return hl_err_set(err, HL_EINVAL, "migration %s contains a NUL byte", shown);
    }
    return HL_OK;
}

/* Lists the migration files of dir, sorted and checked to be numbered 1, 2, 3, ... */
static int mig_list(const char *dir, mig_file **out, size_t *count, hl_err *err)
{
    mig_file *f = NULL;
    size_t n = 0, cap = 0;
    int rc = HL_OK;
    struct dirent *de;
    DIR *d = opendir(dir);

    *out = NULL;
    *count = 0;
    if (!d) {
        if (errno == ENOENT)
            return hl_err_set(err, HL_ENOTFOUND, "migration directory %s not found", dir);
        return hl_err_set(err, HL_EIO, "cannot open migration directory %s: %s", dir,
                          strerror(errno));
    }
    while ((de = readdir(d))) {
        long num = mig_number(de->d_name);
        if (num == -1)
            continue;
        if (num == -2) {
            rc = hl_err_set(err, HL_EINVAL, "migration %s/%s: number too large", dir,
                            de->d_name);
            break;
        }
        if (n == MIG_MAX_FILES) {
            rc = hl_err_set(err, HL_ETOOBIG, "migration directory %s: more than %d files", dir,
                            MIG_MAX_FILES);
            break;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            mig_file *nf = realloc(f, ncap * sizeof *nf);
            if (!nf) {
                rc = hl_err_set(err, HL_ENOMEM, "migrations: out of memory");
                break;
            }
            f = nf;
            cap = ncap;
        }
        if (!(f[n].name = strdup(de->d_name))) {
            rc = hl_err_set(err, HL_ENOMEM, "migrations: out of memory");
            break;
        }
        f[n++].num = num;
    }
    closedir(d);
    if (rc == HL_OK && n > 0) {
        qsort(f, n, sizeof *f, mig_cmp);
        for (size_t i = 0; i < n && rc == HL_OK; i++) {
            if (i > 0 && f[i].num == f[i - 1].num)
                rc = hl_err_set(err, HL_EINVAL, "migrations in %s: %s and %s have the same number",
                                dir, f[i - 1].name, f[i].name);
            else if (f[i].num != (long)i + 1 && i == 0)
                rc = hl_err_set(err, HL_EINVAL, "migrations in %s: %s should be numbered 001",
                                dir, f[i].name);
            else if (f[i].num != (long)i + 1)
                rc = hl_err_set(err, HL_EINVAL, "migrations in %s: gap between %s and %s", dir,
                                f[i - 1].name, f[i].name);
        }
    }
    if (rc != HL_OK) {
        for (size_t i = 0; i < n; i++)
            free(f[i].name);
        free(f);
        return rc;
    }
    *out = f;
    *count = n;
    return HL_OK;
}

int hl_db_migrate(hl_db *db, const char *component, const char *dir, int *applied, hl_err *err)
{
    mig_file *f;
    size_t n;
    char shown[NAME_MAX_LEN + 80];
    int rc;

    if (applied)
        *applied = 0;
    if (!db || !dir)
        return hl_err_set(err, HL_EINVAL, "migrate: NULL argument");
    if (!valid_component(component))
        return hl_err_set(err, HL_EINVAL, "migrate: invalid component name");
    if (component_allowed(db, component, err) != HL_OK)
        return HL_EINVAL;
    if ((rc = mig_list(dir, &f, &n, err)) != HL_OK)
        return rc;
    rc = ensure_table(db, err);
    for (size_t i = 0; i < n && rc == HL_OK; i++) {
        char *sql;
        snprintf(shown, sizeof shown, "%s/%s", component, f[i].name);
        if ((rc = is_applied(db, component, (int)f[i].num, err)) < 0)
            break;
        if (rc == HL_DB_ROW) {
            rc = HL_OK;
            continue;
        }
        if ((rc = read_sql(dir, f[i].name, shown, &sql, err)) != HL_OK)
            break;
        rc = hl_db_migrate_one(db, component, (int)f[i].num, f[i].name, sql, err);
        free(sql);
        if (rc == HL_OK && applied)
            (*applied)++;
    }
    for (size_t i = 0; i < n; i++)
        free(f[i].name);
    free(f);
    return rc;
}

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
static int deny(hl_db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int deny(hl_db *db, const char *fmt, ...)
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

static int auth_read(hl_db *db, const char *table, const char *col, const char *inner)
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

static int auth_write(hl_db *db, const char *table, const char *inner)
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

static int auth_function(hl_db *db, const char *name)
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
static int open_ctx(hl_db *db, unsigned ctx)
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
    hl_db *db = ud;
    const policy *p = db->pol;
    if (!p || db->internal)
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
    if (!valid_component(in->owner))
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

void hl_db_set_budget(hl_db *db, int (*check)(void *ud), void *ud, int every, int max_length, int max_sql)
{
    if (!db)
        return;
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

int hl_db_set_policy(hl_db *db, const hl_db_policy *pol, hl_err *err)
{
    policy *np = NULL;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "set policy: NULL database");
    if (pol) {
        int rc = policy_copy(pol, &np, err);
        /* Created while still trusted: the plugin may not create it, but its migrations
         * are recorded there. */
        if (rc == HL_OK)
            rc = ensure_table(db, err);
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

const char *hl_db_policy_denial(hl_db *db)
{
    return db ? db->denial : "";
}
