// SPDX-License-Identifier: Apache-2.0
/*
 * An exact copy of a directory tree (tree.h): one depth-first walk with *at() calls from
 * directory fds, never following a symlink and never leaving the source's mount. Owners are set
 * before modes (chown clears setuid bits) and before xattrs (chown drops security.capability);
 * a directory's mtime is set after its children are in.
 */
#include "sandbox/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"

#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536
#define COPY_CHUNK (64ULL << 20)

/* A file with more than one link: where its first copy went (relative to dst's root). */
struct link_entry {
        dev_t dev;
        ino_t ino;
        char *path;
};

struct walk {
        const struct tree_copy_opts *o;
        struct tree_stats *st;
        struct sbx_err *err;
        int dst_root;
        dev_t dev;                       /* the source's filesystem: never left */
        uint64_t max_entries;
        bool no_reflink;                 /* FICLONE failed once: the filesystems cannot */
        struct link_entry *links;
        size_t n_links, cap_links;
        char path[PATH_MAX];             /* of the entry being copied, relative to the roots */
};

static int map_id(const struct walk *w, uid_t id, uid_t *ret)
{
        if (id >= w->o->id_from && id - w->o->id_from < SBX_UID_RANGE) {
                *ret = id - w->o->id_from + w->o->id_to;
                return 0;
        }
        if (!w->o->keep_foreign)
                return sbx_err_setr(w->err, -SBX_E_INVALID, "invalid_value", "'%s' is owned by id %u, outside the tree's range",
                                    w->path, (unsigned)id);
        *ret = id;
        return 0;
}

/* Copy every xattr of src to dst: fds of regular files and directories, or (fd < 0) "/proc/self/fd"
 * paths of O_PATH fds for the rest (getxattr follows the magic link to the very inode, symlinks
 * included). */
static int copy_xattrs(struct walk *w, int src_fd, int dst_fd, const char *src_path, const char *dst_path)
{
        _cleanup_free_ char *list = malloc(XATTR_LIST_MAX_BYTES), *val = malloc(XATTR_VALUE_MAX_BYTES);
        ssize_t n;

        if (!list || !val)
                return -ENOMEM;
        n = src_path ? listxattr(src_path, list, XATTR_LIST_MAX_BYTES) : flistxattr(src_fd, list, XATTR_LIST_MAX_BYTES);
        if (n < 0)
                return errno == ENOTSUP ? 0 : sbx_err_set(w->err, -errno, "cannot list the xattrs of '%s': %m", w->path);
        for (char *name = list; name < list + n; name += strlen(name) + 1) {
                ssize_t v = src_path ? getxattr(src_path, name, val, XATTR_VALUE_MAX_BYTES)
                                     : fgetxattr(src_fd, name, val, XATTR_VALUE_MAX_BYTES);
                int k;

                if (v < 0) {
                        if (errno == ENODATA)
                                continue;
                        return sbx_err_set(w->err, -errno, "cannot read xattr '%s' of '%s': %m", name, w->path);
                }
                k = dst_path ? setxattr(dst_path, name, val, (size_t)v, 0) : fsetxattr(dst_fd, name, val, (size_t)v, 0);
                if (k < 0)
                        return sbx_err_set(w->err, -errno, "cannot set xattr '%s' on the copy of '%s': %m", name, w->path);
        }
        return 0;
}

/* Owner, mode, xattrs, times of an fd-able copy (regular file or directory). */
static int finish_fd(struct walk *w, int src_fd, int dst_fd, const struct stat *s)
{
        struct timespec ts[2] = { s->st_atim, s->st_mtim };
        uid_t u, g;
        int r;

        r = map_id(w, s->st_uid, &u);
        if (r >= 0)
                r = map_id(w, s->st_gid, &g);
        if (r < 0)
                return r;
        if (fchown(dst_fd, u, g) < 0 || fchmod(dst_fd, s->st_mode & 07777) < 0)
                return sbx_err_set(w->err, -errno, "cannot set the owner of the copy of '%s': %m", w->path);
        r = copy_xattrs(w, src_fd, dst_fd, NULL, NULL);
        if (r < 0)
                return r;
        if (futimens(dst_fd, ts) < 0)
                return sbx_err_set(w->err, -errno, "cannot set the times of the copy of '%s': %m", w->path);
        return 0;
}

/* The same for an entry opened by name only (symlink, device, fifo). */
static int finish_at(struct walk *w, int src_dir, int dst_dir, const char *name, const struct stat *s)
{
        struct timespec ts[2] = { s->st_atim, s->st_mtim };
        _cleanup_close_ int sfd = -EBADF, dfd = -EBADF;
        char sp[64], dp[64];
        uid_t u, g;
        int r;

        r = map_id(w, s->st_uid, &u);
        if (r >= 0)
                r = map_id(w, s->st_gid, &g);
        if (r < 0)
                return r;
        if (fchownat(dst_dir, name, u, g, AT_SYMLINK_NOFOLLOW) < 0)
                return sbx_err_set(w->err, -errno, "cannot set the owner of the copy of '%s': %m", w->path);
        if (!S_ISLNK(s->st_mode) && fchmodat(dst_dir, name, s->st_mode & 07777, 0) < 0)
                return sbx_err_set(w->err, -errno, "cannot set the mode of the copy of '%s': %m", w->path);
        sfd = openat(src_dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        dfd = openat(dst_dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (sfd < 0 || dfd < 0)
                return sbx_err_set(w->err, -errno, "cannot reopen '%s': %m", w->path);
        snprintf(sp, sizeof sp, "/proc/self/fd/%d", sfd);
        snprintf(dp, sizeof dp, "/proc/self/fd/%d", dfd);
        r = copy_xattrs(w, -1, -1, sp, dp);
        if (r < 0)
                return r;
        if (utimensat(dst_dir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
                return sbx_err_set(w->err, -errno, "cannot set the times of the copy of '%s': %m", w->path);
        return 0;
}

/* File data: a reflink if the filesystems can, else copy_file_range over the data extents. */
static int copy_data(struct walk *w, int in, int out, const struct stat *s)
{
        off_t pos = 0;

        if (!w->no_reflink) {
                if (ioctl(out, FICLONE, in) == 0) {
                        w->st->reflinked++;
                        return 0;
                }
                if (errno == EOPNOTSUPP || errno == EXDEV || errno == EINVAL || errno == ENOTTY)
                        w->no_reflink = true;
        }
        while (pos < s->st_size) {
                off_t data = lseek(in, pos, SEEK_DATA), hole;

                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* a hole to the end */
                        return sbx_err_set(w->err, -errno, "cannot read '%s': %m", w->path);
                }
                hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0)
                        return sbx_err_set(w->err, -errno, "cannot read '%s': %m", w->path);
                for (off_t off = data; off < hole;) {
                        loff_t a = off, b = off;
                        size_t len = (size_t)(hole - off) < COPY_CHUNK ? (size_t)(hole - off) : COPY_CHUNK;
                        ssize_t k = copy_file_range(in, &a, out, &b, len, 0);

                        if (k < 0)
                                return sbx_err_set(w->err, -errno, "cannot copy '%s': %m", w->path);
                        if (k == 0)
                                break; /* the file shrank under us */
                        off += k;
                }
                pos = hole;
        }
        if (ftruncate(out, s->st_size) < 0)
                return sbx_err_set(w->err, -errno, "cannot size the copy of '%s': %m", w->path);
        return 0;
}

static int copy_file(struct walk *w, int src_dir, int dst_dir, const char *name, const struct stat *s)
{
        _cleanup_close_ int in = -EBADF, out = -EBADF;
        int r;

        in = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
        if (in < 0)
                return sbx_err_set(w->err, -errno, "cannot open '%s': %m", w->path);
        out = openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return sbx_err_set(w->err, -errno, "cannot create the copy of '%s': %m", w->path);
        r = copy_data(w, in, out, s);
        if (r >= 0)
                r = finish_fd(w, in, out, s);
        w->st->bytes += (uint64_t)s->st_size;
        return r;
}

/* A second name of a file already copied: link to that copy. 1 = linked, 0 = first time seen. */
static int try_link(struct walk *w, int dst_dir, const char *name, const struct stat *s)
{
        struct link_entry *e;

        for (size_t i = 0; i < w->n_links; i++)
                if (w->links[i].ino == s->st_ino && w->links[i].dev == s->st_dev) {
                        if (linkat(w->dst_root, w->links[i].path, dst_dir, name, 0) < 0)
                                return sbx_err_set(w->err, -errno, "cannot link '%s': %m", w->path);
                        return 1;
                }
        if (w->n_links == w->cap_links) {
                size_t cap = w->cap_links ? w->cap_links * 2 : 64;

                e = reallocarray(w->links, cap, sizeof *e);
                if (!e)
                        return -ENOMEM;
                w->links = e;
                w->cap_links = cap;
        }
        e = &w->links[w->n_links];
        e->path = strdup(w->path);
        if (!e->path)
                return -ENOMEM;
        e->dev = s->st_dev;
        e->ino = s->st_ino;
        w->n_links++;
        return 0;
}

static int copy_dir(struct walk *w, int src_dir, int dst_dir, unsigned depth);

static int copy_entry(struct walk *w, int src_dir, int dst_dir, const char *name, unsigned depth)
{
        struct stat s;
        char target[PATH_MAX];
        ssize_t n;
        int r;

        if (fstatat(src_dir, name, &s, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : sbx_err_set(w->err, -errno, "cannot stat '%s': %m", w->path);
        if (s.st_dev != w->dev || S_ISSOCK(s.st_mode))
                return 0; /* another mount, or a socket: not part of the copy */
        if (++w->st->entries > w->max_entries)
                return sbx_err_setr(w->err, -E2BIG, "too_many_entries", "more than %llu entries to copy",
                                    (unsigned long long)w->max_entries);
        if (!S_ISDIR(s.st_mode) && s.st_nlink > 1) {
                r = try_link(w, dst_dir, name, &s);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        if (S_ISREG(s.st_mode))
                return copy_file(w, src_dir, dst_dir, name, &s);
        if (S_ISDIR(s.st_mode)) {
                _cleanup_close_ int sd = -EBADF, dd = -EBADF;

                if (mkdirat(dst_dir, name, 0700) < 0)
                        return sbx_err_set(w->err, -errno, "cannot make the copy of '%s': %m", w->path);
                sd = openat(src_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                dd = openat(dst_dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sd < 0 || dd < 0)
                        return sbx_err_set(w->err, -errno, "cannot open '%s': %m", w->path);
                r = copy_dir(w, sd, dd, depth + 1);
                return r < 0 ? r : finish_fd(w, sd, dd, &s);
        }
        if (S_ISLNK(s.st_mode)) {
                n = readlinkat(src_dir, name, target, sizeof target - 1);
                if (n < 0)
                        return sbx_err_set(w->err, -errno, "cannot read the link '%s': %m", w->path);
                target[n] = '\0';
                if (symlinkat(target, dst_dir, name) < 0)
                        return sbx_err_set(w->err, -errno, "cannot make the link '%s': %m", w->path);
        } else if (mknodat(dst_dir, name, s.st_mode & (S_IFMT | 0777), s.st_rdev) < 0)
                return sbx_err_set(w->err, -errno, "cannot make the node '%s': %m", w->path);
        return finish_at(w, src_dir, dst_dir, name, &s);
}

static int copy_dir(struct walk *w, int src_dir, int dst_dir, unsigned depth)
{
        size_t base = strlen(w->path);
        struct dirent *de;
        DIR *d;
        int fd, r = 0;

        if (depth > SBX_TREE_MAX_DEPTH)
                return sbx_err_setr(w->err, -ELOOP, "too_deep", "'%s' is nested deeper than %d directories", w->path,
                                    SBX_TREE_MAX_DEPTH);
        fd = openat(src_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                r = sbx_err_set(w->err, -errno, "cannot read '%s': %m", w->path[0] ? w->path : "/");
                safe_close(fd);
                return r;
        }
        while (r >= 0 && (errno = 0, de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if ((size_t)snprintf(w->path + base, sizeof w->path - base, "%s%s", base ? "/" : "", de->d_name) >=
                    sizeof w->path - base) {
                        r = sbx_err_setr(w->err, -ENAMETOOLONG, "name_too_long", "a path under '%s' is too long", w->path);
                        break;
                }
                r = copy_entry(w, dirfd(d), dst_dir, de->d_name, depth);
                w->path[base] = '\0';
        }
        if (r >= 0 && errno != 0)
                r = sbx_err_set(w->err, -errno, "cannot read '%s': %m", w->path);
        closedir(d);
        return r;
}

int tree_copy(int src_dirfd, int dst_dirfd, const struct tree_copy_opts *o, struct tree_stats *st, struct sbx_err *err)
{
        struct tree_stats none = { 0 };
        struct walk w = {
                .o = o,
                .st = st ? st : &none,
                .err = err,
                .dst_root = dst_dirfd,
                .max_entries = o->max_entries ? o->max_entries : SBX_TREE_MAX_ENTRIES,
        };
        struct stat s;
        int r;

        memset(w.st, 0, sizeof *w.st);
        if (fstat(src_dirfd, &s) < 0)
                return sbx_err_set(err, -errno, "cannot stat the tree to copy: %m");
        w.dev = s.st_dev;
        r = copy_dir(&w, src_dirfd, dst_dirfd, 0);
        if (r >= 0)
                r = finish_fd(&w, src_dirfd, dst_dirfd, &s);
        for (size_t i = 0; i < w.n_links; i++)
                free(w.links[i].path);
        free(w.links);
        return r;
}
