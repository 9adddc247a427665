// SPDX-License-Identifier: Apache-2.0
/*
 * Snapshots, checkpoints and fork bases (DESIGN §5, docs/lifecycle.md).
 *
 * A snapshot is a frozen copy of a sandbox's overlay upper directory, with owners shifted back to
 * sandbox-relative ids, kept read-only under <data>/snapshots/<id>/root. A sandbox created from a
 * snapshot mounts it as an extra lower layer above the snapshot's own lowers (its parent
 * snapshots, then the template's layers), so snapshots stack: a snapshot of such a sandbox has the
 * first as its parent, and deletions stay deleted across layers (the upper's whiteouts and opaque
 * directories are copied as they are). Taking one from a running sandbox freezes it only for the
 * copy (on the worker pool).
 *
 * Kinds: "snapshot" (API), "checkpoint" (named per sandbox; restore in place; patches), "fork" (the
 * base of a fork, removed once nothing uses it). Every record is in the store (table snapshots) and
 * in memory (m->snapshots, loaded before sandboxes are recovered). Snapshot trees are keyed by id,
 * not by content: a copy is all a snapshot costs (docs/design/decisions.md).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "manager-internal.h"
#include "sandbox/tree.h"

#define FREEZE_WAIT_US 5000000  /* a snapshot of a running sandbox waits this long for the freezer */

struct snapshot {
        struct snapshot *next;          /* m->snapshots, oldest first */
        char id[SBX_ID_MAX];
        char kind[16];
        char sandbox_id[SBX_ID_MAX];
        char parent_id[SBX_ID_MAX];     /* "" = taken of a sandbox that came from a template */
        json_t *data;                   /* the record (owned) */
        char (*layers)[SBX_LAYER_DIGEST_MAX]; /* the template layers below it (bottom first), held */
        size_t n_layers;
        bool layers_held;
        unsigned depth;                 /* snapshots in its chain, itself included */
        uint64_t frozen_us;             /* how long the source was frozen for it (this run only) */
        uint32_t id_base;               /* host id of its tree's root (the source sandbox's uid base) */
};

const char *snapshots__id(const struct snapshot *s)
{
        return s->id;
}

uint64_t snapshots__frozen_us(const struct snapshot *s)
{
        return s->frozen_us;
}

/* ---------- the in-memory index ---------- */

static struct snapshot *find_id(struct manager *m, const char *id)
{
        for (struct snapshot *s = m->snapshots; s; s = s->next)
                if (!strcmp(s->id, id))
                        return s;
        return NULL;
}

static bool has_tag(const struct snapshot *s, const char *tag)
{
        json_t *v;
        size_t i;

        json_array_foreach (json_object_get(s->data, "tags"), i, v)
                if (!strcmp(json_string_value(v) ?: "", tag))
                        return true;
        return false;
}

/* By id or tag; NULL with 404 snapshot_not_found. Fork bases are found by id only. */
static struct snapshot *lookup(struct manager *m, const char *ref, struct sbx_err *err)
{
        struct snapshot *s = NULL;

        if (ref && snapshot_ref_valid(ref)) {
                s = find_id(m, ref);
                for (struct snapshot *t = m->snapshots; !s && t; t = t->next)
                        if (has_tag(t, ref))
                                s = t;
        }
        if (!s)
                (void)sbx_err_setr(err, -SBX_E_NOT_FOUND, "snapshot_not_found", "snapshot '%.128s' not found",
                                   ref ? ref : "");
        return s;
}

static void snapshot_free(struct manager *m, struct snapshot *s)
{
        if (!s)
                return;
        if (s->layers_held)
                for (size_t i = 0; i < s->n_layers; i++)
                        layer_release(template_store_layers(m->templates), s->layers[i]);
        json_decref(s->data);
        free(s->layers);
        free(s);
}

/* A snapshot object from its record; its template layers are held while it exists. */
static int snapshot_from_row(struct manager *m, const struct snapshot_row *row, struct snapshot **ret,
                             struct sbx_err *err)
{
        struct layer_store *ls = template_store_layers(m->templates);
        _cleanup_free_ struct snapshot *s = calloc(1, sizeof *s);
        json_t *layers, *v;
        size_t i;

        if (!s)
                return -ENOMEM;
        s->data = json_loads(row->data_json, JSON_REJECT_DUPLICATES, NULL);
        layers = json_object_get(s->data, "layers");
        if (!json_is_object(s->data) || (layers && !json_is_array(layers)) ||
            json_array_size(layers) > SBX_MAX_IMAGE_LAYERS) {
                json_decref(s->data);
                return sbx_err_set(err, -SBX_E_INTERNAL, "snapshot record '%s' is unreadable", row->id);
        }
        snprintf(s->id, sizeof s->id, "%s", row->id);
        snprintf(s->kind, sizeof s->kind, "%s", row->kind);
        snprintf(s->sandbox_id, sizeof s->sandbox_id, "%s", row->sandbox_id);
        snprintf(s->parent_id, sizeof s->parent_id, "%s", row->parent_id);
        s->id_base = (uint32_t)json_integer_value(json_object_get(s->data, "idBase"));
        if (json_array_size(layers) > 0) {
                s->layers = calloc(json_array_size(layers), sizeof *s->layers);
                if (!s->layers) {
                        json_decref(s->data);
                        return -ENOMEM;
                }
        }
        json_array_foreach (layers, i, v) {
                const char *d = json_string_value(v);

                if (!d || !layer_digest_valid(d)) {
                        json_decref(s->data);
                        free(s->layers);
                        return sbx_err_set(err, -SBX_E_INTERNAL, "snapshot record '%s' has a bad layer", row->id);
                }
                snprintf(s->layers[i], SBX_LAYER_DIGEST_MAX, "%s", d);
        }
        s->n_layers = json_array_size(layers);
        for (i = 0; i < s->n_layers; i++)
                if (layer_hold(ls, s->layers[i], NULL) < 0)
                        break;
        if (i == s->n_layers)
                s->layers_held = true;
        else
                while (i-- > 0)
                        layer_release(ls, s->layers[i]);
        *ret = TAKE_PTR(s);
        return 0;
}

static void index_append(struct manager *m, struct snapshot *s)
{
        struct snapshot **pp = &m->snapshots;
        struct snapshot *p = s->parent_id[0] ? find_id(m, s->parent_id) : NULL;

        s->depth = p ? p->depth + 1 : 1;
        while (*pp)
                pp = &(*pp)->next;
        *pp = s;
        m->n_snapshots++;
}

static void index_remove(struct manager *m, struct snapshot *s)
{
        for (struct snapshot **pp = &m->snapshots; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        m->n_snapshots--;
                        return;
                }
}

/* Remove a snapshot's tree (blocking: a tree walk) and any half-made copy of it. */
static void remove_tree(struct manager *m, const char *name)
{
        char path[PATH_MAX + 64];

        if ((size_t)snprintf(path, sizeof path, "%s/%s", m->snapshots_dir, name) < sizeof path)
                storage__remove_snapshot(m, path);
}

int snapshots__load(struct manager *m, struct sbx_err *err)
{
        struct snapshot_row *rows = NULL;
        size_t n = 0;
        DIR *d;
        struct dirent *de;
        int r;

        r = m->store->ops->snapshot_list(m->store, &rows, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct snapshot *s;
                struct sbx_err e = { 0 };

                if (snapshot_from_row(m, &rows[i], &s, &e) >= 0)
                        index_append(m, s);
        }
        snapshot_row_array_free(rows, n);
        /* what a crash left: half-made copies (tmp-*) and trees whose record never made it */
        d = opendir(m->snapshots_dir);
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (!strncmp(de->d_name, "tmp-", 4) || (sbx_id_valid("snp_", de->d_name) && !find_id(m, de->d_name)))
                        remove_tree(m, de->d_name);
        }
        if (d)
                closedir(d);
        return 0;
}

void snapshots__free_all(struct manager *m)
{
        while (m->snapshots) {
                struct snapshot *s = m->snapshots;

                m->snapshots = s->next;
                snapshot_free(m, s);
        }
        m->n_snapshots = 0;
}

/* ---------- chains and lower layers ---------- */

int snapshots__chain(struct manager *m, const char *id, char (**ret)[SBX_ID_MAX], size_t *ret_n, struct sbx_err *err)
{
        char(*chain)[SBX_ID_MAX] = calloc(SBX_MAX_SNAPSHOT_DEPTH, SBX_ID_MAX);
        size_t n = 0;

        if (!chain)
                return -ENOMEM;
        for (struct snapshot *s = find_id(m, id); s; s = s->parent_id[0] ? find_id(m, s->parent_id) : NULL) {
                if (n == SBX_MAX_SNAPSHOT_DEPTH) {
                        free(chain);
                        return sbx_err_set(err, -SBX_E_INTERNAL, "snapshot '%s' has a lineage deeper than %d", id,
                                           SBX_MAX_SNAPSHOT_DEPTH);
                }
                snprintf(chain[n++], SBX_ID_MAX, "%s", s->id);
        }
        if (n == 0) {
                free(chain);
                return sbx_err_setr(err, -SBX_E_CONFLICT, "snapshot_not_found",
                                    "the snapshot '%s' this sandbox was created from is gone", id);
        }
        *ret = chain;
        *ret_n = n;
        return 0;
}

int manager__lower_paths(struct sandbox *sb, const struct template_info *tmpl, char ***ret, uint32_t **ret_bases,
                         size_t *ret_n)
{
        struct manager *m = sb->m;
        _cleanup_free_ char **base = NULL;
        size_t n_base = 0, n, bytes = 0, each = strlen(m->snapshots_dir) + SBX_ID_MAX + 16;
        uint32_t *bases;
        char **paths, *buf;
        int r;

        r = template_lower_paths(m->templates, tmpl, &base, &n_base);
        if (r < 0)
                return r;
        n = sb->n_chain + n_base;
        if (n > SBX_SANDBOX_MAX_LOWERS)
                return -E2BIG;
        for (size_t i = 0; i < n_base; i++)
                bytes += strlen(base[i]) + 1;
        paths = malloc(n * (sizeof *paths + sizeof *bases) + sb->n_chain * each + bytes);
        if (!paths)
                return -ENOMEM;
        bases = (uint32_t *)(paths + n);
        buf = (char *)(bases + n);
        /* topmost first: the newest snapshot, its parents, then the template's layers */
        for (size_t i = 0; i < sb->n_chain; i++) {
                struct snapshot *s = find_id(m, sb->chain[i]);

                paths[i] = buf;
                bases[i] = s ? s->id_base : 0;
                buf += snprintf(buf, each, "%s/%s%s", m->snapshots_dir, sb->chain[i], storage__layer_subdir(m)) + 1;
        }
        for (size_t i = 0; i < n_base; i++) {
                paths[sb->n_chain + i] = buf;
                bases[sb->n_chain + i] = 0;
                buf = stpcpy(buf, base[i]) + 1;
        }
        *ret = paths;
        if (ret_bases)
                *ret_bases = bases;
        *ret_n = n;
        return 0;
}

/* ---------- JSON ---------- */

static json_t *snapshot_json(struct manager *m, const struct snapshot *s)
{
        json_t *o = json_deep_copy(s->data), *layers = json_array();

        if (!o || !layers) {
                json_decref(o);
                json_decref(layers);
                return NULL;
        }
        /* every layer a sandbox made from it mounts, topmost first */
        for (const struct snapshot *t = s; t; t = t->parent_id[0] ? find_id(m, t->parent_id) : NULL)
                (void)json_array_append_new(layers, json_string(t->id));
        for (size_t i = s->n_layers; i-- > 0;)
                (void)json_array_append_new(layers, json_string(s->layers[i]));
        json_object_set_new(o, "layers", layers);
        json_object_del(o, "spec");
        json_object_del(o, "idBase");
        return o;
}

/* ---------- taking a snapshot ---------- */

static void tags_claim(struct manager *m, struct snapshot *s, json_t *tags);
static int snapshot_save(struct manager *m, struct snapshot *s, struct sbx_err *err);

struct snap_job {
        uv_work_t work;
        struct op *op;
        struct manager *m;
        char id[SBX_ID_MAX];
        char upper[PATH_MAX + 16];
        char tmp[PATH_MAX + 64];
        char final[PATH_MAX + 64];
        uid_t uid_base;
        bool freeze;                     /* running: freeze for the copy, thaw after */
        json_t *data;                    /* the record being made */
        snapshot_done_fn done;
        void *done_data;
        int r;
        struct sbx_err err;
        struct tree_stats stats;
        uint64_t frozen_us, copy_us;
};

static void snap_work(uv_work_t *w)
{
        struct snap_job *j = w->data;
        struct sandbox *sb = j->op->sb;
        const struct cgroup_root *cg = &j->m->cg;
        uint64_t t0, deadline;

        /* write back what the sandbox wrote before it is frozen, not while: a btrfs snapshot
         * commits a transaction, which flushes every dirty page first */
        if (j->m->btrfs && j->freeze) {
                int fd = open(j->upper, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                if (fd >= 0) {
                        (void)syncfs(fd);
                        safe_close(fd);
                }
        }
        t0 = now_usec();
        deadline = t0 + FREEZE_WAIT_US;
        if (j->freeze) {
                j->r = cgroup_freeze(cg, sb->rec.id, true);
                while (j->r >= 0 && cgroup_frozen(cg, sb->rec.id) == 0 && now_usec() < deadline)
                        usleep(200);
                if (j->r >= 0 && cgroup_frozen(cg, sb->rec.id) <= 0)
                        j->r = sbx_err_set(&j->err, -SBX_E_UNAVAILABLE,
                                           "the processes of sandbox '%s' did not freeze within %d ms", sb->rec.id,
                                           FREEZE_WAIT_US / 1000);
                else if (j->r < 0)
                        (void)sbx_err_set(&j->err, j->r, "cannot freeze sandbox '%s': %s", sb->rec.id, strerror(-j->r));
        }
        if (j->r >= 0 && mkdir(j->tmp, 0700) < 0)
                j->r = sbx_err_set(&j->err, -errno, "cannot make '%s': %m", j->tmp);
        if (j->r >= 0) {
                uint64_t c0 = now_usec();

                j->r = storage__snapshot(j->m, j->upper, j->tmp, &j->stats, &j->err);
                j->copy_us = now_usec() - c0;
        }
        if (j->freeze) {
                (void)cgroup_freeze(cg, sb->rec.id, false);
                j->frozen_us = now_usec() - t0;
        }
        if (j->r >= 0 && rename(j->tmp, j->final) < 0)
                j->r = sbx_err_set(&j->err, -errno, "cannot publish snapshot '%s': %m", j->id);
        if (j->r < 0)
                storage__remove_snapshot(j->m, j->tmp);
}

static int snapshot_publish(struct manager *m, const struct op *op, struct snap_job *j, struct snapshot **ret,
                            struct sbx_err *err)
{
        struct sandbox *sb = op->sb;
        struct snapshot_row row = { .created_ms = now_realtime_ms() };
        struct snapshot *s = NULL;
        char *text;
        int r;

        /* a subvolume snapshot counts nothing: no walk is what makes it fast */
        json_object_set_new(j->data, "sizeBytes", j->m->btrfs ? json_null() : json_integer((json_int_t)j->stats.bytes));
        json_object_set_new(j->data, "entries", j->m->btrfs ? json_null() : json_integer((json_int_t)j->stats.entries));
        json_object_set_new(j->data, "frozenMs", json_real(j->frozen_us / 1000.0));
        json_object_set_new(j->data, "createdAt", json_time_ms(row.created_ms));
        text = json_dump_compact(j->data);
        if (!text)
                return -ENOMEM;
        snprintf(row.id, sizeof row.id, "%s", j->id);
        snprintf(row.kind, sizeof row.kind, "%s", json_string_value(json_object_get(j->data, "kind")));
        snprintf(row.sandbox_id, sizeof row.sandbox_id, "%s", sb->rec.id);
        snprintf(row.parent_id, sizeof row.parent_id, "%s", sb->n_chain ? sb->chain[0] : "");
        row.data_json = text;
        r = m->store->ops->snapshot_put(m->store, &row, err);
        if (r >= 0)
                r = snapshot_from_row(m, &row, &s, err);
        free(text);
        if (r < 0)
                return r;
        index_append(m, s);
        tags_claim(m, s, json_object_get(s->data, "tags"));
        manager__event(m, sb->rec.id, "snapshot.created",
                       json_pack("{s:s,s:s,s:I,s:I,s:f}", "snapshotId", s->id, "kind", s->kind, "sizeBytes",
                                 (json_int_t)j->stats.bytes, "entries", (json_int_t)j->stats.entries, "frozenMs",
                                 j->frozen_us / 1000.0));
        *ret = s;
        return 0;
}

static void snap_done(uv_work_t *w, int status)
{
        struct snap_job *j = w->data;
        struct manager *m = j->m;
        struct op *op = j->op;
        struct snapshot *s = NULL;
        int r = j->r;

        m->pending_launches--;
        if (r >= 0)
                r = snapshot_publish(m, op, j, &s, &j->err);
        if (r < 0 && j->err.code == 0)
                (void)sbx_err_set(&j->err, r, "cannot take the snapshot: %s", strerror(-r));
        if (r < 0)
                remove_tree(m, j->id);
        log_debug("snapshot %s of %s: %d, %llu entries, %llu bytes, frozen %.2f ms, copy %.2f ms", j->id,
                  op->sb->rec.id, r, (unsigned long long)j->stats.entries, (unsigned long long)j->stats.bytes,
                  j->frozen_us / 1000.0, j->copy_us / 1000.0);
        /* the op ends first: whoever is called next may start another operation on the sandbox */
        if (op->sb->op == op)
                op->sb->op = NULL;
        if (s)
                s->frozen_us = j->frozen_us;
        if (j->done && !m->freeing)
                j->done(j->done_data, r, &j->err, s);
        sandbox_unref(op->sb);
        free(op);
        json_decref(j->data);
        free(j);
        manager_maybe_free_pub(m);
}

int snapshots__take(struct manager *m, const char *id, const char *kind, const char *name, const char *description,
                    json_t *tags, snapshot_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct snap_job *j;
        struct op *op;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state != SANDBOX_RUNNING && sb->rec.state != SANDBOX_PAUSED && sb->rec.state != SANDBOX_STOPPED &&
            sb->rec.state != SANDBOX_HIBERNATED)
                return manager__busy_error(sb, err);
        if (m->n_snapshots >= SBX_MAX_SNAPSHOTS)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "at most %d snapshots may exist",
                                    SBX_MAX_SNAPSHOTS);
        if (sb->n_chain + 1 > SBX_MAX_SNAPSHOT_DEPTH || sb->n_chain + 1 + sb->n_layers + 1 > SBX_SANDBOX_MAX_LOWERS)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded",
                                    "sandbox '%s' already stands on %zu snapshots; at most %d may stack", sb->rec.id,
                                    sb->n_chain, SBX_MAX_SNAPSHOT_DEPTH);
        if (!strcmp(kind, "checkpoint"))
                for (struct snapshot *s = m->snapshots; s; s = s->next)
                        if (!strcmp(s->kind, "checkpoint") && !strcmp(s->sandbox_id, id) &&
                            !strcmp(json_string_value(json_object_get(s->data, "name")) ?: "", name))
                                return sbx_err_setr(err, -SBX_E_CONFLICT, "checkpoint_exists",
                                                    "sandbox '%s' already has a checkpoint named '%s'", id, name);
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        r = sbx_id_new("snp_", j->id, sizeof j->id);
        if (r < 0) {
                free(j);
                return sbx_err_set(err, r, "cannot generate an id: %s", strerror(-r));
        }
        j->data = json_pack("{s:s,s:o,s:s,s:s,s:o,s:s,s:o,s:o,s:o,s:s,s:[],s:b}", "id", j->id, "name",
                            name ? json_string(name) : json_null(), "kind", kind, "sandboxId", sb->rec.id, "parentId",
                            sb->n_chain ? json_string(sb->chain[0]) : json_null(), "template", sb->rec.template_name,
                            "description", description ? json_string(description) : json_null(), "spec",
                            sandbox_spec_to_json(&sb->spec), "tags", tags ? json_incref(tags) : json_array(),
                            "backend", storage__name(m),
                            "patches", "memory", false);
        if (!j->data) {
                free(j);
                return -ENOMEM;
        }
        {
                json_t *layers = json_array();

                for (size_t i = 0; layers && i < sb->n_layers; i++)
                        (void)json_array_append_new(layers, json_string(sb->layers[i]));
                json_object_set_new(j->data, "layers", layers ? layers : json_array());
        }
        op = op_new(sb, OP_SNAPSHOT, NULL, NULL);
        if (!op) {
                json_decref(j->data);
                free(j);
                return -ENOMEM;
        }
        j->op = op;
        j->m = m;
        j->done = done;
        j->done_data = data;
        j->uid_base = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE;
        json_object_set_new(j->data, "idBase", json_integer((json_int_t)j->uid_base));
        j->freeze = sb->rec.state == SANDBOX_RUNNING;
        snprintf(j->upper, sizeof j->upper, "%s", sb->dir);
        snprintf(j->tmp, sizeof j->tmp, "%s/tmp-%s", m->snapshots_dir, j->id);
        snprintf(j->final, sizeof j->final, "%s/%s", m->snapshots_dir, j->id);
        j->work.data = j;
        r = uv_queue_work(m->loop, &j->work, snap_work, snap_done);
        if (r < 0) {
                sb->op = NULL;
                sandbox_unref(sb);
                free(op);
                json_decref(j->data);
                free(j);
                return sbx_err_set(err, -EIO, "cannot queue the snapshot: %s", uv_strerror(r));
        }
        m->pending_launches++;
        return 0;
}

/* ---------- public: snapshots ---------- */

struct api_done {
        struct manager *m;
        manager_done_fn done;
        void *data;
};

static void snapshot_api_done(void *data, int r, const struct sbx_err *err, struct snapshot *s)
{
        struct api_done *a = data;

        if (r < 0)
                a->done(a->data, r, err, NULL);
        else
                a->done(a->data, 0, NULL, snapshot_json(a->m, s));
        free(a);
}

static int tags_check(json_t *tags, struct sbx_err *err)
{
        json_t *v;
        size_t i;

        if (json_array_size(tags) > SBX_MAX_SNAPSHOT_TAGS)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "at most %d tags", SBX_MAX_SNAPSHOT_TAGS);
        json_array_foreach (tags, i, v)
                if (!json_is_string(v) || !snapshot_ref_valid(json_string_value(v)) ||
                    sbx_id_valid("snp_", json_string_value(v)))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "tags must be [A-Za-z0-9._:-]{1,%d}, not starting with '.' or '-', and "
                                            "not look like a snapshot id",
                                            SBX_MAX_TAG);
        return 0;
}

int manager_snapshot_create(struct manager *m, const char *id, const struct snapshot_opts *o, manager_done_fn done,
                            void *data, struct sbx_err *err)
{
        struct api_done *a;
        json_t *tags = o->tags ? json_deep_copy(o->tags) : json_array();
        int r;

        if (!tags)
                return -ENOMEM;
        r = tags_check(tags, err);
        if (r >= 0 && !strcmp(o->kind, "checkpoint") && (!o->name || !snapshot_ref_valid(o->name)))
                r = sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                 "'name' must be [A-Za-z0-9._:-]{1,%d}, not starting with '.' or '-'", SBX_MAX_TAG);
        if (r < 0) {
                json_decref(tags);
                return r;
        }
        a = calloc(1, sizeof *a);
        if (!a) {
                json_decref(tags);
                return -ENOMEM;
        }
        *a = (struct api_done){ m, done, data };
        r = snapshots__take(m, id, o->kind, o->name, o->description, tags, snapshot_api_done, a, err);
        json_decref(tags);
        if (r < 0)
                free(a);
        return r;
}

/* A tag names one snapshot: giving it to s takes it from any other (saved when they are). */
static void tags_claim(struct manager *m, struct snapshot *s, json_t *tags)
{
        for (struct snapshot *t = m->snapshots; t; t = t->next) {
                json_t *tt = json_object_get(t->data, "tags"), *v;
                bool changed = false;
                size_t i;

                if (t == s)
                        continue;
                json_array_foreach (tags, i, v)
                        for (size_t k = json_array_size(tt); k-- > 0;)
                                if (!strcmp(json_string_value(json_array_get(tt, k)) ?: "", json_string_value(v))) {
                                        (void)json_array_remove(tt, k);
                                        changed = true;
                                }
                /* best effort: a failed write leaves the tag on both in the store, and the
                 * newer one wins the lookup after a restart only by order */
                if (changed)
                        (void)snapshot_save(m, t, NULL);
        }
}

static int snapshot_save(struct manager *m, struct snapshot *s, struct sbx_err *err)
{
        struct snapshot_row row = { .created_ms = 0 };
        int r;

        snprintf(row.id, sizeof row.id, "%s", s->id);
        snprintf(row.kind, sizeof row.kind, "%s", s->kind);
        snprintf(row.sandbox_id, sizeof row.sandbox_id, "%s", s->sandbox_id);
        snprintf(row.parent_id, sizeof row.parent_id, "%s", s->parent_id);
        row.data_json = json_dump_compact(s->data);
        if (!row.data_json)
                return -ENOMEM;
        r = m->store->ops->snapshot_put(m->store, &row, err);
        free(row.data_json);
        return r;
}

int manager_snapshot_list(struct manager *m, const struct snapshot_filter *f, json_t **ret, struct sbx_err *err)
{
        json_t *arr = json_array();

        if (!arr)
                return -ENOMEM;
        for (struct snapshot *s = m->snapshots; s; s = s->next) {
                if (f->sandbox_id && strcmp(s->sandbox_id, f->sandbox_id))
                        continue;
                if (f->kind ? strcmp(s->kind, f->kind) != 0 : !strcmp(s->kind, "fork"))
                        continue;
                if (f->tag && !has_tag(s, f->tag))
                        continue;
                if (json_array_append_new(arr, snapshot_json(m, s)) < 0) {
                        json_decref(arr);
                        return -ENOMEM;
                }
        }
        *ret = json_pack("{s:o}", "snapshots", arr);
        return *ret ? 0 : -ENOMEM;
}

int manager_snapshot_get(struct manager *m, const char *ref, json_t **ret, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);

        if (!s)
                return -SBX_E_NOT_FOUND;
        *ret = snapshot_json(m, s);
        return *ret ? 0 : -ENOMEM;
}

/* Live sandboxes standing on s (it is in their chain) and snapshots whose parent it is. */
static void snapshot_users(struct manager *m, const struct snapshot *s, unsigned *ret_sandboxes, unsigned *ret_children)
{
        *ret_sandboxes = *ret_children = 0;
        for (unsigned i = 0; i < SANDBOX_HASH_SIZE; i++)
                for (struct sandbox *sb = m->table[i]; sb; sb = sb->hnext)
                        for (size_t k = 0; k < sb->n_chain; k++)
                                if (!strcmp(sb->chain[k], s->id)) {
                                        (*ret_sandboxes)++;
                                        break;
                                }
        for (struct snapshot *t = m->snapshots; t; t = t->next)
                if (!strcmp(t->parent_id, s->id))
                        (*ret_children)++;
}

struct tree_rm {
        uv_work_t work;
        struct manager *m;
        char name[SBX_ID_MAX];
};

static void tree_rm_work(uv_work_t *w)
{
        struct tree_rm *t = w->data;

        remove_tree(t->m, t->name);
}

static void tree_rm_done(uv_work_t *w, int status)
{
        struct tree_rm *t = w->data;
        struct manager *m = t->m;

        m->pending_cleanups--;
        free(t);
        manager_maybe_free_pub(m);
}

static int snapshot_remove(struct manager *m, struct snapshot *s, struct sbx_err *err)
{
        struct tree_rm *t;
        unsigned sandboxes, children;
        int r;

        snapshot_users(m, s, &sandboxes, &children);
        if (sandboxes || children)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "snapshot_in_use",
                                    "snapshot '%s' is in use by %u sandbox(es) and %u snapshot(s) made from them; "
                                    "delete those first",
                                    s->id, sandboxes, children);
        r = m->store->ops->snapshot_delete(m->store, s->id, err);
        if (r < 0)
                return r;
        index_remove(m, s);
        manager__event(m, s->sandbox_id, "snapshot.deleted", json_pack("{s:s,s:s}", "snapshotId", s->id, "kind", s->kind));
        /* the tree goes on the worker pool; a crash before that is swept at the next start */
        t = calloc(1, sizeof *t);
        if (t) {
                t->m = m;
                t->work.data = t;
                snprintf(t->name, sizeof t->name, "%s", s->id);
                if (uv_queue_work(m->loop, &t->work, tree_rm_work, tree_rm_done) == 0)
                        m->pending_cleanups++;
                else {
                        remove_tree(m, t->name);
                        free(t);
                }
        }
        snapshot_free(m, s);
        return 0;
}

int manager_snapshot_delete(struct manager *m, const char *ref, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);

        if (!s)
                return -SBX_E_NOT_FOUND;
        return snapshot_remove(m, s, err);
}

void snapshots__sandbox_gone(struct manager *m, struct sandbox *sb)
{
        /* its checkpoints go with it, unless sandboxes were made from them */
        for (struct snapshot *s = m->snapshots, *next; s; s = next) {
                unsigned sandboxes, children;

                next = s->next;
                if (strcmp(s->kind, "checkpoint") != 0 || strcmp(s->sandbox_id, sb->rec.id) != 0)
                        continue;
                snapshot_users(m, s, &sandboxes, &children);
                if (sandboxes == 0 && children == 0)
                        (void)snapshot_remove(m, s, NULL);
        }
        /* a fork's base goes with the last sandbox standing on it */
        for (size_t k = 0; k < sb->n_chain; k++) {
                struct snapshot *s = find_id(m, sb->chain[k]);
                unsigned sandboxes, children;

                if (!s || strcmp(s->kind, "fork") != 0)
                        continue;
                snapshot_users(m, s, &sandboxes, &children);
                if (sandboxes == 0 && children == 0)
                        (void)snapshot_remove(m, s, NULL);
        }
}

int manager_snapshot_tag(struct manager *m, const char *ref, const char *tag, bool add, json_t **ret,
                         struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);
        json_t *tags, *one;
        int r;

        if (!s)
                return -SBX_E_NOT_FOUND;
        one = json_pack("[s]", tag);
        r = one ? tags_check(one, err) : -ENOMEM;
        if (r < 0) {
                json_decref(one);
                return r;
        }
        tags = json_object_get(s->data, "tags");
        if (!json_is_array(tags)) {
                tags = json_array();
                json_object_set_new(s->data, "tags", tags);
        }
        if (add && !has_tag(s, tag)) {
                if (json_array_size(tags) >= SBX_MAX_SNAPSHOT_TAGS) {
                        json_decref(one);
                        return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "at most %d tags per snapshot",
                                            SBX_MAX_SNAPSHOT_TAGS);
                }
                tags_claim(m, s, one);
                (void)json_array_append_new(tags, json_string(tag));
        } else if (!add) {
                bool found = false;

                for (size_t k = json_array_size(tags); k-- > 0;)
                        if (!strcmp(json_string_value(json_array_get(tags, k)) ?: "", tag)) {
                                (void)json_array_remove(tags, k);
                                found = true;
                        }
                if (!found) {
                        json_decref(one);
                        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "tag_not_found", "snapshot '%s' has no tag '%s'",
                                            s->id, tag);
                }
        }
        json_decref(one);
        r = snapshot_save(m, s, err);
        if (r < 0)
                return r;
        *ret = snapshot_json(m, s);
        return *ret ? 0 : -ENOMEM;
}

int manager_snapshot_lineage(struct manager *m, const char *ref, json_t **ret, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);
        json_t *ancestors = json_array(), *children = json_array(), *sandboxes = json_array();

        if (!s || !ancestors || !children || !sandboxes) {
                json_decref(ancestors);
                json_decref(children);
                json_decref(sandboxes);
                return s ? -ENOMEM : -SBX_E_NOT_FOUND;
        }
        for (struct snapshot *t = s->parent_id[0] ? find_id(m, s->parent_id) : NULL; t;
             t = t->parent_id[0] ? find_id(m, t->parent_id) : NULL)
                (void)json_array_append_new(ancestors, snapshot_json(m, t));
        for (struct snapshot *t = m->snapshots; t; t = t->next)
                if (!strcmp(t->parent_id, s->id))
                        (void)json_array_append_new(children, json_string(t->id));
        for (unsigned i = 0; i < SANDBOX_HASH_SIZE; i++)
                for (struct sandbox *sb = m->table[i]; sb; sb = sb->hnext)
                        if (sb->n_chain > 0 && !strcmp(sb->chain[0], s->id))
                                (void)json_array_append_new(sandboxes, json_string(sb->rec.id));
        *ret = json_pack("{s:o,s:o,s:o,s:o,s:s}", "snapshot", snapshot_json(m, s), "ancestors", ancestors,
                         "children", children, "sandboxes", sandboxes, "template",
                         json_string_value(json_object_get(s->data, "template")) ?: "");
        return *ret ? 0 : -ENOMEM;
}

/* ---------- patches ---------- */

int manager_snapshot_patch_add(struct manager *m, const char *ref, const char *name, const char *script,
                               json_t **ret, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);
        json_t *patches, *p;
        char pid[SBX_ID_MAX];
        int r;

        if (!s)
                return -SBX_E_NOT_FOUND;
        patches = json_object_get(s->data, "patches");
        if (!json_is_array(patches)) {
                patches = json_array();
                json_object_set_new(s->data, "patches", patches);
        }
        if (json_array_size(patches) >= SBX_MAX_PATCHES)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "at most %d patches per snapshot",
                                    SBX_MAX_PATCHES);
        r = sbx_id_new("pch_", pid, sizeof pid);
        if (r < 0)
                return sbx_err_set(err, r, "cannot generate an id: %s", strerror(-r));
        p = json_pack("{s:s,s:o,s:s,s:o,s:I}", "id", pid, "name", name ? json_string(name) : json_null(), "script",
                      script, "createdAt", json_time_ms(now_realtime_ms()), "order",
                      (json_int_t)json_array_size(patches) + 1);
        if (!p || json_array_append_new(patches, p) < 0)
                return -ENOMEM;
        r = snapshot_save(m, s, err);
        if (r < 0) {
                (void)json_array_remove(patches, json_array_size(patches) - 1);
                return r;
        }
        *ret = json_incref(p);
        return 0;
}

int manager_snapshot_patch_list(struct manager *m, const char *ref, json_t **ret, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);
        json_t *patches;

        if (!s)
                return -SBX_E_NOT_FOUND;
        patches = json_object_get(s->data, "patches");
        *ret = json_pack("{s:O}", "patches", json_is_array(patches) ? patches : json_array());
        return *ret ? 0 : -ENOMEM;
}

int manager_snapshot_patch_delete(struct manager *m, const char *ref, const char *pid, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);
        json_t *patches;

        if (!s)
                return -SBX_E_NOT_FOUND;
        patches = json_object_get(s->data, "patches");
        for (size_t k = 0; k < json_array_size(patches); k++)
                if (!strcmp(json_string_value(json_object_get(json_array_get(patches, k), "id")) ?: "", pid)) {
                        json_t *saved = json_incref(json_array_get(patches, k));
                        int r;

                        (void)json_array_remove(patches, k);
                        r = snapshot_save(m, s, err);
                        if (r < 0)
                                (void)json_array_insert_new(patches, k, saved);
                        else
                                json_decref(saved);
                        return r;
                }
        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "patch_not_found", "snapshot '%s' has no patch '%.64s'", s->id,
                            pid);
}

int snapshots__resolve(struct manager *m, const char *ref, struct snapshot_ref *ret, struct sbx_err *err)
{
        struct snapshot *s = lookup(m, ref, err);
        json_t *patches;

        if (!s)
                return -SBX_E_NOT_FOUND;
        if (!s->layers_held && s->n_layers > 0)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "layer_not_found",
                                    "a template layer of snapshot '%s' is missing from the layer store", s->id);
        memset(ret, 0, sizeof *ret);
        snprintf(ret->id, sizeof ret->id, "%s", s->id);
        snprintf(ret->template_name, sizeof ret->template_name, "%s",
                 json_string_value(json_object_get(s->data, "template")) ?: "");
        ret->layers = (const char(*)[SBX_LAYER_DIGEST_MAX])s->layers;
        ret->n_layers = s->n_layers;
        ret->spec = json_object_get(s->data, "spec");
        patches = json_object_get(s->data, "patches");
        ret->patches = json_is_array(patches) ? patches : NULL;
        return 0;
}

int snapshots__checkpoint_id(struct manager *m, const char *sandbox_id, const char *name, char *buf, size_t size,
                             struct sbx_err *err)
{
        for (struct snapshot *s = m->snapshots; s; s = s->next)
                if (!strcmp(s->kind, "checkpoint") && !strcmp(s->sandbox_id, sandbox_id) &&
                    !strcmp(json_string_value(json_object_get(s->data, "name")) ?: "", name)) {
                        snprintf(buf, size, "%s", s->id);
                        return 0;
                }
        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "checkpoint_not_found", "sandbox '%s' has no checkpoint '%.128s'",
                            sandbox_id, name);
}

uint32_t snapshots__id_base(struct manager *m, const char *id)
{
        struct snapshot *s = find_id(m, id);

        return s ? s->id_base : 0;
}

int manager_checkpoint_id(struct manager *m, const char *sandbox_id, const char *name, char *buf, size_t size,
                          struct sbx_err *err)
{
        if (!manager_sandbox_known(m, sandbox_id))
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "sandbox_not_found", "sandbox '%.64s' not found",
                                    sandbox_id);
        return snapshots__checkpoint_id(m, sandbox_id, name, buf, size, err);
}
