// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for files_untar and files_tar (src/files/archive.c): archives built here with
 * libarchive (plain and gzip) extracted into a temp root: a normal tree with owners, modes and
 * links; hostile names ("..", absolute); a symlink planted by one entry and used by the next
 * (must stay inside the root, never reach the host's /etc); hard links out of the directory;
 * devices skipped; a corrupt stream. Then files_tar -> files_untar round trips, one file, a FIFO in
 * the tree, and a reader that goes away. Needs root (chown); skipped otherwise. Every test works
 * in its own mkdtemp root under /tmp and removes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "files/files.h"

#define OWNER 12345 /* files-fixture.h: the owner of everything created */
#define MTIME 1700000000

#include "files-fixture.h"

static int setup(void **state)
{
        return fixture_setup(state, "/tmp/test-files-archive-XXXXXX");
}

static int teardown(void **state)
{
        static const char *const mounts[] = { "out/bind", "src/mnt", NULL };

        return fixture_teardown(state, mounts);
}

static const char *at(struct fixture *f, const char *rel)
{
        static char p[4][512];
        static int i;

        i = (i + 1) % 4;
        snprintf(p[i], sizeof p[i], "%s/%s", f->dir, rel);
        return p[i];
}

static bool exists(const char *p)
{
        struct stat st;

        return lstat(p, &st) == 0;
}

static char *slurp(const char *p, size_t *len)
{
        struct stat st;
        char *buf;
        int fd = open(p, O_RDONLY | O_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = calloc(1, (size_t)st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
        close(fd);
        if (len)
                *len = (size_t)st.st_size;
        return buf;
}

static void mkfile(const char *p, const void *data, size_t len, mode_t mode)
{
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write_all(fd, data, len), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
}

/* ---------- building archives ---------- */

struct ent {
        char type; /* f file, d dir, l symlink, h hard link, c char device, p FIFO */
        const char *name;
        const char *data; /* file content, link target */
        mode_t mode;
        int64_t uid, gid;
};

static la_ssize_t memfd_write(struct archive *a, void *data, const void *buf, size_t len)
{
        return write_all(*(int *)data, buf, len) < 0 ? -1 : (la_ssize_t)len;
}

/* The archive as a memfd at offset 0. */
static int make_tar(const struct ent *ents, size_t n, bool gz)
{
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();
        int fd = memfd_create("tar", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(gz ? archive_write_add_filter_gzip(a) : archive_write_add_filter_none(a), ARCHIVE_OK);
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open(a, &fd, NULL, memfd_write, NULL), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                const struct ent *t = &ents[i];

                archive_entry_clear(e);
                archive_entry_copy_pathname(e, t->name);
                archive_entry_set_uid(e, t->uid);
                archive_entry_set_gid(e, t->gid);
                archive_entry_set_mtime(e, MTIME, 0);
                archive_entry_set_perm(e, t->mode ? t->mode : 0644);
                switch (t->type) {
                case 'f':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_size(e, (la_int64_t)strlen(t->data));
                        break;
                case 'd':
                        archive_entry_set_filetype(e, AE_IFDIR);
                        break;
                case 'l':
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_copy_symlink(e, t->data);
                        break;
                case 'h':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_copy_hardlink(e, t->data);
                        break;
                case 'c':
                        archive_entry_set_filetype(e, AE_IFCHR);
                        archive_entry_set_rdev(e, makedev(1, 3));
                        break;
                case 'p':
                        archive_entry_set_filetype(e, AE_IFIFO);
                        break;
                }
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (t->type == 'f')
                        assert_int_equal(archive_write_data(a, t->data, strlen(t->data)), (la_ssize_t)strlen(t->data));
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        archive_entry_free(e);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        return fd;
}

static int untar(struct fixture *f, const char *dir, const struct ent *ents, size_t n, bool gz, json_t **ret,
                 struct sbx_err *err)
{
        int fd = make_tar(ents, n, gz);
        int q = files_untar(&f->r, dir, fd, ret, err);

        close(fd);
        return q;
}

static json_t *untar_ok(struct fixture *f, const char *dir, const struct ent *ents, size_t n, bool gz)
{
        struct sbx_err err = {};
        json_t *res = NULL;
        int q = untar(f, dir, ents, n, gz, &res, &err);

        if (q < 0)
                fprintf(stderr, "files_untar: %d %s: %s\n", q, err.reason, err.msg);
        assert_int_equal(q, 0);
        assert_non_null(res);
        return res;
}

static long num(json_t *o, const char *k)
{
        return (long)json_integer_value(json_object_get(o, k));
}

static void assert_owner_mode(const char *p, uid_t uid, gid_t gid, mode_t mode)
{
        struct stat st;

        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_uid, uid);
        assert_int_equal(st.st_gid, gid);
        if (mode != (mode_t)-1)
                assert_int_equal(st.st_mode & 07777, mode);
}

/* ---------- extraction ---------- */

static void test_untar_tree(void **state)
{
        struct fixture *f = *state;
        const struct ent ents[] = {
                { 'd', "./", NULL, 0755, 0, 0 },
                { 'd', "dir/", NULL, 0750, 1000, 1000 },
                { 'f', "dir/f.txt", "hi", 0600, 1000, 1001 },
                { 'l', "dir/l", "f.txt", 0777, 1000, 1000 },
                { 'h', "./dir/h", "dir/f.txt", 0600, 1000, 1001 },
                { 'f', "./top", "x", 04755, 0, 0 },
                { 'f', "big/owner", "y", 0644, 70000, 5 }, /* parent missing; uid out of range */
        };
        struct stat a, b;
        char target[32];
        json_t *res;
        char *s;

        for (int gz = 0; gz <= 1; gz++) {
                res = untar_ok(f, gz ? "/out/gz" : "out/plain", ents, ELEMENTSOF(ents), gz);
                assert_string_equal(json_string_value(json_object_get(res, "path")), gz ? "/out/gz" : "/out/plain");
                assert_int_equal(num(res, "files"), 4);
                assert_int_equal(num(res, "dirs"), 1);
                assert_int_equal(num(res, "symlinks"), 1);
                assert_int_equal(num(res, "skipped"), 0);
                assert_int_equal(num(res, "bytes"), 4);
                json_decref(res);
        }
        /* the target directory and missing parents belong to the root's owner */
        assert_owner_mode(at(f, "out"), OWNER, OWNER, (mode_t)-1);
        assert_owner_mode(at(f, "out/gz/big"), OWNER, OWNER, (mode_t)-1);
        /* owners shifted into the sandbox's range, modes kept */
        assert_owner_mode(at(f, "out/gz/dir"), OWNER + 1000, OWNER + 1000, 0750);
        assert_owner_mode(at(f, "out/gz/dir/f.txt"), OWNER + 1000, OWNER + 1001, 0600);
        assert_owner_mode(at(f, "out/gz/dir/l"), OWNER + 1000, OWNER + 1000, (mode_t)-1);
        assert_owner_mode(at(f, "out/gz/top"), OWNER, OWNER, 04755);
        assert_owner_mode(at(f, "out/gz/big/owner"), OWNER, OWNER + 5, 0644);
        s = slurp(at(f, "out/gz/dir/f.txt"), NULL);
        assert_string_equal(s, "hi");
        free(s);
        assert_int_equal(readlink(at(f, "out/gz/dir/l"), target, sizeof target), 5);
        assert_int_equal(stat(at(f, "out/gz/dir/f.txt"), &a), 0);
        assert_int_equal(stat(at(f, "out/gz/dir/h"), &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        assert_int_equal(a.st_mtim.tv_sec, MTIME);
        assert_int_equal(lstat(at(f, "out/gz/dir"), &a), 0);
        assert_int_equal(a.st_mtim.tv_sec, MTIME); /* set after its content */
        assert_int_equal(lstat(at(f, "out/gz/dir/l"), &a), 0);
        assert_int_equal(a.st_mtim.tv_sec, MTIME);

        /* extracting again over the same tree replaces what is there */
        res = untar_ok(f, "/out/gz", ents, ELEMENTSOF(ents), true);
        assert_int_equal(num(res, "files"), 4);
        json_decref(res);
        assert_int_equal(stat(at(f, "out/gz/dir/f.txt"), &a), 0);
        assert_int_equal(stat(at(f, "out/gz/dir/h"), &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
}

static void test_untar_names(void **state)
{
        struct fixture *f = *state;
        const struct ent dotdot[] = {
                { 'f', "ok", "1", 0644, 0, 0 },
                { 'f', "../evil", "2", 0644, 0, 0 },
                { 'f', "later", "3", 0644, 0, 0 },
        };
        const struct ent dotdot2[] = { { 'f', "a/../../b", "2", 0644, 0, 0 } };
        const struct ent abs[] = { { 'f', "/abs/x", "1", 0644, 0, 0 }, { 'f', "//./abs2", "1", 0644, 0, 0 } };
        struct sbx_err err = {};
        json_t *res = NULL;
        char p[256];

        assert_int_equal(untar(f, "/out", dotdot, ELEMENTSOF(dotdot), false, &res, &err), -SBX_E_INVALID);
        assert_null(res);
        assert_string_equal(err.reason, "invalid_value");
        assert_non_null(strstr(err.msg, "'../evil'"));
        /* what came before stays, nothing after */
        assert_true(exists(at(f, "out/ok")));
        assert_false(exists(at(f, "evil")));
        assert_false(exists(at(f, "out/later")));
        snprintf(p, sizeof p, "%s/../evil", f->dir);
        assert_false(exists(p));
        sbx_err_clear(&err);
        assert_int_equal(untar(f, "/out", dotdot2, 1, false, &res, &err), -SBX_E_INVALID);
        assert_false(exists(at(f, "b")));

        res = untar_ok(f, "/out", abs, ELEMENTSOF(abs), false);
        json_decref(res);
        assert_true(exists(at(f, "out/abs/x")));
        assert_true(exists(at(f, "out/abs2")));
        assert_false(exists(at(f, "abs")));
}

static void test_untar_planted_symlinks(void **state)
{
        struct fixture *f = *state;
        /* clang-format off */
        const struct ent ents[] = {
                { 'l', "link", "/", 0777, 0, 0 },
                { 'f', "link/etc/pwned", "gotcha", 0644, 0, 0 },
                { 'd', "link/newdir", NULL, 0755, 0, 0 },
                { 'l', "l2", "../../../..", 0777, 0, 0 },
                { 'f', "l2/x", "inside", 0644, 0, 0 },
                { 'l', "l3", "/etc/passwd", 0777, 0, 0 },
                { 'f', "l3", "replaced", 0644, 0, 0 }, /* replaces the link, never writes through it */
        };
        /* clang-format on */
        struct stat st_before, st_after;
        json_t *res;
        char *s;

        assert_false(exists("/etc/pwned"));
        assert_int_equal(stat("/etc/passwd", &st_before), 0);
        res = untar_ok(f, "/a/b", ents, ELEMENTSOF(ents), true);
        json_decref(res);
        assert_false(exists("/etc/pwned"));
        assert_false(exists("/etc/newdir"));
        assert_true(exists(at(f, "etc/pwned")));
        assert_true(exists(at(f, "newdir")));
        s = slurp(at(f, "x"), NULL);
        assert_string_equal(s, "inside");
        free(s);
        s = slurp(at(f, "a/b/l3"), NULL);
        assert_string_equal(s, "replaced");
        free(s);
        assert_int_equal(stat("/etc/passwd", &st_after), 0);
        assert_int_equal(st_before.st_mtim.tv_sec, st_after.st_mtim.tv_sec);
        assert_int_equal(st_before.st_size, st_after.st_size);
}

static void test_untar_hardlinks(void **state)
{
        struct fixture *f = *state;
        const struct ent outside[] = { { 'h', "hl", "/etc/passwd", 0644, 0, 0 } };
        const struct ent confined[] = {
                { 'f', "etc/passwd", "mine", 0644, 0, 0 },
                { 'h', "hl", "/etc/passwd", 0644, 0, 0 },
        };
        const struct ent dotdot[] = { { 'h', "hl2", "../x", 0644, 0, 0 } };
        const struct ent dir[] = { { 'd', "d", NULL, 0755, 0, 0 }, { 'h', "hl3", "d", 0644, 0, 0 } };
        struct stat before, after, a, b;
        struct sbx_err err = {};
        json_t *res = NULL;

        assert_int_equal(stat("/etc/passwd", &before), 0);
        /* "/etc/passwd" means dir/etc/passwd: not there */
        assert_int_equal(untar(f, "/out", outside, 1, false, &res, &err), -SBX_E_NOT_FOUND);
        assert_false(exists(at(f, "out/hl")));
        sbx_err_clear(&err);

        res = untar_ok(f, "/out", confined, ELEMENTSOF(confined), false);
        json_decref(res);
        assert_int_equal(stat(at(f, "out/etc/passwd"), &a), 0);
        assert_int_equal(stat(at(f, "out/hl"), &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        assert_int_equal(a.st_nlink, 2);

        assert_int_equal(untar(f, "/out", dotdot, 1, false, &res, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_value");
        sbx_err_clear(&err);
        assert_int_equal(untar(f, "/out", dir, ELEMENTSOF(dir), false, &res, &err), -SBX_E_INVALID);
        assert_false(exists(at(f, "out/hl3")));

        assert_int_equal(stat("/etc/passwd", &after), 0);
        assert_int_equal(before.st_nlink, after.st_nlink);
}

static void test_untar_special(void **state)
{
        struct fixture *f = *state;
        const struct ent ents[] = {
                { 'c', "null", NULL, 0666, 0, 0 },
                { 'p', "fifo", NULL, 0644, 0, 0 },
                { 'f', "file", "z", 0644, 0, 0 },
        };
        struct sbx_err err = {};
        json_t *res = NULL;
        int fd;

        res = untar_ok(f, "/", ents, ELEMENTSOF(ents), false);
        assert_string_equal(json_string_value(json_object_get(res, "path")), "/");
        assert_int_equal(num(res, "skipped"), 2);
        assert_int_equal(num(res, "files"), 1);
        json_decref(res);
        assert_false(exists(at(f, "null")));
        assert_false(exists(at(f, "fifo")));
        assert_true(exists(at(f, "file")));

        /* a mount point is never replaced (from the daemon's namespace it would be detached) */
        const struct ent over[] = { { 'l', "bind", "/x", 0777, 0, 0 } };
        const struct ent over2[] = { { 'f', "bind", "new", 0644, 0, 0 } };
        const struct ent over3[] = { { 'd', "bind", NULL, 0755, 0, 0 } };
        assert_int_equal(mkdir(at(f, "out"), 0755), 0);
        mkfile(at(f, "out/bind"), "mounted", 7, 0644);
        mkfile(at(f, "host-file"), "host", 4, 0644);
        assert_int_equal(mount(at(f, "host-file"), at(f, "out/bind"), NULL, MS_BIND, NULL), 0);
        assert_int_equal(untar(f, "/out", over, 1, false, &res, &err), -SBX_E_FORBIDDEN);
        assert_string_equal(err.reason, "path_forbidden");
        sbx_err_clear(&err);
        assert_int_equal(untar(f, "/out", over2, 1, false, &res, &err), -SBX_E_FORBIDDEN);
        sbx_err_clear(&err);
        assert_int_equal(untar(f, "/out", over3, 1, false, &res, &err), -SBX_E_FORBIDDEN);
        sbx_err_clear(&err);
        {
                char *s = slurp(at(f, "out/bind"), NULL);

                assert_string_equal(s, "host");
                free(s);
        }
        assert_int_equal(umount2(at(f, "out/bind"), 0), 0);

        /* not an archive */
        fd = memfd_create("junk", MFD_CLOEXEC);
        assert_int_equal(write_all(fd, "this is not a tar archive, not even close.\n", 43), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_int_equal(files_untar(&f->r, "/x", fd, &res, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_archive");
        close(fd);
        /* a file where the directory should be */
        sbx_err_clear(&err);
        fd = make_tar(ents, 1, false);
        assert_true(files_untar(&f->r, "/file", fd, &res, &err) < 0);
        close(fd);
}

/* ---------- archiving ---------- */

static char listing[1 << 16];
static size_t listing_len;
static size_t listing_skip;

static int list_cb(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
        char line[1024], target[256] = "";
        unsigned long h = 5381;

        if (ftw->level == 0)
                return 0;
        if (S_ISREG(st->st_mode)) {
                size_t len;
                char *s = slurp(p, &len);

                for (size_t i = 0; i < len; i++)
                        h = h * 33 + (unsigned char)s[i];
                free(s);
        }
        if (S_ISLNK(st->st_mode))
                assert_true(readlink(p, target, sizeof target - 1) > 0);
        snprintf(line, sizeof line, "%s %o %u %u %ld %lx %s\n", p + listing_skip, st->st_mode, st->st_uid, st->st_gid,
                 (long)st->st_mtim.tv_sec, h, target);
        assert_true(listing_len + strlen(line) < sizeof listing);
        memcpy(listing + listing_len, line, strlen(line) + 1);
        listing_len += strlen(line);
        return 0;
}

static int cmp_lines(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A sorted listing of the tree at p: name, mode, owner, mtime, content hash, link target. */
static char *tree_listing(const char *p)
{
        char *lines[512], *out, *save = NULL;
        size_t n = 0, len = 0;

        listing_len = 0;
        listing[0] = '\0';
        listing_skip = strlen(p);
        assert_int_equal(nftw(p, list_cb, 16, FTW_PHYS), 0);
        for (char *l = strtok_r(listing, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                assert_true(n < ELEMENTSOF(lines));
                lines[n++] = l;
        }
        qsort(lines, n, sizeof *lines, cmp_lines);
        out = calloc(1, sizeof listing + n);
        assert_non_null(out);
        for (size_t i = 0; i < n; i++)
                len += (size_t)snprintf(out + len, sizeof listing + n - len, "%s\n", lines[i]);
        return out;
}

/* names in the tar.gz at memfd fd, in order, separated by '|' */
static void tar_names(int fd, char *buf, size_t size)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t n = 0;

        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        archive_read_support_filter_all(a);
        archive_read_support_format_all(a);
        assert_int_equal(archive_read_open_fd(a, fd, 65536), ARCHIVE_OK);
        buf[0] = '\0';
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                assert_int_equal(archive_filter_code(a, 0), ARCHIVE_FILTER_GZIP);
                n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? "|" : "", archive_entry_pathname(e));
                assert_true(n < size);
        }
        archive_read_free(a);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
}

static void test_tar_round_trip(void **state)
{
        struct fixture *f = *state;
        const char *const dirs[] = { "src", "src/d1", "src/d1/sub", "src/empty" };
        char *big = malloc(1 << 20), *l1, *l2, names[1024];
        struct sbx_err err = {};
        json_t *res = NULL;
        int fd;

        assert_non_null(big);
        for (size_t i = 0; i < (1 << 20); i++)
                big[i] = (char)(i * 7 + i / 4096);
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++)
                assert_int_equal(mkdir(at(f, dirs[i]), 0755), 0);
        assert_int_equal(chmod(at(f, "src/d1/sub"), 0700), 0);
        mkfile(at(f, "src/d1/f"), "hello\n", 6, 0640);
        mkfile(at(f, "src/d1/sub/deep.txt"), "deep", 4, 0600);
        mkfile(at(f, "src/exec.sh"), "#!/bin/sh\n", 10, 0755);
        mkfile(at(f, "src/\xc3\xa9.txt"), "utf8 name", 9, 0644);
        mkfile(at(f, "src/bin"), big, 1 << 20, 0644);
        mkfile(at(f, "src/empty-file"), "", 0, 0444);
        assert_int_equal(symlink("d1/f", at(f, "src/link")), 0);
        assert_int_equal(symlink("/etc", at(f, "src/hostetc")), 0);
        mkfile(at(f, "src/raw\xff"), "not utf-8", 9, 0644);
        assert_int_equal(mkfifo(at(f, "src/fifo"), 0644), 0);
        /* another file system inside: not crossed */
        assert_int_equal(mkdir(at(f, "src/mnt"), 0755), 0);
        assert_int_equal(mount("tmpfs", at(f, "src/mnt"), "tmpfs", 0, "size=1m"), 0);
        mkfile(at(f, "src/mnt/other"), "other", 5, 0644);
        /* owners as the sandbox would have them */
        assert_int_equal(lchown(at(f, "src"), OWNER, OWNER), 0);
        for (size_t i = 1; i < ELEMENTSOF(dirs); i++)
                assert_int_equal(lchown(at(f, dirs[i]), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/d1/f"), OWNER + 1000, OWNER + 1001), 0);
        assert_int_equal(lchown(at(f, "src/d1/sub/deep.txt"), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/exec.sh"), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/\xc3\xa9.txt"), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/bin"), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/empty-file"), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/link"), OWNER + 5, OWNER + 5), 0);
        assert_int_equal(lchown(at(f, "src/hostetc"), OWNER, OWNER), 0);
        assert_int_equal(lchown(at(f, "src/raw\xff"), OWNER, OWNER), 0);
        free(big);

        fd = memfd_create("out", MFD_CLOEXEC);
        assert_true(fd >= 0);
        alarm(20); /* the FIFO must not be opened */
        assert_int_equal(files_tar(&f->r, "/src", fd, &err), 0);
        alarm(0);
        /* relative names, each directory sorted, the FIFO left out */
        tar_names(fd, names, sizeof names);
        assert_string_equal(names, "bin|d1/|d1/f|d1/sub/|d1/sub/deep.txt|empty/|empty-file|exec.sh|hostetc|link|"
                                   "raw\xff|\xc3\xa9.txt");
        assert_int_equal(files_untar(&f->r, "/dst", fd, &res, &err), 0);
        assert_int_equal(num(res, "files"), 7);
        assert_int_equal(num(res, "dirs"), 3);
        assert_int_equal(num(res, "symlinks"), 2);
        json_decref(res);
        close(fd);
        assert_int_equal(unlink(at(f, "src/fifo")), 0);
        assert_int_equal(umount2(at(f, "src/mnt"), 0), 0);
        assert_int_equal(rmdir(at(f, "src/mnt")), 0);

        l1 = tree_listing(at(f, "src"));
        l2 = tree_listing(at(f, "dst"));
        assert_string_equal(l1, l2);
        assert_non_null(strstr(l2, "/hostetc 120777 12345 12345 "));
        assert_non_null(strstr(l2, " 1505 /etc\n"));
        free(l1);
        free(l2);
}

static void test_tar_one_file_and_errors(void **state)
{
        struct fixture *f = *state;
        struct sbx_err err = {};
        char names[256];
        int fd, p[2];

        assert_int_equal(mkdir(at(f, "d"), 0755), 0);
        mkfile(at(f, "d/one.txt"), "1", 1, 0644);
        assert_int_equal(mkfifo(at(f, "d/fifo"), 0644), 0);

        fd = memfd_create("out", MFD_CLOEXEC);
        assert_int_equal(files_tar(&f->r, "d/./one.txt", fd, &err), 0);
        tar_names(fd, names, sizeof names);
        assert_string_equal(names, "one.txt");
        close(fd);

        fd = memfd_create("out", MFD_CLOEXEC);
        assert_int_equal(files_tar(&f->r, "/d/fifo", fd, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "not_a_regular_file");
        sbx_err_clear(&err);
        assert_int_equal(files_tar(&f->r, "/nope", fd, &err), -SBX_E_NOT_FOUND);
        sbx_err_clear(&err);
        close(fd);

        /* the reader went away */
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        close(p[0]);
        assert_int_equal(files_tar(&f->r, "/", p[1], &err), -EPIPE);
        close(p[1]);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_untar_tree, setup, teardown),
                cmocka_unit_test_setup_teardown(test_untar_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_untar_planted_symlinks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_untar_hardlinks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_untar_special, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tar_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tar_one_file_and_errors, setup, teardown),
        };

        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 0;
        }
        (void)signal(SIGPIPE, SIG_IGN); /* like sbxd: a gone reader is -EPIPE, not a signal */
        return cmocka_run_group_tests(tests, NULL, NULL);
}
