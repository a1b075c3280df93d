-- A local group's look (themes issue), set by its coordinators: a logo (PNG, JPEG or WebP,
-- checked by its first bytes), two colours (#rrggbb, NULL for the site's), a one-line banner,
-- an intro in Markdown (rendered safe by the core) and links to its social profiles as a JSON
-- object {"facebook": url, "instagram": url, "mastodon": url, "website": url}.

ALTER TABLE market_groups ADD COLUMN logo BLOB;
ALTER TABLE market_groups ADD COLUMN logo_type TEXT;
ALTER TABLE market_groups ADD COLUMN color_primary TEXT;
ALTER TABLE market_groups ADD COLUMN color_accent TEXT;
ALTER TABLE market_groups ADD COLUMN banner TEXT NOT NULL DEFAULT '';
ALTER TABLE market_groups ADD COLUMN intro TEXT NOT NULL DEFAULT '';
ALTER TABLE market_groups ADD COLUMN social TEXT NOT NULL DEFAULT '{}';
