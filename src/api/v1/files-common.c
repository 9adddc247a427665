// SPDX-License-Identifier: Apache-2.0
/* Request parsing shared by the file handlers (see files-common.h). */
#include "files-common.h"

#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "files/files.h"

int files_query_path(struct http_request *req, const char *key, const char **ret, struct sbx_err *err)
{
        size_t len = 0;
        const char *v = http_request_query_n(req, key, &len);
        int r;

        if (!v)
                return sbx_err_setr(err, -SBX_E_INVALID, "missing_field", "query argument '%s' is required", key);
        r = files_path_check(v, len, key, err);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

int files_param_path(struct http_request *req, unsigned idx, char *buf, size_t size, struct sbx_err *err)
{
        const char *p = http_request_param(req, idx) ?: "";
        size_t len = strlen(p);

        if (len + 2 > size)
                return sbx_err_setr(err, -SBX_E_INVALID, "name_too_long", "'path' is longer than %zu bytes", size - 2);
        buf[0] = '/';
        memcpy(buf + 1, p, len + 1);
        return files_path_check(buf, len + 1, "path", err);
}

int files_query_bool(struct http_request *req, const char *key, bool def, bool *ret, struct sbx_err *err)
{
        const char *v = http_request_query(req, key);

        if (!v)
                *ret = def;
        else if (!*v || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
                *ret = true;
        else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
                *ret = false;
        else
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "query argument '%s' must be true or false, not '%.32s'", key, v);
        return 0;
}

static int parse_mode(const char *v, mode_t *ret)
{
        unsigned long m = 0;

        if (!*v || strlen(v) > 5 || strspn(v, "01234567") != strlen(v))
                return -EINVAL;
        for (const char *p = v; *p; p++)
                m = m * 8 + (unsigned long)(*p - '0');
        if (m > 07777)
                return -EINVAL;
        *ret = (mode_t)m;
        return 0;
}

int files_query_mode(struct http_request *req, const char *key, bool *has, mode_t *ret, struct sbx_err *err)
{
        const char *v = http_request_query(req, key);

        *has = false;
        if (!v)
                return 0;
        if (parse_mode(v, ret) < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "query argument '%s' must be an octal mode such as 0644, not '%.32s'", key, v);
        *has = true;
        return 0;
}

int files_query_u64(struct http_request *req, const char *key, uint64_t def, uint64_t max, uint64_t *ret,
                    struct sbx_err *err)
{
        const char *v = http_request_query(req, key);

        if (!v) {
                *ret = def;
                return 0;
        }
        if (parse_u64(v, ret) < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "query argument '%s' must be a non-negative integer, not '%.32s'", key, v);
        if (*ret > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "query argument '%s' must be at most %llu",
                                    key, (unsigned long long)max);
        return 0;
}

int files_json_path(json_t *o, const char *name, bool opt, const char **ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, name);
        int r;

        if (!v) {
                if (opt) {
                        *ret = NULL;
                        return 0;
                }
                return sbx_err_setr(err, -SBX_E_INVALID, "missing_field", "'%s' is required", name);
        }
        if (!json_is_string(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s' must be a string", name);
        r = files_path_check(json_string_value(v), json_string_length(v), name, err);
        if (r < 0)
                return r;
        *ret = json_string_value(v);
        return 0;
}

int files_json_bool(json_t *o, const char *name, bool def, bool *ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, name);

        if (!v || json_is_null(v)) {
                *ret = def;
                return 0;
        }
        if (!json_is_boolean(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s' must be true or false", name);
        *ret = json_is_true(v);
        return 0;
}

int files_json_mode(json_t *o, const char *name, bool *has, mode_t *ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, name);

        *has = false;
        if (!v || json_is_null(v))
                return 0;
        if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 07777)
                *ret = (mode_t)json_integer_value(v);
        else if (!json_is_string(v) || parse_mode(json_string_value(v), ret) < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'%s' must be a mode: a number up to 4095 (07777) or an octal string such as \"0644\"",
                                    name);
        *has = true;
        return 0;
}

int files_json_u64(json_t *o, const char *name, uint64_t def, uint64_t max, uint64_t *ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, name);

        if (!v || json_is_null(v)) {
                *ret = def;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s' must be a non-negative integer", name);
        if ((uint64_t)json_integer_value(v) > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s' must be at most %llu", name,
                                    (unsigned long long)max);
        *ret = (uint64_t)json_integer_value(v);
        return 0;
}

int files_json_user(json_t *o, const char **ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, "user");

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 255 ||
            strlen(json_string_value(v)) != json_string_length(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'user' must be a user name or id (a string)");
        *ret = json_string_value(v);
        return 0;
}

int files_json_only(json_t *o, const char *const *known, struct sbx_err *err)
{
        const char *key;
        json_t *v;

        json_object_foreach (o, key, v) {
                bool ok = false;

                for (const char *const *k = known; *k && !ok; k++)
                        ok = strcmp(*k, key) == 0;
                if (!ok)
                        return sbx_err_setr(err, -SBX_E_INVALID, "unknown_field", "unknown field '%.64s'", key);
        }
        return 0;
}
