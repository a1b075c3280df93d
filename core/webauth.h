/* Accounts on the web: the session cookie (loaded before routing, rotated at login), CSRF
 * protection of every state-changing request (a per-session token, or a double-submit cookie
 * for visitors, plus the Origin header), and the password and lockout settings taken from the
 * configuration. */
#ifndef HL_WEBAUTH_H
#define HL_WEBAUTH_H

#include "core/accounts.h"
#include "core/request.h"

#define HL_SESSION_COOKIE "halle_session"
#define HL_CSRF_COOKIE "halle_csrf"
#define HL_CSRF_FIELD "_csrf"

/* Credentials that contained (Lua) plugins never see nor set: the core's session and CSRF
 * cookies, and the request headers that carry them or other secrets (Cookie, Authorization,
 * Proxy-Authorization, API tokens). One list, used by every place that hands a request to a
 * contained plugin (docs/security.md). */
int hl_webauth_secret_cookie(const char *name);
int hl_webauth_secret_header(const char *name);
/* Does a Set-Cookie value set (or clear) one of the core's credential cookies? */
int hl_webauth_sets_secret_cookie(const char *set_cookie);
/* Adds a header a plugin asked for: a Set-Cookie beside the others, unless it would set the
 * core's credential cookies (a fixed session would log visitors into someone else's
 * account): that one is dropped and logged with who, the plugin or hook that asked. */
void hl_webauth_plugin_header(hl_request *req, const char *who, const char *name, const char *value);

/* The value to put in a form's hidden _csrf field: the session's token, or for a visitor the
 * halle_csrf cookie's (set with this response if there is none yet). */
const char *hl_webauth_csrf(hl_request *req);

/* Loads the visitor's session and user, if the cookie names a live one. */
void hl_webauth_load(hl_request *req);
/* For POST/PUT/PATCH/DELETE: the _csrf field (or X-CSRF-Token header) must equal the expected
 * token, and an Origin header, when present, must be this site. Returns HL_OK or HL_EINVAL with
 * a message for the 403 page. */
int hl_webauth_check_csrf(hl_request *req, hl_err *err);
/* Logs user_id in: ends the visitor's current session (fixation), creates a new one, sets the
 * cookie. */
int hl_webauth_login(hl_request *req, int64_t user_id, hl_err *err);
/* Ends the current session and clears the cookie. */
void hl_webauth_logout(hl_request *req);

void hl_webauth_password_params(const hl_config *cfg, hl_password_params *out);
void hl_webauth_lockout_params(const hl_config *cfg, hl_lockout_params *out);

#endif
