/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WebSocket (RFC 6455) server side for event routes: a handler that sees "Upgrade: websocket"
 * calls ws_accept() instead of replying, then pushes text frames with ws_send_text(). Frames from
 * the client are read and answered as the protocol needs (ping -> pong, close -> close) but their
 * data is thrown away: these sockets carry events to the client only. Everything runs on the
 * server's loop thread and never blocks it; at most SBX_STREAM_BUFFER bytes wait per connection.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "api/server.h"
#include "common/err.h"

struct ws_conn;

typedef void (*ws_closed_fn)(struct ws_conn *c, void *data);

/*
 * Answer req with 101 Switching Protocols if it is a valid WebSocket handshake (GET over HTTP/1.1,
 * Upgrade: websocket, Connection containing "upgrade" (case-insensitive, comma list),
 * Sec-WebSocket-Version: 13, a Sec-WebSocket-Key of 16 bytes base64). Else -SBX_E_INVALID with
 * reason "bad_websocket_handshake" and a message, and nothing replied (the caller replies with it).
 * closed(c, data) is called exactly once, on the loop thread, when the connection is gone (client
 * close, error, server stop, or after ws_close finished); c is freed after it returns. ws_accept
 * takes the request's on_close callback (http_request_on_close) for itself: do not set another.
 */
int ws_accept(struct http_request *req, ws_closed_fn closed, void *data, struct ws_conn **ret, struct sbx_err *err);
/*
 * Queue one text frame (len bytes, valid UTF-8 is the caller's business). 0, -ENOBUFS when more
 * than SBX_STREAM_BUFFER bytes would be queued (the frame is dropped), -EMSGSIZE if len alone is
 * more than that, -EPIPE after close. Before the upgrade completed (MHD hands the socket over a
 * bit later) frames are queued and sent then.
 */
int ws_send_text(struct ws_conn *c, const char *text, size_t len);
/* Queue a ping (the client answers with a pong, which is read and ignored). Same returns. */
int ws_ping(struct ws_conn *c);
/*
 * Send a close frame (code, reason: cut to 123 bytes at a character boundary; code 0 sends none),
 * then close the socket once the client answers or after 2 s; closed() follows. Frames queued
 * before go out first. Later calls, and calls after the client closed, do nothing.
 */
void ws_close(struct ws_conn *c, uint16_t code, const char *reason);
