// SPDX-License-Identifier: Apache-2.0
/*
 * The canonical tar stream of a layer tree (layer.h, layer-internal.h): a depth-first walk with
 * each directory's names sorted bytewise, written through libarchive's restricted pax writer into
 * a sha256 context and, optionally, a caller's sink. The same walk normalises a tree being
 * committed (sockets removed, overlay xattrs other than the opaque marker stripped). It opens
 * every entry relative to its parent's fd with O_NOFOLLOW, never follows a symlink, never leaves
 * the tree's file system, and does not log.
 */
#include "images/layer-internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"

/* File contents are read (and the caller's sink written) in chunks of this size. */
#define LAYER_IO_BUF (256 * 1024)
/* Entries in one directory. */
#define LAYER_DIR_MAX_ENTRIES (1U << 20)
/* Inodes with more than one link in one tree. */
#define LAYER_MAX_LINKS (1U << 22)
/* A relative path is at most LAYER_MAX_DEPTH names of NAME_MAX bytes, plus ".wh." and the separators. */
#define LAYER_PATH_MAX ((size_t)LAYER_MAX_DEPTH * (NAME_MAX + 1) + 16)

#define WHITEOUT_PREFIX ".wh."
#define OPAQUE_MARKER ".wh..wh..opq"
#define OPAQUE_XATTR "user.overlay.opaque"

/* (st_dev, st_ino) -> the first path emitted for that inode (names stores the paths, NUL-ended). */
struct link_slot {
        uint64_t dev, ino;
        size_t off; /* into link_map.names; SIZE_MAX: empty slot */
};

struct link_map {
        struct link_slot *slots;
        size_t cap, n; /* cap: a power of two, at most half full */
        char *names;
        size_t names_len, names_cap;
};

struct walk {
        unsigned flags;
        const char *root_path;
        struct sbx_err *err;
        dev_t dev;    /* the tree's file system */
        uint64_t mnt; /* and mount (0: unknown, kernel < 5.8) */

        struct archive *ar;
        struct archive_entry *entry;
        EVP_MD_CTX *md;
        layer_write_fn write_fn;
        void *write_data;
        int write_r;  /* first error of write_fn (or of the digest) */
        bool stopped; /* the stream is abandoned: swallow what libarchive still writes */
        char *out;    /* coalesces small writes for write_fn (LAYER_IO_BUF) */
        size_t out_len;

        char *buf;    /* file contents (LAYER_IO_BUF) */
        char *xattrs; /* xattr name lists (XATTR_LIST_MAX) */
        char target[PATH_MAX];
        char *path; /* the current relative path, NUL-ended */
        size_t path_len, path_cap;
        struct link_map links;

        uint64_t tar_bytes, size_bytes, entries;
};

/* ---- errors ---- */

/* The current path for a message: its head and tail if it is long (the reason must fit too). */
#define MSG_PATH_HEAD 80
#define MSG_PATH_TAIL 160
static const char *msg_path(const struct walk *w, char *buf, size_t size)
{
        if (w->path_len <= MSG_PATH_HEAD + MSG_PATH_TAIL)
                snprintf(buf, size, "%s", w->path);
        else
                snprintf(buf, size, "%.*s...%s", MSG_PATH_HEAD, w->path, w->path + w->path_len - MSG_PATH_TAIL);
        return buf;
}

static int fail_errno(struct walk *w, int code, const char *what)
{
        char p[MSG_PATH_HEAD + MSG_PATH_TAIL + 4];

        return sbx_err_set(w->err, code, "cannot %s '%s/%s': %s", what, w->root_path, msg_path(w, p, sizeof p),
                           strerror(-code));
}

static int fail_invalid(struct walk *w, const char *why)
{
        char p[MSG_PATH_HEAD + MSG_PATH_TAIL + 4];

        return sbx_err_setr(w->err, -SBX_E_INVALID, "invalid_layer", "cannot make a layer of '%s/%s': %s", w->root_path,
                            msg_path(w, p, sizeof p), why);
}

static int fail_stream(struct walk *w)
{
        char p[MSG_PATH_HEAD + MSG_PATH_TAIL + 4];

        if (w->write_r < 0)
                return sbx_err_set(w->err, w->write_r, "writing the tar stream of '%s' stopped at '%s'", w->root_path,
                                   msg_path(w, p, sizeof p));
        return sbx_err_set(w->err, -EIO, "cannot write the tar entry of '%s/%s': %s", w->root_path,
                           msg_path(w, p, sizeof p),
                           archive_error_string(w->ar) ? archive_error_string(w->ar) : "unknown error");
}

/* ---- the relative path ---- */

static int path_append(struct walk *w, const char *s)
{
        size_t n = strlen(s);

        if (w->path_len + n + 1 > w->path_cap) {
                size_t cap = w->path_cap * 2;
                char *p;

                while (cap < w->path_len + n + 1)
                        cap *= 2;
                if (cap > LAYER_PATH_MAX)
                        return fail_invalid(w, "path too long");
                p = realloc(w->path, cap);
                if (!p)
                        return sbx_err_set(w->err, -ENOMEM, "out of memory");
                w->path = p;
                w->path_cap = cap;
        }
        memcpy(w->path + w->path_len, s, n + 1);
        w->path_len += n;
        return 0;
}

static void path_truncate(struct walk *w, size_t len)
{
        w->path_len = len;
        w->path[len] = '\0';
}

/* ---- hard links ---- */

static size_t link_hash(uint64_t dev, uint64_t ino)
{
        uint64_t h = ino * 0x9e3779b97f4a7c15ULL ^ dev * 0xc2b2ae3d27d4eb4fULL;

        return (size_t)(h ^ (h >> 31));
}

static const char *link_find(const struct link_map *m, uint64_t dev, uint64_t ino)
{
        if (m->cap == 0)
                return NULL;
        for (size_t i = link_hash(dev, ino) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
                const struct link_slot *s = &m->slots[i];

                if (s->off == SIZE_MAX)
                        return NULL;
                if (s->dev == dev && s->ino == ino)
                        return m->names + s->off;
        }
}

static void link_place(struct link_slot *slots, size_t cap, const struct link_slot *v)
{
        size_t i = link_hash(v->dev, v->ino) & (cap - 1);

        while (slots[i].off != SIZE_MAX)
                i = (i + 1) & (cap - 1);
        slots[i] = *v;
}

static int link_add(struct walk *w, uint64_t dev, uint64_t ino)
{
        struct link_map *m = &w->links;
        struct link_slot v = { .dev = dev, .ino = ino, .off = m->names_len };

        if (m->n >= LAYER_MAX_LINKS)
                return fail_invalid(w, "too many hard-linked files");
        if ((m->n + 1) * 2 > m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 256;
                struct link_slot *slots = malloc(cap * sizeof *slots);

                if (!slots)
                        return sbx_err_set(w->err, -ENOMEM, "out of memory");
                for (size_t i = 0; i < cap; i++)
                        slots[i].off = SIZE_MAX;
                for (size_t i = 0; i < m->cap; i++)
                        if (m->slots[i].off != SIZE_MAX)
                                link_place(slots, cap, &m->slots[i]);
                free(m->slots);
                m->slots = slots;
                m->cap = cap;
        }
        if (m->names_len + w->path_len + 1 > m->names_cap) {
                size_t cap = m->names_cap ? m->names_cap : 64 * 1024;
                char *p;

                while (cap < m->names_len + w->path_len + 1)
                        cap *= 2;
                p = realloc(m->names, cap);
                if (!p)
                        return sbx_err_set(w->err, -ENOMEM, "out of memory");
                m->names = p;
                m->names_cap = cap;
        }
        memcpy(m->names + m->names_len, w->path, w->path_len + 1);
        m->names_len += w->path_len + 1;
        link_place(m->slots, m->cap, &v);
        m->n++;
        return 0;
}

/* ---- the stream ---- */

static int out_flush(struct walk *w)
{
        int r = 0;

        if (w->out_len > 0)
                r = w->write_fn(w->out, w->out_len, w->write_data);
        w->out_len = 0;
        return r < 0 ? r : 0;
}

/* libarchive's sink (blocking disabled: every byte of the stream passes here, in order). */
static la_ssize_t stream_write(struct archive *a, void *data, const void *buf, size_t len)
{
        struct walk *w = data;
        int r;

        if (w->stopped)
                return (la_ssize_t)len;
        if (EVP_DigestUpdate(w->md, buf, len) != 1) {
                w->write_r = -EIO;
                w->stopped = true;
                return -1;
        }
        w->tar_bytes += len;
        if (!w->write_fn)
                return (la_ssize_t)len;
        if (w->out_len + len > LAYER_IO_BUF) {
                r = out_flush(w);
                if (r < 0)
                        goto stop;
        }
        if (len >= LAYER_IO_BUF) {
                r = w->write_fn(buf, len, w->write_data);
                if (r < 0)
                        goto stop;
        } else {
                memcpy(w->out + w->out_len, buf, len);
                w->out_len += len;
        }
        return (la_ssize_t)len;
stop:
        w->write_r = r;
        w->stopped = true;
        return -1;
}

/* One header with exactly the fields of the canonical form (layer.h). */
static int emit(struct walk *w, const struct stat *st, int64_t size, const char *symlink, const char *hardlink)
{
        struct archive_entry *e = w->entry;

        archive_entry_clear(e);
        archive_entry_copy_pathname(e, w->path);
        archive_entry_set_filetype(e, st->st_mode & S_IFMT);
        archive_entry_set_perm(e, st->st_mode & 07777);
        archive_entry_set_uid(e, st->st_uid);
        archive_entry_set_gid(e, st->st_gid);
        archive_entry_set_mtime(e, st->st_mtim.tv_sec, 0);
        archive_entry_set_size(e, size);
        if (symlink)
                archive_entry_copy_symlink(e, symlink);
        if (hardlink)
                archive_entry_copy_hardlink(e, hardlink);
        if (!hardlink && (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))) {
                archive_entry_set_rdevmajor(e, major(st->st_rdev));
                archive_entry_set_rdevminor(e, minor(st->st_rdev));
        }
        /* ARCHIVE_WARN: a name that is not UTF-8 went into the pax header as hdrcharset=BINARY */
        if (archive_write_header(w->ar, e) < ARCHIVE_WARN)
                return fail_stream(w);
        w->entries++;
        return 0;
}

/* The empty regular file that stands for a whiteout or an opaque marker. */
static int emit_marker(struct walk *w)
{
        struct stat st = { .st_mode = S_IFREG };

        return emit(w, &st, 0, NULL, NULL);
}

/* ---- per-entry work ---- */

/* user.* xattrs exist only on files and dirs; trusted.overlay.* may sit on anything. */
static bool xattr_stripped(const char *name)
{
        if (!strcmp(name, OPAQUE_XATTR))
                return false;
        return !strncmp(name, "user.overlay.", 13) || !strncmp(name, "trusted.overlay.", 16);
}

/* Strip overlay xattrs from the inode of fd (a real fd), or of dfd/name if fd < 0 (through an
 * O_PATH fd and its /proc magic link, which names the inode itself and never a symlink's target). */
static int xattrs_strip(struct walk *w, int fd, int dfd, const char *name)
{
        _cleanup_close_ int pfd = -EBADF;
        char proc[32];
        ssize_t n;

        if (fd < 0) {
                pfd = openat(dfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (pfd < 0)
                        return fail_errno(w, -errno, "open");
                snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
        }
        n = fd >= 0 ? flistxattr(fd, w->xattrs, XATTR_LIST_MAX) : listxattr(proc, w->xattrs, XATTR_LIST_MAX);
        if (n < 0) {
                if (errno == EOPNOTSUPP)
                        return 0;
                return fail_errno(w, -errno, "list the xattrs of");
        }
        for (char *p = w->xattrs; p < w->xattrs + n; p += strlen(p) + 1) {
                if (!xattr_stripped(p))
                        continue;
                if ((fd >= 0 ? fremovexattr(fd, p) : removexattr(proc, p)) < 0 && errno != ENODATA)
                        return fail_errno(w, -errno, "remove an overlay xattr of");
        }
        return 0;
}

static int dir_opaque(struct walk *w, int fd, bool *ret)
{
        char v[2];
        ssize_t n;

        n = fgetxattr(fd, OPAQUE_XATTR, v, sizeof v);
        if (n < 0) {
                if (errno != ENODATA && errno != EOPNOTSUPP && errno != ERANGE)
                        return fail_errno(w, -errno, "read " OPAQUE_XATTR " of");
                n = 0;
        }
        *ret = n == 1 && v[0] == 'y';
        return 0;
}

/* Encoded UTF-16 surrogates: libarchive would silently rewrite a CESU-8 pair in the pax header,
 * so the stream would name a file that is not on disk. */
static bool has_surrogate(const char *s)
{
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                if (p[0] == 0xed && p[1] >= 0xa0 && p[1] <= 0xbf)
                        return true;
        return false;
}

/* statx into a struct stat, plus the mount id (0 if the kernel has none): one syscall per entry. */
static int stat_mnt(int dfd, const char *name, int flags, struct stat *st, uint64_t *ret_mnt)
{
        struct statx sx;

        if (statx(dfd, name, flags, STATX_BASIC_STATS | STATX_MNT_ID, &sx) < 0)
                return -errno;
        memset(st, 0, sizeof *st);
        st->st_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
        st->st_ino = sx.stx_ino;
        st->st_mode = sx.stx_mode;
        st->st_nlink = sx.stx_nlink;
        st->st_uid = sx.stx_uid;
        st->st_gid = sx.stx_gid;
        st->st_rdev = makedev(sx.stx_rdev_major, sx.stx_rdev_minor);
        st->st_size = (off_t)sx.stx_size;
        st->st_blocks = (blkcnt_t)sx.stx_blocks;
        st->st_mtim.tv_sec = sx.stx_mtime.tv_sec;
        st->st_mtim.tv_nsec = sx.stx_mtime.tv_nsec;
        *ret_mnt = (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id : 0;
        return 0;
}

static int check_stat(struct walk *w, const struct stat *st, uint64_t mnt)
{
        if (st->st_uid >= SBX_UID_RANGE || st->st_gid >= SBX_UID_RANGE)
                return fail_invalid(w, "owner or group is outside 0..65535");
        /* a mount point inside the tree (even a bind mount of the same file system) is not followed */
        if (st->st_dev != w->dev || (mnt && w->mnt && mnt != w->mnt))
                return fail_invalid(w, "is on another mount");
        return 0;
}

static bool same_inode(const struct stat *a, const struct stat *b)
{
        return a->st_dev == b->st_dev && a->st_ino == b->st_ino && (a->st_mode & S_IFMT) == (b->st_mode & S_IFMT);
}

static int walk_dir(struct walk *w, int *dfd, unsigned depth);

/*
 * dfd is the parent's fd, owned by the caller's walk_dir. While the subtree is walked it is closed
 * and afterwards reopened through the child's "..", checked against the parent's identity: a walk
 * holds O(1) fds however deep the tree is.
 */
static int walk_subdir(struct walk *w, int *dfd, const char *name, const struct stat *lst, unsigned depth)
{
        _cleanup_close_ int fd = -EBADF;
        size_t len = w->path_len;
        struct stat st, pst;
        bool opaque;
        int r;

        if (depth >= LAYER_MAX_DEPTH)
                return fail_invalid(w, "directories nested too deep");
        fd = openat(*dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return fail_errno(w, -errno, "open");
        if (fstat(fd, &st) < 0 || fstat(*dfd, &pst) < 0)
                return fail_errno(w, -errno, "stat");
        if (!same_inode(lst, &st))
                return fail_errno(w, -EBUSY, "walk (it changed during the walk)");
        if ((w->flags & LAYER_TREE_NORMALISE) && (r = xattrs_strip(w, fd, -1, NULL)) < 0)
                return r;
        r = dir_opaque(w, fd, &opaque);
        if (r < 0)
                return r;
        w->size_bytes += (uint64_t)st.st_blocks * 512;
        r = path_append(w, "/");
        if (r < 0)
                return r;
        r = emit(w, &st, 0, NULL, NULL);
        if (r < 0)
                return r;
        if (opaque) {
                r = path_append(w, OPAQUE_MARKER);
                if (r < 0)
                        return r;
                r = emit_marker(w);
                if (r < 0)
                        return r;
                path_truncate(w, len + 1);
        }

        *dfd = safe_close(*dfd);
        r = walk_dir(w, &fd, depth + 1);
        if (r < 0)
                return r;
        *dfd = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (*dfd < 0)
                return fail_errno(w, -errno, "reopen the parent of");
        if (fstat(*dfd, &st) < 0)
                return fail_errno(w, -errno, "stat the parent of");
        if (!same_inode(&pst, &st))
                return fail_errno(w, -EBUSY, "walk (it moved during the walk)");
        return 0;
}

static int copy_data(struct walk *w, int fd, off_t size)
{
        off_t left = size;

        if (size > LAYER_IO_BUF)
                (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        while (left > 0) {
                ssize_t n = read(fd, w->buf, left < LAYER_IO_BUF ? (size_t)left : LAYER_IO_BUF);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return fail_errno(w, -errno, "read");
                if (n == 0)
                        return fail_errno(w, -EIO, "read (it shrank during the walk)");
                if (archive_write_data(w->ar, w->buf, (size_t)n) != n)
                        return fail_stream(w);
                left -= n;
        }
        return 0;
}

static int walk_file(struct walk *w, int dfd, const char *name, const struct stat *lst)
{
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NOATIME | O_CLOEXEC);
        if (fd < 0 && errno == EPERM) /* O_NOATIME needs ownership or CAP_FOWNER */
                fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return fail_errno(w, -errno, "open");
        if (fstat(fd, &st) < 0)
                return fail_errno(w, -errno, "stat");
        if (!same_inode(lst, &st))
                return fail_errno(w, -EBUSY, "walk (it changed during the walk)");
        r = check_stat(w, &st, 0);
        if (r < 0)
                return r;
        if ((w->flags & LAYER_TREE_NORMALISE) && (r = xattrs_strip(w, fd, -1, NULL)) < 0)
                return r;
        r = emit(w, &st, st.st_size, NULL, NULL);
        if (r < 0)
                return r;
        return copy_data(w, fd, st.st_size);
}

/* Everything but directories and whiteouts. */
static int walk_leaf(struct walk *w, int dfd, const char *name, const struct stat *st)
{
        const char *first;
        ssize_t n;
        int r;

        if (st->st_nlink > 1) {
                first = link_find(&w->links, st->st_dev, st->st_ino);
                if (first)
                        return emit(w, st, 0, NULL, first);
                r = link_add(w, st->st_dev, st->st_ino);
                if (r < 0)
                        return r;
        }
        w->size_bytes += (uint64_t)st->st_blocks * 512;
        if (S_ISREG(st->st_mode))
                return walk_file(w, dfd, name, st);
        if (!S_ISLNK(st->st_mode) && !S_ISCHR(st->st_mode) && !S_ISBLK(st->st_mode) && !S_ISFIFO(st->st_mode))
                return fail_invalid(w, "unsupported file type");
        if ((w->flags & LAYER_TREE_NORMALISE) && (r = xattrs_strip(w, -1, dfd, name)) < 0)
                return r;
        if (!S_ISLNK(st->st_mode))
                return emit(w, st, 0, NULL, NULL);
        n = readlinkat(dfd, name, w->target, sizeof w->target);
        if (n < 0)
                return fail_errno(w, -errno, "read the symlink");
        if ((size_t)n >= sizeof w->target)
                return fail_invalid(w, "symlink target too long");
        w->target[n] = '\0';
        if (strlen(w->target) != (size_t)n || has_surrogate(w->target))
                return fail_invalid(w, "unsupported symlink target");
        return emit(w, st, 0, w->target, NULL);
}

static int walk_entry(struct walk *w, int *dfd, const char *name, unsigned depth)
{
        size_t base = w->path_len;
        struct stat st;
        uint64_t mnt;
        int r;

        r = path_append(w, name);
        if (r < 0)
                return r;
        r = stat_mnt(*dfd, name, AT_SYMLINK_NOFOLLOW, &st, &mnt);
        if (r < 0) {
                r = fail_errno(w, r, "stat");
                goto out;
        }
        if (S_ISSOCK(st.st_mode)) { /* a layer cannot carry a socket: dropped */
                if ((w->flags & LAYER_TREE_NORMALISE) && unlinkat(*dfd, name, 0) < 0 && errno != ENOENT)
                        r = fail_errno(w, -errno, "remove the socket");
                goto out;
        }
        if (!strncmp(name, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX))) {
                r = fail_invalid(w, "names starting with \"" WHITEOUT_PREFIX "\" are reserved for whiteouts");
                goto out;
        }
        if (has_surrogate(name)) {
                r = fail_invalid(w, "unsupported file name (encoded UTF-16 surrogate)");
                goto out;
        }
        r = check_stat(w, &st, mnt);
        if (r < 0)
                goto out;

        if (S_ISDIR(st.st_mode)) {
                r = walk_subdir(w, dfd, name, &st, depth);
        } else if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
                /* overlayfs hard-links whiteouts to one inode: never a tar hard link */
                if ((w->flags & LAYER_TREE_NORMALISE) && (r = xattrs_strip(w, -1, *dfd, name)) < 0)
                        goto out;
                path_truncate(w, base);
                r = path_append(w, WHITEOUT_PREFIX);
                if (r == 0)
                        r = path_append(w, name);
                if (r == 0)
                        r = emit_marker(w);
        } else {
                r = walk_leaf(w, *dfd, name, &st);
        }
out:
        path_truncate(w, base);
        return r;
}

/* One directory's names, sorted bytewise: a single buffer and an index (no per-name allocation). */
struct names {
        char *buf;
        size_t len, cap;
        size_t *idx;
        size_t n, cap_idx;
};

static void names_done(struct names *nm)
{
        free(nm->buf);
        free(nm->idx);
}

static int names_cmp(const void *a, const void *b, void *buf)
{
        return strcmp((const char *)buf + *(const size_t *)a, (const char *)buf + *(const size_t *)b);
}

static int names_read(struct walk *w, int dfd, struct names *nm)
{
        _cleanup_close_ int fd = -EBADF;
        struct dirent *de;
        DIR *d;
        int r = 0;

        /* a fresh open: a dup would share (and move) dfd's offset */
        fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return fail_errno(w, -errno, "open");
        d = fdopendir(fd);
        if (!d)
                return fail_errno(w, -errno, "read the directory");
        fd = -EBADF;
        while ((errno = 0, de = readdir(d))) {
                size_t n = strlen(de->d_name);

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (n > NAME_MAX) {
                        r = fail_invalid(w, "a name in it is too long");
                        break;
                }
                if (nm->n >= LAYER_DIR_MAX_ENTRIES) {
                        r = fail_invalid(w, "too many entries in the directory");
                        break;
                }
                if (nm->len + n + 1 > nm->cap) {
                        size_t cap = nm->cap ? nm->cap * 2 : 4096;
                        char *p = realloc(nm->buf, cap);

                        if (!p) {
                                r = sbx_err_set(w->err, -ENOMEM, "out of memory");
                                break;
                        }
                        nm->buf = p;
                        nm->cap = cap;
                }
                if (nm->n == nm->cap_idx) {
                        size_t cap = nm->cap_idx ? nm->cap_idx * 2 : 64;
                        size_t *p = reallocarray(nm->idx, cap, sizeof *p);

                        if (!p) {
                                r = sbx_err_set(w->err, -ENOMEM, "out of memory");
                                break;
                        }
                        nm->idx = p;
                        nm->cap_idx = cap;
                }
                memcpy(nm->buf + nm->len, de->d_name, n + 1);
                nm->idx[nm->n++] = nm->len;
                nm->len += n + 1;
        }
        if (r == 0 && errno != 0)
                r = fail_errno(w, -errno, "read the directory");
        (void)closedir(d);
        if (r == 0 && nm->n > 1)
                qsort_r(nm->idx, nm->n, sizeof nm->idx[0], names_cmp, nm->buf);
        return r;
}

/* *dfd: the directory, owned by the caller; walk_subdir may replace it by an fd of the same dir. */
static int walk_dir(struct walk *w, int *dfd, unsigned depth)
{
        struct names nm = {};
        int r;

        r = names_read(w, *dfd, &nm);
        for (size_t i = 0; r == 0 && i < nm.n; i++)
                r = walk_entry(w, dfd, nm.buf + nm.idx[i], depth);
        names_done(&nm);
        return r;
}

/* ---- entry point ---- */

static int walk_root(struct walk *w, int root_fd)
{
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        bool opaque;
        int r;

        r = stat_mnt(root_fd, "", AT_EMPTY_PATH, &st, &w->mnt);
        if (r < 0)
                return fail_errno(w, r, "stat");
        if (!S_ISDIR(st.st_mode))
                return fail_invalid(w, "not a directory");
        w->dev = st.st_dev;
        r = check_stat(w, &st, w->mnt);
        if (r < 0)
                return r;
        if ((w->flags & LAYER_TREE_NORMALISE) && (r = xattrs_strip(w, root_fd, -1, NULL)) < 0)
                return r;
        w->size_bytes += (uint64_t)st.st_blocks * 512;
        /* the root has no entry of its own ("./" is not written); an opaque root's marker comes first */
        r = dir_opaque(w, root_fd, &opaque);
        if (r < 0)
                return r;
        if (opaque) {
                r = path_append(w, OPAQUE_MARKER);
                if (r < 0)
                        return r;
                r = emit_marker(w);
                path_truncate(w, 0);
                if (r < 0)
                        return r;
        }
        fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3); /* the walk closes and reopens its dir fds */
        if (fd < 0)
                return fail_errno(w, -errno, "duplicate the fd of");
        r = walk_dir(w, &fd, 0);
        if (r < 0)
                return r;
        if (archive_write_close(w->ar) != ARCHIVE_OK)
                return fail_stream(w);
        if (w->write_fn) {
                r = out_flush(w);
                if (r < 0) {
                        w->write_r = r;
                        return fail_stream(w);
                }
        }
        return 0;
}

int layer__tree_stream(int root_fd, const char *root_path, unsigned flags, locale_t utf8, layer_write_fn write_fn,
                       void *data, struct layer_tree_result *ret, struct sbx_err *err)
{
        static const char hexd[] = "0123456789abcdef";
        struct walk w = {
                .flags = flags,
                .root_path = root_path,
                .err = err,
                .write_fn = write_fn,
                .write_data = data,
        };
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        locale_t old = (locale_t)0;
        int r;

        w.path_cap = PATH_MAX;
        w.path = malloc(w.path_cap);
        w.buf = malloc(LAYER_IO_BUF);
        w.xattrs = malloc(XATTR_LIST_MAX);
        w.out = write_fn ? malloc(LAYER_IO_BUF) : NULL;
        w.md = EVP_MD_CTX_new();
        if (!w.path || !w.buf || !w.xattrs || (write_fn && !w.out) || !w.md) {
                r = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        w.path[0] = '\0';
        if (EVP_DigestInit_ex(w.md, EVP_sha256(), NULL) != 1) {
                r = sbx_err_set(err, -EIO, "cannot initialise sha256");
                goto out;
        }
        /* before libarchive looks at the charset: it caches it per archive */
        old = uselocale(utf8);
        w.ar = archive_write_new();
        w.entry = archive_entry_new();
        if (!w.ar || !w.entry) {
                r = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        /* no blocking: the stream ends right after the two zero blocks, and big writes pass unchanged */
        if (archive_write_set_format_pax_restricted(w.ar) != ARCHIVE_OK ||
            archive_write_set_bytes_per_block(w.ar, 0) != ARCHIVE_OK ||
            archive_write_open(w.ar, &w, NULL, stream_write, NULL) != ARCHIVE_OK) {
                r = sbx_err_set(err, -EIO, "cannot set up the tar writer: %s",
                                archive_error_string(w.ar) ? archive_error_string(w.ar) : "unknown error");
                goto out;
        }
        r = walk_root(&w, root_fd);
        if (r < 0)
                goto out;
        if (EVP_DigestFinal_ex(w.md, md, &md_len) != 1 || md_len != 32) {
                r = sbx_err_set(err, -EIO, "cannot finish sha256");
                goto out;
        }
        memset(ret, 0, sizeof *ret);
        memcpy(ret->digest, "sha256:", 7);
        for (unsigned i = 0; i < md_len; i++) {
                ret->digest[7 + 2 * i] = hexd[md[i] >> 4];
                ret->digest[8 + 2 * i] = hexd[md[i] & 15];
        }
        ret->digest[7 + 2 * md_len] = '\0';
        ret->tar_bytes = w.tar_bytes;
        ret->size_bytes = w.size_bytes;
        ret->entries = w.entries;
out:
        /* freeing an unclosed writer writes the trailer: nothing may reach write_fn any more */
        w.stopped = true;
        if (w.ar)
                archive_write_free(w.ar);
        if (w.entry)
                archive_entry_free(w.entry);
        if (old != (locale_t)0)
                uselocale(old);
        EVP_MD_CTX_free(w.md);
        free(w.links.slots);
        free(w.links.names);
        free(w.path);
        free(w.buf);
        free(w.xattrs);
        free(w.out);
        return r;
}
