// SPDX-License-Identifier: Apache-2.0
/*
 * Directory watchers (files.h, "watchers"): one inotify instance per watch, one inotify watch per
 * followed directory, events turned into add / change / unlink / addDir / unlinkDir with absolute
 * paths inside the root. No host path string ever reaches the kernel: the watched directory is
 * opened with files_open (RESOLVE_IN_ROOT), everything below it with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) from that fd or openat(O_NOFOLLOW) from a parent fd, and inotify is pointed at
 * /proc/self/fd/N. Directories on pseudo filesystems (a sandbox's /proc, /sys) are not followed.
 * Content is read only from regular files, checked on an O_PATH fd before they are opened (a FIFO
 * or a device is never opened). Must not log, and must not keep a fd per watched directory: a tree
 * of SBX_MAX_WATCH_DIRS directories would exhaust the daemon's RLIMIT_NOFILE; each directory is
 * remembered as (wd, parent wd, name) and reopened by its relative path when needed. Not even the
 * watched directory stays open between calls: an open fd would hold its dentry, and the kernel
 * sends IN_DELETE_SELF for a removed directory only once the last reference is gone (seen on 6.18),
 * so the end of the watch would never be noticed. The watch keeps a duplicate of the root fd and
 * resolves the watched path again (checking it is still the same directory) when it needs it.
 *
 * Limits: the initial tree must fit SBX_MAX_WATCH_DIRS directories, SBX_MAX_FS_DEPTH levels and
 * SBX_MAX_FS_WALK entries (else too_many_entries). Directories created later beyond those limits
 * are reported (addDir) but not followed: nothing is reported from inside them. Paths longer than
 * SBX_MAX_FILE_PATH are not reported. An inotify queue overflow (IN_Q_OVERFLOW: events were lost)
 * is reported as one FILES_EV_OVERFLOW event with the watched path; the watch goes on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "files.h"

/*
 * IN_ATTRIB is noise (chmod, touch, link counts). IN_DONT_FOLLOW must not be set: the watch is
 * added through the /proc/self/fd/N magic link, which IN_DONT_FOLLOW would watch instead of the
 * directory it points at (IN_ONLYDIR then fails with ENOTDIR); the fd itself was opened without
 * following a symlink.
 */
#define WATCH_MASK                                                                                           \
        (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | \
         IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK)
#define WATCH_READ_BUF (64 * 1024)
/* Reads per files_watch_read (1 MiB of events): a busy writer cannot keep the caller's loop here;
 * the fd stays readable and the caller comes back. */
#define WATCH_READS_PER_CALL 16
#define WATCH_CONTENT_MIN 4096         /* first size of the content buffer */
#define WATCH_CONTENT_KEEP (64 * 1024) /* a bigger content buffer is freed after its event */
#define WATCH_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

struct watch_dir {
        int wd;
        int parent; /* wd of the directory holding it; -1 for the watched directory */
        bool dead;  /* scratch mark while a moved-away subtree is dropped */
        char *name; /* its name in the parent ("" for the watched directory) */
};

struct files_watch {
        int ifd;                /* inotify instance (owned) */
        struct files_root root; /* root.fd: a duplicate of the caller's root fd (owned) */
        int topfd;              /* O_PATH fd of the watched directory during one call, else -EBADF */
        dev_t top_dev;          /* the watched directory's identity */
        ino_t top_ino;
        int top_wd;
        bool recursive;
        bool gone; /* the watched directory was removed or moved: every read answers -ENOENT */
        enum files_watch_content content;
        size_t max_content;
        char **ignore;
        size_t n_ignore;
        struct watch_dir *dirs; /* sorted by wd */
        size_t n_dirs, cap_dirs;
        char *buf; /* content of the event being delivered, NUL-terminated */
        size_t buf_cap;
        bool has_last; /* the last event reported by this read (change coalescing) */
        enum files_event_type last_type;
        char base[SBX_MAX_FILE_PATH + 2]; /* normalised watched path, "" for "/" */
        char rel[SBX_MAX_FILE_PATH + 2];  /* the entry at hand, relative to the watched directory */
        char full[SBX_MAX_FILE_PATH + 2]; /* base + "/" + rel */
        char last[SBX_MAX_FILE_PATH + 2];
        char events[WATCH_READ_BUF] __attribute__((aligned(__alignof__(struct inotify_event))));
};

/* One walk of a directory tree: the initial one (nothing is reported, limits are errors) or one
 * for a directory that appeared (reports what is inside to cb, stops quietly at the limits). */
struct walk {
        struct files_watch *w;
        bool initial;
        void (*cb)(void *data, const struct files_event *ev);
        void *data;
        size_t visited;
        struct sbx_err *err;
        const char *path; /* the watched path as the caller gave it, for messages */
};

static const char *const event_names[] = {
        [FILES_EV_ADD] = "add",        [FILES_EV_CHANGE] = "change",        [FILES_EV_UNLINK] = "unlink",
        [FILES_EV_ADD_DIR] = "addDir", [FILES_EV_UNLINK_DIR] = "unlinkDir", [FILES_EV_OVERFLOW] = "overflow",
};

const char *files_event_type_to_string(enum files_event_type t)
{
        if ((unsigned)t >= ELEMENTSOF(event_names))
                return NULL;
        return event_names[t];
}

static int openat2_beneath(int dirfd, const char *path, uint64_t flags)
{
        struct open_how how = {
                .flags = flags | O_NOFOLLOW | O_CLOEXEC,
                .resolve = WATCH_RESOLVE,
        };

        for (int i = 0; i < 8; i++) {
                int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
                if (fd >= 0)
                        return fd;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
        return -EAGAIN;
}

/*
 * The watched directory, opened for this call (closed by top_close): resolved again from the root,
 * and only if it is still the directory the watch was started on. -errno when it is not.
 */
static int top_fd(struct files_watch *w)
{
        struct stat st;
        int fd = -EBADF, q;

        if (w->topfd >= 0)
                return w->topfd;
        q = files_open(&w->root, w->base[0] ? w->base : "/", O_PATH, &fd, NULL);
        if (q < 0)
                return q;
        if (fstat(fd, &st) < 0 || st.st_dev != w->top_dev || st.st_ino != w->top_ino) {
                (void)close(fd);
                return -ESTALE;
        }
        w->topfd = fd;
        return fd;
}

static void top_close(struct files_watch *w)
{
        w->topfd = safe_close(w->topfd);
}

/* ---------- the wd map ---------- */

static size_t dir_pos(const struct files_watch *w, int wd)
{
        size_t lo = 0, hi = w->n_dirs;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (w->dirs[mid].wd < wd)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static struct watch_dir *dir_find(const struct files_watch *w, int wd)
{
        size_t i = dir_pos(w, wd);

        return i < w->n_dirs && w->dirs[i].wd == wd ? &w->dirs[i] : NULL;
}

/* -EEXIST when wd is known already (the same directory reached twice). */
static int dir_add(struct files_watch *w, int wd, int parent, const char *name)
{
        size_t i = dir_pos(w, wd);
        char *copy;

        if (i < w->n_dirs && w->dirs[i].wd == wd)
                return -EEXIST;
        if (w->n_dirs >= SBX_MAX_WATCH_DIRS)
                return -E2BIG;
        if (w->n_dirs == w->cap_dirs) {
                size_t cap = w->cap_dirs ? w->cap_dirs * 2 : 64;
                struct watch_dir *d;

                if (cap > SBX_MAX_WATCH_DIRS)
                        cap = SBX_MAX_WATCH_DIRS;
                d = reallocarray(w->dirs, cap, sizeof *d);
                if (!d)
                        return -ENOMEM;
                w->dirs = d;
                w->cap_dirs = cap;
        }
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        memmove(w->dirs + i + 1, w->dirs + i, (w->n_dirs - i) * sizeof *w->dirs);
        w->dirs[i] = (struct watch_dir){ .wd = wd, .parent = parent, .name = copy };
        w->n_dirs++;
        return 0;
}

static void dir_drop(struct files_watch *w, size_t i)
{
        free(w->dirs[i].name);
        memmove(w->dirs + i, w->dirs + i + 1, (w->n_dirs - i - 1) * sizeof *w->dirs);
        w->n_dirs--;
}

/*
 * The path of directory wd relative to the watched directory ("" for it, "a/b") into buf; its
 * depth (0 for the watched directory) into *ret_depth. Returns the length, -ENOENT when wd (or one
 * of its parents) is not known, -ENAMETOOLONG, -ELOOP.
 */
static int dir_rel(const struct files_watch *w, int wd, char *buf, size_t size, unsigned *ret_depth)
{
        const char *names[SBX_MAX_FS_DEPTH + 1];
        const struct watch_dir *d = dir_find(w, wd);
        unsigned depth = 0;
        size_t n = 0;

        while (d && d->parent >= 0) {
                if (depth == ELEMENTSOF(names))
                        return -ELOOP;
                names[depth++] = d->name;
                d = dir_find(w, d->parent);
        }
        if (!d)
                return -ENOENT;
        for (unsigned i = depth; i-- > 0;) {
                size_t l = strlen(names[i]);

                if (n + l + 2 > size)
                        return -ENAMETOOLONG;
                if (n)
                        buf[n++] = '/';
                memcpy(buf + n, names[i], l);
                n += l;
        }
        buf[n] = '\0';
        *ret_depth = depth;
        return (int)n;
}

/*
 * The directory name in directory parent was moved away: stop watching it and everything below
 * (if it went to another place inside the watched tree, IN_MOVED_TO watches it again under its new
 * name). Children normally have bigger wds than their parents (wds grow), so one pass marks the
 * whole subtree; more passes catch the exceptions.
 */
static void dir_forget_subtree(struct files_watch *w, int parent, const char *name)
{
        bool changed = false;
        size_t j = 0;

        for (size_t i = 0; i < w->n_dirs; i++)
                if (w->dirs[i].parent == parent && strcmp(w->dirs[i].name, name) == 0)
                        changed = w->dirs[i].dead = true;
        for (unsigned pass = 0; changed && pass <= SBX_MAX_FS_DEPTH; pass++) {
                changed = false;
                for (size_t i = 0; i < w->n_dirs; i++) {
                        const struct watch_dir *p;

                        if (w->dirs[i].dead || w->dirs[i].parent < 0)
                                continue;
                        p = dir_find(w, w->dirs[i].parent);
                        if (p && p->dead)
                                changed = w->dirs[i].dead = true;
                }
        }
        for (size_t i = 0; i < w->n_dirs; i++) {
                if (w->dirs[i].dead) {
                        /* its IN_IGNORED comes later and finds nothing to forget */
                        (void)inotify_rm_watch(w->ifd, w->dirs[i].wd);
                        free(w->dirs[i].name);
                        continue;
                }
                w->dirs[j++] = w->dirs[i];
        }
        w->n_dirs = j;
}

/* ---------- paths, globs, content ---------- */

/* w->rel = w->rel[0..rlen) + "/" + name. Returns the new length or -ENAMETOOLONG. */
static int rel_append(struct files_watch *w, size_t rlen, const char *name)
{
        size_t l = strlen(name);

        if (rlen + l + 2 > SBX_MAX_FILE_PATH)
                return -ENAMETOOLONG;
        if (rlen)
                w->rel[rlen++] = '/';
        memcpy(w->rel + rlen, name, l + 1);
        return (int)(rlen + l);
}

static bool ignored(const struct files_watch *w, const char *rel)
{
        const char *base = strrchr(rel, '/');

        base = base ? base + 1 : rel;
        for (size_t i = 0; i < w->n_ignore; i++)
                if (fnmatch(w->ignore[i], rel, 0) == 0 || fnmatch(w->ignore[i], base, 0) == 0)
                        return true;
        return false;
}

static int buf_reserve(struct files_watch *w, size_t size)
{
        char *b;

        if (w->buf_cap >= size)
                return 0;
        b = realloc(w->buf, size);
        if (!b)
                return -ENOMEM;
        w->buf = b;
        w->buf_cap = size;
        return 0;
}

/*
 * Read the regular file path (beneath dirfd) into w->buf, at most max_content bytes. NULL when it
 * is not a regular file (a FIFO, a device, a symlink: never opened), is on a pseudo filesystem, or
 * cannot be read (gone already).
 */
static const char *read_content(struct files_watch *w, int dirfd, const char *path, size_t *ret_len,
                                bool *ret_truncated)
{
        _cleanup_close_ int pfd = -EBADF, fd = -EBADF;
        char proc[64];
        struct stat st;
        size_t len = 0, cap;

        if (dirfd < 0)
                return NULL;
        pfd = openat2_beneath(dirfd, path, O_PATH);
        if (pfd < 0 || fstat(pfd, &st) < 0 || !S_ISREG(st.st_mode) || files_check_fs(pfd, path, NULL) < 0)
                return NULL;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
        fd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        cap = (size_t)st.st_size < w->max_content ? (size_t)st.st_size : w->max_content;
        if (cap < WATCH_CONTENT_MIN)
                cap = WATCH_CONTENT_MIN < w->max_content ? WATCH_CONTENT_MIN : w->max_content;
        if (buf_reserve(w, cap + 1) < 0)
                return NULL;
        *ret_truncated = false;
        for (;;) {
                size_t lim;
                ssize_t n;

                if (len >= w->max_content) {
                        char c;

                        /* full: one more byte tells whether there was more */
                        do
                                n = read(fd, &c, 1);
                        while (n < 0 && errno == EINTR);
                        *ret_truncated = n > 0;
                        break;
                }
                if (len == w->buf_cap - 1) {
                        cap = 2 * len < w->max_content ? 2 * len : w->max_content;
                        if (buf_reserve(w, cap + 1) < 0)
                                return NULL;
                }
                lim = w->buf_cap - 1 < w->max_content ? w->buf_cap - 1 : w->max_content;
                n = read(fd, w->buf + len, lim - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return NULL;
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        w->buf[len] = '\0';
        *ret_len = len;
        return w->buf;
}

/*
 * Report the entry w->rel. For add/change with content requested, path (beneath dirfd) opens the
 * file. A change right after an add or change of the same path in this read is dropped: its
 * content was read after both happened.
 */
static void emit(struct walk *k, enum files_event_type type, int dirfd, const char *path)
{
        struct files_watch *w = k->w;
        struct files_event ev = { .type = type, .path = w->full };
        int n;

        if (k->initial || !k->cb)
                return;
        n = snprintf(w->full, sizeof w->full, "%s/%s", w->base, w->rel);
        if (n < 0 || n > SBX_MAX_FILE_PATH)
                return; /* no API path can name it */
        if (type == FILES_EV_CHANGE && w->has_last &&
            (w->last_type == FILES_EV_ADD || w->last_type == FILES_EV_CHANGE) && strcmp(w->last, w->full) == 0)
                return;
        if ((type == FILES_EV_ADD || type == FILES_EV_CHANGE) && w->content != FILES_CONTENT_NONE)
                ev.content = read_content(w, dirfd, path, &ev.len, &ev.truncated);
        memcpy(w->last, w->full, (size_t)n + 1);
        w->last_type = type;
        w->has_last = true;
        k->cb(k->data, &ev);
        if (w->buf_cap > WATCH_CONTENT_KEEP) {
                free(w->buf);
                w->buf = NULL;
                w->buf_cap = 0;
        }
}

/* ---------- walks ---------- */

static int walk_limit(struct walk *k, const char *what, int max)
{
        return sbx_err_setr(k->err, -SBX_E_LIMIT, "too_many_entries", "'%s' has more than %d %s to watch", k->path, max,
                            what);
}

static int add_watch(struct files_watch *w, int fd)
{
        char proc[64];
        int wd;

        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
        return wd < 0 ? -errno : wd;
}

static int walk_dir(struct walk *k, int dfd, int wd, size_t rlen, unsigned depth);

/*
 * Watch the directory open_path (beneath dirfd) as (parent_wd, name), at depth, whose relative
 * path is w->rel[0..rlen), then list it. A directory that vanished or turned into something else
 * meanwhile is skipped (its removal is reported by its parent); so is one on a pseudo filesystem.
 * Returns 0 or a negative code; from a later (not initial) walk, -SBX_E_LIMIT means "stop quietly".
 */
static int watch_dir(struct walk *k, int dirfd, const char *open_path, const char *name, int parent_wd, size_t rlen,
                     unsigned depth)
{
        struct files_watch *w = k->w;
        _cleanup_close_ int pfd = -EBADF;
        int wd, dfd, r;

        if (depth > SBX_MAX_FS_DEPTH)
                return k->initial ? walk_limit(k, "directory levels", SBX_MAX_FS_DEPTH) : 0;
        if (w->n_dirs >= SBX_MAX_WATCH_DIRS)
                return k->initial ? walk_limit(k, "directories", SBX_MAX_WATCH_DIRS) : 0;
        if (dirfd < 0)
                return 0; /* the watched directory is gone: the end of the watch is on its way */
        pfd = openat2_beneath(dirfd, open_path, O_PATH | O_DIRECTORY);
        if (pfd < 0)
                return 0;
        if (files_check_fs(pfd, open_path, NULL) < 0)
                return 0;
        wd = add_watch(w, pfd);
        if (wd == -ENOSPC)
                return sbx_err_set(k->err, -ENOSPC, "cannot watch '%s': the inotify watch limit was reached", k->path);
        if (wd < 0)
                return 0;
        r = dir_add(w, wd, parent_wd, name);
        if (r == -EEXIST)
                return 0; /* reached before (a bind mount, a move not read yet): watched already */
        if (r < 0) {
                (void)inotify_rm_watch(w->ifd, wd);
                return sbx_err_set(k->err, r, "cannot watch '%s': %s", k->path, strerror(-r));
        }
        dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return 0;
        pfd = safe_close(pfd); /* one fd per level while walking down */
        return walk_dir(k, dfd, wd, rlen, depth);
}

static void closedirp(DIR **d)
{
        if (*d)
                (void)closedir(*d);
}

/*
 * List the directory dfd (taken; opened for reading), watched as wd at depth, whose relative path
 * is w->rel[0..rlen): report its entries (walks with a callback) and watch its subdirectories.
 */
static int walk_dir(struct walk *k, int dfd, int wd, size_t rlen, unsigned depth)
{
        struct files_watch *w = k->w;
        _cleanup_(closedirp) DIR *d = NULL;

        d = fdopendir(dfd);
        if (!d) {
                int r = -errno;
                (void)close(dfd);
                return sbx_err_set(k->err, r, "cannot list '%s': %s", k->path, strerror(-r));
        }
        for (;;) {
                struct dirent *de;
                bool isdir;
                int n, r;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno && k->initial)
                                return files_errno(k->err, errno, k->path);
                        return 0;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (++k->visited > SBX_MAX_FS_WALK)
                        return walk_limit(k, "entries", SBX_MAX_FS_WALK);
                n = rel_append(w, rlen, de->d_name);
                if (n < 0 || ignored(w, w->rel))
                        continue;
                isdir = de->d_type == DT_DIR;
                if (de->d_type == DT_UNKNOWN) {
                        struct stat st;

                        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                                continue;
                        isdir = S_ISDIR(st.st_mode);
                }
                if (!isdir) {
                        emit(k, FILES_EV_ADD, dirfd(d), de->d_name);
                        continue;
                }
                emit(k, FILES_EV_ADD_DIR, -EBADF, NULL);
                r = watch_dir(k, dirfd(d), de->d_name, de->d_name, wd, (size_t)n, depth + 1);
                if (r < 0)
                        return r;
        }
}

/* ---------- events ---------- */

static int handle_event(struct walk *k, const struct inotify_event *ev)
{
        struct files_watch *w = k->w;
        bool isdir = ev->mask & IN_ISDIR;
        unsigned depth;
        int rlen, n, r;

        if (ev->mask & IN_Q_OVERFLOW) {
                /* events were lost: say so once, with the watched directory as the path */
                if (!k->initial && k->cb) {
                        struct files_event o = { .type = FILES_EV_OVERFLOW, .path = w->base[0] ? w->base : "/" };

                        w->has_last = false;
                        k->cb(k->data, &o);
                }
                return 0;
        }
        if (ev->wd == w->top_wd && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED))) {
                w->gone = true;
                return 0;
        }
        if (ev->mask & IN_IGNORED) {
                size_t i = dir_pos(w, ev->wd);
                if (i < w->n_dirs && w->dirs[i].wd == ev->wd)
                        dir_drop(w, i);
                return 0;
        }
        /* a subdirectory's own removal or move is reported by its parent */
        if (ev->len == 0 ||
            !(ev->mask & (IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_MODIFY | IN_CLOSE_WRITE)))
                return 0;
        rlen = dir_rel(w, ev->wd, w->rel, sizeof w->rel, &depth);
        if (rlen == -ENOENT || rlen == -ELOOP) {
                /* left over from a subtree dropped before (or never known): stop it */
                size_t i = dir_pos(w, ev->wd);
                if (i < w->n_dirs && w->dirs[i].wd == ev->wd) {
                        (void)inotify_rm_watch(w->ifd, ev->wd);
                        dir_drop(w, i);
                }
                return 0;
        }
        if (rlen < 0)
                return 0;
        n = rel_append(w, (size_t)rlen, ev->name);
        if (n < 0 || ignored(w, w->rel))
                return 0;

        if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
                if (!isdir) {
                        emit(k, FILES_EV_ADD, w->content != FILES_CONTENT_NONE ? top_fd(w) : -EBADF, w->rel);
                        return 0;
                }
                emit(k, FILES_EV_ADD_DIR, -EBADF, NULL);
                if (!w->recursive)
                        return 0;
                /* watch first, then list: what is created meanwhile is seen by one or the other */
                k->visited = 0;
                r = watch_dir(k, top_fd(w), w->rel, ev->name, ev->wd, (size_t)n, depth + 1);
                return r == -SBX_E_LIMIT ? 0 : r;
        }
        if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
                emit(k, isdir ? FILES_EV_UNLINK_DIR : FILES_EV_UNLINK, -EBADF, NULL);
                if (isdir && (ev->mask & IN_MOVED_FROM))
                        dir_forget_subtree(w, ev->wd, ev->name);
                return 0;
        }
        if (!isdir)
                emit(k, FILES_EV_CHANGE, w->content != FILES_CONTENT_NONE ? top_fd(w) : -EBADF, w->rel);
        return 0;
}

static int read_events(struct files_watch *w, void (*cb)(void *data, const struct files_event *ev), void *data)
{
        struct walk k = { .w = w, .cb = cb, .data = data, .path = w->base[0] ? w->base : "/" };
        int ret = 0;

        if (w->gone)
                return -ENOENT;
        w->has_last = false;
        for (int i = 0; i < WATCH_READS_PER_CALL; i++) {
                ssize_t n = read(w->ifd, w->events, sizeof w->events);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0)
                        return -errno;
                for (size_t off = 0; off + sizeof(struct inotify_event) <= (size_t)n;) {
                        const struct inotify_event *ev = (const void *)(w->events + off);
                        int r = handle_event(&k, ev);

                        if (w->gone)
                                return -ENOENT;
                        if (r < 0 && ret == 0)
                                ret = r; /* -ENOSPC, -ENOMEM: reported after the rest of the batch */
                        off += sizeof *ev + ev->len;
                }
        }
        return ret;
}

int files_watch_read(struct files_watch *w, void (*cb)(void *data, const struct files_event *ev), void *data)
{
        int r = read_events(w, cb, data);

        top_close(w);
        return r;
}

int files_watch_fd(const struct files_watch *w)
{
        return w->ifd;
}

void files_watch_free(struct files_watch *w)
{
        if (!w)
                return;
        (void)safe_close(w->ifd);
        (void)safe_close(w->topfd);
        (void)safe_close(w->root.fd);
        for (size_t i = 0; i < w->n_dirs; i++)
                free(w->dirs[i].name);
        free(w->dirs);
        for (size_t i = 0; i < w->n_ignore; i++)
                free(w->ignore[i]);
        free(w->ignore);
        free(w->buf);
        free(w);
}

DEFINE_FREEP(struct files_watch, files_watch_free)

static int check_opts(const struct files_watch_opts *o, struct sbx_err *err)
{
        if (o->n_ignore > SBX_MAX_WATCH_IGNORE)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'ignore' has more than %d globs",
                                    SBX_MAX_WATCH_IGNORE);
        if (o->n_ignore && !o->ignore)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'ignore' is missing");
        for (size_t i = 0; i < o->n_ignore; i++) {
                size_t l = o->ignore[i] ? strnlen(o->ignore[i], SBX_MAX_FILE_PATH + 1) : 0;

                if (l == 0 || l > SBX_MAX_FILE_PATH)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'ignore' globs must have 1 to %d bytes", SBX_MAX_FILE_PATH);
        }
        if (o->max_content > SBX_MAX_WATCH_CONTENT)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "the content limit is at most %d bytes",
                                    SBX_MAX_WATCH_CONTENT);
        if ((unsigned)o->content > FILES_CONTENT_BASE64)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'content' is not none, text or base64");
        return 0;
}

int files_watch_new(const struct files_root *r, const char *path, const struct files_watch_opts *o,
                    struct files_watch **ret, struct sbx_err *err)
{
        static const struct files_watch_opts defaults = { 0 };
        _cleanup_(files_watch_freep) struct files_watch *w = NULL;
        struct walk k = { .initial = true, .err = err, .path = path };
        struct stat st;
        int q, dfd;

        if (!o)
                o = &defaults;
        q = check_opts(o, err);
        if (q < 0)
                return q;
        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->ifd = w->topfd = w->root.fd = -EBADF;
        w->recursive = o->recursive;
        w->content = o->content;
        w->max_content = o->max_content ? o->max_content : SBX_MAX_WATCH_CONTENT;
        if (o->n_ignore) {
                w->ignore = calloc(o->n_ignore, sizeof *w->ignore);
                if (!w->ignore)
                        return -ENOMEM;
                for (; w->n_ignore < o->n_ignore; w->n_ignore++) {
                        w->ignore[w->n_ignore] = strdup(o->ignore[w->n_ignore]);
                        if (!w->ignore[w->n_ignore])
                                return -ENOMEM;
                }
        }
        if (files_path_normalize(path, w->base, sizeof w->base) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        if (strcmp(w->base, "/") == 0)
                w->base[0] = '\0';
        /* not O_DIRECTORY: files_open would take it for part of O_TMPFILE (which includes it) */
        q = files_open(r, path, O_PATH, &w->topfd, err);
        if (q < 0)
                return q;
        if (fstat(w->topfd, &st) < 0)
                return files_errno(err, errno, path);
        if (!S_ISDIR(st.st_mode))
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_directory", "'%s' is not a directory", path);
        w->top_dev = st.st_dev;
        w->top_ino = st.st_ino;
        w->root = *r;
        w->root.fd = fcntl(r->fd, F_DUPFD_CLOEXEC, 3);
        if (w->root.fd < 0)
                return sbx_err_set(err, -errno, "cannot watch '%s': %s", path, strerror(errno));
        w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (w->ifd < 0 && (errno == EMFILE || errno == ENFILE))
                return sbx_err_setr(err, -SBX_E_LIMIT, "too_many_watchers",
                                    "cannot watch '%s': the host's inotify instances are used up "
                                    "(fs.inotify.max_user_instances; every watcher takes one)",
                                    path);
        if (w->ifd < 0)
                return sbx_err_set(err, -errno, "cannot watch '%s': no inotify instance: %s", path, strerror(errno));
        q = add_watch(w, w->topfd);
        if (q < 0)
                return q == -ENOSPC
                               ? sbx_err_setr(err, -SBX_E_LIMIT, "too_many_watchers",
                                              "cannot watch '%s': the host's inotify watch limit was reached "
                                              "(fs.inotify.max_user_watches)",
                                              path)
                               : files_errno(err, -q, path);
        w->top_wd = q;
        q = dir_add(w, w->top_wd, -1, "");
        if (q < 0)
                return q;
        if (w->recursive) {
                dfd = openat(w->topfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        return files_errno(err, errno, path);
                k.w = w;
                q = walk_dir(&k, dfd, w->top_wd, 0, 0);
                if (q < 0)
                        return q;
        }
        top_close(w);
        *ret = TAKE_PTR(w);
        return 0;
}
