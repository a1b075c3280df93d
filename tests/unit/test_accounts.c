/* Unit tests for accounts (core/accounts.c): password policy and hashing, e-mail addresses,
 * users, login with lockouts, tokens, sessions, rate limits and the full permission matrix,
 * each on a fresh SQLite database with the main migrations applied. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/testutil.h"
#include <sodium.h>

#include "core/accounts.h"
#include "core/caps.h"
#include "plugins/market/caps.h"
#include "core/db.h"

#define MSG_AUTH "Adresse e-mail ou mot de passe incorrect."
#define PW "Correct-Horse7"

static const hl_password_params FAST = {crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN};
static const hl_password_params OTHER = {crypto_pwhash_OPSLIMIT_MIN + 1,
                                         crypto_pwhash_MEMLIMIT_MIN};

typedef struct {
    char dir[64];
    char path[128];
    hl_db *db;
} fx;


static int setup(void **state)
{
    hl_err err = {0};
    char mig[1024];
    int applied = 0;
    const char *src = getenv("HALLE_SRCDIR");
    fx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    strcpy(f->dir, "/tmp/hl_acc_test_XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/main.db", f->dir);
    snprintf(mig, sizeof mig, "%s/core/migrations/main", src && *src ? src : ".");
    f->db = hl_db_open(f->path, HL_DB_CREATE, &err);
    if (!f->db || hl_db_migrate(f->db, "main", mig, &applied, &err) != HL_OK || applied < 4 ||
        hl_accounts_init(&err) != HL_OK) {
        fprintf(stderr, "setup: %s (migrations from %s)\n", err.msg, mig);
        hl_db_close(f->db);
        hl_test_rm_rf(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    hl_db_close(f->db);
    hl_test_rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Sleeps until a new window of w seconds has just begun. */
static void wait_window_start(int w)
{
    time_t t0 = time(NULL);
    while (time(NULL) == t0 || time(NULL) % w != 0)
        sleep_ms(10);
}

static void iso(time_t t, char out[24])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 24, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One integer from a query with one text or integer parameter ("s" or "I" in types). */
static int64_t q_int(hl_db *db, const char *sql, const char *types, ...)
{
    hl_err err = {0};
    va_list ap;
    va_start(ap, types);
    hl_stmt *st;
    if (types && !strcmp(types, "s"))
        st = hl_db_query(db, &err, sql, "s", va_arg(ap, const char *));
    else if (types && !strcmp(types, "I"))
        st = hl_db_query(db, &err, sql, "I", va_arg(ap, int64_t));
    else
        st = hl_db_query(db, &err, sql, NULL);
    va_end(ap);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    int64_t v = hl_db_col_int64(st, 0);
    hl_db_done(st);
    return v;
}

/* One text column (NULL -> "(null)") for a user id. */
static void q_text(hl_db *db, const char *sql, int64_t id, char *out, size_t n)
{
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err, sql, "I", id);
    assert_non_null(st);
    assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
    const char *s = hl_db_col_text(st, 0);
    snprintf(out, n, "%s", s ? s : "(null)");
    hl_db_done(st);
}

static void exec_sql(hl_db *db, const char *sql, const char *text, int64_t id)
{
    hl_err err = {0};
    int rc = text ? hl_db_run(db, &err, sql, "sI", text, id) : hl_db_run(db, &err, sql, "I", id);
    assert_true(rc >= 0);
}

static int64_t make_user(hl_db *db, const char *email, const char *pw, int verified)
{
    hl_err err = {0};
    hl_user_new u = {.email = email, .name = "Alice Martin", .password = pw,
                     .terms_version = "2024-01", .age_certified = 1, .verified = verified};
    int64_t id = hl_user_create(db, &u, &FAST, &err);
    if (id <= 0)
        fprintf(stderr, "make_user: %s\n", err.msg);
    assert_true(id > 0);
    return id;
}

static int login(hl_db *db, const char *email, const char *pw, const hl_lockout_params *lock,
                 int64_t *id, hl_err *err)
{
    hl_err_clear(err);
    return hl_user_login(db, email, pw, NULL, lock, &FAST, id, err);
}

/* ---------------------------------------------------------------- passwords */

static void test_password_policy(void **state)
{
    (void)state;
    hl_err err = {0};
    char big[1100];

    assert_int_equal(hl_password_policy(NULL, &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("", &err), HL_EINVAL);

    /* 7 characters, 4 classes. */
    assert_int_equal(hl_password_policy("Ab1!xyz", &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "au moins 8 caractères"));
    assert_null(strstr(err.msg, "types"));

    /* 8+ characters but 2 classes: the message names what is missing. */
    assert_int_equal(hl_password_policy("abcdefgh1", &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "au moins 3 types de caractères parmi : majuscules, "
                                    "minuscules, chiffres, caractères spéciaux"));
    assert_non_null(strstr(err.msg, "il manque : majuscules, caractères spéciaux"));
    assert_null(strstr(err.msg, "8 caractères"));
    assert_int_equal(hl_password_policy("ABCDEFGHIJ", &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("12345678!!", &err), HL_EINVAL);

    /* Too short and too few classes: both said. */
    assert_int_equal(hl_password_policy("abc1", &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "8 caractères"));
    assert_non_null(strstr(err.msg, "3 types"));

    /* 3 classes accepted, whichever they are. */
    assert_int_equal(hl_password_policy("abcdefg1A", &err), HL_OK);
    assert_int_equal(hl_password_policy("abcdefg1!", &err), HL_OK);
    assert_int_equal(hl_password_policy("ABCDEFG1!", &err), HL_OK);
    assert_int_equal(hl_password_policy("abcdefgA!", &err), HL_OK);
    assert_int_equal(hl_password_policy("@Kjrmbi1", &err), HL_OK); /* the seed's example */
    assert_int_equal(hl_password_policy("pass word 1", &err), HL_OK); /* space is special */

    /* Non-ASCII letters count as special characters; length is in characters. */
    assert_int_equal(hl_password_policy("éléphant1", &err), HL_OK);
    assert_int_equal(hl_password_policy("ÉÉÉÉÉÉÉ1", &err), HL_EINVAL); /* special + digit */
    assert_int_equal(hl_password_policy("Aé1bcde", &err), HL_EINVAL);   /* 7 chars, 8 bytes */
    assert_non_null(strstr(err.msg, "8 caractères"));
    assert_int_equal(hl_password_policy("Aé1bcdef", &err), HL_OK);
    assert_int_equal(hl_password_policy("日本語のパスワード1a", &err), HL_OK);

    /* Hostile: invalid UTF-8, overlong encodings, surrogates, control characters. */
    assert_int_equal(hl_password_policy("Abcdefg1\xff", &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("Abcdefg1\xc0\xaf", &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("Abcdefg1\xed\xa0\x80", &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("Abcdefg1\xe2\x82", &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("Abcdefg1\n", &err), HL_EINVAL);
    assert_int_equal(hl_password_policy("Abc\x01" "defg1", &err), HL_EINVAL);

    /* 1024 bytes is the cap. */
    memset(big, 'a', sizeof big);
    memcpy(big, "A1", 2);
    big[1024] = '\0';
    assert_int_equal(hl_password_policy(big, &err), HL_OK);
    big[1024] = 'a';
    big[1025] = '\0';
    assert_int_equal(hl_password_policy(big, &err), HL_ETOOBIG);
    assert_non_null(strstr(err.msg, "1024"));
    big[sizeof big - 1] = '\0';
    assert_int_equal(hl_password_policy(big, &err), HL_ETOOBIG);
}

static void test_password_hash_verify(void **state)
{
    (void)state;
    hl_err err = {0};
    char h[crypto_pwhash_STRBYTES], h2[crypto_pwhash_STRBYTES], small[16];
    int rehash = -1;

    assert_int_equal(hl_password_hash(PW, &FAST, h, sizeof h, &err), HL_OK);
    assert_int_equal(strncmp(h, "$argon2id$", 10), 0);
    assert_null(strstr(h, PW));
    /* Salted: the same password hashes differently. */
    assert_int_equal(hl_password_hash(PW, &FAST, h2, sizeof h2, &err), HL_OK);
    assert_string_not_equal(h, h2);

    assert_int_equal(hl_password_verify(h, PW, &FAST, &rehash), 1);
    assert_int_equal(rehash, 0);
    assert_int_equal(hl_password_verify(h, "Correct-Horse8", &FAST, &rehash), 0);
    assert_int_equal(hl_password_verify(h, "", &FAST, &rehash), 0);
    assert_int_equal(hl_password_verify(h, PW, &FAST, NULL), 1);

    /* Other parameters: still verifies, but asks for a rehash. */
    assert_int_equal(hl_password_verify(h, PW, &OTHER, &rehash), 1);
    assert_int_equal(rehash, 1);
    assert_int_equal(hl_password_hash(PW, &OTHER, h2, sizeof h2, &err), HL_OK);
    assert_int_equal(hl_password_verify(h2, PW, &OTHER, &rehash), 1);
    assert_int_equal(rehash, 0);

    /* Hostile. */
    assert_int_equal(hl_password_verify(NULL, PW, &FAST, &rehash), 0);
    assert_int_equal(hl_password_verify(h, NULL, &FAST, &rehash), 0);
    assert_int_equal(hl_password_verify("", PW, &FAST, &rehash), 0);
    assert_int_equal(hl_password_verify("$argon2id$v=19$m=8,t=1,p=1$garbage", PW, &FAST, &rehash), 0);
    assert_int_equal(hl_password_verify("!", PW, &FAST, &rehash), 0);
    assert_int_equal(hl_password_hash(PW, &FAST, small, sizeof small, &err), HL_ETOOBIG);
    assert_int_equal(hl_password_hash(NULL, &FAST, h, sizeof h, &err), HL_EINVAL);
    hl_password_params bad = {crypto_pwhash_OPSLIMIT_MIN, 1};
    assert_int_equal(hl_password_hash(PW, &bad, h2, sizeof h2, &err), HL_EINVAL);

    /* A 1025-byte password never matches, even if its first 1024 bytes are a set password. */
    char big[1026];
    memset(big, 'a', sizeof big);
    memcpy(big, "A1", 2);
    big[1024] = '\0';
    assert_int_equal(hl_password_hash(big, &FAST, h, sizeof h, &err), HL_OK);
    assert_int_equal(hl_password_verify(h, big, &FAST, &rehash), 1);
    big[1024] = 'a';
    big[1025] = '\0';
    assert_int_equal(hl_password_verify(h, big, &FAST, &rehash), 0);
    assert_int_equal(hl_password_hash(big, &FAST, h2, sizeof h2, &err), HL_ETOOBIG);
}

/* ---------------------------------------------------------------- e-mail */

static void test_email_normalize(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"alice@example.fr", "alice@example.fr"},
        {"  Alice.Martin@Example.FR  ", "alice.martin@example.fr"},
        {"\tBOB+tag@Sub.Example.org\r\n", "bob+tag@sub.example.org"},
        {"o'neil@example.ie", "o'neil@example.ie"},
        {"élise@exemple.fr", "élise@exemple.fr"},
        {"a@b.co", "a@b.co"},
        {"a-b_c@x-y.example", "a-b_c@x-y.example"},
        {"", NULL},
        {"   ", NULL},
        {"alice", NULL},
        {"alice@", NULL},
        {"@example.fr", NULL},
        {"alice@@example.fr", NULL},
        {"alice@bob@example.fr", NULL},
        {"alice@localhost", NULL},
        {"alice@.example.fr", NULL},
        {"alice@example.fr.", NULL},
        {"alice@example..fr", NULL},
        {"al ice@example.fr", NULL},
        {"alice@exa mple.fr", NULL},
        {"\"alice\"@example.fr", NULL},
        {"<alice@example.fr>", NULL},
        {"alice@example.fr,bob@example.fr", NULL},
        {"alice@example.fr;bob@example.fr", NULL},
        {"alice\r\nBcc: x@y.fr@example.fr", NULL},
        {"ali\x01" "ce@example.fr", NULL},
        {"alice@exa\x7fmple.fr", NULL},
        {"alice@exam_ple.fr", NULL},
        {"ali\xff" "ce@example.fr", NULL},
        {"alice\\@example.fr", NULL},
        {"alice(x)@example.fr", NULL},
        {"deleted-12@invalid", NULL},
    };
    hl_err err = {0};
    char out[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = hl_email_normalize(cases[i].in, out, sizeof out, &err);
        if (cases[i].out) {
            if (rc != HL_OK)
                fprintf(stderr, "case %zu (%s): %s\n", i, cases[i].in, err.msg);
            assert_int_equal(rc, HL_OK);
            assert_string_equal(out, cases[i].out);
        } else {
            if (rc == HL_OK)
                fprintf(stderr, "case %zu (%s) accepted\n", i, cases[i].in);
            assert_int_not_equal(rc, HL_OK);
            assert_true(err.msg[0] != '\0');
        }
    }

    /* 254 bytes is the cap, counted after trimming. */
    char addr[300];
    memset(addr, 'a', sizeof addr);
    memcpy(addr + 254 - 11, "@example.fr", 11);
    addr[254] = '\0';
    assert_int_equal(hl_email_normalize(addr, out, sizeof out, &err), HL_OK);
    assert_int_equal(strlen(out), 254);
    char padded[320];
    snprintf(padded, sizeof padded, "   %s   ", addr);
    assert_int_equal(hl_email_normalize(padded, out, sizeof out, &err), HL_OK);
    memset(addr, 'a', sizeof addr);
    memcpy(addr + 255 - 11, "@example.fr", 11);
    addr[255] = '\0';
    assert_int_equal(hl_email_normalize(addr, out, sizeof out, &err), HL_ETOOBIG);

    /* Output buffer too small, NULL arguments. */
    char tiny[8];
    assert_int_equal(hl_email_normalize("alice@example.fr", tiny, sizeof tiny, &err), HL_ETOOBIG);
    assert_int_equal(hl_email_normalize(NULL, out, sizeof out, &err), HL_EINVAL);
    assert_int_equal(hl_email_normalize("alice@example.fr", NULL, 0, &err), HL_EINVAL);
}

/* ---------------------------------------------------------------- users */

/* What the plugin API's user_create and user_search stand on. */
static void test_user_seeded_search(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_user u;
    char buf[256];
    int64_t ids[4];

    int64_t id = hl_user_create_seeded(f->db, " Rose@Ferme.example", "Rose 100%_Bio", &err);
    assert_true(id > 0);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_string_equal(u.email, "rose@ferme.example");
    assert_int_equal(u.verified, 1);
    /* No password opens it: "!" is no hash. */
    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, "!");
    int64_t got = 0;
    assert_int_not_equal(login(f->db, "rose@ferme.example", "!", NULL, &got, &err), HL_OK);
    assert_int_equal(login(f->db, "rose@ferme.example", PW, NULL, &got, &err), HL_EAUTH);
    /* Seeding twice finds the same account. */
    assert_int_equal(hl_user_create_seeded(f->db, "rose@ferme.example", "Other", &err), id);
    /* The same checks as a sign-up. */
    assert_int_equal(hl_user_create_seeded(f->db, "not an address", "Rose", &err), HL_EINVAL);
    assert_int_equal(hl_user_create_seeded(f->db, "x@ferme.example", "", &err), HL_EINVAL);
    assert_int_equal(hl_user_create_seeded(f->db, "x@ferme.example", "Bad\x1b[31m", &err), HL_EINVAL);

    int64_t other = hl_user_create_seeded(f->db, "jean@example.org", "Jean Ferme", &err);
    assert_true(other > 0);
    /* Names, any case; addresses only when asked; % and _ taken literally. */
    assert_int_equal(hl_user_search(f->db, "FERME", 0, ids, 4, &err), 1);
    assert_int_equal(ids[0], other);
    assert_int_equal(hl_user_search(f->db, "FERME", 1, ids, 4, &err), 2);
    assert_int_equal(hl_user_search(f->db, "100%_", 0, ids, 4, &err), 1);
    assert_int_equal(ids[0], id);
    assert_int_equal(hl_user_search(f->db, "%", 1, ids, 4, &err), 1);
    assert_int_equal(hl_user_search(f->db, "e", 1, ids, 1, &err), 1);
    assert_int_equal(hl_user_search(f->db, "e", 1, ids, 0, &err), HL_EINVAL);
}

static void test_user_create(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_user u;
    char buf[256];
    hl_user_new n = {.email = "  Alice@Example.FR ", .name = "Alice Martin", .password = PW,
                     .phone = "+33 6 12 34 56 78", .address = "1 rue des Lilas\n75000 Paris",
                     .terms_version = "2024-01", .age_certified = 1};

    int64_t id = hl_user_create(f->db, &n, &FAST, &err);
    assert_true(id > 0);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.id, id);
    assert_string_equal(u.email, "alice@example.fr");
    assert_string_equal(u.name, "Alice Martin");
    assert_string_equal(u.phone, "+33 6 12 34 56 78");
    assert_string_equal(u.address, "1 rue des Lilas\n75000 Paris");
    assert_int_equal(u.roles, HL_ROLE_CLIENT);
    assert_int_equal(u.nscopes, 0);
    assert_int_equal(u.verified, 0);
    assert_int_equal(u.locked, 0);
    assert_int_equal(u.deleted, 0);
    assert_int_equal(strlen(u.created_at), 20);

    /* Terms and age recorded; only a hash of the password stored. */
    q_text(f->db, "SELECT terms_version FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, "2024-01");
    q_text(f->db, "SELECT terms_accepted_at FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, u.created_at);
    q_text(f->db, "SELECT age_certified_at FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, u.created_at);
    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_int_equal(strncmp(buf, "$argon2id$", 10), 0);
    assert_null(strstr(buf, PW));

    /* Found by any spelling of the address. */
    assert_int_equal(hl_user_find_email(f->db, "ALICE@example.fr ", &u, &err), HL_OK);
    assert_int_equal(u.id, id);
    assert_int_equal(hl_user_find_email(f->db, "nobody@example.fr", &u, &err), HL_ENOTFOUND);
    assert_int_equal(hl_user_find_email(f->db, "not an address", &u, &err), HL_EINVAL);
    assert_int_equal(hl_user_get(f->db, 9999, &u, &err), HL_ENOTFOUND);

    /* Duplicate after normalisation. */
    n.email = "alice@EXAMPLE.fr";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EUNIQUE);
    assert_non_null(strstr(err.msg, "existe déjà"));

    /* Terms and age are required. */
    n.email = "bob@example.fr";
    n.terms_version = NULL;
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "conditions"));
    n.terms_version = "";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    n.terms_version = "2024-01";
    n.age_certified = 0;
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "15 ans"));
    n.age_certified = 1;

    /* Other bad fields. */
    n.password = "short";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "8 caractères"));
    n.password = PW;
    n.name = "";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    n.name = "Bob\x1b[31m";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    n.name = "Bob";
    n.phone = "06<script>";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    n.phone = NULL;
    n.email = "bob@@example.fr";
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    n.email = "bob@example.fr";
    n.roles = HL_ROLE_COORDINATOR;
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    n.roles = 1u << 7;
    assert_int_equal(hl_user_create(f->db, &n, &FAST, &err), HL_EINVAL);
    assert_int_equal(hl_user_create(f->db, NULL, &FAST, &err), HL_EINVAL);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_users", NULL), 1);

    /* A producer created by an operator from the CLI: verified, producer id = user id. */
    n.roles = HL_ROLE_PRODUCER;
    n.verified = 1;
    n.address = NULL;
    int64_t pid = hl_user_create(f->db, &n, &FAST, &err);
    assert_true(pid > 0);
    assert_int_equal(hl_user_get(f->db, pid, &u, &err), HL_OK);
    assert_int_equal(u.roles, HL_ROLE_PRODUCER);
    assert_int_equal(u.verified, 1);
    assert_string_equal(u.phone, "");
    assert_string_equal(u.address, "");
}

static void test_user_profile_email_password(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_user u;
    int64_t id = make_user(f->db, "alice@example.fr", PW, 1), got;
    make_user(f->db, "bob@example.fr", PW, 1);

    assert_int_equal(hl_user_update_profile(f->db, id, "Alice M.", "0612345678", "Lyon", &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_string_equal(u.name, "Alice M.");
    assert_string_equal(u.phone, "0612345678");
    assert_string_equal(u.address, "Lyon");
    assert_int_equal(hl_user_update_profile(f->db, id, "Alice", NULL, NULL, &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_string_equal(u.phone, "");

    char longname[200];
    memset(longname, 'x', sizeof longname);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(hl_user_update_profile(f->db, id, longname, NULL, NULL, &err), HL_ETOOBIG);
    assert_int_equal(hl_user_update_profile(f->db, id, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_user_update_profile(f->db, id, "A\xff", NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_user_update_profile(f->db, id, "A\nB", NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_user_update_profile(f->db, 9999, "A", NULL, NULL, &err), HL_ENOTFOUND);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_string_equal(u.name, "Alice");

    /* E-mail change: normalised, never onto another account's address. */
    assert_int_equal(hl_user_set_email(f->db, id, " BOB@example.fr", &err), HL_EUNIQUE);
    assert_int_equal(hl_user_set_email(f->db, id, "bad", &err), HL_EINVAL);
    assert_int_equal(hl_user_set_email(f->db, id, " Alice.New@Example.fr", &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_string_equal(u.email, "alice.new@example.fr");
    assert_int_equal(hl_user_set_email(f->db, id, "alice.new@example.fr", &err), HL_OK);

    /* Password change: policy applies, the new one logs in, the old one does not. */
    assert_int_equal(hl_user_set_password(f->db, id, "weakweak", &FAST, &err), HL_EINVAL);
    assert_int_equal(hl_user_set_password(f->db, id, "New-Secret9", &FAST, &err), HL_OK);
    assert_int_equal(login(f->db, "alice.new@example.fr", PW, NULL, &got, &err), HL_EAUTH);
    assert_int_equal(login(f->db, "alice.new@example.fr", "New-Secret9", NULL, &got, &err), HL_OK);
    assert_int_equal(got, id);
    assert_int_equal(hl_user_set_password(f->db, 9999, "New-Secret9", &FAST, &err), HL_ENOTFOUND);
}

/* The market's capabilities, as its init registers them: the matrix below tests the core's
 * can() with the market's own rule table. */
static void register_market(void)
{
    hl_caps_forget(NULL);
    for (size_t i = 0; i < sizeof mk_caps / sizeof mk_caps[0]; i++)
        assert_true(hl_caps_register(mk_caps[i].name, mk_caps[i].rules, mk_caps[i].nrules, NULL, NULL, NULL, NULL) >=
                    HALLE_CAP_FIRST);
}

static void test_user_roles(void **state)
{
    fx *f = *state;
    register_market();
    hl_err err = {0};
    hl_user u;
    int64_t id = make_user(f->db, "carol@example.fr", PW, 1);

    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_PRODUCER, 0, &err), HL_OK);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_PRODUCER, 0, &err), HL_OK); /* again */
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, 200, &err), HL_OK);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, 100, &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.roles, HL_ROLE_CLIENT | HL_ROLE_PRODUCER | HL_ROLE_COORDINATOR);
    assert_int_equal(u.nscopes, 2);
    assert_int_equal(u.scopes[0].role, HL_ROLE_COORDINATOR);
    assert_int_equal(u.scopes[0].group, 100);
    assert_int_equal(u.scopes[1].group, 200);
    assert_true(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_GROUP_SETTINGS, 200));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_GROUP_SETTINGS, 300));
    assert_true(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_CATALOG, id));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HL_OBJ_OPERATOR_PAGES, 0));

    assert_int_equal(hl_user_remove_role(f->db, id, HL_ROLE_COORDINATOR, 100, &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.nscopes, 1);
    assert_int_equal(u.scopes[0].group, 200);
    assert_int_equal(hl_user_remove_role(f->db, id, HL_ROLE_COORDINATOR, 100, &err), HL_ENOTFOUND);
    assert_int_equal(hl_user_remove_role(f->db, id, HL_ROLE_PRODUCER, 0, &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_CATALOG, id));

    /* Bad role arguments. */
    assert_int_equal(hl_user_add_role(f->db, id, 0, 0, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_CLIENT | HL_ROLE_OPERATOR, 0, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, id, 1u << 9, 0, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, 0, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, -5, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_OPERATOR, 100, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, 9999, HL_ROLE_OPERATOR, 0, &err), HL_ENOTFOUND);

    /* At most HL_MAX_SCOPES groups: more would be silently dropped by hl_user_get. */
    for (int g = 1000; g < 1000 + HL_MAX_SCOPES - 1; g++)
        assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, g, &err), HL_OK);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, 5000, &err), HL_ETOOBIG);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, 200, &err), HL_OK); /* held */
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.nscopes, HL_MAX_SCOPES);
    /* group 0 removes the role for every group. */
    assert_int_equal(hl_user_remove_role(f->db, id, HL_ROLE_COORDINATOR, 0, &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.nscopes, 0);
    assert_int_equal(u.roles, HL_ROLE_CLIENT);
}

/* ---------------------------------------------------------------- login */

static void test_login_basic(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int64_t got = -1;
    int64_t id = make_user(f->db, "dave@example.fr", PW, 1);

    assert_int_equal(login(f->db, " DAVE@example.fr", PW, NULL, &got, &err), HL_OK);
    assert_int_equal(got, id);

    /* Wrong password, unknown address, malformed address: same code, same words. */
    assert_int_equal(login(f->db, "dave@example.fr", "Wrong-Pass1", NULL, &got, &err), HL_EAUTH);
    assert_int_equal(got, 0);
    assert_string_equal(err.msg, MSG_AUTH);
    assert_int_equal(login(f->db, "nobody@example.fr", PW, NULL, &got, &err), HL_EAUTH);
    assert_string_equal(err.msg, MSG_AUTH);
    assert_int_equal(login(f->db, "not an address", PW, NULL, &got, &err), HL_EAUTH);
    assert_string_equal(err.msg, MSG_AUTH);
    assert_int_equal(login(f->db, "", "", NULL, &got, &err), HL_EAUTH);
    assert_string_equal(err.msg, MSG_AUTH);

    /* Unknown addresses count nothing anywhere; the known one counted its failure. */
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 1);
    assert_int_equal(login(f->db, "dave@example.fr", PW, NULL, &got, &err), HL_OK);
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 0);

    /* Hostile sizes. */
    char big[5000];
    memset(big, 'a', sizeof big);
    big[sizeof big - 1] = '\0';
    assert_int_equal(login(f->db, big, PW, NULL, &got, &err), HL_EAUTH);
    assert_int_equal(login(f->db, "dave@example.fr", big, NULL, &got, &err), HL_EAUTH);
    assert_int_equal(login(f->db, NULL, PW, NULL, &got, &err), HL_EINVAL);
    assert_int_equal(login(f->db, "dave@example.fr", NULL, NULL, &got, &err), HL_EINVAL);
    assert_int_equal(hl_user_login(f->db, "dave@example.fr", PW, NULL, NULL, &FAST, NULL, &err),
                     HL_EINVAL);
    assert_int_equal(hl_user_login(f->db, "dave@example.fr", PW, big, NULL, &FAST, &got, &err),
                     HL_EINVAL);
}

static void test_login_rehash(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char before[256], after[256];
    int64_t got, id = make_user(f->db, "erin@example.fr", PW, 1);
    int rehash = -1;

    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, before, sizeof before);
    assert_int_equal(hl_password_verify(before, PW, &OTHER, &rehash), 1);
    assert_int_equal(rehash, 1);

    /* A failed login does not rehash. */
    assert_int_equal(hl_user_login(f->db, "erin@example.fr", "Wrong-Pass1", NULL, NULL, &OTHER,
                                   &got, &err), HL_EAUTH);
    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, after, sizeof after);
    assert_string_equal(before, after);

    assert_int_equal(hl_user_login(f->db, "erin@example.fr", PW, NULL, NULL, &OTHER, &got, &err),
                     HL_OK);
    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, after, sizeof after);
    assert_string_not_equal(before, after);
    assert_int_equal(hl_password_verify(after, PW, &OTHER, &rehash), 1);
    assert_int_equal(rehash, 0);
    assert_int_equal(hl_password_verify(after, PW, &FAST, &rehash), 1);
    assert_int_equal(rehash, 1);

    /* Same parameters again: left alone. */
    assert_int_equal(hl_user_login(f->db, "erin@example.fr", PW, NULL, NULL, &OTHER, &got, &err),
                     HL_OK);
    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, before, sizeof before);
    assert_string_equal(before, after);
}

static void test_lockout_temporary(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_user u;
    int64_t got;
    int64_t id = make_user(f->db, "fred@example.fr", PW, 1);
    hl_lockout_params lock = {3, 10, 1, 1000};

    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-1a", &lock, &got, &err), HL_EAUTH);
    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-2a", &lock, &got, &err), HL_EAUTH);
    /* At the start of a second, so that the checks below all fall within the 1 s lock. */
    wait_window_start(1);
    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-3a", &lock, &got, &err), HL_ELOCKED);
    assert_non_null(strstr(err.msg, "Réessayez dans 1 minute."));
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.locked, 1);
    assert_int_equal(u.failed_logins, 3);

    /* The right password is refused while locked, and does not count. */
    assert_int_equal(login(f->db, "fred@example.fr", PW, &lock, &got, &err), HL_ELOCKED);
    assert_int_equal(got, 0);
    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-4a", &lock, &got, &err), HL_ELOCKED);
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 3);

    sleep_ms(1100);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.locked, 0);
    assert_int_equal(login(f->db, "fred@example.fr", PW, &lock, &got, &err), HL_OK);
    assert_int_equal(got, id);
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 0);
    assert_int_equal(q_int(f->db, "SELECT locked_until IS NULL FROM hl_users WHERE id = ?", "I", id), 1);

    /* Defaults (NULL): locked at the 3rd failure for 15 minutes. */
    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-1a", NULL, &got, &err), HL_EAUTH);
    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-2a", NULL, &got, &err), HL_EAUTH);
    assert_int_equal(login(f->db, "fred@example.fr", "Wrong-3a", NULL, &got, &err), HL_ELOCKED);
    assert_non_null(strstr(err.msg, "Réessayez dans 15 minutes."));
    assert_int_equal(login(f->db, "fred@example.fr", PW, NULL, &got, &err), HL_ELOCKED);
    assert_non_null(strstr(err.msg, "minutes"));
    /* An operator may lift it early. */
    assert_int_equal(hl_user_unlock(f->db, id, &err), HL_OK);
    assert_int_equal(login(f->db, "fred@example.fr", PW, NULL, &got, &err), HL_OK);
    assert_int_equal(hl_user_unlock(f->db, 9999, &err), HL_ENOTFOUND);
}

static void test_lockout_hard(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_user u;
    int64_t got;
    int64_t id = make_user(f->db, "gina@example.fr", PW, 1);
    static const int expect[10] = {HL_EAUTH, HL_EAUTH, HL_ELOCKED, HL_EAUTH, HL_EAUTH,
                                   HL_ELOCKED, HL_EAUTH, HL_EAUTH, HL_ELOCKED, HL_ELOCKED_HARD};

    for (int i = 0; i < 10; i++) {
        assert_int_equal(login(f->db, "gina@example.fr", "Wrong-Pass1", NULL, &got, &err), expect[i]);
        /* Let each temporary lock run out (as if 15 minutes had passed). */
        exec_sql(f->db, "UPDATE hl_users SET locked_until = NULL WHERE id = ?", NULL, id);
    }
    assert_non_null(strstr(err.msg, "Contactez"));
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.locked, 2);
    assert_int_equal(u.failed_logins, 10);

    /* The right password does not open it, expiry or not; attempts are no longer counted. */
    assert_int_equal(login(f->db, "gina@example.fr", PW, NULL, &got, &err), HL_ELOCKED_HARD);
    assert_int_equal(got, 0);
    assert_non_null(strstr(err.msg, "Contactez"));
    exec_sql(f->db, "UPDATE hl_users SET locked_until = ? WHERE id = ?", "2000-01-01T00:00:00Z", id);
    assert_int_equal(login(f->db, "gina@example.fr", PW, NULL, &got, &err), HL_ELOCKED_HARD);
    assert_int_equal(login(f->db, "gina@example.fr", "Wrong-Pass1", NULL, &got, &err), HL_ELOCKED_HARD);
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 10);

    assert_int_equal(hl_user_unlock(f->db, id, &err), HL_OK);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.locked, 0);
    assert_int_equal(u.failed_logins, 0);
    assert_int_equal(login(f->db, "gina@example.fr", PW, NULL, &got, &err), HL_OK);
    assert_int_equal(got, id);
}

static void test_login_unverified(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int64_t got;
    int64_t id = make_user(f->db, "hugo@example.fr", PW, 0);

    assert_int_equal(login(f->db, "hugo@example.fr", "Wrong-Pass1", NULL, &got, &err), HL_EAUTH);
    assert_string_equal(err.msg, MSG_AUTH);
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 1);
    assert_int_equal(login(f->db, "hugo@example.fr", PW, NULL, &got, &err), HL_EUNVERIFIED);
    assert_int_equal(got, 0);
    assert_non_null(strstr(err.msg, "vérifiée"));
    /* The password was right: the failures are forgotten. */
    assert_int_equal(q_int(f->db, "SELECT failed_logins FROM hl_users WHERE id = ?", "I", id), 0);

    assert_int_equal(hl_user_mark_verified(f->db, id, &err), HL_OK);
    char first[32], second[32];
    q_text(f->db, "SELECT email_verified_at FROM hl_users WHERE id = ?", id, first, sizeof first);
    assert_int_equal(hl_user_mark_verified(f->db, id, &err), HL_OK); /* keeps the first time */
    q_text(f->db, "SELECT email_verified_at FROM hl_users WHERE id = ?", id, second, sizeof second);
    assert_string_equal(first, second);
    assert_int_equal(login(f->db, "hugo@example.fr", PW, NULL, &got, &err), HL_OK);
    assert_int_equal(got, id);
    assert_int_equal(hl_user_mark_verified(f->db, 9999, &err), HL_ENOTFOUND);
}

/* Guessing at an address with no account and at one with an account gives the same answers,
 * step by step, temporary and hard locks included: the answers never tell which exists. */
/* Errors meant for people are msgids with parameters, rendered in the language of whoever shows
 * them: arguments that are msgids (a field's name, a list of character classes) translated too. */
static const char *fake_en(void *ud, const char *msgid)
{
    (void)ud;
    static const char *const pairs[][2] = {
        {"Le mot de passe doit contenir au moins %d caractères.", "At least %d characters."},
        {"majuscules", "upper-case"}, {"chiffres", "digits"}, {"nom", "name"},
        {"Le champ « %s » ne doit pas dépasser %zu octets.", "“%s” exceeds %zu bytes."}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        if (!strcmp(pairs[i][0], msgid))
            return pairs[i][1];
    return msgid;
}

static void test_error_messages(void **state)
{
    (void)state;
    hl_err err = {0};
    char out[512];
    assert_int_equal(hl_password_policy("abc", &err), HL_EINVAL);
    assert_int_equal(err.nparts, 2);
    /* the source text for logs */
    assert_non_null(strstr(err.msg, "au moins 8 caractères. Le mot de passe doit contenir au moins 3 types"));
    assert_non_null(strstr(err.msg, "(il manque : majuscules, chiffres, caractères spéciaux)."));
    /* rendered by a page in English: the sentence, its number, and the listed msgids */
    hl_err_render(&err, fake_en, NULL, out, sizeof out);
    assert_true(!strncmp(out, "At least 8 characters. Le mot de passe doit", 43));
    assert_non_null(strstr(out, "(il manque : upper-case, digits, caractères spéciaux)."));
    hl_err_msg(&err, HL_ETOOBIG, "Le champ « %s » ne doit pas dépasser %zu octets.", "tz", "nom", (size_t)120);
    assert_string_equal(err.msg, "Le champ « nom » ne doit pas dépasser 120 octets.");
    assert_string_equal(hl_err_render(&err, fake_en, NULL, out, sizeof out), "“name” exceeds 120 bytes.");
    /* a plain hl_err_set forgets the sentences */
    hl_err_set(&err, HL_EINVAL, "plain %d", 5);
    assert_int_equal(err.nparts, 0);
    assert_string_equal(hl_err_render(&err, fake_en, NULL, out, sizeof out), "plain 5");
}

static void test_login_unknown_same_answers(void **state)
{
    fx *f = *state;
    make_user(f->db, "real@example.fr", PW, 1);
    hl_lockout_params lp = {3, 10, 900, 1000};
    int64_t t0 = 1800000000;
    char clock[32];
    for (int i = 1; i <= 16; i++) {
        hl_err e1 = {0}, e2 = {0};
        int64_t got = 0;
        /* Three attempts a quarter of an hour, as a patient guesser: the temporary locks pass. */
        snprintf(clock, sizeof clock, "%lld", (long long)(t0 + (i / 3) * 901));
        setenv("HALLE_NOW", clock, 1);
        int r1 = hl_user_login(f->db, "real@example.fr", "Wrong-Pass1", NULL, &lp, &FAST, &got, &e1);
        int r2 = hl_user_login(f->db, "ghost@example.fr", "Wrong-Pass1", NULL, &lp, &FAST, &got, &e2);
        assert_int_equal(r1, r2);
        assert_string_equal(e1.msg, e2.msg);
        if (i == 3)
            assert_int_equal(r1, HL_ELOCKED);
        if (i == 4)
            assert_int_equal(r1, HL_ELOCKED); /* still locked: not counted */
        if (i >= 13)
            assert_int_equal(r1, HL_ELOCKED_HARD);
    }
    unsetenv("HALLE_NOW");
    /* Only a hash of the address typed is kept, never the address. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_login_failures WHERE address_hash LIKE ?", "s", "%ghost%"), 0);
    assert_int_equal(q_int(f->db, "SELECT failures FROM hl_login_failures WHERE 1 = ?", "I", (int64_t)1), 10);
}

static void test_login_rate_limited(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    int64_t got;
    make_user(f->db, "ines@example.fr", PW, 1);

    /* 20 attempts per 5-minute window per address (redone if a window boundary fell inside). */
    for (int tries = 0; tries < 3; tries++) {
        exec_sql(f->db, "DELETE FROM hl_rate_limits WHERE ? > 0", NULL, 1);
        time_t w0 = time(NULL) / 300;
        for (int i = 0; i < 20; i++) { /* other addresses each time: none gets locked */
            char who[64];
            snprintf(who, sizeof who, "x%d-%d@example.fr", tries, i);
            assert_int_equal(hl_user_login(f->db, who, PW, "192.0.2.7", NULL, &FAST, &got, &err), HL_EAUTH);
        }
        hl_err_clear(&err);
        int rc = hl_user_login(f->db, "ines@example.fr", PW, "192.0.2.7", NULL, &FAST, &got, &err);
        if (time(NULL) / 300 != w0)
            continue;
        assert_int_equal(rc, HL_ERATE);
        assert_int_equal(got, 0);
        assert_non_null(strstr(err.msg, "Trop de tentatives"));
        assert_int_equal(q_int(f->db, "SELECT hits FROM hl_rate_limits WHERE key = ?", "s",
                               "login:192.0.2.7"), 21);
        /* Another address is not concerned; no address (CLI) is never limited. */
        assert_int_equal(hl_user_login(f->db, "ines@example.fr", PW, "192.0.2.8", NULL, &FAST,
                                       &got, &err), HL_OK);
        assert_int_equal(hl_user_login(f->db, "ines@example.fr", PW, NULL, NULL, &FAST, &got, &err),
                         HL_OK);
        return;
    }
    fail_msg("window boundary crossed three times");
}

/* ---------------------------------------------------------------- deletion */

static void test_user_delete(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_user u;
    char raw[HL_TOKEN_LEN + 1], sess[HL_TOKEN_LEN + 1], buf[256], expect[64];
    int64_t got;
    hl_user_new n = {.email = "jules@example.fr", .name = "Jules Verne", .password = PW,
                     .phone = "0102030405", .address = "Nantes", .terms_version = "v1",
                     .age_certified = 1, .verified = 1, .roles = HL_ROLE_PRODUCER};
    int64_t id = hl_user_create(f->db, &n, &FAST, &err);
    assert_true(id > 0);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_COORDINATOR, 7, &err), HL_OK);
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.1", "UA", sess, NULL, &err), HL_OK);
    assert_int_equal(hl_token_create(f->db, id, "reset", 3600, NULL, raw, &err), HL_OK);

    assert_int_equal(hl_user_delete(f->db, id, &err), HL_OK);
    snprintf(expect, sizeof expect, "deleted-%lld@invalid", (long long)id);
    assert_int_equal(hl_user_get(f->db, id, &u, &err), HL_OK);
    assert_int_equal(u.deleted, 1);
    assert_string_equal(u.email, expect);
    assert_string_equal(u.name, "");
    assert_string_equal(u.phone, "");
    assert_string_equal(u.address, "");
    assert_int_equal(u.roles, 0);
    q_text(f->db, "SELECT phone FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, "(null)");
    q_text(f->db, "SELECT address FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, "(null)");
    q_text(f->db, "SELECT password_hash FROM hl_users WHERE id = ?", id, buf, sizeof buf);
    assert_int_equal(hl_password_verify(buf, PW, &FAST, NULL), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_users WHERE name LIKE '%Jules%' OR "
                                  "email LIKE '%jules%' OR phone IS NOT NULL", NULL), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_sessions WHERE user_id = ?", "I", id), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_user_tokens WHERE user_id = ?", "I", id), 0);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_user_roles WHERE user_id = ?", "I", id), 0);
    assert_int_equal(q_int(f->db, "SELECT deleted_at IS NOT NULL FROM hl_users WHERE id = ?", "I", id), 1);
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HL_OBJ_USER_ACCOUNT, id));

    /* Cannot log in, under the old address or the new one; nothing new can be attached. */
    assert_int_equal(login(f->db, "jules@example.fr", PW, NULL, &got, &err), HL_EAUTH);
    assert_string_equal(err.msg, MSG_AUTH);
    assert_int_equal(login(f->db, expect, PW, NULL, &got, &err), HL_EAUTH);
    assert_string_equal(err.msg, MSG_AUTH);
    assert_int_equal(hl_session_lookup(f->db, sess, 3600, 86400, NULL, &err), HL_ENOTFOUND);
    assert_int_equal(hl_token_use(f->db, "reset", raw, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.1", "UA", sess, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, id, "reset", 3600, NULL, raw, &err), HL_EINVAL);
    assert_int_equal(hl_user_set_password(f->db, id, PW, &FAST, &err), HL_EINVAL);
    assert_int_equal(hl_user_update_profile(f->db, id, "Back", NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_user_add_role(f->db, id, HL_ROLE_OPERATOR, 0, &err), HL_EINVAL);

    /* Deleting twice is harmless; unknown ids are not found; the address is free again. */
    assert_int_equal(hl_user_delete(f->db, id, &err), HL_OK);
    assert_int_equal(hl_user_delete(f->db, 9999, &err), HL_ENOTFOUND);
    assert_int_equal(hl_user_delete(f->db, -1, &err), HL_ENOTFOUND);
    int64_t again = make_user(f->db, "jules@example.fr", PW, 1);
    assert_true(again != id);
    assert_int_equal(login(f->db, "jules@example.fr", PW, NULL, &got, &err), HL_OK);
    assert_int_equal(got, again);
}

/* ---------------------------------------------------------------- tokens */

static int token_chars_ok(const char *t)
{
    if (strlen(t) != HL_TOKEN_LEN)
        return 0;
    for (; *t; t++)
        if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *t))
            return 0;
    return 1;
}

static void test_tokens(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    char t1[HL_TOKEN_LEN + 1], t2[HL_TOKEN_LEN + 1], t3[HL_TOKEN_LEN + 1], extra[64], small[4];
    int64_t got;
    int64_t id = make_user(f->db, "kim@example.fr", PW, 0);
    int64_t other = make_user(f->db, "lou@example.fr", PW, 0);

    assert_int_equal(hl_token_create(f->db, id, "verify", 3600, NULL, t1, &err), HL_OK);
    assert_true(token_chars_ok(t1));
    /* Only the hash is stored: the raw token appears nowhere in the table. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_user_tokens WHERE token_hash = ?", "s", t1),
                     0);
    {
        hl_stmt *st = hl_db_query(f->db, &err, "SELECT count(*) FROM hl_user_tokens WHERE "
                                               "token_hash LIKE '%' || ? || '%' OR "
                                               "coalesce(extra, '') LIKE '%' || ? || '%'",
                                  "ss", t1, t1);
        assert_non_null(st);
        assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
        assert_int_equal(hl_db_col_int64(st, 0), 0);
        hl_db_done(st);
    }
    assert_int_equal(q_int(f->db, "SELECT length(token_hash) FROM hl_user_tokens WHERE user_id = ?",
                           "I", id), 64);

    /* Wrong kind: refused and not consumed. */
    assert_int_equal(hl_token_use(f->db, "reset", t1, &got, NULL, 0, &err), HL_EINVAL);
    assert_non_null(strstr(err.msg, "expiré"));
    assert_int_equal(got, 0);
    /* Single use. */
    assert_int_equal(hl_token_use(f->db, "verify", t1, &got, NULL, 0, &err), HL_OK);
    assert_int_equal(got, id);
    assert_int_equal(hl_token_use(f->db, "verify", t1, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(got, 0);

    /* A new token of a kind voids the previous ones of that kind only (and only this user's). */
    assert_int_equal(hl_token_create(f->db, id, "reset", 3600, NULL, t1, &err), HL_OK);
    assert_int_equal(hl_token_create(f->db, id, "verify", 3600, NULL, t3, &err), HL_OK);
    assert_int_equal(hl_token_create(f->db, other, "reset", 3600, NULL, extra, &err), HL_OK);
    assert_int_equal(hl_token_create(f->db, id, "reset", 3600, NULL, t2, &err), HL_OK);
    assert_string_not_equal(t1, t2);
    assert_int_equal(hl_token_use(f->db, "reset", t1, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, "reset", t2, &got, NULL, 0, &err), HL_OK);
    assert_int_equal(got, id);
    assert_int_equal(hl_token_use(f->db, "verify", t3, &got, NULL, 0, &err), HL_OK);
    assert_int_equal(hl_token_use(f->db, "reset", extra, &got, NULL, 0, &err), HL_OK);
    assert_int_equal(got, other);

    /* Extra data comes back; a buffer too small does not consume the token. */
    assert_int_equal(hl_token_create(f->db, id, "email", 3600, "new@example.fr", t1, &err), HL_OK);
    assert_int_equal(hl_token_use(f->db, "email", t1, &got, small, sizeof small, &err), HL_ETOOBIG);
    assert_int_equal(hl_token_use(f->db, "email", t1, &got, extra, sizeof extra, &err), HL_OK);
    assert_string_equal(extra, "new@example.fr");
    assert_int_equal(hl_token_create(f->db, id, "email", 3600, NULL, t1, &err), HL_OK);
    strcpy(extra, "stale");
    assert_int_equal(hl_token_use(f->db, "email", t1, &got, extra, sizeof extra, &err), HL_OK);
    assert_string_equal(extra, "");

    /* Expiry. */
    assert_int_equal(hl_token_create(f->db, id, "verify", 1, NULL, t1, &err), HL_OK);
    sleep_ms(1100);
    assert_int_equal(hl_token_use(f->db, "verify", t1, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(got, 0);

    /* Hostile. */
    char longer[HL_TOKEN_LEN + 2];
    memset(longer, 'A', sizeof longer);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(hl_token_use(f->db, "verify", NULL, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, "verify", "", &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, "verify", longer, &got, NULL, 0, &err), HL_EINVAL);
    longer[HL_TOKEN_LEN - 1] = '\0';
    assert_int_equal(hl_token_use(f->db, "verify", longer, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, "verify", "' OR 1=1 --'''''''''''''''''''''''''''''''''",
                                  &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, "admin", t2, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, NULL, t2, &got, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_use(f->db, "verify", t2, NULL, NULL, 0, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, id, "admin", 3600, NULL, t1, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, id, "verify", 0, NULL, t1, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, id, "verify", -5, NULL, t1, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, id, "verify", 100000000, NULL, t1, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, id, "email", 60, "bad\nextra", t1, &err), HL_EINVAL);
    assert_int_equal(hl_token_create(f->db, 9999, "verify", 60, NULL, t1, &err), HL_ENOTFOUND);
    assert_int_equal(hl_token_create(f->db, id, "verify", 60, NULL, NULL, &err), HL_EINVAL);
}

/* ---------------------------------------------------------------- sessions */

static void test_sessions(void **state)
{
    fx *f = *state;
    hl_err err = {0};
    hl_session s, s2, list[8];
    char r1[HL_TOKEN_LEN + 1], r2[HL_TOKEN_LEN + 1], r3[HL_TOKEN_LEN + 1], ts[24], buf[64];
    int64_t id = make_user(f->db, "max@example.fr", PW, 1);
    int64_t other = make_user(f->db, "noe@example.fr", PW, 1);

    assert_int_equal(hl_session_create(f->db, id, "192.0.2.1", "Firefox", r1, &s, &err), HL_OK);
    assert_true(token_chars_ok(r1));
    assert_true(token_chars_ok(s.csrf));
    assert_string_not_equal(s.csrf, r1);
    assert_int_equal(s.user_id, id);
    assert_int_equal(strlen(s.id_hash), 64);
    assert_string_equal(s.ip, "192.0.2.1");
    assert_string_equal(s.user_agent, "Firefox");
    /* The raw id is not stored, only its hash. */
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_sessions WHERE id_hash = ?", "s", r1), 0);
    {
        hl_stmt *st = hl_db_query(f->db, &err, "SELECT count(*) FROM hl_sessions WHERE "
                                               "id_hash LIKE '%' || ? || '%' OR "
                                               "csrf LIKE '%' || ? || '%'", "ss", r1, r1);
        assert_non_null(st);
        assert_int_equal(hl_db_step(st, &err), HL_DB_ROW);
        assert_int_equal(hl_db_col_int64(st, 0), 0);
        hl_db_done(st);
    }
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_sessions WHERE id_hash = ?", "s",
                           s.id_hash), 1);

    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_OK);
    assert_int_equal(s2.user_id, id);
    assert_string_equal(s2.csrf, s.csrf);
    assert_string_equal(s2.id_hash, s.id_hash);
    assert_string_equal(s2.created_at, s.created_at);

    /* last_seen_at is written at most once a minute. */
    iso(time(NULL) - 30, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET last_seen_at = ? WHERE user_id = ?", ts, id);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_OK);
    assert_string_equal(s2.last_seen_at, ts);
    q_text(f->db, "SELECT last_seen_at FROM hl_sessions WHERE user_id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, ts);
    iso(time(NULL) - 90, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET last_seen_at = ? WHERE user_id = ?", ts, id);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_OK);
    assert_string_not_equal(s2.last_seen_at, ts);
    q_text(f->db, "SELECT last_seen_at FROM hl_sessions WHERE user_id = ?", id, buf, sizeof buf);
    assert_string_equal(buf, s2.last_seen_at);

    /* Idle expiry: deleted when met. */
    iso(time(NULL) - 7200, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET last_seen_at = ? WHERE user_id = ?", ts, id);
    assert_int_equal(hl_session_lookup(f->db, r1, 7300, 86400, NULL, &err), HL_OK);
    /* That use refreshed it; leave it idle again. */
    exec_sql(f->db, "UPDATE hl_sessions SET last_seen_at = ? WHERE user_id = ?", ts, id);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_sessions WHERE user_id = ?", "I", id), 0);
    assert_int_equal(hl_session_lookup(f->db, r1, 99999, 999999, &s2, &err), HL_ENOTFOUND);

    /* Absolute expiry, even when in use. */
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.1", "Firefox", r1, &s, &err), HL_OK);
    iso(time(NULL) - 2 * 86400, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET created_at = ? WHERE user_id = ?", ts, id);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 3 * 86400, &s2, &err), HL_OK);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_sessions WHERE user_id = ?", "I", id), 0);

    /* Destroy. */
    assert_int_equal(hl_session_create(f->db, id, NULL, NULL, r1, &s, &err), HL_OK);
    assert_string_equal(s.ip, "");
    assert_int_equal(hl_session_destroy(f->db, r1, &err), HL_OK);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_destroy(f->db, r1, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_destroy(f->db, "garbage", &err), HL_ENOTFOUND);

    /* Several sessions: list newest first, end all but the current one. */
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.1", "A", r1, &s, &err), HL_OK);
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.2", "B", r2, &s, &err), HL_OK);
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.3", "C", r3, &s, &err), HL_OK);
    assert_int_equal(hl_session_create(f->db, other, "192.0.2.9", "Z", r3 /* reused */, NULL, &err), HL_OK);
    iso(time(NULL) - 300, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET created_at = ? WHERE user_agent = 'A' AND user_id = ?", ts, id);
    iso(time(NULL) - 200, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET created_at = ? WHERE user_agent = 'C' AND user_id = ?", ts, id);
    iso(time(NULL) - 100, ts);
    exec_sql(f->db, "UPDATE hl_sessions SET created_at = ? WHERE user_agent = 'B' AND user_id = ?", ts, id);
    assert_int_equal(hl_session_list(f->db, id, list, 8, &err), 3);
    assert_string_equal(list[0].user_agent, "B");
    assert_string_equal(list[1].user_agent, "C");
    assert_string_equal(list[2].user_agent, "A");
    assert_string_equal(list[0].ip, "192.0.2.2");
    assert_string_equal(list[0].csrf, "");
    assert_int_equal(strlen(list[0].id_hash), 64);
    assert_int_equal(hl_session_list(f->db, id, list, 2, &err), 2);
    assert_int_equal(hl_session_list(f->db, id, list, 0, &err), 0);
    assert_int_equal(hl_session_list(f->db, id, NULL, 3, &err), HL_EINVAL);
    assert_int_equal(hl_session_list(f->db, id, list, -1, &err), HL_EINVAL);

    assert_int_equal(hl_session_destroy_all(f->db, id, r1, &err), 2);
    assert_int_equal(hl_session_list(f->db, id, list, 8, &err), 1);
    assert_string_equal(list[0].user_agent, "A");
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, 86400, &s2, &err), HL_OK);
    assert_int_equal(hl_session_lookup(f->db, r2, 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_lookup(f->db, r3, 3600, 86400, &s2, &err), HL_OK); /* other's */
    assert_int_equal(s2.user_id, other);
    assert_int_equal(hl_session_destroy_all(f->db, id, NULL, &err), 1);
    assert_int_equal(hl_session_list(f->db, id, list, 8, &err), 0);
    assert_int_equal(hl_session_list(f->db, other, list, 8, &err), 1);

    /* Hostile: odd cookies, long agent, long ip, bad lifetimes, unknown user. */
    char ua[400];
    memset(ua, 'u', sizeof ua);
    ua[0] = '\x01';
    ua[5] = '\n';
    ua[sizeof ua - 1] = '\0';
    assert_int_equal(hl_session_create(f->db, id, "192.0.2.1", ua, r1, &s, &err), HL_OK);
    assert_int_equal(strlen(s.user_agent), 127);
    assert_int_equal(s.user_agent[0], '?');
    assert_int_equal(s.user_agent[5], '?');
    char longip[100];
    memset(longip, '1', sizeof longip);
    longip[sizeof longip - 1] = '\0';
    assert_int_equal(hl_session_create(f->db, id, longip, "UA", r2, &s, &err), HL_ETOOBIG);
    assert_int_equal(hl_session_create(f->db, id, "1.2.3.4\n", "UA", r2, &s, &err), HL_EINVAL);
    assert_int_equal(hl_session_create(f->db, 9999, "1.2.3.4", "UA", r2, &s, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_create(f->db, id, "1.2.3.4", "UA", NULL, &s, &err), HL_EINVAL);
    assert_int_equal(hl_session_lookup(f->db, NULL, 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_lookup(f->db, "", 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_lookup(f->db, "x'; DROP TABLE hl_sessions; --", 3600, 86400, &s2, &err),
                     HL_ENOTFOUND);
    assert_int_equal(hl_session_lookup(f->db, s.id_hash, 3600, 86400, &s2, &err), HL_ENOTFOUND);
    assert_int_equal(hl_session_lookup(f->db, r1, 0, 86400, &s2, &err), HL_EINVAL);
    assert_int_equal(hl_session_lookup(f->db, r1, 3600, -1, &s2, &err), HL_EINVAL);
    assert_int_equal(hl_session_destroy_all(f->db, id, "not-a-token", &err), 1);
}

/* ---------------------------------------------------------------- rate limits */

static void test_rate_limit(void **state)
{
    fx *f = *state;
    hl_err err = {0};

    wait_window_start(2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(hl_rate_allow(f->db, "test:a", 2, 3, &err), 1);
    assert_int_equal(hl_rate_allow(f->db, "test:a", 2, 3, &err), 0);
    assert_int_equal(hl_rate_allow(f->db, "test:a", 2, 3, &err), 0);
    assert_int_equal(hl_rate_allow(f->db, "test:b", 2, 3, &err), 1); /* keys are apart */
    assert_int_equal(q_int(f->db, "SELECT hits FROM hl_rate_limits WHERE key = ?", "s", "test:a"), 5);

    wait_window_start(2);
    assert_int_equal(hl_rate_allow(f->db, "test:a", 2, 3, &err), 1);
    assert_int_equal(q_int(f->db, "SELECT hits FROM hl_rate_limits WHERE key = ?", "s", "test:a"), 1);
    assert_int_equal(q_int(f->db, "SELECT count(*) FROM hl_rate_limits", NULL), 2);

    char key[300];
    memset(key, 'k', sizeof key);
    key[sizeof key - 1] = '\0';
    assert_int_equal(hl_rate_allow(f->db, key, 2, 3, &err), HL_EINVAL);
    assert_int_equal(hl_rate_allow(f->db, "", 2, 3, &err), HL_EINVAL);
    assert_int_equal(hl_rate_allow(f->db, NULL, 2, 3, &err), HL_EINVAL);
    assert_int_equal(hl_rate_allow(f->db, "k", 0, 3, &err), HL_EINVAL);
    assert_int_equal(hl_rate_allow(f->db, "k", 2, 0, &err), HL_EINVAL);
    assert_int_equal(hl_rate_allow(f->db, "k", -2, 3, &err), HL_EINVAL);
    assert_int_equal(hl_rate_allow(NULL, "k", 2, 3, &err), HL_EINVAL);
}

/* ---------------------------------------------------------------- authorisation */

enum { ANON, CLIENT, P1, P2, CA, CB, OPER, DELETED, NACTORS };
static const char *const actor_names[NACTORS] = {"anonymous", "client", "producer P1",
                                                 "producer P2", "coordinator A", "coordinator B",
                                                 "operator", "deleted"};

/* Returns NULL for the anonymous visitor. */
static const hl_user *actor(int a, hl_user *u)
{
    memset(u, 0, sizeof *u);
    switch (a) {
    case ANON: return NULL;
    case CLIENT: u->id = 10; u->roles = HL_ROLE_CLIENT; break;
    case P1: u->id = 20; u->roles = HL_ROLE_CLIENT | HL_ROLE_PRODUCER; break;
    case P2: u->id = 21; u->roles = HL_ROLE_PRODUCER; break;
    case CA:
        u->id = 30; u->roles = HL_ROLE_CLIENT | HL_ROLE_COORDINATOR;
        u->scopes[0] = (hl_user_scope){HL_ROLE_COORDINATOR, 100}; u->nscopes = 1;
        break;
    case CB:
        u->id = 31; u->roles = HL_ROLE_COORDINATOR;
        u->scopes[0] = (hl_user_scope){HL_ROLE_COORDINATOR, 200}; u->nscopes = 1;
        break;
    case OPER: u->id = 40; u->roles = HL_ROLE_OPERATOR; break;
    case DELETED:
        /* Every role, to show that deletion outweighs all of them. */
        u->id = 50; u->roles = HL_ROLE_CLIENT | HL_ROLE_PRODUCER | HL_ROLE_COORDINATOR |
                               HL_ROLE_OPERATOR;
        u->scopes[0] = (hl_user_scope){HL_ROLE_COORDINATOR, 100}; u->nscopes = 1; u->deleted = 1;
        break;
    }
    return u;
}

/* The "own" and "other" owner for an actor and an object kind:
 *   user-owned objects: own = the actor's id (10 for the anonymous visitor), other = 999;
 *   groups: own = the group the actor coordinates (100 if none), other = a group it does not;
 *   producer-owned objects: own = the actor's producer id, or its user id if it is not a
 *   producer (owner == user id must not make a client a producer), other = another producer. */
static int64_t owner_for(int a, int o, int own)
{
    static const int64_t uid[NACTORS] = {10, 10, 20, 21, 30, 31, 40, 50};
    switch (o) {
    case HL_OBJ_OPERATOR_PAGES:
        return 0;
    case HL_OBJ_USER_ACCOUNT:
    case HALLE_OBJ_PRODUCER_ACCOUNT:
    case HL_OBJ_USER_LOCKS:
        return own ? uid[a] : 999;
    case HALLE_OBJ_GROUP_SETTINGS:
    case HALLE_OBJ_GROUP_MEMBERS:
    case HALLE_OBJ_GROUP_ORDERS:
        if (a == CB)
            return own ? 200 : 100;
        return own ? 100 : 200;
    case HALLE_OBJ_CATALOG:
    case HALLE_OBJ_PRODUCER_ORDERS:
        if (a == P2)
            return own ? 21 : 20;
        return own ? uid[a] : (a == P1 ? 21 : 20);
    }
    return -1;
}

/* Expected decisions, written out by hand: for each actor and object kind, the actions allowed
 * on its own object and on someone else's, as V(iew) E(dit) C(reate) D(elete) or '-'. */
static const struct {
    int actor;
    int object;
    const char *own, *other;
} expected[] = {
    {ANON, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {ANON, HL_OBJ_USER_ACCOUNT, "----", "----"},
    {ANON, HALLE_OBJ_GROUP_SETTINGS, "----", "----"},
    {ANON, HALLE_OBJ_GROUP_MEMBERS, "----", "----"},
    {ANON, HALLE_OBJ_GROUP_ORDERS, "----", "----"},
    {ANON, HALLE_OBJ_PRODUCER_ACCOUNT, "----", "----"},
    {ANON, HALLE_OBJ_CATALOG, "----", "----"},
    {ANON, HALLE_OBJ_PRODUCER_ORDERS, "----", "----"},
    {ANON, HL_OBJ_USER_LOCKS, "----", "----"},

    {CLIENT, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {CLIENT, HL_OBJ_USER_ACCOUNT, "VECD", "----"},
    {CLIENT, HALLE_OBJ_GROUP_SETTINGS, "----", "----"},
    {CLIENT, HALLE_OBJ_GROUP_MEMBERS, "----", "----"},
    {CLIENT, HALLE_OBJ_GROUP_ORDERS, "----", "----"},
    {CLIENT, HALLE_OBJ_PRODUCER_ACCOUNT, "VECD", "----"},
    {CLIENT, HALLE_OBJ_CATALOG, "V---", "V---"},
    {CLIENT, HALLE_OBJ_PRODUCER_ORDERS, "----", "----"},
    {CLIENT, HL_OBJ_USER_LOCKS, "----", "----"},

    {P1, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {P1, HL_OBJ_USER_ACCOUNT, "VECD", "----"},
    {P1, HALLE_OBJ_GROUP_SETTINGS, "----", "----"},
    {P1, HALLE_OBJ_GROUP_MEMBERS, "----", "----"},
    {P1, HALLE_OBJ_GROUP_ORDERS, "----", "----"},
    {P1, HALLE_OBJ_PRODUCER_ACCOUNT, "VECD", "----"},
    {P1, HALLE_OBJ_CATALOG, "VECD", "V---"},
    {P1, HALLE_OBJ_PRODUCER_ORDERS, "VECD", "----"},
    {P1, HL_OBJ_USER_LOCKS, "----", "----"},

    {P2, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {P2, HL_OBJ_USER_ACCOUNT, "VECD", "----"},
    {P2, HALLE_OBJ_GROUP_SETTINGS, "----", "----"},
    {P2, HALLE_OBJ_GROUP_MEMBERS, "----", "----"},
    {P2, HALLE_OBJ_GROUP_ORDERS, "----", "----"},
    {P2, HALLE_OBJ_PRODUCER_ACCOUNT, "VECD", "----"},
    {P2, HALLE_OBJ_CATALOG, "VECD", "V---"},
    {P2, HALLE_OBJ_PRODUCER_ORDERS, "VECD", "----"},
    {P2, HL_OBJ_USER_LOCKS, "----", "----"},

    {CA, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {CA, HL_OBJ_USER_ACCOUNT, "VECD", "----"},
    {CA, HALLE_OBJ_GROUP_SETTINGS, "VE--", "----"},
    {CA, HALLE_OBJ_GROUP_MEMBERS, "VECD", "----"},
    {CA, HALLE_OBJ_GROUP_ORDERS, "VE--", "----"},
    {CA, HALLE_OBJ_PRODUCER_ACCOUNT, "VECD", "----"},
    {CA, HALLE_OBJ_CATALOG, "V---", "V---"},
    {CA, HALLE_OBJ_PRODUCER_ORDERS, "----", "----"},
    {CA, HL_OBJ_USER_LOCKS, "----", "----"},

    {CB, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {CB, HL_OBJ_USER_ACCOUNT, "VECD", "----"},
    {CB, HALLE_OBJ_GROUP_SETTINGS, "VE--", "----"},
    {CB, HALLE_OBJ_GROUP_MEMBERS, "VECD", "----"},
    {CB, HALLE_OBJ_GROUP_ORDERS, "VE--", "----"},
    {CB, HALLE_OBJ_PRODUCER_ACCOUNT, "VECD", "----"},
    {CB, HALLE_OBJ_CATALOG, "V---", "V---"},
    {CB, HALLE_OBJ_PRODUCER_ORDERS, "----", "----"},
    {CB, HL_OBJ_USER_LOCKS, "----", "----"},

    {OPER, HL_OBJ_OPERATOR_PAGES, "VECD", "VECD"},
    {OPER, HL_OBJ_USER_ACCOUNT, "VECD", "V---"},
    {OPER, HALLE_OBJ_GROUP_SETTINGS, "VE--", "VE--"},
    {OPER, HALLE_OBJ_GROUP_MEMBERS, "VE--", "VE--"},
    {OPER, HALLE_OBJ_GROUP_ORDERS, "VE--", "VE--"},
    {OPER, HALLE_OBJ_PRODUCER_ACCOUNT, "VECD", "----"},
    {OPER, HALLE_OBJ_CATALOG, "V---", "V---"},
    {OPER, HALLE_OBJ_PRODUCER_ORDERS, "V---", "V---"},
    {OPER, HL_OBJ_USER_LOCKS, "-E--", "-E--"},

    {DELETED, HL_OBJ_OPERATOR_PAGES, "----", "----"},
    {DELETED, HL_OBJ_USER_ACCOUNT, "----", "----"},
    {DELETED, HALLE_OBJ_GROUP_SETTINGS, "----", "----"},
    {DELETED, HALLE_OBJ_GROUP_MEMBERS, "----", "----"},
    {DELETED, HALLE_OBJ_GROUP_ORDERS, "----", "----"},
    {DELETED, HALLE_OBJ_PRODUCER_ACCOUNT, "----", "----"},
    {DELETED, HALLE_OBJ_CATALOG, "----", "----"},
    {DELETED, HALLE_OBJ_PRODUCER_ORDERS, "----", "----"},
    {DELETED, HL_OBJ_USER_LOCKS, "----", "----"},
};

static void test_auth_matrix(void **state)
{
    (void)state;
    register_market();
    static const hl_action actions[4] = {HL_ACT_VIEW, HL_ACT_EDIT, HL_ACT_CREATE, HL_ACT_DELETE};
    static const char letters[4] = {'V', 'E', 'C', 'D'};
    int seen[NACTORS][HL_OBJ_USER_LOCKS + 1] = {{0}};
    int checks = 0, wrong = 0;
    hl_user u;

    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        int a = expected[i].actor;
        int o = expected[i].object;
        seen[a][o]++;
        for (int own = 1; own >= 0; own--) {
            const char *want = own ? expected[i].own : expected[i].other;
            int64_t owner = owner_for(a, o, own);
            assert_int_equal(strlen(want), 4);
            for (int k = 0; k < 4; k++) {
                assert_true(want[k] == letters[k] || want[k] == '-');
                int exp = want[k] == letters[k];
                int got = hl_auth_can(actor(a, &u), actions[k], o, owner);
                checks++;
                if (got != exp) {
                    wrong++;
                    fprintf(stderr, "%s, object %d, %s (owner %lld), action %c: got %d want %d\n",
                            actor_names[a], (int)o, own ? "own" : "other", (long long)owner,
                            letters[k], got, exp);
                }
            }
        }
    }
    assert_int_equal(wrong, 0);
    /* Every actor x object kind x action x owner exactly once. */
    assert_int_equal(checks, NACTORS * 9 * 4 * 2);
    for (int a = 0; a < NACTORS; a++)
        for (int o = HL_OBJ_OPERATOR_PAGES; o <= HL_OBJ_USER_LOCKS; o++)
            assert_int_equal(seen[a][o], 1);
}

static void test_auth_edges(void **state)
{
    (void)state;
    register_market();
    hl_user u;

    /* Out-of-range actions and objects are refused, even to operators. */
    actor(OPER, &u);
    assert_true(hl_auth_can(&u, HL_ACT_VIEW, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, (hl_action)0, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, (hl_action)5, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, (hl_action)-1, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, (hl_action)31, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, (hl_action)1000, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, (int)0, 0));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, (int)10, 0));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, (int)-3, 0));

    /* A user record without an id (never loaded) is nobody. */
    u.id = 0;
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HL_OBJ_OPERATOR_PAGES, 0));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HL_OBJ_USER_ACCOUNT, 0));

    /* Groups without the coordinator role, or the role without the group, give nothing. */
    actor(CLIENT, &u);
    u.scopes[0] = (hl_user_scope){HL_ROLE_COORDINATOR, 100};
    u.nscopes = 1;
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HALLE_OBJ_GROUP_SETTINGS, 100));
    actor(CA, &u);
    u.nscopes = 0;
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HALLE_OBJ_GROUP_SETTINGS, 100));
    /* A coordinator of several groups. */
    actor(CA, &u);
    u.scopes[1] = (hl_user_scope){HL_ROLE_COORDINATOR, 300};
    u.nscopes = 2;
    assert_true(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_GROUP_ORDERS, 300));
    assert_true(hl_auth_can(&u, HL_ACT_DELETE, HALLE_OBJ_GROUP_MEMBERS, 100));
    assert_false(hl_auth_can(&u, HL_ACT_CREATE, HALLE_OBJ_GROUP_SETTINGS, 300));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_GROUP_ORDERS, 0));
    /* nscopes past the array is not trusted. */
    u.nscopes = 100000;
    assert_true(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_GROUP_ORDERS, 300));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_GROUP_ORDERS, 555));

    /* A producer owns only what carries its own id; a client with that id is no producer. */
    actor(P1, &u);
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_CATALOG, 0));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_CATALOG, 21));
    actor(CLIENT, &u);
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_CATALOG, 10));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HALLE_OBJ_PRODUCER_ORDERS, 10));

    /* An operator may unlock any account, but not view or delete the lock itself. */
    actor(OPER, &u);
    assert_true(hl_auth_can(&u, HL_ACT_EDIT, HL_OBJ_USER_LOCKS, 12345));
    assert_false(hl_auth_can(&u, HL_ACT_DELETE, HL_OBJ_USER_ACCOUNT, 12345));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, HALLE_OBJ_CATALOG, 20));
    assert_false(hl_auth_can(&u, HL_ACT_CREATE, HALLE_OBJ_PRODUCER_ACCOUNT, 20));
}

/* Who owns object 7? User 20 only: ownership the plugin knows, told through the callback. */
static int owns_seven(halle_host *h, int64_t user_id, int64_t object, void *ud)
{
    (void)h;
    ++*(int *)ud;
    return object == 7 && user_id == 20;
}

/* A plugin's capability is honoured by can(): its rules, its ownership callback, its name;
 * what nobody registered is refused. */
static void test_capabilities(void **state)
{
    (void)state;
    hl_err err = {0};
    hl_user u;
    int calls = 0;
    hl_caps_forget(NULL);
    /* The market is not loaded: its old object numbers and names answer no. */
    actor(OPER, &u);
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, HALLE_OBJ_GROUP_SETTINGS, 100));
    assert_false(hl_auth_can_name(&u, HL_ACT_VIEW, "market.group_settings", 100));
    assert_true(hl_auth_can_name(&u, HL_ACT_VIEW, "operator_pages", 0));

    const halle_cap_rule rules[] = {
        {HL_ROLE_PRODUCER, HALLE_SCOPE_OWNER, HALLE_CAN_ALL},
        {HL_ROLE_COORDINATOR, HALLE_SCOPE_GROUP, HALLE_CAN(HL_ACT_VIEW)},
        {HL_ROLE_OPERATOR, HALLE_SCOPE_ANY, HALLE_CAN(HL_ACT_DELETE)},
    };
    int id = hl_caps_register("shop.box", rules, 3, owns_seven, NULL, &calls, &err);
    assert_true(id >= HALLE_CAP_FIRST);
    assert_int_equal(hl_caps_find("shop.box"), id);

    actor(P1, &u);   /* user 20: owns box 7 by the callback's word, not box 20 */
    assert_true(hl_auth_can(&u, HL_ACT_EDIT, id, 7));
    assert_true(hl_auth_can_name(&u, HL_ACT_CREATE, "shop.box", 7));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, id, 20));
    assert_true(calls > 0);
    actor(P2, &u);
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, id, 7));
    actor(CA, &u);   /* coordinator of group 100 */
    assert_true(hl_auth_can(&u, HL_ACT_VIEW, id, 100));
    assert_false(hl_auth_can(&u, HL_ACT_EDIT, id, 100));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, id, 200));
    actor(OPER, &u);
    assert_true(hl_auth_can(&u, HL_ACT_DELETE, id, 1));
    assert_false(hl_auth_can(&u, HL_ACT_VIEW, id, 1));
    assert_false(hl_auth_can(actor(ANON, &u), HL_ACT_VIEW, id, 7));
    assert_false(hl_auth_can_name(actor(OPER, &u), HL_ACT_DELETE, "shop.other", 1));
    assert_false(hl_auth_can_name(&u, HL_ACT_DELETE, NULL, 1));

    /* Registering again replaces the rules; other hosts cannot take the name. */
    const halle_cap_rule view_all = {0, HALLE_SCOPE_ANY, HALLE_CAN(HL_ACT_VIEW)};
    assert_int_equal(hl_caps_register("shop.box", &view_all, 1, NULL, NULL, NULL, &err), id);
    assert_true(hl_auth_can(actor(CLIENT, &u), HL_ACT_VIEW, id, 0));
    assert_false(hl_auth_can(actor(OPER, &u), HL_ACT_DELETE, id, 1));
    assert_int_equal(hl_caps_register("shop.box", &view_all, 1, NULL, (halle_host *)&calls, NULL, &err), HL_EINVAL);

    /* Bad names and rules are refused with a message. */
    const halle_cap_rule bad_role = {3, HALLE_SCOPE_ANY, HALLE_CAN(HL_ACT_VIEW)};
    const halle_cap_rule bad_scope = {0, 7, HALLE_CAN(HL_ACT_VIEW)};
    const halle_cap_rule bad_action = {0, HALLE_SCOPE_ANY, 1u << 9};
    assert_int_equal(hl_caps_register("nodot", &view_all, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register("Shop.Box", &view_all, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register(".box", &view_all, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register(NULL, &view_all, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register("shop.a", &bad_role, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register("shop.a", &bad_scope, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register("shop.a", &bad_action, 1, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_register("shop.a", NULL, 2, NULL, NULL, NULL, &err), HL_EINVAL);
    assert_int_equal(hl_caps_find("shop.a"), 0);
    hl_caps_forget(NULL);
    assert_int_equal(hl_caps_find("shop.box"), 0);
    assert_false(hl_auth_can(actor(CLIENT, &u), HL_ACT_VIEW, id, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_password_policy),
        cmocka_unit_test(test_password_hash_verify),
        cmocka_unit_test(test_email_normalize),
        cmocka_unit_test_setup_teardown(test_user_create, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_seeded_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_profile_email_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_rehash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockout_temporary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lockout_hard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_unverified, setup, teardown),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test_setup_teardown(test_login_unknown_same_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test(test_auth_matrix),
        cmocka_unit_test(test_auth_edges),
        cmocka_unit_test(test_capabilities),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("accounts", tests, NULL, NULL);
}
