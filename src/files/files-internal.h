/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/files: the fd-based pieces ops.c and write.c share (a writer on a directory fd
 * already resolved, the mount point test, temp names). Nothing here resolves a user path; callers
 * got their directory fd from files_open / files_open_parent or from a walk. No logging.
 */
#pragma once

#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <stdint.h>

#include "common/limits.h"
#include "files.h"

#define FILES__TMP_NAME_MAX 32 /* ".sbx-tmp-" + 16 hex digits + NUL fits */

enum files__writer_flags {
        FILES__W_ROOT_OWNER = 1 << 0, /* give the root's owner even when a file is replaced (copies) */
        FILES__W_NOREPLACE = 1 << 1,  /* the commit fails with already_exists if name exists by then */
};

/*
 * files_writer_open on an already resolved directory: dirfd (borrowed; the writer keeps its own
 * copy) holds name, path names the target in messages. flags: enum files__writer_flags.
 */
int files__writer_open_at(const struct files_root *r, int dirfd, const char *name, const char *path,
                          const struct files_write_opts *o, unsigned flags, struct files_writer **ret,
                          struct sbx_err *err);

/*
 * 1 if name in dirfd (not followed) is the root of a mount, 0 if not, -errno (-ENOENT: no such
 * name). The daemon sits in another mount namespace than a running sandbox, and there the kernel
 * lets unlink/rename detach a mount whose mount point is removed or replaced (it answers EBUSY only
 * for mounts of the caller's own namespace): every replace or remove asks this first.
 */
int files__is_mount(int dirfd, const char *name);

/* A fresh hidden temp name ".sbx-tmp-<16 hex>" into buf. Returns 0 or -errno. */
int files__tmp_name(char buf[static FILES__TMP_NAME_MAX]);

/* How often a plain listing found its directory's names in the cache (ops.c), and how often not
 * (tests). */
void files__list_cache_stats(uint64_t *ret_hits, uint64_t *ret_misses);

/* ---------- ids ---------- */

#define FILES__NOBODY 65534 /* what the sandbox sees for a host id outside its range */

/* Whether the host id belongs to the sandbox whose ids start at base. */
static inline bool files__sandbox_owns(unsigned id, unsigned base)
{
        return id >= base && id - base < SBX_UID_RANGE;
}

/* host id -> the id the sandbox sees (FILES__NOBODY outside its range) */
static inline unsigned files__sandbox_id(unsigned host, unsigned base)
{
        return files__sandbox_owns(host, base) ? host - base : FILES__NOBODY;
}

/* ---------- shared by ops.c and list.c ---------- */

static inline void files__closedirp(DIR **d)
{
        if (*d)
                (void)closedir(*d);
}

/* The mtime text of the last second formatted: entries of a page mostly share a few seconds. */
struct files__mtime_memo {
        int64_t sec;   /* of text; -1: nothing yet */
        char text[32]; /* "YYYY-MM-DDTHH:MM:SS." */
};

/*
 * The entry JSON of files.h; target: a symlink's text (target_len bytes) or NULL. utf8: path and
 * name are known to be valid UTF-8 (a listing's keys), else they are checked and sanitised.
 */
json_t *files__entry_json(const struct files_root *r, const char *path, size_t path_len, const char *name,
                          size_t name_len, bool utf8, const struct stat *st, const char *target, size_t target_len,
                          struct files__mtime_memo *memo);

/* A path for messages, grown and cut as a walk goes down and up. A name that does not fit is left
 * out (the message then names the deepest directory that fitted). */
struct files__pathbuf {
        size_t len;
        unsigned hidden; /* names pushed but not appended */
        char s[SBX_MAX_FILE_PATH + 1];
};
void files__pathbuf_init(struct files__pathbuf *p, const char *norm);

/* A recursive walk's state: it stays on one filesystem, is bounded in depth and entries. */
struct files__walk {
        dev_t dev;                  /* the top directory's filesystem: a walk never leaves it */
        unsigned depth;             /* of the directory being read; the top is 0 */
        size_t count;               /* entries seen, against SBX_MAX_FS_WALK */
        struct files__pathbuf path; /* the entry at hand */
};

/* Count one more entry: -SBX_E_LIMIT too_many_entries past SBX_MAX_FS_WALK. */
int files__walk_count(struct files__walk *w, struct sbx_err *err);

enum {
        WALK_ENTERED,
        WALK_MOUNT,
        WALK_GONE
};

/*
 * Open the subdirectory name of parentfd (w->path names it) for reading. Returns WALK_ENTERED with
 * *ret_fd, WALK_MOUNT (a mount point or another filesystem: not entered), WALK_GONE (vanished, or no
 * directory any more), or < 0 with err set.
 */
int files__walk_enter(struct files__walk *w, int parentfd, const char *name, int *ret_fd, struct sbx_err *err);

/* readdir's next entry other than "." and ".."; NULL at the end (errno set on failure, else 0). */
struct dirent *files__next_entry(DIR *d);
