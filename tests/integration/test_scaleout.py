#!/usr/bin/env python3
# Several machines on one PostgreSQL database (docs/scaling.md): two `halle serve`, each from
# its own instance folder as on two machines, share one database. A session made on one works
# on the other, a queued job runs once, a plugin enabled on one is live on the other, and what
# is written through one is read through the other. On SQLite there is one machine by design:
# the checks are reported as skipped.
import os
import shutil
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ON_PG, Browser, Instance, Server, Tap, run, wait_until  # noqa: E402

PASSWORD = "Prune-2026-scale"
LUA_PLUGINS = os.path.join(os.environ.get("HALLE_SRCDIR", "/work/main"), "tests", "plugins", "lua")


def second_machine(a):
    """Another instance folder with a's configuration: the same databases, its own log and lock."""
    b = Instance(init=False)
    os.makedirs(os.path.join(b.dir, "data"), mode=0o700)
    os.makedirs(os.path.join(b.dir, "logs"), mode=0o750)
    text = a.read_conf()
    os.makedirs(b.dir, exist_ok=True)
    b.write_conf(text)
    b.db, b.archive = a.db, a.archive
    b.set(log_file=b.log_path)
    return b


def login(br, mail):
    return br.submit("/login", "/login", {"email": mail, "password": PASSWORD})


def test_sessions(t, sa, sb, a):
    r = run(["user", "add", "ann@example.org", "--name", "Ann Scale", "-c", a.conf],
            env={"HALLE_USER_PASSWORD": PASSWORD})
    t.ok(r.returncode == 0, "an account is made from one machine's command line", r.stderr)
    br = Browser(sa.port)
    st, h, _ = login(br, "ann@example.org")
    t.ok(st == 303, "Ann logs in on machine A", (st, br.last_set_cookies))
    cookies = dict(br.cookies)
    other = Browser(sb.port)
    other.cookies = dict(cookies)
    st, h, body = other.get("/account")
    t.ok(st == 200 and "Ann Scale" in body, "her session works on machine B (sessions live in the database)",
         (st, body[:300]))
    # a form made on A is accepted by B: the CSRF token is checked against the shared session
    st, _, page = br.get("/account")
    token = br.csrf(page)
    other.cookies = dict(br.cookies)
    st, h, _ = other.request("POST", "/logout", form={"_csrf": token})
    t.ok(st in (302, 303), "she logs out on B with the form A gave her", st)
    st, h, _ = br.get("/account")
    t.ok(st == 303 and h.get("Location", "").startswith("/login"), "and the session is ended on A too", st)


def test_plugin_enable(t, sa, sb, a):
    st, _, _ = sb.get("/luatest/hello/x")
    t.eq(st, 404, "luatest is not enabled yet: B has no such route")
    r = run(["plugin", "-c", a.conf, "enable", "luatest"])
    t.ok(r.returncode == 0, "the operator enables luatest from machine A", r.stdout + r.stderr)
    live = wait_until(lambda: sb.get("/luatest/hello/x")[0] == 200, 20)
    t.ok(live, "within seconds it is live on machine B (the configuration version in the database)")
    t.ok(wait_until(lambda: sa.get("/luatest/hello/x")[0] == 200, 20), "and on A")


def post_item(srv, label):
    token = "t" * 43
    body = urllib.parse.urlencode({"label": label, "_csrf": token})
    st, h, data = srv.request("POST", "/luatest/items", body=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded",
                                       "Cookie": "halle_csrf=" + token})
    return st, h, data.decode("utf-8", "replace")


def test_writes_seen_by_both(t, sa, sb):
    # luatest answers a POST with every item: what the other machine wrote must be in it
    st, _, body = post_item(sa, "pommes")
    t.ok(st == 201 and "pommes" in body, "an item is written through machine A", (st, body[:300]))
    st, _, body = post_item(sb, "poires")
    t.ok(st == 201 and "pommes" in body and "poires" in body, "machine B writes one and reads A's",
         (st, body[:300]))
    st, _, body = post_item(sa, "prunes")
    t.ok(st == 201 and "poires" in body, "machine A reads B's", (st, body[:300]))


def test_job_once(t, sa, sb, a):
    r = run(["plugin", "-c", a.conf, "enable", "luajobs"])
    t.ok(r.returncode == 0, "luajobs is enabled", r.stdout + r.stderr)
    t.ok(wait_until(lambda: sa.get("/luajobs/steal")[0] == 200 and sb.get("/luajobs/steal")[0] == 200, 20),
         "both machines serve luajobs")
    for word in ("alpha", "beta", "gamma"):
        srv = sa if word != "beta" else sb
        st, _, body = srv.get("/luajobs/note/" + word)
        body = body.decode("utf-8", "replace")
        t.ok(st == 200 and body.startswith("queued"), "a job is queued through a machine (%s)" % word, (st, body))

    def runs():
        rows = a.sql("SELECT n FROM luajobs_counts WHERE name = 'luajobs.note'")
        return rows[0][0] if rows else 0

    t.ok(wait_until(lambda: runs() >= 3, 30), "the queued jobs run", runs())
    time.sleep(3)  # both machines' job processes poll again: nothing runs twice
    t.eq(runs(), 3, "each queued job ran once, though two job processes claim them")
    rows = a.sql("SELECT COUNT(*) FROM hl_job_queue WHERE done_at IS NOT NULL AND attempts = 1")
    t.eq(rows[0][0], 3, "each was claimed once (one attempt each)")


def main():
    t = Tap()
    if not ON_PG:
        t.skip("two machines on one database", "needs PostgreSQL: SQLite serves one machine")
        t.done()
    a = Instance()
    a.set(plugin_dirs=LUA_PLUGINS, password_cost="min", login_rate_limit=1000)
    b = second_machine(a)
    sa, sb = Server(a, workers=2, tap=t), Server(b, workers=2, tap=t)
    try:
        sa.start()
        sb.start()
        t.ok(sa.port != sb.port, "two servers run on one database, from two instance folders")
        t.run(test_sessions, sa, sb, a)
        t.run(test_plugin_enable, sa, sb, a)
        t.run(test_writes_seen_by_both, sa, sb)
        t.run(test_job_once, sa, sb, a)
    finally:
        sa.stop()
        sb.stop()
        shutil.rmtree(b.tmp, ignore_errors=True)
    t.done()


main()
