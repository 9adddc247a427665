// SPDX-License-Identifier: Apache-2.0
/*
 * btrfs.c against a real kernel: a 256 MiB sparse image in a mkdtemp dir under /var/tmp, made by
 * btrfs_image_mount (mkfs.btrfs, a loop device, the mount; idempotent), subvolumes, read-only and
 * writable snapshots and their isolation, deletes (read-only, nested), reflinked tree copies, a
 * qgroup limit that ends a write with EDQUOT (full qgroups, and simple quotas where the kernel has
 * them), usage, unmount, and no loop device left attached. Runs in a private mount namespace.
 * Needs root, /dev/loop-control, btrfs in the kernel and mkfs.btrfs (btrfs-progs): otherwise
 * every test skips, saying why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "sandbox/btrfs.h"
#include "sandbox/tree.h"

#define IMAGE_SIZE (256ULL << 20)
#define LIMIT (32ULL << 20)

static char tmp[128], img[192], img2[192], mnt[192], mnt2[192];
static const char *why_skip;

static bool fs_has_btrfs(void)
{
        char line[128];
        FILE *f = fopen("/proc/filesystems", "re");
        bool yes = false;

        if (!f)
                return false;
        while (!yes && fgets(line, sizeof line, f))
                yes = strstr(line, "\tbtrfs\n") != NULL;
        fclose(f);
        return yes;
}

/* btrfs as a module not loaded yet: the first mount loads it */
static bool btrfs_module(void)
{
        struct utsname u;
        char p[512];

        if (uname(&u) < 0)
                return false;
        snprintf(p, sizeof p, "/lib/modules/%s/kernel/fs/btrfs", u.release);
        return access(p, F_OK) == 0;
}

static int group_setup(void **state)
{
        if (geteuid() != 0)
                why_skip = "needs root (loop devices, mount)";
        else if (access("/dev/loop-control", W_OK) < 0)
                why_skip = "no /dev/loop-control";
        else if (!fs_has_btrfs() && !btrfs_module())
                why_skip = "the kernel has no btrfs";
        else if (access("/usr/sbin/mkfs.btrfs", X_OK) < 0 && access("/sbin/mkfs.btrfs", X_OK) < 0 &&
                 access("/usr/bin/mkfs.btrfs", X_OK) < 0)
                why_skip = "no mkfs.btrfs (apt-get install btrfs-progs)";
        if (why_skip)
                return 0;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -1;
        snprintf(tmp, sizeof tmp, "/var/tmp/sbx-test-btrfs-XXXXXX");
        if (!mkdtemp(tmp))
                return -1;
        snprintf(img, sizeof img, "%s/state.img", tmp);
        snprintf(img2, sizeof img2, "%s/other.img", tmp);
        snprintf(mnt, sizeof mnt, "%s/mnt", tmp);
        snprintf(mnt2, sizeof mnt2, "%s/mnt2", tmp);
        if (mkdir(mnt, 0755) < 0 || mkdir(mnt2, 0755) < 0)
                return -1;
        return 0;
}

static int group_teardown(void **state)
{
        _cleanup_close_ int up = -EBADF;

        if (why_skip || !tmp[0])
                return 0;
        (void)btrfs_image_umount(mnt, NULL);
        (void)btrfs_image_umount(mnt2, NULL);
        up = open("/var/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return tree_remove(up, strrchr(tmp, '/') + 1) == 0 ? 0 : -1;
}

#define NEED_BTRFS()                                              \
        do {                                                      \
                if (why_skip) {                                   \
                        print_message("skipped: %s\n", why_skip); \
                        skip();                                   \
                }                                                 \
        } while (0)

static int open_dir(int at, const char *name)
{
        int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                fail_msg("cannot open '%s': %s", name, strerror(errno));
        return fd;
}

static void put(int dfd, const char *name, const char *text)
{
        _cleanup_close_ int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
}

static bool exists(int dfd, const char *name)
{
        struct stat st;

        return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Is any loop device backed by path? */
static bool loop_attached(const char *path)
{
        DIR *d = opendir("/sys/block");
        struct dirent *de;
        bool found = false;

        assert_non_null(d);
        while (!found && (de = readdir(d))) {
                char p[300], back[PATH_MAX];

                if (strncmp(de->d_name, "loop", 4) != 0)
                        continue;
                snprintf(p, sizeof p, "/sys/block/%s/loop/backing_file", de->d_name);
                _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t n = read(fd, back, sizeof back - 1);
                if (n <= 0)
                        continue;
                back[n] = '\0';
                if (back[n - 1] == '\n')
                        back[n - 1] = '\0';
                found = strcmp(back, path) == 0;
        }
        closedir(d);
        return found;
}

static void test_image_mount(void **state)
{
        struct sbx_err err = { 0 };
        _cleanup_close_ int m = -EBADF;
        struct stat st;

        NEED_BTRFS();
        assert_int_equal(btrfs_image_mount(img2, 1 << 20, mnt2, &err), -EINVAL); /* too small to make */
        err = (struct sbx_err){ 0 };
        if (btrfs_image_mount(img, IMAGE_SIZE, mnt, &err) < 0)
                fail_msg("btrfs_image_mount: %s", err.msg);
        assert_int_equal(stat(img, &st), 0);
        assert_int_equal(st.st_size, (off_t)IMAGE_SIZE);
        assert_true(st.st_blocks * 512 < st.st_size / 2); /* sparse */
        m = open_dir(AT_FDCWD, mnt);
        assert_true(btrfs_is(m));
        assert_true(btrfs_is_subvol(m)); /* the top-level subvolume */
        assert_true(loop_attached(img));
        /* again: already there */
        assert_int_equal(btrfs_image_mount(img, IMAGE_SIZE, mnt, &err), 0);
        /* another image on the same mount point: refused */
        err = (struct sbx_err){ 0 };
        assert_int_equal(btrfs_image_mount(img2, IMAGE_SIZE, mnt, &err), -EBUSY);
        assert_non_null(strstr(err.msg, "something else"));
        assert_false(loop_attached(img2));
        /* a plain directory is no btrfs */
        {
                _cleanup_close_ int t = open_dir(AT_FDCWD, tmp);
                assert_false(btrfs_is(t));
                assert_false(btrfs_is_subvol(t));
        }
}

static void test_subvolumes(void **state)
{
        struct sbx_err err = { 0 };
        _cleanup_close_ int m = -EBADF, up = -EBADF, ro = -EBADF, rw = -EBADF;

        NEED_BTRFS();
        m = open_dir(AT_FDCWD, mnt);
        assert_int_equal(btrfs_subvol_create(m, "upper", &err), 0);
        assert_int_equal(btrfs_subvol_create(m, "upper", NULL), -EEXIST);
        assert_int_equal(btrfs_subvol_create(m, "a/b", NULL), -EINVAL);
        up = open_dir(m, "upper");
        assert_true(btrfs_is_subvol(up));
        assert_int_equal(mkdirat(up, "dir", 0755), 0);
        put(up, "dir/file", "before");
        put(up, "top", "top");

        /* read-only snapshot: frozen */
        assert_int_equal(btrfs_subvol_snapshot(up, m, "snap-ro", true, &err), 0);
        ro = open_dir(m, "snap-ro");
        assert_true(btrfs_is_subvol(ro));
        assert_int_equal(openat(ro, "new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);
        assert_int_equal(errno, EROFS);
        assert_true(exists(ro, "dir/file"));

        /* writable snapshot: isolated both ways */
        assert_int_equal(btrfs_subvol_snapshot(up, m, "snap-rw", false, &err), 0);
        rw = open_dir(m, "snap-rw");
        put(rw, "only-in-snapshot", "x");
        put(rw, "dir/file", "changed in snapshot");
        put(up, "only-in-source", "y");
        assert_false(exists(up, "only-in-snapshot"));
        assert_false(exists(rw, "only-in-source"));
        assert_false(exists(ro, "only-in-source"));
        {
                char b[64] = "";
                _cleanup_close_ int f = openat(up, "dir/file", O_RDONLY | O_CLOEXEC);

                assert_int_equal(read(f, b, sizeof b), 6);
                assert_memory_equal(b, "before", 6);
        }

        /* flags */
        assert_int_equal(btrfs_subvol_set_readonly(rw, true, &err), 0);
        assert_int_equal(openat(rw, "new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644), -1);
        assert_int_equal(btrfs_subvol_set_readonly(rw, false, &err), 0);
        put(rw, "new", "writable again");
        assert_int_equal(btrfs_subvol_set_readonly(rw, false, &err), 0);

        /* a snapshot of something that is not a subvolume root */
        {
                _cleanup_close_ int d = open_dir(up, "dir");
                err = (struct sbx_err){ 0 };
                assert_true(btrfs_subvol_snapshot(d, m, "bad", true, &err) < 0);
        }

        /* deletes: nested refused, then fine; read-only directly; not a subvolume; missing */
        assert_int_equal(btrfs_subvol_create(rw, "inner", &err), 0);
        rw = safe_close(rw);
        err = (struct sbx_err){ 0 };
        assert_int_equal(btrfs_subvol_delete(m, "snap-rw", &err), -ENOTEMPTY);
        assert_non_null(strstr(err.msg, "other subvolumes"));
        {
                _cleanup_close_ int s = open_dir(m, "snap-rw");
                assert_int_equal(btrfs_subvol_delete(s, "inner", &err), 0);
        }
        assert_int_equal(btrfs_subvol_delete(m, "snap-rw", &err), 0);
        assert_false(exists(m, "snap-rw"));
        ro = safe_close(ro);
        err = (struct sbx_err){ 0 };
        if (btrfs_subvol_delete(m, "snap-ro", &err) < 0)
                fail_msg("deleting a read-only snapshot: %s", err.msg);
        assert_false(exists(m, "snap-ro"));
        assert_int_equal(btrfs_subvol_delete(up, "dir", NULL), -EINVAL);
        assert_int_equal(btrfs_subvol_delete(m, "nothing", NULL), -ENOENT);
        assert_true(exists(up, "dir/file"));
}

static void test_tree_copy_reflinks(void **state)
{
        struct tree_copy_opts o = { .id_from = 0, .id_to = 0 };
        struct tree_stats st;
        struct sbx_err err = { 0 };
        _cleanup_close_ int m = -EBADF, up = -EBADF, dst = -EBADF;
        static char mib[1 << 20];

        NEED_BTRFS();
        m = open_dir(AT_FDCWD, mnt);
        up = open_dir(m, "upper");
        memset(mib, 'r', sizeof mib);
        {
                _cleanup_close_ int f = openat(up, "big", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                assert_int_equal(write(f, mib, sizeof mib), (ssize_t)sizeof mib);
        }
        assert_int_equal(mkdirat(m, "copy", 0755), 0);
        dst = open_dir(m, "copy");
        if (tree_copy(up, dst, &o, &st, &err) < 0)
                fail_msg("tree_copy: %s", err.msg);
        assert_true(st.reflinked >= 1);
        assert_true(exists(dst, "big"));
        dst = safe_close(dst);
        assert_int_equal(tree_remove(m, "copy"), 0);
        /* the same walk refuses to enter a subvolume: another st_dev */
        assert_int_equal(btrfs_subvol_create(up, "nested", &err), 0);
        assert_int_equal(mkdirat(m, "copy2", 0755), 0);
        dst = open_dir(m, "copy2");
        err = (struct sbx_err){ 0 };
        assert_int_equal(tree_copy(up, dst, &o, &st, &err), -EXDEV);
        assert_int_equal(tree_remove(up, "nested"), -EXDEV);
        assert_int_equal(btrfs_subvol_delete(up, "nested", &err), 0);
        dst = safe_close(dst);
        assert_int_equal(tree_remove(m, "copy2"), 0);
}

/* Write up to max bytes in 1 MiB pieces; returns the bytes written before an error (in *ret_errno). */
static uint64_t fill(int dfd, const char *name, uint64_t max, int *ret_errno)
{
        static char mib[1 << 20];
        _cleanup_close_ int f = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        uint64_t done = 0;

        assert_true(f >= 0);
        memset(mib, 'q', sizeof mib);
        *ret_errno = 0;
        while (done < max) {
                ssize_t n = write(f, mib, sizeof mib);

                if (n < 0) {
                        *ret_errno = errno;
                        break;
                }
                done += (uint64_t)n;
        }
        if (*ret_errno == 0 && fsync(f) < 0)
                *ret_errno = errno;
        return done;
}

static void quota_case(const char *mp, bool simple)
{
        struct sbx_err err = { 0 };
        struct btrfs_usage u;
        _cleanup_close_ int m = open_dir(AT_FDCWD, mp), q = -EBADF;
        uint64_t n;
        int e, r;

        r = btrfs_quota_enable(m, simple, &err);
        if (r < 0)
                fail_msg("btrfs_quota_enable: %s", err.msg);
        if (simple && r == 1)
                print_message("this kernel has no simple quotas: full qgroups instead\n");
        assert_int_equal(btrfs_quota_enable(m, simple, &err), simple ? r : 0); /* idempotent */
        assert_int_equal(btrfs_subvol_create(m, "limited", &err), 0);
        q = open_dir(m, "limited");
        assert_int_equal(btrfs_qgroup_limit(q, LIMIT, &err), 0);
        n = fill(q, "data", 2 * LIMIT, &e);
        print_message("%s quota: %llu MiB written under a %llu MiB limit, then %s\n", simple ? "simple" : "full",
                      (unsigned long long)(n >> 20), (unsigned long long)(LIMIT >> 20), strerror(e));
        assert_int_equal(e, EDQUOT);
        assert_true(n <= LIMIT && n >= LIMIT / 2);
        assert_int_equal(syncfs(m), 0);
        err = (struct sbx_err){ 0 };
        if (btrfs_qgroup_usage(q, &u, &err) < 0)
                fail_msg("btrfs_qgroup_usage: %s", err.msg);
        print_message("usage: referenced %llu, exclusive %llu\n", (unsigned long long)u.referenced,
                      (unsigned long long)u.exclusive);
        assert_true(u.referenced >= n && u.referenced <= n + (1 << 20));
        /* the limit gone, the same write goes through */
        assert_int_equal(btrfs_qgroup_limit(q, 0, &err), 0);
        n = fill(q, "data", 2 * LIMIT, &e);
        assert_int_equal(e, 0);
        assert_int_equal(n, 2 * LIMIT);
        q = safe_close(q);
        assert_int_equal(btrfs_subvol_delete(m, "limited", &err), 0);
}

static void test_quota_full(void **state)
{
        struct sbx_err err = { 0 };
        struct btrfs_usage u;
        _cleanup_close_ int m = -EBADF;

        NEED_BTRFS();
        m = open_dir(AT_FDCWD, mnt);
        /* quotas off: no usage */
        assert_int_equal(btrfs_qgroup_usage(m, &u, &err), -ENOENT);
        quota_case(mnt, false);
}

static void test_quota_simple(void **state)
{
        struct sbx_err err = { 0 };

        NEED_BTRFS();
        if (btrfs_image_mount(img2, IMAGE_SIZE, mnt2, &err) < 0)
                fail_msg("btrfs_image_mount: %s", err.msg);
        quota_case(mnt2, true);
        assert_int_equal(btrfs_image_umount(mnt2, &err), 0);
        assert_false(loop_attached(img2));
}

static void test_umount(void **state)
{
        struct sbx_err err = { 0 };
        _cleanup_close_ int m = -EBADF;

        NEED_BTRFS();
        if (btrfs_image_umount(mnt, &err) < 0)
                fail_msg("btrfs_image_umount: %s", err.msg);
        assert_false(loop_attached(img));
        assert_int_equal(btrfs_image_umount(mnt, &err), 0); /* not mounted: fine */
        /* mounted again, the data is still there */
        assert_int_equal(btrfs_image_mount(img, IMAGE_SIZE, mnt, &err), 0);
        m = open_dir(AT_FDCWD, mnt);
        assert_true(exists(m, "upper/dir/file"));
        /* a busy mount is not unmounted */
        assert_int_equal(btrfs_image_umount(mnt, &err), -EBUSY);
        m = safe_close(m);
        assert_int_equal(btrfs_image_umount(mnt, &err), 0);
        assert_false(loop_attached(img));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_image_mount),        cmocka_unit_test(test_subvolumes),
                cmocka_unit_test(test_tree_copy_reflinks), cmocka_unit_test(test_quota_full),
                cmocka_unit_test(test_quota_simple),       cmocka_unit_test(test_umount),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
