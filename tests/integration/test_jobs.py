# Jobs (core/jobs.c, core/jobsproc.c) against real processes and real SQLite files: a job is
# claimed with a lease, so two processes competing for it run it once and a run killed mid-way
# runs again once its lease has passed; queued runs retry with backoff, then die; the cron.*
# hooks reach a Lua plugin; mail goes out from the jobs process (a silent SMTP server delays no
# request), is retried with backoff and ends as a dead letter; `halle jobs list|run|tick` and
# `halle mail list|retry`. Time moves through HALLE_NOW.
import os
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, Instance, Server, SQLError, Tap, run, wait_until, SRC_DIR  # noqa: E402

BUILD = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.environ.get("HALLE_BIN", "/work/main/build/halle"))
C_DIR = os.path.join(BUILD, "tests", "plugins", ".libs")
LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")

T0 = 1893456000  # 2030-01-01T00:00:00Z


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def make_instance(**conf):
    inst = Instance()
    inst.set(plugin_dirs="%s:%s" % (C_DIR, LUA_DIR), mail_from="halle <noreply@example.org>", **conf)
    for name in ("testc", "luajobs"):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        if r.returncode != 0:
            raise RuntimeError("enable %s: %s" % (name, r.stderr))
    return inst


def jobs(inst, *args, now=None, env=None, timeout=60):
    e = dict(env or {})
    if now is not None:
        e["HALLE_NOW"] = str(now)
    return run(["jobs", "-c", inst.conf] + list(args), env=e, timeout=timeout)


def popen_jobs(inst, *args, now, env=None):
    e = dict(os.environ, HALLE_NOW=str(now), **(env or {}))
    return subprocess.Popen([HALLE_BIN, "jobs", "-c", inst.conf] + list(args), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, start_new_session=True)


def q(inst, sql, *args):
    return inst.sql(sql, *args)


def runs_of(inst, what="slow"):
    try:
        return q(inst, "SELECT at, pid FROM testc_runs WHERE what = ? ORDER BY at, pid", what)
    except SQLError:  # the table is created by the first run
        return []


def counts(inst):
    return dict((n, c) for n, c in q(inst, "SELECT name, n FROM luajobs_counts"))


def test_list_and_cron(t):
    inst = make_instance()
    r = jobs(inst, "list", now=T0)
    t.eq(r.returncode, 0, "jobs list exits 0")
    for name in ("cron.minutely", "cron.hourly", "cron.daily", "core.purge", "testc.slow", "luajobs.every2h"):
        t.ok(name in r.stdout, "jobs list shows %s" % name, r.stdout + r.stderr)
    r = jobs(inst, "tick", now=T0)
    t.ok(r.returncode == 0 and "run(s)" in r.stdout, "jobs tick runs what is due", r.stdout + r.stderr)
    c = counts(inst)
    t.eq((c.get("cron.minutely"), c.get("cron.hourly")), (1, 1), "cron.minutely and cron.hourly fired once")
    t.eq(c.get("cron.daily"), None, "cron.daily waits for 03:00 UTC")
    t.eq(c.get("luajobs.every2h"), 1, "a Lua plugin's recurring job ran (halle.job)")
    t.eq(q(inst, "SELECT last FROM luajobs_counts WHERE name = 'cron.minutely'")[0][0], iso(T0),
         "the hook's data carries the clock's time (HALLE_NOW)")

    jobs(inst, "tick", now=T0 + 30)
    c = counts(inst)
    t.eq(c.get("cron.minutely"), 1, "not due again 30 s later")
    jobs(inst, "tick", now=T0 + 61)
    jobs(inst, "tick", now=T0 + 3 * 3600 + 5)
    c = counts(inst)
    t.eq(c.get("cron.minutely"), 3, "cron.minutely fired again at +61 s and at 03:00")
    t.eq(c.get("cron.hourly"), 2, "cron.hourly fired again after an hour")
    t.eq(c.get("cron.daily"), 1, "cron.daily fired at 03:00 UTC")
    t.eq(c.get("luajobs.every2h"), 2, "the Lua job every 2 h ran again")

    r = jobs(inst, "run", "cron.daily", now=T0 + 3 * 3600 + 10)
    t.ok(r.returncode == 0 and "job cron.daily done" in r.stdout, "jobs run NAME runs it now", r.stdout + r.stderr)
    t.eq(counts(inst).get("cron.daily"), 2, "jobs run fired cron.daily")
    r = jobs(inst, "run", "nosuch")
    t.ok(r.returncode == 1 and "no recurring job named 'nosuch'" in r.stderr, "jobs run of an unknown job fails",
         r.stderr)
    r = jobs(inst, "list", now=T0 + 3 * 3600 + 20)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("cron.daily ")]
    t.ok(line and iso(T0 + 27 * 3600) in line[0] and " ok " in line[0],
         "jobs list: cron.daily next at 03:00 the next day, last run ok", r.stdout)
    r = run(["jobs", "-c", inst.conf, "bogus"])
    t.eq(r.returncode, 2, "jobs with an unknown command is a usage error")


def test_competing(t):
    inst = make_instance()
    slow = {"TESTC_JOB_SLEEP_MS": "3000"}
    # Forced runs ignore the schedule: only the lease keeps the second one out.
    a = popen_jobs(inst, "run", "testc.slow", now=T0, env=slow)
    b = popen_jobs(inst, "run", "testc.slow", now=T0, env=slow)
    outs = [p.communicate(timeout=60) for p in (a, b)]
    codes = sorted([a.returncode, b.returncode])
    t.eq(codes, [0, 1], "two forced runs at once: one runs, the other is refused")
    refused = outs[0][1] + outs[1][1]
    t.ok("running elsewhere" in refused, "the refused one says the job is running elsewhere", refused)
    t.eq(len(runs_of(inst)), 1, "two processes competing for one job ran it once")

    # Two jobs processes' ticks at once, with the job due: still one run.
    c = popen_jobs(inst, "tick", now=T0 + 7200, env=slow)
    d = popen_jobs(inst, "tick", now=T0 + 7200, env=slow)
    for p in (c, d):
        p.communicate(timeout=60)
    t.eq((c.returncode, d.returncode), (0, 0), "both ticks exit 0")
    t.eq(len(runs_of(inst)), 2, "two ticks competing for a due job ran it once")


def test_crash_and_lease(t):
    inst = make_instance()
    a = popen_jobs(inst, "run", "testc.slow", now=T0, env={"TESTC_JOB_SLEEP_MS": "60000"})
    started = wait_until(lambda: len(runs_of(inst)) == 1, 30)
    t.ok(started, "the job started")
    os.killpg(a.pid, 9)  # the whole process, mid-run
    a.communicate()
    r = jobs(inst, "list", now=T0 + 10)
    t.ok("running, lease until %s" % iso(T0 + 300) in r.stdout, "jobs list shows the dead run's lease", r.stdout)
    r = jobs(inst, "run", "testc.slow", now=T0 + 10)
    t.ok(r.returncode == 1 and "running elsewhere" in r.stderr, "inside its lease the job is not run again",
         r.stdout + r.stderr)
    jobs(inst, "tick", now=T0 + 299)
    t.eq(len(runs_of(inst)), 1, "nor by the jobs tick before the lease ends")
    r = jobs(inst, "tick", now=T0 + 301)
    t.eq(len(runs_of(inst)), 2, "after its lease the crashed job runs again")
    t.eq(runs_of(inst)[-1][0], T0 + 301, "the new run saw the clock of HALLE_NOW")
    r = jobs(inst, "list", now=T0 + 302)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("testc.slow ")]
    t.ok(line and " ok " in line[0] and "lease" not in line[0], "the job is recorded ok, lease released", r.stdout)


def test_queued(t):
    inst = make_instance()
    # The server's clock is the test's (T0): whichever runs the queued jobs first, the server's
    # own jobs process or the tick below, they run at T0, so the checks hold either way.
    os.environ["HALLE_NOW"] = str(T0)
    try:
        srv = Server(inst, workers=1, tap=t).start()
    finally:
        del os.environ["HALLE_NOW"]
    with srv:
        st, _, b = srv.get("/testc/later/hello")
        t.ok(st == 200 and b.startswith(b"queued "), "a C plugin queues a once-job from a request", b)
        st, _, b = srv.get("/testc/later/fail")
        st2, _, b2 = srv.get("/luajobs/note/hi")
        t.ok(st2 == 200 and b2.startswith(b"queued "), "a Lua plugin queues a once-job (halle.job_at)", b2)
        st3, _, b3 = srv.get("/luajobs/steal")
        t.ok(b"refused: " in b3 and b"queues only its own jobs" in b3,
             "a Lua plugin cannot queue another plugin's job", b3)
        t.eq(q(inst, "SELECT count(*) FROM hl_job_queue WHERE payload = 'stolen'")[0][0], 0,
             "nothing was queued for the other plugin")
        srv.stop()
    jobs(inst, "tick", now=T0)
    t.eq([at for at, _ in runs_of(inst, "hello")], [T0], "the queued C job ran once with its payload")
    t.eq(q(inst, "SELECT last FROM luajobs_counts WHERE name = 'luajobs.note'"), [("hi",)],
         "the queued Lua job ran with its payload")
    row = q(inst, "SELECT attempts, run_at, dead_at FROM hl_job_queue WHERE payload = 'fail'")[0]
    t.eq(row, (1, iso(T0 + 60), None), "a failed queued run is retried in 1 min")
    now = T0
    for delay in (60, 300, 1800, 7200):
        now += delay
        jobs(inst, "tick", now=now)
    row = q(inst, "SELECT attempts, dead_at, last_error FROM hl_job_queue WHERE payload = 'fail'")[0]
    t.ok(row[0] == 5 and row[1] == iso(now) and "refuses the payload" in (row[2] or ""),
         "after 1, 5, 30 min and 2 h the fifth failure makes it dead, with its error", repr(row))
    r = jobs(inst, "list", now=now + 10)
    t.ok(any(" dead " in ln and "testc.echo" in ln for ln in r.stdout.splitlines()),
         "jobs list shows the dead queued run", r.stdout)
    jobs(inst, "tick", now=now + 86400)
    t.eq(q(inst, "SELECT attempts FROM hl_job_queue WHERE payload = 'fail'")[0][0], 5, "a dead run stays dead")


class SilentSMTP:
    """Accepts connections and never says a word: the slow server of the issue."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _loop(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.th.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


def queue_mail(inst, to, n=1):
    now = iso(time.time() - 5)
    for i in range(n):
        inst.sql("INSERT INTO hl_mail_queue (recipient, subject, body, created_at, next_attempt_at) "
                 "VALUES (?, ?, ?, ?, ?)", to, "Test %d" % i, "Hello", now, now)


def test_silent_smtp(t):
    smtp = SilentSMTP()
    try:
        inst = make_instance(smtp_url="smtp://127.0.0.1:%d" % smtp.port, mail_interval=1)
        queue_mail(inst, "client@example.net", 3)
        with Server(inst, workers=2, tap=t) as srv:
            t.ok(srv.jobs_pid(), "the master started a jobs process beside the workers")
            t.ok(wait_until(lambda: len(smtp.conns) >= 3, 15), "the jobs process opened the 3 messages at once",
                 "connections: %d" % len(smtp.conns))
            worst = 0
            for _ in range(20):
                t0 = time.time()
                st, _, _ = srv.get("/health", timeout=5)
                worst = max(worst, time.time() - t0)
                if st != 200:
                    break
                time.sleep(0.05)
            t.ok(st == 200 and worst < 0.5, "with a silent SMTP server /health answers in normal time",
                 "worst %.3f s" % worst)
            old = srv.jobs_pid()
            os.kill(old, 9)
            t.ok(wait_until(lambda: srv.jobs_pid() not in (None, old), 10), "a killed jobs process is restarted",
                 srv.log_text()[-1000:])
            t.ok("jobs process (pid %d) killed by signal 9; restarting it" % old in srv.log_text(),
                 "the master logs the jobs process's death")
            t_sig = time.time()
            rc = srv.stop()
            t.ok(rc == 0 and time.time() - t_sig < 5, "the server stops promptly with mail in flight",
                 "rc %r after %.1f s" % (rc, time.time() - t_sig))
    finally:
        smtp.close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_mail_retries_then_dead(t):
    inst = make_instance(smtp_url="smtp://127.0.0.1:%d" % free_port())
    queue_mail(inst, "client@example.net")
    now = T0
    r = jobs(inst, "run", "core.mail", now=now)
    t.eq(r.returncode, 0, "jobs run core.mail sends from the command line")
    row = q(inst, "SELECT attempts, next_attempt_at, failed_at FROM hl_mail_queue")[0]
    t.eq(row, (1, iso(now + 60), None), "a refused connection: attempt 1, retry in 1 min")
    for delay, attempt in ((30, 1), (30, 2), (300, 3), (1800, 4), (7200, 5)):
        now += delay
        jobs(inst, "run", "core.mail", now=now)
        got = q(inst, "SELECT attempts FROM hl_mail_queue")[0][0]
        t.eq(got, attempt, "at +%d s: %d attempt(s) (backoff 1, 5, 30 min, 2 h)" % (now - T0, attempt))
    row = q(inst, "SELECT failed_at, last_error FROM hl_mail_queue")[0]
    t.ok(row[0] == iso(now) and row[1], "the fifth failure makes it a dead letter with its error", repr(row))
    r = run(["mail", "-c", inst.conf, "list"])
    t.ok(r.returncode == 0 and " dead " in r.stdout and "client@example.net" in r.stdout and "error:" in r.stdout,
         "halle mail list shows the dead letter and its error", r.stdout + r.stderr)
    mid = q(inst, "SELECT id FROM hl_mail_queue")[0][0]
    r = run(["mail", "-c", inst.conf, "retry", str(mid)])
    t.ok(r.returncode == 0 and q(inst, "SELECT attempts, failed_at FROM hl_mail_queue")[0] == (0, None),
         "halle mail retry puts it back in the queue", r.stdout + r.stderr)
    r = run(["mail", "-c", inst.conf, "retry", str(mid)])
    t.eq(r.returncode, 1, "retrying a message that is not dead fails")


def main():
    t = Tap()
    for fn in (test_list_and_cron, test_competing, test_crash_and_lease, test_queued, test_silent_smtp,
               test_mail_retries_then_dead):
        t.run(fn)
    t.done()


if __name__ == "__main__":
    main()
