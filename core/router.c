/* Request router (see router.h): routes are PCRE2 patterns compiled and JIT-compiled once at
 * registration; each request is first filtered by a literal prefix compare so that the regex
 * only runs for routes that can possibly match. */
#include "core/router.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Limits for the interpreter and the JIT so that a pathological pattern (say (a+)+$) fails
 * with an error, treated as "no match", instead of running for minutes on a hostile path.
 * The match limit is high enough for a greedy .* to backtrack over a 100 KB path. */
#define MATCH_LIMIT 1000000u
#define DEPTH_LIMIT 10000u
#define HEAP_LIMIT_KB 4096u
#define JIT_STACK_MIN (32u * 1024u)
#define JIT_STACK_MAX (1024u * 1024u)

typedef struct capture {
    char *name;
    uint32_t group;
} capture;

typedef struct route {
    pcre2_code *code;
    char *name;
    void *handler;
    void *ud;
    unsigned methods; /* as registered, plus HEAD when GET is there */
    unsigned flags;   /* HL_ROUTE_* */
    char *prefix;     /* what every matching path starts with (escapes decoded) */
    size_t plen;
    int literal;      /* the whole pattern is prefix: compare, skip the regex */
    capture *caps;    /* named groups, in group order */
    size_t ncaps;
} route;

/* The match data, match context and JIT stack are shared by all routes so that matching does
 * not allocate. This makes a router usable by one thread at a time (halle's event loop); a
 * multi-threaded server needs one router per thread. */
struct hl_router {
    route *routes;
    size_t count;
    size_t cap;
    pcre2_match_data *md;
    uint32_t md_pairs;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
};

hl_router *hl_router_new(void)
{
    hl_router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->mctx = pcre2_match_context_create(NULL);
    if (!r->mctx) {
        free(r);
        return NULL;
    }
    pcre2_set_match_limit(r->mctx, MATCH_LIMIT);
    pcre2_set_depth_limit(r->mctx, DEPTH_LIMIT);
    pcre2_set_heap_limit(r->mctx, HEAP_LIMIT_KB);
    /* A JIT stack larger than the default 32 KB on the machine stack lets patterns with
     * repeated groups work on long paths. Without it the default stack is used. */
    r->jit_stack = pcre2_jit_stack_create(JIT_STACK_MIN, JIT_STACK_MAX, NULL);
    if (r->jit_stack)
        pcre2_jit_stack_assign(r->mctx, NULL, r->jit_stack);
    return r;
}

static void route_free(route *rt)
{
    pcre2_code_free(rt->code);
    free(rt->name);
    free(rt->prefix);
    for (size_t i = 0; i < rt->ncaps; i++)
        free(rt->caps[i].name);
    free(rt->caps);
}

void hl_router_truncate(hl_router *r, size_t n)
{
    if (!r)
        return;
    while (r->count > n)
        route_free(&r->routes[--r->count]);
}

void hl_router_free(hl_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->count; i++)
        route_free(&r->routes[i]);
    free(r->routes);
    pcre2_match_data_free(r->md);
    pcre2_match_context_free(r->mctx);
    pcre2_jit_stack_free(r->jit_stack);
    free(r);
}

size_t hl_router_count(const hl_router *r) { return r ? r->count : 0; }

static int is_quantifier(char c) { return c == '?' || c == '*' || c == '+' || c == '{'; }

/* Skips a character class starting at p (just after '['); returns the position after ']'.
 * Leading ']' and '^]' are literal, and [:name:] is a POSIX class. */
static const char *skip_class(const char *p)
{
    if (*p == '^')
        p++;
    if (*p == ']')
        p++;
    while (*p && *p != ']') {
        if (p[0] == '\\' && p[1] == 'Q') {
            const char *e = strstr(p + 2, "\\E");
            p = e ? e + 2 : p + strlen(p);
        } else if (p[0] == '\\' && p[1]) {
            p += 2;
        } else if (p[0] == '[' && p[1] == ':') {
            const char *e = strstr(p + 2, ":]");
            p = e ? e + 2 : p + 1;
        } else {
            p++;
        }
    }
    return *p ? p + 1 : p;
}

/* Whether the group whose '(' precedes p is one of the common kinds (capturing, named,
 * non-capturing, atomic, lookaround, branch reset) whose contents this scan understands. */
static int plain_group(const char *p)
{
    if (p[0] == '*')
        return 0;
    if (p[0] != '?')
        return 1;
    if (p[1] == 'P')
        return p[2] == '<';
    return p[1] != '\0' && strchr(":=!>|<", p[1]) != NULL;
}

/* Whether the pattern may have an alternation at the top level ("/a|/b"), which makes a
 * literal prefix meaningless. Constructs that this scan does not follow (verbs, comments,
 * callouts, option settings that may turn on extended mode) count as "maybe": the price of
 * a wrong "maybe" is only a skipped optimisation. */
static int may_alternate(const char *p)
{
    int depth = 0;
    while (*p) {
        if (p[0] == '\\' && p[1] == 'Q') {
            const char *e = strstr(p + 2, "\\E");
            if (!e)
                return 0;
            p = e + 2;
        } else if (p[0] == '\\') {
            if (!p[1])
                return 0;
            p += 2;
        } else if (p[0] == '[') {
            p = skip_class(p + 1);
        } else if (p[0] == '(') {
            if (!plain_group(p + 1))
                return 1;
            depth++;
            p++;
        } else if (p[0] == ')') {
            if (depth > 0)
                depth--;
            p++;
        } else if (p[0] == '|' && depth == 0) {
            return 1;
        } else {
            p++;
        }
    }
    return 0;
}

/* Copies the literal characters the pattern starts with into out (at least strlen(pat) + 1
 * bytes) and returns their count; *whole says the pattern is nothing but that literal. A
 * quantifier takes back the character it applies to (a UTF-8 sequence is one character).
 * Escapes are decoded only for punctuation, which PCRE2 always takes literally. */
static size_t literal_prefix(const char *pat, char *out, int *whole)
{
    const unsigned char *p = (const unsigned char *)pat;
    size_t n = 0, last = 0;

    *whole = 0;
    for (;;) {
        unsigned char c = *p;
        if (c == '\0') {
            *whole = 1;
            break;
        }
        if (c == '\\') {
            if (!p[1] || p[1] >= 0x80 || !strchr("!\"#%&',-/:;<=>@_`~^$.[]|()?*+{}\\", p[1]))
                break;
            last = n;
            out[n++] = (char)p[1];
            p += 2;
            continue;
        }
        if (strchr("^$.[|()", c) || is_quantifier((char)c)) {
            if (is_quantifier((char)c))
                n = last;
            break;
        }
        last = n;
        out[n++] = (char)*p++;
        while (*p >= 0x80 && *p < 0xc0)
            out[n++] = (char)*p++;
    }
    out[n] = '\0';
    return n;
}

static int cmp_capture(const void *a, const void *b)
{
    const capture *x = a, *y = b;
    return (x->group > y->group) - (x->group < y->group);
}

/* Reads the named groups of the compiled pattern into rt->caps, sorted by group number so
 * that parameters come out in the order they appear in the pattern. */
static int load_captures(route *rt)
{
    uint32_t count = 0, esize = 0;
    PCRE2_SPTR table = NULL;

    pcre2_pattern_info(rt->code, PCRE2_INFO_NAMECOUNT, &count);
    if (count == 0)
        return HL_OK;
    pcre2_pattern_info(rt->code, PCRE2_INFO_NAMEENTRYSIZE, &esize);
    pcre2_pattern_info(rt->code, PCRE2_INFO_NAMETABLE, &table);
    rt->caps = calloc(count, sizeof *rt->caps);
    if (!rt->caps)
        return HL_ENOMEM;
    for (uint32_t i = 0; i < count; i++) {
        PCRE2_SPTR e = table + (size_t)i * esize;
        rt->caps[i].group = ((uint32_t)e[0] << 8) | e[1];
        rt->caps[i].name = strdup((const char *)e + 2);
        if (!rt->caps[i].name)
            return HL_ENOMEM;
        rt->ncaps++;
    }
    qsort(rt->caps, rt->ncaps, sizeof *rt->caps, cmp_capture);
    return HL_OK;
}

/* Makes the shared match data big enough for a pattern with this many capture groups. */
static int ensure_match_data(hl_router *r, const pcre2_code *code)
{
    uint32_t groups = 0;
    pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &groups);
    if (r->md && groups + 1 <= r->md_pairs)
        return HL_OK;
    pcre2_match_data *md = pcre2_match_data_create(groups + 1, NULL);
    if (!md)
        return HL_ENOMEM;
    pcre2_match_data_free(r->md);
    r->md = md;
    r->md_pairs = groups + 1;
    return HL_OK;
}

/* UTF mode makes character classes and '.' work on characters, not bytes, so a capture never
 * ends inside a UTF-8 sequence. Matching is done without PCRE2_NO_UTF_CHECK: a path comes
 * from the network, and PCRE2 then rejects invalid UTF-8 with an error (= no match) instead
 * of reading it as garbage. \C is refused because it would split characters again. */
static pcre2_code *compile(const char *pattern, int *rc, hl_err *err)
{
    int code = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF | PCRE2_NEVER_BACKSLASH_C;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, opts, &code,
                                   &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(code, msg, sizeof msg) < 0)
            strcpy((char *)msg, "unknown error");
        *rc = hl_err_set(err, code == PCRE2_ERROR_NOMEMORY ? HL_ENOMEM : HL_EINVAL,
                         "invalid route pattern \"%.200s\": %s at offset %zu", pattern,
                         (const char *)msg, (size_t)off);
        return NULL;
    }
    /* Failure only means no JIT on this platform: pcre2_match then interprets. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    return re;
}

int hl_router_add(hl_router *r, unsigned methods, const char *pattern, const char *name,
                  void *handler, void *ud, hl_err *err)
{
    return hl_router_add_flags(r, methods, pattern, name, 0, handler, ud, err);
}

int hl_router_add_flags(hl_router *r, unsigned methods, const char *pattern, const char *name,
                        unsigned flags, void *handler, void *ud, hl_err *err)
{
    if (!r)
        return hl_err_set(err, HL_EINVAL, "no router");
    if (!pattern || !*pattern)
        return hl_err_set(err, HL_EINVAL, "empty route pattern");
    if (methods == 0 || (methods & ~(unsigned)HL_METHOD_ANY))
        return hl_err_set(err, HL_EINVAL, "invalid method mask 0x%x for route \"%.200s\"",
                          methods, pattern);
    if (!handler)
        return hl_err_set(err, HL_EINVAL, "no handler for route \"%.200s\"", pattern);
    if (flags & ~(unsigned)HL_ROUTE_TOKEN_AUTH)
        return hl_err_set(err, HL_EINVAL, "unknown route flags 0x%x for route \"%.200s\"", flags, pattern);

    if (r->count == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 16;
        route *nr = ncap > SIZE_MAX / sizeof *nr ? NULL : realloc(r->routes, ncap * sizeof *nr);
        if (!nr)
            return hl_err_set(err, HL_ENOMEM, "out of memory adding a route");
        r->routes = nr;
        r->cap = ncap;
    }

    route rt = {0};
    int rc = HL_OK;
    rt.code = compile(pattern, &rc, err);
    if (!rt.code)
        return rc;
    rt.handler = handler;
    rt.ud = ud;
    rt.flags = flags;
    rt.methods = methods;
    if (methods & HL_METHOD_GET)
        rt.methods |= HL_METHOD_HEAD;
    rt.prefix = malloc(strlen(pattern) + 1);
    if ((name && !(rt.name = strdup(name))) || !rt.prefix || load_captures(&rt) != HL_OK ||
        ensure_match_data(r, rt.code) != HL_OK) {
        route_free(&rt);
        return hl_err_set(err, HL_ENOMEM, "out of memory adding a route");
    }
    rt.plen = literal_prefix(pattern, rt.prefix, &rt.literal);
    if (!rt.literal && may_alternate(pattern))
        rt.plen = 0;
    r->routes[r->count++] = rt;
    return HL_OK;
}

/* Whether path matches rt. A PCRE2 error (invalid UTF-8, match or depth limit, JIT stack
 * exhausted) counts as no match: the request then gets a 404, never a hang. */
static int route_test(hl_router *r, const route *rt, const char *path, size_t len)
{
    if (len < rt->plen || memcmp(path, rt->prefix, rt->plen) != 0)
        return 0;
    if (rt->literal)
        return len == rt->plen;
    return pcre2_match(rt->code, (PCRE2_SPTR)path, len, 0, 0, r->md, r->mctx) >= 0;
}

/* Copies the set named groups of the last match into m->params. */
static int take_captures(const route *rt, pcre2_match_data *md, const char *path, size_t len,
                         hl_arena *a, hl_route_match *m)
{
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    uint32_t pairs = pcre2_get_ovector_count(md);

    for (size_t i = 0; i < rt->ncaps; i++) {
        uint32_t g = rt->caps[i].group;
        if (g >= pairs || ov[2 * g] == PCRE2_UNSET)
            continue;
        size_t s = ov[2 * g], e = ov[2 * g + 1];
        if (e < s || e > len)
            continue;
        char *name = hl_arena_strdup(a, rt->caps[i].name);
        char *value = hl_arena_strndup(a, path + s, e - s);
        if (!name || !value || hl_params_add(a, &m->params, name, value, e - s) != HL_OK)
            return HL_ENOMEM;
    }
    return HL_OK;
}

/* Routes that accept the method are tried first, in order; only when none matches are the
 * others tested, to build the Allow mask of a 405. A method that is not a single known bit
 * matches no route. Missing arguments and running out of arena memory for the parameters
 * give NOT_FOUND, since the result type has no error value. */
hl_route_result hl_router_match(hl_router *r, unsigned method, const char *path, size_t len,
                                hl_arena *a, hl_route_match *m)
{
    if (!m)
        return HL_ROUTE_NOT_FOUND;
    memset(m, 0, sizeof *m);
    if (!r || !a || (!path && len))
        return HL_ROUTE_NOT_FOUND;
    if (!path)
        path = "";

    int valid = method && !(method & (method - 1)) && !(method & ~(unsigned)HL_METHOD_ANY);
    for (size_t i = 0; valid && i < r->count; i++) {
        const route *rt = &r->routes[i];
        if (!(rt->methods & method) || !route_test(r, rt, path, len))
            continue;
        if (!rt->literal && take_captures(rt, r->md, path, len, a, m) != HL_OK) {
            memset(m, 0, sizeof *m);
            return HL_ROUTE_NOT_FOUND;
        }
        m->handler = rt->handler;
        m->ud = rt->ud;
        m->name = rt->name;
        m->flags = rt->flags;
        return HL_ROUTE_FOUND;
    }

    unsigned allow = 0;
    for (size_t i = 0; i < r->count; i++) {
        const route *rt = &r->routes[i];
        if (valid && (rt->methods & method))
            continue;
        if ((rt->methods & ~allow) && route_test(r, rt, path, len))
            allow |= rt->methods;
    }
    if (!allow)
        return HL_ROUTE_NOT_FOUND;
    m->allow = allow;
    return HL_ROUTE_METHOD_NOT_ALLOWED;
}

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                           "OPTIONS"};
#define NMETHODS (sizeof method_names / sizeof method_names[0])

unsigned hl_router_method_from_name(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < NMETHODS; i++)
        if (strcmp(name, method_names[i]) == 0)
            return 1u << i;
    return 0;
}

/* Stops before a name that does not fit whole, so a short buffer gives a shorter but still
 * valid list rather than a cut-off method name. */
const char *hl_router_allow_string(unsigned mask, char *buf, size_t len)
{
    if (!buf || len == 0)
        return "";
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < NMETHODS; i++) {
        if (!(mask & (1u << i)))
            continue;
        const char *sep = n ? ", " : "";
        size_t need = strlen(sep) + strlen(method_names[i]);
        if (need >= len - n)
            break;
        memcpy(buf + n, sep, strlen(sep));
        memcpy(buf + n + strlen(sep), method_names[i], strlen(method_names[i]) + 1);
        n += need;
    }
    return buf;
}
