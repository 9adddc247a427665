/* SPDX-License-Identifier: Apache-2.0 */
/* Directories as tar.gz for `sbx cp` (tar.c). Each returns 0 or a negative code with err filled. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

/* Counts of what a directory copy moved. */
struct tree_stats {
        uint64_t files, dirs, symlinks, bytes, skipped;
};

/* An unnamed read-write temporary file in $TMPDIR (or /tmp); it vanishes with its fd. */
int cli_staging_open(int *ret_fd, struct cli_err *err);
/* Write a tar.gz of the local directory src (symlinks below it not followed) to fd; names are
 * relative to src. Sockets, FIFOs and devices are skipped (with a warning unless quiet). */
int cli_pack_dir(const char *src, int fd, bool quiet, struct tree_stats *st, struct cli_err *err);
/* Extract the tar(.gz) in fd (rewound) into the existing directory target. */
int cli_unpack(int fd, const char *target, struct tree_stats *st, struct cli_err *err);
