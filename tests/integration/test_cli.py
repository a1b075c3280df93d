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
    for fn in (test_version, test_help, test_usage_errors, test_init, test_migrate, test_newer_schema, test_bad_config,
               test_bad_options, test_port_in_use):
        t.run(fn)
    t.done()


if __name__ == "__main__":
    main()
