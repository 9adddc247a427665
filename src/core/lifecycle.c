// SPDX-License-Identifier: Apache-2.0
/*
 * Pause/resume, hibernate/wake and the timers (DESIGN §5, docs/lifecycle.md).
 *
 * Pause freezes the sandbox's cgroup: its processes stop where they are, keep their memory, and
 * every stream and attached client stays open (nothing on sbxd's side changes). Resume thaws it.
 * Hibernate without CRIU stops the processes and keeps the filesystem, and says so ("memory":
 * false); wake starts the sandbox again.
 *
 * Timers run from deadlines kept in the sandbox's record, so they survive an sbxd restart:
 *   lifetime  expires_ms: the sandbox is deleted. The clock runs while the sandbox is running; a
 *             pause or a hibernation stops it (expires_ms moves on by the time spent paused).
 *   idle      active_ms + timeout.idle: stopped when nothing happened for that long (no exec, no
 *             process start or end, no attached client).
 *   paused    paused_ms + timeout.paused: a paused or hibernated sandbox is deleted.
 *   execution timeout.execution: the default timeout of execs and processes (exec.c, process-store.c).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "manager-internal.h"

#define FREEZE_POLL_MS 1       /* polling beside the inotify watch on cgroup.events */
#define ACTIVE_SAVE_MS 1000   /* active_ms is written at most this often (the idle deadline may be 1 s early) */

/* ---------- JSON ---------- */

static uint64_t paused_deadline(const struct sandbox *sb)
{
        if (!sb->spec.paused_s || !sb->rec.paused_ms ||
            (sb->rec.state != SANDBOX_PAUSED && sb->rec.state != SANDBOX_HIBERNATED))
                return 0;
        return sb->rec.paused_ms + sb->spec.paused_s * 1000;
}

void lifecycle__json(const struct sandbox *sb, json_t *o)
{
        const struct sandbox_record *r = &sb->rec;
        uint64_t terminates = 0;

        if (r->state == SANDBOX_PAUSED || r->state == SANDBOX_HIBERNATED)
                terminates = paused_deadline(sb);
        else if (r->state != SANDBOX_DELETED)
                terminates = r->expires_ms;
        json_object_set_new(o, "expiresAt", json_time_ms(r->expires_ms));
        json_object_set_new(o, "terminatesAt", json_time_ms(terminates));
        json_object_set_new(o, "pausedAt",
                            json_time_ms(r->state == SANDBOX_PAUSED || r->state == SANDBOX_HIBERNATED ? r->paused_ms
                                                                                                      : 0));
        if (r->state == SANDBOX_HIBERNATED || r->state == SANDBOX_HIBERNATING || r->state == SANDBOX_WAKING)
                json_object_set_new(o, "hibernation", json_pack("{s:b}", "memory", false));
}

/* ---------- timers ---------- */

static void on_lifetime(uv_timer_t *t);
static void on_idle(uv_timer_t *t);
static void on_paused(uv_timer_t *t);

static uint64_t ms_until(uint64_t deadline)
{
        uint64_t now = now_realtime_ms();

        return deadline > now ? deadline - now : 0;
}

void sandbox__stop_timers(struct sandbox *sb)
{
        uv_timer_stop(&sb->lifetime_timer);
        uv_timer_stop(&sb->idle_timer);
        uv_timer_stop(&sb->paused_timer);
}

void sandbox__start_timers(struct sandbox *sb)
{
        sandbox__stop_timers(sb);
        if (sb->removed || sb->pooled)
                return;
        switch (sb->rec.state) {
        case SANDBOX_RUNNING:
                if (sb->rec.expires_ms)
                        uv_timer_start(&sb->lifetime_timer, on_lifetime, ms_until(sb->rec.expires_ms), 0);
                if (sb->spec.idle_s) {
                        uint64_t active = sb->rec.active_ms ? sb->rec.active_ms : now_realtime_ms();
                        uv_timer_start(&sb->idle_timer, on_idle, ms_until(active + sb->spec.idle_s * 1000), 0);
                }
                break;
        case SANDBOX_PAUSED:
        case SANDBOX_HIBERNATED:
                if (paused_deadline(sb))
                        uv_timer_start(&sb->paused_timer, on_paused, ms_until(paused_deadline(sb)), 0);
                break;
        default:
                break;
        }
}

void sandbox__idle_touch(struct sandbox *sb)
{
        uint64_t now;

        if (sb->removed || sb->pooled || sb->rec.state != SANDBOX_RUNNING)
                return;
        now = now_realtime_ms();
        if (now >= sb->rec.active_ms + ACTIVE_SAVE_MS) {
                sb->rec.active_ms = now;
                (void)sandbox__save(sb, NULL);
        }
        if (sb->spec.idle_s)
                uv_timer_start(&sb->idle_timer, on_idle, sb->spec.idle_s * 1000, 0);
}

static void timeout_event(struct sandbox *sb, const char *kind, const char *action)
{
        manager__event(sb->m, sb->rec.id, "sandbox.timeout", json_pack("{s:s,s:s}", "kind", kind, "action", action));
}

static void on_lifetime(uv_timer_t *t)
{
        struct sandbox *sb = t->data;

        if (sb->op) { /* retry once the current operation settles */
                uv_timer_start(t, on_lifetime, 1000, 0);
                return;
        }
        timeout_event(sb, "lifetime", "delete");
        (void)manager__delete(sb, NULL, NULL, "lifetime expired", NULL);
}

static void on_paused(uv_timer_t *t)
{
        struct sandbox *sb = t->data;

        if (sb->op) {
                uv_timer_start(t, on_paused, 1000, 0);
                return;
        }
        timeout_event(sb, "paused", "delete");
        (void)manager__delete(sb, NULL, NULL, "paused timeout", NULL);
}

static void on_idle(uv_timer_t *t)
{
        struct sandbox *sb = t->data;
        struct op *op;

        if (sb->rec.state != SANDBOX_RUNNING)
                return;
        /* busy: a command runs or a client watches; look again a full idle period later */
        if (sb->n_execs > 0 || sb->n_attached > 0) {
                uv_timer_start(t, on_idle, sb->spec.idle_s * 1000, 0);
                return;
        }
        if (sb->op) {
                uv_timer_start(t, on_idle, 1000, 0);
                return;
        }
        op = op_new(sb, OP_STOP, NULL, NULL);
        if (!op)
                return;
        timeout_event(sb, "idle", "stop");
        snprintf(op->reason, sizeof op->reason, "idle timeout");
        sandbox__set_state(sb, SANDBOX_STOPPING, op->reason);
        manager__begin_stop(op);
}

/* ---------- pause / resume ---------- */

int manager__not_running_error(struct sandbox *sb, struct sbx_err *err)
{
        if (sb->op && sb->rec.state == SANDBOX_RUNNING)
                return manager__busy_error(sb, err); /* a snapshot, say: for a moment */
        if (sb->rec.state == SANDBOX_PAUSED)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "sandbox_paused",
                                    "sandbox '%s' is paused: resume it (POST /v1/sandboxes/%s/resume) or send "
                                    "the request with autoResume",
                                    sb->rec.id, sb->rec.id);
        return sbx_err_setr(err, -SBX_E_CONFLICT, "invalid_state", "sandbox '%s' is %s, not running", sb->rec.id,
                            sandbox_state_to_string(sb->rec.state));
}

/* The lifetime clock stood still while the sandbox was paused or hibernated. */
static void unpause_deadlines(struct sandbox *sb)
{
        uint64_t now = now_realtime_ms();

        if (sb->rec.expires_ms && sb->rec.paused_ms && now > sb->rec.paused_ms)
                sb->rec.expires_ms += now - sb->rec.paused_ms;
        sb->rec.paused_ms = 0;
        sb->rec.active_ms = now;
}

static void paused_now(struct sandbox *sb)
{
        sb->rec.paused_ms = now_realtime_ms();
        sandbox__set_state(sb, SANDBOX_PAUSED, NULL);
        sandbox__start_timers(sb);
}

/* A pause waits for cgroup.events to say "frozen 1": inotify tells when it changes (busy tasks
 * take a few ms to reach a freezing point), a 1 ms timer covers a missed notification and the
 * deadline. */
struct freeze_watch {
        uv_fs_event_t ev;
        struct sandbox *sb;              /* holds a ref */
};

static void freeze_watch_closed(uv_handle_t *h)
{
        struct freeze_watch *fw = h->data;

        sandbox_unref(fw->sb);
        free(fw);
}

/* The notification of cgroup.events is not enough alone: the kernel sends at most one per 10 ms
 * per file (cgroup_file_notify's rate limit), so a freeze that completes within 10 ms of the
 * previous change is told only 10 ms later. Measured: with a 10 ms poll behind the watch, one
 * pause in seven took 10-12 ms; with 1 ms, p99 3.5 ms. */
static unsigned poll_ms(const struct op *op)
{
        (void)op;
        return FREEZE_POLL_MS;
}

static void pause_settle(struct sandbox *sb, struct op *op, int frozen)
{
        if (op->freeze) {
                uv_fs_event_stop(&op->freeze->ev);
                uv_close((uv_handle_t *)&op->freeze->ev, freeze_watch_closed);
                op->freeze = NULL;
        }
        uv_timer_stop(&sb->wait_timer);
        if (frozen <= 0) {
                struct sbx_err err = { 0 };

                (void)cgroup_freeze(&sb->m->cg, sb->rec.id, false);
                if (frozen < 0)
                        (void)sbx_err_set(&err, frozen, "cannot read the freezer state of sandbox '%s': %s",
                                          sb->rec.id, strerror(-frozen));
                else
                        (void)sbx_err_set(&err, -SBX_E_UNAVAILABLE,
                                          "the processes of sandbox '%s' did not freeze within %d ms; it keeps running",
                                          sb->rec.id, SBX_MAX_FREEZE_MS);
                manager__op_finish(op, err.code, &err, NULL);
                return;
        }
        paused_now(sb);
        manager__op_finish_sandbox(op);
}

static void on_freeze_poll(uv_timer_t *t)
{
        struct sandbox *sb = t->data;
        struct op *op = sb->op;
        int r;

        if (!op || op->kind != OP_PAUSE)
                return;
        r = cgroup_frozen(&sb->m->cg, sb->rec.id);
        op->wait_rounds += poll_ms(op);
        if (r == 0 && op->wait_rounds < SBX_MAX_FREEZE_MS) {
                uv_timer_start(&sb->wait_timer, on_freeze_poll, poll_ms(op), 0);
                return;
        }
        pause_settle(sb, op, r);
}

static void on_events_changed(uv_fs_event_t *h, const char *file, int events, int status)
{
        struct freeze_watch *fw = h->data;
        struct sandbox *sb = fw->sb;
        struct op *op = sb->op;
        int r;

        if (!op || op->kind != OP_PAUSE || op->freeze != fw)
                return;
        r = cgroup_frozen(&sb->m->cg, sb->rec.id);
        if (r != 0)
                pause_settle(sb, op, r);
}

/* Watch cgroup.events (best effort: without it the timer polls every FREEZE_POLL_MS). */
static void freeze_watch_start(struct sandbox *sb, struct op *op)
{
        struct freeze_watch *fw;
        char path[PATH_MAX];

        if (cgroup_events_path(&sb->m->cg, sb->rec.id, path, sizeof path) < 0 || !(fw = calloc(1, sizeof *fw)))
                return;
        if (uv_fs_event_init(sb->m->loop, &fw->ev) < 0) {
                free(fw);
                return;
        }
        fw->ev.data = fw;
        fw->sb = sb;
        sandbox_ref(sb);
        if (uv_fs_event_start(&fw->ev, on_events_changed, path, 0) < 0) {
                uv_close((uv_handle_t *)&fw->ev, freeze_watch_closed);
                return;
        }
        op->freeze = fw;
}

int manager_pause(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct op *op;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state != SANDBOX_PAUSED && sb->rec.state != SANDBOX_RUNNING)
                return manager__busy_error(sb, err);
        op = op_new(sb, OP_PAUSE, done, data);
        if (!op)
                return -ENOMEM;
        if (sb->rec.state == SANDBOX_PAUSED) {
                manager__op_finish_sandbox(op);
                return 0;
        }
        r = cgroup_freeze(&m->cg, sb->rec.id, true);
        if (r < 0) {
                sb->op = NULL;
                sandbox_unref(sb);
                free(op);
                return sbx_err_set(err, r, "cannot freeze sandbox '%s': %s", sb->rec.id, strerror(-r));
        }
        r = cgroup_frozen(&m->cg, sb->rec.id);
        if (r > 0) { /* idle processes freeze at once: answer without a loop turn */
                paused_now(sb);
                manager__op_finish_sandbox(op);
                return 0;
        }
        op->wait_rounds = 0;
        freeze_watch_start(sb, op);
        /* between the write and the watch it may have frozen already: look once more */
        r = cgroup_frozen(&m->cg, sb->rec.id);
        if (r != 0) {
                pause_settle(sb, op, r);
                return 0;
        }
        uv_timer_start(&sb->wait_timer, on_freeze_poll, poll_ms(op), 0);
        return 0;
}

static int resume_now(struct sandbox *sb, struct sbx_err *err)
{
        int r = cgroup_freeze(&sb->m->cg, sb->rec.id, false);

        if (r < 0)
                return sbx_err_set(err, r, "cannot thaw sandbox '%s': %s", sb->rec.id, strerror(-r));
        unpause_deadlines(sb);
        sandbox__set_state(sb, SANDBOX_RUNNING, NULL);
        sandbox__start_timers(sb);
        return 0;
}

int manager_resume(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op || (sb->rec.state != SANDBOX_PAUSED && sb->rec.state != SANDBOX_RUNNING))
                return manager__busy_error(sb, err);
        if (sb->rec.state == SANDBOX_PAUSED) {
                r = resume_now(sb, err);
                if (r < 0)
                        return r;
        }
        done(data, 0, NULL, sandbox__to_json(sb));
        return 0;
}

int manager_resume_if_paused(struct manager *m, const char *id, struct sbx_err *err)
{
        struct sandbox *sb = manager__find(m, id);
        int r;

        if (!sb || sb->rec.state != SANDBOX_PAUSED || sb->op)
                return 0;
        r = resume_now(sb, err);
        if (r < 0)
                return r;
        manager__event(m, sb->rec.id, "sandbox.autoresumed", NULL);
        return 1;
}

bool manager_is_paused(struct manager *m, const char *id)
{
        struct sandbox *sb = manager__find(m, id);

        return sb && sb->rec.state == SANDBOX_PAUSED;
}

/* ---------- hibernate / wake (filesystem only) ---------- */

int manager_hibernate(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct op *op;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state == SANDBOX_HIBERNATED) {
                op = op_new(sb, OP_HIBERNATE, done, data);
                if (!op)
                        return -ENOMEM;
                manager__op_finish_sandbox(op);
                return 0;
        }
        if (sb->rec.state != SANDBOX_RUNNING && sb->rec.state != SANDBOX_PAUSED)
                return manager__busy_error(sb, err);
        op = op_new(sb, OP_HIBERNATE, done, data);
        if (!op)
                return -ENOMEM;
        /* a paused sandbox's lifetime clock already stands still since paused_ms */
        if (sb->rec.state != SANDBOX_PAUSED)
                sb->rec.paused_ms = now_realtime_ms();
        snprintf(op->reason, sizeof op->reason,
                 "hibernated without memory: sbx does not checkpoint processes yet (CRIU); the files are kept");
        sandbox__set_state(sb, SANDBOX_HIBERNATING, NULL);
        manager__begin_stop(op);
        return 0;
}

/* manager__after_stopped() for OP_HIBERNATE: the processes are gone, the files stay. */
void lifecycle__hibernated(struct op *op)
{
        struct sandbox *sb = op->sb;

        sandbox__set_state(sb, SANDBOX_HIBERNATED, op->reason);
        sandbox__start_timers(sb);
        manager__op_finish_sandbox(op);
}

int lifecycle__stop_hibernated(struct sandbox *sb, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct op *op = op_new(sb, OP_STOP, done, data);

        if (!op)
                return -ENOMEM;
        unpause_deadlines(sb);
        sandbox__stop_timers(sb);
        sandbox__set_state(sb, SANDBOX_STOPPED, NULL);
        manager__op_finish_sandbox(op);
        return 0;
}

int manager_wake(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op)
                return manager__busy_error(sb, err);
        if (sb->rec.state == SANDBOX_RUNNING) {
                done(data, 0, NULL, sandbox__to_json(sb));
                return 0;
        }
        if (sb->rec.state != SANDBOX_HIBERNATED)
                return manager__busy_error(sb, err);
        return manager__relaunch(sb, OP_WAKE, SANDBOX_WAKING, done, data, err);
}

/* manager__after_launch() of a wake: the deadlines move on by the time spent hibernated. */
void lifecycle__woken(struct sandbox *sb)
{
        unpause_deadlines(sb);
}

/* ---------- PATCH ---------- */

int manager_update(struct manager *m, const char *id, const struct sandbox_patch *p, json_t **ret,
                   struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        char *spec_text, *meta_text = NULL;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (p->metadata) {
                meta_text = json_dump_compact(p->metadata);
                if (!meta_text)
                        return -ENOMEM;
        }
        if (p->has_lifetime) {
                /* N more seconds of running time: from now, or from the pause while it stands still */
                uint64_t base = sb->rec.paused_ms && (sb->rec.state == SANDBOX_PAUSED ||
                                                      sb->rec.state == SANDBOX_HIBERNATED)
                                        ? sb->rec.paused_ms
                                        : now_realtime_ms();
                sb->spec.lifetime_s = p->lifetime_s;
                sb->rec.expires_ms = p->lifetime_s ? base + p->lifetime_s * 1000 : 0;
        }
        if (p->has_idle)
                sb->spec.idle_s = p->idle_s;
        if (p->has_paused)
                sb->spec.paused_s = p->paused_s;
        if (p->has_execution)
                sb->spec.execution_s = p->execution_s;
        if (p->metadata) {
                json_decref(sb->spec.metadata);
                sb->spec.metadata = json_incref(p->metadata);
                free(sb->rec.metadata_json);
                sb->rec.metadata_json = meta_text;
        }
        spec_text = manager__spec_text(&sb->spec, (const char(*)[SBX_LAYER_DIGEST_MAX])sb->layers, sb->n_layers);
        if (!spec_text)
                return -ENOMEM;
        free(sb->rec.spec_json);
        sb->rec.spec_json = spec_text;
        r = sandbox__save(sb, err);
        if (r < 0)
                return r;
        if (!sb->op)
                sandbox__start_timers(sb);
        *ret = sandbox__to_json(sb);
        if (!*ret)
                return -ENOMEM;
        manager__event(m, sb->rec.id, "sandbox.updated",
                       json_pack("{s:O?,s:O?,s:O?}", "timeout", json_object_get(*ret, "timeout"), "expiresAt",
                                 json_object_get(*ret, "expiresAt"), "metadata",
                                 p->metadata ? json_object_get(*ret, "metadata") : NULL));
        return 0;
}

bool manager_sandbox_known(struct manager *m, const char *id)
{
        struct sandbox_record rec;

        if (!sbx_id_valid("sbx_", id))
                return false;
        if (manager__find(m, id))
                return true;
        if (m->store->ops->sandbox_get(m->store, id, &rec, NULL) < 0)
                return false;
        sandbox_record_release(&rec);
        return true;
}

bool manager__check_oom(struct sandbox *sb, const char *what)
{
        uint64_t kills = 0;

        if (cgroup_oom_kills(&sb->m->cg, sb->rec.id, &kills) < 0 || kills <= sb->oom_seen)
                return false;
        manager__event(sb->m, sb->rec.id, "sandbox.oom",
                       json_pack("{s:I,s:I,s:s}", "kills", (json_int_t)kills, "new", (json_int_t)(kills - sb->oom_seen),
                                 "victim", what ? what : ""));
        sb->oom_seen = kills;
        return true;
}
