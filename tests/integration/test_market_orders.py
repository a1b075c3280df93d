# Orders end to end (marketplace part 2), against the real server with the market plugin and a
# real SMTP listener (aiosmtpd) on loopback, on SQLite and PostgreSQL: the order window refused
# with a clear message before opening and after closing; placing, changing and cancelling an
# order (stock taken and given back, lines copied, the cart emptied, the confirmation page and
# mail); N members racing for the last unit (exactly one gets it, stock never negative);
# idempotent placement (the same idem key twice makes one order and gets the same answer); the
# group's minimum; a non-member refused; the closing job under a controlled clock (HALLE_NOW)
# freezing the orders and mailing the producer's and the coordinators' summaries; the
# reports in HTML and CSV for coordinators and producers. Until the distributions pages land,
# distributions are rows written by SQL here.
import html
import os
import re
import secrets
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRC_DIR, Browser, Inbox, Instance, Server, Tap, free_port, run  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")
RACERS = 8


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def login(t, port, who):
    b = Browser(port)
    st, h, page = b.submit("/login", "/login", {"email": "%s@example.org" % who, "password": PASSWORD})
    t.ok(st == 303, "%s logs in" % who, (st, page[:300]))
    return b


def uid(inst, who):
    return inst.sql("SELECT id FROM hl_users WHERE email = ?", "%s@example.org" % who)[0][0]


def one(inst, query, *params):
    rows = inst.sql(query, *params)
    return rows[0][0] if rows else None


def order_form(b, page_path, lines, idem=None):
    """The checkout form as the shop sends it: _csrf, idem, q_<product>."""
    st, h, page = b.get(page_path)
    fields = {"_csrf": b.csrf(page), "idem": idem or secrets.token_hex(16)}
    for pid, n in lines.items():
        fields["q_%d" % pid] = str(n)
    return fields


def refusals(page):
    m = re.search(r'<ul class="order-refusals">(.*?)</ul>', page, re.S)
    return html.unescape(m.group(1)) if m else page[:300]


def place(b, s, dist, lines, idem=None):
    fields = order_form(b, "/groups/%s" % s["slug"], lines, idem)
    return b.request("POST", "/groups/%s/distributions/%d/order" % (s["slug"], dist), form=fields)


def setup(t, inst, srv):
    s = {}
    alice = login(t, srv.port, "alice")
    st, h, page = alice.submit("/groups/new", "/groups/new", {
        "name": "La Ruche d'Été", "description": "Légumes.", "kind": "buying_group", "join_policy": "open",
        "address": "1 place de la Halle", "postcode": "44000", "town": "Nantes"})
    m = re.match(r"^/groups/([a-z0-9-]+)/admin", h.get("Location") or "")
    t.ok(st == 303 and m, "alice creates the group", (st, h.get("Location")))
    s["slug"] = slug = m.group(1)
    s["gid"] = gid = one(inst, "SELECT id FROM market_groups WHERE slug = ?", slug)
    s["alice"] = alice
    for who in ["bob", "carol"] + ["m%d" % i for i in range(RACERS)]:
        b = login(t, srv.port, who)
        st, h, page = b.submit("/groups/%s" % slug, "/groups/%s/join" % slug, {})
        t.ok(st == 303, "%s joins the group" % who, st)
        s[who] = b
    now = iso(time.time())
    place_id = None
    inst.sql("INSERT INTO market_places (group_id, name, address, postcode, town) VALUES (?, 'Salle des fêtes', "
             "'2 rue du Marché', '44000', 'Nantes')", gid)
    place_id = one(inst, "SELECT id FROM market_places WHERE group_id = ?", gid)
    producers = {}
    for who, business in (("pierre", "Ferme de Pierre"), ("paula", "Fromagerie Paula")):
        inst.sql("INSERT INTO market_producers (user_id, slug, business_name, siret, charter_version, charter_accepted_at, "
                 "created_at) VALUES (?, ?, ?, '73282932000074', '2021-11', ?, ?)", uid(inst, who), who, business, now, now)
        pid = one(inst, "SELECT id FROM market_producers WHERE slug = ?", who)
        inst.sql("INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) VALUES (?, ?, 'accepted', ?)",
                 gid, pid, now)
        inst.sql("INSERT INTO market_catalogs (producer_id, name, created_at) VALUES (?, 'Catalogue', ?)", pid, now)
        producers[who] = (pid, one(inst, "SELECT id FROM market_catalogs WHERE producer_id = ?", pid))
    s["producers"] = producers
    products = {}
    for key, who, name, unit, qty, price, vat, stock in (
            ("pain", "pierre", "Pain de campagne", "kg", 1, 450, 550, 10),
            ("oeufs", "pierre", "Œufs « plein air »", "piece", 6, 320, 550, None),
            ("last", "pierre", "Dernière tourte", "piece", 1, 900, 550, 1),
            ("tomme", "paula", "Tomme; de chèvre", "kg", 0.5, 1250, 550, 5),
            ("knife", "pierre", "Couteau interdit", "piece", 1, 1500, 2000, None),
            ("lamb", "pierre", "Agneau entier", "piece", 1, 60000, 550, None)):
        pid, cat = producers[who]
        inst.sql("INSERT INTO market_products (catalog_id, producer_id, name, unit, quantity, price_cents, vat_rate_bp, stock, "
                 "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", cat, pid, name, unit, qty, price, vat, stock,
                 now, now)
        products[key] = one(inst, "SELECT id FROM market_products WHERE name = ?", name)
    s["products"] = products

    def dist(opens, closes, starts):
        inst.sql("INSERT INTO market_distributions (group_id, place_id, starts_at, ends_at, opens_at, closes_at, status, "
                 "created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'planned', ?, ?, ?)",
                 gid, place_id, iso(starts), iso(starts + 7200), iso(opens), iso(closes), uid(inst, "alice"), now, now)
        did = one(inst, "SELECT max(id) FROM market_distributions")
        for who in producers:
            inst.sql("INSERT INTO market_distribution_producers (distribution_id, producer_id, status) VALUES (?, ?, 'confirmed')",
                     did, producers[who][0])
            inst.sql("INSERT INTO market_distribution_catalogs (distribution_id, catalog_id) VALUES (?, ?)", did,
                     producers[who][1])
        return did
    t0 = int(time.time())
    s["t0"] = t0
    s["open"] = dist(t0 - 86400, t0 + 86400, t0 + 2 * 86400)
    s["later"] = dist(t0 + 3 * 86400, t0 + 5 * 86400, t0 + 6 * 86400)
    s["past"] = dist(t0 - 5 * 86400, t0 - 3600, t0 + 3600)
    return s


def stock(inst, pid):
    return one(inst, "SELECT stock FROM market_products WHERE id = ?", pid)


def test_window_and_members(t, srv, inst, inbox, s):
    p = s["products"]
    bob = s["bob"]
    st, h, page = place(bob, s, s["later"], {p["pain"]: 1})
    t.ok(st == 422 and "pas encore ouvertes" in page and "/distributions/%d/checkout" % s["later"] in page,
         "before opening: 422, 'not open yet' and a link back to the checkout", (st, page[:400]))
    st, h, page = place(bob, s, s["past"], {p["pain"]: 1})
    t.ok(st == 422 and "sont closes depuis" in page, "after closing: 422, 'closed'", (st, page[:400]))
    t.eq(one(inst, "SELECT count(*) FROM market_orders"), 0, "no order was stored by the refusals")
    t.eq(stock(inst, p["pain"]), 10, "the stock is untouched")
    dave = login(t, srv.port, "dave")
    st, h, page = place(dave, s, s["open"], {p["pain"]: 1})
    t.ok(st == 403 and "membres du groupe" in page, "a non-member is refused with a message", (st, page[:300]))
    visitor = Browser(srv.port)
    st, h, page = visitor.request("POST", "/groups/%s/distributions/%d/order" % (s["slug"], s["open"]), form={"idem": "x"})
    t.ok(st in (303, 403), "a visitor cannot order", st)
    st, h, page = place(bob, s, s["open"], {})
    t.ok(st == 422 and "vide" in page, "an empty order is refused", (st, page[:300]))
    fields = order_form(bob, "/groups/%s" % s["slug"], {p["pain"]: 1})
    fields["idem"] = "not-a-key"
    st, h, page = bob.request("POST", "/groups/%s/distributions/%d/order" % (s["slug"], s["open"]), form=fields)
    t.eq(st, 400, "a form without a proper idem key is refused")
    st, h, page = place(bob, s, s["open"], {p["pain"]: 1000})
    t.ok(st == 422 and "999" in page, "a quantity over 999 is refused", (st, page[:300]))
    st, h, page = place(bob, s, s["open"], {p["pain"]: 11})
    t.ok(st == 422 and "Il ne reste que 10" in page, "more than the stock is refused, saying what is left", (st, page[:400]))
    st, h, page = place(bob, s, s["open"], {999999: 1})
    t.ok(st == 422 and "pas proposé" in page, "a product not offered in the distribution is refused", (st, page[:300]))
    # a product whose producer declined is not offered
    inst.sql("UPDATE market_distribution_producers SET status = 'declined' WHERE distribution_id = ? AND producer_id = ?",
             s["open"], s["producers"]["paula"][0])
    st, h, page = place(bob, s, s["open"], {p["tomme"]: 1})
    t.ok(st == 422 and "pas proposé" in page, "a product of a producer who declined is refused", (st, page[:300]))
    inst.sql("UPDATE market_distribution_producers SET status = 'confirmed' WHERE distribution_id = ? AND producer_id = ?",
             s["open"], s["producers"]["paula"][0])
    # market.order.validate (the luaorders test plugin): refuses some lines with a message, or the whole order
    st, h, page = place(bob, s, s["open"], {p["pain"]: 1, p["knife"]: 1})
    t.ok(st == 422 and "« Couteau interdit » ne peut pas être commandé (plugin de test)." in refusals(page),
         "market.order.validate refuses a line with the plugin's message", (st, refusals(page)))
    st, h, page = place(bob, s, s["open"], {p["lamb"]: 1})
    t.ok(st == 422 and "plus de 500 €" in refusals(page), "a validate callback that stops the chain refuses the order",
         (st, refusals(page)))
    t.eq((one(inst, "SELECT count(*) FROM market_orders"), stock(inst, p["pain"])), (0, 10), "nothing was kept")
    # the group's minimum
    inst.sql("UPDATE market_groups SET min_order_cents = 5000 WHERE id = ?", s["gid"])
    st, h, page = place(bob, s, s["open"], {p["pain"]: 1})
    t.ok(st == 422 and "commande minimale" in page and "50,00" in page, "under the group's minimum: refused with the amounts",
         (st, page[:400]))
    inst.sql("UPDATE market_groups SET min_order_cents = 0 WHERE id = ?", s["gid"])


def test_place_change_cancel(t, srv, inst, inbox, s):
    p = s["products"]
    bob = s["bob"]
    bob_id = uid(inst, "bob")
    # a cart of bob's for the distribution, to be emptied by the order
    now = iso(time.time())
    inst.sql("INSERT INTO market_carts (user_id, distribution_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
             bob_id, s["open"], now, now)
    cart = one(inst, "SELECT id FROM market_carts WHERE user_id = ?", bob_id)
    inst.sql("INSERT INTO market_cart_items (cart_id, product_id, count) VALUES (?, ?, 2)", cart, p["pain"])
    st, h, page = place(bob, s, s["open"], {p["pain"]: 2, p["tomme"]: 1, p["oeufs"]: 3})
    loc = h.get("Location") or ""
    m = re.match(r"^/orders/(\d+)$", loc)
    t.ok(st == 303 and m, "the order is placed: 303 to its confirmation page", (st, loc, refusals(page)))
    oid = int(m.group(1))
    s["bob_order"] = oid
    row = inst.sql("SELECT status, payment, total_cents, user_id, distribution_id FROM market_orders WHERE id = ?", oid)[0]
    t.eq(row, ("placed", "at_pickup", 2 * 450 + 1250 + 3 * 320, bob_id, s["open"]),
         "the order row: placed, to pay at pickup, the total in cents")
    lines = inst.sql("SELECT name, unit, quantity, count, price_cents, vat_rate_bp, line_cents FROM market_order_lines "
                     "WHERE order_id = ? ORDER BY product_id", oid)
    t.eq(lines, [("Pain de campagne", "kg", 1.0, 2, 450, 550, 900), ("Œufs « plein air »", "piece", 6.0, 3, 320, 550, 960),
                 ("Tomme; de chèvre", "kg", 0.5, 1, 1250, 550, 1250)], "the lines copy name, unit, quantity, price and VAT")
    t.eq((stock(inst, p["pain"]), stock(inst, p["tomme"]), stock(inst, p["oeufs"])), (8, 4, None),
         "stock is taken (untracked stock stays NULL)")
    t.eq(one(inst, "SELECT count(*) FROM market_carts WHERE user_id = ?", bob_id), 0, "the cart of the distribution is emptied")
    st, h, page = bob.get("/orders/%d" % oid)
    t.ok(st == 200 and "Ferme de Pierre" in page and "Fromagerie Paula" in page and "31,10" in page
         and "Salle des fêtes" in page and "Modifier ma commande" in page and "/orders/%d/cancel" % oid in page,
         "the confirmation page: lines by producer, total, pickup place, change link, cancel button", page[:3000])
    t.ok("Œufs « plein air »" in page, "the names as copied into the lines")
    msg = inbox.wait_for("bob@example.org", "Votre commande")
    t.ok(msg is not None and "Pain de campagne" in msg.get_content() and "/orders/%d" % oid in msg.get_content(),
         "the confirmation mail arrives over SMTP with the lines and the link", msg and msg.get_content()[:500])
    carol = s["carol"]
    st, h, page = carol.get("/orders/%d" % oid)
    t.eq(st, 404, "another member cannot see the order")
    st, h, page = s["alice"].get("/orders/%d" % oid)
    t.eq(st, 200, "the group's coordinator can see it")
    # "Modifier ma commande": the order's lines back into the cart, then the checkout
    st, h, page = bob.submit("/orders/%d" % oid, "/orders/%d/edit" % oid, {})
    t.ok(st == 303 and h.get("Location") == "/groups/%s/distributions/%d/checkout" % (s["slug"], s["open"]),
         "changing the order opens the checkout", (st, h.get("Location")))
    t.eq(sorted(inst.sql("SELECT i.product_id, i.count FROM market_cart_items i JOIN market_carts c ON c.id = i.cart_id "
                         "WHERE c.user_id = ? AND c.distribution_id = ?", bob_id, s["open"])),
         sorted([(p["pain"], 2), (p["tomme"], 1), (p["oeufs"], 3)]), "with the order's lines in the member's cart")
    st, h, page = carol.submit("/orders", "/orders/%d/edit" % oid, {})
    t.eq(st, 404, "another member cannot")
    # change: the whole new list; old stock given back first
    st, h, page = place(bob, s, s["open"], {p["pain"]: 5})
    t.ok(st == 303 and h.get("Location") == "/orders/%d" % oid, "ordering again changes the same order", (st, h.get("Location")))
    t.eq(one(inst, "SELECT count(*) FROM market_orders WHERE user_id = ?", bob_id), 1, "still one order per member and distribution")
    t.eq((stock(inst, p["pain"]), stock(inst, p["tomme"])), (5, 5), "the change gave the old lines' stock back, took the new")
    t.eq(inst.sql("SELECT product_id, count FROM market_order_lines WHERE order_id = ?", oid), [(p["pain"], 5)],
         "the lines are the new list")
    t.eq(one(inst, "SELECT total_cents FROM market_orders WHERE id = ?", oid), 2250, "the total follows")
    # cancel
    st, h, page = bob.submit("/orders/%d" % oid, "/orders/%d/cancel" % oid, {})
    t.ok(st == 303 and h.get("Location") == "/orders/%d?done=cancelled" % oid, "cancel: 303 back to the order", (st, h.get("Location")))
    t.eq(one(inst, "SELECT status FROM market_orders WHERE id = ?", oid), "cancelled", "the order is cancelled")
    t.eq(stock(inst, p["pain"]), 10, "cancelling gave the stock back")
    st, h, page = bob.get("/orders/%d?done=cancelled" % oid)
    t.ok(st == 200 and "annulée" in page and "/orders/%d/cancel" % oid not in page, "the page says cancelled, no cancel button",
         page[:2000])
    st, h, page = bob.submit("/orders/%d" % oid, "/orders/%d/cancel" % oid, {})
    t.eq(stock(inst, p["pain"]), 10, "cancelling twice gives nothing back twice")
    msg = inbox.wait_for("bob@example.org", "Commande annulée")
    t.ok(msg is not None, "the cancellation is mailed")
    # ordering again after cancelling
    st, h, page = place(bob, s, s["open"], {p["pain"]: 2, p["tomme"]: 2})
    t.ok(st == 303 and h.get("Location") == "/orders/%d" % oid, "a cancelled order can be placed again", (st, h.get("Location")))
    t.eq((one(inst, "SELECT status FROM market_orders WHERE id = ?", oid), stock(inst, p["pain"]), stock(inst, p["tomme"])),
         ("placed", 8, 3), "placed again, stock taken once")
    st, h, page = carol.request("POST", "/orders/%d/cancel" % oid, form={"_csrf": carol.csrf(carol.get("/orders")[2])})
    t.eq(st, 404, "another member cannot cancel it")
    st, h, page = bob.get("/orders")
    t.ok(st == 200 and "/orders/%d" % oid in page and "Retraits à venir" in page, "the member's list shows the upcoming pickup",
         page[:2000])
    t.ok('href="/orders"' in page, "the header links to the member's orders")


def test_idempotent(t, srv, inst, inbox, s):
    p = s["products"]
    carol = s["carol"]
    key = secrets.token_hex(16)
    results = []

    def go():
        results.append(place(carol, s, s["open"], {p["oeufs"]: 2, p["tomme"]: 1}, idem=key))
    threads = [threading.Thread(target=go) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    st, h, page = place(carol, s, s["open"], {p["oeufs"]: 2, p["tomme"]: 1}, idem=key)
    results.append((st, h, page))
    locs = set(h.get("Location") for st, h, page in results)
    t.ok(all(r[0] == 303 for r in results) and len(locs) == 1, "the same idem key three times: three times the same answer",
         [(r[0], r[1].get("Location"), r[2][:200]) for r in results])
    t.eq(one(inst, "SELECT count(*) FROM market_orders WHERE user_id = ?", uid(inst, "carol")), 1, "one order was made")
    t.eq(stock(inst, p["tomme"]), 2, "its stock was taken once")
    st, h, page = place(carol, s, s["open"], {p["oeufs"]: 4}, idem=key)
    t.eq(st, 409, "the key reused for another order is refused")


def test_race(t, srv, inst, inbox, s):
    p = s["products"]
    t.eq(stock(inst, p["last"]), 1, "one unit left")
    forms = []
    for i in range(RACERS):
        b = s["m%d" % i]
        forms.append((b, order_form(b, "/groups/%s" % s["slug"], {p["last"]: 1})))
    barrier = threading.Barrier(RACERS)
    results = [None] * RACERS

    def go(i):
        b, fields = forms[i]
        barrier.wait()
        results[i] = b.request("POST", "/groups/%s/distributions/%d/order" % (s["slug"], s["open"]), form=fields)
    threads = [threading.Thread(target=go, args=(i,)) for i in range(RACERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    codes = sorted(r[0] for r in results)
    t.eq(codes, [303] + [422] * (RACERS - 1), "%d members race for the last unit: exactly one gets it" % RACERS)
    t.ok(all("épuisé" in r[2] for r in results if r[0] == 422), "the others are told it is sold out")
    t.eq(stock(inst, p["last"]), 0, "the stock is 0, never negative")
    t.eq(one(inst, "SELECT sum(count) FROM market_order_lines WHERE product_id = ?", p["last"]), 1, "one line holds it")


def jobs(inst, *args, now):
    return run(["jobs", "-c", inst.conf] + list(args), env={"HALLE_NOW": str(now)}, timeout=60)


def test_reports(t, srv, inst, inbox, s):
    alice = s["alice"]
    base = "/groups/%s/distributions/%d/report" % (s["slug"], s["open"])
    st, h, page = alice.get(base)
    t.ok(st == 200 and "Bob" in page and "Carol" in page and "tick-box" in page and "Retiré" in page,
         "the coordinator's attendance sheet lists the members with a box to tick", page[:3000])
    t.ok("2 × Pain de campagne" in page and "34,00" in page, "with each member's lines and amount", page[:4000])
    st, h, page = alice.get(base + "/products")
    t.ok(st == 200 and "Tomme; de chèvre" in page and "1,5 kg" in page and "Fromagerie Paula" in page,
         "by product: the quantities to bring (3 × 0.5 kg of tomme)", page[:4000])
    st, h, page = alice.get(base + "/producers")
    t.ok(st == 200 and "Ferme de Pierre" in page and "Fromagerie Paula" in page, "by producer", page[:3000])
    t.ok("total-amount" in page and "TVA à 5,5" in page, "the totals with VAT per rate", page[:4000])
    st, h, page = alice.get(base + ".csv")
    raw = page
    t.ok(st == 200 and "text/csv" in (h.get("Content-Type") or ""), "the CSV is served as text/csv", (st, h.get("Content-Type")))
    t.ok(raw.startswith("\ufeffmembre;articles;montant;commande;retiré\r\n"), "UTF-8 with a BOM, ';' separators", raw[:80])
    t.ok(re.search(r"\r\nBob;[^\r\n]*;34,00;\d+;\r\n", raw), "a member's row with a decimal comma", raw[:600])
    t.ok("Total;;" in raw, "a total line", raw[-200:])
    st, h, page = alice.get(base + "/products.csv")
    t.ok('"Tomme; de chèvre"' in page and ";1,5 kg;" in page, "products CSV: a ';' in a name is quoted", page[:600])
    pierre = login(t, srv.port, "pierre")
    st, h, page = pierre.get(base + "/products")
    t.ok(st == 200 and "Pain de campagne" in page and "Tomme" not in page, "a producer sees only their own lines", page[:3000])
    st, h, page = pierre.get(base + ".csv")
    t.ok(st == 200 and "Bob" in page and "Tomme" not in page, "in CSV too", page[:500])
    dave = login(t, srv.port, "dave")
    st, h, page = dave.get(base)
    t.eq(st, 403, "someone else is refused")
    st, h, page = Browser(srv.port).get(base)
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to log in", st)


def test_closing(t, srv, inst, inbox, s):
    p = s["products"]
    r = jobs(inst, "run", "market.close", now=s["t0"] + 86400 + 60)
    t.ok(r.returncode == 0, "halle jobs run market.close at a time after closing", r.stdout + r.stderr)
    t.eq(one(inst, "SELECT status FROM market_distributions WHERE id = ?", s["open"]), "closed", "the distribution is closed")
    t.ok(one(inst, "SELECT closed_at FROM market_distributions WHERE id = ?", s["open"]) == iso(s["t0"] + 86400 + 60),
         "closed_at is the controlled clock's")
    t.eq(one(inst, "SELECT status FROM market_distributions WHERE id = ?", s["later"]), "planned", "a later one stays planned")
    r = jobs(inst, "run", "core.mail", now=s["t0"] + 86400 + 70)
    t.eq(r.returncode, 0, "the mail queue is sent")
    msg = inbox.wait_for("pierre@example.org", "Commandes closes", body_part="Bob")
    body = msg.get_content() if msg else ""
    t.ok(msg is not None and "Pain de campagne" in body and "Bob" in body and "Tomme" not in body,
         "the producer's summary arrives over SMTP: their products and members, not the others'", body[:1500])
    t.ok("Par produit" in body and "Par membre" in body, "per product and per member", body[:800])
    msg = inbox.wait_for("paula@example.org", "Commandes closes", body_part="Bob")
    t.ok(msg is not None and "Tomme" in msg.get_content(), "the other producer's summary too")
    msg = inbox.wait_for("alice@example.org", "Commandes closes", body_part="Bob")
    body = msg.get_content() if msg else ""
    t.ok(msg is not None and "Pain de campagne" in body and "Tomme" in body, "the coordinator gets the full summary", body[:800])
    r = jobs(inst, "run", "market.close", now=s["t0"] + 86400 + 120)
    t.eq(one(inst, "SELECT count(*) FROM hl_mail_queue WHERE subject LIKE 'Commandes closes%'"), 6,
         "a second run closes nothing again (6 summaries: 2 producers and the coordinator, for 2 distributions)")
    # frozen: the endpoint refuses
    bob = s["bob"]
    st, h, page = place(bob, s, s["open"], {p["pain"]: 1})
    t.ok(st == 422 and "closes" in page, "a closed distribution's order cannot be changed", (st, page[:300]))
    st, h, page = bob.submit("/orders/%d" % s["bob_order"], "/orders/%d/cancel" % s["bob_order"], {})
    t.ok(st == 422 and one(inst, "SELECT status FROM market_orders WHERE id = ?", s["bob_order"]) == "placed",
         "nor cancelled", (st, page[:300]))
    st, h, page = bob.get("/orders/%d" % s["bob_order"])
    t.ok(st == 200 and "Modifier ma commande" not in page and "/cancel" not in page, "the page offers no change any more")
    seen = inst.sql("SELECT hook, count(*) FROM luaorders_seen GROUP BY hook ORDER BY hook")
    t.eq(seen, [("market.distribution.closed", 2), ("market.order.cancelled", 1), ("market.order.changed", 1),
                ("market.order.placed", 3 + 1)],
         "the actions reached a Lua plugin: placed (bob twice, carol once, the race's winner), changed, cancelled, closed")
    t.eq(inst.sql("SELECT object_id, total_cents FROM luaorders_seen WHERE hook = 'market.order.changed'"),
         [(s["bob_order"], 2250)], "with the order's id and total")


def make_instance(t, inbox=None, port=None):
    """The instance: the market and the luaorders test plugin enabled, the accounts made."""
    inst = Instance(name="Halle des commandes")
    conf = dict(plugin_dirs="%s:%s" % (MARKET_DIR, LUA_DIR), password_cost="min", login_rate_limit="1000",
                mail_from="halle <noreply@example.org>")
    if inbox:
        conf.update(smtp_url="smtp://127.0.0.1:%d" % inbox.port, mail_interval=1, base_url="http://127.0.0.1:%d" % port)
    inst.set(**conf)
    for name in ("market", "luaorders"):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        if not t.ok(r.returncode == 0, "the %s plugin is enabled" % name, r.stderr):
            raise SystemExit(t.done())
    for who in ["alice", "bob", "carol", "dave", "pierre", "paula"] + ["m%d" % i for i in range(RACERS)]:
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
        t.run(test_window_and_members, srv, inst, inbox, s)
        t.run(test_place_change_cancel, srv, inst, inbox, s)
        t.run(test_idempotent, srv, inst, inbox, s)
        t.run(test_race, srv, inst, inbox, s)
        t.run(test_reports, srv, inst, inbox, s)
        t.run(test_closing, srv, inst, inbox, s)
        t.ok("AddressSanitizer" not in srv.stderr_text() and "runtime error" not in srv.stderr_text(),
             "the server logged no sanitizer report", srv.stderr_text()[-2000:])
    finally:
        srv.stop()
        inbox.stop()
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
