// SPDX-License-Identifier: Apache-2.0
/*
 * WebSocket server side (ws.h): the RFC 6455 handshake on top of http_reply_upgrade(), then wslay's
 * event API on the socket libmicrohttpd hands over, watched with a uv_poll_t on the server's loop.
 * wslay does the framing: it parses client frames (and refuses unmasked, oversize and malformed
 * ones, and text that is not UTF-8, with a close), assembles messages when the caller takes them,
 * answers pings and close frames, and queues our frames; this file feeds it the socket
 * (non-blocking recv/send in its callbacks), polls for what it wants, bounds its send queue
 * (SBX_STREAM_BUFFER) and tells the caller when it drained, holds client messages back while the
 * caller paused reading, and runs the close handshake's deadline. What the caller sends from its
 * message callback goes out right away, from inside wslay_event_recv (wslay keeps its input and
 * output state apart), so that it is out before a close the client sent in the same read is
 * answered. It never closes the socket itself (MHD does, after http_upgrade_close()) and learns
 * that the connection is over from the request's on_close callback, which is where closed() runs.
 * The handshake helpers at the top are ws-internal.h.
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
#include <wslay/wslay.h>

#include "api/ws-internal.h"
#include "common/log.h"
#include "common/util.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24              /* base64 of 16 bytes */
#define WS_READ_BUDGET (64 * 1024) /* bytes read per readable event before giving the loop back */
#define WS_STOPPING_REASON "server stopping"

/* ---------- pure helpers (ws-internal.h) ---------- */

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

/* A client message read while the caller paused reading: delivered in order after the restart. */
struct ws_held {
        struct ws_held *next;
        bool binary;
        size_t len;
        uint8_t data[];
};

struct ws_conn {
        uv_loop_t *loop;
        ws_closed_fn closed;
        ws_drain_fn drain;
        ws_message_fn message; /* NULL: client data is thrown away */
        void *data;
        void *urh;                   /* the server's upgrade handle: from the upgrade to http_upgrade_close */
        int fd;                      /* client socket, MHD's (never closed here); -EBADF before the upgrade */
        wslay_event_context_ptr ctx; /* the framing: from ws_accept to ws_free */

        uv_timer_t timer; /* close handshake / flush deadline */
        uv_timer_t kick;  /* next loop turn: held messages, extra bytes, a drain the caller's send made due */
        uv_poll_t poll;   /* on fd, from the upgrade until ws_finish */
        unsigned handles; /* uv handles not yet closed; c is freed at 0 once gone */
        bool poll_active; /* poll initialised and not closed */
        int poll_events;  /* what poll is started for (0: stopped) */
        bool send_full;   /* the socket said EAGAIN: no send until the poll finds it writable */

        const uint8_t *extra; /* bytes MHD read behind the request, fed to wslay before the socket: */
        size_t extra_len;     /* MHD's buffer inside on_upgraded, then extra_buf if some are left */
        uint8_t *extra_buf;
        size_t read_budget; /* bytes the recv callback may still take from the socket this round */
        int io_error;       /* set by the callbacks: -errno, or -EPIPE at end of stream */

        size_t message_max;   /* ws_on_message's max_len */
        bool buffering;       /* wslay assembles data messages (message was set at the last switch) */
        bool mode_pending;    /* message changed while a data message was being read */
        bool msg_open;        /* a data message's first frame is in, its last is not */
        bool read_paused;     /* ws_pause_read */
        struct ws_held *held; /* messages read while paused, oldest first */
        struct ws_held **held_tail;

        bool want_drain; /* -ENOBUFS (or a small ws_send_room) since the last drain call */
        bool in_recv;    /* inside wslay_event_recv */
        bool busy;       /* inside one of our loop callbacks, which ends with ws_settle() */

        uint8_t close_payload[WS_MAX_CONTROL_PAYLOAD]; /* ws_close's frame, while close_pending */
        size_t close_len;
        bool close_requested; /* ws_close ran: the caller queues nothing more */
        bool close_pending;   /* its close frame waits for the frames queued before it */

        bool upgraded;       /* on_upgraded ran */
        bool finish_pending; /* the deadline passed before the upgrade: finish right at it */
        bool finished;       /* the socket was given back (or there never will be one) */
        bool gone;           /* the request ended: closed() ran */
};

static void ws_drop_held(struct ws_conn *c)
{
        while (c->held) {
                struct ws_held *m = c->held;

                c->held = m->next;
                free(m);
        }
        c->held_tail = &c->held;
}

static void ws_free(struct ws_conn *c)
{
        ws_drop_held(c);
        free(c->extra_buf);
        wslay_event_context_free(c->ctx);
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
        (void)uv_timer_stop(&c->kick);
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

/* What the send queue holds, as counted against SBX_STREAM_BUFFER (wslay counts a frame until its
 * last byte is out; both counters are kept by wslay as it goes, no queue walk). */
static size_t ws_queued(struct ws_conn *c)
{
        return wslay_event_get_queued_msg_length(c->ctx) + wslay_event_get_queued_msg_count(c->ctx) * WS_FRAME_COST;
}

/* wslay queues a close itself when the client closes or breaks the protocol, and reads no more
 * from then on: after that, and after our own close is out, nothing may be queued. */
static bool ws_closing(struct ws_conn *c)
{
        return !wslay_event_get_read_enabled(c->ctx) || !wslay_event_get_write_enabled(c->ctx);
}

/* The caller may still queue frames (and hear about the drain). */
static bool ws_sendable(struct ws_conn *c)
{
        return !c->gone && !c->finished && !c->close_requested && !ws_closing(c);
}

/*
 * Reading stops while more than SBX_STREAM_BUFFER waits to be sent: only pongs take the queue
 * beyond it (ws_send_* and ws_ping stay within), so this is a client that pings without
 * reading, and each of its pings would cost memory. Once our close is out wslay queues nothing more
 * (and its count, which keeps pongs it dropped behind a queued close, no longer matters).
 */
static bool ws_read_paused(struct ws_conn *c)
{
        return wslay_event_get_write_enabled(c->ctx) && ws_queued(c) > SBX_STREAM_BUFFER;
}

/* May wslay take more input (extra bytes or the socket)? Not while the caller paused reading or
 * held messages wait (they go first), except that after ws_close we read on for the client's close. */
static bool ws_may_read(struct ws_conn *c)
{
        if (c->gone || c->finished || ws_read_paused(c))
                return false;
        return c->close_requested || (!c->read_paused && !c->held);
}

/* Switch wslay between assembling messages for the caller and throwing data away (frame by frame,
 * with the old per-frame limit). Only between data messages: wslay keeps a message's pieces by the
 * mode its first frame found. */
static void ws_apply_mode(struct ws_conn *c)
{
        c->mode_pending = false;
        c->buffering = c->message != NULL;
        wslay_event_config_set_no_buffering(c->ctx, !c->buffering);
        wslay_event_config_set_max_recv_msg_length(c->ctx, c->buffering ? c->message_max : WS_MAX_IN_PAYLOAD);
}

/* ---- wslay's callbacks (the socket is non-blocking; WOULDBLOCK ends wslay's loop) ---- */

static ssize_t on_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *user_data)
{
        struct ws_conn *c = user_data;
        ssize_t n;

        if (c->io_error < 0) {
                /* a message could not be kept (ENOMEM): end the read, and the connection */
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
                return -1;
        }
        if (!ws_may_read(c)) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        if (c->extra_len > 0) {
                n = (ssize_t)(len < c->extra_len ? len : c->extra_len);
                memcpy(buf, c->extra, (size_t)n);
                c->extra += n;
                c->extra_len -= (size_t)n;
                return n;
        }
        if (c->read_budget == 0) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        if (len > c->read_budget)
                len = c->read_budget;
        do
                n = recv(c->fd, buf, len, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        if (n <= 0) {
                c->io_error = n == 0 ? -EPIPE : -errno;
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
                return -1;
        }
        c->read_budget -= (size_t)n;
        return n;
}

static ssize_t on_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user_data)
{
        struct ws_conn *c = user_data;
        /* a frame's header is sent on its own, with its payload right behind: one segment for both */
        int more = (flags & WSLAY_MSG_MORE) ? MSG_MORE : 0;
        ssize_t n;

        do
                n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT | more);
        while (n < 0 && errno == EINTR);
        if (n >= 0)
                return n;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                c->send_full = true;
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        c->io_error = -errno;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
}

/* Only clients mask their frames: wslay never asks a server context for a key. */
static int on_wslay_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user_data)
{
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
}

static void on_wslay_frame_start(wslay_event_context_ptr ctx, const struct wslay_event_on_frame_recv_start_arg *arg,
                                 void *user_data)
{
        struct ws_conn *c = user_data;

        if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
                c->msg_open = true;
}

/* Keep a copy of a message for after the pause. -ENOMEM ends the connection (the recv callback
 * fails from then on): a message may not go missing in the middle of a stream. */
static void ws_hold(struct ws_conn *c, bool binary, const uint8_t *msg, size_t len)
{
        struct ws_held *m = malloc(sizeof *m + len);

        if (!m) {
                c->io_error = -ENOMEM;
                return;
        }
        m->next = NULL;
        m->binary = binary;
        m->len = len;
        if (len > 0)
                memcpy(m->data, msg, len);
        *c->held_tail = m;
        c->held_tail = &m->next;
}

/*
 * A whole message (or, when data is thrown away, the end of one, with no payload). wslay answers
 * pings and close frames itself. A data message goes to the caller if the mode it was read in
 * assembles messages and the caller may have it now; while reading is paused (the caller paused
 * from inside an earlier message of this same read: wslay goes on through what it has in its
 * buffer) or older messages wait, it is kept for later.
 */
static void on_wslay_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user_data)
{
        struct ws_conn *c = user_data;
        bool binary = arg->opcode == WSLAY_BINARY_FRAME;

        if (arg->opcode == WSLAY_CONNECTION_CLOSE)
                log_debug("ws: the client closed the connection (%u)", arg->status_code);
        if (arg->opcode != WSLAY_TEXT_FRAME && !binary)
                return;
        c->msg_open = false;
        if (c->buffering && c->message && !c->close_requested && !c->gone && !c->finished && c->io_error == 0) {
                if (c->read_paused || c->held)
                        ws_hold(c, binary, arg->msg, arg->msg_length);
                else
                        c->message(c, binary, arg->msg, arg->msg_length, c->data);
        }
        if (c->mode_pending && !c->gone)
                ws_apply_mode(c);
}

static const struct wslay_event_callbacks ws_callbacks = {
        .recv_callback = on_wslay_recv,
        .send_callback = on_wslay_send,
        .genmask_callback = on_wslay_genmask,
        .on_frame_recv_start_callback = on_wslay_frame_start,
        .on_msg_recv_callback = on_wslay_msg,
};

/* ---- driving wslay ---- */

static int ws_wslay_errno(struct ws_conn *c, int r)
{
        if (r == WSLAY_ERR_NOMEM)
                return -ENOMEM;
        return c->io_error < 0 ? c->io_error : -EIO;
}

/* Queue the close frame ws_close() left pending (all or nothing; wslay refuses it once a close
 * is queued already, which is fine: one close per connection). 0 or -ENOMEM. */
static int ws_queue_pending_close(struct ws_conn *c)
{
        int r;

        c->close_pending = false;
        if (c->close_len >= 2)
                r = wslay_event_queue_close(c->ctx, (uint16_t)(c->close_payload[0] << 8 | c->close_payload[1]),
                                            c->close_payload + 2, c->close_len - 2);
        else
                r = wslay_event_queue_close(c->ctx, 0, NULL, 0);
        return r == WSLAY_ERR_NOMEM ? -ENOMEM : 0;
}

/*
 * Send what the socket takes now; once everything queued before ws_close() is out, its close
 * frame follows (wslay would put a control frame ahead of queued data frames, and stop sending
 * after it). 0, maybe with frames left, or -errno: the connection is broken. While the socket is
 * full, a frame the caller queues waits for the poll instead of costing a send that fails.
 */
static int ws_send(struct ws_conn *c)
{
        if (c->send_full)
                return 0;
        for (;;) {
                int r = wslay_event_send(c->ctx);

                if (r < 0)
                        return ws_wslay_errno(c, r);
                if (!c->close_pending || wslay_event_want_write(c->ctx))
                        return 0;
                r = ws_queue_pending_close(c);
                if (r < 0)
                        return r;
                if (!wslay_event_want_write(c->ctx))
                        return 0;
        }
}

/*
 * Let wslay read: the extra bytes if any, then the socket until it has no more or budget bytes
 * were taken (none while the caller paused). Whole messages reach the caller from inside this
 * call. 0, or -errno / -EPIPE at end of stream: the connection is over.
 */
static int ws_recv(struct ws_conn *c, size_t budget)
{
        int r;

        if (!wslay_event_want_read(c->ctx) || !ws_may_read(c))
                return 0;
        c->read_budget = budget;
        c->in_recv = true;
        r = wslay_event_recv(c->ctx);
        c->in_recv = false;
        if (r == 0)
                return 0;
        if (c->io_error < 0 || r == WSLAY_ERR_NOMEM)
                return ws_wslay_errno(c, r);
        /* wslay's frame parser refused the input (a control frame over 125 bytes or fragmented, a
         * length not in its shortest form): it queued a close, without a code, and reads no more */
        log_debug("ws: malformed frame from the client, closing the connection");
        return 0;
}

static bool ws_drain_due(struct ws_conn *c)
{
        return c->want_drain && c->drain && ws_sendable(c) && ws_queued(c) <= SBX_STREAM_BUFFER / 2;
}

static void on_kick(uv_timer_t *t);

/* Come back on the next loop turn (kick) for what is due but cannot happen where we are. */
static void ws_kick(struct ws_conn *c, bool drain)
{
        bool due;

        if (!c->upgraded || c->finished || c->gone || uv_is_active((uv_handle_t *)&c->kick))
                return;
        due = (drain && ws_drain_due(c)) || (c->held && !c->read_paused && !c->close_requested) ||
              (c->extra_len > 0 && wslay_event_want_read(c->ctx) && ws_may_read(c));
        if (due)
                (void)uv_timer_start(&c->kick, on_kick, 0, 0);
}

static void on_poll(uv_poll_t *p, int status, int events);

/* After anything happened: send, finish if both sides are done, and poll for what is still wanted. */
static void ws_update(struct ws_conn *c)
{
        int want = 0, r;

        if (!c->upgraded || c->finished || c->gone)
                return;
        r = ws_send(c);
        /* inside wslay_event_recv (the caller sent from its message callback): leave no
         * WOULDBLOCK of the send for the read to find */
        if (r >= 0 && c->in_recv)
                wslay_event_set_error(c->ctx, 0);
        if (r < 0) {
                log_debug("ws: cannot send: %s, closing the connection", strerror(-r));
                return ws_finish(c);
        }
        if (!wslay_event_want_read(c->ctx)) {
                /* the client's close is in (or never coming: a protocol error): done once ours is
                 * out and the messages read before it are delivered (or the deadline passed) */
                if (!wslay_event_want_write(c->ctx) && !c->held)
                        return ws_finish(c);
                ws_deadline(c);
        }
        if (wslay_event_want_read(c->ctx) && ws_may_read(c))
                want |= UV_READABLE;
        if (wslay_event_want_write(c->ctx))
                want |= UV_WRITABLE;
        if (want != c->poll_events) {
                r = want ? uv_poll_start(&c->poll, want, on_poll) : uv_poll_stop(&c->poll);
                if (r < 0) {
                        log_warn("ws: cannot watch the connection: %s, closing it", uv_strerror(r));
                        return ws_finish(c);
                }
                c->poll_events = want;
        }
        /* the caller's own call (a send that flushed the queue, a restart): the rest on the next
         * turn; our loop callbacks see to it themselves on their way out (ws_settle) */
        if (!c->busy)
                ws_kick(c, true);
}

/* The caller's drain callback, if it is due: after a socket write, from our loop callbacks only. */
static void ws_maybe_drain(struct ws_conn *c)
{
        if (!ws_drain_due(c))
                return;
        c->want_drain = false;
        c->drain(c, c->data);
}

/* The way out of each of our loop callbacks: update, drain, and come back for the held messages
 * and extra bytes still due (not for a drain: it waits for the next socket write, else a caller
 * whose frame does not fit yet would be called back on every loop turn). */
static void ws_settle(struct ws_conn *c)
{
        ws_update(c);
        ws_maybe_drain(c);
        c->busy = false;
        ws_kick(c, false);
}

/* Hand the held messages over, oldest first, until the caller pauses again or closes. */
static void ws_deliver_held(struct ws_conn *c)
{
        while (c->held && !c->read_paused && !c->close_requested && !c->gone && !c->finished) {
                struct ws_held *m = c->held;

                c->held = m->next;
                if (!c->held)
                        c->held_tail = &c->held;
                if (c->message)
                        c->message(c, m->binary, m->data, m->len, c->data);
                free(m);
        }
}

static void on_kick(uv_timer_t *t)
{
        struct ws_conn *c = t->data;
        int r = 0;

        if (!c->upgraded || c->finished || c->gone)
                return;
        c->busy = true;
        ws_deliver_held(c);
        /* extra bytes left by a pause: the socket is the poll's, once they are in */
        if (c->extra_len > 0)
                r = ws_recv(c, 0);
        if (r < 0) {
                if (r != -EPIPE)
                        log_debug("ws: connection failed: %s", strerror(-r));
                c->busy = false;
                return ws_finish(c);
        }
        ws_settle(c);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        struct ws_conn *c = p->data;
        int r = status;

        c->busy = true;
        if (r >= 0 && (events & UV_WRITABLE))
                c->send_full = false;
        if (r >= 0 && (events & UV_READABLE))
                r = ws_recv(c, WS_READ_BUDGET);
        if (r < 0) {
                if (r != -EPIPE)
                        log_debug("ws: connection failed: %s", strerror(-r));
                c->busy = false;
                return ws_finish(c);
        }
        ws_settle(c);
}

/* http_reply_upgrade's callback: the 101 is out and sock is ours to read and write. */
static void on_upgraded(void *cls, int sock, void *urh, const char *extra, size_t extra_len)
{
        struct ws_conn *c = cls;
        int r;

        c->upgraded = true;
        c->fd = sock;
        c->urh = urh;
        /* MHD turns Nagle back on for upgraded sockets; events are whole frames that should go now
         * (fails on unix sockets, which need nothing) */
        (void)setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
        if (c->finish_pending) {
                /* ws_close's deadline passed already: one try at sending what is queued */
                (void)ws_send(c);
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
        c->busy = true;
        /* frames queued before the upgrade go ahead of answers to the client's first frames */
        r = ws_send(c);
        if (r >= 0 && extra_len > 0) {
                /* bytes the client sent right behind its request, already read by the server (into
                 * its buffer, valid during this call): wslay takes them all here unless the caller
                 * pauses reading from its message callback; then the rest is copied for later */
                c->extra = (const uint8_t *)extra;
                c->extra_len = extra_len;
                r = ws_recv(c, 0);
                if (r >= 0 && c->extra_len > 0) {
                        c->extra_buf = malloc(c->extra_len);
                        if (c->extra_buf)
                                memcpy(c->extra_buf, c->extra, c->extra_len);
                        else
                                r = -ENOMEM;
                }
                c->extra = c->extra_buf;
                if (!c->extra_buf)
                        c->extra_len = 0;
        }
        if (r < 0) {
                if (r != -EPIPE)
                        log_debug("ws: connection failed: %s", strerror(-r));
                c->busy = false;
                return ws_finish(c);
        }
        ws_settle(c);
}

/* The request's on_close: MHD is done with the connection (after http_upgrade_close, the client
 * leaving before the upgrade, or the server stopping). The socket is about to be closed. */
static void on_request_end(struct http_request *req, void *data)
{
        struct ws_conn *c = data;

        if (c->upgraded && !c->finished) {
                /* the server is stopping under an open socket: say so (or send the caller's pending
                 * close right away), if the socket takes it now */
                if (c->close_pending)
                        (void)ws_queue_pending_close(c);
                else
                        (void)wslay_event_queue_close(c->ctx, WSLAY_CODE_GOING_AWAY,
                                                      (const uint8_t *)WS_STOPPING_REASON,
                                                      sizeof WS_STOPPING_REASON - 1);
                (void)wslay_event_send(c->ctx);
        }
        c->urh = NULL;
        c->finished = true;
        c->gone = true;
        ws_drop_held(c);
        (void)uv_timer_stop(&c->timer);
        (void)uv_timer_stop(&c->kick);
        ws_close_poll(c);
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
        uv_close((uv_handle_t *)&c->kick, on_handle_closed);
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
        c->held_tail = &c->held;
        c->message_max = SBX_WS_MAX_MESSAGE;
        if (wslay_event_context_server_init(&c->ctx, &ws_callbacks, c) != 0) {
                free(c);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        /* until the caller takes messages, client data is thrown away: not assembled, and a frame
         * (rather than a message) beyond WS_MAX_IN_PAYLOAD is refused with 1009 */
        ws_apply_mode(c);
        r = uv_timer_init(c->loop, &c->timer);
        if (r < 0) {
                ws_free(c);
                return sbx_err_set(err, -ENOMEM, "cannot create a timer: %s", uv_strerror(r));
        }
        c->timer.data = c;
        c->handles = 1;
        r = uv_timer_init(c->loop, &c->kick);
        if (r >= 0) {
                c->kick.data = c;
                c->handles++;
                http_request_on_close(req, on_request_end, c);
                r = http_reply_upgrade(req, hdrs, on_upgraded, c);
        }
        if (r < 0) {
                http_request_on_close(req, NULL, NULL);
                c->gone = true;
                uv_close((uv_handle_t *)&c->timer, on_handle_closed);
                if (c->handles == 2)
                        uv_close((uv_handle_t *)&c->kick, on_handle_closed);
                if (r == -EPROTO)
                        return sbx_err_setr(err, -SBX_E_INVALID, "bad_websocket_handshake",
                                            "a websocket handshake must be an HTTP/1.1 request");
                return sbx_err_set(err, r, "cannot answer the websocket handshake: %s", strerror(-r));
        }
        *ret = c;
        return 0;
}

/* Queue one data or ping frame within SBX_STREAM_BUFFER: ws_send_text, ws_send_binary, ws_ping. */
static int ws_queue(struct ws_conn *c, uint8_t opcode, const void *payload, size_t len)
{
        struct wslay_event_msg msg = { .opcode = opcode, .msg = payload, .msg_length = len };
        int r;

        if (!c || !ws_sendable(c))
                return -EPIPE;
        if (len > SBX_STREAM_BUFFER - WS_FRAME_COST)
                return -EMSGSIZE;
        if (ws_queued(c) + len + WS_FRAME_COST > SBX_STREAM_BUFFER) {
                c->want_drain = true;
                return -ENOBUFS;
        }
        r = wslay_event_queue_msg(c->ctx, &msg);
        if (r == WSLAY_ERR_NOMEM)
                return -ENOMEM;
        if (r < 0)
                return -EPIPE;
        ws_update(c);
        return 0;
}

int ws_send_text(struct ws_conn *c, const char *text, size_t len)
{
        return ws_queue(c, WSLAY_TEXT_FRAME, text, len);
}

int ws_send_binary(struct ws_conn *c, const void *data, size_t len)
{
        return ws_queue(c, WSLAY_BINARY_FRAME, data, len);
}

int ws_ping(struct ws_conn *c)
{
        return ws_queue(c, WSLAY_PING, NULL, 0);
}

size_t ws_send_room(struct ws_conn *c)
{
        size_t q;

        if (!c || !ws_sendable(c))
                return 0;
        q = ws_queued(c);
        if (q > SBX_STREAM_BUFFER / 2)
                c->want_drain = true;
        return q + WS_FRAME_COST >= SBX_STREAM_BUFFER ? 0 : SBX_STREAM_BUFFER - WS_FRAME_COST - q;
}

void ws_on_drain(struct ws_conn *c, ws_drain_fn fn)
{
        if (c && !c->gone)
                c->drain = fn;
}

void ws_on_message(struct ws_conn *c, size_t max_len, ws_message_fn fn)
{
        if (!c || c->gone)
                return;
        c->message = fn;
        c->message_max = max_len < SBX_WS_MAX_MESSAGE ? max_len : SBX_WS_MAX_MESSAGE;
        if (c->msg_open)
                c->mode_pending = true;
        else
                ws_apply_mode(c);
}

void ws_pause_read(struct ws_conn *c, bool paused)
{
        if (!c || c->gone || c->read_paused == paused)
                return;
        c->read_paused = paused;
        /* stop (or restart) watching for input; held messages and extra bytes follow on a kick */
        ws_update(c);
}

void ws_close(struct ws_conn *c, uint16_t code, const char *reason)
{
        if (!c || c->gone || c->finished || c->close_requested)
                return;
        c->close_requested = true;
        ws_drop_held(c);
        /* the client closed, or broke the protocol: a close frame is on its way already */
        if (ws_closing(c))
                return;
        c->close_len = ws__close_payload(c->close_payload, code, reason);
        c->close_pending = true;
        ws_deadline(c);
        ws_update(c);
}
