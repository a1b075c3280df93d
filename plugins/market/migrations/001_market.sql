-- The marketplace (plugins/market): local groups and their members, producers' own accounts,
-- catalogs and products. Prices are integer cents incl. VAT and VAT rates in basis points, so
-- that no amount is ever a float. The order side (distributions, orders, invoices) will refer
-- to market_groups, market_producers and market_products.

CREATE TABLE market_groups (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,                 -- buying_group, amap, farm_shop
    join_policy TEXT NOT NULL,          -- open, approval, waiting_list, closed, full
    address TEXT NOT NULL DEFAULT '',
    postcode TEXT NOT NULL DEFAULT '',
    town TEXT NOT NULL DEFAULT '',
    theme TEXT,                         -- the group's theme (themes issue), NULL = site theme
    created_by INTEGER NOT NULL,        -- users.id
    created_at TEXT NOT NULL
);
CREATE INDEX market_groups_town ON market_groups (town);
CREATE INDEX market_groups_name ON market_groups (name);

-- Distribution places of a group.
CREATE TABLE market_places (
    id INTEGER PRIMARY KEY,
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    name TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    postcode TEXT NOT NULL DEFAULT '',
    town TEXT NOT NULL DEFAULT ''
);
CREATE INDEX market_places_group ON market_places (group_id);

-- Members and coordinators. status: active, pending (asked, on approval), waiting (waiting
-- list, ordered by requested_at), declined.
CREATE TABLE market_members (
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    user_id INTEGER NOT NULL,
    role TEXT NOT NULL,                 -- member, coordinator
    status TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    decided_at TEXT,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX market_members_user ON market_members (user_id);
CREATE INDEX market_members_status ON market_members (group_id, status, requested_at);

-- A producer's own account, opened by the producer (never by a coordinator).
CREATE TABLE market_producers (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL UNIQUE,
    slug TEXT NOT NULL UNIQUE,
    business_name TEXT NOT NULL,
    siret TEXT NOT NULL,                -- 14 digits, Luhn key checked
    vat_number TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    postcode TEXT NOT NULL DEFAULT '',
    town TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    charter_version TEXT NOT NULL,
    charter_accepted_at TEXT NOT NULL,
    plan TEXT NOT NULL DEFAULT 'discovery',   -- discovery, pro, member (plans issue)
    created_at TEXT NOT NULL
);
CREATE INDEX market_producers_name ON market_producers (business_name);

CREATE TABLE market_producer_photos (
    id INTEGER PRIMARY KEY,
    producer_id INTEGER NOT NULL REFERENCES market_producers (id),
    content_type TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at TEXT NOT NULL
);

-- A producer asks to join a group's producers; the coordinator accepts or declines.
CREATE TABLE market_group_producers (
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    producer_id INTEGER NOT NULL REFERENCES market_producers (id),
    status TEXT NOT NULL,               -- pending, accepted, declined
    requested_at TEXT NOT NULL,
    decided_at TEXT,
    PRIMARY KEY (group_id, producer_id)
);

-- Shared taxonomy of product categories.
CREATE TABLE market_categories (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    parent_id INTEGER REFERENCES market_categories (id)
);
INSERT INTO market_categories (id, slug, name, parent_id) VALUES
    (1, 'fruits', 'Fruits', NULL), (2, 'legumes', 'Légumes', NULL), (3, 'cremerie', 'Crèmerie', NULL),
    (4, 'fromages', 'Fromages', 3), (5, 'oeufs', 'Œufs', NULL), (6, 'viandes', 'Viandes', NULL),
    (7, 'volailles', 'Volailles', 6), (8, 'poissons', 'Poissons', NULL), (9, 'boulangerie', 'Pain et boulangerie', NULL),
    (10, 'epicerie', 'Épicerie', NULL), (11, 'miel', 'Miel et confitures', 10), (12, 'boissons', 'Boissons', NULL),
    (13, 'plantes', 'Plants et fleurs', NULL), (14, 'autres', 'Autres', NULL);

CREATE TABLE market_catalogs (
    id INTEGER PRIMARY KEY,
    producer_id INTEGER NOT NULL REFERENCES market_producers (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE INDEX market_catalogs_producer ON market_catalogs (producer_id);

-- The groups a catalog is offered to (only groups that accepted the producer).
CREATE TABLE market_catalog_groups (
    catalog_id INTEGER NOT NULL REFERENCES market_catalogs (id),
    group_id INTEGER NOT NULL REFERENCES market_groups (id),
    PRIMARY KEY (catalog_id, group_id)
);

CREATE TABLE market_products (
    id INTEGER PRIMARY KEY,
    catalog_id INTEGER NOT NULL REFERENCES market_catalogs (id),
    producer_id INTEGER NOT NULL REFERENCES market_producers (id),
    ref TEXT NOT NULL DEFAULT '',       -- the producer's own reference, unique per catalog when set
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    unit TEXT NOT NULL,                 -- piece, kg, g, l, ml, bulk
    quantity REAL NOT NULL DEFAULT 1,   -- how much of the unit one item is (e.g. 0.5 kg)
    price_cents INTEGER NOT NULL,       -- incl. VAT
    vat_rate_bp INTEGER NOT NULL,       -- basis points: 550 = 5.5 %
    organic INTEGER NOT NULL DEFAULT 0,
    category_id INTEGER REFERENCES market_categories (id),
    stock REAL,                         -- NULL = not tracked
    image BLOB,
    image_type TEXT,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX market_products_catalog ON market_products (catalog_id, name);
CREATE INDEX market_products_producer ON market_products (producer_id, name);
CREATE INDEX market_products_name ON market_products (name);

-- Read-only API tokens that operators issue to partners (only the hash is stored).
CREATE TABLE market_api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_by INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    last_used_at TEXT
);
