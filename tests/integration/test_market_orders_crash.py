# Crash safety of orders (issue 12), against the real server on SQLite and PostgreSQL: members
# place orders concurrently (threads on loopback, one order per member and distribution, a
# request that got no answer retried with the same idempotency key) while the workers are
# killed with SIGKILL now and then (the master replaces them). Afterwards every order answered
# with success (303) is present with the lines that were sent, no order is there twice, the
# stock equals the initial stock minus the ordered counts, and on SQLite
# `halle sql "PRAGMA integrity_check"` says ok (on PostgreSQL the sums are checked only).
import os
import random
import re
import secrets
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ON_PG, Browser, Instance, Server, Tap, free_port, run  # noqa: E402
from test_market_orders import MARKET_DIR, PASSWORD, iso, login, new_group, new_producer, one, uid  # noqa: E402

MEMBERS = 8
DISTRIBUTIONS = 300  # more than the members get through: they order until enough kills
PAUSE = 0.04         # between two orders of a member: the ordering outlasts the kills
STOCK = 100000
KILLS = 6            # workers killed before the members stop ordering
MIN_AGE = 2.5        # a worker younger than 2 s killed is a failing start: the master gives up after 5
RETRIES = 40


def setup(t, inst, srv):
    s = {}
    alice = login(t, srv.port, "alice")
    slug, gid = new_group(t, inst, alice, "La Ruche Solide")
    s["slug"] = slug
    s["members"] = {}
    for i in range(MEMBERS):
        who = "m%d" % i
        b = login(t, srv.port, who)
        st, h, page = b.submit("/groups/%s" % slug, "/groups/%s/join" % slug, {})
        t.ok(st == 303, "%s joins the group" % who, st)
        s["members"][who] = b
    now = iso(time.time())
    pid, cat = new_producer(inst, gid, now)
    s["products"] = []
    for name in ("Pain de campagne", "Œufs plein air", "Tomme de chèvre"):
        inst.sql("INSERT INTO market_products (catalog_id, producer_id, name, unit, quantity, price_cents, vat_rate_bp, stock, "
                 "created_at, updated_at) VALUES (?, ?, ?, 'piece', 1, 350, 550, ?, ?, ?)", cat, pid, name, STOCK, now, now)
        s["products"].append(one(inst, "SELECT id FROM market_products WHERE name = ?", name))
    t0 = int(time.time())
    # the distributions in three statements (a row each would take a process each)
    inst.sql("WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < ?) "
             "INSERT INTO market_distributions (group_id, starts_at, ends_at, opens_at, closes_at, status, created_by, "
             "created_at, updated_at) SELECT ?, ?, ?, ?, ?, 'planned', ?, ?, ? FROM n", DISTRIBUTIONS, gid,
             iso(t0 + 3 * 86400), iso(t0 + 3 * 86400 + 7200), iso(t0 - 86400), iso(t0 + 2 * 86400), uid(inst, "alice"), now, now)
    inst.sql("INSERT INTO market_distribution_producers (distribution_id, producer_id, status) "
             "SELECT id, ?, 'confirmed' FROM market_distributions WHERE group_id = ?", pid, gid)
    inst.sql("INSERT INTO market_distribution_catalogs (distribution_id, catalog_id) "
             "SELECT id, ? FROM market_distributions WHERE group_id = ?", cat, gid)
    s["dists"] = [r[0] for r in inst.sql("SELECT id FROM market_distributions WHERE group_id = ? ORDER BY id", gid)]
    t.eq(len(s["dists"]), DISTRIBUTIONS, "%d distributions open for orders" % DISTRIBUTIONS)
    return s


def orders_under_kills(t, srv, inst, s):
    # each member's CSRF token, read once: sessions live in the database and outlive a worker
    csrf = {}
    for who, b in s["members"].items():
        st, h, page = b.get("/groups/%s/distributions/%d/checkout" % (s["slug"], s["dists"][0]))
        csrf[who] = b.csrf(page)
    rng = random.Random(12)
    plan = []  # (who, distribution, {product: count}, idem)
    for who in s["members"]:
        for did in s["dists"]:
            lines = {p: rng.randint(1, 5) for p in rng.sample(s["products"], rng.randint(1, len(s["products"])))}
            plan.append((who, did, lines, secrets.token_hex(16)))
    rng.shuffle(plan)
    enough = threading.Event()
    answers = {}  # (who, did) -> (status, location)
    lock = threading.Lock()
    failures = []
    retried = []  # requests that got no answer (cut by a kill) and were sent again

    def member(who):
        b = s["members"][who]
        for w, did, lines, idem in plan:
            if w != who:
                continue
            if enough.is_set():
                break
            time.sleep(PAUSE)
            form = {"_csrf": csrf[who], "idem": idem}
            form.update({"q_%d" % p: str(n) for p, n in lines.items()})
            got = None
            for attempt in range(RETRIES):
                try:
                    st, h, page = b.request("POST", "/groups/%s/distributions/%d/order" % (s["slug"], did), form=form)
                except (OSError, Exception) as e:  # the worker died under the request: retried, same key
                    got = ("error", str(e))
                    with lock:
                        retried.append((who, did))
                    time.sleep(0.05)
                    continue
                got = (st, h.get("Location") or "")
                if st in (500, 502, 503):
                    time.sleep(0.05)
                    continue
                break
            with lock:
                answers[(who, did)] = got
                if not got or got[0] != 303:
                    failures.append((who, did, got))

    stop = threading.Event()
    kills = []

    def killer():
        seen = {}  # pid -> when first seen
        last_kill = [0.0]
        deadline = time.time() + 120
        while not stop.wait(0.2):
            try:
                pids = srv.worker_pids()  # reads /proc: a worker may vanish under it
            except OSError:
                continue
            now = time.time()
            for p in pids:
                seen.setdefault(p, now)
            old = [p for p in pids if now - seen[p] >= MIN_AGE]
            if old and len(kills) < KILLS:
                victim = min(old, key=lambda p: seen[p])
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                    last_kill[0] = now
                except ProcessLookupError:
                    pass
            if (len(kills) >= KILLS and now - last_kill[0] >= 1) or now > deadline:
                enough.set()  # the members stop after their current order

    k = threading.Thread(target=killer)
    threads = [threading.Thread(target=member, args=(who,)) for who in s["members"]]
    started = time.time()
    k.start()
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    stop.set()
    k.join()
    t.comment("%d orders in %.1f s, %d workers killed, %d requests cut and sent again" % (
        len(answers), time.time() - started, len(kills), len(retried)))
    t.ok(len(kills) >= KILLS, "workers were killed with SIGKILL while orders were placed (%d kills)" % len(kills))
    asked = [(who, did) for who, did, lines, idem in plan if (who, did) in answers]
    plan = [x for x in plan if (x[0], x[1]) in answers]
    t.ok(srv.health(10), "the master replaced them: the server answers")
    ok = {key: v for key, v in answers.items() if v and v[0] == 303}
    t.comment("%d of %d orders answered 303; others: %r" % (len(ok), len(plan), failures[:5]))
    t.ok(len(ok) >= len(asked) * 3 // 4 and len(ok) >= 50,
         "most orders were answered with success despite the kills (%d/%d)" % (len(ok), len(asked)), failures[:20])
    # every order answered with success is there, with what was sent
    missing = []
    uids = {who: uid(inst, who) for who in s["members"]}
    stored = {}  # order id -> (distribution, user, {product: count})
    for oid, did, user, product, count in inst.sql(
            "SELECT o.id, o.distribution_id, o.user_id, l.product_id, l.count FROM market_orders o "
            "JOIN market_order_lines l ON l.order_id = o.id WHERE o.status = 'placed'"):
        stored.setdefault(oid, (did, user, {}))[2][product] = count
    for who, did, lines, idem in plan:
        v = ok.get((who, did))
        if not v:
            continue
        m = re.match(r"^/orders/(\d+)$", v[1])
        oid = int(m.group(1)) if m else 0
        if stored.get(oid) != (did, uids[who], lines):
            missing.append((who, did, oid, lines, stored.get(oid)))
    t.eq(missing, [], "every order answered 303 is present with the lines that were sent")
    dup = inst.sql("SELECT distribution_id, user_id, count(*) FROM market_orders GROUP BY distribution_id, user_id "
                   "HAVING count(*) > 1")
    t.eq(dup, [], "no order twice (the retries replayed their idempotency key)")
    t.ok(one(inst, "SELECT count(*) FROM market_orders") <= len(plan), "no more orders than were asked for")
    bad_total = inst.sql("SELECT o.id FROM market_orders o JOIN market_order_lines l ON l.order_id = o.id "
                         "GROUP BY o.id, o.total_cents HAVING o.total_cents <> sum(l.line_cents)")
    t.eq(bad_total, [], "each order's total is the sum of its lines")
    for p in s["products"]:
        ordered = one(inst, "SELECT COALESCE(sum(l.count), 0) FROM market_order_lines l JOIN market_orders o "
                            "ON o.id = l.order_id WHERE o.status = 'placed' AND l.product_id = ?", p)
        answered = sum(lines.get(p, 0) for who, did, lines, idem in plan if (who, did) in ok)
        left = one(inst, "SELECT stock FROM market_products WHERE id = ?", p)
        t.ok(left == STOCK - ordered and ordered >= answered,
             "product %d: stock %s = %d - %d ordered (%d of them answered 303)" % (p, left, STOCK, ordered, answered))
    if ON_PG:
        t.skip("PRAGMA integrity_check", "SQLite only: on PostgreSQL the sums above are the check")
    else:
        r = run(["sql", "-c", inst.conf, "PRAGMA integrity_check"])
        t.ok(r.returncode == 0 and r.stdout.strip().splitlines()[-1].strip() == "ok",
             "halle sql \"PRAGMA integrity_check\": ok", r.stdout + r.stderr)


def main():
    t = Tap()
    inst = Instance(name="Halle solide")
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr):
        return t.done()
    for who in ["alice", "pierre"] + ["m%d" % i for i in range(MEMBERS)]:
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    port = free_port()
    srv = Server(inst, workers=2, tap=t, extra_args=["--listen", "127.0.0.1:%d" % port])
    try:
        srv.start()
        s = setup(t, inst, srv)
        t.run(orders_under_kills, srv, inst, s)
        t.ok("AddressSanitizer" not in srv.stderr_text() and "runtime error" not in srv.stderr_text(),
             "the server logged no sanitizer report", srv.stderr_text()[-2000:])
    finally:
        srv.stop()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
