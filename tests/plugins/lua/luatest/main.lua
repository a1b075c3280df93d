-- Lua test plugin: every route exercises one part of the plugin API or one sandbox rule.
local helpers = require("helpers")

halle.route("GET", "/luatest/hello/(?<name>[a-z]+)", function(req)
  local g = halle.setting("greeting")
  local text = g .. " " .. req.params.name
  if halle.setting("shout") then text = string.upper(text) end
  return { status = 200, content_type = "text/plain; charset=utf-8", body = string.rep(text, halle.setting("times"), " ") }
end)

halle.route("GET", "/luatest/twice", function(req) return helpers.twice("ab") end)
halle.route("GET", "/luatest/error", function(req) error("deliberate failure") end)
halle.route("GET", "/luatest/loop", function(req) while true do end end)
halle.route("GET", "/luatest/pcall-loop", function(req)
  while true do pcall(function() while true do end end) end
end)
halle.route("GET", "/luatest/coroutine-loop", function(req)
  local co = coroutine.wrap(function() while true do end end)
  co()
end)
-- Grows by 8 MB at a time: the 32 MiB cap is passed in a few steps, long before the time
-- limit, even on a slow machine (the test expects "memory limit exceeded", not a time-out).
halle.route("GET", "/luatest/membomb", function(req)
  local t = {}
  while true do t[#t + 1] = string.rep("x", 8 * 1024 * 1024) .. #t end
end)
halle.route("GET", "/luatest/pattern", function(req)
  return string.match(string.rep("a", 30) .. "b", "(a*)*c") or "no"
end)
halle.route("GET", "/luatest/re", function(req)
  local y, m = halle.re.match("2026-11-25", "(\\d+)-(\\d+)")
  return { json = { year = y, month = m } }
end)

-- Each escape attempt reports what happened; the test expects every one to be blocked.
halle.route("GET", "/luatest/escape", function(req)
  local r = {}
  r.io = type(io)
  r.os_execute = type(os.execute)
  r.debug = type(debug)
  r.dofile = type(dofile)
  r.loadfile = type(loadfile)
  r.package = type(package)
  r.dump = type(string.dump)
  r.bytecode = select(2, pcall(load, "\27Lua\84\0"))
  r.bytecode_ok = (load("\27Lua\84\0") ~= nil)
  r.require_outside = select(1, pcall(require, "../../etc/passwd"))
  return { json = r }
end)

halle.route("POST", "/luatest/items", function(req)
  halle.db.exec("INSERT INTO luatest_items (label) VALUES (?)", req.form.label)
  return { status = 201, json = halle.db.query("SELECT id, label FROM luatest_items ORDER BY id") }
end)

-- Attempts to read what a plugin must not: each returns the error it got.
local function try(sql)
  local ok, err = pcall(halle.db.query, sql)
  return { ok = ok, err = (not ok) and tostring(err) or nil }
end
halle.route("GET", "/luatest/steal", function(req)
  return { json = {
    password = try("SELECT password_hash FROM hl_users"),
    star = try("SELECT * FROM hl_users"),
    names = try("SELECT name FROM hl_users"),
    other_plugin = try("SELECT * FROM luaother_secrets"),
    declared_lua = try("SELECT * FROM luabroken_data"),
    sessions = try("SELECT user_id FROM hl_sessions"),
    archive = try("ATTACH DATABASE 'data/archive.db' AS a"),
    pragma = try("PRAGMA table_info(users)"),
    schema = try("CREATE TABLE products2 (x)"),
    drop = try("DROP TABLE products"),
    write_core = try("INSERT INTO products (name) VALUES ('x')"),
    master = try("SELECT sql FROM sqlite_master"),
    products = try("SELECT name FROM products"),
    -- leaving the plugin's role or reading the catalog (PostgreSQL; refused on SQLite too)
    reset_role = try("RESET ROLE"),
    set_role = try("SET ROLE postgres"),
    set_config = try("SELECT set_config('role', 'postgres', false)"),
    escaped = try("SELECT E'\\'', set_config('role', 'postgres', false) --'"),
    dollar = try("SELECT $x$ $x$, set_config('role', 'postgres', false)"),
    quoted = try("SELECT \"set_config\"('role', 'postgres', false)"),
    catalog = try("SELECT rolname FROM pg_roles"),
    end_tx = try("COMMIT"),
    two = try("SELECT 1; SELECT 2"),
  } }
end)

halle.hook("request.before", function(value, req)
  if value.path == "/luatest/hello/refused" then return halle.stop(409, "refused by luatest") end
end, 8)
halle.hook("response.before", function(value, req)
  local t = value.headers["X-Hook-Trace"]
  value.headers["X-Hook-Trace"] = (t and (t .. ",") or "") .. "lua10"
  return value
end)

halle.privacy.declare({ purpose = "test data", legal_basis = "legitimate interest", retention = "1 year" })
halle.cookies.declare({ name = "luatest_pref", purpose = "remember a choice", duration_days = 30 })
halle.log("info", "luatest loaded")

-- API version 2: templates of the plugin, the core's permission check, the mail queue.
halle.route("GET", "/luatest/page", function(req)
  return halle.render("page", { title = "Page", name = req.query.name or "?", items = { "a<b", "c" },
                                trusted = "<em>ok</em>" })
end)
halle.route("GET", "/luatest/whoami", function(req)
  return { json = { user = req.user and req.user.id or false,
                    operator = halle.can(req, "view", "operator_pages"),
                    own_account = req.user and halle.can(req, "edit", "user_account", req.user.id) or false } }
end)
-- A capability of the plugin's own: any user edits the notes they own, operators view all.
local note_id = halle.capability("luatest.note", {
  { scope = "owner", actions = { "view", "edit" } },
  { role = "operator", scope = "any", actions = { "view" } },
})
halle.route("GET", "/luatest/cap", function(req)
  local owner = tonumber(req.query.owner) or 0
  return { json = { id = note_id, view = halle.can(req, "view", "luatest.note", owner),
                    edit = halle.can(req, "edit", "luatest.note", owner),
                    delete = halle.can(req, "delete", "luatest.note", owner),
                    other = halle.can(req, "view", "luatest.nothing", owner),
                    foreign = pcall(halle.capability, "market.mine", {}) } }
end)
halle.route("GET", "/luatest/mail", function(req)
  return { json = { id = halle.mail("news@example.org", "Lettre de test", "Bonjour") } }
end)
halle.route("GET", "/luatest/badtemplate", function(req) return halle.render("../../etc/passwd", {}) end)
halle.route("GET", "/luatest/md", function(req)
  return halle.markdown("**gras** <script>alert(1)</script> [lien](javascript:alert(1)) [ok](https://example.org)")
end)
