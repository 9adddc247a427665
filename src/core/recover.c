// SPDX-License-Identifier: Apache-2.0
/*
 * Recovery at start-up (DESIGN §1, "sandboxes are not children of sbxd's lifetime"): re-adopt every
 * sandbox the store lists, settle the ones a crash caught mid-operation, and remove what a crash
 * left half-done (sandbox dirs and cgroups without a live record). Runs once, before the API
 * listens, so it may block.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "manager-internal.h"

/* A running sandbox: is its PID 1 still the process we started? Then watch it again. */
static void recover_running(struct sandbox *sb)
{
        struct sbx_err err = { 0 };
        int pidfd = -EBADF, r;

        r = sb->rec.init_pid > 0 ? proc_pidfd_verified((pid_t)sb->rec.init_pid, sb->rec.init_start_time, &pidfd)
                                 : -ESRCH;
        if (r >= 0)
                r = sandbox__attach_running(sb, pidfd, &err);
        else
                snprintf(err.msg, sizeof err.msg, "the sandbox's processes exited while sbxd was down");
        if (r < 0) {
                sandbox__teardown_sync(sb);
                sandbox__set_state(sb, SANDBOX_STOPPED, err.msg);
                process__recover(sb); /* what ran in it ended with it */
                session__recover(sb);
                return;
        }
        /* its processes: adopted once sbx-init lists what still runs (and what exited meanwhile) */
        process__recover(sb);
        code__recover(sb);
        session__recover(sb);
        (void)init_client_send_list(sb->ctl_fd);
}

static void recover_one(struct sandbox *sb)
{
        enum sandbox_state was = sb->rec.state;

        storage__recover(sb->m, sb->dir);
        switch (sb->rec.state) {
        case SANDBOX_RUNNING:
        case SANDBOX_PAUSED:
                /* a pause the crash interrupted left the freezer half-way: the record decides */
                (void)cgroup_freeze(&sb->m->cg, sb->rec.id, sb->rec.state == SANDBOX_PAUSED);
                recover_running(sb);
                manager__event(sb->m, sb->rec.id, "sandbox.recovered",
                               json_pack("{s:s,s:s}", "was", sandbox_state_to_string(was), "state",
                                         sandbox_state_to_string(sb->rec.state)));
                return;
        case SANDBOX_HIBERNATING:
        case SANDBOX_WAKING:
                /* without CRIU a hibernation keeps the files only: what ran is gone either way */
                sandbox__teardown_sync(sb);
                if (!sb->rec.paused_ms)
                        sb->rec.paused_ms = now_realtime_ms();
                sandbox__set_state(sb, SANDBOX_HIBERNATED, "interrupted by an sbxd restart");
                sandbox__start_timers(sb);
                break;
        case SANDBOX_HIBERNATED:
                (void)cgroup_kill(&sb->m->cg, sb->rec.id);
                (void)cgroup_destroy(&sb->m->cg, sb->rec.id);
                sandbox__start_timers(sb);
                break;
        case SANDBOX_CREATING:
                sandbox__teardown_sync(sb);
                storage__remove_dir(sb->m, sb->dir);
                sandbox__set_state(sb, SANDBOX_FAILED, "creation was interrupted by an sbxd restart");
                break;
        case SANDBOX_STARTING:
        case SANDBOX_STOPPING:
                sandbox__teardown_sync(sb);
                sandbox__set_state(sb, SANDBOX_STOPPED, "interrupted by an sbxd restart");
                break;
        default:
                /* stopped or failed: nothing may run and no cgroup may be left */
                (void)cgroup_kill(&sb->m->cg, sb->rec.id);
                (void)cgroup_destroy(&sb->m->cg, sb->rec.id);
                break;
        }
        process__recover(sb);
        session__recover(sb);
        if (was != sb->rec.state)
                manager__event(sb->m, sb->rec.id, "sandbox.recovered",
                               json_pack("{s:s,s:s}", "was", sandbox_state_to_string(was), "state",
                                         sandbox_state_to_string(sb->rec.state)));
}

/* Sandbox dirs whose record is gone or deleted: a crash during create or delete. */
static void sweep_dirs(struct manager *m)
{
        DIR *d = opendir(m->sandboxes_dir);
        struct dirent *de;
        char path[PATH_MAX];

        if (!d)
                return;
        while ((de = readdir(d))) {
                if (!sbx_id_valid("sbx_", de->d_name) || manager__find(m, de->d_name))
                        continue;
                (void)cgroup_kill(&m->cg, de->d_name);
                (void)cgroup_destroy(&m->cg, de->d_name);
                if ((size_t)snprintf(path, sizeof path, "%s/%s", m->sandboxes_dir, de->d_name) < sizeof path)
                        storage__remove_dir(m, path);
        }
        closedir(d);
}

/* A template build's setup sandbox (metadata "sbx.build"): its build lived in memory only. */
static bool is_build_sandbox(const struct sandbox *sb)
{
        json_t *meta = json_loads(sb->rec.metadata_json ? sb->rec.metadata_json : "{}", 0, NULL);
        bool r = json_is_string(json_object_get(meta, "sbx.build"));

        json_decref(meta);
        return r;
}

static void build_sandbox_deleted(void *data, int r, const struct sbx_err *err, json_t *result)
{
        json_decref(result);
}

int manager_recover(struct manager *m, struct sbx_err *err)
{
        struct sandbox_record *recs = NULL;
        size_t n = 0;
        int r;

        /* sandboxes stand on snapshots: those first */
        r = snapshots__load(m, err);
        if (r < 0)
                return r;
        r = m->store->ops->sandbox_list_live(m->store, &recs, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct sandbox *sb;
                struct sbx_err e = { 0 };
                if (manager__adopt_record(m, &recs[i], &sb, &e) < 0)
                        continue; /* an unreadable row stays in the store; NEEDSWORK: report it */
                recover_one(sb);
                /* the build it served died with the previous sbxd: nothing will ever use it */
                if (is_build_sandbox(sb) &&
                    manager_delete(m, sb->rec.id, build_sandbox_deleted, NULL, &(struct sbx_err){ 0 }) >= 0)
                        log_info("recovery: deleting %s, the setup sandbox of an interrupted template build",
                                 sb->rec.id);
        }
        sandbox_record_array_free(recs, n);
        sweep_dirs(m);
        return 0;
}
