/* Marketplace: the partners' read-only JSON API (/api/v1/groups, producers, catalogs,
 * products, a distribution's report) and the bearer tokens operators issue and revoke (`halle market token ...` and
 * /admin/market/tokens). Only a token's SHA-256 is stored; answers never hold personal data. */
#include "plugins/market/market.h"
#include "plugins/market/csvimport.h"

#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define TOKEN_BYTES 32
#define TOKEN_CHARS 43 /* base64url of 32 bytes, without padding */
#define API_PER_MINUTE 600 /* requests per token per minute */
#define API_PER_MINUTE_TEXT "600"
#define TOKEN_MAX 128  /* longer bearer values cannot be ours: refused before hashing */
#define HASH_HEX (crypto_hash_sha256_BYTES * 2)
#define NAME_MAX_BYTES 100
#define Q_MAX_BYTES 200
#define PER_PAGE_DEFAULT 50
#define PER_PAGE_MAX 200
#define PAGE_MAX 100000
#define TOKENS_PATH "/admin/market/tokens"

/* ---- small helpers ---------------------------------------------------------------------- */

/* A decimal in 1..max with digits only; -1 otherwise. */
static long parse_count(const char *s, long max)
{
    long v = 0;
    if (!s || !*s || strlen(s) > 9)
        return -1;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v >= 1 && v <= max ? v : -1;
}

static int valid_slug(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= 60 || !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
            return 0;
    return n > 0;
}

static void iso_time(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* 550 basis points -> "5.5", 2000 -> "20", 210 -> "2.1", 1234 -> "12.34". */
static void vat_text(int64_t bp, char *out, size_t len)
{
    if (bp < 0 || bp > 10000)
        bp = 0;
    int whole = (int)(bp / 100), frac = (int)(bp % 100);
    if (!frac)
        snprintf(out, len, "%d", whole);
    else if (frac % 10 == 0)
        snprintf(out, len, "%d.%d", whole, frac / 10);
    else
        snprintf(out, len, "%d.%02d", whole, frac);
}

/* ---- tokens ------------------------------------------------------------------------------ */

static size_t base64url(const unsigned char *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (n - i == 2) {
        unsigned long v = (unsigned long)in[i] << 16 | (unsigned long)in[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int random_bytes(unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static void token_hash(const char *tok, size_t len, char hex[HASH_HEX + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)tok, len);
    sodium_bin2hex(hex, HASH_HEX + 1, h, sizeof h);
    sodium_memzero(h, sizeof h);
}

/* NULL when name may name a token, else why not (French, for the CLI; the page translates it). */
static const char *name_problem(const char *name)
{
    if (!name || !*name)
        return N_("Indiquez un nom pour le jeton (le partenaire qui l'utilisera).");
    if (!mk_text_ok(name, NAME_MAX_BYTES, 0))
        return N_("Le nom doit faire au plus 100 octets, sans caractère de contrôle.");
    return NULL;
}

/* Creates a token: tok receives the secret (shown once), *id its row. HALLE_OK or an error. */
static int token_create(const char *name, int64_t created_by, char tok[TOKEN_CHARS + 1], int64_t *id)
{
    unsigned char raw[TOKEN_BYTES];
    char hex[HASH_HEX + 1], now[32];
    if (random_bytes(raw, sizeof raw) != 0)
        return HALLE_ERROR;
    base64url(raw, sizeof raw, tok);
    sodium_memzero(raw, sizeof raw);
    token_hash(tok, TOKEN_CHARS, hex);
    mk_now(now, sizeof now);
    if (mk_api->db_insert(mk_host, id,
                          "INSERT INTO market_api_tokens (name, token_hash, created_by, created_at) VALUES (?, ?, ?, ?) "
                          "RETURNING id",
                          "ssIs", name, hex, created_by, now) < 0)
        return HALLE_ERROR;
    if (mk_fold_rows("market_api_tokens", *id) != HALLE_OK)
        return HALLE_ERROR;
    return HALLE_OK;
}

/* 1 revoked now, 0 already revoked, HALLE_ERROR unknown id or a database error. */
static int token_revoke(int64_t id)
{
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT revoked_at FROM market_api_tokens WHERE id = ?", "I", id);
    int rc = st ? mk_api->db_step(st) : HALLE_ERROR;
    int revoked = rc == HALLE_DB_ROW && mk_api->db_col_text(st, 0) != NULL;
    mk_api->db_done(st);
    if (rc != HALLE_DB_ROW)
        return HALLE_ERROR;
    if (revoked)
        return 0;
    char now[32];
    mk_now(now, sizeof now);
    if (mk_api->db_run(mk_host, "UPDATE market_api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", "sI",
                       now, id) < 0)
        return HALLE_ERROR;
    return 1;
}

/* ---- JSON answers ------------------------------------------------------------------------- */

/* Sends v (taking the reference); a NULL v (out of memory, a database error) is a 500. */
static int send_json(halle_request *r, int status, json_t *v)
{
    if (!v) {
        status = 500;
        v = json_pack("{s:s}", "error", "internal error");
    }
    mk_api->resp_header(r, "Cache-Control", "no-store");
    if (!v || mk_api->resp_json(r, status, v) != 0) {
        static const char body[] = "{\"error\":\"internal error\"}\n";
        mk_api->resp_status(r, 500);
        mk_api->resp_header(r, "Content-Type", "application/json");
        mk_api->resp_write(r, body, sizeof body - 1);
    }
    json_decref(v);
    return HALLE_OK;
}

static int send_error(halle_request *r, int status, const char *message)
{
    return send_json(r, status, json_pack("{s:s}", "error", message));
}

static int refuse(halle_request *r, int missing)
{
    mk_api->resp_header(r, "WWW-Authenticate",
                        missing ? "Bearer realm=\"api\"" : "Bearer realm=\"api\", error=\"invalid_token\"");
    send_error(r, 401, missing ? "missing token" : "invalid or revoked token");
    return 0;
}

/* 1 when the request carries a live token; otherwise answers 401 and returns 0. The token is
 * found by its hash (a UNIQUE index), never compared in clear. */
static int authorized(halle_request *r)
{
    const char *h = mk_api->req_header(r, "Authorization");
    while (h && (*h == ' ' || *h == '\t'))
        h++;
    if (!h || strncasecmp(h, "Bearer", 6) || (h[6] != ' ' && h[6] != '\t'))
        return refuse(r, 1);
    const char *tok = h + 7;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    if (!*tok)
        return refuse(r, 1);
    size_t n = 0;
    while (n <= TOKEN_MAX && (isalnum((unsigned char)tok[n]) || tok[n] == '-' || tok[n] == '_'))
        n++;
    if (n > TOKEN_MAX || tok[n + strspn(tok + n, " \t")] != '\0')
        return refuse(r, 0);
    char hex[HASH_HEX + 1], last[32] = "";
    token_hash(tok, n, hex);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT id, last_used_at FROM market_api_tokens "
                                      "WHERE token_hash = ? AND revoked_at IS NULL",
                                      "s", hex);
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    int64_t id = found ? mk_api->db_col_int(st, 0) : 0;
    if (found && mk_api->db_col_text(st, 1))
        snprintf(last, sizeof last, "%s", mk_api->db_col_text(st, 1));
    mk_api->db_done(st);
    if (!found)
        return refuse(r, 0);
    /* Per token, shared by every worker: a partner's runaway loop gets 429s, not the site. */
    char key[40];
    int retry = 0;
    snprintf(key, sizeof key, "token:%lld", (long long)id);
    int allowed = mk_api->rate_allow(mk_host, key, 60, API_PER_MINUTE, &retry);
    if (allowed == 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", retry > 0 ? retry : 1);
        mk_api->resp_header(r, "Retry-After", secs);
        send_error(r, 429, "too many requests: at most " API_PER_MINUTE_TEXT " a minute per token");
        return 0;
    }
    /* Written at most once a minute per token: reads stay reads under load. */
    char cutoff[32], now[32];
    time_t t = (time_t)mk_time();
    iso_time(t - 60, cutoff, sizeof cutoff);
    if (!*last || strcmp(last, cutoff) <= 0) {
        iso_time(t, now, sizeof now);
        if (mk_api->db_run(mk_host, "UPDATE market_api_tokens SET last_used_at = ? WHERE id = ?", "sI", now, id) < 0)
            mk_api->log(mk_host, HALLE_LOG_WARN, "api token %lld: cannot record its use: %s", (long long)id,
                        mk_api->last_error(mk_host));
    }
    return 1;
}

/* ---- request parameters ------------------------------------------------------------------- */

typedef struct listq {
    long page, per_page;
    char like[2 * Q_MAX_BYTES + 3]; /* LIKE pattern of ?q=, "" for none */
} listq;

/* Reads ?page=, ?per_page= and ?q=; on bad input answers 400 and returns 0. */
static int list_params(halle_request *r, listq *l)
{
    const char *p = mk_api->req_param(r, "page"), *pp = mk_api->req_param(r, "per_page");
    l->page = p && *p ? parse_count(p, PAGE_MAX) : 1;
    l->per_page = pp && *pp ? parse_count(pp, PER_PAGE_MAX) : PER_PAGE_DEFAULT;
    if (l->page < 0)
        return send_error(r, 400, "page must be a whole number from 1 to 100000"), 0;
    if (l->per_page < 0)
        return send_error(r, 400, "per_page must be a whole number from 1 to 200"), 0;
    const char *q = mk_query(r);
    if (!mk_text_ok(q, Q_MAX_BYTES, 0))
        return send_error(r, 400, "q must be UTF-8 text of at most 200 bytes"), 0;
    mk_api->like_pattern(q, l->like, sizeof l->like);
    mk_search_ready(); /* searched and sorted by the keys */
    return 1;
}

/* The id that sql (one bound slug) finds for ?name= (0 when the parameter is absent or
 * empty). On a malformed or unknown slug answers 400/404 and returns -1. */
static int64_t slug_filter(halle_request *r, const char *name, const char *sql, const char *what)
{
    const char *v = mk_api->req_param(r, name);
    if (!v || !*v)
        return 0;
    char msg[96];
    if (!valid_slug(v)) {
        snprintf(msg, sizeof msg, "%s must be a slug ([a-z0-9-], at most 60 characters)", name);
        send_error(r, 400, msg);
        return -1;
    }
    halle_stmt *st = mk_api->db_query(mk_host, sql, "s", v);
    int64_t id = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    if (!id) {
        snprintf(msg, sizeof msg, "no such %s", what);
        send_error(r, 404, msg);
        return -1;
    }
    return id;
}

#define GROUP_BY_SLUG "SELECT id FROM market_groups WHERE slug = ?"
#define PRODUCER_BY_SLUG "SELECT id FROM market_producers WHERE slug = ?"
#define CATEGORY_BY_SLUG "SELECT id FROM market_categories WHERE slug = ?"

/* ---- rows to JSON ------------------------------------------------------------------------- */

/* Column readers: SQL NULL becomes JSON null; text that jansson refuses becomes "". */
static json_t *col_str(halle_stmt *st, int c)
{
    const char *s = mk_api->db_col_text(st, c);
    if (!s)
        return json_null();
    json_t *v = json_string(s);
    return v ? v : json_string("");
}

static json_t *col_int(halle_stmt *st, int c)
{
    return mk_api->db_col_text(st, c) ? json_integer(mk_api->db_col_int(st, c)) : json_null();
}

static json_t *col_real(halle_stmt *st, int c)
{
    return mk_api->db_col_text(st, c) ? json_real(mk_api->db_col_double(st, c)) : json_null();
}

/* Fields read in column order from col0: 's' text, 'i' integer, 'r' real, 'b' boolean. */
typedef struct field {
    const char *key;
    char type;
} field;

static int put_fields(json_t *o, halle_stmt *st, int col0, const field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = col0 + (int)i;
        json_t *v = f[i].type == 's'   ? col_str(st, c)
                    : f[i].type == 'i' ? col_int(st, c)
                    : f[i].type == 'r' ? col_real(st, c)
                                       : json_boolean(mk_api->db_col_int(st, c) != 0);
        if (json_object_set_new(o, f[i].key, v) != 0)
            return -1;
    }
    return 0;
}

#define NFIELDS(f) (sizeof f / sizeof f[0])

/* Runs a count(*) query; -1 on a database error. */
static long long count_rows(halle_stmt *st)
{
    long long n = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : -1;
    mk_api->db_done(st);
    return n;
}

/* The rows of st (closed here) as an array of what fn makes of each; NULL on any failure. */
static json_t *rows_array(halle_stmt *st, json_t *(*fn)(halle_stmt *))
{
    json_t *a = st ? json_array() : NULL;
    int rc = HALLE_DB_DONE;
    while (a && (rc = mk_api->db_step(st)) == HALLE_DB_ROW)
        if (json_array_append_new(a, fn(st)) != 0) {
            json_decref(a);
            a = NULL;
        }
    if (a && rc != HALLE_DB_DONE) {
        json_decref(a);
        a = NULL;
    }
    mk_api->db_done(st);
    return a;
}

/* {"data": [...], "page", "per_page", "total"}: the answer of every list. */
static json_t *list_answer(halle_stmt *st, json_t *(*fn)(halle_stmt *), const listq *l, long long total)
{
    json_t *data = rows_array(st, fn);
    if (!data || total < 0) {
        json_decref(data);
        return NULL;
    }
    return json_pack("{s:o, s:i, s:i, s:I}", "data", data, "page", (int)l->page, "per_page", (int)l->per_page, "total",
                     (json_int_t)total);
}

/* Builds an object from a field list starting at column 0. */
static json_t *object_of(halle_stmt *st, const field *f, size_t n)
{
    json_t *o = json_object();
    if (o && put_fields(o, st, 0, f, n) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* ---- groups -------------------------------------------------------------------------------- */

#define GROUP_COLS "g.id, g.slug, g.name, g.description, g.kind, g.join_policy, g.address, g.postcode, g.town"
static const field group_fields[] = {{"id", 'i'},          {"slug", 's'},    {"name", 's'},
                                     {"description", 's'}, {"kind", 's'},    {"join_policy", 's'},
                                     {"address", 's'},     {"postcode", 's'}, {"town", 's'}};

static json_t *group_row(halle_stmt *st) { return object_of(st, group_fields, NFIELDS(group_fields)); }

static const field place_fields[] = {{"name", 's'}, {"address", 's'}, {"postcode", 's'}, {"town", 's'}};
static json_t *place_row(halle_stmt *st) { return object_of(st, place_fields, NFIELDS(place_fields)); }

static const field ref_fields[] = {{"slug", 's'}, {"name", 's'}};
static json_t *ref_row(halle_stmt *st) { return object_of(st, ref_fields, NFIELDS(ref_fields)); }

static const field pref_fields[] = {{"slug", 's'}, {"business_name", 's'}, {"town", 's'}};
static json_t *pref_row(halle_stmt *st) { return object_of(st, pref_fields, NFIELDS(pref_fields)); }

/* ? only (no ?N: PostgreSQL numbers its own $N), so a repeated value is bound again */
#define GROUP_WHERE " WHERE (? = '' OR g.name_folded LIKE ? ESCAPE '\\' OR g.town_folded LIKE ? ESCAPE '\\')"

static int groups_list(halle_request *r, void *ud)
{
    (void)ud;
    listq l;
    if (!authorized(r) || !list_params(r, &l))
        return HALLE_OK;
    long long total = count_rows(mk_api->db_query(mk_host, "SELECT count(*) FROM market_groups g" GROUP_WHERE, "sss", l.like,
                                                  l.like, l.like));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT " GROUP_COLS " FROM market_groups g" GROUP_WHERE
                                      " ORDER BY g.name_folded, g.name, g.id LIMIT ? OFFSET ?",
                                      "sssii", l.like, l.like, l.like, (int)l.per_page, (int)((l.page - 1) * l.per_page));
    return send_json(r, 200, list_answer(st, group_row, &l, total));
}

static int group_one(halle_request *r, void *ud)
{
    (void)ud;
    if (!authorized(r))
        return HALLE_OK;
    const char *slug = mk_api->req_route_param(r, "slug");
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT " GROUP_COLS " FROM market_groups g WHERE g.slug = ?", "s",
                                      slug ? slug : "");
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    json_t *g = found ? group_row(st) : NULL;
    int64_t id = found ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    if (!found)
        return send_error(r, 404, "no such group");
    if (!g)
        return send_json(r, 500, NULL);
    json_object_set_new(g, "places", rows_array(mk_api->db_query(mk_host,
                                                                 "SELECT name, address, postcode, town FROM market_places "
                                                                 "WHERE group_id = ? ORDER BY id",
                                                                 "I", id),
                                                place_row));
    json_object_set_new(g, "producers",
                        rows_array(mk_api->db_query(mk_host,
                                                    "SELECT pr.slug, pr.business_name, pr.town FROM market_group_producers gp "
                                                    "JOIN market_producers pr ON pr.id = gp.producer_id "
                                                    "WHERE gp.group_id = ? AND gp.status = 'accepted' ORDER BY pr.business_name",
                                                    "I", id),
                                   pref_row));
    if (!json_object_get(g, "places") || !json_object_get(g, "producers")) {
        json_decref(g);
        g = NULL;
    }
    return send_json(r, 200, g);
}

/* ---- producers ------------------------------------------------------------------------------ */

/* Public business fields only: no user id, e-mail, street address, VAT number or plan. */
#define PRODUCER_COLS "pr.id, pr.slug, pr.business_name, pr.siret, pr.description, pr.postcode, pr.town"
static const field producer_fields[] = {{"id", 'i'},          {"slug", 's'},     {"business_name", 's'}, {"siret", 's'},
                                        {"description", 's'}, {"postcode", 's'}, {"town", 's'}};

static json_t *producer_row(halle_stmt *st) { return object_of(st, producer_fields, NFIELDS(producer_fields)); }

#define PRODUCER_WHERE                                                                                       \
    " WHERE (? = 0 OR EXISTS (SELECT 1 FROM market_group_producers gp WHERE gp.group_id = ?"                \
    " AND gp.producer_id = pr.id AND gp.status = 'accepted'))"                                                \
    " AND (? = '' OR pr.business_name_folded LIKE ? ESCAPE '\\' OR pr.town_folded LIKE ? ESCAPE '\\')"

static int producers_list(halle_request *r, void *ud)
{
    (void)ud;
    listq l;
    if (!authorized(r) || !list_params(r, &l))
        return HALLE_OK;
    int64_t group = slug_filter(r, "group", GROUP_BY_SLUG, "group");
    if (group < 0)
        return HALLE_OK;
    long long total = count_rows(
        mk_api->db_query(mk_host, "SELECT count(*) FROM market_producers pr" PRODUCER_WHERE, "IIsss", group, group,
                         l.like, l.like, l.like));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT " PRODUCER_COLS " FROM market_producers pr" PRODUCER_WHERE
                                      " ORDER BY pr.business_name_folded, pr.business_name, pr.id LIMIT ? OFFSET ?",
                                      "IIsssii", group, group, l.like, l.like, l.like, (int)l.per_page,
                                      (int)((l.page - 1) * l.per_page));
    return send_json(r, 200, list_answer(st, producer_row, &l, total));
}

static const field catref_fields[] = {{"id", 'i'}, {"name", 's'}, {"description", 's'}, {"products", 'i'}};
static json_t *catref_row(halle_stmt *st) { return object_of(st, catref_fields, NFIELDS(catref_fields)); }

static int producer_one(halle_request *r, void *ud)
{
    (void)ud;
    if (!authorized(r))
        return HALLE_OK;
    const char *slug = mk_api->req_route_param(r, "slug");
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT " PRODUCER_COLS " FROM market_producers pr WHERE pr.slug = ?",
                                      "s", slug ? slug : "");
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    json_t *p = found ? producer_row(st) : NULL;
    int64_t id = found ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    if (!found)
        return send_error(r, 404, "no such producer");
    if (!p)
        return send_json(r, 500, NULL);
    json_object_set_new(p, "groups",
                        rows_array(mk_api->db_query(mk_host,
                                                    "SELECT g.slug, g.name FROM market_group_producers gp "
                                                    "JOIN market_groups g ON g.id = gp.group_id "
                                                    "WHERE gp.producer_id = ? AND gp.status = 'accepted' ORDER BY g.name",
                                                    "I", id),
                                   ref_row));
    json_object_set_new(p, "catalogs",
                        rows_array(mk_api->db_query(mk_host,
                                                    "SELECT c.id, c.name, c.description, (SELECT count(*) FROM market_products p "
                                                    "WHERE p.catalog_id = c.id AND p.active = 1) FROM market_catalogs c "
                                                    "WHERE c.producer_id = ? AND c.active = 1 ORDER BY c.name, c.id",
                                                    "I", id),
                                   catref_row));
    if (!json_object_get(p, "groups") || !json_object_get(p, "catalogs")) {
        json_decref(p);
        p = NULL;
    }
    return send_json(r, 200, p);
}

/* ---- catalogs -------------------------------------------------------------------------------- */

#define CATALOG_COLS                                                                                           \
    "c.id, c.name, c.description, (SELECT count(*) FROM market_products p WHERE p.catalog_id = c.id"         \
    " AND p.active = 1), pr.slug, pr.business_name, (SELECT group_concat(g.slug, ',') FROM"                  \
    " market_catalog_groups cg JOIN market_groups g ON g.id = cg.group_id WHERE cg.catalog_id = c.id)"
#define CATALOG_FROM " FROM market_catalogs c JOIN market_producers pr ON pr.id = c.producer_id"

static json_t *catalog_row(halle_stmt *st)
{
    json_t *o = object_of(st, catref_fields, NFIELDS(catref_fields));
    json_t *prod = json_object(), *groups = json_array();
    if (!o || !prod || !groups || put_fields(prod, st, 4, ref_fields, 1) ||
        json_object_set_new(prod, "business_name", col_str(st, 5))) {
        json_decref(o), json_decref(prod), json_decref(groups);
        return NULL;
    }
    /* Slugs are [a-z0-9-]: a comma cannot be part of one. */
    const char *s = mk_api->db_col_text(st, 6);
    while (s && *s) {
        size_t n = strcspn(s, ",");
        json_array_append_new(groups, json_stringn(s, n));
        s += n + (s[n] == ',');
    }
    json_object_set_new(o, "producer", prod);
    json_object_set_new(o, "groups", groups);
    return o;
}

#define CATALOG_WHERE " WHERE c.active = 1 AND (? = 0 OR c.producer_id = ?)"

static int catalogs_list(halle_request *r, void *ud)
{
    (void)ud;
    listq l;
    if (!authorized(r) || !list_params(r, &l))
        return HALLE_OK;
    int64_t producer = slug_filter(r, "producer", PRODUCER_BY_SLUG, "producer");
    if (producer < 0)
        return HALLE_OK;
    long long total = count_rows(mk_api->db_query(mk_host, "SELECT count(*)" CATALOG_FROM CATALOG_WHERE, "II", producer,
                                                  producer));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT " CATALOG_COLS CATALOG_FROM CATALOG_WHERE
                                      " ORDER BY pr.business_name, c.name, c.id LIMIT ? OFFSET ?",
                                      "IIii", producer, producer, (int)l.per_page, (int)((l.page - 1) * l.per_page));
    return send_json(r, 200, list_answer(st, catalog_row, &l, total));
}

/* A route's numeric id (the pattern allows 1 to 18 digits); 0 when out of range. */
static int64_t route_id(halle_request *r)
{
    const char *s = mk_api->req_route_param(r, "id");
    int64_t v = 0;
    for (; s && *s; s++) {
        if (!isdigit((unsigned char)*s) || v > (INT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static int catalog_one(halle_request *r, void *ud)
{
    (void)ud;
    if (!authorized(r))
        return HALLE_OK;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT " CATALOG_COLS CATALOG_FROM " WHERE c.id = ? AND c.active = 1",
                                      "I", route_id(r));
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    json_t *c = found ? catalog_row(st) : NULL;
    mk_api->db_done(st);
    return found ? send_json(r, 200, c) : send_error(r, 404, "no such catalog");
}

/* ---- products --------------------------------------------------------------------------------- */

#define PRODUCT_COLS                                                                                            \
    "p.id, p.name, p.description, p.ref, p.unit, p.quantity, p.organic, p.stock, p.catalog_id, p.updated_at,"   \
    " p.price_cents, p.vat_rate_bp, pr.slug, pr.business_name, cat.slug, cat.name"
#define PRODUCT_FROM                                                                                            \
    " FROM market_products p JOIN market_catalogs c ON c.id = p.catalog_id"                                     \
    " JOIN market_producers pr ON pr.id = p.producer_id LEFT JOIN market_categories cat ON cat.id = p.category_id"

static const field product_fields[] = {{"id", 'i'},   {"name", 's'},    {"description", 's'}, {"ref", 's'},
                                       {"unit", 's'}, {"quantity", 'r'}, {"organic", 'b'},     {"stock", 'r'},
                                       {"catalog_id", 'i'}, {"updated_at", 's'}};

static json_t *product_row(halle_stmt *st)
{
    json_t *o = object_of(st, product_fields, NFIELDS(product_fields));
    char vat[16];
    vat_text(mk_api->db_col_int(st, 11), vat, sizeof vat);
    json_t *price = json_pack("{s:I, s:s, s:s}", "price_cents", (json_int_t)mk_api->db_col_int(st, 10), "vat_rate", vat,
                              "currency", "EUR");
    json_t *prod = json_object(), *cat = NULL;
    if (prod && (json_object_set_new(prod, "slug", col_str(st, 12)) ||
                 json_object_set_new(prod, "business_name", col_str(st, 13)))) {
        json_decref(prod);
        prod = NULL;
    }
    if (mk_api->db_col_text(st, 14))
        cat = json_pack("{s:o, s:o}", "slug", col_str(st, 14), "name", col_str(st, 15));
    else
        cat = json_null();
    if (!o || !price || !prod || !cat) {
        json_decref(o), json_decref(price), json_decref(prod), json_decref(cat);
        return NULL;
    }
    json_object_set_new(o, "price", price);
    json_object_set_new(o, "producer", prod);
    json_object_set_new(o, "category", cat);
    return o;
}

/* Filters: producer, category (with its subcategories), group (catalogs offered to the group
 * by producers it accepted), text in the name or description. Only active products of active
 * catalogs are ever shown. */
#define PRODUCT_WHERE                                                                                           \
    " WHERE p.active = 1 AND c.active = 1 AND (? = 0 OR p.producer_id = ?)"                                     \
    " AND (? = 0 OR p.category_id IN (SELECT id FROM market_categories WHERE id = ? OR parent_id = ?))"         \
    " AND (? = 0 OR (EXISTS (SELECT 1 FROM market_catalog_groups cg WHERE cg.catalog_id = p.catalog_id"         \
    " AND cg.group_id = ?) AND EXISTS (SELECT 1 FROM market_group_producers gp WHERE gp.group_id = ?"           \
    " AND gp.producer_id = p.producer_id AND gp.status = 'accepted')))"                                         \
    " AND (? = '' OR p.name_folded LIKE ? ESCAPE '\\' OR p.description_folded LIKE ? ESCAPE '\\')"
/* PRODUCT_WHERE's values in order: each bound as often as it appears */
#define PRODUCT_TYPES "IIIIIIIIsss"
#define PRODUCT_ARGS(producer, category, group, like) \
    producer, producer, category, category, category, group, group, group, like, like, like

static int products_list(halle_request *r, void *ud)
{
    (void)ud;
    listq l;
    if (!authorized(r) || !list_params(r, &l))
        return HALLE_OK;
    int64_t producer = 0, category = 0, group;
    if ((group = slug_filter(r, "group", GROUP_BY_SLUG, "group")) < 0 ||
        (producer = slug_filter(r, "producer", PRODUCER_BY_SLUG, "producer")) < 0 ||
        (category = slug_filter(r, "category", CATEGORY_BY_SLUG, "category")) < 0)
        return HALLE_OK;
    long long total = count_rows(mk_api->db_query(mk_host, "SELECT count(*)" PRODUCT_FROM PRODUCT_WHERE, PRODUCT_TYPES,
                                                  PRODUCT_ARGS(producer, category, group, l.like)));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT " PRODUCT_COLS PRODUCT_FROM PRODUCT_WHERE
                                      " ORDER BY p.name_folded, p.name, p.id LIMIT ? OFFSET ?",
                                      PRODUCT_TYPES "ii", PRODUCT_ARGS(producer, category, group, l.like), (int)l.per_page,
                                      (int)((l.page - 1) * l.per_page));
    return send_json(r, 200, list_answer(st, product_row, &l, total));
}

static int product_one(halle_request *r, void *ud)
{
    (void)ud;
    if (!authorized(r))
        return HALLE_OK;
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT " PRODUCT_COLS PRODUCT_FROM " WHERE p.id = ? AND p.active = 1 AND c.active = 1",
                                      "I", route_id(r));
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    json_t *p = found ? product_row(st) : NULL;
    mk_api->db_done(st);
    return found ? send_json(r, 200, p) : send_error(r, 404, "no such product");
}

/* ---- a distribution's report ------------------------------------------------------------------- */

/* The placed orders' lines of distribution ? (and of producer ? when it is not 0). */
#define REPORT_LINES                                                                                            \
    " FROM market_order_lines l JOIN market_orders o ON o.id = l.order_id"                                      \
    " JOIN market_producers pr ON pr.id = l.producer_id"                                                        \
    " WHERE o.distribution_id = ? AND o.status = 'placed' AND (? = 0 OR l.producer_id = ?)"

static long long report_count(const char *sql, int64_t did, int64_t pid)
{
    return count_rows(mk_api->db_query(mk_host, sql, "III", did, pid, pid));
}

/* By member: one item per order; members appear by their order's number only (no names: the
 * API holds no personal data, and tokens have no scope yet). */
static json_t *report_members(int64_t did, int64_t pid, const listq *l)
{
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT o.id, sum(l.count), sum(l.line_cents)" REPORT_LINES
                                      " GROUP BY o.id ORDER BY o.id LIMIT ? OFFSET ?",
                                      "IIIii", did, pid, pid, (int)l->per_page, (int)((l->page - 1) * l->per_page));
    json_t *data = json_array();
    while (data && st && mk_api->db_step(st) == HALLE_DB_ROW)
        json_array_append_new(data, json_pack("{s:I, s:I, s:I, s:[]}", "order_id", (json_int_t)mk_api->db_col_int(st, 0), "items",
                                              (json_int_t)mk_api->db_col_int(st, 1), "amount_cents",
                                              (json_int_t)mk_api->db_col_int(st, 2), "lines"));
    mk_api->db_done(st);
    if (!st) {
        json_decref(data);
        return NULL;
    }
    size_t i;
    json_t *o;
    json_array_foreach(data, i, o) {
        halle_stmt *ls = mk_api->db_query(mk_host,
                                          "SELECT l.product_id, l.name, l.unit, l.quantity, l.count, l.price_cents, l.vat_rate_bp, "
                                          "l.line_cents, pr.slug FROM market_order_lines l JOIN market_producers pr ON "
                                          "pr.id = l.producer_id WHERE l.order_id = ? AND (? = 0 OR l.producer_id = ?) "
                                          "ORDER BY l.name, l.product_id LIMIT 1000",
                                          "III", (int64_t)json_integer_value(json_object_get(o, "order_id")), pid, pid);
        json_t *lines = json_object_get(o, "lines");
        while (ls && mk_api->db_step(ls) == HALLE_DB_ROW) {
            char vat[16];
            vat_text(mk_api->db_col_int(ls, 6), vat, sizeof vat);
            json_array_append_new(lines, json_pack("{s:I, s:o, s:o, s:o, s:I, s:I, s:s, s:I, s:o}", "product_id",
                                                   (json_int_t)mk_api->db_col_int(ls, 0), "name", col_str(ls, 1), "unit",
                                                   col_str(ls, 2), "quantity", col_real(ls, 3), "count",
                                                   (json_int_t)mk_api->db_col_int(ls, 4), "price_cents",
                                                   (json_int_t)mk_api->db_col_int(ls, 5), "vat_rate", vat, "amount_cents",
                                                   (json_int_t)mk_api->db_col_int(ls, 7), "producer", col_str(ls, 8)));
        }
        mk_api->db_done(ls);
        if (!ls) {
            json_decref(data);
            return NULL;
        }
    }
    return data;
}

/* By product: the quantities to bring. */
static json_t *report_product_row(halle_stmt *st)
{
    double qty = mk_api->db_col_double(st, 3);
    long long count = mk_api->db_col_int(st, 6);
    return json_pack("{s:I, s:o, s:o, s:o, s:{s:o, s:o}, s:I, s:f, s:I}", "product_id", (json_int_t)mk_api->db_col_int(st, 0),
                     "name", col_str(st, 1), "unit", col_str(st, 2), "quantity", col_real(st, 3), "producer", "slug",
                     col_str(st, 4), "business_name", col_str(st, 5), "count", (json_int_t)count, "total_quantity",
                     qty * (double)count, "amount_cents", (json_int_t)mk_api->db_col_int(st, 7));
}

static json_t *report_producer_row(halle_stmt *st)
{
    return json_pack("{s:{s:o, s:o}, s:I, s:I, s:I}", "producer", "slug", col_str(st, 0), "business_name", col_str(st, 1),
                     "orders", (json_int_t)mk_api->db_col_int(st, 2), "items", (json_int_t)mk_api->db_col_int(st, 3),
                     "amount_cents", (json_int_t)mk_api->db_col_int(st, 4));
}

/* {orders, items, amount_cents, vat: [{vat_rate, base_cents, vat_cents}]} */
static json_t *report_totals(int64_t did, int64_t pid)
{
    json_t *vat = json_array();
    long long amount = 0;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT l.vat_rate_bp, sum(l.line_cents)" REPORT_LINES
                                      " GROUP BY l.vat_rate_bp ORDER BY l.vat_rate_bp", "III", did, pid, pid);
    while (vat && st && mk_api->db_step(st) == HALLE_DB_ROW) {
        long long bp = mk_api->db_col_int(st, 0), cents = mk_api->db_col_int(st, 1);
        char rate[16];
        vat_text(bp, rate, sizeof rate);
        json_array_append_new(vat, json_pack("{s:s, s:I, s:I}", "vat_rate", rate, "base_cents", (json_int_t)cents, "vat_cents",
                                             (json_int_t)(cents - (cents * 10000 + (10000 + bp) / 2) / (10000 + bp))));
        amount += cents;
    }
    mk_api->db_done(st);
    long long orders = report_count("SELECT count(DISTINCT o.id)" REPORT_LINES, did, pid);
    long long items = report_count("SELECT COALESCE(sum(l.count), 0)" REPORT_LINES, did, pid);
    if (!st || !vat || orders < 0 || items < 0) {
        json_decref(vat);
        return NULL;
    }
    return json_pack("{s:I, s:I, s:I, s:o}", "orders", (json_int_t)orders, "items", (json_int_t)items, "amount_cents",
                     (json_int_t)amount, "vat", vat);
}

/* GET /api/v1/distributions/ID/report?by=member|product|producer[&producer=SLUG]: the
 * distribution's report as the coordinators see it (placed orders only), paginated. */
static int distribution_report(halle_request *r, void *ud)
{
    (void)ud;
    listq l;
    if (!authorized(r) || !list_params(r, &l))
        return HALLE_OK;
    const char *by = mk_api->req_param(r, "by");
    if (!by || !*by)
        by = "member";
    if (strcmp(by, "member") && strcmp(by, "product") && strcmp(by, "producer"))
        return send_error(r, 400, "by must be member, product or producer");
    int64_t pid = slug_filter(r, "producer", PRODUCER_BY_SLUG, "producer");
    if (pid < 0)
        return HALLE_OK;
    int64_t did = route_id(r);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT d.id, d.status, d.starts_at, d.ends_at, d.opens_at, d.closes_at, g.slug, g.name, "
                                      "p.name, p.postcode, p.town FROM market_distributions d JOIN market_groups g "
                                      "ON g.id = d.group_id LEFT JOIN market_places p ON p.id = d.place_id WHERE d.id = ?",
                                      "I", did);
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    json_t *dist = found ? json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:{s:o, s:o}, s:{s:o, s:o, s:o}}", "id",
                                     (json_int_t)mk_api->db_col_int(st, 0), "status", col_str(st, 1), "starts_at",
                                     col_str(st, 2), "ends_at", col_str(st, 3), "opens_at", col_str(st, 4), "closes_at",
                                     col_str(st, 5), "group", "slug", col_str(st, 6), "name", col_str(st, 7), "place", "name",
                                     col_str(st, 8), "postcode", col_str(st, 9), "town", col_str(st, 10))
                         : NULL;
    mk_api->db_done(st);
    if (!st)
        return send_json(r, 500, NULL);
    if (!found)
        return send_error(r, 404, "no such distribution");
    long long total;
    json_t *data;
    int offset = (int)((l.page - 1) * l.per_page);
    if (!strcmp(by, "member")) {
        total = report_count("SELECT count(DISTINCT o.id)" REPORT_LINES, did, pid);
        data = report_members(did, pid, &l);
    } else if (!strcmp(by, "product")) {
        total = report_count("SELECT count(*) FROM (SELECT l.product_id" REPORT_LINES
                             " GROUP BY l.product_id, l.name, l.quantity, l.unit) x", did, pid);
        data = rows_array(mk_api->db_query(mk_host,
                                           "SELECT l.product_id, l.name, l.unit, l.quantity, pr.slug, pr.business_name, "
                                           "sum(l.count), sum(l.line_cents)" REPORT_LINES
                                           " GROUP BY l.product_id, l.name, l.unit, l.quantity, pr.slug, pr.business_name, "
                                           "l.producer_id ORDER BY pr.business_name, l.producer_id, l.name, l.product_id "
                                           "LIMIT ? OFFSET ?",
                                           "IIIii", did, pid, pid, (int)l.per_page, offset),
                          report_product_row);
    } else {
        total = report_count("SELECT count(DISTINCT l.producer_id)" REPORT_LINES, did, pid);
        data = rows_array(mk_api->db_query(mk_host,
                                           "SELECT pr.slug, pr.business_name, count(DISTINCT o.id), sum(l.count), "
                                           "sum(l.line_cents)" REPORT_LINES
                                           " GROUP BY pr.slug, pr.business_name, l.producer_id "
                                           "ORDER BY pr.business_name, l.producer_id LIMIT ? OFFSET ?",
                                           "IIIii", did, pid, pid, (int)l.per_page, offset),
                          report_producer_row);
    }
    json_t *totals = report_totals(did, pid);
    if (!dist || !data || !totals || total < 0) {
        json_decref(dist), json_decref(data), json_decref(totals);
        return send_json(r, 500, NULL);
    }
    return send_json(r, 200, json_pack("{s:o, s:s, s:o, s:o, s:i, s:i, s:I, s:s}", "distribution", dist, "by", by, "totals",
                                       totals, "data", data, "page", (int)l.page, "per_page", (int)l.per_page, "total",
                                       (json_int_t)total, "currency", "EUR"));
}

static int api_unknown(halle_request *r, void *ud)
{
    (void)ud;
    if (!authorized(r))
        return HALLE_OK;
    return send_error(r, 404, "no such endpoint");
}

/* ---- the operators' page --------------------------------------------------------------------- */

/* 1 when the request may see the page; otherwise answers (login redirect or 403). */
static int operator_only(halle_request *r)
{
    if (mk_need_login(r))
        return 0;
    if (!mk_api->can(r, HALLE_ACT_VIEW, HALLE_OBJ_OPERATOR_PAGES, 0)) {
        mk_error(r, 403, mk_api->tr(r, "Cette page est réservée aux opérateurs."));
        return 0;
    }
    return 1;
}

static const field token_fields[] = {{"id", 'i'},         {"name", 's'},       {"created_at", 's'},
                                     {"last_used_at", 's'}, {"revoked_at", 's'}, {"created_by", 's'}};
static json_t *token_row(halle_stmt *st) { return object_of(st, token_fields, NFIELDS(token_fields)); }

static int tokens_page(halle_request *r, int status, const char *error, const char *name)
{
    int page = mk_page(r);
    const char *q = mk_query(r);
    if (!mk_text_ok(q, Q_MAX_BYTES, 0))
        q = "";
    char like[2 * Q_MAX_BYTES + 3];
    mk_api->like_pattern(q, like, sizeof like);
    mk_search_ready();
    long long total = count_rows(mk_api->db_query(
        mk_host, "SELECT count(*) FROM market_api_tokens t WHERE (? = '' OR t.name_folded LIKE ? ESCAPE '\\')", "ss", like, like));
    json_t *tokens = rows_array(
        mk_api->db_query(mk_host,
                         "SELECT t.id, t.name, t.created_at, t.last_used_at, t.revoked_at, t.created_by "
                         "FROM market_api_tokens t "
                         "WHERE (? = '' OR t.name_folded LIKE ? ESCAPE '\\') ORDER BY t.id DESC LIMIT ? OFFSET ?",
                         "ssii", like, like, MK_PER_PAGE, (page - 1) * MK_PER_PAGE),
        token_row);
    /* Who made each token: the core's user API, not its tables (0: the command line). */
    size_t ti;
    json_t *tk;
    json_array_foreach(tokens, ti, tk) {
        long long by = atoll(json_string_value(json_object_get(tk, "created_by")) ? json_string_value(json_object_get(tk, "created_by")) : "0");
        json_t *u = by > 0 ? mk_api->user_get(mk_host, by) : NULL;
        json_object_set_new(tk, "created_by", json_string(by == 0 ? mk_api->tr(r, "ligne de commande")
                                                          : u ? json_string_value(json_object_get(u, "name")) : "?"));
        json_decref(u);
    }
    if (!tokens || total < 0) {
        json_decref(tokens);
        return mk_error(r, 500, NULL);
    }
    int any = json_array_size(tokens) > 0;
    json_t *ctx = json_pack("{s:s, s:b, s:o, s:o, s:s, s:s}", "title", mk_api->tr(r, "Jetons de l'API"), "has_tokens", any,
                            "tokens", tokens, "pagination",
                            mk_pagination(page, total, q), "base", TOKENS_PATH, "name",
                            name && mk_text_ok(name, NAME_MAX_BYTES, 0) ? name : "");
    if (ctx && error)
        json_object_set_new(ctx, "error", json_string(error));
    if (!ctx)
        return mk_error(r, 500, NULL);
    mk_api->resp_status(r, status);
    mk_render(r, "market/api/tokens", ctx);
    json_decref(ctx);
    return HALLE_OK;
}

static int tokens_get(halle_request *r, void *ud)
{
    (void)ud;
    if (!operator_only(r))
        return HALLE_OK;
    return tokens_page(r, 200, NULL, NULL);
}

static int tokens_post(halle_request *r, void *ud)
{
    (void)ud;
    if (!operator_only(r))
        return HALLE_OK;
    const char *name = mk_api->req_param(r, "name");
    while (name && *name == ' ')
        name++;
    const char *bad = name_problem(name);
    if (bad)
        return tokens_page(r, 422, mk_api->tr(r, bad), name);
    char tok[TOKEN_CHARS + 1];
    int64_t id;
    if (token_create(name, mk_api->req_user(r), tok, &id) != HALLE_OK) {
        mk_api->log(mk_host, HALLE_LOG_ERROR, "cannot create an api token: %s", mk_api->last_error(mk_host));
        return mk_error(r, 500, mk_api->tr(r, "Le jeton n'a pas pu être créé."));
    }
    mk_api->log(mk_host, HALLE_LOG_INFO, "user %lld issued api token %lld", (long long)mk_api->req_user(r), (long long)id);
    json_t *ctx = json_pack("{s:s, s:s, s:I, s:s, s:s}", "title", mk_api->tr(r, "Jeton créé"), "token", tok, "id",
                            (json_int_t)id, "name", name, "base", TOKENS_PATH);
    sodium_memzero(tok, sizeof tok);
    if (!ctx)
        return mk_error(r, 500, NULL);
    /* The secret is on this page only: no cache may keep it. */
    mk_api->resp_header(r, "Cache-Control", "no-store");
    mk_api->resp_status(r, 201);
    mk_render(r, "market/api/token_created", ctx);
    json_decref(ctx);
    return HALLE_OK;
}

static int token_revoke_post(halle_request *r, void *ud)
{
    (void)ud;
    if (!operator_only(r))
        return HALLE_OK;
    int64_t id = route_id(r);
    int rc = id > 0 ? token_revoke(id) : HALLE_ERROR;
    if (rc < 0)
        return mk_error(r, 404, mk_api->tr(r, "Ce jeton n'existe pas."));
    if (rc == 1)
        mk_api->log(mk_host, HALLE_LOG_INFO, "user %lld revoked api token %lld", (long long)mk_api->req_user(r),
                    (long long)id);
    mk_api->resp_redirect(r, TOKENS_PATH);
    return HALLE_OK;
}

/* ---- command line -------------------------------------------------------------------------- */

static int cmd_token(halle_host *h, int argc, char **argv)
{
    (void)h;
    const char *sub = argc > 1 ? argv[1] : "";
    if (!strcmp(sub, "add") && argc == 3) {
        const char *bad = name_problem(argv[2]);
        if (bad) {
            fprintf(stderr, "halle: token add: %s\n", bad);
            return 1;
        }
        char tok[TOKEN_CHARS + 1];
        int64_t id;
        if (token_create(argv[2], 0, tok, &id) != HALLE_OK) {
            fprintf(stderr, "halle: token add: %s\n", mk_api->last_error(mk_host));
            return 1;
        }
        printf("token %lld created for \"%s\"; it is shown only this once, keep it safe:\n%s\n", (long long)id, argv[2],
               tok);
        sodium_memzero(tok, sizeof tok);
        return 0;
    }
    if (!strcmp(sub, "list") && argc == 2) {
        halle_stmt *st = mk_api->db_query(mk_host,
                                          "SELECT id, name, created_at, last_used_at, revoked_at FROM market_api_tokens "
                                          "ORDER BY id",
                                          NULL);
        if (!st) {
            fprintf(stderr, "halle: token list: %s\n", mk_api->last_error(mk_host));
            return 1;
        }
        printf("%-6s %-32s %-21s %-21s %s\n", "ID", "NAME", "CREATED", "LAST USED", "REVOKED");
        while (mk_api->db_step(st) == HALLE_DB_ROW) {
            const char *last = mk_api->db_col_text(st, 3), *rev = mk_api->db_col_text(st, 4);
            printf("%-6lld %-32s %-21s %-21s %s\n", (long long)mk_api->db_col_int(st, 0), mk_api->db_col_text(st, 1),
                   mk_api->db_col_text(st, 2), last ? last : "-", rev ? rev : "-");
        }
        mk_api->db_done(st);
        return 0;
    }
    if (!strcmp(sub, "revoke") && argc == 3) {
        long long id = 0;
        const char *s = argv[2];
        for (; *s && isdigit((unsigned char)*s) && id < 1000000000000LL; s++)
            id = id * 10 + (*s - '0');
        if (*s || !id) {
            fprintf(stderr, "halle: token revoke: '%s' is not a token id (see halle market token list)\n", argv[2]);
            return 2;
        }
        int rc = token_revoke(id);
        if (rc < 0) {
            fprintf(stderr, "halle: token revoke: no token %lld\n", id);
            return 1;
        }
        printf(rc ? "token %lld revoked\n" : "token %lld was already revoked\n", id);
        return 0;
    }
    fprintf(stderr, "usage: halle market token add NAME | list | revoke ID\n");
    return 2;
}

/* ---- registration ------------------------------------------------------------------------- */

int mk_api_register(halle_host *h, const halle_api *api)
{
    if (sodium_init() < 0) {
        api->log(h, HALLE_LOG_ERROR, "libsodium cannot start");
        return HALLE_ERROR;
    }
    /* The /api/v1 routes authenticate with a bearer token, never a cookie: declared so, they
     * get no session (and so no CSRF question); the token pages are the operator's own pages. */
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
        unsigned flags;
    } routes[] = {
        {HALLE_GET, "/api/v1/groups", groups_list, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/groups/(?<slug>[a-z0-9-]{1,60})", group_one, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/producers", producers_list, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/producers/(?<slug>[a-z0-9-]{1,60})", producer_one, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/catalogs", catalogs_list, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/catalogs/(?<id>[0-9]{1,18})", catalog_one, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/products", products_list, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/products/(?<id>[0-9]{1,18})", product_one, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1/distributions/(?<id>[0-9]{1,18})/report", distribution_report, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, "/api/v1(?:/.*)?", api_unknown, HALLE_ROUTE_TOKEN_AUTH},
        {HALLE_GET, TOKENS_PATH, tokens_get, 0},
        {HALLE_POST, TOKENS_PATH, tokens_post, 0},
        {HALLE_POST, TOKENS_PATH "/(?<id>[0-9]{1,18})/revoke", token_revoke_post, 0},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route_flags(h, routes[i].methods, routes[i].pattern, routes[i].flags, routes[i].fn, NULL) != HALLE_OK)
            return HALLE_ERROR;
    return api->command(h, "token", "add NAME | list | revoke ID   partners' API tokens", cmd_token);
}
