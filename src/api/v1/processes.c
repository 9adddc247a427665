// SPDX-License-Identifier: Apache-2.0
/*
 * Processes (docs/processes.md): POST/GET /v1/sandboxes/{id}/processes, GET .../{pid}, signal,
 * stdin, stdin/close, resize and wait; their output read from any offset and followed live:
 * .../attach as a WebSocket (binary frames [stream u8][offset u64 BE][bytes], JSON text frames for
 * "replayed", "truncated" and "exit"; the client sends stdin as binary frames and JSON for resize,
 * eof and signals) or as Server-Sent Events, and .../stdout|stderr as a plain chunked body.
 * A listener never holds the process back: it reads the logs at its own pace (core/process.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/ws.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/util.h"
#include "core/process.h"

#define FOLLOW_CHUNK (128 * 1024)      /* bytes of output per frame / event / chunk */
#define FOLLOW_KEEPALIVE_MS 15000
#define FOLLOW_STDIN_INFLIGHT (256 * 1024) /* stdin bytes from one client waiting for the pipe */
#define WS_HEADER 9                    /* stream tag + offset */

static struct process *find_process(struct http_request *req, struct sbx_err *err)
{
        return manager_process_find(api_ctx(req)->manager, http_request_param(req, 0), http_request_param(req, 1),
                                    err);
}

/* ---------- start, list, get ---------- */

/* sbx-init answered (a client that left meanwhile keeps its request until this reply: server.h) */
static void on_started(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;

        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 201, result);
}

void v1_process_start(struct http_request *req)
{
        json_t *body = http_request_json(req);
        struct exec_spec spec = { 0 };
        struct sbx_err err = {};
        int r;

        if (!body)
                return;
        r = process_spec_parse(body, &spec, &err);
        json_decref(body);
        if (r >= 0)
                r = manager_process_start(api_ctx(req)->manager, http_request_param(req, 0), &spec, "process",
                                          on_started, req, &err);
        if (r < 0) {
                exec_spec_release(&spec);
                http_reply_error(req, &err);
        }
}

void v1_process_list(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *res = NULL;
        const char *kind = http_request_query(req, "kind");

        if (manager_process_list(api_ctx(req)->manager, http_request_param(req, 0), kind && kind[0] ? kind : NULL,
                                 &res, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, res);
}

void v1_process_get(struct http_request *req)
{
        struct sbx_err err = {};
        struct process *p = find_process(req, &err);

        if (!p) {
                http_reply_error(req, &err);
                return;
        }
        http_reply_json(req, 200, process_to_json(p));
        process_unref(p);
}

/* ---------- control ---------- */

void v1_process_signal(struct http_request *req)
{
        static const char *const known[] = { "signal", NULL };
        struct sbx_err err = {};
        json_t *body = http_request_json(req), *sig;
        struct process *p = NULL;
        int signo = 9, r;

        if (!body)
                return;
        r = json_check_fields(body, known, "", &err);
        sig = json_object_get(body, "signal");
        if (r >= 0 && json_is_string(sig))
                r = signal_parse("signal", json_string_value(sig), &signo, &err);
        else if (r >= 0 && json_is_integer(sig)) {
                if (json_integer_value(sig) < 1 || json_integer_value(sig) > 64)
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value", "'signal' must be a signal 1..64");
                else
                        signo = (int)json_integer_value(sig);
        } else if (r >= 0 && sig && !json_is_null(sig))
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'signal' must be a name or a number");
        json_decref(body);
        if (r >= 0) {
                p = find_process(req, &err);
                r = p ? process_signal(p, signo, &err) : -SBX_E_NOT_FOUND;
        }
        if (r < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, process_to_json(p));
        process_unref(p);
}

struct stdin_req {
        struct http_request *req;
        struct process *p;
        bool close_after;
};

static void on_stdin_written(void *data, int r)
{
        struct stdin_req *s = data;
        struct sbx_err err = {};

        if (r >= 0 && s->close_after)
                r = process_close_stdin(s->p, &err);
        else if (r < 0)
                sbx_err_setr(&err, -SBX_E_CONFLICT, "stdin_closed", "the process closed its stdin");
        if (r < 0)
                http_reply_error(s->req, &err);
        else
                http_reply_json(s->req, 204, NULL);
        process_unref(s->p);
        free(s);
}

/* POST .../stdin: the raw body goes to the process; ?eof=true closes stdin after it. Answered once
 * the bytes are in the pipe. */
void v1_process_stdin(struct http_request *req)
{
        struct sbx_err err = {};
        const char *eof = http_request_query(req, "eof");
        size_t len = 0;
        const char *body = http_request_body(req, &len);
        struct stdin_req *s;
        struct process *p;

        if (eof && strcmp(eof, "true") != 0 && strcmp(eof, "false") != 0) {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_value", "'eof' must be true or false");
                return;
        }
        p = find_process(req, &err);
        s = p ? calloc(1, sizeof *s) : NULL;
        if (p && !s)
                sbx_err_set(&err, -ENOMEM, "out of memory");
        if (!s) {
                process_unref(p);
                http_reply_error(req, &err);
                return;
        }
        s->req = req;
        s->p = p;
        s->close_after = eof && strcmp(eof, "true") == 0;
        if (len == 0)
                on_stdin_written(s, 0);
        else if (process_write_stdin(p, body, len, on_stdin_written, s, &err) < 0) {
                process_unref(p);
                free(s);
                http_reply_error(req, &err);
        }
}

void v1_process_stdin_close(struct http_request *req)
{
        struct sbx_err err = {};
        struct process *p = find_process(req, &err);

        if (!p || process_close_stdin(p, &err) < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 204, NULL);
        process_unref(p);
}

static int size_parse(const json_t *body, unsigned *cols, unsigned *rows, struct sbx_err *err)
{
        static const char *const known[] = { "cols", "rows", NULL };
        uint64_t c = 0, r = 0;
        int q = json_check_fields(body, known, "", err);

        if (q >= 0)
                q = json_get_u64(body, "cols", "", 1, SBX_MAX_PTY_SIZE, &c, err);
        if (q == 0)
                q = sbx_err_setr(err, -SBX_E_INVALID, "missing_field", "'cols' is required");
        if (q >= 0)
                q = json_get_u64(body, "rows", "", 1, SBX_MAX_PTY_SIZE, &r, err);
        if (q == 0)
                q = sbx_err_setr(err, -SBX_E_INVALID, "missing_field", "'rows' is required");
        *cols = (unsigned)c;
        *rows = (unsigned)r;
        return q < 0 ? q : 0;
}

void v1_process_resize(struct http_request *req)
{
        struct sbx_err err = {};
        json_t *body = http_request_json(req);
        struct process *p = NULL;
        unsigned cols, rows;
        int r;

        if (!body)
                return;
        r = size_parse(body, &cols, &rows, &err);
        json_decref(body);
        if (r >= 0) {
                p = find_process(req, &err);
                r = p ? process_resize(p, cols, rows, &err) : -SBX_E_NOT_FOUND;
        }
        if (r < 0)
                http_reply_error(req, &err);
        else
                http_reply_json(req, 200, process_to_json(p));
        process_unref(p);
}

/* ---------- wait ---------- */

struct waiter {
        struct process_listener l;
        struct http_request *req;
        struct process *p;
        uv_timer_t timer;
        bool answered;
};

static void waiter_timer_closed(uv_handle_t *h)
{
        struct waiter *w = h->data;

        process_unref(w->p);
        free(w);
}

static void waiter_answer(struct waiter *w)
{
        if (w->answered)
                return;
        w->answered = true;
        process_unlisten(&w->l);
        uv_timer_stop(&w->timer);
        if (w->req) {
                http_request_on_close(w->req, NULL, NULL);
                http_reply_json(w->req, 200, process_to_json(w->p));
                w->req = NULL;
        }
        uv_close((uv_handle_t *)&w->timer, waiter_timer_closed);
}

static void waiter_notify(struct process_listener *l, unsigned events)
{
        if (events & PROCESS_EV_END)
                waiter_answer((struct waiter *)l);
}

static void waiter_timeout(uv_timer_t *t)
{
        waiter_answer(t->data);
}

static void waiter_closed(struct http_request *req, void *data)
{
        struct waiter *w = data;

        w->req = NULL;
        waiter_answer(w);
}

/* GET .../wait?timeout=S (default 30, at most SBX_MAX_WAIT_S): the process once it ended, or as it
 * is when the time is up (status running). */
void v1_process_wait(struct http_request *req)
{
        const char *t = http_request_query(req, "timeout");
        struct sbx_err err = {};
        uint64_t timeout_s = 30;
        struct process *p;
        struct waiter *w;

        if (t && (parse_u64(t, &timeout_s) < 0 || timeout_s > SBX_MAX_WAIT_S)) {
                http_reply_errorf(req, -SBX_E_INVALID, "out_of_range", "'timeout' must be 0 to %d seconds",
                                  SBX_MAX_WAIT_S);
                return;
        }
        p = find_process(req, &err);
        if (!p) {
                http_reply_error(req, &err);
                return;
        }
        if (process_ended(p) || timeout_s == 0) {
                http_reply_json(req, 200, process_to_json(p));
                process_unref(p);
                return;
        }
        w = calloc(1, sizeof *w);
        if (!w || uv_timer_init(http_request_loop(req), &w->timer) < 0) {
                free(w);
                process_unref(p);
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        w->req = req;
        w->p = p;
        w->timer.data = w;
        w->l.notify = waiter_notify;
        process_listen(p, &w->l);
        uv_timer_start(&w->timer, waiter_timeout, timeout_s * 1000, 0);
        http_request_on_close(req, waiter_closed, w);
}

/* ---------- following output ---------- */

enum follow_mode { FOLLOW_WS, FOLLOW_SSE, FOLLOW_RAW };

struct follower {
        struct process_listener l;
        struct process *p;
        enum follow_mode mode;
        struct http_request *req;      /* SSE / raw: until it closes */
        struct http_stream *stream;    /* SSE / raw */
        struct ws_conn *ws;
        unsigned refs;                 /* the connection's + one per stdin write in flight */
        bool want[_PROCESS_STREAM_MAX];
        uint64_t off[_PROCESS_STREAM_MAX];
        uint64_t replay_end[_PROCESS_STREAM_MAX];
        bool replayed, ended, gone, follow, paused_in;
        size_t stdin_inflight;
        uv_timer_t keepalive;
        bool keepalive_init;
        char buf[WS_HEADER + FOLLOW_CHUNK];
};

static void follower_unref(struct follower *f)
{
        if (--f->refs > 0)
                return;
        process_unref(f->p);
        free(f);
}

static void keepalive_closed(uv_handle_t *h)
{
        follower_unref(h->data);
}

/* The connection is gone: stop listening; the memory goes with the last reference. */
static void follower_gone(struct follower *f)
{
        if (f->gone)
                return;
        f->gone = true;
        f->ws = NULL;
        f->stream = NULL;
        f->req = NULL;
        process_unlisten(&f->l);
        if (f->keepalive_init) {
                f->keepalive_init = false;
                uv_close((uv_handle_t *)&f->keepalive, keepalive_closed);
                return;
        }
        follower_unref(f);
}

static const char *tag_name(const struct follower *f, enum process_stream s)
{
        return process_is_pty(f->p) ? "pty" : process_stream_to_string(s);
}

static int send_json(struct follower *f, const char *event, json_t *o)
{
        char *text;
        char id[48];
        int r = -ENOMEM;

        if (!o)
                return -ENOMEM;
        json_object_set_new(o, "type", json_string(event));
        text = json_dump_compact(o);
        json_decref(o);
        if (!text)
                return -ENOMEM;
        if (f->mode == FOLLOW_WS)
                r = ws_send_text(f->ws, text, strlen(text));
        else if (f->mode == FOLLOW_SSE) {
                if (process_is_pty(f->p))
                        snprintf(id, sizeof id, "%" PRIu64, f->off[PROCESS_STDOUT]);
                else
                        snprintf(id, sizeof id, "%" PRIu64 ",%" PRIu64, f->off[PROCESS_STDOUT], f->off[PROCESS_STDERR]);
                r = http_sse_send(f->stream, event, id, text);
        }
        free(text);
        return r;
}

/* Bytes of buf[0..n) that end at a character boundary (an incomplete last UTF-8 sequence is left
 * for the next chunk) — n itself if the tail is not the start of a valid sequence. */
static size_t utf8_cut(const char *buf, size_t n)
{
        for (size_t back = 1; back <= 3 && back <= n; back++) {
                unsigned char c = (unsigned char)buf[n - back];
                if ((c & 0xC0) == 0x80)
                        continue; /* continuation byte: look further back */
                size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
                return need > back ? n - back : n;
        }
        return n;
}

/* Send one piece of stream s (at most what the transport takes now). 1 sent, 0 nothing to send,
 * -ENOBUFS wait for the drain, other < 0: give up on this client. */
static int send_piece(struct follower *f, enum process_stream s)
{
        uint64_t start, end;
        ssize_t n;
        size_t len;
        int r;

        process_stream_range(f->p, s, &start, &end);
        if (f->off[s] < start) {
                /* this client fell behind the log's window: say what it lost, go on from the window */
                if (f->mode == FOLLOW_RAW)
                        return -ERANGE;
                r = send_json(f, "truncated",
                              json_pack("{s:s,s:I,s:I}", "stream", tag_name(f, s), "from", (json_int_t)f->off[s],
                                        "to", (json_int_t)start));
                if (r < 0)
                        return r;
                f->off[s] = start;
        }
        if (f->off[s] >= end)
                return 0;
        len = FOLLOW_CHUNK;
        if (f->mode == FOLLOW_WS) {
                size_t room = ws_send_room(f->ws);
                if (room <= WS_HEADER + 512)
                        return -ENOBUFS;
                if (len > room - WS_HEADER)
                        len = room - WS_HEADER;
        }
        n = process_read(f->p, s, f->off[s], f->buf + WS_HEADER, len);
        if (n == -ERANGE)
                return send_piece(f, s); /* dropped meanwhile: report it */
        if (n <= 0)
                return n < 0 ? (int)n : 0;
        len = (size_t)n;
        switch (f->mode) {
        case FOLLOW_WS: {
                uint64_t off = f->off[s];
                f->buf[0] = (char)(process_is_pty(f->p) ? 3 : s == PROCESS_STDOUT ? 1 : 2);
                for (int i = 0; i < 8; i++)
                        f->buf[1 + i] = (char)(off >> (56 - 8 * i));
                r = ws_send_binary(f->ws, f->buf, WS_HEADER + len);
                break;
        }
        case FOLLOW_SSE: {
                const char *data = f->buf + WS_HEADER;
                size_t cut = process_ended(f->p) ? len : utf8_cut(data, len);
                json_t *o;
                if (cut == 0 && len < 4)
                        return 0; /* the rest of a character is still to come */
                if (cut == 0)
                        cut = len;
                o = json_pack("{s:s,s:I}", "stream", tag_name(f, s), "offset", (json_int_t)f->off[s]);
                if (o && utf8_valid(data, cut))
                        json_object_set_new(o, "data", json_stringn(data, cut));
                else if (o) {
                        char *b64 = malloc(base64_encoded_len(len) + 1);
                        cut = len;
                        if (b64)
                                base64_encode(data, len, b64);
                        json_object_set_new(o, "dataBase64", b64 ? json_string(b64) : json_null());
                        free(b64);
                }
                len = cut;
                f->off[s] += len; /* the event's id names the position after it */
                r = send_json(f, tag_name(f, s), o);
                if (r < 0)
                        f->off[s] -= len;
                return r < 0 ? r : 1;
        }
        case FOLLOW_RAW:
                r = http_stream_write(f->stream, f->buf + WS_HEADER, len);
                break;
        }
        if (r < 0)
                return r;
        f->off[s] += len;
        return 1;
}

static void follower_finish(struct follower *f)
{
        f->ended = true;
        if (f->mode == FOLLOW_WS) {
                ws_close(f->ws, 1000, "process ended");
                return;
        }
        http_request_on_close(f->req, NULL, NULL);
        http_stream_end(f->stream);
        follower_gone(f);
}

/* Send what the transport takes: output in offset order per stream, the replay marker once the
 * replay is out, the exit once everything is. */
static void follower_pump(struct follower *f)
{
        if (f->gone || f->ended)
                return;
        for (;;) {
                int sent = 0, r = 0;
                for (int s = 0; s < _PROCESS_STREAM_MAX; s++) {
                        if (!f->want[s])
                                continue;
                        r = send_piece(f, s);
                        if (r < 0)
                                break;
                        sent += r;
                }
                if (r == -ENOBUFS)
                        return; /* the drain callback comes back here */
                if (r < 0) {
                        follower_finish(f);
                        return;
                }
                if (sent == 0)
                        break;
        }
        if (!f->replayed) {
                bool done = true;
                for (int s = 0; s < _PROCESS_STREAM_MAX; s++)
                        done &= !f->want[s] || f->off[s] >= f->replay_end[s];
                if (done && f->mode != FOLLOW_RAW) {
                        json_t *o = json_object();
                        for (int s = 0; o && s < _PROCESS_STREAM_MAX; s++)
                                if (f->want[s])
                                        json_object_set_new(o, tag_name(f, s), json_integer((json_int_t)f->off[s]));
                        if (send_json(f, "replayed", o) == -ENOBUFS)
                                return;
                }
                f->replayed = done;
        }
        if (process_ended(f->p) || (f->mode == FOLLOW_RAW && !f->follow && f->replayed)) {
                if (f->mode != FOLLOW_RAW && send_json(f, "exit", process_to_json(f->p)) == -ENOBUFS)
                        return;
                follower_finish(f);
        }
}

static void follower_notify(struct process_listener *l, unsigned events)
{
        follower_pump((struct follower *)l);
}

static void on_ws_drain(struct ws_conn *c, void *data)
{
        follower_pump(data);
}

static void on_stream_drain(struct http_stream *s, void *data)
{
        follower_pump(data);
}

static void on_keepalive(uv_timer_t *t)
{
        struct follower *f = t->data;

        if (f->gone || f->ended)
                return;
        if (f->mode == FOLLOW_WS)
                (void)ws_ping(f->ws);
        else if (f->mode == FOLLOW_SSE)
                (void)http_sse_comment(f->stream, "keep-alive");
}

static void on_ws_closed(struct ws_conn *c, void *data)
{
        follower_gone(data);
}

static void on_http_closed(struct http_request *req, void *data)
{
        follower_gone(data);
}

/* stdin from a WebSocket client: back-pressure by not reading its frames while much waits */
static void on_follow_stdin_written(void *data, int r)
{
        struct follower *f = data;

        f->stdin_inflight = 0;
        if (!f->gone && f->paused_in) {
                f->paused_in = false;
                ws_pause_read(f->ws, false);
        }
        follower_unref(f);
}

static void ws_error(struct follower *f, const struct sbx_err *err)
{
        json_t *o = json_pack("{s:s,s:s}", "code", err->reason[0] ? err->reason : "invalid_request", "message",
                              err->msg);

        (void)send_json(f, "error", o);
}

static void follow_stdin(struct follower *f, const void *data, size_t len)
{
        struct sbx_err err = {};

        if (len == 0)
                return;
        if (process_write_stdin(f->p, data, len, on_follow_stdin_written, f, &err) < 0) {
                ws_error(f, &err);
                return;
        }
        f->refs++;
        f->stdin_inflight += len;
        if (f->stdin_inflight >= FOLLOW_STDIN_INFLIGHT && !f->paused_in) {
                f->paused_in = true;
                ws_pause_read(f->ws, true);
        }
}

static void on_ws_message(struct ws_conn *c, bool binary, const uint8_t *data, size_t len, void *cb_data)
{
        struct follower *f = cb_data;
        struct sbx_err err = {};
        json_t *o;
        const char *type;
        int r = 0;

        if (binary) {
                follow_stdin(f, data, len);
                return;
        }
        o = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
        type = json_string_value(json_object_get(o, "type"));
        if (!type)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value",
                                 "a text frame must be JSON with a 'type': stdin, eof, resize or signal");
        else if (strcmp(type, "stdin") == 0) {
                json_t *d = json_object_get(o, "data");
                if (!json_is_string(d))
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'data' must be a string");
                else
                        follow_stdin(f, json_string_value(d), json_string_length(d));
        } else if (strcmp(type, "eof") == 0)
                r = process_close_stdin(f->p, &err);
        else if (strcmp(type, "resize") == 0) {
                unsigned cols, rows;
                json_object_del(o, "type");
                r = size_parse(o, &cols, &rows, &err);
                if (r >= 0)
                        r = process_resize(f->p, cols, rows, &err);
        } else if (strcmp(type, "signal") == 0) {
                json_t *sig = json_object_get(o, "signal");
                int signo = 0;
                r = json_is_string(sig) ? signal_parse("signal", json_string_value(sig), &signo, &err)
                                        : sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'signal' must be a name");
                if (r >= 0)
                        r = process_signal(f->p, signo, &err);
        } else
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value",
                                 "unknown frame type '%.32s': stdin, eof, resize or signal", type);
        json_decref(o);
        if (r < 0)
                ws_error(f, &err);
}

/* "N" or "N,M" (stdout, stderr): the positions an SSE client saw last. */
static int parse_offsets(const char *s, uint64_t off[_PROCESS_STREAM_MAX], bool *set)
{
        char *end;

        if (!s || !*s)
                return 0;
        if (s[0] < '0' || s[0] > '9')
                return -EINVAL;
        off[0] = strtoull(s, &end, 10);
        if (*end == ',') {
                if (end[1] < '0' || end[1] > '9')
                        return -EINVAL;
                off[1] = strtoull(end + 1, &end, 10);
        }
        if (*end)
                return -EINVAL;
        *set = true;
        return 0;
}

/* Where the follower starts: from ("N": stdout or the terminal, "N,M": stdout and stderr),
 * stdoutFrom / stderrFrom, or Last-Event-ID (SSE); 0 for what none of them names. */
static int follower_offsets(struct follower *f, struct http_request *req, struct sbx_err *err)
{
        static const char *const keys[_PROCESS_STREAM_MAX] = { "stdoutFrom", "stderrFrom" };
        const char *from = http_request_query(req, "from");
        bool set = false;

        if (from && parse_offsets(from, f->off, &set) < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'from' must be a byte offset (or 'stdout,stderr' offsets)");
        if (f->mode == FOLLOW_RAW && set && strchr(from, ','))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'from' must be one byte offset here");
        for (int s = 0; s < _PROCESS_STREAM_MAX; s++) {
                const char *v = http_request_query(req, keys[s]);
                if (v && parse_u64(v, &f->off[s]) < 0)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' must be a byte offset",
                                            keys[s]);
        }
        if (f->mode == FOLLOW_SSE && !from &&
            parse_offsets(http_request_header(req, "Last-Event-ID"), f->off, &set) < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'Last-Event-ID' is not one of ours");
        for (int s = 0; s < _PROCESS_STREAM_MAX; s++) {
                uint64_t start, end;
                if (!f->want[s])
                        continue;
                process_stream_range(f->p, s, &start, &end);
                if (f->off[s] > end)
                        return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range",
                                            "'from' is beyond the end of %s (%" PRIu64 " bytes so far)",
                                            tag_name(f, s), end);
                f->replay_end[s] = end;
        }
        return 0;
}

static struct follower *follower_new(struct http_request *req, enum follow_mode mode, struct sbx_err *err)
{
        struct process *p = find_process(req, err);
        struct follower *f;

        if (!p)
                return NULL;
        f = calloc(1, sizeof *f);
        if (!f) {
                process_unref(p);
                sbx_err_set(err, -ENOMEM, "out of memory");
                return NULL;
        }
        f->p = p;
        f->mode = mode;
        f->refs = 1;
        f->follow = true;
        f->l.notify = follower_notify;
        f->l.attached = mode != FOLLOW_RAW;
        for (int s = 0; s < _PROCESS_STREAM_MAX; s++)
                f->want[s] = process_has_stream(p, s);
        return f;
}

static void follower_free_unstarted(struct follower *f)
{
        process_unref(f->p);
        free(f);
}

static void follower_start(struct follower *f, struct http_request *req)
{
        if (uv_timer_init(http_request_loop(req), &f->keepalive) == 0) {
                f->keepalive.data = f;
                f->keepalive_init = true;
                uv_timer_start(&f->keepalive, on_keepalive, FOLLOW_KEEPALIVE_MS, FOLLOW_KEEPALIVE_MS);
        }
        process_listen(f->p, &f->l);
        follower_pump(f);
}

/* GET .../attach: WebSocket with "Upgrade: websocket", else Server-Sent Events. */
void v1_process_attach(struct http_request *req)
{
        bool ws = http_request_header(req, "Upgrade") != NULL;
        struct sbx_err err = {};
        struct follower *f = follower_new(req, ws ? FOLLOW_WS : FOLLOW_SSE, &err);

        if (!f || follower_offsets(f, req, &err) < 0) {
                if (f)
                        follower_free_unstarted(f);
                http_reply_error(req, &err);
                return;
        }
        if (ws) {
                if (ws_accept(req, on_ws_closed, f, &f->ws, &err) < 0) {
                        follower_free_unstarted(f);
                        http_reply_error(req, &err);
                        return;
                }
                ws_on_drain(f->ws, on_ws_drain);
                ws_on_message(f->ws, SBX_WS_MAX_MESSAGE, on_ws_message);
        } else {
                f->req = req;
                f->stream = http_reply_sse(req);
                if (!f->stream) {
                        follower_free_unstarted(f);
                        return;
                }
                http_stream_on_drain(f->stream, on_stream_drain, f);
                http_request_on_close(req, on_http_closed, f);
        }
        follower_start(f, req);
}

/* GET .../stdout and .../stderr: the raw bytes from ?from= (default 0) as one chunked body that
 * ends when the process has ended (?follow=false: at the current end). X-Stream-Start says where
 * it starts when the log no longer holds `from`. */
static void output(struct http_request *req, enum process_stream which)
{
        const char *follow = http_request_query(req, "follow");
        struct sbx_err err = {};
        struct follower *f = follower_new(req, FOLLOW_RAW, &err);
        uint64_t start, end;
        char num[24];

        if (f && !process_has_stream(f->p, which)) {
                /* a terminal has one stream: stdout is it */
                sbx_err_setr(&err, -SBX_E_NOT_FOUND, "stream_not_found",
                             "process '%s' has a terminal: read its output at .../stdout", process_id(f->p));
                follower_free_unstarted(f);
                f = NULL;
        }
        if (f && follow && strcmp(follow, "true") != 0 && strcmp(follow, "false") != 0) {
                sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value", "'follow' must be true or false");
                follower_free_unstarted(f);
                f = NULL;
        }
        if (f) {
                for (int s = 0; s < _PROCESS_STREAM_MAX; s++)
                        f->want[s] = s == (int)which;
                f->follow = !follow || strcmp(follow, "true") == 0;
                if (follower_offsets(f, req, &err) < 0) {
                        follower_free_unstarted(f);
                        f = NULL;
                }
        }
        if (!f) {
                http_reply_error(req, &err);
                return;
        }
        process_stream_range(f->p, which, &start, &end);
        if (f->off[which] < start)
                f->off[which] = start;
        snprintf(num, sizeof num, "%" PRIu64, f->off[which]);
        (void)http_reply_header(req, "X-Stream-Start", num);
        f->req = req;
        f->stream = http_reply_stream(req, 200, "application/octet-stream");
        if (!f->stream) {
                follower_free_unstarted(f);
                return;
        }
        http_stream_on_drain(f->stream, on_stream_drain, f);
        http_request_on_close(req, on_http_closed, f);
        follower_start(f, req);
}

void v1_process_stdout(struct http_request *req)
{
        output(req, PROCESS_STDOUT);
}

void v1_process_stderr(struct http_request *req)
{
        output(req, PROCESS_STDERR);
}
