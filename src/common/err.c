// SPDX-License-Identifier: Apache-2.0
/* Filling struct sbx_err; see err.h. Never logs. */
#include "err.h"

#include <stdio.h>
#include <string.h>

static int err_vset(struct sbx_err *err, int code, const char *reason, const char *fmt, va_list ap)
        __attribute__((format(printf, 4, 0)));

static int err_vset(struct sbx_err *err, int code, const char *reason, const char *fmt, va_list ap)
{
        if (!err || err->code != 0)
                return code;
        err->code = code;
        if (reason)
                snprintf(err->reason, sizeof err->reason, "%s", reason);
        else
                err->reason[0] = '\0';
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        return code;
}

int sbx_err_set(struct sbx_err *err, int code, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        code = err_vset(err, code, NULL, fmt, ap);
        va_end(ap);
        return code;
}

int sbx_err_setr(struct sbx_err *err, int code, const char *reason, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        code = err_vset(err, code, reason, fmt, ap);
        va_end(ap);
        return code;
}

int sbx_err_wrap(struct sbx_err *err, const char *fmt, ...)
{
        char prefix[SBX_ERR_MSG_MAX], old[SBX_ERR_MSG_MAX];
        va_list ap;

        if (!err)
                return 0;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* truncation of an over-long message is acceptable */
        size_t n = strnlen(prefix, sizeof err->msg - 1);
        memcpy(err->msg, prefix, n);
        if (n + 2 < sizeof err->msg) {
                memcpy(err->msg + n, ": ", 2);
                n += 2;
                size_t m = strnlen(old, sizeof err->msg - 1 - n);
                memcpy(err->msg + n, old, m);
                n += m;
        }
        err->msg[n] = '\0';
        return err->code;
}

void sbx_err_clear(struct sbx_err *err)
{
        if (err)
                memset(err, 0, sizeof *err);
}
