// SPDX-License-Identifier: Apache-2.0
/*
 * The HTTP/1.1 server (server.h): libmicrohttpd in external-epoll mode nested in the libuv loop.
 * Each listener (TCP, unix) is one MHD daemon whose epoll fd is watched by a uv_poll_t; MHD_run
 * runs on readiness and a uv timer re-armed from MHD_get_timeout after every run covers work MHD
 * already has in hand (resumed connections, timeouts). This file owns request bookkeeping, body
 * collection (in memory, or into an O_TMPFILE file for upload routes), routing/auth dispatch and
 * the queueing of the reply a handler stored; the replies themselves (JSON, fd ranges, streams,
 * SSE, upgrades) are reply.c (state shared through server-private.h), the SSE wire format is sse.c
 * and the listening sockets and upload directory are opened by listen.c (server-internal.h). It holds no API logic (that is api/v1/) and never frees an
 * MHD connection (MHD does, after NOTIFY_COMPLETED).
 * Invariants are written down in docs/internals/api.md.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/auth.h"
#include "api/errors.h"
#include "api/router.h"
#include "api/server-internal.h"
#include "api/server-private.h"
#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "core/metrics.h"

static void server_finish_stop(struct http_server *srv);

/* --- request lifetime --- */

static void request_free(struct http_request *req)
{
        struct http_server *srv = req->srv;

        if (req->prev)
                req->prev->next = req->next;
        else if (srv->requests == req)
                srv->requests = req->next;
        if (req->next)
                req->next->prev = req->prev;
        if (req->response)
                MHD_destroy_response(req->response);
        free(req->stream.buf);
        json_decref(req->reply_fields);
        free(req->body);
        free(req->target);
        req->upload_fd = safe_close(req->upload_fd);
        for (unsigned i = 0; i < req->n_hdrs; i++) {
                free(req->hdrs[i][0]);
                free(req->hdrs[i][1]);
        }
        free(req);
}

/* Free req once neither MHD nor the application can reach it. */
void server__request_maybe_free(struct http_request *req)
{
        if (req->mhd_done && req->app_done && !req->in_close_cb && !req->in_handler)
                request_free(req);
}

static struct http_request *request_new(struct listener *lst, const char *uri)
{
        struct http_request *req = calloc(1, sizeof *req);
        size_t len;

        if (!req)
                return NULL;
        uri = uri ?: "";
        len = strcspn(uri, "?#");
        if (len > SBX_MAX_URL_BYTES + 1)
                len = SBX_MAX_URL_BYTES + 1; /* still too long for the router: it answers 400 */
        req->target = strndup(uri, len);
        if (!req->target) {
                free(req);
                return NULL;
        }
        req->srv = lst->srv;
        req->lst = lst;
        req->start_usec = now_usec();
        req->app_done = true; /* until the handler runs */
        req->method = HTTP_METHOD_INVALID;
        req->upload_fd = -EBADF;
        req->stream.req = req;
        req->next = lst->srv->requests;
        if (req->next)
                req->next->prev = req;
        lst->srv->requests = req;
        return req;
}

/* --- replies --- */


/*
 * Un-park a suspended connection. In external-poll mode libmicrohttpd 0.9.75 drops its ITC
 * (MHD_USE_ITC is masked off without an internal thread), so MHD_resume_connection() only sets a
 * flag and wakes nothing: the resume is picked up at the start of the next MHD_run(), which
 * server__listener_kick() schedules right away.
 */
void server__request_resume(struct http_request *req)
{
        if (req->suspended && req->conn) {
                req->suspended = false;
                MHD_resume_connection(req->conn);
                server__listener_kick(req->lst);
        }
}

/* Hand the stored response to MHD. Only from the access handler (MHD's state allows it there). */
static enum MHD_Result request_queue(struct http_request *req)
{
        struct MHD_Response *resp = TAKE_PTR(req->response);
        enum MHD_Result r;

        r = MHD_queue_response(req->conn, req->status, resp);
        MHD_destroy_response(resp);
        if (r != MHD_YES) {
                log_error("http: cannot queue %u reply for %s %s, closing connection", req->status, req->method_str,
                          req->target);
                return MHD_NO;
        }
        req->queued = true;
        return MHD_YES;
}

/*
 * Store resp as the reply to req (takes ownership). Synchronous replies are queued when the
 * handler returns; later ones resume the connection and the access handler queues them on its
 * next call. keep_app: the application keeps using req (streams).
 */
void server__request_set_response(struct http_request *req, unsigned status, struct MHD_Response *resp, bool keep_app)
{
        /* the handler's extra headers go on success replies only (an error has its own) */
        for (unsigned i = 0; status < 400 && i < req->n_hdrs; i++)
                if (MHD_add_response_header(resp, req->hdrs[i][0], req->hdrs[i][1]) != MHD_YES)
                        log_warn("http: cannot add header '%s' to the reply", req->hdrs[i][0]);
        if (req->mhd_done) {
                /* client gone (zombie request): nobody to send it to */
                MHD_destroy_response(resp);
                req->replied = true;
                if (!keep_app)
                        req->app_done = true;
                server__request_maybe_free(req);
                return;
        }
        req->response = resp;
        req->status = status;
        req->replied = true;
        if (!keep_app)
                req->app_done = true;
        server__request_resume(req);
}

bool server__reply_allowed(struct http_request *req)
{
        if (!req)
                return false;
        if (req->replied) {
                log_error("http: second reply to %s %s ignored", req->method_str, req->target);
                return false;
        }
        return true;
}

/* --- request accessors --- */

void *http_request_app(const struct http_request *req)
{
        return req->srv->app;
}

const char *http_request_method(const struct http_request *req)
{
        return req->method_str;
}

const char *http_request_path(const struct http_request *req)
{
        return req->target;
}

const char *http_request_param(const struct http_request *req, unsigned idx)
{
        if (idx >= req->match.n_params)
                return NULL;
        return req->match.params[idx];
}

const char *http_request_query(const struct http_request *req, const char *key)
{
        if (!req->conn || !key)
                return NULL;
        return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *http_request_query_n(const struct http_request *req, const char *key, size_t *ret_len)
{
        const char *v = NULL;
        size_t n = 0;

        if (!req->conn || !key ||
            MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) != MHD_YES)
                return NULL;
        *ret_len = v ? n : 0;
        return v ?: "";
}

http_handler_fn http_request_handler(const struct http_request *req)
{
        return req->match.route ? req->match.route->handler : NULL;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
        if (!req->conn || !name)
                return NULL;
        return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

struct query_iter {
        int (*fn)(const char *key, const char *value, void *data);
        void *data;
        int r;
};

static enum MHD_Result query_iter_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        struct query_iter *it = cls;

        it->r = it->fn(key, value, it->data);
        return it->r == 0 ? MHD_YES : MHD_NO;
}

int http_request_query_foreach(const struct http_request *req,
                               int (*fn)(const char *key, const char *value, void *data), void *data)
{
        struct query_iter it = { .fn = fn, .data = data, .r = 0 };

        if (!req->conn || !fn)
                return 0;
        (void)MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, query_iter_cb, &it);
        return it.r;
}

const char *http_request_body(const struct http_request *req, size_t *ret_len)
{
        if (ret_len)
                *ret_len = req->body_len;
        return req->body ?: "";
}

int http_request_upload_fd(const struct http_request *req)
{
        return req->upload && req->upload_fd >= 0 ? req->upload_fd : -1;
}

uint64_t http_request_upload_size(const struct http_request *req)
{
        return req->upload ? req->upload_size : 0;
}

json_t *http_request_json(struct http_request *req)
{
        json_error_t jerr;
        json_t *v;

        if (req->body_len == 0) {
                v = json_object();
                if (!v)
                        server__reply_oom(req);
                return v;
        }
        v = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!v) {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_json", "invalid JSON at line %d column %d: %s",
                                  jerr.line, jerr.column, jerr.text);
                return NULL;
        }
        if (!json_is_object(v)) {
                json_decref(v);
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_json", "request body must be a JSON object");
                return NULL;
        }
        return v;
}

void http_request_on_close(struct http_request *req, void (*cb)(struct http_request *req, void *data), void *data)
{
        req->close_cb = cb;
        req->close_data = data;
}

/* --- MHD callbacks --- */

/* Called by MHD with the raw request target before it decodes anything: allocate the request
 * here (MHD hands the return value to every later callback as *con_cls) and keep the raw path
 * for the router. MHD calls NOTIFY_COMPLETED for it even when the request never reaches the
 * access handler (431, malformed request line). */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
        struct listener *lst = cls;
        struct http_request *req;

        if (lst->srv->stopping)
                return NULL;
        req = request_new(lst, uri);
        if (!req)
                return NULL;
        req->conn = conn;
        return req;
}

/* The declared Content-Length, if the body is not chunked and the header parses. */
static bool body_declared(const struct http_request *req, uint64_t *ret)
{
        const char *te, *cl;

        te = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
        cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        return !te && cl && parse_u64(cl, ret) >= 0;
}

/* Fill req->pre_err for a failed write or open of the upload file (code is -errno). */
static void upload_fail(struct http_request *req, int code, const char *what)
{
        if (code == -ENOSPC || code == -EDQUOT) {
                /* errors.c makes it 503 insufficient_storage: the client hears about it and may retry */
                log_warn("http: %s %s: cannot %s the upload file: %s", req->method_str, req->target, what,
                         strerror(-code));
                (void)sbx_err_set(&req->pre_err, code, "no space left on the data disk");
        } else
                (void)sbx_err_set(&req->pre_err, code, "cannot %s the upload file: %s", what, strerror(-code));
}

/* Upload route whose request passed routing and auth: check the declared size against
 * max_upload, then open the body file. Nothing is written before this point. */
static void upload_begin(struct http_request *req)
{
        struct http_server *srv = req->srv;
        uint64_t n;

        if (srv->upload_open) {
                int fd = -1;
                uint64_t max = srv->max_upload;

                if (srv->upload_open(req, &fd, &max, &req->pre_err) < 0) {
                        if (req->pre_err.code == 0)
                                (void)sbx_err_set(&req->pre_err, -SBX_E_INTERNAL, "cannot open the upload target");
                        return;
                }
                if (fd >= 0) {
                        req->upload_fd = fd;
                        req->upload_max = max;
                        if (body_declared(req, &n) && n > max)
                                req->body_too_large = true;
                        return;
                }
        }
        if (srv->max_upload == 0 || (body_declared(req, &n) && n > srv->max_upload)) {
                req->body_too_large = true;
                return;
        }
        req->upload_max = srv->max_upload;
        req->upload_fd = openat(srv->upload_dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (req->upload_fd < 0) {
                req->upload_fd = -EBADF;
                upload_fail(req, -errno, "create");
        }
}

/* Decide what a request gets before any body byte is read: route, auth, declared size. */
static enum MHD_Result header_bytes_cb(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
        size_t *n = cls;

        *n += strlen(key) + (value ? strlen(value) : 0) + 4; /* "K: V\r\n" */
        return MHD_YES;
}

/* Request line + headers as the client sent them (give or take whitespace). MHD's pool is larger
 * than the limit (bigger IO buffers), so the limit is checked here. */
static size_t header_bytes(const struct http_request *req, const char *method)
{
        size_t n = strlen(method ? method : "") + strlen(req->target) + sizeof " HTTP/1.1\r\n";

        (void)MHD_get_connection_values(req->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, header_bytes_cb, &n);
        return n;
}

static void request_begin(struct http_request *req, const char *method)
{
        struct http_server *srv = req->srv;
        uint64_t n;
        int r;

        snprintf(req->method_str, sizeof req->method_str, "%s", method ?: "");
        req->method = http_method_from_string(method);
        if (header_bytes(req, method) > SBX_MAX_HEADER_BYTES) {
                (void)sbx_err_setr(&req->pre_err, -SBX_E_HEADERS_TOO_LARGE, "headers_too_large",
                                   "request line and headers are larger than %d bytes", SBX_MAX_HEADER_BYTES);
                return;
        }

        r = router_match(srv->routes, srv->n_routes, req->method, req->target, &req->match, &req->pre_err);
        if (r >= 0 && req->match.route->auth) {
                const char *authz =
                        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
                (void)auth_check_bearer(authz, srv->api_key, &req->pre_err);
        }

        if (r >= 0 && req->match.route->upload) {
                /* auth before size: an unauthenticated client learns nothing about the limit */
                req->upload = true;
                if (req->pre_err.code == 0 && req->match.route->resume && srv->gate)
                        (void)srv->gate(req, &req->pre_err);
                if (req->pre_err.code == 0)
                        upload_begin(req);
                return;
        }
        if (body_declared(req, &n) && n > SBX_MAX_JSON_BODY)
                req->body_too_large = true;
}

/* Upload routes: write the bytes MHD hands over to the body file, or count them as dropped. */
struct write_behind {
        uv_work_t work;
        int fd; /* owned: a duplicate of the upload fd */
        uint64_t off, len;
};

static void write_behind_work(uv_work_t *w)
{
        struct write_behind *wb = w->data;

        /* starts the writeback of dirty pages in the range, then drops the clean ones */
        (void)posix_fadvise(wb->fd, (off_t)wb->off, (off_t)wb->len, POSIX_FADV_DONTNEED);
}

static void write_behind_done(uv_work_t *w, int status)
{
        struct write_behind *wb = w->data;

        safe_close(wb->fd);
        free(wb);
}

/* Hand the body's last full SBX_UPLOAD_WRITE_BEHIND piece to a worker (best effort). */
static void write_behind(struct http_request *req)
{
        struct write_behind *wb;

        if (req->upload_size - req->wb_done < SBX_UPLOAD_WRITE_BEHIND)
                return;
        wb = calloc(1, sizeof *wb);
        if (!wb)
                return;
        wb->off = req->wb_done;
        wb->len = req->upload_size - req->wb_done;
        wb->fd = fcntl(req->upload_fd, F_DUPFD_CLOEXEC, 3);
        wb->work.data = wb;
        if (wb->fd < 0 || uv_queue_work(req->srv->loop, &wb->work, write_behind_work, write_behind_done) < 0) {
                safe_close(wb->fd);
                free(wb);
                return;
        }
        req->wb_done = req->upload_size;
}

void http_request_upload_write_behind(struct http_request *req)
{
        req->write_behind = true;
}

static void upload_append(struct http_request *req, const char *data, size_t len)
{
        int r;

        req->body_seen += len;
        if (req->upload_fd < 0 || req->pre_err.code != 0 || req->body_too_large) {
                req->body_dropped += len;
                return;
        }
        if (len > req->upload_max - req->upload_size) {
                /* a chunked body passed the limit: stop writing and give the space back now */
                req->body_too_large = true;
                req->upload_fd = safe_close(req->upload_fd);
                req->body_dropped += len;
                return;
        }
        /* A blocking write on the loop thread: it lands in the page cache, and MHD hands over at
         * most one connection buffer (16 KiB) at a time. write_all() retries EINTR and short
         * writes. */
        r = write_all(req->upload_fd, data, len);
        if (r < 0) {
                upload_fail(req, r, "write");
                req->upload_fd = safe_close(req->upload_fd);
                req->body_dropped += len;
                return;
        }
        req->upload_size += len;
        if (req->write_behind)
                write_behind(req);
}

static void body_append(struct http_request *req, const char *data, size_t len)
{
        req->body_seen += len;
        if (req->pre_err.code != 0 || req->body_too_large)
                return; /* drained, not kept */
        if (req->body_len + len > SBX_MAX_JSON_BODY) {
                req->body_too_large = true;
                free(TAKE_PTR(req->body));
                req->body_len = req->body_cap = 0;
                return;
        }
        if (req->body_len + len + 1 > req->body_cap) {
                size_t want = req->body_cap ? req->body_cap : 4096;
                const char *cl;
                uint64_t n;
                char *p;

                cl = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                if (req->body_cap == 0 && cl && parse_u64(cl, &n) >= 0 && n <= SBX_MAX_JSON_BODY)
                        want = (size_t)n + 1;
                while (want < req->body_len + len + 1)
                        want *= 2;
                if (want > SBX_MAX_JSON_BODY + 1)
                        want = SBX_MAX_JSON_BODY + 1;
                p = realloc(req->body, want);
                if (!p) {
                        (void)sbx_err_set(&req->pre_err, -ENOMEM, "cannot allocate the request body");
                        free(TAKE_PTR(req->body));
                        req->body_len = req->body_cap = 0;
                        return;
                }
                req->body = p;
                req->body_cap = want;
        }
        memcpy(req->body + req->body_len, data, len);
        req->body_len += len;
        req->body[req->body_len] = '\0';
}

static void reply_too_large(struct http_request *req)
{
        if (req->upload && req->srv->max_upload == 0)
                http_reply_errorf(req, -SBX_E_TOO_LARGE, "payload_too_large",
                                  "uploads are disabled on this server (the upload limit is 0 bytes)");
        else if (req->upload)
                http_reply_errorf(req, -SBX_E_TOO_LARGE, "payload_too_large",
                                  "request body is larger than the upload limit of %" PRIu64 " bytes",
                                  req->upload_max ? req->upload_max : req->srv->max_upload);
        else
                http_reply_errorf(req, -SBX_E_TOO_LARGE, "payload_too_large", "request body is larger than %d bytes",
                                  SBX_MAX_JSON_BODY);
}

static bool expects_continue(const struct http_request *req)
{
        const char *v = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);

        return v && strcasecmp(v, "100-continue") == 0;
}

/* Answer a refused request before its body? Always when the client waits for "100 Continue".
 * An upload route's body may be many GiB: refuse it up front unless it is declared small enough
 * to drain (which keeps the connection open). */
static bool refuse_early(const struct http_request *req)
{
        uint64_t n;

        if (req->pre_err.code == 0)
                return false;
        if (expects_continue(req))
                return true;
        return req->upload && !(body_declared(req, &n) && n <= HTTP_MAX_DISCARD_BYTES);
}

/* The final access-handler call: run the handler, or queue what is stored, or park. */
static enum MHD_Result request_dispatch(struct http_request *req)
{
        struct http_server *srv = req->srv;

        if (req->phase == REQ_HEADERS) {
                req->phase = REQ_DISPATCHED;
                if (req->body_too_large)
                        reply_too_large(req);
                else if (req->pre_err.code != 0)
                        http_reply_error(req, &req->pre_err);
                else if (req->upload && lseek(req->upload_fd, 0, SEEK_SET) < 0)
                        http_reply_errorf(req, -errno, NULL, "cannot rewind the upload file: %m");
                else if (!req->upload && req->match.route->resume && srv->gate &&
                         srv->gate(req, &req->pre_err) < 0)
                        http_reply_error(req, &req->pre_err);
                else {
                        req->app_done = false;
                        req->in_handler = true;
                        srv->depth++;
                        req->match.route->handler(req);
                        srv->depth--;
                        req->in_handler = false;
                }
        }
        if (req->response)
                return request_queue(req);
        if (req->replied && !req->has_stream)
                return MHD_NO; /* a reply was attempted but could not be built: drop the connection */
        if (!req->suspended) {
                MHD_suspend_connection(req->conn);
                req->suspended = true;
        }
        return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
        struct listener *lst = cls;
        struct http_request *req = *con_cls;

        if (!req) {
                /* no URI callback ran (should not happen) or it could not allocate */
                if (lst->srv->stopping)
                        return MHD_NO;
                req = request_new(lst, url);
                if (!req)
                        return MHD_NO;
                req->conn = conn;
                *con_cls = req;
        }
        if (req->phase == REQ_NEW) {
                /* First call: headers are in, the body is not. Never queue here except for a
                 * declared oversize body or a refused upload (refuse_early): MHD then skips the
                 * body and closes the connection. */
                req->phase = REQ_HEADERS;
                req->http11 = version && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
                request_begin(req, method);
                if (req->body_too_large || refuse_early(req)) {
                        /* The client waits for "100 Continue" before sending the body: refusing
                         * now spares it the upload (and MHD closes the connection after). */
                        req->phase = REQ_DISPATCHED;
                        if (req->body_too_large)
                                reply_too_large(req);
                        else
                                http_reply_error(req, &req->pre_err);
                        return req->response ? request_queue(req) : MHD_NO;
                }
                return MHD_YES;
        }
        if (*upload_data_size != 0) {
                if (req->upload)
                        upload_append(req, upload_data, *upload_data_size);
                else
                        body_append(req, upload_data, *upload_data_size);
                *upload_data_size = 0;
                if ((req->upload ? req->body_dropped : req->body_seen) > HTTP_MAX_DISCARD_BYTES)
                        return MHD_NO;
                return MHD_YES;
        }
        return request_dispatch(req);
}

static void access_log(const struct http_request *req, uint64_t usec, enum MHD_RequestTerminationCode toe)
{
        char path[256];
        size_t n = 0;

        if (log_get_level() < LOG_LEVEL_DEBUG)
                return;
        /* the raw path is client bytes: keep the log line printable */
        for (const char *p = req->target; p && *p && n < sizeof path - 1; p++)
                path[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
        path[n] = '\0';
        if (req->queued && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
                log_debug("http: %s %s %u %.3fms", req->method_str[0] ? req->method_str : "-", path, req->status,
                          (double)usec / 1000.0);
        else
                log_debug("http: %s %s %u %.3fms aborted (%d)", req->method_str[0] ? req->method_str : "-", path,
                          req->status, (double)usec / 1000.0, (int)toe);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
        struct http_request *req = *con_cls;
        uint64_t usec;

        *con_cls = NULL;
        if (!req)
                return;
        usec = now_usec() - req->start_usec;
        access_log(req, usec, toe);
        if (req->queued)
                metrics_http_request(req->status, usec);

        req->mhd_done = true;
        req->conn = NULL;
        req->suspended = false;
        req->urh = NULL; /* MHD frees it with the connection */
        if (req->response) {
                MHD_destroy_response(req->response);
                req->response = NULL;
        }
        if (req->close_cb && !req->close_called) {
                req->close_called = true;
                req->in_close_cb = true;
                req->close_cb(req, req->close_data);
                req->in_close_cb = false;
                req->app_done = true;
        }
        server__request_maybe_free(req);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
        char line[512];
        size_t n;

        vsnprintf(line, sizeof line, fmt, ap);
        n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = '\0';
        /* Nearly all of MHD's messages are about a client's request (431s, resets, malformed
         * lines) and a client must not be able to flood the log; failures to start are reported
         * by http_server_start() itself. */
        log_debug("http: libmicrohttpd: %s", line);
}

/* --- loop integration --- */

static void listener_run(struct listener *lst);

static void on_timer(uv_timer_t *t)
{
        listener_run(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        if (status < 0)
                log_warn("http: poll on the libmicrohttpd epoll fd failed: %s, ignoring", uv_strerror(status));
        listener_run(p->data);
}

/* Run MHD on the next loop iteration (a connection was resumed). */
void server__listener_kick(struct listener *lst)
{
        lst->kicked = true;
        if (lst->handles_init && !lst->srv->stopping)
                (void)uv_timer_start(&lst->timer, on_timer, 0, 0);
}

static void listener_run(struct listener *lst)
{
        struct http_server *srv = lst->srv;
        MHD_UNSIGNED_LONG_LONG to;

        if (!lst->mhd || srv->stopping)
                return;
        lst->kicked = false;
        srv->depth++;
        (void)MHD_run(lst->mhd);
        srv->depth--;
        if (srv->stop_pending && srv->depth == 0) {
                server_finish_stop(srv);
                return;
        }
        /* A resume during this run (a handler or drain callback un-parked a connection) is only
         * seen by the next MHD_run; MHD also holds ready work that no fd will announce (resumed
         * connections, bytes already read into its buffers) and says so with a zero timeout. */
        if (lst->kicked)
                (void)uv_timer_start(&lst->timer, on_timer, 0, 0);
        else if (MHD_get_timeout(lst->mhd, &to) == MHD_YES)
                (void)uv_timer_start(&lst->timer, on_timer, to < HTTP_MAX_TIMER_MS ? (uint64_t)to : HTTP_MAX_TIMER_MS,
                                     0);
        else
                (void)uv_timer_stop(&lst->timer);
}

/* --- listeners (the sockets themselves are opened in listen.c) --- */

static void on_handle_closed(uv_handle_t *h)
{
        struct listener *lst = h->data;
        struct http_server *srv = lst->srv;

        if (--srv->open_handles == 0)
                free(srv);
}

/* Start the MHD daemon for a listening socket (takes ownership of fd) and hook it into the loop. */
static int listener_start(struct http_server *srv, enum listener_kind kind, int fd, bool v6, struct sbx_err *err)
{
        struct listener *lst = &srv->listeners[kind];
        const union MHD_DaemonInfo *info;
        /* MHD_ALLOW_UPGRADE: 101 replies (WebSocket). MHD then also nests an epoll fd for TLS
         * forwarding in its own; without TLS that one never fires. */
        unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
        int r;

        if (v6)
                flags |= MHD_USE_IPv6;
        lst->srv = srv;
        lst->kind = kind;
        /* MHD owns fd from here, also on most of its failure paths; on a failed start we leave it
         * alone rather than risk closing a descriptor number that was already reused. */
        lst->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, lst,
                                    /* first, or MHD prints some messages itself */
                                    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, lst, MHD_OPTION_LISTEN_SOCKET, fd,
                                    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SBX_HTTP_POOL_BYTES,
                                    MHD_OPTION_CONNECTION_LIMIT, (unsigned)SBX_MAX_CONNECTIONS,
                                    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SBX_HTTP_CONNECTION_TIMEOUT_S,
                                    MHD_OPTION_NOTIFY_COMPLETED, on_completed, lst, MHD_OPTION_URI_LOG_CALLBACK, on_uri,
                                    lst,
                                    /* SIGPIPE is ignored (http_server_start): lets MHD use sendfile */
                                    MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (unsigned)1, MHD_OPTION_END);
        if (!lst->mhd)
                return sbx_err_set(err, -EIO, "cannot start the HTTP server (libmicrohttpd)");
        info = MHD_get_daemon_info(lst->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        if (!info || info->epoll_fd < 0)
                return sbx_err_set(err, -EIO, "libmicrohttpd has no epoll fd");

        r = uv_timer_init(srv->loop, &lst->timer);
        if (r < 0)
                return sbx_err_set(err, -EIO, "cannot init timer: %s", uv_strerror(r));
        lst->timer.data = lst;
        srv->open_handles++;
        r = uv_poll_init(srv->loop, &lst->poll, info->epoll_fd);
        if (r < 0) {
                uv_close((uv_handle_t *)&lst->timer, on_handle_closed);
                return sbx_err_set(err, -EIO, "cannot watch the libmicrohttpd epoll fd: %s", uv_strerror(r));
        }
        lst->poll.data = lst;
        srv->open_handles++;
        lst->handles_init = true;
        r = uv_poll_start(&lst->poll, UV_READABLE, on_poll);
        if (r < 0)
                return sbx_err_set(err, -EIO, "cannot watch the libmicrohttpd epoll fd: %s", uv_strerror(r));
        /* pick up anything MHD wants to do before its fd fires (nothing, normally) */
        listener_run(lst);
        return 0;
}

int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg, struct http_server **ret,
                      struct sbx_err *err)
{
        struct http_server *srv;
        int r;

        if (!loop || !cfg || !ret || (!cfg->listen && !cfg->unix_path) || (!cfg->routes && cfg->n_routes))
                return sbx_err_set(err, -EINVAL, "invalid HTTP server configuration");
        if (cfg->max_upload > 0 && !cfg->upload_dir)
                return sbx_err_set(err, -EINVAL, "invalid HTTP server configuration: max_upload needs upload_dir");
        /* file replies go out with sendfile(2), which raises SIGPIPE when a client has left (send()
         * uses MSG_NOSIGNAL): the process ignores it, as sbxd does anyway */
        (void)signal(SIGPIPE, SIG_IGN);
        srv = calloc(1, sizeof *srv);
        if (!srv)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        srv->upload_dirfd = -EBADF;
        srv->loop = loop;
        srv->app = cfg->app;
        srv->routes = cfg->routes;
        srv->n_routes = cfg->n_routes;
        srv->open_handles = 1; /* our own reference, dropped in server_finish_stop() */
        srv->max_upload = cfg->max_upload;
        srv->upload_open = cfg->upload_open;
        srv->gate = cfg->gate;
        if (cfg->max_upload > 0) {
                r = server__upload_dir_open(cfg->upload_dir, err);
                if (r < 0)
                        goto fail;
                srv->upload_dirfd = r;
        }
        if (cfg->api_key) {
                srv->api_key = strdup(cfg->api_key);
                if (!srv->api_key) {
                        r = sbx_err_set(err, -ENOMEM, "out of memory");
                        goto fail;
                }
        }
        if (cfg->listen) {
                bool v6 = false;
                int fd = server__listen_tcp(cfg->listen, &v6, err);

                if (fd < 0) {
                        r = fd;
                        goto fail;
                }
                r = listener_start(srv, LISTENER_TCP, fd, v6, err);
                if (r < 0)
                        goto fail;
        }
        if (cfg->unix_path) {
                int fd = server__listen_unix(cfg->unix_path, &srv->unix_path, &srv->unix_dev, &srv->unix_ino, err);

                if (fd < 0) {
                        r = fd;
                        goto fail;
                }
                r = listener_start(srv, LISTENER_UNIX, fd, false, err);
                if (r < 0)
                        goto fail;
        }
        *ret = srv;
        return 0;
fail:
        server_finish_stop(srv);
        return r;
}

unsigned http_server_port(const struct http_server *srv)
{
        const union MHD_DaemonInfo *info;

        if (!srv || !srv->listeners[LISTENER_TCP].mhd)
                return 0;
        info = MHD_get_daemon_info(srv->listeners[LISTENER_TCP].mhd, MHD_DAEMON_INFO_BIND_PORT);
        return info ? info->port : 0;
}

static void server_finish_stop(struct http_server *srv)
{
        struct stat st;

        if (srv->stopping)
                return;
        srv->stopping = true;
        srv->stop_pending = false;

        /* MHD_stop_daemon() must not find suspended connections: resume them all; the daemon
         * then closes every connection and NOTIFY_COMPLETED runs the on_close callbacks. */
        for (struct http_request *req = srv->requests; req; req = req->next)
                server__request_resume(req);
        for (int k = 0; k < LISTENER_KIND_MAX; k++) {
                struct listener *lst = &srv->listeners[k];

                /* close the poll handle before MHD closes the fd it watches */
                if (lst->handles_init) {
                        uv_close((uv_handle_t *)&lst->poll, on_handle_closed);
                        uv_close((uv_handle_t *)&lst->timer, on_handle_closed);
                        lst->handles_init = false;
                }
                if (lst->mhd) {
                        MHD_stop_daemon(lst->mhd);
                        lst->mhd = NULL;
                }
        }
        /* Requests whose client left while the handler still owed a reply and registered no
         * on_close: nothing can reach them through MHD any more. */
        while (srv->requests)
                request_free(srv->requests);

        if (srv->unix_path) {
                if (lstat(srv->unix_path, &st) == 0 && st.st_dev == srv->unix_dev && st.st_ino == srv->unix_ino)
                        (void)unlink(srv->unix_path);
                free(srv->unix_path);
                srv->unix_path = NULL;
        }
        srv->upload_dirfd = safe_close(srv->upload_dirfd);
        if (srv->api_key) {
                explicit_bzero(srv->api_key, strlen(srv->api_key));
                free(srv->api_key);
                srv->api_key = NULL;
        }
        if (--srv->open_handles == 0)
                free(srv);
}

void http_server_stop(struct http_server *srv)
{
        if (!srv || srv->stopping)
                return;
        if (srv->depth > 0) {
                /* called from inside one of our callbacks: MHD is on the stack */
                srv->stop_pending = true;
                return;
        }
        server_finish_stop(srv);
}
