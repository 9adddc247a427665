// SPDX-License-Identifier: Apache-2.0
/*
 * libFuzzer harness for the path checks of the files API (src/files/path.c): the input is a path
 * as a client sends it (any bytes). files_path_check must accept or refuse it with a stable reason,
 * and what it accepts must normalise to an absolute path without empty, "." or ".." components or
 * a trailing '/', no longer than the input plus its leading '/', and normalising again changes
 * nothing. Never does I/O.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "files/files.h"
#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_normal(const char *p, size_t in_len)
{
        size_t n = strlen(p);

        CHECK(p[0] == '/');
        CHECK(n <= in_len + 1);
        CHECK(n == 1 || p[n - 1] != '/');
        CHECK(!strstr(p, "//"));
        for (const char *c = p; c; c = strchr(c + 1, '/')) {
                const char *e = strchrnul(c + 1, '/');
                size_t len = (size_t)(e - (c + 1));

                CHECK(!(len == 1 && c[1] == '.'));
                CHECK(!(len == 2 && c[1] == '.' && c[2] == '.'));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const reasons[] = { "invalid_path", "name_too_long", NULL };
        char norm[SBX_MAX_FILE_PATH + 2], again[SBX_MAX_FILE_PATH + 2];
        struct sbx_err err = {};
        char *p = malloc(size + 1);
        bool known = false;
        int r;

        CHECK(p);
        memcpy(p, data, size);
        p[size] = '\0';
        r = files_path_check(p, size, "path", &err);
        if (r < 0) {
                CHECK(r == -SBX_E_INVALID && err.code == r && err.msg[0]);
                for (const char *const *k = reasons; *k; k++)
                        known = known || strcmp(*k, err.reason) == 0;
                CHECK(known);
                free(p);
                return 0;
        }
        CHECK(size > 0 && size <= SBX_MAX_FILE_PATH && !memchr(p, '\0', size));
        CHECK(files_path_normalize(p, norm, sizeof norm) == 0);
        check_normal(norm, size);
        CHECK(files_path_normalize(norm, again, sizeof again) == 0);
        CHECK(strcmp(norm, again) == 0);
        free(p);
        return 0;
}
