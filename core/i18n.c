/* Translations from GNU gettext .po catalogs, language negotiation and per-language
 * formatting (see i18n.h). Catalogs are parsed once at start-up into one hash table per
 * language whose strings live in an arena; lookups afterwards only read, so workers and
 * threads can share them. */
#include "core/i18n.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/utf8.h"

#define MAX_CATALOGS 64
#define MAX_FILE (8u << 20)     /* one .po file */
#define MAX_NPLURALS 6          /* the most any language needs (Arabic) */
#define MAX_PNODES 128          /* nodes of one plural expression */
#define MAX_PDEPTH 32           /* nesting of ?: and parentheses */
#define PLURAL_CHECK_UPTO 1000  /* counts tried against nplurals when a catalog loads */
#define MAX_TAG 64              /* a language tag in a choice or Accept-Language item */
#define MAX_RANGES 64           /* Accept-Language items considered */

/* ASCII only, whatever the process locale says. */
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static int is_alpha(char c) { return is_lower(c) || is_upper(c); }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int lower(char c) { return is_upper(c) ? c + 32 : c; }
static int upper(char c) { return is_lower(c) ? c - 32 : c; }

/* ---------------------------------------------------------------- plural expressions */

enum { P_N, P_NUM, P_COND, P_OR, P_AND, P_EQ, P_NE, P_LT, P_GT, P_LE, P_GE, P_MOD };

typedef struct pnode {
    unsigned char op;
    short a, b, c;
    unsigned long v;
} pnode;

typedef struct prule {
    pnode nodes[MAX_PNODES];
    int count, root, nplurals;
} prule;

typedef struct pparser {
    const char *s;
    size_t pos, len;
    prule *pl;
    int depth;
    const char *why;   /* first problem found; the parse stops there */
} pparser;

static int p_cond(pparser *pp);

static int p_fail(pparser *pp, const char *why)
{
    if (!pp->why)
        pp->why = why;
    return -1;
}

static void p_blank(pparser *pp)
{
    while (pp->pos < pp->len && (pp->s[pp->pos] == ' ' || pp->s[pp->pos] == '\t'))
        pp->pos++;
}

/* Consumes op if it comes next (and is not the start of a longer operator). */
static int p_accept(pparser *pp, const char *op)
{
    size_t n = strlen(op);
    p_blank(pp);
    if (pp->len - pp->pos < n || memcmp(pp->s + pp->pos, op, n))
        return 0;
    if (n == 1 && pp->pos + 1 < pp->len && pp->s[pp->pos + 1] == '=' && strchr("<>=!", op[0]))
        return 0;
    pp->pos += n;
    return 1;
}

static int p_node(pparser *pp, int op, int a, int b, int c)
{
    if (a < 0 || b < 0 || c < 0)
        return -1;
    if (pp->pl->count >= MAX_PNODES)
        return p_fail(pp, "expression too long");
    pnode *x = &pp->pl->nodes[pp->pl->count];
    x->op = (unsigned char)op;
    x->a = (short)a;
    x->b = (short)b;
    x->c = (short)c;
    x->v = 0;
    return pp->pl->count++;
}

static int p_primary(pparser *pp)
{
    p_blank(pp);
    if (pp->pos >= pp->len)
        return p_fail(pp, "expression ends too soon");
    char c = pp->s[pp->pos];
    if (c == 'n') {
        pp->pos++;
        if (pp->pos < pp->len && (is_alpha(pp->s[pp->pos]) || is_digit(pp->s[pp->pos]) || pp->s[pp->pos] == '_'))
            return p_fail(pp, "unknown name (only n is allowed)");
        return p_node(pp, P_N, 0, 0, 0);
    }
    if (c >= '0' && c <= '9') {
        unsigned long v = 0;
        int digits = 0;
        while (pp->pos < pp->len && pp->s[pp->pos] >= '0' && pp->s[pp->pos] <= '9') {
            if (++digits > 9)
                return p_fail(pp, "number too large");
            v = v * 10 + (unsigned long)(pp->s[pp->pos++] - '0');
        }
        int i = p_node(pp, P_NUM, 0, 0, 0);
        if (i >= 0)
            pp->pl->nodes[i].v = v;
        return i;
    }
    if (c == '(') {
        pp->pos++;
        if (++pp->depth > MAX_PDEPTH)
            return p_fail(pp, "nested too deeply");
        int i = p_cond(pp);
        pp->depth--;
        if (i < 0)
            return -1;
        if (!p_accept(pp, ")"))
            return p_fail(pp, "missing ')'");
        return i;
    }
    return p_fail(pp, "unexpected character (allowed: n, integers, == != < > <= >= && || % ?: and parentheses)");
}

static int p_mod(pparser *pp)
{
    int l = p_primary(pp);
    while (l >= 0 && p_accept(pp, "%"))
        l = p_node(pp, P_MOD, l, p_primary(pp), 0);
    return l;
}

static int p_rel(pparser *pp)
{
    int l = p_mod(pp);
    for (;;) {
        int op = p_accept(pp, "<=") ? P_LE : p_accept(pp, ">=") ? P_GE : p_accept(pp, "<") ? P_LT
               : p_accept(pp, ">") ? P_GT : -1;
        if (l < 0 || op < 0)
            return l;
        l = p_node(pp, op, l, p_mod(pp), 0);
    }
}

static int p_eq(pparser *pp)
{
    int l = p_rel(pp);
    for (;;) {
        int op = p_accept(pp, "==") ? P_EQ : p_accept(pp, "!=") ? P_NE : -1;
        if (l < 0 || op < 0)
            return l;
        l = p_node(pp, op, l, p_rel(pp), 0);
    }
}

static int p_and(pparser *pp)
{
    int l = p_eq(pp);
    while (l >= 0 && p_accept(pp, "&&"))
        l = p_node(pp, P_AND, l, p_eq(pp), 0);
    return l;
}

static int p_or(pparser *pp)
{
    int l = p_and(pp);
    while (l >= 0 && p_accept(pp, "||"))
        l = p_node(pp, P_OR, l, p_and(pp), 0);
    return l;
}

/* cond ? a : b binds right to left, so the false branch recurses (depth-counted). */
static int p_cond(pparser *pp)
{
    if (++pp->depth > MAX_PDEPTH)
        return p_fail(pp, "nested too deeply");
    int c = p_or(pp);
    if (c >= 0 && p_accept(pp, "?")) {
        int a = p_cond(pp);
        if (a >= 0 && !p_accept(pp, ":"))
            a = p_fail(pp, "'?' without ':'");
        int b = a >= 0 ? p_cond(pp) : -1;
        c = p_node(pp, P_COND, c, a, b);
    }
    pp->depth--;
    return c;
}

/* Parses s[0..len) into pl; returns NULL or why it is refused. */
static const char *plural_parse(prule *pl, const char *s, size_t len)
{
    pparser pp = {s, 0, len, pl, 0, NULL};
    pl->count = 0;
    pl->root = p_cond(&pp);
    if (pl->root >= 0) {
        p_blank(&pp);
        if (pp.pos < len)
            p_fail(&pp, "unexpected text after the expression");
    }
    return pp.why ? pp.why : pl->root < 0 ? "bad expression" : NULL;
}

static unsigned long plural_eval(const prule *pl, int i, unsigned long n)
{
    const pnode *x = &pl->nodes[i];
    switch (x->op) {
    case P_N: return n;
    case P_NUM: return x->v;
    case P_COND: return plural_eval(pl, x->a, n) ? plural_eval(pl, x->b, n) : plural_eval(pl, x->c, n);
    case P_OR: return plural_eval(pl, x->a, n) || plural_eval(pl, x->b, n);
    case P_AND: return plural_eval(pl, x->a, n) && plural_eval(pl, x->b, n);
    case P_EQ: return plural_eval(pl, x->a, n) == plural_eval(pl, x->b, n);
    case P_NE: return plural_eval(pl, x->a, n) != plural_eval(pl, x->b, n);
    case P_LT: return plural_eval(pl, x->a, n) < plural_eval(pl, x->b, n);
    case P_GT: return plural_eval(pl, x->a, n) > plural_eval(pl, x->b, n);
    case P_LE: return plural_eval(pl, x->a, n) <= plural_eval(pl, x->b, n);
    case P_GE: return plural_eval(pl, x->a, n) >= plural_eval(pl, x->b, n);
    case P_MOD: {
        unsigned long d = plural_eval(pl, x->b, n);
        return d ? plural_eval(pl, x->a, n) % d : 0; /* C would trap; a catalog must not */
    }
    }
    return 0;
}

static unsigned long magnitude(long n)
{
    return n < 0 ? 0ul - (unsigned long)n : (unsigned long)n;
}

/* ---------------------------------------------------------------- catalogs */

typedef struct entry {
    const char *key;     /* ctxt NUL msgid, or msgid; hashed as gettext's ctxt "\4" msgid */
    size_t klen;
    const char *ctxt;    /* NULL if none */
    const char *msgid, *plural;
    const char **strs;
    unsigned nstr;
    unsigned line;
} entry;

typedef struct catalog {
    char code[8];
    hl_arena *arena;
    entry *msgs;
    size_t count, cap;
    uint32_t *slots;     /* index + 1, 0 = free */
    size_t nslots;
    prule pl;
} catalog;

struct hl_i18n {
    catalog *cats;
    size_t count;
};

static uint32_t fnv(uint32_t h, const char *s, size_t n)
{
    while (n--)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static uint32_t key_hash(const char *ctxt, const char *id, size_t idlen)
{
    uint32_t h = 2166136261u;
    if (ctxt) {
        h = fnv(h, ctxt, strlen(ctxt));
        h = fnv(h, "\4", 1);
    }
    return fnv(h, id, idlen);
}

/* A key is stored as ctxt NUL msgid. Neither part can hold a NUL (the reader refuses them),
 * so a different split of the same length puts a stored NUL where the other side has none. */
static int key_equal(const entry *m, const char *ctxt, const char *id, size_t idlen)
{
    if (!ctxt)
        return !m->ctxt && m->klen == idlen && !memcmp(m->key, id, idlen);
    size_t cl = strlen(ctxt);
    return m->ctxt && m->klen == cl + 1 + idlen && !memcmp(m->key, ctxt, cl) && !memcmp(m->key + cl + 1, id, idlen);
}

static const entry *cat_find(const catalog *c, const char *ctxt, const char *id, size_t idlen)
{
    if (!c->nslots)
        return NULL;
    size_t h = key_hash(ctxt, id, idlen) & (c->nslots - 1);
    for (; c->slots[h]; h = (h + 1) & (c->nslots - 1)) {
        const entry *m = &c->msgs[c->slots[h] - 1];
        if (key_equal(m, ctxt, id, idlen))
            return m;
    }
    return NULL;
}

static int cat_rehash(catalog *c)
{
    size_t n = c->nslots ? c->nslots * 2 : 64;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; i < c->count; i++) {
        const entry *m = &c->msgs[i];
        size_t h = key_hash(m->ctxt, m->msgid, strlen(m->msgid)) & (n - 1);
        while (s[h])
            h = (h + 1) & (n - 1);
        s[h] = (uint32_t)i + 1;
    }
    free(c->slots);
    c->slots = s;
    c->nslots = n;
    return 0;
}

static void cat_clear(catalog *c)
{
    hl_arena_free(c->arena);
    free(c->msgs);
    free(c->slots);
    memset(c, 0, sizeof *c);
}

void hl_i18n_free(hl_i18n *i18n)
{
    if (!i18n)
        return;
    for (size_t i = 0; i < i18n->count; i++)
        cat_clear(&i18n->cats[i]);
    free(i18n->cats);
    free(i18n);
}

/* ---------------------------------------------------------------- .po reader */

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n + 1)
            c *= 2; /* bounded: everything comes from one file of at most MAX_FILE bytes */
        char *q = realloc(b->p, c);
        if (!q)
            return -1;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

typedef struct reader {
    const char *path;
    hl_err *err;
    int code;            /* of the first error, also when err is NULL */
    catalog *cat;
    unsigned line;
    /* the entry being read */
    sbuf ctxt, id, plural, strs[MAX_NPLURALS];
    sbuf *cur;           /* what a continuation string appends to */
    int have_ctxt, have_id, have_plural, have_str, nstr, fuzzy;
    unsigned entry_line;
    /* from the header */
    int header_seen;
    unsigned plural_line, ctype_line, lang_line;
} reader;

static int rerr(reader *r, unsigned line, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int rerr(reader *r, unsigned line, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    hl_err_set(r->err, code, "%s:%u: %s", r->path, line, msg);
    r->code = code;
    return -1;
}

static int room(reader *r)
{
    hl_err_set(r->err, HL_ENOMEM, "%s: out of memory", r->path);
    r->code = HL_ENOMEM;
    return -1;
}

static int clip(size_t n) { return n > 60 ? 60 : (int)n; }


static void reset_entry(reader *r)
{
    sbuf *all[3 + MAX_NPLURALS] = {&r->ctxt, &r->id, &r->plural};
    for (int i = 0; i < MAX_NPLURALS; i++)
        all[3 + i] = &r->strs[i];
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        all[i]->len = 0;
        if (all[i]->p)
            all[i]->p[0] = '\0';
    }
    r->cur = NULL;
    r->have_ctxt = r->have_id = r->have_plural = r->have_str = r->nstr = r->fuzzy = 0;
    r->entry_line = 0;
}

static int started(const reader *r) { return r->have_ctxt || r->have_id; }
static int complete(const reader *r) { return r->have_str || r->nstr > 0; }

/* Finds "Name:" at the start of a header line; returns its value (up to the line end). */
static const char *header_field(const char *h, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    for (const char *l = h; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncasecmp(l, name, nl) && l[nl] == ':') {
            const char *v = l + nl + 1, *e = strchr(v, '\n');
            if (!e)
                e = v + strlen(v);
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                e--;
            *vlen = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

/* "nplurals=N; plural=EXPR;" */
static int parse_plural_forms(reader *r, const char *v, size_t n, unsigned line)
{
    const char *e = v + n, *p = v;
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    if ((size_t)(e - p) < 9 || strncmp(p, "nplurals", 8))
        return rerr(r, line, HL_EINVAL, "Plural-Forms must start with nplurals=");
    p += 8;
    while (p < e && *p == ' ')
        p++;
    if (p == e || *p++ != '=')
        return rerr(r, line, HL_EINVAL, "Plural-Forms: '=' expected after nplurals");
    while (p < e && *p == ' ')
        p++;
    int np = 0;
    if (p == e || !is_digit(*p))
        return rerr(r, line, HL_EINVAL, "Plural-Forms: nplurals is not a number");
    while (p < e && is_digit(*p) && np <= MAX_NPLURALS)
        np = np * 10 + (*p++ - '0');
    if (np < 1 || np > MAX_NPLURALS || (p < e && is_digit(*p)))
        return rerr(r, line, HL_EINVAL, "Plural-Forms: nplurals must be 1 to %d", MAX_NPLURALS);
    while (p < e && *p == ' ')
        p++;
    if (p == e || *p++ != ';')
        return rerr(r, line, HL_EINVAL, "Plural-Forms: ';' expected after nplurals");
    while (p < e && *p == ' ')
        p++;
    if ((size_t)(e - p) < 6 || strncmp(p, "plural", 6))
        return rerr(r, line, HL_EINVAL, "Plural-Forms: plural= expected");
    p += 6;
    while (p < e && *p == ' ')
        p++;
    if (p == e || *p++ != '=')
        return rerr(r, line, HL_EINVAL, "Plural-Forms: '=' expected after plural");
    const char *semi = memchr(p, ';', (size_t)(e - p));
    const char *xe = semi ? semi : e;
    for (const char *q = semi ? semi + 1 : e; q < e; q++)
        if (*q != ' ' && *q != '\t')
            return rerr(r, line, HL_EINVAL, "Plural-Forms: unexpected text after the plural expression");
    const char *why = plural_parse(&r->cat->pl, p, (size_t)(xe - p));
    if (why)
        return rerr(r, line, HL_EINVAL, "bad plural expression '%.*s': %s", clip((size_t)(xe - p)), p, why);
    for (unsigned long k = 0; k < PLURAL_CHECK_UPTO; k++) {
        unsigned long f = plural_eval(&r->cat->pl, r->cat->pl.root, k);
        if (f >= (unsigned long)np)
            return rerr(r, line, HL_EINVAL, "plural expression gives form %lu for n=%lu but nplurals=%d", f, k, np);
    }
    r->cat->pl.nplurals = np;
    return 0;
}

static int read_header(reader *r, const char *h)
{
    size_t n;
    const char *v;
    if (r->header_seen)
        return rerr(r, r->entry_line, HL_EINVAL, "second header entry (msgid \"\")");
    r->header_seen = 1;
    unsigned line = r->entry_line;
    if ((v = header_field(h, "Content-Type", &n))) {
        const char *cs = NULL;
        for (size_t i = 0; i + 8 <= n && !cs; i++)
            if (!strncasecmp(v + i, "charset=", 8))
                cs = v + i + 8;
        if (cs) {
            size_t cl = 0;
            while (cs + cl < v + n && cs[cl] != ';' && cs[cl] != ' ')
                cl++;
            if (!((cl == 5 && !strncasecmp(cs, "UTF-8", 5)) || (cl == 4 && !strncasecmp(cs, "UTF8", 4))))
                return rerr(r, r->ctype_line ? r->ctype_line : line, HL_EINVAL,
                            "charset '%.*s' is not supported: save the file as UTF-8 and say charset=UTF-8", clip(cl), cs);
        }
    }
    if ((v = header_field(h, "Language", &n)) && n) {
        const char *code = r->cat->code;
        if (n < 2 || lower(v[0]) != code[0] || lower(v[1]) != code[1] || (n > 2 && v[2] != '_' && v[2] != '-'))
            return rerr(r, r->lang_line ? r->lang_line : line, HL_EINVAL,
                        "header says Language: %.*s but the file is for '%s'", clip(n), v, code);
    }
    if ((v = header_field(h, "Plural-Forms", &n)))
        return parse_plural_forms(r, v, n, r->plural_line ? r->plural_line : line);
    return 0;
}

static char *arena_copy(hl_arena *a, const sbuf *b)
{
    return hl_arena_strndup(a, b->len ? b->p : "", b->len);
}

/* The entry read so far is complete: check it and store it unless fuzzy or untranslated. */
/* The sequence of printf conversions in s ("sd" for "%s … %d"), into out; 0 when it does not
 * fit or a directive is malformed. "%%" is no conversion. */
static int printf_shape(const char *s, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p != '%')
            continue;
        p++;
        if (*p == '%')
            continue;
        while (*p && strchr("-+ #0'123456789.*hlLqjzt", *p))
            p++;
        if (!*p || !strchr("diouxXeEfFgGaAcspn", *p) || o + 1 >= len)
            return 0;
        out[o++] = *p == 'i' ? 'd' : *p;
    }
    out[o] = '\0';
    return 1;
}

static int flush(reader *r)
{
    catalog *c = r->cat;
    int header = !r->have_ctxt && r->id.len == 0;
    if (header) {
        if (r->have_plural)
            return rerr(r, r->entry_line, HL_EINVAL, "the header entry (msgid \"\") cannot have plural forms");
        /* Kept even when fuzzy: msgfmt does, and losing Plural-Forms would pick wrong forms. */
        int rc = read_header(r, r->strs[0].len ? r->strs[0].p : "");
        reset_entry(r);
        return rc;
    }
    int nstr = r->have_plural ? r->nstr : 1, empty = 0;
    for (int i = 0; i < nstr; i++)
        empty |= r->strs[i].len == 0;
    if (r->fuzzy || empty) {
        reset_entry(r);
        return 0;
    }
    /* Translations are used as printf formats (T() with hl_arena_printf): a translation whose
     * conversions differ from its msgid's would read the wrong arguments, so it is refused. */
    for (int i = 0; i < nstr; i++) {
        char want[64] = "", got[64] = "";
        if (!printf_shape(r->id.p, want, sizeof want) || !printf_shape(r->strs[i].p, got, sizeof got) ||
            strcmp(want, got))
            return rerr(r, r->entry_line, HL_EINVAL,
                        "the translation's printf conversions (%s) differ from the msgid's (%s)", got, want);
    }
    const char *ctxt = r->have_ctxt ? r->ctxt.p : NULL; /* read_string always allocates */
    const char *id = r->id.p;
    const entry *dup = cat_find(c, ctxt, id, r->id.len);
    if (dup)
        return rerr(r, r->entry_line, HL_EINVAL, "duplicate entry for msgid \"%.*s\" (first on line %u)",
                    clip(r->id.len), id, dup->line);
    if (c->count >= UINT32_MAX - 1)
        return rerr(r, r->entry_line, HL_ETOOBIG, "too many entries");
    if (c->count == c->cap) {
        size_t n = c->cap ? c->cap * 2 : 64;
        entry *m = realloc(c->msgs, n * sizeof *m);
        if (!m)
            return room(r);
        c->msgs = m;
        c->cap = n;
    }
    if (c->nslots < 2 * (c->count + 1) && cat_rehash(c))
        return room(r);
    entry *m = &c->msgs[c->count];
    memset(m, 0, sizeof *m);
    m->line = r->entry_line;
    m->nstr = (unsigned)nstr;
    char *key;
    if (ctxt) {
        size_t cl = r->ctxt.len;
        key = hl_arena_alloc(c->arena, cl + 1 + r->id.len + 1);
        if (!key)
            return room(r);
        memcpy(key, ctxt, cl);
        key[cl] = '\0'; /* ctxt and msgid stay C strings; the hash mixes in gettext's "\4" */
        memcpy(key + cl + 1, id, r->id.len + 1);
        m->ctxt = key;
        m->msgid = key + cl + 1;
        m->klen = cl + 1 + r->id.len;
    } else {
        if (!(key = arena_copy(c->arena, &r->id)))
            return room(r);
        m->msgid = key;
        m->klen = r->id.len;
    }
    m->key = key;
    m->strs = hl_arena_alloc(c->arena, (size_t)nstr * sizeof *m->strs);
    if (!m->strs || (r->have_plural && !(m->plural = arena_copy(c->arena, &r->plural))))
        return room(r);
    for (int i = 0; i < nstr; i++)
        if (!(m->strs[i] = arena_copy(c->arena, &r->strs[i])))
            return room(r);
    c->count++;
    size_t h = key_hash(m->ctxt, m->msgid, r->id.len) & (c->nslots - 1);
    while (c->slots[h])
        h = (h + 1) & (c->nslots - 1);
    c->slots[h] = (uint32_t)c->count;
    reset_entry(r);
    return 0;
}

/* Reads the quoted string at s[*i] (the opening quote) up to the line end e, appending the
 * decoded text to r->cur. */
static int read_string(reader *r, const char *s, size_t *i, size_t e)
{
    size_t p = *i + 1, from = p, start = r->cur->len;
    for (;;) {
        if (p >= e)
            return rerr(r, r->line, HL_EINVAL, "unterminated string (a '\"' is missing at the end of the line)");
        char c = s[p];
        if (c == '"')
            break;
        if (c != '\\') {
            p++;
            continue;
        }
        if (sb_add(r->cur, s + from, p - from))
            return room(r);
        if (p + 1 >= e)
            return rerr(r, r->line, HL_EINVAL, "unterminated string (it ends with a backslash)");
        static const char esc[] = "n\nt\tr\r\"\"\\\\a\ab\bf\fv\v";
        const char *k = NULL;
        for (size_t j = 0; j < sizeof esc - 1 && !k; j += 2)
            if (esc[j] == s[p + 1])
                k = esc + j + 1;
        if (!k)
            return rerr(r, r->line, HL_EINVAL, "unsupported escape '\\%c' (use \\n \\t \\\" or \\\\)",
                        (unsigned char)s[p + 1] >= 0x20 && (unsigned char)s[p + 1] < 0x7f ? s[p + 1] : '?');
        if (sb_add(r->cur, k, 1))
            return room(r);
        p += 2;
        from = p;
    }
    if (sb_add(r->cur, s + from, p - from))
        return room(r);
    /* Remembers where header fields are, so that their errors point at the right line. */
    if (r->cur == &r->strs[0] && r->have_id && !r->have_ctxt && r->id.len == 0) {
        const char *seg = r->cur->p + start;
        size_t sl = r->cur->len - start;
        if (!r->plural_line && memmem(seg, sl, "Plural-Forms:", 13))
            r->plural_line = r->line;
        if (!r->ctype_line && memmem(seg, sl, "Content-Type:", 13))
            r->ctype_line = r->line;
        if (!r->lang_line && memmem(seg, sl, "Language:", 9))
            r->lang_line = r->line;
    }
    p++;
    while (p < e && (s[p] == ' ' || s[p] == '\t'))
        p++;
    if (p < e)
        return rerr(r, r->line, HL_EINVAL, "unexpected text after the string: '%.*s'", clip(e - p), s + p);
    *i = p;
    return 0;
}

static int read_keyword(reader *r, const char *s, size_t i, size_t e)
{
    size_t k = i;
    while (k < e && (is_lower(s[k]) || s[k] == '_'))
        k++;
    const char *w = s + i;
    size_t wl = k - i;
    int idx = -1;
    if (k < e && s[k] == '[') {
        size_t d = k + 1;
        idx = 0;
        while (d < e && is_digit(s[d]) && idx < 100)
            idx = idx * 10 + (s[d++] - '0');
        if (d == k + 1 || d >= e || s[d] != ']')
            return rerr(r, r->line, HL_EINVAL, "bad index in '%.*s'", clip(e - i), w);
        k = d + 1;
    }
#define IS(word) (wl == sizeof word - 1 && !memcmp(w, word, wl))
    if (IS("msgctxt") && idx < 0) {
        if (complete(r) && flush(r))
            return -1;
        if (r->have_id)
            return rerr(r, r->entry_line, HL_EINVAL, "entry has no msgstr");
        if (r->have_ctxt)
            return rerr(r, r->line, HL_EINVAL, "msgctxt twice (msgid expected)");
        r->have_ctxt = 1;
        r->entry_line = r->line;
        r->cur = &r->ctxt;
    } else if (IS("msgid") && idx < 0) {
        if (complete(r) && flush(r))
            return -1;
        if (r->have_id)
            return rerr(r, r->entry_line, HL_EINVAL, "entry has no msgstr");
        r->have_id = 1;
        if (!r->have_ctxt)
            r->entry_line = r->line;
        r->cur = &r->id;
    } else if (IS("msgid_plural") && idx < 0) {
        if (!r->have_id || r->have_plural || complete(r))
            return rerr(r, r->line, HL_EINVAL, "msgid_plural must follow msgid");
        r->have_plural = 1;
        r->cur = &r->plural;
    } else if (IS("msgstr") && idx < 0) {
        if (!r->have_id || complete(r))
            return rerr(r, r->line, HL_EINVAL, "msgstr without msgid");
        if (r->have_plural)
            return rerr(r, r->line, HL_EINVAL, "an entry with msgid_plural needs msgstr[0], msgstr[1]...");
        r->have_str = 1;
        r->cur = &r->strs[0];
    } else if (IS("msgstr") && idx >= 0) {
        if (!r->have_plural)
            return rerr(r, r->line, HL_EINVAL, "msgstr[%d] without msgid_plural", idx);
        if (idx != r->nstr)
            return rerr(r, r->line, HL_EINVAL, "msgstr[%d] where msgstr[%d] was expected", idx, r->nstr);
        if (idx >= MAX_NPLURALS)
            return rerr(r, r->line, HL_EINVAL, "more than %d plural forms", MAX_NPLURALS);
        r->nstr++;
        r->cur = &r->strs[idx];
    } else {
        return rerr(r, r->line, HL_EINVAL, "unknown keyword '%.*s'", clip(e - i), w);
    }
#undef IS
    if (k >= e || (s[k] != ' ' && s[k] != '\t'))
        return rerr(r, r->line, HL_EINVAL, "a string in quotes must follow the keyword on the same line");
    while (k < e && (s[k] == ' ' || s[k] == '\t'))
        k++;
    if (k >= e || s[k] != '"')
        return rerr(r, r->line, HL_EINVAL, "a string in quotes must follow the keyword on the same line");
    return read_string(r, s, &k, e);
}

/* Flags line "#, fuzzy, c-format". */
static void read_flags(reader *r, const char *s, size_t e)
{
    size_t i = 0;
    while (i < e) {
        while (i < e && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t a = i;
        while (i < e && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
            i++;
        if (i - a == 5 && !memcmp(s + a, "fuzzy", 5))
            r->fuzzy = 1;
    }
}

/* Whether s[0..n) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF);
 * at the first bad byte, *bad is its offset. */
static int utf8_check(const unsigned char *s, size_t n, size_t *bad)
{
    size_t i = 0, k;
    while (i < n && (k = hl_utf8_seq(s + i, n - i)))
        i += k;
    *bad = i;
    return i == n;
}

static int parse_po(reader *r, const char *s, size_t len)
{
    if (len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) { /* a BOM some editors add */
        s += 3;
        len -= 3;
    }
    const char *nul = memchr(s, '\0', len);
    size_t bad = len;
    int valid = utf8_check((const unsigned char *)s, len, &bad);
    if (nul || !valid) {
        int is_nul = nul && (size_t)(nul - s) < bad;
        size_t at = is_nul ? (size_t)(nul - s) : bad;
        unsigned line = 1;
        for (size_t i = 0; i < at; i++)
            line += s[i] == '\n';
        return rerr(r, line, HL_EINVAL, is_nul ? "NUL byte in the file" : "invalid UTF-8 (save the file as UTF-8)");
    }
    size_t pos = 0;
    r->line = 0;
    while (pos < len) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t e = nl ? (size_t)(nl - s) : len, next = nl ? e + 1 : len;
        if (e > pos && s[e - 1] == '\r')
            e--;
        r->line++;
        size_t i = pos;
        while (i < e && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i == e) {
            /* blank line: entries are usually separated so, but a string may still follow */
        } else if (s[i] == '#') {
            if (complete(r) && flush(r))
                return -1;
            if (started(r))
                return rerr(r, r->entry_line, HL_EINVAL, "entry has no msgstr");
            if (i + 1 < e && s[i + 1] == ',')
                read_flags(r, s + i + 2, e - i - 2);
            r->cur = NULL;
        } else if (s[i] == '"') {
            if (!r->cur)
                return rerr(r, r->line, HL_EINVAL, "string outside an entry (no msgid, msgstr... before it)");
            if (read_string(r, s, &i, e))
                return -1;
        } else if (is_lower(s[i])) {
            if (read_keyword(r, s, i, e))
                return -1;
        } else {
            return rerr(r, r->line, HL_EINVAL, "unexpected text '%.*s'", clip(e - i), s + i);
        }
        pos = next;
    }
    if (complete(r))
        return flush(r);
    if (started(r))
        return rerr(r, r->entry_line, HL_EINVAL, "entry has no msgstr");
    return 0;
}

/* Plural entries must have exactly nplurals forms, known only once the header is read. */
static int check_forms(reader *r)
{
    catalog *c = r->cat;
    for (size_t i = 0; i < c->count; i++) {
        const entry *m = &c->msgs[i];
        if (m->plural && m->nstr != (unsigned)c->pl.nplurals)
            return rerr(r, m->line, HL_EINVAL, "%u plural forms but the header says nplurals=%d", m->nstr,
                        c->pl.nplurals);
    }
    return 0;
}

static int set_default_plural(catalog *c)
{
    const char *e = !strncmp(c->code, "fr", 2) ? "n > 1" : "n != 1";
    c->pl.nplurals = 2;
    return plural_parse(&c->pl, e, strlen(e)) ? -1 : 0;
}

static int read_file(const char *path, char **out, size_t *outlen, hl_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return hl_err_set(err, HL_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return hl_err_set(err, HL_EINVAL, "%s: not a regular file", path);
    }
    if (st.st_size > (off_t)MAX_FILE) {
        close(fd);
        return hl_err_set(err, HL_ETOOBIG, "%s: larger than %u bytes", path, MAX_FILE);
    }
    size_t cap = (size_t)st.st_size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return hl_err_set(err, HL_ENOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (len == cap - 1) { /* the file grew while read: give it room, up to the limit */
            if (cap > MAX_FILE) {
                free(buf);
                close(fd);
                return hl_err_set(err, HL_ETOOBIG, "%s: larger than %u bytes", path, MAX_FILE);
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                close(fd);
                return hl_err_set(err, HL_ENOMEM, "%s: out of memory", path);
            }
            buf = b;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return hl_err_set(err, HL_EIO, "%s: %s", path, strerror(e));
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    *outlen = len;
    return HL_OK;
}

static int load_catalog(catalog *c, const char *path, hl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(path, &text, &len, err);
    if (rc)
        return rc;
    if (!(c->arena = hl_arena_new(64 * 1024))) {
        free(text);
        return hl_err_set(err, HL_ENOMEM, "%s: out of memory", path);
    }
    reader r;
    memset(&r, 0, sizeof r);
    r.path = path;
    r.err = err;
    r.cat = c;
    if (set_default_plural(c))
        rc = hl_err_set(err, HL_ERR, "%s: default plural rule refused", path);
    else if (parse_po(&r, text, len) || check_forms(&r))
        rc = r.code ? r.code : HL_EINVAL;
    free(r.ctxt.p);
    free(r.id.p);
    free(r.plural.p);
    for (int i = 0; i < MAX_NPLURALS; i++)
        free(r.strs[i].p);
    free(text);
    return rc;
}

/* 0 with the code for "ll.po" or "ll_CC.po"; 1 for a file to skip (dot file, not .po); -1
 * for any other *.po, which is refused rather than silently left out. */
static int po_code(const char *name, char code[8])
{
    size_t n = strlen(name);
    if (name[0] == '.' || n < 3 || strcmp(name + n - 3, ".po"))
        return 1;
    n -= 3;
    if (!((n == 2 || (n == 5 && name[2] == '_' && is_upper(name[3]) && is_upper(name[4]))) &&
          is_lower(name[0]) && is_lower(name[1])))
        return -1;
    memcpy(code, name, n);
    code[n] = '\0';
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int hl_i18n_load(hl_i18n **out, const char *dir, hl_err *err)
{
    if (!out || !dir || !*dir)
        return hl_err_set(err, HL_EINVAL, "hl_i18n_load: no output pointer or folder");
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return hl_err_set(err, errno == ENOENT ? HL_ENOTFOUND : HL_EIO, "%s: %s", dir, strerror(errno));
    char *names[MAX_CATALOGS];
    size_t count = 0;
    int rc = HL_OK;
    struct dirent *de;
    while (rc == HL_OK && (de = readdir(d))) {
        char code[8];
        int k = po_code(de->d_name, code);
        if (k > 0)
            continue;
        if (k < 0)
            rc = hl_err_set(err, HL_EINVAL, "%s/%s: the file name must be a language code: ll.po or ll_CC.po (en.po, pt_BR.po)",
                            dir, de->d_name);
        else if (count == MAX_CATALOGS)
            rc = hl_err_set(err, HL_ETOOBIG, "%s: more than %d catalogs", dir, MAX_CATALOGS);
        else if (!(names[count] = strdup(de->d_name)))
            rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        else
            count++;
    }
    closedir(d);
    hl_i18n *t = rc ? NULL : calloc(1, sizeof *t);
    if (!rc && (!t || (count && !(t->cats = calloc(count, sizeof *t->cats)))))
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
    if (!rc)
        qsort(names, count, sizeof names[0], cmp_names);
    for (size_t i = 0; !rc && i < count; i++) {
        catalog *c = &t->cats[t->count++];
        po_code(names[i], c->code);
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) >= sizeof path)
            rc = hl_err_set(err, HL_ETOOBIG, "%s: path too long", dir);
        else
            rc = load_catalog(c, path, err);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    if (rc) {
        hl_i18n_free(t);
        return rc;
    }
    *out = t;
    return HL_OK;
}

/* ---------------------------------------------------------------- lookups */

/* Splits a tag "en", "en-GB", "en_gb" into a lower-case language and an upper-case region
 * (empty when absent, or when the second part is a script such as "Latn"). 0 if malformed. */
static int split_tag(const char *s, size_t n, char lang[4], char region[4])
{
    size_t i = 0;
    while (i < n && is_alpha(s[i]))
        i++;
    if (i < 2 || i > 3)
        return 0;
    for (size_t k = 0; k < i; k++)
        lang[k] = (char)lower(s[k]);
    lang[i] = '\0';
    region[0] = '\0';
    if (i == n)
        return 1;
    if (s[i] != '-' && s[i] != '_')
        return 0;
    size_t j = ++i;
    while (j < n && (is_alpha(s[j]) || is_digit(s[j]) || s[j] == '-' || s[j] == '_'))
        j++;
    if (j != n || j == i)
        return 0;
    size_t sub = i;
    while (sub < n && s[sub] != '-' && s[sub] != '_')
        sub++;
    if (sub - i == 2 && is_alpha(s[i]) && is_alpha(s[i + 1])) {
        region[0] = (char)upper(s[i]);
        region[1] = (char)upper(s[i + 1]);
        region[2] = '\0';
    }
    return 1;
}

/* How well tag (lang, region) names catalog code: 2 same language and region, 1 same
 * language (either side has a region the other lacks or another region), 0 not at all. */
static int tag_match(const char *lang, const char *region, const char *code)
{
    size_t ll = strlen(lang);
    if (strncmp(code, lang, ll) || (code[ll] && code[ll] != '_'))
        return 0;
    const char *cr = code[ll] ? code + ll + 1 : "";
    return strcmp(cr, region) ? 1 : 2;
}

static const catalog *find_cat(const hl_i18n *t, const char *lang)
{
    if (!t || !lang)
        return NULL;
    char l[4], r[4];
    size_t n = strnlen(lang, MAX_TAG + 1);
    if (n > MAX_TAG || !split_tag(lang, n, l, r))
        return NULL;
    const catalog *best = NULL;
    for (size_t i = 0; i < t->count; i++) {
        int m = tag_match(l, r, t->cats[i].code);
        if (m == 2)
            return &t->cats[i];
        if (m == 1 && !best && !strchr(t->cats[i].code, '_')) /* en_GB falls back to en only */
            best = &t->cats[i];
    }
    return best;
}

const char *hl_i18n_get(const hl_i18n *i18n, const char *lang, const char *msgid)
{
    return hl_i18n_pget(i18n, lang, NULL, msgid);
}

const char *hl_i18n_pget(const hl_i18n *i18n, const char *lang, const char *ctxt, const char *msgid)
{
    if (!msgid)
        return "";
    const catalog *c = find_cat(i18n, lang);
    const entry *m = c ? cat_find(c, ctxt, msgid, strlen(msgid)) : NULL;
    return m ? m->strs[0] : msgid;
}

const char *hl_i18n_nget(const hl_i18n *i18n, const char *lang, const char *msgid, const char *plural, long n)
{
    if (!msgid)
        return "";
    unsigned long un = magnitude(n);
    const catalog *c = find_cat(i18n, lang);
    const entry *m = c ? cat_find(c, NULL, msgid, strlen(msgid)) : NULL;
    if (m && m->plural) {
        unsigned long f = plural_eval(&c->pl, c->pl.root, un);
        return m->strs[f < m->nstr ? f : 0];
    }
    return un > 1 && plural ? plural : msgid; /* the French rule: the source is French */
}

int hl_i18n_each(const hl_i18n *i18n, const char *lang,
                 int (*fn)(void *ud, const char *ctxt, const char *msgid, const char *msgid_plural,
                           const char *msgstr),
                 void *ud)
{
    const catalog *c = NULL;
    for (size_t i = 0; i18n && lang && fn && i < i18n->count && !c; i++)
        if (!strcmp(i18n->cats[i].code, lang))
            c = &i18n->cats[i];
    if (!c)
        return HL_ENOTFOUND;
    for (size_t i = 0; i < c->count; i++) {
        const entry *m = &c->msgs[i];
        int rc = fn(ud, m->ctxt, m->msgid, m->plural, m->strs[0]);
        if (rc)
            return rc;
    }
    return HL_OK;
}

const char *hl_i18n_tpl_translate(void *ud, const char *msgid)
{
    const hl_i18n_tpl *t = ud;
    return t ? hl_i18n_get(t->i18n, t->lang, msgid) : msgid;
}

/* ---------------------------------------------------------------- negotiation */

size_t hl_i18n_languages(const hl_i18n *i18n, const char **out, size_t max)
{
    size_t n = 0;
    const char *fr = HL_I18N_DEFAULT;
    for (size_t i = 0; i18n && i < i18n->count; i++)
        if (!strcmp(i18n->cats[i].code, HL_I18N_DEFAULT))
            fr = i18n->cats[i].code;
    if (out && n < max)
        out[n] = fr;
    n++;
    for (size_t i = 0; i18n && i < i18n->count; i++) {
        if (!strcmp(i18n->cats[i].code, HL_I18N_DEFAULT))
            continue;
        if (out && n < max)
            out[n] = i18n->cats[i].code;
        n++;
    }
    return n;
}

/* "q=0.8" → 800; -1 when malformed. RFC 9110: 0 or 1 and at most three decimals. */
static int parse_q(const char *s, size_t n)
{
    if (n < 1 || (s[0] != '0' && s[0] != '1'))
        return -1;
    int q = (s[0] - '0') * 1000, scale = 100;
    if (n == 1)
        return q;
    if (s[1] != '.' || n > 5)
        return -1;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (!is_digit(s[i]))
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > 1000 ? -1 : q;
}

typedef struct range {
    char lang[4], region[4];
    int any;             /* "*" */
    int q;               /* thousandths */
} range;

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* One Accept-Language item s[0..n): "en-GB;q=0.8". 0 if malformed (then skipped). */
static int parse_range(const char *s, size_t n, range *r)
{
    while (n && is_ows(*s))
        s++, n--;
    while (n && is_ows(s[n - 1]))
        n--;
    const char *semi = memchr(s, ';', n);
    size_t tl = semi ? (size_t)(semi - s) : n;
    while (tl && is_ows(s[tl - 1]))
        tl--;
    r->q = 1000;
    r->any = tl == 1 && s[0] == '*';
    if (!r->any && (tl > MAX_TAG || !split_tag(s, tl, r->lang, r->region)))
        return 0;
    while (semi) { /* parameters: only q is defined; others are ignored */
        const char *p = semi + 1, *e = s + n;
        semi = memchr(p, ';', (size_t)(e - p));
        const char *pe = semi ? semi : e;
        while (p < pe && is_ows(*p))
            p++;
        while (pe > p && is_ows(pe[-1]))
            pe--;
        if (pe - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            r->q = parse_q(p + 2, (size_t)(pe - p - 2));
            if (r->q < 0)
                return 0;
        }
    }
    return 1;
}

typedef struct cand {
    const char *code;
    int q, order, spec, excluded, seen;
} cand;

const char *hl_i18n_negotiate(const hl_i18n *i18n, const char *choice, const char *accept_language)
{
    const char *codes[MAX_CATALOGS + 1];
    size_t nc = hl_i18n_languages(i18n, codes, MAX_CATALOGS + 1);
    if (nc > MAX_CATALOGS + 1)
        nc = MAX_CATALOGS + 1;
    char l[4], r[4];
    size_t n;
    if (choice && (n = strnlen(choice, MAX_TAG + 1)) <= MAX_TAG && split_tag(choice, n, l, r)) {
        const char *partial = NULL;
        for (size_t i = 0; i < nc; i++) {
            int m = tag_match(l, r, codes[i]);
            if (m == 2)
                return codes[i];
            if (m == 1 && !partial)
                partial = codes[i];
        }
        if (partial)
            return partial;
    }
    if (!accept_language)
        return codes[0];
    cand cs[MAX_CATALOGS + 1];
    memset(cs, 0, sizeof cs);
    for (size_t i = 0; i < nc; i++)
        cs[i].code = codes[i];
    const char *p = accept_language;
    for (int order = 0; *p && order < MAX_RANGES;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        range rg;
        if (parse_range(p, len, &rg)) {
            for (size_t i = 0; i < nc; i++) {
                int spec = rg.any ? 0 : tag_match(rg.lang, rg.region, codes[i]);
                if (!rg.any && !spec)
                    continue;
                cand *c = &cs[i];
                if (spec == 2 && rg.q == 0)
                    c->excluded = 1; /* "en;q=0": not English, whatever else says */
                if (!c->seen || rg.q > c->q || (rg.q == c->q && spec > c->spec)) {
                    c->q = rg.q;
                    c->order = order;
                    c->spec = spec;
                    c->seen = 1;
                }
            }
            order++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    const cand *best = NULL;
    for (size_t i = 0; i < nc; i++) {
        const cand *c = &cs[i];
        if (!c->seen || c->excluded || c->q <= 0)
            continue;
        if (!best || c->q > best->q || (c->q == best->q && (c->order < best->order ||
                                                            (c->order == best->order && c->spec > best->spec))))
            best = c;
    }
    return best ? best->code : codes[0];
}

/* ---------------------------------------------------------------- formatting */

typedef struct out {
    char *buf;
    size_t len, pos;
    int over;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->over || n >= o->len - o->pos) {
        o->over = 1;
        return;
    }
    memcpy(o->buf + o->pos, s, n);
    o->pos += n;
    o->buf[o->pos] = '\0';
}

static void puts_(out *o, const char *s) { put(o, s, strlen(s)); }

static int finish(out *o)
{
    if (o->over) {
        o->buf[0] = '\0';
        return HL_ETOOBIG;
    }
    return HL_OK;
}

static int english(const char *lang)
{
    return lang && lower(lang[0]) == 'e' && lower(lang[1]) == 'n' && (!lang[2] || lang[2] == '_' || lang[2] == '-');
}

#define NNBSP "\xe2\x80\xaf" /* U+202F, between groups of thousands in French */
#define NBSP "\xc2\xa0"      /* U+00A0, between a French amount and its currency */

/* digits (no sign), grouped by three from the right with sep. */
static void put_grouped(out *o, const char *digits, size_t n, const char *sep)
{
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            puts_(o, sep);
        put(o, digits + i, 1);
    }
}

static size_t ull_digits(unsigned long long v, char *d)
{
    char tmp[24];
    size_t n = 0, k = 0;
    do
        tmp[n++] = (char)('0' + v % 10);
    while (v /= 10);
    while (n)
        d[k++] = tmp[--n];
    return k;
}

int hl_i18n_format_price(const char *lang, long long cents, const char *currency, char *buf, size_t len)
{
    static const struct {
        const char *code, *en, *fr;
    } syms[] = {{"EUR", "€", "€"}, {"USD", "$", "$US"}, {"GBP", "£", "£GB"}};
    if (!buf || !len)
        return HL_EINVAL;
    buf[0] = '\0';
    if (!currency || strlen(currency) != 3 || !is_upper(currency[0]) || !is_upper(currency[1]) ||
        !is_upper(currency[2]))
        return HL_EINVAL;
    int en = english(lang);
    const char *sym = NULL;
    for (size_t i = 0; i < sizeof syms / sizeof syms[0] && !sym; i++)
        if (!strcmp(currency, syms[i].code))
            sym = en ? syms[i].en : syms[i].fr;
    unsigned long long mag = cents < 0 ? 0ull - (unsigned long long)cents : (unsigned long long)cents;
    char units[24], frac[3] = {(char)('0' + mag % 100 / 10), (char)('0' + mag % 10), 0};
    size_t nu = ull_digits(mag / 100, units);
    out o = {buf, len, 0, 0};
    if (cents < 0)
        puts_(&o, "-");
    if (en) {
        if (sym)
            puts_(&o, sym);
        else {
            puts_(&o, currency);
            puts_(&o, NBSP);
        }
        put_grouped(&o, units, nu, ",");
        puts_(&o, ".");
        puts_(&o, frac);
    } else {
        put_grouped(&o, units, nu, NNBSP);
        puts_(&o, ",");
        puts_(&o, frac);
        puts_(&o, NBSP);
        puts_(&o, sym ? sym : currency);
    }
    return finish(&o);
}

int hl_i18n_format_number(const char *lang, double v, int decimals, char *buf, size_t len)
{
    if (!buf || !len)
        return HL_EINVAL;
    buf[0] = '\0';
    if (!isfinite(v) || decimals < 0 || decimals > 9)
        return HL_EINVAL;
    char tmp[400]; /* DBL_MAX has 309 integer digits */
    int n = snprintf(tmp, sizeof tmp, "%.*f", decimals, v);
    if (n < 0 || (size_t)n >= sizeof tmp)
        return HL_EINVAL;
    /* Whatever the process locale makes of the decimal point, only the digits are used. */
    const char *s = tmp;
    int neg = *s == '-';
    s += neg;
    size_t ni = 0;
    while (is_digit(s[ni]))
        ni++;
    const char *fr = s[ni] ? s + ni + 1 : "";
    int zero = 1;
    for (const char *d = s; *d; d++)
        if (is_digit(*d) && *d != '0')
            zero = 0;
    int en = english(lang);
    out o = {buf, len, 0, 0};
    if (neg && !zero)
        puts_(&o, "-");
    put_grouped(&o, s, ni, en ? "," : NNBSP);
    if (decimals) {
        puts_(&o, en ? "." : ",");
        puts_(&o, fr);
    }
    return finish(&o);
}

static int leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* 0 = Monday. Counts days from 1 March of year 0 (proleptic Gregorian), so that the leap
 * day is the last of its year; that day was a Wednesday. */
static int weekday(int y, int m, int d)
{
    if (m < 3) {
        y--;
        m += 12;
    }
    long days = 365L * y + y / 4 - y / 100 + y / 400 + (153L * (m - 3) + 2) / 5 + d - 1;
    return (int)((days + 2) % 7);
}

int hl_i18n_format_date(const char *lang, int year, int month, int day, char *buf, size_t len)
{
    static const char *const fr_days[7] = {"lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"};
    static const char *const en_days[7] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
    static const char *const fr_months[12] = {"janvier", "février", "mars", "avril", "mai", "juin", "juillet",
                                              "août", "septembre", "octobre", "novembre", "décembre"};
    static const char *const en_months[12] = {"January", "February", "March", "April", "May", "June", "July",
                                              "August", "September", "October", "November", "December"};
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (!buf || !len)
        return HL_EINVAL;
    buf[0] = '\0';
    if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 ||
        day > mdays[month - 1] + (month == 2 && leap(year)))
        return HL_EINVAL;
    int wd = weekday(year, month, day);
    char tmp[80];
    if (english(lang))
        snprintf(tmp, sizeof tmp, "%s, %d %s %d", en_days[wd], day, en_months[month - 1], year);
    else
        snprintf(tmp, sizeof tmp, "%s %d%s %s %d", fr_days[wd], day, day == 1 ? "er" : "", fr_months[month - 1], year);
    out o = {buf, len, 0, 0};
    puts_(&o, tmp);
    return finish(&o);
}
