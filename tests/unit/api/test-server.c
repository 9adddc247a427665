// SPDX-License-Identifier: Apache-2.0
/*
 * Tests for src/api/server.c: the real server on a libuv loop (127.0.0.1:0 and a unix socket)
 * with a route table of its own, driven over loopback by a plain-socket HTTP/1.1 client running in
 * a second thread. Covered: keep-alive (several requests on one connection, no "Connection:
 * close"), chunked request bodies, 413 for declared and for growing bodies, 431 for huge headers,
 * 401 with WWW-Authenticate, 405 with Allow, 404, 400 for bad paths and bad JSON, an async reply
 * from a uv timer 20 ms later, a 3-chunk stream, stream back-pressure (-ENOBUFS + drain), -EPIPE
 * after the client leaves a stream, on_close, stopping with a parked request, the unix listener.
 *
 * The client thread never calls cmocka (its asserts longjmp): it records the first failed check
 * and the main thread asserts on that after the loop ends.
 */
#include <errno.h>
#include <fcntl.h>
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
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/router.h"
#include "api/server.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/metrics.h"

#define TEST_KEY "sbx_key_00112233445566778899aabbccddeeff00112233"
#define AUTH "Authorization: Bearer " TEST_KEY "\r\n"
#define BIG_STREAM_BYTES (2 * 1024 * 1024)

struct fixture {
        uv_loop_t loop;
        uv_async_t done;
        struct http_server *srv;
        unsigned port;
        char unix_path[108];
        void (*client)(struct fixture *f);
        char failure[512]; /* first failed client check, "" = none */
        int never_started; /* /never reached its handler (atomic) */
        int closes;        /* on_close callbacks run (atomic) */
        int epipe_seen;    /* /forever saw -EPIPE (atomic) */
        int enobufs_seen;  /* /big hit -ENOBUFS at least once */
        int drains;        /* /big drain callbacks */
        int leftover[2];   /* client fds left open for the server to close at stop */
};

static int atomic_get(const int *p)
{
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void atomic_inc(int *p)
{
        (void)__atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
}

/* ------------------------------------------------------------------------------------------ */
/* handlers (loop thread) */

static void h_hello(struct http_request *req)
{
        http_reply_json(req, 200, json_pack("{s:s}", "hello", "world"));
}

static void h_secret(struct http_request *req)
{
        http_reply_json(req, 200, json_pack("{s:b}", "secret", 1));
}

static void h_echo(struct http_request *req)
{
        size_t len;
        const char *body = http_request_body(req, &len);
        json_t *j;

        if (http_request_query(req, "raw")) {
                http_reply_json(req, 200, json_pack("{s:I,s:s%}", "len", (json_int_t)len, "body", body, len));
                return;
        }
        j = http_request_json(req);
        if (!j)
                return; /* replied 400 */
        http_reply_json(req, 200, j);
}

static void h_item(struct http_request *req)
{
        const char *hdr = http_request_header(req, "x-test");
        const char *q = http_request_query(req, "q");

        http_reply_json(req, 200,
                        json_pack("{s:s,s:s?,s:s?,s:s,s:s?}", "id", http_request_param(req, 0), "q", q, "hdr", hdr,
                                  "method", http_request_method(req), "p1", http_request_param(req, 1)));
}

static int count_args(const char *key, const char *value, void *data)
{
        json_object_set_new(data, key, value ? json_string(value) : json_null());
        return 0;
}

static void h_args(struct http_request *req)
{
        json_t *o = json_object();

        (void)http_request_query_foreach(req, count_args, o);
        http_reply_json(req, 200, o);
}

static void h_error(struct http_request *req)
{
        http_reply_errorf(req, -SBX_E_CONFLICT, "invalid_state", "sandbox '%s' is stopped", "x");
}

static void h_nobody(struct http_request *req)
{
        http_reply_json(req, 204, NULL);
}

static void on_close_count(struct http_request *req, void *data)
{
        atomic_inc(&((struct fixture *)data)->closes);
}

static void h_closecb(struct http_request *req)
{
        http_request_on_close(req, on_close_count, http_request_app(req));
        http_reply_data(req, 200, "text/plain", "ok\n", 3);
}

/* async: reply from a timer */
struct timer_ctx {
        uv_timer_t timer;
        struct http_request *req;
        struct http_stream *stream;
        struct fixture *f;
        int step;
        size_t sent;
        bool done;
};

static void timer_ctx_closed(uv_handle_t *h)
{
        free(h->data);
}

static struct timer_ctx *timer_ctx_new(struct http_request *req)
{
        struct timer_ctx *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        c->req = req;
        c->f = http_request_app(req);
        (void)uv_timer_init(&c->f->loop, &c->timer);
        c->timer.data = c;
        return c;
}

static void timer_ctx_free(struct timer_ctx *c)
{
        uv_close((uv_handle_t *)&c->timer, timer_ctx_closed);
}

static void async_fire(uv_timer_t *t)
{
        struct timer_ctx *c = t->data;

        http_reply_json(c->req, 200, json_pack("{s:b}", "async", 1));
        timer_ctx_free(c);
}

static void h_async(struct http_request *req)
{
        struct timer_ctx *c = timer_ctx_new(req);

        if (!c)
                return http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
        (void)uv_timer_start(&c->timer, async_fire, 20, 0);
}

/* a stream of three chunks, 10 ms apart */
static void stream3_tick(uv_timer_t *t)
{
        static const char *const parts[] = { "one\n", "two\n", "three\n" };
        struct timer_ctx *c = t->data;

        (void)http_stream_write(c->stream, parts[c->step], strlen(parts[c->step]));
        if (++c->step == 3) {
                http_stream_end(c->stream);
                (void)uv_timer_stop(&c->timer);
                timer_ctx_free(c);
        }
}

static void h_stream3(struct http_request *req)
{
        struct timer_ctx *c = timer_ctx_new(req);

        if (!c)
                return http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
        c->stream = http_reply_stream(req, 200, "text/plain");
        if (!c->stream)
                return timer_ctx_free(c);
        (void)uv_timer_start(&c->timer, stream3_tick, 10, 10);
}

/* a stream that never ends by itself: stops at -EPIPE once the client is gone */
static void forever_tick(uv_timer_t *t)
{
        struct timer_ctx *c = t->data;
        int r = http_stream_write(c->stream, "tick\n", 5);

        if (r == -EPIPE) {
                atomic_inc(&c->f->epipe_seen);
                http_stream_end(c->stream); /* frees the request (no on_close was set) */
                (void)uv_timer_stop(&c->timer);
                timer_ctx_free(c);
        }
}

static void h_forever(struct http_request *req)
{
        struct timer_ctx *c = timer_ctx_new(req);

        if (!c)
                return http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
        c->stream = http_reply_stream(req, 200, "text/plain");
        if (!c->stream)
                return timer_ctx_free(c);
        (void)uv_timer_start(&c->timer, forever_tick, 5, 5);
}

/* 2 MiB through a 256 KiB buffer: write until -ENOBUFS, continue from the drain callback */
static void big_pump(struct http_stream *s, void *data)
{
        struct timer_ctx *c = data;
        char block[16384];

        atomic_inc(&c->f->drains);
        while (c->sent < BIG_STREAM_BYTES) {
                size_t n = sizeof block;
                int r;

                for (size_t i = 0; i < n; i++)
                        block[i] = (char)('a' + (c->sent + i) % 26);
                r = http_stream_write(s, block, n);
                if (r == -ENOBUFS) {
                        atomic_inc(&c->f->enobufs_seen);
                        return; /* wait for the drain callback */
                }
                if (r < 0)
                        break;
                c->sent += n;
        }
        http_stream_end(s);
        timer_ctx_free(c);
}

static void h_big(struct http_request *req)
{
        struct timer_ctx *c = timer_ctx_new(req);
        struct http_stream *s;

        if (!c)
                return http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
        s = http_reply_stream(req, 200, "application/octet-stream");
        if (!s)
                return timer_ctx_free(c);
        http_stream_on_drain(s, big_pump, c);
        big_pump(s, c);
}

/* never replies; counts its on_close */
static void h_never(struct http_request *req)
{
        struct fixture *f = http_request_app(req);

        http_request_on_close(req, on_close_count, f);
        atomic_inc(&f->never_started);
}

/* stops the server from inside a handler: the stop must wait until MHD is off the stack */
static void h_shutdown(struct http_request *req)
{
        struct fixture *f = http_request_app(req);

        http_reply_json(req, 200, json_pack("{s:b}", "bye", 1));
        http_server_stop(f->srv);
        f->srv = NULL;
}

static const struct route routes[] = {
        { HTTP_GET, "/hello", h_hello, false, "hello", false, false },
        { HTTP_GET, "/secret", h_secret, true, "secret", false, false },
        { HTTP_POST, "/echo", h_echo, true, "echo", false, false },
        { HTTP_GET, "/items/{id}", h_item, false, "item", false, false },
        { HTTP_GET, "/items/{id}/{sub}", h_item, false, "item2", false, false },
        { HTTP_GET, "/args", h_args, false, "args", false, false },
        { HTTP_GET, "/error", h_error, false, "error", false, false },
        { HTTP_DELETE, "/nobody", h_nobody, false, "nobody", false, false },
        { HTTP_GET, "/closecb", h_closecb, false, "closecb", false, false },
        { HTTP_GET, "/async", h_async, false, "async", false, false },
        { HTTP_GET, "/stream", h_stream3, false, "stream", false, false },
        { HTTP_GET, "/forever", h_forever, false, "forever", false, false },
        { HTTP_GET, "/big", h_big, false, "big", false, false },
        { HTTP_GET, "/never", h_never, false, "never", false, false },
        { HTTP_POST, "/shutdown", h_shutdown, false, "shutdown", false, false },
};

/* ------------------------------------------------------------------------------------------ */
/* plain-socket HTTP/1.1 client (client thread) */

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
        char buf[65536];
        size_t len;
};

struct resp {
        int status;
        char head[20000];
        char *body;
        size_t body_len;
        int chunks;
};

static void client_timeouts(int fd)
{
        struct timeval tv = { .tv_sec = 5 };

        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int client_tcp(struct client *c, unsigned port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };

        c->len = 0;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        client_timeouts(c->fd);
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
                return -errno;
        return 0;
}

static int client_unix(struct client *c, const char *path)
{
        struct sockaddr_un a = { .sun_family = AF_UNIX };

        c->len = 0;
        snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        client_timeouts(c->fd);
        if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0)
                return -errno;
        return 0;
}

static void client_close(struct client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
}

static int client_send(struct client *c, const void *data, size_t len)
{
        return write_all(c->fd, data, len);
}

static int client_sends(struct client *c, const char *s)
{
        return client_send(c, s, strlen(s));
}

/* Read more bytes into the buffer. Returns bytes read, 0 on EOF, -errno. */
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

/* Take up to n bytes into out (out may be NULL: discard). Returns 0 or -errno / -EPIPE at EOF. */
static int client_take(struct client *c, char *out, size_t n)
{
        while (n > 0) {
                size_t k;

                if (c->len == 0) {
                        int r = client_fill(c);
                        if (r <= 0)
                                return r == 0 ? -EPIPE : r;
                }
                k = c->len < n ? c->len : n;
                if (out) {
                        memcpy(out, c->buf, k);
                        out += k;
                }
                client_consume(c, k);
                n -= k;
        }
        return 0;
}

static int client_line(struct client *c, char *out, size_t size)
{
        for (;;) {
                char *eol = memmem(c->buf, c->len, "\r\n", 2);

                if (eol) {
                        size_t n = (size_t)(eol - c->buf);
                        if (n >= size)
                                return -ENOBUFS;
                        memcpy(out, c->buf, n);
                        out[n] = '\0';
                        client_consume(c, n + 2);
                        return 0;
                }
                int r = client_fill(c);
                if (r <= 0)
                        return r == 0 ? -EPIPE : r;
        }
}

static const char *resp_header(const struct resp *r, const char *name, char *out, size_t size)
{
        size_t n = strlen(name);

        for (const char *l = r->head; l && *l; l = strstr(l, "\r\n") ? strstr(l, "\r\n") + 2 : NULL) {
                if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
                        const char *v = l + n + 1, *end;

                        v += strspn(v, " ");
                        end = strstr(v, "\r\n");
                        snprintf(out, size, "%.*s", (int)(end ? end - v : (long)strlen(v)), v);
                        return out;
                }
        }
        return NULL;
}

static int body_append(struct resp *r, const char *data, size_t n)
{
        char *p = realloc(r->body, r->body_len + n + 1);

        if (!p)
                return -ENOMEM;
        r->body = p;
        memcpy(r->body + r->body_len, data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return 0;
}

static void resp_free(struct resp *r)
{
        free(r->body);
        memset(r, 0, sizeof *r);
}

/* Read one response (headers, then a Content-Length, chunked or close-delimited body). */
static int read_response(struct client *c, struct resp *r, bool head_only)
{
        char line[16384], v[64];
        size_t hl = 0;
        int res;

        resp_free(r);
        r->body = calloc(1, 1);
        res = client_line(c, line, sizeof line);
        if (res < 0)
                return res;
        if (sscanf(line, "HTTP/1.1 %d", &r->status) != 1)
                return -EPROTO;
        for (;;) {
                res = client_line(c, line, sizeof line);
                if (res < 0)
                        return res;
                if (!line[0])
                        break;
                hl += (size_t)snprintf(r->head + hl, sizeof r->head - hl, "%s\r\n", line);
                if (hl >= sizeof r->head)
                        return -ENOBUFS;
        }
        if (head_only || r->status == 204)
                return 0;
        if (resp_header(r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0) {
                for (;;) {
                        unsigned long n;
                        char *chunk;

                        res = client_line(c, line, sizeof line);
                        if (res < 0)
                                return res;
                        n = strtoul(line, NULL, 16);
                        if (n == 0)
                                break;
                        chunk = malloc(n);
                        if (!chunk)
                                return -ENOMEM;
                        res = client_take(c, chunk, n);
                        if (res == 0)
                                res = body_append(r, chunk, n);
                        free(chunk);
                        if (res < 0)
                                return res;
                        r->chunks++;
                        res = client_line(c, line, sizeof line);
                        if (res < 0)
                                return res;
                }
                return client_line(c, line, sizeof line); /* end of (empty) trailer */
        }
        if (resp_header(r, "Content-Length", v, sizeof v)) {
                size_t n = strtoul(v, NULL, 10);
                char *tmp = malloc(n + 1);

                if (!tmp)
                        return -ENOMEM;
                res = client_take(c, tmp, n);
                if (res == 0)
                        res = body_append(r, tmp, n);
                free(tmp);
                return res;
        }
        for (;;) { /* until EOF */
                res = client_fill(c);
                if (res < 0)
                        return res;
                if (res == 0)
                        break;
                if (body_append(r, c->buf, c->len) < 0)
                        return -ENOMEM;
                c->len = 0;
        }
        return 0;
}

/* The server closed the connection: the next read sees EOF (or a reset). */
static bool at_eof(struct client *c)
{
        int r;

        if (c->len > 0)
                return false;
        r = client_fill(c);
        return r == 0 || r == -ECONNRESET;
}

static bool body_has(const struct resp *r, const char *s)
{
        return r->body && strstr(r->body, s);
}

static uint64_t now_ms(void)
{
        return now_usec() / 1000;
}

/* ------------------------------------------------------------------------------------------ */
/* harness: server on the main thread's loop, client in its own thread */

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

static void run(struct fixture *f, void (*client)(struct fixture *f), bool with_unix)
{
        struct http_server_config cfg = {
                .listen = "127.0.0.1:0",
                .api_key = TEST_KEY,
                .app = f,
                .routes = routes,
                .n_routes = ELEMENTSOF(routes),
        };
        struct sbx_err err = { 0 };
        pthread_t th;

        memset(f, 0, sizeof *f);
        f->client = client;
        if (with_unix) {
                snprintf(f->unix_path, sizeof f->unix_path, "/tmp/sbx-test-server-%d.sock", (int)getpid());
                cfg.unix_path = f->unix_path;
        }
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
}

/* ------------------------------------------------------------------------------------------ */
/* scenarios */

static void c_keepalive(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char v[128];

        CHECK(f, client_tcp(&c, f->port) == 0);
        for (int i = 0; i < 3; i++) {
                CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
                CHECK(f, read_response(&c, &r, false) == 0);
                CHECK(f, r.status == 200);
                CHECK(f, body_has(&r, "\"hello\":\"world\""));
                CHECK(f, resp_header(&r, "Content-Type", v, sizeof v) && strcmp(v, "application/json") == 0);
                CHECK(f, !resp_header(&r, "Connection", v, sizeof v) || strcasecmp(v, "close") != 0);
        }
        /* pipelined: two requests in one write */
        CHECK(f, client_sends(&c, "GET /items/a HTTP/1.1\r\nHost: t\r\n\r\nGET /items/b HTTP/1.1\r\nHost: t\r\n\r\n") ==
                         0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200 && body_has(&r, "\"id\":\"a\""));
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200 && body_has(&r, "\"id\":\"b\""));
        /* an error reply keeps the connection too */
        CHECK(f, client_sends(&c, "GET /nope HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 404);
        CHECK(f, body_has(&r, "\"code\":\"route_not_found\""));
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_routing(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char v[128];

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "DELETE /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 405);
        CHECK(f, body_has(&r, "\"code\":\"method_not_allowed\""));
        CHECK(f, resp_header(&r, "Allow", v, sizeof v) && strcmp(v, "GET, HEAD") == 0);

        CHECK(f, client_sends(&c, "GET /does/not/exist HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 404);
        CHECK(f, body_has(&r, "\"code\":\"route_not_found\""));

        CHECK(f, client_sends(&c, "GET /items/a%00b HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 400);
        CHECK(f, body_has(&r, "\"code\":\"bad_request\""));
        CHECK(f, client_sends(&c, "GET /items/%2e%2e HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 400);

        /* percent-decoding per segment; query and headers */
        CHECK(f, client_sends(&c, "GET /items/a%2Fb?q=x%20y&z HTTP/1.1\r\nHost: t\r\nX-Test: hi\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, body_has(&r, "\"id\":\"a/b\""));
        CHECK(f, body_has(&r, "\"q\":\"x y\""));
        CHECK(f, body_has(&r, "\"hdr\":\"hi\""));
        CHECK(f, body_has(&r, "\"method\":\"GET\""));
        CHECK(f, client_sends(&c, "GET /items/one/two HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && body_has(&r, "\"p1\":\"two\""));
        CHECK(f, client_sends(&c, "GET /args?metadata.a=1&metadata.b=x+y&flag HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, body_has(&r, "\"metadata.a\":\"1\"") && body_has(&r, "\"metadata.b\":\"x y\"") &&
                         body_has(&r, "\"flag\":null"));

        /* HEAD on a GET route: headers only */
        CHECK(f, client_sends(&c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, true) == 0 && r.status == 200);
        /* an error from a handler; a 204 */
        CHECK(f, client_sends(&c, "GET /error HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 409);
        CHECK(f, body_has(&r, "{\"error\":{\"code\":\"invalid_state\",\"message\":\"sandbox 'x' is stopped\"}}"));
        CHECK(f, client_sends(&c, "DELETE /nobody HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 204);
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_auth(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char v[128];

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "GET /secret HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 401);
        CHECK(f, resp_header(&r, "WWW-Authenticate", v, sizeof v) && strcmp(v, "Bearer") == 0);
        CHECK(f, strcmp(r.body, "{\"error\":{\"code\":\"unauthorized\",\"message\":\"missing or invalid bearer "
                                "token in 'Authorization' header\"}}") == 0);
        CHECK(f, client_sends(&c, "GET /secret HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 401);
        /* the body of a refused request is drained, the connection stays usable */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\":1}") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 401);
        CHECK(f, client_sends(&c, "GET /secret HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, body_has(&r, "\"secret\":true"));
        /* no auth on a public route */
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_bodies(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };

        CHECK(f, client_tcp(&c, f->port) == 0);
        /* Content-Length body */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Type: application/json\r\n"
                                  "Content-Length: 13\r\n\r\n{\"k\":[1,2,3]}") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, strcmp(r.body, "{\"k\":[1,2,3]}") == 0);
        /* chunked body in three chunks, sent in pieces */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n") == 0);
        CHECK(f, client_sends(&c, "4\r\n{\"a\"\r\n") == 0);
        usleep(5000);
        CHECK(f, client_sends(&c, "6\r\n:\"xyz\"\r\n") == 0);
        CHECK(f, client_sends(&c, "1\r\n}\r\n0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, strcmp(r.body, "{\"a\":\"xyz\"}") == 0);
        /* raw body with an embedded NUL, via the query switch */
        CHECK(f, client_send(&c, "POST /echo?raw=1 HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 3\r\n\r\na\0b",
                             strlen("POST /echo?raw=1 HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 3\r\n\r\n") + 3) ==
                         0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200 && body_has(&r, "\"len\":3"));
        /* empty body: {} */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200 && strcmp(r.body, "{}") == 0);
        /* bad JSON, duplicate keys, not an object */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 5\r\n\r\n{\"a\":") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 400);
        CHECK(f, body_has(&r, "\"code\":\"invalid_json\"") && body_has(&r, "line 1"));
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH
                                  "Content-Length: 13\r\n\r\n{\"a\":1,\"a\":2}") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 400 && body_has(&r, "invalid_json"));
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 3\r\n\r\n[1]") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 400 && body_has(&r, "must be a JSON object"));
        /* Expect: 100-continue */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Expect: 100-continue\r\n"
                                  "Content-Length: 2\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, true) == 0 && r.status == 100);
        CHECK(f, client_sends(&c, "{}") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200 && strcmp(r.body, "{}") == 0);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_too_large(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char hdr[256], *big = NULL;

        /* declared too large: refused before the body, connection closed */
        CHECK(f, client_tcp(&c, f->port) == 0);
        snprintf(hdr, sizeof hdr, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n",
                 SBX_MAX_JSON_BODY + 1);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "\"code\":\"payload_too_large\""));
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* Expect: 100-continue on an unauthenticated upload: refused at once */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f,
              client_sends(&c,
                           "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9000\r\n\r\n") ==
                      0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 401);
        client_close(&c);

        /* a chunked body that grows past the limit: drained, then 413, connection still usable */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n") == 0);
        big = malloc(65536 + 16);
        CHECK(f, big != NULL);
        memset(big, ' ', 65536 + 16);
        for (int i = 0; i < 20; i++) { /* 20 x 64 KiB = 1.25 MiB */
                int n = snprintf(big, 16, "10000\r\n");
                big[n + 65536] = '\r';
                big[n + 65537] = '\n';
                memset(big + n, 'x', 65536);
                CHECK(f, client_send(&c, big, (size_t)n + 65538) == 0);
        }
        CHECK(f, client_sends(&c, "0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "payload_too_large"));
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        client_close(&c);

        /* exactly at the limit is fine */
        CHECK(f, client_tcp(&c, f->port) == 0);
        snprintf(hdr, sizeof hdr, "POST /echo?raw=1 HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n",
                 SBX_MAX_JSON_BODY);
        CHECK(f, client_sends(&c, hdr) == 0);
        for (int i = 0; i < SBX_MAX_JSON_BODY / 65536; i++) {
                memset(big, 'y', 65536);
                CHECK(f, client_send(&c, big, 65536) == 0);
        }
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        snprintf(hdr, sizeof hdr, "\"len\":%d", SBX_MAX_JSON_BODY);
        CHECK(f, body_has(&r, hdr));
out:
        free(big);
        resp_free(&r);
        client_close(&c);
}

static void c_huge_headers(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        size_t n = 20000;
        char *req = malloc(n + 128);
        int len;

        CHECK(f, req != NULL);
        CHECK(f, client_tcp(&c, f->port) == 0);
        len = snprintf(req, 128, "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
        memset(req + len, 'a', n);
        memcpy(req + len + n, "\r\n\r\n", 4);
        CHECK(f, client_send(&c, req, (size_t)len + n + 4) == 0);
        CHECK(f, read_response(&c, &r, false) == 0);
        CHECK(f, r.status == 431 || r.status == 413);
        client_close(&c);
        /* the server is fine afterwards */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        /* a huge URL too */
        client_close(&c);
        CHECK(f, client_tcp(&c, f->port) == 0);
        memcpy(req, "GET /", 5);
        memset(req + 5, 'u', n);
        memcpy(req + 5 + n, " HTTP/1.1\r\nHost: t\r\n\r\n", 22);
        CHECK(f, client_send(&c, req, 5 + n + 22) == 0);
        CHECK(f, read_response(&c, &r, false) == 0);
        CHECK(f, r.status == 414 || r.status == 431 || r.status == 400);
out:
        free(req);
        resp_free(&r);
        client_close(&c);
}

static void c_async(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        uint64_t t0, dt;

        CHECK(f, client_tcp(&c, f->port) == 0);
        for (int i = 0; i < 2; i++) {
                t0 = now_ms();
                CHECK(f, client_sends(&c, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
                CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
                dt = now_ms() - t0;
                CHECK(f, body_has(&r, "\"async\":true"));
                /* replied from a timer 20 ms later: the resume must be picked up promptly */
                CHECK(f, dt >= 15 && dt < 500);
        }
        /* keep-alive after async replies */
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_stream(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char v[64];

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, resp_header(&r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0);
        CHECK(f, resp_header(&r, "Content-Type", v, sizeof v) && strcmp(v, "text/plain") == 0);
        CHECK(f, strcmp(r.body, "one\ntwo\nthree\n") == 0);
        CHECK(f, r.chunks == 3);
        /* the connection is reused after a stream */
        CHECK(f, client_sends(&c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);

        /* back-pressure: 2 MiB through the 256 KiB stream buffer */
        CHECK(f, client_sends(&c, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        CHECK(f, r.body_len == BIG_STREAM_BYTES);
        for (size_t i = 0; i < r.body_len; i += 4099)
                CHECK(f, r.body[i] == (char)('a' + i % 26));
        CHECK(f, atomic_get(&f->enobufs_seen) > 0 && atomic_get(&f->drains) > 1);
        client_close(&c);

        /* client leaves in the middle of an endless stream: writes get -EPIPE */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "GET /forever HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, true) == 0 && r.status == 200);
        CHECK(f, client_line(&c, v, sizeof v) == 0); /* first chunk size */
        client_close(&c);
        for (int i = 0; i < 400 && !atomic_get(&f->epipe_seen); i++)
                usleep(5000);
        CHECK(f, atomic_get(&f->epipe_seen) == 1);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_close_and_stop(struct fixture *f)
{
        struct client c = { .fd = -1 }, c2 = { .fd = -1 };
        struct resp r = { 0 };

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "GET /closecb HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200 && strcmp(r.body, "ok\n") == 0);
        for (int i = 0; i < 200 && atomic_get(&f->closes) < 1; i++)
                usleep(5000);
        CHECK(f, atomic_get(&f->closes) == 1);
        /* a request that is never answered, then the server stops under it */
        CHECK(f, client_tcp(&c2, f->port) == 0);
        CHECK(f, client_sends(&c2, "GET /never HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        for (int i = 0; i < 400 && !atomic_get(&f->never_started); i++)
                usleep(5000);
        CHECK(f, atomic_get(&f->never_started) == 1);
        /* idle keep-alive connection open too */
out:
        resp_free(&r);
        /* both connections stay open: http_server_stop must close them; the test closes ours */
        f->leftover[0] = c.fd;
        f->leftover[1] = c2.fd;
}

static void c_unix(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        struct stat st;

        CHECK(f, stat(f->unix_path, &st) == 0);
        CHECK(f, S_ISSOCK(st.st_mode));
        CHECK(f, (st.st_mode & 0777) == 0600);
        CHECK(f, client_unix(&c, f->unix_path) == 0);
        for (int i = 0; i < 2; i++) {
                CHECK(f, client_sends(&c, "GET /secret HTTP/1.1\r\nHost: t\r\n" AUTH "\r\n") == 0);
                CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
        }
        CHECK(f, client_sends(&c, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r, false) == 0 && r.status == 200);
out:
        resp_free(&r);
        client_close(&c);
}

static void c_shutdown(struct fixture *f)
{
        struct client c = { .fd = -1 }, idle = { .fd = -1 };
        struct resp r = { 0 };
        int res;

        CHECK(f, client_tcp(&idle, f->port) == 0);
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "POST /shutdown HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n") == 0);
        /* the reply may or may not make it out before the connection is closed; no hang either way */
        res = read_response(&c, &r, false);
        CHECK(f, res != -EAGAIN && res != -EWOULDBLOCK);
        CHECK(f, res < 0 || r.status == 200);
        CHECK(f, at_eof(&c) || res < 0);
        CHECK(f, at_eof(&idle));
out:
        resp_free(&r);
        client_close(&c);
        client_close(&idle);
}

/* ------------------------------------------------------------------------------------------ */

static struct fixture fx;

static void test_keepalive(void **state)
{
        run(&fx, c_keepalive, false);
}

static void test_routing(void **state)
{
        run(&fx, c_routing, false);
}

static void test_auth(void **state)
{
        run(&fx, c_auth, false);
}

static void test_bodies(void **state)
{
        run(&fx, c_bodies, false);
}

static void test_too_large(void **state)
{
        run(&fx, c_too_large, false);
}

static void test_huge_headers(void **state)
{
        run(&fx, c_huge_headers, false);
}

static void test_async(void **state)
{
        run(&fx, c_async, false);
}

static void test_stream(void **state)
{
        run(&fx, c_stream, false);
}

static void test_close_and_stop(void **state)
{
        char b;

        run(&fx, c_close_and_stop, false);
        /* the parked request's on_close ran when the server stopped */
        assert_int_equal(fx.closes, 2);
        /* and the server closed both connections */
        for (int i = 0; i < 2; i++) {
                assert_true(fx.leftover[i] >= 0);
                assert_true(read(fx.leftover[i], &b, 1) <= 0);
                close(fx.leftover[i]);
        }
}

static void test_stop_in_handler(void **state)
{
        run(&fx, c_shutdown, false);
        assert_null(fx.srv);
}

static void test_unix(void **state)
{
        struct stat st;

        run(&fx, c_unix, true);
        /* removed at stop */
        assert_int_equal(stat(fx.unix_path, &st), -1);
}

static void test_unix_stale_and_busy(void **state)
{
        struct http_server_config cfg = { .unix_path = "/tmp/sbx-test-server-stale.sock",
                                          .routes = routes,
                                          .n_routes = ELEMENTSOF(routes) };
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        struct http_server *srv = NULL, *srv2 = NULL;
        struct sbx_err err = { 0 };
        uv_loop_t loop;
        int fd;

        /* a stale socket file (nobody listening) is replaced */
        (void)unlink(cfg.unix_path);
        snprintf(a.sun_path, sizeof a.sun_path, "%s", cfg.unix_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
        close(fd);
        assert_int_equal(uv_loop_init(&loop), 0);
        assert_int_equal(http_server_start(&loop, &cfg, &srv, &err), 0);
        assert_int_equal(http_server_port(srv), 0);
        /* a live one is not */
        sbx_err_clear(&err);
        assert_int_equal(http_server_start(&loop, &cfg, &srv2, &err), -EADDRINUSE);
        assert_non_null(strstr(err.msg, "in use"));
        http_server_stop(srv);
        /* a regular file is never removed */
        fd = open(cfg.unix_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        sbx_err_clear(&err);
        assert_int_equal(http_server_start(&loop, &cfg, &srv2, &err), -EEXIST);
        assert_int_equal(unlink(cfg.unix_path), 0);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_config(void **state)
{
        static const char *const bad[] = { "127.0.0.1", "localhost:80", "[::1]80",      "1.2.3.4:65536",
                                           ":80",       "[]:1",         "127.0.0.1:-1", "127.0.0.1:" };
        struct http_server *srv = NULL;
        struct sbx_err err = { 0 };
        uv_loop_t loop;

        assert_int_equal(uv_loop_init(&loop), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                struct http_server_config cfg = { .listen = bad[i], .routes = routes, .n_routes = 1 };

                sbx_err_clear(&err);
                assert_int_equal(http_server_start(&loop, &cfg, &srv, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "invalid listen address"));
        }
        {
                struct http_server_config cfg = { .routes = routes, .n_routes = 1 };

                assert_int_equal(http_server_start(&loop, &cfg, &srv, NULL), -EINVAL);
        }
        {
                /* IPv6 loopback with an ephemeral port */
                struct http_server_config cfg = { .listen = "[::1]:0", .routes = routes, .n_routes = 1 };

                sbx_err_clear(&err);
                if (http_server_start(&loop, &cfg, &srv, &err) == 0) {
                        assert_true(http_server_port(srv) > 0);
                        http_server_stop(srv);
                } else {
                        print_message("no IPv6 loopback here (%s), skipped\n", err.msg);
                }
        }
        http_server_stop(NULL);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_metrics_counted(void **state)
{
        char *t;

        /* every scenario above went through metrics_http_request() */
        t = metrics_render(NULL, 0);
        assert_non_null(t);
        assert_non_null(strstr(t, "sbx_http_requests_total{code=\"200\"}"));
        assert_non_null(strstr(t, "sbx_http_requests_total{code=\"401\"}"));
        assert_non_null(strstr(t, "sbx_http_requests_total{code=\"413\"}"));
        free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keepalive),
                cmocka_unit_test(test_routing),
                cmocka_unit_test(test_auth),
                cmocka_unit_test(test_bodies),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_huge_headers),
                cmocka_unit_test(test_async),
                cmocka_unit_test(test_stream),
                cmocka_unit_test(test_close_and_stop),
                cmocka_unit_test(test_stop_in_handler),
                cmocka_unit_test(test_unix),
                cmocka_unit_test(test_unix_stale_and_busy),
                cmocka_unit_test(test_bad_config),
                cmocka_unit_test(test_metrics_counted),
        };

        /* the access log and MHD's messages go to stderr; debug level exercises the log path */
        log_set_level(getenv("SBX_TEST_QUIET") ? LOG_LEVEL_ERROR : LOG_LEVEL_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
