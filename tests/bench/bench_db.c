/* Benchmark of money transactions on each storage backend, run by scripts/bench (not a test):
 * commits per second of hl_db_tx and hl_db_tx_durable, and of an order in the shape of the market's
 * (one durable transaction: an idempotency key, a gapless number, an order row and its lines; the
 * market's change stock instead of taking a number), in one process
 * and in several processes at once (fork), on SQLite files and on PostgreSQL side by side.
 * Usage: bench_db [-n TRANSACTIONS] [-p PROCESSES] [-r REPEATS] TARGET...
 *   TARGET: a folder (a fresh SQLite file is made in it, then removed: not a tmpfs, where fsync
 *   costs nothing), a SQLite file that does not exist yet, or the postgresql:// URI of an empty
 *   database (the benchmark's tables are created in it and dropped at the end). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/db.h"

#ifndef HL_BENCH_MONEY_SQL /* the core migration that makes hl_idempotency and hl_counters */
#define HL_BENCH_MONEY_SQL "core/migrations/main/010_money.sql"
#endif

#define MAX_TARGETS 4
#define MAX_REPEAT 15
#define ORDER_LINES 3

static const char SCHEMA_SQL[] =
    "CREATE TABLE bench_orders (id INTEGER PRIMARY KEY, kase INTEGER NOT NULL, seller TEXT NOT NULL,"
    " invoice BIGINT NOT NULL, idem_key TEXT NOT NULL, total_cents INTEGER NOT NULL,"
    " created_at TEXT NOT NULL);"
    "CREATE TABLE bench_order_lines (id INTEGER PRIMARY KEY,"
    " order_id INTEGER NOT NULL REFERENCES bench_orders (id), product INTEGER NOT NULL,"
    " quantity INTEGER NOT NULL, price_cents INTEGER NOT NULL);"
    "CREATE INDEX bench_order_lines_order ON bench_order_lines (order_id)";
static const char DROP_SQL[] =
    "DROP TABLE bench_order_lines; DROP TABLE bench_orders; DROP TABLE hl_counters;"
    " DROP TABLE hl_idempotency";

/* What is measured. seller: each process numbers its own invoices (several producers), or all
 * share one counter (one producer's invoices: the transactions wait for each other). */
typedef struct bench_case {
    const char *label;
    int order;     /* 0: a number and one row; 1: an order */
    int durable;
    int parallel;  /* run in PROCESSES processes */
    int shared;    /* one counter for all processes */
} bench_case;

static const bench_case CASES[] = {
    {"hl_db_tx: number + 1 row", 0, 0, 0, 0},
    {"hl_db_tx_durable: number + 1 row", 0, 1, 0, 0},
    {"order, 1 process", 1, 1, 0, 0},
    {"order, P processes, a counter each", 1, 1, 1, 0},
    {"order, P processes, one counter", 1, 1, 1, 1},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

typedef struct result {
    double seconds;  /* wall time of all processes */
    long done, gave_up;
} result;

typedef struct tx_ctx {
    int kase;
    const char *seller;
    char key[96];
} tx_ctx;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int add_order(hl_db *db, tx_ctx *c, int lines, int64_t *order_id, hl_err *err)
{
    int64_t n;
    int rc = hl_db_counter_next(db, c->seller, &n, err);
    if (rc != HL_OK)
        return rc;
    return hl_db_insert(db, err, order_id,
                        "INSERT INTO bench_orders (kase, seller, invoice, idem_key, total_cents, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                        "isIsis", c->kase, c->seller, n, c->key, lines * 3 * 450, "2026-12-04T21:00:00Z");
}

static int plain_tx(hl_db *db, void *ud, hl_err *err)
{
    int64_t id;
    return add_order(db, ud, 1, &id, err);
}

static int order_work(hl_db *db, void *ud, hl_db_result *res, hl_err *err)
{
    int64_t id;
    int rc = add_order(db, ud, ORDER_LINES, &id, err);
    for (int i = 0; rc == HL_OK && i < ORDER_LINES; i++) {
        rc = hl_db_run(db, err,
                       "INSERT INTO bench_order_lines (order_id, product, quantity, price_cents) VALUES (?, ?, ?, ?)",
                       "Iiii", id, 12 + i, 3, 450);
        rc = rc < 0 ? rc : HL_OK;
    }
    if (rc != HL_OK)
        return rc;
    char body[64];
    snprintf(body, sizeof body, "{\"order\":%lld}", (long long)id);
    res->status = 201;
    if (!(res->body = strdup(body)))
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    return HL_OK;
}

static int order_tx(hl_db *db, void *ud, hl_err *err)
{
    tx_ctx *c = ud;
    hl_db_result res;
    int rc = hl_db_idempotent(db, "bench:order", c->key, NULL, order_work, c, &res, err);
    if (rc == HL_OK && res.replayed)
        rc = hl_err_set(err, HL_ERR, "key %s was replayed: keys must be new", c->key);
    hl_db_result_free(&res);
    return rc;
}

/* One process's share: count transactions; tells the parent how many were given up busy. */
static int worker(const char *target, const bench_case *bc, int run, int proc, long count,
                  int ready_fd, int go_fd, int out_fd)
{
    hl_err err = {0};
    hl_db *db = hl_db_open(target, 0, &err);
    char b = 'r';
    if (!db) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        return 1;
    }
    if (write(ready_fd, &b, 1) != 1 || read(go_fd, &b, 1) != 0) { /* EOF: go */
        hl_db_close(db);
        return 1;
    }
    char seller[64];
    snprintf(seller, sizeof seller, "bench:r%d:%d", run, bc->shared ? 0 : proc);
    tx_ctx c = {.kase = run, .seller = seller};
    long gave_up = 0;
    for (long i = 0; i < count; i++) {
        snprintf(c.key, sizeof c.key, "r%d-p%d-%ld-%d", run, proc, i, (int)getpid());
        int (*fn)(hl_db *, void *, hl_err *) = bc->order ? order_tx : plain_tx;
        int rc = bc->durable ? hl_db_tx_durable(db, fn, &c, &err) : hl_db_tx(db, fn, &c, &err);
        if (rc == HL_EBUSY) {
            gave_up++;
        } else if (rc != HL_OK) {
            fprintf(stderr, "bench_db: %s\n", err.msg);
            hl_db_close(db);
            return 1;
        }
    }
    hl_db_close(db);
    return write(out_fd, &gave_up, sizeof gave_up) == (ssize_t)sizeof gave_up ? 0 : 1;
}

/* Runs a case in procs processes, each with its own connection opened before the clock starts;
 * run numbers its rows and counters apart from the other runs'. */
static int run_case(const char *target, const bench_case *bc, int run, int procs, long count, result *r)
{
    int ready[2], go[2], out[2];
    pid_t pids[256];
    if (pipe(ready) || pipe(go) || pipe(out)) {
        perror("bench_db: pipe");
        return 1;
    }
    fflush(NULL);
    int started = 0, failed = 0;
    for (int p = 0; p < procs; p++) {
        long share = count / procs + (p < count % procs ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_db: fork");
            failed = 1;
            break;
        }
        if (pid == 0) {
            close(ready[0]);
            close(go[1]);
            close(out[0]);
            _exit(worker(target, bc, run, p, share, ready[1], go[0], out[1]));
        }
        pids[started++] = pid;
    }
    close(ready[1]);
    close(go[0]);
    close(out[1]);
    char b;
    for (int p = 0; p < started && !failed; p++)
        if (read(ready[0], &b, 1) != 1)
            failed = 1; /* a process could not connect: it said why */
    double t0 = now_s();
    close(go[1]);
    for (int p = 0; p < started; p++) {
        int st;
        while (waitpid(pids[p], &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            failed = 1;
    }
    r->seconds = now_s() - t0;
    r->gave_up = 0;
    long g;
    while (read(out[0], &g, sizeof g) == (ssize_t)sizeof g)
        r->gave_up += g;
    close(ready[0]);
    close(out[0]);
    r->done = count - r->gave_up;
    return failed;
}

/* The numbers committed are what the storage contract promises: per seller exactly 1..N, and
 * every order has its lines. */
static int check_case(hl_db *db, const bench_case *bc, int run, const result *r, hl_err *err)
{
    long orders = 0;
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT seller, COUNT(*), COUNT(DISTINCT invoice), MIN(invoice), MAX(invoice) "
                              "FROM bench_orders WHERE kase = ? GROUP BY seller",
                              "i", run);
    if (!st)
        return HL_ERR;
    int rc;
    while ((rc = hl_db_step(st, err)) == HL_DB_ROW) {
        int64_t n = hl_db_col_int64(st, 1);
        if (hl_db_col_int64(st, 2) != n || hl_db_col_int64(st, 3) != 1 || hl_db_col_int64(st, 4) != n) {
            rc = hl_err_set(err, HL_ERR, "%s: invoice numbers are not 1..%lld", hl_db_col_text(st, 0),
                            (long long)n);
            break;
        }
        orders += (long)n;
    }
    hl_db_done(st);
    if (rc != HL_DB_DONE)
        return rc < 0 ? rc : HL_ERR;
    if (orders != r->done)
        return hl_err_set(err, HL_ERR, "%ld orders committed, %ld stored", r->done, orders);
    if (bc->order) {
        st = hl_db_query(db, err,
                         "SELECT COUNT(*) FROM bench_order_lines l JOIN bench_orders o ON o.id = l.order_id "
                         "WHERE o.kase = ?",
                         "i", run);
        rc = st ? hl_db_step(st, err) : HL_ERR;
        int64_t lines = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : -1;
        hl_db_done(st);
        if (lines != (int64_t)orders * ORDER_LINES)
            return hl_err_set(err, HL_ERR, "%lld order lines for %ld orders", (long long)lines, orders);
    }
    return HL_OK;
}

static char *read_file(const char *path, hl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        hl_err_set(err, HL_EIO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = calloc(1, 65536);
    size_t n = buf ? fread(buf, 1, 65535, f) : 0;
    fclose(f);
    if (!buf || n == 0) {
        free(buf);
        hl_err_set(err, HL_EIO, "%s: empty or unreadable", path);
    }
    return buf && n ? buf : NULL;
}

/* Makes the target ready: an empty SQLite file or an empty PostgreSQL database, then the
 * core's money tables (its own migration) and the orders. */
static hl_db *setup(const char *given, char *target, size_t tsize, hl_err *err)
{
    struct stat sb;
    int pg = hl_db_is_url(given);
    if (!pg && stat(given, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(target, tsize, "%s/bench_db_%d.db", given, (int)getpid());
    } else if (!pg && stat(given, &sb) == 0) {
        hl_err_set(err, HL_EINVAL, "%s exists: give a folder or a new file", given);
        return NULL;
    } else {
        snprintf(target, tsize, "%s", given);
    }
    hl_db *db = hl_db_open(target, HL_DB_CREATE, err);
    if (!db)
        return NULL;
    if (pg) {
        hl_stmt *st = hl_db_query(db, err,
                                  "SELECT COUNT(*) FROM information_schema.tables "
                                  "WHERE table_schema = current_schema()",
                                  "");
        int rc = st ? hl_db_step(st, err) : HL_ERR;
        int64_t n = rc == HL_DB_ROW ? hl_db_col_int64(st, 0) : -1;
        hl_db_done(st);
        if (n != 0) {
            if (n > 0)
                hl_err_set(err, HL_EINVAL, "%s is not empty (%lld tables): give an empty database", hl_db_path(db),
                           (long long)n);
            hl_db_close(db);
            return NULL;
        }
    }
    char *money = read_file(HL_BENCH_MONEY_SQL, err);
    if (!money || hl_db_exec(db, money, err) != HL_OK || hl_db_exec(db, SCHEMA_SQL, err) != HL_OK) {
        free(money);
        hl_db_close(db);
        return NULL;
    }
    free(money);
    return db;
}

static void teardown(hl_db *db, const char *target)
{
    if (hl_db_is_url(target)) {
        hl_err err = {0};
        if (hl_db_exec(db, DROP_SQL, &err) != HL_OK)
            fprintf(stderr, "bench_db: %s\n", err.msg);
        hl_db_close(db);
        return;
    }
    hl_db_close(db);
    char side[4200];
    unlink(target);
    snprintf(side, sizeof side, "%s-wal", target);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", target);
    unlink(side);
}

/* What the target commits with, for the header: the settings durability depends on. */
static void describe(hl_db *db, const char *given, char *out, size_t size)
{
    if (strcmp(hl_db_backend_name(db), "postgresql") != 0) {
        snprintf(out, size, "sqlite: a file in %s; WAL, synchronous=NORMAL, FULL when durable", given);
        return;
    }
    hl_err err = {0};
    hl_stmt *st = hl_db_query(db, &err,
                              "SELECT current_setting('server_version'), current_setting('fsync'), "
                              "current_setting('wal_sync_method'), current_setting('full_page_writes'), "
                              "current_setting('shared_buffers'), current_setting('default_transaction_isolation')",
                              "");
    if (st && hl_db_step(st, &err) == HL_DB_ROW)
        snprintf(out, size,
                 "postgresql %s: %s; %s, synchronous_commit off, on when durable; "
                 "fsync=%s wal_sync_method=%s full_page_writes=%s shared_buffers=%s",
                 hl_db_col_text(st, 0), hl_db_path(db), hl_db_col_text(st, 5), hl_db_col_text(st, 1),
                 hl_db_col_text(st, 2), hl_db_col_text(st, 3), hl_db_col_text(st, 4));
    else
        snprintf(out, size, "postgresql: %s", hl_db_path(db));
    hl_db_done(st);
}

/* Every case repeat times, the repeats of a case apart in time (machine noise is uneven). */
static int bench_target(const char *given, int procs, long count, int repeat, result res[][MAX_REPEAT],
                        char *about, size_t asize)
{
    char target[4096];
    hl_err err = {0};
    hl_db *db = setup(given, target, sizeof target, &err);
    if (!db) {
        fprintf(stderr, "bench_db: %s\n", err.msg[0] ? err.msg : "cannot set up the target");
        return 1;
    }
    describe(db, given, about, asize);
    result warm;
    /* warms the file and the caches, then starts the cases from nothing */
    int failed = run_case(target, &CASES[0], 0, 1, count / 5 + 1, &warm);
    if (!failed && hl_db_exec(db, "DELETE FROM bench_orders; DELETE FROM hl_counters", &err) != HL_OK) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        failed = 1;
    }
    for (int rep = 0; rep < repeat && !failed; rep++)
        for (int k = 0; k < NCASES && !failed; k++) {
            const bench_case *bc = &CASES[k];
            int run = 1 + rep * NCASES + k;
            failed = run_case(target, bc, run, bc->parallel ? procs : 1, count, &res[k][rep]);
            if (!failed && check_case(db, bc, run, &res[k][rep], &err) != HL_OK) {
                fprintf(stderr, "bench_db: %s: %s\n", bc->label, err.msg);
                failed = 1;
            }
        }
    teardown(db, target);
    return failed;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long count = 500;
    int procs = 4, repeat = 3, opt;
    while ((opt = getopt(argc, argv, "n:p:r:")) != -1) {
        if (opt == 'n')
            count = atol(optarg);
        else if (opt == 'p')
            procs = atoi(optarg);
        else if (opt == 'r')
            repeat = atoi(optarg);
        else
            break;
    }
    int ntargets = argc - optind;
    if (opt == '?' || ntargets < 1 || ntargets > MAX_TARGETS || count < 1 || count > 10000000 || procs < 1 ||
        procs > 256 || repeat < 1 || repeat > MAX_REPEAT) {
        fprintf(stderr, "usage: bench_db [-n TRANSACTIONS] [-p PROCESSES (1-256)] [-r REPEATS (1-%d)] TARGET...\n"
                        "  TARGET: a folder or a new SQLite file, or the postgresql:// URI of an empty database\n",
                MAX_REPEAT);
        return 2;
    }
    static result res[MAX_TARGETS][NCASES][MAX_REPEAT];
    static char about[MAX_TARGETS][1024];
    for (int t = 0; t < ntargets; t++)
        if (bench_target(argv[optind + t], procs, count, repeat, res[t], about[t], sizeof about[t]))
            return 1;

    printf("== money transactions: %ld per run, P = %d processes at once; transactions per second, the\n"
           "   median of %d runs (lowest-highest); an order = one durable transaction taking an\n"
           "   idempotency key and an invoice number, inserting the order and %d lines\n",
           count, procs, repeat, ORDER_LINES);
    for (int t = 0; t < ntargets; t++)
        printf("   [%d] %s\n", t + 1, about[t]);
    printf("  %-36s", "");
    for (int t = 0; t < ntargets; t++) {
        char head[32];
        snprintf(head, sizeof head, "[%d] %.*s", t + 1, (int)strcspn(about[t], " :"), about[t]);
        printf("  %-24s", head);
    }
    printf("\n");
    for (int k = 0; k < NCASES; k++) {
        char label[64];
        snprintf(label, sizeof label, "%s", CASES[k].label);
        char *p = strstr(label, "P processes");
        if (p) {
            char rest[64];
            snprintf(rest, sizeof rest, "%s", p + 1);
            snprintf(p, sizeof label - (size_t)(p - label), "%d%s", procs, rest);
        }
        printf("  %-36s", label);
        long gave_up[MAX_TARGETS] = {0};
        for (int t = 0; t < ntargets; t++) {
            double tps[MAX_REPEAT];
            for (int rep = 0; rep < repeat; rep++) {
                const result *r = &res[t][k][rep];
                tps[rep] = r->seconds > 0 ? r->done / r->seconds : 0;
                gave_up[t] += r->gave_up;
            }
            qsort(tps, (size_t)repeat, sizeof tps[0], cmp_double);
            double median = repeat % 2 ? tps[repeat / 2] : (tps[repeat / 2 - 1] + tps[repeat / 2]) / 2;
            char cell[64];
            if (repeat > 1)
                snprintf(cell, sizeof cell, "%.0f/s (%.0f-%.0f)", median, tps[0], tps[repeat - 1]);
            else
                snprintf(cell, sizeof cell, "%.0f/s", median);
            printf("  %-24s", cell);
        }
        printf("\n");
        for (int t = 0; t < ntargets; t++)
            if (gave_up[t])
                printf("  %36s  [%d] %ld of %ld given up: still busy after hl_db_tx's attempts\n", "", t + 1,
                       gave_up[t], count * repeat);
    }
    return 0;
}
