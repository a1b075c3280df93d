/* HTTP on libevent's evhttp, and nothing else: the listening socket, the framing checks that
 * libevent does not make, and the parsing of a request into what handlers read (method, path,
 * query, cookies, form). The worker (core/worker.c) runs the pipeline around it. */
#ifndef HL_HTTP_H
#define HL_HTTP_H

#include "core/config.h"
#include "core/error.h"
#include "core/request.h"

struct evhttp_request;

/* A listening TCP socket on host:port (numeric host), non-blocking, with SO_REUSEPORT (each
 * worker opens its own) and TCP_NODELAY (inherited by accepted sockets). Returns the fd or a
 * negative code with err set. */
int hl_http_listen(const char *host, int port, hl_err *err);

/* Framing that a proxy in front and halle could read differently (request smuggling): the
 * reason, or NULL when the request is well framed. Such a request gets a 400 and its
 * connection is closed. */
const char *hl_http_framing_error(struct evhttp_request *ev);

/* The request's method as an HL_METHOD_* bit (0 for methods halle does not serve), its name
 * in *name. */
unsigned hl_http_method(struct evhttp_request *ev, const char **name);

/* Parses what handlers read into req (path, query, cookies, urlencoded or multipart form) with
 * the configured limits. Returns 0, or the status of the error page to send (message in err). */
int hl_http_parse(hl_request *req, struct evhttp_request *ev, const hl_config *cfg, hl_err *err);

#endif
