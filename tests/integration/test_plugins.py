# Plugins end to end: C and Lua plugins found in plugin_dirs, refused with clear messages when
# broken (bad manifest, missing requirement, other ABI, syntax error, migration outside the
# plugin's tables), enabled/disabled with the CLI, then served by the real server: routes,
# hook order across languages, filters that refuse, sandbox limits and SQL isolation.
import json
import re
import os
import shutil
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ON_PG, Browser, Instance, Server, Tap, run, wait_until, SRC_DIR  # noqa: E402

BUILD = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.environ.get("HALLE_BIN", "/work/main/build/halle"))
C_DIR = os.path.join(BUILD, "tests", "plugins", ".libs")
LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")


def make_instance():
    inst = Instance()
    extra = inst.path("extra")
    os.makedirs(extra)
    inst.set(plugin_dirs="%s:%s:%s" % (C_DIR, LUA_DIR, extra), dev_mode="on")
    # Stand-ins for core and market tables a plugin may or may not read.
    for statement in (
            "INSERT INTO hl_users (email, name, password_hash, terms_version, terms_accepted_at, age_certified_at, created_at) "
            "VALUES ('lise@example.org', 'Lise', '$argon2id$secret', '1', 'x', 'x', 'x')",
            "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT)",
            "INSERT INTO products (id, name) VALUES (1, 'Pommes')",
            "CREATE TABLE luaother_secrets (x TEXT)",
            "CREATE TABLE luabroken_data (x TEXT)"):
        inst.sql(statement)
    return inst


def cli(inst, *args):
    return run(["plugin", "-c", inst.conf] + list(args))


def test_cli(t, inst):
    r = cli(inst, "list")
    t.eq(r.returncode, 0, "plugin list exits 0")
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    t.ok("testc" in lines and " C " in lines["testc"] and "disabled" in lines["testc"], "testc listed as a disabled C plugin", r.stdout)
    t.ok("luatest" in lines and "Lua" in lines["luatest"], "luatest listed as a Lua plugin", r.stdout)
    t.ok("badabi" in lines and "REFUSED" in lines["badabi"] and "ABI" in lines["badabi"], "badabi listed as refused for its ABI", r.stdout)
    t.ok("luabadjson" in lines and "REFUSED" in lines["luabadjson"] and "plugin.json:3" in lines["luabadjson"],
         "a bad manifest is refused with file and line", r.stdout)

    r = cli(inst, "enable", "badabi")
    t.ok(r.returncode == 1 and "built for plugin ABI 2, this halle has ABI 1" in r.stderr, "enable refuses another ABI", r.stderr)
    r = cli(inst, "enable", "luabadjson")
    t.ok(r.returncode == 1 and "plugin.json:3" in r.stderr, "enable refuses a bad manifest, naming the line", r.stderr)
    r = cli(inst, "enable", "luaneeds")
    t.ok(r.returncode == 1 and "requires nosuchplugin" in r.stderr, "enable refuses a missing requirement", r.stderr)
    r = cli(inst, "enable", "luabroken")
    t.ok(r.returncode == 1 and "main.lua:3:" in r.stderr, "enable refuses a syntax error, naming file and line", r.stderr)
    r = cli(inst, "enable", "luaschema")
    t.ok(r.returncode == 1 and "luaschema" in r.stderr and "users_copy" in r.stderr,
         "a Lua plugin's migration may not create tables outside its prefix", r.stderr)
    t.ok("users_copy" not in inst.tables(), "the refused migration left nothing behind")
    r = cli(inst, "enable", "nosuch")
    t.ok(r.returncode == 1 and "no plugin named 'nosuch'" in r.stderr, "unknown plugin name", r.stderr)

    r = cli(inst, "enable", "aadep")
    t.ok(r.returncode == 1 and "enable testc first" in r.stderr, "a plugin cannot be enabled before what it requires", r.stderr)
    for name in ("testc", "luatest", "aadep"):
        r = cli(inst, "enable", name)
        t.ok(r.returncode == 0 and "enabled" in r.stdout, "enable %s" % name, r.stdout + r.stderr)
    t.ok("luatest_items" in inst.tables(), "enable ran luatest's migration")
    t.eq(inst.sql("SELECT version FROM hl_migrations WHERE component = 'luatest'"), [(1,)],
         "the plugin's migration is recorded under its name")

    r = cli(inst, "info", "luatest")
    t.ok(r.returncode == 0 and "writes: its own tables only (luatest_*)" in r.stdout
         and "reads: its own tables, products, hl_users" in r.stdout, "info shows exactly what it may write and read", r.stdout)
    t.ok("never sees: hl_users.password_hash" in r.stdout, "info shows the columns it never sees", r.stdout)
    t.ok("asked for but never granted: luabroken_data, hl_sessions" in r.stdout,
         "info shows what the manifest asked for but is never granted", r.stdout)
    t.ok("greeting" in r.stdout and "Bonjour" in r.stdout, "info shows settings with defaults", r.stdout)
    r = cli(inst, "set", "luatest", "times", "9")
    t.ok(r.returncode == 1 and "out of range" in r.stderr, "a setting out of its range is refused", r.stderr)
    r = cli(inst, "set", "luatest", "shout", "maybe")
    t.ok(r.returncode == 1, "a bad boolean is refused", r.stderr)
    r = cli(inst, "set", "luatest", "nosuch", "1")
    t.ok(r.returncode == 1 and "no setting" in r.stderr, "an unknown setting is refused", r.stderr)
    for k, v in (("greeting", "Salut"), ("times", "2")):
        r = cli(inst, "set", "luatest", k, v)
        t.eq(r.returncode, 0, "set %s" % k)
    r = cli(inst, "bogus")
    t.eq(r.returncode, 2, "unknown plugin command is a usage error")
    r = run(["testc", "-c", inst.conf, "hello", "bob"])
    t.ok(r.returncode == 0 and re.match(r"hello bob from testc \(\d+ core migrations\)", r.stdout),
         "a plugin adds a command to the CLI (halle testc hello)", r.stdout + r.stderr)
    r = run(["testc", "-c", inst.conf, "nosuch"])
    t.ok(r.returncode == 2 and "hello NAME" in r.stderr, "an unknown plugin command lists the plugin's commands", r.stderr)
    r = run(["luaneeds", "-c", inst.conf, "x"])
    t.eq(r.returncode, 2, "a plugin that is not enabled has no commands")

    # A plugin upgraded on disk with a new migration: serve applies it at start.
    up = inst.path("extra", "upgraded")
    os.makedirs(up)
    with open(os.path.join(up, "plugin.json"), "w") as f:
        f.write('{"name": "upgraded", "version": "1"}')
    with open(os.path.join(up, "main.lua"), "w") as f:
        f.write('halle.route("GET", "/upgraded", function() return #halle.db.query("SELECT * FROM upgraded_items") .. " rows" end)\n')
    t.eq(cli(inst, "enable", "upgraded").returncode, 0, "enable a plugin without migrations")
    os.makedirs(os.path.join(up, "migrations"))
    with open(os.path.join(up, "migrations", "001_items.sql"), "w") as f:
        f.write("CREATE TABLE upgraded_items (id INTEGER PRIMARY KEY);\nINSERT INTO upgraded_items DEFAULT VALUES;\n")
    if ON_PG:
        # Several machines share a PostgreSQL database: commands and serve refuse a schema older
        # than the code, and the operator runs `halle migrate` once (docs/scaling.md).
        r = cli(inst, "list")
        t.ok(r.returncode == 1 and "halle migrate" in r.stderr,
             "PostgreSQL: a command refuses the plugin's older schema, naming halle migrate", r.stderr)
        r = run(["migrate", "-c", inst.conf])
        t.eq((r.returncode, r.stderr), (0, ""), "PostgreSQL: halle migrate applies the plugin's new migration")

    # A plugin enabled, then broken on disk: refused at start, the server starts without it.
    extra = inst.path("extra", "fragile")
    os.makedirs(extra)
    with open(os.path.join(extra, "plugin.json"), "w") as f:
        f.write('{"name": "fragile", "version": "1"}')
    with open(os.path.join(extra, "main.lua"), "w") as f:
        f.write('halle.route("GET", "/fragile", function() return "ok" end)\n')
    t.eq(cli(inst, "enable", "fragile").returncode, 0, "enable fragile")
    with open(os.path.join(extra, "main.lua"), "w") as f:
        f.write('-- broken after enabling\nhalle.route("GET", "/fragile", function() return "ok" end\n')


def get(srv, path, **kw):
    return srv.get(path, **kw)


def test_serving(t, srv, inst):
    log = srv.log_text()
    t.ok("plugin fragile refused" in log and "main.lua:" in log and "starting without it" in log,
         "a plugin broken after enabling is refused at start, naming file and line", log[-2000:])

    st, h, b = get(srv, "/testc/event")
    t.ok(st == 200 and json.loads(b) == {"trace": ["testc", "aadep"]},
         "a Lua plugin adds to a hook declared by the C plugin it requires (loaded after it)", b)
    st, h, b = get(srv, "/upgraded")
    t.ok(st == 200 and b == b"1 rows", "a plugin's new migration is applied (when the server starts; by halle migrate "
         "on PostgreSQL)", (st, b))
    st, h, b = get(srv, "/testc/ping/bob")
    t.ok(st == 200 and b == b"pong bob", "C plugin route", (st, b))
    st, h, b = get(srv, "/luatest/hello/lise")
    t.ok(st == 200 and b == b"Salut lise Salut lise", "Lua plugin route reads its settings", (st, b))
    t.eq(h.get("X-Hook-Trace"), "c5,lua10,c20", "C and Lua callbacks on one hook run by priority")
    st, h, b = get(srv, "/testc/ping/forbidden")
    t.ok(st == 403 and b"refused by testc" in b and b"<html" in b, "a C filter refuses with a page", (st, b[:200]))
    st, h, b = get(srv, "/luatest/hello/refused")
    t.ok(st == 409 and b"refused by luatest" in b, "a Lua filter stops the chain with its status", (st, b[:200]))
    st, h, b = get(srv, "/luatest/twice")
    t.ok(st == 200 and b == b"abab", "require() loads a module of the plugin", (st, b))
    st, h, b = get(srv, "/luatest/re")
    t.ok(st == 200 and json.loads(b) == {"year": "2026", "month": "11"}, "halle.re (PCRE2) works", b)

    st, h, b = get(srv, "/luatest/page?name=%3Cscript%3E")
    t.ok(st == 200 and b"Bonjour &lt;script&gt;" in b and b"<li>a&lt;b</li>" in b and b"<em>ok</em>" in b,
         "halle.render: plugin templates and partials, escaped by default, raw only with {{{ }}}", b)
    st, h, b = get(srv, "/luatest/md")
    t.ok(st == 200 and b"<strong>gras</strong>" in b and b"<script" not in b and b'href="javascript' not in b
         and b'href="https://example.org"' in b, "halle.markdown: safe HTML from Markdown (API 4)", b)
    st, h, b = get(srv, "/luatest/badtemplate")
    t.eq(st, 500, "halle.render refuses a template name outside the plugin")
    st, h, b = get(srv, "/luatest/whoami")
    t.ok(st == 200 and json.loads(b) == {"user": False, "operator": False, "own_account": False},
         "halle.can: a visitor may not see operator pages", b)
    st, h, b = get(srv, "/testc/me")
    t.ok(st == 200 and b == b"user=0 operator=0", "C API 2: req_user and can", b)
    st, h, b = get(srv, "/luatest/mail")
    mail_id = json.loads(b).get("id") if st == 200 else None
    row = (inst.sql("SELECT recipient, subject FROM hl_mail_queue WHERE id = ?", mail_id) or [None])[0]
    t.eq(row, ("news@example.org", "Lettre de test"), "halle.mail queues a message")

    st, h, b = get(srv, "/luatest/error")
    t.ok(st == 500 and b"<html" in b, "a Lua error gives a 500 page", st)
    time.sleep(0.2)
    log = srv.log_text()
    t.ok("plugin luatest" in log and "main.lua:" in log and "deliberate failure" in log,
         "the log names plugin, file and line", log[-1500:])

    for path, what in (("/luatest/loop", "limit exceeded"), ("/luatest/pcall-loop", "limit exceeded"),
                       ("/luatest/coroutine-loop", "limit exceeded"), ("/luatest/membomb", "memory limit exceeded"),
                       ("/luatest/pattern", "halle.re")):
        t0 = time.time()
        st, h, b = get(srv, path, timeout=15)
        took = time.time() - t0
        t.ok(st == 500 and took < 5, "%s is cut (500 in %.1fs)" % (path, took), (st, took))
        t.ok(srv.health(timeout=3), "the server answers after %s" % path)
        # The log line of that request names the plugin and what cut it.
        lines = wait_until(lambda: [l for l in srv.log_text().splitlines()
                                    if "plugin luatest" in l and "(GET %s)" % path in l], 3)
        t.ok(lines and what in lines[-1], "%s: the log says %r" % (path, what), lines[-1:] if lines else srv.log_text()[-1500:])
    st, h, b = get(srv, "/luatest/twice")
    t.ok(st == 200 and b == b"abab", "the plugin's state still works after being cut", (st, b))

    st, h, b = get(srv, "/luatest/escape")
    r = json.loads(b) if st == 200 else {}
    for key in ("io", "os_execute", "debug", "dofile", "loadfile", "package", "dump"):
        t.eq(r.get(key), "nil", "sandbox: %s is not reachable" % key)
    t.eq(r.get("bytecode_ok"), False, "sandbox: binary chunks are refused")
    t.eq(r.get("require_outside"), False, "sandbox: require cannot leave the plugin folder")

    body = urllib.parse.urlencode({"label": "pommes"})
    st, h, b = srv.request("POST", "/luatest/items", body=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.eq(st, 403, "a plugin's POST route without a CSRF token is refused")
    token = "t" * 43
    body = urllib.parse.urlencode({"label": "pommes", "_csrf": token})
    st, h, b = srv.request("POST", "/luatest/items", body=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded",
                                    "Cookie": "halle_csrf=" + token})
    t.ok(st == 201 and json.loads(b)[-1]["label"] == "pommes", "a Lua plugin writes and reads its own table", (st, b))

    st, h, b = get(srv, "/luatest/steal")
    r = json.loads(b) if st == 200 else {}
    denied = ("password", "star", "other_plugin", "declared_lua", "sessions", "archive", "pragma", "schema", "drop",
              "write_core", "master", "reset_role", "set_role", "set_config", "escaped", "dollar", "quoted",
              "catalog", "end_tx", "two")
    for key in denied:
        t.ok(key in r and r[key]["ok"] is False, "isolation: %s is refused" % key, r.get(key))
    t.ok("password_hash" in (r.get("password", {}).get("err") or ""), "the refusal names the column", r.get("password"))
    t.ok(r.get("names", {}).get("ok") is True, "declared read of hl_users.name is allowed", r.get("names"))
    t.ok(r.get("products", {}).get("ok") is True, "declared read of products is allowed", r.get("products"))
    time.sleep(0.2)
    log = srv.log_text()
    t.ok("plugin luatest may not read hl_users.password_hash" in log, "denials are logged with the plugin's name", log[-2000:])


def test_disable(t, srv, inst):
    r = cli(inst, "disable", "luatest")
    t.ok(r.returncode == 0 and "kept" in r.stdout, "disable luatest", r.stdout + r.stderr)
    t.eq(inst.sql("SELECT count(*) FROM luatest_items")[0][0], 1, "disabling keeps the plugin's data")
    os.kill(srv.pid, 1)  # SIGHUP: workers restart with the new plugin set
    deadline = time.time() + 10
    st = None
    while time.time() < deadline:
        st, h, b = get(srv, "/luatest/twice")
        if st == 404:
            break
        time.sleep(0.2)
    t.eq(st, 404, "after SIGHUP the disabled plugin's routes are gone")
    st, h, b = get(srv, "/testc/ping/ann")
    t.eq(st, 200, "the other plugin still serves")
    r = cli(inst, "disable", "luatest")
    t.eq(r.returncode, 1, "disabling a disabled plugin is an error")


def wait_status(srv, path, want, timeout=10):
    deadline = time.time() + timeout
    st = None
    while time.time() < deadline:
        st, h, b = get(srv, path)
        if st == want:
            return st, h, b
        time.sleep(0.2)
    return st, None, b""


def test_admin_page(t, srv, inst):
    """The operator's plugins page does what the CLI does, and the change is live at once."""
    r = run(["user", "-c", inst.conf, "add", "op@example.org", "--name", "Op", "--operator"],
            env={"HALLE_USER_PASSWORD": "Prune-2026"})
    t.eq(r.returncode, 0, "operator account created")
    op = Browser(srv.port)
    op.submit("/login", "/login", {"email": "op@example.org", "password": "Prune-2026"})
    st, h, b = op.get("/testc/me")
    t.ok(st == 200 and re.match(r"user=\d+ operator=1", b), "C API 2: the operator is recognised", b)
    st, h, page = op.get("/admin/plugins")
    t.ok(st == 200 and 'id="plugin-luatest"' in page and "désactivée" in page, "the page lists the disabled plugin", page[:300])
    t.ok("}}" not in page and "{{" not in page, "no template text leaks into the page", page[:400])
    t.ok("lecture de products" in page and "lecture de hl_users" in page, "it shows a Lua plugin's permissions")
    t.ok("refusée" in page and "ABI" in page, "it shows refused plugins with the reason")
    st, h, page = op.submit("/admin/plugins", "/admin/plugins/luatest/enable", {})
    t.ok(st == 200 and "Extension activée" in page, "enable from the admin page", page[:300])
    st, h, b = wait_status(srv, "/luatest/twice", 200)
    t.eq(st, 200, "the plugin is live after the automatic rolling restart")
    # A plugin's capability is honoured by can(): its rules, for the operator and for a visitor.
    st, h, b = op.get("/testc/me")
    op_id = int(re.match(r"user=(\d+)", b).group(1))
    st, h, b = op.get("/luatest/cap?owner=%d" % op_id)
    c = json.loads(b) if st == 200 else {}
    t.ok(c.get("id", 0) >= 1000 and c.get("view") is True and c.get("edit") is True and c.get("delete") is False,
         "halle.capability: the owner may view and edit their own, not delete", b)
    st, h, b = op.get("/luatest/cap?owner=%d" % (op_id + 1000))
    c = json.loads(b) if st == 200 else {}
    t.ok(c.get("view") is True and c.get("edit") is False and c.get("other") is False,
         "an operator views someone else's (role rule) but may not edit it; unknown capabilities are refused", b)
    t.eq(c.get("foreign"), False, "a plugin cannot register a capability in another plugin's name")
    st, h, b = get(srv, "/luatest/cap?owner=0")
    c = json.loads(b) if st == 200 else {}
    t.ok(c.get("view") is False and c.get("edit") is False, "a visitor gets nothing", b)
    st, h, page = op.get("/admin/plugins")
    t.ok('name="s_greeting"' in page and 'name="s_times"' in page and 'name="s_shout"' in page,
         "a settings form is generated from the plugin's schema")
    st, h, page = op.submit("/admin/plugins", "/admin/plugins/luatest/settings", {"s_greeting": "Hola", "s_times": "9"})
    t.ok(st == 422 and "out of range" in page, "settings are validated against the schema", (st, page[-800:]))
    st, h, page = op.submit("/admin/plugins", "/admin/plugins/luatest/settings", {"s_greeting": "Hola", "s_times": "1"})
    t.ok(st == 200 and "Réglages enregistrés" in page, "valid settings saved")
    deadline = time.time() + 10
    b = b""
    while time.time() < deadline:
        st, h, b = get(srv, "/luatest/hello/ana")
        if b == b"Hola ana":
            break
        time.sleep(0.2)
    t.eq(b, b"Hola ana", "the new setting is used after the reload")
    st, h, page = op.submit("/admin/plugins", "/admin/plugins/luatest/disable", {})
    t.ok(st == 200 and "désactivée" in page, "disable from the admin page")
    st, h, b = wait_status(srv, "/luatest/twice", 404)
    t.eq(st, 404, "its routes are gone after the reload")
    anon = Browser(srv.port)
    st, h, page = anon.request("POST", "/admin/plugins/luatest/enable", form={})
    t.eq(st, 403, "an anonymous POST is refused (no CSRF token)")
    # From the command line (as on another machine sharing the database): no signal is sent,
    # the master sees the configuration's version change and restarts its workers.
    r = cli(srv.inst, "enable", "luatest")
    t.eq(r.returncode, 0, "enable from the command line while the server runs")
    st, h, b = wait_status(srv, "/luatest/twice", 200, timeout=15)
    t.eq(st, 200, "the running server picks the change up by itself (no kill -HUP)")
    t.ok("the configuration changed in the database" in srv.log_text(), "and says why it restarted its workers",
         srv.log_text()[-1000:])
    r = cli(srv.inst, "disable", "luatest")
    st, h, b = wait_status(srv, "/luatest/twice", 404, timeout=15)
    t.eq(st, 404, "a disable from the command line reaches it too")


def main():
    t = Tap()
    if not os.path.exists(os.path.join(C_DIR, "testc.so")):
        t.ok(False, "test plugins are built", "missing %s/testc.so" % C_DIR)
        t.done()
    inst = make_instance()
    t.run(test_cli, inst)
    srv = Server(inst, workers=2, tap=t)
    try:
        srv.start()
        t.run(test_serving, srv, inst)
        t.run(test_disable, srv, inst)
        t.run(test_admin_page, srv, inst)
    finally:
        srv.stop()
    t.done()


if __name__ == "__main__":
    main()
