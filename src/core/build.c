// SPDX-License-Identifier: Apache-2.0
/*
 * Template builds from specs (manager.h: manager_template_build, build-spec.h): a chain of steps,
 * each producing one layer, each cached by a key derived from its parent layer and its input:
 *   base   the Debian layer (suite, variant, packages) from template-debian.c, or the layers of
 *          the template named by "from"
 *   files  the spec's files, written on the host into a new layer (thread pool)
 *   npm    `npm install -g --ignore-scripts` into <layer>/usr/local with the host's npm (thread pool)
 *   setup  the setup commands, run one by one in a sandbox of the layers so far; the sandbox's
 *          upper dir, shifted back to sandbox-relative ids, becomes the layer
 * then the template is published. Every step reports events (progress, log lines, failure) kept
 * in a bounded per-build log that watchers replay and follow (SSE in the API). Runs on the loop;
 * file work on the libuv thread pool. One build per name at a time; an identical spec attaches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "core/build-spec.h"
#include "core/manager-internal.h"
#include "core/manager.h"

#define BUILD_MAX_EVENTS 4096        /* kept per build for replay; older ones are dropped */
#define BUILD_MAX_FINISHED 32        /* finished builds kept for GET .../build */
#define BUILD_LINE_MAX 1024
#define BUILD_TAIL_LINES 20
#define NPM_OUTPUT_MAX (256 * 1024)

extern char **environ;

enum tb_state { TB_RUNNING, TB_DONE, TB_FAILED };

struct tb_event {
        struct tb_event *next;
        uint64_t seq;
        char type[16];
        json_t *data;
};

struct build_watch {
        struct build_watch *next;
        struct tbuild *b;
        build_event_fn fn;
        void *data;
};

struct tbuild {
        struct tbuild *next;
        struct manager *m;
        unsigned refs;                 /* the registry + work in flight */
        struct build_spec spec;
        enum tb_state state;
        unsigned percent;
        char stage[64];
        uint64_t t0, finished_ms;
        bool all_cached;

        char layers[SBX_MAX_IMAGE_LAYERS][SBX_LAYER_DIGEST_MAX]; /* bottom first, each held */
        size_t n_layers;

        struct tb_event *events, *events_tail;
        size_t n_events;
        uint64_t seq;
        struct build_watch *watches;

        /* setup step */
        char sandbox_id[SBX_ID_MAX];
        size_t setup_next;
        struct exec_handle *exec;
        char line[BUILD_LINE_MAX];
        size_t line_len;
        char tail[BUILD_TAIL_LINES][BUILD_LINE_MAX];
        unsigned tail_next, tail_count;
        uid_t uid_base;

        /* thread-pool steps */
        uv_work_t work;
        const char *work_kind;         /* "files", "npm", "setup" */
        char work_key[65];
        int work_r;
        struct sbx_err work_err;
        char work_digest[SBX_LAYER_DIGEST_MAX];
        char *work_output;             /* npm's output */
        char upper[PATH_MAX + 8];      /* setup: the sandbox's upper dir */

        struct sbx_err err;
        int exit_code;                 /* failed setup command */
        int failed_step;
};

static void step_files(struct tbuild *b);
static void step_npm(struct tbuild *b);
static void step_setup(struct tbuild *b);
static void publish(struct tbuild *b);

/* ---------- events ---------- */

static void emit(struct tbuild *b, const char *type, json_t *data)
{
        struct tb_event *e = calloc(1, sizeof *e);

        if (!e) {
                json_decref(data);
                return;
        }
        e->seq = ++b->seq;
        snprintf(e->type, sizeof e->type, "%s", type);
        e->data = data ? data : json_object();
        if (b->events_tail)
                b->events_tail->next = e;
        else
                b->events = e;
        b->events_tail = e;
        if (++b->n_events > BUILD_MAX_EVENTS) {
                struct tb_event *old = b->events;

                b->events = old->next;
                json_decref(old->data);
                free(old);
                b->n_events--;
        }
        for (struct build_watch *w = b->watches, *next; w; w = next) {
                next = w->next;
                w->fn(w->data, e->type, e->data, e->seq);
        }
}

static void progress(struct tbuild *b, unsigned percent, const char *stage)
{
        if (percent < b->percent)
                percent = b->percent;
        if (percent == b->percent && !strcmp(stage, b->stage))
                return;
        b->percent = percent;
        snprintf(b->stage, sizeof b->stage, "%s", stage);
        emit(b, "progress", json_pack("{s:i, s:s}", "percent", (int)percent, "stage", stage));
}

static void log_line(struct tbuild *b, const char *line)
{
        snprintf(b->tail[b->tail_next], BUILD_LINE_MAX, "%s", line);
        b->tail_next = (b->tail_next + 1) % BUILD_TAIL_LINES;
        if (b->tail_count < BUILD_TAIL_LINES)
                b->tail_count++;
        emit(b, "log", json_pack("{s:s}", "line", line));
}

/* Split output into lines (printable, cut at BUILD_LINE_MAX). */
static void log_feed(struct tbuild *b, const char *buf, size_t n, bool flush)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)buf[i];

                if (c == '\n') {
                        b->line[b->line_len] = '\0';
                        log_line(b, b->line);
                        b->line_len = 0;
                } else if (b->line_len < BUILD_LINE_MAX - 1)
                        b->line[b->line_len++] = (c == '\t' || c >= 0x20) && c != 0x7f ? (char)c : '?';
        }
        if (flush && b->line_len > 0) {
                b->line[b->line_len] = '\0';
                log_line(b, b->line);
                b->line_len = 0;
        }
}

static json_t *tail_json(const struct tbuild *b)
{
        json_t *a = json_array();

        for (unsigned i = 0; a && i < b->tail_count; i++)
                (void)json_array_append_new(
                        a, json_string(b->tail[(b->tail_next + BUILD_TAIL_LINES - b->tail_count + i) % BUILD_TAIL_LINES]));
        return a;
}

static const char *step_name(int step)
{
        static const char *const names[] = { "base", "files", "npm", "setup", "publish" };
        return step >= 0 && step < 5 ? names[step] : "build";
}

/* ---------- lifetime ---------- */

static void release_layers(struct tbuild *b)
{
        struct layer_store *ls = template_store_layers(b->m->templates);

        for (size_t i = 0; i < b->n_layers; i++)
                layer_release(ls, b->layers[i]);
        b->n_layers = 0;
}

static void tbuild_unref(struct tbuild *b)
{
        if (!b || --b->refs > 0)
                return;
        while (b->events) {
                struct tb_event *e = b->events;
                b->events = e->next;
                json_decref(e->data);
                free(e);
        }
        build_spec_release(&b->spec);
        free(b->work_output);
        free(b);
}

static void end_watches(struct tbuild *b)
{
        while (b->watches) {
                struct build_watch *w = b->watches;

                b->watches = w->next;
                w->fn(w->data, NULL, NULL, 0); /* the end */
                free(w);
        }
}

/* Drop the oldest finished builds beyond BUILD_MAX_FINISHED. */
static void prune_finished(struct manager *m)
{
        size_t n = 0;

        for (struct tbuild *b = m->builds; b; b = b->next)
                n += b->state != TB_RUNNING;
        while (n > BUILD_MAX_FINISHED) {
                struct tbuild **oldest = NULL;

                for (struct tbuild **pp = &m->builds; *pp; pp = &(*pp)->next)
                        if ((*pp)->state != TB_RUNNING && (!oldest || (*pp)->finished_ms < (*oldest)->finished_ms))
                                oldest = pp;
                if (!oldest)
                        break;
                struct tbuild *b = *oldest;
                *oldest = b->next;
                end_watches(b);
                tbuild_unref(b);
                n--;
        }
}

static void finish(struct tbuild *b, int r)
{
        struct manager *m = b->m;

        b->state = r < 0 ? TB_FAILED : TB_DONE;
        b->finished_ms = now_realtime_ms();
        if (r < 0) {
                json_t *d = json_pack("{s:s, s:s, s:s, s:o}", "name", b->spec.name, "step", step_name(b->failed_step),
                                      "message", b->err.msg, "log", tail_json(b));
                if (d && b->exit_code)
                        json_object_set_new(d, "exitCode", json_integer(b->exit_code));
                log_warn("template %s: build failed at step %s: %s", b->spec.name, step_name(b->failed_step),
                            b->err.msg);
                emit(b, "failed", d);
        } else {
                json_t *arr = json_array();

                for (size_t i = 0; arr && i < b->n_layers; i++)
                        (void)json_array_append_new(arr, json_string(b->layers[i]));
                b->percent = 100;
                snprintf(b->stage, sizeof b->stage, "ready");
                log_info("template %s: built in %.1f s (%zu layers%s)", b->spec.name,
                         (double)(now_usec() - b->t0) / 1e6, b->n_layers, b->all_cached ? ", all cached" : "");
                emit(b, "done", json_pack("{s:s, s:o, s:I, s:b}", "name", b->spec.name, "layers", arr, "durationMs",
                                          (json_int_t)((now_usec() - b->t0) / 1000), "cached", b->all_cached));
        }
        release_layers(b);
        end_watches(b);
        prune_finished(m);
}

static void fail(struct tbuild *b, int step, const struct sbx_err *err, const char *fallback)
{
        b->failed_step = step;
        if (err && err->code)
                b->err = *err;
        else
                (void)sbx_err_set(&b->err, -SBX_E_INTERNAL, "%s", fallback);
        if (!b->err.reason[0])
                snprintf(b->err.reason, sizeof b->err.reason, "template_build_failed");
        finish(b, b->err.code ? b->err.code : -SBX_E_INTERNAL);
}

static int push_layer(struct tbuild *b, const char *digest)
{
        if (b->n_layers == SBX_MAX_IMAGE_LAYERS) {
                layer_release(template_store_layers(b->m->templates), digest);
                return sbx_err_setr(&b->err, -SBX_E_INVALID, "invalid_value", "a template has at most %d layers",
                                    SBX_MAX_IMAGE_LAYERS);
        }
        snprintf(b->layers[b->n_layers++], SBX_LAYER_DIGEST_MAX, "%s", digest);
        return 0;
}

/* ---------- step 1: base ---------- */

static void base_progress(const char *label, unsigned percent, const char *stage, void *data)
{
        struct tbuild *b = data;
        char s[64];

        snprintf(s, sizeof s, "base: %s", stage);
        progress(b, percent * 55 / 100, s);
}

static void base_done(int result, const char *digest, const struct sbx_err *err, void *data)
{
        struct tbuild *b = data;

        if (result == -ECANCELED) {
                tbuild_unref(b);
                return;
        }
        if (result < 0) {
                fail(b, 0, err, "cannot build the base layer");
                tbuild_unref(b);
                return;
        }
        if (push_layer(b, digest) < 0) {
                fail(b, 0, &b->err, "");
                tbuild_unref(b);
                return;
        }
        step_files(b);
        tbuild_unref(b);
}

static void from_ready(const char *name, int result, const struct sbx_err *err, void *data);

/* The layers of the "from" template (held), or a catalog build of it first. */
static void step_from(struct tbuild *b)
{
        struct layer_store *ls = template_store_layers(b->m->templates);
        struct template_info *info = malloc(sizeof *info);
        struct sbx_err e = {};
        int r;

        if (!info) {
                (void)sbx_err_set(&e, -ENOMEM, "out of memory");
                fail(b, 0, &e, "");
                return;
        }
        r = template_lookup(b->m->templates, b->spec.from, info, &e);
        if (r == -SBX_E_UNAVAILABLE && template_known(b->spec.from)) {
                free(info);
                progress(b, 5, "base: building the catalog template");
                b->all_cached = false;
                b->refs++;
                r = template_build(b->m->templates, b->spec.from, NULL, from_ready, b, &e);
                if (r < 0) {
                        b->refs--;
                        fail(b, 0, &e, "");
                }
                return;
        }
        if (r >= 0 && info->n_layers == 0)
                r = sbx_err_setr(&e, -SBX_E_INVALID, "invalid_value", "'from': template '%s' has no layers to build on",
                                 b->spec.from);
        for (size_t i = 0; r >= 0 && i < info->n_layers; i++) {
                r = layer_hold(ls, info->layers[i], &e);
                if (r >= 0)
                        r = push_layer(b, info->layers[i]);
        }
        free(info);
        if (r < 0) {
                if (!e.code)
                        e = b->err;
                fail(b, 0, &e, "");
                return;
        }
        progress(b, 55, "base: ready");
        step_files(b);
}

static void from_ready(const char *name, int result, const struct sbx_err *err, void *data)
{
        struct tbuild *b = data;

        if (result == -ECANCELED) {
                tbuild_unref(b);
                return;
        }
        if (result < 0)
                fail(b, 0, err, "cannot build the 'from' template");
        else
                step_from(b);
        tbuild_unref(b);
}

static void step_base(struct tbuild *b)
{
        _cleanup_free_ char *pkgs = NULL;
        struct sbx_err e = {};
        int r;

        if (b->spec.from[0]) {
                step_from(b);
                return;
        }
        if (asprintf(&pkgs, "%s%s%s", SBX_BASE_PACKAGES, b->spec.packages[0] ? "," : "", b->spec.packages) < 0) {
                (void)sbx_err_set(&e, -ENOMEM, "out of memory");
                fail(b, 0, &e, "");
                return;
        }
        progress(b, 1, "base: starting");
        b->refs++;
        r = template_debian_layer(b->m->templates, b->spec.suite, b->spec.variant, pkgs, base_progress, base_done, b,
                                  &e);
        if (r < 0) {
                b->refs--;
                fail(b, 0, &e, "");
        } else if (b->n_layers == 0 && b->state == TB_RUNNING)
                b->all_cached = false; /* not a cache hit: mmdebstrap runs */
}

/* ---------- thread-pool steps: files, npm, setup commit ---------- */

/* mkdir -p the parents of rel (relative to root) without following symlinks; returns the parent's
 * fd and sets *base to the last component. */
static int open_parent(int root, char *rel, char **base)
{
        int fd = fcntl(root, F_DUPFD_CLOEXEC, 3);
        char *p = rel, *slash;

        while (fd >= 0 && (slash = strchr(p, '/'))) {
                int sub;

                *slash = '\0';
                if (mkdirat(fd, p, 0755) < 0 && errno != EEXIST) {
                        safe_close(fd);
                        return -errno;
                }
                sub = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                *slash = '/';
                safe_close(fd);
                if (sub < 0)
                        return -errno;
                fd = sub;
                p = slash + 1;
        }
        *base = p;
        return fd < 0 ? -errno : fd;
}

static int write_files(struct tbuild *b, const char *root_path)
{
        _cleanup_close_ int root = open(root_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

        if (root < 0)
                return sbx_err_set(&b->work_err, -errno, "cannot open '%s': %m", root_path);
        for (size_t i = 0; i < b->spec.n_files; i++) {
                const struct build_file *f = &b->spec.files[i];
                _cleanup_free_ char *rel = strdup(f->path + 1);
                _cleanup_close_ int dir = -EBADF, fd = -EBADF;
                char *base = NULL;
                int r;

                if (!rel)
                        return sbx_err_set(&b->work_err, -ENOMEM, "out of memory");
                dir = open_parent(root, rel, &base);
                if (dir < 0)
                        return sbx_err_setr(&b->work_err, -SBX_E_INVALID, "invalid_value",
                                            "'files[%zu].path': cannot create the parents of '%s': %s", i, f->path,
                                            strerror(-dir));
                (void)unlinkat(dir, base, 0); /* a later entry for the same path wins */
                fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        return sbx_err_setr(&b->work_err, -SBX_E_INVALID, "invalid_value",
                                            "'files[%zu].path': cannot create '%s': %m", i, f->path);
                r = write_all(fd, f->data, f->len);
                if (r == 0 && fchmod(fd, f->mode) < 0)
                        r = -errno;
                if (r < 0)
                        return sbx_err_set(&b->work_err, r, "cannot write '%s': %s", f->path, strerror(-r));
        }
        return 0;
}

/* Run npm on the host into root/usr/local, output collected in b->work_output. */
static int run_npm(struct tbuild *b, const char *root_path)
{
        _cleanup_free_ char *prefix = NULL;
        char **argv = calloc(b->spec.n_npm + 12, sizeof *argv);
        posix_spawn_file_actions_t fa;
        size_t n = 0, used = 0;
        int pipefd[2], status = 0, r;
        pid_t pid;

        if (!argv || asprintf(&prefix, "%s/usr/local", root_path) < 0) {
                free(argv);
                return sbx_err_set(&b->work_err, -ENOMEM, "out of memory");
        }
        argv[n++] = (char *)"npm";
        argv[n++] = (char *)"install";
        argv[n++] = (char *)"--global";
        argv[n++] = (char *)"--prefix";
        argv[n++] = prefix;
        argv[n++] = (char *)"--ignore-scripts"; /* nothing from a package runs on the host */
        argv[n++] = (char *)"--no-audit";
        argv[n++] = (char *)"--no-fund";
        argv[n++] = (char *)"--no-update-notifier";
        argv[n++] = (char *)"--";
        for (size_t i = 0; i < b->spec.n_npm; i++)
                argv[n++] = b->spec.npm[i];
        argv[n] = NULL;
        b->work_output = calloc(1, NPM_OUTPUT_MAX + 1);
        if (!b->work_output || pipe2(pipefd, O_CLOEXEC) < 0) {
                free(argv);
                return sbx_err_set(&b->work_err, -ENOMEM, "cannot set up npm's output");
        }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
        r = posix_spawnp(&pid, "npm", &fa, NULL, argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        free(argv);
        safe_close(pipefd[1]);
        if (r != 0) {
                safe_close(pipefd[0]);
                return sbx_err_setr(&b->work_err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                                    "'npm' packages need npm on the host (install the Debian package 'npm'): %s",
                                    strerror(r));
        }
        for (;;) {
                char buf[4096];
                ssize_t k = read(pipefd[0], buf, sizeof buf);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                if (used + (size_t)k > NPM_OUTPUT_MAX)
                        k = (ssize_t)(NPM_OUTPUT_MAX - used);
                memcpy(b->work_output + used, buf, (size_t)k);
                used += (size_t)k;
        }
        safe_close(pipefd[0]);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                b->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                return sbx_err_setr(&b->work_err, -SBX_E_INVALID, "template_build_failed",
                                    "npm install exited with status %d", b->exit_code);
        }
        return 0;
}

/* Shift ids written by the build sandbox (uid_base + k) back to k. Never follows symlinks. */
static int shift_ids(int dfd, uid_t base, unsigned depth)
{
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (depth > 4096)
                return -ELOOP;
        d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        while ((de = readdir(d)) && r == 0) {
                struct stat st;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                uid_t u = st.st_uid >= base && st.st_uid - base < SBX_UID_RANGE ? st.st_uid - base : 65534;
                gid_t g = st.st_gid >= base && st.st_gid - base < SBX_UID_RANGE ? st.st_gid - base : 65534;
                if (fchownat(dirfd(d), de->d_name, u, g, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOENT)
                        r = -errno;
                /* chown clears setuid/setgid bits: put them back */
                if (r == 0 && !S_ISLNK(st.st_mode) && (st.st_mode & 06000))
                        if (fchmodat(dirfd(d), de->d_name, st.st_mode & 07777, 0) < 0)
                                r = -errno;
                if (r == 0 && S_ISDIR(st.st_mode)) {
                        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0)
                                r = shift_ids(sub, base, depth + 1);
                }
        }
        (void)closedir(d);
        return r;
}

/* cp -a src dst (dst must not exist): for a data dir and a templates dir on different filesystems. */
static int copy_tree(const char *src, const char *dst)
{
        char *const argv[] = { (char *)"cp", (char *)"-a", (char *)"--no-target-directory", (char *)"--",
                               (char *)src, (char *)dst, NULL };
        int status = 0, r;
        pid_t pid;

        r = posix_spawn(&pid, "/bin/cp", NULL, NULL, argv, environ);
        if (r != 0)
                return -r;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int take_upper(struct tbuild *b, const char *tmp, const char *root_path)
{
        struct stat st;
        int fd;

        if (rmdir(root_path) < 0)
                return sbx_err_set(&b->work_err, -errno, "cannot prepare '%s': %m", root_path);
        if (rename(b->upper, root_path) < 0) {
                int e = errno, r = e == EXDEV ? copy_tree(b->upper, root_path) : -e;

                if (r < 0) {
                        (void)mkdir(root_path, 0755);
                        return sbx_err_set(&b->work_err, r, "cannot move the build sandbox's files '%s' to '%s': %s",
                                           b->upper, root_path, strerror(-r));
                }
        }
        fd = open(root_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0) {
                if (fd >= 0)
                        safe_close(fd);
                return sbx_err_set(&b->work_err, -errno, "cannot open '%s': %m", root_path);
        }
        if (fchown(fd, 0, 0) < 0 || fchmod(fd, 0755) < 0) {
                int e = errno;
                safe_close(fd);
                return sbx_err_set(&b->work_err, -e, "cannot chown '%s': %s", root_path, strerror(e));
        }
        fd = shift_ids(fd, b->uid_base, 0);
        if (fd < 0)
                return sbx_err_set(&b->work_err, fd, "cannot shift the ids of '%s': %s", root_path, strerror(-fd));
        return 0;
}

static void layer_work(uv_work_t *w)
{
        struct tbuild *b = w->data;
        struct layer_store *ls = template_store_layers(b->m->templates);
        char tmp[PATH_MAX], root[PATH_MAX + 8], source[SBX_LAYER_SOURCE_MAX];
        struct layer_info info;
        int r;

        r = layer_tmp_new(ls, tmp, sizeof tmp, &b->work_err);
        if (r < 0) {
                b->work_r = r;
                return;
        }
        snprintf(root, sizeof root, "%s/root", tmp);
        if (!strcmp(b->work_kind, "files"))
                r = write_files(b, root);
        else if (!strcmp(b->work_kind, "npm"))
                r = run_npm(b, root);
        else
                r = take_upper(b, tmp, root);
        if (r >= 0) {
                snprintf(source, sizeof source, "template %s: %s", b->spec.name, b->work_kind);
                r = layer_commit(ls, tmp, source, &info, &b->work_err);
                if (r >= 0)
                        snprintf(b->work_digest, sizeof b->work_digest, "%s", info.digest);
        } else
                layer_discard(ls, tmp);
        b->work_r = r;
}

static void cache_name(const struct tbuild *b, char *buf, size_t size)
{
        snprintf(buf, size, "%s-%.64s", b->work_kind, b->work_key);
}

static void layer_work_done(uv_work_t *w, int status)
{
        struct tbuild *b = w->data;
        int step = !strcmp(b->work_kind, "files") ? 1 : !strcmp(b->work_kind, "npm") ? 2 : 3;
        char name[80];

        if (b->work_output) {
                log_feed(b, b->work_output, strlen(b->work_output), true);
                free(b->work_output);
                b->work_output = NULL;
        }
        if (status < 0 && b->work_r >= 0)
                b->work_r = sbx_err_set(&b->work_err, -ECANCELED, "cancelled");
        if (b->work_r < 0 || b->m->freeing) {
                if (!b->m->freeing)
                        fail(b, step, &b->work_err, "");
                tbuild_unref(b);
                return;
        }
        cache_name(b, name, sizeof name);
        template_cache_put(b->m->templates, name, b->work_digest);
        if (push_layer(b, b->work_digest) < 0) {
                fail(b, step, &b->err, "");
                tbuild_unref(b);
                return;
        }
        if (step == 1)
                step_npm(b);
        else if (step == 2)
                step_setup(b);
        else
                publish(b);
        tbuild_unref(b);
}

/* Cache hit for the step (then the layer is pushed and true returned), else queue the work
 * unless queue is false. */
static bool step_cached(struct tbuild *b, const char *kind)
{
        char name[80], digest[SBX_LAYER_DIGEST_MAX];

        b->work_kind = kind;
        build_spec_step_key(&b->spec, kind, b->layers[b->n_layers - 1], b->work_key);
        cache_name(b, name, sizeof name);
        if (!template_cache_get(b->m->templates, name, digest, sizeof digest))
                return false;
        if (push_layer(b, digest) < 0)
                return false;
        emit(b, "step", json_pack("{s:s, s:s, s:b}", "step", kind, "layer", digest, "cached", 1));
        return true;
}

static void queue_layer_work(struct tbuild *b, int step)
{
        struct sbx_err e = {};
        int r;

        b->all_cached = false;
        b->work.data = b;
        b->work_r = 0;
        memset(&b->work_err, 0, sizeof b->work_err);
        b->refs++;
        r = uv_queue_work(b->m->loop, &b->work, layer_work, layer_work_done);
        if (r < 0) {
                b->refs--;
                (void)sbx_err_set(&e, -EIO, "cannot queue the %s step: %s", b->work_kind, uv_strerror(r));
                fail(b, step, &e, "");
        }
}

static void step_files(struct tbuild *b)
{
        if (b->spec.n_files == 0) {
                step_npm(b);
                return;
        }
        progress(b, 56, "files");
        if (step_cached(b, "files")) {
                step_npm(b);
                return;
        }
        queue_layer_work(b, 1);
}

static void step_npm(struct tbuild *b)
{
        if (b->spec.n_npm == 0) {
                step_setup(b);
                return;
        }
        progress(b, 60, "npm packages");
        if (step_cached(b, "npm")) {
                step_setup(b);
                return;
        }
        queue_layer_work(b, 2);
}

/* ---------- step 4: setup commands in a sandbox ---------- */

static void setup_next(struct tbuild *b);

static void setup_sandbox_deleted(void *data, int r, const struct sbx_err *err, json_t *result)
{
        json_decref(result);
        tbuild_unref(data);
}

static void setup_cleanup(struct tbuild *b)
{
        struct sbx_err e = {};

        if (!b->sandbox_id[0] || b->m->freeing)
                return;
        b->refs++;
        if (manager_delete(b->m, b->sandbox_id, setup_sandbox_deleted, b, &e) < 0)
                b->refs--;
        b->sandbox_id[0] = '\0';
}

static void setup_stopped(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct tbuild *b = data;
        struct sandbox *sb;

        json_decref(result);
        if (r == -ECANCELED || b->m->freeing) {
                tbuild_unref(b);
                return;
        }
        sb = r >= 0 ? manager__find(b->m, b->sandbox_id) : NULL;
        if (!sb) {
                fail(b, 3, err, "the build sandbox could not be stopped");
                setup_cleanup(b);
                tbuild_unref(b);
                return;
        }
        b->uid_base = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE;
        snprintf(b->upper, sizeof b->upper, "%s/upper", sb->dir);
        progress(b, 90, "setup: committing the layer");
        b->work_kind = "setup";
        queue_layer_work(b, 3);
        /* the sandbox goes once its upper dir was taken (layer_work_done -> publish) */
        tbuild_unref(b);
}

static bool setup_output(void *data, enum exec_stream stream, const char *buf, size_t len)
{
        log_feed(data, buf, len, false);
        return true;
}

static void setup_exec_done(void *data, int r, const struct sbx_err *err, const struct exec_result *res)
{
        struct tbuild *b = data;
        struct sbx_err e = {};

        b->exec = NULL;
        log_feed(b, "", 0, true);
        if (r == -ECANCELED || b->m->freeing) {
                tbuild_unref(b);
                return;
        }
        if (r < 0 || res->exit_code != 0 || res->timed_out) {
                size_t i = b->setup_next - 1;

                if (r < 0)
                        e = *err;
                else if (res->timed_out)
                        (void)sbx_err_setr(&e, -SBX_E_INVALID, "template_build_failed",
                                           "setup[%zu] timed out after %u s: '%.200s'", i, b->spec.setup_timeout_s,
                                           b->spec.setup[i]);
                else {
                        b->exit_code = res->exit_code;
                        (void)sbx_err_setr(&e, -SBX_E_INVALID, "template_build_failed",
                                           "setup[%zu] exited with status %d: '%.200s'", i, res->exit_code,
                                           b->spec.setup[i]);
                }
                fail(b, 3, &e, "");
                setup_cleanup(b);
                tbuild_unref(b);
                return;
        }
        setup_next(b);
        tbuild_unref(b);
}

static void setup_next(struct tbuild *b)
{
        struct exec_spec spec;
        struct sbx_err e = {};
        json_t *req;
        const char *wd;
        int r;

        if (b->setup_next == b->spec.n_setup) {
                b->refs++;
                if (manager_stop(b->m, b->sandbox_id, setup_stopped, b, &e) < 0) {
                        b->refs--;
                        fail(b, 3, &e, "");
                        setup_cleanup(b);
                }
                return;
        }
        wd = json_string_value(json_object_get(b->spec.config, "workdir"));
        req = json_pack("{s:[s,s,s], s:s, s:i}", "argv", "/bin/sh", "-c", b->spec.setup[b->setup_next], "cwd",
                        wd ? wd : "/root", "timeout", (int)b->spec.setup_timeout_s);
        r = req ? exec_spec_parse(req, &spec, &e) : -ENOMEM;
        json_decref(req);
        if (r < 0) {
                fail(b, 3, &e, "cannot prepare a setup command");
                setup_cleanup(b);
                return;
        }
        {
                char s[64];
                snprintf(s, sizeof s, "setup %zu/%zu", b->setup_next + 1, b->spec.n_setup);
                progress(b, 62 + (unsigned)(28 * b->setup_next / b->spec.n_setup), s);
        }
        log_line(b, "");
        snprintf(b->line, sizeof b->line, "$ %.1000s", b->spec.setup[b->setup_next]);
        log_line(b, b->line);
        b->setup_next++;
        static const struct exec_callbacks cb = { .output = setup_output, .done = setup_exec_done };
        b->refs++;
        r = manager_exec(b->m, b->sandbox_id, &spec, &cb, b, &b->exec, &e);
        exec_spec_release(&spec);
        if (r < 0) {
                b->refs--;
                fail(b, 3, &e, "");
                setup_cleanup(b);
        }
}

static void setup_created(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct tbuild *b = data;
        const char *id = json_string_value(json_object_get(result, "id"));

        if (r == -ECANCELED || b->m->freeing) {
                json_decref(result);
                tbuild_unref(b);
                return;
        }
        if (r < 0 || !id) {
                json_decref(result);
                fail(b, 3, err, "cannot start the build sandbox");
                tbuild_unref(b);
                return;
        }
        snprintf(b->sandbox_id, sizeof b->sandbox_id, "%s", id);
        json_decref(result);
        setup_next(b);
        tbuild_unref(b);
}

static void step_setup(struct tbuild *b)
{
        struct template_info *info;
        struct sandbox_spec spec;
        struct sbx_err e = {};
        json_t *req, *env, *v;
        size_t i;
        int r;

        if (b->spec.n_setup == 0) {
                publish(b);
                return;
        }
        progress(b, 61, "setup: starting a sandbox");
        if (step_cached(b, "setup")) {
                publish(b);
                return;
        }
        b->all_cached = false;
        env = json_object();
        json_array_foreach (json_object_get(b->spec.config, "env"), i, v) {
                const char *kv = json_string_value(v), *eq = kv ? strchr(kv, '=') : NULL;
                char key[SBX_MAX_ENV_KEY + 1];

                if (!eq || (size_t)(eq - kv) > SBX_MAX_ENV_KEY)
                        continue;
                snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
                json_object_set_new(env, key, json_string(eq + 1));
        }
        req = json_pack("{s:s, s:o, s:{s:s}}", "template", "host", "env", env, "metadata", "sbx.build", b->spec.name);
        r = req ? sandbox_spec_parse(req, &spec, &e) : -ENOMEM;
        json_decref(req);
        if (r < 0) {
                fail(b, 3, &e, "cannot prepare the build sandbox");
                return;
        }
        snprintf(spec.template_name, sizeof spec.template_name, "%s", b->spec.name);
        info = calloc(1, sizeof *info);
        if (!info) {
                sandbox_spec_release(&spec);
                (void)sbx_err_set(&e, -ENOMEM, "out of memory");
                fail(b, 3, &e, "");
                return;
        }
        snprintf(info->name, sizeof info->name, "%s", b->spec.name);
        for (i = 0; i < b->n_layers; i++)
                snprintf(info->layers[i], SBX_LAYER_DIGEST_MAX, "%s", b->layers[i]);
        info->n_layers = b->n_layers;
        b->setup_next = 0;
        b->refs++;
        r = manager__create_from(b->m, &spec, info, setup_created, b, &e);
        free(info);
        sandbox_spec_release(&spec);
        if (r < 0) {
                b->refs--;
                fail(b, 3, &e, "");
        }
}

/* ---------- publish ---------- */

static void publish(struct tbuild *b)
{
        struct sbx_err e = {};
        json_t *extra;
        int r;

        setup_cleanup(b); /* the setup sandbox, if any: its files are in the layer now */
        progress(b, 98, "publishing");
        extra = json_pack("{s:s, s:O, s:s}", "source", "spec", "spec", b->spec.canonical, "specDigest", b->spec.digest);
        if (extra && json_object_get(b->spec.canonical, "description"))
                json_object_set(extra, "description", json_object_get(b->spec.canonical, "description"));
        r = extra ? template_publish(b->m->templates, b->spec.name, (const char(*)[SBX_LAYER_DIGEST_MAX])b->layers,
                                     b->n_layers, b->spec.config, extra, &e)
                  : sbx_err_set(&e, -ENOMEM, "out of memory");
        json_decref(extra);
        if (r < 0) {
                fail(b, 4, &e, "");
                return;
        }
        finish(b, 0);
}

/* ---------- API ---------- */

static struct tbuild *find(struct manager *m, const char *name, bool running_only)
{
        for (struct tbuild *b = m->builds; b; b = b->next)
                if (!strcmp(b->spec.name, name) && (!running_only || b->state == TB_RUNNING))
                        return b;
        return NULL;
}

bool build__running(struct manager *m, const char *name)
{
        return find(m, name, true) != NULL;
}

static json_t *status_json(const struct tbuild *b)
{
        static const char *const states[] = { "building", "available", "failed" };
        json_t *o = json_pack("{s:s, s:s, s:i, s:s, s:s}", "name", b->spec.name, "state", states[b->state], "percent",
                              (int)b->percent, "stage", b->stage, "specDigest", b->spec.digest);

        if (o && b->state == TB_FAILED) {
                json_object_set_new(o, "error", json_pack("{s:s, s:s}", "code", b->err.reason, "message", b->err.msg));
                json_object_set_new(o, "failedStep", json_string(step_name(b->failed_step)));
                json_object_set_new(o, "log", tail_json(b));
                if (b->exit_code)
                        json_object_set_new(o, "exitCode", json_integer(b->exit_code));
        }
        return o;
}

json_t *manager_template_build_status(struct manager *m, const char *name)
{
        struct tbuild *b = find(m, name, false);

        return b ? status_json(b) : NULL;
}

int manager_template_build(struct manager *m, json_t *spec_json, json_t **ret, struct sbx_err *err)
{
        struct tbuild *b, *old;
        int r;

        b = calloc(1, sizeof *b);
        if (!b)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        r = build_spec_parse(spec_json, &b->spec, err);
        if (r < 0) {
                free(b);
                return r;
        }
        old = find(m, b->spec.name, false);
        if (old && old->state == TB_RUNNING) {
                bool same = !strcmp(old->spec.digest, b->spec.digest);

                build_spec_release(&b->spec);
                free(b);
                if (!same)
                        return sbx_err_setr(err, -SBX_E_CONFLICT, "template_building",
                                            "template '%s' is being built from another spec; wait for it to finish",
                                            old->spec.name);
                *ret = status_json(old); /* the same spec: follow the build that runs */
                return 0;
        }
        if (old) { /* a finished build of the same name: the new one replaces it */
                for (struct tbuild **pp = &m->builds; *pp; pp = &(*pp)->next)
                        if (*pp == old) {
                                *pp = old->next;
                                break;
                        }
                end_watches(old);
                tbuild_unref(old);
        }
        b->m = m;
        b->refs = 1;
        b->t0 = now_usec();
        b->all_cached = true;
        snprintf(b->stage, sizeof b->stage, "queued");
        b->next = m->builds;
        m->builds = b;
        log_info("template %s: build started (spec %.19s)", b->spec.name, b->spec.digest);
        emit(b, "progress", json_pack("{s:i, s:s}", "percent", 0, "stage", "queued"));
        *ret = status_json(b);
        b->refs++;
        step_base(b);
        tbuild_unref(b);
        return 0;
}

int manager_template_watch(struct manager *m, const char *name, uint64_t after, build_event_fn fn, void *data,
                           struct build_watch **ret, struct sbx_err *err)
{
        struct tbuild *b = find(m, name, false);
        struct build_watch *w;

        *ret = NULL;
        if (!b)
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "not_found", "no build of template '%.64s' is known",
                                    name);
        if (b->events && after + 1 < b->events->seq)
                fn(data, "truncated",
                   json_pack("{s:I}", "firstAvailable", (json_int_t)b->events->seq), b->events->seq - 1);
        for (struct tb_event *e = b->events; e; e = e->next)
                if (e->seq > after)
                        fn(data, e->type, e->data, e->seq);
        if (b->state != TB_RUNNING) {
                fn(data, NULL, NULL, 0);
                return 0;
        }
        w = calloc(1, sizeof *w);
        if (!w)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        *w = (struct build_watch){ .next = b->watches, .b = b, .fn = fn, .data = data };
        b->watches = w;
        *ret = w;
        return 0;
}

void build_watch_cancel(struct build_watch *w)
{
        if (!w)
                return;
        for (struct build_watch **pp = &w->b->watches; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        break;
                }
        free(w);
}

bool build__forget_failed(struct manager *m, const char *name)
{
        for (struct tbuild **pp = &m->builds; *pp; pp = &(*pp)->next) {
                struct tbuild *b = *pp;

                if (strcmp(b->spec.name, name) != 0 || b->state != TB_FAILED)
                        continue;
                *pp = b->next;
                end_watches(b);
                tbuild_unref(b);
                return true;
        }
        return false;
}

void build__append_unlisted(struct manager *m, json_t *arr)
{
        for (struct tbuild *b = m->builds; b; b = b->next) {
                bool listed = false;
                size_t i;
                json_t *v, *o;

                json_array_foreach (arr, i, v)
                        listed = listed || !strcmp(json_string_value(json_object_get(v, "name")) ?: "", b->spec.name);
                if (listed || b->state == TB_DONE)
                        continue;
                o = status_json(b);
                if (!o)
                        continue;
                json_object_set_new(o, "source", json_string("spec"));
                json_object_set_new(o, "catalog", json_false());
                json_object_set_new(o, "sizeBytes", json_null());
                json_object_set_new(o, "layers", json_integer(0));
                json_object_set_new(o, "progress",
                                    b->state == TB_RUNNING
                                            ? json_pack("{s:i, s:s}", "percent", (int)b->percent, "stage", b->stage)
                                            : json_null());
                json_object_set_new(o, "error", b->state == TB_FAILED ? json_string(b->err.msg) : json_null());
                (void)json_array_append_new(arr, o);
        }
}

void build__free_all(struct manager *m)
{
        while (m->builds) {
                struct tbuild *b = m->builds;

                m->builds = b->next;
                if (b->exec)
                        exec_handle_cancel(b->exec);
                end_watches(b);
                release_layers(b);
                tbuild_unref(b);
        }
}
