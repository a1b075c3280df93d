/* The client's address behind reverse proxies: X-Forwarded-For and Forwarded are believed only
 * when the connection comes from an address listed in `trusted_proxies`, and then only up to
 * the first address (from the right) that is not a trusted proxy itself. */
#ifndef HL_PROXY_H
#define HL_PROXY_H

#include <stddef.h>

#include "core/error.h"

typedef struct hl_proxies hl_proxies;

/* Parses a list of addresses and CIDR blocks, IPv4 and IPv6, separated by commas or spaces
 * ("127.0.0.1, 10.0.0.0/8, ::1"). An empty or NULL spec gives an empty list (no proxy is
 * trusted). Returns NULL with err set on a malformed entry, naming it. */
hl_proxies *hl_proxies_parse(const char *spec, hl_err *err);
void hl_proxies_free(hl_proxies *p);
size_t hl_proxies_count(const hl_proxies *p);
/* Is addr (text form) in the list? */
int hl_proxies_trusted(const hl_proxies *p, const char *addr);

/* The client address: peer itself unless peer is trusted; then the rightmost address of the
 * Forwarded header's for= elements (else X-Forwarded-For's) that is not trusted, or the leftmost
 * one if all are. Malformed entries end the walk (the last trusted hop is the answer). Writes
 * into out (at least 64 bytes) and returns it. */
const char *hl_proxies_client(const hl_proxies *p, const char *peer, const char *forwarded, const char *xff,
                              char *out, size_t outlen);

#endif
