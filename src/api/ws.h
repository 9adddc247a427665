/* SPDX-License-Identifier: Apache-2.0 */
/*
 * WebSocket (RFC 6455) server side: a handler that sees "Upgrade: websocket" calls ws_accept()
 * instead of replying, then pushes text and binary frames with ws_send_text() / ws_send_binary(),
 * refilling on the drain callback (ws_on_drain). Frames from the client are read and answered as
 * the protocol needs (ping -> pong, close -> close); their data is thrown away unless the caller
 * takes client messages with ws_on_message(), which ws_pause_read() holds back (back-pressure).
 * Everything runs on the server's loop thread and never blocks it; at most SBX_STREAM_BUFFER bytes
 * wait to be sent per connection.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/server.h"
#include "common/err.h"

struct ws_conn;

/* The callbacks receive the data pointer given to ws_accept(), and run on the loop thread. */
typedef void (*ws_closed_fn)(struct ws_conn *c, void *data);
typedef void (*ws_drain_fn)(struct ws_conn *c, void *data);
typedef void (*ws_message_fn)(struct ws_conn *c, bool binary, const uint8_t *msg, size_t len, void *data);

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
 * Queue one text frame (len bytes, valid UTF-8 is the caller's business; copied). 0, -ENOBUFS when
 * more than SBX_STREAM_BUFFER bytes would be queued (the frame is dropped; see ws_send_room and
 * ws_on_drain), -EMSGSIZE if the frame alone would be more than that, -EPIPE after close (ours, the
 * client's, or a protocol error). Before the upgrade completed (MHD hands the socket over a bit
 * later) frames are queued and sent then. Never calls the caller's callbacks.
 */
int ws_send_text(struct ws_conn *c, const char *text, size_t len);
/* Queue one binary frame; same rules and returns as ws_send_text. */
int ws_send_binary(struct ws_conn *c, const void *data, size_t len);
/*
 * Bytes one frame may carry right now without -ENOBUFS (0 when closing or closed): what
 * SBX_STREAM_BUFFER leaves beside the queue, less the fixed cost each queued frame counts. A caller
 * sizes its next frame with it; a small answer also arms the drain callback like -ENOBUFS does.
 */
size_t ws_send_room(struct ws_conn *c);
/*
 * fn(c, data) is called on the loop thread once a send returned -ENOBUFS (or ws_send_room found the
 * queue over SBX_STREAM_BUFFER / 2) and the queue has since drained to at most SBX_STREAM_BUFFER / 2:
 * right after a socket write, or on the next loop turn when the caller's own send flushed it. Never
 * from inside ws_send_* or any other call of this API, never after ws_close() or the client's close,
 * never after closed(). fn may queue frames (and fill the queue again) and may call ws_close. It can
 * come once more than needed. fn NULL removes it.
 */
void ws_on_drain(struct ws_conn *c, ws_drain_fn fn);
/*
 * Take the client's data messages: once set, text and binary messages are assembled (fragments
 * joined) up to max_len bytes each (capped at SBX_WS_MAX_MESSAGE; a bigger message closes the
 * connection with 1009, a text message that is not UTF-8 with 1007) and handed whole to
 * fn(c, binary, msg, len, data); msg is valid only during the call. Until this is set (and again
 * after fn NULL) data messages are thrown away. May be called right after ws_accept returned, also
 * before the upgrade completed: messages sent right behind the handshake arrive too. Set while a
 * message is being read, it takes effect from the next message. fn may call ws_send_*, ws_close
 * (then no further message is delivered) and ws_pause_read. Messages are not delivered after ws_close.
 */
void ws_on_message(struct ws_conn *c, size_t max_len, ws_message_fn fn);
/*
 * Stop (paused true) or restart reading client frames: back-pressure, e.g. while the consumer of
 * the messages is full. Takes effect at once, also from inside the message callback: no message is
 * delivered while paused (the few already read are kept, at most one message of max_len and 4 KiB
 * more, and delivered in order after the restart, on a later loop turn). While paused nothing is
 * read, so pings are not answered either; the socket's buffers fill and the client's TCP blocks.
 * Closing still works while paused: ws_close reads on for the client's answer, and the server stop
 * closes as always.
 */
void ws_pause_read(struct ws_conn *c, bool paused);
/* Queue a ping (the client answers with a pong, which is read and ignored). Same returns as
 * ws_send_text. */
int ws_ping(struct ws_conn *c);
/*
 * Send a close frame (code, reason: cut to 123 bytes at a character boundary; code 0 sends none),
 * then close the socket once the client answers or after 2 s; closed() follows (later, never from
 * inside this call). Frames queued before go out first; client messages not yet delivered are
 * dropped. Safe from inside the message and drain callbacks. Later calls, and calls after the client
 * closed, do nothing.
 */
void ws_close(struct ws_conn *c, uint16_t code, const char *reason);
