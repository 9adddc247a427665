// SPDX-License-Identifier: Apache-2.0
/*
 * Tests for the upload routes and Server-Sent Events of src/api/server.c. The pure SSE formatter
 * (http_sse_format) is checked byte for byte. The rest runs the real server on a libuv loop
 * (127.0.0.1:0) with a route table of its own and drives it from a second thread with a
 * plain-socket HTTP/1.1 client, as test-server.c does: uploads of 0 bytes and 5 MiB with
 * Content-Length, chunked and behind "Expect: 100-continue" (the handler replies with the sha256
 * and size it reads from the upload fd), 413 before the body for a declared size over max_upload,
 * 413 for a chunked body that passes it (its file closed as soon as it does), 401 before any byte
 * is kept, uploads disabled (max_upload 0), a full disk (503 insufficient_storage, on a 1 MiB tmpfs
 * in a private mount namespace, skipped where that cannot be set up), the 1 MiB limit of JSON
 * routes unchanged, and an event stream with Last-Event-ID.
 *
 * "Nothing written" is checked from inside: the client thread counts the descriptors of this very
 * process that point into the upload directory (O_TMPFILE files show as "DIR/#INODE (deleted)").
 * The client thread never calls cmocka: it records the first failed check for the main thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "api/router.h"
#include "api/server.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"

#define TEST_KEY "sbx_key_00112233445566778899aabbccddeeff00112233"
#define AUTH "Authorization: Bearer " TEST_KEY "\r\n"
#define MIB (1024 * 1024)
#define MAX_UPLOAD (8 * MIB)
#define BIG (5 * MIB)

struct fixture {
        uv_loop_t loop;
        uv_async_t done;
        struct http_server *srv;
        unsigned port;
        char dir[64]; /* upload_dir */
        void (*client)(struct fixture *f);
        char failure[512];  /* first failed client check, "" = none */
        int handled;        /* upload handler runs (atomic) */
        int handler_faults; /* a handler saw something wrong (atomic) */
};

static int atomic_get(const int *p)
{
        return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static void atomic_inc(int *p)
{
        (void)__atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
}

static void sha256_hex(const unsigned char md[32], char out[65])
{
        for (int i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Deterministic bytes (xorshift), so a reordered or dropped block changes the digest. */
static void fill_pattern(char *buf, size_t n, uint32_t seed)
{
        uint32_t x = seed ?: 1;

        for (size_t i = 0; i < n; i++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                buf[i] = (char)x;
        }
}

/* ------------------------------------------------------------------------------------------ */
/* handlers (loop thread) */

/* Reply the sha256 and size of what the upload fd holds, read from where the server left it. */
static void h_upload(struct http_request *req)
{
        struct fixture *f = http_request_app(req);
        int fd = http_request_upload_fd(req);
        unsigned char md[32];
        char hex[65], buf[65536];
        uint64_t total = 0;
        EVP_MD_CTX *ctx;
        ssize_t n;

        atomic_inc(&f->handled);
        if (fd < 0)
                return http_reply_errorf(req, -SBX_E_INTERNAL, NULL, "no upload fd");
        if (lseek(fd, 0, SEEK_CUR) != 0)
                atomic_inc(&f->handler_faults);
        ctx = EVP_MD_CTX_new();
        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
        }
        while ((n = read(fd, buf, sizeof buf)) > 0) {
                (void)EVP_DigestUpdate(ctx, buf, (size_t)n);
                total += (uint64_t)n;
        }
        (void)EVP_DigestFinal_ex(ctx, md, NULL);
        EVP_MD_CTX_free(ctx);
        sha256_hex(md, hex);
        http_reply_json(req, 200,
                        json_pack("{s:I,s:I,s:s}", "size", (json_int_t)total, "upload_size",
                                  (json_int_t)http_request_upload_size(req), "sha256", hex));
}

static void h_echo(struct http_request *req)
{
        json_t *j = http_request_json(req);

        if (!j)
                return;
        http_reply_json(req, 200, json_pack("{s:o,s:i}", "body", j, "upload_fd", http_request_upload_fd(req)));
}

/* an event stream: two events, a comment, the end */
static void h_sse(struct http_request *req)
{
        const char *last = http_request_header(req, "Last-Event-ID");
        struct http_stream *s = http_reply_sse(req);
        char id[64], *huge = malloc(SBX_STREAM_BUFFER + 1);

        if (!s || !huge) {
                free(huge);
                if (s)
                        http_stream_end(s);
                return;
        }
        memset(huge, 'h', SBX_STREAM_BUFFER);
        huge[SBX_STREAM_BUFFER] = '\0';
        snprintf(id, sizeof id, "%s+1", last ?: "none");
        if (http_sse_send(s, "hello", id, "line one\nline two\r\nline three") < 0 ||
            http_sse_send(s, NULL, NULL, "") < 0 || http_sse_comment(s, "keep-alive") < 0 ||
            http_sse_send(s, "bad\nevent", NULL, "x") != -EINVAL || http_sse_send(s, NULL, "bad\rid", "x") != -EINVAL ||
            http_sse_send(s, NULL, NULL, huge) != -EMSGSIZE)
                (void)http_stream_write(s, "FAILED\n", 7);
        free(huge);
        http_stream_end(s);
        /* after the end: refused like http_stream_write */
        if (http_sse_send(s, NULL, NULL, "late") != -EINVAL || http_sse_comment(s, "late") != -EINVAL)
                atomic_inc(&((struct fixture *)http_request_app(req))->handler_faults);
}

static const struct route routes[] = {
        { HTTP_PUT, "/upload", h_upload, true, "upload", true, false },
        { HTTP_POST, "/open", h_upload, false, "open_upload", true, false },
        { HTTP_POST, "/echo", h_echo, true, "echo", false, false },
        { HTTP_GET, "/sse", h_sse, false, "sse", false, false },
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
        char head[8192];
        char *body;
        size_t body_len;
};

static int client_tcp(struct client *c, unsigned port)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
        struct timeval tv = { .tv_sec = 10 };

        c->len = 0;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return -errno;
        (void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
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

/* Send data as chunks of at most step bytes. */
static int client_send_chunked(struct client *c, const char *data, size_t len, size_t step)
{
        char hdr[32];
        int r;

        for (size_t off = 0; off < len; off += step) {
                size_t n = len - off < step ? len - off : step;

                snprintf(hdr, sizeof hdr, "%zx\r\n", n);
                r = client_sends(c, hdr);
                if (r == 0)
                        r = client_send(c, data + off, n);
                if (r == 0)
                        r = client_sends(c, "\r\n");
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Read more bytes. Returns bytes read, 0 on EOF, -errno. */
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

static int client_line(struct client *c, char *out, size_t size)
{
        for (;;) {
                char *eol = memmem(c->buf, c->len, "\r\n", 2);
                int r;

                if (eol) {
                        size_t n = (size_t)(eol - c->buf);

                        if (n >= size)
                                return -ENOBUFS;
                        memcpy(out, c->buf, n);
                        out[n] = '\0';
                        client_consume(c, n + 2);
                        return 0;
                }
                r = client_fill(c);
                if (r <= 0)
                        return r == 0 ? -EPIPE : r;
        }
}

static int client_take(struct client *c, struct resp *r, size_t n)
{
        while (n > 0) {
                size_t k;
                char *p;

                if (c->len == 0) {
                        int res = client_fill(c);

                        if (res <= 0)
                                return res == 0 ? -EPIPE : res;
                }
                k = c->len < n ? c->len : n;
                p = realloc(r->body, r->body_len + k + 1);
                if (!p)
                        return -ENOMEM;
                r->body = p;
                memcpy(r->body + r->body_len, c->buf, k);
                r->body_len += k;
                r->body[r->body_len] = '\0';
                client_consume(c, k);
                n -= k;
        }
        return 0;
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

static void resp_free(struct resp *r)
{
        free(r->body);
        memset(r, 0, sizeof *r);
}

/* Read one response; a "100 Continue" interim response is returned as such (status 100). */
static int read_response(struct client *c, struct resp *r)
{
        char line[8192], v[64];
        size_t hl = 0;
        int res;

        resp_free(r);
        r->body = calloc(1, 1);
        if (!r->body)
                return -ENOMEM;
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
        if (r->status == 100 || r->status == 204)
                return 0;
        if (resp_header(r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0) {
                for (;;) {
                        unsigned long n;

                        res = client_line(c, line, sizeof line);
                        if (res < 0)
                                return res;
                        n = strtoul(line, NULL, 16);
                        if (n == 0)
                                break;
                        res = client_take(c, r, n);
                        if (res == 0)
                                res = client_line(c, line, sizeof line);
                        if (res < 0)
                                return res;
                }
                return client_line(c, line, sizeof line);
        }
        if (resp_header(r, "Content-Length", v, sizeof v))
                return client_take(c, r, strtoul(v, NULL, 10));
        return -EPROTO;
}

static bool body_has(const struct resp *r, const char *s)
{
        return r->body && strstr(r->body, s);
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

/* Descriptors of this process open on files in the upload directory; the size of the last one
 * found goes to *ret_size (if not NULL). */
static int upload_files_scan(const struct fixture *f, int64_t *ret_size)
{
        char target[256];
        size_t dl = strlen(f->dir);
        struct dirent *de;
        struct stat st;
        int n = 0;
        DIR *d;

        d = opendir("/proc/self/fd");
        if (!d)
                return -1;
        while ((de = readdir(d))) {
                ssize_t k;

                k = readlinkat(dirfd(d), de->d_name, target, sizeof target - 1);
                if (k <= 0)
                        continue;
                target[k] = '\0';
                if (strncmp(target, f->dir, dl) == 0 && target[dl] == '/' && target[dl + 1] == '#') {
                        n++;
                        if (ret_size && fstatat(dirfd(d), de->d_name, &st, 0) == 0)
                                *ret_size = st.st_size;
                }
        }
        closedir(d);
        return n;
}

static int upload_files_open(const struct fixture *f)
{
        return upload_files_scan(f, NULL);
}

/* Wait up to 2 s until the one open upload file holds size bytes. */
static bool upload_file_reaches(const struct fixture *f, int64_t size)
{
        for (int i = 0; i < 400; i++) {
                int64_t now = -1;

                if (upload_files_scan(f, &now) == 1 && now == size)
                        return true;
                usleep(5000);
        }
        return false;
}

/* Wait up to 2 s for the count of open upload files to become want. */
static bool upload_files_become(const struct fixture *f, int want)
{
        for (int i = 0; i < 400; i++) {
                if (upload_files_open(f) == want)
                        return true;
                usleep(5000);
        }
        return false;
}

static bool digest_matches(const struct resp *r, const char *data, size_t len)
{
        unsigned char md[32];
        char hex[65], want[160];

        if (EVP_Digest(data, len, md, NULL, EVP_sha256(), NULL) != 1)
                return false;
        sha256_hex(md, hex);
        /* keys come out sorted */
        snprintf(want, sizeof want, "{\"sha256\":\"%s\",\"size\":%zu,\"upload_size\":%zu}", hex, len, len);
        return r->body && strcmp(r->body, want) == 0;
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

/* Run client against a server with max_upload and an upload directory (dir: NULL = a fresh one
 * under /tmp, removed afterwards). Returns the client's failure, or NULL. */
static const char *run_in(struct fixture *f, void (*client)(struct fixture *f), uint64_t max_upload, const char *dir)
{
        struct http_server_config cfg = {
                .listen = "127.0.0.1:0",
                .api_key = TEST_KEY,
                .routes = routes,
                .n_routes = ELEMENTSOF(routes),
                .max_upload = max_upload,
        };
        struct sbx_err err = { 0 };
        pthread_t th;

        memset(f, 0, sizeof *f);
        f->client = client;
        if (dir)
                snprintf(f->dir, sizeof f->dir, "%s", dir);
        else {
                snprintf(f->dir, sizeof f->dir, "/tmp/sbx-test-upload-XXXXXX");
                if (!mkdtemp(f->dir))
                        return "mkdtemp failed";
        }
        cfg.app = f;
        cfg.upload_dir = f->dir;
        if (uv_loop_init(&f->loop) < 0 || http_server_start(&f->loop, &cfg, &f->srv, &err) < 0)
                return "cannot start the server";
        f->port = http_server_port(f->srv);
        if (uv_async_init(&f->loop, &f->done, on_done) < 0)
                return "uv_async_init failed";
        f->done.data = f;
        if (pthread_create(&th, NULL, client_main, f) != 0)
                return "pthread_create failed";
        if (uv_run(&f->loop, UV_RUN_DEFAULT) != 0)
                snprintf(f->failure, sizeof f->failure, "loop still has handles");
        (void)pthread_join(th, NULL);
        if (uv_loop_close(&f->loop) != 0 && !f->failure[0])
                snprintf(f->failure, sizeof f->failure, "uv_loop_close failed");
        if (!dir)
                (void)rmdir(f->dir);
        return f->failure[0] ? f->failure : NULL;
}

static void run(struct fixture *f, void (*client)(struct fixture *f), uint64_t max_upload)
{
        const char *failure = run_in(f, client, max_upload, NULL);

        if (failure)
                fail_msg("client: %s", failure);
}

/* ------------------------------------------------------------------------------------------ */
/* scenarios (client thread) */

static void c_uploads(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char hdr[256], *data = malloc(BIG);

        CHECK(f, data != NULL);
        fill_pattern(data, BIG, 42);
        CHECK(f, client_tcp(&c, f->port) == 0);

        /* 0 bytes */
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, "", 0));

        /* 5 MiB with Content-Length, on the same connection */
        snprintf(hdr, sizeof hdr, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n", BIG);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, client_send(&c, data, BIG) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, data, BIG));

        /* 5 MiB chunked, in odd-sized chunks */
        CHECK(f,
              client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n") == 0);
        CHECK(f, client_send_chunked(&c, data, BIG, 100003) == 0);
        CHECK(f, client_sends(&c, "0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, data, BIG));

        /* the client waits for "100 Continue" before the body */
        snprintf(hdr, sizeof hdr,
                 "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n",
                 BIG - 7);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 100);
        CHECK(f, client_send(&c, data + 7, BIG - 7) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, data + 7, BIG - 7));

        /* exactly max_upload is fine */
        snprintf(hdr, sizeof hdr, "POST /open HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n", MAX_UPLOAD);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, client_send(&c, data, BIG) == 0);
        CHECK(f, client_send(&c, data, MAX_UPLOAD - BIG) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        snprintf(hdr, sizeof hdr, "\"size\":%d,\"upload_size\":%d}", MAX_UPLOAD, MAX_UPLOAD);
        CHECK(f, body_has(&r, hdr));

        CHECK(f, atomic_get(&f->handled) == 5);
        CHECK(f, atomic_get(&f->handler_faults) == 0);
        /* every file was closed once its request was done */
        CHECK(f, upload_files_become(f, 0));

        /* A client that leaves half-way: the file is closed, the handler never runs. The server
         * must have read all that was sent before the FIN: libmicrohttpd 0.9.75 treats a short
         * recv() as "drained" in epoll mode, so a FIN that arrived together with the last bytes is
         * only noticed at the connection timeout (see the notes in server.h). */
        snprintf(hdr, sizeof hdr, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n", BIG);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, client_send(&c, data, BIG / 2) == 0);
        CHECK(f, upload_file_reaches(f, BIG / 2));
        client_close(&c);
        CHECK(f, upload_files_become(f, 0));

        /* and one that resets the connection in the middle of sending */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, client_send(&c, data, BIG / 2) == 0);
        CHECK(f, upload_files_become(f, 1));
        CHECK(f, setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &(struct linger){ .l_onoff = 1, .l_linger = 0 },
                            sizeof(struct linger)) == 0);
        client_close(&c);
        CHECK(f, upload_files_become(f, 0));
        CHECK(f, atomic_get(&f->handled) == 5);
out:
        free(data);
        resp_free(&r);
        client_close(&c);
}

static void c_too_large(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char hdr[256], *data = malloc(MIB);

        CHECK(f, data != NULL);
        fill_pattern(data, MIB, 7);

        /* a declared size over max_upload: 413 naming the limit before any body byte is sent */
        CHECK(f, client_tcp(&c, f->port) == 0);
        snprintf(hdr, sizeof hdr, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n",
                 MAX_UPLOAD + 1);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "\"code\":\"payload_too_large\""));
        CHECK(f, body_has(&r, "8388608 bytes"));
        CHECK(f, upload_files_open(f) == 0);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* 5 GiB declared: the same */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f,
              client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 5368709120\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        client_close(&c);

        /* chunked: the file exists while the body is below the limit, and is closed (its space given
         * back) as soon as the body passes it; the 413 comes after the rest is drained */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f,
              client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n") == 0);
        for (int i = 0; i < 6; i++)
                CHECK(f, client_send_chunked(&c, data, MIB, 65536) == 0);
        CHECK(f, upload_files_become(f, 1));
        for (int i = 0; i < 3; i++) /* 9 MiB in all */
                CHECK(f, client_send_chunked(&c, data, MIB, 65536) == 0);
        CHECK(f, upload_files_become(f, 0));
        CHECK(f, client_sends(&c, "0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "upload limit of 8388608 bytes"));
        /* drained, so the connection is still in sync */
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 3\r\n\r\nabc") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, "abc", 3));

        CHECK(f, atomic_get(&f->handled) == 1);
out:
        free(data);
        resp_free(&r);
        client_close(&c);
}

static void c_auth(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char v[64];

        /* no token, 5 GiB declared: 401 before the body, not 413 (auth comes first) */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5368709120\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 401);
        CHECK(f, resp_header(&r, "WWW-Authenticate", v, sizeof v) && strcmp(v, "Bearer") == 0);
        CHECK(f, at_eof(&c));
        client_close(&c);

        /* wrong token, chunked: 401 before the body too */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer nope\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 401);
        client_close(&c);

        /* a small declared body is drained without a file; the connection stays usable */
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234") == 0);
        usleep(50000);
        CHECK(f, upload_files_open(f) == 0);
        CHECK(f, client_sends(&c, "56789") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 401);
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 3\r\n\r\nabc") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, "abc", 3));
        CHECK(f, atomic_get(&f->handled) == 1);
out:
        resp_free(&r);
        client_close(&c);
}

/* a JSON route keeps its 1 MiB limit on a server that takes 8 MiB uploads */
static void c_json_limit(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char hdr[256], *big = malloc(2 * MIB);

        CHECK(f, big != NULL);
        memset(big, ' ', 2 * MIB);
        CHECK(f, client_tcp(&c, f->port) == 0);
        snprintf(hdr, sizeof hdr, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n",
                 SBX_MAX_JSON_BODY + 1);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "larger than 1048576 bytes"));
        client_close(&c);

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n") == 0);
        CHECK(f, client_send_chunked(&c, big, 2 * MIB, 65536) == 0);
        CHECK(f, client_sends(&c, "0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "larger than 1048576 bytes"));

        /* and its body is in memory, with no upload fd */
        CHECK(f, client_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 7\r\n\r\n{\"a\":1}") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, body_has(&r, "{\"body\":{\"a\":1},\"upload_fd\":-1}"));
        CHECK(f, atomic_get(&f->handled) == 0);
out:
        free(big);
        resp_free(&r);
        client_close(&c);
}

static void c_disabled(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 0\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        CHECK(f, body_has(&r, "uploads are disabled"));
        client_close(&c);
        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f,
              client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Transfer-Encoding: chunked\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 413);
        CHECK(f, atomic_get(&f->handled) == 0);
out:
        resp_free(&r);
        client_close(&c);
}

/* 2 MiB into a 1 MiB filesystem */
static void c_full_disk(struct fixture *f)
{
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char hdr[256], *data = malloc(2 * MIB);
        struct statvfs before, after;

        CHECK(f, data != NULL);
        fill_pattern(data, 2 * MIB, 9);
        CHECK(f, statvfs(f->dir, &before) == 0);
        CHECK(f, client_tcp(&c, f->port) == 0);
        snprintf(hdr, sizeof hdr, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: %d\r\n\r\n", 2 * MIB);
        CHECK(f, client_sends(&c, hdr) == 0);
        CHECK(f, client_send(&c, data, 2 * MIB) == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 503);
        CHECK(f, body_has(&r, "{\"error\":{\"code\":\"insufficient_storage\","
                              "\"message\":\"no space left on the data disk\"}}"));
        /* the file was closed at the failed write: the space is back */
        CHECK(f, upload_files_become(f, 0));
        CHECK(f, statvfs(f->dir, &after) == 0 && after.f_bfree == before.f_bfree);
        /* drained: the connection still works */
        CHECK(f, client_sends(&c, "PUT /upload HTTP/1.1\r\nHost: t\r\n" AUTH "Content-Length: 3\r\n\r\nabc") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, digest_matches(&r, "abc", 3));
        CHECK(f, atomic_get(&f->handled) == 1);
out:
        free(data);
        resp_free(&r);
        client_close(&c);
}

static void c_sse(struct fixture *f)
{
        static const char want[] = "event: hello\nid: 41+1\ndata: line one\ndata: line two\ndata: line three\n\n"
                                   "data: \n\n"
                                   ": keep-alive\n\n";
        struct client c = { .fd = -1 };
        struct resp r = { 0 };
        char v[128];

        CHECK(f, client_tcp(&c, f->port) == 0);
        CHECK(f, client_sends(&c, "GET /sse HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 41\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, resp_header(&r, "Content-Type", v, sizeof v) && strcmp(v, "text/event-stream") == 0);
        CHECK(f, resp_header(&r, "Cache-Control", v, sizeof v) && strcmp(v, "no-cache") == 0);
        CHECK(f, resp_header(&r, "X-Accel-Buffering", v, sizeof v) && strcmp(v, "no") == 0);
        CHECK(f, resp_header(&r, "Transfer-Encoding", v, sizeof v) && strcasecmp(v, "chunked") == 0);
        CHECK(f, strcmp(r.body, want) == 0);
        /* the connection is reused after the stream */
        CHECK(f, client_sends(&c, "GET /sse HTTP/1.1\r\nHost: t\r\n\r\n") == 0);
        CHECK(f, read_response(&c, &r) == 0 && r.status == 200);
        CHECK(f, body_has(&r, "id: none+1\n"));
        CHECK(f, atomic_get(&f->handler_faults) == 0); /* here: late writes were refused */
out:
        resp_free(&r);
        client_close(&c);
}

/* ------------------------------------------------------------------------------------------ */

static struct fixture fx;

static void test_uploads(void **state)
{
        run(&fx, c_uploads, MAX_UPLOAD);
}

static void test_too_large(void **state)
{
        run(&fx, c_too_large, MAX_UPLOAD);
}

static void test_auth(void **state)
{
        run(&fx, c_auth, MAX_UPLOAD);
}

static void test_json_limit(void **state)
{
        run(&fx, c_json_limit, MAX_UPLOAD);
}

static void test_disabled(void **state)
{
        run(&fx, c_disabled, 0);
}

static void test_sse_stream(void **state)
{
        run(&fx, c_sse, 0);
}

/*
 * The full-disk run needs a small filesystem: a 1 MiB tmpfs in a private mount namespace (user
 * namespace too when not root), set up in a forked child so the test process keeps its mounts.
 * Exit status: 0 pass, 1 fail (message on stderr), 77 cannot set up (skipped).
 */
static int full_disk_child(void)
{
        const char *dir = "/tmp/sbx-test-upload-full";
        const char *failure;
        char map[64];
        uid_t uid = getuid();
        gid_t gid = getgid();

        if (unshare(uid == 0 ? CLONE_NEWNS : CLONE_NEWUSER | CLONE_NEWNS) < 0)
                return 77;
        if (uid != 0) {
                snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
                if (write_file_at(AT_FDCWD, "/proc/self/setgroups", "deny") < 0 ||
                    write_file_at(AT_FDCWD, "/proc/self/uid_map", map) < 0)
                        return 77;
                snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
                if (write_file_at(AT_FDCWD, "/proc/self/gid_map", map) < 0)
                        return 77;
        }
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 77;
        (void)mkdir(dir, 0700);
        if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") < 0)
                return 77;
        failure = run_in(&fx, c_full_disk, MAX_UPLOAD, dir);
        (void)umount2(dir, MNT_DETACH);
        (void)rmdir(dir);
        if (failure) {
                fprintf(stderr, "client: %s\n", failure);
                return 1;
        }
        return 0;
}

static void test_full_disk(void **state)
{
        int status = 0;
        pid_t pid;

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(full_disk_child());
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                print_message("no private tmpfs possible here, skipped\n");
                return;
        }
        assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_config(void **state)
{
        struct http_server_config cfg = { .listen = "127.0.0.1:0", .routes = routes, .n_routes = ELEMENTSOF(routes) };
        struct http_server *srv = NULL;
        struct sbx_err err = { 0 };
        uv_loop_t loop;

        assert_int_equal(uv_loop_init(&loop), 0);
        cfg.max_upload = MIB;
        assert_int_equal(http_server_start(&loop, &cfg, &srv, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "upload_dir"));
        sbx_err_clear(&err);
        cfg.upload_dir = "/nonexistent/sbx-test";
        assert_int_equal(http_server_start(&loop, &cfg, &srv, &err), -ENOENT);
        assert_non_null(strstr(err.msg, "upload directory '/nonexistent/sbx-test'"));
        /* /proc does not do O_TMPFILE */
        sbx_err_clear(&err);
        cfg.upload_dir = "/proc";
        assert_true(http_server_start(&loop, &cfg, &srv, &err) < 0);
        assert_non_null(strstr(err.msg, "O_TMPFILE"));
        /* no upload limit: no directory needed */
        cfg.max_upload = 0;
        cfg.upload_dir = NULL;
        assert_int_equal(http_server_start(&loop, &cfg, &srv, &err), 0);
        http_server_stop(srv);
        assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&loop), 0);
}

/* --- the pure SSE formatter --- */

static void check_format(const char *event, const char *id, const char *data, const char *want)
{
        char buf[256];
        size_t n = http_sse_format(buf, sizeof buf, event, id, data);

        assert_int_equal(n, strlen(want));
        assert_string_equal(buf, want);
        /* the length alone, without a buffer */
        assert_int_equal(http_sse_format(NULL, 0, event, id, data), n);
}

static void test_sse_format(void **state)
{
        char small[8];

        check_format("e", "1", "d", "event: e\nid: 1\ndata: d\n\n");
        check_format(NULL, NULL, "d", "data: d\n\n");
        check_format(NULL, NULL, NULL, "\n");
        check_format(NULL, NULL, "", "data: \n\n");
        check_format("only", NULL, NULL, "event: only\n\n");
        check_format(NULL, "", NULL, "id: \n\n");
        /* every line end splits: \n, \r\n, \r; a trailing one leaves an empty last line */
        check_format(NULL, NULL, "a\nb\r\nc\rd", "data: a\ndata: b\ndata: c\ndata: d\n\n");
        check_format(NULL, NULL, "a\n", "data: a\ndata: \n\n");
        check_format(NULL, NULL, "\r\n", "data: \ndata: \n\n");
        check_format(NULL, NULL, "\n\r", "data: \ndata: \ndata: \n\n");
        check_format(NULL, NULL, "a\r\r\nb", "data: a\ndata: \ndata: b\n\n");
        /* text that looks like fields stays inside data */
        check_format(NULL, NULL, "x\nevent: y", "data: x\ndata: event: y\n\n");
        /* CR/LF cannot leave the event or id field */
        check_format("a\nid: 9", "1\r\n2", NULL, "event: aid: 9\nid: 12\n\n");
        /* UTF-8 passes through */
        check_format("ü", NULL, "€", "event: ü\ndata: €\n\n");

        /* truncation like snprintf */
        assert_int_equal(http_sse_format(small, sizeof small, NULL, NULL, "abcdef"), 14);
        assert_string_equal(small, "data: a");
        assert_int_equal(http_sse_format(small, 1, NULL, NULL, "abcdef"), 14);
        assert_string_equal(small, "");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sse_format), cmocka_unit_test(test_config),    cmocka_unit_test(test_uploads),
                cmocka_unit_test(test_too_large),  cmocka_unit_test(test_auth),      cmocka_unit_test(test_json_limit),
                cmocka_unit_test(test_disabled),   cmocka_unit_test(test_full_disk), cmocka_unit_test(test_sse_stream),
        };

        log_set_level(getenv("SBX_TEST_QUIET") ? LOG_LEVEL_ERROR : LOG_LEVEL_DEBUG);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
