/* Orders (marketplace part 2): placing, changing and cancelling an order of a distribution
 * (POST /groups/SLUG/distributions/ID/order, POST /orders/ID/cancel), the confirmation page
 * and mail (/orders/ID), the member's orders (/orders), and the closing job that freezes a
 * distribution's orders when its window closes and mails the producers' and coordinators'
 * summaries. Every write that carries money is one durable transaction; placing is idempotent
 * (the checkout form's idem key); stock is taken with a conditional UPDATE, so two clients
 * racing for the last unit cannot both get it. Hooks: market.order.validate (filter),
 * market.order.placed / changed / cancelled and market.distribution.closed (actions). */
#include "plugins/market/orders.h"
#include "plugins/market/csvimport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ORDER_LINES_MAX 200   /* different products in one order */
#define ORDER_COUNT_MAX 999   /* items of one product */
#define CLOSE_BATCH 100       /* distributions closed by one run of the job */
#define SUMMARY_ORDERS_MAX 2000 /* members listed in a summary mail (the report has them all) */

/* ---- shared helpers (orders.h) ------------------------------------------------------------ */

void mk_sb_init(mk_sbuf *b)
{
    b->cap = 1024;
    b->n = 0;
    b->failed = 0;
    b->p = malloc(b->cap);
    if (b->p)
        b->p[0] = '\0';
    else
        b->failed = 1;
}

void mk_sb_printf(mk_sbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

void mk_sb_free(mk_sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

static void copy(char *out, size_t len, const char *s)
{
    snprintf(out, len, "%s", s ? s : "");
}

static void add_part(char *out, size_t len, const char *part, const char *sep)
{
    if (!part || !*part)
        return;
    size_t n = strlen(out);
    snprintf(out + n, len - n, "%s%s", n ? sep : "", part);
}

int mk_dist_load(int64_t id, mk_dist *d)
{
    memset(d, 0, sizeof *d);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT d.id, d.group_id, g.slug, g.name, g.theme, d.status, d.opens_at, d.closes_at, "
                                      "d.starts_at, d.ends_at, g.min_order_cents, g.max_order_cents, p.name, p.address, "
                                      "p.postcode, p.town FROM market_distributions d JOIN market_groups g ON g.id = d.group_id "
                                      "LEFT JOIN market_places p ON p.id = d.place_id WHERE d.id = ?",
                                      "I", id);
    int rc = st ? mk_api->db_step(st) : -1;
    if (rc == HALLE_DB_ROW) {
        d->id = mk_api->db_col_int(st, 0);
        d->group_id = mk_api->db_col_int(st, 1);
        copy(d->slug, sizeof d->slug, mk_api->db_col_text(st, 2));
        copy(d->group_name, sizeof d->group_name, mk_api->db_col_text(st, 3));
        copy(d->theme, sizeof d->theme, mk_api->db_col_text(st, 4));
        copy(d->status, sizeof d->status, mk_api->db_col_text(st, 5));
        copy(d->opens_at, sizeof d->opens_at, mk_api->db_col_text(st, 6));
        copy(d->closes_at, sizeof d->closes_at, mk_api->db_col_text(st, 7));
        copy(d->starts_at, sizeof d->starts_at, mk_api->db_col_text(st, 8));
        copy(d->ends_at, sizeof d->ends_at, mk_api->db_col_text(st, 9));
        d->min_cents = mk_api->db_col_int(st, 10);
        d->max_cents = mk_api->db_col_int(st, 11);
        char town[300] = "";
        add_part(town, sizeof town, mk_api->db_col_text(st, 14), " ");
        add_part(town, sizeof town, mk_api->db_col_text(st, 15), " ");
        add_part(d->place, sizeof d->place, mk_api->db_col_text(st, 12), ", ");
        add_part(d->place, sizeof d->place, mk_api->db_col_text(st, 13), ", ");
        add_part(d->place, sizeof d->place, town, ", ");
    }
    mk_api->db_done(st);
    return rc == HALLE_DB_ROW ? 1 : rc < 0 ? rc : 0;
}

int mk_dist_window(const mk_dist *d, const char *now)
{
    if (!strcmp(d->status, "cancelled"))
        return MK_WINDOW_CANCELLED;
    if (strcmp(d->status, "planned"))
        return MK_WINDOW_CLOSED;
    if (strcmp(now, d->opens_at) < 0)
        return MK_WINDOW_NOT_YET;
    if (strcmp(now, d->closes_at) >= 0)
        return MK_WINDOW_CLOSED;
    return MK_WINDOW_OPEN;
}

void mk_when_text(const char *lang, const char *iso, char *out, size_t len)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    char day[96];
    int hh = 0, mm = 0;
    if (!iso || sscanf(iso, "%4d-%2d-%2dT%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &hh, &mm) != 5) {
        copy(out, len, iso);
        return;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_hour = 12;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || mk_api->format_date(lang, (int64_t)t, day, sizeof day) != HALLE_OK) {
        copy(out, len, iso);
        return;
    }
    snprintf(out, len, "%s, %02d:%02d", day, hh, mm);
}

void mk_user_name(int64_t uid, char *out, size_t len)
{
    json_t *u = mk_api->user_get(mk_host, uid);
    copy(out, len, json_string_value(json_object_get(u, "name")));
    json_decref(u);
}

static void user_email(int64_t uid, char *out, size_t len)
{
    json_t *u = mk_api->user_get(mk_host, uid);
    copy(out, len, json_string_value(json_object_get(u, "email")));
    json_decref(u);
}

/* "2 × Pain de campagne (1 kg)" */
static void line_label(const char *lang, long long count, const char *name, double qty, const char *unit, char *out,
                       size_t len)
{
    char q[32];
    mk_decimal_text(lang, qty > 0 ? qty : 1, q, sizeof q);
    snprintf(out, len, "%lld × %s (%s %s)", count, name ? name : "", q, mk_unit_label(unit ? unit : ""));
}

void mk_dist_summary(mk_sbuf *b, const mk_dist *d, int64_t producer_id)
{
    char when[128], price[40];
    mk_when_text("fr", d->starts_at, when, sizeof when);
    mk_sb_printf(b, "Distribution du %s\nGroupe : %s\n", when, d->group_name);
    if (*d->place)
        mk_sb_printf(b, "Lieu : %s\n", d->place);
    /* per product */
    mk_sb_printf(b, "\nPar produit (quantités à apporter) :\n");
    halle_stmt *st = mk_api->db_query(
        mk_host,
        "SELECT pr.business_name, l.name, l.unit, l.quantity, sum(l.count), sum(l.line_cents) FROM market_order_lines l "
        "JOIN market_orders o ON o.id = l.order_id JOIN market_producers pr ON pr.id = l.producer_id "
        "WHERE o.distribution_id = ? AND o.status = 'placed' AND (? = 0 OR l.producer_id = ?) "
        "GROUP BY pr.business_name, l.producer_id, l.product_id, l.name, l.unit, l.quantity "
        "ORDER BY pr.business_name, l.producer_id, l.name, l.product_id LIMIT 5000",
        "III", d->id, producer_id, producer_id);
    long long total = 0, rows = 0;
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char label[400];
        line_label("fr", mk_api->db_col_int(st, 4), mk_api->db_col_text(st, 1), mk_api->db_col_double(st, 3),
                   mk_api->db_col_text(st, 2), label, sizeof label);
        mk_price_text("fr", mk_api->db_col_int(st, 5), price, sizeof price);
        total += mk_api->db_col_int(st, 5);
        rows++;
        if (producer_id)
            mk_sb_printf(b, "- %s : %s\n", label, price);
        else
            mk_sb_printf(b, "- %s — %s : %s\n", mk_api->db_col_text(st, 0), label, price);
    }
    mk_api->db_done(st);
    if (!rows)
        mk_sb_printf(b, "(aucune commande)\n");
    mk_price_text("fr", total, price, sizeof price);
    mk_sb_printf(b, "Total : %s\n", price);
    /* per member */
    mk_sb_printf(b, "\nPar membre :\n");
    st = mk_api->db_query(mk_host,
                          "SELECT o.id, o.user_id, l.name, l.unit, l.quantity, l.count, l.line_cents FROM market_orders o "
                          "JOIN market_order_lines l ON l.order_id = o.id WHERE o.distribution_id = ? AND o.status = 'placed' "
                          "AND (? = 0 OR l.producer_id = ?) ORDER BY o.id, l.name, l.product_id LIMIT 100000",
                          "III", d->id, producer_id, producer_id);
    int64_t last = 0;
    long long members = 0;
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        int64_t oid = mk_api->db_col_int(st, 0);
        if (oid != last) {
            if (++members > SUMMARY_ORDERS_MAX) {
                mk_sb_printf(b, "… (la liste complète est dans le rapport de la distribution)\n");
                break;
            }
            char name[200];
            mk_user_name(mk_api->db_col_int(st, 1), name, sizeof name);
            mk_sb_printf(b, "%s (commande n° %lld)\n", *name ? name : "(compte supprimé)", (long long)oid);
            last = oid;
        }
        char label[400];
        line_label("fr", mk_api->db_col_int(st, 5), mk_api->db_col_text(st, 2), mk_api->db_col_double(st, 4),
                   mk_api->db_col_text(st, 3), label, sizeof label);
        mk_price_text("fr", mk_api->db_col_int(st, 6), price, sizeof price);
        mk_sb_printf(b, "  - %s : %s\n", label, price);
    }
    mk_api->db_done(st);
    if (!members)
        mk_sb_printf(b, "(aucune commande)\n");
}

/* ---- placing an order -------------------------------------------------------------------------- */

typedef struct line {
    int64_t product_id, producer_id, price_cents, line_cents;
    long count;
    int vat_bp;
    double quantity;
    char name[256], unit[16];
} line;

typedef struct place_ctx {
    halle_request *r;
    mk_dist d;
    int64_t uid;
    char idem[40], fp[64];
    line *lines;
    size_t n;
    json_t *messages;  /* what refused the order, shown to the client */
    int refused, replayed, changed;
    int64_t order_id, total;
} place_ctx;

static void refuse(place_ctx *c, const char *msg)
{
    c->refused = 1;
    json_array_append_new(c->messages, json_string(msg));
}

static int hexval(int ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* Percent-decodes s[0..n) into out (cut at len - 1); -1 on a bad escape. */
static int url_decode(const char *s, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];
        if (ch == '+')
            ch = ' ';
        else if (ch == '%') {
            if (i + 2 >= n)
                return -1;
            int a = hexval(s[i + 1]), b = hexval(s[i + 2]);
            if (a < 0 || b < 0)
                return -1;
            ch = a * 16 + b;
            i += 2;
        }
        if (o + 1 >= len)
            return -1;
        out[o++] = (char)ch;
    }
    out[o] = '\0';
    return 0;
}

static int line_cmp(const void *a, const void *b)
{
    const line *x = a, *y = b;
    return x->product_id < y->product_id ? -1 : x->product_id > y->product_id;
}

/* The q_PRODUCT=COUNT fields of the urlencoded form. Returns 0, or -1 when refused (the
 * messages say why). */
static int parse_lines(place_ctx *c)
{
    size_t len = 0;
    const char *body = mk_api->req_body(c->r, &len);
    char msg[400];
    for (size_t i = 0; body && i < len;) {
        size_t j = i;
        while (j < len && body[j] != '&')
            j++;
        const char *eq = memchr(body + i, '=', j - i);
        char key[48], val[24];
        if (eq && url_decode(body + i, (size_t)(eq - (body + i)), key, sizeof key) == 0 && !strncmp(key, "q_", 2)) {
            int64_t pid = mk_id(key + 2);
            int ok = pid > 0 && url_decode(eq + 1, (size_t)(body + j - (eq + 1)), val, sizeof val) == 0;
            long count = 0;
            if (ok) {
                char *s = val;
                while (*s == ' ')
                    s++;
                char *end = s;
                count = *s ? strtol(s, &end, 10) : 0;
                while (*end == ' ')
                    end++;
                ok = *end == '\0' && count >= 0 && count <= ORDER_COUNT_MAX;
            }
            if (!ok) {
                snprintf(msg, sizeof msg,
                         mk_api->tr(c->r, "Une quantité n'est pas valable : indiquez un nombre entier d'articles, de 1 à %d."),
                         ORDER_COUNT_MAX);
                refuse(c, msg);
                return -1;
            }
            if (count > 0) {
                size_t k = 0;
                while (k < c->n && c->lines[k].product_id != pid)
                    k++;
                if (k == c->n) {
                    if (c->n == ORDER_LINES_MAX) {
                        snprintf(msg, sizeof msg, mk_api->tr(c->r, "Une commande compte au plus %d produits différents."),
                                 ORDER_LINES_MAX);
                        refuse(c, msg);
                        return -1;
                    }
                    memset(&c->lines[c->n], 0, sizeof c->lines[0]);
                    c->lines[c->n++].product_id = pid;
                }
                c->lines[k].count = count;
            }
        }
        i = j + 1;
    }
    qsort(c->lines, c->n, sizeof c->lines[0], line_cmp); /* the same order of row locks for everyone */
    return 0;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void fingerprint(place_ctx *c)
{
    uint64_t h = 1469598103934665603ull;
    char part[64];
    int k = snprintf(part, sizeof part, "u%lld;d%lld;", (long long)c->uid, (long long)c->d.id);
    h = fnv1a(h, part, (size_t)k);
    for (size_t i = 0; i < c->n; i++) {
        k = snprintf(part, sizeof part, "%lld=%ld;", (long long)c->lines[i].product_id, c->lines[i].count);
        h = fnv1a(h, part, (size_t)k);
    }
    snprintf(c->fp, sizeof c->fp, "u%lld-%016llx", (long long)c->uid, (unsigned long long)h);
}

static void window_message(halle_request *r, const mk_dist *d, int w, char *out, size_t len)
{
    char when[128];
    const char *lang = mk_api->req_lang(r);
    if (w == MK_WINDOW_NOT_YET) {
        mk_when_text(lang, d->opens_at, when, sizeof when);
        snprintf(out, len, mk_api->tr(r, "Les commandes de cette distribution ne sont pas encore ouvertes : elles ouvriront le %s."),
                 when);
    } else if (w == MK_WINDOW_CANCELLED) {
        snprintf(out, len, "%s", mk_api->tr(r, "Cette distribution a été annulée : elle ne prend plus de commandes."));
    } else {
        mk_when_text(lang, d->closes_at, when, sizeof when);
        snprintf(out, len, mk_api->tr(r, "Les commandes de cette distribution sont closes depuis le %s."), when);
    }
}

/* The product, if it can be ordered in the distribution: active, of a catalog offered there,
 * by a producer who confirmed. 1, 0 or -1. */
static int load_product(int64_t did, line *l)
{
    halle_stmt *st = mk_api->db_query(
        mk_host,
        "SELECT p.producer_id, p.name, p.unit, p.quantity, p.price_cents, p.vat_rate_bp FROM market_products p "
        "JOIN market_distribution_catalogs dc ON dc.catalog_id = p.catalog_id AND dc.distribution_id = ? "
        "JOIN market_distribution_producers dp ON dp.distribution_id = dc.distribution_id "
        "AND dp.producer_id = p.producer_id AND dp.status = 'confirmed' WHERE p.id = ? AND p.active = 1",
        "II", did, l->product_id);
    int rc = st ? mk_api->db_step(st) : -1;
    if (rc == HALLE_DB_ROW) {
        l->producer_id = mk_api->db_col_int(st, 0);
        copy(l->name, sizeof l->name, mk_api->db_col_text(st, 1));
        copy(l->unit, sizeof l->unit, mk_api->db_col_text(st, 2));
        l->quantity = mk_api->db_col_double(st, 3);
        l->price_cents = mk_api->db_col_int(st, 4);
        l->vat_bp = (int)mk_api->db_col_int(st, 5);
        l->line_cents = l->price_cents * l->count;
    }
    mk_api->db_done(st);
    return rc == HALLE_DB_ROW ? 1 : rc < 0 ? rc : 0;
}

static json_t *lines_json(const place_ctx *c)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < c->n; i++) {
        const line *l = &c->lines[i];
        json_array_append_new(a, json_pack("{s:I, s:I, s:s, s:s, s:f, s:I, s:I, s:i, s:I}", "product_id", (json_int_t)l->product_id,
                                           "producer_id", (json_int_t)l->producer_id, "name", l->name, "unit", l->unit,
                                           "quantity", l->quantity, "count", (json_int_t)l->count, "price_cents",
                                           (json_int_t)l->price_cents, "vat_rate_bp", l->vat_bp, "line_cents",
                                           (json_int_t)l->line_cents));
    }
    return a;
}

/* order.validate: a callback may stop the chain (its message refuses the order) or append
 * {product_id, message} (or a text) to "refused" to refuse some lines. */
static int run_validate(halle_host *h, place_ctx *c)
{
    json_t *v = json_pack("{s:I, s:I, s:I, s:I, s:o, s:[]}", "distribution_id", (json_int_t)c->d.id, "group_id",
                          (json_int_t)c->d.group_id, "user_id", (json_int_t)c->uid, "total_cents", (json_int_t)c->total,
                          "lines", lines_json(c), "refused");
    if (!v)
        return HALLE_ERROR;
    int rc = mk_api->run_filter(h, c->r, "market.order.validate", &v);
    if (rc == HALLE_HOOK_STOP) {
        const char *m = mk_api->last_error(h);
        refuse(c, m && *m ? m : mk_api->tr(c->r, "Votre commande a été refusée."));
    } else if (rc < 0) {
        json_decref(v);
        return rc;
    } else {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(v, "refused"), i, e) {
            const char *m = json_is_string(e) ? json_string_value(e) : json_string_value(json_object_get(e, "message"));
            refuse(c, m && *m ? m : mk_api->tr(c->r, "Un article de votre commande a été refusé."));
        }
    }
    json_decref(v);
    return HALLE_OK;
}

/* Puts back the stock of the order's lines (a change, a cancellation). */
static int give_back_stock(halle_host *h, int64_t oid)
{
    int rc = mk_api->db_run(h,
                            "UPDATE market_products SET stock = stock + (SELECT l.count FROM market_order_lines l "
                            "WHERE l.order_id = ? AND l.product_id = market_products.id) "
                            "WHERE stock IS NOT NULL AND id IN (SELECT product_id FROM market_order_lines WHERE order_id = ?)",
                            "II", oid, oid);
    return rc < 0 ? rc : HALLE_OK;
}

/* The confirmation (or cancellation) mail, queued in the order's transaction. */
static int order_mail(halle_host *h, halle_request *r, const mk_dist *d, int64_t oid, int64_t uid, int cancelled)
{
    char to[320], when[128], subject[400], price[40];
    user_email(uid, to, sizeof to);
    if (!*to)
        return HALLE_OK;
    const char *lang = mk_api->req_lang(r);
    mk_when_text(lang, d->starts_at, when, sizeof when);
    snprintf(subject, sizeof subject,
             mk_api->tr(r, cancelled ? "Commande annulée : distribution du %s, %s" : "Votre commande : distribution du %s, %s"),
             when, d->group_name);
    mk_sbuf b;
    mk_sb_init(&b);
    if (cancelled) {
        mk_sb_printf(&b, "%s\n", mk_api->tr(r, "Votre commande est annulée. Rien ne vous sera demandé à la distribution."));
    } else {
        mk_sb_printf(&b, "%s\n\n", mk_api->tr(r, "Merci : votre commande est enregistrée."));
        halle_stmt *st = mk_api->db_query(h,
                                          "SELECT l.name, l.unit, l.quantity, l.count, l.line_cents, pr.business_name "
                                          "FROM market_order_lines l JOIN market_producers pr ON pr.id = l.producer_id "
                                          "WHERE l.order_id = ? ORDER BY pr.business_name, l.producer_id, l.name LIMIT 1000",
                                          "I", oid);
        long long total = 0;
        while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
            char label[400];
            line_label(lang, mk_api->db_col_int(st, 3), mk_api->db_col_text(st, 0), mk_api->db_col_double(st, 2),
                       mk_api->db_col_text(st, 1), label, sizeof label);
            mk_price_text(lang, mk_api->db_col_int(st, 4), price, sizeof price);
            total += mk_api->db_col_int(st, 4);
            mk_sb_printf(&b, "- %s — %s : %s\n", label, mk_api->db_col_text(st, 5), price);
        }
        mk_api->db_done(st);
        mk_price_text(lang, total, price, sizeof price);
        mk_sb_printf(&b, "\n%s %s\n", mk_api->tr(r, "Total :"), price);
        mk_sb_printf(&b, "%s\n", mk_api->tr(r, "À régler lors du retrait, auprès des producteurs."));
    }
    mk_sb_printf(&b, "\n%s %s\n", mk_api->tr(r, "Distribution :"), when);
    if (*d->place)
        mk_sb_printf(&b, "%s %s\n", mk_api->tr(r, "Lieu :"), d->place);
    mk_sb_printf(&b, "\n%s %s/orders/%lld\n", mk_api->tr(r, "Votre commande :"), mk_api->site_url(h), (long long)oid);
    int64_t id = b.failed ? HALLE_ERROR : mk_api->mail(h, to, subject, b.p);
    mk_sb_free(&b);
    return id > 0 ? HALLE_OK : id < 0 ? (int)id : HALLE_ERROR;
}

/* The work done once per idempotency key, in the durable transaction. A refusal returns an
 * error so that nothing is kept, not even the key: the client may fix the order. */
static int place_work(halle_host *h, void *ud, int *status, char **body)
{
    place_ctx *c = ud;
    char now[32], msg[600];
    mk_now(now, sizeof now);
    int rc = mk_dist_load(c->d.id, &c->d);
    if (rc != 1)
        return rc < 0 ? rc : HALLE_ERROR;
    int w = mk_dist_window(&c->d, now);
    if (w != MK_WINDOW_OPEN) {
        window_message(c->r, &c->d, w, msg, sizeof msg);
        refuse(c, msg);
        return HALLE_ERROR;
    }
    c->total = 0;
    for (size_t i = 0; i < c->n; i++) {
        rc = load_product(c->d.id, &c->lines[i]);
        if (rc < 0)
            return rc;
        if (!rc) {
            snprintf(msg, sizeof msg, mk_api->tr(c->r, "Un des articles demandés (n° %lld) n'est pas proposé dans cette distribution."),
                     (long long)c->lines[i].product_id);
            refuse(c, msg);
        }
        c->total += c->lines[i].line_cents;
    }
    if (c->refused)
        return HALLE_ERROR;
    const char *lang = mk_api->req_lang(c->r);
    char want[40], got[40];
    mk_price_text(lang, c->total, got, sizeof got);
    if (c->d.min_cents > 0 && c->total < c->d.min_cents) {
        mk_price_text(lang, c->d.min_cents, want, sizeof want);
        snprintf(msg, sizeof msg, mk_api->tr(c->r, "La commande minimale de ce groupe est de %s : la vôtre fait %s."), want, got);
        refuse(c, msg);
    }
    if (c->d.max_cents > 0 && c->total > c->d.max_cents) {
        mk_price_text(lang, c->d.max_cents, want, sizeof want);
        snprintf(msg, sizeof msg, mk_api->tr(c->r, "La commande maximale de ce groupe est de %s : la vôtre fait %s."), want, got);
        refuse(c, msg);
    }
    if (c->refused)
        return HALLE_ERROR;
    if ((rc = run_validate(h, c)) != HALLE_OK || c->refused)
        return rc < 0 ? rc : HALLE_ERROR;
    /* the one order of the member for the distribution: made, or taken (its row locked) */
    int64_t oid = 0;
    if ((rc = mk_api->db_insert(h, &oid,
                          "INSERT INTO market_orders (distribution_id, group_id, user_id, status, payment, total_cents, "
                          "placed_at, updated_at) VALUES (?, ?, ?, 'placed', 'at_pickup', 0, ?, ?) "
                          "ON CONFLICT (distribution_id, user_id) DO UPDATE SET updated_at = excluded.updated_at RETURNING id",
                          "IIIss", c->d.id, c->d.group_id, c->uid, now, now)) != HALLE_OK ||
        !oid)
        return rc < 0 ? rc : HALLE_ERROR;
    halle_stmt *st = mk_api->db_query(h,
                                      "SELECT o.status, (SELECT count(*) FROM market_order_lines l WHERE l.order_id = o.id) "
                                      "FROM market_orders o WHERE o.id = ?",
                                      "I", oid);
    int placed_before = 0;
    rc = st ? mk_api->db_step(st) : HALLE_ERROR;
    if (rc == HALLE_DB_ROW) {
        const char *s = mk_api->db_col_text(st, 0);
        placed_before = s && !strcmp(s, "placed") && mk_api->db_col_int(st, 1) > 0;
    }
    mk_api->db_done(st);
    if (rc != HALLE_DB_ROW)
        return rc < 0 ? rc : HALLE_ERROR;
    c->changed = placed_before;
    if (placed_before && (rc = give_back_stock(h, oid)) != HALLE_OK)
        return rc;
    if ((rc = mk_api->db_run(h, "DELETE FROM market_order_lines WHERE order_id = ?", "I", oid)) < 0)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        line *l = &c->lines[i];
        /* the conditional update: a row comes back only when the stock was enough */
        st = mk_api->db_query(h,
                              "UPDATE market_products SET stock = stock - ? WHERE id = ? AND (stock IS NULL OR stock >= ?) "
                              "RETURNING id",
                              "dId", (double)l->count, l->product_id, (double)l->count);
        int n = st ? mk_api->db_step(st) : HALLE_ERROR;
        mk_api->db_done(st);
        if (n < 0)
            return n;
        n = n == HALLE_DB_ROW;
        if (n == 0) {
            double left = 0;
            st = mk_api->db_query(h, "SELECT stock FROM market_products WHERE id = ?", "I", l->product_id);
            if (st && mk_api->db_step(st) == HALLE_DB_ROW)
                left = mk_api->db_col_double(st, 0);
            mk_api->db_done(st);
            char q[32];
            mk_decimal_text(lang, left > 0 ? left : 0, q, sizeof q);
            if (left >= 1)
                snprintf(msg, sizeof msg, mk_api->tr(c->r, "Il ne reste que %s « %s » : choisissez une quantité plus petite."), q,
                         l->name);
            else
                snprintf(msg, sizeof msg, mk_api->tr(c->r, "« %s » est épuisé : retirez-le de votre commande."), l->name);
            refuse(c, msg);
            continue;
        }
        if ((rc = mk_api->db_run(h,
                           "INSERT INTO market_order_lines (order_id, product_id, producer_id, name, unit, quantity, count, "
                           "price_cents, vat_rate_bp, line_cents) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           "IIIssdIIiI", oid, l->product_id, l->producer_id, l->name, l->unit, l->quantity,
                           (int64_t)l->count, l->price_cents, l->vat_bp, l->line_cents)) < 0)
            return rc;
    }
    if (c->refused)
        return HALLE_ERROR;
    if ((rc = mk_api->db_run(h,
                       "UPDATE market_orders SET status = 'placed', total_cents = ?, updated_at = ?, cancelled_at = NULL "
                       "WHERE id = ?",
                       "IsI", c->total, now, oid)) < 0)
        return rc;
    /* the cart of this distribution has become the order */
    if ((rc = mk_api->db_run(h,
                       "DELETE FROM market_cart_items WHERE cart_id IN (SELECT id FROM market_carts WHERE user_id = ? "
                       "AND distribution_id = ?)",
                       "II", c->uid, c->d.id)) < 0 ||
        (rc = mk_api->db_run(h, "DELETE FROM market_carts WHERE user_id = ? AND distribution_id = ?", "II", c->uid, c->d.id)) < 0)
        return rc;
    if ((rc = order_mail(h, c->r, &c->d, oid, c->uid, 0)) != HALLE_OK)
        return rc;
    c->order_id = oid;
    char *out = malloc(96);
    if (!out)
        return HALLE_ERROR;
    snprintf(out, 96, "{\"order_id\": %lld, \"changed\": %d}", (long long)oid, c->changed);
    *status = 303;
    *body = out;
    return HALLE_OK;
}

static int place_tx(halle_host *h, void *ud)
{
    place_ctx *c = ud;
    json_array_clear(c->messages); /* a busy database runs this again */
    c->refused = c->replayed = c->changed = 0;
    c->order_id = 0;
    int status = 0;
    char *body = NULL;
    int rc = mk_api->db_idempotent(h, "order", c->idem, c->fp, place_work, c, &status, &body);
    if (rc < 0) {
        mk_api->free(body);
        return rc;
    }
    c->replayed = rc == 1;
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    mk_api->free(body);
    c->order_id = (int64_t)json_integer_value(json_object_get(j, "order_id"));
    c->changed = (int)json_integer_value(json_object_get(j, "changed"));
    json_decref(j);
    return c->order_id ? HALLE_OK : HALLE_ERROR;
}

static int is_member(int64_t gid, int64_t uid)
{
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT 1 FROM market_members WHERE group_id = ? AND user_id = ? AND status = 'active'",
                                      "II", gid, uid);
    int rc = st ? mk_api->db_step(st) : -1;
    mk_api->db_done(st);
    return rc == HALLE_DB_ROW ? 1 : rc < 0 ? -1 : 0;
}

static int refused_page(halle_request *r, int status, const mk_dist *d, json_t *messages)
{
    char checkout[200];
    snprintf(checkout, sizeof checkout, "/groups/%s/distributions/%lld/checkout", d->slug, (long long)d->id);
    json_t *ctx = json_pack("{s:O, s:s, s:{s:s, s:s}}", "messages", messages, "checkout", checkout, "group", "slug", d->slug,
                            "name", d->group_name);
    if (*d->theme)
        mk_api->set_group_theme(r, d->theme);
    mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/orders/refused", ctx);
    json_decref(ctx);
    return rc;
}

static int refuse_one(halle_request *r, int status, const mk_dist *d, const char *msg)
{
    json_t *m = json_pack("[s]", msg);
    int rc = refused_page(r, status, d, m);
    json_decref(m);
    return rc;
}

static void fire(halle_request *r, const char *hook, int64_t oid, const mk_dist *d, int64_t uid, int64_t total)
{
    json_t *data = json_pack("{s:I, s:I, s:I, s:I, s:I}", "order_id", (json_int_t)oid, "distribution_id", (json_int_t)d->id,
                             "group_id", (json_int_t)d->group_id, "user_id", (json_int_t)uid, "total_cents", (json_int_t)total);
    if (data && mk_api->run_action(mk_host, r, hook, data) < 0)
        mk_api->log(mk_host, HALLE_LOG_WARN, "%s: %s", hook, mk_api->last_error(mk_host));
    json_decref(data);
}

static int idem_ok(const char *s)
{
    if (!s || strlen(s) != 32)
        return 0;
    for (const char *p = s; *p; p++)
        if (hexval(*p) < 0)
            return 0;
    return 1;
}

/* POST /groups/SLUG/distributions/ID/order */
static int order_post(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    place_ctx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.uid = mk_api->req_user(r);
    int found = mk_dist_load(mk_id(mk_api->req_route_param(r, "id")), &c.d);
    if (found < 0)
        return mk_error(r, 500, NULL);
    const char *slug = mk_api->req_route_param(r, "slug");
    if (!found || !slug || strcmp(c.d.slug, slug))
        return mk_error(r, 404, mk_api->tr(r, "Cette distribution n'existe pas."));
    int member = is_member(c.d.group_id, c.uid);
    if (member < 0)
        return mk_error(r, 500, NULL);
    if (!member)
        return refuse_one(r, 403, &c.d, mk_api->tr(r, "Seuls les membres du groupe peuvent commander : rejoignez d'abord le groupe."));
    const char *idem = mk_api->req_param(r, "idem");
    if (!idem_ok(idem))
        return refuse_one(r, 400, &c.d,
                          mk_api->tr(r, "Le formulaire de commande est incomplet : revenez à la page de validation et envoyez-le de nouveau."));
    copy(c.idem, sizeof c.idem, idem);
    c.messages = json_array();
    c.lines = calloc(ORDER_LINES_MAX, sizeof *c.lines);
    if (!c.messages || !c.lines) {
        json_decref(c.messages);
        free(c.lines);
        return mk_error(r, 500, NULL);
    }
    int rc;
    if (parse_lines(&c) < 0) {
        rc = refused_page(r, 422, &c.d, c.messages);
        goto out;
    }
    if (!c.n) {
        rc = refuse_one(r, 422, &c.d, mk_api->tr(r, "Votre commande est vide : choisissez au moins un article."));
        goto out;
    }
    fingerprint(&c);
    int txrc = mk_api->db_tx_durable(mk_host, place_tx, &c);
    if (c.refused) {
        rc = refused_page(r, 422, &c.d, c.messages);
    } else if (txrc == HALLE_ECONFLICT) {
        rc = refuse_one(r, 409, &c.d,
                        mk_api->tr(r, "Ce formulaire a déjà servi pour une autre commande : revenez à la page de validation."));
    } else if (txrc != HALLE_OK) {
        mk_api->log(mk_host, HALLE_LOG_ERROR, "order: %s", mk_api->last_error(mk_host));
        rc = mk_error(r, txrc == HALLE_EBUSY ? 503 : 500, NULL);
    } else {
        if (!c.replayed)
            fire(r, c.changed ? "market.order.changed" : "market.order.placed", c.order_id, &c.d, c.uid, c.total);
        char url[64];
        snprintf(url, sizeof url, "/orders/%lld", (long long)c.order_id);
        rc = mk_api->resp_redirect(r, url);
    }
out:
    json_decref(c.messages);
    free(c.lines);
    return rc;
}

/* ---- cancelling --------------------------------------------------------------------------------- */

typedef struct cancel_ctx {
    halle_request *r;
    int64_t oid, uid, total;
    mk_dist d;
    char msg[600];
    int done;
} cancel_ctx;

static int cancel_tx(halle_host *h, void *ud)
{
    cancel_ctx *c = ud;
    char now[32];
    c->done = 0;
    c->msg[0] = '\0';
    mk_now(now, sizeof now);
    int rc = mk_dist_load(c->d.id, &c->d);
    if (rc != 1)
        return rc < 0 ? rc : HALLE_ERROR;
    int w = mk_dist_window(&c->d, now);
    if (w != MK_WINDOW_OPEN) {
        window_message(c->r, &c->d, w, c->msg, sizeof c->msg);
        return HALLE_OK;
    }
    halle_stmt *st = mk_api->db_query(h,
                                      "UPDATE market_orders SET status = 'cancelled', cancelled_at = ?, updated_at = ? "
                                      "WHERE id = ? AND status = 'placed' RETURNING id",
                                      "ssI", now, now, c->oid);
    int n = st ? mk_api->db_step(st) : HALLE_ERROR;
    mk_api->db_done(st);
    if (n < 0)
        return n;
    n = n == HALLE_DB_ROW;
    if (n == 0)
        return HALLE_OK; /* cancelled already */
    if ((rc = give_back_stock(h, c->oid)) != HALLE_OK || (rc = order_mail(h, c->r, &c->d, c->oid, c->uid, 1)) != HALLE_OK)
        return rc;
    c->done = 1;
    return HALLE_OK;
}

typedef struct order_row {
    int64_t id, distribution_id, user_id, total;
    char status[16], placed_at[32], updated_at[32];
} order_row;

static int load_order(int64_t id, order_row *o)
{
    memset(o, 0, sizeof *o);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT id, distribution_id, user_id, total_cents, status, placed_at, updated_at "
                                      "FROM market_orders WHERE id = ?",
                                      "I", id);
    int rc = st ? mk_api->db_step(st) : -1;
    if (rc == HALLE_DB_ROW) {
        o->id = mk_api->db_col_int(st, 0);
        o->distribution_id = mk_api->db_col_int(st, 1);
        o->user_id = mk_api->db_col_int(st, 2);
        o->total = mk_api->db_col_int(st, 3);
        copy(o->status, sizeof o->status, mk_api->db_col_text(st, 4));
        copy(o->placed_at, sizeof o->placed_at, mk_api->db_col_text(st, 5));
        copy(o->updated_at, sizeof o->updated_at, mk_api->db_col_text(st, 6));
    }
    mk_api->db_done(st);
    return rc == HALLE_DB_ROW ? 1 : rc < 0 ? -1 : 0;
}

/* The order of the route and its distribution when the user may see it (its member, or with
 * coordinators_too the group's coordinators); otherwise answers (login, 500, 404) and 0. */
static int route_order(halle_request *r, order_row *o, mk_dist *d, int coordinators_too)
{
    if (mk_need_login(r))
        return 0;
    int found = load_order(mk_id(mk_api->req_route_param(r, "id")), o);
    if (found > 0 && mk_dist_load(o->distribution_id, d) != 1)
        found = -1;
    if (found < 0) {
        mk_error(r, 500, NULL);
        return 0;
    }
    if (!found || (o->user_id != mk_api->req_user(r) &&
                   !(coordinators_too && mk_api->can_name(r, HALLE_ACT_VIEW, "market.group_orders", d->group_id)))) {
        mk_error(r, 404, mk_api->tr(r, "Cette commande n'existe pas."));
        return 0;
    }
    return 1;
}

/* POST /orders/ID/cancel */
static int cancel_post(halle_request *r, void *ud)
{
    (void)ud;
    order_row o;
    mk_dist d;
    if (!route_order(r, &o, &d, 0))
        return HALLE_OK;
    cancel_ctx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    c.oid = o.id;
    c.uid = o.user_id;
    c.total = o.total;
    c.d.id = o.distribution_id;
    int rc = mk_api->db_tx_durable(mk_host, cancel_tx, &c);
    if (rc != HALLE_OK) {
        mk_api->log(mk_host, HALLE_LOG_ERROR, "cancel: %s", mk_api->last_error(mk_host));
        return mk_error(r, rc == HALLE_EBUSY ? 503 : 500, NULL);
    }
    if (c.msg[0])
        return refuse_one(r, 422, &c.d, c.msg);
    if (c.done)
        fire(r, "market.order.cancelled", c.oid, &c.d, c.uid, c.total);
    char url[80];
    snprintf(url, sizeof url, "/orders/%lld?done=cancelled", (long long)o.id);
    return mk_api->resp_redirect(r, url);
}

/* ---- changing: the order back into the cart --------------------------------------------------- */

typedef struct edit_ctx {
    int64_t oid, uid, did;
} edit_ctx;

static int edit_tx(halle_host *h, void *ud)
{
    edit_ctx *c = ud;
    char now[32];
    mk_now(now, sizeof now);
    int64_t cart = 0;
    int rc;
    if ((rc = mk_api->db_run(h,
                             "DELETE FROM market_cart_items WHERE cart_id IN (SELECT id FROM market_carts WHERE user_id = ? "
                             "AND distribution_id = ?)",
                             "II", c->uid, c->did)) < 0 ||
        (rc = mk_api->db_run(h, "DELETE FROM market_carts WHERE user_id = ? AND distribution_id = ?", "II", c->uid, c->did)) < 0 ||
        (rc = mk_api->db_insert(h, &cart,
                                "INSERT INTO market_carts (key_hash, user_id, distribution_id, created_at, updated_at) "
                                "VALUES (NULL, ?, ?, ?, ?) RETURNING id",
                                "IIss", c->uid, c->did, now, now)) != HALLE_OK)
        return rc < 0 ? rc : HALLE_ERROR;
    rc = mk_api->db_run(h,
                        "INSERT INTO market_cart_items (cart_id, product_id, count) SELECT ?, l.product_id, l.count "
                        "FROM market_order_lines l JOIN market_products p ON p.id = l.product_id "
                        "WHERE l.order_id = ? AND p.active = 1",
                        "II", cart, c->oid);
    return rc < 0 ? rc : HALLE_OK;
}

/* POST /orders/ID/edit: the order's lines become the member's cart again, and the checkout
 * opens with them (the checkout sends the whole new order). */
static int edit_post(halle_request *r, void *ud)
{
    (void)ud;
    order_row o;
    mk_dist d;
    if (!route_order(r, &o, &d, 0))
        return HALLE_OK;
    char now[32], msg[600];
    int w = mk_dist_window(&d, mk_now(now, sizeof now));
    if (w != MK_WINDOW_OPEN) {
        window_message(r, &d, w, msg, sizeof msg);
        return refuse_one(r, 422, &d, msg);
    }
    edit_ctx c = {o.id, o.user_id, d.id};
    if (mk_api->db_tx(mk_host, edit_tx, &c) != HALLE_OK) {
        mk_api->log(mk_host, HALLE_LOG_ERROR, "edit: %s", mk_api->last_error(mk_host));
        return mk_error(r, 500, NULL);
    }
    char url[200];
    snprintf(url, sizeof url, "/groups/%s/distributions/%lld/checkout", d.slug, (long long)d.id);
    return mk_api->resp_redirect(r, url);
}

/* ---- the confirmation page ------------------------------------------------------------------------ */

static json_t *dist_json(halle_request *r, const mk_dist *d)
{
    const char *lang = mk_api->req_lang(r);
    char starts[128], ends[128], closes[128];
    mk_when_text(lang, d->starts_at, starts, sizeof starts);
    mk_when_text(lang, d->ends_at, ends, sizeof ends);
    mk_when_text(lang, d->closes_at, closes, sizeof closes);
    const char *e = strchr(ends, ',') && !strncmp(d->starts_at, d->ends_at, 10) ? strrchr(ends, ',') + 2 : ends;
    return json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)d->id, "starts", starts, "ends", e, "closes", closes,
                     "place", d->place);
}

static void price_set(halle_request *r, json_t *o, const char *key, long long cents)
{
    char p[40];
    mk_price_text(mk_api->req_lang(r), cents, p, sizeof p);
    mk_set_str(o, key, p);
}

/* GET /orders/ID: the member's order (and its coordinators'). */
static int order_get(halle_request *r, void *ud)
{
    (void)ud;
    order_row o;
    mk_dist d;
    if (!route_order(r, &o, &d, 1))
        return HALLE_OK;
    int owner = o.user_id == mk_api->req_user(r);
    const char *lang = mk_api->req_lang(r);
    char now[32];
    mk_now(now, sizeof now);
    json_t *producers = json_array();
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT l.producer_id, pr.business_name, l.name, l.unit, l.quantity, l.count, "
                                      "l.price_cents, l.line_cents, l.vat_rate_bp, pr.slug FROM market_order_lines l "
                                      "JOIN market_producers pr ON pr.id = l.producer_id WHERE l.order_id = ? "
                                      "ORDER BY pr.business_name, l.producer_id, l.name, l.product_id LIMIT 1000",
                                      "I", o.id);
    json_t *cur = NULL;
    int64_t cur_pid = 0;
    long long sub = 0, vat = 0;
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        int64_t pid = mk_api->db_col_int(st, 0);
        if (!cur || pid != cur_pid) {
            if (cur)
                price_set(r, cur, "subtotal", sub);
            cur = json_pack("{s:s, s:s, s:[]}", "name", mk_api->db_col_text(st, 1), "slug", mk_api->db_col_text(st, 9), "lines");
            json_array_append_new(producers, cur);
            cur_pid = pid;
            sub = 0;
        }
        char qty[64], num[32];
        mk_decimal_text(lang, mk_api->db_col_double(st, 4), num, sizeof num);
        snprintf(qty, sizeof qty, "%s %s", num, mk_api->tr(r, mk_unit_label(mk_api->db_col_text(st, 3))));
        json_t *l = json_pack("{s:s, s:s, s:I}", "name", mk_api->db_col_text(st, 2), "quantity", qty, "count",
                              (json_int_t)mk_api->db_col_int(st, 5));
        price_set(r, l, "price", mk_api->db_col_int(st, 6));
        price_set(r, l, "amount", mk_api->db_col_int(st, 7));
        long long lc = mk_api->db_col_int(st, 7), bp = mk_api->db_col_int(st, 8);
        vat += lc - (lc * 10000 + (10000 + bp) / 2) / (10000 + bp);
        sub += lc;
        json_array_append_new(json_object_get(cur, "lines"), l);
    }
    mk_api->db_done(st);
    if (cur)
        price_set(r, cur, "subtotal", sub);
    int open = mk_dist_window(&d, now) == MK_WINDOW_OPEN;
    int placed = !strcmp(o.status, "placed");
    char checkout[200], placed_at[128];
    snprintf(checkout, sizeof checkout, "/groups/%s/distributions/%lld/checkout", d.slug, (long long)d.id);
    mk_when_text(lang, o.placed_at, placed_at, sizeof placed_at);
    json_t *order = json_pack("{s:I, s:s, s:b, s:b, s:s}", "id", (json_int_t)o.id, "status", o.status, "placed", placed,
                              "cancelled", !placed, "placed_at", placed_at);
    price_set(r, order, "total", o.total);
    price_set(r, order, "vat", vat);
    const char *done = mk_param(r, "done");
    json_t *ctx = json_pack("{s:o, s:o, s:{s:s, s:s}, s:o, s:b, s:b, s:s}", "order", order, "distribution", dist_json(r, &d),
                            "group", "slug", d.slug, "name", d.group_name, "producers", producers, "can_change",
                            owner && open, "can_cancel", owner && open && placed, "checkout", checkout);
    if (!strcmp(done, "cancelled"))
        mk_set_str(ctx, "notice", mk_api->tr(r, "Votre commande est annulée."));
    if (*d.theme)
        mk_api->set_group_theme(r, d.theme);
    mk_list_flags(ctx);
    int rc = mk_render(r, "market/orders/show", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- the member's orders ------------------------------------------------------------------------- */

static json_t *order_rows(halle_request *r, halle_stmt *st)
{
    json_t *a = json_array();
    const char *lang = mk_api->req_lang(r);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char when[128], price[40];
        mk_when_text(lang, mk_api->db_col_text(st, 3), when, sizeof when);
        mk_price_text(lang, mk_api->db_col_int(st, 2), price, sizeof price);
        const char *status = mk_api->db_col_text(st, 1), *dstatus = mk_api->db_col_text(st, 6);
        const char *label = !strcmp(status ? status : "", "cancelled")     ? mk_api->tr(r, "Annulée")
                            : !strcmp(dstatus ? dstatus : "", "cancelled") ? mk_api->tr(r, "Distribution annulée")
                            : !strcmp(dstatus ? dstatus : "", "closed")    ? mk_api->tr(r, "Close")
                                                                           : mk_api->tr(r, "Modifiable");
        json_array_append_new(a, json_pack("{s:I, s:s, s:s, s:s, s:s, s:s}", "id", (json_int_t)mk_api->db_col_int(st, 0), "when",
                                           when, "total", price, "group", mk_api->db_col_text(st, 4), "place",
                                           mk_api->db_col_text(st, 5) ? mk_api->db_col_text(st, 5) : "", "status", label));
    }
    mk_api->db_done(st);
    return a;
}

#define ORDER_LIST_SQL                                                                                       \
    "SELECT o.id, o.status, o.total_cents, d.starts_at, g.name, p.name, d.status FROM market_orders o "     \
    "JOIN market_distributions d ON d.id = o.distribution_id JOIN market_groups g ON g.id = o.group_id "     \
    "LEFT JOIN market_places p ON p.id = d.place_id WHERE o.user_id = ? "

/* GET /orders: upcoming pickups, then past orders (paginated). */
static int orders_get(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    int64_t uid = mk_api->req_user(r);
    char now[32];
    mk_now(now, sizeof now);
    int page = mk_page(r);
    json_t *upcoming = order_rows(r, mk_api->db_query(mk_host, ORDER_LIST_SQL "AND d.ends_at >= ? ORDER BY d.starts_at, o.id LIMIT 100",
                                                      "Is", uid, now));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT count(*) FROM market_orders o JOIN market_distributions d ON d.id = o.distribution_id "
                                      "WHERE o.user_id = ? AND d.ends_at < ?",
                                      "Is", uid, now);
    long long total = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    json_t *past = order_rows(r, mk_api->db_query(mk_host, ORDER_LIST_SQL "AND d.ends_at < ? ORDER BY d.starts_at DESC, o.id DESC "
                                                                          "LIMIT ? OFFSET ?",
                                                  "Isii", uid, now, MK_PER_PAGE, (page - 1) * MK_PER_PAGE));
    json_t *pg = mk_pagination(page, total, "");
    json_t *ctx = json_pack("{s:o, s:o, s:o, s:s}", "upcoming", upcoming, "past", past, "pagination", pg ? pg : json_object(),
                            "base", "/orders");
    mk_list_flags(ctx);
    int rc = mk_render(r, "market/orders/list", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- the closing job ------------------------------------------------------------------------------- */

typedef struct close_ctx {
    mk_dist d;
    char now[32];
    int closed;
} close_ctx;

static int mail_summary(halle_host *h, const mk_dist *d, const char *to, int64_t producer_id, const char *who)
{
    char subject[800], when[128];
    mk_when_text("fr", d->starts_at, when, sizeof when);
    snprintf(subject, sizeof subject, "Commandes closes : distribution du %s, %s%s%s", when, d->group_name, who ? " — " : "",
             who ? who : "");
    mk_sbuf b;
    mk_sb_init(&b);
    mk_sb_printf(&b, "Les commandes de cette distribution sont closes : voici %s.\n\n",
                 producer_id ? "ce que vos clients ont commandé" : "le récapitulatif de toutes les commandes");
    mk_dist_summary(&b, d, producer_id);
    mk_sb_printf(&b, "\nLe rapport à imprimer (liste d'émargement, quantités à apporter) :\n%s/groups/%s/distributions/%lld/report\n",
                 mk_api->site_url(h), d->slug, (long long)d->id);
    int64_t id = b.failed ? HALLE_ERROR : mk_api->mail(h, to, subject, b.p);
    mk_sb_free(&b);
    return id > 0 ? HALLE_OK : id < 0 ? (int)id : HALLE_ERROR;
}

static int close_tx(halle_host *h, void *ud)
{
    close_ctx *c = ud;
    c->closed = 0;
    halle_stmt *st = mk_api->db_query(h,
                                      "UPDATE market_distributions SET status = 'closed', closed_at = ?, updated_at = ? "
                                      "WHERE id = ? AND status = 'planned' AND closes_at <= ? RETURNING id",
                                      "ssIs", c->now, c->now, c->d.id, c->now);
    int n = st ? mk_api->db_step(st) : HALLE_ERROR;
    mk_api->db_done(st);
    if (n != HALLE_DB_ROW)
        return n < 0 ? n : HALLE_OK; /* closed by someone else */
    /* each confirmed producer: their part */
    st = mk_api->db_query(h,
                                      "SELECT pr.id, pr.user_id, pr.business_name FROM market_distribution_producers dp "
                                      "JOIN market_producers pr ON pr.id = dp.producer_id WHERE dp.distribution_id = ? "
                                      "AND dp.status = 'confirmed' ORDER BY pr.id LIMIT 1000",
                                      "I", c->d.id);
    json_t *rows = st ? mk_api->rows_json(st) : NULL;
    mk_api->db_done(st);
    if (!rows)
        return HALLE_ERROR;
    size_t i;
    json_t *p;
    int rc = HALLE_OK;
    json_array_foreach(rows, i, p) {
        char to[320];
        user_email((int64_t)json_integer_value(json_object_get(p, "user_id")), to, sizeof to);
        if (*to && (rc = mail_summary(h, &c->d, to, (int64_t)json_integer_value(json_object_get(p, "id")),
                                      json_string_value(json_object_get(p, "business_name")))) != HALLE_OK)
            break;
    }
    json_decref(rows);
    if (rc != HALLE_OK)
        return rc;
    /* the coordinators (members of their group): the whole distribution */
    int64_t after = 0;
    for (;;) {
        st = mk_api->db_query(h,
                              "SELECT user_id FROM market_members WHERE group_id = ? AND status = 'active' AND user_id > ? "
                              "ORDER BY user_id LIMIT 500",
                              "II", c->d.group_id, after);
        rows = st ? mk_api->rows_json(st) : NULL;
        mk_api->db_done(st);
        if (!rows)
            return HALLE_ERROR;
        json_array_foreach(rows, i, p) {
            int64_t uid = (int64_t)json_integer_value(json_object_get(p, "user_id"));
            after = uid;
            json_t *u = mk_api->user_get(h, uid);
            const char *to = json_string_value(json_object_get(u, "email"));
            if (u && to && *to && mk_user_coordinates(u, c->d.group_id))
                rc = mail_summary(h, &c->d, to, 0, NULL);
            json_decref(u);
            if (rc != HALLE_OK)
                break;
        }
        size_t got = json_array_size(rows);
        json_decref(rows);
        if (rc != HALLE_OK)
            return rc;
        if (got < 500)
            break;
    }
    c->closed = 1;
    return HALLE_OK;
}

/* Every minute: each planned distribution whose window has closed is closed, its orders
 * frozen, its summaries mailed (in the same transaction), then market.distribution.closed. */
static int close_job(halle_host *h, const char *payload, void *ud)
{
    (void)payload;
    (void)ud;
    char now[32];
    mk_now(now, sizeof now);
    halle_stmt *st = mk_api->db_query(h,
                                      "SELECT id FROM market_distributions WHERE status = 'planned' AND closes_at <= ? "
                                      "ORDER BY closes_at, id LIMIT ?",
                                      "si", now, CLOSE_BATCH);
    json_t *rows = st ? mk_api->rows_json(st) : NULL;
    mk_api->db_done(st);
    if (!rows) {
        mk_api->log(h, HALLE_LOG_ERROR, "close: %s", mk_api->last_error(h));
        return HALLE_ERROR;
    }
    int rc = HALLE_OK;
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        close_ctx c;
        memset(&c, 0, sizeof c);
        copy(c.now, sizeof c.now, now);
        if (mk_dist_load((int64_t)json_integer_value(json_object_get(row, "id")), &c.d) != 1 ||
            mk_api->db_tx_durable(h, close_tx, &c) != HALLE_OK) {
            mk_api->log(h, HALLE_LOG_ERROR, "close of distribution %lld: %s",
                        (long long)json_integer_value(json_object_get(row, "id")), mk_api->last_error(h));
            rc = HALLE_ERROR;
            continue;
        }
        if (c.closed) {
            json_t *data = json_pack("{s:I, s:I, s:s}", "distribution_id", (json_int_t)c.d.id, "group_id",
                                     (json_int_t)c.d.group_id, "closed_at", now);
            if (data && mk_api->run_action(h, NULL, "market.distribution.closed", data) < 0)
                mk_api->log(h, HALLE_LOG_WARN, "market.distribution.closed: %s", mk_api->last_error(h));
            json_decref(data);
        }
    }
    json_decref(rows);
    return rc;
}

/* ---- registration ----------------------------------------------------------------------------------- */

#define SLUG "/groups/(?<slug>[a-z0-9-]{1,100})"

int mk_orders_register(halle_host *h, const halle_api *api)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
    } routes[] = {
        {HALLE_POST, SLUG "/distributions/(?<id>\\d{1,18})/order", order_post},
        {HALLE_POST, "/orders/(?<id>\\d{1,18})/cancel", cancel_post},
        {HALLE_POST, "/orders/(?<id>\\d{1,18})/edit", edit_post},
        {HALLE_GET, "/orders/(?<id>\\d{1,18})", order_get},
        {HALLE_GET, "/orders", orders_get},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route(h, routes[i].methods, routes[i].pattern, routes[i].fn, NULL) != HALLE_OK)
            return HALLE_ERROR;
    static const struct {
        const char *name;
        int kind;
    } hooks[] = {
        {"market.order.validate", HALLE_HOOK_FILTER},  {"market.order.placed", HALLE_HOOK_ACTION},
        {"market.order.changed", HALLE_HOOK_ACTION},   {"market.order.cancelled", HALLE_HOOK_ACTION},
        {"market.distribution.closed", HALLE_HOOK_ACTION},
    };
    for (size_t i = 0; i < sizeof hooks / sizeof hooks[0]; i++)
        if (api->declare_hook(h, hooks[i].name, hooks[i].kind) != HALLE_OK)
            return HALLE_ERROR;
    if (api->job(h, "close", "every 60", close_job, NULL) != HALLE_OK)
        return HALLE_ERROR;
    return HALLE_OK;
}
