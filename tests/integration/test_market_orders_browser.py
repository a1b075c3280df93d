# Ordering on a phone, in headless Chromium (tests/browser/orders.mjs): a member at 360 px
# orders their cart from the checkout and sees the confirmation and their orders; the group's
# coordinator opens the distribution's attendance sheet, which prints without the site's
# header. No page scrolls sideways and no script error or CSP violation occurs. The data is
# test_market_orders' (distributions by SQL). Screenshots order-360.png, report-360.png and
# report-print.png go to $HALLE_BUILDDIR/tests/artefacts/. HALLE_SKIP_BROWSER=1 skips it.
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, Server, Tap, browser_prerequisites, run_browser_script  # noqa: E402
import test_market_orders as mo  # noqa: E402

STEPS = ["launch", "the member logs in", "\"Commander\" lands on the confirmation",
         "the confirmation shows the lines, total and pickup place", "confirmation: no sideways scrolling at 360 px",
         "\"Mes commandes\" lists the upcoming pickup", "my orders: no sideways scrolling at 360 px",
         "the attendance sheet lists the member and the amount", "report: no sideways scrolling at 360 px",
         "printed, the report leaves the header and the tabs out", "no console errors or CSP violations", "end"]


def main():
    if os.environ.get("HALLE_SKIP_BROWSER") == "1":
        print("1..0 # SKIP browser tests disabled (HALLE_SKIP_BROWSER=1)")
        sys.exit(0)
    t = Tap()
    chrome = browser_prerequisites(t)
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    artefacts = os.path.join(build, "tests", "artefacts")
    os.makedirs(artefacts, exist_ok=True)
    inst = mo.make_instance(t)
    with Server(inst, workers=2, tap=t) as srv:
        s = mo.setup(t, inst, srv)
        now = mo.iso(time.time())
        bob = mo.uid(inst, "bob")
        inst.sql("INSERT INTO market_carts (user_id, distribution_id, created_at, updated_at) VALUES (?, ?, ?, ?)",
                 bob, s["open"], now, now)
        cart = mo.one(inst, "SELECT id FROM market_carts WHERE user_id = ?", bob)
        inst.sql("INSERT INTO market_cart_items (cart_id, product_id, count) VALUES (?, ?, 2)", cart, s["products"]["pain"])
        dist = "/groups/%s/distributions/%d" % (s["slug"], s["open"])
        command = {"base": "http://127.0.0.1:%d" % srv.port, "checkout": dist + "/checkout", "report": dist + "/report",
                   "member": {"email": "bob@example.org", "password": mo.PASSWORD},
                   "coordinator": {"email": "alice@example.org", "password": mo.PASSWORD}, "artefacts": artefacts}
        run_browser_script(t, inst, chrome, "orders.mjs", command, STEPS)
        t.eq(mo.one(inst, "SELECT count(*) FROM market_orders WHERE user_id = ? AND status = 'placed'", bob), 1,
             "the order is in the database")
        t.eq(mo.one(inst, "SELECT count(*) FROM market_carts WHERE user_id = ?", bob), 0, "the cart was emptied")
    for name in ("order-360.png", "report-360.png", "report-print.png"):
        f = os.path.join(artefacts, name)
        t.ok(os.path.isfile(f) and os.path.getsize(f) > 1000, "artefact %s written" % name, f)
    t.done()


if __name__ == "__main__":
    main()
