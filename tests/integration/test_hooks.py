# Every hook the core declares is fired by the code that owns its event. A Lua test plugin
# (tests/plugins/lua/luahooks) counts each core hook it sees; this test walks the flows (a page,
# a new account, the privacy register, the cron jobs, a mail accepted by an SMTP server on
# loopback) and compares what `halle hooks list` declares with what the plugin saw: a hook
# declared and never fired fails here, as does one the plugin does not listen to.
import json
import os
import socket
import sys
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Instance, Server, Tap, run, SRC_DIR  # noqa: E402

BUILD = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.environ.get("HALLE_BIN", "/work/main/build/halle"))
C_DIR = os.path.join(BUILD, "tests", "plugins", ".libs")
LUA_DIR = os.path.join(SRC_DIR, "tests", "plugins", "lua")
PLUGINS = ("testc", "luahooks")


class AcceptingSMTP:
    """Says yes to everything, one conversation at a time: enough for libcurl to deliver."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.delivered = 0
        self.stop = False
        self.th = threading.Thread(target=self._loop, daemon=True)
        self.th.start()

    def _talk(self, c):
        f = c.makefile("rb")
        c.sendall(b"220 test ESMTP\r\n")
        data = False
        for line in f:
            if data:
                if line in (b".\r\n", b".\n"):
                    data = False
                    self.delivered += 1
                    c.sendall(b"250 queued\r\n")
                continue
            word = line[:4].upper()
            if word == b"DATA":
                data = True
                c.sendall(b"354 go on\r\n")
            elif word == b"QUIT":
                c.sendall(b"221 bye\r\n")
                break
            elif word in (b"EHLO", b"HELO"):
                c.sendall(b"250 test\r\n")
            else:
                c.sendall(b"250 ok\r\n")

    def _loop(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            try:
                c.settimeout(5)
                self._talk(c)
            except OSError:
                pass
            finally:
                c.close()

    def close(self):
        self.stop = True
        self.th.join(2)
        self.sock.close()


def seen(inst):
    return dict((h, (n, last)) for h, n, last in inst.sql("SELECT hook, n, last FROM luahooks_seen"))


def test_every_declared_hook_is_fired(t):
    smtp = AcceptingSMTP()
    try:
        inst = Instance()
        inst.set(plugin_dirs="%s:%s" % (C_DIR, LUA_DIR), mail_from="halle <noreply@example.org>",
                 smtp_url="smtp://127.0.0.1:%d" % smtp.port)
        for name in PLUGINS:
            r = run(["plugin", "-c", inst.conf, "enable", name])
            t.eq(r.returncode, 0, "enable %s" % name)

        # The declared hooks, as the operator sees them.
        r = run(["hooks", "-c", inst.conf, "list"])
        t.eq(r.returncode, 0, "halle hooks list exits 0")
        declared = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                declared[parts[0]] = parts[1]
        core = set(h for h in declared if h.split(".")[0] not in PLUGINS)
        t.ok("request.before" in core and "user.created" in core and "testc.event" in declared,
             "it lists the core's hooks and the plugins' own", r.stdout)
        for gone in ("order.placed", "order.validate", "payment.providers", "payment.refunded",
                     "privacy.export", "privacy.erase", "consent.changed"):
            t.ok(gone not in declared, "%s is not declared by the core (its owner declares it)" % gone)

        # A server: routes.registered at start, a themed page (request.before, render.context,
        # ui.navigation, response.before), a mail queued by the plugin.
        with Server(inst, workers=1) as srv:
            st, _, body = srv.get("/")
            t.eq(st, 200, "the home page")
            st, _, body = srv.get("/luahooks/mail")
            t.ok(st == 200 and json.loads(body).get("id", 0) > 0, "a mail is queued", body)
        # A new account, made by a plugin command (api->user_create).
        r = run(["testc", "-c", inst.conf, "mkuser", "seed@example.org", "Seed"])
        t.ok(r.returncode == 0, "halle testc mkuser creates an account", r.stdout + r.stderr)
        # The privacy register: what each plugin declares.
        r = run(["hooks", "-c", inst.conf, "register"])
        reg = json.loads(r.stdout) if r.returncode == 0 else {}
        t.ok(isinstance(reg.get("processing"), list) and isinstance(reg.get("cookies"), list)
             and any(e.get("purpose") == "compter les crochets" for e in reg["processing"])
             and any(c.get("name") == "luahooks" for c in reg["cookies"]),
             "halle hooks register prints what plugins declare: processing activities and cookies",
             r.stdout + r.stderr)
        # The jobs process: the cron hooks and the mail (accepted by the server on loopback).
        for job in ("cron.minutely", "cron.hourly", "cron.daily", "core.mail"):
            r = run(["jobs", "-c", inst.conf, "run", job], timeout=60)
            t.eq(r.returncode, 0, "jobs run %s" % job)
        t.ok(smtp.delivered >= 1, "the SMTP server accepted the mail", smtp.delivered)

        got = seen(inst)
        never = sorted(core - set(got))
        t.eq(never, [], "every hook the core declares was fired")
        t.eq(sorted(set(got) - core), [], "the plugin saw no hook that is not declared")
        t.eq(got.get("user.created", (0, ""))[1], "email,id,roles", "user.created carries {id, email, roles}")
        t.ok("template" in got.get("render.context", (0, ""))[1].split(","),
             "render.context carries the template's name", got.get("render.context"))
        t.eq(got.get("mail.sent", (0, ""))[1], "id,to", "mail.sent carries {id, to}")
        t.eq(got.get("routes.registered", (0, ""))[1], "worker", "routes.registered names the worker")
        t.eq(got.get("user.created", (0, ""))[0], 1, "user.created fired once for one new account")
        # Seeding the same address again makes no account and says nothing.
        run(["testc", "-c", inst.conf, "mkuser", "seed@example.org", "Seed"])
        t.eq(seen(inst).get("user.created", (0, ""))[0], 1, "an existing account is not announced again")
    finally:
        smtp.close()


def test_c_manifest(t):
    """A C plugin's manifest_json: settings that `halle plugin set` validates and api->setting
    reads, and its privacy declarations in the register."""
    inst = Instance()
    inst.set(plugin_dirs="%s:%s" % (C_DIR, LUA_DIR))
    r = run(["plugin", "-c", inst.conf, "enable", "testc"])
    t.eq(r.returncode, 0, "enable testc")
    r = run(["plugin", "-c", inst.conf, "info", "testc"])
    t.ok(r.returncode == 0 and "greeting" in r.stdout and "Bonjour" in r.stdout,
         "plugin info shows a C plugin's settings with their defaults", r.stdout + r.stderr)
    r = run(["plugin", "-c", inst.conf, "set", "testc", "times", "9"])
    t.ok(r.returncode != 0, "a C plugin's setting out of its range is refused", r.stdout + r.stderr)
    r = run(["plugin", "-c", inst.conf, "set", "testc", "nosuch", "1"])
    t.ok(r.returncode != 0, "an unknown setting of a C plugin is refused", r.stdout + r.stderr)
    for k, v in (("greeting", "Salut"), ("times", "2")):
        r = run(["plugin", "-c", inst.conf, "set", "testc", k, v])
        t.eq(r.returncode, 0, "set testc %s" % k)
    with Server(inst, workers=1) as srv:
        st, _, body = srv.get("/testc/greet")
        t.eq((st, body), (200, b"SalutSalut"), "the C plugin reads its settings (api->setting)")
    r = run(["hooks", "-c", inst.conf, "register"])
    reg = json.loads(r.stdout) if r.returncode == 0 else {}
    t.ok(any(e.get("purpose") == "saluer" and e.get("plugin") == "testc" for e in reg.get("processing", []))
         and any(c.get("name") == "testc_seen" for c in reg.get("cookies", [])),
         "the C plugin's manifest declarations reach the privacy register", r.stdout + r.stderr)


def main():
    t = Tap()
    t.run(test_every_declared_hook_is_fired)
    t.run(test_c_manifest)
    t.done()


if __name__ == "__main__":
    main()
