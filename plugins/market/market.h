/* The marketplace plugin's shared state and helpers. The plugin reaches the core only through
 * the halle_api table (include/halle/plugin.h), like any out-of-tree plugin. */
#ifndef MARKET_H
#define MARKET_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "include/halle/plugin.h"

extern const halle_api *mk_api;
extern halle_host *mk_host;

#define MK_CHARTER_VERSION "2021-11"
#define MK_PER_PAGE 50

/* Each module registers its routes, hooks and commands; returns HALLE_OK or an error. */
int mk_groups_register(halle_host *h, const halle_api *api);
int mk_producers_register(halle_host *h, const halle_api *api);
int mk_catalog_register(halle_host *h, const halle_api *api);
int mk_api_register(halle_host *h, const halle_api *api);
int mk_seed_register(halle_host *h, const halle_api *api);
int mk_distributions_register(halle_host *h, const halle_api *api);

/* The next distributions of group gid (slug: for their links) for its public page: planned,
 * pickup not over, at most 5, each {id, day, hours, place_name, window, open_now, url}. */
json_t *mk_dist_upcoming(halle_request *r, int64_t gid, const char *slug);
/* Europe/Paris time (the EU's summer time rule): a local date and minutes since midnight as a
 * UTC instant, and the local date of a UTC instant. */
int64_t mk_paris_to_utc(int y, int m, int d, int minutes);
void mk_paris_date(int64_t t, int *y, int *m, int *d);
int mk_shop_register(halle_host *h, const halle_api *api);
int mk_orders_register(halle_host *h, const halle_api *api);  /* orders.c */
int mk_reports_register(halle_host *h, const halle_api *api); /* reports.c */

/* ---- helpers (market.c) ------------------------------------------------------------------ */

/* "Les Paniers de l'Étang" -> "les-paniers-de-l-etang" (ASCII, [a-z0-9-], at most 60 chars). */
void mk_slugify(const char *in, char *out, size_t len);
/* A SIRET: 14 digits (spaces allowed in input, removed into out[15]) with a valid Luhn key
 * (La Poste's SIRETs, 356000000xxxxx, use the digit-sum rule instead). */
int mk_siret_valid(const char *in, char out[15]);
/* "12,50" / "12.5" / "12 €" -> 1250 cents; -1 when not a price (negative, junk, > 1e9). */
long long mk_parse_price(const char *s);
/* "5,5" / "5.5" / "5.5 %" -> 550 basis points; -1 when not a VAT rate (0..100 %). */
int mk_parse_vat(const char *s);
/* The page number (?page=, 1-based, capped) and the search text (?q=, trimmed, may be ""). */
int mk_page(halle_request *r);
const char *mk_query(halle_request *r);
/* The search text (?q=) in out: at most max bytes cut on a character boundary, trailing
 * blanks dropped, "" when it is not text. */
const char *mk_search_text(halle_request *r, char *out, size_t size, size_t max);
/* Business time: the core's clock (HALLE_NOW in tests), as epoch seconds and as ISO text. */
int64_t mk_time(void);
const char *mk_now(char *buf, size_t len);
/* Fills the search keys (COLUMN_folded, through api->fold) of the row id of table, or with id
 * 0 of every row that has none (rows just inserted, rows older than the keys). Call it after
 * every write of a searched column. HALLE_OK or HALLE_ERROR. */
int mk_fold_rows(const char *table, int64_t id);
/* Gives their keys to the rows of every searched table that have none (found through an
 * index: cheap when there are none). Lists searched or sorted by the keys call it first
 * (mk_like_pattern does). */
void mk_search_ready(void);
/* Renders a themed page or, on failure, an error page. Does not take the reference to ctx. */
int mk_render(halle_request *r, const char *template_name, json_t *ctx);
/* Answers with the themed error page. */
int mk_error(halle_request *r, int status, const char *message);
/* When nobody is logged in: redirect to /login and return 1. */
int mk_need_login(halle_request *r);
/* The producer id of the logged-in user (0 when they have no producer account). */
int64_t mk_current_producer(halle_request *r);
/* 1 when the user coordinates the group. */
int mk_is_coordinator(halle_request *r, int64_t group_id);
/* From the core's roles, the one record of who runs a group (market_members holds
 * memberships only): how many groups user_id coordinates; whether they coordinate group_id;
 * the same for a user as api->user_get returns it. */
int mk_coordinated_count(int64_t user_id);
int mk_coordinates(int64_t user_id, int64_t group_id);
int mk_user_coordinates(const json_t *user, int64_t group_id);
/* Pagination for templates: {page, pages, total, prev, next, q} with prev/next as page
 * numbers (absent at the ends). */
json_t *mk_pagination(int page, long long total, const char *q);

#endif
