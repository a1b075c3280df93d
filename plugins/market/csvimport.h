/* Products from CSV files as producers really make them (spreadsheet exports in French
 * conventions included), checked line by line before anything is written; the field parsers
 * the product form shares with the import, and the few helpers producers.c and catalog.c
 * share. Parsing is libcsv's; nothing here touches the database, so that every rule can be
 * tested on its own (tests/unit/test_market_csv.c). */
#ifndef MK_CSVIMPORT_H
#define MK_CSVIMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "include/halle/plugin.h"

/* The import's error record: a code and a message for the producer (a plugin reaches the core
 * only through <halle/plugin.h>, which has no error type of its own to share). */
enum { MK_OK = 0, MK_EINVAL = -2, MK_ENOMEM = -3, MK_ETOOBIG = -4 };
typedef struct mk_err {
    int code;
    char msg[512];
} mk_err;

/* Marks a French msgid kept in a table and translated where it is shown, with mk_api->tr
 * (xgettext --keyword=N_; tests/unit/test_i18n.c checks that po/en.po translates it). */
#define N_(msgid) msgid

#define MK_CSV_MAX_ERRORS 100     /* messages kept in a report; the others are only counted */
#define MK_CSV_MAX_ROWS 200000
#define MK_CSV_MAX_COLS 64
#define MK_NAME_MAX 200           /* bytes */
#define MK_DESC_MAX 4000
#define MK_REF_MAX 64

/* The columns a file may have, whatever their order. */
enum { MK_COL_REF, MK_COL_NAME, MK_COL_DESC, MK_COL_CATEGORY, MK_COL_UNIT, MK_COL_QTY, MK_COL_PRICE, MK_COL_VAT,
       MK_COL_ORGANIC, MK_COL_STOCK, MK_NCOLS };

typedef struct mk_csv_category {
    int64_t id;
    const char *slug;
    const char *name;
} mk_csv_category;

/* One valid line. Strings live as long as the import. */
typedef struct mk_csv_product {
    int line;              /* where the line starts in the file (the header is line 1) */
    const char *ref;       /* "" when none */
    const char *name;
    const char *description;
    const char *unit;      /* piece, kg, g, l, ml, bulk */
    double quantity;
    long long price_cents; /* incl. VAT */
    int vat_bp;
    int organic;
    int64_t category_id;   /* 0: none */
    int has_stock;
    double stock;
    int64_t existing_id;   /* set by the caller: the product this line updates (0: a new one) */
} mk_csv_product;

typedef struct mk_csv_block mk_csv_block;

typedef struct mk_csv_import {
    int has_col[MK_NCOLS];   /* the columns the file has: the others keep their values on update */
    mk_csv_product *rows;
    size_t nrows, cap;
    char *errors[MK_CSV_MAX_ERRORS];
    size_t nlisted;          /* messages in errors[] */
    size_t nerrors;          /* wrong lines (and header problems), all of them */
    char delimiter;
    halle_request *req;      /* set by the caller: the report is in this page's language (NULL: French) */
    /* private */
    mk_csv_block *pool;
    uint32_t *refs;          /* open addressing: row index + 1, 0 = empty */
    size_t refs_cap;
} mk_csv_import;

/* Called every 1000 lines and at the end of the check: lines checked, lines in all. */
typedef void (*mk_csv_progress)(void *ud, size_t done, size_t total);

/* Reads a whole file (UTF-8 with or without BOM, or Windows-1252 as older spreadsheets
 * write it; separator ';', ',' or TAB found on the header line) and checks every line against
 * the categories. Returns MK_OK when every line is valid (imp->rows ready to be written),
 * MK_EINVAL when some are not (imp->errors, "ligne N : ...", in the language of imp->req when
 * it is set), MK_ETOOBIG/MK_ENOMEM/MK_EINVAL with err set when the file cannot be read at all.
 * imp must be zeroed first; free it with mk_csv_free whatever the result. */
int mk_csv_parse(mk_csv_import *imp, const char *data, size_t len, const mk_csv_category *cats, size_t ncats,
                 mk_csv_progress progress, void *ud, mk_err *err);
void mk_csv_free(mk_csv_import *imp);
/* The line of the file with this reference, or NULL. */
mk_csv_product *mk_csv_find_ref(mk_csv_import *imp, const char *ref);

/* ---- field parsers (the product form uses them too) ----------------------------------------- */

/* "pièce", "Kg", "vrac", ... -> "piece", "kg", "bulk"; NULL when not a unit. */
const char *mk_unit_parse(const char *s);
/* The French word for a stored unit ("pièce", "vrac"), for exports; a msgid, which pages show
 * through mk_api->tr. */
const char *mk_unit_label(const char *unit);
/* "0,5" / "2.25" / "1 000" (at most 3 decimals, 0 <= x <= 1e6) into *out; 0 or -1. */
int mk_decimal_parse(const char *s, double *out);
/* 12.5 -> "12,5", 3 -> "3" (French decimal comma, at most 3 decimals). */
void mk_decimal_format(double v, char *out, size_t len);
/* 1250 -> "12,50"; 550 (VAT basis points) -> "5,5" with mk_vat_format. */
void mk_price_format(long long cents, char *out, size_t len);
void mk_vat_format(int bp, char *out, size_t len);
/* The same in the page's language (mk_api->req_lang): "en", "en-GB", "en_US"... use the English
 * rules, any other language (and NULL) the French ones. Prices carry the euro sign: "12,50 €" /
 * "€12.50"; quantities "0,5" / "0.5"; VAT rates "5,5 %" / "5.5%". */
int mk_lang_is_english(const char *lang);
void mk_price_text(const char *lang, long long cents, char *out, size_t len);
void mk_decimal_text(const char *lang, double v, char *out, size_t len);
void mk_vat_text(const char *lang, int bp, char *out, size_t len);
/* 1 for the French VAT rates a product may have: 0, 2,1, 5,5, 10 and 20 %. */
int mk_vat_allowed(int bp);
/* oui/non/yes/no/1/0/x/vrai/faux/true/false/"" -> 1 or 0; -1 otherwise. */
int mk_bool_parse(const char *s);
/* The SDK's folding (api->fold): lower case, accents removed, blanks trimmed and squeezed:
 * "  Catégorie " -> "categorie". */
void mk_fold(const char *in, char *out, size_t len);
/* 1 when s is valid UTF-8 of at most max bytes, without control characters (but newlines
 * and tabs when multiline). */
int mk_text_ok(const char *s, size_t max, int multiline);

/* ---- helpers the producers' pages share ------------------------------------------------------- */

#define MK_IMAGE_MAX (2u << 20)   /* bytes of a photo or a product image */
/* "image/png", "image/jpeg" or "image/webp" from the file's first bytes (never from what the
 * browser claims), NULL for anything else. */
const char *mk_image_type(const void *data, size_t len);
/* The SDK's LIKE pattern (api->like_pattern: q folded, '%', '_' and '\' escaped: use ESCAPE
 * '\' over a *_folded column), "%%" for an empty q; 0, or -1 when q does not fit in out. */
int mk_like_pattern(const char *q, char *out, size_t len);
/* A route's numeric id, or 0 when it is not one (too long, zero). */
int64_t mk_id(const char *s);
/* A stored date ("2026-11-25..." ISO text) in the page's language through the SDK:
 * "mercredi 25 novembre 2026" / "Wednesday, 25 November 2026"; "" when it is not one. */
json_t *mk_date_json(halle_request *r, const char *iso);


/* Helpers shared by the market's page modules (producers.c, catalog.c). */
void mk_set_str(json_t *o, const char *key, const char *v);
/* Sets has_KEY for each list of ctx, so templates wrap a list only when it has items. */
void mk_list_flags(json_t *ctx);
/* A form or query parameter, "" when absent. */
const char *mk_param(halle_request *r, const char *name);
/* Copies the form field without blanks at both ends; -1 when too long or not text. */
int mk_get_field(halle_request *r, const char *name, char *out, size_t size, int multiline);

#endif
