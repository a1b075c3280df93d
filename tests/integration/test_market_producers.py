# The marketplace's producers end to end, against a real server with the market plugin:
# producers open their own account (SIRET Luhn key, VAT number, charter recorded, one account
# per user, never for someone else), photos and product images checked by their bytes,
# catalogs and products with French prices and VAT rates, who may touch a catalog (its
# producer only: not another producer, not a coordinator), offering a catalog to the groups
# that accepted the producer, CSV import (rejected whole with every wrong line named; 10,000
# lines through `halle market import` with progress; re-import updates; export round trip),
# and the products list staying paginated and searchable with 10,000 products.
import html
import http.client
import os
import random
import re
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, multipart_body, run  # noqa: E402

MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
PASSWORD = "Prune-2026"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(40)
GIF = b"GIF89a\x01\x00\x01\x00" + bytes(30)


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


def vat_for(siret):
    siren = int(siret[:9])
    return "FR%02d%s" % ((12 + 3 * (siren % 97)) % 97, siret[:9])


def bad_key(siret):
    return siret[:13] + str((int(siret[13]) + 1) % 10)


def db(inst):
    return inst.connect()


def q1(inst, sql, *args):
    rows = inst.sql(sql, *args)
    return rows[0] if rows else None


def execute(inst, sql, *args):
    """Runs a statement; with RETURNING id, gives the id."""
    rows = inst.sql(sql, *args)
    return rows[0][0] if isinstance(rows, list) and rows else rows


def add_user(inst, email, name):
    r = run(["user", "-c", inst.conf, "add", email, "--name", name], env={"HALLE_USER_PASSWORD": PASSWORD})
    if r.returncode != 0:
        raise RuntimeError("user add: " + r.stderr)
    return q1(inst, "SELECT id FROM hl_users WHERE email = ?", email)[0]


def login(srv, email):
    b = Browser(srv.port)
    st, h, page = b.submit("/login", "/login", {"email": email, "password": PASSWORD})
    if st != 303:
        raise RuntimeError("login %s: %d %s" % (email, st, page[:200]))
    return b


def post_files(b, page_path, action, fields, files):
    """A multipart POST with the browser's cookies and the CSRF token of page_path."""
    st, h, page = b.get(page_path)
    fields = dict(fields)
    fields["_csrf"] = b.csrf(page)
    ctype, body = multipart_body(fields, files)
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=60)
    try:
        conn.request("POST", action, body=body, headers={
            "Content-Type": ctype, "Cookie": "; ".join("%s=%s" % kv for kv in b.cookies.items())})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def signup_fields(name, siret, **kw):
    f = {"business_name": name, "siret": siret, "vat_number": "", "address": "3 chemin des Prés",
         "postcode": "44000", "town": "Nantes", "description": "Légumes de saison", "charter": "1"}
    f.update(kw)
    return f


def make_producer(t, srv, inst, email, name, siret):
    b = login(srv, email)
    st, h, page = b.submit("/producer/signup", "/producer/signup", signup_fields(name, siret))
    t.ok(st == 303 and h.get("Location", "").startswith("/producer"), "%s opens a producer account" % name, (st, page[:300]))
    return b


# ---- accounts ---------------------------------------------------------------------------

def test_signup(t, srv, inst, ctx):
    st, h, _ = Browser(srv.port).get("/producer/signup")
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to the login page")
    b = login(srv, "alice@example.org")
    st, h, page = b.get("/producer/signup")
    t.ok(st == 200 and 'name="charter"' in page and 'name="siret"' in page, "the sign-up form asks for the SIRET and the charter")

    good = luhn_siret("7321829360001")
    ctx["siret"] = good
    for fields, status, why in (
            ({"siret": bad_key(good)}, 422, "SIRET invalide"),
            ({"siret": "1234"}, 422, "SIRET invalide"),
            ({"charter": ""}, 422, "charte"),
            ({"vat_number": "FR00" + good[:9]}, 422, "TVA"),
            ({"vat_number": "DE123456789"}, 422, "TVA"),
            ({"postcode": "4400"}, 422, "Code postal"),
            ({"business_name": "  "}, 422, "nom de votre exploitation")):
        f = signup_fields("La Ferme des Saules", good)
        f.update(fields)
        st, h, page = b.submit("/producer/signup", "/producer/signup", f)
        t.ok(st == status and why in page, "sign-up refused: %s" % why, (st, page[:600]))
    t.eq(q1(inst, "SELECT count(*) FROM market_producers")[0], 0, "nothing is created by refused forms")

    before = time.strftime("%Y-%m-%dT%H:%M", time.gmtime())
    st, h, page = b.submit("/producer/signup", "/producer/signup",
                           signup_fields("La Ferme des Saules", good[:5] + " " + good[5:], vat_number=vat_for(good).lower()))
    t.ok(st == 303 and h.get("Location") == "/producer?done=signup", "a good SIRET (spaces allowed) and charter open the account",
         (st, page[:600]))
    row = q1(inst, "SELECT p.siret, p.vat_number, p.charter_version, p.charter_accepted_at, p.slug, p.user_id "
                   "FROM market_producers p JOIN hl_users u ON u.id = p.user_id WHERE u.email = 'alice@example.org'")
    t.ok(row is not None and row[0] == good and row[1] == vat_for(good), "SIRET and VAT number stored normalised", row)
    t.ok(row is not None and row[2] == "2021-11" and row[3][:16] >= before and re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", row[3]),
         "the charter version and the time it was accepted are recorded", row)
    t.eq(row and row[4], "la-ferme-des-saules", "the slug comes from the business name")
    t.ok(q1(inst, "SELECT 1 FROM hl_user_roles WHERE user_id = ? AND role = 2 AND group_id = 0", row[5]) is not None,
         "the producer role is granted (user_roles role 2)")
    ctx["alice_producer"] = q1(inst, "SELECT id FROM market_producers WHERE user_id = ?", row[5])[0]
    ctx["alice"] = b

    st, h, page = b.submit("/producer/profile", "/producer/signup", signup_fields("Autre ferme", luhn_siret("5521829360001")))
    t.ok(st == 409 and "déjà un compte" in page, "a second producer account is refused (409)", (st, page[:300]))
    t.eq(q1(inst, "SELECT count(*) FROM market_producers")[0], 1, "still one producer account")
    st, h, page = b.get("/producer/signup")
    t.ok(st == 303 and h.get("Location") == "/producer", "the sign-up page sends a producer to their dashboard")
    st, h, page = b.get("/producer?done=signup")
    t.ok(st == 200 and "La Ferme des Saules" in page and "compte producteur est ouvert" in page and "2021-11" in page,
         "the dashboard greets the new producer", page[:500])

    # a homonym gets its own slug
    make_producer(t, srv, inst, "dora@example.org", "La Ferme des Saules", luhn_siret("4421829360001"))
    t.eq(q1(inst, "SELECT slug FROM market_producers p JOIN hl_users u ON u.id = p.user_id WHERE u.email = 'dora@example.org'")[0],
         "la-ferme-des-saules-2", "a second producer with the same name gets a unique slug")
    ctx["dora_producer"] = q1(inst, "SELECT p.id FROM market_producers p JOIN hl_users u ON u.id = p.user_id "
                                    "WHERE u.email = 'dora@example.org'")[0]

    # profile edits keep the checks
    st, h, page = b.submit("/producer/profile", "/producer/profile",
                           signup_fields("La Ferme des Saules", bad_key(good)))
    t.ok(st == 422 and "SIRET invalide" in page, "the profile form checks the SIRET too", (st, page[:300]))
    st, h, page = b.submit("/producer/profile", "/producer/profile",
                           signup_fields("La Ferme des Saules", good, description="Légumes & fruits <bio>", town="Rezé"))
    t.ok(st == 303 and q1(inst, "SELECT town FROM market_producers WHERE id = ?", ctx["alice_producer"])[0] == "Rezé",
         "the producer edits their information", (st, page[:300]))


def test_coordinator_cannot_sign_up_someone_else(t, srv, inst, ctx):
    bob = q1(inst, "SELECT id FROM hl_users WHERE email = 'bob@example.org'")[0]
    cora = q1(inst, "SELECT id FROM hl_users WHERE email = 'cora@example.org'")[0]
    b = login(srv, "cora@example.org")
    f = signup_fields("Ferme de Bob", luhn_siret("3321829360001"), user_id=str(bob), uid=str(bob))
    st, h, page = b.submit("/producer/signup", "/producer/signup?user_id=%d" % bob, f)
    t.ok(q1(inst, "SELECT count(*) FROM market_producers WHERE user_id = ?", bob)[0] == 0,
         "a coordinator cannot open a producer account for another user (the id sent is ignored)")
    row = q1(inst, "SELECT user_id FROM market_producers WHERE business_name = 'Ferme de Bob'")
    t.ok(st == 303 and row is not None and row[0] == cora, "the account is the coordinator's own", (st, row))
    t.ok(q1(inst, "SELECT 1 FROM hl_user_roles WHERE user_id = ? AND role = 2", bob) is None, "bob did not get the producer role")
    # cora keeps being a coordinator only in the permission tests: her own account goes
    execute(inst, "DELETE FROM market_producers WHERE user_id = ?", cora)
    execute(inst, "DELETE FROM hl_user_roles WHERE user_id = ? AND role = 2", cora)


# ---- public page and photos ---------------------------------------------------------------

def test_photos_and_public_page(t, srv, inst, ctx):
    b = ctx["alice"]
    st, h, data = post_files(b, "/producer", "/producer/photos", {}, [("photo", "ferme.png", "image/png", PNG)])
    t.ok(st == 303 and h.get("Location") == "/producer?done=photo", "a PNG photo is accepted", (st, data[:300]))
    post_files(b, "/producer", "/producer/photos", {}, [("photo", "f.jpg", "image/jpeg", JPEG)])
    st, h, data = post_files(b, "/producer", "/producer/photos", {}, [("photo", "f.webp", "image/webp", WEBP)])
    t.eq(st, 303, "a WebP photo is accepted")
    for name, ctype, body, why in (("anim.gif", "image/gif", GIF, "PNG, JPEG ou WebP"),
                                   ("fake.png", "image/png", b"<svg onload=alert(1)>" + bytes(20), "PNG, JPEG ou WebP"),
                                   ("big.jpg", "image/jpeg", JPEG + bytes(2 * 1024 * 1024), "2 Mo"),
                                   ("empty.png", "image/png", b"", "Choisissez")):
        st, h, data = post_files(b, "/producer", "/producer/photos", {}, [("photo", name, ctype, body)])
        t.ok(st == 422 and why in data.decode("utf-8", "replace"), "photo refused with a clear message: %s" % name,
             (st, data[:300]))
    t.eq(q1(inst, "SELECT count(*) FROM market_producer_photos WHERE producer_id = ?", ctx["alice_producer"])[0], 3,
         "only the three good photos are stored")
    pid = q1(inst, "SELECT id FROM market_producer_photos WHERE content_type = 'image/png'")[0]
    st, h, body = srv.get("/producers/la-ferme-des-saules/photos/%d" % pid)
    t.ok(st == 200 and h.get("Content-Type") == "image/png" and body == PNG, "the photo is served with its type, byte for byte",
         (st, h.get("Content-Type"), len(body)))
    st, h, body = srv.get("/producers/la-ferme-des-saules-2/photos/%d" % pid)
    t.eq(st, 404, "a photo is only found under its own producer")

    st, h, body = srv.get("/producers/la-ferme-des-saules")
    page = body.decode()
    t.ok(st == 200 and "La Ferme des Saules" in page and "Rezé" in page and "/producers/la-ferme-des-saules/photos/%d" % pid in page,
         "the public page shows the name, the town and the photos", page[:500])
    t.ok("Légumes &amp; fruits &lt;bio&gt;" in page and "<bio>" not in page, "the description is escaped")
    t.eq(srv.get("/producers/nobody-here")[0], 404, "an unknown producer is a 404")

    # the other producer cannot delete alice's photo
    dora = login(srv, "dora@example.org")
    st, h, page = dora.submit("/producer", "/producer/photos/%d/delete" % pid, {})
    t.ok(q1(inst, "SELECT 1 FROM market_producer_photos WHERE id = ?", pid) is not None, "another producer cannot delete a photo")
    t.ok(st == 404 and "supprimée" not in page and "pas la vôtre" in page,
         "deleting another producer's photo answers 404 and says so, never a success message", (st, h, page[:300]))
    ctx["dora"] = dora


# ---- catalogs and products ------------------------------------------------------------------

def test_catalog_and_products(t, srv, inst, ctx):
    b = ctx["alice"]
    st, h, page = b.submit("/producer", "/producer/catalogs", {"name": "", "description": ""})
    t.ok(st == 422 and "nom au catalogue" in page, "a catalog needs a name")
    st, h, page = b.submit("/producer", "/producer/catalogs", {"name": "Légumes d'hiver", "description": "Choux, poireaux"})
    m = re.match(r"^/producer/catalogs/(\d+)\?done=created$", h.get("Location", ""))
    t.ok(st == 303 and m, "a catalog is created", (st, h.get("Location")))
    cid = int(m.group(1))
    ctx["catalog"] = cid
    st, h, page = b.get("/producer/catalogs/%d" % cid)
    t.ok(st == 200 and "<h1>Légumes d'hiver</h1>" in html.unescape(page), "the catalog page opens", page[:300])
    base = "/producer/catalogs/%d/products/new" % cid
    fields = {"name": "Carottes", "ref": "CAR-1", "description": "En botte", "unit": "kg", "quantity": "0,5",
              "price": "12,50", "vat": "5,5", "organic": "1", "category": "2", "stock": "", "active": "1"}
    for change, why in (({"price": "12,5,0"}, "Prix TTC invalide"), ({"vat": "7"}, "TVA invalide"),
                        ({"unit": "boîte"}, "unité"), ({"category": "999"}, "Catégorie inconnue"),
                        ({"name": ""}, "nom du produit")):
        f = dict(fields)
        f.update(change)
        st, h, data = post_files(b, base, base, f, [])
        t.ok(st == 422 and why in data.decode(), "product refused: %s" % why, (st, data[:400]))
    f = dict(fields)
    st, h, data = post_files(b, base, base, f, [("image", "gif.png", "image/png", GIF)])
    t.ok(st == 422 and "PNG, JPEG ou WebP" in data.decode(), "a product image is checked by its bytes")
    st, h, data = post_files(b, base, base, f, [("image", "c.png", "image/png", PNG)])
    t.ok(st == 303, "a product with a French price and VAT rate is created", (st, data[:400]))
    row = q1(inst, "SELECT id, price_cents, vat_rate_bp, quantity, unit, organic, category_id, stock, image_type, active, "
                   "producer_id FROM market_products WHERE catalog_id = ? AND ref = 'CAR-1'", cid)
    t.ok(row is not None and row[1:10] == (1250, 550, 0.5, "kg", 1, 2, None, "image/png", 1) and row[10] == ctx["alice_producer"],
         "price 12,50 → 1250 cents, VAT 5,5 → 550, quantity 0,5 kg, organic, category, no stock", row)
    prod = row[0]
    ctx["product"] = prod
    st, h, body = srv.get("/products/%d/image" % prod)
    t.ok(st == 200 and h.get("Content-Type") == "image/png" and body == PNG, "the product image is served with its type")

    st, h, page = b.get("/producer/products/%d" % prod)
    t.ok(st == 200 and 'value="12,50"' in page and 'value="0,5"' in page, "the edit form shows French decimals", page[:300])
    f = dict(fields, price="3.20", vat="20", stock="15", organic="", quantity="1")
    st, h, data = post_files(b, "/producer/products/%d" % prod, "/producer/products/%d" % prod, f, [])
    row = q1(inst, "SELECT price_cents, vat_rate_bp, stock, organic, image_type FROM market_products WHERE id = ?", prod)
    t.ok(st == 303 and row == (320, 2000, 15.0, 0, "image/png"), "the product is edited (3.20, 20 %, stock 15), its image kept",
         (st, row))
    st, h, page = b.submit("/producer/catalogs/%d" % cid, "/producer/products/%d/delete" % prod, {})
    row = q1(inst, "SELECT active FROM market_products WHERE id = ?", prod)
    t.ok(st == 303 and row == (0,), "deleting deactivates the product and keeps the row", (st, row))
    st, h, body = srv.get("/producers/la-ferme-des-saules")
    t.ok("Carottes" not in body.decode(), "a deactivated product leaves the public page")
    f["active"] = "1"
    post_files(b, "/producer/products/%d" % prod, "/producer/products/%d" % prod, f, [])
    st, h, body = srv.get("/producers/la-ferme-des-saules")
    page = body.decode()
    t.ok('<ul class="products">' in page and "<strong>Carottes</strong>" in page and "3,20\u00a0€ TTC" in page
         and '<img src="/products/%d/image"' % prod in page, "an active product is on the public page, with its image", page[:2000])


def test_permissions(t, srv, inst, ctx):
    cid, prod = ctx["catalog"], ctx["product"]
    snapshot = q1(inst, "SELECT name, price_cents, active FROM market_products WHERE id = ?", prod)
    cora = login(srv, "cora@example.org")
    for who, b in (("another producer", ctx["dora"]), ("a coordinator", cora)):
        for method, path in (("GET", "/producer/catalogs/%d" % cid), ("GET", "/producer/products/%d" % prod),
                             ("GET", "/producer/catalogs/%d/export.csv" % cid),
                             ("GET", "/producer/catalogs/%d/products/new" % cid)):
            st, h, page = b.get(path)
            t.eq(st, 403, "%s cannot %s %s" % (who, method, path))
        page_with_token = "/account"
        for path, fields in (("/producer/products/%d" % prod, {"name": "Pirate", "unit": "kg", "price": "1", "vat": "20",
                                                                  "active": "1"}),
                             ("/producer/products/%d/delete" % prod, {}),
                             ("/producer/catalogs/%d/products/new" % cid, {"name": "Pirate", "unit": "kg", "price": "1",
                                                                           "vat": "20"}),
                             ("/producer/catalogs/%d" % cid, {"name": "Pirate"}),
                             ("/producer/catalogs/%d/groups" % cid, {})):
            st, h, page = b.submit(page_with_token, path, fields)
            t.eq(st, 403, "%s cannot POST %s" % (who, path))
        st, h, data = post_files(b, page_with_token, "/producer/catalogs/%d/import" % cid, {},
                                 [("file", "x.csv", "text/csv", "nom;prix;tva\nPirate;1;20\n".encode())])
        t.eq(st, 403, "%s cannot import into the catalog" % who)
    t.eq(q1(inst, "SELECT name, price_cents, active FROM market_products WHERE id = ?", prod), snapshot,
         "the product is unchanged")
    t.eq(q1(inst, "SELECT count(*) FROM market_products WHERE name = 'Pirate'")[0], 0, "nothing was added")
    st, h, page = cora.submit("/account", "/producer/catalogs", {"name": "Pirate"})
    t.ok(st == 303 and h.get("Location") == "/producer/signup", "a coordinator without a producer account cannot create catalogs")
    st, h, _ = Browser(srv.port).get("/producer/catalogs/%d" % cid)
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to the login page")
    t.eq(srv.get("/producer/catalogs/99999")[0], 303, "even for an unknown catalog")
    t.eq(ctx["alice"].get("/producer/catalogs/99999")[0], 404, "an unknown catalog is a 404")


def test_groups(t, srv, inst, ctx):
    pid, cid = ctx["alice_producer"], ctx["catalog"]
    now = "2024-01-01T00:00:00Z"
    gids = {}
    for slug, status in (("amap-du-marais", "accepted"), ("halle-de-rezé", None), ("epicerie-pending", "pending"),
                         ("refus", "declined"), ("libre", None)):
        slug = slug.replace("é", "e")
        gids[slug] = execute(inst, "INSERT INTO market_groups (slug, name, kind, join_policy, town, created_by, created_at) "
                                   "VALUES (?, ?, 'amap', 'open', 'Nantes', 1, ?) RETURNING id", slug, "Groupe " + slug, now)
        if status:
            execute(inst, "INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) VALUES (?, ?, ?, ?)",
                    gids[slug], pid, status, now)
    execute(inst, "INSERT INTO hl_user_roles (user_id, role, group_id) SELECT id, 4, ? FROM hl_users WHERE email = 'cora@example.org'",
            gids["amap-du-marais"])
    b = ctx["alice"]
    st, h, page = b.get("/producer/catalogs/%d" % cid)
    t.ok('name="group_%d"' % gids["amap-du-marais"] in page, "the catalog can be offered to the group that accepted the producer")
    t.ok(all('name="group_%d"' % gids[s] not in page for s in ("epicerie-pending", "refus", "libre")),
         "pending, declined and unknown groups are not offered")
    fields = {"group_%d" % g: "1" for g in gids.values()}
    st, h, page = b.submit("/producer/catalogs/%d" % cid, "/producer/catalogs/%d/groups" % cid, fields)
    rows = db(inst).execute("SELECT group_id FROM market_catalog_groups WHERE catalog_id = ?", (cid,)).fetchall()
    t.ok(st == 303 and rows == [(gids["amap-du-marais"],)], "only the accepted group is saved, whatever the form sends", rows)
    st, h, page = b.get("/producer/catalogs/%d" % cid)
    t.ok(re.search(r'name="group_%d" value="1" checked' % gids["amap-du-marais"], page), "the offer shows as checked")
    b.submit("/producer/catalogs/%d" % cid, "/producer/catalogs/%d/groups" % cid, {})
    t.eq(q1(inst, "SELECT count(*) FROM market_catalog_groups WHERE catalog_id = ?", cid)[0], 0, "unchecking withdraws the offer")
    b.submit("/producer/catalogs/%d" % cid, "/producer/catalogs/%d/groups" % cid, {"group_%d" % gids["amap-du-marais"]: "1"})

    # asking to join
    st, h, page = b.submit("/producer", "/producer/groups/ask", {"group": "https://example.org/groups/libre"})
    row = q1(inst, "SELECT status FROM market_group_producers WHERE group_id = ? AND producer_id = ?", gids["libre"], pid)
    t.ok(st == 303 and row == ("pending",), "a producer asks to join a group (pending)", (st, row))
    st, h, page = b.submit("/producer", "/producer/groups/ask", {"group": "libre"})
    t.ok(st == 409 and "en attente" in page, "asking twice is refused")
    st, h, page = b.submit("/producer", "/producer/groups/ask", {"group": "nulle-part"})
    t.ok(st == 422 and "n'existe pas" in html.unescape(page), "an unknown group is refused", (st, page[:300]))
    st, h, page = b.submit("/producer", "/producer/groups/ask", {"group": "refus"})
    t.eq(q1(inst, "SELECT status FROM market_group_producers WHERE group_id = ? AND producer_id = ?", gids["refus"], pid),
         ("pending",), "a declined producer may ask again")
    st, h, page = b.get("/producer")
    t.ok("Groupe amap-du-marais" in page and "accepté" in page and "en attente" in page, "the dashboard lists the groups")
    st, h, body = srv.get("/producers/la-ferme-des-saules")
    page = body.decode()
    t.ok("Groupe amap-du-marais" in page and "Groupe libre" not in page, "the public page lists the groups that accepted them")
    # the coordinator of the accepting group still cannot manage the catalog
    cora = login(srv, "cora@example.org")
    t.eq(cora.get("/producer/catalogs/%d" % cid)[0], 403, "the coordinator of a group that sells the catalog cannot manage it")


# ---- CSV --------------------------------------------------------------------------------

HEADER = "Référence;Nom;Description;Catégorie;Unité;Quantité;Prix;TVA;Bio;Stock\r\n"


def big_csv(n, price_shift=0):
    rng = random.Random(42)
    cats = ["Légumes", "fruits", "Œufs", "Pain et boulangerie", ""]
    units = ["kg", "pièce", "g", "L", "vrac"]
    lines = ["\ufeff" + HEADER]
    for i in range(1, n + 1):
        desc = '"Lot %d; récolte du jour, ""extra"""' % i if i % 7 == 0 else "Produit %d" % i
        cents = 100 + (i * 37) % 5000 + price_shift
        lines.append("P%05d;Produit n°%d;%s;%s;%s;%s;%d,%02d;%s;%s;%s\r\n" % (
            i, i, desc, cats[i % 5], units[i % 5], rng.choice(["1", "0,5", "0,25", "2"]), cents // 100, cents % 100,
            ["5,5", "20", "10", "2,1", "0"][i % 5], ["oui", "non", "x", ""][i % 4], "" if i % 3 else str(i % 40)))
    return "".join(lines).encode("utf-8")


def test_csv_rejected_whole(t, srv, inst, ctx):
    b, cid = ctx["alice"], ctx["catalog"]
    before = q1(inst, "SELECT count(*) FROM market_products WHERE catalog_id = ?", cid)[0]
    lines = ["nom;prix;tva;unite;categorie"]
    for i in range(1, 11):
        price, vat, unit = "2,50", "5,5", "kg"
        if i == 3:
            price = "12,5,0"
        if i == 6:
            vat = "7"
        if i == 9:
            unit = "boîte"
        lines.append("Produit %d;%s;%s;%s;legumes" % (i, price, vat, unit))
    data = ("\r\n".join(lines) + "\r\n").encode()
    st, h, body = post_files(b, "/producer/catalogs/%d" % cid, "/producer/catalogs/%d/import" % cid, {},
                             [("file", "produits.csv", "text/csv", data)])
    page = body.decode()
    page = html.unescape(page)
    t.ok(st == 422 and "Rien n'a été importé" in page, "a CSV with 3 wrong lines among 10 is rejected (422)", (st, page[:500]))
    for needle in ("ligne 4 : prix invalide « 12,5,0 »", "ligne 7 : taux de TVA invalide « 7 »", "ligne 10 : unité invalide « boîte »"):
        t.ok(needle in page, "the report names %s" % needle, page[page.find("<ul"):][:800])
    t.ok("ligne 2 " not in page and "ligne 5 " not in page, "good lines are not reported")
    t.eq(q1(inst, "SELECT count(*) FROM market_products WHERE catalog_id = ?", cid)[0], before, "nothing was imported")
    # more than 100 wrong lines: 100 listed, the rest counted
    many = ("nom;prix;tva\n" + "".join("P%d;abc;20\n" % i for i in range(150))).encode()
    st, h, body = post_files(b, "/producer/catalogs/%d" % cid, "/producer/catalogs/%d/import" % cid, {},
                             [("file", "many.csv", "text/csv", many)])
    page = html.unescape(body.decode())
    t.ok(st == 422 and page.count("<li>ligne ") == 100 and "… et 50 autres erreurs" in page,
         "a report lists 100 errors then counts the others", page[-600:])
    # Excel in French saves "CSV" in Windows-1252, with a tab or ';'
    cp = "Nom\tPrix\tTVA\tCatégorie\r\nPâté de campagne\t4,50 €\t5,5\tÉpicerie\r\n".encode("cp1252")
    st, h, body = post_files(b, "/producer/catalogs/%d" % cid, "/producer/catalogs/%d/import" % cid, {},
                             [("file", "excel.csv", "text/csv", cp)])
    row = q1(inst, "SELECT price_cents, category_id FROM market_products WHERE name = 'Pâté de campagne' AND catalog_id = ?", cid)
    t.ok(st == 200 and row == (450, 10), "a Windows-1252 tab-separated spreadsheet export is read", (st, row, body[-400:]))
    execute(inst, "DELETE FROM market_products WHERE name = 'Pâté de campagne'")
    path = inst.path("bad.csv")
    with open(path, "wb") as f:
        f.write(data)
    r = run(["market", "-c", inst.conf, "import", "--catalog", str(cid), path])
    t.ok(r.returncode == 1 and "ligne 4 : prix invalide « 12,5,0 »" in r.stderr and "rien n'a été importé" in r.stderr,
         "the command line rejects it too (exit 1, the report on stderr)", (r.returncode, r.stderr[-600:]))
    r = run(["market", "-c", inst.conf, "import", path])
    t.eq(r.returncode, 2, "the command without --catalog is a usage error")
    r = run(["market", "-c", inst.conf, "import", "--catalog", "424242", path])
    t.ok(r.returncode == 1 and "n'existe pas" in r.stderr, "an unknown catalog is refused", r.stderr)


def test_csv_10000(t, srv, inst, ctx):
    b = ctx["alice"]
    st, h, page = b.submit("/producer", "/producer/catalogs", {"name": "Gros catalogue"})
    cid = int(re.match(r"^/producer/catalogs/(\d+)", h.get("Location", "")).group(1))
    path = inst.path("big.csv")
    with open(path, "wb") as f:
        f.write(big_csv(10000))
    t0 = time.time()
    r = run(["market", "-c", inst.conf, "import", "--catalog", str(cid), path], timeout=120)
    took = time.time() - t0
    t.ok(r.returncode == 0 and "10000 produits importés" in r.stdout and "10000 créés" in r.stdout,
         "10,000 lines imported through `halle market import` (%.1f s)" % took, (r.returncode, r.stdout, r.stderr[-800:]))
    t.ok("import: 5000/10000 lignes vérifiées" in r.stderr and "import: 10000/10000 lignes vérifiées" in r.stderr,
         "progress of the check every 1000 lines on stderr", r.stderr[:400])
    t.ok("import: 5000/10000 lignes importées" in r.stderr and "import: 10000/10000 lignes importées" in r.stderr,
         "progress of the import on stderr")
    t.eq(len(re.findall(r"lignes vérifiées", r.stderr)), 10, "one progress line per 1000")
    t.eq(q1(inst, "SELECT count(*) FROM market_products WHERE catalog_id = ?", cid)[0], 10000, "10,000 products in the DB")
    row = q1(inst, "SELECT description, price_cents, vat_rate_bp, unit, category_id, organic, stock FROM market_products "
                   "WHERE catalog_id = ? AND ref = 'P00007'", cid)
    t.eq(row, ('Lot 7; récolte du jour, "extra"', 100 + 7 * 37, 1000, "g", 5, 0, None),
         "a quoted field with ';' inside, French decimals and the category name 'Œufs' are read right")
    row = q1(inst, "SELECT category_id, unit, stock, organic FROM market_products WHERE catalog_id = ? AND ref = 'P00003'", cid)
    t.eq(row, (9, "l", 3.0, 0), "category 'Pain et boulangerie', unit 'L' and stock read right")

    # the same file again: updates, no duplicates
    with open(path, "wb") as f:
        f.write(big_csv(10000, price_shift=1))
    r = run(["market", "-c", inst.conf, "import", "--catalog", str(cid), path], timeout=120)
    t.ok(r.returncode == 0 and "0 créés, 10000 mis à jour" in r.stdout, "re-importing updates the products", r.stdout + r.stderr[-300:])
    t.eq(q1(inst, "SELECT count(*) FROM market_products WHERE catalog_id = ?", cid)[0], 10000, "no duplicates")
    t.eq(q1(inst, "SELECT price_cents FROM market_products WHERE catalog_id = ? AND ref = 'P00007'", cid)[0], 100 + 7 * 37 + 1,
         "the prices are the new ones")
    ctx["big"] = cid

    # the list stays paginated and searchable
    t0 = time.time()
    st, h, page = b.get("/producer/catalogs/%d" % cid)
    took = time.time() - t0
    t.ok(st == 200 and "10000 résultat(s)" in page and "page 1 / 200" in page and page.count('href="/producer/products/') == 50
         and page.count("<tr>") == 51 and "<table" in page,
         "page 1 of 10,000 products lists 50 (%.2f s)" % took, page[:300])
    t.ok(took < 2, "the list answers fast with 10,000 products")
    st, h, page = b.get("/producer/catalogs/%d?q=P01234" % cid)
    t.ok(st == 200 and "1 résultat(s)" in page and "Produit n°1234" in page, "search by reference finds the product")
    st, h, page = b.get("/producer/catalogs/%d?q=n%%C2%%B09999" % cid)
    t.ok(st == 200 and "Produit n°9999" in page and "1 résultat(s)" in page, "search by name finds the product")
    st, h, page = b.get("/producer/catalogs/%d?q=100%%25" % cid)
    t.ok(st == 200 and "0 résultat(s)" in page, "LIKE wildcards in the search are taken literally")
    st, h, page = b.get("/producer/catalogs/%d?page=200" % cid)
    t.ok(st == 200 and "page 200 / 200" in page and page.count('href="/producer/products/') == 50, "the last page")
    st, h, body = srv.get("/producers/la-ferme-des-saules?q=Produit&page=3")
    t.ok(st == 200 and "page 3 / 200" in body.decode(), "the public page paginates the products too")


def test_export_round_trip(t, srv, inst, ctx):
    b, cid = ctx["alice"], ctx["big"]
    st, h, body = b.request("GET", "/producer/catalogs/%d/export.csv" % cid)
    t.ok(st == 200 and h.get("Content-Type") == "text/csv; charset=utf-8", "the export is text/csv; charset=utf-8",
         (st, h.get("Content-Type")))
    raw = body.encode("utf-8")
    t.ok(raw.startswith(b"\xef\xbb\xbf") and body.lstrip("\ufeff").startswith(HEADER.lower()),
         "it starts with a BOM and the header", body[:120])
    t.eq(body.count("\r\n"), 10001, "one line per product")
    t.ok('\r\nP00007;Produit n°7;"Lot 7; récolte du jour, ""extra""";Œufs;g;' in body and "\r\nP00009;Produit n°9;Produit 9;;vrac;" in body, "fields with ';' are quoted, French names",
         body[:400])
    path = inst.path("export.csv")
    with open(path, "wb") as f:
        f.write(raw)
    st, h, data = post_files(b, "/producer", "/producer/catalogs", {"name": "Copie"}, [])
    copy = int(re.match(r"^/producer/catalogs/(\d+)", h.get("Location", "")).group(1))
    st, h, data = post_files(b, "/producer/catalogs/%d" % copy, "/producer/catalogs/%d/import" % copy, {},
                             [("file", "export.csv", "text/csv", raw)])
    page = data.decode()
    t.ok(st == 200 and "10000 produits importés (10000 créés, 0 mis à jour)" in page, "the export imports into a new catalog (web)",
         (st, page[page.find("<main"):][:600]))
    cols = "ref, name, description, unit, quantity, price_cents, vat_rate_bp, organic, category_id, stock"
    a = db(inst).execute("SELECT %s FROM market_products WHERE catalog_id = ? ORDER BY ref" % cols, (cid,)).fetchall()
    c = db(inst).execute("SELECT %s FROM market_products WHERE catalog_id = ? ORDER BY ref" % cols, (copy,)).fetchall()
    t.ok(len(a) == 10000 and a == c, "the round trip keeps every field of every product",
         next(((x, y) for x, y in zip(a, c) if x != y), None))
    r = run(["market", "-c", inst.conf, "import", "--catalog", str(cid), path], timeout=120)
    t.ok(r.returncode == 0 and "0 créés, 10000 mis à jour" in r.stdout, "re-importing the export into its catalog updates it",
         r.stdout + r.stderr[-300:])
    t.eq(q1(inst, "SELECT count(*) FROM market_products WHERE catalog_id = ?", cid)[0], 10000, "still 10,000 products")


def main():
    t = Tap()
    inst = Instance()
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr):
        t.done()
    for email, name in (("alice@example.org", "Alice"), ("bob@example.org", "Bob"), ("cora@example.org", "Cora"),
                        ("dora@example.org", "Dora")):
        add_user(inst, email, name)
    # cora coordinates a group (the groups module's table, filled by hand here)
    gid = execute(inst, "INSERT INTO market_groups (slug, name, kind, join_policy, created_by, created_at) "
                        "VALUES ('cora-group', 'Le groupe de Cora', 'buying_group', 'open', 1, '2024-01-01T00:00:00Z') RETURNING id")
    execute(inst, "INSERT INTO hl_user_roles (user_id, role, group_id) SELECT id, 4, ? FROM hl_users WHERE email = 'cora@example.org'",
            gid)
    srv = Server(inst, workers=2, tap=t).start()
    ctx = {}
    try:
        for fn in (test_signup, test_coordinator_cannot_sign_up_someone_else, test_photos_and_public_page,
                   test_catalog_and_products, test_permissions, test_groups, test_csv_rejected_whole, test_csv_10000,
                   test_export_round_trip):
            t.run(fn, srv, inst, ctx)
    finally:
        srv.stop()
    errors = [line for line in srv.log_text().splitlines() if "ERROR" in line or "error" in line.split(" ")[:3]]
    t.ok(not [e for e in errors if "market" in e], "no market errors in the log", "\n".join(errors[-10:]))
    t.done()


if __name__ == "__main__":
    main()
