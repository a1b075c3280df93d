-- Outgoing mail queue: written by requests, sent by a timer (core/mail.c). Times are
-- ISO-8601 UTC text ("YYYY-MM-DDTHH:MM:SSZ") computed by the caller, so they compare as text
-- the same way on SQLite and PostgreSQL. attempts counts failed sends.
CREATE TABLE hl_mail_queue (
    id INTEGER PRIMARY KEY,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    failed_at TEXT,
    last_error TEXT
);
-- Only pending rows are indexed: sent mail accumulates, the timer's scan must not grow with it.
CREATE INDEX hl_mail_queue_due ON hl_mail_queue (next_attempt_at, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;
