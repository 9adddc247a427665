// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/api/router.c: literal and parameter segments, 404 vs 405 (with the Allow
 * set), HEAD on GET routes, per-segment percent-decoding ("%2F" stays in a parameter), rejection
 * of NUL escapes, bad escapes, "." and ".." segments and over-long paths, the query being ignored,
 * method names, and a sanity pass over the generated table (routes.def) without its handlers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/router.h"
#include "common/cleanup.h"

static void h_a(struct http_request *req)
{
}

static void h_b(struct http_request *req)
{
}

static const struct route table[] = {
        { HTTP_GET, "/v1/health", h_a, false, "health", false, false },
        { HTTP_POST, "/v1/sandboxes", h_a, true, "create", false, false },
        { HTTP_GET, "/v1/sandboxes", h_b, true, "list", false, false },
        { HTTP_GET, "/v1/sandboxes/{id}", h_a, true, "get", false, false },
        { HTTP_DELETE, "/v1/sandboxes/{id}", h_b, true, "delete", false, false },
        { HTTP_POST, "/v1/sandboxes/{id}/exec", h_a, true, "exec", false, false },
        { HTTP_GET, "/v1/sandboxes/{id}/files/{name}", h_b, true, "file", false, false },
        { HTTP_GET, "/", h_a, false, "root", false, false },
};

#define ELEMENTSOF_T ELEMENTSOF(table)

static int match(enum http_method m, const char *path, struct route_match *ret, struct sbx_err *err)
{
        sbx_err_clear(err);
        return router_match(table, ELEMENTSOF_T, m, path, ret, err);
}

static void test_literal(void **state)
{
        struct route_match m;
        struct sbx_err err;

        assert_int_equal(match(HTTP_GET, "/v1/health", &m, &err), 0);
        assert_string_equal(m.route->name, "health");
        assert_int_equal(m.n_params, 0);
        assert_int_equal(match(HTTP_POST, "/v1/sandboxes", &m, &err), 0);
        assert_string_equal(m.route->name, "create");
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes", &m, &err), 0);
        assert_string_equal(m.route->name, "list");
        assert_int_equal(match(HTTP_GET, "/", &m, &err), 0);
        assert_string_equal(m.route->name, "root");
}

static void test_params(void **state)
{
        struct route_match m;
        struct sbx_err err;

        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/sbx_abc", &m, &err), 0);
        assert_string_equal(m.route->name, "get");
        assert_int_equal(m.n_params, 1);
        assert_string_equal(m.params[0], "sbx_abc");
        assert_int_equal(match(HTTP_DELETE, "/v1/sandboxes/x1", &m, &err), 0);
        assert_string_equal(m.route->name, "delete");
        assert_int_equal(match(HTTP_POST, "/v1/sandboxes/x1/exec", &m, &err), 0);
        assert_string_equal(m.route->name, "exec");
        assert_string_equal(m.params[0], "x1");
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/a/files/b.txt", &m, &err), 0);
        assert_int_equal(m.n_params, 2);
        assert_string_equal(m.params[0], "a");
        assert_string_equal(m.params[1], "b.txt");
}

static void test_not_found(void **state)
{
        static const char *const paths[] = {
                "/v1/nothing",
                "/v1",
                "/v1/sandboxes/",
                "/v1//sandboxes",
                "/v1/sandboxes/x/exec/more",
                "/v1/sandboxes//exec",
                "/V1/health",
                "/v1/health/",
                "/v1/sandboxes/x/files/",
        };
        struct route_match m;
        struct sbx_err err;

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                assert_int_equal(match(HTTP_GET, paths[i], &m, &err), -SBX_E_NOT_FOUND);
                assert_null(m.route);
                assert_string_equal(err.reason, "route_not_found");
        }
}

static void test_method_not_allowed(void **state)
{
        struct route_match m;
        struct sbx_err err;
        char allow[64];

        assert_int_equal(match(HTTP_PUT, "/v1/sandboxes", &m, &err), -SBX_E_METHOD_NOT_ALLOWED);
        assert_string_equal(err.reason, "method_not_allowed");
        assert_int_equal(m.allowed, (1U << HTTP_GET) | (1U << HTTP_HEAD) | (1U << HTTP_POST));
        router_format_allowed(m.allowed, allow, sizeof allow);
        assert_string_equal(allow, "GET, HEAD, POST");

        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/x/exec", &m, &err), -SBX_E_METHOD_NOT_ALLOWED);
        assert_int_equal(m.allowed, 1U << HTTP_POST);
        assert_int_equal(match(HTTP_METHOD_INVALID, "/v1/health", &m, &err), -SBX_E_METHOD_NOT_ALLOWED);
        assert_int_equal(match(HTTP_METHOD_INVALID, "/nope", &m, &err), -SBX_E_NOT_FOUND);

        /* a buffer too small keeps whole names only */
        router_format_allowed((1U << HTTP_GET) | (1U << HTTP_DELETE), allow, 8);
        assert_string_equal(allow, "GET");
}

static void test_head(void **state)
{
        struct route_match m;
        struct sbx_err err;

        assert_int_equal(match(HTTP_HEAD, "/v1/sandboxes/abc", &m, &err), 0);
        assert_string_equal(m.route->name, "get");
        assert_int_equal(match(HTTP_HEAD, "/v1/sandboxes/abc/exec", &m, &err), -SBX_E_METHOD_NOT_ALLOWED);
}

static void test_decoding(void **state)
{
        struct route_match m;
        struct sbx_err err;

        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/a%20b", &m, &err), 0);
        assert_string_equal(m.params[0], "a b");
        /* an encoded slash stays inside its segment */
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/a%2Fb", &m, &err), 0);
        assert_string_equal(m.route->name, "get");
        assert_string_equal(m.params[0], "a/b");
        /* literal segments compare decoded */
        assert_int_equal(match(HTTP_GET, "/v1/%73andboxes/x", &m, &err), 0);
        assert_string_equal(m.params[0], "x");
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/%e2%82%ac", &m, &err), 0);
        assert_string_equal(m.params[0], "\xe2\x82\xac");
        /* '+' is not a space in a path */
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/a+b", &m, &err), 0);
        assert_string_equal(m.params[0], "a+b");
}

static void test_query_ignored(void **state)
{
        struct route_match m;
        struct sbx_err err;

        assert_int_equal(match(HTTP_GET, "/v1/sandboxes?state=running&x=%00", &m, &err), 0);
        assert_string_equal(m.route->name, "list");
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/abc?x=/..", &m, &err), 0);
        assert_string_equal(m.params[0], "abc");
        assert_int_equal(match(HTTP_GET, "/v1/health#frag", &m, &err), 0);
}

static void test_rejected(void **state)
{
        static const char *const bad[] = {
                "/v1/sandboxes/a%00b",
                "/v1/sandboxes/%",
                "/v1/sandboxes/%4",
                "/v1/sandboxes/%zz",
                "/v1/sandboxes/..",
                "/v1/sandboxes/.",
                "/v1/sandboxes/%2e%2e",
                "/v1/%2E/health",
                "/../v1/health",
                "v1/health",
                "",
                "*",
                "http://host/v1/health",
        };
        struct route_match m;
        struct sbx_err err;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(match(HTTP_GET, bad[i], &m, &err), -SBX_E_INVALID);
                assert_null(m.route);
                assert_string_equal(err.reason, "bad_request");
        }
        sbx_err_clear(&err);
        assert_int_equal(router_match(table, ELEMENTSOF_T, HTTP_GET, NULL, &m, &err), -SBX_E_INVALID);
        /* "..." and ".x" are ordinary names */
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/...", &m, &err), 0);
        assert_int_equal(match(HTTP_GET, "/v1/sandboxes/.x", &m, &err), 0);
}

static void test_long_paths(void **state)
{
        char path[SBX_MAX_URL_BYTES + 64];
        struct route_match m;
        struct sbx_err err;
        size_t n;

        /* exactly at the limit: decodes (and fits the buffer), just not a route */
        memset(path, 'a', sizeof path);
        path[0] = '/';
        path[SBX_MAX_URL_BYTES] = '\0';
        assert_int_equal(match(HTTP_GET, path, &m, &err), -SBX_E_NOT_FOUND);
        /* a parameter at the limit */
        n = strlen("/v1/sandboxes/");
        memcpy(path, "/v1/sandboxes/", n);
        assert_int_equal(match(HTTP_GET, path, &m, &err), 0);
        assert_int_equal(strlen(m.params[0]), SBX_MAX_URL_BYTES - n);
        /* one byte more */
        memset(path, 'a', sizeof path);
        path[0] = '/';
        path[SBX_MAX_URL_BYTES + 1] = '\0';
        assert_int_equal(match(HTTP_GET, path, &m, &err), -SBX_E_INVALID);
        /* only slashes: many empty segments, bounded */
        memset(path, '/', SBX_MAX_URL_BYTES);
        path[SBX_MAX_URL_BYTES] = '\0';
        assert_int_equal(match(HTTP_GET, path, &m, &err), -SBX_E_NOT_FOUND);
}

static void test_methods(void **state)
{
        assert_int_equal(http_method_from_string("GET"), HTTP_GET);
        assert_int_equal(http_method_from_string("DELETE"), HTTP_DELETE);
        assert_int_equal(http_method_from_string("get"), HTTP_METHOD_INVALID);
        assert_int_equal(http_method_from_string("BREW"), HTTP_METHOD_INVALID);
        assert_int_equal(http_method_from_string(NULL), HTTP_METHOD_INVALID);
        for (int i = 0; i < HTTP_METHOD_MAX; i++)
                assert_int_equal(http_method_from_string(http_method_to_string((enum http_method)i)), i);
        assert_null(http_method_to_string(HTTP_METHOD_MAX));
        assert_null(http_method_to_string(HTTP_METHOD_INVALID));
}

/* The generated table, expanded without handlers (routes.c is not linked into tests). */
static const struct route generated[] = {
#define ROUTE(m, p, h, a, u, g) { .method = HTTP_##m, .pattern = p, .handler = NULL, .auth = a, .name = #h, .upload = u },
#include "api/routes.def"
#undef ROUTE
};

static void test_generated_table(void **state)
{
        struct route_match m;
        struct sbx_err err;
        char path[512];

        assert_true(ELEMENTSOF(generated) > 0);
        for (size_t i = 0; i < ELEMENTSOF(generated); i++) {
                const struct route *r = &generated[i];
                const char *p;
                size_t n = 0;

                /* instantiate the pattern with a value per parameter and expect this very row */
                for (p = r->pattern; *p && n < sizeof path - 8;) {
                        if (*p == '{') {
                                p = strchr(p, '}');
                                assert_non_null(p);
                                p++;
                                memcpy(path + n, "val", 3);
                                n += 3;
                        } else {
                                path[n++] = *p++;
                        }
                }
                path[n] = '\0';
                sbx_err_clear(&err);
                assert_int_equal(router_match(generated, ELEMENTSOF(generated), r->method, path, &m, &err), 0);
                assert_ptr_equal(m.route, r);
                assert_true(m.n_params <= SBX_MAX_PATH_PARAMS);
                for (unsigned k = 0; k < m.n_params; k++)
                        assert_string_equal(m.params[k], "val");
        }
        /* the spec's fixed points */
        sbx_err_clear(&err);
        assert_int_equal(router_match(generated, ELEMENTSOF(generated), HTTP_GET, "/v1/health", &m, &err), 0);
        assert_false(m.route->auth);
        assert_string_equal(m.route->name, "v1_health");
        assert_int_equal(router_match(generated, ELEMENTSOF(generated), HTTP_PUT, "/v1/sandboxes/x", &m, &err),
                         -SBX_E_METHOD_NOT_ALLOWED);
        for (size_t i = 0; i < ELEMENTSOF(generated); i++)
                if (strcmp(generated[i].name, "v1_health") != 0)
                        assert_true(generated[i].auth);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_literal),
                cmocka_unit_test(test_params),
                cmocka_unit_test(test_not_found),
                cmocka_unit_test(test_method_not_allowed),
                cmocka_unit_test(test_head),
                cmocka_unit_test(test_decoding),
                cmocka_unit_test(test_query_ignored),
                cmocka_unit_test(test_rejected),
                cmocka_unit_test(test_long_paths),
                cmocka_unit_test(test_methods),
                cmocka_unit_test(test_generated_table),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
