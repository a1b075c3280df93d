# Hostile Lua plugins against the real server (docs/security.md): a plugin that copies every
# request it sees, from request.before / response.before hooks and its own routes, must never
# get a credential (session or CSRF cookie, Authorization, the CSRF token itself), and cannot
# plant the core's cookies; its forms still work, the token being filled in by the core.
import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import write_plugin, Browser, Instance, Server, Tap, run, SRC_DIR  # noqa: E402

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
    b.request("GET", "/verify?token=OneTimeLinkTokenXYZ123")
    b.request("GET", "/password/reset?token=ResetLinkTokenXYZ456")

    seen = json.loads(b.get("/luaspy/seen")[2])
    hooks = {row["hook"] for row in seen}
    t.ok({"request.before", "response.before", "route"} <= hooks, "the spy saw requests from hooks and routes", hooks)
    everything = "\n".join(row["data"] for row in seen)
    for secret, what in ((session, "the session cookie"), (token, "the CSRF token"),
                         ("s3cr3t-bearer-token", "the bearer token"), ("s3cr3t-api-token", "the API token header"),
                         ("dXNlcjpwYXNz", "Basic credentials"), (PASSWORD, "the password typed at login"),
                         ("OneTimeLinkTokenXYZ123", "a verification link's token"),
                         ("ResetLinkTokenXYZ456", "a password reset link's token")):
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


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def timed_get(srv, path):
    t0 = time.time()
    st, h, body = srv.get(path)
    return st, body, time.time() - t0


def test_sql_limits(t, inst, extra):
    for name, sql in (("luaview", "CREATE VIEW luaview_v AS SELECT 1 AS x;"),
                      ("luatrig", "CREATE TABLE luatrig_a (x INTEGER);\n"
                                  "CREATE TRIGGER luatrig_t AFTER INSERT ON luatrig_a BEGIN DELETE FROM luatrig_a; END;")):
        write_plugin(extra, name, {"plugin.json": '{"name": "%s", "version": "1", "description": "x"}' % name,
                                   "main.lua": "", "migrations/001_x.sql": sql})
        r = run(["plugin", "-c", inst.conf, "enable", name])
        t.ok(r.returncode != 0 and ("view" in r.stderr or "trigger" in r.stderr),
             "a migration creating a %s is refused" % ("view" if name == "luaview" else "trigger"), r.stderr)
    r = run(["plugin", "-c", inst.conf, "enable", "luahog"])
    t.eq(r.returncode, 0, "the SQL hog plugin is enabled")
    # Under AddressSanitizer freed memory waits in a quarantine (256 MB by default) that would
    # hide what the worker really holds: keep it small for this server.
    saved = os.environ.get("ASAN_OPTIONS")
    os.environ["ASAN_OPTIONS"] = (saved + ":" if saved else "") + "quarantine_size_mb=4"
    try:
        srv = Server(inst, workers=1, tap=t).start()
    finally:
        if saved is None:
            del os.environ["ASAN_OPTIONS"]
        else:
            os.environ["ASAN_OPTIONS"] = saved
    try:
        pid = srv.worker_pids()[0]
        st, body, dt = timed_get(srv, "/luahog/small")
        t.ok(st == 200 and body == b"500500", "ordinary plugin SQL still works", (st, body))
        st, body, dt = timed_get(srv, "/")
        base = dt
        for path, what in (("/luahog/cte", "an endless recursive CTE"), ("/luahog/cte-pcall", "an endless CTE inside pcall"),
                           ("/luahog/blob", "randomblob(200000000)"), ("/luahog/zeroblob", "zeroblob(200000000)"),
                           ("/luahog/rows", "20 MB of rows in one query")):
            if "blob" in path and not t.sqlite_only(what + " is cut", "SQLite's own function"):
                continue
            st, body, dt = timed_get(srv, path)
            t.ok(st == 500 and dt < 10, "%s is cut: 500 in %.1f s" % (what, dt), (st, body[:200]))
            st2, body2, dt2 = timed_get(srv, "/")
            t.ok(st2 == 200 and dt2 < 1.0, "then / answers at normal latency on the same worker (%.3f s)" % dt2, dt2)
        t.eq(srv.worker_pids(), [pid], "the worker was never replaced: the plugin was contained, not killed")
        rss = rss_kb(pid)
        t.ok(rss is not None and rss < 150 * 1024, "the worker's memory stayed bounded (%s kB)" % rss, rss)
        log = srv.log_text()
        t.ok(re.search(r"plugin luahog: (instruction|time) limit exceeded \(GET /luahog/cte\)", log),
             "the log names the plugin whose SQL was cut, and the limit", log[-2000:])
        if t.sqlite_only("and the blob that was too big", "SQLite's value limit (docs/security.md, known limits)"):
            t.ok("plugin luahog: luahog/main.lua:14: string or blob too big" in log, "and the blob that was too big",
                 log[-2000:])
        st, h, body = srv.get("/luahog/schema")
        j = json.loads(body) if st == 200 else {}
        t.ok(j.get("view", "allowed") != "allowed" and j.get("trigger", "allowed") != "allowed",
             "views and triggers are refused at run time too", body[:400])
        t.eq(j.get("table"), "allowed", "while the plugin's own tables are still its own")
    finally:
        srv.stop()


BROKEN_HOOK = {
    "plugin.json": '{"name": "luabadhook", "version": "1.0.0", "description": "a request.before hook that always fails"}',
    "main.lua": """
halle.hook("request.before", function(value, req) error("broken on purpose") end)
halle.hook("ui.navigation", function(value, req) while true do end end)
halle.route("GET", "/luabadhook/page", function(req) return "still here" end)
""",
}


def test_broken_hooks(t, inst, extra):
    write_plugin(extra, "luabadhook", BROKEN_HOOK)
    r = run(["plugin", "-c", inst.conf, "enable", "luabadhook"])
    t.eq(r.returncode, 0, "a plugin with a broken request.before hook is enabled")
    text = inst.read_conf()
    inst.write_conf(text + "\nhook_failure_limit = 3\n")
    srv = Server(inst, workers=1, tap=t).start()
    try:
        st, h, body = srv.get("/luabadhook/page")
        t.ok(st == 200 and body == b"still here", "a failing request.before hook is skipped: the page is served", (st, body[:200]))
        for i in range(3):
            st, h, body = srv.get("/health")
            t.eq(st, 200, "the site keeps answering despite the broken hook (%d)" % i)
        log = srv.log_text()
        t.ok("hook request.before: callback of luabadhook failed (skipped)" in log and "broken on purpose" in log,
             "each failure is logged, naming the plugin and the error", log[-1500:])
        t.ok("plugin luabadhook suspended in this process after 3 failures in a row" in log,
             "after 3 failures in a row the plugin is suspended", log[-1500:])
        st, h, body = srv.get("/luabadhook/page")
        t.eq(st, 503, "a suspended plugin's pages answer 503")
        st, h, body = srv.get("/")
        t.eq(st, 200, "the rest of the site is served")
        r = run(["plugin", "-c", inst.conf, "list"])
        line = [l for l in r.stdout.splitlines() if l.startswith("luabadhook")]
        t.ok(line and "SUSPENDED" in line[0], "halle plugin list shows it suspended", r.stdout)
        t.ok("suspended in worker 0 since" in r.stdout and "broken on purpose" in r.stdout,
             "with the process, the time and the last error", r.stdout)
    finally:
        srv.stop()
    inst.write_conf(text)
    run(["plugin", "-c", inst.conf, "disable", "luabadhook"])


HALF_PLUGIN = {
    "plugin.json": '{"name": "luahalf", "version": "1.0.0", "description": "test: fails half-way through loading",'
                   ' "settings": {"fail": {"type": "boolean", "default": false, "label": "Fail"}}}',
    "main.lua": """
halle.hook("response.before", function(value) value.headers["X-Half"] = "loaded"; return value end)
halle.route("GET", "/luahalf/here", function(req) return "here" end)
halle.job("tick", "every 60", function() end)
halle.privacy.declare({ purpose = "half", legal_basis = "consent", retention = "1 year" })
if halle.setting("fail") then error("refused on purpose, after registering") end
""",
}


def test_half_loaded(t, inst, extra):
    """A plugin whose loading fails after it registered a hook, a route, a job and a declaration
    leaves none of them behind pointing into it (they would be used after it is freed)."""
    write_plugin(extra, "luahalf", HALF_PLUGIN)
    r = run(["plugin", "-c", inst.conf, "enable", "luahalf"])
    t.ok(r.returncode == 0, "luahalf is enabled (it loads while its setting is off)", r.stdout + r.stderr)
    r = run(["plugin", "-c", inst.conf, "set", "luahalf", "fail", "true"])
    t.ok(r.returncode == 0, "then it is set to fail at its last line", r.stdout + r.stderr)
    srv = Server(inst, workers=1, tap=t).start()
    try:
        st, h, _ = srv.get("/")
        t.ok(st == 200 and "X-Half" not in h, "its hook is gone with it: pages are served without it", (st, dict(h)))
        st, _, _ = srv.get("/luahalf/here")
        t.eq(st, 404, "its route is gone")
        t.ok("plugin luahalf refused" in srv.log_text(), "the refusal is logged")
    finally:
        srv.stop()
    t.eq(srv.returncode, 0, "the server ran and stopped cleanly (no use after free: the tests run under ASan)")
    r = run(["hooks", "-c", inst.conf, "register"])
    t.ok(r.returncode == 0 and "half" not in r.stdout, "halle hooks register runs cleanly without its declaration",
         (r.returncode, r.stdout[-500:], r.stderr[-1500:]))
    run(["plugin", "-c", inst.conf, "disable", "luahalf"])


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
    t.run(test_sql_limits, inst, extra)
    t.run(test_broken_hooks, inst, extra)
    t.run(test_half_loaded, inst, extra)
    t.done()


if __name__ == "__main__":
    main()
