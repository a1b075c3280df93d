/* Account pages: sign-up (terms and age certified, email verified by a link), login with
 * lockouts, logout (and everywhere), password reset, the account page (profile, password,
 * email change, sessions, consents, deletion), and the operator's admin pages (users and
 * unlocking, plugins). Pages are built in until the themes issue moves them to templates.
 * Messages never reveal whether an email address has an account. */
#include "core/account_pages.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/services.h"
#include "core/i18n.h"
#include "core/log.h"
#include "core/mail.h"
#include "core/page.h"
#include "core/plugin.h"
#include "core/router.h"
#include "core/text.h"
#include "core/webauth.h"
#include "core/caps.h"

#define VERIFY_TTL (3 * 86400)
#define RESET_TTL 3600

static const char *val(hl_request *req, const char *name)
{
    const char *v = hl_params_value(&req->form, name);
    return v ? v : "";
}

static int checked(hl_request *req, const char *name)
{
    return *val(req, name) != '\0';
}

static char *link_to(hl_request *req, const char *path, const char *token)
{
    const char *base = req->cfg->base_url ? req->cfg->base_url : "";
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/')
        bl--;
    return hl_arena_printf(req->arena, "%.*s%s?token=%s", (int)bl, base, path, token);
}

/* Mail that anyone can make halle send to an address (sign-up, password reset, address
 * change) is limited per address and per client address, so that nobody can flood a mailbox
 * through halle or run up the operator's mail bill. The visitor's page does not change: it must
 * not tell whether a mail went. */
#define MAIL_PER_ADDRESS 3   /* per hour */
#define MAIL_PER_IP 20       /* per hour */

static int mail_allowed(hl_request *req, const char *to)
{
    int ok_ip = hl_rate_allow(req->db, hl_arena_printf(req->arena, "mail-ip:%s", req->remote_ip ? req->remote_ip : ""),
                              3600, MAIL_PER_IP, NULL) == 1;
    int ok_addr = hl_rate_allow_address(req->db, "mail-to", to, 3600, MAIL_PER_ADDRESS, NULL) == 1;
    if (!ok_ip || !ok_addr)
        hl_log(HL_LOG_WARN, "mail to an address not sent: over the %s limit (from %s)", ok_ip ? "per-address" : "per-client",
               req->remote_ip ? req->remote_ip : "?");
    return ok_ip && ok_addr;
}

static void queue_mail(hl_request *req, const char *to, const char *subject, const char *body)
{
    hl_err err;
    if (hl_mail_queue(req->db, to, subject, body, &err) < 0)
        hl_log(HL_LOG_ERROR, "cannot queue mail: %s", err.msg);
}

static int need_login(hl_request *req)
{
    if (req->user)
        return 0;
    hl_response_redirect(req, 303, "/login");
    return 1;
}

static int forbidden(hl_request *req)
{
    return hl_response_error(req, 403, T(req, "Cette page est réservée."));
}

/* ---- messages from accounts.c ------------------------------------------------------- */

static const char *tr_cb(void *ud, const char *msgid)
{
    return T((hl_request *)ud, msgid);
}

/* An error from accounts.c in the page's language: its sentences are msgids with parameters
 * (hl_err_msg), translated here; a plain message is translated whole. */
static const char *tr_err(hl_request *req, const hl_err *err)
{
    if (err->nparts <= 0)
        return T(req, err->msg);
    char *out = hl_arena_alloc(req->arena, 1024);
    return out ? hl_err_render(err, tr_cb, req, out, 1024) : err->msg;
}

/* ---- themed pages ------------------------------------------------------------------- */

/* The visitor's account pages are templates of the theme (themes/default/templates/account/),
 * which a theme or a group's theme overrides like any other page. ctx (taken) joins the
 * layout's context, with the title and the forms' CSRF token. */
static int themed(hl_request *req, const char *tpl, const char *title, json_t *ctx)
{
    req->page_title = hl_arena_strdup(req->arena, title);
    json_t *page = hl_page_context(req);
    if (!page || !ctx) {
        json_decref(page);
        json_decref(ctx);
        return HL_ENOMEM;
    }
    json_object_update(page, ctx);
    json_decref(ctx);
    json_object_set_new(page, "title", json_string(title));
    json_object_set_new(page, "csrf", json_string(hl_webauth_csrf(req)));
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_page_render(req, tpl, page, &err);
    json_decref(page);
    if (rc != HL_OK)
        hl_log(HL_LOG_ERROR, "theme: %s", err.msg);
    return rc;
}

/* ctx's "error" when there is one. */
static json_t *with_error(json_t *ctx, const char *error)
{
    if (ctx && error)
        json_object_set_new(ctx, "error", json_string(error));
    return ctx;
}

/* ---- sign-up ------------------------------------------------------------------------ */

static int signup_form(hl_request *req, const char *error)
{
    return themed(req, "account/signup", T(req, "Créer un compte"),
                  with_error(json_pack("{s:s, s:s, s:b, s:b}", "email", val(req, "email"), "name", val(req, "name"),
                                       "terms", checked(req, "terms"), "age", checked(req, "age")),
                             error));
}

static int signup_get(hl_request *req, void *ud)
{
    (void)ud;
    if (req->user)
        return hl_response_redirect(req, 303, "/account");
    return signup_form(req, NULL);
}

/* A page that only tells something (account/message): kind "ok" or "error", with a link to
 * the login page when login is set. */
static int message_page(hl_request *req, const char *title, const char *text, const char *kind, int login)
{
    return themed(req, "account/message", title,
                  json_pack("{s:s, s:s, s:s, s:b, s:b}", "heading", title, "message", text, "kind", kind, "error",
                            !strcmp(kind, "error"), "login", login));
}

static int sent_page(hl_request *req, const char *title, const char *text)
{
    return message_page(req, title, text, "ok", 0);
}

static int signup_post(hl_request *req, void *ud)
{
    (void)ud;
    hl_err err;
    hl_err_clear(&err);
    char email[256];
    if (hl_email_normalize(val(req, "email"), email, sizeof email, &err) != HL_OK)
        return hl_response_status(req, 422), signup_form(req, T(req, "Adresse e-mail invalide."));
    if (!*val(req, "name"))
        return hl_response_status(req, 422), signup_form(req, T(req, "Indiquez votre nom."));
    if (strcmp(val(req, "password"), val(req, "password2")))
        return hl_response_status(req, 422), signup_form(req, T(req, "Les deux mots de passe diffèrent."));
    if (hl_password_policy(val(req, "password"), &err) != HL_OK)
        return hl_response_status(req, 422), signup_form(req, tr_err(req, &err));
    if (!checked(req, "terms"))
        return hl_response_status(req, 422), signup_form(req, T(req, "Vous devez accepter les conditions d'utilisation."));
    if (!checked(req, "age"))
        return hl_response_status(req, 422), signup_form(req, T(req, "Vous devez certifier avoir plus de 15 ans."));
    if (!hl_rate_allow(req->db, hl_arena_printf(req->arena, "signup:%s", req->remote_ip ? req->remote_ip : ""), 3600, 20, NULL))
        return hl_response_status(req, 429), signup_form(req, T(req, "Trop de comptes créés depuis votre adresse. Réessayez plus tard."));
    hl_password_params pp;
    hl_webauth_password_params(req->cfg, &pp);
    hl_user_new u = {.email = email, .name = val(req, "name"), .password = val(req, "password"),
                     .terms_version = req->cfg->terms_version, .age_certified = 1};
    int64_t id = hl_user_create(req->db, &u, &pp, &err);
    if (id > 0) {
        char tok[HL_TOKEN_LEN + 1];
        if (mail_allowed(req, email) && hl_token_create(req->db, id, "verify", VERIFY_TTL, NULL, tok, &err) == HL_OK) {
            char *body = hl_arena_printf(req->arena, T(req,
                "Bonjour,\n\nPour activer votre compte sur %s, ouvrez ce lien (valable 3 jours) :\n\n%s\n\n"
                "Si vous n'avez pas créé de compte, ignorez ce message.\n"), req->cfg->name, link_to(req, "/verify", tok));
            queue_mail(req, email, T(req, "Confirmez votre adresse e-mail"), body);
        }
    } else {
        /* The address has an account already: tell its owner, not the visitor. */
        hl_user existing;
        if (hl_user_find_email(req->db, email, &existing, NULL) == HL_OK && !existing.deleted) {
            if (mail_allowed(req, email))
                queue_mail(req, email, T(req, "Vous avez déjà un compte"),
                       hl_arena_printf(req->arena, T(req, "Bonjour,\n\nQuelqu'un a voulu créer un compte avec cette adresse sur %s, "
                                                          "où vous en avez déjà un. Mot de passe oublié ? %s/password/forgot\n"),
                                       req->cfg->name, req->cfg->base_url));
        } else {
            hl_log(HL_LOG_ERROR, "sign-up failed: %s", err.msg);
        }
    }
    return sent_page(req, T(req, "Vérifiez votre boîte aux lettres"),
                     T(req, "Si l'adresse est valable, un e-mail vient de vous être envoyé : ouvrez le lien qu'il contient "
                            "pour activer votre compte."));
}

static int verify_get(hl_request *req, void *ud)
{
    (void)ud;
    const char *tok = hl_params_value(&req->query, "token");
    int64_t uid;
    hl_err err;
    if (!tok || hl_token_use(req->db, "verify", tok, &uid, NULL, 0, &err) != HL_OK ||
        hl_user_mark_verified(req->db, uid, &err) != HL_OK) {
        hl_response_status(req, 400);
        return message_page(req, T(req, "Lien invalide"),
                            T(req, "Ce lien n'est pas valable ou a expiré. Créez votre compte à nouveau."), "error", 0);
    }
    return message_page(req, T(req, "Adresse confirmée"), T(req, "Votre compte est activé. Vous pouvez vous connecter."),
                        "ok", 1);
}

/* ---- login / logout ----------------------------------------------------------------- */

static int login_form(hl_request *req, const char *error)
{
    return themed(req, "account/login", T(req, "Se connecter"), with_error(json_pack("{s:s}", "email", val(req, "email")), error));
}

static int login_get(hl_request *req, void *ud)
{
    (void)ud;
    if (req->user)
        return hl_response_redirect(req, 303, "/account");
    return login_form(req, NULL);
}

static int login_post(hl_request *req, void *ud)
{
    (void)ud;
    hl_password_params pp;
    hl_lockout_params lp;
    hl_webauth_password_params(req->cfg, &pp);
    hl_webauth_lockout_params(req->cfg, &lp);
    int64_t uid = 0;
    hl_err err;
    hl_err_clear(&err);
    int rc = hl_user_login(req->db, val(req, "email"), val(req, "password"), req->remote_ip, &lp, &pp, &uid, &err);
    if (rc != HL_OK) {
        hl_response_status(req, rc == HL_ERATE ? 429 : 401);
        return login_form(req, err.msg[0] ? tr_err(req, &err) : T(req, "Connexion impossible."));
    }
    if (hl_webauth_login(req, uid, &err) != HL_OK)
        return HL_ERR;
    return hl_response_redirect(req, 303, "/account");
}

static int logout_post(hl_request *req, void *ud)
{
    (void)ud;
    hl_webauth_logout(req);
    return hl_response_redirect(req, 303, "/");
}

/* ---- password reset ----------------------------------------------------------------- */

static int forgot_get(hl_request *req, void *ud)
{
    (void)ud;
    return themed(req, "account/forgot", T(req, "Mot de passe oublié"), json_object());
}

static int forgot_post(hl_request *req, void *ud)
{
    (void)ud;
    hl_user u;
    char tok[HL_TOKEN_LEN + 1];
    if (hl_rate_allow(req->db, hl_arena_printf(req->arena, "forgot:%s", req->remote_ip ? req->remote_ip : ""), 3600, 20, NULL) &&
        hl_user_find_email(req->db, val(req, "email"), &u, NULL) == HL_OK && !u.deleted && mail_allowed(req, u.email) &&
        hl_token_create(req->db, u.id, "reset", RESET_TTL, NULL, tok, NULL) == HL_OK) {
        queue_mail(req, u.email, T(req, "Nouveau mot de passe"),
                   hl_arena_printf(req->arena, T(req, "Bonjour,\n\nPour choisir un nouveau mot de passe sur %s, ouvrez ce lien "
                                                      "(valable une heure, une seule fois) :\n\n%s\n\nSi vous n'avez rien demandé, "
                                                      "ignorez ce message : votre mot de passe reste le même.\n"),
                                   req->cfg->name, link_to(req, "/password/reset", tok)));
    }
    return sent_page(req, T(req, "Vérifiez votre boîte aux lettres"),
                     T(req, "Si un compte existe à cette adresse, un lien pour choisir un nouveau mot de passe vient d'être envoyé."));
}

static int reset_form(hl_request *req, const char *token, const char *error)
{
    return themed(req, "account/reset", T(req, "Nouveau mot de passe"), with_error(json_pack("{s:s}", "token", token), error));
}

static int reset_get(hl_request *req, void *ud)
{
    (void)ud;
    const char *tok = hl_params_value(&req->query, "token");
    return reset_form(req, tok ? tok : "", NULL);
}

static int reset_post(hl_request *req, void *ud)
{
    (void)ud;
    hl_err err;
    hl_err_clear(&err);
    const char *tok = val(req, "token");
    if (strcmp(val(req, "password"), val(req, "password2")))
        return hl_response_status(req, 422), reset_form(req, tok, T(req, "Les deux mots de passe diffèrent."));
    if (hl_password_policy(val(req, "password"), &err) != HL_OK)
        return hl_response_status(req, 422), reset_form(req, tok, tr_err(req, &err));
    int64_t uid;
    if (hl_token_use(req->db, "reset", tok, &uid, NULL, 0, &err) != HL_OK) {
        hl_response_status(req, 400);
        return message_page(req, T(req, "Lien invalide"), T(req, "Ce lien n'est pas valable ou a expiré. Demandez-en un nouveau."),
                            "error", 0);
    }
    hl_password_params pp;
    hl_webauth_password_params(req->cfg, &pp);
    if (hl_user_set_password(req->db, uid, val(req, "password"), &pp, &err) != HL_OK)
        return HL_ERR;
    /* A reset means the old password may be known to someone else: end every session, and
     * lift the locks the owner could not lift themselves. */
    hl_session_destroy_all(req->db, uid, NULL, NULL);
    hl_user_unlock(req->db, uid, NULL);
    return message_page(req, T(req, "Mot de passe changé"),
                        T(req, "Votre nouveau mot de passe est enregistré ; vos autres sessions ont été fermées."), "ok", 1);
}

/* "2026-11-25T01:24:45Z" as the page's language writes it: "mercredi 25 novembre 2026, 01:24
 * UTC" / "Wednesday, 25 November 2026, 01:24 UTC"; the stored text if it does not parse. */
static const char *date_text(hl_request *req, const char *iso)
{
    int y, mo, d, h, mi;
    char day[96];
    if (!iso || sscanf(iso, "%4d-%2d-%2dT%2d:%2d", &y, &mo, &d, &h, &mi) != 5 ||
        hl_i18n_format_date(req->lang, y, mo, d, day, sizeof day) != HL_OK)
        return iso ? iso : "";
    char *out = hl_arena_printf(req->arena, "%s, %02d:%02d UTC", day, h, mi);
    return out ? out : iso;
}

/* ---- the account page --------------------------------------------------------------- */

static int account_page(hl_request *req, const char *ok, const char *error)
{
    const hl_user *u = req->user;
    hl_session list[20];
    int n = hl_session_list(req->db, u->id, list, 20, NULL);
    json_t *sessions = json_array();
    for (int i = 0; sessions && i < n; i++)
        json_array_append_new(sessions,
                              json_pack("{s:s, s:s, s:s, s:b}", "agent",
                                        list[i].user_agent[0] ? list[i].user_agent : T(req, "navigateur inconnu"), "ip",
                                        list[i].ip, "since", date_text(req, list[i].created_at), "current",
                                        req->session && !strcmp(list[i].id_hash, req->session->id_hash)));
    json_t *ctx = json_pack("{s:{s:s, s:s, s:s, s:s}, s:o}", "me", "name", u->name, "phone", u->phone, "address",
                            u->address, "email", u->email, "sessions", sessions ? sessions : json_array());
    if (ctx && ok)
        json_object_set_new(ctx, "ok", json_string(ok));
    return themed(req, "account/account", T(req, "Mon compte"), with_error(ctx, error));
}

static int account_get(hl_request *req, void *ud)
{
    (void)ud;
    if (need_login(req))
        return HL_OK;
    const char *done = hl_params_value(&req->query, "done");
    return account_page(req, done && !strcmp(done, "profile") ? T(req, "Profil enregistré.")
                             : done && !strcmp(done, "password") ? T(req, "Mot de passe changé.")
                             : done && !strcmp(done, "sessions") ? T(req, "Vos autres sessions sont fermées.")
                             : done && !strcmp(done, "email") ? T(req, "Un lien de confirmation a été envoyé à la nouvelle adresse.")
                             : NULL, NULL);
}

static int profile_post(hl_request *req, void *ud)
{
    (void)ud;
    if (need_login(req))
        return HL_OK;
    hl_err err;
    hl_err_clear(&err);
    if (!*val(req, "name"))
        return hl_response_status(req, 422), account_page(req, NULL, T(req, "Le nom est obligatoire."));
    if (hl_user_update_profile(req->db, req->user->id, val(req, "name"), val(req, "phone"), val(req, "address"), &err) != HL_OK)
        return hl_response_status(req, 422), account_page(req, NULL, tr_err(req, &err));
    return hl_response_redirect(req, 303, "/account?done=profile");
}

static int check_current_password(hl_request *req, const char *field, hl_err *err)
{
    hl_password_params pp;
    hl_lockout_params lp;
    hl_webauth_password_params(req->cfg, &pp);
    hl_webauth_lockout_params(req->cfg, &lp);
    int64_t uid = 0;
    /* Goes through login so that guessing the current password counts toward the lockout. */
    int rc = hl_user_login(req->db, req->user->email, val(req, field), req->remote_ip, &lp, &pp, &uid, err);
    if (rc == HL_OK && uid != req->user->id)
        rc = HL_EAUTH;
    return rc;
}

static int password_post(hl_request *req, void *ud)
{
    (void)ud;
    if (need_login(req))
        return HL_OK;
    hl_err err;
    hl_err_clear(&err);
    if (check_current_password(req, "current", &err) != HL_OK)
        return hl_response_status(req, 403), account_page(req, NULL, T(req, "Le mot de passe actuel est incorrect."));
    if (strcmp(val(req, "password"), val(req, "password2")))
        return hl_response_status(req, 422), account_page(req, NULL, T(req, "Les deux mots de passe diffèrent."));
    if (hl_password_policy(val(req, "password"), &err) != HL_OK)
        return hl_response_status(req, 422), account_page(req, NULL, tr_err(req, &err));
    hl_password_params pp;
    hl_webauth_password_params(req->cfg, &pp);
    if (hl_user_set_password(req->db, req->user->id, val(req, "password"), &pp, &err) != HL_OK)
        return HL_ERR;
    hl_session_destroy_all(req->db, req->user->id, req->session_raw, NULL);
    return hl_response_redirect(req, 303, "/account?done=password");
}

static int email_post(hl_request *req, void *ud)
{
    (void)ud;
    if (need_login(req))
        return HL_OK;
    hl_err err;
    char email[256];
    if (hl_email_normalize(val(req, "email"), email, sizeof email, &err) != HL_OK)
        return hl_response_status(req, 422), account_page(req, NULL, T(req, "Adresse e-mail invalide."));
    if (!mail_allowed(req, email))
        return hl_response_status(req, 429),
               account_page(req, NULL, T(req, "Trop de messages envoyés à cette adresse : réessayez dans une heure."));
    char tok[HL_TOKEN_LEN + 1];
    if (hl_token_create(req->db, req->user->id, "email", VERIFY_TTL, email, tok, &err) != HL_OK)
        return HL_ERR;
    queue_mail(req, email, T(req, "Confirmez votre nouvelle adresse"),
               hl_arena_printf(req->arena, T(req, "Bonjour,\n\nPour utiliser cette adresse sur %s, ouvrez ce lien :\n\n%s\n"),
                               req->cfg->name, link_to(req, "/verify-email", tok)));
    return hl_response_redirect(req, 303, "/account?done=email");
}

static int verify_email_get(hl_request *req, void *ud)
{
    (void)ud;
    const char *tok = hl_params_value(&req->query, "token");
    int64_t uid;
    char email[256];
    hl_err err;
    if (!tok || hl_token_use(req->db, "email", tok, &uid, email, sizeof email, &err) != HL_OK ||
        hl_user_set_email(req->db, uid, email, &err) != HL_OK) {
        hl_response_status(req, 400);
        return sent_page(req, T(req, "Lien invalide"), T(req, "Ce lien n'est pas valable, a expiré, ou l'adresse est déjà utilisée."));
    }
    return sent_page(req, T(req, "Adresse changée"), T(req, "Votre nouvelle adresse e-mail est enregistrée."));
}

static int end_others_post(hl_request *req, void *ud)
{
    (void)ud;
    if (need_login(req))
        return HL_OK;
    hl_session_destroy_all(req->db, req->user->id, req->session_raw, NULL);
    return hl_response_redirect(req, 303, "/account?done=sessions");
}

static int delete_post(hl_request *req, void *ud)
{
    (void)ud;
    if (need_login(req))
        return HL_OK;
    hl_err err;
    hl_err_clear(&err);
    if (!checked(req, "confirm"))
        return hl_response_status(req, 422), account_page(req, NULL, T(req, "Cochez la case pour confirmer la suppression."));
    if (check_current_password(req, "delete_password", &err) != HL_OK)
        return hl_response_status(req, 403), account_page(req, NULL, T(req, "Le mot de passe actuel est incorrect."));
    int64_t id = req->user->id;
    if (hl_user_delete(req->db, id, &err) != HL_OK)
        return HL_ERR;
    hl_log(HL_LOG_INFO, "account %lld deleted by its owner", (long long)id);
    hl_webauth_logout(req);
    return sent_page(req, T(req, "Compte supprimé"), T(req, "Votre compte et vos données personnelles ont été supprimés."));
}

/* ---- operator pages ----------------------------------------------------------------- */

static int operator_only(hl_request *req)
{
    if (need_login(req))
        return 1;
    if (!hl_auth_can(req->user, HL_ACT_VIEW, HL_OBJ_OPERATOR_PAGES, 0)) {
        forbidden(req);
        return 1;
    }
    return 0;
}

static int admin_get(hl_request *req, void *ud)
{
    (void)ud;
    if (operator_only(req))
        return HL_OK;
    const char *q = hl_params_value(&req->query, "q");
    const char *ps = hl_params_value(&req->query, "page");
    long page = ps ? strtol(ps, NULL, 10) : 1;
    if (page < 1 || page > 100000)
        page = 1;
    char like[2 * 256 + 3];
    if (hl_text_like(q ? q : "", like, sizeof like) != HL_OK || !*like)
        snprintf(like, sizeof like, "%%");
    hl_stmt *st = hl_db_query(req->db, NULL,
                              "SELECT id, email, name, locked_hard, locked_until, email_verified_at FROM hl_users "
                              "WHERE deleted_at IS NULL AND (name_folded LIKE ? ESCAPE '\\' OR email LIKE ? ESCAPE '\\') "
                              "ORDER BY id LIMIT 51 OFFSET ?",
                              "ssi", like, like, (int)((page - 1) * 50));
    json_t *users = json_array();
    int rows = 0;
    char now[32];
    hl_log_timestamp(now, sizeof now);
    while (st && users && hl_db_step(st, NULL) == HL_DB_ROW && ++rows <= 50) {
        const char *until = hl_db_col_text(st, 4);
        int hard = (int)hl_db_col_int64(st, 3), temp = until && strcmp(until, now) > 0;
        json_array_append_new(users, json_pack("{s:I, s:s, s:s, s:s, s:b, s:b}", "id", (json_int_t)hl_db_col_int64(st, 0),
                                               "email", hl_db_col_text(st, 1), "name", hl_db_col_text(st, 2), "state",
                                               hard ? T(req, "bloqué (10 échecs)") : temp ? T(req, "bloqué temporairement")
                                                                                    : T(req, "actif"),
                                               "unverified", hl_db_col_text(st, 5) == NULL, "locked", hard || temp));
    }
    hl_db_done(st);
    json_t *ctx = json_pack("{s:s, s:o}", "q", q ? q : "", "users", users ? users : json_array());
    if (ctx && page > 1)
        json_object_set_new(ctx, "prev", json_integer(page - 1));
    if (ctx && rows > 50) /* a 51st row: there is a next page */
        json_object_set_new(ctx, "next", json_integer(page + 1));
    return themed(req, "admin/users", T(req, "Administration"), ctx);
}

static int admin_unlock_post(hl_request *req, void *ud)
{
    (void)ud;
    if (operator_only(req))
        return HL_OK;
    int64_t id = strtoll(hl_params_value(&req->params, "id"), NULL, 10);
    if (!hl_auth_can(req->user, HL_ACT_EDIT, HL_OBJ_USER_LOCKS, id))
        return forbidden(req);
    hl_err err;
    if (hl_user_unlock(req->db, id, &err) != HL_OK)
        return hl_response_error(req, 404, T(req, "Utilisateur inconnu."));
    hl_log(HL_LOG_INFO, "operator %lld unlocked account %lld", (long long)req->user->id, (long long)id);
    return hl_response_redirect(req, 303, "/admin");
}

/* A plugin's settings form, from its schema: {fields: [...]} (admin/plugins.mustache), or NULL
 * when it has none. */
static json_t *settings_fields(hl_request *req, const hl_plugin_info *p)
{
    json_t *schema = json_object_get(p->manifest, "settings");
    if (!json_object_size(schema))
        return NULL;
    json_t *values = hl_plugin_settings(req->db, p);
    json_t *fields = json_array();
    const char *key;
    json_t *sch;
    json_object_foreach(schema, key, sch) {
        const char *type = json_string_value(json_object_get(sch, "type"));
        const char *label = json_string_value(json_object_get(sch, "label"));
        json_t *v = json_object_get(values, key);
        char *name = hl_arena_printf(req->arena, "s_%s", key);
        json_t *f = json_pack("{s:s, s:s}", "name", name ? name : "", "label", label ? label : key);
        if (!f)
            continue;
        if (type && !strcmp(type, "boolean")) {
            json_object_set_new(f, "checkbox", json_true());
            json_object_set_new(f, "checked", json_boolean(json_is_true(v)));
        } else if (type && !strcmp(type, "choice")) {
            json_t *opts = json_array();
            size_t i;
            json_t *c;
            json_array_foreach(json_object_get(sch, "choices"), i, c) {
                const char *cv = json_string_value(c);
                json_array_append_new(opts, json_pack("{s:s, s:b}", "value", cv ? cv : "", "selected",
                                                      json_is_string(v) && cv && !strcmp(json_string_value(v), cv)));
            }
            json_object_set_new(f, "select", json_true());
            json_object_set_new(f, "options", opts);
        } else {
            char *text = json_is_integer(v) ? hl_arena_printf(req->arena, "%lld", (long long)json_integer_value(v))
                                            : hl_arena_strdup(req->arena, json_is_string(v) ? json_string_value(v) : "");
            json_object_set_new(f, "input", json_true());
            json_object_set_new(f, "type", json_string(type && !strcmp(type, "integer") ? "number" : "text"));
            json_object_set_new(f, "value", json_string(text ? text : ""));
        }
        json_array_append_new(fields, f);
    }
    json_decref(values);
    return json_pack("{s:o}", "fields", fields);
}

static int plugins_page(hl_request *req, const char *ok, const char *error)
{
    hl_plugin_list l;
    hl_err err;
    if (hl_plugin_discover(req->cfg, req->db, &l, &err) != HL_OK)
        return hl_response_error(req, 500, err.msg);
    json_t *suspensions = hl_plugin_suspensions(req->db);
    json_t *plugins = json_array();
    for (size_t i = 0; plugins && i < l.count; i++) {
        const hl_plugin_info *p = &l.items[i];
        json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "name", p->name, "version", p->version ? p->version : "",
                              "kind", p->kind == HL_PLUGIN_C ? "C" : "Lua", "state",
                              p->error ? T(req, "refusée") : p->enabled ? T(req, "activée") : T(req, "désactivée"),
                              "description", p->description ? p->description : "", "native", p->kind == HL_PLUGIN_C);
        if (!e)
            continue;
        if (p->error)
            json_object_set_new(e, "refused", json_string(p->error));
        json_t *susp = p->enabled ? json_object_get(suspensions, p->name) : NULL;
        if (susp) {
            const char *reason = json_string_value(json_object_get(json_array_get(susp, 0), "reason"));
            char *m = hl_arena_printf(req->arena, T(req, "Suspendue dans %zu processus après des erreurs répétées : %s. Corrigez-la puis redémarrez (kill -HUP)."),
                                      json_array_size(susp), reason ? reason : "");
            json_object_set_new(e, "suspended", json_string(m ? m : ""));
        }
        if (p->kind != HL_PLUGIN_C) {
            json_t *perm = hl_plugin_permissions(&l, p);
            json_t *never = json_object_get(perm, "refused");
            json_object_set(e, "reads", json_object_get(perm, "reads") ? json_object_get(perm, "reads") : json_array());
            json_object_set_new(e, "has_never", json_boolean(json_array_size(never) > 0));
            char *list = hl_arena_strdup(req->arena, "");
            size_t j;
            json_t *t;
            json_array_foreach(never, j, t) list = hl_arena_printf(req->arena, "%s%s%s", list ? list : "", j ? ", " : "",
                                                                   json_string_value(t));
            json_object_set_new(e, "never", json_string(list ? list : ""));
            json_decref(perm);
        }
        if (!p->error) {
            json_object_set_new(e, "action", json_string(p->enabled ? "disable" : "enable"));
            json_object_set_new(e, "action_label", json_string(p->enabled ? T(req, "Désactiver") : T(req, "Activer")));
        }
        json_t *settings = p->enabled ? settings_fields(req, p) : NULL;
        if (settings)
            json_object_set_new(e, "settings", settings);
        json_array_append_new(plugins, e);
    }
    hl_plugin_list_free(&l);
    json_decref(suspensions);
    json_t *ctx = json_pack("{s:o}", "plugins", plugins ? plugins : json_array());
    if (ctx && ok)
        json_object_set_new(ctx, "ok", json_string(ok));
    return themed(req, "admin/plugins", T(req, "Extensions"), with_error(ctx, error));
}

static int plugins_get(hl_request *req, void *ud)
{
    (void)ud;
    if (operator_only(req))
        return HL_OK;
    return plugins_page(req, NULL, NULL);
}

/* Running workers load plugins at start: a rolling restart (SIGHUP to the master) applies
 * the change without dropping a request. */
static void reload_workers(void)
{
    pid_t master = getppid();
    if (master > 1)
        kill(master, SIGHUP);
}

static int plugin_action_post(hl_request *req, void *ud)
{
    (void)ud;
    if (operator_only(req))
        return HL_OK;
    const char *name = hl_params_value(&req->params, "name");
    const char *action = hl_params_value(&req->params, "action");
    hl_err err;
    hl_err_clear(&err);
    int enable = !strcmp(action, "enable");
    int rc = enable ? hl_plugin_enable(req->cfg, req->db, name, &err) : hl_plugin_disable(req->cfg, req->db, name, &err);
    if (rc != HL_OK)
        return hl_response_status(req, 422), plugins_page(req, NULL, tr_err(req, &err));
    hl_log(HL_LOG_INFO, "operator %lld %s plugin %s", (long long)req->user->id, enable ? "enabled" : "disabled", name);
    reload_workers();
    return plugins_page(req, enable ? T(req, "Extension activée.")
                                    : T(req, "Extension désactivée ; ses données sont conservées."), NULL);
}

static int plugin_settings_post(hl_request *req, void *ud)
{
    (void)ud;
    if (operator_only(req))
        return HL_OK;
    const char *name = hl_params_value(&req->params, "name");
    hl_plugin_list l;
    hl_err err;
    hl_err_clear(&err);
    if (hl_plugin_discover(req->cfg, req->db, &l, &err) != HL_OK)
        return HL_ERR;
    const hl_plugin_info *p = hl_plugin_find(&l, name);
    int rc = p ? HL_OK : hl_err_set(&err, HL_ENOTFOUND, "%s", T(req, "Extension inconnue."));
    const char *key;
    json_t *s;
    json_object_foreach(p ? json_object_get(p->manifest, "settings") : NULL, key, s) {
        if (rc)
            break;
        const char *type = json_string_value(json_object_get(s, "type"));
        const char *v = hl_params_value(&req->form, hl_arena_printf(req->arena, "s_%s", key));
        if (!strcmp(type, "boolean"))
            v = v && *v ? "on" : "off";
        if (v)
            rc = hl_plugin_set_setting(req->db, p, key, v, &err);
    }
    hl_plugin_list_free(&l);
    if (rc)
        return hl_response_status(req, 422), plugins_page(req, NULL, tr_err(req, &err));
    reload_workers();
    return plugins_page(req, T(req, "Réglages enregistrés."), NULL);
}

int hl_account_pages_register(struct hl_worker *w, hl_err *err)
{
    static const struct {
        unsigned methods;
        const char *pattern, *name;
        hl_handler fn;
    } routes[] = {
        {HL_METHOD_GET, "/signup", "account.signup", signup_get},
        {HL_METHOD_POST, "/signup", "account.signup.post", signup_post},
        {HL_METHOD_GET, "/verify", "account.verify", verify_get},
        {HL_METHOD_GET, "/login", "account.login", login_get},
        {HL_METHOD_POST, "/login", "account.login.post", login_post},
        {HL_METHOD_POST, "/logout", "account.logout", logout_post},
        {HL_METHOD_GET, "/password/forgot", "account.forgot", forgot_get},
        {HL_METHOD_POST, "/password/forgot", "account.forgot.post", forgot_post},
        {HL_METHOD_GET, "/password/reset", "account.reset", reset_get},
        {HL_METHOD_POST, "/password/reset", "account.reset.post", reset_post},
        {HL_METHOD_GET, "/account", "account.page", account_get},
        {HL_METHOD_POST, "/account/profile", "account.profile", profile_post},
        {HL_METHOD_POST, "/account/password", "account.password", password_post},
        {HL_METHOD_POST, "/account/email", "account.email", email_post},
        {HL_METHOD_GET, "/verify-email", "account.verify_email", verify_email_get},
        {HL_METHOD_POST, "/account/sessions/end-others", "account.end_others", end_others_post},
        {HL_METHOD_POST, "/account/delete", "account.delete", delete_post},
        {HL_METHOD_GET, "/admin", "admin.users", admin_get},
        {HL_METHOD_POST, "/admin/users/(?<id>[0-9]{1,18})/unlock", "admin.unlock", admin_unlock_post},
        {HL_METHOD_GET, "/admin/plugins", "admin.plugins", plugins_get},
        {HL_METHOD_POST, "/admin/plugins/(?<name>[a-z][a-z0-9]{0,39})/(?<action>enable|disable)", "admin.plugin", plugin_action_post},
        {HL_METHOD_POST, "/admin/plugins/(?<name>[a-z][a-z0-9]{0,39})/settings", "admin.plugin.settings", plugin_settings_post},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = hl_worker_route(w, routes[i].methods, routes[i].pattern, routes[i].name, routes[i].fn, NULL, err);
        if (rc)
            return rc;
    }
    return HL_OK;
}
