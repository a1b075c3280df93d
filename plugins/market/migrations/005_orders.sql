-- Selling (marketplace part 2): distributions with their order windows, the producers and
-- catalogs taking part, carts, orders and their lines, and each member's notification choices.
-- Times are UTC ISO-8601 text as everywhere ("2026-12-05T17:00:00Z"); money is integer cents.

-- The order window by default: orders open N days before a distribution, close M hours before.
ALTER TABLE market_groups ADD COLUMN open_days_before INTEGER NOT NULL DEFAULT 7;
ALTER TABLE market_groups ADD COLUMN close_hours_before INTEGER NOT NULL DEFAULT 24;
-- Minimum and maximum of one order, 0 = none.
ALTER TABLE market_groups ADD COLUMN min_order_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE market_groups ADD COLUMN max_order_cents INTEGER NOT NULL DEFAULT 0;

-- A recurring series (weekly, every two weeks, monthly) made in one step: its distributions
-- point to it, so that the series can be told apart and extended.
CREATE TABLE market_distribution_series (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    every TEXT NOT NULL,                -- week, 2weeks, month
    created_by INTEGER NOT NULL,        -- hl_users.id
    created_at TEXT NOT NULL
);

CREATE TABLE market_distributions (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    place_id INTEGER REFERENCES market_places (id),
    series_id INTEGER REFERENCES market_distribution_series (id),
    starts_at TEXT NOT NULL,            -- pickup from
    ends_at TEXT NOT NULL,              -- pickup until
    opens_at TEXT NOT NULL,             -- orders from
    closes_at TEXT NOT NULL,            -- orders until (then the closing job freezes them)
    note TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'planned', -- planned, cancelled, closed (frozen by the job)
    created_by INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    closed_at TEXT,
    cancelled_at TEXT
);
CREATE INDEX market_distributions_group ON market_distributions (group_id, starts_at);
CREATE INDEX market_distributions_closing ON market_distributions (status, closes_at);

-- The producers taking part: invited when the distribution is made (the group's accepted
-- producers), then each confirms or declines and chooses the catalogs offered.
CREATE TABLE market_distribution_producers (
    distribution_id INTEGER NOT NULL REFERENCES market_distributions (id),
    producer_id INTEGER NOT NULL REFERENCES market_producers (id),
    status TEXT NOT NULL,               -- invited, confirmed, declined
    decided_at TEXT,
    PRIMARY KEY (distribution_id, producer_id)
);
CREATE TABLE market_distribution_catalogs (
    distribution_id INTEGER NOT NULL REFERENCES market_distributions (id),
    catalog_id INTEGER NOT NULL REFERENCES market_catalogs (id),
    PRIMARY KEY (distribution_id, catalog_id)
);

-- A cart: quantities per product for one distribution, kept for a visitor (by a random cart
-- key in a cookie, hashed here) or a member, so that it survives login and sign-up.
CREATE TABLE market_carts (
    id INTEGER PRIMARY KEY,
    key_hash TEXT UNIQUE,               -- hex SHA-256 of the visitor's cart cookie, NULL once owned
    user_id INTEGER,                    -- hl_users.id once the visitor is known
    distribution_id INTEGER NOT NULL REFERENCES market_distributions (id),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX market_carts_user ON market_carts (user_id, distribution_id);
CREATE TABLE market_cart_items (
    cart_id INTEGER NOT NULL REFERENCES market_carts (id),
    product_id INTEGER NOT NULL REFERENCES market_products (id),
    count INTEGER NOT NULL,             -- how many of the product's unit (> 0)
    PRIMARY KEY (cart_id, product_id)
);

-- One order per member and distribution; changing it rewrites its lines, cancelling keeps them.
CREATE TABLE market_orders (
    id INTEGER PRIMARY KEY,
    distribution_id INTEGER NOT NULL REFERENCES market_distributions (id),
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    user_id INTEGER NOT NULL,           -- hl_users.id
    status TEXT NOT NULL,               -- placed, cancelled
    payment TEXT NOT NULL DEFAULT 'at_pickup', -- at_pickup until a payment provider is enabled
    total_cents INTEGER NOT NULL,
    placed_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    cancelled_at TEXT,
    UNIQUE (distribution_id, user_id)
);
CREATE INDEX market_orders_user ON market_orders (user_id, placed_at);
-- What was sold, copied at the time of the order: later changes to the product leave it alone.
CREATE TABLE market_order_lines (
    order_id INTEGER NOT NULL REFERENCES market_orders (id),
    product_id INTEGER NOT NULL REFERENCES market_products (id),
    producer_id INTEGER NOT NULL REFERENCES market_producers (id),
    name TEXT NOT NULL,
    unit TEXT NOT NULL,
    quantity REAL NOT NULL,             -- of the unit, per item (0.5 kg)
    count INTEGER NOT NULL,             -- items ordered
    price_cents INTEGER NOT NULL,       -- per item, VAT included
    vat_rate_bp INTEGER NOT NULL,
    line_cents INTEGER NOT NULL,        -- count * price_cents
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX market_order_lines_producer ON market_order_lines (producer_id);

-- Mail notifications a member turned off (none by default): orders_open, closing_soon,
-- pickup_tomorrow, group_events.
CREATE TABLE market_notification_optouts (
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, kind)
);
