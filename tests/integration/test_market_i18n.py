# The marketplace in the visitor's language, against the real server with the market plugin:
# with the halle_lang=en cookie (or Accept-Language: en) the groups directory and its
# pagination, a group's public page (prices "€12.50", quantities "2.5 kg", kind and policy
# labels), the producer sign-up form and its errors, the producer's dashboard, a catalog (prices
# and VAT rates), a CSV import report and the error pages are in English, with no French word of
# the market's templates left; without them the same pages are in French, byte for byte as before
# ("12,50 €", "2,5 kg").
import html
import http.client
import os
import re
import sys
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, multipart_body, run  # noqa: E402

MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
PASSWORD = "Prune-2026"
NOW = "2026-01-01T10:00:00Z"
SIRET = "73282932000074"
# Common French words of the market's templates and messages: none may be left on an English page.
FRENCH = ("Rechercher", "Précédente", "Suivante", "Producteurs", "Produits", "Groupes locaux", "résultat(s)",
          "Aucun", "Enregistrer", "Retour", "Adhésion", "Connectez-vous", "Créer", "Mes catalogues", "Catalogue",
          "Nom de l", "Code postal", "Commune", "Prix", "Quantité", "Lieux de distribution", "Ouvrir", "TTC",
          "pièce", "Groupement", "Espace producteur", "Ce groupe n", "ligne ")


class LangBrowser(Browser):
    """A Browser that sends the same extra headers (Accept-Language) with every request."""

    def __init__(self, port, headers=None, lang=None):
        super().__init__(port)
        self.headers = dict(headers or {})
        if lang:
            self.cookies["halle_lang"] = lang

    def request(self, method, path, form=None, headers=None):
        h = dict(self.headers)
        h.update(headers or {})
        return super().request(method, path, form=form, headers=h)


def db(inst):
    return inst.connect()


def q1(inst, sql, *args):
    rows = inst.sql(sql, *args)
    return rows[0] if rows else None


def html_lang(page):
    m = re.search(r'<html lang="([^"]*)"', page)
    return m.group(1) if m else None


def main_part(page):
    """The page's <main> (the market's own text), or the whole page."""
    m = re.search(r"<main\b.*?</main>", page, re.S)
    return m.group(0) if m else page


def french_left(page):
    text = html.unescape(main_part(page))
    return [w for w in FRENCH if w in text]


def login(port, email, **kw):
    b = LangBrowser(port, **kw)
    st, h, page = b.submit("/login", "/login", {"email": email, "password": PASSWORD})
    if st != 303:
        raise RuntimeError("login %s: %d %s" % (email, st, page[:200]))
    return b


def post_file(b, page_path, action, filename, data):
    """A multipart POST of one file with the browser's cookies and the CSRF token of page_path."""
    st, h, page = b.get(page_path)
    ctype, body = multipart_body({"_csrf": b.csrf(page)}, [("file", filename, "text/csv", data)])
    headers = dict(b.headers)
    headers.update({"Content-Type": ctype, "Cookie": "; ".join("%s=%s" % kv for kv in b.cookies.items())})
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=30)
    try:
        conn.request("POST", action, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def setup(t):
    inst = Instance(name="Halle des langues")
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr):
        raise SystemExit(t.done())
    for who in ("alice", "paul", "vera"):
        r = run(["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()],
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    return inst


# ---- data: a group, 54 more for the directory's pages, a producer with priced products ------------

def make_data(t, srv, inst, s):
    alice = login(srv.port, "alice@example.org")
    st, h, page = alice.submit("/groups/new", "/groups/new", {
        "name": "Green Basket", "description": "Vegetables and cheese.", "kind": "buying_group",
        "join_policy": "approval", "address": "1 Market Square", "postcode": "44000", "town": "Nantes"})
    loc = h.get("Location") or ""
    m = re.match(r"^/groups/([a-z0-9-]+)/admin\?done=created$", loc)
    if not t.ok(st == 303 and m, "the group is created", (st, loc, page[:300])):
        return
    s["slug"] = m.group(1)
    gid = q1(inst, "SELECT id FROM market_groups WHERE slug = ?", s["slug"])[0]
    uid = q1(inst, "SELECT id FROM hl_users WHERE email = 'alice@example.org'")[0]
    with db(inst) as c:
        c.executemany("INSERT INTO market_groups (slug, name, kind, join_policy, town, created_by, created_at) "
                      "VALUES (?, ?, 'amap', 'open', 'Vertou', ?, ?)",
                      [("basket-%02d" % i, "Basket %02d" % i, uid, NOW) for i in range(54)])
        # a producer (not paul: his account is opened through the English form below)
        vid = q1(inst, "SELECT id FROM hl_users WHERE email = 'vera@example.org'")[0]
        pid = c.execute("INSERT INTO market_producers (user_id, slug, business_name, siret, town, charter_version, "
                        "charter_accepted_at, created_at) VALUES (?, 'oak-farm', 'Oak Farm', ?, 'Clisson', '2021-11', ?, ?) "
                        "RETURNING id", (vid, SIRET, NOW, NOW)).fetchone()[0]
        c.execute("INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) "
                  "VALUES (?, ?, 'accepted', ?)", (gid, pid, NOW))
        cid = c.execute("INSERT INTO market_catalogs (producer_id, name, active, created_at) VALUES (?, 'Summer', 1, ?) "
                        "RETURNING id", (pid, NOW)).fetchone()[0]
        c.execute("INSERT INTO market_catalog_groups (catalog_id, group_id) VALUES (?, ?)", (cid, gid))
        for name, unit, qty, cents, organic in (("Heirloom tomatoes", "kg", 1, 1250, 1), ("Potatoes", "kg", 2.5, 320, 0),
                                               ("Goat cheese", "piece", 1, 390, 0)):
            c.execute("INSERT INTO market_products (catalog_id, producer_id, name, unit, quantity, price_cents, "
                      "vat_rate_bp, organic, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 550, ?, 1, ?, ?)",
                      (cid, pid, name, unit, qty, cents, organic, NOW, NOW))
    s["gid"] = gid


# ---- the directory ---------------------------------------------------------------------------------

def directory(t, srv, inst, s):
    en = LangBrowser(srv.port, lang="en")
    st, h, page = en.get("/groups")
    t.eq(st, 200, "EN directory: answers")
    t.eq(html_lang(page), "en", 'EN directory: <html lang="en">')
    t.ok("<h1>Local groups</h1>" in page and "Search for a group by name or town" in page
         and ">Search</button>" in page, "EN directory: heading, search label and button in English")
    t.ok("55 result(s) — page 1 / 2" in page and ">Next</a>" in page, "EN directory: the pagination in English",
         re.findall(r"\d+ \S+ — \S+ \d+ / \d+", page))
    t.ok("Vertou · AMAP (community-supported agriculture) · Open membership" in page,
         "EN directory: kind and policy labels in English", re.findall(r'market-meta">([^<]*)', page)[:1])
    st, h, page = en.get("/groups?q=Green")
    t.ok("Nantes · Buying group · Membership on request" in page, "EN directory: a search finds the group, labels in English",
         re.findall(r'market-meta">([^<]*)', page))
    t.eq(french_left(page), [], "EN directory: no French word of the market left")
    st, h, page = en.get("/groups?page=2")
    t.ok(">Previous</a>" in page and ">Next</a>" not in page and "page 2 / 2" in page,
         "EN directory: page 2 links back with \"Previous\"")
    t.eq(french_left(page), [], "EN directory page 2: no French word left")
    st, h, page = en.get("/groups?q=zzzz")
    t.ok("No group matches your search." in page, "EN directory: the empty search says so in English")

    fr = LangBrowser(srv.port)
    st, h, page = fr.get("/groups")
    t.eq(html_lang(page), "fr", 'FR directory (default): <html lang="fr">')
    t.ok("<h1>Groupes locaux</h1>" in page and "55 résultat(s) — page 1 / 2" in page and ">Suivante</a>" in page
         and ">Rechercher</button>" in page, "FR directory: French by default")
    t.ok("Vertou · AMAP · Adhésion libre" in page, "FR directory: French labels",
         re.findall(r'market-meta">([^<]*)', page)[:1])
    st, h, page = fr.get("/groups?q=Green")
    t.ok("Nantes · Groupement d&#39;achat · Adhésion sur demande" in page, "FR directory: the group's French labels",
         re.findall(r'market-meta">([^<]*)', page))
    t.ok("Local groups" not in page and "result(s)" not in page, "FR directory: no English")
    st, h, page = fr.get("/groups?page=2")
    t.ok(">Précédente</a>" in page, "FR directory page 2: \"Précédente\"")

    al = LangBrowser(srv.port, headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
    st, h, page = al.get("/groups")
    t.ok(html_lang(page) == "en" and "<h1>Local groups</h1>" in page, "Accept-Language: en alone gives English")


# ---- a group's public page --------------------------------------------------------------------------

def group_page(t, srv, inst, s):
    slug = s["slug"]
    en = LangBrowser(srv.port, lang="en")
    st, h, page = en.get("/groups/" + slug)
    t.eq(st, 200, "EN group page: answers")
    t.eq(html_lang(page), "en", 'EN group page: <html lang="en">')
    prices = re.findall(r'class="market-price">([^<]*)<', page)
    t.ok("€12.50" in prices and "€3.20" in prices and "€3.90" in prices, "EN group page: prices as \"€12.50\"", prices)
    t.ok("2.5 kg" in page and "1 piece" in page and "2,5 kg" not in page,
         "EN group page: quantities with a decimal point and English units")
    t.ok("Buying group" in page and "Membership on request" in page, "EN group page: kind and policy in English")
    t.ok("Log in to join" in page and "<h2 id=\"t-products\">Products</h2>" in page
         and "<h2 id=\"t-places\">Distribution places</h2>" in page, "EN group page: sections in English")
    t.ok(">Organic</span>" in page, "EN group page: the organic badge in English")
    t.eq(french_left(page), [], "EN group page: no French word of the market left")
    st, h, page = en.get("/groups/%s?q=zzzz" % slug)
    t.ok("No product is offered to this group yet." in page, "EN group page: an empty search in English")

    fr = LangBrowser(srv.port)
    st, h, page = fr.get("/groups/" + slug)
    prices = re.findall(r'class="market-price">([^<]*)<', page)
    t.ok(html_lang(page) == "fr" and "12,50\u00a0€" in prices and "3,20\u00a0€" in prices, "FR group page: \"12,50 €\"", prices)
    t.ok("2,5 kg" in page and "1 pièce" in page and "Lieux de distribution" in page and ">Rechercher</button>" in page,
         "FR group page: French quantities, units and sections")
    t.ok("€12.50" not in page and "Products" not in page, "FR group page: no English")

    # an error page in English: a group that does not exist
    st, h, page = en.get("/groups/no-such-group")
    t.ok(st == 404 and html_lang(page) == "en" and "This group does not exist." in page
         and "Ce groupe n" not in html.unescape(page), "EN: an unknown group is a 404 page in English", (st, page[:300]))
    st, h, page = fr.get("/groups/no-such-group")
    t.ok(st == 404 and "Ce groupe n'existe pas." in html.unescape(page), "FR: the same 404 in French")


# ---- producers: sign-up form, dashboard, catalog, import ----------------------------------------------

def producers(t, srv, inst, s):
    paul = login(srv.port, "paul@example.org", lang="en")
    st, h, page = paul.get("/producer/signup")
    t.ok(st == 200 and html_lang(page) == "en", "EN sign-up form: answers in English", st)
    t.ok("<h1>Open a producer account</h1>" in page and "Postcode" in page and "Town" in page
         and "EU VAT number (optional)" in page and ">Open my producer account</button>" in page,
         "EN sign-up form: heading, labels and button in English")
    t.ok("I have read and accept the producers" in html.unescape(page), "EN sign-up form: the charter in English")
    t.eq(french_left(page), [], "EN sign-up form: no French word of the market left")
    fields = {"business_name": "Willow Farm", "siret": "12345678901234", "vat_number": "", "address": "3 Lane",
              "postcode": "44000", "town": "Nantes", "description": "Vegetables", "charter": "1"}
    st, h, page = paul.submit("/producer/signup", "/producer/signup", fields)
    t.ok(st == 422 and "Invalid SIRET number" in page and "Numéro SIRET" not in page,
         "EN sign-up: a wrong SIRET is refused in English (422)", (st, page[:300]))
    st, h, page = paul.submit("/producer/signup", "/producer/signup", dict(fields, siret=SIRET))
    t.ok(st == 303 and h.get("Location") == "/producer?done=signup", "EN sign-up: the account opens", (st, page[:300]))

    st, h, page = paul.get("/producer?done=signup")
    t.ok(st == 200 and html_lang(page) == "en" and "Your producer account is open." in page,
         "EN dashboard: the notice in English", st)
    t.ok(re.search(r"Producers&#39; charter accepted on (Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, [1-9]\d? "
                   r"(January|February|March|April|May|June|July|August|September|October|November|December) "
                   r"20\d\d \(version", page),
         "EN dashboard: the charter's date in English", re.findall(r"charter accepted on[^(]*", page))
    t.ok("<h2 id=\"t-catalogs\">My catalogs</h2>" in page and "Search for a catalog" in page and "No catalogs yet." in page
         and "My photos" in page and "Producers&#39; charter accepted on" in page, "EN dashboard: sections in English")
    t.eq(french_left(page), [], "EN dashboard: no French word of the market left")
    st, h, page = paul.submit("/producer", "/producer/groups/ask", {"group": s["slug"]})
    t.ok(st == 303, "EN dashboard: paul asks to join the group", st)
    st, h, page = paul.get("/producer?done=ask")
    t.ok("Your request was sent to the group" in page and "pending" in page and "en attente" not in page,
         "EN dashboard: the request's notice and status in English")
    st, h, page = paul.submit("/producer", "/producer/groups/ask", {"group": "no-such-group"})
    t.ok(st == 422 and "This group does not exist: check the address of its page." in page,
         "EN dashboard: an unknown group is refused in English", (st, page[:300]))

    # a catalog with a product: prices and VAT rates in English
    st, h, page = paul.submit("/producer", "/producer/catalogs", {"name": "Spring", "description": ""})
    m = re.match(r"^/producer/catalogs/(\d+)\?done=created$", h.get("Location") or "")
    if not t.ok(st == 303 and m, "EN: a catalog is created", (st, h.get("Location"))):
        return
    cat = "/producer/catalogs/" + m.group(1)
    st, h, page = paul.get(cat + "/products/new")
    t.ok("<h1>New product</h1>" in page and ">piece</option>" in page and ">5.5%</option>" in page
         and "Price incl. VAT (€)" in page, "EN product form: labels, units and VAT rates in English")
    st, h, page = paul.submit(cat + "/products/new", cat + "/products/new", {
        "name": "Leeks", "ref": "", "description": "", "unit": "bulk", "quantity": "0.5", "price": "12.5",
        "vat": "5,5", "stock": "", "category": "", "active": "1"})
    t.ok(st == 303, "EN: a product is saved with English numbers", (st, page[:300]))
    st, h, page = paul.get(cat)
    row = re.search(r"<tr>.*?Leeks.*?</tr>|<tr[^>]*>.*?Leeks.*?</tr>", page, re.S)
    cells = re.findall(r"<td>(.*?)</td>", row.group(0)) if row else []
    t.ok("€12.50" in cells and "5.5%" in cells and "0.5 bulk" in cells and "offered" in cells,
         "EN catalog: price, VAT rate, quantity and state in English", cells)
    t.eq(french_left(page), [], "EN catalog page: no French word of the market left")
    st, h, page = LangBrowser(srv.port, lang="fr").get("/producers/willow-farm")
    t.ok("12,50\u00a0€ TTC" in page and "0,5 vrac" in page, "FR public page of the producer: \"12,50 € TTC\"")
    st, h, page = paul.get("/producers/willow-farm")
    t.ok("€12.50 incl. VAT" in page and "0.5 bulk" in page, "EN public page of the producer: \"€12.50 incl. VAT\"")

    # a CSV import report in English; the same file in French
    data = "nom;prix;tva\nPears;abc;5,5\nApples;3,20;7\n".encode()
    st, h, page = post_file(paul, cat, cat + "/import", "products.csv", data)
    text = html.unescape(page)
    t.ok(st == 422 and "Nothing was imported." in text and "line 2: invalid price “abc”" in text
         and "line 3: invalid VAT rate “7”" in text, "EN import: the report in English", text[text.find("<h1"):][:600])
    t.ok("ligne " not in text and "Rien n" not in text, "EN import: no French line left")
    paul.cookies["halle_lang"] = "fr"
    st, h, page = post_file(paul, cat, cat + "/import", "products.csv", data)
    text = html.unescape(page)
    t.ok(st == 422 and "Rien n'a été importé." in text and "ligne 2 : prix invalide « abc »" in text,
         "FR import: the same report in French", text[text.find("<h1"):][:600])


def dates_and_search(t, srv, inst, s):
    """Dates through the SDK in the page's language; search through the folded columns."""
    gid = q1(inst, "SELECT id FROM market_groups WHERE slug = ?", s["slug"])[0]
    vid = q1(inst, "SELECT id FROM hl_users WHERE email = 'vera@example.org'")[0]
    with db(inst) as c:
        c.execute("INSERT INTO market_members (group_id, user_id, role, status, requested_at) "
                  "VALUES (?, ?, 'member', 'pending', '2026-11-25T09:30:00Z')", (gid, vid))
    alice_en = login(srv.port, "alice@example.org", lang="en")
    st, h, page = alice_en.get("/groups/%s/admin" % s["slug"])
    t.ok(st == 200 and "Wednesday, 25 November 2026" in page and "25/11/2026" not in page,
         "EN group admin: a member's request date in English", re.findall(r"market-request\">.*", page)[:2])
    alice_fr = login(srv.port, "alice@example.org")
    st, h, page = alice_fr.get("/groups/%s/admin" % s["slug"])
    t.ok(st == 200 and "mercredi 25 novembre 2026" in page and "25/11/2026" not in page,
         "FR group admin: the same date in French", re.findall(r"market-request\">.*", page)[:2])

    # written by the market: the search key is stored with the row
    st, h, page = alice_fr.submit("/groups/new", "/groups/new", {
        "name": "Les Amis de l'Épeautre", "description": "", "kind": "buying_group", "join_policy": "open",
        "address": "", "postcode": "42000", "town": "Saint-Étienne"})
    t.eq(st, 303, "a group with accents is created")
    t.eq(q1(inst, "SELECT name_folded, town_folded FROM market_groups WHERE name = ?", "Les Amis de l'Épeautre"),
         ("les amis de l'epeautre", "saint-etienne"), "its folded name and town are stored on write")
    en = LangBrowser(srv.port, lang="en")
    for q in ("epeautre", "EPEAUTRE", "Épeautre", "ÉPEAUTRE", "Saint-Étienne", "saint-etienne"):
        st, h, page = en.get("/groups?q=" + urllib.parse.quote(q))
        t.ok("Les Amis de l&#39;Épeautre" in page and "1 result(s)" in page,
             "the directory finds the group with %r" % q, re.findall(r"\d+ result\(s\)", page))
    # sorted by the folded name: "Écluse" among the E's, not after every ASCII name
    st, h, page = alice_fr.submit("/groups/new", "/groups/new", {
        "name": "Écluse", "description": "", "kind": "buying_group", "join_policy": "open",
        "address": "", "postcode": "44000", "town": "Nantes"})
    t.eq(st, 303, "a group named with an accented capital is created")
    st, h, page = en.get("/groups?page=2")
    names = re.findall(r'<a href="/groups/[a-z0-9-]+">([^<]+)</a>', page)
    t.ok("Écluse" in names and "Green Basket" in names and names.index("Écluse") < names.index("Green Basket"),
         "the directory sorts by the folded name", names)
    # written behind the market's back (SQL): given its key before the next search
    with db(inst) as c:
        cid = c.execute("SELECT c.id FROM market_catalogs c JOIN market_catalog_groups cg ON cg.catalog_id = c.id "
                        "WHERE cg.group_id = ?", (gid,)).fetchone()[0]
        pid = c.execute("SELECT producer_id FROM market_catalogs WHERE id = ?", (cid,)).fetchone()[0]
        c.execute("INSERT INTO market_products (catalog_id, producer_id, name, unit, quantity, price_cents, vat_rate_bp, "
                  "organic, active, created_at, updated_at) VALUES (?, ?, 'Farine d''Épeautre', 'kg', 1, 450, 550, 1, 1, ?, ?)",
                  (cid, pid, NOW, NOW))
    st, h, page = en.get("/groups/%s?q=epeautre" % s["slug"])
    t.ok("Farine d&#39;Épeautre" in page and "Heirloom tomatoes" not in page and "\u20ac4.50" in page,
         "a product search without accents finds the accented product, priced in English", main_part(page)[:600])


def main():
    t = Tap()
    inst = setup(t)
    s = {}
    with Server(inst, workers=2, tap=t) as srv:
        for fn in (make_data, directory, group_page, producers, dates_and_search):
            if fn is not make_data and "slug" not in s:
                break
            t.run(fn, srv, inst, s)
        log = srv.log_text()
    t.ok("level=error" not in log and "level=warn" not in log, "no error nor warning logged",
         "\n".join(l for l in log.splitlines() if "level=error" in l or "level=warn" in l)[:2000])
    t.done()


if __name__ == "__main__":
    main()
