// SPDX-License-Identifier: Apache-2.0
/*
 * /v1/templates and /v1/layers: list, inspect, build from a spec (progress over SSE), remove,
 * import an OCI / docker-save tarball (streamed upload), export as an OCI layout; layer usage and
 * garbage collection. The work is in core (core/build.c, core/templates.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/cleanup.h"
#include "common/util.h"

#define EXPORT_CHUNK (128 * 1024)

static void reply_result(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 200, result);
}

static void reply_created(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 201, result);
}

void v1_template_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *ret = NULL;

        if (manager_template_list(api_ctx(req)->manager, &ret, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, ret);
}

void v1_template_get(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *ret = NULL;

        if (manager_template_get(api_ctx(req)->manager, http_request_param(req, 0), &ret, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, ret);
}

void v1_template_build(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *body = http_request_json(req), *ret = NULL;

        if (!body)
                return;
        if (manager_template_build(api_ctx(req)->manager, body, &ret, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 202, ret);
        json_decref(body);
}

void v1_template_build_status(struct http_request *req)
{
        json_t *st = manager_template_build_status(api_ctx(req)->manager, http_request_param(req, 0));

        if (!st) {
                http_reply_errorf(req, -SBX_E_NOT_FOUND, "not_found", "no build of template '%.64s' is known",
                                  http_request_param(req, 0));
                return;
        }
        http_reply_json(req, 200, st);
}

/* ---------- SSE: build events ---------- */

struct sse_follow {
        struct http_stream *stream;
        struct build_watch *watch;
        bool ended;
};

static void sse_closed(struct http_request *req, void *data)
{
        struct sse_follow *f = data;

        build_watch_cancel(f->watch);
        free(f);
}

static void sse_event(void *data, const char *type, json_t *event, uint64_t seq)
{
        struct sse_follow *f = data;
        _cleanup_free_ char *text = NULL;
        char id[24];

        if (f->ended)
                return;
        if (!type) {
                f->ended = true;
                f->watch = NULL; /* the build dropped it */
                http_stream_end(f->stream);
                return;
        }
        text = json_dumps(event, JSON_COMPACT | JSON_ENCODE_ANY);
        snprintf(id, sizeof id, "%llu", (unsigned long long)seq);
        if (!text || http_sse_send(f->stream, type, id, text) < 0) {
                /* a slow client: end the stream; it reconnects with Last-Event-ID and replays */
                f->ended = true;
                build_watch_cancel(f->watch);
                f->watch = NULL;
                http_stream_end(f->stream);
        }
}

void v1_template_build_events(struct http_request *req)
{
        const char *last = http_request_header(req, "Last-Event-ID");
        const char *name = http_request_param(req, 0);
        struct sse_follow *f;
        struct sbx_err err = {};
        json_t *st;
        uint64_t after = 0;

        if (last && parse_u64(last, &after) < 0) {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_value", "'Last-Event-ID' must be an event id");
                return;
        }
        st = manager_template_build_status(api_ctx(req)->manager, name);
        if (!st) {
                http_reply_errorf(req, -SBX_E_NOT_FOUND, "not_found", "no build of template '%.64s' is known", name);
                return;
        }
        json_decref(st);
        f = calloc(1, sizeof *f);
        if (!f) {
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        f->stream = http_reply_sse(req);
        if (!f->stream) {
                free(f);
                return;
        }
        http_request_on_close(req, sse_closed, f);
        if (manager_template_watch(api_ctx(req)->manager, name, after, sse_event, f, &f->watch, &err) < 0 && !f->ended) {
                f->ended = true;
                (void)http_sse_send(f->stream, "error", NULL, err.msg);
                http_stream_end(f->stream);
        }
}

/* ---------- remove, layers, gc ---------- */

void v1_template_delete(struct http_request *req)
{
        struct sbx_err err = {};

        if (manager_template_remove(api_ctx(req)->manager, http_request_param(req, 0), reply_result, req, &err) < 0)
                http_reply_error(req, &err);
}

void v1_layer_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *ret = NULL;

        if (manager_layers(api_ctx(req)->manager, &ret, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, ret);
}

void v1_layer_gc(struct http_request *req)
{
        struct sbx_err err = {};

        if (manager_layer_gc(api_ctx(req)->manager, reply_result, req, &err) < 0)
                http_reply_error(req, &err);
}

/* ---------- import / export ---------- */

void v1_template_import(struct http_request *req)
{
        struct sbx_err err = {};
        int fd = http_request_upload_fd(req);

        if (fd < 0 || http_request_upload_size(req) == 0) {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_value",
                                  "the body must be an OCI image layout or docker save tarball");
                return;
        }
        if (manager_template_import(api_ctx(req)->manager, fd, http_request_query(req, "name"), reply_created, req,
                                    &err) < 0)
                http_reply_error(req, &err);
}

struct export_job {
        struct http_request *req;
        struct http_stream *stream;
        int fd;
        bool writing; /* the export file is being written on the thread pool */
        bool gone;    /* the client left while it was */
        char buf[EXPORT_CHUNK];
};

static void export_free(struct export_job *j)
{
        safe_close(j->fd);
        free(j);
}

static void export_closed(struct http_request *req, void *data)
{
        struct export_job *j = data;

        if (j->writing) {
                j->gone = true; /* export_written frees it */
                return;
        }
        export_free(j);
}

/* Send the file in chunks; pause on back-pressure until the drain callback. */
static void export_pump(struct http_stream *s, void *data)
{
        struct export_job *j = data;

        for (;;) {
                ssize_t n = read(j->fd, j->buf, sizeof j->buf);
                int r;

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        http_stream_end(s);
                        return;
                }
                r = http_stream_write(s, j->buf, (size_t)n);
                if (r == -ENOBUFS) {
                        (void)lseek(j->fd, -n, SEEK_CUR);
                        return; /* the drain callback resumes */
                }
                if (r < 0) {
                        http_stream_end(s);
                        return;
                }
        }
}

static void export_written(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct export_job *j = data;
        json_decref(result);
        j->writing = false;
        if (j->gone) {
                export_free(j);
                return;
        }
        if (r < 0) {
                http_reply_error(j->req, err);
                return; /* export_closed frees j */
        }
        j->stream = http_reply_stream(j->req, 200, "application/x-tar");
        if (!j->stream)
                return;
        http_stream_on_drain(j->stream, export_pump, j);
        export_pump(j->stream, j);
}

void v1_template_export(struct http_request *req)
{
        struct api_context *ctx = api_ctx(req);
        struct sbx_err err = {};
        struct export_job *j = calloc(1, sizeof *j);

        if (!j) {
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        j->req = req;
        j->fd = open(ctx->upload_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (j->fd < 0) {
                free(j);
                http_reply_errorf(req, -errno, NULL, "cannot create the export file in '%s'", ctx->upload_dir);
                return;
        }
        http_request_on_close(req, export_closed, j);
        j->writing = true;
        if (manager_template_export(ctx->manager, http_request_param(req, 0), j->fd, export_written, j, &err) < 0) {
                j->writing = false;
                http_reply_error(req, &err); /* export_closed frees j */
        }
}
