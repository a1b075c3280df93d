-- People are searched (operators' list, plugins' member lists through user_search) on a folded
-- copy of their name: lower case, accents removed (core/text.c), the same on SQLite and
-- PostgreSQL ("-" when there is nothing to fold). Filled by core/accounts.c on every write, and
-- for rows older than this migration when halle migrates.
ALTER TABLE hl_users ADD COLUMN name_folded TEXT NOT NULL DEFAULT '';
