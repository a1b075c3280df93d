/* Marketplace: a producer's catalogs and products. Only the producer who owns a catalog edits
 * it (api->can with the producer's user id: neither a coordinator nor an operator acts for
 * them); products are deactivated, never deleted, since orders will refer to them. CSV import
 * (web and `halle market import`) checks the whole file first and writes it in one transaction. */
#include "plugins/market/market.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <csv.h>

#include "plugins/market/csvimport.h"

#define CATALOG_NAME_MAX 120
#define CATALOG_DESC_MAX 2000
#define WEB_IMPORT_MAX (10u << 20)
#define CLI_IMPORT_MAX (64u << 20)
#define MAX_OFFER_GROUPS 500

/* ---- small helpers ------------------------------------------------------------------------- */


static const char *col(halle_stmt *st, int i)
{
    const char *v = mk_api->db_col_text(st, i);
    return v ? v : "";
}

static int forbidden(halle_request *r)
{
    return mk_error(r, 403, mk_api->tr(r, "Ce catalogue appartient à un autre producteur : seul lui peut le modifier."));
}

typedef struct catalog {
    int64_t id, producer_id, owner;   /* owner: the producer's user id, for api->can */
    char name[CATALOG_NAME_MAX + 1];
    char description[CATALOG_DESC_MAX + 1];
    int active;
} catalog;

static int catalog_read(halle_host *h, int64_t id, catalog *c)
{
    memset(c, 0, sizeof *c);
    halle_stmt *st = mk_api->db_query(h,
                                      "SELECT c.producer_id, p.user_id, c.name, c.description, c.active FROM market_catalogs c "
                                      "JOIN market_producers p ON p.id = c.producer_id WHERE c.id = ?", "I", id);
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    if (found) {
        c->id = id;
        c->producer_id = mk_api->db_col_int(st, 0);
        c->owner = mk_api->db_col_int(st, 1);
        snprintf(c->name, sizeof c->name, "%s", col(st, 2));
        snprintf(c->description, sizeof c->description, "%s", col(st, 3));
        c->active = (int)mk_api->db_col_int(st, 4);
    }
    mk_api->db_done(st);
    return found;
}

/* The route's catalog, when the user may edit it; 0 when an answer was sent (login, 404, 403). */
static int need_catalog(halle_request *r, int64_t id, catalog *c)
{
    if (mk_need_login(r))
        return 0;
    if (!id || !catalog_read(mk_host, id, c))
        return mk_error(r, 404, mk_api->tr(r, "Ce catalogue n'existe pas.")), 0;
    if (!mk_api->can_name(r, HALLE_ACT_EDIT, "market.catalog", c->owner))
        return forbidden(r), 0;
    return 1;
}

static json_t *catalog_json(const catalog *c)
{
    json_t *o = json_pack("{s:I, s:b}", "id", (json_int_t)c->id, "active", c->active);
    mk_set_str(o, "name", c->name);
    mk_set_str(o, "description", c->description);
    return o;
}

static int render(halle_request *r, int status, const char *tpl, json_t *ctx)
{
    mk_api->resp_status(r, status);
    mk_list_flags(ctx);
    int rc = mk_render(r, tpl, ctx);
    json_decref(ctx);
    return rc;
}

/* ---- catalogs ----------------------------------------------------------------------------- */

static int new_catalog_page(halle_request *r, int status, const char *error)
{
    json_t *ctx = json_object(), *form = json_object();
    mk_set_str(ctx, "title", mk_api->tr(r, "Nouveau catalogue"));
    mk_set_str(form, "name", mk_param(r, "name"));
    mk_set_str(form, "description", mk_param(r, "description"));
    json_object_set_new(ctx, "form", form);
    if (error)
        mk_set_str(ctx, "error", error);
    return render(r, status, "market/producers/catalog_new", ctx);
}

/* The logged-in producer allowed to create catalogs: their id, or 0 with an answer sent. */
static int64_t need_producer(halle_request *r)
{
    if (mk_need_login(r))
        return 0;
    int64_t pid = mk_current_producer(r);
    if (!pid)
        return mk_api->resp_redirect(r, "/producer/signup"), 0;
    if (!mk_api->can_name(r, HALLE_ACT_CREATE, "market.catalog", mk_api->req_user(r)))
        return mk_error(r, 403, mk_api->tr(r, "Votre compte producteur ne permet pas de créer de catalogue.")), 0;
    return pid;
}

static int catalog_new_get(halle_request *r, void *ud)
{
    (void)ud;
    if (!need_producer(r))
        return HALLE_OK;
    return new_catalog_page(r, 200, NULL);
}

static int catalog_create(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    char name[CATALOG_NAME_MAX + 1], desc[CATALOG_DESC_MAX + 1];
    if (mk_get_field(r, "name", name, sizeof name, 0) || !*name)
        return new_catalog_page(r, 422, mk_api->tr(r, "Donnez un nom au catalogue (120 caractères au plus)."));
    if (mk_get_field(r, "description", desc, sizeof desc, 1))
        return new_catalog_page(r, 422, mk_api->tr(r, "Description trop longue (2000 caractères au plus)."));
    char now[32];
    mk_now(now, sizeof now);
    int64_t id;
    if (mk_api->db_insert(mk_host, &id,
                          "INSERT INTO market_catalogs (producer_id, name, description, created_at) VALUES (?, ?, ?, ?) "
                          "RETURNING id",
                          "Isss", pid, name, desc, now) < 0)
        return mk_error(r, 500, NULL);
    if (mk_fold_rows("market_catalogs", id) != HALLE_OK)
        return mk_error(r, 500, NULL);
    char loc[64];
    snprintf(loc, sizeof loc, "/producer/catalogs/%lld?done=created", (long long)id);
    return mk_api->resp_redirect(r, loc);
}

static const char *done_message(halle_request *r, const char *done)
{
    static const struct {
        const char *key, *text;
    } msgs[] = {
        {"created", N_("Catalogue créé : ajoutez des produits un par un ou importez un fichier CSV.")},
        {"saved", N_("Catalogue enregistré.")},
        {"groups", N_("Les groupes à qui ce catalogue est proposé sont enregistrés.")},
        {"product", N_("Produit enregistré.")},
        {"deactivated", N_("Produit désactivé : il n'est plus proposé, mais les commandes passées le gardent.")},
    };
    for (size_t i = 0; done && i < sizeof msgs / sizeof msgs[0]; i++)
        if (!strcmp(done, msgs[i].key))
            return mk_api->tr(r, msgs[i].text);
    return NULL;
}

static json_t *offer_groups(const catalog *c)
{
    json_t *a = json_array();
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT g.id, g.name, EXISTS (SELECT 1 FROM market_catalog_groups cg "
                                      "WHERE cg.catalog_id = ? AND cg.group_id = g.id) "
                                      "FROM market_group_producers gp JOIN market_groups g ON g.id = gp.group_id "
                                      "WHERE gp.producer_id = ? AND gp.status = 'accepted' ORDER BY g.name LIMIT ?",
                                      "IIi", c->id, c->producer_id, MAX_OFFER_GROUPS);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        json_t *g = json_pack("{s:I, s:b}", "id", (json_int_t)mk_api->db_col_int(st, 0), "offered",
                              (int)mk_api->db_col_int(st, 2));
        mk_set_str(g, "name", col(st, 1));
        json_array_append_new(a, g);
    }
    mk_api->db_done(st);
    return a;
}

static int catalog_page(halle_request *r, const catalog *c, int status, const char *error)
{
    json_t *ctx = json_object();
    mk_set_str(ctx, "title", c->name);
    json_object_set_new(ctx, "catalog", catalog_json(c));
    int page = mk_page(r);
    const char *q = mk_query(r);
    char like[300];
    if (mk_like_pattern(q, like, sizeof like))
        snprintf(like, sizeof like, "%%");
    /* the (catalog_id, name) index serves both the count and the page */
    static const char *const where = "WHERE p.catalog_id = ? AND (p.name_folded LIKE ? ESCAPE '\\' OR p.ref_folded LIKE ? ESCAPE '\\') ";
    char sql[700];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM market_products p %s", where);
    long long total = 0;
    halle_stmt *st = mk_api->db_query(mk_host, sql, "Iss", c->id, like, like);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW)
        total = (long long)mk_api->db_col_int(st, 0);
    mk_api->db_done(st);
    snprintf(sql, sizeof sql,
             "SELECT p.id, p.ref, p.name, p.unit, p.quantity, p.price_cents, p.vat_rate_bp, p.organic, p.active, p.stock, "
             "k.name FROM market_products p LEFT JOIN market_categories k ON k.id = p.category_id %s"
             "ORDER BY p.name_folded, p.name, p.id LIMIT ? OFFSET ?", where);
    json_t *products = json_array();
    st = mk_api->db_query(mk_host, sql, "IssiI", c->id, like, like, MK_PER_PAGE, (int64_t)(page - 1) * MK_PER_PAGE);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        const char *lang = mk_api->req_lang(r);
        char price[40], vat[16], qty[32], stock[32] = "";
        mk_price_text(lang, mk_api->db_col_int(st, 5), price, sizeof price);
        mk_vat_text(lang, (int)mk_api->db_col_int(st, 6), vat, sizeof vat);
        mk_decimal_text(lang, mk_api->db_col_double(st, 4), qty, sizeof qty);
        if (mk_api->db_col_text(st, 9))
            mk_decimal_text(lang, mk_api->db_col_double(st, 9), stock, sizeof stock);
        json_t *p = json_pack("{s:I, s:b, s:b}", "id", (json_int_t)mk_api->db_col_int(st, 0), "organic",
                              (int)mk_api->db_col_int(st, 7), "active", (int)mk_api->db_col_int(st, 8));
        mk_set_str(p, "ref", col(st, 1));
        mk_set_str(p, "name", col(st, 2));
        mk_set_str(p, "unit", mk_api->tr(r, mk_unit_label(col(st, 3))));
        mk_set_str(p, "quantity", qty);
        mk_set_str(p, "price", price);
        mk_set_str(p, "vat", vat);
        mk_set_str(p, "stock", stock);
        mk_set_str(p, "category", col(st, 10));
        json_array_append_new(products, p);
    }
    mk_api->db_done(st);
    json_object_set_new(ctx, "products", products);
    json_object_set_new(ctx, "pagination", mk_pagination(page, total, q));
    char base[64];
    snprintf(base, sizeof base, "/producer/catalogs/%lld", (long long)c->id);
    mk_set_str(ctx, "base", base);
    mk_set_str(ctx, "q", q);
    json_object_set_new(ctx, "groups", offer_groups(c));
    const char *ok = done_message(r, mk_api->req_param(r, "done"));
    if (ok && !error)
        mk_set_str(ctx, "ok", ok);
    if (error)
        mk_set_str(ctx, "error", error);
    return render(r, status, "market/producers/catalog", ctx);
}

static int catalog_get(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    return catalog_page(r, &c, 200, NULL);
}

static int catalog_post(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    char name[CATALOG_NAME_MAX + 1], desc[CATALOG_DESC_MAX + 1];
    if (mk_get_field(r, "name", name, sizeof name, 0) || !*name)
        return catalog_page(r, &c, 422, mk_api->tr(r, "Donnez un nom au catalogue (120 caractères au plus)."));
    if (mk_get_field(r, "description", desc, sizeof desc, 1))
        return catalog_page(r, &c, 422, mk_api->tr(r, "Description trop longue (2000 caractères au plus)."));
    if (mk_api->db_run(mk_host, "UPDATE market_catalogs SET name = ?, description = ?, active = ? WHERE id = ?", "ssiI", name,
                       desc, *mk_param(r, "active") ? 1 : 0, c.id) < 0 ||
        mk_fold_rows("market_catalogs", c.id) != HALLE_OK)
        return mk_error(r, 500, NULL);
    char loc[64];
    snprintf(loc, sizeof loc, "/producer/catalogs/%lld?done=saved", (long long)c.id);
    return mk_api->resp_redirect(r, loc);
}

typedef struct offer_job {
    halle_request *r;
    int64_t catalog_id;
    int64_t ids[MAX_OFFER_GROUPS];
    size_t n;
} offer_job;

static int offer_tx(halle_host *h, void *ud)
{
    offer_job *j = ud;
    if (mk_api->db_run(h, "DELETE FROM market_catalog_groups WHERE catalog_id = ?", "I", j->catalog_id) < 0)
        return HALLE_ERROR;
    for (size_t i = 0; i < j->n; i++) {
        char name[40];
        snprintf(name, sizeof name, "group_%lld", (long long)j->ids[i]);
        if (*mk_param(j->r, name) &&
            mk_api->db_run(h, "INSERT INTO market_catalog_groups (catalog_id, group_id) VALUES (?, ?)", "II", j->catalog_id,
                           j->ids[i]) < 0)
            return HALLE_ERROR;
    }
    return HALLE_OK;
}

/* Only groups that accepted the producer can be chosen: the checkboxes read are those of the
 * accepted groups, whatever else the form carries. */
static int catalog_groups_post(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    offer_job *j = calloc(1, sizeof *j);
    if (!j)
        return mk_error(r, 500, NULL);
    j->r = r;
    j->catalog_id = c.id;
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT group_id FROM market_group_producers WHERE producer_id = ? AND status = 'accepted' "
                                      "ORDER BY group_id LIMIT ?", "Ii", c.producer_id, MAX_OFFER_GROUPS);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW && j->n < MAX_OFFER_GROUPS)
        j->ids[j->n++] = mk_api->db_col_int(st, 0);
    mk_api->db_done(st);
    int rc = mk_api->db_tx(mk_host, offer_tx, j);
    free(j);
    if (rc != HALLE_OK)
        return mk_error(r, 500, NULL);
    char loc[64];
    snprintf(loc, sizeof loc, "/producer/catalogs/%lld?done=groups", (long long)c.id);
    return mk_api->resp_redirect(r, loc);
}

/* ---- products ----------------------------------------------------------------------------- */

typedef struct product_form {
    char name[MK_NAME_MAX + 1], ref[MK_REF_MAX + 1], description[MK_DESC_MAX + 1];
    char quantity_raw[32], price_raw[32], vat_raw[16], stock_raw[32], category_raw[24];
    const char *unit;
    double quantity, stock;
    long long price;
    int vat, organic, has_stock, active;
    int64_t category;
    const void *image;
    size_t image_len;
    const char *image_type;
    int remove_image;
} product_form;

static const char *const unit_values[] = {"piece", "kg", "g", "l", "ml", "bulk"};
static const int vat_values[] = {550, 1000, 2000, 210, 0};

static int category_exists(int64_t id)
{
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT 1 FROM market_categories WHERE id = ?", "I", id);
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    mk_api->db_done(st);
    return found;
}

static void add_error(json_t *errors, const char *text)
{
    json_array_append_new(errors, json_string(text));
}

/* Reads the form into f; adds a message to errors for each wrong field. */
static void read_product_form(halle_request *r, int64_t catalog_id, int64_t product_id, product_form *f, json_t *errors)
{
    memset(f, 0, sizeof *f);
    if (mk_get_field(r, "name", f->name, sizeof f->name, 0) || !*f->name)
        add_error(errors, mk_api->tr(r, "Indiquez le nom du produit (200 caractères au plus, sur une ligne)."));
    if (mk_get_field(r, "ref", f->ref, sizeof f->ref, 0))
        add_error(errors, mk_api->tr(r, "Référence trop longue (64 caractères au plus)."));
    if (mk_get_field(r, "description", f->description, sizeof f->description, 1))
        add_error(errors, mk_api->tr(r, "Description trop longue (4000 caractères au plus)."));
    mk_get_field(r, "quantity", f->quantity_raw, sizeof f->quantity_raw, 0);
    mk_get_field(r, "price", f->price_raw, sizeof f->price_raw, 0);
    mk_get_field(r, "vat", f->vat_raw, sizeof f->vat_raw, 0);
    mk_get_field(r, "stock", f->stock_raw, sizeof f->stock_raw, 0);
    mk_get_field(r, "category", f->category_raw, sizeof f->category_raw, 0);
    f->unit = mk_unit_parse(mk_param(r, "unit"));
    if (!f->unit)
        add_error(errors, mk_api->tr(r, "Choisissez l'unité : pièce, kg, g, l, ml ou vrac."));
    f->quantity = 1;
    if (*f->quantity_raw && (mk_decimal_parse(f->quantity_raw, &f->quantity) || f->quantity <= 0))
        add_error(errors, mk_api->tr(r, "Quantité invalide : un nombre positif, par exemple 0,5."));
    f->price = mk_parse_price(f->price_raw);
    if (f->price <= 0)
        add_error(errors, mk_api->tr(r, "Prix TTC invalide : par exemple 12,50."));
    f->vat = mk_parse_vat(f->vat_raw);
    if (f->vat < 0 || !mk_vat_allowed(f->vat))
        add_error(errors, mk_api->tr(r, "Taux de TVA invalide : 0, 2,1, 5,5, 10 ou 20 (en pour cent)."));
    if (*f->stock_raw) {
        f->has_stock = 1;
        if (mk_decimal_parse(f->stock_raw, &f->stock))
            add_error(errors, mk_api->tr(r, "Stock invalide : un nombre positif, ou vide pour ne pas le suivre."));
    }
    if (*f->category_raw && (!(f->category = mk_id(f->category_raw)) || !category_exists(f->category)))
        add_error(errors, mk_api->tr(r, "Catégorie inconnue."));
    f->organic = *mk_param(r, "organic") != '\0';
    f->active = *mk_param(r, "active") != '\0';
    f->remove_image = *mk_param(r, "remove_image") != '\0';
    f->image = mk_api->req_file(r, "image", &f->image_len, NULL, NULL);
    if (f->image && f->image_len) {
        if (f->image_len > MK_IMAGE_MAX)
            add_error(errors, mk_api->tr(r, "Image trop lourde : 2 Mo au plus."));
        else if (!(f->image_type = mk_image_type(f->image, f->image_len)))
            add_error(errors, mk_api->tr(r, "Format d'image non accepté : PNG, JPEG ou WebP seulement."));
    } else {
        f->image = NULL;
        f->image_len = 0;
    }
    if (*f->ref) {
        halle_stmt *st = mk_api->db_query(mk_host, "SELECT 1 FROM market_products WHERE catalog_id = ? AND ref = ? AND id <> ?",
                                          "IsI", catalog_id, f->ref, product_id);
        if (st && mk_api->db_step(st) == HALLE_DB_ROW)
            add_error(errors, mk_api->tr(r, "Cette référence est déjà celle d'un autre produit du catalogue."));
        mk_api->db_done(st);
    }
}

/* The product form: values (a JSON object of the fields as typed), the choices, the errors. */
static int product_page(halle_request *r, int status, const catalog *c, int64_t product_id, json_t *values, json_t *errors)
{
    json_t *ctx = json_object();
    mk_set_str(ctx, "title", product_id ? mk_api->tr(r, "Modifier le produit") : mk_api->tr(r, "Nouveau produit"));
    json_object_set_new(ctx, "catalog", catalog_json(c));
    char action[80];
    if (product_id)
        snprintf(action, sizeof action, "/producer/products/%lld", (long long)product_id);
    else
        snprintf(action, sizeof action, "/producer/catalogs/%lld/products/new", (long long)c->id);
    mk_set_str(ctx, "action", action);
    json_object_set_new(ctx, "edit", json_boolean(product_id != 0));
    json_object_set_new(ctx, "id", json_integer(product_id));
    const char *unit = json_string_value(json_object_get(values, "unit"));
    json_t *units = json_array();
    for (size_t i = 0; i < sizeof unit_values / sizeof unit_values[0]; i++) {
        json_t *u = json_pack("{s:s, s:s, s:b}", "value", unit_values[i], "label",
                              mk_api->tr(r, mk_unit_label(unit_values[i])), "selected",
                              unit && !strcmp(unit, unit_values[i]));
        json_array_append_new(units, u);
    }
    json_object_set_new(ctx, "units", units);
    int vat = mk_parse_vat(json_string_value(json_object_get(values, "vat")));
    json_t *vats = json_array();
    for (size_t i = 0; i < sizeof vat_values / sizeof vat_values[0]; i++) {
        char v[16], label[16];
        mk_vat_format(vat_values[i], v, sizeof v);
        mk_vat_text(mk_api->req_lang(r), vat_values[i], label, sizeof label);
        json_array_append_new(vats,
                              json_pack("{s:s, s:s, s:b}", "value", v, "label", label, "selected", vat == vat_values[i]));
    }
    json_object_set_new(ctx, "vats", vats);
    int64_t cat = mk_id(json_string_value(json_object_get(values, "category")));
    json_t *cats = json_array();
    /* the taxonomy's order, each sub-category after its parent and named with it */
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT k.id, k.name, p.name FROM market_categories k LEFT JOIN market_categories p "
                                      "ON p.id = k.parent_id ORDER BY coalesce(k.parent_id, k.id), k.parent_id IS NOT NULL, "
                                      "k.id LIMIT 1000", "");
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        json_t *k = json_pack("{s:I, s:b}", "id", (json_int_t)mk_api->db_col_int(st, 0), "selected",
                              mk_api->db_col_int(st, 0) == cat);
        char label[300];
        if (mk_api->db_col_text(st, 2))
            snprintf(label, sizeof label, "%s › %s", col(st, 2), col(st, 1));
        else
            snprintf(label, sizeof label, "%s", col(st, 1));
        mk_set_str(k, "name", label);
        json_array_append_new(cats, k);
    }
    mk_api->db_done(st);
    json_object_set_new(ctx, "categories", cats);
    json_object_set_new(ctx, "product", values);
    if (errors && json_array_size(errors))
        json_object_set_new(ctx, "errors", errors);
    else
        json_decref(errors);
    return render(r, status, "market/producers/product", ctx);
}

static json_t *form_values(const product_form *f)
{
    json_t *v = json_object();
    mk_set_str(v, "name", f->name);
    mk_set_str(v, "ref", f->ref);
    mk_set_str(v, "description", f->description);
    mk_set_str(v, "unit", f->unit ? f->unit : "");
    mk_set_str(v, "quantity", f->quantity_raw);
    mk_set_str(v, "price", f->price_raw);
    mk_set_str(v, "vat", f->vat_raw);
    mk_set_str(v, "stock", f->stock_raw);
    mk_set_str(v, "category", f->category_raw);
    json_object_set_new(v, "organic", json_boolean(f->organic));
    json_object_set_new(v, "active", json_boolean(f->active));
    return v;
}

static int product_new_get(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    json_t *v = json_pack("{s:s, s:s, s:s, s:b}", "unit", "piece", "quantity", "1", "vat", "5,5", "active", 1);
    return product_page(r, 200, &c, 0, v, NULL);
}

static int product_new_post(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    product_form f;
    json_t *errors = json_array();
    read_product_form(r, c.id, 0, &f, errors);
    if (json_array_size(errors))
        return product_page(r, 422, &c, 0, form_values(&f), errors);
    json_decref(errors);
    char now[32];
    mk_now(now, sizeof now);
    int64_t new_id = 0;
    if (mk_api->db_insert(mk_host, &new_id,
                          "INSERT INTO market_products (catalog_id, producer_id, ref, name, description, unit, quantity, "
                          "price_cents, vat_rate_bp, organic, category_id, stock, image, image_type, active, created_at, "
                          "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, 0), CASE WHEN ? <> 0 THEN ? END, "
                          "CASE WHEN ? <> 0 THEN ? END, CASE WHEN ? <> 0 THEN ? END, ?, ?, ?) RETURNING id",
                          "IIssssdIiiIidibisiss", c.id, c.producer_id, f.ref, f.name, f.description, f.unit, f.quantity,
                          (int64_t)f.price, f.vat, f.organic, f.category, f.has_stock, f.stock, f.image != NULL,
                          f.image ? f.image : "", f.image_len, f.image != NULL, f.image_type ? f.image_type : "", f.active,
                          now, now) < 0 ||
        mk_fold_rows("market_products", new_id) != HALLE_OK)
        return mk_error(r, 500, NULL);
    char loc[64];
    snprintf(loc, sizeof loc, "/producer/catalogs/%lld?done=product", (long long)c.id);
    return mk_api->resp_redirect(r, loc);
}

/* The route's product and its catalog, when the user may edit it; 0 when answered. */
static int64_t need_product(halle_request *r, catalog *c)
{
    if (mk_need_login(r))
        return 0;
    int64_t pid = mk_id(mk_api->req_route_param(r, "pid"));
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT catalog_id FROM market_products WHERE id = ?", "I", pid);
    int64_t cid = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    if (!cid || !catalog_read(mk_host, cid, c))
        return mk_error(r, 404, mk_api->tr(r, "Ce produit n'existe pas.")), 0;
    if (!mk_api->can_name(r, HALLE_ACT_EDIT, "market.catalog", c->owner))
        return forbidden(r), 0;
    return pid;
}

static int product_get(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    int64_t pid = need_product(r, &c);
    if (!pid)
        return HALLE_OK;
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT name, ref, description, unit, quantity, price_cents, vat_rate_bp, organic, "
                                      "category_id, stock, active, image IS NOT NULL FROM market_products WHERE id = ?",
                                      "I", pid);
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 404, mk_api->tr(r, "Ce produit n'existe pas."));
    }
    /* the form's values are typed again: numbers as the page's language writes them, without
     * the euro sign (the parsers read a decimal comma or point) */
    const char *lang = mk_api->req_lang(r);
    char qty[32], price[32], vat[16], stock[32] = "", cat[24] = "";
    mk_decimal_text(lang, mk_api->db_col_double(st, 4), qty, sizeof qty);
    mk_price_format(mk_api->db_col_int(st, 5), price, sizeof price);
    mk_vat_format((int)mk_api->db_col_int(st, 6), vat, sizeof vat);
    if (mk_lang_is_english(lang)) {
        char *comma = strchr(price, ',');
        if (comma)
            *comma = '.';
    }
    if (mk_api->db_col_text(st, 9))
        mk_decimal_text(lang, mk_api->db_col_double(st, 9), stock, sizeof stock);
    if (mk_api->db_col_int(st, 8))
        snprintf(cat, sizeof cat, "%lld", (long long)mk_api->db_col_int(st, 8));
    json_t *v = json_object();
    mk_set_str(v, "name", col(st, 0));
    mk_set_str(v, "ref", col(st, 1));
    mk_set_str(v, "description", col(st, 2));
    mk_set_str(v, "unit", col(st, 3));
    mk_set_str(v, "quantity", qty);
    mk_set_str(v, "price", price);
    mk_set_str(v, "vat", vat);
    mk_set_str(v, "stock", stock);
    mk_set_str(v, "category", cat);
    json_object_set_new(v, "organic", json_boolean(mk_api->db_col_int(st, 7)));
    json_object_set_new(v, "active", json_boolean(mk_api->db_col_int(st, 10)));
    if (mk_api->db_col_int(st, 11)) {
        char url[64];
        snprintf(url, sizeof url, "/products/%lld/image", (long long)pid);
        mk_set_str(v, "image_url", url);
    }
    mk_api->db_done(st);
    return product_page(r, 200, &c, pid, v, NULL);
}

static int product_post(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    int64_t pid = need_product(r, &c);
    if (!pid)
        return HALLE_OK;
    product_form f;
    json_t *errors = json_array();
    read_product_form(r, c.id, pid, &f, errors);
    if (json_array_size(errors))
        return product_page(r, 422, &c, pid, form_values(&f), errors);
    json_decref(errors);
    char now[32];
    mk_now(now, sizeof now);
    /* the image changes only when a new one is sent or its removal asked for */
    int set_image = f.image != NULL || f.remove_image;
    if (mk_api->db_run(mk_host,
                       "UPDATE market_products SET ref = ?, name = ?, description = ?, unit = ?, quantity = ?, "
                       "price_cents = ?, vat_rate_bp = ?, organic = ?, category_id = NULLIF(?, 0), "
                       "stock = CASE WHEN ? <> 0 THEN ? END, active = ?, "
                       "image = CASE WHEN ? <> 0 THEN (CASE WHEN ? <> 0 THEN ? END) ELSE image END, "
                       "image_type = CASE WHEN ? <> 0 THEN (CASE WHEN ? <> 0 THEN ? END) ELSE image_type END, "
                       "updated_at = ? WHERE id = ?",
                       "ssssdIiiIidiiibiissI", f.ref, f.name, f.description, f.unit, f.quantity, (int64_t)f.price, f.vat,
                       f.organic, f.category, f.has_stock, f.stock, f.active, set_image, f.image != NULL,
                       f.image ? f.image : "", f.image_len, set_image, f.image != NULL, f.image_type ? f.image_type : "",
                       now, pid) < 0 ||
        mk_fold_rows("market_products", pid) != HALLE_OK)
        return mk_error(r, 500, NULL);
    char loc[64];
    snprintf(loc, sizeof loc, "/producer/catalogs/%lld?done=product", (long long)c.id);
    return mk_api->resp_redirect(r, loc);
}

static int product_delete(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    int64_t pid = need_product(r, &c);
    if (!pid)
        return HALLE_OK;
    char now[32];
    mk_now(now, sizeof now);
    if (mk_api->db_run(mk_host, "UPDATE market_products SET active = 0, updated_at = ? WHERE id = ?", "sI", now, pid) < 0)
        return mk_error(r, 500, NULL);
    char loc[64];
    snprintf(loc, sizeof loc, "/producer/catalogs/%lld?done=deactivated", (long long)c.id);
    return mk_api->resp_redirect(r, loc);
}

static int product_image(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = mk_id(mk_api->req_route_param(r, "pid"));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT p.image_type, p.image, p.active <> 0 AND c.active <> 0, u.user_id "
                                      "FROM market_products p JOIN market_catalogs c ON c.id = p.catalog_id "
                                      "JOIN market_producers u ON u.id = p.producer_id WHERE p.id = ? AND p.image IS NOT NULL",
                                      "I", pid);
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 404, mk_api->tr(r, "Ce produit n'a pas d'image."));
    }
    /* as a blob: on PostgreSQL the text of a bytea is its hex escape */
    const char *type = mk_api->db_col_text(st, 0);
    const void *data = mk_api->db_col_blob(st, 1);
    size_t len = mk_api->db_col_bytes(st, 1);
    int visible = mk_api->db_col_int(st, 2) || mk_api->can_name(r, HALLE_ACT_EDIT, "market.catalog", mk_api->db_col_int(st, 3));
    int rc;
    if (!visible || !type || !data || len == 0) {
        rc = mk_error(r, 404, mk_api->tr(r, "Ce produit n'a pas d'image."));
    } else {
        mk_api->resp_header(r, "Content-Type", type);
        mk_api->resp_header(r, "Cache-Control", "public, max-age=300");
        rc = mk_api->resp_write(r, data, len) == HALLE_OK ? HALLE_OK : HALLE_ERROR;
    }
    mk_api->db_done(st);
    return rc;
}

/* ---- CSV import and export ------------------------------------------------------------------ */

typedef struct categories {
    mk_csv_category *items;
    size_t n;
} categories;

static void categories_free(categories *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free((char *)c->items[i].slug);
        free((char *)c->items[i].name);
    }
    free(c->items);
    c->items = NULL;
    c->n = 0;
}

static int categories_load(halle_host *h, categories *c)
{
    memset(c, 0, sizeof *c);
    size_t cap = 0;
    int ok = 1;
    halle_stmt *st = mk_api->db_query(h, "SELECT id, slug, name FROM market_categories ORDER BY id LIMIT 1000", "");
    if (!st)
        return HALLE_ERROR;
    while (ok && mk_api->db_step(st) == HALLE_DB_ROW) {
        if (c->n == cap) {
            cap = cap ? cap * 2 : 32;
            mk_csv_category *items = realloc(c->items, cap * sizeof *items);
            if (!items) {
                ok = 0;
                break;
            }
            c->items = items;
        }
        mk_csv_category *k = &c->items[c->n++];
        k->id = mk_api->db_col_int(st, 0);
        k->slug = strdup(col(st, 1));
        k->name = strdup(col(st, 2));
        ok = k->slug && k->name;
    }
    mk_api->db_done(st);
    if (!ok) {
        categories_free(c);
        return HALLE_ERROR;
    }
    return HALLE_OK;
}

typedef struct import_job {
    mk_csv_import *imp;
    int64_t catalog_id, producer_id;
    size_t created, updated;
    int verbose;   /* progress on stderr (the command line) */
    char now[32];
} import_job;

/* Lines with a reference the catalog has already update that product instead of adding one;
 * the columns the file lacks keep their values. */
static int import_tx(halle_host *h, void *ud)
{
    import_job *j = ud;
    mk_csv_import *imp = j->imp;
    halle_stmt *st = mk_api->db_query(h, "SELECT id, ref FROM market_products WHERE catalog_id = ? AND ref <> '' ORDER BY id",
                                      "I", j->catalog_id);
    if (!st)
        return HALLE_ERROR;
    while (mk_api->db_step(st) == HALLE_DB_ROW) {
        mk_csv_product *p = mk_csv_find_ref(imp, col(st, 1));
        if (p && !p->existing_id)
            p->existing_id = mk_api->db_col_int(st, 0);
    }
    mk_api->db_done(st);
    const int *has = imp->has_col;
    for (size_t i = 0; i < imp->nrows; i++) {
        mk_csv_product *p = &imp->rows[i];
        int rc;
        if (p->existing_id) {
            rc = mk_api->db_run(h,
                                "UPDATE market_products SET name = ?, price_cents = ?, vat_rate_bp = ?, "
                                "description = CASE WHEN ? <> 0 THEN ? ELSE description END, "
                                "unit = CASE WHEN ? <> 0 THEN ? ELSE unit END, "
                                "quantity = CASE WHEN ? <> 0 THEN ? ELSE quantity END, "
                                "organic = CASE WHEN ? <> 0 THEN ? ELSE organic END, "
                                "category_id = CASE WHEN ? <> 0 THEN NULLIF(?, 0) ELSE category_id END, "
                                "stock = CASE WHEN ? <> 0 THEN (CASE WHEN ? <> 0 THEN ? END) ELSE stock END, "
                                "updated_at = ? WHERE id = ?",
                                "sIiisisidiiiIiidsI", p->name, (int64_t)p->price_cents, p->vat_bp, has[MK_COL_DESC],
                                p->description, has[MK_COL_UNIT], p->unit, has[MK_COL_QTY], p->quantity, has[MK_COL_ORGANIC],
                                p->organic, has[MK_COL_CATEGORY], p->category_id, has[MK_COL_STOCK], p->has_stock, p->stock,
                                j->now, p->existing_id);
            j->updated++;
        } else {
            rc = mk_api->db_run(h,
                                "INSERT INTO market_products (catalog_id, producer_id, ref, name, description, unit, quantity, "
                                "price_cents, vat_rate_bp, organic, category_id, stock, created_at, updated_at) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, 0), CASE WHEN ? <> 0 THEN ? END, ?, ?)",
                                "IIssssdIiiIidss", j->catalog_id, j->producer_id, p->ref, p->name, p->description, p->unit,
                                p->quantity, (int64_t)p->price_cents, p->vat_bp, p->organic, p->category_id, p->has_stock,
                                p->stock, j->now, j->now);
            j->created++;
        }
        if (rc < 0)
            return HALLE_ERROR;
        if (p->existing_id && mk_fold_rows("market_products", p->existing_id) != HALLE_OK)
            return HALLE_ERROR;
        if (j->verbose && ((i + 1) % 1000 == 0 || i + 1 == imp->nrows))
            fprintf(stderr, "import: %zu/%zu lignes importées\n", i + 1, imp->nrows);
    }
    return mk_fold_rows("market_products", 0); /* the new rows */
}

/* A problem that is not a line's, added to the report. */
static void report_error(mk_csv_import *imp, const char *msg)
{
    char *m = imp->nlisted < MK_CSV_MAX_ERRORS ? strdup(msg) : NULL;
    if (m)
        imp->errors[imp->nlisted++] = m;
    imp->nerrors++;
}

/* Checks and imports data into the catalog. Returns HALLE_OK when imported; otherwise the
 * report (imp->errors) says why. */
static int import_data(halle_host *h, int64_t catalog_id, int64_t producer_id, const char *data, size_t len,
                       mk_csv_import *imp, import_job *job, mk_csv_progress progress)
{
    categories cats;
    if (categories_load(h, &cats) != HALLE_OK) {
        report_error(imp, mk_api->tr(imp->req, "Les catégories n'ont pas pu être lues : réessayez."));
        return HALLE_ERROR;
    }
    mk_err err = {0, ""};
    int rc = mk_csv_parse(imp, data, len, cats.items, cats.n, progress, NULL, &err);
    categories_free(&cats);
    if (rc != MK_OK)
        return HALLE_ERROR;
    job->imp = imp;
    job->catalog_id = catalog_id;
    job->producer_id = producer_id;
    mk_now(job->now, sizeof job->now);
    if (mk_api->db_tx(h, import_tx, job) != HALLE_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, mk_api->tr(imp->req, "L'enregistrement a échoué, rien n'a été importé : %s"),
                 mk_api->last_error(h));
        report_error(imp, msg);
        return HALLE_ERROR;
    }
    return HALLE_OK;
}

static int import_post(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    json_t *ctx = json_object();
    mk_set_str(ctx, "title", mk_api->tr(r, "Import de produits"));
    json_object_set_new(ctx, "catalog", catalog_json(&c));
    size_t len = 0;
    const void *data = mk_api->req_file(r, "file", &len, NULL, NULL);
    if (!data || !len) {
        json_object_set_new(ctx, "errors", json_pack("[s]", mk_api->tr(r, "Choisissez le fichier CSV à importer.")));
        return render(r, 422, "market/producers/import", ctx);
    }
    if (len > WEB_IMPORT_MAX) {
        json_object_set_new(ctx, "errors",
                            json_pack("[s]", mk_api->tr(r, "Fichier trop gros : 10 Mo au plus. Découpez-le.")));
        return render(r, 422, "market/producers/import", ctx);
    }
    mk_csv_import imp;
    memset(&imp, 0, sizeof imp);
    imp.req = r;
    import_job job;
    memset(&job, 0, sizeof job);
    int rc = import_data(mk_host, c.id, c.producer_id, data, len, &imp, &job, NULL);
    if (rc == HALLE_OK) {
        json_object_set_new(ctx, "ok", json_true());
        json_object_set_new(ctx, "imported", json_integer((json_int_t)imp.nrows));
        json_object_set_new(ctx, "created", json_integer((json_int_t)job.created));
        json_object_set_new(ctx, "updated", json_integer((json_int_t)job.updated));
    } else {
        json_t *errors = json_array();
        for (size_t i = 0; i < imp.nlisted; i++)
            json_array_append_new(errors, json_string(imp.errors[i]));
        if (!imp.nlisted)
            add_error(errors, mk_api->tr(r, "Le fichier n'a pas pu être lu."));
        json_object_set_new(ctx, "errors", errors);
        json_object_set_new(ctx, "error_count", json_integer((json_int_t)imp.nerrors));
        if (imp.nerrors > imp.nlisted)
            json_object_set_new(ctx, "more", json_integer((json_int_t)(imp.nerrors - imp.nlisted)));
    }
    mk_csv_free(&imp);
    return render(r, rc == HALLE_OK ? 200 : 422, "market/producers/import", ctx);
}

/* One text field of the export: quoted (by libcsv) only when it has to be. */
static int put_text(halle_request *r, const char *s, int last)
{
    size_t n = strlen(s);
    int rc;
    if (strpbrk(s, ";\"\r\n") || (n && (s[0] == ' ' || s[n - 1] == ' '))) {
        size_t need = csv_write2(NULL, 0, s, n, '"');
        char *buf = malloc(need ? need : 1);
        if (!buf)
            return HALLE_ERROR;
        csv_write2(buf, need, s, n, '"');
        rc = mk_api->resp_write(r, buf, need);
        free(buf);
    } else {
        rc = mk_api->resp_write(r, s, n);
    }
    if (rc == HALLE_OK)
        rc = mk_api->resp_write(r, last ? "\r\n" : ";", last ? 2 : 1);
    return rc;
}

static int export_get(halle_request *r, void *ud)
{
    (void)ud;
    catalog c;
    if (!need_catalog(r, mk_id(mk_api->req_route_param(r, "id")), &c))
        return HALLE_OK;
    mk_api->resp_header(r, "Content-Type", "text/csv; charset=utf-8");
    char disp[80];
    snprintf(disp, sizeof disp, "attachment; filename=\"catalogue-%lld.csv\"", (long long)c.id);
    mk_api->resp_header(r, "Content-Disposition", disp);
    mk_api->resp_header(r, "Cache-Control", "no-store");
    /* the BOM tells spreadsheets the file is UTF-8 */
    static const char head[] = "\xef\xbb\xbfréférence;nom;description;catégorie;unité;quantité;prix;tva;bio;stock\r\n";
    int rc = mk_api->resp_write(r, head, sizeof head - 1);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT p.ref, p.name, p.description, k.name, p.unit, p.quantity, p.price_cents, "
                                      "p.vat_rate_bp, p.organic, p.stock FROM market_products p LEFT JOIN market_categories k "
                                      "ON k.id = p.category_id WHERE p.catalog_id = ? AND p.active = 1 ORDER BY p.name, p.id",
                                      "I", c.id);
    while (rc == HALLE_OK && st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char qty[32], price[32], vat[16], stock[32] = "";
        mk_decimal_format(mk_api->db_col_double(st, 5), qty, sizeof qty);
        mk_price_format(mk_api->db_col_int(st, 6), price, sizeof price);
        mk_vat_format((int)mk_api->db_col_int(st, 7), vat, sizeof vat);
        if (mk_api->db_col_text(st, 9))
            mk_decimal_format(mk_api->db_col_double(st, 9), stock, sizeof stock);
        const char *fields[] = {col(st, 0), col(st, 1), col(st, 2), col(st, 3), mk_unit_label(col(st, 4)), qty, price, vat,
                                mk_api->db_col_int(st, 8) ? "oui" : "non", stock};
        for (int i = 0; i < 10 && rc == HALLE_OK; i++)
            rc = put_text(r, fields[i], i == 9);
    }
    mk_api->db_done(st);
    return rc;
}

/* ---- the command line: halle market import --catalog ID FILE -------------------------------- */

static void cli_progress(void *ud, size_t done, size_t total)
{
    (void)ud;
    fprintf(stderr, "import: %zu/%zu lignes vérifiées\n", done, total);
}

static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "import: %s : %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    char *buf = NULL;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fprintf(stderr, "import: %s : ce n'est pas un fichier\n", path);
    } else if ((unsigned long long)sb.st_size > max) {
        fprintf(stderr, "import: %s : fichier trop gros (%zu Mo au plus)\n", path, max >> 20);
    } else if (!(buf = malloc((size_t)sb.st_size + 1))) {
        fprintf(stderr, "import: mémoire insuffisante\n");
    } else {
        *len = fread(buf, 1, (size_t)sb.st_size, f);
        if (ferror(f)) {
            fprintf(stderr, "import: %s : erreur de lecture\n", path);
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static int cmd_import(halle_host *h, int argc, char **argv)
{
    int64_t catalog_id = 0;
    const char *file = NULL;
    int usage = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--catalog") && i + 1 < argc)
            catalog_id = mk_id(argv[++i]);
        else if (!strncmp(argv[i], "--catalog=", 10))
            catalog_id = mk_id(argv[i] + 10);
        else if (argv[i][0] == '-' || file)
            usage = 1;
        else
            file = argv[i];
    }
    if (usage || !catalog_id || !file) {
        fprintf(stderr, "usage: halle market import --catalog ID FICHIER.csv\n");
        return 2;
    }
    catalog c;
    if (!catalog_read(h, catalog_id, &c)) {
        fprintf(stderr, "import: le catalogue %lld n'existe pas\n", (long long)catalog_id);
        return 1;
    }
    size_t len = 0;
    char *data = read_file(file, CLI_IMPORT_MAX, &len);
    if (!data)
        return 1;
    mk_csv_import imp;
    memset(&imp, 0, sizeof imp);
    import_job job;
    memset(&job, 0, sizeof job);
    job.verbose = 1;
    int rc = import_data(h, c.id, c.producer_id, data, len, &imp, &job, cli_progress);
    free(data);
    if (rc == HALLE_OK) {
        printf("%zu produits importés dans « %s » (%zu créés, %zu mis à jour)\n", imp.nrows, c.name, job.created, job.updated);
    } else {
        for (size_t i = 0; i < imp.nlisted; i++)
            fprintf(stderr, "%s\n", imp.errors[i]);
        if (imp.nerrors > imp.nlisted)
            fprintf(stderr, "… et %zu autres erreurs\n", imp.nerrors - imp.nlisted);
        fprintf(stderr, "import refusé : rien n'a été importé (%zu erreur(s))\n", imp.nerrors ? imp.nerrors : 1);
    }
    mk_csv_free(&imp);
    return rc == HALLE_OK ? 0 : 1;
}

int mk_catalog_register(halle_host *h, const halle_api *api)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
    } routes[] = {
        {HALLE_GET | HALLE_HEAD, "/producer/catalogs/new", catalog_new_get},
        {HALLE_POST, "/producer/catalogs", catalog_create},
        {HALLE_GET | HALLE_HEAD, "/producer/catalogs/(?<id>\\d{1,15})", catalog_get},
        {HALLE_POST, "/producer/catalogs/(?<id>\\d{1,15})", catalog_post},
        {HALLE_POST, "/producer/catalogs/(?<id>\\d{1,15})/groups", catalog_groups_post},
        {HALLE_GET | HALLE_HEAD, "/producer/catalogs/(?<id>\\d{1,15})/products/new", product_new_get},
        {HALLE_POST, "/producer/catalogs/(?<id>\\d{1,15})/products/new", product_new_post},
        {HALLE_POST, "/producer/catalogs/(?<id>\\d{1,15})/import", import_post},
        {HALLE_GET | HALLE_HEAD, "/producer/catalogs/(?<id>\\d{1,15})/export\\.csv", export_get},
        {HALLE_GET | HALLE_HEAD, "/producer/products/(?<pid>\\d{1,15})", product_get},
        {HALLE_POST, "/producer/products/(?<pid>\\d{1,15})", product_post},
        {HALLE_POST, "/producer/products/(?<pid>\\d{1,15})/delete", product_delete},
        {HALLE_GET | HALLE_HEAD, "/products/(?<pid>\\d{1,15})/image", product_image},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route(h, routes[i].methods, routes[i].pattern, routes[i].fn, NULL) != HALLE_OK)
            return HALLE_ERROR;
    return api->command(h, "import", "--catalog ID FILE", cmd_import) == HALLE_OK ? HALLE_OK : HALLE_ERROR;
}
