# HTTP behaviour of a real `halle serve` (2 workers, dev_mode on): pages, headers, methods,
# static files and validators, path traversal, percent-decoding, /_dev/echo parsing, size limits,
# malformed requests, keep-alive, read_timeout, and the connection and access logs.
import http.client
import json
import os
import re
import socket
import sys
import time
import traceback
import uuid

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SHARE_DIR, Instance, Server, Tap, migration_versions,  # noqa: E402
                     multipart_body, read_version, wait_until)

SITE_NAME = 'Marché <Test> & "Co"'
SITE_NAME_HTML = b"March\xc3\xa9 &lt;Test&gt; &amp; &quot;Co&quot;"
CONF_MARKER = "secret-marker-" + uuid.uuid4().hex  # a comment in halle.conf that must never leak

REQ_ID = uuid.uuid4().hex[:10]  # makes this run's log rows recognisable


def html(h):
    return (h.get("Content-Type") or "").startswith("text/html")


# ---- pages and headers -------------------------------------------------------------------

def test_home(t, srv):
    st, h, b = srv.get("/")
    t.eq(st, 200, "GET /: 200")
    t.ok(html(h), "GET /: text/html", h.get("Content-Type"))
    t.ok(SITE_NAME_HTML in b, "GET /: shows the site name, HTML-escaped", b[:600])
    t.ok(b"<Test>" not in b, "GET /: the site name is never output unescaped")
    t.ok("default-src 'self'" in (h.get("Content-Security-Policy") or ""), "GET /: Content-Security-Policy",
         h.get("Content-Security-Policy"))
    t.eq(h.get("X-Content-Type-Options"), "nosniff", "GET /: X-Content-Type-Options: nosniff")
    t.eq(h.get("Referrer-Policy"), "strict-origin-when-cross-origin", "GET /: Referrer-Policy")
    t.eq(h.get("Content-Length"), str(len(b)), "GET /: Content-Length matches the body")


def test_head(t, srv):
    st, h, b = srv.get("/")
    r = srv.raw(b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", timeout=5, until_close=True)
    t.eq(r.status, 200, "HEAD /: 200")
    t.eq(len(r.body), 0, "HEAD /: no body")
    t.eq(r.headers.get("content-length"), h.get("Content-Length"), "HEAD /: same Content-Length as GET")
    t.ok(r.headers.get("content-type", "").startswith("text/html"), "HEAD /: same Content-Type as GET",
         repr(r.headers))
    # Keep-alive after HEAD: the next response must start right after HEAD's headers.
    r = srv.raw(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                timeout=5, until_close=True)
    after = r.data.partition(b"\r\n\r\n")[2]
    t.ok(after.startswith(b"HTTP/1.1 200 "), "HEAD then GET on one connection: GET's status line follows HEAD's "
         "headers directly", "bytes after HEAD's headers: %r" % after[:120])


def test_status_api(t, srv):
    st, h, b = srv.get("/api/status")
    t.eq(st, 200, "/api/status: 200")
    t.eq(h.get("Content-Type"), "application/json", "/api/status: application/json")
    j = json.loads(b)
    # 1 when these tests were written; the newest migration file in the source tree since.
    core, archive = migration_versions("main")[-1], migration_versions("archive")[-1]
    t.eq(j.get("schema", {}).get("core"), core, "/api/status: schema.core == %d (newest core migration)" % core)
    t.eq(j.get("schema", {}).get("archive"), archive,
         "/api/status: schema.archive == %d (newest archive migration)" % archive)
    t.eq(j.get("version"), read_version(), "/api/status: version from configure.ac")
    t.eq(j.get("name"), SITE_NAME, "/api/status: site name")
    t.ok(j.get("pid") in srv.worker_pids(), "/api/status: pid is one of the workers",
         "pid %r, workers %r" % (j.get("pid"), srv.worker_pids()))


def test_health(t, srv):
    st, h, b = srv.get("/health")
    t.eq((st, b), (200, b"ok\n"), "/health: 200 'ok'")
    t.ok((h.get("Content-Type") or "").startswith("text/plain"), "/health: text/plain", h.get("Content-Type"))
    t.eq(h.get("Cache-Control"), "no-store", "/health: Cache-Control: no-store")


def test_not_found(t, srv):
    st, h, b = srv.get("/no/such/page")
    t.eq(st, 404, "unknown path: 404")
    t.ok(html(h), "404: text/html page")
    t.ok(b"404" in b and b'data-status="404"' in b and b"<html" in b, "404 page shows the status", b[:400])


def test_methods(t, srv):
    st, h, b = srv.request("POST", "/", body=b"x=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    t.eq(st, 405, "POST /: 405")
    t.eq(h.get("Allow"), "GET, HEAD, OPTIONS", "POST /: Allow: GET, HEAD, OPTIONS")
    t.ok(html(h) and b"405" in b, "POST /: HTML page with 405", b[:300])
    st, h, b = srv.request("OPTIONS", "/")
    t.eq(st, 204, "OPTIONS /: 204")
    t.eq(h.get("Allow"), "GET, HEAD, OPTIONS", "OPTIONS /: Allow header")
    t.eq(b, b"", "OPTIONS /: no body")
    st, h, b = srv.request("DELETE", "/health")
    t.eq((st, h.get("Allow")), (405, "GET, HEAD, OPTIONS"), "DELETE /health: 405 with Allow")
    r = srv.raw(b"BREW / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", until_close=True)
    t.eq(r.status, 501, "unknown method BREW: 501")


# ---- static files ------------------------------------------------------------------------

HTTP_DATE = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


def test_static(t, srv):
    with open(os.path.join(SHARE_DIR, "themes", "default", "static", "halle.css"), "rb") as f:
        css = f.read()
    st, h, b = srv.get("/static/halle.css")
    t.eq(st, 200, "static css: 200")
    t.ok((h.get("Content-Type") or "").startswith("text/css"), "static css: text/css", h.get("Content-Type"))
    t.eq(b, css, "static css: the file's bytes")
    etag = h.get("ETag") or ""
    t.ok(re.match(r'^"[^"]+"$', etag), "static css: quoted ETag", etag)
    t.ok(HTTP_DATE.match(h.get("Last-Modified") or ""), "static css: Last-Modified is an HTTP date",
         h.get("Last-Modified"))
    t.ok("max-age=" in (h.get("Cache-Control") or ""), "static css: Cache-Control with max-age",
         h.get("Cache-Control"))
    r = srv.raw(("GET /static/halle.css HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\nConnection: close\r\n\r\n"
                 % etag).encode(), until_close=True)
    t.eq(r.status, 304, "If-None-Match with the ETag: 304")
    t.eq(r.body, b"", "304: no body")
    t.eq(r.headers.get("etag"), etag, "304: repeats the ETag")
    st, _, b = srv.get("/static/halle.css", headers={"If-None-Match": '"0000000000000000"'})
    t.eq((st, len(b)), (200, len(css)), "If-None-Match with another ETag: 200 with the file")
    st, _, b = srv.get("/static/halle.css", headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    t.eq((st, b), (304, b""), "If-Modified-Since in the future: 304 without body")
    st, _, b = srv.get("/static/halle.css", headers={"If-Modified-Since": "Fri, 01 Jan 1999 00:00:00 GMT"})
    t.eq((st, len(b)), (200, len(css)), "If-Modified-Since in 1999: 200 with the file")
    st, _, _ = srv.get("/static/no-such-file.css")
    t.eq(st, 404, "missing static file: 404")


def test_traversal(t, srv):
    conf = open(srv.inst.conf, "rb").read()
    paths = [
        "/static/../halle.conf", "/static/../../halle.conf", "/static/%2e%2e/%2e%2e/halle.conf",
        "/static/%2e%2e/halle.conf", "/static/..%2fhalle.conf", "/static/..%2f..%2finst%2fhalle.conf",
        "/static/a%00b", "/static/..%00/halle.conf", "/static/%252e%252e/halle.conf",
        "/static/%252e%252e%252fhalle.conf", "/static/%c0%ae%c0%ae/halle.conf", "/static/..\\halle.conf",
        "/static//halle.conf", "/../halle.conf", "/static/./../halle.conf",
    ]
    for p in paths:
        r = srv.raw(("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % p).encode(), until_close=True)
        leaked = CONF_MARKER.encode() in r.data or b"max_body_size" in r.data or conf[:80] in r.data
        t.ok(r.status in (400, 404) and not leaked, "traversal %s: %s, no config contents" % (p, r.status),
             repr(r))
    r = srv.raw(b"GET /static/a%00b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", until_close=True)
    t.eq(r.status, 400, "encoded NUL in the path: 400")


def test_bad_escapes(t, srv):
    for p in ("/%zz", "/%4", "/static/%G1.css"):
        st, h, b = srv.get(p)
        t.eq(st, 400, "bad escape in path %s: 400" % p)
        t.ok(html(h) and b"400" in b, "bad escape in path %s: HTML page" % p, b[:300])
    st, h, b = srv.get("/?a=%G1")
    t.eq(st, 400, "bad escape in the query: 400")
    t.ok(html(h) and b"400" in b, "bad escape in the query: HTML page", b[:300])
    st, h, b = srv.get("/_dev/echo?a=%00")
    t.eq(st, 400, "encoded NUL in the query: 400")


# ---- request parsing through /_dev/echo --------------------------------------------------

def echo(srv, method, path, body=None, headers=None):
    st, h, b = srv.request(method, path, body=body, headers=headers)
    if st != 200:
        raise AssertionError("%s %s: status %d: %r" % (method, path, st, b[:400]))
    return json.loads(b)


def test_echo_query(t, srv):
    j = echo(srv, "GET", "/_dev/echo?a=1&b=x%20y&b=2&c=p+q")
    t.eq(j["query_string"], "a=1&b=x%20y&b=2&c=p+q", "echo: raw query string")
    t.eq(j["query"].get("a"), "1", "echo: a=1")
    t.eq(j["query"].get("c"), "p q", "echo: plus is a space in the query")
    t.ok(j["query"].get("b") in ("x y", "2"), "echo: repeated b decoded", repr(j["query"]))
    j = echo(srv, "GET", "/_dev/echo/sub%20dir?b=x%20y&e=%C3%A9t%C3%A9&plus=1%2B1&empty=&flag")
    t.eq(j["path"], "/_dev/echo/sub dir", "echo: decoded path")
    t.eq(j["query"].get("b"), "x y", "echo: %20 decoded")
    t.eq(j["query"].get("e"), "été", "echo: UTF-8 escapes decoded")
    t.eq(j["query"].get("plus"), "1+1", "echo: %2B stays a plus")
    t.eq((j["query"].get("empty"), j["query"].get("flag")), ("", ""), "echo: empty values")
    t.eq(j["method"], "GET", "echo: method")


def test_echo_urlencoded(t, srv):
    body = b"a=1&b=x%20y+z&c=%26%3D"
    j = echo(srv, "POST", "/_dev/echo?q=1", body=body,
             headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    t.eq(j["method"], "POST", "urlencoded POST: method")
    t.eq(j["form"], {"a": "1", "b": "x y z", "c": "&="}, "urlencoded POST: decoded form fields")
    t.eq(j["query"], {"q": "1"}, "urlencoded POST: query kept apart from the form")
    t.eq(j["body_length"], len(body), "urlencoded POST: body_length")


def test_echo_multipart(t, srv):
    data = b"\x00\x01\xff\r\n--not-the-boundary\r\n\r\n" + bytes(range(256)) * 4
    data = data[:1024]  # exactly max_upload_size (1k): still accepted
    ct, body = multipart_body({"title": "héllo wörld", "note": "a\r\nb"},
                              [("file", "C:\\Users\\me\\photo.bin", "application/octet-stream", data)])
    j = echo(srv, "POST", "/_dev/echo", body=body, headers={"Content-Type": ct})
    f = j["form"]
    t.eq(f.get("title"), "héllo wörld", "multipart: UTF-8 text field")
    t.eq(f.get("note"), "a\r\nb", "multipart: CRLF inside a text field")
    t.eq(f.get("file"), {"filename": "photo.bin", "content_type": "application/octet-stream", "size": 1024},
         "multipart: file part with its base name, type and size (binary bytes kept)")
    t.eq(j["body_length"], len(body), "multipart: body_length")


def test_cookies(t, srv):
    j = echo(srv, "GET", "/_dev/echo", headers={"Cookie": 'a=1; b="two"'})
    t.eq(j["cookies"], {"a": "1", "b": "two"}, "cookies: a=1; b=\"two\" parsed, quotes removed")


# ---- limits and malformed input ----------------------------------------------------------

def test_upload_too_big(t, srv):
    ct, body = multipart_body({"title": "x"}, [("file", "big.bin", "application/octet-stream", b"\xab" * 2000)])
    st, h, b = srv.request("POST", "/_dev/echo", body=body, headers={"Content-Type": ct})
    t.eq(st, 413, "multipart file over max_upload_size: 413")
    t.ok(html(h) and b"413" in b and b"big.bin" in b, "413: HTML page naming the file", b[-500:])
    ct, body = multipart_body({}, [("file", "edge.bin", "application/octet-stream", b"\xab" * 1025)])
    st, _, _ = srv.request("POST", "/_dev/echo", body=body, headers={"Content-Type": ct})
    t.eq(st, 413, "multipart file of max_upload_size + 1 byte: 413")


def test_body_too_big(t, srv):
    body = b"x" * 100000
    r = srv.raw(b"POST /_dev/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body, timeout=5)
    t.eq(r.status, 413, "body over max_body_size (Content-Length): 413")
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    r = srv.raw(b"POST /_dev/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk * 6
                + b"0\r\n\r\n", timeout=5)
    t.eq(r.status, 413, "chunked body over max_body_size: 413")
    st, _, _ = srv.request("POST", "/_dev/echo", body=b"y" * 60000, headers={"Content-Type": "text/plain"})
    t.eq(st, 200, "body under max_body_size: 200")
    t.ok(srv.health(), "server answers after oversized bodies")


def test_header_too_big(t, srv):
    pids = srv.worker_pids()
    r = srv.raw(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 10240 + b"\r\n\r\n", timeout=5, until_close=True)
    t.ok((r.status is not None and 400 <= r.status < 500) or (r.status is None and r.closed),
         "10 KB header over max_header_size: 4xx or closed connection", repr(r))
    t.ok(srv.health(), "server answers after a huge header")
    t.eq(srv.worker_pids(), pids, "workers unchanged after a huge header")


MALFORMED = [
    ("garbage bytes", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\xff\xfe\r\n\r\n"),
    ("GET without a path", b"GET\r\n\r\n"),
    ("HTTP/9.9", b"GET / HTTP/9.9\r\nHost: t\r\n\r\n"),
    ("100 KB request line", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("empty lines only", b"\r\n\r\n\r\n\r\n"),
    ("header without a colon", b"GET / HTTP/1.1\r\nthis is not a header\r\n\r\n"),
    ("negative Content-Length", b"POST /_dev/echo HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n"),
    ("bad chunk size", b"POST /_dev/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("bad multipart", b"POST /_dev/echo HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                      b"Content-Length: 11\r\n\r\n--x\r\nbroken"),
]


def test_malformed(t, srv):
    pids = srv.worker_pids()
    for name, data in MALFORMED:
        r = srv.raw(data, timeout=3, until_close=True)
        t.ok((r.status is not None and 400 <= r.status < 500) or (r.status is None and r.closed),
             "%s: 4xx or closed connection" % name, repr(r))
        t.ok(srv.health(), "%s: /health still answers 200" % name)
        t.eq(srv.worker_pids(), pids, "%s: worker pids unchanged" % name)


def test_dev_fail(t, srv):
    st, h, b = srv.get("/_dev/fail")
    t.eq(st, 500, "/_dev/fail: 500")
    t.ok(html(h) and b"500" in b and b"<html" in b, "/_dev/fail: HTML error page", b[:300])
    line = wait_until(lambda: next((l for l in srv.log_text().splitlines()
                                    if "level=error" in l and "dev.fail" in l and "/_dev/fail" in l), None), 3)
    t.ok(line, "/_dev/fail: an error log line names the failed handler", srv.log_text()[-1500:])
    t.ok(srv.health(), "server answers after a failing handler")


# ---- connections -------------------------------------------------------------------------

def test_keepalive(t, srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    try:
        conn.request("GET", "/")
        r1 = conn.getresponse()
        b1 = r1.read()
        sock = conn.sock
        conn.request("GET", "/health")
        r2 = conn.getresponse()
        b2 = r2.read()
        t.eq((r1.status, len(b1) > 0), (200, True), "keep-alive: first request 200")
        t.eq((r2.status, b2), (200, b"ok\n"), "keep-alive: second request 200")
        t.ok(sock is not None and conn.sock is sock, "keep-alive: both requests on the same connection")
    finally:
        conn.close()


def test_slow_client(t, srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        s.sendall(b"GET /hea")
        t0 = time.time()
        served = all(srv.get("/health", timeout=3)[0] == 200 for _ in range(3))
        t.ok(served, "other requests are served while a client stalls")
        s.settimeout(6)
        try:
            data = s.recv(4096)
            while data and time.time() - t0 < 6:  # a 408 page, if any, then EOF
                data = s.recv(4096)
            closed = data == b""
        except socket.timeout:
            closed = False
        except ConnectionResetError:
            closed = True
        took = time.time() - t0
        t.ok(closed and took < 5, "stalled client disconnected within 5 s (read_timeout = 1)",
             "closed %r after %.2f s" % (closed, took))
        t.ok(took >= 0.8, "stalled client kept for about read_timeout first", "closed after %.2f s" % took)
    finally:
        s.close()


def test_connection_log(t, srv):
    probe = "/connlog-%s" % REQ_ID
    srv.get(probe)
    srv.request("POST", "/_dev/echo/%s?x=1" % REQ_ID, body=b"a=1",
                headers={"Content-Type": "application/x-www-form-urlencoded"})
    srv.raw(("HEAD %s-head HTTP/1.0\r\n\r\n" % probe).encode(), until_close=True)
    want = {
        ("GET", probe): ("HTTP/1.1", 404),
        ("POST", "/_dev/echo/" + REQ_ID): ("HTTP/1.1", 200),
        ("HEAD", probe + "-head"): ("HTTP/1.0", 404),
    }

    def rows():
        return srv.inst.sql("SELECT at, ip, protocol, method, path, status FROM hl_connection_log")

    def found():
        got = rows()
        return got if all(any((r[3], r[4]) == k for r in got) for k in want) else None

    time.sleep(1.2)  # rows are flushed once per second
    got = wait_until(found, 3, step=0.2) or rows()
    for (method, path), (proto, status) in want.items():
        match = [r for r in got if r[3] == method and r[4] == path]
        t.ok(len(match) == 1, "connection log: one row for %s %s" % (method, path), repr(got[-10:]))
        if match:
            at, ip, p, _, _, st = match[0]
            t.eq((ip, p, st), ("127.0.0.1", proto, status), "connection log: %s %s has ip, protocol, status"
                 % (method, path))
            t.ok(re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", at or ""), "connection log: %s %s timestamp"
                 % (method, path), repr(at))


LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def logfmt(line):
    pos, out = 0, {}
    for m in LOGFMT_PAIR.finditer(line):
        if line[pos:m.start()].strip():
            return None
        v = m.group(2)
        out[m.group(1)] = v[1:-1] if v.startswith('"') else v
        pos = m.end()
    return out if not line[pos:].strip() else None


def test_access_log(t, srv):
    probe = "/access-%s" % REQ_ID
    srv.get(probe + "?q=1")
    srv.request("POST", "/_dev/echo", body=b"a=1", headers={"Content-Type": "application/x-www-form-urlencoded"})
    st, h, _ = srv.get("/static/halle.css")

    def lines():
        return [l for l in srv.inst.log_text().splitlines() if l]

    wait_until(lambda: any(probe in l for l in lines()), 3)
    all_lines = lines()
    bad = [l for l in all_lines if logfmt(l) is None]
    t.ok(all_lines and not bad, "every log line is logfmt", "\n".join(bad[:5]))
    reqs = [logfmt(l) for l in all_lines if logfmt(l) and logfmt(l).get("event") == "request"]
    mine = [r for r in reqs if r.get("path") == probe]
    t.eq(len(mine), 1, "access log: one line for GET %s" % probe)
    if mine:
        r = mine[0]
        t.eq((r.get("method"), r.get("status"), r.get("ip")), ("GET", "404", "127.0.0.1"),
             "access log: method, status and ip of the 404")
        t.ok(r.get("ts") and r.get("level") == "info" and r.get("pid", "").isdigit() and r.get("us", "").isdigit(),
             "access log: ts, level, pid and duration fields", repr(r))
    css = [r for r in reqs if r.get("path") == "/static/halle.css" and r.get("status") == "200"]
    t.ok(css and css[-1].get("bytes") == h.get("Content-Length"), "access log: bytes of the static file",
         repr(css[-1:]))
    echo_lines = [r for r in reqs if r.get("method") == "POST" and r.get("path") == "/_dev/echo"]
    t.ok(echo_lines and echo_lines[-1].get("status") == "200", "access log: the POST line", repr(echo_lines[-1:]))


def main():
    t = Tap()
    srv = None
    try:
        inst = Instance(name=SITE_NAME)
        inst.set(dev_mode="on", max_upload_size="1k", max_body_size="64k", max_header_size="4k", read_timeout=1,
                 shutdown_timeout=5)
        inst.write_conf(inst.read_conf() + "# %s\n" % CONF_MARKER)
        srv = Server(inst, workers=2, tap=t).start()
    except Exception:
        t.ok(False, "server starts", traceback.format_exc())
        t.done()
    try:
        for fn in (test_home, test_head, test_status_api, test_health, test_not_found, test_methods,
                   test_static, test_traversal, test_bad_escapes, test_echo_query, test_echo_urlencoded,
                   test_echo_multipart, test_cookies, test_upload_too_big, test_body_too_big,
                   test_header_too_big, test_malformed, test_dev_fail, test_keepalive, test_slow_client,
                   test_connection_log, test_access_log):
            t.run(fn, srv)
    finally:
        rc = srv.stop()
    t.eq(rc, 0, "server exits 0 after SIGTERM")
    t.done()


if __name__ == "__main__":
    main()
