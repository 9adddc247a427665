/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/files: the fd-based pieces ops.c and write.c share (a writer on a directory fd
 * already resolved, the mount point test, temp names). Nothing here resolves a user path; callers
 * got their directory fd from files_open / files_open_parent or from a walk. No logging.
 */
#pragma once

#include <stdbool.h>

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
