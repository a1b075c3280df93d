/* The halle command: init, serve, migrate, migrate-data... Exit codes: 0 success, 1 failure (message on
 * stderr), 2 usage error. This is the only file that may call exit(). */
#include "halle-config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/migrate.h"
#include "core/migrate_data.h"
#include "core/serve.h"
#include "core/worker.h"
#include "core/services.h"
#include "core/clock.h"
#include "core/instance.h"
#include "core/jobsproc.h"
#include "core/mail.h"
#include "core/log.h"
#include "core/plugin.h"
#include "core/accounts.h"
#include "core/host.h"
#include "core/webauth.h"
#include "core/sqlcli.h"

#include <termios.h>
#include <unistd.h>

/* `halle PLUGIN COMMAND ...`: the plugins loaded on a worker's services, without serving. */
static int run_plugin_command(const hl_config *cfg, int argc, char **argv)
{
    hl_err err;
    hl_err_clear(&err);
    hl_worker *w = hl_worker_cli_new(cfg, &err);
    if (!w) {
        fprintf(stderr, "halle: %s\n", err.msg);
        return 1;
    }
    int rc = hl_host_run_command(w, argc, argv);
    hl_worker_cli_free(w);
    return rc;
}

static const char *usage_main =
    "usage: halle [--version] [--help] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  init DIR [--demo] [--name NAME] [--database URI]\n"
    "                                    create an instance folder\n"
    "  serve [-c FILE] [--listen ADDR:PORT] [--workers N]\n"
    "                                    serve the instance\n"
    "  migrate [-c FILE]                 apply pending database migrations\n"
    "  migrate-data [-c FILE] --to URI [--archive-to URI] [--force]\n"
    "                                    copy the instance from SQLite to PostgreSQL\n"
    "  plugin list|info|enable|disable|set [-c FILE] ...\n"
    "                                    manage plugins\n"
    "  user add|unlock [-c FILE] ...     manage accounts (first operator, unlocking)\n"
    "  jobs list|run|tick [-c FILE] ...  scheduled and queued jobs\n"
    "  mail list|retry [-c FILE] ...     the outgoing mail queue and its dead letters\n"
    "  hooks list|register [-c FILE]     the hooks declared, or what plugins declare on them\n"
    "  sql [-c FILE] [--archive] [--json] SQL [PARAM...]\n"
    "                                    run one SQL statement on the instance database\n"
    "  help COMMAND                      describe a command\n"
    "\n"
    "Run 'halle COMMAND --help' for a command's options.\n";

static const char *usage_hooks =
    "usage: halle hooks [-c FILE] COMMAND\n"
    "\n"
    "Loads the enabled plugins as a worker would (without serving), then:\n"
    "  list       every declared hook (the core's and the plugins'): NAME KIND CALLBACKS\n"
    "  register   runs privacy.register and cookies.declare and prints what the plugins\n"
    "             declare (JSON: the register of processing activities, and the cookies)\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n";

static const char *usage_init =
    "usage: halle init DIR [--demo] [--name NAME] [--operator EMAIL]\n"
    "                      [--database URI [--archive-database URI]]\n"
    "\n"
    "Creates DIR with halle.conf, data/halle.db and data/archive.db (both mode 0600) and logs/,\n"
    "and applies the database migrations. An existing instance is never overwritten.\n"
    "\n"
    "  --database URI  keep the data in PostgreSQL instead: postgresql://USER@HOST:PORT/NAME\n"
    "                (the database must exist; see docs/scaling.md)\n"
    "  --archive-database URI  the archive's database (default: NAME_archive on that server)\n"
    "  --demo        a demonstration instance\n"
    "  --name NAME   the site name shown on pages\n"
    "  --operator EMAIL  create the first operator account (password asked, or read from\n"
    "                the first line of standard input, or from $HALLE_OPERATOR_PASSWORD)\n";

static const char *usage_user =
    "usage: halle user [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "  add EMAIL --name NAME [--operator] [--producer]\n"
    "                      create an account, already verified; the password is asked, or read\n"
    "                      from the first line of standard input, or from $HALLE_USER_PASSWORD\n"
    "  unlock EMAIL        lift the locks after failed logins (3 or 10)\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n";

static const char *usage_serve =
    "usage: halle serve [-c FILE] [--listen ADDR:PORT] [--workers N]\n"
    "\n"
    "Serves the instance described by FILE (default: ./halle.conf). Options override the file.\n"
    "SIGTERM or Ctrl-C stops after in-flight requests; SIGHUP restarts the workers one by one.\n"
    "\n"
    "  -c, --config FILE        configuration file\n"
    "  -l, --listen ADDR:PORT   address to listen on, e.g. 127.0.0.1:8080 or [::1]:8080\n"
    "  -w, --workers N          worker processes (0 = one per CPU)\n";

static const char *usage_migrate =
    "usage: halle migrate [-c FILE]\n"
    "\n"
    "Applies pending migrations to the instance databases (serve does this at start too).\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n";

static const char *usage_migrate_data =
    "usage: halle migrate-data [-c FILE] --to URI [--archive-to URI] [--force]\n"
    "\n"
    "Copies the instance's SQLite databases into PostgreSQL: its schema is made by the same\n"
    "migrations (the core's, the archive's and those of the plugins whose tables it holds), then\n"
    "every table is copied, parents before children, in one transaction per database, and checked\n"
    "table by table (row counts, and the sums of money columns: *_cents, and integer amount, price,\n"
    "total). Any difference rolls the copy back and fails, naming the tables. The instance must not\n"
    "be served meanwhile (refused while halle serve runs; serve waits). The SQLite files are not\n"
    "changed. At the end it prints the two lines to put in halle.conf to serve from PostgreSQL.\n"
    "\n"
    "  -c, --config FILE    configuration file (default: ./halle.conf)\n"
    "  --to URI             the target database, e.g. postgresql://halle@127.0.0.1:5432/halle; it must\n"
    "                       exist and be empty (a SQLite file path works too)\n"
    "  --archive-to URI     the archive's target (default: the URI's database name + \"_archive\")\n"
    "  --force              empty a target that holds rows instead of refusing it\n";

static const char *usage_plugin =
    "usage: halle plugin [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "  list                      plugins found, with kind, version and state\n"
    "  info NAME                 description, requirements, permissions, settings\n"
    "  enable NAME               check it, run its migrations, enable it\n"
    "  disable NAME              disable it (its data is kept)\n"
    "  set NAME KEY VALUE        change a setting (checked against the plugin's schema)\n"
    "\n"
    "Running servers pick up changes by themselves within about 2 seconds (or at once on SIGHUP).\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n";

static const char *usage_jobs =
    "usage: halle jobs [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "  list          every job: schedule, next run, last run and its outcome, runs and\n"
    "                failures, a run in progress (lease); then queued runs not done\n"
    "                (pending, running, or dead after 5 failed attempts)\n"
    "  run NAME      run the recurring job NAME now, whatever its schedule (refused while\n"
    "                it runs elsewhere)\n"
    "  tick          run once everything that is due, as the jobs process does every second\n"
    "\n"
    "Times are UTC. HALLE_NOW (epoch seconds or YYYY-MM-DDTHH:MM:SSZ) fixes the clock (tests).\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n";

static const char *usage_mail =
    "usage: halle mail [-c FILE] COMMAND [ARGS]\n"
    "\n"
    "  list [--all]  messages not sent yet: queued (with the next try) and dead (given up\n"
    "                after 5 failed attempts, with the last error); --all adds sent ones\n"
    "  retry ID      put a dead message back in the queue, due now\n"
    "\n"
    "  -c, --config FILE   configuration file (default: ./halle.conf)\n";

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
    if (fmt) {
        fprintf(stderr, "halle: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, "\n\n");
    }
    fputs(usage, stderr);
    return 2;
}

static int fail(const hl_err *err)
{
    fprintf(stderr, "halle: %s\n", err->msg[0] ? err->msg : "failed");
    return 1;
}

/* A password from the environment variable, else the terminal (not echoed), else the first
 * line of standard input. */
static int read_password(const char *env, char *buf, size_t len)
{
    const char *e = getenv(env);
    if (e && *e) {
        snprintf(buf, len, "%s", e);
        return 0;
    }
    int tty = isatty(STDIN_FILENO);
    struct termios old, quiet;
    if (tty) {
        fprintf(stderr, "password: ");
        tcgetattr(STDIN_FILENO, &old);
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    char *got = fgets(buf, (int)len, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &old);
        fprintf(stderr, "\n");
    }
    if (!got)
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

static int create_user(const hl_config *cfg, const char *email, const char *name, unsigned roles,
                       const char *pw_env, hl_err *err)
{
    char pw[1100];
    if (read_password(pw_env, pw, sizeof pw) != 0)
        return hl_err_set(err, HL_EINVAL, "no password given");
    int rc = hl_password_policy(pw, err);
    hl_db *db = rc ? NULL : hl_db_open(cfg->db_path, 0, err);
    if (db) {
        hl_password_params pp;
        hl_webauth_password_params(cfg, &pp);
        hl_user_new u = {.email = email, .name = name, .password = pw, .terms_version = cfg->terms_version,
                         .age_certified = 1, .verified = 1, .roles = roles};
        int64_t id = hl_user_create(db, &u, &pp, err);
        rc = id > 0 ? HL_OK : (int)id;
        hl_db_close(db);
    } else if (!rc) {
        rc = err->code ? err->code : HL_ERR;
    }
    memset(pw, 0, sizeof pw);
    return rc;
}

static int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"demo", no_argument, NULL, 'd'}, {"name", required_argument, NULL, 'n'},
        {"operator", required_argument, NULL, 'o'}, {"database", required_argument, NULL, 'D'},
        {"archive-database", required_argument, NULL, 'A'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    hl_instance_opts o = {0};
    const char *operator_email = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "dn:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'd': o.demo = 1; break;
        case 'n': o.name = optarg; break;
        case 'o': operator_email = optarg; break;
        case 'D': o.database = optarg; break;
        case 'A': o.archive_database = optarg; break;
        case 'h': fputs(usage_init, stdout); return 0;
        default: return usage_error(usage_init, NULL, NULL);
        }
    }
    if ((o.database && !hl_db_is_url(o.database)) || (o.archive_database && !o.database) ||
        (o.archive_database && !hl_db_is_url(o.archive_database)))
        return usage_error(usage_init, "--database takes a postgresql:// URI (and --archive-database needs it)",
                           NULL);
    if (optind != argc - 1)
        return usage_error(usage_init, optind >= argc ? "init needs a folder" : "unexpected argument '%s'",
                           optind >= argc ? NULL : argv[optind + 1]);
    hl_err err;
    hl_err_clear(&err);
    if (hl_instance_init(argv[optind], &o, &err) != HL_OK)
        return fail(&err);
    printf("halle: instance created in %s\n  configuration: %s/halle.conf\n  start it with: halle serve -c %s/halle.conf\n",
           argv[optind], argv[optind], argv[optind]);
    if (o.demo) {
        /* A demo worth looking at: the marketplace with its demo groups, producers, products. */
        char conf[4096];
        snprintf(conf, sizeof conf, "%s/halle.conf", argv[optind]);
        hl_config *cfg = hl_config_load(conf, &err);
        hl_db *db = cfg ? hl_db_open(cfg->db_path, 0, &err) : NULL;
        int rc = db ? hl_plugin_enable(cfg, db, "market", &err) : HL_ERR;
        hl_db_close(db);
        if (rc == HL_OK) {
            char *cargv[] = {"market", "seed-demo", NULL};
            rc = run_plugin_command(cfg, 2, cargv) == 0 ? HL_OK : HL_ERR;
            if (rc != HL_OK)
                hl_err_set(&err, HL_ERR, "the demo data could not be created (see above)");
        }
        hl_config_free(cfg);
        if (rc != HL_OK)
            fprintf(stderr, "halle: demo: %s; the instance works without the demo data\n", err.msg);
        else
            printf("halle: demo data created (marketplace enabled)\n");
    }
    if (operator_email) {
        char conf[4096];
        snprintf(conf, sizeof conf, "%s/halle.conf", argv[optind]);
        hl_config *cfg = hl_config_load(conf, &err);
        int rc = cfg ? create_user(cfg, operator_email, "Opérateur", HL_ROLE_OPERATOR, "HALLE_OPERATOR_PASSWORD", &err)
                     : HL_ERR;
        hl_config_free(cfg);
        if (rc != HL_OK)
            return fail(&err);
        printf("halle: operator %s created\n", operator_email);
    }
    return 0;
}

static hl_config *load_config(const char *path, hl_err *err)
{
    return hl_config_load(path ? path : "halle.conf", err);
}

/* The instance of a command: its configuration (path may be NULL: the default), migrated, and
 * its main database open. NULL with err set (and nothing left open) when one step fails. */
static hl_db *open_instance(const char *path, hl_config **cfg, hl_err *err)
{
    *cfg = load_config(path, err);
    if (!*cfg)
        return NULL;
    hl_db *db = hl_migrate_ready(*cfg, err) ? NULL : hl_db_open((*cfg)->db_path, 0, err);
    if (!db) {
        hl_config_free(*cfg);
        *cfg = NULL;
    }
    return db;
}

static int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
        {"workers", required_argument, NULL, 'w'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = NULL, *listen = NULL, *workers = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:l:w:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'l': listen = optarg; break;
        case 'w': workers = optarg; break;
        case 'h': fputs(usage_serve, stdout); return 0;
        default: return usage_error(usage_serve, NULL, NULL);
        }
    }
    if (optind != argc)
        return usage_error(usage_serve, "unexpected argument '%s'", argv[optind]);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = load_config(path, &err);
    if (!cfg)
        return fail(&err);
    if ((listen && hl_config_set_listen(cfg, listen, &err) != HL_OK) ||
        (workers && hl_config_set(cfg, "workers", workers, &err) != HL_OK)) {
        hl_config_free(cfg);
        fprintf(stderr, "halle: command line: %s\n", err.msg);
        return 2;
    }
    if (hl_log_open(cfg->log_file, cfg->log_level, &err) != HL_OK) {
        hl_config_free(cfg);
        return fail(&err);
    }
    int rc = hl_serve(cfg, hl_jobsproc_main, &err);
    hl_log_close();
    hl_config_free(cfg);
    return rc == HL_OK ? 0 : fail(&err);
}

static int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'h': fputs(usage_migrate, stdout); return 0;
        default: return usage_error(usage_migrate, NULL, NULL);
        }
    }
    if (optind != argc)
        return usage_error(usage_migrate, "unexpected argument '%s'", argv[optind]);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = load_config(path, &err);
    if (!cfg)
        return fail(&err);
    int a = 0, b = 0;
    int rc = hl_migrate_instance(cfg, &a, &b, &err);
    if (rc == HL_OK) {
        printf("halle: %d migration(s) applied to %s, %d to %s\n", a, cfg->db_path, b, cfg->archive_path);
        /* the plugins' own are applied too: say where every component stands */
        hl_db *db = hl_db_open(cfg->db_path, 0, NULL);
        hl_stmt *st = db ? hl_db_query(db, NULL,
                                       "SELECT component, MAX(version) FROM hl_migrations "
                                       "GROUP BY component ORDER BY component", "")
                         : NULL;
        if (st) {
            fputs("halle: schema versions:", stdout);
            while (hl_db_step(st, NULL) == HL_DB_ROW)
                printf(" %s %lld", hl_db_col_text(st, 0) ? hl_db_col_text(st, 0) : "?",
                       (long long)hl_db_col_int64(st, 1));
            putchar('\n');
        }
        hl_db_done(st);
        hl_db_close(db);
    }
    hl_config_free(cfg);
    return rc == HL_OK ? 0 : fail(&err);
}

static int cmd_migrate_data(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"to", required_argument, NULL, 't'},
        {"archive-to", required_argument, NULL, 'a'}, {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = NULL;
    hl_migrate_data_opts o = {0};
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 't': o.to = optarg; break;
        case 'a': o.archive_to = optarg; break;
        case 'f': o.force = 1; break;
        case 'h': fputs(usage_migrate_data, stdout); return 0;
        default: return usage_error(usage_migrate_data, NULL, NULL);
        }
    }
    if (optind != argc)
        return usage_error(usage_migrate_data, "unexpected argument '%s'", argv[optind]);
    if (!o.to || !*o.to)
        return usage_error(usage_migrate_data, "migrate-data needs --to URI", NULL);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = load_config(path, &err);
    if (!cfg)
        return fail(&err);
    /* Copying a live database would miss what is written during the copy: the instance lock
     * refuses the copy while halle serve runs, and keeps it from starting meanwhile. */
    int lock = hl_instance_lock(cfg, "migrate-data", &err);
    int rc = lock < 0 ? lock : hl_migrate_data(cfg, &o, &err);
    if (lock >= 0)
        close(lock);
    hl_config_free(cfg);
    return rc == HL_OK ? 0 : fail(&err);
}

static void print_list(const char *label, json_t *list)
{
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) printf("%s%s", i ? ", " : label, json_string_value(t));
    if (json_array_size(list))
        printf("\n");
}

/* A Lua plugin's tables, from the same policy the authorizer enforces. */
static void print_permissions(const hl_plugin_list *all, const hl_plugin_info *p)
{
    json_t *perm = hl_plugin_permissions(all, p);
    if (!perm) {
        printf("  permissions: cannot be computed (out of memory)\n");
        return;
    }
    printf("  writes: its own tables only (%s)\n", json_string_value(json_object_get(perm, "writes")));
    printf("  reads: its own tables");
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(perm, "reads"), i, t) printf(", %s", json_string_value(t));
    printf("\n");
    print_list("  never sees: ", json_object_get(perm, "never_sees"));
    print_list("  asked for but never granted: ", json_object_get(perm, "refused"));
    json_decref(perm);
}

static void print_info(const hl_plugin_list *all, const hl_plugin_info *p, hl_db *db)
{
    printf("%s %s (%s plugin)%s\n", p->name, p->version ? p->version : "?", p->kind == HL_PLUGIN_C ? "C" : "Lua",
           p->enabled ? ", enabled" : "");
    if (p->description && *p->description)
        printf("  %s\n", p->description);
    printf("  path: %s\n", p->path);
    if (p->requires && *p->requires)
        printf("  requires: %s\n", p->requires);
    if (p->error)
        printf("  REFUSED: %s\n", p->error);
    if (p->kind == HL_PLUGIN_C) {
        printf("  permissions: native code, trusted with the whole instance\n");
    } else {
        print_permissions(all, p);
    }
    json_t *schema = json_object_get(p->manifest, "settings");
    if (json_object_size(schema)) {
        json_t *values = hl_plugin_settings(db, p);
        printf("  settings:\n");
        const char *key;
        json_t *s;
        json_object_foreach(schema, key, s) {
            char *v = json_dumps(json_object_get(values, key), JSON_ENCODE_ANY);
            printf("    %s = %s  (%s) %s\n", key, v ? v : "unset", json_string_value(json_object_get(s, "type")),
                   json_string_value(json_object_get(s, "label")) ? json_string_value(json_object_get(s, "label")) : "");
            free(v);
        }
        json_decref(values);
    }
}

static int cmd_plugin(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'h': fputs(usage_plugin, stdout); return 0;
        default: return usage_error(usage_plugin, NULL, NULL);
        }
    }
    if (optind >= argc)
        return usage_error(usage_plugin, "plugin needs a command", NULL);
    const char *sub = argv[optind++];
    int nargs = argc - optind;
    int want = !strcmp(sub, "list") ? 0 : !strcmp(sub, "set") ? 3
             : (!strcmp(sub, "info") || !strcmp(sub, "enable") || !strcmp(sub, "disable")) ? 1 : -1;
    if (want < 0)
        return usage_error(usage_plugin, "unknown plugin command '%s'", sub);
    if (nargs != want)
        return usage_error(usage_plugin, "wrong number of arguments for 'plugin %s'", sub);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = NULL;
    hl_db *db = open_instance(path, &cfg, &err);
    if (!db)
        return fail(&err);
    int rc = HL_OK;
    const char *name = nargs ? argv[optind] : NULL;
    if (!strcmp(sub, "enable")) {
        rc = hl_plugin_enable(cfg, db, name, &err);
        if (!rc)
            printf("halle: plugin %s enabled (running servers load it within about 2 seconds)\n", name);
    } else if (!strcmp(sub, "disable")) {
        rc = hl_plugin_disable(cfg, db, name, &err);
        if (!rc)
            printf("halle: plugin %s disabled; its data is kept\n", name);
    } else {
        hl_plugin_list l;
        rc = hl_plugin_discover(cfg, db, &l, &err);
        if (!rc && !strcmp(sub, "list")) {
            if (!l.count)
                printf("no plugins found (see plugin_dirs in docs/operators.md)\n");
            json_t *susp = hl_plugin_suspensions(db);
            for (size_t i = 0; i < l.count; i++) {
                const hl_plugin_info *p = &l.items[i];
                json_t *s = p->enabled && !p->error ? json_object_get(susp, p->name) : NULL;
                printf("%-20s %-4s %-10s %-9s %s\n", p->name, p->kind == HL_PLUGIN_C ? "C" : "Lua",
                       p->version ? p->version : "?",
                       p->error ? "REFUSED" : s ? "SUSPENDED" : p->enabled ? "enabled" : "disabled",
                       p->error ? p->error : (p->description ? p->description : ""));
                size_t j;
                json_t *e;
                json_array_foreach(s, j, e) {
                    json_int_t wk = json_integer_value(json_object_get(e, "worker"));
                    char who[32];
                    if (wk < 0)
                        snprintf(who, sizeof who, "the jobs process");
                    else
                        snprintf(who, sizeof who, "worker %lld", (long long)wk);
                    printf("%-20s   suspended in %s since %s: %s (a restart, kill -HUP, resumes it)\n", "", who,
                           json_string_value(json_object_get(e, "since")), json_string_value(json_object_get(e, "reason")));
                }
            }
            json_decref(susp);
        } else if (!rc) {
            const hl_plugin_info *p = hl_plugin_find(&l, name);
            if (!p)
                rc = hl_err_set(&err, HL_ENOTFOUND, "no plugin named '%s' (see 'halle plugin list')", name);
            else if (!strcmp(sub, "info"))
                print_info(&l, p, db);
            else if (!(rc = hl_plugin_set_setting(db, p, argv[optind + 1], argv[optind + 2], &err)))
                printf("halle: %s.%s = %s\n", name, argv[optind + 1], argv[optind + 2]);
        }
        hl_plugin_list_free(&l);
    }
    hl_db_close(db);
    hl_config_free(cfg);
    return rc ? fail(&err) : 0;
}

static int cmd_user(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"name", required_argument, NULL, 'n'},
        {"operator", no_argument, NULL, 'o'}, {"producer", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    const char *path = NULL, *name = NULL;
    unsigned roles = HL_ROLE_CLIENT;
    int c;
    while ((c = getopt_long(argc, argv, "c:n:oph", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'n': name = optarg; break;
        case 'o': roles |= HL_ROLE_OPERATOR; break;
        case 'p': roles |= HL_ROLE_PRODUCER; break;
        case 'h': fputs(usage_user, stdout); return 0;
        default: return usage_error(usage_user, NULL, NULL);
        }
    }
    if (argc - optind != 2)
        return usage_error(usage_user, "user needs a command and an email address", NULL);
    const char *sub = argv[optind], *email = argv[optind + 1];
    if (strcmp(sub, "add") && strcmp(sub, "unlock"))
        return usage_error(usage_user, "unknown user command '%s'", sub);
    if (!strcmp(sub, "add") && !name)
        return usage_error(usage_user, "user add needs --name", NULL);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = load_config(path, &err);
    if (!cfg)
        return fail(&err);
    int rc = hl_migrate_ready(cfg, &err);
    if (!rc && !strcmp(sub, "add")) {
        rc = create_user(cfg, email, name, roles, "HALLE_USER_PASSWORD", &err);
        if (!rc)
            printf("halle: account %s created%s\n", email, roles & HL_ROLE_OPERATOR ? " (operator)" : "");
    } else if (!rc) {
        hl_db *db = hl_db_open(cfg->db_path, 0, &err);
        hl_user u;
        rc = db ? hl_user_find_email(db, email, &u, &err) : HL_ERR;
        if (rc == HL_ENOTFOUND)
            hl_err_set(&err, rc, "no account with the address %s", email);
        if (!rc)
            rc = hl_user_unlock(db, u.id, &err);
        if (!rc)
            printf("halle: account %s unlocked\n", email);
        hl_db_close(db);
    }
    hl_config_free(cfg);
    return rc ? fail(&err) : 0;
}

/* -c FILE then a sub-command: what jobs and mail share. Returns the index of the
 * sub-command in argv, or -1 after printing usage (*status set). */
static int sub_command(int argc, char **argv, const char *usage, const char **path, int *all, int *status)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"all", no_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:ah", opts, NULL)) != -1) {
        switch (c) {
        case 'c': *path = optarg; break;
        case 'a': *all = 1; break;
        case 'h': fputs(usage, stdout); *status = 0; return -1;
        default: *status = usage_error(usage, NULL, NULL); return -1;
        }
    }
    if (optind >= argc) {
        *status = usage_error(usage, "a command is needed", NULL);
        return -1;
    }
    return optind;
}

static const char *or_dash(json_t *v)
{
    return json_is_string(v) ? json_string_value(v) : "-";
}

static int cmd_jobs(int argc, char **argv)
{
    const char *path = NULL;
    int all = 0, status = 0;
    int i = sub_command(argc, argv, usage_jobs, &path, &all, &status);
    if (i < 0)
        return status;
    const char *sub = argv[i];
    int nargs = argc - i - 1;
    if (!((!strcmp(sub, "list") && nargs == 0) || (!strcmp(sub, "tick") && nargs == 0) ||
          (!strcmp(sub, "run") && nargs == 1)))
        return usage_error(usage_jobs, "unknown command or wrong arguments: 'jobs %s'", sub);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = load_config(path, &err);
    if (!cfg)
        return fail(&err);
    int rc = hl_migrate_ready(cfg, &err);
    hl_jobsproc *p = rc ? NULL : hl_jobsproc_open(cfg, 1, &err);
    if (!p) {
        hl_config_free(cfg);
        return fail(&err);
    }
    if (!strcmp(sub, "run")) {
        rc = hl_jobs_run_now(hl_jobsproc_jobs(p), hl_jobsproc_db(p), argv[i + 1], &err);
        if (!rc)
            printf("halle: job %s done\n", argv[i + 1]);
    } else if (!strcmp(sub, "tick")) {
        rc = hl_jobs_run_due(hl_jobsproc_jobs(p), hl_jobsproc_db(p), &err);
        if (rc >= 0) {
            printf("halle: %d run(s)\n", rc);
            rc = HL_OK;
        }
    } else {
        json_t *st = hl_jobs_status(hl_jobsproc_jobs(p), hl_jobsproc_db(p), &err);
        char now[HL_CLOCK_ISO_LEN];
        hl_clock_iso(hl_clock_now(), now);
        rc = st ? HL_OK : HL_ERR;
        size_t k;
        json_t *j;
        if (st)
            printf("%-22s %-14s %-21s %-7s %5s %5s  %s\n", "JOB", "SCHEDULE", "NEXT RUN (UTC)", "LAST", "RUNS",
                   "FAILS", "LAST ERROR / LEASE");
        json_array_foreach(json_object_get(st, "jobs"), k, j) {
            json_t *lease = json_object_get(j, "lease_until");
            printf("%-22s %-14s %-21s %-7s %5lld %5lld  %s%s%s\n", or_dash(json_object_get(j, "name")),
                   or_dash(json_object_get(j, "schedule")), or_dash(json_object_get(j, "next_run")),
                   or_dash(json_object_get(j, "last_status")), json_integer_value(json_object_get(j, "runs")),
                   json_integer_value(json_object_get(j, "failures")),
                   json_is_string(lease) ? (strcmp(json_string_value(lease), now) > 0 ? "running, lease until "
                                                                                 : "died? lease expired at ")
                                         : "",
                   json_is_string(lease) ? json_string_value(lease) : or_dash(json_object_get(j, "last_error")),
                   json_is_true(json_object_get(j, "registered")) ? "" : " (not registered: plugin disabled?)");
        }
        if (json_array_size(json_object_get(st, "queue")))
            printf("\n%-6s %-22s %-21s %-8s %4s  %s\n", "QUEUED", "JOB", "RUN AT (UTC)", "STATE", "TRIES",
                   "LAST ERROR");
        json_array_foreach(json_object_get(st, "queue"), k, j) {
            printf("%-6lld %-22s %-21s %-8s %4lld  %s\n", json_integer_value(json_object_get(j, "id")),
                   or_dash(json_object_get(j, "job")), or_dash(json_object_get(j, "run_at")),
                   or_dash(json_object_get(j, "state")), json_integer_value(json_object_get(j, "attempts")),
                   or_dash(json_object_get(j, "last_error")));
        }
        json_decref(st);
    }
    hl_jobsproc_close(p);
    hl_config_free(cfg);
    return rc ? fail(&err) : 0;
}

static int cmd_mail(int argc, char **argv)
{
    const char *path = NULL;
    int all = 0, status = 0;
    int i = sub_command(argc, argv, usage_mail, &path, &all, &status);
    if (i < 0)
        return status;
    const char *sub = argv[i];
    int nargs = argc - i - 1;
    char *end = NULL;
    long long id = nargs == 1 ? strtoll(argv[i + 1], &end, 10) : 0;
    if (!((!strcmp(sub, "list") && nargs == 0) || (!strcmp(sub, "retry") && nargs == 1 && end && !*end && id > 0)))
        return usage_error(usage_mail, "unknown command or wrong arguments: 'mail %s'", sub);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = NULL;
    hl_db *db = open_instance(path, &cfg, &err);
    if (!db)
        return fail(&err);
    int rc = HL_OK;
    if (!strcmp(sub, "retry")) {
        rc = hl_mail_retry(db, (int64_t)id, &err);
        if (!rc)
            printf("halle: mail %lld queued again\n", id);
    } else {
        json_t *l = hl_mail_list(db, all, &err);
        rc = l ? HL_OK : HL_ERR;
        size_t k;
        json_t *m;
        if (!json_array_size(l) && l)
            printf("no mail %s\n", all ? "at all" : "waiting (nothing queued, nothing dead)");
        json_array_foreach(l, k, m) {
            printf("%-6lld %-6s %2lld tries  next %s  to %s  \"%s\"%s%s\n", json_integer_value(json_object_get(m, "id")),
                   or_dash(json_object_get(m, "state")), json_integer_value(json_object_get(m, "attempts")),
                   or_dash(json_object_get(m, "next_attempt_at")), or_dash(json_object_get(m, "to")),
                   or_dash(json_object_get(m, "subject")),
                   json_is_string(json_object_get(m, "last_error")) ? "  error: " : "",
                   json_is_string(json_object_get(m, "last_error")) ? json_string_value(json_object_get(m, "last_error")) : "");
        }
        json_decref(l);
    }
    hl_db_close(db);
    hl_config_free(cfg);
    return rc ? fail(&err) : 0;
}

static void print_hook(void *ud, const char *name, hl_hook_kind kind, size_t n)
{
    (void)ud;
    printf("%-28s %-7s %zu\n", name, kind == HL_HOOK_FILTER ? "filter" : "action", n);
}

/* Runs filter hook on an empty array and returns the result (new reference), or NULL. */
static json_t *collect(hl_hooks *hooks, const char *hook)
{
    json_t *v = json_array();
    hl_hook_stop stop;
    memset(&stop, 0, sizeof stop);
    int id = hl_hooks_id(hooks, hook);
    if (!v || id < 0 || hl_hooks_run_filter(hooks, id, &v, NULL, &stop) < 0) {
        json_decref(v);
        return NULL;
    }
    return v;
}

static int cmd_hooks(int argc, char **argv)
{
    const char *path = NULL;
    int all = 0, status = 0;
    int i = sub_command(argc, argv, usage_hooks, &path, &all, &status);
    if (i < 0)
        return status;
    const char *sub = argv[i];
    if (argc - i - 1 != 0 || (strcmp(sub, "list") && strcmp(sub, "register")))
        return usage_error(usage_hooks, "unknown command or wrong arguments: 'hooks %s'", sub);
    hl_err err;
    hl_err_clear(&err);
    hl_config *cfg = NULL;
    hl_db *db = open_instance(path, &cfg, &err);
    if (!db)
        return fail(&err);
    hl_db_close(db);
    hl_worker *w = hl_worker_cli_new(cfg, &err);
    halle_host **hosts = NULL;
    size_t n = 0;
    int rc = w ? hl_host_load_all(w, &hosts, &n, &err) : HL_ERR;
    if (rc == HL_OK && !strcmp(sub, "list")) {
        hl_hooks_each(hl_worker_hooks(w), print_hook, NULL);
    } else if (rc == HL_OK) {
        json_t *out = json_pack("{s:o?, s:o?}", "processing", collect(hl_worker_hooks(w), "privacy.register"),
                                "cookies", collect(hl_worker_hooks(w), "cookies.declare"));
        char *text = out ? json_dumps(out, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
        rc = text ? HL_OK : hl_err_set(&err, HL_ENOMEM, "out of memory");
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(out);
    }
    hl_host_unload_all(hosts, n);
    hl_worker_cli_free(w);
    hl_config_free(cfg);
    return rc ? fail(&err) : 0;
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char **usage;
} commands[] = {
    {"hooks", cmd_hooks, &usage_hooks},
    {"init", cmd_init, &usage_init},
    {"serve", cmd_serve, &usage_serve},
    {"migrate", cmd_migrate, &usage_migrate},
    {"migrate-data", cmd_migrate_data, &usage_migrate_data},
    {"plugin", cmd_plugin, &usage_plugin},
    {"user", cmd_user, &usage_user},
    {"jobs", cmd_jobs, &usage_jobs},
    {"mail", cmd_mail, &usage_mail},
    {"sql", hl_sqlcli_main, &hl_sqlcli_usage},
};

int main(int argc, char **argv)
{
    hl_err ierr;
    if (hl_accounts_init(&ierr) != HL_OK) {
        fprintf(stderr, "halle: %s\n", ierr.msg);
        return 1;
    }
    if (argc < 2)
        return usage_error(usage_main, NULL, NULL);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
        printf("halle %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (!strcmp(cmd, "help")) {
        if (argc < 3) {
            fputs(usage_main, stdout);
            return 0;
        }
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (!strcmp(argv[2], commands[i].name)) {
                fputs(*commands[i].usage, stdout);
                return 0;
            }
        return usage_error(usage_main, "unknown command '%s'", argv[2]);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(cmd, commands[i].name)) {
            optind = 1;
            return commands[i].fn(argc - 1, argv + 1);
        }
    if (cmd[0] != '-' && argc > 2) {
        /* halle PLUGIN COMMAND ...: a command a plugin adds (e.g. halle market import). The
         * configuration comes from -c FILE right after PLUGIN, else ./halle.conf. */
        const char *conf = "halle.conf";
        int skip = 0;
        if (argc > 4 && (!strcmp(argv[2], "-c") || !strcmp(argv[2], "--config"))) {
            conf = argv[3];
            skip = 2;
        }
        if (access(conf, F_OK) == 0) {
            hl_err err;
            hl_err_clear(&err);
            hl_config *cfg = hl_config_load(conf, &err);
            if (!cfg)
                return fail(&err);
            argv[1 + skip] = argv[1];
            int rc = run_plugin_command(cfg, argc - 1 - skip, argv + 1 + skip);
            hl_config_free(cfg);
            return rc;
        }
    }
    return usage_error(usage_main, cmd[0] == '-' ? "unknown option '%s'" : "unknown command '%s'", cmd);
}
