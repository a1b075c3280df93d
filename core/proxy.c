/* Client addresses behind trusted reverse proxies (see proxy.h). Addresses are compared as
 * 16-byte IPv6 values, IPv4 being mapped (::ffff:a.b.c.d), so one prefix test serves both. */
#include "core/proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct net {
    unsigned char addr[16];
    int bits; /* prefix length over the 16-byte form */
} net;

struct hl_proxies {
    net *nets;
    size_t n;
};

/* Text address (IPv4, IPv6, "[v6]", v4 with ":port", "[v6]:port") to the 16-byte form. */
static int parse_addr(const char *s, size_t len, unsigned char out[16], int *is4)
{
    char buf[64];
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *a = buf;
    if (a[0] == '[') { /* [v6] or [v6]:port */
        char *close = strchr(a, ']');
        if (!close)
            return 0;
        *close = '\0';
        a++;
    } else if (strchr(a, '.') && strchr(a, ':')) { /* v4:port */
        *strchr(a, ':') = '\0';
    }
    struct in_addr v4;
    if (inet_pton(AF_INET, a, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        *is4 = 1;
        return 1;
    }
    *is4 = 0;
    return inet_pton(AF_INET6, a, out) == 1;
}

static int in_net(const net *n, const unsigned char a[16])
{
    int full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(n->addr, a, (size_t)full))
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (n->addr[full] & mask) == (a[full] & mask);
}

hl_proxies *hl_proxies_parse(const char *spec, hl_err *err)
{
    hl_proxies *p = calloc(1, sizeof *p);
    if (!p)
        return hl_err_set(err, HL_ENOMEM, "out of memory"), NULL;
    const char *s = spec ? spec : "";
    while (*s) {
        while (*s == ',' || isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        size_t len = strcspn(s, ", \t");
        const char *slash = memchr(s, '/', len);
        size_t alen = slash ? (size_t)(slash - s) : len;
        net n;
        int is4 = 0;
        char *end = NULL;
        long bits = -1;
        if (slash)
            bits = strtol(slash + 1, &end, 10);
        if (!parse_addr(s, alen, n.addr, &is4) || (slash && (end != s + len || end == slash + 1))) {
            hl_proxies_free(p);
            return hl_err_set(err, HL_EINVAL, "trusted_proxies: '%.*s' is not an address or CIDR block", (int)len, s), NULL;
        }
        int maxbits = is4 ? 32 : 128;
        if (slash && (bits < 0 || bits > maxbits)) {
            hl_proxies_free(p);
            return hl_err_set(err, HL_EINVAL, "trusted_proxies: '%.*s': prefix length out of range", (int)len, s), NULL;
        }
        n.bits = (int)(slash ? (is4 ? 96 + bits : bits) : 128);
        net *grown = realloc(p->nets, (p->n + 1) * sizeof *grown);
        if (!grown) {
            hl_proxies_free(p);
            return hl_err_set(err, HL_ENOMEM, "out of memory"), NULL;
        }
        p->nets = grown;
        p->nets[p->n++] = n;
        s += len;
    }
    return p;
}

void hl_proxies_free(hl_proxies *p)
{
    if (!p)
        return;
    free(p->nets);
    free(p);
}

size_t hl_proxies_count(const hl_proxies *p) { return p ? p->n : 0; }

static int trusted_bin(const hl_proxies *p, const unsigned char a[16])
{
    for (size_t i = 0; p && i < p->n; i++)
        if (in_net(&p->nets[i], a))
            return 1;
    return 0;
}

int hl_proxies_trusted(const hl_proxies *p, const char *addr)
{
    unsigned char a[16];
    int is4;
    return addr && parse_addr(addr, strlen(addr), a, &is4) && trusted_bin(p, a);
}

/* Copies the address at [s, s+len) in canonical text form into out. */
static void canon(const unsigned char a[16], int is4, char *out, size_t outlen)
{
    if (is4)
        inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, a, out, (socklen_t)outlen);
}

/* The n-th element (from the right, 0 = last) of a comma-separated list, trimmed; for Forwarded
 * elements, the value of for= (quotes removed). Returns 0 when there is none. */
static int nth_from_right(const char *list, int forwarded, int n, const char **start, size_t *len)
{
    size_t total = strlen(list);
    size_t end = total;
    for (int k = 0;; k++) {
        size_t begin = end;
        while (begin > 0 && list[begin - 1] != ',')
            begin--;
        if (k == n) {
            const char *s = list + begin;
            size_t l = end - begin;
            if (forwarded) { /* find for= among ;-separated pairs */
                const char *f = NULL;
                for (size_t i = 0; i + 4 <= l; i++)
                    if ((i == 0 || s[i - 1] == ';' || isspace((unsigned char)s[i - 1])) && !strncasecmp(s + i, "for=", 4)) {
                        f = s + i + 4;
                        break;
                    }
                if (!f)
                    return -1;
                size_t fl = 0;
                while (f + fl < s + l && f[fl] != ';')
                    fl++;
                s = f;
                l = fl;
            }
            while (l && isspace((unsigned char)*s))
                s++, l--;
            while (l && isspace((unsigned char)s[l - 1]))
                l--;
            if (l >= 2 && s[0] == '"' && s[l - 1] == '"')
                s++, l -= 2;
            *start = s;
            *len = l;
            return 1;
        }
        if (begin == 0)
            return 0;
        end = begin - 1;
    }
}

const char *hl_proxies_client(const hl_proxies *p, const char *peer, const char *forwarded, const char *xff,
                              char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", peer ? peer : "");
    unsigned char a[16];
    int is4;
    if (!peer || !hl_proxies_count(p) || !parse_addr(peer, strlen(peer), a, &is4) || !trusted_bin(p, a))
        return out;
    const char *list = forwarded && *forwarded ? forwarded : xff;
    int fwd = list == forwarded && forwarded && *forwarded;
    if (!list)
        return out;
    for (int n = 0; n < 64; n++) {
        const char *s;
        size_t len;
        if (nth_from_right(list, fwd, n, &s, &len) != 1 || !parse_addr(s, len, a, &is4))
            return out; /* nothing more, or a malformed hop: the last trusted hop answers */
        canon(a, is4, out, outlen);
        if (!trusted_bin(p, a))
            return out;
    }
    return out;
}
