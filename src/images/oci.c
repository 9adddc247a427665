// SPDX-License-Identifier: Apache-2.0
/*
 * OCI image import (oci.h). Reads the image tarball twice over: once to list its entries and
 * keep its small JSON documents (bounded), then once per layer, seeking to that layer's entry and
 * handing its bytes to a nested libarchive reader that oci-apply.c applies into a layer work tree;
 * blob digests are checked on the bytes as they stream by. Export is in oci-export.c.
 * Blocking; never logs; never changes the working directory.
 */
#include "images/oci.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <locale.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "images/oci-internal.h"

/* Entries in the outer tarball (docker save writes ~4 per layer, an OCI layout one per blob). */
#define OCI_MAX_ENTRIES 16384
/* Bytes in a name inside the outer tarball or in a manifest. */
#define OCI_MAX_NAME 1024
/* One JSON document (index, manifest, config) kept in memory, and all of them together. */
#define OCI_MAX_DOC (1024 * 1024)
#define OCI_MAX_DOCS_TOTAL (16 * 1024 * 1024)
/* Image indexes inside image indexes, and descriptors looked at across all of them. */
#define OCI_MAX_INDEX_DEPTH 4
#define OCI_MAX_DESCRIPTORS 4096
/* Symlinks/hard links followed to reach a layer inside a docker save tarball. */
#define OCI_MAX_LINK_HOPS 8
/* Labels kept from an image config; a user name. */
#define OCI_MAX_LABELS 1024
#define OCI_MAX_LABEL_BYTES (64 * 1024)
#define OCI_MAX_USER 256
#define OCI_READ_BLOCK (128 * 1024)

enum entry_kind {
        ENTRY_FILE,
        ENTRY_SYMLINK,  /* link: target, resolved against the entry's directory */
        ENTRY_HARDLINK, /* link: target */
        ENTRY_OTHER,
};

/* One entry of the outer tarball. */
struct tar_entry {
        char *name; /* cleaned (oci__path_clean) */
        char *link;
        enum entry_kind kind;
        size_t index; /* position in the tarball */
        int64_t size;
        unsigned char *data; /* kept JSON document, or NULL */
        size_t data_len;
        bool verified; /* data's sha256 matched its name */
};

struct image_src {
        const char *path;
        int fd; /* owned, regular file, read with seeks */
        struct tar_entry *entries;
        size_t n_entries;
        size_t kept_bytes;
};

/* A layer to import: which entry holds it and what it must hash to. */
struct layer_ref {
        char entry[OCI_MAX_NAME];
        char digest[SBX_LAYER_DIGEST_MAX]; /* "" when the format declares none (docker save legacy) */
        int64_t size;                      /* -1 when undeclared */
};

struct plan {
        size_t n_layers;
        struct layer_ref layers[SBX_MAX_IMAGE_LAYERS];
        json_t *config; /* owned, oci_image.config form */
        char ref[sizeof(((struct oci_image *)0)->ref)];
};

static int bad(struct sbx_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* -SBX_E_INVALID, reason invalid_image. */
static int bad(struct sbx_err *err, const char *fmt, ...)
{
        char msg[SBX_ERR_MSG_MAX];
        va_list va;

        va_start(va, fmt);
        vsnprintf(msg, sizeof msg, fmt, va);
        va_end(va);
        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_image", "%s", msg);
}

static void hex_encode(const unsigned char *md, size_t n, char *out)
{
        static const char digits[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[md[i] >> 4];
                out[2 * i + 1] = digits[md[i] & 15];
        }
        out[2 * n] = '\0';
}

static void md_ctx_freep(EVP_MD_CTX **p)
{
        EVP_MD_CTX_free(*p);
}

int oci__sha256_digest(const void *data, size_t len, char *digest)
{
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned n = 0;

        if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32)
                return -ENOMEM;
        memcpy(digest, "sha256:", 7);
        hex_encode(md, n, digest + 7);
        return 0;
}

/* ---- the outer tarball ---- */

static void image_src_done(struct image_src *src)
{
        for (size_t i = 0; i < src->n_entries; i++) {
                free(src->entries[i].name);
                free(src->entries[i].link);
                free(src->entries[i].data);
        }
        free(src->entries);
        src->fd = safe_close(src->fd);
}

static void archive_read_freep(struct archive **a)
{
        if (*a)
                archive_read_free(*a);
}

/* A reader of the outer tarball from its start (tar, possibly gzip/zstd compressed). */
static int src_open(struct image_src *src, struct archive **ret, struct sbx_err *err)
{
        _cleanup_(archive_read_freep) struct archive *a = NULL;

        if (lseek(src->fd, 0, SEEK_SET) < 0)
                return sbx_err_set(err, -errno, "cannot seek in '%s': %s", src->path, strerror(errno));
        a = archive_read_new();
        if (!a)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (archive_read_support_filter_gzip(a) < ARCHIVE_WARN || archive_read_support_filter_zstd(a) < ARCHIVE_WARN ||
            archive_read_support_filter_none(a) != ARCHIVE_OK || archive_read_support_format_tar(a) != ARCHIVE_OK)
                return sbx_err_set(err, -SBX_E_INTERNAL, "cannot set up the archive reader: %s", oci__archive_error(a));
        if (archive_read_open_fd(a, src->fd, OCI_READ_BLOCK) != ARCHIVE_OK)
                return bad(err, "cannot read '%s': %s", src->path, oci__archive_error(a));
        *ret = TAKE_PTR(a);
        return 0;
}

/* Resolve a relative symlink target against the directory of the entry `name`, allowing ".."
 * inside the archive. Returns the length or a negative code. */
static int resolve_link(const char *name, const char *target, char *out, size_t size)
{
        char buf[2 * OCI_MAX_NAME + 2];
        const char *p;
        size_t n = 0;

        if (target[0] == '/')
                snprintf(buf, sizeof buf, "%s", target);
        else {
                const char *slash = strrchr(name, '/');
                snprintf(buf, sizeof buf, "%.*s/%s", slash ? (int)(slash - name) : 0, name, target);
        }
        if (strlen(buf) >= sizeof buf - 1)
                return -ENAMETOOLONG;
        p = buf;
        for (;;) {
                const char *s;
                size_t len;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                s = p;
                while (*p && *p != '/')
                        p++;
                len = (size_t)(p - s);
                if (len == 1 && s[0] == '.')
                        continue;
                if (len == 2 && s[0] == '.' && s[1] == '.') {
                        if (n == 0)
                                return -EINVAL;
                        while (n > 0 && out[n - 1] != '/')
                                n--;
                        if (n > 0)
                                n--;
                        continue;
                }
                if (n + (n > 0) + len + 1 > size)
                        return -ENAMETOOLONG;
                if (n > 0)
                        out[n++] = '/';
                memcpy(out + n, s, len);
                n += len;
        }
        out[n] = '\0';
        return (int)n;
}

static bool doc_candidate(const char *name)
{
        size_t len = strlen(name);

        if (!strcmp(name, "manifest.json") || !strcmp(name, "index.json") || !strcmp(name, "oci-layout"))
                return true;
        if (!strncmp(name, "blobs/", 6))
                return true;
        /* docker save (before docker 25) keeps the config as <hex>.json at the top */
        return !strchr(name, '/') && len > 5 && !strcmp(name + len - 5, ".json");
}

/* JSON documents start with '{' or '['; layer blobs (tar, gzip, zstd) practically never do, so
 * small layers do not eat the metadata budget. */
static bool looks_like_json(const unsigned char *data, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                if (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')
                        continue;
                return data[i] == '{' || data[i] == '[';
        }
        return false;
}

static int src_keep_data(struct image_src *src, struct archive *a, struct tar_entry *te, struct sbx_err *err)
{
        _cleanup_free_ unsigned char *data = NULL;
        size_t got = 0, size = (size_t)te->size;

        if (src->kept_bytes + size > OCI_MAX_DOCS_TOTAL)
                return bad(err, "image metadata in '%s' is larger than %d MiB", src->path, OCI_MAX_DOCS_TOTAL >> 20);
        data = malloc(size ? size : 1);
        if (!data)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        while (got < size) {
                la_ssize_t n = archive_read_data(a, data + got, size - got);

                if (n < 0)
                        return bad(err, "cannot read '%s' in '%s': %s", te->name, src->path, oci__archive_error(a));
                if (n == 0)
                        return bad(err, "'%s' in '%s' is truncated", te->name, src->path);
                got += (size_t)n;
        }
        if (strcmp(te->name, "manifest.json") && strcmp(te->name, "index.json") && strcmp(te->name, "oci-layout") &&
            !looks_like_json(data, size))
                return 0;
        te->data = TAKE_PTR(data);
        te->data_len = size;
        src->kept_bytes += size;
        return 0;
}

/* Pass 1: list every entry, keep the small JSON documents. */
static int src_scan(struct image_src *src, struct sbx_err *err)
{
        _cleanup_(archive_read_freep) struct archive *a = NULL;
        size_t cap = 0;
        int r;

        r = src_open(src, &a, err);
        if (r < 0)
                return r;
        for (size_t index = 0;; index++) {
                struct archive_entry *e;
                struct tar_entry *te;
                char name[OCI_MAX_NAME];
                const char *raw, *link;
                int n;

                r = archive_read_next_header(a, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return bad(err, "cannot read '%s': %s", src->path, oci__archive_error(a));
                raw = archive_entry_pathname(e);
                if (!raw)
                        return bad(err, "'%s' has an entry without a name", src->path);
                n = oci__path_clean(raw, name, sizeof name);
                if (n == -ENAMETOOLONG)
                        return bad(err, "'%s' has an entry name longer than %d bytes", src->path, OCI_MAX_NAME);
                if (n < 0)
                        return bad(err, "'%s' has an entry '%s' outside the image", src->path, raw);
                if (n == 0)
                        continue;
                if (src->n_entries >= OCI_MAX_ENTRIES)
                        return bad(err, "'%s' has more than %d entries", src->path, OCI_MAX_ENTRIES);
                if (src->n_entries == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        struct tar_entry *v = reallocarray(src->entries, ncap, sizeof *v);

                        if (!v)
                                return sbx_err_set(err, -ENOMEM, "out of memory");
                        src->entries = v;
                        cap = ncap;
                }
                te = &src->entries[src->n_entries];
                *te = (struct tar_entry){ .index = index, .size = archive_entry_size(e), .kind = ENTRY_OTHER };
                te->name = strdup(name);
                if (!te->name)
                        return sbx_err_set(err, -ENOMEM, "out of memory");
                src->n_entries++;

                link = archive_entry_hardlink(e);
                if (link || archive_entry_filetype(e) == AE_IFLNK) {
                        char target[OCI_MAX_NAME];

                        if (link) {
                                te->kind = ENTRY_HARDLINK;
                                n = oci__path_clean(link, target, sizeof target);
                        } else {
                                te->kind = ENTRY_SYMLINK;
                                link = archive_entry_symlink(e);
                                n = link ? resolve_link(name, link, target, sizeof target) : -EINVAL;
                        }
                        if (n <= 0) /* not usable; it only matters if a manifest names it */
                                te->kind = ENTRY_OTHER;
                        else if (!(te->link = strdup(target)))
                                return sbx_err_set(err, -ENOMEM, "out of memory");
                } else if (archive_entry_filetype(e) == AE_IFREG) {
                        te->kind = ENTRY_FILE;
                        if (te->size < 0)
                                return bad(err, "'%s' in '%s' has no size", name, src->path);
                        if (te->size <= OCI_MAX_DOC && doc_candidate(name)) {
                                r = src_keep_data(src, a, te, err);
                                if (r < 0)
                                        return r;
                        }
                }
        }
        return 0;
}

/* The regular-file entry `name` names, following links. NULL if none. */
static struct tar_entry *src_find(struct image_src *src, const char *name)
{
        for (int hops = 0; hops <= OCI_MAX_LINK_HOPS; hops++) {
                struct tar_entry *te = NULL;

                /* the last entry of a name wins, as when a tarball is unpacked */
                for (size_t i = src->n_entries; i-- > 0;)
                        if (!strcmp(src->entries[i].name, name)) {
                                te = &src->entries[i];
                                break;
                        }
                if (!te || te->kind == ENTRY_OTHER)
                        return NULL;
                if (te->kind == ENTRY_FILE)
                        return te;
                name = te->link;
        }
        return NULL;
}

/* The hex digest a blob name declares ("blobs/sha256/<hex>", or docker's "<hex>.json"), or NULL. */
static const char *name_digest_hex(const char *name, char *buf, size_t size)
{
        char digest[SBX_LAYER_DIGEST_MAX];
        size_t len = strlen(name);

        if (!strncmp(name, BLOB_PREFIX, strlen(BLOB_PREFIX)) && len == strlen(BLOB_PREFIX) + 64)
                snprintf(digest, sizeof digest, "sha256:%s", name + strlen(BLOB_PREFIX));
        else if (len == 64 + 5 && !strcmp(name + 64, ".json"))
                snprintf(digest, sizeof digest, "sha256:%.64s", name);
        else
                return NULL;
        if (!layer_digest_valid(digest))
                return NULL;
        snprintf(buf, size, "%s", digest);
        return buf;
}

/* A kept document by entry name; checks its digest when the name declares one. */
static int src_doc(struct image_src *src, const char *name, const char *what, const struct tar_entry **ret,
                   struct sbx_err *err)
{
        struct tar_entry *te = src_find(src, name);
        char want[SBX_LAYER_DIGEST_MAX], got[SBX_LAYER_DIGEST_MAX];

        if (!te)
                return bad(err, "%s '%s' is missing from the image", what, name);
        if (!te->data)
                return bad(err, "%s '%s' is not a JSON document of at most 1 MiB", what, name);
        if (!te->verified &&
            (name_digest_hex(name, want, sizeof want) || name_digest_hex(te->name, want, sizeof want))) {
                if (oci__sha256_digest(te->data, te->data_len, got) < 0)
                        return sbx_err_set(err, -ENOMEM, "cannot compute a digest");
                if (strcmp(want, got))
                        return bad(err, "%s %s does not match its digest", what, want);
                te->verified = true;
        }
        *ret = te;
        return 0;
}

static int parse_doc(const struct tar_entry *te, const char *what, json_t **ret, struct sbx_err *err)
{
        json_error_t jerr;
        json_t *j;

        j = json_loadb((const char *)te->data, te->data_len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j)
                return bad(err, "%s '%s' is not valid JSON: %s (line %d)", what, te->name, jerr.text, jerr.line);
        *ret = j;
        return 0;
}

/* ---- strict JSON access (every failure is invalid_image) ---- */

/* 0: absent or null; 1: *ret set; <0: wrong type or too long. */
static int jstr(const json_t *o, const char *key, const char *what, size_t max, const char **ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return bad(err, "%s: '%s' must be a string", what, key);
        if (json_string_length(v) > max)
                return bad(err, "%s: '%s' is longer than %zu bytes", what, key, max);
        *ret = json_string_value(v);
        return 1;
}

static int jtyped(const json_t *o, const char *key, const char *what, json_type type, json_t **ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, key);

        if (!v || json_is_null(v))
                return 0;
        if (json_typeof(v) != type)
                return bad(err, "%s: '%s' must be %s", what, key, type == JSON_ARRAY ? "an array" : "an object");
        *ret = v;
        return 1;
}

/* An array of at most max strings of at most max_len bytes each (copied), or absent/null. */
static int jstrv(const json_t *o, const char *key, const char *what, size_t max, size_t max_len, json_t **ret,
                 struct sbx_err *err)
{
        json_t *a = NULL, *v;
        size_t i;
        int r;

        r = jtyped(o, key, what, JSON_ARRAY, &a, err);
        if (r <= 0)
                return r;
        if (json_array_size(a) > max)
                return bad(err, "%s: '%s' has more than %zu entries", what, key, max);
        json_array_foreach(a, i, v) {
                if (!json_is_string(v))
                        return bad(err, "%s: '%s' must hold strings", what, key);
                if (json_string_length(v) > max_len)
                        return bad(err, "%s: an entry of '%s' is longer than %zu bytes", what, key, max_len);
        }
        *ret = json_deep_copy(a);
        if (!*ret)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        return 1;
}

/* ---- image config ---- */

static int config_set_new(json_t *c, const char *key, json_t *v, struct sbx_err *err)
{
        if (json_object_set_new(c, key, v) < 0)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        return 0;
}

/* The image config's "config" object -> the oci_image.config form. */
static int parse_config(const json_t *doc, struct plan *plan, struct sbx_err *err)
{
        static const char what[] = "image config";
        json_t *cfg = NULL, *c, *v = NULL, *labels = NULL;
        const char *s, *k;
        int r;

        if (!json_is_object(doc))
                return bad(err, "%s must be an object", what);
        c = json_object();
        if (!c)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        plan->config = c;
        r = jtyped(doc, "config", what, JSON_OBJECT, &cfg, err);
        if (r <= 0)
                return r;

        r = jstrv(cfg, "Env", what, SBX_MAX_ENV, SBX_MAX_ENV_KEY + 1 + SBX_MAX_ENV_VALUE, &v, err);
        if (r > 0)
                r = config_set_new(c, "env", TAKE_PTR(v), err);
        if (r < 0)
                return r;
        r = jstrv(cfg, "Entrypoint", what, SBX_MAX_ARGV, SBX_MAX_ARG_BYTES, &v, err);
        if (r > 0)
                r = config_set_new(c, "entrypoint", TAKE_PTR(v), err);
        if (r < 0)
                return r;
        r = jstrv(cfg, "Cmd", what, SBX_MAX_ARGV, SBX_MAX_ARG_BYTES, &v, err);
        if (r > 0)
                r = config_set_new(c, "cmd", TAKE_PTR(v), err);
        if (r < 0)
                return r;
        r = jstr(cfg, "WorkingDir", what, SBX_MAX_CWD, &s, err);
        if (r > 0)
                r = config_set_new(c, "workdir", json_string(s), err);
        if (r < 0)
                return r;
        r = jstr(cfg, "User", what, OCI_MAX_USER, &s, err);
        if (r > 0)
                r = config_set_new(c, "user", json_string(s), err);
        if (r < 0)
                return r;
        r = jtyped(cfg, "Labels", what, JSON_OBJECT, &labels, err);
        if (r < 0)
                return r;
        if (r > 0) {
                if (json_object_size(labels) > OCI_MAX_LABELS)
                        return bad(err, "%s: 'Labels' has more than %d entries", what, OCI_MAX_LABELS);
                json_object_foreach(labels, k, v) {
                        if (!json_is_string(v))
                                return bad(err, "%s: label '%.64s' must be a string", what, k);
                        if (strlen(k) > OCI_MAX_LABEL_BYTES || json_string_length(v) > OCI_MAX_LABEL_BYTES)
                                return bad(err, "%s: label '%.64s' is too long", what, k);
                }
                v = json_deep_copy(labels);
                if (!v)
                        return sbx_err_set(err, -ENOMEM, "out of memory");
                r = config_set_new(c, "labels", TAKE_PTR(v), err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int plan_set_ref(struct plan *plan, const char *ref, struct sbx_err *err)
{
        if (strlen(ref) >= sizeof plan->ref)
                return bad(err, "image reference '%.64s...' is longer than %zu bytes", ref, sizeof plan->ref - 1);
        snprintf(plan->ref, sizeof plan->ref, "%s", ref);
        return 0;
}

static int plan_load_config(struct image_src *src, const char *name, struct plan *plan, struct sbx_err *err)
{
        const struct tar_entry *te;
        json_t *doc = NULL;
        int r;

        r = src_doc(src, name, "image config", &te, err);
        if (r < 0)
                return r;
        r = parse_doc(te, "image config", &doc, err);
        if (r < 0)
                return r;
        r = parse_config(doc, plan, err);
        json_decref(doc);
        return r;
}

static int too_many_layers(size_t n, struct sbx_err *err)
{
        return bad(err, "image has %zu layers, at most %d", n, SBX_MAX_IMAGE_LAYERS);
}

/* ---- docker save: manifest.json ---- */

static int plan_docker(struct image_src *src, const struct tar_entry *mf, struct plan *plan, struct sbx_err *err)
{
        static const char what[] = "manifest.json";
        json_t *doc = NULL, *m, *tags = NULL, *layers = NULL, *v;
        const char *config = NULL;
        size_t i;
        int r;

        r = parse_doc(mf, what, &doc, err);
        if (r < 0)
                return r;
        m = json_array_get(doc, 0);
        if (!json_is_array(doc) || !json_is_object(m)) {
                r = bad(err, "%s must be an array of objects", what);
                goto out;
        }
        r = jstr(m, "Config", what, OCI_MAX_NAME - 1, &config, err);
        if (r == 0)
                r = bad(err, "%s: 'Config' is missing", what);
        if (r < 0)
                goto out;
        r = jtyped(m, "Layers", what, JSON_ARRAY, &layers, err);
        if (r == 0)
                r = bad(err, "%s: 'Layers' is missing", what);
        if (r < 0)
                goto out;
        if (json_array_size(layers) > SBX_MAX_IMAGE_LAYERS) {
                r = too_many_layers(json_array_size(layers), err);
                goto out;
        }
        json_array_foreach(layers, i, v) {
                struct layer_ref *lr = &plan->layers[i];
                const struct tar_entry *te;

                if (!json_is_string(v) || oci__path_clean(json_string_value(v), lr->entry, sizeof lr->entry) <= 0) {
                        r = bad(err, "%s: 'Layers' must hold entry names", what);
                        goto out;
                }
                te = src_find(src, lr->entry);
                if (!te) {
                        r = bad(err, "layer '%s' is missing from the image", lr->entry);
                        goto out;
                }
                lr->size = -1;
                if (!name_digest_hex(lr->entry, lr->digest, sizeof lr->digest) &&
                    !name_digest_hex(te->name, lr->digest, sizeof lr->digest))
                        lr->digest[0] = '\0';
        }
        plan->n_layers = json_array_size(layers);

        r = jtyped(m, "RepoTags", what, JSON_ARRAY, &tags, err);
        if (r > 0 && json_array_size(tags) > 0) {
                v = json_array_get(tags, 0);
                r = json_is_string(v) ? plan_set_ref(plan, json_string_value(v), err)
                                      : bad(err, "%s: 'RepoTags' must hold strings", what);
        }
        if (r < 0)
                goto out;
        {
                char name[OCI_MAX_NAME];

                if (oci__path_clean(config, name, sizeof name) <= 0) {
                        r = bad(err, "%s: 'Config' is not an entry name", what);
                        goto out;
                }
                r = plan_load_config(src, name, plan, err);
        }
out:
        json_decref(doc);
        return r;
}

/* ---- OCI layout: index.json -> manifest ---- */

enum mt_kind {
        MT_OTHER,
        MT_INDEX,
        MT_MANIFEST,
};

struct descriptor {
        enum mt_kind kind;
        char digest[SBX_LAYER_DIGEST_MAX];
        int64_t size; /* -1: undeclared */
        char ref[sizeof(((struct plan *)0)->ref)];
        bool amd64; /* platform linux/amd64 */
};

static int parse_descriptor(const json_t *d, const char *what, struct descriptor *ret, struct sbx_err *err)
{
        json_t *ann = NULL, *platform = NULL, *size;
        const char *mt = NULL, *digest = NULL, *s = NULL, *os = NULL, *arch = NULL;
        int r;

        *ret = (struct descriptor){ .size = -1 };
        if (!json_is_object(d))
                return bad(err, "%s: a descriptor must be an object", what);
        r = jstr(d, "mediaType", what, OCI_MAX_NAME, &mt, err);
        if (r < 0)
                return r;
        r = jstr(d, "digest", what, OCI_MAX_NAME, &digest, err);
        if (r == 0)
                return bad(err, "%s: a descriptor has no digest", what);
        if (r < 0)
                return r;
        if (!layer_digest_valid(digest))
                return bad(err, "%s: digest '%.80s' is not sha256:<64 hex digits>", what, digest);
        snprintf(ret->digest, sizeof ret->digest, "%s", digest);
        size = json_object_get(d, "size");
        if (size) {
                if (!json_is_integer(size) || json_integer_value(size) < 0)
                        return bad(err, "%s: 'size' must be a non-negative integer", what);
                ret->size = json_integer_value(size);
        }
        if (mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST)))
                ret->kind = MT_INDEX;
        else if (mt && (!strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST)))
                ret->kind = MT_MANIFEST;
        r = jtyped(d, "annotations", what, JSON_OBJECT, &ann, err);
        if (r > 0)
                r = jstr(ann, ANNOTATION_REF, what, sizeof ret->ref - 1, &s, err);
        if (r < 0)
                return r;
        if (s)
                snprintf(ret->ref, sizeof ret->ref, "%s", s);
        r = jtyped(d, "platform", what, JSON_OBJECT, &platform, err);
        if (r > 0)
                r = jstr(platform, "os", what, 64, &os, err);
        if (r >= 0 && platform)
                r = jstr(platform, "architecture", what, 64, &arch, err);
        if (r < 0)
                return r;
        ret->amd64 = os && arch && !strcmp(os, "linux") && !strcmp(arch, "amd64");
        return 0;
}

/* Load and parse the blob a descriptor names, checking its size and digest. */
static int load_blob(struct image_src *src, const struct descriptor *d, const char *what, json_t **ret,
                     struct sbx_err *err)
{
        const struct tar_entry *te;
        char name[sizeof BLOB_PREFIX + 64];
        int r;

        snprintf(name, sizeof name, BLOB_PREFIX "%s", d->digest + 7);
        r = src_doc(src, name, what, &te, err);
        if (r < 0)
                return r;
        if (d->size >= 0 && (size_t)d->size != te->data_len)
                return bad(err, "%s %s has %zu bytes, its descriptor says %lld", what, d->digest, te->data_len,
                           (long long)d->size);
        return parse_doc(te, what, ret, err);
}

struct index_walk {
        struct image_src *src;
        size_t visited;
        bool have_first, have_amd64;
        struct descriptor first, amd64;
};

/* Depth-first over an image index and the indexes it nests: the first linux/amd64 manifest,
 * else the first manifest. Descriptors inherit the ref annotation of the index entry above. */
static int index_walk(struct index_walk *w, const json_t *index, const char *what, int depth, const char *inherited_ref,
                      struct sbx_err *err)
{
        json_t *manifests = NULL, *v;
        size_t i;
        int r;

        if (!json_is_object(index))
                return bad(err, "%s must be an object", what);
        r = jtyped(index, "manifests", what, JSON_ARRAY, &manifests, err);
        if (r == 0)
                return bad(err, "%s has no 'manifests'", what);
        if (r < 0)
                return r;
        json_array_foreach(manifests, i, v) {
                struct descriptor d;

                if (++w->visited > OCI_MAX_DESCRIPTORS)
                        return bad(err, "image indexes list more than %d manifests", OCI_MAX_DESCRIPTORS);
                r = parse_descriptor(v, what, &d, err);
                if (r < 0)
                        return r;
                if (!d.ref[0])
                        snprintf(d.ref, sizeof d.ref, "%s", inherited_ref);
                if (d.kind == MT_INDEX) {
                        json_t *sub = NULL;

                        if (depth >= OCI_MAX_INDEX_DEPTH)
                                return bad(err, "image indexes are nested deeper than %d", OCI_MAX_INDEX_DEPTH);
                        r = load_blob(w->src, &d, "image index", &sub, err);
                        if (r < 0)
                                return r;
                        r = index_walk(w, sub, "image index", depth + 1, d.ref, err);
                        json_decref(sub);
                        if (r < 0)
                                return r;
                } else if (d.kind == MT_MANIFEST) {
                        if (!w->have_first) {
                                w->first = d;
                                w->have_first = true;
                        }
                        if (d.amd64 && !w->have_amd64) {
                                w->amd64 = d;
                                w->have_amd64 = true;
                        }
                }
                if (w->have_amd64)
                        return 0;
        }
        return 0;
}

static int plan_manifest(struct image_src *src, const struct descriptor *d, struct plan *plan, struct sbx_err *err)
{
        static const char what[] = "image manifest";
        json_t *m = NULL, *layers = NULL, *cfg = NULL, *ann = NULL, *v, *sv;
        struct descriptor cd;
        const char *mt = NULL, *ref = NULL;
        size_t i;
        int r;

        r = load_blob(src, d, what, &m, err);
        if (r < 0)
                return r;
        if (!json_is_object(m)) {
                r = bad(err, "%s must be an object", what);
                goto out;
        }
        sv = json_object_get(m, "schemaVersion");
        if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
                r = bad(err, "%s: 'schemaVersion' must be 2", what);
                goto out;
        }
        r = jstr(m, "mediaType", what, OCI_MAX_NAME, &mt, err);
        if (r > 0 && strcmp(mt, MT_OCI_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST))
                r = bad(err, "%s: media type '%s' is not an image manifest", what, mt);
        if (r < 0)
                goto out;
        r = jtyped(m, "layers", what, JSON_ARRAY, &layers, err);
        if (r == 0)
                r = bad(err, "%s has no 'layers'", what);
        if (r < 0)
                goto out;
        if (json_array_size(layers) > SBX_MAX_IMAGE_LAYERS) {
                r = too_many_layers(json_array_size(layers), err);
                goto out;
        }
        json_array_foreach(layers, i, v) {
                struct layer_ref *lr = &plan->layers[i];
                struct descriptor ld;
                const char *lmt = NULL;

                r = parse_descriptor(v, what, &ld, err);
                if (r < 0)
                        goto out;
                /* the compression is detected from the bytes; the media type only has to be there */
                r = jstr(v, "mediaType", what, OCI_MAX_NAME, &lmt, err);
                if (r == 0)
                        r = bad(err, "%s: layer %s has no media type", what, ld.digest);
                if (r < 0)
                        goto out;
                snprintf(lr->entry, sizeof lr->entry, BLOB_PREFIX "%s", ld.digest + 7);
                snprintf(lr->digest, sizeof lr->digest, "%s", ld.digest);
                lr->size = ld.size;
                if (!src_find(src, lr->entry)) {
                        r = bad(err, "layer %s is missing from the image", ld.digest);
                        goto out;
                }
        }
        plan->n_layers = json_array_size(layers);

        r = jtyped(m, "config", what, JSON_OBJECT, &cfg, err);
        if (r == 0)
                r = bad(err, "%s has no 'config'", what);
        if (r >= 0)
                r = parse_descriptor(cfg, what, &cd, err);
        if (r < 0)
                goto out;
        r = jtyped(m, "annotations", what, JSON_OBJECT, &ann, err);
        if (r > 0)
                r = jstr(ann, ANNOTATION_REF, what, sizeof plan->ref - 1, &ref, err);
        if (r < 0)
                goto out;
        r = plan_set_ref(plan, d->ref[0] ? d->ref : ref ? ref : "", err);
        if (r < 0)
                goto out;
        {
                json_t *doc = NULL;

                r = load_blob(src, &cd, "image config", &doc, err);
                if (r < 0)
                        goto out;
                r = parse_config(doc, plan, err);
                json_decref(doc);
        }
out:
        json_decref(m);
        return r;
}

static int plan_oci(struct image_src *src, const struct tar_entry *idx, struct plan *plan, struct sbx_err *err)
{
        struct index_walk w = { .src = src };
        const struct tar_entry *layout = src_find(src, "oci-layout");
        json_t *doc = NULL;
        int r;

        if (layout) {
                const char *v = NULL;

                if (!layout->data)
                        return bad(err, "oci-layout is not a small JSON document");
                r = parse_doc(layout, "oci-layout", &doc, err);
                if (r < 0)
                        return r;
                r = json_is_object(doc) ? jstr(doc, "imageLayoutVersion", "oci-layout", 64, &v, err)
                                        : bad(err, "oci-layout must be an object");
                json_decref(doc);
                if (r == 0)
                        r = bad(err, "oci-layout has no 'imageLayoutVersion'");
                if (r < 0)
                        return r;
        }
        r = parse_doc(idx, "index.json", &doc, err);
        if (r < 0)
                return r;
        r = index_walk(&w, doc, "index.json", 0, "", err);
        json_decref(doc);
        if (r < 0)
                return r;
        if (!w.have_first)
                return bad(err, "index.json lists no image manifest");
        return plan_manifest(src, w.have_amd64 ? &w.amd64 : &w.first, plan, err);
}

/* ---- pass 2: layers ---- */

struct blob_reader {
        struct archive *outer;
        EVP_MD_CTX *md;
        uint64_t bytes;
        unsigned char buf[OCI_READ_BLOCK];
};

/* The nested reader pulls the layer's bytes from the outer archive, hashing them on the way. */
static la_ssize_t blob_read(struct archive *inner, void *data, const void **buf)
{
        struct blob_reader *br = data;
        la_ssize_t n = archive_read_data(br->outer, br->buf, sizeof br->buf);

        if (n < 0) {
                int e = archive_errno(br->outer);

                archive_set_error(inner, e > 0 ? e : EINVAL, "%s", oci__archive_error(br->outer));
                return -1;
        }
        if (n > 0 && !EVP_DigestUpdate(br->md, br->buf, (size_t)n)) {
                archive_set_error(inner, ENOMEM, "cannot compute a digest");
                return -1;
        }
        br->bytes += (uint64_t)n;
        *buf = br->buf;
        return n;
}

/* Position a fresh reader of the outer tarball at entry te (headers only; data is skipped). */
static int src_seek(struct image_src *src, const struct tar_entry *te, struct archive **ret, struct sbx_err *err)
{
        _cleanup_(archive_read_freep) struct archive *a = NULL;
        int r;

        r = src_open(src, &a, err);
        if (r < 0)
                return r;
        for (size_t index = 0;; index++) {
                struct archive_entry *e;

                r = archive_read_next_header(a, &e);
                if (r == ARCHIVE_EOF)
                        return bad(err, "'%s' changed while it was read", src->path);
                if (r < ARCHIVE_WARN)
                        return bad(err, "cannot read '%s': %s", src->path, oci__archive_error(a));
                if (index == te->index)
                        break;
        }
        *ret = TAKE_PTR(a);
        return 0;
}

/* Apply one layer into the work dir tmp (<tmp>/root). */
static int layer_fill(struct image_src *src, const struct layer_ref *lr, const char *tmp, struct sbx_err *err)
{
        /* declared first, freed last: the readers below use them until they are freed */
        _cleanup_free_ struct blob_reader *br = NULL;
        _cleanup_(md_ctx_freep) EVP_MD_CTX *md = NULL;
        _cleanup_(archive_read_freep) struct archive *outer = NULL, *inner = NULL;
        char what[OCI_MAX_NAME + 16], rootpath[PATH_MAX], root[PATH_MAX], got[SBX_LAYER_DIGEST_MAX];
        const struct tar_entry *te;
        struct sbx_err apply_err = {};
        unsigned char md_out[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        int r, apply_r;

        if (lr->digest[0])
                snprintf(what, sizeof what, "layer %s", lr->digest);
        else
                snprintf(what, sizeof what, "layer '%s'", lr->entry);
        te = src_find(src, lr->entry);
        if (!te)
                return bad(err, "%s is missing from the image", what);
        if (lr->size >= 0 && lr->size != te->size)
                return bad(err, "%s has %lld bytes, its descriptor says %lld", what, (long long)te->size,
                           (long long)lr->size);
        snprintf(rootpath, sizeof rootpath, "%s/root", tmp);
        /* libarchive refuses a symlink anywhere in the names we give it: no symlink in the root */
        if (!realpath(rootpath, root))
                return sbx_err_set(err, -errno, "cannot resolve '%s': %s", rootpath, strerror(errno));

        r = src_seek(src, te, &outer, err);
        if (r < 0)
                return r;
        md = EVP_MD_CTX_new();
        br = malloc(sizeof *br);
        if (!md || !br || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
                return sbx_err_set(err, -ENOMEM, "out of memory");
        br->outer = outer;
        br->md = md;
        br->bytes = 0;
        inner = archive_read_new();
        if (!inner)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        /* gzip, zstd and plain tar, told apart by their bytes; an empty blob is an empty layer */
        if (archive_read_support_filter_gzip(inner) < ARCHIVE_WARN ||
            archive_read_support_filter_zstd(inner) < ARCHIVE_WARN ||
            archive_read_support_filter_none(inner) != ARCHIVE_OK ||
            archive_read_support_format_tar(inner) != ARCHIVE_OK ||
            archive_read_support_format_empty(inner) != ARCHIVE_OK)
                return sbx_err_set(err, -SBX_E_INTERNAL, "cannot set up the layer reader: %s",
                                   oci__archive_error(inner));
        if (archive_read_open(inner, br, NULL, blob_read, NULL) != ARCHIVE_OK)
                apply_r = bad(&apply_err, "%s is not a tar archive: %s", what, oci__archive_error(inner));
        else
                apply_r = oci__apply_layer(inner, root, what, &apply_err);

        /* the rest of the blob (tar padding, trailing bytes) counts for the digest */
        for (;;) {
                la_ssize_t n = archive_read_data(outer, br->buf, sizeof br->buf);

                if (n == 0)
                        break;
                if (n < 0) {
                        if (apply_r < 0)
                                break;
                        return bad(err, "%s: cannot read '%s': %s", what, src->path, oci__archive_error(outer));
                }
                if (!EVP_DigestUpdate(md, br->buf, (size_t)n))
                        return sbx_err_set(err, -ENOMEM, "cannot compute a digest");
                br->bytes += (uint64_t)n;
        }
        if (lr->digest[0] && br->bytes == (uint64_t)te->size) {
                if (!EVP_DigestFinal_ex(md, md_out, &md_len) || md_len != 32)
                        return sbx_err_set(err, -ENOMEM, "cannot compute a digest");
                memcpy(got, "sha256:", 7);
                hex_encode(md_out, md_len, got + 7);
                /* a corrupt blob is reported as such, whatever the tar reader made of it */
                if (strcmp(got, lr->digest))
                        return bad(err, "layer %s does not match its digest", lr->digest);
        }
        if (apply_r < 0) {
                if (err && !err->code)
                        *err = apply_err;
                return apply_r;
        }
        if (br->bytes != (uint64_t)te->size)
                return bad(err, "%s is truncated", what);
        return 0;
}

/* Hash a layer's blob without applying it; 0 if it matches lr->digest. */
static int blob_verify(struct image_src *src, const struct layer_ref *lr, struct sbx_err *err)
{
        _cleanup_(md_ctx_freep) EVP_MD_CTX *md = EVP_MD_CTX_new();
        _cleanup_(archive_read_freep) struct archive *outer = NULL;
        _cleanup_free_ unsigned char *buf = malloc(OCI_READ_BLOCK);
        const struct tar_entry *te = src_find(src, lr->entry);
        unsigned char md_out[EVP_MAX_MD_SIZE];
        char got[SBX_LAYER_DIGEST_MAX];
        unsigned md_len = 0;
        uint64_t bytes = 0;
        int r;

        if (!te)
                return bad(err, "layer %s is missing from the image", lr->digest);
        if (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
                return sbx_err_set(err, -ENOMEM, "out of memory");
        r = src_seek(src, te, &outer, err);
        if (r < 0)
                return r;
        for (;;) {
                la_ssize_t n = archive_read_data(outer, buf, OCI_READ_BLOCK);

                if (n == 0)
                        break;
                if (n < 0)
                        return bad(err, "layer %s: cannot read '%s': %s", lr->digest, src->path,
                                   oci__archive_error(outer));
                if (!EVP_DigestUpdate(md, buf, (size_t)n))
                        return sbx_err_set(err, -ENOMEM, "cannot compute a digest");
                bytes += (uint64_t)n;
        }
        if (bytes != (uint64_t)te->size)
                return bad(err, "layer %s is truncated", lr->digest);
        if (!EVP_DigestFinal_ex(md, md_out, &md_len) || md_len != 32)
                return sbx_err_set(err, -ENOMEM, "cannot compute a digest");
        memcpy(got, "sha256:", 7);
        hex_encode(md_out, md_len, got + 7);
        if (strcmp(got, lr->digest))
                return bad(err, "layer %s does not match its digest", lr->digest);
        return 0;
}

/* Unpack one layer into a new work dir (*tmp), or, when its blob is a layer we have, reuse that
 * layer (*reused, *ret filled, held). */
static int layer_prepare(struct layer_store *ls, struct image_src *src, const struct layer_ref *lr, char *tmp,
                         size_t tmp_size, bool *reused, struct layer_info *ret, struct sbx_err *err)
{
        int r;

        *reused = false;
        /* A blob whose digest is a layer we have is that layer's canonical stream (an uncompressed
         * tar of exactly that tree): check the bytes and reuse it instead of unpacking a copy. The
         * check matters: the declared digest alone must never grant a layer. */
        if (lr->digest[0] && layer_digest_valid(lr->digest) && layer_hold(ls, lr->digest, NULL) >= 0) {
                r = blob_verify(src, lr, err);
                if (r >= 0)
                        r = layer_get(ls, lr->digest, ret, err);
                if (r < 0)
                        layer_release(ls, lr->digest);
                *reused = r >= 0;
                return r;
        }
        r = layer_tmp_new(ls, tmp, tmp_size, err);
        if (r < 0)
                return r;
        r = layer_fill(src, lr, tmp, err);
        if (r < 0)
                layer_discard(ls, tmp);
        return r;
}

/* Committing a layer (hashing its tree) runs on a thread of its own while the next layer is
 * unpacked: one reads files back and hashes, the other mostly creates them in the kernel. */
struct committer {
        pthread_t thread;
        bool active;
        struct layer_store *ls;
        size_t index;
        char tmp[PATH_MAX - 16];
        int r;
        struct layer_info info;
        struct sbx_err err;
};

static void *commit_main(void *arg)
{
        struct committer *c = arg;

        c->r = layer_commit(c->ls, c->tmp, "import", &c->info, &c->err);
        if (c->r < 0)
                layer_discard(c->ls, c->tmp); /* a no-op if commit already removed it */
        return NULL;
}

/* Start committing tmp as layer index (synchronously if no thread can be made). */
static void commit_start(struct committer *c, struct layer_store *ls, const char *tmp, size_t index)
{
        c->ls = ls;
        c->index = index;
        c->r = 0;
        memset(&c->err, 0, sizeof c->err);
        snprintf(c->tmp, sizeof c->tmp, "%s", tmp);
        c->active = true;
        if (pthread_create(&c->thread, NULL, commit_main, c) != 0) {
                c->active = false;
                (void)commit_main(c);
        }
}

/* Wait for the commit in flight (if any) and record its layer in img (held). Returns its result
 * (error in c->err), 0 if none was in flight. */
static int commit_collect(struct committer *c, struct oci_image *img, bool *held)
{
        int r;

        if (c->active) {
                (void)pthread_join(c->thread, NULL);
                c->active = false;
        }
        if (c->index == SIZE_MAX)
                return 0;
        r = c->r;
        if (r >= 0) {
                snprintf(img->layers[c->index], sizeof img->layers[0], "%s", c->info.digest);
                held[c->index] = true;
        }
        c->index = SIZE_MAX;
        return r;
}

void oci_image_done(struct oci_image *img)
{
        if (!img)
                return;
        json_decref(img->config);
        img->config = NULL;
}

int oci_import(struct layer_store *ls, const char *path, struct oci_image *ret,
               void (*progress)(size_t done, size_t total, void *data), void *data, struct sbx_err *err)
{
        struct image_src src = { .path = path, .fd = -EBADF };
        _cleanup_free_ struct plan *plan = NULL;
        _cleanup_free_ struct oci_image *img = NULL;
        const struct tar_entry *te;
        locale_t utf8 = (locale_t)0, old_locale = (locale_t)0;
        _cleanup_free_ struct committer *cm = calloc(1, sizeof *cm);
        bool held[SBX_MAX_IMAGE_LAYERS] = { false };
        struct stat st;
        size_t done = 0;
        int r, q;

        if (!cm)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        cm->index = SIZE_MAX;
        plan = calloc(1, sizeof *plan);
        img = calloc(1, sizeof *img);
        if (!plan || !img)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        /* libarchive converts pax (UTF-8) names to the thread's locale: make that UTF-8, as the
         * layer store does when it writes them, so names survive whatever the caller's locale is */
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        if (utf8 == (locale_t)0)
                return sbx_err_set(err, -errno, "cannot load the C.UTF-8 locale: %s", strerror(errno));
        old_locale = uselocale(utf8);
        src.fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (src.fd < 0) {
                r = sbx_err_set(err, -errno, "cannot open '%s': %s", path, strerror(errno));
                goto out;
        }
        if (fstat(src.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                r = sbx_err_setr(err, -SBX_E_INVALID, "invalid_image", "'%s' is not a regular file", path);
                goto out;
        }

        r = src_scan(&src, err);
        if (r < 0)
                goto out;
        if ((te = src_find(&src, "manifest.json")) && te->data)
                r = plan_docker(&src, te, plan, err);
        else if ((te = src_find(&src, "index.json")) && te->data)
                r = plan_oci(&src, te, plan, err);
        else
                r = bad(err, "'%s' has neither manifest.json nor index.json", path);
        if (r < 0)
                goto out;

        for (size_t i = 0; i < plan->n_layers; i++) {
                char tmp[PATH_MAX - 16];
                struct layer_info info;
                bool reused = false, have_tmp;

                r = layer_prepare(ls, &src, &plan->layers[i], tmp, sizeof tmp, &reused, &info, err);
                have_tmp = r >= 0 && !reused;
                if (r >= 0 && reused) {
                        snprintf(img->layers[i], sizeof img->layers[i], "%s", info.digest);
                        held[i] = true;
                }
                /* the previous layer's commit ran meanwhile */
                q = commit_collect(cm, img, held);
                if (q < 0 && r >= 0) {
                        r = q;
                        if (err)
                                *err = cm->err;
                }
                if (r < 0) {
                        if (have_tmp)
                                layer_discard(ls, tmp);
                        goto out;
                }
                if (have_tmp)
                        commit_start(cm, ls, tmp, i);
                done = i + 1;
                if (progress)
                        progress(done, plan->n_layers, data);
        }
        r = commit_collect(cm, img, held);
        if (r < 0) {
                if (err)
                        *err = cm->err;
                goto out;
        }
        img->n_layers = plan->n_layers;
        img->config = TAKE_PTR(plan->config);
        snprintf(img->ref, sizeof img->ref, "%s", plan->ref);
        *ret = *img;
        r = 0;
out:
        (void)commit_collect(cm, img, held);
        if (r < 0)
                for (size_t i = 0; i < SBX_MAX_IMAGE_LAYERS; i++)
                        if (held[i])
                                layer_release(ls, img->layers[i]);
        json_decref(plan->config);
        image_src_done(&src);
        if (old_locale != (locale_t)0)
                uselocale(old_locale);
        freelocale(utf8);
        return r;
}
