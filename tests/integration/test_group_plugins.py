# Plugins a local group turns on for its own pages (issue: "some plugins can be enabled per
# local group by its coordinator"): the operator enables the group-level plugin `social` for
# the instance; each group's coordinator turns it on or off on the group's admin page; its
# share links (plain links, no script) appear only on the pages of the groups that turned it
# on, through the market.group.blocks hook.
import os
import re
import sys
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Browser, Instance, Server, Tap, run, SRC_DIR  # noqa: E402

BUILD = os.environ.get("HALLE_BUILDDIR", "/work/main/build")
MARKET = os.environ.get("HALLE_MARKET_DIR") or os.path.join(BUILD, "plugins", "market", ".libs")
PASSWORD = "Prune-2026"


def main():
    t = Tap()
    inst = Instance()
    inst.set(plugin_dirs="%s:%s" % (MARKET, os.path.join(SRC_DIR, "plugins")), password_cost="min",
             login_rate_limit=1000, base_url="https://halle.example.org")
    for name in ("market", "social"):
        r = run(["plugin", "-c", inst.conf, "enable", name])
        t.ok(r.returncode == 0, "operator enables %s" % name, r.stderr)
    r = run(["plugin", "-c", inst.conf, "info", "social"])
    t.ok("social" in r.stdout and r.returncode == 0, "social is listed", r.stdout)
    for mail in ("anne@example.org", "bruno@example.org"):
        r = run(["user", "-c", inst.conf, "add", mail, "--name", mail.split("@")[0]], env={"HALLE_USER_PASSWORD": PASSWORD})
        t.eq(r.returncode, 0, "account %s" % mail)
    with Server(inst, workers=1, tap=t) as srv:
        anne, bruno = Browser(srv.port), Browser(srv.port)
        for b, mail in ((anne, "anne@example.org"), (bruno, "bruno@example.org")):
            st, h, _ = b.submit("/login", "/login", {"email": mail, "password": PASSWORD})
            t.eq(st, 303, "login %s" % mail)
        fields = {"description": "Un groupe", "kind": "amap", "join_policy": "open", "address": "1 place", "postcode": "26400",
                  "town": "Crest"}
        st, h, _ = anne.submit("/groups/new", "/groups/new", dict(fields, name="AMAP des Tilleuls"))
        t.eq(st, 303, "anne creates a group")
        st, h, _ = bruno.submit("/groups/new", "/groups/new", dict(fields, name="Paniers du Marché"))
        t.eq(st, 303, "bruno creates another")
        st, h, page = anne.get("/groups/amap-des-tilleuls/admin")
        t.ok(st == 200 and 'id="group-plugin-social"' in page and "Activer" in page,
             "the group's admin page offers the group-level plugin", page[-1500:])
        t.ok('id="group-plugin-market"' not in page, "plugins that are not group-level are not offered")
        st, h, page = anne.get("/groups/amap-des-tilleuls")
        t.ok(st == 200 and 'class="share"' not in page, "off by default: no share links")
        st, h, page = anne.submit("/groups/amap-des-tilleuls/admin", "/groups/amap-des-tilleuls/admin/plugins/social/on", {})
        t.eq(st, 303, "the coordinator turns social on")
        st, h, page = anne.get("/groups/amap-des-tilleuls")
        want = urllib.parse.quote("https://halle.example.org/groups/amap-des-tilleuls", safe="")
        t.ok('class="share"' in page and want in page and "<script" not in page,
             "the group's page shows share links with the page's public address, and no script", page[-2500:])
        st, h, page = anne.get("/groups/paniers-du-marche")
        t.ok(st == 200 and 'class="share"' not in page, "another group's page is unchanged")
        st, h, page = bruno.submit("/groups/paniers-du-marche/admin", "/groups/amap-des-tilleuls/admin/plugins/social/off", {})
        t.eq(st, 403, "a coordinator cannot toggle plugins of another group")
        st, h, page = anne.submit("/groups/amap-des-tilleuls/admin", "/groups/amap-des-tilleuls/admin/plugins/market/on", {})
        t.ok(st == 422 and "per group" in page, "a plugin that is not group-level cannot be turned on for a group", page[-800:])
        st, h, page = anne.request("POST", "/groups/amap-des-tilleuls/admin/plugins/social/off", form={})
        t.eq(st, 403, "without the CSRF token: refused")
        t.eq(inst.sql("SELECT enabled FROM hl_plugin_scopes WHERE plugin = 'social'"), [(1,)],
             "the choice is stored per group")
        st, h, page = anne.submit("/groups/amap-des-tilleuls/admin", "/groups/amap-des-tilleuls/admin/plugins/social/off", {})
        st, h, page = anne.get("/groups/amap-des-tilleuls")
        t.ok('class="share"' not in page, "turned off: the links are gone")
        r = run(["plugin", "-c", inst.conf, "set", "social", "networks", "mail-only"])
        t.eq(r.returncode, 0, "operator setting of the plugin")
    t.done()


if __name__ == "__main__":
    main()
