// SPDX-License-Identifier: Apache-2.0
/*
 * btrfs subvolumes, snapshots, qgroups and loop-mounted images through the kernel's ioctls (see
 * btrfs.h). The only program it runs is mkfs.btrfs, for a new image. Holds no state between
 * calls; every fd it opens is CLOEXEC and closed before it returns. No logging.
 */
#include "sandbox/btrfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cleanup.h"

#ifndef BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA
#define BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA 4 /* Linux 6.7 */
#endif

#define IMAGE_MIN_SIZE (128ULL << 20) /* mkfs.btrfs wants ~114 MiB for separate data/metadata */
#define MKFS_MSG_MAX 400              /* bytes of mkfs's stderr kept for the error message */
#define LOOP_TRIES 16                 /* LOOP_CTL_GET_FREE races with other users of loop devices */
#define UMOUNT_WAIT_MS 2000

bool btrfs_is(int fd)
{
        struct statfs sf;

        return fstatfs(fd, &sf) == 0 && (unsigned long)sf.f_type == BTRFS_SUPER_MAGIC;
}

bool btrfs_is_subvol(int fd)
{
        struct stat st;

        /* a subvolume's root directory is always inode 256 of its own tree */
        return btrfs_is(fd) && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == BTRFS_FIRST_FREE_OBJECTID;
}

static int check_name(const char *name, size_t max, struct sbx_err *err)
{
        size_t n = strnlen(name, max + 1);

        if (n == 0 || n > max || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
                return sbx_err_set(err, -EINVAL, "'%.64s' is not a valid subvolume name", name);
        return 0;
}

int btrfs_subvol_create(int parent_fd, const char *name, struct sbx_err *err)
{
        struct btrfs_ioctl_vol_args a = { 0 };
        int r = check_name(name, BTRFS_PATH_NAME_MAX, err);

        if (r < 0)
                return r;
        memcpy(a.name, name, strlen(name));
        if (ioctl(parent_fd, BTRFS_IOC_SUBVOL_CREATE, &a) < 0)
                return sbx_err_set(err, -errno, "cannot create subvolume '%s': %m", name);
        return 0;
}

int btrfs_subvol_snapshot(int src_fd, int dst_parent_fd, const char *name, bool readonly, struct sbx_err *err)
{
        struct btrfs_ioctl_vol_args_v2 a = { .fd = src_fd, .flags = readonly ? BTRFS_SUBVOL_RDONLY : 0 };
        int r = check_name(name, BTRFS_SUBVOL_NAME_MAX, err);

        if (r < 0)
                return r;
        memcpy(a.name, name, strlen(name));
        if (ioctl(dst_parent_fd, BTRFS_IOC_SNAP_CREATE_V2, &a) < 0)
                return sbx_err_set(err, -errno, "cannot snapshot a subvolume as '%s': %m", name);
        return 0;
}

int btrfs_subvol_set_readonly(int fd, bool readonly, struct sbx_err *err)
{
        uint64_t flags;

        if (ioctl(fd, BTRFS_IOC_SUBVOL_GETFLAGS, &flags) < 0)
                return sbx_err_set(err, -errno, "cannot read the flags of a subvolume: %m");
        if (!!(flags & BTRFS_SUBVOL_RDONLY) == readonly)
                return 0;
        flags = readonly ? flags | BTRFS_SUBVOL_RDONLY : flags & ~BTRFS_SUBVOL_RDONLY;
        if (ioctl(fd, BTRFS_IOC_SUBVOL_SETFLAGS, &flags) < 0)
                return sbx_err_set(err, -errno, "cannot make a subvolume %s: %m", readonly ? "read-only" : "writable");
        return 0;
}

int btrfs_subvol_delete(int parent_fd, const char *name, struct sbx_err *err)
{
        struct btrfs_ioctl_vol_args a = { 0 };
        _cleanup_close_ int fd = -EBADF;
        int r = check_name(name, BTRFS_PATH_NAME_MAX, err);

        if (r < 0)
                return r;
        fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open subvolume '%s': %m", name);
        if (!btrfs_is_subvol(fd))
                return sbx_err_set(err, -EINVAL, "'%s' is not a btrfs subvolume", name);
        fd = safe_close(fd);
        /* as root this deletes a read-only subvolume as it is (measured on 6.18); without
         * CAP_SYS_ADMIN it would take user_subvol_rm_allowed and a writable one */
        memcpy(a.name, name, strlen(name));
        if (ioctl(parent_fd, BTRFS_IOC_SNAP_DESTROY, &a) < 0) {
                if (errno == ENOTEMPTY)
                        return sbx_err_set(err, -ENOTEMPTY, "subvolume '%s' holds other subvolumes: delete them first",
                                           name);
                return sbx_err_set(err, -errno, "cannot delete subvolume '%s': %m", name);
        }
        return 0;
}

int btrfs_quota_enable(int mnt_fd, bool simple, struct sbx_err *err)
{
        struct btrfs_ioctl_quota_ctl_args a = { .cmd = simple ? BTRFS_QUOTA_CTL_ENABLE_SIMPLE_QUOTA
                                                              : BTRFS_QUOTA_CTL_ENABLE };
        int ret = 0;

        if (ioctl(mnt_fd, BTRFS_IOC_QUOTA_CTL, &a) < 0) {
                if (!simple || errno != EINVAL)
                        return sbx_err_set(err, -errno, "cannot enable btrfs quotas: %m");
                /* a kernel without simple quotas */
                a = (struct btrfs_ioctl_quota_ctl_args){ .cmd = BTRFS_QUOTA_CTL_ENABLE };
                if (ioctl(mnt_fd, BTRFS_IOC_QUOTA_CTL, &a) < 0)
                        return sbx_err_set(err, -errno, "cannot enable btrfs quotas: %m");
                ret = 1;
        }
        /* full qgroups count nothing until the rescan that enabling started is done; with simple
         * quotas there is none (ENOTCONN: nothing to wait for) */
        while (ioctl(mnt_fd, BTRFS_IOC_QUOTA_RESCAN_WAIT) < 0)
                if (errno != EINTR) {
                        if (errno == ENOTCONN || errno == EINVAL)
                                break;
                        return sbx_err_set(err, -errno, "cannot wait for the btrfs quota rescan: %m");
                }
        return ret;
}

int btrfs_qgroup_limit(int subvol_fd, uint64_t bytes, struct sbx_err *err)
{
        /* qgroupid 0: the subvolume of the fd; max (u64)-1 clears the limit */
        struct btrfs_ioctl_qgroup_limit_args a = {
                .lim = { .flags = BTRFS_QGROUP_LIMIT_MAX_RFER, .max_rfer = bytes ? bytes : UINT64_MAX },
        };

        if (ioctl(subvol_fd, BTRFS_IOC_QGROUP_LIMIT, &a) < 0)
                return sbx_err_set(err, -errno, "cannot set the btrfs qgroup limit: %m");
        return 0;
}

static uint64_t le64_get(const unsigned char *p)
{
        uint64_t v = 0;

        for (int i = 7; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

int btrfs_qgroup_usage(int subvol_fd, struct btrfs_usage *ret, struct sbx_err *err)
{
        struct btrfs_ioctl_ino_lookup_args lk = { .treeid = 0, .objectid = BTRFS_FIRST_FREE_OBJECTID };
        struct btrfs_ioctl_search_args *s;
        const struct btrfs_ioctl_search_header *h;
        const unsigned char *item;
        int r = 0;

        /* treeid 0 + the first free objectid: just "which subvolume is fd in" (no privilege) */
        if (ioctl(subvol_fd, BTRFS_IOC_INO_LOOKUP, &lk) < 0)
                return sbx_err_set(err, -errno, "cannot find the subvolume's id: %m");
        s = calloc(1, sizeof *s);
        if (!s)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        /* one key per qgroup: (0, QGROUP_INFO, qgroupid); a level-0 qgroup's id is the subvolume's */
        s->key = (struct btrfs_ioctl_search_key){
                .tree_id = BTRFS_QUOTA_TREE_OBJECTID,
                .min_type = BTRFS_QGROUP_INFO_KEY,
                .max_type = BTRFS_QGROUP_INFO_KEY,
                .min_offset = lk.treeid,
                .max_offset = lk.treeid,
                .max_transid = UINT64_MAX,
                .nr_items = 1,
        };
        if (ioctl(subvol_fd, BTRFS_IOC_TREE_SEARCH, s) < 0) {
                r = sbx_err_set(err, -errno,
                                errno == ENOENT ? "btrfs quotas are off" : "cannot read btrfs qgroups: %m");
                goto out;
        }
        h = (const struct btrfs_ioctl_search_header *)s->buf;
        if (s->key.nr_items < 1 || h->type != BTRFS_QGROUP_INFO_KEY || h->offset != lk.treeid ||
            h->len < sizeof(struct btrfs_qgroup_info_item)) {
                r = sbx_err_set(err, -ENOENT, "subvolume %llu has no qgroup", (unsigned long long)lk.treeid);
                goto out;
        }
        item = (const unsigned char *)(h + 1);
        ret->referenced = le64_get(item + offsetof(struct btrfs_qgroup_info_item, rfer));
        ret->exclusive = le64_get(item + offsetof(struct btrfs_qgroup_info_item, excl));
out:
        free(s);
        return r;
}

/* ---------- loop-mounted image ---------- */

/* The path of the device of the btrfs filesystem fd is on (single-device filesystems). */
static int btrfs_device(int fd, char *buf, size_t size)
{
        struct btrfs_ioctl_fs_info_args fi = { 0 };
        struct btrfs_ioctl_dev_info_args *di;
        int r = -ENODEV;

        if (ioctl(fd, BTRFS_IOC_FS_INFO, &fi) < 0)
                return -errno;
        if (fi.num_devices != 1)
                return -ENODEV;
        di = calloc(1, sizeof *di);
        if (!di)
                return -ENOMEM;
        for (uint64_t id = 1; id <= fi.max_id; id++) {
                *di = (struct btrfs_ioctl_dev_info_args){ .devid = id };
                if (ioctl(fd, BTRFS_IOC_DEV_INFO, di) < 0)
                        continue;
                di->path[sizeof di->path - 1] = '\0';
                snprintf(buf, size, "%s", (const char *)di->path);
                r = 0;
                break;
        }
        free(di);
        return r;
}

/* 1 if dev (a loop device path) is backed by the file st; 0 if not; -errno. */
static int loop_backed_by(const char *dev, const struct stat *st)
{
        struct loop_info64 li;
        _cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        if (ioctl(fd, LOOP_GET_STATUS64, &li) < 0)
                return errno == ENXIO || errno == ENOTTY || errno == EINVAL ? 0 : -errno;
        return li.lo_device == st->st_dev && li.lo_inode == st->st_ino;
}

/* Is the directory fd the root of a mount? */
static int is_mount_root(int fd)
{
        struct statx a, b;

        if (statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &a) < 0)
                return -errno;
        if (a.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
                return !!(a.stx_attributes & STATX_ATTR_MOUNT_ROOT);
        if (statx(fd, "..", 0, STATX_MNT_ID, &b) < 0)
                return -errno;
        if ((a.stx_mask & b.stx_mask & STATX_MNT_ID))
                return a.stx_mnt_id != b.stx_mnt_id;
        return a.stx_dev_major != b.stx_dev_major || a.stx_dev_minor != b.stx_dev_minor;
}

static const char *find_mkfs(void)
{
        static const char *const paths[] = { "/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/bin/mkfs.btrfs",
                                             "/bin/mkfs.btrfs" };

        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (access(paths[i], X_OK) == 0)
                        return paths[i];
        return NULL;
}

/* mkfs.btrfs the file at path; its stderr goes into *err on failure. */
static int run_mkfs(const char *path, struct sbx_err *err)
{
        /* single metadata: DUP on one image file on one host disk protects against nothing and
         * doubles every metadata write; -K: no TRIM pass over a fresh sparse file */
        char *const argv[] = { (char *)"mkfs.btrfs", (char *)"-q",     (char *)"-K", (char *)"-m", (char *)"single",
                               (char *)"-d",         (char *)"single", (char *)path, NULL };
        char *const envp[] = { (char *)"PATH=/usr/sbin:/usr/bin:/sbin:/bin", (char *)"LC_ALL=C", NULL };
        const char *mkfs = find_mkfs();
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, deflt;
        char msg[MKFS_MSG_MAX + 1];
        size_t len = 0;
        int p[2], status = 0, r;
        pid_t pid;

        if (!mkfs)
                return sbx_err_set(err, -ENOENT, "mkfs.btrfs not found (install btrfs-progs)");
        if (pipe2(p, O_CLOEXEC) < 0)
                return sbx_err_set(err, -errno, "cannot make a pipe: %m");
        /* the daemon's blocked signals and ignored SIGPIPE are not mkfs's business */
        (void)sigemptyset(&none);
        (void)sigfillset(&deflt);
        (void)posix_spawnattr_init(&attr);
        (void)posix_spawnattr_setsigmask(&attr, &none);
        (void)posix_spawnattr_setsigdefault(&attr, &deflt);
        (void)posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = posix_spawn_file_actions_init(&fa);
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, p[1], 2);
        if (r == 0)
                r = posix_spawn(&pid, mkfs, &fa, &attr, argv, envp);
        (void)posix_spawn_file_actions_destroy(&fa);
        (void)posix_spawnattr_destroy(&attr);
        (void)close(p[1]);
        if (r != 0) {
                (void)close(p[0]);
                return sbx_err_set(err, -r, "cannot run %s: %s", mkfs, strerror(r));
        }
        for (;;) {
                char chunk[512];
                ssize_t n = read(p[0], chunk, sizeof chunk);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                size_t take = (size_t)n < MKFS_MSG_MAX - len ? (size_t)n : MKFS_MSG_MAX - len;
                memcpy(msg + len, chunk, take);
                len += take;
        }
        (void)close(p[0]);
        msg[len] = '\0';
        while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
                msg[--len] = '\0';
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return sbx_err_set(err, -errno, "cannot wait for mkfs.btrfs: %m");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return sbx_err_set(err, -SBX_E_INTERNAL, "mkfs.btrfs '%s' failed (status %d): %s", path, status,
                                   len ? msg : "no message");
        return 0;
}

/* A new image at path: path.new, sized and formatted, then renamed into place. */
static int image_make(const char *path, uint64_t size, struct sbx_err *err)
{
        char tmp[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (size < IMAGE_MIN_SIZE || size > (uint64_t)INT64_MAX)
                return sbx_err_set(err, -EINVAL, "a btrfs image must hold at least %llu MiB",
                                   (unsigned long long)(IMAGE_MIN_SIZE >> 20));
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.new", path) >= sizeof tmp)
                return sbx_err_set(err, -ENAMETOOLONG, "image path '%s' is too long", path);
        (void)unlink(tmp); /* a crash during an earlier attempt */
        fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot create '%s': %m", tmp);
        if (ftruncate(fd, (off_t)size) < 0) {
                r = sbx_err_set(err, -errno, "cannot size '%s': %m", tmp);
                goto fail;
        }
        fd = safe_close(fd);
        r = run_mkfs(tmp, err);
        if (r < 0)
                goto fail;
        if (rename(tmp, path) < 0) {
                r = sbx_err_set(err, -errno, "cannot rename '%s' to '%s': %m", tmp, path);
                goto fail;
        }
        return 0;
fail:
        (void)unlink(tmp);
        return r;
}

/* Put image_fd on a free loop device; returns its fd (owned by the caller) and name. */
static int loop_attach(int image_fd, const char *image, char *dev, size_t size, struct sbx_err *err)
{
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        uint32_t flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;

        if (ctl < 0)
                return sbx_err_set(err, -errno, "cannot open /dev/loop-control: %m");
        for (int tries = 0; tries < LOOP_TRIES; tries++) {
                struct loop_config c = { .fd = (uint32_t)image_fd };
                int n = ioctl(ctl, LOOP_CTL_GET_FREE), fd;

                if (n < 0)
                        return sbx_err_set(err, -errno, "cannot get a free loop device: %m");
                snprintf(dev, size, "/dev/loop%d", n);
                fd = open(dev, O_RDWR | O_CLOEXEC);
                if (fd < 0)
                        return sbx_err_set(err, -errno, "cannot open '%s': %m", dev);
                c.info.lo_flags = flags;
                snprintf((char *)c.info.lo_file_name, sizeof c.info.lo_file_name, "%s", image);
                if (ioctl(fd, LOOP_CONFIGURE, &c) == 0)
                        return fd;
                int e = errno;
                (void)close(fd);
                if (e == EBUSY) /* someone took it between GET_FREE and CONFIGURE */
                        continue;
                if (e == EINVAL && (flags & LO_FLAGS_DIRECT_IO)) {
                        /* the backing filesystem cannot do direct I/O at this block size */
                        flags &= ~LO_FLAGS_DIRECT_IO;
                        tries--;
                        continue;
                }
                /* NEEDSWORK: LOOP_SET_FD + LOOP_SET_STATUS64 for kernels before 5.8 */
                return sbx_err_set(err, -e, "cannot attach '%s' to '%s': %s", image, dev, strerror(e));
        }
        return sbx_err_set(err, -EBUSY, "no free loop device after %d tries", LOOP_TRIES);
}

int btrfs_image_mount(const char *image, uint64_t size, const char *mountpoint, struct sbx_err *err)
{
        _cleanup_close_ int mp = -EBADF, img = -EBADF, loop = -EBADF;
        char dev[64];
        struct stat st;
        int r;

        mp = open(mountpoint, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (mp < 0)
                return sbx_err_set(err, -errno, "cannot open mount point '%s': %m", mountpoint);
        img = open(image, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (img < 0 && errno == ENOENT) {
                r = image_make(image, size, err);
                if (r < 0)
                        return r;
                img = open(image, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        }
        if (img < 0)
                return sbx_err_set(err, -errno, "cannot open image '%s': %m", image);
        if (fstat(img, &st) < 0)
                return sbx_err_set(err, -errno, "cannot stat image '%s': %m", image);
        if (!S_ISREG(st.st_mode))
                return sbx_err_set(err, -EINVAL, "image '%s' is not a regular file", image);

        r = is_mount_root(mp);
        if (r < 0)
                return sbx_err_set(err, r, "cannot stat mount point '%s': %s", mountpoint, strerror(-r));
        if (r > 0) {
                char cur[BTRFS_DEVICE_PATH_NAME_MAX];

                if (btrfs_is(mp) && btrfs_device(mp, cur, sizeof cur) >= 0 && loop_backed_by(cur, &st) > 0)
                        return 0; /* already there */
                return sbx_err_set(err, -EBUSY, "something else is mounted on '%s'", mountpoint);
        }
        mp = safe_close(mp);

        loop = loop_attach(img, image, dev, sizeof dev, err);
        if (loop < 0)
                return loop;
        if (mount(dev, mountpoint, "btrfs", MS_NOATIME, NULL) < 0)
                /* closing loop (autoclear) releases the device again */
                return sbx_err_set(err, -errno, "cannot mount '%s' (%s) on '%s': %m", image, dev, mountpoint);
        return 0;
}

/* Wait until the loop device dev (e.g. "/dev/loop3") has no backing file any more. */
static bool loop_released(const char *dev)
{
        char path[96];
        const char *n = strrchr(dev, '/');

        if (!n || strncmp(n + 1, "loop", 4) != 0)
                return true;
        snprintf(path, sizeof path, "/sys/block/%s/loop/backing_file", n + 1);
        for (int ms = 0; ms < UMOUNT_WAIT_MS; ms += 5) {
                if (access(path, F_OK) < 0)
                        return true;
                (void)nanosleep(&(struct timespec){ .tv_nsec = 5 * 1000 * 1000 }, NULL);
        }
        return false;
}

int btrfs_image_umount(const char *mountpoint, struct sbx_err *err)
{
        _cleanup_close_ int mp = -EBADF;
        char dev[BTRFS_DEVICE_PATH_NAME_MAX] = "";
        int r;

        mp = open(mountpoint, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (mp < 0)
                return errno == ENOENT ? 0 : sbx_err_set(err, -errno, "cannot open '%s': %m", mountpoint);
        r = is_mount_root(mp);
        if (r <= 0)
                return r < 0 ? sbx_err_set(err, r, "cannot stat '%s': %s", mountpoint, strerror(-r)) : 0;
        if (!btrfs_is(mp))
                return sbx_err_set(err, -EINVAL, "'%s' is not a btrfs mount", mountpoint);
        (void)btrfs_device(mp, dev, sizeof dev);
        mp = safe_close(mp);
        if (umount2(mountpoint, UMOUNT_NOFOLLOW) < 0)
                return sbx_err_set(err, -errno, "cannot unmount '%s': %m", mountpoint);
        if (dev[0] && !loop_released(dev)) {
                /* not ours (no autoclear): detach it the way losetup -d would */
                _cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);

                if (fd >= 0 && ioctl(fd, LOOP_CLR_FD) < 0 && errno != ENXIO)
                        return sbx_err_set(err, -errno, "cannot detach '%s': %m", dev);
        }
        return 0;
}
