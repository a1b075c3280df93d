/* Helpers shared by the unit tests: temporary folders and their removal. */
#ifndef HL_TESTUTIL_H
#define HL_TESTUTIL_H

/* Removes path and everything below it (no symlinks followed). */
void hl_test_rm_rf(const char *path);

#endif
