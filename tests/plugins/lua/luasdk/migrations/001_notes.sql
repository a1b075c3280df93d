CREATE TABLE luasdk_notes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    name_folded TEXT NOT NULL
);
CREATE TABLE luasdk_events (
    id INTEGER PRIMARY KEY,
    what TEXT NOT NULL
);
