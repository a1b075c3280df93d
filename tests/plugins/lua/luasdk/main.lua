-- Lua test plugin: the SDK as Lua plugins see it (tests/integration/test_luaapi.py).

halle.declare_hook("luasdk.price", "filter")
halle.declare_hook("luasdk.noted", "action")

-- A filter chain of two callbacks: the first adds a fee, the second refuses dear prices.
halle.hook("luasdk.price", function(value) value.cents = value.cents + 100; return value end, 10)
halle.hook("luasdk.price", function(value)
  if value.cents > 10000 then return halle.stop(422, "trop cher") end
  return value
end, 20)
halle.hook("luasdk.noted", function(data)
  halle.db.exec("INSERT INTO luasdk_events (what) VALUES (?)", "noted " .. data.name)
end)

local function names(t, prefix, out)
  for k, v in pairs(t) do
    if type(v) == "function" then out[#out + 1] = prefix .. k
    elseif type(v) == "table" and prefix == "halle." then names(v, prefix .. k .. ".", out) end
  end
  return out
end

halle.route("GET", "/luasdk/names", function(req)
  local fields = {}
  for k in pairs(req) do fields[#fields + 1] = "req." .. k end
  return { json = { halle = names(halle, "halle.", {}), req = fields } }
end)

halle.route("GET", "/luasdk/format", function(req)
  local cents = math.tointeger(tonumber(req.query.cents or "1250"))
  local epoch = math.tointeger(tonumber(req.query.epoch or "0"))
  return { json = {
    lang = halle.req_lang(),
    price = halle.format_price(cents),
    price_en = halle.format_price(cents, "EUR", "en"),
    number = halle.format_number(1234.5, 1),
    date = halle.format_date(epoch),
    tr = halle.tr("Rechercher"),
    valid = halle.text_valid(req.query.text or "", 100) or false,
    fold = halle.fold(req.query.text or ""),
    like = halle.like_pattern(req.query.text or ""),
  } }
end)

halle.route("GET", "/luasdk/page", function(req)
  local page = halle.paginate(math.tointeger(tonumber(req.query.page or "1")) or 1, 10, 35, "/luasdk/page")
  return halle.render("page", { lang = halle.req_lang(), price = halle.format_price(1250), page = page })
end)

-- A write in a transaction: mode "ok" commits, "false" rolls back, "error" rolls back and fails.
halle.route("GET", "/luasdk/tx", function(req)
  local name, mode = req.query.name or "", req.query.mode or "ok"
  if not halle.text_valid(name, 200) then return { status = 400, body = "bad name" } end
  local r = halle.db.tx(function()
    halle.db.exec("INSERT INTO luasdk_notes (name, name_folded) VALUES (?, ?)", name, halle.fold(name))
    halle.run_action("luasdk.noted", { name = name })
    if mode == "false" then return false end
    if mode == "error" then error("deliberate failure inside the transaction") end
  end)
  return { json = { committed = r } }
end)

halle.route("GET", "/luasdk/search", function(req)
  local rows = halle.db.query("SELECT name FROM luasdk_notes WHERE ? = '' OR name_folded LIKE ? ESCAPE '\\' ORDER BY id",
                              halle.like_pattern(req.query.q or ""), halle.like_pattern(req.query.q or ""))
  local out = {}
  for _, r in ipairs(rows) do out[#out + 1] = r.name end
  return { json = { names = out, count = #out } }
end)

halle.route("GET", "/luasdk/filter", function(req)
  local v, stopped = halle.run_filter("luasdk.price", { cents = math.tointeger(tonumber(req.query.cents)) })
  if v == nil then return { json = { stopped = stopped } } end
  return { json = { cents = v.cents } }
end)
