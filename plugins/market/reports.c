/* A distribution's reports (marketplace part 2), for its group's coordinators (every
 * producer, or one with ?producer=ID) and for each producer taking part (their own lines):
 * by member (the attendance sheet to print and tick, with amounts), by product (the
 * quantities to bring), by producer, and the totals with VAT per rate. HTML with a print
 * stylesheet (halle.css), paginated; CSV that spreadsheets open directly (UTF-8 with a BOM,
 * ';' between fields, decimal comma), complete. */
#include "plugins/market/csvimport.h"
#include "plugins/market/orders.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VIEW_MEMBERS, VIEW_PRODUCTS, VIEW_PRODUCERS };

typedef struct report_kind {
    int view, csv;
} report_kind;

/* The distribution of the route when the user may see its report; *producer_id is the
 * producer whose lines only are shown (0: all). Otherwise answers and returns 0. */
static int report_access(halle_request *r, mk_dist *d, int64_t *producer_id, int *coordinator)
{
    *producer_id = 0;
    *coordinator = 0;
    if (mk_need_login(r))
        return 0;
    int found = mk_dist_load(mk_id(mk_api->req_route_param(r, "id")), d);
    const char *slug = mk_api->req_route_param(r, "slug");
    if (found < 0) {
        mk_error(r, 500, NULL);
        return 0;
    }
    if (!found || !slug || strcmp(slug, d->slug)) {
        mk_error(r, 404, mk_api->tr(r, "Cette distribution n'existe pas."));
        return 0;
    }
    if (mk_api->can_name(r, HALLE_ACT_VIEW, "market.group_orders", d->group_id)) {
        *coordinator = 1;
        *producer_id = mk_id(mk_api->req_param(r, "producer"));
        return 1;
    }
    int64_t pid = mk_current_producer(r);
    if (pid) {
        halle_stmt *st = mk_api->db_query(mk_host,
                                          "SELECT 1 FROM market_distribution_producers WHERE distribution_id = ? AND producer_id = ?",
                                          "II", d->id, pid);
        int in = st && mk_api->db_step(st) == HALLE_DB_ROW;
        mk_api->db_done(st);
        if (in) {
            *producer_id = pid;
            return 1;
        }
    }
    mk_error(r, 403, mk_api->tr(r, "Ce rapport est réservé aux coordinateurs du groupe et aux producteurs de la distribution."));
    return 0;
}

#define LINES_OF "FROM market_order_lines l JOIN market_orders o ON o.id = l.order_id " \
                 "WHERE o.distribution_id = ? AND o.status = 'placed' AND (? = 0 OR l.producer_id = ?) "
#define LINES_PR_OF "FROM market_order_lines l JOIN market_orders o ON o.id = l.order_id " \
                    "JOIN market_producers pr ON pr.id = l.producer_id " \
                    "WHERE o.distribution_id = ? AND o.status = 'placed' AND (? = 0 OR l.producer_id = ?) "

static long long count_of(const char *sql, const mk_dist *d, int64_t pid)
{
    halle_stmt *st = mk_api->db_query(mk_host, sql, "III", d->id, pid, pid);
    long long n = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    return n;
}

/* VAT included in cents at rate bp (basis points), rounded to the cent. */
static long long vat_of(long long cents, long long bp)
{
    return cents - (cents * 10000 + (10000 + bp) / 2) / (10000 + bp);
}

/* {orders, items, total, vat: [{rate, amount}]} */
static json_t *totals_json(halle_request *r, const mk_dist *d, int64_t pid)
{
    const char *lang = mk_api->req_lang(r);
    char p[40];
    long long orders = count_of("SELECT count(DISTINCT o.id) " LINES_OF, d, pid);
    long long items = count_of("SELECT COALESCE(sum(l.count), 0) " LINES_OF, d, pid);
    json_t *vat = json_array();
    long long total = 0;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT l.vat_rate_bp, sum(l.line_cents) " LINES_OF
                                      "GROUP BY l.vat_rate_bp ORDER BY l.vat_rate_bp", "III", d->id, pid, pid);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        long long bp = mk_api->db_col_int(st, 0), cents = mk_api->db_col_int(st, 1);
        char rate[16], amount[40], base[40];
        mk_vat_text(lang, (int)bp, rate, sizeof rate);
        mk_price_text(lang, vat_of(cents, bp), amount, sizeof amount);
        mk_price_text(lang, cents, base, sizeof base);
        json_array_append_new(vat, json_pack("{s:s, s:s, s:s}", "rate", rate, "amount", amount, "base", base));
        total += cents;
    }
    mk_api->db_done(st);
    mk_price_text(lang, total, p, sizeof p);
    return json_pack("{s:I, s:I, s:s, s:o}", "orders", (json_int_t)orders, "items", (json_int_t)items, "total", p, "vat", vat);
}

/* ---- the rows of each view (HTML pages and CSV share them) ---------------------------------- */

typedef int (*row_fn)(void *ud, const char *const *fields, size_t n);

static void qty_text(const char *lang, int csv, double v, char *out, size_t len)
{
    if (csv)
        mk_decimal_format(v, out, len);
    else
        mk_decimal_text(lang, v, out, len);
}

static void money_text(const char *lang, int csv, long long cents, char *out, size_t len)
{
    if (csv)
        mk_price_format(cents, out, len); /* "12,50": a number for spreadsheets */
    else
        mk_price_text(lang, cents, out, len);
}

/* By member: one row per order: name, its lines, its amount, the order's number. */
static int member_rows(halle_request *r, const mk_dist *d, int64_t pid, long limit, long offset, int csv, row_fn fn,
                       void *ud)
{
    const char *lang = mk_api->req_lang(r);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT o.id, o.user_id, sum(l.line_cents) " LINES_OF
                                      "GROUP BY o.id, o.user_id ORDER BY o.id LIMIT ? OFFSET ?",
                                      "IIIii", d->id, pid, pid, (int)limit, (int)offset);
    size_t n = 0, cap = 64;
    int64_t(*ids)[3] = malloc(cap * sizeof *ids);
    while (ids && st && mk_api->db_step(st) == HALLE_DB_ROW) {
        if (n == cap) {
            void *p = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!p) {
                free(ids);
                ids = NULL;
                break;
            }
            ids = p;
        }
        ids[n][0] = mk_api->db_col_int(st, 0);
        ids[n][1] = mk_api->db_col_int(st, 1);
        ids[n][2] = mk_api->db_col_int(st, 2);
        n++;
    }
    mk_api->db_done(st);
    if (!ids || !st)
        return free(ids), HALLE_ERROR;
    int rc = HALLE_OK;
    for (size_t i = 0; i < n && rc == HALLE_OK; i++) {
        char name[200], amount[40], num[24];
        mk_user_name(ids[i][1], name, sizeof name);
        if (!*name)
            snprintf(name, sizeof name, "%s", mk_api->tr(r, "(compte supprimé)"));
        mk_sbuf b;
        mk_sb_init(&b);
        halle_stmt *ls = mk_api->db_query(mk_host,
                                          "SELECT l.count, l.name, l.quantity, l.unit FROM market_order_lines l WHERE l.order_id = ? "
                                          "AND (? = 0 OR l.producer_id = ?) ORDER BY l.name, l.product_id LIMIT 1000",
                                          "III", ids[i][0], pid, pid);
        int first = 1;
        while (ls && mk_api->db_step(ls) == HALLE_DB_ROW) {
            char q[32];
            qty_text(lang, csv, mk_api->db_col_double(ls, 2), q, sizeof q);
            const char *unit = mk_unit_label(mk_api->db_col_text(ls, 3));
            mk_sb_printf(&b, "%s%lld × %s (%s %s)", first ? "" : ", ", (long long)mk_api->db_col_int(ls, 0),
                         mk_api->db_col_text(ls, 1), q, csv ? unit : mk_api->tr(r, unit));
            first = 0;
        }
        mk_api->db_done(ls);
        money_text(lang, csv, ids[i][2], amount, sizeof amount);
        snprintf(num, sizeof num, "%lld", (long long)ids[i][0]);
        const char *fields[] = {name, b.failed ? "" : b.p, amount, num};
        rc = fn(ud, fields, 4);
        mk_sb_free(&b);
    }
    free(ids);
    return rc;
}

/* By product: producer, product, unit size, items, total quantity, amount. */
static int product_rows(halle_request *r, const mk_dist *d, int64_t pid, long limit, long offset, int csv, row_fn fn,
                        void *ud)
{
    const char *lang = mk_api->req_lang(r);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT pr.business_name, l.name, l.quantity, l.unit, sum(l.count), sum(l.line_cents) "
                                      LINES_PR_OF
                                      "GROUP BY pr.business_name, l.producer_id, l.product_id, l.name, l.quantity, l.unit "
                                      "ORDER BY pr.business_name, l.producer_id, l.name, l.product_id LIMIT ? OFFSET ?",
                                      "IIIii", d->id, pid, pid, (int)limit, (int)offset);
    int rc = HALLE_OK;
    while (rc == HALLE_OK && st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char size[96], q[32], total_q[96], items[24], amount[40];
        double qty = mk_api->db_col_double(st, 2);
        long long count = mk_api->db_col_int(st, 4);
        const char *unit = mk_unit_label(mk_api->db_col_text(st, 3));
        unit = csv ? unit : mk_api->tr(r, unit);
        qty_text(lang, csv, qty, q, sizeof q);
        snprintf(size, sizeof size, "%s %s", q, unit);
        qty_text(lang, csv, qty * (double)count, q, sizeof q);
        snprintf(total_q, sizeof total_q, "%s %s", q, unit);
        snprintf(items, sizeof items, "%lld", count);
        money_text(lang, csv, mk_api->db_col_int(st, 5), amount, sizeof amount);
        const char *fields[] = {mk_api->db_col_text(st, 0), mk_api->db_col_text(st, 1), size, items, total_q, amount};
        rc = fn(ud, fields, 6);
    }
    mk_api->db_done(st);
    return st ? rc : HALLE_ERROR;
}

/* By producer: producer, orders, items, amount. */
static int producer_rows(halle_request *r, const mk_dist *d, int64_t pid, long limit, long offset, int csv, row_fn fn,
                         void *ud)
{
    const char *lang = mk_api->req_lang(r);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT pr.business_name, count(DISTINCT o.id), sum(l.count), sum(l.line_cents) "
                                      LINES_PR_OF "GROUP BY pr.business_name, l.producer_id "
                                      "ORDER BY pr.business_name, l.producer_id LIMIT ? OFFSET ?",
                                      "IIIii", d->id, pid, pid, (int)limit, (int)offset);
    int rc = HALLE_OK;
    while (rc == HALLE_OK && st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char orders[24], items[24], amount[40];
        snprintf(orders, sizeof orders, "%lld", (long long)mk_api->db_col_int(st, 1));
        snprintf(items, sizeof items, "%lld", (long long)mk_api->db_col_int(st, 2));
        money_text(lang, csv, mk_api->db_col_int(st, 3), amount, sizeof amount);
        const char *fields[] = {mk_api->db_col_text(st, 0), orders, items, amount};
        rc = fn(ud, fields, 4);
    }
    mk_api->db_done(st);
    return st ? rc : HALLE_ERROR;
}

typedef int (*view_fn)(halle_request *, const mk_dist *, int64_t, long, long, int, row_fn, void *);

static const struct {
    const char *path, *title, *count_sql;
    view_fn fn;
    const char *csv_head;
    const char *cols[6];
} views[] = {
    {"", N_("Par membre (liste d'émargement)"), "SELECT count(DISTINCT o.id) " LINES_OF, member_rows,
     "membre;articles;montant;commande;retiré\r\n", {N_("Membre"), N_("Articles"), N_("Montant"), N_("Commande")}},
    {"/products", N_("Par produit (quantités à apporter)"),
     "SELECT count(*) FROM (SELECT l.product_id " LINES_OF "GROUP BY l.product_id, l.name, l.quantity, l.unit) x", product_rows,
     "producteur;produit;conditionnement;articles;quantité totale;montant\r\n",
     {N_("Producteur"), N_("Produit"), N_("Conditionnement"), N_("Articles"), N_("Quantité totale"), N_("Montant")}},
    {"/producers", N_("Par producteur"), "SELECT count(DISTINCT l.producer_id) " LINES_OF, producer_rows,
     "producteur;commandes;articles;montant\r\n", {N_("Producteur"), N_("Commandes"), N_("Articles"), N_("Montant")}},
};

/* ---- HTML ------------------------------------------------------------------------------------ */

static int html_row(void *ud, const char *const *fields, size_t n)
{
    json_t *cells = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(cells, json_string(fields[i] ? fields[i] : ""));
    return json_array_append_new((json_t *)ud, json_pack("{s:o}", "cells", cells)) == 0 ? HALLE_OK : HALLE_ERROR;
}

static int report_html(halle_request *r, const report_kind *k)
{
    mk_dist d;
    int64_t pid;
    int coordinator;
    if (!report_access(r, &d, &pid, &coordinator))
        return HALLE_OK;
    int page = mk_page(r);
    long long total = count_of(views[k->view].count_sql, &d, pid);
    json_t *rows = json_array();
    if (views[k->view].fn(r, &d, pid, MK_PER_PAGE, (long)(page - 1) * MK_PER_PAGE, 0, html_row, rows) != HALLE_OK) {
        json_decref(rows);
        return mk_error(r, 500, NULL);
    }
    char base[200], producer_q[40] = "";
    snprintf(base, sizeof base, "/groups/%s/distributions/%lld/report%s", d.slug, (long long)d.id, views[k->view].path);
    if (coordinator && pid)
        snprintf(producer_q, sizeof producer_q, "?producer=%lld", (long long)pid);
    json_t *cols = json_array(), *tabs = json_array();
    for (size_t i = 0; i < 6 && views[k->view].cols[i]; i++)
        json_array_append_new(cols, json_string(mk_api->tr(r, views[k->view].cols[i])));
    /* each cell with its column's name: on a phone the table's rows become cards that name
     * every value (themes' base.css, table.stack) */
    size_t ri, ci;
    json_t *row, *cell;
    json_array_foreach(rows, ri, row) {
        json_t *labeled = json_array();
        json_array_foreach(json_object_get(row, "cells"), ci, cell) {
            json_t *label = json_array_get(cols, ci);
            json_array_append_new(labeled, json_pack("{s:s, s:O}", "label", label ? json_string_value(label) : "", "value", cell));
        }
        json_object_set_new(row, "cells", labeled);
    }
    for (int v = 0; v < 3; v++) {
        char url[260];
        snprintf(url, sizeof url, "/groups/%s/distributions/%lld/report%s%s", d.slug, (long long)d.id, views[v].path, producer_q);
        json_array_append_new(tabs, json_pack("{s:s, s:s, s:b}", "url", url, "label", mk_api->tr(r, views[v].title), "current",
                                              v == k->view));
    }
    char csv[260], when[128], producer_name[256] = "";
    snprintf(csv, sizeof csv, "%s.csv%s", base, producer_q);
    mk_when_text(mk_api->req_lang(r), d.starts_at, when, sizeof when);
    if (pid) {
        halle_stmt *st = mk_api->db_query(mk_host, "SELECT business_name FROM market_producers WHERE id = ?", "I", pid);
        if (st && mk_api->db_step(st) == HALLE_DB_ROW)
            snprintf(producer_name, sizeof producer_name, "%s", mk_api->db_col_text(st, 0));
        mk_api->db_done(st);
    }
    json_t *pg = mk_pagination(page, total, "");
    json_t *ctx = json_pack("{s:{s:s, s:s}, s:{s:I, s:s, s:s, s:s}, s:s, s:o, s:o, s:o, s:o, s:s, s:b, s:s, s:o, s:s}", "group",
                            "slug", d.slug, "name", d.group_name, "distribution", "id", (json_int_t)d.id, "when", when, "place",
                            d.place, "status", d.status, "title", mk_api->tr(r, views[k->view].title), "cols", cols, "rows", rows,
                            "tabs", tabs, "totals", totals_json(r, &d, pid), "csv", csv, "members", k->view == VIEW_MEMBERS,
                            "producer", producer_name, "pagination", pg ? pg : json_object(), "base", base);
    if (*d.theme)
        mk_api->set_group_theme(r, d.theme);
    mk_list_flags(ctx);
    int rc = mk_render(r, "market/orders/report", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- CSV ------------------------------------------------------------------------------------- */

/* A field quoted when it has to be (';', '"', a line break, blanks at its ends). */
static int csv_field(halle_request *r, const char *s, int last)
{
    size_t n = strlen(s);
    int rc;
    if (strpbrk(s, ";\"\r\n") || (n && (s[0] == ' ' || s[n - 1] == ' '))) {
        rc = mk_api->resp_write(r, "\"", 1);
        for (const char *p = s; rc == HALLE_OK && *p; p++)
            rc = mk_api->resp_write(r, *p == '"' ? "\"\"" : p, *p == '"' ? 2 : 1);
        if (rc == HALLE_OK)
            rc = mk_api->resp_write(r, "\"", 1);
    } else {
        /* a formula's first character is taken as text by spreadsheets only after a quote */
        if (n && strchr("=+-@", s[0]) && (rc = mk_api->resp_write(r, "'", 1)) != HALLE_OK)
            return rc;
        rc = mk_api->resp_write(r, s, n);
    }
    if (rc == HALLE_OK)
        rc = mk_api->resp_write(r, last ? "\r\n" : ";", last ? 2 : 1);
    return rc;
}

typedef struct csv_ctx {
    halle_request *r;
    int extra_empty; /* the attendance sheet's empty "retiré" column */
} csv_ctx;

static int csv_row(void *ud, const char *const *fields, size_t n)
{
    csv_ctx *c = ud;
    int rc = HALLE_OK;
    for (size_t i = 0; i < n && rc == HALLE_OK; i++)
        rc = csv_field(c->r, fields[i] ? fields[i] : "", i + 1 == n && !c->extra_empty);
    if (rc == HALLE_OK && c->extra_empty)
        rc = mk_api->resp_write(c->r, "\r\n", 2);
    return rc;
}

#define CSV_BATCH 500

static int report_csv(halle_request *r, const report_kind *k)
{
    mk_dist d;
    int64_t pid;
    int coordinator;
    if (!report_access(r, &d, &pid, &coordinator))
        return HALLE_OK;
    static const char *const names[] = {"membres", "produits", "producteurs"};
    char disp[120];
    snprintf(disp, sizeof disp, "attachment; filename=\"distribution-%lld-%s.csv\"", (long long)d.id, names[k->view]);
    mk_api->resp_header(r, "Content-Type", "text/csv; charset=utf-8");
    mk_api->resp_header(r, "Content-Disposition", disp);
    mk_api->resp_header(r, "Cache-Control", "no-store");
    int rc = mk_api->resp_write(r, "\xef\xbb\xbf", 3);
    if (rc == HALLE_OK)
        rc = mk_api->resp_write(r, views[k->view].csv_head, strlen(views[k->view].csv_head));
    csv_ctx c = {r, k->view == VIEW_MEMBERS};
    long long total = count_of(views[k->view].count_sql, &d, pid);
    for (long long off = 0; rc == HALLE_OK && off < total; off += CSV_BATCH)
        rc = views[k->view].fn(r, &d, pid, CSV_BATCH, (long)off, 1, csv_row, &c);
    if (rc == HALLE_OK) { /* the total line */
        char amount[40];
        mk_price_format(count_of("SELECT COALESCE(sum(l.line_cents), 0) " LINES_OF, &d, pid), amount, sizeof amount);
        c.extra_empty = 0;
        const char *member_total[] = {"Total", "", amount, ""};
        const char *product_total[] = {"Total", "", "", "", "", amount};
        const char *producer_total[] = {"Total", "", "", amount};
        rc = k->view == VIEW_MEMBERS    ? csv_row(&c, member_total, 4)
             : k->view == VIEW_PRODUCTS ? csv_row(&c, product_total, 6)
                                        : csv_row(&c, producer_total, 4);
    }
    return rc;
}

static int report_get(halle_request *r, void *ud)
{
    const report_kind *k = ud;
    return k->csv ? report_csv(r, k) : report_html(r, k);
}

#define DIST "/groups/(?<slug>[a-z0-9-]{1,100})/distributions/(?<id>\\d{1,18})/report"

int mk_reports_register(halle_host *h, const halle_api *api)
{
    static const report_kind kinds[] = {{VIEW_MEMBERS, 0},  {VIEW_PRODUCTS, 0}, {VIEW_PRODUCERS, 0},
                                        {VIEW_MEMBERS, 1},  {VIEW_PRODUCTS, 1}, {VIEW_PRODUCERS, 1}};
    static const char *const patterns[] = {DIST, DIST "/products", DIST "/producers",
                                           DIST "\\.csv", DIST "/products\\.csv", DIST "/producers\\.csv"};
    for (size_t i = 0; i < 6; i++)
        if (api->route(h, HALLE_GET, patterns[i], report_get, (void *)&kinds[i]) != HALLE_OK)
            return HALLE_ERROR;
    return HALLE_OK;
}
