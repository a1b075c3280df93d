/* Accounts: users and roles, passwords (policy from the privacy seeds, Argon2id hashes through
 * libsodium), lockouts (3 failures lock for a while, 10 until an operator unlocks), single-use
 * tokens (email verification, password reset, email change), server-side sessions, per-IP rate
 * limits, anonymising deletion (permissions are decided by core/caps.h). Secrets
 * (session ids, tokens) are stored only as hashes: a copy of the database opens no session. */
#ifndef HL_ACCOUNTS_H
#define HL_ACCOUNTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/db.h"
#include "core/error.h"

/* Errors specific to logging in (negative, beside HL_E* of error.h). */
enum {
    HL_EAUTH = -20,         /* wrong email or password (never says which) */
    HL_ELOCKED = -21,       /* locked for a while after 3 failures; try later */
    HL_ELOCKED_HARD = -22,  /* locked after 10 failures; an operator must unlock */
    HL_EUNVERIFIED = -23,   /* email not verified yet */
    HL_ERATE = -24          /* too many attempts from this address */
};

enum {
    HL_ROLE_CLIENT = 1u << 0,
    HL_ROLE_PRODUCER = 1u << 1,
    HL_ROLE_COORDINATOR = 1u << 2,  /* scoped to groups (hl_user.scopes) */
    HL_ROLE_OPERATOR = 1u << 3
};

/* The name of one role bit ("client", "producer", "coordinator", "operator"), NULL for
 * anything else: what plugins see (Lua's req.user.roles, the API's user_get). */
const char *hl_role_name(unsigned role);

#define HL_TOKEN_LEN 43    /* base64url of 32 random bytes, no padding */
#define HL_MAX_SCOPES 64

/* A role held in one group only (a coordinator of group 12). */
typedef struct hl_user_scope {
    unsigned role;
    int64_t group;
} hl_user_scope;

typedef struct hl_password_params {
    unsigned long long opslimit;  /* 0 = libsodium's INTERACTIVE */
    size_t memlimit;              /* 0 = libsodium's INTERACTIVE */
} hl_password_params;

typedef struct hl_lockout_params {
    int temp_after;       /* failures before a temporary lock (3) */
    int hard_after;       /* failures before a lock only an operator lifts (10) */
    int temp_seconds;     /* duration of the temporary lock (900) */
    int ip_max;           /* login attempts per IP address per 5 minutes (20) */
} hl_lockout_params;

typedef struct hl_user {
    int64_t id;
    char email[256];
    char name[128];
    char phone[64];
    char address[512];
    unsigned roles;                 /* every role held, in any scope */
    hl_user_scope scopes[HL_MAX_SCOPES];  /* roles held in a group */
    size_t nscopes;
    int verified;
    int failed_logins;
    int locked;                     /* 0, 1 temporarily, 2 until unlocked */
    int deleted;
    char created_at[24];
} hl_user;

typedef struct hl_user_new {
    const char *email;
    const char *name;
    const char *password;
    const char *phone;          /* may be NULL */
    const char *address;        /* may be NULL */
    const char *terms_version;  /* the version of the terms accepted; required */
    int age_certified;          /* the user certified being over 15; required */
    int verified;               /* 1 for accounts created by an operator from the CLI */
    unsigned roles;             /* 0 = client */
} hl_user_new;

int hl_accounts_init(hl_err *err);  /* sodium_init; call once per process */

/* Password policy: at least 8 characters and 3 of the 4 classes (upper, lower, digit,
 * special); at most 1024 bytes. The message explains what is missing. */
int hl_password_policy(const char *pw, hl_err *err);
int hl_password_hash(const char *pw, const hl_password_params *p, char *out, size_t outlen, hl_err *err);
/* 1 if pw matches, 0 if not. *needs_rehash set when the hash used other parameters. */
int hl_password_verify(const char *hash, const char *pw, const hl_password_params *p, int *needs_rehash);

/* Trims, lower-cases and validates an address into out. */
int hl_email_normalize(const char *in, char *out, size_t outlen, hl_err *err);

/* Creates a user (email unique after normalisation: HL_EINVAL "an account already exists"
 * must NOT be shown to the public as such — the sign-up page says a mail was sent either way).
 * Records terms version/time and age certification. Returns the id or a negative error. */
int64_t hl_user_create(hl_db *db, const hl_user_new *u, const hl_password_params *pp, hl_err *err);
/* Called after each account hl_user_create or hl_user_create_seeded creates in this process
 * (one listener: the plugin host, which fires user.created); fn NULL stops it. */
typedef void (*hl_accounts_created_fn)(void *ud, int64_t id, const char *email, unsigned roles);
void hl_accounts_on_created(hl_accounts_created_fn fn, void *ud);
int hl_user_get(hl_db *db, int64_t id, hl_user *out, hl_err *err);           /* HL_ENOTFOUND */
int hl_user_find_email(hl_db *db, const char *email, hl_user *out, hl_err *err);
/* For seeding (demo data, imports by trusted code): a verified account with no usable password
 * (its owner sets one through "forgot password"); returns its id, or the id of the account
 * that already has this address. */
int64_t hl_user_create_seeded(hl_db *db, const char *email, const char *name, hl_err *err);
/* Ids of live accounts whose name (or, with by_email, address) contains q (case-insensitive),
 * at most max, into ids; returns how many, or an error. */
int hl_user_search(hl_db *db, const char *q, int by_email, int64_t *ids, int max, hl_err *err);
/* Fills the folded name of accounts that have none (made before migration 011). */
int hl_accounts_refold_all(hl_db *db, hl_err *err);
int hl_user_update_profile(hl_db *db, int64_t id, const char *name, const char *phone,
                           const char *address, hl_err *err);
int hl_user_set_password(hl_db *db, int64_t id, const char *pw, const hl_password_params *pp, hl_err *err);
int hl_user_set_email(hl_db *db, int64_t id, const char *email, hl_err *err);  /* re-verified by caller */
int hl_user_mark_verified(hl_db *db, int64_t id, hl_err *err);
int hl_user_add_role(hl_db *db, int64_t id, unsigned role, int64_t group_id, hl_err *err);
int hl_user_remove_role(hl_db *db, int64_t id, unsigned role, int64_t group_id, hl_err *err);
/* Clears failures and both locks. */
int hl_user_unlock(hl_db *db, int64_t id, hl_err *err);
/* Anonymises personal data (email becomes deleted-ID@invalid, name/phone/address cleared,
 * password unusable), ends every session, voids tokens, keeps the row for referential
 * integrity. */
int hl_user_delete(hl_db *db, int64_t id, hl_err *err);

/* Login: checks the per-IP rate limit (ip may be NULL), the locks, then the password; counts
 * failures per account, locks at lock->temp_after (for temp_seconds) and at lock->hard_after
 * (until unlocked); resets the count on success and rehashes when parameters changed. Returns
 * HL_OK with *user_id set, or HL_EAUTH / HL_ELOCKED / HL_ELOCKED_HARD / HL_EUNVERIFIED /
 * HL_ERATE with a message for the user that never reveals whether the email has an account. */
int hl_user_login(hl_db *db, const char *email, const char *password, const char *ip,
                  const hl_lockout_params *lock, const hl_password_params *pp, int64_t *user_id, hl_err *err);

/* Tokens: kind is "verify", "reset" or "email". extra (may be NULL) is stored with the token
 * (e.g. the new address for "email"). raw receives the token to put in the link (NUL-terminated,
 * HL_TOKEN_LEN chars); only its hash is stored. Creating a token of a kind voids the user's
 * previous tokens of that kind. */
int hl_token_create(hl_db *db, int64_t user_id, const char *kind, int ttl_seconds, const char *extra,
                    char raw[HL_TOKEN_LEN + 1], hl_err *err);
/* Consumes a token: HL_OK with *user_id (and extra copied, if extra_out) once; a used, expired,
 * unknown or other-kind token is HL_EINVAL "this link is invalid or has expired". */
int hl_token_use(hl_db *db, const char *kind, const char *raw, int64_t *user_id, char *extra_out,
                 size_t extra_len, hl_err *err);

typedef struct hl_session {
    int64_t user_id;
    char csrf[HL_TOKEN_LEN + 1];    /* per-session CSRF token */
    char created_at[24];
    char last_seen_at[24];
    char ip[64];
    char user_agent[128];
    char id_hash[65];               /* hex, to name a session in lists without revealing it */
} hl_session;

/* Creates a session; raw receives the cookie value (only its hash is stored). */
int hl_session_create(hl_db *db, int64_t user_id, const char *ip, const char *user_agent,
                      char raw[HL_TOKEN_LEN + 1], hl_session *out, hl_err *err);
/* Finds a live session: not past idle_seconds since last use, nor absolute_seconds since
 * creation (expired ones are deleted). Updates last_seen_at at most once a minute.
 * HL_ENOTFOUND when there is none. */
int hl_session_lookup(hl_db *db, const char *raw, int idle_seconds, int absolute_seconds,
                      hl_session *out, hl_err *err);
int hl_session_destroy(hl_db *db, const char *raw, hl_err *err);
/* Ends every session of the user but the one whose raw id is keep (may be NULL). Returns the
 * number ended. */
int hl_session_destroy_all(hl_db *db, int64_t user_id, const char *keep_raw, hl_err *err);
/* The user's live sessions, newest first; returns the count (at most max). */
int hl_session_list(hl_db *db, int64_t user_id, hl_session *out, int max, hl_err *err);

/* Fixed-window rate limit: counts a hit for key; returns 1 if under max hits in the current
 * window of window_seconds, 0 if over. */
int hl_rate_allow(hl_db *db, const char *key, int window_seconds, int max, hl_err *err);
/* The same; when refused, *retry_after (may be NULL) gets the seconds until the window ends. */
int hl_rate_check(hl_db *db, const char *key, int window_seconds, int max, int *retry_after, hl_err *err);
/* The same for a key naming an e-mail address: "PREFIX:" + a hash of the normalised address,
 * so that the table never holds the addresses strangers typed. */
int hl_rate_allow_address(hl_db *db, const char *prefix, const char *email, int window_seconds, int max, hl_err *err);

/* What the purge job removes (core/jobs.c runs it hourly): sessions past idle_seconds without
 * use or absolute_seconds old, tokens used or expired, rate-limit rows whose window ended over
 * HL_RATE_KEEP_SECONDS ago (longer than any window in use). Returns the rows removed, or a
 * negative error. */
#define HL_RATE_KEEP_SECONDS 86400
int hl_accounts_purge(hl_db *db, int idle_seconds, int absolute_seconds, hl_err *err);

/* ---- authorisation: actions and the core's own objects (core/caps.h decides) ----------- */

typedef enum hl_action {
    HL_ACT_VIEW = 1,
    HL_ACT_EDIT,
    HL_ACT_CREATE,
    HL_ACT_DELETE
} hl_action;

/* The core's objects; 3-8 were the market's (now its capabilities, core/caps.h). */
typedef enum hl_object {
    HL_OBJ_OPERATOR_PAGES = 1,   /* owner unused */
    HL_OBJ_USER_ACCOUNT = 2,     /* owner = user id */
    HL_OBJ_USER_LOCKS = 9        /* owner = user id: unlocking */
} hl_object;

#endif
