/* Parsers for untrusted request input besides the path: percent-decoding, query strings and
 * urlencoded bodies, multipart/form-data uploads and Cookie headers (see form.h). Every parser
 * is bounded by its input length and hl_form_limits, and reports bad input with a message. */
#include "core/form.h"

#include <stdint.h>
#include <string.h>

#define DEFAULT_MAX_FIELDS 1000
#define DEFAULT_MAX_FILES 20
#define MAX_COOKIES 100
#define MAX_BOUNDARY 70        /* RFC 2046 5.1.1 */
#define MAX_PART_HEADERS 8192  /* one part's header section, blank line included */

/* ---------------------------------------------------------------- parameter lists */

/* Appends a zeroed slot, doubling the array so that n appends cost O(n) copies in total. */
static hl_param *params_push(hl_arena *a, hl_params *p)
{
    if (p->count >= p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 8;
        if (ncap < p->cap || ncap > SIZE_MAX / sizeof(hl_param))
            return NULL;
        hl_param *items = hl_arena_grow(a, p->items, p->cap * sizeof(hl_param),
                                        ncap * sizeof(hl_param));
        if (!items)
            return NULL;
        p->items = items;
        p->cap = ncap;
    }
    hl_param *it = &p->items[p->count++];
    memset(it, 0, sizeof *it);
    return it;
}

/* name and value are copied into the arena, so callers (router captures, plugins) may pass
 * stack buffers or memory that dies before the request does. NULL arguments give HL_EINVAL. */
int hl_params_add(hl_arena *a, hl_params *p, const char *name, const char *value, size_t value_len)
{
    if (!a || !p || !name || (!value && value_len))
        return HL_EINVAL;
    char *n = hl_arena_strdup(a, name);
    char *v = hl_arena_strndup(a, value ? value : "", value_len);
    hl_param *it = (n && v) ? params_push(a, p) : NULL;
    if (!it)
        return HL_ENOMEM;
    it->name = n;
    it->value = v;
    it->value_len = value_len;
    return HL_OK;
}

const hl_param *hl_params_get(const hl_params *p, const char *name)
{
    if (!p || !name)
        return NULL;
    for (size_t i = 0; i < p->count; i++)
        if (p->items[i].name && strcmp(p->items[i].name, name) == 0)
            return &p->items[i];
    return NULL;
}

const char *hl_params_value(const hl_params *p, const char *name)
{
    const hl_param *it = hl_params_get(p, name);
    return it ? it->value : NULL;
}

/* ---------------------------------------------------------------- percent-decoding */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* base is where s starts in the caller's input, so that messages point at the right byte.
 * NUL bytes are refused because names and values are handed out as C strings. */
static int decode(hl_arena *a, const char *s, size_t len, int plus_as_space, size_t base,
                  char **out, size_t *out_len, hl_err *err)
{
    if (len == SIZE_MAX)
        return hl_err_set(err, HL_ETOOBIG, "input too large to decode");
    char *d = hl_arena_alloc(a, len + 1);
    if (!d)
        return hl_err_set(err, HL_ENOMEM, "out of memory while decoding form data");
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = len - i >= 3 ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
            if (lo < 0)
                return hl_err_set(err, HL_EINVAL, "bad percent-escape at byte %zu", base + i);
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0)
                return hl_err_set(err, HL_EINVAL, "percent-escape %%00 (NUL byte) at byte %zu",
                                  base + i);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            c = ' ';
        } else if (c == 0) {
            return hl_err_set(err, HL_EINVAL, "NUL byte at byte %zu", base + i);
        }
        d[j++] = (char)c;
    }
    d[j] = '\0';
    *out = d;
    if (out_len)
        *out_len = j;
    return HL_OK;
}

int hl_form_percent_decode(hl_arena *a, const char *s, size_t len, int plus_as_space,
                           char **out, size_t *out_len, hl_err *err)
{
    if (!a || !out || (!s && len))
        return hl_err_set(err, HL_EINVAL, "hl_form_percent_decode: bad arguments");
    return decode(a, s, len, plus_as_space, 0, out, out_len, err);
}

/* ---------------------------------------------------------------- urlencoded */

int hl_form_parse_urlencoded(hl_arena *a, const char *s, size_t len,
                             const hl_form_limits *lim, hl_params *out, hl_err *err)
{
    if (!a || !out || (!s && len))
        return hl_err_set(err, HL_EINVAL, "hl_form_parse_urlencoded: bad arguments");
    size_t max = lim && lim->max_fields ? lim->max_fields : DEFAULT_MAX_FIELDS;
    size_t start = out->count, pairs = 0, i = 0;
    int rc = HL_OK;

    while (i < len) {
        const char *amp = memchr(s + i, '&', len - i);
        size_t end = amp ? (size_t)(amp - s) : len;
        if (end > i) {
            if (++pairs > max) {
                rc = hl_err_set(err, HL_ETOOBIG, "too many form fields (more than %zu)", max);
                goto fail;
            }
            const char *eq = memchr(s + i, '=', end - i);
            size_t name_end = eq ? (size_t)(eq - s) : end;
            size_t val_start = eq ? name_end + 1 : end;
            char *name, *value;
            size_t name_len, value_len;
            if ((rc = decode(a, s + i, name_end - i, 1, i, &name, &name_len, err)) != HL_OK ||
                (rc = decode(a, s + val_start, end - val_start, 1, val_start, &value,
                             &value_len, err)) != HL_OK)
                goto fail;
            if (name_len > 0) {
                hl_param *it = params_push(a, out);
                if (!it) {
                    rc = hl_err_set(err, HL_ENOMEM, "out of memory while parsing form data");
                    goto fail;
                }
                it->name = name;
                it->value = value;
                it->value_len = value_len;
            }
        }
        i = end + 1;
    }
    return HL_OK;
fail:
    out->count = start;
    return rc;
}

/* ---------------------------------------------------------------- header parameters */

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    return i;
}

/* Trims spaces and tabs from both ends of s[*b..*e). */
static void trim(const char *s, size_t *b, size_t *e)
{
    while (*b < *e && is_ws(s[*b]))
        (*b)++;
    while (*e > *b && is_ws(s[*e - 1]))
        (*e)--;
}

/* Case-insensitive comparison of s[0..n) with a lower-case literal. */
static int ieq(const char *s, size_t n, const char *lit)
{
    size_t i = 0;
    for (; i < n && lit[i]; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return 0;
    }
    return i == n && lit[i] == '\0';
}

/* Reads the next `; name=value` of a header value s[*pos..n). Returns 1 with the name (not
 * copied) and the value (unquoted, copied into the arena), 0 at the end, HL_EINVAL on bad
 * syntax or HL_ENOMEM. In quoted strings a backslash escapes only '"' and '\': old browsers
 * send Windows paths such as "C:\Users\x.jpg" unescaped, and these must survive. */
static int next_param(hl_arena *a, const char *s, size_t n, size_t *pos, const char **name,
                      size_t *name_len, char **val)
{
    size_t i = skip_ws(s, n, *pos);
    if (i == n)
        return 0;
    if (s[i] != ';')
        return HL_EINVAL;
    i = skip_ws(s, n, i + 1);
    if (i == n) { /* a trailing ';' is harmless */
        *pos = n;
        return 0;
    }
    size_t ns = i;
    while (i < n && s[i] != '=' && s[i] != ';' && !is_ws(s[i]))
        i++;
    if (i == ns)
        return HL_EINVAL;
    *name = s + ns;
    *name_len = i - ns;
    i = skip_ws(s, n, i);
    if (i == n || s[i] != '=')
        return HL_EINVAL;
    i = skip_ws(s, n, i + 1);

    char *v;
    size_t k = 0;
    if (i < n && s[i] == '"') {
        i++;
        if (!(v = hl_arena_alloc(a, n - i + 1)))
            return HL_ENOMEM;
        for (;;) {
            if (i == n)
                return HL_EINVAL; /* unterminated quoted string */
            char c = s[i++];
            if (c == '"')
                break;
            if (c == '\\' && i < n && (s[i] == '"' || s[i] == '\\'))
                c = s[i++];
            v[k++] = c;
        }
        v[k] = '\0';
    } else {
        size_t vs = i;
        while (i < n && s[i] != ';' && !is_ws(s[i]))
            i++;
        if (!(v = hl_arena_strndup(a, s + vs, i - vs)))
            return HL_ENOMEM;
    }
    *val = v;
    *pos = i;
    return 1;
}

/* ---------------------------------------------------------------- multipart */

/* Reads the boundary from a multipart/form-data Content-Type into the arena. */
static int get_boundary(hl_arena *a, const char *ct, char **out, size_t *out_len, hl_err *err)
{
    if (!ct)
        return hl_err_set(err, HL_EINVAL, "missing Content-Type for multipart body");
    size_t n = strlen(ct), i = skip_ws(ct, n, 0), ts = i;
    while (i < n && ct[i] != ';' && !is_ws(ct[i]))
        i++;
    if (!ieq(ct + ts, i - ts, "multipart/form-data"))
        return hl_err_set(err, HL_EINVAL, "Content-Type is not multipart/form-data");

    char *b = NULL, *v;
    const char *name;
    size_t name_len;
    int rc;
    while ((rc = next_param(a, ct, n, &i, &name, &name_len, &v)) == 1) {
        if (!ieq(name, name_len, "boundary"))
            continue;
        if (b)
            return hl_err_set(err, HL_EINVAL, "Content-Type has more than one boundary");
        b = v;
    }
    if (rc == HL_ENOMEM)
        return hl_err_set(err, HL_ENOMEM, "out of memory while parsing Content-Type");
    if (rc < 0)
        return hl_err_set(err, HL_EINVAL, "malformed Content-Type parameters");
    if (!b || !*b)
        return hl_err_set(err, HL_EINVAL, "Content-Type has no multipart boundary");
    size_t bl = strlen(b);
    if (bl > MAX_BOUNDARY)
        return hl_err_set(err, HL_EINVAL, "multipart boundary is longer than %d characters",
                          MAX_BOUNDARY);
    /* The delimiter scan relies on the boundary holding no control characters (no '\r'). */
    for (size_t k = 0; k < bl; k++) {
        unsigned char c = (unsigned char)b[k];
        if (c < 0x20 || c >= 0x7f || (c == ' ' && k == bl - 1))
            return hl_err_set(err, HL_EINVAL, "multipart boundary has an invalid character");
    }
    *out = b;
    *out_len = bl;
    return HL_OK;
}

/* Finds the delimiter d ("\r\n--boundary") in s[from..n). Only positions holding '\r' are
 * compared, each at a cost of at most dlen (<= 74) bytes, so the scan stays linear in n
 * whatever the body holds. */
static const char *find_delim(const char *s, size_t n, size_t from, const char *d, size_t dlen)
{
    while (from < n && n - from >= dlen) {
        const char *cr = memchr(s + from, '\r', n - from - dlen + 1);
        if (!cr)
            return NULL;
        if (memcmp(cr, d, dlen) == 0)
            return cr;
        from = (size_t)(cr - s) + 1;
    }
    return NULL;
}

typedef struct part {
    char *name;
    char *filename;
    char *ctype;
    int has_disposition;
} part;

/* Keeps only the last path component: the client's directory layout is none of our
 * business, and "." or ".." would be a trap for a handler that saves under that name. */
static void strip_path(char *f)
{
    char *base = f;
    for (char *p = f; *p; p++)
        if (*p == '/' || *p == '\\')
            base = p + 1;
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        base += strlen(base);
    memmove(f, base, strlen(base) + 1);
}

static int parse_disposition(hl_arena *a, const char *s, size_t n, size_t idx, part *pt,
                             hl_err *err)
{
    size_t i = skip_ws(s, n, 0), ts = i;
    while (i < n && s[i] != ';' && !is_ws(s[i]))
        i++;
    if (!ieq(s + ts, i - ts, "form-data"))
        return hl_err_set(err, HL_EINVAL, "multipart part %zu: Content-Disposition is not "
                          "form-data", idx);
    const char *name;
    size_t name_len;
    char *v;
    int rc;
    while ((rc = next_param(a, s, n, &i, &name, &name_len, &v)) == 1) {
        char **slot = ieq(name, name_len, "name")       ? &pt->name
                      : ieq(name, name_len, "filename") ? &pt->filename
                                                        : NULL; /* filename* and others */
        if (!slot)
            continue;
        /* Two names would let two parsers disagree about which field this is. */
        if (*slot)
            return hl_err_set(err, HL_EINVAL, "multipart part %zu: repeated '%.*s' parameter",
                              idx, (int)name_len, name);
        *slot = v;
    }
    if (rc == HL_ENOMEM)
        return hl_err_set(err, HL_ENOMEM, "out of memory while parsing multipart headers");
    if (rc < 0)
        return hl_err_set(err, HL_EINVAL, "multipart part %zu: malformed Content-Disposition",
                          idx);
    if (pt->filename)
        strip_path(pt->filename);
    return HL_OK;
}

/* Parses the header lines h[0..n), each ending in CRLF. Control characters are refused so
 * that a part's Content-Type or filename can never smuggle a CR/LF into a response header. */
static int parse_part_headers(hl_arena *a, const char *h, size_t n, size_t idx, part *pt,
                              hl_err *err)
{
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        for (; e < n && h[e] != '\r'; e++) {
            unsigned char c = (unsigned char)h[e];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return hl_err_set(err, HL_EINVAL, "multipart part %zu: control character in "
                                  "headers", idx);
        }
        if (e + 1 >= n || h[e + 1] != '\n')
            return hl_err_set(err, HL_EINVAL, "multipart part %zu: stray CR in headers", idx);
        const char *colon = memchr(h + i, ':', e - i);
        if (!colon)
            return hl_err_set(err, HL_EINVAL, "multipart part %zu: malformed header line", idx);
        size_t nb = i, ne = (size_t)(colon - h), vb = ne + 1, ve = e;
        trim(h, &nb, &ne);
        trim(h, &vb, &ve);
        if (ieq(h + nb, ne - nb, "content-disposition")) {
            if (pt->has_disposition)
                return hl_err_set(err, HL_EINVAL, "multipart part %zu: repeated "
                                  "Content-Disposition", idx);
            pt->has_disposition = 1;
            int rc = parse_disposition(a, h + vb, ve - vb, idx, pt, err);
            if (rc != HL_OK)
                return rc;
        } else if (ieq(h + nb, ne - nb, "content-type")) {
            if (pt->ctype)
                return hl_err_set(err, HL_EINVAL, "multipart part %zu: repeated Content-Type",
                                  idx);
            if (!(pt->ctype = hl_arena_strndup(a, h + vb, ve - vb)))
                return hl_err_set(err, HL_ENOMEM, "out of memory while parsing multipart "
                                  "headers");
        }
        i = e + 2;
    }
    return HL_OK;
}

/* Finds the blank line ending a header section within s[0..n); linear for the same reason
 * as find_delim. */
static const char *find_blank_line(const char *s, size_t n)
{
    size_t from = 0;
    while (n - from >= 4) {
        const char *cr = memchr(s + from, '\r', n - from - 3);
        if (!cr)
            return NULL;
        if (memcmp(cr, "\r\n\r\n", 4) == 0)
            return cr;
        from = (size_t)(cr - s) + 1;
    }
    return NULL;
}

typedef struct mp_state {
    size_t max_fields, max_files, max_file_size;
    size_t files;
} mp_state;

/* Handles the part p[0..n) lying between two delimiters: headers, blank line, content. */
static int one_part(hl_arena *a, const char *p, size_t n, size_t idx, mp_state *st,
                    hl_params *fields, hl_err *err)
{
    size_t hlen;
    const char *content;
    if (n >= 2 && p[0] == '\r' && p[1] == '\n') { /* no headers at all */
        hlen = 0;
        content = p + 2;
    } else {
        const char *blank = find_blank_line(p, n < MAX_PART_HEADERS ? n : MAX_PART_HEADERS);
        if (!blank) {
            if (n > MAX_PART_HEADERS)
                return hl_err_set(err, HL_EINVAL, "multipart part %zu: headers larger than %d "
                                  "bytes", idx, MAX_PART_HEADERS);
            return hl_err_set(err, HL_EINVAL, "multipart part %zu: headers not ended by a "
                              "blank line", idx);
        }
        hlen = (size_t)(blank - p) + 2;
        content = blank + 4;
    }
    size_t clen = (size_t)(p + n - content);

    part pt = {0};
    int rc = parse_part_headers(a, p, hlen, idx, &pt, err);
    if (rc != HL_OK)
        return rc;
    if (!pt.has_disposition)
        return hl_err_set(err, HL_EINVAL, "multipart part %zu: missing Content-Disposition",
                          idx);
    if (!pt.name || !*pt.name)
        return hl_err_set(err, HL_EINVAL, "multipart part %zu: missing field name", idx);
    if (pt.filename) {
        if (++st->files > st->max_files)
            return hl_err_set(err, HL_ETOOBIG, "too many uploaded files (more than %zu)",
                              st->max_files);
        if (st->max_file_size && clen > st->max_file_size)
            return hl_err_set(err, HL_ETOOBIG, "file '%s' is larger than %zu bytes",
                              pt.filename, st->max_file_size);
    }
    char *value = hl_arena_strndup(a, content, clen);
    hl_param *it = value ? params_push(a, fields) : NULL;
    if (!it)
        return hl_err_set(err, HL_ENOMEM, "out of memory while storing multipart part %zu",
                          idx);
    it->name = pt.name;
    it->value = value;
    it->value_len = clen;
    it->filename = pt.filename;
    it->content_type = pt.ctype && *pt.ctype ? pt.ctype : "text/plain"; /* RFC 7578 4.4 */
    return HL_OK;
}

int hl_form_parse_multipart(hl_arena *a, const char *content_type, const char *body,
                            size_t len, const hl_form_limits *lim, hl_params *fields,
                            hl_err *err)
{
    if (!a || !fields || (!body && len))
        return hl_err_set(err, HL_EINVAL, "hl_form_parse_multipart: bad arguments");
    char *b = NULL;
    size_t bl = 0;
    int rc = get_boundary(a, content_type, &b, &bl, err);
    if (rc != HL_OK)
        return rc;
    char delim[4 + MAX_BOUNDARY];
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, b, bl);
    size_t dlen = 4 + bl;

    mp_state st = {
        .max_fields = lim && lim->max_fields ? lim->max_fields : DEFAULT_MAX_FIELDS,
        .max_files = lim && lim->max_files ? lim->max_files : DEFAULT_MAX_FILES,
        .max_file_size = lim ? lim->max_file_size : 0,
    };
    size_t start = fields->count, nparts = 0, pos;

    /* The first delimiter may open the body without a CRLF; otherwise skip the preamble. */
    if (len >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) {
        pos = dlen - 2;
    } else {
        const char *d = find_delim(body, len, 0, delim, dlen);
        if (!d)
            return hl_err_set(err, HL_EINVAL, "multipart body does not contain its boundary");
        pos = (size_t)(d - body) + dlen;
    }
    for (;;) {
        if (len - pos >= 2 && body[pos] == '-' && body[pos + 1] == '-')
            return HL_OK; /* close delimiter; the epilogue is ignored */
        pos = skip_ws(body, len, pos); /* transport padding */
        if (pos == len) {
            rc = hl_err_set(err, HL_EINVAL, "multipart body is truncated (no closing boundary)");
            goto fail;
        }
        if (len - pos < 2 || body[pos] != '\r' || body[pos + 1] != '\n') {
            rc = hl_err_set(err, HL_EINVAL, "multipart body has a malformed boundary line "
                            "after part %zu", nparts);
            goto fail;
        }
        pos += 2;
        if (++nparts > st.max_fields) {
            rc = hl_err_set(err, HL_ETOOBIG, "too many form fields (more than %zu)",
                            st.max_fields);
            goto fail;
        }
        const char *d = find_delim(body, len, pos, delim, dlen);
        if (!d) {
            rc = hl_err_set(err, HL_EINVAL, "multipart body is truncated (part %zu has no "
                            "closing boundary)", nparts);
            goto fail;
        }
        size_t dpos = (size_t)(d - body);
        if ((rc = one_part(a, body + pos, dpos - pos, nparts, &st, fields, err)) != HL_OK)
            goto fail;
        pos = dpos + dlen;
    }
fail:
    fields->count = start;
    return rc;
}

/* ---------------------------------------------------------------- cookies */

int hl_form_parse_cookies(hl_arena *a, const char *header, hl_params *out, hl_err *err)
{
    if (!a || !out)
        return hl_err_set(err, HL_EINVAL, "hl_form_parse_cookies: bad arguments");
    if (!header)
        return HL_OK;
    size_t n = strlen(header), i = 0, got = 0, start = out->count;
    while (i < n && got < MAX_COOKIES) {
        const char *semi = memchr(header + i, ';', n - i);
        size_t end = semi ? (size_t)(semi - header) : n;
        const char *eq = memchr(header + i, '=', end - i);
        if (eq) {
            size_t nb = i, ne = (size_t)(eq - header), vb = ne + 1, ve = end;
            trim(header, &nb, &ne);
            trim(header, &vb, &ve);
            if (ve - vb >= 2 && header[vb] == '"' && header[ve - 1] == '"') {
                vb++;
                ve--;
            }
            if (ne > nb) {
                char *name = hl_arena_strndup(a, header + nb, ne - nb);
                char *value = name ? hl_arena_strndup(a, header + vb, ve - vb) : NULL;
                hl_param *it = value ? params_push(a, out) : NULL;
                if (!it) {
                    out->count = start;
                    return hl_err_set(err, HL_ENOMEM, "out of memory while parsing cookies");
                }
                it->name = name;
                it->value = value;
                it->value_len = ve - vb;
                got++;
            }
        }
        i = end + 1;
    }
    return HL_OK;
}
