// SPDX-License-Identifier: Apache-2.0
/*
 * WebSocket server side (ws.h): the RFC 6455 handshake on top of http_reply_upgrade(), then the
 * framing on the socket libmicrohttpd hands over, watched with a uv_poll_t on the server's loop.
 * Server frames go out unmasked from one bounded queue (non-blocking send, polled for writable
 * while bytes wait); client frames must be masked and are parsed as they arrive: pings are
 * answered, a close is answered and ends the connection, data frames are skipped without being
 * buffered. It never closes the socket itself (MHD does, after http_upgrade_close()) and learns
 * that the connection is over from the request's on_close callback, which is where closed() runs.
 * The pure framing and handshake helpers at the top are ws-internal.h (unit-tested).
 */
#include "api/ws.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <uv.h>

#include "api/ws-internal.h"
#include "common/log.h"
#include "common/util.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24        /* base64 of 16 bytes */
#define WS_IN_BUFFER 4096    /* unparsed input: a partial header or one control frame stays in it */
#define WS_READS_PER_POLL 16 /* recv() calls per readable event before giving the loop back */
/* Queue room beyond SBX_STREAM_BUFFER for control frames, so a client that stops reading cannot
 * keep our close frame out: pongs may use up to PONG, the close frame up to CLOSE. */
#define WS_OUT_RESERVE_PONG 256
#define WS_OUT_RESERVE_CLOSE 512

/* ---------- pure helpers (ws-internal.h) ---------- */

size_t ws__encode_header(uint8_t *buf, bool fin, unsigned opcode, uint64_t len, const uint8_t mask[4])
{
        uint8_t m = mask ? 0x80 : 0;
        size_t n;

        buf[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
        if (len < 126) {
                buf[1] = (uint8_t)(m | len);
                n = 2;
        } else if (len <= 0xffff) {
                buf[1] = m | 126;
                buf[2] = (uint8_t)(len >> 8);
                buf[3] = (uint8_t)len;
                n = 4;
        } else {
                buf[1] = m | 127;
                for (int i = 0; i < 8; i++)
                        buf[2 + i] = (uint8_t)(len >> (56 - 8 * i));
                n = 10;
        }
        if (mask) {
                memcpy(buf + n, mask, 4);
                n += 4;
        }
        return n;
}

int ws__parse_header(const uint8_t *buf, size_t n, struct ws_frame *ret)
{
        unsigned opcode, len7;
        size_t hl = 2;
        uint64_t len = 0;

        if (n < 2)
                return 0;
        opcode = buf[0] & 0x0f;
        len7 = buf[1] & 0x7f;
        /* no extension was negotiated, so the RSV bits must be clear (§5.2) */
        if (buf[0] & 0x70)
                return -EPROTO;
        switch (opcode) {
        case WS_OP_CONT:
        case WS_OP_TEXT:
        case WS_OP_BINARY:
                break;
        case WS_OP_CLOSE:
        case WS_OP_PING:
        case WS_OP_PONG:
                /* control frames: never fragmented, at most 125 bytes (§5.5) */
                if (!(buf[0] & 0x80) || len7 > WS_MAX_CONTROL_PAYLOAD)
                        return -EPROTO;
                break;
        default:
                return -EPROTO;
        }
        /* a client masks every frame; a server must close on an unmasked one (§5.1) */
        if (!(buf[1] & 0x80))
                return -EPROTO;
        hl += len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        hl += 4;
        if (n < hl)
                return 0;
        if (len7 == 126)
                len = (uint64_t)buf[2] << 8 | buf[3];
        else if (len7 == 127) {
                for (int i = 0; i < 8; i++)
                        len = len << 8 | buf[2 + i];
                if (len >> 63)
                        return -EPROTO;
        } else
                len = len7;
        if (len > WS_MAX_IN_PAYLOAD)
                return -EMSGSIZE;
        *ret = (struct ws_frame){
                .fin = buf[0] & 0x80,
                .opcode = opcode,
                .masked = true,
                .len = len,
                .header_len = hl,
        };
        memcpy(ret->mask, buf + hl - 4, 4);
        return (int)hl;
}

void ws__mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
        for (size_t i = 0; i < len; i++)
                data[i] ^= mask[(offset + i) & 3];
}

int ws__accept_key(const char *key, char ret[WS_ACCEPT_LEN + 1])
{
        uint8_t raw[WS_KEY_LEN / 4 * 3], digest[SHA_DIGEST_LENGTH];
        char buf[WS_KEY_LEN + sizeof WS_GUID];

        if (!key || strlen(key) != WS_KEY_LEN || base64_decode(key, WS_KEY_LEN, raw) != 16)
                return -EINVAL;
        memcpy(buf, key, WS_KEY_LEN);
        memcpy(buf + WS_KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
        (void)SHA1((const unsigned char *)buf, WS_KEY_LEN + sizeof WS_GUID - 1, digest);
        (void)base64_encode(digest, sizeof digest, ret);
        return 0;
}

/* s[0, n) without the spaces and tabs around it equals token (case-insensitive) */
static bool item_is(const char *s, size_t n, const char *token)
{
        while (n > 0 && (*s == ' ' || *s == '\t')) {
                s++;
                n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        return n == strlen(token) && strncasecmp(s, token, n) == 0;
}

bool ws__has_token(const char *list, const char *token)
{
        if (!list)
                return false;
        for (;;) {
                size_t n = strcspn(list, ",");

                if (item_is(list, n, token))
                        return true;
                if (!list[n])
                        return false;
                list += n + 1;
        }
}

int ws__check_handshake(const char *method, const char *upgrade, const char *connection, const char *version,
                        const char *key, struct sbx_err *err)
{
        char accept[WS_ACCEPT_LEN + 1];
        const char *why = NULL;

        if (!method || strcmp(method, "GET") != 0)
                why = "a websocket handshake must be a GET request";
        else if (!ws__has_token(upgrade, "websocket"))
                why = "a websocket handshake needs 'Upgrade: websocket'";
        else if (!ws__has_token(connection, "upgrade"))
                why = "a websocket handshake needs 'Connection: Upgrade'";
        else if (!version || !item_is(version, strlen(version), "13"))
                why = "only websocket version 13 is supported ('Sec-WebSocket-Version: 13')";
        else if (ws__accept_key(key, accept) < 0)
                why = "'Sec-WebSocket-Key' must be 16 bytes in base64";
        if (why)
                return sbx_err_setr(err, -SBX_E_INVALID, "bad_websocket_handshake", "%s", why);
        return 0;
}

bool ws__close_code_valid(unsigned code)
{
        return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

size_t ws__close_payload(uint8_t *buf, uint16_t code, const char *reason)
{
        size_t n = reason ? strlen(reason) : 0;

        if (!ws__close_code_valid(code))
                return 0;
        if (n > WS_MAX_CLOSE_REASON) {
                /* cut before the character that reason[n] belongs to, not inside it */
                n = WS_MAX_CLOSE_REASON;
                while (n > 0 && ((uint8_t)reason[n] & 0xc0) == 0x80)
                        n--;
        }
        buf[0] = (uint8_t)(code >> 8);
        buf[1] = (uint8_t)code;
        if (n > 0)
                memcpy(buf + 2, reason, n);
        return 2 + n;
}

/* ---------- connections ---------- */

struct ws_conn {
        uv_loop_t *loop;
        ws_closed_fn closed;
        void *data;
        void *urh; /* the server's upgrade handle: from the upgrade to http_upgrade_close */
        int fd;    /* client socket, MHD's (never closed here); -EBADF before the upgrade */

        uv_timer_t timer; /* close handshake / flush deadline */
        uv_poll_t poll;   /* on fd, from the upgrade until ws_finish */
        unsigned handles; /* uv handles not yet closed; c is freed at 0 once gone */
        bool poll_active; /* poll initialised and not closed */
        int poll_events;  /* what poll is started for (0: stopped) */

        bool upgraded;        /* on_upgraded ran */
        bool close_sent;      /* our close frame is queued: nothing more goes in the queue */
        bool close_received;  /* the client closed (or broke the protocol): input is no longer read */
        bool finish_on_flush; /* give the socket back once the queue is empty */
        bool finish_pending;  /* the deadline passed before the upgrade: finish right at it */
        bool finished;        /* the socket was given back (or there never will be one) */
        bool gone;            /* the request ended: closed() ran */

        bool in_message; /* a fragmented data message is open: continuation frames may follow */
        uint64_t skip;   /* payload bytes of the current data frame still to throw away */

        uint8_t *out; /* queued bytes are out[out_head, out_head + out_len) */
        size_t out_head, out_len, out_cap;

        uint8_t in[WS_IN_BUFFER]; /* unparsed input */
        size_t in_len;
};

static void ws_free(struct ws_conn *c)
{
        free(c->out);
        free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
        struct ws_conn *c = h->data;

        if (--c->handles == 0 && c->gone)
                ws_free(c);
}

static void ws_close_poll(struct ws_conn *c)
{
        if (c->poll_active) {
                c->poll_active = false;
                uv_close((uv_handle_t *)&c->poll, on_handle_closed);
        }
}

/*
 * Give the socket back to the server, which closes it; the request then ends and
 * on_request_end() calls closed(). Before the upgrade there is no socket yet: it happens as soon as
 * there is one.
 */
static void ws_finish(struct ws_conn *c)
{
        if (c->finished || c->gone)
                return;
        if (!c->upgraded) {
                c->finish_pending = true;
                return;
        }
        c->finished = true;
        (void)uv_timer_stop(&c->timer);
        /* stop watching fd before the server closes it */
        ws_close_poll(c);
        http_upgrade_close(c->urh);
        c->urh = NULL;
}

static void on_timeout(uv_timer_t *t)
{
        struct ws_conn *c = t->data;

        log_debug("ws: no close handshake within %d ms, closing the connection", WS_CLOSE_TIMEOUT_MS);
        ws_finish(c);
}

static void ws_deadline(struct ws_conn *c)
{
        if (!uv_is_active((uv_handle_t *)&c->timer))
                (void)uv_timer_start(&c->timer, on_timeout, WS_CLOSE_TIMEOUT_MS, 0);
}

/* Queue one frame, all or nothing, if the queue stays within limit bytes. 0 or -ENOBUFS/-ENOMEM. */
static int ws_queue(struct ws_conn *c, unsigned opcode, const void *payload, size_t len, size_t limit)
{
        uint8_t hdr[WS_MAX_HEADER];
        size_t hl = ws__encode_header(hdr, true, opcode, len, NULL), need = hl + len;

        if (c->out_len + need > limit)
                return -ENOBUFS;
        if (c->out_head + c->out_len + need > c->out_cap) {
                if (c->out_head > 0) {
                        memmove(c->out, c->out + c->out_head, c->out_len);
                        c->out_head = 0;
                }
                if (c->out_len + need > c->out_cap) {
                        size_t want = c->out_cap ? c->out_cap : 4096;
                        uint8_t *p;

                        while (want < c->out_len + need)
                                want *= 2;
                        if (want > SBX_STREAM_BUFFER + WS_OUT_RESERVE_CLOSE)
                                want = SBX_STREAM_BUFFER + WS_OUT_RESERVE_CLOSE;
                        p = realloc(c->out, want);
                        if (!p)
                                return -ENOMEM;
                        c->out = p;
                        c->out_cap = want;
                }
        }
        memcpy(c->out + c->out_head + c->out_len, hdr, hl);
        if (len > 0)
                memcpy(c->out + c->out_head + c->out_len + hl, payload, len);
        c->out_len += need;
        return 0;
}

/* Send what the socket takes now. 0 (maybe with bytes left) or -errno (the connection is broken). */
static int ws_flush(struct ws_conn *c)
{
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out + c->out_head, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                c->out_head += (size_t)n;
                c->out_len -= (size_t)n;
        }
        c->out_head = 0;
        return 0;
}

static void on_poll(uv_poll_t *p, int status, int events);

/* After anything happened: send, finish if due, and poll for what is still wanted. */
static void ws_update(struct ws_conn *c)
{
        int want = 0, r;

        if (!c->upgraded || c->finished || c->gone)
                return;
        r = ws_flush(c);
        if (r < 0) {
                log_debug("ws: cannot send: %s, closing the connection", strerror(-r));
                return ws_finish(c);
        }
        if (c->finish_on_flush && c->out_len == 0)
                return ws_finish(c);
        if (!c->close_received)
                want |= UV_READABLE;
        if (c->out_len > 0)
                want |= UV_WRITABLE;
        if (want == c->poll_events)
                return;
        r = want ? uv_poll_start(&c->poll, want, on_poll) : uv_poll_stop(&c->poll);
        if (r < 0) {
                log_warn("ws: cannot watch the connection: %s, closing it", uv_strerror(r));
                return ws_finish(c);
        }
        c->poll_events = want;
}

/* Fail the connection (§7.1.7): a close frame with code, then the socket, once it is out. */
static void ws_fail(struct ws_conn *c, uint16_t code, const char *why)
{
        uint8_t payload[WS_MAX_CONTROL_PAYLOAD];

        log_debug("ws: %s, closing the connection (%u)", why, code);
        c->close_received = true;
        c->finish_on_flush = true;
        if (!c->close_sent) {
                c->close_sent = true;
                (void)ws_queue(c, WS_OP_CLOSE, payload, ws__close_payload(payload, code, why),
                               SBX_STREAM_BUFFER + WS_OUT_RESERVE_CLOSE);
        }
        ws_deadline(c);
}

static void ws_control(struct ws_conn *c, const struct ws_frame *f, uint8_t *payload)
{
        uint8_t reply[WS_MAX_CONTROL_PAYLOAD];
        unsigned code;

        ws__mask(payload, f->len, f->mask, 0);
        switch (f->opcode) {
        case WS_OP_PING:
                /* no room: drop it, a later ping gets its pong (only the last one needs one) */
                if (!c->close_sent)
                        (void)ws_queue(c, WS_OP_PONG, payload, f->len, SBX_STREAM_BUFFER + WS_OUT_RESERVE_PONG);
                return;
        case WS_OP_CLOSE:
                break;
        default: /* pong */
                return;
        }
        if (f->len == 1)
                return ws_fail(c, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
        code = f->len >= 2 ? (unsigned)payload[0] << 8 | payload[1] : 0;
        if (f->len >= 2 && !ws__close_code_valid(code))
                return ws_fail(c, WS_CLOSE_PROTOCOL, "close frame with an invalid code");
        if (f->len > 2 && !utf8_valid((const char *)payload + 2, f->len - 2))
                return ws_fail(c, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        c->close_received = true;
        c->finish_on_flush = true;
        if (!c->close_sent) {
                /* answer with the client's code (§5.5.1); the server closes the TCP connection first */
                c->close_sent = true;
                (void)ws_queue(c, WS_OP_CLOSE, reply, ws__close_payload(reply, (uint16_t)code, NULL),
                               SBX_STREAM_BUFFER + WS_OUT_RESERVE_CLOSE);
        }
        ws_deadline(c);
}

static void ws_consume(struct ws_conn *c, size_t n)
{
        memmove(c->in, c->in + n, c->in_len - n);
        c->in_len -= n;
}

/* Take every complete frame (and data payload bytes) out of c->in. */
static void ws_process(struct ws_conn *c)
{
        while (c->in_len > 0 && !c->close_received) {
                struct ws_frame f;
                int r;

                if (c->skip > 0) {
                        size_t k = c->skip < c->in_len ? (size_t)c->skip : c->in_len;

                        ws_consume(c, k);
                        c->skip -= k;
                        continue;
                }
                r = ws__parse_header(c->in, c->in_len, &f);
                if (r == 0)
                        return;
                if (r == -EMSGSIZE)
                        return ws_fail(c, WS_CLOSE_TOO_BIG, "frame too large");
                if (r < 0)
                        return ws_fail(c, WS_CLOSE_PROTOCOL, "protocol error");
                if (f.opcode >= WS_OP_CLOSE) {
                        /* fits: WS_IN_BUFFER > WS_MAX_HEADER + WS_MAX_CONTROL_PAYLOAD */
                        if (c->in_len < f.header_len + f.len)
                                return;
                        ws_control(c, &f, c->in + f.header_len);
                        ws_consume(c, f.header_len + (size_t)f.len);
                        continue;
                }
                /* data: a new message must not start inside a fragmented one, nor continue none */
                if ((f.opcode == WS_OP_CONT) != c->in_message)
                        return ws_fail(c, WS_CLOSE_PROTOCOL, "unexpected continuation frame");
                c->in_message = !f.fin;
                c->skip = f.len;
                ws_consume(c, f.header_len);
        }
}

/* Read what is there. 0, or -errno / -EPIPE at end of stream (the connection is over). */
static int ws_read(struct ws_conn *c)
{
        for (int i = 0; i < WS_READS_PER_POLL && !c->close_received; i++) {
                ssize_t n = recv(c->fd, c->in + c->in_len, sizeof c->in - c->in_len, MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK)
                                return 0;
                        return -errno;
                }
                if (n == 0)
                        return -EPIPE;
                c->in_len += (size_t)n;
                ws_process(c);
        }
        return 0;
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        struct ws_conn *c = p->data;
        int r = status;

        if (r >= 0 && (events & UV_READABLE))
                r = ws_read(c);
        if (r < 0) {
                if (r != -EPIPE)
                        log_debug("ws: connection failed: %s", strerror(-r));
                return ws_finish(c);
        }
        ws_update(c);
}

/* http_reply_upgrade's callback: the 101 is out and sock is ours to read and write. */
static void on_upgraded(void *cls, int sock, void *urh, const char *extra, size_t extra_len)
{
        struct ws_conn *c = cls;
        int r;

        c->upgraded = true;
        c->fd = sock;
        c->urh = urh;
        if (c->finish_pending) {
                /* ws_close's deadline passed already: one try at sending the close frame */
                (void)ws_flush(c);
                return ws_finish(c);
        }
        r = uv_poll_init(c->loop, &c->poll, sock);
        if (r < 0) {
                log_warn("ws: cannot watch the connection: %s, closing it", uv_strerror(r));
                return ws_finish(c);
        }
        c->poll.data = c;
        c->poll_active = true;
        c->handles++;
        /* MHD turns Nagle back on for upgraded sockets; events are whole frames that should go now
         * (fails on unix sockets, which need nothing) */
        (void)setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
        /* bytes the client sent right behind its request, already read by the server */
        while (extra_len > 0 && !c->close_received) {
                size_t n = sizeof c->in - c->in_len;

                n = n < extra_len ? n : extra_len;
                memcpy(c->in + c->in_len, extra, n);
                c->in_len += n;
                extra += n;
                extra_len -= n;
                ws_process(c);
        }
        ws_update(c);
}

/* The request's on_close: MHD is done with the connection (after http_upgrade_close, the client
 * leaving before the upgrade, or the server stopping). The socket is about to be closed. */
static void on_request_end(struct http_request *req, void *data)
{
        struct ws_conn *c = data;
        uint8_t payload[WS_MAX_CONTROL_PAYLOAD];

        if (c->upgraded && !c->finished) {
                /* the server is stopping under an open socket: say so, if the socket takes it now */
                if (!c->close_sent) {
                        c->close_sent = true;
                        (void)ws_queue(c, WS_OP_CLOSE, payload,
                                       ws__close_payload(payload, WS_CLOSE_GOING_AWAY, "server stopping"),
                                       SBX_STREAM_BUFFER + WS_OUT_RESERVE_CLOSE);
                }
                (void)ws_flush(c);
        }
        c->urh = NULL;
        c->finished = true;
        c->gone = true;
        (void)uv_timer_stop(&c->timer);
        ws_close_poll(c);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        if (c->closed)
                c->closed(c, c->data);
        /* c is freed when the last handle's close callback runs (never before this returns) */
}

int ws_accept(struct http_request *req, ws_closed_fn closed, void *data, struct ws_conn **ret, struct sbx_err *err)
{
        char accept[WS_ACCEPT_LEN + 1];
        const char *const hdrs[][2] = {
                { "Upgrade", "websocket" },
                { "Sec-WebSocket-Accept", accept },
                { NULL, NULL },
        };
        const char *key = http_request_header(req, "Sec-WebSocket-Key");
        struct ws_conn *c;
        int r;

        r = ws__check_handshake(http_request_method(req), http_request_header(req, "Upgrade"),
                                http_request_header(req, "Connection"),
                                http_request_header(req, "Sec-WebSocket-Version"), key, err);
        if (r < 0)
                return r;
        r = ws__accept_key(key, accept);
        if (r < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "bad_websocket_handshake",
                                    "'Sec-WebSocket-Key' must be 16 bytes in base64");
        c = calloc(1, sizeof *c);
        if (!c)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        c->loop = http_request_loop(req);
        c->closed = closed;
        c->data = data;
        c->fd = -EBADF;
        r = uv_timer_init(c->loop, &c->timer);
        if (r < 0) {
                free(c);
                return sbx_err_set(err, -ENOMEM, "cannot create a timer: %s", uv_strerror(r));
        }
        c->timer.data = c;
        c->handles = 1;
        http_request_on_close(req, on_request_end, c);
        r = http_reply_upgrade(req, hdrs, on_upgraded, c);
        if (r < 0) {
                http_request_on_close(req, NULL, NULL);
                c->gone = true;
                uv_close((uv_handle_t *)&c->timer, on_handle_closed);
                if (r == -EPROTO)
                        return sbx_err_setr(err, -SBX_E_INVALID, "bad_websocket_handshake",
                                            "a websocket handshake must be an HTTP/1.1 request");
                return sbx_err_set(err, r, "cannot answer the websocket handshake: %s", strerror(-r));
        }
        *ret = c;
        return 0;
}

int ws_send_text(struct ws_conn *c, const char *text, size_t len)
{
        int r;

        if (!c || c->gone || c->close_sent || c->finished)
                return -EPIPE;
        if (len > SBX_STREAM_BUFFER)
                return -EMSGSIZE;
        r = ws_queue(c, WS_OP_TEXT, text, len, SBX_STREAM_BUFFER);
        if (r < 0)
                return r;
        ws_update(c);
        return 0;
}

int ws_ping(struct ws_conn *c)
{
        int r;

        if (!c || c->gone || c->close_sent || c->finished)
                return -EPIPE;
        r = ws_queue(c, WS_OP_PING, NULL, 0, SBX_STREAM_BUFFER);
        if (r < 0)
                return r;
        ws_update(c);
        return 0;
}

void ws_close(struct ws_conn *c, uint16_t code, const char *reason)
{
        uint8_t payload[WS_MAX_CONTROL_PAYLOAD];

        if (!c || c->gone || c->close_sent || c->finished)
                return;
        c->close_sent = true;
        (void)ws_queue(c, WS_OP_CLOSE, payload, ws__close_payload(payload, code, reason),
                       SBX_STREAM_BUFFER + WS_OUT_RESERVE_CLOSE);
        ws_deadline(c);
        ws_update(c);
}
