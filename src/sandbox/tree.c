// SPDX-License-Identifier: Apache-2.0
/*
 * Exact tree copies, id shifts and removals (see tree.h). One iterative walk (walk_run) serves
 * copy and shift: a stack of open directories, one statx per entry (which also carries the mount
 * id for the mount rule), callbacks for "entry seen" and "directory done". Everything is *at()
 * relative to an open directory with O_NOFOLLOW, so a symlink anywhere in the tree is only ever
 * read as a link. xattrs of entries that are neither files nor directories (symlinks, devices,
 * fifos) are reached through /proc/self/fd/<dir>/<name> with the l*xattr calls, which do not
 * follow the last component (there are no *xattrat() calls before Linux 6.13). No logging, no
 * daemon knowledge, no global state.
 */
#include "sandbox/tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"

#define XLIST_MAX 65536       /* XATTR_LIST_MAX: the kernel's bound on a name list */
#define XVALUE_MAX 65536      /* XATTR_SIZE_MAX: the kernel's bound on one value */
#define COPY_BUF (128 * 1024) /* read/write fallback when copy_file_range cannot */
#define PATH_CAP (SBX_TREE_MAX_DEPTH * (NAME_MAX + 1) + 2)
#define PROC_PATH_MAX (sizeof "/proc/self/fd/" + 12 + NAME_MAX + 1)
#define INO_EMPTY UINT64_MAX

/* POSIX ACL xattr format (system.posix_acl_access/default), as the kernel reads and writes it */
#define ACL_XATTR_VERSION 2
#define ACL_TAG_USER 0x02
#define ACL_TAG_GROUP 0x08

struct frame {
        DIR *dir;        /* owned: the source directory being read */
        int dst_fd;      /* copy: the directory made for it (owned, borrowed at the
                          * root); -EBADF otherwise */
        struct statx sx; /* the source directory's own stat */
        size_t path_len; /* strlen of its path in walk.path */
};

/* Inode numbers seen with st_nlink > 1 (all on one filesystem: the mount rule). */
struct inomap {
        uint64_t *keys; /* INO_EMPTY = free slot */
        char **paths;   /* copy: the first copy's path below dst (owned); shift: NULL */
        size_t cap, n;
};

struct walk;
/* Returns < 0 to stop, 0 when done with the entry, 1 to descend: *ret_dir is then the opened
 * source directory and *ret_dst its copy (or -EBADF). */
typedef int (*visit_fn)(struct walk *w, struct frame *f, const char *name, const struct statx *sx, int *ret_dir,
                        int *ret_dst);
/* The directory f is done (its path is in w->path); the root last, with w->depth == 1. */
typedef int (*leave_fn)(struct walk *w, struct frame *f);

struct walk {
        struct frame *stack; /* max_depth + 1 frames */
        unsigned depth, max_depth;
        uint64_t visited, max_entries;
        uint32_t dev_major, dev_minor; /* of the root: every entry must be on it */
        uint64_t mnt_id;               /* of the root, when have_mnt_id (statx, Linux >= 5.8) */
        bool have_mnt_id;
        char *path; /* the current entry relative to the root; "" = the root */
        struct sbx_err *err;

        /* id shift: [from, from + SBX_UID_RANGE) -> to */
        uint32_t from, to;
        bool shift, keep_foreign;

        struct inomap links;
        char *xlist, *xval; /* XLIST_MAX, 3 * XVALUE_MAX (shift keeps three values) */
        char *buf;          /* COPY_BUF, allocated on first need */
        char linkbuf[PATH_MAX];

        /* copy only */
        int dst_root;
        dev_t dst_dev; /* dst's own directory, so a dst inside src is not copied into itself */
        ino_t dst_ino;
        struct tree_stats *st;
        uid_t euid;
        gid_t egid;
        bool chown_always; /* dst is setgid: new entries may not get our gid */
        bool chmod_always; /* the umask is unknown or dst has a default ACL */
        mode_t umask;
        bool try_clone, try_cfr;
        int noatime; /* O_NOATIME until it gives EPERM */
};

static const char *walk_path(const struct walk *w)
{
        return w->path[0] ? w->path : ".";
}

static void path_set(struct walk *w, size_t parent_len, const char *name)
{
        size_t n = strlen(name);

        /* cannot overflow: parent_len <= max_depth * (NAME_MAX + 1) and n <= NAME_MAX */
        if (parent_len > 0)
                w->path[parent_len++] = '/';
        memcpy(w->path + parent_len, name, n + 1);
}

static void proc_path(char *buf, size_t size, int dirfd, const char *name)
{
        snprintf(buf, size, "/proc/self/fd/%d/%s", dirfd, name);
}

/* ---------- hardlink table ---------- */

static size_t ino_slot(const struct inomap *m, uint64_t ino)
{
        size_t i = (size_t)((ino * 0x9E3779B97F4A7C15ULL) >> 17) & (m->cap - 1);

        while (m->keys[i] != INO_EMPTY && m->keys[i] != ino)
                i = (i + 1) & (m->cap - 1);
        return i;
}

static int inomap_grow(struct inomap *m, bool with_paths)
{
        struct inomap n = { .cap = m->cap ? m->cap * 2 : 256 };

        n.keys = malloc(n.cap * sizeof *n.keys);
        n.paths = with_paths ? calloc(n.cap, sizeof *n.paths) : NULL;
        if (!n.keys || (with_paths && !n.paths)) {
                free(n.keys);
                free(n.paths);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n.cap; i++)
                n.keys[i] = INO_EMPTY;
        for (size_t i = 0; i < m->cap; i++) {
                if (m->keys[i] == INO_EMPTY)
                        continue;
                size_t j = ino_slot(&n, m->keys[i]);
                n.keys[j] = m->keys[i];
                if (with_paths)
                        n.paths[j] = m->paths[i];
        }
        n.n = m->n;
        free(m->keys);
        free(m->paths);
        *m = n;
        return 0;
}

/* Adds ino (with a copy of path, if with_paths). Returns 1 if it was there already (then
 * *ret_path is the stored path), 0 if added, or -ENOMEM. */
static int inomap_add(struct inomap *m, uint64_t ino, const char *path, const char **ret_path)
{
        size_t i;

        if (m->cap && m->keys[ino_slot(m, ino)] == ino) {
                if (ret_path)
                        *ret_path = m->paths[ino_slot(m, ino)];
                return 1;
        }
        if ((m->n + 1) * 2 > m->cap && inomap_grow(m, path != NULL) < 0)
                return -ENOMEM;
        i = ino_slot(m, ino);
        if (path) {
                m->paths[i] = strdup(path);
                if (!m->paths[i])
                        return -ENOMEM;
        }
        m->keys[i] = ino;
        m->n++;
        return 0;
}

static void inomap_done(struct inomap *m)
{
        if (m->paths)
                for (size_t i = 0; i < m->cap; i++)
                        free(m->paths[i]);
        free(m->paths);
        free(m->keys);
        *m = (struct inomap){ 0 };
}

/* ---------- ids ---------- */

/* id in the source range -> shifted; outside: itself if keep_foreign, else -1. */
static int map_id(const struct walk *w, uint32_t id, uint32_t *ret)
{
        if (!w->shift || id - w->from < SBX_UID_RANGE)
                *ret = w->shift ? id - w->from + w->to : id;
        else if (w->keep_foreign)
                *ret = id;
        else
                return -1;
        return 0;
}

static int map_owner(struct walk *w, const struct statx *sx, uint32_t *ret_uid, uint32_t *ret_gid)
{
        if (map_id(w, sx->stx_uid, ret_uid) < 0 || map_id(w, sx->stx_gid, ret_gid) < 0)
                return sbx_err_setr(w->err, -SBX_E_INVALID, "foreign_owner",
                                    "'%s' is owned by %u:%u, outside the ids %u..%u being shifted", walk_path(w),
                                    sx->stx_uid, sx->stx_gid, w->from, w->from + SBX_UID_RANGE - 1);
        return 0;
}

static uint32_t le32_get(const char *p)
{
        const unsigned char *u = (const unsigned char *)p;

        return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 | (uint32_t)u[3] << 24;
}

static void le32_put(char *p, uint32_t v)
{
        unsigned char *u = (unsigned char *)p;

        u[0] = v & 0xff;
        u[1] = (v >> 8) & 0xff;
        u[2] = (v >> 16) & 0xff;
        u[3] = (v >> 24) & 0xff;
}

static bool xattr_has_ids(const char *name)
{
        return !strcmp(name, "security.capability") || !strcmp(name, "system.posix_acl_access") ||
               !strcmp(name, "system.posix_acl_default");
}

/*
 * Move the ids inside an xattr value along with the owners: the user and group entries of a POSIX
 * ACL, and the root id of a file capability. A v3 capability (written inside a user namespace)
 * names the host uid of that namespace's root; a v2 one stands for root id 0. A root id that maps
 * to 0 is written as v2 (what the kernel itself shows for it), any other as v3. *len may change.
 * Returns 1 if the value changed, 0 if not, -1 for an id outside the range without keep_foreign.
 */
static int xattr_remap(const struct walk *w, const char *name, char *v, size_t *len)
{
        uint32_t id, mapped;
        int changed = 0;

        if (!w->shift)
                return 0;
        if (!strcmp(name, "security.capability")) {
                uint32_t magic = *len >= 4 ? le32_get(v) : 0;

                if (*len == XATTR_CAPS_SZ_3 && (magic & VFS_CAP_REVISION_MASK) == VFS_CAP_REVISION_3)
                        id = le32_get(v + XATTR_CAPS_SZ_3 - 4);
                else if (*len == XATTR_CAPS_SZ_2 && (magic & VFS_CAP_REVISION_MASK) == VFS_CAP_REVISION_2)
                        id = 0;
                else
                        return 0; /* v1 or unknown: copied as it is */
                if (id - w->from >= SBX_UID_RANGE)
                        return w->keep_foreign ? 0 : -1;
                mapped = id - w->from + w->to;
                magic &= VFS_CAP_FLAGS_MASK;
                if (mapped == 0) {
                        le32_put(v, magic | VFS_CAP_REVISION_2);
                        *len = XATTR_CAPS_SZ_2;
                } else {
                        le32_put(v, magic | VFS_CAP_REVISION_3);
                        le32_put(v + XATTR_CAPS_SZ_3 - 4, mapped);
                        *len = XATTR_CAPS_SZ_3;
                }
                return 1;
        }
        if (!strncmp(name, "system.posix_acl_", 17)) {
                if (*len < 4 || le32_get(v) != ACL_XATTR_VERSION || (*len - 4) % 8)
                        return 0;
                for (size_t off = 4; off < *len; off += 8) {
                        unsigned tag = (unsigned char)v[off] | (unsigned)(unsigned char)v[off + 1] << 8;

                        if (tag != ACL_TAG_USER && tag != ACL_TAG_GROUP)
                                continue;
                        id = le32_get(v + off + 4);
                        if (map_id(w, id, &mapped) < 0)
                                return -1;
                        le32_put(v + off + 4, mapped);
                        changed |= mapped != id;
                }
        }
        return changed;
}

/* ---------- the walk ---------- */

static void frame_close(struct walk *w, struct frame *f)
{
        if (f->dir)
                (void)closedir(f->dir);
        if (f->dst_fd >= 0 && f != &w->stack[0])
                (void)close(f->dst_fd);
        *f = (struct frame){ .dst_fd = -EBADF };
}

static int walk_push(struct walk *w, int dir_fd, int dst_fd, const struct statx *sx, size_t path_len)
{
        struct frame *f = &w->stack[w->depth];

        f->dir = fdopendir(dir_fd);
        if (!f->dir) {
                int e = errno;
                (void)close(dir_fd);
                if (dst_fd >= 0 && w->depth > 0)
                        (void)close(dst_fd);
                return sbx_err_set(w->err, -e, "cannot read '%s': %s", walk_path(w), strerror(e));
        }
        f->dst_fd = dst_fd;
        f->sx = *sx;
        f->path_len = path_len;
        w->depth++;
        return 0;
}

static int walk_init(struct walk *w, unsigned max_depth, uint64_t max_entries, struct sbx_err *err)
{
        w->max_depth = max_depth && max_depth < SBX_TREE_MAX_DEPTH ? max_depth : SBX_TREE_MAX_DEPTH;
        w->max_entries = max_entries && max_entries < SBX_TREE_MAX_ENTRIES ? max_entries : SBX_TREE_MAX_ENTRIES;
        w->err = err;
        w->dst_root = -EBADF;
        w->stack = calloc(w->max_depth + 1, sizeof *w->stack);
        w->path = malloc(PATH_CAP);
        w->xlist = malloc(XLIST_MAX);
        w->xval = malloc(3 * XVALUE_MAX);
        if (!w->stack || !w->path || !w->xlist || !w->xval)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        for (unsigned i = 0; i <= w->max_depth; i++)
                w->stack[i].dst_fd = -EBADF;
        w->path[0] = '\0';
        return 0;
}

static void walk_done(struct walk *w)
{
        if (w->stack)
                while (w->depth > 0)
                        frame_close(w, &w->stack[--w->depth]);
        free(w->stack);
        free(w->path);
        free(w->xlist);
        free(w->xval);
        free(w->buf);
        inomap_done(&w->links);
}

static bool on_root_mount(const struct walk *w, const struct statx *sx)
{
        if (sx->stx_dev_major != w->dev_major || sx->stx_dev_minor != w->dev_minor)
                return false;
        return !w->have_mnt_id || !(sx->stx_mask & STATX_MNT_ID) || sx->stx_mnt_id == w->mnt_id;
}

/* Walk the tree below root_fd (borrowed). dst_fd (borrowed, or -EBADF) goes into the root frame. */
static int walk_run(struct walk *w, int root_fd, int dst_fd, visit_fn visit, leave_fn leave)
{
        struct statx sx;
        int fd, r;

        /* a new open file description: reading it leaves the caller's fd offset alone */
        fd = openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(w->err, -errno, "cannot open the tree's root: %m");
        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_MNT_ID, &sx) < 0) {
                r = -errno;
                (void)close(fd);
                return sbx_err_set(w->err, r, "cannot stat the tree's root: %s", strerror(-r));
        }
        w->dev_major = sx.stx_dev_major;
        w->dev_minor = sx.stx_dev_minor;
        w->have_mnt_id = sx.stx_mask & STATX_MNT_ID;
        w->mnt_id = sx.stx_mnt_id;
        r = walk_push(w, fd, dst_fd, &sx, 0);
        if (r < 0)
                return r;

        while (w->depth > 0) {
                struct frame *f = &w->stack[w->depth - 1];
                struct dirent *de;
                int sub = -EBADF, sub_dst = -EBADF;

                errno = 0;
                de = readdir(f->dir);
                if (!de) {
                        if (errno != 0) {
                                w->path[f->path_len] = '\0';
                                return sbx_err_set(w->err, -errno, "cannot read '%s': %m", walk_path(w));
                        }
                        w->path[f->path_len] = '\0';
                        r = leave(w, f);
                        if (r < 0)
                                return r;
                        frame_close(w, f);
                        w->depth--;
                        continue;
                }
                if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
                        continue;
                path_set(w, f->path_len, de->d_name);
                if (++w->visited > w->max_entries)
                        return sbx_err_set(w->err, -SBX_E_TOO_LARGE, "the tree has more than %llu entries ('%s')",
                                           (unsigned long long)w->max_entries, w->path);
                if (statx(dirfd(f->dir), de->d_name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                          STATX_BASIC_STATS | STATX_MNT_ID, &sx) < 0) {
                        if (errno == ENOENT) /* gone since readdir */
                                continue;
                        return sbx_err_set(w->err, -errno, "cannot stat '%s': %m", w->path);
                }
                if (!on_root_mount(w, &sx))
                        return sbx_err_set(w->err, -EXDEV, "'%s' is another mount or filesystem", w->path);
                if (S_ISDIR(sx.stx_mode) && w->depth > w->max_depth)
                        return sbx_err_set(w->err, -SBX_E_TOO_LARGE, "'%s' is more than %u directories deep", w->path,
                                           w->max_depth);
                r = visit(w, f, de->d_name, &sx, &sub, &sub_dst);
                if (r < 0)
                        return r;
                if (r > 0) {
                        r = walk_push(w, sub, sub_dst, &sx, strlen(w->path));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* Open the directory name below dfd for reading and check it is the one statx saw. */
static int open_dir_checked(struct walk *w, int dfd, const char *name, const struct statx *sx)
{
        struct stat st;
        int fd;

        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | w->noatime);
        if (fd < 0 && errno == EPERM && w->noatime) {
                w->noatime = 0; /* O_NOATIME needs ownership or CAP_FOWNER */
                fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (fd < 0)
                return sbx_err_set(w->err, -errno, "cannot open '%s': %m", w->path);
        if (fstat(fd, &st) < 0 || st.st_ino != sx->stx_ino) {
                (void)close(fd);
                return sbx_err_set(w->err, -ESTALE, "'%s' changed during the walk", w->path);
        }
        return fd;
}

/* ---------- xattrs ---------- */

/* An inode named either by an open fd (files, directories) or by dirfd + name (the rest). */
struct ref {
        int fd;
        int dirfd;
        const char *name;
};

static ssize_t ref_list(const struct ref *r, char *buf, size_t size)
{
        char p[PROC_PATH_MAX];

        if (r->fd >= 0)
                return flistxattr(r->fd, buf, size);
        proc_path(p, sizeof p, r->dirfd, r->name);
        return llistxattr(p, buf, size);
}

static ssize_t ref_get(const struct ref *r, const char *name, char *buf, size_t size)
{
        char p[PROC_PATH_MAX];

        if (r->fd >= 0)
                return fgetxattr(r->fd, name, buf, size);
        proc_path(p, sizeof p, r->dirfd, r->name);
        return lgetxattr(p, name, buf, size);
}

static int ref_set(const struct ref *r, const char *name, const char *v, size_t len)
{
        char p[PROC_PATH_MAX];

        if (r->fd >= 0)
                return fsetxattr(r->fd, name, v, len, 0);
        proc_path(p, sizeof p, r->dirfd, r->name);
        return lsetxattr(p, name, v, len, 0);
}

static int ref_chown(const struct ref *r, uint32_t uid, uint32_t gid)
{
        if (r->fd >= 0)
                return fchown(r->fd, uid, gid);
        return fchownat(r->dirfd, r->name, uid, gid, AT_SYMLINK_NOFOLLOW);
}

static int ref_chmod(const struct ref *r, mode_t mode)
{
        if (r->fd >= 0)
                return fchmod(r->fd, mode);
        /* never a symlink here; NOFOLLOW all the same (glibc does it through an O_PATH fd) */
        return fchmodat(r->dirfd, r->name, mode, AT_SYMLINK_NOFOLLOW);
}

static int copy_xattrs(struct walk *w, const struct ref *src, const struct ref *dst)
{
        ssize_t n = ref_list(src, w->xlist, XLIST_MAX);

        if (n < 0) {
                if (errno == EOPNOTSUPP)
                        return 0;
                return sbx_err_set(w->err, -errno, "cannot list the xattrs of '%s': %m", walk_path(w));
        }
        for (ssize_t i = 0; i < n; i += (ssize_t)strlen(w->xlist + i) + 1) {
                const char *name = w->xlist + i;
                ssize_t v = ref_get(src, name, w->xval, XVALUE_MAX);
                size_t len;

                if (v < 0) {
                        if (errno == ENODATA)
                                continue;
                        return sbx_err_set(w->err, -errno, "cannot read xattr '%s' of '%s': %m", name, walk_path(w));
                }
                len = (size_t)v;
                if (xattr_remap(w, name, w->xval, &len) < 0)
                        return sbx_err_setr(w->err, -SBX_E_INVALID, "foreign_owner",
                                            "xattr '%s' of '%s' names an id outside the ids %u..%u being shifted", name,
                                            walk_path(w), w->from, w->from + SBX_UID_RANGE - 1);
                if (ref_set(dst, name, w->xval, len) < 0)
                        return sbx_err_set(w->err, -errno, "cannot set xattr '%s' on the copy of '%s': %m", name,
                                           walk_path(w));
        }
        return 0;
}

/* ---------- copy ---------- */

/* Regular files are made with their final permission bits (through the umask): the chmod is
 * needed for setuid bits (which also need to be set after the chown), bits the umask took away,
 * and everything else. */
static bool need_chmod(const struct walk *w, const struct statx *sx)
{
        return w->chmod_always || !S_ISREG(sx->stx_mode) || (sx->stx_mode & 07000) || (sx->stx_mode & 0777 & w->umask);
}

/* Owner, xattrs (after the chown, which drops security.capability), mode (after the chown, which
 * drops setuid bits; not for symlinks), times (last). */
static int copy_attrs(struct walk *w, const struct ref *src, const struct ref *dst, const struct statx *sx)
{
        struct timespec ts[2] = {
                { .tv_sec = sx->stx_atime.tv_sec, .tv_nsec = sx->stx_atime.tv_nsec },
                { .tv_sec = sx->stx_mtime.tv_sec, .tv_nsec = sx->stx_mtime.tv_nsec },
        };
        bool link = S_ISLNK(sx->stx_mode);
        uint32_t uid, gid;
        int r;

        r = map_owner(w, sx, &uid, &gid);
        if (r < 0)
                return r;
        if ((w->chown_always || uid != w->euid || gid != w->egid) && ref_chown(dst, uid, gid) < 0)
                return sbx_err_set(w->err, -errno, "cannot chown the copy of '%s' to %u:%u: %m", walk_path(w), uid,
                                   gid);
        r = copy_xattrs(w, src, dst);
        if (r < 0)
                return r;
        if (!link && need_chmod(w, sx) && ref_chmod(dst, sx->stx_mode & 07777) < 0)
                return sbx_err_set(w->err, -errno, "cannot chmod the copy of '%s': %m", walk_path(w));
        if (dst->fd >= 0 ? futimens(dst->fd, ts) : utimensat(dst->dirfd, dst->name, ts, AT_SYMLINK_NOFOLLOW))
                return sbx_err_set(w->err, -errno, "cannot set the times of the copy of '%s': %m", walk_path(w));
        return 0;
}

static int copy_plain(struct walk *w, int in, int out, off_t off, off_t len)
{
        while (len > 0) {
                ssize_t n = pread(in, w->buf, len < COPY_BUF ? (size_t)len : COPY_BUF, off);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0; /* 0: the file shrank */
                for (ssize_t done = 0; done < n;) {
                        ssize_t m = pwrite(out, w->buf + done, (size_t)(n - done), off + done);

                        if (m < 0 && errno == EINTR)
                                continue;
                        if (m < 0)
                                return -errno;
                        done += m;
                }
                off += n;
                len -= n;
        }
        return 0;
}

static int copy_range(struct walk *w, int in, int out, off_t off, off_t len)
{
        while (len > 0 && w->try_cfr) {
                loff_t a = off, b = off;
                ssize_t n = copy_file_range(in, &a, out, &b, (size_t)len, 0);

                if (n > 0) {
                        off += n;
                        len -= n;
                        continue;
                }
                if (n == 0)
                        return 0; /* the file shrank */
                if (errno == EINTR)
                        continue;
                if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL)
                        return -errno;
                w->try_cfr = false;
        }
        if (len <= 0)
                return 0;
        if (!w->buf) {
                w->buf = malloc(COPY_BUF);
                if (!w->buf)
                        return -ENOMEM;
        }
        return copy_plain(w, in, out, off, len);
}

static int copy_data(struct walk *w, int in, int out, const struct statx *sx)
{
        off_t size = (off_t)sx->stx_size, off = 0;
        int r;

        if (size == 0)
                return 0;
        if (w->try_clone) {
                if (ioctl(out, FICLONE, in) == 0) {
                        w->st->reflinked++;
                        return 0;
                }
                /* no reflinks on this filesystem (pair): stop asking; other errors: this file only */
                if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV)
                        w->try_clone = false;
        }
        if ((off_t)sx->stx_blocks * 512 >= size)
                return copy_range(w, in, out, 0, size);
        /* sparse: copy the data segments only, then set the size (a trailing hole) */
        while (off < size) {
                off_t data = lseek(in, off, SEEK_DATA), hole;

                if (data < 0) {
                        if (errno == ENXIO)
                                break;
                        if (errno == EINVAL) /* no SEEK_DATA here: copy everything */
                                return copy_range(w, in, out, off, size - off);
                        return -errno;
                }
                if (data >= size)
                        break;
                hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0)
                        return -errno;
                if (hole > size)
                        hole = size;
                r = copy_range(w, in, out, data, hole - data);
                if (r < 0)
                        return r;
                off = hole;
        }
        return ftruncate(out, size) < 0 ? -errno : 0;
}

static int copy_file(struct walk *w, int sfd, int dfd, const char *name, const struct statx *sx)
{
        _cleanup_close_ int in = -EBADF, out = -EBADF;
        struct stat st;
        int r;

        /* O_NONBLOCK: should the name have become a fifo since statx, the open must not hang */
        in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | w->noatime);
        if (in < 0 && errno == EPERM && w->noatime) {
                w->noatime = 0;
                in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        }
        if (in < 0)
                return sbx_err_set(w->err, -errno, "cannot open '%s': %m", w->path);
        if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode) || st.st_ino != sx->stx_ino)
                return sbx_err_set(w->err, -ESTALE, "'%s' changed during the walk", w->path);
        /* the fd is writable whatever the mode (the creating open is not checked against it) */
        out = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, sx->stx_mode & 0777);
        if (out < 0)
                return sbx_err_set(w->err, -errno, "cannot create the copy of '%s': %m", w->path);
        r = copy_data(w, in, out, sx);
        if (r < 0)
                return sbx_err_set(w->err, r, "cannot copy the data of '%s': %s", w->path, strerror(-r));
        w->st->bytes += sx->stx_size;
        return copy_attrs(w, &(struct ref){ .fd = in }, &(struct ref){ .fd = out }, sx);
}

/* A hardlink to an inode copied before, made by its path below dst. Paths too long for one
 * linkat() are walked one component at a time (never following a symlink). */
static int copy_link(struct walk *w, const char *first, int dfd, const char *name)
{
        _cleanup_close_ int at = -EBADF;
        const char *p = first, *slash;

        if (strlen(first) < PATH_MAX) {
                if (linkat(w->dst_root, first, dfd, name, 0) < 0)
                        return sbx_err_set(w->err, -errno, "cannot link '%s' to '%s': %m", w->path, first);
                return 0;
        }
        while ((slash = strchr(p, '/'))) {
                char comp[NAME_MAX + 1];
                size_t n = (size_t)(slash - p);
                int next;

                if (n > NAME_MAX)
                        return sbx_err_set(w->err, -ENAMETOOLONG, "cannot link '%s': bad path", w->path);
                memcpy(comp, p, n);
                comp[n] = '\0';
                next = openat(at >= 0 ? at : w->dst_root, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return sbx_err_set(w->err, -errno, "cannot link '%s' to '%s': %m", w->path, first);
                safe_close(at);
                at = next;
                p = slash + 1;
        }
        if (linkat(at >= 0 ? at : w->dst_root, p, dfd, name, 0) < 0)
                return sbx_err_set(w->err, -errno, "cannot link '%s' to '%s': %m", w->path, first);
        return 0;
}

static int copy_visit(struct walk *w, struct frame *f, const char *name, const struct statx *sx, int *ret_dir,
                      int *ret_dst)
{
        int sfd = dirfd(f->dir), dfd = f->dst_fd, r;
        mode_t type = sx->stx_mode & S_IFMT;
        bool linked = type != S_IFDIR && sx->stx_nlink > 1;
        struct ref src = { .fd = -EBADF, .dirfd = sfd, .name = name };
        struct ref dst = { .fd = -EBADF, .dirfd = dfd, .name = name };

        if (type == S_IFSOCK) {
                w->st->skipped++;
                return 0;
        }
        if (linked) {
                const char *first = NULL;

                r = inomap_add(&w->links, sx->stx_ino, w->path, &first);
                if (r < 0)
                        return sbx_err_set(w->err, r, "out of memory");
                if (r > 0) {
                        r = copy_link(w, first, dfd, name);
                        if (r >= 0)
                                w->st->entries++;
                        return r;
                }
        }
        switch (type) {
        case S_IFDIR:
                if (sx->stx_ino == w->dst_ino && makedev(sx->stx_dev_major, sx->stx_dev_minor) == w->dst_dev)
                        return sbx_err_set(w->err, -EINVAL, "'%s' is the copy's own root", w->path);
                if (mkdirat(dfd, name, 0700) < 0)
                        return sbx_err_set(w->err, -errno, "cannot make the copy of '%s': %m", w->path);
                w->st->entries++;
                *ret_dst = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (*ret_dst < 0)
                        return sbx_err_set(w->err, -errno, "cannot open the copy of '%s': %m", w->path);
                *ret_dir = open_dir_checked(w, sfd, name, sx);
                if (*ret_dir < 0) {
                        *ret_dst = safe_close(*ret_dst);
                        return *ret_dir;
                }
                return 1;
        case S_IFREG:
                r = copy_file(w, sfd, dfd, name, sx);
                break;
        case S_IFLNK: {
                ssize_t n = readlinkat(sfd, name, w->linkbuf, sizeof w->linkbuf);

                if (n < 0)
                        return sbx_err_set(w->err, -errno, "cannot read the symlink '%s': %m", w->path);
                if ((size_t)n >= sizeof w->linkbuf)
                        return sbx_err_set(w->err, -ENAMETOOLONG, "the target of the symlink '%s' is too long",
                                           w->path);
                w->linkbuf[n] = '\0';
                if (symlinkat(w->linkbuf, dfd, name) < 0)
                        return sbx_err_set(w->err, -errno, "cannot make the copy of '%s': %m", w->path);
                r = copy_attrs(w, &src, &dst, sx);
                break;
        }
        case S_IFCHR:
        case S_IFBLK:
        case S_IFIFO:
                if (mknodat(dfd, name, type | 0600, makedev(sx->stx_rdev_major, sx->stx_rdev_minor)) < 0)
                        return sbx_err_set(w->err, -errno, "cannot make the copy of '%s': %m", w->path);
                r = copy_attrs(w, &src, &dst, sx);
                break;
        default:
                return sbx_err_set(w->err, -EINVAL, "'%s' has an unknown file type 0%o", w->path, type);
        }
        if (r >= 0)
                w->st->entries++;
        return r;
}

static int copy_leave(struct walk *w, struct frame *f)
{
        /* last, so that making the children did not change the times, and a setgid bit did not
         * pass to them */
        return copy_attrs(w, &(struct ref){ .fd = dirfd(f->dir) }, &(struct ref){ .fd = f->dst_fd }, &f->sx);
}

/* The umask, without changing it (umask(2) would race with other threads): /proc/self/status. */
static int read_umask(mode_t *ret)
{
        char line[256];
        FILE *f = fopen("/proc/self/status", "re");
        int r = -ENOENT;

        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f))
                if (!strncmp(line, "Umask:", 6)) {
                        *ret = (mode_t)strtoul(line + 6, NULL, 8) & 0777;
                        r = 0;
                        break;
                }
        (void)fclose(f);
        return r;
}

static int check_range(uid_t from, uid_t to, struct sbx_err *err)
{
        if (from > (uid_t)-1 - SBX_UID_RANGE || to > (uid_t)-1 - SBX_UID_RANGE)
                return sbx_err_set(err, -EINVAL, "the id range %u..%u -> %u..%u does not fit", from,
                                   from + SBX_UID_RANGE - 1, to, to + SBX_UID_RANGE - 1);
        return 0;
}

int tree_copy(int src_dirfd, int dst_dirfd, const struct tree_copy_opts *o, struct tree_stats *st, struct sbx_err *err)
{
        struct tree_stats dummy;
        struct walk w = { 0 };
        struct stat dst_st;
        int r;

        if (!st)
                st = &dummy;
        *st = (struct tree_stats){ 0 };
        r = check_range(o->id_from, o->id_to, err);
        if (r < 0)
                return r;
        if (fstat(dst_dirfd, &dst_st) < 0)
                return sbx_err_set(err, -errno, "cannot stat the copy's root: %m");
        r = walk_init(&w, o->max_depth, o->max_entries, err);
        if (r >= 0) {
                w.from = o->id_from;
                w.to = o->id_to;
                w.shift = o->id_from != o->id_to;
                w.keep_foreign = o->keep_foreign;
                w.dst_root = dst_dirfd;
                w.dst_dev = dst_st.st_dev;
                w.dst_ino = dst_st.st_ino;
                w.st = st;
                w.euid = geteuid();
                w.egid = getegid();
                w.chown_always = dst_st.st_mode & S_ISGID;
                /* a default ACL on dst would replace the umask for the entries made in it */
                w.chmod_always =
                        read_umask(&w.umask) < 0 || fgetxattr(dst_dirfd, "system.posix_acl_default", NULL, 0) >= 0;
                w.try_clone = w.try_cfr = true;
                w.noatime = O_NOATIME;
                r = walk_run(&w, src_dirfd, dst_dirfd, copy_visit, copy_leave);
        }
        walk_done(&w);
        return r;
}

/* ---------- shift in place ---------- */

static int shift_one(struct walk *w, const struct ref *ref, const struct statx *sx)
{
        /* values to put back after the chown: at most capability + two ACLs */
        const char *names[3];
        size_t lens[3], n_keep = 0;
        uint32_t uid, gid;
        bool chown_it;
        int r;

        r = map_owner(w, sx, &uid, &gid);
        if (r < 0)
                return r;
        chown_it = uid != sx->stx_uid || gid != sx->stx_gid; /* not for a foreign owner */
        if (!S_ISLNK(sx->stx_mode)) {
                ssize_t n = ref_list(ref, w->xlist, XLIST_MAX);

                if (n < 0 && errno != EOPNOTSUPP)
                        return sbx_err_set(w->err, -errno, "cannot list the xattrs of '%s': %m", walk_path(w));
                for (ssize_t i = 0; i < n && n_keep < ELEMENTSOF(names); i += (ssize_t)strlen(w->xlist + i) + 1) {
                        const char *name = w->xlist + i;
                        char *v = w->xval + n_keep * XVALUE_MAX;
                        ssize_t len;

                        if (!xattr_has_ids(name))
                                continue;
                        len = ref_get(ref, name, v, XVALUE_MAX);
                        if (len < 0) {
                                if (errno == ENODATA)
                                        continue;
                                return sbx_err_set(w->err, -errno, "cannot read xattr '%s' of '%s': %m", name,
                                                   walk_path(w));
                        }
                        lens[n_keep] = (size_t)len;
                        r = xattr_remap(w, name, v, &lens[n_keep]);
                        if (r < 0)
                                return sbx_err_setr(w->err, -SBX_E_INVALID, "foreign_owner",
                                                    "xattr '%s' of '%s' names an id outside the ids %u..%u being "
                                                    "shifted",
                                                    name, walk_path(w), w->from, w->from + SBX_UID_RANGE - 1);
                        /* the chown drops a capability: it goes back even when unchanged */
                        if (r > 0 || (chown_it && !strcmp(name, "security.capability")))
                                names[n_keep++] = name;
                }
        }
        if (chown_it && ref_chown(ref, uid, gid) < 0)
                return sbx_err_set(w->err, -errno, "cannot chown '%s' to %u:%u: %m", walk_path(w), uid, gid);
        for (size_t i = 0; i < n_keep; i++)
                if (ref_set(ref, names[i], w->xval + i * XVALUE_MAX, lens[i]) < 0)
                        return sbx_err_set(w->err, -errno, "cannot set xattr '%s' on '%s': %m", names[i], walk_path(w));
        if (chown_it && !S_ISLNK(sx->stx_mode) && (sx->stx_mode & 07000) && ref_chmod(ref, sx->stx_mode & 07777) < 0)
                return sbx_err_set(w->err, -errno, "cannot chmod '%s': %m", walk_path(w));
        return 0;
}

static int shift_visit(struct walk *w, struct frame *f, const char *name, const struct statx *sx, int *ret_dir,
                       int *ret_dst)
{
        int sfd = dirfd(f->dir), r;

        if (!S_ISDIR(sx->stx_mode) && sx->stx_nlink > 1) {
                r = inomap_add(&w->links, sx->stx_ino, NULL, NULL);
                if (r < 0)
                        return sbx_err_set(w->err, r, "out of memory");
                if (r > 0) /* shifted under another name */
                        return 0;
        }
        if (S_ISDIR(sx->stx_mode)) {
                int fd = open_dir_checked(w, sfd, name, sx);

                if (fd < 0)
                        return fd;
                r = shift_one(w, &(struct ref){ .fd = fd }, sx);
                if (r < 0) {
                        (void)close(fd);
                        return r;
                }
                *ret_dir = fd;
                return 1;
        }
        return shift_one(w, &(struct ref){ .fd = -EBADF, .dirfd = sfd, .name = name }, sx);
}

static int shift_leave(struct walk *w, struct frame *f)
{
        if (w->depth > 1)
                return 0;
        return shift_one(w, &(struct ref){ .fd = dirfd(f->dir) }, &f->sx);
}

int tree_shift_ids(int dirfd, uid_t from, uid_t to, struct sbx_err *err)
{
        struct walk w = { 0 };
        int r;

        r = check_range(from, to, err);
        if (r < 0 || from == to)
                return r;
        r = walk_init(&w, 0, 0, err);
        if (r >= 0) {
                w.from = from;
                w.to = to;
                w.shift = true;
                w.keep_foreign = true;
                w.noatime = O_NOATIME;
                r = walk_run(&w, dirfd, -EBADF, shift_visit, shift_leave);
        }
        walk_done(&w);
        return r;
}

/* ---------- removal ---------- */

struct rm_frame {
        DIR *dir;
        char name[NAME_MAX + 1]; /* in the directory below */
        bool rewound;
};

static int stat_mount(int dfd, const char *name, struct statx *sx)
{
        return statx(dfd, name, (name[0] ? 0 : AT_EMPTY_PATH) | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                     STATX_TYPE | STATX_MNT_ID, sx) < 0
                       ? -errno
                       : 0;
}

static bool same_mount(const struct statx *a, const struct statx *b)
{
        if (a->stx_dev_major != b->stx_dev_major || a->stx_dev_minor != b->stx_dev_minor)
                return false;
        return !(a->stx_mask & b->stx_mask & STATX_MNT_ID) || a->stx_mnt_id == b->stx_mnt_id;
}

/* Open dfd/name to empty it, if it is on the same mount as root. */
static int rm_open(int dfd, const char *name, const struct statx *root)
{
        struct statx sx;
        int fd, r;

        r = stat_mount(dfd, name, &sx);
        if (r < 0)
                return r;
        if (!same_mount(&sx, root))
                return -EXDEV;
        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int tree_remove(int parent_fd, const char *name)
{
        _cleanup_free_ struct rm_frame *stack = NULL;
        struct statx root;
        unsigned depth = 0;
        int r = 0, fd;

        if (!name[0] || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
                return -EINVAL;
        if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR)
                return -errno;
        fd = stat_mount(parent_fd, "", &root);
        if (fd < 0)
                return fd;
        fd = rm_open(parent_fd, name, &root);
        if (fd < 0)
                return fd == -ENOENT ? 0 : fd;
        stack = calloc(SBX_TREE_MAX_DEPTH + 1, sizeof *stack);
        if (!stack) {
                (void)close(fd);
                return -ENOMEM;
        }
        stack[0].dir = fdopendir(fd);
        if (!stack[0].dir) {
                r = -errno;
                (void)close(fd);
                return r;
        }
        snprintf(stack[0].name, sizeof stack[0].name, "%s", name);
        depth = 1;

        while (depth > 0) {
                struct rm_frame *f = &stack[depth - 1];
                int pfd = depth > 1 ? dirfd(stack[depth - 2].dir) : parent_fd;
                struct dirent *de;
                int q;

                errno = 0;
                de = readdir(f->dir);
                if (!de) {
                        q = errno ? -errno : 0;
                        if (q == 0 && unlinkat(pfd, f->name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                                q = -errno;
                                /* an entry readdir did not return while we were removing: once more */
                                if (q == -ENOTEMPTY && !f->rewound && r == 0) {
                                        f->rewound = true;
                                        rewinddir(f->dir);
                                        continue;
                                }
                        }
                        if (q < 0 && r == 0)
                                r = q;
                        (void)closedir(f->dir);
                        depth--;
                        continue;
                }
                if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
                        continue;
                if (de->d_type != DT_DIR) {
                        if (unlinkat(dirfd(f->dir), de->d_name, 0) == 0 || errno == ENOENT)
                                continue;
                        if (errno != EISDIR) {
                                if (r == 0)
                                        r = -errno;
                                continue;
                        }
                }
                if (depth > SBX_TREE_MAX_DEPTH) {
                        if (r == 0)
                                r = -SBX_E_TOO_LARGE;
                        continue;
                }
                fd = rm_open(dirfd(f->dir), de->d_name, &root);
                if (fd == -ENOENT)
                        continue;
                if (fd < 0) {
                        if (r == 0)
                                r = fd;
                        continue;
                }
                stack[depth].dir = fdopendir(fd);
                if (!stack[depth].dir) {
                        if (r == 0)
                                r = -errno;
                        (void)close(fd);
                        continue;
                }
                snprintf(stack[depth].name, sizeof stack[depth].name, "%s", de->d_name);
                stack[depth].rewound = false;
                depth++;
        }
        return r;
}
