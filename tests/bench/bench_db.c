/* Benchmark of commit durability, run by scripts/bench (not a test): small transactions (one
 * order row and an invoice number, as hl_db_tx and hl_db_tx_durable run them) in WAL mode with
 * synchronous=NORMAL and with FULL, on a file in DIR (default: the current folder; not a tmpfs,
 * where fsync costs nothing). Prints microseconds per transaction and transactions per second.
 * Usage: bench_db [DIR] [TRANSACTIONS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/db.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int order_tx(hl_db *db, void *ud, hl_err *err)
{
    int64_t n;
    (void)ud;
    int rc = hl_db_counter_next(db, "bench", &n, err);
    if (rc != HL_OK)
        return rc;
    rc = hl_db_run(db, err, "INSERT INTO orders (invoice, body) VALUES (?, ?)", "Is", n,
                   "{\"lines\":[{\"product\":12,\"quantity\":3,\"price_cents\":450}]}");
    return rc < 0 ? rc : HL_OK;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    int count = argc > 2 ? atoi(argv[2]) : 500;
    char path[4096];
    hl_err err = {0};
    if (count <= 0)
        count = 500;
    snprintf(path, sizeof path, "%s/bench_db_%d.db", dir, (int)getpid());
    hl_db *db = hl_db_open(path, HL_DB_CREATE, &err);
    if (!db || hl_db_exec(db,
                          "CREATE TABLE hl_counters (scope TEXT PRIMARY KEY, value BIGINT NOT NULL);"
                          "CREATE TABLE orders (id INTEGER PRIMARY KEY, invoice BIGINT NOT NULL, body TEXT)",
                          &err) != HL_OK) {
        fprintf(stderr, "bench_db: %s\n", err.msg);
        hl_db_close(db);
        return 1;
    }
    printf("== commit durability: %d small transactions each, WAL mode, file in %s\n", count, dir);
    for (int round = 0; round < 2; round++) {
        for (int durable = 0; durable <= 1; durable++) {
            double t0 = now_s();
            for (int i = 0; i < count; i++) {
                int rc = durable ? hl_db_tx_durable(db, order_tx, NULL, &err) : hl_db_tx(db, order_tx, NULL, &err);
                if (rc != HL_OK) {
                    fprintf(stderr, "bench_db: %s\n", err.msg);
                    hl_db_close(db);
                    return 1;
                }
            }
            double dt = now_s() - t0;
            if (round == 1) /* the first round warms the file and the caches */
                printf("  synchronous=%-6s %8.1f us/tx  %8.0f tx/s\n", durable ? "FULL" : "NORMAL",
                       dt * 1e6 / count, count / dt);
        }
    }
    hl_db_close(db);
    char side[4200];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    return 0;
}
