-- Storage contract for money (core/db.c). Portable SQL: SQLite and PostgreSQL.
-- Idempotency keys: the first result of a request, returned to its repeats (hl_db_idempotent).
-- status is 0 only inside the transaction that claimed the key; created_at (ISO-8601 UTC) lets
-- a purge drop old keys.
CREATE TABLE hl_idempotency (
    scope TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL,
    body TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX hl_idempotency_created ON hl_idempotency (created_at);

-- Gapless counters per scope (hl_db_counter_next): invoice numbers.
CREATE TABLE hl_counters (
    scope TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
