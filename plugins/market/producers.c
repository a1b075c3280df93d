/* Marketplace: producers' own accounts. A logged-in user opens their producer account
 * (SIRET with its Luhn key, charter accepted), adds photos, asks to join groups; visitors see
 * the public page. Catalogs and products are in catalog.c. */
#include "plugins/market/market.h"
#include "plugins/market/notify.h"

#include <stdio.h>
#include <string.h>

#include "plugins/market/csvimport.h"

#define MAX_PHOTOS 12
#define NAME_MAX_LEN 120
#define ADDRESS_MAX 300
#define TOWN_MAX 100
#define DESC_MAX 4000

/* ---- small helpers ------------------------------------------------------------------------- */

static int forbidden(halle_request *r)
{
    return mk_error(r, 403, mk_api->tr(r, "Cette page est réservée au producteur titulaire du compte."));
}

/* ---- the account form -------------------------------------------------------------------- */

typedef struct account_form {
    char business_name[NAME_MAX_LEN + 1];
    char siret[15];
    char siret_raw[64];
    char vat_number[64];
    char address[ADDRESS_MAX + 1];
    char postcode[16];
    char town[TOWN_MAX + 1];
    char description[DESC_MAX + 1];
} account_form;

/* French intra-community VAT number: FR, a key of 2 digits, the SIREN (9 digits); the key is
 * (12 + 3 × (SIREN mod 97)) mod 97. Normalised (blanks out, upper case) into out. */
static int vat_valid(const char *in, const char *siret, char *out, size_t len)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ' ' || *p == '.' || *p == '-')
            continue;
        if (n + 1 >= len)
            return 0;
        out[n++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    }
    out[n] = '\0';
    if (n != 13 || strncmp(out, "FR", 2))
        return 0;
    long long siren = 0;
    for (int i = 2; i < 13; i++)
        if (out[i] < '0' || out[i] > '9')
            return 0;
    for (int i = 4; i < 13; i++)
        siren = siren * 10 + (out[i] - '0');
    int key = (out[2] - '0') * 10 + (out[3] - '0');
    if (key != (12 + 3 * (siren % 97)) % 97)
        return 0;
    return !siret || !strncmp(out + 4, siret, 9);
}

/* Reads and checks the form; returns NULL or the message to show. */
static const char *read_account_form(halle_request *r, account_form *f)
{
    memset(f, 0, sizeof *f);
    int bad_name = mk_get_field(r, "business_name", f->business_name, sizeof f->business_name, 0);
    mk_get_field(r, "siret", f->siret_raw, sizeof f->siret_raw, 0);
    char vat_raw[64];
    int bad_vat = mk_get_field(r, "vat_number", vat_raw, sizeof vat_raw, 0);
    snprintf(f->vat_number, sizeof f->vat_number, "%s", vat_raw);
    int bad_address = mk_get_field(r, "address", f->address, sizeof f->address, 1);
    int bad_postcode = mk_get_field(r, "postcode", f->postcode, sizeof f->postcode, 0);
    int bad_town = mk_get_field(r, "town", f->town, sizeof f->town, 0);
    int bad_desc = mk_get_field(r, "description", f->description, sizeof f->description, 1);
    if (bad_name || !*f->business_name)
        return mk_api->tr(r, "Indiquez le nom de votre exploitation (120 caractères au plus).");
    if (!mk_siret_valid(f->siret_raw, f->siret))
        return mk_api->tr(r, "Numéro SIRET invalide : 14 chiffres, dont le dernier est une clé de contrôle. "
                             "Vérifiez-le sur votre avis de situation INSEE.");
    if (bad_vat)
        return mk_api->tr(r, "Numéro de TVA invalide.");
    if (*vat_raw) {
        char norm[32];
        if (!vat_valid(vat_raw, f->siret, norm, sizeof norm))
            return mk_api->tr(r, "Numéro de TVA intracommunautaire invalide : FR, une clé de 2 chiffres puis les "
                                 "9 chiffres de votre SIREN (le début de votre SIRET).");
        snprintf(f->vat_number, sizeof f->vat_number, "%s", norm);
    }
    if (bad_address)
        return mk_api->tr(r, "Adresse trop longue (300 caractères au plus).");
    if (bad_postcode || strlen(f->postcode) != 5 || strspn(f->postcode, "0123456789") != 5)
        return mk_api->tr(r, "Code postal invalide : 5 chiffres.");
    if (bad_town || !*f->town)
        return mk_api->tr(r, "Indiquez votre commune.");
    if (bad_desc)
        return mk_api->tr(r, "Présentation trop longue (4000 caractères au plus).");
    return NULL;
}

static json_t *form_json(const account_form *f)
{
    json_t *o = json_object();
    mk_set_str(o, "business_name", f->business_name);
    mk_set_str(o, "siret", *f->siret ? f->siret : f->siret_raw);
    mk_set_str(o, "vat_number", f->vat_number);
    mk_set_str(o, "address", f->address);
    mk_set_str(o, "postcode", f->postcode);
    mk_set_str(o, "town", f->town);
    mk_set_str(o, "description", f->description);
    return o;
}

static int account_page(halle_request *r, int status, int edit, json_t *form, const char *error)
{
    const char *title = edit ? mk_api->tr(r, "Mon compte producteur") : mk_api->tr(r, "Ouvrir un compte producteur");
    json_t *ctx = json_pack("{s:s, s:s, s:b, s:s}", "title", title,
                            "action", edit ? "/producer/profile" : "/producer/signup", "edit", edit, "charter_version",
                            MK_CHARTER_VERSION);
    if (!ctx) {
        json_decref(form);
        return mk_error(r, 500, NULL);
    }
    json_object_set_new(ctx, "form", form ? form : json_object());
    if (error)
        mk_set_str(ctx, "error", error);
    mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/producers/signup", ctx);
    json_decref(ctx);
    return rc;
}

static int signup_get(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    if (mk_current_producer(r))
        return mk_api->resp_redirect(r, "/producer");
    return account_page(r, 200, 0, NULL, NULL);
}

typedef struct signup_job {
    int64_t user_id;
    const account_form *f;
    char now[32];
    char slug[80];
} signup_job;

/* The slug, the account and the role, together or not at all. */
static int signup_tx(halle_host *h, void *ud)
{
    signup_job *j = ud;
    char base[64];
    mk_slugify(j->f->business_name, base, sizeof base);
    for (int i = 1;; i++) {
        if (i > 1000)
            return HALLE_ERROR;
        if (i == 1)
            snprintf(j->slug, sizeof j->slug, "%s", base);
        else
            snprintf(j->slug, sizeof j->slug, "%s-%d", base, i);
        halle_stmt *st = mk_api->db_query(h, "SELECT 1 FROM market_producers WHERE slug = ?", "s", j->slug);
        if (!st)
            return HALLE_ERROR;
        int taken = mk_api->db_step(st) == HALLE_DB_ROW;
        mk_api->db_done(st);
        if (!taken)
            break;
    }
    const account_form *f = j->f;
    int64_t new_id = 0;
    if (mk_api->db_insert(h, &new_id,
                          "INSERT INTO market_producers (user_id, slug, business_name, siret, vat_number, address, postcode, "
                          "town, description, charter_version, charter_accepted_at, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          "Isssssssssss", j->user_id, j->slug, f->business_name, f->siret, f->vat_number, f->address,
                          f->postcode, f->town, f->description, MK_CHARTER_VERSION, j->now, j->now) < 0 ||
        mk_fold_rows("market_producers", new_id) != HALLE_OK)
        return HALLE_ERROR;
    return mk_api->user_add_role(h, j->user_id, HALLE_ROLE_PRODUCER, 0) < 0 ? HALLE_ERROR : HALLE_OK;
}

static int signup_post(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    /* Always the logged-in user: an id sent with the form is never read, so nobody (a
     * coordinator included) opens an account for someone else. */
    int64_t uid = mk_api->req_user(r);
    if (mk_current_producer(r))
        return account_page(r, 409, 0, NULL,
                            mk_api->tr(r, "Vous avez déjà un compte producteur : un seul compte par personne."));
    account_form f;
    const char *error = read_account_form(r, &f);
    if (!error && !*mk_param(r, "charter"))
        error = mk_api->tr(r, "Vous devez accepter la charte des producteurs pour vendre.");
    if (error)
        return account_page(r, 422, 0, form_json(&f), error);
    signup_job j = {.user_id = uid, .f = &f};
    mk_now(j.now, sizeof j.now);
    if (mk_api->db_tx(mk_host, signup_tx, &j) != HALLE_OK) {
        if (mk_current_producer(r))
            return account_page(r, 409, 0, NULL,
                            mk_api->tr(r, "Vous avez déjà un compte producteur : un seul compte par personne."));
        mk_api->log(mk_host, HALLE_LOG_ERROR, "producer sign-up failed: %s", mk_api->last_error(mk_host));
        return mk_error(r, 500, mk_api->tr(r, "Le compte n'a pas pu être créé."));
    }
    return mk_api->resp_redirect(r, "/producer?done=signup");
}

/* The logged-in producer's id, or an answer already sent (login page, or the sign-up). */
static int64_t need_producer(halle_request *r)
{
    if (mk_need_login(r))
        return 0;
    int64_t pid = mk_current_producer(r);
    if (!pid)
        mk_api->resp_redirect(r, "/producer/signup");
    else if (!mk_api->can_name(r, HALLE_ACT_EDIT, "market.producer_account", mk_api->req_user(r)))
        return forbidden(r), 0;
    return pid;
}

static int profile_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT business_name, siret, vat_number, address, postcode, town, description "
                                      "FROM market_producers WHERE id = ?", "I", pid);
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 500, NULL);
    }
    json_t *form = json_object();
    static const char *const keys[] = {"business_name", "siret", "vat_number", "address", "postcode", "town", "description"};
    for (int i = 0; i < 7; i++)
        mk_set_str(form, keys[i], mk_api->db_col_text(st, i));
    mk_api->db_done(st);
    return account_page(r, 200, 1, form, NULL);
}

static int profile_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    account_form f;
    const char *error = read_account_form(r, &f);
    if (error)
        return account_page(r, 422, 1, form_json(&f), error);
    if (mk_api->db_run(mk_host,
                       "UPDATE market_producers SET business_name = ?, siret = ?, vat_number = ?, address = ?, "
                       "postcode = ?, town = ?, description = ? WHERE id = ?",
                       "sssssssI", f.business_name, f.siret, f.vat_number, f.address, f.postcode, f.town, f.description,
                       pid) < 0 ||
        mk_fold_rows("market_producers", pid) != HALLE_OK)
        return mk_error(r, 500, NULL);
    return mk_api->resp_redirect(r, "/producer?done=profile");
}

/* ---- the dashboard ------------------------------------------------------------------------ */

static const char *done_message(halle_request *r, const char *done)
{
    static const struct {
        const char *key, *text;
    } msgs[] = {
        {"signup", N_("Votre compte producteur est ouvert. Créez votre premier catalogue.")},
        {"profile", N_("Vos informations sont enregistrées.")},
        {"photo", N_("Photo ajoutée.")},
        {"photo-deleted", N_("Photo supprimée.")},
        {"ask", N_("Votre demande a été envoyée au groupe : son coordinateur l'acceptera ou la refusera.")},
    };
    for (size_t i = 0; done && i < sizeof msgs / sizeof msgs[0]; i++)
        if (!strcmp(done, msgs[i].key))
            return mk_api->tr(r, msgs[i].text);
    return NULL;
}

static const char *status_label(halle_request *r, const char *status)
{
    if (!strcmp(status, "accepted"))
        return mk_api->tr(r, "accepté");
    if (!strcmp(status, "pending"))
        return mk_api->tr(r, "en attente");
    if (!strcmp(status, "declined"))
        return mk_api->tr(r, "refusé");
    return status;
}

static json_t *photos_json(int64_t pid, const char *slug)
{
    json_t *a = json_array();
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT id FROM market_producer_photos WHERE producer_id = ? ORDER BY id "
                                               "LIMIT ?", "Ii", pid, MAX_PHOTOS);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        long long id = (long long)mk_api->db_col_int(st, 0);
        char url[160];
        snprintf(url, sizeof url, "/producers/%s/photos/%lld", slug, id);
        json_array_append_new(a, json_pack("{s:I, s:s}", "id", (json_int_t)id, "url", url));
    }
    mk_api->db_done(st);
    return a;
}

static int dashboard(halle_request *r, int status, const char *error)
{
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT business_name, slug, town, charter_version, charter_accepted_at "
                                               "FROM market_producers WHERE id = ?", "I", pid);
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 500, NULL);
    }
    json_t *ctx = json_object(), *producer = json_object();
    mk_set_str(producer, "business_name", mk_api->db_col_text(st, 0));
    mk_set_str(producer, "slug", mk_api->db_col_text(st, 1));
    mk_set_str(producer, "town", mk_api->db_col_text(st, 2));
    mk_set_str(producer, "charter_version", mk_api->db_col_text(st, 3));
    json_object_set_new(producer, "charter_accepted_at", mk_date_json(r, mk_api->db_col_text(st, 4)));
    char slug[80];
    snprintf(slug, sizeof slug, "%s", mk_api->db_col_text(st, 1) ? mk_api->db_col_text(st, 1) : "");
    mk_api->db_done(st);
    json_object_set_new(ctx, "producer", producer);
    mk_set_str(ctx, "title", mk_api->tr(r, "Espace producteur"));

    /* catalogs, paginated and searchable */
    int page = mk_page(r);
    const char *q = mk_query(r);
    char like[300];
    if (mk_like_pattern(q, like, sizeof like))
        snprintf(like, sizeof like, "%%");
    long long total = 0;
    st = mk_api->db_query(mk_host, "SELECT count(*) FROM market_catalogs WHERE producer_id = ? AND name_folded LIKE ? ESCAPE '\\'",
                          "Is", pid, like);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW)
        total = (long long)mk_api->db_col_int(st, 0);
    mk_api->db_done(st);
    json_t *cats = json_array();
    st = mk_api->db_query(mk_host,
                          "SELECT c.id, c.name, c.active, (SELECT count(*) FROM market_products p WHERE p.catalog_id = c.id) "
                          "FROM market_catalogs c WHERE c.producer_id = ? AND c.name_folded LIKE ? ESCAPE '\\' "
                          "ORDER BY c.name_folded, c.name, c.id LIMIT ? OFFSET ?",
                          "IsiI", pid, like, MK_PER_PAGE, (int64_t)(page - 1) * MK_PER_PAGE);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW)
        json_array_append_new(cats, json_pack("{s:I, s:s, s:b, s:I}", "id", (json_int_t)mk_api->db_col_int(st, 0), "name",
                                              mk_api->db_col_text(st, 1) ? mk_api->db_col_text(st, 1) : "", "active",
                                              (int)mk_api->db_col_int(st, 2), "products",
                                              (json_int_t)mk_api->db_col_int(st, 3)));
    mk_api->db_done(st);
    json_object_set_new(ctx, "catalogs", cats);
    json_object_set_new(ctx, "pagination", mk_pagination(page, total, q));
    mk_set_str(ctx, "base", "/producer");

    /* groups: accepted first, then pending and declined */
    json_t *groups = json_array();
    st = mk_api->db_query(mk_host,
                          "SELECT g.name, g.slug, gp.status FROM market_group_producers gp "
                          "JOIN market_groups g ON g.id = gp.group_id WHERE gp.producer_id = ? "
                          "ORDER BY gp.status = 'accepted' DESC, gp.status = 'pending' DESC, g.name LIMIT 200",
                          "I", pid);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        const char *s = mk_api->db_col_text(st, 2) ? mk_api->db_col_text(st, 2) : "";
        json_t *g = json_object();
        mk_set_str(g, "name", mk_api->db_col_text(st, 0));
        mk_set_str(g, "slug", mk_api->db_col_text(st, 1));
        mk_set_str(g, "status", s);
        mk_set_str(g, "status_label", status_label(r, s));
        json_object_set_new(g, "accepted", json_boolean(!strcmp(s, "accepted")));
        json_array_append_new(groups, g);
    }
    mk_api->db_done(st);
    json_object_set_new(ctx, "groups", groups);
    json_object_set_new(ctx, "photos", photos_json(pid, slug));
    json_object_set_new(ctx, "max_photos", json_integer(MAX_PHOTOS));

    const char *ok = done_message(r, mk_api->req_param(r, "done"));
    if (ok && !error)
        mk_set_str(ctx, "ok", ok);
    if (error)
        mk_set_str(ctx, "error", error);
    mk_api->resp_status(r, status);
    mk_list_flags(ctx);
    int rc = mk_render(r, "market/producers/dashboard", ctx);
    json_decref(ctx);
    return rc;
}

static int dashboard_get(halle_request *r, void *ud)
{
    (void)ud;
    return dashboard(r, 200, NULL);
}

static int ask_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    char slug[80];
    if (mk_get_field(r, "group", slug, sizeof slug, 0) || !*slug)
        return dashboard(r, 422,
                         mk_api->tr(r, "Indiquez le groupe (l'adresse de sa page : /groups/nom-du-groupe)."));
    /* people paste the whole address of the group's page */
    const char *s = strrchr(slug, '/');
    s = s ? s + 1 : slug;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT id FROM market_groups WHERE slug = ?", "s", s);
    int64_t gid = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    if (!gid)
        return dashboard(r, 422, mk_api->tr(r, "Ce groupe n'existe pas : vérifiez l'adresse de sa page."));
    char status[16] = "";
    st = mk_api->db_query(mk_host, "SELECT status FROM market_group_producers WHERE group_id = ? AND producer_id = ?", "II",
                          gid, pid);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW)
        snprintf(status, sizeof status, "%s", mk_api->db_col_text(st, 0) ? mk_api->db_col_text(st, 0) : "");
    mk_api->db_done(st);
    if (!strcmp(status, "accepted"))
        return dashboard(r, 409, mk_api->tr(r, "Ce groupe vous a déjà accepté."));
    if (!strcmp(status, "pending"))
        return dashboard(r, 409, mk_api->tr(r, "Votre demande à ce groupe est déjà en attente."));
    char now[32];
    mk_now(now, sizeof now);
    /* a declined producer may ask again: the request goes back to pending */
    if (mk_api->db_run(mk_host,
                       "INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) "
                       "VALUES (?, ?, 'pending', ?) ON CONFLICT (group_id, producer_id) DO UPDATE SET "
                       "status = 'pending', requested_at = excluded.requested_at, decided_at = NULL",
                       "IIs", gid, pid, now) < 0)
        return mk_error(r, 500, NULL);
    mk_notify_producer_request(gid, pid);
    return mk_api->resp_redirect(r, "/producer?done=ask");
}

/* ---- photos ------------------------------------------------------------------------------- */

static int photo_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    size_t len = 0;
    const void *data = mk_api->req_file(r, "photo", &len, NULL, NULL);
    if (!data || !len)
        return dashboard(r, 422, mk_api->tr(r, "Choisissez une photo à envoyer."));
    if (len > MK_IMAGE_MAX)
        return dashboard(r, 422,
                         mk_api->tr(r, "Photo trop lourde : 2 Mo au plus. Réduisez-la avant de l'envoyer."));
    const char *type = mk_image_type(data, len);
    if (!type)
        return dashboard(r, 422, mk_api->tr(r, "Format de photo non accepté : PNG, JPEG ou WebP seulement."));
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT count(*) FROM market_producer_photos WHERE producer_id = ?", "I", pid);
    long long n = st && mk_api->db_step(st) == HALLE_DB_ROW ? (long long)mk_api->db_col_int(st, 0) : 0;
    mk_api->db_done(st);
    if (n >= MAX_PHOTOS)
        return dashboard(r, 422,
                         mk_api->tr(r, "Vous avez déjà 12 photos : supprimez-en une avant d'en ajouter."));
    char now[32];
    mk_now(now, sizeof now);
    if (mk_api->db_run(mk_host, "INSERT INTO market_producer_photos (producer_id, content_type, data, created_at) "
                                "VALUES (?, ?, ?, ?)", "Isbs", pid, type, data, len, now) < 0)
        return mk_error(r, 500, NULL);
    return mk_api->resp_redirect(r, "/producer?done=photo");
}

static int photo_delete(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    int64_t id = mk_id(mk_api->req_route_param(r, "id"));
    /* The producer's own photo only. RETURNING tells whether a row went: another producer's
     * id (or a stale one) deletes nothing and must not be answered with a success message. */
    halle_stmt *st = mk_api->db_query(mk_host, "DELETE FROM market_producer_photos WHERE id = ? AND producer_id = ? "
                                               "RETURNING id", "II", id, pid);
    if (!st)
        return mk_error(r, 500, NULL);
    int rc = mk_api->db_step(st);
    while (rc == HALLE_DB_ROW && mk_api->db_step(st) == HALLE_DB_ROW)
        ;
    mk_api->db_done(st);
    if (rc == HALLE_DB_DONE)
        return mk_error(r, 404, mk_api->tr(r, "Cette photo n'existe pas ou n'est pas la vôtre."));
    if (rc != HALLE_DB_ROW)
        return mk_error(r, 500, NULL);
    return mk_api->resp_redirect(r, "/producer?done=photo-deleted");
}

static int photo_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t id = mk_id(mk_api->req_route_param(r, "id"));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT ph.content_type, ph.data FROM market_producer_photos ph "
                                      "JOIN market_producers p ON p.id = ph.producer_id WHERE p.slug = ? AND ph.id = ?",
                                      "sI", mk_api->req_route_param(r, "slug"), id);
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 404, mk_api->tr(r, "Cette photo n'existe pas."));
    }
    /* as a blob: on PostgreSQL the text of a bytea is its hex escape */
    const char *type = mk_api->db_col_text(st, 0);
    const void *data = mk_api->db_col_blob(st, 1);
    size_t len = mk_api->db_col_bytes(st, 1);
    if (type && data && len > 0) {
        mk_api->resp_header(r, "Content-Type", type);
        mk_api->resp_header(r, "Cache-Control", "public, max-age=3600");
        mk_api->resp_write(r, data, len);
    }
    mk_api->db_done(st);
    return HALLE_OK;
}

/* ---- the public page ------------------------------------------------------------------------ */

static int public_get(halle_request *r, void *ud)
{
    (void)ud;
    const char *slug = mk_api->req_route_param(r, "slug");
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT id, business_name, description, town, postcode FROM market_producers "
                                               "WHERE slug = ?", "s", slug ? slug : "");
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return mk_error(r, 404, mk_api->tr(r, "Ce producteur n'existe pas."));
    }
    int64_t pid = mk_api->db_col_int(st, 0);
    json_t *ctx = json_object(), *producer = json_object();
    mk_set_str(producer, "business_name", mk_api->db_col_text(st, 1));
    mk_set_str(producer, "description", mk_api->db_col_text(st, 2));
    mk_set_str(producer, "town", mk_api->db_col_text(st, 3));
    mk_set_str(producer, "postcode", mk_api->db_col_text(st, 4));
    mk_set_str(producer, "slug", slug);
    mk_set_str(ctx, "title", mk_api->db_col_text(st, 1));
    mk_api->db_done(st);
    json_object_set_new(ctx, "producer", producer);
    json_object_set_new(ctx, "photos", photos_json(pid, slug));

    int page = mk_page(r);
    const char *q = mk_query(r);
    char like[300];
    if (mk_like_pattern(q, like, sizeof like))
        snprintf(like, sizeof like, "%%");
    static const char *const from = "FROM market_products p JOIN market_catalogs c ON c.id = p.catalog_id "
                                    "WHERE p.producer_id = ? AND p.active = 1 AND c.active = 1 AND p.name_folded LIKE ? ESCAPE '\\' ";
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) %s", from);
    long long total = 0;
    st = mk_api->db_query(mk_host, sql, "Is", pid, like);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW)
        total = (long long)mk_api->db_col_int(st, 0);
    mk_api->db_done(st);
    snprintf(sql, sizeof sql,
             "SELECT p.id, p.name, p.description, p.unit, p.quantity, p.price_cents, p.organic, p.image IS NOT NULL "
             "%s ORDER BY p.name_folded, p.name, p.id LIMIT ? OFFSET ?", from);
    json_t *products = json_array();
    st = mk_api->db_query(mk_host, sql, "IsiI", pid, like, MK_PER_PAGE, (int64_t)(page - 1) * MK_PER_PAGE);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        char price[40], qty[32];
        mk_price_text(mk_api->req_lang(r), mk_api->db_col_int(st, 5), price, sizeof price);
        mk_decimal_text(mk_api->req_lang(r), mk_api->db_col_double(st, 4), qty, sizeof qty);
        json_t *p = json_object();
        json_object_set_new(p, "id", json_integer(mk_api->db_col_int(st, 0)));
        mk_set_str(p, "name", mk_api->db_col_text(st, 1));
        mk_set_str(p, "description", mk_api->db_col_text(st, 2));
        mk_set_str(p, "unit", mk_api->tr(r, mk_unit_label(mk_api->db_col_text(st, 3))));
        mk_set_str(p, "quantity", qty);
        mk_set_str(p, "price", price);
        json_object_set_new(p, "organic", json_boolean(mk_api->db_col_int(st, 6)));
        json_object_set_new(p, "image", json_boolean(mk_api->db_col_int(st, 7)));
        json_array_append_new(products, p);
    }
    mk_api->db_done(st);
    json_object_set_new(ctx, "products", products);
    json_object_set_new(ctx, "pagination", mk_pagination(page, total, q));
    char base[120];
    snprintf(base, sizeof base, "/producers/%s", slug);
    mk_set_str(ctx, "base", base);

    json_t *groups = json_array();
    st = mk_api->db_query(mk_host,
                          "SELECT g.name, g.slug, g.town FROM market_group_producers gp JOIN market_groups g "
                          "ON g.id = gp.group_id WHERE gp.producer_id = ? AND gp.status = 'accepted' "
                          "ORDER BY g.name LIMIT 200", "I", pid);
    while (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        json_t *g = json_object();
        mk_set_str(g, "name", mk_api->db_col_text(st, 0));
        mk_set_str(g, "slug", mk_api->db_col_text(st, 1));
        mk_set_str(g, "town", mk_api->db_col_text(st, 2));
        json_array_append_new(groups, g);
    }
    mk_api->db_done(st);
    json_object_set_new(ctx, "groups", groups);
    mk_list_flags(ctx);
    int rc = mk_render(r, "market/producers/public", ctx);
    json_decref(ctx);
    return rc;
}

int mk_producers_register(halle_host *h, const halle_api *api)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
    } routes[] = {
        {HALLE_GET | HALLE_HEAD, "/producer/signup", signup_get},
        {HALLE_POST, "/producer/signup", signup_post},
        {HALLE_GET | HALLE_HEAD, "/producer", dashboard_get},
        {HALLE_GET | HALLE_HEAD, "/producer/profile", profile_get},
        {HALLE_POST, "/producer/profile", profile_post},
        {HALLE_POST, "/producer/groups/ask", ask_post},
        {HALLE_POST, "/producer/photos", photo_post},
        {HALLE_POST, "/producer/photos/(?<id>\\d{1,15})/delete", photo_delete},
        {HALLE_GET | HALLE_HEAD, "/producers/(?<slug>[a-z0-9-]{1,80})", public_get},
        {HALLE_GET | HALLE_HEAD, "/producers/(?<slug>[a-z0-9-]{1,80})/photos/(?<id>\\d{1,15})", photo_get},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route(h, routes[i].methods, routes[i].pattern, routes[i].fn, NULL) != HALLE_OK)
            return HALLE_ERROR;
    return HALLE_OK;
}
