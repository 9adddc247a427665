// SPDX-License-Identifier: Apache-2.0
/*
 * Watchers (docs/files.md): POST/GET /v1/sandboxes/{id}/watchers, GET/DELETE .../{wid}, and the
 * events of one, GET .../{wid}/events, as Server-Sent Events (event: add|change|unlink|addDir|
 * unlinkDir|end, id: seq, data: JSON; Last-Event-ID resumes from the kept events) or, with
 * "Upgrade: websocket", as WebSocket text frames of the same JSON (ws.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/v1/files-common.h"
#include "api/ws.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/util.h"
#include "files/files.h"

#define WATCH_KEEPALIVE_MS 15000

void v1_watcher_create(struct http_request *req)
{
        static const char *const known[] = { "path", "recursive", "ignore", "content", NULL };
        json_t *body = http_request_json(req), *ign, *g, *res = NULL;
        const char *ignore[SBX_MAX_WATCH_IGNORE];
        struct files_watch_opts o = { .ignore = ignore };
        struct sbx_err err = {};
        const char *path, *content;
        size_t i;
        int r;

        if (!body)
                return;
        r = files_json_only(body, known, &err);
        if (r >= 0)
                r = files_json_path(body, "path", false, &path, &err);
        if (r >= 0)
                r = files_json_bool(body, "recursive", true, &o.recursive, &err);
        ign = json_object_get(body, "ignore");
        if (r >= 0 && ign && !json_is_null(ign)) {
                if (!json_is_array(ign))
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'ignore' must be an array of globs");
                else if (json_array_size(ign) > SBX_MAX_WATCH_IGNORE)
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "out_of_range", "'ignore' has more than %d globs",
                                         SBX_MAX_WATCH_IGNORE);
                json_array_foreach (ign, i, g) {
                        if (r < 0)
                                break;
                        if (!json_is_string(g) || json_string_length(g) == 0 || json_string_length(g) > SBX_MAX_PATTERN ||
                            strlen(json_string_value(g)) != json_string_length(g))
                                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value",
                                                 "'ignore[%zu]' must be a non-empty glob string", i);
                        else
                                ignore[o.n_ignore++] = json_string_value(g);
                }
        }
        content = json_string_value(json_object_get(body, "content"));
        if (r >= 0 && json_object_get(body, "content") && !json_is_null(json_object_get(body, "content"))) {
                if (content && strcmp(content, "text") == 0)
                        o.content = FILES_CONTENT_TEXT;
                else if (content && strcmp(content, "base64") == 0)
                        o.content = FILES_CONTENT_BASE64;
                else if (content && strcmp(content, "none") == 0)
                        o.content = FILES_CONTENT_NONE;
                else
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value",
                                         "'content' must be none, text or base64");
        }
        o.max_content = SBX_MAX_WATCH_CONTENT;
        if (r >= 0)
                r = manager_watcher_create(api_ctx(req)->manager, http_request_param(req, 0), path, &o, &res, &err);
        json_decref(body);
        if (r < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 201, res);
}

void v1_watcher_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        if (manager_watcher_list(api_ctx(req)->manager, http_request_param(req, 0), &res, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_watcher_get(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        if (manager_watcher_get(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1), &res,
                                &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_watcher_delete(struct http_request *req)
{
        struct sbx_err err = {};

        if (manager_watcher_delete(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                   &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 204, NULL);
}

/* ---------- events ---------- */

struct watch_stream {
        struct http_request *req;
        struct http_stream *stream;   /* SSE */
        struct ws_conn *ws;           /* or WebSocket */
        struct watcher_sub *sub;      /* NULL once the watcher ended */
        uv_timer_t keepalive;
        bool ended;
};

static void ws_timer_closed(uv_handle_t *h)
{
        free(h->data);
}

static void watch_stream_free(struct watch_stream *s)
{
        watcher_sub_cancel(s->sub);
        s->sub = NULL;
        s->keepalive.data = s;
        uv_close((uv_handle_t *)&s->keepalive, ws_timer_closed);
}

static void on_watch_event(void *data, const char *type, json_t *event, uint64_t seq)
{
        struct watch_stream *s = data;
        char id[24], *text;

        if (strcmp(type, "end") == 0)
                s->sub = NULL; /* the watcher frees it */
        if (s->ended)
                return;
        text = json_dump_compact(event);
        snprintf(id, sizeof id, "%llu", (unsigned long long)seq);
        if (text && s->ws)
                (void)ws_send_text(s->ws, text, strlen(text));
        else if (text && s->stream && http_sse_send(s->stream, type, id, text) == -ENOBUFS)
                /* a client this far behind loses events; the ids show the gap */
                (void)0;
        free(text);
        if (strcmp(type, "end") == 0) {
                s->ended = true;
                if (s->ws)
                        ws_close(s->ws, 1000, "watcher ended");
                else if (s->stream) {
                        http_request_on_close(s->req, NULL, NULL);
                        http_stream_end(s->stream);
                        s->stream = NULL;
                        watch_stream_free(s);
                }
        }
}

static void on_keepalive(uv_timer_t *t)
{
        struct watch_stream *s = t->data;

        if (s->stream)
                (void)http_sse_comment(s->stream, "keep-alive");
        else if (s->ws)
                (void)ws_ping(s->ws);
}

static void sse_closed(struct http_request *req, void *data)
{
        watch_stream_free(data);
}

static void ws_closed(struct ws_conn *c, void *data)
{
        struct watch_stream *s = data;

        s->ws = NULL;
        watch_stream_free(s);
}

void v1_watcher_events(struct http_request *req)
{
        struct api_context *ctx = api_ctx(req);
        const char *last = http_request_header(req, "Last-Event-ID"), *up = http_request_header(req, "Upgrade");
        struct watch_stream *s;
        struct sbx_err err = {};
        json_t *probe = NULL;
        uint64_t after = 0;

        /* check first: a bad id is a plain 404, not an event stream that ends at once */
        if (manager_watcher_get(ctx->manager, http_request_param(req, 0), http_request_param(req, 1), &probe, &err) <
            0) {
                http_reply_error(req, &err);
                return;
        }
        json_decref(probe);
        if (last && parse_u64(last, &after) < 0)
                after = 0;
        s = calloc(1, sizeof *s);
        if (!s || uv_timer_init(manager_loop(ctx->manager), &s->keepalive) < 0) {
                free(s);
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        s->req = req;
        s->keepalive.data = s;
        if (up && strcasecmp(up, "websocket") == 0) {
                if (ws_accept(req, ws_closed, s, &s->ws, &err) < 0) {
                        http_reply_error(req, &err);
                        s->keepalive.data = s;
                        uv_close((uv_handle_t *)&s->keepalive, ws_timer_closed);
                        return;
                }
        } else {
                s->stream = http_reply_sse(req);
                if (!s->stream) {
                        uv_close((uv_handle_t *)&s->keepalive, ws_timer_closed);
                        return;
                }
                http_request_on_close(req, sse_closed, s);
        }
        (void)uv_timer_start(&s->keepalive, on_keepalive, WATCH_KEEPALIVE_MS, WATCH_KEEPALIVE_MS);
        if (manager_watcher_subscribe(ctx->manager, http_request_param(req, 0), http_request_param(req, 1), after,
                                      on_watch_event, s, &s->sub, &err) < 0 &&
            !s->ended) {
                json_t *ev = json_pack("{s:s,s:s}", "type", "end", "reason", err.msg);
                on_watch_event(s, "end", ev, after + 1);
                json_decref(ev);
        }
}
