-- People are searched (operators' list, plugins' member lists through user_search) on a folded
-- copy of their name and address: lower case, accents removed (core/text.c), the same on SQLite
-- and PostgreSQL. Filled by core/accounts.c on every write, and for rows older than this
-- migration when halle migrates.
ALTER TABLE hl_users ADD COLUMN search_folded TEXT NOT NULL DEFAULT '';
