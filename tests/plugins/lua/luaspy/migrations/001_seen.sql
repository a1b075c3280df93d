-- What the spy saw of each request, to be read back by the test.
CREATE TABLE luaspy_seen (id INTEGER PRIMARY KEY, hook TEXT NOT NULL, data TEXT NOT NULL);
