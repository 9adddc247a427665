/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/images/layer*.c: the tree walk that produces a layer's canonical tar stream
 * (layer-tar.c), shared by layer_commit (digest + normalisation) and layer_write_tar (bytes out).
 * No logging.
 */
#pragma once

#include <locale.h>
#include <stdint.h>

#include "common/err.h"
#include "images/layer.h"

/* Deeper trees are not layers (-SBX_E_INVALID); the remover stops at the same depth. */
#define LAYER_MAX_DEPTH 4096

enum layer_tree_flags {
        LAYER_TREE_NORMALISE = 1 << 0, /* commit: remove sockets, strip overlay xattrs but the opaque one */
};

struct layer_tree_result {
        char digest[SBX_LAYER_DIGEST_MAX]; /* "sha256:<hex>" of the stream */
        uint64_t tar_bytes;                /* stream length */
        uint64_t size_bytes;               /* sum of st_blocks * 512, each inode once */
        uint64_t entries;                  /* tar entries */
};

/*
 * Walk the tree at root_fd (never following a symlink, never leaving its file system) and produce
 * the canonical tar stream described in layer.h. The stream is hashed; if write_fn is set it also
 * gets the bytes in order (coalesced into large writes). root_path names the tree in messages.
 * utf8 is a C.UTF-8 locale: libarchive picks pax header charsets from the thread's locale, and
 * the digest must not depend on the caller's. Returns 0, -SBX_E_INVALID (reason "invalid_layer")
 * for what a layer cannot hold, write_fn's code, or -errno. Blocking.
 */
int layer__tree_stream(int root_fd, const char *root_path, unsigned flags, locale_t utf8, layer_write_fn write_fn,
                       void *data, struct layer_tree_result *ret, struct sbx_err *err);
