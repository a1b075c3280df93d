/* Jobs: work the core and plugins register (every N seconds, daily at a time, or queued once
 * with a payload), claimed in the database with a lease so that two processes or machines
 * never run the same work at once and a run that died is taken up again after its lease.
 * The jobs process (core/jobsproc.c) calls hl_jobs_run_due every second. */
#ifndef HL_JOBS_H
#define HL_JOBS_H

#include <jansson.h>
#include <stdint.h>

#include "core/db.h"
#include "core/error.h"

/* What a job does. payload is NULL for recurring jobs, the queued text for once-jobs.
 * Returns HL_OK, or an error with a message in err (the run is recorded as failed). */
typedef int (*hl_job_fn)(void *ud, const char *payload, hl_err *err);

typedef struct hl_jobs hl_jobs;

/* How long a claim holds: a run still going after this may be taken up by another process. */
#define HL_JOBS_LEASE_SECONDS 300

hl_jobs *hl_jobs_new(void);
void hl_jobs_free(hl_jobs *j);

/* Registers a job. name: [a-z0-9_.-], at most 64 bytes (plugins' jobs are "PLUGIN.name").
 * schedule: "every N" (seconds, 1 to 31 days), "daily HH:MM" (UTC), or "once" (runs the
 * payloads queued with hl_jobs_enqueue). ud_free (may be NULL) releases ud with the registry. */
int hl_jobs_add(hl_jobs *j, const char *name, const char *schedule, hl_job_fn fn, void *ud,
                void (*ud_free)(void *), hl_err *err);
int hl_jobs_count(const hl_jobs *j);
/* Forgets the jobs added after the first n, before start-up ends (a plugin refused half-way). */
void hl_jobs_truncate(hl_jobs *j, int n);
/* Ends registration (as hooks do when start-up ends): later hl_jobs_add calls fail, so a job
 * run never sees the registry move under it. */
void hl_jobs_freeze(hl_jobs *j);

/* Records the recurring jobs in hl_jobs (new ones are due at once, daily ones at their next
 * time; a changed schedule is taken). Call once the registrations are done. */
int hl_jobs_sync(hl_jobs *j, hl_db *db, hl_err *err);

/* Queues one run of the once-job `job` at run_at (epoch seconds; 0 = now) with payload (text,
 * may be NULL, at most 64 KiB). Works from any process (e.g. a request in a worker). Returns
 * the queue id (> 0) or a negative error. */
int64_t hl_jobs_enqueue(hl_db *db, const char *job, int64_t run_at, const char *payload, hl_err *err);

/* Runs, once each, what is due and claimable: recurring jobs whose next_run has come and
 * queued runs whose run_at has. Failures are recorded (and logged), not returned. Returns the
 * number of runs, or a negative error when the database cannot be read. */
int hl_jobs_run_due(hl_jobs *j, hl_db *db, hl_err *err);

/* Runs the recurring job `name` now, whatever its schedule, after claiming it. HL_EBUSY when
 * another process holds its lease, HL_ENOTFOUND when no such recurring job is registered,
 * the job's own error when it failed. */
int hl_jobs_run_now(hl_jobs *j, hl_db *db, const char *name, hl_err *err);

/* For operators: {"jobs": [{name, schedule, registered, next_run, lease_until, last_start,
 * last_end, last_status, last_error, runs, failures}], "queue": [{id, job, run_at, attempts,
 * state ("pending", "running" or "dead"), last_error}]} (queued runs not done, oldest first,
 * at most 200). New reference, or NULL with err set. */
json_t *hl_jobs_status(hl_jobs *j, hl_db *db, hl_err *err);

#endif
