// SPDX-License-Identifier: Apache-2.0
/*
 * What is made from snapshots (docs/lifecycle.md): sandboxes created from one (with its patch
 * scripts applied in order), forks (a fork base snapshot plus N sandboxes on it; the parent keeps
 * running), and checkpoints restored in place (the sandbox's upper directory replaced by the
 * checkpoint's copy, its processes restarted if it ran). The snapshots themselves are
 * core/snapshots.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/util.h"
#include "manager-internal.h"
#include "sandbox/tree.h"

#define PATCH_TIMEOUT_S 600
#define PATCH_OUTPUT_MAX 4096   /* bytes of a failed patch's output quoted in the error */

/* ---------- create from a snapshot ---------- */

struct patch_run {
        struct manager *m;
        char id[SBX_ID_MAX];
        json_t *patches;              /* array (owned ref) */
        size_t next;
        json_t *sandbox;              /* the created sandbox's JSON */
        manager_done_fn done;
        void *data;
        struct exec_handle *h;
        char out[PATCH_OUTPUT_MAX];
        size_t out_len;
};

static void patch_run_free(struct patch_run *p)
{
        json_decref(p->patches);
        json_decref(p->sandbox);
        free(p);
}

static void patch_next(struct patch_run *p);

static bool patch_output(void *data, enum exec_stream stream, const char *buf, size_t len)
{
        struct patch_run *p = data;

        /* keep the tail: that is where a failure explains itself */
        if (len >= sizeof p->out) {
                memcpy(p->out, buf + len - sizeof p->out, sizeof p->out);
                p->out_len = sizeof p->out;
        } else {
                size_t keep = p->out_len + len > sizeof p->out ? sizeof p->out - len : p->out_len;

                memmove(p->out, p->out + p->out_len - keep, keep);
                memcpy(p->out + keep, buf, len);
                p->out_len = keep + len;
        }
        return true;
}

static void patch_deleted(void *data, int r, const struct sbx_err *err, json_t *result)
{
        json_decref(result);
}

static void patch_exec_done(void *data, int r, const struct sbx_err *err, const struct exec_result *res)
{
        struct patch_run *p = data;
        json_t *patch = json_array_get(p->patches, p->next - 1);
        struct sbx_err e = { 0 };

        p->h = NULL;
        if (r >= 0 && res->exit_code == 0) {
                patch_next(p);
                return;
        }
        if (r < 0)
                (void)sbx_err_setr(&e, -SBX_E_CONFLICT, "patch_failed", "patch %zu (%s) could not run: %s", p->next,
                                   json_string_value(json_object_get(patch, "id")) ?: "?", err ? err->msg : "");
        else
                (void)sbx_err_setr(&e, -SBX_E_CONFLICT, "patch_failed",
                                   "patch %zu (%s) exited with %d%s; the sandbox was deleted. Output: %.*s", p->next,
                                   json_string_value(json_object_get(patch, "id")) ?: "?", res->exit_code,
                                   res->timed_out ? " (timed out)" : "", (int)p->out_len, p->out);
        (void)manager_delete(p->m, p->id, patch_deleted, NULL, NULL);
        p->done(p->data, e.code, &e, NULL);
        patch_run_free(p);
}

static void patch_next(struct patch_run *p)
{
        static const struct exec_callbacks cb = { .output = patch_output, .done = patch_exec_done };
        json_t *patch = json_array_get(p->patches, p->next);
        struct exec_spec spec = { .cwd = "/root", .timeout_s = PATCH_TIMEOUT_S, .timeout_given = true };
        struct sbx_err err = { 0 };
        int r;

        if (!patch) {
                json_object_set_new(p->sandbox, "patchesApplied", json_integer((json_int_t)p->next));
                p->done(p->data, 0, NULL, json_incref(p->sandbox));
                patch_run_free(p);
                return;
        }
        p->next++;
        p->out_len = 0;
        /* a bash script where there is bash, else sh (busybox templates) */
        spec.argv = calloc(6, sizeof *spec.argv);
        if (spec.argv) {
                spec.argv[0] = strdup("/bin/sh");
                spec.argv[1] = strdup("-c");
                spec.argv[2] = strdup("if command -v bash >/dev/null 2>&1; then exec bash -c \"$1\"; fi; exec sh -c \"$1\"");
                spec.argv[3] = strdup("patch");
                spec.argv[4] = strdup(json_string_value(json_object_get(patch, "script")) ?: "");
                spec.argc = 5;
        }
        if (!spec.argv || !spec.argv[0] || !spec.argv[1] || !spec.argv[2] || !spec.argv[3] || !spec.argv[4])
                r = -ENOMEM;
        else
                r = manager_exec(p->m, p->id, &spec, &cb, p, &p->h, &err);
        exec_spec_release(&spec);
        if (r < 0) {
                struct exec_result none = { 0 };

                if (err.code == 0)
                        (void)sbx_err_set(&err, r, "out of memory");
                patch_exec_done(p, r, &err, &none);
        }
}

static void created_from_snapshot(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct patch_run *p = data;

        if (r < 0) {
                p->done(p->data, r, err, NULL);
                patch_run_free(p);
                return;
        }
        p->sandbox = result;
        snprintf(p->id, sizeof p->id, "%s", json_string_value(json_object_get(result, "id")) ?: "");
        patch_next(p);
}

/* The fields the request left out come from the snapshot's sandbox (its env goes first). */
static int spec_inherit(struct sandbox_spec *spec, json_t *stored, struct sbx_err *err)
{
        _cleanup_(sandbox_spec_release) struct sandbox_spec base = { 0 };
        json_t *j = json_deep_copy(stored);
        int r;

        if (!j)
                return -ENOMEM;
        json_object_del(j, "name");
        json_object_del(j, "snapshot");
        json_object_del(j, "layers");
        r = sandbox_spec_parse(j, &base, err);
        json_decref(j);
        if (r < 0)
                return r;
        if (!(spec->given & SPEC_GIVEN_RESOURCES)) {
                spec->cpu = base.cpu;
                spec->memory_mib = base.memory_mib;
                spec->pids = base.pids;
        }
        if (!(spec->given & SPEC_GIVEN_TIMEOUT)) {
                spec->lifetime_s = base.lifetime_s;
                spec->idle_s = base.idle_s;
                spec->paused_s = base.paused_s;
                spec->execution_s = base.execution_s;
        }
        if (!(spec->given & SPEC_GIVEN_WORKDIR))
                memcpy(spec->workdir, base.workdir, sizeof spec->workdir);
        if (base.n_env > 0) {
                char **env = calloc(base.n_env + spec->n_env + 1, sizeof *env);

                if (!env)
                        return -ENOMEM;
                /* later entries win: the snapshot's first, the request's after */
                memcpy(env, base.env, base.n_env * sizeof *env);
                memcpy(env + base.n_env, spec->env, spec->n_env * sizeof *env);
                free(spec->env);
                free(base.env);
                base.env = NULL;
                spec->env = env;
                spec->n_env += base.n_env;
                base.n_env = 0;
        }
        return 0;
}

int snapshots__create(struct manager *m, struct sandbox_spec *spec, manager_done_fn done, void *data,
                      struct sbx_err *err)
{
        _cleanup_free_ struct template_info *tmpl = calloc(1, sizeof *tmpl);
        struct snapshot_ref s;
        struct patch_run *p;
        int r;

        if (!tmpl)
                return -ENOMEM;
        r = snapshots__resolve(m, spec->snapshot, &s, err);
        if (r < 0)
                return r;
        if ((spec->given & SPEC_GIVEN_TEMPLATE) && strcmp(spec->template_name, s.template_name) != 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'template' is '%s' but snapshot '%s' was taken of a '%s' sandbox; leave "
                                    "'template' out",
                                    spec->template_name, s.id, s.template_name);
        r = spec_inherit(spec, s.spec, err);
        if (r < 0)
                return r;
        snprintf(spec->template_name, sizeof spec->template_name, "%s", s.template_name);
        snprintf(spec->snapshot, sizeof spec->snapshot, "%s", s.id);
        /* the template gives what is not a layer (the host template's binds and skeleton); the
         * layers are the ones the snapshot was taken on, whatever the template is now */
        if (template_lookup(m->templates, s.template_name, tmpl, NULL) < 0) {
                memset(tmpl, 0, sizeof *tmpl);
                snprintf(tmpl->name, sizeof tmpl->name, "%s", s.template_name);
                if (s.n_layers == 0)
                        return sbx_err_setr(err, -SBX_E_CONFLICT, "template_not_found",
                                            "template '%s' of snapshot '%s' is gone", s.template_name, s.id);
        }
        if (s.n_layers > 0 || tmpl->n_layers > 0) {
                for (size_t i = 0; i < s.n_layers; i++)
                        snprintf(tmpl->layers[i], SBX_LAYER_DIGEST_MAX, "%s", s.layers[i]);
                tmpl->n_layers = s.n_layers;
        }
        p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        p->m = m;
        p->done = done;
        p->data = data;
        p->patches = json_incref(s.patches);
        r = manager__create_from(m, spec, tmpl, created_from_snapshot, p, err);
        if (r < 0)
                patch_run_free(p);
        return r;
}

/* ---------- fork ---------- */

struct fork_job {
        struct manager *m;
        manager_done_fn done;
        void *data;
        char parent[SBX_ID_MAX];
        char base_id[SBX_ID_MAX];
        char name[SBX_MAX_NAME + 1];
        json_t *spec;                 /* the parent's spec (canonical JSON) */
        json_t *metadata;
        unsigned count, pending;
        json_t *sandboxes, *errors;
        struct sbx_err first_err;
        uint64_t t0, frozen_us;
};

static void fork_free(struct fork_job *f)
{
        json_decref(f->spec);
        json_decref(f->metadata);
        json_decref(f->sandboxes);
        json_decref(f->errors);
        free(f);
}

static void fork_finish(struct fork_job *f)
{
        if (json_array_size(f->sandboxes) == 0) {
                /* nothing stands on the base: it goes */
                (void)manager_snapshot_delete(f->m, f->base_id, NULL);
                f->done(f->data, f->first_err.code ? f->first_err.code : -SBX_E_INTERNAL, &f->first_err, NULL);
        } else
                f->done(f->data, 0, NULL,
                        json_pack("{s:s,s:s,s:O,s:O,s:f,s:f}", "parentId", f->parent, "snapshotId", f->base_id,
                                  "sandboxes", f->sandboxes, "errors", f->errors, "durationMs",
                                  (now_usec() - f->t0) / 1000.0, "frozenMs", f->frozen_us / 1000.0));
        fork_free(f);
}

static void fork_child_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct fork_job *f = data;

        if (r < 0) {
                if (f->first_err.code == 0 && err)
                        f->first_err = *err;
                (void)json_array_append_new(f->errors,
                                            json_pack("{s:s,s:s}", "code",
                                                      err && err->reason[0] ? err->reason : "internal", "message",
                                                      err ? err->msg : ""));
        } else if (result)
                (void)json_array_append_new(f->sandboxes, result);
        if (--f->pending == 0)
                fork_finish(f);
}

/* The spec of fork number i (from 0) of f: the parent's, on the fork base, named name-i. */
static int fork_spec(struct fork_job *f, unsigned i, struct sandbox_spec *spec, struct sbx_err *err)
{
        json_t *j = json_deep_copy(f->spec);
        int r;

        if (!j)
                return -ENOMEM;
        json_object_del(j, "name");
        json_object_del(j, "layers");
        json_object_del(j, "template");
        json_object_set_new(j, "snapshot", json_string(f->base_id));
        json_object_set(j, "metadata", f->metadata);
        if (f->name[0]) {
                char n[SBX_MAX_NAME + 16];

                if (f->count == 1)
                        snprintf(n, sizeof n, "%s", f->name);
                else
                        snprintf(n, sizeof n, "%.*s-%u", SBX_MAX_NAME - 8, f->name, i + 1);
                json_object_set_new(j, "name", json_string(n));
        }
        r = sandbox_spec_parse(j, spec, err);
        json_decref(j);
        /* the parent's settings are the child's: nothing to inherit from the base twice */
        spec->given = SPEC_GIVEN_RESOURCES | SPEC_GIVEN_TIMEOUT | SPEC_GIVEN_WORKDIR;
        return r;
}

static void fork_snapshot_done(void *data, int r, const struct sbx_err *err, struct snapshot *s)
{
        struct fork_job *f = data;

        if (r < 0) {
                f->done(f->data, r, err, NULL);
                fork_free(f);
                return;
        }
        snprintf(f->base_id, sizeof f->base_id, "%s", snapshots__id(s));
        f->frozen_us = snapshots__frozen_us(s);
        f->pending = f->count + 1; /* + 1: the loop below holds the job open */
        for (unsigned i = 0; i < f->count; i++) {
                struct sandbox_spec spec = { 0 };
                struct sbx_err e = { 0 };
                int k = fork_spec(f, i, &spec, &e);

                if (k >= 0)
                        k = snapshots__create(f->m, &spec, fork_child_done, f, &e);
                sandbox_spec_release(&spec);
                if (k < 0) {
                        if (e.code == 0)
                                (void)sbx_err_set(&e, k, "cannot create fork %u: %s", i + 1, strerror(-k));
                        fork_child_done(f, k, &e, NULL);
                }
        }
        fork_child_done(f, 0, NULL, NULL);
}

int manager_fork(struct manager *m, const char *id, unsigned count, const char *name, bool memory,
                 manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct fork_job *f;
        json_t *meta;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (count < 1 || count > SBX_MAX_FORK)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'count' must be between 1 and %d",
                                    SBX_MAX_FORK);
        if (name && name[0] && !sandbox_name_valid(name))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'name' must be [A-Za-z0-9._-] and must not start with '.' or '-'");
        if (memory)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "memory_unavailable",
                                    "a fork with memory (CRIU) is not supported yet; fork without 'memory' "
                                    "to copy the filesystem only");
        if (m->n_live + count > m->max_sandboxes)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "at most %u sandboxes may exist at once",
                                    m->max_sandboxes);
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        f->m = m;
        f->done = done;
        f->data = data;
        f->count = count;
        f->t0 = now_usec();
        snprintf(f->parent, sizeof f->parent, "%s", sb->rec.id);
        snprintf(f->name, sizeof f->name, "%s", name ? name : "");
        f->spec = sandbox_spec_to_json(&sb->spec);
        meta = json_loads(sb->rec.metadata_json ? sb->rec.metadata_json : "{}", 0, NULL);
        f->metadata = meta ? meta : json_object();
        f->sandboxes = json_array();
        f->errors = json_array();
        if (!f->spec || !f->sandboxes || !f->errors) {
                r = -ENOMEM;
                goto fail;
        }
        r = snapshots__take(m, id, "fork", NULL, NULL, NULL, fork_snapshot_done, f, err);
        if (r >= 0)
                return 0;
fail:
        fork_free(f);
        return r;
}

/* ---------- checkpoints: restore in place ---------- */

struct restore_job {
        uv_work_t work;
        struct op *op;
        char src[PATH_MAX + 64];      /* the checkpoint's dir */
        uid_t id_base;                /* its owner ids (the sandbox's own, unless its slot changed) */
        uid_t uid_base;
        bool was_running;
        int r;
        struct sbx_err err;
};

/* Swap <dir>/upper for a copy of the checkpoint. Crash-safe with snapshots__recover_dir():
 * upper.new is made whole first, then upper -> upper.old, upper.new -> upper, upper.old removed. */
static void restore_work(uv_work_t *w)
{
        struct restore_job *j = w->data;
        struct sandbox *sb = j->op->sb;

        j->r = storage__restore(sb->m, j->src, sb->dir, j->id_base, j->uid_base, &j->err);
}

static void restore_done(uv_work_t *w, int status)
{
        struct restore_job *j = w->data;
        struct op *op = j->op;
        struct sandbox *sb = op->sb;
        struct manager *m = sb->m;
        manager_done_fn done = op->done;
        void *data = op->data;
        struct sbx_err err = { 0 };
        int r = j->r;

        m->pending_launches--;
        sandbox_ref(sb);
        if (sb->op == op)
                sb->op = NULL;
        sandbox__set_state(sb, SANDBOX_STOPPED, r < 0 ? j->err.msg : "restored from a checkpoint");
        if (r >= 0)
                manager__event(m, sb->rec.id, "checkpoint.restored", json_pack("{s:s}", "checkpoint", op->reason));
        if (r < 0)
                done(data, r, &j->err, NULL);
        else if (!j->was_running)
                done(data, 0, NULL, sandbox__to_json(sb));
        else if ((r = manager_start(m, sb->rec.id, done, data, &err)) < 0)
                done(data, r, &err, NULL);
        sandbox_unref(op->sb);
        free(op);
        free(j);
        sandbox_unref(sb);
}

/* manager__after_stopped() of OP_RESTORE, or straight from the request for a stopped sandbox. */
void snapshots__restore_files(struct op *op)
{
        struct sandbox *sb = op->sb;
        struct restore_job *j = op->restore;
        int r;

        j->op = op;
        j->work.data = j;
        r = uv_queue_work(sb->m->loop, &j->work, restore_work, restore_done);
        if (r < 0) {
                j->r = sbx_err_set(&j->err, -EIO, "cannot queue the restore: %s", uv_strerror(r));
                sb->m->pending_launches++;
                restore_done(&j->work, 0);
                return;
        }
        sb->m->pending_launches++;
}

int manager_checkpoint_restore(struct manager *m, const char *id, const char *name, manager_done_fn done, void *data,
                               struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct restore_job *j;
        struct op *op;
        char sid[SBX_ID_MAX];
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        r = snapshots__checkpoint_id(m, id, name, sid, sizeof sid, err);
        if (r < 0)
                return r;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state != SANDBOX_RUNNING && sb->rec.state != SANDBOX_PAUSED && sb->rec.state != SANDBOX_STOPPED &&
            sb->rec.state != SANDBOX_HIBERNATED)
                return manager__busy_error(sb, err);
        r = files__before_start(sb, err);
        if (r < 0)
                return r;
        j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        snprintf(j->src, sizeof j->src, "%s/%s", m->snapshots_dir, sid);
        j->uid_base = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE;
        j->id_base = snapshots__id_base(m, sid);
        j->was_running = sb->rec.state == SANDBOX_RUNNING || sb->rec.state == SANDBOX_PAUSED;
        op = op_new(sb, OP_RESTORE, done, data);
        if (!op) {
                free(j);
                return -ENOMEM;
        }
        op->restore = j;
        snprintf(op->reason, sizeof op->reason, "%s", name);
        if (j->was_running) {
                sandbox__set_state(sb, SANDBOX_STOPPING, "restoring a checkpoint");
                manager__begin_stop(op);
        } else
                snapshots__restore_files(op);
        return 0;
}
