/* Unit tests for halle.conf parsing: defaults, every kind of key, and error messages that name
 * the file, the line and the problem. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/halle-test-config-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_conf(const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/halle.conf", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_defaults(void **state)
{
    (void)state;
    hl_err err;
    hl_config *c = hl_config_load(write_conf("# nothing\n\n"), &err);
    assert_non_null(c);
    assert_string_equal(c->listen_host, "127.0.0.1");
    assert_int_equal(c->listen_port, 8080);
    assert_int_equal(c->max_body_size, 16 * 1024 * 1024);
    char expect[600];
    char real[512];
    assert_non_null(realpath(tmpdir, real));
    snprintf(expect, sizeof expect, "%s/data/halle.db", real);
    assert_string_equal(c->db_path, expect);
    hl_config_free(c);
}

static void test_values(void **state)
{
    (void)state;
    hl_err err;
    hl_config *c = hl_config_load(write_conf("name = \"Les Paniers de Lise\"\nlisten = [::1]:9090\n"
                                             "workers=3\nmax_body_size = 2M\nmax_upload_size = 64k\n"
                                             "access_log = off\ndata_dir = /var/lib/x\nlog_level = debug\n"),
                                  &err);
    assert_non_null(c);
    assert_string_equal(c->name, "Les Paniers de Lise");
    assert_string_equal(c->listen_host, "::1");
    assert_int_equal(c->listen_port, 9090);
    assert_int_equal(c->workers, 3);
    assert_int_equal(c->max_body_size, 2 * 1024 * 1024);
    assert_int_equal(c->max_upload_size, 64 * 1024);
    assert_int_equal(c->access_log, 0);
    assert_string_equal(c->db_path, "/var/lib/x/halle.db");
    assert_string_equal(c->archive_path, "/var/lib/x/archive.db");
    hl_config_free(c);
}

static void expect_error(const char *text, const char *needle)
{
    hl_err err;
    hl_err_clear(&err);
    hl_config *c = hl_config_load(write_conf(text), &err);
    assert_null(c);
    if (!strstr(err.msg, needle))
        fail_msg("message '%s' does not contain '%s'", err.msg, needle);
    assert_non_null(strstr(err.msg, "halle.conf:"));
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("name = x\nbogus = 1\n", "halle.conf:2: unknown key 'bogus'");
    expect_error("\n\nworkers = lots\n", ":3: workers: expected a whole number");
    expect_error("workers = 100000\n", "from 0 to 256");
    expect_error("listen = 127.0.0.1\n", "expected HOST:PORT");
    expect_error("listen = 127.0.0.1:99999\n", "bad port");
    expect_error("max_body_size = 12Q\n", "max_body_size: expected a size");
    expect_error("access_log = perhaps\n", "expected on or off");
    expect_error("log_level = loud\n", "not one of");
    expect_error("just words\n", "expected 'key = value'");
}

static void test_missing_file(void **state)
{
    (void)state;
    hl_err err;
    assert_null(hl_config_load("/nonexistent/halle.conf", &err));
    assert_non_null(strstr(err.msg, "/nonexistent/halle.conf"));
}

static void test_write_default_roundtrip(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/new.conf", tmpdir);
    hl_err err;
    assert_int_equal(hl_config_write_default(path, "Marché test", NULL, NULL, &err), HL_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    hl_config *c = hl_config_load(path, &err);
    assert_non_null(c);
    assert_string_equal(c->name, "Marché test");
    hl_config_free(c);
    assert_int_not_equal(hl_config_write_default(path, "again", NULL, NULL, &err), HL_OK);
    unlink(path);
}

/* The archive's default database on PostgreSQL (also what halle migrate-data copies into). */
static void test_archive_url(void **state)
{
    (void)state;
    char *u = NULL;
    assert_int_equal(hl_config_archive_url("postgresql://h/halle", &u), HL_OK);
    assert_string_equal(u, "postgresql://h/halle_archive");
    free(u);
    assert_int_equal(hl_config_archive_url("postgres://me:pw@h:5433/shop?sslmode=disable", &u), HL_OK);
    assert_string_equal(u, "postgres://me:pw@h:5433/shop_archive?sslmode=disable");
    free(u);
    assert_int_equal(hl_config_archive_url("postgresql://h/", &u), HL_EINVAL);
    assert_null(u);
    assert_int_equal(hl_config_archive_url("postgresql://h", &u), HL_EINVAL);
    assert_int_equal(hl_config_archive_url("/var/lib/halle/halle.db", &u), HL_EINVAL);
    assert_null(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_values), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_missing_file), cmocka_unit_test(test_write_default_roundtrip),
        cmocka_unit_test(test_archive_url),
    };
    return cmocka_run_group_tests_name("config", tests, setup, teardown);
}
