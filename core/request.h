/* One HTTP exchange as handlers see it: the parsed request (method, decoded path, query, form,
 * cookies, route parameters) and the response being built. Handlers never see libevent; every
 * allocation comes from the request arena, freed when the reply has been sent. */
#ifndef HL_REQUEST_H
#define HL_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/config.h"
#include "core/db.h"
#include "core/error.h"
#include "core/form.h"

typedef struct hl_request hl_request;
struct hl_worker;

/* A route handler returns HL_OK after filling the response, or an error code: the core then
 * answers with the error page for that code (500 unless the handler set another status). */
typedef int (*hl_handler)(hl_request *req, void *ud);

struct hl_request {
    hl_arena *arena;
    unsigned method;          /* HL_METHOD_* bit */
    const char *method_name;
    const char *path;         /* percent-decoded, starts with '/' */
    const char *raw_path;     /* as received */
    const char *query_string; /* raw, may be NULL */
    const char *remote_ip;
    hl_params query;
    hl_params form;           /* urlencoded or multipart body fields and files */
    hl_params cookies;
    hl_params params;         /* route parameters (named captures) */
    const char *route_name;
    const unsigned char *body;
    size_t body_len;
    const hl_config *cfg;
    hl_db *db;
    hl_db *archive;
    struct hl_worker *worker;  /* the process's services (core/services.h) */
    struct hl_i18n *i18n;      /* translations of the page's language (T()) */
    /* Renders the page for an error status in the theme (core/page.c), set by the worker. */
    int (*error_page)(hl_request *req, int status, const char *message);
    /* the visitor, when logged in (session cookie); NULL otherwise */
    const struct hl_user *user;
    const struct hl_session *session;
    const char *session_raw;  /* the session cookie's value */
    const char *csrf;         /* the token forms must carry (session's, or the halle_csrf cookie's) */
    const char *lang;         /* language of the page ("fr", "en") */
    const char *group_theme;  /* theme of the local group whose page this is, or NULL */
    const char *page_title;   /* set by hl_page_begin */
    void *meta;               /* extra page context (json_t *, owned by the request) for the layout */
    /* response */
    int status;
    int64_t started_us;
    void *priv;               /* the server's own state; opaque to handlers */
};

/* The translation of a French source string into the page's language (core/i18n.h). */
const char *hl_request_tr(hl_request *req, const char *msgid);
#define T(req, msgid) hl_request_tr((req), (msgid))

/* Request side. (The CSRF token for forms: hl_webauth_csrf, core/webauth.h.) */
const char *hl_request_header(hl_request *req, const char *name);
/* Query parameter, then form field, by name; NULL when absent. */
const char *hl_request_param(hl_request *req, const char *name);

/* Response side. Headers and body are buffered until the handler returns. */
void hl_response_status(hl_request *req, int status);
int hl_response_header(hl_request *req, const char *name, const char *value);
/* The value of a response header set so far (the first of that name), or NULL. */
const char *hl_response_header_value(hl_request *req, const char *name);
/* Adds a header without replacing others of the same name (Set-Cookie). */
int hl_response_add_header(hl_request *req, const char *name, const char *value);
int hl_response_write(hl_request *req, const void *data, size_t len);
int hl_response_puts(hl_request *req, const char *s);
int hl_response_printf(hl_request *req, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes s with &, <, >, ", ' escaped for HTML text and attribute values. */
int hl_response_html(hl_request *req, const char *s);
/* Adds bytes that outlive the request (static assets) without copying them. */
int hl_response_reference(hl_request *req, const void *data, size_t len);
/* Serialises a jansson value (json_t *) as the body with Content-Type application/json. */
int hl_response_json(hl_request *req, int status, void *json);
/* Replaces the response with the HTML error page for status; message is shown escaped. */
int hl_response_error(hl_request *req, int status, const char *message);
/* Sends a redirect (303 for POST, else 302 unless status given). */
int hl_response_redirect(hl_request *req, int status, const char *location);
size_t hl_response_length(hl_request *req);
/* Moves the body written so far into the arena (NUL-terminated) and empties the response:
 * used to wrap a page's body in the theme layout. */
char *hl_response_take(hl_request *req, size_t *len);

/* A redirect target taken from a request (a `next` or return parameter, already
 * percent-decoded): returned as is only if it is a path on this site, else "/". It must start
 * with exactly one '/', not be followed by another '/' or '\\', and hold no control character or
 * whitespace anywhere (browsers drop tabs and newlines, so "/\t/evil" would become "//evil").
 * The one check every redirect from a parameter goes through. */
const char *hl_request_safe_next(const char *target);

/* The reason phrase for a status ("Not Found"). */
const char *hl_http_reason(int status);
/* HTML-escapes s into the arena. */
char *hl_html_escape(hl_arena *a, const char *s);



/* Core-internal: binds req to its libevent exchange (allocating from req->arena), and sends
 * the buffered response. Plugins never call these. */
struct evhttp_request;
int hl_request_bind(hl_request *req, struct evhttp_request *ev);
void hl_request_send(hl_request *req, int close_connection);
#endif
