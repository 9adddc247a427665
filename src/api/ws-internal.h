/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure parts of ws.c, private to src/api and exposed for the unit tests: the handshake checks,
 * the accept key and the payload of the close frames we send, plus the limits and costs ws.c works
 * with. The framing itself is wslay's. No I/O, no allocation, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define WS_MAX_CONTROL_PAYLOAD 125    /* RFC 6455 §5.5 */
#define WS_MAX_CLOSE_REASON 123       /* control payload minus the 2-byte code */
#define WS_MAX_IN_PAYLOAD (64 * 1024) /* no message callback: a client frame beyond this gets 1009 */
#define WS_CLOSE_TIMEOUT_MS 2000      /* wait for the client's close frame after ours */
#define WS_ACCEPT_LEN 28              /* base64 of a SHA-1 digest */
/* What one queued frame counts against SBX_STREAM_BUFFER besides its payload: its header and
 * wslay's bookkeeping, so that empty frames are not free. */
#define WS_FRAME_COST 64

/* Sec-WebSocket-Accept for key (which must be 16 bytes in base64: 24 characters). Writes
 * WS_ACCEPT_LEN characters and a NUL into ret. Returns 0 or -EINVAL. */
int ws__accept_key(const char *key, char ret[WS_ACCEPT_LEN + 1]);

/* True if the comma-separated header value list holds token (case-insensitive, spaces and tabs
 * around items ignored). */
bool ws__has_token(const char *list, const char *token);

/*
 * The handshake checks of ws_accept() on the request's method and header values (NULL: absent).
 * Returns 0, or -SBX_E_INVALID with reason "bad_websocket_handshake" and a message in err.
 */
int ws__check_handshake(const char *method, const char *upgrade, const char *connection, const char *version,
                        const char *key, struct sbx_err *err);

/* May a close frame we send carry this code (RFC 6455 §7.4)? 1000-1003, 1007-1014 and 3000-4999. */
bool ws__close_code_valid(unsigned code);

/* The payload of a close frame: code (big-endian) and reason cut to WS_MAX_CLOSE_REASON bytes at a
 * UTF-8 character boundary; empty if code is 0 or not valid to send. buf holds
 * WS_MAX_CONTROL_PAYLOAD bytes. Returns the payload length. */
size_t ws__close_payload(uint8_t *buf, uint16_t code, const char *reason);
