# The marketplace's demo data (`halle market seed-demo`) and its partners' JSON API: the seed's
# groups, producers with valid SIRETs, 100+ products and members, refused the second time;
# API tokens issued, listed and revoked from the command line and from the operators' page
# (stored only as hashes); 401 without a live token; pagination, filters, single items, JSON
# 404s; and no personal data in any answer.
import hashlib
import json
import os
import re
import sys
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run  # noqa: E402

MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
PASSWORD = "Prune-2026"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

# Every JSON answer the test reads, to scan them all for personal data at the end.
ANSWERS = []


def luhn_ok(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def market(inst, *args):
    return run(["market", "-c", inst.conf] + list(args))


def db_rows(inst, sql, *params):
    return inst.sql(sql, *params)


def api(srv, path, token=None, headers=None):
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    st, hdrs, body = srv.get(path, headers=h)
    text = body.decode("utf-8")
    ANSWERS.append(text)
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    return st, hdrs, doc


def add_token(t, inst, name):
    r = market(inst, "token", "add", name)
    lines = r.stdout.strip().splitlines()
    m = re.match(r"token (\d+) created", lines[0]) if lines else None
    tok = lines[-1].strip() if lines else ""
    t.ok(r.returncode == 0 and m and TOKEN_RE.match(tok), "token add %r prints its id and the token" % name,
         r.stdout + r.stderr)
    return (int(m.group(1)) if m else 0), tok


# ---- the demo data ---------------------------------------------------------------------------

def test_seed(t, inst):
    r = market(inst, "seed-demo")
    t.ok(r.returncode == 0 and "demo data created" in r.stdout and "115 products" in r.stdout,
         "seed-demo creates the demo data and says what", r.stdout + r.stderr)
    groups = db_rows(inst, "SELECT id, slug, kind, join_policy, town FROM market_groups")
    t.ok(len(groups) >= 3, "at least 3 groups", groups)
    t.ok(any(g[2] == "amap" for g in groups), "one of them is an AMAP")
    t.eq(sorted({g[3] for g in groups} & {"open", "approval", "waiting_list"}), ["approval", "open", "waiting_list"],
         "the groups have open, approval and waiting-list join policies")
    t.ok(all(g[4] for g in groups), "every group has a town")
    places = db_rows(inst, "SELECT DISTINCT group_id FROM market_places")
    t.eq(len(places), len(groups), "every group has a distribution place")

    producers = db_rows(inst, "SELECT id, siret, business_name, charter_version, charter_accepted_at, description, user_id "
                              "FROM market_producers")
    t.eq(len(producers), 6, "6 producers")
    t.ok(all(len(p[1]) == 14 and p[1].isdigit() and luhn_ok(p[1]) for p in producers),
         "their SIRETs have 14 digits and a valid Luhn key", [p[1] for p in producers])
    t.ok(all(luhn_ok(p[1][:9]) for p in producers), "their SIRENs are valid too")
    t.ok(all(p[3] and p[4] and p[5] for p in producers), "charter accepted, descriptions written")

    per = db_rows(inst, "SELECT producer_id, count(*) FROM market_products GROUP BY producer_id")
    total = sum(n for _, n in per)
    t.ok(total >= 100, "at least 100 products (%d)" % total)
    t.ok(len(per) == 6 and all(17 <= n <= 25 for _, n in per), "17 to 25 products for each producer", per)
    bad = db_rows(inst, "SELECT name FROM market_products WHERE price_cents <= 0 OR vat_rate_bp NOT IN (550, 1000, 2000) "
                        "OR category_id IS NULL OR unit NOT IN ('piece', 'kg', 'g', 'l', 'ml')")
    t.eq(bad, [], "every product has a price, a French VAT rate, a unit and a category")
    food = db_rows(inst, "SELECT count(*) FROM market_products WHERE vat_rate_bp = 550")[0][0]
    t.ok(food > 90, "food is at 5.5 %% VAT (%d products)" % food)
    t.ok(db_rows(inst, "SELECT count(*) FROM market_products WHERE organic = 1")[0][0] > 0, "some products are organic")
    french = db_rows(inst, "SELECT count(*) FROM market_products WHERE name LIKE '%è%' OR name LIKE '%é%' "
                           "OR name LIKE '%œ%' OR name LIKE '%â%'")[0][0]
    t.ok(french >= 10, "the products have French names (%d with accents)" % french)

    stray = db_rows(inst, "SELECT cg.catalog_id, cg.group_id FROM market_catalog_groups cg "
                          "JOIN market_catalogs c ON c.id = cg.catalog_id WHERE NOT EXISTS (SELECT 1 FROM "
                          "market_group_producers gp WHERE gp.group_id = cg.group_id AND gp.producer_id = c.producer_id "
                          "AND gp.status = 'accepted')")
    t.eq(stray, [], "catalogs are offered only to groups that accepted their producer")
    offered = db_rows(inst, "SELECT count(*) FROM market_catalog_groups")[0][0]
    t.ok(offered >= 6, "every catalog is offered to groups (%d offers)" % offered)

    statuses = dict(db_rows(inst, "SELECT status, count(*) FROM market_members WHERE role = 'member' GROUP BY status"))
    t.ok(statuses.get("active", 0) >= 3 and statuses.get("pending") and statuses.get("waiting"),
         "clients are members: active ones, one pending, one on the waiting list", statuses)
    coords = db_rows(inst, "SELECT count(*) FROM hl_user_roles WHERE role = 4 AND group_id > 0")[0][0]
    t.ok(coords >= 3, "every group has a coordinator (role 4 with its group)")
    t.eq(db_rows(inst, "SELECT count(*) FROM hl_user_roles WHERE role = 2")[0][0], 6, "the producers have the producer role")
    clients = db_rows(inst, "SELECT count(DISTINCT user_id) FROM hl_user_roles WHERE role = 1 AND user_id NOT IN "
                            "(SELECT user_id FROM market_producers)")[0][0]
    t.ok(clients >= 8, "8 clients (%d)" % clients)
    hashes = db_rows(inst, "SELECT DISTINCT password_hash FROM hl_users")
    t.eq(hashes, [("!",)], "demo accounts have an unusable password")

    before = db_rows(inst, "SELECT count(*) FROM market_products")[0][0]
    r = market(inst, "seed-demo")
    t.ok(r.returncode == 1 and "already" in r.stderr, "a second seed-demo is refused with a message", r.stderr)
    t.eq(db_rows(inst, "SELECT count(*) FROM market_products")[0][0], before, "and creates nothing")


# ---- tokens from the command line ---------------------------------------------------------------

def test_token_cli(t, inst, state):
    tid, tok = add_token(t, inst, "Application Panier local")
    tid2, tok2 = add_token(t, inst, "Ancien partenaire")
    t.ok(tok != tok2, "each token is new")
    r = market(inst, "token", "list")
    t.ok(r.returncode == 0 and "Application Panier local" in r.stdout and "Ancien partenaire" in r.stdout,
         "token list shows them", r.stdout)
    t.ok(tok not in r.stdout and tok2 not in r.stdout, "token list never shows a token")
    r = market(inst, "token", "revoke", str(tid2))
    t.ok(r.returncode == 0 and "revoked" in r.stdout, "token revoke", r.stdout + r.stderr)
    r = market(inst, "token", "list")
    line = [l for l in r.stdout.splitlines() if "Ancien partenaire" in l]
    t.ok(line and re.search(r"\d{4}-\d\d-\d\dT\S+Z\s*$", line[0]), "the list shows when it was revoked", r.stdout)
    r = market(inst, "token", "revoke", "999999")
    t.ok(r.returncode == 1 and "no token" in r.stderr, "revoking an unknown token fails", r.stderr)
    r = market(inst, "token", "revoke", "12abc")
    t.eq(r.returncode, 2, "a malformed id is a usage error")
    r = market(inst, "token", "add")
    t.ok(r.returncode == 2 and "usage" in r.stderr, "token add without a name: usage", r.stderr)
    r = market(inst, "token", "add", "x\x01y")
    t.eq(r.returncode, 1, "a name with a control character is refused")

    rows = db_rows(inst, "SELECT * FROM market_api_tokens")
    flat = " ".join(str(c) for row in rows for c in row)
    t.ok(tok not in flat and tok2 not in flat, "the tokens are not stored in clear")
    if t.sqlite_only("nor anywhere in the database file", "reads the SQLite file"):
        with open(inst.db, "rb") as f:
            data = f.read()
        t.ok(tok.encode() not in data, "nor anywhere in the database file")
    h = db_rows(inst, "SELECT token_hash FROM market_api_tokens WHERE id = ?", tid)
    t.eq(h[0][0] if h else None, hashlib.sha256(tok.encode()).hexdigest(), "only its SHA-256 is kept")
    state.update(token=tok, revoked=tok2, token_id=tid)


# ---- the API ------------------------------------------------------------------------------------

def test_auth(t, srv, inst, state):
    st, h, doc = api(srv, "/api/v1/products")
    t.ok(st == 401 and doc == {"error": "missing token"}, "no token: 401 missing token", (st, doc))
    t.ok((h.get("WWW-Authenticate") or "").startswith("Bearer"), "with WWW-Authenticate: Bearer")
    t.ok((h.get("Content-Type") or "").startswith("application/json"), "as JSON")
    st, h, doc = api(srv, "/api/v1/products", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    t.eq((st, doc), (401, {"error": "missing token"}), "another scheme counts as no token")
    st, h, doc = api(srv, "/api/v1/products", token="A" * 43)
    t.eq((st, doc), (401, {"error": "invalid or revoked token"}), "a wrong token: 401")
    st, h, doc = api(srv, "/api/v1/products", token="x" * 5000)
    t.eq(st, 401, "a huge token: 401")
    st, h, doc = api(srv, "/api/v1/products", token=state["token"] + "\"; DROP TABLE x")
    t.eq(st, 401, "a token with junk after it: 401")
    st, h, doc = api(srv, "/api/v1/products", token=state["revoked"])
    t.eq((st, doc), (401, {"error": "invalid or revoked token"}), "a revoked token: 401")
    st, h, doc = api(srv, "/api/v1/products", token=state["token"])
    t.ok(st == 200 and isinstance(doc, dict) and doc.get("total", 0) >= 100, "a valid token: 200", (st, str(doc)[:200]))
    t.eq(h.get("Cache-Control"), "no-store", "answers are not cached")
    used = db_rows(inst, "SELECT last_used_at FROM market_api_tokens WHERE id = ?", state["token_id"])
    t.ok(used and used[0][0], "the token's last use is recorded")
    st, h, doc = api(srv, "/api/v1/nothing-here", token=state["token"])
    t.ok(st == 404 and doc and "error" in doc, "unknown endpoints are JSON 404s")
    st, h, doc = api(srv, "/api/v1/nothing-here")
    t.eq(st, 401, "even those need a token")
    # revoked from the CLI while valid: refused at once
    tid, tok = add_token(t, inst, "Éphémère")
    t.eq(api(srv, "/api/v1/groups", token=tok)[0], 200, "a fresh token works")
    market(inst, "token", "revoke", str(tid))
    t.eq(api(srv, "/api/v1/groups", token=tok)[0], 401, "and not after its revocation")


def test_rate_limit(t, srv, inst):
    """600 requests a minute per token: a runaway partner gets 429 with Retry-After. Fixed
    one-minute windows: within two windows at most 1200 pass, so the 1201st is refused at the
    latest, whatever the clock."""
    import http.client
    tid, tok = add_token(t, inst, "Boucle")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    got = None
    for i in range(1201):
        conn.request("GET", "/api/v1/groups?per_page=1", headers={"Authorization": "Bearer " + tok})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status == 429:
            got = (i, resp.getheader("Retry-After"), json.loads(body))
            break
    conn.close()
    t.ok(got is not None and 600 <= got[0] <= 1200, "a token over 600 requests a minute gets a 429", got)
    if got:
        t.ok(got[1] and got[1].isdigit() and 1 <= int(got[1]) <= 60, "with Retry-After in seconds", got[1])
        t.ok("too many requests" in got[2].get("error", ""), "and a JSON error", got[2])
    t.eq(api(srv, "/api/v1/groups?per_page=1", token=tok)[0], 429, "the next one too, in that window")
    t.eq(api(srv, "/api/v1/groups?per_page=1", token=add_token(t, inst, "Autre")[1])[0], 200,
         "another token is not concerned")


def test_pagination(t, srv, state):
    tok = state["token"]
    st, h, p1 = api(srv, "/api/v1/products?per_page=10", tok)
    t.ok(st == 200 and len(p1["data"]) == 10 and p1["per_page"] == 10 and p1["page"] == 1,
         "per_page=10 gives 10 products", (st, str(p1)[:200]))
    t.ok(p1["total"] >= 100, "total counts them all (%s)" % p1.get("total"))
    st, h, p2 = api(srv, "/api/v1/products?per_page=10&page=2", tok)
    ids1 = {p["id"] for p in p1["data"]}
    ids2 = {p["id"] for p in p2["data"]}
    t.ok(st == 200 and len(ids2) == 10 and not ids1 & ids2 and p2["page"] == 2, "page 2 differs from page 1")
    total = p1["total"]
    last = (total + 9) // 10
    st, h, pl = api(srv, "/api/v1/products?per_page=10&page=%d" % last, tok)
    t.eq(len(pl["data"]), total - 10 * (last - 1), "the last page holds the rest")
    st, h, pe = api(srv, "/api/v1/products?per_page=10&page=%d" % (last + 1), tok)
    t.ok(st == 200 and pe["data"] == [] and pe["total"] == total, "past the end: an empty page")
    seen = set()
    for page in range(1, (total + 199) // 200 + 1):
        seen |= {p["id"] for p in api(srv, "/api/v1/products?per_page=200&page=%d" % page, tok)[2]["data"]}
    t.eq(len(seen), total, "per_page=200 walks every product once")
    st, h, d = api(srv, "/api/v1/products", tok)
    t.ok(d["per_page"] == 50 and len(d["data"]) == 50, "50 per page by default")
    for q in ("per_page=0", "per_page=201", "per_page=abc", "page=0", "page=-1", "page=1e3", "page=99999999999"):
        st, h, d = api(srv, "/api/v1/products?" + q, tok)
        t.ok(st == 400 and d and "error" in d, "%s is refused with a JSON 400" % q, (st, d))
    st, h, d = api(srv, "/api/v1/groups?per_page=2", tok)
    t.ok(st == 200 and len(d["data"]) == 2 and d["total"] >= 3, "groups are paginated too")


def test_products(t, srv, inst, state):
    tok = state["token"]
    st, h, d = api(srv, "/api/v1/products?per_page=1", tok)
    p = d["data"][0]
    t.ok(set(p["price"]) == {"price_cents", "vat_rate", "currency"} and p["price"]["currency"] == "EUR"
         and isinstance(p["price"]["price_cents"], int), "prices: cents, VAT rate, currency", p)
    t.ok(re.match(r"^\d+(\.\d+)?$", p["price"]["vat_rate"]), "the VAT rate is a decimal string", p["price"])
    t.ok(p["producer"]["slug"] and p["category"]["slug"], "a product names its producer and category")
    st, h, d = api(srv, "/api/v1/products?per_page=200&q=" + urllib.parse.quote("Poulet fermier entier"), tok)
    chick = d["data"][0] if d["data"] else {}
    t.eq(chick.get("price"), {"price_cents": 1150, "vat_rate": "5.5", "currency": "EUR"}, "a known price, as documented")
    st, h, d = api(srv, "/api/v1/products?per_page=200&q=Cidre", tok)
    t.ok(d["data"] and d["data"][0]["price"]["vat_rate"] == "20", "alcohol is at 20 % VAT")

    # producer
    st, h, d = api(srv, "/api/v1/products?per_page=200&producer=les-ruchers-de-saillans", tok)
    n = db_rows(inst, "SELECT count(*) FROM market_products p JOIN market_producers pr ON pr.id = p.producer_id "
                      "WHERE pr.slug = 'les-ruchers-de-saillans'")[0][0]
    t.ok(st == 200 and d["total"] == n and all(x["producer"]["slug"] == "les-ruchers-de-saillans" for x in d["data"]),
         "?producer= gives that producer's products only", (d["total"], n))
    # group: the beekeeper is only pending in the AMAP
    st, h, d = api(srv, "/api/v1/products?per_page=200&group=amap-du-plateau", tok)
    slugs = {x["producer"]["slug"] for x in d["data"]}
    accepted = {r[0] for r in db_rows(inst, "SELECT pr.slug FROM market_group_producers gp JOIN market_producers pr "
                                            "ON pr.id = gp.producer_id JOIN market_groups g ON g.id = gp.group_id "
                                            "WHERE g.slug = 'amap-du-plateau' AND gp.status = 'accepted'")}
    t.ok(st == 200 and slugs == accepted and d["total"] == len(d["data"]) > 0,
         "?group= gives the products of the producers the group accepted", (slugs, accepted))
    t.ok("les-ruchers-de-saillans" not in slugs, "not those of a producer still pending")
    # q
    st, h, d = api(srv, "/api/v1/products?per_page=200&q=miel", tok)
    t.ok(d["total"] >= 5 and all("miel" in (x["name"] + x["description"]).lower() for x in d["data"]),
         "?q= searches names and descriptions", [x["name"] for x in d["data"]])
    st, h, d = api(srv, "/api/v1/products?q=%25", tok)
    t.eq(d["total"], 0, "?q=% is searched literally, not as a wildcard")
    # category, with subcategories
    st, h, d = api(srv, "/api/v1/products?per_page=200&category=fromages", tok)
    t.ok(d["total"] > 5 and all(x["category"]["slug"] == "fromages" for x in d["data"]), "?category= filters")
    st, h, d2 = api(srv, "/api/v1/products?per_page=200&category=cremerie", tok)
    cats = {x["category"]["slug"] for x in d2["data"]}
    t.ok(cats == {"cremerie", "fromages"} and d2["total"] > d["total"], "a category includes its subcategories", cats)
    # combined
    st, h, d = api(srv, "/api/v1/products?per_page=200&group=la-ferme-des-tilleuls&category=oeufs&q=cane", tok)
    t.ok(st == 200 and d["total"] == 1 and "cane" in d["data"][0]["name"], "filters combine", d)
    # bad filters
    for q, want in (("group=nope", 404), ("producer=nope", 404), ("category=nope", 404), ("group=Bad%20Slug", 400),
                    ("producer=" + "a" * 61, 400), ("q=" + "x" * 201, 400), ("q=%FF", 400)):
        st, h, d = api(srv, "/api/v1/products?" + q, tok)
        t.ok(st == want and d and "error" in d, "?%s: JSON %d" % (q[:30], want), (st, d))
    # single product
    pid = chick.get("id", 0)
    st, h, d = api(srv, "/api/v1/products/%d" % pid, tok)
    t.ok(st == 200 and d.get("name") == "Poulet fermier entier" and d.get("unit") == "kg", "GET /products/ID", d)
    st, h, d = api(srv, "/api/v1/products/99999999", tok)
    t.eq((st, d), (404, {"error": "no such product"}), "an unknown product: JSON 404")
    inst.sql("UPDATE market_products SET active = 0 WHERE id = ?", pid)
    t.eq(api(srv, "/api/v1/products/%d" % pid, tok)[0], 404, "an inactive product is not shown")
    st, h, d = api(srv, "/api/v1/products?per_page=200&q=" + urllib.parse.quote("Poulet fermier entier"), tok)
    t.eq(d["total"], 0, "nor listed")


def test_groups_producers_catalogs(t, srv, inst, state):
    tok = state["token"]
    st, h, d = api(srv, "/api/v1/groups", tok)
    slugs = [g["slug"] for g in d["data"]]
    t.ok(st == 200 and "amap-du-plateau" in slugs and d["total"] == 3, "GET /groups", slugs)
    st, h, d = api(srv, "/api/v1/groups?q=Crest", tok)
    t.eq([g["slug"] for g in d["data"]], ["les-paniers-de-la-vallee"], "?q= searches towns")
    st, h, d = api(srv, "/api/v1/groups?q=amap", tok)
    t.eq([g["slug"] for g in d["data"]], ["amap-du-plateau"], "?q= searches names")
    st, h, g = api(srv, "/api/v1/groups/amap-du-plateau", tok)
    t.ok(st == 200 and g["kind"] == "amap" and g["join_policy"] == "waiting_list" and g["places"]
         and len(g["producers"]) == 4, "GET /groups/SLUG with places and accepted producers", g)
    st, h, d = api(srv, "/api/v1/groups/no-such-group", tok)
    t.eq((st, d), (404, {"error": "no such group"}), "an unknown group: JSON 404")
    t.ok(h.get("Content-Type", "").startswith("application/json"), "as JSON")

    st, h, d = api(srv, "/api/v1/producers", tok)
    t.ok(st == 200 and d["total"] == 6, "GET /producers")
    t.ok(all(luhn_ok(p["siret"]) for p in d["data"]), "with their SIRETs")
    st, h, d = api(srv, "/api/v1/producers?group=la-ferme-des-tilleuls", tok)
    t.eq(d["total"], 4, "?group= gives the group's accepted producers")
    st, h, d = api(srv, "/api/v1/producers?group=amap-du-plateau", tok)
    t.ok("les-ruchers-de-saillans" not in [p["slug"] for p in d["data"]], "a pending producer is not among them")
    st, h, d = api(srv, "/api/v1/producers?q=Saillans", tok)
    t.eq([p["slug"] for p in d["data"]], ["les-ruchers-de-saillans"], "?q= searches producers")
    st, h, p = api(srv, "/api/v1/producers/les-vergers-de-la-bourne", tok)
    t.ok(st == 200 and p["business_name"] == "Les Vergers de la Bourne" and p["catalogs"] and len(p["groups"]) == 2,
         "GET /producers/SLUG with groups and catalogs", p)
    t.eq(api(srv, "/api/v1/producers/personne", tok)[:3:2], (404, {"error": "no such producer"}),
         "an unknown producer: JSON 404")

    st, h, d = api(srv, "/api/v1/catalogs", tok)
    t.ok(st == 200 and d["total"] == 6 and all(c["producer"]["slug"] and c["groups"] for c in d["data"]),
         "GET /catalogs names producers and groups")
    st, h, d = api(srv, "/api/v1/catalogs?producer=la-chevrerie-des-combes", tok)
    t.ok(d["total"] == 1 and d["data"][0]["products"] == 18, "?producer= filters catalogs", d)
    cid = d["data"][0]["id"]
    st, h, c = api(srv, "/api/v1/catalogs/%d" % cid, tok)
    t.ok(st == 200 and c["id"] == cid and sorted(c["groups"]) == ["amap-du-plateau", "la-ferme-des-tilleuls"],
         "GET /catalogs/ID", c)
    t.eq(api(srv, "/api/v1/catalogs/424242", tok)[0], 404, "an unknown catalog: 404")


def json_keys(v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(k)
            json_keys(x, out)
    elif isinstance(v, list):
        for x in v:
            json_keys(x, out)
    return out


def test_privacy(t, inst):
    emails = [r[0] for r in db_rows(inst, "SELECT email FROM hl_users")]
    names = [r[0] for r in db_rows(inst, "SELECT name FROM hl_users")]
    text = "\n".join(ANSWERS)
    keys = set()
    for a in ANSWERS:
        json_keys(json.loads(a), keys)
    t.ok(len(ANSWERS) > 50 and len(text) > 20000, "many answers were collected (%d)" % len(ANSWERS))
    t.ok(not any(e in text for e in emails), "no user's e-mail address in any answer")
    t.ok("email" not in text and "password" not in text and "@" not in text, "no e-mail or password anywhere")
    t.ok(not any(n in text for n in names), "no user's name either")
    t.eq(sorted(keys & {"user_id", "created_by", "plan", "vat_number", "address_line", "phone", "members"}), [],
         "no account links, plans or member lists")
    prod = set()
    for a in ANSWERS:
        d = json.loads(a)
        for item in (d.get("data") or [d]) if isinstance(d, dict) else []:
            if isinstance(item, dict) and "siret" in item:
                prod |= set(item)
    t.ok(prod and prod <= {"id", "slug", "business_name", "siret", "description", "postcode", "town", "groups",
                           "catalogs"}, "producers: public business fields only", sorted(prod))


# ---- the operators' page -------------------------------------------------------------------------

def login(srv, email):
    b = Browser(srv.port)
    st, h, page = b.submit("/login", "/login", {"email": email, "password": PASSWORD})
    return b, st


def test_admin_page(t, srv, inst, state):
    for email, extra in (("op@example.org", ["--operator"]), ("client@example.org", [])):
        r = run(["user", "-c", inst.conf, "add", email, "--name", "Testeur"] + extra,
                env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "halle user add %s" % email, r.stderr)
    visitor = Browser(srv.port)
    st, h, page = visitor.get("/admin/market/tokens")
    t.ok(st in (302, 303) and h.get("Location") == "/login", "visitors are sent to the login page", st)

    client, st = login(srv, "client@example.org")
    t.eq(st, 303, "the client logs in")
    st, h, page = client.get("/admin/market/tokens")
    t.eq(st, 403, "a client may not see the tokens page")
    st, h, page = client.submit("/account", "/admin/market/tokens", {"name": "Pirate"})
    t.eq(st, 403, "nor create a token")
    st, h, page = client.submit("/account", "/admin/market/tokens/%d/revoke" % state["token_id"], {})
    t.eq(st, 403, "nor revoke one")

    op, st = login(srv, "op@example.org")
    t.eq(st, 303, "the operator logs in")
    st, h, page = op.get("/admin/market/tokens")
    t.ok(st == 200 and "Jetons de l" in page and "Application Panier local" in page and 'name="_csrf"' in page,
         "the operator sees the tokens page, with the tokens", (st, page[:300]))
    t.ok(state["token"] not in page, "the list never shows a token")
    st, h, page = op.request("POST", "/admin/market/tokens", form={"name": "Sans CSRF"})
    t.eq(st, 403, "creating without the CSRF token is refused")
    st, h, page = op.submit("/admin/market/tokens", "/admin/market/tokens", {"name": ""})
    t.ok(st == 422 and "Indiquez un nom" in page, "an empty name: 422 with the form", (st, page[:300]))
    st, h, page = op.submit("/admin/market/tokens", "/admin/market/tokens", {"name": "Carte des AMAP <b>"})
    m = re.search(r'id="token-value"[^>]*value="([A-Za-z0-9_-]{43})"', page)
    t.ok(st == 201 and m and "ne sera plus jamais affiché" in page, "creating shows the token once", (st, page[:500]))
    t.ok("<b>" not in page and "&lt;b&gt;" in page, "the name is escaped")
    t.eq(h.get("Cache-Control"), "no-store", "the page with the token is not cached")
    tok = m.group(1) if m else ""
    t.eq(api(srv, "/api/v1/groups", tok)[0], 200, "the new token works")
    flat = " ".join(str(c) for row in db_rows(inst, "SELECT * FROM market_api_tokens") for c in row)
    t.ok(tok and tok not in flat, "and is not stored in clear")
    st, h, page = op.get("/admin/market/tokens")
    m = re.search(r'<tr data-token="(\d+)">\s*<td>\d+</td>\s*<td>Carte des AMAP &lt;b&gt;</td>', page)
    t.ok(st == 200 and m and tok not in page, "it is listed, without the token")
    new_id = int(m.group(1)) if m else 0
    st, h, page = op.get("/admin/market/tokens?q=" + urllib.parse.quote("Carte"))
    t.ok("Carte des AMAP" in page and "Application Panier local" not in page, "the list is searchable")
    st, h, page = op.request("POST", "/admin/market/tokens/%d/revoke" % new_id, form={})
    t.eq(st, 403, "revoking without the CSRF token is refused")
    t.eq(api(srv, "/api/v1/groups", tok)[0], 200, "so the token still works")
    st, h, page = op.submit("/admin/market/tokens", "/admin/market/tokens/%d/revoke" % new_id, {})
    t.ok(st == 303 and h.get("Location") == "/admin/market/tokens", "the operator revokes it", st)
    t.eq(api(srv, "/api/v1/groups", tok)[0], 401, "then it no longer works")
    st, h, page = op.get("/admin/market/tokens")
    t.ok(re.search(r"révoqué le \d{4}-", page), "the list shows it revoked")
    st, h, page = op.submit("/admin/market/tokens", "/admin/market/tokens/987654/revoke", {})
    t.eq(st, 404, "revoking an unknown token: 404")


def main():
    t = Tap()
    if not os.path.exists(os.path.join(MARKET_DIR, "market.so")):
        t.ok(False, "the market plugin is built in %s" % MARKET_DIR)
        t.done()
    inst = Instance()
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit=1000)
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    t.ok(r.returncode == 0, "the market plugin is enabled", r.stdout + r.stderr)
    state = {}
    t.run(test_seed, inst)
    t.run(test_token_cli, inst, state)
    srv = Server(inst, workers=2, tap=t)
    try:
        srv.start()
        if state.get("token"):
            t.run(test_auth, srv, inst, state)
            t.run(test_rate_limit, srv, inst)
            t.run(test_pagination, srv, state)
            t.run(test_products, srv, inst, state)
            t.run(test_groups_producers_catalogs, srv, inst, state)
            t.run(test_privacy, inst)
            t.run(test_admin_page, srv, inst, state)
    finally:
        srv.stop()
    t.done()


if __name__ == "__main__":
    main()
