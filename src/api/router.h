/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Route table matching for the HTTP server: method + path pattern ("/v1/sandboxes/{id}/exec") ->
 * handler and path parameters. Pure code (no MHD, no loop, no logging, no allocation), so the unit
 * tests drive it directly. It works on the raw request target as the client sent it and does its
 * own percent-decoding per segment: libmicrohttpd decodes the whole path before we see it, which
 * would turn "%2F" into a separator and "%00" into a silent truncation.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>

#include "api/server.h"
#include "common/err.h"
#include "common/limits.h"

enum http_method {
        HTTP_GET,
        HTTP_HEAD,
        HTTP_POST,
        HTTP_PUT,
        HTTP_PATCH,
        HTTP_DELETE,
        HTTP_OPTIONS,
        HTTP_METHOD_MAX,
        HTTP_METHOD_INVALID = -EINVAL,
};

struct route {
        enum http_method method;
        const char *pattern; /* "/v1/sandboxes/{id}": literal segments and {name} parameters */
        http_handler_fn handler;
        bool auth;        /* Bearer token required */
        const char *name; /* handler name, for logs ("v1_sandbox_get") */
        bool upload;      /* body streamed to a file in upload_dir, up to max_upload (server.h) */
        bool resume;      /* passes the server's gate before its handler (server.h http_gate_fn) */
};

/* Result of router_match(). params[] point into buf; both live as long as the struct. */
struct route_match {
        const struct route *route; /* NULL unless router_match() returned 0 */
        unsigned n_params;
        const char *params[SBX_MAX_PATH_PARAMS]; /* decoded, in pattern order ({id} is 0) */
        unsigned allowed;                        /* on -SBX_E_METHOD_NOT_ALLOWED: 1 << method per method */
        char buf[SBX_MAX_URL_BYTES + 1];         /* decoded segments, NUL-separated */
};

/* "GET" -> HTTP_GET (case-sensitive, as RFC 9110 says); anything else -> HTTP_METHOD_INVALID. */
enum http_method http_method_from_string(const char *s);
const char *http_method_to_string(enum http_method m);

/*
 * Find the route for method + target. target is the raw request target; anything from '?' on is
 * ignored. Each segment is percent-decoded on its own, so "%2F" stays inside a parameter.
 * A HEAD request matches a GET route. With several matching routes the first in table order wins.
 *
 * Returns 0 and fills *ret; or
 *   -SBX_E_INVALID             malformed path (no leading '/', longer than SBX_MAX_URL_BYTES, bad
 *                              or NUL %-escape, a "." or ".." segment), err reason "bad_request";
 *   -SBX_E_NOT_FOUND           no route has this path, reason "route_not_found";
 *   -SBX_E_METHOD_NOT_ALLOWED  the path exists for other methods only (ret->allowed lists them),
 *                              reason "method_not_allowed".
 * *ret is always initialised (route NULL on failure).
 */
int router_match(const struct route *routes, size_t n_routes, enum http_method method, const char *target,
                 struct route_match *ret, struct sbx_err *err);

/* Write the methods in mask as "GET, HEAD, POST" (for the Allow header). Returns the length written. */
size_t router_format_allowed(unsigned mask, char *buf, size_t size);

/* The native API's table, generated into routes.def and defined in routes.c (only the daemon
 * links it; tests pass tables of their own). */
extern const struct route api_routes[];
extern const size_t api_routes_count;
