/* `halle sql`: one SQL statement run on the instance database (or the archive) through the
 * storage API, whatever the backend, with its rows printed as text or JSON. For operators, and
 * for the tests, which reach the database through halle instead of opening a SQLite file. */
#ifndef HL_SQLCLI_H
#define HL_SQLCLI_H

extern const char *hl_sqlcli_usage;

/* argv[0] is "sql". Returns the exit status: 0 done, 1 failed (message on stderr), 2 usage. */
int hl_sqlcli_main(int argc, char **argv);

#endif
