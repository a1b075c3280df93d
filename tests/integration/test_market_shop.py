# The shop of a distribution, product pages, the cart and the checkout, against the real server
# with the market plugin. The distributions, the producers taking part and the catalogs offered
# are written by SQL here (the distributions' own pages are another module's): the shop lists
# exactly what the distribution offers (active products of offered catalogs whose producer
# confirmed), with prices per kg or litre, the organic label and the stock; accent-insensitive
# search and categories (a parent takes its subcategories); the product page; the cart without
# JavaScript (add, change, remove, refusals next to the product: stock, not offered, window
# closed); a visitor's cart (cookie HttpOnly, SameSite=Lax, only its hash stored) kept across
# login (merged into the member's own cart) and across sign-up; the checkout's totals per
# producer and VAT, its order form (the orders endpoint's interface: _csrf, idem, q_ID) and
# the group's minimum and maximum.
import hashlib
import html
import json
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRC_DIR, Browser, Instance, Server, Tap, run  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")
T0 = "2026-01-01T10:00:00Z"


def one(inst, query, *params):
    rows = inst.sql(query, *params)
    return rows[0][0] if rows else None


def uid(inst, who):
    return one(inst, "SELECT id FROM hl_users WHERE email = ?", "%s@example.org" % who)


def setup(t, fees=False):
    """The instance, its accounts and the data; with fees, the luafees test plugin adds 0,50 €
    to every cart through market.cart.totals."""
    inst = Instance(name="Halle du marché")
    inst.set(plugin_dirs="%s:%s" % (MARKET_DIR, LUA_DIR) if fees else MARKET_DIR, password_cost="min",
             login_rate_limit="1000")
    for name in ("market", "luafees") if fees else ("market",):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        if not t.ok(r.returncode == 0, "the %s plugin is enabled" % name, r.stderr):
            raise SystemExit(t.done())
    for who in ("alice", "bob", "paul", "rose", "marc"):
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    d = {}
    d["group"] = one(inst, "INSERT INTO market_groups (slug, name, kind, join_policy, town, created_by, created_at) "
                           "VALUES ('les-paniers', 'Les Paniers', 'buying_group', 'open', 'Nantes', ?, ?) RETURNING id",
                     uid(inst, "alice"), T0)
    inst.sql("INSERT INTO market_members (group_id, user_id, role, status, requested_at) VALUES (?, ?, 'member', 'active', ?)",
             d["group"], uid(inst, "alice"), T0)
    for who, slug, name in (("paul", "verger-paul", "Verger de Paul"), ("rose", "fournil-rose", "Fournil de Rose"),
                            ("marc", "rucher-marc", "Rucher de Marc")):
        d[who] = one(inst, "INSERT INTO market_producers (user_id, slug, business_name, siret, charter_version, "
                           "charter_accepted_at, created_at, town) VALUES (?, ?, ?, '73282932000074', '2021-11', ?, ?, 'Rezé') "
                           "RETURNING id", uid(inst, who), slug, name, T0, T0)
        inst.sql("INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) VALUES (?, ?, 'accepted', ?)",
                 d["group"], d[who], T0)

    def catalog(who, name):
        return one(inst, "INSERT INTO market_catalogs (producer_id, name, created_at) VALUES (?, ?, ?) RETURNING id",
                   d[who], name, T0)

    def product(cat, who, name, unit, qty, cents, vat, category, organic=0, stock=None, active=1, desc=""):
        return one(inst, "INSERT INTO market_products (catalog_id, producer_id, name, description, unit, quantity, "
                         "price_cents, vat_rate_bp, organic, category_id, stock, active, created_at, updated_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                   cat, d[who], name, desc, unit, qty, cents, vat, organic, category, stock, active, T0, T0)

    c1, c2, c3, c4 = catalog("paul", "Été"), catalog("paul", "Hiver"), catalog("rose", "Pains"), catalog("marc", "Miels")
    d["pommes"] = product(c1, "paul", "Pommes Reinette", "kg", 1, 320, 550, 1, organic=1, stock=10,
                          desc="Croquantes, cueillies à la main.")
    d["creme"] = product(c1, "paul", "Crème fraîche", "l", 0.5, 420, 550, 3)
    d["tomme"] = product(c1, "paul", "Tomme de Savoie", "kg", 0.25, 500, 550, 4)
    d["poires"] = product(c1, "paul", "Poires cachées", "kg", 1, 300, 550, 1, active=0)
    d["prunes"] = product(c2, "paul", "Prunes d'hiver", "kg", 1, 280, 550, 1)
    d["pain"] = product(c3, "rose", "Pain d'épeautre", "piece", 1, 450, 550, 9)
    d["jus"] = product(c3, "rose", "Jus de pomme", "l", 1, 390, 2000, 12)
    d["miel"] = product(c4, "marc", "Miel de lavande", "g", 500, 900, 550, 11)

    def distribution(opens, closes, status="planned"):
        return one(inst, "INSERT INTO market_distributions (group_id, starts_at, ends_at, opens_at, closes_at, status, "
                         "created_by, created_at, updated_at) VALUES (?, '2099-06-05T17:00:00Z', '2099-06-05T19:00:00Z', "
                         "?, ?, ?, ?, ?, ?) RETURNING id", d["group"], opens, closes, status, uid(inst, "alice"), T0, T0)

    d["dist"] = distribution("2020-01-01T00:00:00Z", "2099-06-04T17:00:00Z")
    d["closed"] = distribution("2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z")
    for dist in (d["dist"], d["closed"]):
        for who, st in (("paul", "confirmed"), ("rose", "confirmed"), ("marc", "declined")):
            inst.sql("INSERT INTO market_distribution_producers (distribution_id, producer_id, status) VALUES (?, ?, ?)",
                     dist, d[who], st)
        for c in (c1, c3, c4):
            inst.sql("INSERT INTO market_distribution_catalogs (distribution_id, catalog_id) VALUES (?, ?)", dist, c)
    d["url"] = "/groups/les-paniers/distributions/%d" % d["dist"]
    return inst, d


def card_ids(page):
    return {int(x) for x in re.findall(r'<li class="market-card" id="p-(\d+)"', page)}


def norm(text):
    """The page's text with entities decoded and no-break spaces (prices) as spaces."""
    return html.unescape(text).replace("\u00a0", " ").replace("\u202f", " ")


def card(page, pid):
    m = re.search(r'<li class="market-card" id="p-%d".*?</li>' % pid, page, re.S)
    return norm(m.group(0)) if m else ""


def login(t, b, who):
    st, h, page = b.submit("/login", "/login", {"email": "%s@example.org" % who, "password": PASSWORD})
    t.ok(st == 303, "%s logs in" % who, (st, page[:300]))


def cart_post(b, d, fields, page_path=None):
    return b.submit(page_path or d["url"], d["url"] + "/cart", fields)


def items(inst, cart_id):
    return dict(inst.sql("SELECT product_id, count FROM market_cart_items WHERE cart_id = ? ORDER BY product_id", cart_id))


def shop(t, srv, inst, d):
    b = Browser(srv.port)
    st, h, page = b.get(d["url"])
    t.ok(st == 200 and "Les Paniers" in page, "the distribution's shop opens", (st, page[:300]))
    want = {d[k] for k in ("pommes", "creme", "tomme", "pain", "jus")}
    t.eq(card_ids(page), want, "the shop lists exactly the active products of offered catalogs of confirmed producers")
    c = card(page, d["pommes"])
    t.ok('href="/products/%d"' % d["pommes"] in c and "Pommes Reinette" in c and "3,20 €" in c and "Bio" in c
         and "Verger de Paul" in c and "Stock restant : 10" in c and "1 kg" in c,
         "a card: name linked to the product page, price, unit and quantity, producer, organic label, stock", c)
    t.ok("20,00 € / kg" in card(page, d["tomme"]), "price per kg of 250 g at 5,00 €", card(page, d["tomme"]))
    t.ok("8,40 € / litre" in card(page, d["creme"]), "price per litre of 0,5 l at 4,20 €", card(page, d["creme"]))
    t.ok("/ kg" not in card(page, d["pain"]) and "/ litre" not in card(page, d["pain"]), "no price per kg for a piece")
    t.ok('name="count"' in c and 'action="%s/cart"' % d["url"] in c and "Ajouter au panier" in c,
         "each card has a quantity input and an add-to-cart form")
    t.ok('src="/static/market/shop.js"' in page and "<script>" not in page, "the script is a file (no inline script)")
    st, h, js = b.get("/static/market/shop.js")
    t.ok(st == 200 and "javascript" in (h.get("Content-Type") or ""), "the shop's script is served", (st, h.get("Content-Type")))
    # search, accent-insensitive, and categories
    st, h, page = b.get(d["url"] + "?q=CREME")
    t.eq(card_ids(page), {d["creme"]}, "search 'CREME' finds 'Crème fraîche'")
    st, h, page = b.get(d["url"] + "?q=epeautre")
    t.eq(card_ids(page), {d["pain"]}, "search 'epeautre' finds 'Pain d'épeautre'")
    st, h, page = b.get(d["url"] + "?q=cachees")
    t.eq(card_ids(page), set(), "an inactive product is not found")
    st, h, page = b.get(d["url"] + "?category=cremerie")
    t.eq(card_ids(page), {d["creme"], d["tomme"]}, "a category takes its subcategories (Crèmerie: cream and cheese)")
    t.ok("category=fromages" not in page and "category=fruits" in page and "Miel" not in page,
         "the category list holds the top categories with products here")
    st, h, page = b.get(d["url"] + "?category=fromages")
    t.eq(card_ids(page), {d["tomme"]}, "a subcategory alone")
    st, h, page = b.get(d["url"] + "?category=cremerie&q=tomme")
    t.eq(card_ids(page), {d["tomme"]}, "search within a category")
    # not found
    st, h, page = b.get("/groups/autre/distributions/%d" % d["dist"])
    t.eq(st, 404, "a distribution under another group's address is not found")
    st, h, page = b.get(d["url"].replace(str(d["dist"]), "999999"))
    t.eq(st, 404, "an unknown distribution is not found")


def product_page(t, srv, inst, d):
    b = Browser(srv.port)
    st, h, page = b.get("/products/%d" % d["pommes"])
    t.ok(st == 200 and "Pommes Reinette" in page and "Croquantes, cueillies à la main." in norm(page)
         and 'href="/producers/verger-paul"' in page and "Verger de Paul" in page and "3,20 €" in norm(page),
         "the product page: name, description, producer, price", (st, page[:500]))
    others = set(int(x) for x in re.findall(r'href="/products/(\d+)"', page.split("Du même producteur", 1)[-1]))
    t.eq(others, {d["creme"], d["tomme"], d["prunes"]}, "the producer's other (active) products are listed")
    st, h, page = b.get("/products/%d" % d["poires"])
    t.eq(st, 404, "an inactive product has no page")


def cart_visitor(t, srv, inst, d):
    b = Browser(srv.port)
    st, h, page = cart_post(b, d, {"product": d["pommes"], "count": "2"})
    t.ok(st == 303 and (h.get("Location") or "").startswith(d["url"] + "?done=added"), "add to cart without JavaScript",
         (st, h.get("Location"), page[:300]))
    sc = [c for c in b.last_set_cookies if c.startswith("halle_cart=")]
    t.ok(sc and "HttpOnly" in sc[0] and "SameSite=Lax" in sc[0] and "Path=/" in sc[0],
         "the visitor gets a cart cookie, HttpOnly and SameSite=Lax", b.last_set_cookies)
    key = b.cookies.get("halle_cart", "")
    t.ok(re.fullmatch(r"[0-9a-f]{64}", key or "") is not None, "the cart key is 256 random bits", key)
    want_hash = hashlib.sha256(("%s:%d" % (key, d["dist"])).encode()).hexdigest()
    rows = inst.sql("SELECT id, key_hash, user_id FROM market_carts WHERE distribution_id = ?", d["dist"])
    t.ok(len(rows) == 1 and rows[0][1] == want_hash and rows[0][2] is None and key not in str(rows),
         "the cart is stored with the key's hash, never the key", rows)
    cart = rows[0][0] if rows else 0
    t.eq(items(inst, cart), {d["pommes"]: 2}, "2 apples in the cart")
    st, h, page = b.get(d["url"])
    t.ok("Dans le panier : 2" in card(page, d["pommes"]) and "6,40 €" in norm(page) and "Mettre à jour" in card(page, d["pommes"]),
         "the shop shows the cart and the count in the card", card(page, d["pommes"]))
    cart_post(b, d, {"product": d["pommes"], "count": "3"})
    cart_post(b, d, {"product": d["pain"], "count": "1"})
    t.eq(items(inst, cart), {d["pommes"]: 3, d["pain"]: 1}, "change a count, add another product")
    cart_post(b, d, {"product": d["pain"], "count": "1", "remove": "1"})
    t.eq(items(inst, cart), {d["pommes"]: 3}, "remove a product")
    cart_post(b, d, {"product": d["pommes"], "count": "0"})
    t.eq(items(inst, cart), {}, "a count of 0 removes it too")
    # refusals, kept next to the product
    st, h, page = cart_post(b, d, {"product": d["pommes"], "count": "11"})
    t.ok(st == 422 and "Il n'en reste que 10." in html.unescape(card(page, d["pommes"])),
         "more than the stock is refused next to the product", (st, card(page, d["pommes"])))
    st, h, page = cart_post(b, d, {"product": d["pommes"], "count": "deux"})
    t.ok(st == 422 and "Indiquez un nombre" in card(page, d["pommes"]), "a count that is not a number is refused", st)
    for name in ("prunes", "miel", "poires"):
        st, h, page = cart_post(b, d, {"product": d[name], "count": "1"})
        t.ok(st == 422 and "pas proposé" in html.unescape(page), "%s cannot be added (not offered here)" % name, st)
    closed = "/groups/les-paniers/distributions/%d" % d["closed"]
    st, h, page = b.get(closed)
    t.ok(st == 200 and "closes" in page and 'action="%s/cart"' % closed not in page,
         "a closed distribution's shop has no cart forms", page[:300])
    st, h, page = b.submit(d["url"], closed + "/cart", {"product": d["pommes"], "count": "1"})
    t.ok(st == 409 and "closes" in page, "adding to the cart of a closed distribution is refused", st)
    t.eq(items(inst, cart), {}, "nothing was added by the refusals")
    st, h, page = b.request("POST", d["url"] + "/cart", form={"product": d["pommes"], "count": "1"})
    t.eq(st, 403, "a cart form without its CSRF token is refused")


def cart_login(t, srv, inst, d):
    alice = uid(inst, "alice")
    a = Browser(srv.port)
    login(t, a, "alice")
    cart_post(a, d, {"product": d["jus"], "count": "1"})
    cart_post(a, d, {"product": d["pommes"], "count": "1"})
    mine = one(inst, "SELECT id FROM market_carts WHERE user_id = ? AND distribution_id = ?", alice, d["dist"])
    t.eq(items(inst, mine), {d["jus"]: 1, d["pommes"]: 1}, "a member's cart is kept by user id")
    t.ok(not [c for c in a.last_set_cookies if c.startswith("halle_cart=")] and "halle_cart" not in a.cookies,
         "a member gets no cart cookie")
    v = Browser(srv.port)
    cart_post(v, d, {"product": d["pommes"], "count": "3"})
    cart_post(v, d, {"product": d["tomme"], "count": "2"})
    st, h, page = v.get(d["url"] + "/checkout")
    t.ok(st == 200 and 'href="/login"' in page and "/order" not in page,
         "a visitor's checkout sends them to log in or sign up, without an order form", page[:300])
    key = v.cookies.get("halle_cart", "")
    login(t, v, "alice")
    st, h, page = v.get("/account")
    t.ok("halle_cart" not in v.cookies, "after login, the visitor's cart cookie is dropped", v.last_set_cookies)
    gone = hashlib.sha256(("%s:%d" % (key, d["dist"])).encode()).hexdigest()
    t.eq(inst.sql("SELECT count(*) FROM market_carts WHERE key_hash = ?", gone), [(0,)], "the visitor's cart is gone")
    rows = inst.sql("SELECT id, user_id, key_hash FROM market_carts WHERE user_id = ? AND distribution_id = ?", alice, d["dist"])
    t.eq(rows, [(mine, alice, None)], "one cart left: the member's")
    t.eq(items(inst, mine), {d["jus"]: 1, d["pommes"]: 3, d["tomme"]: 2},
         "the visitor's cart is merged into the member's (the visitor's counts win)")
    t.ok('href="%s/checkout"' % d["url"] in page and "Panier (6)" in page, "the header links to the cart", page[:2000])


def cart_signup(t, srv, inst, d):
    v = Browser(srv.port)
    cart_post(v, d, {"product": d["pain"], "count": "2"})
    st, h, page = v.submit("/signup", "/signup", {"email": "lise@example.org", "name": "Lise", "password": PASSWORD,
                                                  "password2": PASSWORD, "terms": "1", "age": "1"})
    t.ok(st == 200, "the visitor signs up", (st, page[:300]))
    inst.sql("UPDATE hl_users SET email_verified_at = ? WHERE email = ?", T0, "lise@example.org")  # the mail's link
    login(t, v, "lise")
    st, h, page = v.get(d["url"] + "/checkout")
    lise = uid(inst, "lise")
    cart = one(inst, "SELECT id FROM market_carts WHERE user_id = ? AND distribution_id = ?", lise, d["dist"])
    t.ok(cart and items(inst, cart) == {d["pain"]: 2}, "the cart is kept across sign-up", cart)
    t.ok("Pain d&#39;épeautre" in page or "Pain d'épeautre" in html.unescape(page), "the checkout shows it", page[:500])
    t.ok('action="/groups/les-paniers/join"' in page and '/order"' not in page,
         "a non-member is offered to join the open group, and has no order form yet", page[:3000])
    st, h, _ = v.submit(d["url"] + "/checkout", "/groups/les-paniers/join", {"back": str(d["dist"])})
    t.ok(st == 303 and h.get("Location") == d["url"] + "/checkout", "joining from the checkout comes back to it",
         (st, h.get("Location")))
    t.eq(inst.sql("SELECT status FROM market_members WHERE group_id = ? AND user_id = ?", d["group"], lise), [("active",)],
         "the open group's membership is active at once")
    st, h, page = v.get(d["url"] + "/checkout")
    t.ok('action="%s/order"' % d["url"] in page and "Pain" in page, "after joining, the intact cart can be ordered",
         page[:3000])


def checkout(t, srv, inst, d):
    b = Browser(srv.port)
    login(t, b, "alice")
    st, h, page = b.get(d["url"] + "/checkout")
    text = norm(page)
    t.ok(st == 200, "the checkout opens", st)
    # jus 1 x 3,90 (20 %); pommes 3 x 3,20 and tomme 2 x 5,00 (5,5 %)
    t.ok("Total Verger de Paul : 19,60 €" in re.sub(r"<[^>]+>", "", text), "the total of one producer", text[:3000])
    t.ok("Total Fournil de Rose : 3,90 €" in re.sub(r"<[^>]+>", "", text), "the total of the other")
    plain = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    t.ok(re.search(r"Produits \(TTC\) 23,50 € Frais de gestion 0,50 € Total à payer 24,00 €", plain),
         "the products, the fee a plugin added through market.cart.totals, and the grand total", plain[:3000])
    t.ok(re.search(r"dont TVA 5,5 % \(sur 19,60 €\) 1,02 €", plain), "VAT 5,5 % included in 19,60 €: 1,02 €", plain)
    t.ok(re.search(r"dont TVA 20 % \(sur 3,90 €\) 0,65 €", plain), "VAT 20 % included in 3,90 €: 0,65 €", plain)
    t.ok(re.search(r"TVA totale incluse 1,67 €", plain), "the VAT in all")
    form = re.search(r'<form method="post" action="([^"]+)" class="market-order">(.*?)</form>', page, re.S)
    t.ok(form and form.group(1) == d["url"] + "/order", "the order form posts to the orders endpoint", page[-3000:])
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.group(2))) if form else {}
    t.ok(re.fullmatch(r"[0-9a-f]{32}", fields.get("idem", "")) and fields.get("_csrf"), "with _csrf and a 32-hex idem key",
         fields)
    t.eq({k: v for k, v in fields.items() if k.startswith("q_")},
         {"q_%d" % d["jus"]: "1", "q_%d" % d["pommes"]: "3", "q_%d" % d["tomme"]: "2"}, "and q_ID = count for each line")
    st, h, page2 = b.get(d["url"] + "/checkout")
    idem2 = re.search(r'name="idem" value="([0-9a-f]{32})"', page2)
    t.ok(idem2 and idem2.group(1) != fields.get("idem"), "each checkout page has a fresh idem key")
    # change a count from the checkout, without JavaScript
    st, h, _ = b.submit(d["url"] + "/checkout", d["url"] + "/cart", {"product": d["jus"], "count": "2", "back": "checkout"})
    t.ok(st == 303 and h.get("Location") == d["url"] + "/checkout", "a change from the checkout comes back to it",
         (st, h.get("Location")))
    cart_post(b, d, {"product": d["jus"], "count": "1"})
    # the group's minimum and maximum
    inst.sql("UPDATE market_groups SET min_order_cents = 5000 WHERE id = ?", d["group"])
    st, h, page = b.get(d["url"] + "/checkout")
    text = norm(page)
    t.ok("au moins 50,00 €" in text and "ajoutez encore 26,50 €" in text and "market-order" not in page,
         "under the minimum: a clear message and no order form", text[-2500:])
    inst.sql("UPDATE market_groups SET min_order_cents = 0, max_order_cents = 2000 WHERE id = ?", d["group"])
    st, h, page = b.get(d["url"] + "/checkout")
    text = norm(page)
    t.ok("dépasser 20,00 €" in text and "retirez 3,50 €" in text and "market-order" not in page,
         "over the maximum: a clear message and no order form", text[-2500:])
    inst.sql("UPDATE market_groups SET max_order_cents = 0 WHERE id = ?", d["group"])
    st, h, page = b.get(d["url"] + "/checkout")
    t.ok("market-order" in page, "within the limits, the order form is back")
    # an empty cart, and a closed distribution
    st, h, page = b.get("/groups/les-paniers/distributions/%d/checkout" % d["closed"])
    t.ok(st == 200 and "panier est vide" in html.unescape(page), "another distribution's cart is empty", page[:500])


def cookie_declared(t, inst):
    r = run(["hooks", "-c", inst.conf, "register"])
    try:
        cookies = json.loads(r.stdout).get("cookies") or []
    except ValueError:
        cookies = []
    cart = [c for c in cookies if c.get("name") == "halle_cart"]
    t.ok(r.returncode == 0 and cart and cart[0].get("duration_days") == 30 and cart[0].get("purpose"),
         "the cart cookie is declared (name, purpose, 30 days) for the privacy pages", (r.stdout[:800], r.stderr[:300]))


def purge(t, srv, inst, d):
    """market.carts_purge: carts of a distribution no longer taking orders go, and a visitor's
    untouched for 30 days; a member's cart of an open distribution stays."""
    alice = uid(inst, "alice")
    old = one(inst, "INSERT INTO market_carts (key_hash, user_id, distribution_id, created_at, updated_at) "
                    "VALUES ('old', NULL, ?, ?, ?) RETURNING id", d["dist"], T0, T0)
    closed = one(inst, "INSERT INTO market_carts (key_hash, user_id, distribution_id, created_at, updated_at) "
                       "VALUES (NULL, ?, ?, ?, ?) RETURNING id", alice, d["closed"], T0, T0)
    for c in (old, closed):
        inst.sql("INSERT INTO market_cart_items (cart_id, product_id, count) VALUES (?, ?, 1)", c, d["pommes"])
    mine = one(inst, "SELECT id FROM market_carts WHERE user_id = ? AND distribution_id = ?", alice, d["dist"])
    r = run(["jobs", "-c", inst.conf, "run", "market.carts_purge"])
    t.ok(r.returncode == 0, "the purge job runs", r.stderr)
    left = {row[0] for row in inst.sql("SELECT id FROM market_carts")}
    t.ok(old not in left and closed not in left and mine in left,
         "stale visitor carts and carts of closed distributions are purged, a member's open cart stays", left)
    t.eq(inst.sql("SELECT count(*) FROM market_cart_items WHERE cart_id IN (?, ?)", old, closed), [(0,)],
         "with their items")


def main():
    t = Tap()
    inst, d = setup(t, fees=True)
    cookie_declared(t, inst)
    with Server(inst, workers=2, tap=t) as srv:
        for fn in (shop, product_page, cart_visitor, cart_login, cart_signup, checkout, purge):
            t.run(fn, srv, inst, d)
        log = srv.log_text()
    t.ok("shop:" not in log and "cart not merged" not in log, "no error logged by the shop", "\n".join(
        l for l in log.splitlines() if "shop:" in l or "cart not" in l)[:2000])
    t.done()


if __name__ == "__main__":
    main()
