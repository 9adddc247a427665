// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness for src/core/build-spec.c: the input is loaded as the API loads a template spec
 * (json_loadb with JSON_REJECT_DUPLICATES) and given to build_spec_parse(); on success every step
 * cache key is computed and the spec released. Besides memory errors (ASan) and UB (UBSan) it checks
 * the contracts of build-spec.h: a failure fills err with a known reason and leaves *ret untouched; a
 * parsed spec is within its bounds, its digest is "sha256:" + 64 hex, and its keys are 64 hex and
 * reproducible. Never does I/O.
 */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "fuzz-common.h"
#include "core/build-spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool hex64(const char *s)
{
        for (size_t i = 0; i < 64; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return s[64] == '\0';
}

static void check_spec(const struct build_spec *s)
{
        static const char *const kinds[] = { "files", "npm", "setup" };
        char keys[3][65], again[65];

        CHECK(s->name[0] && strlen(s->name) <= SBX_MAX_TEMPLATE_NAME);
        CHECK(s->suite[0] && s->packages && s->config && s->canonical);
        CHECK(s->n_npm <= SBX_MAX_SPEC_NPM && s->n_files <= SBX_MAX_SPEC_FILES && s->n_setup <= SBX_MAX_SPEC_SETUP);
        CHECK(s->setup_timeout_s >= 1 && s->setup_timeout_s <= SBX_MAX_SETUP_TIMEOUT_S);
        CHECK(!s->from[0] || !s->packages[0]);
        for (size_t i = 0; i < s->n_files; i++) {
                const char *p = s->files[i].path;
                size_t n = strlen(p);

                CHECK(p[0] == '/' && n > 1 && p[n - 1] != '/' && s->files[i].mode <= 07777);
                CHECK(!strstr(p, "//") && !strstr(p, "/./") && !strstr(p, "/../"));
                CHECK(strcmp(p + n - 2, "/.") != 0 && (n < 3 || strcmp(p + n - 3, "/..") != 0));
                CHECK(s->files[i].data || s->files[i].len == 0);
        }
        for (size_t i = 0; i < s->n_npm; i++)
                CHECK(s->npm[i][0] && s->npm[i][0] != '-');
        for (size_t i = 0; i < s->n_setup; i++)
                CHECK(s->setup[i][0]);
        CHECK(memcmp(s->digest, "sha256:", 7) == 0 && hex64(s->digest + 7));

        for (size_t k = 0; k < 3; k++) {
                build_spec_step_key(s, kinds[k], s->digest, keys[k]);
                CHECK(hex64(keys[k]));
                build_spec_step_key(s, kinds[k], s->digest, again);
                CHECK(strcmp(keys[k], again) == 0);
        }
        CHECK(strcmp(keys[0], keys[1]) && strcmp(keys[0], keys[2]) && strcmp(keys[1], keys[2]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct build_spec s;
        struct sbx_err err = {};
        json_t *body;
        int r;

        if (size > SBX_MAX_JSON_BODY)
                return 0;
        body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!body)
                return 0;
        memset(&s, 0xa5, sizeof s);
        r = build_spec_parse(body, &s, &err);
        if (r < 0) {
                fuzz_check_error(r, &err);
                CHECK(fuzz_untouched(&s, sizeof s));
        } else {
                CHECK(r == 0 && err.code == 0);
                check_spec(&s);
                build_spec_release(&s);
                build_spec_release(&s); /* twice is safe */
        }
        json_decref(body);
        return 0;
}
