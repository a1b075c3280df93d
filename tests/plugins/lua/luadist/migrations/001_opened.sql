CREATE TABLE luadist_opened (
    distribution_id INTEGER NOT NULL,
    group_slug TEXT NOT NULL,
    opens_at TEXT NOT NULL,
    seen_at TEXT NOT NULL
);
