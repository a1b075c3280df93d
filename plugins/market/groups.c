/* Marketplace: local groups. The directory, creating a group, its public page (accepted
 * producers, the products offered to it, the join button), joining and leaving under each join
 * policy, and the coordinators' admin pages: settings, places, members, requests, waiting list,
 * producers and the group's look (theme, logo, colours, banner, intro, social links, with a
 * preview). Who may administer a group is decided by the core's can() alone. */
#include "plugins/market/market.h"
#include "plugins/market/notify.h"
#include "plugins/market/csvimport.h" /* mk_image_type: the same image check as producers' photos */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_NAME_MIN 2
#define GROUP_NAME_MAX 120
#define DESC_MAX 4000
#define ADDRESS_MAX 200
#define POSTCODE_MAX 10
#define TOWN_MAX 100
#define QUERY_MAX 100     /* bytes of search text kept: LIKE '%...%' work stays bounded */
#define PLACES_MAX 30
#define SHORT_LIST 20     /* requests shown on the admin page; the rest on their own pages */
#define PRODUCERS_SHOWN 100
#define MSG_SIZE 200      /* a form error message */
#define COORDINATED_MAX 64 /* the core keeps at most this many groups per coordinator */
#define THEME_MAX 64
#define BANNER_MAX 200
#define INTRO_MAX 20000   /* characters of Markdown */
#define LINK_MAX 300      /* bytes: a profile link is ASCII */
#define LOGO_MAX (1u << 20)
#define LOOK_MSG 400      /* the look's messages explain a contrast ratio: longer than MSG_SIZE */

typedef struct choice {
    const char *key;
    const char *label;
} choice;

/* The labels are French msgids, translated where they are shown (label_tr). */
static const choice kinds[] = {{"buying_group", N_("Groupement d'achat")},
                               {"amap", N_("AMAP")},
                               {"farm_shop", N_("Boutique à la ferme")},
                               {NULL, NULL}};

static const choice policies[] = {{"open", N_("Adhésion libre")},
                                  {"approval", N_("Adhésion sur demande")},
                                  {"waiting_list", N_("Liste d'attente")},
                                  {"closed", N_("Fermé aux nouveaux membres")},
                                  {"full", N_("Complet")},
                                  {NULL, NULL}};

static const choice producer_statuses[] = {
    {"pending", N_("En attente")}, {"accepted", N_("Accepté")}, {"declined", N_("Refusé")}, {NULL, NULL}};

/* What ?done= says after a redirect: a fixed list, so the URL cannot put text on the page. */
static const choice notices[] = {
    {"joined", N_("Bienvenue : vous êtes membre du groupe.")},
    {"requested", N_("Votre demande a été transmise aux coordinateurs du groupe.")},
    {"waiting", N_("Vous êtes inscrit sur la liste d'attente.")},
    {"left", N_("Vous avez quitté le groupe.")},
    {"created", N_("Votre groupe est créé : vous en êtes le coordinateur.")},
    {"settings", N_("Réglages enregistrés.")},
    {"place-added", N_("Lieu ajouté.")},
    {"place-deleted", N_("Lieu supprimé.")},
    {"accepted", N_("Demande acceptée.")},
    {"declined", N_("Demande refusée.")},
    {"removed", N_("Membre retiré du groupe.")},
    {"admitted", N_("La première personne de la liste d'attente est admise.")},
    {"nobody", N_("La liste d'attente est vide.")},
    {"producer-accepted", N_("Producteur accepté.")},
    {"producer-declined", N_("Producteur refusé.")},
    {"unchanged", N_("Rien n'a changé.")},
    {"plugin-on", N_("Extension activée pour la page du groupe.")},
    {"plugin-off", N_("Extension désactivée pour la page du groupe.")},
    {"appearance", N_("Apparence enregistrée.")},
    {NULL, NULL}};

static const char *label(const choice *c, const char *key)
{
    for (; key && c->key; c++)
        if (!strcmp(c->key, key))
            return c->label;
    return NULL;
}

/* The label in the page's language; NULL for an unknown key. */
static const char *label_tr(halle_request *r, const choice *c, const char *key)
{
    const char *l = label(c, key);
    return l ? mk_api->tr(r, l) : NULL;
}

/* The <option>s of a <select>: [{value, label, selected}]. */
static json_t *options(halle_request *r, const choice *c, const char *current)
{
    json_t *a = json_array();
    for (; a && c->key; c++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "value", c->key, "label", mk_api->tr(r, c->label),
                                           "selected", current && !strcmp(current, c->key)));
    return a;
}

/* ---- text ----------------------------------------------------------------------------------- */

/* The number of characters in s when it is valid UTF-8 without control characters (newlines
 * and tabs allowed when multiline), else -1: what is stored must be safe to show anywhere. */
#define TEXT_MAX (1u << 20)
#define text_chars(s, multiline) mk_api->text_valid((s), TEXT_MAX, (multiline))

/* Copies s without its leading and trailing blanks into out; -1 when it does not fit. */
static int trimmed(const char *s, char *out, size_t size)
{
    if (!s)
        s = "";
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    if (n >= size) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* The search text (?q=): cut to QUERY_MAX bytes on a character boundary, "" when not UTF-8. */
static const char *search_text(halle_request *r, char *out, size_t size)
{
    return mk_search_text(r, out, size, QUERY_MAX);
}

/* 0.5, "kg" -> "0,5 kg" in French, "0.5 kg" in English; "pièce" and "vrac" translated. */
static void format_quantity(halle_request *r, double qty, const char *unit, char *out, size_t size)
{
    char num[32];
    if (!(qty > 0 && qty < 1e9))
        qty = 1;
    mk_decimal_text(mk_api->req_lang(r), qty, num, sizeof num);
    snprintf(out, size, "%s %s", num, mk_api->tr(r, mk_unit_label(unit ? unit : "")));
}

/* "2026-03-07T10:00:00Z" -> "07/03/2026"; anything else as it is. */
static int64_t parse_id(const char *s)
{
    if (!s || !*s || strlen(s) > 18)
        return 0;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (*s - '0');
    }
    return v;
}

/* ---- rows as JSON ---------------------------------------------------------------------------- */

/* One row as an object; column names prefixed with '#' are integers, with '?' booleans, the
 * others text (NULL stays null). */
static json_t *row_object(halle_stmt *st, const char *const *cols)
{
    json_t *o = json_object();
    for (int i = 0; o && cols[i]; i++) {
        const char *k = cols[i];
        json_t *v;
        if (*k == '#') {
            v = json_integer(mk_api->db_col_int(st, i));
            k++;
        } else if (*k == '?') {
            v = json_boolean(mk_api->db_col_int(st, i) != 0);
            k++;
        } else {
            const char *s = mk_api->db_col_text(st, i);
            v = s ? json_string(s) : json_null();
            if (!v)
                v = json_string(""); /* not UTF-8: written by something else than this module */
        }
        json_object_set_new(o, k, v);
    }
    return o;
}

/* Every row of st (whose SQL has a LIMIT), or NULL on error; st is finished. */
static json_t *rows_array(halle_stmt *st, const char *const *cols)
{
    json_t *a = st ? json_array() : NULL;
    int rc = HALLE_DB_DONE;
    while (a && (rc = mk_api->db_step(st)) == HALLE_DB_ROW)
        json_array_append_new(a, row_object(st, cols));
    mk_api->db_done(st);
    if (rc < 0) {
        json_decref(a);
        return NULL;
    }
    return a;
}

/* The first column of the first row as an integer (a count), -1 on error; st is finished. */
static long long first_int(halle_stmt *st)
{
    long long v = st && mk_api->db_step(st) == HALLE_DB_ROW ? mk_api->db_col_int(st, 0) : -1;
    mk_api->db_done(st);
    return v;
}

static const char *str_of(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static json_t *list_pagination(int page, long long total, const char *q, const char *base)
{
    json_t *p = mk_pagination(page, total < 0 ? 0 : total, q);
    return json_pack("{s:o, s:s}", "pagination", p ? p : json_object(), "base", base);
}

/* ---- groups ------------------------------------------------------------------------------------ */

static const char *const group_cols[] = {"#id", "slug", "name", "description", "kind", "join_policy",
                                         "address", "postcode", "town", "theme", "#logo_size", "color_primary",
                                         "color_accent", "banner", "intro", "social", NULL};

/* The group of the route's slug with its labels, or NULL. */
static json_t *route_group(halle_request *r, int64_t *id)
{
    const char *slug = mk_api->req_route_param(r, "slug");
    *id = 0;
    if (!slug || strlen(slug) > 100)
        return NULL;
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT id, slug, name, description, kind, join_policy, address, postcode, "
                                      "town, theme, COALESCE(length(logo), 0), color_primary, color_accent, banner, "
                                      "intro, social FROM market_groups WHERE slug = ?",
                                      "s", slug);
    json_t *g = st && mk_api->db_step(st) == HALLE_DB_ROW ? row_object(st, group_cols) : NULL;
    mk_api->db_done(st);
    if (!g)
        return NULL;
    *id = json_integer_value(json_object_get(g, "id"));
    const char *k = label_tr(r, kinds, str_of(g, "kind")), *p = label_tr(r, policies, str_of(g, "join_policy"));
    json_object_set_new(g, "kind_label", json_string(k ? k : str_of(g, "kind")));
    json_object_set_new(g, "policy_label", json_string(p ? p : str_of(g, "join_policy")));
    return g;
}

static int not_found(halle_request *r)
{
    return mk_error(r, 404, mk_api->tr(r, "Ce groupe n'existe pas."));
}

/* The group of an admin route when the user may act on `object` for it; otherwise answers
 * (login, 404, 403) and returns NULL. */
static json_t *admin_group(halle_request *r, const char *capability, int64_t *gid)
{
    if (mk_need_login(r))
        return NULL;
    json_t *g = route_group(r, gid);
    if (!g) {
        not_found(r);
        return NULL;
    }
    if (!mk_api->can_name(r, HALLE_ACT_EDIT, capability, *gid)) {
        json_decref(g);
        mk_error(r, 403, mk_api->tr(r, "Cette page est réservée aux coordinateurs du groupe."));
        return NULL;
    }
    return g;
}

static int redirect_to(halle_request *r, const char *slug, const char *tail, const char *done)
{
    char url[300];
    snprintf(url, sizeof url, "/groups/%s%s%s%s", slug, tail, done ? "?done=" : "", done ? done : "");
    return mk_api->resp_redirect(r, url);
}

static int server_error(halle_request *r)
{
    mk_api->log(mk_host, HALLE_LOG_ERROR, "groups: %s", mk_api->last_error(mk_host));
    return mk_error(r, 500, NULL);
}

static void set_notice(halle_request *r, json_t *ctx)
{
    const char *n = label_tr(r, notices, mk_api->req_param(r, "done"));
    if (n)
        json_object_set_new(ctx, "notice", json_string(n));
}

/* ---- the group form (creation and settings) ------------------------------------------------------ */

typedef struct group_form {
    char name[4 * GROUP_NAME_MAX + 1];
    char description[4 * DESC_MAX + 1];
    char kind[16];
    char policy[16];
    char address[4 * ADDRESS_MAX + 1];
    char postcode[4 * POSTCODE_MAX + 1];
    char town[4 * TOWN_MAX + 1];
    char error[MSG_SIZE];
} group_form;

/* Reads and checks one text field into out: 0 when fine, else -1 with the message in
 * msg[MSG_SIZE], in the page's language (what, the field's name, is a msgid), unless msg holds
 * one already (the first problem is the one shown). A value that is not text, or too big for
 * out, comes back empty. */
static int read_text(halle_request *r, const char *field, char *out, size_t size, long min, long max, int multiline,
                     const char *what, char *msg)
{
    long n = trimmed(mk_api->req_param(r, field), out, size) < 0 ? max + 1 : text_chars(out, multiline);
    if (n >= min && n <= max)
        return 0;
    if (n < 0)
        out[0] = '\0';
    what = mk_api->tr(r, what);
    if (!msg[0] && n < 0)
        snprintf(msg, MSG_SIZE, mk_api->tr(r, "Le champ « %s » contient des caractères non valables."), what);
    else if (!msg[0] && n < min)
        snprintf(msg, MSG_SIZE, mk_api->tr(r, "Le champ « %s » doit compter de %ld à %ld caractères."), what, min, max);
    else if (!msg[0])
        snprintf(msg, MSG_SIZE, mk_api->tr(r, "Le champ « %s » ne doit pas dépasser %ld caractères."), what, max);
    return -1;
}

static int postcode_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == ' ' || *s == '-'))
            return 0;
    return 1;
}

/* One of the fixed choices into out, or -1 with msg. */
static int read_choice(halle_request *r, const char *field, const choice *c, char *out, size_t size, const char *error,
                       char *msg)
{
    if (trimmed(mk_api->req_param(r, field), out, size) == 0 && label(c, out))
        return 0;
    out[0] = '\0';
    if (!msg[0])
        snprintf(msg, MSG_SIZE, "%s", error);
    return -1;
}

/* Fills f from the request, every field even after a bad one so that the form shows what was
 * typed; 0 when valid, else -1 with the first problem in f->error. */
static int read_group_form(halle_request *r, group_form *f)
{
    char *e = f->error;
    memset(f, 0, sizeof *f);
    int bad = read_text(r, "name", f->name, sizeof f->name, GROUP_NAME_MIN, GROUP_NAME_MAX, 0, N_("Nom"), e);
    bad |= read_text(r, "description", f->description, sizeof f->description, 0, DESC_MAX, 1, N_("Description"), e);
    bad |= read_choice(r, "kind", kinds, f->kind, sizeof f->kind, mk_api->tr(r, "Choisissez le type de groupe."), e);
    bad |= read_choice(r, "join_policy", policies, f->policy, sizeof f->policy,
                       mk_api->tr(r, "Choisissez la politique d'adhésion."), e);
    bad |= read_text(r, "address", f->address, sizeof f->address, 0, ADDRESS_MAX, 0, N_("Adresse"), e);
    bad |= read_text(r, "postcode", f->postcode, sizeof f->postcode, 0, POSTCODE_MAX, 0, N_("Code postal"), e);
    bad |= read_text(r, "town", f->town, sizeof f->town, 0, TOWN_MAX, 0, N_("Ville"), e);
    if (!postcode_ok(f->postcode)) {
        if (!e[0])
            snprintf(e, MSG_SIZE, "%s", mk_api->tr(r, "Le code postal n'est pas valable."));
        bad = -1;
    }
    return bad ? -1 : 0;
}

/* The form's values for the template; a field that failed its checks shows empty. */
static json_t *form_json(halle_request *r, const char *name, const char *description, const char *kind,
                         const char *policy, const char *address, const char *postcode, const char *town)
{
    json_t *f = json_object();
    const char *keys[] = {"name", "description", "address", "postcode", "town"};
    const char *vals[] = {name, description, address, postcode, town};
    for (int i = 0; f && i < 5; i++) {
        json_t *v = json_string(vals[i] ? vals[i] : "");
        json_object_set_new(f, keys[i], v ? v : json_string(""));
    }
    json_object_set_new(f, "kinds", options(r, kinds, kind));
    json_object_set_new(f, "policies", options(r, policies, policy));
    return f;
}

static json_t *posted_form(halle_request *r, const group_form *f)
{
    return form_json(r, f->name, f->description, f->kind, f->policy, f->address, f->postcode, f->town);
}

/* ---- the directory ---------------------------------------------------------------------------------- */

static int directory(halle_request *r, void *ud)
{
    (void)ud;
    char q[QUERY_MAX + 1], like[2 * QUERY_MAX + 4];
    search_text(r, q, sizeof q);
    mk_like_pattern(q, like, sizeof like);
    int page = mk_page(r);
    long long total = first_int(mk_api->db_query(
        mk_host, "SELECT count(*) FROM market_groups WHERE (? = '' OR name_folded LIKE ? ESCAPE '\\' OR town_folded LIKE ? ESCAPE '\\')",
        "sss", q, like, like));
    static const char *const cols[] = {"slug", "name", "town", "kind", "join_policy", NULL};
    json_t *groups = rows_array(
        mk_api->db_query(mk_host,
                         "SELECT slug, name, town, kind, join_policy FROM market_groups "
                         "WHERE (? = '' OR name_folded LIKE ? ESCAPE '\\' OR town_folded LIKE ? ESCAPE '\\') "
                         "ORDER BY name_folded, name, id LIMIT ? OFFSET ?",
                         "sssii", q, like, like, MK_PER_PAGE, (page - 1) * MK_PER_PAGE),
        cols);
    if (total < 0 || !groups) {
        json_decref(groups);
        return server_error(r);
    }
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) {
        const char *k = label_tr(r, kinds, str_of(g, "kind")), *p = label_tr(r, policies, str_of(g, "join_policy"));
        json_object_set_new(g, "kind_label", json_string(k ? k : ""));
        json_object_set_new(g, "policy_label", json_string(p ? p : ""));
    }
    json_t *ctx = list_pagination(page, total, q, "/groups");
    json_object_set_new(ctx, "q", json_string(q));
    json_object_set_new(ctx, "groups", groups);
    int rc = mk_render(r, "market/groups/directory", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- creation ---------------------------------------------------------------------------------------- */

static int slug_taken(const char *slug)
{
    return first_int(mk_api->db_query(mk_host, "SELECT count(*) FROM market_groups WHERE slug = ?", "s", slug)) != 0;
}

/* The group's slug: the name's, or past it one more than the largest "-N" already in use.
 * "new" is taken by the creation page. */
static int unique_slug(const char *name, char *out, size_t size)
{
    char base[61], lo[64], hi[64];
    mk_slugify(name, base, sizeof base);
    if (strcmp(base, "new") && !slug_taken(base)) {
        snprintf(out, size, "%s", base);
        return HALLE_OK;
    }
    snprintf(lo, sizeof lo, "%s-", base);
    snprintf(hi, sizeof hi, "%s.", base); /* '.' follows '-': the range holds exactly "base-..." */
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT slug FROM market_groups WHERE slug > ? AND slug < ?", "ss", lo, hi);
    if (!st)
        return HALLE_ERROR;
    long max = 1;
    size_t ll = strlen(lo);
    int rc;
    while ((rc = mk_api->db_step(st)) == HALLE_DB_ROW) {
        const char *s = mk_api->db_col_text(st, 0);
        if (!s || strlen(s) <= ll || strlen(s) - ll > 9 || s[ll] == '0')
            continue;
        long n = 0;
        const char *p = s + ll;
        for (; *p >= '0' && *p <= '9'; p++)
            n = n * 10 + (*p - '0');
        if (!*p && n > max)
            max = n;
    }
    mk_api->db_done(st);
    if (rc < 0)
        return HALLE_ERROR;
    snprintf(out, size, "%s-%ld", base, max + 1);
    return HALLE_OK;
}

typedef struct creation {
    const group_form *f;
    int64_t uid;
    int64_t gid;
    int too_many;
    char slug[96];
} creation;

/* In one transaction: the group, its creator's membership, and the core's coordinator role
 * (the one record of who runs the group: can() reads it). */
static int create_tx(halle_host *h, void *ud)
{
    creation *c = ud;
    char now[32];
    mk_now(now, sizeof now);
    if (mk_coordinated_count(c->uid) >= COORDINATED_MAX) {
        c->too_many = 1;
        return HALLE_ERROR;
    }
    if (unique_slug(c->f->name, c->slug, sizeof c->slug) != HALLE_OK)
        return HALLE_ERROR;
    if (mk_api->db_insert(h, &c->gid,
                          "INSERT INTO market_groups (slug, name, description, kind, join_policy, address, postcode, town, "
                          "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                          "ssssssssIs", c->slug, c->f->name, c->f->description, c->f->kind, c->f->policy, c->f->address,
                          c->f->postcode, c->f->town, c->uid, now) < 0)
        return HALLE_ERROR;
    if (mk_fold_rows("market_groups", c->gid) != HALLE_OK)
        return HALLE_ERROR;
    if (mk_api->db_run(h,
                       "INSERT INTO market_members (group_id, user_id, role, status, requested_at, decided_at) "
                       "VALUES (?, ?, 'member', 'active', ?, ?)",
                       "IIss", c->gid, c->uid, now, now) < 0)
        return HALLE_ERROR;
    if (mk_api->user_add_role(h, c->uid, HALLE_ROLE_COORDINATOR, c->gid) != HALLE_OK)
        return HALLE_ERROR;
    return HALLE_OK;
}

static int new_form(halle_request *r, json_t *form, const char *error, int status)
{
    json_t *ctx = json_pack("{s:o}", "form", form ? form : json_object());
    if (error)
        json_object_set_new(ctx, "error", json_string(error));
    if (status)
        mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/groups/new", ctx);
    json_decref(ctx);
    return rc;
}

static int new_get(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    return new_form(r, form_json(r, "", "", "buying_group", "open", "", "", ""), NULL, 0);
}

static int new_post(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    group_form f;
    if (read_group_form(r, &f) < 0)
        return new_form(r, posted_form(r, &f), f.error, 422);
    creation c = {.f = &f, .uid = mk_api->req_user(r)};
    if (mk_api->db_tx(mk_host, create_tx, &c) != HALLE_OK) {
        if (c.too_many)
            return new_form(r, posted_form(r, &f), mk_api->tr(r, "Vous coordonnez déjà le nombre maximal de groupes."), 422);
        return server_error(r);
    }
    return redirect_to(r, c.slug, "/admin", "created");
}

/* ---- a group's look ---------------------------------------------------------------------------------- */

/* The profile links a group may show, in this order; stored as a JSON object by key. */
static const choice networks[] = {{"facebook", "Facebook"},
                                  {"instagram", "Instagram"},
                                  {"mastodon", "Mastodon"},
                                  {"website", N_("Site web")},
                                  {NULL, NULL}};
#define NETWORKS 4

#define LOGO_REFUSED N_("Le logo doit être une image PNG, JPEG ou WebP de 1 Mo au plus.")

/* What the colours are checked against: white text on the primary colour (header, buttons);
 * the accent as link text on the default theme's page background, the darkest the bundled
 * themes use, so a colour that passes there passes on white too. */
static const unsigned white[3] = {0xff, 0xff, 0xff};
static const unsigned page_background[3] = {0xfa, 0xf7, 0xef};

/* The look as the form gives it or the group has it; buffers, since what is shown comes
 * trimmed and checked. */
typedef struct look_form {
    char theme[THEME_MAX + 1];         /* "" = the site's theme */
    char primary[8], accent[8];        /* "#rrggbb" or "" = the site's colour */
    int site_colors;
    char banner[4 * BANNER_MAX + 1];
    char intro[4 * INTRO_MAX + 1];     /* Markdown */
    char links[NETWORKS][LINK_MAX + 1];
    const void *logo;                  /* a new logo, checked; it lives as long as the request */
    size_t logo_len;
    const char *logo_type;
    int remove_logo;
    char error[LOOK_MSG];
} look_form;

static void look_error(look_form *f, const char *msg)
{
    if (!f->error[0])
        snprintf(f->error, sizeof f->error, "%s", msg);
}

static void set_text(json_t *o, const char *key, const char *value)
{
    json_t *v = json_string(value ? value : "");
    json_object_set_new(o, key, v ? v : json_string(""));
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* "#2f6b3a" into rgb; 0 for anything else (names, three digits, junk). */
static int parse_color(const char *s, unsigned rgb[3])
{
    if (!s || s[0] != '#' || strlen(s) != 7)
        return 0;
    for (int i = 0; i < 3; i++) {
        int hi = hex_digit(s[1 + 2 * i]), lo = hex_digit(s[2 + 2 * i]);
        if (hi < 0 || lo < 0)
            return 0;
        rgb[i] = (unsigned)(hi * 16 + lo);
    }
    return 1;
}

/* x^2.4 on [0, 1] without libm (the plugin links none): x^2 times the fifth root of x^2, by
 * Newton's method from 1, which comes down to the root monotonically. */
static double pow_2_4(double x)
{
    double a = x * x, y = 1;
    if (a <= 0)
        return 0;
    for (int i = 0; i < 60; i++)
        y = (4 * y + a / (y * y * y * y)) / 5;
    return a * y;
}

/* WCAG 2 relative luminance of an sRGB colour. */
static double luminance(const unsigned rgb[3])
{
    static const double weight[3] = {0.2126, 0.7152, 0.0722};
    double l = 0;
    for (int i = 0; i < 3; i++) {
        double c = rgb[i] / 255.0;
        l += weight[i] * (c <= 0.04045 ? c / 12.92 : pow_2_4((c + 0.055) / 1.055));
    }
    return l;
}

static double contrast(const unsigned a[3], const unsigned b[3])
{
    double la = luminance(a), lb = luminance(b);
    return la > lb ? (la + 0.05) / (lb + 0.05) : (lb + 0.05) / (la + 0.05);
}

/* Checks a colour (what: "principale" or "d'accent", msgids) into out[8], lower case, "" when
 * the value is empty; 0, or -1 with the reason in msg[LOOK_MSG], in r's language (r may be
 * NULL: French), unless it holds one. */
static int check_color(halle_request *r, const char *value, char out[8], const char *what, const unsigned against[3],
                       char *msg)
{
    unsigned rgb[3];
    out[0] = '\0';
    if (!value || !*value)
        return 0;
    what = mk_api->tr(r, what);
    if (!parse_color(value, rgb)) {
        if (!msg[0])
            snprintf(msg, LOOK_MSG,
                     mk_api->tr(r, "La couleur %s doit s'écrire #rrggbb : un dièse et six chiffres hexadécimaux, "
                                   "par exemple #2f6b3a."),
                     what);
        return -1;
    }
    double ratio = contrast(rgb, against);
    if (ratio < 4.5) {
        char num[16];
        snprintf(num, sizeof num, "%.2f", ratio);
        for (char *p = num; *p && !mk_lang_is_english(mk_api->req_lang(r)); p++)
            if (*p == '.')
                *p = ',';
        if (!msg[0] && against == white)
            snprintf(msg, LOOK_MSG,
                     mk_api->tr(r, "La couleur %s est trop claire : le texte blanc posé dessus n'aurait qu'un contraste "
                                   "de %s:1, il en faut au moins 4,5:1 pour rester lisible (WCAG AA). Choisissez une "
                                   "teinte plus foncée."),
                     what, num);
        else if (!msg[0])
            snprintf(msg, LOOK_MSG,
                     mk_api->tr(r, "La couleur %s est trop claire : les liens de cette couleur sur le fond de la page "
                                   "n'auraient qu'un contraste de %s:1, il en faut au moins 4,5:1 (WCAG AA). Choisissez "
                                   "une teinte plus foncée."),
                     what, num);
        return -1;
    }
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    return 0;
}

/* A profile link: https://, a host of letters, digits, dots and dashes (and a port; no
 * "user@" that would disguise the real host), then visible ASCII without quotes or angle
 * brackets. */
static int https_link_ok(const char *s)
{
    if (strncmp(s, "https://", 8))
        return 0;
    const unsigned char *p = (const unsigned char *)s + 8, *host = p;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
           *p == '-' || *p == ':')
        p++;
    if (p == host || (*p && *p != '/' && *p != '?' && *p != '#'))
        return 0;
    for (; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || strchr("\"'<>\\`", *p))
            return 0;
    return 1;
}

/* 1 when name is an installed theme. */
static int theme_exists(const char *name)
{
    json_t *list = mk_api->themes(mk_host), *t;
    size_t i;
    int found = 0;
    json_array_foreach(list, i, t) found |= !strcmp(str_of(t, "name"), name);
    json_decref(list);
    return found;
}

/* The theme <select>: the site's, then every installed theme. */
static json_t *theme_options(halle_request *r, const char *current)
{
    json_t *a = json_array(), *list = mk_api->themes(mk_host), *t;
    json_array_append_new(a, json_pack("{s:s, s:s, s:b}", "value", "", "label", mk_api->tr(r, "Thème du site"), "selected",
                                       !*current));
    size_t i;
    json_array_foreach(list, i, t) {
        char lab[300];
        const char *name = str_of(t, "name"), *desc = str_of(t, "description");
        snprintf(lab, sizeof lab, "%s%s%s", name, *desc ? " — " : "", desc);
        json_t *o = json_pack("{s:s, s:b}", "value", name, "selected", !strcmp(name, current));
        set_text(o, "label", text_chars(lab, 0) >= 0 ? lab : name);
        json_array_append_new(a, o);
    }
    json_decref(list);
    return a;
}

static int checked(halle_request *r, const char *field)
{
    const char *v = mk_api->req_param(r, field);
    return v && *v;
}

/* Fills f from the posted form, every field even after a bad one; 0 when valid, else -1 with
 * the first problem in f->error. */
static int read_look_form(halle_request *r, look_form *f)
{
    char *e = f->error;
    int bad = 0;
    memset(f, 0, sizeof *f);
    if (trimmed(mk_api->req_param(r, "theme"), f->theme, sizeof f->theme) < 0 || (f->theme[0] && !theme_exists(f->theme))) {
        f->theme[0] = '\0';
        look_error(f, mk_api->tr(r, "Ce thème n'est pas installé : choisissez-en un dans la liste."));
        bad = -1;
    }
    f->site_colors = checked(r, "site_colors");
    if (!f->site_colors) {
        bad |= check_color(r, mk_api->req_param(r, "color_primary"), f->primary, N_("principale"), white, e);
        bad |= check_color(r, mk_api->req_param(r, "color_accent"), f->accent, N_("d'accent"), page_background, e);
    }
    const char *banner = mk_api->req_param(r, "banner");
    if (banner && strpbrk(banner, "\r\n")) {
        look_error(f, mk_api->tr(r, "Le bandeau tient sur une seule ligne."));
        bad = -1;
    } else {
        bad |= read_text(r, "banner", f->banner, sizeof f->banner, 0, BANNER_MAX, 0, N_("Bandeau"), e);
    }
    bad |= read_text(r, "intro", f->intro, sizeof f->intro, 0, INTRO_MAX, 1, N_("Présentation détaillée"), e);
    for (int i = 0; i < NETWORKS; i++) {
        char *link = f->links[i];
        if (trimmed(mk_api->req_param(r, networks[i].key), link, sizeof f->links[i]) < 0 || (*link && !https_link_ok(link))) {
            char msg[LOOK_MSG];
            snprintf(msg, sizeof msg,
                     mk_api->tr(r, "Le lien « %s » doit être une adresse complète qui commence par https:// "
                                   "(%d caractères au plus), ou rester vide."),
                     mk_api->tr(r, networks[i].label), LINK_MAX);
            look_error(f, msg);
            link[0] = '\0';
            bad = -1;
        }
    }
    size_t len = 0;
    const void *data = mk_api->req_file(r, "logo", &len, NULL, NULL);
    if (data && len) { /* an empty file field keeps the current logo */
        f->logo_type = len <= LOGO_MAX ? mk_image_type(data, len) : NULL;
        if (f->logo_type) {
            f->logo = data;
            f->logo_len = len;
        } else {
            look_error(f, mk_api->tr(r, LOGO_REFUSED));
            bad = -1;
        }
    }
    f->remove_logo = !f->logo && checked(r, "remove_logo");
    return bad ? -1 : 0;
}

/* The group's stored look into f; values that would not pass the form's checks are left out. */
static void look_from_group(json_t *g, look_form *f)
{
    char none[LOOK_MSG] = "";
    memset(f, 0, sizeof *f);
    snprintf(f->theme, sizeof f->theme, "%s", str_of(g, "theme"));
    check_color(NULL, str_of(g, "color_primary"), f->primary, "principale", white, none);
    check_color(NULL, str_of(g, "color_accent"), f->accent, "d'accent", page_background, none);
    f->site_colors = !f->primary[0] && !f->accent[0];
    if (text_chars(str_of(g, "banner"), 0) >= 0)
        snprintf(f->banner, sizeof f->banner, "%s", str_of(g, "banner"));
    if (text_chars(str_of(g, "intro"), 1) >= 0)
        snprintf(f->intro, sizeof f->intro, "%s", str_of(g, "intro"));
    json_t *social = json_loads(str_of(g, "social"), 0, NULL);
    for (int i = 0; i < NETWORKS; i++) {
        const char *link = json_string_value(json_object_get(social, networks[i].key));
        if (link && strlen(link) <= LINK_MAX && https_link_ok(link))
            snprintf(f->links[i], sizeof f->links[i], "%s", link);
    }
    json_decref(social);
}

/* The appearance form's values for the template (market/groups/appearance). Every key is
 * always there, so that no lookup falls through to the page's own keys. */
static json_t *look_json(halle_request *r, const look_form *f, const char *slug, int64_t logo_size, const char *error)
{
    json_t *o = json_object();
    set_text(o, "slug", slug);
    json_object_set_new(o, "themes", theme_options(r, f->theme));
    json_object_set_new(o, "site_colors", json_boolean(f->site_colors));
    /* a colour input always holds a colour: the default theme's when the group has none */
    set_text(o, "color_primary", f->primary[0] ? f->primary : "#2f6b3a");
    set_text(o, "color_accent", f->accent[0] ? f->accent : "#1f4a28");
    set_text(o, "banner", f->banner);
    set_text(o, "intro", f->intro);
    for (int i = 0; i < NETWORKS; i++)
        set_text(o, networks[i].key, f->links[i]);
    json_object_set_new(o, "has_logo", json_boolean(logo_size > 0));
    json_object_set_new(o, "logo_version", json_integer(logo_size));
    json_object_set_new(o, "remove_logo", json_boolean(f->remove_logo));
    set_text(o, "look_error", error ? error : "");
    return o;
}

/* What the public page shows of the look (ctx.look: banner, intro_html, social, logo_url),
 * the group's theme first in the chain, and in ctx.page the colours' stylesheet (after the
 * site's: the layout links page.stylesheet) and the logo as the page's image. A preview links
 * the stylesheet with the colours in its query, since nothing is stored. */
static void public_look(halle_request *r, json_t *ctx, const char *slug, const look_form *f, int64_t logo_size, int preview)
{
    char url[600];
    json_t *look = json_object(), *page = json_object();
    if (f->theme[0])
        mk_api->set_group_theme(r, f->theme);
    if (f->primary[0] || f->accent[0]) {
        if (preview)
            snprintf(url, sizeof url, "/groups/%s/style.css?primary=%s%s&accent=%s%s", slug, f->primary[0] ? "%23" : "",
                     f->primary + (f->primary[0] != 0), f->accent[0] ? "%23" : "", f->accent + (f->accent[0] != 0));
        else /* the colours in the address: a change is seen at once despite the cache */
            snprintf(url, sizeof url, "/groups/%s/style.css?v=%s-%s", slug, f->primary[0] ? f->primary + 1 : "",
                     f->accent[0] ? f->accent + 1 : "");
        set_text(page, "stylesheet", url);
    }
    if (logo_size > 0) {
        snprintf(url, sizeof url, "%s/groups/%s/logo", mk_api->site_url(mk_host), slug);
        set_text(page, "image", url);
        snprintf(url, sizeof url, "/groups/%s/logo?v=%lld", slug, (long long)logo_size);
        set_text(look, "logo_url", url);
    }
    json_object_set_new(ctx, "page", page); /* merged into the core's page object (page.url stays) */
    if (f->banner[0])
        set_text(look, "banner", f->banner);
    char *html = f->intro[0] ? mk_api->markdown(f->intro) : NULL;
    if (html) {
        json_t *v = json_string(html);
        if (v)
            json_object_set_new(look, "intro_html", v);
        mk_api->free(html);
    }
    json_t *social = json_array();
    for (int i = 0; i < NETWORKS; i++)
        if (f->links[i][0])
            json_array_append_new(social,
                                  json_pack("{s:s, s:s}", "label", mk_api->tr(r, networks[i].label), "url", f->links[i]));
    json_object_set_new(look, "has_social", json_boolean(json_array_size(social) > 0));
    json_object_set_new(look, "social", social);
    json_object_set_new(ctx, "look", look);
}

/* ---- the public page ------------------------------------------------------------------------------- */

/* Where the visitor stands: the join area of the page. */
static json_t *join_state(halle_request *r, int64_t gid, const char *policy)
{
    int64_t uid = mk_api->req_user(r);
    json_t *j = json_object();
    if (uid) {
        halle_stmt *st = mk_api->db_query(
            mk_host, "SELECT status, requested_at FROM market_members WHERE group_id = ? AND user_id = ?",
            "II", gid, uid);
        char status[16] = "", requested[40] = "";
        if (st && mk_api->db_step(st) == HALLE_DB_ROW) {
            const char *s = mk_api->db_col_text(st, 0), *at = mk_api->db_col_text(st, 1);
            snprintf(status, sizeof status, "%s", s ? s : "");
            snprintf(requested, sizeof requested, "%s", at ? at : "");
        }
        mk_api->db_done(st);
        if (!strcmp(status, "active")) {
            json_object_set_new(j, "member", json_true());
            json_object_set_new(j, "coordinator", json_boolean(mk_coordinates(uid, gid)));
            return j;
        }
        if (!strcmp(status, "pending")) {
            json_object_set_new(j, "pending", json_true());
            return j;
        }
        if (!strcmp(status, "waiting")) {
            /* The waiting list's order: requested_at, then the user id for the same second (never
             * SQLite's hidden row number: the SQL also runs on PostgreSQL). */
            long long ahead = first_int(mk_api->db_query(
                mk_host,
                "SELECT count(*) FROM market_members WHERE group_id = ? AND status = 'waiting' "
                "AND (requested_at < ? OR (requested_at = ? AND user_id < ?))",
                "IssI", gid, requested, requested, uid));
            json_object_set_new(j, "waiting", json_true());
            json_object_set_new(j, "position", json_integer(ahead < 0 ? 0 : ahead + 1));
            return j;
        }
        if (!strcmp(status, "declined"))
            json_object_set_new(j, "declined", json_true());
    }
    if (!strcmp(policy, "closed"))
        json_object_set_new(j, "closed", json_true());
    else if (!strcmp(policy, "full"))
        json_object_set_new(j, "full", json_true());
    else if (!uid)
        json_object_set_new(j, "visitor", json_true());
    else
        json_object_set_new(j, "join_label",
                            json_string(!strcmp(policy, "open")       ? mk_api->tr(r, "Rejoindre le groupe")
                                        : !strcmp(policy, "approval") ? mk_api->tr(r, "Demander à rejoindre le groupe")
                                                                      : mk_api->tr(r, "M'inscrire sur la liste d'attente")));
    return j;
}

/* The active products of the active catalogs offered to the group by producers it accepted. */
#define OFFERED_FROM                                                                                         \
    " FROM market_catalog_groups cg"                                                                         \
    " JOIN market_group_producers gp ON gp.group_id = cg.group_id AND gp.status = 'accepted'"                \
    " JOIN market_catalogs c ON c.id = cg.catalog_id AND c.active = 1 AND c.producer_id = gp.producer_id"    \
    " JOIN market_products p ON p.catalog_id = c.id AND p.active = 1"                                        \
    " JOIN market_producers pr ON pr.id = p.producer_id"                                                      \
    " WHERE cg.group_id = ? AND (? = '' OR p.name_folded LIKE ? ESCAPE '\\')"

static json_t *products(halle_request *r, int64_t gid, const char *q, int page, long long *total)
{
    char like[2 * QUERY_MAX + 4];
    mk_like_pattern(q, like, sizeof like);
    *total = first_int(mk_api->db_query(mk_host, "SELECT count(*)" OFFERED_FROM, "Iss", gid, q, like));
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "SELECT p.id, p.name, p.price_cents, p.unit, p.quantity, p.organic, "
                                      "pr.business_name, pr.slug" OFFERED_FROM " ORDER BY p.name_folded, p.name, p.id LIMIT ? OFFSET ?",
                                      "Issii", gid, q, like, MK_PER_PAGE, (page - 1) * MK_PER_PAGE);
    json_t *a = json_array();
    while (st && a && mk_api->db_step(st) == HALLE_DB_ROW) {
        char price[48], qty[64];
        mk_price_text(mk_api->req_lang(r), mk_api->db_col_int(st, 2), price, sizeof price);
        format_quantity(r, mk_api->db_col_double(st, 4), mk_api->db_col_text(st, 3), qty, sizeof qty);
        static const char *const cols[] = {"#id", "name", NULL};
        json_t *p = row_object(st, cols);
        const char *producer = mk_api->db_col_text(st, 6), *slug = mk_api->db_col_text(st, 7);
        json_t *pv = json_string(producer ? producer : ""), *sv = json_string(slug ? slug : "");
        json_object_set_new(p, "price", json_string(price));
        json_object_set_new(p, "quantity", json_string(qty));
        json_object_set_new(p, "organic", json_boolean(mk_api->db_col_int(st, 5) != 0));
        json_object_set_new(p, "producer", pv ? pv : json_string(""));
        json_object_set_new(p, "producer_slug", sv ? sv : json_string(""));
        json_array_append_new(a, p);
    }
    mk_api->db_done(st);
    return a;
}

static json_t *places(int64_t gid)
{
    static const char *const cols[] = {"#id", "name", "address", "postcode", "town", NULL};
    return rows_array(mk_api->db_query(mk_host,
                                       "SELECT id, name, address, postcode, town FROM market_places "
                                       "WHERE group_id = ? ORDER BY id LIMIT ?",
                                       "Ii", gid, PLACES_MAX),
                      cols);
}

/* The public page of group g with look f (the group's, or a preview's: then preview holds what
 * the page says about it and the form to save it). Takes the references to g and preview. */
static int show_page(halle_request *r, json_t *g, int64_t gid, const look_form *f, int64_t logo_size, json_t *preview)
{
    char q[QUERY_MAX + 1], base[200];
    search_text(r, q, sizeof q);
    int page = mk_page(r);
    long long total;
    json_t *list = products(r, gid, q, page, &total);
    static const char *const pcols[] = {"slug", "business_name", "town", NULL};
    json_t *producers = rows_array(mk_api->db_query(mk_host,
                                                    "SELECT pr.slug, pr.business_name, pr.town FROM market_group_producers gp "
                                                    "JOIN market_producers pr ON pr.id = gp.producer_id "
                                                    "WHERE gp.group_id = ? AND gp.status = 'accepted' "
                                                    "ORDER BY pr.business_name, pr.id LIMIT ?",
                                                    "Ii", gid, PRODUCERS_SHOWN),
                                   pcols);
    if (total < 0 || !list || !producers) {
        json_decref(g), json_decref(list), json_decref(producers), json_decref(preview);
        return server_error(r);
    }
    snprintf(base, sizeof base, "/groups/%s", str_of(g, "slug"));
    json_t *ctx = list_pagination(page, total, q, base);
    json_object_set_new(ctx, "join", join_state(r, gid, str_of(g, "join_policy")));
    json_object_set_new(ctx, "group", g);
    json_object_set_new(ctx, "q", json_string(q));
    json_object_set_new(ctx, "has_products", json_boolean(json_array_size(list) > 0));
    json_object_set_new(ctx, "products", list);
    json_object_set_new(ctx, "producers", producers);
    json_object_set_new(ctx, "places", places(gid));
    json_t *next = mk_dist_upcoming(r, gid, str_of(g, "slug"));
    json_object_set_new(ctx, "has_distributions", json_boolean(json_array_size(next) > 0));
    json_object_set_new(ctx, "distributions", next);
    json_object_set_new(ctx, "can_admin", json_boolean(mk_is_coordinator(r, gid)));
    public_look(r, ctx, str_of(g, "slug"), f, logo_size, preview != NULL);
    if (preview)
        json_object_set_new(ctx, "preview", preview);
    else
        set_notice(r, ctx);
    /* Plugins (social buttons...) add blocks to the page through market.group.blocks. */
    char url[400];
    snprintf(url, sizeof url, "%s%s", mk_api->site_url(mk_host), base);
    json_t *blocks = json_pack("{s:I, s:s, s:s, s:s, s:[]}", "group_id", (json_int_t)gid, "slug", str_of(g, "slug"),
                               "name", str_of(g, "name"), "url", url, "blocks");
    if (blocks && mk_api->run_filter(mk_host, r, "market.group.blocks", &blocks) == HALLE_HOOK_CONTINUE) {
        json_t *list_b = json_object_get(blocks, "blocks");
        if (json_is_array(list_b))
            json_object_set(ctx, "blocks", list_b);
    }
    json_decref(blocks);
    int rc = mk_render(r, "market/groups/show", ctx);
    json_decref(ctx);
    return rc;
}

static int group_show(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = route_group(r, &gid);
    if (!g)
        return not_found(r);
    look_form *f = malloc(sizeof *f);
    if (!f) {
        json_decref(g);
        return server_error(r);
    }
    look_from_group(g, f);
    int rc = show_page(r, g, gid, f, json_integer_value(json_object_get(g, "logo_size")), NULL);
    free(f);
    return rc;
}

/* ---- joining and leaving ----------------------------------------------------------------------------- */

/* The user's role and status in the group ("" when none); 0, or -1 on a database error. */
static int membership(int64_t gid, int64_t uid, char *role, char *status, size_t size)
{
    role[0] = status[0] = '\0';
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT role, status FROM market_members WHERE group_id = ? AND user_id = ?",
                                      "II", gid, uid);
    if (!st)
        return -1;
    int rc = mk_api->db_step(st);
    if (rc == HALLE_DB_ROW) {
        const char *ro = mk_api->db_col_text(st, 0), *s = mk_api->db_col_text(st, 1);
        snprintf(role, size, "%s", ro ? ro : "");
        snprintf(status, size, "%s", s ? s : "");
    }
    mk_api->db_done(st);
    return rc < 0 ? -1 : 0;
}

/* A write with RETURNING: 1 when it wrote a row, 0 when none, -1 on an error. */
static int changed(halle_stmt *st)
{
    if (!st)
        return -1;
    int rc = mk_api->db_step(st);
    mk_api->db_done(st);
    return rc == HALLE_DB_ROW ? 1 : rc < 0 ? -1 : 0;
}

static int group_join(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    int64_t gid, uid = mk_api->req_user(r);
    json_t *g = route_group(r, &gid);
    if (!g)
        return not_found(r);
    char slug[128], policy[16], role[16], status[16];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    snprintf(policy, sizeof policy, "%s", str_of(g, "join_policy"));
    json_decref(g);
    if (membership(gid, uid, role, status, sizeof role) < 0)
        return server_error(r);
    if (!strcmp(status, "active") || !strcmp(status, "pending") || !strcmp(status, "waiting"))
        return redirect_to(r, slug, "", NULL);
    const char *to = !strcmp(policy, "open")           ? "active"
                     : !strcmp(policy, "approval")     ? "pending"
                     : !strcmp(policy, "waiting_list") ? "waiting"
                                                       : NULL;
    if (!to)
        return mk_error(r, 409, !strcmp(policy, "full") ? mk_api->tr(r, "Ce groupe est complet.")
                                                        : mk_api->tr(r, "Ce groupe n'accepte pas de nouveaux membres."));
    char now[32];
    mk_now(now, sizeof now);
    /* A declined request may be made again; anything else stays as it is. */
    int made = changed(mk_api->db_query(mk_host,
                                        "INSERT INTO market_members (group_id, user_id, role, status, requested_at, decided_at) "
                                        "VALUES (?, ?, 'member', ?, ?, CASE WHEN ? = 'active' THEN ? END) "
                                        "ON CONFLICT (group_id, user_id) DO UPDATE SET role = 'member', status = excluded.status, "
                                        "requested_at = excluded.requested_at, decided_at = excluded.decided_at "
                                        "WHERE market_members.status = 'declined' RETURNING user_id",
                                        "IIssss", gid, uid, to, now, to, now));
    if (made < 0)
        return server_error(r);
    if (made > 0 && strcmp(to, "active")) /* a request, or a place on the waiting list: the coordinators are told */
        mk_notify_join_request(gid, uid, !strcmp(to, "waiting"));
    /* joined from a distribution's checkout (back=ID): back to the cart, which is kept */
    int64_t back = !strcmp(to, "active") ? parse_id(mk_api->req_param(r, "back")) : 0;
    if (back) {
        char tail[64];
        snprintf(tail, sizeof tail, "/distributions/%lld/checkout", (long long)back);
        return redirect_to(r, slug, tail, NULL);
    }
    return redirect_to(r, slug, "", !strcmp(to, "active") ? "joined" : !strcmp(to, "pending") ? "requested" : "waiting");
}

static int group_leave(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    int64_t gid, uid = mk_api->req_user(r);
    json_t *g = route_group(r, &gid);
    if (!g)
        return not_found(r);
    char slug[128], role[16], status[16];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    if (membership(gid, uid, role, status, sizeof role) < 0)
        return server_error(r);
    if (!status[0])
        return redirect_to(r, slug, "", NULL);
    /* A coordinator leaving would keep the core's role without the membership. */
    if (mk_coordinates(uid, gid))
        return mk_error(r, 409, mk_api->tr(r, "Un coordinateur ne peut pas quitter son groupe."));
    if (mk_api->db_run(mk_host, "DELETE FROM market_members WHERE group_id = ? AND user_id = ?", "II", gid, uid) < 0)
        return server_error(r);
    return redirect_to(r, slug, "", "left");
}

/* ---- admin: lists -------------------------------------------------------------------------------------- */

/* Members of the group with a status, in order of request (the waiting list's order), searched
 * by name or e-mail: sets ctx.KEY = {rows, total, more} and, for a full page, its pagination. */
static int member_list(halle_request *r, json_t *ctx, const char *key, int64_t gid, const char *status,
                       const char *q, int page, int limit, const char *base)
{
    int offset = (page - 1) * limit;
    /* People are found by name or address through the core's user API (it answers with ids):
     * the market reads its own rows only, and the ids as one bound ",1,5,9," text. */
    char ids[12000] = "";
    if (*q) {
        json_t *found = mk_api->user_search(mk_host, q, 500);
        if (!found)
            return HALLE_ERROR;
        size_t n = 0, i;
        json_t *v;
        ids[n++] = ',';
        json_array_foreach(found, i, v) {
            int w = snprintf(ids + n, sizeof ids - n, "%lld,", (long long)json_integer_value(v));
            if (w < 0 || (size_t)w >= sizeof ids - n)
                break;
            n += (size_t)w;
        }
        if (n == 1)
            snprintf(ids, sizeof ids, ",none,"); /* nobody matches */
        json_decref(found);
    }
    long long total = first_int(mk_api->db_query(
        mk_host,
        "SELECT count(*) FROM market_members m WHERE m.group_id = ? AND m.status = ? "
        "AND (? = '' OR ? LIKE ('%,' || CAST(m.user_id AS TEXT) || ',%'))",
        "Isss", gid, status, ids, ids));
    static const char *const cols[] = {"#user_id", "requested_at", NULL};
    json_t *rows = rows_array(
        mk_api->db_query(mk_host,
                         "SELECT m.user_id, m.requested_at FROM market_members m "
                         "WHERE m.group_id = ? AND m.status = ? "
                         "AND (? = '' OR ? LIKE ('%,' || CAST(m.user_id AS TEXT) || ',%')) "
                         "ORDER BY m.requested_at, m.user_id LIMIT ? OFFSET ?",
                         "Isssii", gid, status, ids, ids, limit, offset),
        cols);
    /* Only the users' public profile (the core's user API): never their credentials. */
    size_t ri;
    json_t *row;
    json_array_foreach(rows, ri, row) {
        json_t *u = mk_api->user_get(mk_host, json_integer_value(json_object_get(row, "user_id")));
        json_object_set_new(row, "name", json_string(u ? json_string_value(json_object_get(u, "name")) : ""));
        json_object_set_new(row, "email", json_string(u ? json_string_value(json_object_get(u, "email")) : ""));
        json_object_set_new(row, "coordinator", json_boolean(mk_user_coordinates(u, gid)));
        json_decref(u);
    }
    if (total < 0 || !rows) {
        json_decref(rows);
        return HALLE_ERROR;
    }
    size_t i;
    json_t *m;
    json_array_foreach(rows, i, m)
        json_object_set_new(m, "date", mk_date_json(r, str_of(m, "requested_at")));
    if (!strcmp(status, "waiting")) {
        json_array_foreach(rows, i, m) {
            long long pos = (long long)offset + (long long)i + 1;
            if (*q) { /* a search skips people: count those ahead */
                const char *at = str_of(m, "requested_at");
                pos = first_int(mk_api->db_query(
                          mk_host,
                          "SELECT count(*) FROM market_members WHERE group_id = ? AND status = 'waiting' "
                          "AND (requested_at < ? OR (requested_at = ? AND user_id < ?))",
                          "IssI", gid, at, at, (int64_t)json_integer_value(json_object_get(m, "user_id")))) + 1;
            }
            json_object_set_new(m, "position", json_integer(pos));
        }
    }
    json_t *list = json_pack("{s:o, s:I, s:b}", "rows", rows, "total", (json_int_t)total, "more",
                             total > (long long)json_array_size(rows) + offset);
    if (base) {
        json_t *p = list_pagination(page, total, q, base);
        json_object_update(list, p);
        json_decref(p);
    }
    json_object_set_new(ctx, key, list);
    return HALLE_OK;
}

static const char *const producer_cols[] = {"#id", "slug", "business_name", "town", "status", "requested_at", NULL};

static void producer_labels(halle_request *r, json_t *rows)
{
    size_t i;
    json_t *p;
    json_array_foreach(rows, i, p) {
        const char *s = str_of(p, "status"), *l = label_tr(r, producer_statuses, s);
        json_object_set_new(p, "status_label", json_string(l ? l : s));
        json_object_set_new(p, "can_accept", json_boolean(strcmp(s, "accepted") != 0));
        json_object_set_new(p, "can_decline", json_boolean(strcmp(s, "declined") != 0));
    }
}

/* The admin page: settings, places, members (?q, ?page), the first requests and the look. form
 * and look are the settings and appearance forms to show (NULL: the group's values); takes the
 * references to g, form and look. */
static int admin_page(halle_request *r, json_t *g, int64_t gid, json_t *form, json_t *look, const char *error, int status)
{
    char q[QUERY_MAX + 1], base[200];
    search_text(r, q, sizeof q);
    int page = mk_page(r);
    snprintf(base, sizeof base, "/groups/%s/admin", str_of(g, "slug"));
    if (!form)
        form = form_json(r, str_of(g, "name"), str_of(g, "description"), str_of(g, "kind"), str_of(g, "join_policy"),
                         str_of(g, "address"), str_of(g, "postcode"), str_of(g, "town"));
    if (!look) {
        look_form *f = malloc(sizeof *f);
        if (f)
            look_from_group(g, f);
        look = f ? look_json(r, f, str_of(g, "slug"), json_integer_value(json_object_get(g, "logo_size")), NULL) : NULL;
        free(f);
    }
    json_t *ctx = json_pack("{s:o, s:o, s:s, s:o, s:o}", "group", g, "form", form, "q", q, "places", places(gid),
                            "appearance", look ? look : json_object());
    if (!ctx || member_list(r, ctx, "members", gid, "active", q, page, MK_PER_PAGE, base) != HALLE_OK ||
        member_list(r, ctx, "pending", gid, "pending", "", 1, SHORT_LIST, NULL) != HALLE_OK ||
        member_list(r, ctx, "waiting", gid, "waiting", "", 1, SHORT_LIST, NULL) != HALLE_OK) {
        json_decref(ctx);
        return server_error(r);
    }
    json_t *producers = rows_array(mk_api->db_query(mk_host,
                                                    "SELECT pr.id, pr.slug, pr.business_name, pr.town, gp.status, gp.requested_at "
                                                    "FROM market_group_producers gp JOIN market_producers pr ON pr.id = gp.producer_id "
                                                    "WHERE gp.group_id = ? AND gp.status = 'pending' "
                                                    "ORDER BY gp.requested_at, pr.id LIMIT ?",
                                                    "Ii", gid, SHORT_LIST),
                                   producer_cols);
    long long nproducers = first_int(mk_api->db_query(
        mk_host, "SELECT count(*) FROM market_group_producers WHERE group_id = ? AND status = 'pending'", "I", gid));
    producer_labels(r, producers);
    json_object_set_new(ctx, "producer_requests", producers);
    json_object_set_new(ctx, "producer_requests_total", json_integer(nproducers < 0 ? 0 : nproducers));
    /* Plugins the operator enabled that the group may turn on for its own pages. */
    char scope[40];
    snprintf(scope, sizeof scope, "group:%lld", (long long)gid);
    json_t *plugins = mk_api->scope_plugins(mk_host, scope);
    json_object_set_new(ctx, "has_plugins", json_boolean(json_array_size(plugins) > 0));
    json_object_set_new(ctx, "plugins", plugins ? plugins : json_array());
    if (error)
        json_object_set_new(ctx, "error", json_string(error));
    set_notice(r, ctx);
    if (status)
        mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/groups/admin", ctx);
    json_decref(ctx);
    return rc;
}

static int admin_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    return g ? admin_page(r, g, gid, NULL, NULL, NULL, 0) : HALLE_OK;
}

/* The full lists of join requests and of the waiting list (ud: the status). */
static int requests_get(halle_request *r, void *ud)
{
    const char *status = ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_members", &gid);
    if (!g)
        return HALLE_OK;
    char q[QUERY_MAX + 1], base[200];
    search_text(r, q, sizeof q);
    snprintf(base, sizeof base, "/groups/%s/admin/%s", str_of(g, "slug"), status);
    int waiting = !strcmp(status, "waiting");
    json_t *ctx = json_pack("{s:o, s:s, s:b, s:s, s:s}", "group", g, "q", q, "is_waiting", waiting, "back", status,
                            "list_title", waiting ? mk_api->tr(r, "Liste d'attente") : mk_api->tr(r, "Demandes d'adhésion"));
    if (!ctx || member_list(r, ctx, "list", gid, waiting ? "waiting" : "pending", q, mk_page(r), MK_PER_PAGE, base) != HALLE_OK) {
        json_decref(ctx);
        return server_error(r);
    }
    set_notice(r, ctx);
    int rc = mk_render(r, "market/groups/requests", ctx);
    json_decref(ctx);
    return rc;
}

/* A group's producers, searched by name or town. */
#define PRODUCERS_WHERE                                                                                     \
    " FROM market_group_producers gp JOIN market_producers pr ON pr.id = gp.producer_id WHERE gp.group_id = ?" \
    " AND (? = '' OR pr.business_name_folded LIKE ? ESCAPE '\\' OR pr.town_folded LIKE ? ESCAPE '\\')"

static int producers_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    char q[QUERY_MAX + 1], like[2 * QUERY_MAX + 4], base[200];
    search_text(r, q, sizeof q);
    mk_like_pattern(q, like, sizeof like);
    int page = mk_page(r);
    snprintf(base, sizeof base, "/groups/%s/admin/producers", str_of(g, "slug"));
    long long total = first_int(mk_api->db_query(mk_host, "SELECT count(*)" PRODUCERS_WHERE, "Isss", gid, q, like, like));
    json_t *rows = rows_array(mk_api->db_query(mk_host,
                                               "SELECT pr.id, pr.slug, pr.business_name, pr.town, gp.status, gp.requested_at"
                                               PRODUCERS_WHERE " ORDER BY gp.status <> 'pending', pr.business_name_folded, pr.business_name, pr.id "
                                               "LIMIT ? OFFSET ?",
                                               "Isssii", gid, q, like, like, MK_PER_PAGE, (page - 1) * MK_PER_PAGE),
                              producer_cols);
    if (total < 0 || !rows) {
        json_decref(g), json_decref(rows);
        return server_error(r);
    }
    producer_labels(r, rows);
    json_t *ctx = list_pagination(page, total, q, base);
    json_object_set_new(ctx, "group", g);
    json_object_set_new(ctx, "q", json_string(q));
    json_object_set_new(ctx, "producers", rows);
    set_notice(r, ctx);
    int rc = mk_render(r, "market/groups/producers", ctx);
    json_decref(ctx);
    return rc;
}

/* ---- admin: actions ------------------------------------------------------------------------------------- */

/* POST /groups/SLUG/admin/plugins/NAME/(on|off): a coordinator turns a group-level plugin on
 * or off for the group's pages. */
static int plugin_toggle(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    const char *name = mk_api->req_route_param(r, "name");
    int on = !strcmp(mk_api->req_route_param(r, "state"), "on");
    char scope[40], slug[128];
    snprintf(scope, sizeof scope, "group:%lld", (long long)gid);
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    if (mk_api->scope_set(mk_host, name, scope, on) != HALLE_OK) {
        char msg[600];
        snprintf(msg, sizeof msg, "%s", mk_api->last_error(mk_host));
        return admin_page(r, g, gid, NULL, NULL, msg, 422);
    }
    json_decref(g);
    return redirect_to(r, slug, "/admin", on ? "plugin-on" : "plugin-off");
}

static int settings_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    group_form f;
    if (read_group_form(r, &f) < 0)
        return admin_page(r, g, gid, posted_form(r, &f), NULL, f.error, 422);
    char slug[128];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    /* The slug stays: links to the group keep working after a rename. */
    if (mk_api->db_run(mk_host,
                       "UPDATE market_groups SET name = ?, description = ?, kind = ?, join_policy = ?, address = ?, "
                       "postcode = ?, town = ? WHERE id = ?",
                       "sssssssI", f.name, f.description, f.kind, f.policy, f.address, f.postcode, f.town, gid) < 0 ||
        mk_fold_rows("market_groups", gid) != HALLE_OK)
        return server_error(r);
    return redirect_to(r, slug, "/admin", "settings");
}

static int place_add(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    char name[4 * GROUP_NAME_MAX + 1], address[4 * ADDRESS_MAX + 1], postcode[4 * POSTCODE_MAX + 1], town[4 * TOWN_MAX + 1];
    char msg[MSG_SIZE] = "";
    const char *e = NULL;
    int bad = read_text(r, "place_name", name, sizeof name, GROUP_NAME_MIN, GROUP_NAME_MAX, 0, N_("Nom du lieu"), msg);
    bad |= read_text(r, "place_address", address, sizeof address, 0, ADDRESS_MAX, 0, N_("Adresse du lieu"), msg);
    bad |= read_text(r, "place_postcode", postcode, sizeof postcode, 0, POSTCODE_MAX, 0, N_("Code postal du lieu"), msg);
    bad |= read_text(r, "place_town", town, sizeof town, 0, TOWN_MAX, 0, N_("Ville du lieu"), msg);
    if (bad)
        e = msg;
    else if (!postcode_ok(postcode))
        e = mk_api->tr(r, "Le code postal du lieu n'est pas valable.");
    long long n = first_int(mk_api->db_query(mk_host, "SELECT count(*) FROM market_places WHERE group_id = ?", "I", gid));
    if (!e && n >= PLACES_MAX)
        e = mk_api->tr(r, "Ce groupe a déjà le nombre maximal de lieux.");
    if (e)
        return admin_page(r, g, gid, NULL, NULL, e, 422);
    char slug[128];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    if (n < 0 || mk_api->db_run(mk_host,
                                "INSERT INTO market_places (group_id, name, address, postcode, town) VALUES (?, ?, ?, ?, ?)",
                                "Issss", gid, name, address, postcode, town) < 0)
        return server_error(r);
    return redirect_to(r, slug, "/admin", "place-added");
}

static int place_delete(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    char slug[128];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    int64_t id = parse_id(mk_api->req_route_param(r, "id"));
    long long n = first_int(
        mk_api->db_query(mk_host, "SELECT count(*) FROM market_places WHERE id = ? AND group_id = ?", "II", id, gid));
    if (n < 0)
        return server_error(r);
    if (n == 0)
        return mk_error(r, 404, mk_api->tr(r, "Ce lieu n'existe pas."));
    if (mk_api->db_run(mk_host, "DELETE FROM market_places WHERE id = ? AND group_id = ?", "II", id, gid) < 0)
        return server_error(r);
    return redirect_to(r, slug, "/admin", "place-deleted");
}

/* Where an action's form came from: the admin page or one of its full lists. */
static const char *back_tail(halle_request *r)
{
    static const choice tails[] = {{"pending", "/admin/pending"}, {"waiting", "/admin/waiting"},
                                   {"producers", "/admin/producers"}, {NULL, NULL}};
    const char *t = label(tails, mk_api->req_param(r, "back"));
    return t ? t : "/admin";
}

static int member_action(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_members", &gid);
    if (!g)
        return HALLE_OK;
    char slug[128], role[16], status[16], now[32];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    int64_t uid = parse_id(mk_api->req_route_param(r, "uid"));
    const char *action = mk_api->req_route_param(r, "action");
    if (!action || membership(gid, uid, role, status, sizeof role) < 0)
        return server_error(r);
    if (!status[0])
        return mk_error(r, 404, mk_api->tr(r, "Cette personne n'est pas membre du groupe et n'a rien demandé."));
    mk_now(now, sizeof now);
    int asked = !strcmp(status, "pending") || !strcmp(status, "waiting");
    const char *done = "unchanged";
    int rc = 0;
    if (!strcmp(action, "accept") && asked) {
        rc = changed(mk_api->db_query(mk_host,
                                      "UPDATE market_members SET status = 'active', decided_at = ? WHERE group_id = ? "
                                      "AND user_id = ? AND status IN ('pending', 'waiting') RETURNING user_id",
                                      "sII", now, gid, uid));
        if (rc > 0)
            mk_notify_member_decision(gid, uid, 1);
        done = "accepted";
    } else if (!strcmp(action, "decline") && asked) {
        rc = changed(mk_api->db_query(mk_host,
                                      "UPDATE market_members SET status = 'declined', decided_at = ? WHERE group_id = ? "
                                      "AND user_id = ? AND status IN ('pending', 'waiting') RETURNING user_id",
                                      "sII", now, gid, uid));
        if (rc > 0)
            mk_notify_member_decision(gid, uid, 0);
        done = "declined";
    } else if (!strcmp(action, "remove")) {
        if (mk_coordinates(uid, gid))
            return mk_error(r, 409, mk_api->tr(r, "Un coordinateur ne peut pas être retiré du groupe."));
        rc = mk_api->db_run(mk_host, "DELETE FROM market_members WHERE group_id = ? AND user_id = ?", "II", gid, uid);
        done = "removed";
    }
    if (rc < 0)
        return server_error(r);
    return redirect_to(r, slug, back_tail(r), done);
}

static int admit_next(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_members", &gid);
    if (!g)
        return HALLE_OK;
    char slug[128], now[32];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    long long uid = first_int(mk_api->db_query(mk_host,
                                               "SELECT user_id FROM market_members WHERE group_id = ? AND status = 'waiting' "
                                               "ORDER BY requested_at, user_id LIMIT 1",
                                               "I", gid));
    if (uid < 0) /* no row, or an error: nobody can be admitted either way */
        return redirect_to(r, slug, back_tail(r), "nobody");
    mk_now(now, sizeof now);
    int rc = changed(mk_api->db_query(mk_host,
                                      "UPDATE market_members SET status = 'active', decided_at = ? WHERE group_id = ? "
                                      "AND user_id = ? AND status = 'waiting' RETURNING user_id",
                                      "sII", now, gid, (int64_t)uid));
    if (rc < 0)
        return server_error(r);
    if (rc > 0)
        mk_notify_member_decision(gid, (int64_t)uid, 1);
    return redirect_to(r, slug, back_tail(r), "admitted");
}

static int producer_action(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    char slug[128], now[32];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    json_decref(g);
    int64_t pid = parse_id(mk_api->req_route_param(r, "pid"));
    const char *action = mk_api->req_route_param(r, "action");
    long long n = first_int(mk_api->db_query(
        mk_host, "SELECT count(*) FROM market_group_producers WHERE group_id = ? AND producer_id = ?", "II", gid, pid));
    if (n < 0 || !action)
        return server_error(r);
    if (n == 0)
        return mk_error(r, 404, mk_api->tr(r, "Ce producteur n'a pas demandé à rejoindre le groupe."));
    int accept = !strcmp(action, "accept");
    mk_now(now, sizeof now);
    if (mk_api->db_run(mk_host,
                       "UPDATE market_group_producers SET status = ?, decided_at = ? WHERE group_id = ? AND producer_id = ?",
                       "ssII", accept ? "accepted" : "declined", now, gid, pid) < 0)
        return server_error(r);
    return redirect_to(r, slug, back_tail(r), accept ? "producer-accepted" : "producer-declined");
}

/* ---- the look: saving, previewing, and the files the public page links ----------------------------- */

#define LOOK_SET "UPDATE market_groups SET theme = ?, color_primary = ?, color_accent = ?, banner = ?, intro = ?, social = ?"

static const char *or_null(const char *s)
{
    return *s ? s : NULL;
}

static int save_look(int64_t gid, const look_form *f)
{
    json_t *o = json_object();
    for (int i = 0; o && i < NETWORKS; i++)
        if (f->links[i][0])
            json_object_set_new(o, networks[i].key, json_string(f->links[i]));
    char *social = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    if (!social)
        return HALLE_ERROR;
    const char *theme = or_null(f->theme), *primary = or_null(f->primary), *accent = or_null(f->accent);
    int rc;
    if (f->logo)
        rc = mk_api->db_run(mk_host, LOOK_SET ", logo = ?, logo_type = ? WHERE id = ?", "ssssssbsI", theme, primary,
                            accent, f->banner, f->intro, social, f->logo, f->logo_len, f->logo_type, gid);
    else if (f->remove_logo)
        rc = mk_api->db_run(mk_host, LOOK_SET ", logo = NULL, logo_type = NULL WHERE id = ?", "ssssssI", theme, primary,
                            accent, f->banner, f->intro, social, gid);
    else
        rc = mk_api->db_run(mk_host, LOOK_SET " WHERE id = ?", "ssssssI", theme, primary, accent, f->banner, f->intro,
                            social, gid);
    free(social);
    return rc < 0 ? HALLE_ERROR : HALLE_OK;
}

/* POST /groups/SLUG/admin/appearance (multipart): saves the look, or with "preview" shows the
 * public page with it and stores nothing. */
static int appearance_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t gid;
    json_t *g = admin_group(r, "market.group_settings", &gid);
    if (!g)
        return HALLE_OK;
    look_form *f = malloc(sizeof *f);
    if (!f) {
        json_decref(g);
        return server_error(r);
    }
    char slug[128];
    snprintf(slug, sizeof slug, "%s", str_of(g, "slug"));
    int64_t logo_size = json_integer_value(json_object_get(g, "logo_size"));
    int rc;
    if (read_look_form(r, f) < 0) {
        rc = admin_page(r, g, gid, NULL, look_json(r, f, slug, logo_size, f->error), NULL, 422);
    } else if (checked(r, "preview")) {
        /* A new logo is not kept anywhere: the preview shows the current one, and says so. */
        json_t *preview = json_pack("{s:o}", "form", look_json(r, f, slug, logo_size, NULL));
        if (f->logo && logo_size > 0)
            set_text(preview, "logo_note",
                     mk_api->tr(r, "Le nouveau logo n'est ni montré ni conservé par l'aperçu : la page "
                                   "montre le logo actuel. Choisissez-le de nouveau avant d'enregistrer."));
        else if (f->logo)
            set_text(preview, "logo_note",
                     mk_api->tr(r, "Le nouveau logo n'est ni montré ni conservé par l'aperçu. "
                                   "Choisissez-le de nouveau avant d'enregistrer."));
        else if (f->remove_logo && logo_size > 0)
            set_text(preview, "logo_note",
                     mk_api->tr(r, "La page est montrée sans le logo, que vous avez choisi de retirer."));
        rc = show_page(r, g, gid, f, f->remove_logo ? 0 : logo_size, preview);
    } else {
        json_decref(g);
        rc = save_look(gid, f) == HALLE_OK ? redirect_to(r, slug, "", "appearance") : server_error(r);
    }
    free(f);
    return rc;
}

/* A validator from bytes (FNV-1a), for the logo's ETag. */
static uint64_t fnv1a(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* 1 when the request's If-None-Match names etag: the answer is then 304 without a body. */
static int not_modified(halle_request *r, const char *etag)
{
    const char *inm = mk_api->req_header(r, "If-None-Match");
    if (!inm || (!strstr(inm, etag) && strcmp(inm, "*")))
        return 0;
    mk_api->resp_status(r, 304);
    return 1;
}

/* GET /groups/SLUG/style.css: the group's colours over the site's stylesheet, as custom
 * properties (the CSP allows no inline style). The primary colour takes the header and button
 * variables, the accent the link and hover ones, under the names of both bundled themes.
 * ?primary=%23rrggbb&accent=%23rrggbb (checked as the form checks them) is a preview's. */
static int style_get(halle_request *r, void *ud)
{
    (void)ud;
    const char *slug = mk_api->req_route_param(r, "slug");
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT color_primary, color_accent FROM market_groups WHERE slug = ?",
                                      "s", slug ? slug : "");
    if (!st || mk_api->db_step(st) != HALLE_DB_ROW) {
        mk_api->db_done(st);
        return not_found(r);
    }
    char primary[8] = "", accent[8] = "", msg[LOOK_MSG] = "";
    const char *qp = mk_api->req_param(r, "primary"), *qa = mk_api->req_param(r, "accent");
    int bad = 0;
    if (qp || qa) {
        bad |= check_color(r, qp, primary, "principale", white, msg);
        bad |= check_color(r, qa, accent, "d'accent", page_background, msg);
    } else { /* stored values that would not pass now are left out */
        check_color(r, mk_api->db_col_text(st, 0), primary, "principale", white, msg);
        check_color(r, mk_api->db_col_text(st, 1), accent, "d'accent", page_background, msg);
    }
    mk_api->db_done(st);
    if (bad)
        return mk_error(r, 400, msg);
    char etag[40], css[300];
    snprintf(etag, sizeof etag, "\"look-%s-%s\"", primary[0] ? primary + 1 : "", accent[0] ? accent + 1 : "");
    mk_api->resp_header(r, "ETag", etag);
    mk_api->resp_header(r, "Cache-Control", "public, max-age=300");
    if (not_modified(r, etag))
        return HALLE_OK;
    int n = snprintf(css, sizeof css, ":root{");
    if (primary[0])
        n += snprintf(css + n, sizeof css - n, "--green:%s;", primary);
    if (accent[0])
        n += snprintf(css + n, sizeof css - n, "--green-dark:%s;", accent);
    snprintf(css + n, sizeof css - n, "}\n");
    mk_api->resp_header(r, "Content-Type", "text/css; charset=utf-8");
    mk_api->resp_write(r, css, strlen(css));
    return HALLE_OK;
}

/* GET /groups/SLUG/logo: the stored bytes with their checked type; 404 when there are none. */
static int logo_get(halle_request *r, void *ud)
{
    (void)ud;
    const char *slug = mk_api->req_route_param(r, "slug");
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT logo_type, logo FROM market_groups WHERE slug = ? AND logo IS NOT NULL",
                                      "s", slug ? slug : "");
    const char *type = NULL, *seen = NULL;
    const void *data = NULL;
    size_t len = 0;
    if (st && mk_api->db_step(st) == HALLE_DB_ROW) {
        type = mk_api->db_col_text(st, 0);
        data = mk_api->db_col_blob(st, 1);
        len = mk_api->db_col_bytes(st, 1);
        seen = data && len ? mk_image_type(data, len) : NULL;
    }
    /* what was stored passed mk_image_type; anything else is not served as an image */
    if (!seen || !type || strcmp(type, seen)) {
        mk_api->db_done(st);
        return mk_error(r, 404, mk_api->tr(r, "Ce groupe n'a pas de logo."));
    }
    char etag[40];
    snprintf(etag, sizeof etag, "\"%016llx\"", (unsigned long long)(fnv1a(data, len) ^ (uint64_t)len));
    mk_api->resp_header(r, "ETag", etag);
    mk_api->resp_header(r, "Cache-Control", "public, max-age=300");
    if (!not_modified(r, etag)) {
        mk_api->resp_header(r, "Content-Type", type);
        mk_api->resp_write(r, data, len);
    }
    mk_api->db_done(st);
    return HALLE_OK;
}

/* ---- registration ------------------------------------------------------------------------------------ */

#define SLUG "/groups/(?<slug>[a-z0-9-]{1,100})"

int mk_groups_register(halle_host *h, const halle_api *api)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
        void *ud;
    } routes[] = {
        {HALLE_GET, "/groups", directory, NULL},
        {HALLE_GET, "/groups/new", new_get, NULL},
        {HALLE_POST, "/groups/new", new_post, NULL},
        {HALLE_GET, SLUG, group_show, NULL},
        {HALLE_POST, SLUG "/join", group_join, NULL},
        {HALLE_POST, SLUG "/leave", group_leave, NULL},
        {HALLE_GET, SLUG "/admin", admin_get, NULL},
        {HALLE_GET, SLUG "/admin/pending", requests_get, "pending"},
        {HALLE_GET, SLUG "/admin/waiting", requests_get, "waiting"},
        {HALLE_GET, SLUG "/admin/producers", producers_get, NULL},
        {HALLE_POST, SLUG "/admin/settings", settings_post, NULL},
        {HALLE_POST, SLUG "/admin/places/add", place_add, NULL},
        {HALLE_POST, SLUG "/admin/places/(?<id>\\d{1,18})/delete", place_delete, NULL},
        {HALLE_POST, SLUG "/admin/members/(?<uid>\\d{1,18})/(?<action>accept|decline|remove)", member_action, NULL},
        {HALLE_POST, SLUG "/admin/waiting/admit-next", admit_next, NULL},
        {HALLE_POST, SLUG "/admin/producers/(?<pid>\\d{1,18})/(?<action>accept|decline)", producer_action, NULL},
        {HALLE_POST, SLUG "/admin/plugins/(?<name>[a-z][a-z0-9]{0,39})/(?<state>on|off)", plugin_toggle, NULL},
        {HALLE_POST, SLUG "/admin/appearance", appearance_post, NULL},
        {HALLE_GET | HALLE_HEAD, SLUG "/style\\.css", style_get, NULL},
        {HALLE_GET | HALLE_HEAD, SLUG "/logo", logo_get, NULL},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route(h, routes[i].methods, routes[i].pattern, routes[i].fn, routes[i].ud) != HALLE_OK)
            return HALLE_ERROR;
    if (api->declare_hook(h, "market.group.blocks", HALLE_HOOK_FILTER) != HALLE_OK)
        return HALLE_ERROR;
    return HALLE_OK;
}
