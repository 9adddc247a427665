// SPDX-License-Identifier: Apache-2.0
/*
 * WebSocket client of the CLI; see ws-client.h. libcurl connects (CURLOPT_CONNECT_ONLY) and then
 * only moves bytes (curl_easy_send/curl_easy_recv, non-blocking); the upgrade request and the
 * check of the 101 answer are here, bounded by SBX_CLI_WS_MAX_HEAD; wslay frames and unframes.
 * The key and the accept hash use OpenSSL libcrypto and getrandom(2): the CLI sees nothing of
 * src/common (rule of dependency, STYLE.md B1). Never prints.
 */
#include "ws-client.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455 §1.3 */
#define WS_KEY_BYTES 16

struct ws_client {
        CURL *curl;    /* owns the connection (and its socket) */
        int fd;        /* the socket, borrowed from curl: CURLINFO_ACTIVESOCKET */
        char *display; /* the address as the user gave it, for messages */
        wslay_event_context_ptr ctx;
        ws_client_message_fn fn;
        void *userdata;
        uint8_t *pending; /* bytes the server sent right after its 101, read with the headers */
        size_t pending_len;
        size_t pending_off;
        bool eof;            /* the server closed the socket */
        CURLcode io_error;   /* a send or a receive failed (CURLE_OK: none) */
        int cb_error;        /* fn's error; err is filled */
        struct cli_err *err; /* the err of the ws_client_dispatch() running */
        char errbuf[CURL_ERROR_SIZE];
};

static int random_bytes(void *buf, size_t n)
{
        uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = getrandom(p, n, 0);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------- the handshake ---------- */

/* Wait until fd is ready for events or deadline (CLOCK_MONOTONIC ms) passes. 0 or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = events };
                uint64_t now = now_ms();
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, (int)(deadline - now));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r > 0)
                        return 0;
        }
}

static int io_failed(struct ws_client *ws, CURLcode res, struct cli_err *err)
{
        const char *detail = ws->errbuf[0] ? ws->errbuf : curl_easy_strerror(res);

        if (res == CURLE_OUT_OF_MEMORY)
                return cli_err_set(err, -ENOMEM, "out of memory");
        return cli_err_set(err, -CLI_E_CONNECT, "connection to %s failed: %s", ws->display, detail);
}

static int send_all(struct ws_client *ws, const char *p, size_t n, uint64_t deadline, struct cli_err *err)
{
        while (n > 0) {
                size_t sent = 0;
                CURLcode res = curl_easy_send(ws->curl, p, n, &sent);
                int r;

                if (res == CURLE_AGAIN) {
                        r = wait_fd(ws->fd, POLLOUT, deadline);
                        if (r < 0)
                                return cli_err_set(err, -CLI_E_CONNECT, "connection to %s failed: %s", ws->display,
                                                   strerror(-r));
                        continue;
                }
                if (res != CURLE_OK)
                        return io_failed(ws, res, err);
                p += sent;
                n -= sent;
        }
        return 0;
}

/* Read more of the answer into buf (len bytes of max so far). Returns the bytes added, 0 at end
 * of file, or a negative code. */
static ssize_t recv_some(struct ws_client *ws, char *buf, size_t len, size_t max, uint64_t deadline,
                         struct cli_err *err)
{
        for (;;) {
                size_t got = 0;
                CURLcode res = curl_easy_recv(ws->curl, buf + len, max - len, &got);
                int r;

                if (res == CURLE_AGAIN) {
                        r = wait_fd(ws->fd, POLLIN, deadline);
                        if (r == -ETIMEDOUT)
                                return cli_err_set(err, -CLI_E_CONNECT,
                                                   "%s did not answer the WebSocket handshake within %ds", ws->display,
                                                   SBX_CLI_WS_HANDSHAKE_TIMEOUT_S);
                        if (r < 0)
                                return cli_err_set(err, -CLI_E_CONNECT, "connection to %s failed: %s", ws->display,
                                                   strerror(-r));
                        continue;
                }
                if (res != CURLE_OK)
                        return io_failed(ws, res, err);
                return (ssize_t)got;
        }
}

/* The value of header `name` in head (lines after the status line, "\r\n" separated, NUL-ended),
 * trimmed, copied into buf; NULL if absent. The first occurrence wins. */
static const char *header_get(const char *head, const char *name, char *buf, size_t size)
{
        size_t n = strlen(name);

        for (const char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
                const char *p = line + 2, *end = strstr(p, "\r\n");
                size_t k;

                if (!end)
                        end = p + strlen(p);
                if ((size_t)(end - p) <= n || p[n] != ':' || strncasecmp(p, name, n) != 0)
                        continue;
                p += n + 1;
                while (p < end && (*p == ' ' || *p == '\t'))
                        p++;
                while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
                        end--;
                k = (size_t)(end - p) < size - 1 ? (size_t)(end - p) : size - 1;
                memcpy(buf, p, k);
                buf[k] = '\0';
                return buf;
        }
        return NULL;
}

/* Whether the comma-separated list s has token (case-insensitive). */
static bool has_token(const char *s, const char *token)
{
        size_t n = strlen(token);

        while (s && *s) {
                size_t k;

                s += strspn(s, " \t,");
                k = strcspn(s, ",");
                while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
                        k--;
                if (k == n && strncasecmp(s, token, n) == 0)
                        return true;
                s = strchr(s, ',');
        }
        return false;
}

/* The error a non-101 answer carries: the API's error object if the body is one. */
static int answer_error(struct ws_client *ws, const char *path, long status, const char *body, size_t len,
                        struct cli_err *err)
{
        _cleanup_json_ json_t *v = len > 0 ? json_loadb(body, len, 0, NULL) : NULL;
        const json_t *e = json_object_get(v, "error");
        const char *code = NULL, *msg = NULL;

        if (json_is_object(e)) {
                code = json_string_value(json_object_get(e, "code"));
                msg = json_string_value(json_object_get(e, "message"));
        }
        if (err && err->code == 0)
                snprintf(err->api_code, sizeof err->api_code, "%s", code ? code : "");
        if (msg && code)
                return cli_err_set(err, -CLI_E_API, "%s (%s)", msg, code);
        if (msg || code)
                return cli_err_set(err, -CLI_E_API, "%s (HTTP %ld)", msg ? msg : code, status);
        return cli_err_set(err, -CLI_E_API, "GET %s: %s answered HTTP %ld instead of a WebSocket upgrade", path,
                           ws->display, status);
}

/* Read the rest of a non-101 answer's body (bounded) after the len bytes already in body. */
static int answer_body(struct ws_client *ws, const char *head, char *body, size_t len, size_t max, size_t *ret_len,
                       uint64_t deadline, struct cli_err *err)
{
        char value[32];
        size_t want = max;

        if (header_get(head, "Content-Length", value, sizeof value)) {
                unsigned long long n = strtoull(value, NULL, 10);

                want = n < max ? (size_t)n : max;
        }
        while (len < want) {
                ssize_t k = recv_some(ws, body, len, want, deadline, err);

                if (k < 0)
                        return (int)k;
                if (k == 0)
                        break;
                len += (size_t)k;
        }
        *ret_len = len < want ? len : want;
        return 0;
}

/* Write the upgrade request and check the answer; bytes after the headers go to ws->pending. */
static int handshake(struct ws_client *ws, const char *target, const char *host, const char *key, uint64_t deadline,
                     struct cli_err *err)
{
        uint8_t nonce[WS_KEY_BYTES], digest[EVP_MAX_MD_SIZE];
        char nonce_b64[32], accept[64], value[128];
        _cleanup_free_ char *req = NULL, *concat = NULL, *buf = NULL;
        size_t len = 0, head_len, rest;
        unsigned digest_len = 0;
        const char *end;
        char *body;
        long status;
        int r;

        r = random_bytes(nonce, sizeof nonce);
        if (r < 0)
                return cli_err_set(err, r, "cannot get random bytes: %s", strerror(-r));
        (void)EVP_EncodeBlock((unsigned char *)nonce_b64, nonce, sizeof nonce);
        if (asprintf(&req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: sbx/" SBX_CLI_VERSION "\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "\r\n",
                     target, host, nonce_b64, key ? "Authorization: Bearer " : "", key ? key : "",
                     key ? "\r\n" : "") < 0) {
                req = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        r = send_all(ws, req, strlen(req), deadline, err);
        explicit_bzero(req, strlen(req)); /* it holds the key */
        if (r < 0)
                return r;

        buf = malloc(SBX_CLI_WS_MAX_HEAD + 1);
        if (!buf)
                return cli_err_set(err, -ENOMEM, "out of memory");
        for (;;) {
                size_t from = len > 3 ? len - 3 : 0;
                ssize_t k = recv_some(ws, buf, len, SBX_CLI_WS_MAX_HEAD, deadline, err);

                if (k < 0)
                        return (int)k;
                if (k == 0)
                        return cli_err_set(err, -CLI_E_CONNECT,
                                           "%s closed the connection during the WebSocket handshake", ws->display);
                len += (size_t)k;
                buf[len] = '\0';
                end = memmem(buf + from, len - from, "\r\n\r\n", 4);
                if (end)
                        break;
                if (len == SBX_CLI_WS_MAX_HEAD)
                        return cli_err_set(err, -CLI_E_PROTOCOL,
                                           "the answer of %s to the WebSocket handshake is larger than %lu KiB",
                                           ws->display, SBX_CLI_WS_MAX_HEAD >> 10);
        }

        /* buf[0, head_len): the status line and the headers, each with its "\r\n"; then the
         * blank line, then rest bytes of body (or, after a 101, of WebSocket frames) */
        head_len = (size_t)(end - buf) + 2;
        body = buf + head_len + 2;
        rest = len - head_len - 2;

        if (sscanf(buf, "HTTP/1.%*1[01] %3ld", &status) != 1)
                return cli_err_set(err, -CLI_E_PROTOCOL, "%s answered the WebSocket handshake with '%.*s'", ws->display,
                                   (int)strcspn(buf, "\r\n") > 80 ? 80 : (int)strcspn(buf, "\r\n"), buf);
        if (status != 101) {
                _cleanup_free_ char *copy = NULL;
                size_t blen = 0;

                /* the body is read into the space after the headers, still within the bound */
                copy = strndup(buf, head_len);
                if (!copy)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                memmove(buf, body, rest);
                r = answer_body(ws, copy, buf, rest, SBX_CLI_WS_MAX_HEAD, &blen, deadline, err);
                if (r < 0)
                        return r;
                return answer_error(ws, target, status, buf, blen, err);
        }
        buf[head_len] = '\0';

        if (!header_get(buf, "Upgrade", value, sizeof value) || !has_token(value, "websocket"))
                return cli_err_set(err, -CLI_E_PROTOCOL, "%s answered 101 without 'Upgrade: websocket'", ws->display);
        if (!header_get(buf, "Connection", value, sizeof value) || !has_token(value, "upgrade"))
                return cli_err_set(err, -CLI_E_PROTOCOL, "%s answered 101 without 'Connection: Upgrade'", ws->display);
        if (asprintf(&concat, "%s" WS_GUID, nonce_b64) < 0) {
                concat = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        if (EVP_Digest(concat, strlen(concat), digest, &digest_len, EVP_sha1(), NULL) != 1)
                return cli_err_set(err, -ENOMEM, "cannot compute SHA-1");
        (void)EVP_EncodeBlock((unsigned char *)accept, digest, (int)digest_len);
        if (!header_get(buf, "Sec-WebSocket-Accept", value, sizeof value) || strcmp(value, accept) != 0)
                return cli_err_set(err, -CLI_E_PROTOCOL, "%s answered 101 with a wrong Sec-WebSocket-Accept",
                                   ws->display);

        if (rest > 0) {
                ws->pending = malloc(rest);
                if (!ws->pending)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                memcpy(ws->pending, body, rest);
                ws->pending_len = rest;
        }
        return 0;
}

/* ---------- wslay callbacks ---------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *userdata)
{
        struct ws_client *ws = userdata;
        size_t got = 0;
        CURLcode res;

        if (ws->cb_error < 0) { /* stop reading: the caller is about to give up */
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        if (ws->pending_off < ws->pending_len) {
                size_t n = ws->pending_len - ws->pending_off;

                if (n > len)
                        n = len;
                memcpy(buf, ws->pending + ws->pending_off, n);
                ws->pending_off += n;
                return (ssize_t)n;
        }
        res = curl_easy_recv(ws->curl, buf, len, &got);
        if (res == CURLE_AGAIN) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        if (res != CURLE_OK || got == 0) {
                if (res != CURLE_OK)
                        ws->io_error = res;
                else
                        ws->eof = true;
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
                return -1;
        }
        return (ssize_t)got;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *userdata)
{
        struct ws_client *ws = userdata;
        size_t sent = 0;
        CURLcode res = curl_easy_send(ws->curl, data, len, &sent);

        if (res == CURLE_AGAIN || (res == CURLE_OK && sent == 0)) {
                wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
                return -1;
        }
        if (res != CURLE_OK) {
                ws->io_error = res;
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
                return -1;
        }
        return (ssize_t)sent;
}

static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *userdata)
{
        if (random_bytes(buf, len) < 0) {
                wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
                return -1;
        }
        return 0;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *userdata)
{
        struct ws_client *ws = userdata;
        int r;

        if (ws->cb_error < 0)
                return;
        if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME)
                return; /* close, ping and pong are wslay's */
        r = ws->fn(arg->opcode == WSLAY_BINARY_FRAME, arg->msg, arg->msg_length, ws->userdata, ws->err);
        if (r < 0)
                ws->cb_error = r;
}

/* ---------- the connection ---------- */

static bool has_prefix_nocase(const char *s, const char *prefix)
{
        return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

/* The full URL of path, the request target and the Host header for url (see ws_client_connect). */
static int url_parts(const char *url, const char *path, char **ret_full, char **ret_unix, char **ret_target,
                     char **ret_host, struct cli_err *err)
{
        _cleanup_free_ char *full = NULL, *unix_path = NULL, *target = NULL, *host = NULL;
        char *h = NULL, *port = NULL, *p = NULL, *q = NULL;
        CURLU *u;
        int r = 0;

        if (has_prefix_nocase(url, "unix:")) {
                if (url[5] == '\0')
                        return cli_err_set(err, -CLI_E_USAGE, "invalid URL '%s': expected unix:/path/to.sock", url);
                unix_path = strdup(url + 5);
                if (!unix_path || asprintf(&full, "http://localhost%s", path) < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        } else if (has_prefix_nocase(url, "http://") || has_prefix_nocase(url, "https://")) {
                size_t n = strlen(url);

                while (n > 0 && url[n - 1] == '/')
                        n--;
                if (asprintf(&full, "%.*s%s", (int)n, url, path) < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        } else {
                return cli_err_set(err, -CLI_E_USAGE,
                                   "invalid URL '%s': expected http://HOST:PORT, https://HOST:PORT or unix:/path", url);
        }

        u = curl_url();
        if (!u)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (curl_url_set(u, CURLUPART_URL, full, CURLU_PATH_AS_IS) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_PATH, &p, 0) != CURLUE_OK)
                r = cli_err_set(err, -CLI_E_USAGE, "invalid URL '%s'", url);
        (void)curl_url_get(u, CURLUPART_PORT, &port, 0); /* none: the scheme's */
        (void)curl_url_get(u, CURLUPART_QUERY, &q, 0);
        if (r >= 0 && (asprintf(&target, "%s%s%s", p, q ? "?" : "", q ? q : "") < 0 ||
                       asprintf(&host, "%s%s%s", unix_path ? "localhost" : h, port && !unix_path ? ":" : "",
                                port && !unix_path ? port : "") < 0)) {
                target = host = NULL;
                r = cli_err_set(err, -ENOMEM, "out of memory");
        }
        curl_free(h);
        curl_free(port);
        curl_free(p);
        curl_free(q);
        curl_url_cleanup(u);
        if (r < 0)
                return r;
        *ret_full = TAKE_PTR(full);
        *ret_unix = TAKE_PTR(unix_path);
        *ret_target = TAKE_PTR(target);
        *ret_host = TAKE_PTR(host);
        return 0;
}

static int connect_failed(struct ws_client *ws, CURLcode res, struct cli_err *err)
{
        const char *detail = ws->errbuf[0] ? ws->errbuf : curl_easy_strerror(res);
        long os_errno = 0;

        switch (res) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
                (void)curl_easy_getinfo(ws->curl, CURLINFO_OS_ERRNO, &os_errno);
                if (os_errno > 0)
                        detail = strerror((int)os_errno);
                else if (res == CURLE_OPERATION_TIMEDOUT)
                        detail = strerror(ETIMEDOUT);
                return cli_err_set(err, -CLI_E_CONNECT, "cannot connect to %s: %s", ws->display, detail);
        case CURLE_COULDNT_RESOLVE_HOST:
                return cli_err_set(err, -CLI_E_CONNECT, "cannot connect to %s: %s", ws->display, detail);
        default:
                return io_failed(ws, res, err);
        }
}

static void ws_client_freep(struct ws_client **ws)
{
        ws_client_free(*ws);
}

int ws_client_connect(const char *url, const char *key, const char *path, ws_client_message_fn fn, void *userdata,
                      struct ws_client **ret, struct cli_err *err)
{
        static const struct wslay_event_callbacks callbacks = {
                .recv_callback = recv_cb,
                .send_callback = send_cb,
                .genmask_callback = genmask_cb,
                .on_msg_recv_callback = msg_cb,
        };
        _cleanup_(ws_client_freep) struct ws_client *ws = NULL;
        _cleanup_free_ char *full = NULL, *unix_path = NULL, *target = NULL, *host = NULL;
        uint64_t deadline = now_ms() + SBX_CLI_WS_HANDSHAKE_TIMEOUT_S * 1000ULL;
        curl_socket_t sock = CURL_SOCKET_BAD;
        CURLcode res;
        int r;

        if (key && !*key)
                key = NULL;
        for (const char *p = key; p && *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f)
                        return cli_err_set(err, -CLI_E_USAGE, "the API key contains a control character");
        if (path[0] != '/' || path[strcspn(path, " \r\n")])
                return cli_err_set(err, -EINVAL, "invalid request path '%s'", path);
        r = url_parts(url, path, &full, &unix_path, &target, &host, err);
        if (r < 0)
                return r;

        ws = calloc(1, sizeof *ws);
        if (!ws)
                return cli_err_set(err, -ENOMEM, "out of memory");
        ws->fd = -EBADF;
        ws->fn = fn;
        ws->userdata = userdata;
        ws->display = strdup(url);
        ws->curl = curl_easy_init();
        if (!ws->display || !ws->curl)
                return cli_err_set(err, -ENOMEM, "out of memory");

        (void)curl_easy_setopt(ws->curl, CURLOPT_ERRORBUFFER, ws->errbuf);
        (void)curl_easy_setopt(ws->curl, CURLOPT_URL, full);
        if (unix_path)
                (void)curl_easy_setopt(ws->curl, CURLOPT_UNIX_SOCKET_PATH, unix_path);
        (void)curl_easy_setopt(ws->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void)curl_easy_setopt(ws->curl, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(ws->curl, CURLOPT_CONNECTTIMEOUT, (long)SBX_CLI_CONNECT_TIMEOUT_S);
        /* a shell may sit idle for hours: let TCP notice a dead peer */
        (void)curl_easy_setopt(ws->curl, CURLOPT_TCP_KEEPALIVE, 1L);
        (void)curl_easy_setopt(ws->curl, CURLOPT_CONNECT_ONLY, 1L);
        res = curl_easy_perform(ws->curl);
        if (res != CURLE_OK)
                return connect_failed(ws, res, err);
        if (curl_easy_getinfo(ws->curl, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK || sock == CURL_SOCKET_BAD)
                return cli_err_set(err, -CLI_E_CONNECT, "cannot connect to %s: no socket", ws->display);
        ws->fd = (int)sock;
        /* libcurl may have opened it without SOCK_CLOEXEC */
        (void)fcntl(ws->fd, F_SETFD, FD_CLOEXEC);

        r = handshake(ws, target, host, key, deadline, err);
        if (r < 0)
                return r;

        if (wslay_event_context_client_init(&ws->ctx, &callbacks, ws) != 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        wslay_event_config_set_max_recv_msg_length(ws->ctx, SBX_CLI_WS_MAX_MESSAGE);
        *ret = TAKE_PTR(ws);
        return 0;
}

struct ws_client *ws_client_free(struct ws_client *ws)
{
        if (!ws)
                return NULL;
        if (ws->ctx)
                wslay_event_context_free(ws->ctx);
        if (ws->curl)
                curl_easy_cleanup(ws->curl);
        free(ws->pending);
        free(ws->display);
        free(ws);
        return NULL;
}

static bool ws_over(const struct ws_client *ws)
{
        return ws->eof || ws->io_error != CURLE_OK ||
               (!wslay_event_want_read(ws->ctx) && !wslay_event_want_write(ws->ctx));
}

int ws_client_prepare(struct ws_client *ws, struct pollfd *pfd)
{
        pfd->fd = ws->fd;
        pfd->events = 0;
        pfd->revents = 0;
        if (ws_over(ws))
                return -EPIPE;
        if (wslay_event_want_read(ws->ctx))
                pfd->events |= POLLIN;
        if (wslay_event_want_write(ws->ctx))
                pfd->events |= POLLOUT;
        return wslay_event_want_read(ws->ctx) && ws->pending_off < ws->pending_len ? 1 : 0;
}

/* A negative result of wslay_event_recv/send as our error. */
static int wslay_failed(struct ws_client *ws, int rc, struct cli_err *err)
{
        if (ws->io_error != CURLE_OK)
                return io_failed(ws, ws->io_error, err);
        if (rc == WSLAY_ERR_NOMEM)
                return cli_err_set(err, -ENOMEM, "out of memory");
        return cli_err_set(err, -CLI_E_PROTOCOL, "the WebSocket connection to %s failed (wslay error %d)", ws->display,
                           rc);
}

int ws_client_dispatch(struct ws_client *ws, const struct pollfd *pfd, struct cli_err *err)
{
        bool readable = (pfd->revents & (POLLIN | POLLERR | POLLHUP)) || ws->pending_off < ws->pending_len;
        int rc;

        ws->err = err;
        if (readable && wslay_event_want_read(ws->ctx)) {
                rc = wslay_event_recv(ws->ctx);
                if (ws->cb_error < 0)
                        return ws->cb_error;
                if (rc < 0 && !ws->eof)
                        return wslay_failed(ws, rc, err);
                /* wslay stops reading, without a close from the server, at a message over the limit
                 * or a malformed frame, and queues a close of its own */
                if (!ws->eof && !wslay_event_get_read_enabled(ws->ctx) && !wslay_event_get_close_received(ws->ctx))
                        return cli_err_set(err, -CLI_E_PROTOCOL,
                                           "%s sent a malformed WebSocket frame or a message over %lu KiB", ws->display,
                                           SBX_CLI_WS_MAX_MESSAGE >> 10);
        }
        if (!ws->eof && wslay_event_want_write(ws->ctx)) {
                rc = wslay_event_send(ws->ctx);
                if (rc < 0)
                        return wslay_failed(ws, rc, err);
        }
        return ws_over(ws) ? 1 : 0;
}

int ws_client_send(struct ws_client *ws, bool binary, const void *data, size_t len)
{
        struct wslay_event_msg msg = {
                .opcode = binary ? WSLAY_BINARY_FRAME : WSLAY_TEXT_FRAME,
                .msg = data,
                .msg_length = len,
        };
        int rc;

        if (ws_over(ws) || !wslay_event_get_write_enabled(ws->ctx))
                return -EPIPE;
        rc = wslay_event_queue_msg(ws->ctx, &msg);
        if (rc == WSLAY_ERR_NOMEM)
                return -ENOMEM;
        return rc < 0 ? -EPIPE : 0;
}

size_t ws_client_queued(const struct ws_client *ws)
{
        return wslay_event_get_queued_msg_length(ws->ctx);
}

int ws_client_close(struct ws_client *ws, uint16_t code)
{
        if (ws_over(ws))
                return -EPIPE;
        return wslay_event_queue_close(ws->ctx, code, NULL, 0) == 0 ? 0 : -EPIPE;
}
