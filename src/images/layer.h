/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer store: content-addressed, read-only directory trees that sandboxes mount as overlay
 * lower layers (DESIGN §3). A layer's id is "sha256:" + the hex sha256 of its canonical tar stream
 * (below), which is also the blob an OCI export writes, so export → import keeps ids.
 *
 * Layout under DIR (the store's directory):
 *   DIR/<hex>/root/        the tree, owned by sandbox-relative ids (0..65535), never written again
 *   DIR/<hex>/layer.json   {digest, tarBytes, sizeBytes, entries, createdAt, source}
 *   DIR/tmp-XXXXXX/root/   a layer being made (removed by layer_store_open() if left over)
 *
 * Layer trees use overlayfs's own format for deletions, so they stack directly:
 *   whiteout    a character device 0/0 named like the deleted entry (".wh.NAME" in the tar)
 *   opaque dir  a directory with the xattr user.overlay.opaque="y" (".wh..wh..opq" in the tar);
 *               sandboxes mount overlay with "userxattr".
 *
 * Canonical tar stream: pax (restricted) format; entries in depth-first pre-order with the
 * children of a directory sorted by name (bytewise); paths relative, without "./", directories
 * with a trailing '/'; fields: type, mode & 07777, numeric uid/gid (no names), mtime in whole
 * seconds, size, link target (symlinks; hard links to the first name of the inode in stream
 * order), device numbers (character/block devices other than whiteouts); no atime/ctime, no
 * xattrs. A whiteout is written as an empty regular file ".wh.NAME" (mode 0, uid/gid 0, mtime 0);
 * an opaque directory's marker ".wh..wh..opq" (same fields) follows the directory's own entry and
 * precedes its children. Sockets are skipped. The root directory has no entry of its own (its
 * mode, owner and mtime are not part of the digest); an opaque root's marker is the first entry.
 * The stream is not padded to a 10240-byte record: it ends with the two zero blocks.
 *
 * Thread safety: every function may be called from any thread; the store serialises what needs
 * it (commit vs gc vs holds) with one mutex. Functions marked "blocking" walk trees: call them
 * from a worker thread. No logging.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SBX_LAYER_DIGEST_MAX 72          /* "sha256:" + 64 hex + NUL, rounded up */
#define SBX_LAYER_SOURCE_MAX 128

struct layer_store;

struct layer_info {
        char digest[SBX_LAYER_DIGEST_MAX]; /* "sha256:<64 hex>" */
        char root[PATH_MAX];               /* host path of the tree (DIR/<hex>/root) */
        uint64_t tar_bytes;                /* length of the canonical tar stream (the OCI blob size) */
        uint64_t size_bytes;               /* disk usage of the tree (sum of st_blocks * 512) */
        uint64_t entries;                  /* entries in the canonical tar stream */
        char created_at[40];               /* RFC 3339 */
        char source[SBX_LAYER_SOURCE_MAX]; /* free text: "mmdebstrap bookworm", "import", "setup" */
        unsigned holds;                    /* current in-memory holds (layer_hold) */
};

/* Open (create) DIR; removes leftover DIR/tmp-* trees (never following symlinks, never crossing
 * into another mount). Blocking. */
int layer_store_open(const char *dir, struct layer_store **ret, struct sbx_err *err);
void layer_store_free(struct layer_store *ls); /* NULL-safe */
const char *layer_store_dir(const struct layer_store *ls);

/* True for "sha256:" followed by exactly 64 lower-case hex digits. */
bool layer_digest_valid(const char *digest);

/* Make a new empty work dir DIR/tmp-XXXXXX with an empty root/ (mode 0755, owned 0:0).
 * *ret_tmp gets the tmp dir path (to pass to layer_commit/layer_discard); the tree goes in
 * <tmp>/root. */
int layer_tmp_new(struct layer_store *ls, char *ret_tmp, size_t size, struct sbx_err *err);
/* Remove a work dir made by layer_tmp_new (and everything in it). Blocking. NULL-safe no-op. */
void layer_discard(struct layer_store *ls, const char *tmp);

/* Turn the work dir tmp into a layer: walk <tmp>/root (never following symlinks), reject what a
 * layer cannot hold (uid/gid >= 65536 -> -SBX_E_INVALID naming the path; sockets are removed),
 * drop every other "user.overlay.*" and "trusted.overlay.*" xattr except user.overlay.opaque,
 * compute the digest of the canonical stream, write layer.json and rename the work dir to DIR/<hex>.
 * If that layer exists already the work dir is removed and the existing layer is returned.
 * The new layer gets one hold (release with layer_release) so a concurrent gc cannot remove it
 * before the caller records a reference. source: free text stored in layer.json. Blocking.
 * On failure the work dir is left in place (partly normalised): layer_discard it. */
int layer_commit(struct layer_store *ls, const char *tmp, const char *source, struct layer_info *ret,
                 struct sbx_err *err);

/* Look a layer up. -SBX_E_NOT_FOUND (reason "layer_not_found") if absent. */
int layer_get(struct layer_store *ls, const char *digest, struct layer_info *ret, struct sbx_err *err);

/* Every layer in the store (sorted by digest). *ret is malloc'd; free() it. Blocking (reads the
 * layer.json files). */
int layer_list(struct layer_store *ls, struct layer_info **ret, size_t *ret_n, struct sbx_err *err);

/* In-memory holds: a held layer is never removed by layer_gc. layer_hold fails with
 * -SBX_E_NOT_FOUND if the layer is absent. Every hold is released exactly once. */
int layer_hold(struct layer_store *ls, const char *digest, struct sbx_err *err);
void layer_release(struct layer_store *ls, const char *digest);

/* Remove every layer that is neither held nor listed in keep[0..n_keep). Returns the number
 * removed; *ret_freed (optional) gets the bytes freed (their size_bytes). Blocking. */
int layer_gc(struct layer_store *ls, const char *const *keep, size_t n_keep, uint64_t *ret_freed,
             struct sbx_err *err);

/* The same, with the keep list made by keep_fn (a malloc'd array in *ret, freed by layer_gc_with)
 * while the store's lock is held, so a reference published before a hold is released cannot be
 * missed. keep_fn must not call back into the store. */
typedef int (*layer_keep_fn)(void *data, char (**ret)[SBX_LAYER_DIGEST_MAX], size_t *ret_n);
int layer_gc_with(struct layer_store *ls, layer_keep_fn keep_fn, void *data, uint64_t *ret_freed,
                  struct sbx_err *err);

/* Write the canonical tar stream of a layer: exactly info.tar_bytes bytes whose sha256 is its
 * digest. write_fn gets the bytes in order (return 0, or a negative code to stop: it is returned).
 * A layer whose tree no longer hashes to its digest fails with -EIO (reason "layer_corrupt").
 * Blocking. */
typedef int (*layer_write_fn)(const void *buf, size_t len, void *data);
int layer_write_tar(struct layer_store *ls, const char *digest, layer_write_fn write_fn, void *data,
                    struct sbx_err *err);
