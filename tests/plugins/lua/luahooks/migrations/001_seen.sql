-- How many times each core hook reached the plugin, and the last value's keys.
CREATE TABLE luahooks_seen (hook TEXT PRIMARY KEY, n INTEGER NOT NULL, last TEXT);
