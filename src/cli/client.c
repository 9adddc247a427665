// SPDX-License-Identifier: Apache-2.0
/*
 * libcurl wrapper for the CLI; see client.h. Every reply is collected into a buffer bounded by
 * SBX_CLI_MAX_RESPONSE, every streamed line into one bounded by SBX_CLI_MAX_STREAM_LINE, and
 * every Server-Sent Event into one bounded by SBX_CLI_MAX_SSE_EVENT, so a misbehaving server
 * cannot make the CLI grow without limit. Uploads and downloads go through a file descriptor
 * chunk by chunk. Never prints.
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "output.h"

#define NDJSON_TYPE "application/x-ndjson"
#define SSE_TYPE "text/event-stream"

struct client {
        CURL *curl;                  /* one handle for every request: libcurl keeps the connection */
        char *base;                  /* URL prefix the request path is appended to, no trailing '/' */
        char *display;               /* the address as the user gave it, for messages */
        char *unix_path;             /* socket path for unix: addresses, else NULL */
        char *auth_header;           /* "Authorization: Bearer KEY" or NULL */
        client_progress_fn progress; /* client_set_progress(); NULL: none */
        void *progress_userdata;
        char errbuf[CURL_ERROR_SIZE];
};

/* A growable byte buffer with a hard maximum; data is always NUL-terminated once allocated. */
struct buf {
        char *data;
        size_t len;
        size_t cap;
        size_t max;
};

static int buf_append(struct buf *b, const char *p, size_t n)
{
        if (n > b->max - b->len)
                return -EFBIG;
        if (b->len + n + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 16384;
                char *d;

                while (cap < b->len + n + 1)
                        cap *= 2;
                if (cap > b->max + 1)
                        cap = b->max + 1;
                d = realloc(b->data, cap);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->cap = cap;
        }
        memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
}

static void buf_release(struct buf *b)
{
        free(b->data);
        *b = (struct buf){ .max = b->max };
}

enum transfer_mode {
        TRANSFER_UNDECIDED, /* no body byte seen yet */
        TRANSFER_BUFFER,    /* collect the whole body */
        TRANSFER_STREAM,    /* 2xx NDJSON: split into lines as it arrives */
        TRANSFER_SSE,       /* 2xx event stream: split into events as it arrives */
        TRANSFER_FILE,      /* 2xx download: written to out_fd as it arrives */
};

/* Parser state of an event stream (TRANSFER_SSE). */
struct sse {
        struct buf line;               /* the incomplete current line */
        struct buf data;               /* "data:" lines of the event being read, joined with '\n' */
        bool has_data;                 /* at least one "data:" line (an empty one counts) */
        bool cr;                       /* the last byte seen was '\r': a '\n' right after it is part of it */
        char type[64];                 /* "event:" of the event being read; "" = "message" */
        char id[SBX_CLI_MAX_EVENT_ID]; /* the last "id:" of the stream */
};

/* One request in flight: what the read and write callbacks need. */
struct transfer {
        struct client *c;
        enum transfer_mode mode;
        struct buf body;          /* TRANSFER_BUFFER */
        struct buf line;          /* TRANSFER_STREAM: the incomplete last line */
        client_line_fn fn;        /* NULL: never stream NDJSON */
        client_event_fn event_fn; /* non-NULL: an event stream is expected */
        const char *last_id;      /* sent as Last-Event-ID when non-NULL */
        struct sse sse;
        void *userdata;
        bool upload; /* the body is read from in_fd */
        int in_fd;
        int64_t in_size; /* < 0: chunked */
        const char *in_type;
        const char *in_name;
        bool download; /* a 2xx body is written to out_fd */
        int out_fd;
        const char *out_name;
        uint64_t out_bytes;
        struct cli_err *err;
        int error; /* set by a callback when it aborts the transfer */
};

static int transfer_line(struct transfer *t, const char *p, size_t n)
{
        json_error_t jerr;
        json_t *v;
        int r;

        if (n > 0 && p[n - 1] == '\r')
                n--;
        if (n == 0) /* blank lines may serve as heartbeats */
                return 0;
        v = json_loadb(p, n, JSON_ALLOW_NUL, &jerr);
        if (!v)
                return cli_err_set(t->err, -CLI_E_PROTOCOL, "invalid JSON line in the stream from %s: %s",
                                   t->c->display, jerr.text);
        r = t->fn(v, t->userdata, t->err);
        json_decref(v);
        return r;
}

static int transfer_stream(struct transfer *t, const char *p, size_t n)
{
        while (n > 0) {
                const char *nl = memchr(p, '\n', n);
                size_t k = nl ? (size_t)(nl - p) : n;
                int r;

                if (buf_append(&t->line, p, k) < 0)
                        return cli_err_set(t->err, -EFBIG, "a line in the stream from %s is longer than %lu MiB",
                                           t->c->display, SBX_CLI_MAX_STREAM_LINE >> 20);
                if (!nl)
                        break;
                r = transfer_line(t, t->line.data, t->line.len);
                t->line.len = 0;
                if (r < 0)
                        return r;
                p += k + 1;
                n -= k + 1;
        }
        return 0;
}

/* Dispatch the event read so far (at a blank line) and start the next one. */
static int sse_dispatch(struct transfer *t)
{
        struct sse *e = &t->sse;
        const char *data = e->data.data ? e->data.data : "";
        json_t *v;
        int r;

        if (!e->has_data) { /* nothing to dispatch: only the type is reset */
                e->type[0] = '\0';
                return 0;
        }
        v = json_loadb(data, e->data.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (!v)
                v = json_stringn(data, e->data.len);
        if (!v)
                return cli_err_set(t->err, -CLI_E_PROTOCOL, "an event in the stream from %s is not UTF-8 text",
                                   t->c->display);
        r = t->event_fn(e->type[0] ? e->type : "message", e->id, v, t->userdata, t->err);
        json_decref(v);
        e->type[0] = '\0';
        e->data.len = 0;
        e->has_data = false;
        return r;
}

/* One line of an event stream, without its end of line. */
static int sse_line(struct transfer *t, const char *p, size_t n)
{
        struct sse *e = &t->sse;
        const char *colon, *value;
        size_t fn, vn;

        if (n == 0)
                return sse_dispatch(t);
        if (p[0] == ':') /* a comment: heartbeats */
                return 0;
        colon = memchr(p, ':', n);
        fn = colon ? (size_t)(colon - p) : n;
        value = colon ? colon + 1 : p + n;
        vn = n - (size_t)(value - p);
        if (vn > 0 && value[0] == ' ') {
                value++;
                vn--;
        }
        if (fn == 5 && memcmp(p, "event", 5) == 0) {
                snprintf(e->type, sizeof e->type, "%.*s", (int)vn, value);
        } else if (fn == 4 && memcmp(p, "data", 4) == 0) {
                if ((e->has_data && buf_append(&e->data, "\n", 1) < 0) || buf_append(&e->data, value, vn) < 0)
                        return cli_err_set(t->err, -EFBIG, "an event in the stream from %s is larger than %lu KiB",
                                           t->c->display, SBX_CLI_MAX_SSE_EVENT >> 10);
                e->has_data = true;
        } else if (fn == 2 && memcmp(p, "id", 2) == 0) {
                if (memchr(value, '\0', vn)) /* the rules say: ignore such an id */
                        return 0;
                if (vn >= sizeof e->id)
                        return cli_err_set(t->err, -CLI_E_PROTOCOL,
                                           "an event id in the stream from %s is longer than %d bytes", t->c->display,
                                           SBX_CLI_MAX_EVENT_ID - 1);
                memcpy(e->id, value, vn);
                e->id[vn] = '\0';
        }
        /* "retry" and unknown fields are ignored */
        return 0;
}

/* Split a chunk of an event stream into lines; a line ends at "\r\n", "\n" or "\r". */
static int transfer_sse(struct transfer *t, const char *p, size_t n)
{
        struct sse *e = &t->sse;

        while (n > 0) {
                size_t k = 0;
                int r;

                if (e->cr && p[0] == '\n') { /* the second half of a "\r\n" split across chunks */
                        p++;
                        n--;
                        e->cr = false;
                        continue;
                }
                e->cr = false;
                while (k < n && p[k] != '\n' && p[k] != '\r')
                        k++;
                if (buf_append(&e->line, p, k) < 0)
                        return cli_err_set(t->err, -EFBIG, "an event in the stream from %s is larger than %lu KiB",
                                           t->c->display, SBX_CLI_MAX_SSE_EVENT >> 10);
                if (k == n)
                        break;
                e->cr = p[k] == '\r';
                r = sse_line(t, e->line.data ? e->line.data : "", e->line.len);
                e->line.len = 0;
                if (r < 0)
                        return r;
                p += k + 1;
                n -= k + 1;
        }
        return 0;
}

static bool ctype_is(const char *ctype, const char *want)
{
        size_t n = strlen(want);

        return ctype && strncasecmp(ctype, want, n) == 0 && (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

static void transfer_decide(struct transfer *t)
{
        long status = 0;
        char *ctype = NULL;

        t->mode = TRANSFER_BUFFER;
        (void)curl_easy_getinfo(t->c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status >= 300)
                return;
        (void)curl_easy_getinfo(t->c->curl, CURLINFO_CONTENT_TYPE, &ctype);
        if (t->fn && ctype_is(ctype, NDJSON_TYPE))
                t->mode = TRANSFER_STREAM;
        else if (t->event_fn && ctype_is(ctype, SSE_TYPE))
                t->mode = TRANSFER_SSE;
        else if (t->download)
                t->mode = TRANSFER_FILE;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
        struct transfer *t = userdata;
        size_t n = size * nmemb;
        int r;

        if (t->mode == TRANSFER_UNDECIDED)
                transfer_decide(t);
        if (t->mode == TRANSFER_STREAM) {
                r = transfer_stream(t, p, n);
        } else if (t->mode == TRANSFER_SSE) {
                r = transfer_sse(t, p, n);
        } else if (t->mode == TRANSFER_FILE) {
                r = output_write_all(t->out_fd, p, n);
                if (r < 0)
                        r = cli_err_set(t->err, r, "cannot write %s: %s", t->out_name, strerror(-r));
                else
                        t->out_bytes += n;
        } else {
                r = buf_append(&t->body, p, n);
                if (r == -EFBIG)
                        r = cli_err_set(t->err, r, "the response from %s is larger than %lu MiB", t->c->display,
                                        SBX_CLI_MAX_RESPONSE >> 20);
                else if (r < 0)
                        r = cli_err_set(t->err, r, "out of memory");
        }
        if (r < 0) {
                t->error = r;
                return 0; /* anything but n makes libcurl abort with CURLE_WRITE_ERROR */
        }
        return n;
}

/* libcurl's progress meter: the body bytes of an upload, or of a download being written to out_fd. */
static int xferinfo_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
        struct transfer *t = userdata;

        if (t->upload)
                t->c->progress((uint64_t)(ulnow > 0 ? ulnow : 0), (uint64_t)(ultotal > 0 ? ultotal : 0),
                               t->c->progress_userdata);
        else if (t->mode == TRANSFER_FILE) /* not an error reply's body */
                t->c->progress((uint64_t)(dlnow > 0 ? dlnow : 0), (uint64_t)(dltotal > 0 ? dltotal : 0),
                               t->c->progress_userdata);
        return 0;
}

/* libcurl asks for the next piece of an upload. */
static size_t read_cb(char *p, size_t size, size_t nmemb, void *userdata)
{
        struct transfer *t = userdata;

        for (;;) {
                ssize_t k = read(t->in_fd, p, size * nmemb);

                if (k >= 0)
                        return (size_t)k;
                if (errno != EINTR) {
                        t->error = cli_err_set(t->err, -errno, "cannot read %s: %s", t->in_name, strerror(errno));
                        return CURL_READFUNC_ABORT;
                }
        }
}

static int transport_error(struct client *c, CURLcode res, struct cli_err *err)
{
        const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(res);
        long os_errno = 0;

        switch (res) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT: /* only the connect phase has a timeout */
                (void)curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
                if (os_errno > 0)
                        detail = strerror((int)os_errno);
                else if (res == CURLE_OPERATION_TIMEDOUT)
                        detail = strerror(ETIMEDOUT);
                return cli_err_set(err, -CLI_E_CONNECT, "cannot connect to %s: %s", c->display, detail);
        case CURLE_COULDNT_RESOLVE_HOST:
                return cli_err_set(err, -CLI_E_CONNECT, "cannot connect to %s: %s", c->display, detail);
        case CURLE_OUT_OF_MEMORY:
                return cli_err_set(err, -ENOMEM, "out of memory");
        default:
                return cli_err_set(err, -CLI_E_CONNECT, "request to %s failed: %s", c->display, detail);
        }
}

/* A non-2xx reply: prefer the API's error object, else describe what came back. */
static int api_error(struct client *c, long status, const char *method, const char *path, const struct buf *body,
                     struct cli_err *err)
{
        _cleanup_json_ json_t *v = NULL;
        const json_t *e;
        const char *code = NULL, *msg = NULL;
        size_t n;

        if (body->len > 0)
                v = json_loadb(body->data, body->len, 0, NULL);
        e = json_object_get(v, "error");
        if (json_is_object(e)) {
                code = json_string_value(json_object_get(e, "code"));
                msg = json_string_value(json_object_get(e, "message"));
        }
        if (err && err->code == 0) /* only the error that will be kept gets its code */
                snprintf(err->api_code, sizeof err->api_code, "%s", code ? code : "");
        if (msg && code)
                return cli_err_set(err, -CLI_E_API, "%s (%s)", msg, code);
        if (msg)
                return cli_err_set(err, -CLI_E_API, "%s (HTTP %ld)", msg, status);
        if (code)
                return cli_err_set(err, -CLI_E_API, "%s (HTTP %ld)", code, status);
        if (body->len == 0 || v)
                return cli_err_set(err, -CLI_E_API, "%s %s: server answered HTTP %ld", method, path, status);
        /* Not JSON (a proxy's page, say): show the start of its first line. */
        n = strcspn(body->data, "\r\n");
        return cli_err_set(err, -CLI_E_API, "%s %s: server answered HTTP %ld: %.*s", method, path, status,
                           (int)(n < 200 ? n : 200), body->data);
}

/* Append one header line to *list; false (the list freed) on OOM. */
static bool header_add(struct curl_slist **list, const char *line)
{
        struct curl_slist *l = curl_slist_append(*list, line);

        if (!l) {
                curl_slist_free_all(*list);
                *list = NULL;
                return false;
        }
        *list = l;
        return true;
}

static struct curl_slist *request_headers(const struct client *c, const struct transfer *t, bool json_body)
{
        struct curl_slist *h = NULL;
        const char *accept = t->fn         ? "Accept: " NDJSON_TYPE
                             : t->event_fn ? "Accept: " SSE_TYPE
                             : t->download ? "Accept: */*"
                                           : "Accept: application/json";
        bool ok = header_add(&h, accept);

        if (t->upload) {
                _cleanup_free_ char *ct = NULL;

                if (asprintf(&ct, "Content-Type: %s", t->in_type) < 0)
                        ct = NULL;
                ok = ok && ct && header_add(&h, ct);
                /* chunked when the size is unknown; Expect: 100-continue stays (libcurl's default for
                 * large bodies), so a refused upload is answered before the body is sent */
                if (ok && t->in_size < 0)
                        ok = header_add(&h, "Transfer-Encoding: chunked");
        } else {
                /* without a body, "Content-Type:" stops libcurl from claiming a form for a bare POST */
                ok = ok && header_add(&h, json_body ? "Content-Type: application/json" : "Content-Type:");
                /* no "Expect: 100-continue" round trip for JSON bodies (at most 1 MiB) */
                ok = ok && header_add(&h, "Expect:");
        }
        if (ok && t->last_id) {
                _cleanup_free_ char *line = NULL;

                if (asprintf(&line, "Last-Event-ID: %s", t->last_id) < 0)
                        line = NULL;
                ok = line && header_add(&h, line);
        }
        if (ok && c->auth_header)
                ok = header_add(&h, c->auth_header);
        if (!ok) {
                curl_slist_free_all(h);
                return NULL;
        }
        return h;
}

static void set_method(struct client *c, const char *method, struct transfer *t, const char *data)
{
        if (t->upload) {
                (void)curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
                (void)curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, read_cb);
                (void)curl_easy_setopt(c->curl, CURLOPT_READDATA, t);
                (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->in_size);
                if (strcmp(method, "POST") != 0)
                        (void)curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        } else if (strcmp(method, "GET") == 0) {
                (void)curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        } else if (strcmp(method, "POST") == 0) {
                (void)curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
                (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, data ? data : "");
                (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(data ? strlen(data) : 0));
        } else {
                (void)curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
                if (data) {
                        (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, data);
                        (void)curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(data));
                }
        }
}

static int client_perform(struct client *c, const char *method, const char *path, const json_t *body,
                          struct transfer *t, json_t **ret_json, struct cli_err *err)
{
        _cleanup_free_ char *url = NULL, *data = NULL;
        struct curl_slist *headers;
        long status = 0;
        CURLcode res;
        int r;

        if (asprintf(&url, "%s%s", c->base, path) < 0) {
                url = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        if (body) {
                data = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!data)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        }

        /* Reset keeps live connections, so keep-alive survives; options are set afresh each time. */
        curl_easy_reset(c->curl);
        c->errbuf[0] = '\0';
        (void)curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
        (void)curl_easy_setopt(c->curl, CURLOPT_URL, url);
        if (c->unix_path)
                (void)curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
        (void)curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        (void)curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, (long)SBX_CLI_CONNECT_TIMEOUT_S);
        /* long silent waits (a build step, an import being unpacked): let TCP notice a dead peer */
        (void)curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
        (void)curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "sbx/" SBX_CLI_VERSION);
        (void)curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
        (void)curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, t);
        set_method(c, method, t, data);
        if (c->progress && (t->upload || t->download)) {
                (void)curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
                (void)curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
                (void)curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, t);
        }

        headers = request_headers(c, t, data != NULL);
        if (!headers)
                return cli_err_set(err, -ENOMEM, "out of memory");
        (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);

        res = curl_easy_perform(c->curl);
        (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(headers);

        if (t->error < 0)
                return t->error;
        if (res != CURLE_OK) {
                r = transport_error(c, res, err);
                /* an event stream cut off mid-way is worth a reconnect, like a failed connect */
                return t->mode == TRANSFER_SSE && r != -ENOMEM ? -CLI_E_CONNECT : r;
        }

        (void)curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status >= 300)
                return api_error(c, status, method, path, &t->body, err);
        if (t->mode == TRANSFER_UNDECIDED) /* an empty body: its type still tells what it is */
                transfer_decide(t);

        if (t->mode == TRANSFER_STREAM) {
                /* A last line without its newline still counts. */
                r = transfer_line(t, t->line.data ? t->line.data : "", t->line.len);
                if (r < 0)
                        return r;
                if (ret_json)
                        *ret_json = NULL;
                return (int)status;
        }
        if (t->mode == TRANSFER_SSE || t->mode == TRANSFER_FILE)
                return (int)status; /* an event cut off by the end of the stream is dropped */
        if (t->event_fn)
                return cli_err_set(err, -CLI_E_PROTOCOL, "%s %s: the reply from %s is not an event stream", method,
                                   path, c->display);
        if (t->body.len == 0) {
                if (ret_json)
                        *ret_json = NULL;
                return (int)status;
        }
        if (ret_json) {
                json_error_t jerr;
                json_t *v = json_loadb(t->body.data, t->body.len, JSON_ALLOW_NUL, &jerr);

                if (!v)
                        return cli_err_set(err, -CLI_E_PROTOCOL, "invalid JSON in the response from %s: %s", c->display,
                                           jerr.text);
                *ret_json = v;
        }
        return (int)status;
}

static void transfer_release(struct transfer *t)
{
        buf_release(&t->body);
        buf_release(&t->line);
        buf_release(&t->sse.line);
        buf_release(&t->sse.data);
}

/* A transfer with every buffer bounded and no fds. */
static void transfer_init(struct transfer *t, struct client *c, struct cli_err *err)
{
        *t = (struct transfer){
                .c = c,
                .body.max = SBX_CLI_MAX_RESPONSE,
                .line.max = SBX_CLI_MAX_STREAM_LINE,
                .sse.line.max = SBX_CLI_MAX_SSE_EVENT + 64, /* a "data: " line holds at most one event */
                .sse.data.max = SBX_CLI_MAX_SSE_EVENT,
                .in_fd = -EBADF,
                .out_fd = -EBADF,
                .err = err,
        };
}

int client_request(struct client *c, const char *method, const char *path, const json_t *body, json_t **ret_json,
                   struct cli_err *err)
{
        struct transfer t;
        int r;

        transfer_init(&t, c, err);
        r = client_perform(c, method, path, body, &t, ret_json, err);
        transfer_release(&t);
        return r;
}

int client_stream(struct client *c, const char *method, const char *path, const json_t *body, client_line_fn fn,
                  void *userdata, json_t **ret_json, struct cli_err *err)
{
        struct transfer t;
        int r;

        transfer_init(&t, c, err);
        t.fn = fn;
        t.userdata = userdata;
        r = client_perform(c, method, path, body, &t, ret_json, err);
        transfer_release(&t);
        return r;
}

int client_events(struct client *c, const char *path, const char *last_id, client_event_fn fn, void *userdata,
                  struct cli_err *err)
{
        struct transfer t;
        int r;

        transfer_init(&t, c, err);
        t.event_fn = fn;
        t.userdata = userdata;
        t.last_id = last_id;
        if (last_id && (strlen(last_id) >= SBX_CLI_MAX_EVENT_ID || last_id[strcspn(last_id, "\r\n")]))
                return cli_err_set(err, -EINVAL, "invalid event id '%s'", last_id);
        r = client_perform(c, "GET", path, NULL, &t, NULL, err);
        transfer_release(&t);
        return r;
}

int client_upload(struct client *c, const char *method, const char *path, int in_fd, int64_t size,
                  const char *content_type, const char *in_name, json_t **ret_json, struct cli_err *err)
{
        struct transfer t;
        int r;

        transfer_init(&t, c, err);
        if (content_type[strcspn(content_type, "\r\n")])
                return cli_err_set(err, -EINVAL, "invalid content type '%s'", content_type);
        t.upload = true;
        t.in_fd = in_fd;
        t.in_size = size;
        t.in_type = content_type;
        t.in_name = in_name;
        r = client_perform(c, method, path, NULL, &t, ret_json, err);
        transfer_release(&t);
        return r;
}

int client_download(struct client *c, const char *path, int out_fd, const char *out_name, uint64_t *ret_bytes,
                    struct cli_err *err)
{
        struct transfer t;
        int r;

        transfer_init(&t, c, err);
        t.download = true;
        t.out_fd = out_fd;
        t.out_name = out_name;
        r = client_perform(c, "GET", path, NULL, &t, NULL, err);
        if (r >= 0 && ret_bytes)
                *ret_bytes = t.out_bytes;
        transfer_release(&t);
        return r;
}

static bool has_prefix_nocase(const char *s, const char *prefix)
{
        return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int client_new(const char *url, const char *key, struct client **ret, struct cli_err *err)
{
        struct client *c;
        size_t n;

        if (key) {
                for (const char *p = key; *p; p++)
                        if ((unsigned char)*p < 0x20 || *p == 0x7f)
                                return cli_err_set(err, -CLI_E_USAGE, "the API key contains a control character");
                if (!*key)
                        key = NULL;
        }
        if (has_prefix_nocase(url, "unix:")) {
                if (url[5] == '\0')
                        return cli_err_set(err, -CLI_E_USAGE, "invalid URL '%s': expected unix:/path/to.sock", url);
        } else if (!has_prefix_nocase(url, "http://") && !has_prefix_nocase(url, "https://")) {
                return cli_err_set(err, -CLI_E_USAGE,
                                   "invalid URL '%s': expected http://HOST:PORT, https://HOST:PORT or unix:/path", url);
        }

        c = calloc(1, sizeof *c);
        if (!c)
                return cli_err_set(err, -ENOMEM, "out of memory");
        c->display = strdup(url);
        if (has_prefix_nocase(url, "unix:")) {
                c->unix_path = strdup(url + 5);
                /* The host part is ignored on a unix socket but HTTP/1.1 needs one. */
                c->base = strdup("http://localhost");
        } else {
                c->base = strdup(url);
        }
        if (key && asprintf(&c->auth_header, "Authorization: Bearer %s", key) < 0)
                c->auth_header = NULL;
        c->curl = curl_easy_init();
        if (!c->display || !c->base || (has_prefix_nocase(url, "unix:") && !c->unix_path) || (key && !c->auth_header) ||
            !c->curl) {
                client_free(c);
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        n = strlen(c->base);
        while (n > 0 && c->base[n - 1] == '/')
                c->base[--n] = '\0';
        *ret = c;
        return 0;
}

struct client *client_free(struct client *c)
{
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c->base);
        free(c->display);
        free(c->unix_path);
        if (c->auth_header) /* it holds the key */
                explicit_bzero(c->auth_header, strlen(c->auth_header));
        free(c->auth_header);
        free(c);
        return NULL;
}

void client_set_progress(struct client *c, client_progress_fn fn, void *userdata)
{
        c->progress = fn;
        c->progress_userdata = userdata;
}

char *client_escape(const char *s)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t n = strlen(s);
        char *out, *o;

        if (n > (SIZE_MAX - 1) / 3)
                return NULL;
        out = malloc(3 * n + 1);
        if (!out)
                return NULL;
        o = out;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                /* RFC 3986 unreserved characters stay; everything else is encoded */
                if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                    *p == '.' || *p == '_' || *p == '~') {
                        *o++ = (char)*p;
                } else {
                        *o++ = '%';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 0xf];
                }
        }
        *o = '\0';
        return out;
}

int client_query_add(char **query, const char *key, const char *value)
{
        _cleanup_free_ char *k = client_escape(key), *v = client_escape(value);
        char *q;

        if (!k || !v)
                return -ENOMEM;
        if (asprintf(&q, "%s%c%s=%s", *query ? *query : "", *query ? '&' : '?', k, v) < 0)
                return -ENOMEM;
        free(*query);
        *query = q;
        return 0;
}
