// SPDX-License-Identifier: Apache-2.0
/*
 * Tar archives in and out of a files_root (files.h), through libarchive. Extraction treats the
 * archive as hostile: each entry's name is cleaned ("/" and "." dropped, ".." refused), its parent
 * is resolved from the root like any API path (so a symlink an earlier entry planted is followed
 * only inside the root), and the entry is created relative to that parent's fd: files through
 * files_writer (atomic), symlinks and hard links under a temporary name renamed over the final
 * one, directories with mkdirat and O_NOFOLLOW. Archiving walks the tree fd by fd like the search
 * (O_NOFOLLOW, one file system, regular files opened O_NONBLOCK and checked before reading). No
 * logging.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files-internal.h"
#include "files.h"

#define UNTAR_BLOCK (64 * 1024)     /* read size of the incoming stream */
#define TAR_BUF (256 * 1024)        /* file contents are archived in chunks of this size */
#define DIR_TIMES_MAX 65536         /* directories whose mtime is restored at the end */
#define DIR_TIMES_BYTES (16U << 20) /* and the bytes of their paths */
#define TMP_TRIES 16
/* a relative path of the archiving walk: SBX_MAX_FS_DEPTH names */
#define TAR_REL_MAX ((size_t)SBX_MAX_FS_DEPTH * (NAME_MAX + 1) + 1)

static void closedirp(DIR **d)
{
        if (*d)
                (void)closedir(*d);
}

/* ---------- extraction ---------- */

struct dir_time {
        size_t off; /* into untar.tpaths */
        struct timespec mtime;
};

struct untar {
        const struct files_root *r;
        struct archive *a;
        struct sbx_err *err;
        char dir[SBX_MAX_FILE_PATH + 2]; /* normalised */
        uint64_t files, dirs, symlinks, bytes, skipped, entries;
        struct dir_time *times; /* directory mtimes, set once their content is in place */
        size_t n_times, cap_times;
        char *tpaths;
        size_t tlen, tcap;
};

/*
 * An archive name as a relative path: leading "/", empty and "." components dropped. -EINVAL if a
 * component is "..", -ENAMETOOLONG past size. The result may be empty (the directory itself).
 */
static int clean_name(const char *in, char *out, size_t size)
{
        size_t n = 0;

        for (const char *p = in; *p;) {
                const char *e;
                size_t len;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                e = strchrnul(p, '/');
                len = (size_t)(e - p);
                if (len == 2 && p[0] == '.' && p[1] == '.')
                        return -EINVAL;
                if (len != 1 || p[0] != '.') {
                        if (n + 1 + len + 1 > size)
                                return -ENAMETOOLONG;
                        if (n)
                                out[n++] = '/';
                        memcpy(out + n, p, len);
                        n += len;
                }
                p = e;
        }
        out[n] = '\0';
        return 0;
}

/* dir + "/" + rel into full (SBX_MAX_FILE_PATH + 2 bytes) */
static int join(const char *dir, const char *rel, char *full)
{
        int n = snprintf(full, SBX_MAX_FILE_PATH + 2, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", rel);

        return n < 0 || n > SBX_MAX_FILE_PATH ? -ENAMETOOLONG : 0;
}

/* The archive entry's name, cleaned and joined to the target directory. 0 with *full empty:
 * nothing to create (the directory itself). */
static int entry_path(struct untar *u, const char *ename, char *full)
{
        char clean[SBX_MAX_FILE_PATH + 1];
        int q = clean_name(ename, clean, sizeof clean);

        if (q == -EINVAL)
                return sbx_err_setr(u->err, -SBX_E_INVALID, "invalid_value", "archive entry '%s' has a '..' component",
                                    ename);
        if (q == 0 && !*clean) {
                full[0] = '\0';
                return 0;
        }
        if (q < 0 || join(u->dir, clean, full) < 0)
                return sbx_err_setr(u->err, -SBX_E_INVALID, "name_too_long",
                                    "archive entry '%s' is longer than %d bytes in '%s'", ename, SBX_MAX_FILE_PATH,
                                    u->dir);
        return 0;
}

static int archive_fail(struct untar *u, const char *ename)
{
        int e = archive_errno(u->a);
        const char *s = archive_error_string(u->a);

        if (!s)
                s = "unknown error";
        if (e == ENOMEM)
                return sbx_err_set(u->err, -ENOMEM, "out of memory");
        /* read(2) failing on the input: pass the errno; anything else is a bad stream (libarchive
         * says EILSEQ for a format error, -1 for "misc", EINVAL for a misuse) */
        if (e > 0 && e != EILSEQ && e != EINVAL)
                return sbx_err_set(u->err, -e, "cannot read the archive: %s", s);
        if (ename)
                return sbx_err_setr(u->err, -SBX_E_INVALID, "invalid_archive", "archive entry '%s' cannot be read: %s",
                                    ename, s);
        return sbx_err_setr(u->err, -SBX_E_INVALID, "invalid_archive", "the archive cannot be read: %s", s);
}

/* Host owner of an entry: as the sandbox's root, the entry's ids when they are sandbox ids (else
 * root); acting as another user (files_root_as), that user, like tar run by that user. */
static void entry_owner(const struct untar *u, struct archive_entry *e, uid_t *ret_uid, gid_t *ret_gid)
{
        la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);

        if (u->r->uid != u->r->base_uid || u->r->gid != u->r->base_gid) {
                *ret_uid = u->r->uid;
                *ret_gid = u->r->gid;
                return;
        }
        *ret_uid = u->r->base_uid + (uid >= 0 && uid < (la_int64_t)SBX_UID_RANGE ? (uid_t)uid : 0);
        *ret_gid = u->r->base_gid + (gid >= 0 && gid < (la_int64_t)SBX_UID_RANGE ? (gid_t)gid : 0);
}

static void entry_times(struct archive_entry *e, struct timespec ts[2])
{
        ts[0] = (struct timespec){ .tv_nsec = UTIME_OMIT };
        if (archive_entry_mtime_is_set(e))
                ts[1] = (struct timespec){ .tv_sec = archive_entry_mtime(e), .tv_nsec = archive_entry_mtime_nsec(e) };
        else
                ts[1] = (struct timespec){ .tv_nsec = UTIME_OMIT };
}

/* Remember a directory's mtime (best effort: bounded, an allocation failure drops it). */
static void dir_time_add(struct untar *u, const char *full, struct archive_entry *e)
{
        size_t n = strlen(full) + 1;
        struct timespec ts[2];

        entry_times(e, ts);
        if (ts[1].tv_nsec == UTIME_OMIT || u->n_times >= DIR_TIMES_MAX || u->tlen + n > DIR_TIMES_BYTES)
                return;
        if (u->n_times == u->cap_times) {
                size_t cap = u->cap_times ? u->cap_times * 2 : 64;
                struct dir_time *p = reallocarray(u->times, cap, sizeof *p);

                if (!p)
                        return;
                u->times = p;
                u->cap_times = cap;
        }
        if (u->tlen + n > u->tcap) {
                size_t cap = u->tcap ? u->tcap * 2 : 4096;
                char *p;

                while (cap < u->tlen + n)
                        cap *= 2;
                p = realloc(u->tpaths, cap);
                if (!p)
                        return;
                u->tpaths = p;
                u->tcap = cap;
        }
        memcpy(u->tpaths + u->tlen, full, n);
        u->times[u->n_times++] = (struct dir_time){ .off = u->tlen, .mtime = ts[1] };
        u->tlen += n;
}

/* Deepest last in the archive, so set them in reverse: a directory's own entries are done. */
static void dir_times_apply(struct untar *u)
{
        for (size_t i = u->n_times; i-- > 0;) {
                struct timespec ts[2] = { { .tv_nsec = UTIME_OMIT }, u->times[i].mtime };
                _cleanup_close_ int fd = -EBADF;

                if (files_open(u->r, u->tpaths + u->times[i].off, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, &fd, NULL) == 0)
                        (void)futimens(fd, ts);
        }
}

/*
 * Refuse to replace or remove a mount point: from the daemon's mount namespace the kernel would
 * detach a sandbox's mount (/etc/resolv.conf ...) instead of answering EBUSY.
 */
static int no_mount(struct untar *u, int dfd, const char *name, const char *full)
{
        int q = files__is_mount(dfd, name);

        if (q < 0 && q != -ENOENT)
                return files_errno(u->err, -q, full);
        if (q > 0)
                return sbx_err_setr(u->err, -SBX_E_FORBIDDEN, "path_forbidden",
                                    "'%s' is a mount point: it cannot be replaced", full);
        return 0;
}

/* Put the temp entry tmp in place of name (atomically), or remove it. */
static int rename_over(struct untar *u, int dfd, const char *tmp, const char *name, const char *full)
{
        int q = no_mount(u, dfd, name, full);

        if (q >= 0 && renameat(dfd, tmp, dfd, name) < 0)
                q = files_errno(u->err, errno, full);
        if (q < 0)
                (void)unlinkat(dfd, tmp, 0);
        return q;
}

static int untar_dir(struct untar *u, struct archive_entry *e, const char *full)
{
        _cleanup_close_ int pfd = -EBADF, fd = -EBADF;
        char name[256];
        struct stat st;
        uid_t uid;
        gid_t gid;
        int q;

        q = files_open_parent(u->r, full, true, &pfd, name, u->err);
        if (q < 0)
                return q;
        if (mkdirat(pfd, name, 0700) < 0) {
                if (errno != EEXIST)
                        return files_errno(u->err, errno, full);
                if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return files_errno(u->err, errno, full);
                /* like tar: what the archive says replaces a file or symlink of that name */
                if (!S_ISDIR(st.st_mode)) {
                        q = no_mount(u, pfd, name, full);
                        if (q < 0)
                                return q;
                        if (unlinkat(pfd, name, 0) < 0 || mkdirat(pfd, name, 0700) < 0)
                                return files_errno(u->err, errno, full);
                }
        }
        fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return files_errno(u->err, errno, full);
        /* an existing directory may be a mount point (the sandbox's /proc ...) */
        q = files_check_fs(fd, full, u->err);
        if (q < 0)
                return q;
        entry_owner(u, e, &uid, &gid);
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, archive_entry_perm(e) & 07777) < 0)
                return files_errno(u->err, errno, full);
        dir_time_add(u, full, e);
        u->dirs++;
        return 0;
}

static int pwrite_all(int fd, const char *buf, size_t len, off_t off)
{
        while (len > 0) {
                ssize_t n = pwrite(fd, buf, len, off);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                buf += n;
                len -= (size_t)n;
                off += n;
        }
        return 0;
}

static int untar_file(struct untar *u, struct archive_entry *e, const char *full, const char *ename)
{
        /* no fsync per file: one syncfs for the whole tree at the end */
        struct files_write_opts wo = { .has_mode = true, .mode = archive_entry_perm(e) & 07777, .mkparents = true,
                                       .nosync = true };
        struct files_writer *w = NULL;
        struct timespec ts[2];
        off_t end = 0;
        uid_t uid;
        gid_t gid;
        int fd, q;

        q = files_writer_open(u->r, full, &wo, &w, u->err);
        if (q < 0)
                return q;
        fd = files_writer_fd(w);
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t off;
                int ar = archive_read_data_block(u->a, &buf, &size, &off);

                if (ar == ARCHIVE_EOF)
                        break;
                if (ar < ARCHIVE_WARN) {
                        q = archive_fail(u, ename);
                        goto fail;
                }
                q = pwrite_all(fd, buf, size, (off_t)off);
                if (q < 0) {
                        q = sbx_err_set(u->err, q, "cannot write '%s': %s", full, strerror(-q));
                        goto fail;
                }
                if ((off_t)off + (off_t)size > end)
                        end = (off_t)off + (off_t)size;
                u->bytes += size;
        }
        /* a sparse file may end in a hole */
        if (archive_entry_size_is_set(e) && archive_entry_size(e) > end && ftruncate(fd, archive_entry_size(e)) < 0) {
                q = sbx_err_set(u->err, -errno, "cannot write '%s': %s", full, strerror(errno));
                goto fail;
        }
        entry_owner(u, e, &uid, &gid);
        entry_times(e, ts);
        if (fchown(fd, uid, gid) < 0 || futimens(fd, ts) < 0) {
                q = files_errno(u->err, errno, full);
                goto fail;
        }
        q = files_writer_commit(w, u->err);
        if (q < 0)
                return q;
        u->files++;
        return 0;
fail:
        files_writer_abort(w);
        return q;
}

static int untar_symlink(struct untar *u, struct archive_entry *e, const char *full)
{
        const char *target = archive_entry_symlink(e);
        _cleanup_close_ int pfd = -EBADF;
        char name[256], tmp[FILES__TMP_NAME_MAX];
        struct timespec ts[2];
        uid_t uid;
        gid_t gid;
        int q;

        if (!target || !*target) {
                u->skipped++;
                return 0;
        }
        q = files_open_parent(u->r, full, true, &pfd, name, u->err);
        if (q < 0)
                return q;
        for (int i = 0;; i++) {
                q = files__tmp_name(tmp);
                if (q < 0)
                        return sbx_err_set(u->err, q, "cannot make a temporary name: %s", strerror(-q));
                if (symlinkat(target, pfd, tmp) == 0)
                        break;
                if (errno != EEXIST || i == TMP_TRIES)
                        return files_errno(u->err, errno, full);
        }
        entry_owner(u, e, &uid, &gid);
        entry_times(e, ts);
        if (fchownat(pfd, tmp, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 || utimensat(pfd, tmp, ts, AT_SYMLINK_NOFOLLOW) < 0) {
                q = files_errno(u->err, errno, full);
                (void)unlinkat(pfd, tmp, 0);
                return q;
        }
        q = rename_over(u, pfd, tmp, name, full);
        if (q < 0)
                return q;
        u->symlinks++;
        return 0;
}

static int untar_hardlink(struct untar *u, struct archive_entry *e, const char *full, const char *ename)
{
        const char *link = archive_entry_hardlink(e);
        char rel[SBX_MAX_FILE_PATH + 1], src[SBX_MAX_FILE_PATH + 2], sname[256], name[256], tmp[FILES__TMP_NAME_MAX];
        _cleanup_close_ int spfd = -EBADF, pfd = -EBADF;
        struct stat sst, dst;
        int q;

        /* the target is an entry of this archive: the same cleaning, inside dir */
        q = clean_name(link, rel, sizeof rel);
        if (q == -EINVAL)
                return sbx_err_setr(u->err, -SBX_E_INVALID, "invalid_value",
                                    "archive entry '%s' links to '%s', outside the directory", ename, link);
        if (q < 0 || !*rel || join(u->dir, rel, src) < 0)
                return sbx_err_setr(u->err, -SBX_E_INVALID, "invalid_value",
                                    "archive entry '%s' links to '%s', which cannot be linked", ename, link);
        q = files_open_parent(u->r, src, false, &spfd, sname, u->err);
        if (q < 0)
                return q;
        if (fstatat(spfd, sname, &sst, AT_SYMLINK_NOFOLLOW) < 0)
                return files_errno(u->err, errno, src);
        if (S_ISDIR(sst.st_mode))
                return sbx_err_setr(u->err, -SBX_E_INVALID, "invalid_value",
                                    "archive entry '%s' is a hard link to the directory '%s'", ename, link);
        q = files_open_parent(u->r, full, true, &pfd, name, u->err);
        if (q < 0)
                return q;
        /* renaming a link over another link of the same inode does nothing: nothing to do then */
        if (fstatat(pfd, name, &dst, AT_SYMLINK_NOFOLLOW) == 0 && dst.st_dev == sst.st_dev &&
            dst.st_ino == sst.st_ino) {
                u->files++;
                return 0;
        }
        for (int i = 0;; i++) {
                q = files__tmp_name(tmp);
                if (q < 0)
                        return sbx_err_set(u->err, q, "cannot make a temporary name: %s", strerror(-q));
                if (linkat(spfd, sname, pfd, tmp, 0) == 0)
                        break;
                if (errno != EEXIST || i == TMP_TRIES)
                        return files_errno(u->err, errno, full);
        }
        q = rename_over(u, pfd, tmp, name, full);
        if (q < 0)
                return q;
        u->files++;
        return 0;
}

static int untar_entry(struct untar *u, struct archive_entry *e)
{
        const char *ename = archive_entry_pathname(e);
        char full[SBX_MAX_FILE_PATH + 2];
        int q;

        if (!ename) {
                u->skipped++;
                return 0;
        }
        q = entry_path(u, ename, full);
        if (q < 0 || !full[0])
                return q;
        if (archive_entry_hardlink(e))
                return untar_hardlink(u, e, full, ename);
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
                return untar_file(u, e, full, ename);
        case AE_IFDIR:
                return untar_dir(u, e, full);
        case AE_IFLNK:
                return untar_symlink(u, e, full);
        default:
                u->skipped++; /* devices, FIFOs, sockets */
                return 0;
        }
}

/*
 * gzip, bzip2, xz and zstd, each only if libarchive has it built in: for a filter it lacks,
 * libarchive would run an external program (and archive_read_support_filter_all adds lrzip, lzop,
 * grzip ... that way), and an upload must not make host root exec anything. A probe reader tells
 * which ones are built in (ARCHIVE_WARN: "using external program").
 */
static int add_filters(struct archive *a)
{
        static int (*const filters[])(struct archive *) = {
                archive_read_support_filter_gzip,
                archive_read_support_filter_bzip2,
                archive_read_support_filter_xz,
                archive_read_support_filter_zstd,
        };

        for (size_t i = 0; i < ELEMENTSOF(filters); i++) {
                struct archive *probe = archive_read_new();
                int ar;

                if (!probe)
                        return -ENOMEM;
                ar = filters[i](probe);
                archive_read_free(probe);
                if (ar == ARCHIVE_OK && filters[i](a) != ARCHIVE_OK)
                        return -EIO;
                if (ar != ARCHIVE_OK && i == 0)
                        return -EIO; /* gzip is what files_tar writes: required */
        }
        return 0;
}

/* syncfs() of the filesystem holding dir (it needs an fd opened for reading, not O_PATH) */
static int sync_dir_fs(const struct files_root *r, const char *dir, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        int q = files_open(r, dir, O_RDONLY | O_DIRECTORY, &fd, err);

        if (q < 0)
                return q;
        if (syncfs(fd) < 0)
                return sbx_err_set(err, -errno, "cannot sync the files extracted into '%s': %m", dir);
        return 0;
}

int files_untar(const struct files_root *r, const char *dir, int fd, json_t **ret, struct sbx_err *err)
{
        struct untar u = { .r = r, .err = err };
        _cleanup_close_ int dfd = -EBADF;
        json_t *res;
        int q;

        q = files_path_check(dir, dir ? strlen(dir) : 0, "path", err);
        if (q < 0)
                return q;
        if (files_path_normalize(dir, u.dir, sizeof u.dir) < 0)
                return files_errno(err, ENAMETOOLONG, dir);
        if (strcmp(u.dir, "/") != 0) {
                q = files_mkdir(r, u.dir, true, 0755, err);
                if (q < 0)
                        return q;
        }
        q = files_open(r, u.dir, O_PATH | O_DIRECTORY, &dfd, err);
        if (q < 0)
                return q;

        u.a = archive_read_new();
        if (!u.a)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (add_filters(u.a) < 0 || archive_read_support_format_tar(u.a) != ARCHIVE_OK ||
            archive_read_support_format_gnutar(u.a) != ARCHIVE_OK) {
                q = sbx_err_set(err, -EIO, "cannot set up the archive reader: %s", archive_error_string(u.a));
                goto out;
        }
        if (archive_read_open_fd(u.a, fd, UNTAR_BLOCK) != ARCHIVE_OK) {
                q = archive_fail(&u, NULL);
                goto out;
        }
        for (;;) {
                struct archive_entry *e;
                int ar = archive_read_next_header(u.a, &e);

                if (ar == ARCHIVE_EOF)
                        break;
                if (ar < ARCHIVE_WARN) {
                        q = archive_fail(&u, NULL);
                        goto out;
                }
                if (++u.entries > SBX_MAX_FS_WALK) {
                        q = sbx_err_setr(err, -SBX_E_LIMIT, "too_many_entries", "the archive has more than %d entries",
                                         SBX_MAX_FS_WALK);
                        goto out;
                }
                q = untar_entry(&u, e);
                if (q < 0)
                        goto out;
        }
        dir_times_apply(&u);
        q = sync_dir_fs(r, dir, err);
        if (q < 0)
                goto out;
        res = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "path", u.dir, "files", (json_int_t)u.files, "dirs",
                        (json_int_t)u.dirs, "symlinks", (json_int_t)u.symlinks, "bytes", (json_int_t)u.bytes, "skipped",
                        (json_int_t)u.skipped);
        if (!res) {
                q = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        *ret = res;
        q = 0;
out:
        archive_read_free(u.a);
        free(u.times);
        free(u.tpaths);
        return q;
}

/* ---------- archiving ---------- */

struct tar {
        const struct files_root *r;
        struct sbx_err *err;
        const char *path; /* as the caller gave it, for messages */
        struct archive *a;
        struct archive_entry *e;
        int out_fd;
        int write_r; /* first error writing out_fd */
        dev_t dev;
        char *rel; /* the current entry's name (TAR_REL_MAX) */
        size_t rel_len;
        char *buf; /* TAR_BUF */
        uint64_t entries;
};

static la_ssize_t tar_write_cb(struct archive *a, void *data, const void *buf, size_t len)
{
        struct tar *t = data;
        int q;

        if (t->write_r < 0)
                return -1;
        q = write_all(t->out_fd, buf, len);
        if (q < 0) {
                t->write_r = q;
                archive_set_error(a, -q, "cannot write the archive: %s", strerror(-q));
                return -1;
        }
        return (la_ssize_t)len;
}

static int tar_fail(struct tar *t)
{
        if (t->write_r == -EPIPE)
                return sbx_err_set(t->err, -EPIPE, "the reader of the archive of '%s' went away", t->path);
        if (t->write_r < 0)
                return sbx_err_set(t->err, t->write_r, "cannot write the archive of '%s': %s", t->path,
                                   strerror(-t->write_r));
        return sbx_err_set(t->err, -EIO, "cannot archive '%s' ('%s'): %s", t->path, t->rel,
                           archive_error_string(t->a) ? archive_error_string(t->a) : "unknown error");
}


/* One entry: header, then (regular files, fd >= 0) st->st_size bytes of fd. */
static int tar_entry(struct tar *t, const struct stat *st, int fd, const char *target)
{
        struct archive_entry *e = t->e;
        off_t left;

        archive_entry_clear(e);
        archive_entry_copy_pathname(e, t->rel);
        archive_entry_set_mode(e, st->st_mode & (S_IFMT | 07777));
        archive_entry_set_uid(e, files__sandbox_id(st->st_uid, t->r->base_uid));
        archive_entry_set_gid(e, files__sandbox_id(st->st_gid, t->r->base_gid));
        archive_entry_set_mtime(e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
        if (S_ISREG(st->st_mode))
                archive_entry_set_size(e, st->st_size);
        else
                archive_entry_set_size(e, 0);
        if (target)
                archive_entry_copy_symlink(e, target);
        if (archive_write_header(t->a, e) < ARCHIVE_WARN)
                return tar_fail(t);
        if (!S_ISREG(st->st_mode) || fd < 0)
                return 0;
        /* a file that shrinks is padded with zeros by libarchive; one that grows is cut */
        for (left = st->st_size; left > 0;) {
                ssize_t n = read(fd, t->buf, left < TAR_BUF ? (size_t)left : TAR_BUF);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                if (archive_write_data(t->a, t->buf, (size_t)n) < 0)
                        return tar_fail(t);
                left -= n;
        }
        if (archive_write_finish_entry(t->a) < ARCHIVE_WARN)
                return tar_fail(t);
        return 0;
}

static int names_cmp(const void *a, const void *b, void *data)
{
        const char *buf = data;

        return strcmp(buf + *(const size_t *)a, buf + *(const size_t *)b);
}

/* The names of directory dfd, sorted bytewise: *ret_buf holds them NUL-ended, *ret_offs their
 * offsets. t->entries counts them against SBX_MAX_FS_WALK. */
static int tar_names(struct tar *t, int dfd, char **ret_buf, size_t **ret_offs, size_t *ret_n)
{
        _cleanup_free_ char *buf = NULL;
        _cleanup_free_ size_t *offs = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        size_t len = 0, cap = 0, n = 0, ocap = 0;
        struct dirent *de;
        int fd;

        fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                (void)close(fd);
                return -errno;
        }
        for (;;) {
                size_t k;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno)
                                return -errno;
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (++t->entries > SBX_MAX_FS_WALK)
                        return -SBX_E_LIMIT;
                k = strlen(de->d_name) + 1;
                if (len + k > cap) {
                        size_t c = cap ? cap * 2 : 4096;
                        char *p;

                        while (c < len + k)
                                c *= 2;
                        p = realloc(buf, c);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        cap = c;
                }
                if (n == ocap) {
                        size_t c = ocap ? ocap * 2 : 64;
                        size_t *p = reallocarray(offs, c, sizeof *p);

                        if (!p)
                                return -ENOMEM;
                        offs = p;
                        ocap = c;
                }
                offs[n++] = len;
                memcpy(buf + len, de->d_name, k);
                len += k;
        }
        if (n > 1)
                qsort_r(offs, n, sizeof *offs, names_cmp, buf);
        *ret_buf = TAKE_PTR(buf);
        *ret_offs = TAKE_PTR(offs);
        *ret_n = n;
        return 0;
}

static int tar_dir(struct tar *t, int dfd, unsigned depth);

/* The entry name of directory dfd (t->rel is its path). */
static int tar_child(struct tar *t, int dfd, const char *name, unsigned depth)
{
        _cleanup_close_ int fd = -EBADF;
        struct stat st, st2;

        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) < 0 || st.st_dev != t->dev)
                return 0; /* gone, or a mount point: not crossed */
        if (S_ISDIR(st.st_mode)) {
                int q;

                if (depth + 1 > SBX_MAX_FS_DEPTH)
                        return sbx_err_setr(t->err, -SBX_E_LIMIT, "too_many_entries",
                                            "'%s' is nested deeper than %d directories", t->path, SBX_MAX_FS_DEPTH);
                q = tar_entry(t, &st, -EBADF, NULL);
                if (q < 0)
                        return q;
                fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                if (fd < 0 || fstat(fd, &st2) < 0 || st2.st_dev != t->dev || !S_ISDIR(st2.st_mode) ||
                    files_check_fs(fd, t->path, NULL) < 0)
                        return 0;
                return tar_dir(t, fd, depth + 1);
        }
        if (S_ISREG(st.st_mode)) {
                fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
                if (fd < 0 || fstat(fd, &st2) < 0 || st2.st_dev != t->dev || !S_ISREG(st2.st_mode))
                        return 0; /* raced into something else: skipped */
                return tar_entry(t, &st2, fd, NULL);
        }
        if (S_ISLNK(st.st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlinkat(dfd, name, target, sizeof target - 1);

                if (n < 0)
                        return 0;
                target[n] = '\0';
                return tar_entry(t, &st, -EBADF, target);
        }
        return 0; /* FIFOs, sockets, devices */
}

static int tar_dir(struct tar *t, int dfd, unsigned depth)
{
        _cleanup_free_ char *names = NULL;
        _cleanup_free_ size_t *offs = NULL;
        size_t n = 0;
        int q;

        q = tar_names(t, dfd, &names, &offs, &n);
        if (q == -SBX_E_LIMIT)
                return sbx_err_setr(t->err, -SBX_E_LIMIT, "too_many_entries", "'%s' has more than %d entries", t->path,
                                    SBX_MAX_FS_WALK);
        if (q == -ENOMEM)
                return sbx_err_set(t->err, q, "out of memory");
        if (q < 0)
                return 0; /* unreadable: archived empty */
        for (size_t i = 0; i < n; i++) {
                const char *name = names + offs[i];
                size_t k = strlen(name), old = t->rel_len;

                if (old + (old > 0) + k + 1 > TAR_REL_MAX)
                        continue;
                if (old)
                        t->rel[t->rel_len++] = '/';
                memcpy(t->rel + t->rel_len, name, k + 1);
                t->rel_len += k;
                q = tar_child(t, dfd, name, depth);
                t->rel_len = old;
                t->rel[old] = '\0';
                if (q < 0)
                        return q;
        }
        return 0;
}

int files_tar(const struct files_root *r, const char *path, int out_fd, struct sbx_err *err)
{
        struct tar t = { .r = r, .err = err, .path = path, .out_fd = out_fd };
        char norm[SBX_MAX_FILE_PATH + 2];
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int q;

        q = files_path_check(path, path ? strlen(path) : 0, "path", err);
        if (q < 0)
                return q;
        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        q = files_open(r, path, O_RDONLY | O_NONBLOCK, &fd, err);
        if (q < 0)
                return q;
        if (fstat(fd, &st) < 0)
                return files_errno(err, errno, path);
        t.dev = st.st_dev;

        t.rel = malloc(TAR_REL_MAX);
        t.buf = malloc(TAR_BUF);
        t.a = archive_write_new();
        t.e = archive_entry_new();
        if (!t.rel || !t.buf || !t.a || !t.e) {
                q = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        t.rel[0] = '\0';
        if (archive_write_add_filter_gzip(t.a) != ARCHIVE_OK ||
            archive_write_set_format_pax_restricted(t.a) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(t.a, 1) != ARCHIVE_OK) {
                q = sbx_err_set(err, -EIO, "cannot set up the archive writer: %s", archive_error_string(t.a));
                goto out;
        }
        /* no timestamp in the gzip header: the same tree gives the same bytes */
        (void)archive_write_set_filter_option(t.a, "gzip", "timestamp", NULL);
        if (archive_write_open(t.a, &t, NULL, tar_write_cb, NULL) != ARCHIVE_OK) {
                q = tar_fail(&t);
                goto out;
        }
        if (S_ISDIR(st.st_mode)) {
                q = tar_dir(&t, fd, 0);
        } else {
                snprintf(t.rel, TAR_REL_MAX, "%s", strrchr(norm, '/') + 1);
                q = tar_entry(&t, &st, fd, NULL);
        }
        if (q < 0)
                goto out;
        t.rel[0] = '\0';
        if (archive_write_close(t.a) != ARCHIVE_OK) {
                q = tar_fail(&t);
                goto out;
        }
        q = 0;
out:
        if (t.a) {
                /* after a failure nothing more goes out: no end-of-archive blocks after a partial
                 * tree, the reader must not take it for a whole one */
                if (q < 0 && t.write_r == 0)
                        t.write_r = -ECANCELED;
                archive_write_free(t.a);
        }
        archive_entry_free(t.e);
        free(t.rel);
        free(t.buf);
        return q;
}
