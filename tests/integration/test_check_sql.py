# The portability check (scripts/check-sql) passes on this tree and fails, naming file, line
# and construct, on SQLite-only SQL planted in a copy: rowid in a C string, INSERT OR IGNORE
# in a migration, a numbered placeholder in Lua, IFNULL, datetime(); LIKE and comments pass.
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Tap, SRC_DIR  # noqa: E402

SCRIPT = os.path.join(SRC_DIR, "scripts", "check-sql")


def check(root):
    return subprocess.run([sys.executable, SCRIPT, root], capture_output=True, text=True, timeout=60)


def plant(tmp, rel, text):
    path = os.path.join(tmp, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def main():
    t = Tap()
    r = check(SRC_DIR)
    t.ok(r.returncode == 0 and "portable SQL" in r.stdout, "this tree's SQL is portable", r.stdout + r.stderr)
    tmp = tempfile.mkdtemp(prefix="halle-sql-")
    try:
        os.makedirs(os.path.join(tmp, "core"))
        os.makedirs(os.path.join(tmp, "plugins"))
        clean = ('/* rowid in a comment is no SQL */\n'
                 'static const char *a = "SELECT id FROM t WHERE name LIKE ? ESCAPE \'\\\\\' "\n'
                 '                       "AND at = \'12:30\' AND COALESCE(x, 0) = ?";\n'
                 'static const char *b = "http://example.org:80/a?b=1";\n')
        plant(tmp, "core/x.c", clean)
        r = check(tmp)
        t.ok(r.returncode == 0, "LIKE, quoted times, comments and non-SQL strings pass", r.stdout)

        plant(tmp, "core/x.c", clean + 'static const char *c = "SELECT rowid, name "\n    "FROM t";\n')
        r = check(tmp)
        t.ok(r.returncode == 1 and "core/x.c:5: rowid" in r.stdout, "a planted rowid fails, naming file and line",
             r.stdout)
        plant(tmp, "core/x.c", clean)

        cases = [
            ("core/migrations/main/099_x.sql", "-- rowid here is a comment\nINSERT OR IGNORE INTO t VALUES (1);\n",
             "099_x.sql:2: INSERT OR"),
            ("core/migrations/main/099_x.sql", "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT);\n",
             "AUTOINCREMENT"),
            ("plugins/p/init.lua", 'local x = halle.db_query("SELECT a FROM p_t WHERE b = ?1", 1)\n', "'?1'"),
            ("plugins/p/init.lua", 'local x = [[\nSELECT a FROM p_t WHERE b = :name]]\n', "init.lua:2: placeholder"),
            ("plugins/p/p.c", 'const char *s = "SELECT IFNULL(a, 0) FROM p_t";\n', "IFNULL"),
            ("plugins/p/p.c", 'const char *s = "DELETE FROM p_t WHERE at < datetime(\'now\')";\n', "date function"),
            ("plugins/p/p.c", 'const char *s = "REPLACE INTO p_t (a) VALUES ($1)";\n', "REPLACE INTO"),
            ("plugins/p/p.c", 'const char *s = "SELECT last_insert_rowid()";\n', "last_insert_rowid"),
            ("plugins/p/p.c", 'const char *s = "SELECT a FROM p_t WHERE b GLOB ?";\n', "GLOB"),
            ("plugins/p/p.c", 'const char *s = "UPDATE p_t SET a = CASE WHEN ? THEN ? ELSE a END";\n', "WHEN ? THEN"),
        ]
        for rel, text, needle in cases:
            plant(tmp, rel, text)
            r = check(tmp)
            t.ok(r.returncode == 1 and needle in r.stdout, "planted in %s: fails with %r" % (rel, needle), r.stdout)
            os.remove(os.path.join(tmp, rel))
        r = check(tmp)
        t.ok(r.returncode == 0, "clean again once the plants are gone", r.stdout)
    finally:
        shutil.rmtree(tmp)
    t.done()


if __name__ == "__main__":
    main()
