// SPDX-License-Identifier: Apache-2.0
/*
 * Error code -> HTTP status + stable string: the single table (see errors.h). Adding an SBX_E_*
 * code means adding a row here; test-errors fails until every code in enum sbx_errc has one.
 */
#include "errors.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"

struct http_error_row {
        int code; /* negative */
        unsigned status;
        const char *reason;  /* default stable string */
        const char *message; /* default message */
};

static const struct http_error_row error_table[] = {
        { -SBX_E_INVALID, 400, "invalid", "invalid request" },
        { -SBX_E_UNAUTHORIZED, 401, "unauthorized", "missing or invalid bearer token in 'Authorization' header" },
        { -SBX_E_NOT_FOUND, 404, "not_found", "not found" },
        { -SBX_E_METHOD_NOT_ALLOWED, 405, "method_not_allowed", "method not allowed" },
        { -SBX_E_FORBIDDEN, 403, "forbidden", "this request is not allowed" },
        { -SBX_E_CONFLICT, 409, "conflict", "the current state does not allow this request" },
        { -SBX_E_TOO_LARGE, 413, "payload_too_large", "request body is too large" },
        { -SBX_E_RANGE, 416, "range_not_satisfiable", "the requested range is outside the file" },
        { -SBX_E_HEADERS_TOO_LARGE, 431, "headers_too_large", "request headers are too large" },
        { -SBX_E_LIMIT, 429, "limit_exceeded", "a limit was reached" },
        { -SBX_E_INTERNAL, 500, "internal", "internal error" },
        { -SBX_E_UNAVAILABLE, 503, "unavailable", "not available yet, retry later" },
        /* a full data disk is the operator's to fix, not a bug: say so, keep the message */
        { -ENOSPC, 503, "insufficient_storage", "no space left on the data disk" },
        { -EDQUOT, 503, "insufficient_storage", "disk quota exceeded on the data disk" },
        /* errno values are internal failures; listed so the table documents them explicitly */
        { -ENOMEM, 500, "internal", "internal error" },
        { -EIO, 500, "internal", "internal error" },
};

static const struct http_error_row internal_row = { -SBX_E_INTERNAL, 500, "internal", "internal error" };

static const struct http_error_row *error_row(int code)
{
        for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
                if (error_table[i].code == code)
                        return &error_table[i];
        return &internal_row;
}

unsigned http_error_status(int code)
{
        return error_row(code)->status;
}

const char *http_error_reason(int code)
{
        return error_row(code)->reason;
}

const char *http_error_message(int code)
{
        return error_row(code)->message;
}

json_t *http_error_body(const struct sbx_err *err)
{
        const struct http_error_row *row = error_row(err ? err->code : -SBX_E_INTERNAL);
        const char *reason = row->reason, *message = row->message;
        /* messages may quote user input cut anywhere by vsnprintf: make them valid UTF-8 */
        char rbuf[3 * SBX_ERR_REASON_MAX], mbuf[3 * SBX_ERR_MSG_MAX];

        if (err && err->reason[0] && row->status != 500)
                reason = err->reason;
        if (err && err->msg[0] && row->status != 500)
                message = err->msg;
        rbuf[utf8_sanitize(reason, strnlen(reason, SBX_ERR_REASON_MAX - 1), rbuf)] = '\0';
        mbuf[utf8_sanitize(message, strnlen(message, SBX_ERR_MSG_MAX - 1), mbuf)] = '\0';
        return json_pack("{s:{s:s,s:s}}", "error", "code", rbuf, "message", mbuf);
}
