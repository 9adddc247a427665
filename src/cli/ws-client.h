/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI's WebSocket client (RFC 6455), for `sbx shell`: libcurl makes the connection (TCP, TLS
 * or the unix socket, as client.c does) and nothing else (CURLOPT_CONNECT_ONLY); the handshake is
 * written and checked here; wslay does the framing over curl_easy_send/curl_easy_recv. It does not
 * own an event loop: the caller polls the socket beside its own fds (ws_client_prepare, then
 * ws_client_dispatch). Messages from the server are bounded by SBX_CLI_WS_MAX_MESSAGE. It never
 * prints anything; failures are one-line messages in struct cli_err.
 */
#pragma once

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"

struct ws_client;

/*
 * Called for each complete message from the server (binary or text), data borrowed for the call.
 * Returns 0 to go on, or a negative code with err filled: ws_client_dispatch() then reads no
 * further and returns that code.
 */
typedef int (*ws_client_message_fn)(bool binary, const uint8_t *data, size_t len, void *userdata, struct cli_err *err);

/*
 * Connect to url (as client_new() takes it: http://HOST[:PORT][/PREFIX], https://..., or
 * unix:/path.sock) and upgrade `GET path` (path starts with '/', query included) to a WebSocket,
 * sending key (if non-NULL and non-empty) as "Authorization: Bearer KEY". Blocks for at most
 * SBX_CLI_WS_HANDSHAKE_TIMEOUT_S. Messages go to fn(…, userdata) from ws_client_dispatch() only,
 * never from here. Returns 0 and sets *ret (free with ws_client_free()); -CLI_E_CONNECT if the
 * server cannot be reached; -CLI_E_API if it answered with something other than 101 (err holds
 * the server's message and code, as client_request() puts them); -CLI_E_PROTOCOL for a bad 101
 * (wrong Sec-WebSocket-Accept, say); -CLI_E_USAGE for a malformed url or key; -ENOMEM.
 */
int ws_client_connect(const char *url, const char *key, const char *path, ws_client_message_fn fn, void *userdata,
                      struct ws_client **ret, struct cli_err *err);
/* Closes the connection at once (no close frame). NULL-safe; returns NULL. */
struct ws_client *ws_client_free(struct ws_client *ws);

/*
 * Fill pfd->fd and pfd->events for the next poll() (events may be 0: nothing to wait for on the
 * socket now). Returns 1 if input is already buffered (poll with a zero timeout, then dispatch),
 * 0 otherwise, or -EPIPE once the connection is over (closed both ways, or by the server).
 */
int ws_client_prepare(struct ws_client *ws, struct pollfd *pfd);

/*
 * Do the reads and writes pfd->revents allows, and any buffered input: complete messages go to
 * fn. Returns 0 while the connection is open, 1 once it is over (the close handshake finished or
 * the server closed the socket), or a negative code with err filled: -CLI_E_CONNECT (the
 * connection broke), -CLI_E_PROTOCOL (a bad frame, or a message over SBX_CLI_WS_MAX_MESSAGE),
 * -ENOMEM, or fn's error as is. After an error or 1, only ws_client_free() is left to call.
 */
int ws_client_dispatch(struct ws_client *ws, const struct pollfd *pfd, struct cli_err *err);

/*
 * Queue one message (copied) for the next writes: binary, or text (which must be UTF-8).
 * Returns 0, -EPIPE once a close was queued or the connection is over, or -ENOMEM.
 */
int ws_client_send(struct ws_client *ws, bool binary, const void *data, size_t len);
/* Bytes queued and not yet written. */
size_t ws_client_queued(const struct ws_client *ws);
/* Queue a close frame with status code (1000: normal); then wait for the server's. Returns 0 or -EPIPE. */
int ws_client_close(struct ws_client *ws, uint16_t code);
