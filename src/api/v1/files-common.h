/* SPDX-License-Identifier: Apache-2.0 */
/* Request parsing shared by the file handlers (files.c, fs.c, watchers.c). Each fills err with a
 * message naming the field and returns -SBX_E_INVALID. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <sys/types.h>

#include "api/server.h"
#include "common/err.h"

/* A path query argument (required): present, no NUL, checked by files_path_check. */
int files_query_path(struct http_request *req, const char *key, const char **ret, struct sbx_err *err);
/* The {path*} parameter as an absolute path ("/" + the rest of the URL path) into buf, checked. */
int files_param_path(struct http_request *req, unsigned idx, char *buf, size_t size, struct sbx_err *err);
/* "true"/"false"/"1"/"0"/"" (= true); absent -> def. */
int files_query_bool(struct http_request *req, const char *key, bool def, bool *ret, struct sbx_err *err);
/* An octal mode ("0644", "755"); absent -> *has false. */
int files_query_mode(struct http_request *req, const char *key, bool *has, mode_t *ret, struct sbx_err *err);
/* A non-negative integer; absent -> def; > max is out_of_range. */
int files_query_u64(struct http_request *req, const char *key, uint64_t def, uint64_t max, uint64_t *ret,
                    struct sbx_err *err);

/* JSON fields of an object o: a path string (required unless opt), a bool, a mode (number or octal
 * string), an unsigned integer. name is the field's name in messages. */
int files_json_path(json_t *o, const char *name, bool opt, const char **ret, struct sbx_err *err);
int files_json_bool(json_t *o, const char *name, bool def, bool *ret, struct sbx_err *err);
int files_json_mode(json_t *o, const char *name, bool *has, mode_t *ret, struct sbx_err *err);
int files_json_u64(json_t *o, const char *name, uint64_t def, uint64_t max, uint64_t *ret, struct sbx_err *err);
/* Optional "user" (a name or id of the sandbox's /etc/passwd): *ret NULL when absent. */
int files_json_user(json_t *o, const char **ret, struct sbx_err *err);
/* Refuse fields of o not in the NULL-terminated list (unknown_field). */
int files_json_only(json_t *o, const char *const *known, struct sbx_err *err);
