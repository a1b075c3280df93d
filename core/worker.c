/* A worker process (see worker.h): it owns the process's services (databases, router, hooks,
 * themes, translations, plugins) and runs every request through the pipeline, in this order and
 * in this one place: HTTP parse and limits (core/http.c) -> session -> CSRF -> request.before ->
 * route handler -> response.before -> send. */
#include "halle-config.h"
#include "core/worker.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h> /* the protocol version has no getter in libevent 2.1 */
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core/account_pages.h"
#include "core/connlog.h"
#include "core/hooks.h"
#include "core/host.h"
#include "core/http.h"
#include "core/i18n.h"
#include "core/jobs.h"
#include "core/log.h"
#include "core/page.h"
#include "core/plugin.h"
#include "core/proxy.h"
#include "core/site.h"
#include "core/static.h"
#include "core/theme.h"
#include "core/webauth.h"

/* The process: its services (first, so that hl_worker_cli_free finds the whole) and what
 * serving needs on top. */
typedef struct proc {
    hl_worker s;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    hl_static *statics;
    hl_connlog *connlog;
    hl_arena *arena;
    hl_proxies *proxies;     /* trusted_proxies, parsed once */
    halle_host **hosts;
    size_t nhosts;
    int hook_request_before, hook_response_before;
    struct event *ev_term, *ev_int, *ev_flush, *ev_drain;
    int stopping;
    int close_tries;
    int pending;             /* replies handed to libevent, not yet written */
    int64_t last_dispatch_us;
    int64_t stop_started_us;
} proc;

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* This worker's entry of the master's heartbeat page (worker.h), NULL outside a served worker. */
static hl_beat *this_beat;

static void beat_set(int64_t since)
{
    if (this_beat)
        __atomic_store_n(&this_beat->busy_since_us, since, __ATOMIC_RELAXED);
}

/* ---- the pipeline ------------------------------------------------------------------- */

static void on_reply_written(struct evhttp_request *ev, void *arg)
{
    (void)ev;
    proc *w = arg;
    if (w->pending > 0)
        w->pending--;
}

static void access_log(proc *w, hl_request *req, struct evhttp_request *ev, size_t bytes)
{
    char ip[64];
    snprintf(ip, sizeof ip, "%s", req->remote_ip ? req->remote_ip : "");
    char proto[16];
    snprintf(proto, sizeof proto, "HTTP/%d.%d", ev->major ? ev->major : 1, ev->minor);
    const char *logged_path = req->raw_path ? req->raw_path : evhttp_request_get_uri(ev);
    if (w->s.cfg->connection_log)
        hl_connlog_add(w->connlog, ip, proto, req->method_name, logged_path, req->status);
    if (w->s.cfg->access_log && hl_log_enabled(HL_LOG_INFO)) {
        char qpath[1100], fields[1400];
        char trimmed[1024];
        snprintf(trimmed, sizeof trimmed, "%s", logged_path ? logged_path : "");
        snprintf(fields, sizeof fields, "event=request worker=%d ip=%s method=%s path=%s status=%d bytes=%zu us=%lld",
                 w->s.id, ip, req->method_name, hl_log_quote(trimmed, qpath, sizeof qpath), req->status, bytes,
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
static int run_request_before(proc *w, hl_request *req)
{
    if (!hl_hooks_count(w->s.hooks, w->hook_request_before))
        return 1;
    json_t *v = json_pack("{s:s, s:s}", "method", req->method_name, "path", req->path);
    hl_hook_stop stop;
    memset(&stop, 0, sizeof stop);
    int rc = hl_hooks_run_filter(w->s.hooks, w->hook_request_before, &v, req, &stop);
    json_decref(v);
    if (rc == HL_HOOK_CONTINUE)
        return 1;
    if (rc < 0)
        hl_log(HL_LOG_ERROR, "request.before: %s", stop.message);
    hl_response_error(req, stop.status >= 400 ? stop.status : (rc < 0 ? 500 : 403), rc < 0 ? NULL : stop.message);
    return 0;
}

/* response.before: filters get {status, headers: {}} and may add headers (e.g. cookies). */
static void run_response_before(proc *w, hl_request *req)
{
    if (!hl_hooks_count(w->s.hooks, w->hook_response_before))
        return;
    json_t *v = json_pack("{s:i, s:s, s:{}}", "status", req->status, "path", req->path ? req->path : "", "headers");
    hl_hook_stop stop;
    memset(&stop, 0, sizeof stop);
    int rc = hl_hooks_run_filter(w->s.hooks, w->hook_response_before, &v, req, &stop);
    if (rc < 0) {
        hl_log(HL_LOG_ERROR, "response.before: %s", stop.message);
        hl_response_error(req, 500, NULL);
    } else {
        const char *name;
        json_t *val;
        json_object_foreach(json_object_get(v, "headers"), name, val) {
            if (json_is_string(val))
                hl_webauth_plugin_header(req, "response.before", name, json_string_value(val));
        }
    }
    json_decref(v);
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    proc *w = arg;
    hl_request req;
    memset(&req, 0, sizeof req);
    req.arena = w->arena;
    req.cfg = w->s.cfg;
    req.db = w->s.db;
    req.archive = w->s.archive;
    req.worker = &w->s;
    req.i18n = w->s.i18n;
    req.error_page = hl_page_error;
    req.started_us = w->last_dispatch_us = now_us();
    beat_set(req.started_us);
    req.method = hl_http_method(ev, &req.method_name);
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
    const char *framing = hl_http_framing_error(ev);
    int status = 0;
    if (framing) {
        hl_log(HL_LOG_WARN, "refused request framing from %s: %s", req.remote_ip ? req.remote_ip : "?", framing);
        hl_err_set(&err, 400, "%s", framing);
        status = 400;
        close_conn = 1;
    } else {
        status = req.method ? hl_http_parse(&req, ev, w->s.cfg, &err) : 501;
    }
    if (status) {
        hl_response_error(&req, status, err.msg);
    } else {
        hl_route_match m;
        memset(&m, 0, sizeof m);
        hl_route_result r = hl_router_match(w->s.router, req.method, req.path, strlen(req.path), w->arena, &m);
        int token_route = r == HL_ROUTE_FOUND && (m.flags & HL_ROUTE_TOKEN_AUTH);
        if (req.cookies.count && !token_route)
            hl_webauth_load(&req);
        req.lang = hl_i18n_negotiate(w->s.i18n, hl_params_value(&req.cookies, "halle_lang"),
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

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    proc *w = arg;
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
    proc *w = arg;
    int64_t now = now_us();
    int idle = now - w->last_dispatch_us > 500000 && now - w->stop_started_us > 200000;
    if ((w->pending == 0 && idle) || now - w->stop_started_us > (int64_t)w->s.cfg->shutdown_timeout * 1000000) {
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
    proc *w = arg;
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
    proc *w = arg;
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

static void worker_free(proc *w)
{
    if (w->ev_term) event_free(w->ev_term);
    if (w->ev_int) event_free(w->ev_int);
    if (w->ev_flush) event_free(w->ev_flush);
    if (w->ev_drain) event_free(w->ev_drain);
    if (w->http) evhttp_free(w->http);
    if (w->base) event_base_free(w->base);
    hl_connlog_free(w->connlog);
    hl_hooks_free(w->s.hooks);
    hl_themes_free(w->s.themes);
    hl_i18n_free(w->s.i18n);
    hl_proxies_free(w->proxies);
    hl_host_unload_all(w->hosts, w->nhosts);
    hl_static_free(w->statics);
    hl_router_free(w->s.router);
    hl_jobs_free(w->s.jobs);
    hl_db_close(w->s.archive);
    hl_db_close(w->s.db);
    hl_arena_free(w->arena);
}

static int load_theme_static(proc *w, hl_err *err)
{
    char dir[4096];
    const char *share = hl_config_share_dir(w->s.cfg);
    if (!(w->statics = hl_static_new()))
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    snprintf(dir, sizeof dir, "%s/themes/default/static", share);
    int rc = hl_static_load_dir(w->statics, dir, NULL, err);
    if (rc == HL_OK && w->s.cfg->theme && strcmp(w->s.cfg->theme, "default")) {
        snprintf(dir, sizeof dir, "%s/themes/%s/static", share, w->s.cfg->theme);
        rc = hl_static_load_dir(w->statics, dir, NULL, err);
    }
    return rc;
}

static int load_themes(const hl_config *cfg, hl_themes **out, hl_err *err)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/themes", hl_config_share_dir(cfg));
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
    snprintf(dir, sizeof dir, "%s/po", hl_config_share_dir(cfg));
    return hl_i18n_load(out, dir, err);
}

/* hooks.c suspended a plugin in this process: the operator sees it in `halle plugin list`. */
static void record_suspension(void *ud, const char *owner, const char *why)
{
    proc *w = ud;
    hl_plugin_record_suspension(w->s.db, owner, w->s.id, why);
}

int hl_worker_run(const hl_config *cfg, int id, int ready_fd, hl_beat *beat, hl_err *err)
{
    proc w;
    memset(&w, 0, sizeof w);
    w.s.cfg = cfg;
    w.s.id = id;
    if (beat) {
        this_beat = beat;
        __atomic_store_n(&this_beat->pid, (int64_t)getpid(), __ATOMIC_RELAXED);
        beat_set(0);
    }
    int rc = HL_ERR;
    int fd = -1;
    if (!(w.arena = hl_arena_new(16384)) || !(w.s.router = hl_router_new()) || !(w.s.jobs = hl_jobs_new())) {
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        goto out;
    }
    if (!(w.s.db = hl_db_open(cfg->db_path, 0, err)) || !(w.s.archive = hl_db_open(cfg->archive_path, 0, err)))
        goto out;
    if ((rc = load_theme_static(&w, err)) != HL_OK || (rc = load_themes(cfg, &w.s.themes, err)) != HL_OK ||
        (rc = load_i18n(cfg, &w.s.i18n, err)) != HL_OK)
        goto out;
    hl_themes_set_i18n(w.s.themes, w.s.i18n);
    if ((rc = hl_site_register(&w.s, cfg, w.statics, err)) != HL_OK ||
        (rc = hl_account_pages_register(&w.s, err)) != HL_OK)
        goto out;
    if (!(w.s.hooks = hl_hooks_new())) {
        rc = hl_err_set(err, HL_ENOMEM, "out of memory");
        goto out;
    }
    if (!(w.proxies = hl_proxies_parse(cfg->trusted_proxies, err))) {
        rc = err->code;
        goto out;
    }
    hl_plugin_clear_suspensions(w.s.db, id);
    hl_hooks_set_failure_limit(w.s.hooks, cfg->hook_failure_limit, record_suspension, &w);
    if ((rc = hl_host_declare_core_hooks(w.s.hooks, err)) != HL_OK ||
        (rc = hl_host_load_all(&w.s, &w.hosts, &w.nhosts, err)) != HL_OK)
        goto out;
    hl_hooks_freeze(w.s.hooks);
    hl_jobs_freeze(w.s.jobs);
    /* routes.registered: the core's and every plugin's routes are in place, before the first
     * request (a plugin may check a route it depends on, or warm a cache). */
    json_t *routes = json_pack("{s:i}", "worker", id);
    if (routes)
        hl_hooks_run_action(w.s.hooks, hl_hooks_id(w.s.hooks, "routes.registered"), routes, NULL);
    json_decref(routes);
    w.hook_request_before = hl_hooks_id(w.s.hooks, "request.before");
    w.hook_response_before = hl_hooks_id(w.s.hooks, "response.before");
    w.connlog = hl_connlog_new(w.s.db, 512);
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
    if ((fd = hl_http_listen(cfg->listen_host, cfg->listen_port, err)) < 0) {
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
           hl_router_count(w.s.router), hl_static_count(w.statics), w.nhosts);
    event_base_dispatch(w.base);
    hl_log(HL_LOG_INFO, "worker %d stopped", id);
    rc = HL_OK;
out:
    worker_free(&w);
    return rc;
}

hl_worker *hl_worker_cli_new(const hl_config *cfg, hl_err *err)
{
    proc *w = calloc(1, sizeof *w);
    if (!w) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    w->s.cfg = cfg;
    w->s.id = -1;
    if (!(w->arena = hl_arena_new(16384)) || !(w->s.router = hl_router_new()) || !(w->s.hooks = hl_hooks_new()) ||
        !(w->s.jobs = hl_jobs_new())) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        goto fail;
    }
    if (!(w->s.db = hl_db_open(cfg->db_path, 0, err)) || !(w->s.archive = hl_db_open(cfg->archive_path, 0, err)) ||
        hl_host_declare_core_hooks(w->s.hooks, err) != HL_OK || load_themes(cfg, &w->s.themes, err) != HL_OK ||
        load_i18n(cfg, &w->s.i18n, err) != HL_OK)
        goto fail;
    hl_themes_set_i18n(w->s.themes, w->s.i18n);
    hl_hooks_set_failure_limit(w->s.hooks, cfg->hook_failure_limit, record_suspension, w);
    return &w->s;
fail:
    worker_free(w);
    free(w);
    return NULL;
}

void hl_worker_cli_free(hl_worker *s)
{
    if (!s)
        return;
    proc *w = (proc *)s; /* the services are the process's first member */
    worker_free(w);
    free(w);
}

int hl_worker_check(const hl_config *cfg, hl_err *err)
{
    hl_themes *themes = NULL;
    hl_i18n *i18n = NULL;
    int rc = load_themes(cfg, &themes, err);
    if (rc == HL_OK)
        rc = load_i18n(cfg, &i18n, err);
    hl_themes_free(themes);
    hl_i18n_free(i18n);
    if (rc == HL_OK) {
        hl_proxies *p = hl_proxies_parse(cfg->trusted_proxies, err);
        rc = p ? HL_OK : err->code;
        hl_proxies_free(p);
    }
    return rc;
}

