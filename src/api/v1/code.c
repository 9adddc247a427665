// SPDX-License-Identifier: Apache-2.0
/*
 * Code runs and contexts (docs/processes.md): POST /v1/sandboxes/{id}/code runs a snippet (python,
 * node or bash; guessed when not named) and answers with its output; with a contextId, in that
 * context's persistent interpreter. POST/GET .../contexts, GET/DELETE .../contexts/{cid}.
 */
#include <errno.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/json.h"
#include "common/limits.h"
#include "core/code.h"

/* The answers (a client that left meanwhile keeps its request until the reply: server.h). */
static void reply(struct http_request *req, unsigned status, int r, const struct sbx_err *err, json_t *result)
{
        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, status, result);
}

static void on_ran(void *data, int r, const struct sbx_err *err, json_t *result)
{
        reply(data, 200, r, err, result);
}

static void on_created(void *data, int r, const struct sbx_err *err, json_t *result)
{
        reply(data, 201, r, err, result);
}

void v1_code_run(struct http_request *req)
{
        static const char *const known[] = { "code", "language", "timeout", "contextId", NULL };
        json_t *body = http_request_json(req), *code;
        struct code_request rq = { 0 };
        struct sbx_err err = {};
        int r;

        if (!body)
                return;
        r = json_check_fields(body, known, "", &err);
        code = json_object_get(body, "code");
        if (r >= 0 && !code)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "missing_field", "'code' is required");
        else if (r >= 0 && !json_is_string(code))
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'code' must be a string");
        if (r >= 0)
                r = json_get_string(body, "language", "", 32, &rq.language, &err);
        if (r >= 0)
                r = json_get_u64(body, "timeout", "", 1, SBX_MAX_EXEC_TIMEOUT_S, &rq.timeout_s, &err);
        if (r >= 0)
                r = json_get_string(body, "contextId", "", 64, &rq.context_id, &err);
        if (r < 0) {
                json_decref(body);
                http_reply_error(req, &err);
                return;
        }
        rq.code = json_string_value(code);
        rq.len = json_string_length(code);
        r = manager_code_run(api_ctx(req)->manager, http_request_param(req, 0), &rq, on_ran, req, &err);
        json_decref(body);
        if (r < 0)
                http_reply_error(req, &err);
}

void v1_context_create(struct http_request *req)
{
        static const char *const known[] = { "language", "cwd", "env", "user", NULL };
        json_t *body = http_request_json(req);
        struct exec_spec base = { 0 };
        struct sbx_err err = {};
        const char *language = NULL;
        int r;

        if (!body)
                return;
        r = process_base_parse(body, known, &base, &err);
        if (r >= 0)
                r = json_get_string(body, "language", "", 32, &language, &err);
        if (r < 0) {
                exec_spec_release(&base);
                json_decref(body);
                http_reply_error(req, &err);
                return;
        }
        r = manager_context_create(api_ctx(req)->manager, http_request_param(req, 0), language, &base, on_created,
                                   req, &err);
        json_decref(body);
        if (r < 0) {
                exec_spec_release(&base);
                http_reply_error(req, &err);
        }
}

void v1_context_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        if (manager_context_list(api_ctx(req)->manager, http_request_param(req, 0), &res, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_context_get(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        if (manager_context_get(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1), &res,
                                &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_context_delete(struct http_request *req)
{
        struct sbx_err err = {};

        if (manager_context_delete(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                   &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 204, NULL);
}
