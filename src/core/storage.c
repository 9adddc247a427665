// SPDX-License-Identifier: Apache-2.0
/*
 * Where a sandbox's files and the snapshots of them live (docs/lifecycle.md "Storage"):
 *   dir    plain directories; a snapshot is a copy (tree_copy, keeping ids).
 *   btrfs  each sandbox's upper is a subvolume; a snapshot is a read-only subvolume snapshot of it
 *          (milliseconds, whatever the size), a restore a writable snapshot of the checkpoint, and
 *          removals delete subvolumes whole.
 * Blocking: called from the worker pool (and at recovery). No logging.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "manager-internal.h"
#include "sandbox/btrfs.h"

const char *storage__name(const struct manager *m)
{
        return m->btrfs ? "btrfs" : "dir";
}

/* The directory holding path, opened; *ret_name = path's last component. */
static int open_parent(const char *path, const char **ret_name)
{
        const char *slash = strrchr(path, '/');
        char parent[PATH_MAX];
        int fd;

        if (!slash || slash == path || !slash[1] || (size_t)(slash - path) >= sizeof parent)
                return -EINVAL;
        memcpy(parent, path, (size_t)(slash - path));
        parent[slash - path] = '\0';
        fd = open(parent, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        *ret_name = slash + 1;
        return fd;
}

int storage__prepare(struct manager *m, const char *dir, uid_t uid, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        const char *name;
        int r;

        /* the whole sandbox dir is one subvolume: overlay renames between work/ and upper/, which
         * must be on one subvolume (across two: EXDEV) */
        if (m->btrfs) {
                fd = open_parent(dir, &name);
                if (fd < 0)
                        return sbx_err_set(err, fd, "cannot open the parent of '%s': %s", dir, strerror(-fd));
                r = btrfs_subvol_create(fd, name, err);
                if (r < 0 && r != -EEXIST)
                        return r;
        }
        return sandbox_dirs_prepare(dir, uid, err);
}

/* Delete the subvolume at path (if it is one): quick, whatever it holds. */
static int delete_subvol(const char *path)
{
        _cleanup_close_ int fd = -EBADF;
        const char *name;

        fd = open_parent(path, &name);
        if (fd < 0)
                return fd;
        return btrfs_subvol_delete(fd, name, NULL);
}

void storage__remove_dir(struct manager *m, const char *dir)
{
        /* staged mounts left by a crash make the subvolume busy: then the slow way, which
         * unmounts them first */
        if (m->btrfs && delete_subvol(dir) >= 0)
                return;
        (void)sandbox_dirs_remove(dir);
}

void storage__remove_snapshot(struct manager *m, const char *path)
{
        char root[PATH_MAX + 16];

        if (m->btrfs && (size_t)snprintf(root, sizeof root, "%s/root", path) < sizeof root)
                (void)delete_subvol(root);
        (void)sandbox_dirs_remove(path);
}

int storage__snapshot(struct manager *m, const char *dir, const char *tmp, struct tree_stats *st,
                      struct sbx_err *err)
{
        _cleanup_close_ int src = -EBADF, dst = -EBADF, root = -EBADF;
        char upper[PATH_MAX + 16];
        struct stat s;

        if (m->btrfs) {
                /* the sandbox's subvolume, whole: its upper/ is the layer (storage__layer_path) */
                src = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                dst = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (src < 0 || dst < 0)
                        return sbx_err_set(err, -errno, "cannot open the sandbox's files for a snapshot: %m");
                memset(st, 0, sizeof *st);
                return btrfs_subvol_snapshot(src, dst, "root", true, err);
        }
        snprintf(upper, sizeof upper, "%s/upper", dir);
        src = open(upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        dst = open(tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (src < 0 || dst < 0)
                return sbx_err_set(err, -errno, "cannot open the sandbox's files for a snapshot: %m");
        if (mkdirat(dst, "root", 0755) < 0)
                return sbx_err_set(err, -errno, "cannot make '%s/root': %m", tmp);
        root = openat(dst, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root < 0 || fstat(src, &s) < 0)
                return sbx_err_set(err, -errno, "cannot open '%s/root': %m", tmp);
        /* the copy keeps the sandbox's own ids (idBase): sandboxes made from it map them */
        struct tree_copy_opts o = { .id_from = s.st_uid, .id_to = s.st_uid, .keep_foreign = true };
        return tree_copy(src, root, &o, st, err);
}

const char *storage__layer_subdir(const struct manager *m)
{
        return m->btrfs ? "/root/upper" : "/root";
}

int storage__restore(struct manager *m, const char *snapshot_dir, const char *dir, uid_t from, uid_t to,
                     struct sbx_err *err)
{
        char src[PATH_MAX + 16], next[PATH_MAX + 16], old[PATH_MAX + 16], upper[PATH_MAX + 16];
        _cleanup_close_ int sfd = -EBADF, pfd = -EBADF, nfd = -EBADF, dfd = -EBADF;
        struct tree_copy_opts o = { .id_from = from, .id_to = to, .keep_foreign = true };
        const char *name;
        int r;

        if (m->btrfs) {
                /* a writable snapshot of the checkpoint becomes the sandbox's subvolume */
                snprintf(src, sizeof src, "%s/root", snapshot_dir);
                snprintf(next, sizeof next, "%s.new", dir);
                snprintf(old, sizeof old, "%s.old", dir);
                (void)delete_subvol(next);
                sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sfd < 0)
                        return sbx_err_set(err, -errno, "cannot open the checkpoint's files: %m");
                pfd = open_parent(next, &name);
                if (pfd < 0)
                        return sbx_err_set(err, pfd, "cannot open the parent of '%s': %s", next, strerror(-pfd));
                r = btrfs_subvol_snapshot(sfd, pfd, name, false, err);
                if (r >= 0 && from != to) {
                        nfd = open(next, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        r = nfd < 0 ? sbx_err_set(err, -errno, "cannot open '%s': %m", next)
                                    : tree_shift_ids(nfd, from, to, err);
                }
                if (r < 0) {
                        (void)delete_subvol(next);
                        return r;
                }
                (void)delete_subvol(old);
                if (rename(dir, old) < 0 || rename(next, dir) < 0)
                        return sbx_err_set(err, -errno, "cannot swap in the checkpoint's files: %m");
                (void)delete_subvol(old);
                return 0;
        }
        /* plain directories: a copy of the checkpoint becomes the upper; the work dir goes */
        snprintf(src, sizeof src, "%s/root", snapshot_dir);
        snprintf(next, sizeof next, "%s/upper.new", dir);
        snprintf(old, sizeof old, "%s/upper.old", dir);
        snprintf(upper, sizeof upper, "%s/upper", dir);
        (void)sandbox_dirs_remove(next);
        sfd = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0 || dfd < 0)
                return sbx_err_set(err, -errno, "cannot open the checkpoint's files: %m");
        if (mkdirat(dfd, "upper.new", 0755) < 0)
                return sbx_err_set(err, -errno, "cannot make '%s': %m", next);
        nfd = openat(dfd, "upper.new", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = nfd < 0 ? sbx_err_set(err, -errno, "cannot open '%s': %m", next) : tree_copy(sfd, nfd, &o, NULL, err);
        if (r < 0) {
                (void)sandbox_dirs_remove(next);
                return r;
        }
        (void)sandbox_dirs_remove(old);
        if (rename(upper, old) < 0 || rename(next, upper) < 0)
                return sbx_err_set(err, -errno, "cannot swap in the checkpoint's files: %m");
        (void)sandbox_dirs_remove(old);
        snprintf(old, sizeof old, "%s/work", dir);
        (void)sandbox_dirs_remove(old);
        return sandbox_dirs_prepare(dir, to, err);
}

void storage__recover(struct manager *m, const char *dir)
{
        char next[PATH_MAX + 16], old[PATH_MAX + 16];
        struct stat st;

        /* the swap was half done: the new files were complete, so it is finished; else the copy
         * was not, and the old files stay */
        if (m->btrfs) {
                snprintf(next, sizeof next, "%s.new", dir);
                snprintf(old, sizeof old, "%s.old", dir);
                if (lstat(dir, &st) < 0 && errno == ENOENT && lstat(next, &st) == 0)
                        (void)rename(next, dir);
                if (delete_subvol(next) < 0)
                        (void)sandbox_dirs_remove(next);
                if (delete_subvol(old) < 0)
                        (void)sandbox_dirs_remove(old);
                return;
        }
        snprintf(next, sizeof next, "%s/upper.new", dir);
        snprintf(old, sizeof old, "%s/upper", dir);
        if (lstat(old, &st) < 0 && errno == ENOENT && lstat(next, &st) == 0)
                (void)rename(next, old);
        (void)sandbox_dirs_remove(next);
        snprintf(old, sizeof old, "%s/upper.old", dir);
        (void)sandbox_dirs_remove(old);
}
