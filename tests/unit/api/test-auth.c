// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/api/auth.c: the Bearer header forms that pass and the ones that must not
 * (other schemes, prefixes and extensions of the key, empty tokens, no configured key), the 401
 * error it fills, and the shape and randomness of generated API keys.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/auth.h"

#define KEY "sbx_key_00112233445566778899aabbccddeeff00112233"

static int check(const char *hdr, const char *key)
{
        struct sbx_err err = { 0 };
        int r = auth_check_bearer(hdr, key, &err);

        if (r < 0) {
                assert_int_equal(r, -SBX_E_UNAUTHORIZED);
                assert_int_equal(err.code, -SBX_E_UNAUTHORIZED);
                assert_string_equal(err.reason, "unauthorized");
                assert_string_equal(err.msg, "missing or invalid bearer token in 'Authorization' header");
        }
        return r;
}

static void test_accept(void **state)
{
        assert_int_equal(check("Bearer " KEY, KEY), 0);
        assert_int_equal(check("bearer " KEY, KEY), 0);
        assert_int_equal(check("BEARER  \t" KEY "  ", KEY), 0);
}

static void test_refuse(void **state)
{
        static const char *const bad[] = {
                NULL,
                "",
                "Bearer",
                "Bearer ",
                "Bearer  ",
                KEY,
                "Basic " KEY,
                "Bearer" KEY,
                "Bearer " KEY "x",
                "Bearer " KEY " x",
                "Bearer x" KEY,
                "Bearer sbx_key_",
                "Token " KEY,
                "Bearer " KEY "\n",
        };
        char shorter[sizeof KEY];

        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(check(bad[i], KEY), -SBX_E_UNAUTHORIZED);
        memcpy(shorter, "Bearer ", 7);
        memcpy(shorter + 7, KEY, sizeof KEY - 8);
        shorter[sizeof KEY - 1] = '\0';
        assert_int_equal(check(shorter, KEY), -SBX_E_UNAUTHORIZED);
        /* no key configured: nothing passes */
        assert_int_equal(check("Bearer " KEY, NULL), -SBX_E_UNAUTHORIZED);
        assert_int_equal(check("Bearer ", ""), -SBX_E_UNAUTHORIZED);
        assert_int_equal(auth_check_bearer("Basic x", KEY, NULL), -SBX_E_UNAUTHORIZED);
}

static void test_generate(void **state)
{
        char a[SBX_API_KEY_LEN + 1], b[SBX_API_KEY_LEN + 1];

        assert_int_equal(SBX_API_KEY_LEN, 48);
        assert_int_equal(api_key_generate(a, sizeof a), 0);
        assert_int_equal(api_key_generate(b, sizeof b), 0);
        assert_int_equal(strlen(a), 48);
        assert_memory_equal(a, "sbx_key_", 8);
        for (size_t i = 8; i < 48; i++)
                assert_non_null(strchr("0123456789abcdef", a[i]));
        assert_string_not_equal(a, b);
        assert_int_equal(api_key_generate(a, SBX_API_KEY_LEN), -ENOBUFS);
        assert_int_equal(api_key_generate(NULL, 64), -ENOBUFS);
        /* a generated key authenticates */
        {
                char hdr[64];

                snprintf(hdr, sizeof hdr, "Bearer %s", b);
                assert_int_equal(check(hdr, b), 0);
                assert_int_equal(check(hdr, a), -SBX_E_UNAUTHORIZED);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accept),
                cmocka_unit_test(test_refuse),
                cmocka_unit_test(test_generate),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
