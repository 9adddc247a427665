// SPDX-License-Identifier: Apache-2.0
/*
 * Tests for src/api/ws.c. The pure parts (ws-internal.h): the accept key (RFC 6455's example),
 * token lists, the handshake checks, close payloads. Then the real thing (framing by wslay):
 * http_server on a libuv loop with a route that calls ws_accept(), driven by a plain-socket client
 * thread with its own small frame writer and reader: the 101 and its headers, frames queued before
 * the upgrade, ping -> pong, ignored data and fragmented frames, a ping sent right behind the
 * handshake (the server's "extra" bytes), client close, server close with and without an answer
 * (2 s deadline), 1002, 1007, 1009 and a malformed control frame, a client that just leaves,
 * -ENOBUFS back-pressure, a close queued behind a full queue, pings against a full queue, bad
 * handshakes (400 on a connection that stays usable), server stop under open sockets ("going
 * away", 1001). Data both ways: binary frames of the sizes around wslay's length forms,
 * ws_send_room and the drain callback, client messages (whole, fragmented, up to the limit, 1009
 * beyond it, 1007), ws_pause_read holding messages back (also ones that came with the handshake),
 * ws_close from inside the message callback, clients that close mid-message, and the throughput
 * of 64 KiB frames through loopback (printed, not asserted). Every accepted socket must see
 * closed() exactly once, no callback may follow it, and the server must still serve plain
 * requests afterwards.
 *
 * The client thread never calls cmocka (its asserts longjmp): it records the first failed check
 * and the main thread asserts on that after the loop ends.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/router.h"
#include "api/server.h"
#include "api/ws-internal.h"
#include "api/ws.h"
#include "common/cleanup.h"
#include "common/util.h"

/* ------------------------------------------------------------------------------------------ */
/* pure parts */

static void test_accept_key(void **state)
{
        char out[WS_ACCEPT_LEN + 1];

        /* RFC 6455 §1.3 (checked with: printf %s KEY+GUID | openssl sha1 -binary | base64) */
        assert_int_equal(ws__accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
        assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_int_equal(ws__accept_key(NULL, out), -EINVAL);
        assert_int_equal(ws__accept_key("", out), -EINVAL);
        assert_int_equal(ws__accept_key("dGhlIHNhbXBsZSBub25jZQ=", out), -EINVAL);   /* 23 chars */
        assert_int_equal(ws__accept_key("dGhlIHNhbXBsZSBub25jZSE=", out), -EINVAL);  /* 17 bytes */
        assert_int_equal(ws__accept_key("dGhlIHNhbXBsZSBub25j!Q==", out), -EINVAL);  /* alphabet */
        assert_int_equal(ws__accept_key("dGhlIHNhbXBsZSBub25jZQ==x", out), -EINVAL); /* 25 chars */
}

static void test_tokens_and_handshake(void **state)
{
        static const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
        struct sbx_err err = { 0 };

        assert_true(ws__has_token("Upgrade", "upgrade"));
        assert_true(ws__has_token("keep-alive, Upgrade", "upgrade"));
        assert_true(ws__has_token("keep-alive,\tUPGRADE ,x", "upgrade"));
        assert_false(ws__has_token("keep-alive", "upgrade"));
        assert_false(ws__has_token("upgrades", "upgrade"));
        assert_false(ws__has_token("", "upgrade"));
        assert_false(ws__has_token(NULL, "upgrade"));
        assert_false(ws__has_token("up grade", "upgrade"));

        assert_int_equal(ws__check_handshake("GET", "websocket", "Upgrade", "13", key, &err), 0);
        assert_int_equal(ws__check_handshake("GET", "WebSocket", "keep-alive, upgrade", "13", key, &err), 0);
        assert_int_equal(err.code, 0);
        assert_int_equal(ws__check_handshake("POST", "websocket", "Upgrade", "13", key, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "bad_websocket_handshake");
        assert_true(err.msg[0]);
        sbx_err_clear(&err);
        assert_int_equal(ws__check_handshake("GET", "h2c", "Upgrade", "13", key, &err), -SBX_E_INVALID);
        assert_int_equal(ws__check_handshake("GET", "websocket", "keep-alive", "13", key, NULL), -SBX_E_INVALID);
        assert_int_equal(ws__check_handshake("GET", "websocket", NULL, "13", key, NULL), -SBX_E_INVALID);
        assert_int_equal(ws__check_handshake("GET", "websocket", "Upgrade", "8", key, NULL), -SBX_E_INVALID);
        assert_int_equal(ws__check_handshake("GET", "websocket", "Upgrade", NULL, key, NULL), -SBX_E_INVALID);
        assert_int_equal(ws__check_handshake("GET", "websocket", "Upgrade", "13", NULL, NULL), -SBX_E_INVALID);
        assert_int_equal(ws__check_handshake("GET", "websocket", "Upgrade", "13", "c2hvcnQ=", NULL), -SBX_E_INVALID);
}

static void test_close_payload(void **state)
{
        uint8_t b[WS_MAX_CONTROL_PAYLOAD];
        char reason[200];
        size_t n;

        assert_true(ws__close_code_valid(1000));
        assert_true(ws__close_code_valid(1011));
        assert_true(ws__close_code_valid(4999));
        assert_false(ws__close_code_valid(999));
        assert_false(ws__close_code_valid(1005));
        assert_false(ws__close_code_valid(1006));
        assert_false(ws__close_code_valid(1015));
        assert_false(ws__close_code_valid(2000));
        assert_false(ws__close_code_valid(5000));

        assert_int_equal(ws__close_payload(b, 0, "x"), 0);
        assert_int_equal(ws__close_payload(b, 1006, "x"), 0);
        n = ws__close_payload(b, 1000, "bye");
        assert_int_equal(n, 5);
        assert_memory_equal(b, "\003\350bye", 5); /* 1000 = 0x03e8 */
        assert_int_equal(ws__close_payload(b, 1001, NULL), 2);

        /* 200 bytes of "é" (2 bytes each): cut to 122 bytes, not in the middle of a character */
        for (size_t i = 0; i < sizeof reason - 1; i += 2)
                memcpy(reason + i, "\xc3\xa9", 2);
        reason[sizeof reason - 1] = '\0';
        n = ws__close_payload(b, 1000, reason);
        assert_int_equal(n, 2 + 122);
        assert_true(utf8_valid((const char *)b + 2, n - 2));
        memset(reason, 'a', sizeof reason - 1);
        assert_int_equal(ws__close_payload(b, 1000, reason), 2 + WS_MAX_CLOSE_REASON);
}

/* ------------------------------------------------------------------------------------------ */
/* the server side (handlers on the loop thread) */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define FLOOD_FRAME 16384
#define PUMP_FRAME (64 * 1024)
#define PUMP_BYTES (256ULL << 20)
#define RESUME_MS 300 /* /ws?mode=echo: a "pause" message pauses reading this long */
#define ECHO_MAX 1024 /* echoed as they came up to this size, else summed up as "big ..." */

/* the binary frames /ws?mode=bin sends: around wslay's 7-, 16- and 64-bit length forms */
static const size_t bin_sizes[] = { 0, 1, 125, 126, 65535, 65536, 200 * 1024 };

struct fixture {
        uv_loop_t loop;
        uv_async_t done;
        struct http_server *srv;
        unsigned port;
        void (*client)(struct fixture *f);
        char failure[512];
        int accepted;        /* ws_accept succeeded (atomic) */
        int closed;          /* closed() calls (atomic) */
        int flood_frames;    /* frames queued by /ws?mode=flood before -ENOBUFS */
        int epipe_ok;        /* ws_send_text gave -EPIPE after ws_close */
        int leftover[2];     /* client sockets left open for the server stop to close */
        int enobufs;         /* -ENOBUFS seen by /ws?mode=bin (atomic) */
        int drains;          /* drain callback calls (atomic) */
        int delivered;       /* data messages handed to the echo callback (atomic) */
        size_t room0;        /* /ws?mode=room: ws_send_room with "hello" queued */
        size_t room_full;    /* ... after a frame of room0 bytes */
        int room_r[3];       /* ... that frame's result, then a 1-byte and an empty frame's */
        uint64_t pump_bytes; /* /ws?mode=pump: payload bytes the client got, and in how long */
        uint64_t pump_usec;
};

static int atomic_get(const int *p)
{
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void atomic_inc(int *p)
{
        (void)__atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
}

/* The first failed check of the server side (loop thread). */
static void server_fail(struct fixture *f, const char *what)
{
        if (!f->failure[0])
                snprintf(f->failure, sizeof f->failure, "server: %s", what);
}

enum sock_mode {
        MODE_PLAIN,
        MODE_BIN,
        MODE_ROOM,
        MODE_ECHO,
        MODE_PUMP
};

struct sock_ctx {
        struct fixture *f;
        struct ws_conn *ws;
        enum sock_mode mode;
        uv_timer_t timer;
        int ticks;
        bool gone;          /* closed() ran: no callback may follow */
        bool in_send;       /* inside one of our ws_send_* calls: no drain callback may come */
        unsigned bin_next;  /* MODE_BIN: index of the next frame in bin_sizes */
        uint64_t pump_left; /* MODE_PUMP: payload bytes still to queue */
};

static void sock_ctx_free(uv_handle_t *h)
{
        free(h->data);
}

static void on_ws_closed(struct ws_conn *c, void *data)
{
        struct sock_ctx *x = data;

        /* calls on a closed connection are harmless */
        if (ws_send_text(c, "x", 1) != -EPIPE || ws_ping(c) != -EPIPE || ws_send_binary(c, "x", 1) != -EPIPE ||
            ws_send_room(c) != 0)
                server_fail(x->f, "send after closed() did not fail");
        ws_close(c, 1000, NULL);
        ws_pause_read(c, false);
        if (x->gone)
                server_fail(x->f, "closed() twice");
        x->gone = true;
        atomic_inc(&x->f->closed);
        (void)uv_timer_stop(&x->timer);
        uv_close((uv_handle_t *)&x->timer, sock_ctx_free);
}

static int x_send(struct sock_ctx *x, bool binary, const void *p, size_t n)
{
        int r;

        x->in_send = true;
        r = binary ? ws_send_binary(x->ws, p, n) : ws_send_text(x->ws, p, n);
        x->in_send = false;
        return r;
}

static uint8_t pattern(size_t frame, size_t i)
{
        return (uint8_t)(i * 131 + frame * 7 + (i >> 8));
}

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
        uint32_t h = 2166136261u;

        for (size_t i = 0; i < n; i++)
                h = (h ^ p[i]) * 16777619u;
        return h;
}

/* MODE_BIN: the frames of bin_sizes, refilled on drain, then "end" and a close. */
static void bin_pump(struct sock_ctx *x)
{
        static uint8_t b[200 * 1024];

        while (x->bin_next < ELEMENTSOF(bin_sizes)) {
                size_t n = bin_sizes[x->bin_next];
                int r;

                for (size_t i = 0; i < n; i++)
                        b[i] = pattern(x->bin_next, i);
                r = x_send(x, true, b, n);
                if (r == -ENOBUFS) {
                        atomic_inc(&x->f->enobufs);
                        return;
                }
                if (r < 0)
                        return server_fail(x->f, "ws_send_binary failed");
                x->bin_next++;
        }
        if (x->bin_next++ == ELEMENTSOF(bin_sizes)) {
                if (x_send(x, false, "end", 3) < 0)
                        server_fail(x->f, "cannot send 'end'");
                ws_close(x->ws, 1000, "done");
        }
}

/* MODE_PUMP: 64 KiB frames sized with ws_send_room, refilled on drain, then a close. */
static void pump(struct sock_ctx *x)
{
        static uint8_t b[PUMP_FRAME];

        while (x->pump_left > 0) {
                size_t n = x->pump_left < PUMP_FRAME ? (size_t)x->pump_left : PUMP_FRAME;
                int r;

                if (ws_send_room(x->ws) < n)
                        return;
                r = x_send(x, true, b, n);
                if (r < 0)
                        return server_fail(x->f, "ws_send_binary failed within ws_send_room");
                x->pump_left -= n;
        }
        ws_close(x->ws, 1000, "pumped");
}

static void on_ws_drain(struct ws_conn *c, void *data)
{
        struct sock_ctx *x = data;

        if (x->gone)
                return server_fail(x->f, "drain after closed()");
        if (x->in_send)
                return server_fail(x->f, "drain from inside ws_send_*");
        if (ws_send_room(c) < SBX_STREAM_BUFFER / 2 - WS_FRAME_COST)
                return server_fail(x->f, "drain with more than half the queue full");
        atomic_inc(&x->f->drains);
        if (x->mode == MODE_BIN)
                bin_pump(x);
        else if (x->mode == MODE_PUMP)
                pump(x);
        else if (x->mode == MODE_ROOM) {
                if (x_send(x, false, "after drain", 11) < 0)
                        server_fail(x->f, "cannot send after the drain");
                ws_close(c, 1000, "done");
        }
}

static void on_resume(uv_timer_t *t)
{
        struct sock_ctx *x = t->data;

        (void)x_send(x, false, "resumed", 7);
        ws_pause_read(x->ws, false);
}

static bool msg_is(bool binary, const uint8_t *msg, size_t len, const char *text)
{
        return !binary && len == strlen(text) && memcmp(msg, text, len) == 0;
}

/* MODE_ECHO: "pause", "close" and "count" are commands; anything else comes back (small) or
 * summed up (big). */
static void on_ws_message(struct ws_conn *c, bool binary, const uint8_t *msg, size_t len, void *data)
{
        struct sock_ctx *x = data;
        char out[64];

        if (x->gone)
                return server_fail(x->f, "message after closed()");
        if (msg_is(binary, msg, len, "pause")) {
                ws_pause_read(c, true);
                (void)x_send(x, false, "paused", 6);
                (void)uv_timer_start(&x->timer, on_resume, RESUME_MS, 0);
        } else if (msg_is(binary, msg, len, "close")) {
                ws_close(c, 4000, "bye");
                if (x_send(x, false, "late", 4) == -EPIPE)
                        atomic_inc(&x->f->epipe_ok);
        } else if (msg_is(binary, msg, len, "count")) {
                snprintf(out, sizeof out, "count %d", atomic_get(&x->f->delivered));
                (void)x_send(x, false, out, strlen(out));
        } else {
                atomic_inc(&x->f->delivered);
                if (len <= ECHO_MAX)
                        (void)x_send(x, binary, msg, len);
                else {
                        snprintf(out, sizeof out, "big %c %zu %08x", binary ? 'B' : 'T', len, fnv1a(msg, len));
                        (void)x_send(x, false, out, strlen(out));
                }
        }
}

static void tick(uv_timer_t *t)
{
        struct sock_ctx *x = t->data;
        char msg[32];

        snprintf(msg, sizeof msg, "tick %d", x->ticks);
        (void)ws_send_text(x->ws, msg, strlen(msg));
        if (++x->ticks == 3) {
                (void)uv_timer_stop(t);
                ws_close(x->ws, 1001, "going away");
        }
}

static void h_ws(struct http_request *req)
{
        struct fixture *f = http_request_app(req);
        const char *mode = http_request_query(req, "mode") ?: "";
        const char *max = http_request_query(req, "max");
        struct sbx_err err = { 0 };
        struct sock_ctx *x = calloc(1, sizeof *x);

        if (!x)
                return http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
        x->f = f;
        if (ws_accept(req, on_ws_closed, x, &x->ws, &err) < 0) {
                free(x);
                return http_reply_error(req, &err);
        }
        atomic_inc(&f->accepted);
        (void)uv_timer_init(http_request_loop(req), &x->timer);
        x->timer.data = x;
        ws_on_drain(x->ws, on_ws_drain);
        /* queued before the upgrade: sent once the socket is handed over */
        (void)ws_send_text(x->ws, "hello", 5);
        if (strcmp(mode, "close") == 0) {
                ws_close(x->ws, 1000, "bye");
                if (ws_send_text(x->ws, "late", 4) == -EPIPE)
                        atomic_inc(&f->epipe_ok);
                if (ws_send_binary(x->ws, "late", 4) != -EPIPE || ws_send_room(x->ws) != 0)
                        server_fail(f, "send after ws_close did not fail");
        } else if (strcmp(mode, "ticks") == 0)
                (void)uv_timer_start(&x->timer, tick, 10, 10);
        else if (strcmp(mode, "flood") == 0 || strcmp(mode, "floodclose") == 0) {
                static char block[FLOOD_FRAME];
                int r, n = 0;

                memset(block, 'f', sizeof block);
                while ((r = ws_send_text(x->ws, block, sizeof block)) == 0)
                        n++;
                if (r == -ENOBUFS)
                        f->flood_frames = n;
                if (ws_send_text(x->ws, block, SBX_STREAM_BUFFER + 1) != -EMSGSIZE)
                        f->flood_frames = -1;
                if (strcmp(mode, "floodclose") == 0)
                        ws_close(x->ws, 1000, "flushed");
        } else if (strcmp(mode, "bin") == 0) {
                x->mode = MODE_BIN;
                bin_pump(x);
        } else if (strcmp(mode, "room") == 0) {
                static uint8_t b[SBX_STREAM_BUFFER];

                x->mode = MODE_ROOM;
                f->room0 = ws_send_room(x->ws);
                for (size_t i = 0; i < f->room0 && i < sizeof b; i++)
                        b[i] = pattern(0, i);
                f->room_r[0] = x_send(x, true, b, f->room0);
                f->room_full = ws_send_room(x->ws);
                f->room_r[1] = x_send(x, true, "x", 1);
                f->room_r[2] = x_send(x, false, "", 0);
        } else if (strcmp(mode, "echo") == 0) {
                x->mode = MODE_ECHO;
                ws_on_message(x->ws, max ? strtoul(max, NULL, 10) : SBX_WS_MAX_MESSAGE, on_ws_message);
        } else if (strcmp(mode, "pump") == 0) {
                x->mode = MODE_PUMP;
                x->pump_left = PUMP_BYTES;
                pump(x);
        }
}

static void h_hello(struct http_request *req)
{
        http_reply_data(req, 200, "text/plain", "hi\n", 3);
}

static const struct route routes[] = {
        { HTTP_GET, "/ws", h_ws, false, "ws", false, false },
        { HTTP_GET, "/hello", h_hello, false, "hello", false, false },
};

/* ------------------------------------------------------------------------------------------ */
/* client thread */

#define CHECK(f, cond)                                                                                              \
        do {                                                                                                        \
                if (!(cond)) {                                                                                      \
                        if (!(f)->failure[0])                                                                       \
                                snprintf((f)->failure, sizeof(f)->failure, "%s:%d: %s", __FILE__, __LINE__, #cond); \
                        goto out;                                                                                   \
                }                                                                                                   \
        } while (0)

struct client {
        int fd;
        int rcvbuf; /* SO_RCVBUF before connecting, if > 0: keeps the server's data in its queue */
        uint8_t buf[1 << 19];
        size_t len;
};

struct frame {
        unsigned opcode;
        bool fin;
        uint8_t *data; /* NUL-terminated copy */
        size_t len;
};

static int client_connect(struct client *c, unsigned port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        struct timeval tv = { .tv_sec = 5 };

        c->len = 0;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (c->rcvbuf > 0)
                (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &c->rcvbuf, sizeof c->rcvbuf);
        return connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0 ? -errno : 0;
}

static void client_close(struct client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

static int client_fill(struct client *c)
{
        ssize_t n;

        if (c->len == sizeof c->buf)
                return -ENOBUFS;
        n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
        if (n < 0)
                return -errno;
        c->len += (size_t)n;
        return (int)n;
}

static void client_consume(struct client *c, size_t n)
{
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
}

static int client_need(struct client *c, size_t n)
{
        while (c->len < n) {
                int r = client_fill(c);

                if (r <= 0)
                        return r == 0 ? -EPIPE : r;
        }
        return 0;
}

/* Read the response head into head (NUL-terminated). Returns the status or -errno. */
static int read_head(struct client *c, char *head, size_t size)
{
        for (;;) {
                uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
                int status;

                if (end) {
                        size_t n = (size_t)(end - c->buf) + 4;

                        if (n >= size)
                                return -ENOBUFS;
                        memcpy(head, c->buf, n);
                        head[n] = '\0';
                        client_consume(c, n);
                        return sscanf(head, "HTTP/1.1 %d", &status) == 1 ? status : -EPROTO;
                }
                int r = client_fill(c);
                if (r <= 0)
                        return r == 0 ? -EPIPE : r;
        }
}

static bool head_has(const char *head, const char *line)
{
        return strcasestr(head, line) != NULL;
}

static int handshake(struct client *c, unsigned port, const char *path, char *head, size_t size)
{
        char req[512];
        int r = client_connect(c, port);

        if (r < 0)
                return r;
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 path);
        r = write_all(c->fd, req, strlen(req));
        if (r < 0)
                return r;
        return read_head(c, head, size);
}

/* The client's side of RFC 6455 framing, for this test only (the server's is wslay's). */
enum {
        OP_CONT = 0x0,
        OP_TEXT = 0x1,
        OP_BINARY = 0x2,
        OP_CLOSE = 0x8,
        OP_PING = 0x9,
        OP_PONG = 0xa
};
#define MAX_HEADER 14 /* 2 + 8 (64-bit length) + 4 (mask) */

/* A frame header: FIN if fin, opcode, the length in its shortest form, the masking key if any. */
static size_t encode_header(uint8_t *buf, bool fin, unsigned opcode, uint64_t len, const uint8_t mask[4])
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

static void mask_bytes(uint8_t *data, size_t len, const uint8_t mask[4])
{
        for (size_t i = 0; i < len; i++)
                data[i] ^= mask[i & 3];
}

/* A masked client frame with any header bits (for the protocol-error cases, raw b0). */
static int send_frame_raw(struct client *c, uint8_t b0, const void *data, size_t len, bool mask)
{
        static const uint8_t key[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
        uint8_t hdr[MAX_HEADER], *p = malloc(len + 1);
        size_t hl = encode_header(hdr, true, 0, len, mask ? key : NULL);
        int r;

        if (!p)
                return -ENOMEM;
        hdr[0] = b0;
        memcpy(p, data, len);
        if (mask)
                mask_bytes(p, len, key);
        r = write_all(c->fd, hdr, hl);
        if (r == 0 && len > 0)
                r = write_all(c->fd, p, len);
        free(p);
        return r;
}

static int send_frame(struct client *c, unsigned opcode, bool fin, const void *data, size_t len)
{
        return send_frame_raw(c, (uint8_t)((fin ? 0x80 : 0) | opcode), data, len, true);
}

static int send_close(struct client *c, uint16_t code)
{
        uint8_t p[2] = { (uint8_t)(code >> 8), (uint8_t)code };

        return send_frame(c, OP_CLOSE, true, p, 2);
}

/* A masked client frame into out (MAX_HEADER + len bytes): for writing several at once. */
static size_t encode_frame(uint8_t *out, unsigned opcode, bool fin, const void *data, size_t len)
{
        static const uint8_t key[4] = { 0x5a, 0x17, 0xc3, 0x9e };
        size_t hl = encode_header(out, fin, opcode, len, key);

        if (len > 0)
                memcpy(out + hl, data, len);
        mask_bytes(out + hl, len, key);
        return hl + len;
}

/* Read one server frame (must be unmasked). */
static int read_frame(struct client *c, struct frame *fr)
{
        uint64_t len;
        size_t hl = 2;
        int r;

        free(fr->data);
        memset(fr, 0, sizeof *fr);
        r = client_need(c, 2);
        if (r < 0)
                return r;
        if (c->buf[1] & 0x80)
                return -EPROTO; /* servers never mask */
        len = c->buf[1] & 0x7f;
        hl += len == 126 ? 2 : len == 127 ? 8 : 0;
        r = client_need(c, hl);
        if (r < 0)
                return r;
        if (len == 126)
                len = (uint64_t)c->buf[2] << 8 | c->buf[3];
        else if (len == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                        len = len << 8 | c->buf[2 + i];
        }
        if (hl + len > sizeof c->buf)
                return -EMSGSIZE;
        r = client_need(c, hl + len);
        if (r < 0)
                return r;
        fr->fin = c->buf[0] & 0x80;
        fr->opcode = c->buf[0] & 0x0f;
        fr->len = len;
        fr->data = malloc(len + 1);
        if (!fr->data)
                return -ENOMEM;
        memcpy(fr->data, c->buf + hl, len);
        fr->data[len] = '\0';
        client_consume(c, hl + len);
        return 0;
}

static bool frame_is(const struct frame *fr, unsigned opcode, const char *text)
{
        return fr->opcode == opcode && fr->fin && fr->len == strlen(text) && memcmp(fr->data, text, fr->len) == 0;
}

static unsigned close_code(const struct frame *fr)
{
        return fr->opcode == OP_CLOSE && fr->len >= 2 ? (unsigned)fr->data[0] << 8 | fr->data[1] : 0;
}

static bool at_eof(struct client *c)
{
        int r;

        if (c->len > 0)
                return false;
        r = client_fill(c);
        return r == 0 || r == -ECONNRESET;
}

static bool wait_count(const int *p, int want)
{
        for (int i = 0; i < 600 && atomic_get(p) < want; i++)
                usleep(5000);
        return atomic_get(p) == want;
}

/* The server's listening socket (this process's): sockets it accepts inherit its SO_SNDBUF. */
static int listener_fd(unsigned port)
{
        for (int fd = 0; fd < 1024; fd++) {
                struct sockaddr_in a;
                socklen_t n = sizeof a, an = sizeof(int);
                int acc = 0;

                if (getsockname(fd, (struct sockaddr *)&a, &n) < 0 || a.sin_family != AF_INET ||
                    ntohs(a.sin_port) != port)
                        continue;
                if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &an) == 0 && acc)
                        return fd;
        }
        return -1;
}

/* Plain HTTP still works on a fresh connection. */
static bool plain_ok(struct fixture *f)
{
        static const char req[] = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
        struct client c = { .fd = -1 };
        char head[4096];
        bool ok;

        ok = client_connect(&c, f->port) == 0 && write_all(c.fd, req, sizeof req - 1) == 0 &&
             read_head(&c, head, sizeof head) == 200;
        client_close(&c);
        return ok;
}

static void c_basic(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        struct frame fr = { 0 };
        char head[4096];

        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, head_has(head, "\r\nUpgrade: websocket\r\n"));
        CHECK(f, head_has(head, "\r\nConnection: Upgrade\r\n"));
        CHECK(f, head_has(head, "\r\nSec-WebSocket-Accept: " ACCEPT "\r\n"));
        CHECK(f, !head_has(head, "Content-Length") && !head_has(head, "Transfer-Encoding"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        /* data frames and a fragmented message (with a ping inside) are read and ignored */
        CHECK(f, send_frame(&c, OP_TEXT, true, "ignored", 7) == 0);
        CHECK(f, send_frame(&c, OP_BINARY, false, "part1", 5) == 0);
        CHECK(f, send_frame(&c, OP_PING, true, "mid", 3) == 0);
        CHECK(f, send_frame(&c, OP_CONT, false, "part2", 5) == 0);
        CHECK(f, send_frame(&c, OP_CONT, true, "part3", 5) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_PONG, "mid"));
        {
                /* a 60 KiB frame (16-bit length) arrives in pieces */
                static char big[60000];

                memset(big, 'b', sizeof big);
                CHECK(f, send_frame(&c, OP_TEXT, true, big, sizeof big) == 0);
        }
        CHECK(f, send_frame(&c, OP_PING, true, "abc", 3) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_PONG, "abc"));
        CHECK(f, send_frame(&c, OP_PONG, true, "", 0) == 0); /* unsolicited: ignored */
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
        CHECK(f, plain_ok(f));
out:
        free(fr.data);
        client_close(&c);
}

static void c_extra_and_ticks(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static const uint8_t ping[] = { 0x89, 0x82, 0, 0, 0, 0, 'h', 'i' }; /* masked with 0000 */
        struct frame fr = { 0 };
        char head[4096], req[512];

        /* the handshake and a ping in one write: the ping reaches ws.c as MHD's "extra" bytes */
        CHECK(f, client_connect(&c, f->port) == 0);
        snprintf(req, sizeof req,
                 "GET /ws?mode=ticks HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
                 "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n");
        {
                char all[600];
                size_t n = strlen(req);

                memcpy(all, req, n);
                memcpy(all + n, ping, sizeof ping);
                CHECK(f, write_all(c.fd, all, n + sizeof ping) == 0);
        }
        CHECK(f, read_head(&c, head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_PONG, "hi"));
        /* frames sent after the upgrade, then the server's close (1001) */
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "tick 0"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "tick 1"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "tick 2"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1001);
        CHECK(f, fr.len == 2 + strlen("going away") && memcmp(fr.data + 2, "going away", fr.len - 2) == 0);
        CHECK(f, send_close(&c, 1001) == 0);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
out:
        free(fr.data);
        client_close(&c);
}

static void c_server_close(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        struct frame fr = { 0 };
        char head[4096];
        uint64_t t0;

        /* closed before the upgrade: hello, close; the client answers */
        CHECK(f, handshake(&c, f->port, "/ws?mode=close", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000 && memcmp(fr.data + 2, "bye", 3) == 0);
        CHECK(f, atomic_get(&f->epipe_ok) == 1);
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
        client_close(&c);

        /* the client never answers: the server gives up after 2 s */
        CHECK(f, handshake(&c, f->port, "/ws?mode=close", head, sizeof head) == 101);
        t0 = now_usec();
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, now_usec() - t0 >= (WS_CLOSE_TIMEOUT_MS - 100) * 1000ULL);
        CHECK(f, now_usec() - t0 < (WS_CLOSE_TIMEOUT_MS + 2000) * 1000ULL);
        CHECK(f, wait_count(&f->closed, 2));
        CHECK(f, plain_ok(f));
out:
        free(fr.data);
        client_close(&c);
}

static void c_protocol_errors(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        struct frame fr = { 0 };
        char head[4096];
        uint8_t hdr[MAX_HEADER];
        static const uint8_t key[4] = { 1, 2, 3, 4 };
        size_t hl;

        /* unmasked */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame_raw(&c, 0x81, "plain", 5, false) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1002);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* a frame over 64 KiB: refused once its header and first payload bytes are in (wslay looks
         * at the length when the payload starts), not after 64 KiB */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        hl = encode_header(hdr, true, OP_BINARY, WS_MAX_IN_PAYLOAD + 1, key);
        CHECK(f, write_all(c.fd, hdr, hl) == 0 && write_all(c.fd, "abcd", 4) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1009);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* exactly 64 KiB in one frame is fine (and thrown away) */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        {
                static char big[WS_MAX_IN_PAYLOAD];

                memset(big, 'b', sizeof big);
                CHECK(f, send_frame(&c, OP_BINARY, true, big, sizeof big) == 0);
        }
        CHECK(f, send_frame(&c, OP_PING, true, "ok", 2) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_PONG, "ok"));
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* text that is not UTF-8 */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_TEXT, true, "a\xff", 2) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1007);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* a ping over 125 bytes: wslay's frame parser refuses it and closes without a code */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        {
                char ping[126];

                memset(ping, 'p', sizeof ping);
                CHECK(f, send_frame(&c, OP_PING, true, ping, sizeof ping) == 0);
        }
        CHECK(f, read_frame(&c, &fr) == 0 && fr.opcode == OP_CLOSE && fr.len == 0);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* a continuation frame with no message open */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_CONT, true, "x", 1) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1002);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* an unmasked frame right behind the handshake: failed from inside the upgrade callback */
        CHECK(f, client_connect(&c, f->port) == 0);
        {
                static const char req[] = "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                          "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n"
                                          "\x81\x02hi";

                CHECK(f, write_all(c.fd, req, sizeof req - 1) == 0);
        }
        CHECK(f, read_head(&c, head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1002);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* a close frame with a code nobody may send */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_close(&c, 1005) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1002);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 8));
out:
        free(fr.data);
        client_close(&c);
}

static void c_leave_and_flood(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        struct frame fr = { 0 };
        char head[4096];
        int n = 0;

        /* the client just goes away */
        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        client_close(&c);
        CHECK(f, wait_count(&f->closed, 1));

        /* back-pressure: the handler queued frames until -ENOBUFS; all of them arrive */
        CHECK(f, handshake(&c, f->port, "/ws?mode=flood", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, f->flood_frames > 0 && f->flood_frames <= SBX_STREAM_BUFFER / FLOOD_FRAME);
        /* each frame counts its payload and a fixed cost (header, bookkeeping) of less than 1 KiB */
        CHECK(f, f->flood_frames >= SBX_STREAM_BUFFER / (FLOOD_FRAME + 1024) - 1);
        for (; n < f->flood_frames; n++) {
                CHECK(f, read_frame(&c, &fr) == 0 && fr.opcode == OP_TEXT && fr.len == FLOOD_FRAME);
                CHECK(f, fr.data[0] == 'f' && fr.data[FLOOD_FRAME - 1] == 'f');
        }
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 2));
        client_close(&c);

        /* a full queue, then ws_close: every frame queued before it still goes out first */
        CHECK(f, handshake(&c, f->port, "/ws?mode=floodclose", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, f->flood_frames > 0);
        for (n = 0; n < f->flood_frames; n++)
                CHECK(f, read_frame(&c, &fr) == 0 && fr.opcode == OP_TEXT && fr.len == FLOOD_FRAME);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000 && memcmp(fr.data + 2, "flushed", 7) == 0);
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 3));

        /* many pings while the server has a full queue (small socket buffers on both sides keep it
         * full): each gets its pong, in order; the server stops reading while pongs take the queue
         * over the limit, and reads on once the client drains it */
        client_close(&c);
        {
                int lfd = listener_fd(f->port), small = 4096;

                CHECK(f, lfd >= 0 && setsockopt(lfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
        }
        c.rcvbuf = 4096;
        CHECK(f, handshake(&c, f->port, "/ws?mode=flood", head, sizeof head) == 101);
        c.rcvbuf = 0;
        for (n = 0; n < 200; n++) {
                char p[101];

                snprintf(p, sizeof p, "p%-98d", n); /* 99 bytes */
                CHECK(f, send_frame(&c, OP_PING, true, p, strlen(p)) == 0);
        }
        {
                int texts = 0, pongs = 0;

                while (pongs < 200) {
                        CHECK(f, read_frame(&c, &fr) == 0);
                        if (fr.opcode == OP_TEXT) {
                                texts++;
                                continue;
                        }
                        char p[101];

                        snprintf(p, sizeof p, "p%-98d", pongs++);
                        CHECK(f, frame_is(&fr, OP_PONG, p));
                }
                /* pongs may overtake queued text frames: read the rest */
                while (texts < f->flood_frames + 1) {
                        CHECK(f, read_frame(&c, &fr) == 0 && fr.opcode == OP_TEXT);
                        texts++;
                }
        }
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 4));
out:
        free(fr.data);
        client_close(&c);
}

static void c_bad_handshakes(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static const char *const bad[] = {
                /* no key */
                "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n",
                /* old version */
                "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 8\r\n\r\n",
                /* no Connection: upgrade */
                "GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                /* a plain GET */
                "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n",
        };
        char head[4096], body[512];

        CHECK(f, client_connect(&c, f->port) == 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                size_t n;
                char *cl;

                CHECK(f, write_all(c.fd, bad[i], strlen(bad[i])) == 0);
                CHECK(f, read_head(&c, head, sizeof head) == 400);
                cl = strcasestr(head, "Content-Length: ");
                CHECK(f, cl);
                n = strtoul(cl + 16, NULL, 10);
                CHECK(f, n < sizeof body && client_need(&c, n) == 0);
                memcpy(body, c.buf, n);
                body[n] = '\0';
                client_consume(&c, n);
                CHECK(f, strstr(body, "\"bad_websocket_handshake\""));
        }
        client_close(&c);

        /* HTTP/1.0 cannot be upgraded: 400, not a dropped connection */
        CHECK(f, client_connect(&c, f->port) == 0);
        {
                static const char req[] = "GET /ws HTTP/1.0\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                          "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n";

                CHECK(f, write_all(c.fd, req, sizeof req - 1) == 0);
                CHECK(f, client_fill(&c) > 0);
                CHECK(f, memmem(c.buf, c.len, " 400 ", 5));
        }
        CHECK(f, atomic_get(&f->accepted) == 0);
        CHECK(f, plain_ok(f));
out:
        client_close(&c);
}

/* Leaves two sockets open (one upgraded, one mid-close) for the server stop to end. */
static void c_stop_open(struct fixture *f)
{
        static struct client c = { .fd = -1 }, c2 = { .fd = -1 };
        struct frame fr = { 0 };
        char head[4096];

        CHECK(f, handshake(&c, f->port, "/ws", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, handshake(&c2, f->port, "/ws?mode=close", head, sizeof head) == 101);
        CHECK(f, read_frame(&c2, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, atomic_get(&f->closed) == 0);
out:
        free(fr.data);
        /* checked and closed by the main thread after the loop ended */
        f->leftover[0] = c.fd;
        f->leftover[1] = c2.fd;
}

static bool frame_is_bin(const struct frame *fr, const void *data, size_t len)
{
        return fr->opcode == OP_BINARY && fr->fin && fr->len == len && (len == 0 || memcmp(fr->data, data, len) == 0);
}

/* The summary the echo handler sends for a message over ECHO_MAX bytes. */
static bool frame_is_big(const struct frame *fr, bool binary, const uint8_t *msg, size_t len)
{
        char want[64];

        snprintf(want, sizeof want, "big %c %zu %08x", binary ? 'B' : 'T', len, fnv1a(msg, len));
        return frame_is(fr, OP_TEXT, want);
}

/* Connect and send the handshake for path with more bytes right behind it, in one write. */
static int handshake_with(struct client *c, unsigned port, const char *path, const uint8_t *more, size_t more_len,
                          char *head, size_t size)
{
        char req[512];
        uint8_t *all;
        size_t n;
        int r = client_connect(c, port);

        if (r < 0)
                return r;
        snprintf(req, sizeof req,
                 "GET %s HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n\r\n",
                 path);
        n = strlen(req);
        all = malloc(n + more_len);
        if (!all)
                return -ENOMEM;
        memcpy(all, req, n);
        memcpy(all + n, more, more_len);
        r = write_all(c->fd, all, n + more_len);
        free(all);
        if (r < 0)
                return r;
        return read_head(c, head, size);
}

static void c_binary_and_drain(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        struct frame fr = { 0 };
        char head[4096];

        /* binary frames of every length form arrive intact; the 200 KiB one waits for a drain */
        CHECK(f, handshake(&c, f->port, "/ws?mode=bin", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        for (size_t k = 0; k < ELEMENTSOF(bin_sizes); k++) {
                CHECK(f, read_frame(&c, &fr) == 0 && fr.opcode == OP_BINARY && fr.fin);
                CHECK(f, fr.len == bin_sizes[k]);
                for (size_t i = 0; i < fr.len; i++)
                        CHECK(f, fr.data[i] == pattern(k, i));
        }
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "end"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
        CHECK(f, atomic_get(&f->enobufs) >= 1 && atomic_get(&f->drains) >= 1);
        client_close(&c);

        /* ws_send_room: exactly that much fits, then nothing (not even an empty frame) until the
         * drain callback, which sends on */
        CHECK(f, handshake(&c, f->port, "/ws?mode=room", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, f->room0 == SBX_STREAM_BUFFER - (5 + WS_FRAME_COST) - WS_FRAME_COST);
        CHECK(f, f->room_r[0] == 0 && f->room_full == 0);
        CHECK(f, f->room_r[1] == -ENOBUFS && f->room_r[2] == -ENOBUFS);
        CHECK(f, read_frame(&c, &fr) == 0 && fr.opcode == OP_BINARY && fr.len == f->room0);
        for (size_t i = 0; i < fr.len; i++)
                CHECK(f, fr.data[i] == pattern(0, i));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "after drain"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 2));
        CHECK(f, atomic_get(&f->drains) >= 2);
out:
        free(fr.data);
        client_close(&c);
}

static void c_messages(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static uint8_t big[SBX_WS_MAX_MESSAGE], all[3 * 1024];
        struct frame fr = { 0 };
        char head[4096];
        size_t n = 0;

        for (size_t i = 0; i < sizeof big; i++)
                big[i] = pattern(3, i);
        /* a message right behind the handshake reaches the callback set before the upgrade */
        n = encode_frame(all, OP_TEXT, true, "early", 5);
        CHECK(f, handshake_with(&c, f->port, "/ws?mode=echo", all, n, head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "early"));

        /* text and binary, empty ones too */
        CHECK(f, send_frame(&c, OP_TEXT, true, "abc", 3) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "abc"));
        CHECK(f, send_frame(&c, OP_BINARY, true, "\0\1\2\377", 4) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_bin(&fr, "\0\1\2\377", 4));
        CHECK(f, send_frame(&c, OP_TEXT, true, "", 0) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, ""));
        CHECK(f, send_frame(&c, OP_BINARY, true, "", 0) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_bin(&fr, "", 0));

        /* fragmented, with a ping between the pieces (answered at once), a character split
         * across two of them, and empty pieces */
        CHECK(f, send_frame(&c, OP_TEXT, false, "fr\xc3", 3) == 0);
        CHECK(f, send_frame(&c, OP_PING, true, "mid", 3) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_PONG, "mid"));
        CHECK(f, send_frame(&c, OP_CONT, false, "\xa9g", 2) == 0);
        CHECK(f, send_frame(&c, OP_CONT, false, "", 0) == 0);
        CHECK(f, send_frame(&c, OP_CONT, true, "ment", 4) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "fr\xc3\xa9gment"));
        CHECK(f, send_frame(&c, OP_BINARY, false, big, 100000) == 0);
        CHECK(f, send_frame(&c, OP_CONT, false, big + 100000, 100000) == 0);
        CHECK(f, send_frame(&c, OP_CONT, true, big + 200000, 107200) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_big(&fr, true, big, 307200));

        /* exactly SBX_WS_MAX_MESSAGE, in one frame and in many */
        CHECK(f, send_frame(&c, OP_BINARY, true, big, sizeof big) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_big(&fr, true, big, sizeof big));
        for (size_t off = 0; off < sizeof big; off += 65536)
                CHECK(f, send_frame(&c, off ? OP_CONT : OP_BINARY, off + 65536 >= sizeof big, big + off, 65536) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_big(&fr, true, big, sizeof big));

        /* several in one write arrive one by one */
        n = encode_frame(all, OP_TEXT, true, "one", 3);
        n += encode_frame(all + n, OP_BINARY, true, "two", 3);
        n += encode_frame(all + n, OP_TEXT, true, "three", 5);
        CHECK(f, write_all(c.fd, all, n) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "one"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_bin(&fr, "two", 3));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "three"));
        CHECK(f, send_frame(&c, OP_TEXT, true, "count", 5) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "count 12"));

        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
out:
        free(fr.data);
        client_close(&c);
}

static void c_message_limits(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static uint8_t big[SBX_WS_MAX_MESSAGE + 1];
        struct frame fr = { 0 };
        char head[4096];

        memset(big, 'm', sizeof big);
        /* max_len 1000: 1000 is fine, 600 + 600 in two pieces is not (1009 once the second
         * piece's header is in) */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo&max=1000", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_BINARY, true, big, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is_bin(&fr, big, 1000));
        CHECK(f, send_frame(&c, OP_TEXT, false, big, 600) == 0);
        CHECK(f, send_frame(&c, OP_CONT, true, big, 600) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1009);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
        client_close(&c);

        /* one frame over max_len */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo&max=1000", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_BINARY, true, big, 1001) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1009);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 2));
        client_close(&c);

        /* a max_len over SBX_WS_MAX_MESSAGE is cut to it */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo&max=100000000", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_BINARY, true, big, sizeof big) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1009);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 3));
        client_close(&c);

        /* text that is not UTF-8 (here: only once two pieces are put together): 1007, and the
         * callback never sees it */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_TEXT, true, "ok \xc3\xa9", 5) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "ok \xc3\xa9"));
        CHECK(f, send_frame(&c, OP_TEXT, false, "bad \xc3", 5) == 0);
        CHECK(f, send_frame(&c, OP_CONT, true, "(", 1) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1007);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 4));
        CHECK(f, atomic_get(&f->delivered) == 2);
out:
        free(fr.data);
        client_close(&c);
}

static void c_pause(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static uint8_t all[8192], part[2000];
        struct frame fr = { 0 };
        char head[4096];
        uint64_t t0;
        size_t n;
        int pongs = 0, got = 0;

        /* "pause" and three more in one write: wslay reads them all at once, the callback pauses
         * at the first, the other three wait; so does a ping sent meanwhile */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        n = encode_frame(all, OP_TEXT, true, "pause", 5);
        n += encode_frame(all + n, OP_TEXT, true, "a", 1);
        n += encode_frame(all + n, OP_BINARY, true, "b", 1);
        n += encode_frame(all + n, OP_TEXT, true, "c", 1);
        t0 = now_usec();
        CHECK(f, write_all(c.fd, all, n) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "paused"));
        CHECK(f, send_frame(&c, OP_PING, true, "p", 1) == 0);
        /* nothing comes back before the server resumes: not the messages, not the pong */
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "resumed"));
        CHECK(f, now_usec() - t0 >= (RESUME_MS - 50) * 1000ULL);
        while (got < 3 || pongs < 1) {
                CHECK(f, read_frame(&c, &fr) == 0);
                if (fr.opcode == OP_PONG) {
                        CHECK(f, frame_is(&fr, OP_PONG, "p") && pongs++ == 0);
                        continue;
                }
                CHECK(f, got != 0 || frame_is(&fr, OP_TEXT, "a"));
                CHECK(f, got != 1 || frame_is_bin(&fr, "b", 1));
                CHECK(f, got != 2 || frame_is(&fr, OP_TEXT, "c"));
                got++;
        }
        /* reading goes on as before */
        CHECK(f, send_frame(&c, OP_TEXT, true, "d", 1) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "d"));
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
        client_close(&c);

        /* the same with the handshake: "pause" and over 4 KiB more came with it, so some of it is
         * still unread by wslay when the callback pauses and must outlive the upgrade callback */
        for (size_t i = 0; i < sizeof part; i++)
                part[i] = pattern(5, i);
        n = encode_frame(all, OP_TEXT, true, "pause", 5);
        for (int k = 0; k < 3; k++)
                n += encode_frame(all + n, OP_BINARY, true, part, sizeof part);
        n += encode_frame(all + n, OP_TEXT, true, "x", 1);
        CHECK(f, handshake_with(&c, f->port, "/ws?mode=echo", all, n, head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "paused"));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "resumed"));
        for (int k = 0; k < 3; k++)
                CHECK(f, read_frame(&c, &fr) == 0 && frame_is_big(&fr, true, part, sizeof part));
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "x"));

        /* "pause", a message and the client's close in one read: the close is answered at once,
         * but the connection stays until the waiting message is delivered on the resume */
        n = encode_frame(all, OP_TEXT, true, "pause", 5);
        n += encode_frame(all + n, OP_TEXT, true, "y", 1);
        n += encode_frame(all + n, OP_CLOSE, true, "\003\350", 2);
        t0 = now_usec();
        CHECK(f, write_all(c.fd, all, n) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "paused"));
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, now_usec() - t0 >= (RESUME_MS - 50) * 1000ULL);
        CHECK(f, wait_count(&f->closed, 2));
        CHECK(f, atomic_get(&f->delivered) == 9);
out:
        free(fr.data);
        client_close(&c);
}

static void c_close_in_callback(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static uint8_t all[256];
        struct frame fr = { 0 };
        char head[4096];
        size_t n;

        /* ws_close from inside the message callback: its close frame goes out, the message behind
         * it (same read) is dropped, sends fail with -EPIPE */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_TEXT, true, "first", 5) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "first"));
        n = encode_frame(all, OP_TEXT, true, "close", 5);
        n += encode_frame(all + n, OP_TEXT, true, "after", 5);
        CHECK(f, write_all(c.fd, all, n) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 4000 && memcmp(fr.data + 2, "bye", 3) == 0);
        /* more data before the client's close: read (for the close) and thrown away */
        CHECK(f, send_frame(&c, OP_TEXT, true, "later", 5) == 0);
        CHECK(f, send_close(&c, 4000) == 0);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 1));
        CHECK(f, atomic_get(&f->epipe_ok) == 1 && atomic_get(&f->delivered) == 1);
        client_close(&c);

        /* the client closes mid-message: a close frame between the pieces */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        CHECK(f, send_frame(&c, OP_BINARY, false, "part", 4) == 0);
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, read_frame(&c, &fr) == 0 && close_code(&fr) == 1000);
        CHECK(f, at_eof(&c));
        CHECK(f, wait_count(&f->closed, 2));
        client_close(&c);

        /* ... and just goes away in the middle of a frame */
        CHECK(f, handshake(&c, f->port, "/ws?mode=echo", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        n = encode_frame(all, OP_BINARY, true, all + 128, 100);
        CHECK(f, write_all(c.fd, all, n - 90) == 0);
        client_close(&c);
        CHECK(f, wait_count(&f->closed, 3));
        CHECK(f, atomic_get(&f->delivered) == 1);
out:
        free(fr.data);
        client_close(&c);
}

/* 256 MiB in 64 KiB binary frames (the handler refills on drain), read as fast as we can. */
static void c_throughput(struct fixture *f)
{
        static struct client c = { .fd = -1 };
        static uint8_t b[1 << 20];
        struct frame fr = { 0 };
        char head[4096];
        size_t have = 0, pos = 0;
        uint64_t left = 0, total = 0, t0;
        bool in_payload = false;

        CHECK(f, handshake(&c, f->port, "/ws?mode=pump", head, sizeof head) == 101);
        CHECK(f, read_frame(&c, &fr) == 0 && frame_is(&fr, OP_TEXT, "hello"));
        /* whatever read_frame read beyond "hello" first */
        memcpy(b, c.buf, c.len);
        have = c.len;
        c.len = 0;
        t0 = now_usec();
        for (;;) {
                ssize_t n;

                if (in_payload && pos < have) {
                        size_t k = have - pos < left ? have - pos : (size_t)left;

                        pos += k;
                        left -= k;
                        total += k;
                        in_payload = left > 0;
                        continue;
                }
                /* a frame header (the close frame is 10 bytes: one always follows) */
                if (!in_payload && have - pos >= 10) {
                        uint8_t *h = b + pos;
                        uint64_t len = h[1] & 0x7f;
                        size_t hl = 2;

                        CHECK(f, (h[1] & 0x80) == 0);
                        if (len == 126) {
                                len = (uint64_t)h[2] << 8 | h[3];
                                hl = 4;
                        } else if (len == 127) {
                                len = 0;
                                for (int i = 0; i < 8; i++)
                                        len = len << 8 | h[2 + i];
                                hl = 10;
                        }
                        if ((h[0] & 0x0f) == OP_CLOSE)
                                break;
                        CHECK(f, h[0] == (0x80 | OP_BINARY) && len == PUMP_FRAME);
                        pos += hl;
                        left = len;
                        in_payload = true;
                        continue;
                }
                if (pos == have)
                        pos = have = 0;
                else if (pos > sizeof b / 2) {
                        memmove(b, b + pos, have - pos);
                        have -= pos;
                        pos = 0;
                }
                n = recv(c.fd, b + have, sizeof b - have, 0);
                CHECK(f, n > 0);
                have += (size_t)n;
        }
        f->pump_usec = now_usec() - t0;
        f->pump_bytes = total;
        CHECK(f, total == PUMP_BYTES);
        CHECK(f, send_close(&c, 1000) == 0);
        CHECK(f, wait_count(&f->closed, 1));
out:
        free(fr.data);
        client_close(&c);
}

/* ------------------------------------------------------------------------------------------ */
/* harness */

static void on_done(uv_async_t *a)
{
        struct fixture *f = a->data;

        http_server_stop(f->srv);
        f->srv = NULL;
        uv_close((uv_handle_t *)a, NULL);
}

static void *client_main(void *data)
{
        struct fixture *f = data;

        f->client(f);
        (void)uv_async_send(&f->done);
        return NULL;
}

static void run(struct fixture *f, void (*client)(struct fixture *f))
{
        struct http_server_config cfg = {
                .listen = "127.0.0.1:0",
                .app = f,
                .routes = routes,
                .n_routes = ELEMENTSOF(routes),
        };
        struct sbx_err err = { 0 };
        pthread_t th;

        memset(f, 0, sizeof *f);
        f->client = client;
        assert_int_equal(uv_loop_init(&f->loop), 0);
        assert_int_equal(http_server_start(&f->loop, &cfg, &f->srv, &err), 0);
        f->port = http_server_port(f->srv);
        assert_true(f->port > 0);
        assert_int_equal(uv_async_init(&f->loop, &f->done, on_done), 0);
        f->done.data = f;
        assert_int_equal(pthread_create(&th, NULL, client_main, f), 0);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        if (f->failure[0])
                fail_msg("client: %s", f->failure);
        /* every accepted socket was reported closed exactly once (a second call would count) */
        assert_int_equal(f->closed, f->accepted);
}

static struct fixture fx;

static void test_ws_basic(void **state)
{
        run(&fx, c_basic);
}

static void test_ws_extra_and_ticks(void **state)
{
        run(&fx, c_extra_and_ticks);
}

static void test_ws_server_close(void **state)
{
        run(&fx, c_server_close);
}

static void test_ws_protocol_errors(void **state)
{
        run(&fx, c_protocol_errors);
}

static void test_ws_leave_and_flood(void **state)
{
        run(&fx, c_leave_and_flood);
}

static void test_ws_bad_handshakes(void **state)
{
        run(&fx, c_bad_handshakes);
}

static void test_ws_stop_open(void **state)
{
        run(&fx, c_stop_open);
        assert_int_equal(fx.accepted, 2);
        for (int i = 0; i < 2; i++) {
                uint8_t b[256];
                size_t len = 0;
                ssize_t n;

                assert_true(fx.leftover[i] >= 0);
                /* read to the end: the server closed it */
                while ((n = recv(fx.leftover[i], b + len, sizeof b - len, 0)) > 0)
                        len += (size_t)n;
                assert_true(n == 0 || errno == ECONNRESET);
                if (i == 0) {
                        /* the open one got "going away" (1001) first */
                        assert_true(len >= 4 && b[0] == 0x88 && b[1] == len - 2);
                        assert_int_equal(b[2] << 8 | b[3], 1001);
                } else
                        /* the closing one had its 1000 already (unless the client read it) */
                        assert_true(len == 0 || (len >= 4 && b[0] == 0x88 && (b[2] << 8 | b[3]) == 1000));
                close(fx.leftover[i]);
        }
}

static void test_ws_binary_and_drain(void **state)
{
        run(&fx, c_binary_and_drain);
}

static void test_ws_messages(void **state)
{
        run(&fx, c_messages);
}

static void test_ws_message_limits(void **state)
{
        run(&fx, c_message_limits);
}

static void test_ws_pause(void **state)
{
        run(&fx, c_pause);
}

static void test_ws_close_in_callback(void **state)
{
        run(&fx, c_close_in_callback);
}

static void test_ws_throughput(void **state)
{
        run(&fx, c_throughput);
        printf("# ws throughput: %llu MiB server->client in 64 KiB binary frames over loopback: %.3f s, %.0f MB/s\n",
               (unsigned long long)(fx.pump_bytes >> 20), fx.pump_usec / 1e6,
               fx.pump_usec ? fx.pump_bytes / (double)fx.pump_usec : 0.0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_accept_key),
                cmocka_unit_test(test_tokens_and_handshake),
                cmocka_unit_test(test_close_payload),
                cmocka_unit_test(test_ws_basic),
                cmocka_unit_test(test_ws_extra_and_ticks),
                cmocka_unit_test(test_ws_server_close),
                cmocka_unit_test(test_ws_protocol_errors),
                cmocka_unit_test(test_ws_leave_and_flood),
                cmocka_unit_test(test_ws_bad_handshakes),
                cmocka_unit_test(test_ws_stop_open),
                cmocka_unit_test(test_ws_binary_and_drain),
                cmocka_unit_test(test_ws_messages),
                cmocka_unit_test(test_ws_message_limits),
                cmocka_unit_test(test_ws_pause),
                cmocka_unit_test(test_ws_close_in_callback),
                cmocka_unit_test(test_ws_throughput),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
