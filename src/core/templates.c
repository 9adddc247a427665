// SPDX-License-Identifier: Apache-2.0
/*
 * Templates and layers as the API sees them (manager.h): listing with build states, removal with
 * garbage collection, layer usage, OCI import and export. Slow work (tree removal, image
 * unpacking, tar writing) runs on the libuv thread pool; results come back on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/manager-internal.h"
#include "core/manager.h"

static json_t *status_to_json(const struct template_status *st)
{
        json_t *o = json_object(), *pk = json_array();
        char buf[256], *save = NULL;

        if (!o || !pk) {
                json_decref(o);
                json_decref(pk);
                return NULL;
        }
        json_object_set_new(o, "name", json_string(st->name));
        json_object_set_new(o, "state", json_string(template_state_to_string(st->state)));
        json_object_set_new(o, "source", json_string(st->source));
        json_object_set_new(o, "catalog", json_boolean(st->catalog));
        json_object_set_new(o, "description", st->description ? json_string(st->description) : json_null());
        snprintf(buf, sizeof buf, "%s", st->packages ? st->packages : "");
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
                (void)json_array_append_new(pk, json_string(t));
        json_object_set_new(o, "packages", pk);
        json_object_set_new(o, "sizeBytes",
                            st->state == TEMPLATE_AVAILABLE ? json_integer((json_int_t)st->size_bytes) : json_null());
        json_object_set_new(o, "layers", json_integer((json_int_t)st->n_layers));
        json_object_set_new(o, "builtAt", st->built_at[0] ? json_string(st->built_at) : json_null());
        json_object_set_new(o, "progress",
                            st->state == TEMPLATE_BUILDING
                                    ? json_pack("{s:i, s:s}", "percent", (int)st->percent, "stage", st->stage)
                                    : json_null());
        json_object_set_new(o, "error", st->state == TEMPLATE_FAILED ? json_string(st->error) : json_null());
        return o;
}

/* Overlay what a spec build knows (building / failed) on a template's entry. */
static void merge_build(struct manager *m, json_t *o)
{
        json_t *b = manager_template_build_status(m, json_string_value(json_object_get(o, "name")));
        const char *state = json_string_value(json_object_get(b, "state"));

        if (b && state && strcmp(state, "available") != 0) {
                json_t *avail = json_object_get(o, "state");
                bool published = avail && !strcmp(json_string_value(avail), "available");

                json_object_set(o, "build", b);
                if (!published) {
                        json_object_set(o, "state", json_object_get(b, "state"));
                        json_object_set_new(o, "progress",
                                            json_pack("{s:O, s:O}", "percent", json_object_get(b, "percent"), "stage",
                                                      json_object_get(b, "stage")));
                        if (json_object_get(b, "error"))
                                json_object_set(o, "error", json_object_get(json_object_get(b, "error"), "message"));
                }
        }
        json_decref(b);
}

int manager_template_list(struct manager *m, json_t **ret, struct sbx_err *err)
{
        _cleanup_free_ struct template_status *st = calloc(SBX_MAX_TEMPLATES, sizeof *st);
        json_t *arr = json_array();
        size_t n = 0;

        if (!st || !arr || template_status_list(m->templates, st, SBX_MAX_TEMPLATES, &n) < 0) {
                json_decref(arr);
                return sbx_err_set(err, -ENOMEM, "cannot list templates");
        }
        for (size_t i = 0; i < n; i++) {
                json_t *o = status_to_json(&st[i]);

                if (o) {
                        merge_build(m, o);
                        (void)json_array_append_new(arr, o);
                }
        }
        build__append_unlisted(m, arr); /* first builds of names not published yet */
        *ret = json_pack("{s:o}", "templates", arr);
        return *ret ? 0 : -ENOMEM;
}

int manager_template_get(struct manager *m, const char *name, json_t **ret, struct sbx_err *err)
{
        _cleanup_free_ struct template_status *st = calloc(SBX_MAX_TEMPLATES, sizeof *st);
        const char *canon = template_canonical_name(name);
        json_t *o = NULL, *manifest, *b;
        size_t n = 0;

        if (!st || template_status_list(m->templates, st, SBX_MAX_TEMPLATES, &n) < 0)
                return sbx_err_set(err, -ENOMEM, "cannot list templates");
        for (size_t i = 0; i < n && !o; i++)
                if (!strcmp(st[i].name, canon ? canon : name))
                        o = status_to_json(&st[i]);
        manifest = template_manifest(m->templates, name, NULL);
        b = manager_template_build_status(m, name);
        if (!o && manifest) {
                /* "x" found as "x:latest" (or the other way round) */
                struct template_status one = { .state = TEMPLATE_AVAILABLE };
                snprintf(one.name, sizeof one.name, "%s", json_string_value(json_object_get(manifest, "name")) ?: name);
                o = status_to_json(&one);
        }
        if (!o && b) {
                json_t *arr = json_array();
                build__append_unlisted(m, arr);
                for (size_t i = 0; i < json_array_size(arr) && !o; i++)
                        if (!strcmp(json_string_value(json_object_get(json_array_get(arr, i), "name")) ?: "", name))
                                o = json_incref(json_array_get(arr, i));
                json_decref(arr);
        }
        json_decref(b);
        if (!o) {
                json_decref(manifest);
                struct template_info info;
                int r = template_lookup(m->templates, name, &info, err);
                return r < 0 ? r : sbx_err_set(err, -SBX_E_NOT_FOUND, "template '%.64s' not found", name);
        }
        merge_build(m, o);
        if (manifest) {
                static const char *const keys[] = { "layers", "config", "description", "spec", "specDigest",
                                                    "sizeBytes", "createdAt", "source", "include", "suite" };
                for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                        if (json_object_get(manifest, keys[i]))
                                json_object_set(o, keys[i], json_object_get(manifest, keys[i]));
                json_decref(manifest);
        }
        *ret = o;
        return 0;
}

/* ---------- removal and garbage collection ---------- */

struct gc_job {
        uv_work_t work;
        struct manager *m;
        manager_done_fn done;
        void *data;
        int r, removed;
        uint64_t freed;
        struct sbx_err err;
        json_t *result;
};

/* The layers every published template references (read under the layer store's lock). */
static int referenced(void *data, char (**ret)[SBX_LAYER_DIGEST_MAX], size_t *ret_n)
{
        return template_referenced_layers(data, ret, ret_n, NULL);
}

static void gc_work(uv_work_t *w)
{
        struct gc_job *j = w->data;

        j->r = layer_gc_with(template_store_layers(j->m->templates), referenced, j->m->templates, &j->freed, &j->err);
        if (j->r >= 0) {
                j->removed = j->r;
                (void)template_cache_prune(j->m->templates); /* entries naming removed layers */
        }
}

static void gc_done(uv_work_t *w, int status)
{
        struct gc_job *j = w->data;

        if (j->r >= 0) {
                if (!j->result)
                        j->result = json_object();
                json_object_set_new(j->result, "layersRemoved", json_integer(j->removed));
                json_object_set_new(j->result, "bytesFreed", json_integer((json_int_t)j->freed));
                log_info("layer gc: %d layers removed, %llu bytes freed", j->removed, (unsigned long long)j->freed);
                j->done(j->data, 0, NULL, TAKE_PTR(j->result));
        } else
                j->done(j->data, j->r, &j->err, NULL);
        json_decref(j->result);
        free(j);
}

/* Remove every layer no template references and no sandbox or build holds (in-memory holds are
 * checked by layer_gc itself). */
static int start_gc(struct manager *m, json_t *result, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct gc_job *j = calloc(1, sizeof *j);
        int r;

        if (!j)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        *j = (struct gc_job){ .m = m, .done = done, .data = data, .result = result };
        j->work.data = j;
        r = uv_queue_work(m->loop, &j->work, gc_work, gc_done);
        if (r < 0) {
                free(j);
                return sbx_err_set(err, -EIO, "cannot queue the layer gc: %s", uv_strerror(r));
        }
        return 0;
}

int manager_layer_gc(struct manager *m, manager_done_fn done, void *data, struct sbx_err *err)
{
        return start_gc(m, NULL, done, data, err);
}

int manager_template_remove(struct manager *m, const char *name, manager_done_fn done, void *data,
                            struct sbx_err *err)
{
        json_t *manifest = template_manifest(m->templates, name, NULL);
        json_t *result;
        int r;

        if (!manifest && build__forget_failed(m, name)) {
                /* a failed first build: nothing was published, forget its record */
                done(data, 0, NULL, json_pack("{s:s, s:i, s:i}", "name", name, "layersRemoved", 0, "bytesFreed", 0));
                return 0;
        }
        if (!manifest) {
                manifest = template_manifest(m->templates, name, err); /* the 404 naming what exists */
                if (!manifest)
                        return -SBX_E_NOT_FOUND;
        }
        if (build__running(m, json_string_value(json_object_get(manifest, "name")) ?: name)) {
                json_decref(manifest);
                return sbx_err_setr(err, -SBX_E_CONFLICT, "template_building",
                                    "template '%s' is being built; remove it when the build ends", name);
        }
        result = json_pack("{s:O}", "name", json_object_get(manifest, "name"));
        json_decref(manifest);
        r = template_remove(m->templates, name, err);
        if (r < 0) {
                json_decref(result);
                return r;
        }
        /* sandboxes created from it keep their layers (they hold them) */
        return start_gc(m, result, done, data, err);
}

int manager_layers(struct manager *m, json_t **ret, struct sbx_err *err)
{
        _cleanup_free_ struct layer_info *layers = NULL;
        size_t n = 0;
        uint64_t total = 0;
        json_t *arr, *by_layer = json_object();
        struct template_status *st = calloc(SBX_MAX_TEMPLATES, sizeof *st);
        size_t n_st = 0;
        int r;

        r = layer_list(template_store_layers(m->templates), &layers, &n, err);
        if (r < 0 || !by_layer || !st) {
                json_decref(by_layer);
                free(st);
                return r < 0 ? r : sbx_err_set(err, -ENOMEM, "out of memory");
        }
        /* which templates use each layer */
        (void)template_status_list(m->templates, st, SBX_MAX_TEMPLATES, &n_st);
        for (size_t i = 0; i < n_st; i++) {
                json_t *mf = st[i].state == TEMPLATE_AVAILABLE ? template_manifest(m->templates, st[i].name, NULL) : NULL;
                json_t *v;
                size_t k;

                json_array_foreach (json_object_get(mf, "layers"), k, v) {
                        const char *d = json_string_value(v);
                        json_t *users = d ? json_object_get(by_layer, d) : NULL;

                        if (!d)
                                continue;
                        if (!users) {
                                users = json_array();
                                json_object_set_new(by_layer, d, users);
                        }
                        (void)json_array_append_new(users, json_string(st[i].name));
                }
                json_decref(mf);
        }
        free(st);
        arr = json_array();
        for (size_t i = 0; arr && i < n; i++) {
                json_t *users = json_object_get(by_layer, layers[i].digest);
                size_t refs = json_array_size(users) + layers[i].holds;

                total += layers[i].size_bytes;
                (void)json_array_append_new(
                        arr, json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:o, s:i, s:I}", "digest", layers[i].digest,
                                       "sizeBytes", (json_int_t)layers[i].size_bytes, "tarBytes",
                                       (json_int_t)layers[i].tar_bytes, "entries", (json_int_t)layers[i].entries,
                                       "createdAt", layers[i].created_at, "source", layers[i].source, "templates",
                                       users ? json_incref(users) : json_array(), "holds", (int)layers[i].holds, "refs",
                                       (json_int_t)refs));
        }
        json_decref(by_layer);
        *ret = json_pack("{s:o, s:I, s:I}", "layers", arr, "count", (json_int_t)n, "totalBytes", (json_int_t)total);
        return *ret ? 0 : sbx_err_set(err, -ENOMEM, "out of memory");
}

/* ---------- OCI import / export ---------- */

struct image_job {
        uv_work_t work;
        struct manager *m;
        manager_done_fn done;
        void *data;
        int fd;                             /* import: the tarball; export: the output file */
        char name[SBX_MAX_TEMPLATE_NAME + 1];
        struct oci_image img;
        json_t *manifest;                   /* export */
        int r;
        struct sbx_err err;
        uint64_t usec;
};

/* A template name from an image reference: "docker.io/library/Alpine:3.19" -> "alpine:3.19". */
static void name_from_ref(const char *ref, char *out, size_t size)
{
        const char *slash = strrchr(ref, '/'), *p = slash ? slash + 1 : ref;
        size_t n = 0;
        bool tag = false;

        for (; *p && n + 1 < size; p++) {
                char c = *p;

                if (c == ':' && !tag && n > 0) {
                        tag = true;
                        out[n++] = c;
                        continue;
                }
                if (c >= 'A' && c <= 'Z' && !tag)
                        c = (char)(c - 'A' + 'a');
                if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
                    (tag && c >= 'A' && c <= 'Z'))
                        out[n++] = c;
        }
        out[n] = '\0';
}

static void import_work(uv_work_t *w)
{
        struct image_job *j = w->data;
        struct layer_store *ls = template_store_layers(j->m->templates);
        char path[64];
        uint64_t t0 = now_usec();
        json_t *extra;

        snprintf(path, sizeof path, "/proc/self/fd/%d", j->fd);
        j->r = oci_import(ls, path, &j->img, NULL, NULL, &j->err);
        if (j->r < 0) {
                /* the file is the client's upload: say so instead of naming our fd */
                char *p = strstr(j->err.msg, path);
                if (p) {
                        char rest[SBX_ERR_MSG_MAX];
                        snprintf(rest, sizeof rest, "%s", p + strlen(path));
                        snprintf(p, sizeof j->err.msg - (size_t)(p - j->err.msg), "the upload%s", rest);
                }
                return;
        }
        if (!j->name[0])
                name_from_ref(j->img.ref, j->name, sizeof j->name);
        if (!j->name[0] || !template_name_valid(j->name))
                j->r = sbx_err_setr(&j->err, -SBX_E_INVALID, "invalid_value",
                                    "the image has no usable name ('%.100s'); pass ?name=NAME", j->img.ref);
        else if (template_known(j->name))
                j->r = sbx_err_setr(&j->err, -SBX_E_INVALID, "invalid_value",
                                    "'name': '%s' is a catalog template; choose another name", j->name);
        if (j->r >= 0) {
                extra = json_pack("{s:s, s:s}", "source", "import", "imageRef", j->img.ref);
                j->r = template_publish(j->m->templates, j->name, (const char(*)[SBX_LAYER_DIGEST_MAX])j->img.layers,
                                        j->img.n_layers, j->img.config, extra, &j->err);
                json_decref(extra);
        }
        for (size_t i = 0; i < j->img.n_layers; i++)
                layer_release(ls, j->img.layers[i]);
        j->usec = now_usec() - t0;
}

static void image_job_done(uv_work_t *w, int status)
{
        struct image_job *j = w->data;
        json_t *result = NULL;
        struct sbx_err e = {};

        if (status < 0 && j->r >= 0)
                j->r = sbx_err_set(&j->err, -ECANCELED, "cancelled");
        if (j->r >= 0 && !j->manifest) {
                log_info("template %s: imported %zu layers in %.2f s", j->name, j->img.n_layers, j->usec / 1e6);
                if (manager_template_get(j->m, j->name, &result, &e) < 0)
                        result = json_pack("{s:s}", "name", j->name);
        } else if (j->r >= 0)
                result = json_pack("{s:s}", "name", j->name);
        if (j->r >= 0)
                j->done(j->data, 0, NULL, result);
        else
                j->done(j->data, j->r, &j->err, NULL);
        oci_image_done(&j->img);
        json_decref(j->manifest);
        safe_close(j->fd);
        free(j);
}

int manager_template_import(struct manager *m, int fd, const char *name, manager_done_fn done, void *data,
                            struct sbx_err *err)
{
        struct image_job *j;
        int r;

        if (name && *name && !template_name_valid(name))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'name' must be lower-case letters, digits, '.', '_', '-' with an optional ':tag'");
        if (name && template_known(name))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'name': '%s' is a catalog template; choose another name", name);
        j = calloc(1, sizeof *j);
        if (!j)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        j->m = m;
        j->done = done;
        j->data = data;
        j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0) {
                free(j);
                return sbx_err_set(err, -errno, "cannot duplicate the upload: %m");
        }
        snprintf(j->name, sizeof j->name, "%s", name ? name : "");
        j->work.data = j;
        r = uv_queue_work(m->loop, &j->work, import_work, image_job_done);
        if (r < 0) {
                safe_close(j->fd);
                free(j);
                return sbx_err_set(err, -EIO, "cannot queue the import: %s", uv_strerror(r));
        }
        return 0;
}

static void export_work(uv_work_t *w)
{
        struct image_job *j = w->data;
        struct layer_store *ls = template_store_layers(j->m->templates);
        json_t *v;
        size_t i;

        json_array_foreach (json_object_get(j->manifest, "layers"), i, v) {
                if (j->img.n_layers == SBX_MAX_IMAGE_LAYERS || !json_string_value(v)) {
                        j->r = sbx_err_set(&j->err, -SBX_E_INTERNAL, "template '%s': its manifest is damaged", j->name);
                        return;
                }
                snprintf(j->img.layers[j->img.n_layers++], SBX_LAYER_DIGEST_MAX, "%s", json_string_value(v));
        }
        j->img.config = json_incref(json_object_get(j->manifest, "config"));
        j->r = oci_export(ls, &j->img, j->name, j->fd, &j->err);
        if (j->r >= 0 && lseek(j->fd, 0, SEEK_SET) < 0)
                j->r = sbx_err_set(&j->err, -errno, "cannot rewind the export: %m");
}

int manager_template_export(struct manager *m, const char *name, int fd, manager_done_fn done, void *data,
                            struct sbx_err *err)
{
        struct image_job *j;
        json_t *manifest = template_manifest(m->templates, name, err);
        int r;

        if (!manifest)
                return err ? err->code : -SBX_E_NOT_FOUND;
        j = calloc(1, sizeof *j);
        if (!j) {
                json_decref(manifest);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        j->m = m;
        j->done = done;
        j->data = data;
        j->manifest = manifest;
        snprintf(j->name, sizeof j->name, "%s", json_string_value(json_object_get(manifest, "name")) ?: name);
        j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (j->fd < 0) {
                json_decref(manifest);
                free(j);
                return sbx_err_set(err, -errno, "cannot duplicate the export file: %m");
        }
        j->work.data = j;
        r = uv_queue_work(m->loop, &j->work, export_work, image_job_done);
        if (r < 0) {
                safe_close(j->fd);
                json_decref(manifest);
                free(j);
                return sbx_err_set(err, -EIO, "cannot queue the export: %s", uv_strerror(r));
        }
        return 0;
}
