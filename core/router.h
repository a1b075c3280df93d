/* Request router: PCRE2 patterns compiled (with JIT) once at registration, matched against the
 * decoded path; named captures become route parameters. Used by the core and by plugins. */
#ifndef HL_ROUTER_H
#define HL_ROUTER_H

#include <stddef.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/form.h"

enum {
    HL_METHOD_GET = 1u << 0,
    HL_METHOD_HEAD = 1u << 1,
    HL_METHOD_POST = 1u << 2,
    HL_METHOD_PUT = 1u << 3,
    HL_METHOD_DELETE = 1u << 4,
    HL_METHOD_PATCH = 1u << 5,
    HL_METHOD_OPTIONS = 1u << 6,
    HL_METHOD_ANY = 0x7fu
};

typedef struct hl_router hl_router;

/* Route flags, set only by the code that registers the route. */
enum {
    /* Authenticated by a token in a header (Authorization), never by cookies: the session is
     * not loaded for it, and so it needs no CSRF token. The only way out of the CSRF check. */
    HL_ROUTE_TOKEN_AUTH = 1u
};

typedef enum hl_route_result {
    HL_ROUTE_FOUND = 0,
    HL_ROUTE_NOT_FOUND = 1,
    HL_ROUTE_METHOD_NOT_ALLOWED = 2
} hl_route_result;

typedef struct hl_route_match {
    void *handler;     /* as registered */
    void *ud;          /* as registered */
    const char *name;  /* route name as registered (may be NULL) */
    unsigned flags;    /* HL_ROUTE_* as registered */
    hl_params params;  /* named captures, allocated from the arena given to match */
    unsigned allow;    /* on METHOD_NOT_ALLOWED: methods the path accepts (HEAD implied by GET) */
} hl_route_match;

hl_router *hl_router_new(void);
void hl_router_free(hl_router *r);

/* Registers a route. pattern is a PCRE2 regular expression matched against the whole path
 * (it is anchored at both ends; do not add ^ and $). methods is a mask of HL_METHOD_*; a GET
 * route also answers HEAD. Routes are tried in registration order. An invalid pattern is
 * HL_EINVAL with PCRE2's message and the offset in the pattern. */
int hl_router_add(hl_router *r, unsigned methods, const char *pattern, const char *name,
                  void *handler, void *ud, hl_err *err);
/* The same, with HL_ROUTE_* flags. */
int hl_router_add_flags(hl_router *r, unsigned methods, const char *pattern, const char *name,
                        unsigned flags, void *handler, void *ud, hl_err *err);

/* Finds the route for (method, path). method is a single HL_METHOD_* bit. */
hl_route_result hl_router_match(hl_router *r, unsigned method, const char *path, size_t len,
                                hl_arena *a, hl_route_match *m);

/* Method name <-> bit. Unknown names give 0. */
unsigned hl_router_method_from_name(const char *name);
/* "GET, HEAD, POST" style list for an Allow header, written into buf. */
const char *hl_router_allow_string(unsigned mask, char *buf, size_t len);
size_t hl_router_count(const hl_router *r);
/* Forgets the routes added after the first n (a plugin refused half-way through loading). */
void hl_router_truncate(hl_router *r, size_t n);

#endif
