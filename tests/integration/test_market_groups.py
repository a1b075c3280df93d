# Marketplace local groups end to end, against the real server with the market plugin: the
# directory (search by name and town, wildcards taken literally, pagination), creating a group
# (the creator becomes a member and the group's coordinator in the core's roles, the one record
# of who runs a group: the market keeps no copy), every join
# policy with requests, the waiting list and leaving, the coordinators' admin pages and their
# walls between groups, the public page (accepted producers, products of offered catalogs),
# HTML escaping, CSRF, and a group of 10,000 members.
import html
import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run  # noqa: E402

PASSWORD = "Prune-2026"
MARKET_DIR = os.environ.get("HALLE_MARKET_DIR") or os.path.join(
    os.environ.get("HALLE_BUILDDIR", "/work/main/build"), "plugins", "market", ".libs")
NOW = "2026-01-01T10:00:00Z"


def setup(t):
    inst = Instance(name="Halle des groupes")
    inst.set(plugin_dirs=MARKET_DIR, password_cost="min", login_rate_limit="1000")
    r = run(["plugin", "-c", inst.conf, "enable", "market"])
    if not t.ok(r.returncode == 0, "the market plugin is enabled", r.stderr):
        raise SystemExit(t.done())
    for who in ("alice", "bob", "carol", "dave", "erin", "frank", "oscar"):
        args = ["user", "-c", inst.conf, "add", "%s@example.org" % who, "--name", who.capitalize()]
        if who == "oscar":
            args.append("--operator")
        r = run(args, env={"HALLE_USER_PASSWORD": PASSWORD})
        t.ok(r.returncode == 0, "user %s created" % who, r.stderr)
    return inst


def db(inst):
    return inst.connect()


def login(t, port, who):
    b = Browser(port)
    st, h, page = b.submit("/login", "/login", {"email": "%s@example.org" % who, "password": PASSWORD})
    t.ok(st == 303, "%s logs in" % who, (st, page[:300]))
    return b


def user_id(inst, who):
    with db(inst) as c:
        return c.execute("SELECT id FROM hl_users WHERE email = ?", ("%s@example.org" % who,)).fetchone()[0]


def member(inst, slug, who):
    with db(inst) as c:
        return c.execute("SELECT m.role, m.status FROM market_members m JOIN market_groups g ON g.id = m.group_id "
                         "JOIN hl_users u ON u.id = m.user_id WHERE g.slug = ? AND u.email = ?",
                         (slug, "%s@example.org" % who)).fetchone()


def group_id(inst, slug):
    with db(inst) as c:
        return c.execute("SELECT id FROM market_groups WHERE slug = ?", (slug,)).fetchone()[0]


GROUP = {"name": "", "description": "Légumes et fromages du coin.", "kind": "buying_group",
         "join_policy": "open", "address": "1 place de la Halle", "postcode": "44000", "town": "Nantes"}


def create(t, b, name, **over):
    fields = dict(GROUP, name=name, **over)
    st, h, page = b.submit("/groups/new", "/groups/new", fields)
    loc = h.get("Location") or ""
    m = re.match(r"^/groups/([a-z0-9-]+)/admin\?done=created$", loc)
    t.ok(st == 303 and m, "group %r is created and its coordinator sent to its admin page" % name, (st, loc, page[:300]))
    return m.group(1) if m else None


def post(b, page_path, action, fields=None):
    return b.submit(page_path, action, fields or {})


def count_rows(page, cls):
    return len(re.findall(r'class="%s"' % cls, page))


# ---- creation and coordinators ----------------------------------------------------------------

def creation(t, srv, inst, s):
    alice = s["alice"] = login(t, srv.port, "alice")
    bob = s["bob"] = login(t, srv.port, "bob")
    visitor = Browser(srv.port)

    st, h, page = visitor.get("/groups/new")
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to /login to create a group", st)
    st, h, page = alice.get("/groups/new")
    t.ok(st == 200 and 'name="join_policy"' in page, "the creation form shows", st)

    for bad, why in (({"name": "x"}, "a 1-character name"), ({"name": "y" * 121}, "a 121-character name"),
                     ({"name": "Bon nom", "kind": "bogus"}, "an unknown kind"),
                     ({"name": "Bon nom", "join_policy": "sometimes"}, "an unknown join policy"),
                     ({"name": "Bon\x01nom"}, "a control character"),
                     ({"name": "Bon nom", "postcode": "<44>"}, "a junk postcode")):
        fields = dict(GROUP, **bad)
        st, h, page = alice.submit("/groups/new", "/groups/new", fields)
        t.ok(st == 422 and 'class="notice error"' in page and 'value="Nantes"' in page,
             "creation refuses %s with 422 and the form as it was typed" % why, (st, page[:200]))
    with db(inst) as c:
        t.eq(c.execute("SELECT count(*) FROM market_groups").fetchone()[0], 0, "no group was stored by refused forms")

    slug = create(t, alice, "Les Paniers de l'Étang")
    t.eq(slug, "les-paniers-de-l-etang", "the slug comes from the name")
    s["a"] = slug
    t.eq(member(inst, slug, "alice"), ("member", "active"), "the creator is an active member")
    with db(inst) as c:
        roles = c.execute("SELECT role, group_id FROM hl_user_roles WHERE user_id = ?", (user_id(inst, "alice"),)).fetchall()
    t.ok((4, group_id(inst, slug)) in roles, "the core knows the creator as the group's coordinator", roles)
    slug2 = create(t, bob, "Les Paniers de l'Étang", town="Rezé")
    t.eq(slug2, "les-paniers-de-l-etang-2", "a second group with the same name gets -2")
    s["b"] = slug2

    st, h, page = alice.get("/groups/%s/admin" % slug)
    t.ok(st == 200 and "Administrer" in page and "Admettre le suivant" in page, "the coordinator opens the admin page", st)
    st, h, page = bob.get("/groups/%s/admin" % slug)
    t.eq(st, 403, "another user's GET of the admin page is 403")
    st, h, page = visitor.get("/groups/%s/admin" % slug)
    t.ok(st == 303 and h.get("Location") == "/login", "a visitor is sent to /login from the admin page", st)
    oscar = login(t, srv.port, "oscar")
    st, h, page = oscar.get("/groups/%s/admin" % slug)
    t.eq(st, 200, "an operator may open any group's admin page")
    st, h, page = alice.get("/groups/nope-nothing/admin")
    t.eq(st, 404, "an unknown group's admin page is 404")


# ---- joining --------------------------------------------------------------------------------------

def set_policy(inst, slug, policy):
    with db(inst) as c:
        c.execute("UPDATE market_groups SET join_policy = ? WHERE slug = ?", (policy, slug))


def join(b, slug):
    return post(b, "/groups/" + slug, "/groups/%s/join" % slug)


def policies(t, srv, inst, s):
    a, alice = s["a"], s["alice"]
    carol, dave, erin = (login(t, srv.port, w) for w in ("carol", "dave", "erin"))
    s.update(carol=carol, dave=dave, erin=erin)

    # visitors
    st, h, page = Browser(srv.port).get("/groups/" + a)
    t.ok(st == 200 and "Connectez-vous pour rejoindre" in page, "a visitor is asked to log in to join", st)

    # open
    st, h, page = carol.get("/groups/" + a)
    t.ok("Rejoindre le groupe" in page, "an open group offers to join")
    st, h, page = join(carol, a)
    t.ok(st == 303 and "done=joined" in (h.get("Location") or ""), "joining an open group redirects", (st, h.get("Location")))
    t.eq(member(inst, a, "carol"), ("member", "active"), "open: the user is an active member at once")
    st, h, page = carol.get("/groups/" + a)
    t.ok("Vous êtes membre" in page and "/groups/%s/leave" % a in page, "the page says so, with a leave button")
    st, h, page = join(carol, a)
    t.eq(member(inst, a, "carol"), ("member", "active"), "joining again changes nothing")

    # leave
    st, h, page = post(carol, "/groups/" + a, "/groups/%s/leave" % a)
    t.ok(st == 303 and member(inst, a, "carol") is None, "leaving removes the membership", st)
    st, h, page = carol.get("/groups/" + a)
    t.ok("Rejoindre le groupe" in page and "Vous êtes membre" not in page, "after leaving, the join button is back")
    st, h, page = post(alice, "/groups/" + a, "/groups/%s/leave" % a)
    t.ok(st == 409 and member(inst, a, "alice") == ("member", "active"), "a coordinator cannot leave their group", st)

    # approval
    set_policy(inst, a, "approval")
    st, h, page = carol.get("/groups/" + a)
    t.ok("Demander à rejoindre" in page, "an approval group offers to ask")
    join(carol, a)
    join(dave, a)
    t.eq(member(inst, a, "carol"), ("member", "pending"), "approval: the request is pending")
    st, h, page = carol.get("/groups/" + a)
    t.ok("Demande en attente" in page, "the page says the request is pending")
    st, h, page = alice.get("/groups/%s/admin" % a)
    t.ok("Carol" in page and "/admin/members/%d/accept" % user_id(inst, "carol") in page,
         "the coordinator sees the request with an accept button")
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/members/%d/accept" % (a, user_id(inst, "carol")))
    t.ok(st == 303 and member(inst, a, "carol") == ("member", "active"), "accepting makes the member active", st)
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/members/%d/decline" % (a, user_id(inst, "dave")))
    t.ok(st == 303 and member(inst, a, "dave") == ("member", "declined"), "declining marks the request declined", st)
    st, h, page = dave.get("/groups/" + a)
    t.ok("Vous êtes membre" not in page and "Demande en attente" not in page, "a declined user is not a member")
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/members/%d/remove" % (a, user_id(inst, "alice")))
    t.ok(st == 409 and member(inst, a, "alice") == ("member", "active"), "a coordinator cannot be removed", st)
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/members/%d/remove" % (a, user_id(inst, "carol")))
    t.ok(st == 303 and member(inst, a, "carol") is None, "the coordinator removes a member", st)
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/members/%d/accept" % (a, 999999))
    t.eq(st, 404, "accepting someone who asked nothing is 404")

    # waiting list
    set_policy(inst, a, "waiting_list")
    with db(inst) as c:
        c.execute("DELETE FROM market_members WHERE user_id = ?", (user_id(inst, "dave"),))
    for b in (carol, dave, erin):
        join(b, a)
    t.eq([member(inst, a, w) for w in ("carol", "dave", "erin")], [("member", "waiting")] * 3,
         "waiting list: every request waits")
    for i, (w, b) in enumerate((("carol", carol), ("dave", dave), ("erin", erin))):
        st, h, page = b.get("/groups/" + a)
        t.ok("Sur liste d'attente (position %d)" % (i + 1) in html.unescape(page),
             "%s is number %d on the waiting list" % (w, i + 1),
             re.findall(r"position \d+", page))
    st, h, page = alice.get("/groups/%s/admin/waiting" % a)
    names = re.findall(r'<span class="market-position">(\d+)\.</span> (\w+)', page)
    t.eq(names, [("1", "Carol"), ("2", "Dave"), ("3", "Erin")], "the waiting list page shows the order")
    st, h, page = alice.get("/groups/%s/admin/waiting?q=erin" % a)
    names = re.findall(r'<span class="market-position">(\d+)\.</span> (\w+)', page)
    t.eq(names, [("3", "Erin")], "a search of the waiting list keeps the true position")
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/waiting/admit-next" % a)
    t.ok(st == 303 and member(inst, a, "carol") == ("member", "active"), "admit-next admits the first one", st)
    t.eq(member(inst, a, "dave"), ("member", "waiting"), "the second one still waits")
    st, h, page = dave.get("/groups/" + a)
    t.ok("Sur liste d'attente (position 1)" in html.unescape(page), "dave moves up to position 1")
    post(alice, "/groups/%s/admin/waiting" % a, "/groups/%s/admin/waiting/admit-next" % a, {"back": "waiting"})
    post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/waiting/admit-next" % a)
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/waiting/admit-next" % a)
    t.ok(st == 303 and "done=nobody" in (h.get("Location") or ""), "admit-next on an empty list says so")
    t.eq([member(inst, a, w) for w in ("dave", "erin")], [("member", "active")] * 2, "everyone was admitted in turn")

    # closed and full
    frank = s["frank"] = login(t, srv.port, "frank")
    for policy, text in (("closed", "Ce groupe n'accepte pas de nouveaux membres"), ("full", "Ce groupe est complet")):
        set_policy(inst, a, policy)
        st, h, page = frank.get("/groups/" + a)
        t.ok(text in html.unescape(page) and "/groups/%s/join" % a not in page,
             "%s: the page says so, without a join button" % policy)
        st, h, page = join(frank, a)
        t.ok(st == 409 and text in html.unescape(page), "%s: joining is 409 with the message" % policy, (st, page[:300]))
        t.eq(member(inst, a, "frank"), None, "%s: nothing was stored" % policy)
    set_policy(inst, a, "open")


# ---- walls between groups -----------------------------------------------------------------------

def walls(t, srv, inst, s):
    a, b_slug, alice, bob, carol = s["a"], s["b"], s["alice"], s["bob"], s["carol"]
    join(carol, b_slug)
    t.eq(member(inst, b_slug, "carol"), ("member", "active"), "carol joins group B")
    st, h, page = alice.get("/groups/%s/admin" % b_slug)
    t.eq(st, 403, "the coordinator of A gets 403 on B's admin page")
    for tail in ("pending", "waiting", "producers"):
        st, h, page = alice.get("/groups/%s/admin/%s" % (b_slug, tail))
        t.eq(st, 403, "and on B's %s list" % tail)
    carol_id = user_id(inst, "carol")
    for action, fields in (("admin/settings", dict(GROUP, name="Pris par Alice")),
                           ("admin/members/%d/remove" % carol_id, {}),
                           ("admin/waiting/admit-next", {}),
                           ("admin/places/add", {"place_name": "Chez Alice"})):
        st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/%s" % (b_slug, action), fields)
        t.eq(st, 403, "the coordinator of A gets 403 posting %s to B" % action.split("/")[1])
    with db(inst) as c:
        name = c.execute("SELECT name FROM market_groups WHERE slug = ?", (b_slug,)).fetchone()[0]
        places = c.execute("SELECT count(*) FROM market_places").fetchone()[0]
    t.eq(name, "Les Paniers de l'Étang", "B's settings are unchanged")
    t.eq(places, 0, "no place was added to B")
    t.eq(member(inst, b_slug, "carol"), ("member", "active"), "B's member is still there")
    st, h, page = post(carol, "/groups/" + a, "/groups/%s/admin/settings" % a, dict(GROUP, name="Pris"))
    t.eq(st, 403, "a plain member cannot post A's settings")

    # the coordinator's own settings and places
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/settings" % a,
                       dict(GROUP, name="Les Paniers de l'Étang (Nantes)", join_policy="approval"))
    t.ok(st == 303 and "done=settings" in (h.get("Location") or ""), "the coordinator saves A's settings", st)
    with db(inst) as c:
        row = c.execute("SELECT name, join_policy, slug FROM market_groups WHERE slug = ?", (a,)).fetchone()
    t.eq(row, ("Les Paniers de l'Étang (Nantes)", "approval", a), "the settings are stored, the slug kept")
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/settings" % a, dict(GROUP, name="Z"))
    t.ok(st == 422 and 'class="notice error"' in page, "invalid settings are 422 with the form", st)
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/places/add" % a,
                       {"place_name": "Salle des fêtes", "place_address": "2 rue Haute", "place_postcode": "44000",
                        "place_town": "Nantes"})
    t.ok(st == 303, "the coordinator adds a place", st)
    st, h, page = Browser(srv.port).get("/groups/" + a)
    t.ok("Salle des fêtes" in page, "the place shows on the public page")
    with db(inst) as c:
        pid = c.execute("SELECT id FROM market_places WHERE name = 'Salle des fêtes'").fetchone()[0]
    st, h, page = post(bob, "/groups/%s/admin" % b_slug, "/groups/%s/admin/places/%d/delete" % (b_slug, pid))
    t.eq(st, 404, "B's coordinator cannot delete A's place through B")
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/places/%d/delete" % (a, pid))
    with db(inst) as c:
        left = c.execute("SELECT count(*) FROM market_places").fetchone()[0]
    t.ok(st == 303 and left == 0, "A's coordinator deletes the place", st)
    set_policy(inst, a, "open")


# ---- the public page: producers and products -------------------------------------------------------

def shop(t, srv, inst, s):
    a, alice = s["a"], s["alice"]
    gid, gb = group_id(inst, a), group_id(inst, s["b"])
    with db(inst) as c:
        def producer(uid, slug, name, status):
            pid = c.execute("INSERT INTO market_producers (user_id, slug, business_name, siret, town, charter_version, "
                            "charter_accepted_at, created_at) VALUES (?, ?, ?, '73282932000074', 'Clisson', '2021-11', ?, ?) "
                            "RETURNING id", (uid, slug, name, NOW, NOW)).fetchone()[0]
            if status:
                c.execute("INSERT INTO market_group_producers (group_id, producer_id, status, requested_at) "
                          "VALUES (?, ?, ?, ?)", (gid, pid, status, NOW))
            return pid

        def catalog(pid, name, active, groups):
            cid = c.execute("INSERT INTO market_catalogs (producer_id, name, active, created_at) VALUES (?, ?, ?, ?) "
                            "RETURNING id", (pid, name, active, NOW)).fetchone()[0]
            for g in groups:
                c.execute("INSERT INTO market_catalog_groups (catalog_id, group_id) VALUES (?, ?)", (cid, g))
            return cid

        def product(cid, pid, name, cents, active=1, organic=0, unit="kg", qty=1):
            c.execute("INSERT INTO market_products (catalog_id, producer_id, name, unit, quantity, price_cents, "
                      "vat_rate_bp, organic, active, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 550, ?, ?, ?, ?)",
                      (cid, pid, name, unit, qty, cents, organic, active, NOW, NOW))

        p1 = producer(user_id(inst, "dave"), "ferme-du-chene", "Ferme du Chêne", "accepted")
        p2 = producer(user_id(inst, "erin"), "chevrerie-des-pres", "Chèvrerie des Prés", "pending")
        p3 = producer(user_id(inst, "frank"), "verger-refuse", "Verger Refusé", "declined")
        s["p2"] = p2
        c1 = catalog(p1, "Été", 1, [gid])
        product(c1, p1, "Tomates anciennes", 1250, organic=1)
        product(c1, p1, "Pommes de terre 100% locales", 320, qty=2.5)
        product(c1, p1, "Courgettes retirées", 200, active=0)
        c2 = catalog(p1, "Hiver", 0, [gid])
        product(c2, p1, "Poireaux d'hiver", 180)
        c3 = catalog(p1, "Autre groupe", 1, [gb])
        product(c3, p1, "Radis ailleurs", 150)
        c4 = catalog(p2, "Fromages", 1, [gid])
        product(c4, p2, "Crottin frais", 390, unit="piece")
        c5 = catalog(p3, "Pommes", 1, [gid])
        product(c5, p3, "Pommes refusées", 300)

    visitor = Browser(srv.port)
    st, h, page = visitor.get("/groups/" + a)
    t.ok(st == 200 and '<a href="/producers/ferme-du-chene">Ferme du Chêne</a>' in page,
         "the public page links to the accepted producer")
    t.ok("Chèvrerie des Prés" not in page and "Verger Refusé" not in page, "pending and declined producers are not listed")
    t.ok("Tomates anciennes" in page and "12,50\u00a0€" in page, "an offered product shows with its French price")
    t.ok("2,5 kg" in page and "3,20\u00a0€" in page, "quantities use a decimal comma")
    t.ok('market-organic' in page, "the organic flag shows")
    for name, why in (("Courgettes retirées", "an inactive product"), ("Poireaux", "a product of an inactive catalog"),
                      ("Radis ailleurs", "a product offered to another group"), ("Crottin frais", "a pending producer's product"),
                      ("Pommes refusées", "a declined producer's product")):
        t.ok(name not in page, "the page leaves out %s" % why)
    st, h, page = visitor.get("/groups/%s?q=tomate" % a)
    t.ok("Tomates anciennes" in page and "Pommes de terre" not in page, "products are searchable")
    st, h, page = visitor.get("/groups/%s?q=100%%25" % a)
    t.ok("Pommes de terre" in page and "Tomates" not in page, "a product search for '100%' takes % literally")
    st, h, page = visitor.get("/groups/%s?q=%%25%%25%%25" % a)
    t.eq(count_rows(page, "market-product"), 0, "a search for '%%%' matches nothing")

    # the coordinator accepts the pending producer: their catalog appears
    st, h, page = alice.get("/groups/%s/admin" % a)
    t.ok("Chèvrerie des Prés" in page and "/admin/producers/%d/accept" % p2 in page,
         "the admin page lists the producer's request")
    st, h, page = alice.get("/groups/%s/admin/producers?q=Ch%%C3%%A8vrerie" % a)
    t.ok(count_rows(page, "market-group-producer") == 1 and "Chèvrerie des Prés" in page,
         "the producers list is searchable by name")
    st, h, page = alice.get("/groups/%s/admin/producers?q=Clisson" % a)
    t.eq(count_rows(page, "market-group-producer"), 3, "producers are searchable by town")
    st, h, page = post(s["bob"], "/groups/%s/admin" % s["b"], "/groups/%s/admin/producers/%d/accept" % (a, p2))
    t.eq(st, 403, "B's coordinator cannot accept A's producer")
    st, h, page = post(alice, "/groups/%s/admin/producers" % a, "/groups/%s/admin/producers/%d/accept" % (a, p2),
                       {"back": "producers"})
    t.ok(st == 303 and (h.get("Location") or "").startswith("/groups/%s/admin/producers" % a),
         "A's coordinator accepts the producer", (st, h.get("Location")))
    st, h, page = visitor.get("/groups/" + a)
    t.ok("Chèvrerie des Prés" in page and "Crottin frais" in page and "1 pièce" in page,
         "the accepted producer and their products now show")
    st, h, page = post(alice, "/groups/%s/admin" % a, "/groups/%s/admin/producers/%d/decline" % (a, 424242))
    t.eq(st, 404, "deciding on a producer who never asked is 404")

    # pagination of products
    with db(inst) as c:
        for i in range(55):
            product(c1, p1, "Lot %02d" % i, 100 + i)
    st, h, page = visitor.get("/groups/" + a)
    t.eq(count_rows(page, "market-product"), 50, "the shop shows 50 products a page")
    t.ok('rel="next" href="/groups/%s?page=2' % a in page, "with a link to the next page")
    st, h, page = visitor.get("/groups/%s?page=2" % a)
    t.eq(count_rows(page, "market-product"), 58 - 50, "page 2 has the rest")


# ---- the directory ----------------------------------------------------------------------------

def directory(t, srv, inst, s):
    with db(inst) as c:
        uid = user_id(inst, "alice")
        rows = [("groupe-%02d" % i, "Groupe %02d" % i, "amap" if i % 2 else "farm_shop", "Villeneuve" if i < 30 else "Montaigu")
                for i in range(60)]
        rows += [("cent-pour-cent", "Cent 100% bio", "amap", "Vertou"), ("sous-tiret", "Sous_tiret", "amap", "Vertou")]
        c.executemany("INSERT INTO market_groups (slug, name, kind, join_policy, town, created_by, created_at) "
                      "VALUES (?, ?, ?, 'open', ?, %d, '%s')" % (uid, NOW), rows)
    b = Browser(srv.port)
    st, h, page = b.get("/groups")
    t.eq(st, 200, "the directory answers")
    t.eq(count_rows(page, "market-group"), 50, "it shows 50 groups a page")
    t.ok("64 résultat(s)" in page and 'href="/groups?page=2' in page, "with the total and a link to page 2",
         re.findall(r"\d+ résultat", page))
    st, h, page = b.get("/groups?page=2")
    t.eq(count_rows(page, "market-group"), 14, "page 2 has the rest")
    st, h, page = b.get("/groups?q=groupe+0")
    t.eq(count_rows(page, "market-group"), 10, "search by name")
    st, h, page = b.get("/groups?q=Montaigu")
    t.eq(count_rows(page, "market-group"), 30, "search by town")
    t.ok("Montaigu" in page and "AMAP" in page and "Boutique à la ferme" in page and "Adhésion libre" in page,
         "entries show the town, the kind and the join policy in French")
    st, h, page = b.get("/groups?q=Rez%C3%A9")
    t.ok(count_rows(page, "market-group") == 1 and 'href="/groups/%s"' % s["b"] in page,
         "search by an accented town finds group B, with a link to its page")
    st, h, page = b.get("/groups?q=%25")
    t.eq(count_rows(page, "market-group"), 1, "a '%' in the search matches only a literal '%'")
    st, h, page = b.get("/groups?q=_")
    t.eq(count_rows(page, "market-group"), 1, "a '_' in the search matches only a literal '_'")
    st, h, page = b.get("/groups?q=" + "x" * 5000)
    t.ok(st == 200 and count_rows(page, "market-group") == 0, "a very long search is cut, not an error", st)
    st, h, page = b.get("/groups?page=99999")
    t.ok(st == 200 and count_rows(page, "market-group") == 0, "a page past the end is empty", st)
    st, h, page = b.get("/groups?page=-4&q=%FF%FE")
    t.ok(st in (200, 400), "junk paging and invalid UTF-8 are no crash", st)


# ---- escaping and CSRF ----------------------------------------------------------------------

def hostile(t, srv, inst, s):
    alice = s["alice"]
    slug = create(t, alice, "<script>alert(1)</script> & Cie", town='"><img src=x>')
    st, h, page = Browser(srv.port).get("/groups/" + slug)
    t.ok(st == 200 and "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Cie" in page,
         "the group's name is HTML-escaped on its page", page[:0])
    t.ok("<img src=x>" not in page, "the town is escaped too")
    st, h, page = Browser(srv.port).get("/groups?q=script")
    t.ok("&lt;script&gt;" in page and "<script>alert" not in page, "and in the directory")

    carol = s["carol"]
    st, h, page = carol.request("POST", "/groups/%s/join" % slug, form={})
    t.eq(st, 403, "a join POST without the CSRF token is 403")
    t.eq(member(inst, slug, "carol"), None, "and stores nothing")
    st, h, page = alice.request("POST", "/groups/%s/admin/settings" % slug, form=dict(GROUP, name="Sans jeton"))
    t.eq(st, 403, "a settings POST without the token is 403")
    st, h, page = alice.request("POST", "/groups/new", form=dict(GROUP, name="Sans jeton"))
    t.eq(st, 403, "a creation POST without the token is 403")
    st, h, page = carol.request("POST", "/groups/%s/join" % slug, form={"_csrf": "forged"})
    t.eq(st, 403, "a join POST with a wrong token is 403")
    with db(inst) as c:
        c.execute("UPDATE market_groups SET theme = 'no-such-theme' WHERE slug = ?", (slug,))
    st, h, page = Browser(srv.port).get("/groups/" + slug)
    t.ok(st == 200 and "&lt;script&gt;" in page, "a group whose theme is missing still shows, in the site theme", st)
    st, h, page = Browser(srv.port).get("/groups/no-such-group")
    t.eq(st, 404, "an unknown group is 404")
    st, h, page = carol.get("/groups/%s/admin/places/1/delete" % slug)
    t.ok(st in (404, 405), "admin actions are POST only", st)


# ---- 10,000 members -----------------------------------------------------------------------------

def core_coordinators(t, srv, inst, s):
    """Who coordinates a group is read from the core's roles each time, never from a copy."""
    dave = login(t, srv.port, "dave")
    erin = login(t, srv.port, "erin")
    d = create(t, dave, "Le Groupe de Dave")
    gid = group_id(inst, d)
    st, h, page = join(erin, d)
    t.eq(member(inst, d, "erin"), ("member", "active"), "Erin joins Dave's group")
    with db(inst) as c:  # the operator makes Erin a coordinator too, in the core only
        c.execute("INSERT INTO hl_user_roles (user_id, role, group_id) VALUES (?, 4, ?)", (user_id(inst, "erin"), gid))
    st, h, page = dave.get("/groups/%s/admin" % d)
    t.ok(st == 200 and re.search(r"Erin <strong>\(coordinateur\)</strong>", page),
         "the member list marks Erin as coordinator from the core's roles", page[:3000])
    st, h, page = post(erin, "/groups/" + d, "/groups/%s/leave" % d)
    t.ok(st == 409 and member(inst, d, "erin") == ("member", "active"), "so Erin cannot leave while she coordinates", st)
    with db(inst) as c:  # and the operator takes Dave's role back, in the core only
        c.execute("DELETE FROM hl_user_roles WHERE user_id = ? AND role = 4 AND group_id = ?", (user_id(inst, "dave"), gid))
    st, h, page = erin.get("/groups/%s/admin" % d)
    t.ok(st == 200 and "Erin <strong>" in page and not re.search(r"Dave <strong>", page),
         "Dave is no longer shown as coordinator", page[:3000])
    st, h, page = post(dave, "/groups/" + d, "/groups/%s/leave" % d)
    t.ok(st == 303 and member(inst, d, "dave") is None, "and may leave the group like any member", st)
    st, h, page = dave.get("/groups/%s/admin" % d)
    t.eq(st, 403, "nor administers it any more")


def many_members(t, srv, inst, s):
    a, alice = s["a"], s["alice"]
    gid = group_id(inst, a)
    with db(inst) as c:
        before = c.execute("SELECT count(*) FROM market_members WHERE group_id = ? AND status = 'active'",
                           (gid,)).fetchone()[0]
        # Too many for the command line: rows as the core writes them, its search copy included,
        # made by one statement each (numbers written with 5 digits: the 2nd to 6th of 100000 + i).
        c.execute("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 9999) "
                  "INSERT INTO hl_users (email, name, password_hash, terms_version, terms_accepted_at, "
                  "age_certified_at, created_at, name_folded) "
                  "SELECT 'm' || substr(CAST(100000 + i AS TEXT), 2) || '@example.net', "
                  "'Membre ' || substr(CAST(100000 + i AS TEXT), 2), 'x', '1', ?, ?, ?, "
                  "'membre ' || substr(CAST(100000 + i AS TEXT), 2) FROM n", (NOW, NOW, NOW))
        c.execute("INSERT INTO market_members (group_id, user_id, role, status, requested_at, decided_at) "
                  "SELECT ?, id, 'member', 'active', "
                  "'2026-02-01T00:00:' || substr(CAST(100 + CAST(substr(email, 2, 5) AS INTEGER) % 60 AS TEXT), 2) || 'Z', ? "
                  "FROM hl_users WHERE email LIKE 'm_____@example.net'", (gid, NOW))
    total = before + 10000
    st, h, page = alice.get("/groups/%s/admin" % a)
    t.eq(st, 200, "the admin page answers with 10,000 members")
    t.ok("%d résultat(s)" % total in page and "Membres (%d)" % total in page, "with the right count",
         re.findall(r"\d+ résultat", page))
    t.eq(count_rows(page, "market-member"), 50, "and one page of 50 members")
    st, h, page = alice.get("/groups/%s/admin?q=Membre+09999" % a)
    t.ok(st == 200 and count_rows(page, "market-member") == 1 and "m09999@example.net" in page,
         "a search by name finds the one member", st)
    st, h, page = alice.get("/groups/%s/admin?q=m0012" % a)
    t.ok(st == 200 and count_rows(page, "market-member") == 10 and "10 résultat(s)" in page,
         "a search by e-mail finds the ten members", re.findall(r"\d+ résultat", page))
    st, h, page = alice.get("/groups/%s/admin?page=201" % a)
    t.ok(st == 200 and count_rows(page, "market-member") == total - 200 * 50, "the last page holds the rest", st)
    st, h, page = alice.get("/groups/%s/admin?q=_" % a)
    t.ok(st == 200 and "0 résultat(s)" in page, "'_' is literal in the member search", re.findall(r"\d+ résultat", page))


def main():
    t = Tap()
    inst = setup(t)
    s = {}
    with Server(inst, workers=2, tap=t) as srv:
        for fn in (creation, policies, walls, shop, directory, hostile, core_coordinators, many_members):
            if fn is not creation and "a" not in s:
                break
            t.run(fn, srv, inst, s)
        log = srv.log_text()
    t.ok("groups:" not in log, "no error logged by the groups module", "\n".join(
        l for l in log.splitlines() if "groups:" in l)[:2000])
    t.done()


if __name__ == "__main__":
    main()
