-- Failed logins for addresses that have no account, counted like an account's own
-- (hl_users.failed_logins) so that answers and locks never tell whether an address has an
-- account. Keyed by a hash of the normalised address, not the address: halle does not keep the
-- addresses strangers typed. Purged 90 days after the last failure.
CREATE TABLE hl_login_failures (
    address_hash TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure INTEGER NOT NULL
);
