# The account pages in a real browser: headless Chromium (Debian's package) driven by
# playwright-core (tests/browser/flow.mjs) goes through what a person clicks — sign-up with the
# labelled fields and the keyboard, the verification link from the mail received by a real SMTP
# listener (aiosmtpd) on loopback, login, logout, and a login with a wrong password — while this
# side checks the database (the address verified, the session created then removed).
# Screenshots of the sign-up form and the account page go to $HALLE_BUILDDIR/tests/artefacts/.
# Needs chromium, node and `npm ci` in tests/browser (a missing one is a failure, since CI
# installs them); HALLE_SKIP_BROWSER=1 skips the whole file (make distcheck).
# HALLE_BROWSER_VERBOSE=1 prints when each browser step finished; CHROMIUM=path picks another
# browser binary.
import email
import email.policy
import hashlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, SRC_DIR, Instance, Server, Tap  # noqa: E402

PASSWORD = "Prune-2026"
EMAIL = "lise.navigateur@example.org"
NAME = "Lise Navigateur"
FLOW_TIMEOUT = 45  # the whole browser run, at most; it normally takes about 12 s

BROWSER_DIR = os.path.join(SRC_DIR, "tests", "browser")
SETUP_HINT = ("run scripts/setup with HALLE_EXTRA_PACKAGES='chromium nodejs npm' (or apt-get install "
              "chromium nodejs npm), then `npm ci` in tests/browser; or set HALLE_SKIP_BROWSER=1")

# Checks flow.mjs must report: a missing one means the run stopped before it.
REQUIRED_STEPS = [
    "launch",
    "signup form loads",
    "keyboard: Tab from the email field moves focus to the name field",
    "signup form screenshot",
    "signup is accepted",
    "the verification mail holds a /verify link",
    "the verification link activates the account",
    "login succeeds and lands on the account page",
    "account page screenshot",
    "after logout the \"Se connecter\" link is visible",
    "a wrong password shows the error message",
    "no console errors or CSP violations in the pages",
    "end",
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Inbox:
    """A real SMTP server on loopback that keeps what it receives, and writes each message
    (To, Subject, blank line, body) to mail_dir/NNNN.eml for the browser script."""

    def __init__(self, mail_dir):
        from aiosmtpd.controller import Controller
        self.messages = []
        self.lock = threading.Lock()
        self.mail_dir = mail_dir
        self.count = 0
        os.makedirs(mail_dir, exist_ok=True)
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope.rcpt_tos, msg))
            self.count += 1
            n = self.count
        text = "To: %s\nSubject: %s\n\n%s" % (", ".join(envelope.rcpt_tos), msg["Subject"], msg.get_content())
        tmp = os.path.join(self.mail_dir, "%04d.tmp" % n)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.rename(tmp, os.path.join(self.mail_dir, "%04d.eml" % n))  # whole files only
        return "250 OK"

    def stop(self):
        self.controller.stop()


def chromium_path():
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def prerequisites():
    """What is missing to run the browser, as a list of messages."""
    missing = []
    chrome = chromium_path()
    if not os.access(chrome, os.X_OK):
        missing.append("chromium not installed (no %s): %s" % (chrome, SETUP_HINT))
    if not shutil.which("node"):
        missing.append("node not installed: %s" % SETUP_HINT)
    if not os.path.isfile(os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")):
        missing.append("playwright-core not installed in %s/node_modules: run `npm ci` there (%s)"
                       % (BROWSER_DIR, SETUP_HINT))
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        missing.append("aiosmtpd not importable by %s: install python3-aiosmtpd (scripts/setup does) and run "
                       "the test with that Python" % sys.executable)
    return missing


def artefacts_dir():
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    d = os.path.join(build, "tests", "artefacts")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):  # no stale screenshots from an earlier run
        if name in ("signup.png", "account.png", "login-error.png") or (name.startswith("failure-") and name.endswith(".png")):
            os.remove(os.path.join(d, name))
    return d


def session_hash(raw):
    """What the sessions table holds for a cookie value: hex BLAKE2b-256."""
    return hashlib.blake2b(raw.encode(), digest_size=32).hexdigest()


def db_query(inst, sql, args=()):
    return inst.sql(sql, *args)


def user_sessions(inst):
    return [r[0] for r in db_query(inst, "SELECT s.id_hash FROM hl_sessions s JOIN hl_users u ON u.id = s.user_id "
                                         "WHERE u.email = ?", (EMAIL,))]


def processes_using(marker):
    """Pids whose command line mentions marker (our Chromium profile folder)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                if marker.encode() in f.read():
                    out.append(int(name))
        except OSError:
            pass
    return out


class Flow:
    """`node flow.mjs JSON`, its stdout read line by line by a thread."""

    def __init__(self, command, stderr_path):
        self.profile = command["profileDir"]
        self.stderr_path = stderr_path
        env = dict(os.environ, CHROMIUM=chromium_path())
        env.pop("DISPLAY", None)
        with open(stderr_path, "wb") as errf:
            self.proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "flow.mjs"), json.dumps(command)],
                                         cwd=BROWSER_DIR, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=errf, start_new_session=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode("utf-8", "replace"))
        self.lines.put(None)

    def next_line(self, deadline):
        """The next stdout line, or None at the end of the output or the deadline."""
        try:
            return self.lines.get(timeout=max(0.0, deadline - time.time()))
        except queue.Empty:
            return None

    def resume(self):
        try:
            self.proc.stdin.write(b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass

    def stderr_text(self):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        """Waits briefly, then SIGTERM (playwright closes the browser), then SIGKILL; Chromium
        processes left behind (found by their profile folder) are killed by pid."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.proc.wait()
        for pid in processes_using(self.profile):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode


def run_flow(t, srv, inst, inbox, mail_dir, artefacts):
    command = {"base": "http://127.0.0.1:%d" % srv.port, "email": EMAIL, "name": NAME, "password": PASSWORD,
               "mailDir": mail_dir, "artefacts": artefacts, "profileDir": inst.path("chromium-profile"),
               "pauseAfterLogin": True}
    os.makedirs(command["profileDir"])
    flow = Flow(command, inst.path("flow.stderr"))
    seen = []
    session_row = None
    started = time.time()
    deadline = started + FLOW_TIMEOUT
    try:
        while True:
            line = flow.next_line(deadline)
            if line is None:
                break
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                t.comment("flow.mjs: " + line)
                continue
            step, ok, detail = r.get("step", "?"), r.get("ok"), r.get("detail")
            seen.append(step)
            if os.environ.get("HALLE_BROWSER_VERBOSE"):
                t.comment("%6s ms  %s" % (r.get("ms"), step))
            if step == "paused":
                # logged in: the session is in the database, stored hashed
                cookie = (detail or {}).get("session") or ""
                rows = user_sessions(inst)
                session_row = session_hash(cookie) if cookie else None
                t.ok(session_row in rows and len(rows) == 1,
                     "db: after login the user has one session row, the hash of the browser's cookie",
                     "rows: %r\nhash of the cookie: %r" % (rows, session_row))
                v = db_query(inst, "SELECT email_verified_at FROM hl_users WHERE email = ?", (EMAIL,))
                t.ok(v and v[0][0], "db: the address is marked verified after the link", v)
                flow.resume()
                continue
            if step == "end":
                continue
            diag = json.dumps(detail, ensure_ascii=False, indent=1) if detail is not None else ""
            t.ok(ok, "browser: " + step, diag)
            if ok and step.endswith("screenshot"):
                t.comment("screenshot: %s" % detail)
    finally:
        timed_out = time.time() >= deadline
        rc = flow.stop()
    elapsed = time.time() - started
    err = flow.stderr_text().strip()
    t.ok(not timed_out, "the browser run ends within %d s" % FLOW_TIMEOUT, "stderr: " + err[-3000:])
    t.ok(rc == 0, "flow.mjs exits with 0", "exit %r; stderr:\n%s" % (rc, err[-3000:]))
    missing = [s for s in REQUIRED_STEPS if s not in seen]
    t.ok(not missing, "the browser went through every step", "not reached: %s\nstderr:\n%s" % (missing, err[-3000:]))
    t.comment("browser run took %.1f s" % elapsed)
    return session_row


def use_system_python():
    """scripts/setup installs aiosmtpd for Debian's Python (python3-aiosmtpd); when another
    python3 comes first in PATH (pyenv, a venv) and lacks it, run again with /usr/bin/python3."""
    try:
        import aiosmtpd  # noqa: F401
        return
    except ImportError:
        pass
    system = "/usr/bin/python3"
    if os.environ.get("HALLE_PY_REEXEC") or not os.access(system, os.X_OK) or \
            os.path.realpath(sys.executable) == os.path.realpath(system):
        return
    print("# aiosmtpd is not importable by %s: running again with %s" % (sys.executable, system))
    sys.stdout.flush()
    os.environ["HALLE_PY_REEXEC"] = "1"
    os.execv(system, [system] + sys.argv)


def main():
    if os.environ.get("HALLE_SKIP_BROWSER") == "1":
        print("1..0 # SKIP browser tests disabled (HALLE_SKIP_BROWSER=1)")
        sys.exit(0)
    use_system_python()
    t = Tap()
    missing = prerequisites()
    if missing:
        for m in missing:
            t.ok(False, m.split(":")[0], m)
        t.done()

    try:
        with open(os.path.join(BROWSER_DIR, "package.json"), encoding="utf-8") as f:
            pinned = json.load(f)["dependencies"]["playwright-core"]
        with open(os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json"), encoding="utf-8") as f:
            installed = json.load(f)["version"]
        t.ok(installed == pinned, "playwright-core %s is installed, as pinned in package.json" % pinned,
             "installed %s: run `npm ci` in %s" % (installed, BROWSER_DIR))
    except (OSError, ValueError, KeyError) as e:
        t.ok(False, "tests/browser/package.json pins playwright-core", repr(e))

    artefacts = artefacts_dir()
    inst = Instance()
    mail_dir = inst.path("mail")
    inbox = Inbox(mail_dir)
    port = free_port()
    inst.set(smtp_url="smtp://127.0.0.1:%d" % inbox.port, mail_interval=1, password_cost="min",
             base_url="http://127.0.0.1:%d" % port, mail_from="halle <noreply@example.org>")
    srv = Server(inst, workers=2, tap=t, extra_args=["--listen", "127.0.0.1:%d" % port])
    try:
        t.run(test_browser_flow, srv, inst, inbox, mail_dir, artefacts)
    finally:
        srv.stop()
        inbox.stop()
    if t.failed:
        t.comment("server log (end):\n" + srv.log_text()[-3000:])
    t.done()


def test_browser_flow(t, srv, inst, inbox, mail_dir, artefacts):
    try:
        srv.start()
    except Exception as e:
        t.ok(False, "halle serve starts", str(e))
        return
    session_row = run_flow(t, srv, inst, inbox, mail_dir, artefacts)
    rows = user_sessions(inst)
    t.ok(session_row is not None and session_row not in rows and not rows,
         "db: logout removed the session row (and the failed login made none)",
         "rows now: %r\nlogged-in session: %r" % (rows, session_row))
    v = db_query(inst, "SELECT email_verified_at FROM hl_users WHERE email = ?", (EMAIL,))
    t.ok(v and v[0][0], "db: the user is verified after the flow", v)
    for name in ("signup.png", "account.png"):
        p = os.path.join(artefacts, name)
        t.ok(os.path.isfile(p) and os.path.getsize(p) > 1000, "artefact %s written" % name, p)


if __name__ == "__main__":
    main()
