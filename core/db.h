/* Storage API: one small interface (prepared-statement cache, typed binding, transactions,
 * numbered migrations per component) over two engines, SQLite (a file, the default) and
 * PostgreSQL (a postgresql:// URI, for several machines on one database), so that the core and
 * plugins run unchanged on both and never touch an engine's handles. */
#ifndef HL_DB_H
#define HL_DB_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct hl_db hl_db;
typedef struct hl_stmt hl_stmt;

enum {
    HL_DB_CREATE = 1u << 0,   /* create the file (mode 0600) if missing */
    HL_DB_READONLY = 1u << 1
};

/* Step results (errors are negative HL_E* codes). */
enum { HL_DB_ROW = 1, HL_DB_DONE = 0 };

/* Column types as reported by hl_db_col_type. */
enum { HL_DB_INTEGER = 1, HL_DB_FLOAT = 2, HL_DB_TEXT = 3, HL_DB_BLOB = 4, HL_DB_NULL = 5 };

/* Opens a database. target is a file path (SQLite: HL_DB_CREATE creates it, mode 0600; WAL
 * journal, busy timeout, foreign keys on, synchronous=NORMAL, FULL for hl_db_tx_durable) or a
 * postgresql:// or postgres:// URI (libpq's connection URI; the database must exist, and
 * HL_DB_CREATE changes nothing). Returns NULL with a message naming the target. */
hl_db *hl_db_open(const char *target, unsigned flags, hl_err *err);
void hl_db_close(hl_db *db);
/* The target as opened, without a password: for messages. */
const char *hl_db_path(const hl_db *db);
/* "sqlite" or "postgresql". */
const char *hl_db_backend_name(const hl_db *db);
/* 1 when target is a postgresql:// or postgres:// URI. */
int hl_db_is_url(const char *target);
/* A malloc'd copy of target without its password (user:secret@ and password=...). */
char *hl_db_redact(const char *target);

/* SQL dialect. Code and migrations write one SQL for both engines, as SQLite reads it, with
 * ? placeholders. On PostgreSQL the backend rewrites, outside quotes and comments: ? to $1,
 * $2...; the type INTEGER to BIGINT (so ids, cents and times never overflow), and a column
 * "INTEGER PRIMARY KEY" to an identity column, as SQLite's rowid alias behaves; REAL to
 * DOUBLE PRECISION; BLOB to BYTEA; LIKE to ILIKE (SQLite's LIKE ignores ASCII case);
 * group_concat(text, separator) to string_agg (scripts/check-sql wants the separator).
 * Transactions: SQLite runs one writer at a time; PostgreSQL runs them side by side (READ
 * COMMITTED), and a statement that meets a row another transaction changed waits, then works
 * on the committed row. So code that changes a value writes it in one statement that checks
 * it (UPDATE t SET stock = stock - ? WHERE id = ? AND stock >= ?, then the changed-row count
 * says whether it worked), claims with INSERT ... ON CONFLICT, and never reads a value in one
 * statement to write from it in the next. A deadlock is HL_EBUSY and hl_db_tx runs the work
 * again. One more difference: on PostgreSQL a failed statement ends the transaction's work, so
 * work that expects a constraint to fail uses ON CONFLICT or a nested hl_db_tx (a savepoint). */

/* Runs literal SQL that may hold several statements and takes no parameters (migrations,
 * schema). Never build this string from input: use hl_db_run for anything with values. */
int hl_db_exec(hl_db *db, const char *sql, hl_err *err);

/* Prepares sql, or takes it from the statement cache (keyed by the SQL text). The returned
 * statement is reset and unbound; give it back with hl_db_done. */
hl_stmt *hl_db_prepare(hl_db *db, const char *sql, hl_err *err);
/* Resets, clears bindings, and returns the statement to the cache. NULL is accepted. */
void hl_db_done(hl_stmt *st);

/* Binding; idx starts at 1 as in SQL. Text and blobs are copied. */
int hl_db_bind_int64(hl_stmt *st, int idx, int64_t v);
int hl_db_bind_double(hl_stmt *st, int idx, double v);
int hl_db_bind_text(hl_stmt *st, int idx, const char *s, size_t len); /* s NULL -> NULL */
int hl_db_bind_blob(hl_stmt *st, int idx, const void *p, size_t len);
int hl_db_bind_null(hl_stmt *st, int idx);

/* Binds values in order from a type string: 'i' int, 'I' int64_t, 'd' double,
 * 's' NUL-terminated text (NULL pointer binds NULL), 't' text with length (const char *, size_t),
 * 'b' blob (const void *, size_t), 'n' NULL (no argument). */
int hl_db_bindv(hl_stmt *st, const char *types, ...);
/* The same with a va_list (for wrappers that take '...' themselves), and a message in err. */
int hl_db_bindva(hl_stmt *st, const char *types, va_list ap, hl_err *err);

/* HL_DB_ROW, HL_DB_DONE, or a negative error with a message: HL_EUNIQUE (a UNIQUE or
 * PRIMARY KEY constraint: the row exists), HL_EFOREIGN (a FOREIGN KEY constraint), HL_EBUSY
 * (the database stayed locked past the busy timeout), HL_EINVAL (other constraints: NOT NULL,
 * CHECK; misuse; refused by the access policy), HL_ERR (anything else). */
int hl_db_step(hl_stmt *st, hl_err *err);
/* The message of the last failed statement on this connection (kept even when the failing
 * call was given no hl_err); "" before any failure. */
const char *hl_db_errmsg(hl_db *db);

int hl_db_col_count(hl_stmt *st);
const char *hl_db_col_name(hl_stmt *st, int col);
int hl_db_col_type(hl_stmt *st, int col);
int64_t hl_db_col_int64(hl_stmt *st, int col);
double hl_db_col_double(hl_stmt *st, int col);
/* Valid until the next step/done; NULL for SQL NULL. */
const char *hl_db_col_text(hl_stmt *st, int col);
const void *hl_db_col_blob(hl_stmt *st, int col);
size_t hl_db_col_bytes(hl_stmt *st, int col);
/* 1 when the column is SQL NULL (or out of range), else 0: hl_db_col_int64 reads both NULL and
 * 0 as 0. */
int hl_db_col_is_null(hl_stmt *st, int col);

/* One-shot: prepare (cached), bind from types, step to completion, done. Returns the number
 * of rows changed (>= 0) or a negative error. */
int hl_db_run(hl_db *db, hl_err *err, const char *sql, const char *types, ...);
/* Rows changed by the last INSERT, UPDATE or DELETE run to completion on this connection. */
int64_t hl_db_changes(hl_db *db);
/* Prepare (cached) and bind from types; the caller steps and calls hl_db_done. */
hl_stmt *hl_db_query(hl_db *db, hl_err *err, const char *sql, const char *types, ...);

/* Inserts and reads the new row's id from the statement's RETURNING clause, which must give
 * an integer first column: "INSERT INTO t (a) VALUES (?) RETURNING id". Portable (SQLite >= 3.35
 * and PostgreSQL), unlike hl_db_last_insert_id. Ids are generated by the database: on SQLite an
 * `id INTEGER PRIMARY KEY` column (without AUTOINCREMENT), on PostgreSQL
 * `BIGINT GENERATED BY DEFAULT AS IDENTITY`; code never computes ids itself. */
int hl_db_insert(hl_db *db, hl_err *err, int64_t *id, const char *sql, const char *types, ...);
int hl_db_insertva(hl_db *db, hl_err *err, int64_t *id, const char *sql, const char *types, va_list ap);

/* SQLite only (sqlite3_last_insert_rowid): kept for the plugin API's db_last_id until plugins
 * use hl_db_insert. New code uses hl_db_insert. */
int64_t hl_db_last_insert_id(hl_db *db);

/* Runs fn inside a transaction: commit when it returns HL_OK, roll back otherwise (the error
 * is returned). Nests: an inner call uses a savepoint. When the outermost transaction meets a
 * busy database (HL_EBUSY from BEGIN, fn or COMMIT), it is rolled back and run again, up to 10
 * times with a growing pause: fn may thus run more than once and must do nothing outside the
 * database that it cannot repeat (send mail through the queue, in the transaction). */
int hl_db_tx(hl_db *db, int (*fn)(hl_db *db, void *ud, hl_err *err), void *ud, hl_err *err);
/* The same for what carries money: the commit is on disk (fsync of the WAL, synchronous=FULL)
 * when it returns, where hl_db_tx's may be lost by a power cut (never corrupted). It must be
 * the outermost transaction or nested in another durable one (else HL_EINVAL). */
int hl_db_tx_durable(hl_db *db, int (*fn)(hl_db *db, void *ud, hl_err *err), void *ud,
                     hl_err *err);
/* 1 inside a transaction. */
int hl_db_in_tx(const hl_db *db);
/* How long a statement waits for a locked database before HL_EBUSY (default 5000 ms). */
void hl_db_set_busy_timeout(hl_db *db, int ms);
int hl_db_begin(hl_db *db, hl_err *err);
int hl_db_commit(hl_db *db, hl_err *err);
int hl_db_rollback(hl_db *db);

/* Idempotency keys: a request repeated with the same key (a client's retry, a double click, a
 * payment provider's repeated webhook) gets the first result instead of doing the work twice.
 * fn does the work in the transaction that claims the key and fills res->status (> 0, e.g. an
 * HTTP status) and res->body (malloc'd text or NULL, e.g. JSON); both are stored with the key.
 * A repeat gets them back with res->replayed = 1 and fn is not called; a repeat with another
 * fingerprint (e.g. a hash of the request body; NULL = none) is HL_ECONFLICT. If fn fails,
 * nothing is stored and the key can be used again. Concurrent requests with one key: the
 * second waits for the first and gets its result. Keys and scopes (e.g. "market:order:42" or
 * a plugin's name) take 1 to 200 bytes; keys are printable ASCII. Release res with
 * hl_db_result_free (also after an error). */
#define HL_DB_IDEM_KEY_MAX 200
typedef struct hl_db_result {
    int status;
    char *body;
    int replayed;
} hl_db_result;
typedef int (*hl_db_idem_fn)(hl_db *db, void *ud, hl_db_result *res, hl_err *err);
int hl_db_idempotent(hl_db *db, const char *scope, const char *key, const char *fingerprint,
                     hl_db_idem_fn fn, void *ud, hl_db_result *res, hl_err *err);
void hl_db_result_free(hl_db_result *res);
/* Forgets keys older than max_age_seconds (by the business clock): their repeats would do the
 * work again. The core purge job keeps them HL_DB_IDEM_KEEP_DAYS days, well past the retries of
 * clients and payment providers (a few days). Returns the number removed or an error. */
#define HL_DB_IDEM_KEEP_DAYS 30
int hl_db_idempotency_purge(hl_db *db, int64_t max_age_seconds, hl_err *err);

/* Gapless counter per scope (invoice numbers, e.g. scope "invoice:2026"): *n gets 1, 2, 3...
 * Must be called inside the transaction that uses the number (else HL_EINVAL): a rollback
 * gives the number back, and concurrent transactions wait for each other, so the numbers
 * committed are exactly 1..N. */
int hl_db_counter_next(hl_db *db, const char *scope, int64_t *n, hl_err *err);

/* After rows were copied in with their ids (halle migrate-data): the next generated id of
 * table follows the largest (PostgreSQL's identity sequence; nothing to do on SQLite). */
int hl_db_sync_ids(hl_db *db, const char *table, hl_err *err);
/* Takes (on = 1) or releases (on = 0) a lock named name that holds across processes and
 * machines sharing the database, waiting for it: PostgreSQL's advisory locks (migrations run
 * under one, by one machine at a time). On SQLite nothing is done: one machine uses the file,
 * and its instance lock and BEGIN IMMEDIATE already order the processes. */
int hl_db_lock(hl_db *db, const char *name, int on, hl_err *err);

/* Migrations: files named NNN_description.sql in dir, applied in number order for component
 * (e.g. "core", "market"), each in its own transaction, recorded in hl_migrations(component,
 * version, name, applied_at). Already-applied numbers are skipped; a gap, a duplicate number or
 * a failing file stops with a message naming the file. *applied gets the count run (may be
 * NULL). */
int hl_db_migrate(hl_db *db, const char *component, const char *dir, int *applied, hl_err *err);
/* Applies one migration given as text (used by hl_db_migrate and by plugins that embed SQL). */
int hl_db_migrate_one(hl_db *db, const char *component, int version, const char *name,
                      const char *sql, hl_err *err);
/* Highest applied version for component, 0 if none, negative on error. */
int hl_db_schema_version(hl_db *db, const char *component, hl_err *err);

/* Access policy for code that is not trusted (Lua plugins): set before running its SQL,
 * cleared after. Tables: own (prefix_*) read/write/create/drop/alter/index; readable tables
 * read only; everything else denied. */
typedef struct hl_db_policy {
    const char *owner;            /* plugin name, for messages and logs */
    const char *prefix;           /* own tables start with prefix followed by '_' */
    const char *const *readable;  /* NULL-terminated list of other tables it may SELECT from */
    const char *const *hidden;    /* NULL-terminated "table.column", unreadable even there */
} hl_db_policy;
/* While a policy is set, SQLite's authorizer checks every statement compiled on this
 * connection (core code included: a core function called on a plugin's behalf must clear the
 * policy first). Names compare ASCII case-insensitively. Besides the table rules the plugin
 * may not: read the schema table or any sqlite_* table, use another database (ATTACH, temp),
 * run PRAGMA, VACUUM, ANALYZE or virtual tables, call load_extension(), fts3_tokenizer() or
 * sqlite_*(), rename a table (ALTER TABLE ... RENAME TO: SQLite does not tell the new name),
 * or run BEGIN/COMMIT/ROLLBACK/SAVEPOINT itself (hl_db_tx and hl_db_begin still work).
 * Migrations still work: hl_migrations is created here if missing, and hl_db_migrate(_one)
 * records versions for the component named like the owner only. Statements prepared under a
 * policy bypass the statement cache and refuse to step once the policy is changed or cleared.
 * owner must be a component name and prefix [A-Za-z0-9_] (not "hl", "sqlite" or beginning
 * "hl_"/"sqlite_"); at most 256 entries per list. The policy is deep-copied. NULL clears.
 * On error the previous policy (or none) stays in force. */
int hl_db_set_policy(hl_db *db, const hl_db_policy *policy, hl_err *err);
/* Whether the policy lets its code SELECT table.column (column NULL: anything of the table),
 * by the authorizer's own rules: for core functions that hand core data to that code. */
int hl_db_policy_reads(const hl_db_policy *p, const char *table, const char *column);
/* Bounds for SQL run for untrusted code (Lua plugins), set around each of its calls and
 * cleared after (check NULL). While set, SQLite calls check(ud) every `every` virtual-machine
 * steps and interrupts the statement when it returns nonzero (the step fails with
 * HL_ETOOBIG, "interrupted"), and no string, blob or row may exceed max_length bytes, nor a
 * statement's text max_sql bytes, so an unbounded recursive CTE or randomblob(200000000) is
 * cut instead of pinning the worker or its memory. */
void hl_db_set_budget(hl_db *db, int (*check)(void *ud), void *ud, int every, int max_length, int max_sql);

/* After a statement failed because of the policy: the reason (else ""). Reset when a policy
 * is set and when a statement is prepared or stepped. */
const char *hl_db_policy_denial(hl_db *db);

#endif
