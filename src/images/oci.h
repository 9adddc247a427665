/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI images in and out of the layer store (layer.h), with libarchive.
 *
 * Import reads an image tarball in either form:
 *   - an OCI image layout (oci-layout, index.json, blobs/sha256/...), image index nesting allowed
 *     (the first linux/amd64 manifest, or the first manifest when no platform is given);
 *   - a `docker save` tarball (manifest.json [{Config, RepoTags, Layers}] + the files it names;
 *     newer docker writes both forms: manifest.json wins).
 * Every layer (tar, tar+gzip or tar+zstd, detected from the bytes, not the media type) is applied
 * into its own new layer tree: regular files, dirs, symlinks, hard links (within the layer),
 * fifos; ".wh.NAME" becomes a whiteout (char 0/0 NAME) and ".wh..wh..opq" makes its directory
 * opaque (user.overlay.opaque="y"); device nodes are kept (layers are mounted nodev), sockets
 * skipped; uid/gid >= 65536 become 65534.
 * Paths are confined to the layer: absolute names are made relative, ".." components, writing
 * through symlinks and hard links that leave the layer are refused (-SBX_E_INVALID, reason
 * "invalid_image", message naming the entry). Declared digests of blobs are verified where the
 * format declares them (OCI layout: every blob read; docker save: the config).
 *
 * Export writes an OCI image layout tarball of a list of layers + config: oci-layout,
 * index.json (one manifest, annotated org.opencontainers.image.ref.name = tag), the config and
 * manifest blobs, one uncompressed layer blob per layer (its digest is the layer id), plus a
 * docker-compatible manifest.json so `docker load` and `podman load` accept it too.
 *
 * Blocking (call from a worker thread). No logging.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "images/layer.h"

#define SBX_MAX_IMAGE_LAYERS 128          /* layers in one image/template (overlay stack depth) */

/* The parts of an image config sbx keeps (OCI "config" object / docker "config"). */
struct oci_image {
        size_t n_layers;
        char layers[SBX_MAX_IMAGE_LAYERS][SBX_LAYER_DIGEST_MAX]; /* bottom first */
        json_t *config;  /* owned: {"env":[...], "workdir":"", "user":"", "entrypoint":[...],
                            "cmd":[...], "labels":{...}} with absent keys left out */
        char ref[256];   /* name:tag from RepoTags[0] or the ref.name annotation, "" if none */
};

void oci_image_done(struct oci_image *img); /* frees config; NULL-safe */

/* Import the image tarball at path (a regular file; read with seeks). Layers are committed to ls
 * and each returned layer carries one hold (layer_commit's) that the caller releases once it has
 * recorded its references. On failure nothing is left held and no work dir remains.
 * progress (optional) is called after each layer with (index, total). */
int oci_import(struct layer_store *ls, const char *path, struct oci_image *ret,
               void (*progress)(size_t done, size_t total, void *data), void *data, struct sbx_err *err);

/* Write an OCI layout tarball of img (its layers must exist in ls) to fd. ref: "name:tag" for the
 * annotation and RepoTags. */
int oci_export(struct layer_store *ls, const struct oci_image *img, const char *ref, int fd,
               struct sbx_err *err);
