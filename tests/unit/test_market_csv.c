/* Unit tests of the marketplace's CSV import (plugins/market/csvimport.c): files as producers
 * make them (BOM, ';' and French decimals, CRLF, quoted separators and newlines, Windows-1252),
 * the line-by-line report (in the page's language when the import has a request), prices and
 * numbers per language, and hostile input (binary, unterminated quotes, junk). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "plugins/market/csvimport.h"
#include "plugins/market/market.h"
#include "plugins/market/notify.h"
#include "core/host.h"

/* market.c calls every module's register function: the other modules are not under test. */
int mk_groups_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_producers_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_catalog_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_api_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_seed_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_distributions_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_shop_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_orders_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_reports_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }
int mk_notify_register(halle_host *h, const halle_api *api) { (void)h; (void)api; return HALLE_OK; }

static const mk_csv_category cats[] = {
    {1, "fruits", "Fruits"}, {2, "legumes", "Légumes"}, {5, "oeufs", "Œufs"}, {9, "boulangerie", "Pain et boulangerie"},
};
#define NCATS (sizeof cats / sizeof cats[0])

static int parse(mk_csv_import *imp, const char *text)
{
    mk_err err = {0, ""};
    memset(imp, 0, sizeof *imp);
    return mk_csv_parse(imp, text, strlen(text), cats, NCATS, NULL, NULL, &err);
}

static int has_error(const mk_csv_import *imp, const char *needle)
{
    for (size_t i = 0; i < imp->nlisted; i++)
        if (strstr(imp->errors[i], needle))
            return 1;
    return 0;
}

static void test_french_spreadsheet(void **state)
{
    (void)state;
    mk_csv_import imp;
    const char *text = "\xef\xbb\xbfR\xc3\xa9" "f\xc3\xa9rence;Nom;Description;Cat\xc3\xa9gorie;UNIT\xc3\x89;Quantit\xc3\xa9;Prix;TVA;Bio;Stock\r\n"
                       "C1;Carottes;\"Lav\xc3\xa9" "es; en botte\r\nsur deux lignes\";L\xc3\xa9gumes;kg;0,5;2,30;5,5;oui;12\r\n"
                       "\r\n"
                       "\"O6\";\"\xc5\x92ufs \"\"plein air\"\"\";;oeufs;pi\xc3\xa8" "ce;6;3,00 \xe2\x82\xac;5,5 %;non;\r\n"
                       ";;;;;;;;;\r\n"
                       "P;Pain;;Pain et boulangerie;;;4.5;5.5;x;\r\n";
    assert_int_equal(parse(&imp, text), MK_OK);
    assert_int_equal(imp.delimiter, ';');
    assert_int_equal(imp.nerrors, 0);
    assert_int_equal(imp.nrows, 3);
    mk_csv_product *p = &imp.rows[0];
    assert_int_equal(p->line, 2);
    assert_string_equal(p->ref, "C1");
    assert_string_equal(p->name, "Carottes");
    assert_string_equal(p->description, "Lavées; en botte\r\nsur deux lignes");
    assert_string_equal(p->unit, "kg");
    assert_true(p->quantity == 0.5);
    assert_int_equal(p->price_cents, 230);
    assert_int_equal(p->vat_bp, 550);
    assert_int_equal(p->organic, 1);
    assert_int_equal(p->category_id, 2);
    assert_true(p->has_stock && p->stock == 12);
    p = &imp.rows[1];
    assert_int_equal(p->line, 5); /* the quoted newline and the blank line count */
    assert_string_equal(p->name, "Œufs \"plein air\"");
    assert_int_equal(p->category_id, 5);
    assert_string_equal(p->unit, "piece");
    assert_int_equal(p->price_cents, 300);
    assert_false(p->has_stock);
    assert_int_equal(p->organic, 0);
    p = &imp.rows[2];
    assert_int_equal(p->line, 7);
    assert_int_equal(p->category_id, 9);
    assert_int_equal(p->price_cents, 450);
    assert_true(p->quantity == 1);
    assert_true(imp.has_col[MK_COL_STOCK] && imp.has_col[MK_COL_REF]);
    assert_ptr_equal(mk_csv_find_ref(&imp, "O6"), &imp.rows[1]);
    assert_null(mk_csv_find_ref(&imp, "nope"));
    assert_null(mk_csv_find_ref(&imp, ""));
    mk_csv_free(&imp);
}

static void test_english_comma_and_tab(void **state)
{
    (void)state;
    mk_csv_import imp;
    assert_int_equal(parse(&imp, "name,price,vat,organic,unit\nApples,\"2,50\",20,yes,KG\nPears,3,10,no,g\n"), MK_OK);
    assert_int_equal(imp.delimiter, ',');
    assert_int_equal(imp.nrows, 2);
    assert_int_equal(imp.rows[0].price_cents, 250);
    assert_int_equal(imp.rows[0].vat_bp, 2000);
    assert_string_equal(imp.rows[0].unit, "kg");
    assert_false(imp.has_col[MK_COL_STOCK]);
    mk_csv_free(&imp);

    assert_int_equal(parse(&imp, "nom\tprix\ttva\n  Miel de fleurs \t8,90\t5,5\n"), MK_OK);
    assert_int_equal(imp.delimiter, '\t');
    assert_int_equal(imp.nrows, 1);
    assert_string_equal(imp.rows[0].name, "Miel de fleurs");
    assert_int_equal(imp.rows[0].price_cents, 890);
    mk_csv_free(&imp);
}

static void test_bad_lines_all_reported(void **state)
{
    (void)state;
    mk_csv_import imp;
    const char *text = "nom;prix;tva;unite;bio;categorie;stock;quantite\n"
                       "A;1;20;kg;oui;;;\n"
                       "B;2;20;kg;oui;;;\n"
                       "C;12,5,0;20;kg;oui;;;\n"
                       "D;2;7;boite;peut-etre;viennoiseries;-3;0\n"
                       "E;2;20;kg;oui;;;\n"
                       ";2;20;kg;oui;;;\n"
                       "G;;;;;;;\n"
                       "H;2;20;;;;;\n"
                       "I;2;20;;;;;\n"
                       "J;2;20;;;;;;valeur\n";
    assert_int_equal(parse(&imp, text), MK_EINVAL);
    assert_int_equal(imp.nerrors, 5);
    assert_true(has_error(&imp, "ligne 4 : prix invalide « 12,5,0 »"));
    assert_true(has_error(&imp, "ligne 5 : taux de TVA invalide « 7 »"));
    assert_true(has_error(&imp, "unité invalide « boite »"));
    assert_true(has_error(&imp, "bio invalide « peut-etre »"));
    assert_true(has_error(&imp, "catégorie inconnue « viennoiseries »"));
    assert_true(has_error(&imp, "stock invalide « -3 »"));
    assert_true(has_error(&imp, "quantité invalide « 0 »"));
    assert_true(has_error(&imp, "ligne 7 : nom manquant"));
    assert_true(has_error(&imp, "ligne 8 : prix manquant ; taux de TVA manquant"));
    assert_true(has_error(&imp, "ligne 11 : 9 colonnes alors que l'en-tête en a 8"));
    mk_csv_free(&imp);
}

static void test_many_errors_capped(void **state)
{
    (void)state;
    size_t cap = 64 + 250 * 16;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "nom;prix;tva\n");
    for (int i = 0; i < 250; i++)
        n += (size_t)snprintf(text + n, cap - n, "P%d;abc;20\n", i);
    mk_csv_import imp;
    assert_int_equal(parse(&imp, text), MK_EINVAL);
    assert_int_equal(imp.nerrors, 250);
    assert_int_equal(imp.nlisted, MK_CSV_MAX_ERRORS);
    assert_string_equal(imp.errors[0], "ligne 2 : prix invalide « abc »");
    mk_csv_free(&imp);
    free(text);
}

static void test_header_problems(void **state)
{
    (void)state;
    mk_csv_import imp;
    assert_int_equal(parse(&imp, "nom;prix;poids;nom\nA;1;2;A\n"), MK_EINVAL);
    assert_true(has_error(&imp, "ligne 1 : colonne inconnue « poids »"));
    assert_true(has_error(&imp, "colonne « nom » en double"));
    assert_true(has_error(&imp, "colonne « tva » manquante"));
    mk_csv_free(&imp);
    /* trailing separators on the header (untitled columns) are fine while they stay empty */
    assert_int_equal(parse(&imp, "nom;prix;tva;;\nA;1;20;;\n"), MK_OK);
    assert_int_equal(imp.nrows, 1);
    mk_csv_free(&imp);
    assert_int_equal(parse(&imp, "nom;prix;tva;;\nA;1;20;;oups\n"), MK_EINVAL);
    assert_true(has_error(&imp, "ligne 2 : valeur dans la colonne 5, qui n'a pas de titre"));
    mk_csv_free(&imp);
}

static void test_duplicate_refs(void **state)
{
    (void)state;
    mk_csv_import imp;
    assert_int_equal(parse(&imp, "ref;nom;prix;tva\nX1;A;1;20\nX2;B;1;20\nX1;C;1;20\n"), MK_EINVAL);
    assert_int_equal(imp.nerrors, 1);
    assert_true(has_error(&imp, "ligne 4 : référence « X1 » déjà utilisée ligne 2"));
    mk_csv_free(&imp);
}

static void test_windows_1252(void **state)
{
    (void)state;
    mk_csv_import imp;
    /* "Pâté de campagne" and the euro sign as Excel writes them in Windows-1252 */
    assert_int_equal(parse(&imp, "nom;prix;tva;cat\xe9gorie\nP\xe2t\xe9 de campagne;4,50 \x80;5,5;l\xe9gumes\n"), MK_OK);
    assert_int_equal(imp.nrows, 1);
    assert_string_equal(imp.rows[0].name, "Pâté de campagne");
    assert_int_equal(imp.rows[0].price_cents, 450);
    assert_int_equal(imp.rows[0].category_id, 2);
    mk_csv_free(&imp);
    /* 0x81 is no character in Windows-1252 either */
    assert_int_equal(parse(&imp, "nom;prix;tva\nA\x81;1;20\n"), MK_EINVAL);
    assert_true(has_error(&imp, "Encodage non reconnu"));
    mk_csv_free(&imp);
}

static void test_hostile_files(void **state)
{
    (void)state;
    mk_csv_import imp;
    mk_err err = {0, ""};
    memset(&imp, 0, sizeof imp);
    static const char zip[] = "PK\x03\x04\x14\0\0\0\x08\0nom;prix;tva";
    assert_int_equal(mk_csv_parse(&imp, zip, sizeof zip - 1, cats, NCATS, NULL, NULL, &err), MK_EINVAL);
    assert_true(has_error(&imp, "classeur"));
    mk_csv_free(&imp);

    assert_int_equal(parse(&imp, ""), MK_EINVAL);
    assert_true(has_error(&imp, "vide"));
    mk_csv_free(&imp);
    assert_int_equal(parse(&imp, " \r\n\n  \n"), MK_EINVAL);
    assert_true(has_error(&imp, "vide"));
    mk_csv_free(&imp);
    assert_int_equal(parse(&imp, "nom;prix;tva\n"), MK_EINVAL);
    assert_true(has_error(&imp, "aucune ligne"));
    mk_csv_free(&imp);
    assert_int_equal(parse(&imp, "nom;prix;tva\nA;1;20\n\"B;2;20\nC;3;20\n"), MK_EINVAL);
    assert_true(has_error(&imp, "ligne 3 : guillemet ouvert qui n'est jamais fermé"));
    mk_csv_free(&imp);
    assert_int_equal(parse(&imp, "nom;prix;tva\nA;1;20\nPot 12\" pouces;2;20\n"), MK_EINVAL);
    assert_true(has_error(&imp, "ligne 3 : guillemet mal placé"));
    mk_csv_free(&imp);

    /* a very long name and too many columns */
    size_t big = 100000;
    char *text = malloc(big + 64);
    assert_non_null(text);
    memcpy(text, "nom;prix;tva\n", 13);
    memset(text + 13, 'a', big);
    memcpy(text + 13 + big, ";1;20\n", 7);
    assert_int_equal(parse(&imp, text), MK_EINVAL);
    assert_true(has_error(&imp, "ligne 2 : nom trop long"));
    mk_csv_free(&imp);
    size_t n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(text + n, big - n, "nom;");
    snprintf(text + n, big - n, "\nA\n");
    assert_int_equal(parse(&imp, text), MK_EINVAL);
    assert_true(has_error(&imp, "trop de colonnes"));
    mk_csv_free(&imp);

    /* control characters are refused */
    assert_int_equal(parse(&imp, "nom;prix;tva\nA\x01;1;20\n"), MK_EINVAL);
    assert_true(has_error(&imp, "caractères de contrôle"));
    mk_csv_free(&imp);

    /* random bytes: an error or a result, never a crash (ASan watches) */
    srand(7);
    for (int round = 0; round < 300; round++) {
        size_t len = (size_t)(rand() % 400);
        for (size_t i = 0; i < len; i++) {
            static const char alphabet[] = "nom;prix;tva\"\r\n,\t 12,5abc\xc3\xa9\xff";
            text[i] = round % 2 ? (char)(rand() % 255 + 1) : alphabet[rand() % (int)(sizeof alphabet - 1)];
        }
        memset(&imp, 0, sizeof imp);
        int rc = mk_csv_parse(&imp, text, len, cats, NCATS, NULL, NULL, &err);
        assert_true(rc == MK_OK || (rc < 0 && imp.nerrors > 0));
        mk_csv_free(&imp);
    }
    free(text);

    memset(&imp, 0, sizeof imp);
    assert_int_equal(mk_csv_parse(&imp, NULL, 5, cats, NCATS, NULL, NULL, &err), MK_EINVAL);
    assert_int_equal(mk_csv_parse(NULL, "a", 1, cats, NCATS, NULL, NULL, NULL), MK_EINVAL);
}

typedef struct progress_log {
    size_t calls, last_done, last_total;
} progress_log;

static void on_progress(void *ud, size_t done, size_t total)
{
    progress_log *l = ud;
    l->calls++;
    l->last_done = done;
    l->last_total = total;
}

static void test_progress(void **state)
{
    (void)state;
    size_t cap = 32 + 2500 * 32;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n = (size_t)snprintf(text, cap, "ref;nom;prix;tva\n");
    for (int i = 0; i < 2500; i++)
        n += (size_t)snprintf(text + n, cap - n, "R%d;\"Produit; %d\";%d,%02d;5,5\n", i, i, i % 50 + 1, i % 100);
    mk_csv_import imp;
    memset(&imp, 0, sizeof imp);
    progress_log log = {0, 0, 0};
    assert_int_equal(mk_csv_parse(&imp, text, n, cats, NCATS, on_progress, &log, NULL), MK_OK);
    assert_int_equal(imp.nrows, 2500);
    assert_int_equal(log.calls, 3); /* 1000, 2000, then the end */
    assert_int_equal(log.last_done, 2500);
    assert_int_equal(log.last_total, 2500);
    mk_csv_product *p = mk_csv_find_ref(&imp, "R1234");
    assert_non_null(p);
    assert_string_equal(p->name, "Produit; 1234");
    assert_int_equal(p->line, 1236);
    mk_csv_free(&imp);
    free(text);
}

static void test_field_parsers(void **state)
{
    (void)state;
    assert_string_equal(mk_unit_parse("Pièce"), "piece");
    assert_string_equal(mk_unit_parse(" VRAC "), "bulk");
    assert_string_equal(mk_unit_parse("litres"), "l");
    assert_null(mk_unit_parse("boîte"));
    assert_null(mk_unit_parse(""));
    assert_string_equal(mk_unit_label("piece"), "pièce");
    assert_string_equal(mk_unit_label("kg"), "kg");

    double d = -1;
    assert_int_equal(mk_decimal_parse("0,5", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(mk_decimal_parse("1 000,25", &d), 0);
    assert_true(d == 1000.25);
    assert_int_equal(mk_decimal_parse("2.125", &d), 0);
    assert_true(d == 2.125);
    assert_int_equal(mk_decimal_parse("1,2345", &d), -1);
    assert_int_equal(mk_decimal_parse("-1", &d), -1);
    assert_int_equal(mk_decimal_parse("1,2,3", &d), -1);
    assert_int_equal(mk_decimal_parse(",5", &d), -1);
    assert_int_equal(mk_decimal_parse("", &d), -1);
    assert_int_equal(mk_decimal_parse("2000000", &d), -1);
    assert_int_equal(mk_decimal_parse("99999999999999999999", &d), -1);
    assert_int_equal(mk_decimal_parse(NULL, &d), -1);

    char buf[32];
    mk_decimal_format(0.5, buf, sizeof buf);
    assert_string_equal(buf, "0,5");
    mk_decimal_format(3, buf, sizeof buf);
    assert_string_equal(buf, "3");
    mk_decimal_format(1.125, buf, sizeof buf);
    assert_string_equal(buf, "1,125");
    mk_decimal_format(-4, buf, sizeof buf);
    assert_string_equal(buf, "0");
    mk_price_format(1250, buf, sizeof buf);
    assert_string_equal(buf, "12,50");
    mk_price_format(7, buf, sizeof buf);
    assert_string_equal(buf, "0,07");
    mk_vat_format(550, buf, sizeof buf);
    assert_string_equal(buf, "5,5");
    mk_vat_format(2000, buf, sizeof buf);
    assert_string_equal(buf, "20");
    mk_vat_format(210, buf, sizeof buf);
    assert_string_equal(buf, "2,1");
    mk_vat_format(1234, buf, sizeof buf);
    assert_string_equal(buf, "12,34");
    assert_true(mk_vat_allowed(0) && mk_vat_allowed(210) && mk_vat_allowed(550) && mk_vat_allowed(1000) &&
                mk_vat_allowed(2000));
    assert_false(mk_vat_allowed(700) || mk_vat_allowed(1960) || mk_vat_allowed(-1));

    assert_int_equal(mk_bool_parse("OUI"), 1);
    assert_int_equal(mk_bool_parse("x"), 1);
    assert_int_equal(mk_bool_parse("1"), 1);
    assert_int_equal(mk_bool_parse(""), 0);
    assert_int_equal(mk_bool_parse("Non"), 0);
    assert_int_equal(mk_bool_parse("peut-être"), -1);
    assert_int_equal(mk_bool_parse(NULL), 0);

    mk_fold("  Catégorie   de  PRODUIT ", buf, sizeof buf);
    assert_string_equal(buf, "categorie de produit");
    mk_fold("Œufs", buf, sizeof buf);
    assert_string_equal(buf, "oeufs");
    char tiny[4];
    mk_fold("abcdef", tiny, sizeof tiny);
    assert_string_equal(tiny, "abc");

    assert_true(mk_text_ok("Carottes nouvelles", 200, 0));
    assert_false(mk_text_ok("ligne\nautre", 200, 0));
    assert_true(mk_text_ok("ligne\nautre", 200, 1));
    assert_false(mk_text_ok("trop long", 3, 0));
    assert_false(mk_text_ok("\xc3\x28", 200, 0));       /* broken sequence */
    assert_false(mk_text_ok("\xc0\xaf", 200, 0));       /* overlong '/' */
    assert_false(mk_text_ok("\xed\xa0\x80", 200, 0));   /* surrogate */
    assert_false(mk_text_ok(NULL, 200, 0));
}

static void test_shared_helpers(void **state)
{
    (void)state;
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0};
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0};
    assert_string_equal(mk_image_type(png, sizeof png), "image/png");
    assert_string_equal(mk_image_type(jpeg, sizeof jpeg), "image/jpeg");
    assert_string_equal(mk_image_type("RIFF\x10\0\0\0WEBPVP8 ", 16), "image/webp");
    assert_null(mk_image_type("RIFF\x10\0\0\0WAVEfmt ", 16));
    assert_null(mk_image_type("GIF89a", 6));
    assert_null(mk_image_type("<svg onload=x>", 14));
    assert_null(mk_image_type(png, 7)); /* cut short */
    assert_null(mk_image_type(NULL, 10));

    char like[16];
    assert_int_equal(mk_like_pattern("car", like, sizeof like), 0);
    assert_string_equal(like, "%car%");
    assert_int_equal(mk_like_pattern("100%_\\", like, sizeof like), 0);
    assert_string_equal(like, "%100\\%\\_\\\\%");
    assert_int_equal(mk_like_pattern("", like, sizeof like), 0);
    assert_string_equal(like, "%%");
    assert_int_equal(mk_like_pattern("much too long for it", like, sizeof like), -1);
    assert_int_equal(mk_like_pattern("x", like, 0), -1);

    assert_int_equal(mk_id("42"), 42);
    assert_int_equal(mk_id("0"), 0);
    assert_int_equal(mk_id(""), 0);
    assert_int_equal(mk_id(NULL), 0);
    assert_int_equal(mk_id("12a"), 0);
    assert_int_equal(mk_id("-3"), 0);
    assert_int_equal(mk_id("999999999999999"), 999999999999999LL);
    assert_int_equal(mk_id("99999999999999999999999"), 0); /* would overflow */
}

static void test_lang_formats(void **state)
{
    (void)state;
    char buf[48];
    assert_true(mk_lang_is_english("en") && mk_lang_is_english("en-GB") && mk_lang_is_english("en_US"));
    assert_false(mk_lang_is_english("fr") || mk_lang_is_english(NULL) || mk_lang_is_english("") ||
                 mk_lang_is_english("eng") || mk_lang_is_english("e"));
    /* the SDK's formats (api->format_price): a no-break space holds the symbol */
    mk_price_text("fr", 1250, buf, sizeof buf);
    assert_string_equal(buf, "12,50\u00a0€");
    mk_price_text("en", 1250, buf, sizeof buf);
    assert_string_equal(buf, "€12.50");
    mk_price_text("en-GB", 7, buf, sizeof buf);
    assert_string_equal(buf, "€0.07");
    mk_price_text(NULL, 320, buf, sizeof buf);
    assert_string_equal(buf, "3,20\u00a0€");
    mk_price_text("de", -500, buf, sizeof buf); /* no negative price: shown as zero, in French */
    assert_string_equal(buf, "0,00\u00a0€");
    mk_price_text("en", 123456, buf, sizeof buf);
    assert_string_equal(buf, "€1,234.56");
    char small[6];
    mk_price_text("en", 123456, small, sizeof small); /* too small: empty, never overflowed */
    assert_string_equal(small, "");
    mk_price_text("en", 1, buf, 0);
    mk_decimal_text("en", 2.5, buf, sizeof buf);
    assert_string_equal(buf, "2.5");
    mk_decimal_text("fr", 2.5, buf, sizeof buf);
    assert_string_equal(buf, "2,5");
    mk_decimal_text("en", 3, buf, sizeof buf);
    assert_string_equal(buf, "3");
    mk_decimal_text("en", NAN, buf, sizeof buf);
    assert_string_equal(buf, "0");
    mk_decimal_text("fr", 0.125, buf, sizeof buf);
    assert_string_equal(buf, "0,125");
    mk_vat_text("en", 550, buf, sizeof buf);
    assert_string_equal(buf, "5.5%");
    mk_vat_text("fr", 550, buf, sizeof buf);
    assert_string_equal(buf, "5,5 %");
    mk_vat_text("en", 2000, buf, sizeof buf);
    assert_string_equal(buf, "20%");
    mk_vat_text("fr", 0, buf, sizeof buf);
    assert_string_equal(buf, "0 %");
}

/* A stand-in for the core's catalogs: a few English report strings. */
static const char *fake_tr(halle_request *r, const char *msgid)
{
    static const char *const en[][2] = {
        {"ligne %d : %s", "line %d: %s"},
        {"prix invalide « %s »", "invalid price “%s”"},
        {"nom manquant", "name missing"},
        {" ; ", "; "},
        {"ligne %d : colonne « %s » manquante", "line %d: column “%s” missing"},
        {"tva", "vat"},
        {"Le fichier est vide.", "The file is empty."},
    };
    assert_non_null(r);
    for (size_t i = 0; i < sizeof en / sizeof en[0]; i++)
        if (!strcmp(msgid, en[i][0]))
            return en[i][1];
    return msgid;
}

static int parse_for(mk_csv_import *imp, halle_request *r, const char *text)
{
    mk_err err = {0, ""};
    memset(imp, 0, sizeof *imp);
    imp->req = r;
    return mk_csv_parse(imp, text, strlen(text), cats, NCATS, NULL, NULL, &err);
}

static void test_report_language(void **state)
{
    (void)state;
    static halle_api fake;
    fake = *hl_host_api(); /* the core's SDK (folding, validation), with tr in "English" */
    fake.tr = fake_tr;
    const halle_api *saved = mk_api;
    mk_api = &fake;
    halle_request *page = (halle_request *)&fake; /* opaque: only passed back to tr */
    mk_csv_import imp;

    assert_int_equal(parse_for(&imp, page, "nom;prix;tva\n;abc;5,5\n"), MK_EINVAL);
    assert_int_equal(imp.nlisted, 1);
    assert_string_equal(imp.errors[0], "line 2: name missing; invalid price “abc”");
    mk_csv_free(&imp);
    assert_int_equal(parse_for(&imp, page, "nom;prix\nPain;2\n"), MK_EINVAL);
    assert_true(has_error(&imp, "line 1: column “vat” missing"));
    mk_csv_free(&imp);
    assert_int_equal(parse_for(&imp, page, "  \n"), MK_EINVAL);
    assert_string_equal(imp.errors[0], "The file is empty.");
    mk_csv_free(&imp);
    /* an untranslated message stays French, its values filled in */
    assert_int_equal(parse_for(&imp, page, "nom;prix;tva\nPain;2;7\n"), MK_EINVAL);
    assert_string_equal(imp.errors[0], "line 2: taux de TVA invalide « 7 » (0, 2,1, 5,5, 10 ou 20)");
    mk_csv_free(&imp);

    /* without a request (the command line), French whatever mk_api can do */
    assert_int_equal(parse_for(&imp, NULL, "nom;prix;tva\n;abc;5,5\n"), MK_EINVAL);
    assert_string_equal(imp.errors[0], "ligne 2 : nom manquant ; prix invalide « abc »");
    mk_csv_free(&imp);
    mk_api = saved;
    /* nor with the core's own tr and no request */
    assert_int_equal(parse_for(&imp, NULL, "nom;prix;tva\n;abc;5,5\n"), MK_EINVAL);
    assert_string_equal(imp.errors[0], "ligne 2 : nom manquant ; prix invalide « abc »");
    mk_csv_free(&imp);
}

int main(void)
{
    mk_api = hl_host_api(); /* the market's text helpers are the SDK's */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_french_spreadsheet), cmocka_unit_test(test_english_comma_and_tab),
        cmocka_unit_test(test_bad_lines_all_reported), cmocka_unit_test(test_many_errors_capped),
        cmocka_unit_test(test_header_problems), cmocka_unit_test(test_duplicate_refs),
        cmocka_unit_test(test_windows_1252), cmocka_unit_test(test_hostile_files),
        cmocka_unit_test(test_progress), cmocka_unit_test(test_field_parsers), cmocka_unit_test(test_shared_helpers),
        cmocka_unit_test(test_lang_formats), cmocka_unit_test(test_report_language),
    };
    return cmocka_run_group_tests_name("market_csv", tests, NULL, NULL);
}
