# The visitor's account pages are theme templates: a theme overrides the login page (its own
# markup, the same form fields), and the form still works through it, CSRF token included;
# the other account pages render from the default theme's templates, in both languages.
import os
import sys
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import private_share, Browser, Instance, Server, Tap, run  # noqa: E402

PASSWORD = "Th3me-Pass!x"
LOGIN = """{{< layout}}
{{$title}}{{_ Se connecter}}{{/title}}
{{$content}}
<div class="kiosk-login">
<h1>Bienvenue au kiosque</h1>
{{#error}}<strong class="kiosk-error">{{error}}</strong>{{/error}}
<form method="post" action="/login">
<input type="hidden" name="_csrf" value="{{csrf}}">
<input name="email" value="{{email}}"> <input name="password" type="password">
<button>Entrer</button>
</form>
</div>
{{/content}}
{{/layout}}
"""


def main():
    t = Tap()
    inst = Instance()
    share = private_share(inst)
    kiosk = os.path.join(share, "themes", "kiosque")
    os.makedirs(os.path.join(kiosk, "templates", "account"))
    with open(os.path.join(kiosk, "theme.conf"), "w") as f:
        f.write("name = kiosque\nparent = default\ndescription = Test theme overriding the login page\n")
    with open(os.path.join(kiosk, "templates", "account", "login.mustache"), "w") as f:
        f.write(LOGIN)
    inst.set(theme="kiosque")
    r = run(["user", "-c", inst.conf, "add", "lise@example.org", "--name", "Lise"], env={"HALLE_USER_PASSWORD": PASSWORD})
    t.eq(r.returncode, 0, "user add")
    run(["user", "-c", inst.conf, "add", "helene@example.org", "--name", "Hélène Dupré"], env={"HALLE_USER_PASSWORD": PASSWORD})
    run(["user", "-c", inst.conf, "add", "op@example.org", "--name", "Opé", "--operator"], env={"HALLE_USER_PASSWORD": PASSWORD})
    srv = Server(inst, workers=1, tap=t).start()
    try:
        b = Browser(srv.port)
        st, h, page = b.get("/login")
        t.ok(st == 200 and "Bienvenue au kiosque" in page and 'class="kiosk-login"' in page,
             "the theme's login template is served", page[:600])
        t.ok("<header" in page, "inside the site's layout", page[:300])
        st, h, page = b.submit("/login", "/login", {"email": "lise@example.org", "password": "Wrong-Pass-1"})
        t.ok(st == 401 and 'class="kiosk-error"' in page and "incorrect" in page and 'value="lise@example.org"' in page,
             "an error shows in the theme's own markup, with what was typed kept", page[-800:])
        st, h, page = b.submit("/login", "/login", {"email": "lise@example.org", "password": PASSWORD})
        t.eq((st, h.get("Location")), (303, "/account"), "the overridden form logs in (its CSRF token works)")
        anon = Browser(srv.port)
        for path, marker in (("/signup", 'id="signup"'), ("/password/forgot", 'id="forgot"'),
                             ("/password/reset?token=x", 'name="token" value="x"')):
            st, h, page = anon.get(path)
            t.ok(st == 200 and marker in page and 'name="_csrf" value="' in page,
                 "%s renders from the default theme's template" % path, page[:400])
        st, h, page = anon.request("GET", "/signup", headers={"Accept-Language": "en"})
        t.ok("Create an account" in page and "At least 8 characters" in page, "and in English", page[-1500:])
        st, h, page = anon.get("/verify?token=nothing")
        t.ok(st == 400 and 'class="notice error"' in page and "Lien invalide" in page, "an invalid link says so", page[-800:])
        op = Browser(srv.port)
        op.submit("/login", "/login", {"email": "op@example.org", "password": PASSWORD})
        for q, found in (("helene", True), ("HÉLÈNE", True), ("dupre", True), ("Hél", True), ("zzz", False), ("%", False)):
            st, h, page = op.get("/admin?q=" + urllib.parse.quote(q))
            t.ok(st == 200 and (("Hélène Dupré" in page) == found), "the operator's search for %r %s Hélène" %
                 (q, "finds" if found else "does not find"), page[-1200:])
        for who, path in ((op, "/admin"), (op, "/admin/plugins"), (op, "/account"), (Browser(srv.port), "/signup"),
                          (Browser(srv.port), "/password/forgot")):
            st, h, page = who.get(path)
            t.ok(st == 200 and "}}" not in page and "{{" not in page, "%s: no template text leaks into the page" % path,
                 page[:400])
        st, h, page = op.get("/admin")
        t.ok("Hélène Dupré" in page and "lise@example.org" in page and 'action="/admin/users/' not in page,
             "the operator's page (a template) lists everyone, no unlock button for unlocked people", page[-1500:])
    finally:
        srv.stop()
    t.done()


if __name__ == "__main__":
    main()
