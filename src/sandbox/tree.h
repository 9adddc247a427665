/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Directory trees handled exactly, for snapshots of a sandbox's overlay upper, checkpoint restores
 * and template layers: a copy (tree_copy), an id shift in place (tree_shift_ids) and a removal
 * (tree_remove). A copy keeps regular files (reflinked where the filesystem can, else
 * copy_file_range, holes kept), directories, symlinks, hardlinks (as links within the copy),
 * character and block devices (overlay whiteouts are character devices 0/0), fifos; owners
 * (optionally shifted from one id range to another, including the ids inside POSIX ACLs and the
 * root id of namespaced file capabilities), modes with setuid bits, every xattr (user.overlay.* for
 * opaque dirs and redirects, security.capability, trusted.* as root), and atimes/mtimes. Sockets
 * are skipped. Symlinks are never followed and no walk crosses into another mount or filesystem.
 *
 * One iterative walk per call, no recursion: a directory stack at most SBX_TREE_MAX_DEPTH deep,
 * holding one open directory per level (so up to that many fds, two per level for a copy).
 * Not safe against a tree that changes while it is walked (freeze the sandbox first); a change
 * makes the call fail or copy a mix, never follow a symlink. Blocking: call these from a worker
 * thread. Any thread. No logging. Both sides are parent side (sbxd).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "common/limits.h"

/* Directory levels below the root a walk follows (deeper: -SBX_E_TOO_LARGE). Real trees stay far
 * below it (node_modules nest ~20 deep); it is SBX_MAX_FS_DEPTH, what the files API walks. Each
 * open level costs one fd (two for a copy) and a stack frame, not C stack. */
#define SBX_TREE_MAX_DEPTH SBX_MAX_FS_DEPTH
/* Entries one walk visits (more: -SBX_E_TOO_LARGE). Bounds time and the hardlink table. */
#define SBX_TREE_MAX_ENTRIES 10000000ULL

struct tree_copy_opts {
        uid_t id_from, id_to; /* ids in [id_from, id_from + 65536) become id - id_from + id_to
                               * (equal: ids kept); both ranges must end below (uid_t)-1 */
        bool keep_foreign;    /* ids outside that range: copied as they are (else the copy
                               * fails with -SBX_E_INVALID naming the path) */
        uint64_t max_entries; /* 0 = SBX_TREE_MAX_ENTRIES (also the ceiling) */
        unsigned max_depth;   /* 0 = SBX_TREE_MAX_DEPTH (also the ceiling) */
};

struct tree_stats {
        uint64_t entries;   /* entries made below dst (hardlinks count once per name) */
        uint64_t bytes;     /* file data, apparent sizes, once per inode */
        uint64_t reflinked; /* files cloned (FICLONE) instead of copied */
        uint64_t skipped;   /* sockets, not copied */
};

/*
 * Copy the contents of the directory src_dirfd into the existing, empty directory dst_dirfd, and
 * src's own owner, mode, xattrs and times onto dst. Both fds are borrowed (opened O_RDONLY |
 * O_DIRECTORY; they are not moved or closed). dst must be private to the caller while this runs:
 * hardlinks are made by path below it. *st (optional) is filled also on failure, with what was
 * made so far. Returns 0, or -errno / -SBX_E_INVALID (an id outside the range without
 * keep_foreign) / -SBX_E_TOO_LARGE (entries, depth) / -EXDEV (a mount or another filesystem
 * inside src) with *err naming the path relative to src. On failure dst holds a partial copy:
 * remove it (tree_remove). Ids other than the caller's own need CAP_CHOWN; trusted.* xattrs need
 * CAP_SYS_ADMIN (without it they are invisible and not copied); security.capability needs
 * CAP_SETFCAP.
 */
int tree_copy(int src_dirfd, int dst_dirfd, const struct tree_copy_opts *o, struct tree_stats *st, struct sbx_err *err);

/*
 * Shift the owners of everything below and including the directory dirfd in place: ids in
 * [from, from + 65536) become id - from + to; any other id stays as it is (as tree_copy with
 * keep_foreign: a partly shifted tree is never left behind by an id). Setuid/setgid bits,
 * security.capability (whose root id moves too) and POSIX ACL ids survive the chown. Times are not touched (chown
 * changes only ctime). Hardlinked inodes are shifted once. Same walk bounds and mount rule as tree_copy. dirfd is
 * borrowed. Returns 0 or a negative code (the tree may then be partly shifted: use this on a copy or a snapshot).
 */
int tree_shift_ids(int dirfd, uid_t from, uid_t to, struct sbx_err *err);

/*
 * rm -rf parent_fd/name: never follows a symlink and never descends into another mount or
 * filesystem (such a directory is left, with everything above it, and the call returns -EXDEV
 * after removing all else). A missing name is success. Returns 0 or -errno (the first error; the
 * removal goes on past errors). name must be one path component.
 */
int tree_remove(int parent_fd, const char *name);
