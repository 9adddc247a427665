/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox manager: the state machine of every sandbox (DESIGN §5), its processes and timers.
 * Runs on the daemon's loop thread; blocking work (namespace setup, directory removal) goes to the
 * libuv worker pool. Knows nothing about HTTP: the API layer calls these functions and gets results
 * through callbacks. Logs nothing above debug (errors travel in struct sbx_err).
 *
 * Async operations take a callback that is called exactly once, later, on the loop thread, unless
 * the function returns an error (then never: libuv rule, STYLE B3.7).
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "images/template.h"
#include "sandbox/spec.h"
#include "store/store.h"

struct manager;
struct exec_handle;

struct manager_config {
        const char *data_dir;       /* absolute; sandboxes live in <data_dir>/sandboxes/<id> */
        const char *init_path;      /* the sbx-init binary */
        const char *instance;       /* daemon instance id: names the cgroup parent */
        unsigned pool_size;         /* sandboxes kept ready per template in use (0 = no pool) */
        unsigned max_sandboxes;     /* live sandboxes at once (0 = SBX_MAX_SANDBOXES) */
        uint64_t stream_log;        /* bytes of output kept per process stream (0 = SBX_DEFAULT_STREAM_LOG) */
        const char *state_dir;      /* sandboxes/ and snapshots/ go here (NULL = data_dir) */
        bool btrfs;                 /* state_dir is btrfs: uppers are subvolumes, snapshots subvolume snapshots */
};

int manager_new(uv_loop_t *loop, struct store *store, struct template_store *templates,
                const struct manager_config *cfg, struct manager **ret, struct sbx_err *err);
/* Re-adopt sandboxes from the store after a (re)start and clean up what a crash left half-done. */
int manager_recover(struct manager *m, struct sbx_err *err);
/* The loop the manager runs on (for handles the API layer needs next to it). */
uv_loop_t *manager_loop(struct manager *m);
/* Stop timers and close handles; sandboxes keep running (they outlive sbxd by design). */
void manager_free(struct manager *m);

/* Called with the sandbox JSON (new reference) on success, or r < 0 and err. */
typedef void (*manager_done_fn)(void *data, int r, const struct sbx_err *err, json_t *result);

/* Create from a validated spec (ownership of *spec's contents is taken: it is zeroed). */
int manager_create(struct manager *m, struct sandbox_spec *spec, manager_done_fn done, void *data,
                   struct sbx_err *err);
int manager_stop(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);
int manager_start(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);
/* result is NULL on success (204). */
int manager_delete(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);

/* ---- lifecycle (core/lifecycle.c, docs/lifecycle.md) ---- */
/* Freeze every process (cgroup freezer); streams and attached clients stay open. done gets the
 * sandbox (state "paused", terminatesAt when timeout.paused is set). A paused sandbox: no-op.
 * 409 invalid_state unless running. */
int manager_pause(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);
/* Thaw; done gets the sandbox. A running sandbox: no-op. 409 unless paused. */
int manager_resume(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);
/* The API's autoResume: thaw id now if it is paused. 1 = resumed, 0 = was not paused. */
int manager_resume_if_paused(struct manager *m, const char *id, struct sbx_err *err);
/* True if id is a live, paused sandbox. */
bool manager_is_paused(struct manager *m, const char *id);
/* Checkpoint to disk and free the memory (CRIU when present; else the filesystem only, and the
 * result says "memory": false). done gets the sandbox (state "hibernated"). */
int manager_hibernate(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);
/* Bring a hibernated sandbox back (its processes too when the memory was kept). */
int manager_wake(struct manager *m, const char *id, manager_done_fn done, void *data, struct sbx_err *err);
/* PATCH: timers and metadata (sandbox/spec.h struct sandbox_patch); *ret = the sandbox. */
int manager_update(struct manager *m, const char *id, const struct sandbox_patch *p, json_t **ret,
                   struct sbx_err *err);

/* ---- snapshots, checkpoints, fork (core/snapshots.c, snapshot-use.c) ---- */
struct snapshot_opts {
        const char *kind;           /* "snapshot" or "checkpoint" */
        const char *name;           /* checkpoints: required, unique per sandbox; NULL = none */
        const char *description;    /* NULL = none */
        json_t *tags;               /* array of strings (borrowed), NULL = none */
};
/* Copy the sandbox's files into a new snapshot (running: frozen during the copy). done gets the
 * snapshot JSON {id, name, kind, sandboxId, parentId, template, layers, tags, sizeBytes, entries,
 * frozenMs, createdAt, description, patches, backend}. */
int manager_snapshot_create(struct manager *m, const char *id, const struct snapshot_opts *o, manager_done_fn done,
                            void *data, struct sbx_err *err);
struct snapshot_filter {
        const char *sandbox_id;     /* NULL = any */
        const char *kind;           /* NULL = snapshots and checkpoints (not fork bases) */
        const char *tag;            /* NULL = any */
};
int manager_snapshot_list(struct manager *m, const struct snapshot_filter *f, json_t **ret, struct sbx_err *err);
/* ref: an id or a tag. 404 snapshot_not_found. */
int manager_snapshot_get(struct manager *m, const char *ref, json_t **ret, struct sbx_err *err);
/* 409 snapshot_in_use while sandboxes stand on it or snapshots were taken of those. */
int manager_snapshot_delete(struct manager *m, const char *ref, struct sbx_err *err);
int manager_snapshot_tag(struct manager *m, const char *ref, const char *tag, bool add, json_t **ret,
                         struct sbx_err *err);
/* {snapshot, ancestors: [parent, grandparent, ...], children: [ids], sandboxes: [ids], template} */
int manager_snapshot_lineage(struct manager *m, const char *ref, json_t **ret, struct sbx_err *err);
int manager_snapshot_patch_add(struct manager *m, const char *ref, const char *name, const char *script,
                               json_t **ret, struct sbx_err *err);
int manager_snapshot_patch_list(struct manager *m, const char *ref, json_t **ret, struct sbx_err *err);
int manager_snapshot_patch_delete(struct manager *m, const char *ref, const char *pid, struct sbx_err *err);
/* count sandboxes with the parent's files and settings; the parent keeps running. done gets
 * {parentId, snapshotId, sandboxes: [...], errors: [...], durationMs, frozenMs}. */
int manager_fork(struct manager *m, const char *id, unsigned count, const char *name, bool memory,
                 manager_done_fn done, void *data, struct sbx_err *err);
/* The snapshot id of checkpoint name of sandbox_id (also of a deleted sandbox's that stayed).
 * 404 sandbox_not_found / checkpoint_not_found. */
int manager_checkpoint_id(struct manager *m, const char *sandbox_id, const char *name, char *buf, size_t size,
                          struct sbx_err *err);
/* Put the sandbox's files back as they were at checkpoint name (its processes restart if it ran). */
int manager_checkpoint_restore(struct manager *m, const char *id, const char *name, manager_done_fn done, void *data,
                               struct sbx_err *err);

/* ---- events (core/events.c) ---- */
struct event_sub;
/* A live event: JSON {id, sandboxId, type, at, data} (borrowed) and its numeric id. */
typedef void (*manager_event_fn)(void *data, json_t *event, uint64_t id);
/* {events:[...], nextCursor}: the stored events q selects. */
int manager_events_list(struct manager *m, const struct event_query *q, json_t **ret, struct sbx_err *err);
/* Every event appended from now on (of sandbox_id; NULL = all) goes to fn until cancelled. Replay
 * is manager_events_list's: read the log after your last id, then rely on this. */
int manager_events_subscribe(struct manager *m, const char *sandbox_id, manager_event_fn fn, void *data,
                             struct event_sub **ret, struct sbx_err *err);
void event_sub_cancel(struct event_sub *s); /* NULL-safe; may be called from fn */
/* "evt_N" or "N" -> N. */
bool event_id_parse(const char *s, uint64_t *ret);
json_t *event_row_json(const struct event_row *e);
/* Does a sandbox with this id exist or did it ever (deleted records are kept)? */
bool manager_sandbox_known(struct manager *m, const char *id);

/* Synchronous reads. */
int manager_get(struct manager *m, const char *id, json_t **ret, struct sbx_err *err);
/* Returns {"sandboxes":[...], "nextCursor": ...}. */
int manager_list(struct manager *m, const struct sandbox_filter *f, json_t **ret, struct sbx_err *err);
/* Number of live sandboxes per state, for /metrics. counts has _SANDBOX_STATE_MAX entries. */
void manager_state_counts(struct manager *m, unsigned *counts);

/* --- exec --- */
enum exec_stream { EXEC_STDOUT = 1, EXEC_STDERR = 2 };

struct exec_result {
        int exit_code;       /* exit status, or 128 + signal */
        uint64_t duration_usec;
        bool timed_out;
        bool oom_killed;
};

struct exec_callbacks {
        /* A chunk of output (may be called many times). Return false to pause reading (back-pressure);
         * resume with exec_handle_resume(). */
        bool (*output)(void *data, enum exec_stream stream, const char *buf, size_t len);
        /* Exactly once. r < 0 with err when the process could not run or the sandbox went away. */
        void (*done)(void *data, int r, const struct sbx_err *err, const struct exec_result *res);
};

/* Run spec (ownership of *spec's contents taken) in a running sandbox. *ret lets the caller cancel. */
int manager_exec(struct manager *m, const char *id, struct exec_spec *spec, const struct exec_callbacks *cb,
                 void *data, struct exec_handle **ret, struct sbx_err *err);
/* The caller lost interest (client went away): kill the process tree; done is NOT called afterwards. */
void exec_handle_cancel(struct exec_handle *h);
void exec_handle_resume(struct exec_handle *h);

/* ---- templates (core/build.c, core/images.c) ---- */

struct build_watch;
/* One build event: type "progress" {percent, stage}, "log" {line}, "step" {step, layer, cached},
 * "done" {name, layers, durationMs, cached}, "failed" {name, step, message, exitCode?, log},
 * "truncated" {firstAvailable}; type NULL = the build is over (last call for this watch). seq
 * numbers events from 1 (SSE ids). data is borrowed. */
typedef void (*build_event_fn)(void *data, const char *type, json_t *event, uint64_t seq);

/* Validate a template spec (core/build-spec.h) and start building it in the background; an
 * identical spec already building is joined. *ret = the build's status {name, state, percent,
 * stage, specDigest}. 400 for a bad spec, 409 template_building for a different spec of a name
 * being built. */
int manager_template_build(struct manager *m, json_t *spec, json_t **ret, struct sbx_err *err);
/* The status of the running or last finished build of name (a new reference), or NULL. */
json_t *manager_template_build_status(struct manager *m, const char *name);
/* Replay the events of name's build after seq `after`, then follow it live until it ends.
 * *ret = NULL when the build had already ended (fn got the end call before this returned). */
int manager_template_watch(struct manager *m, const char *name, uint64_t after, build_event_fn fn, void *data,
                           struct build_watch **ret, struct sbx_err *err);
void build_watch_cancel(struct build_watch *w);

/* {templates:[...]}: the catalog with states, published templates, first builds in progress. */
int manager_template_list(struct manager *m, json_t **ret, struct sbx_err *err);
/* One template with its layers, config and build state. 404 template_not_found. */
int manager_template_get(struct manager *m, const char *name, json_t **ret, struct sbx_err *err);
/* Unpublish name, then collect unreferenced layers; done gets {name, layersRemoved, bytesFreed}. */
int manager_template_remove(struct manager *m, const char *name, manager_done_fn done, void *data,
                            struct sbx_err *err);
/* {layers:[{digest, sizeBytes, tarBytes, entries, createdAt, source, templates, holds, refs}], count,
 * totalBytes} */
int manager_layers(struct manager *m, json_t **ret, struct sbx_err *err);
/* Remove the layers nothing references; done gets {layersRemoved, bytesFreed}. */
int manager_layer_gc(struct manager *m, manager_done_fn done, void *data, struct sbx_err *err);
/* Import the OCI / docker-save tarball in fd (dup'ed) as template name (NULL/"": from the image's
 * reference); done gets the template. */
int manager_template_import(struct manager *m, int fd, const char *name, manager_done_fn done, void *data,
                            struct sbx_err *err);
/* Write name as an OCI layout tarball to fd (dup'ed; rewound to 0 when done); done gets {name}. */
int manager_template_export(struct manager *m, const char *name, int fd, manager_done_fn done, void *data,
                            struct sbx_err *err);

/* ---- files (core/files.c, core/watchers.c; docs/files.md) ---- */

struct files_root;
struct files_lease;

/*
 * The root of sandbox id's files for the file API: a running sandbox's root (/proc/PID/root, what
 * its processes see, /tmp included), or a stopped one's overlay, mounted on first use as a detached
 * mount and kept while leases hold it (closed 10 s after the last one goes, or when the sandbox
 * starts). Synchronous, on the loop thread (a stopped sandbox's first lease takes a few ms).
 * 404 sandbox_not_found; 409 invalid_state while the sandbox is starting, stopping or failed.
 * A sandbox does not start while leases are held (409 files_busy): two overlays must never share
 * its upper directory.
 */
int manager_files_acquire(struct manager *m, const char *id, struct files_lease **ret, struct sbx_err *err);
const struct files_root *files_lease_root(const struct files_lease *l);
/* Loop thread. Safe with NULL. */
void files_lease_release(struct files_lease *l);

/* A blocking file operation: runs on the worker pool with the lease's root; *ret is its result
 * (JSON, may stay NULL for 204). */
typedef int (*manager_files_fn)(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err);
/* Run fn on this thread with the lease's root, acting as user (NULL: the sandbox's root; else a
 * name or id of its /etc/passwd, 404 user_not_found) under that identity (files_identity_enter).
 * manager_files_run does this on the worker pool; call it directly for the few quick calls that
 * must happen on the loop (opening an upload's target). */
int files_lease_call(struct files_lease *l, const char *user, manager_files_fn fn, void *data, json_t **ret,
                     struct sbx_err *err);
/*
 * Acquire a lease, run fn(root, fn_data) on the worker pool (under the sandbox's file lock when
 * exclusive: batches, replaces, extractions do not interleave), release, then done(done_data, r,
 * err, result) on the loop thread. user (NULL: the sandbox's root) is a name or id from the
 * sandbox's /etc/passwd: what fn creates belongs to that user (404 user_not_found). fn_data and
 * user are the caller's; they must live until done.
 */
int manager_files_run(struct manager *m, const char *id, bool exclusive, const char *user, manager_files_fn fn,
                      void *fn_data, manager_done_fn done, void *done_data, struct sbx_err *err);

/* --- watchers (core/watchers.c) --- */
struct watcher_sub;
struct files_watch_opts;
/* One event to a subscriber: type "add" | "change" | ... | "end" (the watcher is gone; last call),
 * event JSON (borrowed), seq numbers events of this watcher from 1. */
typedef void (*watcher_event_fn)(void *data, const char *type, json_t *event, uint64_t seq);
/* Start a watcher on a running sandbox; *ret = its JSON {id, sandboxId, path, recursive, ignore,
 * content, createdAt, events}. 409 sandbox_not_running; 429 when SBX_MAX_WATCHERS are there. */
int manager_watcher_create(struct manager *m, const char *id, const char *path, const struct files_watch_opts *o,
                           json_t **ret, struct sbx_err *err);
int manager_watcher_list(struct manager *m, const char *id, json_t **ret, struct sbx_err *err);
int manager_watcher_get(struct manager *m, const char *id, const char *wid, json_t **ret, struct sbx_err *err);
int manager_watcher_delete(struct manager *m, const char *id, const char *wid, struct sbx_err *err);
/* Replay the kept events after seq `after`, then follow live until the watcher ends ("end" is the
 * last call). *ret = NULL if it already ended (fn got "end" before this returned). */
int manager_watcher_subscribe(struct manager *m, const char *id, const char *wid, uint64_t after,
                              watcher_event_fn fn, void *data, struct watcher_sub **ret, struct sbx_err *err);
void watcher_sub_cancel(struct watcher_sub *s);
