/* The shop of a distribution, product pages, the cart and the checkout page.
 *
 * What can be ordered in a distribution: the active products of the catalogs offered for it
 * (market_distribution_catalogs) whose producer confirmed taking part
 * (market_distribution_producers.status = 'confirmed'); orders are taken while the window is
 * open (status 'planned', opens_at <= now < closes_at). The cart holds counts per product for
 * one distribution: a visitor's is found by a random key in the halle_cart cookie (its hash
 * with the distribution's id is stored, never the key), a member's by user id. When a request
 * comes with both a session and the cookie, the visitor's carts become the member's (merged
 * into theirs). The checkout page posts the whole order to the orders endpoint
 * (POST /groups/SLUG/distributions/ID/order: _csrf, idem, q_PRODUCT). */
#include "plugins/market/market.h"
#include "plugins/market/csvimport.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CART_COOKIE "halle_cart"
#define CART_DAYS 30
#define COUNT_MAX 999
#define SHOP_QUERY_MAX 100
#define OTHERS_SHOWN 12

/* What can be ordered in distribution ?: products p with producer pr and category cat. */
#define OFFERED                                                                                                \
    " FROM market_distribution_catalogs dc"                                                                    \
    " JOIN market_catalogs c ON c.id = dc.catalog_id"                                                          \
    " JOIN market_distribution_producers dp ON dp.distribution_id = dc.distribution_id"                        \
    " AND dp.producer_id = c.producer_id AND dp.status = 'confirmed'"                                          \
    " JOIN market_products p ON p.catalog_id = c.id AND p.active = 1"                                          \
    " JOIN market_producers pr ON pr.id = p.producer_id"                                                        \
    " LEFT JOIN market_categories cat ON cat.id = p.category_id"                                               \
    " WHERE dc.distribution_id = ?"

#define PRODUCT_COLS                                                                                           \
    "p.id, p.name, p.unit, p.quantity, p.price_cents, p.vat_rate_bp, p.organic, p.stock, "                     \
    "CASE WHEN p.image IS NULL THEN 0 ELSE 1 END, pr.id, pr.business_name, pr.slug, p.description"

typedef struct dist {
    int64_t id, group_id, min_cents, max_cents;
    char slug[128], group_name[256], status[16], starts[40], ends[40], opens[40], closes[40], policy[16],
        theme[64], place[256], place_town[128];
    int open, not_yet, over;
} dist;

/* ---- small helpers --------------------------------------------------------------------------- */

static const char *col(halle_stmt *st, int i)
{
    const char *s = mk_api->db_col_text(st, i);
    return s ? s : "";
}

static void copy(char *out, size_t size, const char *s)
{
    snprintf(out, size, "%s", s ? s : "");
}

static int server_error(halle_request *r)
{
    mk_api->log(mk_host, HALLE_LOG_ERROR, "shop: %s", mk_api->last_error(mk_host));
    return mk_error(r, 500, NULL);
}

/* Percent-encoding of a query value. */
static void url_encode(const char *s, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && o + 4 < size; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
            *p == '_' || *p == '.')
            out[o++] = (char)*p;
        else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

static const char *search_text(halle_request *r, char *out, size_t size)
{
    return mk_search_text(r, out, size, SHOP_QUERY_MAX);
}

/* A category slug of the query ([a-z0-9-], else ""). */
static const char *category_param(halle_request *r, char *out, size_t size)
{
    const char *c = mk_param(r, "category");
    size_t n = 0;
    for (; c[n] && n + 1 < size; n++)
        if (!((c[n] >= 'a' && c[n] <= 'z') || (c[n] >= '0' && c[n] <= '9') || c[n] == '-'))
            break;
    if (c[n]) /* anything else: no category */
        n = 0;
    memcpy(out, c, n);
    out[n] = '\0';
    return out;
}

static json_t *price_json(halle_request *r, long long cents)
{
    char buf[48];
    mk_price_text(mk_api->req_lang(r), cents, buf, sizeof buf);
    return json_string(buf);
}

/* "0,5 kg", and the price per kg or litre when the unit is a weight or a volume. */
static void product_fields(halle_request *r, json_t *o, const char *unit, double qty, long long cents)
{
    char num[32], buf[96];
    if (!(qty > 0 && qty < 1e9))
        qty = 1;
    mk_decimal_text(mk_api->req_lang(r), qty, num, sizeof num);
    snprintf(buf, sizeof buf, "%s %s", num, mk_api->tr(r, mk_unit_label(unit)));
    mk_set_str(o, "quantity", buf);
    double base = !strcmp(unit, "kg") || !strcmp(unit, "l") ? qty : !strcmp(unit, "g") || !strcmp(unit, "ml") ? qty / 1000 : 0;
    if (base > 0) {
        char price[48];
        mk_price_text(mk_api->req_lang(r), (long long)((double)cents / base + 0.5), price, sizeof price);
        snprintf(buf, sizeof buf, "%s / %s", price,
                 !strcmp(unit, "kg") || !strcmp(unit, "g") ? mk_api->tr(r, "kg") : mk_api->tr(r, "litre"));
        mk_set_str(o, "price_per", buf);
    }
}

/* One product row (PRODUCT_COLS) as a card. */
static json_t *product_json(halle_request *r, halle_stmt *st)
{
    json_t *o = json_object();
    int64_t id = mk_api->db_col_int(st, 0);
    long long cents = mk_api->db_col_int(st, 4);
    json_object_set_new(o, "id", json_integer(id));
    mk_set_str(o, "name", col(st, 1));
    json_object_set_new(o, "price_cents", json_integer(cents));
    json_object_set_new(o, "price", price_json(r, cents));
    product_fields(r, o, col(st, 2), mk_api->db_col_double(st, 3), cents);
    char vat[16];
    mk_vat_text(mk_api->req_lang(r), (int)mk_api->db_col_int(st, 5), vat, sizeof vat);
    mk_set_str(o, "vat", vat);
    json_object_set_new(o, "organic", json_boolean(mk_api->db_col_int(st, 6) != 0));
    if (!mk_api->db_col_is_null(st, 7)) {
        double stock = mk_api->db_col_double(st, 7);
        char s[32];
        mk_decimal_text(mk_api->req_lang(r), stock, s, sizeof s);
        mk_set_str(o, "stock", s);
        json_object_set_new(o, "stock_max", json_integer(stock > COUNT_MAX ? COUNT_MAX : stock < 0 ? 0 : (json_int_t)stock));
        if (stock < 1)
            json_object_set_new(o, "sold_out", json_true());
    }
    json_object_set_new(o, "has_image", json_boolean(mk_api->db_col_int(st, 8) != 0));
    json_object_set_new(o, "producer_id", json_integer(mk_api->db_col_int(st, 9)));
    mk_set_str(o, "producer", col(st, 10));
    mk_set_str(o, "producer_slug", col(st, 11));
    mk_set_str(o, "description", col(st, 12));
    return o;
}

/* ---- the distribution ----------------------------------------------------------------------- */

/* The route's distribution in the route's group; 0 when there is none, -1 on error. */
static int load_dist(halle_request *r, dist *d)
{
    memset(d, 0, sizeof *d);
    int64_t id = mk_id(mk_api->req_route_param(r, "id"));
    const char *slug = mk_api->req_route_param(r, "slug");
    if (!id || !slug)
        return 0;
    halle_stmt *st = mk_api->db_query(
        mk_host,
        "SELECT d.id, d.group_id, g.slug, g.name, d.status, d.starts_at, d.ends_at, d.opens_at, d.closes_at, "
        "g.join_policy, COALESCE(g.theme, ''), COALESCE(pl.name, ''), COALESCE(pl.town, ''), g.min_order_cents, "
        "g.max_order_cents FROM market_distributions d JOIN market_groups g ON g.id = d.group_id "
        "LEFT JOIN market_places pl ON pl.id = d.place_id WHERE d.id = ? AND g.slug = ?",
        "Is", id, slug);
    if (!st)
        return -1;
    int rc = mk_api->db_step(st);
    if (rc == HALLE_DB_ROW) {
        d->id = mk_api->db_col_int(st, 0);
        d->group_id = mk_api->db_col_int(st, 1);
        copy(d->slug, sizeof d->slug, col(st, 2));
        copy(d->group_name, sizeof d->group_name, col(st, 3));
        copy(d->status, sizeof d->status, col(st, 4));
        copy(d->starts, sizeof d->starts, col(st, 5));
        copy(d->ends, sizeof d->ends, col(st, 6));
        copy(d->opens, sizeof d->opens, col(st, 7));
        copy(d->closes, sizeof d->closes, col(st, 8));
        copy(d->policy, sizeof d->policy, col(st, 9));
        copy(d->theme, sizeof d->theme, col(st, 10));
        copy(d->place, sizeof d->place, col(st, 11));
        copy(d->place_town, sizeof d->place_town, col(st, 12));
        d->min_cents = mk_api->db_col_int(st, 13);
        d->max_cents = mk_api->db_col_int(st, 14);
    }
    mk_api->db_done(st);
    if (rc != HALLE_DB_ROW)
        return rc < 0 ? -1 : 0;
    char now[32];
    mk_now(now, sizeof now);
    int planned = !strcmp(d->status, "planned");
    d->open = planned && strcmp(d->opens, now) <= 0 && strcmp(now, d->closes) < 0;
    d->not_yet = planned && strcmp(now, d->opens) < 0;
    d->over = !d->open && !d->not_yet;
    if (d->theme[0])
        mk_api->set_group_theme(r, d->theme);
    return 1;
}

/* The route's distribution; 0 when an answer was sent (404, 500). */
static int route_dist(halle_request *r, dist *d)
{
    int found = load_dist(r, d);
    if (found < 0)
        server_error(r);
    else if (!found)
        mk_error(r, 404, mk_api->tr(r, "Cette distribution n'existe pas."));
    return found > 0;
}

/* "14:30" of an ISO time. */
static json_t *time_json(const char *iso)
{
    char hm[8] = "";
    if (strlen(iso) >= 16)
        snprintf(hm, sizeof hm, "%.5s", iso + 11);
    return json_string(hm);
}

static json_t *dist_json(halle_request *r, const dist *d)
{
    char base[200];
    snprintf(base, sizeof base, "/groups/%s/distributions/%lld", d->slug, (long long)d->id);
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:b, s:b, s:b, s:b}", "id", (json_int_t)d->id, "url", base, "place",
                          d->place, "place_town", d->place_town, "open", d->open, "not_yet", d->not_yet, "over",
                          d->over, "cancelled", !strcmp(d->status, "cancelled"));
    json_object_set_new(o, "date", mk_date_json(r, d->starts));
    json_object_set_new(o, "from", time_json(d->starts));
    json_object_set_new(o, "until", time_json(d->ends));
    json_object_set_new(o, "opens_date", mk_date_json(r, d->opens));
    json_object_set_new(o, "opens_time", time_json(d->opens));
    json_object_set_new(o, "closes_date", mk_date_json(r, d->closes));
    json_object_set_new(o, "closes_time", time_json(d->closes));
    return o;
}

static json_t *group_json(const dist *d)
{
    return json_pack("{s:I, s:s, s:s}", "id", (json_int_t)d->group_id, "slug", d->slug, "name", d->group_name);
}

/* ---- the cart ------------------------------------------------------------------------------- */

/* The visitor's cart key from the cookie (64 hex digits), or NULL. */
static const char *cart_key(halle_request *r)
{
    const char *k = mk_api->req_cookie(r, CART_COOKIE);
    if (!k || strlen(k) != 64)
        return NULL;
    for (const char *p = k; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return NULL;
    return k;
}

/* What is stored for a visitor's cart of a distribution: hex SHA-256 of "KEY:ID". */
static void key_hash(const char *key, int64_t did, char hex[65])
{
    char in[96];
    int n = snprintf(in, sizeof in, "%s:%lld", key, (long long)did);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)in, (unsigned long long)n);
    sodium_bin2hex(hex, 65, h, sizeof h);
}

static void set_cart_cookie(halle_request *r, const char *value, int days)
{
    char c[256];
    int secure = !strncmp(mk_api->site_url(mk_host), "https:", 6);
    snprintf(c, sizeof c, "%s=%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Lax%s", CART_COOKIE, value,
             days * 86400, secure ? "; Secure" : "");
    mk_api->resp_header(r, "Set-Cookie", c);
}

/* The cart of the request for the distribution: 0 when there is none yet, -1 on error. */
static int64_t cart_find(halle_request *r, int64_t did)
{
    int64_t uid = mk_api->req_user(r);
    halle_stmt *st;
    if (uid) {
        st = mk_api->db_query(mk_host, "SELECT id FROM market_carts WHERE user_id = ? AND distribution_id = ? ORDER BY id LIMIT 1",
                              "II", uid, did);
    } else {
        const char *key = cart_key(r);
        if (!key)
            return 0;
        char hex[65];
        key_hash(key, did, hex);
        st = mk_api->db_query(mk_host, "SELECT id FROM market_carts WHERE key_hash = ? AND distribution_id = ?", "sI", hex, did);
    }
    if (!st)
        return -1;
    int rc = mk_api->db_step(st);
    int64_t id = rc == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : rc < 0 ? -1 : 0;
    mk_api->db_done(st);
    return id;
}

/* The cart, made when there is none (a visitor gets a key in the cookie); -1 on error. */
static int64_t cart_make(halle_request *r, int64_t did)
{
    int64_t id = cart_find(r, did);
    if (id)
        return id;
    int64_t uid = mk_api->req_user(r);
    char now[32], hex[65], key[65];
    mk_now(now, sizeof now);
    if (uid) {
        if (mk_api->db_insert(mk_host, &id,
                              "INSERT INTO market_carts (key_hash, user_id, distribution_id, created_at, updated_at) "
                              "VALUES (NULL, ?, ?, ?, ?) RETURNING id",
                              "IIss", uid, did, now, now) != HALLE_OK)
            return -1;
        return id;
    }
    const char *old = cart_key(r);
    if (old) {
        copy(key, sizeof key, old);
    } else {
        unsigned char raw[32];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(key, sizeof key, raw, sizeof raw);
    }
    key_hash(key, did, hex);
    if (mk_api->db_insert(mk_host, &id,
                          "INSERT INTO market_carts (key_hash, user_id, distribution_id, created_at, updated_at) "
                          "VALUES (?, NULL, ?, ?, ?) RETURNING id",
                          "sIss", hex, did, now, now) != HALLE_OK)
        return -1;
    set_cart_cookie(r, key, CART_DAYS); /* a new key, or the old one's life extended */
    return id;
}

/* The cart's items that can still be ordered, as cards with count and line; sets *total and
 * *items (the count of items). NULL on error. */
static json_t *cart_lines(halle_request *r, int64_t cart, int64_t did, long long *total, long long *items)
{
    *total = *items = 0;
    json_t *a = json_array();
    if (cart <= 0)
        return a;
    halle_stmt *st;
    st = mk_api->db_query(mk_host,
                          "SELECT " PRODUCT_COLS ", i.count FROM market_cart_items i"
                          " JOIN market_products p ON p.id = i.product_id AND p.active = 1"
                          " JOIN market_producers pr ON pr.id = p.producer_id"
                          " WHERE i.cart_id = ? AND EXISTS (SELECT 1 FROM market_distribution_catalogs dc"
                          " JOIN market_distribution_producers dp ON dp.distribution_id = dc.distribution_id"
                          " AND dp.status = 'confirmed' AND dp.producer_id = p.producer_id"
                          " WHERE dc.distribution_id = ? AND dc.catalog_id = p.catalog_id)"
                          " ORDER BY pr.business_name, pr.id, p.name, p.id",
                          "II", cart, did);
    int rc = HALLE_DB_DONE;
    while (st && a && (rc = mk_api->db_step(st)) == HALLE_DB_ROW) {
        json_t *o = product_json(r, st);
        long long count = mk_api->db_col_int(st, 13), cents = mk_api->db_col_int(st, 4);
        json_object_set_new(o, "count", json_integer(count));
        json_object_set_new(o, "line_cents", json_integer(count * cents));
        json_object_set_new(o, "line", price_json(r, count * cents));
        json_object_set_new(o, "vat_rate_bp", json_integer(mk_api->db_col_int(st, 5)));
        *total += count * cents;
        *items += count;
        json_array_append_new(a, o);
    }
    mk_api->db_done(st);
    if (!st || rc < 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* The visitor's carts (cookie) become the user's: merged into the user's cart of the same
 * distribution, the visitor's counts winning. Only the distributions still taking orders
 * matter. */
typedef struct merge_job {
    const char *key;
    int64_t uid;
    char now[32];
} merge_job;

static int merge_tx(halle_host *h, void *ud)
{
    (void)h;
    merge_job *j = ud;
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT id FROM market_distributions WHERE status = 'planned' AND closes_at > ? "
                                      "ORDER BY id LIMIT 10000",
                                      "s", j->now);
    json_t *ids = st ? mk_api->rows_json(st) : NULL;
    mk_api->db_done(st);
    if (!ids)
        return HALLE_ERROR;
    size_t i;
    json_t *row;
    int rc = HALLE_OK;
    json_array_foreach(ids, i, row) {
        int64_t did = json_integer_value(json_object_get(row, "id"));
        char hex[65];
        key_hash(j->key, did, hex);
        st = mk_api->db_query(mk_host, "SELECT id FROM market_carts WHERE key_hash = ?", "s", hex);
        int64_t visitor = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
        mk_api->db_done(st);
        if (!visitor)
            continue;
        st = mk_api->db_query(mk_host,
                              "SELECT id FROM market_carts WHERE user_id = ? AND distribution_id = ? ORDER BY id LIMIT 1",
                              "II", j->uid, did);
        int64_t mine = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
        mk_api->db_done(st);
        if (!mine) {
            if (mk_api->db_run(mk_host, "UPDATE market_carts SET key_hash = NULL, user_id = ?, updated_at = ? WHERE id = ?",
                               "IsI", j->uid, j->now, visitor) < 0)
                rc = HALLE_ERROR;
        } else if (mk_api->db_run(mk_host,
                                  "INSERT INTO market_cart_items (cart_id, product_id, count) "
                                  "SELECT ?, product_id, count FROM market_cart_items WHERE cart_id = ? "
                                  "ON CONFLICT (cart_id, product_id) DO UPDATE SET count = excluded.count",
                                  "II", mine, visitor) < 0 ||
                   mk_api->db_run(mk_host, "DELETE FROM market_cart_items WHERE cart_id = ?", "I", visitor) < 0 ||
                   mk_api->db_run(mk_host, "DELETE FROM market_carts WHERE id = ?", "I", visitor) < 0 ||
                   mk_api->db_run(mk_host, "UPDATE market_carts SET updated_at = ? WHERE id = ?", "sI", j->now, mine) < 0) {
            rc = HALLE_ERROR;
        }
        if (rc != HALLE_OK)
            break;
    }
    json_decref(ids);
    return rc;
}

/* request.before: a request with a session and a visitor's cart cookie (just logged in or
 * signed up): the carts become the user's, and the cookie is dropped. */
static int merge_hook(void *ud, halle_hook_call *c)
{
    (void)ud;
    halle_request *r = mk_api->call_request(c);
    if (!r || !mk_api->req_user(r))
        return HALLE_HOOK_CONTINUE;
    const char *key = cart_key(r);
    if (!key)
        return HALLE_HOOK_CONTINUE;
    merge_job j = {.key = key, .uid = mk_api->req_user(r)};
    mk_now(j.now, sizeof j.now);
    if (mk_api->db_tx(mk_host, merge_tx, &j) != HALLE_OK) {
        mk_api->log(mk_host, HALLE_LOG_WARN, "cart not merged: %s", mk_api->last_error(mk_host));
        return HALLE_HOOK_CONTINUE; /* kept for the next request */
    }
    set_cart_cookie(r, "", 0);
    return HALLE_HOOK_CONTINUE;
}

/* ui.navigation: a link to the checkout of the member's cart, when it holds something. */
static int nav_cart(void *ud, halle_hook_call *c)
{
    (void)ud;
    json_t *nav = mk_api->call_value(c);
    halle_request *r = mk_api->call_request(c);
    int64_t uid = r ? mk_api->req_user(r) : 0;
    if (!json_is_array(nav) || !uid)
        return HALLE_HOOK_CONTINUE;
    char now[32];
    mk_now(now, sizeof now);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT d.id, g.slug, sum(i.count) FROM market_carts c "
                                      "JOIN market_cart_items i ON i.cart_id = c.id "
                                      "JOIN market_distributions d ON d.id = c.distribution_id "
                                      "JOIN market_groups g ON g.id = d.group_id "
                                      "WHERE c.user_id = ? AND d.status = 'planned' AND d.closes_at > ? "
                                      "GROUP BY d.id, g.slug, d.starts_at ORDER BY d.starts_at, d.id LIMIT 1",
                                      "Is", uid, now);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char href[200], label[120];
        snprintf(href, sizeof href, "/groups/%s/distributions/%lld/checkout", col(st, 1), (long long)mk_api->db_col_int(st, 0));
        snprintf(label, sizeof label, "%s (%lld)", mk_api->tr(r, "Panier"), (long long)mk_api->db_col_int(st, 2));
        json_array_append_new(nav, json_pack("{s:s, s:s}", "href", href, "label", label));
    }
    mk_api->db_done(st);
    return HALLE_HOOK_CONTINUE;
}

/* market.carts_purge (daily): carts are of no use once their distribution stopped taking
 * orders (closed, cancelled, or past its closing time), nor a visitor's left untouched longer
 * than its cookie lives. */
static int carts_purge(halle_host *h, const char *payload, void *ud)
{
    (void)payload, (void)ud;
    char now[32], stale[32];
    mk_now(now, sizeof now);
    time_t t = (time_t)(mk_time() - (int64_t)CART_DAYS * 86400);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stale, sizeof stale, "%Y-%m-%dT%H:%M:%SZ", &tm);
    static const char *const gone =
        "SELECT c.id FROM market_carts c JOIN market_distributions d ON d.id = c.distribution_id "
        "WHERE d.status <> 'planned' OR d.closes_at <= ? OR (c.key_hash IS NOT NULL AND c.updated_at < ?)";
    char items[400], carts[400];
    snprintf(items, sizeof items, "DELETE FROM market_cart_items WHERE cart_id IN (%s)", gone);
    snprintf(carts, sizeof carts, "DELETE FROM market_carts WHERE id IN (%s)", gone);
    if (mk_api->db_run(h, items, "ss", now, stale) < 0 || mk_api->db_run(h, carts, "ss", now, stale) < 0) {
        mk_api->log(h, HALLE_LOG_ERROR, "carts not purged: %s", mk_api->last_error(h));
        return HALLE_ERROR;
    }
    return HALLE_OK;
}

/* ---- the shop --------------------------------------------------------------------------------- */

#define SHOP_FILTER " AND (? = '' OR p.name_folded LIKE ? ESCAPE '\\' OR p.description_folded LIKE ? ESCAPE '\\')" \
                    " AND (? = '' OR cat.slug = ? OR cat.parent_id IN (SELECT id FROM market_categories WHERE slug = ?))"

/* The shop page; error (may be NULL) is shown next to product error_pid. */
static int shop_page(halle_request *r, const dist *d, int64_t error_pid, const char *error, int status)
{
    char q[SHOP_QUERY_MAX + 1], cat[64], like[2 * SHOP_QUERY_MAX + 4];
    search_text(r, q, sizeof q);
    category_param(r, cat, sizeof cat);
    if (mk_like_pattern(q, like, sizeof like) < 0)
        q[0] = '\0', mk_like_pattern("", like, sizeof like);
    int page = mk_page(r);
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT count(*)" OFFERED SHOP_FILTER, "Issssss", d->id, q, like, like, cat,
                                      cat, cat);
    long long total = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : -1;
    mk_api->db_done(st);
    if (total < 0)
        return server_error(r);
    int64_t cart = cart_find(r, d->id);
    long long cart_total, cart_items;
    json_t *lines = cart_lines(r, cart, d->id, &cart_total, &cart_items);
    if (!lines)
        return server_error(r);
    json_t *in_cart = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(lines, i, v) {
        char k[24];
        snprintf(k, sizeof k, "%lld", (long long)json_integer_value(json_object_get(v, "id")));
        json_object_set(in_cart, k, json_object_get(v, "count"));
    }
    st = mk_api->db_query(mk_host,
                          "SELECT " PRODUCT_COLS OFFERED SHOP_FILTER
                          " ORDER BY p.name_folded, p.name, p.id LIMIT ? OFFSET ?",
                          "Issssssii", d->id, q, like, like, cat, cat, cat, MK_PER_PAGE, (page - 1) * MK_PER_PAGE);
    json_t *products = json_array();
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        json_t *o = product_json(r, st);
        char k[24];
        int64_t pid = json_integer_value(json_object_get(o, "id"));
        snprintf(k, sizeof k, "%lld", (long long)pid);
        json_t *n = json_object_get(in_cart, k);
        json_object_set_new(o, "in_cart", json_integer(n ? json_integer_value(n) : 0));
        json_object_set_new(o, "value", json_integer(n ? json_integer_value(n) : 1));
        if (error && pid == error_pid)
            mk_set_str(o, "error", error);
        json_array_append_new(products, o);
    }
    mk_api->db_done(st);
    json_decref(in_cart);
    /* The categories that have products here (a subcategory counts for its parent too). */
    st = mk_api->db_query(mk_host,
                          "SELECT k.slug, k.name, count(*) FROM market_categories k WHERE k.id IN ("
                          "SELECT COALESCE(cat.parent_id, cat.id)" OFFERED ") GROUP BY k.slug, k.name ORDER BY k.name LIMIT 100",
                          "I", d->id);
    json_t *cats = json_array();
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        json_t *o = json_object();
        mk_set_str(o, "slug", col(st, 0));
        mk_set_str(o, "name", mk_api->tr(r, col(st, 1)));
        json_object_set_new(o, "current", json_boolean(!strcmp(cat, col(st, 0))));
        json_array_append_new(cats, o);
    }
    mk_api->db_done(st);
    char base[200], qe[3 * SHOP_QUERY_MAX + 1], extra[400];
    snprintf(base, sizeof base, "/groups/%s/distributions/%lld", d->slug, (long long)d->id);
    url_encode(q, qe, sizeof qe);
    snprintf(extra, sizeof extra, "q=%s&category=%s", qe, cat);
    json_t *pag = mk_pagination(page, total, q);
    json_t *ctx = json_pack("{s:o, s:o, s:s, s:s, s:o, s:o, s:b, s:o, s:s, s:s}", "dist", dist_json(r, d), "group",
                            group_json(d), "q", q, "category", cat, "products", products, "categories", cats,
                            "all_categories", cat[0] == '\0', "pagination", pag ? pag : json_object(), "base", base,
                            "extra", extra);
    json_object_set_new(ctx, "has_products", json_boolean(json_array_size(products) > 0));
    json_object_set_new(ctx, "has_categories", json_boolean(json_array_size(cats) > 0));
    json_object_set_new(ctx, "cart", json_pack("{s:o, s:b, s:I, s:I, s:o}", "lines", lines, "has_lines",
                                               json_array_size(lines) > 0, "items", (json_int_t)cart_items,
                                               "total_cents", (json_int_t)cart_total, "total", price_json(r, cart_total)));
    if (error && !error_pid)
        mk_set_str(ctx, "error", error);
    const char *done = mk_param(r, "done");
    if (!strcmp(done, "added"))
        mk_set_str(ctx, "notice", mk_api->tr(r, "Panier mis à jour."));
    if (d->open) /* the cart's forms (a visitor gets a token with them) */
        mk_set_str(ctx, "csrf", mk_api->req_csrf(r));
    mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/shop/shop", ctx);
    json_decref(ctx);
    return rc;
}

static int shop_get(halle_request *r, void *ud)
{
    (void)ud;
    dist d;
    if (!route_dist(r, &d))
        return HALLE_OK;
    return shop_page(r, &d, 0, NULL, 200);
}

/* POST .../cart: product=ID&count=N (0 removes it), back=checkout to return there; q, category
 * and page keep the shop's list. */
static int cart_post(halle_request *r, void *ud)
{
    (void)ud;
    dist d;
    if (!route_dist(r, &d))
        return HALLE_OK;
    int64_t pid = mk_id(mk_param(r, "product"));
    const char *cs = mk_param(r, "count");
    char *end = NULL;
    long count = strtol(cs, &end, 10);
    if (mk_param(r, "remove")[0])
        count = 0, end = (char *)"";
    if (!d.open)
        return shop_page(r, &d, 0,
                         d.not_yet ? mk_api->tr(r, "Les commandes ne sont pas encore ouvertes pour cette distribution.")
                                   : mk_api->tr(r, "Les commandes sont closes pour cette distribution."),
                         409);
    if (!*cs && !mk_param(r, "remove")[0])
        end = (char *)"x";
    if (!end || *end || count < 0 || count > COUNT_MAX)
        return shop_page(r, &d, pid, mk_api->tr(r, "Indiquez un nombre entre 0 et 999."), 422);
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT p.stock, p.name" OFFERED " AND p.id = ?", "II", d.id, pid);
    int rc = st ? mk_api->db_step(st) : -1;
    int tracked = rc == HALLE_DB_ROW && !mk_api->db_col_is_null(st, 0);
    double stock = tracked ? mk_api->db_col_double(st, 0) : 0;
    mk_api->db_done(st);
    if (rc < 0)
        return server_error(r);
    if (rc != HALLE_DB_ROW)
        return shop_page(r, &d, 0, mk_api->tr(r, "Ce produit n'est pas proposé pour cette distribution."), 422);
    if (count > 0 && tracked && (double)count > stock) {
        char msg[200], s[32];
        mk_decimal_text(mk_api->req_lang(r), stock < 0 ? 0 : stock, s, sizeof s);
        snprintf(msg, sizeof msg, mk_api->tr(r, "Il n'en reste que %s."), s);
        return shop_page(r, &d, pid, msg, 422);
    }
    int64_t cart = count > 0 ? cart_make(r, d.id) : cart_find(r, d.id);
    if (cart < 0)
        return server_error(r);
    char now[32];
    mk_now(now, sizeof now);
    if (cart > 0) {
        int w = count > 0 ? mk_api->db_run(mk_host,
                                           "INSERT INTO market_cart_items (cart_id, product_id, count) VALUES (?, ?, ?) "
                                           "ON CONFLICT (cart_id, product_id) DO UPDATE SET count = excluded.count",
                                           "IIi", cart, pid, (int)count)
                          : mk_api->db_run(mk_host, "DELETE FROM market_cart_items WHERE cart_id = ? AND product_id = ?",
                                           "II", cart, pid);
        if (w < 0 || mk_api->db_run(mk_host, "UPDATE market_carts SET updated_at = ? WHERE id = ?", "sI", now, cart) < 0)
            return server_error(r);
    }
    char url[700], qe[3 * SHOP_QUERY_MAX + 1], cat[64], q[SHOP_QUERY_MAX + 1];
    if (!strcmp(mk_param(r, "back"), "checkout")) {
        snprintf(url, sizeof url, "/groups/%s/distributions/%lld/checkout", d.slug, (long long)d.id);
    } else {
        url_encode(search_text(r, q, sizeof q), qe, sizeof qe);
        category_param(r, cat, sizeof cat);
        snprintf(url, sizeof url, "/groups/%s/distributions/%lld?done=added&q=%s&category=%s&page=%d#p-%lld", d.slug,
                 (long long)d.id, qe, cat, mk_page(r), (long long)pid);
    }
    return mk_api->resp_redirect(r, url);
}

/* ---- the checkout ------------------------------------------------------------------------------ */

static int membership_active(int64_t gid, int64_t uid, char *status, size_t size)
{
    status[0] = '\0';
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT status FROM market_members WHERE group_id = ? AND user_id = ?", "II",
                                      gid, uid);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW)
        copy(status, size, col(st, 0));
    mk_api->db_done(st);
    return !strcmp(status, "active");
}

static int checkout_get(halle_request *r, void *ud)
{
    (void)ud;
    dist d;
    if (!route_dist(r, &d))
        return HALLE_OK;
    int64_t cart = cart_find(r, d.id), uid = mk_api->req_user(r);
    long long subtotal, items;
    json_t *lines = cart < 0 ? NULL : cart_lines(r, cart, d.id, &subtotal, &items);
    if (!lines)
        return server_error(r);
    /* per producer, and VAT per rate (prices include VAT: VAT = amount * rate / (1 + rate)) */
    json_t *producers = json_array(), *by_rate = json_object(), *order = json_array();
    json_t *cur = NULL;
    int64_t cur_pid = -1;
    long long cur_total = 0;
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l) {
        int64_t pid = json_integer_value(json_object_get(l, "producer_id"));
        long long line = json_integer_value(json_object_get(l, "line_cents"));
        if (pid != cur_pid) {
            if (cur)
                json_object_set_new(cur, "total", price_json(r, cur_total));
            cur = json_pack("{s:I, s:s, s:s, s:[]}", "id", (json_int_t)pid, "name",
                            json_string_value(json_object_get(l, "producer")), "slug",
                            json_string_value(json_object_get(l, "producer_slug")), "lines");
            json_array_append_new(producers, cur);
            cur_pid = pid;
            cur_total = 0;
        }
        json_array_append(json_object_get(cur, "lines"), l);
        cur_total += line;
        char k[24];
        snprintf(k, sizeof k, "%lld", (long long)json_integer_value(json_object_get(l, "vat_rate_bp")));
        json_t *sum = json_object_get(by_rate, k);
        json_object_set_new(by_rate, k, json_integer((sum ? json_integer_value(sum) : 0) + line));
        json_array_append_new(order, json_pack("{s:I, s:I}", "product_id", json_integer_value(json_object_get(l, "id")),
                                               "count", json_integer_value(json_object_get(l, "count"))));
    }
    if (cur)
        json_object_set_new(cur, "total", price_json(r, cur_total));
    json_t *vat = json_array();
    long long vat_total = 0;
    const char *k;
    json_t *sum;
    json_object_foreach(by_rate, k, sum) {
        int bp = atoi(k);
        long long amount = json_integer_value(sum), tax = (amount * bp + (10000 + bp) / 2) / (10000 + bp);
        char rate[16];
        mk_vat_text(mk_api->req_lang(r), bp, rate, sizeof rate);
        vat_total += tax;
        json_array_append_new(vat, json_pack("{s:s, s:I, s:o, s:o}", "rate", rate, "rate_bp", (json_int_t)bp, "base",
                                             price_json(r, amount), "vat", price_json(r, tax)));
    }
    json_decref(by_rate);
    /* market.cart.totals: plugins add adjustments (fees, discounts) to the totals */
    json_t *totals = json_pack("{s:I, s:I, s:I, s:s, s:O, s:I, s:I, s:[], s:I}", "distribution_id", (json_int_t)d.id,
                               "group_id", (json_int_t)d.group_id, "user_id", (json_int_t)uid, "currency", "EUR", "lines",
                               order, "subtotal_cents", (json_int_t)subtotal, "vat_cents", (json_int_t)vat_total,
                               "adjustments", "total_cents", (json_int_t)subtotal);
    json_decref(order);
    if (totals && mk_api->run_filter(mk_host, r, "market.cart.totals", &totals) < 0) {
        json_decref(totals);
        json_decref(lines), json_decref(producers), json_decref(vat);
        return server_error(r);
    }
    long long total = subtotal;
    json_t *adjustments = json_array();
    json_array_foreach(json_object_get(totals, "adjustments"), i, l) {
        json_t *c = json_object_get(l, "cents");
        const char *label = json_string_value(json_object_get(l, "label"));
        if (!json_is_integer(c) || !label)
            continue;
        total += json_integer_value(c);
        json_array_append_new(adjustments, json_pack("{s:s, s:o}", "label", label, "amount", price_json(r, json_integer_value(c))));
    }
    json_decref(totals);
    /* what stands between the cart and an order */
    json_t *problems = json_array();
    char msg[300], a[48], b[48];
    if (d.min_cents > 0 && items && subtotal < d.min_cents) {
        mk_price_text(mk_api->req_lang(r), d.min_cents, a, sizeof a);
        mk_price_text(mk_api->req_lang(r), d.min_cents - subtotal, b, sizeof b);
        snprintf(msg, sizeof msg, mk_api->tr(r, "Le groupe demande une commande d'au moins %s : ajoutez encore %s."), a, b);
        json_array_append_new(problems, json_string(msg));
    }
    if (d.max_cents > 0 && subtotal > d.max_cents) {
        mk_price_text(mk_api->req_lang(r), d.max_cents, a, sizeof a);
        mk_price_text(mk_api->req_lang(r), subtotal - d.max_cents, b, sizeof b);
        snprintf(msg, sizeof msg, mk_api->tr(r, "Une commande ne peut pas dépasser %s dans ce groupe : retirez %s."), a, b);
        json_array_append_new(problems, json_string(msg));
    }
    char status[16] = "";
    int member = uid && membership_active(d.group_id, uid, status, sizeof status);
    unsigned char raw[16];
    char idem[33];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(idem, sizeof idem, raw, sizeof raw);
    json_t *ctx = json_pack("{s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:s}", "dist", dist_json(r, &d), "group",
                            group_json(&d), "producers", producers, "has_lines", json_array_size(lines) > 0, "lines",
                            lines, "vat", vat, "vat_total", price_json(r, vat_total), "subtotal", price_json(r, subtotal),
                            "total", price_json(r, total), "adjustments", adjustments, "idem", idem);
    json_object_set_new(ctx, "has_adjustments", json_boolean(json_array_size(adjustments) > 0));
    json_object_set_new(ctx, "problems", problems);
    json_object_set_new(ctx, "visitor", json_boolean(!uid));
    json_object_set_new(ctx, "member", json_boolean(member));
    json_object_set_new(ctx, "can_join", json_boolean(uid && !member && !status[0] && !strcmp(d.policy, "open")));
    json_object_set_new(ctx, "pending", json_boolean(uid && !member && (status[0] || strcmp(d.policy, "open"))));
    json_object_set_new(ctx, "can_order", json_boolean(member && d.open && json_array_size(problems) == 0 &&
                                                       json_array_size(json_object_get(ctx, "lines")) > 0));
    mk_set_str(ctx, "csrf", mk_api->req_csrf(r));
    int rc = mk_render(r, "market/shop/checkout", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- the product page ------------------------------------------------------------------------ */

static int product_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t id = mk_id(mk_api->req_route_param(r, "pid"));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT " PRODUCT_COLS ", COALESCE(cat.name, ''), pr.town FROM market_products p "
                                      "JOIN market_catalogs c ON c.id = p.catalog_id AND c.active = 1 "
                                      "JOIN market_producers pr ON pr.id = p.producer_id "
                                      "LEFT JOIN market_categories cat ON cat.id = p.category_id "
                                      "WHERE p.id = ? AND p.active = 1",
                                      "I", id);
    if (!st)
        return server_error(r);
    if (mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 404, mk_api->tr(r, "Ce produit n'existe pas."));
    }
    json_t *p = product_json(r, st);
    const char *cat = col(st, 13);
    mk_set_str(p, "category", cat[0] ? mk_api->tr(r, cat) : "");
    mk_set_str(p, "producer_town", col(st, 14));
    mk_api->db_done(st);
    int64_t producer = json_integer_value(json_object_get(p, "producer_id"));
    st = mk_api->db_query(mk_host,
                          "SELECT " PRODUCT_COLS " FROM market_products p "
                          "JOIN market_catalogs c ON c.id = p.catalog_id AND c.active = 1 "
                          "JOIN market_producers pr ON pr.id = p.producer_id "
                          "WHERE p.producer_id = ? AND p.active = 1 AND p.id <> ? ORDER BY p.name_folded, p.name, p.id LIMIT ?",
                          "IIi", producer, id, OTHERS_SHOWN);
    json_t *others = json_array();
    while (st && mk_api->db_step(st) == HALLE_DB_ROW)
        json_array_append_new(others, product_json(r, st));
    mk_api->db_done(st);
    json_t *ctx = json_pack("{s:o, s:o, s:b}", "product", p, "others", others, "has_others", json_array_size(others) > 0);
    int rc = mk_render(r, "market/shop/product", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- registration ---------------------------------------------------------------------------- */

#define DIST_ROUTE "/groups/(?<slug>[a-z0-9-]{1,100})/distributions/(?<id>\\d{1,15})"

int mk_shop_register(halle_host *h, const halle_api *api)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
    } routes[] = {
        {HALLE_GET | HALLE_HEAD, DIST_ROUTE, shop_get},
        {HALLE_POST, DIST_ROUTE "/cart", cart_post},
        {HALLE_GET | HALLE_HEAD, DIST_ROUTE "/checkout", checkout_get},
        {HALLE_GET | HALLE_HEAD, "/products/(?<pid>\\d{1,15})", product_get},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route(h, routes[i].methods, routes[i].pattern, routes[i].fn, NULL) != HALLE_OK)
            return HALLE_ERROR;
    if (api->declare_hook(h, "market.cart.totals", HALLE_HOOK_FILTER) != HALLE_OK ||
        api->hook(h, "request.before", 5, merge_hook, NULL) != HALLE_OK ||
        api->hook(h, "ui.navigation", 11, nav_cart, NULL) != HALLE_OK ||
        api->job(h, "carts_purge", "daily 04:10", carts_purge, NULL) != HALLE_OK)
        return HALLE_ERROR;
    return HALLE_OK;
}
