/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file operations behind the files API (docs/files.md), on a directory tree the caller hands
 * over as a root fd: a running sandbox's root (/proc/PID/root) or a stopped one's overlay (a
 * detached mount). Knows nothing about sandboxes, HTTP or the loop: every function blocks, so the
 * core calls them on the worker pool. No logging.
 *
 * Safety (DESIGN §3): every path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
 * against the root, one call per lookup, so "..", absolute symlinks, symlinks in any component and
 * /proc magic links stay inside the root. Whatever is reached must live on a disk or memory
 * filesystem (files_check_fs; procfs, sysfs, devpts, cgroupfs ... are refused: sbxd runs as host root and must not
 * write /proc/PID/... or cgroup files for the sandbox). Only regular files are read or written:
 * FIFOs, sockets and devices are refused before they are opened (no hang, no side effect).
 * Created files and directories are chowned to the root's owner (struct files_root); a replaced
 * file keeps its owner and mode unless a mode is given.
 *
 * Paths: absolute or relative (relative = from "/"), at most SBX_MAX_FILE_PATH bytes, valid UTF-8,
 * no NUL, components at most NAME_MAX bytes. "." and ".." are allowed (they cannot leave the root).
 *
 * Errors are -SBX_E_* with a stable reason (errors travel to the API unchanged):
 *   -SBX_E_INVALID   invalid_path, not_a_directory, is_a_directory, not_a_regular_file,
 *                    invalid_value (bad option), name_too_long, too_many_links (ELOOP)
 *   -SBX_E_NOT_FOUND file_not_found
 *   -SBX_E_CONFLICT  already_exists, directory_not_empty, read_only (EROFS), busy (EBUSY, ETXTBSY)
 *   -SBX_E_FORBIDDEN path_forbidden (a pseudo filesystem, a mount point the API may not replace)
 *   -SBX_E_LIMIT     too_many_entries (a walk passed SBX_MAX_FS_WALK or SBX_MAX_FS_DEPTH)
 *   -ENOSPC/-EDQUOT  disk full (the API answers 503 insufficient_storage)
 *   other -errno     internal failures (500)
 * Messages name the path as the caller gave it.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/limits.h"

struct files_root {
        int fd;         /* the root directory (O_PATH is enough); not owned */
        uid_t uid;      /* host ids given to what is created here (the sandbox's root, or the user */
        gid_t gid;      /* a call acts as: files_root_as) */
        uid_t base_uid; /* host id of the sandbox's root: an id inside is host id - base, for ids */
        gid_t base_gid; /* in [base, base + SBX_UID_RANGE) */
};

/* ---------- paths (path.c) ---------- */

/* Check a user path (len bytes, which may contain NUL: that is an error). what names the field in
 * messages ("path", "destination"). */
int files_path_check(const char *path, size_t len, const char *what, struct sbx_err *err);

/*
 * Open path inside the root. flags: open(2) flags (O_CLOEXEC is added; O_CREAT is not allowed);
 * O_PATH with O_NOFOLLOW opens a final symlink itself. Checks the filesystem (see above). Refuses a
 * FIFO/socket/device unless flags has O_PATH.
 */
int files_open(const struct files_root *r, const char *path, int flags, int *ret_fd, struct sbx_err *err);

/*
 * Open the directory holding path's last component and copy that component to name. path "/" (or
 * anything that normalises to it) is invalid_path ("the root cannot be ..." with what). With
 * mkparents, missing parent directories are created (mode 0755, chowned).
 */
int files_open_parent(const struct files_root *r, const char *path, bool mkparents, int *ret_dirfd,
                      char name[static 256], struct sbx_err *err);

/* Open a regular file for reading; *ret_st is its fstat. is_a_directory / not_a_regular_file. */
int files_open_read(const struct files_root *r, const char *path, int *ret_fd, struct stat *ret_st,
                    struct sbx_err *err);

/* ---------- metadata and tree operations (ops.c) ---------- */

/*
 * Entry JSON (stat and list): {"name", "path" (absolute, normalised), "type": "file" | "dir" |
 * "symlink" | "fifo" | "socket" | "chardev" | "blockdev", "size", "mode" (number, permission bits
 * and setuid/setgid/sticky: st_mode & 07777), "mtime" (RFC 3339 with ms), "uid", "gid" (ids as
 * the sandbox sees them: host id - root uid/gid, or 65534 when outside its range), "symlinkTarget"
 * (symlinks only: readlink text, never followed)}.
 */
int files_stat(const struct files_root *r, const char *path, json_t **ret, struct sbx_err *err);

struct files_list_opts {
        bool recursive;     /* walk subdirectories (symlinks are listed, never followed) */
        unsigned max_depth; /* recursive: levels listed (1 = the directory's own entries, 2 = also
                             * its subdirectories' ...); 0 = all */
        size_t limit;       /* entries per page: 1..SBX_MAX_FS_LIST_LIMIT (0 = default) */
        const char *cursor; /* NULL or a previous page's nextCursor: continue after it */
};
/*
 * {"entries": [entry...], "nextCursor": string | null}. Entries are sorted by path (bytewise);
 * a recursive listing lists a directory's entry before its content. The cursor is the last
 * returned path; a page returns the entries after it (entries added or removed between pages
 * show up or not, nothing repeats). The directory itself is not listed.
 */
int files_list(const struct files_root *r, const char *path, const struct files_list_opts *o, json_t **ret,
               struct sbx_err *err);

/* mkdir; parents: like mkdir -p (an existing directory is fine, else already_exists). */
int files_mkdir(const struct files_root *r, const char *path, bool parents, mode_t mode, struct sbx_err *err);
/* rename(2) inside the root. Without overwrite an existing destination is already_exists. With
 * parents, the destination's missing parents are created. */
int files_move(const struct files_root *r, const char *from, const char *to, bool overwrite, bool parents,
               struct sbx_err *err);
/* Copy a file, symlink (as a link) or directory tree (recursive). Copies get the root's owner and
 * the source's mode. Without overwrite an existing destination is already_exists; with it, files
 * are replaced and directories merged. */
int files_copy(const struct files_root *r, const char *from, const char *to, bool overwrite, bool parents,
               struct sbx_err *err);
/* Delete a file, symlink or (recursive) directory tree; never follows symlinks, never crosses a
 * mount point. A missing path is file_not_found; a non-empty directory without recursive is
 * directory_not_empty; "/" is invalid_path. */
int files_delete(const struct files_root *r, const char *path, bool recursive, struct sbx_err *err);
/* chmod (mode & 07777), not following a final symlink (a symlink is invalid_value). */
int files_chmod(const struct files_root *r, const char *path, mode_t mode, struct sbx_err *err);

/* ---------- atomic writes (write.c) ---------- */

struct files_write_opts {
        bool has_mode;
        mode_t mode;     /* & 07777; default: the replaced file's mode, else 0644 */
        bool mkparents;  /* create missing parent directories */
        bool nosync;     /* no fsync at commit: the caller syncfs()es once after many files */
};

struct files_writer;
/*
 * Start replacing path: an unnamed temp file (O_TMPFILE; a hidden ".sbx-tmp-*" name where the
 * filesystem lacks it) in path's directory, chowned to the root's owner (or the replaced file's
 * owner) before a byte is written. The caller writes the content into files_writer_fd().
 * An existing directory at path is is_a_directory; a non-regular file (FIFO, ...) is
 * not_a_regular_file.
 */
int files_writer_open(const struct files_root *r, const char *path, const struct files_write_opts *o,
                      struct files_writer **ret, struct sbx_err *err);
int files_writer_fd(const struct files_writer *w);
/* fsync, set the mode, put the file in place atomically (a reader sees the old or the new content,
 * never a mix). Frees w, also on failure (then the old file is untouched). */
int files_writer_commit(struct files_writer *w, struct sbx_err *err);
/* Drop the temp file; the old content stays. Frees w. Safe with NULL. */
void files_writer_abort(struct files_writer *w);
/* open + write(data) + commit */
int files_write(const struct files_root *r, const char *path, const void *data, size_t len,
                const struct files_write_opts *o, struct sbx_err *err);

/* ---------- batch (write.c) ---------- */

enum files_batch_kind { FILES_BATCH_WRITE, FILES_BATCH_DELETE };
struct files_batch_op {
        const char *path;
        enum files_batch_kind kind;
        const void *data; /* write: the content */
        size_t len;
        bool has_mode;
        mode_t mode;
};
/*
 * Apply ops: for each path only the last op counts; paths are applied in bytewise order of their
 * normalised form; writes create missing parents (chowned), a
 * delete of a missing path is an error for that path only. Each op's outcome is independent.
 * *ret = {"results": [{"path", "op": "write" | "delete", "ok": true} | {..., "ok": false,
 * "error": {"code", "message"}}]} in application order. Returns 0 even when some ops failed;
 * < 0 only when nothing could be tried (bad op array).
 */
int files_batch(const struct files_root *r, const struct files_batch_op *ops, size_t n, json_t **ret,
                struct sbx_err *err);

/* ---------- search and replace (search.c) ---------- */

struct files_search_opts {
        const char *path;     /* file or directory to search (recursively) */
        const char *pattern;  /* literal text, or a POSIX extended regex when regex */
        bool regex;
        bool ignore_case;
        const char *glob;     /* NULL, or fnmatch(3) pattern on the base name: only matching files */
        size_t max_results;   /* 1..SBX_MAX_SEARCH_RESULTS (0 = default) */
};
/*
 * Search every regular file under path (symlinks not followed, files over SBX_MAX_SEARCH_FILE
 * skipped) line by line. *ret = {"matches": [{"file", "line" (1-based), "column" (1-based, in
 * characters for valid UTF-8 lines, else bytes), "content" (the line, at most SBX_MAX_SEARCH_LINE
 * bytes, cut at a character boundary) | "contentBase64" (when the line is not valid UTF-8)}],
 * "truncated": bool (max_results reached), "filesSearched", "filesSkipped"}. Lines end at \n.
 */
int files_search(const struct files_root *r, const struct files_search_opts *o, json_t **ret,
                 struct sbx_err *err);

struct files_replace_opts {
        const char *const *files; /* paths of regular files */
        size_t n_files;           /* 1..SBX_MAX_REPLACE_FILES */
        const char *pattern;      /* literal, or POSIX extended regex when regex; not empty */
        const char *replacement;  /* literal text ("\\N" back-references with regex: \0..\9) */
        bool regex;
        bool ignore_case;
};
/*
 * Replace every occurrence in each file (atomically per file, through files_writer; owner and
 * mode kept; a file without a match is not rewritten). Binary content is fine (matching works on
 * bytes; regex matching stops at NUL bytes: such files are replaced only in literal mode and
 * reported as not_a_text_file in regex mode). *ret = {"results": [{"file", "replacements": N} |
 * {"file", "error": {"code", "message"}}], "totalReplacements"}. Returns 0 even when some files
 * failed; < 0 only for bad options (bad regex is invalid_value naming "pattern").
 */
int files_replace(const struct files_root *r, const struct files_replace_opts *o, json_t **ret,
                  struct sbx_err *err);

/* ---------- archives (archive.c) ---------- */

/*
 * Extract the tar stream read from fd (plain, gzip, zstd, xz, bzip2: libarchive detects) into the
 * directory dir (created with parents if missing). Each entry goes through the same resolution as
 * every API path (it cannot leave dir's root, nor write through a symlink the archive planted
 * earlier: the parent of each entry is resolved with RESOLVE_IN_ROOT and the entry is created with
 * O_NOFOLLOW / replaced atomically). Absolute names are made relative to dir, names with ".." are
 * refused (the whole request fails with invalid_value naming the entry, what was extracted stays).
 * Regular files, directories, symlinks and hard links (to entries inside dir) are created; devices,
 * FIFOs and sockets are skipped. Owners: the root's owner plus the entry's uid/gid when < 65536.
 * Modes kept (& 07777). *ret = {"path": dir, "files", "dirs", "symlinks", "bytes", "skipped"}.
 */
int files_untar(const struct files_root *r, const char *dir, int fd, json_t **ret, struct sbx_err *err);
/*
 * Write the tree at path (a directory, or one file) as a gzip-compressed tar to out_fd (blocking
 * writes: a pipe gives back-pressure). Names are relative to path ("./" not prefixed); symlinks
 * are stored as links; special files are skipped; uid/gid as the sandbox sees them. Returns 0 or
 * -errno (-EPIPE: the reader went away).
 */
int files_tar(const struct files_root *r, const char *path, int out_fd, struct sbx_err *err);

/* ---------- watchers (watch.c) ---------- */

/* FILES_EV_OVERFLOW: the kernel's event queue overflowed, events were lost (path: the watched
 * directory); a client that mirrors the tree should list it again. */
enum files_event_type {
        FILES_EV_ADD,
        FILES_EV_CHANGE,
        FILES_EV_UNLINK,
        FILES_EV_ADD_DIR,
        FILES_EV_UNLINK_DIR,
        FILES_EV_OVERFLOW,
};
enum files_watch_content { FILES_CONTENT_NONE, FILES_CONTENT_TEXT, FILES_CONTENT_BASE64 };

struct files_event {
        enum files_event_type type;
        const char *path;    /* absolute path inside the root */
        const char *content; /* add/change with content requested: the file's bytes (NUL-terminated
                              * copy; len bytes), NULL otherwise or when it could not be read */
        size_t len;
        bool truncated;      /* content cut at max_content */
};

struct files_watch_opts {
        bool recursive;
        const char *const *ignore; /* fnmatch(3) globs, matched against the path relative to the
                                    * watched dir (FNM_PATHNAME off) and against the base name */
        size_t n_ignore;           /* <= SBX_MAX_WATCH_IGNORE */
        enum files_watch_content content;
        size_t max_content;        /* bytes, <= SBX_MAX_WATCH_CONTENT (0 = that) */
};

struct files_watch;
/* Watch the directory path. The watch owns an inotify fd (non-blocking); the caller polls
 * files_watch_fd() for POLLIN and calls files_watch_read(). */
int files_watch_new(const struct files_root *r, const char *path, const struct files_watch_opts *o,
                    struct files_watch **ret, struct sbx_err *err);
int files_watch_fd(const struct files_watch *w);
/*
 * Read what inotify has and call cb for every event. A directory created under a recursive watch
 * is watched at once and its content reported as add/addDir (races with files created in it are
 * covered: nothing is missed, an entry may be reported twice). Returns 0; -ENOENT when the watched
 * directory itself is gone (the watch is over); other -errno on failure (-ENOSPC: the inotify
 * watch limit was reached).
 */
int files_watch_read(struct files_watch *w, void (*cb)(void *data, const struct files_event *ev), void *data);
void files_watch_free(struct files_watch *w);
const char *files_event_type_to_string(enum files_event_type t); /* "add", "change", ... */

/* ---------- users (users.c) ---------- */

struct files_user {
        uid_t uid, gid; /* as the sandbox sees them */
        char name[256];
        char home[SBX_MAX_FILE_PATH + 1];
};
/*
 * A user of the sandbox by name or number, from its own /etc/passwd (read through files_open, at
 * most 1 MiB). A number without an entry is that uid with the same gid and home "/". Unknown names:
 * -SBX_E_NOT_FOUND user_not_found; malformed: -SBX_E_INVALID invalid_value.
 */
int files_user_lookup(const struct files_root *r, const char *user, struct files_user *ret, struct sbx_err *err);
/* *ret = r acting as u: created files and directories belong to u. */
int files_root_as(const struct files_root *r, const struct files_user *u, struct files_root *ret);

/* ---------- identity (path.c) ---------- */

/*
 * Act as the root's owner on the calling thread: fsuid/fsgid = r->uid/gid, with the filesystem
 * capabilities kept (raised again after the id change dropped them). A sandbox's overlay and
 * tmpfs are mounted in its user namespace, where host root has no id: the kernel refuses to
 * create anything there for it (EOVERFLOW). As the sandbox's root, new inodes are the sandbox's
 * from the start. Call around every operation that may create (the core does, for each job);
 * files_identity_leave() restores root's. Returns 0 or -errno (then nothing changed).
 */
int files_identity_enter(const struct files_root *r);
void files_identity_leave(void);

/* ---------- shared helpers (path.c) ---------- */

/* errno from a file syscall on path -> sbx_err with the table above. Returns the code. */
int files_errno(struct sbx_err *err, int errnum, const char *path);
/* The normalised absolute form of path ("a//b/./c" -> "/a/b/c", ".." kept lexically resolved
 * against "/": "/../x" -> "/x"). buf >= SBX_MAX_FILE_PATH + 2. Returns 0 or -ENAMETOOLONG. */
int files_path_normalize(const char *path, char *buf, size_t size);
/* fchown fd to the root's owner. */
int files_chown_fd(const struct files_root *r, int fd);
/* Whether fd's filesystem may be touched: an allowlist of disk and memory filesystems (overlay,
 * tmpfs, ext2/3/4, xfs, btrfs: a sandbox's root, its /tmp, the read-only binds of the host
 * template, a plain directory in unit tests). 0 or -SBX_E_FORBIDDEN path_forbidden naming path. */
int files_check_fs(int fd, const char *path, struct sbx_err *err);
