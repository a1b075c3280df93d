-- How many times each hook or job reached the plugin (tests/integration/test_jobs.py).
CREATE TABLE luajobs_counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL, last TEXT);
