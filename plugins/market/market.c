/* The marketplace plugin (market): local groups, producers' own accounts, catalogs and
 * products, public pages and the partners' JSON API. This file holds the descriptor, init and
 * the helpers the modules share. The core's permission check (api->can) decides who may do
 * what; for catalogs and producer orders its owner is the producer's *user* id. */
#include "plugins/market/market.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const halle_api *mk_api;
halle_host *mk_host;

/* ---- helpers ------------------------------------------------------------------------------ */

/* Latin letters with diacritics that French names use, mapped to ASCII for slugs. */
static const struct {
    const char *utf8;
    const char *ascii;
} folds[] = {
    {"à", "a"}, {"â", "a"}, {"ä", "a"}, {"á", "a"}, {"ç", "c"}, {"é", "e"}, {"è", "e"}, {"ê", "e"},
    {"ë", "e"}, {"î", "i"}, {"ï", "i"}, {"í", "i"}, {"ô", "o"}, {"ö", "o"}, {"ó", "o"}, {"ù", "u"},
    {"û", "u"}, {"ü", "u"}, {"ú", "u"}, {"ÿ", "y"}, {"ñ", "n"}, {"œ", "oe"}, {"æ", "ae"},
    {"À", "a"}, {"Â", "a"}, {"Ç", "c"}, {"É", "e"}, {"È", "e"}, {"Ê", "e"}, {"Ë", "e"}, {"Î", "i"},
    {"Ï", "i"}, {"Ô", "o"}, {"Ù", "u"}, {"Û", "u"}, {"Ü", "u"}, {"Œ", "oe"}, {"Æ", "ae"},
};

void mk_slugify(const char *in, char *out, size_t len)
{
    size_t o = 0;
    int dash = 0;
    if (!len)
        return;
    size_t max = len - 1 < 60 ? len - 1 : 60;
    for (const char *p = in ? in : ""; *p && o < max;) {
        const char *add = NULL;
        size_t step = 1;
        char one[2] = {0, 0};
        if (isalnum((unsigned char)*p) && !((unsigned char)*p & 0x80)) {
            one[0] = (char)tolower((unsigned char)*p);
            add = one;
        } else {
            for (size_t i = 0; i < sizeof folds / sizeof folds[0]; i++) {
                size_t l = strlen(folds[i].utf8);
                if (!strncmp(p, folds[i].utf8, l)) {
                    add = folds[i].ascii;
                    step = l;
                    break;
                }
            }
            if (!add && ((unsigned char)*p & 0x80)) /* skip the rest of an unknown sequence */
                while (((unsigned char)p[step] & 0xc0) == 0x80)
                    step++;
        }
        if (add) {
            if (dash && o > 0 && o < max)
                out[o++] = '-';
            dash = 0;
            for (; *add && o < max; add++)
                out[o++] = *add;
        } else {
            dash = 1;
        }
        p += step;
    }
    out[o] = '\0';
    if (!o)
        snprintf(out, len, "x");
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
    return mk_api->can(r, HALLE_ACT_EDIT, HALLE_OBJ_GROUP_SETTINGS, group_id);
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
    if ((rc = mk_groups_register(h, api)) != HALLE_OK || (rc = mk_producers_register(h, api)) != HALLE_OK ||
        (rc = mk_catalog_register(h, api)) != HALLE_OK || (rc = mk_api_register(h, api)) != HALLE_OK ||
        (rc = mk_seed_register(h, api)) != HALLE_OK ||
        (rc = api->hook(h, "ui.navigation", 10, nav_entries, NULL)) != HALLE_OK) {
        api->log(h, HALLE_LOG_ERROR, "cannot register: %s", api->last_error(h));
        return HALLE_ERROR;
    }
    return HALLE_OK;
}

HALLE_PLUGIN_DESCRIPTOR = {
    HALLE_PLUGIN_HEADER,
    9,
    "market",
    "0.1.0",
    "Local groups, producers, catalogs and products: the marketplace",
    NULL,
    init,
    NULL,
};
