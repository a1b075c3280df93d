/* Request accessors and response building (see request.h). The response goes straight into
 * libevent's output buffer and header list, so sending it copies nothing. */
#include "core/request.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/i18n.h"
#include "core/router.h"
#include "core/utf8.h"

typedef struct req_priv {
    struct evhttp_request *ev;
    struct evbuffer *out;
    struct evkeyvalq *out_headers;
} req_priv;

static req_priv *P(hl_request *req) { return req->priv; }

int hl_request_bind(hl_request *req, struct evhttp_request *ev)
{
    req_priv *p = hl_arena_calloc(req->arena, 1, sizeof *p);
    if (!p)
        return HL_ENOMEM;
    p->ev = ev;
    p->out = evhttp_request_get_output_buffer(ev);
    p->out_headers = evhttp_request_get_output_headers(ev);
    req->priv = p;
    req->status = 200;
    return HL_OK;
}

const char *hl_request_header(hl_request *req, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(P(req)->ev), name);
}

const char *hl_request_param(hl_request *req, const char *name)
{
    const char *v = hl_params_value(&req->query, name);
    return v ? v : hl_params_value(&req->form, name);
}

void hl_response_status(hl_request *req, int status)
{
    if (status >= 100 && status <= 599)
        req->status = status;
}

int hl_response_header(hl_request *req, const char *name, const char *value)
{
    /* libevent refuses CR/LF in values, which closes header injection through handlers. */
    evhttp_remove_header(P(req)->out_headers, name);
    return evhttp_add_header(P(req)->out_headers, name, value) == 0 ? HL_OK : HL_EINVAL;
}

const char *hl_response_header_value(hl_request *req, const char *name)
{
    return evhttp_find_header(P(req)->out_headers, name);
}

int hl_response_add_header(hl_request *req, const char *name, const char *value)
{
    return evhttp_add_header(P(req)->out_headers, name, value) == 0 ? HL_OK : HL_EINVAL;
}

int hl_response_write(hl_request *req, const void *data, size_t len)
{
    return evbuffer_add(P(req)->out, data, len) == 0 ? HL_OK : HL_ENOMEM;
}

int hl_response_puts(hl_request *req, const char *s)
{
    return hl_response_write(req, s, strlen(s));
}

int hl_response_printf(hl_request *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = evbuffer_add_vprintf(P(req)->out, fmt, ap);
    va_end(ap);
    return n < 0 ? HL_ENOMEM : HL_OK;
}

int hl_response_reference(hl_request *req, const void *data, size_t len)
{
    return evbuffer_add_reference(P(req)->out, data, len, NULL, NULL) == 0 ? HL_OK : HL_ENOMEM;
}

static const char *escape_of(unsigned char c)
{
    switch (c) {
    case '&': return "&amp;";
    case '<': return "&lt;";
    case '>': return "&gt;";
    case '"': return "&quot;";
    case '\'': return "&#39;";
    default: return NULL;
    }
}

int hl_response_html(hl_request *req, const char *s)
{
    if (!s)
        return HL_OK;
    const char *run = s;
    for (; *s; s++) {
        const char *e = escape_of((unsigned char)*s);
        if (!e)
            continue;
        if (s > run && evbuffer_add(P(req)->out, run, (size_t)(s - run)))
            return HL_ENOMEM;
        if (evbuffer_add(P(req)->out, e, strlen(e)))
            return HL_ENOMEM;
        run = s + 1;
    }
    return (s > run && evbuffer_add(P(req)->out, run, (size_t)(s - run))) ? HL_ENOMEM : HL_OK;
}

char *hl_html_escape(hl_arena *a, const char *s)
{
    if (!s)
        return hl_arena_strdup(a, "");
    size_t n = 0;
    for (const char *p = s; *p; p++) {
        const char *e = escape_of((unsigned char)*p);
        n += e ? strlen(e) : 1;
    }
    char *out = hl_arena_alloc(a, n + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = s; *p; p++) {
        const char *e = escape_of((unsigned char)*p);
        if (e) {
            size_t l = strlen(e);
            memcpy(o, e, l);
            o += l;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

char *hl_response_take(hl_request *req, size_t *len)
{
    struct evbuffer *out = P(req)->out;
    size_t n = evbuffer_get_length(out);
    char *copy = hl_arena_alloc(req->arena, n + 1);
    if (!copy)
        return NULL;
    evbuffer_remove(out, copy, n);
    copy[n] = '\0';
    if (len)
        *len = n;
    return copy;
}

size_t hl_response_length(hl_request *req)
{
    return evbuffer_get_length(P(req)->out);
}

static int json_dump_cb(const char *buf, size_t size, void *ud)
{
    return evbuffer_add(ud, buf, size);
}

int hl_response_json(hl_request *req, int status, void *json)
{
    struct evbuffer *out = P(req)->out;
    evbuffer_drain(out, evbuffer_get_length(out));
    hl_response_status(req, status);
    hl_response_header(req, "Content-Type", "application/json");
    if (json_dump_callback(json, json_dump_cb, out, JSON_COMPACT) != 0)
        return HL_ENOMEM;
    return evbuffer_add(out, "\n", 1) == 0 ? HL_OK : HL_ENOMEM;
}

const char *hl_request_tr(hl_request *req, const char *msgid)
{
    return req && req->i18n ? hl_i18n_get(req->i18n, req->lang, msgid) : msgid;
}

int hl_response_error(hl_request *req, int status, const char *message)
{
    struct evbuffer *out = P(req)->out;
    evbuffer_drain(out, evbuffer_get_length(out));
    hl_response_status(req, status);
    hl_response_header(req, "Content-Type", "text/html; charset=utf-8");
    hl_response_header(req, "Cache-Control", "no-store");
    if (req->error_page)
        return req->error_page(req, status, message);
    /* Outside a worker (tests of a handler alone): a plain page. */
    hl_response_header(req, "Content-Type", "text/plain; charset=utf-8");
    hl_response_printf(req, "%d %s\n", status, hl_http_reason(status));
    if (message)
        hl_response_printf(req, "%s\n", message);
    return HL_OK;
}

int hl_response_redirect(hl_request *req, int status, const char *location)
{
    if (!status)
        status = req->method == HL_METHOD_POST ? 303 : 302;
    hl_response_status(req, status);
    return hl_response_header(req, "Location", location);
}

const char *hl_http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

void hl_request_send(hl_request *req, int close_connection)
{
    req_priv *p = P(req);
    struct evkeyvalq *h = p->out_headers;
    if (!evhttp_find_header(h, "Content-Type"))
        evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    const char *ct = evhttp_find_header(h, "Content-Type");
    if (!strncmp(ct, "text/html", 9) && !evhttp_find_header(h, "Content-Security-Policy"))
        evhttp_add_header(h, "Content-Security-Policy",
                          "default-src 'self'; img-src 'self' data:; script-src 'self'; "
                          "style-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'");
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "Referrer-Policy", "strict-origin-when-cross-origin");
    if (close_connection)
        evhttp_add_header(h, "Connection", "close");
    if (evhttp_request_get_command(p->ev) == EVHTTP_REQ_HEAD) {
        /* libevent 2.1 neither adds Content-Length for HEAD nor drops the body, which would
         * corrupt a kept-alive connection: announce the length, send nothing. */
        char len[32];
        snprintf(len, sizeof len, "%zu", evbuffer_get_length(p->out));
        evhttp_remove_header(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", len);
        evbuffer_drain(p->out, evbuffer_get_length(p->out));
    }
    evhttp_send_reply(p->ev, req->status, hl_http_reason(req->status), NULL);
}

/* Unicode controls and spaces (C1, NBSP, U+1680, U+2000-U+200F, U+2028-U+202F, U+205F,
 * U+3000, BOM): some clients trim or split on them as on ASCII whitespace. */
static int unicode_space(const unsigned char *p, size_t n)
{
    unsigned cp = n == 2 ? ((p[0] & 0x1fu) << 6) | (p[1] & 0x3fu)
                : n == 3 ? ((p[0] & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu) : 0;
    return (cp >= 0x80 && cp <= 0xa0) || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202f) || cp == 0x205f || cp == 0x3000 || cp == 0xfeff;
}

const char *hl_request_safe_next(const char *target)
{
    if (!target || target[0] != '/' || target[1] == '/' || target[1] == '\\')
        return "/";
    size_t len = strlen(target);
    /* No link on this site is that long; a huge Location only serves to probe proxies. */
    if (len > 2048)
        return "/";
    const unsigned char *p = (const unsigned char *)target, *end = p + len;
    while (p < end) {
        if (*p <= 0x20 || *p == 0x7f)
            return "/";
        size_t n = *p < 0x80 ? 1 : hl_utf8_seq(p, (size_t)(end - p));
        if (!n || unicode_space(p, n))
            return "/";
        p += n;
    }
    return target;
}
