-- Notifications (marketplace part 2): the mails sent once per distribution (orders_open,
-- closing_soon, pickup_tomorrow), recorded in the transaction that queues them so that no
-- later run sends them again; and the key that signs the one-click turn-off links of every
-- notification mail (HMAC-SHA256 of "USER_ID:KIND"), made at random at first use.
CREATE TABLE market_notifications_sent (
    distribution_id INTEGER NOT NULL REFERENCES market_distributions (id),
    kind TEXT NOT NULL,
    sent_at TEXT NOT NULL,
    recipients INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (distribution_id, kind)
);
CREATE TABLE market_notification_keys (
    id INTEGER PRIMARY KEY,             -- 1: the key in use
    secret TEXT NOT NULL,               -- 64 hex characters (32 random bytes)
    created_at TEXT NOT NULL
);
