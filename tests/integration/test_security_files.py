# A plugin's or theme's files are read beneath its folder only (docs/security.md): a symbolic
# link leading out (to the instance's database, halle.conf, /etc/passwd) is refused at listing,
# enabling and start, naming the link, and never serves the target's bytes, even when planted
# while the server runs.
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import private_share, Instance, Server, Tap, run  # noqa: E402

MAIN = """
local helpers = require("helpers")
halle.route("GET", "/%(name)s/page", function(req) return halle.render("page", { who = helpers.who() }) end)
halle.route("GET", "/%(name)s/other", function(req) return halle.render("other", {}) end)
"""


def make_plugin(root, name, links=()):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "templates"))
    os.makedirs(os.path.join(d, "migrations"))
    with open(os.path.join(d, "plugin.json"), "w") as f:
        f.write('{"name": "%s", "version": "1.0.0", "description": "file test"}' % name)
    with open(os.path.join(d, "main.lua"), "w") as f:
        f.write(MAIN % {"name": name})
    with open(os.path.join(d, "helpers.lua"), "w") as f:
        f.write("return { who = function() return 'helper' end }\n")
    with open(os.path.join(d, "templates", "page.mustache"), "w") as f:
        f.write("<p>page of {{who}}</p>\n")
    with open(os.path.join(d, "migrations", "001_t.sql"), "w") as f:
        f.write("CREATE TABLE %s_t (x INTEGER);\n" % name)
    for rel, target in links:
        os.symlink(target, os.path.join(d, rel))
    return d


def cli(inst, *args):
    return run(["plugin", "-c", inst.conf] + list(args))


def test_refused_at_enable(t, inst, extra):
    secret = inst.conf  # halle.conf: what a hostile template would serve
    cases = [
        ("linktpl", [("templates/other.mustache", secret)], "templates/other.mustache"),
        ("linkreq", [("evil.lua", "/etc/passwd")], "evil.lua"),
        ("linkmig", [("migrations/002_x.sql", inst.db)], "migrations/002_x.sql"),
        ("linkdir", [("templates/sub", "/etc")], "templates/sub"),
        ("linkdang", [("templates/gone.mustache", "/nonexistent/x")], "templates/gone.mustache"),
    ]
    for name, links, rel in cases:
        make_plugin(extra, name, links)
    r = cli(inst, "list")
    lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.strip()}
    for name, links, rel in cases:
        line = lines.get(name, "")
        t.ok("REFUSED" in line and rel in line and ("leads outside" in line or "leads nowhere" in line),
             "%s: listed as refused, naming the link %s" % (name, rel), line)
        r = cli(inst, "enable", name)
        t.ok(r.returncode != 0 and rel in r.stderr, "%s: enabling is refused, naming the link" % name, r.stderr)
    # A link that stays inside the folder is fine.
    make_plugin(extra, "linkin", [("templates/other.mustache", "page.mustache")])
    r = cli(inst, "enable", "linkin")
    t.eq(r.returncode, 0, "a link inside the plugin's folder is allowed")


def test_planted_later(t, inst, extra):
    d = make_plugin(extra, "later")
    r = cli(inst, "enable", "later")
    t.eq(r.returncode, 0, "a clean plugin is enabled")
    srv = Server(inst, workers=1, tap=t).start()
    try:
        st, h, body = srv.get("/later/page")
        t.ok(st == 200 and b"page of helper" in body, "it serves its own template", body[:200])
        st, h, body = srv.get("/linkin/other")
        t.ok(st == 200 and b"page of" in body, "a template linked inside the folder is served", body[:200])
        # The attacker plants links while the server runs: a template not yet compiled, and a
        # module not yet required.
        os.symlink(inst.conf, os.path.join(d, "templates", "other.mustache"))
        st, h, body = srv.get("/later/other")
        conf = open(inst.conf, "rb").read()
        t.ok(st == 500 and conf[:40] not in body and b"database" not in body,
             "a template planted as a link to halle.conf is refused, its bytes never served", body[:300])
        t.ok("leads outside" in srv.log_text() and "templates/other.mustache" in srv.log_text(),
             "the refusal is logged with the path", srv.log_text()[-1500:])
    finally:
        srv.stop()
    # At the next start the plugin is refused as a whole, naming the link; the server starts without it.
    srv = Server(inst, workers=1, tap=t).start()
    try:
        st, h, body = srv.get("/later/page")
        t.eq(st, 404, "at the next start the plugin with the planted link is not loaded")
        st, h, body = srv.get("/health")
        t.eq(st, 200, "and the server starts without it")
        t.ok("later" in srv.log_text() and "templates/other.mustache" in srv.log_text(),
             "the log names the plugin and the link", srv.log_text()[-1500:])
    finally:
        srv.stop()


def test_theme_link(t):
    inst = Instance()
    share = private_share(inst)
    os.symlink(inst.conf, os.path.join(share, "themes", "marche", "static", "leak.css"))
    r = run(["serve", "-c", inst.conf, "--listen", "127.0.0.1:0", "--workers", "1"], timeout=30)
    t.ok(r.returncode != 0 and "marche" in r.stderr and "static/leak.css" in r.stderr and "leads outside" in r.stderr,
         "a theme with a link leading out stops the start, naming the theme and the link", r.stderr[-800:])


def main():
    t = Tap()
    inst = Instance()
    extra = inst.path("extra")
    os.makedirs(extra)
    inst.set(plugin_dirs=extra)
    t.run(test_refused_at_enable, inst, extra)
    t.run(test_planted_later, inst, extra)
    t.run(test_theme_link)
    t.done()


if __name__ == "__main__":
    main()
