// SPDX-License-Identifier: Apache-2.0
/*
 * Snapshots, checkpoints, fork and patches (docs/lifecycle.md): POST .../snapshots, /v1/snapshots
 * (list, get, delete, lineage, tags, patches), POST .../fork, .../checkpoints (create, list, get,
 * delete, restore). Translation only: parse, call the manager, shape the reply.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/json.h"
#include "common/limits.h"

static void reply_err(struct http_request *req, int r, struct sbx_err *err)
{
        if (err->code == 0)
                (void)sbx_err_set(err, r, "%s", r <= -SBX_E_BASE ? "request failed" : strerror(-r));
        http_reply_error(req, err);
}

static void on_created(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 201, result);
}

static void on_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 200, result);
}

/* The body as an object (an empty body is {}); NULL: replied. */
static json_t *body_object(struct http_request *req)
{
        return http_request_json(req);
}

static void reply_result(struct http_request *req, int r, struct sbx_err *err, unsigned status, json_t *out)
{
        if (r < 0)
                reply_err(req, r, err);
        else if (!out)
                http_reply_data(req, 204, NULL, NULL, 0);
        else
                http_reply_json(req, status, out);
}

/* {name?, tag?, tags?, description?} (checkpoints: name required, no tags) */
static void take(struct http_request *req, const char *kind)
{
        static const char *const snap_fields[] = { "name", "tag", "tags", "description", NULL };
        static const char *const ckpt_fields[] = { "name", "description", NULL };
        bool ckpt = !strcmp(kind, "checkpoint");
        struct snapshot_opts o = { .kind = kind };
        struct sbx_err err = { 0 };
        json_t *body = body_object(req), *tags = NULL;
        const char *tag = NULL;
        int r;

        if (!body)
                return;
        r = json_check_fields(body, ckpt ? ckpt_fields : snap_fields, "", &err);
        if (r >= 0)
                r = json_get_string(body, "name", "", SBX_MAX_TAG, &o.name, &err);
        if (r >= 0 && ckpt && !o.name)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "missing_field", "'name' is required");
        if (r >= 0)
                r = json_get_string(body, "description", "", SBX_MAX_DESCRIPTION, &o.description, &err);
        if (r >= 0)
                r = json_get_string(body, "tag", "", SBX_MAX_TAG, &tag, &err);
        if (r >= 0) {
                json_t *t = json_object_get(body, "tags");

                if (t && !json_is_null(t) && !json_is_array(t))
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'tags' must be an array of strings");
                else {
                        tags = json_is_array(t) ? json_deep_copy(t) : json_array();
                        if (tags && tag)
                                (void)json_array_append_new(tags, json_string(tag));
                        if (!tags)
                                r = -ENOMEM;
                }
        }
        if (r >= 0) {
                o.tags = tags;
                r = manager_snapshot_create(api_ctx(req)->manager, http_request_param(req, 0), &o, on_created, req,
                                            &err);
        }
        json_decref(tags);
        json_decref(body);
        if (r < 0)
                reply_err(req, r, &err);
}

void v1_snapshot_create(struct http_request *req)
{
        take(req, "snapshot");
}

void v1_checkpoint_create(struct http_request *req)
{
        take(req, "checkpoint");
}

void v1_snapshot_list(struct http_request *req)
{
        struct snapshot_filter f = {
                .sandbox_id = http_request_query(req, "sandbox"),
                .kind = http_request_query(req, "kind"),
                .tag = http_request_query(req, "tag"),
        };
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r = 0;

        if (f.kind && strcmp(f.kind, "snapshot") && strcmp(f.kind, "checkpoint") && strcmp(f.kind, "fork"))
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value", "'kind' must be snapshot, checkpoint or fork");
        if (r >= 0)
                r = manager_snapshot_list(api_ctx(req)->manager, &f, &out, &err);
        reply_result(req, r, &err, 200, out);
}

void v1_snapshot_get(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r = manager_snapshot_get(api_ctx(req)->manager, http_request_param(req, 0), &out, &err);

        reply_result(req, r, &err, 200, out);
}

void v1_snapshot_delete(struct http_request *req)
{
        struct sbx_err err = { 0 };
        int r = manager_snapshot_delete(api_ctx(req)->manager, http_request_param(req, 0), &err);

        reply_result(req, r, &err, 204, NULL);
}

void v1_snapshot_lineage(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r = manager_snapshot_lineage(api_ctx(req)->manager, http_request_param(req, 0), &out, &err);

        reply_result(req, r, &err, 200, out);
}

void v1_snapshot_tag(struct http_request *req)
{
        static const char *const fields[] = { "tag", NULL };
        struct sbx_err err = { 0 };
        json_t *body = body_object(req), *out = NULL;
        const char *tag = NULL;
        int r;

        if (!body)
                return;
        r = json_check_fields(body, fields, "", &err);
        if (r >= 0)
                r = json_get_string(body, "tag", "", SBX_MAX_TAG, &tag, &err);
        if (r >= 0 && !tag)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "missing_field", "'tag' is required");
        if (r >= 0)
                r = manager_snapshot_tag(api_ctx(req)->manager, http_request_param(req, 0), tag, true, &out, &err);
        json_decref(body);
        reply_result(req, r, &err, 200, out);
}

void v1_snapshot_untag(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r = manager_snapshot_tag(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                     false, &out, &err);

        reply_result(req, r, &err, 200, out);
}

void v1_patch_create(struct http_request *req)
{
        static const char *const fields[] = { "script", "name", NULL };
        struct sbx_err err = { 0 };
        json_t *body = body_object(req), *out = NULL;
        const char *script = NULL, *name = NULL;
        int r;

        if (!body)
                return;
        r = json_check_fields(body, fields, "", &err);
        if (r >= 0)
                r = json_get_string(body, "script", "", SBX_MAX_PATCH_BYTES, &script, &err);
        if (r >= 0 && !script)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "missing_field", "'script' is required");
        if (r >= 0)
                r = json_get_string(body, "name", "", SBX_MAX_TAG, &name, &err);
        if (r >= 0)
                r = manager_snapshot_patch_add(api_ctx(req)->manager, http_request_param(req, 0), name, script, &out,
                                               &err);
        json_decref(body);
        reply_result(req, r, &err, 201, out);
}

void v1_patch_list(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        int r = manager_snapshot_patch_list(api_ctx(req)->manager, http_request_param(req, 0), &out, &err);

        reply_result(req, r, &err, 200, out);
}

void v1_patch_delete(struct http_request *req)
{
        struct sbx_err err = { 0 };
        int r = manager_snapshot_patch_delete(api_ctx(req)->manager, http_request_param(req, 0),
                                              http_request_param(req, 1), &err);

        reply_result(req, r, &err, 204, NULL);
}

void v1_sandbox_fork(struct http_request *req)
{
        static const char *const fields[] = { "count", "name", "memory", NULL };
        struct sbx_err err = { 0 };
        json_t *body = body_object(req);
        const char *name = NULL;
        uint64_t count = 1;
        bool memory = false;
        int r;

        if (!body)
                return;
        r = json_check_fields(body, fields, "", &err);
        if (r >= 0)
                r = json_get_u64(body, "count", "", 1, SBX_MAX_FORK, &count, &err);
        if (r >= 0)
                r = json_get_string(body, "name", "", SBX_MAX_NAME, &name, &err);
        if (r >= 0)
                r = json_get_bool(body, "memory", "", &memory, &err);
        if (r >= 0)
                r = manager_fork(api_ctx(req)->manager, http_request_param(req, 0), (unsigned)count, name, memory,
                                 on_created, req, &err);
        json_decref(body);
        if (r < 0)
                reply_err(req, r, &err);
}

/* ---------- checkpoints ---------- */

static bool sandbox_exists(struct http_request *req)
{
        if (manager_sandbox_known(api_ctx(req)->manager, http_request_param(req, 0)))
                return true;
        http_reply_errorf(req, -SBX_E_NOT_FOUND, "sandbox_not_found", "sandbox '%.64s' not found",
                          http_request_param(req, 0));
        return false;
}

void v1_checkpoint_list(struct http_request *req)
{
        struct snapshot_filter f = { .sandbox_id = http_request_param(req, 0), .kind = "checkpoint" };
        struct sbx_err err = { 0 };
        json_t *out = NULL, *arr;
        int r;

        if (!sandbox_exists(req))
                return;
        r = manager_snapshot_list(api_ctx(req)->manager, &f, &out, &err);
        if (r >= 0) {
                /* {checkpoints: [...]} reads better here */
                arr = json_incref(json_object_get(out, "snapshots"));
                json_decref(out);
                out = json_pack("{s:o}", "checkpoints", arr ? arr : json_array());
        }
        reply_result(req, r, &err, 200, out);
}

/* The snapshot id of checkpoint {name} of sandbox {id}; false: replied. */
static bool checkpoint_id(struct http_request *req, char *buf, size_t size)
{
        struct sbx_err err = { 0 };

        if (manager_checkpoint_id(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1), buf,
                                  size, &err) < 0) {
                http_reply_error(req, &err);
                return false;
        }
        return true;
}

void v1_checkpoint_get(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        char sid[SBX_ID_MAX];
        int r;

        if (!checkpoint_id(req, sid, sizeof sid))
                return;
        r = manager_snapshot_get(api_ctx(req)->manager, sid, &out, &err);
        reply_result(req, r, &err, 200, out);
}

void v1_checkpoint_delete(struct http_request *req)
{
        struct sbx_err err = { 0 };
        char sid[SBX_ID_MAX];
        int r;

        if (!checkpoint_id(req, sid, sizeof sid))
                return;
        r = manager_snapshot_delete(api_ctx(req)->manager, sid, &err);
        reply_result(req, r, &err, 204, NULL);
}

void v1_checkpoint_restore(struct http_request *req)
{
        struct sbx_err err = { 0 };
        json_t *body = body_object(req);
        int r;

        if (!body)
                return;
        if (json_object_size(body) > 0) {
                json_decref(body);
                http_reply_errorf(req, -SBX_E_INVALID, "unknown_field", "restore takes no fields");
                return;
        }
        json_decref(body);
        r = manager_checkpoint_restore(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                       on_done, req, &err);
        if (r < 0)
                reply_err(req, r, &err);
}
