/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one table from error codes (-errno and -SBX_E_*, common/err.h) to HTTP status and default
 * stable error string (STYLE.md B3.3). Handlers never pick a status themselves: they fill a
 * struct sbx_err and call http_reply_error(). Pure: no MHD, no logging.
 */
#pragma once

#include <jansson.h>

#include "common/err.h"

/* HTTP status for code. Unknown codes, every errno and anything >= 0 map to 500. */
unsigned http_error_status(int code);
/* Default stable snake_case string for code ("internal" for unknown codes and errno). */
const char *http_error_reason(int code);
/* Default human message for code, used when err->msg is empty ("internal error", ...). */
const char *http_error_message(int code);

/*
 * Build {"error":{"code":REASON,"message":MSG}} for err: REASON is err->reason when set, else the
 * table's default; MSG is err->msg when set, else the default message. For 500 replies MSG is
 * always the default, so no host path or internal detail reaches a client (the server logs the
 * real message). err may be NULL (internal error). Returns a new reference, NULL on OOM.
 */
json_t *http_error_body(const struct sbx_err *err);
