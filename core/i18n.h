/* Translations and per-language formatting: GNU gettext catalogs (po/LANG.po, the format
 * translators already use) read directly at start-up, the page language chosen from the
 * user's choice then Accept-Language, and prices, numbers and dates written for a language
 * without setlocale(), since one process serves pages in several languages at once. */
#ifndef HL_I18N_H
#define HL_I18N_H

#include <stddef.h>

#include "core/error.h"

/* French is the source language: msgids are the French text, so a string missing from a
 * catalog (or a language with no catalog) shows in French, and "fr" needs no translations. */
#define HL_I18N_DEFAULT "fr"

typedef struct hl_i18n hl_i18n;

/* Reads every DIR/NAME.po where NAME is a language code, ll or ll_CC ("en", "pt_BR"); dot
 * files and files not ending in ".po" are skipped, any other *.po name is an error. Supports
 * what msgfmt accepts in practice: comments, msgctxt, msgid, msgid_plural + msgstr[N],
 * strings continued on following lines, the escapes \n \t \r \" \\ \a \b \f \v. Entries
 * flagged "#, fuzzy" and untranslated ones (an empty msgstr) are left out, as msgfmt does.
 * The header must say charset=UTF-8 (or nothing) and its Plural-Forms may use n, integers,
 * == != < > <= >= && || % ?: and parentheses; without one, "fr" uses (n > 1) and other
 * languages (n != 1). Every problem is reported as "DIR/NAME.po:LINE: problem" (unterminated
 * string, entry without msgstr, duplicate entry, bad escape, bad plural expression or a
 * plural entry whose number of forms is not nplurals, invalid UTF-8, ...). */
int hl_i18n_load(hl_i18n **out, const char *dir, hl_err *err);
void hl_i18n_free(hl_i18n *i18n);

/* Lookups never return NULL: the translation, else msgid itself ("" if msgid is NULL).
 * lang is a catalog code or a tag such as "en-GB"/"en_GB", which falls back to "en". The
 * result lives as long as the catalog (or is msgid). i18n may be NULL (no catalogs). */
const char *hl_i18n_get(const hl_i18n *i18n, const char *lang, const char *msgid);
/* Picks the form for n with the catalog's Plural-Forms. Untranslated, it picks between the
 * French source strings by the French rule: msgid for n = 0 or 1 (or -1), plural above.
 * Negative counts use their magnitude. */
const char *hl_i18n_nget(const hl_i18n *i18n, const char *lang, const char *msgid, const char *plural, long n);
/* Looks msgid up in context ctxt (msgctxt): the same French text may need two translations. */
const char *hl_i18n_pget(const hl_i18n *i18n, const char *lang, const char *ctxt, const char *msgid);

/* The language of a page: choice (a cookie or the user's setting, "en", "en-GB") if it names
 * a supported language, else the best match in accept_language (RFC 9110: q-values, q=0
 * excludes, "en-GB" matches a catalog "en", "*" matches the default; malformed items are
 * skipped), else "fr". Supported means a loaded catalog, or "fr" which is always supported.
 * Returns a catalog-owned or static string; both arguments may be NULL or hostile. */
const char *hl_i18n_negotiate(const hl_i18n *i18n, const char *choice, const char *accept_language);

/* Supported language codes, "fr" first then the others by code. Fills out[0..max) and
 * returns how many there are in all (which may be more than max). */
size_t hl_i18n_languages(const hl_i18n *i18n, const char **out, size_t max);

/* Calls fn for each entry of lang's catalog, in file order (msgid_plural NULL for a plain
 * entry, msgstr its first form); stops at and returns the first nonzero answer of fn.
 * Returns HL_ENOTFOUND when lang has no catalog. For tools: checks, untranslated lists. */
int hl_i18n_each(const hl_i18n *i18n, const char *lang,
                 int (*fn)(void *ud, const char *ctxt, const char *msgid, const char *msgid_plural,
                           const char *msgstr),
                 void *ud);

/* Formatting: "en", "en_GB", "en-US" use English rules, every other language (and NULL) the
 * French ones. All return HL_OK, HL_EINVAL (bad argument: buf NULL or len 0, non-finite
 * number, impossible date...) or HL_ETOOBIG (buf too small); on failure buf holds "" when it
 * can. Negative amounts use the ASCII hyphen-minus '-' (not U+2212): it survives copy and
 * paste into spreadsheets and forms, which parse it as a minus sign.
 *
 * Prices: currency is an ISO 4217 code. French: "1 234,50 €" (U+202F NARROW NO-BREAK SPACE
 * between thousands, U+00A0 NO-BREAK SPACE before the symbol), "-5,00 €"; English:
 * "€1,234.50", "-€5.00". EUR is "€"; USD "$" in English, "$US" in French; GBP "£" / "£GB";
 * any other code is written out: "1 234,50 CHF", "CHF 1,234.50" (U+00A0 again). */
int hl_i18n_format_price(const char *lang, long long cents, const char *currency, char *buf, size_t len);
/* v rounded to decimals (0 to 9) places: French "1 234,5" (U+202F), English "1,234.5". A
 * value that rounds to zero has no sign. */
int hl_i18n_format_number(const char *lang, double v, int decimals, char *buf, size_t len);
/* A date of the proleptic Gregorian calendar, years 1 to 9999, with its weekday: French
 * "mercredi 25 novembre 2026" ("1er" for the first of the month, as French typography
 * writes it), English "Wednesday, 25 November 2026". */
int hl_i18n_format_date(const char *lang, int year, int month, int day, char *buf, size_t len);

/* For hl_tpl_opts.translate (core/mustache.h): a template compiled with
 * opts.translate = hl_i18n_tpl_translate and opts.translate_ud = &(hl_i18n_tpl){i18n, "en"}
 * has its {{_ texte}} tags replaced by their English translation once, at compile time. */
typedef struct hl_i18n_tpl {
    const hl_i18n *i18n;
    const char *lang;
} hl_i18n_tpl;

const char *hl_i18n_tpl_translate(void *ud, const char *msgid);

#endif
