// SPDX-License-Identifier: Apache-2.0
/*
 * Metadata and tree operations of the files API (files.h): stat, mkdir, move, copy, delete,
 * chmod, on a root handed over as an fd. Every user path is resolved by path.c (files_open,
 * files_open_parent, RESOLVE_IN_ROOT); from there on everything is an *at() call on a directory fd
 * with one name that never follows a final symlink (a followed absolute link would resolve against
 * the host's root). Recursive walks (list, copy, delete) open each directory from its parent's fd
 * with O_NOFOLLOW, stay on the mount they started on, and stop at SBX_MAX_FS_DEPTH directories or
 * SBX_MAX_FS_WALK entries. Mount points are never removed, moved or replaced: seen from the
 * daemon's mount namespace the kernel would let that detach a running sandbox's /tmp, /dev or
 * bind mounts (files__is_mount). Paths a walk builds serve messages and cursors only. Listing is
 * in list.c. No logging.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/util.h"
#include "files-internal.h"
#include "files.h"

#define COPY_CHUNK (128 * 1024) /* read/write fallback where copy_file_range cannot */


static bool dot_or_dotdot(const char *n)
{
        return n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
}

/* ---------- entries ---------- */

static const char *type_string(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFDIR:
                return "dir";
        case S_IFLNK:
                return "symlink";
        case S_IFIFO:
                return "fifo";
        case S_IFSOCK:
                return "socket";
        case S_IFCHR:
                return "chardev";
        case S_IFBLK:
                return "blockdev";
        default:
                return "file";
        }
}


/* A JSON string of file system text, which need not be UTF-8 (invalid bytes become U+FFFD). */
#define MTIME_4_DIGITS INT64_C(253402300799) /* 9999-12-31T23:59:59Z */


static void format_mtime(const struct stat *st, struct files__mtime_memo *m, char buf[static 32])
{
        int64_t sec = st->st_mtim.tv_sec < 0 ? 0 : st->st_mtim.tv_sec;
        unsigned ms = st->st_mtim.tv_sec < 0 ? 0 : (unsigned)(st->st_mtim.tv_nsec / 1000000);

        if (sec > MTIME_4_DIGITS) {
                /* a year past 9999 makes the text longer: no memo */
                uint64_t t = (uint64_t)sec > UINT64_MAX / 1000 - 1 ? UINT64_MAX : (uint64_t)sec * 1000 + ms;

                format_rfc3339_ms(t, buf, 32);
                return;
        }
        if (m->sec != sec) {
                format_rfc3339_ms((uint64_t)sec * 1000, m->text, sizeof m->text);
                m->text[20] = '\0'; /* keep "...:SS." */
                m->sec = sec;
        }
        memcpy(buf, m->text, 20);
        buf[20] = (char)('0' + ms / 100);
        buf[21] = (char)('0' + ms / 10 % 10);
        buf[22] = (char)('0' + ms % 10);
        buf[23] = 'Z';
        buf[24] = '\0';
}

/*
 * The entry JSON of files.h; target: a symlink's text (target_len bytes) or NULL. utf8: path and
 * name are known to be valid UTF-8 (a listing's keys), else they are checked and sanitised.
 */
json_t *files__entry_json(const struct files_root *r, const char *path, size_t path_len, const char *name,
                          size_t name_len, bool utf8, const struct stat *st, const char *target, size_t target_len,
                          struct files__mtime_memo *memo)
{
        char mtime[32];
        json_t *e;
        int q = 0;

        format_mtime(st, memo, mtime);
        e = json_object();
        if (!e)
                return NULL;
        /* the keys are literals, the values checked text: no second UTF-8 check in jansson */
        q |= json_object_set_new_nocheck(e, "name",
                                         utf8 ? json_stringn_nocheck(name, name_len) : json_string_utf8(name, name_len));
        q |= json_object_set_new_nocheck(e, "path",
                                         utf8 ? json_stringn_nocheck(path, path_len) : json_string_utf8(path, path_len));
        q |= json_object_set_new_nocheck(e, "type", json_string_nocheck(type_string(st->st_mode)));
        q |= json_object_set_new_nocheck(e, "size", json_integer(st->st_size));
        q |= json_object_set_new_nocheck(e, "mode", json_integer(st->st_mode & 07777));
        q |= json_object_set_new_nocheck(e, "mtime", json_stringn_nocheck(mtime, 24));
        q |= json_object_set_new_nocheck(e, "uid", json_integer(files__sandbox_id(st->st_uid, r->base_uid)));
        q |= json_object_set_new_nocheck(e, "gid", json_integer(files__sandbox_id(st->st_gid, r->base_gid)));
        if (target)
                q |= json_object_set_new_nocheck(e, "symlinkTarget", json_string_utf8(target, target_len));
        if (q) {
                json_decref(e);
                return NULL;
        }
        return e;
}

int files_stat(const struct files_root *r, const char *path, json_t **ret, struct sbx_err *err)
{
        char norm[SBX_MAX_FILE_PATH + 2], target[SBX_MAX_FILE_PATH + 1];
        _cleanup_close_ int fd = -EBADF;
        const char *name;
        ssize_t n = 0;
        struct stat st;
        json_t *e;
        int q;

        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        q = files_open(r, path, O_PATH | O_NOFOLLOW, &fd, err);
        if (q < 0)
                return q;
        if (fstat(fd, &st) < 0)
                return files_errno(err, errno, path);
        if (S_ISLNK(st.st_mode)) {
                n = readlinkat(fd, "", target, sizeof target);
                if (n < 0)
                        return files_errno(err, errno, path);
                if ((size_t)n == sizeof target)
                        return files_errno(err, ENAMETOOLONG, path);
        }
        name = strcmp(norm, "/") == 0 ? "/" : strrchr(norm, '/') + 1;
        e = files__entry_json(r, norm, strlen(norm), name, strlen(name), false, &st, S_ISLNK(st.st_mode) ? target : NULL,
                       (size_t)n, &(struct files__mtime_memo){ .sec = -1 });
        if (!e)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        *ret = e;
        return 0;
}

/* ---------- mounts and walks ---------- */

int files__is_mount(int dirfd, const char *name)
{
        struct statx sx;
        struct stat pst;

        if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE | STATX_INO, &sx) < 0)
                return -errno;
        if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
                return !!(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
        /* before Linux 5.8 only a mount of another filesystem shows */
        if (fstat(dirfd, &pst) < 0)
                return -errno;
        return makedev(sx.stx_dev_major, sx.stx_dev_minor) != pst.st_dev;
}

/* Whether the directory fd is the root of a mount or on another filesystem than dev. */
static int fd_is_mount(int fd, dev_t dev)
{
        struct statx sx;

        if (statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_INO, &sx) < 0)
                return -errno;
        if (makedev(sx.stx_dev_major, sx.stx_dev_minor) != dev)
                return 1;
        return (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}


void files__pathbuf_init(struct files__pathbuf *p, const char *norm)
{
        p->len = strnlen(norm, sizeof p->s - 1);
        memcpy(p->s, norm, p->len);
        p->s[p->len] = '\0';
        p->hidden = 0;
}

static size_t pathbuf_push(struct files__pathbuf *p, const char *name)
{
        size_t old = p->len, n = strlen(name), sep = old > 1;

        if (p->hidden || old + sep + n >= sizeof p->s) {
                p->hidden++;
                return SIZE_MAX;
        }
        if (sep)
                p->s[p->len++] = '/';
        memcpy(p->s + p->len, name, n + 1);
        p->len += n;
        return old;
}

static void pathbuf_pop(struct files__pathbuf *p, size_t old)
{
        if (old == SIZE_MAX) {
                p->hidden--;
                return;
        }
        p->len = old;
        p->s[old] = '\0';
}


int files__walk_count(struct files__walk *w, struct sbx_err *err)
{
        if (++w->count > SBX_MAX_FS_WALK)
                return sbx_err_setr(err, -SBX_E_LIMIT, "too_many_entries",
                                    "'%s' holds more than %d entries: the walk stopped there", w->path.s,
                                    SBX_MAX_FS_WALK);
        return 0;
}


/*
 * Open the subdirectory name of parentfd (w->path names it) for reading. Returns WALK_ENTERED with
 * *ret_fd, WALK_MOUNT (a mount point or another filesystem: not entered), WALK_GONE (vanished, or no
 * directory any more), or < 0 with err set.
 */
int files__walk_enter(struct files__walk *w, int parentfd, const char *name, int *ret_fd, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        int q;

        if (w->depth + 1 > SBX_MAX_FS_DEPTH)
                return sbx_err_setr(err, -SBX_E_LIMIT, "too_many_entries", "'%s' is nested deeper than %d directories",
                                    w->path.s, SBX_MAX_FS_DEPTH);
        fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                        return WALK_GONE;
                return files_errno(err, errno, w->path.s);
        }
        q = fd_is_mount(fd, w->dev);
        if (q < 0)
                return files_errno(err, -q, w->path.s);
        if (q > 0)
                return WALK_MOUNT;
        q = files_check_fs(fd, w->path.s, err);
        if (q < 0)
                return q;
        *ret_fd = TAKE_FD(fd);
        return WALK_ENTERED;
}

/* readdir's next entry other than "." and ".."; NULL at the end (errno set on failure, else 0). */
struct dirent *files__next_entry(DIR *d)
{
        struct dirent *de;

        do {
                errno = 0;
                de = readdir(d);
        } while (de && dot_or_dotdot(de->d_name));
        return de;
}

/* ---------- mkdir, move, chmod ---------- */

int files_mkdir(const struct files_root *r, const char *path, bool parents, mode_t mode, struct sbx_err *err)
{
        char norm[SBX_MAX_FILE_PATH + 2], name[NAME_MAX + 1];
        _cleanup_close_ int dirfd = -EBADF, fd = -EBADF;
        int q;

        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        if (strcmp(norm, "/") == 0)
                return parents ? 0 : files_errno(err, EEXIST, path);
        q = files_open_parent(r, path, parents, &dirfd, name, err);
        if (q < 0)
                return q;
        if (mkdirat(dirfd, name, 0700) < 0) {
                if (errno == EEXIST && parents) {
                        /* mkdir -p: fine if it is a directory (a link to one, resolved in the root) */
                        q = files_open(r, path, O_PATH | O_DIRECTORY, &fd, NULL);
                        if (q >= 0)
                                return 0;
                        return files_errno(err, EEXIST, path);
                }
                return files_errno(err, errno, path);
        }
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return files_errno(err, errno, path);
        /* chown first: it would clear setgid */
        if (files_chown_fd(r, fd) < 0 || fchmod(fd, mode & 07777) < 0)
                return files_errno(err, errno, path);
        return 0;
}

static int busy_mount(struct sbx_err *err, const char *path)
{
        return sbx_err_setr(err, -SBX_E_CONFLICT, "busy", "'%s' is a mount point: it cannot be moved or removed", path);
}

static int forbidden_mount(struct sbx_err *err, const char *path)
{
        return sbx_err_setr(err, -SBX_E_FORBIDDEN, "path_forbidden", "'%s' is a mount point: it cannot be replaced",
                            path);
}

int files_move(const struct files_root *r, const char *from, const char *to, bool overwrite, bool parents,
               struct sbx_err *err)
{
        _cleanup_close_ int sdir = -EBADF, ddir = -EBADF;
        char sname[NAME_MAX + 1], dname[NAME_MAX + 1];
        struct stat st;
        int q;

        q = files_open_parent(r, from, false, &sdir, sname, err);
        if (q < 0)
                return q;
        if (fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return files_errno(err, errno, from);
        q = files__is_mount(sdir, sname);
        if (q < 0)
                return files_errno(err, -q, from);
        if (q > 0)
                return busy_mount(err, from);
        q = files_open_parent(r, to, parents, &ddir, dname, err);
        if (q < 0)
                return q;
        if (overwrite) {
                q = files__is_mount(ddir, dname);
                if (q < 0 && q != -ENOENT)
                        return files_errno(err, -q, to);
                if (q > 0)
                        return forbidden_mount(err, to);
        }
        if (renameat2(sdir, sname, ddir, dname, overwrite ? 0 : RENAME_NOREPLACE) < 0) {
                switch (errno) {
                case EINVAL:
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "cannot move '%s' into itself", from);
                case EEXIST:
                case ENOTEMPTY:
                case EISDIR:
                case ENOTDIR:
                        return files_errno(err, errno, to);
                default:
                        return files_errno(err, errno, from);
                }
        }
        return 0;
}

int files_chmod(const struct files_root *r, const char *path, mode_t mode, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        char proc[64];
        int q;

        q = files_open(r, path, O_PATH | O_NOFOLLOW, &fd, err);
        if (q < 0)
                return q;
        if (fstat(fd, &st) < 0)
                return files_errno(err, errno, path);
        if (S_ISLNK(st.st_mode))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'%s' is a symbolic link: it has no mode of its own", path);
        /* the inode files_open checked, through its fd (fchmod refuses O_PATH fds) */
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        if (chmod(proc, mode & 07777) < 0)
                return files_errno(err, errno, path);
        return 0;
}

/* ---------- delete ---------- */

static int delete_children(struct files__walk *w, int fd, struct sbx_err *err);

/* Remove name in dfd (w->path names it), a directory with all it holds. */
static int delete_entry(struct files__walk *w, int dfd, const char *name, unsigned char type, struct sbx_err *err)
{
        int fd = -EBADF, q;

        if (type == DT_DIR || type == DT_UNKNOWN) {
                q = files__walk_enter(w, dfd, name, &fd, err);
                if (q < 0)
                        return q;
                if (q == WALK_MOUNT)
                        return busy_mount(err, w->path.s);
                if (q == WALK_ENTERED) {
                        w->depth++;
                        q = delete_children(w, fd, err);
                        w->depth--;
                        if (q < 0)
                                return q;
                        if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
                                return files_errno(err, errno, w->path.s);
                        return 0;
                }
                /* WALK_GONE: not a directory (any more) */
        }
        q = files__is_mount(dfd, name);
        if (q == -ENOENT)
                return 0;
        if (q < 0)
                return files_errno(err, -q, w->path.s);
        if (q > 0)
                return busy_mount(err, w->path.s);
        if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                return files_errno(err, errno, w->path.s);
        return 0;
}

/* Empty the directory fd (owned). Goes on past a failed entry like rm -r; returns the first error. */
static int delete_children(struct files__walk *w, int fd, struct sbx_err *err)
{
        _cleanup_(files__closedirp) DIR *d = NULL;
        struct dirent *de;
        int ret = 0, q;

        d = fdopendir(fd);
        if (!d) {
                q = errno;
                safe_close(fd);
                return files_errno(err, q, w->path.s);
        }
        while ((de = files__next_entry(d))) {
                size_t old;

                q = files__walk_count(w, err);
                if (q < 0)
                        return q;
                old = pathbuf_push(&w->path, de->d_name);
                q = delete_entry(w, dirfd(d), de->d_name, de->d_type, err);
                pathbuf_pop(&w->path, old);
                if (q == -SBX_E_LIMIT || q == -ENOMEM)
                        return q;
                if (q < 0 && ret == 0)
                        ret = q;
        }
        if (errno != 0 && ret == 0)
                ret = files_errno(err, errno, w->path.s);
        return ret;
}

int files_delete(const struct files_root *r, const char *path, bool recursive, struct sbx_err *err)
{
        _cleanup_close_ int dirfd = -EBADF, fd = -EBADF;
        char name[NAME_MAX + 1], norm[SBX_MAX_FILE_PATH + 2];
        struct files__walk *w = NULL;
        struct stat st;
        int q;

        q = files_open_parent(r, path, false, &dirfd, name, err);
        if (q < 0)
                return q;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return files_errno(err, errno, path);
        q = files__is_mount(dirfd, name);
        if (q < 0)
                return files_errno(err, -q, path);
        if (q > 0)
                return busy_mount(err, path);
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dirfd, name, 0) < 0 ? files_errno(err, errno, path) : 0;
        if (unlinkat(dirfd, name, AT_REMOVEDIR) >= 0)
                return 0;
        if ((errno != ENOTEMPTY && errno != EEXIST) || !recursive)
                return files_errno(err, errno, path);

        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return files_errno(err, errno, path);
        q = files_check_fs(fd, path, err);
        if (q < 0)
                return q;
        if (fstat(fd, &st) < 0)
                return files_errno(err, errno, path);
        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        w = calloc(1, sizeof *w);
        if (!w)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        w->dev = st.st_dev;
        files__pathbuf_init(&w->path, norm);
        q = delete_children(w, TAKE_FD(fd), err);
        free(w);
        if (q < 0)
                return q;
        if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
                return files_errno(err, errno, path);
        return 0;
}

/* ---------- copy ---------- */

struct copier {
        const struct files_root *r;
        bool overwrite;
        bool have_dest; /* dest_dev/dest_ino hold the top copy (a directory) */
        dev_t dest_dev;
        ino_t dest_ino;
        struct files__walk w;                    /* the source side */
        struct files__pathbuf dpath;             /* the destination entry, for messages */
        char link[SBX_MAX_FILE_PATH + 1]; /* a symlink's text */
};

static int copy_data(int in, int out, off_t size)
{
        _cleanup_free_ char *buf = NULL;
        bool cfr = true;

        /* at most the size the source had: a file that keeps growing cannot keep the copy going */
        while (size > 0) {
                size_t chunk = size > (1 << 30) ? (1 << 30) : (size_t)size;
                ssize_t n;

                if (cfr) {
                        n = copy_file_range(in, NULL, out, NULL, chunk, 0);
                        if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
                                cfr = false;
                                continue;
                        }
                } else {
                        if (!buf && !(buf = malloc(COPY_CHUNK)))
                                return -ENOMEM;
                        n = read(in, buf, chunk < COPY_CHUNK ? chunk : COPY_CHUNK);
                        if (n > 0) {
                                int q = write_all(out, buf, (size_t)n);
                                if (q < 0)
                                        return q;
                        }
                }
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break; /* it shrank meanwhile */
                size -= n;
        }
        return 0;
}

static int copy_file(struct copier *c, int sdir, const char *sname, int ddir, const char *dname, struct sbx_err *err)
{
        struct files_write_opts o = { .has_mode = true };
        _cleanup_close_ int src = -EBADF;
        struct files_writer *wr = NULL;
        struct stat st;
        int q;

        /* O_NONBLOCK: should a FIFO have taken the name meanwhile, opening it must not hang */
        src = openat(sdir, sname, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (src < 0)
                return files_errno(err, errno, c->w.path.s);
        if (fstat(src, &st) < 0)
                return files_errno(err, errno, c->w.path.s);
        if (!S_ISREG(st.st_mode))
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_regular_file", "'%s' changed while it was copied",
                                    c->w.path.s);
        q = files_check_fs(src, c->w.path.s, err);
        if (q < 0)
                return q;
        if (fcntl(src, F_SETFL, 0) < 0)
                return files_errno(err, errno, c->w.path.s);
        o.mode = st.st_mode & 07777;
        q = files__writer_open_at(c->r, ddir, dname, c->dpath.s, &o,
                                  FILES__W_ROOT_OWNER | (c->overwrite ? 0 : FILES__W_NOREPLACE), &wr, err);
        if (q < 0)
                return q;
        q = copy_data(src, files_writer_fd(wr), st.st_size);
        if (q < 0) {
                files_writer_abort(wr);
                if (q == -ENOSPC || q == -EDQUOT)
                        return files_errno(err, -q, c->dpath.s);
                return sbx_err_set(err, q, "cannot copy '%s' to '%s': %s", c->w.path.s, c->dpath.s, strerror(-q));
        }
        return files_writer_commit(wr, err);
}

static int copy_link(struct copier *c, int sdir, const char *sname, int ddir, const char *dname, struct sbx_err *err)
{
        char tmp[FILES__TMP_NAME_MAX];
        ssize_t n;
        int q;

        n = readlinkat(sdir, sname, c->link, sizeof c->link);
        if (n < 0)
                return files_errno(err, errno, c->w.path.s);
        if ((size_t)n == sizeof c->link)
                return files_errno(err, ENAMETOOLONG, c->w.path.s);
        c->link[n] = '\0';
        for (int i = 0;; i++) {
                q = files__tmp_name(tmp);
                if (q < 0)
                        return sbx_err_set(err, q, "cannot make a temp name for '%s'", c->dpath.s);
                if (symlinkat(c->link, ddir, tmp) >= 0)
                        break;
                if (errno != EEXIST || i == 15)
                        return files_errno(err, errno, c->dpath.s);
        }
        if (fchownat(ddir, tmp, c->r->uid, c->r->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            renameat2(ddir, tmp, ddir, dname, c->overwrite ? 0 : RENAME_NOREPLACE) < 0) {
                q = errno;
                (void)unlinkat(ddir, tmp, 0);
                return files_errno(err, q, c->dpath.s);
        }
        return 0;
}

static int copy_one(struct copier *c, int sdir, const char *sname, const struct stat *st, int ddir, const char *dname,
                    bool top, struct sbx_err *err);

/* Copy the entries of the source directory sfd (owned) into the directory dfd. */
static int copy_children(struct copier *c, int sfd, int dfd, struct sbx_err *err)
{
        _cleanup_(files__closedirp) DIR *d = NULL;
        struct dirent *de;
        int q;

        d = fdopendir(sfd);
        if (!d) {
                q = errno;
                safe_close(sfd);
                return files_errno(err, q, c->w.path.s);
        }
        while ((de = files__next_entry(d))) {
                size_t sold, dold;
                struct stat st;

                q = files__walk_count(&c->w, err);
                if (q < 0)
                        return q;
                sold = pathbuf_push(&c->w.path, de->d_name);
                dold = pathbuf_push(&c->dpath, de->d_name);
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        q = errno == ENOENT ? 0 : files_errno(err, errno, c->w.path.s); /* gone: fine */
                else
                        q = copy_one(c, dirfd(d), de->d_name, &st, dfd, de->d_name, false, err);
                pathbuf_pop(&c->dpath, dold);
                pathbuf_pop(&c->w.path, sold);
                if (q < 0)
                        return q;
        }
        if (errno != 0)
                return files_errno(err, errno, c->w.path.s);
        return 0;
}

/* Copy the directory sfd (owned; -EBADF: a mount point, copied empty) with the stat st to dname in
 * ddir; dst: what is there already (merged into), or NULL. */
static int copy_dir(struct copier *c, int sfd, const struct stat *st, int ddir, const char *dname,
                    const struct stat *dst, struct sbx_err *err)
{
        _cleanup_close_ int src = sfd, dfd = -EBADF;
        bool created = false;
        struct stat dst2;
        int q;

        if (dst && !S_ISDIR(dst->st_mode))
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_directory",
                                    "'%s' exists and is not a directory: a directory cannot replace it", c->dpath.s);
        if (!dst) {
                if (mkdirat(ddir, dname, 0700) < 0)
                        return files_errno(err, errno, c->dpath.s);
                created = true;
        }
        dfd = openat(ddir, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0)
                return files_errno(err, errno, c->dpath.s);
        q = files_check_fs(dfd, c->dpath.s, err);
        if (q < 0)
                return q;
        if (created && files_chown_fd(c->r, dfd) < 0)
                return files_errno(err, errno, c->dpath.s);
        if (!c->have_dest) {
                if (fstat(dfd, &dst2) < 0)
                        return files_errno(err, errno, c->dpath.s);
                c->dest_dev = dst2.st_dev;
                c->dest_ino = dst2.st_ino;
                c->have_dest = true;
        }
        if (src >= 0) {
                c->w.depth++;
                q = copy_children(c, TAKE_FD(src), dfd, err);
                c->w.depth--;
                if (q < 0)
                        return q;
        }
        if (created && fchmod(dfd, st->st_mode & 07777) < 0)
                return files_errno(err, errno, c->dpath.s);
        return 0;
}

static int copy_one(struct copier *c, int sdir, const char *sname, const struct stat *st, int ddir, const char *dname,
                    bool top, struct sbx_err *err)
{
        _cleanup_close_ int sfd = -EBADF;
        struct stat dst, sst;
        bool exists = true;
        int q;

        if (!S_ISDIR(st->st_mode) && !S_ISREG(st->st_mode) && !S_ISLNK(st->st_mode)) {
                if (!top)
                        return 0; /* FIFOs, sockets, devices are not copied */
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_regular_file",
                                    "'%s' is not a regular file, directory or symbolic link: it cannot be copied",
                                    c->w.path.s);
        }
        if (fstatat(ddir, dname, &dst, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno != ENOENT)
                        return files_errno(err, errno, c->dpath.s);
                exists = false;
        }
        if (exists && !c->overwrite)
                return files_errno(err, EEXIST, c->dpath.s);
        if (exists && !S_ISDIR(st->st_mode)) {
                if (S_ISDIR(dst.st_mode))
                        return files_errno(err, EISDIR, c->dpath.s);
                q = files__is_mount(ddir, dname);
                if (q < 0 && q != -ENOENT)
                        return files_errno(err, -q, c->dpath.s);
                if (q > 0)
                        return forbidden_mount(err, c->dpath.s);
        }
        if (S_ISREG(st->st_mode))
                return copy_file(c, sdir, sname, ddir, dname, err);
        if (S_ISLNK(st->st_mode))
                return copy_link(c, sdir, sname, ddir, dname, err);

        if (top) {
                sfd = openat(sdir, sname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sfd < 0)
                        return files_errno(err, errno, c->w.path.s);
                q = files_check_fs(sfd, c->w.path.s, err);
                if (q < 0)
                        return q;
                c->w.dev = st->st_dev;
        } else {
                q = files__walk_enter(&c->w, sdir, sname, &sfd, err);
                if (q < 0)
                        return q;
                if (q == WALK_GONE)
                        return 0;
        }
        if (sfd >= 0 && c->have_dest) {
                if (fstat(sfd, &sst) < 0)
                        return files_errno(err, errno, c->w.path.s);
                if (sst.st_dev == c->dest_dev && sst.st_ino == c->dest_ino)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "cannot copy a directory into itself ('%s' is the copy)", c->w.path.s);
        }
        return copy_dir(c, TAKE_FD(sfd), st, ddir, dname, exists ? &dst : NULL, err);
}

/* Whether the directory dir is src_dir or lies below it: walks ".." up to the root (O_PATH opens
 * and fstat only; bounded). */
static int dir_is_under(int dir, const struct stat *src, const struct files_root *r)
{
        _cleanup_close_ int cur = -EBADF;
        struct stat top, st;

        if (fstat(r->fd, &top) < 0)
                return -errno;
        cur = openat(dir, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; i <= SBX_MAX_FS_DEPTH * 16 && cur >= 0; i++) {
                int up;

                if (fstat(cur, &st) < 0)
                        return -errno;
                if (st.st_dev == src->st_dev && st.st_ino == src->st_ino)
                        return 1;
                if (st.st_dev == top.st_dev && st.st_ino == top.st_ino)
                        return 0;
                up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
                safe_close(cur);
                cur = up;
        }
        return cur < 0 ? -errno : 0;
}

int files_copy(const struct files_root *r, const char *from, const char *to, bool overwrite, bool parents,
               struct sbx_err *err)
{
        char nfrom[SBX_MAX_FILE_PATH + 2], nto[SBX_MAX_FILE_PATH + 2], sname[NAME_MAX + 1], dname[NAME_MAX + 1];
        _cleanup_close_ int sdir = -EBADF, ddir = -EBADF;
        _cleanup_free_ struct copier *c = NULL;
        size_t flen;
        struct stat st;
        int q;

        if (files_path_normalize(from, nfrom, sizeof nfrom) < 0)
                return files_errno(err, ENAMETOOLONG, from);
        if (files_path_normalize(to, nto, sizeof nto) < 0)
                return files_errno(err, ENAMETOOLONG, to);
        flen = strlen(nfrom);
        if (strcmp(nfrom, "/") == 0 || strcmp(nto, nfrom) == 0 || (strncmp(nto, nfrom, flen) == 0 && nto[flen] == '/'))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "cannot copy '%s' into itself ('%s')", from,
                                    to);
        q = files_open_parent(r, from, false, &sdir, sname, err);
        if (q < 0)
                return q;
        if (fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return files_errno(err, errno, from);
        q = files_open_parent(r, to, parents, &ddir, dname, err);
        if (q < 0)
                return q;
        if (S_ISDIR(st.st_mode)) {
                /* also through symlinks the lexical test above cannot see */
                q = dir_is_under(ddir, &st, r);
                if (q < 0)
                        return files_errno(err, -q, to);
                if (q > 0)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "cannot copy '%s' into itself ('%s')",
                                            from, to);
        }
        c = calloc(1, sizeof *c);
        if (!c)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        c->r = r;
        c->overwrite = overwrite;
        files__pathbuf_init(&c->w.path, nfrom);
        files__pathbuf_init(&c->dpath, nto);
        return copy_one(c, sdir, sname, &st, ddir, dname, true, err);
}
