/* Unit tests for core/i18n: .po parsing (plural forms, contexts, escapes, continued strings,
 * fuzzy entries), errors naming file and line, lookups and their fallbacks, language
 * negotiation, prices, numbers and dates byte for byte, the {{_ }} template tag, and the real
 * po/ catalogs: they load, every English msgid still appears in the C sources or the themes'
 * templates, and every T() msgid of the core pages, mk_api->tr() or N_() msgid of the market
 * plugin (the C files of plugins/market) and {{_ }} tag of the themes and of the bundled Lua
 * plugins' templates is translated.
 * Build alone: gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -fsanitize=address,undefined -I.
 *   core/arena.c core/error.c core/i18n.c core/mustache.c tests/unit/test_i18n.c
 *   $(pkg-config --cflags --libs cmocka jansson) -lm -o /tmp/t && HALLE_SRCDIR=$PWD /tmp/t */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ctype.h>
#include <dirent.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/i18n.h"
#include "core/mustache.h"

#define SRCDIR_DEFAULT "/work/main"
#define NNBSP "\xe2\x80\xaf"
#define NBSP "\xc2\xa0"
#define EURO "\xe2\x82\xac"

/* ---------------------------------------------------------------- helpers */

static char *make_dir(void)
{
    char tmpl[] = "/tmp/halle-i18n-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void remove_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[512];
        if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static void write_n(const char *dir, const char *name, const char *text, size_t len)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    write_n(dir, name, text, strlen(text));
}

/* Loads a folder holding only name = text. */
static int load_text_n(const char *name, const char *text, size_t len, hl_i18n **out, hl_err *err, char *dirname,
                       size_t dlen)
{
    char *dir = make_dir();
    write_n(dir, name, text, len);
    if (dirname)
        snprintf(dirname, dlen, "%s", dir);
    int rc = hl_i18n_load(out, dir, err);
    remove_dir(dir);
    return rc;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += k;
        if (cap - n - 1 == 0) {
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = n;
    }
    return b;
}

static const char *srcdir(void)
{
    const char *d = getenv("HALLE_SRCDIR");
    return d && *d ? d : SRCDIR_DEFAULT;
}

static const char FR_PO[] =
    "# French test catalog: only the plural rule and one plural entry\n"
    "msgid \"\"\n"
    "msgstr \"\"\n"
    "\"Language: fr\\n\"\n"
    "\"Content-Type: text/plain; charset=UTF-8\\n\"\n"
    "\"Plural-Forms: nplurals=2; plural=(n > 1);\\n\"\n"
    "\n"
    "msgid \"%d pomme\"\n"
    "msgid_plural \"%d pommes\"\n"
    "msgstr[0] \"%d pomme (fr)\"\n"
    "msgstr[1] \"%d pommes (fr)\"\n";

static const char EN_PO[] =
    "# English test catalog\n"
    "msgid \"\"\n"
    "msgstr \"\"\n"
    "\"Project-Id-Version: test\\n\"\n"
    "\"Language: en\\n\"\n"
    "\"Content-Type: text/plain; charset=UTF-8\\n\"\n"
    "\"Plural-Forms: nplurals=2; plural=(n != 1);\\n\"\n"
    "\n"
    "#: core/x.c:12\n"
    "msgid \"Bonjour\"\n"
    "msgstr \"Hello\"\n"
    "\n"
    "msgctxt \"verbe\"\n"
    "msgid \"Commande\"\n"
    "msgstr \"Order (verb)\"\n"
    "\n"
    "msgctxt \"nom\"\n"
    "msgid \"Commande\"\n"
    "msgstr \"Order\"\n"
    "\n"
    "msgid \"Commande\"\n"
    "msgstr \"Order (no context)\"\n"
    "\n"
    "msgid \"Ligne 1\\nLigne \\\"2\\\"\\t\\\\fin\"\n"
    "msgstr \"Line 1\\nLine \\\"2\\\"\\t\\\\end\"\n"
    "\n"
    "msgid \"\"\n"
    "\"Texte sur \"\n"
    "   \"plusieurs lignes\"\n"
    "msgstr \"\"\n"
    "\"Text over \"\n"
    "\"several lines\"\n"
    "\n"
    "#, fuzzy\n"
    "msgid \"Flou\"\n"
    "msgstr \"Fuzzy\"\n"
    "\n"
    "#, c-format, fuzzy\n"
    "msgid \"Flou %d\"\n"
    "msgstr \"Fuzzy %d\"\n"
    "\n"
    "msgid \"Pas traduit\"\n"
    "msgstr \"\"\n"
    "\n"
    "#~ msgid \"Obsolète\"\n"
    "#~ msgstr \"Obsolete\"\n"
    "\n"
    "#, c-format\n"
    "msgid \"%d pomme\"\n"
    "msgid_plural \"%d pommes\"\n"
    "msgstr[0] \"%d apple\"\n"
    "msgstr[1] \"%d apples\"\n"
    "\n"
    "msgid \"Danger\"\r\n"
    "msgstr \"<b>Danger</b> & co\"\r\n";

/* A folder with fr.po and en.po from above, plus pt_BR.po with one entry. */
static hl_i18n *sample(void)
{
    char *dir = make_dir();
    write_file(dir, "fr.po", FR_PO);
    write_file(dir, "en.po", EN_PO);
    write_file(dir, "pt_BR.po", "msgid \"Bonjour\"\nmsgstr \"Olá\"\n");
    write_file(dir, "README.md", "not a catalog\n");
    write_file(dir, "en.po~", "editor backup: skipped\n");
    write_file(dir, ".#en.po", "editor lock: skipped\n");
    hl_i18n *t = NULL;
    hl_err err = {0};
    int rc = hl_i18n_load(&t, dir, &err);
    remove_dir(dir);
    if (rc)
        fail_msg("sample catalogs: %s", err.msg);
    return t;
}

/* ---------------------------------------------------------------- parsing */

static int count_entry(void *ud, const char *ctxt, const char *msgid, const char *plural, const char *msgstr)
{
    (void)ctxt;
    (void)plural;
    assert_non_null(msgid);
    assert_true(*msgstr);
    assert_string_not_equal(msgid, "Flou");
    assert_string_not_equal(msgid, "Pas traduit");
    assert_string_not_equal(msgid, "Obsolète");
    (*(int *)ud)++;
    return 0;
}

static int stop_at_second(void *ud, const char *ctxt, const char *msgid, const char *plural, const char *msgstr)
{
    (void)ctxt, (void)msgid, (void)plural, (void)msgstr;
    return ++*(int *)ud == 2 ? 42 : 0;
}

static void parse_entries(void **state)
{
    (void)state;
    hl_i18n *t = sample();
    assert_string_equal(hl_i18n_get(t, "en", "Bonjour"), "Hello");
    /* escapes, and strings continued on the next lines (indented or not) */
    assert_string_equal(hl_i18n_get(t, "en", "Ligne 1\nLigne \"2\"\t\\fin"), "Line 1\nLine \"2\"\t\\end");
    assert_string_equal(hl_i18n_get(t, "en", "Texte sur plusieurs lignes"), "Text over several lines");
    /* CRLF line ends */
    assert_string_equal(hl_i18n_get(t, "en", "Danger"), "<b>Danger</b> & co");
    /* fuzzy, untranslated and obsolete entries are left out */
    assert_string_equal(hl_i18n_get(t, "en", "Flou"), "Flou");
    assert_string_equal(hl_i18n_get(t, "en", "Flou %d"), "Flou %d");
    assert_string_equal(hl_i18n_get(t, "en", "Pas traduit"), "Pas traduit");
    assert_string_equal(hl_i18n_get(t, "en", "Obsolète"), "Obsolète");
    assert_string_equal(hl_i18n_get(t, "pt_BR", "Bonjour"), "Olá");
    /* the header entry is not a translation of "" */
    assert_string_equal(hl_i18n_get(t, "en", ""), "");
    int n = 0;
    assert_int_equal(hl_i18n_each(t, "en", count_entry, &n), HL_OK);
    assert_int_equal(n, 8); /* Bonjour, 3 x Commande, escapes, multi-line, pomme, Danger */
    n = 0;
    assert_int_equal(hl_i18n_each(t, "en", stop_at_second, &n), 42);
    assert_int_equal(hl_i18n_each(t, "de", count_entry, &n), HL_ENOTFOUND);
    assert_int_equal(hl_i18n_each(NULL, "en", count_entry, &n), HL_ENOTFOUND);
    hl_i18n_free(t);
}

static void contexts(void **state)
{
    (void)state;
    hl_i18n *t = sample();
    assert_string_equal(hl_i18n_get(t, "en", "Commande"), "Order (no context)");
    assert_string_equal(hl_i18n_pget(t, "en", NULL, "Commande"), "Order (no context)");
    assert_string_equal(hl_i18n_pget(t, "en", "verbe", "Commande"), "Order (verb)");
    assert_string_equal(hl_i18n_pget(t, "en", "nom", "Commande"), "Order");
    assert_string_equal(hl_i18n_pget(t, "en", "autre", "Commande"), "Commande");
    assert_string_equal(hl_i18n_pget(t, "en", "verbe", "Bonjour"), "Bonjour");
    assert_string_equal(hl_i18n_pget(t, "en", "", "Commande"), "Commande");
    /* a context is not glued to the msgid: "ver" + "beCommande" is another key */
    assert_string_equal(hl_i18n_pget(t, "en", "ver", "beCommande"), "beCommande");
    assert_string_equal(hl_i18n_pget(t, "fr", "verbe", "Commande"), "Commande");
    hl_i18n_free(t);
}

static void plural_forms(void **state)
{
    (void)state;
    hl_i18n *t = sample();
    /* English (n != 1): 0 apples, 1 apple, 2 apples */
    assert_string_equal(hl_i18n_nget(t, "en", "%d pomme", "%d pommes", 0), "%d apples");
    assert_string_equal(hl_i18n_nget(t, "en", "%d pomme", "%d pommes", 1), "%d apple");
    assert_string_equal(hl_i18n_nget(t, "en", "%d pomme", "%d pommes", 2), "%d apples");
    assert_string_equal(hl_i18n_nget(t, "en", "%d pomme", "%d pommes", -1), "%d apple");
    assert_string_equal(hl_i18n_nget(t, "en", "%d pomme", "%d pommes", LONG_MIN), "%d apples");
    /* French (n > 1): 0 pomme, 1 pomme, 2 pommes */
    assert_string_equal(hl_i18n_nget(t, "fr", "%d pomme", "%d pommes", 0), "%d pomme (fr)");
    assert_string_equal(hl_i18n_nget(t, "fr", "%d pomme", "%d pommes", 1), "%d pomme (fr)");
    assert_string_equal(hl_i18n_nget(t, "fr", "%d pomme", "%d pommes", 2), "%d pommes (fr)");
    /* untranslated: the French source strings, by the French rule, in every language */
    const char *langs[] = {"fr", "en", "de", NULL};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(hl_i18n_nget(t, langs[i], "%d poire", "%d poires", 0), "%d poire");
        assert_string_equal(hl_i18n_nget(t, langs[i], "%d poire", "%d poires", 1), "%d poire");
        assert_string_equal(hl_i18n_nget(t, langs[i], "%d poire", "%d poires", 2), "%d poires");
        assert_string_equal(hl_i18n_nget(t, langs[i], "%d poire", "%d poires", -5), "%d poires");
        assert_string_equal(hl_i18n_nget(t, langs[i], "%d poire", NULL, 5), "%d poire");
    }
    assert_string_equal(hl_i18n_nget(t, "en", NULL, "x", 2), "");
    /* pt_BR.po has no header: the default rule for non-French languages is (n != 1) */
    assert_string_equal(hl_i18n_nget(NULL, "pt_BR", "%d poire", "%d poires", 1), "%d poire");
    hl_i18n_free(t);

    /* three forms (Russian) and six (Arabic): precedence, %, &&, ||, nested ?: */
    static const char ru[] =
        "msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=UTF-8\\n\"\n"
        "\"Plural-Forms: nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
        "(n%100<10 || n%100>=20) ? 1 : 2);\\n\"\n\n"
        "msgid \"un fichier\"\nmsgid_plural \"des fichiers\"\n"
        "msgstr[0] \"A\"\nmsgstr[1] \"B\"\nmsgstr[2] \"C\"\n";
    hl_err err = {0};
    assert_int_equal(load_text_n("ru.po", ru, sizeof ru - 1, &t, &err, NULL, 0), HL_OK);
    static const struct {
        long n;
        const char *want;
    } rus[] = {{0, "C"}, {1, "A"}, {2, "B"}, {4, "B"}, {5, "C"}, {11, "C"}, {12, "C"}, {14, "C"},
               {21, "A"}, {22, "B"}, {25, "C"}, {101, "A"}, {111, "C"}, {1000001, "A"}};
    for (size_t i = 0; i < sizeof rus / sizeof rus[0]; i++)
        assert_string_equal(hl_i18n_nget(t, "ru", "un fichier", "des fichiers", rus[i].n), rus[i].want);
    hl_i18n_free(t);

    static const char ar[] =
        "msgid \"\"\nmsgstr \"\"\n"
        "\"Plural-Forms: nplurals=6; plural=n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : \"\n"
        "\"n%100>=3 && n%100<=10 ? 3 : n%100>=11 ? 4 : 5;\\n\"\n\n"
        "msgid \"x\"\nmsgid_plural \"xs\"\n"
        "msgstr[0] \"0\"\nmsgstr[1] \"1\"\nmsgstr[2] \"2\"\nmsgstr[3] \"3\"\nmsgstr[4] \"4\"\nmsgstr[5] \"5\"\n";
    assert_int_equal(load_text_n("ar.po", ar, sizeof ar - 1, &t, &err, NULL, 0), HL_OK);
    static const struct {
        long n;
        const char *want;
    } ars[] = {{0, "0"}, {1, "1"}, {2, "2"}, {3, "3"}, {10, "3"}, {11, "4"}, {99, "4"}, {100, "5"}, {102, "5"},
               {103, "3"}};
    for (size_t i = 0; i < sizeof ars / sizeof ars[0]; i++)
        assert_string_equal(hl_i18n_nget(t, "ar", "x", "xs", ars[i].n), ars[i].want);
    hl_i18n_free(t);

    /* one form (Japanese), and a plural entry looked up with hl_i18n_get gives form 0 */
    static const char ja[] = "msgid \"\"\nmsgstr \"Plural-Forms: nplurals=1; plural=0;\\n\"\n\n"
                             "msgid \"%d chat\"\nmsgid_plural \"%d chats\"\nmsgstr[0] \"%d neko\"\n";
    assert_int_equal(load_text_n("ja.po", ja, sizeof ja - 1, &t, &err, NULL, 0), HL_OK);
    assert_string_equal(hl_i18n_nget(t, "ja", "%d chat", "%d chats", 7), "%d neko");
    assert_string_equal(hl_i18n_get(t, "ja", "%d chat"), "%d neko");
    hl_i18n_free(t);
}

/* ---------------------------------------------------------------- errors */

#define HEAD "msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=UTF-8\\n\"\n"
#define PLURAL(e) "msgid \"\"\nmsgstr \"\"\n\"Plural-Forms: " e "\\n\"\n"

static const struct bad {
    const char *name, *text;
    const char *want; /* after "DIR/NAME:" */
} bads[] = {
    {"en.po", "msgid \"ouvert\nmsgstr \"x\"\n", "1: unterminated string"},
    {"en.po", "msgid \"a\"\nmsgstr \"b\\\n", "2: unterminated string"},
    {"en.po", "msgid \"a\"\n\nmsgid \"b\"\nmsgstr \"c\"\n", "1: entry has no msgstr"},
    {"en.po", "msgid \"a\"\nmsgstr \"b\"\n\nmsgid \"c\"\n", "4: entry has no msgstr"},
    {"en.po", "msgid \"a\"\n# comment\nmsgstr \"b\"\n", "1: entry has no msgstr"},
    {"en.po", "msgctxt \"a\"\nmsgctxt \"b\"\nmsgid \"c\"\nmsgstr \"d\"\n", "2: msgctxt twice"},
    {"en.po", "msgstr \"b\"\n", "1: msgstr without msgid"},
    {"en.po", "msgid \"a\"\nmsgstr \"b\"\nmsgstr \"c\"\n", "3: msgstr without msgid"},
    {"en.po", "msgid \"a\"\nmsgstr[0] \"b\"\n", "2: msgstr[0] without msgid_plural"},
    {"en.po", "msgid \"a\"\nmsgid_plural \"as\"\nmsgstr \"b\"\n", "3: an entry with msgid_plural needs msgstr[0]"},
    {"en.po", "msgid \"a\"\nmsgid_plural \"as\"\nmsgstr[1] \"b\"\n", "3: msgstr[1] where msgstr[0] was expected"},
    {"en.po", "msgid \"a\"\nmsgid_plural \"as\"\nmsgstr[0] \"b\"\nmsgstr[0] \"c\"\n", "4: msgstr[0] where msgstr[1]"},
    {"en.po", "msgid \"a\"\nmsgid_plural \"as\"\nmsgstr[x] \"b\"\n", "3: bad index"},
    {"en.po", "msgid \"a\"\nmsgid_plural \"as\"\nmsgstr[99999999999] \"b\"\n", "3: bad index"},
    {"en.po", "msgid_plural \"as\"\n", "1: msgid_plural must follow msgid"},
    {"en.po", "\n\nmsgid \"a\\q\"\nmsgstr \"b\"\n", "3: unsupported escape '\\q'"},
    {"en.po", "msgid \"a\"\nmsgstr \"b\" x\n", "2: unexpected text after the string"},
    {"en.po", "msgid\nmsgstr \"b\"\n", "1: a string in quotes must follow"},
    {"en.po", "msgid \"a\"\nmsgstr b\n", "2: a string in quotes must follow"},
    {"en.po", "msgfoo \"a\"\n", "1: unknown keyword"},
    {"en.po", "\"a\"\n", "1: string outside an entry"},
    {"en.po", "msgid \"a\"\nmsgstr \"b\"\n# c\n\"d\"\n", "4: string outside an entry"},
    {"en.po", "MSGID \"a\"\n", "1: unexpected text"},
    {"en.po", "msgid \"a\"\nmsgstr \"b\"\n\nmsgid \"a\"\nmsgstr \"c\"\n", "4: duplicate entry for msgid \"a\" (first on line 1)"},
    {"en.po", "msgid \"a\"\nmsgstr \"\\xff\"\n", "2: unsupported escape"},
    {"en.po", "msgid \"a\"\nmsgstr \"\xff\"\n", "2: invalid UTF-8"},
    {"en.po", "msgid \"a\"\nmsgstr \"\xc3\xa9\xed\xa0\x80\"\n", "2: invalid UTF-8"},  /* a surrogate */
    {"en.po", "msgid \"a\"\nmsgstr \"\xe0\x80\xaf\"\n", "2: invalid UTF-8"},         /* overlong */
    {"en.po", "msgid \"\"\nmsgstr \"x\"\n\nmsgid \"\"\nmsgstr \"y\"\n", "4: second header entry"},
    {"en.po", "msgid \"\"\nmsgid_plural \"s\"\nmsgstr[0] \"\"\nmsgstr[1] \"\"\n", "1: the header entry"},
    {"en.po", "msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=ISO-8859-1\\n\"\n", "3: charset 'ISO-8859-1'"},
    {"en.po", "msgid \"\"\nmsgstr \"\"\n\"Content-Type: text/plain; charset=CHARSET\\n\"\n", "3: charset 'CHARSET'"},
    {"en.po", "msgid \"\"\nmsgstr \"\"\n\"Language: de\\n\"\n", "3: header says Language: de"},
    {"en.po", PLURAL("nplurals=2; plural=n+1;"), "3: bad plural expression 'n+1'"},
    {"en.po", PLURAL("nplurals=2; plural=(n > 1;"), "3: bad plural expression '(n > 1': missing ')'"},
    {"en.po", PLURAL("nplurals=2; plural=abs(n);"), "3: bad plural expression"},
    {"en.po", PLURAL("nplurals=2; plural=nn;"), "3: bad plural expression 'nn': unknown name"},
    {"en.po", PLURAL("nplurals=2; plural=n = 1;"), "3: bad plural expression"},
    {"en.po", PLURAL("nplurals=2; plural=!n;"), "3: bad plural expression"},
    {"en.po", PLURAL("nplurals=2; plural=n ? 1;"), "3: bad plural expression 'n ? 1': '?' without ':'"},
    {"en.po", PLURAL("nplurals=2; plural=n > 1 1;"), "3: bad plural expression 'n > 1 1': unexpected text"},
    {"en.po", PLURAL("nplurals=2; plural=;"), "3: bad plural expression '': expression ends too soon"},
    {"en.po", PLURAL("nplurals=2; plural=n > 9999999999;"), "3: bad plural expression 'n > 9999999999': number too large"},
    {"en.po", PLURAL("nplurals=2; plural=n%3;"), "3: plural expression gives form 2 for n=2 but nplurals=2"},
    {"en.po", PLURAL("nplurals=0; plural=0;"), "3: Plural-Forms: nplurals must be 1 to 6"},
    {"en.po", PLURAL("nplurals=7; plural=n;"), "3: Plural-Forms: nplurals must be 1 to 6"},
    {"en.po", PLURAL("nplurals=99999999999999; plural=n;"), "3: Plural-Forms: nplurals must be 1 to 6"},
    {"en.po", PLURAL("plural=n;"), "3: Plural-Forms must start with nplurals="},
    {"en.po", PLURAL("nplurals=2 plural=n;"), "3: Plural-Forms: ';' expected after nplurals"},
    {"en.po", PLURAL("nplurals=2; plural=n!=1; extra"), "3: Plural-Forms: unexpected text"},
    {"en.po", HEAD "\"Plural-Forms: nplurals=2; plural=(n != 1);\\n\"\n\nmsgid \"a\"\nmsgid_plural \"b\"\n"
              "msgstr[0] \"x\"\nmsgstr[1] \"y\"\nmsgstr[2] \"z\"\n", "6: 3 plural forms but the header says nplurals=2"},
    {"fr.po", "msgid \"a\"\nmsgid_plural \"b\"\nmsgstr[0] \"x\"\n", "1: 1 plural forms but the header says nplurals=2"},
};

static void parse_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        hl_i18n *t = (hl_i18n *)1;
        hl_err err = {0};
        char dir[128], want[600];
        int rc = load_text_n(bads[i].name, bads[i].text, strlen(bads[i].text), &t, &err, dir, sizeof dir);
        snprintf(want, sizeof want, "%s/%s:%s", dir, bads[i].name, bads[i].want);
        if (rc == HL_OK || strncmp(err.msg, want, strlen(want)))
            fail_msg("case %zu: rc %d, message '%s', want it to start with '%s'", i, rc, err.msg, want);
        assert_int_equal(err.code, rc);
        assert_null(t);
    }

    /* nesting and length limits of plural expressions */
    char text[4096];
    hl_err err = {0};
    hl_i18n *t = NULL;
    int k = snprintf(text, sizeof text, "msgid \"\"\nmsgstr \"Plural-Forms: nplurals=2; plural=");
    for (int i = 0; i < 40; i++)
        text[k++] = '(';
    text[k++] = 'n';
    for (int i = 0; i < 40; i++)
        text[k++] = ')';
    k += snprintf(text + k, sizeof text - (size_t)k, ";\\n\"\n");
    assert_int_not_equal(load_text_n("en.po", text, (size_t)k, &t, &err, NULL, 0), HL_OK);
    assert_non_null(strstr(err.msg, "en.po:2: bad plural expression"));
    assert_non_null(strstr(err.msg, "nested too deeply"));
    k = snprintf(text, sizeof text, "msgid \"\"\nmsgstr \"Plural-Forms: nplurals=2; plural=n==1");
    for (int i = 0; i < 100; i++)
        k += snprintf(text + k, sizeof text - (size_t)k, "||n==1");
    k += snprintf(text + k, sizeof text - (size_t)k, ";\\n\"\n");
    assert_int_not_equal(load_text_n("en.po", text, (size_t)k, &t, &err, NULL, 0), HL_OK);
    assert_non_null(strstr(err.msg, "expression too long"));
    /* x % 0 is 0, not a crash */
    static const char mod0[] = PLURAL("nplurals=2; plural=n%0;");
    assert_int_equal(load_text_n("en.po", mod0, sizeof mod0 - 1, &t, &err, NULL, 0), HL_OK);
    hl_i18n_free(t);

    /* a NUL byte in the file */
    static const char nul[] = "msgid \"a\"\nmsgstr \"b\0c\"\n";
    assert_int_not_equal(load_text_n("en.po", nul, sizeof nul - 1, &t, &err, NULL, 0), HL_OK);
    assert_non_null(strstr(err.msg, "en.po:2: NUL byte"));

    /* file names, folders, arguments */
    assert_int_equal(load_text_n("french.po", "", 0, &t, &err, NULL, 0), HL_EINVAL);
    assert_non_null(strstr(err.msg, "french.po: the file name must be a language code"));
    assert_int_equal(load_text_n("en_gb.po", "", 0, &t, &err, NULL, 0), HL_EINVAL);
    assert_int_equal(load_text_n("EN.po", "", 0, &t, &err, NULL, 0), HL_EINVAL);
    assert_int_equal(load_text_n("en_GB.po", "", 0, &t, &err, NULL, 0), HL_OK);
    hl_i18n_free(t);
    assert_int_equal(hl_i18n_load(&t, "/nonexistent/po", &err), HL_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/po"));
    assert_null(t);
    assert_int_equal(hl_i18n_load(NULL, "/tmp", &err), HL_EINVAL);
    assert_int_equal(hl_i18n_load(&t, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_i18n_load(&t, "", NULL), HL_EINVAL);
    char *dir = make_dir();
    char sub[600];
    snprintf(sub, sizeof sub, "%s/de.po", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(hl_i18n_load(&t, dir, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "de.po: not a regular file"));
    rmdir(sub);
    /* errors without an hl_err still give the code */
    write_file(dir, "en.po", "msgid \"a\n");
    assert_int_equal(hl_i18n_load(&t, dir, NULL), HL_EINVAL);
    /* an empty folder is fine: French only */
    unlink(sub);
    snprintf(sub, sizeof sub, "%s/en.po", dir);
    unlink(sub);
    assert_int_equal(hl_i18n_load(&t, dir, &err), HL_OK);
    const char *langs[4];
    assert_int_equal(hl_i18n_languages(t, langs, 4), 1);
    assert_string_equal(langs[0], "fr");
    hl_i18n_free(t);
    hl_i18n_free(NULL);
    remove_dir(dir);
}

static uint32_t rnd_state = 2463534242u;

static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 17;
    rnd_state ^= rnd_state << 5;
    return rnd_state;
}

/* Mutated catalogs and random plural expressions: each loads or is refused with a message
 * that names the file and a line, never crashes (run under ASan and valgrind). */
static void fuzz_catalogs(void **state)
{
    (void)state;
    static const char alphabet[] = "\"\\\n#,[]%01n msgidctxt_pluralfuzzy\xc3\xa9\xff";
    char *dir = make_dir();
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/en.po:", dir);
    size_t base = sizeof EN_PO - 1;
    char *buf = malloc(base + 64);
    assert_non_null(buf);
    int ok = 0, refused = 0;
    for (int i = 0; i < 1500; i++) {
        memcpy(buf, EN_PO, base);
        size_t len = base;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = rnd() % len;
            char c = alphabet[rnd() % (sizeof alphabet - 1)];
            switch (rnd() % 3) {
            case 0: buf[at] = c; break;
            case 1: memmove(buf + at + 1, buf + at, len - at); buf[at] = c; len++; break;
            default: memmove(buf + at, buf + at + 1, len - at - 1); len--; break;
            }
        }
        write_n(dir, "en.po", buf, len);
        hl_i18n *t = NULL;
        hl_err err = {0};
        if (hl_i18n_load(&t, dir, &err) == HL_OK) {
            ok++;
            (void)hl_i18n_get(t, "en", "Bonjour");
            (void)hl_i18n_nget(t, "en", "%d pomme", "%d pommes", (long)(rnd() % 30));
            hl_i18n_free(t);
        } else {
            refused++;
            if (strncmp(err.msg, prefix, strlen(prefix)))
                fail_msg("message without file and line: %s", err.msg);
        }
    }
    static const char ops[] = "n0123456789()?:%<>=!&| ";
    int pok = 0;
    for (int i = 0; i < 1500; i++) {
        char text[200];
        int k = snprintf(text, sizeof text, "msgid \"\"\nmsgstr \"Plural-Forms: nplurals=%u; plural=", 1 + rnd() % 6);
        int n = 1 + (int)(rnd() % 40);
        for (int j = 0; j < n; j++)
            text[k++] = ops[rnd() % (sizeof ops - 1)];
        k += snprintf(text + k, sizeof text - (size_t)k, ";\\n\"\n");
        write_n(dir, "en.po", text, (size_t)k);
        hl_i18n *t = NULL;
        hl_err err = {0};
        if (hl_i18n_load(&t, dir, &err) == HL_OK) {
            pok++;
            hl_i18n_free(t);
        } else if (strncmp(err.msg, prefix, strlen(prefix)) || !strstr(err.msg, ":2: ")) {
            fail_msg("message without file and line: %s", err.msg);
        }
    }
    print_message("# fuzz: %d catalogs loaded, %d refused; %d random plural rules accepted of 1500\n", ok, refused, pok);
    assert_true(ok > 0 && refused > 0 && pok > 0);
    free(buf);
    remove_dir(dir);
}

/* ---------------------------------------------------------------- lookups */

static void lookups(void **state)
{
    (void)state;
    hl_i18n *t = sample();
    static const char msgid[] = "Bonjour";
    /* French is the source: no entry, the msgid itself */
    assert_ptr_equal(hl_i18n_get(t, "fr", msgid), msgid);
    assert_ptr_equal(hl_i18n_get(t, "de", msgid), msgid);
    assert_ptr_equal(hl_i18n_get(t, NULL, msgid), msgid);
    assert_ptr_equal(hl_i18n_get(t, "", msgid), msgid);
    assert_ptr_equal(hl_i18n_get(NULL, "en", msgid), msgid);
    static const char unknown[] = "Inconnu";
    assert_ptr_equal(hl_i18n_get(t, "en", unknown), unknown);
    assert_string_equal(hl_i18n_get(t, "en", NULL), "");
    assert_string_equal(hl_i18n_pget(t, "en", "verbe", NULL), "");
    /* regional tags fall back to the language; case and separator do not matter */
    const char *tags[] = {"en", "en-GB", "en_GB", "EN", "En-us", "en-Latn-GB", "en-GB-oxendict"};
    for (size_t i = 0; i < sizeof tags / sizeof tags[0]; i++)
        assert_string_equal(hl_i18n_get(t, tags[i], msgid), "Hello");
    const char *nots[] = {"e", "eng-x", "en-", "en GB", "english", "e\xc3\xa9", "en;q=1", "-en"};
    for (size_t i = 0; i < sizeof nots / sizeof nots[0]; i++)
        assert_ptr_equal(hl_i18n_get(t, nots[i], msgid), msgid);
    char longtag[300];
    memset(longtag, 'a', sizeof longtag - 1);
    longtag[0] = 'e', longtag[1] = 'n', longtag[2] = '-';
    longtag[sizeof longtag - 1] = '\0';
    assert_ptr_equal(hl_i18n_get(t, longtag, msgid), msgid);
    /* a regional catalog serves its own tag, and the bare language only if nothing else does */
    assert_string_equal(hl_i18n_get(t, "pt-BR", msgid), "Olá");
    assert_string_equal(hl_i18n_get(t, "pt_BR", msgid), "Olá");
    assert_ptr_equal(hl_i18n_get(t, "pt", msgid), msgid);
    assert_ptr_equal(hl_i18n_get(t, "pt-PT", msgid), msgid);
    /* the template helper */
    hl_i18n_tpl en = {t, "en"};
    assert_string_equal(hl_i18n_tpl_translate(&en, msgid), "Hello");
    assert_ptr_equal(hl_i18n_tpl_translate(NULL, msgid), msgid);
    hl_i18n_free(t);
}

static void negotiation(void **state)
{
    (void)state;
    hl_i18n *t = sample();
    static const struct {
        const char *choice, *accept, *want;
    } cases[] = {
        /* the user's choice wins when supported */
        {"en", "fr", "en"},
        {"fr", "en", "fr"},
        {"en-US", NULL, "en"},
        {"EN", "fr", "en"},
        {"pt-BR", NULL, "pt_BR"},
        {"pt", NULL, "pt_BR"},
        {"de", "en", "en"},
        {"", "en", "en"},
        {"<script>", "en", "en"},
        {"en;q=1", "fr", "fr"},
        {"english", NULL, "fr"},
        /* Accept-Language */
        {NULL, "en-GB,en;q=0.9,fr;q=0.8", "en"},
        {NULL, "fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "fr"},
        {NULL, "fr;q=0.5, en;q=0.8", "en"},
        {NULL, "de, en;q=0.1", "en"},
        {NULL, "de,it", "fr"},
        {NULL, "de-DE", "fr"},
        {NULL, "*", "fr"},
        {NULL, "de, *;q=0.5", "fr"},
        {NULL, "  en  ;  q=0.9 , fr ; q=0.8 ", "en"},
        {NULL, "en;Q=0.9,fr;q=0.8", "en"},
        {NULL, "en;level=1;q=0.9, fr;q=0.5", "en"},
        {NULL, "pt-BR,pt;q=0.9", "pt_BR"},
        {NULL, "en;q=0.5, pt-BR;q=0.5", "en"},      /* equal q: the first listed */
        {NULL, "pt;q=0.5, pt-BR;q=0.9", "pt_BR"},
        /* q=0 excludes */
        {NULL, "en;q=0", "fr"},
        {NULL, "en;q=0.000", "fr"},
        {NULL, "fr;q=0, en;q=0.5", "en"},
        {NULL, "en;q=0, *", "fr"},
        {NULL, "en-GB, en;q=0", "fr"},
        {NULL, "*;q=0", "fr"},
        /* malformed: skipped, and then French */
        {NULL, "", "fr"},
        {NULL, ",,,;;;", "fr"},
        {NULL, "en;q=2", "fr"},
        {NULL, "en;q=1.5", "fr"},
        {NULL, "en;q=0.12345", "fr"},
        {NULL, "en;q=abc", "fr"},
        {NULL, "en;q=", "fr"},
        {NULL, "en;q=-1", "fr"},
        {NULL, "e n", "fr"},
        {NULL, "\x01\x02\xff\xfe", "fr"},
        {NULL, "en-", "fr"},
        {NULL, "en;q=abc, de, en-GB;q=0.3", "en"},
        {NULL, NULL, "fr"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = hl_i18n_negotiate(t, cases[i].choice, cases[i].accept);
        if (strcmp(got, cases[i].want))
            fail_msg("case %zu (%s | %s): got %s, want %s", i, cases[i].choice ? cases[i].choice : "NULL",
                     cases[i].accept ? cases[i].accept : "NULL", got, cases[i].want);
    }
    /* without catalogs French is all there is */
    assert_string_equal(hl_i18n_negotiate(NULL, "en", "en"), "fr");
    /* a huge header is read to its end in one pass; items past the 64th are not considered */
    size_t n = 200000;
    char *big = malloc(n * 3 + 8);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++)
        memcpy(big + 3 * i, "de,", 3);
    strcpy(big + 3 * n, "en");
    assert_string_equal(hl_i18n_negotiate(t, NULL, big), "fr");
    for (size_t i = 0; i < n; i++)
        memcpy(big + 3 * i, ";;,", 3);
    assert_string_equal(hl_i18n_negotiate(t, NULL, big), "en");
    free(big);
    /* languages: French first */
    const char *langs[8];
    assert_int_equal(hl_i18n_languages(t, langs, 8), 3);
    assert_string_equal(langs[0], "fr");
    assert_string_equal(langs[1], "en");
    assert_string_equal(langs[2], "pt_BR");
    assert_int_equal(hl_i18n_languages(t, langs, 1), 3);
    assert_int_equal(hl_i18n_languages(t, NULL, 0), 3);
    assert_int_equal(hl_i18n_languages(NULL, langs, 8), 1);
    assert_string_equal(langs[0], "fr");
    hl_i18n_free(t);
}

/* ---------------------------------------------------------------- formatting */

static void expect_price(const char *lang, long long cents, const char *cur, const char *want)
{
    char buf[128];
    int rc = hl_i18n_format_price(lang, cents, cur, buf, sizeof buf);
    if (rc || strcmp(buf, want))
        fail_msg("price %s %lld %s: rc %d, '%s', want '%s'", lang ? lang : "NULL", cents, cur, rc, buf, want);
    /* the exact size fits, one byte less does not */
    size_t need = strlen(want) + 1;
    char *b = malloc(need);
    assert_non_null(b);
    assert_int_equal(hl_i18n_format_price(lang, cents, cur, b, need), HL_OK);
    assert_string_equal(b, want);
    assert_int_equal(hl_i18n_format_price(lang, cents, cur, b, need - 1), HL_ETOOBIG);
    assert_string_equal(b, "");
    free(b);
}

static void format_price(void **state)
{
    (void)state;
    expect_price("fr", 123450, "EUR", "1" NNBSP "234,50" NBSP EURO);
    assert_string_equal("1" NNBSP "234,50" NBSP EURO, "1\xe2\x80\xaf" "234,50\xc2\xa0\xe2\x82\xac");
    expect_price("en", 123450, "EUR", EURO "1,234.50");
    expect_price("fr", 0, "EUR", "0,00" NBSP EURO);
    expect_price("en", 0, "EUR", EURO "0.00");
    expect_price("fr", 5, "EUR", "0,05" NBSP EURO);
    expect_price("fr", 99999, "EUR", "999,99" NBSP EURO);
    expect_price("fr", 100000, "EUR", "1" NNBSP "000,00" NBSP EURO);
    expect_price("fr", -500, "EUR", "-5,00" NBSP EURO);
    expect_price("en", -500, "EUR", "-" EURO "5.00");
    expect_price("fr", 123456789012LL, "EUR", "1" NNBSP "234" NNBSP "567" NNBSP "890,12" NBSP EURO);
    expect_price("en", 123456789012LL, "EUR", EURO "1,234,567,890.12");
    expect_price("fr", LLONG_MIN, "EUR",
                 "-92" NNBSP "233" NNBSP "720" NNBSP "368" NNBSP "547" NNBSP "758,08" NBSP EURO);
    expect_price("en", LLONG_MAX, "EUR", EURO "92,233,720,368,547,758.07");
    expect_price("en", 1999, "USD", "$19.99");
    expect_price("fr", 1999, "USD", "19,99" NBSP "$US");
    expect_price("en", 1999, "GBP", "\xc2\xa3" "19.99");
    expect_price("en", 123450, "CHF", "CHF" NBSP "1,234.50");
    expect_price("fr", 123450, "CHF", "1" NNBSP "234,50" NBSP "CHF");
    /* English for every English tag, French for everything else */
    expect_price("en-GB", 100, "EUR", EURO "1.00");
    expect_price("en_US", 100, "EUR", EURO "1.00");
    expect_price("EN", 100, "EUR", EURO "1.00");
    expect_price(NULL, 100, "EUR", "1,00" NBSP EURO);
    expect_price("de", 100, "EUR", "1,00" NBSP EURO);
    expect_price("eng", 100, "EUR", "1,00" NBSP EURO);
    expect_price("e", 100, "EUR", "1,00" NBSP EURO);
    char buf[64] = "untouched";
    const char *badcur[] = {NULL, "", "eur", "EURO", "EU", "E1R", "\xe2\x82\xac"};
    for (size_t i = 0; i < sizeof badcur / sizeof badcur[0]; i++) {
        assert_int_equal(hl_i18n_format_price("fr", 1, badcur[i], buf, sizeof buf), HL_EINVAL);
        assert_string_equal(buf, "");
    }
    assert_int_equal(hl_i18n_format_price("fr", 1, "EUR", NULL, 10), HL_EINVAL);
    assert_int_equal(hl_i18n_format_price("fr", 1, "EUR", buf, 0), HL_EINVAL);
}

static void expect_number(const char *lang, double v, int dec, const char *want)
{
    char buf[512];
    int rc = hl_i18n_format_number(lang, v, dec, buf, sizeof buf);
    if (rc || strcmp(buf, want))
        fail_msg("number %s %.17g/%d: rc %d, '%s', want '%s'", lang ? lang : "NULL", v, dec, rc, buf, want);
}

static void format_number(void **state)
{
    (void)state;
    expect_number("fr", 1234.5, 1, "1" NNBSP "234,5");
    expect_number("en", 1234.5, 1, "1,234.5");
    expect_number("fr", 1234.5, 0, "1" NNBSP "234"); /* half to even, as printf rounds */
    expect_number("fr", 1235.5, 0, "1" NNBSP "236");
    expect_number("fr", 0, 2, "0,00");
    expect_number("fr", 12, 0, "12");
    expect_number("fr", 123, 3, "123,000");
    expect_number("en", 1234567.891, 2, "1,234,567.89");
    expect_number("fr", 1234567.891, 2, "1" NNBSP "234" NNBSP "567,89");
    expect_number("fr", 999.999, 2, "1" NNBSP "000,00");
    expect_number("fr", -1234.5, 1, "-1" NNBSP "234,5");
    expect_number("en", -0.25, 2, "-0.25");
    expect_number("fr", -0.001, 2, "0,00");
    expect_number("fr", -0.0, 0, "0");
    expect_number("en", 1e20, 0, "100,000,000,000,000,000,000");
    expect_number("en", 0.123456789, 9, "0.123456789");
    char buf[512];
    assert_int_equal(hl_i18n_format_number("en", DBL_MAX, 9, buf, sizeof buf), HL_OK);
    assert_int_equal(strlen(buf), 309 + 102 + 1 + 9); /* digits, commas, point, decimals */
    assert_int_equal(hl_i18n_format_number("en", -DBL_MAX, 9, buf, 100), HL_ETOOBIG);
    assert_string_equal(buf, "");
    assert_int_equal(hl_i18n_format_number("fr", NAN, 2, buf, sizeof buf), HL_EINVAL);
    assert_int_equal(hl_i18n_format_number("fr", INFINITY, 2, buf, sizeof buf), HL_EINVAL);
    assert_int_equal(hl_i18n_format_number("fr", -INFINITY, 2, buf, sizeof buf), HL_EINVAL);
    assert_int_equal(hl_i18n_format_number("fr", 1, -1, buf, sizeof buf), HL_EINVAL);
    assert_int_equal(hl_i18n_format_number("fr", 1, 10, buf, sizeof buf), HL_EINVAL);
    assert_int_equal(hl_i18n_format_number("fr", 1, 0, NULL, 5), HL_EINVAL);
    assert_int_equal(hl_i18n_format_number("fr", 1234, 0, buf, 5), HL_ETOOBIG); /* "1"+3 bytes+"234" */
    assert_int_equal(hl_i18n_format_number("fr", 1234, 0, buf, 8), HL_OK);
}

static void expect_date(const char *lang, int y, int m, int d, const char *want)
{
    char buf[80];
    int rc = hl_i18n_format_date(lang, y, m, d, buf, sizeof buf);
    if (rc || strcmp(buf, want))
        fail_msg("date %s %d-%d-%d: rc %d, '%s', want '%s'", lang ? lang : "NULL", y, m, d, rc, buf, want);
}

static void format_date(void **state)
{
    (void)state;
    expect_date("fr", 2026, 11, 25, "mercredi 25 novembre 2026");
    expect_date("en", 2026, 11, 25, "Wednesday, 25 November 2026");
    expect_date("fr", 2026, 4, 1, "mercredi 1er avril 2026");
    expect_date("en", 2026, 4, 1, "Wednesday, 1 April 2026");
    expect_date("fr", 2026, 8, 15, "samedi 15 ao\xc3\xbbt 2026");
    expect_date("fr", 2026, 2, 1, "dimanche 1er f\xc3\xa9vrier 2026");
    expect_date("fr", 2026, 12, 7, "lundi 7 d\xc3\xa9" "cembre 2026");
    expect_date("fr", 2024, 2, 29, "jeudi 29 f\xc3\xa9vrier 2024");
    expect_date("fr", 2000, 2, 29, "mardi 29 f\xc3\xa9vrier 2000");
    expect_date("fr", 1970, 1, 1, "jeudi 1er janvier 1970");
    expect_date("en", 1, 1, 1, "Monday, 1 January 1");
    expect_date("fr", 9999, 12, 31, "vendredi 31 d\xc3\xa9" "cembre 9999");
    expect_date("en-GB", 1789, 7, 14, "Tuesday, 14 July 1789");
    expect_date(NULL, 1789, 7, 14, "mardi 14 juillet 1789");
    char buf[80];
    static const int bad[][3] = {{2023, 2, 29}, {1900, 2, 29}, {2026, 4, 31}, {2026, 0, 1}, {2026, 13, 1},
                                 {2026, 1, 0}, {2026, 1, 32}, {0, 1, 1}, {10000, 1, 1}, {-5, 1, 1},
                                 {INT_MIN, INT_MIN, INT_MIN}, {INT_MAX, 12, 31}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(buf, "x");
        assert_int_equal(hl_i18n_format_date("fr", bad[i][0], bad[i][1], bad[i][2], buf, sizeof buf), HL_EINVAL);
        assert_string_equal(buf, "");
    }
    assert_int_equal(hl_i18n_format_date("fr", 2026, 11, 25, buf, 10), HL_ETOOBIG);
    assert_int_equal(hl_i18n_format_date("fr", 2026, 11, 25, buf, 26), HL_OK);
    assert_int_equal(hl_i18n_format_date("fr", 2026, 11, 25, NULL, 26), HL_EINVAL);
    /* every weekday from 1901 to 2099 agrees with the C library's calendar */
    static const char *const days[7] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
    for (int y = 1901; y < 2100; y++) {
        for (int m = 1; m <= 12; m++) {
            struct tm tm = {0};
            tm.tm_year = y - 1900;
            tm.tm_mon = m - 1;
            tm.tm_mday = 13;
            tm.tm_hour = 12;
            time_t tt = timegm(&tm);
            struct tm out;
            assert_non_null(gmtime_r(&tt, &out));
            assert_int_equal(hl_i18n_format_date("en", y, m, 13, buf, sizeof buf), HL_OK);
            assert_int_equal(strncmp(buf, days[out.tm_wday], strlen(days[out.tm_wday])), 0);
        }
    }
}

/* ---------------------------------------------------------------- templates */

static char *render(const char *tpl, const hl_tpl_opts *o, const char *data, hl_err *err)
{
    hl_tpl *t = hl_tpl_compile("t.mustache", tpl, strlen(tpl), o, err);
    if (!t)
        return NULL;
    json_t *ctx = data ? json_loads(data, 0, NULL) : NULL;
    char *out = NULL;
    size_t len = 0;
    int rc = hl_tpl_render(t, ctx, &out, &len, err);
    json_decref(ctx);
    hl_tpl_free(t);
    return rc ? NULL : out;
}

static void expect_tpl(const char *tpl, const hl_tpl_opts *o, const char *data, const char *want)
{
    hl_err err = {0};
    char *got = render(tpl, o, data, &err);
    if (!got)
        fail_msg("template %s: %s", tpl, err.msg);
    if (strcmp(got, want))
        fail_msg("template %s: got '%s', want '%s'", tpl, got, want);
    free(got);
}

typedef struct counter {
    hl_i18n_tpl tr;
    int calls;
    const char *last;
} counter;

static const char *counting(void *ud, const char *msgid)
{
    counter *c = ud;
    c->calls++;
    return hl_i18n_tpl_translate(&c->tr, msgid);
}

static const char *refuse(void *ud, const char *msgid)
{
    (void)ud, (void)msgid;
    return NULL;
}

static const char *huge(void *ud, const char *msgid)
{
    (void)msgid;
    return ud;
}

static char *partials(void *ud, const char *name, size_t *len)
{
    (void)ud;
    if (strcmp(name, "p"))
        return NULL;
    *len = strlen("[{{_ Bonjour}}]");
    return strdup("[{{_ Bonjour}}]");
}

static void template_tag(void **state)
{
    (void)state;
    hl_i18n *t = sample();
    hl_i18n_tpl en = {t, "en"}, fr = {t, "fr"};
    hl_tpl_opts o = {.translate = hl_i18n_tpl_translate, .translate_ud = &en};
    hl_tpl_opts ofr = {.translate = hl_i18n_tpl_translate, .translate_ud = &fr};
    hl_tpl_opts none = {.loader = NULL};

    expect_tpl("<p>{{_ Bonjour}}</p>", &o, NULL, "<p>Hello</p>");
    expect_tpl("<p>{{_ Bonjour}}</p>", &ofr, NULL, "<p>Bonjour</p>");
    expect_tpl("<p>{{_ Bonjour}}</p>", &none, NULL, "<p>Bonjour</p>");
    expect_tpl("<p>{{_ Bonjour}}</p>", NULL, NULL, "<p>Bonjour</p>");
    /* whitespace inside collapses, around is dropped */
    expect_tpl("{{_   Texte sur\n   plusieurs\tlignes  }}", &o, NULL, "Text over several lines");
    expect_tpl("{{ _ Bonjour }}", &o, NULL, "Hello");
    /* HTML-escaped: the translation and the source text alike */
    expect_tpl("{{_ Danger}}", &o, NULL, "&lt;b&gt;Danger&lt;/b&gt; &amp; co");
    expect_tpl("{{_ a < b & \"c\" 'd'}}", &none, NULL, "a &lt; b &amp; &quot;c&quot; &#39;d&#39;");
    expect_tpl("{{_ Ligne <1>}}", &o, NULL, "Ligne &lt;1&gt;");
    /* literal text: merged with its neighbours, inside sections, partials and new delimiters */
    expect_tpl("a{{_ Bonjour}}b", &o, NULL, "aHellob");
    expect_tpl("{{#xs}}{{_ Bonjour}}{{.}} {{/xs}}", &o, "{\"xs\": [1, 2, 3]}", "Hello1 Hello2 Hello3 ");
    expect_tpl("{{^no}}{{_ Bonjour}}{{/no}}", &o, "{}", "Hello");
    expect_tpl("{{=<% %>=}}<%_ Bonjour%> {{_ Bonjour}}", &o, NULL, "Hello {{_ Bonjour}}");
    hl_tpl_opts withp = {.loader = partials, .translate = hl_i18n_tpl_translate, .translate_ud = &en};
    expect_tpl("{{>p}}", &withp, NULL, "[Hello]");
    expect_tpl("  {{>p}}\n", &withp, NULL, "  [Hello]"); /* standalone: indented, newline dropped */
    /* not translation tags: plain names, and the other tag kinds keep their rules */
    expect_tpl("{{_x}}|{{_.y}}|{{ _ }}", &o, "{\"_x\": \"<v>\", \"_\": {\"y\": 2}}", "&lt;v&gt;|2|");
    expect_tpl("{{_}}", &o, "{\"_\": \"u\"}", "u");
    hl_err err = {0};
    assert_null(render("{{{_ Bonjour}}}", &o, NULL, &err));
    assert_non_null(strstr(err.msg, "t.mustache:1: bad tag name"));
    assert_null(render("{{& _ Bonjour}}", &o, NULL, &err));
    assert_null(render("{{#_ Bonjour}}{{/_ Bonjour}}", &o, NULL, &err));
    assert_null(render("x\n{{_ Bonjour", &o, NULL, &err));
    assert_non_null(strstr(err.msg, "t.mustache:2: unclosed tag"));
    /* a translator returning NULL leaves the source text */
    hl_tpl_opts ref = {.translate = refuse};
    expect_tpl("{{_ Bonjour}}", &ref, NULL, "Bonjour");
    /* translated once, at compile time, whatever the number of renders */
    counter c = {{t, "en"}, 0, NULL};
    hl_tpl_opts oc = {.translate = counting, .translate_ud = &c};
    const char *src = "{{#xs}}{{_ Bonjour}}{{/xs}}";
    hl_tpl *tp = hl_tpl_compile("c", src, strlen(src), &oc, &err);
    assert_non_null(tp);
    assert_int_equal(c.calls, 1);
    json_t *ctx = json_loads("{\"xs\": [1, 2, 3, 4]}", 0, NULL);
    for (int i = 0; i < 3; i++) {
        char *out = NULL;
        size_t len = 0;
        assert_int_equal(hl_tpl_render(tp, ctx, &out, &len, &err), HL_OK);
        assert_string_equal(out, "HelloHelloHelloHello");
        free(out);
    }
    assert_int_equal(c.calls, 1);
    json_decref(ctx);
    hl_tpl_free(tp);
    /* a translation over the limit is a compile error, not a huge template */
    size_t big = (1u << 20) + 10;
    char *h = malloc(big + 1);
    assert_non_null(h);
    memset(h, 'x', big);
    h[big] = '\0';
    hl_tpl_opts oh = {.translate = huge, .translate_ud = h};
    assert_null(render("\n\n{{_ Bonjour}}", &oh, NULL, &err));
    assert_non_null(strstr(err.msg, "t.mustache:3: translation of 'Bonjour' longer than"));
    assert_int_equal(err.code, HL_ETOOBIG);
    h[1u << 19] = '\0';
    expect_tpl("{{_ Bonjour}}", &oh, NULL, h);
    free(h);
    hl_i18n_free(t);
}

/* ---------------------------------------------------------------- the real catalogs */

static void real_catalogs(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/po", srcdir());
    hl_i18n *t = NULL;
    hl_err err = {0};
    if (hl_i18n_load(&t, dir, &err) != HL_OK)
        fail_msg("%s", err.msg);
    const char *langs[8];
    size_t n = hl_i18n_languages(t, langs, 8);
    assert_true(n >= 2);
    assert_string_equal(langs[0], "fr");
    assert_string_equal(hl_i18n_get(t, "en", "Se connecter"), "Log in");
    assert_string_equal(hl_i18n_get(t, "en", "Se déconnecter"), "Log out");
    assert_string_equal(hl_i18n_get(t, "en", "Créer un compte"), "Create an account");
    assert_string_equal(hl_i18n_get(t, "en", "Mon compte"), "My account");
    assert_string_equal(hl_i18n_get(t, "en", "Cette page n'existe pas."), "This page does not exist.");
    assert_string_equal(hl_i18n_get(t, "en-GB", "Mot de passe oublié ?"), "Forgot your password?");
    assert_string_equal(hl_i18n_get(t, "en", "Le champ « %s » est obligatoire."), "The field “%s” is required.");
    assert_string_equal(hl_i18n_get(t, "fr", "Se connecter"), "Se connecter");
    assert_string_equal(hl_i18n_negotiate(t, NULL, "en-GB,en;q=0.9,fr;q=0.8"), "en");
    /* French plural rule from fr.po, English from en.po */
    assert_string_equal(hl_i18n_nget(t, "fr", "%d pomme", "%d pommes", 0), "%d pomme");
    int fr_entries = 0;
    assert_int_equal(hl_i18n_each(t, "fr", stop_at_second, &fr_entries), HL_OK);
    assert_int_equal(fr_entries, 0);
    /* the template tag over the real catalog */
    hl_i18n_tpl en = {t, "en"};
    hl_tpl_opts o = {.translate = hl_i18n_tpl_translate, .translate_ud = &en};
    expect_tpl("<a href=\"/login\">{{_ Se connecter}}</a>", &o, NULL, "<a href=\"/login\">Log in</a>");
    hl_i18n_free(t);
}

/* String literals of a C file, adjacent ones joined ("a" "b" is "ab"), escapes decoded. */
typedef struct lits {
    char **items;
    size_t count, cap;
} lits;

static void lits_add(lits *l, char *s)
{
    if (l->count == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->items = realloc(l->items, l->cap * sizeof *l->items);
        assert_non_null(l->items);
    }
    l->items[l->count++] = s;
}

static size_t skip_gap(const char *s, size_t i, size_t n)
{
    for (;;) {
        if (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        else if (i + 1 < n && s[i] == '\\' && s[i + 1] == '\n')
            i += 2;
        else if (i + 1 < n && s[i] == '/' && s[i + 1] == '*') {
            const char *e = strstr(s + i + 2, "*/");
            i = e ? (size_t)(e - s) + 2 : n;
        } else if (i + 1 < n && s[i] == '/' && s[i + 1] == '/') {
            while (i < n && s[i] != '\n')
                i++;
        } else
            return i;
    }
}

static int is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/* Does s[0..j) end with the name fn, not the tail of a longer name? */
static int ends_with_name(const char *s, size_t j, const char *fn)
{
    size_t n = strlen(fn);
    return j >= n && !memcmp(s + j - n, fn, n) && (j == n || !is_ident(s[j - n - 1]));
}

/* Is the literal at s[i] a msgid: of a T(req, "...") call (core/request.h), of a plugin's
 * api->tr(r, "...") call (the request may be a member: tr(imp->req, "...")), or marked
 * N_("...") for a lookup elsewhere (plugins/market/csvimport.h)? */
static int is_t_arg(const char *s, size_t i)
{
    size_t j = i;
    while (j && strchr(" \t\r\n", s[j - 1]))
        j--;
    if (j && s[j - 1] == '(') {
        j--;
        while (j && strchr(" \t\r\n", s[j - 1]))
            j--;
        return ends_with_name(s, j, "N_");
    }
    if (!j || s[--j] != ',')
        return 0;
    while (j && strchr(" \t\r\n", s[j - 1]))
        j--;
    size_t end = j;
    int member = 0;
    while (j) {
        if (is_ident(s[j - 1]))
            j--;
        else if (s[j - 1] == '.' || (j >= 2 && s[j - 1] == '>' && s[j - 2] == '-'))
            j -= s[j - 1] == '.' ? 1 : 2, member = 1;
        else
            break;
    }
    if (j == end || !is_ident(s[j]))
        return 0;
    while (j && strchr(" \t\r\n", s[j - 1]))
        j--;
    if (!j || s[j - 1] != '(')
        return 0;
    j--;
    while (j && strchr(" \t\r\n", s[j - 1]))
        j--;
    if (ends_with_name(s, j, "tr"))
        return 1;
    return !member && ends_with_name(s, j, "T");
}

/* Every literal of s into out (adjacent ones joined), and the msgids of T() calls into tout. */
static void c_literals(const char *s, size_t n, lits *out, lits *tout)
{
    size_t i = 0;
    while (i < n) {
        size_t g = skip_gap(s, i, n);
        if (g != i) {
            i = g;
            continue;
        }
        if (s[i] == '\'') {
            for (i++; i < n && s[i] != '\''; i++)
                if (s[i] == '\\')
                    i++;
            i++;
            continue;
        }
        if (s[i] != '"') {
            i++;
            continue;
        }
        int t_arg = tout && is_t_arg(s, i);
        char *buf = malloc(n + 1), *w = buf;
        assert_non_null(buf);
        while (i < n && s[i] == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] != '\\') {
                    *w++ = s[i];
                    continue;
                }
                char e = s[++i];
                *w++ = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            }
            i = skip_gap(s, i + 1, n);
        }
        *w = '\0';
        lits_add(out, buf);
        if (t_arg) {
            char *copy = strdup(buf);
            assert_non_null(copy);
            lits_add(tout, copy);
        }
    }
}

static void lits_free(lits *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = l->cap = 0;
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The msgids of a template's {{_ text}} tags as core/mustache.c reads them: runs of blanks
 * become one space, blanks around are dropped. Comments are skipped; an unclosed tag ends the
 * scan (the template compiler refuses it anyway). */
static void tpl_msgids(const char *s, lits *out)
{
    for (const char *p = strstr(s, "{{"); p;) {
        const char *q = p + 2;
        while (is_blank(*q))
            q++;
        const char *e = strstr(q, "}}");
        if (!e)
            return;
        if (q[0] == '_' && is_blank(q[1])) {
            char *m = malloc((size_t)(e - q) + 1), *w = m;
            assert_non_null(m);
            for (const char *c = q + 1; c < e; c++) {
                if (!is_blank(*c))
                    *w++ = *c;
                else if (w > m && w[-1] != ' ')
                    *w++ = ' ';
            }
            while (w > m && w[-1] == ' ')
                w--;
            *w = '\0';
            if (*m)
                lits_add(out, m);
            else
                free(m);
        }
        p = strstr(e + 2, "{{");
    }
}

/* tpl_msgids over every *.mustache under dir, at most depth folders down. */
static void theme_msgids(const char *dir, int depth, lits *out, int *files)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        size_t nl = strlen(de->d_name);
        if (S_ISDIR(st.st_mode) && depth > 0) {
            theme_msgids(path, depth - 1, out, files);
        } else if (S_ISREG(st.st_mode) && nl > 9 && !strcmp(de->d_name + nl - 9, ".mustache")) {
            size_t len = 0;
            char *text = read_all(path, &len);
            if (!text)
                fail_msg("cannot read %s", path);
            tpl_msgids(text, out);
            free(text);
            (*files)++;
        }
    }
    if (d)
        closedir(d);
}

static int in_list(const lits *l, const char *s)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->items[i], s))
            return 1;
    return 0;
}

/* msgid occurs in a literal as a whole piece of text: at its start or after '>' or '"' (HTML
 * markup or an attribute), and at its end or before '<' or '"'. */
static int in_literals(const lits *l, const char *msgid)
{
    size_t ml = strlen(msgid);
    for (size_t i = 0; i < l->count; i++) {
        const char *s = l->items[i];
        for (const char *p = strstr(s, msgid); p; p = strstr(p + 1, msgid)) {
            char before = p == s ? '\0' : p[-1], after = p[ml];
            if ((!before || before == '>' || before == '"') && (!after || after == '<' || after == '"'))
                return 1;
        }
    }
    return 0;
}

/* The printf directives of s in order ("%s%d"), "%%" left out. */
static void directives(const char *s, char *out, size_t len)
{
    size_t k = 0;
    for (; *s; s++) {
        if (*s != '%')
            continue;
        if (s[1] == '%') {
            s++;
            continue;
        }
        const char *e = s + 1;
        while (*e && strchr("-+ #0123456789.*lhzjt", *e))
            e++;
        if (*e)
            e++;
        size_t dl = (size_t)(e - s);
        if (k + dl + 1 < len) {
            memcpy(out + k, s, dl);
            k += dl;
        }
        s = e - 1;
    }
    out[k] = '\0';
}

typedef struct drift {
    lits lits;     /* every literal of the C sources */
    lits tpl;      /* the msgids of the templates' {{_ }} tags */
    int found, missing;
} drift;

static int check_msgid(void *ud, const char *ctxt, const char *msgid, const char *plural, const char *msgstr)
{
    (void)ctxt;
    drift *d = ud;
    if (in_literals(&d->lits, msgid) || in_list(&d->tpl, msgid))
        d->found++;
    else {
        d->missing++;
        print_error("po/en.po: msgid not found in the C sources nor the templates: \"%s\"\n", msgid);
    }
    if (plural && !in_literals(&d->lits, plural)) {
        d->missing++;
        print_error("po/en.po: msgid_plural not found in the C sources: \"%s\"\n", plural);
    }
    char a[128], b[128];
    directives(msgid, a, sizeof a);
    directives(msgstr, b, sizeof b);
    if (strcmp(a, b)) {
        d->missing++;
        print_error("po/en.po: \"%s\": printf directives %s in the msgid, %s in the translation\n", msgid, a, b);
    }
    return 0;
}

/* Every msgid of l has an English translation; returns how many do not. */
static int untranslated(const hl_i18n *t, const lits *l, const char *where)
{
    int n = 0;
    for (size_t i = 0; i < l->count; i++) {
        if (hl_i18n_get(t, "en", l->items[i]) == l->items[i]) {
            n++;
            print_error("%s: no English translation in po/en.po for \"%s\"\n", where, l->items[i]);
        }
    }
    return n;
}

static void msgid_scanners(void **state)
{
    (void)state;
    lits l = {NULL, 0, 0};
    tpl_msgids("{{! a comment {{_ not a tag}} }}<p>{{_  Texte sur\n  deux\tlignes }}</p>{{ _ Bonjour}}"
               "{{_x}}{{_}}{{{_ triple}}}{{& _ amp}}{{#_ section}}{{name}}{{_ Fin", &l);
    /* a comment ends at its first }}, as the compiler reads it: the tag-like text inside is not
     * a tag; neither are {{_x}}, {{_}}, triple, & or section tags */
    assert_int_equal(l.count, 2);
    assert_string_equal(l.items[0], "Texte sur deux lignes");
    assert_string_equal(l.items[1], "Bonjour");
    lits_free(&l);
    tpl_msgids("", &l);
    tpl_msgids("{{", &l);
    tpl_msgids("}}{{_ }}{{_\n\n}}", &l);
    assert_int_equal(l.count, 0);

    lits all = {NULL, 0, 0}, calls = {NULL, 0, 0};
    static const char src[] = "x = T(req, \"Un\" \"e\"); y = T( r ,\n \"Deux\"); z = AT(req, \"non\");\n"
                              "w = T(req, v ? \"non\" : \"non\"); f(\"non\"); T(req,\"Trois\");\n"
                              "q = hl_T(req, \"non\"); T(\"non\"); T(req->x, \"non\"); T(req, 'c');\n"
                              "a = mk_api->tr(r, \"Quatre\"); b = tr(imp->req,\n \"Cinq\" \" bis\"); {\"k\", N_( \"Six\")};\n"
                              "c = xtr(r, \"non\"); d = tr(r, v ? \"non\" : \"non\"); e = LN_(\"non\"); N_ x(\"non\");\n"
                              "g = mk_api->tr(r, s); h = tr(->r, \"non\"); i = mk_api->tr(r, \"Sept\"); \"";
    c_literals(src, sizeof src - 1, &all, &calls);
    assert_int_equal(calls.count, 7);
    assert_string_equal(calls.items[0], "Une");
    assert_string_equal(calls.items[1], "Deux");
    assert_string_equal(calls.items[2], "Trois");
    assert_string_equal(calls.items[3], "Quatre");
    assert_string_equal(calls.items[4], "Cinq bis");
    assert_string_equal(calls.items[5], "Six");
    assert_string_equal(calls.items[6], "Sept");
    assert_true(all.count >= 20);
    lits_free(&all);
    lits_free(&calls);
}

/* c_literals over one source file; its msgids go to calls. */
static void scan_c_file(const char *path, lits *all, lits *calls)
{
    size_t len = 0;
    char *src = read_all(path, &len);
    if (!src)
        fail_msg("cannot read %s", path);
    c_literals(src, len, all, calls);
    free(src);
}

/* Every *.c of a folder; returns how many. */
static int scan_c_dir(const char *dir, lits *all, lits *calls)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        fail_msg("cannot open %s", dir);
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (de->d_name[0] == '.' || nl < 3 || strcmp(de->d_name + nl - 2, ".c"))
            continue;
        char path[1024];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path)
            fail_msg("path too long under %s", dir);
        scan_c_file(path, all, calls);
        n++;
    }
    closedir(d);
    return n;
}

static void catalog_matches_sources(void **state)
{
    (void)state;
    static const char *const files[] = {"core/account_pages.c", "core/page.c", "core/site.c", "core/webauth.c",
                                        "core/accounts.c"};
    drift d = {{NULL, 0, 0}, {NULL, 0, 0}, 0, 0};
    lits calls = {NULL, 0, 0}, market = {NULL, 0, 0};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", srcdir(), files[i]);
        scan_c_file(path, &d.lits, &calls);
    }
    assert_true(d.lits.count > 100);
    /* The scanner found the core's T() calls (most of the account pages' text now lives in
     * their templates, counted below with the themes). */
    assert_true(calls.count > 50);
    /* the marketplace plugin: mk_api->tr(r, "...") and N_("...") */
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s/plugins/market", srcdir());
    assert_true(scan_c_dir(mdir, &d.lits, &market) >= 6);
    assert_true(market.count > 100);
    assert_true(in_list(&market, "Ce producteur n'existe pas."));
    assert_true(in_list(&market, "ligne %d : %s"));
    /* the checker itself: joined literals, escapes, and whole pieces only */
    assert_true(in_literals(&d.lits, "Propulsé par halle · vente directe sans commission"));
    assert_true(in_literals(&d.lits, "Bonjour,\n\nPour utiliser cette adresse sur %s, ouvrez ce lien :\n\n%s\n"));
    assert_false(in_literals(&d.lits, "Propulsé par halle"));
    assert_false(in_literals(&d.lits, "Se connecter (absent)"));

    char dir[1024];
    int tpl_files = 0;
    snprintf(dir, sizeof dir, "%s/themes", srcdir());
    theme_msgids(dir, 8, &d.tpl, &tpl_files);
    assert_true(tpl_files >= 6);
    assert_true(in_list(&d.tpl, "Aller au contenu"));
    assert_true(in_list(&d.tpl, "Propulsé par halle · vente directe sans commission"));
    /* the bundled Lua plugins' own templates (halle.render translates their {{_ }} tags too) */
    int plugin_tpls = 0;
    snprintf(dir, sizeof dir, "%s/plugins", srcdir());
    theme_msgids(dir, 4, &d.tpl, &plugin_tpls);
    assert_true(plugin_tpls >= 1);
    assert_true(in_list(&d.tpl, "Partager la page de"));

    snprintf(dir, sizeof dir, "%s/po", srcdir());
    hl_i18n *t = NULL;
    hl_err err = {0};
    if (hl_i18n_load(&t, dir, &err) != HL_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(hl_i18n_each(t, "en", check_msgid, &d), HL_OK);
    print_message("# po/en.po: %d msgids found in the C sources and templates, %d problems\n", d.found, d.missing);
    /* the other way round: what the pages show through T() and {{_ }} is translated */
    int c_missing = untranslated(t, &calls, "T() in core/*.c");
    int m_missing = untranslated(t, &market, "tr() or N_() in plugins/market/*.c");
    int tpl_missing = untranslated(t, &d.tpl, "{{_ }} in themes/");
    print_message("# %zu T() msgids, %zu market msgids, %zu template msgids; %d, %d and %d without a translation\n",
                  calls.count, market.count, d.tpl.count, c_missing, m_missing, tpl_missing);
    int found = d.found, missing = d.missing;
    lits_free(&d.lits);
    lits_free(&d.tpl);
    lits_free(&calls);
    lits_free(&market);
    hl_i18n_free(t);
    assert_int_equal(missing, 0);
    assert_int_equal(c_missing, 0);
    assert_int_equal(m_missing, 0);
    assert_int_equal(tpl_missing, 0);
    assert_true(found >= 150);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parse_entries),
        cmocka_unit_test(contexts),
        cmocka_unit_test(plural_forms),
        cmocka_unit_test(parse_errors),
        cmocka_unit_test(fuzz_catalogs),
        cmocka_unit_test(lookups),
        cmocka_unit_test(negotiation),
        cmocka_unit_test(format_price),
        cmocka_unit_test(format_number),
        cmocka_unit_test(format_date),
        cmocka_unit_test(template_tag),
        cmocka_unit_test(real_catalogs),
        cmocka_unit_test(msgid_scanners),
        cmocka_unit_test(catalog_matches_sources),
    };
    return cmocka_run_group_tests_name("i18n", tests, NULL, NULL);
}
