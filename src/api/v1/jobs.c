// SPDX-License-Identifier: Apache-2.0
/*
 * Jobs (docs/processes.md): detached commands, a view of processes of kind "job". POST/GET
 * /v1/sandboxes/{id}/jobs, GET .../jobs/{jid}, POST .../jobs/{jid}/stop. A job keeps running when
 * every client is gone (maxRunAfterDisconnect bounds that); its status is pending | running |
 * completed (exit 0) | failed (non-zero exit, killed, timeout) | cancelled (stopped through the
 * API). Its output is the process's: .../processes/{jid}/stdout, attach, and so on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/json.h"
#include "common/limits.h"
#include "core/process.h"

#define JOB_STOP_GRACE_MS 5000

static const char *job_status(const json_t *pj, bool cancelled)
{
        const char *st = json_string_value(json_object_get(pj, "status"));

        if (!st || strcmp(st, "starting") == 0)
                return "pending";
        if (strcmp(st, "running") == 0)
                return "running";
        if (cancelled)
                return "cancelled";
        if (strcmp(st, "exited") == 0 && json_integer_value(json_object_get(pj, "exitCode")) == 0)
                return "completed";
        return "failed";
}

/* The job's JSON from its process's: jobId and the job status first, the process's fields after. */
static json_t *job_json(const char *sandbox, json_t *pj, bool cancelled)
{
        const char *pid = json_string_value(json_object_get(pj, "processId"));
        char url[160];

        if (!pj)
                return NULL;
        json_object_set_new(pj, "jobId", json_string(pid));
        json_object_set(pj, "processStatus", json_object_get(pj, "status"));
        json_object_set_new(pj, "status", json_string(job_status(pj, cancelled)));
        snprintf(url, sizeof url, "/v1/sandboxes/%s/processes/%s/stdout", sandbox, pid);
        json_object_set_new(pj, "stdoutUrl", json_string(url));
        snprintf(url, sizeof url, "/v1/sandboxes/%s/processes/%s/stderr", sandbox, pid);
        json_object_set_new(pj, "stderrUrl", json_string(url));
        return pj;
}

static struct process *find_job(struct http_request *req, struct sbx_err *err)
{
        struct process *p = manager_process_find(api_ctx(req)->manager, http_request_param(req, 0),
                                                 http_request_param(req, 1), err);

        if (p && strcmp(process_kind(p), "job") != 0) {
                sbx_err_setr(err, -SBX_E_NOT_FOUND, "job_not_found", "'%.64s' is a process, not a job",
                             http_request_param(req, 1));
                process_unref(p);
                return NULL;
        }
        if (!p && err->code == -SBX_E_NOT_FOUND && strcmp(err->reason, "process_not_found") == 0) {
                sbx_err_clear(err);
                sbx_err_setr(err, -SBX_E_NOT_FOUND, "job_not_found", "job '%.64s' not found",
                             http_request_param(req, 1));
        }
        return p;
}

/* (a client that left meanwhile keeps its request until this reply: server.h) */
static void on_job_started(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 201, job_json(http_request_param(req, 0), result, false));
}

void v1_job_create(struct http_request *req)
{
        json_t *body = http_request_json(req);
        struct exec_spec spec = { 0 };
        struct sbx_err err = {};
        int r = 0;

        if (!body)
                return;
        if (json_object_get(body, "pty") || json_object_get(body, "keepAfterDisconnect"))
                r = sbx_err_setr(&err, -SBX_E_INVALID, "unknown_field",
                                 "'%s' is not a field of a job (start a process for that)",
                                 json_object_get(body, "pty") ? "pty" : "keepAfterDisconnect");
        if (r >= 0)
                r = process_spec_parse(body, &spec, &err);
        json_decref(body);
        if (r < 0) {
                http_reply_error(req, &err);
                return;
        }
        spec.keep_after_disconnect = true;
        r = manager_process_start(api_ctx(req)->manager, http_request_param(req, 0), &spec, "job", on_job_started,
                                  req, &err);
        if (r < 0) {
                exec_spec_release(&spec);
                http_reply_error(req, &err);
        }
}

void v1_job_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL, *jobs, *pj, *out;
        const char *sandbox = http_request_param(req, 0);
        size_t i;

        if (manager_process_list(api_ctx(req)->manager, sandbox, "job", &res, &err) < 0) {
                http_reply_error(req, &err);
                return;
        }
        jobs = json_array();
        json_array_foreach (json_object_get(res, "processes"), i, pj) {
                struct process *p = manager_process_find(api_ctx(req)->manager, sandbox,
                                                         json_string_value(json_object_get(pj, "processId")), &err);
                json_array_append_new(jobs, job_json(sandbox, json_incref(pj), p && process_cancelled(p)));
                process_unref(p);
        }
        json_decref(res);
        out = json_pack("{s:o}", "jobs", jobs);
        http_reply_json(req, 200, out);
}

void v1_job_get(struct http_request *req)
{
        struct sbx_err err = {};
        struct process *p = find_job(req, &err);

        if (!p) {
                http_reply_error(req, &err);
                return;
        }
        http_reply_json(req, 200, job_json(http_request_param(req, 0), process_to_json(p), process_cancelled(p)));
        process_unref(p);
}

void v1_job_stop(struct http_request *req)
{
        struct sbx_err err = {};
        struct process *p = find_job(req, &err);

        if (!p || process_stop(p, JOB_STOP_GRACE_MS, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, job_json(http_request_param(req, 0), process_to_json(p), true));
        process_unref(p);
}
