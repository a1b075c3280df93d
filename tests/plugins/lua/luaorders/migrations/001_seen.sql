-- Each market order hook this plugin saw, with its order or distribution.
CREATE TABLE luaorders_seen (id INTEGER PRIMARY KEY, hook TEXT NOT NULL, object_id INTEGER NOT NULL, total_cents INTEGER);
