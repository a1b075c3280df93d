# The master/worker process model of `halle serve` (2 workers): a worker killed with SIGKILL is
# replaced; SIGTERM lets an in-flight request finish, then everything exits 0 and the port
# closes; SIGHUP replaces every worker while the server keeps answering; a worker stuck in one
# request past request_hard_limit is killed and replaced while the other keeps serving; a stop
# never waits past shutdown_timeout; a second serve of the same instance is refused.
import json
import os
import signal
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Instance, Server, Tap, pid_alive, run, wait_until, SRC_DIR  # noqa: E402
import http.client  # noqa: E402

BUILD = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.environ.get("HALLE_BIN", "/work/main/build/halle"))
C_DIR = os.path.join(BUILD, "tests", "plugins", ".libs")

SHUTDOWN_TIMEOUT = 5


def new_server(t):
    inst = Instance()
    inst.set(dev_mode="on", shutdown_timeout=SHUTDOWN_TIMEOUT, read_timeout=5)
    return Server(inst, workers=2, tap=t)


def status_pids(srv, tries=60):
    """Worker pids seen in /api/status over several fresh connections."""
    seen = set()
    for _ in range(tries):
        try:
            st, _, b = srv.get("/api/status", timeout=3)
            if st == 200:
                seen.add(json.loads(b)["pid"])
        except OSError:
            pass
    return seen


class Load:
    """Background GET /health on fresh connections; counts what did not answer 200."""

    def __init__(self, srv, threads=2):
        self.srv = srv
        self.stop_flag = False
        self.done = 0
        self.failures = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self):
        while not self.stop_flag:
            try:
                st, _, b = self.srv.get("/health", timeout=3)
                bad = None if (st, b) == (200, b"ok\n") else "status %d" % st
            except OSError as e:
                bad = repr(e)
            with self.lock:
                self.done += 1
                if bad:
                    self.failures.append(bad)

    def __enter__(self):
        for th in self.threads:
            th.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag = True
        for th in self.threads:
            th.join(10)
        return False


def test_kill9(t):
    with new_server(t) as srv:
        old = srv.worker_pids()
        t.eq(len(old), 2, "kill -9: two workers before")
        victim = old[0]
        os.kill(victim, signal.SIGKILL)
        t.ok(srv.health(5), "kill -9 of a worker: the server keeps answering")

        def replaced():
            p = srv.worker_pids()
            return p if len(p) == 2 and victim not in p else None
        new = wait_until(replaced, 5)
        t.ok(new, "kill -9: two workers again, without the killed one", repr(srv.worker_pids()))
        fresh = set(new or []) - set(old)
        t.eq(len(fresh), 1, "kill -9: exactly one new worker pid")
        t.ok(old[1] in (new or []), "kill -9: the other worker was left alone")
        want = "(pid %d) killed by signal 9; restarting it" % victim
        t.ok(wait_until(lambda: want in srv.log_text(), 3), "kill -9: master log says '%s'" % want,
             srv.log_text()[-1500:])
        seen = wait_until(lambda: status_pids(srv, 30) & fresh, 5, step=0)
        t.ok(seen, "kill -9: the new worker serves requests", "pids seen: %r" % status_pids(srv, 10))
        rc = srv.stop()
    t.eq(rc, 0, "kill -9: master exits 0 on SIGTERM afterwards")


def test_sigterm_in_flight(t):
    srv = new_server(t)
    with srv:
        workers = srv.worker_pids()
        res = {}

        def slow():
            t0 = time.time()
            try:
                res["resp"] = srv.get("/_dev/sleep?ms=1500", timeout=10)
            except Exception as e:
                res["error"] = repr(e)
            res["took"] = time.time() - t0

        th = threading.Thread(target=slow, daemon=True)
        th.start()
        time.sleep(0.3)
        t_sig = time.time()
        os.kill(srv.pid, signal.SIGTERM)
        th.join(10)
        resp = res.get("resp")
        t.ok(resp is not None, "SIGTERM: the in-flight request gets a response", res.get("error", ""))
        if resp:
            t.eq(resp[0], 200, "SIGTERM: the in-flight request completes with 200")
            t.eq(resp[2], b"slept 1500 ms\n", "SIGTERM: the in-flight request's body")
        t.ok(res.get("took", 0) >= 1.45, "SIGTERM: the in-flight handler ran its full 1500 ms",
             "response after %.3f s (SIGTERM at 0.3 s)" % res.get("took", 0))
        rc = srv.wait_exit(SHUTDOWN_TIMEOUT + 1)
        t.ok(rc is not None, "SIGTERM: the master exits within shutdown_timeout (%d s)" % SHUTDOWN_TIMEOUT,
             "still running %.1f s after SIGTERM" % (time.time() - t_sig))
        if rc is None:
            rc = srv.wait_exit(15)
        t.eq(rc, 0, "SIGTERM: the master exits with status 0")
        t.ok(wait_until(lambda: not any(pid_alive(p) for p in workers), 2), "SIGTERM: the workers are gone",
             repr([p for p in workers if pid_alive(p)]))
        try:
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            s.close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        t.ok(refused, "SIGTERM: new connections are refused after shutdown")
        log = srv.log_text()
        t.ok("stopping: waiting for in-flight requests" in log and "halle stopped" in log,
             "SIGTERM: the log records the stop", log[-1500:])


def test_sighup(t):
    with new_server(t) as srv:
        old = srv.worker_pids()
        old_jobs = srv.jobs_pid()
        t.eq(len(old), 2, "SIGHUP: two workers before")
        t.ok(old_jobs, "SIGHUP: a jobs process before")

        def replaced():
            p = srv.worker_pids()
            return p if len(p) == 2 and not set(p) & set(old) else None
        with Load(srv) as load:
            time.sleep(0.3)
            os.kill(srv.pid, signal.SIGHUP)
            new = wait_until(replaced, 5)
            time.sleep(0.5)
        t.ok(new, "SIGHUP: two new worker pids replace the old ones",
             "before %r, now %r" % (old, srv.worker_pids()))
        t.ok(not any(pid_alive(p) for p in old), "SIGHUP: the old workers have exited")
        t.ok(wait_until(lambda: srv.jobs_pid() not in (None, old_jobs) and not pid_alive(old_jobs), 5),
             "SIGHUP: the jobs process is replaced too", "old %r, now %r" % (old_jobs, srv.jobs_pid()))
        t.ok(load.done > 20 and not load.failures,
             "SIGHUP: no request fails during the restart",
             "%d of %d requests failed, e.g. %r" % (len(load.failures), load.done, load.failures[:3]))
        t.ok(srv.health(5), "SIGHUP: the server answers afterwards")
        seen = status_pids(srv, 30)
        t.ok(seen and seen <= set(new or []), "SIGHUP: requests are served by the new workers",
             "served by %r, new workers %r" % (seen, new))
        t.ok("SIGHUP: restarting workers" in srv.log_text(), "SIGHUP: the log records the restart")
        rc = srv.stop()
    t.eq(rc, 0, "SIGHUP: master exits 0 on SIGTERM afterwards")


def spinning_instance(**conf):
    """An instance with testc, whose /testc/spin never returns."""
    inst = Instance()
    inst.set(plugin_dirs=C_DIR, read_timeout=5, **conf)
    r = run(["plugin", "-c", inst.conf, "enable", "testc"])
    if r.returncode != 0:
        raise RuntimeError("enable testc: %s" % r.stderr)
    return inst


def spin_in_background(srv):
    def go():
        try:
            srv.get("/testc/spin", timeout=30)
        except Exception:
            pass  # the connection dies with the worker
    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th


def pid_of(conn):
    conn.request("GET", "/api/status")
    r = conn.getresponse()
    return json.loads(r.read())["pid"]


def test_stuck_worker(t):
    inst = spinning_instance(request_hard_limit=2, shutdown_timeout=5)
    with Server(inst, workers=2, tap=t) as srv:
        old = srv.worker_pids()
        # Keep-alive connections pin a worker each; find one on each worker.
        conns = {}
        for _ in range(40):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            pid = pid_of(c)
            if pid in conns:
                c.close()
            else:
                conns[pid] = c
            if len(conns) == 2:
                break
        t.eq(sorted(conns), sorted(old), "stuck: a keep-alive connection to each worker")
        spin_in_background(srv)

        def cpu_seconds(p):
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

        def stuck():
            # The spinning worker takes the CPU time; being in state R at one instant is not
            # enough (on a loaded machine the other worker is now and then running too).
            before = {p: cpu_seconds(p) for p in old}
            time.sleep(0.3)
            used = {p: cpu_seconds(p) - before[p] for p in old}
            p = max(used, key=used.get)
            return p if used[p] >= 0.05 and all(used[q] * 3 < used[p] for q in old if q != p) else None
        victim = wait_until(stuck, 5)
        t.ok(victim, "stuck: one worker spins in /testc/spin")
        other = [p for p in old if p != victim]
        answered, slow = 0, 0
        t0 = time.time()
        while time.time() - t0 < 1.5 and other:
            t1 = time.time()
            try:
                if pid_of(conns[other[0]]) == other[0]:
                    answered += 1
                slow = max(slow, time.time() - t1)
            except OSError:
                break
            time.sleep(0.05)
        t.ok(answered >= 10 and slow < 0.5, "stuck: the other worker keeps answering while one spins",
             "%d answers, slowest %.3f s" % (answered, slow))

        def replaced():
            p = srv.worker_pids()
            return p if len(p) == 2 and victim not in p else None
        new = wait_until(replaced, 6)
        t.ok(new, "stuck: the stuck worker is killed and replaced within the hard limit", repr(srv.worker_pids()))
        t.ok(new and other[0] in new, "stuck: the other worker was left alone")
        log = srv.log_text()
        t.ok("(pid %d) stuck in one request for 2 s (request_hard_limit = 2); killing it" % victim in log
             or "(pid %d) stuck in one request for 3 s (request_hard_limit = 2); killing it" % victim in log,
             "stuck: the master logs why it killed the worker", log[-1500:])
        t.ok(srv.health(5), "stuck: the server answers afterwards")
        for c in conns.values():
            c.close()
        rc = srv.stop()
    t.eq(rc, 0, "stuck: master exits 0 on SIGTERM afterwards")


def test_stop_bounded(t):
    inst = spinning_instance(request_hard_limit=60, shutdown_timeout=2)
    srv = Server(inst, workers=2, tap=t)
    with srv:
        spin_in_background(srv)
        time.sleep(0.5)
        t_sig = time.time()
        os.kill(srv.pid, signal.SIGTERM)
        rc = srv.wait_exit(10)
        took = time.time() - t_sig
        t.ok(rc is not None and took < 2.6, "a stop with a request stuck ends within shutdown_timeout (2 s)",
             "took %.2f s" % took)
        t.ok("did not stop in time; killing it" in srv.log_text(), "the master says it killed the stuck worker")


def test_second_instance(t):
    inst = Instance()
    with Server(inst, workers=1, tap=t) as srv:
        r = run(["serve", "-c", inst.conf, "--listen", "127.0.0.1:%d" % srv.port, "--workers", "1"], timeout=10)
        t.eq(r.returncode, 1, "a second serve of the same instance exits 1")
        t.ok("already being served (halle serve, pid %d" % srv.pid in r.stderr,
             "it says another serve (with its pid) holds the instance", r.stderr)
        t.ok(srv.health(5), "the first server is unaffected")
        rc = srv.stop()
    t.eq(rc, 0, "the first server stops normally")
    with Server(inst, workers=1, tap=t) as again:
        t.ok(again.health(5), "once it has stopped, the instance can be served again")


def main():
    t = Tap()
    for fn in (test_kill9, test_sigterm_in_flight, test_sighup, test_stuck_worker, test_stop_bounded,
               test_second_instance):
        t.run(fn)
    t.done()


if __name__ == "__main__":
    main()
