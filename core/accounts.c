/* Accounts (see accounts.h): users, roles, Argon2id passwords, lockouts, single-use tokens,
 * server-side sessions, rate limits and the permission table. Times are ISO-8601 UTC text made
 * here and bound as parameters, so the SQL stays portable to PostgreSQL. */
#include "core/accounts.h"
#include "core/clock.h"
#include "core/text.h"
#include "core/utf8.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PW_MIN_CHARS 8
#define PW_MAX_BYTES 1024
#define EMAIL_MAX 254
#define NAME_MAX_BYTES 127       /* hl_user.name */
#define PHONE_MAX_BYTES 63       /* hl_user.phone */
#define ADDRESS_MAX_BYTES 511    /* hl_user.address */
#define TERMS_MAX_BYTES 64
#define EXTRA_MAX_BYTES 1024
#define IP_MAX_BYTES 63          /* hl_session.ip */
#define UA_MAX_BYTES 127         /* hl_session.user_agent */
#define RATE_KEY_MAX 200
#define TOKEN_TTL_MAX (30 * 24 * 3600)
#define SESSION_TOUCH_SECONDS 60
#define TS_LEN HL_CLOCK_ISO_LEN

#define MSG_AUTH "Adresse e-mail ou mot de passe incorrect."
#define MSG_LINK "Ce lien n'est pas valide ou a expiré."
#define MSG_HARD "Ce compte est verrouillé après trop de tentatives de connexion échouées. " \
                 "Contactez l'équipe du site pour le faire débloquer."

/* ---------------------------------------------------------------- small helpers */

/* Stamps and their parsing are the clock's (core/clock.c): one format, and HALLE_NOW. */
static void iso_time(int64_t t, char out[TS_LEN]) { hl_clock_iso(t, out); }

static void copy(char *dst, size_t n, const char *src)
{
    if (!n)
        return;
    if (!src)
        src = "";
    size_t len = strnlen(src, n - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* A failed hl_db_query leaves its code in err, which callers may pass as NULL. */
static int db_code(const hl_err *err)
{
    return err && err->code < 0 ? err->code : HL_ERR;
}

/* Text typed by a person: valid UTF-8, no control characters (newlines allowed if nl). */
static int text_ok(const char *s, size_t len, int nl)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        if (p[i] < 0x20 || p[i] == 0x7f) {
            if (!(nl && (p[i] == '\n' || p[i] == '\r')))
                return 0;
        }
        size_t k = hl_utf8_seq(p + i, len - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

static int check_text(const char *s, size_t max, int nl, int required, const char *what,
                      hl_err *err)
{
    if (!s || !*s) {
        if (required)
            return hl_err_msg(err, HL_EINVAL, "Le champ « %s » est obligatoire.", "t", what);
        return HL_OK;
    }
    size_t len = strnlen(s, max + 1);
    if (len > max)
        return hl_err_msg(err, HL_ETOOBIG, "Le champ « %s » ne doit pas dépasser %zu octets.", "tz", what, max);
    if (!text_ok(s, len, nl))
        return hl_err_msg(err, HL_EINVAL, "Le champ « %s » contient des caractères invalides.", "t", what);
    return HL_OK;
}

static int check_phone(const char *s, hl_err *err)
{
    if (!s || !*s)
        return HL_OK;
    size_t len = strnlen(s, PHONE_MAX_BYTES + 1);
    if (len > PHONE_MAX_BYTES)
        return hl_err_set(err, HL_ETOOBIG, "Le numéro de téléphone est trop long.");
    for (size_t i = 0; i < len; i++)
        if (!strchr("0123456789 +-.()", s[i]))
            return hl_err_set(err, HL_EINVAL,
                              "Le numéro de téléphone ne peut contenir que des chiffres, des "
                              "espaces et les signes + - . ( ).");
    return HL_OK;
}

static const char *nonempty(const char *s) { return s && *s ? s : NULL; }

/* ---------------------------------------------------------------- secrets */

static int sodium_ready(void) { return sodium_init() >= 0; }

/* raw = base64url (no padding) of 32 random bytes: HL_TOKEN_LEN characters. */
static void random_token(char raw[HL_TOKEN_LEN + 1])
{
    unsigned char buf[32];
    randombytes_buf(buf, sizeof buf);
    sodium_bin2base64(raw, HL_TOKEN_LEN + 1, buf, sizeof buf,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(buf, sizeof buf);
}

/* What a cookie or link may hold; anything else is not one of ours. */
static int token_format_ok(const char *raw)
{
    if (!raw || strnlen(raw, HL_TOKEN_LEN + 1) != HL_TOKEN_LEN)
        return 0;
    for (size_t i = 0; i < HL_TOKEN_LEN; i++) {
        char c = raw[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Hex BLAKE2b-256 of a token: what the database holds instead of the token. */
static void token_hash(const char *raw, char hex[65])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, (const unsigned char *)raw, strlen(raw), NULL, 0);
    sodium_bin2hex(hex, 65, h, sizeof h);
}

/* ---------------------------------------------------------------- passwords */

static int pw_params(const hl_password_params *p, unsigned long long *ops, size_t *mem)
{
    *ops = p && p->opslimit ? p->opslimit : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    *mem = p && p->memlimit ? p->memlimit : crypto_pwhash_MEMLIMIT_INTERACTIVE;
    if (*ops < crypto_pwhash_OPSLIMIT_MIN || *ops > crypto_pwhash_OPSLIMIT_MAX ||
        *mem < crypto_pwhash_MEMLIMIT_MIN || *mem > crypto_pwhash_MEMLIMIT_MAX)
        return -1;
    return 0;
}

/* Classes are ASCII upper, lower, digit; everything else counts as special, including
 * non-ASCII letters such as "é" (a keyboard-layout question we do not try to settle). Length
 * is counted in characters (code points), the cap in bytes. */
int hl_password_policy(const char *pw, hl_err *err)
{
    int upper = 0, lower = 0, digit = 0, special = 0;
    size_t chars = 0;
    if (!pw || !*pw)
        return hl_err_set(err, HL_EINVAL, "Le mot de passe est obligatoire.");
    size_t len = strnlen(pw, PW_MAX_BYTES + 1);
    if (len > PW_MAX_BYTES)
        return hl_err_msg(err, HL_ETOOBIG, "Le mot de passe ne doit pas dépasser %d octets.", "d", PW_MAX_BYTES);
    if (!text_ok(pw, len, 0))
        return hl_err_set(err, HL_EINVAL,
                          "Le mot de passe contient des caractères invalides (caractères de "
                          "contrôle ou encodage incorrect).");
    const unsigned char *p = (const unsigned char *)pw;
    for (size_t i = 0; i < len; i += hl_utf8_seq(p + i, len - i), chars++) {
        if (p[i] >= 'A' && p[i] <= 'Z')
            upper = 1;
        else if (p[i] >= 'a' && p[i] <= 'z')
            lower = 1;
        else if (p[i] >= '0' && p[i] <= '9')
            digit = 1;
        else
            special = 1;
    }
    int classes = upper + lower + digit + special;
    if (chars >= PW_MIN_CHARS && classes >= 3)
        return HL_OK;

    /* One sentence per rule broken, each a msgid with its parameters: the page shows them in
     * its language (hl_err_render). */
    hl_err_clear(err);
    if (chars < PW_MIN_CHARS)
        hl_err_msg(err, HL_EINVAL, "Le mot de passe doit contenir au moins %d caractères.", "d", PW_MIN_CHARS);
    if (classes < 3) {
        const char *names[4] = {"majuscules", "minuscules", "chiffres", "caractères spéciaux"};
        int have[4] = {upper, lower, digit, special};
        char missing[160] = "";
        for (int i = 0; i < 4; i++) {
            if (have[i])
                continue;
            size_t m = strlen(missing);
            snprintf(missing + m, sizeof missing - m, "%s%s", m ? ", " : "", names[i]);
        }
        static const char classes_msg[] = "Le mot de passe doit contenir au moins 3 types de caractères parmi : "
                                          "majuscules, minuscules, chiffres, caractères spéciaux (il manque : %s).";
        if (err && err->nparts)
            hl_err_more(err, classes_msg, "l", missing);
        else
            hl_err_msg(err, HL_EINVAL, classes_msg, "l", missing);
    }
    return HL_EINVAL;
}

int hl_password_hash(const char *pw, const hl_password_params *p, char *out, size_t outlen,
                     hl_err *err)
{
    unsigned long long ops;
    size_t mem;
    if (!pw || !out)
        return hl_err_set(err, HL_EINVAL, "password hash: NULL argument");
    if (outlen < crypto_pwhash_STRBYTES)
        return hl_err_set(err, HL_ETOOBIG, "password hash: output buffer too small");
    size_t len = strnlen(pw, PW_MAX_BYTES + 1);
    if (len > PW_MAX_BYTES)
        return hl_err_msg(err, HL_ETOOBIG, "Le mot de passe ne doit pas dépasser %d octets.", "d", PW_MAX_BYTES);
    if (pw_params(p, &ops, &mem) != 0)
        return hl_err_set(err, HL_EINVAL, "password hash: parameters out of libsodium's range");
    if (!sodium_ready())
        return hl_err_set(err, HL_ERR, "password hash: libsodium failed to initialise");
    if (crypto_pwhash_str_alg(out, pw, len, ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0)
        return hl_err_set(err, HL_ENOMEM, "password hash: out of memory");
    return HL_OK;
}

/* A password over the cap cannot be right (the policy never let one be set), but it still
 * costs one verification so that its answer takes as long as any other. */
int hl_password_verify(const char *hash, const char *pw, const hl_password_params *p,
                       int *needs_rehash)
{
    unsigned long long ops;
    size_t mem;
    if (needs_rehash)
        *needs_rehash = 0;
    if (!hash || !pw || !sodium_ready())
        return 0;
    size_t len = strnlen(pw, PW_MAX_BYTES + 1);
    int ok = crypto_pwhash_str_verify(hash, pw, len > PW_MAX_BYTES ? PW_MAX_BYTES : len) == 0;
    if (len > PW_MAX_BYTES)
        return 0;
    if (ok && needs_rehash && pw_params(p, &ops, &mem) == 0)
        *needs_rehash = crypto_pwhash_str_needs_rehash(hash, ops, mem) != 0;
    return ok;
}

/* Unknown addresses are checked against this hash so that they take as long as known ones.
 * Recomputed only if the parameters change (once per process in practice). */
static char dummy_hash[crypto_pwhash_STRBYTES];
static unsigned long long dummy_ops;
static size_t dummy_mem;

static void spend_one_verification(const char *pw, const hl_password_params *p)
{
    unsigned long long ops;
    size_t mem;
    if (pw_params(p, &ops, &mem) != 0 || !sodium_ready())
        return;
    if (!dummy_hash[0] || ops != dummy_ops || mem != dummy_mem) {
        char secret[HL_TOKEN_LEN + 1];
        random_token(secret);
        if (crypto_pwhash_str_alg(dummy_hash, secret, strlen(secret), ops, mem,
                                  crypto_pwhash_ALG_ARGON2ID13) != 0)
            dummy_hash[0] = '\0';
        sodium_memzero(secret, sizeof secret);
        dummy_ops = ops, dummy_mem = mem;
    }
    if (dummy_hash[0])
        (void)hl_password_verify(dummy_hash, pw, p, NULL);
}

/* ---------------------------------------------------------------- e-mail addresses */

/* Beyond the brief's list, backslash, parentheses, brackets and colon are refused too: they
 * only appear in quoted or commented forms that no sign-up needs. The apostrophe is allowed
 * (o'neil@example.fr is common). Non-ASCII bytes must be valid UTF-8. */
int hl_email_normalize(const char *in, char *out, size_t outlen, hl_err *err)
{
    static const char bad[] = " \"`<>,;\\()[]:";
    if (!in || !out)
        return hl_err_set(err, HL_EINVAL, "L'adresse e-mail est obligatoire.");
    size_t len = strlen(in);
    while (len && (in[len - 1] == ' ' || in[len - 1] == '\t' || in[len - 1] == '\r' ||
                   in[len - 1] == '\n'))
        len--;
    while (len && (*in == ' ' || *in == '\t' || *in == '\r' || *in == '\n'))
        in++, len--;
    if (!len)
        return hl_err_set(err, HL_EINVAL, "L'adresse e-mail est obligatoire.");
    if (len > EMAIL_MAX)
        return hl_err_set(err, HL_ETOOBIG,
                          "L'adresse e-mail ne doit pas dépasser %d caractères.", EMAIL_MAX);
    if (len >= outlen)
        return hl_err_set(err, HL_ETOOBIG, "email: output buffer too small");

    const char *at = NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c < 0x20 || c == 0x7f || strchr(bad, c))
            return hl_err_set(err, HL_EINVAL, "L'adresse e-mail contient des caractères "
                                              "non autorisés.");
        if (c == '@') {
            if (at)
                return hl_err_set(err, HL_EINVAL, "L'adresse e-mail ne doit contenir qu'un @.");
            at = in + i;
        }
    }
    if (!text_ok(in, len, 0))
        return hl_err_set(err, HL_EINVAL, "L'adresse e-mail contient des caractères invalides.");
    if (!at)
        return hl_err_set(err, HL_EINVAL, "L'adresse e-mail doit contenir un @.");
    if (at == in)
        return hl_err_set(err, HL_EINVAL, "L'adresse e-mail doit avoir une partie avant le @.");

    const char *dom = at + 1;
    size_t dlen = len - (size_t)(dom - in);
    int dot = 0;
    for (size_t i = 0; i < dlen; i++) {
        unsigned char c = (unsigned char)dom[i];
        if (c == '.') {
            if (i == 0 || i == dlen - 1 || dom[i - 1] == '.')
                return hl_err_set(err, HL_EINVAL, "Le domaine de l'adresse e-mail est invalide.");
            dot = 1;
        } else if (!(c >= 0x80 || c == '-' || (c >= '0' && c <= '9') ||
                     (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
            return hl_err_set(err, HL_EINVAL, "Le domaine de l'adresse e-mail est invalide.");
        }
    }
    if (!dot)
        return hl_err_set(err, HL_EINVAL, "Le domaine de l'adresse e-mail est invalide.");

    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        out[i] = c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
    }
    out[len] = '\0';
    return HL_OK;
}

/* ---------------------------------------------------------------- users */

static int single_role(unsigned role)
{
    return role == HL_ROLE_CLIENT || role == HL_ROLE_PRODUCER || role == HL_ROLE_COORDINATOR ||
           role == HL_ROLE_OPERATOR;
}

const char *hl_role_name(unsigned role)
{
    switch (role) {
    case HL_ROLE_CLIENT: return "client";
    case HL_ROLE_PRODUCER: return "producer";
    case HL_ROLE_COORDINATOR: return "coordinator";
    case HL_ROLE_OPERATOR: return "operator";
    default: return NULL;
    }
}

#define ALL_ROLES (HL_ROLE_CLIENT | HL_ROLE_PRODUCER | HL_ROLE_COORDINATOR | HL_ROLE_OPERATOR)

/* 1 if the user exists and is not deleted, 0 if absent or deleted (-> *deleted), < 0 error. */
static int user_alive(hl_db *db, int64_t id, int *deleted, hl_err *err)
{
    if (deleted)
        *deleted = 0;
    hl_stmt *st = hl_db_query(db, err, "SELECT deleted_at FROM hl_users WHERE id = ?", "I", id);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    int alive = 0;
    if (rc == HL_DB_ROW) {
        alive = hl_db_col_type(st, 0) == HL_DB_NULL;
        if (!alive && deleted)
            *deleted = 1;
    }
    hl_db_done(st);
    return rc < 0 ? rc : alive;
}

static int require_alive(hl_db *db, int64_t id, hl_err *err)
{
    int deleted;
    if (id <= 0)
        return hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
    int rc = user_alive(db, id, &deleted, err);
    if (rc < 0)
        return rc;
    if (!rc)
        return deleted ? hl_err_set(err, HL_EINVAL, "Ce compte a été supprimé.")
                       : hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
    return HL_OK;
}

/* The folded copy of a user's name that searches read (migration 011); addresses are stored
 * normalised already (lower-case ASCII), so they are searched as they are. */
static int refold(hl_db *db, int64_t id, hl_err *err)
{
    hl_stmt *st = hl_db_query(db, err, "SELECT name FROM hl_users WHERE id = ?", "I", id);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    char name[300], folded[300];
    snprintf(name, sizeof name, "%s", rc == HL_DB_ROW && hl_db_col_text(st, 0) ? hl_db_col_text(st, 0) : "");
    hl_db_done(st);
    if (rc < 0)
        return rc;
    hl_text_fold(name, folded, sizeof folded);
    rc = hl_db_run(db, err, "UPDATE hl_users SET name_folded = ? WHERE id = ?", "sI", *folded ? folded : "-", id);
    return rc < 0 ? rc : HL_OK;
}

int hl_accounts_refold_all(hl_db *db, hl_err *err)
{
    hl_stmt *st = hl_db_query(db, err, "SELECT id FROM hl_users WHERE name_folded = '' ORDER BY id", NULL);
    if (!st)
        return db_code(err);
    int64_t ids[256];
    int n = 0, rc;
    while (n < 256 && (rc = hl_db_step(st, err)) == HL_DB_ROW)
        ids[n++] = hl_db_col_int64(st, 0);
    hl_db_done(st);
    for (int i = 0; i < n; i++)
        if ((rc = refold(db, ids[i], err)) != HL_OK)
            return rc;
    return n == 256 ? hl_accounts_refold_all(db, err) : HL_OK;
}

typedef struct create_ctx {
    const hl_user_new *u;
    const char *email;
    const char *hash;
    unsigned roles;
    int64_t id;
} create_ctx;

static int create_tx(hl_db *db, void *ud, hl_err *err)
{
    create_ctx *c = ud;
    char now[TS_LEN];
    iso_time(hl_clock_now(), now);
    int rc = hl_db_insert(db, err, &c->id,
                          "INSERT INTO hl_users (email, name, phone, address, password_hash, "
                          "email_verified_at, terms_version, terms_accepted_at, age_certified_at, "
                          "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          "ssssssssss", c->email, c->u->name, nonempty(c->u->phone),
                          nonempty(c->u->address), c->hash, c->u->verified ? now : NULL,
                          c->u->terms_version, now, now, now);
    if (rc < 0)
        return rc == HL_EUNIQUE ? hl_err_set(err, HL_EUNIQUE,
                                             "Un compte existe déjà avec cette adresse e-mail.")
                                : rc;
    for (unsigned bit = 1; bit <= HL_ROLE_OPERATOR; bit <<= 1) {
        if (!(c->roles & bit))
            continue;
        rc = hl_db_run(db, err, "INSERT INTO hl_user_roles (user_id, role, group_id) VALUES (?, ?, 0)",
                       "Ii", c->id, (int)bit);
        if (rc < 0)
            return rc;
    }
    return refold(db, c->id, err);
}

/* Who hears of new accounts in this process (the host fires user.created). */
static hl_accounts_created_fn created_fn;
static void *created_ud;

void hl_accounts_on_created(hl_accounts_created_fn fn, void *ud)
{
    created_fn = fn;
    created_ud = ud;
}

static void notify_created(int64_t id, const char *email, unsigned roles)
{
    if (created_fn)
        created_fn(created_ud, id, email, roles);
}

int64_t hl_user_create_seeded(hl_db *db, const char *email, const char *name, hl_err *err)
{
    char norm[EMAIL_MAX + 1], now[TS_LEN];
    if (!db || !email || !name)
        return hl_err_set(err, HL_EINVAL, "create: NULL argument");
    int rc;
    if ((rc = hl_email_normalize(email, norm, sizeof norm, err)) != HL_OK ||
        (rc = check_text(name, NAME_MAX_BYTES, 0, 1, "nom", err)) != HL_OK)
        return rc;
    iso_time(hl_clock_now(), now);
    /* "!" is no Argon2 string: no password ever matches it. */
    rc = hl_db_run(db, err,
                       "INSERT INTO hl_users (email, name, password_hash, email_verified_at, terms_version, "
                       "terms_accepted_at, age_certified_at, created_at) VALUES (?, ?, '!', ?, 'seed', ?, ?, ?) "
                       "ON CONFLICT (email) DO NOTHING",
                       "ssssss", norm, name, now, now, now, now);
    if (rc < 0)
        return rc;
    int inserted = rc > 0;
    hl_user u;
    rc = hl_user_find_email(db, norm, &u, err);
    if (rc == HL_OK)
        rc = refold(db, u.id, err);
    if (rc == HL_OK && inserted)
        notify_created(u.id, norm, HL_ROLE_CLIENT);
    return rc == HL_OK ? u.id : rc;
}

int hl_user_search(hl_db *db, const char *q, int by_email, int64_t *ids, int max, hl_err *err)
{
    if (!db || !q || !ids || max <= 0)
        return hl_err_set(err, HL_EINVAL, "user search: bad arguments");
    char like[2 * 256 + 3];
    if (hl_text_like(q, like, sizeof like) != HL_OK || !*like)
        snprintf(like, sizeof like, "%%");
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT id FROM hl_users WHERE deleted_at IS NULL AND "
                              "(name_folded LIKE ? ESCAPE '\\' OR (? = 1 AND email LIKE ? ESCAPE '\\')) "
                              "ORDER BY id LIMIT ?",
                              "sisi", like, by_email ? 1 : 0, like, max);
    if (!st)
        return db_code(err);
    int k = 0, rc;
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW)
        ids[k++] = hl_db_col_int64(st, 0);
    hl_db_done(st);
    return rc < 0 ? rc : k;
}

int64_t hl_user_create(hl_db *db, const hl_user_new *u, const hl_password_params *pp, hl_err *err)
{
    char email[EMAIL_MAX + 1], hash[crypto_pwhash_STRBYTES];
    int rc;
    if (!db || !u)
        return hl_err_set(err, HL_EINVAL, "user create: NULL argument");
    if ((rc = hl_email_normalize(u->email, email, sizeof email, err)) != HL_OK ||
        (rc = check_text(u->name, NAME_MAX_BYTES, 0, 1, "nom", err)) != HL_OK ||
        (rc = check_phone(u->phone, err)) != HL_OK ||
        (rc = check_text(u->address, ADDRESS_MAX_BYTES, 1, 0, "adresse", err)) != HL_OK ||
        (rc = hl_password_policy(u->password, err)) != HL_OK)
        return rc;
    if (!u->terms_version || !*u->terms_version)
        return hl_err_set(err, HL_EINVAL, "Vous devez accepter les conditions d'utilisation.");
    if ((rc = check_text(u->terms_version, TERMS_MAX_BYTES, 0, 1, "version des conditions",
                         err)) != HL_OK)
        return rc;
    if (!u->age_certified)
        return hl_err_set(err, HL_EINVAL, "Vous devez certifier avoir plus de 15 ans.");
    unsigned roles = u->roles ? u->roles : HL_ROLE_CLIENT;
    if (roles & ~(unsigned)ALL_ROLES)
        return hl_err_set(err, HL_EINVAL, "user create: unknown role bits");
    if (roles & HL_ROLE_COORDINATOR)
        return hl_err_set(err, HL_EINVAL,
                          "user create: a coordinator role needs a group (hl_user_add_role)");

    /* Checked before the expensive hash; the UNIQUE constraint still settles races. */
    hl_stmt *st = hl_db_query(db, err, "SELECT id FROM hl_users WHERE email = ?", "s", email);
    if (!st)
        return db_code(err);
    rc = hl_db_step(st, err);
    hl_db_done(st);
    if (rc < 0)
        return rc;
    if (rc == HL_DB_ROW)
        return hl_err_set(err, HL_EUNIQUE, "Un compte existe déjà avec cette adresse e-mail.");

    if ((rc = hl_password_hash(u->password, pp, hash, sizeof hash, err)) != HL_OK)
        return rc;
    create_ctx c = {u, email, hash, roles, 0};
    rc = hl_db_tx(db, create_tx, &c, err);
    if (rc == HL_OK)
        notify_created(c.id, email, roles);
    return rc != HL_OK ? rc : c.id;
}

int hl_user_get(hl_db *db, int64_t id, hl_user *out, hl_err *err)
{
    if (!db || !out)
        return hl_err_set(err, HL_EINVAL, "user get: NULL argument");
    memset(out, 0, sizeof *out);
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT id, email, name, phone, address, email_verified_at, "
                              "failed_logins, locked_until, locked_hard, created_at, deleted_at "
                              "FROM hl_users WHERE id = ?",
                              "I", id);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    if (rc != HL_DB_ROW) {
        hl_db_done(st);
        return rc < 0 ? rc : hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
    }
    char now[TS_LEN];
    iso_time(hl_clock_now(), now);
    out->id = hl_db_col_int64(st, 0);
    copy(out->email, sizeof out->email, hl_db_col_text(st, 1));
    copy(out->name, sizeof out->name, hl_db_col_text(st, 2));
    copy(out->phone, sizeof out->phone, hl_db_col_text(st, 3));
    copy(out->address, sizeof out->address, hl_db_col_text(st, 4));
    out->verified = hl_db_col_type(st, 5) != HL_DB_NULL;
    out->failed_logins = (int)hl_db_col_int64(st, 6);
    const char *until = hl_db_col_text(st, 7);
    if (hl_db_col_int64(st, 8))
        out->locked = 2;
    else if (until && strcmp(until, now) > 0)
        out->locked = 1;
    copy(out->created_at, sizeof out->created_at, hl_db_col_text(st, 9));
    out->deleted = hl_db_col_type(st, 10) != HL_DB_NULL;
    hl_db_done(st);

    st = hl_db_query(db, err, "SELECT role, group_id FROM hl_user_roles WHERE user_id = ? "
                              "ORDER BY role, group_id", "I", id);
    if (!st)
        return db_code(err);
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW) {
        unsigned role = (unsigned)hl_db_col_int64(st, 0);
        int64_t group = hl_db_col_int64(st, 1);
        if (!single_role(role))
            continue;
        if (group > 0) {
            if (out->nscopes >= HL_MAX_SCOPES)
                continue;
            out->scopes[out->nscopes].role = role;
            out->scopes[out->nscopes++].group = group;
        }
        out->roles |= role;
    }
    hl_db_done(st);
    return rc < 0 ? rc : HL_OK;
}

/* Id for a normalised address: > 0, 0 if none, < 0 on error. */
static int64_t id_by_email(hl_db *db, const char *email, hl_err *err)
{
    hl_stmt *st = hl_db_query(db, err, "SELECT id FROM hl_users WHERE email = ?", "s", email);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    int64_t id = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : 0;
    hl_db_done(st);
    return rc < 0 ? rc : id;
}

int hl_user_find_email(hl_db *db, const char *email, hl_user *out, hl_err *err)
{
    char norm[EMAIL_MAX + 1];
    if (!db || !out)
        return hl_err_set(err, HL_EINVAL, "user find: NULL argument");
    int rc = hl_email_normalize(email, norm, sizeof norm, err);
    if (rc != HL_OK)
        return rc;
    int64_t id = id_by_email(db, norm, err);
    if (id < 0)
        return (int)id;
    if (id == 0)
        return hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
    return hl_user_get(db, id, out, err);
}

int hl_user_update_profile(hl_db *db, int64_t id, const char *name, const char *phone,
                           const char *address, hl_err *err)
{
    int rc;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "user update: NULL database");
    if ((rc = check_text(name, NAME_MAX_BYTES, 0, 1, "nom", err)) != HL_OK ||
        (rc = check_phone(phone, err)) != HL_OK ||
        (rc = check_text(address, ADDRESS_MAX_BYTES, 1, 0, "adresse", err)) != HL_OK ||
        (rc = require_alive(db, id, err)) != HL_OK)
        return rc;
    rc = hl_db_run(db, err, "UPDATE hl_users SET name = ?, phone = ?, address = ? WHERE id = ?",
                   "sssI", name, nonempty(phone), nonempty(address), id);
    return rc < 0 ? rc : refold(db, id, err);
}

int hl_user_set_password(hl_db *db, int64_t id, const char *pw, const hl_password_params *pp,
                         hl_err *err)
{
    char hash[crypto_pwhash_STRBYTES];
    int rc;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "set password: NULL database");
    if ((rc = hl_password_policy(pw, err)) != HL_OK || (rc = require_alive(db, id, err)) != HL_OK ||
        (rc = hl_password_hash(pw, pp, hash, sizeof hash, err)) != HL_OK)
        return rc;
    rc = hl_db_run(db, err, "UPDATE hl_users SET password_hash = ? WHERE id = ? AND deleted_at IS NULL",
                   "sI", hash, id);
    if (rc < 0)
        return rc;
    return rc ? HL_OK : hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
}

int hl_user_set_email(hl_db *db, int64_t id, const char *email, hl_err *err)
{
    char norm[EMAIL_MAX + 1];
    int rc;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "set email: NULL database");
    if ((rc = hl_email_normalize(email, norm, sizeof norm, err)) != HL_OK ||
        (rc = require_alive(db, id, err)) != HL_OK)
        return rc;
    int64_t other = id_by_email(db, norm, err);
    if (other < 0)
        return (int)other;
    if (other == id)
        return HL_OK;
    if (other)
        return hl_err_set(err, HL_EUNIQUE, "Un compte existe déjà avec cette adresse e-mail.");
    rc = hl_db_run(db, err, "UPDATE hl_users SET email = ? WHERE id = ?", "sI", norm, id);
    if (rc == HL_EUNIQUE)
        return hl_err_set(err, HL_EUNIQUE, "Un compte existe déjà avec cette adresse e-mail.");
    return rc < 0 ? rc : refold(db, id, err);
}

int hl_user_mark_verified(hl_db *db, int64_t id, hl_err *err)
{
    char now[TS_LEN];
    int rc;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "mark verified: NULL database");
    if ((rc = require_alive(db, id, err)) != HL_OK)
        return rc;
    iso_time(hl_clock_now(), now);
    rc = hl_db_run(db, err,
                   "UPDATE hl_users SET email_verified_at = COALESCE(email_verified_at, ?) WHERE id = ?",
                   "sI", now, id);
    return rc < 0 ? rc : HL_OK;
}

static int role_args(unsigned role, int64_t group_id, int removing, hl_err *err)
{
    if (!single_role(role))
        return hl_err_set(err, HL_EINVAL, "role: exactly one known role bit expected");
    if (role == HL_ROLE_COORDINATOR && group_id < (removing ? 0 : 1))
        return hl_err_set(err, HL_EINVAL, "role: a coordinator role needs a group id");
    if (role != HL_ROLE_COORDINATOR && group_id != 0)
        return hl_err_set(err, HL_EINVAL, "role: only coordinators have a group id");
    return HL_OK;
}

int hl_user_add_role(hl_db *db, int64_t id, unsigned role, int64_t group_id, hl_err *err)
{
    int rc;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "add role: NULL database");
    if ((rc = role_args(role, group_id, 0, err)) != HL_OK || (rc = require_alive(db, id, err)) != HL_OK)
        return rc;
    if (role == HL_ROLE_COORDINATOR) {
        /* hl_user holds HL_MAX_SCOPES groups: one more would silently lose its rights. */
        hl_stmt *st = hl_db_query(db, err, "SELECT count(*) FROM hl_user_roles WHERE user_id = ? "
                                           "AND role = ? AND group_id <> ?",
                                  "IiI", id, (int)role, group_id);
        if (!st)
            return db_code(err);
        rc = hl_db_step(st, err);
        int64_t n = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : 0;
        hl_db_done(st);
        if (rc < 0)
            return rc;
        if (n >= HL_MAX_SCOPES)
            return hl_err_set(err, HL_ETOOBIG, "add role: a user coordinates at most %d groups",
                              HL_MAX_SCOPES);
    }
    rc = hl_db_run(db, err,
                   "INSERT INTO hl_user_roles (user_id, role, group_id) VALUES (?, ?, ?) "
                   "ON CONFLICT (user_id, role, group_id) DO NOTHING",
                   "IiI", id, (int)role, group_id);
    return rc < 0 ? rc : HL_OK;
}

/* For coordinators, group_id 0 removes the role for every group. */
int hl_user_remove_role(hl_db *db, int64_t id, unsigned role, int64_t group_id, hl_err *err)
{
    int rc;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "remove role: NULL database");
    if ((rc = role_args(role, group_id, 1, err)) != HL_OK)
        return rc;
    if (role == HL_ROLE_COORDINATOR && group_id == 0)
        rc = hl_db_run(db, err, "DELETE FROM hl_user_roles WHERE user_id = ? AND role = ?", "Ii", id,
                       (int)role);
    else
        rc = hl_db_run(db, err,
                       "DELETE FROM hl_user_roles WHERE user_id = ? AND role = ? AND group_id = ?",
                       "IiI", id, (int)role, group_id);
    if (rc < 0)
        return rc;
    return rc ? HL_OK : hl_err_set(err, HL_ENOTFOUND, "Ce compte n'a pas ce rôle.");
}

int hl_user_unlock(hl_db *db, int64_t id, hl_err *err)
{
    if (!db)
        return hl_err_set(err, HL_EINVAL, "unlock: NULL database");
    int rc = hl_db_run(db, err, "UPDATE hl_users SET failed_logins = 0, locked_until = NULL, "
                                "locked_hard = 0 WHERE id = ?", "I", id);
    if (rc < 0)
        return rc;
    return rc ? HL_OK : hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
}

static int delete_tx(hl_db *db, void *ud, hl_err *err)
{
    int64_t id = *(int64_t *)ud;
    char email[64], now[TS_LEN];
    int rc;
    snprintf(email, sizeof email, "deleted-%lld@invalid", (long long)id);
    iso_time(hl_clock_now(), now);
    /* "!" is no Argon2 string: nothing verifies against it. The terms and age records stay,
     * as proof of consent for the legal retention period. */
    rc = hl_db_run(db, err,
                   "UPDATE hl_users SET email = ?, name = '', phone = NULL, address = NULL, name_folded = '-', "
                   "password_hash = '!', failed_logins = 0, locked_until = NULL, locked_hard = 0, "
                   "deleted_at = COALESCE(deleted_at, ?) WHERE id = ?",
                   "ssI", email, now, id);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
    if ((rc = hl_db_run(db, err, "DELETE FROM hl_sessions WHERE user_id = ?", "I", id)) < 0 ||
        (rc = hl_db_run(db, err, "DELETE FROM hl_user_tokens WHERE user_id = ?", "I", id)) < 0 ||
        (rc = hl_db_run(db, err, "DELETE FROM hl_user_roles WHERE user_id = ?", "I", id)) < 0)
        return rc;
    return HL_OK;
}

int hl_user_delete(hl_db *db, int64_t id, hl_err *err)
{
    if (!db)
        return hl_err_set(err, HL_EINVAL, "delete: NULL database");
    if (id <= 0)
        return hl_err_set(err, HL_ENOTFOUND, "Compte introuvable.");
    return hl_db_tx(db, delete_tx, &id, err);
}

/* ---------------------------------------------------------------- login */

typedef struct login_row {
    int64_t id;
    char hash[crypto_pwhash_STRBYTES];
    int verified, failed, hard, deleted;
    char locked_until[TS_LEN];
} login_row;

/* 1 found, 0 not, < 0 error. */
static int login_load(hl_db *db, const char *email, login_row *r, hl_err *err)
{
    memset(r, 0, sizeof *r);
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT id, password_hash, email_verified_at, failed_logins, "
                              "locked_hard, locked_until, deleted_at FROM hl_users WHERE email = ?",
                              "s", email);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    if (rc == HL_DB_ROW) {
        r->id = hl_db_col_int64(st, 0);
        copy(r->hash, sizeof r->hash, hl_db_col_text(st, 1));
        r->verified = hl_db_col_type(st, 2) != HL_DB_NULL;
        r->failed = (int)hl_db_col_int64(st, 3);
        r->hard = hl_db_col_int64(st, 4) != 0;
        copy(r->locked_until, sizeof r->locked_until, hl_db_col_text(st, 5));
        r->deleted = hl_db_col_type(st, 6) != HL_DB_NULL;
    }
    hl_db_done(st);
    return rc < 0 ? rc : rc == HL_DB_ROW;
}

static int minutes_until(time_t until, time_t now)
{
    long long s = (long long)(until - now);
    return s <= 60 ? 1 : (int)((s + 59) / 60);
}

static int locked_msg(hl_err *err, int minutes)
{
    return hl_err_msg(err, HL_ELOCKED,
                      "Trop de tentatives de connexion échouées : ce compte est verrouillé "
                      "temporairement. Réessayez dans %d minute%s.",
                      "ds", minutes, minutes > 1 ? "s" : "");
}

typedef struct fail_ctx {
    int64_t id;
    hl_lockout_params lock;
    int outcome;   /* HL_EAUTH, HL_ELOCKED or HL_ELOCKED_HARD */
} fail_ctx;

/* Counted and read back in one transaction, so two workers cannot both see the same count. */
static int fail_tx(hl_db *db, void *ud, hl_err *err)
{
    fail_ctx *c = ud;
    int rc = hl_db_run(db, err, "UPDATE hl_users SET failed_logins = failed_logins + 1 WHERE id = ?",
                       "I", c->id);
    if (rc < 0)
        return rc;
    hl_stmt *st = hl_db_query(db, err, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", c->id);
    if (!st)
        return db_code(err);
    rc = hl_db_step(st, err);
    int64_t n = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : 0;
    hl_db_done(st);
    if (rc < 0)
        return rc;
    c->outcome = HL_EAUTH;
    if (n >= c->lock.hard_after) {
        rc = hl_db_run(db, err, "UPDATE hl_users SET locked_hard = 1 WHERE id = ?", "I", c->id);
        c->outcome = HL_ELOCKED_HARD;
    } else if (n % c->lock.temp_after == 0) {
        char until[TS_LEN];
        iso_time(hl_clock_now() + c->lock.temp_seconds, until);
        rc = hl_db_run(db, err, "UPDATE hl_users SET locked_until = ? WHERE id = ?", "sI", until,
                       c->id);
        c->outcome = HL_ELOCKED;
    }
    return rc < 0 ? rc : HL_OK;
}

/* Failures for an address with no account (or a deleted one) are counted in
 * hl_login_failures exactly as fail_tx counts an account's, temporary and hard locks included:
 * otherwise three guesses would tell whether an address has an account. */
#define UNKNOWN_KEEP_SECONDS (90 * 86400)

typedef struct unknown_ctx {
    char key[2 * 16 + 1];
    hl_lockout_params lock;
    int64_t now;
    int outcome;   /* HL_EAUTH, HL_ELOCKED or HL_ELOCKED_HARD */
    int minutes;   /* for HL_ELOCKED */
} unknown_ctx;

static int unknown_tx(hl_db *db, void *ud, hl_err *err)
{
    unknown_ctx *c = ud;
    hl_stmt *st = hl_db_query(db, err, "SELECT failures, last_failure FROM hl_login_failures WHERE address_hash = ?",
                              "s", c->key);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    int64_t n = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : 0, last = rc == HL_DB_ROW ? hl_db_col_int64(st, 1) : 0;
    hl_db_done(st);
    if (rc < 0)
        return rc;
    c->outcome = HL_EAUTH;
    if (n >= c->lock.hard_after) { /* as a hard-locked account: no more counting */
        c->outcome = HL_ELOCKED_HARD;
        return HL_OK;
    }
    if (n > 0 && n % c->lock.temp_after == 0 && c->now < last + c->lock.temp_seconds) {
        c->outcome = HL_ELOCKED; /* as a temporarily locked account: refused before the password */
        c->minutes = minutes_until(last + c->lock.temp_seconds, c->now);
        return HL_OK;
    }
    n++;
    rc = hl_db_run(db, err,
                   "INSERT INTO hl_login_failures (address_hash, failures, last_failure) VALUES (?, ?, ?) "
                   "ON CONFLICT (address_hash) DO UPDATE SET failures = excluded.failures, "
                   "last_failure = excluded.last_failure",
                   "sII", c->key, n, c->now);
    if (rc < 0)
        return rc;
    if (n >= c->lock.hard_after) {
        c->outcome = HL_ELOCKED_HARD;
    } else if (n % c->lock.temp_after == 0) {
        c->outcome = HL_ELOCKED;
        c->minutes = minutes_until(c->now + c->lock.temp_seconds, c->now);
    }
    return HL_OK;
}

static int unknown_failure(hl_db *db, const char *norm, const hl_lockout_params *lp, hl_err *err)
{
    unknown_ctx c;
    memset(&c, 0, sizeof c);
    unsigned char h[16];
    crypto_generichash(h, sizeof h, (const unsigned char *)norm, strlen(norm), NULL, 0);
    sodium_bin2hex(c.key, sizeof c.key, h, sizeof h);
    c.lock = *lp;
    c.now = hl_clock_now();
    int rc = hl_db_tx(db, unknown_tx, &c, err);
    if (rc != HL_OK)
        return rc;
    if (c.outcome == HL_ELOCKED_HARD)
        return hl_err_set(err, HL_ELOCKED_HARD, MSG_HARD);
    if (c.outcome == HL_ELOCKED)
        return locked_msg(err, c.minutes);
    return hl_err_set(err, HL_EAUTH, MSG_AUTH);
}

int hl_user_login(hl_db *db, const char *email, const char *password, const char *ip,
                  const hl_lockout_params *lock, const hl_password_params *pp, int64_t *user_id,
                  hl_err *err)
{
    hl_lockout_params lp = {3, 10, 900, 20};
    char norm[EMAIL_MAX + 1], now[TS_LEN];
    login_row r = {0};
    int rc, found = 0, rehash = 0;

    if (user_id)
        *user_id = 0;
    if (!db || !email || !password || !user_id)
        return hl_err_set(err, HL_EINVAL, "login: NULL argument");
    if (lock) {
        if (lock->temp_after > 0)
            lp.temp_after = lock->temp_after;
        if (lock->hard_after > 0)
            lp.hard_after = lock->hard_after;
        if (lock->temp_seconds > 0)
            lp.temp_seconds = lock->temp_seconds;
        if (lock->ip_max > 0)
            lp.ip_max = lock->ip_max;
    }

    if (ip) {
        char key[RATE_KEY_MAX + 1];
        if (strnlen(ip, IP_MAX_BYTES + 1) > IP_MAX_BYTES)
            return hl_err_set(err, HL_EINVAL, "login: client address too long");
        snprintf(key, sizeof key, "login:%s", ip);
        rc = hl_rate_allow(db, key, 300, lp.ip_max > 0 ? lp.ip_max : 20, err);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return hl_err_set(err, HL_ERATE, "Trop de tentatives de connexion depuis votre "
                                             "adresse. Réessayez dans quelques minutes.");
    }

    /* Every answer costs one password verification and counts like any other, so neither
     * the text, the status, the locks nor the time tell whether the address has an account. */
    int normalized = hl_email_normalize(email, norm, sizeof norm, NULL) == HL_OK;
    if (!normalized) /* a malformed address is counted as typed */
        snprintf(norm, sizeof norm, "%.*s", (int)(sizeof norm - 1), email);
    found = login_load(db, norm, &r, err);
    if (found < 0)
        return found;
    if (!found || r.deleted) {
        spend_one_verification(password, pp);
        return unknown_failure(db, norm, &lp, err);
    }
    if (r.hard) {
        spend_one_verification(password, pp);
        return hl_err_set(err, HL_ELOCKED_HARD, MSG_HARD);
    }
    int64_t t = hl_clock_now(), until;
    iso_time(t, now);
    if (r.locked_until[0] && strcmp(r.locked_until, now) > 0) {
        spend_one_verification(password, pp);
        return locked_msg(err, hl_clock_parse(r.locked_until, &until) == 0
                                   ? minutes_until(until, t) : (lp.temp_seconds + 59) / 60);
    }

    if (!hl_password_verify(r.hash, password, pp, &rehash)) {
        fail_ctx c = {r.id, lp, HL_EAUTH};
        rc = hl_db_tx(db, fail_tx, &c, err);
        if (rc != HL_OK)
            return rc;
        if (c.outcome == HL_ELOCKED_HARD)
            return hl_err_set(err, HL_ELOCKED_HARD, MSG_HARD);
        if (c.outcome == HL_ELOCKED)
            return locked_msg(err, minutes_until(t + lp.temp_seconds, t));
        return hl_err_set(err, HL_EAUTH, MSG_AUTH);
    }

    /* The password was right: the failures no longer count, even if the address is not
     * verified yet. */
    char hash[crypto_pwhash_STRBYTES];
    if (rehash && hl_password_hash(password, pp, hash, sizeof hash, NULL) == HL_OK)
        rc = hl_db_run(db, err, "UPDATE hl_users SET failed_logins = 0, locked_until = NULL, "
                                "password_hash = ? WHERE id = ?", "sI", hash, r.id);
    else
        rc = hl_db_run(db, err, "UPDATE hl_users SET failed_logins = 0, locked_until = NULL "
                                "WHERE id = ?", "I", r.id);
    if (rc < 0)
        return rc;
    if (!r.verified)
        return hl_err_set(err, HL_EUNVERIFIED,
                          "Votre adresse e-mail n'est pas encore vérifiée : suivez le lien du "
                          "message que nous vous avons envoyé pour activer votre compte.");
    *user_id = r.id;
    hl_err_clear(err);
    return HL_OK;
}

/* ---------------------------------------------------------------- tokens */

static int kind_ok(const char *kind)
{
    return kind && (!strcmp(kind, "verify") || !strcmp(kind, "reset") || !strcmp(kind, "email"));
}

typedef struct token_ctx {
    int64_t user_id;
    const char *kind, *extra, *hash, *expires;
} token_ctx;

static int token_tx(hl_db *db, void *ud, hl_err *err)
{
    token_ctx *c = ud;
    int rc = hl_db_run(db, err, "DELETE FROM hl_user_tokens WHERE user_id = ? AND kind = ?", "Is",
                       c->user_id, c->kind);
    if (rc < 0)
        return rc;
    rc = hl_db_run(db, err, "INSERT INTO hl_user_tokens (token_hash, user_id, kind, extra, "
                            "expires_at) VALUES (?, ?, ?, ?, ?)",
                   "sIsss", c->hash, c->user_id, c->kind, c->extra, c->expires);
    return rc < 0 ? rc : HL_OK;
}

int hl_token_create(hl_db *db, int64_t user_id, const char *kind, int ttl_seconds,
                    const char *extra, char raw[HL_TOKEN_LEN + 1], hl_err *err)
{
    char hash[65], expires[TS_LEN];
    int rc;
    if (!db || !raw)
        return hl_err_set(err, HL_EINVAL, "token: NULL argument");
    raw[0] = '\0';
    if (!kind_ok(kind))
        return hl_err_set(err, HL_EINVAL, "token: unknown kind");
    if (ttl_seconds <= 0 || ttl_seconds > TOKEN_TTL_MAX)
        return hl_err_set(err, HL_EINVAL, "token: lifetime must be 1 s to 30 days");
    if (extra && (rc = check_text(extra, EXTRA_MAX_BYTES, 0, 0, "extra", err)) != HL_OK)
        return rc;
    if ((rc = require_alive(db, user_id, err)) != HL_OK)
        return rc;
    if (!sodium_ready())
        return hl_err_set(err, HL_ERR, "token: libsodium failed to initialise");
    char fresh[HL_TOKEN_LEN + 1];
    random_token(fresh);
    token_hash(fresh, hash);
    iso_time(hl_clock_now() + ttl_seconds, expires);
    token_ctx c = {user_id, kind, extra, hash, expires};
    rc = hl_db_tx(db, token_tx, &c, err);
    if (rc == HL_OK)
        memcpy(raw, fresh, sizeof fresh);
    sodium_memzero(fresh, sizeof fresh);
    return rc;
}

typedef struct use_ctx {
    const char *kind, *hash;
    int64_t user_id;
    char *extra_out;
    size_t extra_len;
} use_ctx;

static int use_tx(hl_db *db, void *ud, hl_err *err)
{
    use_ctx *c = ud;
    char now[TS_LEN];
    iso_time(hl_clock_now(), now);
    hl_stmt *st = hl_db_query(db, err, "SELECT user_id, kind, extra, expires_at, used_at "
                                       "FROM hl_user_tokens WHERE token_hash = ?", "s", c->hash);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    if (rc != HL_DB_ROW) {
        hl_db_done(st);
        return rc < 0 ? rc : hl_err_set(err, HL_EINVAL, MSG_LINK);
    }
    const char *kind = hl_db_col_text(st, 1), *extra = hl_db_col_text(st, 2),
               *expires = hl_db_col_text(st, 3);
    int valid = kind && !strcmp(kind, c->kind) && expires && strcmp(expires, now) > 0 &&
                hl_db_col_type(st, 4) == HL_DB_NULL;
    c->user_id = hl_db_col_int64(st, 0);
    if (valid && c->extra_out && c->extra_len) {
        if (extra && strlen(extra) >= c->extra_len)
            valid = -1;
        else
            copy(c->extra_out, c->extra_len, extra);
    }
    hl_db_done(st);
    if (valid == -1)
        return hl_err_set(err, HL_ETOOBIG, "token: extra buffer too small");
    if (!valid)
        return hl_err_set(err, HL_EINVAL, MSG_LINK);
    rc = hl_db_run(db, err, "UPDATE hl_user_tokens SET used_at = ? WHERE token_hash = ? "
                            "AND used_at IS NULL", "ss", now, c->hash);
    if (rc < 0)
        return rc;
    return rc == 1 ? HL_OK : hl_err_set(err, HL_EINVAL, MSG_LINK);
}

int hl_token_use(hl_db *db, const char *kind, const char *raw, int64_t *user_id, char *extra_out,
                 size_t extra_len, hl_err *err)
{
    char hash[65];
    if (user_id)
        *user_id = 0;
    if (extra_out && extra_len)
        extra_out[0] = '\0';
    if (!db || !user_id)
        return hl_err_set(err, HL_EINVAL, "token: NULL argument");
    if (!kind_ok(kind) || !token_format_ok(raw))
        return hl_err_set(err, HL_EINVAL, MSG_LINK);
    token_hash(raw, hash);
    use_ctx c = {kind, hash, 0, extra_out, extra_len};
    int rc = hl_db_tx(db, use_tx, &c, err);
    if (rc != HL_OK) {
        if (extra_out && extra_len)
            extra_out[0] = '\0';
        return rc;
    }
    *user_id = c.user_id;
    return HL_OK;
}

/* ---------------------------------------------------------------- sessions */

/* The user agent is the client's to choose: it is cut and cleaned rather than refused. */
static void clean_agent(const char *in, char out[UA_MAX_BYTES + 1])
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p && o < UA_MAX_BYTES; p++)
        out[o++] = *p >= 0x20 && *p < 0x7f ? (char)*p : '?';
    out[o] = '\0';
}

int hl_session_create(hl_db *db, int64_t user_id, const char *ip, const char *user_agent,
                      char raw[HL_TOKEN_LEN + 1], hl_session *out, hl_err *err)
{
    char fresh[HL_TOKEN_LEN + 1], csrf[HL_TOKEN_LEN + 1], hash[65], now[TS_LEN];
    char ua[UA_MAX_BYTES + 1];
    int rc;
    if (!db || !raw)
        return hl_err_set(err, HL_EINVAL, "session: NULL argument");
    raw[0] = '\0';
    if (!ip)
        ip = "";
    if ((rc = check_text(ip, IP_MAX_BYTES, 0, 0, "ip", err)) != HL_OK)
        return rc;
    if ((rc = require_alive(db, user_id, err)) != HL_OK)
        return rc;
    if (!sodium_ready())
        return hl_err_set(err, HL_ERR, "session: libsodium failed to initialise");
    clean_agent(user_agent, ua);
    random_token(fresh);
    random_token(csrf);
    token_hash(fresh, hash);
    iso_time(hl_clock_now(), now);
    rc = hl_db_run(db, err, "INSERT INTO hl_sessions (id_hash, user_id, csrf, created_at, "
                            "last_seen_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   "sIsssss", hash, user_id, csrf, now, now, ip, ua);
    if (rc < 0) {
        sodium_memzero(fresh, sizeof fresh);
        return rc;
    }
    memcpy(raw, fresh, sizeof fresh);
    sodium_memzero(fresh, sizeof fresh);
    if (out) {
        memset(out, 0, sizeof *out);
        out->user_id = user_id;
        copy(out->csrf, sizeof out->csrf, csrf);
        copy(out->created_at, sizeof out->created_at, now);
        copy(out->last_seen_at, sizeof out->last_seen_at, now);
        copy(out->ip, sizeof out->ip, ip);
        copy(out->user_agent, sizeof out->user_agent, ua);
        copy(out->id_hash, sizeof out->id_hash, hash);
    }
    return HL_OK;
}

static void session_row(hl_stmt *st, hl_session *s, int with_csrf)
{
    memset(s, 0, sizeof *s);
    copy(s->id_hash, sizeof s->id_hash, hl_db_col_text(st, 0));
    s->user_id = hl_db_col_int64(st, 1);
    if (with_csrf)
        copy(s->csrf, sizeof s->csrf, hl_db_col_text(st, 2));
    copy(s->created_at, sizeof s->created_at, hl_db_col_text(st, 3));
    copy(s->last_seen_at, sizeof s->last_seen_at, hl_db_col_text(st, 4));
    copy(s->ip, sizeof s->ip, hl_db_col_text(st, 5));
    copy(s->user_agent, sizeof s->user_agent, hl_db_col_text(st, 6));
}

#define SESSION_COLS "id_hash, user_id, csrf, created_at, last_seen_at, ip, user_agent"

int hl_session_lookup(hl_db *db, const char *raw, int idle_seconds, int absolute_seconds,
                      hl_session *out, hl_err *err)
{
    char hash[65], now[TS_LEN], idle_cut[TS_LEN], abs_cut[TS_LEN], touch_cut[TS_LEN];
    hl_session s;
    if (!db)
        return hl_err_set(err, HL_EINVAL, "session: NULL database");
    if (idle_seconds <= 0 || absolute_seconds <= 0)
        return hl_err_set(err, HL_EINVAL, "session: lifetimes must be positive");
    if (!token_format_ok(raw))
        return hl_err_set(err, HL_ENOTFOUND, "session not found");
    token_hash(raw, hash);
    hl_stmt *st = hl_db_query(db, err, "SELECT " SESSION_COLS " FROM hl_sessions WHERE id_hash = ?",
                              "s", hash);
    if (!st)
        return db_code(err);
    int rc = hl_db_step(st, err);
    if (rc == HL_DB_ROW)
        session_row(st, &s, 1);
    hl_db_done(st);
    if (rc < 0)
        return rc;
    if (rc != HL_DB_ROW || sodium_memcmp(s.id_hash, hash, 64) != 0)
        return hl_err_set(err, HL_ENOTFOUND, "session not found");

    int64_t t = hl_clock_now();
    iso_time(t, now);
    iso_time(t - idle_seconds, idle_cut);
    iso_time(t - absolute_seconds, abs_cut);
    iso_time(t - SESSION_TOUCH_SECONDS, touch_cut);
    if (strcmp(s.last_seen_at, idle_cut) < 0 || strcmp(s.created_at, abs_cut) < 0) {
        rc = hl_db_run(db, err, "DELETE FROM hl_sessions WHERE id_hash = ?", "s", hash);
        return rc < 0 ? rc : hl_err_set(err, HL_ENOTFOUND, "session expired");
    }
    /* Writing on every request would turn each page view into a database write. */
    if (strcmp(s.last_seen_at, touch_cut) < 0) {
        rc = hl_db_run(db, err, "UPDATE hl_sessions SET last_seen_at = ? WHERE id_hash = ?", "ss", now,
                       hash);
        if (rc < 0)
            return rc;
        copy(s.last_seen_at, sizeof s.last_seen_at, now);
    }
    if (out)
        *out = s;
    return HL_OK;
}

int hl_session_destroy(hl_db *db, const char *raw, hl_err *err)
{
    char hash[65];
    if (!db)
        return hl_err_set(err, HL_EINVAL, "session: NULL database");
    if (!token_format_ok(raw))
        return hl_err_set(err, HL_ENOTFOUND, "session not found");
    token_hash(raw, hash);
    int rc = hl_db_run(db, err, "DELETE FROM hl_sessions WHERE id_hash = ?", "s", hash);
    if (rc < 0)
        return rc;
    return rc ? HL_OK : hl_err_set(err, HL_ENOTFOUND, "session not found");
}

int hl_session_destroy_all(hl_db *db, int64_t user_id, const char *keep_raw, hl_err *err)
{
    char hash[65] = "";
    if (!db)
        return hl_err_set(err, HL_EINVAL, "session: NULL database");
    if (keep_raw && token_format_ok(keep_raw))
        token_hash(keep_raw, hash);
    return hl_db_run(db, err, "DELETE FROM hl_sessions WHERE user_id = ? AND id_hash <> ?", "Is",
                     user_id, hash);
}

/* Lists what is stored: sessions past their lifetime stay until a lookup meets them. The CSRF
 * tokens of the listed sessions are left empty: a list is for showing, not for posting. */
int hl_session_list(hl_db *db, int64_t user_id, hl_session *out, int max, hl_err *err)
{
    if (!db || max < 0 || (max > 0 && !out))
        return hl_err_set(err, HL_EINVAL, "session list: bad argument");
    if (max == 0)
        return 0;
    hl_stmt *st = hl_db_query(db, err, "SELECT " SESSION_COLS " FROM hl_sessions WHERE user_id = ? "
                                       "ORDER BY created_at DESC, last_seen_at DESC, id_hash "
                                       "LIMIT ?", "Ii", user_id, max);
    if (!st)
        return db_code(err);
    int n = 0, rc = HL_DB_DONE;
    while (n < max && (rc = hl_db_step(st, err)) == HL_DB_ROW)
        session_row(st, &out[n++], 0);
    hl_db_done(st);
    return n < max && rc < 0 ? rc : n;
}

/* ---------------------------------------------------------------- rate limits */

typedef struct rate_ctx {
    const char *key;
    int64_t window;
    int64_t hits;
} rate_ctx;

static int rate_tx(hl_db *db, void *ud, hl_err *err)
{
    rate_ctx *c = ud;
    /* A hit in a new window starts the count again in the same row: one row per key. */
    int rc = hl_db_run(db, err,
                       "INSERT INTO hl_rate_limits (key, window_start, hits) VALUES (?, ?, 1) "
                       "ON CONFLICT (key) DO UPDATE SET "
                       "hits = CASE WHEN hl_rate_limits.window_start = excluded.window_start "
                       "THEN hl_rate_limits.hits + 1 ELSE 1 END, "
                       "window_start = excluded.window_start",
                       "sI", c->key, c->window);
    if (rc < 0)
        return rc;
    hl_stmt *st = hl_db_query(db, err, "SELECT hits FROM hl_rate_limits WHERE key = ?", "s", c->key);
    if (!st)
        return db_code(err);
    rc = hl_db_step(st, err);
    c->hits = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : 0;
    hl_db_done(st);
    return rc < 0 ? rc : HL_OK;
}

int hl_rate_allow(hl_db *db, const char *key, int window_seconds, int max, hl_err *err)
{
    return hl_rate_check(db, key, window_seconds, max, NULL, err);
}

int hl_rate_allow_address(hl_db *db, const char *prefix, const char *email, int window_seconds, int max, hl_err *err)
{
    char norm[EMAIL_MAX + 1], key[RATE_KEY_MAX + 1], hex[33];
    unsigned char h[16];
    if (!email || hl_email_normalize(email, norm, sizeof norm, NULL) != HL_OK)
        snprintf(norm, sizeof norm, "%.*s", (int)(sizeof norm - 1), email ? email : "");
    crypto_generichash(h, sizeof h, (const unsigned char *)norm, strlen(norm), NULL, 0);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(key, sizeof key, "%.40s:%s", prefix ? prefix : "addr", hex);
    return hl_rate_check(db, key, window_seconds, max, NULL, err);
}

int hl_rate_check(hl_db *db, const char *key, int window_seconds, int max, int *retry_after, hl_err *err)
{
    if (!db || !key || !*key)
        return hl_err_set(err, HL_EINVAL, "rate limit: NULL or empty key");
    if (strnlen(key, RATE_KEY_MAX + 1) > RATE_KEY_MAX)
        return hl_err_set(err, HL_EINVAL, "rate limit: key too long");
    if (window_seconds <= 0 || max <= 0)
        return hl_err_set(err, HL_EINVAL, "rate limit: window and max must be positive");
    int64_t now = hl_clock_now();
    rate_ctx c = {key, now / window_seconds * window_seconds, 0};
    int rc = hl_db_tx(db, rate_tx, &c, err);
    if (rc != HL_OK)
        return rc;
    if (retry_after)
        *retry_after = c.hits <= max ? 0 : (int)(c.window + window_seconds - now);
    return c.hits <= max;
}

int hl_accounts_purge(hl_db *db, int idle_seconds, int absolute_seconds, hl_err *err)
{
    if (!db || idle_seconds <= 0 || absolute_seconds <= 0)
        return hl_err_set(err, HL_EINVAL, "purge: bad arguments");
    int64_t t = hl_clock_now();
    char now[TS_LEN], idle_cut[TS_LEN], abs_cut[TS_LEN];
    iso_time(t, now);
    iso_time(t - idle_seconds, idle_cut);
    iso_time(t - absolute_seconds, abs_cut);
    int a = hl_db_run(db, err, "DELETE FROM hl_sessions WHERE last_seen_at < ? OR created_at < ?", "ss", idle_cut,
                      abs_cut);
    if (a < 0)
        return a;
    int b = hl_db_run(db, err, "DELETE FROM hl_user_tokens WHERE used_at IS NOT NULL OR expires_at < ?", "s", now);
    if (b < 0)
        return b;
    int c = hl_db_run(db, err, "DELETE FROM hl_rate_limits WHERE window_start < ?", "I",
                      (int64_t)(t - HL_RATE_KEEP_SECONDS));
    if (c < 0)
        return c;
    int d = hl_db_run(db, err, "DELETE FROM hl_login_failures WHERE last_failure < ?", "I",
                      (int64_t)(t - UNKNOWN_KEEP_SECONDS));
    if (d < 0)
        return d;
    return a + b + c + d;
}

/* ---------------------------------------------------------------- init */

int hl_accounts_init(hl_err *err)
{
    if (!sodium_ready())
        return hl_err_set(err, HL_ERR, "libsodium failed to initialise");
    return HL_OK;
}
