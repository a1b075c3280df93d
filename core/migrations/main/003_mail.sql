-- Outgoing mail queue: written by requests, sent by a timer (core/mail.c).
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
CREATE INDEX hl_mail_queue_due ON hl_mail_queue (sent_at, failed_at, next_attempt_at);
