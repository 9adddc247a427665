// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/api/errors.c: every SBX_E_* code has its own row with the documented status
 * and a snake_case default string, errno values and unknown codes map to 500 "internal", and the
 * JSON body uses err->reason/err->msg (except on 500, which never carries internal detail) and
 * stays valid UTF-8 whatever bytes the message holds.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/errors.h"

static const struct {
        int code;
        unsigned status;
        const char *reason;
} expected[] = {
        { -SBX_E_INVALID, 400, "invalid" },
        { -SBX_E_NOT_FOUND, 404, "not_found" },
        { -SBX_E_CONFLICT, 409, "conflict" },
        { -SBX_E_TOO_LARGE, 413, "payload_too_large" },
        { -SBX_E_LIMIT, 429, "limit_exceeded" },
        { -SBX_E_UNAUTHORIZED, 401, "unauthorized" },
        { -SBX_E_UNAVAILABLE, 503, "unavailable" },
        { -SBX_E_INTERNAL, 500, "internal" },
        { -SBX_E_METHOD_NOT_ALLOWED, 405, "method_not_allowed" },
        { -SBX_E_HEADERS_TOO_LARGE, 431, "headers_too_large" },
        { -SBX_E_FORBIDDEN, 403, "forbidden" },
        { -SBX_E_RANGE, 416, "range_not_satisfiable" },
};

static bool snake_case(const char *s)
{
        if (!s || !*s || !(*s >= 'a' && *s <= 'z'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

static void test_every_code_mapped(void **state)
{
        /* a new SBX_E_* without a row falls back to 500; this catches it */
        for (int c = SBX_E_BASE; c < SBX_E_MAX; c++) {
                bool found = false;

                for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
                        if (expected[i].code != -c)
                                continue;
                        found = true;
                        assert_int_equal(http_error_status(-c), expected[i].status);
                        assert_string_equal(http_error_reason(-c), expected[i].reason);
                }
                assert_true(found);
                assert_true(snake_case(http_error_reason(-c)));
                assert_non_null(http_error_message(-c));
                assert_true(http_error_status(-c) == 500 || -c == -SBX_E_INTERNAL ||
                            strcmp(http_error_reason(-c), "internal") != 0);
        }
}

static void test_errno_and_unknown(void **state)
{
        static const int codes[] = { -ENOMEM, -EIO,       -EINVAL,          -ENOENT, -EPERM, -EEXIST,
                                     -12345,  -SBX_E_MAX, -(SBX_E_MAX + 7), 0,       1,      SBX_E_INVALID };

        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
                assert_int_equal(http_error_status(codes[i]), 500);
                assert_string_equal(http_error_reason(codes[i]), "internal");
                assert_string_equal(http_error_message(codes[i]), "internal error");
        }
}

/* A full data disk is not an internal error: 503 with its own code, for every caller. */
static void test_disk_full(void **state)
{
        static const int codes[] = { -ENOSPC, -EDQUOT };

        for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
                assert_int_equal(http_error_status(codes[i]), 503);
                assert_string_equal(http_error_reason(codes[i]), "insufficient_storage");
        }
}

static void check_body(const struct sbx_err *err, const char *code, const char *message)
{
        json_t *b = http_error_body(err);
        json_t *e;

        assert_non_null(b);
        assert_int_equal(json_object_size(b), 1);
        e = json_object_get(b, "error");
        assert_true(json_is_object(e));
        assert_int_equal(json_object_size(e), 2);
        assert_string_equal(json_string_value(json_object_get(e, "code")), code);
        if (message)
                assert_string_equal(json_string_value(json_object_get(e, "message")), message);
        json_decref(b);
}

static void test_body(void **state)
{
        struct sbx_err err = { 0 };

        (void)sbx_err_setr(&err, -SBX_E_INVALID, "unknown_field", "unknown field 'foo'");
        check_body(&err, "unknown_field", "unknown field 'foo'");

        sbx_err_clear(&err);
        (void)sbx_err_set(&err, -SBX_E_NOT_FOUND, "sandbox 'x' not found");
        check_body(&err, "not_found", "sandbox 'x' not found");

        sbx_err_clear(&err);
        err.code = -SBX_E_CONFLICT;
        check_body(&err, "conflict", http_error_message(-SBX_E_CONFLICT));

        /* 500: fixed code and message, whatever the lower layer wrote */
        sbx_err_clear(&err);
        (void)sbx_err_setr(&err, -EIO, "invalid_value", "cannot open '/var/lib/sbx/secret'");
        check_body(&err, "internal", "internal error");
        check_body(NULL, "internal", "internal error");
}

static void test_body_utf8(void **state)
{
        struct sbx_err err = { 0 };
        json_t *b;
        char *s;

        /* invalid UTF-8 and a sequence cut by the message limit still give a valid body */
        (void)sbx_err_set(&err, -SBX_E_INVALID, "bad name '\xff\xfe'");
        memset(err.msg, 'a', sizeof err.msg - 1);
        err.msg[sizeof err.msg - 3] = '\xe2';
        err.msg[sizeof err.msg - 2] = '\x82';
        err.msg[sizeof err.msg - 1] = '\0';
        b = http_error_body(&err);
        assert_non_null(b);
        s = json_dumps(b, JSON_COMPACT);
        assert_non_null(s);
        assert_non_null(strstr(s, "\xef\xbf\xbd")); /* U+FFFD */
        free(s);
        json_decref(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_code_mapped),
                cmocka_unit_test(test_errno_and_unknown),
                cmocka_unit_test(test_disk_full),
                cmocka_unit_test(test_body),
                cmocka_unit_test(test_body_utf8),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
