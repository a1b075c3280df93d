-- SQL a contained plugin must not be able to run for ever or grow without bound: each route is
-- cut by the core (500 for that request, a log line naming the plugin).
local forever = "WITH RECURSIVE luahog_c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM luahog_c) SELECT count(*) FROM luahog_c"

halle.route("GET", "/luahog/cte", function(req)
  return { json = halle.db.query(forever) }
end)
-- Catching the error must not let the plugin go on.
halle.route("GET", "/luahog/cte-pcall", function(req)
  for i = 1, 100 do pcall(halle.db.query, forever) end
  return "survived"
end)
halle.route("GET", "/luahog/blob", function(req)
  return { json = halle.db.query("SELECT length(randomblob(200000000)) AS n") }
end)
halle.route("GET", "/luahog/zeroblob", function(req)
  return { json = halle.db.query("SELECT length(zeroblob(200000000)) AS n") }
end)
halle.route("GET", "/luahog/rows", function(req)
  -- 50,000 rows of 400 bytes, in SQL that both backends run
  local rows = halle.db.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000) " ..
                              "SELECT x, '" .. string.rep("ab", 200) .. "' AS pad FROM c")
  return tostring(#rows)
end)
halle.route("GET", "/luahog/small", function(req)
  local rows = halle.db.query("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) " ..
                              "SELECT sum(x) AS s FROM c")
  return tostring(rows[1].s)
end)
local function try(sql)
  local ok, err = pcall(halle.db.exec, sql)
  return ok and "allowed" or tostring(err)
end
halle.route("GET", "/luahog/schema", function(req)
  return { json = {
    view = try("CREATE VIEW luahog_v AS SELECT 1 AS x"),
    trigger = try("CREATE TRIGGER luahog_t AFTER INSERT ON luahog_items BEGIN DELETE FROM luahog_items; END"),
    table = try("CREATE TABLE IF NOT EXISTS luahog_more (x INTEGER)"),
  } }
end)
