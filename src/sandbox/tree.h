/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Copying a directory tree exactly (snapshots of a sandbox's overlay upper, checkpoint restores):
 * regular files (reflinked where the filesystem can, else copy_file_range, holes kept),
 * directories, symlinks, hardlinks (kept as links within the copy), character and block devices
 * (overlay whiteouts are character devices 0/0), fifos; owners (optionally shifted from one id
 * range to another), modes including setuid bits, every xattr (user.overlay.* for opaque dirs and
 * redirects, security.capability, trusted.* as root), and mtimes. Sockets are skipped. Symlinks
 * are never followed and a walk never crosses into another mount. Blocking: call it from a worker
 * thread. No logging.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define SBX_TREE_MAX_DEPTH 512           /* directory depth a copy follows (deeper: -ELOOP) */
#define SBX_TREE_MAX_ENTRIES 10000000    /* entries one copy makes (more: -E2BIG) */

struct tree_copy_opts {
        uid_t id_from, id_to;            /* ids in [id_from, id_from + 65536) become id - id_from + id_to */
        bool keep_foreign;               /* ids outside that range: copied as they are (else -SBX_E_INVALID) */
        uint64_t max_entries;            /* 0 = SBX_TREE_MAX_ENTRIES */
};

struct tree_stats {
        uint64_t entries;                /* everything made below dst */
        uint64_t bytes;                  /* file data (apparent sizes) */
        uint64_t reflinked;              /* files cloned instead of copied */
};

/* Copy the contents of the directory src_dirfd into the existing, empty directory dst_dirfd (and
 * src's own owner, mode, xattrs and mtime onto dst). */
int tree_copy(int src_dirfd, int dst_dirfd, const struct tree_copy_opts *o, struct tree_stats *st, struct sbx_err *err);
