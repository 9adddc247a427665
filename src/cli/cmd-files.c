// SPDX-License-Identifier: Apache-2.0
/*
 * The file verbs: `sbx cp` (docker-cp style copies between this machine and a sandbox, files and
 * whole directories, "-" for standard input or output), `sbx ls SANDBOX:PATH` and `sbx cat`, over
 * the native files API (docs/files.md). File bodies are streamed between a file descriptor and
 * the server, never held in memory; a directory travels as a tar.gz staged in an unnamed
 * temporary file (tar.c), so a local read error stops a copy before anything reaches the sandbox
 * and a failed download leaves nothing behind.
 * HTTP is in client.c; the server checks paths and reports errors naming them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "output.h"
#include "tar.h"

#define PROGRESS_INTERVAL_S 0.1 /* redraw the progress line at most this often */

enum {
        OPT_PROGRESS = OPT_VERB_BASE,
};

enum progress_mode {
        PROGRESS_AUTO,   /* on a terminal, for transfers over SBX_CLI_PROGRESS_MIN */
        PROGRESS_ALWAYS, /* --progress */
        PROGRESS_NEVER,  /* -q, --quiet */
};

/* A SANDBOX:PATH operand. */
struct remote {
        const char *arg; /* as given, for messages */
        char *sandbox;   /* the id or name */
        char *path;      /* normalised, absolute */
        bool dir_hint;   /* the path as given ends with '/' (or is empty): it names a directory */
        bool contents;   /* it ends with "/." (or is "."): a directory's content, not the directory */
};

static void remote_release(struct remote *r)
{
        free(r->sandbox);
        free(r->path);
        *r = (struct remote){};
}

/* Keep the error of a sub-request (e) in err if err has none yet. Returns e->code. */
static int err_keep(struct cli_err *err, const struct cli_err *e)
{
        if (err && err->code == 0)
                *err = *e;
        return e->code;
}

static int oom(struct cli_err *err)
{
        return cli_err_set(err, -ENOMEM, "out of memory");
}

static int stdout_error(struct cli_err *err)
{
        return cli_err_set(err, -EIO, "cannot write to standard output");
}

/* ---------- paths ---------- */

/*
 * The lexical normal form the server gives paths (files_path_normalize): absolute, no empty, "."
 * or ".." components ("/../x" is "/x"). Returns 0 and a malloc'd *ret, -ENAMETOOLONG past
 * SBX_CLI_MAX_FILE_PATH, or -ENOMEM.
 */
static int path_normalize(const char *in, char **ret)
{
        _cleanup_free_ char *buf = malloc(strlen(in) + 2);
        size_t n = 0;
        const char *p = in;

        if (!buf)
                return -ENOMEM;
        buf[n++] = '/';
        while (*p) {
                const char *e;
                size_t len;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                e = strchrnul(p, '/');
                len = (size_t)(e - p);
                if (len == 2 && p[0] == '.' && p[1] == '.') {
                        while (n > 1 && buf[n - 1] != '/')
                                n--;
                        if (n > 1)
                                n--;
                } else if (len != 1 || p[0] != '.') {
                        if (n > 1)
                                buf[n++] = '/';
                        memcpy(buf + n, p, len);
                        n += len;
                }
                p = e;
        }
        buf[n] = '\0';
        if (n > SBX_CLI_MAX_FILE_PATH)
                return -ENAMETOOLONG;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Whether p, less its trailing slashes, ends with the component "." (docker cp's "SRC/."). */
static bool path_is_contents(const char *p)
{
        size_t n = strlen(p);

        while (n > 1 && p[n - 1] == '/')
                n--;
        return n > 0 && p[n - 1] == '.' && (n == 1 || p[n - 2] == '/');
}

/* The last component of p (trailing slashes ignored) as a malloc'd string: "" for "/" or "". */
static char *path_basename(const char *p)
{
        size_t n = strlen(p), start;

        while (n > 0 && p[n - 1] == '/')
                n--;
        start = n;
        while (start > 0 && p[start - 1] != '/')
                start--;
        return strndup(p + start, n - start);
}

/* "dir/name" without doubling a '/'; malloc'd, NULL on OOM. */
static char *path_join(const char *dir, const char *name)
{
        size_t n = strlen(dir);
        char *s;

        if (asprintf(&s, "%s%s%s", dir, n > 0 && dir[n - 1] == '/' ? "" : "/", name) < 0)
                return NULL;
        return s;
}

/*
 * Parse "SANDBOX:PATH". A colon makes an operand remote only when something precedes it and no
 * '/' does, so "./a:b" and "/x:y" are local paths. Returns 1 with *ret filled (release with
 * remote_release()), 0 for a local path, or a negative code with err filled.
 */
static int remote_parse(const char *arg, struct remote *ret, struct cli_err *err)
{
        const char *colon = strchr(arg, ':');
        struct remote r = { .arg = arg };
        int k;

        if (!colon || colon == arg || memchr(arg, '/', (size_t)(colon - arg)))
                return 0;
        r.sandbox = strndup(arg, (size_t)(colon - arg));
        if (!r.sandbox)
                return cli_err_set(err, -ENOMEM, "out of memory");
        k = path_normalize(colon + 1, &r.path);
        if (k < 0) {
                remote_release(&r);
                return k == -ENOMEM ? cli_err_set(err, k, "out of memory")
                                    : cli_err_set(err, -CLI_E_USAGE, "path in '%.64s...' is longer than %d bytes", arg,
                                                  SBX_CLI_MAX_FILE_PATH);
        }
        r.dir_hint = colon[1] == '\0' || colon[strlen(colon) - 1] == '/';
        r.contents = path_is_contents(colon + 1);
        *ret = r;
        return 1;
}

/*
 * Turn r->sandbox into an id. Ids start with "sbx_" and names cannot hold a '_', so anything else
 * is a name, looked up in the sandbox list (the API addresses sandboxes by id). Returns 0 or a
 * negative code with err filled.
 */
static int remote_resolve(struct client *client, struct remote *r, struct cli_err *err)
{
        _cleanup_free_ char *cursor = NULL;
        char limit[16];

        if (strncmp(r->sandbox, "sbx_", 4) == 0)
                return 0;
        snprintf(limit, sizeof limit, "%d", SBX_CLI_LIST_PAGE);
        for (unsigned pages = 0; pages < SBX_CLI_MAX_PAGES; pages++) {
                _cleanup_free_ char *q = NULL, *url = NULL;
                _cleanup_json_ json_t *page = NULL;
                const json_t *list, *next, *sb;
                size_t i;
                int k;

                if (client_query_add(&q, "limit", limit) < 0 ||
                    (cursor && client_query_add(&q, "cursor", cursor) < 0) ||
                    asprintf(&url, "/v1/sandboxes%s", q) < 0) {
                        url = NULL;
                        return oom(err);
                }
                k = client_request(client, "GET", url, NULL, &page, err);
                if (k < 0)
                        return k;
                list = json_object_get(page, "sandboxes");
                next = json_object_get(page, "nextCursor");
                if (!json_is_array(list))
                        return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply is not a sandbox list");
                json_array_foreach(list, i, sb) {
                        const char *name = json_string_value(json_object_get(sb, "name"));
                        const char *id = json_string_value(json_object_get(sb, "id"));
                        const char *state = json_string_value(json_object_get(sb, "state"));

                        if (name && id && strcmp(name, r->sandbox) == 0 && (!state || strcmp(state, "deleted") != 0)) {
                                char *dup = strdup(id);

                                if (!dup)
                                        return oom(err);
                                free(r->sandbox);
                                r->sandbox = dup;
                                return 0;
                        }
                }
                if (!json_is_string(next) || json_array_size(list) == 0)
                        break;
                free(cursor);
                cursor = strdup(json_string_value(next));
                if (!cursor)
                        return oom(err);
        }
        return cli_err_set(err, -CLI_E_API, "no sandbox named '%s' (sandbox_not_found)", r->sandbox);
}

/* "/v1/sandboxes/<sandbox>/<what><query>", the sandbox percent-encoded. NULL on OOM. */
static char *sandbox_url(const char *sandbox, const char *what, const char *query)
{
        _cleanup_free_ char *e = client_escape(sandbox);
        char *url;

        if (!e || asprintf(&url, "/v1/sandboxes/%s/%s%s", e, what, query ? query : "") < 0)
                return NULL;
        return url;
}

/* "/v1/sandboxes/<sandbox>/files/<path><query>", each component of the normalised path
 * percent-encoded and the slashes kept. NULL on OOM. */
static char *files_url(const char *sandbox, const char *path, const char *query)
{
        _cleanup_free_ char *segs = strdup(""), *url = NULL;

        if (!segs)
                return NULL;
        for (const char *p = path; *p;) {
                _cleanup_free_ char *seg = NULL, *e = NULL;
                const char *end;
                char *joined;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                end = strchrnul(p, '/');
                seg = strndup(p, (size_t)(end - p));
                e = seg ? client_escape(seg) : NULL;
                if (!e || asprintf(&joined, "%s%s%s", segs, *segs ? "/" : "", e) < 0)
                        return NULL;
                free(segs);
                segs = joined;
                p = end;
        }
        if (asprintf(&url, "files/%s", segs) < 0)
                return NULL;
        return sandbox_url(sandbox, url, query);
}

/* "/v1/sandboxes/<sandbox>/<what>?path=PATH" (what: "archive", "fs?op=stat" has its own). */
static char *path_query_url(const char *sandbox, const char *what, const char *op, const char *path)
{
        _cleanup_free_ char *q = NULL;

        if ((op && client_query_add(&q, "op", op) < 0) || client_query_add(&q, "path", path) < 0)
                return NULL;
        return sandbox_url(sandbox, what, q);
}

/*
 * Stat path in the sandbox (GET /fs?op=stat). With follow, a symlink is followed (its target
 * resolved lexically, as the server resolves paths) up to SBX_CLI_MAX_SYMLINKS times. Returns 1
 * with the entry in *ret (owned by the caller), 0 when nothing is there and missing_ok (a
 * dangling symlink included), else a negative code with err filled (the server's message names
 * the path).
 */
static int remote_stat(struct client *client, const struct remote *r, const char *path, bool follow, bool missing_ok,
                       json_t **ret, struct cli_err *err)
{
        _cleanup_free_ char *cur = strdup(path);

        if (!cur)
                return oom(err);
        for (int hops = 0;; hops++) {
                _cleanup_free_ char *url = path_query_url(r->sandbox, "fs", "stat", cur), *next = NULL, *dir = NULL;
                _cleanup_json_ json_t *entry = NULL;
                struct cli_err e = {};
                const char *type, *target;
                int k;

                if (!url)
                        return oom(err);
                k = client_request(client, "GET", url, NULL, &entry, &e);
                if (k == -CLI_E_API && missing_ok && strcmp(e.api_code, "file_not_found") == 0)
                        return 0;
                if (k < 0)
                        return err_keep(err, &e);
                type = json_string_value(json_object_get(entry, "type"));
                if (!type)
                        return cli_err_set(err, -CLI_E_PROTOCOL, "the server's stat reply for '%s' has no type", cur);
                if (!follow || strcmp(type, "symlink") != 0) {
                        *ret = TAKE_PTR(entry);
                        return 1;
                }
                if (hops >= SBX_CLI_MAX_SYMLINKS)
                        return cli_err_set(err, -ELOOP, "too many levels of symbolic links in '%s'", r->arg);
                target = json_string_value(json_object_get(entry, "symlinkTarget"));
                if (!target || !*target)
                        return cli_err_set(err, -CLI_E_PROTOCOL,
                                           "the server's stat reply for '%s' has no symlinkTarget", cur);
                dir = strdup(cur);
                if (!dir)
                        return oom(err);
                *strrchr(dir, '/') = '\0'; /* cur is normalised: it has a '/' */
                next = target[0] == '/' ? strdup(target) : path_join(dir, target);
                if (!next)
                        return oom(err);
                free(cur);
                cur = NULL;
                k = path_normalize(next, &cur);
                if (k < 0)
                        return k == -ENOMEM
                                       ? oom(err)
                                       : cli_err_set(err, k, "a symlink in '%s' points to a too long path", r->arg);
        }
}

static const char *entry_type(const json_t *entry)
{
        return json_string_value(json_object_get(entry, "type")) ?: "?";
}

/* ---------- progress ---------- */

struct progress {
        enum progress_mode mode;
        bool tty;       /* standard error is a terminal */
        bool drawn;     /* a progress line is on stderr and not yet ended */
        uint64_t now;   /* bytes moved */
        uint64_t total; /* 0: unknown */
        struct timespec start, last;
};

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
        return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

/* "512 B", "12.3 KiB", "100.0 MiB", "1.5 GiB". */
static void human_bytes(double n, char *buf, size_t size)
{
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
        size_t u = 0;

        if (n < 1024) {
                snprintf(buf, size, "%.0f B", n);
                return;
        }
        n /= 1024;
        while (n >= 1024 && u + 1 < ELEMENTSOF(units)) {
                n /= 1024;
                u++;
        }
        snprintf(buf, size, "%.1f %s", n, units[u]);
}

static void progress_draw(struct progress *p, const struct timespec *t)
{
        double secs = seconds_between(&p->start, t);
        char now[32], total[32], rate[32];

        human_bytes((double)p->now, now, sizeof now);
        human_bytes(secs > 0.001 ? (double)p->now / secs : 0, rate, sizeof rate);
        if (p->total > 0) {
                human_bytes((double)p->total, total, sizeof total);
                fprintf(stderr, "\r  %s / %s  %3d%%  %s/s%s", now, total,
                        (int)(p->now >= p->total ? 100 : p->now * 100 / p->total), rate, p->tty ? "\033[K" : "");
        } else {
                fprintf(stderr, "\r  %s  %s/s%s", now, rate, p->tty ? "\033[K" : "");
        }
        (void)fflush(stderr);
        p->drawn = true;
        p->last = *t;
}

static void progress_update(uint64_t now, uint64_t total, void *userdata)
{
        struct progress *p = userdata;
        struct timespec t;

        p->now = now;
        if (total > 0)
                p->total = total;
        if (p->mode == PROGRESS_NEVER || (p->mode == PROGRESS_AUTO && !p->tty))
                return;
        if (p->mode == PROGRESS_AUTO && (p->total > 0 ? p->total : p->now) <= SBX_CLI_PROGRESS_MIN)
                return;
        (void)clock_gettime(CLOCK_MONOTONIC, &t);
        if (p->drawn && seconds_between(&p->last, &t) < PROGRESS_INTERVAL_S)
                return;
        progress_draw(p, &t);
}

/* Start reporting client's next transfers to p. */
static void progress_start(struct progress *p, struct client *client)
{
        p->drawn = false;
        p->now = p->total = 0;
        (void)clock_gettime(CLOCK_MONOTONIC, &p->start);
        client_set_progress(client, progress_update, p);
}

/* Stop reporting. On success the line shows the final count (with --progress always, even if
 * the transfer was too quick for a first one); a drawn line is ended with a newline. */
static void progress_end(struct progress *p, struct client *client, bool ok, uint64_t bytes)
{
        struct timespec t;

        client_set_progress(client, NULL, NULL);
        if (ok) {
                p->now = bytes;
                if (p->drawn || p->mode == PROGRESS_ALWAYS) {
                        (void)clock_gettime(CLOCK_MONOTONIC, &t);
                        progress_draw(p, &t);
                }
        }
        if (p->drawn)
                fputc('\n', stderr);
        p->drawn = false;
}

static int print_tree_json(const char *path, const struct tree_stats *st, struct cli_err *err)
{
        _cleanup_json_ json_t *o =
                json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "path", path, "files", (json_int_t)st->files, "dirs",
                          (json_int_t)st->dirs, "symlinks", (json_int_t)st->symlinks, "bytes", (json_int_t)st->bytes,
                          "skipped", (json_int_t)st->skipped);

        if (!o)
                return oom(err);
        return output_json(o) < 0 ? stdout_error(err) : 0;
}

/* ---------- cp: to the sandbox ---------- */

struct cp_opts {
        struct progress progress;
        bool quiet;
        bool json;
};

/* PUT a file (in_fd, size; < 0: chunked) to the sandbox path target; mode < 0: the server's default. */
static int upload_file(struct client *client, const struct remote *dst, const char *target, int in_fd, int64_t size,
                       int mode, const char *in_name, struct cp_opts *o, struct cli_err *err)
{
        _cleanup_free_ char *query = NULL, *url = NULL;
        _cleanup_json_ json_t *reply = NULL;
        char m[16];
        int r;

        if (client_query_add(&query, "parents", "true") < 0)
                return oom(err);
        if (mode >= 0) {
                snprintf(m, sizeof m, "0%o", (unsigned)mode);
                if (client_query_add(&query, "mode", m) < 0)
                        return oom(err);
        }
        url = files_url(dst->sandbox, target, query);
        if (!url)
                return oom(err);
        progress_start(&o->progress, client);
        r = client_upload(client, "PUT", url, in_fd, size, "application/octet-stream", in_name, &reply, err);
        progress_end(&o->progress, client, r >= 0, size >= 0 ? (uint64_t)size : o->progress.now);
        if (r < 0)
                return r;
        if (o->json && reply)
                return output_json(reply) < 0 ? stdout_error(err) : 0;
        return 0;
}

/*
 * The sandbox path the copy of a local file or directory (dir_src) called name lands at: inside
 * dst if that is a directory (name NULL: dst itself, for a directory's content), else dst, which
 * for a directory must not be anything else. Returns 0 with *ret malloc'd.
 */
static int upload_target(struct client *client, const struct remote *dst, const char *name, bool dir_src,
                         struct cli_err *err, char **ret)
{
        _cleanup_json_ json_t *entry = NULL;
        bool into = false;
        int r;

        if ((dst->dir_hint || dst->contents) && !dir_src) { /* "SB:DIR/", "SB:DIR/.": a directory */
                into = true;
        } else {
                r = remote_stat(client, dst, dst->path, true, true, &entry, err);
                if (r < 0)
                        return r;
                if (r > 0 && strcmp(entry_type(entry), "dir") == 0)
                        into = true;
                else if (r > 0 && dir_src)
                        return cli_err_set(err, -ENOTDIR, "cannot copy a directory to '%s': it is a %s", dst->arg,
                                           entry_type(entry));
        }
        if (!into || !name) {
                *ret = strdup(dst->path);
        } else {
                _cleanup_free_ char *joined = path_join(dst->path, name);

                if (!joined)
                        return oom(err);
                r = path_normalize(joined, ret);
                if (r == -ENAMETOOLONG)
                        return cli_err_set(err, r, "'%s/%s' is longer than %d bytes", dst->arg, name,
                                           SBX_CLI_MAX_FILE_PATH);
                if (r < 0)
                        return oom(err);
                return 0;
        }
        return *ret ? 0 : oom(err);
}

/* The name a local directory's copy gets: its last component, or NULL to copy its content
 * ("dir/.", "/"). Resolves "..", which names nothing by itself. */
static int local_dir_name(const char *src, char **ret, struct cli_err *err)
{
        _cleanup_free_ char *name = NULL, *real = NULL;

        if (path_is_contents(src)) {
                *ret = NULL;
                return 0;
        }
        name = path_basename(src);
        if (!name)
                return oom(err);
        if (*name && strcmp(name, "..") != 0) {
                *ret = TAKE_PTR(name);
                return 0;
        }
        real = realpath(src, NULL);
        if (!real)
                return cli_err_set(err, -errno, "cannot resolve '%s': %s", src, strerror(errno));
        free(name);
        name = path_basename(real);
        if (!name)
                return oom(err);
        *ret = *name ? TAKE_PTR(name) : NULL;
        return 0;
}

static int cp_upload_dir(struct client *client, const char *src, const struct remote *dst, struct cp_opts *o,
                         struct cli_err *err)
{
        _cleanup_free_ char *name = NULL, *target = NULL, *url = NULL;
        _cleanup_json_ json_t *reply = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct tree_stats st = {};
        struct stat s;
        int r;

        r = local_dir_name(src, &name, err);
        if (r < 0)
                return r;
        r = upload_target(client, dst, name, true, err, &target);
        if (r < 0)
                return r;
        r = cli_staging_open(&fd, err);
        if (r < 0)
                return r;
        r = cli_pack_dir(src, fd, o->quiet, &st, err);
        if (r < 0)
                return r;
        if (fstat(fd, &s) < 0 || lseek(fd, 0, SEEK_SET) < 0)
                return cli_err_set(err, -errno, "cannot read the temporary archive: %s", strerror(errno));
        url = path_query_url(dst->sandbox, "archive", NULL, target);
        if (!url)
                return oom(err);
        progress_start(&o->progress, client);
        r = client_upload(client, "PUT", url, fd, (int64_t)s.st_size, "application/gzip", "the temporary archive",
                          &reply, err);
        progress_end(&o->progress, client, r >= 0, (uint64_t)s.st_size);
        if (r < 0)
                return r;
        if (o->json && reply)
                return output_json(reply) < 0 ? stdout_error(err) : 0;
        return 0;
}

static int cp_upload(struct client *client, const char *src, const struct remote *dst, struct cp_opts *o,
                     struct cli_err *err)
{
        _cleanup_free_ char *name = NULL, *target = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int64_t size = -1;
        off_t pos;
        int r;

        if (strcmp(src, "-") == 0) {
                if (dst->dir_hint || dst->contents)
                        return cli_err_set(err, -CLI_E_USAGE,
                                           "'%s' names a directory; standard input needs a file name", dst->arg);
                r = upload_target(client, dst, NULL, false, err, &target);
                if (r < 0)
                        return r;
                if (fstat(STDIN_FILENO, &st) < 0)
                        return cli_err_set(err, -errno, "cannot stat standard input: %s", strerror(errno));
                pos = S_ISREG(st.st_mode) ? lseek(STDIN_FILENO, 0, SEEK_CUR) : -1;
                if (pos >= 0 && pos <= st.st_size)
                        size = (int64_t)(st.st_size - pos);
                return upload_file(client, dst, target, STDIN_FILENO, size, -1, "standard input", o, err);
        }

        fd = open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return cli_err_set(err, -errno, "cannot open '%s': %s", src, strerror(errno));
        if (fstat(fd, &st) < 0)
                return cli_err_set(err, -errno, "cannot stat '%s': %s", src, strerror(errno));
        if (S_ISDIR(st.st_mode))
                return cp_upload_dir(client, src, dst, o, err);
        name = path_basename(src);
        if (!name)
                return oom(err);
        r = upload_target(client, dst, name, false, err, &target);
        if (r < 0)
                return r;
        /* a pipe or a character device (`sbx cp <(cmd) sb:/x`) goes chunked, up to its end */
        return upload_file(client, dst, target, fd, S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1,
                           (int)(st.st_mode & 07777), src, o, err);
}

/* ---------- cp: from the sandbox ---------- */

/* GET the sandbox file path into a temporary file next to target, renamed into place once
 * complete, with the mode of the sandbox's file. */
static int download_file(struct client *client, const struct remote *src, const char *path, const char *target,
                         int mode, uint64_t size, struct cp_opts *o, struct cli_err *err)
{
        _cleanup_free_ char *url = files_url(src->sandbox, path, NULL), *dir = NULL, *base = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint64_t bytes = 0;
        struct stat st;
        char *slash;
        int r;

        if (!url)
                return oom(err);
        if (lstat(target, &st) == 0 && S_ISDIR(st.st_mode))
                return cli_err_set(err, -EISDIR, "cannot overwrite directory '%s' with a file", target);
        dir = strdup(target);
        base = path_basename(target);
        if (!dir || !base)
                return oom(err);
        slash = strrchr(dir, '/');
        if (!slash) {
                free(dir);
                dir = strdup(".");
                if (!dir)
                        return oom(err);
        } else if (slash == dir)
                dir[1] = '\0';
        else
                *slash = '\0';
        if (asprintf(&tmp, "%s/.%s.sbx-XXXXXX", dir, base) < 0) {
                tmp = NULL;
                return oom(err);
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return cli_err_set(err, -errno, "cannot create a file in '%s': %s", dir, strerror(errno));

        progress_start(&o->progress, client);
        o->progress.total = size;
        r = client_download(client, url, fd, target, &bytes, err);
        progress_end(&o->progress, client, r >= 0, bytes);
        if (r >= 0 && fchmod(fd, (mode_t)(mode & 0777)) < 0)
                r = cli_err_set(err, -errno, "cannot set the mode of '%s': %s", target, strerror(errno));
        if (r >= 0) {
                r = close(TAKE_FD(fd));
                if (r < 0)
                        r = cli_err_set(err, -errno, "cannot write '%s': %s", target, strerror(errno));
        }
        if (r >= 0 && rename(tmp, target) < 0)
                r = cli_err_set(err, -errno, "cannot rename '%s' to '%s': %s", tmp, target, strerror(errno));
        if (r < 0) {
                (void)unlink(tmp);
                return r;
        }
        if (o->json) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:I}", "path", target, "bytes", (json_int_t)bytes);

                if (!j)
                        return oom(err);
                return output_json(j) < 0 ? stdout_error(err) : 0;
        }
        return 0;
}

/* GET the sandbox directory path as a tar.gz into a staging file, then extract it into target
 * (created if missing, merged into if present). */
static int download_dir(struct client *client, const struct remote *src, const char *path, const char *target,
                        struct cp_opts *o, struct cli_err *err)
{
        _cleanup_free_ char *url = path_query_url(src->sandbox, "archive", NULL, path);
        _cleanup_close_ int fd = -EBADF;
        struct tree_stats st = {};
        uint64_t bytes = 0;
        struct stat s;
        int r;

        if (!url)
                return oom(err);
        r = cli_staging_open(&fd, err);
        if (r < 0)
                return r;
        progress_start(&o->progress, client);
        r = client_download(client, url, fd, "a temporary file", &bytes, err);
        progress_end(&o->progress, client, r >= 0, bytes);
        if (r < 0)
                return r;
        if (lseek(fd, 0, SEEK_SET) < 0)
                return cli_err_set(err, -errno, "cannot read the temporary archive: %s", strerror(errno));
        if (mkdir(target, 0755) < 0 && (errno != EEXIST || stat(target, &s) < 0 || !S_ISDIR(s.st_mode)))
                return cli_err_set(err, errno == EEXIST ? -ENOTDIR : -errno, "cannot create directory '%s': %s", target,
                                   errno == EEXIST ? strerror(ENOTDIR) : strerror(errno));
        r = cli_unpack(fd, target, &st, err);
        if (r < 0)
                return r;
        return o->json ? print_tree_json(target, &st, err) : 0;
}

static int cp_download(struct client *client, const struct remote *src, const char *dst, struct cp_opts *o,
                       struct cli_err *err)
{
        _cleanup_json_ json_t *entry = NULL;
        _cleanup_free_ char *name = NULL, *target = NULL;
        const char *type;
        bool to_stdout = strcmp(dst, "-") == 0, dst_dir = false, is_dir;
        struct stat st;
        int r;

        r = remote_stat(client, src, src->path, true, false, &entry, err);
        if (r < 0)
                return r;
        type = entry_type(entry);
        is_dir = strcmp(type, "dir") == 0;
        if (!is_dir && strcmp(type, "file") != 0)
                return cli_err_set(err, -EINVAL, "'%s' is a %s: only files and directories can be copied", src->arg,
                                   type);
        if (!is_dir && (src->dir_hint || src->contents))
                return cli_err_set(err, -ENOTDIR, "'%s' is not a directory", src->arg);

        if (to_stdout) {
                uint64_t bytes = 0;
                _cleanup_free_ char *url = files_url(src->sandbox, src->path, NULL);

                if (is_dir)
                        return cli_err_set(err, -EISDIR, "'%s' is a directory: it cannot be written to standard output",
                                           src->arg);
                if (!url)
                        return oom(err);
                (void)fflush(stdout); /* the body goes straight to fd 1 */
                progress_start(&o->progress, client);
                o->progress.total = (uint64_t)json_integer_value(json_object_get(entry, "size"));
                r = client_download(client, url, STDOUT_FILENO, "standard output", &bytes, err);
                progress_end(&o->progress, client, r >= 0, bytes);
                return r < 0 ? r : 0;
        }

        if (stat(dst, &st) == 0)
                dst_dir = S_ISDIR(st.st_mode);
        else if (errno != ENOENT || dst[strlen(dst) - 1] == '/')
                return cli_err_set(err, -errno, "cannot copy to '%s': %s", dst, strerror(errno));
        if (!dst_dir && is_dir && stat(dst, &st) == 0)
                return cli_err_set(err, -ENOTDIR, "cannot copy directory '%s' to '%s': not a directory", src->arg, dst);
        name = path_basename(src->path);
        if (!name)
                return oom(err);
        /* into an existing directory, as its entry of the same name ("SB:DIR/." and "/": the content) */
        if (dst_dir && *name && !(is_dir && src->contents))
                target = path_join(dst, name);
        else
                target = strdup(dst);
        if (!target)
                return oom(err);
        if (is_dir)
                return download_dir(client, src, src->path, target, o, err);
        return download_file(client, src, src->path, target, (int)json_integer_value(json_object_get(entry, "mode")),
                             (uint64_t)json_integer_value(json_object_get(entry, "size")), o, err);
}

/* ---------- verbs ---------- */

int cmd_cp(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "progress", no_argument, NULL, OPT_PROGRESS },
                { "quiet", no_argument, NULL, 'q' },
                {},
        };
        struct remote rsrc = {}, rdst = {};
        struct cp_opts o = { .progress.tty = isatty(STDERR_FILENO) };
        struct client *client;
        int c, r, src_remote, dst_remote;

        while ((c = getopt_long(argc, argv, ":hq", options, NULL)) != -1) {
                switch (c) {
                case OPT_PROGRESS:
                        o.progress.mode = PROGRESS_ALWAYS;
                        break;
                case 'q':
                        o.quiet = true;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
        if (o.quiet)
                o.progress.mode = PROGRESS_NEVER;
        o.json = cli->json;
        if (argc - optind != 2)
                return cli_err_set(err, -CLI_E_USAGE, "%s (see 'sbx cp --help')",
                                   argc - optind < 2 ? "'sbx cp' needs SRC and DST" : "'sbx cp' takes two arguments");
        if (!*argv[optind] || !*argv[optind + 1])
                return cli_err_set(err, -CLI_E_USAGE, "empty path (see 'sbx cp --help')");

        src_remote = remote_parse(argv[optind], &rsrc, err);
        if (src_remote < 0)
                return src_remote;
        dst_remote = remote_parse(argv[optind + 1], &rdst, err);
        if (dst_remote < 0) {
                remote_release(&rsrc);
                return dst_remote;
        }
        if (src_remote == dst_remote) {
                r = cli_err_set(err, -CLI_E_USAGE,
                                "exactly one of SRC and DST must be SANDBOX:PATH (a local path with a ':' can be "
                                "written ./a:b) (see 'sbx cp --help')");
        } else {
                r = cli_client(cli, &client, err);
                if (r >= 0)
                        r = remote_resolve(client, dst_remote ? &rdst : &rsrc, err);
                if (r >= 0 && dst_remote)
                        r = cp_upload(client, argv[optind], &rdst, &o, err);
                else if (r >= 0)
                        r = cp_download(client, &rsrc, argv[optind + 1], &o, err);
        }
        remote_release(&rsrc);
        remote_release(&rdst);
        return r < 0 ? r : 0;
}

int cmd_cat(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        struct client *client;
        int r, failed = 0;

        r = cli_parse_plain(cli, argc, argv, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "'sbx cat' needs SANDBOX:PATH (see 'sbx cat --help')");
        for (int i = optind; i < argc; i++) {
                struct remote rem = {};

                r = remote_parse(argv[i], &rem, err);
                if (r == 0)
                        r = cli_err_set(err, -CLI_E_USAGE, "expected SANDBOX:PATH, got '%s' (see 'sbx cat --help')",
                                        argv[i]);
                remote_release(&rem);
                if (r < 0)
                        return r;
        }
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        (void)fflush(stdout); /* bodies go straight to fd 1 */
        for (int i = optind; i < argc; i++) {
                _cleanup_free_ char *url = NULL;
                struct remote rem = {};
                struct cli_err one = {};

                if (remote_parse(argv[i], &rem, err) < 0)
                        return err->code;
                r = remote_resolve(client, &rem, &one);
                url = r >= 0 ? files_url(rem.sandbox, rem.path, NULL) : NULL;
                remote_release(&rem);
                if (r >= 0 && !url)
                        return oom(err);
                if (r >= 0)
                        r = client_download(client, url, STDOUT_FILENO, "standard output", NULL, &one);
                if (r == -CLI_E_CONNECT || (r < 0 && r != -CLI_E_API)) /* every operand would fail alike */
                        return err_keep(err, &one);
                if (r < 0) {
                        output_errorf("%s", one.msg);
                        failed = 1;
                }
        }
        return failed ? CLI_EXIT_FAILURE : 0;
}

/* ---------- ls SANDBOX:PATH ---------- */

#define LS_ALIGN_MAX 10000 /* -l: entries held back so their columns line up */

struct ls_opts {
        bool long_format; /* -l */
        bool recursive;   /* -R */
        bool json;
        bool first;         /* --json: no entry printed yet */
        const char *prefix; /* the listed directory's path with a trailing '/' (-R names are relative to it) */
        json_t *pending;    /* -l: entries not printed yet (up to LS_ALIGN_MAX) */
};

/* "drwxr-xr-x" from an entry's type and mode. */
static void mode_string(const char *type, unsigned mode, char buf[static 11])
{
        static const struct {
                const char *type;
                char c;
        } types[] = {
                { "file", '-' },   { "dir", 'd' },     { "symlink", 'l' },  { "fifo", 'p' },
                { "socket", 's' }, { "chardev", 'c' }, { "blockdev", 'b' },
        };
        const char *rwx = "rwxrwxrwx";

        buf[0] = '?';
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (strcmp(type, types[i].type) == 0)
                        buf[0] = types[i].c;
        for (int i = 0; i < 9; i++)
                buf[1 + i] = mode & (0400u >> i) ? rwx[i] : '-';
        if (mode & 04000)
                buf[3] = buf[3] == 'x' ? 's' : 'S';
        if (mode & 02000)
                buf[6] = buf[6] == 'x' ? 's' : 'S';
        if (mode & 01000)
                buf[9] = buf[9] == 'x' ? 't' : 'T';
        buf[10] = '\0';
}

/*
 * An RFC 3339 time ("2024-05-01T12:34:56.789Z", "...+02:00") as "2024-05-01 14:34" in local
 * time; the text as given if it does not parse.
 */
static void format_mtime(const char *s, char *buf, size_t size)
{
        struct tm tm = {};
        const char *p;
        int off = 0, oh, om;
        time_t t;

        snprintf(buf, size, "%s", s ? s : "-");
        if (!s)
                return;
        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return;
        if (*p == '.')
                for (p++; *p >= '0' && *p <= '9'; p++)
                        ;
        if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2)
                off = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
        else if (*p != 'Z')
                return;
        t = timegm(&tm);
        if (t == (time_t)-1)
                return;
        t -= off;
        if (!localtime_r(&t, &tm) || strftime(buf, size, "%Y-%m-%d %H:%M", &tm) == 0)
                snprintf(buf, size, "%s", s);
}

/* The name ls prints for e: its name, or with -R its path relative to the listed directory. */
static const char *ls_name(const json_t *e, const struct ls_opts *o)
{
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *name = json_string_value(json_object_get(e, "name"));
        size_t n = strlen(o->prefix);

        if (o->recursive && path && strncmp(path, o->prefix, n) == 0 && path[n])
                return path + n;
        return name ?: path ?: "?";
}

/* Print entries: names, -l lines (columns aligned among these entries) or JSON array items. */
static int ls_print(const json_t *entries, struct ls_opts *o, struct cli_err *err)
{
        const json_t *e;
        int width = 1;
        size_t i;

        if (o->json) {
                json_array_foreach(entries, i, e) {
                        if (fputs(o->first ? "[" : ",", stdout) == EOF ||
                            json_dumpf(e, stdout, JSON_COMPACT | JSON_ENCODE_ANY) < 0)
                                return stdout_error(err);
                        o->first = false;
                }
                return 0;
        }
        if (o->long_format)
                json_array_foreach(entries, i, e) {
                        char num[32];
                        int w = snprintf(num, sizeof num, "%lld",
                                         (long long)json_integer_value(json_object_get(e, "size")));

                        if (w > width)
                                width = w;
                }
        json_array_foreach(entries, i, e) {
                const char *type = entry_type(e), *name = ls_name(e, o);
                _cleanup_free_ char *line = NULL;
                int k;

                if (o->long_format) {
                        const char *target = json_string_value(json_object_get(e, "symlinkTarget"));
                        char mode[11], mtime[64];

                        mode_string(type, (unsigned)json_integer_value(json_object_get(e, "mode")), mode);
                        format_mtime(json_string_value(json_object_get(e, "mtime")), mtime, sizeof mtime);
                        k = asprintf(&line, "%s %*lld %s %s%s%s", mode, width,
                                     (long long)json_integer_value(json_object_get(e, "size")), mtime, name,
                                     target ? " -> " : "", target ?: "");
                } else {
                        k = asprintf(&line, "%s%s", name, strcmp(type, "dir") == 0 ? "/" : "");
                }
                if (k < 0) {
                        line = NULL;
                        return oom(err);
                }
                output_line(line);
        }
        return 0;
}

/* `ls` of something that is not a directory: that one entry, as ls(1) does. */
static int ls_single(struct client *client, const struct remote *r, struct ls_opts *o, struct cli_err *err)
{
        _cleanup_json_ json_t *entry = NULL, *arr = json_array();
        int k;

        if (!arr)
                return oom(err);
        k = remote_stat(client, r, r->path, false, false, &entry, err);
        if (k < 0)
                return k;
        if (strcmp(entry_type(entry), "dir") == 0) /* not_a_directory was about something else */
                return 1;
        if (json_array_append(arr, entry) < 0)
                return oom(err);
        o->recursive = false;
        return ls_print(arr, o, err);
}

/* Print a page, except that -l holds entries back (up to LS_ALIGN_MAX) to align their columns;
 * last: the listing ended, print what is held. */
static int ls_page(const json_t *entries, bool last, struct ls_opts *o, struct cli_err *err)
{
        int r;

        if (!o->long_format)
                return ls_print(entries, o, err);
        if (entries && json_array_extend(o->pending, (json_t *)entries) < 0)
                return oom(err);
        if (!last && json_array_size(o->pending) < LS_ALIGN_MAX)
                return 0;
        r = ls_print(o->pending, o, err);
        json_array_clear(o->pending);
        return r;
}

static int fs_ls(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "long", no_argument, NULL, 'l' },
                { "recursive", no_argument, NULL, 'R' },
                {},
        };
        _cleanup_free_ char *cursor = NULL, *prefix = NULL;
        _cleanup_json_ json_t *pending = json_array();
        struct ls_opts o = { .first = true, .pending = pending };
        struct remote rem = {};
        struct client *client;
        char limit[16];
        int c, r;

        while ((c = getopt_long(argc, argv, ":hlR", options, NULL)) != -1) {
                switch (c) {
                case 'l':
                        o.long_format = true;
                        break;
                case 'R':
                        o.recursive = true;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
        o.json = cli->json;
        if (argc - optind != 1)
                return cli_err_set(err, -CLI_E_USAGE, "'sbx ls' lists one SANDBOX:PATH (see 'sbx ls --help')");
        r = remote_parse(argv[optind], &rem, err);
        if (r == 0)
                return cli_err_set(err, -CLI_E_USAGE, "expected SANDBOX:PATH, got '%s' (see 'sbx ls --help')",
                                   argv[optind]);
        if (r < 0)
                return r;
        prefix = path_join(rem.path, "");
        r = prefix && pending ? cli_client(cli, &client, err) : oom(err);
        if (r >= 0)
                r = remote_resolve(client, &rem, err);
        o.prefix = prefix;
        snprintf(limit, sizeof limit, "%d", SBX_CLI_FS_LIST_PAGE);

        for (unsigned pages = 0; r >= 0; pages++) {
                _cleanup_free_ char *q = NULL, *url = NULL;
                _cleanup_json_ json_t *page = NULL;
                const json_t *entries, *next;
                struct cli_err e = {};
                bool last;

                if (pages >= SBX_CLI_MAX_PAGES) {
                        r = cli_err_set(err, -CLI_E_PROTOCOL, "listing did not end after %d pages", SBX_CLI_MAX_PAGES);
                        break;
                }
                if (client_query_add(&q, "op", "list") < 0 || client_query_add(&q, "path", rem.path) < 0 ||
                    client_query_add(&q, "limit", limit) < 0 ||
                    (o.recursive && client_query_add(&q, "recursive", "true") < 0) ||
                    (cursor && client_query_add(&q, "cursor", cursor) < 0) ||
                    !(url = sandbox_url(rem.sandbox, "fs", q))) {
                        r = oom(err);
                        break;
                }
                r = client_request(client, "GET", url, NULL, &page, &e);
                if (r == -CLI_E_API && pages == 0 && strcmp(e.api_code, "not_a_directory") == 0) {
                        r = ls_single(client, &rem, &o, err);
                        if (r == 1) /* a directory after all: the server's error stands */
                                r = err_keep(err, &e);
                        break;
                }
                if (r < 0) {
                        err_keep(err, &e);
                        break;
                }
                entries = json_object_get(page, "entries");
                next = json_object_get(page, "nextCursor");
                if (!json_is_array(entries) || (next && !json_is_null(next) && !json_is_string(next))) {
                        r = cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply is not a file listing");
                        break;
                }
                last = !json_is_string(next) || json_array_size(entries) == 0;
                r = ls_page(entries, last, &o, err);
                if (r < 0 || last)
                        break;
                free(cursor);
                cursor = strdup(json_string_value(next));
                if (!cursor)
                        r = oom(err);
        }
        remote_release(&rem);
        if (r >= 0 && o.json && fputs(o.first ? "[]\n" : "]\n", stdout) == EOF)
                r = stdout_error(err);
        return r < 0 ? r : 0;
}

/* Whether `sbx ls` got an operand: the options of both forms are skipped with their values
 * (a "--url unix:/x" is no SANDBOX:PATH). Errors are left to the real parse. */
static bool ls_has_operand(int argc, char **argv)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "state", required_argument, NULL, 1 },
                { "metadata", required_argument, NULL, 1 },
                { "limit", required_argument, NULL, 1 },
                { "long", no_argument, NULL, 'l' },
                { "recursive", no_argument, NULL, 'R' },
                {},
        };
        bool found;

        while (getopt_long(argc, argv, ":hlR", options, NULL) != -1)
                ;
        found = optind < argc;
        optind = 0; /* glibc: the verb's own parse starts afresh */
        return found;
}

int cmd_ls_any(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return ls_has_operand(argc, argv) ? fs_ls(cli, argc, argv, err) : cmd_ls(cli, argc, argv, err);
}
