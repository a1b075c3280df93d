/* Master and worker processes (see http.h). The master binds nothing permanently: each worker
 * opens its own SO_REUSEPORT socket, so the kernel spreads connections and a dying worker
 * takes only its own connections with it. */
#include "halle-config.h"
#include "core/http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* the protocol version has no getter in libevent 2.1 */
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/account_pages.h"
#include "core/connlog.h"
#include "core/jobs.h"
#include "core/db.h"
#include "core/host.h"
#include "core/plugin.h"
#include "core/proxy.h"
#include "core/hooks.h"
#include "core/log.h"
#include "core/site.h"
#include "core/static.h"
#include "core/theme.h"
#include "core/i18n.h"
#include "core/webauth.h"

#ifndef HALLE_SHARE_DIR
#define HALLE_SHARE_DIR "/usr/local/share/halle"
#endif

struct hl_worker {
    const hl_config *cfg;
    int id;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    hl_router *router;
    hl_db *db;
    hl_db *archive;
    hl_static *statics;
    hl_connlog *connlog;
    hl_arena *arena;
    hl_hooks *hooks;
    hl_themes *themes;
    hl_i18n *i18n;
    hl_proxies *proxies;     /* trusted_proxies, parsed once */
    halle_host **hosts;
    size_t nhosts;
    int hook_request_before, hook_response_before;
    hl_jobs *jobs;           /* what plugins register; only the jobs process runs them */
    struct event *ev_term, *ev_int, *ev_flush, *ev_drain;
    int stopping;
    int close_tries;
    int pending;             /* replies handed to libevent, not yet written */
    int64_t last_dispatch_us;
    int64_t stop_started_us;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* What the master sees of each worker: a page shared (MAP_SHARED) before the workers are
 * forked, one entry per worker slot, in which the worker writes when the request it is
 * handling started (0 when idle). CLOCK_MONOTONIC is the same clock in every process. A stuck
 * worker cannot answer anything, so the master must read this without its help. */
typedef struct beat {
    int64_t pid;
    int64_t busy_since_us;
} beat;

static beat *this_beat; /* in a worker: its entry */

static void beat_set(int64_t since)
{
    if (this_beat)
        __atomic_store_n(&this_beat->busy_since_us, since, __ATOMIC_RELAXED);
}

hl_db *hl_worker_db(hl_worker *w) { return w->db; }
hl_db *hl_worker_archive(hl_worker *w) { return w->archive; }
const hl_config *hl_worker_config(hl_worker *w) { return w->cfg; }
hl_hooks *hl_worker_hooks(hl_worker *w) { return w->hooks; }
hl_themes *hl_worker_themes(hl_worker *w) { return w->themes; }
hl_i18n *hl_worker_i18n(hl_worker *w) { return w ? w->i18n : NULL; }
hl_jobs *hl_worker_jobs(hl_worker *w) { return w ? w->jobs : NULL; }

const char *hl_request_tr(hl_request *req, const char *msgid)
{
    hl_i18n *i = req->worker ? req->worker->i18n : NULL;
    return i ? hl_i18n_get(i, req->lang, msgid) : msgid;
}

const char *hl_http_share_dir(const hl_config *cfg)
{
    if (cfg && cfg->share_dir)
        return cfg->share_dir;
    const char *env = getenv("HALLE_SHARE_DIR");
    return env && *env ? env : HALLE_SHARE_DIR;
}

int hl_http_route(hl_worker *w, unsigned methods, const char *pattern, const char *name,
                  hl_handler handler, void *ud, hl_err *err)
{
    return hl_router_add(w->router, methods, pattern, name, (void *)handler, ud, err);
}

int hl_http_route_flags(hl_worker *w, unsigned methods, const char *pattern, const char *name, unsigned flags,
                        hl_handler handler, void *ud, hl_err *err)
{
    return hl_router_add_flags(w->router, methods, pattern, name, flags, (void *)handler, ud, err);
}

/* ---- migrations --------------------------------------------------------------------- */

static int migrate_file(const char *path, unsigned flags, const char *component,
                        const char *dir, int *applied, hl_err *err)
{
    hl_db *db = hl_db_open(path, flags, err);
    if (!db)
        return err ? err->code : HL_ERR;
    int rc = hl_db_migrate(db, component, dir, applied, err);
    hl_db_close(db);
    return rc;
}

/* Enabled plugins' new migrations (after an upgrade) run at start too, so that a plugin never
 * serves with an older schema than its code expects. */
static int migrate_plugins(const hl_config *cfg, hl_err *err)
{
    hl_db *db = hl_db_open(cfg->db_path, 0, err);
    if (!db)
        return err && err->code ? err->code : HL_ERR;
    hl_plugin_list l;
    int rc = hl_plugin_discover(cfg, db, &l, err);
    for (size_t i = 0; rc == HL_OK && i < l.count; i++) {
        const hl_plugin_info *p = &l.items[i];
        if (!p->enabled || p->error)
            continue;
        hl_err e;
        hl_err_clear(&e);
        if (hl_plugin_migrate(cfg, db, p, &e) != HL_OK)
            hl_log(HL_LOG_ERROR, "plugin %s: %s", p->name, e.msg); /* the plugin is refused later */
    }
    hl_plugin_list_free(&l);
    hl_db_close(db);
    return rc;
}

int hl_http_migrate(const hl_config *cfg, int *applied_main, int *applied_archive, hl_err *err)
{
    char dir[4096];
    const char *share = hl_http_share_dir(cfg);
    snprintf(dir, sizeof dir, "%s/core/migrations/main", share);
    int rc = migrate_file(cfg->db_path, HL_DB_CREATE, "core", dir, applied_main, err);
    if (rc)
        return rc;
    if ((rc = migrate_plugins(cfg, err)) != HL_OK)
        return rc;
    snprintf(dir, sizeof dir, "%s/core/migrations/archive", share);
    return migrate_file(cfg->archive_path, HL_DB_CREATE, "archive", dir, applied_archive, err);
}

/* ---- request dispatch --------------------------------------------------------------- */

static unsigned method_bit(enum evhttp_cmd_type t, const char **name)
{
    switch (t) {
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

/* Parses everything the handler may read. Returns 0, or the status of the error page to send
 * (message in err). */
static int parse_request(hl_worker *w, hl_request *req, struct evhttp_request *ev, hl_err *err)
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
    hl_form_limits lim = {.max_fields = 1000, .max_file_size = w->cfg->max_upload_size, .max_files = 20};
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

static const char *framing_error(struct evhttp_request *ev)
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

static void on_reply_written(struct evhttp_request *ev, void *arg)
{
    (void)ev;
    hl_worker *w = arg;
    if (w->pending > 0)
        w->pending--;
}

static void access_log(hl_worker *w, hl_request *req, struct evhttp_request *ev, size_t bytes)
{
    char ip[64];
    snprintf(ip, sizeof ip, "%s", req->remote_ip ? req->remote_ip : "");
    char proto[16];
    snprintf(proto, sizeof proto, "HTTP/%d.%d", ev->major ? ev->major : 1, ev->minor);
    const char *logged_path = req->raw_path ? req->raw_path : evhttp_request_get_uri(ev);
    if (w->cfg->connection_log)
        hl_connlog_add(w->connlog, ip, proto, req->method_name, logged_path, req->status);
    if (w->cfg->access_log && hl_log_enabled(HL_LOG_INFO)) {
        char qpath[1100], fields[1400];
        char trimmed[1024];
        snprintf(trimmed, sizeof trimmed, "%s", logged_path ? logged_path : "");
        snprintf(fields, sizeof fields, "event=request worker=%d ip=%s method=%s path=%s status=%d bytes=%zu us=%lld",
                 w->id, ip, req->method_name, hl_log_quote(trimmed, qpath, sizeof qpath), req->status, bytes,
                 (long long)(now_us() - req->started_us));
        hl_log_line(HL_LOG_INFO, fields);
    }
}

/* Every state-changing request carries a CSRF token. The one exemption is a flag set by the
 * code that registers the route (HL_ROUTE_TOKEN_AUTH), never the route's or plugin's name:
 * such routes authenticate with a header token and never get the session cookie's user. */
static int needs_csrf(const hl_request *req, unsigned route_flags)
{
    if (req->method & (HL_METHOD_GET | HL_METHOD_HEAD | HL_METHOD_OPTIONS))
        return 0;
    return !(route_flags & HL_ROUTE_TOKEN_AUTH);
}

/* request.before: filters see {method, path} and may refuse the request (auth, consent,
 * rate limits). Returns 1 to go on to the handler, 0 when a filter answered. Costs nothing
 * when no plugin listens. */
static int run_request_before(hl_worker *w, hl_request *req)
{
    if (!hl_hooks_count(w->hooks, w->hook_request_before))
        return 1;
    json_t *v = json_pack("{s:s, s:s}", "method", req->method_name, "path", req->path);
    hl_hook_stop stop;
    memset(&stop, 0, sizeof stop);
    int rc = hl_hooks_run_filter(w->hooks, w->hook_request_before, &v, req, &stop);
    json_decref(v);
    if (rc == HL_HOOK_CONTINUE)
        return 1;
    if (rc < 0)
        hl_log(HL_LOG_ERROR, "request.before: %s", stop.message);
    hl_response_error(req, stop.status >= 400 ? stop.status : (rc < 0 ? 500 : 403), rc < 0 ? NULL : stop.message);
    return 0;
}

/* response.before: filters get {status, headers: {}} and may add headers (e.g. cookies). */
static void run_response_before(hl_worker *w, hl_request *req)
{
    if (!hl_hooks_count(w->hooks, w->hook_response_before))
        return;
    json_t *v = json_pack("{s:i, s:s, s:{}}", "status", req->status, "path", req->path ? req->path : "", "headers");
    hl_hook_stop stop;
    memset(&stop, 0, sizeof stop);
    int rc = hl_hooks_run_filter(w->hooks, w->hook_response_before, &v, req, &stop);
    if (rc < 0) {
        hl_log(HL_LOG_ERROR, "response.before: %s", stop.message);
        hl_response_error(req, 500, NULL);
    } else {
        const char *name;
        json_t *val;
        json_object_foreach(json_object_get(v, "headers"), name, val) {
            if (!json_is_string(val))
                continue;
            /* Filters may set their own cookies, never the core's credential cookies (a
             * fixed session would log visitors into someone else's account). */
            if (!strcasecmp(name, "Set-Cookie")) {
                if (hl_webauth_sets_secret_cookie(json_string_value(val)))
                    hl_log(HL_LOG_WARN, "response.before: refused a Set-Cookie of a core credential cookie");
                else
                    hl_response_add_header(req, name, json_string_value(val));
                continue;
            }
            hl_response_header(req, name, json_string_value(val));
        }
    }
    json_decref(v);
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    hl_worker *w = arg;
    hl_request req;
    memset(&req, 0, sizeof req);
    req.arena = w->arena;
    req.cfg = w->cfg;
    req.db = w->db;
    req.archive = w->archive;
    req.worker = w;
    req.started_us = w->last_dispatch_us = now_us();
    beat_set(req.started_us);
    req.method = method_bit(evhttp_request_get_command(ev), &req.method_name);
    req.lang = "fr";
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    if (conn) {
        char *host = NULL;
        ev_uint16_t port = 0;
        evhttp_connection_get_peer(conn, &host, &port);
        req.remote_ip = host;
        /* Behind a trusted reverse proxy the client is named by its headers; the result is what
         * rate limits, lockouts and the connection log see. */
        if (host && hl_proxies_count(w->proxies)) {
            char *ip = hl_arena_alloc(w->arena, 64);
            struct evkeyvalq *in = evhttp_request_get_input_headers(ev);
            if (ip)
                req.remote_ip = hl_proxies_client(w->proxies, host, evhttp_find_header(in, "Forwarded"),
                                                  evhttp_find_header(in, "X-Forwarded-For"), ip, 64);
        }
    }
    if (hl_request_bind(&req, ev) != HL_OK) {
        evhttp_send_error(ev, 500, NULL);
        hl_arena_reset(w->arena);
        return;
    }
    hl_err err;
    hl_err_clear(&err);
    int close_conn = w->stopping;
    const char *framing = framing_error(ev);
    int status = 0;
    if (framing) {
        hl_log(HL_LOG_WARN, "refused request framing from %s: %s", req.remote_ip ? req.remote_ip : "?", framing);
        hl_err_set(&err, 400, "%s", framing);
        status = 400;
        close_conn = 1;
    } else {
        status = req.method ? parse_request(w, &req, ev, &err) : 501;
    }
    if (status) {
        hl_response_error(&req, status, err.msg);
    } else {
        hl_route_match m;
        memset(&m, 0, sizeof m);
        hl_route_result r = hl_router_match(w->router, req.method, req.path, strlen(req.path), w->arena, &m);
        int token_route = r == HL_ROUTE_FOUND && (m.flags & HL_ROUTE_TOKEN_AUTH);
        if (req.cookies.count && !token_route)
            hl_webauth_load(&req);
        req.lang = hl_i18n_negotiate(w->i18n, hl_params_value(&req.cookies, "halle_lang"),
                                     hl_request_header(&req, "Accept-Language"));
        hl_err cerr;
        hl_err_clear(&cerr);
        if (r == HL_ROUTE_FOUND && needs_csrf(&req, m.flags) && hl_webauth_check_csrf(&req, &cerr) != HL_OK) {
            hl_log(HL_LOG_WARN, "CSRF check failed for %s %s: %s", req.method_name, req.path, cerr.msg);
            hl_response_error(&req, 403, cerr.msg);
        } else if (r == HL_ROUTE_FOUND && !run_request_before(w, &req)) {
            /* a request.before filter answered */
        } else if (r == HL_ROUTE_FOUND) {
            req.params = m.params;
            req.route_name = m.name;
            int rc = ((hl_handler)m.handler)(&req, m.ud);
            if (rc != HL_OK) {
                hl_log(HL_LOG_ERROR, "handler %s for %s %s failed with code %d", m.name ? m.name : "?",
                       req.method_name, req.path, rc);
                hl_response_error(&req, req.status >= 400 ? req.status : 500, NULL);
            }
        } else if (r == HL_ROUTE_METHOD_NOT_ALLOWED) {
            char allow[128];
            hl_router_allow_string(m.allow | HL_METHOD_OPTIONS, allow, sizeof allow);
            if (req.method == HL_METHOD_OPTIONS) {
                hl_response_status(&req, 204);
            } else {
                hl_response_error(&req, 405, NULL);
            }
            hl_response_header(&req, "Allow", allow);
        } else {
            hl_response_error(&req, 404, NULL);
        }
    }
    run_response_before(w, &req);
    /* A page built for a logged-in user, or one that sets a cookie, is nobody else's: no cache
     * (browser back-forward, proxy) may keep it. Only what a handler marks public (images,
     * a group's stylesheet: the same for everyone) keeps its own policy. */
    if (req.user || hl_response_header_value(&req, "Set-Cookie")) {
        const char *cc = hl_response_header_value(&req, "Cache-Control");
        if (!cc || strncmp(cc, "public", 6))
            hl_response_header(&req, "Cache-Control", "no-store");
    }
    size_t bytes = hl_response_length(&req);
    w->pending++;
    evhttp_request_set_on_complete_cb(ev, on_reply_written, w);
    hl_request_send(&req, close_conn);
    access_log(w, &req, ev, bytes);
    json_decref(req.meta);
    hl_arena_reset(w->arena);
    beat_set(0);
}

/* ---- worker lifecycle --------------------------------------------------------------- */

static int open_listener(const char *host, int port, hl_err *err)
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

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hl_worker *w = arg;
    hl_err err;
    if (hl_connlog_flush(w->connlog, &err) < 0)
        hl_log(HL_LOG_ERROR, "connection log: %s", err.msg);
}

/* Stops once every reply handed to libevent is written and no request arrived for a short
 * while (requests still being received get that long to complete), or at shutdown_timeout. */
static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hl_worker *w = arg;
    int64_t now = now_us();
    int idle = now - w->last_dispatch_us > 500000 && now - w->stop_started_us > 200000;
    if ((w->pending == 0 && idle) || now - w->stop_started_us > (int64_t)w->cfg->shutdown_timeout * 1000000) {
        if (w->pending)
            hl_log(HL_LOG_WARN, "shutdown timeout: %d replies not finished", w->pending);
        event_base_loopexit(w->base, NULL);
    }
}

/* Closing a SO_REUSEPORT socket resets the connections still in its accept queue, so the
 * listener is closed only once libevent has accepted what was queued (a few tries at most). */
static void close_listener(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hl_worker *w = arg;
    if (!w->bound)
        return;
    struct pollfd p = {.fd = evhttp_bound_socket_get_fd(w->bound), .events = POLLIN};
    if (w->close_tries++ < 20 && poll(&p, 1, 0) > 0) {
        struct timeval soon = {0, 2000};
        event_base_once(w->base, -1, EV_TIMEOUT, close_listener, w, &soon);
        return;
    }
    evhttp_del_accept_socket(w->http, w->bound);
    w->bound = NULL;
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    hl_worker *w = arg;
    if (w->stopping) {
        if (sig == SIGINT)
            event_base_loopexit(w->base, NULL);
        return;
    }
    w->stopping = 1;
    w->stop_started_us = now_us();
    close_listener(-1, 0, w);
    struct timeval tv = {0, 100000};
    w->ev_drain = event_new(w->base, -1, EV_PERSIST, on_drain, w);
    if (w->ev_drain)
        event_add(w->ev_drain, &tv);
    else
        event_base_loopexit(w->base, NULL);
}

static void worker_free(hl_worker *w)
{
    if (w->ev_term) event_free(w->ev_term);
    if (w->ev_int) event_free(w->ev_int);
    if (w->ev_flush) event_free(w->ev_flush);
    if (w->ev_drain) event_free(w->ev_drain);
    if (w->http) evhttp_free(w->http);
    if (w->base) event_base_free(w->base);
    hl_connlog_free(w->connlog);
    hl_hooks_free(w->hooks);
    hl_themes_free(w->themes);
    hl_i18n_free(w->i18n);
    hl_proxies_free(w->proxies);
    hl_host_unload_all(w->hosts, w->nhosts);
    hl_static_free(w->statics);
    hl_router_free(w->router);
    hl_jobs_free(w->jobs);
    hl_db_close(w->archive);
    hl_db_close(w->db);
    hl_arena_free(w->arena);
}

static int load_theme_static(hl_worker *w, hl_err *err)
{
    char dir[4096];
    const char *share = hl_http_share_dir(w->cfg);
    if (!(w->statics = hl_static_new()))
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    snprintf(dir, sizeof dir, "%s/themes/default/static", share);
    int rc = hl_static_load_dir(w->statics, dir, NULL, err);
    if (rc == HL_OK && w->cfg->theme && strcmp(w->cfg->theme, "default")) {
        snprintf(dir, sizeof dir, "%s/themes/%s/static", share, w->cfg->theme);
        rc = hl_static_load_dir(w->statics, dir, NULL, err);
    }
    return rc;
}

static int load_themes(const hl_config *cfg, hl_themes **out, hl_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/themes", hl_http_share_dir(cfg));
    hl_themes *t = hl_themes_load(dir, cfg->dev_mode, err);
    if (!t)
        return err && err->code ? err->code : HL_ERR;
    if (cfg->theme && !hl_themes_find(t, cfg->theme)) {
        hl_themes_free(t);
        return hl_err_set(err, HL_EINVAL, "theme '%s' (halle.conf) is not installed in %s", cfg->theme, dir);
    }
    *out = t;
    return HL_OK;
}

static int load_i18n(const hl_config *cfg, hl_i18n **out, hl_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/po", hl_http_share_dir(cfg));
    return hl_i18n_load(out, dir, err);
}

/* hooks.c suspended a plugin in this process: the operator sees it in `halle plugin list`. */
static void record_suspension(void *ud, const char *owner, const char *why)
{
    hl_worker *w = ud;
    hl_plugin_record_suspension(w->db, owner, w->id, why);
}

static int worker_run(const hl_config *cfg, int id, int ready_fd, hl_err *err)
{
    hl_worker w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    w.id = id;
    int rc = HL_ERR;
    int fd = -1;
    if (!(w.arena = hl_arena_new(16384)) || !(w.router = hl_router_new()) || !(w.jobs = hl_jobs_new())) {
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        goto out;
    }
    if (!(w.db = hl_db_open(cfg->db_path, 0, err)) || !(w.archive = hl_db_open(cfg->archive_path, 0, err)))
        goto out;
    if ((rc = load_theme_static(&w, err)) != HL_OK || (rc = load_themes(cfg, &w.themes, err)) != HL_OK ||
        (rc = load_i18n(cfg, &w.i18n, err)) != HL_OK)
        goto out;
    hl_themes_set_i18n(w.themes, w.i18n);
    if ((rc = hl_site_register(&w, cfg, w.statics, err)) != HL_OK ||
        (rc = hl_account_pages_register(&w, err)) != HL_OK)
        goto out;
    if (!(w.hooks = hl_hooks_new())) {
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        goto out;
    }
    if (!(w.proxies = hl_proxies_parse(cfg->trusted_proxies, err))) {
        rc = err->code;
        goto out;
    }
    hl_plugin_clear_suspensions(w.db, id);
    hl_hooks_set_failure_limit(w.hooks, cfg->hook_failure_limit, record_suspension, &w);
    if ((rc = hl_host_declare_core_hooks(w.hooks, err)) != HL_OK ||
        (rc = hl_host_load_all(&w, &w.hosts, &w.nhosts, err)) != HL_OK)
        goto out;
    hl_hooks_freeze(w.hooks);
    hl_jobs_freeze(w.jobs);
    w.hook_request_before = hl_hooks_id(w.hooks, "request.before");
    w.hook_response_before = hl_hooks_id(w.hooks, "response.before");
    w.connlog = hl_connlog_new(w.db, 512);
    if (!(w.base = event_base_new()) || !(w.http = evhttp_new(w.base)) || !w.connlog) {
        rc = hl_err_set(err, HL_ENOMEM, "cannot create the event loop");
        goto out;
    }
    evhttp_set_max_headers_size(w.http, (ev_ssize_t)cfg->max_header_size);
    evhttp_set_max_body_size(w.http, (ev_ssize_t)cfg->max_body_size);
    evhttp_set_timeout(w.http, cfg->read_timeout);
    evhttp_set_allowed_methods(w.http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
    evhttp_set_default_content_type(w.http, "text/html; charset=utf-8");
    evhttp_set_gencb(w.http, on_request, &w);
    if ((fd = open_listener(cfg->listen_host, cfg->listen_port, err)) < 0) {
        rc = fd;
        goto out;
    }
    if (!(w.bound = evhttp_accept_socket_with_handle(w.http, fd))) {
        close(fd);
        rc = hl_err_set(err, HL_EIO, "cannot accept on %s:%d", cfg->listen_host, cfg->listen_port);
        goto out;
    }
    w.ev_term = evsignal_new(w.base, SIGTERM, on_stop_signal, &w);
    w.ev_int = evsignal_new(w.base, SIGINT, on_stop_signal, &w);
    w.ev_flush = event_new(w.base, -1, EV_PERSIST, on_flush, &w);
    struct timeval second = {1, 0};
    if (!w.ev_term || !w.ev_int || !w.ev_flush || event_add(w.ev_term, NULL) || event_add(w.ev_int, NULL) ||
        event_add(w.ev_flush, &second)) {
        rc = hl_err_set(err, HL_ENOMEM, "cannot set up signal handling");
        goto out;
    }
    /* Signals were blocked by the master around fork; libevent now owns them. */
    sigset_t all;
    sigemptyset(&all);
    sigaddset(&all, SIGTERM);
    sigaddset(&all, SIGINT);
    sigprocmask(SIG_UNBLOCK, &all, NULL);
    if (ready_fd >= 0) { /* tells the master this worker accepts connections */
        ssize_t wr;
        do
            wr = write(ready_fd, "r", 1);
        while (wr < 0 && errno == EINTR);
        close(ready_fd);
    }
    hl_log(HL_LOG_INFO, "worker %d ready (%zu routes, %zu static files, %zu plugins)", id,
           hl_router_count(w.router), hl_static_count(w.statics), w.nhosts);
    event_base_dispatch(w.base);
    hl_log(HL_LOG_INFO, "worker %d stopped", id);
    rc = HL_OK;
out:
    worker_free(&w);
    return rc;
}

hl_worker *hl_worker_cli_new(const hl_config *cfg, hl_err *err)
{
    hl_worker *w = calloc(1, sizeof *w);
    if (!w) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    w->id = -1;
    if (!(w->arena = hl_arena_new(16384)) || !(w->router = hl_router_new()) || !(w->hooks = hl_hooks_new()) ||
        !(w->jobs = hl_jobs_new())) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        goto fail;
    }
    if (!(w->db = hl_db_open(cfg->db_path, 0, err)) || !(w->archive = hl_db_open(cfg->archive_path, 0, err)) ||
        hl_host_declare_core_hooks(w->hooks, err) != HL_OK || load_themes(cfg, &w->themes, err) != HL_OK ||
        load_i18n(cfg, &w->i18n, err) != HL_OK)
        goto fail;
    hl_themes_set_i18n(w->themes, w->i18n);
    hl_hooks_set_failure_limit(w->hooks, cfg->hook_failure_limit, record_suspension, w);
    return w;
fail:
    worker_free(w);
    free(w);
    return NULL;
}

void hl_worker_cli_free(hl_worker *w)
{
    if (!w)
        return;
    worker_free(w);
    free(w);
}

/* ---- master ------------------------------------------------------------------------- */

typedef struct slot {
    pid_t pid;
    int64_t started_us;
    int quick_deaths;
} slot;

/* Forks a worker. *ready_fd (if not NULL) gets a pipe that becomes readable once the worker
 * listens, or at EOF if it died first. */
static pid_t spawn_worker(const hl_config *cfg, int id, beat *beats, int *ready_fd)
{
    int fds[2] = {-1, -1};
    if (ready_fd && pipe2(fds, O_CLOEXEC) != 0)
        fds[0] = fds[1] = -1;
    pid_t pid = fork();
    if (pid != 0) {
        if (fds[1] >= 0)
            close(fds[1]);
        if (ready_fd)
            *ready_fd = pid > 0 ? fds[0] : -1;
        else if (fds[0] >= 0)
            close(fds[0]);
        if (pid < 0 && fds[0] >= 0)
            close(fds[0]);
        return pid;
    }
    if (fds[0] >= 0)
        close(fds[0]);
    if (beats) {
        this_beat = &beats[id];
        __atomic_store_n(&this_beat->pid, (int64_t)getpid(), __ATOMIC_RELAXED);
        beat_set(0);
    }
    /* The child keeps the master's blocked signal set; worker_run unblocks SIGTERM and SIGINT
     * once libevent has taken them over. */
    signal(SIGHUP, SIG_IGN);
    hl_err err;
    hl_err_clear(&err);
    int rc = worker_run(cfg, id, fds[1], &err);
    if (rc != HL_OK)
        hl_log(HL_LOG_ERROR, "worker %d: %s", id, err.msg);
    hl_log_close();
    _exit(rc == HL_OK ? 0 : 3);
}

/* Forks the jobs process (core/jobsproc.c, handed in by main so that http.c needs nothing
 * above it). It unblocks the signals it handles itself. */
static pid_t spawn_jobs(const hl_config *cfg, hl_jobs_main jobs_main)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Named apart from the workers in ps/top (and for the tests that count workers). */
    prctl(PR_SET_NAME, "halle-jobs", 0, 0, 0);
    signal(SIGHUP, SIG_IGN);
    hl_err err;
    hl_err_clear(&err);
    int rc = jobs_main(cfg, &err);
    if (rc != HL_OK)
        hl_log(HL_LOG_ERROR, "jobs process: %s", err.msg);
    hl_log_close();
    _exit(rc == HL_OK ? 0 : 3);
}

static int wait_ready(int fd, int timeout_ms)
{
    if (fd < 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ok = 0;
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    for (;;) {
        int left = (int)((deadline - now_us()) / 1000);
        if (left <= 0)
            break;
        int n = poll(&p, 1, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            char c;
            ok = read(fd, &c, 1) == 1;
        }
        break;
    }
    close(fd);
    return ok;
}

static int detect_workers(const hl_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 64 ? (int)n : 2;
}

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
}

/* One `halle serve` per instance: SO_REUSEPORT would let a second one bind the same port
 * silently and share the traffic with the first. The lock (flock) goes with the processes
 * holding it, so a crashed server leaves nothing to clean up. Returns the fd to keep open. */
static int lock_instance(const hl_config *cfg, hl_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/halle.lock", cfg->dir ? cfg->dir : ".");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return hl_err_set(err, HL_EIO, "cannot open the lock file %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            return hl_err_set(err, HL_EBUSY,
                              "this instance is already being served (halle serve, pid %s; lock %s): "
                              "stop it first",
                              *pid ? pid : "?", path);
        return hl_err_set(err, HL_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    char line[32];
    int len = snprintf(line, sizeof line, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len)
        hl_log(HL_LOG_WARN, "cannot write the pid to %s", path);
    return fd;
}

static void signal_all(slot *slots, int n, pid_t jobs_pid, int sig)
{
    for (int i = 0; i < n; i++)
        if (slots[i].pid > 0)
            kill(slots[i].pid, sig);
    if (jobs_pid > 0)
        kill(jobs_pid, sig);
}

/* Kills (SIGKILL) each worker stuck in one request past request_hard_limit; the master then
 * replaces it like any dead worker. Its connections are lost, the other workers' are not. */
static void kill_stuck(const hl_config *cfg, slot *slots, beat *beats, int n)
{
    int64_t now = now_us(), limit = (int64_t)cfg->request_hard_limit * 1000000;
    for (int i = 0; i < n; i++) {
        int64_t since = __atomic_load_n(&beats[i].busy_since_us, __ATOMIC_RELAXED);
        int64_t pid = __atomic_load_n(&beats[i].pid, __ATOMIC_RELAXED);
        if (!since || slots[i].pid <= 0 || pid != slots[i].pid || now - since <= limit)
            continue;
        hl_log(HL_LOG_WARN, "worker %d (pid %d) stuck in one request for %lld s (request_hard_limit = %d); "
               "killing it", i, (int)slots[i].pid, (long long)((now - since) / 1000000), cfg->request_hard_limit);
        __atomic_store_n(&beats[i].busy_since_us, 0, __ATOMIC_RELAXED);
        kill(slots[i].pid, SIGKILL);
    }
}

int hl_http_serve(hl_config *cfg, hl_jobs_main jobs_main, hl_err *err)
{
    hl_proxies *proxies = hl_proxies_parse(cfg->trusted_proxies, err); /* a typo stops the start here */
    if (!proxies)
        return err->code;
    hl_proxies_free(proxies);
    int lock_fd = lock_instance(cfg, err);
    if (lock_fd < 0)
        return lock_fd;
    int rc = hl_http_migrate(cfg, NULL, NULL, err);
    if (rc) {
        close(lock_fd);
        return rc;
    }
    /* Fail now, with a message on the terminal, rather than in every worker. */
    hl_themes *themes = NULL;
    hl_i18n *i18n = NULL;
    if ((rc = load_themes(cfg, &themes, err)) != HL_OK || (rc = load_i18n(cfg, &i18n, err)) != HL_OK) {
        hl_themes_free(themes);
        close(lock_fd);
        return rc;
    }
    hl_themes_free(themes);
    hl_i18n_free(i18n);
    int probe = open_listener(cfg->listen_host, cfg->listen_port, err);
    if (probe < 0) {
        close(lock_fd);
        return probe;
    }
    if (cfg->listen_port == 0) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(probe, (struct sockaddr *)&ss, &sl) == 0)
            cfg->listen_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                              : ((struct sockaddr_in *)&ss)->sin_port);
    }
    close(probe);

    int n = detect_workers(cfg);
    slot *slots = calloc((size_t)n, sizeof *slots);
    size_t beats_len = (size_t)n * sizeof(beat);
    beat *beats = mmap(NULL, beats_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!slots || beats == MAP_FAILED) {
        free(slots);
        if (beats != MAP_FAILED)
            munmap(beats, beats_len);
        close(lock_fd);
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    }

    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, &old);
    signal(SIGPIPE, SIG_IGN);

    int ipv6 = strchr(cfg->listen_host, ':') != NULL;
    hl_log(HL_LOG_INFO, "halle %s serving http://%s%s%s:%d/ with %d workers (master pid %d)", PACKAGE_VERSION,
           ipv6 ? "[" : "", cfg->listen_host, ipv6 ? "]" : "", cfg->listen_port, n, (int)getpid());
    printf("halle: serving http://%s%s%s:%d/ (%d workers, log: %s)\n", ipv6 ? "[" : "", cfg->listen_host,
           ipv6 ? "]" : "", cfg->listen_port, n, strcmp(cfg->log_file, "-") ? cfg->log_file : "stderr");
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        slots[i].pid = spawn_worker(cfg, i, beats, NULL);
        slots[i].started_us = now_us();
        if (slots[i].pid > 0)
            hl_log(HL_LOG_INFO, "worker %d started as pid %d", i, (int)slots[i].pid);
    }
    /* The jobs process: restarted when it dies, after a delay that grows while it keeps dying
     * at start (a broken plugin must not make the master spin). */
    slot jobs = {0};
    int64_t jobs_restart_at = 0;
    if (jobs_main) {
        jobs.pid = spawn_jobs(cfg, jobs_main);
        jobs.started_us = now_us();
        if (jobs.pid > 0)
            hl_log(HL_LOG_INFO, "jobs process started as pid %d", (int)jobs.pid);
    }

    int stopping = 0, alive = n + (jobs.pid > 0);
    int64_t kill_deadline = 0;
    while (alive > 0) {
        struct timespec tick = {0, 200000000};
        int sig = sigtimedwait(&set, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) {
            if (!stopping) {
                hl_log(HL_LOG_INFO, "stopping: waiting for in-flight requests (up to %ds)", cfg->shutdown_timeout);
                stopping = 1;
                kill_deadline = now_us() + (int64_t)cfg->shutdown_timeout * 1000000;
                signal_all(slots, n, jobs.pid, SIGTERM);
            }
        } else if (sig == SIGHUP && !stopping) {
            /* Rolling restart: a new worker starts before the old one is told to stop. */
            hl_log(HL_LOG_INFO, "SIGHUP: restarting workers one by one");
            for (int i = 0; i < n; i++) {
                pid_t old_pid = slots[i].pid;
                int ready = -1;
                pid_t pid = spawn_worker(cfg, i, beats, &ready);
                if (pid < 0 || !wait_ready(ready, 10000)) {
                    hl_log(HL_LOG_ERROR, "SIGHUP: new worker %d did not start; keeping the old one", i);
                    if (pid > 0)
                        kill(pid, SIGKILL);
                    continue;
                }
                slots[i].pid = pid;
                slots[i].started_us = now_us();
                hl_log(HL_LOG_INFO, "worker %d replaced: pid %d, old pid %d stopping", i, (int)pid, (int)old_pid);
                if (old_pid > 0)
                    kill(old_pid, SIGTERM);
            }
            /* The jobs process too (plugins may have changed); leases keep the old one's
             * last run and the new one's first from overlapping. */
            if (jobs_main && jobs.pid > 0) {
                pid_t old_pid = jobs.pid;
                pid_t pid = spawn_jobs(cfg, jobs_main);
                if (pid > 0) {
                    jobs.pid = pid;
                    jobs.started_us = now_us();
                    kill(old_pid, SIGTERM);
                    hl_log(HL_LOG_INFO, "jobs process replaced: pid %d, old pid %d stopping", (int)pid, (int)old_pid);
                }
            }
        }
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            char why[64];
            describe_exit(status, why, sizeof why);
            if (jobs_main && pid == jobs.pid) {
                jobs.pid = 0;
                if (stopping) {
                    alive--;
                    hl_log(HL_LOG_INFO, "jobs process (pid %d) %s", (int)pid, why);
                    continue;
                }
                int quick = now_us() - jobs.started_us < 2000000;
                jobs.quick_deaths = quick ? jobs.quick_deaths + 1 : 0;
                int64_t delay = quick ? (int64_t)1000000 << (jobs.quick_deaths < 6 ? jobs.quick_deaths : 6) : 0;
                hl_log(quick ? HL_LOG_ERROR : HL_LOG_WARN, "jobs process (pid %d) %s; restarting it%s", (int)pid,
                       why, quick ? " after a delay" : "");
                jobs_restart_at = now_us() + delay;
                alive--;
                continue;
            }
            int i;
            for (i = 0; i < n && slots[i].pid != pid; i++)
                ;
            if (i == n) /* an old worker or jobs process from a rolling restart */
                continue;
            slots[i].pid = 0;
            if (stopping) {
                alive--;
                hl_log(HL_LOG_INFO, "worker %d (pid %d) %s", i, (int)pid, why);
                continue;
            }
            int quick = now_us() - slots[i].started_us < 2000000;
            slots[i].quick_deaths = quick ? slots[i].quick_deaths + 1 : 0;
            if (slots[i].quick_deaths >= 5) {
                hl_log(HL_LOG_ERROR, "worker %d (pid %d) %s; it keeps failing at start, stopping", i, (int)pid, why);
                rc = hl_err_set(err, HL_ERR, "workers keep failing at start; see the log");
                stopping = 1;
                kill_deadline = now_us() + (int64_t)cfg->shutdown_timeout * 1000000;
                alive--;
                signal_all(slots, n, jobs.pid, SIGTERM);
                continue;
            }
            hl_log(quick ? HL_LOG_ERROR : HL_LOG_WARN, "worker %d (pid %d) %s; restarting it", i, (int)pid, why);
            if (quick)
                usleep(200000);
            slots[i].pid = spawn_worker(cfg, i, beats, NULL);
            slots[i].started_us = now_us();
            if (slots[i].pid > 0)
                hl_log(HL_LOG_INFO, "worker %d started as pid %d", i, (int)slots[i].pid);
        }
        if (!stopping && jobs_main && !jobs.pid && now_us() >= jobs_restart_at) {
            jobs.pid = spawn_jobs(cfg, jobs_main);
            jobs.started_us = now_us();
            if (jobs.pid > 0) {
                alive++;
                hl_log(HL_LOG_INFO, "jobs process started as pid %d", (int)jobs.pid);
            }
        }
        if (!stopping)
            kill_stuck(cfg, slots, beats, n);
        /* A graceful stop never outlasts shutdown_timeout: what is still running then (a
         * request stuck in a plugin, a long job) is killed; a job's lease brings it back. */
        if (stopping && kill_deadline && now_us() >= kill_deadline) {
            for (int i = 0; i < n; i++)
                if (slots[i].pid > 0) {
                    hl_log(HL_LOG_WARN, "worker %d (pid %d) did not stop in time; killing it", i, (int)slots[i].pid);
                    kill(slots[i].pid, SIGKILL);
                }
            if (jobs.pid > 0) {
                hl_log(HL_LOG_WARN, "jobs process (pid %d) did not stop in time; killing it", (int)jobs.pid);
                kill(jobs.pid, SIGKILL);
            }
            kill_deadline = 0;
        }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    free(slots);
    munmap(beats, beats_len);
    sigprocmask(SIG_SETMASK, &old, NULL);
    hl_log(HL_LOG_INFO, "halle stopped");
    close(lock_fd);
    return rc;
}
