// SPDX-License-Identifier: Apache-2.0
/*
 * Debian layers (template.h: template_debian_layer): runs mmdebstrap as a child process on the
 * store's libuv loop into a work dir of the layer store, turns its "I: ..." stage lines into
 * progress, and commits the tree as a layer on the thread pool. One build per (suite, variant,
 * packages); its result is remembered in TEMPLATES_DIR/cache/debian-<sha256 of the key> so the
 * next request is a cache hit. No logging; never follows a symlink.
 */
#include "images/template-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

#define BUILD_READ_BUF 4096
/* After SIGTERM (store freed mid-build) the process group gets SIGKILL this much later. */
#define BUILD_KILL_GRACE_MS 5000
/* After the child exits, how long to wait for its output pipe to reach EOF (a grandchild may hold it). */
#define BUILD_EOF_GRACE_MS 2000
/* Where builders are looked up, and the PATH the child gets. */
#define BUILD_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEBIAN_PACKAGES_MAX 8192 /* the comma-separated package list */

struct build_waiter {
        struct build_waiter *next;
        template_progress_fn progress;
        template_layer_done_fn done;
        void *data;
};

/*
 * One mmdebstrap run. Owned by its libuv handles and work request: it is freed when the last of
 * them is closed/finished, which may be after the store is gone (ts == NULL: detached).
 */
struct dbuild {
        struct dbuild *next;       /* in ts->dbuilds */
        struct template_store *ts; /* NULL once detached */
        struct ls_ref *lsr;        /* a reference */
        char suite[32], variant[32];
        char packages[DEBIAN_PACKAGES_MAX];
        char label[96];            /* for progress and errors: "bookworm minbase +python3,..." */
        char cache_name[80];       /* "debian-<hex>" in TEMPLATES_DIR/cache */
        struct build_waiter *waiters; /* FIFO; each gets done exactly once */
        struct build_waiter **waiters_tail;

        uv_process_t proc;
        uv_pipe_t out; /* read end of the child's stdout+stderr */
        uv_timer_t timer;
        uv_work_t work;
        unsigned open_handles;
        bool work_pending;
        bool pipe_closing;
        bool timer_closing;

        bool exited;
        bool eof;
        bool spawned;   /* the child was started (it reports through build_exit_cb) */
        bool finishing; /* the after-exit step was started */
        int pid;
        int64_t exit_status;
        int term_signal;

        char tmp[PATH_MAX];      /* the layer store's work dir */
        char tmp_root[PATH_MAX]; /* <tmp>/root: mmdebstrap's target */

        unsigned percent;
        char stage[64];

        char line[BUILD_LINE_MAX];
        size_t line_len;
        char tail[BUILD_LOG_LINES][BUILD_LINE_MAX];
        unsigned tail_next;
        unsigned tail_count;
        char first_error[BUILD_LINE_MAX]; /* first "E: " line */
        char readbuf[BUILD_READ_BUF];

        int result; /* 0 or negative, set before the done callbacks */
        struct sbx_err result_err;
        char digest[SBX_LAYER_DIGEST_MAX];
};


static const struct build_stage {
        const char *prefix; /* after "I: " */
        unsigned percent;
        const char *stage;
} build_stages[] = {
        /* Weights from a warm-cache run here (19 s): extracting ~8 s, essential ~5 s, remaining ~4 s.
         * Downloading is short with a local mirror and long without, so it gets a wide band too. */
        { "chroot architecture", 1, "preparing" },
        { "running apt-get update", 5, "updating package lists" },
        { "downloading packages", 10, "downloading packages" },
        { "extracting archives", 35, "extracting archives" },
        { "installing essential packages", 60, "installing essential packages" },
        { "installing remaining packages", 80, "installing remaining packages" },
        { "running --customize-hook", 94, "running customize hook" },
        { "cleaning package lists", 96, "cleaning package lists and apt cache" },
        { "success", 98, "finishing" },
};

/* Map one mmdebstrap output line to a stage. Returns false for lines that are not a known stage. */
static bool build_stage_parse(const char *line, unsigned *ret_percent, const char **ret_stage)
{
        if (strncmp(line, "I: ", 3) != 0)
                return false;
        line += 3;
        for (size_t i = 0; i < ELEMENTSOF(build_stages); i++)
                if (!strncmp(line, build_stages[i].prefix, strlen(build_stages[i].prefix))) {
                        *ret_percent = build_stages[i].percent;
                        *ret_stage = build_stages[i].stage;
                        return true;
                }
        return false;
}



/* Call every waiter's progress callback. Stops if a callback freed the store (detaching b). */
static void build_notify_progress(struct dbuild *b)
{
        for (struct build_waiter *w = b->waiters, *next; w; w = next) {
                if (w->progress)
                        w->progress(b->label, b->percent, b->stage, w->data);
                if (!b->ts)
                        return;
                next = w->next;
        }
}

/* Hand every waiter its done callback and free the list. Does not touch b or the store afterwards.
 * On success every waiter gets its own hold on the layer (taken here). */
static void waiters_finish(struct build_waiter *list, struct layer_store *ls, const char *digest, int result,
                           const struct sbx_err *err)
{
        while (list) {
                struct build_waiter *w = list;
                struct sbx_err e = {};
                int r = result;

                list = w->next;
                if (r >= 0 && ls) {
                        r = layer_hold(ls, digest, &e);
                        err = &e;
                }
                w->done(r, r >= 0 ? digest : NULL, r < 0 ? err : NULL, w->data);
                free(w);
        }
}

static struct build_waiter *build_take_waiters(struct dbuild *b)
{
        struct build_waiter *list = b->waiters;

        b->waiters = NULL;
        b->waiters_tail = &b->waiters;
        return list;
}

/* Take b out of the store's list of running builds. */
static void build_unlink(struct dbuild *b)
{
        if (!b->ts)
                return;
        for (struct dbuild **p = &b->ts->dbuilds; *p; p = &(*p)->next)
                if (*p == b) {
                        *p = b->next;
                        break;
                }
        b->next = NULL;
}


/* Lines are kept printable ASCII so they can go into an API error message as they are. */
static void build_line_end(struct dbuild *b)
{
        unsigned percent;
        const char *stage;
        char *line;

        if (b->line_len == 0)
                return;
        b->line[b->line_len] = '\0';
        b->line_len = 0;
        line = b->tail[b->tail_next];
        snprintf(line, BUILD_LINE_MAX, "%s", b->line);
        b->tail_next = (b->tail_next + 1) % BUILD_LOG_LINES;
        if (b->tail_count < BUILD_LOG_LINES)
                b->tail_count++;
        if (!b->first_error[0] && !strncmp(line, "E: ", 3))
                snprintf(b->first_error, sizeof b->first_error, "%s", line);
        if (build_stage_parse(line, &percent, &stage) && percent > b->percent) {
                b->percent = percent;
                snprintf(b->stage, sizeof b->stage, "%s", stage);
                if (b->ts)
                        build_notify_progress(b);
        }
}

static void build_feed(struct dbuild *b, const char *buf, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)buf[i];

                if (c == '\n' || c == '\r') {
                        build_line_end(b);
                        continue;
                }
                if (b->line_len >= BUILD_LINE_MAX - 1)
                        continue; /* cut long lines */
                b->line[b->line_len++] = (c == '\t' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
        }
}

static const char *build_last_line(const struct dbuild *b)
{
        if (b->tail_count == 0)
                return "";
        return b->tail[(b->tail_next + BUILD_LOG_LINES - 1) % BUILD_LOG_LINES];
}

/* The kept output, oldest line first, '\n'-separated, NUL-terminated. */
static void build_log_copy(const struct dbuild *b, char *buf, size_t size)
{
        size_t off = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        for (unsigned i = 0; i < b->tail_count; i++) {
                unsigned idx = (b->tail_next + BUILD_LOG_LINES - b->tail_count + i) % BUILD_LOG_LINES;
                int n = snprintf(buf + off, size - off, "%s\n", b->tail[idx]);

                if (n < 0 || (size_t)n >= size - off)
                        return;
                off += (size_t)n;
        }
}


static void build_maybe_free(struct dbuild *b);


static void build_close_cb(uv_handle_t *h)
{
        struct dbuild *b = h->data;

        b->open_handles--;
        build_maybe_free(b);
}

static void build_close_pipe_and_timer(struct dbuild *b)
{
        if (!b->pipe_closing) {
                b->pipe_closing = true;
                uv_close((uv_handle_t *)&b->out, build_close_cb);
        }
        if (!b->timer_closing) {
                b->timer_closing = true;
                uv_close((uv_handle_t *)&b->timer, build_close_cb);
        }
}



static void build_maybe_free(struct dbuild *b)
{
        struct sbx_err err = {};

        if (b->open_handles > 0 || b->work_pending)
                return;
        if (b->waiters) { /* not expected: every path hands the waiters their result first */
                (void)sbx_err_set(&err, -ECANCELED, "build of %s was abandoned", b->label);
                waiters_finish(build_take_waiters(b), NULL, NULL, -ECANCELED, &err);
        }
        template__ls_unref(b->lsr);
        free(b);
}

/* Runs on the thread pool: commit the tree as a layer, or remove the failed tree. Touches only b's
 * own data and the layer store (kept alive by b's reference). */
static void build_work_cb(uv_work_t *req)
{
        struct dbuild *b = req->data;
        _cleanup_close_ int root_fd = -EBADF;
        struct layer_info info;
        char source[SBX_LAYER_SOURCE_MAX];
        int r;

        if (b->result < 0)
                goto remove;
        root_fd = open(b->tmp_root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0) {
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "cannot open built tree '%s': %s",
                                        b->tmp_root, strerror(errno));
                goto remove;
        }
        /* sandboxes start in /root; minbase has it, but a template without it would fail late */
        r = template__ensure_dir(root_fd, "root", 0700, NULL, &b->result_err);
        if (r < 0) {
                b->result = b->result_err.code = -SBX_E_INTERNAL;
                goto remove;
        }
        if (fchmod(root_fd, 0755) < 0) {
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "cannot chmod '%s': %s", b->tmp_root,
                                        strerror(errno));
                goto remove;
        }
        root_fd = safe_close(root_fd);
        snprintf(source, sizeof source, "mmdebstrap %s", b->label);
        r = layer_commit(b->lsr->ls, b->tmp, source, &info, &b->result_err);
        if (r < 0) {
                b->result = r;
                return; /* layer_commit removed or left the work dir for the next open */
        }
        snprintf(b->digest, sizeof b->digest, "%s", info.digest);
        return;
remove:
        root_fd = safe_close(root_fd);
        layer_discard(b->lsr->ls, b->tmp);
}

void template_cache_put(struct template_store *ts, const char *name, const char *digest)
{
        _cleanup_close_ int fd = -EBADF;
        char path[128], tmp[160];

        snprintf(path, sizeof path, "cache/%s", name);
        snprintf(tmp, sizeof tmp, "cache/%s.tmp", name);
        fd = openat(ts->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return;
        if (write_all(fd, digest, strlen(digest)) < 0 || renameat(ts->dirfd, tmp, ts->dirfd, path) < 0)
                (void)unlinkat(ts->dirfd, tmp, 0);
}

static void build_after_work_cb(uv_work_t *req, int status)
{
        struct dbuild *b = req->data;
        struct sbx_err err;

        if (status < 0 && b->result >= 0)
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "the last build step was cancelled");
        if (b->result < 0 && strncmp(b->result_err.msg, "cannot build", 12) != 0)
                (void)sbx_err_wrap(&b->result_err, "cannot build %s", b->label);
        if (b->result < 0 && !b->result_err.reason[0])
                snprintf(b->result_err.reason, sizeof b->result_err.reason, "template_build_failed");
        if (b->ts && b->result >= 0) {
                template_cache_put(b->ts, b->cache_name, b->digest);
                b->percent = 100;
                snprintf(b->stage, sizeof b->stage, "ready");
                build_notify_progress(b);
        }
        if (b->ts && b->result < 0)
                build_log_copy(b, b->ts->last_log, sizeof b->ts->last_log);
        if (b->ts) {
                struct layer_store *ls = b->ts->layers;

                /* the store forgets the build before anyone hears about it: a done callback may
                 * start a new build or free the store */
                build_unlink(b);
                b->ts = NULL;
                err = b->result_err;
                waiters_finish(build_take_waiters(b), ls, b->digest, b->result, &err);
        }
        if (b->result >= 0)
                layer_release(b->lsr->ls, b->digest); /* layer_commit's hold; each waiter has its own */
        b->work_pending = false;
        build_maybe_free(b);
}

/* The child exited and its output is drained (or the grace period ran out). */
static void build_finish(struct dbuild *b)
{
        int r;

        if (b->finishing)
                return;
        b->finishing = true;
        if (b->line_len > 0)
                build_line_end(b);
        build_close_pipe_and_timer(b);
        if (!b->ts)
                return; /* detached: the work dir goes at the next layer_store_open() */

        if (b->term_signal != 0)
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL,
                                        "cannot build %s: mmdebstrap was killed by signal %d (last line '%s')",
                                        b->label, b->term_signal, build_last_line(b));
        else if (b->exit_status != 0 && b->first_error[0] && strcmp(b->first_error, build_last_line(b)) != 0)
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL,
                                        "cannot build %s: mmdebstrap exited with status %lld: '%s' (last line '%s')",
                                        b->label, (long long)b->exit_status, b->first_error, build_last_line(b));
        else if (b->exit_status != 0)
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL,
                                        "cannot build %s: mmdebstrap exited with status %lld (last line '%s')",
                                        b->label, (long long)b->exit_status, build_last_line(b));

        b->work.data = b;
        r = uv_queue_work(b->ts->loop, &b->work, build_work_cb, build_after_work_cb);
        if (r < 0) {
                struct sbx_err err = {};

                build_unlink(b);
                b->ts = NULL;
                (void)sbx_err_set(&err, -SBX_E_INTERNAL, "cannot queue the last build step of %s: %s", b->label,
                                  uv_strerror(r));
                waiters_finish(build_take_waiters(b), NULL, NULL, err.code, &err);
                return;
        }
        b->work_pending = true;
}


static void build_timer_cb(uv_timer_t *t)
{
        struct dbuild *b = t->data;

        if (!b->exited) {
                /* SIGTERM was not enough: take the whole process group (apt, dpkg) down */
                (void)kill(-b->pid, SIGKILL);
                return;
        }
        build_finish(b); /* exited, but something still holds the pipe open */
}

static void build_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
        struct dbuild *b = proc->data;

        b->exited = true;
        b->exit_status = exit_status;
        b->term_signal = term_signal;
        uv_close((uv_handle_t *)proc, build_close_cb);
        if (b->eof) {
                build_finish(b);
                return;
        }
        if (!b->timer_closing) {
                (void)uv_timer_stop(&b->timer);
                (void)uv_timer_start(&b->timer, build_timer_cb, BUILD_EOF_GRACE_MS, 0);
        }
}

static void build_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        struct dbuild *b = h->data;

        *buf = uv_buf_init(b->readbuf, sizeof b->readbuf);
}

static void build_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct dbuild *b = s->data;

        if (n > 0) {
                build_feed(b, buf->base, (size_t)n);
                return;
        }
        if (n == 0)
                return;
        /* EOF or a read error: either way there is nothing more to read */
        (void)uv_read_stop(s);
        b->eof = true;
        if (b->exited)
                build_finish(b);
}

/* Find an executable called name in BUILD_PATH. */
static int find_program(const char *name, char *ret, size_t size)
{
        char paths[] = BUILD_PATH, *save = NULL;

        for (char *dir = strtok_r(paths, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                int n = snprintf(ret, size, "%s/%s", dir, name);

                if (n > 0 && (size_t)n < size && access(ret, X_OK) == 0)
                        return 0;
        }
        return -ENOENT;
}

static const char *apt_sources_path(void)
{
        static const char *const candidates[] = { "/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list" };

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], R_OK) == 0)
                        return candidates[i];
        return NULL;
}



/* Spawn the child for b. On failure the caller closes whatever handles are open. */
static int build_spawn(struct dbuild *b, const char *builder, const char *setpriv, const char *unshare,
                       const char *sources, struct sbx_err *err)
{
        static const char *const pass_env[] = { "http_proxy", "https_proxy", "no_proxy",
                                                "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY" };
        char variant[64], include[DEBIAN_PACKAGES_MAX + 16], env_store[ELEMENTSOF(pass_env)][1024];
        char *env[ELEMENTSOF(pass_env) + 8];
        size_t n_env = 0;
        int pipefd[2], r;
        uv_stdio_container_t stdio[3];
        uv_process_options_t opts = {};

        snprintf(variant, sizeof variant, "--variant=%s", b->variant);
        snprintf(include, sizeof include, "--include=%s", b->packages);
        /* setpriv: the build dies with the daemon; unshare: mmdebstrap's /proc, /sys and /dev
         * mounts live in a private mount namespace and vanish with it, even on SIGKILL */
        /* clang-format off */
        const char *args[] = {
                setpriv, "--pdeathsig", "TERM", "--", unshare, "--mount", "--propagation", "private", "--",
                builder, variant, include, "--mode=root",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-include=/usr/share/locale/locale.alias",
                "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/*",
                b->suite, b->tmp_root, sources, NULL,
        };
        /* clang-format on */

        env[n_env++] = (char *)"PATH=" BUILD_PATH;
        env[n_env++] = (char *)"LC_ALL=C";
        env[n_env++] = (char *)"HOME=/root";
        env[n_env++] = (char *)"DEBIAN_FRONTEND=noninteractive";
        for (size_t i = 0; i < ELEMENTSOF(pass_env); i++) {
                const char *v = getenv(pass_env[i]);
                int n;

                if (!v)
                        continue;
                n = snprintf(env_store[i], sizeof env_store[i], "%s=%s", pass_env[i], v);
                if (n > 0 && (size_t)n < sizeof env_store[i])
                        env[n_env++] = env_store[i];
        }
        env[n_env] = NULL;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return sbx_err_set(err, -errno, "cannot create a pipe: %s", strerror(errno));
        r = uv_pipe_open(&b->out, pipefd[0]);
        if (r < 0) {
                (void)safe_close(pipefd[0]);
                (void)safe_close(pipefd[1]);
                return sbx_err_set(err, r, "cannot watch the build's output: %s", uv_strerror(r));
        }
        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_INHERIT_FD;
        stdio[1].data.fd = pipefd[1];
        stdio[2].flags = UV_INHERIT_FD;
        stdio[2].data.fd = pipefd[1];
        opts.exit_cb = build_exit_cb;
        opts.file = setpriv;
        opts.args = (char **)args;
        opts.env = env;
        opts.cwd = "/";
        opts.flags = UV_PROCESS_DETACHED; /* own session and process group: one kill reaches apt and dpkg */
        opts.stdio_count = 3;
        opts.stdio = stdio;
        b->proc.data = b;
        r = uv_spawn(b->ts->loop, &b->proc, &opts);
        b->open_handles++; /* uv_spawn initialises the handle even when it fails */
        (void)safe_close(pipefd[1]);
        if (r < 0)
                return sbx_err_set(err, r, "cannot start '%s': %s", builder, uv_strerror(r));
        b->spawned = true;
        b->pid = b->proc.pid;
        r = uv_read_start((uv_stream_t *)&b->out, build_alloc_cb, build_read_cb);
        if (r < 0) {
                (void)kill(-b->pid, SIGKILL);
                return sbx_err_set(err, r, "cannot read the build's output: %s", uv_strerror(r));
        }
        return 0;
}


static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool template_package_name_valid(const char *s)
{
        size_t n = strlen(s);

        if (n < 2 || n > 128 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
                return false;
        for (size_t i = 1; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr("+.-", s[i])))
                        return false;
        return true;
}

/* Sort and de-duplicate the comma-separated list in into out. */
static int packages_normalise(const char *in, char *out, size_t size, struct sbx_err *err)
{
        char buf[DEBIAN_PACKAGES_MAX], *save = NULL, *names[1024];
        size_t n = 0, off = 0;

        if (strlen(in) >= sizeof buf)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "package list is longer than %d bytes",
                                    DEBIAN_PACKAGES_MAX - 1);
        snprintf(buf, sizeof buf, "%s", in);
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (!template_package_name_valid(t))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "invalid Debian package name '%.128s'",
                                            t);
                if (n == ELEMENTSOF(names))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "more than %zu packages",
                                            ELEMENTSOF(names));
                names[n++] = t;
        }
        qsort(names, n, sizeof names[0], cmp_str);
        out[0] = '\0';
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && strcmp(names[i], names[i - 1]) == 0)
                        continue;
                int k = snprintf(out + off, size - off, "%s%s", off ? "," : "", names[i]);
                if (k < 0 || (size_t)k >= size - off)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "package list is too long");
                off += (size_t)k;
        }
        return 0;
}

static void sha256_hex(const char *s, char out[65])
{
        unsigned char md[32];
        unsigned int len = 0;

        (void)EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
        for (size_t i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int template_cache_prune(struct template_store *ts)
{
        _cleanup_close_ int fd = openat(ts->dirfd, "cache", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        int n = 0;
        DIR *d;

        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while ((de = readdir(d))) {
                char buf[SBX_LAYER_DIGEST_MAX + 8];
                struct layer_info info;
                size_t len = strlen(de->d_name);
                int k;

                if (de->d_name[0] == '.')
                        continue;
                if (len > 4 && !strcmp(de->d_name + len - 4, ".tmp")) {
                        (void)unlinkat(dirfd(d), de->d_name, 0); /* a crash between write and rename */
                        continue;
                }
                k = read_file_at(dirfd(d), de->d_name, buf, sizeof buf);
                if (k < 0)
                        continue;
                buf[strcspn(buf, "\n")] = '\0';
                if (layer_digest_valid(buf) && layer_get(ts->layers, buf, &info, NULL) >= 0)
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                        n++;
        }
        (void)closedir(d);
        return n;
}

bool template_cache_get(struct template_store *ts, const char *cache_name, char *digest, size_t size)
{
        char path[128], buf[SBX_LAYER_DIGEST_MAX + 8];
        int n;

        snprintf(path, sizeof path, "cache/%s", cache_name);
        n = read_file_at(ts->dirfd, path, buf, sizeof buf);
        if (n < 0)
                return false;
        buf[strcspn(buf, "\n")] = '\0';
        if (!layer_digest_valid(buf) || layer_hold(ts->layers, buf, NULL) < 0)
                return false;
        snprintf(digest, size, "%.71s", buf);
        return true;
}

static int build_start(struct template_store *ts, struct dbuild *b, struct sbx_err *err)
{
        char builder[PATH_MAX], setpriv[PATH_MAX], unshare[PATH_MAX];
        const char *sources;
        int r;

        if (ts->builder[0])
                r = access(ts->builder, X_OK) < 0 ? -errno : snprintf(builder, sizeof builder, "%s", ts->builder);
        else
                r = find_program("mmdebstrap", builder, sizeof builder);
        if (r < 0)
                return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                                    "cannot build %s: mmdebstrap is not installed (install the Debian package 'mmdebstrap')",
                                    b->label);
        if (find_program("setpriv", setpriv, sizeof setpriv) < 0 ||
            find_program("unshare", unshare, sizeof unshare) < 0)
                return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                                    "cannot build %s: setpriv or unshare is missing (install the Debian package 'util-linux')",
                                    b->label);
        sources = apt_sources_path();
        if (!sources)
                return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                                    "cannot build %s: no apt sources in '/etc/apt/sources.list.d/debian.sources' or '/etc/apt/sources.list'",
                                    b->label);
        r = layer_tmp_new(ts->layers, b->tmp, sizeof b->tmp, err);
        if (r < 0)
                return r;
        if ((size_t)snprintf(b->tmp_root, sizeof b->tmp_root, "%s/root", b->tmp) >= sizeof b->tmp_root) {
                layer_discard(ts->layers, b->tmp);
                return sbx_err_set(err, -ENAMETOOLONG, "cannot build %s: path too long", b->label);
        }

        /* from here on b is freed through its handles' close callbacks */
        b->ts = ts;
        b->lsr = ts->lsr;
        b->lsr->refs++;
        b->out.data = b;
        b->timer.data = b;
        (void)uv_pipe_init(ts->loop, &b->out, 0);
        (void)uv_timer_init(ts->loop, &b->timer);
        b->open_handles = 2;
        r = build_spawn(b, builder, setpriv, unshare, sources, err);
        if (r < 0) {
                (void)sbx_err_wrap(err, "cannot build %s", b->label);
                b->ts = NULL;
                if (b->open_handles == 3 && !b->spawned)
                        uv_close((uv_handle_t *)&b->proc, build_close_cb);
                build_close_pipe_and_timer(b);
                b->finishing = true;
                layer_discard(ts->layers, b->tmp);
                return r;
        }
        b->next = ts->dbuilds;
        ts->dbuilds = b;
        return 0;
}

int template_debian_layer(struct template_store *ts, const char *suite, const char *variant, const char *packages,
                          template_progress_fn progress, template_layer_done_fn done, void *data,
                          struct sbx_err *err)
{
        _cleanup_free_ struct dbuild *nb = NULL;
        char key[DEBIAN_PACKAGES_MAX + 80], hex[65], norm[DEBIAN_PACKAGES_MAX], digest[SBX_LAYER_DIGEST_MAX];
        struct build_waiter *w;
        struct dbuild *b;
        int r;

        if (!ts || !done || !suite || !variant)
                return sbx_err_set(err, -EINVAL, "invalid arguments to template_debian_layer");
        if (ts->closing)
                return sbx_err_set(err, -ECANCELED, "template store is closing");
        if (strlen(suite) >= sizeof nb->suite || strspn(suite, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(suite) ||
            !*suite)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "invalid Debian suite '%.32s'", suite);
        if (strcmp(variant, "minbase") && strcmp(variant, "essential") && strcmp(variant, "required") &&
            strcmp(variant, "important") && strcmp(variant, "standard"))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "invalid variant '%.32s' (minbase, essential, required, important or standard)",
                                    variant);
        r = packages_normalise(packages ? packages : "", norm, sizeof norm, err);
        if (r < 0)
                return r;
        snprintf(key, sizeof key, "%s\n%s\n%s", suite, variant, norm);
        sha256_hex(key, hex);

        for (b = ts->dbuilds; b; b = b->next)
                if (!strcmp(b->suite, suite) && !strcmp(b->variant, variant) && !strcmp(b->packages, norm))
                        break;
        if (!b) {
                char cache_name[80];

                snprintf(cache_name, sizeof cache_name, "debian-%s", hex);
                if (template_cache_get(ts, cache_name, digest, sizeof digest)) {
                        done(0, digest, NULL, data);
                        return 0;
                }
                nb = calloc(1, sizeof *nb);
                if (!nb)
                        return sbx_err_set(err, -ENOMEM, "out of memory");
                nb->waiters_tail = &nb->waiters;
                snprintf(nb->suite, sizeof nb->suite, "%s", suite);
                snprintf(nb->variant, sizeof nb->variant, "%s", variant);
                snprintf(nb->packages, sizeof nb->packages, "%s", norm);
                snprintf(nb->cache_name, sizeof nb->cache_name, "%s", cache_name);
                snprintf(nb->label, sizeof nb->label, "%s %s%s%.60s%s", suite, variant, norm[0] ? " +" : "", norm,
                         strlen(norm) > 60 ? "..." : "");
                snprintf(nb->stage, sizeof nb->stage, "starting");
                r = build_start(ts, nb, err);
                if (r < 0) {
                        if (nb->open_handles > 0)
                                nb = NULL; /* freed by its close callbacks */
                        return r;
                }
                b = TAKE_PTR(nb);
        }
        w = calloc(1, sizeof *w);
        if (!w)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        w->progress = progress;
        w->done = done;
        w->data = data;
        *b->waiters_tail = w;
        b->waiters_tail = &w->next;
        return 0;
}

void template__debian_stop_all(struct template_store *ts)
{
        while (ts->dbuilds) {
                struct dbuild *b = ts->dbuilds;
                struct sbx_err err = {};

                build_unlink(b);
                b->ts = NULL;
                if (!b->exited && b->spawned) {
                        /* mmdebstrap cleans up on SIGTERM; the timer escalates to SIGKILL */
                        (void)kill(-b->pid, SIGTERM);
                        if (!b->timer_closing) {
                                (void)uv_timer_stop(&b->timer);
                                (void)uv_timer_start(&b->timer, build_timer_cb, BUILD_KILL_GRACE_MS, 0);
                        }
                }
                (void)sbx_err_set(&err, -ECANCELED, "template store closed while building %s", b->label);
                waiters_finish(build_take_waiters(b), NULL, NULL, -ECANCELED, &err);
        }
}
