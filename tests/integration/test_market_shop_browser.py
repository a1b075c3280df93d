# The shop on a phone, in headless Chromium (tests/browser/shop.mjs): a visitor at 360 px
# browses a distribution's shop, uses the steppers and the live total, fills the cart with the
# plain forms, searches, opens a product page, reaches the checkout, logs in and finds the cart
# ready to order; no page scrolls sideways and no script error or CSP violation occurs. The data
# is test_market_shop's (distributions by SQL). Screenshots shop-360.png and checkout-360.png go
# to $HALLE_BUILDDIR/tests/artefacts/. HALLE_SKIP_BROWSER=1 skips it (make distcheck).
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, Server, Tap, browser_prerequisites, run_browser_script  # noqa: E402
import test_market_shop  # noqa: E402

STEPS = ["launch", "the shop opens", "shop: no sideways scrolling at 360 px", "shop.js adds steppers",
         "the live total shows what the cart would cost", "the plain form adds to the cart",
         "a search without accents finds \"Crème fraîche\", only it", "the product page opens from the name",
         "checkout: no sideways scrolling at 360 px", "a visitor is asked to log in to order",
         "the header links to the cart, kept across login", "the same cart can now be ordered",
         "no console errors or CSP violations", "end"]


def main():
    if os.environ.get("HALLE_SKIP_BROWSER") == "1":
        print("1..0 # SKIP browser tests disabled (HALLE_SKIP_BROWSER=1)")
        sys.exit(0)
    t = Tap()
    chrome = browser_prerequisites(t)
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    artefacts = os.path.join(build, "tests", "artefacts")
    os.makedirs(artefacts, exist_ok=True)
    inst, d = test_market_shop.setup(t)
    with Server(inst, workers=2, tap=t) as srv:
        command = {"base": "http://127.0.0.1:%d" % srv.port, "shop": d["url"], "email": "alice@example.org",
                   "password": test_market_shop.PASSWORD, "artefacts": artefacts}
        run_browser_script(t, inst, chrome, "shop.mjs", command, STEPS)
        log = srv.log_text()
    t.ok("shop:" not in log, "no error logged by the shop")
    for name in ("shop-360.png", "checkout-360.png"):
        f = os.path.join(artefacts, name)
        t.ok(os.path.isfile(f) and os.path.getsize(f) > 1000, "artefact %s written" % name, f)
    t.done()


if __name__ == "__main__":
    main()
