/* CSV import of products (see csvimport.h): libcsv splits fields and records; this file finds
 * the separator and the encoding, maps the header, and checks every line so that the report
 * names each wrong line with what is wrong, before the caller writes anything. */
#include "plugins/market/csvimport.h"

#include <csv.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/market/market.h"

#define POOL_BLOCK 65536
#define FOLD_MAX 256
#define SHOWN_MAX 40   /* bytes of a wrong value quoted back in a message */

struct mk_csv_block {
    mk_csv_block *next;
    size_t used, size;
    char data[];
};

static int fail(mk_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(mk_err *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* A report line in the page's language when the caller set imp->req (the web import), in
 * French otherwise (the command line, the unit tests). format_arg: the compiler checks the
 * arguments against the msgid's conversions, which every translation keeps. */
static const char *tr(const mk_csv_import *imp, const char *msgid) __attribute__((format_arg(2)));
static const char *tr(const mk_csv_import *imp, const char *msgid)
{
    return imp && imp->req && mk_api ? mk_api->tr(imp->req, msgid) : msgid;
}

/* ---- text helpers ------------------------------------------------------------------------ */

/* The SDK's validator (api->text_valid) reads a string: data is a buffer of len bytes without
 * NUL (checked before), so a terminated copy is checked. Control characters other than
 * newlines and tabs make it "not UTF-8" too: such a file is no spreadsheet's CSV. */
static int text_is_utf8(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (!c)
        return 0;
    memcpy(c, s, n);
    c[n] = '\0';
    int ok = mk_api->text_valid(c, n, 1) >= 0;
    free(c);
    return ok;
}

/* Blanks: ASCII ones, no-break space (C2 A0) and narrow no-break space (E2 80 AF), which
 * spreadsheets put in numbers; returns their length or 0. */
static size_t blank_len(const char *p)
{
    if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        return 1;
    if ((unsigned char)p[0] == 0xc2 && (unsigned char)p[1] == 0xa0)
        return 2;
    if ((unsigned char)p[0] == 0xe2 && (unsigned char)p[1] == 0x80 && (unsigned char)p[2] == 0xaf)
        return 3;
    return 0;
}

/* ---- field parsers ------------------------------------------------------------------------- */

static const struct {
    const char *word;
    const char *unit;
} units[] = {
    {"piece", "piece"}, {"pieces", "piece"}, {"pc", "piece"}, {"pcs", "piece"}, {"unite", "piece"}, {"unites", "piece"},
    {"u", "piece"}, {"kg", "kg"}, {"kilo", "kg"}, {"kilos", "kg"}, {"kilogramme", "kg"}, {"kilogrammes", "kg"},
    {"g", "g"}, {"gr", "g"}, {"gramme", "g"}, {"grammes", "g"}, {"l", "l"}, {"litre", "l"}, {"litres", "l"},
    {"ml", "ml"}, {"millilitre", "ml"}, {"millilitres", "ml"}, {"bulk", "bulk"}, {"vrac", "bulk"},
};

const char *mk_unit_parse(const char *s)
{
    char f[FOLD_MAX];
    mk_fold(s, f, sizeof f);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcmp(f, units[i].word))
            return units[i].unit;
    return NULL;
}

const char *mk_unit_label(const char *unit)
{
    if (!unit)
        return "";
    if (!strcmp(unit, "piece"))
        return N_("pièce");
    if (!strcmp(unit, "bulk"))
        return N_("vrac");
    return unit;
}

int mk_decimal_parse(const char *s, double *out)
{
    if (!s)
        return -1;
    long long whole = 0, frac = 0;
    int digits = 0, fdigits = 0, in_frac = 0;
    for (const char *p = s; *p;) {
        unsigned char c = (unsigned char)*p;
        size_t b;
        if (c >= '0' && c <= '9') {
            if (in_frac) {
                if (++fdigits > 3)
                    return -1;
                frac = frac * 10 + (c - '0');
            } else {
                if (++digits > 7)
                    return -1;
                whole = whole * 10 + (c - '0');
            }
            p++;
        } else if ((c == ',' || c == '.') && !in_frac && digits) {
            in_frac = 1;
            p++;
        } else if ((b = blank_len(p))) {
            p += b;
        } else {
            return -1;
        }
    }
    if (!digits)
        return -1;
    double v = (double)whole + (double)frac / (fdigits == 3 ? 1000.0 : fdigits == 2 ? 100.0 : 10.0);
    if (v > 1e6)
        return -1;
    *out = v;
    return 0;
}

void mk_decimal_format(double v, char *out, size_t len)
{
    if (!len)
        return;
    if (!isfinite(v) || v < 0 || v > 1e9)
        v = 0;
    snprintf(out, len, "%.3f", v);
    char *dot = strchr(out, '.');
    if (!dot)
        return;
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '0')
        out[--n] = '\0';
    if (out[n - 1] == '.')
        out[n - 1] = '\0';
    else
        *dot = ',';
}

void mk_price_format(long long cents, char *out, size_t len)
{
    if (cents < 0)
        cents = 0;
    snprintf(out, len, "%lld,%02lld", cents / 100, cents % 100);
}

void mk_vat_format(int bp, char *out, size_t len)
{
    if (bp < 0)
        bp = 0;
    if (bp % 100 == 0)
        snprintf(out, len, "%d", bp / 100);
    else if (bp % 10 == 0)
        snprintf(out, len, "%d,%d", bp / 100, bp % 100 / 10);
    else
        snprintf(out, len, "%d,%02d", bp / 100, bp % 100);
}

int mk_lang_is_english(const char *lang)
{
    return lang && lang[0] == 'e' && lang[1] == 'n' && (!lang[2] || lang[2] == '-' || lang[2] == '_');
}

/* Display formats are the SDK's (api->format_price, format_number): the same rules as the
 * core's pages, thousands separated, the symbol held to its amount by a no-break space. */
void mk_price_text(const char *lang, long long cents, char *out, size_t len)
{
    if (!len)
        return;
    if (cents < 0)
        cents = 0;
    if (mk_api->format_price(lang, (int64_t)cents, "EUR", out, len) != HALLE_OK)
        out[0] = '\0';
}

/* Up to 3 decimals, as many as the value has: 2.5 -> "2,5", 3 -> "3". */
static int decimals_of(double v)
{
    long long m = (long long)(v * 1000 + 0.5); /* v >= 0 */
    return m % 1000 == 0 ? 0 : m % 100 == 0 ? 1 : m % 10 == 0 ? 2 : 3;
}

void mk_decimal_text(const char *lang, double v, char *out, size_t len)
{
    if (!len)
        return;
    if (!isfinite(v) || v < 0 || v > 1e9)
        v = 0;
    if (mk_api->format_number(lang, v, decimals_of(v), out, len) != HALLE_OK)
        out[0] = '\0';
}

void mk_vat_text(const char *lang, int bp, char *out, size_t len)
{
    char num[32];
    if (!len)
        return;
    mk_decimal_text(lang, bp < 0 ? 0 : bp / 100.0, num, sizeof num);
    snprintf(out, len, mk_lang_is_english(lang) ? "%s%%" : "%s %%", num);
}

int mk_vat_allowed(int bp)
{
    return bp == 0 || bp == 210 || bp == 550 || bp == 1000 || bp == 2000;
}

int mk_bool_parse(const char *s)
{
    static const char *const yes[] = {"oui", "yes", "1", "x", "o", "y", "vrai", "true", "bio", NULL};
    static const char *const no[] = {"", "non", "no", "0", "n", "faux", "false", NULL};
    char f[FOLD_MAX];
    mk_fold(s, f, sizeof f);
    for (int i = 0; yes[i]; i++)
        if (!strcmp(f, yes[i]))
            return 1;
    for (int i = 0; no[i]; i++)
        if (!strcmp(f, no[i]))
            return 0;
    return -1;
}

/* ---- the import's memory -------------------------------------------------------------------- */

static char *pool_strndup(mk_csv_import *imp, const char *s, size_t n)
{
    mk_csv_block *b = imp->pool;
    if (!b || b->size - b->used < n + 1) {
        size_t size = n + 1 > POOL_BLOCK ? n + 1 : POOL_BLOCK;
        b = malloc(sizeof *b + size);
        if (!b)
            return NULL;
        b->used = 0;
        b->size = size;
        b->next = imp->pool;
        imp->pool = b;
    }
    char *out = b->data + b->used;
    memcpy(out, s, n);
    out[n] = '\0';
    b->used += n + 1;
    return out;
}

void mk_csv_free(mk_csv_import *imp)
{
    if (!imp)
        return;
    for (mk_csv_block *b = imp->pool, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    for (size_t i = 0; i < imp->nlisted; i++)
        free(imp->errors[i]);
    free(imp->rows);
    free(imp->refs);
    memset(imp, 0, sizeof *imp);
}

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

mk_csv_product *mk_csv_find_ref(mk_csv_import *imp, const char *ref)
{
    if (!imp || !imp->refs || !ref || !*ref)
        return NULL;
    size_t mask = imp->refs_cap - 1;
    for (size_t i = hash(ref) & mask;; i = (i + 1) & mask) {
        uint32_t v = imp->refs[i];
        if (!v)
            return NULL;
        if (!strcmp(imp->rows[v - 1].ref, ref))
            return &imp->rows[v - 1];
    }
}

/* Adds row idx (whose ref is set) to the table, growing it to stay at most half full. */
static int refs_add(mk_csv_import *imp, size_t idx)
{
    if (imp->refs_cap < 2 * (idx + 1) + 16) {
        size_t cap = imp->refs_cap ? imp->refs_cap * 2 : 1024;
        while (cap < 2 * (idx + 1) + 16)
            cap *= 2;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t)
            return MK_ENOMEM;
        for (size_t i = 0; i < imp->refs_cap; i++)
            if (imp->refs[i])
                for (size_t j = hash(imp->rows[imp->refs[i] - 1].ref) & (cap - 1);; j = (j + 1) & (cap - 1))
                    if (!t[j]) {
                        t[j] = imp->refs[i];
                        break;
                    }
        free(imp->refs);
        imp->refs = t;
        imp->refs_cap = cap;
    }
    size_t mask = imp->refs_cap - 1;
    for (size_t j = hash(imp->rows[idx].ref) & mask;; j = (j + 1) & mask)
        if (!imp->refs[j]) {
            imp->refs[j] = (uint32_t)(idx + 1);
            return MK_OK;
        }
}

static void add_error(mk_csv_import *imp, const char *msg)
{
    if (imp->nlisted < MK_CSV_MAX_ERRORS) {
        char *m = strdup(msg);
        if (m)
            imp->errors[imp->nlisted++] = m;
    }
    imp->nerrors++;
}

/* ---- encodings -------------------------------------------------------------------------------- */

/* Windows-1252's 0x80..0x9F (0 where the code page has no character). */
static const unsigned short cp1252[32] = {
    0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
    0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
};

static unsigned cp1252_char(unsigned char c)
{
    return c < 0x80 ? c : c < 0xa0 ? cp1252[c - 0x80] : c;
}

/* Excel in French still saves "CSV" in Windows-1252: text that is not UTF-8 is read as that.
 * Returns a malloc'd UTF-8 copy, or NULL (err set). */
static char *from_cp1252(mk_csv_import *imp, const char *s, size_t n, size_t *out_len, mk_err *err)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned cp = cp1252_char((unsigned char)s[i]);
        if (!cp && s[i]) {
            const char *msg =
                tr(imp, "Encodage non reconnu (ni UTF-8 ni Windows-1252) : enregistrez le fichier en CSV UTF-8.");
            add_error(imp, msg);
            fail(err, MK_EINVAL, "%s", msg);
            return NULL;
        }
        need += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
    }
    char *out = malloc(need + 1);
    if (!out) {
        add_error(imp, tr(imp, "mémoire insuffisante"));
        fail(err, MK_ENOMEM, "mémoire insuffisante");
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned cp = cp1252_char((unsigned char)s[i]);
        if (cp < 0x80) {
            out[o++] = (char)cp;
        } else if (cp < 0x800) {
            out[o++] = (char)(0xc0 | cp >> 6);
            out[o++] = (char)(0x80 | (cp & 0x3f));
        } else {
            out[o++] = (char)(0xe0 | cp >> 12);
            out[o++] = (char)(0x80 | (cp >> 6 & 0x3f));
            out[o++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* ---- the header ------------------------------------------------------------------------------ */

static const struct {
    const char *word;
    int col;
} col_names[] = {
    {"reference", MK_COL_REF}, {"ref", MK_COL_REF}, {"nom", MK_COL_NAME}, {"name", MK_COL_NAME},
    {"description", MK_COL_DESC}, {"categorie", MK_COL_CATEGORY}, {"category", MK_COL_CATEGORY},
    {"unite", MK_COL_UNIT}, {"unit", MK_COL_UNIT}, {"quantite", MK_COL_QTY}, {"quantity", MK_COL_QTY},
    {"prix", MK_COL_PRICE}, {"price", MK_COL_PRICE}, {"tva", MK_COL_VAT}, {"vat", MK_COL_VAT},
    {"bio", MK_COL_ORGANIC}, {"organic", MK_COL_ORGANIC}, {"stock", MK_COL_STOCK},
};

/* How each column is named in messages, in MK_COL_* order (translated with the report: the
 * English names are column titles the import accepts too). */
static const char *const col_label[MK_NCOLS] = {N_("référence"), N_("nom"), N_("description"), N_("catégorie"),
                                                N_("unité"), N_("quantité"), N_("prix"), N_("tva"), N_("bio"),
                                                N_("stock")};

static int col_of(const char *header)
{
    char f[FOLD_MAX];
    mk_fold(header, f, sizeof f);
    for (size_t i = 0; i < sizeof col_names / sizeof col_names[0]; i++)
        if (!strcmp(f, col_names[i].word))
            return col_names[i].col;
    return -1;
}

/* ---- parsing ------------------------------------------------------------------------------- */

typedef struct parse_state {
    mk_csv_import *imp;
    const mk_csv_category *cats;
    size_t ncats;
    char (*cat_folded)[FOLD_MAX];
    /* the record being read: its fields, NUL-separated in buf */
    char *buf;
    size_t buf_len, buf_cap;
    size_t offs[MK_CSV_MAX_COLS];
    size_t nfields;
    int extra_nonempty;      /* a field past MK_CSV_MAX_COLS has a value */
    int line, start;         /* the physical line being fed; where the current record began */
    int between;             /* no record is open */
    int header_done;
    int map[MK_CSV_MAX_COLS];  /* column -> MK_COL_*, -1 untitled */
    int field_of[MK_NCOLS];    /* MK_COL_* -> column, -1 absent */
    size_t ncols;
    size_t done, total;
    mk_csv_progress progress;
    void *ud;
    int stop;                /* MK_* code that ends the parse (header wrong, out of memory, ...) */
    mk_err *err;
} parse_state;

static void on_field(void *field, size_t len, void *ud)
{
    parse_state *ps = ud;
    if (ps->stop)
        return;
    if (ps->nfields >= MK_CSV_MAX_COLS) {
        if (len)
            ps->extra_nonempty = 1;
        ps->nfields++;
        return;
    }
    if (ps->buf_cap - ps->buf_len < len + 1) {
        size_t cap = ps->buf_cap ? ps->buf_cap : 1024;
        while (cap - ps->buf_len < len + 1)
            cap *= 2;
        char *b = realloc(ps->buf, cap);
        if (!b) {
            ps->stop = fail(ps->err, MK_ENOMEM, "mémoire insuffisante");
            return;
        }
        ps->buf = b;
        ps->buf_cap = cap;
    }
    ps->offs[ps->nfields++] = ps->buf_len;
    if (len)
        memcpy(ps->buf + ps->buf_len, field, len);
    ps->buf[ps->buf_len + len] = '\0';
    ps->buf_len += len + 1;
}

/* Removes blanks at both ends, in place. */
static char *trim(char *s)
{
    size_t b;
    while ((b = blank_len(s)))
        s += b;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    s[n] = '\0';
    return s;
}

static char *field(parse_state *ps, size_t i)
{
    static char none[1];
    none[0] = '\0';
    return i < ps->nfields && i < MK_CSV_MAX_COLS ? ps->buf + ps->offs[i] : none;
}

static const char *value(parse_state *ps, int col)
{
    return ps->field_of[col] < 0 ? "" : field(ps, (size_t)ps->field_of[col]);
}

/* A wrong value as the report shows it: the first SHOWN_MAX bytes, cut on a character. */
static const char *shown(const char *v, char *buf, size_t len)
{
    size_t n = strlen(v);
    if (n <= SHOWN_MAX)
        return v;
    n = SHOWN_MAX;
    while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
        n--;
    snprintf(buf, len, "%.*s…", (int)n, v);
    return buf;
}

typedef struct problems {
    char msg[1024];
    size_t len;
    int count;
    const char *sep;   /* between two problems of a line */
} problems;

static void problem(problems *pb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *pb, const char *fmt, ...)
{
    char one[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(one, sizeof one, fmt, ap);
    va_end(ap);
    int n = snprintf(pb->msg + pb->len, sizeof pb->msg - pb->len, "%s%s", pb->count ? pb->sep : "", one);
    pb->len += n > 0 ? (size_t)n : 0;
    if (pb->len > sizeof pb->msg - 1)
        pb->len = sizeof pb->msg - 1;
    pb->count++;
}

static void header_record(parse_state *ps)
{
    mk_csv_import *imp = ps->imp;
    char msg[512], sb[SHOWN_MAX + 8];
    int bad = 0;
    for (int c = 0; c < MK_NCOLS; c++)
        ps->field_of[c] = -1;
    if (ps->nfields > MK_CSV_MAX_COLS) {
        snprintf(msg, sizeof msg, tr(imp, "ligne %d : trop de colonnes (%d au plus)"), ps->start, MK_CSV_MAX_COLS);
        add_error(imp, msg);
        ps->stop = fail(ps->err, MK_EINVAL, "%s", msg);
        return;
    }
    ps->ncols = ps->nfields;
    for (size_t i = 0; i < ps->nfields; i++) {
        char *name = trim(field(ps, i));
        ps->map[i] = -1;
        if (!*name)
            continue;
        int c = col_of(name);
        if (c < 0) {
            snprintf(msg, sizeof msg,
                     tr(imp, "ligne %d : colonne inconnue « %s » (colonnes possibles : référence, nom, description, "
                             "catégorie, unité, quantité, prix, tva, bio, stock)"),
                     ps->start, shown(name, sb, sizeof sb));
            add_error(imp, msg);
            bad = 1;
        } else if (ps->field_of[c] >= 0) {
            snprintf(msg, sizeof msg, tr(imp, "ligne %d : colonne « %s » en double"), ps->start,
                     tr(imp, col_label[c]));
            add_error(imp, msg);
            bad = 1;
        } else {
            ps->map[i] = c;
            ps->field_of[c] = (int)i;
        }
    }
    static const int required[] = {MK_COL_NAME, MK_COL_PRICE, MK_COL_VAT};
    for (size_t k = 0; k < sizeof required / sizeof required[0]; k++)
        if (ps->field_of[required[k]] < 0) {
            snprintf(msg, sizeof msg, tr(imp, "ligne %d : colonne « %s » manquante"), ps->start,
                     tr(imp, col_label[required[k]]));
            add_error(imp, msg);
            bad = 1;
        }
    for (int c = 0; c < MK_NCOLS; c++)
        imp->has_col[c] = ps->field_of[c] >= 0;
    if (bad)
        ps->stop = fail(ps->err, MK_EINVAL, "en-tête invalide");
}

static int64_t category_of(parse_state *ps, const char *v)
{
    char f[FOLD_MAX];
    mk_fold(v, f, sizeof f);
    for (size_t i = 0; i < ps->ncats; i++)
        if (!strcmp(f, ps->cats[i].slug ? ps->cats[i].slug : "") || !strcmp(f, ps->cat_folded[i]))
            return ps->cats[i].id;
    return -1;
}

static void data_record(parse_state *ps)
{
    mk_csv_import *imp = ps->imp;
    int empty = !ps->extra_nonempty;
    for (size_t i = 0; i < ps->nfields && i < MK_CSV_MAX_COLS; i++) {
        char *f = field(ps, i), *t = trim(f);
        memmove(f, t, strlen(t) + 1);
        if (*f)
            empty = 0;
    }
    if (empty) /* spreadsheets leave rows of bare separators behind */
        return;
    problems pb = {.len = 0, .count = 0, .sep = tr(imp, " ; ")};
    char sb[SHOWN_MAX + 8];
    if (ps->extra_nonempty)
        problem(&pb, tr(imp, "%zu colonnes alors que l'en-tête en a %zu"), ps->nfields, ps->ncols);
    for (size_t i = 0; i < ps->nfields && i < MK_CSV_MAX_COLS && !ps->extra_nonempty; i++) {
        if (!*field(ps, i))
            continue;
        if (i >= ps->ncols) {
            problem(&pb, tr(imp, "%zu colonnes alors que l'en-tête en a %zu"), ps->nfields, ps->ncols);
            break;
        }
        if (ps->map[i] < 0) {
            problem(&pb, tr(imp, "valeur dans la colonne %zu, qui n'a pas de titre"), i + 1);
            break;
        }
    }
    for (size_t i = 0; i < ps->nfields && i < MK_CSV_MAX_COLS; i++)
        if (!mk_text_ok(field(ps, i), SIZE_MAX / 2, 1)) {
            problem(&pb, tr(imp, "caractères de contrôle dans la colonne %zu"), i + 1);
            break;
        }

    mk_csv_product p = {.line = ps->start, .quantity = 1, .unit = "piece"};
    const char *name = value(ps, MK_COL_NAME), *ref = value(ps, MK_COL_REF), *desc = value(ps, MK_COL_DESC);
    if (!*name)
        problem(&pb, tr(imp, "nom manquant"));
    else if (strlen(name) > MK_NAME_MAX || strpbrk(name, "\r\n\t"))
        problem(&pb, tr(imp, "nom trop long ou sur plusieurs lignes (%d caractères au plus)"), MK_NAME_MAX);
    if (strlen(desc) > MK_DESC_MAX)
        problem(&pb, tr(imp, "description trop longue (%d caractères au plus)"), MK_DESC_MAX);
    if (strlen(ref) > MK_REF_MAX || strpbrk(ref, "\r\n\t")) {
        problem(&pb, tr(imp, "référence trop longue (%d caractères au plus)"), MK_REF_MAX);
    } else if (*ref) {
        mk_csv_product *dup = mk_csv_find_ref(imp, ref);
        if (dup)
            problem(&pb, tr(imp, "référence « %s » déjà utilisée ligne %d"), shown(ref, sb, sizeof sb), dup->line);
    }
    const char *v = value(ps, MK_COL_PRICE);
    if (!*v)
        problem(&pb, tr(imp, "prix manquant"));
    else if ((p.price_cents = mk_parse_price(v)) <= 0)
        problem(&pb, tr(imp, "prix invalide « %s »"), shown(v, sb, sizeof sb));
    v = value(ps, MK_COL_VAT);
    if (!*v)
        problem(&pb, tr(imp, "taux de TVA manquant"));
    else if ((p.vat_bp = mk_parse_vat(v)) < 0 || !mk_vat_allowed(p.vat_bp))
        problem(&pb, tr(imp, "taux de TVA invalide « %s » (0, 2,1, 5,5, 10 ou 20)"), shown(v, sb, sizeof sb));
    v = value(ps, MK_COL_UNIT);
    if (*v && !(p.unit = mk_unit_parse(v)))
        problem(&pb, tr(imp, "unité invalide « %s » (pièce, kg, g, l, ml ou vrac)"), shown(v, sb, sizeof sb));
    v = value(ps, MK_COL_QTY);
    if (*v && (mk_decimal_parse(v, &p.quantity) || p.quantity <= 0))
        problem(&pb, tr(imp, "quantité invalide « %s »"), shown(v, sb, sizeof sb));
    v = value(ps, MK_COL_ORGANIC);
    if ((p.organic = mk_bool_parse(v)) < 0)
        problem(&pb, tr(imp, "bio invalide « %s » (oui ou non)"), shown(v, sb, sizeof sb));
    v = value(ps, MK_COL_CATEGORY);
    if (*v && (p.category_id = category_of(ps, v)) < 0)
        problem(&pb, tr(imp, "catégorie inconnue « %s »"), shown(v, sb, sizeof sb));
    v = value(ps, MK_COL_STOCK);
    if (*v) {
        p.has_stock = 1;
        if (mk_decimal_parse(v, &p.stock))
            problem(&pb, tr(imp, "stock invalide « %s »"), shown(v, sb, sizeof sb));
    }

    if (pb.count) {
        char msg[1100];
        snprintf(msg, sizeof msg, tr(imp, "ligne %d : %s"), ps->start, pb.msg);
        add_error(imp, msg);
        return;
    }
    if (imp->nrows == imp->cap) {
        size_t cap = imp->cap ? imp->cap * 2 : 256;
        mk_csv_product *rows = realloc(imp->rows, cap * sizeof *rows);
        if (!rows) {
            ps->stop = fail(ps->err, MK_ENOMEM, "mémoire insuffisante");
            return;
        }
        imp->rows = rows;
        imp->cap = cap;
    }
    p.ref = pool_strndup(imp, ref, strlen(ref));
    p.name = pool_strndup(imp, name, strlen(name));
    p.description = pool_strndup(imp, desc, strlen(desc));
    if (!p.ref || !p.name || !p.description) {
        ps->stop = fail(ps->err, MK_ENOMEM, "mémoire insuffisante");
        return;
    }
    imp->rows[imp->nrows] = p;
    if (*p.ref && refs_add(imp, imp->nrows) != MK_OK) {
        ps->stop = fail(ps->err, MK_ENOMEM, "mémoire insuffisante");
        return;
    }
    imp->nrows++;
}

static void on_record(int c, void *ud)
{
    (void)c;
    parse_state *ps = ud;
    if (!ps->stop) {
        if (!ps->header_done) {
            ps->header_done = 1;
            header_record(ps);
        } else {
            data_record(ps);
            ps->done++;
            if (ps->progress && ps->done % 1000 == 0)
                ps->progress(ps->ud, ps->done, ps->total);
        }
    }
    ps->nfields = 0;
    ps->buf_len = 0;
    ps->extra_nonempty = 0;
    ps->between = 1;
}

static int space_not_tab(unsigned char c) { return c == ' '; }
static int space_or_tab(unsigned char c) { return c == ' ' || c == '\t'; }

static void csv_setup(struct csv_parser *p, char delim)
{
    csv_set_delim(p, (unsigned char)delim);
    csv_set_space_func(p, delim == '\t' ? space_not_tab : space_or_tab);
}

/* Counting pass: records in the whole text. */
static void count_record(int c, void *ud)
{
    (void)c;
    (*(size_t *)ud)++;
}

typedef struct header_guess {
    int known, fields;
} header_guess;

static void guess_field(void *f, size_t len, void *ud)
{
    header_guess *g = ud;
    char name[FOLD_MAX];
    snprintf(name, sizeof name, "%.*s", (int)(len < FOLD_MAX - 1 ? len : FOLD_MAX - 1), (const char *)f);
    g->fields++;
    if (col_of(name) >= 0)
        g->known++;
}

/* The separator is the candidate that splits the header line into the most known column
 * names (then the most columns); ';' wins ties, as French spreadsheets use it. */
static char guess_delimiter(const char *line, size_t len)
{
    static const char cands[] = {';', '\t', ','};
    char best = ';';
    header_guess bg = {-1, -1};
    for (size_t i = 0; i < sizeof cands; i++) {
        struct csv_parser p;
        if (csv_init(&p, 0) != 0)
            return best;
        csv_setup(&p, cands[i]);
        header_guess g = {0, 0};
        csv_parse(&p, line, len, guess_field, NULL, &g);
        csv_fini(&p, guess_field, NULL, &g);
        csv_free(&p);
        if (g.known > bg.known || (g.known == bg.known && g.fields > bg.fields)) {
            bg = g;
            best = cands[i];
        }
    }
    return best;
}

/* A physical line that libcsv will skip: only blanks and line ends. */
static int blank_line(const char *p, size_t n, char delim)
{
    for (size_t i = 0; i < n; i++)
        if (!(p[i] == ' ' || p[i] == '\r' || p[i] == '\n' || (p[i] == '\t' && delim != '\t')))
            return 0;
    return 1;
}

static size_t line_end(const char *p, const char *end)
{
    const char *q = p;
    while (q < end && *q != '\n' && *q != '\r')
        q++;
    if (q < end)
        q += (*q == '\r' && q + 1 < end && q[1] == '\n') ? 2 : 1;
    return (size_t)(q - p);
}

static int run(parse_state *ps, const char *text, size_t n)
{
    mk_csv_import *imp = ps->imp;
    /* the header line: the first that is not blank */
    const char *p = text, *end = text + n;
    size_t l;
    while (p < end && blank_line(p, l = line_end(p, end), '\t'))
        p += l;
    if (p == end) {
        add_error(imp, tr(imp, "Le fichier est vide."));
        return fail(ps->err, MK_EINVAL, "Le fichier est vide.");
    }
    imp->delimiter = guess_delimiter(p, line_end(p, end));

    struct csv_parser cp;
    if (csv_init(&cp, 0) != 0)
        return fail(ps->err, MK_ENOMEM, "mémoire insuffisante");
    csv_setup(&cp, imp->delimiter);
    size_t records = 0;
    csv_parse(&cp, text, n, NULL, count_record, &records);
    csv_fini(&cp, NULL, count_record, &records);
    csv_free(&cp);
    if (records > MK_CSV_MAX_ROWS + 1) {
        char msg[128];
        snprintf(msg, sizeof msg, tr(imp, "Le fichier a plus de %d lignes : découpez-le."), MK_CSV_MAX_ROWS);
        add_error(imp, msg);
        return fail(ps->err, MK_ETOOBIG, "%s", msg);
    }
    ps->total = records ? records - 1 : 0;

    /* Strict: a stray quote would otherwise swallow the lines after it without a word. */
    if (csv_init(&cp, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return fail(ps->err, MK_ENOMEM, "mémoire insuffisante");
    csv_setup(&cp, imp->delimiter);
    ps->between = 1;
    /* Fed line by line so that each record's first line is known for the report. */
    for (p = text; p < end && !ps->stop; p += l) {
        l = line_end(p, end);
        ps->line++;
        if (ps->between && !blank_line(p, l, imp->delimiter)) {
            ps->start = ps->line;
            ps->between = 0;
        }
        if (csv_parse(&cp, p, l, on_field, on_record, ps) != l && !ps->stop) {
            if (csv_error(&cp) == CSV_EPARSE) {
                char msg[256];
                snprintf(msg, sizeof msg,
                         tr(imp, "ligne %d : guillemet mal placé (un champ qui contient des guillemets "
                                 "doit être entouré de guillemets, et ceux qu'il contient doublés)"),
                         ps->line);
                add_error(imp, msg);
                ps->stop = fail(ps->err, MK_EINVAL, "%s", msg);
            } else {
                char msg[256];
                snprintf(msg, sizeof msg, tr(imp, "lecture du CSV : %s"), csv_strerror(csv_error(&cp)));
                add_error(imp, msg);
                ps->stop = fail(ps->err, MK_ENOMEM, "%s", msg);
            }
        }
    }
    if (!ps->stop && csv_fini(&cp, on_field, on_record, ps) != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, tr(imp, "ligne %d : guillemet ouvert qui n'est jamais fermé"), ps->start);
        add_error(imp, msg);
        ps->stop = fail(ps->err, MK_EINVAL, "%s", msg);
    }
    csv_free(&cp);
    if (ps->stop)
        return ps->stop;
    if (ps->progress && ps->done % 1000)
        ps->progress(ps->ud, ps->done, ps->total);
    if (imp->nerrors)
        return fail(ps->err, MK_EINVAL, "%zu ligne(s) invalide(s)", imp->nerrors);
    if (!imp->nrows) {
        add_error(imp, tr(imp, "Le fichier n'a aucune ligne de produit après l'en-tête."));
        return fail(ps->err, MK_EINVAL, "aucun produit");
    }
    return MK_OK;
}

int mk_csv_parse(mk_csv_import *imp, const char *data, size_t len, const mk_csv_category *cats, size_t ncats,
                 mk_csv_progress progress, void *ud, mk_err *err)
{
    if (!imp || (!data && len) || (!cats && ncats))
        return fail(err, MK_EINVAL, "mk_csv_parse: NULL argument");
    if (len > SIZE_MAX / 4 || ncats > 100000)
        return fail(err, MK_ETOOBIG, "fichier trop grand");
    if (data && memchr(data, '\0', len)) {
        add_error(imp, tr(imp, "Ce n'est pas un fichier texte CSV (un classeur .xlsx ou .ods ?) : "
                               "enregistrez-le au format CSV depuis votre tableur."));
        return fail(err, MK_EINVAL, "pas un fichier CSV");
    }
    if (len >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) {
        data += 3;
        len -= 3;
    }
    char *owned = NULL;
    const char *text = data ? data : "";
    if (!text_is_utf8(text, len)) {
        owned = from_cp1252(imp, text, len, &len, err);
        if (!owned)
            return err ? err->code : MK_EINVAL;
        text = owned;
    }
    parse_state ps;
    memset(&ps, 0, sizeof ps);
    ps.imp = imp;
    ps.cats = cats;
    ps.ncats = ncats;
    ps.progress = progress;
    ps.ud = ud;
    ps.err = err;
    int rc = MK_OK;
    if (ncats && !(ps.cat_folded = malloc(ncats * sizeof *ps.cat_folded)))
        rc = fail(err, MK_ENOMEM, "mémoire insuffisante");
    for (size_t i = 0; rc == MK_OK && i < ncats; i++)
        mk_fold(cats[i].name, ps.cat_folded[i], FOLD_MAX);
    if (rc == MK_OK)
        rc = run(&ps, text, len);
    free(ps.cat_folded);
    free(ps.buf);
    free(owned);
    return rc;
}

/* ---- helpers the producers' pages share ------------------------------------------------------- */

const char *mk_image_type(const void *data, size_t len)
{
    const unsigned char *b = data;
    if (!b)
        return NULL;
    if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
        return "image/png";
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "image/jpeg";
    if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
        return "image/webp";
    return NULL;
}


int64_t mk_id(const char *s)
{
    int64_t v = 0;
    if (!s || !*s)
        return 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || p - s >= 15)
            return 0;
        v = v * 10 + (*p - '0');
    }
    return v;
}

/* ---- form and template helpers of the market's pages ----------------------------------------- */

void mk_set_str(json_t *o, const char *key, const char *v)
{
    json_object_set_new(o, key, json_string(v ? v : ""));
}

/* Templates wrap a list in a table or a <ul> only when it has items: has_KEY says so for
 * each list of the context. */
void mk_list_flags(json_t *ctx)
{
    char flags[16][64];
    int full[16];
    size_t n = 0;
    const char *key;
    json_t *v;
    /* names first: the object must not change while it is walked */
    json_object_foreach(ctx, key, v)
        if (json_is_array(v) && n < 16) {
            snprintf(flags[n], sizeof flags[n], "has_%s", key);
            full[n++] = json_array_size(v) > 0;
        }
    for (size_t i = 0; i < n; i++)
        json_object_set_new(ctx, flags[i], json_boolean(full[i]));
}

const char *mk_param(halle_request *r, const char *name)
{
    const char *v = mk_api->req_param(r, name);
    return v ? v : "";
}

/* Copies the form field, blanks at both ends removed; -1 when it is too long or not text. */
int mk_get_field(halle_request *r, const char *name, char *out, size_t size, int multiline)
{
    const char *v = mk_param(r, name);
    while (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
        n--;
    out[0] = '\0';
    if (n >= size)
        return -1;
    memcpy(out, v, n);
    out[n] = '\0';
    return mk_text_ok(out, size - 1, multiline) ? 0 : -1;
}
