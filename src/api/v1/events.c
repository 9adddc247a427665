// SPDX-License-Identifier: Apache-2.0
/*
 * Lifecycle events: GET /v1/sandboxes/{id}/events (a page of the log) and GET /v1/events (SSE,
 * resumable by event id). The stream never buffers events itself: it replays from the store
 * after the last id it sent, page by page as the client drains, then follows the live feed; when
 * the client falls behind (the stream's buffer is full) it goes back to reading the store, so a
 * slow client misses nothing the store still keeps.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "common/util.h"

#define EVENTS_PAGE 256
#define EVENTS_KEEPALIVE_MS 15000

static int parse_limit(struct http_request *req, size_t *ret, struct sbx_err *err)
{
        const char *v = http_request_query(req, "limit");
        uint64_t n;

        *ret = SBX_DEFAULT_LIST_LIMIT;
        if (!v)
                return 0;
        if (!v[0] || strspn(v, "0123456789") != strlen(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'limit' must be an integer");
        if (parse_u64(v, &n) < 0 || n < 1 || n > SBX_MAX_LIST_LIMIT)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'limit' must be between 1 and %d",
                                    SBX_MAX_LIST_LIMIT);
        *ret = (size_t)n;
        return 0;
}

void v1_sandbox_events(struct http_request *req)
{
        struct manager *m = api_ctx(req)->manager;
        const char *id = http_request_param(req, 0), *dir = http_request_query(req, "direction"),
                   *cursor = http_request_query(req, "cursor");
        struct event_query q = { .sandbox_id = id };
        struct sbx_err err = { 0 };
        json_t *out = NULL;
        uint64_t c = 0;
        int r;

        if (!manager_sandbox_known(m, id)) {
                http_reply_errorf(req, -SBX_E_NOT_FOUND, "sandbox_not_found", "sandbox '%.64s' not found", id);
                return;
        }
        r = parse_limit(req, &q.limit, &err);
        if (r >= 0 && dir && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value", "'direction' must be asc or desc");
        if (r >= 0 && cursor && !event_id_parse(cursor, &c))
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_cursor", "'cursor' is not an event id");
        if (r >= 0) {
                q.desc = dir && strcmp(dir, "desc") == 0;
                if (q.desc)
                        q.before = c;
                else
                        q.after = c;
                r = manager_events_list(m, &q, &out, &err);
        }
        if (r < 0) {
                if (err.code == 0)
                        (void)sbx_err_set(&err, r, "cannot list events");
                http_reply_error(req, &err);
                return;
        }
        http_reply_json(req, 200, out);
}

/* ---------- the SSE feed ---------- */

struct feed {
        struct http_request *req;
        struct http_stream *stream;
        struct event_sub *sub;
        uv_timer_t keepalive;
        char sandbox_id[SBX_ID_MAX];     /* "" = all */
        uint64_t last;                   /* id of the last event sent */
        bool catching_up;                /* reading the store; live events are skipped meanwhile */
        bool gone;
};

static void feed_timer_closed(uv_handle_t *h)
{
        free(h->data);
}

static void feed_free(struct feed *f)
{
        event_sub_cancel(f->sub);
        f->sub = NULL;
        f->gone = true;
        uv_timer_stop(&f->keepalive);
        uv_close((uv_handle_t *)&f->keepalive, feed_timer_closed);
}

/* Send one event. false: the client's buffer is full (it was not queued) or the client is gone. */
static bool feed_send(struct feed *f, json_t *ev, uint64_t id)
{
        const char *type = json_string_value(json_object_get(ev, "type"));
        char *text = json_dumps(ev, JSON_COMPACT);
        char sid[32];
        int r;

        if (!text)
                return false;
        snprintf(sid, sizeof sid, "evt_%llu", (unsigned long long)id);
        r = http_sse_send(f->stream, type, sid, text);
        free(text);
        if (r < 0)
                return false;
        f->last = id;
        return true;
}

/* Replay from the store after f->last until caught up or the client's buffer is full. */
static void feed_pump(struct feed *f)
{
        struct manager *m = api_ctx(f->req)->manager;

        while (!f->gone && f->catching_up) {
                struct event_query q = { .sandbox_id = f->sandbox_id[0] ? f->sandbox_id : NULL,
                                         .after = f->last,
                                         .limit = EVENTS_PAGE };
                json_t *page = NULL, *arr, *ev;
                struct sbx_err err = { 0 };
                bool full = false;
                size_t i;

                if (manager_events_list(m, &q, &page, &err) < 0)
                        return; /* the store failed: try again at the next drain or event */
                arr = json_object_get(page, "events");
                json_array_foreach (arr, i, ev) {
                        uint64_t id = 0;

                        if (!event_id_parse(json_string_value(json_object_get(ev, "id")), &id))
                                continue;
                        if (!feed_send(f, ev, id)) {
                                full = true;
                                break;
                        }
                }
                if (!full && json_is_null(json_object_get(page, "nextCursor")))
                        f->catching_up = false; /* everything stored is out: live from here */
                json_decref(page);
                if (full)
                        return; /* on_drain resumes */
        }
}

static void on_drain(struct http_stream *s, void *data)
{
        feed_pump(data);
}

static void on_live(void *data, json_t *ev, uint64_t id)
{
        struct feed *f = data;

        if (f->gone || f->catching_up || id <= f->last)
                return;
        if (!feed_send(f, ev, id))
                f->catching_up = true; /* behind: the store has it, read it from there on drain */
}

static void on_keepalive(uv_timer_t *t)
{
        struct feed *f = t->data;

        if (!f->gone)
                (void)http_sse_comment(f->stream, "keep-alive");
}

static void on_closed(struct http_request *req, void *data)
{
        feed_free(data);
}

void v1_events(struct http_request *req)
{
        struct api_context *ctx = api_ctx(req);
        const char *last = http_request_header(req, "Last-Event-ID"), *after = http_request_query(req, "after"),
                   *sandbox = http_request_query(req, "sandbox");
        struct sbx_err err = { 0 };
        struct feed *f;
        uint64_t from = 0;
        bool replay = false;

        if (sandbox && !manager_sandbox_known(ctx->manager, sandbox)) {
                http_reply_errorf(req, -SBX_E_NOT_FOUND, "sandbox_not_found", "sandbox '%.64s' not found", sandbox);
                return;
        }
        if (last || after) {
                if (!event_id_parse(last ? last : after, &from)) {
                        http_reply_errorf(req, -SBX_E_INVALID, "invalid_cursor", "'%s' is not an event id",
                                          last ? "Last-Event-ID" : "after");
                        return;
                }
                replay = true;
        }
        f = calloc(1, sizeof *f);
        if (!f || uv_timer_init(manager_loop(ctx->manager), &f->keepalive) < 0) {
                free(f);
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        f->keepalive.data = f;
        f->req = req;
        snprintf(f->sandbox_id, sizeof f->sandbox_id, "%s", sandbox ? sandbox : "");
        if (manager_events_subscribe(ctx->manager, sandbox, on_live, f, &f->sub, &err) < 0) {
                http_reply_error(req, &err);
                uv_close((uv_handle_t *)&f->keepalive, feed_timer_closed);
                return;
        }
        f->stream = http_reply_sse(req);
        if (!f->stream) {
                feed_free(f);
                return;
        }
        http_request_on_close(req, on_closed, f);
        http_stream_on_drain(f->stream, on_drain, f);
        (void)uv_timer_start(&f->keepalive, on_keepalive, EVENTS_KEEPALIVE_MS, EVENTS_KEEPALIVE_MS);
        /* no cursor: only what happens from now on (the comment tells the client the feed is up) */
        (void)http_sse_comment(f->stream, "events");
        f->last = from;
        f->catching_up = replay;
        if (!replay) {
                /* the newest stored id is the starting point: nothing older is replayed */
                struct event_query q = { .sandbox_id = sandbox, .desc = true, .limit = 1 };
                json_t *page = NULL;

                if (manager_events_list(ctx->manager, &q, &page, &err) >= 0) {
                        json_t *first = json_array_get(json_object_get(page, "events"), 0);
                        uint64_t id = 0;

                        if (first && event_id_parse(json_string_value(json_object_get(first, "id")), &id))
                                f->last = id;
                        json_decref(page);
                }
        }
        feed_pump(f);
}
