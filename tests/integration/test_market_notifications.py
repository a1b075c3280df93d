# Mail notifications (marketplace part 2, issue 12), against the real server with the market
# plugin and a real SMTP listener (aiosmtpd) on loopback, on SQLite and PostgreSQL, under a
# controlled clock (HALLE_NOW and `halle jobs run`):
#   - orders open (the opening job fires market.distribution.opened) to the group's active
#     members; 24 h before closing to those who have not ordered; the day before pickup (from
#     08:00 Paris time) to those who ordered; each once per distribution only;
#   - group events: a join request and a producer's request to sell mail the coordinators, an
#     accepted or refused request mails the person who asked;
#   - the settings page (/notifications) and the opt-outs honoured for each kind;
#   - the one-click turn-off link of every mail: GET only shows a confirm button, POST (without
#     session or CSRF token, as a mail client's one-click POST) turns the kind off, a forged or
#     someone else's token is refused.
import datetime
import os
import re
import sys
import time
import urllib.parse
import zoneinfo

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Inbox, Instance, Server, Tap, free_port, run  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
PARIS = zoneinfo.ZoneInfo("Europe/Paris")
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank", "pierre"]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def one(inst, query, *params):
    rows = inst.sql(query, *params)
    return rows[0][0] if rows else None


def uid(inst, who):
    return one(inst, "SELECT id FROM hl_users WHERE email = ?", "%s@example.org" % who)


def login(t, port, who):
    b = Browser(port)
    st, h, page = b.submit("/login", "/login", {"email": "%s@example.org" % who, "password": PASSWORD})
    t.ok(st == 303, "%s logs in" % who, (st, page[:300]))
    return b


def jobs(inst, *args, now):
    return run(["jobs", "-c", inst.conf] + list(args), env={"HALLE_NOW": str(int(now))}, timeout=60)


def queued(inst, to, subject_part):
    """How many mails to `to` whose subject holds subject_part were queued."""
    return one(inst, "SELECT count(*) FROM hl_mail_queue WHERE recipient = ? AND subject LIKE ?",
               "%s@example.org" % to, "%" + subject_part + "%")


def off_link(body, kind):
    m = re.search(r"https?://[^/\s]+(/notifications/off/\d+/%s/[0-9a-f]{32})" % kind, body)
    return m.group(1) if m else None


def optouts(inst, who):
    return sorted(r[0] for r in inst.sql("SELECT kind FROM market_notification_optouts WHERE user_id = ?", uid(inst, who)))


def paris_epoch(day, hour):
    return int(datetime.datetime(day.year, day.month, day.day, hour, 0, tzinfo=PARIS).timestamp())


def setup(t, inst, srv):
    s = {"b": {}}
    alice = login(t, srv.port, "alice")
    s["b"]["alice"] = alice
    for key, name, policy in (("slug", "La Ruche du Lundi", "open"), ("slug2", "Le Panier sur Demande", "approval")):
        st, h, page = alice.submit("/groups/new", "/groups/new", {
            "name": name, "description": "Légumes.", "kind": "buying_group", "join_policy": policy,
            "address": "1 place de la Halle", "postcode": "44000", "town": "Nantes"})
        m = re.match(r"^/groups/([a-z0-9-]+)/admin", h.get("Location") or "")
        t.ok(st == 303 and m, "alice creates the group %s (%s)" % (name, policy), (st, h.get("Location")))
        s[key] = m.group(1)
    s["gid"] = one(inst, "SELECT id FROM market_groups WHERE slug = ?", s["slug"])
    s["gid2"] = one(inst, "SELECT id FROM market_groups WHERE slug = ?", s["slug2"])
    for who in ["bob", "carol", "dave", "erin", "frank", "pierre"]:
        s["b"][who] = login(t, srv.port, who)
    for who in ["bob", "carol", "dave"]:
        st, h, page = s["b"][who].submit("/groups/%s" % s["slug"], "/groups/%s/join" % s["slug"], {})
        t.ok(st == 303, "%s joins the open group" % who, st)
    t.eq(queued(inst, "alice", "Demande d'adhésion"), 0, "joining an open group is no request: nobody is mailed")
    return s


def test_settings(t, srv, inst, inbox, s):
    carol, dave = s["b"]["carol"], s["b"]["dave"]
    st, h, page = carol.get("/orders")
    t.ok(st == 200 and 'href="/notifications"' in page, "the orders page links to the notification settings")
    st, h, page = carol.get("/notifications")
    t.ok(st == 200 and page.count('type="checkbox"') == 4 and page.count(" checked") == 4,
         "the settings page: four kinds, all on by default", page[:2000])
    for kind in ("orders_open", "closing_soon", "pickup_tomorrow", "group_events"):
        t.ok('name="on_%s"' % kind in page, "a box for %s" % kind)
    st, h, page = Browser(srv.port).get("/notifications")
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to the login page", (st, h.get("Location")))
    st, h, page = carol.submit("/notifications", "/notifications",
                               {"on_closing_soon": "1", "on_pickup_tomorrow": "1", "on_group_events": "1"})
    t.ok(st == 303 and h.get("Location") == "/notifications?done=saved", "carol saves: orders_open off",
         (st, h.get("Location")))
    t.eq(optouts(inst, "carol"), ["orders_open"], "carol's opt-out is recorded")
    st, h, page = carol.get("/notifications?done=saved")
    t.ok("Vos réglages sont enregistrés." in page and page.count(" checked") == 3, "the page says so and shows it")
    st, h, page = carol.request("POST", "/notifications", form={"on_orders_open": "1"})
    t.eq(st, 403, "the form needs its CSRF token")
    st, h, page = dave.submit("/notifications", "/notifications", {"on_orders_open": "1", "on_pickup_tomorrow": "1"})
    t.eq(optouts(inst, "dave"), ["closing_soon", "group_events"], "dave turns off closing_soon and group_events")
    st, h, page = dave.submit("/notifications", "/notifications",
                              {"on_orders_open": "1", "on_pickup_tomorrow": "1", "on_closing_soon": "1"})
    t.eq(optouts(inst, "dave"), ["group_events"], "and turns closing_soon back on")


def make_distribution(inst, s, opens, closes, starts):
    now = iso(time.time())
    inst.sql("INSERT INTO market_places (group_id, name, address, postcode, town) VALUES (?, 'La Grange', "
             "'2 rue du Marché', '44000', 'Nantes')", s["gid"])
    place = one(inst, "SELECT max(id) FROM market_places")
    inst.sql("INSERT INTO market_distributions (group_id, place_id, starts_at, ends_at, opens_at, closes_at, status, "
             "created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
             s["gid"], place, iso(starts), iso(starts + 7200), iso(opens), iso(closes), uid(inst, "alice"), now, now)
    return one(inst, "SELECT max(id) FROM market_distributions")


def test_distribution_mails(t, srv, inst, inbox, s):
    t0 = int(time.time()) // 60 * 60
    # pickup on the 4th day at 17:00 Paris time; orders open now, close 24 h before the pickup
    day = (datetime.datetime.fromtimestamp(t0, PARIS) + datetime.timedelta(days=4)).date()
    starts = paris_epoch(day, 17)
    closes = starts - 86400
    d = s["dist"] = make_distribution(inst, s, t0 - 3600, closes, starts)
    s["starts"] = starts

    # orders open: the opening job fires market.distribution.opened once
    r = jobs(inst, "run", "market.distributions-open", now=t0)
    t.ok(r.returncode == 0, "halle jobs run market.distributions-open", r.stdout + r.stderr)
    r = jobs(inst, "run", "market.distributions-open", now=t0 + 60)
    jobs(inst, "run", "core.mail", now=t0 + 60)
    for who in ("alice", "bob", "dave"):
        msg = inbox.wait_for("%s@example.org" % who, "Commandes ouvertes")
        body = msg.get_content() if msg else ""
        t.ok(msg is not None and "La Ruche du Lundi" in body and "/groups/%s/distributions/%d" % (s["slug"], d) in body
             and "17:00" in body and off_link(body, "orders_open"),
             "%s receives « orders open » with the shop's link, the pickup at 17:00 Paris time and a turn-off link" % who,
             body[:1500])
        if who == "bob":
            s["bob_open_mail"] = body
    t.eq(queued(inst, "carol", "Commandes ouvertes"), 0, "carol turned orders_open off: nothing for her")
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Commandes ouvertes%'"), 3,
         "three mails, once only though the job ran twice")
    t.eq(one(inst, "SELECT recipients FROM market_notifications_sent WHERE distribution_id = ? AND kind = 'orders_open'", d),
         3, "the sending is recorded with its count")

    # bob orders
    inst.sql("INSERT INTO market_orders (distribution_id, group_id, user_id, status, total_cents, placed_at, updated_at) "
             "VALUES (?, ?, ?, 'placed', 450, ?, ?)", d, s["gid"], uid(inst, "bob"), iso(t0), iso(t0))

    # alice turns closing_soon off on her settings page
    st, h, page = s["b"]["alice"].submit("/notifications", "/notifications",
                                         {"on_orders_open": "1", "on_pickup_tomorrow": "1", "on_group_events": "1"})
    t.eq(optouts(inst, "alice"), ["closing_soon"], "alice turns closing_soon off")

    # 24 h before closing, to the members who have not ordered
    r = jobs(inst, "run", "market.notify-closing", now=closes - 25 * 3600)
    t.ok(r.returncode == 0, "halle jobs run market.notify-closing 25 h before closing", r.stdout + r.stderr)
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Plus que 24 heures%'"), 0, "too early: nothing")
    r = jobs(inst, "run", "market.notify-closing", now=closes - 23 * 3600)
    t.ok(r.returncode == 0, "and 23 h before", r.stdout + r.stderr)
    jobs(inst, "run", "market.notify-closing", now=closes - 22 * 3600)
    jobs(inst, "run", "core.mail", now=closes - 22 * 3600)
    for who in ("carol", "dave"):
        msg = inbox.wait_for("%s@example.org" % who, "Plus que 24 heures")
        body = msg.get_content() if msg else ""
        t.ok(msg is not None and "pas encore commandé" in body and off_link(body, "closing_soon"),
             "%s, who has not ordered, is reminded" % who, body[:1000])
    t.eq(queued(inst, "bob", "Plus que 24 heures"), 0, "bob, who ordered, is not")
    t.eq(queued(inst, "alice", "Plus que 24 heures"), 0, "nor alice, who turned it off")
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Plus que 24 heures%'"), 2,
         "once only though the job ran twice")

    # carol and dave order too; carol turns pickup_tomorrow off
    for who in ("carol", "dave"):
        inst.sql("INSERT INTO market_orders (distribution_id, group_id, user_id, status, total_cents, placed_at, updated_at) "
                 "VALUES (?, ?, ?, 'placed', 320, ?, ?)", d, s["gid"], uid(inst, who), iso(t0), iso(t0))
    s["b"]["carol"].submit("/notifications", "/notifications", {"on_closing_soon": "1", "on_group_events": "1"})
    t.eq(optouts(inst, "carol"), ["orders_open", "pickup_tomorrow"], "carol turns pickup_tomorrow off")

    # the day before the pickup (Paris time), from 08:00, to those who ordered
    before = day - datetime.timedelta(days=1)
    jobs(inst, "run", "market.notify-pickup", now=paris_epoch(before, 7))
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Retrait demain%'"), 0,
         "before 08:00 the day before: nothing yet")
    jobs(inst, "run", "market.notify-pickup", now=paris_epoch(before, 2) - 86400)
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Retrait demain%'"), 0, "two days before: nothing")
    r = jobs(inst, "run", "market.notify-pickup", now=paris_epoch(before, 9))
    t.ok(r.returncode == 0, "halle jobs run market.notify-pickup at 09:00 the day before", r.stdout + r.stderr)
    jobs(inst, "run", "market.notify-pickup", now=paris_epoch(before, 18))
    jobs(inst, "run", "core.mail", now=paris_epoch(before, 18))
    for who in ("bob", "dave"):
        msg = inbox.wait_for("%s@example.org" % who, "Retrait demain")
        body = msg.get_content() if msg else ""
        t.ok(msg is not None and "La Grange" in body and "17:00" in body and off_link(body, "pickup_tomorrow"),
             "%s, who ordered, is reminded of the pickup, its place and time" % who, body[:1000])
    t.eq(queued(inst, "carol", "Retrait demain"), 0, "carol, who turned it off, is not")
    t.eq(queued(inst, "alice", "Retrait demain"), 0, "nor alice, who did not order")
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Retrait demain%'"), 2,
         "once only though the job ran twice")


def test_one_click(t, srv, inst, inbox, s):
    link = off_link(s.get("bob_open_mail", ""), "orders_open")
    if not t.ok(link, "bob's mail carries the turn-off link"):
        return
    st, h, page = srv.get(link)
    page = page.decode()
    t.ok(st == 200 and "Confirmer la désinscription" in page and 'method="post"' in page,
         "GET shows a confirm button", (st, page[:800]))
    st, h, page = srv.get(link)
    t.eq(optouts(inst, "bob"), [], "GET (twice, as a mail scanner would) turns nothing off")
    forged = link[:-1] + ("0" if link[-1] != "0" else "1")
    st, h, page = srv.get(forged)
    t.eq(st, 404, "a forged token is refused (GET)")
    st, h, page = srv.request("POST", forged, body=b"List-Unsubscribe=One-Click",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.eq(st, 404, "and refused (POST)")
    other = re.sub(r"/off/\d+/", "/off/%d/" % uid(inst, "alice"), link)
    st, h, page = srv.request("POST", other, body=b"List-Unsubscribe=One-Click",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.eq(st, 404, "bob's token does not turn off alice's mails")
    kind = link.replace("/orders_open/", "/closing_soon/")
    st, h, page = srv.request("POST", kind, body=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.eq(st, 404, "nor another kind of bob's")
    t.eq((optouts(inst, "bob"), optouts(inst, "alice")), ([], ["closing_soon"]), "nothing was turned off")
    # POST as a mail client's one-click (RFC 8058): no session, no CSRF token
    st, h, page = srv.request("POST", link, body=b"List-Unsubscribe=One-Click",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.ok(st == 303 and h.get("Location") == link + "?done=1", "POST turns it off", (st, h.get("Location")))
    t.eq(optouts(inst, "bob"), ["orders_open"], "bob's orders_open is off")
    st, h, page = srv.get(link + "?done=1")
    page = page.decode()
    t.ok(st == 200 and "Vous ne recevez plus ces e-mails" in page and "Confirmer" not in page, "the page says so")
    st, h, page = srv.request("POST", link, body=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.ok(st == 303 and optouts(inst, "bob") == ["orders_open"], "a second POST changes nothing")
    st, h, page = s["b"]["bob"].get("/notifications")
    t.ok('name="on_orders_open" value="1">' in page and page.count(" checked") == 3, "bob's settings page shows it off")

    # the opt-out is honoured: the next distribution's opening skips bob and carol
    t0 = int(time.time())
    d2 = make_distribution(inst, s, s["starts"] + 86400, s["starts"] + 5 * 86400, s["starts"] + 6 * 86400)
    jobs(inst, "run", "market.distributions-open", now=s["starts"] + 86400 + 60)
    jobs(inst, "run", "core.mail", now=s["starts"] + 86400 + 60)
    for who in ("alice", "dave"):
        msg = inbox.wait_for("%s@example.org" % who, "Commandes ouvertes")
        t.ok(msg is not None and "/distributions/%d" % d2 in msg.get_content(), "%s is told the next one opens" % who)
    t.eq(queued(inst, "bob", "Commandes ouvertes"), 1, "bob, who turned it off by the link, is not (his one mail is the first)")
    t.eq(queued(inst, "carol", "Commandes ouvertes"), 0, "nor carol")
    del t0


def test_group_events(t, srv, inst, inbox, s):
    b = s["b"]
    slug2, gid2 = s["slug2"], s["gid2"]
    alice = b["alice"]
    for who in ("erin", "frank", "dave"):
        st, h, page = b[who].submit("/groups/%s" % slug2, "/groups/%s/join" % slug2, {})
        t.ok(st == 303, "%s asks to join the group on request" % who, (st, page[:300]))
        st, h, page = b[who].submit("/groups/%s" % slug2, "/groups/%s/join" % slug2, {})
    jobs(inst, "run", "core.mail", now=time.time())
    for who in ("Erin", "Frank", "Dave"):
        msg = inbox.wait_for("alice@example.org", "Demande d'adhésion", body_part=who)
        body = msg.get_content() if msg else ""
        t.ok(msg is not None and "/groups/%s/admin/pending" % slug2 in body and off_link(body, "group_events"),
             "the coordinator is told %s asks, with the page to decide and a turn-off link" % who, body[:800])
    t.eq(queued(inst, "alice", "Demande d'adhésion"), 3, "one mail per request (asking twice is one request)")

    def decide(who, action):
        st, h, page = alice.submit("/groups/%s/admin/pending" % slug2,
                                   "/groups/%s/admin/members/%d/%s" % (slug2, uid(inst, who), action), {})
        t.ok(st == 303, "alice %ss %s" % (action, who), (st, page[:300]))
    decide("erin", "accept")
    decide("frank", "decline")
    decide("dave", "decline")
    decide("erin", "accept")
    jobs(inst, "run", "core.mail", now=time.time())
    msg = inbox.wait_for("erin@example.org", "Bienvenue")
    body = msg.get_content() if msg else ""
    t.ok(msg is not None and "Le Panier sur Demande" in body and "acceptée" in body and off_link(body, "group_events"),
         "erin is told she is accepted", body[:800])
    msg = inbox.wait_for("frank@example.org", "Votre demande")
    body = msg.get_content() if msg else ""
    t.ok(msg is not None and "n'a pas accepté" in body, "frank is told his request was refused", body[:800])
    t.eq(queued(inst, "erin", "Bienvenue"), 1, "accepting twice mails once")
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE recipient = 'dave@example.org' AND subject LIKE '%Panier sur%'"),
         0, "dave turned group_events off: he is not told")

    # a producer's request to sell
    now = iso(time.time())
    inst.sql("INSERT INTO market_producers (user_id, slug, business_name, siret, charter_version, charter_accepted_at, "
             "created_at) VALUES (?, 'pierre', 'Ferme de Pierre', '73282932000074', '2021-11', ?, ?)",
             uid(inst, "pierre"), now, now)
    st, h, page = b["pierre"].submit("/producer", "/producer/groups/ask", {"group": slug2})
    t.ok(st == 303, "pierre asks to sell to the group", (st, page[:300]))
    jobs(inst, "run", "core.mail", now=time.time())
    msg = inbox.wait_for("alice@example.org", "Un producteur demande à vendre")
    body = msg.get_content() if msg else ""
    t.ok(msg is not None and "Ferme de Pierre" in body and "/groups/%s/admin/producers" % slug2 in body
         and off_link(body, "group_events"), "the coordinator is told", body[:800])

    # the coordinator turns group_events off through the link of that mail: no more requests
    link = off_link(body, "group_events")
    if link:
        st, h, page = srv.request("POST", link, body=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
        t.eq(optouts(inst, "alice"), ["closing_soon", "group_events"], "alice turns group_events off by the link")
    st, h, page = b["carol"].submit("/groups/%s" % slug2, "/groups/%s/join" % slug2, {})
    t.ok(st == 303 and one(inst, "SELECT status FROM market_members WHERE group_id = ? AND user_id = ?", gid2,
                           uid(inst, "carol")) == "pending", "carol asks to join")
    t.eq(queued(inst, "alice", "Demande d'adhésion"), 3, "and alice is not told any more")


def make_instance(t, inbox, port):
    inst = Instance(name="Halle des notifications")
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000", mail_from="halle <noreply@example.org>",
             smtp_url="smtp://127.0.0.1:%d" % inbox.port, mail_interval=1, base_url="http://127.0.0.1:%d" % port)
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr):
        raise SystemExit(t.done())
    for who in PEOPLE:
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    return inst


def main():
    t = Tap()
    inbox = Inbox()
    port = free_port()
    inst = make_instance(t, inbox, port)
    srv = Server(inst, workers=2, tap=t, extra_args=["--listen", "127.0.0.1:%d" % port])
    try:
        srv.start()
        s = setup(t, inst, srv)
        t.run(test_settings, srv, inst, inbox, s)
        t.run(test_distribution_mails, srv, inst, inbox, s)
        t.run(test_one_click, srv, inst, inbox, s)
        t.run(test_group_events, srv, inst, inbox, s)
        t.ok("AddressSanitizer" not in srv.stderr_text() and "runtime error" not in srv.stderr_text(),
             "the server logged no sanitizer report", srv.stderr_text()[-2000:])
    finally:
        srv.stop()
        inbox.stop()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
