/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Strict JSON field access for validating untrusted request bodies with errors that name the
 * field ("'resources.memory' must be an integer"). Pure; no logging.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* Fail with unknown_field if obj has a key not in the NULL-terminated list `allowed`.
 * `where` prefixes the field name in messages ("" for top level, "resources." for nested). */
int json_check_fields(const json_t *obj, const char *const *allowed, const char *where, struct sbx_err *err);

/* Each getter: key absent or null -> returns 0 and leaves *ret untouched (optional field);
 * wrong type or out of range -> -SBX_E_INVALID naming `where``key`; success -> 1. */
int json_get_string(const json_t *obj, const char *key, const char *where, size_t max_len, const char **ret,
                    struct sbx_err *err);
int json_get_u64(const json_t *obj, const char *key, const char *where, uint64_t min, uint64_t max, uint64_t *ret,
                 struct sbx_err *err);
int json_get_number(const json_t *obj, const char *key, const char *where, double min, double max, double *ret,
                    struct sbx_err *err);
int json_get_bool(const json_t *obj, const char *key, const char *where, bool *ret, struct sbx_err *err);
/* Object of string values, at most max_pairs, keys <= max_key bytes, values <= max_value bytes. */
int json_get_string_map(const json_t *obj, const char *key, const char *where, size_t max_pairs, size_t max_key,
                        size_t max_value, const json_t **ret, struct sbx_err *err);
int json_get_object(const json_t *obj, const char *key, const char *where, const json_t **ret, struct sbx_err *err);

/* A JSON string of len bytes of buf, made valid UTF-8 first (invalid sequences become U+FFFD):
 * for text that comes from outside (command output, file names). NULL on allocation failure. */
json_t *json_string_utf8(const char *buf, size_t len);

/* A timestamp in unix ms as an RFC 3339 string with milliseconds, or JSON null for 0 (never). */
json_t *json_time_ms(uint64_t unix_ms);

/* Serialize compactly into a malloc'd string (NULL on failure). */
char *json_dump_compact(const json_t *v);
