// SPDX-License-Identifier: Apache-2.0
/*
 * Untrusted request JSON -> validated struct sandbox_spec / struct exec_spec, and the canonical JSON
 * of a sandbox spec (see spec.h). Pure: no I/O, no logging, no global state. Every string and count
 * that reaches the caller has been checked against limits.h, and every error names the field with a
 * stable reason. Applying a spec to the host is not this file's job; fuzz/spec.c fuzzes it.
 */
#include "sandbox/spec.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/json.h"

/* Lower bounds from the API spec that limits.h does not have. NEEDSWORK: move them to limits.h. */
#define SPEC_MIN_CPU 0.01
#define SPEC_MIN_PIDS 16

/* Linux refuses with E2BIG any single argv or envp string longer than MAX_ARG_STRLEN (32 pages, NUL
 * included). Reject such a string here, as a 400 that names the field, instead of a failed execve()
 * later. 4 KiB pages is the smallest case. */
#define SPEC_MAX_ARG_STRLEN (32 * 4096 - 1)

#define SPEC_DEFAULT_TEMPLATE "base"
#define SPEC_DEFAULT_CWD "/root"

static int invalid(struct sbx_err *err, const char *reason, const char *msg)
{
        return sbx_err_setr(err, -SBX_E_INVALID, reason, "%s", msg);
}

static int nomem(struct sbx_err *err)
{
        return sbx_err_set(err, -ENOMEM, "out of memory");
}

/* Copy n bytes (which may include NULs) and terminate them; malloc only, so tests can fail it. */
static char *mem_dup0(const char *p, size_t n)
{
        char *d = malloc(n + 1);

        if (!d)
                return NULL;
        memcpy(d, p, n);
        d[n] = '\0';
        return d;
}

/* Free a NULL-terminated string vector (a partly filled calloc'd one is NULL-terminated too). */
static void strv_free(char **v)
{
        if (!v)
                return;
        for (char **p = v; *p; p++)
                free(*p);
        free(v);
}

static void strv_freep(char ***p)
{
        strv_free(*p);
}

/* ASCII only: <ctype.h> depends on the locale. */
static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_alnum(char c)
{
        return is_alpha(c) || (c >= '0' && c <= '9');
}

bool env_name_valid(const char *s)
{
        if (!s || !(is_alpha(s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 1; s[i]; i++)
                if (i >= SBX_MAX_ENV_KEY || !(is_alnum(s[i]) || s[i] == '_'))
                        return false;
        return true;
}

/* [a-z0-9][a-z0-9._:-]{0,63} */
static bool template_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > SBX_MAX_TEMPLATE_NAME || !is_lower_alnum(s[0]))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!is_lower_alnum(s[i]) && !strchr("._:-", s[i]))
                        return false;
        return true;
}

/* 1..SBX_MAX_NAME bytes of [A-Za-z0-9._-], not starting with '.' or '-' (no hidden files, no options). */
bool sandbox_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > SBX_MAX_NAME || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && !strchr("._-", s[i]))
                        return false;
        return true;
}

/*
 * Check the count of the string map obj[key] before json_get_string_map() does: its reason for too many
 * entries is not one of the API's stable reasons, and a count is a range like every other bound. Then
 * check the map itself, and that no key hides a NUL (the parser refuses those, json_object_setn() does
 * not). *ret is left untouched if the key is absent or null.
 */
static int string_map_get(const json_t *obj, const char *key, size_t max_pairs, size_t max_key, size_t max_value,
                          const json_t **ret, struct sbx_err *err)
{
        const json_t *m = json_object_get(obj, key), *v;
        const char *k;
        int r;

        if (json_is_object(m) && json_object_size(m) > max_pairs)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s' has more than %zu entries", key,
                                    max_pairs);
        r = json_get_string_map(obj, key, "", max_pairs, max_key, max_value, &m, err);
        if (r <= 0)
                return r;
        json_object_foreach((json_t *)m, k, v) {
                if (strlen(k) != json_object_iter_key_len(json_object_key_to_iter(k)))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "keys of '%s' must not contain NUL bytes", key);
        }
        *ret = m;
        return 1;
}

/* obj["env"] -> NULL-terminated vector of "KEY=VALUE" (empty if absent). *ret_bytes is their total size
 * with terminating NULs, as execve() counts it. */
static int env_parse(const json_t *obj, char ***ret_env, size_t *ret_n, size_t *ret_bytes, struct sbx_err *err)
{
        _cleanup_(strv_freep) char **env = NULL;
        const json_t *m = NULL, *v;
        size_t n = 0, bytes = 0;
        const char *k;
        int r;

        r = string_map_get(obj, "env", SBX_MAX_ENV, SBX_MAX_ENV_KEY, SBX_MAX_ENV_VALUE, &m, err);
        if (r < 0)
                return r;

        env = calloc((m ? json_object_size(m) : 0) + 1, sizeof *env);
        if (!env)
                return nomem(err);
        if (m) {
                json_object_foreach((json_t *)m, k, v) {
                        size_t klen = strlen(k), vlen = json_string_length(v);
                        char *e;

                        if (!env_name_valid(k))
                                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                                    "'env.%.64s' is not a valid environment variable name", k);
                        e = malloc(klen + 1 + vlen + 1);
                        if (!e)
                                return nomem(err);
                        memcpy(e, k, klen);
                        e[klen] = '=';
                        memcpy(e + klen + 1, json_string_value(v), vlen + 1);
                        env[n++] = e;
                        bytes += klen + 1 + vlen + 1;
                }
        }

        *ret_env = TAKE_PTR(env);
        *ret_n = n;
        *ret_bytes = bytes;
        return 0;
}

bool snapshot_ref_valid(const char *s)
{
        size_t n = strlen(s);

        return n > 0 && n <= SBX_MAX_TAG && s[0] != '.' && s[0] != '-' &&
               strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == n;
}

/* One timer field: absent (0, nothing set), null (has, 0 = none) or seconds in [min, max]. */
static int timer_get(const json_t *o, const char *key, uint64_t min, uint64_t max, bool *has, uint64_t *ret,
                     struct sbx_err *err)
{
        const json_t *v = json_object_get(o, key);
        int r;

        if (!v)
                return 0;
        *has = true;
        if (json_is_null(v)) {
                *ret = 0;
                return 0;
        }
        r = json_get_u64(o, key, "timeout.", min, max, ret, err);
        return r < 0 ? r : 0;
}

/* The "timeout" object of a create or a patch. */
static int timeout_parse(const json_t *o, struct sandbox_patch *t, struct sbx_err *err)
{
        static const char *const fields[] = { "lifetime", "idle", "paused", "execution", NULL };
        int r;

        r = json_check_fields(o, fields, "timeout.", err);
        if (r >= 0)
                r = timer_get(o, "lifetime", 1, SBX_MAX_LIFETIME_S, &t->has_lifetime, &t->lifetime_s, err);
        if (r >= 0)
                r = timer_get(o, "idle", 1, SBX_MAX_LIFETIME_S, &t->has_idle, &t->idle_s, err);
        /* 0 = stay paused forever, the same as null */
        if (r >= 0)
                r = timer_get(o, "paused", 0, SBX_MAX_LIFETIME_S, &t->has_paused, &t->paused_s, err);
        if (r >= 0)
                r = timer_get(o, "execution", 1, SBX_MAX_EXEC_TIMEOUT_S, &t->has_execution, &t->execution_s, err);
        return r;
}

int sandbox_patch_parse(const json_t *body, struct sandbox_patch *ret, struct sbx_err *err)
{
        static const char *const fields[] = { "timeout", "metadata", NULL };
        struct sandbox_patch p = { 0 };
        const json_t *tmo, *metadata = NULL;
        int r;

        if (!json_is_object(body))
                return invalid(err, "invalid_type", "request body must be a JSON object");
        r = json_check_fields(body, fields, "", err);
        if (r < 0)
                return r;
        tmo = json_object_get(body, "timeout");
        if (json_is_integer(tmo)) {
                r = json_get_u64(body, "timeout", "", 1, SBX_MAX_LIFETIME_S, &p.lifetime_s, err);
                if (r < 0)
                        return r;
                p.has_lifetime = true;
        } else if (json_is_object(tmo)) {
                r = timeout_parse(tmo, &p, err);
                if (r < 0)
                        return r;
        } else if (tmo)
                return invalid(err, "invalid_type", "'timeout' must be a number of seconds or an object");
        r = string_map_get(body, "metadata", SBX_MAX_METADATA, SBX_MAX_METADATA_KEY, SBX_MAX_METADATA_VALUE, &metadata,
                           err);
        if (r < 0)
                return r;
        if (metadata) {
                p.metadata = json_deep_copy(metadata);
                if (!p.metadata)
                        return nomem(err);
        }
        *ret = p;
        return 0;
}

void sandbox_patch_release(struct sandbox_patch *p)
{
        if (!p)
                return;
        json_decref(p->metadata);
        memset(p, 0, sizeof *p);
}

int sandbox_spec_parse(const json_t *body, struct sandbox_spec *ret, struct sbx_err *err)
{
        static const char *const fields[] = { "template", "name",    "env",     "metadata", "resources",
                                              "timeout",  "workdir", "snapshot", NULL };
        static const char *const resource_fields[] = { "cpu", "memory", "pids", NULL };
        _cleanup_(sandbox_spec_release) struct sandbox_spec s = {
                .template_name = SPEC_DEFAULT_TEMPLATE,
                .cpu = SBX_DEFAULT_CPU,
                .memory_mib = SBX_DEFAULT_MEMORY >> 20,
                .pids = SBX_DEFAULT_PIDS,
        };
        const json_t *metadata = NULL, *o = NULL;
        const char *str = NULL;
        size_t env_bytes;
        int r;

        assert(ret);

        /* A NULL body (no body at all) means all defaults; every getter treats a NULL object as empty. */
        if (body && !json_is_object(body))
                return invalid(err, "invalid_type", "request body must be a JSON object");
        r = json_check_fields(body, fields, "", err);
        if (r < 0)
                return r;

        r = json_get_string(body, "template", "", SBX_MAX_TEMPLATE_NAME, &str, err);
        if (r < 0)
                return r;
        if (r > 0) {
                if (!template_name_valid(str))
                        return invalid(err, "invalid_value", "'template' must match [a-z0-9][a-z0-9._:-]*");
                memcpy(s.template_name, str, strlen(str) + 1);
                s.given |= SPEC_GIVEN_TEMPLATE;
        }

        r = json_get_string(body, "snapshot", "", SBX_MAX_TAG, &str, err);
        if (r < 0)
                return r;
        if (r > 0) {
                if (!snapshot_ref_valid(str))
                        return invalid(err, "invalid_value",
                                       "'snapshot' must be a snapshot id or tag ([A-Za-z0-9._:-], not starting with "
                                       "'.' or '-')");
                memcpy(s.snapshot, str, strlen(str) + 1);
        }

        r = json_get_string(body, "name", "", SBX_MAX_NAME, &str, err);
        if (r < 0)
                return r;
        if (r > 0) {
                if (!sandbox_name_valid(str))
                        return invalid(err, "invalid_value",
                                       "'name' must be [A-Za-z0-9._-] and must not start with '.' or '-'");
                memcpy(s.name, str, strlen(str) + 1);
        }

        r = env_parse(body, &s.env, &s.n_env, &env_bytes, err);
        if (r < 0)
                return r;
        if (json_object_get(body, "env"))
                s.given |= SPEC_GIVEN_ENV;

        r = json_get_string(body, "workdir", "", SBX_MAX_CWD - 1, &str, err);
        if (r < 0)
                return r;
        if (r > 0) {
                s.given |= SPEC_GIVEN_WORKDIR;
                r = spec_path_normalize("workdir", str, s.workdir, sizeof s.workdir, err);
                if (r < 0)
                        return r;
        }

        r = string_map_get(body, "metadata", SBX_MAX_METADATA, SBX_MAX_METADATA_KEY, SBX_MAX_METADATA_VALUE, &metadata,
                           err);
        if (r < 0)
                return r;

        r = json_get_object(body, "resources", "", &o, err);
        if (r < 0)
                return r;
        if (r > 0) {
                s.given |= SPEC_GIVEN_RESOURCES;
                r = json_check_fields(o, resource_fields, "resources.", err);
                if (r < 0)
                        return r;
                r = json_get_number(o, "cpu", "resources.", SPEC_MIN_CPU, SBX_MAX_CPU, &s.cpu, err);
                if (r < 0)
                        return r;
                r = json_get_u64(o, "memory", "resources.", SBX_MIN_MEMORY >> 20, SBX_MAX_MEMORY >> 20, &s.memory_mib,
                                 err);
                if (r < 0)
                        return r;
                r = json_get_u64(o, "pids", "resources.", SPEC_MIN_PIDS, SBX_MAX_PIDS, &s.pids, err);
                if (r < 0)
                        return r;
        }

        o = NULL;
        r = json_get_object(body, "timeout", "", &o, err);
        if (r < 0)
                return r;
        if (r > 0) {
                struct sandbox_patch t = { 0 };

                s.given |= SPEC_GIVEN_TIMEOUT;
                r = timeout_parse(o, &t, err);
                if (r < 0)
                        return r;
                s.lifetime_s = t.lifetime_s;
                s.idle_s = t.idle_s;
                s.paused_s = t.paused_s;
                s.execution_s = t.execution_s;
        }

        /* A copy, not a reference: the caller's body may change or go away after we return. */
        s.metadata = metadata ? json_deep_copy(metadata) : json_object();
        if (!s.metadata)
                return nomem(err);

        *ret = s;
        memset(&s, 0, sizeof s);
        return 0;
}

void sandbox_spec_release(struct sandbox_spec *s)
{
        if (!s)
                return;
        strv_free(s->env);
        json_decref(s->metadata);
        memset(s, 0, sizeof *s);
}

/* json_object_set_new() drops value on failure too, and a NULL value (failed constructor) fails. */
static int set_new(json_t *obj, const char *key, json_t *value)
{
        return json_object_set_new(obj, key, value) < 0 ? -ENOMEM : 0;
}

static json_t *integer_or_null(uint64_t v)
{
        return v ? json_integer((json_int_t)v) : json_null();
}

json_t *sandbox_spec_to_json(const struct sandbox_spec *s)
{
        _cleanup_(json_decrefp) json_t *root = json_object(), *env = json_object(), *res = json_object(),
                                       *tmo = json_object();

        if (!root || !env || !res || !tmo)
                return NULL;

        for (size_t i = 0; i < s->n_env; i++) {
                const char *eq = strchr(s->env[i], '=');

                assert(eq); /* parse only builds "KEY=VALUE" */
                if (json_object_setn_new(env, s->env[i], (size_t)(eq - s->env[i]), json_string(eq + 1)) < 0)
                        return NULL;
        }

        if (set_new(res, "cpu", json_real(s->cpu)) < 0 ||
            set_new(res, "memory", json_integer((json_int_t)s->memory_mib)) < 0 ||
            set_new(res, "pids", json_integer((json_int_t)s->pids)) < 0 ||
            set_new(tmo, "lifetime", integer_or_null(s->lifetime_s)) < 0 ||
            set_new(tmo, "idle", integer_or_null(s->idle_s)) < 0 ||
            set_new(tmo, "paused", integer_or_null(s->paused_s)) < 0 ||
            set_new(tmo, "execution", integer_or_null(s->execution_s)) < 0)
                return NULL;

        if (set_new(root, "template", json_string(s->template_name)) < 0 ||
            set_new(root, "name", s->name[0] ? json_string(s->name) : json_null()) < 0 ||
            set_new(root, "env", TAKE_PTR(env)) < 0 ||
            set_new(root, "metadata", s->metadata ? json_deep_copy(s->metadata) : json_object()) < 0 ||
            set_new(root, "resources", TAKE_PTR(res)) < 0 || set_new(root, "timeout", TAKE_PTR(tmo)) < 0 ||
            set_new(root, "workdir", s->workdir[0] ? json_string(s->workdir) : json_null()) < 0 ||
            (s->snapshot[0] && set_new(root, "snapshot", json_string(s->snapshot)) < 0))
                return NULL;

        return TAKE_PTR(root);
}

/* An absolute path without ".." -> out, with "//" and "/./" collapsed and no trailing "/" (except "/").
 * The result is never longer than the input, so out needs only strlen(in) + 1 bytes. */
int spec_path_normalize(const char *field, const char *in, char *out, size_t size, struct sbx_err *err)
{
        size_t o = 0;

        if (strlen(in) >= size)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' is longer than %zu bytes", field,
                                    size - 1);
        if (in[0] != '/')
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' must be an absolute path", field);

        for (const char *p = in; *p;) {
                const char *c;
                size_t n;

                while (*p == '/')
                        p++;
                c = p;
                n = strcspn(p, "/");
                p += n;
                if (n == 0 || (n == 1 && c[0] == '.'))
                        continue;
                /* Refused rather than resolved: lexical ".." handling is wrong across symlinks. */
                if (n == 2 && c[0] == '.' && c[1] == '.')
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' must not contain '..'", field);
                out[o++] = '/';
                memcpy(out + o, c, n);
                o += n;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = '\0';
        return 0;
}

/* Validate obj["argv"]; *ret_bytes is the size execve() will count, NULs included. */
static int argv_check(const json_t *a, size_t *ret_bytes, struct sbx_err *err)
{
        size_t n, bytes = 0;

        if (!json_is_array(a))
                return invalid(err, "invalid_type", "'argv' must be an array of strings");
        n = json_array_size(a);
        if (n == 0)
                return invalid(err, "invalid_value", "'argv' must not be empty");
        if (n > SBX_MAX_ARGV)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'argv' has more than %d entries",
                                    SBX_MAX_ARGV);

        for (size_t i = 0; i < n; i++) {
                const json_t *v = json_array_get(a, i);
                size_t len;

                if (!json_is_string(v))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'argv[%zu]' must be a string", i);
                len = json_string_length(v);
                if (len > SPEC_MAX_ARG_STRLEN)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'argv[%zu]' is longer than %d bytes",
                                            i, SPEC_MAX_ARG_STRLEN);
                if (memchr(json_string_value(v), '\0', len))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'argv[%zu]' must not contain NUL bytes", i);
                if (i == 0 && len == 0)
                        return invalid(err, "invalid_value", "'argv[0]' must not be empty");
                bytes += len + 1;
        }
        *ret_bytes = bytes;
        return 0;
}

/* Build the argv vector: {"/bin/sh", "-c", cmd} or a copy of the (already checked) array. */
static int argv_build(const char *cmd, const json_t *a, char ***ret_argv, size_t *ret_argc)
{
        _cleanup_(strv_freep) char **argv = NULL;
        size_t n = cmd ? 3 : json_array_size(a);

        argv = calloc(n + 1, sizeof *argv);
        if (!argv)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const char *src;
                size_t len;

                if (cmd) {
                        src = i == 0 ? "/bin/sh" : i == 1 ? "-c" : cmd;
                        len = strlen(src);
                } else {
                        src = json_string_value(json_array_get(a, i));
                        len = json_string_length(json_array_get(a, i));
                }
                argv[i] = mem_dup0(src, len);
                if (!argv[i])
                        return -ENOMEM;
        }
        *ret_argv = TAKE_PTR(argv);
        *ret_argc = n;
        return 0;
}

/* "pty": {cols, rows} (either may be omitted), true, or false/null. */
static int pty_parse(const json_t *body, struct exec_spec *s, struct sbx_err *err)
{
        static const char *const fields[] = { "cols", "rows", NULL };
        const json_t *pty = json_object_get(body, "pty");
        uint64_t v;
        int r;

        s->cols = 80;
        s->rows = 24;
        if (!pty || json_is_null(pty) || json_is_false(pty))
                return 0;
        s->pty = true;
        if (json_is_true(pty))
                return 0;
        if (!json_is_object(pty))
                return invalid(err, "invalid_type", "'pty' must be an object {cols, rows} or a boolean");
        r = json_check_fields(pty, fields, "pty.", err);
        if (r >= 0)
                r = json_get_u64(pty, "cols", "pty.", 1, SBX_MAX_PTY_SIZE, &v, err);
        if (r > 0)
                s->cols = (uint16_t)v;
        if (r >= 0)
                r = json_get_u64(pty, "rows", "pty.", 1, SBX_MAX_PTY_SIZE, &v, err);
        if (r > 0)
                s->rows = (uint16_t)v;
        return r < 0 ? r : 0;
}

/* "user": a name or a numeric uid of the sandbox. */
static int user_parse(const json_t *body, struct exec_spec *s, struct sbx_err *err)
{
        const char *str = NULL;
        int r = json_get_string(body, "user", "", SBX_MAX_USER, &str, err);

        if (r <= 0)
                return r;
        if (!str[0] || strchr(str, '/') || strchr(str, ':'))
                return invalid(err, "invalid_value", "'user' must be a user name or a numeric uid");
        snprintf(s->user, sizeof s->user, "%s", str);
        return 0;
}

/* "cwd": absolute, normalised. */
static int cwd_parse(const json_t *body, struct exec_spec *s, struct sbx_err *err)
{
        const char *str = NULL;
        int r = json_get_string(body, "cwd", "", SBX_MAX_CWD - 1, &str, err);

        if (r <= 0)
                return r;
        r = spec_path_normalize("cwd", str, s->cwd, sizeof s->cwd, err);
        if (r < 0)
                return r;
        s->cwd_given = true;
        return 0;
}

/* The fields only processes have; stdin is handled by the caller. */
static int process_fields_parse(const json_t *body, struct exec_spec *s, struct sbx_err *err)
{
        const char *str = NULL;
        uint64_t v;
        int r;

        r = pty_parse(body, s, err);
        if (r < 0)
                return r;
        if (s->pty && s->stdin_data)
                return invalid(err, "invalid_value", "'stdin' data cannot be given with 'pty': write it to the terminal");
        r = user_parse(body, s, err);
        if (r < 0)
                return r;
        r = json_get_string(body, "tag", "", SBX_MAX_PROCESS_TAG, &str, err);
        if (r < 0)
                return r;
        if (r > 0)
                snprintf(s->tag, sizeof s->tag, "%s", str);
        s->keep_after_disconnect = true;
        r = json_get_bool(body, "keepAfterDisconnect", "", &s->keep_after_disconnect, err);
        if (r < 0)
                return r;
        s->max_run_after_disconnect_s = -1;
        r = json_get_u64(body, "maxRunAfterDisconnect", "", 0, SBX_MAX_PROCESS_TIMEOUT_S, &v, err);
        if (r < 0)
                return r;
        if (r > 0)
                s->max_run_after_disconnect_s = (int64_t)v;
        return 0;
}

static int spec_parse(const json_t *body, bool process, struct exec_spec *ret, struct sbx_err *err)
{
        /* autoResume is the API gate's (api/v1/gate.c): a paused sandbox is resumed first */
        static const char *const exec_fields[] = { "cmd", "argv", "cwd", "env", "timeout", "stdin", "autoResume", NULL };
        static const char *const process_fields[] = { "cmd", "argv", "cwd", "env", "timeout", "stdin", "user",
                                                      "pty", "tag", "keepAfterDisconnect",
                                                      "maxRunAfterDisconnect", "autoResume", NULL };
        const char *const *fields = process ? process_fields : exec_fields;
        _cleanup_(exec_spec_release) struct exec_spec s = {
                .cwd = SPEC_DEFAULT_CWD,
                .timeout_s = process ? 0 : SBX_DEFAULT_EXEC_TIMEOUT_S,
        };
        const json_t *cmdv, *argv, *in;
        const char *cmd = NULL;
        size_t argv_bytes = 0, env_bytes = 0;
        int r;

        assert(ret);

        if (body && !json_is_object(body))
                return invalid(err, "invalid_type", "request body must be a JSON object");
        r = json_check_fields(body, fields, "", err);
        if (r < 0)
                return r;

        /* null counts as absent, as for every other optional field */
        cmdv = json_object_get(body, "cmd");
        if (json_is_null(cmdv))
                cmdv = NULL;
        argv = json_object_get(body, "argv");
        if (json_is_null(argv))
                argv = NULL;
        if (cmdv && argv)
                return invalid(err, "invalid_value", "only one of 'cmd' and 'argv' may be given");
        if (!cmdv && !argv)
                return invalid(err, "missing_field", "one of 'cmd' or 'argv' is required");
        if (cmdv) {
                r = json_get_string(body, "cmd", "", SPEC_MAX_ARG_STRLEN, &cmd, err);
                if (r < 0)
                        return r;
                if (cmd[0] == '\0')
                        return invalid(err, "invalid_value", "'cmd' must not be empty");
                argv_bytes = sizeof "/bin/sh" + sizeof "-c" + strlen(cmd) + 1;
        } else {
                r = argv_check(argv, &argv_bytes, err);
                if (r < 0)
                        return r;
        }

        r = cwd_parse(body, &s, err);
        if (r < 0)
                return r;

        r = env_parse(body, &s.env, &s.n_env, &env_bytes, err);
        if (r < 0)
                return r;
        if (argv_bytes + env_bytes > SBX_MAX_ARG_BYTES)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range",
                                    "'%s' and 'env' together must be at most %d bytes", cmd ? "cmd" : "argv",
                                    SBX_MAX_ARG_BYTES);

        r = json_get_u64(body, "timeout", "", process ? 0 : 1,
                         process ? SBX_MAX_PROCESS_TIMEOUT_S : SBX_MAX_EXEC_TIMEOUT_S, &s.timeout_s, err);
        if (r < 0)
                return r;
        s.timeout_given = r > 0;
        r = json_get_bool(body, "autoResume", "", &(bool){ false }, err);
        if (r < 0)
                return r;

        /* stdin is bytes for the process, so NUL is allowed here (and only here). */
        in = json_object_get(body, "stdin");
        if (process && json_is_boolean(in)) {
                s.stdin_keep = json_is_true(in);
        } else if (in && !json_is_null(in)) {
                if (!json_is_string(in))
                        return invalid(err, "invalid_type",
                                       process ? "'stdin' must be a boolean or a string" : "'stdin' must be a string");
                if (json_string_length(in) > SBX_MAX_JSON_BODY)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'stdin' is longer than %d bytes",
                                            SBX_MAX_JSON_BODY);
                s.stdin_len = json_string_length(in);
                s.stdin_data = mem_dup0(json_string_value(in), s.stdin_len);
                if (!s.stdin_data)
                        return nomem(err);
        }

        if (process) {
                r = process_fields_parse(body, &s, err);
                if (r < 0)
                        return r;
        }

        r = argv_build(cmd, argv, &s.argv, &s.argc);
        if (r < 0)
                return nomem(err);

        *ret = s;
        memset(&s, 0, sizeof s);
        return 0;
}

int exec_spec_parse(const json_t *body, struct exec_spec *ret, struct sbx_err *err)
{
        return spec_parse(body, false, ret, err);
}

int process_spec_parse(const json_t *body, struct exec_spec *ret, struct sbx_err *err)
{
        return spec_parse(body, true, ret, err);
}

int process_base_parse(const json_t *body, const char *const *fields, struct exec_spec *ret, struct sbx_err *err)
{
        _cleanup_(exec_spec_release) struct exec_spec s = {
                .cwd = SPEC_DEFAULT_CWD,
                .keep_after_disconnect = true,
                .max_run_after_disconnect_s = -1,
                .cols = 80,
                .rows = 24,
        };
        size_t env_bytes = 0;
        int r;

        assert(ret);
        if (body && !json_is_object(body))
                return invalid(err, "invalid_type", "request body must be a JSON object");
        r = json_check_fields(body, fields, "", err);
        if (r >= 0)
                r = cwd_parse(body, &s, err);
        if (r >= 0)
                r = env_parse(body, &s.env, &s.n_env, &env_bytes, err);
        if (r >= 0 && env_bytes > SBX_MAX_ARG_BYTES / 2)
                r = sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'env' must be at most %d bytes",
                                 SBX_MAX_ARG_BYTES / 2);
        if (r >= 0)
                r = user_parse(body, &s, err);
        if (r < 0)
                return r;
        *ret = s;
        memset(&s, 0, sizeof s);
        return 0;
}

void exec_spec_release(struct exec_spec *s)
{
        if (!s)
                return;
        strv_free(s->argv);
        strv_free(s->env);
        free(s->stdin_data);
        json_decref(s->meta);
        memset(s, 0, sizeof *s);
}
