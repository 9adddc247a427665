// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/core/build-spec.c, the template spec parser: a full valid spec with every field,
 * the defaults, the config JSON, the digest (stable under key order, sensitive to content), every error
 * path with its reason and a message naming the field, the step cache keys, release on odd inputs and
 * allocation failure at every allocation the parser makes. build-spec.c is included here (STYLE B7)
 * with malloc/calloc/free/strdup/asprintf redirected to counting wrappers that can fail on demand, so
 * "nothing leaks on failure" is checked without a sanitizer too. Pure: no I/O.
 */
#include <errno.h>
#include <openssl/evp.h>
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

/* every header build-spec.c includes comes first, so the macros below reach only its own code */
#include "common/cleanup.h"
#include "common/json.h"
#include "common/limits.h"
#include "core/build-spec.h"
#include "images/template.h"
#include "sandbox/spec.h"

#include "alloc-count.h"

#define malloc(n) t_malloc(n)
#define calloc(n, size) t_calloc(n, size)
#define strdup(s) t_strdup(s)
#define asprintf(ret, ...) t_asprintf(ret, __VA_ARGS__)
#define free(p) t_free(p)
#include "core/build-spec.c"
#undef malloc
#undef calloc
#undef strdup
#undef asprintf
#undef free

/* ---- helpers ---- */

static json_t *J(const char *text)
{
        json_error_t e;
        json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);

        if (!j)
                fail_msg("bad test JSON (%s): %s", e.text, text);
        return j;
}

/* n copies of c, NUL-terminated */
static char *rep(char c, size_t n)
{
        char *s = malloc(n + 1);

        assert_non_null(s);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

static bool is_hex(const char *s, size_t n)
{
        if (strlen(s) != n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

static void ok_json(json_t *body, struct build_spec *s)
{
        struct sbx_err err = {};
        long live = alloc_live;
        int r = build_spec_parse(body, s, &err);

        if (r != 0)
                fail_msg("build_spec_parse: %d %s: %s", r, err.reason, err.msg);
        assert_int_equal(err.code, 0);
        assert_true(alloc_live > live); /* at least packages */
        assert_non_null(s->packages);
        assert_non_null(s->config);
        assert_non_null(s->canonical);
        assert_memory_equal(s->digest, "sha256:", 7);
        assert_true(is_hex(s->digest + 7, 64));
}

static void ok(const char *text, struct build_spec *s)
{
        json_t *j = J(text);

        ok_json(j, s);
        json_decref(j);
}

/* Expect -SBX_E_INVALID with this reason and a message containing field, *ret untouched, no leak. */
static void err_json(json_t *body, const char *reason, const char *field)
{
        struct build_spec s;
        struct sbx_err err = {};
        long live = alloc_live;
        int r;

        memset(&s, 0xa5, sizeof s);
        r = build_spec_parse(body, &s, &err);
        if (r != -SBX_E_INVALID) {
                char *d = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);

                if (r == 0)
                        build_spec_release(&s);
                fail_msg("expected -SBX_E_INVALID for %.200s, got %d", d ? d : "(null)", r);
        }
        assert_int_equal(err.code, -SBX_E_INVALID);
        if (strcmp(err.reason, reason) != 0)
                fail_msg("reason '%s' != '%s' (%s)", err.reason, reason, err.msg);
        if (!strstr(err.msg, field))
                fail_msg("message '%s' does not name %s", err.msg, field);
        assert_true(untouched(&s, sizeof s));
        assert_int_equal(alloc_live, live);
        /* and the same without an error struct */
        assert_int_equal(build_spec_parse(body, &s, NULL), -SBX_E_INVALID);
        assert_true(untouched(&s, sizeof s));
        assert_int_equal(alloc_live, live);
}

static void err_text(const char *text, const char *reason, const char *field)
{
        json_t *j = J(text);

        err_json(j, reason, field);
        json_decref(j);
}

/* {"name": "t", key: value} */
static void err_field(const char *key, const char *value, const char *reason, const char *field)
{
        char buf[8192];

        snprintf(buf, sizeof buf, "{\"name\": \"t\", \"%s\": %s}", key, value);
        err_text(buf, reason, field);
}

/* {"name": "t", "files": [{"path": "/f", <entry>}]} */
static void err_file(const char *entry, const char *reason, const char *field)
{
        char buf[8192];

        snprintf(buf, sizeof buf, "{\"name\": \"t\", \"files\": [{%s}]}", entry);
        err_text(buf, reason, field);
}

static json_t *spec_with_array(const char *key, size_t n, json_t *(*item)(size_t))
{
        json_t *j = json_pack("{s:s}", "name", "t"), *a = json_array();

        assert_non_null(j);
        assert_non_null(a);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(json_array_append_new(a, item(i)), 0);
        assert_int_equal(json_object_set_new(j, key, a), 0);
        return j;
}

static json_t *package_item(size_t i)
{
        char b[32];

        snprintf(b, sizeof b, "pkg%zu", i);
        return json_string(b);
}

static json_t *file_item(size_t i)
{
        char b[32];

        snprintf(b, sizeof b, "/f/%zu", i);
        return json_pack("{s:s,s:s}", "path", b, "content", "x");
}

static json_t *setup_item(size_t i)
{
        return json_string("true");
}

static json_t *npm_item(size_t i)
{
        char b[32];

        snprintf(b, sizeof b, "p%zu@1", i);
        return json_string(b);
}

/* ---- valid specs ---- */

static const char full_spec[] =
        "{\"name\": \"myapp:v1.2\", \"description\": \"a demo\","
        " \"base\": {\"suite\": \"trixie\", \"variant\": \"buildd\"},"
        " \"packages\": [\"jq\", \"python3-pip\", \"g++\", \"libc6.1\"],"
        " \"npm\": [\"left-pad@1.3.0\", \"@scope/pkg@^2.0.0\", \"typescript\"],"
        " \"files\": [{\"path\": \"/app/empty\", \"content\": \"\"},"
        "            {\"path\": \"/app//a.txt/.\", \"content\": \"hello\\n\", \"mode\": 493},"
        "            {\"path\": \"/b/0\", \"contentBase64\": \"\"},"
        "            {\"path\": \"/b/1\", \"contentBase64\": \"YQ==\"},"
        "            {\"path\": \"/b/2\", \"contentBase64\": \"YWI=\"},"
        "            {\"path\": \"/b/3\", \"contentBase64\": \"YWJj\", \"mode\": 0},"
        "            {\"path\": \"/b/bin\", \"contentBase64\": \"AP8Aw6k=\", \"mode\": 4095}],"
        " \"env\": {\"PATH\": \"/usr/local/bin:/usr/bin\", \"_X1\": \"a=b\", \"EMPTY\": \"\"},"
        " \"workdir\": \"/app//x/.\", \"user\": \"1000:1000\","
        " \"cmd\": [\"python3\", \"app.py\"], \"entrypoint\": [\"/bin/sh\", \"-c\"],"
        " \"labels\": {\"org.example.v\": \"1\", \"e\": \"\"},"
        " \"setup\": [\"echo hi > /tmp/x\", \"pip install -r /app/req.txt\"], \"setupTimeout\": 120}";

static void test_full(void **state)
{
        struct build_spec s;
        json_t *j = J(full_spec), *want;
        static const unsigned char bin[] = { 0x00, 0xff, 0x00, 0xc3, 0xa9 };

        ok_json(j, &s);
        assert_string_equal(s.name, "myapp:v1.2");
        assert_string_equal(s.from, "");
        assert_string_equal(s.suite, "trixie");
        assert_string_equal(s.variant, "buildd");
        assert_string_equal(s.packages, "jq,python3-pip,g++,libc6.1");
        assert_int_equal(s.n_npm, 3);
        assert_string_equal(s.npm[0], "left-pad@1.3.0");
        assert_string_equal(s.npm[1], "@scope/pkg@^2.0.0");
        assert_string_equal(s.npm[2], "typescript");

        assert_int_equal(s.n_files, 7);
        assert_string_equal(s.files[0].path, "/app/empty");
        assert_int_equal(s.files[0].len, 0);
        assert_non_null(s.files[0].data);
        assert_int_equal(s.files[0].mode, 0644);
        assert_string_equal(s.files[1].path, "/app/a.txt");
        assert_int_equal(s.files[1].len, 6);
        assert_memory_equal(s.files[1].data, "hello\n", 6);
        assert_int_equal(s.files[1].mode, 0755);
        assert_string_equal(s.files[2].path, "/b/0");
        assert_int_equal(s.files[2].len, 0);
        assert_int_equal(s.files[3].len, 1);
        assert_memory_equal(s.files[3].data, "a", 1);
        assert_int_equal(s.files[4].len, 2);
        assert_memory_equal(s.files[4].data, "ab", 2);
        assert_int_equal(s.files[5].len, 3);
        assert_memory_equal(s.files[5].data, "abc", 3);
        assert_int_equal(s.files[5].mode, 0);
        assert_int_equal(s.files[6].len, sizeof bin);
        assert_memory_equal(s.files[6].data, bin, sizeof bin);
        assert_int_equal(s.files[6].mode, 07777);

        assert_int_equal(s.n_setup, 2);
        assert_string_equal(s.setup[0], "echo hi > /tmp/x");
        assert_string_equal(s.setup[1], "pip install -r /app/req.txt");
        assert_int_equal(s.setup_timeout_s, 120);

        want = J("{\"env\": [\"PATH=/usr/local/bin:/usr/bin\", \"_X1=a=b\", \"EMPTY=\"], \"workdir\": \"/app/x\","
                 " \"user\": \"1000:1000\", \"cmd\": [\"python3\", \"app.py\"], \"entrypoint\": [\"/bin/sh\", \"-c\"],"
                 " \"labels\": {\"org.example.v\": \"1\", \"e\": \"\"}}");
        if (!json_equal(s.config, want)) {
                char *d = json_dumps(s.config, JSON_COMPACT);

                fail_msg("config %s", d);
        }
        json_decref(want);
        assert_true(json_equal(s.canonical, j));
        assert_ptr_not_equal(s.canonical, j); /* a copy */
        json_decref(j);
        build_spec_release(&s);
        assert_int_equal(alloc_live, 0);
}

static void test_defaults(void **state)
{
        struct build_spec s;
        json_t *empty = json_object();

        ok("{\"name\": \"x1\"}", &s);
        assert_string_equal(s.name, "x1");
        assert_string_equal(s.from, "");
        assert_string_equal(s.suite, "bookworm");
        assert_string_equal(s.variant, "minbase");
        assert_string_equal(s.packages, "");
        assert_int_equal(s.n_npm, 0);
        assert_int_equal(s.n_files, 0);
        assert_int_equal(s.n_setup, 0);
        assert_int_equal(s.setup_timeout_s, SBX_DEFAULT_SETUP_TIMEOUT_S);
        assert_true(json_equal(s.config, empty));
        build_spec_release(&s);

        ok("{\"name\": \"x1\", \"from\": \"python\", \"description\": \"\"}", &s);
        assert_string_equal(s.from, "python");
        build_spec_release(&s);

        /* only base.suite: variant stays the default; empty arrays and objects are fine */
        ok("{\"name\": \"x1\", \"base\": {\"suite\": \"sid\"}, \"packages\": [], \"npm\": [], \"files\": [],"
           " \"setup\": [], \"env\": {}, \"labels\": {}, \"cmd\": [], \"entrypoint\": []}",
           &s);
        assert_string_equal(s.suite, "sid");
        assert_string_equal(s.variant, "minbase");
        assert_string_equal(s.packages, "");
        assert_int_equal(s.n_files, 0);
        assert_non_null(json_object_get(s.config, "env"));
        build_spec_release(&s);

        /* bounds just inside */
        ok("{\"name\": \"x1\", \"setupTimeout\": 1}", &s);
        assert_int_equal(s.setup_timeout_s, 1);
        build_spec_release(&s);
        ok("{\"name\": \"x1\", \"setupTimeout\": 3600}", &s);
        assert_int_equal(s.setup_timeout_s, 3600);
        build_spec_release(&s);
        json_decref(empty);
        assert_int_equal(alloc_live, 0);
}

static void test_name_bounds(void **state)
{
        struct build_spec s;
        char *n64 = rep('a', 64), buf[256];

        snprintf(buf, sizeof buf, "{\"name\": \"%s\"}", n64);
        ok(buf, &s);
        assert_string_equal(s.name, n64);
        build_spec_release(&s);
        ok("{\"name\": \"my-app_1.0:Tag-2\"}", &s);
        build_spec_release(&s);
        free(n64);
}

static void test_workdir(void **state)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "/app//x/.", "/app/x" },
                { "/app/", "/app" },
                { "//a/./b//", "/a/b" },
                { "/a", "/a" },
                { "/", "/" },
                { "/.", "/" },
                { "///", "/" },
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                struct build_spec s;
                char buf[256];

                snprintf(buf, sizeof buf, "{\"name\": \"t\", \"workdir\": \"%s\"}", cases[i].in);
                ok(buf, &s);
                assert_string_equal(json_string_value(json_object_get(s.config, "workdir")), cases[i].out);
                build_spec_release(&s);
        }
}

static void test_limits_inside(void **state)
{
        struct build_spec s;
        json_t *j;
        char *u64 = rep('u', 64), buf[256];

        j = spec_with_array("packages", SBX_MAX_SPEC_PACKAGES, package_item);
        ok_json(j, &s);
        assert_true(strncmp(s.packages, "pkg0,pkg1,pkg2,", 15) == 0);
        build_spec_release(&s);
        json_decref(j);

        j = spec_with_array("files", SBX_MAX_SPEC_FILES, file_item);
        ok_json(j, &s);
        assert_int_equal(s.n_files, SBX_MAX_SPEC_FILES);
        build_spec_release(&s);
        json_decref(j);

        j = spec_with_array("setup", SBX_MAX_SPEC_SETUP, setup_item);
        ok_json(j, &s);
        assert_int_equal(s.n_setup, SBX_MAX_SPEC_SETUP);
        build_spec_release(&s);
        json_decref(j);

        j = spec_with_array("npm", SBX_MAX_SPEC_NPM, npm_item);
        ok_json(j, &s);
        assert_int_equal(s.n_npm, SBX_MAX_SPEC_NPM);
        build_spec_release(&s);
        json_decref(j);

        snprintf(buf, sizeof buf, "{\"name\": \"t\", \"user\": \"%s\"}", u64);
        ok(buf, &s);
        build_spec_release(&s);
        free(u64);
        assert_int_equal(alloc_live, 0);
}

/* ---- digest ---- */

static void test_digest(void **state)
{
        static const char a[] = "{\"name\": \"d\", \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"base\": {\"suite\": "
                                "\"bookworm\", \"variant\": \"minbase\"}, \"setup\": [\"x\", \"y\"]}";
        static const char reordered[] = "{\"setup\": [\"x\", \"y\"], \"base\": {\"variant\": \"minbase\", \"suite\": "
                                        "\"bookworm\"}, \"env\": {\"B\": \"2\", \"A\": \"1\"}, \"name\": \"d\"}";
        static const char *const changed[] = {
                "{\"name\": \"d\", \"env\": {\"A\": \"1\", \"B\": \"3\"}, \"base\": {\"suite\": \"bookworm\", "
                "\"variant\": \"minbase\"}, \"setup\": [\"x\", \"y\"]}",
                "{\"name\": \"d\", \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"base\": {\"suite\": \"bookworm\", "
                "\"variant\": \"minbase\"}, \"setup\": [\"y\", \"x\"]}",
                "{\"name\": \"e\", \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"base\": {\"suite\": \"bookworm\", "
                "\"variant\": \"minbase\"}, \"setup\": [\"x\", \"y\"]}",
                "{\"name\": \"d\", \"env\": {\"A\": \"1\", \"B\": \"2\"}, \"base\": {\"suite\": \"bookworm\", "
                "\"variant\": \"minbase\"}, \"setup\": [\"x\", \"y\"], \"setupTimeout\": 600}",
        };
        struct build_spec s1, s2, s3;

        ok(a, &s1);
        ok(a, &s2);
        assert_string_equal(s1.digest, s2.digest);
        build_spec_release(&s2);
        ok(reordered, &s2);
        assert_string_equal(s1.digest, s2.digest);
        build_spec_release(&s2);
        for (size_t i = 0; i < sizeof changed / sizeof *changed; i++) {
                ok(changed[i], &s3);
                assert_string_not_equal(s1.digest, s3.digest);
                build_spec_release(&s3);
        }
        build_spec_release(&s1);
        assert_int_equal(alloc_live, 0);
}

/* ---- errors ---- */

static void test_err_top(void **state)
{
        json_t *j;

        err_json(NULL, "invalid_type", "template spec");
        err_text("[]", "invalid_type", "template spec");
        err_text("\"name\"", "invalid_type", "template spec");
        err_text("null", "invalid_type", "template spec");
        err_text("42", "invalid_type", "template spec");
        err_text("{\"name\": \"t\", \"bogus\": 1}", "unknown_field", "'bogus'");
        err_text("{\"name\": \"t\", \"Name\": \"u\"}", "unknown_field", "'Name'");
        err_text("{\"name\": \"t\", \"files\": [{\"path\": \"/x\", \"content\": \"\", \"owner\": 1}]}", "unknown_field",
                 "'files[0].owner'");
        err_text("{\"name\": \"t\", \"files\": [{\"path\": \"/x\", \"content\": \"\"}, {\"path\": \"/y\", "
                 "\"content\": \"\", \"Mode\": 1}]}",
                 "unknown_field", "'files[1].Mode'");
        err_text("{\"name\": \"t\", \"base\": {\"suite\": \"bookworm\", \"arch\": \"amd64\"}}", "unknown_field",
                 "'base.arch'");
        err_text("{}", "missing_field", "'name'");
        err_text("{\"description\": \"x\"}", "missing_field", "'name'");

        /* a 70-character unknown key is quoted truncated, still naming it */
        j = json_pack("{s:s,s:i}", "name", "t",
                      "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", 1);
        err_json(j, "unknown_field", "'zzzzzzzz");
        json_decref(j);
}

static void test_err_name(void **state)
{
        static const char *const bad_names[] = { "\"\"",   "\"Bad\"", "\"host\"", "\"a/b\"",
                                                 "\"-a\"", "\"a:\"",  "\"a:.x\"", "\"a b\"",
                                                 "1",      "null",    "[\"a\"]",  "\"a\\u0000b\"" };
        char *n65 = rep('a', 65), buf[256];

        for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
                snprintf(buf, sizeof buf, "{\"name\": %s}", bad_names[i]);
                err_text(buf, "invalid_value", "'name'");
        }
        snprintf(buf, sizeof buf, "{\"name\": \"%s\"}", n65);
        err_text(buf, "invalid_value", "'name'");
        free(n65);
        /* catalog templates cannot be shadowed */
        err_text("{\"name\": \"python\"}", "invalid_value", "'name'");
        err_text("{\"name\": \"base\"}", "invalid_value", "catalog");
        err_text("{\"name\": \"node\"}", "invalid_value", "catalog");

        err_field("description", "1", "invalid_type", "'description'");
        {
                char *d = rep('d', 1025);
                json_t *j = json_pack("{s:s,s:s}", "name", "t", "description", d);

                err_json(j, "invalid_type", "'description'");
                json_decref(j);
                free(d);
        }
}

static void test_err_from_base(void **state)
{
        err_text("{\"name\": \"t\", \"from\": \"python\", \"base\": {}}", "invalid_value", "'from'");
        err_text("{\"name\": \"t\", \"from\": \"python\", \"base\": {\"suite\": \"bookworm\"}}", "invalid_value",
                 "'from'");
        err_text("{\"name\": \"t\", \"from\": \"python\", \"packages\": [\"jq\"]}", "invalid_value", "'packages'");
        err_text("{\"name\": \"t\", \"from\": \"python\", \"packages\": []}", "invalid_value", "'packages'");
        err_field("from", "\"\"", "invalid_type", "'from'");
        err_field("from", "1", "invalid_type", "'from'");
        err_field("from", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"", "invalid_type",
                  "'from'");
        err_field("base", "[]", "invalid_type", "'base'");
        err_field("base", "\"bookworm\"", "invalid_type", "'base'");
        err_field("base", "{\"suite\": \"\"}", "invalid_value", "'base.suite'");
        err_field("base", "{\"suite\": 12}", "invalid_value", "'base.suite'");
        err_field("base", "{\"suite\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "invalid_value", "'base.suite'");
        err_field("base", "{\"variant\": 1}", "invalid_value", "'base.variant'");
        /* NUL would cut the C copies short */
        err_field("from", "\"python\\u0000x\"", "invalid_type", "'from'");
        err_field("base", "{\"suite\": \"bookworm\\u0000x\"}", "invalid_value", "'base.suite'");
        err_field("base", "{\"variant\": \"minbase\\u0000x\"}", "invalid_value", "'base.variant'");
        err_field("base", "{\"variant\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "invalid_value", "'base.variant'");
}

static void test_err_packages(void **state)
{
        static const char *const bad_pkgs[] = {
                "jq;rm", "A", "x", "-x", ".x", "jq rm", "Jq", "jq_x", "jq/x", "jq$", ""
        };
        char *p129;
        json_t *j;

        for (size_t i = 0; i < sizeof bad_pkgs / sizeof *bad_pkgs; i++) {
                j = json_pack("{s:s,s:[s,s]}", "name", "t", "packages", "jq", bad_pkgs[i]);
                err_json(j, "invalid_value", "'packages[1]'");
                json_decref(j);
        }
        err_field("packages", "\"jq\"", "invalid_type", "'packages'");
        err_field("packages", "{}", "invalid_type", "'packages'");
        err_field("packages", "[1]", "invalid_value", "'packages[0]'");
        err_field("packages", "[\"jq\\u0000x\"]", "invalid_value", "'packages[0]'");
        p129 = rep('a', 129);
        j = json_pack("{s:s,s:[s]}", "name", "t", "packages", p129);
        err_json(j, "invalid_value", "'packages[0]'");
        json_decref(j);
        free(p129);

        j = spec_with_array("packages", SBX_MAX_SPEC_PACKAGES + 1, package_item);
        err_json(j, "out_of_range", "'packages'");
        json_decref(j);
}

static void test_err_npm(void **state)
{
        static const char *const bad_npm[] = { "-rf", "a b", "$(x)", "a;b", "`x`", "a\"b",
                                               "a'b", "a|b", "a\\b", "a&b", "" };
        json_t *j;
        char *long_spec = rep('a', 215);

        for (size_t i = 0; i < sizeof bad_npm / sizeof *bad_npm; i++) {
                j = json_pack("{s:s,s:[s]}", "name", "t", "npm", bad_npm[i]);
                err_json(j, "invalid_value", "'npm[0]'");
                json_decref(j);
        }
        j = json_pack("{s:s,s:[s]}", "name", "t", "npm", long_spec);
        err_json(j, "invalid_value", "'npm[0]'");
        json_decref(j);
        free(long_spec);
        err_field("npm", "\"left-pad\"", "invalid_type", "'npm'");
        err_field("npm", "[\"ok\", 2]", "invalid_value", "'npm[1]'");
        j = spec_with_array("npm", SBX_MAX_SPEC_NPM + 1, npm_item);
        err_json(j, "out_of_range", "'npm'");
        json_decref(j);
}

static void test_err_files(void **state)
{
        json_t *j;
        char *p;

        err_field("files", "{}", "invalid_type", "'files'");
        err_field("files", "\"x\"", "invalid_type", "'files'");
        err_field("files", "[1]", "invalid_type", "'files[0]'");
        err_field("files", "[{\"path\": \"/a\", \"content\": \"\"}, []]", "invalid_type", "'files[1]'");
        err_file("\"content\": \"x\"", "missing_field", "'files[0].path'");
        err_file("\"path\": \"x\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"/../x\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"/a/../b\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"/a/..\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"/\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"//./\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": \"/a\\u0000b\", \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": 1, \"content\": \"x\"", "invalid_value", "'files[0].path'");
        err_file("\"path\": null, \"content\": \"x\"", "invalid_value", "'files[0].path'");
        /* longer than the 4096-byte bound */
        p = rep('a', 4097);
        p[0] = '/';
        j = json_pack("{s:s,s:[{s:s,s:s}]}", "name", "t", "files", "path", p, "content", "x");
        err_json(j, "invalid_value", "'files[0].path'");
        json_decref(j);
        free(p);

        err_file("\"path\": \"/f\", \"content\": \"x\", \"contentBase64\": \"eA==\"", "missing_field", "'files[0]'");
        err_file("\"path\": \"/f\"", "missing_field", "'files[0]'");
        err_file("\"path\": \"/f\", \"content\": 1", "invalid_type", "'files[0].content'");
        err_file("\"path\": \"/f\", \"content\": null", "invalid_type", "'files[0].content'");
        err_file("\"path\": \"/f\", \"contentBase64\": 1", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"abc\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"!!!!\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"a\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"YWJjZA=\"", "invalid_value", "'files[0].contentBase64'");
        /* padding only at the end, at most two, and nothing but the alphabet */
        err_file("\"path\": \"/f\", \"contentBase64\": \"====\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"A===\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"YQ==YQ==\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"Y=Q=\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"    \"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \" YQ=\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"YQ==\\n\\n\\n\\n\"", "invalid_value",
                 "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"contentBase64\": \"YQ\\u0000=\"", "invalid_value", "'files[0].contentBase64'");
        err_file("\"path\": \"/f\", \"content\": \"\", \"mode\": -1", "out_of_range", "'files[0].mode'");
        err_file("\"path\": \"/f\", \"content\": \"\", \"mode\": 4096", "out_of_range", "'files[0].mode'");
        err_file("\"path\": \"/f\", \"content\": \"\", \"mode\": \"644\"", "out_of_range", "'files[0].mode'");
        err_file("\"path\": \"/f\", \"content\": \"\", \"mode\": 420.0", "out_of_range", "'files[0].mode'");
        err_file("\"path\": \"/f\", \"content\": \"\", \"mode\": null", "out_of_range", "'files[0].mode'");

        j = spec_with_array("files", SBX_MAX_SPEC_FILES + 1, file_item);
        err_json(j, "out_of_range", "'files'");
        json_decref(j);
}

/* an error in a later file after earlier ones were parsed frees them (alloc_live checks it) */
static void test_err_files_late(void **state)
{
        err_text("{\"name\": \"t\", \"files\": [{\"path\": \"/a\", \"content\": \"aaa\"}, {\"path\": \"/b\", "
                 "\"contentBase64\": \"YWJj\"}, {\"path\": \"/c\", \"content\": \"c\", \"mode\": 99999}]}",
                 "out_of_range", "'files[2].mode'");
        err_text("{\"name\": \"t\", \"files\": [{\"path\": \"/a\", \"content\": \"aaa\"}, {\"path\": \"/b\", "
                 "\"contentBase64\": \"!!!!\"}]}",
                 "invalid_value", "'files[1].contentBase64'");
        err_text("{\"name\": \"t\", \"files\": [{\"path\": \"/a\", \"content\": \"aaa\"}], \"npm\": [\"ok\"],"
                 " \"setup\": [\"x\"], \"env\": {\"1A\": \"x\"}}",
                 "invalid_value", "'env'");
        err_text("{\"name\": \"t\", \"packages\": [\"jq\"], \"npm\": [\"ok\"], \"setup\": [\"x\"],"
                 " \"env\": {\"A\": \"x\"}, \"setupTimeout\": 0}",
                 "out_of_range", "'setupTimeout'");
        err_text("{\"name\": \"t\", \"packages\": [\"jq\"], \"npm\": [\"ok\"], \"setup\": [\"x\"],"
                 " \"env\": {\"A\": \"x\"}, \"labels\": {\"a\": 1}}",
                 "invalid_type", "'labels.a'");
}

static void test_err_config(void **state)
{
        char *s65 = rep('u', 65), buf[256];
        json_t *j, *env;

        err_field("env", "[]", "invalid_type", "'env'");
        err_field("env", "\"A=1\"", "invalid_type", "'env'");
        err_field("env", "{\"1A\": \"x\"}", "invalid_value", "'env'");
        err_field("env", "{\"A-B\": \"x\"}", "invalid_value", "'A-B'");
        err_field("env", "{\"\": \"x\"}", "invalid_value", "'env'");
        err_field("env", "{\"A=B\": \"x\"}", "invalid_value", "'env'");
        err_field("env", "{\"A\": 1}", "invalid_type", "'env.A'");
        err_field("env", "{\"A\": null}", "invalid_type", "'env.A'");
        err_field("env", "{\"A\": \"x\\u0000y\"}", "invalid_type", "'env.A'");
        env = json_object();
        for (int i = 0; i <= SBX_MAX_ENV; i++) {
                char k[16];

                snprintf(k, sizeof k, "K%d", i);
                json_object_set_new(env, k, json_string("v"));
        }
        j = json_pack("{s:s,s:o}", "name", "t", "env", env);
        err_json(j, "out_of_range", "'env'");
        json_decref(j);

        err_field("workdir", "\"app\"", "invalid_value", "'workdir'");
        err_field("workdir", "\"\"", "invalid_value", "'workdir'");
        err_field("workdir", "\"/a/../b\"", "invalid_value", "'workdir'");
        err_field("workdir", "\"/..\"", "invalid_value", "'workdir'");
        err_field("workdir", "1", "invalid_value", "'workdir'");
        err_field("workdir", "\"/app\\u0000/x\"", "invalid_value", "'workdir'");

        err_field("user", "\"\"", "invalid_value", "'user'");
        snprintf(buf, sizeof buf, "\"%s\"", s65);
        err_field("user", buf, "invalid_value", "'user'");
        err_field("user", "0", "invalid_value", "'user'");
        err_field("user", "\"root\\u0000x\"", "invalid_value", "'user'");
        free(s65);

        err_field("cmd", "\"python3 app.py\"", "invalid_type", "'cmd'");
        err_field("cmd", "{}", "invalid_type", "'cmd'");
        err_field("cmd", "[\"a\", 1]", "invalid_value", "'cmd[1]'");
        err_field("cmd", "[\"a\", \"\"]", "invalid_value", "'cmd[1]'");
        err_field("entrypoint", "\"sh\"", "invalid_type", "'entrypoint'");
        err_field("entrypoint", "[null]", "invalid_value", "'entrypoint[0]'");

        err_field("labels", "[]", "invalid_type", "'labels'");
        err_field("labels", "\"a=b\"", "invalid_type", "'labels'");
        err_field("labels", "{\"a\": 1}", "invalid_type", "'labels.a'");
        err_field("labels", "{\"a\": \"b\", \"c\": null}", "invalid_type", "'labels.c'");
}

static void test_err_setup(void **state)
{
        json_t *j;

        err_field("setup", "\"make\"", "invalid_type", "'setup'");
        err_field("setup", "{}", "invalid_type", "'setup'");
        err_field("setup", "[\"\"]", "invalid_value", "'setup[0]'");
        err_field("setup", "[\"a\", \"\"]", "invalid_value", "'setup[1]'");
        err_field("setup", "[\"a\", 1]", "invalid_value", "'setup[1]'");
        err_field("setup", "[\"a\\u0000b\"]", "invalid_value", "'setup[0]'");
        j = spec_with_array("setup", SBX_MAX_SPEC_SETUP + 1, setup_item);
        err_json(j, "out_of_range", "'setup'");
        json_decref(j);

        err_field("setupTimeout", "0", "out_of_range", "'setupTimeout'");
        err_field("setupTimeout", "3601", "out_of_range", "'setupTimeout'");
        err_field("setupTimeout", "-5", "out_of_range", "'setupTimeout'");
        err_field("setupTimeout", "\"x\"", "out_of_range", "'setupTimeout'");
        err_field("setupTimeout", "60.5", "out_of_range", "'setupTimeout'");
        err_field("setupTimeout", "null", "out_of_range", "'setupTimeout'");
}

/* ---- step keys ---- */

static const char key_spec[] = "{\"name\": \"k\", \"files\": [{\"path\": \"/a\", \"content\": \"ab\"}, {\"path\": "
                               "\"/b\", \"content\": \"c\"}], \"npm\": [\"x@1\", \"y@2\"],"
                               " \"env\": {\"A\": \"1\"}, \"setup\": [\"echo 1\", \"echo 2\"]}";

#define PARENT "sha256:0000000000000000000000000000000000000000000000000000000000000000"

struct keys {
        char files[65], npm[65], setup[65];
};

static void keys_of(const char *text, const char *parent, struct keys *k)
{
        struct build_spec s;

        ok(text, &s);
        build_spec_step_key(&s, "files", parent, k->files);
        build_spec_step_key(&s, "npm", parent, k->npm);
        build_spec_step_key(&s, "setup", parent, k->setup);
        assert_true(is_hex(k->files, 64));
        assert_true(is_hex(k->npm, 64));
        assert_true(is_hex(k->setup, 64));
        build_spec_release(&s);
}

/* replace the first occurrence of from by to in key_spec */
static void keys_with(const char *from, const char *to, struct keys *k)
{
        char buf[1024];
        const char *at = strstr(key_spec, from);

        assert_non_null(at);
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - key_spec), key_spec, to, at + strlen(from));
        keys_of(buf, PARENT, k);
}

static void test_step_key(void **state)
{
        struct keys a, b;
        struct build_spec s;
        char k1[65], k2[65];

        keys_of(key_spec, PARENT, &a);
        keys_of(key_spec, PARENT, &b);
        assert_memory_equal(&a, &b, sizeof a); /* deterministic, across parses */
        assert_string_not_equal(a.files, a.npm);
        assert_string_not_equal(a.files, a.setup);
        assert_string_not_equal(a.npm, a.setup);

        /* the same struct twice, and an unknown kind still gives a key of its own */
        ok(key_spec, &s);
        build_spec_step_key(&s, "files", PARENT, k1);
        build_spec_step_key(&s, "files", PARENT, k2);
        assert_string_equal(k1, k2);
        build_spec_step_key(&s, "other", PARENT, k2);
        assert_true(is_hex(k2, 64));
        assert_string_not_equal(k1, k2);
        build_spec_step_key(&s, "files", "", k2);
        assert_string_not_equal(k1, k2);
        build_spec_release(&s);

        /* by parent */
        keys_of(key_spec, "sha256:1111111111111111111111111111111111111111111111111111111111111111", &b);
        assert_string_not_equal(a.files, b.files);
        assert_string_not_equal(a.npm, b.npm);
        assert_string_not_equal(a.setup, b.setup);

        /* by file content: only the files key moves */
        keys_with("\"content\": \"ab\"", "\"content\": \"aB\"", &b);
        assert_string_not_equal(a.files, b.files);
        assert_string_equal(a.npm, b.npm);
        assert_string_equal(a.setup, b.setup);
        /* same bytes split differently across the files */
        keys_with("\"content\": \"ab\"}, {\"path\": \"/b\", \"content\": \"c\"",
                  "\"content\": \"a\"}, {\"path\": \"/b\", \"content\": \"bc\"", &b);
        assert_string_not_equal(a.files, b.files);
        /* content vs the same bytes in base64: same key */
        keys_with("\"content\": \"ab\"", "\"contentBase64\": \"YWI=\"", &b);
        assert_string_equal(a.files, b.files);
        /* by path */
        keys_with("\"/b\"", "\"/c\"", &b);
        assert_string_not_equal(a.files, b.files);
        /* by mode (the default is 0644) */
        keys_with("\"content\": \"c\"", "\"content\": \"c\", \"mode\": 493", &b);
        assert_string_not_equal(a.files, b.files);
        assert_string_equal(a.npm, b.npm);
        keys_with("\"content\": \"c\"", "\"content\": \"c\", \"mode\": 420", &b);
        assert_string_equal(a.files, b.files);

        /* by npm list, and its order */
        keys_with("\"x@1\"", "\"x@2\"", &b);
        assert_string_not_equal(a.npm, b.npm);
        assert_string_equal(a.files, b.files);
        assert_string_equal(a.setup, b.setup);
        keys_with("[\"x@1\", \"y@2\"]", "[\"y@2\", \"x@1\"]", &b);
        assert_string_not_equal(a.npm, b.npm);
        keys_with("[\"x@1\", \"y@2\"]", "[\"x@1y@2\"]", &b);
        assert_string_not_equal(a.npm, b.npm);

        /* by setup commands */
        keys_with("\"echo 2\"", "\"echo 3\"", &b);
        assert_string_not_equal(a.setup, b.setup);
        assert_string_equal(a.files, b.files);
        assert_string_equal(a.npm, b.npm);
        keys_with("[\"echo 1\", \"echo 2\"]", "[\"echo 1\"]", &b);
        assert_string_not_equal(a.setup, b.setup);

        /* by env, for setup only */
        keys_with("{\"A\": \"1\"}", "{\"A\": \"2\"}", &b);
        assert_string_not_equal(a.setup, b.setup);
        assert_string_equal(a.files, b.files);
        assert_string_equal(a.npm, b.npm);
        keys_with(", \"env\": {\"A\": \"1\"}", "", &b);
        assert_string_not_equal(a.setup, b.setup);

        /* fields that are not part of a step do not move its key */
        keys_with("\"name\": \"k\"", "\"name\": \"k2\", \"description\": \"x\", \"workdir\": \"/w\"", &b);
        assert_memory_equal(&a, &b, sizeof a);

        /* a spec without files/npm/setup still has keys */
        keys_of("{\"name\": \"k\"}", PARENT, &b);
        assert_string_not_equal(a.files, b.files);
        assert_int_equal(alloc_live, 0);
}

/* ---- release ---- */

static void test_release(void **state)
{
        struct build_spec s;

        memset(&s, 0, sizeof s);
        build_spec_release(&s);
        build_spec_release(&s);
        build_spec_release(NULL);

        ok(full_spec, &s);
        build_spec_release(&s);
        assert_null(s.packages);
        assert_null(s.config);
        assert_int_equal(s.n_files, 0);
        build_spec_release(&s);
        assert_int_equal(alloc_live, 0);
}

/* ---- allocation failure at every allocation ---- */

static void test_enomem(void **state)
{
        json_t *j = J(full_spec);
        long points = 0;

        for (long n = 0;; n++) {
                struct build_spec s;
                struct sbx_err err = {};
                long live = alloc_live;
                int r;

                memset(&s, 0xa5, sizeof s);
                alloc_arm(n);
                r = build_spec_parse(j, &s, &err);
                alloc_disarm();
                if (!alloc_failed) {
                        assert_int_equal(r, 0);
                        build_spec_release(&s);
                        assert_int_equal(alloc_live, live);
                        break;
                }
                if (r != -ENOMEM)
                        fail_msg("allocation %ld failed: got %d (%s: %s)", n, r, err.reason, err.msg);
                if (err.code != -ENOMEM)
                        fail_msg("allocation %ld: err.code %d", n, err.code);
                assert_true(err.msg[0] != '\0');
                assert_true(untouched(&s, sizeof s));
                assert_int_equal(alloc_live, live);
                points++;
        }
        assert_true(points >= 20);
        json_decref(j);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full),           cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_name_bounds),    cmocka_unit_test(test_workdir),
                cmocka_unit_test(test_limits_inside),  cmocka_unit_test(test_digest),
                cmocka_unit_test(test_err_top),        cmocka_unit_test(test_err_name),
                cmocka_unit_test(test_err_from_base),  cmocka_unit_test(test_err_packages),
                cmocka_unit_test(test_err_npm),        cmocka_unit_test(test_err_files),
                cmocka_unit_test(test_err_files_late), cmocka_unit_test(test_err_config),
                cmocka_unit_test(test_err_setup),      cmocka_unit_test(test_step_key),
                cmocka_unit_test(test_release),        cmocka_unit_test(test_enomem),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
