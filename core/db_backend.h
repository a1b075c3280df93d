/* The storage backends' interface, private to core/db*.c: core/db.c keeps what is the same on
 * every engine (binding lists, transactions and their retries, idempotency keys, counters,
 * migrations) and calls one table of functions for the rest, as SQLite's VFS does for files.
 * A backend embeds struct hl_db / struct hl_stmt as the first member of its own structs. */
#ifndef HL_DB_BACKEND_H
#define HL_DB_BACKEND_H

#include "core/db.h"

typedef struct hl_db_backend hl_db_backend;

struct hl_db {
    const hl_db_backend *be;
    char *target;         /* file path, or URI without its password: for messages */
    int depth;            /* open transaction levels (1 = BEGIN, more = savepoints) */
    int durable;          /* the open transaction is a durable one */
    int internal;         /* > 0 while db.c runs its own fixed SQL (transactions, hl_migrations) */
    char *policy_owner;   /* the component whose access policy is in force, NULL for none */
    char errmsg[512];     /* message of the last failed statement (hl_db_errmsg) */
};

struct hl_stmt {
    hl_db *db;
    int in_use;
};

struct hl_db_backend {
    const char *name; /* "sqlite", "postgresql" */
    /* Returns the backend's struct (its hl_db first, with be and target left to db.c). */
    hl_db *(*open)(const char *target, unsigned flags, hl_err *err);
    void (*close)(hl_db *db);
    /* Literal SQL, possibly several statements. */
    int (*exec)(hl_db *db, const char *sql, hl_err *err);
    /* One statement; the returned statement has in_use set and no bindings. */
    int (*prepare)(hl_db *db, const char *sql, hl_stmt **out, hl_err *err);
    /* Resets and gives the statement back (to a cache or freed). */
    void (*done)(hl_stmt *st);
    int (*param_count)(hl_stmt *st);
    int (*bind_int64)(hl_stmt *st, int idx, int64_t v);
    int (*bind_double)(hl_stmt *st, int idx, double v);
    int (*bind_text)(hl_stmt *st, int idx, const char *s, size_t len); /* s not NULL */
    int (*bind_blob)(hl_stmt *st, int idx, const void *p, size_t len); /* p not NULL */
    int (*bind_null)(hl_stmt *st, int idx);
    /* The reason of the last failed bind, for messages. */
    const char *(*bind_error)(hl_stmt *st);
    /* HL_DB_ROW, HL_DB_DONE or a negative HL_E* code with the message in err. */
    int (*step)(hl_stmt *st, hl_err *err);
    int (*col_count)(hl_stmt *st);
    const char *(*col_name)(hl_stmt *st, int col);
    /* The current row's columns; col is checked by db.c against col_count, and these return
     * NULL/0/HL_DB_NULL when there is no current row. */
    int (*col_type)(hl_stmt *st, int col);
    int64_t (*col_int64)(hl_stmt *st, int col);
    double (*col_double)(hl_stmt *st, int col);
    const char *(*col_text)(hl_stmt *st, int col);
    const void *(*col_blob)(hl_stmt *st, int col);
    size_t (*col_bytes)(hl_stmt *st, int col);
    /* Rows changed by the last statement run to completion. */
    int64_t (*changes)(hl_db *db);
    int64_t (*last_insert_id)(hl_db *db); /* 0 where the engine has no such thing */
    /* Before (full = 1) and after (0) an outermost durable transaction; NULL when begin's
     * durable argument is enough. */
    int (*set_durable)(hl_db *db, int full, hl_err *err);
    /* Starts the outermost transaction (durable: its commit is on disk when COMMIT returns). */
    int (*begin)(hl_db *db, int durable, hl_err *err);
    /* 1 while the engine has a transaction open (it may have ended one by itself). */
    int (*in_tx)(hl_db *db);
    void (*set_busy_timeout)(hl_db *db, int ms);
    int (*readonly)(hl_db *db);
    /* Access policy (db.c has checked and deep-copied nothing: the backend does). NULL clears. */
    int (*set_policy)(hl_db *db, const hl_db_policy *p, hl_err *err);
    const char *(*policy_denial)(hl_db *db);
    void (*set_budget)(hl_db *db, int (*check)(void *ud), void *ud, int every, int max_length,
                       int max_sql);
    /* After rows were copied in with their ids: the next generated id follows the largest. */
    int (*sync_ids)(hl_db *db, const char *table, hl_err *err);
    /* After a migration's SQL ran, in its transaction: e.g. rows a migration inserted with
     * their ids (a fixed list of categories) must not make the next generated id collide. */
    int (*after_migration)(hl_db *db, hl_err *err);
    /* A lock held across machines by this connection until unlocked (PostgreSQL: an advisory
     * lock); NULL where one process per instance is guaranteed otherwise. */
    int (*lock)(hl_db *db, const char *name, int on, hl_err *err);
};

/* A component name as hl_migrations and access policies take it. */
int hl_db_valid_component(const char *name);

extern const hl_db_backend hl_db_sqlite_backend;
extern const hl_db_backend hl_db_pg_backend;

#endif
