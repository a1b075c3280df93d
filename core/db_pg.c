/* PostgreSQL backend of the storage API (see db.h, db_backend.h), through libpq: the SQL that
 * halle writes once is rewritten for PostgreSQL (placeholders, SQLite's type names), statements
 * are prepared once per connection and run with their whole result fetched, transactions are
 * READ COMMITTED with the row locks the storage contract takes, and a plugin's SQL runs under
 * its own role (see set_policy). */
#include "core/db_backend.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define NAMES_MAX 512       /* prepared statements kept per connection */
#define BUSY_MS 5000

/* Type OIDs of pg_type (fixed in PostgreSQL's catalog). */
enum { OID_BOOL = 16, OID_BYTEA = 17, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23,
       OID_TEXT = 25, OID_OID = 26, OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_NUMERIC = 1700 };

typedef struct pg_db pg_db;

/* A statement prepared on the server under a name, kept for the connection's life. */
typedef struct prepared {
    char *key; /* the SQL as halle wrote it */
    uint32_t hash;
    char name[16];
} prepared;

typedef struct pg_param {
    char *val;  /* owned; NULL for SQL NULL */
    int len;
    int binary; /* bytea values go in binary, everything else as text */
    unsigned type;
    char num[32]; /* numbers are written here, val points to it */
} pg_param;

typedef struct pg_stmt {
    hl_stmt base;
    pg_db *db;
    char *key;  /* the SQL as written */
    char *sql;  /* rewritten for PostgreSQL */
    int nparams;
    pg_param *params;
    unsigned pgen; /* policy generation it was prepared under */
    int internal;  /* db.c's own SQL: runs as the connection's role even under a policy */
    PGresult *res; /* the whole result, once run */
    int row, nrows;
    void **blobs; /* decoded bytea values of the current row, per column */
    size_t *blob_len;
} pg_stmt;

struct pg_db {
    hl_db base;
    PGconn *conn;
    int64_t changes;
    int nnames;
    unsigned next_name;
    prepared names[NAMES_MAX];
    char *role;       /* the plugin role in force (SET ROLE), NULL for none */
    char *schema, *owner, *prefix; /* its schema, plugin and table prefix */
    char *hidden;     /* its hidden "table.column" entries, each NUL-terminated, then "" */
    char *trusted_path; /* "SET search_path = public, hlp_...": the core sees plugins' tables */
    uint32_t setup[64]; /* policies whose role and grants this connection has made */
    int nsetup;
    int role_lost;    /* reconnected under a plugin's role and could not take it again */
    unsigned pgen;
    char denial[256];
    int busy_ms;
    int readonly;
    long budget_ms;   /* statement_timeout in force for a plugin, 0 for none */
    int (*check)(void *ud); /* the plugin call's budget, charged once per statement */
    void *check_ud;
};

#define PDB(db) ((pg_db *)(db))
#define PST(st) ((pg_stmt *)(st))

/* ---------------------------------------------------------------- SQL rewriting */

typedef struct buf {
    char *p;
    size_t n, cap;
    int failed;
} buf;

static void put(buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256);
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static int word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* The next word after p (skipping spaces), for "INTEGER PRIMARY KEY". */
static const char *next_word(const char *p, size_t *n)
{
    while (isspace((unsigned char)*p))
        p++;
    const char *s = p;
    while (isalnum((unsigned char)*p) || *p == '_')
        p++;
    *n = (size_t)(p - s);
    return s;
}

/* SQLite's dialect as halle writes it, to PostgreSQL's (see db.h, "SQL dialect"). Strings,
 * quoted identifiers and comments are copied untouched. Returns NULL when out of memory. */
static char *rewrite(const char *sql, int *nparams)
{
    buf b = {0};
    int n = 0, ddl = -1;
    const char *p = sql, *prev = NULL; /* the previous word, if nothing but spaces followed it */
    size_t prevn = 0;
    puts_(&b, "");
    while (*p) {
        const char *s = p;
        if (*p == '\'' || *p == '"') {
            char q = *p++;
            while (*p && !(*p == q && p[1] != q))
                p += (*p == q && p[1] == q) ? 2 : 1;
            if (*p)
                p++;
            put(&b, s, (size_t)(p - s));
            prev = NULL;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
            put(&b, s, (size_t)(p - s));
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            p = e ? e + 2 : p + strlen(p);
            put(&b, s, (size_t)(p - s));
        } else if (*p == '?') {
            char num[16];
            snprintf(num, sizeof num, "$%d", ++n);
            puts_(&b, num);
            p++;
            prev = NULL;
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            while (isalnum((unsigned char)*p) || *p == '_' || *p == '$')
                p++;
            size_t wn = (size_t)(p - s), n2, n3;
            if (ddl < 0)
                ddl = word_is(s, wn, "CREATE") || word_is(s, wn, "ALTER");
            /* a type name comes after a column's name in DDL, or after AS in a CAST: a column
             * named "blob" stays a column */
            int type_pos = prev && (ddl || word_is(prev, prevn, "AS"));
            if (type_pos && word_is(s, wn, "INTEGER")) {
                const char *w2 = next_word(p, &n2);
                const char *w3 = next_word(w2 + n2, &n3);
                if (word_is(w2, n2, "PRIMARY") && word_is(w3, n3, "KEY"))
                    puts_(&b, "BIGINT GENERATED BY DEFAULT AS IDENTITY");
                else
                    puts_(&b, "BIGINT");
            } else if (type_pos && word_is(s, wn, "REAL")) {
                puts_(&b, "DOUBLE PRECISION");
            } else if (type_pos && word_is(s, wn, "BLOB")) {
                puts_(&b, "BYTEA");
            } else if (word_is(s, wn, "LIKE")) {
                puts_(&b, "ILIKE");
            } else if (word_is(s, wn, "group_concat")) {
                puts_(&b, "string_agg"); /* group_concat(text, sep): check-sql wants the sep */
            } else {
                put(&b, s, wn);
            }
            prev = s;
            prevn = wn;
        } else {
            if (!isspace((unsigned char)*p)) {
                prev = NULL;
                if (*p == ';')
                    ddl = -1;
            }
            put(&b, s, 1);
            p++;
        }
    }
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *nparams = n;
    return b.p;
}

/* ---------------------------------------------------------------- errors */

static int map_state(const char *state)
{
    if (!state)
        return HL_ERR;
    if (!strcmp(state, "23505"))
        return HL_EUNIQUE;
    if (!strcmp(state, "23503"))
        return HL_EFOREIGN;
    if (!strcmp(state, "40001") || !strcmp(state, "40P01") || !strcmp(state, "55P03"))
        return HL_EBUSY; /* serialization failure, deadlock, lock timeout: run it again */
    if (!strcmp(state, "57014"))
        return HL_ETOOBIG; /* statement_timeout: a plugin's budget ran out */
    if (!strncmp(state, "23", 2) || !strncmp(state, "22", 2) || !strcmp(state, "42501") ||
        !strcmp(state, "25006"))
        return HL_EINVAL; /* other constraints, bad values, not allowed, read-only */
    return HL_ERR;
}

/* The code and message of a failed result (res may be NULL: then the connection's). */
static int res_error(pg_db *db, const PGresult *res, hl_err *err)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        msg = PQerrorMessage(db->conn);
    int code = map_state(state);
    if (code == HL_EINVAL && state && !strcmp(state, "42501")) {
        snprintf(db->denial, sizeof db->denial, "%s", msg);
        code = hl_err_set(err, code, "not authorized: %s", msg);
    } else {
        code = hl_err_set(err, code, "%s", msg);
    }
    /* strip libpq's trailing newline */
    if (err) {
        size_t n = strlen(err->msg);
        while (n && (err->msg[n - 1] == '\n' || err->msg[n - 1] == ' '))
            err->msg[--n] = '\0';
    }
    snprintf(db->base.errmsg, sizeof db->base.errmsg, "%s", err ? err->msg : msg);
    return code;
}

/* Runs fixed SQL of ours (no parameters); HL_OK or an error with a message. */
static int run_simple(pg_db *db, const char *sql, hl_err *err)
{
    PGresult *r = PQexec(db->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = HL_OK;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
        rc = res_error(db, r, err);
    else if (s == PGRES_COMMAND_OK && PQcmdTuples(r)[0])
        db->changes = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return rc;
}

/* Server notices (e.g. "relation already exists, skipping") go to the debug log, not stderr. */
static void on_notice(void *ud, const char *msg)
{
    (void)ud;
    hl_log(HL_LOG_DEBUG, "postgresql: %s", msg);
}

/* Trusted code (the core, C plugins, halle sql, migrate-data) names a Lua plugin's tables
 * without their schema, as on SQLite: its search path lists every plugin schema after public
 * (plugins' tables are all named PLUGIN_*, so none can stand in for another's or the core's). */
static int refresh_path(pg_db *db, hl_err *err)
{
    PGresult *r = PQexec(db->conn, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'hlp\\_%' ORDER BY 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = res_error(db, r, err);
        PQclear(r);
        return rc;
    }
    buf b = {0};
    puts_(&b, "SET search_path = public");
    for (int i = 0; i < PQntuples(r); i++) {
        char *id = PQescapeIdentifier(db->conn, PQgetvalue(r, i, 0), (size_t)PQgetlength(r, i, 0));
        puts_(&b, ", ");
        puts_(&b, id ? id : "public");
        PQfreemem(id);
    }
    PQclear(r);
    if (b.failed) {
        free(b.p);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    free(db->trusted_path);
    db->trusted_path = b.p;
    return db->role ? HL_OK : run_simple(db, db->trusted_path, err);
}

/* ---------------------------------------------------------------- open / close */

static int as_owner(pg_db *db, int on, hl_err *err);

/* What every session starts with. Times are written by halle in UTC text; a lock waited on
 * longer than the busy timeout is HL_EBUSY, as on SQLite. */
static int session_setup(pg_db *db, hl_err *err)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SET TIME ZONE 'UTC'; SET client_min_messages = warning; SET lock_timeout = %d%s",
             db->busy_ms, db->readonly ? "; SET default_transaction_read_only = on" : "");
    int rc = run_simple(db, sql, err);
    return rc == HL_OK ? refresh_path(db, err) : rc;
}

/* A connection lost between two statements (the server restarted, a proxy timed out) is
 * opened again before the next one, outside a transaction: a transaction that lost its
 * connection is gone, and its error reaches the caller. Server-side prepared statements are
 * gone with the old session. */
static void reconnect_if_lost(pg_db *db)
{
    if (PQstatus(db->conn) != CONNECTION_BAD || db->base.depth > 0)
        return;
    hl_log(HL_LOG_WARN, "postgresql: the connection was lost; connecting again");
    PQreset(db->conn);
    for (int i = 0; i < db->nnames; i++)
        free(db->names[i].key);
    db->nnames = 0;
    db->nsetup = 0;
    hl_err e;
    if (PQstatus(db->conn) != CONNECTION_OK || session_setup(db, &e) != HL_OK)
        hl_log(HL_LOG_ERROR, "postgresql: cannot connect again: %s", PQerrorMessage(db->conn));
    /* a plugin's role in force must be in force again, or its SQL must not run at all */
    else if (db->role && as_owner(db, 0, &e) != HL_OK)
        db->role_lost = 1;
}

static hl_db *pg_open(const char *target, unsigned flags, hl_err *err)
{
    pg_db *db = calloc(1, sizeof *db);
    if (!db) {
        hl_err_set(err, HL_ENOMEM, "cannot open database: out of memory");
        return NULL;
    }
    db->conn = PQconnectdb(target);
    if (!db->conn || PQstatus(db->conn) != CONNECTION_OK) {
        char *shown = hl_db_redact(target);
        const char *m = db->conn ? PQerrorMessage(db->conn) : "out of memory";
        hl_err_set(err, HL_EIO, "cannot open database %s: %.*s", shown ? shown : "(URI)",
                   (int)strcspn(m, "\n"), m);
        free(shown);
        PQfinish(db->conn);
        free(db);
        return NULL;
    }
    PQsetNoticeProcessor(db->conn, on_notice, NULL);
    db->busy_ms = BUSY_MS;
    db->readonly = (flags & HL_DB_READONLY) != 0;
    /* Times are written by halle in UTC text; a lock waited on longer than the busy timeout is
     * HL_EBUSY, as on SQLite. */
    hl_err e;
    if (session_setup(db, &e) != HL_OK) {
        hl_err_set(err, HL_EIO, "cannot set up the database connection: %s", e.msg);
        free(db->trusted_path);
        PQfinish(db->conn);
        free(db);
        return NULL;
    }
    return &db->base;
}

static void pg_close(hl_db *base)
{
    pg_db *db = PDB(base);
    for (int i = 0; i < db->nnames; i++)
        free(db->names[i].key);
    PQfinish(db->conn);
    free(db->role);
    free(db->schema);
    free(db->owner);
    free(db->prefix);
    free(db->hidden);
    free(db->trusted_path);
    free(db);
}

static int pg_exec_raw(pg_db *db, const char *sql, hl_err *err);
static int pg_prepare(hl_db *base, const char *sql, hl_stmt **out, hl_err *err);
static int pg_step(hl_stmt *base, hl_err *err);
static void pg_done(hl_stmt *base);
static uint32_t hash_str(const char *s);
static int check_plugin_sql(pg_db *db, const char *sql, hl_err *err);

static int is_tx_control(const char *sql)
{
    size_t n;
    const char *w = next_word(sql, &n);
    return word_is(w, n, "BEGIN") || word_is(w, n, "COMMIT") || word_is(w, n, "ROLLBACK") ||
           word_is(w, n, "SAVEPOINT") || word_is(w, n, "RELEASE");
}

/* A plugin's literal SQL (its migrations): statement by statement, each checked. */
static int exec_plugin(pg_db *db, const char *sql, hl_err *err)
{
    const char *p = sql;
    while (*p) {
        /* the end of this statement: a ';' outside strings and comments */
        const char *s = p;
        while (*p && *p != ';') {
            if (*p == '\'') {
                for (p++; *p && !(*p == '\'' && p[1] != '\''); p += (*p == '\'' ? 2 : 1))
                    ;
                if (*p)
                    p++;
            } else if (p[0] == '-' && p[1] == '-') {
                while (*p && *p != '\n')
                    p++;
            } else if (p[0] == '/' && p[1] == '*') {
                const char *e = strstr(p + 2, "*/");
                p = e ? e + 2 : p + strlen(p);
            } else {
                p++;
            }
        }
        size_t len = (size_t)(p - s);
        if (*p)
            p++;
        char *one = strndup(s, len);
        if (!one)
            return hl_err_set(err, HL_ENOMEM, "exec: out of memory");
        const char *q = one;
        while (isspace((unsigned char)*q))
            q++;
        int rc = HL_OK;
        if (*q && !(q[0] == '-' && q[1] == '-' && !strchr(q, '\n'))) {
            hl_stmt *st;
            rc = check_plugin_sql(db, one, err);
            if (rc == HL_OK && (rc = pg_prepare(&db->base, one, &st, err)) == HL_OK) {
                while ((rc = pg_step(st, err)) == HL_DB_ROW)
                    ;
                if (rc == HL_DB_DONE)
                    rc = HL_OK;
                pg_done(st);
            }
        }
        free(one);
        if (rc != HL_OK)
            return rc;
    }
    return HL_OK;
}

static int pg_exec(hl_db *base, const char *sql, hl_err *err)
{
    pg_db *db = PDB(base);
    if (db->role && !db->base.internal)
        return exec_plugin(db, sql, err);
    if (db->role && db->base.internal && !is_tx_control(sql)) {
        int rc = as_owner(db, 1, err);
        if (rc == HL_OK) {
            rc = pg_exec_raw(db, sql, err);
            int r2 = as_owner(db, 0, rc == HL_OK ? err : NULL);
            if (rc == HL_OK)
                rc = r2;
        }
        return rc;
    }
    return pg_exec_raw(db, sql, err);
}

static int pg_exec_raw(pg_db *db, const char *sql, hl_err *err)
{
    int n;
    char *pgsql = rewrite(sql, &n);
    if (!pgsql)
        return hl_err_set(err, HL_ENOMEM, "exec: out of memory");
    if (n > 0) {
        free(pgsql);
        return hl_err_set(err, HL_EINVAL, "exec: SQL with parameters (use hl_db_run)");
    }
    int rc = run_simple(db, pgsql, err);
    free(pgsql);
    return rc;
}

/* ---------------------------------------------------------------- statements */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}

static int pg_prepare(hl_db *base, const char *sql, hl_stmt **out, hl_err *err)
{
    pg_db *db = PDB(base);
    *out = NULL;
    if (db->role && !db->base.internal) {
        int rc = check_plugin_sql(db, sql, err);
        if (rc != HL_OK)
            return rc;
    }
    pg_stmt *st = calloc(1, sizeof *st);
    if (!st || !(st->key = strdup(sql)) || !(st->sql = rewrite(sql, &st->nparams)) ||
        (st->nparams && !(st->params = calloc((size_t)st->nparams, sizeof *st->params)))) {
        if (st) {
            free(st->key);
            free(st->sql);
        }
        free(st);
        return hl_err_set(err, HL_ENOMEM, "cannot prepare SQL: out of memory");
    }
    /* One statement only, as on SQLite: the extended protocol refuses a second one when the
     * statement runs; an empty text is refused here. */
    const char *p = st->sql;
    while (isspace((unsigned char)*p) || *p == ';')
        p++;
    if (!*p) {
        free(st->key);
        free(st->sql);
        free(st->params);
        free(st);
        return hl_err_set(err, HL_EINVAL, "cannot prepare SQL: empty statement");
    }
    st->db = db;
    st->base.db = base;
    st->base.in_use = 1;
    st->pgen = db->pgen;
    st->internal = db->base.internal > 0;
    st->row = -1;
    *out = &st->base;
    return HL_OK;
}

static void clear_row(pg_stmt *st)
{
    if (st->blobs && st->res) {
        int nc = PQnfields(st->res);
        for (int i = 0; i < nc; i++)
            PQfreemem(st->blobs[i]);
        memset(st->blobs, 0, (size_t)nc * sizeof *st->blobs);
    }
}

static void pg_done(hl_stmt *base)
{
    pg_stmt *st = PST(base);
    clear_row(st);
    free(st->blobs);
    free(st->blob_len);
    PQclear(st->res);
    for (int i = 0; i < st->nparams; i++)
        if (st->params[i].val != st->params[i].num)
            free(st->params[i].val);
    free(st->params);
    free(st->key);
    free(st->sql);
    free(st);
}

static int pg_param_count(hl_stmt *st) { return PST(st)->nparams; }

static pg_param *param(hl_stmt *base, int idx)
{
    pg_stmt *st = PST(base);
    if (idx < 1 || idx > st->nparams || st->res)
        return NULL;
    pg_param *p = &st->params[idx - 1];
    if (p->val != p->num)
        free(p->val);
    memset(p, 0, sizeof *p);
    return p;
}

static int pg_bind_int64(hl_stmt *st, int idx, int64_t v)
{
    pg_param *p = param(st, idx);
    if (!p)
        return HL_EINVAL;
    p->len = snprintf(p->num, sizeof p->num, "%" PRId64, v);
    p->val = p->num;
    p->type = OID_INT8;
    return HL_OK;
}

static int pg_bind_double(hl_stmt *st, int idx, double v)
{
    pg_param *p = param(st, idx);
    if (!p)
        return HL_EINVAL;
    p->len = snprintf(p->num, sizeof p->num, "%.17g", v);
    p->val = p->num;
    p->type = OID_FLOAT8;
    return HL_OK;
}

static int pg_bind_text(hl_stmt *st, int idx, const char *s, size_t len)
{
    pg_param *p = param(st, idx);
    if (!p || len > INT32_MAX || memchr(s, '\0', len))
        return HL_EINVAL; /* PostgreSQL text cannot hold NUL */
    if (!(p->val = malloc(len + 1)))
        return HL_ENOMEM;
    memcpy(p->val, s, len);
    p->val[len] = '\0';
    p->len = (int)len;
    return HL_OK;
}

static int pg_bind_blob(hl_stmt *st, int idx, const void *v, size_t len)
{
    pg_param *p = param(st, idx);
    if (!p || len > INT32_MAX)
        return HL_EINVAL;
    if (!(p->val = malloc(len ? len : 1)))
        return HL_ENOMEM;
    memcpy(p->val, v, len);
    p->len = (int)len;
    p->binary = 1;
    p->type = OID_BYTEA;
    return HL_OK;
}

static int pg_bind_null(hl_stmt *st, int idx) { return param(st, idx) ? HL_OK : HL_EINVAL; }

static const char *pg_bind_error(hl_stmt *st)
{
    (void)st;
    return "invalid parameter index, text holding a NUL byte, or statement already run";
}

/* ---------------------------------------------------------------- running */

static prepared *find_name(pg_db *db, const char *key, uint32_t h)
{
    for (int i = 0; i < db->nnames; i++)
        if (db->names[i].hash == h && strcmp(db->names[i].key, key) == 0)
            return &db->names[i];
    return NULL;
}

/* The parameter types given to the server: numbers and bytea as bound, text and NULL left for
 * the server to infer from the SQL (a text bound to an integer column is read as one, as
 * SQLite would), unless it cannot (typed = 1: "? IS NULL"), then text. */
static void param_types(pg_stmt *st, unsigned *types, int typed)
{
    for (int i = 0; i < st->nparams; i++)
        types[i] = st->params[i].type ? st->params[i].type : typed ? OID_TEXT : 0;
}

/* Runs the statement with its whole result. Statements of trusted code are prepared once per
 * connection under a name; a plugin's run unnamed (they are checked under its role when they
 * run, and must not outlive its policy). */
static PGresult *execute(pg_stmt *st, int typed)
{
    pg_db *db = st->db;
    int n = st->nparams;
    unsigned types[n > 0 ? n : 1];
    const char *vals[n > 0 ? n : 1];
    int lens[n > 0 ? n : 1], fmts[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        vals[i] = st->params[i].val;
        lens[i] = st->params[i].len;
        fmts[i] = st->params[i].binary;
    }
    param_types(st, types, typed);
    if (db->role || typed)
        return PQexecParams(db->conn, st->sql, n, (const Oid *)types, vals, lens, fmts, 0);
    uint32_t h = hash_str(st->key);
    prepared *pr = find_name(db, st->key, h);
    if (!pr) {
        char name[16];
        snprintf(name, sizeof name, "hl%u", ++db->next_name);
        PGresult *r = PQprepare(db->conn, name, st->sql, n, (const Oid *)types);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r;
        PQclear(r);
        if (db->nnames == NAMES_MAX) { /* forget the oldest half: rare, and cheap to redo */
            for (int i = 0; i < NAMES_MAX / 2; i++) {
                char sql[48];
                snprintf(sql, sizeof sql, "DEALLOCATE %s", db->names[i].name);
                PQclear(PQexec(db->conn, sql));
                free(db->names[i].key);
            }
            memmove(db->names, db->names + NAMES_MAX / 2,
                    (NAMES_MAX - NAMES_MAX / 2) * sizeof *db->names);
            db->nnames -= NAMES_MAX / 2;
        }
        char *key = strdup(st->key);
        if (!key)
            return PQexecPrepared(db->conn, name, n, vals, lens, fmts, 0);
        pr = &db->names[db->nnames++];
        pr->key = key;
        pr->hash = h;
        snprintf(pr->name, sizeof pr->name, "%s", name);
    }
    return PQexecPrepared(db->conn, pr->name, n, vals, lens, fmts, 0);
}

static int in_tx(pg_db *db)
{
    PGTransactionStatusType t = PQtransactionStatus(db->conn);
    return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

static int run(pg_stmt *st, hl_err *err)
{
    pg_db *db = st->db;
    if (db->role && !st->internal && db->check && db->check(db->check_ud))
        return hl_err_set(err, HL_ETOOBIG, "interrupted: plugin %s's time budget is spent", db->owner);
    reconnect_if_lost(db);
    if (db->role && db->role_lost)
        return hl_err_set(err, HL_ERR, "the connection was lost under plugin %s's role", db->owner);
    int owner = db->role && st->internal;
    if (owner) {
        int rc = as_owner(db, 1, err);
        if (rc != HL_OK)
            return rc;
    }
    PGresult *r = execute(st, 0);
    size_t n0;
    const char *w0 = next_word(st->sql, &n0);
    if (PQstatus(db->conn) == CONNECTION_BAD && db->base.depth == 0 && !owner &&
        word_is(w0, n0, "SELECT")) {
        /* found lost by this statement: a read is safe to send again (a write may have
         * happened before the connection broke, so it is not) */
        PQclear(r);
        reconnect_if_lost(db);
        if (db->role && db->role_lost)
            return hl_err_set(err, HL_ERR, "the connection was lost under plugin %s's role", db->owner);
        r = execute(st, 0);
    }
    if (owner)
        as_owner(db, 0, NULL);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    if (state && !strcmp(state, "42P18") && !in_tx(db)) {
        /* "could not determine data type of parameter": again with text for those. Inside a
         * transaction the failure has already ended its work, so it is reported instead. */
        PQclear(r);
        r = execute(st, 1);
    }
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        int rc = res_error(db, r, err);
        PQclear(r);
        /* cut by statement_timeout: charged to the plugin's call, which is then over (and says
         * so, "time limit exceeded", as when SQLite's progress handler cuts it) */
        if (rc == HL_ETOOBIG && db->role && !st->internal && db->check)
            db->check(db->check_ud);
        return rc;
    }
    st->res = r;
    st->nrows = s == PGRES_TUPLES_OK ? PQntuples(r) : 0;
    const char *ct = PQcmdTuples(r);
    if (ct && *ct && strncmp(PQcmdStatus(r), "SELECT", 6) != 0)
        db->changes = strtoll(ct, NULL, 10);
    int nc = PQnfields(r);
    if (nc > 0 && (!(st->blobs = calloc((size_t)nc, sizeof *st->blobs)) ||
                   !(st->blob_len = calloc((size_t)nc, sizeof *st->blob_len))))
        return hl_err_set(err, HL_ENOMEM, "step: out of memory");
    return HL_OK;
}

static int pg_step(hl_stmt *base, hl_err *err)
{
    pg_stmt *st = PST(base);
    if (st->pgen != st->db->pgen)
        return hl_err_set(err, HL_EINVAL,
                          "step: statement was prepared under an access policy no longer in force");
    if (!st->res) {
        int rc = run(st, err);
        if (rc != HL_OK)
            return rc;
    }
    clear_row(st);
    if (st->row < st->nrows)
        st->row++;
    return st->row < st->nrows ? HL_DB_ROW : HL_DB_DONE;
}

/* ---------------------------------------------------------------- columns */

static int pg_col_count(hl_stmt *base)
{
    pg_stmt *st = PST(base);
    if (!st->res) { /* not run yet: describe it, as sqlite3_column_count can */
        hl_err e;
        if (run(st, &e) != HL_OK)
            return 0;
    }
    return PQnfields(st->res);
}

static const char *pg_col_name(hl_stmt *st, int col) { return PQfname(PST(st)->res, col); }

/* The value of the current row, NULL for SQL NULL or no row. */
static const char *value(pg_stmt *st, int col)
{
    if (!st->res || st->row < 0 || st->row >= st->nrows || PQgetisnull(st->res, st->row, col))
        return NULL;
    return PQgetvalue(st->res, st->row, col);
}

static int pg_col_type(hl_stmt *base, int col)
{
    pg_stmt *st = PST(base);
    const char *v = value(st, col);
    if (!v)
        return HL_DB_NULL;
    switch (PQftype(st->res, col)) {
    case OID_INT2: case OID_INT4: case OID_INT8: case OID_OID: case OID_BOOL:
        return HL_DB_INTEGER;
    case OID_FLOAT4: case OID_FLOAT8: return HL_DB_FLOAT;
    case OID_NUMERIC: /* SUM() of integers is numeric: an integer while it has no fraction */
        return strpbrk(v, ".eEN") ? HL_DB_FLOAT : HL_DB_INTEGER;
    case OID_BYTEA: return HL_DB_BLOB;
    default: return HL_DB_TEXT;
    }
}

static int64_t pg_col_int64(hl_stmt *base, int col)
{
    pg_stmt *st = PST(base);
    const char *v = value(st, col);
    if (!v)
        return 0;
    if (PQftype(st->res, col) == OID_BOOL)
        return v[0] == 't';
    if (strpbrk(v, ".eE"))
        return (int64_t)strtod(v, NULL);
    return strtoll(v, NULL, 10);
}

static double pg_col_double(hl_stmt *base, int col)
{
    pg_stmt *st = PST(base);
    const char *v = value(st, col);
    if (!v)
        return 0.0;
    if (PQftype(st->res, col) == OID_BOOL)
        return v[0] == 't';
    return strtod(v, NULL);
}

static const char *pg_col_text(hl_stmt *base, int col)
{
    pg_stmt *st = PST(base);
    const char *v = value(st, col);
    if (v && PQftype(st->res, col) == OID_BOOL) /* as SQLite shows a comparison's result */
        return v[0] == 't' ? "1" : "0";
    return v;
}

static const void *pg_col_blob(hl_stmt *base, int col)
{
    pg_stmt *st = PST(base);
    const char *v = value(st, col);
    if (!v)
        return NULL;
    if (PQftype(st->res, col) != OID_BYTEA) {
        st->blob_len[col] = (size_t)PQgetlength(st->res, st->row, col);
        return v;
    }
    if (!st->blobs[col])
        st->blobs[col] = PQunescapeBytea((const unsigned char *)v, &st->blob_len[col]);
    return st->blobs[col];
}

static size_t pg_col_bytes(hl_stmt *base, int col)
{
    pg_stmt *st = PST(base);
    if (!value(st, col))
        return 0;
    if (PQftype(st->res, col) == OID_BYTEA) {
        pg_col_blob(base, col);
        return st->blob_len[col];
    }
    return (size_t)PQgetlength(st->res, st->row, col);
}

/* ---------------------------------------------------------------- connection services */

static int64_t pg_changes(hl_db *db) { return PDB(db)->changes; }

static int64_t pg_last_insert_id(hl_db *db)
{
    (void)db;
    return 0;
}

/* READ COMMITTED, PostgreSQL's default, because of what halle writes: money is changed by
 * conditional UPDATEs (stock = stock - ? WHERE stock >= ?), keys are claimed by INSERT ... ON
 * CONFLICT, numbers by an UPDATE of the counter's row. Under READ COMMITTED such a statement
 * that meets a row another transaction changed waits for it and then works on the committed
 * row: the second of two racing orders finds the stock gone, the second request with a key
 * finds the first one's answer, invoice numbers follow each other. Under SERIALIZABLE (tried
 * first) every such wait ends in a serialization failure instead, and a hot row (the invoice
 * counter) made the retries of a busy machine fail for good. The rule for code, in db.h: no
 * read-then-write in two statements. A deadlock or lock timeout is still HL_EBUSY, and
 * hl_db_tx runs the work again. An ordinary transaction does not wait for its commit record
 * to reach the disk (synchronous_commit off: a crash of the server may lose the last ones,
 * never corrupt anything), as SQLite's synchronous=NORMAL; a durable one does. */
static int pg_begin(hl_db *base, int durable, hl_err *err)
{
    return run_simple(PDB(base),
                      durable ? "BEGIN" : "BEGIN; SET LOCAL synchronous_commit = off",
                      err);
}

static int pg_in_tx(hl_db *db) { return in_tx(PDB(db)); }

static void pg_set_busy_timeout(hl_db *base, int ms)
{
    pg_db *db = PDB(base);
    char sql[64];
    db->busy_ms = ms;
    /* 0 means no waiting on SQLite; on PostgreSQL lock_timeout 0 means forever */
    snprintf(sql, sizeof sql, "SET lock_timeout = %d", ms > 0 ? ms : 1);
    hl_err e;
    run_simple(db, sql, &e);
}

static int pg_readonly(hl_db *db) { return PDB(db)->readonly; }

static int pg_sync_ids(hl_db *base, const char *table, hl_err *err)
{
    pg_db *db = PDB(base);
    char sql[512];
    /* table was checked to be an identifier by db.c */
    snprintf(sql, sizeof sql,
             "SELECT setval(pg_get_serial_sequence('%s', 'id'), "
             "COALESCE((SELECT MAX(id) FROM %s), 0) + 1, false) "
             "WHERE pg_get_serial_sequence('%s', 'id') IS NOT NULL",
             table, table, table);
    return run_simple(db, sql, err);
}

/* Identity columns whose table holds rows inserted with their ids (a migration's fixed list)
 * continue after the largest, in every schema the connection sees. */
static int pg_after_migration(hl_db *base, hl_err *err)
{
    return pg_exec(base,
                   "DO $hl$ DECLARE r record; BEGIN FOR r IN SELECT table_schema AS s, table_name AS t, "
                   "column_name AS c FROM information_schema.columns WHERE is_identity = 'YES' "
                   "AND table_schema = ANY (current_schemas(false)) LOOP EXECUTE format("
                   "'SELECT setval(pg_get_serial_sequence(%L, %L), COALESCE((SELECT MAX(%I) FROM %I.%I), 0) + 1, false)', "
                   "quote_ident(r.s) || '.' || quote_ident(r.t), r.c, r.c, r.s, r.t); END LOOP; END $hl$",
                   err);
}

/* Advisory locks take a 64-bit key: the name's FNV-1a hash, widened. */
static int pg_lock(hl_db *base, const char *name, int on, hl_err *err)
{
    pg_db *db = PDB(base);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ull;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_%slock(%" PRId64 ")", on ? "" : "un",
             (int64_t)h);
    /* waiting for another machine's migrations may take longer than a lock timeout */
    PGresult *r = PQexec(db->conn, "SET lock_timeout = 0");
    PQclear(r);
    int rc = run_simple(db, sql, err);
    pg_set_busy_timeout(base, db->busy_ms);
    return rc;
}

/* ---------------------------------------------------------------- access policy */

/* A plugin's SQL runs under its own role, in its own schema: PostgreSQL checks every table
 * and column it touches against the grants made here (its own tables, which it owns, and
 * exactly the readable columns its policy lists), and statement_timeout bounds its time.
 * Since a role set with SET ROLE can be left again by the same session (RESET ROLE,
 * set_config('role', ...)), the plugin's statements are also checked before they reach the
 * server: one statement of an allowed kind (SELECT, INSERT, UPDATE, DELETE, WITH, VALUES, and
 * CREATE/ALTER/DROP of its own prefix_* tables and indexes), no function or catalog that
 * could change the session or read the schema, no quoting that could hide a word from this
 * check (E'', U&, dollar quotes, quoted identifiers). */
#define PLUGIN_SQL_TIMEOUT_MS 2000

static const char *const denied_words[] = {
    "set_config", "current_setting", "dblink", "query_to_xml", "query_to_xml_and_xmlschema",
    "cursor_to_xml", "table_to_xml", "database_to_xml", "schema_to_xml", "information_schema",
    "query_to_xmlschema", "table_to_xmlschema", "xmlexists", NULL};

static int denied_word(const char *w, size_t n)
{
    if (n >= 3 && strncasecmp(w, "pg_", 3) == 0)
        return 1;
    if (n >= 3 && strncasecmp(w, "lo_", 3) == 0)
        return 1;
    for (size_t i = 0; denied_words[i]; i++)
        if (word_is(w, n, denied_words[i]))
            return 1;
    return 0;
}

/* The words of a plugin's statement, outside strings and comments, in order. */
typedef struct words {
    const char *w[512];
    size_t n[512];
    int count;
    int semicolon; /* a ';' followed by more than spaces: a second statement */
} words;

static int tokenize(const char *sql, words *out, char *why, size_t whylen)
{
    const char *p = sql;
    out->count = 0;
    out->semicolon = 0;
    while (*p) {
        if (*p == '\'') {
            for (p++; *p && !(*p == '\'' && p[1] != '\''); p += (*p == '\'' ? 2 : 1))
                ;
            if (!*p)
                return snprintf(why, whylen, "leave a string unterminated"), -1;
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n')
                p++;
        } else if (p[0] == '/' && p[1] == '*') {
            const char *e = strstr(p + 2, "*/");
            if (!e)
                return snprintf(why, whylen, "leave a comment unterminated"), -1;
            p = e + 2;
        } else if (*p == '"' || *p == '$' || *p == '\\' || *p == '`') {
            return snprintf(why, whylen, "use quoted identifiers, dollar quotes or escapes"), -1;
        } else if (*p == ';') {
            for (p++; isspace((unsigned char)*p); p++)
                ;
            if (*p)
                out->semicolon = 1;
        } else if (isalpha((unsigned char)*p) || *p == '_') {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
            size_t n = (size_t)(p - s);
            /* E'..' (backslash escapes), U&'..' and U&".." (escapes) could hide words */
            if ((*p == '\'' || *p == '&') && !(n == 1 && (*s == 'x' || *s == 'X' || *s == 'b' || *s == 'B')))
                return snprintf(why, whylen, "use escaped strings (E'', U&)"), -1;
            if (out->count == (int)(sizeof out->w / sizeof out->w[0]))
                return snprintf(why, whylen, "run a statement that long"), -1;
            out->w[out->count] = s;
            out->n[out->count++] = n;
        } else {
            p++;
        }
    }
    return 0;
}

/* The "table.column" of the policy's hidden list whose column is w, or NULL. */
static const char *hidden_named(const pg_db *db, const char *w, size_t n)
{
    for (const char *h = db->hidden; h && *h; h += strlen(h) + 1) {
        const char *dot = strchr(h, '.');
        if (dot && word_is(w, n, dot + 1))
            return h;
    }
    return NULL;
}

static int owns_name(const char *prefix, const char *w, size_t n)
{
    size_t pl = strlen(prefix);
    return n > pl + 1 && strncasecmp(w, prefix, pl) == 0 && w[pl] == '_';
}

/* Index of the object name after the keyword at k (skipping IF [NOT] EXISTS), or -1. */
static int name_after(const words *t, int k)
{
    k++;
    if (k < t->count && word_is(t->w[k], t->n[k], "IF")) {
        k++;
        if (k < t->count && word_is(t->w[k], t->n[k], "NOT"))
            k++;
        if (k < t->count && word_is(t->w[k], t->n[k], "EXISTS"))
            k++;
    }
    return k < t->count ? k : -1;
}

static int check_plugin_sql(pg_db *db, const char *sql, hl_err *err)
{
    words t;
    char why[160] = "";
    const char *prefix = db->prefix;
    if (tokenize(sql, &t, why, sizeof why) != 0 || t.count == 0)
        goto deny;
    if (t.semicolon) {
        snprintf(why, sizeof why, "run more than one statement at a time");
        goto deny;
    }
    const char *w0 = t.w[0];
    size_t n0 = t.n[0];
    /* the tables and indexes a DDL statement names, which must all be the plugin's own */
    int names[64], nn = 0, k;
#define NAME(i) do { if ((i) < 0 || (i) >= t.count) goto bad_name; if (nn < 64) names[nn++] = (i); } while (0)
    if (word_is(w0, n0, "CREATE")) {
        k = 1;
        if (k < t.count && word_is(t.w[k], t.n[k], "UNIQUE"))
            k++;
        if (k >= t.count || !(word_is(t.w[k], t.n[k], "TABLE") || word_is(t.w[k], t.n[k], "INDEX"))) {
            char kind[24];
            snprintf(kind, sizeof kind, "%.*s", k < t.count ? (int)(t.n[k] > 20 ? 20 : t.n[k]) : 7,
                     k < t.count ? t.w[k] : "nothing");
            for (char *c = kind; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            snprintf(why, sizeof why, "create a %s (only its tables and indexes)", kind);
            goto deny;
        }
        int index = word_is(t.w[k], t.n[k], "INDEX");
        int nm = name_after(&t, k);
        NAME(nm);
        if (index) {
            for (k = nm + 1; k < t.count && !word_is(t.w[k], t.n[k], "ON"); k++)
                ;
            NAME(k + 1);
        }
    } else if (word_is(w0, n0, "ALTER")) {
        if (t.count < 2 || !(word_is(t.w[1], t.n[1], "TABLE") || word_is(t.w[1], t.n[1], "INDEX"))) {
            snprintf(why, sizeof why, "alter anything but tables and indexes");
            goto deny;
        }
        int nm = name_after(&t, 1);
        NAME(nm);
        for (k = nm + 1; k + 2 < t.count; k++)
            if (word_is(t.w[k], t.n[k], "RENAME") && word_is(t.w[k + 1], t.n[k + 1], "TO"))
                NAME(k + 2);
    } else if (word_is(w0, n0, "DROP")) {
        if (t.count < 2 || !(word_is(t.w[1], t.n[1], "TABLE") || word_is(t.w[1], t.n[1], "INDEX"))) {
            snprintf(why, sizeof why, "drop anything but tables and indexes");
            goto deny;
        }
        for (k = name_after(&t, 1); k >= 0 && k < t.count; k++)
            if (!word_is(t.w[k], t.n[k], "CASCADE") && !word_is(t.w[k], t.n[k], "RESTRICT"))
                NAME(k);
    } else if (!word_is(w0, n0, "SELECT") && !word_is(w0, n0, "INSERT") &&
               !word_is(w0, n0, "UPDATE") && !word_is(w0, n0, "DELETE") &&
               !word_is(w0, n0, "WITH") && !word_is(w0, n0, "VALUES")) {
        snprintf(why, sizeof why, "run %.*s statements", (int)(n0 > 20 ? 20 : n0), w0);
        goto deny;
    }
#undef NAME
    for (int i = 0; i < nn; i++) {
        k = names[i];
        if (!owns_name(prefix, t.w[k], t.n[k])) {
            snprintf(why, sizeof why, "touch %.*s: its own tables are named %s_*",
                     (int)(t.n[k] > 40 ? 40 : t.n[k]), t.w[k], prefix);
            goto deny;
        }
    }
    for (k = 0; k < t.count; k++) {
        if (denied_word(t.w[k], t.n[k])) {
            snprintf(why, sizeof why, "use %.*s", (int)(t.n[k] > 40 ? 40 : t.n[k]), t.w[k]);
            goto deny;
        }
        /* a column the policy hides: refused wherever it is named, with the table it is of */
        const char *hid = hidden_named(db, t.w[k], t.n[k]);
        if (hid) {
            snprintf(why, sizeof why, "read %s", hid);
            goto deny;
        }
        /* SELECT ... INTO creates a table */
        if (word_is(t.w[k], t.n[k], "INTO") && !(k > 0 && word_is(t.w[k - 1], t.n[k - 1], "INSERT"))) {
            snprintf(why, sizeof why, "use SELECT INTO");
            goto deny;
        }
    }
    return HL_OK;
bad_name:
    snprintf(why, sizeof why, "run DDL without a table or index name");
deny:
    snprintf(db->denial, sizeof db->denial, "plugin %s may not %s", db->owner,
             why[0] ? why : "run an empty statement");
    hl_log(HL_LOG_WARN, "%s", db->denial);
    return hl_err_set(err, HL_EINVAL, "not authorized: %s", db->denial);
}

/* Runs fixed SQL of ours as the connection's own role while a plugin's is in force (db.c's
 * bookkeeping: hl_migrations, which the plugin may not write itself). */
static int as_owner(pg_db *db, int on, hl_err *err)
{
    char sql[160];
    if (on) {
        int rc = run_simple(db, "RESET ROLE", err);
        return rc == HL_OK ? run_simple(db, db->trusted_path, err) : rc;
    }
    char *r = PQescapeIdentifier(db->conn, db->role, strlen(db->role));
    char *s = PQescapeIdentifier(db->conn, db->schema, strlen(db->schema));
    if (!r || !s) {
        PQfreemem(r);
        PQfreemem(s);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    snprintf(sql, sizeof sql, "SET ROLE %s; SET search_path = %s, public", r, s);
    PQfreemem(r);
    PQfreemem(s);
    return run_simple(db, sql, err);
}

static uint32_t policy_hash(const hl_db_policy *p)
{
    uint32_t h = hash_str(p->owner) ^ (hash_str(p->prefix) * 31u);
    for (size_t i = 0; p->readable && p->readable[i]; i++)
        h = h * 131u + hash_str(p->readable[i]);
    for (size_t i = 0; p->hidden && p->hidden[i]; i++)
        h = h * 137u + hash_str(p->hidden[i]);
    return h;
}

static int hidden_col(const hl_db_policy *p, const char *table, const char *col)
{
    size_t tl = strlen(table);
    for (size_t i = 0; p->hidden && p->hidden[i]; i++)
        if (!strncasecmp(p->hidden[i], table, tl) && p->hidden[i][tl] == '.' &&
            !strcasecmp(p->hidden[i] + tl + 1, col))
            return 1;
    return 0;
}

/* Creates the plugin's role and schema if missing and makes its grants exactly the policy's,
 * as the connection's own role (which needs CREATEROLE: docs/scaling.md). Runs once per
 * connection and policy. */
static int setup_role(pg_db *db, const hl_db_policy *p, const char *role, const char *schema,
                      hl_err *err)
{
    buf b = {0};
    char *r = PQescapeIdentifier(db->conn, role, strlen(role));
    char *s = PQescapeIdentifier(db->conn, schema, strlen(schema));
    int rc = HL_OK;
    if (!r || !s) {
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        goto out;
    }
    /* two workers may create it at once: the loser's error is expected */
    puts_(&b, "DO $hl$ BEGIN CREATE ROLE ");
    puts_(&b, r);
    puts_(&b, " NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $hl$; GRANT ");
    puts_(&b, r);
    puts_(&b, " TO CURRENT_USER; CREATE SCHEMA IF NOT EXISTS ");
    puts_(&b, s);
    puts_(&b, " AUTHORIZATION ");
    puts_(&b, r);
    puts_(&b, "; GRANT USAGE ON SCHEMA public TO ");
    puts_(&b, r);
    puts_(&b, "; REVOKE ALL ON ALL TABLES IN SCHEMA public FROM ");
    puts_(&b, r);
    puts_(&b, "; REVOKE CREATE ON SCHEMA public FROM ");
    puts_(&b, r);
    if (b.failed) {
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = run_simple(db, b.p, err)) != HL_OK)
        goto out;
    for (size_t i = 0; p->readable && p->readable[i] && rc == HL_OK; i++) {
        const char *table = p->readable[i];
        const char *vals[1] = {table};
        PGresult *res = PQexecParams(db->conn,
                                     "SELECT column_name FROM information_schema.columns "
                                     "WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                                     1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            rc = res_error(db, res, err);
            PQclear(res);
            break;
        }
        buf g = {0};
        int ncols = 0;
        for (int row = 0; row < PQntuples(res); row++) {
            const char *col = PQgetvalue(res, row, 0);
            if (hidden_col(p, table, col))
                continue;
            char *c = PQescapeIdentifier(db->conn, col, strlen(col));
            puts_(&g, ncols++ ? ", " : "GRANT SELECT (");
            puts_(&g, c ? c : "\"\"");
            PQfreemem(c);
        }
        PQclear(res);
        if (ncols) {
            char *t = PQescapeIdentifier(db->conn, table, strlen(table));
            puts_(&g, ") ON public.");
            puts_(&g, t ? t : "\"\"");
            puts_(&g, " TO ");
            puts_(&g, r);
            PQfreemem(t);
            rc = g.failed ? hl_err_set(err, HL_ENOMEM, "out of memory") : run_simple(db, g.p, err);
        }
        free(g.p);
    }
out:
    free(b.p);
    PQfreemem(r);
    PQfreemem(s);
    return rc;
}

static void forget_role(pg_db *db)
{
    free(db->role);
    free(db->schema);
    free(db->owner);
    free(db->prefix);
    free(db->hidden);
    db->role = db->schema = db->owner = db->prefix = db->hidden = NULL;
}

static int pg_set_policy(hl_db *base, const hl_db_policy *pol, hl_err *err)
{
    pg_db *db = PDB(base);
    db->pgen++;
    if (!pol) {
        db->role_lost = 0;
        if (!db->role)
            return HL_OK;
        int rc = run_simple(db, "RESET ROLE; RESET statement_timeout", err);
        forget_role(db);
        if (rc == HL_OK)
            rc = run_simple(db, db->trusted_path, err);
        return rc;
    }
    if (!pol->owner || !pol->prefix || !hl_db_valid_component(pol->owner))
        return hl_err_set(err, HL_EINVAL, "policy: invalid owner name");
    for (const char *c = pol->prefix; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_'))
            return hl_err_set(err, HL_EINVAL, "policy for %s: invalid table prefix", pol->owner);
    if (!*pol->prefix || !strncasecmp(pol->prefix, "hl", 2) || !strncasecmp(pol->prefix, "pg", 2))
        return hl_err_set(err, HL_EINVAL, "policy for %s: invalid or reserved table prefix", pol->owner);
    /* Roles belong to the whole server: the database's name keeps two instances apart. */
    char role[64], schema[64];
    snprintf(role, sizeof role, "hlp_%08x_%.40s", hash_str(PQdb(db->conn)), pol->owner);
    snprintf(schema, sizeof schema, "hlp_%.40s", pol->owner);
    int rc;
    if (db->role && (rc = as_owner(db, 1, err)) != HL_OK)
        return rc;
    forget_role(db);
    uint32_t h = policy_hash(pol);
    int known = 0;
    for (int i = 0; i < db->nsetup; i++)
        if (db->setup[i] == h)
            known = 1;
    if (!known) {
        if ((rc = setup_role(db, pol, role, schema, err)) != HL_OK ||
            (rc = refresh_path(db, err)) != HL_OK)
            return rc;
        if (db->nsetup < (int)(sizeof db->setup / sizeof db->setup[0]))
            db->setup[db->nsetup++] = h;
    }
    size_t hl = 1;
    for (size_t i = 0; pol->hidden && pol->hidden[i]; i++)
        hl += strlen(pol->hidden[i]) + 1;
    if ((db->hidden = calloc(1, hl))) {
        char *cur = db->hidden;
        for (size_t i = 0; pol->hidden && pol->hidden[i]; i++)
            cur = stpcpy(cur, pol->hidden[i]) + 1;
    }
    if (!db->hidden || !(db->role = strdup(role)) || !(db->schema = strdup(schema)) ||
        !(db->owner = strdup(pol->owner)) || !(db->prefix = strdup(pol->prefix))) {
        forget_role(db);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %ld",
             db->budget_ms > 0 ? db->budget_ms : PLUGIN_SQL_TIMEOUT_MS);
    if ((rc = run_simple(db, sql, err)) != HL_OK || (rc = as_owner(db, 0, err)) != HL_OK) {
        run_simple(db, "RESET ROLE; RESET statement_timeout", NULL);
        forget_role(db);
        run_simple(db, db->trusted_path, NULL);
        return rc;
    }
    db->denial[0] = '\0';
    return HL_OK;
}

static const char *pg_policy_denial(hl_db *db) { return PDB(db)->denial; }

/* The plugin's SQL is bounded by statement_timeout (set with its role), not step counts; and
 * each statement is charged to the Lua call's budget before it is sent, so that once the call's
 * time is spent (a statement cut by the timeout, caught with pcall, tried again) every further
 * statement is refused at once instead of waiting out its own timeout. */
static void pg_set_budget(hl_db *base, int (*check)(void *ud), void *ud, int every,
                          int max_length, int max_sql)
{
    (void)every;
    (void)max_length;
    (void)max_sql;
    pg_db *db = PDB(base);
    db->budget_ms = check ? PLUGIN_SQL_TIMEOUT_MS : 0;
    db->check = check;
    db->check_ud = ud;
}

const hl_db_backend hl_db_pg_backend = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .prepare = pg_prepare,
    .done = pg_done,
    .param_count = pg_param_count,
    .bind_int64 = pg_bind_int64,
    .bind_double = pg_bind_double,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .bind_null = pg_bind_null,
    .bind_error = pg_bind_error,
    .step = pg_step,
    .col_count = pg_col_count,
    .col_name = pg_col_name,
    .col_type = pg_col_type,
    .col_int64 = pg_col_int64,
    .col_double = pg_col_double,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .col_bytes = pg_col_bytes,
    .changes = pg_changes,
    .last_insert_id = pg_last_insert_id,
    .begin = pg_begin,
    .in_tx = pg_in_tx,
    .set_busy_timeout = pg_set_busy_timeout,
    .readonly = pg_readonly,
    .set_policy = pg_set_policy,
    .policy_denial = pg_policy_denial,
    .set_budget = pg_set_budget,
    .sync_ids = pg_sync_ids,
    .after_migration = pg_after_migration,
    .lock = pg_lock,
};
