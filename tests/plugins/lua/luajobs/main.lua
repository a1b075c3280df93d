-- Counts what the jobs process hands a Lua plugin: the cron.* hooks, mail.sent, its own
-- recurring job and its once-job (with the payload), each with the clock's time.
local function count(name, last)
  halle.db.exec("INSERT INTO luajobs_counts (name, n, last) VALUES (?, 1, ?) " ..
                "ON CONFLICT (name) DO UPDATE SET n = luajobs_counts.n + 1, last = excluded.last",
                name, last or tostring(halle.now()))
end

for _, hook in ipairs({"cron.minutely", "cron.hourly", "cron.daily"}) do
  halle.hook(hook, function(data) count(hook, data and data.time) end)
end
halle.hook("mail.sent", function(data) count("mail.sent", data and data.to) end)

halle.job("every2h", "every 7200", function() count("luajobs.every2h") end)
halle.job("note", "once", function(payload)
  if payload == "boom" then error("note refuses boom") end
  count("luajobs.note", payload)
end)

halle.route("GET", "/luajobs/note/(?<text>[a-z]+)", function(req)
  return { body = "queued " .. halle.job_at("note", 0, req.params.text) }
end)

-- A contained plugin must not queue another plugin's job (with a payload of its choosing).
halle.route("GET", "/luajobs/steal", function(req)
  local ok, err = pcall(halle.job_at, "testc.echo", 0, "stolen")
  return { body = ok and "queued" or ("refused: " .. tostring(err)) }
end)
