/* Page frame and error pages (see page.h): rendered with the theme's templates (layout, page,
 * error) along the theme chain; the built-in HTML below is the fallback when a theme cannot
 * render, so an error page never fails. Messages are always escaped: they may echo what the
 * client sent. */
#include "core/page.h"

#include <stdio.h>
#include <string.h>

#include "core/accounts.h"
#include "core/hooks.h"
#include "core/services.h"
#include "core/log.h"
#include "core/theme.h"
#include "core/webauth.h"
#include "core/i18n.h"

#include <jansson.h>
#include <stdlib.h>

static int builtin_begin(hl_request *req, const char *title)
{
    const char *site = req->cfg && req->cfg->name ? req->cfg->name : "halle";
    hl_response_puts(req, "<!DOCTYPE html>\n<html lang=\"");
    hl_response_html(req, req->lang ? req->lang : HL_I18N_DEFAULT);
    hl_response_puts(req, "\">\n<head>\n<meta charset=\"utf-8\">\n"
                          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    hl_response_html(req, title);
    hl_response_puts(req, " · ");
    hl_response_html(req, site);
    hl_response_printf(req, "</title>\n<link rel=\"stylesheet\" href=\"/static/halle.css\">\n<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n</head>\n<body>\n"
                            "<a class=\"skip\" href=\"#main\">%s</a>\n"
                            "<header class=\"site\"><a class=\"brand\" href=\"/\">", T(req, "Aller au contenu"));
    hl_response_html(req, site);
    hl_response_printf(req, "</a>\n<nav aria-label=\"%s\">", T(req, "Compte"));
    if (req->user) {
        if (req->user->roles & HL_ROLE_OPERATOR)
            hl_response_printf(req, "<a href=\"/admin\">%s</a> ", T(req, "Administration"));
        hl_response_printf(req, "<a href=\"/account\">%s</a> ", T(req, "Mon compte"));
        hl_response_puts(req, "<form method=\"post\" action=\"/logout\" class=\"inline\">"
                              "<input type=\"hidden\" name=\"_csrf\" value=\"");
        hl_response_html(req, hl_webauth_csrf(req));
        hl_response_printf(req, "\"><button type=\"submit\">%s</button></form>", T(req, "Se déconnecter"));
    } else {
        hl_response_printf(req, "<a href=\"/login\">%s</a> <a href=\"/signup\">%s</a>", T(req, "Se connecter"),
                           T(req, "Créer un compte"));
    }
    return hl_response_puts(req, "</nav></header>\n<main id=\"main\">\n");
}

static int builtin_end(hl_request *req)
{
    return hl_response_printf(req, "</main>\n<footer class=\"site\"><p>%s</p></footer>\n</body>\n</html>\n",
                              T(req, "Propulsé par halle · vente directe sans commission"));
}

static const char *explain(hl_request *req, int status)
{
    switch (status) {
    case 400: return T(req, "La requête n'a pas pu être comprise.");
    case 403: return T(req, "Vous n'avez pas accès à cette page.");
    case 404: return T(req, "Cette page n'existe pas.");
    case 405: return T(req, "Cette méthode n'est pas acceptée pour cette adresse.");
    case 413: return T(req, "Le contenu envoyé est trop volumineux.");
    case 500: return T(req, "Une erreur interne est survenue. Elle a été enregistrée ; réessayez dans un instant.");
    case 501: return T(req, "Cette méthode n'est pas prise en charge.");
    case 503: return T(req, "Le service est momentanément indisponible.");
    default: return T(req, "La requête n'a pas abouti.");
    }
}

static int builtin_error(hl_request *req, int status, const char *message)
{
    char title[64];
    snprintf(title, sizeof title, "%d %s", status, hl_http_reason(status));
    builtin_begin(req, title);
    hl_response_printf(req, "<section class=\"error\" data-status=\"%d\">\n<h1>", status);
    hl_response_html(req, title);
    hl_response_puts(req, "</h1>\n<p>");
    hl_response_html(req, explain(req, status));
    hl_response_puts(req, "</p>\n");
    if (message && *message) {
        hl_response_puts(req, "<p class=\"detail\">");
        hl_response_html(req, message);
        hl_response_puts(req, "</p>\n");
    }
    hl_response_printf(req, "<p><a href=\"/\">%s</a></p>\n</section>\n", T(req, "Retour à l'accueil"));
    return builtin_end(req);
}

int hl_page_form_begin(hl_request *req, const char *action, const char *id)
{
    hl_response_puts(req, "<form method=\"post\" action=\"");
    hl_response_html(req, action);
    hl_response_puts(req, "\"");
    if (id) {
        hl_response_puts(req, " id=\"");
        hl_response_html(req, id);
        hl_response_puts(req, "\"");
    }
    hl_response_puts(req, ">\n<input type=\"hidden\" name=\"_csrf\" value=\"");
    hl_response_html(req, hl_webauth_csrf(req));
    return hl_response_puts(req, "\">\n");
}

int hl_page_form_end(hl_request *req, const char *button)
{
    hl_response_puts(req, "<button type=\"submit\">");
    hl_response_html(req, button);
    return hl_response_puts(req, "</button>\n</form>\n");
}

int hl_page_field(hl_request *req, const char *type, const char *name, const char *label, const char *value,
                  const char *attrs, const char *help)
{
    int checkbox = !strcmp(type, "checkbox");
    hl_response_puts(req, checkbox ? "<p class=\"field check\">" : "<p class=\"field\">");
    if (!checkbox && strcmp(type, "hidden")) {
        hl_response_printf(req, "<label for=\"f-%s\">", name);
        hl_response_html(req, label);
        hl_response_puts(req, "</label>");
    }
    if (!strcmp(type, "textarea")) {
        hl_response_printf(req, "<textarea id=\"f-%s\" name=\"%s\" %s>", name, name, attrs ? attrs : "");
        hl_response_html(req, value);
        hl_response_puts(req, "</textarea>");
    } else {
        hl_response_printf(req, "<input type=\"%s\" id=\"f-%s\" name=\"%s\" %s", type, name, name, attrs ? attrs : "");
        if (checkbox) {
            hl_response_puts(req, value && *value ? " value=\"1\" checked>" : " value=\"1\">");
        } else {
            hl_response_puts(req, " value=\"");
            hl_response_html(req, value);
            hl_response_puts(req, "\">");
        }
        if (help)
            hl_response_printf(req, "<span class=\"help\" id=\"h-%s\">", name);
    }
    if (checkbox) {
        hl_response_printf(req, "<label for=\"f-%s\">", name);
        hl_response_html(req, label);
        hl_response_puts(req, "</label>");
    }
    if (help && strcmp(type, "textarea")) {
        if (checkbox)
            hl_response_printf(req, "<span class=\"help\" id=\"h-%s\">", name);
        hl_response_html(req, help);
        hl_response_puts(req, "</span>");
    }
    return hl_response_puts(req, "</p>\n");
}

int hl_page_notice(hl_request *req, const char *kind, const char *message)
{
    hl_response_printf(req, "<p class=\"notice %s\" role=\"%s\">", kind, strcmp(kind, "error") ? "status" : "alert");
    hl_response_html(req, message);
    return hl_response_puts(req, "</p>\n");
}

/* ---- themed pages ------------------------------------------------------------------- */

/* This page's address (path and query as received) encoded as a query value, for the
 * language switcher's next=: /lang/CODE sends the visitor back to it. */
static const char *here_as_query_value(hl_request *req)
{
    const char *path = req->raw_path ? req->raw_path : "/";
    const char *q = req->query_string;
    size_t pl = strlen(path), ql = q && *q ? strlen(q) + 1 : 0;
    char *out = hl_arena_alloc(req->arena, 3 * (pl + ql) + 1), *w = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < pl + ql; i++) {
        unsigned char c = i < pl ? (unsigned char)path[i] : i == pl ? '?' : (unsigned char)q[i - pl - 1];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr("-._~", c)))
            *w++ = (char)c;
        else
            w += sprintf(w, "%%%02X", c);
    }
    *w = '\0';
    return out;
}

json_t *hl_page_context(hl_request *req)
{
    const hl_config *cfg = req->cfg;
    json_t *ctx = json_pack("{s:s, s:{s:s, s:s}}", "lang", req->lang ? req->lang : "fr", "site", "name",
                            cfg && cfg->name ? cfg->name : "halle", "description",
                            T(req, "Vente directe de produits locaux, sans commission."));
    if (!ctx)
        return NULL;
    if (req->user) {
        json_object_set_new(ctx, "user", json_pack("{s:s, s:b}", "name", req->user->name, "operator",
                                                   (req->user->roles & HL_ROLE_OPERATOR) != 0));
        json_object_set_new(ctx, "csrf", json_string(hl_webauth_csrf(req)));
    }
    if (cfg && cfg->base_url && req->path) {
        char *url = hl_arena_printf(req->arena, "%s%s", cfg->base_url, req->path);
        json_object_set_new(ctx, "page", json_pack("{s:s}", "url", url ? url : ""));
    }
    /* The language switcher: every language with a catalog, the current one marked, each with
     * the link that switches to it and comes back here. */
    hl_i18n *i18n = req->worker ? hl_worker_i18n(req->worker) : NULL;
    const char *langs[16];
    size_t nl = i18n ? hl_i18n_languages(i18n, langs, 16) : 0;
    const char *next = here_as_query_value(req);
    json_t *list = json_array();
    for (size_t i = 0; list && i < nl && i < 16; i++) {
        char *href = hl_arena_printf(req->arena, "/lang/%s?next=%s", langs[i], next ? next : "%2F");
        json_array_append_new(list, json_pack("{s:s, s:s, s:b, s:s}", "code", langs[i], "name",
                                              !strcmp(langs[i], "fr") ? "Français" : !strcmp(langs[i], "en") ? "English" : langs[i],
                                              "current", req->lang && !strcmp(req->lang, langs[i]),
                                              "href", href ? href : "/"));
    }
    json_object_set_new(ctx, "languages", list);
    json_object_set_new(ctx, "multilingual", json_boolean(nl > 1));
    json_object_set_new(ctx, "path", json_string(req->path ? req->path : "/"));
    /* Navigation entries that plugins push (ui.navigation): [{href, label}]. */
    hl_hooks *hooks = req->worker ? hl_worker_hooks(req->worker) : NULL;
    int nav_id = hooks ? hl_hooks_id(hooks, "ui.navigation") : -1;
    if (nav_id >= 0 && hl_hooks_count(hooks, nav_id)) {
        json_t *nav = json_array();
        hl_hook_stop stop;
        memset(&stop, 0, sizeof stop);
        if (hl_hooks_run_filter(hooks, nav_id, &nav, req, &stop) < 0)
            hl_log(HL_LOG_ERROR, "ui.navigation: %s", stop.message);
        if (json_is_array(nav))
            json_object_set(ctx, "nav", nav);
        json_decref(nav);
    }
    json_t *meta = req->meta;
    if (meta && json_is_object(meta))
        json_object_update_recursive(ctx, meta);
    return ctx;
}

int hl_page_render(hl_request *req, const char *name, json_t *ctx, hl_err *err)
{
    hl_themes *themes = req->worker ? hl_worker_themes(req->worker) : NULL;
    if (!themes)
        return hl_err_set(err, HL_ENOTFOUND, "no themes loaded");
    const char *chain[16];
    size_t n = hl_themes_chain(themes, req->group_theme, req->cfg ? req->cfg->theme : NULL, chain, 16);
    /* render.context: plugins see (and may change) what every themed page is rendered with;
     * the template's name rides along as "template". */
    json_t *view = json_incref(ctx);
    hl_hooks *hooks = hl_worker_hooks(req->worker);
    int id = hooks ? hl_hooks_id(hooks, "render.context") : -1;
    if (id >= 0 && hl_hooks_count(hooks, id) && json_is_object(view)) {
        json_object_set_new(view, "template", json_string(name));
        hl_hook_stop stop;
        memset(&stop, 0, sizeof stop);
        if (hl_hooks_run_filter(hooks, id, &view, req, &stop) < 0)
            hl_log(HL_LOG_ERROR, "render.context: %s", stop.message);
        if (!json_is_object(view)) {   /* a filter that returns something else is ignored */
            json_decref(view);
            view = json_incref(ctx);
        }
    }
    char *out = NULL;
    size_t len = 0;
    int rc = hl_themes_render_lang(themes, chain, n, name, req->lang, view, &out, &len, err);
    json_decref(view);
    if (rc == HL_OK)
        rc = hl_response_write(req, out, len);
    free(out);
    return rc;
}

int hl_page_begin(hl_request *req, const char *title)
{
    req->page_title = hl_arena_strdup(req->arena, title ? title : "");
    if (!req->worker || !hl_worker_themes(req->worker))
        return builtin_begin(req, title);
    return HL_OK;
}

int hl_page_end(hl_request *req)
{
    if (!req->worker || !hl_worker_themes(req->worker))
        return builtin_end(req);
    size_t len = 0;
    char *body = hl_response_take(req, &len);
    json_t *ctx = hl_page_context(req);
    hl_err err;
    hl_err_clear(&err);
    int rc = HL_ENOMEM;
    if (ctx && body) {
        json_object_set_new(ctx, "title", json_string(req->page_title ? req->page_title : ""));
        json_object_set_new(ctx, "body", json_stringn(body, len));
        rc = hl_page_render(req, "page", ctx, &err);
    }
    json_decref(ctx);
    if (rc != HL_OK) {
        hl_log(HL_LOG_ERROR, "theme: %s; using the built-in page", err.msg);
        builtin_begin(req, req->page_title);
        if (body)
            hl_response_write(req, body, len);
        return builtin_end(req);
    }
    return HL_OK;
}

int hl_page_error(hl_request *req, int status, const char *message)
{
    if (!req->worker || !hl_worker_themes(req->worker))
        return builtin_error(req, status, message);
    json_t *ctx = hl_page_context(req);
    hl_err err;
    hl_err_clear(&err);
    int rc = HL_ENOMEM;
    if (ctx) {
        json_object_set_new(ctx, "status", json_integer(status));
        json_object_set_new(ctx, "reason", json_string(hl_http_reason(status)));
        json_object_set_new(ctx, "explanation", json_string(explain(req, status)));
        if (message && *message)
            json_object_set_new(ctx, "detail", json_string(message));
        rc = hl_page_render(req, "error", ctx, &err);
    }
    json_decref(ctx);
    if (rc != HL_OK) {
        hl_response_take(req, NULL);
        hl_log(HL_LOG_ERROR, "theme: %s; using the built-in error page", err.msg);
        return builtin_error(req, status, message);
    }
    return HL_OK;
}
