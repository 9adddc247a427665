// SPDX-License-Identifier: Apache-2.0
/*
 * Route matching; see router.h. Pure: no MHD, no allocation, no logging. Paths are decoded here,
 * one segment at a time, from the raw request target, never from MHD's pre-decoded URL.
 */
#include "router.h"

#include <string.h>

#define ROUTER_MAX_SEGMENTS (SBX_MAX_FILE_PATH / 2 + 16) /* a file path's components after a {path*} */

static const char *const method_names[HTTP_METHOD_MAX] = {
        [HTTP_GET] = "GET",     [HTTP_HEAD] = "HEAD",     [HTTP_POST] = "POST",       [HTTP_PUT] = "PUT",
        [HTTP_PATCH] = "PATCH", [HTTP_DELETE] = "DELETE", [HTTP_OPTIONS] = "OPTIONS",
};

enum http_method http_method_from_string(const char *s)
{
        if (!s)
                return HTTP_METHOD_INVALID;
        for (int i = 0; i < HTTP_METHOD_MAX; i++)
                if (strcmp(s, method_names[i]) == 0)
                        return (enum http_method)i;
        return HTTP_METHOD_INVALID;
}

const char *http_method_to_string(enum http_method m)
{
        if (m < 0 || m >= HTTP_METHOD_MAX)
                return NULL;
        return method_names[m];
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decode raw[0..len) into out (NUL-terminated). Returns the decoded length or -SBX_E_INVALID. */
static int decode_segment(const char *raw, size_t len, char *out, struct sbx_err *err)
{
        size_t n = 0;

        for (size_t i = 0; i < len; i++) {
                char c = raw[i];

                if (c == '%') {
                        int hi = -1, lo = -1;

                        if (i + 2 < len) {
                                hi = hexval(raw[i + 1]);
                                lo = hexval(raw[i + 2]);
                        }
                        if (hi < 0 || lo < 0)
                                return sbx_err_setr(err, -SBX_E_INVALID, "bad_request",
                                                    "invalid percent-escape in request path");
                        c = (char)(hi << 4 | lo);
                        if (c == '\0')
                                return sbx_err_setr(err, -SBX_E_INVALID, "bad_request",
                                                    "request path must not contain NUL bytes");
                        i += 2;
                }
                out[n++] = c;
        }
        out[n] = '\0';
        if (strcmp(out, ".") == 0 || strcmp(out, "..") == 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "bad_request",
                                    "request path must not contain '.' or '..' segments");
        return (int)n;
}

/* "{name*}": matches one or more segments, the rest of the path (only as the last segment) */
static bool is_rest_param(const char *seg, size_t len)
{
        return len >= 4 && seg[0] == '{' && seg[len - 2] == '*' && seg[len - 1] == '}';
}

static bool is_param(const char *seg, size_t len)
{
        return len >= 3 && seg[0] == '{' && seg[len - 1] == '}';
}

/*
 * Compare pattern against the decoded segments. On a match with fill set, store the parameters
 * in ret. Patterns with more than SBX_MAX_PATH_PARAMS parameters never match (a table bug that
 * test-router catches for the generated table).
 */
static bool pattern_matches(const char *pattern, char *const *segs, size_t n_segs, struct route_match *ret, bool fill)
{
        const char *p = pattern;
        size_t i = 0;
        unsigned n_params = 0;

        if (!p || p[0] != '/')
                return false;
        while (*p == '/') {
                const char *seg = p + 1;
                size_t len = strcspn(seg, "/");

                if (i >= n_segs)
                        return false;
                if (is_rest_param(seg, len) && seg[len] == '\0') {
                        /* "{name*}" last: the rest of the path, its segments joined by '/' (they
                         * sit NUL-separated, one after the other, in ret->buf) */
                        if (n_params >= SBX_MAX_PATH_PARAMS)
                                return false;
                        if (fill) {
                                ret->params[n_params] = segs[i];
                                ret->n_params = n_params + 1;
                        }
                        return true;
                }
                if (is_param(seg, len)) {
                        if (segs[i][0] == '\0' || n_params >= SBX_MAX_PATH_PARAMS)
                                return false;
                        if (fill)
                                ret->params[n_params] = segs[i];
                        n_params++;
                } else if (strlen(segs[i]) != len || memcmp(segs[i], seg, len) != 0) {
                        return false;
                }
                i++;
                p = seg + len;
        }
        if (*p != '\0' || i != n_segs)
                return false;
        if (fill)
                ret->n_params = n_params;
        return true;
}

/* After the match: a "{name*}" parameter gets its segments joined with '/' (they sit NUL-separated,
 * one after the other, in ret->buf). */
static void join_rest(const char *pattern, char *const *segs, size_t n_segs)
{
        const char *last = strrchr(pattern, '/');
        size_t i = 0;

        if (!last || !is_rest_param(last + 1, strlen(last + 1)))
                return;
        for (const char *p = pattern; p < last; p++)
                if (*p == '/')
                        i++;
        for (size_t k = i + 1; k < n_segs; k++)
                segs[k][-1] = '/';
}

int router_match(const struct route *routes, size_t n_routes, enum http_method method, const char *target,
                 struct route_match *ret, struct sbx_err *err)
{
        char *segs[ROUTER_MAX_SEGMENTS];
        size_t path_len, n_segs = 0, out = 0;
        bool path_found = false;

        ret->route = NULL;
        ret->n_params = 0;
        ret->allowed = 0;
        memset(ret->params, 0, sizeof ret->params);
        ret->buf[0] = '\0';

        if (!target || target[0] != '/')
                return sbx_err_setr(err, -SBX_E_INVALID, "bad_request", "request path must start with '/'");
        path_len = strcspn(target, "?#");
        if (path_len > SBX_MAX_URL_BYTES)
                return sbx_err_setr(err, -SBX_E_INVALID, "bad_request", "request path is longer than %d bytes",
                                    SBX_MAX_URL_BYTES);

        /* Every raw '/' becomes one NUL after its decoded segment, and decoding never grows a
         * segment, so the decoded path fits in path_len + 1 bytes. */
        for (size_t pos = 1; pos <= path_len;) {
                size_t len = strcspn(target + pos, "/?#");
                int r;

                if (len > path_len - pos)
                        len = path_len - pos;
                r = decode_segment(target + pos, len, ret->buf + out, err);
                if (r < 0)
                        return r;
                if (n_segs == ROUTER_MAX_SEGMENTS)
                        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "route_not_found", "no route for this path");
                segs[n_segs++] = ret->buf + out;
                out += (size_t)r + 1;
                pos += len + 1;
        }

        for (size_t k = 0; k < n_routes; k++) {
                const struct route *r = &routes[k];

                if (!pattern_matches(r->pattern, segs, n_segs, ret, false))
                        continue;
                path_found = true;
                if (r->method >= 0 && r->method < HTTP_METHOD_MAX) {
                        ret->allowed |= 1U << r->method;
                        if (r->method == HTTP_GET)
                                ret->allowed |= 1U << HTTP_HEAD;
                }
                if (ret->route)
                        continue;
                if (r->method == method || (method == HTTP_HEAD && r->method == HTTP_GET)) {
                        (void)pattern_matches(r->pattern, segs, n_segs, ret, true);
                        ret->route = r;
                }
        }
        if (ret->route) {
                join_rest(ret->route->pattern, segs, n_segs);
                return 0;
        }
        if (path_found)
                return sbx_err_setr(err, -SBX_E_METHOD_NOT_ALLOWED, "method_not_allowed",
                                    "method '%s' is not allowed on this path", http_method_to_string(method) ?: "?");
        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "route_not_found", "no route for this path");
}

size_t router_format_allowed(unsigned mask, char *buf, size_t size)
{
        size_t n = 0;

        if (size == 0)
                return 0;
        buf[0] = '\0';
        for (int m = 0; m < HTTP_METHOD_MAX; m++) {
                size_t len = strlen(method_names[m]);

                if (!(mask & (1U << m)))
                        continue;
                if (n + (n ? 2 : 0) + len + 1 > size)
                        break;
                if (n) {
                        memcpy(buf + n, ", ", 2);
                        n += 2;
                }
                memcpy(buf + n, method_names[m], len);
                n += len;
                buf[n] = '\0';
        }
        return n;
}
