// SPDX-License-Identifier: Apache-2.0
/*
 * OCI image export (oci.h): writes an OCI image layout tarball (plus a docker manifest.json) of
 * layers from the layer store and an image config, with libarchive, to a caller's fd. Layer blobs
 * are the store's canonical tar streams, so their digests are the layer ids and an export imports
 * back to the same layers. Output is deterministic (fixed entry metadata, sorted JSON keys).
 * Blocking; never logs.
 */
#include "images/oci.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "images/oci-internal.h"

struct exporter {
        int fd;
        struct archive *a;
        struct sbx_err *err;
        const char *digest; /* the layer being written */
        uint64_t expected, written;
        bool failed; /* write nothing more: no end-of-archive after a failure */
};

static la_ssize_t export_write(struct archive *a, void *data, const void *buf, size_t len)
{
        struct exporter *x = data;
        int r = x->failed ? -EIO : write_all(x->fd, buf, len);

        if (r < 0) {
                archive_set_error(a, -r, "cannot write the image: %s", strerror(-r));
                return -1;
        }
        return (la_ssize_t)len;
}

static int export_fail(struct exporter *x)
{
        int e = archive_errno(x->a);

        return sbx_err_set(x->err, e > 0 ? -e : -EIO, "cannot write the image: %s", oci__archive_error(x->a));
}

static int export_data(struct exporter *x, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                la_ssize_t n = archive_write_data(x->a, p, len);

                if (n <= 0)
                        return export_fail(x);
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int export_header(struct exporter *x, const char *name, bool dir, uint64_t size)
{
        struct archive_entry *e = archive_entry_new();
        int r;

        if (!e)
                return sbx_err_set(x->err, -ENOMEM, "out of memory");
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
        archive_entry_set_perm(e, dir ? 0755 : 0644);
        archive_entry_set_size(e, dir ? 0 : (la_int64_t)size);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        r = archive_write_header(x->a, e);
        archive_entry_free(e);
        return r == ARCHIVE_OK ? 0 : export_fail(x);
}

static int export_file(struct exporter *x, const char *name, const char *content)
{
        size_t len = strlen(content);
        int r = export_header(x, name, false, len);

        return r < 0 ? r : export_data(x, content, len);
}

static int export_layer_chunk(const void *buf, size_t len, void *data)
{
        struct exporter *x = data;

        if (len > x->expected - x->written)
                return sbx_err_setr(x->err, -EIO, "layer_corrupt", "layer %s is longer than its %llu bytes", x->digest,
                                    (unsigned long long)x->expected);
        x->written += len;
        return export_data(x, buf, len);
}

static int export_layer(struct exporter *x, struct layer_store *ls, const char *digest, uint64_t size)
{
        char name[sizeof BLOB_PREFIX + 64];
        int r;

        snprintf(name, sizeof name, BLOB_PREFIX "%s", digest + 7);
        r = export_header(x, name, false, size);
        if (r < 0)
                return r;
        x->digest = digest;
        x->expected = size;
        x->written = 0;
        r = layer_write_tar(ls, digest, export_layer_chunk, x, x->err);
        if (r < 0)
                return r;
        if (x->written != size)
                return sbx_err_setr(x->err, -EIO, "layer_corrupt", "layer %s wrote %llu bytes, not %llu", digest,
                                    (unsigned long long)x->written, (unsigned long long)size);
        return 0;
}

/* Serialise deterministically; *ret_digest gets its sha256. NULL on OOM. */
static char *dump_doc(json_t *doc, char *ret_digest)
{
        char *s;

        if (!doc)
                return NULL;
        s = json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT);
        json_decref(doc);
        if (s && oci__sha256_digest(s, strlen(s), ret_digest) < 0) {
                free(s);
                return NULL;
        }
        return s;
}

static json_t *descriptor_new(const char *mt, const char *digest, uint64_t size)
{
        return json_pack("{s:s, s:s, s:I}", "mediaType", mt, "digest", digest, "size", (json_int_t)size);
}

static json_t *export_config(const struct oci_image *img)
{
        static const char *const keys[][2] = {
                { "env", "Env" }, { "workdir", "WorkingDir" }, { "user", "User" }, { "entrypoint", "Entrypoint" },
                { "cmd", "Cmd" }, { "labels", "Labels" },
        };
        json_t *cfg = json_object(), *diff_ids = json_array();

        if (!cfg || !diff_ids)
                goto fail;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                json_t *v = json_object_get(img->config, keys[i][0]);

                if (v && json_object_set(cfg, keys[i][1], v) < 0)
                        goto fail;
        }
        for (size_t i = 0; i < img->n_layers; i++)
                if (json_array_append_new(diff_ids, json_string(img->layers[i])) < 0)
                        goto fail;
        return json_pack("{s:s, s:s, s:o, s:{s:s, s:o}, s:[]}", "architecture", "amd64", "os", "linux", "config", cfg,
                         "rootfs", "type", "layers", "diff_ids", diff_ids, "history");
fail:
        json_decref(cfg);
        json_decref(diff_ids);
        return NULL;
}

static void release_all(struct layer_store *ls, const struct oci_image *img, size_t n)
{
        for (size_t i = 0; i < n; i++)
                layer_release(ls, img->layers[i]);
}

int oci_export(struct layer_store *ls, const struct oci_image *img, const char *ref, int fd, struct sbx_err *err)
{
        _cleanup_free_ struct layer_info *infos = NULL;
        _cleanup_free_ char *config = NULL, *manifest = NULL, *index = NULL, *docker = NULL;
        char config_digest[SBX_LAYER_DIGEST_MAX], manifest_digest[SBX_LAYER_DIGEST_MAX], tmp[SBX_LAYER_DIGEST_MAX];
        char tag[sizeof img->ref], repo_tag[sizeof img->ref + 8], blob[sizeof BLOB_PREFIX + 64];
        struct exporter x = { .fd = fd, .err = err };
        json_t *layers = NULL, *docker_layers = NULL, *repo_tags = NULL;
        const char *slash, *colon;
        size_t held = 0;
        int r = 0;

        if (img->n_layers > SBX_MAX_IMAGE_LAYERS)
                return sbx_err_set(err, -SBX_E_INVALID, "an image has at most %d layers", SBX_MAX_IMAGE_LAYERS);
        if (!ref || !*ref)
                ref = img->ref;
        if (strlen(ref) >= sizeof tag)
                return sbx_err_set(err, -SBX_E_INVALID, "image reference '%.64s...' is too long", ref);
        /* the tag: after the last ':' that follows the last '/' */
        slash = strrchr(ref, '/');
        colon = strrchr(slash ? slash : ref, ':');
        snprintf(tag, sizeof tag, "%s", colon && colon[1] ? colon + 1 : "latest");
        snprintf(repo_tag, sizeof repo_tag, "%s%s", ref, colon ? "" : ":latest");

        infos = calloc(img->n_layers ? img->n_layers : 1, sizeof *infos);
        if (!infos)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        /* held while we stream them, so a gc cannot remove them under us */
        for (; held < img->n_layers; held++) {
                if (!layer_digest_valid(img->layers[held])) {
                        r = sbx_err_set(err, -SBX_E_INVALID, "'%.80s' is not a layer digest", img->layers[held]);
                        goto out;
                }
                r = layer_hold(ls, img->layers[held], err);
                if (r < 0)
                        goto out;
                r = layer_get(ls, img->layers[held], &infos[held], err);
                if (r < 0) {
                        layer_release(ls, img->layers[held]);
                        goto out;
                }
        }

        layers = json_array();
        docker_layers = json_array();
        repo_tags = *ref ? json_pack("[s]", repo_tag) : json_null();
        if (!layers || !docker_layers || !repo_tags) {
                r = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < img->n_layers; i++) {
                snprintf(blob, sizeof blob, BLOB_PREFIX "%s", img->layers[i] + 7);
                if (json_array_append_new(layers, descriptor_new(MT_OCI_LAYER, img->layers[i], infos[i].tar_bytes)) <
                            0 ||
                    json_array_append_new(docker_layers, json_string(blob)) < 0) {
                        r = sbx_err_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        config = dump_doc(export_config(img), config_digest);
        manifest = config ? dump_doc(json_pack("{s:i, s:s, s:o, s:O}", "schemaVersion", 2, "mediaType", MT_OCI_MANIFEST,
                                               "config", descriptor_new(MT_OCI_CONFIG, config_digest, strlen(config)),
                                               "layers", layers),
                                     manifest_digest)
                          : NULL;
        index = manifest ? dump_doc(json_pack("{s:i, s:s, s:[{s:s, s:s, s:I, s:{s:s}}]}", "schemaVersion", 2,
                                              "mediaType", MT_OCI_INDEX, "manifests", "mediaType", MT_OCI_MANIFEST,
                                              "digest", manifest_digest, "size", (json_int_t)strlen(manifest),
                                              "annotations", ANNOTATION_REF, tag),
                                    tmp)
                         : NULL;
        snprintf(blob, sizeof blob, BLOB_PREFIX "%s", config_digest + 7);
        docker = index ? dump_doc(json_pack("[{s:s, s:O, s:O}]", "Config", blob, "RepoTags", repo_tags, "Layers",
                                            docker_layers),
                                  tmp)
                       : NULL;
        if (!docker) {
                r = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }

        x.a = archive_write_new();
        if (!x.a || archive_write_set_format_pax_restricted(x.a) != ARCHIVE_OK ||
            archive_write_add_filter_none(x.a) != ARCHIVE_OK) {
                r = sbx_err_set(err, -ENOMEM, "cannot set up the archive writer");
                goto out;
        }
        if (archive_write_open(x.a, &x, NULL, export_write, NULL) != ARCHIVE_OK) {
                r = export_fail(&x);
                goto out;
        }
        r = export_file(&x, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
        if (r >= 0)
                r = export_header(&x, "blobs/", true, 0);
        if (r >= 0)
                r = export_header(&x, "blobs/sha256/", true, 0);
        for (size_t i = 0; r >= 0 && i < img->n_layers; i++) {
                bool seen = false;

                for (size_t j = 0; j < i; j++)
                        seen = seen || !strcmp(img->layers[i], img->layers[j]);
                if (!seen)
                        r = export_layer(&x, ls, img->layers[i], infos[i].tar_bytes);
        }
        if (r >= 0) {
                snprintf(blob, sizeof blob, BLOB_PREFIX "%s", config_digest + 7);
                r = export_file(&x, blob, config);
        }
        if (r >= 0) {
                snprintf(blob, sizeof blob, BLOB_PREFIX "%s", manifest_digest + 7);
                r = export_file(&x, blob, manifest);
        }
        if (r >= 0)
                r = export_file(&x, "index.json", index);
        if (r >= 0)
                r = export_file(&x, "manifest.json", docker);
        if (r >= 0 && archive_write_close(x.a) != ARCHIVE_OK)
                r = export_fail(&x);
out:
        /* a failed export must not end like a complete tarball: the reader sees it truncated */
        x.failed = r < 0;
        if (x.a)
                archive_write_free(x.a);
        json_decref(layers);
        json_decref(docker_layers);
        json_decref(repo_tags);
        release_all(ls, img, held);
        return r < 0 ? r : 0;
}
