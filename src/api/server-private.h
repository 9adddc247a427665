/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to server.c (request bookkeeping, MHD callbacks, loop integration, listeners) and
 * reply.c (replies, streams, SSE, 101 upgrades): the server's and a request's state, and the
 * functions the two share. Nothing outside src/api/server*.c and reply.c includes it.
 */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "api/router.h"
#include "api/server.h"

/*
 * A body that outgrows SBX_MAX_JSON_BODY while it arrives (chunked uploads: no Content-Length to
 * refuse up front) is read and thrown away so the 413 can be sent on a connection that is still
 * in sync. Past this many bytes we stop draining and drop the connection instead. Upload routes
 * count only the bytes thrown away (after max_upload was passed or a write failed).
 */
#define HTTP_MAX_DISCARD_BYTES (4ULL * SBX_MAX_JSON_BODY)
#define HTTP_STREAM_BLOCK 4096             /* MHD callback-response block (unused for chunked) */
#define HTTP_MAX_TIMER_MS (3600ULL * 1000) /* cap for MHD_get_timeout values */
#define HTTP_METHOD_BYTES 16
#define HTTP_MAX_REPLY_HEADERS 8

enum listener_kind {
        LISTENER_TCP,
        LISTENER_UNIX,
        LISTENER_KIND_MAX,
};

struct listener {
        struct http_server *srv;
        enum listener_kind kind;
        struct MHD_Daemon *mhd; /* owns the listen socket once started */
        uv_poll_t poll;         /* on MHD's epoll fd */
        uv_timer_t timer;       /* MHD_get_timeout, and "run now" after a resume */
        bool handles_init;
        bool kicked; /* a connection was resumed since the last MHD_run */
};

struct http_server {
        uv_loop_t *loop;
        struct listener listeners[LISTENER_KIND_MAX];
        char *api_key;
        void *app;
        const struct route *routes;
        size_t n_routes;
        int upload_dirfd;    /* owned: O_PATH fd of cfg->upload_dir; -EBADF if uploads are off */
        uint64_t max_upload; /* 0: upload routes answer 413 */
        http_upload_open_fn upload_open;
        http_gate_fn gate;
        char *unix_path;     /* to unlink at stop, if it is still our socket */
        dev_t unix_dev;
        ino_t unix_ino;
        struct http_request *requests; /* every live request (list), for stop */
        unsigned depth;                /* > 0 while inside MHD_run / a handler: stop is deferred */
        bool stop_pending;
        bool stopping;
        unsigned open_handles; /* uv handles still to close; srv is freed at 0 */
};

struct http_stream {
        struct http_request *req;
        char *buf; /* queued bytes are buf[head, head + len) */
        size_t head, len, cap;
        bool ended;      /* http_stream_end() called */
        bool want_drain; /* a write got -ENOBUFS */
        void (*drain_cb)(struct http_stream *s, void *data);
        void *drain_data;
};

enum req_phase {
        REQ_NEW,        /* allocated by the URI log callback */
        REQ_HEADERS,    /* first access-handler call done: routed, authenticated, body may follow */
        REQ_DISPATCHED, /* handler called (or error chosen) */
};

struct http_request {
        struct http_server *srv;
        struct listener *lst;
        struct MHD_Connection *conn; /* NULL once MHD completed the request */
        struct http_request *prev, *next;
        enum req_phase phase;
        uint64_t start_usec;

        char method_str[HTTP_METHOD_BYTES];
        enum http_method method;
        char *target; /* raw request path (no query), at most SBX_MAX_URL_BYTES + 1 bytes */
        struct route_match match;

        struct sbx_err pre_err; /* chosen before the handler: 400/401/404/405; code 0 = none */
        char *body;             /* NUL-terminated; NULL = empty */
        size_t body_len, body_cap;
        uint64_t body_seen; /* every upload byte, kept or not */
        bool body_too_large;

        bool upload;           /* the route streams its body to upload_fd */
        int upload_fd;         /* owned: the O_TMPFILE body file; -EBADF when closed or none */
        uint64_t upload_size;  /* bytes written to upload_fd */
        uint64_t upload_max;   /* limit for this body: max_upload, or what upload_open said */
        bool write_behind;     /* http_request_upload_write_behind() */
        uint64_t wb_done;      /* bytes of the body handed to write-behind so far */
        uint64_t body_dropped; /* upload routes: bytes read and thrown away */

        struct MHD_Response *response; /* reply made but not yet queued */
        unsigned status;               /* of the stored or queued reply; 0 = none yet */
        bool replied;                  /* a reply was made (exactly one allowed) */
        bool queued;
        bool suspended; /* we called MHD_suspend_connection and not yet resume */
        bool in_handler;
        bool mhd_done; /* NOTIFY_COMPLETED seen */
        bool app_done; /* the application holds no pointer to req any more */

        void (*close_cb)(struct http_request *req, void *data);
        void *close_data;
        bool close_called;
        bool in_close_cb;

        bool has_stream;
        struct http_stream stream;

        char *hdrs[HTTP_MAX_REPLY_HEADERS][2]; /* http_reply_header(): added to the reply */
        unsigned n_hdrs;
        void *app_data;
        json_t *reply_fields;  /* http_reply_field(): merged into a JSON object reply */

        bool http11; /* the request line said HTTP/1.1 (only such requests can be upgraded) */
        /* http_reply_upgrade(): called once the 101 is out; urh is MHD's handle from then until
         * http_upgrade_close() or the end of the request */
        void (*upgrade_cb)(void *cls, int sock, void *urh, const char *extra, size_t extra_len);
        void *upgrade_cls;
        struct MHD_UpgradeResponseHandle *urh;
};


/* server.c */
/* Free req once neither MHD nor the application can reach it. */
void server__request_maybe_free(struct http_request *req);
/* Un-park a suspended connection (and have MHD run soon). */
void server__request_resume(struct http_request *req);
/* Store resp as the reply to req (takes ownership); keep_app: the application keeps using req. */
void server__request_set_response(struct http_request *req, unsigned status, struct MHD_Response *resp, bool keep_app);
/* false (logged) for a second reply */
bool server__reply_allowed(struct http_request *req);
/* Run the listener's MHD soon (after a resume or an upgrade action). */
void server__listener_kick(struct listener *lst);

/* reply.c */
/* Last resort when even an error body cannot be built: a fixed 500. */
void server__reply_oom(struct http_request *req);
