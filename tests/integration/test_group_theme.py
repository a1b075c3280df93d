# A local group's look (themes issue, "local groups"): its coordinator picks the group's theme
# and sets a logo (type by magic bytes, size), colours (#rrggbb, contrast with white text), a
# banner, an intro in Markdown (rendered without raw HTML or javascript: links) and social
# profile links (https only), with a preview that stores nothing. The public page shows them,
# its colours come from /groups/SLUG/style.css (no inline style: the CSP forbids it), the logo
# from /groups/SLUG/logo. Another group's coordinator and a forged form are refused. Last,
# headless Chromium (tests/browser/group_theme.mjs) checks the header's colour and the banner
# on the page and keeps a screenshot in $HALLE_BUILDDIR/tests/artefacts/group-theme.png;
# HALLE_SKIP_BROWSER=1 skips only that part.
import html
import http.client
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, SRC_DIR, Browser, Instance, Server, Tap, multipart_body, run  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
BROWSER_DIR = os.path.join(SRC_DIR, "tests", "browser")
BROWSER_TIMEOUT = 40
LOGO_REFUSED = "Le logo doit être une image PNG, JPEG ou WebP de 1 Mo au plus."
PRIMARY, ACCENT = "#7a1f5c", "#1f4d7a"
OTHER_PRIMARY, OTHER_ACCENT = "#0b5d1e", "#5d3a0b"


def png(width, height, pixels):
    """A real PNG (8-bit RGB, no filter) of the given pixel bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    row = width * 3
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 0 if len(raw) > 100000 else 9)) + chunk(b"IEND", b""))


SMALL_PNG = png(16, 16, bytes([0x7a, 0x1f, 0x5c]) * 256)
BIG_PNG = png(1024, 700, os.urandom(1024 * 700 * 3))  # about 2 MB, a valid image
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"


def db_rows(inst, sql, args=()):
    return inst.sql(sql, *args)


def look(inst, slug):
    return db_rows(inst, "SELECT theme, color_primary, color_accent, banner, intro, social, logo_type, length(logo) "
                         "FROM market_groups WHERE slug = ?", (slug,))[0]


def login(t, port, who):
    b = Browser(port)
    st, h, page = b.submit("/login", "/login", {"email": "%s@example.org" % who, "password": PASSWORD})
    t.ok(st == 303, "%s logs in" % who, (st, page[:300]))
    return b


def create(t, b, name):
    fields = {"name": name, "description": "Des légumes du coin.", "kind": "buying_group", "join_policy": "open",
              "address": "1 place du Marché", "postcode": "44000", "town": "Nantes"}
    st, h, page = b.submit("/groups/new", "/groups/new", fields)
    m = re.match(r"^/groups/([a-z0-9-]+)/admin\?done=created$", h.get("Location") or "")
    t.ok(st == 303 and m, "group %r created" % name, (st, page[:300]))
    return m.group(1)


LOOK = {"theme": "", "color_primary": PRIMARY, "color_accent": ACCENT, "banner": "", "intro": "",
        "facebook": "", "instagram": "", "mastodon": "", "website": ""}


def post_look(b, slug, fields=None, files=(), csrf=True, token_from=None):
    """The appearance form as a browser sends it: multipart, with the CSRF token of the group's
    admin page (or of token_from, a page the user may open)."""
    form = dict(LOOK, **(fields or {}))
    if csrf is True:
        st, h, page = b.get(token_from or "/groups/%s/admin" % slug)
        form["_csrf"] = b.csrf(page)
    elif csrf:
        form["_csrf"] = csrf
    ctype, body = multipart_body(form, list(files))
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=60)
    try:
        conn.request("POST", "/groups/%s/admin/appearance" % slug, body=body, headers={
            "Content-Type": ctype, "Cookie": "; ".join("%s=%s" % kv for kv in b.cookies.items())})
        resp = conn.getresponse()
        return resp.status, resp.headers, html.unescape(resp.read().decode("utf-8", "replace"))
    finally:
        conn.close()


def saved(t, st, h, slug, what):
    return t.ok(st == 303 and h.get("Location") == "/groups/%s?done=appearance" % slug,
                "%s: saved, back to the group's page" % what, (st, h.get("Location")))


# ---- the form and its checks ---------------------------------------------------------------------

def admin_form(t, srv, inst, s):
    st, h, page = s["alice"].get("/groups/%s/admin" % s["a"])
    form = re.search(r'<form[^>]*action="/groups/%s/admin/appearance(#[a-z]+)?"[^>]*>' % s["a"], page)
    t.ok(st == 200 and form and 'enctype="multipart/form-data"' in form.group(0),
         "the admin page has the appearance form, multipart", form and form.group(0))
    t.ok('name="preview"' in page and ">Aperçu<" in page and ">Enregistrer<" in page,
         "the form has the Aperçu and Enregistrer buttons")
    t.ok('<option value="marche"' in page and '<option value="default"' in page and '<option value=""' in page,
         "the theme list holds the installed themes and the site's")
    for name in ("color_primary", "color_accent", "banner", "intro", "logo", "facebook", "instagram", "mastodon",
                 "website", "site_colors"):
        t.ok('name="%s"' % name in page, "the form has the %s field" % name)


def bad_values(t, srv, inst, s):
    alice, a = s["alice"], s["a"]
    before = look(inst, a)
    for colour in ("#12345", "red", "#zzzzzz", "#1234567", "rgb(0,0,0)"):
        st, h, page = post_look(alice, a, {"color_primary": colour})
        t.ok(st == 422 and "La couleur principale doit s'écrire #rrggbb" in page,
             "primary colour %r refused with 422 and a clear message" % colour, (st, page[-600:]))
    st, h, page = post_look(alice, a, {"color_accent": "blue"})
    t.ok(st == 422 and "La couleur d'accent doit s'écrire #rrggbb" in page, "accent colour 'blue' refused", st)
    st, h, page = post_look(alice, a, {"color_primary": "#ffff00"})
    t.ok(st == 422 and "trop claire" in page and "texte blanc" in page and "1,07:1" in page and "4,5:1" in page,
         "a yellow primary is refused: white text on it has a 1.07:1 contrast, 4.5:1 is needed", (st, page[-800:]))
    st, h, page = post_look(alice, a, {"color_primary": "#767676"})
    t.ok(st == 303, "#767676 (4.54:1 with white) is accepted", (st, page[-400:]))
    st, h, page = post_look(alice, a, {"color_primary": "#777777"})
    t.ok(st == 422 and "4,48:1" in page, "#777777 (4.48:1 with white) is refused", (st, page[-400:]))
    st, h, page = post_look(alice, a, {"color_accent": "#f0a500"})
    t.ok(st == 422 and "trop claire" in page, "a light accent is refused (links on the light page)", st)
    for theme in ("nope", "../default", "marche/../../etc"):
        st, h, page = post_look(alice, a, {"theme": theme})
        t.ok(st == 422 and "Ce thème n'est pas installé" in page, "the unknown theme %r is refused" % theme, st)
    st, h, page = post_look(alice, a, {"banner": "x" * 201})
    t.ok(st == 422 and "Bandeau" in page and "200" in page, "a 201-character banner is refused", st)
    st, h, page = post_look(alice, a, {"banner": "deux\nlignes"})
    t.ok(st == 422 and "une seule ligne" in page, "a banner on two lines is refused", st)
    st, h, page = post_look(alice, a, {"intro": "y" * 20001})
    t.ok(st == 422 and "20000" in page, "an intro over 20,000 characters is refused", st)
    for field, link in (("facebook", "http://www.facebook.com/paniers"), ("website", "javascript:alert(1)"),
                        ("instagram", "www.instagram.com/paniers"), ("mastodon", "https://evil.example@mastodon.social/@x"),
                        ("website", "https://example.org/\"><script>"), ("website", "https://example.org/" + "a" * 300)):
        st, h, page = post_look(alice, a, {field: link})
        t.ok(st == 422 and "https://" in page and "ou rester vide" in page and 'value="%s"' % link not in page,
             "the %s link %r is refused with a clear message" % (field, link[:50]), (st, page[-500:]))
    for what, files in (("a GIF", [("logo", "logo.gif", "image/gif", GIF)]),
                        ("a text file named logo.png", [("logo", "logo.png", "image/png", b"Je ne suis pas une image.\n")]),
                        ("a 2 MB PNG", [("logo", "grand.png", "image/png", BIG_PNG)])):
        st, h, page = post_look(alice, a, {}, files)
        t.ok(st == 422 and LOGO_REFUSED in page, "%s as logo: refused with 422 and the clear message" % what,
             (st, len(BIG_PNG), page[-500:]))
    after = look(inst, a)
    t.eq(after[6:], (None, None), "no refused logo was stored")
    t.eq((after[0],) + after[3:6], (before[0],) + before[3:6], "refused forms stored no theme, banner, intro or link")


# ---- saving, the page, the files ---------------------------------------------------------------------

INTRO = ("Bonjour, nous sommes **bold** et *fiers*.\n\n<script>alert('intro')</script>\n\n"
         "[piège](javascript:alert(1)) et [notre site](https://paniers.example.org/a?b=1&c=2)\n\n"
         "<img src=x onerror=alert(2)>\n")


def save_and_show(t, srv, inst, s):
    alice, a = s["alice"], s["a"]
    st, h, page = post_look(alice, a, {"banner": "Distribution le jeudi à 18 h", "intro": INTRO,
                                       "facebook": "https://www.facebook.com/paniers", "mastodon": "https://mastodon.social/@paniers"},
                            [("logo", "logo.png", "image/png", SMALL_PNG)])
    saved(t, st, h, a, "colours, banner, intro, links and logo")
    row = look(inst, a)
    t.eq(row[1:4], (PRIMARY, ACCENT, "Distribution le jeudi à 18 h"), "db: the colours and the banner are stored")
    t.eq(json.loads(row[5]), {"facebook": "https://www.facebook.com/paniers", "mastodon": "https://mastodon.social/@paniers"},
         "db: the social links are stored as a JSON object")
    t.eq(row[6:], ("image/png", len(SMALL_PNG)), "db: the logo is stored with its type")
    st, h, raw = srv.get("/groups/%s" % a)
    page = raw.decode("utf-8")
    t.ok(st == 200 and "Apparence enregistrée." not in page and "Distribution le jeudi à 18 h" in html.unescape(page),
         "the public page shows the banner", st)
    t.ok("<strong>bold</strong>" in page and "<em>fiers</em>" in page, "the Markdown intro is rendered (**bold**)")
    t.ok("alert('intro')" not in page and "<script" not in page and "onerror" not in page,
         "raw HTML of the intro (script, img onerror) is dropped")
    t.ok("javascript:" not in page, "the javascript: link is dropped")
    t.ok('href="https://paniers.example.org/a?b=1&amp;c=2"' in page, "an https link of the intro is kept")
    t.ok(re.search(r'<a href="https://www\.facebook\.com/paniers" rel="me noopener">Facebook</a>', page) and
         re.search(r'<a href="https://mastodon\.social/@paniers" rel="me noopener">Mastodon</a>', page),
         "the social profile links are shown, rel=\"me noopener\"")
    t.ok(re.search(r'<img class="market-logo" src="/groups/%s/logo\?v=%d" alt="Les Paniers du Lac">' % (a, len(SMALL_PNG)), page),
         "the logo is shown with the group's name as alt text")
    t.ok('<meta property="og:image" content="http://halle.test/groups/%s/logo">' % a in page,
         "the logo is the page's og:image, at the site's address")
    links = re.findall(r'<link rel="stylesheet" href="([^"]+)">', page)
    t.ok(len(links) == 2 and links[0] == "/static/halle.css" and links[1].startswith("/groups/%s/style.css" % a),
         "the page links the group's stylesheet after the site's", links)
    t.ok(' style="' not in page and "<style" not in page, "no inline style on the page")
    st, h, page = s["alice"].get("/groups/%s?done=appearance" % a)
    t.ok("Apparence enregistrée." in page, "after saving, the coordinator reads that it is saved")

    st, h, body = srv.get("/groups/%s/logo" % a)
    t.ok(st == 200 and h.get("Content-Type") == "image/png" and body == SMALL_PNG,
         "GET /groups/SLUG/logo serves the stored PNG as image/png", (st, h.get("Content-Type"), len(body)))
    etag = h.get("ETag") or ""
    t.ok(re.match(r'^"[0-9a-f]{16}"$', etag) and "max-age=300" in (h.get("Cache-Control") or ""),
         "the logo has an ETag and a cache lifetime", (etag, h.get("Cache-Control")))
    st, h, body = srv.get("/groups/%s/logo" % a, headers={"If-None-Match": etag})
    t.ok(st == 304 and body == b"", "the logo answers 304 to its ETag", st)
    st, h, body = srv.get("/groups/%s/logo" % s["b"])
    t.eq(st, 404, "a group without a logo: /logo is 404")
    st, h, body = srv.get("/groups/nobody-here/logo")
    t.eq(st, 404, "an unknown group: /logo is 404")

    # an empty file field keeps the logo; remove_logo takes it away (and then puts it back)
    st, h, page = post_look(alice, a, {"banner": "Distribution le jeudi à 18 h", "intro": INTRO,
                                       "facebook": "https://www.facebook.com/paniers", "mastodon": "https://mastodon.social/@paniers"},
                            [("logo", "", "application/octet-stream", b"")])
    saved(t, st, h, a, "an empty file field")
    t.eq(look(inst, a)[6:], ("image/png", len(SMALL_PNG)), "an empty file field keeps the current logo")
    st, h, page = post_look(alice, a, {"remove_logo": "1"})
    saved(t, st, h, a, "remove_logo")
    t.eq(look(inst, a)[6:], (None, None), "remove_logo removes the logo")
    st, h, body = srv.get("/groups/%s/logo" % a)
    t.eq(st, 404, "the removed logo is no longer served")
    st, h, page = post_look(alice, a, {"banner": "Distribution le jeudi à 18 h", "intro": INTRO,
                                       "facebook": "https://www.facebook.com/paniers", "mastodon": "https://mastodon.social/@paniers"},
                            [("logo", "logo.png", "image/png", SMALL_PNG)])
    saved(t, st, h, a, "the logo again")


def stylesheet(t, srv, inst, s):
    a, b = s["a"], s["b"]
    st, h, page = post_look(s["bob"], b, {"color_primary": OTHER_PRIMARY, "color_accent": OTHER_ACCENT})
    saved(t, st, h, b, "bob's colours for his group")
    st, h, body = srv.get("/groups/%s/style.css" % a)
    css = body.decode()
    t.ok(st == 200 and (h.get("Content-Type") or "").startswith("text/css"), "style.css is text/css", (st, h.get("Content-Type")))
    t.ok("--green:%s" % PRIMARY in css and "--green-dark:%s" % ACCENT in css,
         "style.css sets the group's primary and accent colours", css)
    t.ok(OTHER_PRIMARY not in css and OTHER_ACCENT not in css and "#2f6b3a" not in css,
         "style.css holds no other group's colours", css)
    t.ok(re.match(r"^:root\{[-a-z0-9:#;]+\}\n$", css) is not None, "style.css is one :root rule of custom properties", css)
    etag = h.get("ETag") or ""
    t.ok(PRIMARY[1:] in etag and "public" in (h.get("Cache-Control") or "") and "max-age=300" in h.get("Cache-Control"),
         "style.css has an ETag from the colours and Cache-Control public, max-age=300", (etag, h.get("Cache-Control")))
    st, h, body = srv.get("/groups/%s/style.css" % a, headers={"If-None-Match": etag})
    t.ok(st == 304 and body == b"", "style.css answers 304 to its ETag", st)
    st, h, body = srv.get("/groups/%s/style.css" % b)
    t.ok(OTHER_PRIMARY in body.decode() and PRIMARY not in body.decode(), "the other group's style.css has its own colours")
    st, h, body = srv.get("/groups/%s/style.css?primary=%%23123456&accent=%%23345678" % a)
    t.ok(st == 200 and "--green:#123456" in body.decode() and "--green-dark:#345678" in body.decode() and
         PRIMARY not in body.decode(), "a preview's colours in the query are served instead", body)
    for q in ("primary=%23ffff00&accent=", "primary=red&accent=", "primary=&accent=%23zzzzzz",
              "primary=%23123456%3B}body{display:none&accent="):
        st, h, body = srv.get("/groups/%s/style.css?%s" % (a, q))
        t.ok(st == 400 and b"display:none" not in body, "a bad colour in the query is refused (%s)" % q, (st, body[:200]))
    st, h, body = srv.get("/groups/nobody-here/style.css")
    t.eq(st, 404, "an unknown group's style.css is 404")
    inst.sql("UPDATE market_groups SET color_primary = 'red;}body{display:none' WHERE slug = ?", b)
    st, h, body = srv.get("/groups/%s/style.css" % b)
    t.ok(st == 200 and b"display" not in body and OTHER_ACCENT in body.decode(),
         "a stored colour that is not #rrggbb is left out of style.css", body)
    st, h, body = srv.get("/groups/%s" % b)
    t.ok(st == 200 and b"display:none" not in body, "and out of the page")


def preview(t, srv, inst, s):
    alice, a = s["alice"], s["a"]
    before = look(inst, a)
    st, h, page = post_look(alice, a, {"preview": "1", "banner": "Bandeau d'essai", "color_primary": "#4b2e83",
                                       "color_accent": "#3d2a6b", "intro": "Texte **provisoire**", "theme": "marche"},
                            [("logo", "autre.png", "image/png", png(4, 4, bytes(48)))])
    t.ok(st == 200 and "Aperçu : rien n'est enregistré" in page, "the preview is the group's page with the notice", (st, page[:300]))
    t.ok("Bandeau d'essai" in page and "<strong>provisoire</strong>" in page, "the preview shows the submitted banner and intro")
    t.ok("/groups/%s/style.css?primary=%%234b2e83&accent=%%233d2a6b" % a in page,
         "the preview links style.css with the submitted colours")
    t.ok("Le nouveau logo n'est ni montré ni conservé par l'aperçu" in page and
         '<img class="market-logo" src="/groups/%s/logo?v=%d"' % (a, len(SMALL_PNG)) in page,
         "the preview says the new logo is not kept and shows the current one")
    t.ok('action="/groups/%s/admin/appearance' % a in page and 'value="Bandeau d\'essai"' in page and
         '<option value="marche" selected' in page and 'value="#4b2e83"' in page,
         "the preview holds the form, filled, to save")
    t.eq(look(inst, a), before, "db: the preview changed nothing (banner, colours, theme, intro, logo)")
    st, h, page = post_look(alice, a, {"preview": "1", "color_primary": "#ffff00"})
    t.ok(st == 422 and "trop claire" in page and "Aperçu : rien" not in page, "a preview checks the values as saving does", st)
    st, h, page = post_look(alice, a, {"preview": "1", "remove_logo": "1", "banner": "Sans logo"})
    t.ok(st == 200 and "market-logo" not in page.split('<section class="market-admin market-preview-form"')[0] and
         "que vous avez choisi de retirer" in page, "a preview with remove_logo shows the page without the logo")
    t.eq(look(inst, a), before, "db: still unchanged")
    st, h, page = srv.get("/groups/%s" % a)
    t.ok(b"Bandeau d'essai" not in page and b"Bandeau d&#39;essai" not in page, "the public page does not show the previewed banner")


def theme(t, srv, inst, s):
    alice, a = s["alice"], s["a"]
    st, h, page = post_look(alice, a, {"theme": "marche", "banner": "Distribution le jeudi à 18 h",
                                       "facebook": "https://www.facebook.com/paniers"})
    saved(t, st, h, a, "theme marche")
    t.eq(look(inst, a)[0], "marche", "db: the group's theme is marche")
    st, h, body = srv.get("/groups/%s" % a)
    page = body.decode()
    t.ok(st == 200 and "Les Paniers du Lac" in page, "the group's page renders with the marche theme first in the chain", st)
    t.ok('<link rel="stylesheet" href="/static/halle.css">' in page and
         re.search(r'<link rel="stylesheet" href="/groups/%s/style\.css[^"]*">' % a, page),
         "it links /static/halle.css and the group's style.css")
    st, h, page = alice.get("/groups/%s/admin" % a)
    t.ok('<option value="marche" selected>' in page, "the admin form shows marche as the group's theme")
    st, h, page = post_look(alice, a, {"theme": "", "banner": "Distribution le jeudi à 18 h"})
    saved(t, st, h, a, "back to the site's theme")
    t.eq(look(inst, a)[0], None, "db: an empty theme means the site's (NULL)")
    st, h, page = post_look(alice, a, {"theme": "marche", "banner": "Distribution le jeudi à 18 h", "site_colors": "1"})
    saved(t, st, h, a, "site colours")
    t.eq(look(inst, a)[1:3], (None, None), "'Garder les couleurs du site' stores no colours")
    st, h, body = srv.get("/groups/%s" % a)
    t.ok(b"/style.css" not in body, "without colours the page links no group stylesheet")
    st, h, page = post_look(alice, a, {"theme": "marche", "banner": "Distribution le jeudi à 18 h", "intro": INTRO,
                                       "facebook": "https://www.facebook.com/paniers",
                                       "website": "https://paniers.example.org/"},
                            [("logo", "logo.png", "image/png", SMALL_PNG)])
    saved(t, st, h, a, "colours again (the look the browser checks)")


def walls(t, srv, inst, s):
    a = s["a"]
    before = look(inst, a)
    bob_admin = "/groups/%s/admin" % s["b"]
    st, h, page = post_look(s["bob"], a, {"banner": "Piraté"}, token_from=bob_admin)
    t.eq(st, 403, "another group's coordinator cannot change this group's appearance (403)")
    st, h, page = post_look(s["bob"], a, {"preview": "1", "banner": "Piraté"}, token_from=bob_admin)
    t.ok(st == 403 and "Piraté" not in page, "nor preview it", st)
    visitor = Browser(srv.port)
    st, h, page = post_look(visitor, a, {"banner": "Piraté"}, csrf=False)
    t.ok(st in (303, 403) and "Piraté" not in page, "a visitor cannot change it", st)
    st, h, page = post_look(s["alice"], a, {"banner": "Piraté"}, csrf=False)
    t.eq(st, 403, "without the CSRF token: refused")
    st, h, page = post_look(s["alice"], a, {"banner": "Piraté"}, csrf="forged-token")
    t.eq(st, 403, "with a forged CSRF token: refused")
    t.eq(look(inst, a), before, "db: nothing changed")
    st, h, page = s["oscar"].get("/groups/%s/admin" % a)
    t.ok(st == 200 and "/admin/appearance" in page, "an operator sees the appearance form")


# ---- in a real browser -----------------------------------------------------------------------------

def chromium_path():
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def artefacts_dir():
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    d = os.path.join(build, "tests", "artefacts")
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):  # no stale screenshot from an earlier run
        if name == "group-theme.png" or (name.startswith("failure-group-theme") and name.endswith(".png")):
            os.remove(os.path.join(d, name))
    return d


def processes_using(marker):
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


def rgb(colour):
    return "rgb(%d, %d, %d)" % tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def in_browser(t, srv, inst, s):
    missing = []
    if not os.access(chromium_path(), os.X_OK):
        missing.append("chromium not installed (%s)" % chromium_path())
    if not shutil.which("node"):
        missing.append("node not installed")
    if not os.path.isfile(os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json")):
        missing.append("playwright-core not installed: run `npm ci` in %s" % BROWSER_DIR)
    if missing:  # CI installs them: a missing one is a failure (HALLE_SKIP_BROWSER=1 skips)
        for m in missing:
            t.ok(False, "browser prerequisite: " + m.split(":")[0], m)
        return
    artefacts = artefacts_dir()
    profile = inst.path("chromium-profile-theme")
    os.makedirs(profile)
    command = {"base": "http://127.0.0.1:%d" % srv.port, "path": "/groups/%s" % s["a"], "primary": rgb(PRIMARY),
               "banner": "Distribution le jeudi à 18 h", "groupName": "Les Paniers du Lac", "artefacts": artefacts,
               "profileDir": profile}
    env = dict(os.environ, CHROMIUM=chromium_path())
    env.pop("DISPLAY", None)
    errpath = inst.path("group_theme.stderr")
    seen = []
    with open(errpath, "wb") as errf:
        proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, "group_theme.mjs"), json.dumps(command)], cwd=BROWSER_DIR,
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf, start_new_session=True)
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line.decode("utf-8", "replace"))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    deadline = time.time() + BROWSER_TIMEOUT
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.time()))
            except queue.Empty:
                break
            if line is None:
                break
            try:
                r = json.loads(line)
            except ValueError:
                if line.strip():
                    t.comment("group_theme.mjs: " + line.strip())
                continue
            seen.append(r.get("step"))
            if r.get("step") != "end":
                detail = r.get("detail")
                t.ok(r.get("ok"), "browser: " + r.get("step", "?"),
                     json.dumps(detail, ensure_ascii=False) if detail is not None else "")
    finally:
        timed_out = time.time() >= deadline
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pid in processes_using(profile):  # Chromium left behind, found by our profile folder
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    with open(errpath, encoding="utf-8", errors="replace") as f:
        err = f.read()
    t.ok(not timed_out, "the browser run ends within %d s" % BROWSER_TIMEOUT, err[-2000:])
    t.ok(proc.returncode == 0 and "end" in seen and "group page screenshot" in seen,
         "group_theme.mjs went through every step", "exit %r, steps %r\n%s" % (proc.returncode, seen, err[-2000:]))
    shot = os.path.join(artefacts, "group-theme.png")
    t.ok(os.path.isfile(shot) and os.path.getsize(shot) > 1000, "artefact group-theme.png written", shot)


def main():
    t = Tap()
    inst = Instance(name="Halle des thèmes")
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000", base_url="http://halle.test")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr):
        t.done()
    for who in ("alice", "bob", "oscar"):
        args = ["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()]
        if who == "oscar":
            args.append("--operator")
        r = run(args, env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    srv = Server(inst, workers=2, tap=t)
    try:
        srv.start()
        s = {}
        for who in ("alice", "bob", "oscar"):
            s[who] = login(t, srv.port, who)
        s["a"] = create(t, s["alice"], "Les Paniers du Lac")
        s["b"] = create(t, s["bob"], "La Ruche de Bob")
        for fn in (admin_form, bad_values, save_and_show, stylesheet, preview, theme, walls):
            t.run(fn, srv, inst, s)
        if os.environ.get("HALLE_SKIP_BROWSER") == "1":
            t.comment("browser part skipped (HALLE_SKIP_BROWSER=1)")
        else:
            t.run(in_browser, srv, inst, s)
    finally:
        srv.stop()
    if t.failed:
        t.comment("server log (end):\n" + srv.log_text()[-3000:])
    t.done()


if __name__ == "__main__":
    main()
