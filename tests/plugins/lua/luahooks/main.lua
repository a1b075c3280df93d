-- Adds a callback to every hook the core declares (the list below) and counts each call in
-- its table; filters pass their value through. tests/integration/test_hooks.py compares what
-- `halle hooks list` declares with what this table saw: a hook declared but never fired, or
-- declared and missing here, fails the test.
local hooks = {
  filter = { "request.before", "response.before", "ui.navigation", "render.context",
             "privacy.register", "cookies.declare" },
  action = { "routes.registered", "user.created", "cron.minutely", "cron.hourly", "cron.daily",
             "mail.sent" },
}

local function keys(value)
  if type(value) ~= "table" then return tostring(value) end
  local k = {}
  for name in pairs(value) do k[#k + 1] = tostring(name) end
  table.sort(k)
  return table.concat(k, ",")
end

local function seen(hook, value)
  halle.db.exec("INSERT INTO luahooks_seen (hook, n, last) VALUES (?, 1, ?) " ..
                "ON CONFLICT (hook) DO UPDATE SET n = luahooks_seen.n + 1, last = excluded.last",
                hook, keys(value))
end

for _, hook in ipairs(hooks.filter) do
  -- nil keeps the value as it is (an empty array would come back from Lua as an object)
  halle.hook(hook, function(value) seen(hook, value) end)
end
for _, hook in ipairs(hooks.action) do
  halle.hook(hook, function(data) seen(hook, data) end)
end

halle.privacy.declare{ purpose = "compter les crochets", legal_basis = "intérêt légitime",
                       data = "aucune", recipients = "personne", retention = "le temps du test" }
halle.cookies.declare{ name = "luahooks", purpose = "aucun", duration_days = 1 }

halle.route("GET", "/luahooks/mail", function(req)
  return { json = { id = halle.mail("hooks@example.org", "Crochets", "Bonjour") } }
end)
