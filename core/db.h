/* Storage API: SQLite in WAL mode behind a small interface (prepared-statement cache, typed
 * binding, transactions, numbered migrations per component), so that plugins never touch
 * sqlite3 handles and a PostgreSQL backend can be added behind the same calls. */
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

/* Opens (and with HL_DB_CREATE creates, 0600) a database file: WAL journal, busy timeout,
 * foreign keys on, synchronous=NORMAL. Returns NULL with a message naming the file. */
hl_db *hl_db_open(const char *path, unsigned flags, hl_err *err);
void hl_db_close(hl_db *db);
const char *hl_db_path(const hl_db *db);

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

/* HL_DB_ROW, HL_DB_DONE, or a negative error with a message (constraint violations are
 * HL_EINVAL, a busy database HL_EBUSY). */
int hl_db_step(hl_stmt *st, hl_err *err);

int hl_db_col_count(hl_stmt *st);
const char *hl_db_col_name(hl_stmt *st, int col);
int hl_db_col_type(hl_stmt *st, int col);
int64_t hl_db_col_int64(hl_stmt *st, int col);
double hl_db_col_double(hl_stmt *st, int col);
/* Valid until the next step/done; NULL for SQL NULL. */
const char *hl_db_col_text(hl_stmt *st, int col);
const void *hl_db_col_blob(hl_stmt *st, int col);
size_t hl_db_col_bytes(hl_stmt *st, int col);

/* One-shot: prepare (cached), bind from types, step to completion, done. Returns the number
 * of rows changed (>= 0) or a negative error. */
int hl_db_run(hl_db *db, hl_err *err, const char *sql, const char *types, ...);
/* Prepare (cached) and bind from types; the caller steps and calls hl_db_done. */
hl_stmt *hl_db_query(hl_db *db, hl_err *err, const char *sql, const char *types, ...);

int64_t hl_db_last_insert_id(hl_db *db);

/* Runs fn inside a transaction: commit when it returns HL_OK, roll back otherwise (the error
 * is returned). Nests: an inner call uses a savepoint. */
int hl_db_tx(hl_db *db, int (*fn)(hl_db *db, void *ud, hl_err *err), void *ud, hl_err *err);
int hl_db_begin(hl_db *db, hl_err *err);
int hl_db_commit(hl_db *db, hl_err *err);
int hl_db_rollback(hl_db *db);

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
