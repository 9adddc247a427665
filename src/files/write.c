// SPDX-License-Identifier: Apache-2.0
/*
 * Atomic writes and batches of the files API (files.h). New content goes into an unnamed
 * O_TMPFILE in the target's directory (a hidden ".sbx-tmp-*" file, created O_EXCL|O_NOFOLLOW, where
 * the filesystem lacks O_TMPFILE), is chowned before its first byte and put in place with one
 * rename: a reader sees the old or the new file, never a mix, and an aborted write leaves the old
 * one. The rename replaces whatever entry has the name, a symbolic link included: writing over a
 * link replaces the link itself and never writes through it (where it points is the sandbox's
 * choice, and host root must not write there). Mount points are never replaced. Directories are
 * only ever resolved by path.c; everything here works on a directory fd and one name. No logging.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/limits.h"
#include "common/util.h"
#include "files-internal.h"
#include "files.h"

#define TMP_NAME_TRIES 16 /* fresh random names before giving up on EEXIST */

struct files_writer {
        int fd;         /* owned: the new content */
        int dirfd;      /* owned: the target's directory */
        bool named;     /* tmp exists in dirfd and must go on abort */
        unsigned flags; /* enum files__writer_flags */
        bool nosync;    /* files_write_opts.nosync */
        mode_t mode;    /* set at commit, after the chown */
        char name[NAME_MAX + 1];
        char tmp[FILES__TMP_NAME_MAX];
        char path[SBX_MAX_FILE_PATH + 1]; /* the target as the caller named it, for messages */
};


static void files_writer_abortp(struct files_writer **w)
{
        files_writer_abort(*w);
}

int files__tmp_name(char buf[static FILES__TMP_NAME_MAX])
{
        static const char hex[] = "0123456789abcdef";
        unsigned char rnd[8];
        int q;

        q = sbx_random_bytes(rnd, sizeof rnd);
        if (q < 0)
                return q;
        memcpy(buf, ".sbx-tmp-", 9);
        for (size_t i = 0; i < sizeof rnd; i++) {
                buf[9 + 2 * i] = hex[rnd[i] >> 4];
                buf[10 + 2 * i] = hex[rnd[i] & 15];
        }
        buf[9 + 2 * sizeof rnd] = '\0';
        return 0;
}

int files__writer_open_at(const struct files_root *r, int dirfd, const char *name, const char *path,
                          const struct files_write_opts *o, unsigned flags, struct files_writer **ret,
                          struct sbx_err *err)
{
        _cleanup_(files_writer_abortp) struct files_writer *w = NULL;
        uid_t uid = r->uid;
        gid_t gid = r->gid;
        mode_t mode = 0644;
        struct stat st;
        int q;

        if (strlen(name) > NAME_MAX)
                return files_errno(err, ENAMETOOLONG, path);
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0) {
                if (S_ISDIR(st.st_mode))
                        return files_errno(err, EISDIR, path);
                if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
                        return sbx_err_setr(err, -SBX_E_INVALID, "not_a_regular_file",
                                            "'%s' is not a regular file: it cannot be written", path);
                q = files__is_mount(dirfd, name);
                if (q < 0 && q != -ENOENT)
                        return files_errno(err, -q, path);
                if (q > 0)
                        return sbx_err_setr(err, -SBX_E_FORBIDDEN, "path_forbidden",
                                            "'%s' is a mount point: it cannot be replaced", path);
                /* a replaced file keeps owner and mode; a replaced symlink has neither worth keeping.
                 * Only ids of the sandbox are kept: host root never writes content the API chose
                 * into a file owned by a host id (a set-id one, say, in a bind of a host dir). */
                if (S_ISREG(st.st_mode)) {
                        mode = st.st_mode & 07777;
                        if (!(flags & FILES__W_ROOT_OWNER) && files__sandbox_owns(st.st_uid, r->base_uid) &&
                            files__sandbox_owns(st.st_gid, r->base_gid)) {
                                uid = st.st_uid;
                                gid = st.st_gid;
                        }
                }
        } else if (errno != ENOENT)
                return files_errno(err, errno, path);
        if (o && o->has_mode)
                mode = o->mode & 07777;

        w = calloc(1, sizeof *w);
        if (!w)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        w->fd = w->dirfd = -EBADF;
        w->flags = flags;
        w->nosync = o && o->nosync;
        w->mode = mode;
        snprintf(w->name, sizeof w->name, "%s", name);
        snprintf(w->path, sizeof w->path, "%s", path);
        w->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        if (w->dirfd < 0)
                return files_errno(err, errno, path);

        w->fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
                /* no O_TMPFILE here: a hidden name, never an existing entry or a link */
                for (int i = 0; i < TMP_NAME_TRIES; i++) {
                        q = files__tmp_name(w->tmp);
                        if (q < 0)
                                return sbx_err_set(err, q, "cannot make a temp name for '%s'", path);
                        w->fd = openat(dirfd, w->tmp, O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR | O_CLOEXEC, 0600);
                        if (w->fd >= 0 || errno != EEXIST)
                                break;
                }
                w->named = w->fd >= 0;
        }
        if (w->fd < 0)
                return files_errno(err, errno, path);
        /* before the first byte: nothing of the content is ever owned by host root */
        if (fchown(w->fd, uid, gid) < 0)
                return files_errno(err, errno, path);
        *ret = TAKE_PTR(w);
        return 0;
}

int files_writer_open(const struct files_root *r, const char *path, const struct files_write_opts *o,
                      struct files_writer **ret, struct sbx_err *err)
{
        _cleanup_close_ int dirfd = -EBADF;
        char name[NAME_MAX + 1];
        int q;

        q = files_open_parent(r, path, o && o->mkparents, &dirfd, name, err);
        if (q < 0)
                return q;
        return files__writer_open_at(r, dirfd, name, path, o, 0, ret, err);
}

int files_writer_fd(const struct files_writer *w)
{
        return w->fd;
}

void files_writer_abort(struct files_writer *w)
{
        if (!w)
                return;
        if (w->named)
                (void)unlinkat(w->dirfd, w->tmp, 0);
        safe_close(w->fd);
        safe_close(w->dirfd);
        free(w);
}

int files_writer_commit(struct files_writer *w_, struct sbx_err *err)
{
        _cleanup_(files_writer_abortp) struct files_writer *w = w_;
        bool noreplace = w->flags & FILES__W_NOREPLACE;
        char proc[64];
        int q;

        if (!w->nosync && fsync(w->fd) < 0)
                return files_errno(err, errno, w->path);
        /* after the chown (which clears setuid/setgid) */
        if (fchmod(w->fd, w->mode) < 0)
                return files_errno(err, errno, w->path);
        /* a mount point may have been put there while the content streamed in */
        q = files__is_mount(w->dirfd, w->name);
        if (q < 0 && q != -ENOENT)
                return files_errno(err, -q, w->path);
        if (q > 0)
                return sbx_err_setr(err, -SBX_E_FORBIDDEN, "path_forbidden",
                                    "'%s' is a mount point: it cannot be replaced", w->path);
        if (!w->named) {
                /* give the O_TMPFILE a name: linkat through /proc needs no CAP_DAC_READ_SEARCH */
                snprintf(proc, sizeof proc, "/proc/self/fd/%d", w->fd);
                if (noreplace) {
                        /* link(2) never replaces: EEXIST is the answer we want */
                        if (linkat(AT_FDCWD, proc, w->dirfd, w->name, AT_SYMLINK_FOLLOW) < 0)
                                return files_errno(err, errno, w->path);
                        return 0;
                }
                for (int i = 0;; i++) {
                        q = files__tmp_name(w->tmp);
                        if (q < 0)
                                return sbx_err_set(err, q, "cannot make a temp name for '%s'", w->path);
                        if (linkat(AT_FDCWD, proc, w->dirfd, w->tmp, AT_SYMLINK_FOLLOW) >= 0)
                                break;
                        if (errno != EEXIST || i + 1 == TMP_NAME_TRIES)
                                return files_errno(err, errno, w->path);
                }
                w->named = true;
        }
        if (renameat2(w->dirfd, w->tmp, w->dirfd, w->name, noreplace ? RENAME_NOREPLACE : 0) < 0)
                return files_errno(err, errno, w->path); /* the abort drops the temp name */
        w->named = false;
        return 0;
}

int files_write(const struct files_root *r, const char *path, const void *data, size_t len,
                const struct files_write_opts *o, struct sbx_err *err)
{
        struct files_writer *w = NULL;
        int q;

        q = files_writer_open(r, path, o, &w, err);
        if (q < 0)
                return q;
        q = write_all(w->fd, data, len);
        if (q < 0) {
                files_writer_abort(w);
                return files_errno(err, -q, path);
        }
        return files_writer_commit(w, err);
}

/* ---------- batch ---------- */

struct batch_item {
        char *norm;   /* the op's normalised path (owned) */
        size_t index; /* in the caller's array */
};

static int batch_item_cmp(const void *a_, const void *b_)
{
        const struct batch_item *a = a_, *b = b_;
        int c = strcmp(a->norm, b->norm);

        if (c != 0)
                return c;
        return a->index < b->index ? -1 : a->index > b->index;
}

/* One op's result; the message may quote non-UTF-8 names */
static json_t *batch_result(const char *path, const struct files_batch_op *op, int q, const struct sbx_err *e)
{
        const char *code = e->reason[0]                     ? e->reason
                           : (q == -ENOSPC || q == -EDQUOT) ? "insufficient_storage"
                                                            : "internal";
        const char *msg = e->msg[0] ? e->msg : strerror(-q);
        json_t *res, *error;

        res = json_pack("{s:s, s:s, s:b}", "path", path, "op", op->kind == FILES_BATCH_WRITE ? "write" : "delete", "ok",
                        q >= 0);
        if (!res || q >= 0)
                return res;
        error = json_object();
        if (!error || json_object_set_new(res, "error", error) < 0 ||
            json_object_set_new(error, "code", json_string(code)) < 0 ||
            json_object_set_new(error, "message", json_string_utf8(msg, strlen(msg))) < 0) {
                json_decref(res);
                return NULL;
        }
        return res;
}

/*
 * Results carry the normalised path: ops on "a" and "/a" are one path, and the result list is in
 * that form's order. Each op's outcome is its own; a failed one leaves the others standing.
 */
int files_batch(const struct files_root *r, const struct files_batch_op *ops, size_t n, json_t **ret,
                struct sbx_err *err)
{
        _cleanup_free_ struct batch_item *items = NULL;
        json_t *results = NULL, *out;
        size_t done = 0;
        int q = 0;

        if (n > SBX_MAX_BATCH_OPS)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "a batch holds at most %d operations",
                                    SBX_MAX_BATCH_OPS);
        if (n > 0 && !ops)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "the batch has no operations");
        items = calloc(n + 1, sizeof *items);
        if (!items)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        for (; done < n; done++) {
                const struct files_batch_op *op = &ops[done];
                char what[48];

                snprintf(what, sizeof what, "operations[%zu].path", done);
                if (!op->path) {
                        q = sbx_err_setr(err, -SBX_E_INVALID, "invalid_path", "'%s' is missing", what);
                        break;
                }
                q = files_path_check(op->path, strlen(op->path), what, err);
                if (q < 0)
                        break;
                if ((op->kind != FILES_BATCH_WRITE && op->kind != FILES_BATCH_DELETE) ||
                    (op->kind == FILES_BATCH_WRITE && !op->data && op->len > 0)) {
                        q = sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                         "'operations[%zu]' is not a valid operation", done);
                        break;
                }
                items[done].index = done;
                items[done].norm = malloc(SBX_MAX_FILE_PATH + 2);
                if (!items[done].norm) {
                        q = sbx_err_set(err, -ENOMEM, "out of memory");
                        break;
                }
                if (files_path_normalize(op->path, items[done].norm, SBX_MAX_FILE_PATH + 2) < 0) {
                        done++;
                        q = files_errno(err, ENAMETOOLONG, what);
                        break;
                }
        }
        if (q >= 0) {
                qsort(items, n, sizeof *items, batch_item_cmp);
                results = json_array();
                if (!results)
                        q = sbx_err_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; q >= 0 && i < n; i++) {
                const struct files_batch_op *op = &ops[items[i].index];
                struct files_write_opts o = { .has_mode = op->has_mode, .mode = op->mode, .mkparents = true };
                struct sbx_err e = {};
                int r2;

                /* for each path only the last op counts */
                if (i + 1 < n && strcmp(items[i].norm, items[i + 1].norm) == 0)
                        continue;
                if (op->kind == FILES_BATCH_WRITE)
                        r2 = files_write(r, op->path, op->data, op->len, &o, &e);
                else
                        r2 = files_delete(r, op->path, false, &e);
                if (json_array_append_new(results, batch_result(items[i].norm, op, r2, &e)) < 0)
                        q = sbx_err_set(err, -ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < done; i++)
                free(items[i].norm);
        if (q < 0) {
                json_decref(results);
                return q;
        }
        out = json_object();
        /* set_new drops results when out is NULL */
        if (json_object_set_new(out, "results", results) < 0) {
                json_decref(out);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        *ret = out;
        return 0;
}
