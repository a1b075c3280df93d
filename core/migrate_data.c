/* Copying an instance from SQLite to PostgreSQL (see migrate_data.h). The source's own schema
 * says what to copy (its tables, their columns and foreign keys); the target's schema comes
 * from the migrations, never from the source's CREATE statements, so it is what halle makes. */
#include "core/migrate_data.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/db.h"
#include "core/migrate.h"
#include "core/plugin.h"

/* Values bound per INSERT: many rows per statement save round trips to the server, and this
 * stays far below the parameter limits of both backends (SQLite 32766, PostgreSQL 65535). */
#define BATCH_PARAMS 500
#define BATCH_ROWS 100

typedef struct tab {
    const char *name;            /* lower case: PostgreSQL folds the migrations' names so */
    const char **cols;
    size_t ncols;
    unsigned char *money;        /* per column: summed by the checks */
    size_t nmoney;
    const char *pk[16];          /* the primary key's columns: the order rows are copied in */
    int npk;
    const char *self_from;       /* a one-column reference to the table itself, else NULL */
    const char *self_to;
    const char **parents;
    size_t nparents;
    int int_id;                  /* `id` is its integer primary key: the ids are synced */
    int placed;
    int64_t rows, dst_rows;      /* the checks: rows and money sums in source and target */
    int64_t *sums, *dst_sums;
    int checked, ok;
} tab;

typedef struct target_table {
    const char *quoted;          /* "schema"."name" */
    const char *name;
    int64_t rows;
} target_table;

typedef struct copy {
    hl_arena *a;
    FILE *out, *progress;
    int tty;
    const char *label;           /* "main" or "archive", for the output */
    hl_db *src, *dst;
    tab *t;                    /* in copy order */
    size_t n;
    target_table *tt;            /* the target's tables, hl_migrations left out */
    size_t ntt;
    int64_t total, copied;
} copy;

/* Names go into the SQL text (values are always bound): only plain identifiers. */
static int ident_ok(const char *s)
{
    if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return s[0] && strlen(s) <= 63;
}

static char *lower_ident(hl_arena *a, const char *s, const char *what, const char *table, hl_err *err)
{
    if (!ident_ok(s)) {
        hl_err_set(err, HL_EINVAL, "%s%s%s name '%.64s' is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*): "
                   "halle migrate-data cannot copy it", table ? "table " : "", table ? table : "", what, s ? s : "");
        return NULL;
    }
    char *c = hl_arena_strdup(a, s);
    if (!c) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    for (char *p = c; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return c;
}

static int oom(hl_err *err)
{
    return hl_err_set(err, HL_ENOMEM, "out of memory");
}

/* err's message (or the connection's) prefixed with the table's name. */
static int table_err(hl_err *err, int rc, const char *table, hl_db *db)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err && *err->msg ? err->msg : hl_db_errmsg(db));
    return hl_err_set(err, rc < 0 ? rc : HL_ERR, "table %s: %s%s", table, msg,
                      rc == HL_EFOREIGN ? " (a row refers to one missing from the source, or in a cycle the copy "
                                          "cannot order)" : "");
}

/* A target to show: without its password. */
static const char *redact(hl_arena *a, const char *target)
{
    char *r = hl_db_redact(target);
    const char *c = r ? hl_arena_strdup(a, r) : NULL;
    free(r);
    return c ? c : "(the target)";
}

/* ---- the source's schema ----------------------------------------------------------------- */

static int read_columns(hl_db *src, hl_arena *a, tab *t, hl_err *err)
{
    hl_stmt *q = hl_db_query(src, err, "SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid", "s", t->name);
    if (!q)
        return err && err->code ? err->code : HL_ERR;
    size_t cap = 0;
    int rc, id_integer = 0, id_pk = 0;
    while ((rc = hl_db_step(q, err)) == HL_DB_ROW) {
        if (t->ncols == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            t->cols = hl_arena_grow(a, t->cols, cap * sizeof *t->cols, ncap * sizeof *t->cols);
            t->money = hl_arena_grow(a, t->money, cap, ncap);
            if (!t->cols || !t->money) {
                hl_db_done(q);
                return oom(err);
            }
            cap = ncap;
        }
        const char *name = lower_ident(a, hl_db_col_text(q, 0), " column", t->name, err);
        const char *type = hl_db_col_text(q, 1);
        if (!name) {
            hl_db_done(q);
            return HL_EINVAL;
        }
        int pk = (int)hl_db_col_int64(q, 2);
        size_t len = strlen(name);
        int integer = type && (strstr(type, "INT") || strstr(type, "int"));
        t->money[t->ncols] = (len > 6 && !strcmp(name + len - 6, "_cents")) ||
                             (integer && (!strcmp(name, "amount") || !strcmp(name, "price") || !strcmp(name, "total")));
        if (pk > 0 && pk <= 16) {
            t->pk[pk - 1] = name;
            t->npk = pk > t->npk ? pk : t->npk;
        }
        if (!strcmp(name, "id")) {
            id_integer = integer;
            id_pk = pk;
        }
        t->nmoney += t->money[t->ncols];
        t->cols[t->ncols++] = name;
    }
    hl_db_done(q);
    if (rc != HL_DB_DONE)
        return rc;
    if (!t->ncols)
        return hl_err_set(err, HL_EINVAL, "table %s: no columns found", t->name);
    for (int i = 0; i < t->npk; i++)
        if (!t->pk[i])
            t->npk = 0; /* a gap: not a primary key this code understands; copied unordered */
    t->int_id = id_integer && id_pk == 1 && t->npk == 1;
    /* REFERENCES t without a column names the primary key */
    if (t->self_from && !t->self_to)
        t->self_to = t->npk == 1 ? t->pk[0] : NULL;
    if (!t->self_to)
        t->self_from = NULL;
    return HL_OK;
}

static int read_references(hl_db *src, hl_arena *a, tab *t, hl_err *err)
{
    hl_stmt *q = hl_db_query(src, err, "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?) ORDER BY id, seq",
                             "s", t->name);
    if (!q)
        return err && err->code ? err->code : HL_ERR;
    int rc, selfs = 0, self_id = -1, self_cols = 0;
    size_t cap = 0;
    while ((rc = hl_db_step(q, err)) == HL_DB_ROW) {
        int id = (int)hl_db_col_int64(q, 0);
        const char *parent = lower_ident(a, hl_db_col_text(q, 1), " referenced", t->name, err);
        if (!parent) {
            hl_db_done(q);
            return HL_EINVAL;
        }
        if (!strcmp(parent, t->name)) {
            if (id != self_id) {
                selfs++;
                self_id = id;
                self_cols = 0;
                t->self_from = lower_ident(a, hl_db_col_text(q, 2), " column", t->name, err);
                t->self_to = hl_db_col_is_null(q, 3) ? NULL : lower_ident(a, hl_db_col_text(q, 3), " column", t->name, err);
                if (!t->self_from || (!hl_db_col_is_null(q, 3) && !t->self_to)) {
                    hl_db_done(q);
                    return HL_EINVAL;
                }
            }
            self_cols++;
            continue;
        }
        size_t i = 0;
        while (i < t->nparents && strcmp(t->parents[i], parent))
            i++;
        if (i < t->nparents)
            continue;
        if (t->nparents == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            t->parents = hl_arena_grow(a, t->parents, cap * sizeof *t->parents, ncap * sizeof *t->parents);
            if (!t->parents) {
                hl_db_done(q);
                return oom(err);
            }
            cap = ncap;
        }
        t->parents[t->nparents++] = parent;
    }
    hl_db_done(q);
    /* Rows of a table that refers to itself go parents first; that is done for the usual case
     * (one column, e.g. parent_id), the others are copied in primary-key order. */
    if (selfs != 1 || self_cols != 1)
        t->self_from = t->self_to = NULL;
    return rc == HL_DB_DONE ? HL_OK : rc;
}

/* Parents before children (Kahn's algorithm, ties by name so that every run copies in the
 * same order). */
static int order_tables(copy *c, hl_err *err)
{
    tab *sorted = hl_arena_calloc(c->a, c->n ? c->n : 1, sizeof *sorted);
    if (!sorted)
        return oom(err);
    for (size_t k = 0; k < c->n; k++) {
        size_t pick = c->n;
        for (size_t i = 0; i < c->n && pick == c->n; i++) {
            if (c->t[i].placed)
                continue;
            int ready = 1;
            for (size_t p = 0; p < c->t[i].nparents && ready; p++)
                for (size_t j = 0; j < c->n; j++)
                    if (!c->t[j].placed && !strcmp(c->t[j].name, c->t[i].parents[p]))
                        ready = 0;
            if (ready)
                pick = i;
        }
        if (pick == c->n) {
            char *left = hl_arena_strdup(c->a, "");
            for (size_t i = 0; left && i < c->n; i++)
                if (!c->t[i].placed)
                    left = hl_arena_printf(c->a, "%s%s%s", left, *left ? ", " : "", c->t[i].name);
            return hl_err_set(err, HL_EINVAL, "these tables refer to each other in a cycle, no order can copy them: %s",
                              left ? left : "?");
        }
        c->t[pick].placed = 1;
        sorted[k] = c->t[pick];
    }
    c->t = sorted;
    return HL_OK;
}

static int read_source(copy *c, hl_err *err)
{
    hl_stmt *q = hl_db_query(c->src, err,
                             "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite!_%' ESCAPE '!' "
                             "AND name <> 'hl_migrations' ORDER BY name",
                             "");
    if (!q)
        return err && err->code ? err->code : HL_ERR;
    size_t cap = 0;
    int rc;
    while ((rc = hl_db_step(q, err)) == HL_DB_ROW) {
        if (c->n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            c->t = hl_arena_grow(c->a, c->t, cap * sizeof *c->t, ncap * sizeof *c->t);
            if (!c->t) {
                hl_db_done(q);
                return oom(err);
            }
            cap = ncap;
        }
        tab *t = &c->t[c->n];
        memset(t, 0, sizeof *t);
        if (!(t->name = lower_ident(c->a, hl_db_col_text(q, 0), "", NULL, err))) {
            hl_db_done(q);
            return HL_EINVAL;
        }
        c->n++;
    }
    hl_db_done(q);
    if (rc != HL_DB_DONE)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        if ((rc = read_references(c->src, c->a, &c->t[i], err)) != HL_OK ||
            (rc = read_columns(c->src, c->a, &c->t[i], err)) != HL_OK)
            return rc;
        c->t[i].sums = hl_arena_calloc(c->a, c->t[i].nmoney + 1, sizeof(int64_t));
        c->t[i].dst_sums = hl_arena_calloc(c->a, c->t[i].nmoney + 1, sizeof(int64_t));
        if (!c->t[i].sums || !c->t[i].dst_sums)
            return oom(err);
    }
    return order_tables(c, err);
}

/* ---- the target's tables ---------------------------------------------------------------- */

static int list_target(hl_db *dst, hl_arena *a, target_table **out, size_t *n, hl_err *err)
{
    int pg = !strcmp(hl_db_backend_name(dst), "postgresql");
    hl_stmt *q = hl_db_query(dst, err,
                             pg ? "SELECT table_schema, table_name FROM information_schema.tables "
                                  "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema') "
                                  "ORDER BY table_schema, table_name"
                                : "SELECT 'main', name FROM sqlite_master WHERE type = 'table' "
                                  "AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name",
                             "");
    if (!q)
        return err && err->code ? err->code : HL_ERR;
    size_t cap = 0;
    int rc;
    *out = NULL;
    *n = 0;
    while ((rc = hl_db_step(q, err)) == HL_DB_ROW) {
        const char *schema = hl_db_col_text(q, 0), *name = hl_db_col_text(q, 1);
        if (!ident_ok(schema) || !ident_ok(name)) {
            hl_err_set(err, HL_EINVAL, "the target holds a table named '%.64s.%.64s', not a plain identifier: "
                       "halle migrate-data will not touch it", schema ? schema : "", name ? name : "");
            hl_db_done(q);
            return HL_EINVAL;
        }
        if (!strcmp(name, "hl_migrations"))
            continue;
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 32;
            *out = hl_arena_grow(a, *out, cap * sizeof **out, ncap * sizeof **out);
            if (!*out) {
                hl_db_done(q);
                return oom(err);
            }
            cap = ncap;
        }
        target_table *t = &(*out)[(*n)++];
        t->quoted = hl_arena_printf(a, "\"%s\".\"%s\"", schema, name);
        t->name = hl_arena_strdup(a, name);
        t->rows = 0;
        if (!t->quoted || !t->name) {
            hl_db_done(q);
            return oom(err);
        }
    }
    hl_db_done(q);
    return rc == HL_DB_DONE ? HL_OK : rc;
}

static int count_rows(hl_db *db, hl_arena *a, const char *quoted, int64_t *rows, hl_err *err)
{
    char *sql = hl_arena_printf(a, "SELECT COUNT(*) FROM %s", quoted);
    hl_stmt *q = sql ? hl_db_query(db, err, sql, "") : NULL;
    if (!q)
        return sql ? (err && err->code ? err->code : HL_ERR) : oom(err);
    int rc = hl_db_step(q, err);
    *rows = rc == HL_DB_ROW ? hl_db_col_int64(q, 0) : 0;
    hl_db_done(q);
    return rc == HL_DB_ROW ? HL_OK : rc < 0 ? rc : hl_err_set(err, HL_ERR, "%s: no count", quoted);
}

/* The refusal of a target that holds data, before anything is written to it. A target that
 * does not exist yet (a SQLite file) is empty. */
static int check_empty(const char *target, const char *shown, int force, hl_arena *a, FILE *out, hl_err *err)
{
    if (!hl_db_is_url(target) && access(target, F_OK) != 0)
        return HL_OK;
    hl_db *db = hl_db_open(target, 0, err);
    if (!db)
        return err && err->code ? err->code : HL_ERR;
    target_table *tt;
    size_t n;
    int rc = list_target(db, a, &tt, &n, err);
    size_t full = 0;
    int64_t rows = 0;
    const char *first = NULL;
    for (size_t i = 0; rc == HL_OK && i < n; i++) {
        rc = count_rows(db, a, tt[i].quoted, &tt[i].rows, err);
        if (rc == HL_OK && tt[i].rows > 0) {
            if (!first)
                first = hl_arena_printf(a, "%s has %lld row(s)", tt[i].name, (long long)tt[i].rows);
            full++;
            rows += tt[i].rows;
        }
    }
    hl_db_close(db);
    if (rc != HL_OK || !full)
        return rc;
    if (!force)
        return hl_err_set(err, HL_EINVAL,
                          "the target %s is not empty (table %s; %zu table(s) with rows): halle migrate-data copies "
                          "into an empty database only. Give --force to empty its tables first (their rows are "
                          "deleted).",
                          shown, first ? first : "?", full);
    fprintf(out, "halle: --force: %zu table(s) of %s held %lld row(s) in all; they are emptied before the copy\n",
            full, shown, (long long)rows);
    return HL_OK;
}

/* ---- migrations ------------------------------------------------------------------------- */

typedef struct version {
    const char *component;
    int version;
} version;

static int read_versions(hl_db *db, hl_arena *a, version **out, size_t *n, hl_err *err)
{
    hl_stmt *q = hl_db_query(db, err, "SELECT component, MAX(version) FROM hl_migrations GROUP BY component ORDER BY component", "");
    if (!q)
        return err && err->code ? err->code : HL_ERR;
    size_t cap = 0;
    int rc;
    *out = NULL;
    *n = 0;
    while ((rc = hl_db_step(q, err)) == HL_DB_ROW) {
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            if (!(*out = hl_arena_grow(a, *out, cap * sizeof **out, ncap * sizeof **out))) {
                hl_db_done(q);
                return oom(err);
            }
            cap = ncap;
        }
        (*out)[*n].component = hl_arena_strdup(a, hl_db_col_text(q, 0) ? hl_db_col_text(q, 0) : "");
        (*out)[*n].version = (int)hl_db_col_int64(q, 1);
        if (!(*out)[(*n)++].component) {
            hl_db_done(q);
            return oom(err);
        }
    }
    hl_db_done(q);
    return rc == HL_DB_DONE ? HL_OK : rc;
}

/* Every component of the source's schema at the same version in the target: the copy would
 * otherwise put rows into tables of another shape. */
static int same_versions(hl_db *src, hl_db *dst, hl_arena *a, const char *shown, hl_err *err)
{
    version *sv, *dv;
    size_t sn, dn;
    int rc = read_versions(src, a, &sv, &sn, err);
    if (rc == HL_OK)
        rc = read_versions(dst, a, &dv, &dn, err);
    for (size_t i = 0; rc == HL_OK && i < sn; i++) {
        int have = 0;
        for (size_t j = 0; j < dn; j++)
            if (!strcmp(dv[j].component, sv[i].component))
                have = dv[j].version;
        if (have != sv[i].version)
            rc = hl_err_set(err, HL_EINVAL,
                            "the schema of %s is at version %d in the source but %d in the target %s after its "
                            "migrations: the copy needs the same versions (run `halle migrate` on the source; for "
                            "a disabled plugin, enable it, migrate, and disable it again)",
                            sv[i].component, sv[i].version, have, shown);
    }
    return rc;
}

/* The plugins whose tables the source holds (enabled or not: a disabled plugin's data is kept),
 * created in the target by their own migrations. */
static int migrate_plugins(const hl_config *cfg, const hl_config *tcfg, hl_db *src, hl_db *dst, hl_arena *a,
                           hl_err *err)
{
    version *sv, *dv;
    size_t sn, dn;
    int rc = read_versions(src, a, &sv, &sn, err);
    if (rc == HL_OK)
        rc = read_versions(dst, a, &dv, &dn, err);
    if (rc != HL_OK)
        return rc;
    hl_plugin_list l;
    if ((rc = hl_plugin_discover(cfg, src, &l, err)) != HL_OK)
        return rc;
    for (size_t i = 0; rc == HL_OK && i < sn; i++) {
        if (!strcmp(sv[i].component, "core"))
            continue;
        int have = 0;
        for (size_t j = 0; j < dn; j++)
            if (!strcmp(dv[j].component, sv[i].component))
                have = dv[j].version;
        if (have >= sv[i].version)
            continue;
        const hl_plugin_info *p = hl_plugin_find(&l, sv[i].component);
        if (!p)
            rc = hl_err_set(err, HL_EINVAL,
                            "the source holds the tables of a plugin %s (schema version %d), but no plugin of that "
                            "name is installed: install it (see plugin_dirs) so that its tables can be made in the target",
                            sv[i].component, sv[i].version);
        else if (p->error)
            rc = hl_err_set(err, HL_EINVAL, "plugin %s: %s: its tables cannot be made in the target", p->name, p->error);
        else {
            hl_err e;
            hl_err_clear(&e);
            if ((rc = hl_plugin_migrate(tcfg, dst, p, &e)) != HL_OK)
                hl_err_set(err, rc, "plugin %s, migrating the target: %s", p->name, e.msg);
        }
    }
    hl_plugin_list_free(&l);
    return rc;
}

/* ---- the copy --------------------------------------------------------------------------- */

static void show_progress(copy *c, const tab *t, int64_t done, int last)
{
    if (!c->tty) {
        if (last)
            fprintf(c->progress, "%s: %s: %lld row(s) copied (%lld/%lld)\n", c->label, t->name, (long long)done,
                    (long long)c->copied, (long long)c->total);
        return;
    }
    int width = 30;
    int fill = c->total > 0 ? (int)((double)c->copied / (double)c->total * width) : width;
    char bar[64];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(width - fill));
    bar[width] = '\0';
    fprintf(c->progress, "\r%-8s %-32.32s %9lld/%-9lld [%s] %lld/%lld\033[K%s", c->label, t->name, (long long)done,
            (long long)t->rows, bar, (long long)c->copied, (long long)c->total, last ? "\n" : "");
    fflush(c->progress);
}

typedef struct val {
    int type;
    int64_t i;
    double d;
    const void *p;
    size_t len;
} val;

static const char *insert_sql(hl_arena *a, const tab *t, size_t rows)
{
    char *cols = hl_arena_strdup(a, ""), *one = hl_arena_strdup(a, "");
    for (size_t j = 0; cols && one && j < t->ncols; j++) {
        cols = hl_arena_printf(a, "%s%s\"%s\"", cols, j ? ", " : "", t->cols[j]);
        one = hl_arena_printf(a, "%s%s?", one, j ? ", " : "");
    }
    char *sql = cols && one ? hl_arena_printf(a, "INSERT INTO \"%s\" (%s) VALUES ", t->name, cols) : NULL;
    for (size_t r = 0; sql && r < rows; r++)
        sql = hl_arena_printf(a, "%s%s(%s)", sql, r ? ", " : "", one);
    return sql;
}

static int flush(copy *c, const tab *t, const char *sql, const val *v, size_t rows, hl_err *err)
{
    hl_stmt *st = hl_db_prepare(c->dst, sql, err);
    if (!st)
        return table_err(err, err ? err->code : HL_ERR, t->name, c->dst);
    int rc = HL_OK;
    for (size_t k = 0; rc == HL_OK && k < rows * t->ncols; k++) {
        int idx = (int)k + 1;
        switch (v[k].type) {
        case HL_DB_INTEGER: rc = hl_db_bind_int64(st, idx, v[k].i); break;
        case HL_DB_FLOAT: rc = hl_db_bind_double(st, idx, v[k].d); break;
        case HL_DB_TEXT: rc = hl_db_bind_text(st, idx, v[k].p ? v[k].p : "", v[k].len); break;
        case HL_DB_BLOB: rc = hl_db_bind_blob(st, idx, v[k].p, v[k].len); break;
        default: rc = hl_db_bind_null(st, idx); break;
        }
    }
    if (rc == HL_OK)
        rc = hl_db_step(st, err);
    hl_db_done(st);
    return rc == HL_DB_DONE ? HL_OK : table_err(err, rc, t->name, c->dst);
}

static const char *select_sql(hl_arena *a, const tab *t)
{
    char *cols = hl_arena_strdup(a, "");
    for (size_t j = 0; cols && j < t->ncols; j++)
        cols = hl_arena_printf(a, "%s%ss.\"%s\"", cols, j ? ", " : "", t->cols[j]);
    char *order = hl_arena_strdup(a, "");
    for (int i = 0; order && i < t->npk; i++)
        order = hl_arena_printf(a, "%s%ss.\"%s\"", order, i ? ", " : "", t->pk[i]);
    if (!cols || !order)
        return NULL;
    if (!t->self_from)
        return hl_arena_printf(a, "SELECT %s FROM \"%s\" s%s%s", cols, t->name, *order ? " ORDER BY " : "", order);
    /* Depth in the tree the table draws (roots first). A row in a cycle, or pointing to a row
     * that does not exist, has no depth and is not copied: the row count check then fails
     * naming the table, rather than the copy inventing an order. */
    return hl_arena_printf(a,
                           "WITH RECURSIVE hl_depth(k, d) AS (SELECT \"%s\", 0 FROM \"%s\" WHERE \"%s\" IS NULL OR \"%s\" = \"%s\" "
                           "UNION ALL SELECT c.\"%s\", p.d + 1 FROM \"%s\" c JOIN hl_depth p ON c.\"%s\" = p.k "
                           "WHERE c.\"%s\" <> c.\"%s\") "
                           "SELECT %s FROM \"%s\" s JOIN hl_depth ON hl_depth.k = s.\"%s\" ORDER BY hl_depth.d%s%s",
                           t->self_to, t->name, t->self_from, t->self_from, t->self_to, t->self_to, t->name,
                           t->self_from, t->self_from, t->self_to, cols, t->name, t->self_to, *order ? ", " : "",
                           order);
}

static int copy_table(copy *c, tab *t, hl_err *err)
{
    size_t per = BATCH_PARAMS / t->ncols;
    per = per < 1 ? 1 : per > BATCH_ROWS ? BATCH_ROWS : per;
    const char *sel = select_sql(c->a, t), *full = insert_sql(c->a, t, per);
    val *v = hl_arena_calloc(c->a, per * t->ncols, sizeof *v);
    hl_arena *batch = hl_arena_new(64 * 1024);
    if (!sel || !full || !v || !batch) {
        hl_arena_free(batch);
        return oom(err);
    }
    hl_stmt *q = hl_db_prepare(c->src, sel, err);
    if (!q) {
        hl_arena_free(batch);
        return err && err->code ? err->code : HL_ERR;
    }
    size_t rows = 0;
    int64_t done = 0;
    int rc;
    show_progress(c, t, 0, 0);
    while ((rc = hl_db_step(q, err)) == HL_DB_ROW) {
        for (size_t j = 0; j < t->ncols; j++) {
            val *x = &v[rows * t->ncols + j];
            int col = (int)j;
            x->type = hl_db_col_type(q, col);
            if (x->type == HL_DB_INTEGER)
                x->i = hl_db_col_int64(q, col);
            else if (x->type == HL_DB_FLOAT)
                x->d = hl_db_col_double(q, col);
            else if (x->type == HL_DB_TEXT || x->type == HL_DB_BLOB) {
                const void *p = x->type == HL_DB_TEXT ? (const void *)hl_db_col_text(q, col) : hl_db_col_blob(q, col);
                x->len = hl_db_col_bytes(q, col);
                x->p = x->len ? hl_arena_strndup(batch, p, x->len) : "";
                if (!x->p) {
                    rc = oom(err);
                    break;
                }
            }
        }
        if (rc < 0)
            break;
        if (++rows == per) {
            if ((rc = flush(c, t, full, v, rows, err)) != HL_OK)
                break;
            done += (int64_t)rows;
            c->copied += (int64_t)rows;
            rows = 0;
            hl_arena_reset(batch);
            show_progress(c, t, done, 0);
        }
    }
    hl_db_done(q);
    if (rc == HL_DB_DONE && rows) {
        const char *last = insert_sql(c->a, t, rows);
        rc = last ? flush(c, t, last, v, rows, err) : oom(err);
        done += (int64_t)rows;
        c->copied += (int64_t)rows;
    }
    hl_arena_free(batch);
    if (rc != HL_DB_DONE && rc != HL_OK)
        return rc;
    show_progress(c, t, done, 1);
    if (t->int_id && (rc = hl_db_sync_ids(c->dst, t->name, err)) != HL_OK)
        return rc;
    return HL_OK;
}

/* Rows and money sums of t in db, into rows and sums (one per money column). */
static int measure(hl_db *db, hl_arena *a, const tab *t, int64_t *rows, int64_t *sums, hl_err *err)
{
    char *sql = hl_arena_strdup(a, "SELECT COUNT(*)");
    for (size_t j = 0; sql && j < t->ncols; j++)
        if (t->money[j])
            sql = hl_arena_printf(a, "%s, CAST(COALESCE(SUM(\"%s\"), 0) AS BIGINT)", sql, t->cols[j]);
    sql = sql ? hl_arena_printf(a, "%s FROM \"%s\"", sql, t->name) : NULL;
    if (!sql)
        return oom(err);
    hl_stmt *q = hl_db_query(db, err, sql, "");
    if (!q)
        return err && err->code ? err->code : HL_ERR;
    int rc = hl_db_step(q, err);
    if (rc == HL_DB_ROW) {
        *rows = hl_db_col_int64(q, 0);
        for (int k = 1; k < hl_db_col_count(q); k++)
            sums[k - 1] = hl_db_col_int64(q, k);
        rc = HL_OK;
    } else if (rc >= 0) {
        rc = hl_err_set(err, HL_ERR, "table %s: no count", t->name);
    }
    hl_db_done(q);
    return rc;
}

static int empty_target(copy *c, hl_err *err)
{
    if (!c->ntt)
        return HL_OK;
    int rc;
    if (!strcmp(hl_db_backend_name(c->dst), "postgresql")) {
        /* One TRUNCATE for all: no order to find among the foreign keys. */
        char *sql = hl_arena_strdup(c->a, "TRUNCATE TABLE ");
        for (size_t i = 0; sql && i < c->ntt; i++)
            sql = hl_arena_printf(c->a, "%s%s%s", sql, i ? ", " : "", c->tt[i].quoted);
        sql = sql ? hl_arena_printf(c->a, "%s RESTART IDENTITY", sql) : NULL;
        rc = sql ? hl_db_run(c->dst, err, sql, "") : oom(err);
        return rc < 0 ? rc : HL_OK;
    }
    /* SQLite checks deferred foreign keys at the commit, when every table is empty. */
    if ((rc = hl_db_run(c->dst, err, "PRAGMA defer_foreign_keys = ON", "")) < 0)
        return rc;
    for (size_t i = 0; i < c->ntt; i++) {
        char *sql = hl_arena_printf(c->a, "DELETE FROM %s", c->tt[i].quoted);
        if ((rc = sql ? hl_db_run(c->dst, err, sql, "") : oom(err)) < 0)
            return rc;
    }
    rc = hl_db_run(c->dst, err, "PRAGMA defer_foreign_keys = OFF", "");
    return rc < 0 ? rc : HL_OK;
}

/* The whole copy of one database, in the target's transaction: the checks run before the
 * commit, so a target either holds a checked copy or stays as it was. */
static int copy_tx(hl_db *dst, void *ud, hl_err *err)
{
    copy *c = ud;
    (void)dst;
    c->copied = 0;
    int rc = empty_target(c, err);
    for (size_t i = 0; rc == HL_OK && i < c->n; i++)
        rc = copy_table(c, &c->t[i], err);
    if (rc != HL_OK)
        return rc;
    char *bad = hl_arena_strdup(c->a, "");
    for (size_t i = 0; rc == HL_OK && i < c->n; i++) {
        tab *t = &c->t[i];
        if ((rc = measure(c->dst, c->a, t, &t->dst_rows, t->dst_sums, err)) != HL_OK)
            break;
        t->checked = 1;
        t->ok = t->dst_rows == t->rows;
        for (size_t k = 0; k < t->nmoney; k++)
            if (t->sums[k] != t->dst_sums[k])
                t->ok = 0;
        if (!t->ok && bad)
            bad = hl_arena_printf(c->a, "%s%s%s", bad, *bad ? ", " : "", t->name);
    }
    if (rc == HL_OK && (!bad || *bad))
        rc = hl_err_set(err, HL_ECONFLICT,
                        "the %s database's copy differs from the source in: %s (nothing was committed to the target)",
                        c->label, bad ? bad : "?");
    return rc;
}

static void print_checks(const copy *c, const char *from, const char *to)
{
    fprintf(c->out, "\n%s database: %s -> %s\n", c->label, from, to);
    fprintf(c->out, "%-32s %12s %12s  %-6s %s\n", "TABLE", "SOURCE ROWS", "TARGET ROWS", "CHECK", "MONEY (SOURCE / TARGET)");
    for (size_t i = 0; i < c->n; i++) {
        const tab *t = &c->t[i];
        fprintf(c->out, "%-32s %12lld %12lld  %-6s", t->name, (long long)t->rows, (long long)t->dst_rows,
                !t->checked ? "-" : t->ok ? "ok" : "DIFFERS");
        size_t k = 0;
        for (size_t j = 0; j < t->ncols; j++)
            if (t->money[j]) {
                fprintf(c->out, " %s %lld / %lld", t->cols[j], (long long)t->sums[k], (long long)t->dst_sums[k]);
                k++;
            }
        fputc('\n', c->out);
    }
}

static int copy_database(copy *c, const char *source, const char *target, const hl_config *cfg,
                         const hl_config *tcfg, int plugins, hl_err *err)
{
    const char *shown = redact(c->a, target);
    c->src = hl_db_open(source, 0, err);
    c->dst = c->src ? hl_db_open(target, 0, err) : NULL;
    int rc = c->dst ? HL_OK : (err && err->code ? err->code : HL_ERR);
    if (rc == HL_OK && plugins)
        rc = migrate_plugins(cfg, tcfg, c->src, c->dst, c->a, err);
    if (rc == HL_OK)
        rc = same_versions(c->src, c->dst, c->a, shown, err);
    /* The source's read transaction: one snapshot for the counts, the copy and the checks. */
    if (rc == HL_OK)
        rc = hl_db_begin(c->src, err);
    int began = rc == HL_OK;
    if (rc == HL_OK)
        rc = read_source(c, err);
    if (rc == HL_OK)
        rc = list_target(c->dst, c->a, &c->tt, &c->ntt, err);
    for (size_t i = 0; rc == HL_OK && i < c->n; i++) {
        size_t j = 0;
        while (j < c->ntt && strcmp(c->tt[j].name, c->t[i].name))
            j++;
        if (j == c->ntt)
            rc = hl_err_set(err, HL_EINVAL,
                            "table %s of the source is not in the target after its migrations (made outside the "
                            "migrations?): halle migrate-data copies only what the migrations create",
                            c->t[i].name);
    }
    c->total = 0;
    for (size_t i = 0; rc == HL_OK && i < c->n; i++) {
        tab *t = &c->t[i];
        rc = measure(c->src, c->a, t, &t->rows, t->sums, err);
        c->total += t->rows;
    }
    if (rc == HL_OK) {
        rc = hl_db_tx_durable(c->dst, copy_tx, c, err);
        if (rc == HL_OK || rc == HL_ECONFLICT)
            print_checks(c, source, shown);
    }
    if (began)
        hl_db_rollback(c->src);
    hl_db_close(c->dst);
    hl_db_close(c->src);
    c->src = c->dst = NULL;
    return rc;
}

/* ---- the command ------------------------------------------------------------------------ */

static int same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    return realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

static int check_targets(const hl_config *cfg, const char *to, const char *archive_to, hl_err *err)
{
    if (!to || !*to)
        return hl_err_set(err, HL_EINVAL, "--to is needed: the PostgreSQL database to copy into (postgresql://...)");
    if (!archive_to && hl_db_is_url(to))
        return hl_err_set(err, HL_EINVAL, "--to: the URI must name the database (postgresql://HOST/NAME)");
    if (!archive_to)
        return hl_err_set(err, HL_EINVAL, "--archive-to is needed when --to is not a postgresql:// URI");
    if (!strcmp(to, archive_to) || (!hl_db_is_url(to) && same_file(to, archive_to)))
        return hl_err_set(err, HL_EINVAL, "the archive needs its own database: --to and --archive-to are the same");
    const char *targets[2] = {to, archive_to};
    for (int i = 0; i < 2; i++)
        if (!hl_db_is_url(targets[i]) && (same_file(targets[i], cfg->db_path) || same_file(targets[i], cfg->archive_path)))
            return hl_err_set(err, HL_EINVAL, "%s is one of the instance's own databases: give another target", targets[i]);
    return HL_OK;
}

static int run(const hl_config *cfg, const hl_migrate_data_opts *o, const char *archive_to, FILE *out, FILE *progress,
               hl_arena *a, hl_err *err)
{
    if (!cfg->path)
        return hl_err_set(err, HL_EINVAL, "migrate-data needs the instance's halle.conf");
    if (hl_db_is_url(cfg->db_path))
        return hl_err_set(err, HL_EINVAL, "this instance is already on PostgreSQL (database = %s): "
                          "halle migrate-data copies from SQLite", redact(a, cfg->db_path));
    int rc = check_targets(cfg, o->to, archive_to, err);
    if (rc != HL_OK)
        return rc;
    /* Bring the source to this halle's schema first, as every command does, so that the
     * target's migrations end at the same versions. */
    if ((rc = hl_migrate_instance(cfg, NULL, NULL, err)) != HL_OK)
        return rc;
    const char *shown = redact(a, o->to), *shown_archive = redact(a, archive_to);
    if ((rc = check_empty(o->to, shown, o->force, a, out, err)) != HL_OK ||
        (rc = check_empty(archive_to, shown_archive, o->force, a, out, err)) != HL_OK)
        return rc;
    /* The target's configuration: the instance's, with the target databases. */
    hl_config *tcfg = hl_config_load(cfg->path, err);
    if (!tcfg)
        return err && err->code ? err->code : HL_ERR;
    if ((rc = hl_config_set(tcfg, "database", o->to, err)) == HL_OK &&
        (rc = hl_config_set(tcfg, "archive_database", archive_to, err)) == HL_OK)
        rc = hl_migrate_instance(tcfg, NULL, NULL, err);
    copy c = {.a = a, .out = out, .progress = progress, .tty = isatty(fileno(progress)), .label = "main"};
    if (rc == HL_OK)
        rc = copy_database(&c, cfg->db_path, tcfg->db_path, cfg, tcfg, 1, err);
    copy ca = {.a = a, .out = out, .progress = progress, .tty = c.tty, .label = "archive"};
    if (rc == HL_OK)
        rc = copy_database(&ca, cfg->archive_path, tcfg->archive_path, cfg, tcfg, 0, err);
    if (rc == HL_OK) {
        fprintf(out,
                "\nhalle: the instance is copied and checked (%lld + %lld rows); its SQLite files are left as they "
                "were.\nTo serve it from the copy, set in %s:\n"
                "  database = %s\n  archive_database = %s\nthen start halle serve.\n",
                (long long)c.total, (long long)ca.total, cfg->path ? cfg->path : "halle.conf", o->to, archive_to);
    }
    hl_config_free(tcfg);
    return rc;
}

/* A file target as the command line meant it (relative to the current folder), where the
 * configuration would take it relative to halle.conf's. */
static const char *absolute(hl_arena *a, const char *target)
{
    char cwd[PATH_MAX];
    if (!target || hl_db_is_url(target) || target[0] == '/' || !getcwd(cwd, sizeof cwd))
        return target;
    return hl_arena_printf(a, "%s/%s", cwd, target);
}

int hl_migrate_data(const hl_config *cfg, const hl_migrate_data_opts *opts, hl_err *err)
{
    if (!cfg || !opts)
        return hl_err_set(err, HL_EINVAL, "migrate-data: NULL argument");
    hl_arena *a = hl_arena_new(64 * 1024);
    hl_migrate_data_opts o = *opts;
    char *derived = NULL;
    if (!o.archive_to && hl_db_is_url(o.to) && hl_config_archive_url(o.to, &derived) == HL_ENOMEM) {
        hl_arena_free(a);
        return oom(err);
    }
    o.to = a ? absolute(a, o.to) : NULL;
    o.archive_to = a ? absolute(a, o.archive_to ? o.archive_to : derived) : NULL;
    int rc = a && (o.to || !opts->to) ? run(cfg, &o, o.archive_to, o.out ? o.out : stdout, o.progress ? o.progress : stderr, a, err)
                                      : oom(err);
    free(derived);
    hl_arena_free(a);
    return rc;
}
