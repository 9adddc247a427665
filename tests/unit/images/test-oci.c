// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for OCI import/export (src/images/oci.c, oci-apply.c) on top of a real layer store.
 * Image tarballs are written here with libarchive in both forms (OCI layout, docker save) with
 * plain and gzip layers: whiteouts and opaque dirs, config fields, refs, digest checks, entries
 * that try to leave the layer (.., symlinks, hard links), too many layers, a truncated tarball,
 * export -> import round trips, and each kind of entry as written (replaced names, directories
 * listed after their children, set-id bits, sparse files, FIFOs and devices, hard and symlinks).
 * Needs root (chown, mknod); skipped otherwise. Every test works in its own mkdtemp dir under /tmp
 * and removes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <locale.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "images/layer.h"
#include "images/oci.h"
#include "images/oci-internal.h"

#define MTIME 1700000000

struct fixture {
        char dir[64];     /* scratch dir */
        char store[96];   /* dir/store */
        char image[96];   /* dir/image.tar */
        char out[96];     /* dir/export.tar */
        char outside[96]; /* dir/OUTSIDE: what entries must never reach */
        struct layer_store *ls;
};

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)ftw;
        if (type == FTW_DP)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static void rm_rf(const char *path)
{
        (void)nftw(path, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct sbx_err err = {};

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test-oci-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->store, sizeof f->store, "%s/store", f->dir);
        snprintf(f->image, sizeof f->image, "%s/image.tar", f->dir);
        snprintf(f->out, sizeof f->out, "%s/export.tar", f->dir);
        snprintf(f->outside, sizeof f->outside, "%s/OUTSIDE", f->dir);
        assert_int_equal(mkdir(f->outside, 0755), 0);
        assert_int_equal(layer_store_open(f->store, &f->ls, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        layer_store_free(f->ls);
        rm_rf(f->dir);
        free(f);
        return 0;
}

/* ---- building tarballs in memory ---- */

struct mem {
        unsigned char *p;
        size_t n, cap;
};

static void mem_append(struct mem *m, const void *buf, size_t len)
{
        if (m->n + len > m->cap) {
                m->cap = (m->n + len) * 2 + 1024;
                m->p = realloc(m->p, m->cap);
                assert_non_null(m->p);
        }
        memcpy(m->p + m->n, buf, len);
        m->n += len;
}

static la_ssize_t mem_write_cb(struct archive *a, void *data, const void *buf, size_t len)
{
        (void)a;
        mem_append(data, buf, len);
        return (la_ssize_t)len;
}

static void digest_of(const void *data, size_t len, char digest[SBX_LAYER_DIGEST_MAX])
{
        unsigned char md[32];
        unsigned n = 0;

        assert_true(EVP_Digest(data, len, md, &n, EVP_sha256(), NULL));
        memcpy(digest, "sha256:", 8);
        for (unsigned i = 0; i < n; i++)
                snprintf(digest + 7 + 2 * i, 3, "%02x", md[i]);
}

/* One entry of a test tar: 'f' file (arg = content), 'd' dir, 'l' symlink (arg = target),
 * 'h' hard link (arg = target), 'c' char device (1, 3), 'p' fifo. */
struct tent {
        const char *name;
        char type;
        const char *arg;
        unsigned mode;
        int64_t uid;
};

/* Serialise and drop a packed value. */
static char *dump(json_t *j)
{
        char *s;

        assert_non_null(j);
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        assert_non_null(s);
        return s;
}

enum compression {
        PLAIN,
        GZIP,
        ZSTD,
};

static void make_tar(const struct tent *es, size_t n, enum compression c, struct mem *out)
{
        struct archive *a = archive_write_new();

        assert_non_null(a);
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        if (c == GZIP)
                assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
        else if (c == ZSTD)
                assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
        else
                assert_int_equal(archive_write_add_filter_none(a), ARCHIVE_OK);
        /* no zero padding after the compressed stream (a zstd reader takes it for a bad frame) */
        assert_int_equal(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
        assert_int_equal(archive_write_open(a, out, NULL, mem_write_cb, NULL), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();
                const struct tent *t = &es[i];

                archive_entry_set_pathname(e, t->name);
                archive_entry_set_mtime(e, MTIME, 0);
                archive_entry_set_uid(e, t->uid);
                archive_entry_set_gid(e, t->uid);
                switch (t->type) {
                case 'f':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_size(e, (la_int64_t)strlen(t->arg));
                        break;
                case 'd':
                        archive_entry_set_filetype(e, AE_IFDIR);
                        break;
                case 'l':
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, t->arg);
                        break;
                case 'h':
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_hardlink(e, t->arg);
                        break;
                case 'c':
                        archive_entry_set_filetype(e, AE_IFCHR);
                        archive_entry_set_rdev(e, makedev(1, 3));
                        break;
                case 'p':
                        archive_entry_set_filetype(e, AE_IFIFO);
                        break;
                default:
                        fail();
                }
                archive_entry_set_perm(e, t->mode ? t->mode : (t->type == 'd' ? 0755 : 0644));
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (t->type == 'f')
                        assert_int_equal(archive_write_data(a, t->arg, strlen(t->arg)), (la_ssize_t)strlen(t->arg));
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
}

/* An entry of the outer tarball: a file (data/len) or, with link, a symlink. */
struct oent {
        char name[128];
        const void *data;
        size_t len;
        const char *link;
};

static void write_outer(const char *path, const struct oent *es, size_t n)
{
        struct archive *a = archive_write_new();

        assert_non_null(a);
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *e = archive_entry_new();

                archive_entry_set_pathname(e, es[i].name);
                archive_entry_set_mtime(e, MTIME, 0);
                if (es[i].link) {
                        archive_entry_set_filetype(e, AE_IFLNK);
                        archive_entry_set_symlink(e, es[i].link);
                        archive_entry_set_perm(e, 0777);
                } else {
                        archive_entry_set_filetype(e, AE_IFREG);
                        archive_entry_set_perm(e, 0644);
                        archive_entry_set_size(e, (la_int64_t)es[i].len);
                }
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
                if (!es[i].link && es[i].len)
                        assert_int_equal(archive_write_data(a, es[i].data, es[i].len), (la_ssize_t)es[i].len);
                archive_entry_free(e);
        }
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
}

#define CONFIG_JSON                                                                                     \
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[\"PATH=/usr/bin\",\"A=1\"]," \
        "\"WorkingDir\":\"/work\",\"User\":\"1000:1000\",\"Entrypoint\":[\"/bin/sh\",\"-c\"],"          \
        "\"Cmd\":[\"echo hi\"],\"Labels\":{\"org.example\":\"yes\"},\"Volumes\":null},"                 \
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}"
#define CONFIG_SBX                                                                           \
        "{\"env\":[\"PATH=/usr/bin\",\"A=1\"],\"workdir\":\"/work\",\"user\":\"1000:1000\"," \
        "\"entrypoint\":[\"/bin/sh\",\"-c\"],\"cmd\":[\"echo hi\"],\"labels\":{\"org.example\":\"yes\"}}"

enum oci_flags {
        OCI_CORRUPT_LAST = 1 << 0,   /* flip a byte of the last layer after its digest was taken */
        OCI_METADATA_FIRST = 1 << 1, /* index, manifest, config before the layers */
        OCI_NESTED = 1 << 2,         /* index.json -> nested index (arm64 first, amd64 second) -> manifest */
};

/* An OCI layout tarball of the given layer blobs. */
static void make_oci(const char *path, struct mem *layers, size_t n, const char *config, const char *ref,
                     unsigned flags)
{
        char cdigest[SBX_LAYER_DIGEST_MAX], mdigest[SBX_LAYER_DIGEST_MAX], ndigest[SBX_LAYER_DIGEST_MAX];
        char(*ldigest)[SBX_LAYER_DIGEST_MAX] = calloc(n ? n : 1, sizeof *ldigest);
        struct oent *es = calloc(n + 8, sizeof *es);
        json_t *jl = json_array(), *annotations = json_object();
        char *manifest, *index, *nested = NULL;
        size_t k = 0;

        assert_non_null(ldigest);
        assert_non_null(es);
        for (size_t i = 0; i < n; i++) {
                digest_of(layers[i].p, layers[i].n, ldigest[i]);
                json_array_append_new(jl, json_pack("{s:s, s:s, s:I}", "mediaType",
                                                    "application/vnd.oci.image.layer.v1.tar+gzip", "digest", ldigest[i],
                                                    "size", (json_int_t)layers[i].n));
        }
        digest_of(config, strlen(config), cdigest);
        manifest = dump(json_pack("{s:i, s:s, s:{s:s, s:s, s:I}, s:o}", "schemaVersion", 2, "mediaType",
                                  "application/vnd.oci.image.manifest.v1+json", "config", "mediaType",
                                  "application/vnd.oci.image.config.v1+json", "digest", cdigest, "size",
                                  (json_int_t)strlen(config), "layers", jl));
        assert_non_null(manifest);
        digest_of(manifest, strlen(manifest), mdigest);
        if (ref)
                json_object_set_new(annotations, "org.opencontainers.image.ref.name", json_string(ref));
        if (flags & OCI_NESTED) {
                nested = dump(json_pack(
                        "{s:i, s:[{s:s, s:s, s:i, s:{s:s, s:s}}, {s:s, s:s, s:I, s:{s:s, s:s}}]}", "schemaVersion", 2,
                        "manifests", "mediaType", "application/vnd.oci.image.manifest.v1+json", "digest",
                        "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size", 10,
                        "platform", "architecture", "arm64", "os", "linux", "mediaType",
                        "application/vnd.oci.image.manifest.v1+json", "digest", mdigest, "size",
                        (json_int_t)strlen(manifest), "platform", "architecture", "amd64", "os", "linux"));
                digest_of(nested, strlen(nested), ndigest);
                index = dump(json_pack("{s:i, s:[{s:s, s:s, s:I, s:o}]}", "schemaVersion", 2, "manifests", "mediaType",
                                       "application/vnd.oci.image.index.v1+json", "digest", ndigest, "size",
                                       (json_int_t)strlen(nested), "annotations", annotations));
        } else {
                index = dump(json_pack("{s:i, s:[{s:s, s:s, s:I, s:o}]}", "schemaVersion", 2, "manifests", "mediaType",
                                       "application/vnd.oci.image.manifest.v1+json", "digest", mdigest, "size",
                                       (json_int_t)strlen(manifest), "annotations", annotations));
        }
        assert_non_null(index);

        snprintf(es[k].name, sizeof es[k].name, "oci-layout");
        es[k].data = "{\"imageLayoutVersion\":\"1.0.0\"}";
        es[k].len = strlen(es[k].data);
        k++;
        if (!(flags & OCI_METADATA_FIRST))
                for (size_t i = 0; i < n; i++, k++) {
                        snprintf(es[k].name, sizeof es[k].name, "blobs/sha256/%s", ldigest[i] + 7);
                        es[k].data = layers[i].p;
                        es[k].len = layers[i].n;
                }
        snprintf(es[k].name, sizeof es[k].name, "blobs/sha256/%s", cdigest + 7);
        es[k].data = config;
        es[k++].len = strlen(config);
        snprintf(es[k].name, sizeof es[k].name, "./blobs/sha256/%s", mdigest + 7);
        es[k].data = manifest;
        es[k++].len = strlen(manifest);
        if (nested) {
                snprintf(es[k].name, sizeof es[k].name, "blobs/sha256/%s", ndigest + 7);
                es[k].data = nested;
                es[k++].len = strlen(nested);
        }
        snprintf(es[k].name, sizeof es[k].name, "index.json");
        es[k].data = index;
        es[k++].len = strlen(index);
        if (flags & OCI_METADATA_FIRST)
                for (size_t i = 0; i < n; i++, k++) {
                        snprintf(es[k].name, sizeof es[k].name, "blobs/sha256/%s", ldigest[i] + 7);
                        es[k].data = layers[i].p;
                        es[k].len = layers[i].n;
                }
        if ((flags & OCI_CORRUPT_LAST) && n > 0) {
                unsigned char *p = layers[n - 1].p;

                p[layers[n - 1].n / 3] ^= 0x20; /* inside the first entry's header */
        }
        write_outer(path, es, k);
        free(manifest);
        free(index);
        free(nested);
        free(es);
        free(ldigest);
}

/* A `docker save` tarball (pre-25 layout): <hex>.json config, <i>/layer.tar, manifest.json.
 * dup_of[i] >= 0 makes layer i a symlink to layer dup_of[i]'s file, as docker does. */
static void make_docker(const char *path, struct mem *layers, size_t n, const int *dup_of, const char *config,
                        const char *repo_tag)
{
        char cdigest[SBX_LAYER_DIGEST_MAX], link[64][64];
        struct oent *es = calloc(n + 4, sizeof *es);
        json_t *jl = json_array();
        char *manifest;
        size_t k = 0;

        assert_non_null(es);
        assert_true(n <= 64);
        digest_of(config, strlen(config), cdigest);
        snprintf(es[k].name, sizeof es[k].name, "%s.json", cdigest + 7);
        es[k].data = config;
        es[k++].len = strlen(config);
        for (size_t i = 0; i < n; i++, k++) {
                snprintf(es[k].name, sizeof es[k].name, "%zu/layer.tar", i);
                if (dup_of && dup_of[i] >= 0) {
                        snprintf(link[i], sizeof link[i], "../%d/layer.tar", dup_of[i]);
                        es[k].link = link[i];
                } else {
                        es[k].data = layers[i].p;
                        es[k].len = layers[i].n;
                }
                json_array_append_new(jl, json_string(es[k].name));
        }
        manifest = dump(json_pack("[{s:s, s:[s], s:o}]", "Config", es[0].name, "RepoTags", repo_tag, "Layers", jl));
        assert_non_null(manifest);
        snprintf(es[k].name, sizeof es[k].name, "manifest.json");
        es[k].data = manifest;
        es[k++].len = strlen(manifest);
        write_outer(path, es, k);
        free(manifest);
        free(es);
}

/* ---- the two reference layers ---- */

static const struct tent layer1_entries[] = {
        { "a/", 'd', NULL, 0, 0 },
        { "a/file1", 'f', "one\n", 0, 0 },
        { "a/file2", 'f', "two\n", 0600, 0 },
        { "./b/", 'd', NULL, 0, 0 },
        { "b/x", 'f', "x\n", 0, 1000 },
        { "/etc/", 'd', NULL, 0, 0 },
        { "etc/passwd", 'f', "root:x:0:0:root:/root:/bin/sh\n", 0, 0 },
        { "etc/big-id", 'f', "id\n", 0, 70000 },
        { "etc/null", 'c', NULL, 0, 0 },
        { "caf\xc3\xa9", 'f', "utf8\n", 0, 0 },
        { "a/link-to-file1", 'h', "a/file1", 0, 0 },
        { "sym", 'l', "/etc/passwd", 0, 0 },
};

static const struct tent layer2_entries[] = {
        { "a/", 'd', NULL, 0, 0 },           { "a/.wh.file1", 'f', "", 0, 0 }, { "b/", 'd', NULL, 0, 0 },
        { "b/.wh..wh..opq", 'f', "", 0, 0 }, { "b/y", 'f', "y\n", 0, 0 },      { "new/deep/.wh.gone", 'f', "", 0, 0 },
};

static void make_layers(struct mem *l, enum compression c1, enum compression c2)
{
        make_tar(layer1_entries, ELEMENTSOF(layer1_entries), c1, &l[0]);
        make_tar(layer2_entries, ELEMENTSOF(layer2_entries), c2, &l[1]);
}

static void mems_free(struct mem *l, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(l[i].p);
}

/* ---- checks ---- */

struct progress_log {
        size_t n;
        size_t done[8], total[8];
};

static void on_progress(size_t done, size_t total, void *data)
{
        struct progress_log *p = data;

        if (p->n < ELEMENTSOF(p->done)) {
                p->done[p->n] = done;
                p->total[p->n] = total;
        }
        p->n++;
}

static void layer_path(struct fixture *f, const char *digest, const char *rel, char *buf, size_t size)
{
        struct layer_info info;
        struct sbx_err err = {};

        assert_int_equal(layer_get(f->ls, digest, &info, &err), 0);
        assert_true((size_t)snprintf(buf, size, "%s/%s", info.root, rel) < size);
}

static unsigned holds_of(struct fixture *f, const char *digest)
{
        struct layer_info info;
        struct sbx_err err = {};

        assert_int_equal(layer_get(f->ls, digest, &info, &err), 0);
        return info.holds;
}

/* No work dir left in the store, no layer held. */
static void assert_clean_store(struct fixture *f)
{
        struct layer_info *list = NULL;
        struct sbx_err err = {};
        struct dirent *de;
        size_t n = 0;
        DIR *d = opendir(f->store);

        assert_non_null(d);
        while ((de = readdir(d)))
                assert_false(strncmp(de->d_name, "tmp-", 4) == 0);
        closedir(d);
        assert_int_equal(layer_list(f->ls, &list, &n, &err), 0);
        for (size_t i = 0; i < n; i++)
                assert_int_equal(list[i].holds, 0);
        free(list);
}

static void release_image(struct fixture *f, struct oci_image *img)
{
        for (size_t i = 0; i < img->n_layers; i++)
                layer_release(f->ls, img->layers[i]);
        oci_image_done(img);
}

static void assert_config(const struct oci_image *img, const char *want)
{
        json_t *w = json_loads(want, 0, NULL);

        assert_non_null(w);
        assert_non_null(img->config);
        if (!json_equal(w, img->config)) {
                char *got = json_dumps(img->config, JSON_COMPACT);
                print_error("config %s\n", got);
                free(got);
                fail();
        }
        json_decref(w);
}

static void assert_invalid(int r, const struct sbx_err *err, const char *msg_part)
{
        if (r != -SBX_E_INVALID || strcmp(err->reason, "invalid_image") || (msg_part && !strstr(err->msg, msg_part)))
                print_error("r=%d reason='%s' msg='%s'\n", r, err->reason, err->msg);
        assert_int_equal(r, -SBX_E_INVALID);
        assert_string_equal(err->reason, "invalid_image");
        if (msg_part)
                assert_non_null(strstr(err->msg, msg_part));
}

/* The trees of the two reference layers, as imported. */
static void check_reference_layers(struct fixture *f, const struct oci_image *img)
{
        char p[PATH_MAX], buf[64];
        struct stat st, st2;

        layer_path(f, img->layers[0], "a/file1", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mtime, MTIME);
        assert_int_equal(st.st_nlink, 2); /* a/link-to-file1 */
        layer_path(f, img->layers[0], "a/file2", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        layer_path(f, img->layers[0], "b/x", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_uid, 1000);
        layer_path(f, img->layers[0], "b", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_mtime, MTIME);
        layer_path(f, img->layers[0], "etc/big-id", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_uid, 65534);
        assert_int_equal(st.st_gid, 65534);
        layer_path(f, img->layers[0], "etc/null", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0); /* device nodes are kept (layers are mounted nodev) */
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(st.st_rdev, makedev(1, 3));
        layer_path(f, img->layers[0], "caf\xc3\xa9", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        layer_path(f, img->layers[0], "sym", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(readlink(p, buf, sizeof buf), (ssize_t)strlen("/etc/passwd"));

        layer_path(f, img->layers[1], "a/file1", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(st.st_rdev, makedev(0, 0));
        layer_path(f, img->layers[1], "a", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_mtime, MTIME); /* the whiteout did not change it */
        layer_path(f, img->layers[1], "b", p, sizeof p);
        assert_int_equal(lgetxattr(p, "user.overlay.opaque", buf, sizeof buf), 1);
        assert_int_equal(buf[0], 'y');
        layer_path(f, img->layers[1], "b/y", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        layer_path(f, img->layers[1], "b/x", p, sizeof p);
        assert_int_equal(lstat(p, &st), -1);
        layer_path(f, img->layers[1], "a/.wh.file1", p, sizeof p);
        assert_int_equal(lstat(p, &st), -1);
        /* parents the tar does not list: made 0755 with mtime 0 */
        layer_path(f, img->layers[1], "new/deep/gone", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        layer_path(f, img->layers[1], "new", p, sizeof p);
        assert_int_equal(lstat(p, &st2), 0);
        assert_int_equal(st2.st_mtime, 0);
        assert_int_equal(st2.st_mode & 07777, 0755);
}

/* ---- tests ---- */

static void test_import_oci(void **state)
{
        struct fixture *f = *state;
        struct oci_image img = {}, again = {};
        struct progress_log pl = {};
        struct sbx_err err = {};
        struct mem l[2] = {};

        make_layers(l, GZIP, PLAIN);
        make_oci(f->image, l, 2, CONFIG_JSON, "v1", 0);
        assert_int_equal(oci_import(f->ls, f->image, &img, on_progress, &pl, &err), 0);
        assert_int_equal(img.n_layers, 2);
        assert_true(layer_digest_valid(img.layers[0]));
        assert_true(layer_digest_valid(img.layers[1]));
        assert_string_equal(img.ref, "v1");
        assert_config(&img, CONFIG_SBX);
        assert_int_equal(pl.n, 2);
        assert_int_equal(pl.done[0], 1);
        assert_int_equal(pl.done[1], 2);
        assert_int_equal(pl.total[1], 2);
        assert_int_equal(holds_of(f, img.layers[0]), 1);
        assert_int_equal(holds_of(f, img.layers[1]), 1);
        check_reference_layers(f, &img);

        /* the same image again gives the same layers (the parents we made have fixed mtimes) */
        assert_int_equal(oci_import(f->ls, f->image, &again, NULL, NULL, &err), 0);
        assert_string_equal(again.layers[0], img.layers[0]);
        assert_string_equal(again.layers[1], img.layers[1]);
        assert_int_equal(holds_of(f, img.layers[1]), 2);
        release_image(f, &again);
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 2);
}

static void test_import_nested_index(void **state)
{
        struct fixture *f = *state;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[2] = {};

        make_layers(l, PLAIN, ZSTD);
        make_oci(f->image, l, 2, CONFIG_JSON, "example.com/nested:2", OCI_NESTED | OCI_METADATA_FIRST);
        if (oci_import(f->ls, f->image, &img, NULL, NULL, &err) != 0)
                fail_msg("%s", err.msg);
        assert_int_equal(img.n_layers, 2);
        assert_string_equal(img.ref, "example.com/nested:2");
        check_reference_layers(f, &img);
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 2);
}

static void test_import_docker(void **state)
{
        struct fixture *f = *state;
        struct oci_image oci = {}, img = {};
        struct sbx_err err = {};
        struct mem l[3] = {};
        const int dup_of[3] = { -1, -1, 0 };

        /* compression differs from the OCI image: the trees, hence the digests, do not */
        make_layers(l, PLAIN, GZIP);
        make_oci(f->image, (struct mem[]){ l[0], l[1] }, 2, CONFIG_JSON, NULL, 0);
        assert_int_equal(oci_import(f->ls, f->image, &oci, NULL, NULL, &err), 0);
        assert_string_equal(oci.ref, "");
        mems_free(l, 2);
        memset(l, 0, sizeof l);
        make_layers(l, GZIP, PLAIN);
        make_docker(f->image, l, 3, dup_of, CONFIG_JSON, "example.com/img:tag");
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        assert_int_equal(img.n_layers, 3);
        assert_string_equal(img.ref, "example.com/img:tag");
        assert_config(&img, CONFIG_SBX);
        assert_string_equal(img.layers[0], oci.layers[0]);
        assert_string_equal(img.layers[1], oci.layers[1]);
        assert_string_equal(img.layers[2], img.layers[0]); /* the same layer twice holds twice */
        assert_int_equal(holds_of(f, img.layers[0]), 3);
        check_reference_layers(f, &img);
        release_image(f, &img);
        release_image(f, &oci);
        assert_clean_store(f);
        mems_free(l, 2);
}

static void test_digest_mismatch(void **state)
{
        struct fixture *f = *state;
        struct layer_info *list = NULL;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[2] = {};
        char *bad_config;
        size_t n = 0;

        make_layers(l, PLAIN, PLAIN);
        make_oci(f->image, l, 2, CONFIG_JSON, NULL, OCI_CORRUPT_LAST);
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), -SBX_E_INVALID);
        assert_invalid(-SBX_E_INVALID, &err, "does not match its digest");
        assert_non_null(strstr(err.msg, "layer sha256:"));
        assert_int_equal(img.n_layers, 0);
        assert_null(img.config);
        assert_clean_store(f);
        /* layer 1 was committed before layer 2 failed; its hold is gone */
        assert_int_equal(layer_list(f->ls, &list, &n, &err), 0);
        assert_int_equal(n, 1);
        free(list);

        /* a config whose bytes do not hash to its name: built with a valid config, then swapped */
        sbx_err_clear(&err);
        mems_free(l, 2);
        memset(l, 0, sizeof l);
        make_layers(l, PLAIN, PLAIN);
        {
                struct mem m = {};
                char name[128], digest[SBX_LAYER_DIGEST_MAX];
                struct oent es[2];

                /* docker form: config named <sha of other bytes>.json */
                digest_of(CONFIG_JSON, strlen(CONFIG_JSON), digest);
                bad_config = strdup(CONFIG_JSON);
                bad_config[strlen(bad_config) - 3] = ' ';
                snprintf(name, sizeof name, "%s.json", digest + 7);
                make_tar(layer1_entries, 1, PLAIN, &m);
                memset(es, 0, sizeof es);
                snprintf(es[0].name, sizeof es[0].name, "%s", name);
                es[0].data = bad_config;
                es[0].len = strlen(bad_config);
                char *manifest = NULL;
                assert_true(asprintf(&manifest, "[{\"Config\":\"%s\",\"RepoTags\":null,\"Layers\":[]}]", name) > 0);
                snprintf(es[1].name, sizeof es[1].name, "manifest.json");
                es[1].data = manifest;
                es[1].len = strlen(manifest);
                write_outer(f->image, es, 2);
                assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), -SBX_E_INVALID);
                assert_invalid(-SBX_E_INVALID, &err, "does not match its digest");
                free(manifest);
                free(bad_config);
                free(m.p);
        }
        assert_clean_store(f);
        mems_free(l, 2);
}

/* Import an OCI image of one layer made of `es`; expect invalid_image mentioning msg_part. */
static void import_bad_layer(struct fixture *f, const struct tent *es, size_t n, const char *msg_part)
{
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[1] = {};
        int r;

        make_tar(es, n, PLAIN, &l[0]);
        make_oci(f->image, l, 1, CONFIG_JSON, NULL, 0);
        r = oci_import(f->ls, f->image, &img, NULL, NULL, &err);
        if (r != -SBX_E_INVALID)
                print_error("layer starting with '%s' was accepted\n", es[0].name);
        assert_invalid(r, &err, msg_part);
        assert_int_equal(img.n_layers, 0);
        assert_clean_store(f);
        mems_free(l, 1);
}

static int find_name(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        (void)type;
        return strcmp(path + ftw->base, "escape") == 0 || strcmp(path + ftw->base, "evil") == 0;
}

static void assert_nothing_escaped(struct fixture *f)
{
        DIR *d = opendir(f->outside);
        struct dirent *de;
        size_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                        n++;
        closedir(d);
        assert_int_equal(n, 1); /* only "secret" */
        assert_int_equal(nftw(f->dir, find_name, 64, FTW_PHYS), 0);
}

static void test_escapes(void **state)
{
        struct fixture *f = *state;
        char secret[128], target[160];
        struct stat st;
        int fd;

        snprintf(secret, sizeof secret, "%s/secret", f->outside);
        fd = open(secret, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);

        {
                const struct tent es[] = { { "ok", 'f', "ok\n", 0, 0 }, { "../escape", 'f', "x\n", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "leaves the layer");
        }
        {
                const struct tent es[] = { { "a/../../escape", 'f', "x\n", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "leaves the layer");
        }
        {
                const struct tent es[] = { { "l", 'l', f->outside, 0, 0 }, { "l/evil", 'f', "x\n", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "l");
        }
        {
                /* the symlink's parent exists; libarchive's own check refuses the write */
                const struct tent es[] = { { "d/", 'd', NULL, 0, 0 },
                                           { "d/l", 'l', f->outside, 0, 0 },
                                           { "d/l/evil", 'f', "x\n", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "d/l");
        }
        {
                const struct tent es[] = { { "r", 'l', "../../../../../../../..", 0, 0 },
                                           { "r/tmp/evil", 'f', "x\n", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "r");
        }
        {
                const struct tent es[] = { { "h", 'h', "../../etc/shadow", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "leaves the layer");
        }
        {
                const struct tent es[] = { { "s", 'l', f->outside, 0, 0 }, { "h", 'h', "s/secret", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "hard link");
        }
        {
                snprintf(target, sizeof target, "%s", secret);
                const struct tent es[] = { { "h", 'h', target, 0, 0 } }; /* absolute: inside the layer, absent */
                import_bad_layer(f, es, ELEMENTSOF(es), "hard link");
        }
        {
                const struct tent es[] = { { "d/", 'd', NULL, 0, 0 }, { "h", 'h', "d", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "hard link");
        }
        {
                /* whiteout under a symlink: the parent chain never follows it */
                const struct tent es[] = { { "l", 'l', f->outside, 0, 0 }, { "l/.wh.secret", 'f', "", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "not a directory");
        }
        {
                const struct tent es[] = { { "l", 'l', f->outside, 0, 0 }, { "l/.wh..wh..opq", 'f', "", 0, 0 } };
                import_bad_layer(f, es, ELEMENTSOF(es), "not a directory");
        }
        assert_int_equal(stat(secret, &st), 0);
        assert_int_equal(st.st_nlink, 1);
        assert_int_equal(getxattr(f->outside, "user.overlay.opaque", NULL, 0), -1);
        assert_nothing_escaped(f);
}

static void test_too_many_layers(void **state)
{
        struct fixture *f = *state;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem *l = calloc(200, sizeof *l);
        const struct tent one[] = { { "f", 'f', "f\n", 0, 0 } };
        int r;

        assert_non_null(l);
        make_tar(one, 1, PLAIN, &l[0]);
        for (size_t i = 1; i < 200; i++)
                mem_append(&l[i], l[0].p, l[0].n);
        make_docker(f->image, l, 64, NULL, CONFIG_JSON, "x:y"); /* 64 fits in make_docker's table */
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        assert_int_equal(img.n_layers, 64);
        assert_int_equal(holds_of(f, img.layers[0]), 64);
        release_image(f, &img);

        make_oci(f->image, l, 200, CONFIG_JSON, NULL, 0);
        r = oci_import(f->ls, f->image, &img, NULL, NULL, &err);
        assert_invalid(r, &err, "image has 200 layers, at most 128");
        assert_clean_store(f);
        mems_free(l, 200);
        free(l);
}

/* A layer whose files add up to more than the bound is refused; one that would eat into the free
 * space the disk must keep stops with ENOSPC. Either way nothing is left behind. */
static void test_size_bounds(void **state)
{
        struct fixture *f = *state;
        char *big = malloc((1 << 20) + 2);
        const struct tent es[] = {
                { "small", 'f', "x", 0644, 0 },
                { "big", 'f', big, 0644, 0 },
        };
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[1] = {};
        uint64_t max = oci__max_layer_bytes, min_free = oci__min_free_bytes, every = oci__free_check_bytes;

        assert_non_null(big);
        memset(big, 'z', (1 << 20) + 1);
        big[(1 << 20) + 1] = '\0';
        make_tar(es, ELEMENTSOF(es), GZIP, &l[0]);
        make_oci(f->image, l, 1, CONFIG_JSON, NULL, 0);

        oci__max_layer_bytes = 1 << 20;
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), -SBX_E_INVALID);
        assert_invalid(-SBX_E_INVALID, &err, "more than 1048576 bytes of files");
        assert_clean_store(f);
        oci__max_layer_bytes = max;

        sbx_err_clear(&err);
        oci__min_free_bytes = UINT64_MAX / 2; /* no disk has that much free */
        oci__free_check_bytes = 4096;
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), -ENOSPC);
        assert_non_null(strstr(err.msg, "MiB free"));
        assert_clean_store(f);
        oci__min_free_bytes = min_free;
        oci__free_check_bytes = every;

        /* with the defaults it imports */
        sbx_err_clear(&err);
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        release_image(f, &img);
        mems_free(l, 1);
        free(big);
}

static void test_truncated(void **state)
{
        enum {
                BIG = 1536 * 1024
        }; /* above the 1 MiB of documents read in the first pass */
        struct fixture *f = *state;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[2] = {};
        struct tent big[] = { { "big", 'f', NULL, 0, 0 } };
        char *data = malloc(BIG);
        struct stat st;
        int r;

        assert_non_null(data);
        for (size_t i = 0; i < BIG - 1; i++)
                data[i] = (char)('a' + (i * 7919) % 26);
        data[BIG - 1] = '\0';
        big[0].arg = data;
        make_tar(layer1_entries, ELEMENTSOF(layer1_entries), GZIP, &l[0]);
        make_tar(big, 1, PLAIN, &l[1]);
        make_oci(f->image, l, 2, CONFIG_JSON, NULL, OCI_METADATA_FIRST);
        assert_int_equal(stat(f->image, &st), 0);
        /* cut in the middle of the last layer: layer 1 gets committed, layer 2 fails */
        assert_int_equal(truncate(f->image, st.st_size - 10240 - 512 * 1024), 0);
        r = oci_import(f->ls, f->image, &img, NULL, NULL, &err);
        assert_true(r < 0);
        assert_true(err.code < 0);
        assert_non_null(strstr(err.msg, "runcated")); /* seen while the first pass skips the data */
        assert_int_equal(img.n_layers, 0);
        assert_clean_store(f);

        /* cut inside the metadata */
        make_oci(f->image, l, 2, CONFIG_JSON, NULL, OCI_METADATA_FIRST);
        assert_int_equal(truncate(f->image, 1024 + 700), 0);
        sbx_err_clear(&err);
        assert_invalid(oci_import(f->ls, f->image, &img, NULL, NULL, &err), &err, "runcated");
        assert_clean_store(f);

        /* not a tarball at all, and not a regular file */
        assert_int_equal(truncate(f->image, 0), 0);
        sbx_err_clear(&err);
        assert_invalid(oci_import(f->ls, f->image, &img, NULL, NULL, &err), &err, NULL);
        sbx_err_clear(&err);
        assert_invalid(oci_import(f->ls, f->dir, &img, NULL, NULL, &err), &err, "regular file");
        assert_clean_store(f);
        mems_free(l, 2);
        free(data);
}

/* Read the named entry of a tarball into a string. */
static char *tar_read_entry(const char *path, const char *name)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        char *out = NULL;

        archive_read_support_format_tar(a);
        assert_int_equal(archive_read_open_filename(a, path, 65536), ARCHIVE_OK);
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                if (strcmp(archive_entry_pathname(e), name))
                        continue;
                assert_int_equal(archive_entry_mtime(e), 0);
                assert_int_equal(archive_entry_uid(e), 0);
                assert_int_equal(archive_entry_perm(e), 0644);
                out = calloc(1, (size_t)archive_entry_size(e) + 1);
                assert_int_equal(archive_read_data(a, out, (size_t)archive_entry_size(e)), archive_entry_size(e));
                break;
        }
        archive_read_free(a);
        return out;
}

static void export_to(struct fixture *f, const struct oci_image *img, const char *ref)
{
        struct sbx_err err = {};
        int fd = open(f->out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        assert_true(fd >= 0);
        assert_int_equal(oci_export(f->ls, img, ref, fd, &err), 0);
        close(fd);
}

static void test_round_trip(void **state)
{
        struct fixture *f = *state;
        struct oci_image img = {}, back = {};
        struct sbx_err err = {};
        struct mem l[2] = {};
        json_t *j;
        char *s;

        make_layers(l, GZIP, GZIP);
        make_oci(f->image, l, 2, CONFIG_JSON, "v1", 0);
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);

        export_to(f, &img, "example.com/ns/img:v2");
        assert_int_equal(oci_import(f->ls, f->out, &back, NULL, NULL, &err), 0);
        assert_int_equal(back.n_layers, 2);
        assert_string_equal(back.layers[0], img.layers[0]);
        assert_string_equal(back.layers[1], img.layers[1]);
        assert_string_equal(back.ref, "example.com/ns/img:v2");
        assert_config(&back, CONFIG_SBX);
        check_reference_layers(f, &back);

        s = tar_read_entry(f->out, "oci-layout");
        assert_string_equal(s, "{\"imageLayoutVersion\":\"1.0.0\"}");
        free(s);
        s = tar_read_entry(f->out, "index.json");
        j = json_loads(s, 0, NULL);
        assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(json_array_get(json_object_get(j, "manifests"), 0), "annotations"),
                                    "org.opencontainers.image.ref.name")),
                            "v2");
        json_decref(j);
        free(s);
        release_image(f, &back);

        /* without a tag: ":latest"; the OCI form alone (manifest.json dropped) imports too */
        export_to(f, &img, "registry:5000/img");
        s = tar_read_entry(f->out, "manifest.json");
        j = json_loads(s, 0, NULL);
        assert_string_equal(json_string_value(json_array_get(json_object_get(json_array_get(j, 0), "RepoTags"), 0)),
                            "registry:5000/img:latest");
        json_decref(j);
        free(s);
        s = tar_read_entry(f->out, "index.json");
        assert_non_null(strstr(s, "\"org.opencontainers.image.ref.name\":\"latest\""));
        free(s);
        {
                struct archive *in = archive_read_new(), *out = archive_write_new();
                struct archive_entry *e;
                char oci_only[128];
                void *buf = malloc(1 << 20);

                snprintf(oci_only, sizeof oci_only, "%s/oci-only.tar", f->dir);
                archive_read_support_format_tar(in);
                assert_int_equal(archive_read_open_filename(in, f->out, 65536), ARCHIVE_OK);
                archive_write_set_format_pax_restricted(out);
                assert_int_equal(archive_write_open_filename(out, oci_only), ARCHIVE_OK);
                while (archive_read_next_header(in, &e) == ARCHIVE_OK) {
                        la_ssize_t n;

                        if (!strcmp(archive_entry_pathname(e), "manifest.json"))
                                continue;
                        assert_int_equal(archive_write_header(out, e), ARCHIVE_OK);
                        while ((n = archive_read_data(in, buf, 1 << 20)) > 0)
                                assert_int_equal(archive_write_data(out, buf, (size_t)n), n);
                }
                archive_read_free(in);
                archive_write_free(out);
                free(buf);
                assert_int_equal(oci_import(f->ls, oci_only, &back, NULL, NULL, &err), 0);
                assert_string_equal(back.layers[0], img.layers[0]);
                assert_string_equal(back.layers[1], img.layers[1]);
                assert_string_equal(back.ref, "latest");
                assert_config(&back, CONFIG_SBX);
                release_image(f, &back);
        }

        /* A blob named after a layer we have is reused without unpacking, but only if its bytes
         * hash to that name: a tampered copy of the exported layer is refused. */
        {
                struct archive *in = archive_read_new(), *out = archive_write_new();
                struct archive_entry *e;
                char tampered[PATH_MAX + 32], victim[128];
                unsigned char *buf = malloc(1 << 20);
                struct layer_info *list = NULL;
                size_t n_before = 0, n_after = 0;

                assert_int_equal(layer_list(f->ls, &list, &n_before, &err), 0);
                free(list);
                snprintf(victim, sizeof victim, "blobs/sha256/%.64s", img.layers[0] + 7);
                snprintf(tampered, sizeof tampered, "%s/tampered.tar", f->dir);
                export_to(f, &img, "x:1");
                archive_read_support_format_tar(in);
                assert_int_equal(archive_read_open_filename(in, f->out, 65536), ARCHIVE_OK);
                archive_write_set_format_pax_restricted(out);
                assert_int_equal(archive_write_open_filename(out, tampered), ARCHIVE_OK);
                while (archive_read_next_header(in, &e) == ARCHIVE_OK) {
                        bool flip = !strcmp(archive_entry_pathname(e), victim);
                        la_ssize_t k;

                        assert_int_equal(archive_write_header(out, e), ARCHIVE_OK);
                        while ((k = archive_read_data(in, buf, 1 << 20)) > 0) {
                                if (flip && k > 600) {
                                        buf[600] ^= 0x20; /* inside the first entry's data or header */
                                        flip = false;
                                }
                                assert_int_equal(archive_write_data(out, buf, (size_t)k), k);
                        }
                }
                archive_read_free(in);
                archive_write_free(out);
                free(buf);
                sbx_err_clear(&err);
                assert_int_equal(oci_import(f->ls, tampered, &back, NULL, NULL, &err), -SBX_E_INVALID);
                assert_invalid(-SBX_E_INVALID, &err, "does not match its digest");
                assert_int_equal(layer_list(f->ls, &list, &n_after, &err), 0);
                free(list);
                assert_int_equal(n_after, n_before);
                sbx_err_clear(&err);
        }

        /* an image whose layer is absent cannot be exported */
        {
                struct oci_image ghost = img;
                int fd = open(f->out, O_WRONLY | O_TRUNC | O_CLOEXEC);

                ghost.config = NULL;
                snprintf(ghost.layers[1], sizeof ghost.layers[1], "%s",
                         "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
                sbx_err_clear(&err);
                assert_int_equal(oci_export(f->ls, &ghost, "x", fd, &err), -SBX_E_NOT_FOUND);
                close(fd);
        }
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 2);
}

static void test_whiteout_corners(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { ".wh.f", 'f', "", 0, 0 }, /* the layer also has f: no whiteout */
                { "f", 'f', "kept\n", 0, 0 },        { ".wh..wh..opq", 'f', "", 0, 0 }, /* the layer root is opaque */
                { "d/.wh..wh.plnk", 'f', "", 0, 0 },                                    /* aufs bookkeeping: ignored */
                { "dev/", 'd', NULL, 0, 0 },         { "dev/null", 'c', NULL, 0, 0 },
        };
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[1] = {};
        char p[PATH_MAX], buf[8];
        struct stat st;

        make_tar(es, ELEMENTSOF(es), GZIP, &l[0]);
        make_oci(f->image, l, 1, CONFIG_JSON, NULL, 0);
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        layer_path(f, img.layers[0], "f", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        layer_path(f, img.layers[0], "", p, sizeof p);
        assert_int_equal(lgetxattr(p, "user.overlay.opaque", buf, sizeof buf), 1);
        layer_path(f, img.layers[0], "d", p, sizeof p);
        assert_int_equal(lstat(p, &st), -1); /* nothing was made for the aufs entry */
        layer_path(f, img.layers[0], "dev/null", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0); /* kept: layers are mounted nodev */
        assert_true(S_ISCHR(st.st_mode));
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 1);
}

/* True if reading every entry of the tarball at path ends in a clean end of archive. */
static bool tar_reads_cleanly(const char *path)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        char buf[65536];
        int r;

        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, path, 65536) != ARCHIVE_OK) {
                archive_read_free(a);
                return false;
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                la_ssize_t n;

                while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
                        ;
                if (n < 0)
                        break;
        }
        archive_read_free(a);
        return r == ARCHIVE_EOF;
}

static void test_export_failure(void **state)
{
        struct fixture *f = *state;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[2] = {};
        char p[PATH_MAX];
        int fd;

        make_layers(l, PLAIN, PLAIN);
        make_oci(f->image, l, 2, CONFIG_JSON, "v1", 0);
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        export_to(f, &img, NULL);
        assert_true(tar_reads_cleanly(f->out));

        /* a layer tree changed behind the store's back: the export fails and does not end like a
         * complete tarball */
        layer_path(f, img.layers[0], "a/file2", p, sizeof p);
        fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "more bytes\n", 11), 11);
        close(fd);
        fd = open(f->out, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_true(oci_export(f->ls, &img, NULL, fd, &err) < 0);
        close(fd);
        assert_string_equal(err.reason, "layer_corrupt");
        assert_false(tar_reads_cleanly(f->out));
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 2);
}

static void test_bad_metadata(void **state)
{
        struct fixture *f = *state;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[1] = {};
        const struct tent one[] = { { "f", 'f', "f\n", 0, 0 } };
        static const char *const configs[] = {
                "{\"config\":{\"Env\":\"PATH=/bin\"}}",         "{\"config\":{\"Cmd\":[1]}}",
                "{\"config\":{\"Labels\":{\"a\":1}}}",          "{\"config\":{\"User\":7}}",
                "{\"config\":{\"User\":\"a\",\"User\":\"b\"}}", "[1,2",
        };

        make_tar(one, 1, PLAIN, &l[0]);
        for (size_t i = 0; i < ELEMENTSOF(configs); i++) {
                sbx_err_clear(&err);
                make_docker(f->image, l, 1, NULL, configs[i], "x:y");
                assert_invalid(oci_import(f->ls, f->image, &img, NULL, NULL, &err), &err, NULL);
        }
        /* null fields are left out */
        make_docker(f->image, l, 1, NULL, "{\"config\":{\"Env\":null,\"Cmd\":[\"sh\"],\"WorkingDir\":null}}", "x:y");
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        assert_config(&img, "{\"cmd\":[\"sh\"]}");
        release_image(f, &img);
        make_docker(f->image, l, 1, NULL, "{}", "x:y");
        assert_int_equal(oci_import(f->ls, f->image, &img, NULL, NULL, &err), 0);
        assert_config(&img, "{}");
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 1);
}

/* ---- entry kinds, written by oci-apply.c itself ---- */

/* Import an OCI image of one plain layer made of es into img. */
static void import_layer(struct fixture *f, const struct tent *es, size_t n, struct oci_image *img)
{
        struct sbx_err err = {};
        struct mem l[1] = {};

        make_tar(es, n, PLAIN, &l[0]);
        make_oci(f->image, l, 1, CONFIG_JSON, NULL, 0);
        if (oci_import(f->ls, f->image, img, NULL, NULL, &err) != 0)
                fail_msg("%s", err.msg);
        assert_int_equal(img->n_layers, 1);
        mems_free(l, 1);
}

static void lstat_in(struct fixture *f, const struct oci_image *img, const char *rel, struct stat *st)
{
        char p[PATH_MAX];

        layer_path(f, img->layers[0], rel, p, sizeof p);
        if (lstat(p, st) < 0)
                fail_msg("lstat '%s': %s", rel, strerror(errno));
}

/* The first bytes of a file of the layer, as a string. */
static void read_in(struct fixture *f, const struct oci_image *img, const char *rel, char *buf, size_t size)
{
        char p[PATH_MAX];
        ssize_t n;
        int fd;

        layer_path(f, img->layers[0], rel, p, sizeof p);
        fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, buf, size - 1);
        assert_true(n >= 0);
        buf[n] = '\0';
        close(fd);
}

static void test_replace_entries(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { "f", 'f', "first\n", 0644, 0 },
                { "f", 'f', "second, longer\n", 0600, 1000 }, /* a later entry for the same name wins */
                { "g", 'f', "a file first\n", 0, 0 },
                { "g/", 'd', NULL, 0750, 0 },
                { "e/", 'd', NULL, 0, 0 },
                { "e", 'f', "was an empty dir\n", 0, 0 },
                { "s", 'l', f->outside, 0777, 0 },
                { "s", 'f', "not through the symlink\n", 0, 0 },
        };
        struct oci_image img = {};
        char buf[64], secret[128];
        struct stat st;
        int fd;

        snprintf(secret, sizeof secret, "%s/secret", f->outside);
        fd = open(secret, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        import_layer(f, es, ELEMENTSOF(es), &img);
        read_in(f, &img, "f", buf, sizeof buf);
        assert_string_equal(buf, "second, longer\n");
        lstat_in(f, &img, "f", &st);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_uid, 1000);
        assert_int_equal(st.st_nlink, 1);
        lstat_in(f, &img, "g", &st);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0750);
        lstat_in(f, &img, "e", &st);
        assert_true(S_ISREG(st.st_mode));
        read_in(f, &img, "s", buf, sizeof buf);
        assert_string_equal(buf, "not through the symlink\n");
        release_image(f, &img);
        assert_nothing_escaped(f);

        /* a directory that is not empty is not replaced */
        {
                const struct tent bad[] = { { "n/", 'd', NULL, 0, 0 },
                                            { "n/x", 'f', "x\n", 0, 0 },
                                            { "n", 'f', "y\n", 0, 0 } };
                import_bad_layer(f, bad, ELEMENTSOF(bad), "'n'");
        }
        assert_clean_store(f);
}

static void test_dir_after_children(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { "d/sub/x", 'f', "x\n", 0, 0 }, /* d and d/sub made here */
                { "d/", 'd', NULL, 0710, 1000 }, /* listed after its children */
                { "d/y", 'f', "y\n", 0, 0 },     /* and one more child after it */
        };
        struct oci_image img = {}, again = {};
        struct stat st;

        import_layer(f, es, ELEMENTSOF(es), &img);
        lstat_in(f, &img, "d", &st);
        assert_int_equal(st.st_mtime, MTIME);
        assert_int_equal(st.st_mode & 07777, 0710);
        assert_int_equal(st.st_uid, 1000);
        lstat_in(f, &img, "d/sub", &st); /* never listed: made 0755, 0:0, mtime 0 */
        assert_int_equal(st.st_mtime, 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_int_equal(st.st_uid, 0);
        lstat_in(f, &img, "d/y", &st);
        assert_true(S_ISREG(st.st_mode));
        import_layer(f, es, ELEMENTSOF(es), &again);
        assert_string_equal(again.layers[0], img.layers[0]);
        release_image(f, &again);
        release_image(f, &img);
        assert_clean_store(f);
}

static void test_setuid_kept(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { "su", 'f', "#!/bin/sh\n", 04755, 1000 },
                { "sg", 'f', "#!/bin/sh\n", 02711, 1000 },
                { "sgd/", 'd', NULL, 02775, 1000 },
                { "sgd/in", 'f', "in\n", 0644, 0 },   /* not the group of its set-gid parent */
                { "sgd/new/z", 'f', "z\n", 0644, 0 }, /* sgd/new made here: 0:0, 0755 */
        };
        struct oci_image img = {};
        struct stat st;

        import_layer(f, es, ELEMENTSOF(es), &img);
        lstat_in(f, &img, "su", &st);
        assert_int_equal(st.st_mode & 07777, 04755);
        assert_int_equal(st.st_uid, 1000);
        lstat_in(f, &img, "sg", &st);
        assert_int_equal(st.st_mode & 07777, 02711);
        assert_int_equal(st.st_gid, 1000);
        lstat_in(f, &img, "sgd", &st);
        assert_int_equal(st.st_mode & 07777, 02775);
        lstat_in(f, &img, "sgd/in", &st);
        assert_int_equal(st.st_gid, 0);
        assert_int_equal(st.st_mode & 07777, 0644);
        lstat_in(f, &img, "sgd/new", &st);
        assert_int_equal(st.st_gid, 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        lstat_in(f, &img, "sgd/new/z", &st);
        assert_int_equal(st.st_gid, 0);
        release_image(f, &img);
        assert_clean_store(f);
}

static void test_sparse(void **state)
{
        enum {
                SIZE = 1 << 20,
                CHUNK = 4096,
        };
        struct fixture *f = *state;
        struct oci_image img = {};
        struct sbx_err err = {};
        struct mem l[1] = {};
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();
        char *data = calloc(1, SIZE), p[PATH_MAX], buf[CHUNK];
        struct stat st;
        int fd;

        assert_non_null(a);
        assert_non_null(e);
        assert_non_null(data);
        /* the writer takes the whole file and keeps only the listed extents; a hole at the end */
        memset(data + CHUNK, 'A', CHUNK);
        memset(data + 16 * CHUNK, 'B', CHUNK);
        assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
        assert_int_equal(archive_write_open(a, &l[0], NULL, mem_write_cb, NULL), ARCHIVE_OK);
        archive_entry_set_pathname(e, "sparse");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0640);
        archive_entry_set_mtime(e, MTIME, 0);
        archive_entry_set_size(e, SIZE);
        archive_entry_sparse_add_entry(e, CHUNK, CHUNK);
        archive_entry_sparse_add_entry(e, 16 * CHUNK, CHUNK);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, data, SIZE), SIZE);
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
        archive_entry_free(e);
        assert_true(l[0].n < SIZE / 4);

        make_oci(f->image, l, 1, CONFIG_JSON, NULL, 0);
        if (oci_import(f->ls, f->image, &img, NULL, NULL, &err) != 0)
                fail_msg("%s", err.msg);
        layer_path(f, img.layers[0], "sparse", p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_int_equal(st.st_size, SIZE);
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(st.st_mtime, MTIME);
        assert_true(st.st_blocks * 512 < SIZE / 2); /* the holes stayed holes */
        fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        for (off_t off = 0; off < SIZE; off += CHUNK) {
                assert_int_equal(pread(fd, buf, CHUNK, off), CHUNK);
                assert_memory_equal(buf, data + off, CHUNK);
        }
        close(fd);
        release_image(f, &img);
        assert_clean_store(f);
        mems_free(l, 1);
        free(data);
}

static void test_fifo_and_devices(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { "dev/", 'd', NULL, 0, 0 },
                { "dev/tty0", 'c', NULL, 0620, 5 },
                { "run/p", 'p', NULL, 0640, 1000 },
        };
        struct oci_image img = {};
        struct stat st;

        import_layer(f, es, ELEMENTSOF(es), &img);
        lstat_in(f, &img, "dev/tty0", &st);
        assert_true(S_ISCHR(st.st_mode));
        assert_int_equal(st.st_rdev, makedev(1, 3));
        assert_int_equal(st.st_mode & 07777, 0620);
        assert_int_equal(st.st_uid, 5);
        assert_int_equal(st.st_mtime, MTIME);
        lstat_in(f, &img, "run/p", &st);
        assert_true(S_ISFIFO(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(st.st_uid, 1000);
        assert_int_equal(st.st_gid, 1000);
        assert_int_equal(st.st_mtime, MTIME);
        release_image(f, &img);
        assert_clean_store(f);
}

static void test_hard_link_earlier(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { "x/f", 'f', "data\n", 0640, 1000 },
                { "y/", 'd', NULL, 0, 0 },
                { "y/h", 'h', "x/f", 0, 0 },  /* in another directory */
                { "./z", 'h', "/x/f", 0, 0 }, /* absolute: inside the layer */
                { "s", 'l', "/nowhere", 0777, 0 },
                { "hs", 'h', "s", 0, 0 }, /* to the symlink itself, not what it names */
        };
        struct oci_image img = {};
        struct stat st, st2;
        char buf[64];

        import_layer(f, es, ELEMENTSOF(es), &img);
        lstat_in(f, &img, "x/f", &st);
        assert_int_equal(st.st_nlink, 3);
        assert_int_equal(st.st_mode & 07777, 0640);
        assert_int_equal(st.st_uid, 1000);
        lstat_in(f, &img, "y/h", &st2);
        assert_int_equal(st2.st_ino, st.st_ino);
        lstat_in(f, &img, "z", &st2);
        assert_int_equal(st2.st_ino, st.st_ino);
        read_in(f, &img, "y/h", buf, sizeof buf);
        assert_string_equal(buf, "data\n");
        lstat_in(f, &img, "s", &st);
        lstat_in(f, &img, "hs", &st2);
        assert_true(S_ISLNK(st2.st_mode));
        assert_int_equal(st2.st_ino, st.st_ino);
        release_image(f, &img);
        assert_clean_store(f);
}

static void test_absolute_symlink(void **state)
{
        struct fixture *f = *state;
        const struct tent es[] = {
                { "abs", 'l', f->outside, 0777, 1000 },
                { "etc/pw", 'l', "/etc/passwd", 0777, 0 },
                { "up", 'l', "../../../../OUTSIDE", 0777, 0 },
        };
        struct oci_image img = {};
        struct stat before, after, st;
        char p[PATH_MAX], buf[PATH_MAX];
        ssize_t n;

        assert_int_equal(chown(f->outside, 0, 0), 0);
        assert_int_equal(utimensat(AT_FDCWD, f->outside, (struct timespec[]){ { 1, 0 }, { 1, 0 } }, 0), 0);
        assert_int_equal(stat(f->outside, &before), 0);
        import_layer(f, es, ELEMENTSOF(es), &img);
        layer_path(f, img.layers[0], "abs", p, sizeof p);
        n = readlink(p, buf, sizeof buf - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, f->outside); /* stored as it is */
        lstat_in(f, &img, "abs", &st);
        assert_true(S_ISLNK(st.st_mode));
        assert_int_equal(st.st_uid, 1000); /* the link's owner and times, not its target's */
        assert_int_equal(st.st_mtime, MTIME);
        layer_path(f, img.layers[0], "up", p, sizeof p);
        n = readlink(p, buf, sizeof buf - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, "../../../../OUTSIDE");
        assert_int_equal(stat(f->outside, &after), 0);
        assert_int_equal(after.st_uid, before.st_uid);
        assert_int_equal(after.st_mtime, before.st_mtime);
        assert_int_equal(after.st_mode, before.st_mode);
        release_image(f, &img);
        assert_clean_store(f);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_import_oci, setup, teardown),
                cmocka_unit_test_setup_teardown(test_import_nested_index, setup, teardown),
                cmocka_unit_test_setup_teardown(test_import_docker, setup, teardown),
                cmocka_unit_test_setup_teardown(test_whiteout_corners, setup, teardown),
                cmocka_unit_test_setup_teardown(test_digest_mismatch, setup, teardown),
                cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_too_many_layers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_export_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_metadata, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replace_entries, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dir_after_children, setup, teardown),
                cmocka_unit_test_setup_teardown(test_setuid_kept, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sparse, setup, teardown),
                cmocka_unit_test_setup_teardown(test_size_bounds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fifo_and_devices, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hard_link_earlier, setup, teardown),
                cmocka_unit_test_setup_teardown(test_absolute_symlink, setup, teardown),
        };

        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 0;
        }
        /* the tarballs written here have UTF-8 names; the importer must not depend on this */
        (void)setlocale(LC_CTYPE, "C.UTF-8");
        return cmocka_run_group_tests(tests, NULL, NULL);
}
