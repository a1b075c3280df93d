# The layering check (scripts/check-layers) passes on this tree and fails, naming the problem,
# on a planted include cycle and on a plugin that includes a core header.
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tap, SRC_DIR  # noqa: E402

SCRIPT = os.path.join(SRC_DIR, "scripts", "check-layers")


def check(root):
    return subprocess.run([sys.executable, SCRIPT, root], capture_output=True, text=True, timeout=60)


def main():
    t = Tap()
    r = check(SRC_DIR)
    t.ok(r.returncode == 0 and "no include cycle" in r.stdout, "this tree has no include cycle", r.stdout + r.stderr)
    tmp = tempfile.mkdtemp(prefix="halle-layers-")
    try:
        shutil.copytree(os.path.join(SRC_DIR, "core"), os.path.join(tmp, "core"))
        shutil.copytree(os.path.join(SRC_DIR, "plugins"), os.path.join(tmp, "plugins"))
        with open(os.path.join(tmp, "core", "db.h"), "a") as f:
            f.write('\n#include "core/worker.h"\n')
        r = check(tmp)
        t.ok(r.returncode == 1 and "include cycle" in r.stdout and "db -> worker" in r.stdout,
             "a planted cycle (db.h including worker.h) fails, naming the edge", r.stdout)
        with open(os.path.join(tmp, "core", "db.h")) as f:
            text = f.read()
        with open(os.path.join(tmp, "core", "db.h"), "w") as f:
            f.write(text.replace('\n#include "core/worker.h"\n', "\n"))
        with open(os.path.join(tmp, "plugins", "market", "api.c"), "a") as f:
            f.write('\n#include "core/db.h"\n')
        r = check(tmp)
        t.ok(r.returncode == 1 and "plugins/market/api.c" in r.stdout and "core/db.h" in r.stdout,
             "a plugin including a core header fails, naming the file", r.stdout)
        with open(os.path.join(tmp, "plugins", "market", "api.c"), "a") as f:
            f.write('\nstatic const char *sneaky = "SELECT password_hash FROM hl_users";\n')
        r = check(tmp)
        t.ok(r.returncode == 1 and "names a core table" in r.stdout, "a plugin's SQL naming a core table fails", r.stdout)
    finally:
        shutil.rmtree(tmp)
    t.done()


if __name__ == "__main__":
    main()
