/* Marketplace: mail notifications (issue 12). Each kind is a member's setting (on by default;
 * market_notification_optouts holds the ones turned off), on the page /notifications:
 *   - orders_open: when market.distribution.opened fires (the opening job), to the group's
 *     active members;
 *   - closing_soon: 24 h before closing, to the active members who have not ordered (job
 *     market.notify-closing, once per distribution);
 *   - pickup_tomorrow: the day before the pickup (Paris time), to the members who ordered (job
 *     market.notify-pickup, once per distribution);
 *   - group_events: join requests and producers' requests to sell (to the coordinators), an
 *     accepted or refused request (to the person who asked).
 * A distribution's mails are queued in one transaction with the row of
 * market_notifications_sent that records them (migration 007): they go out once only.
 * Every mail ends with a one-click turn-off link, /notifications/off/UID/KIND/TOKEN, where
 * TOKEN is an HMAC-SHA256 of "UID:KIND" under a random key kept in market_notification_keys:
 * GET shows a confirm button (mail scanners that follow links unsubscribe nobody), POST turns
 * the kind off. The core's mail API (api->mail) takes no headers, so the mails cannot carry
 * List-Unsubscribe / List-Unsubscribe-Post (RFC 8058); the POST route already answers the
 * RFC's one-click request for when it can. The core keeps no language per user: the mails
 * are in French, with times in Paris time. */
#include "plugins/market/csvimport.h"
#include "plugins/market/market.h"
#include "plugins/market/notify.h"
#include "plugins/market/orders.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOOK_OPENED "market.distribution.opened"
#define CLOSING_AHEAD (24 * 3600)   /* closing_soon: from 24 h before closing */
#define PICKUP_FROM_MINUTES (8 * 60) /* pickup_tomorrow: from 08:00 (Paris) the day before */
#define BATCH 500
#define TOKEN_HEX 32 /* 128 bits of the HMAC, in hex */

typedef struct kind_info {
    const char *kind, *label, *help;
} kind_info;

static const kind_info kinds[] = {
    {"orders_open", N_("Ouverture des commandes"), N_("Quand les commandes d'une distribution de vos groupes ouvrent.")},
    {"closing_soon", N_("Rappel avant la clôture"),
     N_("24 heures avant la clôture des commandes, si vous n'avez pas encore commandé.")},
    {"pickup_tomorrow", N_("Rappel de retrait"), N_("La veille d'une distribution où vous avez commandé.")},
    {"group_events", N_("Vie des groupes"),
     N_("Vos demandes d'adhésion acceptées ou refusées ; pour les coordinateurs, les demandes d'adhésion et "
        "celles des producteurs.")},
    {NULL, NULL, NULL}};

/* French labels for the mails (the core keeps no language per user). */
static const char *kind_label_fr(const char *kind)
{
    for (const kind_info *k = kinds; k->kind; k++)
        if (!strcmp(k->kind, kind))
            return k->label;
    return NULL;
}

/* ---- the key and the signed links ---------------------------------------------------------- */

static unsigned char key[crypto_auth_hmacsha256_KEYBYTES];
static int key_loaded;

static int hex_to_bytes(const char *hex, unsigned char *out, size_t n)
{
    size_t got = 0;
    if (!hex || strlen(hex) != 2 * n || sodium_hex2bin(out, n, hex, 2 * n, NULL, &got, NULL) != 0 || got != n)
        return -1;
    return 0;
}

static int load_key_row(void)
{
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT secret FROM market_notification_keys WHERE id = 1", "");
    int ok = st && mk_api->db_step(st) == HALLE_DB_ROW && hex_to_bytes(mk_api->db_col_text(st, 0), key, sizeof key) == 0;
    mk_api->db_done(st);
    return ok;
}

/* The key, made at first use: random, stored once (the first writer wins, every process then
 * reads the same one). */
static int load_key(void)
{
    if (key_loaded)
        return 0;
    if (!load_key_row()) {
        unsigned char raw[sizeof key];
        char hex[2 * sizeof key + 1], now[32];
        randombytes_buf(raw, sizeof raw);
        sodium_bin2hex(hex, sizeof hex, raw, sizeof raw);
        sodium_memzero(raw, sizeof raw);
        mk_api->db_run(mk_host,
                       "INSERT INTO market_notification_keys (id, secret, created_at) VALUES (1, ?, ?) "
                       "ON CONFLICT (id) DO NOTHING",
                       "ss", hex, mk_now(now, sizeof now));
        sodium_memzero(hex, sizeof hex);
        if (!load_key_row()) {
            mk_api->log(mk_host, HALLE_LOG_ERROR, "no key for the notifications' links: %s", mk_api->last_error(mk_host));
            return -1;
        }
    }
    key_loaded = 1;
    return 0;
}

static int known_kind(const char *kind)
{
    return kind && kind_label_fr(kind) != NULL;
}

/* The token of (uid, kind): hex of the first 128 bits of HMAC-SHA256(key, "UID:KIND"). */
static int make_token(int64_t uid, const char *kind, char out[TOKEN_HEX + 1])
{
    if (load_key() != 0)
        return -1;
    char msg[64];
    int n = snprintf(msg, sizeof msg, "%lld:%s", (long long)uid, kind);
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, (const unsigned char *)msg, (unsigned long long)n, key);
    sodium_bin2hex(out, TOKEN_HEX + 1, mac, TOKEN_HEX / 2);
    return 0;
}

static int token_valid(int64_t uid, const char *kind, const char *token)
{
    char want[TOKEN_HEX + 1];
    if (!uid || !known_kind(kind) || !token || strlen(token) != TOKEN_HEX || make_token(uid, kind, want) != 0)
        return 0;
    return sodium_memcmp(want, token, TOKEN_HEX) == 0;
}

/* ---- who gets what ------------------------------------------------------------------------- */

static int opted_out(int64_t uid, const char *kind)
{
    halle_stmt *st =
        mk_api->db_query(mk_host, "SELECT 1 FROM market_notification_optouts WHERE user_id = ? AND kind = ?", "Is", uid, kind);
    int out = st && mk_api->db_step(st) == HALLE_DB_ROW;
    mk_api->db_done(st);
    return out;
}

/* Queues one notification mail to uid (skipped when they turned kind off or have no address):
 * "Bonjour NAME," then text, then why they get it and the turn-off link. */
static int notify_user(int64_t uid, const char *kind, const char *subject, const char *text)
{
    if (opted_out(uid, kind))
        return HALLE_OK;
    json_t *u = mk_api->user_get(mk_host, uid);
    const char *to = json_string_value(json_object_get(u, "email")), *name = json_string_value(json_object_get(u, "name"));
    char token[TOKEN_HEX + 1];
    int rc = HALLE_OK;
    if (u && to && *to) {
        if (make_token(uid, kind, token) != 0) {
            json_decref(u);
            return HALLE_ERROR;
        }
        const char *site = mk_api->site_url(mk_host);
        mk_sbuf b;
        mk_sb_init(&b);
        mk_sb_printf(&b, "Bonjour%s%s,\n\n%s\n\n-- \n", name && *name ? " " : "", name ? name : "", text);
        mk_sb_printf(&b, "Ne plus recevoir ces messages (« %s ») :\n%s/notifications/off/%lld/%s/%s\n", kind_label_fr(kind),
                     site, (long long)uid, kind, token);
        mk_sb_printf(&b, "Tous vos réglages : %s/notifications\n", site);
        if (b.failed || mk_api->mail(mk_host, to, subject, b.p) <= 0)
            rc = HALLE_ERROR;
        mk_sb_free(&b);
    }
    json_decref(u);
    return rc;
}

/* "samedi 5 décembre 2026 à 17:00" in Paris time, from UTC ISO text. */
static int64_t parse_iso(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                     &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void paris_when(const char *iso, char *out, size_t len)
{
    int64_t t = parse_iso(iso);
    int y, m, d;
    char day[96];
    if (t < 0) {
        snprintf(out, len, "%s", iso ? iso : "");
        return;
    }
    mk_paris_date(t, &y, &m, &d);
    int64_t noon = mk_paris_to_utc(y, m, d, 12 * 60);
    /* the clock time read off the local time itself: counting from midnight is an hour off
     * on the days the clocks change */
    char local[32];
    int hh = 0, mm = 0;
    mk_paris_iso(iso, local, sizeof local);
    if (strlen(local) < 16 || sscanf(local + 11, "%2d:%2d", &hh, &mm) != 2)
        hh = mm = 0;
    if (mk_api->format_date("fr", noon, day, sizeof day) != HALLE_OK)
        snprintf(day, sizeof day, "%04d-%02d-%02d", y, m, d);
    snprintf(out, len, "%s à %02d:%02d", day, hh, mm);
}

/* ---- a distribution's mails, once --------------------------------------------------------- */

typedef struct dist_mail {
    mk_dist d;
    const char *kind;
    int claimed, sent;
} dist_mail;

/* The text of a distribution's mail of kind. */
static void dist_text(const dist_mail *c, char *subject, size_t slen, mk_sbuf *b)
{
    const mk_dist *d = &c->d;
    char starts[128], closes[128];
    paris_when(d->starts_at, starts, sizeof starts);
    paris_when(d->closes_at, closes, sizeof closes);
    const char *site = mk_api->site_url(mk_host);
    if (!strcmp(c->kind, "orders_open")) {
        snprintf(subject, slen, "Commandes ouvertes : %s, distribution du %s", d->group_name, starts);
        mk_sb_printf(b, "Les commandes sont ouvertes pour la distribution du groupe « %s » du %s.\n", d->group_name, starts);
        mk_sb_printf(b, "Vous pouvez commander jusqu'au %s.\n", closes);
        mk_sb_printf(b, "\nCommander : %s/groups/%s/distributions/%lld", site, d->slug, (long long)d->id);
    } else if (!strcmp(c->kind, "closing_soon")) {
        snprintf(subject, slen, "Plus que 24 heures pour commander : %s, distribution du %s", d->group_name, starts);
        mk_sb_printf(b, "Les commandes pour la distribution du groupe « %s » du %s ferment le %s,\n", d->group_name, starts,
                     closes);
        mk_sb_printf(b, "et vous n'avez pas encore commandé.\n");
        mk_sb_printf(b, "\nCommander : %s/groups/%s/distributions/%lld", site, d->slug, (long long)d->id);
    } else {
        snprintf(subject, slen, "Retrait demain : %s, %s", d->group_name, starts);
        mk_sb_printf(b, "Demain, vous retirez votre commande à la distribution du groupe « %s » : le %s.\n", d->group_name,
                     starts);
        if (*d->place)
            mk_sb_printf(b, "Lieu : %s\n", d->place);
        mk_sb_printf(b, "\nVos commandes : %s/orders", site);
    }
}

/* Recipients of a distribution's mail, after user id `after`, in batches. */
static json_t *dist_recipients(const dist_mail *c, int64_t after)
{
    halle_stmt *st;
    if (!strcmp(c->kind, "pickup_tomorrow"))
        st = mk_api->db_query(mk_host,
                              "SELECT o.user_id FROM market_orders o WHERE o.distribution_id = ? AND o.status = 'placed' "
                              "AND o.user_id > ? AND NOT EXISTS (SELECT 1 FROM market_notification_optouts n "
                              "WHERE n.user_id = o.user_id AND n.kind = ?) ORDER BY o.user_id LIMIT 500",
                              "IIs", c->d.id, after, c->kind);
    else
        st = mk_api->db_query(mk_host,
                              "SELECT m.user_id FROM market_members m WHERE m.group_id = ? AND m.status = 'active' "
                              "AND m.user_id > ? AND NOT EXISTS (SELECT 1 FROM market_notification_optouts n "
                              "WHERE n.user_id = m.user_id AND n.kind = ?) AND (? = 0 OR NOT EXISTS (SELECT 1 FROM "
                              "market_orders o WHERE o.distribution_id = ? AND o.user_id = m.user_id AND o.status = 'placed')) "
                              "ORDER BY m.user_id LIMIT 500",
                              "IIsiI", c->d.group_id, after, c->kind, !strcmp(c->kind, "closing_soon"), c->d.id);
    json_t *rows = st ? mk_api->rows_json(st) : NULL;
    mk_api->db_done(st);
    return rows;
}

/* In one transaction: the row that records the mails (none when another run made it), then
 * the mails. */
static int dist_mail_tx(halle_host *h, void *ud)
{
    dist_mail *c = ud;
    char now[32];
    mk_now(now, sizeof now);
    c->claimed = c->sent = 0;
    halle_stmt *st = mk_api->db_query(h,
                                      "INSERT INTO market_notifications_sent (distribution_id, kind, sent_at) VALUES (?, ?, ?) "
                                      "ON CONFLICT (distribution_id, kind) DO NOTHING RETURNING distribution_id",
                                      "Iss", c->d.id, c->kind, now);
    if (!st)
        return HALLE_ERROR;
    c->claimed = mk_api->db_step(st) == HALLE_DB_ROW;
    mk_api->db_done(st);
    if (!c->claimed)
        return HALLE_OK;
    char subject[512];
    mk_sbuf b;
    mk_sb_init(&b);
    dist_text(c, subject, sizeof subject, &b);
    int rc = b.failed ? HALLE_ERROR : HALLE_OK;
    int64_t after = 0;
    while (rc == HALLE_OK) {
        json_t *rows = dist_recipients(c, after);
        if (!rows) {
            rc = HALLE_ERROR;
            break;
        }
        size_t i, n = json_array_size(rows);
        json_t *row;
        json_array_foreach(rows, i, row) {
            after = (int64_t)json_integer_value(json_object_get(row, "user_id"));
            if ((rc = notify_user(after, c->kind, subject, b.p)) != HALLE_OK)
                break;
            c->sent++;
        }
        json_decref(rows);
        if (n < BATCH)
            break;
    }
    mk_sb_free(&b);
    if (rc == HALLE_OK && mk_api->db_run(h,
                                         "UPDATE market_notifications_sent SET recipients = ? WHERE distribution_id = ? "
                                         "AND kind = ?",
                                         "iIs", c->sent, c->d.id, c->kind) < 0)
        rc = HALLE_ERROR;
    return rc;
}

static int send_dist(halle_host *h, int64_t id, const char *kind)
{
    dist_mail c;
    memset(&c, 0, sizeof c);
    c.kind = kind;
    if (mk_dist_load(id, &c.d) <= 0)
        return HALLE_ERROR;
    if (mk_api->db_tx(h, dist_mail_tx, &c) != HALLE_OK) {
        mk_api->log(h, HALLE_LOG_ERROR, "%s mails of distribution %lld not queued: %s", kind, (long long)id,
                    mk_api->last_error(h));
        return HALLE_ERROR;
    }
    if (c.claimed)
        mk_api->log(h, HALLE_LOG_INFO, "%s: %d mails queued for distribution %lld", kind, c.sent, (long long)id);
    return HALLE_OK;
}

/* market.distribution.opened (the opening job, once per distribution): orders_open, while the
 * distribution still takes orders. */
static int on_opened(void *ud, halle_hook_call *call)
{
    (void)ud;
    json_t *d = mk_api->call_value(call);
    int64_t id = (int64_t)json_integer_value(json_object_get(d, "id"));
    mk_dist dist;
    char now[32];
    mk_now(now, sizeof now);
    if (id > 0 && mk_dist_load(id, &dist) > 0 && mk_dist_window(&dist, now) == MK_WINDOW_OPEN)
        send_dist(mk_host, id, "orders_open");
    return HALLE_HOOK_CONTINUE;
}

static json_t *id_rows(halle_stmt *st)
{
    json_t *rows = st ? mk_api->rows_json(st) : NULL;
    mk_api->db_done(st);
    return rows;
}

static void iso_of(int64_t t, char *out, size_t len)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Every 5 minutes: the planned distributions taking orders that close within 24 h and were
 * not reminded of. */
static int closing_job(halle_host *h, const char *payload, void *ud)
{
    (void)payload, (void)ud;
    char now[32], soon[32];
    int64_t t = mk_time();
    iso_of(t, now, sizeof now);
    iso_of(t + CLOSING_AHEAD, soon, sizeof soon);
    json_t *rows = id_rows(mk_api->db_query(h,
                                            "SELECT d.id FROM market_distributions d WHERE d.status = 'planned' "
                                            "AND d.opens_at <= ? AND d.closes_at > ? AND d.closes_at <= ? AND NOT EXISTS "
                                            "(SELECT 1 FROM market_notifications_sent s WHERE s.distribution_id = d.id "
                                            "AND s.kind = 'closing_soon') ORDER BY d.closes_at, d.id LIMIT 200",
                                            "sss", now, now, soon));
    if (!rows) {
        mk_api->log(h, HALLE_LOG_ERROR, "distributions closing soon: %s", mk_api->last_error(h));
        return HALLE_ERROR;
    }
    size_t i;
    json_t *row;
    int rc = HALLE_OK;
    json_array_foreach(rows, i, row) if (send_dist(h, (int64_t)json_integer_value(json_object_get(row, "id")),
                                                   "closing_soon") != HALLE_OK) rc = HALLE_ERROR;
    json_decref(rows);
    return rc;
}

/* Every 5 minutes: the distributions (not cancelled) whose pickup is tomorrow in Paris, from
 * 08:00 Paris time, not reminded of yet. */
static int pickup_job(halle_host *h, const char *payload, void *ud)
{
    (void)payload, (void)ud;
    char now[32], horizon[32];
    int64_t t = mk_time();
    iso_of(t, now, sizeof now);
    iso_of(t + 48 * 3600, horizon, sizeof horizon);
    json_t *rows = id_rows(mk_api->db_query(h,
                                            "SELECT d.id, d.starts_at FROM market_distributions d WHERE d.status <> 'cancelled' "
                                            "AND d.starts_at > ? AND d.starts_at <= ? AND NOT EXISTS "
                                            "(SELECT 1 FROM market_notifications_sent s WHERE s.distribution_id = d.id "
                                            "AND s.kind = 'pickup_tomorrow') ORDER BY d.starts_at, d.id LIMIT 200",
                                            "ss", now, horizon));
    if (!rows) {
        mk_api->log(h, HALLE_LOG_ERROR, "distributions of tomorrow: %s", mk_api->last_error(h));
        return HALLE_ERROR;
    }
    int ty, tm_, td;
    mk_paris_date(t, &ty, &tm_, &td);
    size_t i;
    json_t *row;
    int rc = HALLE_OK;
    json_array_foreach(rows, i, row) {
        int64_t starts = parse_iso(json_string_value(json_object_get(row, "starts_at")));
        int y, m, d, by, bm, bd;
        if (starts < 0)
            continue;
        mk_paris_date(starts, &y, &m, &d);
        mk_paris_date(mk_paris_to_utc(y, m, d, 12 * 60) - 24 * 3600, &by, &bm, &bd); /* the day before */
        if (by != ty || bm != tm_ || bd != td || t < mk_paris_to_utc(by, bm, bd, PICKUP_FROM_MINUTES))
            continue;
        if (send_dist(h, (int64_t)json_integer_value(json_object_get(row, "id")), "pickup_tomorrow") != HALLE_OK)
            rc = HALLE_ERROR;
    }
    json_decref(rows);
    return rc;
}

/* ---- group events --------------------------------------------------------------------------- */

typedef struct group_info {
    char name[256], slug[128];
} group_info;

static int group_load(int64_t gid, group_info *g)
{
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT name, slug FROM market_groups WHERE id = ?", "I", gid);
    int found = st && mk_api->db_step(st) == HALLE_DB_ROW;
    if (found) {
        snprintf(g->name, sizeof g->name, "%s", mk_api->db_col_text(st, 0) ? mk_api->db_col_text(st, 0) : "");
        snprintf(g->slug, sizeof g->slug, "%s", mk_api->db_col_text(st, 1) ? mk_api->db_col_text(st, 1) : "");
    }
    mk_api->db_done(st);
    return found;
}

/* The group's coordinators (the core's roles; they are active members of their group). */
static int notify_coordinators(int64_t gid, const char *subject, const char *text)
{
    int64_t after = 0;
    int rc = HALLE_OK;
    for (;;) {
        json_t *rows = id_rows(mk_api->db_query(mk_host,
                                                "SELECT user_id FROM market_members WHERE group_id = ? AND status = 'active' "
                                                "AND user_id > ? ORDER BY user_id LIMIT 500",
                                                "II", gid, after));
        if (!rows)
            return HALLE_ERROR;
        size_t i, n = json_array_size(rows);
        json_t *row;
        json_array_foreach(rows, i, row) {
            after = (int64_t)json_integer_value(json_object_get(row, "user_id"));
            if (mk_coordinates(after, gid) && notify_user(after, "group_events", subject, text) != HALLE_OK)
                rc = HALLE_ERROR;
        }
        json_decref(rows);
        if (n < BATCH)
            return rc;
    }
}

void mk_notify_join_request(int64_t gid, int64_t uid, int waiting)
{
    group_info g;
    char name[256], subject[800], text[2000];
    if (!group_load(gid, &g))
        return;
    mk_user_name(uid, name, sizeof name);
    snprintf(subject, sizeof subject, waiting ? "Liste d'attente : %s, %s" : "Demande d'adhésion : %s, %s", g.name, name);
    snprintf(text, sizeof text,
             waiting ? "%s s'est inscrit·e sur la liste d'attente du groupe « %s ».\n\nLa liste d'attente : %s/groups/%s/admin/waiting"
                     : "%s demande à rejoindre le groupe « %s ».\n\nAccepter ou refuser : %s/groups/%s/admin/pending",
             *name ? name : "Quelqu'un", g.name, mk_api->site_url(mk_host), g.slug);
    if (notify_coordinators(gid, subject, text) != HALLE_OK)
        mk_api->log(mk_host, HALLE_LOG_WARN, "join request of user %lld to group %lld: not every mail queued",
                    (long long)uid, (long long)gid);
}

void mk_notify_member_decision(int64_t gid, int64_t uid, int accepted)
{
    group_info g;
    char subject[800], text[2000];
    if (!group_load(gid, &g))
        return;
    snprintf(subject, sizeof subject, accepted ? "Bienvenue dans le groupe « %s »" : "Votre demande au groupe « %s »",
             g.name);
    if (accepted)
        snprintf(text, sizeof text,
                 "Votre demande est acceptée : vous êtes membre du groupe « %s ».\n\nLa page du groupe : %s/groups/%s",
                 g.name, mk_api->site_url(mk_host), g.slug);
    else
        snprintf(text, sizeof text, "Le groupe « %s » n'a pas accepté votre demande d'adhésion.\n\nD'autres groupes : %s/groups",
                 g.name, mk_api->site_url(mk_host));
    if (notify_user(uid, "group_events", subject, text) != HALLE_OK)
        mk_api->log(mk_host, HALLE_LOG_WARN, "decision mail to user %lld not queued", (long long)uid);
}

void mk_notify_producer_request(int64_t gid, int64_t pid)
{
    group_info g;
    char business[256] = "", subject[800], text[2000];
    if (!group_load(gid, &g))
        return;
    halle_stmt *st = mk_api->db_query(mk_host, "SELECT business_name FROM market_producers WHERE id = ?", "I", pid);
    if (st && mk_api->db_step(st) == HALLE_DB_ROW && mk_api->db_col_text(st, 0))
        snprintf(business, sizeof business, "%s", mk_api->db_col_text(st, 0));
    mk_api->db_done(st);
    snprintf(subject, sizeof subject, "Un producteur demande à vendre : %s, %s", g.name, business);
    snprintf(text, sizeof text,
             "Le producteur « %s » demande à vendre au groupe « %s ».\n\nAccepter ou refuser : %s/groups/%s/admin/producers",
             business, g.name, mk_api->site_url(mk_host), g.slug);
    if (notify_coordinators(gid, subject, text) != HALLE_OK)
        mk_api->log(mk_host, HALLE_LOG_WARN, "producer request of %lld to group %lld: not every mail queued", (long long)pid,
                    (long long)gid);
}

/* ---- the pages --------------------------------------------------------------------------------- */

static json_t *kinds_json(halle_request *r, int64_t uid)
{
    json_t *a = json_array();
    for (const kind_info *k = kinds; k->kind; k++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:b}", "kind", k->kind, "label", mk_api->tr(r, k->label), "help",
                                           mk_api->tr(r, k->help), "on", !opted_out(uid, k->kind)));
    return a;
}

static int settings_get(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    json_t *ctx = json_pack("{s:o}", "kinds", kinds_json(r, mk_api->req_user(r)));
    const char *done = mk_api->req_param(r, "done");
    if (done && !strcmp(done, "saved"))
        mk_set_str(ctx, "notice", mk_api->tr(r, "Vos réglages sont enregistrés."));
    int rc = mk_render(r, "market/notifications/settings", ctx);
    json_decref(ctx);
    return rc;
}

static int set_optout(int64_t uid, const char *kind, int off)
{
    char now[32];
    if (off)
        return mk_api->db_run(mk_host,
                              "INSERT INTO market_notification_optouts (user_id, kind, created_at) VALUES (?, ?, ?) "
                              "ON CONFLICT (user_id, kind) DO NOTHING",
                              "Iss", uid, kind, mk_now(now, sizeof now));
    return mk_api->db_run(mk_host, "DELETE FROM market_notification_optouts WHERE user_id = ? AND kind = ?", "Is", uid, kind);
}

/* The form sends on_KIND=1 for each kind kept on (an unchecked box sends nothing). */
static int settings_post(halle_request *r, void *ud)
{
    (void)ud;
    if (mk_need_login(r))
        return HALLE_OK;
    int64_t uid = mk_api->req_user(r);
    for (const kind_info *k = kinds; k->kind; k++) {
        char field[40];
        snprintf(field, sizeof field, "on_%s", k->kind);
        const char *v = mk_api->req_param(r, field);
        if (set_optout(uid, k->kind, !(v && *v)) < 0)
            return mk_error(r, 500, NULL);
    }
    return mk_api->resp_redirect(r, "/notifications?done=saved");
}

/* The one-click link: GET confirms (a button), POST turns off. The signed token is the
 * authority: no session needed (the link works from any mail client, logged in or not). */
static int off_check(halle_request *r, int64_t *uid, const char **kind)
{
    *uid = mk_id(mk_api->req_route_param(r, "uid"));
    *kind = mk_api->req_route_param(r, "kind");
    if (!token_valid(*uid, *kind, mk_api->req_route_param(r, "token"))) {
        mk_error(r, 404, mk_api->tr(r, "Ce lien de désinscription n'est pas valable : ouvrez celui du dernier message reçu, "
                                       "ou réglez vos notifications sur la page « Mes notifications par e-mail »."));
        return -1;
    }
    return 0;
}

static int off_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t uid;
    const char *kind;
    if (off_check(r, &uid, &kind))
        return HALLE_OK;
    const char *label = NULL;
    for (const kind_info *k = kinds; k->kind; k++)
        if (!strcmp(k->kind, kind))
            label = mk_api->tr(r, k->label);
    const char *done = mk_api->req_param(r, "done");
    json_t *ctx = json_pack("{s:s, s:s, s:b, s:b}", "label", label ? label : kind, "action", mk_api->req_path(r), "off",
                            opted_out(uid, kind), "done", done && *done);
    int rc = mk_render(r, "market/notifications/off", ctx);
    json_decref(ctx);
    return rc;
}

static int off_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t uid;
    const char *kind;
    if (off_check(r, &uid, &kind))
        return HALLE_OK;
    if (set_optout(uid, kind, 1) < 0)
        return mk_error(r, 500, NULL);
    char to[300];
    snprintf(to, sizeof to, "%s?done=1", mk_api->req_path(r));
    return mk_api->resp_redirect(r, to);
}

int mk_notify_register(halle_host *h, const halle_api *api)
{
#define OFF "/notifications/off/(?<uid>\\d{1,18})/(?<kind>[a-z_]{1,20})/(?<token>[0-9a-f]{32})"
    if (sodium_init() < 0 || api->route(h, HALLE_GET | HALLE_HEAD, "/notifications", settings_get, NULL) != HALLE_OK ||
        api->route(h, HALLE_POST, "/notifications", settings_post, NULL) != HALLE_OK ||
        api->route(h, HALLE_GET | HALLE_HEAD, OFF, off_get, NULL) != HALLE_OK ||
        /* the token in the link authenticates: no session, no CSRF token (a mail client's
         * one-click POST, RFC 8058, carries none) */
        api->route_flags(h, HALLE_POST, OFF, HALLE_ROUTE_TOKEN_AUTH, off_post, NULL) != HALLE_OK ||
        api->hook(h, HOOK_OPENED, 20, on_opened, NULL) != HALLE_OK ||
        api->job(h, "notify-closing", "every 300", closing_job, NULL) != HALLE_OK ||
        api->job(h, "notify-pickup", "every 300", pickup_job, NULL) != HALLE_OK)
        return HALLE_ERROR;
#undef OFF
    return HALLE_OK;
}
