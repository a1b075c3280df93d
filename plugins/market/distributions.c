/* Marketplace: distributions. The coordinators' pages (the list, upcoming and past; creating
 * one or a recurring series in one step; moving, cancelling; the group's order window and
 * minimum and maximum), the producers' answers (confirm with the catalogs offered, or
 * decline), the next distributions on the group's public page (each links to its shop,
 * GET /groups/SLUG/distributions/ID, in shop.c), and the job that fires market.distribution.opened once per distribution when its orders open.
 * Times are stored in UTC; the forms and pages speak the group's local time, Europe/Paris,
 * whose summer time rule (the EU's) is computed here: the plugin needs no tz database. */
#include "plugins/market/market.h"
#include "plugins/market/csvimport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOTE_MAX 500
#define SERIES_MIN 2
#define SERIES_MAX 52
#define MSG_SIZE 300
#define UPCOMING_SHOWN 5
#define OPEN_DAYS_MAX 60
#define CLOSE_HOURS_MAX 720
#define DAY 86400
#define HOOK_OPENED "market.distribution.opened"

/* ---- Europe/Paris -------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a civil date (proleptic Gregorian), and back (H. Hinnant). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static int days_in_month(int y, int m)
{
    static const int n[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 29 : n[m - 1];
}

/* The day (days since the epoch) of the last Sunday of the month. */
static int64_t last_sunday(int y, int m)
{
    int64_t last = days_from_civil(y, m, days_in_month(y, m));
    int64_t wd = ((last % 7) + 7 + 4) % 7; /* 1970-01-01 was a Thursday; 0 = Sunday */
    return last - wd;
}

/* The offset from UTC in Paris at UTC instant t: summer time from the last Sunday of March to
 * the last Sunday of October, 01:00 UTC both. */
static int paris_offset(int64_t t)
{
    int y, m, d;
    civil_from_days(t >= 0 ? t / DAY : (t - DAY + 1) / DAY, &y, &m, &d);
    int64_t start = last_sunday(y, 3) * DAY + 3600, end = last_sunday(y, 10) * DAY + 3600;
    return t >= start && t < end ? 7200 : 3600;
}

/* A local date and time in Paris as a UTC instant. A time skipped in March is read in winter
 * time (02:30 becomes 03:30); a time seen twice in October is the first one. */
static int64_t paris_to_utc(int y, int m, int d, int minutes)
{
    int64_t local = days_from_civil(y, m, d) * DAY + (int64_t)minutes * 60;
    if (paris_offset(local - 7200) == 7200)
        return local - 7200;
    return local - 3600;
}

int64_t mk_paris_to_utc(int y, int m, int d, int minutes)
{
    return paris_to_utc(y, m, d, minutes);
}

void mk_paris_date(int64_t t, int *y, int *m, int *d)
{
    int64_t s = t + paris_offset(t);
    civil_from_days(s >= 0 ? s / DAY : (s - DAY + 1) / DAY, y, m, d);
}

typedef struct local_time {
    int y, m, d, hh, mm;
} local_time;

static local_time paris_local(int64_t t)
{
    local_time l;
    int64_t s = t + paris_offset(t);
    int64_t days = s >= 0 ? s / DAY : (s - DAY + 1) / DAY;
    int64_t sec = s - days * DAY;
    civil_from_days(days, &l.y, &l.m, &l.d);
    l.hh = (int)(sec / 3600);
    l.mm = (int)(sec % 3600 / 60);
    return l;
}

static void iso_utc(int64_t t, char *buf, size_t len)
{
    int y, m, d;
    int64_t days = t >= 0 ? t / DAY : (t - DAY + 1) / DAY, sec = t - days * DAY;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m, d, (int)(sec / 3600), (int)(sec % 3600 / 60),
             (int)(sec % 60));
}

/* "2026-12-05T16:00:00Z" as epoch seconds; -1 when it is not one. */
static int64_t parse_iso(const char *s)
{
    int y, m, d, hh, mm, ss;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &m, &d, &hh, &mm, &ss) != 6 || m < 1 || m > 12 || d < 1 ||
        d > 31)
        return -1;
    return days_from_civil(y, m, d) * DAY + hh * 3600 + mm * 60 + ss;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* "2026-12-05" (years 2000 to 2199); 0 or -1. */
static int parse_date(const char *s, int *y, int *m, int *d)
{
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !all_digits(s, 4) || !all_digits(s + 5, 2) ||
        !all_digits(s + 8, 2))
        return -1;
    *y = atoi(s), *m = atoi(s + 5), *d = atoi(s + 8);
    if (*y < 2000 || *y > 2199 || *m < 1 || *m > 12 || *d < 1 || *d > days_in_month(*y, *m))
        return -1;
    return 0;
}

/* "17:30" (or "17:30:00", as some browsers send) as minutes since midnight; -1 if not one. */
static int parse_hm(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if ((n != 5 && n != 8) || s[2] != ':' || !all_digits(s, 2) || !all_digits(s + 3, 2) ||
        (n == 8 && (s[5] != ':' || !all_digits(s + 6, 2))))
        return -1;
    int h = atoi(s), m = atoi(s + 3);
    return h > 23 || m > 59 ? -1 : h * 60 + m;
}

/* "2026-12-05T17:30" (datetime-local; a space for the T too) in Paris time, as UTC; -1. */
static int64_t parse_local_dt(const char *s)
{
    char date[11];
    int y, m, d;
    if (!s || strlen(s) < 16 || (s[10] != 'T' && s[10] != ' '))
        return -1;
    memcpy(date, s, 10);
    date[10] = '\0';
    int minutes = parse_hm(s + 11);
    if (parse_date(date, &y, &m, &d) < 0 || minutes < 0)
        return -1;
    return paris_to_utc(y, m, d, minutes);
}

/* "samedi 5 décembre 2026 à 17:00" / "Saturday, 5 December 2026 at 17:00", Paris time. */
static void when_text(halle_request *r, int64_t t, char *out, size_t len)
{
    local_time l = paris_local(t);
    char day[96] = "", hm[8];
    mk_api->format_date(mk_api->req_lang(r), days_from_civil(l.y, l.m, l.d) * DAY + 12 * 3600, day, sizeof day);
    snprintf(hm, sizeof hm, "%02d:%02d", l.hh, l.mm);
    snprintf(out, len, mk_api->tr(r, "%s à %s"), day, hm);
}

static void day_text(halle_request *r, int64_t t, char *out, size_t len)
{
    local_time l = paris_local(t);
    out[0] = '\0';
    mk_api->format_date(mk_api->req_lang(r), days_from_civil(l.y, l.m, l.d) * DAY + 12 * 3600, out, len);
}

static void hm_text(int64_t t, char *out, size_t len)
{
    local_time l = paris_local(t);
    snprintf(out, len, "%02d:%02d", l.hh, l.mm);
}

/* ---- small helpers ----------------------------------------------------------------------------- */

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

static int64_t int_of(json_t *o, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(o, key));
}

static int server_error(halle_request *r)
{
    mk_api->log(mk_host, HALLE_LOG_ERROR, "distributions: %s", mk_api->last_error(mk_host));
    return mk_error(r, 500, NULL);
}

static json_t *query_rows(halle_stmt *st)
{
    json_t *rows = st ? mk_api->rows_json(st) : NULL;
    mk_api->db_done(st);
    return rows;
}

static json_t *query_row(halle_stmt *st)
{
    json_t *rows = query_rows(st), *row = json_array_get(rows, 0);
    json_incref(row);
    json_decref(rows);
    return row;
}

/* What ?done= says after a redirect (a fixed list: the URL cannot put text on the page). */
static const struct {
    const char *key, *text;
} notices[] = {
    {"created", N_("Distribution créée : les producteurs du groupe sont invités.")},
    {"series", N_("Série de distributions créée : les producteurs du groupe sont invités.")},
    {"moved", N_("Distribution modifiée. Les membres qui ont commandé sont prévenus par e-mail.")},
    {"saved", N_("Distribution modifiée.")},
    {"cancelled", N_("Distribution annulée. Les membres qui ont commandé sont prévenus par e-mail.")},
    {"settings", N_("Réglages des commandes enregistrés.")},
    {"confirmed", N_("Participation confirmée.")},
    {"declined", N_("Participation déclinée.")},
};

static void set_notice(halle_request *r, json_t *ctx)
{
    const char *done = mk_api->req_param(r, "done");
    for (size_t i = 0; done && i < sizeof notices / sizeof notices[0]; i++)
        if (!strcmp(done, notices[i].key))
            mk_set_str(ctx, "notice", mk_api->tr(r, notices[i].text));
}

/* ---- the group ------------------------------------------------------------------------------------ */

/* The route's group: {id, slug, name, open_days_before, close_hours_before, min/max_order_cents}. */
static json_t *route_group(halle_request *r)
{
    const char *slug = mk_api->req_route_param(r, "slug");
    if (!slug || strlen(slug) > 100)
        return NULL;
    return query_row(mk_api->db_query(mk_host,
                                      "SELECT id, slug, name, open_days_before, close_hours_before, min_order_cents, "
                                      "max_order_cents FROM market_groups WHERE slug = ?",
                                      "s", slug));
}

/* The group of a coordinator's page; otherwise answers (login, 404, 403) and returns NULL. */
static json_t *coordinator_group(halle_request *r)
{
    if (mk_need_login(r))
        return NULL;
    json_t *g = route_group(r);
    if (!g) {
        mk_error(r, 404, mk_api->tr(r, "Ce groupe n'existe pas."));
        return NULL;
    }
    if (!mk_is_coordinator(r, int_of(g, "id"))) {
        json_decref(g);
        mk_error(r, 403, mk_api->tr(r, "Cette page est réservée aux coordinateurs du groupe."));
        return NULL;
    }
    return g;
}

#define DIST_COLS                                                                                              \
    "d.id, d.group_id, d.place_id, d.series_id, d.starts_at, d.ends_at, d.opens_at, d.closes_at, d.note, "     \
    "d.status, d.opened_at, COALESCE(p.name, '') AS place_name, COALESCE(p.address, '') AS place_address, "    \
    "COALESCE(p.town, '') AS place_town"
#define DIST_FROM " FROM market_distributions d LEFT JOIN market_places p ON p.id = d.place_id"

/* The route's distribution of group gid, or NULL. */
static json_t *route_distribution(halle_request *r, int64_t gid)
{
    int64_t id = mk_id(mk_api->req_route_param(r, "id"));
    if (!id)
        return NULL;
    return query_row(
        mk_api->db_query(mk_host, "SELECT " DIST_COLS DIST_FROM " WHERE d.id = ? AND d.group_id = ?", "II", id, gid));
}

/* A distribution's row with what pages show: when, the window's state, its status. */
static void describe(halle_request *r, json_t *d, const char *slug)
{
    char buf[200], a[120], b[120];
    int64_t starts = parse_iso(str_of(d, "starts_at")), ends = parse_iso(str_of(d, "ends_at"));
    int64_t opens = parse_iso(str_of(d, "opens_at")), closes = parse_iso(str_of(d, "closes_at")), now = mk_time();
    const char *status = str_of(d, "status");
    day_text(r, starts, a, sizeof a);
    mk_set_str(d, "day", a);
    hm_text(starts, a, sizeof a);
    hm_text(ends, b, sizeof b);
    snprintf(buf, sizeof buf, mk_api->tr(r, "de %s à %s"), a, b);
    mk_set_str(d, "hours", buf);
    when_text(r, opens, a, sizeof a);
    mk_set_str(d, "opens_text", a);
    when_text(r, closes, b, sizeof b);
    mk_set_str(d, "closes_text", b);
    int planned = !strcmp(status, "planned");
    json_object_set_new(d, "planned", json_boolean(planned));
    json_object_set_new(d, "cancelled", json_boolean(!strcmp(status, "cancelled")));
    json_object_set_new(d, "past", json_boolean(ends <= now));
    if (planned && now < opens)
        snprintf(buf, sizeof buf, mk_api->tr(r, "Commandes ouvertes à partir du %s"), a);
    else if (planned && now < closes)
        snprintf(buf, sizeof buf, mk_api->tr(r, "Commandes ouvertes jusqu'au %s"), b);
    else if (!strcmp(status, "cancelled"))
        snprintf(buf, sizeof buf, "%s", mk_api->tr(r, "Distribution annulée"));
    else
        snprintf(buf, sizeof buf, "%s", mk_api->tr(r, "Commandes closes"));
    mk_set_str(d, "window", buf);
    json_object_set_new(d, "open_now", json_boolean(planned && opens <= now && now < closes));
    snprintf(buf, sizeof buf, "/groups/%s/distributions/%lld", slug, (long long)int_of(d, "id"));
    mk_set_str(d, "url", buf);
}

/* The next distributions of a group for its public page (planned, pickup not over), each
 * {id, day, hours, place_name, window, open_now, url}; an empty array on error. */
json_t *mk_dist_upcoming(halle_request *r, int64_t gid, const char *slug)
{
    char now[32];
    mk_now(now, sizeof now);
    json_t *rows = query_rows(mk_api->db_query(mk_host,
                                               "SELECT " DIST_COLS DIST_FROM " WHERE d.group_id = ? AND d.status = 'planned' "
                                               "AND d.ends_at > ? ORDER BY d.starts_at, d.id LIMIT ?",
                                               "Isi", gid, now, UPCOMING_SHOWN));
    if (!rows)
        return json_array();
    size_t i;
    json_t *d;
    json_array_foreach(rows, i, d) describe(r, d, slug);
    return rows;
}

/* ---- the distribution form --------------------------------------------------------------------------- */

typedef struct dist_form {
    char date[16], start[12], end[12], opens[24], closes[24], place[24], repeat[8], count[8];
    char note[4 * NOTE_MAX + 1];
    int y, m, d, start_min, end_min, n;
    int64_t place_id, starts, ends, opens_at, closes_at;
    char error[MSG_SIZE], field[16];
} dist_form;

static void form_error(dist_form *f, const char *field, const char *msg)
{
    if (f->error[0])
        return;
    snprintf(f->error, sizeof f->error, "%s", msg);
    snprintf(f->field, sizeof f->field, "%s", field);
}

static void get_field(halle_request *r, const char *name, char *out, size_t size)
{
    if (mk_get_field(r, name, out, size, 0) < 0)
        out[0] = '\0';
}

/* Reads and checks the form (gid's places, its default window). series: the repeat fields
 * count. check_future: the pickup must be ahead. 0, or -1 with the first problem. */
static int read_form(halle_request *r, dist_form *f, json_t *g, int series, int check_future)
{
    memset(f, 0, sizeof *f);
    get_field(r, "date", f->date, sizeof f->date);
    get_field(r, "start", f->start, sizeof f->start);
    get_field(r, "end", f->end, sizeof f->end);
    get_field(r, "opens", f->opens, sizeof f->opens);
    get_field(r, "closes", f->closes, sizeof f->closes);
    get_field(r, "place", f->place, sizeof f->place);
    get_field(r, "repeat", f->repeat, sizeof f->repeat);
    get_field(r, "count", f->count, sizeof f->count);
    if (mk_get_field(r, "note", f->note, sizeof f->note, 1) < 0 || mk_api->text_valid(f->note, sizeof f->note, 1) > NOTE_MAX) {
        f->note[0] = '\0';
        form_error(f, "note", mk_api->tr(r, "La note ne doit pas dépasser 500 caractères."));
    }
    if (parse_date(f->date, &f->y, &f->m, &f->d) < 0) {
        f->y = 0;
        form_error(f, "date", mk_api->tr(r, "Indiquez la date de la distribution (AAAA-MM-JJ)."));
    }
    if ((f->start_min = parse_hm(f->start)) < 0)
        form_error(f, "start", mk_api->tr(r, "Indiquez l'heure de début du retrait (HH:MM)."));
    if ((f->end_min = parse_hm(f->end)) < 0)
        form_error(f, "end", mk_api->tr(r, "Indiquez l'heure de fin du retrait (HH:MM)."));
    if (!f->error[0] && f->end_min <= f->start_min)
        form_error(f, "end", mk_api->tr(r, "La fin du retrait doit venir après son début."));
    f->place_id = mk_id(f->place);
    if (!f->place_id || first_int(mk_api->db_query(mk_host, "SELECT count(*) FROM market_places WHERE id = ? AND group_id = ?",
                                                   "II", f->place_id, int_of(g, "id"))) != 1)
        form_error(f, "place", mk_api->tr(r, "Choisissez un lieu de distribution du groupe (la page d'administration du "
                                              "groupe permet d'en ajouter)."));
    if (f->y == 0 || f->start_min < 0 || f->end_min <= f->start_min)
        return -1; /* no pickup time: nothing more can be checked */
    f->starts = paris_to_utc(f->y, f->m, f->d, f->start_min);
    f->ends = paris_to_utc(f->y, f->m, f->d, f->end_min);
    if (!f->opens[0])
        f->opens_at = f->starts - int_of(g, "open_days_before") * (int64_t)DAY;
    else if ((f->opens_at = parse_local_dt(f->opens)) < 0)
        form_error(f, "opens", mk_api->tr(r, "Indiquez la date et l'heure d'ouverture des commandes (AAAA-MM-JJTHH:MM), "
                                             "ou laissez vide pour le réglage du groupe."));
    if (!f->closes[0])
        f->closes_at = f->starts - int_of(g, "close_hours_before") * (int64_t)3600;
    else if ((f->closes_at = parse_local_dt(f->closes)) < 0)
        form_error(f, "closes", mk_api->tr(r, "Indiquez la date et l'heure de clôture des commandes (AAAA-MM-JJTHH:MM), "
                                              "ou laissez vide pour le réglage du groupe."));
    if (f->error[0])
        return -1;
    if (f->closes_at > f->starts)
        form_error(f, "closes", mk_api->tr(r, "La clôture des commandes doit venir avant le début du retrait."));
    else if (f->opens_at >= f->closes_at)
        form_error(f, "opens", mk_api->tr(r, "L'ouverture des commandes doit venir avant leur clôture."));
    else if (check_future && f->starts <= mk_time())
        form_error(f, "date", mk_api->tr(r, "Cette date est passée : choisissez un retrait à venir."));
    f->n = 1;
    if (series && f->repeat[0]) {
        if (strcmp(f->repeat, "week") && strcmp(f->repeat, "2weeks") && strcmp(f->repeat, "month"))
            form_error(f, "repeat", mk_api->tr(r, "Choisissez la fréquence de la série."));
        long n = all_digits(f->count, strlen(f->count)) && f->count[0] ? strtol(f->count, NULL, 10) : 0;
        if (n < SERIES_MIN || n > SERIES_MAX)
            form_error(f, "count", mk_api->tr(r, "Le nombre de distributions de la série va de 2 à 52."));
        else
            f->n = (int)n;
    }
    return f->error[0] ? -1 : 0;
}

/* Occurrence k of the form's series: the same local times, k weeks, fortnights or months
 * later (the 31st becomes the month's last day), with the same window. */
static void occurrence(const dist_form *f, int k, int64_t out[4])
{
    int y = f->y, m = f->m, d = f->d;
    if (k && !strcmp(f->repeat, "month")) {
        int months = y * 12 + (m - 1) + k;
        y = months / 12, m = months % 12 + 1;
        if (d > days_in_month(y, m))
            d = days_in_month(y, m);
    } else if (k) {
        civil_from_days(days_from_civil(y, m, d) + (int64_t)k * (!strcmp(f->repeat, "2weeks") ? 14 : 7), &y, &m, &d);
    }
    out[0] = paris_to_utc(y, m, d, f->start_min);
    out[1] = paris_to_utc(y, m, d, f->end_min);
    out[2] = out[0] - (f->starts - f->opens_at);
    out[3] = out[0] - (f->starts - f->closes_at);
}

static void local_input(int64_t t, char *out, size_t len, int with_time)
{
    local_time l = paris_local(t);
    if (with_time)
        snprintf(out, len, "%04d-%02d-%02dT%02d:%02d", l.y, l.m, l.d, l.hh, l.mm);
    else
        snprintf(out, len, "%04d-%02d-%02d", l.y, l.m, l.d);
}

/* The form's values for the template: {date, start, end, opens, closes, note, count, places
 * [{id, name, selected}], repeats [{value, label, selected}], error, errors {field: msg}}. */
static json_t *form_json(halle_request *r, const dist_form *f, int64_t gid)
{
    json_t *o = json_object();
    mk_set_str(o, "date", f->date);
    mk_set_str(o, "start", f->start);
    mk_set_str(o, "end", f->end);
    mk_set_str(o, "opens", f->opens);
    mk_set_str(o, "closes", f->closes);
    mk_set_str(o, "note", f->note);
    mk_set_str(o, "count", f->count[0] ? f->count : "4");
    json_t *places = query_rows(mk_api->db_query(
        mk_host, "SELECT id, name, town FROM market_places WHERE group_id = ? ORDER BY id LIMIT 100", "I", gid));
    size_t i;
    json_t *p;
    json_array_foreach(places, i, p) json_object_set_new(p, "selected", json_boolean(int_of(p, "id") == f->place_id));
    json_object_set_new(o, "places", places ? places : json_array());
    json_object_set_new(o, "has_places", json_boolean(json_array_size(places) > 0));
    static const struct {
        const char *value, *label;
    } repeats[] = {{"", N_("Une seule date")},
                   {"week", N_("Chaque semaine")},
                   {"2weeks", N_("Toutes les deux semaines")},
                   {"month", N_("Chaque mois")}};
    json_t *rep = json_array();
    for (size_t k = 0; k < sizeof repeats / sizeof repeats[0]; k++)
        json_array_append_new(rep, json_pack("{s:s, s:s, s:b}", "value", repeats[k].value, "label",
                                             mk_api->tr(r, repeats[k].label), "selected", !strcmp(f->repeat, repeats[k].value)));
    json_object_set_new(o, "repeats", rep);
    json_t *errors = json_object();
    if (f->error[0]) {
        mk_set_str(o, "error", f->error);
        mk_set_str(errors, f->field, f->error);
    }
    json_object_set_new(o, "errors", errors);
    return o;
}

/* ---- the coordinators' list -------------------------------------------------------------------------- */

typedef struct settings_form {
    char open_days[8], close_hours[8], min_order[24], max_order[24];
    char error[MSG_SIZE], field[24];
} settings_form;

static json_t *settings_json(json_t *g, const settings_form *s, halle_request *r)
{
    json_t *o = json_object();
    char buf[48];
    if (s) {
        mk_set_str(o, "open_days_before", s->open_days);
        mk_set_str(o, "close_hours_before", s->close_hours);
        mk_set_str(o, "min_order", s->min_order);
        mk_set_str(o, "max_order", s->max_order);
    } else {
        snprintf(buf, sizeof buf, "%lld", (long long)int_of(g, "open_days_before"));
        mk_set_str(o, "open_days_before", buf);
        snprintf(buf, sizeof buf, "%lld", (long long)int_of(g, "close_hours_before"));
        mk_set_str(o, "close_hours_before", buf);
        buf[0] = '\0';
        if (int_of(g, "min_order_cents") > 0)
            mk_price_format(int_of(g, "min_order_cents"), buf, sizeof buf);
        mk_set_str(o, "min_order", buf);
        buf[0] = '\0';
        if (int_of(g, "max_order_cents") > 0)
            mk_price_format(int_of(g, "max_order_cents"), buf, sizeof buf);
        mk_set_str(o, "max_order", buf);
    }
    json_t *errors = json_object();
    if (s && s->error[0]) {
        mk_set_str(o, "error", s->error);
        mk_set_str(errors, s->field, s->error);
    }
    json_object_set_new(o, "errors", errors);
    (void)r;
    return o;
}

/* GET /groups/SLUG/distributions (?past=1 for the past ones, ?page=N): takes g. */
static int list_page(halle_request *r, json_t *g, json_t *form, json_t *settings, int status)
{
    int64_t gid = int_of(g, "id");
    char now[32], base[200];
    mk_now(now, sizeof now);
    int past = mk_param(r, "past")[0] != '\0', page = mk_page(r);
    const char *slug = str_of(g, "slug");
    long long total = first_int(mk_api->db_query(
        mk_host,
        past ? "SELECT count(*) FROM market_distributions WHERE group_id = ? AND ends_at <= ?"
             : "SELECT count(*) FROM market_distributions WHERE group_id = ? AND ends_at > ?",
        "Is", gid, now));
    json_t *rows = query_rows(mk_api->db_query(
        mk_host,
        past ? "SELECT " DIST_COLS ", (SELECT count(*) FROM market_orders o WHERE o.distribution_id = d.id AND "
               "o.status = 'placed') AS orders" DIST_FROM " WHERE d.group_id = ? AND d.ends_at <= ? "
               "ORDER BY d.starts_at DESC, d.id DESC LIMIT ? OFFSET ?"
             : "SELECT " DIST_COLS ", (SELECT count(*) FROM market_orders o WHERE o.distribution_id = d.id AND "
               "o.status = 'placed') AS orders" DIST_FROM " WHERE d.group_id = ? AND d.ends_at > ? "
               "ORDER BY d.starts_at, d.id LIMIT ? OFFSET ?",
        "Isii", gid, now, MK_PER_PAGE, (page - 1) * MK_PER_PAGE));
    if (total < 0 || !rows) {
        json_decref(g), json_decref(rows), json_decref(form), json_decref(settings);
        return server_error(r);
    }
    size_t i;
    json_t *d;
    json_array_foreach(rows, i, d) {
        describe(r, d, slug);
        char edit[200];
        snprintf(edit, sizeof edit, "/groups/%s/distributions/%lld/edit", slug, (long long)int_of(d, "id"));
        mk_set_str(d, "edit_url", edit);
    }
    snprintf(base, sizeof base, "/groups/%s/distributions%s", slug, past ? "?past=1" : "");
    json_t *pg = mk_pagination(page, total, "");
    json_t *ctx = json_pack("{s:o, s:o, s:o, s:b, s:s, s:o}", "group", g, "distributions", rows, "pagination",
                            pg ? pg : json_object(), "past", past, "base", base, "has_distributions",
                            json_boolean(json_array_size(rows) > 0));
    if (!form) {
        dist_form empty;
        memset(&empty, 0, sizeof empty);
        form = form_json(r, &empty, gid);
    }
    json_object_set_new(ctx, "form", form);
    json_object_set_new(ctx, "settings", settings ? settings : settings_json(g, NULL, r));
    set_notice(r, ctx);
    if (status)
        mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/distributions/list", ctx);
    json_decref(ctx);
    return rc;
}

static int list_get(halle_request *r, void *ud)
{
    (void)ud;
    json_t *g = coordinator_group(r);
    return g ? list_page(r, g, NULL, NULL, 0) : HALLE_OK;
}

/* ---- creating ------------------------------------------------------------------------------------------ */

typedef struct creation {
    const dist_form *f;
    int64_t gid, uid, first_id;
} creation;

/* One distribution, and its invitations to the group's accepted producers. */
static int insert_distribution(halle_host *h, int64_t gid, int64_t uid, int64_t series, const int64_t t[4], int64_t place,
                               const char *note, int64_t *id)
{
    char s[32], e[32], o[32], c[32], now[32];
    iso_utc(t[0], s, sizeof s), iso_utc(t[1], e, sizeof e), iso_utc(t[2], o, sizeof o), iso_utc(t[3], c, sizeof c);
    mk_now(now, sizeof now);
    if ((series ? mk_api->db_insert(h, id,
                                    "INSERT INTO market_distributions (group_id, place_id, series_id, starts_at, ends_at, "
                                    "opens_at, closes_at, note, created_by, created_at, updated_at) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                    "IIIsssssIss", gid, place, series, s, e, o, c, note, uid, now, now)
                : mk_api->db_insert(h, id,
                                    "INSERT INTO market_distributions (group_id, place_id, starts_at, ends_at, "
                                    "opens_at, closes_at, note, created_by, created_at, updated_at) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                                    "IIsssssIss", gid, place, s, e, o, c, note, uid, now, now)) < 0)
        return HALLE_ERROR;
    if (mk_api->db_run(h,
                       "INSERT INTO market_distribution_producers (distribution_id, producer_id, status) "
                       "SELECT ?, producer_id, 'invited' FROM market_group_producers WHERE group_id = ? AND status = 'accepted'",
                       "II", *id, gid) < 0)
        return HALLE_ERROR;
    return HALLE_OK;
}

static int create_tx(halle_host *h, void *ud)
{
    creation *c = ud;
    const dist_form *f = c->f;
    int64_t series = 0, id, t[4];
    char now[32];
    mk_now(now, sizeof now);
    if (f->n > 1 && mk_api->db_insert(h, &series,
                                      "INSERT INTO market_distribution_series (group_id, every, created_by, created_at) "
                                      "VALUES (?, ?, ?, ?) RETURNING id",
                                      "IsIs", c->gid, f->repeat, c->uid, now) < 0)
        return HALLE_ERROR;
    for (int k = 0; k < f->n; k++) {
        occurrence(f, k, t);
        if (insert_distribution(h, c->gid, c->uid, series, t, f->place_id, f->note, &id) != HALLE_OK)
            return HALLE_ERROR;
        if (!k)
            c->first_id = id;
    }
    return HALLE_OK;
}

static int create_post(halle_request *r, void *ud)
{
    (void)ud;
    json_t *g = coordinator_group(r);
    if (!g)
        return HALLE_OK;
    dist_form *f = malloc(sizeof *f);
    if (!f) {
        json_decref(g);
        return server_error(r);
    }
    int rc;
    if (read_form(r, f, g, 1, 1) < 0) {
        rc = list_page(r, g, form_json(r, f, int_of(g, "id")), NULL, 422);
    } else {
        creation c = {.f = f, .gid = int_of(g, "id"), .uid = mk_api->req_user(r)};
        if (mk_api->db_tx(mk_host, create_tx, &c) != HALLE_OK) {
            json_decref(g);
            rc = server_error(r);
        } else {
            char url[300];
            snprintf(url, sizeof url, "/groups/%s/distributions?done=%s", str_of(g, "slug"), f->n > 1 ? "series" : "created");
            json_decref(g);
            rc = mk_api->resp_redirect(r, url);
        }
    }
    free(f);
    return rc;
}

/* ---- the group's order settings ------------------------------------------------------------------------ */

static long parse_small(const char *s, long max)
{
    if (!s[0] || strlen(s) > 6 || !all_digits(s, strlen(s)))
        return -1;
    long v = strtol(s, NULL, 10);
    return v > max ? -1 : v;
}

static int settings_post(halle_request *r, void *ud)
{
    (void)ud;
    json_t *g = coordinator_group(r);
    if (!g)
        return HALLE_OK;
    settings_form s;
    memset(&s, 0, sizeof s);
    get_field(r, "open_days_before", s.open_days, sizeof s.open_days);
    get_field(r, "close_hours_before", s.close_hours, sizeof s.close_hours);
    get_field(r, "min_order", s.min_order, sizeof s.min_order);
    get_field(r, "max_order", s.max_order, sizeof s.max_order);
    long open_days = parse_small(s.open_days, OPEN_DAYS_MAX), close_hours = parse_small(s.close_hours, CLOSE_HOURS_MAX);
    long long min = s.min_order[0] ? mk_parse_price(s.min_order) : 0, max = s.max_order[0] ? mk_parse_price(s.max_order) : 0;
    const char *e = NULL, *field = NULL;
    if (open_days < 0)
        e = mk_api->tr(r, "L'ouverture des commandes se règle en jours avant la distribution, de 0 à 60."), field = "open_days_before";
    else if (close_hours < 0)
        e = mk_api->tr(r, "La clôture des commandes se règle en heures avant la distribution, de 0 à 720."),
        field = "close_hours_before";
    else if (open_days * 24 <= close_hours)
        e = mk_api->tr(r, "Les commandes doivent ouvrir avant de fermer : plus de jours d'ouverture, ou moins "
                          "d'heures de clôture."),
        field = "open_days_before";
    else if (min < 0)
        e = mk_api->tr(r, "Le minimum de commande est un montant en euros (par exemple 15 ou 12,50), ou reste vide."),
        field = "min_order";
    else if (max < 0)
        e = mk_api->tr(r, "Le maximum de commande est un montant en euros (par exemple 150), ou reste vide."),
        field = "max_order";
    else if (max > 0 && min > max)
        e = mk_api->tr(r, "Le minimum de commande ne peut pas dépasser le maximum."), field = "max_order";
    if (e) {
        snprintf(s.error, sizeof s.error, "%s", e);
        snprintf(s.field, sizeof s.field, "%s", field);
        return list_page(r, g, NULL, settings_json(g, &s, r), 422);
    }
    char url[300];
    snprintf(url, sizeof url, "/groups/%s/distributions?done=settings", str_of(g, "slug"));
    int rc = mk_api->db_run(mk_host,
                            "UPDATE market_groups SET open_days_before = ?, close_hours_before = ?, min_order_cents = ?, "
                            "max_order_cents = ? WHERE id = ?",
                            "iiIII", (int)open_days, (int)close_hours, (int64_t)min, (int64_t)max, int_of(g, "id"));
    json_decref(g);
    return rc < 0 ? server_error(r) : mk_api->resp_redirect(r, url);
}

/* ---- one distribution: the coordinators' page, moving, cancelling ----------------------------------------- */

static int not_found(halle_request *r)
{
    return mk_error(r, 404, mk_api->tr(r, "Cette distribution n'existe pas."));
}

/* The producers taking part in d, with their answer and the catalogs they offer. */
static json_t *participants(halle_request *r, int64_t id)
{
    json_t *rows = query_rows(mk_api->db_query(mk_host,
                                               "SELECT pr.id, pr.slug, pr.business_name, dp.status FROM market_distribution_producers dp "
                                               "JOIN market_producers pr ON pr.id = dp.producer_id WHERE dp.distribution_id = ? "
                                               "ORDER BY pr.business_name, pr.id LIMIT 200",
                                               "I", id));
    size_t i;
    json_t *p;
    json_array_foreach(rows, i, p) {
        const char *s = str_of(p, "status");
        mk_set_str(p, "status_label", !strcmp(s, "confirmed") ? mk_api->tr(r, "Confirmé")
                                      : !strcmp(s, "declined") ? mk_api->tr(r, "Décliné")
                                                               : mk_api->tr(r, "Invité, sans réponse"));
        json_object_set_new(p, "confirmed", json_boolean(!strcmp(s, "confirmed")));
        json_t *cats = query_rows(mk_api->db_query(mk_host,
                                                        "SELECT c.id, c.name FROM market_distribution_catalogs dc JOIN "
                                                        "market_catalogs c ON c.id = dc.catalog_id WHERE dc.distribution_id = ? "
                                                        "AND c.producer_id = ? ORDER BY c.name, c.id LIMIT 50",
                                                        "II", id, int_of(p, "id")));
        json_object_set_new(p, "has_catalogs", json_boolean(json_array_size(cats) > 0));
        json_object_set_new(p, "catalogs", cats ? cats : json_array());
    }
    return rows ? rows : json_array();
}

/* GET .../distributions/ID/edit; form: the posted form to show again (NULL: the stored values). */
static int edit_page(halle_request *r, json_t *g, json_t *d, json_t *form, int status)
{
    int64_t id = int_of(d, "id");
    describe(r, d, str_of(g, "slug"));
    if (!form) {
        dist_form f;
        memset(&f, 0, sizeof f);
        int64_t starts = parse_iso(str_of(d, "starts_at"));
        local_input(starts, f.date, sizeof f.date, 0);
        hm_text(starts, f.start, sizeof f.start);
        hm_text(parse_iso(str_of(d, "ends_at")), f.end, sizeof f.end);
        local_input(parse_iso(str_of(d, "opens_at")), f.opens, sizeof f.opens, 1);
        local_input(parse_iso(str_of(d, "closes_at")), f.closes, sizeof f.closes, 1);
        snprintf(f.note, sizeof f.note, "%s", str_of(d, "note"));
        f.place_id = int_of(d, "place_id");
        form = form_json(r, &f, int_of(g, "id"));
    }
    long long orders = first_int(mk_api->db_query(
        mk_host, "SELECT count(*) FROM market_orders WHERE distribution_id = ? AND status = 'placed'", "I", id));
    json_t *ctx = json_pack("{s:o, s:o, s:o, s:o, s:I}", "group", g, "distribution", d, "form", form, "producers",
                            participants(r, id), "orders", (json_int_t)(orders < 0 ? 0 : orders));
    set_notice(r, ctx);
    if (status)
        mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/distributions/edit", ctx);
    json_decref(ctx);
    return rc;
}

/* The coordinator's group and the route's distribution of it; else answers and returns -1. */
static int coordinator_distribution(halle_request *r, json_t **g, json_t **d)
{
    *d = NULL;
    if (!(*g = coordinator_group(r)))
        return -1;
    if (!(*d = route_distribution(r, int_of(*g, "id")))) {
        json_decref(*g);
        not_found(r);
        return -1;
    }
    return 0;
}

static int edit_get(halle_request *r, void *ud)
{
    (void)ud;
    json_t *g, *d;
    if (coordinator_distribution(r, &g, &d) < 0)
        return HALLE_OK;
    return edit_page(r, g, d, NULL, 0);
}

/* Mails every member with a placed order in distribution id: moved (the old and new dates) or
 * cancelled. Mails are queued (the core's mail queue sends them). */
static int mail_orderers(halle_request *r, json_t *g, int64_t id, const char *before, const char *after, int cancelled)
{
    (void)r;
    json_t *users = query_rows(mk_api->db_query(
        mk_host, "SELECT DISTINCT user_id FROM market_orders WHERE distribution_id = ? AND status = 'placed' ORDER BY user_id",
        "I", id));
    if (!users)
        return HALLE_ERROR;
    char subject[300], url[400];
    size_t body_len = 4096;
    char *body = malloc(body_len);
    if (!body) {
        json_decref(users);
        return HALLE_ERROR;
    }
    snprintf(url, sizeof url, "%s/groups/%s/distributions/%lld", mk_api->site_url(mk_host), str_of(g, "slug"), (long long)id);
    snprintf(subject, sizeof subject, cancelled ? "Distribution annulée : %s" : "Distribution déplacée : %s", str_of(g, "name"));
    size_t i;
    json_t *u;
    int rc = HALLE_OK;
    json_array_foreach(users, i, u) {
        json_t *user = mk_api->user_get(mk_host, int_of(u, "user_id"));
        const char *to = str_of(user, "email"), *name = str_of(user, "name");
        if (*to) {
            if (cancelled)
                snprintf(body, body_len,
                         "Bonjour %s,\n\nLa distribution du groupe « %s » prévue %s est annulée.\n"
                         "Votre commande n'est pas à retirer et rien ne vous sera demandé pour elle.\n\n%s\n",
                         name, str_of(g, "name"), before, url);
            else
                snprintf(body, body_len,
                         "Bonjour %s,\n\nLa distribution du groupe « %s » prévue %s change :\n"
                         "elle aura lieu %s.\nVotre commande est conservée pour cette nouvelle date.\n\n%s\n",
                         name, str_of(g, "name"), before, after, url);
            if (mk_api->mail(mk_host, to, subject, body) <= 0)
                rc = HALLE_ERROR;
        }
        json_decref(user);
    }
    free(body);
    json_decref(users);
    return rc;
}

/* "le samedi 5 décembre 2026 de 17:00 à 19:00, à La Grange (Die)": for mails, in French. */
static void mail_when(json_t *d, char *out, size_t len)
{
    int64_t s = parse_iso(str_of(d, "starts_at")), e = parse_iso(str_of(d, "ends_at"));
    char day[96] = "", a[8], b[8];
    local_time l = paris_local(s);
    mk_api->format_date("fr", days_from_civil(l.y, l.m, l.d) * DAY + 12 * 3600, day, sizeof day);
    hm_text(s, a, sizeof a);
    hm_text(e, b, sizeof b);
    const char *place = str_of(d, "place_name"), *town = str_of(d, "place_town");
    snprintf(out, len, "le %s de %s à %s%s%s%s%s%s", day, a, b, *place ? ", à " : "", place, *town ? " (" : "", town,
             *town ? ")" : "");
}

static int edit_post(halle_request *r, void *ud)
{
    (void)ud;
    json_t *g, *d;
    if (coordinator_distribution(r, &g, &d) < 0)
        return HALLE_OK;
    if (strcmp(str_of(d, "status"), "planned")) {
        json_decref(g), json_decref(d);
        return mk_error(r, 409, mk_api->tr(r, "Cette distribution est annulée ou close : elle ne peut plus être modifiée."));
    }
    dist_form *f = malloc(sizeof *f);
    if (!f) {
        json_decref(g), json_decref(d);
        return server_error(r);
    }
    int64_t id = int_of(d, "id");
    int rc = read_form(r, f, g, 0, 0);
    char s[32], e[32], o[32], c[32], now[32];
    if (rc == 0) {
        iso_utc(f->starts, s, sizeof s), iso_utc(f->ends, e, sizeof e);
        iso_utc(f->opens_at, o, sizeof o), iso_utc(f->closes_at, c, sizeof c);
        /* a new pickup time must be ahead; the same one may be kept (to change the note) */
        if ((strcmp(s, str_of(d, "starts_at")) || strcmp(e, str_of(d, "ends_at"))) && f->starts <= mk_time()) {
            form_error(f, "date", mk_api->tr(r, "Cette date est passée : choisissez un retrait à venir."));
            rc = -1;
        }
    }
    if (rc < 0) {
        rc = edit_page(r, g, d, form_json(r, f, int_of(g, "id")), 422);
        free(f);
        return rc;
    }
    int moved = strcmp(s, str_of(d, "starts_at")) || strcmp(e, str_of(d, "ends_at")) || f->place_id != int_of(d, "place_id");
    mk_now(now, sizeof now);
    char before[300], after[300], url[300];
    mail_when(d, before, sizeof before);
    if (mk_api->db_run(mk_host,
                       "UPDATE market_distributions SET starts_at = ?, ends_at = ?, opens_at = ?, closes_at = ?, place_id = ?, "
                       "note = ?, updated_at = ? WHERE id = ? AND status = 'planned'",
                       "ssssIssI", s, e, o, c, f->place_id, f->note, now, id) < 0) {
        free(f), json_decref(g), json_decref(d);
        return server_error(r);
    }
    free(f);
    json_t *nd = route_distribution(r, int_of(g, "id"));
    if (moved && nd) {
        mail_when(nd, after, sizeof after);
        if (mail_orderers(r, g, id, before, after, 0) != HALLE_OK)
            mk_api->log(mk_host, HALLE_LOG_ERROR, "distribution %lld moved, mails not all queued: %s", (long long)id,
                        mk_api->last_error(mk_host));
    }
    snprintf(url, sizeof url, "/groups/%s/distributions/%lld/edit?done=%s", str_of(g, "slug"), (long long)id,
             moved ? "moved" : "saved");
    json_decref(nd), json_decref(g), json_decref(d);
    return mk_api->resp_redirect(r, url);
}

static int cancel_post(halle_request *r, void *ud)
{
    (void)ud;
    json_t *g, *d;
    if (coordinator_distribution(r, &g, &d) < 0)
        return HALLE_OK;
    int64_t id = int_of(d, "id");
    char now[32], before[300], url[300];
    if (strcmp(str_of(d, "status"), "planned")) {
        json_decref(g), json_decref(d);
        return mk_error(r, 409, mk_api->tr(r, "Cette distribution est déjà annulée ou close."));
    }
    mk_now(now, sizeof now);
    halle_stmt *st = mk_api->db_query(mk_host,
                                      "UPDATE market_distributions SET status = 'cancelled', cancelled_at = ?, updated_at = ? "
                                      "WHERE id = ? AND status = 'planned' RETURNING id",
                                      "ssI", now, now, id);
    int changed = st && mk_api->db_step(st) == HALLE_DB_ROW;
    mk_api->db_done(st);
    if (!st) {
        json_decref(g), json_decref(d);
        return server_error(r);
    }
    mail_when(d, before, sizeof before);
    if (changed && mail_orderers(r, g, id, before, NULL, 1) != HALLE_OK)
        mk_api->log(mk_host, HALLE_LOG_ERROR, "distribution %lld cancelled, mails not all queued: %s", (long long)id,
                    mk_api->last_error(mk_host));
    snprintf(url, sizeof url, "/groups/%s/distributions/%lld/edit?done=cancelled", str_of(g, "slug"), (long long)id);
    json_decref(g), json_decref(d);
    return mk_api->resp_redirect(r, url);
}

/* ---- producers: invitations ------------------------------------------------------------------------------------ */

static int64_t need_producer(halle_request *r)
{
    if (mk_need_login(r))
        return 0;
    int64_t pid = mk_current_producer(r);
    if (!pid)
        mk_api->resp_redirect(r, "/producer/signup");
    else if (!mk_api->can_name(r, HALLE_ACT_EDIT, "market.producer_account", mk_api->req_user(r))) {
        mk_error(r, 403, mk_api->tr(r, "Cette page est réservée au producteur."));
        return 0;
    }
    return pid;
}

/* GET /producer/distributions: the distributions ahead the producer is invited to, each with
 * the catalogs linked to its group (ticked: offered). error_id/error: a refused answer. */
static int producer_page(halle_request *r, int64_t pid, int64_t error_id, const char *error, int status)
{
    char now[32];
    mk_now(now, sizeof now);
    int page = mk_page(r);
    long long total = first_int(mk_api->db_query(mk_host,
                                                 "SELECT count(*) FROM market_distribution_producers dp JOIN market_distributions d "
                                                 "ON d.id = dp.distribution_id WHERE dp.producer_id = ? AND d.status = 'planned' "
                                                 "AND d.ends_at > ?",
                                                 "Is", pid, now));
    json_t *rows = query_rows(mk_api->db_query(mk_host,
                                               "SELECT " DIST_COLS ", dp.status AS answer, g.slug AS group_slug, g.name AS group_name"
                                               DIST_FROM " JOIN market_distribution_producers dp ON dp.distribution_id = d.id "
                                               "JOIN market_groups g ON g.id = d.group_id WHERE dp.producer_id = ? "
                                               "AND d.status = 'planned' AND d.ends_at > ? ORDER BY d.starts_at, d.id LIMIT ? OFFSET ?",
                                               "Isii", pid, now, MK_PER_PAGE, (page - 1) * MK_PER_PAGE));
    if (total < 0 || !rows) {
        json_decref(rows);
        return server_error(r);
    }
    size_t i;
    json_t *d;
    int64_t t = mk_time();
    json_array_foreach(rows, i, d) {
        int64_t id = int_of(d, "id");
        describe(r, d, str_of(d, "group_slug"));
        const char *a = str_of(d, "answer");
        mk_set_str(d, "answer_label", !strcmp(a, "confirmed") ? mk_api->tr(r, "Vous participez")
                                      : !strcmp(a, "declined") ? mk_api->tr(r, "Vous avez décliné")
                                                               : mk_api->tr(r, "Réponse attendue"));
        json_object_set_new(d, "can_answer", json_boolean(parse_iso(str_of(d, "closes_at")) > t));
        json_t *cats = query_rows(mk_api->db_query(mk_host,
                                                   "SELECT c.id, c.name, CASE WHEN dc.catalog_id IS NULL THEN 0 ELSE 1 END AS offered "
                                                   "FROM market_catalog_groups cg JOIN market_catalogs c ON c.id = cg.catalog_id "
                                                   "LEFT JOIN market_distribution_catalogs dc ON dc.distribution_id = ? "
                                                   "AND dc.catalog_id = c.id WHERE cg.group_id = ? AND c.producer_id = ? "
                                                   "AND c.active = 1 ORDER BY c.name, c.id LIMIT 50",
                                                   "III", id, int_of(d, "group_id"), pid));
        size_t k;
        json_t *c;
        json_array_foreach(cats, k, c) {
            char input[64];
            snprintf(input, sizeof input, "c%lld-%lld", (long long)int_of(c, "id"), (long long)id);
            mk_set_str(c, "input_id", input);
            json_object_set_new(c, "offered", json_boolean(int_of(c, "offered") != 0));
        }
        json_object_set_new(d, "has_catalogs", json_boolean(json_array_size(cats) > 0));
        json_object_set_new(d, "catalogs", cats ? cats : json_array());
        if (id == error_id && error)
            mk_set_str(d, "error", error);
    }
    json_t *pg = mk_pagination(page, total, "");
    json_t *ctx = json_pack("{s:o, s:o, s:b, s:s}", "distributions", rows, "pagination", pg ? pg : json_object(),
                            "has_distributions", json_array_size(rows) > 0, "base", "/producer/distributions");
    if (error)
        mk_set_str(ctx, "error", error);
    set_notice(r, ctx);
    if (status)
        mk_api->resp_status(r, status);
    int rc = mk_render(r, "market/distributions/producer", ctx);
    json_decref(ctx);
    return rc;
}

static int producer_get(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    return pid ? producer_page(r, pid, 0, NULL, 0) : HALLE_OK;
}

typedef struct answer {
    int64_t did, pid;
    int confirm;
    int64_t catalogs[50];
    size_t ncatalogs;
} answer;

static int answer_tx(halle_host *h, void *ud)
{
    answer *a = ud;
    char now[32];
    mk_now(now, sizeof now);
    if (mk_api->db_run(h, "UPDATE market_distribution_producers SET status = ?, decided_at = ? WHERE distribution_id = ? "
                          "AND producer_id = ?",
                       "ssII", a->confirm ? "confirmed" : "declined", now, a->did, a->pid) < 0 ||
        mk_api->db_run(h, "DELETE FROM market_distribution_catalogs WHERE distribution_id = ? AND catalog_id IN "
                          "(SELECT id FROM market_catalogs WHERE producer_id = ?)",
                       "II", a->did, a->pid) < 0)
        return HALLE_ERROR;
    for (size_t i = 0; a->confirm && i < a->ncatalogs; i++)
        if (mk_api->db_run(h, "INSERT INTO market_distribution_catalogs (distribution_id, catalog_id) VALUES (?, ?)", "II",
                           a->did, a->catalogs[i]) < 0)
            return HALLE_ERROR;
    return HALLE_OK;
}

/* POST /producer/distributions/ID: action=confirm with catalog=ID fields (the catalogs
 * offered, at least one), or action=decline. */
static int producer_post(halle_request *r, void *ud)
{
    (void)ud;
    int64_t pid = need_producer(r);
    if (!pid)
        return HALLE_OK;
    int64_t did = mk_id(mk_api->req_route_param(r, "id"));
    json_t *d = query_row(mk_api->db_query(mk_host,
                                           "SELECT d.id, d.group_id, d.status, d.closes_at FROM market_distributions d "
                                           "JOIN market_distribution_producers dp ON dp.distribution_id = d.id "
                                           "WHERE d.id = ? AND dp.producer_id = ?",
                                           "II", did, pid));
    if (!d)
        return mk_error(r, 404, mk_api->tr(r, "Vous n'êtes pas invité à cette distribution."));
    int64_t gid = int_of(d, "group_id");
    int open = !strcmp(str_of(d, "status"), "planned") && parse_iso(str_of(d, "closes_at")) > mk_time();
    json_decref(d);
    if (!open)
        return producer_page(r, pid, did,
                             mk_api->tr(r, "Les commandes de cette distribution sont closes ou elle est annulée : votre "
                                           "participation ne peut plus changer."),
                             409);
    const char *action = mk_param(r, "action");
    answer a;
    memset(&a, 0, sizeof a);
    a.did = did, a.pid = pid, a.confirm = !strcmp(action, "confirm");
    if (!a.confirm && strcmp(action, "decline"))
        return producer_page(r, pid, did, mk_api->tr(r, "Confirmez ou déclinez votre participation."), 422);
    if (a.confirm) {
        /* the catalogs of this producer linked to the group, ticked in the form as cat_ID */
        json_t *cats = query_rows(mk_api->db_query(mk_host,
                                                   "SELECT c.id FROM market_catalog_groups cg JOIN market_catalogs c "
                                                   "ON c.id = cg.catalog_id WHERE cg.group_id = ? AND c.producer_id = ? "
                                                   "AND c.active = 1 ORDER BY c.id LIMIT 50",
                                                   "II", gid, pid));
        size_t i;
        json_t *c;
        json_array_foreach(cats, i, c) {
            char field[40];
            snprintf(field, sizeof field, "cat_%lld", (long long)int_of(c, "id"));
            if (mk_param(r, field)[0] && a.ncatalogs < 50)
                a.catalogs[a.ncatalogs++] = int_of(c, "id");
        }
        json_decref(cats);
        if (!a.ncatalogs)
            return producer_page(r, pid, did,
                                 mk_api->tr(r, "Cochez au moins un catalogue à proposer pour confirmer votre participation."),
                                 422);
    }
    if (mk_api->db_tx(mk_host, answer_tx, &a) != HALLE_OK)
        return server_error(r);
    return mk_api->resp_redirect(r, a.confirm ? "/producer/distributions?done=confirmed" : "/producer/distributions?done=declined");
}

/* ---- the opening job ------------------------------------------------------------------------------------------------ */

/* Every minute: each planned distribution whose orders have opened and whose opening was not
 * told yet is marked (opened_at) and market.distribution.opened fired for it, once. */
static int open_job(halle_host *h, const char *payload, void *ud)
{
    (void)payload, (void)ud;
    char now[32];
    mk_now(now, sizeof now);
    json_t *rows = query_rows(mk_api->db_query(h,
                                               "SELECT d.id, d.group_id, g.slug, d.starts_at, d.ends_at, d.opens_at, d.closes_at "
                                               "FROM market_distributions d JOIN market_groups g ON g.id = d.group_id "
                                               "WHERE d.status = 'planned' AND d.opened_at IS NULL AND d.opens_at <= ? "
                                               "ORDER BY d.opens_at, d.id LIMIT 500",
                                               "s", now));
    if (!rows) {
        mk_api->log(h, HALLE_LOG_ERROR, "distributions to open: %s", mk_api->last_error(h));
        return HALLE_ERROR;
    }
    size_t i;
    json_t *d;
    int rc = HALLE_OK;
    json_array_foreach(rows, i, d) {
        halle_stmt *st = mk_api->db_query(h,
                                          "UPDATE market_distributions SET opened_at = ? WHERE id = ? AND opened_at IS NULL "
                                          "RETURNING id",
                                          "sI", now, int_of(d, "id"));
        int mine = st && mk_api->db_step(st) == HALLE_DB_ROW;
        mk_api->db_done(st);
        if (!st) {
            mk_api->log(h, HALLE_LOG_ERROR, "distribution %lld not marked opened: %s", (long long)int_of(d, "id"),
                        mk_api->last_error(h));
            rc = HALLE_ERROR;
            continue;
        }
        if (mine)
            mk_api->run_action(h, NULL, HOOK_OPENED, d);
    }
    json_decref(rows);
    return rc;
}

/* ---- registration ------------------------------------------------------------------------------------------------------ */

#define SLUG "/groups/(?<slug>[a-z0-9-]{1,100})"
#define DIST SLUG "/distributions/(?<id>\\d{1,15})"

int mk_distributions_register(halle_host *h, const halle_api *api)
{
    static const struct {
        unsigned methods;
        const char *pattern;
        halle_handler fn;
    } routes[] = {
        {HALLE_GET | HALLE_HEAD, SLUG "/distributions", list_get},
        {HALLE_POST, SLUG "/distributions/new", create_post},
        {HALLE_POST, SLUG "/distributions/settings", settings_post},
        {HALLE_GET | HALLE_HEAD, DIST "/edit", edit_get},
        {HALLE_POST, DIST "/edit", edit_post},
        {HALLE_POST, DIST "/cancel", cancel_post},
        {HALLE_GET | HALLE_HEAD, "/producer/distributions", producer_get},
        {HALLE_POST, "/producer/distributions/(?<id>\\d{1,15})", producer_post},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (api->route(h, routes[i].methods, routes[i].pattern, routes[i].fn, NULL) != HALLE_OK)
            return HALLE_ERROR;
    if (api->declare_hook(h, HOOK_OPENED, HALLE_HOOK_ACTION) != HALLE_OK ||
        api->job(h, "distributions-open", "every 60", open_job, NULL) != HALLE_OK)
        return HALLE_ERROR;
    return HALLE_OK;
}
