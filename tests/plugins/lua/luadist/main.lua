-- Records every market.distribution.opened (the market's opening job fires it once per
-- distribution) with the data it carries and the clock's time: test_market_distributions.py
-- checks that each distribution opens once, when its opens_at has passed.
halle.hook("market.distribution.opened", function(data)
  halle.db.exec("INSERT INTO luadist_opened (distribution_id, group_slug, opens_at, seen_at) VALUES (?, ?, ?, ?)",
                data.id, data.slug, data.opens_at, tostring(halle.now()))
end)
