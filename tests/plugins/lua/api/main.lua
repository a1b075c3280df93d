-- A plugin named "api": once, its name alone exempted every route from the CSRF check.
halle.route("POST", "/api-plugin/act", function(req)
  return { json = { acted = true, user = req.user and req.user.id or false } }
end)
-- Declared token-authenticated: no CSRF token needed, and no session user either.
halle.route("POST", "/api-plugin/token", function(req)
  return { json = { token = req.header("X-Test") or false, user = req.user and req.user.id or false } }
end, { token_auth = true })
