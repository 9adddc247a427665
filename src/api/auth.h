/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bearer-token authentication for the API and API key generation. Pure apart from getrandom(2):
 * no MHD, no logging. The comparison is constant-time in the key's content and length.
 */
#pragma once

#include <stddef.h>

#include "common/err.h"

#define SBX_API_KEY_PREFIX "sbx_key_"
#define SBX_API_KEY_HEX 40                                                 /* 160 random bits */
#define SBX_API_KEY_LEN (sizeof(SBX_API_KEY_PREFIX) - 1 + SBX_API_KEY_HEX) /* without the NUL */

/* The body message of every 401, and the WWW-Authenticate value sent with it. */
#define SBX_AUTH_MESSAGE "missing or invalid bearer token in 'Authorization' header"
#define SBX_AUTH_CHALLENGE "Bearer"

/*
 * Check an Authorization header value ("Bearer KEY"; scheme case-insensitive, RFC 9110 §11.1)
 * against api_key. NULL or empty api_key refuses everything (fail closed).
 * Returns 0, or -SBX_E_UNAUTHORIZED with err reason "unauthorized" and SBX_AUTH_MESSAGE.
 */
int auth_check_bearer(const char *authorization, const char *api_key, struct sbx_err *err);

/* Write "sbx_key_" + 40 lower-case hex chars from getrandom(2) and a NUL into buf.
 * Returns 0, -ENOBUFS if size <= SBX_API_KEY_LEN, or -errno from getrandom. */
int api_key_generate(char *buf, size_t size);
