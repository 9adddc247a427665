// SPDX-License-Identifier: Apache-2.0
/*
 * Template spec parsing and validation (build-spec.h). Pure: no I/O, no logging. Every error is
 * -SBX_E_INVALID with a stable reason and a message that names the field.
 */
#include "core/build-spec.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/util.h"
#include "images/template.h"
#include "sandbox/spec.h"

#define MAX_FILE_PATH 4096
#define MAX_DESCRIPTION 1024
#define MAX_LABELS 64

/* fmt stays a literal at every call site, so the format is checked */
#define bad(err, reason, fmt, field) sbx_err_setr(err, -SBX_E_INVALID, reason, fmt, field)

static const char *const spec_fields[] = { "name",  "description", "from",   "base", "packages", "npm",
                                           "files", "env",         "workdir", "user", "cmd",      "entrypoint",
                                           "labels", "setup",      "setupTimeout", NULL };

/* A JSON string without NUL (jansson keeps "\u0000" when loaded with JSON_ALLOW_NUL; the C copies
 * of these fields would silently be cut short there). */
static bool string_clean(const json_t *v)
{
        return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v);
}

static int string_array(json_t *v, const char *field, size_t max, size_t max_len, char ***ret, size_t *ret_n,
                        struct sbx_err *err)
{
        char **a;
        json_t *e;
        size_t i;

        if (!json_is_array(v))
                return bad(err, "invalid_type", "'%s' must be an array of strings", field);
        if (json_array_size(v) > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s' has more than %zu entries", field, max);
        a = calloc(json_array_size(v) + 1, sizeof *a);
        if (!a)
                return -ENOMEM;
        json_array_foreach (v, i, e) {
                const char *str = json_string_value(e);

                if (!str || strlen(str) != json_string_length(e) || json_string_length(e) == 0 ||
                    json_string_length(e) > max_len) {
                        for (size_t k = 0; k < i; k++)
                                free(a[k]);
                        free(a);
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'%s[%zu]' must be a non-empty string of at most %zu bytes without NUL",
                                            field, i, max_len);
                }
                a[i] = strdup(str);
                if (!a[i]) {
                        for (size_t k = 0; k < i; k++)
                                free(a[k]);
                        free(a);
                        return -ENOMEM;
                }
        }
        *ret = a;
        *ret_n = json_array_size(v);
        return 0;
}

static bool npm_spec_valid(const char *s)
{
        /* name[@version-or-range]: npm names are URL-safe; no spaces, quotes or shell characters */
        if (!*s || s[0] == '-' || strlen(s) > 214)
                return false;
        for (const char *p = s; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                      strchr("@/._~^-<=>*+", *p)))
                        return false;
        return true;
}

static int parse_files(json_t *v, struct build_spec *s, struct sbx_err *err)
{
        json_t *f;
        size_t i;

        if (!json_is_array(v))
                return bad(err, "invalid_type", "'%s' must be an array of objects", "files");
        if (json_array_size(v) > SBX_MAX_SPEC_FILES)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'files' has more than %d entries",
                                    SBX_MAX_SPEC_FILES);
        s->files = calloc(json_array_size(v) + 1, sizeof *s->files);
        if (!s->files)
                return -ENOMEM;
        json_array_foreach (v, i, f) {
                struct build_file *bf = &s->files[i];
                json_t *path = json_object_get(f, "path"), *content = json_object_get(f, "content");
                json_t *b64 = json_object_get(f, "contentBase64"), *mode = json_object_get(f, "mode");
                char norm[MAX_FILE_PATH + 1];
                const char *key;
                json_t *val;

                s->n_files = i + 1;
                if (!json_is_object(f))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'files[%zu]' must be an object", i);
                json_object_foreach (f, key, val)
                        if (strcmp(key, "path") && strcmp(key, "content") && strcmp(key, "contentBase64") &&
                            strcmp(key, "mode"))
                                return sbx_err_setr(err, -SBX_E_INVALID, "unknown_field",
                                                    "unknown field 'files[%zu].%.64s'", i, key);
                if (!path)
                        return sbx_err_setr(err, -SBX_E_INVALID, "missing_field", "'files[%zu].path' is required", i);
                if (!json_is_string(path) || strlen(json_string_value(path)) != json_string_length(path) ||
                    json_string_length(path) > MAX_FILE_PATH ||
                    spec_path_normalize("path", json_string_value(path), norm, sizeof norm, NULL) < 0 ||
                    strcmp(norm, "/") == 0) /* "/" itself is not a file */
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'files[%zu].path' must be an absolute path without '..' (got '%.128s')", i,
                                            json_string_value(path) ?: "");
                bf->path = strdup(norm);
                if (!bf->path)
                        return -ENOMEM;
                if (!!content == !!b64)
                        return sbx_err_setr(err, -SBX_E_INVALID, "missing_field",
                                            "'files[%zu]' needs exactly one of 'content' and 'contentBase64'", i);
                if (content) {
                        if (!json_is_string(content))
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type",
                                                    "'files[%zu].content' must be a string", i);
                        bf->len = json_string_length(content);
                        bf->data = malloc(bf->len + 1);
                        if (!bf->data)
                                return -ENOMEM;
                        memcpy(bf->data, json_string_value(content), bf->len);
                } else {
                        const char *in = json_string_value(b64);
                        size_t inlen = json_string_length(b64);
                        ssize_t n;

                        if (!in)
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                                    "'files[%zu].contentBase64' is not valid base64", i);
                        bf->data = malloc(inlen / 4 * 3 + 1);
                        if (!bf->data)
                                return -ENOMEM;
                        /* strict (common/util.h): no blanks, '=' only at the end */
                        n = base64_decode(in, inlen, bf->data);
                        if (n < 0)
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                                    "'files[%zu].contentBase64' is not valid base64", i);
                        bf->len = (size_t)n;
                }
                bf->mode = 0644;
                if (mode) {
                        if (!json_is_integer(mode) || json_integer_value(mode) < 0 || json_integer_value(mode) > 07777)
                                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range",
                                                    "'files[%zu].mode' must be an integer from 0 to 4095 (0o7777)", i);
                        bf->mode = (unsigned)json_integer_value(mode);
                }
        }
        return 0;
}

static int parse_config(json_t *j, struct build_spec *s, struct sbx_err *err)
{
        json_t *env = json_object_get(j, "env"), *v;
        const char *key;

        s->config = json_object();
        if (!s->config)
                return -ENOMEM;
        if (env) {
                json_t *arr = json_array();

                if (!json_is_object(env)) {
                        json_decref(arr);
                        return bad(err, "invalid_type", "'%s' must be an object of strings", "env");
                }
                if (json_object_size(env) > SBX_MAX_ENV) {
                        json_decref(arr);
                        return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'env' has more than %d entries",
                                            SBX_MAX_ENV);
                }
                json_object_set_new(s->config, "env", arr);
                json_object_foreach (env, key, v) {
                        char *kv;

                        if (!env_name_valid(key))
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                                    "'env' key '%.64s' is not a valid variable name", key);
                        if (!json_is_string(v) || json_string_length(v) > SBX_MAX_ENV_VALUE ||
                            strlen(json_string_value(v)) != json_string_length(v))
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type",
                                                    "'env.%.64s' must be a string without NUL", key);
                        if (asprintf(&kv, "%s=%s", key, json_string_value(v)) < 0)
                                return -ENOMEM;
                        (void)json_array_append_new(arr, json_string(kv));
                        free(kv);
                }
        }
        v = json_object_get(j, "workdir");
        if (v) {
                char norm[SBX_MAX_CWD];

                if (!string_clean(v) || spec_path_normalize("workdir", json_string_value(v), norm, sizeof norm, NULL) < 0)
                        return bad(err, "invalid_value", "'%s' must be an absolute path without '..'", "workdir");
                json_object_set_new(s->config, "workdir", json_string(norm));
        }
        v = json_object_get(j, "user");
        if (v) {
                if (!string_clean(v) || json_string_length(v) == 0 || json_string_length(v) > 64)
                        return bad(err, "invalid_value", "'%s' must be a user name or uid[:gid]", "user");
                json_object_set(s->config, "user", v);
        }
        static const char *const arrays[] = { "cmd", "entrypoint" };
        for (size_t k = 0; k < 2; k++) {
                char **a = NULL;
                size_t n = 0;
                int r;

                v = json_object_get(j, arrays[k]);
                if (!v)
                        continue;
                r = string_array(v, arrays[k], SBX_MAX_ARGV, SBX_MAX_ARG_BYTES, &a, &n, err);
                if (r < 0)
                        return r;
                for (size_t q = 0; q < n; q++)
                        free(a[q]);
                free(a);
                json_object_set(s->config, arrays[k], v);
        }
        v = json_object_get(j, "labels");
        if (v) {
                if (!json_is_object(v) || json_object_size(v) > MAX_LABELS)
                        return bad(err, "invalid_type", "'%s' must be an object of at most 64 strings", "labels");
                json_object_foreach (v, key, env)
                        if (!json_is_string(env) || strlen(key) > 128 || json_string_length(env) > 1024)
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type",
                                                    "'labels.%.64s' must be a string of at most 1024 bytes", key);
                json_object_set(s->config, "labels", v);
        }
        return 0;
}

int build_spec_parse(json_t *j, struct build_spec *ret, struct sbx_err *err)
{
        struct build_spec s = { .setup_timeout_s = SBX_DEFAULT_SETUP_TIMEOUT_S };
        const char *key, *name;
        json_t *v;
        int r;

        if (!json_is_object(j))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "the template spec must be a JSON object");
        json_object_foreach (j, key, v) {
                bool known = false;

                for (size_t i = 0; spec_fields[i]; i++)
                        known = known || !strcmp(spec_fields[i], key);
                if (!known)
                        return sbx_err_setr(err, -SBX_E_INVALID, "unknown_field", "unknown field '%.64s'", key);
        }
        v = json_object_get(j, "name");
        if (!v)
                return bad(err, "missing_field", "'%s' is required", "name");
        name = json_string_value(v);
        if (!string_clean(v) || !template_name_valid(name))
                return bad(err, "invalid_value",
                           "'%s' must be lower-case letters, digits, '.', '_', '-' (at most 64 bytes) with an optional ':tag'",
                           "name");
        if (template_known(name))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'name': '%.64s' is a catalog template; choose another name", name);
        snprintf(s.name, sizeof s.name, "%s", name);
        v = json_object_get(j, "description");
        if (v && (!json_is_string(v) || json_string_length(v) > MAX_DESCRIPTION))
                return bad(err, "invalid_type", "'%s' must be a string of at most 1024 bytes", "description");

        snprintf(s.suite, sizeof s.suite, "bookworm");
        snprintf(s.variant, sizeof s.variant, "minbase");
        v = json_object_get(j, "from");
        if (v) {
                if (!string_clean(v) || json_string_length(v) > SBX_MAX_TEMPLATE_NAME || json_string_length(v) == 0)
                        return bad(err, "invalid_type", "'%s' must be a template name", "from");
                if (json_object_get(j, "base"))
                        return bad(err, "invalid_value", "'%s' and 'base' exclude each other", "from");
                if (json_object_get(j, "packages"))
                        return bad(err, "invalid_value",
                                   "'%s': Debian packages go into the base layer; use 'base' (not 'from') with 'packages'",
                                   "packages");
                snprintf(s.from, sizeof s.from, "%s", json_string_value(v));
        }
        v = json_object_get(j, "base");
        if (v) {
                json_t *suite = json_object_get(v, "suite"), *variant = json_object_get(v, "variant");

                if (!json_is_object(v))
                        return bad(err, "invalid_type", "'%s' must be an object {suite, variant}", "base");
                json_object_foreach (v, key, suite)
                        if (strcmp(key, "suite") && strcmp(key, "variant"))
                                return sbx_err_setr(err, -SBX_E_INVALID, "unknown_field", "unknown field 'base.%.64s'",
                                                    key);
                suite = json_object_get(v, "suite");
                if (suite) {
                        if (!string_clean(suite) || json_string_length(suite) == 0 || json_string_length(suite) >= 32)
                                return bad(err, "invalid_value", "'%s' must be a Debian suite name", "base.suite");
                        snprintf(s.suite, sizeof s.suite, "%s", json_string_value(suite));
                }
                if (variant) {
                        if (!string_clean(variant) || json_string_length(variant) >= 32)
                                return bad(err, "invalid_value", "'%s' must be a string", "base.variant");
                        snprintf(s.variant, sizeof s.variant, "%s", json_string_value(variant));
                }
        }
        s.packages = strdup("");
        if (!s.packages)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        v = json_object_get(j, "packages");
        if (v) {
                char **a = NULL;
                size_t n = 0, len = 0;

                r = string_array(v, "packages", SBX_MAX_SPEC_PACKAGES, 128, &a, &n, err);
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < n && r >= 0; i++)
                        if (!template_package_name_valid(a[i]))
                                r = sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                                 "'packages[%zu]' is not a Debian package name ('%.64s')", i, a[i]);
                if (r < 0) {
                        for (size_t i = 0; i < n; i++)
                                free(a[i]);
                        free(a);
                        goto fail;
                }
                for (size_t i = 0; i < n; i++)
                        len += strlen(a[i]) + 1;
                free(s.packages);
                s.packages = calloc(1, len + 1);
                len = 0;
                for (size_t i = 0; i < n; i++) {
                        if (s.packages) {
                                size_t l = strlen(a[i]);

                                if (i)
                                        s.packages[len++] = ',';
                                memcpy(s.packages + len, a[i], l);
                                len += l;
                        }
                        free(a[i]);
                }
                free(a);
                if (!s.packages) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        v = json_object_get(j, "npm");
        if (v) {
                r = string_array(v, "npm", SBX_MAX_SPEC_NPM, 214, &s.npm, &s.n_npm, err);
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < s.n_npm; i++)
                        if (!npm_spec_valid(s.npm[i])) {
                                r = sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                                 "'npm[%zu]' is not an npm package spec ('%.64s')", i, s.npm[i]);
                                goto fail;
                        }
        }
        v = json_object_get(j, "files");
        if (v) {
                r = parse_files(v, &s, err);
                if (r < 0)
                        goto fail;
        }
        v = json_object_get(j, "setup");
        if (v) {
                r = string_array(v, "setup", SBX_MAX_SPEC_SETUP, SBX_MAX_SETUP_COMMAND, &s.setup, &s.n_setup, err);
                if (r < 0)
                        goto fail;
        }
        v = json_object_get(j, "setupTimeout");
        if (v) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > SBX_MAX_SETUP_TIMEOUT_S) {
                        r = sbx_err_setr(err, -SBX_E_INVALID, "out_of_range",
                                         "'setupTimeout' must be an integer from 1 to %d (seconds)",
                                         SBX_MAX_SETUP_TIMEOUT_S);
                        goto fail;
                }
                s.setup_timeout_s = (unsigned)json_integer_value(v);
        }
        r = parse_config(j, &s, err);
        if (r < 0)
                goto fail;
        s.canonical = json_deep_copy(j);
        if (!s.canonical) {
                r = -ENOMEM;
                goto fail;
        }
        {
                _cleanup_free_ char *text = json_dumps(s.canonical, JSON_SORT_KEYS | JSON_COMPACT);
                unsigned char md[32];
                unsigned int len = 0;

                if (!text) {
                        r = -ENOMEM;
                        goto fail;
                }
                (void)EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
                memcpy(s.digest, "sha256:", 7);
                for (size_t i = 0; i < 32; i++)
                        snprintf(s.digest + 7 + 2 * i, 3, "%02x", md[i]);
        }
        *ret = s;
        return 0;
fail:
        if (r == -ENOMEM)
                (void)sbx_err_set(err, r, "out of memory");
        build_spec_release(&s);
        return r;
}

void build_spec_release(struct build_spec *s)
{
        if (!s)
                return;
        free(s->packages);
        for (size_t i = 0; i < s->n_npm; i++)
                free(s->npm[i]);
        free(s->npm);
        for (size_t i = 0; s->files && i < s->n_files; i++) {
                free(s->files[i].path);
                free(s->files[i].data);
        }
        free(s->files);
        for (size_t i = 0; i < s->n_setup; i++)
                free(s->setup[i]);
        free(s->setup);
        json_decref(s->config);
        json_decref(s->canonical);
        memset(s, 0, sizeof *s);
}

static void feed(EVP_MD_CTX *c, const void *p, size_t n)
{
        uint64_t len = n;

        (void)EVP_DigestUpdate(c, &len, sizeof len); /* length-prefixed: no two inputs collide */
        (void)EVP_DigestUpdate(c, p, n);
}

void build_spec_step_key(const struct build_spec *s, const char *kind, const char *parent, char out[65])
{
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        unsigned char md[32];
        unsigned int len = 0;

        memset(out, 0, 65);
        if (!c)
                return;
        (void)EVP_DigestInit_ex(c, EVP_sha256(), NULL);
        feed(c, kind, strlen(kind));
        feed(c, parent, strlen(parent));
        if (!strcmp(kind, "files"))
                for (size_t i = 0; i < s->n_files; i++) {
                        feed(c, s->files[i].path, strlen(s->files[i].path));
                        feed(c, s->files[i].data, s->files[i].len);
                        feed(c, &s->files[i].mode, sizeof s->files[i].mode);
                }
        else if (!strcmp(kind, "npm"))
                for (size_t i = 0; i < s->n_npm; i++)
                        feed(c, s->npm[i], strlen(s->npm[i]));
        else if (!strcmp(kind, "setup")) {
                _cleanup_free_ char *env = json_dumps(json_object_get(s->config, "env"), JSON_COMPACT | JSON_ENCODE_ANY);

                feed(c, env ? env : "", env ? strlen(env) : 0);
                for (size_t i = 0; i < s->n_setup; i++)
                        feed(c, s->setup[i], strlen(s->setup[i]));
        }
        (void)EVP_DigestFinal_ex(c, md, &len);
        EVP_MD_CTX_free(c);
        for (size_t i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}
