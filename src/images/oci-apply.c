// SPDX-License-Identifier: Apache-2.0
/*
 * Applies one image layer (a tar stream read through libarchive) into a fresh layer work tree
 * (oci-internal.h). libarchive only reads; the entries are written here relative to directory
 * fds: each entry's parent is opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | ...)
 * from the layer root, so the kernel refuses any path that would leave the layer or go through a
 * symlink (made earlier in the layer or not), and the final component is never followed
 * (O_EXCL, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW). Every mode is set explicitly with fchmod, so the
 * process umask is neither read nor changed, and the working directory is never used (the
 * daemon's threads share both). Whiteout entries are collected and applied after the layer's
 * other entries; directory mtimes are set last. Parents missing from the tar are made here (0755,
 * 0:0, mtime 0) so that importing the same image twice gives the same tree. It does not log.
 */
#include "images/oci-internal.h"

#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"

/* Entries in one layer tar (a full Debian tree has ~100k; the largest public images ~1M). The
 * list of directory mtimes set at the end has at most one item per entry. */
#define APPLY_MAX_ENTRIES (4U << 20)
/* Whiteouts and opaque markers in one layer. */
#define APPLY_MAX_WHITEOUTS (1U << 20)
/* Parent directories the tar does not list, made by us. */
#define APPLY_MAX_IMPLICIT_DIRS (1U << 18)
/* Layer trees hold sandbox-relative ids; anything above maps to the overflow id. */
#define APPLY_ID_RANGE 65536
#define APPLY_OVERFLOW_ID 65534

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define OPAQUE_XATTR "user.overlay.opaque"

/* How every path below the layer root is resolved: no "..", no symlink, no magic link, no
 * mount crossing. */
#define APPLY_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

struct whiteout {
        char *parent; /* relative, "" = root */
        char *name;   /* NULL: the parent is opaque */
};

struct dirset_slot {
        char *path;    /* NULL = free slot */
        bool explicit; /* the tar listed it after we made it: its entry sets its metadata */
};

/* Open-addressing set of the directories we made (paths relative to root). */
struct dirset {
        struct dirset_slot *slots;
        size_t cap; /* power of two, or 0 */
        size_t n;
};

/* A directory entry's mtime, set once everything inside it is written. */
struct dirtime {
        char *path; /* relative to root */
        struct timespec mtime;
};

uint64_t oci__max_layer_bytes = SBX_MAX_LAYER_BYTES;
uint64_t oci__min_free_bytes = SBX_MIN_FREE_BYTES;
uint64_t oci__free_check_bytes = 64ULL << 20;

struct apply {
        uint64_t bytes;       /* apparent size of the files so far */
        uint64_t unchecked;   /* bytes written since the last look at the free space */
        size_t root_len;
        int rootfd; /* owned */
        const char *what;
        struct sbx_err *err;
        struct whiteout *wh; /* owned */
        size_t n_wh, cap_wh;
        struct dirtime *dt; /* owned */
        size_t n_dt, cap_dt;
        struct dirset made;
        int parentfd; /* owned: the last parent directory opened, or -EBADF */
        size_t parent_len;
        char parent[PATH_MAX]; /* its path relative to root (never "": that is rootfd) */
        char rel[PATH_MAX];
        char rel_link[PATH_MAX];
};

int oci__path_clean(const char *in, char *out, size_t size)
{
        const char *p = in;
        size_t n = 0;

        if (size == 0)
                return -ENAMETOOLONG;
        for (;;) {
                const char *s;
                size_t len;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                s = p;
                while (*p && *p != '/')
                        p++;
                len = (size_t)(p - s);
                if (len == 1 && s[0] == '.')
                        continue;
                if (len == 2 && s[0] == '.' && s[1] == '.')
                        return -EINVAL;
                if (n + (n > 0) + len + 1 > size || n + len > INT_MAX / 2)
                        return -ENAMETOOLONG;
                if (n > 0)
                        out[n++] = '/';
                memcpy(out + n, s, len);
                n += len;
        }
        out[n] = '\0';
        return (int)n;
}

static uint64_t hash_str(const char *s)
{
        uint64_t h = 14695981039346656037ULL; /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

static struct dirset_slot *dirset_find(const struct dirset *set, const char *path)
{
        if (set->cap == 0)
                return NULL;
        for (size_t i = hash_str(path) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
                if (!set->slots[i].path)
                        return NULL;
                if (strcmp(set->slots[i].path, path) == 0)
                        return &set->slots[i];
        }
}

static void dirset_place(struct dirset_slot *slots, size_t cap, struct dirset_slot s)
{
        size_t i = hash_str(s.path) & (cap - 1);

        while (slots[i].path)
                i = (i + 1) & (cap - 1);
        slots[i] = s;
}

static int dirset_add(struct dirset *set, const char *path)
{
        char *copy;

        if (dirset_find(set, path))
                return 0;
        if (set->n >= APPLY_MAX_IMPLICIT_DIRS)
                return -E2BIG;
        if ((set->n + 1) * 2 > set->cap) {
                size_t cap = set->cap ? set->cap * 2 : 64;
                struct dirset_slot *slots = calloc(cap, sizeof *slots);

                if (!slots)
                        return -ENOMEM;
                for (size_t i = 0; i < set->cap; i++)
                        if (set->slots[i].path)
                                dirset_place(slots, cap, set->slots[i]);
                free(set->slots);
                set->slots = slots;
                set->cap = cap;
        }
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        dirset_place(set->slots, set->cap, (struct dirset_slot){ .path = copy });
        set->n++;
        return 0;
}

static void apply_free(struct apply *ap)
{
        if (!ap)
                return;
        for (size_t i = 0; i < ap->n_wh; i++) {
                free(ap->wh[i].parent);
                free(ap->wh[i].name);
        }
        free(ap->wh);
        for (size_t i = 0; i < ap->n_dt; i++)
                free(ap->dt[i].path);
        free(ap->dt);
        for (size_t i = 0; i < ap->made.cap; i++)
                free(ap->made.slots[i].path);
        free(ap->made.slots);
        (void)safe_close(ap->parentfd);
        (void)safe_close(ap->rootfd);
        free(ap);
}
DEFINE_FREEP(struct apply, apply_free)

static bool errno_is_host(int e)
{
        /* failures of the host rather than of the archive's content */
        return e == ENOSPC || e == EDQUOT || e == EIO || e == ENOMEM || e == EROFS || e == EMFILE || e == ENFILE ||
               e == EFBIG;
}

static int invalid(struct apply *ap, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* -SBX_E_INVALID, reason invalid_image, message "<what>: <fmt ...>". */
static int invalid(struct apply *ap, const char *fmt, ...)
{
        char msg[SBX_ERR_MSG_MAX];
        va_list va;

        va_start(va, fmt);
        vsnprintf(msg, sizeof msg, fmt, va);
        va_end(va);
        return sbx_err_setr(ap->err, -SBX_E_INVALID, "invalid_image", "%s: %s", ap->what, msg);
}

static int sys_fail(struct apply *ap, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* -e with a message "<what>: <fmt ...>: <strerror(e)>". */
static int sys_fail(struct apply *ap, int e, const char *fmt, ...)
{
        char msg[SBX_ERR_MSG_MAX];
        va_list va;

        va_start(va, fmt);
        vsnprintf(msg, sizeof msg, fmt, va);
        va_end(va);
        return sbx_err_set(ap->err, -e, "%s: %s: %s", ap->what, msg, strerror(e));
}

/* An error reported by the libarchive reader on entry `name`. */
static int archive_fail(struct apply *ap, struct archive *a, const char *name)
{
        int e = archive_errno(a);
        const char *s = oci__archive_error(a);

        if (e > 0 && errno_is_host(e))
                return sbx_err_set(ap->err, -e, "%s: cannot write '%s': %s", ap->what, name, s);
        return sbx_err_setr(ap->err, -SBX_E_INVALID, "invalid_image", "%s: entry '%s': %s", ap->what, name, s);
}

/* A failure of a system call on the current entry: the host's (-e, "cannot <op> '<entry>'") or
 * the archive's (a name that cannot be made: invalid_image). */
static int entry_fail(struct apply *ap, int e, const char *op)
{
        if (errno_is_host(e) || e == EPERM || e == EACCES)
                return sys_fail(ap, e, "cannot %s '%s'", op, ap->rel);
        return invalid(ap, "entry '%s': cannot %s: %s", ap->rel, op, strerror(e));
}

/* openat2(dirfd, rel) confined below dirfd without following any symlink. Returns an fd or
 * -errno (ELOOP: a symlink on the way, EXDEV: it would leave dirfd or cross a mount). */
static int open_beneath(int dirfd, const char *rel, uint64_t flags)
{
        struct open_how how = {
                .flags = flags | O_CLOEXEC,
                .resolve = APPLY_RESOLVE,
        };
        long fd;

        for (int tries = 0;; tries++) {
                fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
                /* EAGAIN: a concurrent rename somewhere; nobody else writes here, but be safe */
                if (fd >= 0 || errno != EAGAIN || tries >= 8)
                        break;
        }
        return fd < 0 ? -errno : (int)fd;
}

/* Make the directories of rel ("" = root) that are missing, one component at a time, each
 * opened again beneath its parent: 0755, 0:0 (not the group of a set-gid parent), remembered
 * for apply_made_times. Returns an fd of rel or -errno. */
static int apply_make_dirs(struct apply *ap, const char *rel)
{
        _cleanup_close_ int fd = -EBADF;
        char comp[NAME_MAX + 1];
        const char *p = rel;

        fd = open_beneath(ap->rootfd, ".", O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return fd;
        while (*p) {
                const char *s = p;
                size_t len;
                int nfd, r;

                while (*p && *p != '/')
                        p++;
                len = (size_t)(p - s);
                if (len == 0 || len > NAME_MAX)
                        return -ENAMETOOLONG;
                memcpy(comp, s, len);
                comp[len] = '\0';
                nfd = open_beneath(fd, comp, O_RDONLY | O_DIRECTORY);
                if (nfd == -ENOENT) {
                        char prefix[PATH_MAX];

                        if (mkdirat(fd, comp, 0755) < 0)
                                return -errno;
                        nfd = open_beneath(fd, comp, O_RDONLY | O_DIRECTORY);
                        if (nfd < 0)
                                return nfd;
                        /* exact owner and mode whatever the umask and the parent's set-gid bit */
                        if (fchown(nfd, 0, 0) < 0 || fchmod(nfd, 0755) < 0) {
                                r = -errno;
                                (void)close(nfd);
                                return r;
                        }
                        memcpy(prefix, rel, (size_t)(p - rel));
                        prefix[p - rel] = '\0';
                        r = dirset_add(&ap->made, prefix);
                        if (r < 0) {
                                (void)close(nfd);
                                return r;
                        }
                }
                if (nfd < 0)
                        return nfd;
                (void)close(fd);
                fd = nfd;
                if (*p == '/')
                        p++;
        }
        return TAKE_FD(fd);
}

/* Open the directory rel ("" = root) beneath the root; with create, missing components are
 * made. Returns an fd or -errno. */
static int apply_open_dir(struct apply *ap, const char *rel, bool create)
{
        int fd = open_beneath(ap->rootfd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY);

        if (fd == -ENOENT && create)
                return apply_make_dirs(ap, rel);
        return fd;
}

static int open_dir_fail(struct apply *ap, int r, const char *rel)
{
        if (r == -ELOOP || r == -ENOTDIR || r == -EXDEV || r == -ENAMETOOLONG || r == -E2BIG)
                return invalid(ap, "'%s' is not a directory inside the layer%s", rel,
                               r == -E2BIG ? " (too many implied directories)" : "");
        return sbx_err_set(ap->err, r, "%s: cannot open directory '%s': %s", ap->what, rel, strerror(-r));
}

static void apply_drop_parent(struct apply *ap)
{
        ap->parentfd = safe_close(ap->parentfd);
        ap->parent_len = 0;
}

/* The directory ap->rel[0..len) as a borrowed fd (made if missing: the tar need not list
 * parents), or a negative error with ap->err filled. Tars list a directory's entries together,
 * so the last one is kept open. */
static int apply_parent(struct apply *ap, size_t len)
{
        int fd;

        if (len == 0)
                return ap->rootfd;
        if (ap->parentfd >= 0 && ap->parent_len == len && memcmp(ap->parent, ap->rel, len) == 0)
                return ap->parentfd;
        apply_drop_parent(ap);
        memcpy(ap->parent, ap->rel, len);
        ap->parent[len] = '\0';
        fd = apply_open_dir(ap, ap->parent, true);
        if (fd < 0)
                return open_dir_fail(ap, fd, ap->parent);
        ap->parentfd = fd;
        ap->parent_len = len;
        return fd;
}

/* The name base in dirfd is in the way of a new entry (a later entry for the same name wins):
 * remove it, a directory only if it is empty. Returns 0 or -errno. */
static int remove_existing(int dirfd, const char *base)
{
        if (unlinkat(dirfd, base, 0) == 0)
                return 0;
        if (errno == EISDIR && unlinkat(dirfd, base, AT_REMOVEDIR) == 0)
                return 0;
        return -errno;
}

/* Remove what is in the way after an EEXIST, or fail for the entry. */
static int apply_replace(struct apply *ap, int dirfd, const char *base)
{
        int r = remove_existing(dirfd, base);

        if (r == -ENOTEMPTY || r == -EEXIST)
                return invalid(ap, "entry '%s' would replace a directory that is not empty", ap->rel);
        if (r < 0)
                return entry_fail(ap, -r, "replace");
        return 0;
}

struct meta {
        uid_t uid;
        gid_t gid;
        mode_t perm;              /* mode & 07777 */
        struct timespec times[2]; /* atime = mtime */
};

static void entry_meta(struct archive_entry *e, struct meta *m)
{
        la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        long nsec = archive_entry_mtime_nsec(e);

        /* no name lookups: the ids are the layer's, never the host's */
        m->uid = uid < 0 || uid >= APPLY_ID_RANGE ? APPLY_OVERFLOW_ID : (uid_t)uid;
        m->gid = gid < 0 || gid >= APPLY_ID_RANGE ? APPLY_OVERFLOW_ID : (gid_t)gid;
        m->perm = archive_entry_perm(e) & 07777;
        m->times[1].tv_sec = archive_entry_mtime(e);
        m->times[1].tv_nsec = nsec >= 0 && nsec < 1000000000L ? nsec : 0;
        m->times[0] = m->times[1];
}

/* Owner, then mode (chown clears the set-id bits), then times, of an open file. */
static int apply_meta_fd(struct apply *ap, int fd, const struct meta *m, bool times)
{
        if (fchown(fd, m->uid, m->gid) < 0)
                return entry_fail(ap, errno, "set the owner of");
        if (fchmod(fd, m->perm) < 0)
                return entry_fail(ap, errno, "set the mode of");
        if (times && futimens(fd, m->times) < 0)
                return entry_fail(ap, errno, "set the times of");
        return 0;
}

/* Write the entry's data into fd at the offsets the archive gives (holes of sparse files are
 * skipped), then extend it to size. */
/* Keep SBX_MIN_FREE_BYTES free on the templates disk: a layer that would eat into it fails with
 * ENOSPC (and its work dir is removed) before sandboxes and builds on the same disk notice. */
static int apply_check_space(struct apply *ap, size_t written)
{
        struct statvfs sv;

        ap->unchecked += written;
        if (ap->unchecked < oci__free_check_bytes)
                return 0;
        ap->unchecked = 0;
        if (fstatvfs(ap->rootfd, &sv) < 0)
                return 0; /* nothing to go by: the writes will say ENOSPC themselves */
        if ((uint64_t)sv.f_bavail * sv.f_frsize < oci__min_free_bytes)
                return sys_fail(ap, ENOSPC, "cannot unpack '%s': the templates disk is down to %llu MiB free",
                                ap->rel, (unsigned long long)((uint64_t)sv.f_bavail * sv.f_frsize >> 20));
        return 0;
}

/* Count an entry's apparent size against the layer's bound. */
static int apply_count_bytes(struct apply *ap, la_int64_t size)
{
        if (size < 0 || (uint64_t)size > oci__max_layer_bytes - ap->bytes)
                return invalid(ap, "the layer holds more than %llu bytes of files (at '%s')",
                               (unsigned long long)oci__max_layer_bytes, ap->rel);
        ap->bytes += (uint64_t)size;
        return 0;
}

static int apply_data(struct apply *ap, struct archive *in, int fd, la_int64_t size)
{
        la_int64_t end = 0;
        int q;

        q = apply_count_bytes(ap, size);
        if (q < 0)
                return q;

        for (;;) {
                const void *buf;
                const char *p;
                size_t n;
                la_int64_t off;
                int r;

                r = archive_read_data_block(in, &buf, &n, &off);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return archive_fail(ap, in, ap->rel);
                if (off < 0 || n > (size_t)(INT64_MAX - off))
                        return invalid(ap, "entry '%s' has data at a bad offset", ap->rel);
                for (p = buf; n > 0;) {
                        ssize_t w = pwrite(fd, p, n, (off_t)off);

                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                return sys_fail(ap, w < 0 ? errno : EIO, "cannot write '%s'", ap->rel);
                        p += w;
                        n -= (size_t)w;
                        off += w;
                        q = apply_check_space(ap, (size_t)w);
                        if (q < 0)
                                return q;
                }
                if (off > end)
                        end = off;
        }
        if (end < size && ftruncate(fd, (off_t)size) < 0)
                return sys_fail(ap, errno, "cannot write '%s'", ap->rel);
        return 0;
}

static int apply_file(struct apply *ap, struct archive *in, struct archive_entry *e, int dirfd, const char *base)
{
        _cleanup_close_ int fd = -EBADF;
        struct meta m;
        int r;

        for (int tries = 0;; tries++) {
                fd = openat(dirfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || tries > 0)
                        return entry_fail(ap, errno, "create");
                r = apply_replace(ap, dirfd, base);
                if (r < 0)
                        return r;
        }
        r = apply_data(ap, in, fd, archive_entry_size(e));
        if (r < 0)
                return r;
        entry_meta(e, &m);
        return apply_meta_fd(ap, fd, &m, true);
}

static int apply_dir(struct apply *ap, struct archive_entry *e, int dirfd, const char *base)
{
        _cleanup_close_ int fd = -EBADF;
        struct dirtime *t;
        struct meta m;
        int r;

        if (mkdirat(dirfd, base, 0700) < 0) {
                struct stat st;

                if (errno != EEXIST)
                        return entry_fail(ap, errno, "make directory");
                if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return entry_fail(ap, errno, "stat");
                if (!S_ISDIR(st.st_mode)) {
                        r = apply_replace(ap, dirfd, base);
                        if (r < 0)
                                return r;
                        if (mkdirat(dirfd, base, 0700) < 0)
                                return entry_fail(ap, errno, "make directory");
                }
        }
        fd = open_beneath(dirfd, base, O_RDONLY | O_DIRECTORY);
        if (fd < 0)
                return entry_fail(ap, -fd, "open directory");
        entry_meta(e, &m);
        r = apply_meta_fd(ap, fd, &m, false);
        if (r < 0)
                return r;

        /* its mtime once everything inside it is written */
        if (ap->n_dt == ap->cap_dt) {
                size_t cap = ap->cap_dt ? ap->cap_dt * 2 : 64;
                struct dirtime *dt = reallocarray(ap->dt, cap, sizeof *dt);

                if (!dt)
                        return sbx_err_set(ap->err, -ENOMEM, "out of memory");
                ap->dt = dt;
                ap->cap_dt = cap;
        }
        t = &ap->dt[ap->n_dt];
        t->path = strdup(ap->rel);
        if (!t->path)
                return sbx_err_set(ap->err, -ENOMEM, "out of memory");
        t->mtime = m.times[1];
        ap->n_dt++;

        /* the entries that follow are most likely inside it */
        apply_drop_parent(ap);
        ap->parent_len = strlen(ap->rel);
        memcpy(ap->parent, ap->rel, ap->parent_len + 1);
        ap->parentfd = TAKE_FD(fd);
        return 0;
}

static int apply_symlink(struct apply *ap, struct archive_entry *e, int dirfd, const char *base)
{
        const char *target = archive_entry_symlink(e);
        struct meta m;
        int r;

        if (!target || !*target)
                return invalid(ap, "symlink '%s' has no target", ap->rel);
        /* the target is stored as it is and never resolved here */
        for (int tries = 0;; tries++) {
                if (symlinkat(target, dirfd, base) == 0)
                        break;
                if (errno != EEXIST || tries > 0)
                        return entry_fail(ap, errno, "create symlink");
                r = apply_replace(ap, dirfd, base);
                if (r < 0)
                        return r;
        }
        entry_meta(e, &m);
        if (fchownat(dirfd, base, m.uid, m.gid, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_fail(ap, errno, "set the owner of");
        if (utimensat(dirfd, base, m.times, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_fail(ap, errno, "set the times of");
        return 0;
}

/* FIFOs and device nodes. */
static int apply_node(struct apply *ap, struct archive_entry *e, mode_t type, int dirfd, const char *base)
{
        struct meta m;
        int r;

        for (int tries = 0;; tries++) {
                if (mknodat(dirfd, base, type | 0600, archive_entry_rdev(e)) == 0)
                        break;
                if (errno != EEXIST || tries > 0)
                        return entry_fail(ap, errno, "create");
                r = apply_replace(ap, dirfd, base);
                if (r < 0)
                        return r;
        }
        entry_meta(e, &m);
        if (fchownat(dirfd, base, m.uid, m.gid, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_fail(ap, errno, "set the owner of");
        /* AT_SYMLINK_NOFOLLOW for chmod needs fchmodat2 (Linux 6.6) or /proc in glibc; without
         * them, the node made just above is what the name holds */
        if (fchmodat(dirfd, base, m.perm, AT_SYMLINK_NOFOLLOW) < 0 &&
            ((errno != EOPNOTSUPP && errno != ENOSYS) || fchmodat(dirfd, base, m.perm, 0) < 0))
                return entry_fail(ap, errno, "set the mode of");
        if (utimensat(dirfd, base, m.times, AT_SYMLINK_NOFOLLOW) < 0)
                return entry_fail(ap, errno, "set the times of");
        return 0;
}

/* A hard link to ap->rel_link, which must be a non-directory already in this layer, reached
 * without a symlink. pax lets a hard link carry the data of the file it links to. */
static int apply_hardlink(struct apply *ap, struct archive *in, struct archive_entry *e, int dirfd, const char *base)
{
        _cleanup_close_ int target = -EBADF;
        struct stat st;
        int r;

        target = open_beneath(ap->rootfd, ap->rel_link, O_PATH | O_NOFOLLOW);
        if (target < 0 && errno_is_host(-target))
                return sys_fail(ap, -target, "cannot open '%s'", ap->rel_link);
        if (target < 0 || fstat(target, &st) < 0 || S_ISDIR(st.st_mode))
                goto not_a_file;
        for (int tries = 0;; tries++) {
                if (linkat(target, "", dirfd, base, AT_EMPTY_PATH) == 0)
                        break;
                if (errno == ENOENT) /* it was the name replaced just below */
                        goto not_a_file;
                if (errno != EEXIST || tries > 0)
                        return entry_fail(ap, errno, "link");
                r = apply_replace(ap, dirfd, base);
                if (r < 0)
                        return r;
        }
        if (archive_entry_size(e) > 0) {
                _cleanup_close_ int fd = -EBADF;
                struct meta m;

                fd = openat(dirfd, base, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0)
                        return entry_fail(ap, errno, "open");
                r = apply_data(ap, in, fd, archive_entry_size(e));
                if (r < 0)
                        return r;
                entry_meta(e, &m);
                return apply_meta_fd(ap, fd, &m, true);
        }
        return 0;

not_a_file:
        return invalid(ap, "hard link '%s' to '%s' does not name a file earlier in the layer", ap->rel, ap->rel_link);
}

static int apply_note_whiteout(struct apply *ap, const char *base, size_t parent_len)
{
        struct whiteout w = {};
        const char *name = NULL;

        if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
                /* the parent (the layer root too) becomes opaque */
        } else if (strncmp(base, WHITEOUT_META_PREFIX, strlen(WHITEOUT_META_PREFIX)) == 0) {
                return 0; /* aufs bookkeeping (.wh..wh.plnk, ...), meaningless here */
        } else {
                name = base + strlen(WHITEOUT_PREFIX);
                if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        return invalid(ap, "whiteout '%s' names nothing", ap->rel);
        }
        if (ap->n_wh >= APPLY_MAX_WHITEOUTS)
                return invalid(ap, "more than %u whiteouts", APPLY_MAX_WHITEOUTS);
        if (ap->n_wh == ap->cap_wh) {
                size_t cap = ap->cap_wh ? ap->cap_wh * 2 : 16;
                struct whiteout *wh = reallocarray(ap->wh, cap, sizeof *wh);

                if (!wh)
                        return sbx_err_set(ap->err, -ENOMEM, "out of memory");
                ap->wh = wh;
                ap->cap_wh = cap;
        }
        w.parent = strndup(ap->rel, parent_len);
        w.name = name ? strdup(name) : NULL;
        if (!w.parent || (name && !w.name)) {
                free(w.parent);
                free(w.name);
                return sbx_err_set(ap->err, -ENOMEM, "out of memory");
        }
        ap->wh[ap->n_wh++] = w;
        return 0;
}

static int apply_entry(struct apply *ap, struct archive *in, struct archive_entry *e)
{
        const char *name = archive_entry_pathname(e);
        const char *link = archive_entry_hardlink(e);
        mode_t type = archive_entry_filetype(e);
        const char *base;
        size_t len, parent_len;
        int dirfd, n;

        if (!name)
                return invalid(ap, "an entry has no name");
        n = oci__path_clean(name, ap->rel, sizeof ap->rel);
        if (n == -EINVAL)
                return invalid(ap, "entry '%s' leaves the layer", name);
        /* the root's length counted as before: the tree is also walked by absolute paths */
        if (n < 0 || ap->root_len + 1 + (size_t)n >= PATH_MAX)
                return invalid(ap, "entry name '%.128s...' is too long", name);
        if (n == 0) {
                if (type == AE_IFDIR && !link)
                        return 0; /* "./": the root is ours (0755, 0:0) */
                return invalid(ap, "entry '%s' has an empty name", name);
        }
        len = (size_t)n;

        base = strrchr(ap->rel, '/');
        parent_len = base ? (size_t)(base - ap->rel) : 0;
        base = base ? base + 1 : ap->rel;
        if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
                return apply_note_whiteout(ap, base, parent_len);
        /* Device nodes are kept (Debian trees carry /dev/null & co.; layer trees must round-trip
         * to the same digest): sandboxes mount every layer nodev, and the store dir is 0700. A
         * char 0/0 is a whiteout to overlayfs, as its ".wh." name would be. Sockets are skipped.
         * A hard link's own type is whatever the tar writer left in its mode bits: often none. */
        if (!link && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO &&
            type != AE_IFCHR && type != AE_IFBLK)
                return 0;

        if (link) {
                n = oci__path_clean(link, ap->rel_link, sizeof ap->rel_link);
                if (n <= 0)
                        return invalid(ap, "hard link '%s' to '%s' leaves the layer", ap->rel, link);
                if (ap->root_len + 1 + (size_t)n >= PATH_MAX)
                        return invalid(ap, "hard link target '%.128s...' is too long", link);
        }
        if (type == AE_IFDIR && !link && ap->made.n > 0) {
                struct dirset_slot *s = dirset_find(&ap->made, ap->rel);

                if (s)
                        s->explicit = true;
        }
        /* this entry may replace the directory kept open (or one of its ancestors) */
        if (ap->parentfd >= 0 && ap->parent_len >= len && memcmp(ap->parent, ap->rel, len) == 0 &&
            (ap->parent[len] == '\0' || ap->parent[len] == '/'))
                apply_drop_parent(ap);
        dirfd = apply_parent(ap, parent_len);
        if (dirfd < 0)
                return dirfd;

        if (link)
                return apply_hardlink(ap, in, e, dirfd, base);
        switch (type) {
        case AE_IFREG:
                return apply_file(ap, in, e, dirfd, base);
        case AE_IFDIR:
                return apply_dir(ap, e, dirfd, base);
        case AE_IFLNK:
                return apply_symlink(ap, e, dirfd, base);
        case AE_IFIFO:
                return apply_node(ap, e, S_IFIFO, dirfd, base);
        case AE_IFCHR:
                return apply_node(ap, e, S_IFCHR, dirfd, base);
        default:
                return apply_node(ap, e, S_IFBLK, dirfd, base);
        }
}

/* After the layer's entries: whiteouts (unless the layer also has the name) and opaque marks. */
static int apply_whiteouts(struct apply *ap)
{
        for (size_t i = 0; i < ap->n_wh; i++) {
                const struct whiteout *w = &ap->wh[i];
                _cleanup_close_ int fd = -EBADF;
                struct stat st;

                fd = apply_open_dir(ap, w->parent, true);
                if (fd < 0)
                        return open_dir_fail(ap, fd, w->parent);
                if (!w->name) {
                        if (fsetxattr(fd, OPAQUE_XATTR, "y", 1, 0) < 0)
                                return sys_fail(ap, errno, "cannot mark '%s' opaque", w->parent);
                        continue;
                }
                if (fstatat(fd, w->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        continue;
                if (errno != ENOENT)
                        return sys_fail(ap, errno, "cannot stat '%s/%s'", w->parent, w->name);
                if (mknodat(fd, w->name, S_IFCHR | 0, makedev(0, 0)) < 0 && errno != EEXIST)
                        return sys_fail(ap, errno, "cannot make whiteout '%s/%s'", w->parent, w->name);
                /* 0:0 even in a set-gid directory */
                if (fchownat(fd, w->name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
                        return sys_fail(ap, errno, "cannot make whiteout '%s/%s'", w->parent, w->name);
        }
        return 0;
}

/* The listed directories' mtimes, after everything inside them (whiteouts too) was written; for
 * a directory listed twice the later entry wins. */
static int apply_dir_times(struct apply *ap)
{
        for (size_t i = 0; i < ap->n_dt; i++) {
                const struct dirtime *t = &ap->dt[i];
                const struct timespec times[2] = { t->mtime, t->mtime };
                int fd;

                fd = apply_open_dir(ap, t->path, false);
                if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP)
                        continue; /* replaced by a later entry */
                if (fd < 0)
                        return open_dir_fail(ap, fd, t->path);
                if (futimens(fd, times) < 0) {
                        int e = errno;

                        (void)close(fd);
                        return sys_fail(ap, e, "cannot set the times of '%s'", t->path);
                }
                (void)close(fd);
        }
        return 0;
}

/* Directories we made and the tar never listed get mtime 0, after everything inside them is
 * written (the same image imported twice must give the same layer digest). */
static void apply_made_times(struct apply *ap)
{
        static const struct timespec zero[2] = { { 0, 0 }, { 0, 0 } };

        for (size_t i = 0; i < ap->made.cap; i++) {
                const struct dirset_slot *s = &ap->made.slots[i];
                int fd;

                if (!s->path || s->explicit)
                        continue;
                fd = apply_open_dir(ap, s->path, false);
                if (fd < 0)
                        continue; /* replaced by a later entry: not ours any more */
                (void)futimens(fd, zero);
                (void)close(fd);
        }
}

int oci__apply_layer(struct archive *in, const char *root, const char *what, struct sbx_err *err)
{
        _cleanup_(apply_freep) struct apply *ap = NULL;
        uint64_t n = 0;
        int r;

        ap = calloc(1, sizeof *ap);
        if (!ap)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        ap->rootfd = -EBADF;
        ap->parentfd = -EBADF;
        ap->root_len = strlen(root);
        ap->what = what;
        ap->err = err;
        ap->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ap->rootfd < 0)
                return sbx_err_set(err, -errno, "cannot open '%s': %s", root, strerror(errno));

        for (;;) {
                struct archive_entry *e;

                r = archive_read_next_header(in, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN) /* ARCHIVE_WARN: e.g. a name not in this locale; still usable */
                        return archive_fail(ap, in, "(header)");
                if (++n > APPLY_MAX_ENTRIES)
                        return invalid(ap, "more than %u entries", APPLY_MAX_ENTRIES);
                r = apply_entry(ap, in, e);
                if (r < 0)
                        return r;
        }
        apply_drop_parent(ap);
        r = apply_whiteouts(ap);
        if (r < 0)
                return r;
        r = apply_dir_times(ap);
        if (r < 0)
                return r;
        apply_made_times(ap);
        return 0;
}
