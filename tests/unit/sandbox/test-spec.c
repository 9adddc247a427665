// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/sandbox/spec.c: defaults, every field valid and of the wrong type, every bound just
 * inside and just outside, unknown fields at each level, cwd normalisation, NUL bytes, env names,
 * metadata limits, the canonical JSON round trip, and allocation failure at every allocation. spec.c is
 * included here (STYLE B7) with malloc/calloc/free redirected to counting wrappers that can fail on
 * demand; jansson gets the same wrappers, so "no leak on failure" is checked without a sanitizer too.
 */
#include <assert.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/limits.h"

#include "alloc-count.h"

#define malloc(n) t_malloc(n)
#define calloc(n, size) t_calloc(n, size)
#define free(p) t_free(p)
#include "sandbox/spec.c"
#undef malloc
#undef calloc
#undef free

/* ---- helpers ---- */

static json_t *J(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);

        if (!j)
                fail_msg("bad test JSON (%s): %s", e.text, text);
        return j;
}

/* n copies of c, NUL-terminated; plain malloc (freed with plain free). */
static char *rep(char c, size_t n)
{
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

static void sandbox_ok_json(const json_t *body, struct sandbox_spec *s)
{
        struct sbx_err err = {};
        int r = sandbox_spec_parse(body, s, &err);

        if (r != 0)
                fail_msg("sandbox_spec_parse: %d %s: %s", r, err.reason, err.msg);
        assert_int_equal(err.code, 0);
}

static void sandbox_ok(const char *text, struct sandbox_spec *s)
{
        json_auto_t *j = J(text);

        sandbox_ok_json(j, s);
}

/* Expect failure with this reason and exactly this message, *ret untouched, nothing leaked. */
static void sandbox_err_json(const json_t *body, const char *what, const char *reason, const char *msg)
{
        struct sandbox_spec s;
        struct sbx_err err = {};
        long live = alloc_live;
        int r;

        memset(&s, 0xa5, sizeof s);
        r = sandbox_spec_parse(body, &s, &err);
        if (r != -SBX_E_INVALID || err.code != r || strcmp(err.reason, reason) != 0 || strcmp(err.msg, msg) != 0)
                fail_msg("%s: got %d %s \"%s\", want %s \"%s\"", what, r, err.reason, err.msg, reason, msg);
        assert_true(untouched(&s, sizeof s));
        assert_int_equal(alloc_live, live);
        /* and the same without an error struct */
        assert_int_equal(sandbox_spec_parse(body, &s, NULL), -SBX_E_INVALID);
        assert_true(untouched(&s, sizeof s));
}

static void sandbox_err(const char *text, const char *reason, const char *msg)
{
        json_auto_t *j = J(text);

        sandbox_err_json(j, text, reason, msg);
}

static void exec_ok_json(const json_t *body, struct exec_spec *s)
{
        struct sbx_err err = {};
        int r = exec_spec_parse(body, s, &err);

        if (r != 0)
                fail_msg("exec_spec_parse: %d %s: %s", r, err.reason, err.msg);
        assert_int_equal(err.code, 0);
}

static void exec_ok(const char *text, struct exec_spec *s)
{
        json_auto_t *j = J(text);

        exec_ok_json(j, s);
}

static void exec_err_json(const json_t *body, const char *what, const char *reason, const char *msg)
{
        struct exec_spec s;
        struct sbx_err err = {};
        long live = alloc_live;
        int r;

        memset(&s, 0xa5, sizeof s);
        r = exec_spec_parse(body, &s, &err);
        if (r != -SBX_E_INVALID || err.code != r || strcmp(err.reason, reason) != 0 || strcmp(err.msg, msg) != 0)
                fail_msg("%s: got %d %s \"%s\", want %s \"%s\"", what, r, err.reason, err.msg, reason, msg);
        assert_true(untouched(&s, sizeof s));
        assert_int_equal(alloc_live, live);
        assert_int_equal(exec_spec_parse(body, &s, NULL), -SBX_E_INVALID);
        assert_true(untouched(&s, sizeof s));
}

static void exec_err(const char *text, const char *reason, const char *msg)
{
        json_auto_t *j = J(text);

        exec_err_json(j, text, reason, msg);
}

struct err_case {
        const char *body;
        const char *reason;
        const char *msg;
};

/* ---- sandbox spec ---- */

static void check_defaults(const struct sandbox_spec *s)
{
        assert_string_equal(s->template_name, "base");
        assert_string_equal(s->name, "");
        assert_int_equal(s->n_env, 0);
        assert_non_null(s->env);
        assert_null(s->env[0]);
        assert_true(json_is_object(s->metadata));
        assert_int_equal(json_object_size(s->metadata), 0);
        assert_true(s->cpu == SBX_DEFAULT_CPU);
        assert_int_equal(s->memory_mib, 512);
        assert_int_equal(s->pids, SBX_DEFAULT_PIDS);
        assert_int_equal(s->lifetime_s, 0);
        assert_int_equal(s->idle_s, 0);
}

static void test_sandbox_defaults(void **state)
{
        static const char *const bodies[] = {
                "{}",
                "{\"template\":null,\"name\":null,\"env\":null,\"metadata\":null,\"resources\":null,\"timeout\":null}",
                "{\"resources\":{},\"timeout\":{}}",
                ("{\"resources\":{\"cpu\":null,\"memory\":null,\"pids\":null},"
                 "\"timeout\":{\"lifetime\":null,\"idle\":null}}"),
        };
        struct sandbox_spec s;

        sandbox_ok_json(NULL, &s);
        check_defaults(&s);
        sandbox_spec_release(&s);
        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                sandbox_ok(bodies[i], &s);
                check_defaults(&s);
                sandbox_spec_release(&s);
        }
        /* release is idempotent and NULL-safe */
        sandbox_spec_release(&s);
        sandbox_spec_release(NULL);
}

static void test_sandbox_all_fields(void **state)
{
        struct sandbox_spec s;

        sandbox_ok("{\"template\":\"debian-12:slim_v1.2\",\"name\":\"Web.1_a-b\","
                   "\"env\":{\"PATH\":\"/usr/bin\",\"_x1\":\"\",\"LANG\":\"C=UTF-8\"},"
                   "\"metadata\":{\"team\":\"infra\",\"k 2\":\"\"},"
                   "\"resources\":{\"cpu\":0.5,\"memory\":1024,\"pids\":128},"
                   "\"timeout\":{\"lifetime\":3600,\"idle\":300}}",
                   &s);
        assert_string_equal(s.template_name, "debian-12:slim_v1.2");
        assert_string_equal(s.name, "Web.1_a-b");
        assert_int_equal(s.n_env, 3);
        assert_string_equal(s.env[0], "PATH=/usr/bin");
        assert_string_equal(s.env[1], "_x1=");
        assert_string_equal(s.env[2], "LANG=C=UTF-8");
        assert_null(s.env[3]);
        assert_int_equal(json_object_size(s.metadata), 2);
        assert_string_equal(json_string_value(json_object_get(s.metadata, "team")), "infra");
        assert_string_equal(json_string_value(json_object_get(s.metadata, "k 2")), "");
        assert_true(s.cpu == 0.5);
        assert_int_equal(s.memory_mib, 1024);
        assert_int_equal(s.pids, 128);
        assert_int_equal(s.lifetime_s, 3600);
        assert_int_equal(s.idle_s, 300);
        sandbox_spec_release(&s);

        /* an integer is a number too */
        sandbox_ok("{\"resources\":{\"cpu\":2}}", &s);
        assert_true(s.cpu == 2.0);
        sandbox_spec_release(&s);
}

static void test_sandbox_metadata_is_a_copy(void **state)
{
        json_auto_t *j = J("{\"metadata\":{\"a\":\"b\"}}");
        struct sandbox_spec s;

        sandbox_ok_json(j, &s);
        assert_ptr_not_equal(s.metadata, json_object_get(j, "metadata"));
        assert_int_equal(json_object_set_new(json_object_get(j, "metadata"), "a", json_string("changed")), 0);
        assert_string_equal(json_string_value(json_object_get(s.metadata, "a")), "b");
        sandbox_spec_release(&s);
}

static void test_sandbox_wrong_types(void **state)
{
        static const struct err_case cases[] = {
                { "[]", "invalid_type", "request body must be a JSON object" },
                { "\"{}\"", "invalid_type", "request body must be a JSON object" },
                { "null", "invalid_type", "request body must be a JSON object" },
                { "1", "invalid_type", "request body must be a JSON object" },
                { "{\"template\":1}", "invalid_type", "'template' must be a string" },
                { "{\"template\":[\"base\"]}", "invalid_type", "'template' must be a string" },
                { "{\"name\":true}", "invalid_type", "'name' must be a string" },
                { "{\"env\":[]}", "invalid_type", "'env' must be an object" },
                { "{\"env\":\"A=1\"}", "invalid_type", "'env' must be an object" },
                { "{\"env\":{\"A\":1}}", "invalid_type", "'env.A' must be a string" },
                { "{\"env\":{\"A\":null}}", "invalid_type", "'env.A' must be a string" },
                { "{\"metadata\":\"x\"}", "invalid_type", "'metadata' must be an object" },
                { "{\"metadata\":{\"k\":{}}}", "invalid_type", "'metadata.k' must be a string" },
                { "{\"resources\":1}", "invalid_type", "'resources' must be an object" },
                { "{\"resources\":{\"cpu\":\"1\"}}", "invalid_type", "'resources.cpu' must be a number" },
                { "{\"resources\":{\"cpu\":true}}", "invalid_type", "'resources.cpu' must be a number" },
                { "{\"resources\":{\"memory\":512.0}}", "invalid_type", "'resources.memory' must be an integer" },
                { "{\"resources\":{\"memory\":\"512\"}}", "invalid_type", "'resources.memory' must be an integer" },
                { "{\"resources\":{\"pids\":false}}", "invalid_type", "'resources.pids' must be an integer" },
                { "{\"timeout\":[]}", "invalid_type", "'timeout' must be an object" },
                { "{\"timeout\":60}", "invalid_type", "'timeout' must be an object" },
                { "{\"timeout\":{\"lifetime\":\"1\"}}", "invalid_type", "'timeout.lifetime' must be an integer" },
                { "{\"timeout\":{\"idle\":1.5}}", "invalid_type", "'timeout.idle' must be an integer" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                sandbox_err(cases[i].body, cases[i].reason, cases[i].msg);
}

static void test_sandbox_unknown_fields(void **state)
{
        sandbox_err("{\"templates\":\"base\"}", "unknown_field", "unknown field 'templates'");
        sandbox_err("{\"Template\":\"base\"}", "unknown_field", "unknown field 'Template'");
        sandbox_err("{\"resources\":{\"disk\":1}}", "unknown_field", "unknown field 'resources.disk'");
        sandbox_err("{\"resources\":{\"cpu\":1,\"memoryMB\":1}}", "unknown_field",
                    "unknown field 'resources.memoryMB'");
        sandbox_err("{\"timeout\":{\"ttl\":1}}", "unknown_field", "unknown field 'timeout.ttl'");
        /* rejected even when null */
        sandbox_err("{\"image\":null}", "unknown_field", "unknown field 'image'");
}

struct range_case {
        const char *body;
        bool ok;
        const char *msg; /* when !ok (reason out_of_range) */
};

static void test_sandbox_resource_bounds(void **state)
{
        static const char cpu_msg[] = "'resources.cpu' must be between 0.01 and 256";
        static const char mem_msg[] = "'resources.memory' must be between 8 and 65536";
        static const char pids_msg[] = "'resources.pids' must be between 16 and 65536";
        static const char life_msg[] = "'timeout.lifetime' must be between 1 and 2592000";
        static const char idle_msg[] = "'timeout.idle' must be between 1 and 2592000";
        static const struct range_case cases[] = {
                { "{\"resources\":{\"cpu\":0.01}}", true, NULL },
                { "{\"resources\":{\"cpu\":0.0099}}", false, cpu_msg },
                { "{\"resources\":{\"cpu\":0}}", false, cpu_msg },
                { "{\"resources\":{\"cpu\":-1}}", false, cpu_msg },
                { "{\"resources\":{\"cpu\":256}}", true, NULL },
                { "{\"resources\":{\"cpu\":256.001}}", false, cpu_msg },
                { "{\"resources\":{\"cpu\":1e300}}", false, cpu_msg },
                { "{\"resources\":{\"memory\":8}}", true, NULL },
                { "{\"resources\":{\"memory\":7}}", false, mem_msg },
                { "{\"resources\":{\"memory\":65536}}", true, NULL },
                { "{\"resources\":{\"memory\":65537}}", false, mem_msg },
                { "{\"resources\":{\"memory\":-1}}", false, mem_msg },
                { "{\"resources\":{\"memory\":9223372036854775807}}", false, mem_msg },
                { "{\"resources\":{\"pids\":16}}", true, NULL },
                { "{\"resources\":{\"pids\":15}}", false, pids_msg },
                { "{\"resources\":{\"pids\":65536}}", true, NULL },
                { "{\"resources\":{\"pids\":65537}}", false, pids_msg },
                { "{\"timeout\":{\"lifetime\":1}}", true, NULL },
                { "{\"timeout\":{\"lifetime\":0}}", false, life_msg },
                { "{\"timeout\":{\"lifetime\":2592000}}", true, NULL },
                { "{\"timeout\":{\"lifetime\":2592001}}", false, life_msg },
                { "{\"timeout\":{\"idle\":1}}", true, NULL },
                { "{\"timeout\":{\"idle\":0}}", false, idle_msg },
                { "{\"timeout\":{\"idle\":2592000}}", true, NULL },
                { "{\"timeout\":{\"idle\":2592001}}", false, idle_msg },
                { "{\"timeout\":{\"idle\":-2592000}}", false, idle_msg },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct sandbox_spec s;

                if (!cases[i].ok) {
                        sandbox_err(cases[i].body, "out_of_range", cases[i].msg);
                        continue;
                }
                sandbox_ok(cases[i].body, &s);
                sandbox_spec_release(&s);
        }

        /* the values land in the right fields */
        {
                struct sandbox_spec s;

                sandbox_ok("{\"resources\":{\"cpu\":0.01,\"memory\":65536,\"pids\":16},"
                           "\"timeout\":{\"lifetime\":2592000,\"idle\":1}}",
                           &s);
                assert_true(s.cpu == 0.01);
                assert_int_equal(s.memory_mib, 65536);
                assert_int_equal(s.pids, 16);
                assert_int_equal(s.lifetime_s, 2592000);
                assert_int_equal(s.idle_s, 1);
                sandbox_spec_release(&s);
        }
}

static void test_sandbox_template_and_name(void **state)
{
        static const char *const good_templates[] = { "base", "host", "0", "a.b_c:d-e", "debian-12", "9z" };
        static const char *const bad_templates[] = { "",   "Base", "-base", ".base", "_base",
                                                     ":x", "a b",  "a/b",   "ba$e",  "caf\xc3\xa9" };
        static const char *const good_names[] = { "a", "Z", "0", "web.1", "A_b-c.d", "_x", "x-", "x." };
        static const char *const bad_names[] = { "", ".a", "-a", "a b", "a/b", "a:b", "caf\xc3\xa9", "a\tb" };
        static const char tmsg[] = "'template' must match [a-z0-9][a-z0-9._:-]*";
        static const char nmsg[] = "'name' must be [A-Za-z0-9._-] and must not start with '.' or '-'";
        _cleanup_free_ char *t64 = rep('t', 64), *t65 = rep('t', 65), *n128 = rep('N', 128), *n129 = rep('N', 129);
        struct sandbox_spec s;

        for (size_t i = 0; i < ELEMENTSOF(good_templates); i++) {
                json_auto_t *j = json_pack("{s:s}", "template", good_templates[i]);

                sandbox_ok_json(j, &s);
                assert_string_equal(s.template_name, good_templates[i]);
                sandbox_spec_release(&s);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_templates); i++) {
                json_auto_t *j = json_pack("{s:s}", "template", bad_templates[i]);

                sandbox_err_json(j, bad_templates[i], "invalid_value", tmsg);
        }
        for (size_t i = 0; i < ELEMENTSOF(good_names); i++) {
                json_auto_t *j = json_pack("{s:s}", "name", good_names[i]);

                sandbox_ok_json(j, &s);
                assert_string_equal(s.name, good_names[i]);
                sandbox_spec_release(&s);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                json_auto_t *j = json_pack("{s:s}", "name", bad_names[i]);

                sandbox_err_json(j, bad_names[i], "invalid_value", nmsg);
        }

        /* length bounds */
        {
                json_auto_t *ok = json_pack("{s:s,s:s}", "template", t64, "name", n128);
                json_auto_t *tlong = json_pack("{s:s}", "template", t65);
                json_auto_t *nlong = json_pack("{s:s}", "name", n129);

                sandbox_ok_json(ok, &s);
                assert_string_equal(s.template_name, t64);
                assert_string_equal(s.name, n128);
                sandbox_spec_release(&s);
                sandbox_err_json(tlong, "template 65", "invalid_value", "'template' is longer than 64 bytes");
                sandbox_err_json(nlong, "name 129", "invalid_value", "'name' is longer than 128 bytes");
        }
}

static void test_sandbox_nul_in_strings(void **state)
{
        json_auto_t *env_key = json_object(), *meta_key = json_object();

        sandbox_err("{\"template\":\"ba\\u0000se\"}", "invalid_value", "'template' must not contain NUL bytes");
        sandbox_err("{\"name\":\"a\\u0000\"}", "invalid_value", "'name' must not contain NUL bytes");
        sandbox_err("{\"workdir\":\"app\"}", "invalid_value", "'workdir' must be an absolute path");
        sandbox_err("{\"workdir\":\"/a/../b\"}", "invalid_value", "'workdir' must not contain '..'");
        sandbox_err("{\"env\":{\"A\":\"x\\u0000y\"}}", "invalid_value",
                    "'env.A' must be at most 32768 bytes without NUL");
        sandbox_err("{\"metadata\":{\"k\":\"\\u0000\"}}", "invalid_value",
                    "'metadata.k' must be at most 1024 bytes without NUL");

        /* the parser refuses NUL in keys, but a body built in-process may have one */
        assert_int_equal(json_object_setn_new(env_key, "A\0B", 3, json_string("v")), 0);
        {
                json_auto_t *j = json_pack("{s:O}", "env", env_key);

                sandbox_err_json(j, "env key with NUL", "invalid_value", "keys of 'env' must not contain NUL bytes");
        }
        assert_int_equal(json_object_setn_new(meta_key, "k\0", 2, json_string("v")), 0);
        {
                json_auto_t *j = json_pack("{s:O}", "metadata", meta_key);

                sandbox_err_json(j, "metadata key with NUL", "invalid_value",
                                 "keys of 'metadata' must not contain NUL bytes");
        }
}

static void test_env_name_valid(void **state)
{
        static const char *const good[] = { "A", "_", "a", "PATH", "_1", "a_B_9", "LD_PRELOAD" };
        static const char *const bad[] = { "", "1A", "9", "A-B", "A B", "A=B", "A.B", "caf\xc3\xa9", "$A", "A\n" };
        _cleanup_free_ char *k256 = rep('K', 256), *k257 = rep('K', 257);

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_true(env_name_valid(good[i]));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_false(env_name_valid(bad[i]));
        assert_false(env_name_valid(NULL));
        assert_true(env_name_valid(k256));
        assert_false(env_name_valid(k257));
}

static void test_sandbox_env(void **state)
{
        static const char *const bad[] = { "1A", "A-B", "A B", "A=B", "A.B", "caf\xc3\xa9" };
        _cleanup_free_ char *k256 = rep('K', 256), *k257 = rep('K', 257), *v32k = rep('v', SBX_MAX_ENV_VALUE),
                            *v32k1 = rep('v', SBX_MAX_ENV_VALUE + 1);
        struct sandbox_spec s;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *j = json_pack("{s:{s:s}}", "env", bad[i], "x");
                char msg[128];

                snprintf(msg, sizeof msg, "'env.%s' is not a valid environment variable name", bad[i]);
                sandbox_err_json(j, bad[i], "invalid_value", msg);
        }
        sandbox_err("{\"env\":{\"\":\"x\"}}", "invalid_value", "keys of 'env' must be 1 to 256 bytes");

        /* key and value lengths */
        {
                json_auto_t *ok = json_pack("{s:{s:s}}", "env", k256, v32k);
                json_auto_t *klong = json_pack("{s:{s:s}}", "env", k257, "v");
                json_auto_t *vlong = json_pack("{s:{s:s}}", "env", "A", v32k1);

                sandbox_ok_json(ok, &s);
                assert_int_equal(s.n_env, 1);
                assert_int_equal(strlen(s.env[0]), 256 + 1 + SBX_MAX_ENV_VALUE);
                sandbox_spec_release(&s);
                sandbox_err_json(klong, "env key 257", "invalid_value", "keys of 'env' must be 1 to 256 bytes");
                sandbox_err_json(vlong, "env value 32769", "invalid_value",
                                 "'env.A' must be at most 32768 bytes without NUL");
        }

        /* entry count */
        {
                json_auto_t *j = json_object(), *env = json_object();
                char key[16];

                for (int i = 0; i < SBX_MAX_ENV; i++) {
                        snprintf(key, sizeof key, "V%d", i);
                        assert_int_equal(json_object_set_new(env, key, json_string("x")), 0);
                }
                assert_int_equal(json_object_set(j, "env", env), 0);
                sandbox_ok_json(j, &s);
                assert_int_equal(s.n_env, SBX_MAX_ENV);
                assert_null(s.env[SBX_MAX_ENV]);
                sandbox_spec_release(&s);
                assert_int_equal(json_object_set_new(env, "ONE_MORE", json_string("x")), 0);
                sandbox_err_json(j, "env 257", "out_of_range", "'env' has more than 256 entries");
        }
}

static void test_sandbox_metadata_limits(void **state)
{
        _cleanup_free_ char *k128 = rep('k', 128), *k129 = rep('k', 129), *v1024 = rep('v', 1024),
                            *v1025 = rep('v', 1025);
        json_auto_t *ok = json_pack("{s:{s:s}}", "metadata", k128, v1024);
        json_auto_t *klong = json_pack("{s:{s:s}}", "metadata", k129, "v");
        json_auto_t *vlong = json_pack("{s:{s:s}}", "metadata", "k", v1025);
        json_auto_t *many = json_object(), *meta = json_object();
        struct sandbox_spec s;
        char key[16];

        sandbox_ok_json(ok, &s);
        assert_string_equal(json_string_value(json_object_get(s.metadata, k128)), v1024);
        sandbox_spec_release(&s);
        sandbox_err_json(klong, "metadata key 129", "invalid_value", "keys of 'metadata' must be 1 to 128 bytes");
        sandbox_err_json(vlong, "metadata value 1025", "invalid_value",
                         "'metadata.k' must be at most 1024 bytes without NUL");
        sandbox_err("{\"metadata\":{\"\":\"v\"}}", "invalid_value", "keys of 'metadata' must be 1 to 128 bytes");

        for (int i = 0; i < SBX_MAX_METADATA; i++) {
                snprintf(key, sizeof key, "k%d", i);
                assert_int_equal(json_object_set_new(meta, key, json_string("v")), 0);
        }
        assert_int_equal(json_object_set(many, "metadata", meta), 0);
        sandbox_ok_json(many, &s);
        assert_int_equal(json_object_size(s.metadata), SBX_MAX_METADATA);
        sandbox_spec_release(&s);
        assert_int_equal(json_object_set_new(meta, "one-more", json_string("v")), 0);
        sandbox_err_json(many, "metadata 65", "out_of_range", "'metadata' has more than 64 entries");
}

static char *to_json_dump(const struct sandbox_spec *s)
{
        json_auto_t *j = sandbox_spec_to_json(s);

        assert_non_null(j);
        return json_dump_compact(j);
}

static void test_sandbox_to_json_round_trip(void **state)
{
        static const struct {
                const char *body, *canonical;
        } cases[] = {
                { "{}", "{\"env\":{},\"metadata\":{},\"name\":null,\"resources\":{\"cpu\":1.0,\"memory\":512,"
                        "\"pids\":512},\"template\":\"base\",\"timeout\":{\"execution\":null,\"idle\":null,\"lifetime\":null,\"paused\":null},\"workdir\":null}" },
                { "{\"template\":\"t1\",\"name\":\"n\",\"env\":{\"B\":\"2\",\"A\":\"=1\"},\"metadata\":{\"k\":\"v\"},"
                  "\"resources\":{\"cpu\":0.5,\"memory\":1024,\"pids\":100},\"timeout\":{\"lifetime\":60,"
                  "\"idle\":30}}",
                  "{\"env\":{\"A\":\"=1\",\"B\":\"2\"},\"metadata\":{\"k\":\"v\"},\"name\":\"n\",\"resources\":{"
                  "\"cpu\":0.5,\"memory\":1024,\"pids\":100},\"template\":\"t1\",\"timeout\":{\"execution\":null,\"idle\":30,"
                  "\"lifetime\":60,\"paused\":null},\"workdir\":null}" },
                { "{\"timeout\":{\"idle\":5},\"resources\":{\"cpu\":0.33}}",
                  "{\"env\":{},\"metadata\":{},\"name\":null,\"resources\":{\"cpu\":0.33000000000000002,"
                  "\"memory\":512,\"pids\":512},\"template\":\"base\",\"timeout\":{\"execution\":null,\"idle\":5,\"lifetime\":null,\"paused\":null},\"workdir\":null}" },
                { "{\"workdir\":\"/app//x/./\"}",
                  "{\"env\":{},\"metadata\":{},\"name\":null,\"resources\":{\"cpu\":1.0,\"memory\":512,"
                  "\"pids\":512},\"template\":\"base\",\"timeout\":{\"execution\":null,\"idle\":null,\"lifetime\":null,\"paused\":null},\"workdir\":\"/app/x\"}" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct sandbox_spec s, again;
                json_auto_t *j = NULL;
                char *d1, *d2;

                sandbox_ok(cases[i].body, &s);
                d1 = to_json_dump(&s);
                assert_string_equal(d1, cases[i].canonical);

                j = sandbox_spec_to_json(&s);
                sandbox_ok_json(j, &again);
                assert_string_equal(again.template_name, s.template_name);
                assert_string_equal(again.name, s.name);
                assert_int_equal(again.n_env, s.n_env);
                for (size_t k = 0; k < s.n_env; k++)
                        assert_string_equal(again.env[k], s.env[k]);
                assert_true(json_equal(again.metadata, s.metadata));
                assert_true(again.cpu == s.cpu);
                assert_int_equal(again.memory_mib, s.memory_mib);
                assert_int_equal(again.pids, s.pids);
                assert_int_equal(again.lifetime_s, s.lifetime_s);
                assert_int_equal(again.idle_s, s.idle_s);
                assert_string_equal(again.workdir, s.workdir);
                d2 = to_json_dump(&again);
                assert_string_equal(d1, d2);

                t_free(d1); /* json_dumps allocates through the counting wrappers */
                t_free(d2);
                sandbox_spec_release(&again);
                sandbox_spec_release(&s);
        }
}

/* ---- exec spec ---- */

static void test_exec_defaults(void **state)
{
        struct exec_spec s;

        exec_ok("{\"cmd\":\"ls -l\"}", &s);
        assert_int_equal(s.argc, 3);
        assert_string_equal(s.argv[0], "/bin/sh");
        assert_string_equal(s.argv[1], "-c");
        assert_string_equal(s.argv[2], "ls -l");
        assert_null(s.argv[3]);
        assert_non_null(s.env);
        assert_int_equal(s.n_env, 0);
        assert_null(s.env[0]);
        assert_string_equal(s.cwd, "/root");
        assert_int_equal(s.timeout_s, SBX_DEFAULT_EXEC_TIMEOUT_S);
        assert_null(s.stdin_data);
        assert_int_equal(s.stdin_len, 0);
        exec_spec_release(&s);
        exec_spec_release(&s);
        exec_spec_release(NULL);

        exec_ok("{\"argv\":[\"true\"],\"cmd\":null,\"cwd\":null,\"env\":null,\"timeout\":null,\"stdin\":null}", &s);
        assert_int_equal(s.argc, 1);
        assert_string_equal(s.argv[0], "true");
        assert_string_equal(s.cwd, "/root");
        assert_int_equal(s.timeout_s, 60);
        assert_null(s.stdin_data);
        exec_spec_release(&s);
}

static void test_exec_all_fields(void **state)
{
        struct exec_spec s;

        exec_ok("{\"argv\":[\"/usr/bin/env\",\"\",\"A=1\"],\"cwd\":\"/srv/app\",\"env\":{\"LANG\":\"C\",\"X\":\"\"},"
                "\"timeout\":5,\"stdin\":\"hello\\n\"}",
                &s);
        assert_int_equal(s.argc, 3);
        assert_string_equal(s.argv[0], "/usr/bin/env");
        assert_string_equal(s.argv[1], "");
        assert_string_equal(s.argv[2], "A=1");
        assert_null(s.argv[3]);
        assert_int_equal(s.n_env, 2);
        assert_string_equal(s.env[0], "LANG=C");
        assert_string_equal(s.env[1], "X=");
        assert_null(s.env[2]);
        assert_string_equal(s.cwd, "/srv/app");
        assert_int_equal(s.timeout_s, 5);
        assert_int_equal(s.stdin_len, 6);
        assert_memory_equal(s.stdin_data, "hello\n", 6);
        exec_spec_release(&s);

        /* empty stdin is given (EOF at once), not absent */
        exec_ok("{\"cmd\":\"cat\",\"stdin\":\"\"}", &s);
        assert_non_null(s.stdin_data);
        assert_int_equal(s.stdin_len, 0);
        exec_spec_release(&s);
}

static void test_exec_cmd_argv_choice(void **state)
{
        static const char both[] = "only one of 'cmd' and 'argv' may be given";
        static const char neither[] = "one of 'cmd' or 'argv' is required";
        struct exec_spec s;

        exec_err("{\"cmd\":\"ls\",\"argv\":[\"ls\"]}", "invalid_value", both);
        exec_err("{\"cmd\":1,\"argv\":2}", "invalid_value", both);
        exec_err("{}", "missing_field", neither);
        exec_err("{\"cmd\":null,\"argv\":null}", "missing_field", neither);
        exec_err("{\"cwd\":\"/\"}", "missing_field", neither);
        exec_err_json(NULL, "NULL body", "missing_field", neither);
        exec_err("[]", "invalid_type", "request body must be a JSON object");
        exec_err("\"ls\"", "invalid_type", "request body must be a JSON object");
        /* null on one side is absence */
        exec_ok("{\"cmd\":\"ls\",\"argv\":null}", &s);
        exec_spec_release(&s);
        exec_ok("{\"cmd\":null,\"argv\":[\"ls\"]}", &s);
        exec_spec_release(&s);
}

static void test_exec_wrong_types(void **state)
{
        static const struct err_case cases[] = {
                { "{\"cmd\":1}", "invalid_type", "'cmd' must be a string" },
                { "{\"cmd\":[\"ls\"]}", "invalid_type", "'cmd' must be a string" },
                { "{\"argv\":\"ls\"}", "invalid_type", "'argv' must be an array of strings" },
                { "{\"argv\":{\"0\":\"ls\"}}", "invalid_type", "'argv' must be an array of strings" },
                { "{\"argv\":[1]}", "invalid_type", "'argv[0]' must be a string" },
                { "{\"argv\":[\"ls\",\"-l\",3]}", "invalid_type", "'argv[2]' must be a string" },
                { "{\"argv\":[\"ls\",null]}", "invalid_type", "'argv[1]' must be a string" },
                { "{\"argv\":[\"ls\",[\"x\"]]}", "invalid_type", "'argv[1]' must be a string" },
                { "{\"cmd\":\"ls\",\"cwd\":1}", "invalid_type", "'cwd' must be a string" },
                { "{\"cmd\":\"ls\",\"env\":[]}", "invalid_type", "'env' must be an object" },
                { "{\"cmd\":\"ls\",\"env\":{\"A\":true}}", "invalid_type", "'env.A' must be a string" },
                { "{\"cmd\":\"ls\",\"timeout\":\"5\"}", "invalid_type", "'timeout' must be an integer" },
                { "{\"cmd\":\"ls\",\"timeout\":1.5}", "invalid_type", "'timeout' must be an integer" },
                { "{\"cmd\":\"ls\",\"stdin\":1}", "invalid_type", "'stdin' must be a string" },
                { "{\"cmd\":\"ls\",\"stdin\":[\"a\"]}", "invalid_type", "'stdin' must be a string" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                exec_err(cases[i].body, cases[i].reason, cases[i].msg);
}

static void test_exec_unknown_fields(void **state)
{
        exec_err("{\"cmd\":\"ls\",\"shell\":true}", "unknown_field", "unknown field 'shell'");
        exec_err("{\"command\":\"ls\"}", "unknown_field", "unknown field 'command'");
        exec_err("{\"cmd\":\"ls\",\"timeoutMs\":null}", "unknown_field", "unknown field 'timeoutMs'");
}

static void test_exec_timeout_bounds(void **state)
{
        static const char msg[] = "'timeout' must be between 1 and 86400";
        struct exec_spec s;

        exec_ok("{\"cmd\":\"x\",\"timeout\":1}", &s);
        assert_int_equal(s.timeout_s, 1);
        exec_spec_release(&s);
        exec_ok("{\"cmd\":\"x\",\"timeout\":86400}", &s);
        assert_int_equal(s.timeout_s, 86400);
        exec_spec_release(&s);
        exec_err("{\"cmd\":\"x\",\"timeout\":0}", "out_of_range", msg);
        exec_err("{\"cmd\":\"x\",\"timeout\":86401}", "out_of_range", msg);
        exec_err("{\"cmd\":\"x\",\"timeout\":-1}", "out_of_range", msg);
}

static void test_exec_argv_bounds(void **state)
{
        /* Linux's MAX_ARG_STRLEN minus the NUL */
        _cleanup_free_ char *a131071 = rep('a', 131071), *a131072 = rep('a', 131072);
        json_auto_t *many = json_object(), *arr = json_array();
        struct exec_spec s;

        exec_err("{\"argv\":[]}", "invalid_value", "'argv' must not be empty");
        exec_err("{\"argv\":[\"\"]}", "invalid_value", "'argv[0]' must not be empty");
        exec_err("{\"argv\":[\"\",\"x\"]}", "invalid_value", "'argv[0]' must not be empty");
        exec_err("{\"cmd\":\"\"}", "invalid_value", "'cmd' must not be empty");
        exec_ok("{\"argv\":[\"x\",\"\"]}", &s);
        assert_int_equal(s.argc, 2);
        exec_spec_release(&s);

        /* entry count */
        for (int i = 0; i < SBX_MAX_ARGV; i++)
                assert_int_equal(json_array_append_new(arr, json_string("a")), 0);
        assert_int_equal(json_object_set(many, "argv", arr), 0);
        exec_ok_json(many, &s);
        assert_int_equal(s.argc, SBX_MAX_ARGV);
        assert_null(s.argv[SBX_MAX_ARGV]);
        exec_spec_release(&s);
        assert_int_equal(json_array_append_new(arr, json_string("a")), 0);
        exec_err_json(many, "argv 4097", "out_of_range", "'argv' has more than 4096 entries");

        /* one string */
        {
                json_auto_t *ok = json_pack("{s:[s,s]}", "argv", "x", a131071);
                json_auto_t *bad = json_pack("{s:[s,s]}", "argv", "x", a131072);
                json_auto_t *cmd_ok = json_pack("{s:s}", "cmd", a131071);
                json_auto_t *cmd_bad = json_pack("{s:s}", "cmd", a131072);

                exec_ok_json(ok, &s);
                exec_spec_release(&s);
                exec_err_json(bad, "argv[1] 131072", "invalid_value", "'argv[1]' is longer than 131071 bytes");
                exec_ok_json(cmd_ok, &s);
                assert_int_equal(strlen(s.argv[2]), 131071);
                exec_spec_release(&s);
                exec_err_json(cmd_bad, "cmd 131072", "invalid_value", "'cmd' is longer than 131071 bytes");
        }
}

static void test_exec_total_bytes(void **state)
{
        static const char argv_msg[] = "'argv' and 'env' together must be at most 262144 bytes";
        _cleanup_free_ char *a = rep('a', 131071), *b_in = rep('b', 131069), *b_out = rep('b', 131070),
                            *b_env = rep('b', 131059), *v32k = rep('v', SBX_MAX_ENV_VALUE);
        struct exec_spec s;

        /* argv alone: 2 + 131072 + 131070 = 262144 bytes with NULs */
        {
                json_auto_t *in = json_pack("{s:[s,s,s]}", "argv", "x", a, b_in);
                json_auto_t *out = json_pack("{s:[s,s,s]}", "argv", "x", a, b_out);

                exec_ok_json(in, &s);
                exec_spec_release(&s);
                exec_err_json(out, "argv 262145", "out_of_range", argv_msg);
        }
        /* argv 262134 bytes, plus "A=vvvvvvv" (10 bytes) fits, plus "A=vvvvvvvv" (11) does not */
        {
                json_auto_t *in = json_pack("{s:[s,s,s],s:{s:s}}", "argv", "x", a, b_env, "env", "A", "vvvvvvv");
                json_auto_t *out = json_pack("{s:[s,s,s],s:{s:s}}", "argv", "x", a, b_env, "env", "A", "vvvvvvvv");

                exec_ok_json(in, &s);
                assert_int_equal(s.n_env, 1);
                exec_spec_release(&s);
                exec_err_json(out, "argv+env 262145", "out_of_range", argv_msg);
        }
        /* cmd form: "/bin/sh" "-c" cmd = 131083 bytes; four 32 KiB env values push it over */
        {
                json_auto_t *three =
                        json_pack("{s:s,s:{s:s,s:s,s:s}}", "cmd", a, "env", "K1", v32k, "K2", v32k, "K3", v32k);
                json_auto_t *four = json_pack("{s:s,s:{s:s,s:s,s:s,s:s}}", "cmd", a, "env", "K1", v32k, "K2", v32k,
                                              "K3", v32k, "K4", v32k);

                exec_ok_json(three, &s);
                exec_spec_release(&s);
                exec_err_json(four, "cmd+env", "out_of_range", "'cmd' and 'env' together must be at most 262144 bytes");
        }
}

static void test_exec_env(void **state)
{
        static const char *const bad[] = { "1A", "A-B", "A B", "A=B", "caf\xc3\xa9" };
        json_auto_t *j = json_pack("{s:s}", "cmd", "x"), *env = json_object();
        struct exec_spec s;
        char key[16];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *b = json_pack("{s:s,s:{s:s}}", "cmd", "x", "env", bad[i], "v");
                char msg[128];

                snprintf(msg, sizeof msg, "'env.%s' is not a valid environment variable name", bad[i]);
                exec_err_json(b, bad[i], "invalid_value", msg);
        }
        exec_err("{\"cmd\":\"x\",\"env\":{\"A\":\"\\u0000\"}}", "invalid_value",
                 "'env.A' must be at most 32768 bytes without NUL");

        for (int i = 0; i < SBX_MAX_ENV; i++) {
                snprintf(key, sizeof key, "V%d", i);
                assert_int_equal(json_object_set_new(env, key, json_string("x")), 0);
        }
        assert_int_equal(json_object_set(j, "env", env), 0);
        exec_ok_json(j, &s);
        assert_int_equal(s.n_env, SBX_MAX_ENV);
        assert_string_equal(s.env[0], "V0=x");
        assert_null(s.env[SBX_MAX_ENV]);
        exec_spec_release(&s);
        assert_int_equal(json_object_set_new(env, "ONE_MORE", json_string("x")), 0);
        exec_err_json(j, "env 257", "out_of_range", "'env' has more than 256 entries");
}

static void test_exec_cwd(void **state)
{
        static const struct {
                const char *in, *out;
        } good[] = {
                { "/", "/" },
                { "//", "/" },
                { "///", "/" },
                { "/.", "/" },
                { "/./", "/" },
                { "/./.", "/" },
                { "/root", "/root" },
                { "/root/", "/root" },
                { "/root//", "/root" },
                { "//srv//app//", "/srv/app" },
                { "/srv/./app", "/srv/app" },
                { "/srv/././app/.", "/srv/app" },
                { "/a/.b/c.", "/a/.b/c." },
                { "/a/..b/b..", "/a/..b/b.." },
                { "/...", "/..." },
                { "/a b/\xc3\xa9", "/a b/\xc3\xa9" },
        };
        static const struct {
                const char *in, *msg;
        } bad[] = {
                { "", "'cwd' must be an absolute path" },       { "root", "'cwd' must be an absolute path" },
                { "./root", "'cwd' must be an absolute path" }, { "..", "'cwd' must be an absolute path" },
                { "/..", "'cwd' must not contain '..'" },       { "/../", "'cwd' must not contain '..'" },
                { "/a/..", "'cwd' must not contain '..'" },     { "/a/../b", "'cwd' must not contain '..'" },
                { "//a//..//", "'cwd' must not contain '..'" }, { "/a/./../b", "'cwd' must not contain '..'" },
        };
        _cleanup_free_ char *long_ok = rep('c', SBX_MAX_CWD - 1), *long_bad = rep('c', SBX_MAX_CWD);
        struct exec_spec s;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                json_auto_t *j = json_pack("{s:s,s:s}", "cmd", "pwd", "cwd", good[i].in);

                exec_ok_json(j, &s);
                if (strcmp(s.cwd, good[i].out) != 0)
                        fail_msg("cwd \"%s\": got \"%s\", want \"%s\"", good[i].in, s.cwd, good[i].out);
                exec_spec_release(&s);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_auto_t *j = json_pack("{s:s,s:s}", "cmd", "pwd", "cwd", bad[i].in);

                exec_err_json(j, bad[i].in, "invalid_value", bad[i].msg);
        }
        exec_err("{\"cmd\":\"pwd\",\"cwd\":\"/a\\u0000b\"}", "invalid_value", "'cwd' must not contain NUL bytes");

        /* length: SBX_MAX_CWD - 1 bytes fit (normalised or not), SBX_MAX_CWD do not */
        long_ok[0] = '/';
        long_bad[0] = '/';
        {
                json_auto_t *ok = json_pack("{s:s,s:s}", "cmd", "pwd", "cwd", long_ok);
                json_auto_t *bad_len = json_pack("{s:s,s:s}", "cmd", "pwd", "cwd", long_bad);

                exec_ok_json(ok, &s);
                assert_string_equal(s.cwd, long_ok);
                exec_spec_release(&s);
                exec_err_json(bad_len, "cwd 4096", "invalid_value", "'cwd' is longer than 4095 bytes");
        }
        long_ok[SBX_MAX_CWD - 2] = '/';
        {
                json_auto_t *ok = json_pack("{s:s,s:s}", "cmd", "pwd", "cwd", long_ok);

                exec_ok_json(ok, &s);
                assert_int_equal(strlen(s.cwd), SBX_MAX_CWD - 2);
                exec_spec_release(&s);
        }
}

static void test_exec_nul(void **state)
{
        struct exec_spec s;

        exec_err("{\"cmd\":\"ls\\u0000rm\"}", "invalid_value", "'cmd' must not contain NUL bytes");
        exec_err("{\"argv\":[\"ls\",\"a\\u0000\"]}", "invalid_value", "'argv[1]' must not contain NUL bytes");
        exec_err("{\"argv\":[\"\\u0000\"]}", "invalid_value", "'argv[0]' must not contain NUL bytes");

        /* stdin is bytes: NULs are kept, and so is the length */
        exec_ok("{\"cmd\":\"cat\",\"stdin\":\"a\\u0000b\\u0000\"}", &s);
        assert_int_equal(s.stdin_len, 4);
        assert_memory_equal(s.stdin_data, "a\0b\0", 4);
        exec_spec_release(&s);
        exec_ok("{\"cmd\":\"cat\",\"stdin\":\"\\u0000\"}", &s);
        assert_int_equal(s.stdin_len, 1);
        assert_int_equal(s.stdin_data[0], '\0');
        exec_spec_release(&s);
}

static void test_exec_stdin_bound(void **state)
{
        _cleanup_free_ char *buf = rep('\0', SBX_MAX_JSON_BODY + 1);
        json_auto_t *ok = NULL, *bad = NULL;
        struct exec_spec s;

        buf[5] = 'x';
        ok = json_pack("{s:s,s:s%}", "cmd", "cat", "stdin", buf, (size_t)SBX_MAX_JSON_BODY);
        bad = json_pack("{s:s,s:s%}", "cmd", "cat", "stdin", buf, (size_t)SBX_MAX_JSON_BODY + 1);
        assert_non_null(ok);
        assert_non_null(bad);
        exec_ok_json(ok, &s);
        assert_int_equal(s.stdin_len, SBX_MAX_JSON_BODY);
        assert_memory_equal(s.stdin_data, buf, SBX_MAX_JSON_BODY);
        exec_spec_release(&s);
        exec_err_json(bad, "stdin 1 MiB + 1", "invalid_value", "'stdin' is longer than 1048576 bytes");
}

/* ---- allocation failure ---- */

/* ---- processes (process_spec_parse) and sessions/contexts (process_base_parse) ---- */

static void process_err(const char *text, const char *reason, const char *msg)
{
        json_auto_t *j = J(text);
        struct exec_spec s;
        struct sbx_err err = {};

        memset(&s, 0x5a, sizeof s);
        assert_int_equal(process_spec_parse(j, &s, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, reason);
        assert_string_equal(err.msg, msg);
}

static void test_process_fields(void **state)
{
        json_auto_t *j = J("{\"cmd\":\"top\",\"pty\":{\"cols\":120},\"user\":\"nobody\",\"tag\":\"t\","
                           "\"keepAfterDisconnect\":false,\"maxRunAfterDisconnect\":7,\"timeout\":0}");
        json_auto_t *d = J("{\"argv\":[\"cat\"],\"stdin\":true}");
        struct sbx_err err = {};
        struct exec_spec s;

        assert_int_equal(process_spec_parse(j, &s, &err), 0);
        assert_true(s.pty);
        assert_int_equal(s.cols, 120);
        assert_int_equal(s.rows, 24);
        assert_string_equal(s.user, "nobody");
        assert_string_equal(s.tag, "t");
        assert_false(s.keep_after_disconnect);
        assert_int_equal(s.max_run_after_disconnect_s, 7);
        assert_int_equal(s.timeout_s, 0);
        exec_spec_release(&s);
        /* the defaults: pipes, stdin closed, kept after disconnect, no limits */
        assert_int_equal(process_spec_parse(d, &s, &err), 0);
        assert_false(s.pty);
        assert_true(s.stdin_keep);
        assert_null(s.stdin_data);
        assert_true(s.keep_after_disconnect);
        assert_int_equal(s.max_run_after_disconnect_s, -1);
        exec_spec_release(&s);
        /* exec does not take the process fields */
        exec_err("{\"cmd\":\"x\",\"pty\":true}", "unknown_field", "unknown field 'pty'");
}

static void test_process_errors(void **state)
{
        process_err("{\"cmd\":\"x\",\"pty\":{\"cols\":0}}", "out_of_range", "'pty.cols' must be between 1 and 10000");
        process_err("{\"cmd\":\"x\",\"pty\":{\"rows\":10001}}", "out_of_range",
                    "'pty.rows' must be between 1 and 10000");
        process_err("{\"cmd\":\"x\",\"pty\":{\"size\":1}}", "unknown_field", "unknown field 'pty.size'");
        process_err("{\"cmd\":\"x\",\"pty\":3}", "invalid_type", "'pty' must be an object {cols, rows} or a boolean");
        process_err("{\"cmd\":\"x\",\"pty\":true,\"stdin\":\"data\"}", "invalid_value",
                    "'stdin' data cannot be given with 'pty': write it to the terminal");
        process_err("{\"cmd\":\"x\",\"user\":\"a/b\"}", "invalid_value", "'user' must be a user name or a numeric uid");
        process_err("{\"cmd\":\"x\",\"user\":\"\"}", "invalid_value", "'user' must be a user name or a numeric uid");
        process_err("{\"cmd\":\"x\",\"stdin\":3}", "invalid_type", "'stdin' must be a boolean or a string");
        process_err("{\"cmd\":\"x\",\"timeout\":2592001}", "out_of_range", "'timeout' must be between 0 and 2592000");
        process_err("{\"cmd\":\"x\",\"keepAfterDisconnect\":1}", "invalid_type",
                    "'keepAfterDisconnect' must be a boolean");
        process_err("{\"cmd\":\"x\",\"maxRunAfterDisconnect\":-1}", "out_of_range",
                    "'maxRunAfterDisconnect' must be between 0 and 2592000");
}

static void test_process_base(void **state)
{
        static const char *const fields[] = { "sessionId", "cwd", "env", "user", NULL };
        json_auto_t *ok = J("{\"sessionId\":\"s\",\"cwd\":\"/app//x/\",\"env\":{\"A\":\"1\"},\"user\":\"1000\"}");
        json_auto_t *bad = J("{\"cwd\":\"rel\"}");
        json_auto_t *unknown = J("{\"cmd\":\"x\"}");
        struct sbx_err err = {};
        struct exec_spec s;

        assert_int_equal(process_base_parse(ok, fields, &s, &err), 0);
        assert_string_equal(s.cwd, "/app/x");
        assert_true(s.cwd_given);
        assert_int_equal(s.n_env, 1);
        assert_string_equal(s.env[0], "A=1");
        assert_string_equal(s.user, "1000");
        assert_null(s.argv);
        exec_spec_release(&s);
        assert_int_equal(process_base_parse(bad, fields, &s, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_value");
        sbx_err_clear(&err);
        assert_int_equal(process_base_parse(unknown, fields, &s, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "unknown_field");
}

static void test_sandbox_enomem(void **state)
{
        static const char *const bodies[] = {
                NULL,
                "{\"template\":\"t\",\"name\":\"n\",\"env\":{\"A\":\"1\",\"B\":\"2\"},\"metadata\":{\"k\":\"v\","
                "\"l\":\"w\"},\"resources\":{\"cpu\":2},\"timeout\":{\"lifetime\":9}}",
        };

        for (size_t b = 0; b < ELEMENTSOF(bodies); b++) {
                json_auto_t *j = bodies[b] ? J(bodies[b]) : NULL;
                long n, points = 0;

                for (n = 0;; n++) {
                        struct sandbox_spec s;
                        struct sbx_err err = {};
                        long live = alloc_live;
                        int r;

                        memset(&s, 0xa5, sizeof s);
                        alloc_arm(n);
                        r = sandbox_spec_parse(j, &s, &err);
                        alloc_disarm();
                        if (!alloc_failed) {
                                assert_int_equal(r, 0);
                                sandbox_spec_release(&s);
                                assert_int_equal(alloc_live, live);
                                break;
                        }
                        points++;
                        assert_int_equal(r, -ENOMEM);
                        assert_int_equal(err.code, -ENOMEM);
                        assert_true(untouched(&s, sizeof s));
                        assert_int_equal(alloc_live, live);
                }
                assert_true(points >= (bodies[b] ? 4 : 2));

                /* and to_json, which returns NULL */
                {
                        struct sandbox_spec s;

                        sandbox_ok_json(j, &s);
                        for (n = 0;; n++) {
                                long live = alloc_live;
                                json_t *out;

                                alloc_arm(n);
                                out = sandbox_spec_to_json(&s);
                                alloc_disarm();
                                if (!alloc_failed) {
                                        assert_non_null(out);
                                        json_decref(out);
                                        assert_int_equal(alloc_live, live);
                                        break;
                                }
                                assert_null(out);
                                assert_int_equal(alloc_live, live);
                        }
                        assert_true(n >= 8);
                        sandbox_spec_release(&s);
                }
        }
}

static void test_exec_enomem(void **state)
{
        static const char *const bodies[] = {
                "{\"cmd\":\"echo hi\"}",
                "{\"argv\":[\"a\",\"b\",\"c\"],\"env\":{\"A\":\"1\",\"B\":\"2\"},\"stdin\":\"in\",\"cwd\":\"/x\"}",
        };

        for (size_t b = 0; b < ELEMENTSOF(bodies); b++) {
                json_auto_t *j = J(bodies[b]);
                long n;

                for (n = 0;; n++) {
                        struct exec_spec s;
                        struct sbx_err err = {};
                        long live = alloc_live;
                        int r;

                        memset(&s, 0xa5, sizeof s);
                        alloc_arm(n);
                        r = exec_spec_parse(j, &s, &err);
                        alloc_disarm();
                        if (!alloc_failed) {
                                assert_int_equal(r, 0);
                                exec_spec_release(&s);
                                assert_int_equal(alloc_live, live);
                                break;
                        }
                        assert_int_equal(r, -ENOMEM);
                        assert_int_equal(err.code, -ENOMEM);
                        assert_true(untouched(&s, sizeof s));
                        assert_int_equal(alloc_live, live);
                }
                assert_true(n >= 5);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_process_fields),
                cmocka_unit_test(test_process_errors),
                cmocka_unit_test(test_process_base),
                cmocka_unit_test(test_sandbox_defaults),
                cmocka_unit_test(test_sandbox_all_fields),
                cmocka_unit_test(test_sandbox_metadata_is_a_copy),
                cmocka_unit_test(test_sandbox_wrong_types),
                cmocka_unit_test(test_sandbox_unknown_fields),
                cmocka_unit_test(test_sandbox_resource_bounds),
                cmocka_unit_test(test_sandbox_template_and_name),
                cmocka_unit_test(test_sandbox_nul_in_strings),
                cmocka_unit_test(test_env_name_valid),
                cmocka_unit_test(test_sandbox_env),
                cmocka_unit_test(test_sandbox_metadata_limits),
                cmocka_unit_test(test_sandbox_to_json_round_trip),
                cmocka_unit_test(test_exec_defaults),
                cmocka_unit_test(test_exec_all_fields),
                cmocka_unit_test(test_exec_cmd_argv_choice),
                cmocka_unit_test(test_exec_wrong_types),
                cmocka_unit_test(test_exec_unknown_fields),
                cmocka_unit_test(test_exec_timeout_bounds),
                cmocka_unit_test(test_exec_argv_bounds),
                cmocka_unit_test(test_exec_total_bytes),
                cmocka_unit_test(test_exec_env),
                cmocka_unit_test(test_exec_cwd),
                cmocka_unit_test(test_exec_nul),
                cmocka_unit_test(test_exec_stdin_bound),
                cmocka_unit_test(test_sandbox_enomem),
                cmocka_unit_test(test_exec_enomem),
        };

        /* before any JSON exists, so every jansson block goes through the counting wrappers */
        json_set_alloc_funcs(t_malloc, t_free);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
