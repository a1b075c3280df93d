/* Test C plugin, built against the SDK header only: a route, a request.before filter that
 * refuses one path, and a response.before filter that records the order in which C and Lua
 * callbacks ran (header X-Hook-Trace), to test priorities across languages. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "include/halle/plugin.h"

static const halle_api *api;

static int ping(halle_request *r, void *ud)
{
    (void)ud;
    api->resp_header(r, "Content-Type", "text/plain; charset=utf-8");
    const char *who = api->req_route_param(r, "who");
    api->resp_write(r, "pong ", 5);
    return api->resp_write(r, who ? who : "?", who ? strlen(who) : 1);
}

/* Its settings (manifest_json): greeting, repeated times. */
static int greet(halle_request *r, void *ud)
{
    halle_host *h = ud;
    const char *g = api->setting(h, "greeting"), *t = api->setting(h, "times");
    int n = t ? atoi(t) : 1;
    api->resp_header(r, "Content-Type", "text/plain; charset=utf-8");
    for (int i = 0; i < n && i < 3; i++)
        api->resp_write(r, g ? g : "?", g ? strlen(g) : 1);
    return HALLE_OK;
}

/* API version 2: who is asking, and may they see the operator pages? */
static int me(halle_request *r, void *ud)
{
    (void)ud;
    char buf[96];
    int n = snprintf(buf, sizeof buf, "user=%lld operator=%d", (long long)api->req_user(r),
                     api->can(r, HALLE_ACT_VIEW, HALLE_OBJ_OPERATOR_PAGES, 0));
    api->resp_header(r, "Content-Type", "text/plain; charset=utf-8");
    return api->resp_write(r, buf, (size_t)n);
}

/* API version 6: testc declares its own hook, testc.event, and runs it here; a Lua plugin
 * whose name sorts before testc (aadep) adds to it, which works only if plugins load after
 * those they require. */
static halle_host *self;
static int event(halle_request *r, void *ud)
{
    (void)ud;
    json_t *v = json_pack("{s:[s]}", "trace", "testc");
    if (api->run_filter(self, r, "testc.event", &v) < 0) {
        json_decref(v);
        return HALLE_ERROR;
    }
    int rc = api->resp_json(r, 200, v);
    json_decref(v);
    return rc;
}

/* API version 3: a command-line command, `halle testc hello NAME`, with the database. */
static int cmd_hello(halle_host *h, int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: halle testc hello NAME\n");
        return 2;
    }
    halle_stmt *st = api->db_query(h, "SELECT count(*) FROM hl_migrations WHERE component = ?", "s", "core");
    long long n = st && api->db_step(st) == HALLE_DB_ROW ? (long long)api->db_col_int(st, 0) : -1;
    api->db_done(st);
    printf("hello %s from testc (%lld core migrations)\n", argv[1], n);
    return 0;
}

/* API version 8: `halle testc mkuser EMAIL NAME` creates a seeded account (api->user_create). */
static int cmd_mkuser(halle_host *h, int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: halle testc mkuser EMAIL NAME\n");
        return 2;
    }
    int64_t id = api->user_create(h, argv[1], argv[2]);
    if (id <= 0) {
        fprintf(stderr, "halle testc: %s\n", api->last_error(h));
        return 1;
    }
    printf("user %lld\n", (long long)id);
    return 0;
}

/* A handler stuck for good (a plugin bug): the master must kill and replace its worker. */
static int spin(halle_request *r, void *ud)
{
    (void)r;
    (void)ud;
    volatile unsigned long n = 0;
    for (;;)
        n++;
    return HALLE_OK;
}

/* API version 8: jobs. testc.slow records each run (with the clock's time and the pid) in
 * testc_runs, then sleeps $TESTC_JOB_SLEEP_MS, so tests can run two at once or kill one
 * mid-run. testc.echo is a once-job recording its payload; the payload "fail" fails. */
static int record_run(halle_host *h, const char *what)
{
    if (api->db_run(h, "CREATE TABLE IF NOT EXISTS testc_runs (what TEXT, at INTEGER, pid INTEGER)", "") < 0)
        return HALLE_ERROR;
    return api->db_run(h, "INSERT INTO testc_runs (what, at, pid) VALUES (?, ?, ?)", "sIi", what, api->now(h),
                       (int)getpid()) < 0 ? HALLE_ERROR : HALLE_OK;
}

static int job_slow(halle_host *h, const char *payload, void *ud)
{
    (void)payload;
    (void)ud;
    if (record_run(h, "slow") != HALLE_OK)
        return HALLE_ERROR;
    const char *ms = getenv("TESTC_JOB_SLEEP_MS");
    long n = ms ? atol(ms) : 0;
    struct timespec ts = {n / 1000, (n % 1000) * 1000000};
    if (n > 0)
        nanosleep(&ts, NULL);
    return HALLE_OK;
}

static int job_echo(halle_host *h, const char *payload, void *ud)
{
    (void)ud;
    if (payload && !strcmp(payload, "fail")) {
        api->log(h, HALLE_LOG_ERROR, "echo refuses the payload 'fail'");
        return HALLE_ERROR;
    }
    return record_run(h, payload ? payload : "(null)");
}

/* GET /testc/later/TEXT queues testc.echo with TEXT, as a request would queue work. */
static int later(halle_request *r, void *ud)
{
    halle_host *h = ud;
    int64_t id = api->job_at(h, "echo", 0, api->req_route_param(r, "text"));
    char buf[64];
    int n = snprintf(buf, sizeof buf, "queued %lld", (long long)id);
    api->resp_header(r, "Content-Type", "text/plain; charset=utf-8");
    return api->resp_write(r, buf, (size_t)n);
}

static int refuse(void *ud, halle_hook_call *c)
{
    (void)ud;
    const char *path = json_string_value(json_object_get(api->call_value(c), "path"));
    if (path && !strcmp(path, "/testc/ping/forbidden"))
        return api->call_stop(c, 403, "refused by testc");
    return HALLE_HOOK_CONTINUE;
}

/* Appends a tag to headers["X-Hook-Trace"]. */
static int trace(void *ud, halle_hook_call *c)
{
    json_t *headers = json_object_get(api->call_value(c), "headers");
    const char *old = json_string_value(json_object_get(headers, "X-Hook-Trace"));
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s%s", old ? old : "", old ? "," : "", (const char *)ud);
    json_object_set_new(headers, "X-Hook-Trace", json_string(buf));
    return HALLE_HOOK_CONTINUE;
}

static int init(halle_host *h, const halle_api *a)
{
    api = a;
    if (a->route(h, HALLE_GET, "/testc/ping/(?<who>[a-z]+)", ping, NULL) != HALLE_OK ||
        a->route(h, HALLE_GET, "/testc/greet", greet, h) != HALLE_OK)
        return HALLE_ERROR;
    /* Functions of API version 2 exist only when the core provides them. */
    if (a->api_version >= 2 && a->route(h, HALLE_GET, "/testc/me", me, NULL) != HALLE_OK)
        return HALLE_ERROR;
    if (a->api_version >= 3 && a->command(h, "hello", "NAME", cmd_hello) != HALLE_OK)
        return HALLE_ERROR;
    self = h;
    if (a->api_version >= 6 && (a->declare_hook(h, "testc.event", HALLE_HOOK_FILTER) != HALLE_OK ||
                                a->route(h, HALLE_GET, "/testc/event", event, NULL) != HALLE_OK))
        return HALLE_ERROR;
    if (a->api_version >= 8 &&
        (a->route(h, HALLE_GET, "/testc/spin", spin, NULL) != HALLE_OK ||
         a->command(h, "mkuser", "EMAIL NAME", cmd_mkuser) != HALLE_OK ||
         a->route(h, HALLE_GET, "/testc/later/(?<text>[a-z0-9]+)", later, h) != HALLE_OK ||
         a->job(h, "slow", "every 3600", job_slow, NULL) != HALLE_OK ||
         a->job(h, "echo", "once", job_echo, NULL) != HALLE_OK))
        return HALLE_ERROR;
    if (a->hook(h, "request.before", 10, refuse, NULL) != HALLE_OK)
        return HALLE_ERROR;
    if (a->hook(h, "response.before", 5, trace, "c5") != HALLE_OK ||
        a->hook(h, "response.before", 20, trace, "c20") != HALLE_OK)
        return HALLE_ERROR;
    a->log(h, HALLE_LOG_INFO, "testc ready");
    return HALLE_OK;
}

/* A C plugin's manifest (API 9): settings the operator sets, what it declares for privacy. */
static const char manifest[] =
    "{\"settings\": {\"greeting\": {\"type\": \"string\", \"default\": \"Bonjour\", \"max_length\": 20},"
    "               \"times\": {\"type\": \"integer\", \"default\": 1, \"min\": 1, \"max\": 3}},"
    " \"privacy\": [{\"purpose\": \"saluer\", \"legal_basis\": \"intérêt légitime\", \"data\": \"aucune\","
    "               \"recipients\": \"personne\", \"retention\": \"aucune\"}],"
    " \"cookies\": [{\"name\": \"testc_seen\", \"purpose\": \"aucun\", \"duration_days\": 1}]}";

HALLE_PLUGIN_DESCRIPTOR = {
    HALLE_PLUGIN_HEADER, 1, "testc", "1.0.0", "C test plugin (works with API 1, uses API 2 when present)", NULL, init, NULL,
    manifest,
};
