// SPDX-License-Identifier: Apache-2.0
/*
 * Leases on a sandbox's files (manager.h, "files"): which root the file API works on, and the
 * rule that keeps it safe: a sandbox's upper directory is never in two overlays at once. A running
 * sandbox's root is its PID 1's root (/proc/PID/root: the overlay its processes use, with /tmp and
 * /dev/shm). A stopped sandbox's files are its overlay mounted again, detached (sandbox_volume_open),
 * kept while leases use it and for VOLUME_IDLE_MS after. Any lease pins the overlay it reached (an
 * open fd keeps a detached or dead namespace's mount alive), so a start waits for none to be left.
 * Blocking work runs on the worker pool (manager_files_run).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "core/manager-internal.h"
#include "files/files.h"

#define VOLUME_IDLE_MS 10000

struct files_lease {
        struct sandbox *sb;    /* holds a ref */
        struct files_root root;
        int own_fd;            /* owned: a running sandbox's root; -EBADF for the volume */
        bool volume;
};

void files__sandbox_init(struct sandbox *sb)
{
        sb->vol_fd = -EBADF;
        pthread_mutex_init(&sb->files_lock, NULL);
}

void files__sandbox_fini(struct sandbox *sb)
{
        sb->vol_fd = safe_close(sb->vol_fd);
        pthread_mutex_destroy(&sb->files_lock);
}

static void vol_timer_closed(uv_handle_t *h)
{
        sandbox_unref(h->data);
}

static void volume_close(struct sandbox *sb)
{
        sb->vol_fd = safe_close(sb->vol_fd);
        if (sb->vol_timer_init)
                (void)uv_timer_stop(&sb->vol_timer);
}

static void vol_timer_fired(uv_timer_t *t)
{
        struct sandbox *sb = t->data;

        if (sb->vol_users == 0)
                volume_close(sb);
}

void files__sandbox_remove(struct sandbox *sb)
{
        watchers__end_all(sb, "the sandbox was deleted");
        if (sb->vol_users == 0)
                volume_close(sb);
        if (sb->vol_timer_init && !uv_is_closing((uv_handle_t *)&sb->vol_timer)) {
                sandbox_ref(sb);
                sb->vol_timer.data = sb;
                uv_close((uv_handle_t *)&sb->vol_timer, vol_timer_closed);
        }
}

void files__not_running(struct sandbox *sb, const char *reason)
{
        if (sb->n_watchers)
                watchers__end_all(sb, reason && *reason ? reason : "the sandbox stopped");
}

int files__before_start(struct sandbox *sb, struct sbx_err *err)
{
        if (sb->n_leases > 0)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "files_busy",
                                    "sandbox '%s' has %u file operation%s in progress; start it when they are done",
                                    sb->rec.id, sb->n_leases, sb->n_leases == 1 ? "" : "s");
        volume_close(sb);
        return 0;
}

/* Mount the stopped sandbox's overlay (once; kept in sb->vol_fd). */
static int volume_open(struct sandbox *sb, struct sbx_err *err)
{
        struct manager *m = sb->m;
        _cleanup_free_ struct template_info *tmpl = NULL;
        _cleanup_free_ char **lowers = NULL;
        uint32_t *bases = NULL;
        size_t n_lowers = 0;
        int r;

        if (sb->vol_fd >= 0)
                return 0;
        tmpl = calloc(1, sizeof *tmpl);
        if (!tmpl)
                return -ENOMEM;
        r = manager__launch_template(m, sb, tmpl, err);
        if (r < 0)
                return r;
        r = manager__lower_paths(sb, tmpl, &lowers, &bases, &n_lowers);
        if (r < 0)
                return sbx_err_set(err, r, "cannot resolve the layers of sandbox '%s'", sb->rec.id);
        struct sandbox_launch l = {
                .id = sb->rec.id,
                .dir = sb->dir,
                .lowers = (const char *const *)lowers,
                .lower_bases = bases,
                .n_lowers = n_lowers,
                .uid_base = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE,
        };
        return sandbox_volume_open(&l, &sb->vol_fd, err);
}

int manager_files_acquire(struct manager *m, const char *id, struct files_lease **ret, struct sbx_err *err)
{
        _cleanup_free_ struct files_lease *l = NULL;
        struct sandbox *sb = manager__lookup(m, id, err);
        uid_t uid;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->op || (sb->rec.state != SANDBOX_RUNNING && sb->rec.state != SANDBOX_STOPPED &&
                       sb->rec.state != SANDBOX_PAUSED))
                return manager__busy_error(sb, err);
        l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        l->own_fd = -EBADF;
        uid = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE;
        if (sb->rec.state == SANDBOX_RUNNING || sb->rec.state == SANDBOX_PAUSED) {
                char path[64];

                /* sbxd reaps PID 1 on this thread: while the state is running the pid is its own */
                snprintf(path, sizeof path, "/proc/%d/root", (int)sb->rec.init_pid);
                l->own_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (l->own_fd < 0)
                        return sbx_err_set(err, -errno, "cannot reach the root of sandbox '%s': %m", sb->rec.id);
                l->root.fd = l->own_fd;
        } else {
                r = volume_open(sb, err);
                if (r < 0)
                        return r;
                if (!sb->vol_timer_init) {
                        r = uv_timer_init(m->loop, &sb->vol_timer);
                        if (r < 0)
                                return sbx_err_set(err, -EIO, "cannot init a timer: %s", uv_strerror(r));
                        sb->vol_timer.data = sb;
                        sb->vol_timer_init = true;
                }
                (void)uv_timer_stop(&sb->vol_timer);
                l->volume = true;
                l->root.fd = sb->vol_fd;
                sb->vol_users++;
        }
        l->root.uid = l->root.base_uid = uid;
        l->root.gid = l->root.base_gid = uid;
        l->sb = sb;
        sandbox_ref(sb);
        sb->n_leases++;
        *ret = TAKE_PTR(l);
        return 0;
}

const struct files_root *files_lease_root(const struct files_lease *l)
{
        return &l->root;
}

void files_lease_release(struct files_lease *l)
{
        struct sandbox *sb;

        if (!l)
                return;
        sb = l->sb;
        safe_close(l->own_fd);
        if (l->volume && --sb->vol_users == 0) {
                if (sb->closed || !sb->vol_timer_init)
                        volume_close(sb);
                else
                        (void)uv_timer_start(&sb->vol_timer, vol_timer_fired, VOLUME_IDLE_MS, 0);
        }
        sb->n_leases--;
        free(l);
        sandbox_unref(sb);
}

/* ---------- blocking operations on the worker pool ---------- */

struct files_job {
        uv_work_t work;
        struct manager *m;
        struct files_lease *lease;
        bool exclusive;
        const char *user;
        manager_files_fn fn;
        void *fn_data;
        manager_done_fn done;
        void *done_data;
        int r;
        struct sbx_err err;
        json_t *result;
};

int files_lease_call(struct files_lease *l, const char *user, manager_files_fn fn, void *data, json_t **ret,
                     struct sbx_err *err)
{
        struct files_root root = l->root;
        int r;

        if (user) {
                struct files_user u;

                r = files_user_lookup(&l->root, user, &u, err);
                if (r < 0)
                        return r;
                r = files_root_as(&l->root, &u, &root);
                if (r < 0)
                        return r;
        }
        r = files_identity_enter(&root);
        if (r < 0)
                return sbx_err_set(err, r, "cannot take the sandbox's identity: %s", strerror(-r));
        r = fn(&root, data, ret, err);
        files_identity_leave();
        return r;
}

static void files_job_work(uv_work_t *w)
{
        struct files_job *j = w->data;
        struct sandbox *sb = j->lease->sb;

        if (j->exclusive)
                pthread_mutex_lock(&sb->files_lock);
        j->r = files_lease_call(j->lease, j->user, j->fn, j->fn_data, &j->result, &j->err);
        if (j->exclusive)
                pthread_mutex_unlock(&sb->files_lock);
}

static void files_job_done(uv_work_t *w, int status)
{
        struct files_job *j = w->data;

        files_lease_release(j->lease);
        if (status < 0 && j->r >= 0)
                j->r = sbx_err_set(&j->err, -ECANCELED, "the file operation was cancelled");
        if (j->r < 0) {
                json_decref(j->result);
                j->result = NULL;
        }
        j->done(j->done_data, j->r, &j->err, j->result);
        free(j);
}

int manager_files_run(struct manager *m, const char *id, bool exclusive, const char *user, manager_files_fn fn,
                      void *fn_data, manager_done_fn done, void *done_data, struct sbx_err *err)
{
        struct files_job *j = calloc(1, sizeof *j);
        int r;

        if (!j)
                return -ENOMEM;
        r = manager_files_acquire(m, id, &j->lease, err);
        if (r < 0) {
                free(j);
                return r;
        }
        j->m = m;
        j->exclusive = exclusive;
        j->user = user;
        j->fn = fn;
        j->fn_data = fn_data;
        j->done = done;
        j->done_data = done_data;
        j->work.data = j;
        r = uv_queue_work(m->loop, &j->work, files_job_work, files_job_done);
        if (r < 0) {
                files_lease_release(j->lease);
                free(j);
                return sbx_err_set(err, -EIO, "cannot queue the file operation: %s", uv_strerror(r));
        }
        return 0;
}
