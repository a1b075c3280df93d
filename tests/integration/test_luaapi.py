# The SDK from Lua, against the real server with the luasdk test plugin: every Lua twin that
# core/luaplugin.c's one list names (HL_TWIN "halle.x", HL_REQ "req.x") is really there in a
# plugin's state; tr, req_lang and {{_ }} tags of the plugin's templates follow the page's
# language; prices and dates per language; db.tx commits, rolls back on false and on error;
# a plugin's own hooks (declare_hook) run through run_filter (value changed, then refused) and
# run_action; the search over a folded column finds "Épeautre" with "epeautre" and takes '%'
# literally.
import json
import os
import re
import sys
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run, SRC_DIR  # noqa: E402

LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")
NBSP, EURO = "\u00a0", "\u20ac"
PASSWORD = "Sp1der-Web!x"


def get_json(b, path):
    st, h, body = b.get(path)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def twins():
    with open(os.path.join(SRC_DIR, "core", "luaplugin.c"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r'HL_(?:TWIN|REQ)\("([a-z_0-9]+)", "([a-z_.0-9]+)"\)', text)


def test_names(t, srv):
    b = Browser(srv.port)  # logged in: req.user is there for users only
    st, h, page = b.submit("/login", "/login", {"email": "lise@example.org", "password": PASSWORD})
    t.eq(st, 303, "a user logs in")
    st, names = get_json(b, "/luasdk/names")
    t.eq(st, 200, "the plugin lists what it sees")
    seen = set(names["halle"]) | set(names["req"])
    pairs = twins()
    t.ok(len(pairs) > 30, "the list of twins is parsed from core/luaplugin.c", len(pairs))
    missing = ["%s -> %s" % p for p in pairs if p[1] not in seen]
    t.eq(missing, [], "every Lua twin of a C API member is in a Lua plugin's state")
    for fn in ("halle.tr", "halle.req_lang", "halle.db.tx", "halle.declare_hook", "halle.run_filter",
               "halle.run_action", "halle.format_price", "halle.format_date", "halle.fold", "halle.paginate",
               "halle.job"):
        t.ok(fn in seen, "Lua has %s" % fn, sorted(seen))


def test_language(t, srv):
    fr, en = Browser(srv.port), Browser(srv.port)
    en.cookies["halle_lang"] = "en"
    epoch = 1795608000  # Wednesday 25 November 2026
    st, j = get_json(fr, "/luasdk/format?cents=123450&epoch=%d" % epoch)
    t.eq(st, 200, "format route (French)")
    t.eq(j["lang"], "fr", "req_lang: fr by default")
    t.eq(j["price"], "1\u202f234,50" + NBSP + EURO, "a French price")
    t.eq(j["price_en"], EURO + "1,234.50", "an explicit language wins")
    t.eq(j["date"], "mercredi 25 novembre 2026", "a French date")
    t.eq(j["tr"], "Rechercher", "tr in French is the source text")
    st, j = get_json(en, "/luasdk/format?cents=1250&epoch=%d" % epoch)
    t.eq(j["lang"], "en", "req_lang: en with the language cookie")
    t.eq(j["price"], EURO + "12.50", "an English price")
    t.eq(j["number"], "1,234.5", "an English number")
    t.eq(j["date"], "Wednesday, 25 November 2026", "an English date")
    t.eq(j["tr"], "Search", "tr translates into the page's language")
    st, j = get_json(en, "/luasdk/format?text=" + urllib.parse.quote("  Épeautre  BIO 100%"))
    t.eq((j["fold"], j["like"], j["valid"]), ("epeautre bio 100%", "%epeautre bio 100\\%%", 20),
         "fold, like_pattern and text_valid")
    st, j = get_json(en, "/luasdk/format?text=" + urllib.parse.quote("a\x01b"))
    t.eq(j["valid"], False, "text_valid refuses control characters")

    st, h, page = en.get("/luasdk/page?page=2")
    t.ok(st == 200 and '<p class="search">Search</p>' in page and "<span>Previous</span>" in page,
         "the plugin's template is translated ({{_ }} tags) on an English page", page)
    t.ok(EURO + "12.50" in page and '<a href="/luasdk/page?page=2" class="current">2</a>' in page
         and page.count("<a ") == 4, "prices and page links from the SDK", page)
    st, h, page = fr.get("/luasdk/page?page=2")
    t.ok('<p class="search">Rechercher</p>' in page and "<span>Précédente</span>" in page
         and "12,50" + NBSP + EURO in page, "the same template in French", page)


def test_tx_hooks_search(t, inst, srv):
    b = Browser(srv.port)
    st, j = get_json(b, "/luasdk/tx?name=" + urllib.parse.quote("Épeautre bio"))
    t.eq((st, j), (200, {"committed": True}), "db.tx commits")
    st, j = get_json(b, "/luasdk/tx?mode=false&name=Seigle")
    t.eq((st, j), (200, {"committed": False}), "db.tx rolls back when the function returns false")
    st, h, body = b.get("/luasdk/tx?mode=error&name=Orge")
    t.eq(st, 500, "an error inside db.tx fails the request")
    rows = inst.sql("SELECT name, name_folded FROM luasdk_notes ORDER BY id")
    events = [r[0] for r in inst.sql("SELECT what FROM luasdk_events ORDER BY id")]
    t.eq(rows, [("Épeautre bio", "epeautre bio")], "only the committed row is stored, with its folded key")
    t.eq(events, ["noted Épeautre bio"], "run_action ran the plugin's own action, inside the transaction")

    for q, want in (("epeautre", 1), ("EPEAUTRE", 1), ("Épeautre", 1), ("peau", 1), ("%", 0), ("_", 0), ("orge", 0)):
        st, j = get_json(b, "/luasdk/search?q=" + urllib.parse.quote(q))
        t.eq(j["count"], want, "search %r over the folded column" % q)

    st, j = get_json(b, "/luasdk/filter?cents=1000")
    t.eq(j, {"cents": 1100}, "run_filter: the plugin's filter changed the value")
    st, j = get_json(b, "/luasdk/filter?cents=20000")
    t.eq(j, {"stopped": "trop cher"}, "run_filter: a callback refused, with its message")


def main():
    t = Tap()
    inst = Instance()
    inst.set(plugin_dirs=LUA_DIR)
    r = run(["user", "-c", inst.conf, "add", "lise@example.org", "--name", "Lise"], env={"HALLE_USER_PASSWORD": PASSWORD})
    t.eq(r.returncode, 0, "user add")
    r = run(["plugin", "-c", inst.conf, "enable", "luasdk"])
    t.ok(r.returncode == 0, "the luasdk plugin is enabled", r.stdout + r.stderr)
    srv = Server(inst, workers=1, tap=t).start()
    try:
        t.run(test_names, srv)
        t.run(test_language, srv)
        t.run(test_tx_hooks_search, inst, srv)
    finally:
        srv.stop()
    t.done()


if __name__ == "__main__":
    main()
