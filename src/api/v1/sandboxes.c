// SPDX-License-Identifier: Apache-2.0
/*
 * /v1/sandboxes: create, list, get, update, delete, stop, start, pause, resume, hibernate, wake. Translation only: parse and validate the
 * request (sandbox/spec.c), call the manager, shape the reply.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/util.h"

static void on_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0) {
                http_reply_error(req, err);
                return;
        }
        if (!result) {
                http_reply_data(req, 204, NULL, NULL, 0);
                return;
        }
        http_reply_json(req, 200, result);
}

static void on_created(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0) {
                http_reply_error(req, err);
                return;
        }
        http_reply_json(req, 201, result);
}

/* An error without a filled err gets a generic message naming the code. */
static void reply_failure(struct http_request *req, int r, struct sbx_err *err)
{
        if (err->code == 0)
                sbx_err_set(err, r, "%s", r <= -SBX_E_BASE ? "request failed" : strerror(-r));
        http_reply_error(req, err);
}

void v1_sandbox_create(struct http_request *req)
{
        struct sandbox_spec spec;
        struct sbx_err err = { 0 };
        size_t len = 0;
        json_t *body = NULL;
        int r;

        (void)http_request_body(req, &len);
        if (len > 0) {
                body = http_request_json(req);
                if (!body)
                        return; /* replied */
        }
        r = sandbox_spec_parse(body, &spec, &err);
        json_decref(body);
        if (r < 0) {
                reply_failure(req, r, &err);
                return;
        }
        r = manager_create(api_ctx(req)->manager, &spec, on_created, req, &err);
        sandbox_spec_release(&spec);
        if (r < 0)
                reply_failure(req, r, &err);
}

/* A query number: "abc" is the wrong type, "-1" or "99999999999" is out of range. */
static int parse_query_u64(const char *name, const char *v, uint64_t min, uint64_t max, uint64_t *ret,
                           struct sbx_err *err)
{
        const char *digits = v[0] == '-' ? v + 1 : v;
        uint64_t n;

        if (!digits[0] || strspn(digits, "0123456789") != strlen(digits))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s' must be an integer", name);
        if (v[0] == '-' || parse_u64(v, &n) < 0 || n < min || n > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s' must be between %llu and %llu", name,
                                    (unsigned long long)min, (unsigned long long)max);
        *ret = n;
        return 0;
}

static int parse_list_query(struct http_request *req, struct sandbox_filter *f, struct sbx_err *err)
{
        const char *v;
        uint64_t n;
        int r;

        memset(f, 0, sizeof *f);
        f->state = -1;
        f->limit = SBX_DEFAULT_LIST_LIMIT;
        v = http_request_query(req, "state");
        if (v) {
                f->state = sandbox_state_from_string(v);
                if (f->state < 0)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'state' must be one of creating, running, stopping, stopped, "
                                            "starting, failed, deleted, paused, hibernating, hibernated, "
                                            "waking");
        }
        v = http_request_query(req, "limit");
        if (v) {
                r = parse_query_u64("limit", v, 1, SBX_MAX_LIST_LIMIT, &n, err);
                if (r < 0)
                        return r;
                f->limit = (size_t)n;
        }
        v = http_request_query(req, "offset");
        if (v) {
                r = parse_query_u64("offset", v, 0, SBX_MAX_LIST_OFFSET, &n, err);
                if (r < 0)
                        return r;
                f->offset = (size_t)n;
        }
        v = http_request_query(req, "cursor");
        if (v) {
                if (!sbx_id_valid("sbx_", v))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_cursor", "'cursor' is not a valid cursor");
                f->after_id = v;
        }
        return 0;
}


struct meta_collect {
        struct sandbox_filter *f;
        struct sbx_err *err;
};

/* metadata.KEY=VALUE query arguments become metadata filters; unknown arguments are refused. */
static int collect_query(const char *key, const char *value, void *data)
{
        struct meta_collect *c = data;
        static const char *const known[] = { "state", "limit", "offset", "cursor" };

        if (strncmp(key, "metadata.", 9) == 0) {
                if (c->f->n_meta >= SBX_MAX_METADATA)
                        return sbx_err_setr(c->err, -SBX_E_INVALID, "out_of_range",
                                            "at most %d metadata filters are allowed", SBX_MAX_METADATA);
                if (key[9] == '\0' || strlen(key + 9) > SBX_MAX_METADATA_KEY || !value)
                        return sbx_err_setr(c->err, -SBX_E_INVALID, "invalid_value",
                                            "metadata filters look like 'metadata.KEY=VALUE'");
                c->f->meta_key[c->f->n_meta] = key + 9;
                c->f->meta_value[c->f->n_meta++] = value;
                return 0;
        }
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
                if (strcmp(key, known[i]) == 0)
                        return 0;
        return sbx_err_setr(c->err, -SBX_E_INVALID, "unknown_field", "unknown query parameter '%.64s'", key);
}

void v1_sandbox_list(struct http_request *req)
{
        struct sandbox_filter f;
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r;

        r = parse_list_query(req, &f, &err);
        if (r >= 0) {
                struct meta_collect c = { .f = &f, .err = &err };
                r = http_request_query_foreach(req, collect_query, &c);
        }
        if (r >= 0)
                r = manager_list(api_ctx(req)->manager, &f, &out, &err);
        if (r < 0) {
                reply_failure(req, r, &err);
                return;
        }
        http_reply_json(req, 200, out);
}

void v1_sandbox_get(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r;

        r = manager_get(api_ctx(req)->manager, http_request_param(req, 0), &out, &err);
        if (r < 0) {
                reply_failure(req, r, &err);
                return;
        }
        http_reply_json(req, 200, out);
}

/* Lifecycle verbs take no body; a body, if any, must be an empty JSON object. */
static bool check_empty_body(struct http_request *req)
{
        size_t len = 0;
        json_t *body;

        (void)http_request_body(req, &len);
        if (len == 0)
                return true;
        body = http_request_json(req);
        if (!body)
                return false;
        if (json_object_size(body) > 0) {
                const char *key = json_object_iter_key(json_object_iter(body));
                http_reply_errorf(req, -SBX_E_INVALID, "unknown_field", "unknown field '%.64s'", key);
                json_decref(body);
                return false;
        }
        json_decref(body);
        return true;
}

typedef int (*lifecycle_fn)(struct manager *m, const char *id, manager_done_fn done, void *data,
                            struct sbx_err *err);

static void lifecycle(struct http_request *req, lifecycle_fn fn)
{
        struct sbx_err err = { 0 };
        int r;

        if (!check_empty_body(req))
                return;
        r = fn(api_ctx(req)->manager, http_request_param(req, 0), on_done, req, &err);
        if (r < 0)
                reply_failure(req, r, &err);
}

void v1_sandbox_delete(struct http_request *req)
{
        lifecycle(req, manager_delete);
}

void v1_sandbox_stop(struct http_request *req)
{
        lifecycle(req, manager_stop);
}

void v1_sandbox_start(struct http_request *req)
{
        lifecycle(req, manager_start);
}

void v1_sandbox_pause(struct http_request *req)
{
        lifecycle(req, manager_pause);
}

void v1_sandbox_resume(struct http_request *req)
{
        lifecycle(req, manager_resume);
}

void v1_sandbox_hibernate(struct http_request *req)
{
        lifecycle(req, manager_hibernate);
}

void v1_sandbox_wake(struct http_request *req)
{
        lifecycle(req, manager_wake);
}

void v1_sandbox_update(struct http_request *req)
{
        struct sandbox_patch p;
        struct sbx_err err = { 0 };
        json_t *body = http_request_json(req), *out = NULL;
        int r;

        if (!body)
                return; /* replied */
        r = sandbox_patch_parse(body, &p, &err);
        json_decref(body);
        if (r >= 0) {
                r = manager_update(api_ctx(req)->manager, http_request_param(req, 0), &p, &out, &err);
                sandbox_patch_release(&p);
        }
        if (r < 0) {
                reply_failure(req, r, &err);
                return;
        }
        http_reply_json(req, 200, out);
}
