# Accounts end to end, against the real server and a real SMTP listener (aiosmtpd) on
# loopback: sign-up with terms and age, verification by the mailed link, login, lockouts at 3
# and 10 failures with unlocking (CLI and admin page), CSRF refusals, session fixation,
# logout and "log out everywhere", password reset, email change, account deletion, security
# headers, and operator-only pages.
import html
import os
import re
import sys
import urllib.parse
import http.client

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Inbox, Instance, Server, Tap, free_port, run  # noqa: E402

PASSWORD = "Prune-2026"


def link_in(msg):
    m = re.search(r"https?://\S+", msg.get_content())
    return urllib.parse.urlsplit(m.group(0)) if m else None


def signup(t, b, inbox, mail, name="Lise"):
    st, h, page = b.submit("/signup", "/signup", {"email": mail, "name": name, "password": PASSWORD,
                                                   "password2": PASSWORD, "terms": "1", "age": "1"})
    t.ok(st == 200 and "boîte aux lettres" in page, "sign-up for %s accepted" % mail, (st, page[:300]))
    msg = inbox.wait_for(mail, "Confirmez")
    t.ok(msg is not None, "the verification mail arrives over SMTP")
    return msg


def login(b, mail, password=PASSWORD):
    return b.submit("/login", "/login", {"email": mail, "password": password})


def test_signup_flow(t, srv, inst, inbox):
    b = Browser(srv.port)
    st, h, page = b.get("/signup")
    t.ok(st == 200 and 'name="terms"' in page and 'name="age"' in page and "15 ans" in page,
         "the sign-up form asks for the terms and the age certification")
    t.ok("3 types" in page, "the form explains the password rules")
    # refusals
    for fields, why in (({"password": "court1A"}, "8 caractères"), ({"password": "toutenminuscules"}, "3 types"),
                        ({"terms": ""}, "conditions"), ({"age": ""}, "15 ans"), ({"email": "pas-une-adresse"}, "invalide")):
        f = {"email": "x@example.org", "name": "X", "password": PASSWORD, "password2": PASSWORD, "terms": "1", "age": "1"}
        f.update(fields)
        if "password" in fields:
            f["password2"] = fields["password"]
        st, h, page = b.submit("/signup", "/signup", f)
        t.ok(st == 422 and why in page, "sign-up refused: %s" % why, (st, page[:400]))

    msg = signup(t, b, inbox, "lise@example.org")
    st, h, page = login(b, "lise@example.org")
    t.ok(st == 401 and "pas encore vérifiée" in page, "login before verification is refused with an explanation", page[:300])
    url = link_in(msg)
    t.ok(url is not None and url.path == "/verify", "the mail holds the verification link", msg.get_content() if msg else "")
    st, h, page = b.get(url.path + "?" + url.query)
    t.ok(st == 200 and "activé" in page, "the link verifies the address", page[:300])
    st, h, page = b.get(url.path + "?" + url.query)
    t.eq(st, 400, "the link works once only")

    row = (inst.sql("SELECT terms_version, terms_accepted_at, age_certified_at, password_hash FROM hl_users WHERE email = ?",
                    "lise@example.org") or [None])[0]
    t.ok(row and row[0] and row[1] and row[2], "terms version and times and the age certification are recorded", row)
    t.ok(row and row[3].startswith("$argon2id$"), "the password is stored as an Argon2id hash")

    # the same address again: same answer to the visitor, a notice to the owner
    st, h, page = b.submit("/signup", "/signup", {"email": "LISE@example.org ", "name": "Other", "password": PASSWORD,
                                                   "password2": PASSWORD, "terms": "1", "age": "1"})
    t.ok(st == 200 and "boîte aux lettres" in page, "an existing address gets the same answer (nothing revealed)")
    t.ok(inbox.wait_for("lise@example.org", "déjà un compte") is not None, "its owner is told by mail")

    b.cookies.pop("halle_csrf", None)
    b.cookies["halle_session"] = "A" * 43  # a session id planted before login
    st, h, page = login(b, "lise@example.org")
    t.ok(st == 303 and h.get("Location") == "/account", "login redirects to the account page", (st, page[:300]))
    session_cookie = [c for c in b.last_set_cookies if c.startswith("halle_session=")]
    t.ok(session_cookie and "HttpOnly" in session_cookie[0] and "SameSite=Lax" in session_cookie[0],
         "the session cookie is HttpOnly and SameSite=Lax", b.last_set_cookies)
    t.ok(session_cookie and "Secure" not in session_cookie[0], "no Secure flag when the base URL is http")
    t.ok(b.cookies.get("halle_session") not in (None, "A" * 43) and len(b.cookies["halle_session"]) == 43,
         "a new session id is issued at login (no fixation)")
    stored = [r[0] for r in inst.sql("SELECT id_hash FROM hl_sessions")]
    t.ok(b.cookies["halle_session"] not in stored and all(len(s) == 64 for s in stored),
         "sessions are stored hashed, never the cookie value", stored)

    st, h, page = b.get("/account")
    t.ok(st == 200 and "Mon compte" in page and "lise@example.org" in page, "the account page shows the user")
    t.ok("Sessions actives" in page and "Consentements" in page and "Supprimer mon compte" in page,
         "it lists sessions, consents and deletion")
    ids = re.findall(r' id="([^"]+)"', page)
    t.eq(sorted(i for i in set(ids) if ids.count(i) > 1), [], "no duplicate ids on the page (labels stay tied to their fields)")
    labels = re.findall(r'<label for="([^"]+)"', page)
    t.ok(labels and all(l in ids for l in labels), "every label points to a field", labels)
    csp = h.get("Content-Security-Policy", "")
    t.ok("unsafe-inline" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp,
         "CSP without unsafe-inline and with frame-ancestors", csp)
    t.eq(h.get("X-Content-Type-Options"), "nosniff", "X-Content-Type-Options")
    t.ok(h.get("Referrer-Policy"), "Referrer-Policy set")

    # CSRF
    st, h, page = b.request("POST", "/account/profile", form={"name": "Hacked"})
    t.ok(st == 403 and "formulaire" in page, "a form without its CSRF token is a 403 page", (st, page[:200]))
    st, h, page = b.request("POST", "/account/profile", form={"name": "Hacked", "_csrf": "B" * 43})
    t.eq(st, 403, "a wrong CSRF token is refused")
    token = b.csrf(b.get("/account")[2])
    st, h, page = b.request("POST", "/account/profile", form={"name": "Hacked", "_csrf": token},
                            headers={"Origin": "http://evil.example"})
    t.eq(st, 403, "a request from another origin is refused even with the token")
    st, h, page = b.request("POST", "/account/profile", form={"name": "Lise Martin", "phone": "06 00 00 00 00",
                                                             "address": "1 rue des Lilas", "_csrf": token},
                            headers={"Origin": "http://127.0.0.1:%d" % srv.port})
    t.ok(st == 303, "the profile form with token and same origin is accepted", (st, page[:200]))
    st, h, page = b.get("/account")
    t.ok("Lise Martin" in page and "1 rue des Lilas" in page, "profile saved")

    # a second session, then "log out everywhere else"
    b2 = Browser(srv.port)
    st, _, _ = login(b2, "lise@example.org")
    t.eq(st, 303, "second login from another browser")
    st, h, page = b.submit("/account", "/account/sessions/end-others", {})
    t.eq(st, 303, "log out the other sessions")
    st, h, page = b2.get("/account")
    t.ok(st == 303 and h.get("Location") == "/login", "the other session is ended")
    st, h, page = b.get("/account")
    t.eq(st, 200, "the current session survives")

    # password change
    st, h, page = b.submit("/account", "/account/password", {"current": "wrong-Pass1", "password": "Nouveau-2027",
                                                             "password2": "Nouveau-2027"})
    t.eq(st, 403, "changing the password needs the current one")
    st, h, page = b.submit("/account", "/account/password", {"current": PASSWORD, "password": "Nouveau-2027",
                                                             "password2": "Nouveau-2027"})
    t.eq(st, 303, "password changed")

    # logout
    st, h, page = b.submit("/account", "/logout", {})
    t.ok(st == 303 and "halle_session" not in b.cookies, "logout clears the cookie")
    st, h, page = b.get("/account")
    t.eq(st, 303, "after logout the account page asks to log in")
    st, h, page = login(b, "lise@example.org", "Nouveau-2027")
    t.eq(st, 303, "login with the new password")

    # email change, re-verified
    st, h, page = b.submit("/account", "/account/email", {"email": "lise.martin@example.org"})
    t.eq(st, 303, "email change requested")
    msg = inbox.wait_for("lise.martin@example.org", "nouvelle adresse")
    url = link_in(msg) if msg else None
    t.ok(url is not None and url.path == "/verify-email", "a confirmation link goes to the new address")
    if url:
        st, h, page = b.get(url.path + "?" + url.query)
        t.eq(st, 200, "the new address is confirmed")
        st, h, page = b.get("/account")
        t.ok("lise.martin@example.org" in page, "the account now uses the new address")
    return b


def test_reset(t, srv, inst, inbox):
    b = Browser(srv.port)
    st, h, page = b.submit("/password/forgot", "/password/forgot", {"email": "nobody@example.org"})
    t.ok(st == 200 and "Si un compte existe" in page, "reset for an unknown address: same answer")
    st, h, page = b.submit("/password/forgot", "/password/forgot", {"email": "lise.martin@example.org"})
    t.ok(st == 200 and "Si un compte existe" in page, "reset requested")
    msg = inbox.wait_for("lise.martin@example.org", "mot de passe")
    url = link_in(msg) if msg else None
    t.ok(url is not None and url.path == "/password/reset", "the reset link arrives by mail")
    if not url:
        return
    token = urllib.parse.parse_qs(url.query)["token"][0]
    st, h, page = b.submit(url.path + "?" + url.query, "/password/reset", {"token": token, "password": "court",
                                                                            "password2": "court"})
    t.eq(st, 422, "the new password must follow the rules")
    st, h, page = b.submit(url.path + "?" + url.query, "/password/reset", {"token": token, "password": "Reset-2028x",
                                                                            "password2": "Reset-2028x"})
    t.ok(st == 200 and "changé" in page, "password reset", page[:300])
    st, h, page = b.submit(url.path + "?" + url.query, "/password/reset", {"token": token, "password": "Again-2029x",
                                                                            "password2": "Again-2029x"})
    t.eq(st, 400, "a reset link works once")
    st, _, _ = login(b, "lise.martin@example.org", "Reset-2028x")
    t.eq(st, 303, "login with the reset password")


def test_lockout(t, srv, inst, inbox):
    r = run(["user", "-c", inst.conf, "add", "paul@example.org", "--name", "Paul"], env={"HALLE_USER_PASSWORD": PASSWORD})
    t.ok(r.returncode == 0, "halle user add", r.stderr)
    b = Browser(srv.port)
    st, h, unknown = login(b, "nobody@example.org", "Wrong-pass1")
    for i in range(2):
        st, h, page = login(b, "paul@example.org", "Wrong-pass1")
        t.eq(st, 401, "failure %d is refused" % (i + 1))
    t.ok(re.search(r"incorrect", page) and re.search(r"incorrect", unknown),
         "unknown email and wrong password get the same message")
    st, h, page = login(b, "paul@example.org", "Wrong-pass1")
    t.ok(st == 401 and "minute" in page, "the 3rd failure locks the account for a while, and says so", page[:400])
    st, h, page = login(b, "paul@example.org", PASSWORD)
    t.ok(st == 401, "while locked even the right password is refused")
    inst.sql("UPDATE hl_users SET locked_until = '2000-01-01T00:00:00Z' WHERE email = 'paul@example.org'")
    st, h, page = login(b, "paul@example.org", PASSWORD)
    t.eq(st, 303, "after the lock expires the right password works")
    b = Browser(srv.port)
    for i in range(10):
        inst.sql("UPDATE hl_users SET locked_until = NULL WHERE email = 'paul@example.org'")
        st, h, page = login(b, "paul@example.org", "Wrong-pass%d" % i)
    t.ok(st == 401 and "débloquer" in page, "the 10th failure locks until an operator unlocks", page[-1500:])
    st, h, page = login(b, "paul@example.org", PASSWORD)
    t.eq(st, 401, "hard lock holds against the right password")
    r = run(["user", "-c", inst.conf, "unlock", "paul@example.org"])
    t.ok(r.returncode == 0 and "unlocked" in r.stdout, "halle user unlock", r.stderr)
    st, h, page = login(b, "paul@example.org", PASSWORD)
    t.eq(st, 303, "after unlocking the account works")
    r = run(["user", "-c", inst.conf, "unlock", "ghost@example.org"])
    t.ok(r.returncode == 1 and "no account" in r.stderr, "unlocking an unknown address fails clearly", r.stderr)


def test_rate_limit(t, srv, inst, inbox):
    """Many attempts from one address are refused whatever the account (login_rate_limit)."""
    inst2 = Instance()
    inst2.set(password_cost="min", login_rate_limit=5)
    with Server(inst2, workers=1, tap=t) as s2:
        b = Browser(s2.port)
        codes = [login(b, "x%d@example.org" % i, "Wrong-pass1")[0] for i in range(7)]
        t.eq(codes, [401] * 5 + [429] * 2, "the 6th attempt from one address within 5 minutes is refused (429)")


def test_secure_cookie(t, srv, inst, inbox):
    """Behind TLS (base_url https), the session cookie is Secure."""
    inst2 = Instance()
    inst2.set(password_cost="min", base_url="https://halle.example.org")
    r = run(["user", "-c", inst2.conf, "add", "tls@example.org", "--name", "TLS"], env={"HALLE_USER_PASSWORD": PASSWORD})
    t.eq(r.returncode, 0, "account created")
    with Server(inst2, workers=1, tap=t) as s2:
        b = Browser(s2.port)
        st, h, page = login(b, "tls@example.org")
        cookie = [c for c in b.last_set_cookies if c.startswith("halle_session=")]
        t.ok(st == 303 and cookie and "; Secure" in cookie[0], "the session cookie is Secure when base_url is https",
             b.last_set_cookies)


def test_operator(t, srv, inst, inbox):
    client = Browser(srv.port)
    st, h, page = client.get("/admin")
    t.ok(st == 303 and h.get("Location") == "/login", "anonymous visitors are sent to the login page")
    login(client, "paul@example.org", PASSWORD)
    st, h, page = client.get("/admin")
    t.eq(st, 403, "a client cannot reach the operator pages")
    st, h, page = client.get("/admin/plugins")
    t.eq(st, 403, "nor the plugins page")
    r = run(["user", "-c", inst.conf, "add", "op@example.org", "--name", "Opé", "--operator"],
            env={"HALLE_USER_PASSWORD": PASSWORD})
    t.eq(r.returncode, 0, "operator created with the CLI")
    op = Browser(srv.port)
    st, _, _ = login(op, "op@example.org", PASSWORD)
    st, h, page = op.get("/admin")
    t.ok(st == 200 and "paul@example.org" in page, "the operator sees the users", (st, page[:300]))
    # lock paul hard, unlock from the page
    inst.sql("UPDATE hl_users SET locked_hard = 1 WHERE email = 'paul@example.org'")
    pid = inst.sql("SELECT id FROM hl_users WHERE email = 'paul@example.org'")[0][0]
    st, h, page = op.get("/admin?q=paul")
    t.ok("Débloquer" in page, "a locked account has an unlock button")
    st, h, page = op.submit("/admin?q=paul", "/admin/users/%d/unlock" % pid, {})
    t.eq(st, 303, "the operator unlocks it")
    t.eq(inst.sql("SELECT locked_hard FROM hl_users WHERE id = ?", pid)[0][0], 0, "unlocked in the database")
    st, h, page = op.get("/admin/plugins")
    t.eq(st, 200, "the operator reaches the plugins page")


def test_delete(t, srv, inst, inbox):
    b = Browser(srv.port)
    st, _, _ = login(b, "lise.martin@example.org", "Reset-2028x")
    st, h, page = b.submit("/account", "/account/delete", {"delete_password": "Reset-2028x"})
    t.eq(st, 422, "deletion needs the confirmation box")
    st, h, page = b.submit("/account", "/account/delete", {"delete_password": "Reset-2028x", "confirm": "1"})
    t.ok(st == 200 and "supprimé" in page, "account deleted", page[:300])
    row = inst.sql("SELECT email, name, phone, address, deleted_at FROM hl_users WHERE name = '' AND deleted_at IS NOT NULL")
    left = inst.sql("SELECT count(*) FROM hl_users WHERE email LIKE 'lise%'")[0][0]
    sessions = inst.sql("SELECT count(*) FROM hl_sessions s JOIN hl_users u ON u.id = s.user_id WHERE u.deleted_at IS NOT NULL")[0][0]
    t.ok(row and row[0][0].endswith("@invalid") and not row[0][2] and not row[0][3], "personal data anonymised", row)
    t.eq(left, 0, "the address is gone from the database")
    t.eq(sessions, 0, "its sessions are gone")
    st, _, _ = login(b, "lise.martin@example.org", "Reset-2028x")
    t.eq(st, 401, "a deleted account cannot log in")


def main():
    t = Tap()
    inbox = Inbox()
    port = free_port()
    inst = Instance()
    inst.set(smtp_url="smtp://127.0.0.1:%d" % inbox.port, mail_interval=1, password_cost="min", login_rate_limit=1000,
             base_url="http://127.0.0.1:%d" % port, mail_from="halle <noreply@example.org>")
    srv = Server(inst, workers=2, tap=t, extra_args=["--listen", "127.0.0.1:%d" % port])
    try:
        srv.start()
        t.run(test_signup_flow, srv, inst, inbox)
        t.run(test_reset, srv, inst, inbox)
        t.run(test_lockout, srv, inst, inbox)
        t.run(test_rate_limit, srv, inst, inbox)
        t.run(test_secure_cookie, srv, inst, inbox)
        t.run(test_operator, srv, inst, inbox)
        t.run(test_delete, srv, inst, inbox)
    finally:
        srv.stop()
        inbox.stop()
    t.done()


if __name__ == "__main__":
    main()
