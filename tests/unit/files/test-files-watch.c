// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/files/watch.c on a real directory tree under /tmp (a fresh root per test,
 * removed afterwards): the events a recursive or flat watch reports, a directory created and filled
 * at once, moves, ignore globs, content (text, truncated, FIFOs and symlinks never read), the end
 * of the watch, option errors, and the latency from write() to the event.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/limits.h"
#include "files/files.h"

#define MAX_RECS 4096
#define WAIT_MS 500

struct rec {
        enum files_event_type type;
        char path[1024];
        bool has_content;
        char content[64];
        size_t len;
        bool truncated;
};

struct fixture {
        char dir[64];
        int fds; /* open fds before the test */
        int rootfd;
        struct files_root root;
        struct files_watch *w;
        size_t n;
        struct rec recs[MAX_RECS];
};

static void on_event(void *data, const struct files_event *e)
{
        struct fixture *f = data;
        struct rec *r;

        assert_non_null(files_event_type_to_string(e->type));
        assert_true(e->path[0] == '/');
        if (e->content)
                assert_int_equal(e->content[e->len], '\0');
        if (f->n == MAX_RECS)
                return;
        r = &f->recs[f->n++];
        r->type = e->type;
        snprintf(r->path, sizeof r->path, "%s", e->path);
        r->has_content = e->content != NULL;
        if (e->content) {
                r->len = e->len;
                memcpy(r->content, e->content, e->len < sizeof r->content - 1 ? e->len : sizeof r->content - 1);
        }
        r->truncated = e->truncated;
}

static const struct rec *find(const struct fixture *f, enum files_event_type t, const char *path)
{
        for (size_t i = f->n; i-- > 0;)
                if (f->recs[i].type == t && strcmp(f->recs[i].path, path) == 0)
                        return &f->recs[i];
        return NULL;
}

/* find, failing the test when the event is not there */
static const struct rec *get(const struct fixture *f, enum files_event_type t, const char *path)
{
        static const struct rec none;
        const struct rec *r = find(f, t, path);

        if (!r)
                fail_msg("no %s event for %s", files_event_type_to_string(t), path);
        return r ? r : &none;
}

static bool seen_path(const struct fixture *f, const char *path)
{
        for (size_t i = 0; i < f->n; i++)
                if (strcmp(f->recs[i].path, path) == 0)
                        return true;
        return false;
}

/* Poll and read until an event (t, path) arrives (with content when content is not NULL) or
 * WAIT_MS pass without one. Returns the read result (0 when found, 1 on timeout, < 0 error). */
static int wait_for(struct fixture *f, enum files_event_type t, const char *path, const char *content)
{
        struct pollfd p = { .fd = files_watch_fd(f->w), .events = POLLIN };

        for (;;) {
                const struct rec *r = find(f, t, path);
                int q;

                if (r && (!content || (r->has_content && strcmp(r->content, content) == 0)))
                        return 0;
                q = poll(&p, 1, WAIT_MS);
                if (q <= 0)
                        return 1;
                q = files_watch_read(f->w, on_event, f);
                if (q < 0)
                        return q;
        }
}

static void expect(struct fixture *f, enum files_event_type t, const char *path)
{
        int q = wait_for(f, t, path, NULL);

        if (q != 0)
                fail_msg("no %s event for %s (%d)", files_event_type_to_string(t), path, q);
}

/* A file under the temp root, for the test's own syscalls. */
static const char *hp(struct fixture *f, const char *rel)
{
        static char buf[4][512];
        static int i;

        i = (i + 1) % 4;
        snprintf(buf[i], sizeof buf[i], "%s/%s", f->dir, rel);
        return buf[i];
}

static void put(struct fixture *f, const char *rel, const char *s)
{
        int fd = open(hp(f, rel), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, s, strlen(s)), (ssize_t)strlen(s));
        assert_int_equal(close(fd), 0);
}

/* Create a sentinel file and wait for it: everything before it has been read by then. */
static void sync_events(struct fixture *f, const char *rel, const char *path)
{
        put(f, rel, "");
        expect(f, FILES_EV_ADD, path);
}

static int watch(struct fixture *f, const char *path, bool recursive, enum files_watch_content content,
                 const char *const *ignore, size_t n_ignore, size_t max_content)
{
        struct files_watch_opts o = {
                .recursive = recursive,
                .ignore = ignore,
                .n_ignore = n_ignore,
                .content = content,
                .max_content = max_content,
        };

        files_watch_free(f->w);
        f->w = NULL;
        f->n = 0;
        return files_watch_new(&f->root, path, &o, &f->w, NULL);
}

static int count_lines(const char *path, const char *prefix)
{
        char line[512];
        FILE *fp = fopen(path, "re");
        int n = 0;

        if (!fp)
                return -1;
        while (fgets(line, sizeof line, fp))
                n += strncmp(line, prefix, strlen(prefix)) == 0;
        fclose(fp);
        return n;
}

/* inotify watches the kernel holds for the watch */
static int kernel_watches(struct fixture *f)
{
        char path[64];

        snprintf(path, sizeof path, "/proc/self/fdinfo/%d", files_watch_fd(f->w));
        return count_lines(path, "inotify wd:");
}

static int count_fds(void)
{
        DIR *d = opendir("/proc/self/fd");
        int n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);

        assert_non_null(f);
        f->fds = count_fds();
        snprintf(f->dir, sizeof f->dir, "/tmp/sbx-test-watch-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->rootfd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->rootfd >= 0);
        f->root = (struct files_root){ .fd = f->rootfd, .uid = 12345, .gid = 12345, .base_uid = 12345, .base_gid = 12345 };
        assert_int_equal(mkdir(hp(f, "w"), 0755), 0);
        *state = f;
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path) < 0 ? -1 : 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        int fds;

        files_watch_free(f->w);
        close(f->rootfd);
        (void)nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        fds = count_fds();
        if (fds != f->fds)
                fail_msg("%d fds open after the test, %d before", fds, f->fds);
        free(f);
        return 0;
}

static void test_recursive(void **state)
{
        struct fixture *f = *state;
        const char *const ignore[] = { "*.tmp" };
        const struct rec *r;
        int fd;

        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_TEXT, ignore, 1, 0), 0);

        fd = open(hp(f, "w/a.txt"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        expect(f, FILES_EV_ADD, "/w/a.txt");
        put(f, "w/a.txt", "hello");
        assert_int_equal(wait_for(f, FILES_EV_CHANGE, "/w/a.txt", "hello"), 0);
        r = get(f, FILES_EV_CHANGE, "/w/a.txt");
        assert_int_equal(r->len, 5);
        assert_false(r->truncated);

        /* a directory filled right away: the file must not be missed */
        assert_int_equal(mkdir(hp(f, "w/d"), 0755), 0);
        put(f, "w/d/f", "x");
        expect(f, FILES_EV_ADD_DIR, "/w/d");
        expect(f, FILES_EV_ADD, "/w/d/f");
        /* and several levels at once */
        assert_int_equal(mkdir(hp(f, "w/d2"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/d2/e"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/d2/e/g"), 0755), 0);
        put(f, "w/d2/e/g/x", "deep");
        expect(f, FILES_EV_ADD_DIR, "/w/d2/e");
        expect(f, FILES_EV_ADD_DIR, "/w/d2/e/g");
        assert_int_equal(wait_for(f, FILES_EV_ADD, "/w/d2/e/g/x", "deep"), 0);
        /* the new directories are watched */
        put(f, "w/d2/e/g/y", "later");
        assert_int_equal(wait_for(f, FILES_EV_ADD, "/w/d2/e/g/y", NULL), 0);

        assert_int_equal(rename(hp(f, "w/d/f"), hp(f, "w/d/g")), 0);
        expect(f, FILES_EV_UNLINK, "/w/d/f");
        expect(f, FILES_EV_ADD, "/w/d/g");
        assert_int_equal(unlink(hp(f, "w/d/g")), 0);
        expect(f, FILES_EV_UNLINK, "/w/d/g");
        assert_int_equal(rmdir(hp(f, "w/d")), 0);
        expect(f, FILES_EV_UNLINK_DIR, "/w/d");

        /* ignored */
        put(f, "w/x.tmp", "ignored");
        put(f, "w/d2/y.tmp", "ignored");
        sync_events(f, "w/s1", "/w/s1");
        assert_false(seen_path(f, "/w/x.tmp"));
        assert_false(seen_path(f, "/w/d2/y.tmp"));

        /* a FIFO and a symlink are reported, never opened */
        assert_int_equal(mkfifo(hp(f, "w/p"), 0644), 0);
        expect(f, FILES_EV_ADD, "/w/p");
        assert_false(get(f, FILES_EV_ADD, "/w/p")->has_content);
        assert_int_equal(symlink("/etc/passwd", hp(f, "w/l")), 0);
        expect(f, FILES_EV_ADD, "/w/l");
        assert_false(get(f, FILES_EV_ADD, "/w/l")->has_content);
}

static void test_moves(void **state)
{
        struct fixture *f = *state;

        assert_int_equal(mkdir(hp(f, "w/m"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/m/n"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "out"), 0755), 0);
        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_NONE, NULL, 0, 0), 0);

        /* moved inside the tree: followed under the new name */
        assert_int_equal(rename(hp(f, "w/m"), hp(f, "w/m2")), 0);
        expect(f, FILES_EV_UNLINK_DIR, "/w/m");
        expect(f, FILES_EV_ADD_DIR, "/w/m2");
        put(f, "w/m2/n/z", "");
        expect(f, FILES_EV_ADD, "/w/m2/n/z");
        assert_false(seen_path(f, "/w/m/n/z"));

        /* moved out: nothing more from it */
        assert_int_equal(rename(hp(f, "w/m2"), hp(f, "out/m3")), 0);
        expect(f, FILES_EV_UNLINK_DIR, "/w/m2");
        put(f, "out/m3/n/q", "");
        put(f, "out/m3/q", "");
        sync_events(f, "w/s1", "/w/s1");
        for (size_t i = 0; i < f->n; i++)
                assert_null(strstr(f->recs[i].path, "/q"));

        /* moved in with content: reported entry by entry, and watched */
        assert_int_equal(rename(hp(f, "out/m3"), hp(f, "w/back")), 0);
        expect(f, FILES_EV_ADD_DIR, "/w/back");
        expect(f, FILES_EV_ADD_DIR, "/w/back/n");
        expect(f, FILES_EV_ADD, "/w/back/n/q");
        expect(f, FILES_EV_ADD, "/w/back/q");
        put(f, "w/back/n/new", "");
        expect(f, FILES_EV_ADD, "/w/back/n/new");
}

/* the kernel's watches follow the tree: no leak when directories go or move away */
static void test_watch_count(void **state)
{
        struct fixture *f = *state;
        char rel[64], path[64];

        assert_int_equal(mkdir(hp(f, "out"), 0755), 0);
        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        assert_int_equal(kernel_watches(f), 1);
        for (int i = 0; i < 50; i++) {
                snprintf(rel, sizeof rel, "w/d%d", i);
                assert_int_equal(mkdir(hp(f, rel), 0755), 0);
                snprintf(rel, sizeof rel, "w/d%d/e", i);
                assert_int_equal(mkdir(hp(f, rel), 0755), 0);
        }
        expect(f, FILES_EV_ADD_DIR, "/w/d49/e");
        sync_events(f, "w/s1", "/w/s1");
        assert_int_equal(kernel_watches(f), 101);
        for (int i = 0; i < 50; i++) {
                snprintf(rel, sizeof rel, "w/d%d/e", i);
                assert_int_equal(rmdir(hp(f, rel)), 0);
                snprintf(rel, sizeof rel, "w/d%d", i);
                if (i % 2) {
                        assert_int_equal(rmdir(hp(f, rel)), 0);
                } else {
                        snprintf(path, sizeof path, "out/d%d", i);
                        assert_int_equal(rename(hp(f, rel), hp(f, path)), 0);
                }
        }
        expect(f, FILES_EV_UNLINK_DIR, "/w/d49");
        expect(f, FILES_EV_UNLINK_DIR, "/w/d48");
        sync_events(f, "w/s2", "/w/s2");
        assert_int_equal(kernel_watches(f), 1);
}

/* Create levels nested directories "d" under rel; returns an O_PATH fd of the deepest. */
static int make_chain(struct fixture *f, const char *rel, int levels)
{
        int fd = open(hp(f, rel), O_PATH | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        for (int i = 0; i < levels; i++) {
                int next;

                assert_int_equal(mkdirat(fd, "d", 0755), 0);
                next = openat(fd, "d", O_PATH | O_DIRECTORY | O_CLOEXEC);
                assert_true(next >= 0);
                close(fd);
                fd = next;
        }
        return fd;
}

static void test_limits(void **state)
{
        struct fixture *f = *state;
        struct sbx_err err = { 0 };
        struct files_watch_opts o = { .recursive = true };
        char path[2 * SBX_MAX_FS_DEPTH + 64];
        size_t n;
        int fd;

        /* an initial tree deeper than SBX_MAX_FS_DEPTH is refused */
        assert_int_equal(mkdir(hp(f, "deep"), 0755), 0);
        close(make_chain(f, "deep", SBX_MAX_FS_DEPTH + 1));
        assert_int_equal(files_watch_new(&f->root, "/deep", &o, &f->w, &err), -SBX_E_LIMIT);
        assert_string_equal(err.reason, "too_many_entries");
        assert_null(f->w);
        /* a flat watch does not walk it */
        assert_int_equal(watch(f, "/deep", false, FILES_CONTENT_NONE, NULL, 0, 0), 0);

        /* later, deeper directories are reported but not followed */
        fd = make_chain(f, "w", SBX_MAX_FS_DEPTH - 1);
        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        n = (size_t)snprintf(path, sizeof path, "/w");
        for (int i = 0; i < SBX_MAX_FS_DEPTH - 1; i++)
                n += (size_t)snprintf(path + n, sizeof path - n, "/d");
        assert_int_equal(mkdirat(fd, "x", 0755), 0);   /* depth 256: followed */
        assert_int_equal(mkdirat(fd, "x/y", 0755), 0); /* depth 257: reported only */
        assert_int_equal(close(openat(fd, "x/y/f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), 0);
        assert_int_equal(close(openat(fd, "x/f", O_CREAT | O_WRONLY | O_CLOEXEC, 0644)), 0);
        snprintf(path + n, sizeof path - n, "/x/f");
        expect(f, FILES_EV_ADD, path);
        snprintf(path + n, sizeof path - n, "/x/y");
        expect(f, FILES_EV_ADD_DIR, path);
        sync_events(f, "w/s", "/w/s");
        snprintf(path + n, sizeof path - n, "/x/y/f");
        assert_false(seen_path(f, path));
        close(fd);
}

static void test_flat(void **state)
{
        struct fixture *f = *state;

        assert_int_equal(mkdir(hp(f, "w/d"), 0755), 0);
        assert_int_equal(watch(f, "/w", false, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        put(f, "w/d/f", "");
        assert_int_equal(mkdir(hp(f, "w/e"), 0755), 0);
        expect(f, FILES_EV_ADD_DIR, "/w/e");
        put(f, "w/e/f", "");
        sync_events(f, "w/s", "/w/s");
        assert_false(seen_path(f, "/w/d/f"));
        assert_false(seen_path(f, "/w/e/f"));
        put(f, "w/s", "x");
        expect(f, FILES_EV_CHANGE, "/w/s");
}

static void on_overflow(void *data, const struct files_event *e)
{
        int *seen = data;

        if (e->type == FILES_EV_OVERFLOW) {
                assert_string_equal(e->path, "/w");
                assert_string_equal(files_event_type_to_string(e->type), "overflow");
                (*seen)++;
        }
}

/* More events than the kernel queues (fs.inotify.max_queued_events) before a read: one overflow
 * event, then the watch goes on. */
static void test_overflow(void **state)
{
        struct fixture *f = *state;
        struct pollfd p;
        char buf[32] = "";
        int max = 16384, seen = 0;

        assert_int_equal(watch(f, "/w", false, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        p = (struct pollfd){ .fd = files_watch_fd(f->w), .events = POLLIN };
        {
                FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "re");
                if (q && fgets(buf, sizeof buf, q))
                        max = atoi(buf);
                if (q)
                        fclose(q);
        }
        /* create + close-write + delete: three distinct events (identical ones would be merged) */
        for (int i = 0; i < max / 3 + 100; i++) {
                put(f, "w/x", "");
                assert_int_equal(unlink(hp(f, "w/x")), 0);
        }
        while (seen == 0 && poll(&p, 1, WAIT_MS) > 0)
                assert_true(files_watch_read(f->w, on_overflow, &seen) >= 0);
        assert_int_equal(seen, 1);
        while (poll(&p, 1, 0) > 0)
                assert_true(files_watch_read(f->w, on_overflow, &seen) >= 0);
        f->n = 0;
        put(f, "w/after", "");
        expect(f, FILES_EV_ADD, "/w/after");
}

static void test_initial_tree_ignore(void **state)
{
        struct fixture *f = *state;
        const char *const ignore[] = { "node_modules", "*.log", "b/skip" };

        assert_int_equal(mkdir(hp(f, "w/a"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/a/b"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/a/b/c"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/node_modules"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/b"), 0755), 0);
        assert_int_equal(mkdir(hp(f, "w/b/skip"), 0755), 0);
        /* the root's "/" reached through "..": still /w */
        assert_int_equal(watch(f, "/../w/./", true, FILES_CONTENT_BASE64, ignore, ELEMENTSOF(ignore), 0), 0);
        assert_int_equal(f->n, 0); /* the initial tree is not reported */
        put(f, "w/a/b/c/f", "\x01\x02");
        assert_int_equal(wait_for(f, FILES_EV_ADD, "/w/a/b/c/f", "\x01\x02"), 0);
        put(f, "w/node_modules/x", "");
        put(f, "w/a/z.log", "");
        put(f, "w/b/skip/x", "");
        assert_int_equal(mkdir(hp(f, "w/a/node_modules"), 0755), 0);
        put(f, "w/a/node_modules/y", "");
        sync_events(f, "w/a/s", "/w/a/s");
        assert_false(seen_path(f, "/w/node_modules/x"));
        assert_false(seen_path(f, "/w/a/z.log"));
        assert_false(seen_path(f, "/w/b/skip/x"));
        assert_false(seen_path(f, "/w/a/node_modules"));
        assert_false(seen_path(f, "/w/a/node_modules/y"));
}

static void test_content(void **state)
{
        struct fixture *f = *state;
        const struct rec *r;

        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_TEXT, NULL, 0, 4), 0);
        put(f, "w/big", "abcdefgh");
        assert_int_equal(wait_for(f, FILES_EV_ADD, "/w/big", "abcd"), 0);
        r = get(f, FILES_EV_ADD, "/w/big");
        assert_int_equal(r->len, 4);
        assert_true(r->truncated);
        put(f, "w/small", "abc");
        assert_int_equal(wait_for(f, FILES_EV_ADD, "/w/small", "abc"), 0);
        assert_false(get(f, FILES_EV_ADD, "/w/small")->truncated);

        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        put(f, "w/plain", "abc");
        expect(f, FILES_EV_ADD, "/w/plain");
        assert_false(get(f, FILES_EV_ADD, "/w/plain")->has_content);
}

static void test_gone(void **state)
{
        struct fixture *f = *state;
        struct pollfd p = { .events = POLLIN };
        int q = 0;

        assert_int_equal(mkdir(hp(f, "w/sub"), 0755), 0);
        assert_int_equal(watch(f, "/w/sub", true, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        put(f, "w/sub/f", "");
        expect(f, FILES_EV_ADD, "/w/sub/f");
        assert_int_equal(unlink(hp(f, "w/sub/f")), 0);
        assert_int_equal(rmdir(hp(f, "w/sub")), 0);
        p.fd = files_watch_fd(f->w);
        for (int i = 0; i < 10 && q == 0; i++) {
                assert_int_equal(poll(&p, 1, WAIT_MS), 1);
                q = files_watch_read(f->w, on_event, f);
        }
        assert_int_equal(q, -ENOENT);
        assert_non_null(find(f, FILES_EV_UNLINK, "/w/sub/f")); /* delivered before the end */
        assert_int_equal(files_watch_read(f->w, on_event, f), -ENOENT);

        /* moving the watched directory away ends the watch too */
        assert_int_equal(mkdir(hp(f, "w/sub2"), 0755), 0);
        assert_int_equal(watch(f, "/w/sub2", false, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        assert_int_equal(rename(hp(f, "w/sub2"), hp(f, "w/sub3")), 0);
        p.fd = files_watch_fd(f->w);
        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
        assert_int_equal(files_watch_read(f->w, on_event, f), -ENOENT);
}

static void test_errors(void **state)
{
        struct fixture *f = *state;
        struct files_watch_opts o = { .recursive = true };
        const char *ignore[SBX_MAX_WATCH_IGNORE + 1];
        struct files_watch *w = NULL;
        struct sbx_err err = { 0 };

        for (size_t i = 0; i < ELEMENTSOF(ignore); i++)
                ignore[i] = "*.x";
        o.ignore = ignore;
        o.n_ignore = ELEMENTSOF(ignore);
        assert_int_equal(files_watch_new(&f->root, "/w", &o, &w, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_value");
        o.n_ignore = 1;
        ignore[0] = "";
        sbx_err_clear(&err);
        assert_int_equal(files_watch_new(&f->root, "/w", &o, &w, &err), -SBX_E_INVALID);
        ignore[0] = "*.x";
        o.max_content = SBX_MAX_WATCH_CONTENT + 1;
        assert_int_equal(files_watch_new(&f->root, "/w", &o, &w, NULL), -SBX_E_INVALID);
        o.max_content = 0;

        sbx_err_clear(&err);
        assert_int_equal(files_watch_new(&f->root, "/missing", &o, &w, &err), -SBX_E_NOT_FOUND);
        assert_string_equal(err.reason, "file_not_found");
        put(f, "w/file", "");
        sbx_err_clear(&err);
        assert_int_equal(files_watch_new(&f->root, "/w/file", &o, &w, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "not_a_directory");
        /* symlinks resolve inside the root: "/etc" here is <root>/etc, which does not exist */
        assert_int_equal(symlink("../../../../etc", hp(f, "esc")), 0);
        assert_int_equal(files_watch_new(&f->root, "/esc", &o, &w, NULL), -SBX_E_NOT_FOUND);
        assert_null(w);
        /* a pseudo filesystem is refused */
        {
                struct files_root proc = { .fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC) };

                assert_true(proc.fd >= 0);
                sbx_err_clear(&err);
                assert_int_equal(files_watch_new(&proc, "/self", &o, &w, &err), -SBX_E_FORBIDDEN);
                assert_string_equal(err.reason, "path_forbidden");
                close(proc.fd);
        }

        /* the whole root, with defaults */
        assert_int_equal(files_watch_new(&f->root, "/", NULL, &w, NULL), 0);
        assert_true(files_watch_fd(w) >= 0);
        files_watch_free(w);
        files_watch_free(NULL);

        assert_string_equal(files_event_type_to_string(FILES_EV_ADD), "add");
        assert_string_equal(files_event_type_to_string(FILES_EV_CHANGE), "change");
        assert_string_equal(files_event_type_to_string(FILES_EV_UNLINK), "unlink");
        assert_string_equal(files_event_type_to_string(FILES_EV_ADD_DIR), "addDir");
        assert_string_equal(files_event_type_to_string(FILES_EV_UNLINK_DIR), "unlinkDir");
        assert_null(files_event_type_to_string((enum files_event_type)42));
}

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

static void test_latency(void **state)
{
        struct fixture *f = *state;
        struct pollfd p = { .events = POLLIN };
        uint64_t lat[200];
        int fd;

        put(f, "w/lat", "");
        assert_int_equal(watch(f, "/w", true, FILES_CONTENT_NONE, NULL, 0, 0), 0);
        p.fd = files_watch_fd(f->w);
        fd = open(hp(f, "w/lat"), O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        for (size_t i = 0; i < ELEMENTSOF(lat); i++) {
                uint64_t t0;

                f->n = 0;
                t0 = now_ns();
                assert_int_equal(write(fd, "x", 1), 1);
                while (!find(f, FILES_EV_CHANGE, "/w/lat")) {
                        assert_int_equal(poll(&p, 1, WAIT_MS), 1);
                        assert_int_equal(files_watch_read(f->w, on_event, f), 0);
                }
                lat[i] = now_ns() - t0;
        }
        close(fd);
        qsort(lat, ELEMENTSOF(lat), sizeof lat[0], cmp_u64);
        print_message("write -> event latency over %zu writes: p50 %.1f us, p99 %.1f us, max %.1f us\n",
                      ELEMENTSOF(lat), lat[ELEMENTSOF(lat) / 2] / 1e3, lat[ELEMENTSOF(lat) * 99 / 100] / 1e3,
                      lat[ELEMENTSOF(lat) - 1] / 1e3);
        /* generous: sanitizers and a loaded CI host */
        assert_true(lat[ELEMENTSOF(lat) * 99 / 100] < 100 * 1000000ULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_recursive, setup, teardown),
                cmocka_unit_test_setup_teardown(test_moves, setup, teardown),
                cmocka_unit_test_setup_teardown(test_watch_count, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_flat, setup, teardown),
                cmocka_unit_test_setup_teardown(test_initial_tree_ignore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_content, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_overflow, setup, teardown),
                cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
