# `halle migrate-data` end to end: an instance on SQLite with accounts, sessions, the market's
# demo groups, producers and priced products, and a group made through the web, is copied into
# PostgreSQL (a private cluster this test starts, or HALLE_TEST_PG's), then served from there:
# its users log in, its groups are there, and new rows get new ids (the sequences follow the
# copied ids). Also: the refusals (no --to, a served instance, an instance already on
# PostgreSQL, a non-empty target, then --force), the check table, a copy whose check fails
# (rows in a cycle of parent links: nothing is committed), and the same copy into SQLite files.
import fcntl
import glob
import html
import os
import pwd
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run, write_plugin  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")


# A Lua plugin with its own table, money in it, idempotency keys and invoice numbers: GET routes
# that write only because this is a test plugin (no form, no CSRF token to fetch).
TILL = {
    "plugin.json": '{"name": "till", "version": "1.0.0", "description": "test: orders with invoice numbers"}',
    "migrations/001_orders.sql":
        "CREATE TABLE till_orders (id INTEGER PRIMARY KEY, invoice INTEGER NOT NULL UNIQUE, note TEXT NOT NULL, "
        "total_cents INTEGER NOT NULL, amount INTEGER NOT NULL, blob BLOB);\n",
    "main.lua": r'''
halle.route("GET", "/till/order", function(req)
  local q = req.query
  local status, body = halle.db.idempotent("order", q.key, q.note, function()
    local n = halle.db.counter_next("invoice")
    halle.db.exec("INSERT INTO till_orders (invoice, note, total_cents, amount) VALUES (?, ?, ?, ?)",
                  n, q.note, tonumber(q.cents), 2)
    return 201, tostring(n)
  end)
  return { status = status, content_type = "text/plain", body = body }
end)
''',
}


def skip(t, name, reason):
    t.n += 1
    print("ok %d - %s # SKIP %s" % (t.n, t._clean(name), reason))
    sys.stdout.flush()


# ---- a private PostgreSQL cluster ----------------------------------------------------------

def pg_bindir():
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class Cluster:
    """HALLE_TEST_PG's cluster (a superuser URI) if the test command gives one, else a cluster of
    our own: initdb into a temporary folder, 127.0.0.1 on a free port, the socket in that folder,
    run as an unprivileged user when we are root; stopped by stop()."""

    def __init__(self, bindir):
        self.bindir = bindir
        self.tmp = None
        self.uri = os.environ.get("HALLE_TEST_PG")
        if self.uri:
            return
        self.tmp = tempfile.mkdtemp(prefix="halle-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.prefix = []
        if os.geteuid() == 0:
            user = "postgres"
            try:
                pw = pwd.getpwnam(user)
            except KeyError:
                user, pw = "nobody", pwd.getpwnam("nobody")
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", user, "--"]
        subprocess.run(self.prefix + [os.path.join(bindir, "initdb"), "-D", self.data, "-U", "postgres", "-A", "trust",
                                      "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        opts = "-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off" % (port, self.tmp)
        subprocess.run(self.prefix + [os.path.join(bindir, "pg_ctl"), "-D", self.data, "-l",
                                      os.path.join(self.tmp, "log"), "-w", "-o", opts, "start"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.uri = "postgresql://postgres@127.0.0.1:%d/postgres" % port

    def psql(self, uri, sql):
        r = subprocess.run([os.path.join(self.bindir, "psql"), uri, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("psql: %s" % r.stderr.strip())
        return r.stdout.strip()

    def database(self, name):
        """A fresh role and its two databases (main, archive); returns their URIs."""
        self.psql(self.uri, "CREATE ROLE %s LOGIN CREATEROLE" % name)
        for db in (name, name + "_archive"):
            self.psql(self.uri, "CREATE DATABASE %s OWNER %s" % (db, name))
        u = urllib.parse.urlsplit(self.uri)  # the cluster trusts loopback logins (no password)
        base = "postgresql://%s@%s:%d/" % (name, u.hostname, u.port or 5432)
        return base + name, base + name + "_archive"

    def drop(self, name):
        for db in (name, name + "_archive"):
            self.psql(self.uri, "DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        self.psql(self.uri, "DROP ROLE IF EXISTS %s" % name)

    def stop(self):
        if self.tmp:
            subprocess.run(self.prefix + [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "immediate",
                                          "-w", "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- the instance to copy ------------------------------------------------------------------

def sq(path, sql, *params):
    c = sqlite3.connect(path, timeout=10)
    try:
        with c:
            return c.execute(sql, params).fetchall()
    finally:
        c.close()


def login(port, who):
    b = Browser(port)
    st, h, page = b.submit("/login", "/login", {"email": who, "password": PASSWORD})
    return b, st


def make_instance(t):
    inst = Instance(name="Halle à copier")
    extra = inst.path("extra")
    os.makedirs(extra)
    write_plugin(extra, "till", TILL)
    inst.set(plugin_dirs=MARKET_DIR + ":" + extra, password_cost="min", login_rate_limit="1000")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr)
    r = run(["market", "-c", inst.conf, "seed-demo"], timeout=120)
    t.ok(r.returncode == 0, "the market's demo data is made (groups, producers, priced products)", r.stderr)
    for who in ("alice", "bob"):
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s is created" % who, r.stderr)
    with Server(inst, workers=1) as srv:
        alice, st = login(srv.port, "alice@example.org")
        t.eq(st, 303, "alice logs in (a session is stored)")
        fields = {"name": "Les Paniers de la Halle", "description": "Légumes du coin.", "kind": "buying_group",
                  "join_policy": "open", "address": "1 place de la Halle", "postcode": "44000", "town": "Nantes"}
        st, h, page = alice.submit("/groups/new", "/groups/new", fields)
        m = re.match(r"^/groups/([a-z0-9-]+)/admin", h.get("Location") or "")
        t.ok(st == 303 and m, "alice creates a group through the web", (st, page[:300]))
        bob, st = login(srv.port, "bob@example.org")
        t.eq(st, 303, "bob logs in")

        # a served instance is not copied: its database changes under the copy
        r = run(["migrate-data", "-c", inst.conf, "--to", inst.path("never.db"), "--archive-to", inst.path("never-a.db")])
        t.ok(r.returncode == 1 and "already being served" in r.stderr and not os.path.exists(inst.path("never.db")),
             "migrate-data is refused while the instance is served", (r.returncode, r.stderr))
    slug = m.group(1) if m else "?"
    return inst, slug


def add_till(t, inst):
    """The Lua plugin's orders: its own table, money in it, idempotency keys, invoice numbers."""
    r = run(["plugin", "-c", inst.conf, "enable", "till"])
    t.ok(r.returncode == 0, "a Lua plugin with a table is enabled", r.stderr)
    with Server(inst, workers=1) as srv:
        for i, cents in enumerate((1250, 399, 10001)):
            st, h, body = srv.get("/till/order?key=k%d&note=%s&cents=%d" % (i, "caf%C3%A9-" + str(i), cents))
            t.ok(st == 201 and body.decode() == str(i + 1), "an order through the Lua plugin gets invoice %d" % (i + 1),
                 (st, body))
    # binary data: as it is
    sq(inst.db, "UPDATE till_orders SET blob = X'00FF10' WHERE invoice = 2")


CORE_TABLES = ("hl_users", "hl_sessions", "market_groups", "market_products", "market_categories", "market_members")
TILL_TABLES = ("till_orders", "hl_idempotency", "hl_counters")


def source_facts(inst, till):
    f = {"till": till}
    for table in CORE_TABLES + (TILL_TABLES if till else ()):
        f[table] = sq(inst.db, "SELECT count(*) FROM %s" % table)[0][0]
    f["price_cents"] = sq(inst.db, "SELECT sum(price_cents) FROM market_products")[0][0]
    if till:
        f["total_cents"] = sq(inst.db, "SELECT sum(total_cents) FROM till_orders")[0][0]
        f["max_order"] = sq(inst.db, "SELECT max(id) FROM till_orders")[0][0]
    f["max_user"] = sq(inst.db, "SELECT max(id) FROM hl_users")[0][0]
    f["max_group"] = sq(inst.db, "SELECT max(id) FROM market_groups")[0][0]
    f["groups"] = sorted(r[0] for r in sq(inst.db, "SELECT name FROM market_groups"))
    return f


# ---- the checks, for either kind of target --------------------------------------------------

def copy_and_serve(t, inst, slug, facts, main, archive, query, kind):
    """Copies inst into main/archive (empty), checks what migrate-data printed and what the
    target holds (query(sql) -> each row as text, columns joined by '|'), serves the instance from
    the target, then puts halle.conf back."""
    r = run(["migrate-data", "-c", inst.conf, "--to", main, "--archive-to", archive], timeout=300)
    if not t.ok(r.returncode == 0, "%s: migrate-data copies the instance" % kind, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])):
        return
    rows = {m.group(1): (int(m.group(2)), int(m.group(3)), m.group(4))
            for m in re.finditer(r"^(\w+)\s+(\d+)\s+(\d+)\s+(ok|DIFFERS)", r.stdout, re.M)}
    t.eq(rows.get("hl_users"), (facts["hl_users"], facts["hl_users"], "ok"), "%s: the check table has hl_users' counts" % kind)
    t.eq(rows.get("market_groups"), (facts["market_groups"], facts["market_groups"], "ok"),
         "%s: and market_groups'" % kind)
    t.ok("hl_migrations" not in rows and "hl_archive_records" in rows, "%s: hl_migrations is not copied, the archive is" % kind,
         r.stdout[-1500:])
    t.ok(re.search(r"^market_products\s.*price_cents %d / %d" % (facts["price_cents"], facts["price_cents"]), r.stdout, re.M),
         "%s: the money sum of market_products.price_cents is checked (%d)" % (kind, facts["price_cents"]), r.stdout[-1500:])
    if facts["till"]:
        t.ok(re.search(r"^till_orders\s.*total_cents %d / %d amount 6 / 6" % (facts["total_cents"], facts["total_cents"]),
                       r.stdout, re.M),
             "%s: and the Lua plugin's: total_cents, and amount (an integer)" % kind, r.stdout[-1500:])
    t.ok("database = %s" % main in r.stdout and "archive_database = %s" % archive in r.stdout,
         "%s: it prints the two lines for halle.conf" % kind, r.stdout[-600:])
    t.ok(re.search(r"market_products: %d row" % facts["market_products"], r.stderr),
         "%s: progress lines on stderr (not a terminal): one per table" % kind, r.stderr[-800:])
    t.ok(r.stderr.index("market_groups:") < r.stderr.index("market_members:") and
         r.stderr.index("hl_users:") < r.stderr.index("hl_sessions:"),
         "%s: parents are copied before children" % kind, r.stderr[-2000:])
    for table in CORE_TABLES + (TILL_TABLES if facts["till"] else ()):
        t.eq(query("SELECT count(*) FROM %s" % table), [str(facts[table])], "%s: the target holds %s's rows" % (kind, table))
    t.eq(query("SELECT sum(price_cents) FROM market_products"), [str(facts["price_cents"])],
         "%s: and the same prices" % kind)
    if facts["till"]:
        t.eq(query("SELECT invoice, length(blob) FROM till_orders WHERE blob IS NOT NULL"), ["2|3"],
             "%s: a blob is copied as bytes" % kind)

    # a target that holds rows is refused, untouched; --force empties it first
    r = run(["migrate-data", "-c", inst.conf, "--to", main, "--archive-to", archive])
    t.ok(r.returncode == 1 and "not empty" in r.stderr and "--force" in r.stderr,
         "%s: a non-empty target is refused, with --force named" % kind, (r.returncode, r.stderr))
    sentinel = "zoe@example.org"
    conf = inst.read_conf()
    inst.set(database=main, archive_database=archive)
    try:
        r = run(["user", "-c", inst.conf, "add", sentinel, "--name", "Zoé"], env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "%s: an account added to the target" % kind, r.stderr)
        if kind == "postgresql":
            r = run(["migrate-data", "-c", inst.conf, "--to", main, "--archive-to", archive])
            t.ok(r.returncode == 1 and "already on PostgreSQL" in r.stderr,
                 "%s: an instance already on PostgreSQL is not copied again" % kind, (r.returncode, r.stderr))
    finally:
        inst.write_conf(conf)
    r = run(["migrate-data", "-c", inst.conf, "--to", main, "--archive-to", archive, "--force"], timeout=300)
    t.ok(r.returncode == 0 and "--force" in r.stdout and "emptied" in r.stdout,
         "%s: --force copies again, saying it empties the target" % kind, (r.returncode, r.stdout[:400], r.stderr[-800:]))
    t.eq(query("SELECT count(*) FROM hl_users WHERE email = '%s'" % sentinel), ["0"],
         "%s: the target's own rows are gone" % kind)

    # serve the instance from the copy
    inst.set(database=main, archive_database=archive)
    try:
        with Server(inst, workers=1) as srv:
            b, st = login(srv.port, "bob@example.org")
            t.eq(st, 303, "%s: a copied account logs in on the copy" % kind)
            st, h, page = b.get("/groups/%s" % slug)
            t.ok(st == 200 and "Les Paniers de la Halle" in page, "%s: the group made on SQLite is there" % kind, (st, page[:300]))
            st, h, page = Browser(srv.port).get("/groups")
            t.ok(st == 200 and all(g in html.unescape(page) for g in facts["groups"][:3]),
                 "%s: the directory lists the copied groups" % kind, page[:500])
            r = run(["user", "-c", inst.conf, "add", "new@example.org", "--name", "Nouvelle"],
                    env={"HALLE_USER_PASSWORD": PASSWORD})
            t.ok(r.returncode == 0, "%s: a new account on the copy" % kind, r.stderr)
            got = query("SELECT id FROM hl_users WHERE email = 'new@example.org'")
            t.ok(got and int(got[0]) > facts["max_user"],
                 "%s: it gets a new id, after the copied ones (the sequence continues)" % kind, (got, facts["max_user"]))
            st, h, page = b.submit("/groups/new", "/groups/new",
                                   {"name": "Groupe d'après", "description": "Après la copie.", "kind": "buying_group",
                                    "join_policy": "open", "address": "2 rue Neuve", "postcode": "44000", "town": "Nantes"})
            t.eq(st, 303, "%s: a group is made on the copy" % kind)
            got = query("SELECT id FROM market_groups WHERE name = 'Groupe d''après'")
            t.ok(got and int(got[0]) > facts["max_group"], "%s: with a new id" % kind, (got, facts["max_group"]))
            if not facts["till"]:
                return
            st, h, body = srv.get("/till/order?key=k0&note=caf%C3%A9-0&cents=1250")
            t.ok(st == 201 and body.decode() == "1", "%s: a repeated order gets its copied answer (idempotency keys)" % kind,
                 (st, body))
            st, h, body = srv.get("/till/order?key=k9&note=after&cents=5")
            t.ok(st == 201 and body.decode() == "4", "%s: a new order gets the next invoice number" % kind, (st, body))
            got = query("SELECT id, note FROM till_orders WHERE invoice = 4")
            t.ok(got and int(got[0].split("|")[0]) > facts["max_order"] and got[0].endswith("after"),
                 "%s: in the plugin's table, with a new id" % kind, (got, facts["max_order"]))
            t.eq(query("SELECT note FROM till_orders WHERE invoice = 1"), ["café-0"], "%s: text copied as it was" % kind)
    finally:
        inst.write_conf(conf)


def failing_check(t, inst):
    """Rows the copy cannot order (parent links in a cycle) are not copied: the check sees it,
    names the table, and nothing is committed."""
    cols = [r[1] for r in sq(inst.db, "PRAGMA table_info(market_categories)")]
    t.eq(cols, ["id", "slug", "name", "parent_id"], "market_categories has the columns this test fills")
    sq(inst.db, "INSERT INTO market_categories (slug, name) VALUES ('cycle-a', 'A')")
    sq(inst.db, "INSERT INTO market_categories (slug, name, parent_id) "
                "SELECT 'cycle-b', 'B', id FROM market_categories WHERE slug = 'cycle-a'")
    sq(inst.db, "UPDATE market_categories SET parent_id = (SELECT id FROM market_categories WHERE slug = 'cycle-b') "
                "WHERE slug = 'cycle-a'")
    main, archive = inst.path("bad.db"), inst.path("bad-archive.db")
    try:
        r = run(["migrate-data", "-c", inst.conf, "--to", main, "--archive-to", archive], timeout=300)
        t.ok(r.returncode == 1 and "market_categories" in r.stderr and "differs" in r.stderr,
             "a copy whose check fails exits 1 naming the table", (r.returncode, r.stderr[-600:]))
        t.ok(re.search(r"^market_categories\s+\d+\s+\d+\s+DIFFERS", r.stdout, re.M),
             "the check table shows the difference", r.stdout[-2500:])
        t.eq(sq(main, "SELECT count(*) FROM hl_users"), [(0,)], "nothing was committed to the target")
    finally:
        sq(inst.db, "UPDATE market_categories SET parent_id = NULL WHERE slug IN ('cycle-a', 'cycle-b')")
        sq(inst.db, "DELETE FROM market_categories WHERE slug IN ('cycle-a', 'cycle-b')")


def usage(t, inst):
    r = run(["migrate-data", "-c", inst.conf])
    t.ok(r.returncode == 2 and "--to" in r.stderr, "without --to: a usage error", (r.returncode, r.stderr))
    r = run(["help", "migrate-data"])
    t.ok(r.returncode == 0 and "--force" in r.stdout and "--archive-to" in r.stdout, "help migrate-data", r.stdout)
    r = run(["--help"])
    t.ok("migrate-data" in r.stdout, "halle --help lists migrate-data", r.stdout)
    r = run(["migrate-data", "-c", inst.conf, "--to", inst.db, "--archive-to", inst.path("x.db")])
    t.ok(r.returncode == 1 and "own databases" in r.stderr, "the instance's own file is not a target", r.stderr)
    r = run(["migrate-data", "-c", inst.conf, "--to", inst.path("x.db")])
    t.ok(r.returncode == 1 and "--archive-to" in r.stderr, "a file target needs --archive-to", r.stderr)
    # while a copy holds the instance lock, neither serve nor a second copy starts
    with open(os.path.join(inst.dir, "halle.lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write("4242 migrate-data\n")
        f.flush()
        r = run(["serve", "-c", inst.conf, "--listen", "127.0.0.1:0"], timeout=20)
        t.ok(r.returncode == 1 and "in use by halle migrate-data (pid 4242" in r.stderr,
             "halle serve does not start while migrate-data runs", (r.returncode, r.stderr))
        r = run(["migrate-data", "-c", inst.conf, "--to", inst.path("x.db"), "--archive-to", inst.path("xa.db")])
        t.ok(r.returncode == 1 and "in use by halle migrate-data" in r.stderr and not os.path.exists(inst.path("x.db")),
             "nor a second migrate-data", (r.returncode, r.stderr))


def main():
    t = Tap()
    if os.environ.get("HALLE_TEST_BACKEND", "sqlite") != "sqlite":
        skip(t, "migrate-data", "copies from SQLite: run in the SQLite pass (with HALLE_TEST_PG as the target)")
        t.done()
    inst, slug = make_instance(t)
    facts = source_facts(inst, till=False)
    t.ok(facts["hl_sessions"] >= 2 and facts["market_groups"] >= 4 and facts["market_products"] > 100,
         "the instance has sessions, groups and products to copy", facts)
    t.run(usage, inst)
    t.run(failing_check, inst)

    # A Lua plugin's tables, money and keys (on PostgreSQL in its own schema, under its role).
    add_till(t, inst)
    facts = source_facts(inst, till=True)
    bindir = pg_bindir()
    if not bindir:
        skip(t, "migrate-data to PostgreSQL", "no PostgreSQL binaries (initdb) on this machine")
    cluster = None
    try:
        if bindir:
            cluster = Cluster(bindir)
            name = "halle_md_%d" % os.getpid()
            main_uri, archive_uri = cluster.database(name)
            try:
                t.run(copy_and_serve, inst, slug, facts, main_uri, archive_uri,
                      # a Lua plugin's tables are in its schema (halle's own connections list them)
                      lambda sql: [l for l in cluster.psql(main_uri, "SET search_path = public, hlp_till; " + sql)
                                   .splitlines() if l != "SET"],
                      "postgresql")
            finally:
                if os.environ.get("HALLE_TEST_PG"):
                    cluster.drop(name)
    except Exception as e:  # the cluster itself failed: a failure, not a skip
        t.ok(False, "a PostgreSQL cluster for the test", repr(e))
    finally:
        if cluster:
            cluster.stop()

    main_db, archive_db = inst.path("copy.db"), inst.path("copy-archive.db")
    t.run(copy_and_serve, inst, slug, facts, main_db, archive_db,
          lambda sql: ["|".join(str(x) for x in r) for r in sq(main_db, sql)], "sqlite")
    t.done()

main()
