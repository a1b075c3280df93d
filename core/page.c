/* Built-in page frame and error pages (see page.h). Messages are always escaped: they may echo
 * what the client sent. */
#include "core/page.h"

#include <stdio.h>

int hl_page_begin(hl_request *req, const char *title)
{
    const char *site = req->cfg && req->cfg->name ? req->cfg->name : "halle";
    hl_response_puts(req, "<!DOCTYPE html>\n<html lang=\"fr\">\n<head>\n<meta charset=\"utf-8\">\n"
                          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    hl_response_html(req, title);
    hl_response_puts(req, " · ");
    hl_response_html(req, site);
    hl_response_puts(req, "</title>\n<link rel=\"stylesheet\" href=\"/static/halle.css\">\n</head>\n<body>\n"
                          "<header class=\"site\"><a class=\"brand\" href=\"/\">");
    hl_response_html(req, site);
    return hl_response_puts(req, "</a></header>\n<main id=\"main\">\n");
}

int hl_page_end(hl_request *req)
{
    return hl_response_puts(req, "</main>\n<footer class=\"site\"><p>Propulsé par halle · "
                                 "vente directe sans commission</p></footer>\n</body>\n</html>\n");
}

static const char *explain(int status)
{
    switch (status) {
    case 400: return "La requête n'a pas pu être comprise.";
    case 403: return "Vous n'avez pas accès à cette page.";
    case 404: return "Cette page n'existe pas.";
    case 405: return "Cette méthode n'est pas acceptée pour cette adresse.";
    case 413: return "Le contenu envoyé est trop volumineux.";
    case 500: return "Une erreur interne est survenue. Elle a été enregistrée ; réessayez dans un instant.";
    case 501: return "Cette méthode n'est pas prise en charge.";
    case 503: return "Le service est momentanément indisponible.";
    default: return "La requête n'a pas abouti.";
    }
}

int hl_page_error(hl_request *req, int status, const char *message)
{
    char title[64];
    snprintf(title, sizeof title, "%d %s", status, hl_http_reason(status));
    hl_page_begin(req, title);
    hl_response_printf(req, "<section class=\"error\" data-status=\"%d\">\n<h1>", status);
    hl_response_html(req, title);
    hl_response_puts(req, "</h1>\n<p>");
    hl_response_html(req, explain(status));
    hl_response_puts(req, "</p>\n");
    if (message && *message) {
        hl_response_puts(req, "<p class=\"detail\">");
        hl_response_html(req, message);
        hl_response_puts(req, "</p>\n");
    }
    hl_response_puts(req, "<p><a href=\"/\">Retour à l'accueil</a></p>\n</section>\n");
    return hl_page_end(req);
}
