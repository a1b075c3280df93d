# The plugin API's people functions from Lua (docs/plugins.md, "Users"): halle.user_get and
# halle.user_search give a Lua plugin no more than its SQL could read (addresses only to a
# plugin whose manifest reads hl_users), and contained code can neither create accounts nor
# change roles.
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Instance, Server, Tap, run  # noqa: E402

PASSWORD = "Sp1der-Web!x"

MAIN = """
halle.route("GET", "/%(name)s/user/(?<id>[0-9]+)", function(req)
  local u = halle.user_get(tonumber(req.params.id))
  return { json = { user = u or "none" } }
end)
halle.route("GET", "/%(name)s/search", function(req)
  return { json = { ids = halle.user_search(req.query.q, 50) } }
end)
halle.route("GET", "/%(name)s/rights", function(req)
  return { json = { create = type(halle.user_create), add = type(halle.user_add_role),
                    remove = type(halle.user_remove_role) } }
end)
"""


def write_plugin(root, name, perms):
    d = os.path.join(root, name)
    os.makedirs(d)
    manifest = {"name": name, "version": "1.0.0", "description": "looks people up"}
    if perms:
        manifest["permissions"] = {"read": perms}
    with open(os.path.join(d, "plugin.json"), "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(MAIN % {"name": name})


def get_json(t, srv, path):
    st, h, body = srv.get(path)
    t.eq(st, 200, "GET %s answers" % path)
    try:
        # An empty Lua table reaches JSON as {}: read it as the empty list it stands for.
        return json.loads(body, object_hook=lambda o: o or [])
    except ValueError:
        return {"body": body[:300]}


def main():
    t = Tap()
    inst = Instance()
    extra = inst.path("extra")
    os.makedirs(extra)
    write_plugin(extra, "nosy", None)
    write_plugin(extra, "reader", ["hl_users"])
    inst.set(plugin_dirs=extra)
    for email, name in (("lise@example.org", "Lise Martin"), ("paul@ferme.example", "Paul Durand"),
                        ("gone@example.org", "Gone Away")):
        r = run(["user", "-c", inst.conf, "add", email, "--name", name], env={"HALLE_USER_PASSWORD": PASSWORD})
        t.eq(r.returncode, 0, "user add %s" % email)
    ids = dict(inst.sql("SELECT email, id FROM hl_users"))
    for group in (9, 7):
        inst.sql("INSERT INTO hl_user_roles (user_id, role, group_id) VALUES (?, 4, ?)", ids["paul@ferme.example"], group)
    inst.sql("UPDATE hl_users SET deleted_at = '2026-01-01T00:00:00Z' WHERE email = 'gone@example.org'")
    for name in ("nosy", "reader"):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        t.eq(r.returncode, 0, "enable %s" % name)
    r = run(["plugin", "-c", inst.conf, "info", "reader"])
    t.ok("hl_users" in r.stdout and "password_hash" in r.stdout,
         "plugin info: reader reads hl_users, never its password_hash", r.stdout)

    lise, paul, gone = ids["lise@example.org"], ids["paul@ferme.example"], ids["gone@example.org"]
    srv = Server(inst, workers=1, tap=t).start()
    try:
        j = get_json(t, srv, "/nosy/user/%d" % lise)
        t.eq(j.get("user"), {"id": lise, "name": "Lise Martin", "roles": ["client"], "coordinates": []},
             "a plugin that does not read hl_users gets a user's id, name and roles, no address")
        j = get_json(t, srv, "/reader/user/%d" % lise)
        t.eq(j.get("user"), {"id": lise, "name": "Lise Martin", "email": "lise@example.org", "roles": ["client"],
                             "coordinates": []},
             "a plugin whose manifest reads hl_users gets the address too")
        j = get_json(t, srv, "/nosy/user/%d" % paul)
        t.eq((j.get("user", {}).get("roles"), j.get("user", {}).get("coordinates")), (["client", "coordinator"], [7, 9]),
             "the roles, and the groups a coordinator runs, from the core's hl_user_roles")
        t.eq(get_json(t, srv, "/reader/user/%d" % gone).get("user"), "none", "a deleted account is nobody")
        t.eq(get_json(t, srv, "/reader/user/999999").get("user"), "none", "an unknown id is nobody")

        t.eq(get_json(t, srv, "/nosy/search?q=DURAND").get("ids"), [paul], "search by name, any case")
        j = get_json(t, srv, "/nosy/search?q=ferme.example")
        t.ok(not j.get("ids"), "a plugin that may not see addresses cannot probe them by search", j)
        t.eq(get_json(t, srv, "/reader/search?q=ferme.example").get("ids"), [paul],
             "a plugin that reads hl_users searches addresses")
        t.eq(get_json(t, srv, "/reader/search?q=example.org").get("ids"), [lise],
             "deleted accounts are not found")
        t.ok(not get_json(t, srv, "/reader/search?q=%25").get("ids"), "LIKE wildcards in q are literal")

        t.eq(get_json(t, srv, "/nosy/rights"), {"create": "nil", "add": "nil", "remove": "nil"},
             "a Lua plugin can neither create accounts nor change roles")
    finally:
        srv.stop()
    t.done()


if __name__ == "__main__":
    main()
