# The marketplace in a real browser: a producer creating a product and a client finding it on
# the group's page. Headless Chromium (Debian's package) driven by playwright-core
# (tests/browser/market.mjs) goes through what people click and type: the producer logs in,
# opens their space from the header's link, creates a catalog, offers it to the group that accepted them and adds
# "Pommes Reinette du Vercors" at 3,20 € (VAT 5,5 %, by the kg, organic, a category) with the
# labelled fields, and sees it in the catalog's list; then a client, in a fresh context, logs
# in, opens the directory from the header's "Groupes" link, finds the group there by its town, joins it (open policy), finds the product
# by its name on the group's page (price "3,20 €", the producer's name) and follows the link to
# the producer's public page. This side sets up what is not under test (the market plugin, the
# three accounts by `halle user add`, the group created by its coordinator and the producer's
# account opened and accepted, over HTTP) and checks the database afterwards (the product row,
# the membership). Screenshots producer-product.png and client-group.png go to
# $HALLE_BUILDDIR/tests/artefacts/.
# Needs chromium, node and `npm ci` in tests/browser (a missing one is a failure, since CI
# installs them); HALLE_SKIP_BROWSER=1 skips the whole file (make distcheck).
# HALLE_BROWSER_VERBOSE=1 prints when each browser step finished; CHROMIUM=path picks another
# browser binary; HALLE_MARKET_DIR the folder of market.so.
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, SRC_DIR, Browser, Instance, Server, Tap, run  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
FLOW_TIMEOUT = 40  # the whole browser run, at most; it normally takes a few seconds

BROWSER_DIR = os.path.join(SRC_DIR, "tests", "browser")
SETUP_HINT = ("run scripts/setup with HALLE_EXTRA_PACKAGES='chromium nodejs npm' (or apt-get install "
              "chromium nodejs npm), then `npm ci` in tests/browser; or set HALLE_SKIP_BROWSER=1")

COORDINATOR = ("camille.roux@example.org", "Camille Roux")
PRODUCER = ("paul.bonnet@example.org", "Paul Bonnet")
CLIENT = ("clara.martin@example.org", "Clara Martin")
BUSINESS = "Verger des Quatre Montagnes"
GROUP = {"name": "Les Paniers du Plateau", "description": "Fruits, légumes et fromages du Vercors.",
         "kind": "buying_group", "join_policy": "open", "address": "12 place de l'Église", "postcode": "38250",
         "town": "Villard-de-Lans"}
# another group, in a town whose name starts the same: the search by town must leave it out
DECOY = dict(GROUP, name="L'Épicerie de Villard-Bonnot", town="Villard-Bonnot", postcode="38190")
PRODUCT = {"name": "Pommes Reinette du Vercors", "price": "3,20", "vat": "5,5", "unit": "kg", "quantity": "1",
           "category": "Fruits"}
CATALOG = "Fruits d'automne"
SCREENSHOTS = ("producer-product.png", "client-group.png")

# Checks market.mjs must report: a missing one means the run stopped before it.
REQUIRED_STEPS = [
    "launch",
    "producer: login succeeds and lands on the account page",
    "producer: the dashboard opens with the business name as its heading",
    "producer: a catalog is created and its page opens",
    "producer: the offer is saved",
    "producer: the product is saved and the catalog page comes back",
    "producer: the list shows its category, quantity, price, VAT rate, the organic badge and \"proposé\"",
    "producer product screenshot",
    "client: a fresh browser context has no cookie",
    "client: login succeeds and lands on the account page",
    "client: the directory of groups opens",
    "client: a search by the town finds the group, and only it",
    "client: joining the open group makes them a member at once",
    "client: the search finds the product",
    "client: the product shows its price \"3,20 €\"",
    "client: the product shows the producer's name, as a link",
    "client group screenshot",
    "client: the product is on the producer's page with its price",
    "no console errors or CSP violations in the pages",
    "end",
]


def luhn_siret(prefix13):
    """A SIRET whose 14th digit makes the Luhn sum a multiple of 10."""
    for d in "0123456789":
        s = prefix13 + d
        total = 0
        for i, ch in enumerate(reversed(s)):
            n = int(ch)
            if i % 2:
                n *= 2
                if n > 9:
                    n -= 9
            total += n
        if total % 10 == 0:
            return s
    raise AssertionError("no Luhn digit")


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
    return missing


def artefacts_dir():
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    d = os.path.join(build, "tests", "artefacts")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):  # no stale screenshots from an earlier run (only this test's)
        if name in SCREENSHOTS or (name.startswith("market-failure-") and name.endswith(".png")):
            os.remove(os.path.join(d, name))
    return d


def db_query(inst, sql, args=()):
    return inst.sql(sql, *args)


def processes_using(marker):
    """Pids whose command line mentions marker (the folder holding Chromium's profiles)."""
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
    """`node market.mjs JSON`, its stdout read line by line by a thread. Its TMPDIR is a folder
    of our own, so that Chromium's temporary profiles are in it and any process left behind
    can be found by that folder's name."""

    def __init__(self, command, tmpdir, stderr_path):
        self.tmpdir = tmpdir
        self.stderr_path = stderr_path
        env = dict(os.environ, CHROMIUM=chromium_path(), TMPDIR=tmpdir)
        env.pop("DISPLAY", None)
        with open(stderr_path, "wb") as errf:
            self.proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "market.mjs"), json.dumps(command)],
                                         cwd=BROWSER_DIR, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
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
        for pid in processes_using(self.tmpdir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode


# ---- setup (not what is tested: plain HTTP) ------------------------------------------------

def add_user(t, inst, email, name):
    r = run(["user", "-c", inst.conf, "add", email, "--name", name], env={"HALLE_USER_PASSWORD": PASSWORD})
    return t.ok(r.returncode == 0, "setup: user %s created with `halle user add`" % name, r.stderr)


def login(t, srv, email):
    b = Browser(srv.port)
    st, h, page = b.submit("/login", "/login", {"email": email, "password": PASSWORD})
    if not t.ok(st == 303, "setup: %s logs in" % email, (st, page[:300])):
        raise RuntimeError("login failed")
    return b


def create_group(t, b, fields):
    st, h, page = b.submit("/groups/new", "/groups/new", fields)
    m = re.match(r"^/groups/([a-z0-9-]+)/admin\?done=created$", h.get("Location") or "")
    if not t.ok(st == 303 and m, "setup: the coordinator creates the group %r (join policy %s)"
                % (fields["name"], fields["join_policy"]), (st, h.get("Location"), page[:300])):
        raise RuntimeError("group creation failed")
    return m.group(1)


def setup_market(t, srv, inst):
    """The coordinator's groups, the producer's account, the producer accepted by the group."""
    coord = login(t, srv, COORDINATOR[0])
    slug = create_group(t, coord, GROUP)
    create_group(t, coord, DECOY)

    prod = login(t, srv, PRODUCER[0])
    siret = luhn_siret("8143926570001")
    st, h, page = prod.submit("/producer/signup", "/producer/signup", {
        "business_name": BUSINESS, "siret": siret[:3] + " " + siret[3:6] + " " + siret[6:9] + " " + siret[9:],
        "vat_number": "", "address": "Les Geymonds", "postcode": "38250", "town": "Villard-de-Lans",
        "description": "Vergers de plein vent sur le plateau du Vercors.", "charter": "1"})
    if not t.ok(st == 303 and h.get("Location") == "/producer?done=signup",
                "setup: the producer opens their account through /producer/signup (SIRET %s)" % siret,
                (st, h.get("Location"), page[:600])):
        raise RuntimeError("producer sign-up failed")
    row = db_query(inst, "SELECT p.id, p.slug FROM market_producers p JOIN hl_users u ON u.id = p.user_id "
                         "WHERE u.email = ?", (PRODUCER[0],))
    pid, pslug = row[0]

    st, h, page = prod.submit("/producer", "/producer/groups/ask", {"group": slug})
    t.ok(st == 303 and h.get("Location") == "/producer?done=ask", "setup: the producer asks to join the group",
         (st, h.get("Location"), page[:300]))
    st, h, page = coord.submit("/groups/%s/admin" % slug, "/groups/%s/admin/producers/%d/accept" % (slug, pid), {})
    t.ok(st == 303, "setup: the coordinator accepts the producer", (st, h.get("Location"), page[:300]))
    status = db_query(inst, "SELECT gp.status FROM market_group_producers gp JOIN market_groups g ON g.id = gp.group_id "
                            "WHERE g.slug = ? AND gp.producer_id = ?", (slug, pid))
    if not t.eq(status, [("accepted",)], "setup: db: the group has accepted the producer"):
        raise RuntimeError("producer not accepted")
    return {"slug": slug, "producer_id": pid, "producer_slug": pslug}


# ---- the browser run ------------------------------------------------------------------------

def run_flow(t, srv, inst, setup, artefacts):
    command = {
        "base": "http://127.0.0.1:%d" % srv.port, "password": PASSWORD,
        "producer": {"email": PRODUCER[0], "business": BUSINESS, "slug": setup["producer_slug"]},
        "client": {"email": CLIENT[0]},
        "group": {"name": GROUP["name"], "slug": setup["slug"], "town": GROUP["town"]},
        "catalog": CATALOG, "product": PRODUCT, "artefacts": artefacts, "failurePrefix": "market-failure-",
    }
    tmpdir = inst.path("node-tmp")
    os.makedirs(tmpdir)
    flow = Flow(command, tmpdir, inst.path("market-flow.stderr"))
    seen = []
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
                t.comment("market.mjs: " + line)
                continue
            step, ok, detail = r.get("step", "?"), r.get("ok"), r.get("detail")
            seen.append(step)
            if os.environ.get("HALLE_BROWSER_VERBOSE"):
                t.comment("%6s ms  %s" % (r.get("ms"), step))
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
    t.ok(rc == 0, "market.mjs exits with 0", "exit %r; stderr:\n%s" % (rc, err[-3000:]))
    missing = [s for s in REQUIRED_STEPS if s not in seen]
    t.ok(not missing, "the browser went through every step", "not reached: %s\nstderr:\n%s" % (missing, err[-3000:]))
    t.ok(not processes_using(tmpdir), "no Chromium process is left behind")
    t.comment("browser run took %.1f s" % elapsed)


def check_database(t, inst, setup):
    rows = db_query(inst, "SELECT p.price_cents, p.vat_rate_bp, p.organic, p.producer_id, p.unit, p.quantity, k.name, "
                          "p.active, c.name FROM market_products p JOIN market_catalogs c ON c.id = p.catalog_id "
                          "LEFT JOIN market_categories k ON k.id = p.category_id WHERE p.name = ?", (PRODUCT["name"],))
    t.eq(len(rows), 1, "db: one product row named %r" % PRODUCT["name"])
    row = rows[0] if rows else (None,) * 9
    t.eq(row[:4], (320, 550, 1, setup["producer_id"]),
         "db: the product has price_cents 320, vat_rate_bp 550, organic 1 and the producer's id")
    t.eq(row[4:], ("kg", 1.0, PRODUCT["category"], 1, CATALOG),
         "db: unit kg, quantity 1, category %s, active, in the catalog %r" % (PRODUCT["category"], CATALOG))
    offered = db_query(inst, "SELECT c.name FROM market_catalog_groups cg JOIN market_catalogs c ON c.id = cg.catalog_id "
                             "JOIN market_groups g ON g.id = cg.group_id WHERE g.slug = ?", (setup["slug"],))
    t.eq(offered, [(CATALOG,)], "db: the catalog is offered to the group")
    member = db_query(inst, "SELECT m.role, m.status FROM market_members m JOIN market_groups g ON g.id = m.group_id "
                            "JOIN hl_users u ON u.id = m.user_id WHERE g.slug = ? AND u.email = ?", (setup["slug"], CLIENT[0]))
    t.eq(member, [("member", "active")], "db: the client's membership of the group is active")
    elsewhere = db_query(inst, "SELECT count(*) FROM market_members m JOIN hl_users u ON u.id = m.user_id "
                               "WHERE u.email = ?", (CLIENT[0],))
    t.eq(elsewhere, [(1,)], "db: the client joined that group only")


def test_market_flow(t, srv, inst, artefacts):
    try:
        srv.start()
    except Exception as e:
        t.ok(False, "halle serve starts", str(e))
        return
    setup = setup_market(t, srv, inst)
    run_flow(t, srv, inst, setup, artefacts)
    check_database(t, inst, setup)
    for name in SCREENSHOTS:
        p = os.path.join(artefacts, name)
        t.ok(os.path.isfile(p) and os.path.getsize(p) > 1000, "artefact %s written" % name, p)


def main():
    if os.environ.get("HALLE_SKIP_BROWSER") == "1":
        print("1..0 # SKIP browser tests disabled (HALLE_SKIP_BROWSER=1)")
        sys.exit(0)
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
    inst = Instance(name="Halle du Vercors")
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "setup: the market plugin is enabled", r.stderr):
        t.done()
    for email, name in (COORDINATOR, PRODUCER, CLIENT):
        if not add_user(t, inst, email, name):
            t.done()
    srv = Server(inst, workers=2, tap=t)
    try:
        t.run(test_market_flow, srv, inst, artefacts)
    finally:
        srv.stop()
    log = srv.log_text()
    errors = [line for line in log.splitlines() if "market" in line and ("ERROR" in line or " error" in line.lower())]
    t.ok(not errors, "no market error in the server log", "\n".join(errors[-10:]))
    if t.failed:
        t.comment("server log (end):\n" + log[-3000:])
    t.done()


if __name__ == "__main__":
    main()
