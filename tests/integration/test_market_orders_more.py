# What was left of the orders side of issue 12, against the real server (SQLite and PostgreSQL):
# the shop, checkout, order, orders list, report pages and the order and closing mails show the
# group's local time (Europe/Paris), not UTC, across the summer-time change (a window opened in
# winter time that closes in summer time); market.cart.totals adjustments (the luafees test
# plugin's fee) are added to the order's total when it is placed, as the checkout shows them;
# the distribution's reports as JSON through the partners' API (a token, no personal data).
# The business clock is fixed with HALLE_NOW (Saturday 27 March 2027, the eve of the change).
import html
import json
import os
import re
import secrets
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Inbox, Instance, Server, Tap, free_port, run  # noqa: E402
from test_market_orders import LUA_DIR, MARKET_DIR, PASSWORD, iso, login, new_group, new_producer, one, uid  # noqa: E402

# Saturday 27 March 2027, 12:00 UTC (13:00 in Paris, winter time); summer time starts on Sunday
# 28 March at 01:00 UTC.
NOW = 1806148800


def text(page):
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def setup(t, inst, srv):
    s = {}
    alice = login(t, srv.port, "alice")
    s["slug"], s["gid"] = slug, gid = new_group(t, inst, alice, "La Ruche de Printemps")
    s["alice"] = alice
    for who in ("bob", "carol"):
        b = login(t, srv.port, who)
        st, h, page = b.submit("/groups/%s" % slug, "/groups/%s/join" % slug, {})
        t.ok(st == 303, "%s joins the group" % who, st)
        s[who] = b
    now = iso(NOW)
    inst.sql("INSERT INTO market_places (group_id, name, address, postcode, town) VALUES (?, 'Salle des fêtes', "
             "'2 rue du Marché', '44000', 'Nantes')", gid)
    place_id = one(inst, "SELECT id FROM market_places WHERE group_id = ?", gid)
    pid, cat = new_producer(inst, gid, now)
    s["producer"] = pid
    products = {}
    for key, name, price, stock in (("pain", "Pain de campagne", 450, 10), ("oeufs", "Œufs plein air", 320, None)):
        inst.sql("INSERT INTO market_products (catalog_id, producer_id, name, unit, quantity, price_cents, vat_rate_bp, stock, "
                 "created_at, updated_at) VALUES (?, ?, ?, 'piece', 1, ?, 550, ?, ?, ?)", cat, pid, name, price, stock, now, now)
        products[key] = one(inst, "SELECT id FROM market_products WHERE name = ?", name)
    s["products"] = products

    def dist(opens, closes, starts, ends):
        inst.sql("INSERT INTO market_distributions (group_id, place_id, starts_at, ends_at, opens_at, closes_at, status, "
                 "created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
                 gid, place_id, starts, ends, opens, closes, uid(inst, "alice"), now, now)
        did = one(inst, "SELECT max(id) FROM market_distributions")
        inst.sql("INSERT INTO market_distribution_producers (distribution_id, producer_id, status) VALUES (?, ?, 'confirmed')",
                 did, pid)
        inst.sql("INSERT INTO market_distribution_catalogs (distribution_id, catalog_id) VALUES (?, ?)", did, cat)
        return did
    # opened in winter time (10:00 in Paris), closes in summer time (Monday 29 March, 18:00 in
    # Paris), pickup on Wednesday 31 March 17:00-19:00 in Paris
    s["spring"] = dist("2027-03-25T09:00:00Z", "2027-03-29T16:00:00Z", "2027-03-31T15:00:00Z", "2027-03-31T17:00:00Z")
    # not open yet: opens on Tuesday 2 November 2027 at 10:00 in Paris (winter time again)
    s["autumn"] = dist("2027-11-02T09:00:00Z", "2027-11-05T17:00:00Z", "2027-11-06T16:00:00Z", "2027-11-06T18:00:00Z")
    return s


def place(b, s, dist, lines):
    st, h, page = b.get("/groups/%s/distributions/%d/checkout" % (s["slug"], dist))
    fields = {"_csrf": b.csrf(page), "idem": secrets.token_hex(16)}
    for pid, n in lines.items():
        fields["q_%d" % pid] = str(n)
    return b.request("POST", "/groups/%s/distributions/%d/order" % (s["slug"], dist), form=fields)


def test_local_times(t, srv, inst, inbox, s):
    bob = s["bob"]
    base = "/groups/%s/distributions/%d" % (s["slug"], s["spring"])
    st, h, page = bob.get(base)
    p = text(page)
    t.ok(st == 200 and "17:00–19:00" in p, "the shop shows the pickup hours in Paris time (17:00-19:00, not 15:00)", p[:1500])
    t.ok("29 mars 2027 18:00" in p and "(UTC)" not in p,
         "and the closing in summer time (18:00, stored 16:00 UTC), with no (UTC)", p[:1500])
    st, h, page = bob.get("/groups/%s/distributions/%d" % (s["slug"], s["autumn"]))
    p = text(page)
    t.ok(st == 200 and "2 novembre 2027 10:00" in p and "(UTC)" not in p,
         "a distribution not open yet: its opening in winter time (10:00, stored 09:00 UTC)", p[:1500])
    st, h, page = place(bob, s, s["spring"], {s["products"]["pain"]: 2})
    loc = h.get("Location") or ""
    t.ok(st == 303 and loc.startswith("/orders/"), "bob orders", (st, page[:500]))
    s["bob_order"] = int(loc.rsplit("/", 1)[1]) if loc.startswith("/orders/") else 0
    st, h, page = bob.get(loc)
    p = text(page)
    t.ok("31 mars 2027, 17:00 – 19:00" in p, "the confirmation page: the pickup in Paris time", p[:2500])
    t.ok("29 mars 2027, 18:00" in p, "and the closing, after the change to summer time", p[:2500])
    r = run(["jobs", "-c", inst.conf, "run", "core.mail"], env={"HALLE_NOW": str(NOW + 5)}, timeout=60)
    t.eq(r.returncode, 0, "the mail queue is sent")
    msg = inbox.wait_for("bob@example.org", "31 mars 2027, 17:00")
    t.ok(msg is not None and "Distribution : mercredi 31 mars 2027, 17:00" in msg.get_content(),
         "the confirmation mail's subject and body: the pickup in Paris time", msg.get_content() if msg else "")
    st, h, page = bob.get("/orders")
    p = text(page)
    t.ok(st == 200 and "31 mars 2027, 17:00" in p and "15:00" not in p, "the member's orders list: Paris time", p[:2000])
    st, h, page = s["alice"].get(base + "/report")
    p = text(page)
    t.ok(st == 200 and "31 mars 2027, 17:00" in p and "15:00" not in p, "the report: Paris time", p[:2000])


def test_fees(t, srv, inst, inbox, s):
    """market.cart.totals (the luafees test plugin adds 0,50 €): the order's total is the checkout's."""
    t.eq(one(inst, "SELECT total_cents FROM market_orders WHERE id = ?", s["bob_order"]), 2 * 450 + 50,
         "bob's order: 2 × 4,50 € and the plugin's fee of 0,50 €")
    carol = s["carol"]
    carol_id = uid(inst, "carol")
    now = iso(NOW)
    inst.sql("INSERT INTO market_carts (user_id, distribution_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
             carol_id, s["spring"], now, now)
    cart = one(inst, "SELECT id FROM market_carts WHERE user_id = ?", carol_id)
    inst.sql("INSERT INTO market_cart_items (cart_id, product_id, count) VALUES (?, ?, 3)", cart, s["products"]["oeufs"])
    st, h, page = carol.get("/groups/%s/distributions/%d/checkout" % (s["slug"], s["spring"]))
    p = text(page)
    t.ok(st == 200 and "Frais de gestion" in p and re.search(r"Total à payer 10,10", p),
         "the checkout shows the fee and a total of 10,10 € (3 × 3,20 € + 0,50 €)", p[:3000])
    st, h, page = place(carol, s, s["spring"], {s["products"]["oeufs"]: 3})
    loc = h.get("Location") or ""
    t.ok(st == 303 and loc.startswith("/orders/"), "carol orders", (st, page[:500]))
    oid = int(loc.rsplit("/", 1)[1]) if loc.startswith("/orders/") else 0
    t.eq(one(inst, "SELECT total_cents FROM market_orders WHERE id = ?", oid), 1010,
         "the order's total is the checkout's: the lines and the fee")
    t.eq(one(inst, "SELECT sum(line_cents) FROM market_order_lines WHERE order_id = ?", oid), 960,
         "the lines keep the products' amounts")
    st, h, page = carol.get(loc)
    p = text(page)
    t.ok("Frais et remises 0,50" in p and "Total : 10,10" in p, "the confirmation page shows the fee in the total", p[:3000])
    # a change: the fee is counted once, not added again
    st, h, page = place(carol, s, s["spring"], {s["products"]["oeufs"]: 1})
    t.ok(st == 303, "carol changes her order", (st, page[:300]))
    t.eq(one(inst, "SELECT total_cents FROM market_orders WHERE id = ?", oid), 370,
         "after a change: 3,20 € + 0,50 €, the fee counted once")
    r = run(["jobs", "-c", inst.conf, "run", "core.mail"], env={"HALLE_NOW": str(NOW + 10)}, timeout=60)
    msg = inbox.wait_for("carol@example.org", "Votre commande", body_part="3,70")
    body = msg.get_content() if msg else ""
    t.ok(msg is not None and "Frais de gestion" in body and "Total : 3,70" in body.replace("\u00a0", " "),
         "the confirmation mail lists the fee and the total", body[:1500])


def api(srv, path, token):
    st, h, body = srv.request("GET", path, headers={"Authorization": "Bearer %s" % token} if token else {})
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def test_api_report(t, srv, inst, inbox, s):
    """GET /api/v1/distributions/ID/report?by=member|product|producer, with a partner's token."""
    r = run(["market", "-c", inst.conf, "token", "add", "Outil des coordinateurs"])
    token = r.stdout.strip().splitlines()[-1].strip() if r.returncode == 0 else ""
    t.ok(len(token) == 43, "a token is issued", r.stdout + r.stderr)
    base = "/api/v1/distributions/%d/report" % s["spring"]
    st, body = api(srv, base, None)
    t.eq(st, 401, "without a token: 401")
    st, body = api(srv, base, "x" * 43)
    t.eq(st, 401, "with an unknown token: 401")
    st, body = api(srv, base + "?by=member", token)
    t.ok(st == 200 and body["by"] == "member" and body["total"] == 2 and len(body["data"]) == 2,
         "by member: one item per placed order", body)
    t.ok(body["distribution"]["starts_at"] == "2027-03-31T15:00:00Z" and body["distribution"]["group"]["slug"] == s["slug"],
         "with the distribution (times in UTC, ISO 8601) and its group", body.get("distribution"))
    bob = [o for o in body["data"] if o["order_id"] == s["bob_order"]]
    t.ok(bob and bob[0]["amount_cents"] == 900 and bob[0]["items"] == 2 and bob[0]["lines"][0]["name"] == "Pain de campagne"
         and bob[0]["lines"][0]["count"] == 2 and bob[0]["lines"][0]["vat_rate"] == "5.5",
         "bob's order: its lines, counts and amounts in cents", bob)
    t.ok("Bob" not in json.dumps(body) and "bob@" not in json.dumps(body), "no member's name or address (no personal data)")
    t.eq(body["totals"], {"orders": 2, "items": 3, "amount_cents": 1220,
                          "vat": [{"vat_rate": "5.5", "base_cents": 1220, "vat_cents": 64}]},
         "the totals, with VAT per rate")
    st, body = api(srv, base + "?by=product", token)
    names = [(d["name"], d["count"], d["amount_cents"], d["producer"]["slug"]) for d in body.get("data", [])]
    t.eq((st, sorted(names)), (200, [("Pain de campagne", 2, 900, "pierre"), ("Œufs plein air", 1, 320, "pierre")]),
         "by product: the quantities to bring")
    st, body = api(srv, base + "?by=producer", token)
    t.ok(st == 200 and body["data"] == [{"producer": {"slug": "pierre", "business_name": "Ferme de Pierre"}, "orders": 2,
                                          "items": 3, "amount_cents": 1220}], "by producer", body)
    st, body = api(srv, base + "?by=product&per_page=1&page=2", token)
    t.ok(st == 200 and body["total"] == 2 and len(body["data"]) == 1 and body["page"] == 2, "paginated like the other lists",
         body)
    st, body = api(srv, base + "?by=producer&producer=nobody", token)
    t.eq(st, 404, "an unknown producer filter: 404")
    st, body = api(srv, base + "?by=colour", token)
    t.ok(st == 400 and "member, product or producer" in body["error"], "a wrong by: 400 saying what is allowed", body)
    st, body = api(srv, "/api/v1/distributions/999999/report", token)
    t.ok(st == 404 and body["error"] == "no such distribution", "an unknown distribution: 404", body)


def test_closing_times(t, srv, inst, inbox, s):
    # the closing job's summaries, after the closing (Monday 29 March, 16:00 UTC)
    closing = 1806336000 + 60
    r = run(["jobs", "-c", inst.conf, "run", "market.close"], env={"HALLE_NOW": str(closing)}, timeout=60)
    t.ok(r.returncode == 0 and one(inst, "SELECT status FROM market_distributions WHERE id = ?", s["spring"]) == "closed",
         "the closing job closes the distribution", r.stdout + r.stderr)
    r = run(["jobs", "-c", inst.conf, "run", "core.mail"], env={"HALLE_NOW": str(closing + 5)}, timeout=60)
    msg = inbox.wait_for("pierre@example.org", "Commandes closes")
    t.ok(msg is not None and "31 mars 2027, 17:00" in msg["Subject"] and "Distribution du mercredi 31 mars 2027, 17:00"
         in msg.get_content(), "the producer's closing summary: Paris time", (msg["Subject"], msg.get_content()[:500]) if msg else "")


def make_instance(t, inbox, port):
    inst = Instance(name="Halle à l'heure")
    inst.set(plugin_dirs="%s:%s" % (MARKET_DIR, LUA_DIR), password_cost="min", login_rate_limit="1000",
             mail_from="halle <noreply@example.org>", smtp_url="smtp://127.0.0.1:%d" % inbox.port, mail_interval=1,
             base_url="http://127.0.0.1:%d" % port)
    for name in ("market", "luafees"):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        if not t.ok(r.returncode == 0, "the %s plugin is enabled" % name, r.stderr):
            raise SystemExit(t.done())
    for who in ("alice", "bob", "carol", "pierre"):
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    return inst


def main():
    t = Tap()
    inbox = Inbox()
    port = free_port()
    inst = make_instance(t, inbox, port)
    os.environ["HALLE_NOW"] = str(NOW)
    srv = Server(inst, workers=2, tap=t, extra_args=["--listen", "127.0.0.1:%d" % port])
    try:
        srv.start()
        s = setup(t, inst, srv)
        t.run(test_local_times, srv, inst, inbox, s)
        t.run(test_fees, srv, inst, inbox, s)
        t.run(test_api_report, srv, inst, inbox, s)
        t.run(test_closing_times, srv, inst, inbox, s)
        t.ok("AddressSanitizer" not in srv.stderr_text() and "runtime error" not in srv.stderr_text(),
             "the server logged no sanitizer report", srv.stderr_text()[-2000:])
    finally:
        srv.stop()
        inbox.stop()
        del os.environ["HALLE_NOW"]
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
