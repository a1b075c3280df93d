-- Jobs (core/jobs.c). Times are ISO-8601 UTC text, compared as text on SQLite and PostgreSQL.
-- A recurring job (every N seconds, daily at a time) has one row; a process runs it only after
-- claiming it: UPDATE ... SET lease_until WHERE the lease is free or expired, checked by the
-- changed-row count, so two processes or machines never run it at once, and a run that died
-- is taken up again once its lease has passed. lease_owner keeps a late finisher from
-- overwriting the record of the run that took over.
CREATE TABLE hl_jobs (
    name TEXT PRIMARY KEY,
    schedule TEXT NOT NULL,
    next_run TEXT NOT NULL,
    lease_until TEXT,
    lease_owner TEXT,
    last_start TEXT,
    last_end TEXT,
    last_status TEXT,
    last_error TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);

-- Work queued for once, with a payload (e.g. by a request: "send the reminder at 18:00").
-- attempts counts claims, so a payload that crashes its process every time still ends up
-- dead after HL_CLOCK_RETRY_MAX tries instead of looping.
CREATE TABLE hl_job_queue (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    payload TEXT,
    run_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    lease_until TEXT,
    lease_owner TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    done_at TEXT,
    dead_at TEXT,
    last_error TEXT
);
CREATE INDEX hl_job_queue_due ON hl_job_queue (run_at, id) WHERE done_at IS NULL AND dead_at IS NULL;

-- Mail is claimed the same way before it is sent; failed_at (given up) is its dead letter.
ALTER TABLE hl_mail_queue ADD COLUMN lease_until TEXT;
