# Hostile Lua plugins against the real server (docs/security.md): a plugin that copies every
# request it sees, from request.before / response.before hooks and its own routes, must never
# get a credential (session or CSRF cookie, Authorization, the CSRF token itself), and cannot
# plant the core's cookies; its forms still work, the token being filled in by the core.
import json
import os
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run, SRC_DIR  # noqa: E402

LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")
PASSWORD = "Sp1der-Web!x"


def test_credentials_hidden(t, inst, srv):
    b = Browser(srv.port)
    st, h, page = b.submit("/login", "/login", {"email": "lise@example.org", "password": PASSWORD})
    t.eq(st, 303, "the victim logs in")
    session = b.cookies.get("halle_session", "")
    t.ok(len(session) > 20, "the victim has a session cookie", b.cookies)

    # The spy's own route renders a form with req.csrf(): the page carries the real token.
    st, h, page = b.request("GET", "/luaspy/form", headers={"Authorization": "Bearer s3cr3t-bearer-token",
                                                              "X-Api-Token": "s3cr3t-api-token"})
    token = b.csrf(page)
    t.ok(st == 200 and len(token) > 20 and "halle-csrf-" not in page,
         "a Lua plugin's form carries the real CSRF token, filled in by the core", page[:300])
    t.ok(b.cookies.get("halle_csrf") != "planted" and all("halle_csrf=planted" not in c for c in b.last_set_cookies),
         "a Lua route cannot set the core's CSRF cookie", b.last_set_cookies)
    t.ok(all("planted-by-luaspy" not in c for c in b.last_set_cookies),
         "a response.before hook cannot plant a session cookie", b.last_set_cookies)
    t.eq(h.get("X-Spy"), "present", "the hook's other headers are still sent")
    st, h, body = b.request("POST", "/luaspy/form", form={"_csrf": token, "x": "1"})
    t.ok(st == 200 and body == "posted", "the form posts with the filled-in token", (st, body[:200]))
    st, h, body = b.request("POST", "/luaspy/form", form={"_csrf": "halle-csrf-" + "0" * 24, "x": "1"})
    t.eq(st, 403, "the placeholder itself is no token")
    b.request("GET", "/", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    seen = json.loads(b.get("/luaspy/seen")[2])
    hooks = {row["hook"] for row in seen}
    t.ok({"request.before", "response.before", "route"} <= hooks, "the spy saw requests from hooks and routes", hooks)
    everything = "\n".join(row["data"] for row in seen)
    for secret, what in ((session, "the session cookie"), (token, "the CSRF token"),
                         ("s3cr3t-bearer-token", "the bearer token"), ("s3cr3t-api-token", "the API token header"),
                         ("dXNlcjpwYXNz", "Basic credentials")):
        t.ok(secret not in everything, "a Lua plugin never sees %s" % what, everything[:2000])
    t.ok("halle_session" not in everything and "halle_csrf" not in everything and "_csrf" not in everything,
         "the credential cookies and the form's _csrf field are not even listed", everything[:2000])
    t.ok(".user.id=" in everything and ".user.roles.1=client" in everything,
         "the plugin gets the verified identity (id, roles) instead", everything[:2000])
    t.ok(".headers.Host=" in everything,
         "ordinary headers are still readable", everything[:2000])

    # The victim's session still works: nothing was replaced.
    st, h, page = b.get("/account")
    t.eq(st, 200, "the victim's session was not overwritten")


USER_PLUGIN = {
    "plugin.json": '{"name": "user", "version": "1.0.0", "description": "hostile: named like the stem of core tables"}',
    # Once, a plugin named "user" owned user_roles and user_tokens through its prefix.
    "migrations/001_grab.sql": "CREATE TABLE user_roles (user_id INTEGER, role INTEGER, group_id INTEGER);\n"
                                "INSERT INTO user_roles (user_id, role, group_id) VALUES (1, 8, 0);\n",
    "main.lua": """
local function try(sql, ...)
  local ok, err = pcall(halle.db.exec, sql, ...)
  return ok and "allowed" or tostring(err)
end
halle.route("GET", "/user/escalate", function(req)
  return { json = {
    roles = try("INSERT INTO hl_user_roles (user_id, role, group_id) VALUES (1, 8, 0)"),
    tokens = try("DELETE FROM hl_user_tokens"),
    sessions = try("UPDATE hl_sessions SET user_id = 1"),
    users = try("UPDATE hl_users SET name = 'pwned'"),
  } }
end)
""",
}


def write_plugin(root, name, files):
    d = os.path.join(root, name)
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "w") as f:
            f.write(text)


def test_names(t, inst, extra):
    write_plugin(extra, "user", USER_PLUGIN)
    write_plugin(extra, "hl", {"plugin.json": '{"name": "hl", "version": "1", "description": "x"}', "main.lua": ""})
    write_plugin(extra, "sqlite", {"plugin.json": '{"name": "sqlite", "version": "1", "description": "x"}', "main.lua": ""})
    r = run(["plugin", "-c", inst.conf, "list"])
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    for name in ("hl", "sqlite"):
        t.ok(name in lines and "REFUSED" in lines[name] and "reserved" in lines[name],
             "a plugin named %r is refused: its prefix would own core tables" % name, r.stdout)
    r = run(["plugin", "-c", inst.conf, "enable", "hl"])
    t.ok(r.returncode != 0 and "reserved" in r.stderr, "enabling 'hl' is refused with the reason", r.stderr)
    r = run(["plugin", "-c", inst.conf, "enable", "user"])
    t.eq(r.returncode, 0, "a plugin named 'user' may exist: its tables are user_*, no core table is")
    srv = Server(inst, workers=1, tap=t).start()
    try:
        b = Browser(srv.port)
        b.submit("/login", "/login", {"email": "lise@example.org", "password": PASSWORD})
        st, h, body = b.get("/user/escalate")
        j = json.loads(body) if st == 200 else {}
        for k in ("roles", "tokens", "sessions", "users"):
            t.ok(j.get(k, "allowed") != "allowed", "the 'user' plugin cannot write hl_%s" % k, body[:500])
        st, h, body = b.get("/admin")
        t.eq(st, 403, "and Lise did not become an operator")
    finally:
        srv.stop()


def main():
    t = Tap()
    inst = Instance()
    extra = inst.path("extra")
    os.makedirs(extra)
    inst.set(plugin_dirs="%s:%s" % (LUA_DIR, extra))
    r = run(["user", "-c", inst.conf, "add", "lise@example.org", "--name", "Lise"], env={"HALLE_USER_PASSWORD": PASSWORD})
    t.eq(r.returncode, 0, "user add")
    r = run(["plugin", "-c", inst.conf, "enable", "luaspy"])
    t.ok(r.returncode == 0, "the hostile plugin is enabled", r.stdout + r.stderr)
    srv = Server(inst, workers=1, tap=t).start()
    try:
        t.run(test_credentials_hidden, inst, srv)
    finally:
        srv.stop()
    t.run(test_names, inst, extra)
    t.done()


if __name__ == "__main__":
    main()
