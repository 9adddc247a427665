// SPDX-License-Identifier: Apache-2.0
/*
 * Raw file bytes and archives (docs/files.md):
 *   GET/HEAD /v1/sandboxes/{id}/files/{path*}  sendfile from the sandbox's file, Range, ETag
 *   PUT      /v1/sandboxes/{id}/files/{path*}  the body streams into a temp file next to the
 *            target (opened by v1_upload_open before the first body byte), committed atomically
 *   GET/PUT  /v1/sandboxes/{id}/archive?path=  tar.gz of a directory / extract a tar(.gz)
 * Memory stays bounded whatever the size: bodies go straight to files, downloads are sendfile or
 * a pipe with back-pressure.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/v1/files-common.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files/files.h"

#define PIPE_CHUNK (64 * 1024)

/* ---------- GET / HEAD ---------- */

static void make_etag(const struct stat *st, char *buf, size_t size)
{
        snprintf(buf, size, "\"%" PRIx64 "-%" PRIx64 "-%" PRIx64 "\"", (uint64_t)st->st_ino, (uint64_t)st->st_size,
                 (uint64_t)(st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec));
}

/* "bytes=A-B" | "bytes=A-" | "bytes=-N" against size. 1 = a range in *off and *len, 0 = serve all
 * (no header, several ranges, or a unit we ignore), -1 = unsatisfiable. */
static int parse_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
        uint64_t a = 0, b = 0;
        const char *dash;
        char first[32];

        if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
                return 0;
        h += 6;
        dash = strchr(h, '-');
        if (!dash || (size_t)(dash - h) >= sizeof first)
                return 0;
        memcpy(first, h, (size_t)(dash - h));
        first[dash - h] = '\0';
        if (first[0] == '\0') { /* suffix: the last N bytes */
                if (parse_u64(dash + 1, &b) < 0)
                        return 0;
                if (b == 0 || size == 0)
                        return -1;
                if (b > size)
                        b = size;
                *off = size - b;
                *len = b;
                return 1;
        }
        if (parse_u64(first, &a) < 0)
                return 0;
        if (dash[1] == '\0')
                b = size ? size - 1 : 0;
        else if (parse_u64(dash + 1, &b) < 0 || b < a)
                return 0;
        if (a >= size)
                return -1;
        if (b >= size)
                b = size - 1;
        *off = a;
        *len = b - a + 1;
        return 1;
}

static void lease_closed(struct http_request *req, void *data)
{
        files_lease_release(data);
}

void v1_file_get(struct http_request *req)
{
        struct api_context *ctx = api_ctx(req);
        struct files_lease *lease = NULL;
        struct sbx_err err = {};
        char etag[80], date[64], cr[96], path[SBX_MAX_FILE_PATH + 2];
        const char *inm, *ir;
        uint64_t off = 0, len;
        struct stat st;
        struct tm tm;
        int fd = -1, r;

        if (files_param_path(req, 1, path, sizeof path, &err) < 0 ||
            manager_files_acquire(ctx->manager, http_request_param(req, 0), &lease, &err) < 0 ||
            files_open_read(files_lease_root(lease), path, &fd, &st, &err) < 0) {
                files_lease_release(lease);
                http_reply_error(req, &err);
                return;
        }
        /* the open fd pins the overlay: the lease lives until the reply is done */
        http_request_on_close(req, lease_closed, lease);
        make_etag(&st, etag, sizeof etag);
        gmtime_r(&st.st_mtim.tv_sec, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        (void)http_reply_header(req, "ETag", etag);
        (void)http_reply_header(req, "Last-Modified", date);
        (void)http_reply_header(req, "Accept-Ranges", "bytes");
        inm = http_request_header(req, "If-None-Match");
        if (inm && (strcmp(inm, etag) == 0 || strcmp(inm, "*") == 0)) {
                close(fd);
                http_reply_data(req, 304, NULL, NULL, 0);
                return;
        }
        len = (uint64_t)st.st_size;
        ir = http_request_header(req, "If-Range");
        r = (ir && strcmp(ir, etag) != 0) ? 0 : parse_range(http_request_header(req, "Range"), len, &off, &len);
        if (r < 0) {
                close(fd);
                http_reply_errorf(req, -SBX_E_RANGE, "range_not_satisfiable",
                                  "range '%.64s' is outside '%s' (%" PRIu64 " bytes)",
                                  http_request_header(req, "Range"), path, (uint64_t)st.st_size);
                return;
        }
        if (r > 0) {
                snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off, off + len - 1,
                         (uint64_t)st.st_size);
                (void)http_reply_header(req, "Content-Range", cr);
        }
        http_reply_fd(req, r > 0 ? 206 : 200, "application/octet-stream", fd, off, len);
}

/* ---------- PUT ---------- */

struct file_put {
        struct files_lease *lease;
        struct files_write_opts o;
        struct files_writer *w;
        char path[SBX_MAX_FILE_PATH + 2];
        bool committing; /* the commit runs on the worker pool: it frees w */
        bool gone;       /* the request went away meanwhile */
};

static void file_put_free(struct file_put *p)
{
        files_writer_abort(p->w);
        files_lease_release(p->lease);
        free(p);
}

static void file_put_closed(struct http_request *req, void *data)
{
        struct file_put *p = data;

        if (p->committing) {
                p->gone = true;
                return;
        }
        file_put_free(p);
}

/* Open the writer of the target (as the sandbox user the PUT names: files_lease_call). */
static int put_open_fn(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err)
{
        struct file_put *p = data;

        return files_writer_open(root, p->path, &p->o, &p->w, err);
}

static int v1_file_put_open(struct http_request *req, int *ret_fd, uint64_t *ret_max, struct sbx_err *err)
{
        struct api_context *ctx = api_ctx(req);
        char path[SBX_MAX_FILE_PATH + 2];
        struct files_write_opts o = {};
        struct file_put *p;
        int r, fd = -1;

        r = files_param_path(req, 1, path, sizeof path, err);
        if (r < 0)
                return r;
        r = files_query_mode(req, "mode", &o.has_mode, &o.mode, err);
        if (r < 0)
                return r;
        r = files_query_bool(req, "parents", false, &o.mkparents, err);
        if (r < 0)
                return r;
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        snprintf(p->path, sizeof p->path, "%s", path);
        p->o = o;
        r = manager_files_acquire(ctx->manager, http_request_param(req, 0), &p->lease, err);
        if (r >= 0)
                r = files_lease_call(p->lease, http_request_query(req, "user"), put_open_fn, p, NULL, err);
        if (r >= 0) {
                fd = fcntl(files_writer_fd(p->w), F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        r = sbx_err_set(err, -errno, "cannot dup the upload file: %m");
        }
        if (r < 0) {
                file_put_free(p);
                return r;
        }
        http_request_set_data(req, p);
        http_request_on_close(req, file_put_closed, p);
        *ret_fd = fd;
        *ret_max = UINT64_MAX; /* no cap but the disk: a full one answers 503 */
        http_request_upload_write_behind(req);
        return 0;
}

static int put_commit(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err)
{
        struct file_put *p = data;
        int r = files_writer_commit(TAKE_PTR(p->w), err);

        return r < 0 ? r : files_stat(root, p->path, ret, err);
}

static void put_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct http_request *req = data;
        struct file_put *p = http_request_data(req);

        p->committing = false;
        if (p->gone) {
                json_decref(result);
                file_put_free(p);
                return;
        }
        if (r < 0)
                http_reply_error(req, err);
        else
                http_reply_json(req, 200, result);
}

void v1_file_put(struct http_request *req)
{
        struct file_put *p = http_request_data(req);
        struct sbx_err err = {};

        if (!p) {
                http_reply_errorf(req, -SBX_E_INTERNAL, NULL, "the upload target was not opened");
                return;
        }
        p->committing = true;
        if (manager_files_run(api_ctx(req)->manager, http_request_param(req, 0), false, NULL, put_commit, p, put_done,
                              req, &err) < 0) {
                p->committing = false;
                http_reply_error(req, &err);
        }
}

int v1_upload_open(struct http_request *req, int *ret_fd, uint64_t *ret_max, struct sbx_err *err)
{
        if (http_request_handler(req) == v1_file_put)
                return v1_file_put_open(req, ret_fd, ret_max, err);
        *ret_fd = -1; /* the default: an O_TMPFILE in the upload dir */
        return 0;
}

/* ---------- archives ---------- */

struct untar_job {
        struct http_request *req;
        char path[SBX_MAX_FILE_PATH + 1];
        int fd;
};

static int untar_fn(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err)
{
        struct untar_job *j = data;

        return files_untar(root, j->path, j->fd, ret, err);
}

static void untar_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct untar_job *j = data;

        if (r < 0)
                http_reply_error(j->req, err);
        else
                http_reply_json(j->req, 200, result);
        safe_close(j->fd);
        free(j);
}

void v1_archive_put(struct http_request *req)
{
        struct sbx_err err = {};
        struct untar_job *j;
        const char *path;

        if (files_query_path(req, "path", &path, &err) < 0) {
                http_reply_error(req, &err);
                return;
        }
        j = calloc(1, sizeof *j);
        if (!j) {
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return;
        }
        j->req = req;
        snprintf(j->path, sizeof j->path, "%s", path);
        j->fd = fcntl(http_request_upload_fd(req), F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0) {
                free(j);
                http_reply_errorf(req, -errno, NULL, "cannot dup the upload file: %m");
                return;
        }
        /* the request stays until the reply (no on_close needed: the job only replies) */
        if (manager_files_run(api_ctx(req)->manager, http_request_param(req, 0), true, http_request_query(req, "user"),
                              untar_fn, j, untar_done, j, &err) < 0) {
                safe_close(j->fd);
                free(j);
                http_reply_error(req, &err);
        }
}

/* GET: files_tar writes into a pipe on the worker pool; the loop pumps the pipe into the reply
 * with back-pressure both ways (a full pipe blocks the writer, a full stream stops the pump). */
struct tar_job {
        struct http_request *req;     /* NULL once the client is gone */
        struct http_stream *stream;
        char path[SBX_MAX_FILE_PATH + 1];
        int wfd;                      /* the worker's end; closed by tar_fn */
        int rfd;
        uv_poll_t poll;
        bool poll_init, worker_done, closing;
        char buf[PIPE_CHUNK];
        size_t pending;               /* bytes in buf the stream did not take yet */
};

static int tar_fn(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err)
{
        struct tar_job *j = data;
        int r = files_tar(root, j->path, j->wfd, err);

        j->wfd = safe_close(j->wfd); /* EOF for the pump */
        return r;
}

static void tar_poll_closed(uv_handle_t *h)
{
        struct tar_job *j = h->data;

        safe_close(j->rfd);
        free(j);
}

/* Free once the worker finished and the poll handle closed. */
static void tar_maybe_free(struct tar_job *j)
{
        if (!j->worker_done || j->closing)
                return;
        j->closing = true;
        if (j->poll_init)
                uv_close((uv_handle_t *)&j->poll, tar_poll_closed);
        else
                tar_poll_closed((uv_handle_t *)&j->poll);
}

static void tar_finish(struct tar_job *j)
{
        if (j->poll_init)
                (void)uv_poll_stop(&j->poll);
        if (j->req && j->stream) {
                http_request_on_close(j->req, NULL, NULL); /* j goes before the request does */
                http_stream_end(j->stream);
        }
        j->stream = NULL;
        j->req = NULL;
        safe_close(j->rfd);
        j->rfd = -EBADF; /* the worker's next write gets EPIPE and stops */
        tar_maybe_free(j);
}

static void tar_pump(struct tar_job *j)
{
        for (;;) {
                ssize_t n;
                int r;

                if (j->pending) {
                        r = http_stream_write(j->stream, j->buf, j->pending);
                        if (r == -ENOBUFS) {
                                (void)uv_poll_stop(&j->poll); /* the drain callback resumes */
                                return;
                        }
                        if (r < 0)
                                return tar_finish(j);
                        j->pending = 0;
                }
                n = read(j->rfd, j->buf, sizeof j->buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return; /* the poll is on: tar_on_poll comes back */
                if (n <= 0)
                        return tar_finish(j);
                j->pending = (size_t)n;
        }
}

static void tar_on_poll(uv_poll_t *p, int status, int events)
{
        struct tar_job *j = p->data;

        if (status < 0)
                return tar_finish(j);
        tar_pump(j);
}

static void tar_on_drain(struct http_stream *s, void *data)
{
        struct tar_job *j = data;

        if (j->req && uv_poll_start(&j->poll, UV_READABLE, tar_on_poll) == 0)
                tar_pump(j);
}

static void tar_closed(struct http_request *req, void *data)
{
        struct tar_job *j = data;

        j->stream = NULL;
        j->req = NULL;
        tar_finish(j);
}

static void tar_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct tar_job *j = data;

        json_decref(result);
        j->worker_done = true;
        if (j->req == NULL)
                tar_maybe_free(j);
        /* else: the pump reaches EOF (the worker closed its end) and finishes */
}

void v1_archive_get(struct http_request *req)
{
        struct api_context *ctx = api_ctx(req);
        struct files_lease *lease = NULL;
        struct sbx_err err = {};
        struct tar_job *j;
        const char *path;
        int fds[2], fd = -1, r;

        /* a missing path is a 404 before the 200 goes out */
        if (files_query_path(req, "path", &path, &err) < 0 ||
            manager_files_acquire(ctx->manager, http_request_param(req, 0), &lease, &err) < 0 ||
            files_open(files_lease_root(lease), path, O_PATH, &fd, &err) < 0) {
                files_lease_release(lease);
                http_reply_error(req, &err);
                return;
        }
        close(fd);
        files_lease_release(lease);
        j = calloc(1, sizeof *j);
        if (!j || pipe2(fds, O_CLOEXEC) < 0) {
                free(j);
                http_reply_errorf(req, -ENOMEM, NULL, "cannot set up the archive stream");
                return;
        }
        j->req = req;
        j->rfd = fds[0];
        j->wfd = fds[1];
        snprintf(j->path, sizeof j->path, "%s", path);
        (void)fcntl(j->rfd, F_SETFL, O_NONBLOCK);
        r = uv_poll_init(manager_loop(ctx->manager), &j->poll, j->rfd);
        if (r < 0) {
                safe_close(j->rfd);
                safe_close(j->wfd);
                free(j);
                http_reply_errorf(req, -EIO, NULL, "cannot poll the archive pipe: %s", uv_strerror(r));
                return;
        }
        j->poll_init = true;
        j->poll.data = j;
        if (manager_files_run(ctx->manager, http_request_param(req, 0), false, NULL, tar_fn, j, tar_done, j, &err) < 0) {
                safe_close(j->wfd);
                j->worker_done = true;
                j->req = NULL;
                tar_maybe_free(j);
                http_reply_error(req, &err);
                return;
        }
        j->stream = http_reply_stream(req, 200, "application/gzip");
        if (!j->stream) {
                j->req = NULL;
                tar_finish(j);
                return;
        }
        http_request_on_close(req, tar_closed, j);
        http_stream_on_drain(j->stream, tar_on_drain, j);
        if (uv_poll_start(&j->poll, UV_READABLE, tar_on_poll) < 0)
                tar_finish(j);
}
