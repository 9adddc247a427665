// SPDX-License-Identifier: Apache-2.0
/* Unit tests for src/common: ids, numbers, UTF-8, time formatting, strict JSON field access. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/err.h"
#include "common/json.h"
#include "common/util.h"

static void test_ids(void **state)
{
        char id[SBX_ID_MAX], id2[SBX_ID_MAX];

        assert_int_equal(sbx_id_new("sbx_", id, sizeof id), 0);
        assert_int_equal(strlen(id), 4 + SBX_ID_RANDOM_CHARS);
        assert_true(sbx_id_valid("sbx_", id));
        assert_int_equal(sbx_id_new("sbx_", id2, sizeof id2), 0);
        assert_string_not_equal(id, id2);
        assert_false(sbx_id_valid("sbx_", "sbx_"));
        assert_false(sbx_id_valid("sbx_", "sbx_AAAAAAAAAAAAAAAAAAAA")); /* upper case */
        assert_false(sbx_id_valid("sbx_", "sbx_aaaaaaaaaaaaaaaaaaa1")); /* 1 is not base32 */
        assert_false(sbx_id_valid("sbx_", "sbx_aaaaaaaaaaaaaaaaaaaaa")); /* 21 chars */
        assert_false(sbx_id_valid("sbx_", "snp_aaaaaaaaaaaaaaaaaaaa"));
        assert_false(sbx_id_valid("sbx_", NULL));
        assert_int_equal(sbx_id_new("sbx_", id, 10), -ENOBUFS);
}

static void test_parse_u64(void **state)
{
        uint64_t v = 7;

        assert_int_equal(parse_u64("0", &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(parse_u64("18446744073709551615", &v), 0);
        assert_true(v == UINT64_MAX);
        assert_int_equal(parse_u64("18446744073709551616", &v), -ERANGE);
        assert_int_equal(parse_u64("", &v), -EINVAL);
        assert_int_equal(parse_u64("-1", &v), -EINVAL);
        assert_int_equal(parse_u64("1 ", &v), -EINVAL);
        assert_int_equal(parse_u64(NULL, &v), -EINVAL);
        assert_int_equal(parse_u64_prefix("42\nrest", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(parse_u64_prefix("x", &v), -EINVAL);
        assert_int_equal(parse_u64_prefix("99999999999999999999999999", &v), -ERANGE);
}

static void test_utf8(void **state)
{
        char out[64];
        size_t n;

        assert_true(utf8_valid("h\xc3\xa9llo", 6));
        assert_false(utf8_valid("\xff", 1));
        assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
        assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
        assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* beyond U+10FFFF */
        assert_false(utf8_valid("\xe2\x82", 2));         /* truncated */
        n = utf8_sanitize("a\xff" "b", 3, out);
        assert_int_equal(n, 5);
        assert_memory_equal(out, "a\xef\xbf\xbd" "b", 5);
        n = utf8_sanitize("\xe2\x82", 2, out); /* two invalid bytes, two replacements */
        assert_int_equal(n, 6);
        assert_true(utf8_valid(out, n));
}

static void test_time(void **state)
{
        char buf[40];

        format_rfc3339_ms(0, buf, sizeof buf);
        assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
        format_rfc3339_ms(1795309323456ULL, buf, sizeof buf);
        assert_string_equal(buf, "2026-11-22T01:02:03.456Z");
}

static void test_json_fields(void **state)
{
        static const char *const allowed[] = { "a", "b", NULL };
        struct sbx_err err = { 0 };
        json_t *o = json_pack("{s:i,s:s,s:i}", "a", 1, "b", "x", "c", 2);
        const char *str = NULL;
        uint64_t u = 0;

        assert_int_equal(json_check_fields(o, allowed, "res.", &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "unknown_field");
        assert_string_equal(err.msg, "unknown field 'res.c'");
        sbx_err_clear(&err);
        assert_int_equal(json_get_u64(o, "a", "", 0, 10, &u, &err), 1);
        assert_int_equal(u, 1);
        assert_int_equal(json_get_u64(o, "a", "r.", 2, 10, &u, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "out_of_range");
        assert_non_null(strstr(err.msg, "'r.a'"));
        sbx_err_clear(&err);
        assert_int_equal(json_get_u64(o, "b", "", 0, 10, &u, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_type");
        sbx_err_clear(&err);
        assert_int_equal(json_get_string(o, "b", "", 8, &str, &err), 1);
        assert_string_equal(str, "x");
        assert_int_equal(json_get_string(o, "missing", "", 8, &str, &err), 0); /* optional */
        json_decref(o);
}

static void test_json_time(void **state)
{
        json_t *t = json_time_ms(1700000000123ULL), *never = json_time_ms(0);

        assert_true(json_is_string(t));
        assert_string_equal(json_string_value(t), "2023-11-14T22:13:20.123Z");
        assert_true(json_is_null(never));
        json_decref(t);
}

static void test_err(void **state)
{
        struct sbx_err err = { 0 };

        assert_int_equal(sbx_err_set(&err, -ENOENT, "cannot open '%s'", "x"), -ENOENT);
        /* the first, lowest-level message wins */
        assert_int_equal(sbx_err_set(&err, -EIO, "other"), -EIO);
        assert_string_equal(err.msg, "cannot open 'x'");
        assert_int_equal(err.code, -ENOENT);
        sbx_err_wrap(&err, "create '%s'", "sbx_1");
        assert_string_equal(err.msg, "create 'sbx_1': cannot open 'x'");
        assert_int_equal(sbx_err_set(NULL, -EINVAL, "ignored"), -EINVAL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ids),    cmocka_unit_test(test_parse_u64), cmocka_unit_test(test_utf8),
                cmocka_unit_test(test_time),   cmocka_unit_test(test_json_fields), cmocka_unit_test(test_err),
                cmocka_unit_test(test_json_time),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
