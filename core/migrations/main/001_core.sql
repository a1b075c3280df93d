-- Core schema: the connection log (date, time, IP, protocol, method, page, status) that the
-- privacy policy promises; purged by the retention engine (6 months by default).
CREATE TABLE hl_connection_log (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    ip TEXT NOT NULL,
    protocol TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX hl_connection_log_at ON hl_connection_log (at);

-- Instance-wide settings set by the operator (plugins keep theirs in their own tables).
CREATE TABLE hl_settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
