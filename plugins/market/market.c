/* The marketplace plugin (market): local groups, producers' own accounts, catalogs and
 * products, public pages and the partners' JSON API. This file holds the descriptor, init and
 * the helpers the modules share. The core's permission check (api->can) decides who may do
 * what; for catalogs and producer orders its owner is the producer's *user* id. */
#include "plugins/market/market.h"
#include "plugins/market/caps.h"
#include "plugins/market/csvimport.h"
#include "plugins/market/notify.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const halle_api *mk_api;
halle_host *mk_host;

/* ---- helpers ------------------------------------------------------------------------------ */

/* The SDK's folding, then everything but [a-z0-9] as one dash. */
void mk_slugify(const char *in, char *out, size_t len)
{
    char folded[256];
    size_t o = 0;
    int dash = 0;
    if (!len)
        return;
    size_t max = len - 1 < 60 ? len - 1 : 60;
    mk_api->fold(in ? in : "", folded, sizeof folded);
    for (const char *p = folded; *p && o < max; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) {
            if (dash && o > 0 && o < max)
                out[o++] = '-';
            dash = 0;
            out[o++] = *p;
        } else {
            dash = 1;
        }
    }
    out[o] = '\0';
    if (!o)
        snprintf(out, len, "x");
}

/* The searched columns of each table; each has a COLUMN_folded twin (migration 004). */
static const struct {
    const char *table;
    const char *cols[4];
} searched[] = {
    {"market_groups", {"name", "town", NULL}},
    {"market_producers", {"business_name", "town", NULL}},
    {"market_catalogs", {"name", NULL}},
    {"market_products", {"name", "ref", "description", NULL}},
    {"market_api_tokens", {"name", NULL}},
};

/* One copy of each text helper: the SDK's (include/halle/plugin.h, API version 9). */
void mk_fold(const char *in, char *out, size_t len)
{
    mk_api->fold(in, out, len);
}

int mk_text_ok(const char *s, size_t max, int multiline)
{
    return mk_api->text_valid(s, max, multiline) >= 0;
}

void mk_search_ready(void)
{
    if (!mk_host) /* not loaded (the unit tests of the helpers): no database */
        return;
    for (size_t t = 0; t < sizeof searched / sizeof searched[0]; t++)
        if (mk_fold_rows(searched[t].table, 0) != HALLE_OK)
            mk_api->log(mk_host, HALLE_LOG_WARN, "search keys of %s not filled: %s", searched[t].table,
                        mk_api->last_error(mk_host));
}

int mk_like_pattern(const char *q, char *out, size_t len)
{
    if (!len || mk_api->like_pattern(q, out, len) != HALLE_OK)
        return -1;
    mk_search_ready(); /* lists are searched and sorted by the keys */
    if (!out[0]) { /* no search text: match everything */
        if (len < 3)
            return -1;
        snprintf(out, len, "%%%%");
    }
    return 0;
}

#define FOLD_BATCH 500
#define FOLD_TEXT_MAX 8192 /* bytes of a column's text folded (descriptions are shorter) */

int mk_fold_rows(const char *table, int64_t id)
{
    size_t t = 0;
    while (t < sizeof searched / sizeof searched[0] && strcmp(searched[t].table, table))
        t++;
    if (t == sizeof searched / sizeof searched[0])
        return HALLE_ERROR;
    const char *const *cols = searched[t].cols;
    char sql[300], *folded = malloc(FOLD_TEXT_MAX);
    if (!folded)
        return HALLE_ERROR;
    int rc = HALLE_OK;
    for (;;) { /* batches of rows not yet folded (id 0), or the one row */
        int n = snprintf(sql, sizeof sql, "SELECT id");
        for (size_t c = 0; cols[c]; c++)
            n += snprintf(sql + n, sizeof sql - (size_t)n, ", %s", cols[c]);
        snprintf(sql + n, sizeof sql - (size_t)n, id ? " FROM %s WHERE id = ?" : " FROM %s WHERE %s_folded IS NULL LIMIT %d",
                 table, cols[0], FOLD_BATCH);
        halle_stmt *st = id ? mk_api->db_query(mk_host, sql, "I", id) : mk_api->db_query(mk_host, sql, "");
        json_t *rows = st ? mk_api->rows_json(st) : NULL;
        mk_api->db_done(st);
        if (!rows) {
            rc = HALLE_ERROR;
            break;
        }
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
            int64_t rid = (int64_t)json_integer_value(json_object_get(row, "id"));
            for (size_t c = 0; cols[c] && rc == HALLE_OK; c++) {
                const char *v = json_string_value(json_object_get(row, cols[c]));
                mk_api->fold(v ? v : "", folded, FOLD_TEXT_MAX);
                snprintf(sql, sizeof sql, "UPDATE %s SET %s_folded = ? WHERE id = ?", table, cols[c]);
                if (mk_api->db_run(mk_host, sql, "sI", folded, rid) < 0)
                    rc = HALLE_ERROR;
            }
        }
        size_t got = json_array_size(rows);
        json_decref(rows);
        if (id || rc != HALLE_OK || got < FOLD_BATCH)
            break;
    }
    free(folded);
    return rc;
}

json_t *mk_date_json(halle_request *r, const char *iso)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    char day[96];
    if (!iso || sscanf(iso, "%4d-%2d-%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday) != 3)
        return json_string("");
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_hour = 12;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || mk_api->format_date(mk_api->req_lang(r), (int64_t)t, day, sizeof day) != HALLE_OK)
        return json_string("");
    return json_string(day);
}

int mk_siret_valid(const char *in, char out[15])
{
    size_t n = 0;
    for (const char *p = in ? in : ""; *p; p++) {
        if (*p == ' ' || *p == '.')
            continue;
        if (!isdigit((unsigned char)*p) || n == 14)
            return 0;
        out[n++] = *p;
    }
    out[n] = '\0';
    if (n != 14)
        return 0;
    int sum = 0;
    if (!strncmp(out, "356000000", 9)) { /* La Poste: the digits add up to a multiple of 5 */
        for (int i = 0; i < 14; i++)
            sum += out[i] - '0';
        return sum % 5 == 0;
    }
    for (int i = 0; i < 14; i++) {
        int d = out[13 - i] - '0';
        if (i % 2) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    return sum % 10 == 0;
}

/* A decimal with at most two decimals ("12,50", "12.5", "1 234,5") as hundredths; -1 when it
 * is not one. Spaces and no-break spaces (thousands separators) are skipped, and so is the
 * unit the field may carry: "€" for prices, "%" for rates. */
static long long hundredths(const char *s, int max_digits, const char *unit)
{
    if (!s)
        return -1;
    long long whole = 0, frac = 0;
    int digits = 0, fdigits = 0, in_frac = 0;
    size_t ul = strlen(unit);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isdigit(c)) {
            if (in_frac) {
                if (++fdigits > 2)
                    return -1;
                frac = frac * 10 + (c - '0');
            } else {
                if (++digits > max_digits)
                    return -1;
                whole = whole * 10 + (c - '0');
            }
        } else if ((c == ',' || c == '.') && !in_frac && digits) {
            in_frac = 1;
        } else if (c == ' ' || c == '\t' || c == 0xc2 || c == 0xa0) {
            /* spaces, and no-break spaces (C2 A0) as thousands separators */
        } else if (ul && !strncmp(p, unit, ul)) {
            p += ul - 1;
        } else {
            return -1;
        }
    }
    if (!digits)
        return -1;
    return whole * 100 + (fdigits == 1 ? frac * 10 : frac);
}

long long mk_parse_price(const char *s)
{
    return hundredths(s, 9, "€");
}

int mk_parse_vat(const char *s)
{
    long long bp = hundredths(s, 3, "%");
    return bp >= 0 && bp <= 10000 ? (int)bp : -1;
}

int mk_page(halle_request *r)
{
    const char *p = mk_api->req_param(r, "page");
    long n = p ? strtol(p, NULL, 10) : 1;
    return n < 1 ? 1 : n > 100000 ? 100000 : (int)n;
}

const char *mk_query(halle_request *r)
{
    const char *q = mk_api->req_param(r, "q");
    if (!q)
        return "";
    while (*q == ' ')
        q++;
    return q;
}

const char *mk_search_text(halle_request *r, char *out, size_t size, size_t max)
{
    const char *q = mk_query(r);
    size_t n = strlen(q);
    if (n > max)
        n = max;
    if (n >= size)
        n = size - 1;
    while (n && ((unsigned char)q[n] & 0xc0) == 0x80)
        n--;
    memcpy(out, q, n);
    out[n] = '\0';
    while (n && out[n - 1] == ' ')
        out[--n] = '\0';
    if (mk_api->text_valid(out, max + 1, 0) < 0)
        out[0] = '\0';
    return out;
}

/* The core's clock (HALLE_NOW in tests), with the system's under a core older than API 8. */
int64_t mk_time(void)
{
    return mk_api->api_version >= 8 && mk_api->now ? mk_api->now(mk_host) : (int64_t)time(NULL);
}

const char *mk_now(char *buf, size_t len)
{
    time_t t = (time_t)mk_time();
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

int mk_render(halle_request *r, const char *template_name, json_t *ctx)
{
    int rc = mk_api->render(r, template_name, ctx);
    if (rc != HALLE_OK)
        return mk_api->resp_error(r, 500, NULL);
    return HALLE_OK;
}

int mk_error(halle_request *r, int status, const char *message)
{
    return mk_api->resp_error(r, status, message);
}

int mk_need_login(halle_request *r)
{
    if (mk_api->req_user(r))
        return 0;
    mk_api->resp_redirect(r, "/login");
    return 1;
}

int64_t mk_current_producer(halle_request *r)
{
    int64_t uid = mk_api->req_user(r);
    if (!uid)
        return 0;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT id FROM market_producers WHERE user_id = ?", "I", uid);
    int64_t id = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    return id;
}

int mk_is_coordinator(halle_request *r, int64_t group_id)
{
    return mk_api->can_name(r, HALLE_ACT_EDIT, "market.group_settings", group_id);
}

int mk_user_coordinates(const json_t *user, int64_t group_id)
{
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(user, "coordinates"), i, v) if (json_integer_value(v) == group_id) return 1;
    return 0;
}

/* A deleted or unknown account coordinates nothing. */
int mk_coordinates(int64_t user_id, int64_t group_id)
{
    json_t *u = mk_api->user_get(mk_host, user_id);
    int found = mk_user_coordinates(u, group_id);
    json_decref(u);
    return found;
}

int mk_coordinated_count(int64_t user_id)
{
    json_t *u = mk_api->user_get(mk_host, user_id);
    int n = (int)json_array_size(json_object_get(u, "coordinates"));
    json_decref(u);
    return n;
}

json_t *mk_pagination(int page, long long total, const char *q)
{
    long long pages = total ? (total + MK_PER_PAGE - 1) / MK_PER_PAGE : 1;
    json_t *p = json_pack("{s:i, s:I, s:I, s:s}", "page", page, "pages", (json_int_t)pages, "total",
                          (json_int_t)total, "q", q ? q : "");
    if (p && page > 1)
        json_object_set_new(p, "prev", json_integer(page - 1));
    if (p && page < pages)
        json_object_set_new(p, "next", json_integer(page + 1));
    return p;
}

/* ---- the plugin ----------------------------------------------------------------------------- */

/* ui.navigation: the groups directory for everyone; the producer's space, or the way to open
 * one, for those who are logged in. */
static int nav_entries(void *ud, halle_hook_call *c)
{
    (void)ud;
    json_t *nav = mk_api->call_value(c);
    halle_request *r = mk_api->call_request(c);
    if (!json_is_array(nav) || !r)
        return HALLE_HOOK_CONTINUE;
    json_array_append_new(nav, json_pack("{s:s, s:s}", "href", "/groups", "label", mk_api->tr(r, "Groupes")));
    if (mk_api->req_user(r)) {
        json_array_append_new(nav, json_pack("{s:s, s:s}", "href", "/orders", "label", mk_api->tr(r, "Mes commandes")));
        int producer = mk_current_producer(r) != 0;
        json_array_append_new(nav, json_pack("{s:s, s:s}", "href", producer ? "/producer" : "/producer/signup", "label",
                                             mk_api->tr(r, producer ? "Espace producteur" : "Devenir producteur")));
    }
    return HALLE_HOOK_CONTINUE;
}

static int init(halle_host *h, const halle_api *api)
{
    if (api->api_version < 9) {
        api->log(h, HALLE_LOG_ERROR, "needs plugin API 9 (halle %d)", (int)api->api_version);
        return HALLE_ERROR;
    }
    mk_api = api;
    mk_host = h;
    int rc;
    for (size_t i = 0; i < sizeof mk_caps / sizeof mk_caps[0]; i++)
        if (api->capability(h, mk_caps[i].name, mk_caps[i].rules, mk_caps[i].nrules, NULL, NULL) < 0) {
            api->log(h, HALLE_LOG_ERROR, "cannot register %s: %s", mk_caps[i].name, api->last_error(h));
            return HALLE_ERROR;
        }
    if ((rc = mk_groups_register(h, api)) != HALLE_OK || (rc = mk_producers_register(h, api)) != HALLE_OK ||
        (rc = mk_catalog_register(h, api)) != HALLE_OK || (rc = mk_api_register(h, api)) != HALLE_OK ||
        (rc = mk_seed_register(h, api)) != HALLE_OK || (rc = mk_distributions_register(h, api)) != HALLE_OK ||
        (rc = mk_shop_register(h, api)) != HALLE_OK || (rc = mk_orders_register(h, api)) != HALLE_OK ||
        (rc = mk_reports_register(h, api)) != HALLE_OK || (rc = mk_notify_register(h, api)) != HALLE_OK ||
        (rc = api->hook(h, "ui.navigation", 10, nav_entries, NULL)) != HALLE_OK) {
        api->log(h, HALLE_LOG_ERROR, "cannot register: %s", api->last_error(h));
        return HALLE_ERROR;
    }
    mk_search_ready(); /* rows written before the search keys existed (migration 004) */
    return HALLE_OK;
}

HALLE_PLUGIN_DESCRIPTOR = {
    HALLE_PLUGIN_HEADER,
    9, /* capabilities, db_insert, user_get, formatting and folding */
    "market",
    "0.1.0",
    "Local groups, producers, catalogs and products: the marketplace",
    NULL,
    init,
    NULL,
    /* manifest_json: the cookie the shop sets for a visitor's cart (plugins/market/shop.c) */
    "{\"cookies\": [{\"name\": \"halle_cart\", \"purpose\": \"Garder le panier d'un visiteur jusqu'à sa "
    "connexion ou son inscription (une clé aléatoire, dont seule l'empreinte est enregistrée)\", "
    "\"duration_days\": 30}]}",
};
