// SPDX-License-Identifier: Apache-2.0
/*
 * Sessions (docs/processes.md): POST/GET /v1/sandboxes/{id}/sessions, GET/DELETE .../{sid}, and
 * POST .../{sid}/exec {cmd, async?, timeout?}: synchronous (200 with the command's output) or
 * async (201 with the command's process; follow it under .../processes/{commandId}).
 */
#include <errno.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/json.h"
#include "common/limits.h"
#include "core/session.h"

void v1_session_create(struct http_request *req)
{
        static const char *const known[] = { "sessionId", "cwd", "env", "user", NULL };
        json_t *body = http_request_json(req), *res = NULL;
        struct exec_spec spec = { 0 };
        struct sbx_err err = {};
        const char *sid = NULL;
        int r;

        if (!body)
                return;
        r = process_base_parse(body, known, &spec, &err);
        if (r >= 0)
                r = json_get_string(body, "sessionId", "", SBX_MAX_SESSION_ID, &sid, &err);
        if (r >= 0)
                r = manager_session_create(api_ctx(req)->manager, http_request_param(req, 0), sid, &spec, &res, &err);
        exec_spec_release(&spec);
        json_decref(body);
        if (r < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 201, res);
}

void v1_session_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        if (manager_session_list(api_ctx(req)->manager, http_request_param(req, 0), &res, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_session_get(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        if (manager_session_get(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1), &res,
                                &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_session_delete(struct http_request *req)
{
        struct sbx_err err = {};

        if (manager_session_delete(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                   &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 204, NULL);
}

/* (a client that left meanwhile keeps its request until the reply: server.h) */
static void on_ran(void *data, int r, const struct sbx_err *err, json_t *result)
{
        if (r < 0)
                http_reply_error(data, err);
        else
                http_reply_json(data, 200, result);
}

static void on_started(void *data, int r, const struct sbx_err *err, json_t *result)
{
        if (r < 0) {
                http_reply_error(data, err);
                return;
        }
        json_object_set(result, "commandId", json_object_get(result, "processId"));
        http_reply_json(data, 201, result);
}

void v1_session_exec(struct http_request *req)
{
        static const char *const known[] = { "cmd", "command", "async", "runAsync", "timeout", NULL };
        json_t *body = http_request_json(req);
        struct sbx_err err = {};
        const char *cmd = NULL;
        uint64_t timeout_s = 0;
        bool async = false;
        int r;

        if (!body)
                return;
        r = json_check_fields(body, known, "", &err);
        if (r >= 0)
                r = json_get_string(body, json_object_get(body, "command") ? "command" : "cmd", "", 128 * 1024, &cmd,
                                    &err);
        if (r == 0 || (r > 0 && !cmd[0]))
                r = sbx_err_setr(&err, -SBX_E_INVALID, r == 0 ? "missing_field" : "invalid_value",
                                 "'cmd' must be a non-empty command");
        if (r >= 0)
                r = json_get_bool(body, json_object_get(body, "runAsync") ? "runAsync" : "async", "", &async, &err);
        if (r >= 0)
                r = json_get_u64(body, "timeout", "", 0, SBX_MAX_PROCESS_TIMEOUT_S, &timeout_s, &err);
        if (r >= 0)
                r = manager_session_exec(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                         cmd, timeout_s, async, async ? on_started : on_ran, req, &err);
        json_decref(body);
        if (r < 0)
                http_reply_error(req, &err);
}
