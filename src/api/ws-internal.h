/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure parts of ws.c (RFC 6455 framing and the handshake checks), private to src/api and
 * exposed for the unit tests: no I/O, no allocation, no logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define WS_MAX_HEADER 14              /* 2 + 8 (64-bit length) + 4 (mask) */
#define WS_MAX_CONTROL_PAYLOAD 125    /* RFC 6455 §5.5 */
#define WS_MAX_CLOSE_REASON 123       /* control payload minus the 2-byte code */
#define WS_MAX_IN_PAYLOAD (64 * 1024) /* a client frame beyond this is refused with 1009 */
#define WS_CLOSE_TIMEOUT_MS 2000      /* wait for the client's close frame after ours */
#define WS_ACCEPT_LEN 28              /* base64 of a SHA-1 digest */

enum ws_opcode {
        WS_OP_CONT = 0x0,
        WS_OP_TEXT = 0x1,
        WS_OP_BINARY = 0x2,
        WS_OP_CLOSE = 0x8,
        WS_OP_PING = 0x9,
        WS_OP_PONG = 0xa,
};

/* Close codes we send (RFC 6455 §7.4.1). */
enum {
        WS_CLOSE_NORMAL = 1000,
        WS_CLOSE_GOING_AWAY = 1001,
        WS_CLOSE_PROTOCOL = 1002,
        WS_CLOSE_INVALID_DATA = 1007,
        WS_CLOSE_TOO_BIG = 1009,
};

struct ws_frame {
        bool fin;
        unsigned opcode; /* enum ws_opcode */
        bool masked;
        uint8_t mask[4];
        uint64_t len;      /* payload bytes */
        size_t header_len; /* bytes before the payload */
};

/*
 * Write a frame header into buf (WS_MAX_HEADER bytes): FIN if fin, opcode, the payload length in
 * the shortest form, and the masking key if mask is non-NULL (servers send unmasked frames; the
 * tests build client frames with one). Returns the header length.
 */
size_t ws__encode_header(uint8_t *buf, bool fin, unsigned opcode, uint64_t len, const uint8_t mask[4]);

/*
 * Parse the header of a frame sent by a client from buf[0, n). Returns the header length (> 0)
 * with *ret filled, 0 if more bytes are needed, or -EPROTO (close 1002: reserved bits set, unknown
 * opcode, unmasked frame, a fragmented or longer than 125 bytes control frame, a 64-bit length with
 * the top bit set), -EMSGSIZE (close 1009: payload longer than WS_MAX_IN_PAYLOAD).
 */
int ws__parse_header(const uint8_t *buf, size_t n, struct ws_frame *ret);

/* XOR len bytes of data with mask, data being at offset bytes into the payload (masking is
 * position-dependent, so a payload may be unmasked in pieces). Its own inverse. */
void ws__mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);

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

/* May a close frame carry this code (RFC 6455 §7.4)? 1000-1003, 1007-1014 and 3000-4999. */
bool ws__close_code_valid(unsigned code);

/* The payload of a close frame: code (big-endian) and reason cut to WS_MAX_CLOSE_REASON bytes at a
 * UTF-8 character boundary; empty if code is 0 or not valid to send. buf holds
 * WS_MAX_CONTROL_PAYLOAD bytes. Returns the payload length. */
size_t ws__close_payload(uint8_t *buf, uint16_t code, const char *reason);
