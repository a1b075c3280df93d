/* UTF-8 checks shared by everything that validates text from users (accounts, mail, forms):
 * overlong forms, surrogates and code points past U+10FFFF are malformed. */
#ifndef HL_UTF8_H
#define HL_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if malformed. */
size_t hl_utf8_seq(const unsigned char *s, size_t n);
/* 1 if s[0..n) is valid UTF-8. */
int hl_utf8_valid(const char *s, size_t n);

#endif
