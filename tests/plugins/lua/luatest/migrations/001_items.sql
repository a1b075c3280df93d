-- luatest's own table: plugins create only tables named after themselves.
CREATE TABLE luatest_items (id INTEGER PRIMARY KEY, label TEXT NOT NULL);
