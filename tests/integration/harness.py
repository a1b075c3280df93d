# Shared helpers for the integration tests: a small TAP reporter, halle instances in temporary
# folders on SQLite or PostgreSQL (HALLE_TEST_BACKEND, HALLE_TEST_PG) whose data the tests reach
# through `halle sql`, real `halle serve` processes on 127.0.0.1 (always stopped, even when a
# test fails), and raw-socket / worker-pid helpers. Python 3 standard library only.
import atexit
import decimal
import html
import json
import http.client
import urllib.parse
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

HALLE_BIN = os.environ.get("HALLE_BIN") or "/work/main/build/halle"
SHARE_DIR = os.environ.get("HALLE_SHARE_DIR") or "/work/main"
SRC_DIR = os.environ.get("HALLE_SRCDIR") or SHARE_DIR
os.environ["HALLE_SHARE_DIR"] = SHARE_DIR  # every child process sees it

HOST = "127.0.0.1"

# The storage backend the tests run on: sqlite (files in the instance folder) or postgresql
# (fresh databases in the cluster HALLE_TEST_PG names, a superuser URI such as
# postgresql://postgres@127.0.0.1:PORT/postgres; scripts/test starts a private one).
BACKEND = os.environ.get("HALLE_TEST_BACKEND") or "sqlite"
if BACKEND not in ("sqlite", "postgresql"):
    raise SystemExit("HALLE_TEST_BACKEND must be sqlite or postgresql, not %r" % BACKEND)
PG_ADMIN = os.environ.get("HALLE_TEST_PG") or ""
ON_PG = BACKEND == "postgresql"


# ---- TAP ---------------------------------------------------------------------------------

class Tap:
    """TAP producer: ok/eq print one line each, done() prints the plan and exits 0."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    @staticmethod
    def _clean(name):
        # One line, and no '#' that TAP would read as a directive (SKIP/TODO).
        return " ".join(str(name).split()).replace("#", "\\#")

    def comment(self, text):
        for line in str(text).splitlines() or [""]:
            print("# " + line)
        sys.stdout.flush()

    def ok(self, cond, name, diag=""):
        self.n += 1
        good = bool(cond)
        if not good:
            self.failed += 1
        print("%s %d - %s" % ("ok" if good else "not ok", self.n, self._clean(name)))
        if not good and diag:
            self.comment(diag)
        sys.stdout.flush()
        return good

    def skip(self, name, reason):
        """A check that does not apply here: 'ok N - name # SKIP reason' (counted as skipped)."""
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, self._clean(name), self._clean(reason)))
        sys.stdout.flush()

    def sqlite_only(self, name, why):
        """True on SQLite. On PostgreSQL reports name as skipped (why: what the check is about,
        e.g. 'the SQLite file's mode') and returns False: `if t.sqlite_only(...): ...`."""
        if not ON_PG:
            return True
        self.skip(name, "SQLite only: " + why)
        return False

    def eq(self, got, want, name):
        return self.ok(got == want, name, "got:  %r\nwant: %r" % (got, want))

    def run(self, fn, *args):
        """Runs one check group; an exception becomes a 'not ok' with the traceback."""
        name = getattr(fn, "__name__", "test")
        try:
            fn(self, *args)
        except Exception:
            self.ok(False, "%s: no exception" % name, traceback.format_exc())

    def done(self):
        print("1..%d" % self.n)
        sys.stdout.flush()
        stop_all_servers()
        sys.exit(0)


# ---- running the binary ------------------------------------------------------------------

def wait_for_binary(timeout=120):
    """The binary may be briefly missing while it is rebuilt."""
    deadline = time.time() + timeout
    while not os.access(HALLE_BIN, os.X_OK) and time.time() < deadline:
        time.sleep(0.5)


def run(args, timeout=30, cwd=None, env=None):
    """Runs `halle ARGS` to completion; returns a CompletedProcess with text stdout/stderr.
    env adds to the environment. On timeout the process and its children are killed and
    returncode is None."""
    wait_for_binary()
    for attempt in range(20):
        try:
            p = subprocess.Popen([HALLE_BIN] + list(args), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                 cwd=cwd, env=dict(os.environ, **(env or {})),
                                 start_new_session=True)
            break
        except OSError:  # ETXTBSY / ENOENT while the binary is being replaced
            if attempt == 19:
                raise
            time.sleep(0.5)
            wait_for_binary()
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        kids = child_pids(p.pid)
        p.kill()
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        out, err = p.communicate()
        rc = None
        err += "\n[harness: killed after %ss]" % timeout
    return subprocess.CompletedProcess([HALLE_BIN] + list(args), rc, out, err)


def read_version():
    """The version from configure.ac's AC_INIT."""
    with open(os.path.join(SRC_DIR, "configure.ac"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"AC_INIT\(\s*\[?[^],]*\]?\s*,\s*\[?([^],\s]+)\]?", text)
    if not m:
        raise RuntimeError("no AC_INIT version in configure.ac")
    return m.group(1)


def migration_versions(which):
    """Version numbers of the migration files in SHARE_DIR/core/migrations/WHICH (main or
    archive), sorted: what `halle migrate` is expected to have applied."""
    folder = os.path.join(SHARE_DIR, "core", "migrations", which)
    out = []
    for name in os.listdir(folder):
        m = re.match(r"^(\d+)_.*\.sql$", name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


# ---- instances ---------------------------------------------------------------------------

_tempdirs = []


def _cleanup_tempdirs():
    for d in _tempdirs:
        shutil.rmtree(d, ignore_errors=True)


class SQLError(RuntimeError):
    """`halle sql` failed: the message is its stderr."""


def sql_param(v):
    """A Python value as a `halle sql` PARAM (see `halle sql --help`)."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and v == v and abs(v) != float("inf"):
        r = repr(v) if "e" not in repr(v) else format(decimal.Decimal(v), "f")
        return r if "." in r else r + ".0"
    if isinstance(v, str):
        return ":" + v
    raise TypeError("halle sql takes int, float, str, bool or None parameters, not %r" % (v,))


class SQLCursor:
    def __init__(self, result):
        self.rows = result if isinstance(result, list) else []
        self.rowcount = -1 if isinstance(result, list) or result is None else result

    def fetchone(self):
        return self.rows.pop(0) if self.rows else None

    def fetchall(self):
        rows, self.rows = self.rows, []
        return rows

    def __iter__(self):
        return iter(self.fetchall())


class SQLConnection:
    """See Instance.connect."""

    def __init__(self, inst, archive=False):
        self.inst = inst
        self.archive = archive

    def execute(self, query, params=()):
        return SQLCursor(self.inst.sql(query, *params, archive=self.archive))

    def executemany(self, query, seq):
        for params in seq:
            self.execute(query, params)

    def commit(self):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- PostgreSQL: a role and two databases per instance, dropped at exit ------------------

_pg_made = []  # (role, [databases]) in creation order


def psql(*commands):
    """Runs each command with psql on the superuser connection HALLE_TEST_PG, each in its own
    transaction (CREATE DATABASE cannot run in one); returns the output, raises on failure."""
    if not PG_ADMIN:
        raise RuntimeError("HALLE_TEST_BACKEND=postgresql needs HALLE_TEST_PG (a superuser URI of a "
                           "cluster the tests may fill, as scripts/test starts one)")
    args = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", PG_ADMIN]
    for c in commands:
        args += ["-c", c]
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                       text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError("psql failed (%d): %s" % (p.returncode, p.stderr.strip()))
    return p.stdout


def pg_uri(user, dbname):
    """A URI for user on dbname in the cluster of HALLE_TEST_PG (trust authentication)."""
    u = urllib.parse.urlsplit(PG_ADMIN)
    host = u.hostname or HOST
    return "postgresql://%s@%s%s/%s" % (user, host, ":%d" % u.port if u.port else "", dbname)


def pg_create_databases():
    """A fresh login role (with CREATEROLE: plugin isolation makes a role per Lua plugin) and two
    databases it owns, NAME and NAME_archive. Returns (role, main URI, archive URI)."""
    role = "hlt%d_%d_%s" % (os.getpid(), len(_pg_made) + 1, os.urandom(3).hex())
    dbs = [role, role + "_archive"]
    _pg_made.append((role, dbs))
    psql('CREATE ROLE "%s" LOGIN CREATEROLE' % role,
         *['CREATE DATABASE "%s" OWNER "%s"' % (d, role) for d in dbs])
    return role, pg_uri(role, dbs[0]), pg_uri(role, dbs[1])


def _pg_drop_all():
    """Drops what pg_create_databases made (after the servers stopped: atexit order), and the
    roles halle made for the instance's plugins (granted to its role, or named after it), so
    that the cluster does not fill up."""
    for role, dbs in reversed(_pg_made):
        try:
            cmds = ['DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % d for d in dbs]
            others = psql("SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
                          "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = '%s' "
                          "UNION SELECT rolname FROM pg_roles WHERE starts_with(rolname, '%s_')" % (role, role))
            cmds += ['DROP ROLE IF EXISTS "%s"' % r for r in others.split() + [role]]
            psql(*cmds)
        except Exception as e:  # never hide the test's own result behind this
            sys.stderr.write("harness: could not drop %s: %s\n" % (role, e))
    del _pg_made[:]


class Instance:
    """A `halle init` folder inside a fresh temporary directory, on the backend the tests run on:
    SQLite files in its data/ folder, or (HALLE_TEST_BACKEND=postgresql) a role and two
    databases of its own in the test cluster. inst.db and inst.archive are the files' paths or
    the databases' URIs; tests reach the data with inst.sql() / inst.archive_sql()."""

    def __init__(self, name=None, init=True):
        self.tmp = tempfile.mkdtemp(prefix="halle-it-")
        _tempdirs.append(self.tmp)
        self.dir = os.path.join(self.tmp, "inst")
        self.conf = os.path.join(self.dir, "halle.conf")
        self.pg_role = None
        if ON_PG:
            self.pg_role, self.db, self.archive = pg_create_databases()
        else:
            self.db = os.path.join(self.dir, "data", "halle.db")
            self.archive = os.path.join(self.dir, "data", "archive.db")
        self.log_path = os.path.join(self.tmp, "halle.log")
        self.init_result = None
        if init:
            args = ["init", self.dir] + self.init_args() + (["--name", name] if name else [])
            self.init_result = run(args)
            if self.init_result.returncode != 0:
                raise RuntimeError("halle init failed (%d): %s" % (
                    self.init_result.returncode, self.init_result.stderr.strip()))
            self.set(log_file=self.log_path)

    def init_args(self):
        """What `halle init DIR` needs besides DIR for this instance's databases."""
        return ["--database", self.db, "--archive-database", self.archive] if ON_PG else []

    def sql(self, query, *params, archive=False):
        """Runs one statement through `halle sql --json` (so on either backend): a list of row
        tuples for a statement with rows, else the number of rows changed (None when unknown).
        Parameters bind to '?' (int, str, bool, None). Raises SQLError when halle says no."""
        args = ["sql", "-c", self.conf, "--json"] + (["--archive"] if archive else [])
        r = run(args + ["--", query] + [sql_param(p) for p in params], timeout=60)
        if r.returncode != 0:
            raise SQLError("halle sql %r failed (%s): %s" % (query, r.returncode, r.stderr.strip()))
        out = json.loads(r.stdout)
        if isinstance(out, dict):
            return out["changes"]
        return [tuple(row.values()) for row in out]

    def archive_sql(self, query, *params):
        """inst.sql on the archive database."""
        return self.sql(query, *params, archive=True)

    def tables(self, archive=False):
        """The names of the tables in the database (every schema on PostgreSQL, where a Lua
        plugin's tables live in a schema of its own)."""
        if ON_PG:
            q = "SELECT tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        else:
            q = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {r[0] for r in self.sql(q, archive=archive)}

    def connect(self, archive=False):
        """inst.sql behind the few sqlite3 connection calls tests use (execute, executemany,
        fetchone/fetchall, with-blocks): each statement commits on its own."""
        return SQLConnection(self, archive)

    def read_conf(self):
        with open(self.conf, encoding="utf-8") as f:
            return f.read()

    def write_conf(self, text):
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(text)

    def set(self, **kv):
        """Replaces `key = value` lines (or appends them) in halle.conf."""
        lines = self.read_conf().splitlines()
        for key, value in kv.items():
            line = "%s = %s" % (key, value)
            pat = re.compile(r"^\s*%s\s*=" % re.escape(key))
            for i, old in enumerate(lines):
                if pat.match(old):
                    lines[i] = line
                    break
            else:
                lines.append(line)
        self.write_conf("\n".join(lines) + "\n")
        return self

    def log_text(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)


# ---- servers -----------------------------------------------------------------------------

_servers = []


def stop_all_servers():
    for s in list(_servers):
        try:
            s.stop()
        except Exception:
            pass


def _on_sigterm(signum, frame):
    raise SystemExit(1)


atexit.register(_cleanup_tempdirs)
atexit.register(_pg_drop_all)
atexit.register(stop_all_servers)  # runs first (LIFO): before the databases and temp dirs go
signal.signal(signal.SIGTERM, _on_sigterm)


def proc_ppid(pid):
    """Parent pid from /proc/PID/stat, or None if the process is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = data.rsplit(")", 1)[1].split()
    return int(rest[1])  # fields after comm: state, ppid, ...


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[0]


def child_pids(ppid):
    """Live (non-zombie) children of ppid, sorted."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if proc_ppid(pid) == ppid and proc_state(pid) not in (None, "Z", "X"):
            out.append(pid)
    return sorted(out)


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


JOBS_COMM = "halle-jobs"  # the jobs process names itself so (core/http.c, spawn_jobs)


def pid_alive(pid):
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


class Server:
    """`halle serve` on 127.0.0.1 with a port picked by the master."""

    def __init__(self, inst, workers=2, tap=None, ready_timeout=10, extra_args=()):
        self.inst = inst
        self.workers = workers
        self.tap = tap
        self.ready_timeout = ready_timeout
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.pid = None
        self.banner = ""
        self.stderr_path = inst.path("serve-%d.stderr" % int(time.time() * 1000))
        self.returncode = None
        self.killed = False
        self._known_workers = set()

    # -- lifecycle

    def start(self):
        wait_for_binary()
        args = [HALLE_BIN, "serve", "-c", self.inst.conf, "--listen", "%s:0" % HOST,
                "--workers", str(self.workers)] + self.extra_args
        errf = open(self.stderr_path, "ab")
        try:
            for attempt in range(20):
                try:
                    self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errf,
                                                 stdin=subprocess.DEVNULL, env=os.environ.copy(),
                                                 start_new_session=True)
                    break
                except OSError:
                    if attempt == 19:
                        raise
                    time.sleep(0.5)
                    wait_for_binary()
        finally:
            errf.close()
        self.pid = self.proc.pid
        _servers.append(self)
        try:
            self.banner = self._read_banner()
            m = re.search(r"serving http://127\.0\.0\.1:(\d+)/", self.banner)
            if not m:
                raise RuntimeError("unexpected banner: %r" % self.banner)
            self.port = int(m.group(1))
            self._wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def _read_banner(self):
        deadline = time.time() + self.ready_timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.time()
            if left <= 0:
                raise RuntimeError("no 'serving' line within %ss; stderr: %s"
                                   % (self.ready_timeout, self.stderr_text()[-2000:]))
            r, _, _ = select.select([fd], [], [], min(left, 0.2))
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise RuntimeError("halle serve exited with %s before serving; stderr: %s"
                                       % (self.proc.returncode, self.stderr_text()[-2000:]))
                buf += chunk
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace")

    def _wait_ready(self):
        deadline = time.time() + self.ready_timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("halle serve exited with %s; stderr: %s"
                                   % (self.proc.returncode, self.stderr_text()[-2000:]))
            try:
                st, _, _ = request(self.port, "GET", "/health", timeout=2)
                if st == 200 and len(self.worker_pids()) == self.workers:
                    self._known_workers = set(self.worker_pids())
                    return
                last = "status %d, %d workers" % (st, len(self.worker_pids()))
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError("server not ready within %ss (%s); stderr: %s"
                           % (self.ready_timeout, last, self.stderr_text()[-2000:]))

    def worker_pids(self):
        """The master's children except the jobs process."""
        kids = child_pids(self.pid) if self.pid else []
        return [k for k in kids if proc_comm(k) != JOBS_COMM]

    def jobs_pid(self):
        """The jobs process's pid, or None."""
        kids = child_pids(self.pid) if self.pid else []
        jobs = [k for k in kids if proc_comm(k) == JOBS_COMM]
        return jobs[0] if jobs else None

    def wait_exit(self, timeout):
        """Waits for the master to exit; returns its exit code or None on timeout."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=15):
        """SIGTERM, wait; kill -9 (master and workers) after `timeout` s, reported as a failure.
        Returns the master's exit code (negative for a signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            workers = set(child_pids(self.pid)) | self._known_workers
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait_exit(timeout) is None:
                self.killed = True
                workers |= set(child_pids(self.pid))
                self.proc.kill()
                self.proc.wait()
                for w in workers:
                    if pid_alive(w) and proc_ppid(w) in (self.pid, 1):
                        try:
                            os.kill(w, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                if self.tap:
                    self.tap.ok(False, "server (pid %d) stops within %g s of SIGTERM" % (self.pid, timeout),
                                "had to kill -9 it")
        self.returncode = self.proc.returncode
        if self.proc.stdout:
            self.proc.stdout.close()
        if self in _servers:
            _servers.remove(self)
        return self.returncode

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def stderr_text(self):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_text(self):
        """The log, wherever log_file points (the instance file or stderr)."""
        return self.inst.log_text() + self.stderr_text()

    # -- requests

    def request(self, method, path, body=None, headers=None, timeout=10):
        return request(self.port, method, path, body, headers, timeout)

    def get(self, path, headers=None, timeout=10):
        return request(self.port, "GET", path, None, headers, timeout)

    def raw(self, data, timeout=5, **kw):
        return raw_request(self.port, data, timeout, **kw)

    def health(self, timeout=5):
        """True once GET /health answers 200 (retried until timeout)."""
        deadline = time.time() + timeout
        while True:
            try:
                st, _, body = request(self.port, "GET", "/health", timeout=2)
                if st == 200 and body == b"ok\n":
                    return True
            except OSError:
                pass
            if time.time() >= deadline:
                return False
            time.sleep(0.05)


# ---- HTTP helpers ------------------------------------------------------------------------

def request(port, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection: (status, HTTPMessage headers, body bytes)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.headers, data
    finally:
        conn.close()


class RawResponse:
    def __init__(self, data, closed, error=None):
        self.data = data          # every byte received
        self.closed = closed      # the server closed (or reset) the connection
        self.error = error        # exception text from send/recv, if any
        self.status = None
        self.headers = {}
        self.body = b""
        parse_raw(self)

    def __repr__(self):
        return "RawResponse(status=%r, closed=%r, error=%r, data=%r)" % (
            self.status, self.closed, self.error, self.data[:300])


def parse_raw(r):
    head, sep, body = r.data.partition(b"\r\n\r\n")
    if not sep:
        return
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\d\.\d (\d{3})", lines[0])
    if not m:
        return
    r.status = int(m.group(1))
    for line in lines[1:]:
        k, _, v = line.partition(":")
        r.headers[k.strip().lower()] = v.strip()
    r.body = body


def _complete(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return m is not None and len(body) >= int(m.group(1))


def raw_request(port, data, timeout=5, until_close=False, connect_timeout=5):
    """Sends bytes on a new connection and reads the response: until the server closes, the
    timeout passes, or (unless until_close) one response with a Content-Length is complete."""
    s = socket.create_connection((HOST, port), timeout=connect_timeout)
    got = b""
    closed = False
    error = None
    try:
        s.settimeout(timeout)
        try:
            s.sendall(data)
        except OSError as e:  # the server may close before reading everything
            error = repr(e)
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError as e:
                error = error or repr(e)
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
            if not until_close and _complete(got):
                break
    finally:
        s.close()
    return RawResponse(got, closed, error)


def multipart_body(fields, files, boundary="----halleTestBoundary7MA4YWxkTrZu0gW"):
    """fields: {name: str}; files: [(name, filename, content_type, bytes)].
    Returns (content_type_header, body_bytes)."""
    out = []
    for name, value in fields.items():
        out.append(b"--" + boundary.encode() + b"\r\n")
        out.append(b'Content-Disposition: form-data; name="%s"\r\n\r\n' % name.encode())
        out.append(value.encode("utf-8") + b"\r\n")
    for name, filename, ctype, data in files:
        out.append(b"--" + boundary.encode() + b"\r\n")
        out.append(b'Content-Disposition: form-data; name="%s"; filename="%s"\r\n'
                   % (name.encode(), filename.encode()))
        out.append(b"Content-Type: %s\r\n\r\n" % ctype.encode())
        out.append(data + b"\r\n")
    out.append(b"--" + boundary.encode() + b"--\r\n")
    return "multipart/form-data; boundary=" + boundary, b"".join(out)


def wait_until(cond, timeout, step=0.05):
    """Polls cond() until it is truthy or timeout passes; returns its last value."""
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() >= deadline:
            return v
        time.sleep(step)


def free_port():
    """A free port on 127.0.0.1 (closed again: for a server started next)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Inbox:
    """A real SMTP server (aiosmtpd) on loopback that keeps what it receives."""

    def __init__(self):
        import email
        import email.policy
        import threading
        from aiosmtpd.controller import Controller
        self._parse = lambda data: email.message_from_bytes(data, policy=email.policy.default)
        self.messages = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname=HOST, port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        msg = self._parse(envelope.content)
        with self.lock:
            self.messages.append((envelope.rcpt_tos, msg))
        return "250 OK"

    def wait_for(self, to, subject_part, timeout=15, body_part=""):
        """The first message to `to` whose subject (and body) hold the parts, taken out of the
        inbox; None after timeout seconds."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for rcpts, msg in self.messages:
                    if to in rcpts and subject_part in str(msg["Subject"]) and body_part in msg.get_content():
                        self.messages.remove((rcpts, msg))
                        return msg
            time.sleep(0.1)
        return None

    def stop(self):
        self.controller.stop()


def browser_prerequisites(t):
    """Chromium's path when chromium, node and playwright-core (npm ci in tests/browser) are
    there; otherwise a failed check and the end of the test."""
    chrome = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    browser_dir = os.path.join(SRC_DIR, "tests", "browser")
    if not (os.access(chrome, os.X_OK) and shutil.which("node")
            and os.path.isfile(os.path.join(browser_dir, "node_modules", "playwright-core", "package.json"))):
        t.ok(False, "chromium, node and playwright-core (npm ci in tests/browser) are installed")
        t.done()
    return chrome


def run_browser_script(t, inst, chrome, script, command, steps, timeout=90):
    """Runs tests/browser/SCRIPT with the JSON command; each JSON line it prints ({step, ok,
    detail}) becomes a check, then its exit status and whether every one of steps was reached."""
    browser_dir = os.path.join(SRC_DIR, "tests", "browser")
    env = dict(os.environ, CHROMIUM=chrome, TMPDIR=inst.path("."))
    env.pop("DISPLAY", None)
    try:
        p = subprocess.run(["node", os.path.join(browser_dir, script), json.dumps(command)], cwd=browser_dir,
                           env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        out, err, rc = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        out, err, rc = (e.stdout or b"").decode("utf-8", "replace"), "timed out", None
    seen = []
    for line in out.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            t.comment("%s: %s" % (script, line))
            continue
        seen.append(r.get("step"))
        if r.get("step") != "end":
            detail = r.get("detail")
            t.ok(r.get("ok"), "browser: " + r.get("step", "?"),
                 json.dumps(detail, ensure_ascii=False) if detail is not None else "")
    t.ok(rc == 0, "%s exits with 0" % script, "exit %r; stderr:\n%s" % (rc, err[-3000:]))
    missing = [s for s in steps if s not in seen]
    t.ok(not missing, "the browser went through every step", "not reached: %s" % missing)


def free_port_socket():
    """A listening socket on 127.0.0.1 with a kernel-chosen port (to make a port busy)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    s.listen(1)
    return s


# ---- plugin and theme folders made by a test ---------------------------------------------

def write_plugin(root, name, files):
    """Writes a plugin folder root/name from {relative path: text}."""
    d = os.path.join(root, name)
    for rel, text in files.items():
        os.makedirs(os.path.dirname(os.path.join(d, rel)), exist_ok=True)
        with open(os.path.join(d, rel), "w") as f:
            f.write(text)


def private_share(inst):
    """A share folder of the instance's own (core, po and plugins linked to the sources, a copy of
    the themes a test may change), set as its share_dir; returns its path."""
    share = inst.path("share")
    os.makedirs(share)
    for sub in ("core", "po", "plugins"):
        os.symlink(os.path.join(SRC_DIR, sub), os.path.join(share, sub))
    shutil.copytree(os.path.join(SRC_DIR, "themes"), os.path.join(share, "themes"))
    inst.set(share_dir=share)
    return share


# ---- a browser-like client -----------------------------------------------------------

class Browser:
    """Keeps cookies like a browser, fills forms with their CSRF token."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}
        self.last_set_cookies = []

    def request(self, method, path, form=None, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read().decode("utf-8", "replace")
            self.last_set_cookies = resp.headers.get_all("Set-Cookie") or []
            for sc in self.last_set_cookies:
                name, _, rest = sc.partition("=")
                value = rest.split(";", 1)[0]
                if "Max-Age=0" in sc:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = value
            return resp.status, resp.headers, data
        finally:
            conn.close()

    def get(self, path):
        return self.request("GET", path)

    def csrf(self, page_html):
        m = re.search(r'name="_csrf" value="([^"]+)"', page_html)
        return html.unescape(m.group(1)) if m else ""

    def submit(self, page_path, action, fields):
        """GETs page_path, then posts fields to action with the page's CSRF token."""
        st, h, page = self.get(page_path)
        fields = dict(fields)
        fields["_csrf"] = self.csrf(page)
        return self.request("POST", action, form=fields)
