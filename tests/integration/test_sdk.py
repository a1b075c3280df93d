# The partner SDK: `make install DESTDIR=...` gives <halle/plugin.h> and halle-plugin.pc; the
# out-of-tree example in docs/examples/hello-c builds against that staged SDK alone, and the
# real server loads it: its route, its response header and its refusing filter all work.
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Instance, Server, Tap, run, SRC_DIR  # noqa: E402

BUILD = os.environ.get("HALLE_BUILDDIR") or os.path.dirname(os.environ.get("HALLE_BIN", "/work/main/build/halle"))


def sh(args, env=None, cwd=None):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=dict(os.environ, **(env or {})), cwd=cwd, timeout=300)


def main():
    t = Tap()
    tmp = tempfile.mkdtemp(prefix="halle-sdk-")
    try:
        stage = os.path.join(tmp, "stage")
        r = sh(["make", "-s", "-C", BUILD, "install", "DESTDIR=" + stage])
        t.ok(r.returncode == 0, "make install DESTDIR", r.stdout[-2000:])
        with open(os.path.join(BUILD, "Makefile")) as f:
            prefix = re.search(r"^prefix = (.*)$", f.read(), re.M).group(1)
        inc = os.path.join(stage + prefix, "include", "halle", "plugin.h")
        pcdir = os.path.join(stage + prefix, "lib", "pkgconfig")
        t.ok(os.path.exists(inc), "the SDK header is installed", inc)
        t.ok(os.path.exists(os.path.join(pcdir, "halle-plugin.pc")), "halle-plugin.pc is installed")
        env = {"PKG_CONFIG_PATH": pcdir, "PKG_CONFIG_SYSROOT_DIR": stage}
        r = sh(["pkg-config", "--variable=abi_version", "halle-plugin"], env=env)
        t.eq(r.stdout.strip(), "1", "pkg-config gives the plugin ABI version")
        r = sh(["pkg-config", "--cflags", "halle-plugin"], env=env)
        t.ok(stage in r.stdout, "pkg-config points into the staged SDK", r.stdout)

        example = os.path.join(tmp, "hello-c")
        shutil.copytree(os.path.join(SRC_DIR, "docs", "examples", "hello-c"), example)
        os.chmod(example, 0o755)
        # Only the staged SDK: the source tree's include/ is not on the path.
        r = sh(["make", "-C", example], env=env)
        t.ok(r.returncode == 0 and os.path.exists(os.path.join(example, "hello.so")),
             "the out-of-tree example builds against the installed SDK", r.stdout[-2000:])

        inst = Instance()
        inst.set(plugin_dirs=example)
        r = run(["plugin", "-c", inst.conf, "enable", "hello"])
        t.ok(r.returncode == 0, "halle plugin enable hello", r.stdout + r.stderr)
        r = run(["plugin", "-c", inst.conf, "list"])
        t.ok(re.search(r"^hello\s+C\s+1\.0\.0\s+enabled", r.stdout, re.M), "listed as an enabled C plugin", r.stdout)
        with Server(inst, workers=1, tap=t) as srv:
            st, h, b = srv.get("/hello/Lise")
            t.ok(st == 200 and b"Bonjour, Lise" in b, "the plugin's route answers", (st, b))
            t.eq(h.get("X-Hello"), "1", "its response.before filter adds a header")
            st, h, b = srv.get("/hello/closed")
            t.ok(st == 403 and b"keeps this page closed" in b, "its request.before filter refuses", (st, b[:200]))
            st, h, b = srv.get("/")
            t.eq(st, 200, "core pages still served")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    t.done()


if __name__ == "__main__":
    main()
