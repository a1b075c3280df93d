/* Storage API (see db.h), the part that is the same on every engine: choosing the backend by
 * the target's form, binding lists, one-shot helpers, nested transactions with their retries,
 * idempotency keys, gapless counters and numbered migrations. The engines are core/db_sqlite.c
 * and core/db_pg.c, behind the table of core/db_backend.h. */
#include "core/db.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/db_backend.h"
#include "core/file.h"

#define TX_BUSY_TRIES 10         /* attempts of an outermost hl_db_tx when the database is busy */
#define TX_BACKOFF_MS 5          /* first pause between them, doubled each time up to ... */
#define TX_BACKOFF_MAX_MS 320    /* ... this, each one drawn at random below it */
#define TX_MAX_DEPTH 1000        /* deeper nesting is a runaway recursion, not a design */
#define MIG_MAX_BYTES (1024 * 1024)
#define MIG_MAX_FILES 10000
#define MIG_MAX_NUMBER 999999L
#define NAME_MAX_LEN 255

static const char MIG_TABLE_SQL[] =
    "CREATE TABLE IF NOT EXISTS hl_migrations ("
    "component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
    "applied_at TEXT NOT NULL, PRIMARY KEY (component, version))";

static int ensure_table(hl_db *db, hl_err *err);

/* ---------------------------------------------------------------- open / close */

int hl_db_is_url(const char *target)
{
    return target && (strncmp(target, "postgresql://", 13) == 0 ||
                      strncmp(target, "postgres://", 11) == 0);
}

/* The target as shown in messages and logs: a URI loses its password ("user:secret@host" and
 * "password=secret" in the query). */
char *hl_db_redact(const char *target)
{
    if (!target)
        return NULL;
    char *out = strdup(target);
    if (!out || !hl_db_is_url(target))
        return out;
    char *auth = strstr(out, "://") + 3;
    char *at = strchr(auth, '@'), *slash = strchr(auth, '/');
    if (at && (!slash || at < slash)) {
        char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (colon)
            memmove(colon, at, strlen(at) + 1);
    }
    char *q = strchr(out, '?');
    while (q) {
        char *key = q + 1;
        char *end = strchr(key, '&');
        if (strncmp(key, "password=", 9) == 0) {
            if (!end) {
                *q = '\0';
                break;
            }
            memmove(key, end + 1, strlen(end + 1) + 1);
            continue;
        }
        q = end;
    }
    return out;
}

hl_db *hl_db_open(const char *target, unsigned flags, hl_err *err)
{
    if (!target || !*target) {
        hl_err_set(err, HL_EINVAL, "database path is empty");
        return NULL;
    }
    const hl_db_backend *be = hl_db_is_url(target) ? &hl_db_pg_backend : &hl_db_sqlite_backend;
    char *shown = hl_db_redact(target);
    if (!shown) {
        hl_err_set(err, HL_ENOMEM, "cannot open database: out of memory");
        return NULL;
    }
    hl_db *db = be->open(target, flags, err);
    if (!db) {
        free(shown);
        return NULL;
    }
    db->be = be;
    db->target = shown;
    return db;
}

void hl_db_close(hl_db *db)
{
    if (!db)
        return;
    char *t = db->target, *o = db->policy_owner;
    db->be->close(db);
    free(t);
    free(o);
}

const char *hl_db_path(const hl_db *db) { return db ? db->target : NULL; }

const char *hl_db_backend_name(const hl_db *db) { return db ? db->be->name : ""; }

int hl_db_exec(hl_db *db, const char *sql, hl_err *err)
{
    if (!db || !sql)
        return hl_err_set(err, HL_EINVAL, "hl_db_exec: NULL argument");
    return db->be->exec(db, sql, err);
}

/* ---------------------------------------------------------------- statements */

static int prepare(hl_db *db, const char *sql, hl_stmt **out, hl_err *err)
{
    *out = NULL;
    if (!db || !sql)
        return hl_err_set(err, HL_EINVAL, "hl_db_prepare: NULL argument");
    return db->be->prepare(db, sql, out, err);
}

hl_stmt *hl_db_prepare(hl_db *db, const char *sql, hl_err *err)
{
    hl_stmt *st;
    prepare(db, sql, &st, err);
    return st;
}

void hl_db_done(hl_stmt *st)
{
    if (st)
        st->db->be->done(st);
}

int hl_db_bind_int64(hl_stmt *st, int idx, int64_t v)
{
    return st ? st->db->be->bind_int64(st, idx, v) : HL_EINVAL;
}

int hl_db_bind_double(hl_stmt *st, int idx, double v)
{
    return st ? st->db->be->bind_double(st, idx, v) : HL_EINVAL;
}

int hl_db_bind_text(hl_stmt *st, int idx, const char *s, size_t len)
{
    if (!st)
        return HL_EINVAL;
    if (!s)
        return hl_db_bind_null(st, idx);
    return st->db->be->bind_text(st, idx, s, len);
}

int hl_db_bind_blob(hl_stmt *st, int idx, const void *p, size_t len)
{
    if (!st || (!p && len))
        return HL_EINVAL;
    /* an empty blob, not NULL */
    return st->db->be->bind_blob(st, idx, p ? p : "", len);
}

int hl_db_bind_null(hl_stmt *st, int idx)
{
    return st ? st->db->be->bind_null(st, idx) : HL_EINVAL;
}

/* ---------------------------------------------------------------- steps and columns */

int hl_db_step(hl_stmt *st, hl_err *err)
{
    if (!st || !st->in_use)
        return hl_err_set(err, HL_EINVAL, "step: statement is not in use");
    hl_err local;
    hl_err_clear(&local);
    int code = st->db->be->step(st, &local);
    if (code >= 0)
        return code;
    if (code != HL_EBUSY && code != HL_EINVAL && code != HL_EUNIQUE && code != HL_EFOREIGN &&
        code != HL_ETOOBIG)
        code = HL_ERR;
    local.code = code;
    snprintf(st->db->errmsg, sizeof st->db->errmsg, "%s", local.msg);
    if (err)
        *err = local;
    return code;
}

const char *hl_db_errmsg(hl_db *db) { return db ? db->errmsg : ""; }

/* Out-of-range columns (or no current row) read as NULL instead of undefined behaviour. */
static int col_ok(hl_stmt *st, int col)
{
    return st && st->in_use && col >= 0 && col < st->db->be->col_count(st);
}

int hl_db_col_count(hl_stmt *st) { return st ? st->db->be->col_count(st) : 0; }

const char *hl_db_col_name(hl_stmt *st, int col)
{
    if (!st || col < 0 || col >= st->db->be->col_count(st))
        return NULL;
    return st->db->be->col_name(st, col);
}

int hl_db_col_type(hl_stmt *st, int col)
{
    return col_ok(st, col) ? st->db->be->col_type(st, col) : HL_DB_NULL;
}

int64_t hl_db_col_int64(hl_stmt *st, int col)
{
    return col_ok(st, col) ? st->db->be->col_int64(st, col) : 0;
}

double hl_db_col_double(hl_stmt *st, int col)
{
    return col_ok(st, col) ? st->db->be->col_double(st, col) : 0.0;
}

const char *hl_db_col_text(hl_stmt *st, int col)
{
    return col_ok(st, col) ? st->db->be->col_text(st, col) : NULL;
}

const void *hl_db_col_blob(hl_stmt *st, int col)
{
    return col_ok(st, col) ? st->db->be->col_blob(st, col) : NULL;
}

size_t hl_db_col_bytes(hl_stmt *st, int col)
{
    return col_ok(st, col) ? st->db->be->col_bytes(st, col) : 0;
}

int hl_db_col_is_null(hl_stmt *st, int col)
{
    return !col_ok(st, col) || st->db->be->col_type(st, col) == HL_DB_NULL;
}

/* ---------------------------------------------------------------- engine services */

int64_t hl_db_last_insert_id(hl_db *db) { return db ? db->be->last_insert_id(db) : 0; }

int64_t hl_db_changes(hl_db *db) { return db ? db->be->changes(db) : 0; }

int hl_db_sync_ids(hl_db *db, const char *table, hl_err *err)
{
    if (!db || !table)
        return hl_err_set(err, HL_EINVAL, "sync ids: NULL argument");
    for (const char *p = table; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return hl_err_set(err, HL_EINVAL, "sync ids: invalid table name");
    return db->be->sync_ids ? db->be->sync_ids(db, table, err) : HL_OK;
}

int hl_db_lock(hl_db *db, const char *name, int on, hl_err *err)
{
    if (!db || !name)
        return hl_err_set(err, HL_EINVAL, "lock: NULL argument");
    return db->be->lock ? db->be->lock(db, name, on, err) : HL_OK;
}

int hl_db_set_policy(hl_db *db, const hl_db_policy *pol, hl_err *err)
{
    if (!db)
        return hl_err_set(err, HL_EINVAL, "set policy: NULL database");
    char *owner = NULL;
    if (pol && pol->owner && !(owner = strdup(pol->owner)))
        return hl_err_set(err, HL_ENOMEM, "set policy: out of memory");
    /* Created while still trusted: the plugin may not create it, but its migrations are
     * recorded there. */
    int rc = pol && !db->policy_owner ? ensure_table(db, err) : HL_OK;
    if (rc == HL_OK)
        rc = db->be->set_policy(db, pol, err);
    if (rc != HL_OK) {
        free(owner);
        return rc;
    }
    free(db->policy_owner);
    db->policy_owner = owner;
    return HL_OK;
}

const char *hl_db_policy_denial(hl_db *db) { return db ? db->be->policy_denial(db) : ""; }

void hl_db_set_budget(hl_db *db, int (*check)(void *ud), void *ud, int every, int max_length,
                      int max_sql)
{
    if (db)
        db->be->set_budget(db, check, ud, every, max_length, max_sql);
}

/* ---------------------------------------------------------------- binding lists */

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
    int want = st->db->be->param_count(st);
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
                                                                 : st->db->be->bind_error(st));
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
        rc = (int)db->be->changes(db);
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
    int rc;
    if (db->depth == 0) {
        db->internal++;
        rc = db->be->begin(db, db->durable, err);
        db->internal--;
    } else {
        snprintf(sql, sizeof sql, "SAVEPOINT hl_sp_%d", db->depth);
        rc = internal_exec(db, sql, err);
    }
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
    if (!db->be->in_tx(db))
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
    /* SQLite rolls the whole transaction back by itself on some errors (I/O, out of memory),
     * PostgreSQL when the connection is lost: then there is nothing left to undo. */
    if (!db->be->in_tx(db))
        return HL_OK;
    if (db->depth == 0)
        snprintf(sql, sizeof sql, "ROLLBACK");
    else
        snprintf(sql, sizeof sql, "ROLLBACK TO hl_sp_%d; RELEASE hl_sp_%d", db->depth,
                 db->depth);
    return internal_exec(db, sql, NULL);
}

static int set_durable(hl_db *db, int on, hl_err *err)
{
    if (!db->be->set_durable)
        return HL_OK;
    db->internal++;
    int rc = db->be->set_durable(db, on, err);
    db->internal--;
    return rc;
}

static void backoff(int attempt)
{
    /* up to 5, 10, 20... 320 ms, drawn at random ("full jitter"), so that processes that
     * collided do not collide again in step: a hot row (an invoice counter) that one machine
     * keeps updating must not starve another one's retries */
    long cap = attempt >= 6 ? TX_BACKOFF_MAX_MS : (long)TX_BACKOFF_MS << attempt;
    if (cap > TX_BACKOFF_MAX_MS)
        cap = TX_BACKOFF_MAX_MS;
    /* each process draws its own pauses: forked workers share rand()'s unseeded sequence */
    static unsigned seed;
    if (!seed)
        seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    long ms = 1 + rand_r(&seed) % cap;
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
        /* a savepoint: the outer transaction decides about commits and retries */
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
    if (durable && (rc = set_durable(db, 1, err)) != HL_OK)
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
        int r2 = set_durable(db, 0, rc == HL_OK ? err : NULL);
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
        db->be->set_busy_timeout(db, ms > 0 ? ms : 0);
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

int hl_db_valid_component(const char *c)
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
    if (db->policy_owner || db->be->readonly(db))
        return HL_OK;
    return hl_db_exec(db, MIG_TABLE_SQL, err);
}

/* A plugin records its own migrations only: a row for "core" would make the core skip one. */
static int component_allowed(hl_db *db, const char *component, hl_err *err)
{
    if (db->policy_owner && strcmp(component, db->policy_owner) != 0)
        return hl_err_set(err, HL_EINVAL, "migrate: plugin %s may not migrate component %s",
                          db->policy_owner, component);
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
    if (!hl_db_valid_component(component))
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
    if (rc == HL_OK && db->be->after_migration) {
        db->internal++;
        rc = db->be->after_migration(db, &e);
        db->internal--;
    }
    if (rc == HL_OK && !db->be->in_tx(db)) {
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
    if (!db || !hl_db_valid_component(component))
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
    if (!hl_db_valid_component(component))
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
