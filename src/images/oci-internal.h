/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/images/oci*.c (import in oci.c, layer application in oci-apply.c, export in
 * oci-export.c): the layout's names, sha256, path normalisation for names found in tarballs, and
 * turning one layer's tar stream into a layer work tree.
 */
#pragma once

#include <archive.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Media types and names of the OCI image layout (image-spec v1.1) and docker's equivalents. */
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define ANNOTATION_REF "org.opencontainers.image.ref.name"
#define BLOB_PREFIX "blobs/sha256/"

/* libarchive's message for its last error, never NULL. */
static inline const char *oci__archive_error(struct archive *a)
{
        const char *s = archive_error_string(a);

        return s ? s : "unknown archive error";
}

/* "sha256:<hex>" of data into digest (SBX_LAYER_DIGEST_MAX bytes). Returns 0 or -ENOMEM. */
int oci__sha256_digest(const void *data, size_t len, char *digest);

/* Normalise a name from a tarball into out: leading "/" and "./" stripped, "//" collapsed, "."
 * components and trailing "/" dropped. Returns the length (0: the name is the root itself),
 * -EINVAL if a component is "..", -ENAMETOOLONG if the result does not fit in size bytes. */
int oci__path_clean(const char *in, char *out, size_t size);

/* Bounds of one layer's unpacking (tests lower them): apparent bytes of its files (default
 * SBX_MAX_LAYER_BYTES: more is invalid_image), free bytes the disk must keep (SBX_MIN_FREE_BYTES:
 * less is -ENOSPC), and how often that is checked (every 64 MiB written). */
extern uint64_t oci__max_layer_bytes, oci__min_free_bytes, oci__free_check_bytes;

/* Apply the tar archive `in` (opened by the caller, positioned before its first header) into
 * root, an empty directory given by its real path (no symlink in it), until the archive's end.
 * Entries stay confined to root (written relative to fds opened with openat2, never through a
 * symlink); whiteouts become overlayfs whiteouts and opaque markers, device nodes and FIFOs are
 * kept, sockets skipped, ids >= 65536 become 65534. It changes neither the process umask nor the
 * working directory, so other threads may run meanwhile. `what` names the layer in messages.
 * Returns 0, -SBX_E_INVALID (reason "invalid_image") for what the archive holds, or -errno for
 * the host's failures (ENOSPC, EIO, ...). Blocking. */
int oci__apply_layer(struct archive *in, const char *root, const char *what, struct sbx_err *err);
