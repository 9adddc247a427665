// SPDX-License-Identifier: Apache-2.0
/*
 * Path checks and the one place where a user path becomes an fd: openat2(RESOLVE_IN_ROOT |
 * RESOLVE_NO_MAGICLINKS) from the root, then a filesystem and file type check on an O_PATH fd
 * before anything is opened for real (re-opened through /proc/self/fd, so what was checked is what
 * gets opened). See files.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files.h"

#define RESOLVE_RETRIES 32 /* openat2 answers EAGAIN when a rename raced a ".." lookup */

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

int files_errno(struct sbx_err *err, int errnum, const char *path)
{
        switch (errnum) {
        case ENOENT:
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "file_not_found", "'%s' does not exist", path);
        case ENOTDIR:
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_directory", "a component of '%s' is not a directory",
                                    path);
        case EISDIR:
                return sbx_err_setr(err, -SBX_E_INVALID, "is_a_directory", "'%s' is a directory", path);
        case EEXIST:
                return sbx_err_setr(err, -SBX_E_CONFLICT, "already_exists", "'%s' already exists", path);
        case ENOTEMPTY:
                return sbx_err_setr(err, -SBX_E_CONFLICT, "directory_not_empty", "directory '%s' is not empty", path);
        case EROFS:
                return sbx_err_setr(err, -SBX_E_CONFLICT, "read_only", "'%s' is on a read-only filesystem", path);
        case EBUSY:
        case ETXTBSY:
                return sbx_err_setr(err, -SBX_E_CONFLICT, "busy", "'%s' is busy (a mount point or a running program)",
                                    path);
        case ENAMETOOLONG:
                return sbx_err_setr(err, -SBX_E_INVALID, "name_too_long", "'%s' is too long", path);
        case ELOOP:
                return sbx_err_setr(err, -SBX_E_INVALID, "too_many_links",
                                    "too many levels of symbolic links in '%s'", path);
        case EXDEV:
                return sbx_err_setr(err, -SBX_E_FORBIDDEN, "path_forbidden",
                                    "'%s' is on another mount: it cannot be moved or linked there", path);
        case EPERM:
        case EACCES:
                return sbx_err_setr(err, -SBX_E_FORBIDDEN, "path_forbidden", "'%s' cannot be changed: %s", path,
                                    strerror(errnum));
        case EINVAL:
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_path", "'%s' cannot be used here", path);
        default:
                return sbx_err_set(err, -errnum, "'%s': %s", path, strerror(errnum));
        }
}

int files_path_check(const char *path, size_t len, const char *what, struct sbx_err *err)
{
        size_t comp = 0;

        if (!path || len == 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_path", "'%s' must not be empty", what);
        if (memchr(path, '\0', len))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_path", "'%s' must not contain a NUL byte", what);
        if (len > SBX_MAX_FILE_PATH)
                return sbx_err_setr(err, -SBX_E_INVALID, "name_too_long", "'%s' is longer than %d bytes", what,
                                    SBX_MAX_FILE_PATH);
        if (!utf8_valid(path, len))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_path", "'%s' is not valid UTF-8", what);
        for (size_t i = 0; i < len; i++) {
                if (path[i] == '/') {
                        comp = 0;
                        continue;
                }
                if (++comp > NAME_MAX)
                        return sbx_err_setr(err, -SBX_E_INVALID, "name_too_long",
                                            "a name in '%s' is longer than %d bytes", what, NAME_MAX);
        }
        return 0;
}

int files_path_normalize(const char *path, char *buf, size_t size)
{
        size_t n = 0;
        const char *p = path;

        if (size < 2)
                return -ENAMETOOLONG;
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
                if (len == 1 && p[0] == '.') {
                        /* nothing */
                } else if (len == 2 && p[0] == '.' && p[1] == '.') {
                        /* drop the last component; ".." of "/" is "/" */
                        while (n > 1 && buf[n - 1] != '/')
                                n--;
                        if (n > 1)
                                n--;
                } else {
                        if (n > 1)
                                buf[n++] = '/';
                        if (n + len + 1 > size)
                                return -ENAMETOOLONG;
                        memcpy(buf + n, p, len);
                        n += len;
                }
                p = e;
                if (n + 2 > size)
                        return -ENAMETOOLONG;
        }
        buf[n] = '\0';
        return 0;
}

int files_check_fs(int fd, const char *path, struct sbx_err *err)
{
        struct statfs sf;

        if (fstatfs(fd, &sf) < 0)
                return files_errno(err, errno, path);
        switch ((unsigned long)sf.f_type) {
        case OVERLAYFS_SUPER_MAGIC:
        case TMPFS_MAGIC:
        case EXT4_SUPER_MAGIC: /* also ext2/ext3 */
        case XFS_SUPER_MAGIC:
        case BTRFS_SUPER_MAGIC:
                return 0;
        default:
                return sbx_err_setr(err, -SBX_E_FORBIDDEN, "path_forbidden",
                                    "'%s' is on a pseudo filesystem (type 0x%lx) the file API does not touch", path,
                                    (unsigned long)sf.f_type);
        }
}

int files_chown_fd(const struct files_root *r, int fd)
{
        return fchown(fd, r->uid, r->gid) < 0 ? -errno : 0;
}

/* openat2 from the root; rel is the normalised path without its leading '/' ("" = the root). */
static int resolve(const struct files_root *r, const char *rel, uint64_t flags)
{
        struct open_how how = {
                .flags = flags | O_CLOEXEC,
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };

        for (int i = 0; i < RESOLVE_RETRIES; i++) {
                int fd = (int)syscall(SYS_openat2, r->fd, *rel ? rel : ".", &how, sizeof how);
                if (fd >= 0)
                        return fd;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
        return -EAGAIN;
}

static const char *type_name(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFIFO:
                return "a FIFO";
        case S_IFSOCK:
                return "a socket";
        case S_IFCHR:
                return "a character device";
        case S_IFBLK:
                return "a block device";
        case S_IFLNK:
                return "a symbolic link";
        default:
                return "not a regular file";
        }
}

int files_open(const struct files_root *r, const char *path, int flags, int *ret_fd, struct sbx_err *err)
{
        char norm[SBX_MAX_FILE_PATH + 2], proc[64];
        _cleanup_close_ int pfd = -EBADF;
        struct stat st;
        int fd, r2;

        if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
                return sbx_err_set(err, -EINVAL, "files_open cannot create '%s'", path);
        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        pfd = resolve(r, norm + 1, O_PATH | (flags & (O_NOFOLLOW | O_DIRECTORY)));
        if (pfd < 0)
                return files_errno(err, -pfd, path);
        r2 = files_check_fs(pfd, path, err);
        if (r2 < 0)
                return r2;
        if (fstat(pfd, &st) < 0)
                return files_errno(err, errno, path);
        if (flags & O_PATH) {
                *ret_fd = TAKE_FD(pfd);
                return 0;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_regular_file",
                                    "'%s' is %s: only regular files and directories can be opened", path,
                                    type_name(st.st_mode));
        /* re-open what was checked, not whatever the name points at by now */
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
        fd = open(proc, (flags & ~(O_NOFOLLOW | O_PATH)) | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return files_errno(err, errno, path);
        *ret_fd = fd;
        return 0;
}

int files_open_read(const struct files_root *r, const char *path, int *ret_fd, struct stat *ret_st,
                    struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        int q;

        q = files_open(r, path, O_RDONLY, &fd, err);
        if (q < 0)
                return q;
        if (fstat(fd, ret_st) < 0)
                return files_errno(err, errno, path);
        if (S_ISDIR(ret_st->st_mode))
                return files_errno(err, EISDIR, path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Open the directory at the normalised path norm (from the root), creating it and its missing
 * parents when mk. */
static int open_dir(const struct files_root *r, char *norm, bool mk, const char *path, int *ret_fd,
                    struct sbx_err *err)
{
        int fd, q;

        fd = resolve(r, norm + 1, O_PATH | O_DIRECTORY);
        if (fd >= 0 || fd != -ENOENT || !mk) {
                if (fd < 0)
                        return files_errno(err, -fd, path);
                *ret_fd = fd;
                return 0;
        }
        /* create from the top: every prefix is resolved from the root again */
        for (char *p = norm + 1;; p++) {
                char save;
                _cleanup_close_ int parent = -EBADF;
                char *slash;

                if (*p != '/' && *p != '\0')
                        continue;
                save = *p;
                *p = '\0';
                fd = resolve(r, norm + 1, O_PATH | O_DIRECTORY);
                if (fd == -ENOENT) {
                        slash = strrchr(norm, '/');
                        *slash = '\0';
                        parent = resolve(r, slash == norm ? "" : norm + 1, O_PATH | O_DIRECTORY);
                        *slash = '/';
                        if (parent < 0) {
                                *p = save;
                                return files_errno(err, -parent, path);
                        }
                        q = files_check_fs(parent, path, err);
                        if (q < 0) {
                                *p = save;
                                return q;
                        }
                        if (mkdirat(parent, slash + 1, 0755) < 0 && errno != EEXIST) {
                                q = errno;
                                *p = save;
                                return files_errno(err, q, path);
                        }
                        fd = resolve(r, norm + 1, O_PATH | O_DIRECTORY);
                        if (fd >= 0 && fchownat(parent, slash + 1, r->uid, r->gid, AT_SYMLINK_NOFOLLOW) < 0) {
                                q = errno;
                                close(fd);
                                *p = save;
                                return files_errno(err, q, path);
                        }
                }
                *p = save;
                if (fd < 0)
                        return files_errno(err, -fd, path);
                if (save == '\0') {
                        *ret_fd = fd;
                        return 0;
                }
                close(fd);
        }
}

int files_open_parent(const struct files_root *r, const char *path, bool mkparents, int *ret_dirfd,
                      char name[static 256], struct sbx_err *err)
{
        char norm[SBX_MAX_FILE_PATH + 2];
        char *slash;
        int fd = -EBADF, q;

        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        if (strcmp(norm, "/") == 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_path", "'%s' is the root directory", path);
        slash = strrchr(norm, '/');
        if (strlen(slash + 1) > NAME_MAX)
                return files_errno(err, ENAMETOOLONG, path);
        memcpy(name, slash + 1, strlen(slash + 1) + 1);
        if (slash == norm)
                slash[1] = '\0'; /* parent is "/" */
        else
                slash[0] = '\0';
        q = open_dir(r, norm, mkparents, path, &fd, err);
        if (q < 0)
                return q;
        q = files_check_fs(fd, path, err);
        if (q < 0) {
                close(fd);
                return q;
        }
        *ret_dirfd = fd;
        return 0;
}

/* Raise every permitted capability into the effective set of the calling thread. */
static int caps_raise_effective(void)
{
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];

        if (syscall(SYS_capget, &h, d) < 0)
                return -errno;
        for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
                d[i].effective = d[i].permitted;
        return syscall(SYS_capset, &h, d) < 0 ? -errno : 0;
}

int files_identity_enter(const struct files_root *r)
{
        int q;

        /* raw calls act on this thread only (glibc does not broadcast setfsuid) */
        (void)setfsgid(r->gid);
        (void)setfsuid(r->uid);
        if ((uid_t)setfsuid((uid_t)-1) != r->uid || (gid_t)setfsgid((gid_t)-1) != r->gid) {
                files_identity_leave();
                return -EPERM;
        }
        q = caps_raise_effective();
        if (q < 0) {
                files_identity_leave();
                return q;
        }
        return 0;
}

void files_identity_leave(void)
{
        (void)setfsuid(0);
        (void)setfsgid(0);
}
