/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the spec fuzzers (spec.c, build-spec.c): an abort-on-failure CHECK, the error contract
 * every parser here keeps (a failure fills err with the same negative code, a message and one of
 * the stable validation reasons, or is -ENOMEM), and the check that a failed parse left *ret as
 * the harness painted it (0xa5).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

#define CHECK(x)                 \
        do {                     \
                if (!(x))        \
                        abort(); \
        } while (0)

static inline void fuzz_check_error(int r, const struct sbx_err *err)
{
        static const char *const reasons[] = { "unknown_field", "invalid_type",  "invalid_value",
                                               "out_of_range",  "missing_field", NULL };
        bool known = false;

        CHECK(r < 0 && err->code == r && err->msg[0]);
        if (r == -ENOMEM)
                return;
        CHECK(r == -SBX_E_INVALID);
        for (const char *const *p = reasons; *p; p++)
                known = known || strcmp(*p, err->reason) == 0;
        CHECK(known);
}

static inline bool fuzz_untouched(const void *p, size_t n)
{
        const unsigned char *b = p;

        for (size_t i = 0; i < n; i++)
                if (b[i] != 0xa5)
                        return false;
        return true;
}
