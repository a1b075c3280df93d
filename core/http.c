/* HTTP only (see http.h): the listening socket, framing checks and request parsing on
 * libevent's evhttp. No services, no pipeline: those are the worker's. */
#include "core/http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* the protocol version has no getter in libevent 2.1 */
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/form.h"
#include "core/router.h"

unsigned hl_http_method(struct evhttp_request *ev, const char **name)
{
    switch (evhttp_request_get_command(ev)) {
    case EVHTTP_REQ_GET: *name = "GET"; return HL_METHOD_GET;
    case EVHTTP_REQ_HEAD: *name = "HEAD"; return HL_METHOD_HEAD;
    case EVHTTP_REQ_POST: *name = "POST"; return HL_METHOD_POST;
    case EVHTTP_REQ_PUT: *name = "PUT"; return HL_METHOD_PUT;
    case EVHTTP_REQ_DELETE: *name = "DELETE"; return HL_METHOD_DELETE;
    case EVHTTP_REQ_PATCH: *name = "PATCH"; return HL_METHOD_PATCH;
    case EVHTTP_REQ_OPTIONS: *name = "OPTIONS"; return HL_METHOD_OPTIONS;
    default: *name = "OTHER"; return 0;
    }
}

static int has_prefix_ci(const char *s, const char *prefix)
{
    return s && !strncasecmp(s, prefix, strlen(prefix));
}

int hl_http_parse(hl_request *req, struct evhttp_request *ev, const hl_config *cfg, hl_err *err)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    if (!uri)
        return hl_err_set(err, 400, "adresse invalide"), 400;
    const char *raw = evhttp_uri_get_path(uri);
    if (!raw || !*raw)
        raw = "/";
    if (raw[0] != '/')
        return hl_err_set(err, 400, "le chemin doit commencer par /"), 400;
    req->raw_path = raw;
    char *path;
    size_t plen;
    if (hl_form_percent_decode(req->arena, raw, strlen(raw), 0, &path, &plen, err) != HL_OK)
        return 400;
    req->path = path;
    hl_form_limits lim = {.max_fields = 1000, .max_file_size = cfg->max_upload_size, .max_files = 20};
    req->query_string = evhttp_uri_get_query(uri);
    if (req->query_string &&
        hl_form_parse_urlencoded(req->arena, req->query_string, strlen(req->query_string), &lim,
                                 &req->query, err) != HL_OK)
        return 400;
    const char *cookie = hl_request_header(req, "Cookie");
    if (cookie && hl_form_parse_cookies(req->arena, cookie, &req->cookies, err) != HL_OK)
        return 400;
    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    size_t blen = evbuffer_get_length(in);
    if (blen) {
        unsigned char *body = evbuffer_pullup(in, -1);
        if (!body)
            return hl_err_set(err, 500, "out of memory"), 500;
        req->body = body;
        req->body_len = blen;
        const char *ct = hl_request_header(req, "Content-Type");
        int rc = HL_OK;
        if (has_prefix_ci(ct, "application/x-www-form-urlencoded"))
            rc = hl_form_parse_urlencoded(req->arena, (const char *)body, blen, &lim, &req->form, err);
        else if (has_prefix_ci(ct, "multipart/form-data"))
            rc = hl_form_parse_multipart(req->arena, ct, (const char *)body, blen, &lim, &req->form, err);
        if (rc == HL_ETOOBIG)
            return 413;
        if (rc != HL_OK)
            return 400;
    }
    return 0;
}

/* ---- framing ------------------------------------------------------------------------ */

/* libevent takes the first of two Content-Length headers, reads "+5" as 5 and lets a
 * Transfer-Encoding that is not "chunked" fall back to Content-Length: framing on which a proxy
 * in front and halle could disagree about where a request ends (request smuggling). Such a
 * request is answered 400 and its connection closed, as nginx does. libevent 2.1 has no hook
 * between the headers and the body for server requests, so the check runs on the whole
 * request; closing the connection is what matters: whatever followed the disputed body is
 * never read as a request. */
static int token_name(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *s))
            return 0;
    return 1;
}

const char *hl_http_framing_error(struct evhttp_request *ev)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
    int ncl = 0, nte = 0, nhost = 0;
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (!token_name(kv->key))
            return "invalid header name (whitespace before the colon?)";
        if (!strcasecmp(kv->key, "Content-Length")) {
            ncl++;
            if (!*kv->value || strspn(kv->value, "0123456789") != strlen(kv->value))
                return "invalid Content-Length";
        } else if (!strcasecmp(kv->key, "Transfer-Encoding")) {
            nte++;
            if (strcasecmp(kv->value, "chunked"))
                return "unsupported Transfer-Encoding";
        } else if (!strcasecmp(kv->key, "Host")) {
            nhost++;
        }
    }
    if (ncl > 1)
        return "duplicate Content-Length";
    if (nte > 1)
        return "duplicate Transfer-Encoding";
    if (ncl && nte)
        return "Transfer-Encoding with Content-Length";
    if (nhost > 1)
        return "duplicate Host";
    if (!nhost && ev->major == 1 && ev->minor >= 1)
        return "no Host header";
    return NULL;
}

/* ---- listening ---------------------------------------------------------------------- */

int hl_http_listen(const char *host, int port, hl_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *ai;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int gai = getaddrinfo(host, portstr, &hints, &ai);
    if (gai)
        return hl_err_set(err, HL_EINVAL, "cannot listen on %s:%d: %s (use a numeric address)", host, port,
                          gai_strerror(gai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return hl_err_set(err, HL_EIO, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    /* Accepted sockets inherit TCP_NODELAY on Linux; without it a page waits on the
     * client's delayed ACK (DESIGN.md: 1,450 vs 25,000 req/s). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        freeaddrinfo(ai);
        return hl_err_set(err, HL_EIO, "cannot listen on %s:%d: %s", host, port, strerror(e));
    }
    freeaddrinfo(ai);
    return fd;
}

