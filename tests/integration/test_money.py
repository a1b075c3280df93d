# The storage contract for money through a Lua plugin on the real server (docs/plugins.md,
# halle.db.idempotent and halle.db.counter_next): a request repeated with the same key gets the
# first answer and does the work once, even when the repeats arrive at once on two workers; a
# failing attempt leaves neither the key nor a number used; invoice numbers taken by
# concurrent requests are exactly 1..N; the key is the plugin's own; a reused key with another
# request is a conflict.
import json
import os
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import write_plugin, Instance, Server, Tap, run  # noqa: E402

# GET routes that write only because this is a test plugin: no form, no CSRF token to fetch.
TILL = {
    "plugin.json": '{"name": "till", "version": "1.0.0", "description": "test: orders with invoice numbers"}',
    "migrations/001_orders.sql":
        "CREATE TABLE till_orders (id INTEGER PRIMARY KEY, invoice INTEGER NOT NULL UNIQUE, note TEXT NOT NULL);\n",
    "main.lua": r'''
halle.route("GET", "/till/order", function(req)
  local q = req.query
  local ok, status, body, replayed = pcall(halle.db.idempotent, "order", q.key, q.note, function()
    local n = halle.db.counter_next("invoice")
    halle.db.exec("INSERT INTO till_orders (invoice, note) VALUES (?, ?)", n, q.note)
    if q.fail then error("deliberate failure") end
    return 201, '{"invoice":' .. n .. '}'
  end)
  if not ok then
    return { status = 409, content_type = "text/plain", body = tostring(status) }
  end
  return { status = status, content_type = "application/json", body = body,
           headers = { ["X-Replayed"] = replayed and "yes" or "no" } }
end)
halle.route("GET", "/till/bare", function(req)
  local ok, err = pcall(halle.db.counter_next, "invoice")
  return { status = 200, content_type = "text/plain", body = tostring(err) }
end)
''',
}



def get(srv, path, timeout=10):
    st, h, body = srv.get(path, timeout=timeout)
    return st, h, body.decode("utf-8", "replace")


def main():
    t = Tap()
    inst = Instance()
    extra = inst.path("extra")
    os.makedirs(extra)
    write_plugin(extra, "till", TILL)
    inst.set(plugin_dirs=extra)
    r = run(["plugin", "-c", inst.conf, "enable", "till"])
    t.ok(r.returncode == 0, "the till plugin is enabled", r.stdout + r.stderr)
    srv = Server(inst, workers=2, tap=t).start()
    try:
        st, h, body = get(srv, "/till/order?key=k1&note=first")
        t.ok(st == 201 and json.loads(body) == {"invoice": 1} and h.get("X-Replayed") == "no",
             "the first order gets invoice 1", (st, body, h))
        st, h, body = get(srv, "/till/order?key=k1&note=first")
        t.ok(st == 201 and json.loads(body) == {"invoice": 1} and h.get("X-Replayed") == "yes",
             "its repeat gets the first answer, replayed", (st, body, h))
        st, h, body = get(srv, "/till/order?key=k1&note=other")
        t.ok(st == 409 and "different request" in body, "the key reused for another request is a conflict",
             (st, body))
        st, h, body = get(srv, "/till/order?key=k2&note=broken&fail=1")
        t.eq(st, 409, "a failing attempt is an error")
        st, h, body = get(srv, "/till/order?key=k2&note=second")
        t.ok(st == 201 and json.loads(body) == {"invoice": 2},
             "after it the key is free and no number was used up (no gap)", (st, body))
        st, h, body = get(srv, "/till/bare")
        t.ok("inside the transaction" in body, "a number outside a transaction is refused", body)

        # Concurrent requests: each key twice, all at once, on two workers.
        results, lock = [], threading.Lock()

        def order(key):
            s, hh, b = get(srv, "/till/order?key=%s&note=%s" % (key, key), timeout=30)
            with lock:
                results.append((key, s, b))

        keys = ["c%d" % i for i in range(12)]
        threads = [threading.Thread(target=order, args=(k,)) for k in keys + keys]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        t.ok(all(s == 201 for _, s, _ in results), "every concurrent request succeeds",
             [r for r in results if r[1] != 201])
        by_key = {}
        for k, s, b in results:
            by_key.setdefault(k, set()).add(b)
        t.ok(all(len(v) == 1 for v in by_key.values()), "both requests of a key got the same answer", by_key)
    finally:
        srv.stop()
    rows = [r[0] for r in inst.sql("SELECT invoice FROM till_orders ORDER BY invoice")]
    t.eq(rows, list(range(1, 15)), "invoices are 1..14 exactly: one per order, no gap, no duplicate")
    scopes = {r[0] for r in inst.sql("SELECT scope FROM hl_idempotency")}
    t.eq(scopes, {"till:order"}, "the keys are stored under the plugin's name")
    t.done()


if __name__ == "__main__":
    main()
