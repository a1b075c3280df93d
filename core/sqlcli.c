/* `halle sql`: one statement on the instance database or its archive, through core/db.h so that
 * it works the same on SQLite and PostgreSQL. Parameters are bound, never pasted into the SQL;
 * rows come out tab-separated (PostgreSQL's COPY text escapes) or as JSON. */
#include "core/sqlcli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "core/config.h"
#include "core/db.h"
#include "core/utf8.h"

const char *hl_sqlcli_usage =
    "usage: halle sql [-c FILE] [--archive] [--json] SQL [PARAM...]\n"
    "\n"
    "Runs one SQL statement on the instance database (or, with --archive, the archive\n"
    "database), whichever the backend (SQLite or PostgreSQL), binding each PARAM to a '?'\n"
    "placeholder in order. Nothing is migrated first; each statement commits on its own.\n"
    "\n"
    "A PARAM is bound as:\n"
    "  an integer   when it is written as one: 42, -7 (64 bits)\n"
    "  a real       when it is written with a decimal point: 2.5, -0.75\n"
    "  NULL         when it is exactly NULL\n"
    "  text         otherwise; a leading ':' is removed and makes the rest text whatever it\n"
    "               is (':42' is the text 42, ':NULL' the text NULL, '::a' the text :a)\n"
    "\n"
    "Rows are printed with a header line of column names, values separated by tabs and written\n"
    "as in PostgreSQL's COPY text format (\\N for NULL; backslash, tab, newline and carriage\n"
    "return escaped as \\\\, \\t, \\n, \\r; binary values as \\x and hex digits). A statement\n"
    "that returns no rows prints how many rows it changed: 'N rows changed'.\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n"
    "  -a, --archive       run it on the archive database\n"
    "  -j, --json          print a JSON array with one object per row (column name: value;\n"
    "                      a repeated column name gets ':2', ':3'...), or {\"changes\": N} for a\n"
    "                      statement without rows\n"
    "\n"
    "Exit status: 0 done, 1 the statement or the database failed (message on stderr), 2 usage.\n";

enum { P_INT, P_REAL, P_NULL, P_TEXT };

typedef struct param {
    int kind;
    int64_t i;
    double d;
    const char *text;
} param;

static void parse_param(const char *arg, param *p)
{
    memset(p, 0, sizeof *p);
    if (arg[0] == ':') {
        p->kind = P_TEXT;
        p->text = arg + 1;
        return;
    }
    if (!strcmp(arg, "NULL")) {
        p->kind = P_NULL;
        return;
    }
    const char *d = arg + (arg[0] == '-');
    size_t whole = strspn(d, "0123456789");
    char *end;
    if (whole && !d[whole]) {
        errno = 0;
        long long v = strtoll(arg, &end, 10);
        if (!errno && !*end) {
            p->kind = P_INT;
            p->i = (int64_t)v;
            return;
        }
    } else if (whole && d[whole] == '.' && d[whole + 1] &&
               strspn(d + whole + 1, "0123456789") == strlen(d + whole + 1)) {
        errno = 0;
        double v = strtod(arg, &end);
        if (!errno && !*end) {
            p->kind = P_REAL;
            p->d = v;
            return;
        }
    }
    p->kind = P_TEXT;
    p->text = arg;
}

/* The '?' placeholders of sql outside quotes and comments, so that a missing or extra PARAM is
 * an error instead of a silent NULL. */
static int count_placeholders(const char *sql)
{
    int n = 0;
    for (const char *s = sql; *s; s++) {
        if (*s == '\'' || *s == '"' || *s == '`') {
            char q = *s;
            for (s++; *s && !(*s == q && s[1] != q); s++)
                if (*s == q)
                    s++; /* a doubled quote inside */
            if (!*s)
                break;
        } else if (s[0] == '-' && s[1] == '-') {
            s += strcspn(s, "\n");
            if (!*s)
                break;
        } else if (s[0] == '/' && s[1] == '*') {
            const char *e = strstr(s + 2, "*/");
            if (!e)
                break;
            s = e + 1;
        } else if (*s == '?') {
            n++;
        }
    }
    return n;
}

static void print_hex(const unsigned char *p, size_t n)
{
    fputs("\\x", stdout);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
}

static void print_text(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\\': fputs("\\\\", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        default: putchar(s[i]);
        }
    }
}

/* The shortest form that reads back as the same double. */
static void format_double(double v, char *buf, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

static void print_value(hl_stmt *st, int col)
{
    char num[40];
    switch (hl_db_col_type(st, col)) {
    case HL_DB_NULL: fputs("\\N", stdout); break;
    case HL_DB_INTEGER: printf("%" PRId64, hl_db_col_int64(st, col)); break;
    case HL_DB_FLOAT:
        format_double(hl_db_col_double(st, col), num, sizeof num);
        fputs(num, stdout);
        break;
    case HL_DB_BLOB: print_hex(hl_db_col_blob(st, col), hl_db_col_bytes(st, col)); break;
    default: {
        const char *t = hl_db_col_text(st, col);
        print_text(t ? t : "", t ? hl_db_col_bytes(st, col) : 0);
    }
    }
}

/* "\x" and hex digits, for binary values (and text that is not UTF-8) in JSON. */
static json_t *hex_string(const unsigned char *p, size_t n)
{
    char *buf = malloc(2 * n + 3);
    if (!buf)
        return NULL;
    memcpy(buf, "\\x", 2);
    for (size_t i = 0; i < n; i++)
        snprintf(buf + 2 + 2 * i, 3, "%02x", p[i]);
    json_t *v = json_string(buf);
    free(buf);
    return v;
}

static json_t *json_value(hl_stmt *st, int col)
{
    switch (hl_db_col_type(st, col)) {
    case HL_DB_NULL: return json_null();
    case HL_DB_INTEGER: return json_integer((json_int_t)hl_db_col_int64(st, col));
    case HL_DB_FLOAT: return json_real(hl_db_col_double(st, col));
    case HL_DB_BLOB: return hex_string(hl_db_col_blob(st, col), hl_db_col_bytes(st, col));
    default: {
        const char *t = hl_db_col_text(st, col);
        size_t n = t ? hl_db_col_bytes(st, col) : 0;
        if (!t)
            return json_string("");
        return hl_utf8_valid(t, n) ? json_stringn(t, n) : hex_string((const unsigned char *)t, n);
    }
    }
}

/* Column names for JSON keys, a repeated one suffixed ":2", ":3"... (NULL on out of memory). */
static char **json_keys(hl_stmt *st, int ncol)
{
    char **keys = calloc((size_t)ncol, sizeof *keys);
    for (int c = 0; keys && c < ncol; c++) {
        const char *name = hl_db_col_name(st, c);
        name = name ? name : "?";
        int seen = 1;
        for (int k = 0; k < c; k++)
            if (!strcmp(hl_db_col_name(st, k) ? hl_db_col_name(st, k) : "?", name))
                seen++;
        size_t len = strlen(name) + 16;
        if (!(keys[c] = malloc(len))) {
            for (int k = 0; k < c; k++)
                free(keys[k]);
            free(keys);
            return NULL;
        }
        if (seen > 1)
            snprintf(keys[c], len, "%s:%d", name, seen);
        else
            snprintf(keys[c], len, "%s", name);
    }
    return keys;
}

static void free_keys(char **keys, int ncol)
{
    for (int c = 0; keys && c < ncol; c++)
        free(keys[c]);
    free(keys);
}

/* Steps st to the end, printing its rows. */
static int print_rows(hl_stmt *st, int json, hl_err *err)
{
    int ncol = hl_db_col_count(st);
    char **keys = json ? json_keys(st, ncol) : NULL;
    if (json && !keys)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    if (json) {
        fputs("[", stdout);
    } else {
        for (int c = 0; c < ncol; c++) {
            const char *name = hl_db_col_name(st, c);
            if (c)
                putchar('\t');
            print_text(name ? name : "?", name ? strlen(name) : 1);
        }
        putchar('\n');
    }
    int rc, nrows = 0;
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW) {
        if (json) {
            json_t *row = json_object();
            for (int c = 0; row && c < ncol; c++)
                if (json_object_set_new(row, keys[c], json_value(st, c)) != 0) {
                    json_decref(row);
                    row = NULL;
                }
            char *text = row ? json_dumps(row, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            json_decref(row);
            if (!text) {
                rc = hl_err_set(err, HL_ENOMEM, "out of memory");
                break;
            }
            printf("%s\n%s", nrows ? "," : "", text);
            free(text);
        } else {
            for (int c = 0; c < ncol; c++) {
                if (c)
                    putchar('\t');
                print_value(st, c);
            }
            putchar('\n');
        }
        nrows++;
    }
    if (json)
        fputs(nrows ? "\n]\n" : "]\n", stdout);
    free_keys(keys, ncol);
    return rc == HL_DB_DONE ? HL_OK : rc;
}

static void print_changes(int64_t n, int json)
{
    if (json)
        printf("{\"changes\": %" PRId64 "}\n", n);
    else
        printf("%" PRId64 " row%s changed\n", n, n == 1 ? "" : "s");
}

static int bind_params(hl_stmt *st, const param *ps, int n, hl_err *err)
{
    for (int i = 0; i < n; i++) {
        int rc = ps[i].kind == P_INT    ? hl_db_bind_int64(st, i + 1, ps[i].i)
                 : ps[i].kind == P_REAL ? hl_db_bind_double(st, i + 1, ps[i].d)
                 : ps[i].kind == P_NULL ? hl_db_bind_null(st, i + 1)
                                        : hl_db_bind_text(st, i + 1, ps[i].text, strlen(ps[i].text));
        if (rc != HL_OK)
            return hl_err_set(err, HL_EINVAL, "cannot bind parameter %d", i + 1);
    }
    return HL_OK;
}

/* Skips blanks and comments. */
static const char *skip_space(const char *s)
{
    for (;;) {
        s += strspn(s, " \t\r\n");
        if (s[0] == '-' && s[1] == '-')
            s += strcspn(s, "\n");
        else if (s[0] == '/' && s[1] == '*' && strstr(s + 2, "*/"))
            s = strstr(s + 2, "*/") + 2;
        else
            return s;
    }
}

/* A statement that certainly returns no rows: it begins with one of these words and has no
 * RETURNING anywhere. Such a statement goes through hl_db_run, the call of the storage API that
 * tells how many rows changed; anything else is stepped, its rows printed. (Asking a prepared
 * statement for its columns runs it on PostgreSQL, so it cannot be asked first and run by
 * hl_db_run after.) */
static int returns_nothing(const char *sql)
{
    static const char *const words[] = {"INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", NULL};
    const char *s = skip_space(sql);
    size_t len = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");
    int known = 0;
    for (int i = 0; words[i]; i++)
        if (len == strlen(words[i]) && !strncasecmp(s, words[i], len))
            known = 1;
    if (!known)
        return 0;
    for (const char *p = sql; *p; p++)
        if (!strncasecmp(p, "RETURNING", 9))
            return 0;
    return 1;
}

static int run_statement(hl_db *db, const char *sql, const param *ps, int n, int json, hl_err *err)
{
    int rc;
    if (n == 0 && returns_nothing(sql)) {
        rc = hl_db_run(db, err, sql, "");
        if (rc < 0)
            return rc;
        print_changes(rc, json);
        return HL_OK;
    }
    hl_stmt *st = hl_db_prepare(db, sql, err);
    if (!st)
        return err->code ? err->code : HL_ERR;
    rc = bind_params(st, ps, n, err);
    if (rc == HL_OK && hl_db_col_count(st) > 0) {
        rc = print_rows(st, json, err);
    } else if (rc == HL_OK) {
        while ((rc = hl_db_step(st, err)) == HL_DB_ROW)
            ;
        if (rc == HL_DB_DONE) {
            print_changes(hl_db_changes(db), json);
            rc = HL_OK;
        }
    }
    hl_db_done(st);
    return rc;
}

int hl_sqlcli_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"archive", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = "halle.conf";
    int archive = 0, json = 0, c;
    /* '+': stop at the SQL, so that a PARAM such as -7 is not read as an option */
    while ((c = getopt_long(argc, argv, "+c:ajh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'a': archive = 1; break;
        case 'j': json = 1; break;
        case 'h': fputs(hl_sqlcli_usage, stdout); return 0;
        default: fputs(hl_sqlcli_usage, stderr); return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "halle: sql needs a statement\n\n%s", hl_sqlcli_usage);
        return 2;
    }
    const char *sql = argv[optind++];
    int n = argc - optind;
    int want = count_placeholders(sql);
    if (n != want) {
        fprintf(stderr, "halle: sql: the statement has %d placeholder%s (?) but %d parameter%s given\n", want,
                want == 1 ? "" : "s", n, n == 1 ? " was" : "s were");
        return 2;
    }
    param *ps = calloc((size_t)n + 1, sizeof *ps);
    if (!ps) {
        fprintf(stderr, "halle: out of memory\n");
        return 1;
    }
    for (int i = 0; i < n; i++)
        parse_param(argv[optind + i], &ps[i]);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = hl_config_load(path, &err);
    hl_db *db = cfg ? hl_db_open(archive ? cfg->archive_path : cfg->db_path, 0, &err) : NULL;
    int rc = db ? run_statement(db, sql, ps, n, json, &err) : HL_ERR;
    fflush(stdout);
    hl_db_close(db);
    hl_config_free(cfg);
    free(ps);
    if (rc != HL_OK) {
        fprintf(stderr, "halle: sql: %s\n", err.msg[0] ? err.msg : "failed");
        return 1;
    }
    return 0;
}
