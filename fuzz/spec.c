// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness for src/sandbox/spec.c: the input is parsed as a JSON request body with jansson
 * (any top-level value, NUL allowed in strings, as the API may hand over) and given to both
 * sandbox_spec_parse() and exec_spec_parse(). Besides memory errors (ASan) and UB (UBSan) it checks the
 * contracts of spec.h: a failure fills err with a stable reason and leaves *ret untouched; a sandbox spec
 * survives to_json -> parse unchanged; an exec spec is bounded and its cwd normalised. Never does I/O.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/limits.h"
#include "fuzz-common.h"
#include "sandbox/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_sandbox(const json_t *body)
{
        struct sandbox_spec s, again;
        struct sbx_err err = {};
        char *d1, *d2;
        json_t *j;
        int r;

        memset(&s, 0xa5, sizeof s);
        r = sandbox_spec_parse(body, &s, &err);
        if (r < 0) {
                fuzz_check_error(r, &err);
                CHECK(fuzz_untouched(&s, sizeof s));
                return;
        }
        CHECK(err.code == 0);
        CHECK(s.env && s.env[s.n_env] == NULL && s.n_env <= SBX_MAX_ENV);
        CHECK(json_is_object(s.metadata) && json_object_size(s.metadata) <= SBX_MAX_METADATA);
        CHECK(s.memory_mib >= SBX_MIN_MEMORY >> 20 && s.memory_mib <= SBX_MAX_MEMORY >> 20);
        CHECK(s.pids <= SBX_MAX_PIDS && s.lifetime_s <= SBX_MAX_LIFETIME_S && s.idle_s <= SBX_MAX_LIFETIME_S);
        for (size_t i = 0; i < s.n_env; i++) {
                char *eq = strchr(s.env[i], '=');

                CHECK(eq);
                *eq = '\0';
                CHECK(env_name_valid(s.env[i]));
                *eq = '=';
        }

        /* round trip: the canonical JSON parses back to the same spec */
        j = sandbox_spec_to_json(&s);
        CHECK(j);
        r = sandbox_spec_parse(j, &again, NULL);
        CHECK(r == 0);
        d1 = json_dump_compact(j);
        json_decref(j);
        j = sandbox_spec_to_json(&again);
        CHECK(j);
        d2 = json_dump_compact(j);
        CHECK(d1 && d2 && strcmp(d1, d2) == 0);
        free(d1);
        free(d2);
        json_decref(j);
        sandbox_spec_release(&again);
        sandbox_spec_release(&s);
}

static void fuzz_exec(const json_t *body)
{
        struct sbx_err err = {};
        struct exec_spec s;
        size_t bytes = 0, n;
        int r;

        memset(&s, 0xa5, sizeof s);
        r = exec_spec_parse(body, &s, &err);
        if (r < 0) {
                fuzz_check_error(r, &err);
                CHECK(fuzz_untouched(&s, sizeof s));
                return;
        }
        CHECK(s.argc >= 1 && s.argc <= SBX_MAX_ARGV && s.argv[s.argc] == NULL && s.argv[0][0] != '\0');
        CHECK(s.env && s.env[s.n_env] == NULL && s.n_env <= SBX_MAX_ENV);
        for (size_t i = 0; i < s.argc; i++)
                bytes += strlen(s.argv[i]) + 1;
        for (size_t i = 0; i < s.n_env; i++)
                bytes += strlen(s.env[i]) + 1;
        CHECK(bytes <= SBX_MAX_ARG_BYTES);
        n = strlen(s.cwd);
        CHECK(s.cwd[0] == '/' && n < SBX_MAX_CWD && (n == 1 || s.cwd[n - 1] != '/'));
        CHECK(!strstr(s.cwd, "//") && !strstr(s.cwd, "/./") && !strstr(s.cwd, "/../"));
        CHECK(n < 2 || strcmp(s.cwd + n - 2, "/.") != 0);
        CHECK(n < 3 || strcmp(s.cwd + n - 3, "/..") != 0);
        CHECK(s.timeout_s >= 1 && s.timeout_s <= SBX_MAX_EXEC_TIMEOUT_S);
        CHECK(s.stdin_len <= SBX_MAX_JSON_BODY && (s.stdin_data || s.stdin_len == 0));
        exec_spec_release(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        json_t *body;

        if (size > SBX_MAX_JSON_BODY)
                return 0;
        body = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!body)
                return 0;
        fuzz_sandbox(body);
        fuzz_exec(body);
        json_decref(body);
        return 0;
}
