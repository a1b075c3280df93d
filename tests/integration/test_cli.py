# The halle command line: --version/--help/help, usage errors (exit 2), `init` (files, modes,
# refusing to overwrite), `migrate` (idempotent, hl_migrations rows), and `serve` refusing bad
# configuration files, bad options and a busy port (exit 1 or 2 with a message).
import os
import re
import stat
import sys

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ON_PG, Instance, Tap, free_port_socket, migration_versions,  # noqa: E402
                     read_version, run)


def usage_error(t, r, what, stdout_empty=True, needle="usage:"):
    t.eq(r.returncode, 2, "%s: exit status 2" % what)
    if stdout_empty:
        t.eq(r.stdout, "", "%s: nothing on stdout" % what)
    t.ok(needle in r.stderr, "%s: stderr has %r" % (what, needle), "stderr: %r" % r.stderr)


def test_version(t):
    want = read_version()
    r = run(["--version"])
    t.eq(r.returncode, 0, "--version: exit status 0")
    t.eq(r.stdout, "halle %s\n" % want, "--version prints 'halle %s' (AC_INIT)" % want)
    t.eq(r.stderr, "", "--version: nothing on stderr")


def test_help(t):
    r = run(["--help"])
    t.eq(r.returncode, 0, "--help: exit status 0")
    t.ok(r.stdout.startswith("usage: halle ") and "serve" in r.stdout and "migrate" in r.stdout,
         "--help: usage listing the commands on stdout", r.stdout)
    r = run(["help", "serve"])
    t.eq(r.returncode, 0, "help serve: exit status 0")
    t.ok(r.stdout.startswith("usage: halle serve") and "--listen" in r.stdout,
         "help serve: serve usage on stdout", r.stdout)
    for cmd in ("init", "serve", "migrate"):
        r = run([cmd, "--help"])
        t.eq(r.returncode, 0, "%s --help: exit status 0" % cmd)
        t.ok(r.stdout.startswith("usage: halle %s" % cmd), "%s --help: its usage on stdout" % cmd,
             "stdout: %r\nstderr: %r" % (r.stdout, r.stderr))


def test_usage_errors(t):
    r = run(["frobnicate"])
    usage_error(t, r, "unknown command")
    t.ok("unknown command 'frobnicate'" in r.stderr, "unknown command: named in the message", r.stderr)
    r = run(["--frobnicate"])
    usage_error(t, r, "unknown global option")
    t.ok("unknown option '--frobnicate'" in r.stderr, "unknown global option: named in the message",
         r.stderr)
    usage_error(t, run(["serve", "--frobnicate"]), "serve with an unknown flag", needle="usage: halle serve")
    usage_error(t, run(["migrate", "--frobnicate"]), "migrate with an unknown flag",
                needle="usage: halle migrate")
    usage_error(t, run(["help", "frobnicate"]), "help for an unknown command")
    usage_error(t, run([]), "no command at all")
    r = run(["init"])
    usage_error(t, r, "init without a folder", needle="usage: halle init")
    t.ok("init needs a folder" in r.stderr, "init without a folder: says a folder is needed", r.stderr)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init(t):
    inst = Instance(init=False)
    r = run(["init", inst.dir] + inst.init_args())
    t.eq(r.returncode, 0, "init DIR: exit status 0")
    t.ok(inst.dir in r.stdout, "init DIR: names the folder on stdout", r.stdout)
    t.ok(os.path.isfile(inst.conf), "init creates halle.conf")
    if t.sqlite_only("init creates data/halle.db and data/archive.db (mode 0600)", "the SQLite files"):
        for db in (inst.db, inst.archive):
            name = os.path.relpath(db, inst.dir)
            t.ok(os.path.isfile(db), "init creates %s" % name)
            if os.path.exists(db):
                t.eq(oct(mode(db)), oct(0o600), "%s has mode 0600" % name)
                with open(db, "rb") as f:
                    t.eq(f.read(16), b"SQLite format 3\x00", "%s is an SQLite database" % name)
    t.ok(os.path.isdir(os.path.join(inst.dir, "logs")), "init creates logs/")
    if os.path.exists(inst.conf):
        t.eq(oct(mode(inst.conf) & 0o077), oct(0), "halle.conf is not readable by group or others")
    data = os.path.join(inst.dir, "data")
    if os.path.isdir(data):
        t.eq(oct(mode(data) & 0o077), oct(0), "data/ is not accessible by group or others")

    # A second init must refuse and leave everything alone.
    with open(inst.conf, "a", encoding="utf-8") as f:
        f.write("# operator's own line\n")
    before = open(inst.conf, "rb").read()
    applied = "SELECT component, version, applied_at FROM hl_migrations ORDER BY 1, 2"
    rows_before = (inst.sql(applied), inst.archive_sql(applied))
    db_before = open(inst.db, "rb").read() if not ON_PG else None
    r = run(["init", inst.dir] + inst.init_args())
    t.eq(r.returncode, 1, "init on an existing instance: exit status 1")
    t.ok("already exists" in r.stderr and "halle.conf" in r.stderr,
         "init on an existing instance: says halle.conf already exists", r.stderr)
    t.eq(open(inst.conf, "rb").read(), before, "init on an existing instance leaves halle.conf unchanged")
    t.ok(rows_before[0] and rows_before[1] and (inst.sql(applied), inst.archive_sql(applied)) == rows_before,
         "init on an existing instance leaves the migrations of both databases alone", rows_before)
    if t.sqlite_only("init on an existing instance leaves halle.db unchanged", "the SQLite file's bytes"):
        t.ok(open(inst.db, "rb").read() == db_before, "init on an existing instance leaves halle.db unchanged")

    # Without its migration files init cannot finish: it must say so and fail.
    empty = inst.path("empty-share")
    os.mkdir(empty)
    r = run(["init", inst.path("noshare")], env={"HALLE_SHARE_DIR": empty})
    t.eq(r.returncode, 1, "init without migration files: exit status 1")
    t.ok("migration" in r.stderr and empty in r.stderr,
         "init without migration files: names the missing migration folder", r.stderr)

    r = run(["init", inst.path("named"), "--name", "Marché du jeudi"])
    t.eq(r.returncode, 0, "init --name: exit status 0")
    conf = open(inst.path("named", "halle.conf"), encoding="utf-8").read()
    t.ok(re.search(r"(?m)^name = Marché du jeudi$", conf), "init --name writes the name into halle.conf", conf)


MIGRATE_RE = re.compile(r"(\d+) migration\(s\) applied to (\S+), (\d+) to (\S+)")


def check_migrations(t, inst, where, core, archive):
    """hl_migrations of both databases hold exactly the migration files' versions."""
    rows = inst.sql("SELECT component, version FROM hl_migrations ORDER BY 1, 2")
    t.eq(rows, [("core", v) for v in core],
         "%s: hl_migrations holds core versions %s (version 1 first)" % (where, core))
    t.ok("hl_connection_log" in inst.tables(), "%s has hl_connection_log" % where)
    rows = inst.archive_sql("SELECT component, version FROM hl_migrations ORDER BY 1, 2")
    t.eq(rows, [("archive", v) for v in archive],
         "%s: the archive's hl_migrations holds archive versions %s" % (where, archive))


def test_migrate(t):
    core, archive = migration_versions("main"), migration_versions("archive")
    t.ok(core[:1] == [1] and archive[:1] == [1], "migration files start at version 1",
         "core %r, archive %r" % (core, archive))
    inst = Instance()
    r = run(["migrate", "-c", inst.conf])
    t.eq(r.returncode, 0, "migrate after init: exit status 0")
    m = MIGRATE_RE.search(r.stdout)
    t.ok(m and m.group(1) == "0" and m.group(3) == "0",
         "migrate after init: 0 migrations applied (init applied them)", r.stdout + r.stderr)
    check_migrations(t, inst, "the instance's databases", core, archive)

    # Fresh databases elsewhere: the first run applies every migration file, the second none.
    if not t.sqlite_only("migrate on empty databases (data_dir elsewhere)", "database files made by migrate"):
        return
    os.mkdir(os.path.join(inst.dir, "data2"))
    inst.set(data_dir="data2")
    r = run(["migrate", "-c", inst.conf])
    t.eq(r.returncode, 0, "migrate on empty databases: exit status 0")
    m = MIGRATE_RE.search(r.stdout)
    t.ok(m and (m.group(1), m.group(3)) == (str(len(core)), str(len(archive))),
         "migrate on empty databases: applies the %d core and %d archive migration(s)" % (len(core), len(archive)),
         r.stdout + r.stderr)
    if m:
        t.ok(m.group(2).endswith("/data2/halle.db") and m.group(4).endswith("/data2/archive.db"),
             "migrate names both database files", r.stdout)
    r = run(["migrate", "-c", inst.conf])
    t.eq(r.returncode, 0, "migrate again: exit status 0")
    m = MIGRATE_RE.search(r.stdout)
    t.ok(m and m.group(1) == "0" and m.group(3) == "0", "migrate again: 0 migrations applied",
         r.stdout + r.stderr)
    check_migrations(t, inst, "data2/", core, archive)


def test_newer_schema(t):
    """A database upgraded by a newer halle (a migration this code does not have) is refused,
    by migrate and by serve, with a message saying what to do."""
    inst = Instance()
    core = migration_versions("main")
    # what a newer halle would have left behind
    inst.sql("INSERT INTO hl_migrations (component, version, name, applied_at) VALUES ('core', ?, ?, 'x')",
             core[-1] + 1, "%03d_future.sql" % (core[-1] + 1))
    for args in (["migrate", "-c", inst.conf], serve_args(inst)):
        r = run(args, timeout=30)
        t.ok(r.returncode != 0 and "schema is at version %d" % (core[-1] + 1) in r.stderr
             and "knows only up to %d" % core[-1] in r.stderr and "newer halle" in r.stderr,
             "%s refuses a database newer than the code, saying so" % args[0], r.stdout + r.stderr)


def test_sql(t):
    """halle sql: one statement through the storage API, parameters bound by kind, rows as
    tab-separated text (COPY escapes) or JSON, clear errors."""
    r = run(["--help"])
    t.ok("sql [-c FILE]" in r.stdout, "--help lists sql", r.stdout)
    r = run(["sql", "--help"])
    t.ok(r.returncode == 0 and r.stdout.startswith("usage: halle sql") and "--json" in r.stdout,
         "sql --help: its usage on stdout", r.stdout + r.stderr)
    inst = Instance()

    def sql(*args):
        return run(["sql", "-c", inst.conf] + list(args))

    r = sql("CREATE TABLE sqlcli_t (id INTEGER, r REAL, t TEXT)")
    t.eq((r.returncode, r.stdout), (0, "0 rows changed\n"), "a statement without rows: how many rows it changed")
    r = sql("INSERT INTO sqlcli_t (id, r, t) VALUES (?, ?, ?)", "-7", "2.5", "tab\there\nnew \\ line")
    t.eq((r.returncode, r.stderr), (0, ""), "parameters: a negative integer is a value, not an option")
    for params in (["42", "NULL", ":NULL"], ["7", "0.25", ":42"], ["8", "NULL", "::x"]):
        r = sql("INSERT INTO sqlcli_t (id, r, t) VALUES (?, ?, ?)", *params)
        t.eq((r.returncode, r.stderr), (0, ""), "insert with %r" % params)
    r = sql("SELECT id, r, t, t IS NULL AS n FROM sqlcli_t WHERE id <> 42 ORDER BY id")
    t.eq(r.stdout, "id\tr\tt\tn\n-7\t2.5\ttab\\there\\nnew \\\\ line\t0\n7\t0.25\t42\t0\n8\t\\N\t:x\t0\n",
         "rows: a header, tabs, COPY escapes, \\N for NULL; '::x' is the text ':x', ':42' the text '42'")
    r = sql("--json", "SELECT id, t, id AS t FROM sqlcli_t WHERE id = ?", "42")
    t.eq(r.stdout, '[\n{"id":42,"t":"NULL","t:2":42}\n]\n',
         "--json: one object per row; 'NULL' is SQL NULL and ':NULL' the text; a repeated name gets ':2'")
    r = sql("--json", "SELECT id FROM sqlcli_t WHERE id = ?", "1000")
    t.eq(r.stdout, "[]\n", "--json: no row is []")
    t.eq(inst.sql("SELECT id, r, t FROM sqlcli_t WHERE id IN (?, ?) ORDER BY id", -7, 8),
         [(-7, 2.5, "tab\there\nnew \\ line"), (8, None, ":x")], "Instance.sql gives the rows as tuples of Python values")
    r = sql("UPDATE sqlcli_t SET r = 1.5 WHERE id > 0")
    t.eq(r.stdout, "3 rows changed\n", "an UPDATE says how many rows it changed")
    t.eq(inst.sql("DELETE FROM sqlcli_t WHERE id = 8"), 1, "--json: {\"changes\": N}")
    r = sql("DELETE FROM sqlcli_t WHERE id = ?", "1000")
    t.eq((r.returncode, r.stdout), (0, "0 rows changed\n"), "with parameters too it says how many rows it changed")
    r = sql("DELETE FROM sqlcli_t WHERE id = ?", "-7")
    t.eq((r.returncode, r.stdout), (0, "1 row changed\n"), "one row")
    r = sql("SELECT '?' AS q, ? AS p -- ?", "5")
    t.eq((r.returncode, r.stdout), (0, "q\tp\n?\t5\n"), "a '?' in a string or a comment is no placeholder")
    r = sql("SELECT ? AS a, ? AS b", "1")
    t.ok(r.returncode == 2 and "2 placeholders" in r.stderr and "1 parameter" in r.stderr,
         "too few parameters: exit status 2, saying so", r.stderr)
    r = sql("SELECT 1", "1")
    t.ok(r.returncode == 2 and "0 placeholders" in r.stderr, "too many parameters: exit status 2", r.stderr)
    r = sql("SELECT * FROM sqlcli_nothere")
    t.ok(r.returncode == 1 and r.stderr.startswith("halle: sql: ") and "sqlcli_nothere" in r.stderr and r.stdout == "",
         "an SQL error: exit status 1 and the database's message naming the table", r.stderr)
    r = sql("INSERT INTO hl_migrations (component, version, name, applied_at) VALUES ('core', 1, 'x', 'x')")
    t.ok(r.returncode == 1 and r.stderr.startswith("halle: sql: "), "a constraint violation: exit status 1", r.stderr)
    r = sql("--archive", "SELECT DISTINCT component FROM hl_migrations")
    t.eq(r.stdout, "component\narchive\n", "--archive runs on the archive database")
    r = run(["sql"])
    t.ok(r.returncode == 2 and "needs a statement" in r.stderr, "no statement: exit status 2", r.stderr)
    r = run(["sql", "-c", inst.path("nothere.conf"), "SELECT 1"])
    t.ok(r.returncode == 1 and "nothere.conf" in r.stderr, "a missing configuration file: exit status 1, named", r.stderr)


def serve_args(inst, *extra):
    return ["serve", "-c", inst.conf, "--listen", "127.0.0.1:0", "--workers", "1"] + list(extra)


def test_bad_config(t):
    inst = Instance()
    good = inst.read_conf()
    # Unknown key, appended as the last line.
    inst.write_conf(good + "colour_scheme = teal\n")
    line = len((good + "colour_scheme = teal\n").splitlines())
    r = run(serve_args(inst), timeout=15)
    t.eq(r.returncode, 1, "serve with an unknown key: exit status 1")
    t.ok("halle.conf:%d:" % line in r.stderr and "unknown key 'colour_scheme'" in r.stderr,
         "serve with an unknown key: message names halle.conf:%d: and the key" % line, r.stderr)
    t.ok("serving" not in r.stdout, "serve with an unknown key: does not start serving", r.stdout)

    # Bad value for a known key, on its own line.
    lines = good.splitlines()
    idx = next(i for i, l in enumerate(lines) if l.startswith("max_body_size"))
    lines[idx] = "max_body_size = 12 parsecs"
    inst.write_conf("\n".join(lines) + "\n")
    r = run(serve_args(inst), timeout=15)
    t.eq(r.returncode, 1, "serve with a bad value: exit status 1")
    t.ok("halle.conf:%d:" % (idx + 1) in r.stderr and "max_body_size" in r.stderr
         and "12 parsecs" in r.stderr,
         "serve with a bad value: message names halle.conf:%d:, the key and the value" % (idx + 1), r.stderr)

    # Out-of-range number.
    lines = good.splitlines()
    idx = next(i for i, l in enumerate(lines) if l.startswith("read_timeout"))
    lines[idx] = "read_timeout = 0"
    inst.write_conf("\n".join(lines) + "\n")
    r = run(serve_args(inst), timeout=15)
    t.eq(r.returncode, 1, "serve with read_timeout = 0: exit status 1")
    t.ok("halle.conf:%d:" % (idx + 1) in r.stderr and "read_timeout" in r.stderr,
         "serve with read_timeout = 0: message names the line and the key", r.stderr)

    # A line that is not key = value.
    inst.write_conf(good + "just some words\n")
    r = run(serve_args(inst), timeout=15)
    t.eq(r.returncode, 1, "serve with a line without '=': exit status 1")
    t.ok("halle.conf:%d:" % (len(good.splitlines()) + 1) in r.stderr,
         "serve with a line without '=': message names the line", r.stderr)

    missing = inst.path("nowhere", "halle.conf")
    r = run(["serve", "-c", missing, "--listen", "127.0.0.1:0"], timeout=15)
    t.eq(r.returncode, 1, "serve with a missing config file: exit status 1")
    t.ok(missing in r.stderr, "serve with a missing config file: names the file", r.stderr)
    r = run(["migrate", "-c", missing])
    t.eq(r.returncode, 1, "migrate with a missing config file: exit status 1")
    t.ok(missing in r.stderr, "migrate with a missing config file: names the file", r.stderr)


def test_bad_options(t):
    inst = Instance()
    r = run(["serve", "-c", inst.conf, "--listen", "nonsense", "--workers", "1"], timeout=15)
    t.eq(r.returncode, 2, "serve --listen nonsense: exit status 2")
    t.ok("listen" in r.stderr and "nonsense" in r.stderr, "serve --listen nonsense: explains the problem",
         r.stderr)
    t.eq(r.stdout, "", "serve --listen nonsense: nothing on stdout")
    r = run(["serve", "-c", inst.conf, "--listen", "127.0.0.1:70000", "--workers", "1"], timeout=15)
    t.eq(r.returncode, 2, "serve --listen with port 70000: exit status 2")
    r = run(["serve", "-c", inst.conf, "--listen", "127.0.0.1:0", "--workers", "abc"], timeout=15)
    t.eq(r.returncode, 2, "serve --workers abc: exit status 2")
    t.ok("workers" in r.stderr and "abc" in r.stderr, "serve --workers abc: explains the problem", r.stderr)
    t.eq(r.stdout, "", "serve --workers abc: nothing on stdout")
    r = run(["serve", "-c", inst.conf, "extra-argument"], timeout=15)
    t.eq(r.returncode, 2, "serve with a stray argument: exit status 2")


def test_port_in_use(t):
    inst = Instance()
    sock = free_port_socket()
    try:
        port = sock.getsockname()[1]
        r = run(["serve", "-c", inst.conf, "--listen", "127.0.0.1:%d" % port, "--workers", "1"], timeout=15)
    finally:
        sock.close()
    t.eq(r.returncode, 1, "serve on a busy port: exit status 1")
    t.ok("cannot listen on 127.0.0.1:%d" % port in r.stderr, "serve on a busy port: says it cannot listen",
         r.stderr)
    t.ok("serving" not in r.stdout, "serve on a busy port: never claims to be serving", r.stdout)


def main():
    t = Tap()
    for fn in (test_version, test_help, test_usage_errors, test_init, test_migrate, test_newer_schema, test_sql,
               test_bad_config, test_bad_options, test_port_in_use):
        t.run(fn)
    t.done()


if __name__ == "__main__":
    main()
