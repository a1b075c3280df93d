# Marketplace distributions end to end, against the real server with the market plugin: a
# coordinator creates one (the group's default order window, in Europe/Paris time, stored as
# UTC) and recurring series (weekly and monthly, dates and hours right across the change to
# summer time), the forms refuse bad input with clear messages kept next to the field, the
# group's order settings, the producers are invited and confirm with their catalogs, the group's
# public page shows the next distributions, moving and cancelling mail the members who ordered
# (to a real SMTP listener on loopback), the walls (a member, another group's coordinator, a
# visitor), and market.distribution.opened fired once per distribution by the opening job
# under a controlled clock (HALLE_NOW; a Lua test plugin records what it sees); the pages fit
# 360 px in Chromium without JavaScript (tests/browser/narrow.mjs; HALLE_SKIP_BROWSER=1 skips
# that part); the demo data's distributions.
import calendar
import datetime
import email
import email.policy
import os
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, SRC_DIR, Browser, Instance, Server, Tap, run  # noqa: E402

from aiosmtpd.controller import Controller  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")
NOW = "2026-01-01T10:00:00Z"
YEAR = datetime.datetime.now(datetime.timezone.utc).year + 1  # every date below is ahead


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Inbox:
    """A real SMTP server on loopback that keeps what it receives."""

    def __init__(self):
        self.messages = []
        self.lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((envelope.rcpt_tos, msg))
        return "250 OK"

    def wait_for(self, to, subject_part, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                for rcpts, msg in self.messages:
                    if to in rcpts and subject_part in str(msg["Subject"]):
                        self.messages.remove((rcpts, msg))
                        return msg
            time.sleep(0.1)
        return None

    def to(self, who):
        with self.lock:
            return [m for r, m in self.messages if who in r]

    def stop(self):
        self.controller.stop()


def last_sunday(year, month):
    last = calendar.monthrange(year, month)[1]
    d = datetime.date(year, month, last)
    return d - datetime.timedelta(days=(d.weekday() + 1) % 7)


def utc(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def setup(t, inbox, port):
    inst = Instance(name="Halle des distributions")
    inst.set(plugin_dirs="%s:%s" % (MARKET_DIR, LUA_DIR), password_cost="min", login_rate_limit="1000",
             smtp_url="smtp://127.0.0.1:%d" % inbox.port, mail_interval=1, base_url="http://127.0.0.1:%d" % port,
             mail_from="halle <noreply@example.org>")
    for name in ("market", "luadist"):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        if not t.ok(r.returncode == 0, "the %s plugin is enabled" % name, r.stderr):
            raise SystemExit(t.done())
    for who in ("alice", "bob", "carol", "dave", "paul", "rose"):
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    return inst


def login(t, port, who):
    b = Browser(port)
    st, h, page = b.submit("/login", "/login", {"email": "%s@example.org" % who, "password": PASSWORD})
    t.ok(st == 303, "%s logs in" % who, (st, page[:300]))
    return b


def one(inst, sql, *args):
    rows = inst.sql(sql, *args)
    return rows[0][0] if rows else None


def uid(inst, who):
    return one(inst, "SELECT id FROM hl_users WHERE email = ?", "%s@example.org" % who)


def create_group(t, b, name):
    fields = {"name": name, "description": "", "kind": "buying_group", "join_policy": "open", "address": "",
              "postcode": "26150", "town": "Die"}
    st, h, page = b.submit("/groups/new", "/groups/new", fields)
    m = re.match(r"^/groups/([a-z0-9-]+)/admin", h.get("Location") or "")
    t.ok(st == 303 and m, "group %s created" % name, (st, page[:300]))
    slug = m.group(1)
    st, h, page = b.submit("/groups/%s/admin" % slug, "/groups/%s/admin/places/add" % slug,
                           {"place_name": "La Grange %s" % name[-1], "place_address": "2 rue Haute",
                            "place_postcode": "26150", "place_town": "Die"})
    t.eq(st, 303, "a place is added to %s" % name)
    return slug


def place_id(inst, slug):
    return one(inst, "SELECT p.id FROM market_places p JOIN market_groups g ON g.id = p.group_id WHERE g.slug = ?", slug)


def dists(inst, slug, extra=""):
    return inst.sql("SELECT d.id, d.starts_at, d.ends_at, d.opens_at, d.closes_at, d.status, d.series_id "
                    "FROM market_distributions d JOIN market_groups g ON g.id = d.group_id WHERE g.slug = ? " + extra +
                    " ORDER BY d.starts_at, d.id", slug)


def form(date, start="17:00", end="19:00", place="", **kw):
    f = {"date": date, "start": start, "end": end, "place": str(place), "opens": "", "closes": "", "note": "",
         "repeat": "", "count": ""}
    f.update(kw)
    return f


def error_of(page, field):
    m = re.search(r'<p class="notice error" id="e-%s">([^<]*)</p>' % field, page)
    return m.group(1) if m else None


# ---- creating ------------------------------------------------------------------------------------

def creating(t, srv, inst, s):
    alice = s["alice"] = login(t, srv.port, "alice")
    a = s["a"] = create_group(t, alice, "Paniers A")
    s["place"] = place_id(inst, a)
    page_path, action = "/groups/%s/distributions" % a, "/groups/%s/distributions/new" % a
    st, h, page = alice.get(page_path)
    t.ok(st == 200 and 'name="repeat"' in page and 'name="open_days_before" value="7"' in page and "}}" not in page,
         "the coordinator opens the distributions page with the forms and the group's window (7 days)", st)

    # A producer accepted by the group, with two catalogs linked to it; another only pending.
    with inst.connect() as c:
        gid = c.execute("SELECT id FROM market_groups WHERE slug = ?", (a,)).fetchone()[0]
        s["gid"] = gid

        def producer(who, slug, name, status):
            pid = c.execute("INSERT INTO market_producers (user_id, slug, business_name, siret, town, charter_version, "
                            "charter_accepted_at, created_at) VALUES (?, ?, ?, '73282932000074', 'Die', '2021-11', ?, ?) "
                            "RETURNING id", (uid(inst, who), slug, name, NOW, NOW)).fetchone()[0]
            c.execute("INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) VALUES (?, ?, ?, ?)",
                      (gid, pid, status, NOW))
            return pid

        def catalog(pid, name):
            cid = c.execute("INSERT INTO market_catalogs (producer_id, name, created_at) VALUES (?, ?, ?) RETURNING id",
                            (pid, name, NOW)).fetchone()[0]
            c.execute("INSERT INTO market_catalog_groups (catalog_id, group_id) VALUES (?, ?)", (cid, gid))
            return cid

        s["paul"] = producer("paul", "ferme-de-paul", "Ferme de Paul", "accepted")
        s["rose"] = producer("rose", "rucher-de-rose", "Rucher de Rose", "pending")
        s["cat1"], s["cat2"] = catalog(s["paul"], "Légumes"), catalog(s["paul"], "Œufs")

    # One distribution with the group's default window: 7 days before, closing 24 h before.
    day = "%d-06-12" % YEAR
    st, h, page = alice.submit(page_path, action, form(day, place=s["place"], note="Apportez vos sacs"))
    t.ok(st == 303 and h.get("Location") == page_path + "?done=created", "a distribution is created", (st, page[:400]))
    rows = dists(inst, a)
    t.eq(len(rows), 1, "one distribution is stored")
    d = rows[0]
    s["d1"] = d[0]
    t.eq((d[1], d[2]), ("%d-06-12T15:00:00Z" % YEAR, "%d-06-12T17:00:00Z" % YEAR),
         "17:00-19:00 in Paris in June is stored as 15:00-17:00 UTC")
    t.eq((d[3], d[4]), ("%d-06-05T15:00:00Z" % YEAR, "%d-06-11T15:00:00Z" % YEAR),
         "the order window is the group's: opens 7 days before, closes 24 h before")
    t.eq(inst.sql("SELECT producer_id, status FROM market_distribution_producers WHERE distribution_id = ?", d[0]),
         [(s["paul"], "invited")], "the group's accepted producer is invited, the pending one is not")
    st, h, page = alice.get(page_path + "?done=created")
    t.ok("Distribution créée" in page and "/distributions/%d/edit" % d[0] in page,
         "the list shows the notice and the new distribution", page[:300])

    # The group's settings: another window, and min/max amounts.
    st, h, page = alice.submit(page_path, "/groups/%s/distributions/settings" % a,
                               {"open_days_before": "3", "close_hours_before": "48", "min_order": "15",
                                "max_order": "150,50"})
    t.eq(st, 303, "the order settings are saved")
    t.eq(inst.sql("SELECT open_days_before, close_hours_before, min_order_cents, max_order_cents FROM market_groups "
                  "WHERE id = ?", s["gid"]), [(3, 48, 1500, 15050)], "the settings are stored (money in cents)")
    st, h, page = alice.submit(page_path, action, form("%d-01-15" % YEAR, start="10:00", end="12:00", place=s["place"]))
    d = dists(inst, a)[0]
    t.eq((d[1], d[3], d[4]), ("%d-01-15T09:00:00Z" % YEAR, "%d-01-12T09:00:00Z" % YEAR, "%d-01-13T09:00:00Z" % YEAR),
         "in winter 10:00 is 09:00 UTC, and the new window applies (3 days, 48 h)")
    # An explicit window, per distribution.
    st, h, page = alice.submit(page_path, action, form("%d-01-22" % YEAR, place=s["place"], opens="%d-01-01T08:00" % YEAR,
                                                       closes="%d-01-20T20:30" % YEAR))
    row = [r for r in dists(inst, a) if r[1].startswith("%d-01-22" % YEAR)]
    t.ok(st == 303 and row and (row[0][3], row[0][4]) == ("%d-01-01T07:00:00Z" % YEAR, "%d-01-20T19:30:00Z" % YEAR),
         "an explicit window (Paris time) is stored as given", row)


def series(t, srv, inst, s):
    alice, a = s["alice"], s["a"]
    page_path, action = "/groups/%s/distributions" % a, "/groups/%s/distributions/new" % a
    # Weekly, four Thursdays from ten days before the change to summer time.
    first = last_sunday(YEAR, 3) - datetime.timedelta(days=10)
    before = len(dists(inst, a))
    st, h, page = alice.submit(page_path, action, form(first.isoformat(), start="17:30", end="19:00", place=s["place"],
                                                       repeat="week", count="4"))
    t.ok(st == 303 and "done=series" in (h.get("Location") or ""), "a weekly series is created in one step", (st, page[:300]))
    rows = [r for r in dists(inst, a) if r[6]]
    t.eq(len(rows), 4, "the series has 4 distributions")
    t.eq(len(dists(inst, a)), before + 4, "and nothing else was created")
    want = []
    for k in range(4):
        day = first + datetime.timedelta(days=7 * k)
        summer = day > last_sunday(YEAR, 3)
        want.append("%sT%s:30:00Z" % (day.isoformat(), "15" if summer else "16"))
    t.eq([r[1] for r in rows], want, "weekly at 17:30 Paris time: 16:30 UTC before the change, 15:30 UTC after")
    t.eq(len(set(r[6] for r in rows)), 1, "they share one series")
    t.eq(inst.sql("SELECT every FROM market_distribution_series WHERE id = ?", rows[0][6]), [("week",)],
         "the series records its frequency")
    t.ok(all(utc(r[1]) - utc(r[3]) == 3 * 86400 and utc(r[1]) - utc(r[4]) == 48 * 3600 for r in rows),
         "each has the group's window", rows)
    t.eq(one(inst, "SELECT count(*) FROM market_distribution_producers WHERE distribution_id IN (%s)" %
             ",".join(str(r[0]) for r in rows)), 4, "the producer is invited to each")

    # Monthly from a 31st: the months without one take their last day; the change in March.
    st, h, page = alice.submit(page_path, action, form("%d-01-31" % YEAR, start="09:00", end="11:00", place=s["place"],
                                                       repeat="month", count="4"))
    rows = inst.sql("SELECT starts_at FROM market_distributions WHERE series_id = (SELECT max(id) FROM "
                    "market_distribution_series) ORDER BY starts_at")
    feb = calendar.monthrange(YEAR, 2)[1]
    t.eq([r[0] for r in rows], ["%d-01-31T08:00:00Z" % YEAR, "%d-02-%02dT08:00:00Z" % (YEAR, feb),
                                "%d-03-31T07:00:00Z" % YEAR, "%d-04-30T07:00:00Z" % YEAR],
         "monthly: 31 January, the end of February, 31 March and 30 April, at 09:00 Paris time")
    # Every two weeks.
    st, h, page = alice.submit(page_path, action, form("%d-09-01" % YEAR, place=s["place"], repeat="2weeks", count="3"))
    rows = inst.sql("SELECT starts_at FROM market_distributions WHERE series_id = (SELECT max(id) FROM "
                    "market_distribution_series) ORDER BY starts_at")
    t.eq([r[0][:10] for r in rows], ["%d-09-01" % YEAR, "%d-09-15" % YEAR, "%d-09-29" % YEAR], "every two weeks")


def bad_input(t, srv, inst, s):
    alice, a = s["alice"], s["a"]
    page_path, action = "/groups/%s/distributions" % a, "/groups/%s/distributions/new" % a
    before = len(dists(inst, a))
    p = s["place"]
    cases = [
        (form("%d-05-10" % YEAR, start="18:00", end="17:00", place=p), "end", "La fin du retrait doit venir après son début"),
        (form("%d-05-10" % YEAR, place=p, closes="%d-05-10T18:00" % YEAR), "closes",
         "La clôture des commandes doit venir avant le début du retrait"),
        (form("%d-05-10" % YEAR, place=p, opens="%d-05-09T10:00" % YEAR, closes="%d-05-08T10:00" % YEAR), "opens",
         "L'ouverture des commandes doit venir avant leur clôture"),
        (form("%d-02-30" % YEAR, place=p), "date", "Indiquez la date de la distribution"),
        (form("2001-05-10", place=p), "date", "Cette date est passée"),
        (form("%d-05-10" % YEAR, start="25:00", place=p), "start", "Indiquez l'heure de début du retrait"),
        (form("%d-05-10" % YEAR, place="999999"), "place", "Choisissez un lieu de distribution du groupe"),
        (form("%d-05-10" % YEAR, place=p, repeat="week", count="1"), "count", "va de 2 à 52"),
        (form("%d-05-10" % YEAR, place=p, repeat="week", count="60"), "count", "va de 2 à 52"),
        (form("%d-05-10" % YEAR, place=p, repeat="daily", count="3"), "repeat", "Choisissez la fréquence"),
        (form("%d-05-10" % YEAR, place=p, opens="demain"), "opens", "ouverture des commandes"),
    ]
    for fields, field, msg in cases:
        st, h, page = alice.submit(page_path, action, fields)
        got = error_of(page, field) or ""
        t.ok(st == 422 and msg in got.replace("&#39;", "'") and 'value="%s"' % fields["date"] in page,
             "refused (%s): %s, next to the field, the form kept" % (field, msg), (st, got, page[:200]))
    # another group's place
    bob = s["bob"] = login(t, srv.port, "bob")
    s["b"] = create_group(t, bob, "Paniers B")
    st, h, page = alice.submit(page_path, action, form("%d-05-10" % YEAR, place=place_id(inst, s["b"])))
    t.ok(st == 422 and error_of(page, "place"), "a place of another group is refused", st)
    t.eq(len(dists(inst, a)), before, "no refused form stored anything")
    for fields, field, msg in (({"open_days_before": "x", "close_hours_before": "24"}, "open_days_before", "de 0 à 60"),
                               ({"open_days_before": "1", "close_hours_before": "48"}, "open_days_before", "ouvrir avant"),
                               ({"open_days_before": "7", "close_hours_before": "24", "min_order": "abc"}, "min_order",
                                "montant en euros"),
                               ({"open_days_before": "7", "close_hours_before": "24", "min_order": "50", "max_order": "20"},
                                "max_order", "ne peut pas dépasser")):
        st, h, page = alice.submit(page_path, "/groups/%s/distributions/settings" % a, fields)
        m = re.search(r'<p class="notice error" id="e-\w+">([^<]*)</p>', page)
        t.ok(st == 422 and m and msg in m.group(1), "the settings refuse %r: %s" % (fields, msg), (st, page[:200]))
    t.eq(inst.sql("SELECT open_days_before, close_hours_before FROM market_groups WHERE id = ?", s["gid"]), [(3, 48)],
         "refused settings changed nothing")


def walls(t, srv, inst, s):
    a, b, d1 = s["a"], s["b"], s["d1"]
    carol = s["carol"] = login(t, srv.port, "carol")
    st, h, page = carol.submit("/groups/%s" % a, "/groups/%s/join" % a, {})
    t.eq(st, 303, "carol joins the group")
    bob = s["bob"]
    visitor = Browser(srv.port)
    for who, br in (("a member", carol), ("another group's coordinator", bob)):
        st, _, _ = br.get("/groups/%s/distributions" % a)
        t.eq(st, 403, "%s may not see the coordinators' list" % who)
        st, _, _ = br.get("/groups/%s/distributions/%d/edit" % (a, d1))
        t.eq(st, 403, "%s may not open the edit page" % who)
        st, _, _ = br.submit("/groups/%s" % a, "/groups/%s/distributions/new" % a, form("%d-05-10" % YEAR, place=s["place"]))
        t.eq(st, 403, "%s may not create one" % who)
        st, _, _ = br.submit("/groups/%s" % a, "/groups/%s/distributions/%d/cancel" % (a, d1), {})
        t.eq(st, 403, "%s may not cancel one" % who)
    st, _, _ = bob.get("/groups/%s/distributions/%d/edit" % (b, d1))
    t.eq(st, 404, "through his own group, bob finds no distribution of another group (404)")
    st, _, _ = bob.submit("/groups/%s/distributions" % b, "/groups/%s/distributions/%d/cancel" % (b, d1), {})
    t.eq(st, 404, "nor can he cancel it that way")
    st, h, _ = visitor.get("/groups/%s/distributions" % a)
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to /login", st)
    st, _, _ = s["alice"].request("POST", "/groups/%s/distributions/new" % a, form=form("%d-05-10" % YEAR, place=s["place"]))
    t.eq(st, 403, "a form without its CSRF token is refused")
    t.eq(one(inst, "SELECT status FROM market_distributions WHERE id = ?", d1), "planned", "the distribution is untouched")


def producers(t, srv, inst, s):
    paul = s["paul_b"] = login(t, srv.port, "paul")
    d1 = s["d1"]
    st, h, page = paul.get("/producer/distributions")
    t.ok(st == 200 and "Paniers A" in page and 'name="cat_%d"' % s["cat1"] in page and "Réponse attendue" in page,
         "the producer sees the invitation with his catalogs linked to the group", (st, page[:300]))
    st, h, page = paul.submit("/producer/distributions", "/producer/distributions/%d" % d1, {"action": "confirm"})
    t.ok(st == 422 and "Cochez au moins un catalogue" in page, "confirming without a catalog is refused", (st, page[:200]))
    st, h, page = paul.submit("/producer/distributions", "/producer/distributions/%d" % d1,
                              {"action": "confirm", "cat_%d" % s["cat1"]: "1", "cat_%d" % s["cat2"]: "1"})
    t.eq(st, 303, "the producer confirms with two catalogs")
    t.eq(inst.sql("SELECT status FROM market_distribution_producers WHERE distribution_id = ? AND producer_id = ?", d1,
                  s["paul"]), [("confirmed",)], "his participation is confirmed")
    t.eq(sorted(r[0] for r in inst.sql("SELECT catalog_id FROM market_distribution_catalogs WHERE distribution_id = ?", d1)),
         sorted([s["cat1"], s["cat2"]]), "both catalogs are offered")
    st, h, page = paul.submit("/producer/distributions", "/producer/distributions/%d" % d1,
                              {"action": "confirm", "cat_%d" % s["cat2"]: "1"})
    t.eq([r[0] for r in inst.sql("SELECT catalog_id FROM market_distribution_catalogs WHERE distribution_id = ?", d1)],
         [s["cat2"]], "he changes his mind: only the eggs are offered")
    st, h, page = s["alice"].get("/groups/%s/distributions/%d/edit" % (s["a"], d1))
    m = re.search(r'<li class="participant">(.*?)</li>', page, re.S)
    t.ok(st == 200 and m and "Ferme de Paul" in m.group(1) and "Confirmé" in m.group(1) and "Œufs" in m.group(1)
         and "Légumes" not in m.group(1), "the coordinator sees the producer confirmed with the catalog offered",
         m.group(1) if m else page[:300])
    # someone else's invitation, or a catalog that is not his
    rose = login(t, srv.port, "rose")
    st, _, page = rose.submit("/producer/distributions", "/producer/distributions/%d" % d1, {"action": "confirm"})
    t.eq(st, 404, "a producer who is not invited gets 404")
    other = inst.sql("SELECT d.id FROM market_distributions d WHERE d.id <> ? ORDER BY d.starts_at DESC LIMIT 1", d1)[0][0]
    st, h, page = paul.submit("/producer/distributions", "/producer/distributions/%d" % other, {"action": "decline"})
    t.eq(inst.sql("SELECT status FROM market_distribution_producers WHERE distribution_id = ? AND producer_id = ?", other,
                  s["paul"]), [("declined",)], "he declines another one")


def public_page(t, srv, inst, s):
    a, alice = s["a"], s["alice"]
    # One open now: three days ahead, orders opened yesterday, closing 48 h before (the group's window).
    today = datetime.date.today()
    soon, yesterday = today + datetime.timedelta(days=3), today - datetime.timedelta(days=1)
    st, h, page = alice.submit("/groups/%s/distributions" % a, "/groups/%s/distributions/new" % a,
                               form(soon.isoformat(), place=s["place"], opens=yesterday.isoformat() + "T08:00"))
    t.eq(st, 303, "a distribution three days ahead is created")
    st, h, page = Browser(srv.port).get("/groups/%s" % a)
    t.ok(st == 200 and "Prochaines distributions" in page, "the public page lists the next distributions", st)
    items = re.findall(r'<li><a href="(/groups/%s/distributions/\d+)">.*?</li>' % a, page, re.S)
    t.ok(len(items) == 5, "at most five are shown, each linking to its page", items)
    t.ok("Commandes ouvertes jusqu&#39;au" in page or "Commandes ouvertes jusqu'au" in page,
         "the one open now says until when orders are open", page[page.find("Prochaines"):][:800])
    t.ok("Commandes ouvertes à partir du" in page, "a later one says from when", page[page.find("Prochaines"):][:800])
    t.ok("La Grange A" in page, "with its place")
    st, h, page = Browser(srv.port).get(items[0])
    t.eq(st, 200, "a distribution's page (its shop) opens for a visitor")
    st, h, page = Browser(srv.port).get("/groups/%s/distributions/%d" % (s["b"], s["d1"]))
    t.eq(st, 404, "another group's distribution is not found under this group")


def move_and_cancel(t, srv, inst, s, inbox):
    a, alice, d1 = s["a"], s["alice"], s["d1"]
    now = iso(time.time())
    with inst.connect() as c:
        for who, status in (("carol", "placed"), ("dave", "cancelled")):
            c.execute("INSERT INTO market_orders (distribution_id, group_id, user_id, status, total_cents, placed_at, "
                      "updated_at) VALUES (?, ?, ?, ?, 1250, ?, ?)", (d1, s["gid"], uid(inst, who), status, now, now))
    edit = "/groups/%s/distributions/%d/edit" % (a, d1)
    st, h, page = alice.get(edit)
    t.ok(st == 200 and 'value="%d-06-12"' % YEAR in page and 'value="17:00"' in page and
         'value="%d-06-05T17:00"' % YEAR in page and "1 commande(s)" in page,
         "the edit page shows the stored values in Paris time and the orders", page[:300])
    t.ok("}}" not in page and "{{" not in page, "no template tag is left on the edit page")
    # The note only: no mail.
    st, h, page = alice.submit(edit, edit, form("%d-06-12" % YEAR, place=s["place"], opens="%d-06-05T17:00" % YEAR,
                                                closes="%d-06-11T17:00" % YEAR, note="Nouvelle note"))
    t.ok(st == 303 and "done=saved" in h.get("Location", ""), "changing the note saves without moving", (st, page[:300]))
    st, h, page = alice.submit(edit, edit, form("%d-06-12" % YEAR, start="20:00", end="19:00", place=s["place"]))
    t.ok(st == 422 and "La fin du retrait doit venir après son début" in (error_of(page, "end") or ""),
         "a bad move is refused with the message by the field", st)
    # Moved to the next day, 18:00-20:00.
    st, h, page = alice.submit(edit, edit, form("%d-06-13" % YEAR, start="18:00", end="20:00", place=s["place"]))
    t.ok(st == 303 and "done=moved" in h.get("Location", ""), "the distribution is moved", (st, page[:300]))
    d = [r for r in dists(inst, a) if r[0] == d1][0]
    t.eq((d[1], d[2], d[3], d[4]), ("%d-06-13T16:00:00Z" % YEAR, "%d-06-13T18:00:00Z" % YEAR,
                                    "%d-06-10T16:00:00Z" % YEAR, "%d-06-11T16:00:00Z" % YEAR),
         "the new times are stored, with the window recomputed from the group's settings")
    msg = inbox.wait_for("carol@example.org", "Distribution déplacée")
    t.ok(msg is not None, "the member who ordered gets a mail over SMTP")
    if msg:
        body = msg.get_content()
        t.ok("Paniers A" in body and "12 juin %d" % YEAR in body and "13 juin %d de 18:00 à 20:00" % YEAR in body and
             "/groups/%s/distributions/%d" % (a, d1) in body, "it gives the old and new dates and the link", body)
    # Cancelled.
    st, h, page = alice.submit(edit, "/groups/%s/distributions/%d/cancel" % (a, d1), {})
    t.ok(st == 303 and "done=cancelled" in h.get("Location", ""), "the distribution is cancelled", st)
    t.eq(inst.sql("SELECT status, cancelled_at IS NOT NULL FROM market_distributions WHERE id = ?", d1)[0][0], "cancelled",
         "its status is cancelled")
    msg = inbox.wait_for("carol@example.org", "Distribution annulée")
    t.ok(msg is not None and "annulée" in msg.get_content(), "the member who ordered is told it is cancelled")
    time.sleep(1.5)
    t.eq(inbox.to("dave@example.org"), [], "the member whose order was cancelled gets no mail")
    st, h, page = alice.submit(edit, "/groups/%s/distributions/%d/cancel" % (a, d1), {})
    t.eq(st, 409, "cancelling twice is refused")
    st, h, page = alice.submit(edit, edit, form("%d-06-14" % YEAR, place=s["place"]))
    t.eq(st, 409, "a cancelled distribution cannot be moved")
    st, h, page = Browser(srv.port).get("/groups/%s" % a)
    t.ok("/groups/%s/distributions/%d\"" % (a, d1) not in page, "a cancelled distribution leaves the public page")
    st, h, page = Browser(srv.port).get("/groups/%s/distributions/%d" % (a, d1))
    t.ok(st == 200 and "annulée" in page, "its own page says it is cancelled")


def narrow(t, srv, inst, s):
    """The coordinator's and the producer's pages at phone width without JavaScript, in Chromium
    (tests/browser/narrow.mjs): no sideways scrolling; screenshots in tests/artefacts."""
    if os.environ.get("HALLE_SKIP_BROWSER"):
        t.skip("pages at 360 px", "HALLE_SKIP_BROWSER is set")
        return
    browser_dir = os.path.join(SRC_DIR, "tests", "browser")
    chrome = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    missing = [what for what, ok in (("chromium", os.access(chrome, os.X_OK)), ("node", shutil.which("node")),
                                     ("playwright-core (npm ci in tests/browser)", os.path.isfile(
                                         os.path.join(browser_dir, "node_modules", "playwright-core", "package.json"))))
               if not ok]
    if not t.ok(not missing, "the browser is installed", missing):
        return
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    artefacts = os.path.join(build, "tests", "artefacts")
    a = s["a"]
    d1 = one(inst, "SELECT min(id) FROM market_distributions WHERE status = 'planned' AND group_id = ?", s["gid"])
    runs = (("alice", [("/groups/%s" % a, "distributions-group.png"),
                       ("/groups/%s/distributions" % a, "distributions-list.png"),
                       ("/groups/%s/distributions/%d/edit" % (a, d1), "distributions-edit.png"),
                       ("/groups/%s/distributions/%d" % (a, d1), "distributions-show.png")]),
            ("paul", [("/producer/distributions", "distributions-producer.png")]))
    for who, pages in runs:
        cmd = {"base": "http://127.0.0.1:%d" % srv.port, "email": "%s@example.org" % who, "password": PASSWORD,
               "pages": [{"path": p, "shot": shot} for p, shot in pages], "artefacts": artefacts}
        with tempfile.TemporaryDirectory(prefix="halle-narrow-") as tmp:
            env = dict(os.environ, CHROMIUM=chrome, TMPDIR=tmp)
            env.pop("DISPLAY", None)
            p = subprocess.Popen(["node", os.path.join(browser_dir, "narrow.mjs"), json.dumps(cmd)], cwd=browser_dir,
                                 env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
            try:
                out, err = p.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                out, err = "", "timed out"
            try:
                os.killpg(p.pid, signal.SIGKILL)  # nothing of Chromium is left behind
            except ProcessLookupError:
                pass
            p.wait()
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        t.ok(lines and lines[-1].get("end"), "Chromium went through %s's pages" % who, (out + err)[-1500:])
        for ln in lines[:-1]:
            t.ok(ln["status"] == 200 and ln["width"] <= 360,
                 "%s fits 360 px without sideways scrolling (%s px wide)" % (ln["path"], ln["width"]), ln)


def opened_hook(t, inst, s):
    """After the server: the opening job under a controlled clock, run by `halle jobs run`."""
    a = s["a"]
    # A distribution far ahead, so that no real clock opened it.
    with inst.connect() as c:
        gid, place = s["gid"], s["place"]
        did = c.execute("INSERT INTO market_distributions (group_id, place_id, starts_at, ends_at, opens_at, closes_at, "
                        "created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) RETURNING id",
                        (gid, place, "%d-11-20T16:00:00Z" % (YEAR + 1), "%d-11-20T18:00:00Z" % (YEAR + 1),
                         "%d-11-13T16:00:00Z" % (YEAR + 1), "%d-11-19T16:00:00Z" % (YEAR + 1), NOW, NOW)).fetchone()[0]
    opens = utc("%d-11-13T16:00:00Z" % (YEAR + 1))

    def job(now):
        r = run(["jobs", "-c", inst.conf, "run", "market.distributions-open"], env={"HALLE_NOW": str(now)})
        t.ok(r.returncode == 0, "the opening job runs at %s" % iso(now), r.stdout + r.stderr)

    def seen():
        return inst.sql("SELECT distribution_id, group_slug, opens_at FROM luadist_opened WHERE distribution_id = ?", did)

    job(opens - 60)
    t.eq(seen(), [], "a minute before its opening, nothing is fired")
    t.eq(one(inst, "SELECT opened_at FROM market_distributions WHERE id = ?", did), None, "nor recorded")
    job(opens + 30)
    t.eq(seen(), [(did, a, iso(opens))], "once opens_at has passed, market.distribution.opened is fired with its data")
    t.eq(one(inst, "SELECT opened_at FROM market_distributions WHERE id = ?", did), iso(opens + 30),
         "and opened_at records when")
    job(opens + 120)
    t.eq(len(seen()), 1, "the next runs do not fire it again")
    # the cancelled one never opens
    cancelled = inst.sql("SELECT count(*) FROM luadist_opened WHERE distribution_id = ?", s["d1"])[0][0]
    t.eq(cancelled, 0, "a cancelled distribution is never told open")
    r = run(["hooks", "-c", inst.conf, "list"])
    t.ok("market.distribution.opened" in r.stdout, "halle hooks list shows the declared hook", r.stdout[-500:])


def seed_demo(t):
    """The demo's distributions, relative to the day it is made (HALLE_NOW)."""
    inst = Instance(name="Halle démo")
    inst.set(plugin_dirs=MARKET_DIR)
    run(["plugin", "-c", inst.conf, "enable", "market"])
    now = utc("%sT09:00:00Z" % (last_sunday(YEAR, 3) - datetime.timedelta(days=4)).isoformat())  # before summer time
    r = run(["market", "-c", inst.conf, "seed-demo"], env={"HALLE_NOW": str(now)}, timeout=120)
    t.ok(r.returncode == 0 and "distributions: per group one open for orders now" in r.stdout, "seed-demo makes distributions",
         r.stdout + r.stderr)
    groups = inst.sql("SELECT id, slug FROM market_groups ORDER BY id")
    t.ok(len(groups) >= 3, "the demo has its groups", groups)
    n = iso(now)
    for gid, slug in groups:
        rows = inst.sql("SELECT id, starts_at, opens_at, closes_at, status, opened_at FROM market_distributions "
                        "WHERE group_id = ? ORDER BY starts_at", gid)
        open_now = [r for r in rows if r[4] == "planned" and r[2] <= n < r[3]]
        ahead = [r for r in rows if r[4] == "planned" and r[2] > n]
        past = [r for r in rows if r[4] == "closed" and r[1] < n]
        t.ok(len(rows) == 4 and len(open_now) == 1 and len(ahead) == 2 and len(past) == 1,
             "%s: one distribution open for orders now, two ahead, one past" % slug, rows)
        t.ok(open_now and open_now[0][5] is not None and all(r[5] is None for r in ahead),
             "%s: the open one is recorded as opened, the ones ahead not" % slug, rows)
        bad = inst.sql("SELECT count(*) FROM market_distribution_producers dp JOIN market_distributions d "
                       "ON d.id = dp.distribution_id WHERE d.group_id = ? AND dp.status <> 'confirmed'", gid)[0][0]
        confirmed = inst.sql("SELECT count(*) FROM market_distribution_producers dp JOIN market_distributions d "
                             "ON d.id = dp.distribution_id WHERE d.group_id = ?", gid)[0][0]
        products = inst.sql("SELECT count(*) FROM market_distribution_catalogs dc JOIN market_products p "
                            "ON p.catalog_id = dc.catalog_id AND p.active = 1 WHERE dc.distribution_id = ?",
                            open_now[0][0] if open_now else 0)[0][0]
        t.ok(bad == 0 and confirmed >= 4 and products > 0,
             "%s: its producers are confirmed with their catalogs: %d products to order now" % (slug, products),
             (bad, confirmed, products))
    starts = [r[0] for r in inst.sql("SELECT starts_at FROM market_distributions WHERE group_id = ? ORDER BY starts_at",
                                     groups[0][0])]
    t.ok(starts[1].endswith("T16:00:00Z") and starts[2].endswith("T15:00:00Z"),
         "17:00 in Paris is 16:00 UTC before the change to summer time and 15:00 UTC after", starts)


def main():
    t = Tap()
    inbox = Inbox()
    port = free_port()
    inst = setup(t, inbox, port)
    s = {}
    srv = Server(inst, workers=2, tap=t, extra_args=["--listen", "127.0.0.1:%d" % port])
    try:
        srv.start()
        for fn in (creating, series, bad_input, walls, producers, public_page):
            if fn is not creating and "a" not in s:
                break
            t.run(fn, srv, inst, s)
        if "a" in s:
            t.run(move_and_cancel, srv, inst, s, inbox)
            t.run(narrow, srv, inst, s)
        log = srv.log_text()
        t.ok("distributions:" not in log, "no error logged by the distributions module",
             "\n".join(ln for ln in log.splitlines() if "distributions:" in ln)[:2000])
    finally:
        srv.stop()
        inbox.stop()
    if "a" in s:
        t.run(opened_hook, inst, s)
    t.run(seed_demo)
    t.done()


if __name__ == "__main__":
    main()
