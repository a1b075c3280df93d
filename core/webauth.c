/* Sessions and CSRF on the web (see webauth.h). */
#include "core/webauth.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/router.h"

static int secure_site(const hl_config *cfg)
{
    return cfg->base_url && !strncasecmp(cfg->base_url, "https://", 8);
}

static void set_cookie(hl_request *req, const char *name, const char *value, int max_age)
{
    char *c = hl_arena_printf(req->arena, "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s", name, value,
                              max_age, secure_site(req->cfg) ? "; Secure" : "");
    if (c)
        hl_response_add_header(req, "Set-Cookie", c);
}

int hl_webauth_secret_cookie(const char *name)
{
    return name && (!strcmp(name, HL_SESSION_COOKIE) || !strcmp(name, HL_CSRF_COOKIE));
}

int hl_webauth_secret_header(const char *name)
{
    static const char *const secret[] = {"Cookie", "Cookie2", "Authorization", "Proxy-Authorization",
                                         "X-Api-Token", "X-Auth-Token", "X-CSRF-Token", "X-Api-Key", NULL};
    if (!name)
        return 0;
    for (size_t i = 0; secret[i]; i++)
        if (!strcasecmp(name, secret[i]))
            return 1;
    return 0;
}

int hl_webauth_sets_secret_cookie(const char *set_cookie)
{
    if (!set_cookie)
        return 0;
    while (*set_cookie == ' ' || *set_cookie == '\t')
        set_cookie++;
    size_t n = strcspn(set_cookie, "=;");
    while (n && (set_cookie[n - 1] == ' ' || set_cookie[n - 1] == '\t'))
        n--;
    char name[64];
    if (n >= sizeof name)
        return 0;
    memcpy(name, set_cookie, n);
    name[n] = '\0';
    return hl_webauth_secret_cookie(name);
}

void hl_webauth_plugin_header(hl_request *req, const char *who, const char *name, const char *value)
{
    if (strcasecmp(name, "Set-Cookie")) {
        hl_response_header(req, name, value);
    } else if (hl_webauth_sets_secret_cookie(value)) {
        hl_log(HL_LOG_WARN, "%s: refused a Set-Cookie of a core credential cookie", who);
    } else {
        hl_response_add_header(req, name, value);
    }
}

void hl_webauth_load(hl_request *req)
{
    const char *raw = hl_params_value(&req->cookies, HL_SESSION_COOKIE);
    if (raw && strlen(raw) == HL_TOKEN_LEN && req->db) {
        hl_session *s = hl_arena_calloc(req->arena, 1, sizeof *s);
        hl_user *u = hl_arena_calloc(req->arena, 1, sizeof *u);
        hl_err err;
        if (s && u &&
            hl_session_lookup(req->db, raw, req->cfg->session_idle, req->cfg->session_lifetime, s, &err) == HL_OK &&
            hl_user_get(req->db, s->user_id, u, &err) == HL_OK && !u->deleted) {
            req->session = s;
            req->user = u;
            req->session_raw = raw;
            req->csrf = s->csrf;
            return;
        }
    }
    const char *c = hl_params_value(&req->cookies, HL_CSRF_COOKIE);
    if (c && strlen(c) == HL_TOKEN_LEN)
        req->csrf = c;
}

/* A visitor gets a token (and its cookie) only with a page that holds a form, so cached assets
 * never carry a cookie. */
const char *hl_webauth_csrf(hl_request *req)
{
    if (req->csrf)
        return req->csrf;
    unsigned char bin[32];
    char *tok = hl_arena_alloc(req->arena, HL_TOKEN_LEN + 1);
    if (!tok)
        return "";
    randombytes_buf(bin, sizeof bin);
    sodium_bin2base64(tok, HL_TOKEN_LEN + 1, bin, sizeof bin, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    req->csrf = tok;
    set_cookie(req, HL_CSRF_COOKIE, tok, 86400);
    return tok;
}

/* "http://host:port" of this request, to compare with Origin. */
static int same_origin(hl_request *req, const char *origin)
{
    const char *host = hl_request_header(req, "Host");
    if (!host)
        return 0;
    const char *p = strstr(origin, "://");
    if (!p)
        return 0;
    if (strcasecmp(p + 3, host) == 0)
        return 1;
    /* Behind a proxy the public address is base_url. */
    return req->cfg->base_url && !strcasecmp(origin, req->cfg->base_url);
}

int hl_webauth_check_csrf(hl_request *req, hl_err *err)
{
    const char *origin = hl_request_header(req, "Origin");
    if (origin && strcmp(origin, "null") && !same_origin(req, origin))
        return hl_err_set(err, HL_EINVAL, T(req, "Requête refusée : elle vient d'un autre site (%s)."), origin);
    if (origin && !strcmp(origin, "null"))
        return hl_err_set(err, HL_EINVAL, "%s", T(req, "Requête refusée : origine masquée."));
    const char *sent = hl_params_value(&req->form, HL_CSRF_FIELD);
    if (!sent)
        sent = hl_request_header(req, "X-CSRF-Token");
    const char *want = req->session ? req->session->csrf : hl_params_value(&req->cookies, HL_CSRF_COOKIE);
    if (!sent || !want || strlen(sent) != strlen(want) || strlen(want) != HL_TOKEN_LEN ||
        sodium_memcmp(sent, want, HL_TOKEN_LEN) != 0)
        return hl_err_set(err, HL_EINVAL, "%s",
                          T(req, "Le formulaire a expiré ou ne vient pas de ce site. Rechargez la page et recommencez."));
    return HL_OK;
}

int hl_webauth_login(hl_request *req, int64_t user_id, hl_err *err)
{
    if (req->session_raw)
        hl_session_destroy(req->db, req->session_raw, NULL);
    char raw[HL_TOKEN_LEN + 1];
    hl_session *s = hl_arena_calloc(req->arena, 1, sizeof *s);
    if (!s)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    const char *ua = hl_request_header(req, "User-Agent");
    int rc = hl_session_create(req->db, user_id, req->remote_ip, ua ? ua : "", raw, s, err);
    if (rc)
        return rc;
    set_cookie(req, HL_SESSION_COOKIE, raw, req->cfg->session_lifetime);
    req->session = s;
    req->session_raw = hl_arena_strdup(req->arena, raw);
    req->csrf = s->csrf;
    sodium_memzero(raw, sizeof raw);
    return HL_OK;
}

void hl_webauth_logout(hl_request *req)
{
    if (req->session_raw)
        hl_session_destroy(req->db, req->session_raw, NULL);
    set_cookie(req, HL_SESSION_COOKIE, "", 0);
    req->session = NULL;
    req->session_raw = NULL;
    req->user = NULL;
}

void hl_webauth_password_params(const hl_config *cfg, hl_password_params *out)
{
    memset(out, 0, sizeof *out);
    if (!strcmp(cfg->password_cost, "min")) {
        out->opslimit = crypto_pwhash_OPSLIMIT_MIN;
        out->memlimit = crypto_pwhash_MEMLIMIT_MIN;
    } else if (!strcmp(cfg->password_cost, "moderate")) {
        out->opslimit = crypto_pwhash_OPSLIMIT_MODERATE;
        out->memlimit = crypto_pwhash_MEMLIMIT_MODERATE;
    }
}

void hl_webauth_lockout_params(const hl_config *cfg, hl_lockout_params *out)
{
    out->temp_after = 3;
    out->hard_after = 10;
    out->temp_seconds = cfg->lockout_minutes * 60;
    out->ip_max = cfg->login_rate_limit;
}
