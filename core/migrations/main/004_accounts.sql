-- Accounts (core/accounts.c). Secrets are stored only as hashes.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,            -- normalised
    name TEXT NOT NULL,
    phone TEXT,
    address TEXT,
    password_hash TEXT NOT NULL,
    email_verified_at TEXT,
    terms_version TEXT NOT NULL,
    terms_accepted_at TEXT NOT NULL,
    age_certified_at TEXT NOT NULL,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until TEXT,                     -- temporary lock
    locked_hard INTEGER NOT NULL DEFAULT 0, -- until an operator unlocks
    created_at TEXT NOT NULL,
    deleted_at TEXT
);

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id),
    role INTEGER NOT NULL,                 -- HL_ROLE_* bit
    group_id INTEGER NOT NULL DEFAULT 0,   -- for coordinators; 0 otherwise
    PRIMARY KEY (user_id, role, group_id)
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,              -- hex hash of the cookie value
    user_id INTEGER NOT NULL REFERENCES users (id),
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE user_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id),
    kind TEXT NOT NULL,                    -- verify, reset, email
    extra TEXT,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE INDEX user_tokens_user ON user_tokens (user_id, kind);

CREATE TABLE hl_rate_limits (
    key TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    hits INTEGER NOT NULL
);
