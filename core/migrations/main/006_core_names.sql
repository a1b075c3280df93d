-- Every core table under the hl_ prefix. A plugin owns the tables named after it (NAME_*), so
-- a plugin called "user" would otherwise have owned user_roles and user_tokens. ALTER TABLE
-- ... RENAME keeps the foreign keys that point at the renamed tables.
ALTER TABLE users RENAME TO hl_users;
ALTER TABLE user_roles RENAME TO hl_user_roles;
ALTER TABLE sessions RENAME TO hl_sessions;
ALTER TABLE user_tokens RENAME TO hl_user_tokens;
DROP INDEX sessions_user;
CREATE INDEX hl_sessions_user ON hl_sessions (user_id);
DROP INDEX user_tokens_user;
CREATE INDEX hl_user_tokens_user ON hl_user_tokens (user_id, kind);
