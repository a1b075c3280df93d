# Pages in the visitor's language against the real server: French by default, English from
# Accept-Language, the halle_lang cookie set by /lang/CODE (which only ever sends back to a
# path of this site), the footer's language switcher, and the C-built pages (login and its
# errors, sign-up refusals, the account page with its labelled fields, CSRF refusals, error
# pages) and the themes' templates (default and marche) all in English.
import html
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run  # noqa: E402

PASSWORD = "Prune-2026"
EN = {"Accept-Language": "en-GB,en;q=0.9"}
FR = {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}
# French words of the frame and the account pages that an English page must not show
FRENCH = ("Se connecter", "Créer un compte", "Mot de passe", "Aller au contenu", "Propulsé par", "Accueil",
          "Adresse e-mail", "Retour à l")


class LangBrowser(Browser):
    """A Browser that sends the same Accept-Language with every request."""

    def __init__(self, port, headers=None):
        super().__init__(port)
        self.headers = dict(headers or {})

    def request(self, method, path, form=None, headers=None):
        h = dict(self.headers)
        h.update(headers or {})
        return super().request(method, path, form=form, headers=h)


def french_left(page):
    return [w for w in FRENCH if w in page]


def html_lang(page):
    m = re.search(r'<html lang="([^"]*)"', page)
    return m.group(1) if m else None


def switcher(page):
    """The footer's language links: [(code, current, href or None)]."""
    m = re.search(r'<nav class="languages"[^>]*>(.*?)</nav>', page, re.S)
    if not m:
        return []
    out = []
    for tag, code, rest in re.findall(r'<(span|a) lang="([^"]+)"([^>]*)>', m.group(1)):
        href = re.search(r'href="([^"]*)"', rest)
        out.append((code, 'aria-current="true"' in rest, href.group(1).replace("&amp;", "&") if href else None))
    return out


def label_for(page, field):
    """The text of the <label> tied to the input with id f-FIELD, if both are there."""
    if not re.search(r'<(input|textarea)[^>]* id="f-%s"' % re.escape(field), page):
        return None
    m = re.search(r'<label for="f-%s">([^<]*)</label>' % re.escape(field), page)
    return m.group(1) if m else None


def test_default_french(t, srv):
    b = LangBrowser(srv.port)
    st, h, page = b.get("/")
    t.ok(st == 200 and html_lang(page) == "fr", "the home page is French by default", page[:200])
    t.ok("Des producteurs locaux" in page and "Se connecter" in page and "Aller au contenu" in page
         and "Propulsé par halle" in page, "French text of the home page, the nav and the footer", page)
    langs = switcher(page)
    t.ok(("fr", True, None) in langs, "the switcher marks French as current, not as a link", langs)
    t.ok(("en", False, "/lang/en?next=%2F") in langs, "the switcher links to English and back here", langs)
    t.ok('<nav class="languages" aria-label="Langue">' in page, "the switcher is a labelled nav")
    st, h, page = LangBrowser(srv.port, {"Accept-Language": "de-DE,de;q=0.9"}).get("/")
    t.ok(html_lang(page) == "fr", "a language without a catalog falls back to French")
    st, h, page = LangBrowser(srv.port, {"Accept-Language": "en;q=0, fr"}).get("/")
    t.ok(html_lang(page) == "fr", "q=0 excludes English")


def test_accept_language(t, srv):
    b = LangBrowser(srv.port, EN)
    st, h, page = b.get("/")
    t.ok(st == 200 and html_lang(page) == "en", '<html lang="en"> with Accept-Language: en-GB', page[:200])
    t.ok("Local producers sell directly to their customers" in page and "<h2>Producers</h2>" in page
         and "<h2>Local groups</h2>" in page, "the home page's text is English", page)
    t.ok("<title>Home · " in page, "the title is English")
    t.ok('href="#main">Skip to content</a>' in page and '<nav aria-label="Account">' in page
         and '<a href="/login">Log in</a>' in page and '<a href="/signup">Create an account</a>' in page,
         "the skip link and the nav are English", page)
    t.ok("Powered by halle · direct sales without commission" in page, "the footer is English")
    t.ok('content="Direct sales of local produce, without commission."' in page, "the meta description is English")
    t.ok(not french_left(page), "no French left on the English home page", french_left(page))
    langs = switcher(page)
    t.ok(("en", True, None) in langs and ("fr", False, "/lang/fr?next=%2F") in langs,
         "the switcher marks English as current", langs)
    t.ok('<nav class="languages" aria-label="Language">' in page, "the switcher's label is English")

    st, h, page = b.get("/login")
    t.ok(st == 200 and html_lang(page) == "en", "the login page is English", page[:200])
    t.ok("<h1>Log in</h1>" in page and label_for(page, "email") == "Email address"
         and label_for(page, "password") == "Password", "the login form's labels are English", page)
    t.ok(">Forgot your password?</a>" in page and "<button type=\"submit\">Log in</button>" in page,
         "its links and button are English")
    t.ok(not french_left(page), "no French left on the English login page", french_left(page))

    st, h, page = b.get("/no/such/page")
    t.ok(st == 404 and html_lang(page) == "en", "the 404 page is English", (st, page[:200]))
    t.ok("This page does not exist." in page and "Back to the home page" in page, "its text is English", page)
    t.ok(not french_left(page), "no French left on the English 404 page", french_left(page))
    st, h, page = b.request("POST", "/", form={})
    t.ok(st in (403, 405) and html_lang(page) == "en" and "Cette" not in page, "other error pages are English too",
         (st, page[:600]))

    st, h, page = b.get("/signup")
    t.ok(label_for(page, "password") == "Password" and "At least 8 characters" in page
         and "I certify that I am over 15" in page, "the sign-up form is English", page)


def test_switch(t, srv):
    b = LangBrowser(srv.port, FR)
    st, h, page = b.get("/lang/en?next=/login")
    t.ok(st in (302, 303) and h.get("Location") == "/login", "/lang/en?next=/login sends back to /login",
         (st, h.get("Location")))
    cookie = [c for c in b.last_set_cookies if c.startswith("halle_lang=")]
    t.ok(cookie and cookie[0].startswith("halle_lang=en;") and "Path=/" in cookie[0],
         "it sets the halle_lang cookie", b.last_set_cookies)
    st, h, page = b.get("/login")
    t.ok(html_lang(page) == "en" and "<h1>Log in</h1>" in page, "then pages are English despite Accept-Language: fr",
         page[:300])
    st, h, page = b.get("/")
    t.ok(html_lang(page) == "en" and ("en", True, None) in switcher(page), "the switcher follows the cookie")
    st, h, page = b.get("/lang/fr?next=/")
    t.ok(st in (302, 303) and h.get("Location") == "/" and b.cookies.get("halle_lang") == "fr",
         "/lang/fr switches back", (st, h.get("Location"), b.cookies))
    st, h, page = b.get("/")
    t.ok(html_lang(page) == "fr" and "Se connecter" in page, "and pages are French again")

    # the switcher's link comes back to the same page, query included
    st, h, page = b.get("/login?from=a%20b&x=1")
    en = [href for code, cur, href in switcher(page) if code == "en"]
    t.ok(en and en[0].startswith("/lang/en?next="), "the login page has a link to English", switcher(page))
    st, h, page = b.get(en[0])
    t.ok(st in (302, 303) and h.get("Location") == "/login?from=a%20b&x=1",
         "following it comes back to the page and its query", (st, h.get("Location")))

    # never an open redirect
    for bad in ("//evil.example", "http://evil.example", "/\\evil.example", "%2F%2Fevil.example",
                "https:evil.example", "", "evil", "/%0d%0aSet-Cookie:x=1"):
        st, h, page = LangBrowser(srv.port).get("/lang/en?next=" + bad.replace("\\", "%5C"))
        loc = h.get("Location") or ""
        t.ok(st in (302, 303) and (loc == "/" or (loc.startswith("/") and not loc.startswith("//")
                                                  and "\\" not in loc and "\r" not in loc and "\n" not in loc)),
             "next=%s stays on this site" % bad, (st, loc))
    st, h, page = LangBrowser(srv.port).get("/lang/en?next=//evil.example")
    t.eq(h.get("Location"), "/", "next=//evil.example goes to /")
    st, h, page = LangBrowser(srv.port).get("/lang/en?next=http://evil.example")
    t.eq(h.get("Location"), "/", "next=http://evil.example goes to /")
    b2 = LangBrowser(srv.port)
    b2.cookies["halle_lang"] = "xx"
    st, h, page = b2.get("/")
    t.ok(html_lang(page) == "fr", "a cookie naming an unknown language is ignored")
    b2.cookies["halle_lang"] = "en\"><script>"
    st, h, page = b2.get("/")
    t.ok(st == 200 and html_lang(page) == "fr" and "<script>" not in page, "a hostile cookie is ignored")


def test_login_errors(t, srv, inst):
    r = run(["user", "-c", inst.conf, "add", "anna@example.org", "--name", "Anna"],
            env={"HALLE_USER_PASSWORD": PASSWORD})
    t.ok(r.returncode == 0, "halle user add", r.stderr)
    b = LangBrowser(srv.port, EN)
    st, h, page = b.submit("/login", "/login", {"email": "anna@example.org", "password": "Wrong-pass1"})
    t.ok(st == 401 and "Incorrect email address or password." in page, "a wrong password is told in English",
         (st, page[-1500:]))
    t.ok(html_lang(page) == "en" and not french_left(page), "the whole page is English", french_left(page))
    st, h, page = b.submit("/login", "/login", {"email": "nobody@example.org", "password": "Wrong-pass1"})
    t.ok(st == 401 and "Incorrect email address or password." in page, "an unknown address: the same message")
    b.submit("/login", "/login", {"email": "anna@example.org", "password": "Wrong-pass2"})
    st, h, page = b.submit("/login", "/login", {"email": "anna@example.org", "password": "Wrong-pass3"})
    t.ok(st == 401 and re.search(r"temporarily locked\. Try again in \d+ minutes?\.", page),
         "the lockout message is English, with its minutes", page[-1500:])
    st, h, page = LangBrowser(srv.port, FR).submit("/login", "/login",
                                                   {"email": "anna@example.org", "password": PASSWORD})
    t.ok(st == 401 and re.search(r"Réessayez dans \d+ minutes?\.", page), "and French for a French visitor",
         page[-1500:])
    r = run(["user", "-c", inst.conf, "unlock", "anna@example.org"])
    t.ok(r.returncode == 0, "halle user unlock", r.stderr)

    # sign-up refusals built by accounts.c
    f = {"email": "x@example.org", "name": "X", "password": "court", "password2": "court", "terms": "1", "age": "1"}
    st, h, page = b.submit("/signup", "/signup", f)
    t.ok(st == 422 and "The password must contain at least 8 characters. The password must contain at least 3 "
         "kinds of characters among: upper-case letters, lower-case letters, digits, special characters (missing: "
         "upper-case letters, digits, special characters)." in page, "a password refusal is English, lists included",
         page[-1800:])
    f.update(password="toutenminuscules", password2="toutenminuscules")
    st, h, page = b.submit("/signup", "/signup", f)
    t.ok(st == 422 and "(missing: upper-case letters, digits, special characters)." in page
         and "The password must contain at least 8" not in page, "a single password rule, in English", page[-1500:])
    f.update(password=PASSWORD, password2=PASSWORD, terms="")
    st, h, page = b.submit("/signup", "/signup", f)
    t.ok(st == 422 and "You must accept the terms of use." in page, "the terms refusal is English")
    st, h, page = LangBrowser(srv.port, FR).submit("/signup", "/signup", dict(f, password="court", password2="court",
                                                                              terms="1"))
    t.ok(st == 422 and "Le mot de passe doit contenir au moins 8 caractères. Le mot de passe doit contenir au moins 3 "
         "types de caractères parmi" in page and "(il manque : majuscules, chiffres, caractères spéciaux)." in page,
         "the same refusal stays French for a French visitor", page[-1500:])


def test_account_page(t, srv, inst):
    r = run(["user", "-c", inst.conf, "add", "bruno@example.org", "--name", "Bruno"],
            env={"HALLE_USER_PASSWORD": PASSWORD})
    t.ok(r.returncode == 0, "halle user add", r.stderr)
    b = LangBrowser(srv.port, EN)
    st, h, page = b.submit("/login", "/login", {"email": "bruno@example.org", "password": PASSWORD})
    t.ok(st == 303 and h.get("Location") == "/account", "login", (st, page[:300]))
    st, h, page = b.get("/account")
    t.ok(st == 200 and html_lang(page) == "en" and "<h1>My account</h1>" in page, "the account page is English",
         page[:400])
    want = {"name": "Name", "phone": "Phone (optional)", "address": "Postal address (optional)",
            "email": "New address", "current": "Current password", "password": "New password",
            "password2": "New password (again)", "delete_password": "Current password",
            "confirm": "I want to delete my account permanently"}
    got = {k: label_for(page, k) for k in want}
    t.eq(got, want, "every field has its English label tied to it")
    for text in ("<h2 id=\"t-profile\">Profile</h2>", "Active sessions", "Consents and notifications",
                 "Delete my account", "Save the profile", "Change the password", "Log out my other sessions",
                 "(this session)", ", since ", "Current: bruno@example.org", '<a href="/account">My account</a>',
                 ">Log out</button>"):
        t.ok(text in page, "the account page shows %r" % text)
    t.ok(not french_left(page), "no French left on the account page", french_left(page))
    st, h, page = b.submit("/account", "/account/profile", {"name": "B" * 300, "phone": "", "address": ""})
    t.ok(st == 422 and re.search(r"The field “name” must not exceed \d+ bytes\.", page),
         "a profile refusal from accounts.c is English, the field named in English", page[-1500:])
    st, h, page = b.submit("/account", "/account/profile", {"name": "Bruno B", "phone": "", "address": ""})
    st, h, page = b.get("/account?done=profile")
    t.ok("Profile saved." in page, "the confirmation is English")
    st, h, page = b.request("POST", "/account/profile", form={"name": "Mallory"})
    t.ok(st == 403 and "The form has expired or does not come from this site." in page and html_lang(page) == "en",
         "a CSRF refusal is English", (st, page[-1200:]))
    st, h, page = b.request("POST", "/account/profile", form={"name": "Mallory"},
                            headers={"Origin": "http://evil.example"})
    t.ok(st == 403 and "Request refused: it comes from another site (http://evil.example)." in page,
         "the cross-site refusal is English", (st, page[-1200:]))


def test_marche_theme(t):
    inst = Instance()
    inst.set(theme="marche", password_cost="min")
    with Server(inst, workers=1, tap=t) as srv:
        st, h, page = srv.get("/", headers=EN)
        page = html.unescape(page.decode("utf-8", "replace"))
        t.ok(st == 200 and html_lang(page) == "en" and "Your producers' market, all week long" in page
             and "Run your stall online" in page, "the marche theme's home page is English", page)
        t.ok(not french_left(page), "no French left on it", french_left(page))
        st, h, page = srv.get("/")
        page = page.decode("utf-8", "replace")
        t.ok("Le marché de vos producteurs" in page and "Tenez votre étal en ligne" in page,
             "and French by default", page)


def main():
    t = Tap()
    inst = Instance()
    inst.set(password_cost="min", login_rate_limit=1000)
    srv = Server(inst, workers=2, tap=t)
    try:
        srv.start()
        t.run(test_default_french, srv)
        t.run(test_accept_language, srv)
        t.run(test_switch, srv)
        t.run(test_login_errors, srv, inst)
        t.run(test_account_page, srv, inst)
    finally:
        srv.stop()
    t.run(test_marche_theme)
    t.done()


if __name__ == "__main__":
    main()
