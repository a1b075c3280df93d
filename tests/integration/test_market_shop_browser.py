# The shop on a phone, in headless Chromium (tests/browser/shop.mjs): a visitor at 360 px
# browses a distribution's shop, uses the steppers and the live total, fills the cart with the
# plain forms, searches, opens a product page, reaches the checkout, logs in and finds the cart
# ready to order; no page scrolls sideways and no script error or CSP violation occurs. The data
# is test_market_shop's (distributions by SQL). Screenshots shop-360.png and checkout-360.png go
# to $HALLE_BUILDDIR/tests/artefacts/. HALLE_SKIP_BROWSER=1 skips it (make distcheck).
import json
import os
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HALLE_BIN, SRC_DIR, Server, Tap  # noqa: E402
import test_market_shop  # noqa: E402

BROWSER_DIR = os.path.join(SRC_DIR, "tests", "browser")
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
    chrome = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (os.access(chrome, os.X_OK) and shutil.which("node")
            and os.path.isfile(os.path.join(BROWSER_DIR, "node_modules", "playwright-core", "package.json"))):
        t.ok(False, "chromium, node and playwright-core (npm ci in tests/browser) are installed")
        t.done()
    build = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.path.abspath(HALLE_BIN))
    artefacts = os.path.join(build, "tests", "artefacts")
    os.makedirs(artefacts, exist_ok=True)
    inst, d = test_market_shop.setup(t)
    seen = []
    with Server(inst, workers=2, tap=t) as srv:
        command = {"base": "http://127.0.0.1:%d" % srv.port, "shop": d["url"], "email": "alice@example.org",
                   "password": test_market_shop.PASSWORD, "artefacts": artefacts}
        env = dict(os.environ, CHROMIUM=chrome, TMPDIR=inst.path("."))
        env.pop("DISPLAY", None)
        try:
            p = subprocess.run(["node", os.path.join(BROWSER_DIR, "shop.mjs"), json.dumps(command)], cwd=BROWSER_DIR,
                               env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=90)
            out, err, rc = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), p.returncode
        except subprocess.TimeoutExpired as e:
            out, err, rc = (e.stdout or b"").decode("utf-8", "replace"), "timed out", None
        for line in out.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                t.comment("shop.mjs: " + line)
                continue
            seen.append(r.get("step"))
            if r.get("step") != "end":
                detail = r.get("detail")
                t.ok(r.get("ok"), "browser: " + r.get("step", "?"),
                     json.dumps(detail, ensure_ascii=False) if detail is not None else "")
        t.ok(rc == 0, "shop.mjs exits with 0", "exit %r; stderr:\n%s" % (rc, err[-3000:]))
        missing = [s for s in STEPS if s not in seen]
        t.ok(not missing, "the browser went through every step", "not reached: %s" % missing)
        log = srv.log_text()
    t.ok("shop:" not in log, "no error logged by the shop")
    for name in ("shop-360.png", "checkout-360.png"):
        f = os.path.join(artefacts, name)
        t.ok(os.path.isfile(f) and os.path.getsize(f) > 1000, "artefact %s written" % name, f)
    t.done()


if __name__ == "__main__":
    main()
