/* Core pages and endpoints (see site.h). The home page is built in until the theme engine
 * lands; everything here goes through the same request API that plugins use. */
#include "halle-config.h"
#include "core/site.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/services.h"
#include "core/log.h"
#include "core/page.h"

static int home(hl_request *req, void *ud)
{
    (void)ud;
    json_t *ctx = hl_page_context(req);
    hl_err err;
    hl_err_clear(&err);
    int rc = ctx ? hl_page_render(req, "home", ctx, &err) : HL_ENOMEM;
    json_decref(ctx);
    if (rc == HL_OK)
        return HL_OK;
    hl_log(HL_LOG_ERROR, "theme: %s; using the built-in home page", err.msg);
    hl_response_take(req, NULL);
    hl_page_begin(req, T(req, "Accueil"));
    hl_response_puts(req, "<section class=\"hero\">\n<h1>");
    hl_response_html(req, req->cfg->name);
    hl_response_printf(req, "</h1>\n<p>%s</p>\n</section>\n<section class=\"cards\">\n",
                       T(req, "Des producteurs locaux vendent directement à leurs clients, par des groupes "
                              "locaux — groupements d'achat, AMAP, boutiques à la ferme — sans commission."));
    hl_response_printf(req, "<article><h2>%s</h2><p>%s</p></article>\n", T(req, "Clients"),
                       T(req, "Trouvez un groupe près de chez vous, commandez les produits de la semaine et "
                              "retirez-les à la distribution."));
    hl_response_printf(req, "<article><h2>%s</h2><p>%s</p></article>\n", T(req, "Producteurs"),
                       T(req, "Ouvrez votre compte, gérez vos catalogues, vos stocks et vos commandes, et vendez "
                              "dans les groupes qui vous accueillent."));
    hl_response_printf(req, "<article><h2>%s</h2><p>%s</p></article>\n</section>\n", T(req, "Groupes locaux"),
                       T(req, "Animez votre groupe : distributions, membres, messages, et une page à vos couleurs."));
    return hl_page_end(req);
}

static int health(hl_request *req, void *ud)
{
    (void)ud;
    hl_response_header(req, "Content-Type", "text/plain; charset=utf-8");
    hl_response_header(req, "Cache-Control", "no-store");
    return hl_response_puts(req, "ok\n");
}

static int status_api(hl_request *req, void *ud)
{
    (void)ud;
    hl_err err;
    int core = hl_db_schema_version(req->db, "core", &err);
    int archive = hl_db_schema_version(req->archive, "archive", &err);
    json_t *j = json_pack("{s:s, s:s, s:i, s:{s:i, s:i}}", "name", req->cfg->name, "version", PACKAGE_VERSION,
                          "pid", (int)getpid(), "schema", "core", core, "archive", archive);
    if (!j)
        return HL_ENOMEM;
    hl_response_header(req, "Cache-Control", "no-store");
    int rc = hl_response_json(req, core < 0 || archive < 0 ? 503 : 200, j);
    json_decref(j);
    return rc;
}

static int static_file(hl_request *req, void *ud)
{
    hl_static *statics = ud;
    const char *path = hl_params_value(&req->params, "path");
    const hl_static_file *f = path ? hl_static_find(statics, path, strlen(path)) : NULL;
    if (!f)
        return hl_response_error(req, 404, NULL);
    hl_response_header(req, "ETag", f->etag);
    hl_response_header(req, "Last-Modified", f->last_modified);
    hl_response_header(req, "Cache-Control", "public, max-age=3600");
    const char *inm = hl_request_header(req, "If-None-Match");
    const char *ims = hl_request_header(req, "If-Modified-Since");
    int fresh = 0;
    if (inm)
        fresh = strstr(inm, f->etag) != NULL || !strcmp(inm, "*");
    else if (ims) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        fresh = end && !*end && timegm(&tm) >= f->mtime;
    }
    if (fresh) {
        hl_response_status(req, 304);
        return HL_OK;
    }
    hl_response_header(req, "Content-Type", f->content_type);
    return hl_response_reference(req, f->data, f->len);
}

/* ---- development aids (dev_mode = on) ----------------------------------------------- */

static json_t *params_json(const hl_params *p)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < p->count; i++) {
        const hl_param *x = &p->items[i];
        json_t *v;
        if (x->filename)
            v = json_pack("{s:s, s:s?, s:I}", "filename", x->filename, "content_type", x->content_type,
                          "size", (json_int_t)x->value_len);
        else
            v = json_stringn_nocheck(x->value, x->value_len);
        if (v)
            json_object_set_new_nocheck(o, x->name, v);
    }
    return o;
}

static int dev_echo(hl_request *req, void *ud)
{
    (void)ud;
    json_t *j = json_pack("{s:s, s:s, s:s?, s:o, s:o, s:o, s:I}", "method", req->method_name, "path", req->path,
                          "query_string", req->query_string, "query", params_json(&req->query), "form",
                          params_json(&req->form), "cookies", params_json(&req->cookies), "body_length",
                          (json_int_t)req->body_len);
    if (!j)
        return HL_ENOMEM;
    int rc = hl_response_json(req, 200, j);
    json_decref(j);
    return rc;
}

static int dev_fail(hl_request *req, void *ud)
{
    (void)req;
    (void)ud;
    return HL_ERR;
}

static int dev_sleep(hl_request *req, void *ud)
{
    (void)ud;
    const char *ms = hl_request_param(req, "ms");
    long n = ms ? strtol(ms, NULL, 10) : 100;
    if (n < 0 || n > 10000)
        return hl_response_error(req, 400, "ms must be between 0 and 10000");
    /* Signals (SIGTERM during a graceful stop) interrupt the sleep: sleep the rest. */
    struct timespec left = {n / 1000, (n % 1000) * 1000000L};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
    hl_response_header(req, "Content-Type", "text/plain; charset=utf-8");
    return hl_response_printf(req, "slept %ld ms\n", n);
}

/* GET /lang/en?next=/path: remembers the visitor's language (a preference cookie, essential:
 * no consent needed) and goes back to the page. next must be a path on this site. */
static int set_lang(hl_request *req, void *ud)
{
    (void)ud;
    const char *code = hl_params_value(&req->params, "code");
    const char *next = hl_params_value(&req->query, "next");
    next = hl_request_safe_next(next);
    char *cookie = hl_arena_printf(req->arena, "halle_lang=%s; Path=/; Max-Age=31536000; SameSite=Lax", code);
    if (cookie)
        hl_response_add_header(req, "Set-Cookie", cookie);
    return hl_response_redirect(req, 303, next);
}

static int register_dev(struct hl_worker *w, hl_err *err)
{
    /* A test aid (dev_mode only) that echoes what it parsed: it acts on nothing, so it takes
     * any method without a session or CSRF token. */
    int rc = hl_worker_route_flags(w, HL_METHOD_ANY, "/_dev/echo(?<rest>/.*)?", "dev.echo", HL_ROUTE_TOKEN_AUTH,
                                 dev_echo, NULL, err);
    if (!rc) rc = hl_worker_route(w, HL_METHOD_GET, "/_dev/fail", "dev.fail", dev_fail, NULL, err);
    if (!rc) rc = hl_worker_route(w, HL_METHOD_GET, "/_dev/sleep", "dev.sleep", dev_sleep, NULL, err);
    return rc;
}

int hl_site_register(struct hl_worker *w, const hl_config *cfg, hl_static *statics, hl_err *err)
{
    int rc = hl_worker_route(w, HL_METHOD_GET, "/", "home", home, NULL, err);
    if (!rc) rc = hl_worker_route(w, HL_METHOD_GET, "/health", "health", health, NULL, err);
    if (!rc) rc = hl_worker_route(w, HL_METHOD_GET, "/api/status", "api.status", status_api, NULL, err);
    if (!rc) rc = hl_worker_route(w, HL_METHOD_GET, "/static/(?<path>[A-Za-z0-9_./-]+)", "static", static_file, statics, err);
    if (!rc) rc = hl_worker_route(w, HL_METHOD_GET, "/lang/(?<code>[a-z]{2}(?:_[A-Z]{2})?)", "lang", set_lang, NULL, err);
    if (!rc && cfg->dev_mode)
        rc = register_dev(w, err);
    return rc;
}
