/* Shared text helpers (see text.h): one validator, one folding table, one LIKE escaper and
 * one pager for the core and every plugin. */
#include "core/text.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/utf8.h"

long hl_text_chars(const char *s, size_t max_bytes, int multiline)
{
    if (!s)
        return -1;
    size_t n = strnlen(s, max_bytes + 1);
    if (n > max_bytes)
        return -1;
    long chars = 0;
    for (size_t i = 0; i < n; chars++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && !(multiline && (c == '\n' || c == '\r' || c == '\t'))) || c == 0x7f)
            return -1;
        size_t k = hl_utf8_seq((const unsigned char *)s + i, n - i);
        if (!k)
            return -1;
        if (k == 2 && c == 0xc2 && (unsigned char)s[i + 1] < 0xa0) /* C1 controls U+0080..U+009F */
            return -1;
        i += k;
    }
    return chars;
}

/* U+00C0..U+00FF without their accents ("" for × and ÷, kept as they are). */
static const char *const latin1[64] = {
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "o", NULL, "o", "u", "u", "u", "u", "y", "th", "y",
};

static uint32_t decode(const unsigned char *p, size_t k)
{
    if (k == 1)
        return p[0];
    uint32_t cp = p[0] & (0x7f >> k);
    for (size_t i = 1; i < k; i++)
        cp = cp << 6 | (p[i] & 0x3f);
    return cp;
}

static const char *fold_cp(uint32_t cp)
{
    if (cp >= 0xc0 && cp <= 0xff)
        return latin1[cp - 0xc0];
    switch (cp) {
    case 0x152: case 0x153: return "oe";
    case 0x178: return "y";
    case 0x160: case 0x161: return "s";
    case 0x17d: case 0x17e: return "z";
    default: return NULL;
    }
}

static int blank_cp(uint32_t cp)
{
    return cp == ' ' || cp == '\t' || cp == '\r' || cp == '\n' || cp == 0xa0 || cp == 0x202f || cp == 0x2009;
}

size_t hl_text_fold(const char *in, char *out, size_t len)
{
    size_t o = 0;
    int space = 0;
    if (!out || !len)
        return 0;
    const unsigned char *p = (const unsigned char *)(in ? in : "");
    size_t n = strlen((const char *)p);
    for (size_t i = 0; i < n;) {
        size_t k = hl_utf8_seq(p + i, n - i);
        if (!k) { /* not UTF-8: skip the byte, the key stays valid text */
            i++;
            continue;
        }
        uint32_t cp = decode(p + i, k);
        if (blank_cp(cp)) {
            space = 1;
            i += k;
            continue;
        }
        char one[5];
        const char *add = fold_cp(cp);
        if (!add) {
            memcpy(one, p + i, k);
            one[k] = '\0';
            if (k == 1 && one[0] >= 'A' && one[0] <= 'Z')
                one[0] = (char)(one[0] + 32);
            add = one;
        }
        size_t al = strlen(add), sp = space && o;
        if (o + sp + al >= len)
            break;
        if (sp)
            out[o++] = ' ';
        space = 0;
        memcpy(out + o, add, al);
        o += al;
        i += k;
    }
    out[o] = '\0';
    return o;
}

int hl_text_like(const char *q, char *out, size_t len)
{
    if (!out || !len)
        return -1;
    out[0] = '\0';
    char folded[1024];
    size_t n = hl_text_fold(q, folded, sizeof folded);
    if (!n)
        return 0;
    if (q && strlen(q) >= sizeof folded)
        return -1;
    size_t o = 0;
    if (len < 3)
        return -1;
    out[o++] = '%';
    for (size_t i = 0; i < n; i++) {
        if (o + 3 >= len) {
            out[0] = '\0';
            return -1;
        }
        if (folded[i] == '\\' || folded[i] == '%' || folded[i] == '_')
            out[o++] = '\\';
        out[o++] = folded[i];
    }
    out[o++] = '%';
    out[o] = '\0';
    return 0;
}

static char *page_url(const char *base, long page, char *buf, size_t len)
{
    base = base ? base : "";
    snprintf(buf, len, "%s%spage=%ld", base, strchr(base, '?') ? "&" : "?", page);
    return buf;
}

json_t *hl_text_paginate(long page, long limit, long long total, const char *base)
{
    if (limit < 1)
        return NULL;
    if (total < 0)
        total = 0;
    long long pages = total ? (total + limit - 1) / limit : 1;
    if (page < 1)
        page = 1;
    if (page > pages)
        page = (long)pages;
    json_t *o = json_object(), *links = json_array();
    if (!o || !links) {
        json_decref(o);
        json_decref(links);
        return NULL;
    }
    json_object_set_new(o, "page", json_integer(page));
    json_object_set_new(o, "pages", json_integer(pages));
    json_object_set_new(o, "total", json_integer(total));
    json_object_set_new(o, "limit", json_integer(limit));
    json_object_set_new(o, "offset", json_integer((long long)(page - 1) * limit));
    char url[1200];
    if (page > 1) {
        json_object_set_new(o, "prev", json_integer(page - 1));
        json_object_set_new(o, "prev_url", json_string(page_url(base, page - 1, url, sizeof url)));
    }
    if (page < pages) {
        json_object_set_new(o, "next", json_integer(page + 1));
        json_object_set_new(o, "next_url", json_string(page_url(base, page + 1, url, sizeof url)));
    }
    long first = page - 4 < 1 ? 1 : page - 4, last = first + 8 > pages ? (long)pages : first + 8;
    if (last - 8 >= 1 && last - 8 < first)
        first = last - 8;
    for (long i = first; i <= last; i++) {
        json_t *l = json_object();
        json_object_set_new(l, "page", json_integer(i));
        json_object_set_new(l, "url", json_string(page_url(base, i, url, sizeof url)));
        json_object_set_new(l, "current", json_boolean(i == page));
        json_array_append_new(links, l);
    }
    json_object_set_new(o, "links", links);
    return o;
}
