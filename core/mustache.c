/* Mustache templates (see mustache.h). A template and each of its partials is compiled into
 * one flat array of nodes (a container records where its children end) and one string pool,
 * so that rendering is a loop over arrays that allocates nothing but the output buffer. */
#include "core/mustache.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SOURCE (4u << 20)      /* one template or partial */
#define MAX_ALL_SOURCE (16u << 20) /* a template and all its partials */
#define MAX_UNITS 4096             /* partials per template */
#define MAX_NEST 100               /* open sections and blocks in one text */
#define MAX_NAME 255
#define MAX_DELIM 16
#define MAX_PARTIAL_DEPTH 64
#define MAX_DEPTH 512              /* sections, partials and blocks entered while rendering */
#define MAX_OUTPUT (64u << 20)
#define MAX_STEPS (1ul << 25)      /* nodes visited by one render: stops exponential partials */
#define MAX_TRANSLATED (1u << 20)  /* text a {{_ }} tag may become */

enum { N_TEXT, N_VAR, N_RAW, N_SECTION, N_INVERTED, N_PARTIAL, N_PARENT, N_BLOCK };

/* Open containers while parsing. K_ARG is a block given to a parent ({{<p}}{{$arg}}); the
 * tags of parents and of their arguments print nothing where they stand, which matters for
 * standalone lines (see rest_blank). */
enum { K_NONE, K_SECTION, K_BLOCK, K_PARENT, K_ARG };

typedef struct node {
    uint8_t type;
    uint8_t nparts;    /* names looked up in the context: parts of a.b.c, 0 for "." */
    uint8_t bol;       /* partial, parent, block: its content starts a line of output */
    uint32_t line;
    uint32_t str, len; /* text; or name (parts NUL-separated, then a NUL) */
    uint32_t ind, ind_len; /* partial, parent, block: prefix for each line of the content */
    uint32_t end;      /* index after the node's last descendant */
    uint32_t partial;  /* partial, parent: index in hl_tpl.units */
} node;

typedef struct unit {
    char *name;
    node *nodes;
    size_t count, cap;
    char *pool;
    size_t plen, pcap;
    char *src;         /* loader text, compiled after the text that named it */
    size_t srclen;
    int missing;
} unit;

struct hl_tpl {
    unit **units;      /* [0] is the template, then its partials and parents */
    size_t count, cap;
    uint32_t *slots;   /* partial name hash -> index + 1; only while compiling */
    size_t nslots;
    size_t total;
    hl_tpl_opts opts;
};

/* ---------------------------------------------------------------- compiling */

typedef struct open_item {
    uint32_t node;
    int kind;
    uint32_t line;
    const char *name;  /* in the source, for matching the end tag */
    size_t nlen;
    const char *dedent; /* what was stripped from lines before this container */
    size_t dlen;
} open_item;

typedef struct parser {
    hl_tpl *t;
    unit *u;
    hl_err *err;
    const char *s;
    size_t len, pos;
    size_t lpos;       /* newlines counted up to here */
    uint32_t line;
    char otag[MAX_DELIM], ctag[MAX_DELIM];
    size_t olen, clen;
    open_item stack[MAX_NEST];
    int depth;
    int clean;         /* the line so far holds only blanks and transparent tags */
    int bol;           /* s[pos] starts a line */
    const char *dedent; /* blanks stripped from each line inside a block (its indentation) */
    size_t dlen;
    long last_text;    /* index of a text node that more text may be appended to, or -1 */
    int memo_ok;       /* rest_blank's last answer, valid for memo_lo..memo_hi; -1 none */
    size_t memo_lo, memo_hi, memo_eol;
} parser;

typedef struct tag {
    char type;         /* 'v' for a variable, else the sigil: ! # ^ / > < $ = & { */
    const char *name;  /* content, without surrounding white space */
    size_t nlen;
    size_t start, end;
} tag;

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int all_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_blank(s[i]))
            return 0;
    return 1;
}

static int clip(size_t n) { return n > 60 ? 60 : (int)n; }

static uint32_t line_at(parser *p, size_t pos)
{
    while (p->lpos < pos) {
        const char *nl = memchr(p->s + p->lpos, '\n', pos - p->lpos);
        if (!nl) {
            p->lpos = pos;
            break;
        }
        p->line++;
        p->lpos = (size_t)(nl - p->s) + 1;
    }
    return p->line;
}

static int perr(parser *p, uint32_t line, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int perr(parser *p, uint32_t line, int code, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    hl_err_set(p->err, code, "%s:%u: %s", p->u->name, line, msg);
    return -1;
}

static int oom(parser *p)
{
    hl_err_set(p->err, HL_ENOMEM, "%s: out of memory", p->u->name);
    return -1;
}

static int grow(void **ptr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need) {
        if (n > SIZE_MAX / 4 / elem)
            return -1;
        n *= 2;
    }
    void *q = realloc(*ptr, n * elem);
    if (!q)
        return -1;
    *ptr = q;
    *cap = n;
    return 0;
}

static int pool_add(parser *p, const char *s, size_t n, uint32_t *off)
{
    unit *u = p->u;
    if (grow((void **)&u->pool, &u->pcap, u->plen + n + 1, 1))
        return oom(p);
    if (off)
        *off = (uint32_t)u->plen;
    if (n)
        memcpy(u->pool + u->plen, s, n);
    u->plen += n;
    return 0;
}

static int add_node(parser *p, int type, uint32_t line, uint32_t *idx)
{
    unit *u = p->u;
    if (grow((void **)&u->nodes, &u->cap, u->count + 1, sizeof(node)))
        return oom(p);
    node *n = &u->nodes[u->count];
    memset(n, 0, sizeof *n);
    n->type = (uint8_t)type;
    n->line = line;
    n->end = (uint32_t)u->count + 1;
    *idx = (uint32_t)u->count++;
    p->last_text = -1;
    return 0;
}

static int in_parent(const parser *p)
{
    return p->depth && p->stack[p->depth - 1].kind == K_PARENT;
}

static int add_text(parser *p, uint32_t start);

/* Appends text [a, b), removing the enclosing block's indentation from each line that starts
 * in it: a block's content is re-indented where the block is expanded (~inheritance spec). */
static int emit_text(parser *p, size_t a, size_t b, int bol)
{
    unit *u = p->u;
    if (a >= b || in_parent(p)) /* text given to a parent outside its blocks is ignored */
        return 0;
    uint32_t start = (uint32_t)u->plen;
    if (!p->dlen) {
        if (pool_add(p, p->s + a, b - a, NULL))
            return -1;
    } else {
        while (a < b) {
            for (size_t k = 0; bol && k < p->dlen && a < b && p->s[a] == p->dedent[k]; k++)
                a++;
            const char *nl = memchr(p->s + a, '\n', b - a);
            size_t e = nl ? (size_t)(nl - p->s) + 1 : b;
            if (pool_add(p, p->s + a, e - a, NULL))
                return -1;
            a = e;
            bol = 1;
        }
    }
    return add_text(p, start);
}

/* Makes pool bytes [start, plen) a text node, or part of the text node just before. */
static int add_text(parser *p, uint32_t start)
{
    unit *u = p->u;
    uint32_t n = (uint32_t)u->plen - start;
    if (!n)
        return 0;
    if (p->last_text >= 0) {
        u->nodes[p->last_text].len += n;
        return 0;
    }
    uint32_t idx;
    if (add_node(p, N_TEXT, 0, &idx))
        return -1;
    u->nodes[idx].str = start;
    u->nodes[idx].len = n;
    p->last_text = idx;
    return 0;
}

/* Reads the tag whose opening delimiter is at s[at]; -1 if it is never closed. */
static int scan_tag(const parser *p, size_t at, tag *tg)
{
    size_t q = at + p->olen;
    char close[MAX_DELIM + 1];
    size_t cl = 0;
    tg->type = 'v';
    if (q < p->len && p->s[q] && strchr("!#^/><$=&{", p->s[q]))
        tg->type = p->s[q++];
    if (tg->type == '{' || tg->type == '=')
        close[cl++] = tg->type == '{' ? '}' : '=';
    memcpy(close + cl, p->ctag, p->clen);
    cl += p->clen;
    const char *c = memmem(p->s + q, p->len - q, close, cl);
    if (!c)
        return -1;
    size_t e = (size_t)(c - p->s);
    while (q < e && is_space(p->s[q]))
        q++;
    while (e > q && is_space(p->s[e - 1]))
        e--;
    tg->name = p->s + q;
    tg->nlen = e - q;
    tg->start = at;
    tg->end = (size_t)(c - p->s) + cl;
    return 0;
}

/* Whether only blanks follow q up to the end of the line, apart from tags that print nothing
 * where they stand: a parent's tags and those of the blocks given to it, so that
 * "{{<layout}}{{$body}}" or "{{/body}}{{/layout}}" can make a standalone line. effect is
 * what the tag ending at q does to the open stack (a K_ kind pushed, -1 popped, 0 nothing).
 * The answer holds for every transparent tag passed over, so it is remembered: one scan per
 * line. memo_hi is where the scan stopped (the line end when the answer is yes). */
static int rest_blank(parser *p, size_t q, int effect)
{
    if (p->memo_ok >= 0 && q >= p->memo_lo && q <= p->memo_hi)
        return p->memo_ok;
    int sim[MAX_NEST + 1], ns = 0, rd = p->depth, ok = 0;
    if (effect > 0)
        sim[ns++] = effect;
    else if (effect < 0)
        rd--;
    size_t i = q;
    for (;;) {
        while (i < p->len && is_blank(p->s[i]))
            i++;
        if (i == p->len || p->s[i] == '\n') {
            ok = 1;
            p->memo_eol = i < p->len ? i + 1 : i;
            break;
        }
        if (p->s[i] == '\r' && i + 1 < p->len && p->s[i + 1] == '\n') {
            ok = 1;
            p->memo_eol = i + 2;
            break;
        }
        tag tg;
        if (p->len - i < p->olen || memcmp(p->s + i, p->otag, p->olen) || scan_tag(p, i, &tg))
            break;
        int top = ns ? sim[ns - 1] : rd ? p->stack[rd - 1].kind : K_NONE;
        if (tg.type == '<' && ns + rd < MAX_NEST)
            sim[ns++] = K_PARENT;
        else if (tg.type == '$' && top == K_PARENT && ns + rd < MAX_NEST)
            sim[ns++] = K_ARG;
        else if (tg.type == '/' && (top == K_PARENT || top == K_ARG)) {
            if (ns)
                ns--;
            else
                rd--;
        } else
            break;
        i = tg.end;
    }
    p->memo_lo = q;
    p->memo_hi = i;
    p->memo_ok = ok;
    return ok;
}

static int check_name(parser *p, const tag *tg, uint32_t line)
{
    if (!tg->nlen)
        return perr(p, line, HL_EINVAL, "empty tag");
    if (tg->nlen > MAX_NAME)
        return perr(p, line, HL_EINVAL, "tag name too long");
    for (size_t i = 0; i < tg->nlen; i++) {
        unsigned char c = (unsigned char)tg->name[i];
        if (c <= ' ' || c == 0x7f)
            return perr(p, line, HL_EINVAL, "bad tag name '%.*s'", clip(tg->nlen), tg->name);
    }
    if (strchr("v&{#^", tg->type) && !(tg->nlen == 1 && tg->name[0] == '.')) {
        const char *s = tg->name;
        size_t n = tg->nlen;
        if (s[0] == '.' || s[n - 1] == '.' || memmem(s, n, "..", 2))
            return perr(p, line, HL_EINVAL, "bad name '%.*s'", clip(n), s);
    }
    return 0;
}

static int set_delims(parser *p, const tag *tg, uint32_t line)
{
    const char *s = tg->name, *e = s + tg->nlen, *a = s, *b;
    while (a < e && !is_space(*a))
        a++;
    for (b = a; b < e && is_space(*b); b++)
        ;
    size_t n1 = (size_t)(a - s), n2 = (size_t)(e - b);
    int bad = !n1 || !n2 || n1 > MAX_DELIM || n2 > MAX_DELIM || memchr(s, '=', n1) ||
              memchr(b, '=', n2);
    for (const char *c = b; !bad && c < e; c++)
        bad = is_space(*c);
    if (bad)
        return perr(p, line, HL_EINVAL, "bad set-delimiter tag (want {{=<%% %%>=}})");
    memcpy(p->otag, s, n1);
    p->olen = n1;
    memcpy(p->ctag, b, n2);
    p->clen = n2;
    p->memo_ok = -1;
    return 0;
}

static uint32_t hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    while (n--)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static int rehash(hl_tpl *t)
{
    size_t n = t->nslots ? t->nslots * 2 : 64;
    uint32_t *s = calloc(n, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 1; i < t->count; i++) {
        size_t h = hash(t->units[i]->name, strlen(t->units[i]->name)) & (n - 1);
        while (s[h])
            h = (h + 1) & (n - 1);
        s[h] = (uint32_t)i + 1;
    }
    free(t->slots);
    t->slots = s;
    t->nslots = n;
    return 0;
}

/* The index of partial name, loading it on first use. Its text is compiled later (see
 * hl_tpl_compile), so that a partial naming itself just finds its own entry. */
static int get_unit(parser *p, const tag *tg, uint32_t line, uint32_t *idx)
{
    hl_tpl *t = p->t;
    if (t->nslots < 2 * (t->count + 1) && rehash(t))
        return oom(p);
    size_t h = hash(tg->name, tg->nlen) & (t->nslots - 1);
    for (; t->slots[h]; h = (h + 1) & (t->nslots - 1)) {
        const char *name = t->units[t->slots[h] - 1]->name;
        if (strlen(name) == tg->nlen && !memcmp(name, tg->name, tg->nlen)) {
            *idx = t->slots[h] - 1;
            return 0;
        }
    }
    if (t->count >= MAX_UNITS)
        return perr(p, line, HL_ETOOBIG, "more than %d partials", MAX_UNITS);
    if (grow((void **)&t->units, &t->cap, t->count + 1, sizeof(unit *)))
        return oom(p);
    unit *u = calloc(1, sizeof *u);
    if (!u || !(u->name = strndup(tg->name, tg->nlen))) {
        free(u);
        return oom(p);
    }
    t->units[t->count] = u;
    t->slots[h] = (uint32_t)t->count + 1;
    *idx = (uint32_t)t->count++;
    size_t len = 0;
    char *text = t->opts.loader ? t->opts.loader(t->opts.loader_ud, u->name, &len) : NULL;
    if (!text) {
        u->missing = 1;
        if (t->opts.strict_partials)
            return perr(p, line, HL_ENOTFOUND, "partial '%.*s' not found", clip(tg->nlen), tg->name);
        return 0;
    }
    if (len > MAX_SOURCE || t->total + len > MAX_ALL_SOURCE) {
        free(text);
        return perr(p, line, HL_ETOOBIG, "partial '%.*s' too large", clip(tg->nlen), tg->name);
    }
    t->total += len;
    u->src = text;
    u->srclen = len;
    return 0;
}

/* The part of an indentation that is kept in the output: lines inside a block lose the
 * block's own indentation (emit_text), so nested indentation is relative to it. */
static void strip_dedent(const parser *p, const char **ws, size_t *n)
{
    size_t k = 0;
    while (k < p->dlen && k < *n && (*ws)[k] == p->dedent[k])
        k++;
    *ws += k;
    *n -= k;
}

static int set_indent(parser *p, uint32_t idx, const char *ws, size_t n)
{
    uint32_t off;
    if (pool_add(p, ws, n, &off))
        return -1;
    p->u->nodes[idx].ind = off;
    p->u->nodes[idx].ind_len = (uint32_t)n;
    return 0;
}

static int add_name(parser *p, uint32_t idx, const tag *tg, int dotted)
{
    node *n;
    uint32_t off;
    int parts = 1;
    if (dotted && tg->nlen == 1 && tg->name[0] == '.') {
        p->u->nodes[idx].nparts = 0;
        return 0;
    }
    if (pool_add(p, tg->name, tg->nlen, &off) || pool_add(p, "", 1, NULL))
        return -1;
    if (dotted)
        for (size_t i = 0; i < tg->nlen; i++)
            if (p->u->pool[off + i] == '.') {
                p->u->pool[off + i] = '\0';
                parts++;
            }
    n = &p->u->nodes[idx];
    n->str = off;
    n->len = (uint32_t)tg->nlen;
    n->nparts = (uint8_t)parts;
    return 0;
}

/* {{_ Texte source}}: see hl_tpl_opts.translate. */
static int is_translation(const tag *tg)
{
    return tg->type == 'v' && tg->nlen >= 2 && tg->name[0] == '_' && is_space(tg->name[1]);
}

static int escape_into_pool(parser *p, const char *s, size_t n)
{
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = s[i] == '&' ? "&amp;" : s[i] == '<' ? "&lt;" : s[i] == '>' ? "&gt;"
                      : s[i] == '"' ? "&quot;" : s[i] == '\'' ? "&#39;" : NULL;
        if (e) {
            if (pool_add(p, s + a, i - a, NULL) || pool_add(p, e, strlen(e), NULL))
                return -1;
            a = i + 1;
        }
    }
    return pool_add(p, s + a, n - a, NULL);
}

static int emit_translation(parser *p, const tag *tg, uint32_t line)
{
    char *src = malloc(tg->nlen); /* the text is shorter than the tag's content */
    if (!src)
        return oom(p);
    size_t n = 0;
    for (size_t i = 2; i < tg->nlen; i++) {
        if (!is_space(tg->name[i]))
            src[n++] = tg->name[i];
        else if (n && src[n - 1] != ' ')
            src[n++] = ' ';
    }
    src[n] = '\0'; /* content is trimmed by scan_tag: no trailing blank, n > 0 */
    const char *tr = p->t->opts.translate ? p->t->opts.translate(p->t->opts.translate_ud, src) : NULL;
    if (!tr)
        tr = src;
    size_t tl = strnlen(tr, MAX_TRANSLATED + 1);
    int rc = 0;
    if (tl > MAX_TRANSLATED)
        rc = perr(p, line, HL_ETOOBIG, "translation of '%.*s' longer than %u bytes", clip(n), src, MAX_TRANSLATED);
    else if (p->u->plen + 6 * tl > MAX_OUTPUT) /* 6: the longest escape, "&quot;" */
        rc = perr(p, line, HL_ETOOBIG, "translated template larger than %u bytes", MAX_OUTPUT);
    uint32_t start = (uint32_t)p->u->plen;
    if (!rc && (escape_into_pool(p, tr, tl) || add_text(p, start)))
        rc = -1;
    free(src);
    return rc;
}

static void push(parser *p, uint32_t idx, int kind, const tag *tg, uint32_t line)
{
    open_item *it = &p->stack[p->depth++];
    it->node = idx;
    it->kind = kind;
    it->line = line;
    it->name = tg->name;
    it->nlen = tg->nlen;
    it->dedent = p->dedent;
    it->dlen = p->dlen;
}

static int do_tag(parser *p, size_t from, const tag *tg, uint32_t line)
{
    char ty = tg->type;
    int top = p->depth ? p->stack[p->depth - 1].kind : K_NONE;
    int effect = 0;
    uint32_t idx;

    int translation = is_translation(tg);
    if (ty != '!' && ty != '=' && !translation && check_name(p, tg, line))
        return -1;
    if (ty == '=') {
        if (set_delims(p, tg, line))
            return -1;
    } else if (ty == '/') {
        if (!p->depth)
            return perr(p, line, HL_EINVAL, "'%.*s' closes nothing: no section is open",
                        clip(tg->nlen), tg->name);
        open_item *it = &p->stack[p->depth - 1];
        if (it->nlen != tg->nlen || memcmp(it->name, tg->name, tg->nlen))
            return perr(p, line, HL_EINVAL, "'/%.*s' does not close '%.*s' opened on line %u",
                        clip(tg->nlen), tg->name, clip(it->nlen), it->name, it->line);
        effect = -1;
    } else if (ty == '#' || ty == '^')
        effect = K_SECTION;
    else if (ty == '<')
        effect = K_PARENT;
    else if (ty == '$')
        effect = top == K_PARENT ? K_ARG : K_BLOCK;
    if (effect > 0 && p->depth >= MAX_NEST)
        return perr(p, line, HL_ETOOBIG, "sections nested deeper than %d", MAX_NEST);
    int transparent = ty == '<' || (ty == '$' && top == K_PARENT) ||
                      (ty == '/' && (top == K_PARENT || top == K_ARG));

    /* Standalone: a tag alone on its line takes the line's blanks and newline with it. */
    const char *nl = memrchr(p->s + from, '\n', tg->start - from);
    size_t ws = nl ? (size_t)(nl - p->s) + 1 : from;
    int wsbol = nl ? 1 : p->bol;
    int left = (nl || p->clean) && all_blank(p->s + ws, tg->start - ws);
    int standalone = 0;
    size_t next = tg->end;
    if (left && strchr("!#^/><$=", ty) && rest_blank(p, tg->end, effect)) {
        size_t i = tg->end;
        while (i < p->len && is_blank(p->s[i]))
            i++;
        standalone = 1;
        if (i == p->memo_hi)
            next = p->memo_eol;
    }
    if (emit_text(p, from, standalone ? ws : tg->start, p->bol))
        return -1;

    const char *iws = p->s + ws;
    size_t ilen = tg->start - ws;
    if (wsbol)
        strip_dedent(p, &iws, &ilen);
    switch (ty) {
    case 'v':
    case '&':
    case '{':
        if (translation) {
            if (!in_parent(p) && emit_translation(p, tg, line))
                return -1;
            break;
        }
        if (!in_parent(p) && (add_node(p, ty == 'v' ? N_VAR : N_RAW, line, &idx) ||
                              add_name(p, idx, tg, 1)))
            return -1;
        break;
    case '#':
    case '^':
        if (add_node(p, ty == '#' ? N_SECTION : N_INVERTED, line, &idx) || add_name(p, idx, tg, 1))
            return -1;
        push(p, idx, K_SECTION, tg, line);
        break;
    case '/': {
        open_item *it = &p->stack[--p->depth];
        p->u->nodes[it->node].end = (uint32_t)p->u->count;
        p->dedent = it->dedent;
        p->dlen = it->dlen;
        p->last_text = -1;
        break;
    }
    case '>':
    case '<':
        if (ty == '>' && in_parent(p))
            break;
        if (add_node(p, ty == '>' ? N_PARTIAL : N_PARENT, line, &idx) || add_name(p, idx, tg, 0) ||
            (standalone && set_indent(p, idx, iws, ilen)))
            return -1;
        p->u->nodes[idx].bol = (uint8_t)standalone;
        if (get_unit(p, tg, line, &p->u->nodes[idx].partial))
            return -1;
        if (ty == '<')
            push(p, idx, K_PARENT, tg, line);
        break;
    case '$': {
        /* The block's indentation: that of its first line when the tag stands alone, else
         * the blanks before the tag. Its lines lose it here and get the indentation of the
         * place the block is expanded to when rendered. */
        const char *def = NULL;
        size_t dn = 0;
        int bol = 0;
        if (standalone && next > tg->end && p->s[next - 1] == '\n') {
            def = p->s + next;
            while (next + dn < p->len && is_blank(def[dn]))
                dn++;
            bol = 1;
        } else if (left) {
            def = p->s + ws;
            dn = tg->start - ws;
            bol = standalone;
        }
        if (add_node(p, N_BLOCK, line, &idx) || add_name(p, idx, tg, 0))
            return -1;
        p->u->nodes[idx].bol = (uint8_t)bol;
        push(p, idx, top == K_PARENT ? K_ARG : K_BLOCK, tg, line);
        if (def && dn >= p->dlen && (!p->dlen || !memcmp(def, p->dedent, p->dlen))) {
            if (set_indent(p, idx, def + p->dlen, dn - p->dlen))
                return -1;
            p->dedent = def;
            p->dlen = dn;
        }
        break;
    }
    default:
        break;
    }
    p->pos = next;
    if (standalone) {
        p->clean = 1;
        p->bol = next != tg->end;
    } else {
        p->clean = left && transparent;
        p->bol = 0;
    }
    return 0;
}

static int compile_unit(hl_tpl *t, unit *u, const char *s, size_t len, hl_err *err)
{
    parser p;
    memset(&p, 0, sizeof p);
    p.t = t;
    p.u = u;
    p.err = err;
    p.s = s;
    p.len = len;
    p.line = 1;
    memcpy(p.otag, "{{", 2);
    memcpy(p.ctag, "}}", 2);
    p.olen = p.clen = 2;
    p.clean = p.bol = 1;
    p.last_text = -1;
    p.memo_ok = -1;
    if (grow((void **)&u->pool, &u->pcap, len + 1, 1))
        return oom(&p);
    for (;;) {
        const char *o = p.pos < len ? memmem(s + p.pos, len - p.pos, p.otag, p.olen) : NULL;
        if (!o) {
            if (emit_text(&p, p.pos, len, p.bol))
                return -1;
            break;
        }
        tag tg;
        uint32_t line = line_at(&p, (size_t)(o - s));
        if (scan_tag(&p, (size_t)(o - s), &tg))
            return perr(&p, line, HL_EINVAL, "unclosed tag '%.*s'", clip(len - (size_t)(o - s)), o);
        if (do_tag(&p, p.pos, &tg, line))
            return -1;
    }
    if (p.depth) {
        open_item *it = &p.stack[p.depth - 1];
        return perr(&p, line_at(&p, len), HL_EINVAL, "%s '%.*s' opened on line %u is not closed",
                    it->kind == K_SECTION ? "section" : it->kind == K_PARENT ? "parent" : "block",
                    clip(it->nlen), it->name, it->line);
    }
    return 0;
}

void hl_tpl_free(hl_tpl *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++) {
        unit *u = t->units[i];
        free(u->name);
        free(u->nodes);
        free(u->pool);
        free(u->src);
        free(u);
    }
    free(t->units);
    free(t->slots);
    free(t);
}

hl_tpl *hl_tpl_compile(const char *name, const char *text, size_t len, const hl_tpl_opts *opts, hl_err *err)
{
    if (!text && len)
        return hl_err_set(err, HL_EINVAL, "template text missing"), NULL;
    if (!name)
        name = "template";
    if (len > MAX_SOURCE)
        return hl_err_set(err, HL_ETOOBIG, "%s: template larger than %u bytes", name, MAX_SOURCE), NULL;
    hl_tpl *t = calloc(1, sizeof *t);
    unit *u = calloc(1, sizeof *u);
    if (!t || !u || grow((void **)&t->units, &t->cap, 1, sizeof(unit *)) || !(u->name = strdup(name))) {
        if (t)
            free(t->units);
        free(t);
        free(u);
        return hl_err_set(err, HL_ENOMEM, "out of memory"), NULL;
    }
    if (opts)
        t->opts = *opts;
    t->units[t->count++] = u;
    t->total = len;
    int rc = compile_unit(t, u, text ? text : "", len, err);
    for (size_t i = 1; !rc && i < t->count; i++) { /* count grows as partials name partials */
        unit *pu = t->units[i];
        if (pu->src) {
            rc = compile_unit(t, pu, pu->src, pu->srclen, err);
            free(pu->src);
            pu->src = NULL;
        }
    }
    free(t->slots);
    t->slots = NULL;
    t->nslots = 0;
    if (rc) {
        hl_tpl_free(t);
        return NULL;
    }
    return t;
}

/* ---------------------------------------------------------------- rendering */

/* The blocks given to a {{<parent}} being expanded; the chain goes out to the template. */
typedef struct frame {
    const unit *u;
    uint32_t first, end;
    const struct frame *prev;
} frame;

typedef struct indent {
    const char *s;
    size_t n;
} indent;

typedef struct rstate {
    const hl_tpl *t;
    hl_err *err;
    int code;
    char *buf;
    size_t len, cap;
    int pending;       /* at the start of a template line: indent before the next output */
    int depth, pdepth, nctx, nind;
    unsigned long steps;
    json_t *ctx[MAX_DEPTH + 1];
    indent ind[MAX_DEPTH];
} rstate;

static void fail(rstate *r, const unit *u, const node *n, int code, const char *msg)
{
    if (!r->code) {
        r->code = code;
        hl_err_set(r->err, code, "%s:%u: %s", u->name, n->line, msg);
    }
}

static void put_slow(rstate *r, const char *s, size_t n)
{
    if (r->code || !n)
        return;
    if (n > MAX_OUTPUT - r->len) {
        r->code = hl_err_set(r->err, HL_ETOOBIG, "template output larger than %u bytes", MAX_OUTPUT);
        return;
    }
    size_t c = r->cap ? r->cap : 4096;
    while (c <= r->len + n)
        c *= 2;
    if (c > MAX_OUTPUT + 1)
        c = MAX_OUTPUT + 1;
    char *b = realloc(r->buf, c);
    if (!b) {
        r->code = hl_err_set(r->err, HL_ENOMEM, "out of memory rendering a template");
        return;
    }
    r->buf = b;
    r->cap = c;
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

/* Appends to the output, keeping room for the final NUL. */
static inline void put(rstate *r, const char *s, size_t n)
{
    if (n < r->cap - r->len) {
        memcpy(r->buf + r->len, s, n);
        r->len += n;
    } else
        put_slow(r, s, n);
}

static void put_indent(rstate *r)
{
    for (int i = 0; i < r->nind; i++)
        put(r, r->ind[i].s, r->ind[i].n);
}

/* Template text: inside an indented partial or block every line gets the indentation. */
static void out_text(rstate *r, const char *s, size_t n)
{
    if (!r->nind) {
        put(r, s, n);
        r->pending = s[n - 1] == '\n';
        return;
    }
    while (n) {
        const char *nl = memchr(s, '\n', n);
        size_t k = nl ? (size_t)(nl - s) + 1 : n;
        if (r->pending)
            put_indent(r);
        put(r, s, k);
        r->pending = nl != NULL;
        s += k;
        n -= k;
    }
}

static void put_escaped(rstate *r, const char *s, size_t n)
{
    static const char *const rep[256] = {
        ['&'] = "&amp;", ['<'] = "&lt;", ['>'] = "&gt;", ['"'] = "&quot;", ['\''] = "&#39;",
    };
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = rep[(unsigned char)s[i]];
        if (e) {
            put(r, s + a, i - a);
            put(r, e, strlen(e));
            a = i + 1;
        }
    }
    put(r, s + a, n - a);
}

static size_t fmt_int(char *buf, long long v)
{
    char tmp[24];
    size_t n = 0, k = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do
        tmp[n++] = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        buf[k++] = '-';
    while (n)
        buf[k++] = tmp[--n];
    return k;
}

/* Values print as JSON would, reals with the fewest digits that read back the same. */
static void out_value(rstate *r, const json_t *v, int escape)
{
    char num[40];
    const char *s = num;
    size_t n;
    if (!v)
        return;
    switch (json_typeof(v)) {
    case JSON_STRING:
        s = json_string_value(v);
        n = json_string_length(v);
        break;
    case JSON_INTEGER:
        n = fmt_int(num, json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d > -1e18 && d < 1e18 && d == (double)(long long)d) {
            n = fmt_int(num, (long long)d); /* -0.0 prints "0" as well */
            break;
        }
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, d);
            if (strtod(num, NULL) == d)
                break;
        }
        n = strlen(num);
        break;
    }
    case JSON_TRUE:
        s = "true", n = 4;
        break;
    case JSON_FALSE:
        s = "false", n = 5;
        break;
    default:
        return;
    }
    if (!n)
        return;
    if (r->pending && r->nind)
        put_indent(r);
    r->pending = 0;
    if (escape)
        put_escaped(r, s, n);
    else
        put(r, s, n);
}

/* Falsey as in JavaScript (mustache.js), which theme authors know: missing, null, false, 0,
 * "" and []. */
static int truthy(const json_t *v)
{
    if (!v)
        return 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: return 1;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0.0;
    case JSON_TRUE: return 1;
    default: return 0;
    }
}

/* k is NUL-terminated at n; json_object_getn (jansson 2.14) just saves the strlen. */
static json_t *get_key(json_t *o, const char *k, size_t n)
{
#if JANSSON_VERSION_HEX >= 0x020e00
    return json_object_getn(o, k, n);
#else
    (void)n;
    return json_object_get(o, k);
#endif
}

/* The first part of a name is looked up from the top of the context stack down; the other
 * parts only inside what that found. */
static json_t *lookup(const rstate *r, const unit *u, const node *n)
{
    if (!r->nctx)
        return NULL;
    if (!n->nparts)
        return r->ctx[r->nctx - 1];
    const char *k = u->pool + n->str;
    size_t kn = n->nparts == 1 ? n->len : strlen(k);
    json_t *v = NULL;
    for (int i = r->nctx - 1; i >= 0 && !v; i--)
        if (json_is_object(r->ctx[i]))
            v = get_key(r->ctx[i], k, kn);
    for (int i = 1; v && i < n->nparts; i++) {
        k += kn + 1;
        kn = strlen(k);
        v = json_is_object(v) ? get_key(v, k, kn) : NULL;
    }
    return v;
}

static int enter(rstate *r, const unit *u, const node *n)
{
    if (r->depth >= MAX_DEPTH) {
        fail(r, u, n, HL_ETOOBIG, "templates nested too deeply while rendering");
        return -1;
    }
    r->depth++;
    return 0;
}

static int push_indent(rstate *r, const unit *u, const node *n)
{
    if (n->bol)
        r->pending = 1;
    if (!n->ind_len)
        return 0;
    r->ind[r->nind].s = u->pool + n->ind;
    r->ind[r->nind++].n = n->ind_len;
    return 1;
}

static int render(rstate *r, const unit *u, uint32_t i, uint32_t end, const frame *fr);

static void section(rstate *r, const unit *u, uint32_t i, const frame *fr)
{
    const node *n = &u->nodes[i];
    json_t *v = lookup(r, u, n);
    if (n->type == N_INVERTED) {
        if (!truthy(v) && !enter(r, u, n)) {
            render(r, u, i + 1, n->end, fr);
            r->depth--;
        }
        return;
    }
    if (!truthy(v) || enter(r, u, n))
        return;
    if (json_is_array(v)) {
        size_t cnt = json_array_size(v);
        for (size_t k = 0; k < cnt && !r->code; k++) {
            r->ctx[r->nctx++] = json_array_get(v, k);
            render(r, u, i + 1, n->end, fr);
            r->nctx--;
        }
    } else {
        r->ctx[r->nctx++] = v;
        render(r, u, i + 1, n->end, fr);
        r->nctx--;
    }
    r->depth--;
}

static void partial(rstate *r, const unit *u, uint32_t i, const frame *fr)
{
    const node *n = &u->nodes[i];
    const unit *pu = r->t->units[n->partial];
    if (pu->missing)
        return;
    if (r->pdepth >= MAX_PARTIAL_DEPTH) {
        fail(r, u, n, HL_ETOOBIG, "partial recursion too deep");
        return;
    }
    if (enter(r, u, n))
        return;
    frame f = {u, i + 1, n->end, fr};
    int pushed = push_indent(r, u, n);
    r->pdepth++;
    render(r, pu, 0, (uint32_t)pu->count, n->type == N_PARENT ? &f : fr);
    r->pdepth--;
    r->nind -= pushed;
    r->depth--;
}

/* A block renders the outermost argument given for its name (the page overrides its layout,
 * which overrides its own layout), else its own content; both at the block's indentation. */
static void block(rstate *r, const unit *u, uint32_t i, const frame *fr)
{
    const node *n = &u->nodes[i];
    const unit *bu = u;
    uint32_t bi = i;
    for (const frame *f = fr; f; f = f->prev) {
        for (uint32_t j = f->first; j < f->end; j = f->u->nodes[j].end) {
            const node *m = &f->u->nodes[j];
            r->steps++;
            if (m->type == N_BLOCK && m->len == n->len &&
                !memcmp(f->u->pool + m->str, u->pool + n->str, n->len)) {
                bu = f->u;
                bi = j;
                break;
            }
        }
    }
    if (enter(r, u, n))
        return;
    int pushed = push_indent(r, u, n);
    render(r, bu, bi + 1, bu->nodes[bi].end, fr);
    r->nind -= pushed;
    r->depth--;
}

static int render(rstate *r, const unit *u, uint32_t i, uint32_t end, const frame *fr)
{
    while (i < end && !r->code) {
        const node *n = &u->nodes[i];
        if (++r->steps > MAX_STEPS) {
            fail(r, u, n, HL_ETOOBIG, "template too costly to render");
            break;
        }
        switch (n->type) {
        case N_TEXT: out_text(r, u->pool + n->str, n->len); break;
        case N_VAR:
        case N_RAW: out_value(r, lookup(r, u, n), n->type == N_VAR); break;
        case N_SECTION:
        case N_INVERTED: section(r, u, i, fr); break;
        case N_PARTIAL:
        case N_PARENT: partial(r, u, i, fr); break;
        case N_BLOCK: block(r, u, i, fr); break;
        }
        i = n->end;
    }
    return r->code;
}

int hl_tpl_render(const hl_tpl *t, json_t *context, char **out, size_t *out_len, hl_err *err)
{
    if (!out || !out_len)
        return hl_err_set(err, HL_EINVAL, "hl_tpl_render: no output pointers");
    *out = NULL;
    *out_len = 0;
    if (!t)
        return hl_err_set(err, HL_EINVAL, "hl_tpl_render: no template");
    rstate *r = malloc(sizeof *r); /* ~12 KB: too much for a worker thread's stack */
    if (!r)
        return hl_err_set(err, HL_ENOMEM, "out of memory rendering a template");
    r->t = t;
    r->err = err;
    r->code = 0;
    r->buf = NULL;
    r->len = r->cap = 0;
    r->pending = 1;
    r->depth = r->pdepth = r->nctx = r->nind = 0;
    r->steps = 0;
    if (context)
        r->ctx[r->nctx++] = context;
    int rc = render(r, t->units[0], 0, (uint32_t)t->units[0]->count, NULL);
    if (!rc && !r->buf && !(r->buf = malloc(1)))
        rc = hl_err_set(err, HL_ENOMEM, "out of memory rendering a template");
    if (rc) {
        free(r->buf);
        free(r);
        return rc;
    }
    r->buf[r->len] = '\0';
    *out = r->buf;
    *out_len = r->len;
    free(r);
    return HL_OK;
}
