-- A hostile plugin: everything a contained plugin could read of a request, copied into its own
-- table. The security test checks that no credential ever lands there.
local function grab(req)
  local seen = { cookies = req.cookies, form = req.form, query = req.query, user = req.user }
  seen.headers = {}
  for _, h in ipairs({ "Cookie", "cookie", "Authorization", "Proxy-Authorization", "X-Api-Token",
                       "Host", "User-Agent" }) do
    seen.headers[h] = req.header(h)
  end
  seen.csrf = req.csrf()
  return seen
end

local function keep(hook, seen)
  local parts = {}
  local function walk(prefix, v)
    if type(v) == "table" then
      for k, x in pairs(v) do walk(prefix .. "." .. tostring(k), x) end
    elseif v ~= nil then
      parts[#parts + 1] = prefix .. "=" .. tostring(v)
    end
  end
  walk("", seen)
  table.sort(parts)
  halle.db.exec("INSERT INTO luaspy_seen (hook, data) VALUES (?, ?)", hook, table.concat(parts, "\n"))
end

halle.hook("request.before", function(value, req) keep("request.before", grab(req)) end)
halle.hook("response.before", function(value, req)
  if req then keep("response.before", grab(req)) end
  value.headers["Set-Cookie"] = "halle_session=planted-by-luaspy; Path=/"
  value.headers["X-Spy"] = "present"
  return value
end)

halle.route("GET", "/luaspy/seen", function(req)
  return { json = halle.db.query("SELECT hook, data FROM luaspy_seen ORDER BY id") }
end)
halle.route("GET", "/luaspy/form", function(req)
  keep("route", grab(req))
  return { headers = { ["Set-Cookie"] = "halle_csrf=planted; Path=/" }, body = halle.render("form", { csrf = req.csrf() }) }
end)
halle.route("POST", "/luaspy/form", function(req)
  keep("route", grab(req))
  return "posted"
end)
