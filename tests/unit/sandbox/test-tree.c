// SPDX-License-Identifier: Apache-2.0
/*
 * tree_copy, tree_shift_ids and tree_remove against real files (a mkdtemp dir under /var/tmp):
 * an overlay-upper-like tree with every kind of entry (whiteouts, also hardlinked as overlay
 * shares them; opaque and redirect xattrs; security.capability v3; a POSIX ACL; setuid and
 * sticky bits; hardlinks; a sparse file; a fifo and a socket; a block device; a symlink loop and
 * symlinks out of the tree) copied and compared field by field, with the ids kept, shifted down to
 * 0..65535 and up again; out-of-range ids, the entry and depth bounds, mounts inside the tree, a
 * copy into itself, in-place shifts and removal. Most of it needs root (chown, mknod, trusted.*
 * and security.* xattrs, bind mounts in a private mount namespace); without root those tests skip.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "sandbox/tree.h"

#define BASE (SBX_UID_BASE + 4001U * SBX_UID_RANGE)  /* the "sandbox" that wrote the upper */
#define BASE2 (SBX_UID_BASE + 4002U * SBX_UID_RANGE) /* another one */
#define SPARSE_SIZE (16 << 20)

static char tmp[128];
static int tmp_fd = -EBADF;
static bool root;
static bool have_acl;

static int mkdir_at(const char *name)
{
        return mkdirat(tmp_fd, name, 0755);
}

static int open_dir(int at, const char *name)
{
        int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        assert_true(fd >= 0);
        return fd;
}

static void write_at(int dfd, const char *name, const char *data, size_t len, mode_t mode)
{
        _cleanup_close_ int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        assert_int_equal(fchmod(fd, mode), 0);
}

static void own(int dfd, const char *name, uid_t u, gid_t g)
{
        assert_int_equal(fchownat(dfd, name, u, g, AT_SYMLINK_NOFOLLOW), 0);
}

static void le32(unsigned char *p, uint32_t v)
{
        p[0] = v & 0xff;
        p[1] = (v >> 8) & 0xff;
        p[2] = (v >> 16) & 0xff;
        p[3] = (v >> 24) & 0xff;
}

static uint32_t get_le32(const unsigned char *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* setcap cap_net_bind_service+ep as sandbox root would leave it: v3 with the host root id */
static size_t cap_v3(unsigned char *b, uint32_t rootid)
{
        memset(b, 0, XATTR_CAPS_SZ_3);
        le32(b, VFS_CAP_REVISION_3 | VFS_CAP_FLAGS_EFFECTIVE);
        le32(b + 4, 1U << 10); /* permitted: CAP_NET_BIND_SERVICE */
        le32(b + 20, rootid);
        return XATTR_CAPS_SZ_3;
}

/* user::rw- user:<u>:r-- group::r-- group:<g>:r-- mask::r-- other::r-- */
static size_t acl_bytes(unsigned char *b, uint32_t u, uint32_t g)
{
        static const struct {
                uint16_t tag, perm;
        } e[] = { { 0x01, 6 }, { 0x02, 4 }, { 0x04, 4 }, { 0x08, 4 }, { 0x10, 4 }, { 0x20, 4 } };
        size_t n = 4;

        le32(b, 2);
        for (size_t i = 0; i < ELEMENTSOF(e); i++, n += 8) {
                b[n] = e[i].tag & 0xff;
                b[n + 1] = e[i].tag >> 8;
                b[n + 2] = e[i].perm & 0xff;
                b[n + 3] = 0;
                le32(b + n + 4, e[i].tag == 0x02 ? u : e[i].tag == 0x08 ? g : UINT32_MAX);
        }
        return n;
}

static void set_times(int dfd, const char *name, time_t sec, long nsec)
{
        struct timespec ts[2] = { { .tv_sec = sec - 100, .tv_nsec = nsec / 2 }, { .tv_sec = sec, .tv_nsec = nsec } };

        assert_int_equal(utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW), 0);
}

/* The whole fixture below tmp/<name>, owned by ids of the sandbox at base. */
static void make_fixture(const char *name, uid_t base)
{
        _cleanup_close_ int d = -EBADF, a = -EBADF;
        unsigned char buf[256];
        char big[5000];
        size_t n;

        assert_int_equal(mkdir_at(name), 0);
        d = open_dir(tmp_fd, name);
        /* directories: plain, nested, opaque + redirect (overlay's), sticky, setgid, unreadable */
        assert_int_equal(mkdirat(d, "a", 0750), 0);
        assert_int_equal(mkdirat(d, "a/b", 0755), 0);
        assert_int_equal(mkdirat(d, "opaque", 0755), 0);
        a = open_dir(d, "opaque");
        assert_int_equal(fsetxattr(a, "user.overlay.opaque", "y", 1, 0), 0);
        assert_int_equal(fsetxattr(a, "user.overlay.redirect", "/elsewhere", 10, 0), 0);
        assert_int_equal(fsetxattr(a, "trusted.overlay.opaque", "y", 1, 0), 0);
        a = safe_close(a);
        assert_int_equal(mkdirat(d, "sticky", 0755), 0);
        assert_int_equal(fchmodat(d, "sticky", 01777, 0), 0);
        assert_int_equal(mkdirat(d, "sgid", 0755), 0);
        own(d, "sgid", base + 7, base + 8);
        assert_int_equal(fchmodat(d, "sgid", 02775, 0), 0);
        assert_int_equal(mkdirat(d, "closed", 0), 0);
        write_at(d, "closed/inside", "secret", 6, 0600);

        /* regular files: content, odd modes, owners, binary xattrs */
        for (size_t i = 0; i < sizeof big; i++)
                big[i] = (char)(i * 7 + 3);
        write_at(d, "file", big, sizeof big, 0640);
        own(d, "file", base + 5, base + 6);
        {
                _cleanup_close_ int f = openat(d, "file", O_RDONLY | O_CLOEXEC);
                const unsigned char origin[] = { 0, 0xfb, 0x21, 0x00, 0x81, 0x7f, 0, 0 };

                assert_int_equal(fsetxattr(f, "user.overlay.origin", origin, sizeof origin, 0), 0);
                assert_int_equal(fsetxattr(f, "user.a", "b", 1, 0), 0);
                assert_int_equal(fsetxattr(f, "user.empty", "", 0, 0), 0);
        }
        write_at(d, "empty", "", 0, 0);
        write_at(d, "a/b/deep", "deep", 4, 0444);
        /* setuid root + a file capability, in that order as setcap would (chown drops both) */
        write_at(d, "suid", "#!/bin/sh\n", 10, 0755);
        own(d, "suid", base, base);
        assert_int_equal(fchmodat(d, "suid", 04755, 0), 0);
        {
                _cleanup_close_ int f = openat(d, "suid", O_RDONLY | O_CLOEXEC);

                n = cap_v3(buf, base);
                assert_int_equal(fsetxattr(f, "security.capability", buf, n, 0), 0);
        }
        write_at(d, "sgidfile", "x", 1, 0755);
        own(d, "sgidfile", base + 1, base + 2);
        assert_int_equal(fchmodat(d, "sgidfile", 02755, 0), 0);
        /* a POSIX ACL naming two more ids */
        write_at(d, "acl", "acl", 3, 0644);
        n = acl_bytes(buf, base + 1000, base + 1001);
        {
                _cleanup_close_ int f = openat(d, "acl", O_RDONLY | O_CLOEXEC);

                have_acl = fsetxattr(f, "system.posix_acl_access", buf, n, 0) == 0;
        }

        /* hardlinks: a file pair, and whiteouts shared the way overlay shares them */
        write_at(d, "hl1", "linked", 6, 0600);
        own(d, "hl1", base + 9, base + 9);
        assert_int_equal(linkat(d, "hl1", d, "a/hl2", 0), 0);
        assert_int_equal(mknodat(d, "gone", S_IFCHR | 0, makedev(0, 0)), 0);
        own(d, "gone", base, base);
        assert_int_equal(linkat(d, "gone", d, "a/b/gone-too", 0), 0);
        assert_int_equal(mknodat(d, "blk", S_IFBLK | 0640, makedev(7, 250)), 0);
        assert_int_equal(mknodat(d, "fifo", S_IFIFO | 0620, 0), 0);
        own(d, "fifo", base + 3, base + 4);

        /* sparse: 16 MiB with two 4 KiB data pieces */
        {
                _cleanup_close_ int f = openat(d, "sparse", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                char page[4096];

                memset(page, 'S', sizeof page);
                assert_true(f >= 0);
                assert_int_equal(pwrite(f, page, sizeof page, 0), (ssize_t)sizeof page);
                assert_int_equal(pwrite(f, page, sizeof page, 8 << 20), (ssize_t)sizeof page);
                assert_int_equal(ftruncate(f, SPARSE_SIZE), 0);
        }

        /* symlinks: a loop, out of the tree (file and dir), up and out, dangling */
        assert_int_equal(symlinkat("loop2", d, "loop1"), 0);
        assert_int_equal(symlinkat("loop1", d, "loop2"), 0);
        assert_int_equal(symlinkat("/etc/passwd", d, "out"), 0);
        assert_int_equal(symlinkat("/etc", d, "outdir"), 0);
        assert_int_equal(symlinkat("../../../..", d, "a/up"), 0);
        assert_int_equal(symlinkat("nowhere", d, "dangling"), 0);
        own(d, "out", base + 11, base + 12);

        /* a socket (skipped by the copy) */
        {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                _cleanup_close_ int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                _cleanup_close_ int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                assert_true(s >= 0 && cwd >= 0);
                assert_int_equal(fchdir(d), 0);
                snprintf(sa.sun_path, sizeof sa.sun_path, "sock");
                assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
                assert_int_equal(fchdir(cwd), 0);
        }

        /* owners of everything else, then times last (children change their dir's mtime) */
        static const char *const rest[] = { "a",     "a/b",      "opaque", "sticky",   "closed", "closed/inside",
                                            "empty", "a/b/deep", "acl",    "blk",      "sparse", "loop1",
                                            "loop2", "outdir",   "a/up",   "dangling", "sock" };
        for (size_t i = 0; i < ELEMENTSOF(rest); i++)
                own(d, rest[i], base + (uid_t)i % 3, base + (uid_t)i % 4);
        assert_int_equal(fchown(d, base, base), 0);
        static const char *const all[] = { "file",     "suid", "hl1", "gone",   "fifo",   "sparse", "out",   "loop1",
                                           "a/b/deep", "a/b",  "a",   "opaque", "sticky", "sgid",   "closed" };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                set_times(d, all[i], 1600000000 + (time_t)i * 1000, 123456789 - (long)i);
        set_times(d, ".", 1500000000, 42);
}

/* ---------- comparing ---------- */

struct expect {
        bool shift;
        uint32_t from, to;
        bool foreign_ok;
};

static uint32_t map(const struct expect *e, uint32_t id)
{
        if (!e->shift || id - e->from >= SBX_UID_RANGE)
                return id;
        return id - e->from + e->to;
}

static void expect_xattr_value(const struct expect *e, const char *name, unsigned char *v, size_t *len)
{
        if (!e->shift)
                return;
        if (!strcmp(name, "security.capability")) {
                uint32_t rootid = *len == XATTR_CAPS_SZ_3 ? get_le32(v + 20) : 0;
                uint32_t m = map(e, rootid), magic = get_le32(v) & VFS_CAP_FLAGS_MASK;

                if (m == 0) {
                        le32(v, magic | VFS_CAP_REVISION_2);
                        *len = XATTR_CAPS_SZ_2;
                } else {
                        le32(v, magic | VFS_CAP_REVISION_3);
                        le32(v + 20, m);
                        *len = XATTR_CAPS_SZ_3;
                }
        } else if (!strncmp(name, "system.posix_acl_", 17)) {
                for (size_t off = 4; off + 8 <= *len; off += 8)
                        if (v[off] == 0x02 || v[off] == 0x08)
                                le32(v + off + 4, map(e, get_le32(v + off + 4)));
        }
}

static void compare_xattrs(const char *sp, const char *dp, const struct expect *e)
{
        char sl[4096], dl[4096];
        ssize_t sn = llistxattr(sp, sl, sizeof sl), dn = llistxattr(dp, dl, sizeof dl);

        assert_true(sn >= 0 && dn >= 0);
        assert_int_equal(sn, dn);
        for (ssize_t i = 0; i < sn; i += (ssize_t)strlen(sl + i) + 1) {
                unsigned char sv[1024], dv[1024];
                ssize_t a = lgetxattr(sp, sl + i, sv, sizeof sv), b = lgetxattr(dp, sl + i, dv, sizeof dv);
                size_t len;

                if (a < 0 || b < 0)
                        fail_msg("xattr %s of %s: %zd %zd", sl + i, sp, a, b);
                len = (size_t)a;
                expect_xattr_value(e, sl + i, sv, &len);
                if ((size_t)b != len || memcmp(sv, dv, len) != 0)
                        fail_msg("xattr %s of %s differs", sl + i, sp);
        }
}

static void compare_data(const char *sp, const char *dp, const struct stat *ss, const struct stat *ds)
{
        _cleanup_close_ int a = open(sp, O_RDONLY | O_CLOEXEC), b = open(dp, O_RDONLY | O_CLOEXEC);
        _cleanup_free_ char *x = malloc((size_t)ss->st_size + 1), *y = malloc((size_t)ss->st_size + 1);

        assert_true(a >= 0 && b >= 0 && x && y);
        assert_int_equal(ss->st_size, ds->st_size);
        assert_int_equal(read(a, x, (size_t)ss->st_size + 1), ss->st_size);
        assert_int_equal(read(b, y, (size_t)ss->st_size + 1), ss->st_size);
        assert_memory_equal(x, y, (size_t)ss->st_size);
        /* holes stay holes */
        if (ss->st_size == SPARSE_SIZE)
                assert_true(ds->st_blocks <= ss->st_blocks + 64);
}

/* ino pairs seen: a src inode must always map to the same dst inode */
static struct {
        ino_t s[64], d[64];
        size_t n;
} links;

static void check_link(const struct stat *ss, const struct stat *ds)
{
        for (size_t i = 0; i < links.n; i++)
                if (links.s[i] == ss->st_ino) {
                        assert_true(links.d[i] == ds->st_ino);
                        return;
                }
        assert_true(links.n < ELEMENTSOF(links.s));
        links.s[links.n] = ss->st_ino;
        links.d[links.n++] = ds->st_ino;
}

static unsigned compare_tree(const char *s, const char *d, const struct expect *e)
{
        struct stat ss, ds;
        unsigned n = 1;

        assert_int_equal(lstat(s, &ss), 0);
        if (S_ISSOCK(ss.st_mode)) {
                assert_int_equal(lstat(d, &ds), -1);
                return 0;
        }
        if (lstat(d, &ds) < 0)
                fail_msg("'%s' missing in the copy", d);
        if ((ss.st_mode & S_IFMT) != (ds.st_mode & S_IFMT))
                fail_msg("type of %s", d);
        if (!S_ISLNK(ss.st_mode) && (ss.st_mode & 07777) != (ds.st_mode & 07777))
                fail_msg("mode of %s: %o vs %o", d, ss.st_mode & 07777, ds.st_mode & 07777);
        if (map(e, ss.st_uid) != ds.st_uid || map(e, ss.st_gid) != ds.st_gid)
                fail_msg("owner of %s: %u:%u vs %u:%u", d, ss.st_uid, ss.st_gid, ds.st_uid, ds.st_gid);
        if (ss.st_mtim.tv_sec != ds.st_mtim.tv_sec || ss.st_mtim.tv_nsec != ds.st_mtim.tv_nsec)
                fail_msg("mtime of %s", d);
        if (!S_ISDIR(ss.st_mode) && ss.st_nlink != ds.st_nlink)
                fail_msg("links of %s: %lu vs %lu", d, (unsigned long)ss.st_nlink, (unsigned long)ds.st_nlink);
        if (!S_ISDIR(ss.st_mode) && ss.st_nlink > 1)
                check_link(&ss, &ds);
        compare_xattrs(s, d, e);
        if (S_ISCHR(ss.st_mode) || S_ISBLK(ss.st_mode))
                assert_true(ss.st_rdev == ds.st_rdev);
        if (S_ISREG(ss.st_mode))
                compare_data(s, d, &ss, &ds);
        if (S_ISLNK(ss.st_mode)) {
                char a[PATH_MAX], b[PATH_MAX];
                ssize_t x = readlink(s, a, sizeof a), y = readlink(d, b, sizeof b);

                assert_true(x > 0 && x == y);
                assert_memory_equal(a, b, (size_t)x);
        }
        if (S_ISDIR(ss.st_mode)) {
                DIR *dir = opendir(s);
                struct dirent *de;
                unsigned in_dst = 0;

                assert_non_null(dir);
                while ((de = readdir(dir))) {
                        char cs[PATH_MAX], cd[PATH_MAX];

                        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                                continue;
                        snprintf(cs, sizeof cs, "%s/%s", s, de->d_name);
                        snprintf(cd, sizeof cd, "%s/%s", d, de->d_name);
                        unsigned c = compare_tree(cs, cd, e);
                        n += c;
                        in_dst += c ? 1 : 0;
                }
                closedir(dir);
                /* nothing extra in the copy */
                dir = opendir(d);
                assert_non_null(dir);
                while ((de = readdir(dir)))
                        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                                in_dst--;
                closedir(dir);
                assert_int_equal(in_dst, 0);
        }
        return n;
}

/* ---------- helpers ---------- */

static int copy(const char *src, const char *dst, const struct tree_copy_opts *o, struct tree_stats *st,
                struct sbx_err *err)
{
        _cleanup_close_ int s = -EBADF, d = -EBADF;

        if (mkdirat(tmp_fd, dst, 0700) < 0)
                return -errno;
        s = open_dir(tmp_fd, src);
        d = open_dir(tmp_fd, dst);
        return tree_copy(s, d, o, st, err);
}

static void path_of(char *buf, size_t size, const char *name)
{
        snprintf(buf, size, "%s/%s", tmp, name);
}

static void copy_and_compare(const char *src, const char *dst, uid_t from, uid_t to, unsigned sockets)
{
        struct tree_copy_opts o = { .id_from = from, .id_to = to };
        struct expect e = { .shift = from != to, .from = from, .to = to };
        struct tree_stats st;
        struct sbx_err err = { 0 };
        char sp[PATH_MAX], dp[PATH_MAX];
        unsigned n;
        int r;

        r = copy(src, dst, &o, &st, &err);
        if (r < 0)
                fail_msg("tree_copy %s -> %s: %d %s", src, dst, r, err.msg);
        path_of(sp, sizeof sp, src);
        path_of(dp, sizeof dp, dst);
        links.n = 0;
        n = compare_tree(sp, dp, &e);
        /* every entry but the root and the socket was made; the socket was counted as skipped */
        assert_int_equal(st.entries, n - 1);
        assert_int_equal(st.skipped, sockets);
        assert_true(st.bytes >= SPARSE_SIZE);
}

static int group_setup(void **state)
{
        root = geteuid() == 0;
        /* bind mounts below stay in this process's own mount namespace; before any fd is opened,
         * since an fd keeps seeing the mounts of the namespace it was opened in */
        if (root && (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0))
                return -1;
        snprintf(tmp, sizeof tmp, "/var/tmp/sbx-test-tree-XXXXXX");
        if (!mkdtemp(tmp))
                return -1;
        tmp_fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (tmp_fd < 0)
                return -1;
        if (root)
                make_fixture("src", BASE);
        return 0;
}

static int group_teardown(void **state)
{
        if (tmp_fd >= 0) {
                _cleanup_close_ int up = open("/var/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                const char *name = strrchr(tmp, '/') + 1;

                safe_close(tmp_fd);
                assert_int_equal(tree_remove(up, name), 0);
        }
        return 0;
}

#define NEED_ROOT()                                                            \
        do {                                                                   \
                if (!root) {                                                   \
                        print_message("needs root (chown, mknod): skipped\n"); \
                        skip();                                                \
                }                                                              \
        } while (0)

/* ---------- tests ---------- */

static void test_copy_keep_ids(void **state)
{
        NEED_ROOT();
        copy_and_compare("src", "same", BASE, BASE, 1);
        /* the symlinks were copied as links, never followed */
        char p[PATH_MAX], t[64];
        struct stat st;

        path_of(p, sizeof p, "same/out");
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(readlink(p, t, sizeof t), 11);
        path_of(p, sizeof p, "same/outdir");
        assert_int_equal(readlink(p, t, sizeof t), 4);
        assert_memory_equal(t, "/etc", 4);
        path_of(p, sizeof p, "same/a/up");
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
}

static void test_copy_shift_down_and_up(void **state)
{
        char p[PATH_MAX];
        unsigned char v[64];
        ssize_t n;

        NEED_ROOT();
        copy_and_compare("src", "layer", BASE, 0, 1);
        /* the capability written in the sandbox is now a plain v2 one, effective for its root */
        path_of(p, sizeof p, "layer/suid");
        n = lgetxattr(p, "security.capability", v, sizeof v);
        assert_int_equal(n, XATTR_CAPS_SZ_2);
        assert_int_equal(get_le32(v) & VFS_CAP_REVISION_MASK, VFS_CAP_REVISION_2);
        if (have_acl) {
                path_of(p, sizeof p, "layer/acl");
                n = lgetxattr(p, "system.posix_acl_access", v, sizeof v);
                assert_int_equal(n, 4 + 6 * 8);
                assert_int_equal(get_le32(v + 4 + 8 + 4), 1000);
                assert_int_equal(get_le32(v + 4 + 3 * 8 + 4), 1001);
        }
        /* and up into another sandbox's range: the same as shifting the original */
        copy_and_compare("layer", "other", 0, BASE2, 0);
        links.n = 0;
        {
                struct expect e = { .shift = true, .from = BASE, .to = BASE2 };
                char sp[PATH_MAX];

                path_of(sp, sizeof sp, "src");
                path_of(p, sizeof p, "other");
                (void)compare_tree(sp, p, &e);
        }
        path_of(p, sizeof p, "other/suid");
        n = lgetxattr(p, "security.capability", v, sizeof v);
        assert_int_equal(n, XATTR_CAPS_SZ_3);
        assert_int_equal(get_le32(v + 20), BASE2);
}

static void test_foreign_ids(void **state)
{
        struct tree_copy_opts o = { .id_from = BASE, .id_to = 0 };
        struct sbx_err err = { 0 };
        struct tree_stats st;
        _cleanup_close_ int d = -EBADF;
        struct stat s;
        char p[PATH_MAX];

        NEED_ROOT();
        assert_int_equal(mkdir_at("foreign"), 0);
        d = open_dir(tmp_fd, "foreign");
        assert_int_equal(fchown(d, BASE, BASE), 0);
        assert_int_equal(mkdirat(d, "sub", 0755), 0);
        own(d, "sub", BASE, BASE);
        write_at(d, "sub/hostroot", "x", 1, 0644);
        own(d, "sub/hostroot", BASE + 1, 4242);
        assert_int_equal(copy("foreign", "foreign-refused", &o, &st, &err), -SBX_E_INVALID);
        assert_non_null(strstr(err.msg, "'sub/hostroot'"));
        assert_string_equal(err.reason, "foreign_owner");

        o.keep_foreign = true;
        err = (struct sbx_err){ 0 };
        assert_int_equal(copy("foreign", "foreign-kept", &o, &st, &err), 0);
        path_of(p, sizeof p, "foreign-kept/sub/hostroot");
        assert_int_equal(lstat(p, &s), 0);
        assert_int_equal(s.st_uid, 1);
        assert_int_equal(s.st_gid, 4242);

        /* a capability whose root id is foreign is refused too */
        {
                unsigned char b[XATTR_CAPS_SZ_3];
                _cleanup_close_ int f = -EBADF;

                write_at(d, "cap", "x", 1, 0755);
                own(d, "cap", BASE, BASE);
                f = openat(d, "cap", O_RDONLY | O_CLOEXEC);
                assert_int_equal(fsetxattr(f, "security.capability", b, cap_v3(b, BASE2 + 5), 0), 0);
                own(d, "sub/hostroot", BASE, BASE);
                o.keep_foreign = false;
                err = (struct sbx_err){ 0 };
                assert_int_equal(copy("foreign", "foreign-cap", &o, &st, &err), -SBX_E_INVALID);
                assert_non_null(strstr(err.msg, "security.capability"));
        }
        /* ranges that do not fit */
        o.id_to = UINT32_MAX - 10;
        assert_int_equal(copy("foreign", "foreign-range", &o, &st, NULL), -EINVAL);
}

static void test_bounds(void **state)
{
        struct tree_copy_opts o = { .id_from = 0, .id_to = 0, .max_entries = 5 };
        struct sbx_err err = { 0 };
        _cleanup_close_ int d = -EBADF;

        assert_int_equal(mkdir_at("bounds"), 0);
        d = open_dir(tmp_fd, "bounds");
        for (int i = 0; i < 10; i++) {
                char n[16];

                snprintf(n, sizeof n, "f%d", i);
                write_at(d, n, "x", 1, 0644);
        }
        assert_int_equal(mkdirat(d, "1", 0755), 0);
        assert_int_equal(mkdirat(d, "1/2", 0755), 0);
        assert_int_equal(mkdirat(d, "1/2/3", 0755), 0);
        assert_int_equal(mkdirat(d, "1/2/3/4", 0755), 0);
        assert_int_equal(copy("bounds", "bounds-entries", &o, NULL, &err), -SBX_E_TOO_LARGE);
        assert_non_null(strstr(err.msg, "more than 5 entries"));

        o.max_entries = 0;
        o.max_depth = 3;
        err = (struct sbx_err){ 0 };
        assert_int_equal(copy("bounds", "bounds-depth", &o, NULL, &err), -SBX_E_TOO_LARGE);
        assert_non_null(strstr(err.msg, "'1/2/3/4' is more than 3 directories deep"));
        o.max_depth = 4;
        assert_int_equal(copy("bounds", "bounds-ok", &o, NULL, NULL), 0);

        /* the same tree as its own destination's parent */
        {
                _cleanup_close_ int s = open_dir(tmp_fd, "bounds"), dst = -EBADF;

                assert_int_equal(mkdirat(s, "into", 0700), 0);
                dst = open_dir(s, "into");
                err = (struct sbx_err){ 0 };
                assert_int_equal(tree_copy(s, dst, &o, NULL, &err), -EINVAL);
                assert_non_null(strstr(err.msg, "own root"));
                assert_int_equal(tree_remove(s, "into"), 0);
        }
}

static void test_mounts(void **state)
{
        struct tree_copy_opts o = { 0 };
        struct sbx_err err = { 0 };
        char p[PATH_MAX];
        struct stat st;

        NEED_ROOT();
        assert_int_equal(mkdir_at("mnt"), 0);
        assert_int_equal(mkdir_at("mnt/x"), 0);
        assert_int_equal(mkdir_at("mnt/y"), 0);
        assert_int_equal(mkdir_at("canary"), 0);
        assert_int_equal(mkdir_at("canary/keep"), 0);
        path_of(p, sizeof p, "canary");
        {
                char t[PATH_MAX];

                path_of(t, sizeof t, "mnt/x/y");
                assert_int_equal(mkdir_at("mnt/x/y"), 0);
                assert_int_equal(mount(p, t, NULL, MS_BIND, NULL), 0);
        }
        assert_int_equal(copy("mnt", "mnt-copy", &o, NULL, &err), -EXDEV);
        assert_non_null(strstr(err.msg, "'x/y'"));
        /* removal leaves the mount and what is in it, removes the rest */
        assert_int_equal(tree_remove(tmp_fd, "mnt"), -EXDEV);
        path_of(p, sizeof p, "canary/keep");
        assert_int_equal(stat(p, &st), 0);
        path_of(p, sizeof p, "mnt/y");
        assert_int_equal(stat(p, &st), -1);
        path_of(p, sizeof p, "mnt/x/y");
        assert_int_equal(umount2(p, 0), 0);
        assert_int_equal(tree_remove(tmp_fd, "mnt"), 0);
        assert_int_equal(tree_remove(tmp_fd, "mnt"), 0); /* missing: fine */
        assert_int_equal(tree_remove(tmp_fd, "mnt-copy"), 0);
}

static void test_shift_in_place(void **state)
{
        struct tree_copy_opts o = { .id_from = BASE, .id_to = BASE };
        struct expect e = { .shift = true, .from = BASE, .to = 0 };
        struct sbx_err err = { 0 };
        _cleanup_close_ int d = -EBADF;
        char sp[PATH_MAX], dp[PATH_MAX];
        struct stat st;

        NEED_ROOT();
        assert_int_equal(copy("src", "inplace", &o, NULL, NULL), 0);
        d = open_dir(tmp_fd, "inplace");
        assert_int_equal(tree_shift_ids(d, BASE, 0, &err), 0);
        path_of(sp, sizeof sp, "src");
        path_of(dp, sizeof dp, "inplace");
        links.n = 0;
        /* sockets were not copied: compare_tree expects them missing, which they are */
        (void)compare_tree(sp, dp, &e);
        path_of(dp, sizeof dp, "inplace/suid");
        assert_int_equal(lstat(dp, &st), 0);
        assert_int_equal(st.st_mode & 07777, 04755);
        assert_int_equal(lgetxattr(dp, "security.capability", NULL, 0), XATTR_CAPS_SZ_2);

        /* back up again; an id outside the range stays as it is */
        assert_int_equal(tree_shift_ids(d, 0, BASE2, &err), 0);
        assert_int_equal(fchownat(d, "file", 77, BASE2 + 3, 0), 0);
        assert_int_equal(tree_shift_ids(d, BASE2, BASE, &err), 0);
        assert_int_equal(fstatat(d, "file", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(st.st_uid, 77);
        assert_int_equal(st.st_gid, BASE + 3);
        assert_int_equal(fstatat(d, "suid", &st, AT_SYMLINK_NOFOLLOW), 0);
        assert_int_equal(st.st_uid, BASE);
        assert_int_equal(st.st_mode & 07777, 04755);
        {
                unsigned char v[64];

                path_of(dp, sizeof dp, "inplace/suid");
                assert_int_equal(lgetxattr(dp, "security.capability", v, sizeof v), XATTR_CAPS_SZ_3);
                assert_int_equal(get_le32(v + 20), BASE);
        }
        assert_int_equal(tree_shift_ids(d, BASE, BASE, NULL), 0); /* nothing to do */
        d = safe_close(d);
        assert_int_equal(tree_remove(tmp_fd, "inplace"), 0);
}

static void test_remove(void **state)
{
        struct tree_copy_opts o = { .id_from = BASE, .id_to = BASE };
        char p[PATH_MAX];
        struct stat st;

        NEED_ROOT();
        assert_int_equal(copy("src", "doomed", &o, NULL, NULL), 0);
        assert_int_equal(tree_remove(tmp_fd, "doomed"), 0);
        path_of(p, sizeof p, "doomed");
        assert_int_equal(lstat(p, &st), -1);
        /* what the symlinks pointed to is still there */
        assert_int_equal(stat("/etc/passwd", &st), 0);
        path_of(p, sizeof p, "src/a/b/deep");
        assert_int_equal(stat(p, &st), 0);
        /* a file, a symlink */
        assert_int_equal(symlinkat("/etc/passwd", tmp_fd, "lnk"), 0);
        assert_int_equal(tree_remove(tmp_fd, "lnk"), 0);
        assert_int_equal(tree_remove(tmp_fd, "../x"), -EINVAL);
        assert_int_equal(tree_remove(tmp_fd, ".."), -EINVAL);
}

static void test_unprivileged_subset(void **state)
{
        /* what works without root too: a tree of our own files, ids kept */
        struct tree_copy_opts o = { .id_from = geteuid(), .id_to = geteuid() };
        struct expect e = { 0 };
        _cleanup_close_ int d = -EBADF;
        char sp[PATH_MAX], dp[PATH_MAX];

        assert_int_equal(mkdir_at("plain"), 0);
        d = open_dir(tmp_fd, "plain");
        assert_int_equal(mkdirat(d, "dir", 0700), 0);
        write_at(d, "dir/f", "hello", 5, 0600);
        write_at(d, "x", "", 0, 0755);
        assert_int_equal(linkat(d, "x", d, "dir/x2", 0), 0);
        assert_int_equal(symlinkat("dir/f", d, "l"), 0);
        set_times(d, "x", 1234567890, 5);
        assert_int_equal(copy("plain", "plain-copy", &o, NULL, NULL), 0);
        path_of(sp, sizeof sp, "plain");
        path_of(dp, sizeof dp, "plain-copy");
        links.n = 0;
        assert_int_equal(compare_tree(sp, dp, &e), 6);
        assert_int_equal(tree_remove(tmp_fd, "plain-copy"), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_copy_keep_ids), cmocka_unit_test(test_copy_shift_down_and_up),
                cmocka_unit_test(test_foreign_ids),   cmocka_unit_test(test_bounds),
                cmocka_unit_test(test_mounts),        cmocka_unit_test(test_shift_in_place),
                cmocka_unit_test(test_remove),        cmocka_unit_test(test_unprivileged_subset),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
