-- Share links on a local group's page, for the groups that turn the plugin on. Plain links:
-- nothing is loaded from a social network until the visitor clicks, so no consent is needed.
-- Percent-encodes s for a URL (string patterns are not available in plugins: a byte loop).
local function enc(s)
  local out = {}
  for i = 1, #s do
    local b = s:byte(i)
    local c = string.char(b)
    if (b >= 48 and b <= 57) or (b >= 65 and b <= 90) or (b >= 97 and b <= 122) or c == "-" or c == "." or c == "_" or c == "~" then
      out[#out + 1] = c
    else
      out[#out + 1] = string.format("%%%02X", b)
    end
  end
  return table.concat(out)
end

halle.hook("market.group.blocks", function(value, req)
  if not value.group_id or not halle.enabled_for("group:" .. value.group_id) then return end
  local url, name = value.url or "", value.name or ""
  local links = { { label = "E-mail", href = "mailto:?subject=" .. enc(name) .. "&body=" .. enc(url) } }
  if halle.setting("networks") == "all" then
    links[#links + 1] = { label = "Facebook", href = "https://www.facebook.com/sharer/sharer.php?u=" .. enc(url) }
    links[#links + 1] = { label = "Mastodon", href = "https://mastodonshare.com/?text=" .. enc(name) .. "&url=" .. enc(url) }
    links[#links + 1] = { label = "LinkedIn", href = "https://www.linkedin.com/sharing/share-offsite/?url=" .. enc(url) }
  end
  value.blocks = value.blocks or {}
  value.blocks[#value.blocks + 1] = { plugin = "social", html = halle.render("share", { links = links, name = name }) }
  return value
end)
