-- Distributions (marketplace part 2): when the opening job told that a distribution's orders
-- opened (market.distribution.opened fires once per distribution), NULL until then.
ALTER TABLE market_distributions ADD COLUMN opened_at TEXT;
CREATE INDEX market_distributions_opening ON market_distributions (status, opened_at, opens_at);
