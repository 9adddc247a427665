// SPDX-License-Identifier: Apache-2.0
/*
 * The sandbox manager: lifecycle state machine (create, stop, start, delete), timers, the watch on
 * each sandbox's PID 1 and its sbx-init control connection. Runs on the loop thread; namespace
 * setup and directory removal run on the libuv worker pool. See manager.h.
 */
#include "manager.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "core/metrics.h"
#include "manager-internal.h"
#include "sandbox/seccomp.h"

#define TEARDOWN_WAIT_MS 3000     /* how long a stop waits for the sandbox's processes to vanish */
#define TEARDOWN_POLL_MS 1
#define TEARDOWN_FALLBACK_MS 50   /* first check if PID 1's pidfd does not report its exit */

static void manager_maybe_free(struct manager *m);

void manager_maybe_free_pub(struct manager *m)
{
        manager_maybe_free(m);
}

static unsigned hash_id(const char *id)
{
        unsigned h = 2166136261u;

        for (; *id; id++)
                h = (h ^ (unsigned char)*id) * 16777619u;
        return h % SANDBOX_HASH_SIZE;
}

struct sandbox *manager__find(struct manager *m, const char *id)
{
        for (struct sandbox *s = m->table[hash_id(id)]; s; s = s->hnext)
                if (strcmp(s->rec.id, id) == 0)
                        return s;
        return NULL;
}

void manager__slot_set(struct manager *m, uint32_t slot, bool used)
{
        if (slot >= SBX_MAX_UID_SLOTS)
                return;
        if (used)
                m->slots[slot / 8] |= (unsigned char)(1u << (slot % 8));
        else
                m->slots[slot / 8] &= (unsigned char)~(1u << (slot % 8));
}

uv_loop_t *manager_loop(struct manager *m)
{
        return m->loop;
}

int manager__slot_alloc(struct manager *m, uint32_t *ret)
{
        for (uint32_t i = 0; i < SBX_MAX_UID_SLOTS; i++)
                if (!(m->slots[i / 8] & (1u << (i % 8)))) {
                        manager__slot_set(m, i, true);
                        *ret = i;
                        return 0;
                }
        return -ENOSPC;
}

void sandbox_ref(struct sandbox *sb)
{
        sb->refs++;
}

void sandbox_unref(struct sandbox *sb)
{
        if (!sb || --sb->refs > 0)
                return;
        files__sandbox_fini(sb);
        sandbox_record_release(&sb->rec);
        sandbox_spec_release(&sb->spec);
        free(sb->layers);
        free(sb->chain);
        free(sb);
}

char *manager__spec_text(const struct sandbox_spec *spec, const char (*layers)[SBX_LAYER_DIGEST_MAX], size_t n_layers)
{
        json_t *j = sandbox_spec_to_json(spec), *arr = json_array();
        char *text = NULL;

        for (size_t i = 0; arr && i < n_layers; i++)
                (void)json_array_append_new(arr, json_string(layers[i]));
        if (j && arr && n_layers > 0)
                json_object_set(j, "layers", arr);
        if (j && arr)
                text = json_dump_compact(j);
        json_decref(arr);
        json_decref(j);
        return text;
}

/* Take "layers" out of the stored spec into sb and hold them in the layer store. */
static int sandbox_layers_take(struct sandbox *sb, json_t *spec_json, struct sbx_err *err)
{
        json_t *arr = json_object_get(spec_json, "layers"), *v;
        size_t i, n = json_array_size(arr);

        if (arr && (!json_is_array(arr) || n > SBX_MAX_IMAGE_LAYERS))
                return sbx_err_set(err, -SBX_E_INTERNAL, "stored spec of '%s' has bad layers", sb->rec.id);
        if (n > 0) {
                sb->layers = calloc(n, sizeof *sb->layers);
                if (!sb->layers)
                        return -ENOMEM;
        }
        json_array_foreach (arr, i, v) {
                const char *d = json_string_value(v);

                if (!d || !layer_digest_valid(d))
                        return sbx_err_set(err, -SBX_E_INTERNAL, "stored spec of '%s' has bad layers", sb->rec.id);
                snprintf(sb->layers[i], SBX_LAYER_DIGEST_MAX, "%s", d);
        }
        sb->n_layers = n;
        json_object_del(spec_json, "layers");
        return 0;
}

static void sandbox_layers_hold(struct sandbox *sb)
{
        struct layer_store *ls = template_store_layers(sb->m->templates);
        size_t i;

        for (i = 0; i < sb->n_layers; i++)
                if (layer_hold(ls, sb->layers[i], NULL) < 0)
                        break;
        if (i == sb->n_layers) {
                sb->layers_held = true;
                return;
        }
        /* a layer is missing: the sandbox cannot start again; keep nothing held */
        while (i-- > 0)
                layer_release(ls, sb->layers[i]);
}

static void sandbox_layers_release(struct sandbox *sb)
{
        struct layer_store *ls = template_store_layers(sb->m->templates);

        if (!sb->layers_held)
                return;
        sb->layers_held = false;
        for (size_t i = 0; i < sb->n_layers; i++)
                layer_release(ls, sb->layers[i]);
}

int manager__launch_template(struct manager *m, struct sandbox *sb, struct template_info *ret, struct sbx_err *err)
{
        if (sb->n_layers == 0)
                return template_lookup(m->templates, sb->rec.template_name, ret, err);
        if (!sb->layers_held)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "invalid_state",
                                    "a layer of sandbox '%s' is missing from the layer store", sb->rec.id);
        memset(ret, 0, sizeof *ret);
        snprintf(ret->name, sizeof ret->name, "%s", sb->rec.template_name);
        for (size_t i = 0; i < sb->n_layers; i++)
                snprintf(ret->layers[i], SBX_LAYER_DIGEST_MAX, "%s", sb->layers[i]);
        ret->n_layers = sb->n_layers;
        return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
        sandbox_unref(h->data);
}

static void close_handle(struct sandbox *sb, uv_handle_t *h)
{
        if (uv_is_closing(h))
                return;
        sandbox_ref(sb);
        h->data = sb;
        uv_close(h, on_handle_closed);
}

int sandbox__new(struct manager *m, const struct sandbox_record *rec, struct sandbox **ret, struct sbx_err *err)
{
        _cleanup_free_ struct sandbox *sb = calloc(1, sizeof *sb);
        json_t *spec_json;
        json_error_t jerr;
        int r;

        if (!sb)
                return -ENOMEM;
        sb->refs = 1;
        sb->m = m;
        files__sandbox_init(sb);
        sb->pidfd = -EBADF;
        sb->ctl_fd = -EBADF;
        r = sandbox_record_copy(&sb->rec, rec);
        if (r < 0)
                return r;
        spec_json = json_loads(rec->spec_json ? rec->spec_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
        if (spec_json) {
                /* the stored canonical form carries template and name too; parse the rest */
                json_object_del(spec_json, "template");
                json_object_del(spec_json, "name");
                r = sandbox_layers_take(sb, spec_json, err);
                if (r >= 0)
                        r = sandbox_spec_parse(spec_json, &sb->spec, err);
                json_decref(spec_json);
                if (r >= 0 && sb->spec.snapshot[0])
                        r = snapshots__chain(m, sb->spec.snapshot, &sb->chain, &sb->n_chain, err);
        } else
                r = sbx_err_set(err, -SBX_E_INTERNAL, "stored spec of '%s' is not JSON: %s", rec->id, jerr.text);
        if (r < 0) {
                sandbox_record_release(&sb->rec);
                sandbox_spec_release(&sb->spec);
                free(sb->layers);
                return r;
        }
        if ((size_t)snprintf(sb->dir, sizeof sb->dir, "%s/%.*s", m->sandboxes_dir, SBX_ID_MAX, rec->id) >=
            sizeof sb->dir) {
                sandbox_record_release(&sb->rec);
                sandbox_spec_release(&sb->spec);
                free(sb->layers);
                free(sb->chain);
                return sbx_err_set(err, -ENAMETOOLONG, "sandbox dir path too long");
        }
        sandbox_layers_hold(sb);
        uv_timer_init(m->loop, &sb->lifetime_timer);
        uv_timer_init(m->loop, &sb->idle_timer);
        uv_timer_init(m->loop, &sb->wait_timer);
        uv_timer_init(m->loop, &sb->paused_timer);
        sb->lifetime_timer.data = sb->idle_timer.data = sb->wait_timer.data = sb->paused_timer.data = sb;
        manager__slot_set(m, rec->uid_slot, true);
        sb->removed = true; /* until sandbox__insert() */
        *ret = TAKE_PTR(sb);
        return 0;
}

void sandbox__insert(struct sandbox *sb)
{
        struct manager *m = sb->m;
        unsigned h = hash_id(sb->rec.id);

        sb->hnext = m->table[h];
        m->table[h] = sb;
        m->n_live++;
        sb->removed = false;
}

int manager__adopt_record(struct manager *m, const struct sandbox_record *rec, struct sandbox **ret,
                          struct sbx_err *err)
{
        int r = sandbox__new(m, rec, ret, err);

        if (r >= 0)
                sandbox__insert(*ret);
        return r;
}

/* Out of the table and the slot map; handles closed; freed when the last ref goes. */
void sandbox__remove(struct sandbox *sb)
{
        sandbox__remove_keep_slot(sb);
        manager__slot_set(sb->m, sb->rec.uid_slot, false);
}

void sandbox__remove_keep_slot(struct sandbox *sb)
{
        struct manager *m = sb->m;
        struct sandbox **pp = &m->table[hash_id(sb->rec.id)];

        if (sb->closed)
                return;
        sb->closed = true;
        files__sandbox_remove(sb);
        code__sandbox_remove(sb);
        session__sandbox_remove(sb);
        process__sandbox_remove(sb);
        sandbox_layers_release(sb);
        if (!sb->removed) {
                for (; *pp; pp = &(*pp)->hnext)
                        if (*pp == sb) {
                                *pp = sb->hnext;
                                break;
                        }
                sb->removed = true;
                m->n_live--;
        }
        sandbox__close_ctl(sb);
        if (sb->pidfd_poll_init)
                close_handle(sb, (uv_handle_t *)&sb->pidfd_poll);
        sb->pidfd = safe_close(sb->pidfd);
        close_handle(sb, (uv_handle_t *)&sb->lifetime_timer);
        close_handle(sb, (uv_handle_t *)&sb->idle_timer);
        close_handle(sb, (uv_handle_t *)&sb->wait_timer);
        close_handle(sb, (uv_handle_t *)&sb->paused_timer);
        sandbox_unref(sb);
}

int sandbox__save(struct sandbox *sb, struct sbx_err *err)
{
        sb->rec.updated_ms = now_realtime_ms();
        return sb->m->store->ops->sandbox_update(sb->m->store, &sb->rec, err);
}

void sandbox__set_state(struct sandbox *sb, enum sandbox_state st, const char *reason)
{
        struct sbx_err err = { 0 };
        enum sandbox_state from = sb->rec.state;

        sb->rec.state = st;
        snprintf(sb->rec.state_reason, sizeof sb->rec.state_reason, "%s", reason ? reason : "");
        /* a paused sandbox keeps its processes, so its watchers stay */
        if (st != SANDBOX_RUNNING && st != SANDBOX_PAUSED)
                files__not_running(sb, reason);
        if (sb->pooled)
                return; /* no row until it is handed out */
        if (sandbox__save(sb, &err) < 0)
                /* the in-memory state stays authoritative; the next save retries */
                manager__event(sb->m, sb->rec.id, "store.error", json_pack("{s:s}", "message", err.msg));
        if (from != st)
                manager__event_state(sb, from, reason);
}

json_t *sandbox__to_json(const struct sandbox *sb)
{
        const struct sandbox_record *r = &sb->rec;
        json_t *o = json_object(), *spec = sandbox_spec_to_json(&sb->spec), *meta;

        if (!o || !spec) {
                json_decref(o);
                json_decref(spec);
                return NULL;
        }
        json_object_set_new(o, "id", json_string(r->id));
        json_object_set_new(o, "name", r->name[0] ? json_string(r->name) : json_null());
        json_object_set_new(o, "state", json_string(sandbox_state_to_string(r->state)));
        json_object_set_new(o, "stateReason", r->state_reason[0] ? json_string(r->state_reason) : json_null());
        json_object_set_new(o, "template", json_string(r->template_name));
        json_object_set_new(o, "createdAt", json_time_ms(r->created_ms));
        json_object_set_new(o, "startedAt", json_time_ms(r->started_ms));
        json_object_set_new(o, "updatedAt", json_time_ms(r->updated_ms));
        json_object_set(o, "env", json_object_get(spec, "env"));
        json_object_set(o, "workdir", json_object_get(spec, "workdir"));
        meta = json_loads(r->metadata_json ? r->metadata_json : "{}", 0, NULL);
        json_object_set_new(o, "metadata", meta ? meta : json_object());
        json_object_set(o, "resources", json_object_get(spec, "resources"));
        json_object_set(o, "timeout", json_object_get(spec, "timeout"));
        json_object_set_new(o, "snapshot", sb->n_chain ? json_string(sb->chain[0]) : json_null());
        lifecycle__json(sb, o);
        json_decref(spec);
        return o;
}

/* ---------- completion of operations ---------- */

void manager__op_finish(struct op *op, int r, const struct sbx_err *err, json_t *result)
{
        struct sandbox *sb = op->sb;

        if (sb->op == op)
                sb->op = NULL;
        if (op->done)
                op->done(op->data, r, err, result);
        else
                json_decref(result);
        sandbox_unref(sb);
        free(op);
}

void manager__op_finish_sandbox(struct op *op)
{
        manager__op_finish(op, 0, NULL, sandbox__to_json(op->sb));
}

/* ---------- running sandboxes: pidfd and control connection ---------- */

static void on_pid1_exit(uv_poll_t *h, int status, int events);

static void on_ctl_readable(uv_poll_t *h, int status, int events)
{
        struct sandbox *sb = h->data;

        sandbox_ref(sb);
        for (unsigned n = 0; n < 64 && sb->ctl_fd >= 0; n++) {
                struct init_client_msg msg;
                int r;

                init_client_msg_init(&msg);
                r = init_client_recv(sb->ctl_fd, &msg);
                if (r == -EAGAIN)
                        break;
                if (r < 0) {
                        /* sbx-init went away or broke the protocol: in-flight execs cannot finish */
                        sandbox__close_ctl(sb);
                        exec__fail_all(sb, r == -EBADMSG ? "sbx-init sent a malformed message"
                                                         : "the sandbox's init process went away");
                        /* a stop or delete kills sbx-init first: that is no mystery */
                        process__sandbox_stopped(sb, !sb->op || (sb->op->kind != OP_STOP &&
                                                                 sb->op->kind != OP_DELETE &&
                                                                 sb->op->kind != OP_HIBERNATE &&
                                                                 sb->op->kind != OP_RESTORE));
                        break;
                }
                if (!process__on_ctl_message(sb, &msg))
                        exec__on_ctl_message(sb, &msg);
                init_client_msg_release(&msg);
        }
        sandbox_unref(sb);
}

void sandbox__close_ctl(struct sandbox *sb)
{
        if (sb->ctl_poll_init) {
                uv_poll_stop(&sb->ctl_poll);
                close_handle(sb, (uv_handle_t *)&sb->ctl_poll);
                sb->ctl_poll_init = false;
        }
        sb->ctl_fd = safe_close(sb->ctl_fd);
}

int sandbox__attach_running(struct sandbox *sb, int pidfd, struct sbx_err *err)
{
        struct manager *m = sb->m;
        _cleanup_close_ int netns = -EBADF;
        char path[64];
        int r;

        sb->pidfd = pidfd;
        r = uv_poll_init(m->loop, &sb->pidfd_poll, sb->pidfd);
        if (r < 0)
                return sbx_err_set(err, -EIO, "cannot watch sandbox PID 1: %s", uv_strerror(r));
        sb->pidfd_poll_init = true;
        sb->pidfd_poll.data = sb;
        uv_poll_start(&sb->pidfd_poll, UV_READABLE, on_pid1_exit);

        snprintf(path, sizeof path, "/proc/%lld/ns/net", (long long)sb->rec.init_pid);
        netns = open(path, O_RDONLY | O_CLOEXEC);
        if (netns < 0)
                return sbx_err_set(err, -errno, "cannot open the sandbox's network namespace: %m");
        r = init_client_connect(netns, &sb->ctl_fd);
        if (r < 0)
                return sbx_err_set(err, r, "cannot connect to sbx-init: %s", strerror(-r));
        r = uv_poll_init(m->loop, &sb->ctl_poll, sb->ctl_fd);
        if (r < 0)
                return sbx_err_set(err, -EIO, "cannot watch the sbx-init connection: %s", uv_strerror(r));
        sb->ctl_poll_init = true;
        sb->ctl_poll.data = sb;
        uv_poll_start(&sb->ctl_poll, UV_READABLE | UV_DISCONNECT, on_ctl_readable);
        /* which protocol it speaks (terminals and users need version 2); 0 until it answers */
        sb->init_version = 0;
        (void)init_client_send_hello(sb->ctl_fd);

        sb->n_free_groups = 0; /* a fresh cgroup tree after every (re)start */
        if (cgroup_oom_kills(&m->cg, sb->rec.id, &sb->oom_seen) < 0)
                sb->oom_seen = 0;
        sandbox__start_timers(sb);
        return 0;
}

/* A PID 1 that was killed but has not exited yet: reap it when its pidfd says so. */
struct reaper {
        uv_poll_t poll;
        int pidfd;
};

static void on_reaper_closed(uv_handle_t *h)
{
        struct reaper *rp = h->data;

        safe_close(rp->pidfd);
        free(rp);
}

static void on_reaper_ready(uv_poll_t *h, int status, int events)
{
        struct reaper *rp = h->data;
        siginfo_t si = { 0 };

        (void)waitid((idtype_t)3 /* P_PIDFD */, (id_t)rp->pidfd, &si, WEXITED | WNOHANG);
        uv_poll_stop(h);
        uv_close((uv_handle_t *)h, on_reaper_closed);
}

/* Reap PID 1 if it is our child (after an sbxd restart it is not: ECHILD, nothing to do); if it
 * has not exited yet, hand the pidfd to a reaper so no zombie stays behind. Takes the pidfd. */
static void reap_pid1(struct manager *m, int pidfd)
{
        siginfo_t si = { 0 };
        struct reaper *rp;

        if (pidfd < 0)
                return;
        if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid != 0 ||
            !(rp = calloc(1, sizeof *rp))) {
                safe_close(pidfd);
                return;
        }
        rp->pidfd = pidfd;
        rp->poll.data = rp;
        if (uv_poll_init(m->loop, &rp->poll, pidfd) < 0) {
                safe_close(pidfd);
                free(rp);
                return;
        }
        uv_poll_start(&rp->poll, UV_READABLE, on_reaper_ready);
}

static void detach_running(struct sandbox *sb)
{
        if (sb->pidfd_poll_init) {
                uv_poll_stop(&sb->pidfd_poll);
                close_handle(sb, (uv_handle_t *)&sb->pidfd_poll);
                sb->pidfd_poll_init = false;
        }
        reap_pid1(sb->m, TAKE_FD(sb->pidfd));
        sandbox__close_ctl(sb);
        sandbox__stop_timers(sb);
        sb->rec.init_pid = 0;
        sb->rec.init_start_time = 0;
}

void sandbox__teardown_sync(struct sandbox *sb)
{
        const struct cgroup_root *cg = &sb->m->cg;
        uint64_t deadline = now_usec() + TEARDOWN_WAIT_MS * 1000ULL;

        (void)cgroup_kill(cg, sb->rec.id);
        if (sb->rec.init_pid > 0) {
                int fd = -EBADF;
                if (proc_pidfd_verified((pid_t)sb->rec.init_pid, sb->rec.init_start_time, &fd) == 0) {
                        (void)syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
                        fd = safe_close(fd);
                }
        }
        while (cgroup_populated(cg, sb->rec.id) && now_usec() < deadline)
                usleep(TEARDOWN_POLL_MS * 1000);
        exec__fail_all(sb, "the sandbox stopped");
        process__sandbox_stopped(sb, false);
        detach_running(sb);
        (void)cgroup_destroy(cg, sb->rec.id);
}

/* ---------- worker-pool steps ---------- */

void manager__work_launch(uv_work_t *w)
{
        struct op *op = w->data;
        struct sandbox *sb = op->sb;
        struct manager *m = sb->m;
        uid_t uid = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE;
        struct cgroup_limits lim = {
                .memory_bytes = sb->spec.memory_mib << 20,
                .cpu = sb->spec.cpu,
                .pids = sb->spec.pids,
        };
        _cleanup_free_ char **lowers = NULL;
        uint32_t *bases = NULL;
        size_t n_lowers = 0;
        struct sandbox_launch l = {
                .id = sb->rec.id,
                .dir = sb->dir,
                .uid_base = uid,
                .init_exe_fd = m->init_exe_fd,
                .seccomp_fd = m->seccomp_fd,
                .cg = &m->cg,
                .cg_name = sb->rec.id,
                .tmp_size = lim.memory_bytes / 2,
                .nproc = lim.pids,
        };

        for (size_t i = 0; i < op->tmpl.n_binds && i < SBX_SANDBOX_MAX_BINDS; i++) {
                l.binds[i].source = op->tmpl.binds[i].source;
                l.binds[i].target = op->tmpl.binds[i].target;
                l.n_binds++;
        }
        uint64_t t = now_usec();
        op->us_queue = (uint32_t)(t - op->t0);
        op->r = manager__lower_paths(sb, &op->tmpl, &lowers, &bases, &n_lowers);
        if (op->r < 0)
                (void)sbx_err_set(&op->err, op->r, "cannot resolve the layers of template '%s'", op->tmpl.name);
        l.lowers = (const char *const *)lowers;
        l.lower_bases = bases;
        l.n_lowers = n_lowers;
        if (op->r >= 0)
                op->r = storage__prepare(m, sb->dir, uid, &op->err);
        op->us_dirs = (uint32_t)(now_usec() - t);
        t = now_usec();
        if (op->r >= 0)
                op->r = cgroup_create(&m->cg, sb->rec.id, &lim, uid, &op->err);
        op->us_cgroup = (uint32_t)(now_usec() - t);
        if (op->r >= 0)
                op->r = sandbox_launch(&l, &op->proc, &op->err);
        if (op->r < 0) {
                (void)cgroup_destroy(&m->cg, sb->rec.id);
                if (op->kind == OP_CREATE || op->kind == OP_POOL)
                        storage__remove_dir(sb->m, sb->dir);
        }
}

void manager__after_launch(uv_work_t *w, int status)
{
        struct op *op = w->data;
        struct sandbox *sb = op->sb;
        struct manager *m = sb->m;
        uint64_t usec = now_usec() - op->t0;
        int r = op->r;

        m->pending_launches--;
        if (m->freeing)
                op->done = NULL; /* the API is gone: nobody to answer */
        if (m->freeing && r >= 0 && op->kind != OP_POOL) {
                /* sbxd is shutting down: the sandbox keeps running and recovery adopts it */
                sb->rec.init_pid = op->proc.pid;
                sb->rec.init_start_time = op->proc.start_time;
                sb->rec.state = SANDBOX_RUNNING;
                (void)sandbox__save(sb, NULL);
                safe_close(op->proc.pidfd);
                manager__op_finish(op, -ECANCELED, NULL, NULL);
                manager_maybe_free(m);
                return;
        }
        if (r >= 0) {
                sb->rec.init_pid = op->proc.pid;
                sb->rec.init_start_time = op->proc.start_time;
                sb->rec.started_ms = now_realtime_ms();
                r = sandbox__attach_running(sb, op->proc.pidfd, &op->err);
                if (r < 0) {
                        sandbox__teardown_sync(sb);
                        if (op->kind == OP_CREATE)
                                storage__remove_dir(sb->m, sb->dir);
                }
        }
        if (op->kind == OP_POOL) {
                if (r < 0) {
                        sandbox__teardown_sync(sb);
                        storage__remove_dir(sb->m, sb->dir);
                }
                pool__launched(sb, r, &op->err, usec);
                manager__op_finish(op, r, &op->err, NULL);
                manager_maybe_free(m);
                return;
        }
        if (op->kind == OP_CREATE)
                metrics_create(r >= 0, usec);
        if (r >= 0)
                log_debug("launch %s: %.2f ms (queue %.2f, dirs %.2f, cgroups %.2f, prepare %.2f, namespaces %.2f, "
                          "root+init %.2f)",
                          sb->rec.id, usec / 1000.0, op->us_queue / 1000.0, op->us_dirs / 1000.0,
                          op->us_cgroup / 1000.0, op->proc.us_prepare / 1000.0, op->proc.us_namespaces / 1000.0,
                          op->proc.us_root / 1000.0);
        if (r < 0) {
                sandbox__set_state(sb,
                                   op->kind == OP_CREATE ? SANDBOX_FAILED
                                   : op->kind == OP_WAKE ? SANDBOX_HIBERNATED
                                                         : SANDBOX_STOPPED,
                                   op->err.msg);
                sandbox__start_timers(sb);
                manager__op_finish(op, r, &op->err, NULL);
                return;
        }
        if (op->kind == OP_WAKE)
                lifecycle__woken(sb);
        sb->rec.active_ms = now_realtime_ms(); /* the idle clock starts with the sandbox */
        sandbox__set_state(sb, SANDBOX_RUNNING, NULL);
        sandbox__start_timers(sb);
        manager__op_finish_sandbox(op);
}

/* What is left of a deleted sandbox once its reply went out: cgroups and files, removed on the
 * worker pool. The manager waits for these before it frees itself. A crash in between is
 * handled by recovery (sweep_dirs). */
struct cleanup {
        uv_work_t work;
        struct manager *m;
        char id[SBX_ID_MAX];
        char dir[PATH_MAX];
        uint32_t uid_slot;        /* released when done: no process of the old sandbox holds it */
};

static void work_cleanup(uv_work_t *w)
{
        struct cleanup *c = w->data;
        uint64_t deadline = now_usec() + TEARDOWN_WAIT_MS * 1000ULL;

        /* the processes were killed before the reply; wait (bounded) until they are gone */
        while (cgroup_populated(&c->m->cg, c->id) && now_usec() < deadline)
                usleep(TEARDOWN_POLL_MS * 1000);
        (void)cgroup_destroy(&c->m->cg, c->id);
        storage__remove_dir(c->m, c->dir);
}

static void after_cleanup(uv_work_t *w, int status)
{
        struct cleanup *c = w->data;
        struct manager *m = c->m;

        m->pending_cleanups--;
        manager__slot_set(m, c->uid_slot, false);
        free(c);
        manager_maybe_free(m);
}

static void queue_cleanup(struct manager *m, const char *id, const char *dir, uint32_t uid_slot)
{
        struct cleanup *c = calloc(1, sizeof *c);

        if (c) {
                c->m = m;
                c->uid_slot = uid_slot;
                c->work.data = c;
                snprintf(c->id, sizeof c->id, "%s", id);
                snprintf(c->dir, sizeof c->dir, "%s", dir);
                if (uv_queue_work(m->loop, &c->work, work_cleanup, after_cleanup) == 0) {
                        m->pending_cleanups++;
                        return;
                }
                free(c);
        }
        /* no memory or no worker: do it here, late rather than never */
        (void)cgroup_destroy(&m->cg, id);
        storage__remove_dir(m, dir);
        manager__slot_set(m, uid_slot, false);
}


void manager__after_stopped(struct op *op)
{
        struct sandbox *sb = op->sb;

        exec__fail_all(sb, "the sandbox stopped");
        process__sandbox_stopped(sb, false);
        detach_running(sb);
        if (op->kind == OP_DELETE) {
                sb->rec.deleted_ms = now_realtime_ms();
                sandbox__set_state(sb, SANDBOX_DELETED, op->reason[0] ? op->reason : NULL);
                queue_cleanup(sb->m, sb->rec.id, sb->dir, sb->rec.uid_slot);
                sandbox__remove_keep_slot(sb);
                snapshots__sandbox_gone(sb->m, sb);
                manager__op_finish(op, 0, NULL, NULL);
                return;
        }
        (void)cgroup_destroy(&sb->m->cg, sb->rec.id);
        if (op->kind == OP_HIBERNATE) {
                lifecycle__hibernated(op);
                return;
        }
        if (op->kind == OP_RESTORE) {
                snapshots__restore_files(op);
                return;
        }
        sandbox__set_state(sb, SANDBOX_STOPPED, op->reason[0] ? op->reason : NULL);
        manager__op_finish_sandbox(op);
}

static void on_wait_empty(uv_timer_t *t)
{
        struct sandbox *sb = t->data;
        struct op *op = sb->op;

        if (!op)
                return;
        if (cgroup_populated(&sb->m->cg, sb->rec.id) && ++op->wait_rounds < TEARDOWN_WAIT_MS / TEARDOWN_POLL_MS) {
                uv_timer_start(&sb->wait_timer, on_wait_empty, TEARDOWN_POLL_MS, 0);
                return;
        }
        manager__after_stopped(op);
}

void manager__begin_stop(struct op *op)
{
        struct sandbox *sb = op->sb;

        (void)cgroup_kill(&sb->m->cg, sb->rec.id);
        if (sb->pidfd >= 0)
                (void)syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
        op->wait_rounds = 0;
        /* normally PID 1's pidfd wakes us (on_pid1_exit); the timer is the fallback */
        uv_timer_start(&sb->wait_timer, on_wait_empty, sb->pidfd_poll_init ? TEARDOWN_FALLBACK_MS : 0, 0);
}

/* PID 1 exited. Expected during stop/delete; otherwise the sandbox died under us. */
static void on_pid1_exit(uv_poll_t *h, int status, int events)
{
        struct sandbox *sb = h->data;
        struct op *op;

        uv_poll_stop(h);
        if (sb->op && (sb->op->kind == OP_STOP || sb->op->kind == OP_DELETE || sb->op->kind == OP_HIBERNATE ||
                       sb->op->kind == OP_RESTORE)) {
                /* PID 1 is gone, so is its pid namespace: check the cgroup right away */
                uv_timer_start(&sb->wait_timer, on_wait_empty, 0, 0);
                return;
        }
        if (sb->op)
                return; /* a launch in flight owns the state */
        op = calloc(1, sizeof *op);
        if (!op) {
                sandbox__teardown_sync(sb);
                sandbox__set_state(sb, SANDBOX_STOPPED, "the sandbox's init process exited");
                return;
        }
        op->kind = OP_STOP;
        op->sb = sb;
        sandbox_ref(sb);
        snprintf(op->reason, sizeof op->reason, "the sandbox's init process exited");
        sb->op = op;
        sandbox__set_state(sb, SANDBOX_STOPPING, op->reason);
        manager__begin_stop(op);
}

/* ---------- public operations ---------- */

struct op *op_new(struct sandbox *sb, enum op_kind kind, manager_done_fn done, void *data)
{
        struct op *op = calloc(1, sizeof *op);

        if (!op)
                return NULL;
        op->kind = kind;
        op->sb = sb;
        op->done = done;
        op->data = data;
        op->t0 = now_usec();
        op->work.data = op;
        sandbox_ref(sb);
        sb->op = op;
        return op;
}

/* NULL (and err filled) if there is no live sandbox with that id. */
struct sandbox *manager__lookup(struct manager *m, const char *id, struct sbx_err *err)
{
        struct sandbox *sb = sbx_id_valid("sbx_", id) ? manager__find(m, id) : NULL;

        if (!sb)
                (void)sbx_err_setr(err, -SBX_E_NOT_FOUND, "sandbox_not_found", "sandbox '%.64s' not found", id);
        return sb;
}

int manager__busy_error(struct sandbox *sb, struct sbx_err *err)
{
        return sbx_err_setr(err, -SBX_E_CONFLICT, "invalid_state", "sandbox '%s' is %s; try again when it settles",
                            sb->rec.id, sandbox_state_to_string(sb->rec.state));
}

/* Turn a pooled sandbox into the one the request asked for. Calls done before it returns. */
static int activate_pooled(struct manager *m, struct sandbox *sb, struct sandbox_spec *spec, manager_done_fn done,
                           void *data, struct sbx_err *err)
{
        struct sandbox_spec tmp;
        char *sj = manager__spec_text(spec, (const char(*)[SBX_LAYER_DIGEST_MAX])sb->layers, sb->n_layers);
        char *mj = spec->metadata ? json_dump_compact(spec->metadata) : strdup("{}");
        int r = sj && mj ? 0 : -ENOMEM;

        if (r == 0) {
                free(sb->rec.spec_json);
                free(sb->rec.metadata_json);
                sb->rec.spec_json = TAKE_PTR(sj);
                sb->rec.metadata_json = TAKE_PTR(mj);
                snprintf(sb->rec.name, sizeof sb->rec.name, "%s", spec->name);
                sb->rec.created_ms = sb->rec.updated_ms = sb->rec.started_ms = sb->rec.active_ms = now_realtime_ms();
                sb->rec.expires_ms = spec->lifetime_s ? sb->rec.created_ms + spec->lifetime_s * 1000 : 0;
                sb->rec.state = SANDBOX_RUNNING;
                r = m->store->ops->sandbox_insert(m->store, &sb->rec, err);
        }
        free(sj);
        free(mj);
        if (r < 0) {
                /* e.g. the name is taken: this pooled sandbox is spent either way */
                sandbox__teardown_sync(sb);
                queue_cleanup(m, sb->rec.id, sb->dir, sb->rec.uid_slot);
                sandbox__remove_keep_slot(sb);
                return r;
        }
        sb->pooled = false;
        /* the request's spec becomes the sandbox's; the caller releases the pooled defaults */
        tmp = sb->spec;
        sb->spec = *spec;
        *spec = tmp;
        if (sb->spec.cpu != spec->cpu || sb->spec.pids != spec->pids) {
                struct cgroup_limits lim = {
                        .memory_bytes = sb->spec.memory_mib << 20,
                        .cpu = sb->spec.cpu,
                        .pids = sb->spec.pids,
                };
                (void)cgroup_create(&m->cg, sb->rec.id, &lim, SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE, NULL);
        }
        sandbox__insert(sb);
        sandbox__start_timers(sb);
        manager__event(m, sb->rec.id, "sandbox.created",
                       json_pack("{s:s}", "template", sb->rec.template_name));
        metrics_create(true, 0);
        done(data, 0, NULL, sandbox__to_json(sb));
        return 0;
}

/* A create that waits for its template to be built. */
struct pending_create {
        struct manager *m;
        struct sandbox_spec spec;
        manager_done_fn done;
        void *data;
};

static void on_template_ready(const char *name, int result, const struct sbx_err *err, void *data)
{
        _cleanup_free_ struct pending_create *pc = data;
        struct sbx_err e = { 0 };
        int r;

        if (result == -ECANCELED) {
                /* sbxd is shutting down: the API and the manager are gone, nobody to answer */
                sandbox_spec_release(&pc->spec);
                return;
        }
        if (result < 0) {
                if (err && err->code)
                        e = *err;
                else
                        sbx_err_setr(&e, -SBX_E_UNAVAILABLE, "template_not_ready", "template '%s' could not be built",
                                     name);
                pc->done(pc->data, e.code, &e, NULL);
                sandbox_spec_release(&pc->spec);
                return;
        }
        r = manager_create(pc->m, &pc->spec, pc->done, pc->data, &e);
        if (r < 0)
                pc->done(pc->data, r, &e, NULL);
        sandbox_spec_release(&pc->spec);
}

static int create_after_build(struct manager *m, struct sandbox_spec *spec, manager_done_fn done, void *data,
                              struct sbx_err *err)
{
        struct pending_create *pc = calloc(1, sizeof *pc);
        int r;

        if (!pc)
                return -ENOMEM;
        *pc = (struct pending_create){ .m = m, .spec = *spec, .done = done, .data = data };
        memset(spec, 0, sizeof *spec); /* the pending create owns it now */
        r = template_build(m->templates, pc->spec.template_name, NULL, on_template_ready, pc, err);
        if (r < 0) {
                *spec = pc->spec; /* give it back: the caller releases it */
                free(pc);
        }
        return r;
}

/* Can this request use a pooled sandbox (launched with the default limits)? /tmp's size and
 * RLIMIT_NPROC were fixed at launch, so memory must be the default and pids not above it. */
static bool pool_eligible(const struct sandbox_spec *spec)
{
        return spec->memory_mib == (SBX_DEFAULT_MEMORY >> 20) && spec->pids <= SBX_DEFAULT_PIDS && !spec->snapshot[0];
}

/* The template's image config: its env entries go before the request's (the request wins), its
 * workdir becomes the default cwd of execs unless the request set one. */
static int apply_template_config(struct manager *m, struct sandbox_spec *spec)
{
        json_t *mf = template_manifest(m->templates, spec->template_name, NULL);
        json_t *cfg = json_object_get(mf, "config"), *env = json_object_get(cfg, "env"), *v;
        const char *wd = json_string_value(json_object_get(cfg, "workdir"));
        size_t i, k = 0;
        char **nv;

        if (!mf)
                return 0;
        if (wd && wd[0] == '/' && !strstr(wd, "/../") && !spec->workdir[0] && strlen(wd) < sizeof spec->workdir)
                snprintf(spec->workdir, sizeof spec->workdir, "%s", wd);
        if (json_array_size(env) == 0) {
                json_decref(mf);
                return 0;
        }
        nv = calloc(json_array_size(env) + spec->n_env + 1, sizeof *nv);
        if (!nv) {
                json_decref(mf);
                return -ENOMEM;
        }
        json_array_foreach (env, i, v) {
                const char *e = json_string_value(v);

                if (!e || !strchr(e, '=') || strchr(e, '=') == e || k == SBX_MAX_ENV ||
                    strlen(e) > SBX_MAX_ENV_KEY + 1 + SBX_MAX_ENV_VALUE)
                        continue;
                nv[k] = strdup(e);
                if (nv[k])
                        k++;
        }
        json_decref(mf);
        for (i = 0; i < spec->n_env; i++)
                nv[k++] = spec->env[i];
        free(spec->env);
        spec->env = nv;
        spec->n_env = k;
        return 0;
}

int manager_create(struct manager *m, struct sandbox_spec *spec, manager_done_fn done, void *data,
                   struct sbx_err *err)
{
        struct template_info tmpl;
        int r;

        if (spec->snapshot[0])
                return snapshots__create(m, spec, done, data, err);
        r = template_lookup(m->templates, spec->template_name, &tmpl, NULL);
        if (r == -SBX_E_UNAVAILABLE)
                /* being built (or not yet): the create waits for it, as "returns when ready" says */
                return create_after_build(m, spec, done, data, err);
        if (r == -SBX_E_NOT_FOUND && build__running(m, spec->template_name))
                return sbx_err_setr(err, -SBX_E_CONFLICT, "template_building",
                                    "template '%s' is still being built; watch GET /v1/templates/%s/build",
                                    spec->template_name, spec->template_name);
        if (r < 0)
                return template_lookup(m->templates, spec->template_name, &tmpl, err);
        r = apply_template_config(m, spec);
        if (r < 0)
                return sbx_err_set(err, r, "out of memory");
        return manager__create_from(m, spec, &tmpl, done, data, err);
}

int manager__create_from(struct manager *m, struct sandbox_spec *spec, const struct template_info *tmpl,
                         manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox_record rec = { 0 };
        struct sandbox *sb;
        struct op *op;
        int r;

        if (m->n_live >= m->max_sandboxes) {
                r = sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "at most %u sandboxes may exist at once",
                                 m->max_sandboxes);
                manager__event(m, NULL, "quota.refused",
                               json_pack("{s:s,s:I,s:s}", "limit", "sandboxes", "max", (json_int_t)m->max_sandboxes,
                                         "message", err ? err->msg : ""));
                return r;
        }
        if (pool_eligible(spec)) {
                sb = pool__take(m, spec->template_name, tmpl);
                if (sb)
                        return activate_pooled(m, sb, spec, done, data, err);
        }
        r = sbx_id_new("sbx_", rec.id, sizeof rec.id);
        if (r < 0)
                return sbx_err_set(err, r, "cannot generate an id: %s", strerror(-r));
        r = manager__slot_alloc(m, &rec.uid_slot);
        if (r < 0)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "no free user id range");
        snprintf(rec.name, sizeof rec.name, "%s", spec->name);
        snprintf(rec.template_name, sizeof rec.template_name, "%s", spec->template_name);
        rec.state = SANDBOX_CREATING;
        rec.created_ms = rec.updated_ms = rec.active_ms = now_realtime_ms();
        rec.expires_ms = spec->lifetime_s ? rec.created_ms + spec->lifetime_s * 1000 : 0;
        rec.spec_json = manager__spec_text(spec, (const char(*)[SBX_LAYER_DIGEST_MAX])tmpl->layers, tmpl->n_layers);
        rec.metadata_json = spec->metadata ? json_dump_compact(spec->metadata) : strdup("{}");
        if (!rec.spec_json || !rec.metadata_json) {
                manager__slot_set(m, rec.uid_slot, false);
                sandbox_record_release(&rec);
                return -ENOMEM;
        }
        r = m->store->ops->sandbox_insert(m->store, &rec, err);
        if (r < 0) {
                manager__slot_set(m, rec.uid_slot, false);
                sandbox_record_release(&rec);
                return r;
        }
        r = manager__adopt_record(m, &rec, &sb, err);
        sandbox_record_release(&rec);
        if (r < 0)
                return r;
        manager__event(m, sb->rec.id, "sandbox.created",
                       json_pack("{s:s}", "template", sb->rec.template_name));
        op = op_new(sb, OP_CREATE, done, data);
        if (!op) {
                sandbox__set_state(sb, SANDBOX_FAILED, "out of memory");
                return -ENOMEM;
        }
        op->tmpl = *tmpl;
        r = uv_queue_work(m->loop, &op->work, manager__work_launch, manager__after_launch);
        if (r == 0)
                m->pending_launches++;
        if (r < 0) {
                sandbox__set_state(sb, SANDBOX_FAILED, "cannot queue the launch");
                sb->op = NULL;
                sandbox_unref(sb);
                free(op);
                return sbx_err_set(err, -EIO, "cannot queue the launch: %s", uv_strerror(r));
        }
        /* warm the pool for the next create of this template */
        if (pool_eligible(spec))
                pool__refill(m, spec->template_name);
        return 0;
}

int manager_stop(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = NULL;
        struct op *op;

        sb = manager__lookup(m, id, err);
        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state == SANDBOX_STOPPED) {
                op = op_new(sb, OP_STOP, done, data);
                if (!op)
                        return -ENOMEM;
                manager__op_finish_sandbox(op); /* stopping a stopped sandbox is a no-op */
                return 0;
        }
        if (sb->rec.state == SANDBOX_HIBERNATED)
                return lifecycle__stop_hibernated(sb, done, data, err);
        if (sb->rec.state != SANDBOX_RUNNING && sb->rec.state != SANDBOX_PAUSED)
                return manager__busy_error(sb, err);
        op = op_new(sb, OP_STOP, done, data);
        if (!op)
                return -ENOMEM;
        sandbox__set_state(sb, SANDBOX_STOPPING, NULL);
        manager__begin_stop(op);
        return 0;
}

int manager_start(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = NULL;
        struct op *op;

        sb = manager__lookup(m, id, err);
        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state == SANDBOX_RUNNING) {
                op = op_new(sb, OP_START, done, data);
                if (!op)
                        return -ENOMEM;
                manager__op_finish_sandbox(op);
                return 0;
        }
        if (sb->rec.state == SANDBOX_HIBERNATED)
                return manager_wake(m, id, done, data, err);
        if (sb->rec.state == SANDBOX_PAUSED)
                return manager_resume(m, id, done, data, err);
        if (sb->rec.state != SANDBOX_STOPPED)
                return manager__busy_error(sb, err);
        return manager__relaunch(sb, OP_START, SANDBOX_STARTING, done, data, err);
}

int manager__relaunch(struct sandbox *sb, enum op_kind kind, enum sandbox_state during, manager_done_fn done,
                      void *data, struct sbx_err *err)
{
        struct manager *m = sb->m;
        enum sandbox_state back = sb->rec.state;
        struct template_info tmpl;
        struct op *op;
        int r;

        r = files__before_start(sb, err);
        if (r < 0)
                return r;
        r = manager__launch_template(m, sb, &tmpl, err);
        if (r < 0)
                return r;
        op = op_new(sb, kind, done, data);
        if (!op)
                return -ENOMEM;
        op->tmpl = tmpl;
        sandbox__stop_timers(sb);
        sandbox__set_state(sb, during, NULL);
        r = uv_queue_work(m->loop, &op->work, manager__work_launch, manager__after_launch);
        if (r < 0) {
                sandbox__set_state(sb, back, NULL);
                sandbox__start_timers(sb);
                sb->op = NULL;
                sandbox_unref(sb);
                free(op);
                return sbx_err_set(err, -EIO, "cannot queue the launch: %s", uv_strerror(r));
        }
        m->pending_launches++;
        return 0;
}

int manager__delete(struct sandbox *sb, manager_done_fn done, void *data, const char *reason, struct sbx_err *err)
{
        struct op *op;

        if (sb->op)
                return manager__busy_error(sb, err);
        op = op_new(sb, OP_DELETE, done, data);
        if (!op)
                return -ENOMEM;
        if (reason)
                snprintf(op->reason, sizeof op->reason, "%s", reason);
        /* Kill now and answer now: waiting for the processes to vanish, removing the cgroups and
         * the files happen after the reply, on the worker pool (queue_cleanup). */
        if (sb->rec.state == SANDBOX_RUNNING || sb->rec.state == SANDBOX_PAUSED) {
                (void)cgroup_kill(&sb->m->cg, sb->rec.id);
                if (sb->pidfd >= 0)
                        (void)syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
        }
        manager__after_stopped(op);
        return 0;
}

int manager_delete(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = NULL;

        sb = manager__lookup(m, id, err);
        if (!sb)
                return -SBX_E_NOT_FOUND;
        return manager__delete(sb, done, data, NULL, err);
}

int manager_get(struct manager *m, const char *id, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = NULL;

        sb = manager__lookup(m, id, err);
        if (!sb)
                return -SBX_E_NOT_FOUND;
        *ret = sandbox__to_json(sb);
        return *ret ? 0 : -ENOMEM;
}

int manager_list(struct manager *m, const struct sandbox_filter *f, json_t **ret, struct sbx_err *err)
{
        struct sandbox_record *recs = NULL;
        size_t n = 0;
        bool more = false;
        json_t *arr, *o;
        int r;

        r = m->store->ops->sandbox_list(m->store, f, &recs, &n, &more, err);
        if (r < 0)
                return r;
        arr = json_array();
        for (size_t i = 0; i < n; i++) {
                struct sandbox *sb = manager__find(m, recs[i].id);
                /* live sandboxes answer from memory (it is fresher than the row); the rest are
                 * deleted rows when a state filter asks for them */
                if (sb)
                        json_array_append_new(arr, sandbox__to_json(sb));
                else {
                        struct sandbox tmp = { .rec = recs[i] };
                        json_t *sj = json_loads(recs[i].spec_json ? recs[i].spec_json : "{}", 0, NULL);
                        if (sj) {
                                json_object_del(sj, "template");
                                json_object_del(sj, "name");
                                if (sandbox_spec_parse(sj, &tmp.spec, NULL) >= 0) {
                                        json_array_append_new(arr, sandbox__to_json(&tmp));
                                        sandbox_spec_release(&tmp.spec);
                                }
                                json_decref(sj);
                        }
                }
        }
        o = json_pack("{s:o,s:o}", "sandboxes", arr, "nextCursor",
                      more && n > 0 ? json_string(recs[n - 1].id) : json_null());
        for (size_t i = 0; i < n; i++)
                sandbox_record_release(&recs[i]);
        free(recs);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

void manager_state_counts(struct manager *m, unsigned *counts)
{
        memset(counts, 0, sizeof(unsigned) * _SANDBOX_STATE_MAX);
        for (unsigned i = 0; i < SANDBOX_HASH_SIZE; i++)
                for (struct sandbox *s = m->table[i]; s; s = s->hnext)
                        if (s->rec.state >= 0 && s->rec.state < _SANDBOX_STATE_MAX)
                                counts[s->rec.state]++;
}

/* ---------- setup ---------- */

/* sbx-init as a sealed memfd: sandboxes run a copy that lives as long as they do (nothing in
 * them points at a host path, which a checkpoint could not carry), and replacing the file on the
 * host changes no running sandbox. */
static int init_exe_memfd(const char *path)
{
        _cleanup_close_ int in = open(path, O_RDONLY | O_CLOEXEC), fd = -EBADF;
        struct stat st;
        off_t off = 0;

        if (in < 0 || fstat(in, &st) < 0)
                return -errno;
        fd = memfd_create("sbx-init", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        while (off < st.st_size) {
                ssize_t k = sendfile(fd, in, &off, (size_t)(st.st_size - off));

                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
        }
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
                return -errno;
        return TAKE_FD(fd);
}

int manager_new(uv_loop_t *loop, struct store *store, struct template_store *templates,
                const struct manager_config *cfg, struct manager **ret, struct sbx_err *err)
{
        _cleanup_free_ struct manager *m = calloc(1, sizeof *m);
        int r;

        if (!m)
                return -ENOMEM;
        m->loop = loop;
        m->store = store;
        m->templates = templates;
        m->init_exe_fd = -EBADF;
        m->seccomp_fd = -EBADF;
        snprintf(m->data_dir, sizeof m->data_dir, "%s", cfg->data_dir);
        snprintf(m->instance, sizeof m->instance, "%s", cfg->instance);
        m->pool_size = cfg->pool_size;
        m->stream_log_bytes = cfg->stream_log ? cfg->stream_log : SBX_DEFAULT_STREAM_LOG;
        m->max_sandboxes = cfg->max_sandboxes && cfg->max_sandboxes < SBX_MAX_SANDBOXES ? cfg->max_sandboxes
                                                                                        : SBX_MAX_SANDBOXES;
        m->btrfs = cfg->btrfs;
        if ((size_t)snprintf(m->sandboxes_dir, sizeof m->sandboxes_dir, "%s/sandboxes",
                             cfg->state_dir ? cfg->state_dir : cfg->data_dir) >= sizeof m->sandboxes_dir)
                return sbx_err_set(err, -ENAMETOOLONG, "data dir path too long");
        if ((size_t)snprintf(m->snapshots_dir, sizeof m->snapshots_dir, "%s/snapshots",
                             cfg->state_dir ? cfg->state_dir : cfg->data_dir) >=
            sizeof m->snapshots_dir)
                return sbx_err_set(err, -ENAMETOOLONG, "data dir path too long");
        if (mkdir(m->snapshots_dir, 0711) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create '%s': %m", m->snapshots_dir);
        if (mkdir(m->sandboxes_dir, 0711) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create '%s': %m", m->sandboxes_dir);
        /* sandbox roots (mapped uids) must traverse it to reach their dirs */
        if (chmod(m->sandboxes_dir, 0711) < 0)
                return sbx_err_set(err, -errno, "cannot chmod '%s': %m", m->sandboxes_dir);
        m->slots = calloc(SBX_MAX_UID_SLOTS / 8 + 1, 1);
        if (!m->slots)
                return -ENOMEM;
        m->init_exe_fd = init_exe_memfd(cfg->init_path);
        if (m->init_exe_fd < 0) {
                errno = -m->init_exe_fd;
                r = sbx_err_set(err, -errno, "cannot open sbx-init at '%s': %m", cfg->init_path);
                free(m->slots);
                return r;
        }
        r = seccomp_blob_create(&m->seccomp_fd);
        if (r < 0) {
                free(m->slots);
                close(m->init_exe_fd);
                return sbx_err_set(err, r, "cannot compile the seccomp filters: %s", strerror(-r));
        }
        r = cgroup_root_init(&m->cg, m->instance, err);
        if (r < 0) {
                free(m->slots);
                close(m->init_exe_fd);
                close(m->seccomp_fd);
                return r;
        }
        *ret = TAKE_PTR(m);
        return 0;
}

/* Free once no cleanup on the worker pool still uses m. */
static void manager_maybe_free(struct manager *m)
{
        if (!m->freeing || m->pending_cleanups > 0 || m->pending_launches > 0)
                return;
        snapshots__free_all(m);
        manager__events_free(m);
        pool__free_all(m);
        cgroup_root_release(&m->cg);
        m->init_exe_fd = safe_close(m->init_exe_fd);
        m->seccomp_fd = safe_close(m->seccomp_fd);
        free(m->slots);
        free(m);
}

void manager_free(struct manager *m)
{
        if (!m)
                return;
        m->freeing = true;
        build__free_all(m);
        pool__drain(m);
        for (unsigned i = 0; i < SANDBOX_HASH_SIZE; i++)
                while (m->table[i])
                        sandbox__remove(m->table[i]);
        m->freeing = true;
        manager_maybe_free(m);
}
