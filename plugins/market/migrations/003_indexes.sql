-- Lookups of the CSV import (a product by its reference in a catalog) and of a producer's
-- groups, so that they stay fast with many rows.
CREATE INDEX market_products_ref ON market_products (catalog_id, ref);
CREATE INDEX market_group_producers_producer ON market_group_producers (producer_id, status);
