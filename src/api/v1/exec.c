// SPDX-License-Identifier: Apache-2.0
/*
 * POST /v1/sandboxes/{id}/exec. Buffered (JSON with stdout/stderr, each capped at
 * SBX_MAX_EXEC_OUTPUT bytes, the rest dropped and flagged "truncated"), or streamed as NDJSON
 * when the client sends "Accept: application/x-ndjson". Output is made valid UTF-8 (invalid
 * bytes become U+FFFD) before it enters JSON. If the client goes away, the command is killed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/util.h"

struct exec_req {
        struct http_request *req;          /* NULL once the request is gone */
        struct exec_handle *h;             /* NULL once the exec finished */
        struct http_stream *stream;        /* streamed mode */
        char *out, *err;                   /* buffered mode: raw bytes, each <= SBX_MAX_EXEC_OUTPUT */
        size_t out_len, err_len;
        bool truncated;
        char *pending;                     /* streamed mode: a line the stream could not take yet */
        size_t pending_len;
        char *last;                        /* streamed mode: the exit (or error) line, once known */
        size_t last_len;
};

static void exec_req_maybe_free(struct exec_req *x)
{
        if (x->req || x->h)
                return;
        free(x->out);
        free(x->err);
        free(x->pending);
        free(x->last);
        free(x);
}

static bool append(char **dst, size_t *dst_len, const char *buf, size_t len, bool *truncated)
{
        size_t room = SBX_MAX_EXEC_OUTPUT - *dst_len;

        if (!*dst) {
                *dst = malloc(SBX_MAX_EXEC_OUTPUT);
                if (!*dst)
                        return false;
        }
        if (len > room) {
                *truncated = true;
                len = room;
        }
        memcpy(*dst + *dst_len, buf, len);
        *dst_len += len;
        return true;
}

/* Write what waits (an output line, then the last line) as far as the stream takes it; end the
 * stream after the last line. Called again from the drain callback while something waits. */
static void stream_flush(struct exec_req *x)
{
        if (x->pending) {
                if (http_stream_write(x->stream, x->pending, x->pending_len) == -ENOBUFS)
                        return;
                free(x->pending);
                x->pending = NULL;
        }
        if (x->last) {
                if (http_stream_write(x->stream, x->last, x->last_len) == -ENOBUFS)
                        return;
                free(x->last);
                x->last = NULL;
                http_stream_end(x->stream);
                return;
        }
        if (x->h)
                exec_handle_resume(x->h);
}

static void on_stream_drain(struct http_stream *s, void *data)
{
        stream_flush(data);
}

static bool on_output(void *data, enum exec_stream stream, const char *buf, size_t len)
{
        struct exec_req *x = data;

        if (!x->req)
                return true;
        if (!x->stream) {
                if (stream == EXEC_STDOUT)
                        (void)append(&x->out, &x->out_len, buf, len, &x->truncated);
                else
                        (void)append(&x->err, &x->err_len, buf, len, &x->truncated);
                return true;
        }
        json_t *line = json_pack("{s:s,s:o}", "type", stream == EXEC_STDOUT ? "stdout" : "stderr", "data",
                                 json_string_utf8(buf, len));
        char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
        int r;

        json_decref(line);
        if (!text)
                return true;
        size_t n = strlen(text);
        text[n] = '\n'; /* replaces the NUL: the line is written with its length */
        r = http_stream_write(x->stream, text, n + 1);
        if (r == -ENOBUFS) {
                /* nothing was queued: keep the line, pause the process's output until drained */
                x->pending = text;
                x->pending_len = n + 1;
                return false;
        }
        free(text);
        return true;
}

static json_t *result_json(const struct exec_result *res, bool truncated)
{
        return json_pack("{s:i,s:f,s:b,s:b,s:b}", "exitCode", res->exit_code, "durationMs",
                         (double)res->duration_usec / 1000.0, "timedOut", res->timed_out, "truncated", truncated,
                         "oomKilled", res->oom_killed);
}

static void on_exec_done(void *data, int r, const struct sbx_err *err, const struct exec_result *res)
{
        struct exec_req *x = data;
        json_t *o;

        x->h = NULL;
        if (!x->req) {
                exec_req_maybe_free(x);
                return;
        }
        if (x->stream) {
                if (r < 0)
                        o = json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "code",
                                      err && err->reason[0] ? err->reason : "internal", "message",
                                      err ? err->msg : "exec failed");
                else {
                        o = result_json(res, false);
                        if (o)
                                json_object_set_new(o, "type", json_string("exit"));
                }
                char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
                json_decref(o);
                if (!text) {
                        http_stream_end(x->stream); /* no memory: the client sees no exit line */
                        return;
                }
                x->last_len = strlen(text) + 1;
                text[x->last_len - 1] = '\n'; /* replaces the NUL: written with its length */
                x->last = text;
                stream_flush(x); /* ends the stream once everything before it went out */
                return;
        }
        if (r < 0) {
                http_reply_error(x->req, err);
                return;
        }
        o = result_json(res, x->truncated);
        if (o) {
                json_object_set_new(o, "stdout", json_string_utf8(x->out ? x->out : "", x->out_len));
                json_object_set_new(o, "stderr", json_string_utf8(x->err ? x->err : "", x->err_len));
        }
        if (!o) {
                http_reply_errorf(x->req, -ENOMEM, NULL, "cannot build the exec result");
                return;
        }
        http_reply_json(x->req, 200, o);
}

static void on_request_closed(struct http_request *req, void *data)
{
        struct exec_req *x = data;

        x->req = NULL;
        x->stream = NULL;
        if (x->h) {
                exec_handle_cancel(x->h);
                x->h = NULL;
        }
        exec_req_maybe_free(x);
}

static bool wants_ndjson(struct http_request *req)
{
        const char *accept = http_request_header(req, "Accept");

        return accept && strstr(accept, "application/x-ndjson");
}

void v1_sandbox_exec(struct http_request *req)
{
        static const struct exec_callbacks cb = { .output = on_output, .done = on_exec_done };
        struct exec_spec spec;
        struct sbx_err err = { 0 };
        struct exec_req *x;
        json_t *body;
        int r;

        body = http_request_json(req);
        if (!body)
                return;
        r = exec_spec_parse(body, &spec, &err);
        json_decref(body);
        if (r < 0) {
                http_reply_error(req, &err);
                return;
        }
        x = calloc(1, sizeof *x);
        if (!x) {
                exec_spec_release(&spec);
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        x->req = req;
        r = manager_exec(api_ctx(req)->manager, http_request_param(req, 0), &spec, &cb, x, &x->h, &err);
        exec_spec_release(&spec);
        if (r < 0) {
                free(x);
                if (err.code == 0)
                        sbx_err_set(&err, r, "cannot run the command: %s", strerror(-r));
                http_reply_error(req, &err);
                return;
        }
        http_request_on_close(req, on_request_closed, x);
        if (wants_ndjson(req)) {
                x->stream = http_reply_stream(req, 200, "application/x-ndjson");
                if (x->stream)
                        http_stream_on_drain(x->stream, on_stream_drain, x);
        }
}
