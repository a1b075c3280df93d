-- Search keys: the searched text folded by the SDK (api->fold: lower case, no accents), so
-- that "epeautre" finds "Épeautre" with LIKE on any database (SQLite's LIKE folds ASCII only,
-- PostgreSQL's not at all). Filled on every write by the market and, for rows written before
-- this migration, when the plugin starts (mk_fold_rows).
ALTER TABLE market_groups ADD COLUMN name_folded TEXT;
ALTER TABLE market_groups ADD COLUMN town_folded TEXT;
ALTER TABLE market_producers ADD COLUMN business_name_folded TEXT;
ALTER TABLE market_producers ADD COLUMN town_folded TEXT;
ALTER TABLE market_catalogs ADD COLUMN name_folded TEXT;
ALTER TABLE market_products ADD COLUMN name_folded TEXT;
ALTER TABLE market_products ADD COLUMN ref_folded TEXT;
ALTER TABLE market_products ADD COLUMN description_folded TEXT;
ALTER TABLE market_api_tokens ADD COLUMN name_folded TEXT;
-- Rows without their keys (written behind the market's back, by SQL) are found through these
-- before a search and given theirs (mk_search_ready).
CREATE INDEX market_groups_name_folded ON market_groups (name_folded);
CREATE INDEX market_producers_name_folded ON market_producers (business_name_folded);
CREATE INDEX market_catalogs_name_folded ON market_catalogs (name_folded);
CREATE INDEX market_products_name_folded ON market_products (name_folded);
CREATE INDEX market_api_tokens_name_folded ON market_api_tokens (name_folded);
