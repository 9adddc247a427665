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
#include <uv.h>

#include "common/err.h"
#include "common/limits.h"

struct http_server;
struct http_request;
struct http_stream;
struct route; /* api/router.h */

typedef void (*http_handler_fn)(struct http_request *req);

struct http_server_config {
        const char *listen;      /* "ADDR:PORT" (IPv4 or [IPv6]); port 0 picks a free one; NULL = none */
        const char *unix_path;   /* unix socket path, NULL = none; an existing socket file is replaced */
        const char *api_key;     /* required Bearer token */
        void *app;               /* handed to handlers through http_request_app() */
        const struct route *routes; /* route table (the daemon passes api_routes from routes.c) */
        size_t n_routes;
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
/* The collected body (NUL-terminated for convenience; len excludes the NUL). */
const char *http_request_body(const struct http_request *req, size_t *ret_len);
/* Parse the body as a JSON object (strict, duplicate keys rejected). On failure replies 400
 * invalid_json (naming line/column) itself and returns NULL; the handler just returns. */
json_t *http_request_json(struct http_request *req);

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

/* --- additions (see docs/internals/api.md) --- */

/* Call fn(key, value, data) for every query argument in request order (%-decoded; value NULL for
 * "?flag"). Stops early and returns fn's value when it returns non-zero; else returns 0. Used for
 * open-ended filters such as metadata.KEY=VALUE. */
int http_request_query_foreach(const struct http_request *req,
                               int (*fn)(const char *key, const char *value, void *data), void *data);

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
 */
