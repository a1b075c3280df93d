-- Intermediate archive (a separate, access-restricted file, as the privacy policies require):
-- records kept only for legal obligations after their active life, each with its purge date.
CREATE TABLE hl_archive_records (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,         -- component and table the record came from
    source_id TEXT NOT NULL,
    reason TEXT NOT NULL,         -- legal basis for keeping it
    data TEXT NOT NULL,           -- JSON
    archived_at TEXT NOT NULL,
    purge_after TEXT NOT NULL
);
CREATE INDEX hl_archive_records_purge ON hl_archive_records (purge_after);
