/* Jobs (see jobs.h): a registry per process, and the claim/run/record cycle against hl_jobs
 * and hl_job_queue (migration 007). Every claim is one UPDATE guarded by "lease free or
 * expired", judged by the changed-row count: portable, and atomic on SQLite and PostgreSQL
 * alike without locks held while the job runs. */
#include "core/jobs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"

#define NAME_MAX_LEN 64
#define PAYLOAD_MAX (64 * 1024)
#define QUEUE_BATCH 20
#define STATUS_MAX 200
#define DAY 86400

enum { EVERY = 1, DAILY, ONCE };

typedef struct job {
    char name[NAME_MAX_LEN + 1];
    char schedule[32];
    int kind;
    int64_t seconds; /* EVERY: the period; DAILY: seconds after midnight UTC */
    hl_job_fn fn;
    void *ud;
    void (*ud_free)(void *);
} job;

struct hl_jobs {
    job *items;
    int n, cap;
    unsigned long claims; /* makes each claim's owner unique within the process */
    int frozen;           /* start-up is over: runs hold pointers into items */
};

hl_jobs *hl_jobs_new(void) { return calloc(1, sizeof(hl_jobs)); }

void hl_jobs_free(hl_jobs *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->n; i++)
        if (j->items[i].ud_free)
            j->items[i].ud_free(j->items[i].ud);
    free(j->items);
    free(j);
}

int hl_jobs_count(const hl_jobs *j) { return j ? j->n : 0; }

void hl_jobs_truncate(hl_jobs *j, int n)
{
    if (!j || j->frozen)
        return;
    while (j->n > n && j->n > 0) {
        job *jb = &j->items[--j->n];
        if (jb->ud_free)
            jb->ud_free(jb->ud);
    }
}

void hl_jobs_freeze(hl_jobs *j)
{
    if (j)
        j->frozen = 1;
}

static int name_ok(const char *s)
{
    size_t n = s ? strnlen(s, NAME_MAX_LEN + 1) : 0;
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr("_.-", s[i])))
            return 0;
    return 1;
}

static int parse_schedule(const char *s, int *kind, int64_t *seconds)
{
    long long n;
    int hh, mm, used = 0;
    if (!s)
        return -1;
    if (!strcmp(s, "once")) {
        *kind = ONCE;
        *seconds = 0;
        return 0;
    }
    if (sscanf(s, "every %lld%n", &n, &used) == 1 && !s[used] && n >= 1 && n <= 31LL * DAY) {
        *kind = EVERY;
        *seconds = n;
        return 0;
    }
    if (sscanf(s, "daily %2d:%2d%n", &hh, &mm, &used) == 2 && !s[used] && used == 11 && hh >= 0 &&
        hh < 24 && mm >= 0 && mm < 60) {
        *kind = DAILY;
        *seconds = hh * 3600 + mm * 60;
        return 0;
    }
    return -1;
}

int hl_jobs_add(hl_jobs *j, const char *name, const char *schedule, hl_job_fn fn, void *ud,
                void (*ud_free)(void *), hl_err *err)
{
    int kind;
    int64_t secs;
    if (!j || !fn)
        return hl_err_set(err, HL_EINVAL, "job: NULL argument");
    if (j->frozen)
        return hl_err_set(err, HL_EINVAL, "job %s: jobs are registered at start-up (in init)", name ? name : "");
    if (!name_ok(name))
        return hl_err_set(err, HL_EINVAL, "job name '%s': use a-z, 0-9, '_', '.', '-' (at most %d)",
                          name ? name : "", NAME_MAX_LEN);
    if (parse_schedule(schedule, &kind, &secs) != 0)
        return hl_err_set(err, HL_EINVAL,
                          "job %s: schedule '%s' is not \"every N\" (seconds), \"daily HH:MM\" or \"once\"",
                          name, schedule ? schedule : "");
    for (int i = 0; i < j->n; i++)
        if (!strcmp(j->items[i].name, name))
            return hl_err_set(err, HL_EINVAL, "job %s is already registered", name);
    if (j->n == j->cap) {
        int cap = j->cap ? j->cap * 2 : 16;
        job *p = realloc(j->items, (size_t)cap * sizeof *p);
        if (!p)
            return hl_err_set(err, HL_ENOMEM, "out of memory");
        j->items = p;
        j->cap = cap;
    }
    job *jb = &j->items[j->n++];
    memset(jb, 0, sizeof *jb);
    snprintf(jb->name, sizeof jb->name, "%s", name);
    snprintf(jb->schedule, sizeof jb->schedule, "%s", schedule);
    jb->kind = kind;
    jb->seconds = secs;
    jb->fn = fn;
    jb->ud = ud;
    jb->ud_free = ud_free;
    return HL_OK;
}

static job *find(hl_jobs *j, const char *name)
{
    for (int i = 0; j && i < j->n; i++)
        if (!strcmp(j->items[i].name, name))
            return &j->items[i];
    return NULL;
}

/* The first run after now: a period later, or the next time of day (strictly after now, so
 * a daily job that just ran is not due again the same minute). */
static int64_t next_after(const job *jb, int64_t now)
{
    if (jb->kind == EVERY)
        return now + jb->seconds;
    int64_t t = now - ((now % DAY) + DAY) % DAY + jb->seconds;
    return t > now ? t : t + DAY;
}

int hl_jobs_sync(hl_jobs *j, hl_db *db, hl_err *err)
{
    int64_t now = hl_clock_now();
    for (int i = 0; j && i < j->n; i++) {
        job *jb = &j->items[i];
        if (jb->kind == ONCE)
            continue;
        char first[HL_CLOCK_ISO_LEN];
        hl_clock_iso(jb->kind == EVERY ? now : next_after(jb, now), first);
        int rc = hl_db_run(db, err,
                           "INSERT INTO hl_jobs (name, schedule, next_run) VALUES (?, ?, ?) "
                           "ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, next_run = "
                           "CASE WHEN hl_jobs.schedule = excluded.schedule THEN hl_jobs.next_run "
                           "ELSE excluded.next_run END",
                           "sss", jb->name, jb->schedule, first);
        if (rc < 0)
            return rc;
    }
    return HL_OK;
}

int64_t hl_jobs_enqueue(hl_db *db, const char *jobname, int64_t run_at, const char *payload, hl_err *err)
{
    if (!db || !name_ok(jobname))
        return hl_err_set(err, HL_EINVAL, "job: invalid job name '%s'", jobname ? jobname : "");
    if (payload && strnlen(payload, PAYLOAD_MAX + 1) > PAYLOAD_MAX)
        return hl_err_set(err, HL_ETOOBIG, "job %s: payload over %d bytes", jobname, PAYLOAD_MAX);
    int64_t now = hl_clock_now();
    char at[HL_CLOCK_ISO_LEN], created[HL_CLOCK_ISO_LEN];
    hl_clock_iso(run_at > 0 ? run_at : now, at);
    hl_clock_iso(now, created);
    int64_t id;
    int rc = hl_db_insert(db, err, &id,
                          "INSERT INTO hl_job_queue (job, payload, run_at, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                          "ssss", jobname, payload, at, created);
    return rc < 0 ? rc : id;
}

static void new_owner(hl_jobs *j, char *out, size_t len)
{
    char host[64] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        snprintf(host, sizeof host, "?");
    snprintf(out, len, "%.60s:%d:%lu", host, (int)getpid(), ++j->claims);
}

/* What a claim writes: the time, the end of its lease, and an owner no other claim has. */
typedef struct claim {
    char now[HL_CLOCK_ISO_LEN];
    char lease[HL_CLOCK_ISO_LEN];
    char owner[128];
} claim;

static void new_claim(hl_jobs *j, claim *c)
{
    int64_t now = hl_clock_now();
    hl_clock_iso(now, c->now);
    hl_clock_iso(now + HL_JOBS_LEASE_SECONDS, c->lease);
    new_owner(j, c->owner, sizeof c->owner);
}

/* Runs a job's function, logging the outcome; msg gets the error message ("" on success). */
static int call(job *jb, const char *payload, const char *what, char *msg, size_t len)
{
    hl_err e;
    hl_err_clear(&e);
    int rc = jb->fn(jb->ud, payload, &e);
    if (rc != HL_OK) {
        snprintf(msg, len, "%s", e.msg[0] ? e.msg : "failed without a message");
        hl_log(HL_LOG_ERROR, "job %s%s failed: %s", jb->name, what, msg);
    } else {
        msg[0] = '\0';
        hl_log(HL_LOG_DEBUG, "job %s%s done", jb->name, what);
    }
    return rc;
}

/* Claims (force: whatever next_run says), runs and records one recurring job. 1 if it ran,
 * 0 if not due or held elsewhere, negative on a database error; *job_rc gets the job's. */
static int run_recurring(hl_jobs *j, hl_db *db, job *jb, int force, int *job_rc, hl_err *err)
{
    claim c;
    new_claim(j, &c);
    int rc = hl_db_run(db, err,
                       "UPDATE hl_jobs SET lease_until = ?, lease_owner = ?, last_start = ? WHERE name = ? "
                       "AND (? = 1 OR next_run <= ?) AND (lease_until IS NULL OR lease_until <= ?)",
                       "ssssiss", c.lease, c.owner, c.now, jb->name, force, c.now, c.now);
    if (rc <= 0)
        return rc;
    char msg[sizeof err->msg];
    *job_rc = call(jb, NULL, "", msg, sizeof msg);
    /* The next run counts from the end of this one: a long run does not queue up catch-ups. */
    int64_t end = hl_clock_now();
    char t_end[HL_CLOCK_ISO_LEN], t_next[HL_CLOCK_ISO_LEN];
    hl_clock_iso(end, t_end);
    hl_clock_iso(next_after(jb, end), t_next);
    rc = hl_db_run(db, err,
                   "UPDATE hl_jobs SET lease_until = NULL, lease_owner = NULL, next_run = ?, last_end = ?, "
                   "last_status = ?, last_error = ?, runs = runs + 1, failures = failures + ? "
                   "WHERE name = ? AND lease_owner = ?",
                   "ssssiss", t_next, t_end, *job_rc == HL_OK ? "ok" : "failed", *job_rc == HL_OK ? NULL : msg,
                   *job_rc == HL_OK ? 0 : 1, jb->name, c.owner);
    if (rc == 0)
        hl_log(HL_LOG_WARN, "job %s ran past its lease (%d s); another run may have taken over", jb->name,
               HL_JOBS_LEASE_SECONDS);
    return rc < 0 ? rc : 1;
}

/* One queued run: claim (counting the attempt), run, record done / retry later / dead. */
static int run_queued(hl_jobs *j, hl_db *db, int64_t id, hl_err *err)
{
    claim c;
    new_claim(j, &c);
    int rc = hl_db_run(db, err,
                       "UPDATE hl_job_queue SET lease_until = ?, lease_owner = ?, attempts = attempts + 1 "
                       "WHERE id = ? AND done_at IS NULL AND dead_at IS NULL AND run_at <= ? "
                       "AND (lease_until IS NULL OR lease_until <= ?)",
                       "ssIss", c.lease, c.owner, id, c.now, c.now);
    if (rc <= 0)
        return rc;
    hl_stmt *st = hl_db_query(db, err, "SELECT job, payload, attempts FROM hl_job_queue WHERE id = ?", "I", id);
    if (!st)
        return err->code ? err->code : HL_ERR;
    if ((rc = hl_db_step(st, err)) != HL_DB_ROW) {
        hl_db_done(st);
        return rc < 0 ? rc : 0;
    }
    const char *name = hl_db_col_text(st, 0), *p = hl_db_col_text(st, 1);
    char jobname[NAME_MAX_LEN + 1];
    snprintf(jobname, sizeof jobname, "%s", name ? name : "?");
    job *jb = find(j, jobname);
    char *payload = p ? strdup(p) : NULL;
    int64_t attempts = hl_db_col_int64(st, 2);
    hl_db_done(st);
    if (p && !payload)
        return hl_err_set(err, HL_ENOMEM, "out of memory");
    char msg[sizeof err->msg] = "", what[48];
    snprintf(what, sizeof what, " (queued run %lld)", (long long)id);
    int job_rc = HL_ERR;
    if (!jb || jb->kind != ONCE)
        snprintf(msg, sizeof msg, "no once-job of that name is registered");
    else if (attempts > HL_CLOCK_RETRY_MAX)
        snprintf(msg, sizeof msg, "its run kept dying (%lld claims)", (long long)attempts - 1);
    else
        job_rc = call(jb, payload, what, msg, sizeof msg);
    free(payload);
    int64_t end = hl_clock_now();
    char t_end[HL_CLOCK_ISO_LEN], t_retry[HL_CLOCK_ISO_LEN];
    hl_clock_iso(end, t_end);
    hl_clock_iso(end + hl_clock_retry_delay(attempts), t_retry);
    int dead = job_rc != HL_OK && (attempts >= HL_CLOCK_RETRY_MAX || !jb || jb->kind != ONCE);
    if (dead)
        hl_log(HL_LOG_WARN, "job %s%s given up after %lld attempt(s): %s", jobname, what,
               (long long)attempts, msg);
    rc = hl_db_run(db, err,
                   "UPDATE hl_job_queue SET lease_until = NULL, lease_owner = NULL, done_at = ?, dead_at = ?, "
                   "run_at = ?, last_error = ? WHERE id = ? AND lease_owner = ?",
                   "ssssIs", job_rc == HL_OK ? t_end : NULL, dead ? t_end : NULL, job_rc == HL_OK || dead ? c.now : t_retry,
                   job_rc == HL_OK ? NULL : msg, id, c.owner);
    return rc < 0 ? rc : 1;
}

int hl_jobs_run_due(hl_jobs *j, hl_db *db, hl_err *err)
{
    if (!j || !db)
        return hl_err_set(err, HL_EINVAL, "jobs: NULL argument");
    int ran = 0;
    for (int i = 0; i < j->n; i++) {
        if (j->items[i].kind == ONCE)
            continue;
        int job_rc;
        int rc = run_recurring(j, db, &j->items[i], 0, &job_rc, err);
        if (rc < 0)
            return rc;
        ran += rc;
    }
    /* Queued runs: ids first, so that no statement stays open while a job runs. */
    char t_now[HL_CLOCK_ISO_LEN];
    hl_clock_iso(hl_clock_now(), t_now);
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT id FROM hl_job_queue WHERE done_at IS NULL AND dead_at IS NULL "
                              "AND run_at <= ? AND (lease_until IS NULL OR lease_until <= ?) "
                              "ORDER BY run_at, id LIMIT ?",
                              "ssi", t_now, t_now, QUEUE_BATCH);
    if (!st)
        return err->code ? err->code : HL_ERR;
    int64_t ids[QUEUE_BATCH];
    int n = 0, rc;
    while (n < QUEUE_BATCH && (rc = hl_db_step(st, err)) == HL_DB_ROW)
        ids[n++] = hl_db_col_int64(st, 0);
    hl_db_done(st);
    if (rc < 0)
        return rc;
    for (int i = 0; i < n; i++) {
        if ((rc = run_queued(j, db, ids[i], err)) < 0)
            return rc;
        ran += rc;
    }
    return ran;
}

int hl_jobs_run_now(hl_jobs *j, hl_db *db, const char *name, hl_err *err)
{
    job *jb = name ? find(j, name) : NULL;
    if (!jb || jb->kind == ONCE)
        return hl_err_set(err, HL_ENOTFOUND, "no recurring job named '%s' (see 'halle jobs list')",
                          name ? name : "");
    int job_rc = HL_OK;
    int rc = run_recurring(j, db, jb, 1, &job_rc, err);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return hl_err_set(err, HL_EBUSY, "job %s is running elsewhere (its lease has not expired)", name);
    if (job_rc != HL_OK) {
        hl_stmt *st = hl_db_query(db, err, "SELECT last_error FROM hl_jobs WHERE name = ?", "s", name);
        if (st && hl_db_step(st, err) == HL_DB_ROW)
            hl_err_set(err, job_rc, "job %s failed: %s", name, hl_db_col_text(st, 0) ? hl_db_col_text(st, 0) : "");
        else
            hl_err_set(err, job_rc, "job %s failed", name);
        hl_db_done(st);
        return job_rc;
    }
    return HL_OK;
}

static json_t *text_or_null(hl_stmt *st, int col)
{
    const char *s = hl_db_col_text(st, col);
    return s ? json_string(s) : json_null();
}

json_t *hl_jobs_status(hl_jobs *j, hl_db *db, hl_err *err)
{
    json_t *out = json_pack("{s:[], s:[]}", "jobs", "queue");
    if (!out) {
        hl_err_set(err, HL_ENOMEM, "out of memory");
        return NULL;
    }
    json_t *jobs = json_object_get(out, "jobs"), *queue = json_object_get(out, "queue");
    hl_stmt *st = hl_db_query(db, err,
                              "SELECT name, schedule, next_run, lease_until, last_start, last_end, last_status, "
                              "last_error, runs, failures FROM hl_jobs ORDER BY name",
                              "");
    int rc = st ? HL_DB_ROW : HL_ERR;
    while (st && (rc = hl_db_step(st, err)) == HL_DB_ROW) {
        const char *name = hl_db_col_text(st, 0);
        json_array_append_new(
            jobs, json_pack("{s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:I}", "name", name ? name : "",
                            "schedule", hl_db_col_text(st, 1) ? hl_db_col_text(st, 1) : "", "registered",
                            name && find(j, name), "next_run", text_or_null(st, 2), "lease_until",
                            text_or_null(st, 3), "last_start", text_or_null(st, 4), "last_end", text_or_null(st, 5),
                            "last_status", text_or_null(st, 6), "last_error", text_or_null(st, 7), "runs",
                            (json_int_t)hl_db_col_int64(st, 8), "failures", (json_int_t)hl_db_col_int64(st, 9)));
    }
    if (st)
        hl_db_done(st);
    char t_now[HL_CLOCK_ISO_LEN];
    hl_clock_iso(hl_clock_now(), t_now);
    hl_stmt *q = rc < 0 ? NULL
                        : hl_db_query(db, err,
                                      "SELECT id, job, run_at, attempts, dead_at, lease_until, last_error "
                                      "FROM hl_job_queue WHERE done_at IS NULL ORDER BY id LIMIT ?",
                                      "i", STATUS_MAX);
    if (!q)
        rc = HL_ERR;
    while (q && (rc = hl_db_step(q, err)) == HL_DB_ROW) {
        const char *lease = hl_db_col_text(q, 5);
        const char *state = hl_db_col_text(q, 4) ? "dead" : lease && strcmp(lease, t_now) > 0 ? "running" : "pending";
        json_array_append_new(queue, json_pack("{s:I, s:s, s:o, s:I, s:s, s:o}", "id",
                                               (json_int_t)hl_db_col_int64(q, 0), "job",
                                               hl_db_col_text(q, 1) ? hl_db_col_text(q, 1) : "", "run_at",
                                               text_or_null(q, 2), "attempts", (json_int_t)hl_db_col_int64(q, 3),
                                               "state", state, "last_error", text_or_null(q, 6)));
    }
    if (q)
        hl_db_done(q);
    if (rc < 0) {
        json_decref(out);
        if (err && !err->code)
            hl_err_set(err, HL_ERR, "jobs: cannot read the jobs tables");
        return NULL;
    }
    return out;
}
