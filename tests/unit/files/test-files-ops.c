// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/files/ops.c and write.c on a real tree: a mkdtemp directory under /tmp is
 * the root (uid/gid 12345 stand for the sandbox's root), and escapes through "..", absolute and
 * relative symlinks must stay inside it. A child in its own mount namespace plays the running
 * sandbox, so that its mounts are foreign to this process like they are to sbxd. Needs root.
 * Every test removes its tree.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/err.h"
#include "common/limits.h"
#include "files/files-internal.h"
#include "files/files.h"

#define ID 12345

struct fx {
        char dir[64];
        int fd;
        struct files_root r;
};

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
        (void)remove(p);
        return 0;
}

static void rm_rf(const char *p)
{
        (void)nftw(p, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int setup(void **state)
{
        struct fx *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/sbx-files-ops-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->fd >= 0);
        f->r = (struct files_root){ .fd = f->fd, .uid = ID, .gid = ID, .base_uid = ID, .base_gid = ID };
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fx *f = *state;

        close(f->fd);
        rm_rf(f->dir);
        free(f);
        return 0;
}

/* host path of rel inside the tree (tests only: the code under test never sees these) */
static const char *H(const struct fx *f, const char *rel)
{
        static char buf[4][PATH_MAX];
        static int n;
        char *b = buf[n++ % 4];

        snprintf(b, PATH_MAX, "%s/%s", f->dir, rel);
        return b;
}

static void put(const struct fx *f, const char *rel, const char *content)
{
        int fd = open(H(f, rel), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

static void mk(const struct fx *f, const char *rel)
{
        assert_int_equal(mkdir(H(f, rel), 0755), 0);
}

/* content of rel, or "<errno>" */
static const char *slurp(const struct fx *f, const char *rel)
{
        static char buf[256];
        int fd = open(H(f, rel), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        ssize_t n;

        if (fd < 0) {
                snprintf(buf, sizeof buf, "<%s>", strerrorname_np(errno));
                return buf;
        }
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        buf[n < 0 ? 0 : n] = '\0';
        return buf;
}

static struct stat lst(const struct fx *f, const char *rel)
{
        struct stat st = {};

        assert_int_equal(lstat(H(f, rel), &st), 0);
        return st;
}

static bool exists(const struct fx *f, const char *rel)
{
        struct stat st;

        return lstat(H(f, rel), &st) == 0;
}

#define assert_err(call, code, rsn)                                                \
        do {                                                                       \
                struct sbx_err e_ = {};                                            \
                int q_ = (call);                                                   \
                if (q_ != (code) || strcmp(e_.reason, rsn) != 0)                   \
                        print_message("got %d '%s': %s\n", q_, e_.reason, e_.msg); \
                assert_int_equal(q_, code);                                        \
                assert_string_equal(e_.reason, rsn);                               \
        } while (0)
#define E (&e_)

#define assert_ok(call)                                                               \
        do {                                                                          \
                struct sbx_err e_ = {};                                               \
                int q_ = (call);                                                      \
                if (q_ < 0)                                                           \
                        print_message("failed %d '%s': %s\n", q_, e_.reason, e_.msg); \
                assert_true(q_ >= 0);                                                 \
        } while (0)

static const char *jstr(const json_t *o, const char *k)
{
        const char *s = json_string_value(json_object_get(o, k));

        assert_non_null(s);
        return s;
}

static json_int_t jint(const json_t *o, const char *k)
{
        assert_true(json_is_integer(json_object_get(o, k)));
        return json_integer_value(json_object_get(o, k));
}

/* append s to the NUL-terminated text in buf (size bytes) */
static void append(char *buf, size_t size, const char *s)
{
        size_t n = strlen(buf);

        assert_true(n + strlen(s) < size);
        snprintf(buf + n, size - n, "%s", s);
}

/* ---------- stat ---------- */

static void test_stat(void **state)
{
        struct fx *f = *state;
        json_t *e = NULL;

        put(f, "file", "hello");
        assert_int_equal(chown(H(f, "file"), ID + 5, ID + 6), 0);
        assert_int_equal(chmod(H(f, "file"), 04751), 0);
        mk(f, "dir");
        assert_int_equal(symlink("/../../etc/passwd", H(f, "link")), 0);
        put(f, "hostowned", "x");
        assert_int_equal(chown(H(f, "hostowned"), 0, 0), 0);

        assert_ok(files_stat(&f->r, "/file", &e, E));
        assert_string_equal(jstr(e, "name"), "file");
        assert_string_equal(jstr(e, "path"), "/file");
        assert_string_equal(jstr(e, "type"), "file");
        assert_int_equal(jint(e, "size"), 5);
        assert_int_equal(jint(e, "mode"), 04751);
        assert_int_equal(jint(e, "uid"), 5);
        assert_int_equal(jint(e, "gid"), 6);
        assert_null(json_object_get(e, "symlinkTarget"));
        const char *m = jstr(e, "mtime");
        assert_int_equal(strlen(m), 24); /* 2026-01-02T03:04:05.678Z */
        assert_int_equal(m[10], 'T');
        assert_int_equal(m[19], '.');
        assert_int_equal(m[23], 'Z');
        json_decref(e);

        assert_ok(files_stat(&f->r, "dir/./", &e, E));
        assert_string_equal(jstr(e, "type"), "dir");
        assert_string_equal(jstr(e, "path"), "/dir");
        json_decref(e);

        /* a symlink is described, never followed */
        assert_ok(files_stat(&f->r, "link", &e, E));
        assert_string_equal(jstr(e, "type"), "symlink");
        assert_string_equal(jstr(e, "symlinkTarget"), "/../../etc/passwd");
        assert_int_equal(jint(e, "size"), strlen("/../../etc/passwd"));
        json_decref(e);

        /* ids outside the sandbox's range */
        assert_ok(files_stat(&f->r, "hostowned", &e, E));
        assert_int_equal(jint(e, "uid"), 65534);
        assert_int_equal(jint(e, "gid"), 65534);
        json_decref(e);

        assert_ok(files_stat(&f->r, "/", &e, E));
        assert_string_equal(jstr(e, "path"), "/");
        assert_string_equal(jstr(e, "type"), "dir");
        json_decref(e);

        assert_err(files_stat(&f->r, "/nope", &e, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_stat(&f->r, "/file/x", &e, E), -SBX_E_INVALID, "not_a_directory");
}

/* ---------- list ---------- */

/* Concatenate all pages of a listing; returns the paths joined by '\n' (static) and the page count. */
static const char *list_all(struct fx *f, const char *path, bool recursive, size_t limit, int *ret_pages)
{
        static char out[16384];
        char cursor[SBX_MAX_FILE_PATH + 1] = "";
        int pages = 0;

        out[0] = '\0';
        for (;;) {
                struct files_list_opts o = { .recursive = recursive,
                                             .limit = limit,
                                             .cursor = cursor[0] ? cursor : NULL };
                json_t *res = NULL, *e;
                size_t i;

                assert_ok(files_list(&f->r, path, &o, &res, E));
                pages++;
                assert_true(json_array_size(json_object_get(res, "entries")) <= limit);
                json_array_foreach(json_object_get(res, "entries"), i, e) {
                        append(out, sizeof out, jstr(e, "path"));
                        append(out, sizeof out, "\n");
                }
                json_t *next = json_object_get(res, "nextCursor");
                assert_non_null(next);
                if (json_is_null(next)) {
                        json_decref(res);
                        break;
                }
                snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
                json_decref(res);
                assert_true(pages < 1000);
        }
        *ret_pages = pages;
        return out;
}

static void test_list_pages(void **state)
{
        struct fx *f = *state;
        char name[32], want[4096] = "";
        struct files_list_opts o = { .limit = 10 };
        json_t *res = NULL, *e;
        int pages;

        mk(f, "L");
        for (int i = 24; i >= 0; i--) {
                snprintf(name, sizeof name, "L/f%02d", i);
                put(f, name, "x");
        }
        mk(f, "L/sub");
        put(f, "L/sub/inner", "x");
        for (int i = 0; i < 25; i++) {
                snprintf(name, sizeof name, "/L/f%02d\n", i);
                append(want, sizeof want, name);
        }
        append(want, sizeof want, "/L/sub\n");

        /* page 1 by hand */
        assert_ok(files_list(&f->r, "/L", &o, &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 10);
        e = json_array_get(json_object_get(res, "entries"), 0);
        assert_string_equal(jstr(e, "name"), "f00");
        assert_string_equal(jstr(e, "path"), "/L/f00");
        assert_string_equal(jstr(e, "type"), "file");
        assert_string_equal(jstr(res, "nextCursor"), "/L/f09");
        json_decref(res);

        /* three pages, nothing repeated or lost; the directory itself is not listed */
        assert_string_equal(list_all(f, "L", false, 10, &pages), want);
        assert_int_equal(pages, 3);
        /* a cursor before the directory lists everything, one after it nothing */
        o.cursor = "/K";
        assert_ok(files_list(&f->r, "/L", &o, &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 10);
        json_decref(res);
        o.cursor = "/M";
        assert_ok(files_list(&f->r, "/L", &o, &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 0);
        assert_true(json_is_null(json_object_get(res, "nextCursor")));
        json_decref(res);

        o.cursor = "/L/\xff";
        assert_err(files_list(&f->r, "/L", &o, &res, E), -SBX_E_INVALID, "invalid_path");
        o.cursor = NULL;
        o.limit = SBX_MAX_FS_LIST_LIMIT + 1;
        assert_err(files_list(&f->r, "/L", &o, &res, E), -SBX_E_INVALID, "invalid_value");
        o.limit = 0;
        assert_err(files_list(&f->r, "/L/f00", &o, &res, E), -SBX_E_INVALID, "not_a_directory");
        assert_err(files_list(&f->r, "/nope", &o, &res, E), -SBX_E_NOT_FOUND, "file_not_found");
}

static void test_list_recursive(void **state)
{
        struct fx *f = *state;
        const char *want = "/R/a\n/R/a-x\n/R/a.y\n/R/a/b\n/R/a/b/c\n/R/a/link\n/R/b\n/R/bad\xef\xbf\xbd\n";
        json_t *res = NULL, *e;
        size_t i;
        int pages;

        mk(f, "R");
        mk(f, "R/a");
        mk(f, "R/a/b");
        put(f, "R/a/b/c", "x");
        put(f, "R/a-x", "x");
        put(f, "R/a.y", "x");
        put(f, "R/b", "x");
        put(f, "R/bad\xff", "x");                             /* not UTF-8: shown with U+FFFD */
        assert_int_equal(symlink("/R", H(f, "R/a/link")), 0); /* listed, not followed */

        assert_string_equal(list_all(f, "/R", true, 1000, &pages), want);
        assert_int_equal(pages, 1);
        for (size_t lim = 1; lim <= 4; lim++) {
                assert_string_equal(list_all(f, "/R", true, lim, &pages), want);
                assert_int_equal(pages, (8 + lim - 1) / lim);
        }
        struct files_list_opts o = { .recursive = true };
        assert_ok(files_list(&f->r, "/R", &o, &res, E));
        json_array_foreach(json_object_get(res, "entries"), i, e) {
                if (strcmp(jstr(e, "name"), "link") == 0) {
                        assert_string_equal(jstr(e, "type"), "symlink");
                        assert_string_equal(jstr(e, "symlinkTarget"), "/R");
                }
                if (strcmp(jstr(e, "name"), "bad\xef\xbf\xbd") == 0)
                        assert_int_equal(jint(e, "size"), 1); /* stat of the raw name worked */
        }
        json_decref(res);
        /* depth: 1 = the directory's entries, 2 = one level below too */
        for (unsigned d = 1; d <= 3; d++) {
                struct files_list_opts od = { .recursive = true, .max_depth = d };
                size_t n = 0;

                res = NULL;
                assert_ok(files_list(&f->r, "/R", &od, &res, E));
                json_array_foreach(json_object_get(res, "entries"), i, e) {
                        const char *p = jstr(e, "path");
                        unsigned level = 0;

                        for (const char *c = p + 2; *c; c++)
                                level += *c == '/';
                        assert_true(level <= d);
                        n++;
                }
                assert_int_equal(n, d == 1 ? 5 : d == 2 ? 7 : 8);
                json_decref(res);
        }
        /* the root, relative paths */
        assert_string_equal(list_all(f, "R/a/..", false, 3, &pages),
                            "/R/a\n/R/a-x\n/R/a.y\n/R/b\n/R/bad\xef\xbf\xbd\n");
        assert_string_equal(list_all(f, "/", false, 3, &pages), "/R\n");
}

static void test_list_big(void **state)
{
        struct fx *f = *state;
        struct files_list_opts o = { .limit = 1000 };
        char name[32], cursor[64];
        struct timespec t0, t1;
        json_t *res = NULL;
        int dfd;

        /* a tmpfs (allowed like a sandbox's /tmp): 100,000 creates on a busy ext4 can take longer
         * than the test's timeout, and the listing is what is measured here */
        mk(f, "big");
        assert_int_equal(mount("tmpfs", H(f, "big"), "tmpfs", 0, "size=64m,nr_inodes=200k"), 0);
        dfd = open(H(f, "big"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        for (int i = 0; i < 100000; i++) {
                snprintf(name, sizeof name, "file-%06d", (i * 7919) % 100000);
                int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                close(fd);
        }
        close(dfd);

        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_ok(files_list(&f->r, "/big", &o, &res, E));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double first = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 1000);
        assert_string_equal(jstr(res, "nextCursor"), "/big/file-000999");
        json_decref(res);

        snprintf(cursor, sizeof cursor, "/big/file-049999");
        o.cursor = cursor;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_ok(files_list(&f->r, "/big", &o, &res, E));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double mid = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_string_equal(jstr(json_array_get(json_object_get(res, "entries"), 0), "name"), "file-050000");
        assert_string_equal(jstr(res, "nextCursor"), "/big/file-050999");
        json_decref(res);

        o.recursive = true;
        o.cursor = NULL;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_ok(files_list(&f->r, "/big", &o, &res, E));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double rec = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 1000);
        json_decref(res);
        assert_int_equal(umount2(H(f, "big"), MNT_DETACH), 0);

        print_message("100,000 entries, page of 1000: first %.3f s, after a cursor %.3f s, recursive %.3f s\n", first,
                      mid, rec);
        assert_true(first < 1.0);
        assert_true(mid < 1.0);
        assert_true(rec < 1.0);
}

/* The cache of a plain listing's names is kept only for a directory left alone a while (ops.c:
 * LIST_CACHE_SETTLE_NSEC): wait longer than that. */
static void settle(void)
{
        struct timespec ts = { .tv_nsec = 250 * 1000000 };

        nanosleep(&ts, NULL);
}

/* One page of a plain listing: paths joined by '\n' into out (static), nextCursor into cursor ("" at
 * the end); the cache's hits and misses it caused into *ret_hit / *ret_miss. */
static const char *list_one(const struct files_root *r, const char *path, size_t limit, char *cursor, int *ret_hit,
                            int *ret_miss)
{
        static char out[4096];
        struct files_list_opts o = { .limit = limit, .cursor = cursor[0] ? cursor : NULL };
        uint64_t h0, m0, h1, m1;
        json_t *res = NULL, *e, *next;
        size_t i;

        out[0] = '\0';
        files__list_cache_stats(&h0, &m0);
        assert_ok(files_list(r, path, &o, &res, E));
        files__list_cache_stats(&h1, &m1);
        *ret_hit = (int)(h1 - h0);
        *ret_miss = (int)(m1 - m0);
        json_array_foreach(json_object_get(res, "entries"), i, e) {
                append(out, sizeof out, jstr(e, "path"));
                append(out, sizeof out, "\n");
        }
        next = json_object_get(res, "nextCursor");
        snprintf(cursor, SBX_MAX_FILE_PATH + 1, "%s", json_is_string(next) ? json_string_value(next) : "");
        json_decref(res);
        return out;
}

static void test_list_cache(void **state)
{
        struct fx *f = *state;
        char name[32], cursor[SBX_MAX_FILE_PATH + 1] = "";
        _cleanup_close_ int other = -EBADF;
        struct files_root r2;
        int hit, miss;

        mk(f, "C");
        for (int i = 0; i < 30; i++) {
                snprintf(name, sizeof name, "C/c%02d", i);
                put(f, name, "x");
        }
        settle();

        /* page 1 reads the directory and keeps its names; page 2 takes them from the cache */
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c00\n/C/c01\n/C/c02\n/C/c03\n");
        assert_int_equal(hit, 0);
        assert_int_equal(miss, 1);
        assert_string_equal(cursor, "/C/c03");
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c04\n/C/c05\n/C/c06\n/C/c07\n");
        assert_int_equal(hit, 1);
        assert_int_equal(miss, 0);

        /* a change between pages shows on the next page: an entry added after the cursor, one removed */
        put(f, "C/c08a", "x");
        assert_int_equal(unlink(H(f, "C/c09")), 0);
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c08\n/C/c08a\n/C/c10\n/C/c11\n");
        assert_int_equal(hit, 0);
        assert_int_equal(miss, 1);
        /* just changed: read again, not kept, until it has settled */
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c12\n/C/c13\n/C/c14\n/C/c15\n");
        assert_int_equal(miss, 1);
        /* a rename is a change too */
        settle();
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c16\n/C/c17\n/C/c18\n/C/c19\n");
        assert_int_equal(miss, 1);
        assert_int_equal(rename(H(f, "C/c20"), H(f, "C/c99")), 0);
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c21\n/C/c22\n/C/c23\n/C/c24\n");
        assert_int_equal(hit, 0);
        assert_int_equal(miss, 1);
        settle();
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c25\n/C/c26\n/C/c27\n/C/c28\n");
        assert_int_equal(miss, 1);
        assert_string_equal(list_one(&f->r, "/C", 4, cursor, &hit, &miss), "/C/c29\n/C/c99\n");
        assert_int_equal(hit, 1);
        assert_string_equal(cursor, "");
        /* the same directory under another path of the same root: the same names */
        cursor[0] = '\0';
        assert_string_equal(list_one(&f->r, "/C/../C/.", 4, cursor, &hit, &miss), "/C/c00\n/C/c01\n/C/c02\n/C/c03\n");
        assert_int_equal(hit, 1);

        /* the same directory reached from another root (a sandbox whose tree holds this one's /C):
         * never shares the first root's names */
        mk(f, "inner");
        assert_int_equal(rename(H(f, "C"), H(f, "inner/C")), 0);
        settle();
        cursor[0] = '\0';
        assert_string_equal(list_one(&f->r, "/inner/C", 4, cursor, &hit, &miss),
                            "/inner/C/c00\n/inner/C/c01\n/inner/C/c02\n/inner/C/c03\n");
        assert_int_equal(miss, 1);
        assert_string_equal(list_one(&f->r, "/inner/C", 4, cursor, &hit, &miss),
                            "/inner/C/c04\n/inner/C/c05\n/inner/C/c06\n/inner/C/c07\n");
        assert_int_equal(hit, 1);
        other = open(H(f, "inner"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(other >= 0);
        r2 = (struct files_root){ .fd = other, .uid = ID, .gid = ID, .base_uid = ID, .base_gid = ID };
        cursor[0] = '\0';
        assert_string_equal(list_one(&r2, "/C", 4, cursor, &hit, &miss), "/C/c00\n/C/c01\n/C/c02\n/C/c03\n");
        assert_int_equal(hit, 0);
        assert_int_equal(miss, 1);
        assert_string_equal(list_one(&r2, "/C", 4, cursor, &hit, &miss), "/C/c04\n/C/c05\n/C/c06\n/C/c07\n");
        assert_int_equal(hit, 1);
        /* and the first root still has its own */
        cursor[0] = '\0';
        assert_string_equal(list_one(&f->r, "/inner/C", 4, cursor, &hit, &miss),
                            "/inner/C/c00\n/inner/C/c01\n/inner/C/c02\n/inner/C/c03\n");
        assert_int_equal(hit, 1);

        /* a listing that fits one page is not kept (it would push a larger one out) */
        mk(f, "small");
        put(f, "small/a", "x");
        settle();
        cursor[0] = '\0';
        assert_string_equal(list_one(&f->r, "/small", 10, cursor, &hit, &miss), "/small/a\n");
        assert_int_equal(miss, 1);
        assert_string_equal(list_one(&f->r, "/small", 10, cursor, &hit, &miss), "/small/a\n");
        assert_int_equal(miss, 1);
}

/* More names than a listing keeps in memory (ops.c LIST_NAMES_MAX_BYTES, 16 MiB): the page is chosen
 * like a recursive listing's, and paging still lists each entry once, in order. */
static void test_list_huge_names(void **state)
{
        struct fx *f = *state;
        char name[NAME_MAX + 1], cursor[SBX_MAX_FILE_PATH + 1] = "", prev[NAME_MAX + 1] = "";
        const int n = 70000;
        size_t total = 0;
        int dfd, pages = 0;
        uint64_t h0, m0, h1, m1;

        mk(f, "huge");
        assert_int_equal(mount("tmpfs", H(f, "huge"), "tmpfs", 0, "size=16m,nr_inodes=100k"), 0);
        dfd = open(H(f, "huge"), O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        memset(name, 'n', 250);
        name[250] = '\0';
        for (int i = 0; i < n; i++) {
                char num[8];

                snprintf(num, sizeof num, "%06d", (i * 7919) % n);
                memcpy(name + 244, num, 6); /* 250 bytes each: 70,000 of them make 17.5 MB */
                int fd = openat(dfd, name, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                close(fd);
        }
        close(dfd);
        settle();

        files__list_cache_stats(&h0, &m0);
        for (;;) {
                struct files_list_opts o = { .limit = SBX_MAX_FS_LIST_LIMIT, .cursor = cursor[0] ? cursor : NULL };
                json_t *res = NULL, *e, *next;
                size_t i;

                assert_ok(files_list(&f->r, "/huge", &o, &res, E));
                pages++;
                json_array_foreach(json_object_get(res, "entries"), i, e) {
                        const char *nm = jstr(e, "name");

                        assert_int_equal(strlen(nm), 250);
                        assert_true(strcmp(prev, nm) < 0);
                        snprintf(prev, sizeof prev, "%s", nm);
                        total++;
                }
                next = json_object_get(res, "nextCursor");
                snprintf(cursor, sizeof cursor, "%s", json_is_string(next) ? json_string_value(next) : "");
                json_decref(res);
                if (!cursor[0])
                        break;
                assert_true(pages < 100);
        }
        files__list_cache_stats(&h1, &m1);
        assert_int_equal(total, n);
        assert_int_equal(pages, (n + SBX_MAX_FS_LIST_LIMIT - 1) / SBX_MAX_FS_LIST_LIMIT);
        assert_int_equal(h1 - h0, 0); /* never kept */
        assert_int_equal(m1 - m0, pages);
        assert_int_equal(umount2(H(f, "huge"), MNT_DETACH), 0);
}

/* ---------- mkdir, move, chmod ---------- */

static void test_mkdir(void **state)
{
        struct fx *f = *state;

        assert_ok(files_mkdir(&f->r, "m", false, 0750, E));
        struct stat st = lst(f, "m");
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0750);
        assert_int_equal(st.st_uid, ID);
        assert_int_equal(st.st_gid, ID);
        assert_err(files_mkdir(&f->r, "m", false, 0755, E), -SBX_E_CONFLICT, "already_exists");
        assert_ok(files_mkdir(&f->r, "m", true, 0755, E));
        assert_int_equal(lst(f, "m").st_mode & 07777, 0750); /* left alone */

        assert_err(files_mkdir(&f->r, "p/q/r", false, 0755, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_ok(files_mkdir(&f->r, "/p/q/r", true, 0700, E));
        assert_int_equal(lst(f, "p").st_uid, ID);
        assert_int_equal(lst(f, "p/q").st_gid, ID);
        assert_int_equal(lst(f, "p/q/r").st_mode & 07777, 0700);
        assert_int_equal(lst(f, "p/q/r").st_uid, ID);

        put(f, "file", "x");
        assert_err(files_mkdir(&f->r, "file", true, 0755, E), -SBX_E_CONFLICT, "already_exists");
        assert_err(files_mkdir(&f->r, "file/x", true, 0755, E), -SBX_E_INVALID, "not_a_directory");
        assert_ok(files_mkdir(&f->r, "/", true, 0755, E));
        assert_err(files_mkdir(&f->r, "/", false, 0755, E), -SBX_E_CONFLICT, "already_exists");
        /* a link to a directory is fine for -p, resolved in the root */
        assert_int_equal(symlink("/p", H(f, "lp")), 0);
        assert_ok(files_mkdir(&f->r, "lp", true, 0755, E));
        assert_int_equal(symlink("/etc", H(f, "le")), 0); /* no /etc in the root */
        assert_err(files_mkdir(&f->r, "le", true, 0755, E), -SBX_E_CONFLICT, "already_exists");
}

static void test_move(void **state)
{
        struct fx *f = *state;

        put(f, "a", "A");
        put(f, "b", "B");
        assert_err(files_move(&f->r, "a", "b", false, false, E), -SBX_E_CONFLICT, "already_exists");
        assert_string_equal(slurp(f, "b"), "B");
        assert_ok(files_move(&f->r, "a", "/b", true, false, E));
        assert_string_equal(slurp(f, "b"), "A");
        assert_false(exists(f, "a"));
        assert_err(files_move(&f->r, "a", "c", false, false, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_move(&f->r, "/", "c", false, false, E), -SBX_E_INVALID, "invalid_path");
        assert_err(files_move(&f->r, "b", "/", true, false, E), -SBX_E_INVALID, "invalid_path");
        assert_err(files_move(&f->r, "b", "x/y/z", false, false, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_ok(files_move(&f->r, "b", "x/y/z", false, true, E));
        assert_string_equal(slurp(f, "x/y/z"), "A");
        assert_int_equal(lst(f, "x/y").st_uid, ID);
        assert_err(files_move(&f->r, "x", "x/y/inside", false, false, E), -SBX_E_INVALID, "invalid_value");
        mk(f, "full");
        put(f, "full/f", "x");
        mk(f, "empty");
        assert_err(files_move(&f->r, "empty", "full", true, false, E), -SBX_E_CONFLICT, "directory_not_empty");
        assert_err(files_move(&f->r, "x/y/z", "empty", true, false, E), -SBX_E_INVALID, "is_a_directory");
        /* a symlink moves as a link */
        assert_int_equal(symlink("/full", H(f, "ln")), 0);
        assert_ok(files_move(&f->r, "ln", "ln2", false, false, E));
        assert_true(S_ISLNK(lst(f, "ln2").st_mode));
        assert_string_equal(slurp(f, "full/f"), "x");
}

static void test_chmod(void **state)
{
        struct fx *f = *state;

        put(f, "file", "x");
        mk(f, "dir");
        assert_int_equal(symlink("/file", H(f, "link")), 0);
        assert_ok(files_chmod(&f->r, "file", 0600, E));
        assert_int_equal(lst(f, "file").st_mode & 07777, 0600);
        assert_ok(files_chmod(&f->r, "file", 0104755, E)); /* type bits dropped */
        assert_int_equal(lst(f, "file").st_mode & 07777, 04755);
        assert_ok(files_chmod(&f->r, "/dir", 01777, E));
        assert_int_equal(lst(f, "dir").st_mode & 07777, 01777);
        assert_err(files_chmod(&f->r, "link", 0600, E), -SBX_E_INVALID, "invalid_value");
        assert_int_equal(lst(f, "file").st_mode & 07777, 04755);
        assert_err(files_chmod(&f->r, "nope", 0600, E), -SBX_E_NOT_FOUND, "file_not_found");
}

/* ---------- copy, delete ---------- */

static void test_copy(void **state)
{
        struct fx *f = *state;

        put(f, "file", "content");
        assert_int_equal(chmod(H(f, "file"), 0751), 0);
        assert_int_equal(chown(H(f, "file"), 0, 0), 0);
        assert_ok(files_copy(&f->r, "file", "copy", false, false, E));
        assert_string_equal(slurp(f, "copy"), "content");
        assert_int_equal(lst(f, "copy").st_mode & 07777, 0751);
        assert_int_equal(lst(f, "copy").st_uid, ID);
        assert_err(files_copy(&f->r, "file", "copy", false, false, E), -SBX_E_CONFLICT, "already_exists");
        put(f, "file", "v2");
        assert_ok(files_copy(&f->r, "file", "copy", true, false, E));
        assert_string_equal(slurp(f, "copy"), "v2");
        assert_err(files_copy(&f->r, "nope", "x", false, false, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_copy(&f->r, "file", "a/b", false, false, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_ok(files_copy(&f->r, "file", "a/b", false, true, E));
        assert_int_equal(lst(f, "a").st_uid, ID);

        /* a symlink is copied as a link */
        assert_int_equal(symlink("/etc/passwd", H(f, "link")), 0);
        assert_ok(files_copy(&f->r, "link", "link2", false, false, E));
        struct stat st = lst(f, "link2");
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(st.st_uid, ID);
        char t[64] = "";
        assert_int_equal(readlink(H(f, "link2"), t, sizeof t), 11);
        assert_string_equal(t, "/etc/passwd");

        /* a tree: dirs, files, links; FIFOs skipped; modes kept */
        mk(f, "tree");
        mk(f, "tree/d");
        assert_int_equal(chmod(H(f, "tree/d"), 0710), 0);
        put(f, "tree/d/f", "deep");
        put(f, "tree/top", "top");
        assert_int_equal(symlink("../top", H(f, "tree/d/rel")), 0);
        assert_int_equal(mkfifo(H(f, "tree/fifo"), 0644), 0);
        assert_ok(files_copy(&f->r, "/tree", "/tree2", false, false, E));
        assert_string_equal(slurp(f, "tree2/d/f"), "deep");
        assert_string_equal(slurp(f, "tree2/top"), "top");
        assert_true(S_ISLNK(lst(f, "tree2/d/rel").st_mode));
        assert_false(exists(f, "tree2/fifo"));
        assert_int_equal(lst(f, "tree2/d").st_mode & 07777, 0710);
        assert_int_equal(lst(f, "tree2/d").st_uid, ID);
        assert_int_equal(lst(f, "tree2/d/f").st_uid, ID);

        /* merge with overwrite: files replaced, others kept */
        put(f, "tree2/extra", "keep");
        put(f, "tree/top", "top2");
        assert_err(files_copy(&f->r, "/tree", "/tree2", false, false, E), -SBX_E_CONFLICT, "already_exists");
        assert_ok(files_copy(&f->r, "/tree", "/tree2", true, false, E));
        assert_string_equal(slurp(f, "tree2/top"), "top2");
        assert_string_equal(slurp(f, "tree2/extra"), "keep");
        /* a directory does not replace a file, a file does not replace a directory */
        assert_err(files_copy(&f->r, "/tree", "/copy", true, false, E), -SBX_E_INVALID, "not_a_directory");
        assert_err(files_copy(&f->r, "/file", "/tree2", true, false, E), -SBX_E_INVALID, "is_a_directory");

        /* into itself: lexically, and through a symlink */
        assert_err(files_copy(&f->r, "/tree", "/tree/sub", false, false, E), -SBX_E_INVALID, "invalid_value");
        assert_err(files_copy(&f->r, "/tree", "tree/../tree", false, false, E), -SBX_E_INVALID, "invalid_value");
        assert_int_equal(symlink("/tree/d", H(f, "via")), 0);
        assert_err(files_copy(&f->r, "/tree", "/via/sub", false, false, E), -SBX_E_INVALID, "invalid_value");
        assert_false(exists(f, "tree/d/sub"));
        assert_err(files_copy(&f->r, "/", "/x", false, false, E), -SBX_E_INVALID, "invalid_value");
        assert_err(files_copy(&f->r, "/tree/fifo", "/f2", false, false, E), -SBX_E_INVALID, "not_a_regular_file");
        /* no temp files left anywhere */
        DIR *d = opendir(f->dir);
        struct dirent *de;
        while ((de = readdir(d)))
                assert_null(strstr(de->d_name, ".sbx-tmp"));
        closedir(d);
}

static void test_delete(void **state)
{
        struct fx *f = *state;

        assert_err(files_delete(&f->r, "nope", false, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_delete(&f->r, "/", true, E), -SBX_E_INVALID, "invalid_path");
        assert_err(files_delete(&f->r, "/..", true, E), -SBX_E_INVALID, "invalid_path");
        put(f, "file", "x");
        assert_ok(files_delete(&f->r, "file", false, E));
        assert_false(exists(f, "file"));
        mk(f, "empty");
        assert_ok(files_delete(&f->r, "empty", false, E));
        assert_false(exists(f, "empty"));

        mk(f, "keep");
        put(f, "keep/precious", "p");
        mk(f, "t");
        mk(f, "t/a");
        mk(f, "t/a/b");
        put(f, "t/a/b/f", "x");
        put(f, "t/g", "x");
        assert_int_equal(mkfifo(H(f, "t/a/fifo"), 0644), 0);
        assert_int_equal(symlink("/keep", H(f, "t/a/abs")), 0);
        assert_int_equal(symlink("../../keep", H(f, "t/a/rel")), 0);
        assert_err(files_delete(&f->r, "t", false, E), -SBX_E_CONFLICT, "directory_not_empty");
        assert_true(exists(f, "t/g"));
        assert_ok(files_delete(&f->r, "t", true, E));
        assert_false(exists(f, "t"));
        assert_string_equal(slurp(f, "keep/precious"), "p"); /* links removed, not followed */

        /* a link to a directory: the link goes */
        assert_int_equal(symlink("/keep", H(f, "lk")), 0);
        assert_ok(files_delete(&f->r, "lk", true, E));
        assert_false(exists(f, "lk"));
        assert_string_equal(slurp(f, "keep/precious"), "p");
}

/* ---------- writes ---------- */

static void test_writer(void **state)
{
        struct fx *f = *state;
        struct files_write_opts o = {};
        struct files_writer *w = NULL;
        struct stat st, st2;

        assert_ok(files_write(&f->r, "new.txt", "hello", 5, &o, E));
        st = lst(f, "new.txt");
        assert_string_equal(slurp(f, "new.txt"), "hello");
        assert_int_equal(st.st_uid, ID);
        assert_int_equal(st.st_gid, ID);
        assert_int_equal(st.st_mode & 07777, 0644);

        /* a replaced file keeps owner and mode; the old inode keeps the old content */
        put(f, "old", "old content");
        assert_int_equal(chown(H(f, "old"), ID + 7, ID + 8), 0);
        assert_int_equal(chmod(H(f, "old"), 0600), 0);
        st = lst(f, "old");
        int rfd = open(H(f, "old"), O_RDONLY | O_CLOEXEC);
        assert_ok(files_write(&f->r, "/old", "new", 3, &o, E));
        st2 = lst(f, "old");
        assert_string_equal(slurp(f, "old"), "new");
        assert_int_equal(st2.st_uid, ID + 7);
        assert_int_equal(st2.st_gid, ID + 8);
        assert_int_equal(st2.st_mode & 07777, 0600);
        assert_true(st.st_ino != st2.st_ino);
        char buf[32] = "";
        assert_int_equal(read(rfd, buf, sizeof buf), 11);
        close(rfd);

        /* an owner outside the sandbox's ids is not kept (nor its set-id bit on new content) */
        put(f, "hostfile", "h");
        assert_int_equal(chown(H(f, "hostfile"), 0, 0), 0);
        assert_int_equal(chmod(H(f, "hostfile"), 04755), 0);
        assert_ok(files_write(&f->r, "hostfile", "x", 1, &o, E));
        st = lst(f, "hostfile");
        assert_int_equal(st.st_uid, ID);
        assert_int_equal(st.st_gid, ID);
        assert_int_equal(st.st_mode & 07777, 04755); /* owned by the sandbox's root now */

        o.has_mode = true;
        o.mode = 0640;
        assert_ok(files_write(&f->r, "/old", "newer", 5, &o, E));
        assert_int_equal(lst(f, "old").st_mode & 07777, 0640);
        assert_int_equal(lst(f, "old").st_uid, ID + 7);
        o.has_mode = false;

        /* a streamed write: nothing shows before the commit, an abort keeps the old content */
        assert_ok(files_writer_open(&f->r, "old", &o, &w, E));
        assert_int_equal(fstat(files_writer_fd(w), &st), 0);
        assert_int_equal(st.st_uid, ID + 7); /* chowned before the first byte */
        assert_int_equal(write(files_writer_fd(w), "partial", 7), 7);
        assert_string_equal(slurp(f, "old"), "newer");
        files_writer_abort(w);
        assert_string_equal(slurp(f, "old"), "newer");
        files_writer_abort(NULL);

        assert_ok(files_writer_open(&f->r, "streamed", &o, &w, E));
        assert_int_equal(write(files_writer_fd(w), "abc", 3), 3);
        assert_false(exists(f, "streamed"));
        assert_ok(files_writer_commit(w, E));
        assert_string_equal(slurp(f, "streamed"), "abc");

        mk(f, "dir");
        assert_err(files_writer_open(&f->r, "dir", &o, &w, E), -SBX_E_INVALID, "is_a_directory");
        assert_err(files_write(&f->r, "/", "x", 1, &o, E), -SBX_E_INVALID, "invalid_path");
        assert_err(files_write(&f->r, "a/b/c", "x", 1, &o, E), -SBX_E_NOT_FOUND, "file_not_found");
        o.mkparents = true;
        assert_ok(files_write(&f->r, "a/b/c", "x", 1, &o, E));
        assert_int_equal(lst(f, "a").st_uid, ID);
        assert_int_equal(lst(f, "a/b").st_mode & 07777, 0755);
        assert_int_equal(lst(f, "a/b/c").st_uid, ID);
        assert_ok(files_write(&f->r, "empty", NULL, 0, &o, E));
        assert_int_equal(lst(f, "empty").st_size, 0);
        assert_err(files_write(&f->r, "a/b/c/d", "x", 1, &o, E), -SBX_E_INVALID, "not_a_directory");

        /* no temp files left */
        DIR *d = opendir(f->dir);
        struct dirent *de;
        while ((de = readdir(d)))
                assert_null(strstr(de->d_name, ".sbx-tmp"));
        closedir(d);
}

/* ---------- escapes ---------- */

static void test_escape(void **state)
{
        struct fx *f = *state;
        struct files_write_opts o = {};
        struct stat host, host2;
        json_t *res = NULL;

        assert_int_equal(stat("/etc/passwd", &host), 0);
        assert_int_equal(symlink("/../../../etc", H(f, "esc")), 0);
        assert_int_equal(symlink("/etc", H(f, "abs")), 0);
        assert_int_equal(symlink("../../../../../../../../etc", H(f, "rel")), 0);

        /* no /etc in the root yet: the parent resolves inside, and is missing */
        assert_err(files_write(&f->r, "esc/passwd", "x", 1, &o, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_write(&f->r, "abs/passwd", "x", 1, &o, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_write(&f->r, "rel/passwd", "x", 1, &o, E), -SBX_E_NOT_FOUND, "file_not_found");
        assert_err(files_write(&f->r, "/../../../etc/passwd", "x", 1, &o, E), -SBX_E_NOT_FOUND, "file_not_found");

        mk(f, "etc");
        assert_ok(files_write(&f->r, "esc/passwd", "esc", 3, &o, E));
        assert_string_equal(slurp(f, "etc/passwd"), "esc");
        assert_ok(files_write(&f->r, "abs/shadow", "abs", 3, &o, E));
        assert_string_equal(slurp(f, "etc/shadow"), "abs");
        assert_ok(files_write(&f->r, "rel/group", "rel", 3, &o, E));
        assert_string_equal(slurp(f, "etc/group"), "rel");
        assert_ok(files_write(&f->r, "../../x", "x", 1, &o, E));
        assert_string_equal(slurp(f, "x"), "x");
        o.mkparents = true;
        assert_ok(files_write(&f->r, "esc/deep/er/file", "d", 1, &o, E));
        assert_string_equal(slurp(f, "etc/deep/er/file"), "d");
        assert_ok(files_mkdir(&f->r, "abs/made", false, 0755, E));
        assert_true(exists(f, "etc/made"));
        assert_ok(files_copy(&f->r, "x", "esc/x", false, false, E));
        assert_true(exists(f, "etc/x"));
        assert_ok(files_move(&f->r, "etc/x", "abs/y", false, false, E));
        assert_true(exists(f, "etc/y"));
        assert_ok(files_delete(&f->r, "rel/y", false, E));
        assert_false(exists(f, "etc/y"));
        assert_ok(files_list(&f->r, "abs", NULL, &res, E));
        assert_string_equal(jstr(json_array_get(json_object_get(res, "entries"), 0), "path"), "/abs/deep");
        json_decref(res);

        /* a symlink as the last component is replaced, never written through */
        assert_int_equal(symlink("/etc/passwd", H(f, "link")), 0);
        assert_ok(files_write(&f->r, "link", "replaced", 8, &o, E));
        assert_true(S_ISREG(lst(f, "link").st_mode));
        assert_string_equal(slurp(f, "link"), "replaced");
        assert_string_equal(slurp(f, "etc/passwd"), "esc");
        assert_int_equal(symlink("etc/shadow", H(f, "link2")), 0);
        assert_ok(files_write(&f->r, "link2", "r2", 2, &o, E));
        assert_string_equal(slurp(f, "etc/shadow"), "abs");
        assert_string_equal(slurp(f, "link2"), "r2");
        assert_int_equal(lst(f, "link2").st_mode & 07777, 0644);

        /* chmod through a link in the middle stays inside too */
        assert_ok(files_chmod(&f->r, "esc/passwd", 0600, E));
        assert_int_equal(lst(f, "etc/passwd").st_mode & 07777, 0600);

        assert_int_equal(stat("/etc/passwd", &host2), 0);
        assert_int_equal(host.st_ino, host2.st_ino);
        assert_int_equal(host.st_mtim.tv_sec, host2.st_mtim.tv_sec);
        assert_int_equal(host.st_mtim.tv_nsec, host2.st_mtim.tv_nsec);
        assert_int_equal(host.st_mode, host2.st_mode);
        assert_true(access("/etc/deep", F_OK) < 0);
        assert_true(access("/x", F_OK) < 0);
}

static void on_alarm(int sig)
{
        (void)sig;
        static const char msg[] = "a FIFO made the files code hang\n";
        (void)!write(2, msg, sizeof msg - 1);
        _exit(1);
}

static void test_fifo(void **state)
{
        struct fx *f = *state;
        struct files_write_opts o = {};
        struct files_writer *w = NULL;
        struct stat st;
        json_t *res = NULL;
        int fd = -1;

        assert_int_equal(mkfifo(H(f, "fifo"), 0644), 0);
        signal(SIGALRM, on_alarm);
        alarm(10);
        assert_err(files_open_read(&f->r, "fifo", &fd, &st, E), -SBX_E_INVALID, "not_a_regular_file");
        assert_err(files_writer_open(&f->r, "fifo", &o, &w, E), -SBX_E_INVALID, "not_a_regular_file");
        assert_err(files_write(&f->r, "fifo", "x", 1, &o, E), -SBX_E_INVALID, "not_a_regular_file");
        assert_err(files_copy(&f->r, "fifo", "f2", false, false, E), -SBX_E_INVALID, "not_a_regular_file");
        assert_ok(files_stat(&f->r, "fifo", &res, E));
        assert_string_equal(jstr(res, "type"), "fifo");
        json_decref(res);
        assert_ok(files_chmod(&f->r, "fifo", 0600, E));
        assert_ok(files_delete(&f->r, "fifo", false, E));
        alarm(0);
        assert_false(exists(f, "fifo"));
}

/* ---------- batch ---------- */

static void test_batch(void **state)
{
        struct fx *f = *state;
        const struct files_batch_op ops[] = {
                { .path = "b", .kind = FILES_BATCH_WRITE, .data = "B1", .len = 2 },
                { .path = "a/x", .kind = FILES_BATCH_WRITE, .data = "AX", .len = 2 },
                { .path = "missing", .kind = FILES_BATCH_DELETE },
                { .path = "/b", .kind = FILES_BATCH_WRITE, .data = "B2", .len = 2 },
                { .path = "c", .kind = FILES_BATCH_WRITE, .data = "C", .len = 1, .has_mode = true, .mode = 0600 },
                { .path = "d", .kind = FILES_BATCH_DELETE },
                { .path = "./a/../e", .kind = FILES_BATCH_WRITE, .data = "E", .len = 1 },
                { .path = "gone", .kind = FILES_BATCH_WRITE, .data = "G", .len = 1 },
                { .path = "//gone", .kind = FILES_BATCH_DELETE },
        };
        static const char *const want[][3] = {
                { "/a/x", "write", NULL },
                { "/b", "write", NULL },
                { "/c", "write", NULL },
                { "/d", "delete", "directory_not_empty" },
                { "/e", "write", NULL },
                { "/gone", "delete", NULL },
                { "/missing", "delete", "file_not_found" },
        };
        json_t *res = NULL, *r;
        size_t i;

        mk(f, "d");
        put(f, "d/inside", "x");
        put(f, "gone", "x");
        assert_ok(files_batch(&f->r, ops, ELEMENTSOF(ops), &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "results")), ELEMENTSOF(want));
        json_array_foreach(json_object_get(res, "results"), i, r) {
                assert_string_equal(jstr(r, "path"), want[i][0]);
                assert_string_equal(jstr(r, "op"), want[i][1]);
                assert_int_equal(json_is_true(json_object_get(r, "ok")), want[i][2] == NULL);
                if (want[i][2]) {
                        json_t *e = json_object_get(r, "error");
                        assert_string_equal(jstr(e, "code"), want[i][2]);
                        assert_non_null(strstr(jstr(e, "message"), want[i][0] + 1));
                } else {
                        assert_null(json_object_get(r, "error"));
                }
        }
        json_decref(res);
        assert_string_equal(slurp(f, "b"), "B2");
        assert_string_equal(slurp(f, "a/x"), "AX");
        assert_int_equal(lst(f, "a").st_uid, ID);
        assert_int_equal(lst(f, "c").st_mode & 07777, 0600);
        assert_string_equal(slurp(f, "e"), "E");
        assert_false(exists(f, "gone"));
        assert_true(exists(f, "d/inside"));

        /* a bad op array: nothing is tried */
        const struct files_batch_op bad[] = {
                { .path = "ok", .kind = FILES_BATCH_WRITE, .data = "x", .len = 1 },
                { .path = "bad\xff", .kind = FILES_BATCH_WRITE, .data = "x", .len = 1 },
        };
        assert_err(files_batch(&f->r, bad, ELEMENTSOF(bad), &res, E), -SBX_E_INVALID, "invalid_path");
        assert_false(exists(f, "ok"));
        assert_ok(files_batch(&f->r, NULL, 0, &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "results")), 0);
        json_decref(res);
}

/* ---------- mounts of a running sandbox ---------- */

/*
 * A child in a new mount namespace mounts over parts of the tree and holds them; this process
 * reaches the tree through /proc/CHILD/root like sbxd reaches a sandbox. Seen from here those are
 * foreign mounts: the kernel would let unlink/rename detach them, so only the files code's own
 * checks stand between an API call and a sandbox losing its /tmp.
 */
static void test_mounts(void **state)
{
        struct fx *f = *state;
        int ready[2], hold[2], rfd, status;
        struct files_write_opts o = {};
        char c = 0, proc[PATH_MAX];
        struct files_root r;
        json_t *res = NULL, *e;
        size_t i;
        pid_t pid;

        mk(f, "mnt");
        mk(f, "sub");
        mk(f, "sub/inner");
        put(f, "sub/file", "x");
        put(f, "src", "source");
        put(f, "bound", "bound");
        put(f, "other", "other");
        assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
        assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(ready[0]);
                close(hold[1]);
                if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
                    mount("tmpfs", H(f, "mnt"), "tmpfs", 0, "size=64k") < 0 ||
                    mount("tmpfs", H(f, "sub/inner"), "tmpfs", 0, "size=64k") < 0 ||
                    mount(H(f, "src"), H(f, "bound"), NULL, MS_BIND, NULL) < 0)
                        _exit(1);
                (void)!write(ready[1], "1", 1);
                (void)!read(hold[0], &c, 1);
                _exit(0);
        }
        close(ready[1]);
        close(hold[0]);
        assert_int_equal(read(ready[0], &c, 1), 1);
        close(ready[0]);
        snprintf(proc, sizeof proc, "/proc/%d/root%s", (int)pid, f->dir);
        rfd = open(proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(rfd >= 0);
        r = (struct files_root){ .fd = rfd, .uid = ID, .gid = ID, .base_uid = ID, .base_gid = ID };

        assert_ok(files_write(&r, "/mnt/in-tmpfs", "t", 1, &o, E));
        assert_false(exists(f, "mnt/in-tmpfs")); /* it went to the child's tmpfs */
        assert_ok(files_write(&r, "/sub/inner/x", "t", 1, &o, E));
        assert_string_equal(slurp(f, "bound"), "bound");

        assert_err(files_delete(&r, "/mnt", true, E), -SBX_E_CONFLICT, "busy");
        assert_err(files_delete(&r, "/bound", false, E), -SBX_E_CONFLICT, "busy");
        assert_err(files_move(&r, "/mnt", "/moved", false, false, E), -SBX_E_CONFLICT, "busy");
        assert_err(files_move(&r, "/bound", "/moved", false, false, E), -SBX_E_CONFLICT, "busy");
        assert_err(files_move(&r, "/other", "/bound", true, false, E), -SBX_E_FORBIDDEN, "path_forbidden");
        assert_err(files_write(&r, "/bound", "x", 1, &o, E), -SBX_E_FORBIDDEN, "path_forbidden");
        assert_err(files_copy(&r, "/other", "/bound", true, false, E), -SBX_E_FORBIDDEN, "path_forbidden");
        assert_err(files_delete(&r, "/sub", true, E), -SBX_E_CONFLICT, "busy");
        assert_false(exists(f, "sub/file")); /* the rest of /sub went, like rm -r */
        assert_true(exists(f, "other"));

        /* still mounted: the child's files are there, not in the host's tree */
        assert_ok(files_stat(&r, "/mnt/in-tmpfs", &res, E));
        json_decref(res);
        assert_ok(files_stat(&r, "/sub/inner/x", &res, E));
        json_decref(res);
        assert_ok(files_stat(&r, "/bound", &res, E));
        assert_int_equal(jint(res, "size"), 6); /* "source" through the bind */
        json_decref(res);

        /* walks do not enter mounts */
        struct files_list_opts lo = { .recursive = true };
        assert_ok(files_list(&r, "/", &lo, &res, E));
        bool saw_inner = false;
        json_array_foreach(json_object_get(res, "entries"), i, e) {
                assert_null(strstr(jstr(e, "path"), "/sub/inner/"));
                assert_null(strstr(jstr(e, "path"), "/mnt/"));
                saw_inner |= strcmp(jstr(e, "path"), "/sub/inner") == 0;
        }
        assert_true(saw_inner);
        json_decref(res);
        /* listing a mount point itself lists its content */
        assert_ok(files_list(&r, "/mnt", &lo, &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 1);
        json_decref(res);
        assert_ok(files_copy(&r, "/sub", "/sub2", false, false, E));
        assert_true(exists(f, "sub2/inner"));
        assert_false(exists(f, "sub2/inner/x"));

        /* a full disk is reported as such, naming the path, and leaves nothing behind */
        size_t big = 1 << 20;
        char *data = calloc(1, big);
        struct sbx_err err = {};
        assert_int_equal(files_write(&r, "/mnt/big", data, big, &o, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "/mnt/big"));
        free(data);
        lo.recursive = false;
        assert_ok(files_list(&r, "/mnt", &lo, &res, E));
        assert_int_equal(json_array_size(json_object_get(res, "entries")), 1);
        json_decref(res);

        close(rfd);
        close(hold[1]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* the mounts went with the child: the mount points are plain directories again */
        assert_false(exists(f, "sub/inner/x"));
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
        const struct CMUnitTest tests[] = {
                T(test_stat),     T(test_list_pages), T(test_list_recursive),
                T(test_list_big), T(test_list_cache), T(test_list_huge_names),
                T(test_mkdir),    T(test_move),       T(test_chmod),
                T(test_copy),     T(test_delete),     T(test_writer),
                T(test_escape),   T(test_fifo),       T(test_batch),
                T(test_mounts),
        };

        if (geteuid() != 0) {
                fprintf(stderr, "test-files-ops needs root (chown, mounts)\n");
                return 77;
        }
        /* the test's own mounts stay in a namespace of its own */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                perror("private mount namespace");
                return 1;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
