// SPDX-License-Identifier: Apache-2.0
/*
 * libcurl wrapper for the CLI; see client.h. Every reply is collected into a buffer bounded by
 * SBX_CLI_MAX_RESPONSE, and every streamed line into one bounded by SBX_CLI_MAX_STREAM_LINE, so
 * a misbehaving server cannot make the CLI grow without limit. Never prints.
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#define NDJSON_TYPE "application/x-ndjson"

struct client {
        CURL *curl;        /* one handle for every request: libcurl keeps the connection */
        char *base;        /* URL prefix the request path is appended to, no trailing '/' */
        char *display;     /* the address as the user gave it, for messages */
        char *unix_path;   /* socket path for unix: addresses, else NULL */
        char *auth_header; /* "Authorization: Bearer KEY" or NULL */
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
};

/* One request in flight: what the write callback needs. */
struct transfer {
        struct client *c;
        enum transfer_mode mode;
        struct buf body;   /* TRANSFER_BUFFER */
        struct buf line;   /* TRANSFER_STREAM: the incomplete last line */
        client_line_fn fn; /* NULL: never stream */
        void *userdata;
        struct cli_err *err;
        int error; /* set by the write callback when it aborts the transfer */
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

static void transfer_decide(struct transfer *t)
{
        long status = 0;
        char *ctype = NULL;

        t->mode = TRANSFER_BUFFER;
        if (!t->fn)
                return;
        (void)curl_easy_getinfo(t->c->curl, CURLINFO_RESPONSE_CODE, &status);
        (void)curl_easy_getinfo(t->c->curl, CURLINFO_CONTENT_TYPE, &ctype);
        if (status >= 200 && status < 300 && ctype && strncasecmp(ctype, NDJSON_TYPE, strlen(NDJSON_TYPE)) == 0)
                t->mode = TRANSFER_STREAM;
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

static int client_perform(struct client *c, const char *method, const char *path, const json_t *body,
                          struct transfer *t, json_t **ret_json, struct cli_err *err)
{
        _cleanup_free_ char *url = NULL, *data = NULL;
        struct curl_slist *headers = NULL, *h;
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
        (void)curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "sbx/" SBX_CLI_VERSION);
        (void)curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
        (void)curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, t);
        if (strcmp(method, "GET") == 0) {
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

        h = curl_slist_append(NULL, t->fn ? "Accept: " NDJSON_TYPE : "Accept: application/json");
        headers = h;
        /* without a body, "Content-Type:" stops libcurl from claiming a form for a bare POST */
        if (h)
                h = headers = curl_slist_append(headers, data ? "Content-Type: application/json" : "Content-Type:");
        if (h) /* no "Expect: 100-continue" round trip for large bodies */
                h = headers = curl_slist_append(headers, "Expect:");
        if (h && c->auth_header)
                h = headers = curl_slist_append(headers, c->auth_header);
        if (!h) {
                curl_slist_free_all(headers);
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);

        res = curl_easy_perform(c->curl);
        (void)curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(headers);

        if (t->error < 0)
                return t->error;
        if (res != CURLE_OK)
                return transport_error(c, res, err);

        (void)curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status >= 300)
                return api_error(c, status, method, path, &t->body, err);

        if (t->mode == TRANSFER_STREAM) {
                /* A last line without its newline still counts. */
                r = transfer_line(t, t->line.data ? t->line.data : "", t->line.len);
                if (r < 0)
                        return r;
                if (ret_json)
                        *ret_json = NULL;
                return (int)status;
        }
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

int client_request(struct client *c, const char *method, const char *path, const json_t *body, json_t **ret_json,
                   struct cli_err *err)
{
        struct transfer t = {
                .c = c,
                .body.max = SBX_CLI_MAX_RESPONSE,
                .line.max = SBX_CLI_MAX_STREAM_LINE,
                .err = err,
        };
        int r;

        r = client_perform(c, method, path, body, &t, ret_json, err);
        buf_release(&t.body);
        buf_release(&t.line);
        return r;
}

int client_stream(struct client *c, const char *method, const char *path, const json_t *body, client_line_fn fn,
                  void *userdata, json_t **ret_json, struct cli_err *err)
{
        struct transfer t = {
                .c = c,
                .body.max = SBX_CLI_MAX_RESPONSE,
                .line.max = SBX_CLI_MAX_STREAM_LINE,
                .fn = fn,
                .userdata = userdata,
                .err = err,
        };
        int r;

        r = client_perform(c, method, path, body, &t, ret_json, err);
        buf_release(&t.body);
        buf_release(&t.line);
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
