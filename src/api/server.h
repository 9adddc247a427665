/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 server: libmicrohttpd in external-epoll mode, its epoll fd nested in the libuv loop
 * (uv_poll_t + a uv timer driven by MHD_get_timeout). One MHD daemon per listener (TCP, unix).
 * Requests are routed by the generated table (routes.def); handlers run on the loop thread.
 *
 * A handler either replies before it returns, or calls nothing and replies later (the request is
 * suspended until then). Exactly one reply per request. Bodies are collected up to
 * SBX_MAX_JSON_BODY (413 beyond). Auth (Bearer) is checked before the handler runs.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/limits.h"

struct http_server;
struct http_request;
struct http_stream;
struct route; /* api/router.h */

typedef void (*http_handler_fn)(struct http_request *req);

/*
 * Upload routes may put the body somewhere else than an O_TMPFILE in upload_dir: called once the
 * route and auth passed, before any body byte is read. Return 0 with *ret_fd -1 for the default;
 * 0 with an fd (the server owns it and writes the body into it; *ret_max = the byte limit for
 * this body, preset to max_upload); or < 0 with err (the request gets that error).
 */
typedef int (*http_upload_open_fn)(struct http_request *req, int *ret_fd, uint64_t *ret_max, struct sbx_err *err);

/* Called before the handler of a route marked "resume" (router.h), once the body is in (upload
 * routes: before their body is opened, so only the query counts). < 0 with err: the request gets
 * that error instead. */
typedef int (*http_gate_fn)(struct http_request *req, struct sbx_err *err);

struct http_server_config {
        const char *listen;      /* "ADDR:PORT" (IPv4 or [IPv6]); port 0 picks a free one; NULL = none */
        const char *unix_path;   /* unix socket path, NULL = none; an existing socket file is replaced */
        const char *api_key;     /* required Bearer token */
        void *app;               /* handed to handlers through http_request_app() */
        const struct route *routes; /* route table (the daemon passes api_routes from routes.c) */
        size_t n_routes;
        const char *upload_dir; /* directory on the data disk for upload bodies (O_TMPFILE files);
                                 * opened once at start; required when max_upload > 0 */
        uint64_t max_upload;    /* bytes per upload body; 0 = upload routes answer 413 */
        http_upload_open_fn upload_open; /* NULL: every upload goes to upload_dir */
        http_gate_fn gate;       /* NULL: none; see http_gate_fn */
};

/* Start listening. *ret owns the MHD daemons and uv handles. */
int http_server_start(uv_loop_t *loop, const struct http_server_config *cfg, struct http_server **ret,
                      struct sbx_err *err);
/* The TCP port actually bound (useful with port 0), or 0. */
unsigned http_server_port(const struct http_server *srv);
/* Stop accepting, close every connection, release. Safe with NULL. */
void http_server_stop(struct http_server *srv);

/* --- request accessors (valid until the reply is sent) --- */
void *http_request_app(const struct http_request *req);
const char *http_request_method(const struct http_request *req);
const char *http_request_path(const struct http_request *req);
/* Path parameter by position ({id} is 0). NULL if absent. */
const char *http_request_param(const struct http_request *req, unsigned idx);
/* Query argument (already %-decoded) or header (case-insensitive). NULL if absent. */
const char *http_request_query(const struct http_request *req, const char *key);
const char *http_request_header(const struct http_request *req, const char *name);
/* A query argument with its decoded length: "%00" decodes to a NUL that strlen would hide. "" for
 * "?key" without a value, NULL if absent. */
const char *http_request_query_n(const struct http_request *req, const char *key, size_t *ret_len);
/*
 * For upload_open: write the body out behind it. Every SBX_UPLOAD_WRITE_BEHIND bytes, a worker
 * thread starts the writeback of that piece and drops it from the page cache
 * (posix_fadvise DONTNEED), so a big body is on disk when it ends and the final fsync has little
 * left: without it the kernel starts writing back only at the fsync (its thresholds are a share of
 * RAM) and receive time and disk time add up. For bodies that are kept (files), not re-read.
 */
void http_request_upload_write_behind(struct http_request *req);
/* The matched route's handler (NULL before routing): lets upload_open tell routes apart. */
http_handler_fn http_request_handler(const struct http_request *req);
/* The collected body (NUL-terminated for convenience; len excludes the NUL). */
const char *http_request_body(const struct http_request *req, size_t *ret_len);
/* Parse the body as a JSON object (strict, duplicate keys rejected). On failure replies 400
 * invalid_json (naming line/column) itself and returns NULL; the handler just returns. */
json_t *http_request_json(struct http_request *req);

/*
 * Upload routes (struct route.upload): the body was written to an unnamed O_TMPFILE file in
 * upload_dir while it arrived; the handler runs once all of it is there. Returns that file, its
 * offset rewound to 0 before the handler ran, or -1 if the route is not an upload route. The server
 * owns it and closes it when the request is freed (after the reply, or after on_close); a handler
 * that needs it longer takes its own copy with fcntl(fd, F_DUPFD_CLOEXEC, 3). To keep the data,
 * linkat() it through /proc/self/fd/N (AT_SYMLINK_FOLLOW) into a directory on the same filesystem.
 * http_request_body() is empty on upload routes.
 */
int http_request_upload_fd(const struct http_request *req);
/* Bytes in the upload file (0 for other routes). */
uint64_t http_request_upload_size(const struct http_request *req);

/* Set a callback run if the request is aborted or completed before/after the reply (for
 * cancelling async work). Called at most once, on the loop thread. */
void http_request_on_close(struct http_request *req, void (*cb)(struct http_request *req, void *data), void *data);

/* --- replies (exactly one per request; may be called later, from any loop callback) --- */
/* Takes ownership of body (may be NULL for an empty body). */
void http_reply_json(struct http_request *req, unsigned status, json_t *body);
void http_reply_data(struct http_request *req, unsigned status, const char *content_type, const void *data, size_t len);
/* Error reply: JSON {"error":{"code":...,"message":...}} with the status from src/api/errors.c. */
void http_reply_error(struct http_request *req, const struct sbx_err *err);
/* Shorthand: build the sbx_err and reply. */
void http_reply_errorf(struct http_request *req, int code, const char *reason, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* A field added to the JSON object reply this request gets (json_object_set_new semantics; value
 * taken). Error replies and non-object bodies do not get it. */
void http_reply_field(struct http_request *req, const char *key, json_t *value);
/* Add a header to the (success) reply this request gets next; at most 8. Returns 0 or -errno. */
int http_reply_header(struct http_request *req, const char *name, const char *value);
/* Reply with len bytes of fd from offset (sent with sendfile; fd is taken and closed). */
void http_reply_fd(struct http_request *req, unsigned status, const char *content_type, int fd, uint64_t offset,
                   uint64_t len);
/* One pointer for the application per request (e.g. set by upload_open, read by the handler). */
void http_request_set_data(struct http_request *req, void *data);
void *http_request_data(const struct http_request *req);

/* --- streamed replies: chunked transfer encoding --- */
/* Start a chunked reply. Returns the stream; the request is finished by http_stream_end(). */
struct http_stream *http_reply_stream(struct http_request *req, unsigned status, const char *content_type);
/* Queue bytes (copied). Returns 0, or -ENOBUFS when more than SBX_STREAM_BUFFER bytes wait
 * (caller should pause its producer until the drain callback), or -EPIPE if the client is gone. */
int http_stream_write(struct http_stream *s, const void *data, size_t len);
/* Called when queued bytes drop below half the buffer after an -ENOBUFS. */
void http_stream_on_drain(struct http_stream *s, void (*cb)(struct http_stream *s, void *data), void *data);
/* Flush what is queued and end the reply. The stream is freed by the server afterwards. */
void http_stream_end(struct http_stream *s);

#define SBX_STREAM_BUFFER (256 * 1024)

/* --- Server-Sent Events (text/event-stream on a chunked stream) --- */
/* Start an event stream: 200, Content-Type: text/event-stream, Cache-Control: no-cache,
 * X-Accel-Buffering: no. Same contract as http_reply_stream() (NULL: replied 500). A reconnecting
 * client's last id is http_request_header(req, "Last-Event-ID"). */
struct http_stream *http_reply_sse(struct http_request *req);
/*
 * Queue one event: "event: E\n" (if event), "id: I\n" (if id), "data: LINE\n" for every line of
 * data (split at \n, \r\n and \r; "" is one empty line, NULL none), then "\n". Same return codes
 * as http_stream_write (all or nothing), plus -EINVAL if event or id contains CR or LF (either
 * would end the field early and let the rest pose as another field).
 */
int http_sse_send(struct http_stream *s, const char *event, const char *id, const char *data);
/* Queue a comment, ": TEXT\n" per line of text, then "\n" (keep-alives; clients ignore it). */
int http_sse_comment(struct http_stream *s, const char *text);
/*
 * The formatter behind http_sse_send (pure): writes the event into buf like snprintf (at most size
 * bytes, NUL-terminated if size > 0) and returns the length it needs, without the NUL. CR and LF in
 * event and id are left out here (http_sse_send refuses them instead).
 */
size_t http_sse_format(char *buf, size_t size, const char *event, const char *id, const char *data);

/* --- additions (see docs/internals/api.md) --- */

/* Call fn(key, value, data) for every query argument in request order (%-decoded; value NULL for
 * "?flag"). Stops early and returns fn's value when it returns non-zero; else returns 0. Used for
 * open-ended filters such as metadata.KEY=VALUE. */
int http_request_query_foreach(const struct http_request *req,
                               int (*fn)(const char *key, const char *value, void *data), void *data);

/* The loop the server runs on (for uv handles that live with a request, e.g. a WebSocket). */
uv_loop_t *http_request_loop(const struct http_request *req);

/* --- protocol upgrade (101 Switching Protocols; the WebSocket side is ws.c) --- */
/*
 * Reply 101 with "Connection: Upgrade" (libmicrohttpd adds it) and the { name, value } headers in
 * hdrs (ended by a NULL name; must include "Upgrade"). Once the 101 has gone out, on_upgraded(cls,
 * sock, urh, extra, extra_len) runs on the loop thread (inside the server's MHD_run): sock is the
 * client's socket (non-blocking), now the caller's to read and write but never to close; extra
 * holds bytes the client sent after its request that the server had already read. urh is the
 * handle for http_upgrade_close(). Nothing is called if the client leaves before the 101 is out;
 * the request's on_close callback tells (register it before this call).
 * Returns 0 (the request is answered); or, with nothing replied, -EALREADY (already answered),
 * -EPIPE (the client is gone), -EPROTO (not an HTTP/1.1 request, which cannot be upgraded), -EINVAL
 * (no Upgrade header), -ENOMEM.
 */
int http_reply_upgrade(struct http_request *req, const char *const (*hdrs)[2],
                       void (*on_upgraded)(void *cls, int sock, void *urh, const char *extra, size_t extra_len),
                       void *cls);
/*
 * Give the upgraded socket back: the server closes it on its next run, and then the request ends
 * (MHD_REQUEST_TERMINATED_COMPLETED_OK: its on_close callback runs and the request is freed). Stop
 * watching sock first. urh is valid from on_upgraded until the request's on_close callback (also
 * run when the server stops with the connection still upgraded); call this at most once.
 */
void http_upgrade_close(void *urh);

/*
 * Notes on the contracts above, as implemented in server.c:
 * - Everything runs on the loop thread. http_server_stop() may be called from any loop callback,
 *   also from a handler (then it completes when the server's current callback returns); run the
 *   loop afterwards so the uv handles close and the last memory is released.
 * - http_request_json() on an empty body returns an empty object.
 * - After the on_close callback returns, the request and its stream are freed: the caller must not
 *   touch either again. Without an on_close callback, a request whose client went away stays
 *   allocated until the handler replies (or ends its stream); writes then return -EPIPE.
 * - http_stream_write() is all-or-nothing: on -ENOBUFS nothing was queued; a single write larger
 *   than SBX_STREAM_BUFFER returns -EMSGSIZE; after http_stream_end() it returns -EINVAL.
 * - http_reply_stream() returns NULL if the stream cannot be set up; it has replied 500 then.
 * - A second reply to the same request is ignored and logged (programmer error).
 * - Upload routes (route.upload) do not collect the body in memory: it goes to an O_TMPFILE file
 *   in cfg->upload_dir as MHD hands it over (MHD's 16 KiB connection buffer is all the memory it
 *   takes), after routing and auth passed, so a refused request writes nothing. A declared
 *   Content-Length over max_upload (or max_upload 0) gets 413 payload_too_large before any byte is
 *   read; a chunked body that passes max_upload gets it after the rest is drained (the file is
 *   closed at once). A full disk (ENOSPC, EDQUOT) answers 503 insufficient_storage, other write
 *   errors 500. A refused upload (401, 413, 503) is answered before its body when the client waits
 *   for "100 Continue" or declared a large body; then the connection is closed. Otherwise up to
 *   4 MiB more are drained and then the connection is dropped.
 * - A client that leaves in the middle of an upload frees its file when MHD notices. With a reset
 *   that is at once; a plain close (FIN) that reaches the server together with the last bytes is
 *   only noticed at the idle timeout (SBX_HTTP_CONNECTION_TIMEOUT_S): libmicrohttpd 0.9.75 in
 *   epoll mode takes a short recv() as "socket drained" and waits for an edge that never comes.
 *   The partial file holds its disk space until then.
 */
