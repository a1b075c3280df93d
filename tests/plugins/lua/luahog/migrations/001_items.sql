-- luahog's own table.
CREATE TABLE luahog_items (id INTEGER PRIMARY KEY, x INTEGER);
