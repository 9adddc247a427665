// SPDX-License-Identifier: Apache-2.0
/* Strict field access for request validation; see json.h. */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int json_check_fields(const json_t *obj, const char *const *allowed, const char *where, struct sbx_err *err)
{
        const char *key;
        json_t *v;

        json_object_foreach((json_t *)obj, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        if (strcmp(*a, key) == 0) {
                                ok = true;
                                break;
                        }
                if (!ok)
                        return sbx_err_setr(err, -SBX_E_INVALID, "unknown_field", "unknown field '%s%.64s'", where,
                                            key);
        }
        return 0;
}

int json_get_string(const json_t *obj, const char *key, const char *where, size_t max_len, const char **ret,
                    struct sbx_err *err)
{
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s%s' must be a string", where, key);
        if (json_string_length(v) > max_len)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s%s' is longer than %zu bytes", where,
                                    key, max_len);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s%s' must not contain NUL bytes", where,
                                    key);
        *ret = json_string_value(v);
        return 1;
}

int json_get_u64(const json_t *obj, const char *key, const char *where, uint64_t min, uint64_t max, uint64_t *ret,
                 struct sbx_err *err)
{
        json_t *v = json_object_get(obj, key);
        json_int_t i;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_integer(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s%s' must be an integer", where, key);
        i = json_integer_value(v);
        if (i < 0 || (uint64_t)i < min || (uint64_t)i > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s%s' must be between %llu and %llu",
                                    where, key, (unsigned long long)min, (unsigned long long)max);
        *ret = (uint64_t)i;
        return 1;
}

int json_get_number(const json_t *obj, const char *key, const char *where, double min, double max, double *ret,
                    struct sbx_err *err)
{
        json_t *v = json_object_get(obj, key);
        double d;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_number(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s%s' must be a number", where, key);
        d = json_number_value(v);
        if (!isfinite(d) || d < min || d > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s%s' must be between %g and %g", where,
                                    key, min, max);
        *ret = d;
        return 1;
}

int json_get_bool(const json_t *obj, const char *key, const char *where, bool *ret, struct sbx_err *err)
{
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_boolean(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s%s' must be a boolean", where, key);
        *ret = json_is_true(v);
        return 1;
}

int json_get_object(const json_t *obj, const char *key, const char *where, const json_t **ret, struct sbx_err *err)
{
        json_t *v = json_object_get(obj, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_object(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s%s' must be an object", where, key);
        *ret = v;
        return 1;
}

int json_get_string_map(const json_t *obj, const char *key, const char *where, size_t max_pairs, size_t max_key,
                        size_t max_value, const json_t **ret, struct sbx_err *err)
{
        const json_t *m = NULL;
        const char *k;
        json_t *v;
        int r;

        r = json_get_object(obj, key, where, &m, err);
        if (r <= 0)
                return r;
        if (json_object_size(m) > max_pairs)
                return sbx_err_setr(err, -SBX_E_INVALID, "too_many_entries", "'%s%s' has more than %zu entries",
                                    where, key, max_pairs);
        json_object_foreach((json_t *)m, k, v) {
                if (strlen(k) == 0 || strlen(k) > max_key)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "keys of '%s%s' must be 1 to %zu bytes", where, key, max_key);
                if (!json_is_string(v))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s%s.%.64s' must be a string",
                                            where, key, k);
                if (json_string_length(v) > max_value ||
                    strlen(json_string_value(v)) != json_string_length(v))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'%s%s.%.64s' must be at most %zu bytes without NUL", where, key, k,
                                            max_value);
        }
        *ret = m;
        return 1;
}

char *json_dump_compact(const json_t *v)
{
        return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
}

json_t *json_string_utf8(const char *buf, size_t len)
{
        char *clean;
        json_t *s;

        if (utf8_valid(buf, len))
                return json_stringn(buf, len);
        clean = malloc(len * 3 + 1);
        if (!clean)
                return NULL;
        s = json_stringn(clean, utf8_sanitize(buf, len, clean));
        free(clean);
        return s;
}

json_t *json_time_ms(uint64_t unix_ms)
{
        char buf[40];

        if (!unix_ms)
                return json_null();
        format_rfc3339_ms(unix_ms, buf, sizeof buf);
        return json_string(buf);
}
