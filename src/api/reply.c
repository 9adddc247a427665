// SPDX-License-Identifier: Apache-2.0
/*
 * Replies of the HTTP server (server.h): JSON, data, errors (the code -> status table is
 * errors.c), byte ranges of an fd (sendfile), extra headers, chunked streams with back-pressure,
 * Server-Sent Events (formatting in sse.c) and 101 upgrades (the socket is lent to ws.c). Each is
 * stored on the request and queued by server.c's access handler. Invariants: docs/internals/api.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/auth.h"
#include "api/errors.h"
#include "api/server-internal.h"
#include "api/server-private.h"
#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

static struct MHD_Response *response_from_buffer(void *data, size_t len, enum MHD_ResponseMemoryMode mode)
{
        return MHD_create_response_from_buffer(len, data, mode);
}

/* Last resort when even an error body cannot be built: a fixed 500. */
void server__reply_oom(struct http_request *req)
{
        static const char body[] = "{\"error\":{\"code\":\"internal\",\"message\":\"internal error\"}}";
        struct MHD_Response *resp;

        resp = response_from_buffer((void *)body, sizeof body - 1, MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                /* No reply possible: the access handler drops the connection on its next call
                 * (resume it if parked); a zombie request is freed right here. */
                req->replied = true;
                req->app_done = true;
                req->status = 0;
                server__request_resume(req);
                server__request_maybe_free(req);
                return;
        }
        (void)MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        server__request_set_response(req, 500, resp, false);
}

void http_reply_data(struct http_request *req, unsigned status, const char *content_type, const void *data, size_t len)
{
        struct MHD_Response *resp;

        if (!server__reply_allowed(req))
                return;
        resp = response_from_buffer((void *)data, data ? len : 0, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return server__reply_oom(req);
        if (content_type && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
                MHD_destroy_response(resp);
                return server__reply_oom(req);
        }
        server__request_set_response(req, status, resp, false);
}

void http_reply_json(struct http_request *req, unsigned status, json_t *body)
{
        struct MHD_Response *resp;
        char *text = NULL;

        if (!server__reply_allowed(req)) {
                json_decref(body);
                return;
        }
        if (body) {
                if (req->reply_fields && json_is_object(body) && status < 400)
                        (void)json_object_update(body, req->reply_fields);
                text = json_dump_compact(body);
                json_decref(body);
                if (!text)
                        return server__reply_oom(req);
        }
        resp = response_from_buffer(text, text ? strlen(text) : 0,
                                    text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(text);
                return server__reply_oom(req);
        }
        if (text && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES) {
                MHD_destroy_response(resp);
                return server__reply_oom(req);
        }
        server__request_set_response(req, status, resp, false);
}

void http_reply_error(struct http_request *req, const struct sbx_err *err)
{
        struct MHD_Response *resp;
        int code = err ? err->code : -SBX_E_INTERNAL;
        unsigned status = http_error_status(code);
        json_t *body;
        char *text;

        if (!server__reply_allowed(req))
                return;
        /* 503 is a client's "try again" (a template still building), not a daemon failure */
        if (status >= 500 && status != 503)
                log_error("http: %s %s: %s (%d)", req->method_str, req->target, err && err->msg[0] ? err->msg : "?",
                          code);
        body = http_error_body(err);
        text = body ? json_dump_compact(body) : NULL;
        json_decref(body);
        if (!text)
                return server__reply_oom(req);
        resp = response_from_buffer(text, strlen(text), MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(text);
                return server__reply_oom(req);
        }
        if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES)
                goto fail;
        if (status == 401 &&
            MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, SBX_AUTH_CHALLENGE) != MHD_YES)
                goto fail;
        if (status == 405) {
                char allow[128];

                router_format_allowed(req->match.allowed, allow, sizeof allow);
                if (MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
                        goto fail;
        }
        server__request_set_response(req, status, resp, false);
        return;
fail:
        MHD_destroy_response(resp);
        server__reply_oom(req);
}

void http_reply_errorf(struct http_request *req, int code, const char *reason, const char *fmt, ...)
{
        struct sbx_err err = { 0 };
        va_list ap;

        err.code = code < 0 ? code : -SBX_E_INTERNAL;
        if (reason)
                snprintf(err.reason, sizeof err.reason, "%s", reason);
        va_start(ap, fmt);
        vsnprintf(err.msg, sizeof err.msg, fmt, ap);
        va_end(ap);
        http_reply_error(req, &err);
}

int http_reply_header(struct http_request *req, const char *name, const char *value)
{
        char *n, *v;

        if (!req || req->replied || req->n_hdrs == HTTP_MAX_REPLY_HEADERS)
                return -E2BIG;
        n = strdup(name);
        v = strdup(value);
        if (!n || !v) {
                free(n);
                free(v);
                return -ENOMEM;
        }
        req->hdrs[req->n_hdrs][0] = n;
        req->hdrs[req->n_hdrs][1] = v;
        req->n_hdrs++;
        return 0;
}

void http_reply_fd(struct http_request *req, unsigned status, const char *content_type, int fd, uint64_t offset,
                   uint64_t len)
{
        struct MHD_Response *resp;

        if (!server__reply_allowed(req)) {
                safe_close(fd);
                return;
        }
        /* MHD sends it with sendfile(2) on plain sockets and closes fd with the response */
        resp = MHD_create_response_from_fd_at_offset64(len, fd, offset);
        if (!resp) {
                safe_close(fd);
                return server__reply_oom(req);
        }
        if (content_type && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
                MHD_destroy_response(resp);
                return server__reply_oom(req);
        }
        server__request_set_response(req, status, resp, false);
}

void http_request_set_data(struct http_request *req, void *data)
{
        req->app_data = data;
}

void *http_request_data(const struct http_request *req)
{
        return req->app_data;
}

uv_loop_t *http_request_loop(const struct http_request *req)
{
        return req->srv->loop;
}

/* --- protocol upgrade --- */

/* MHD_UpgradeHandler: the 101 is out and MHD has suspended the connection for good (it is resumed
 * only to be cleaned up, by http_upgrade_close or MHD_stop_daemon). cls is the request. */
static void on_mhd_upgrade(void *cls, struct MHD_Connection *conn, void *con_cls, const char *extra, size_t extra_len,
                           MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
        struct http_request *req = cls;

        req->urh = urh;
        req->upgrade_cb(req->upgrade_cls, sock, req, extra, extra_len);
}

int http_reply_upgrade(struct http_request *req, const char *const (*hdrs)[2],
                       void (*on_upgraded)(void *cls, int sock, void *urh, const char *extra, size_t extra_len),
                       void *cls)
{
        struct MHD_Response *resp;
        bool has_upgrade = false;

        if (!req || req->replied)
                return -EALREADY;
        if (req->mhd_done)
                return -EPIPE;
        /* MHD_queue_response() refuses a 101 on anything else and the connection would just drop */
        if (!req->http11)
                return -EPROTO;
        for (const char *const (*h)[2] = hdrs; h && h[0][0]; h++)
                if (strcasecmp(h[0][0], MHD_HTTP_HEADER_UPGRADE) == 0)
                        has_upgrade = true;
        if (!has_upgrade || !on_upgraded)
                return -EINVAL;
        /* libmicrohttpd 0.9.75 adds "Connection: Upgrade" here and requires it to queue a 101 */
        resp = MHD_create_response_for_upgrade(on_mhd_upgrade, req);
        if (!resp)
                return -ENOMEM;
        for (; hdrs[0][0]; hdrs++)
                if (MHD_add_response_header(resp, hdrs[0][0], hdrs[0][1]) != MHD_YES) {
                        MHD_destroy_response(resp);
                        return -ENOMEM;
                }
        req->upgrade_cb = on_upgraded;
        req->upgrade_cls = cls;
        /* The application is done with req as an HTTP request; MHD completes it (and on_close
         * runs) only after http_upgrade_close() or when the server stops. */
        server__request_set_response(req, 101, resp, false);
        return 0;
}

void http_upgrade_close(void *urh)
{
        struct http_request *req = urh;

        if (!req || !req->urh)
                return;
        /* Only marks the connection for cleanup: in external-poll mode nothing wakes MHD (as with
         * MHD_resume_connection), so run it now; that run closes the socket and completes the
         * request. */
        (void)MHD_upgrade_action(TAKE_PTR(req->urh), MHD_UPGRADE_ACTION_CLOSE);
        server__listener_kick(req->lst);
}

/* --- streams --- */

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
        struct http_request *req = cls;
        struct http_stream *s = &req->stream;
        size_t n;

        if (s->len == 0) {
                if (s->ended)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                /* Nothing to send yet: park the connection (MHD would otherwise call us in a busy
                 * loop); http_stream_write/end resume it. */
                if (req->conn && !req->suspended) {
                        MHD_suspend_connection(req->conn);
                        req->suspended = true;
                }
                return 0;
        }
        n = s->len < max ? s->len : max;
        memcpy(buf, s->buf + s->head, n);
        s->head += n;
        s->len -= n;
        if (s->len == 0)
                s->head = 0;
        if (s->want_drain && s->len < SBX_STREAM_BUFFER / 2) {
                s->want_drain = false;
                if (s->drain_cb)
                        s->drain_cb(s, s->drain_data);
        }
        return (ssize_t)n;
}

/* Start a chunked reply with content_type and the extra { name, value } headers in hdrs (ended by
 * a NULL name; hdrs may be NULL). */
static struct http_stream *reply_stream(struct http_request *req, unsigned status, const char *content_type,
                                        const char *const (*hdrs)[2])
{
        struct MHD_Response *resp;

        if (!server__reply_allowed(req))
                return NULL;
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK, stream_reader, req, NULL);
        if (!resp) {
                server__reply_oom(req);
                return NULL;
        }
        if (content_type && MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES)
                goto fail;
        for (; hdrs && hdrs[0][0]; hdrs++)
                if (MHD_add_response_header(resp, hdrs[0][0], hdrs[0][1]) != MHD_YES)
                        goto fail;
        req->has_stream = true;
        req->app_done = false; /* until http_stream_end() or on_close */
        server__request_set_response(req, status, resp, true);
        return &req->stream;
fail:
        MHD_destroy_response(resp);
        server__reply_oom(req);
        return NULL;
}

struct http_stream *http_reply_stream(struct http_request *req, unsigned status, const char *content_type)
{
        return reply_stream(req, status, content_type, NULL);
}

/*
 * Make room for len more queued bytes, all or nothing (the checks of http_stream_write). Returns 0
 * and where to put them in *ret (commit with stream_commit), or -EINVAL, -EPIPE, -EMSGSIZE,
 * -ENOBUFS, -ENOMEM.
 */
static int stream_reserve(struct http_stream *s, size_t len, char **ret)
{
        struct http_request *req = s->req;

        if (s->ended)
                return -EINVAL;
        if (req->mhd_done)
                return -EPIPE;
        if (len > SBX_STREAM_BUFFER)
                return -EMSGSIZE;
        if (s->len + len > SBX_STREAM_BUFFER) {
                s->want_drain = true;
                return -ENOBUFS;
        }
        if (s->head + s->len + len > s->cap) {
                if (s->head > 0) {
                        memmove(s->buf, s->buf + s->head, s->len);
                        s->head = 0;
                }
                if (s->len + len > s->cap) {
                        size_t want = s->cap ? s->cap : 4096;
                        char *p;

                        while (want < s->len + len)
                                want *= 2;
                        if (want > SBX_STREAM_BUFFER)
                                want = SBX_STREAM_BUFFER;
                        p = realloc(s->buf, want);
                        if (!p)
                                return -ENOMEM;
                        s->buf = p;
                        s->cap = want;
                }
        }
        *ret = s->buf + s->head + s->len;
        return 0;
}

static void stream_commit(struct http_stream *s, size_t len)
{
        s->len += len;
        server__request_resume(s->req);
}

int http_stream_write(struct http_stream *s, const void *data, size_t len)
{
        char *p = NULL;
        int r;

        r = stream_reserve(s, len, &p);
        if (r < 0)
                return r;
        if (len == 0)
                return 0;
        memcpy(p, data, len);
        stream_commit(s, len);
        return 0;
}

void http_stream_on_drain(struct http_stream *s, void (*cb)(struct http_stream *s, void *data), void *data)
{
        s->drain_cb = cb;
        s->drain_data = data;
}

void http_stream_end(struct http_stream *s)
{
        struct http_request *req = s->req;

        if (s->ended)
                return;
        s->ended = true;
        s->drain_cb = NULL;
        req->app_done = true;
        if (req->mhd_done) {
                server__request_maybe_free(req);
                return;
        }
        server__request_resume(req);
}

/* --- Server-Sent Events (the formatting is in sse.c) --- */

struct http_stream *http_reply_sse(struct http_request *req)
{
        static const char *const hdrs[][2] = {
                { MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache" },
                { "X-Accel-Buffering", "no" }, /* nginx and friends: pass events through as they come */
                { NULL, NULL },
        };

        return reply_stream(req, 200, "text/event-stream", hdrs);
}

int http_sse_send(struct http_stream *s, const char *event, const char *id, const char *data)
{
        size_t len;
        char *p = NULL;
        int r;

        if ((event && event[strcspn(event, "\r\n")]) || (id && id[strcspn(id, "\r\n")]))
                return -EINVAL;
        len = server__sse_format_event(NULL, 0, event, id, data);
        r = stream_reserve(s, len, &p);
        if (r < 0)
                return r;
        (void)server__sse_format_event(p, len, event, id, data);
        stream_commit(s, len);
        return 0;
}

int http_sse_comment(struct http_stream *s, const char *text)
{
        size_t len;
        char *p = NULL;
        int r;

        len = server__sse_format_comment(NULL, 0, text);
        r = stream_reserve(s, len, &p);
        if (r < 0)
                return r;
        (void)server__sse_format_comment(p, len, text);
        stream_commit(s, len);
        return 0;
}

void http_reply_field(struct http_request *req, const char *key, json_t *value)
{
        if (!req->reply_fields)
                req->reply_fields = json_object();
        if (req->reply_fields)
                (void)json_object_set_new(req->reply_fields, key, value);
        else
                json_decref(value);
}
