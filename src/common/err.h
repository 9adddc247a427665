/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one error convention (docs/design/error-handling.md): functions return >= 0 or a negative
 * code; API-facing ones also fill an optional struct sbx_err once, at the lowest layer that knows
 * the context. Codes are -errno or -SBX_E_* (above the errno range). The API layer maps them to
 * HTTP status and a stable string in one table (src/api/errors.c).
 */
#pragma once

#include <stdarg.h>
#include <stddef.h>

enum sbx_errc {
        SBX_E_BASE = 1000,
        SBX_E_INVALID = SBX_E_BASE, /* request is malformed or a field is wrong: 400 */
        SBX_E_NOT_FOUND,            /* 404 */
        SBX_E_CONFLICT,             /* state does not allow this: 409 */
        SBX_E_TOO_LARGE,            /* 413 */
        SBX_E_LIMIT,                /* a quota or rate limit was hit: 429 */
        SBX_E_UNAUTHORIZED,         /* 401 */
        SBX_E_UNAVAILABLE,          /* not ready yet (template building): 503 */
        SBX_E_INTERNAL,             /* 500 */
        SBX_E_METHOD_NOT_ALLOWED,   /* 405 */
        SBX_E_HEADERS_TOO_LARGE,    /* request line + headers over SBX_MAX_HEADER_BYTES: 431 */
        SBX_E_FORBIDDEN,            /* the request is understood but refused (a path outside what the
                                     * file API may touch): 403 */
        SBX_E_RANGE,                /* Range header not satisfiable: 416 */
        SBX_E_MAX,
};

#define SBX_ERR_MSG_MAX 512
#define SBX_ERR_REASON_MAX 48

struct sbx_err {
        int code;                          /* negative: -errno or -SBX_E_* */
        char reason[SBX_ERR_REASON_MAX];   /* stable snake_case string, "" = derive from code */
        char msg[SBX_ERR_MSG_MAX];         /* git style: lower-case, subject in quotes, no full stop */
};

/* Fill err (if non-NULL and not yet set) and return code, which must be negative. */
int sbx_err_set(struct sbx_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Same with a stable reason string (e.g. "unknown_field"). */
int sbx_err_setr(struct sbx_err *err, int code, const char *reason, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Prefix context to an already-set message: "context: old message". Returns err->code. */
int sbx_err_wrap(struct sbx_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbx_err_clear(struct sbx_err *err);
