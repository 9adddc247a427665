/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/core/: the manager's and each live sandbox's state. */
#pragma once

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "core/manager.h"
#include "sandbox/cgroup.h"
#include "sandbox/init-client.h"
#include "sandbox/sandbox.h"
#include "sandbox/tree.h"

#define SANDBOX_HASH_SIZE 4096
#define EXEC_GROUP_POOL 8   /* empty per-exec cgroups kept per sandbox: mkdir/rmdir off the exec path */

enum op_kind {
        OP_CREATE,
        OP_START,
        OP_STOP,
        OP_DELETE,
        OP_POOL,                         /* a launch for the pool: no row, no client */
        OP_PAUSE,                        /* freezing (lifecycle.c) */
        OP_HIBERNATE,
        OP_WAKE,
        OP_SNAPSHOT,                     /* copying the upper (snapshots.c) */
        OP_RESTORE,                      /* a checkpoint replaces the upper (snapshot-use.c) */
};

/* One asynchronous lifecycle operation in flight on a sandbox (at most one at a time). */
struct op {
        enum op_kind kind;
        struct sandbox *sb;              /* holds a ref */
        manager_done_fn done;            /* may be NULL (internal: timers) */
        void *data;
        uv_work_t work;
        int r;
        struct sbx_err err;
        struct sandbox_proc proc;        /* OP_CREATE/OP_START result */
        struct template_info tmpl;
        char reason[SBX_MAX_REASON];     /* state reason to record when done (stop/delete by timer) */
        uint64_t t0;
        uint32_t us_queue, us_dirs, us_cgroup;   /* launch timing, for the debug log */
        unsigned wait_rounds;            /* polls for an empty cgroup after a kill */
        struct restore_job *restore;     /* OP_RESTORE */
        struct freeze_watch *freeze;     /* OP_PAUSE: inotify on cgroup.events */
};

struct sandbox {
        unsigned refs;
        struct manager *m;
        struct sandbox *hnext;
        struct sandbox_record rec;
        struct sandbox_spec spec;        /* parsed from rec.spec_json */
        /* the template's layers when the sandbox was created (bottom first), pinned for its life
         * (held in the layer store, stored in rec.spec_json as "layers"); 0 = host / older record */
        char (*layers)[SBX_LAYER_DIGEST_MAX];
        size_t n_layers;
        bool layers_held;
        /* the snapshots it stands on (spec.snapshot and its parents, newest first): lower layers
         * above the template's; snapshots.c */
        char (*chain)[SBX_ID_MAX];
        size_t n_chain;
        char dir[PATH_MAX];              /* <data>/sandboxes/<id> */

        int pidfd;                       /* owned, -EBADF when not running */
        uv_poll_t pidfd_poll;
        bool pidfd_poll_init;

        int ctl_fd;                      /* owned: connection to sbx-init */
        uv_poll_t ctl_poll;
        bool ctl_poll_init;

        struct process *procs;           /* process-store.c: running and recently ended, by seq */
        struct code_context *contexts;   /* code.c: interpreters of code runs */
        struct session *sessions;        /* session.c */
        unsigned n_procs, n_procs_running;
        unsigned n_attached;             /* clients attached to its processes (they keep it from idling) */
        uint32_t init_version;           /* sbx-init's protocol version (HELLO), 0 until it answered */

        struct exec_handle *execs;       /* in flight */
        unsigned n_execs;
        uint64_t exec_seq;
        uint64_t free_groups[EXEC_GROUP_POOL]; /* empty exec cgroups kept for reuse */
        unsigned n_free_groups;
        uint64_t oom_seen;               /* OOM kills of the memory cgroup already attributed */

        struct op *op;                   /* lifecycle operation in flight, or NULL */

        /* files.c: leases on the sandbox's files, the stopped sandbox's overlay, watchers */
        unsigned n_leases;               /* live struct files_lease (each holds a ref) */
        int vol_fd;                      /* owned: detached overlay mount while stopped, or -EBADF */
        unsigned vol_users;              /* leases using vol_fd */
        uv_timer_t vol_timer;            /* closes vol_fd when idle */
        bool vol_timer_init;
        pthread_mutex_t files_lock;      /* exclusive file operations (batch, replace, untar) */
        struct watcher *watchers;        /* watchers.c */
        unsigned n_watchers;
        uv_timer_t lifetime_timer, idle_timer, wait_timer, paused_timer;
        bool removed;                    /* not in the hash table (yet, or any more) */
        bool closed;                     /* handles closed by sandbox__remove(); freed when refs drop to 0 */
        bool pooled;                     /* launched ahead for the pool: no row, no client yet */
};

struct manager {
        uv_loop_t *loop;
        struct store *store;
        struct template_store *templates;
        struct cgroup_root cg;
        char data_dir[PATH_MAX];
        char sandboxes_dir[PATH_MAX];
        char instance[32];
        int init_exe_fd;
        int seccomp_fd;                  /* sealed memfd: both seccomp filters, compiled once */
        struct sandbox *table[SANDBOX_HASH_SIZE];
        unsigned n_live;
        unsigned char *slots;            /* uid slot bitmap (1 = used) */
        unsigned pending_cleanups;       /* deleted sandboxes' cleanups on the worker pool */
        unsigned pending_launches;       /* launches on the worker pool */
        unsigned pool_size;              /* sandboxes kept ready per template used */
        unsigned max_sandboxes;          /* cap on live sandboxes (fds: 2 each) */
        struct pool *pools;              /* one per template that was asked for */
        struct tbuild *builds;           /* build.c: running and recently finished template builds */
        bool freeing;                    /* manager_free() was called; free when cleanups end */
        uint64_t stream_log_bytes;       /* output kept per process stream */
        char snapshots_dir[PATH_MAX];    /* <state>/snapshots */
        bool btrfs;                      /* storage.c: uppers and snapshots are btrfs subvolumes */
        struct snapshot *snapshots;      /* snapshots.c: every snapshot, oldest first */
        unsigned n_snapshots;
        struct event_sub *event_subs;    /* events.c: live subscribers */
        unsigned n_event_subs, event_notifying;
};

struct sandbox *manager__find(struct manager *m, const char *id);
/* manager__find, or NULL with 404 sandbox_not_found in err. */
struct sandbox *manager__lookup(struct manager *m, const char *id, struct sbx_err *err);
/* 409 invalid_state naming the sandbox's state. */
int manager__busy_error(struct sandbox *sb, struct sbx_err *err);

/* files.c / watchers.c hooks */
void files__sandbox_init(struct sandbox *sb);
void files__sandbox_fini(struct sandbox *sb);  /* last unref */
/* the sandbox leaves RUNNING (stop, exit, delete): watchers end */
void files__not_running(struct sandbox *sb, const char *reason);
/* before a start: -SBX_E_CONFLICT files_busy while leases are held; closes the idle volume */
int files__before_start(struct sandbox *sb, struct sbx_err *err);
/* removal from the table: close the volume (if idle) and its timer */
void files__sandbox_remove(struct sandbox *sb);
void watchers__end_all(struct sandbox *sb, const char *reason);
/* A sandbox object from a record (copied), not yet in the table; its uid slot is marked used. */
int sandbox__new(struct manager *m, const struct sandbox_record *rec, struct sandbox **ret, struct sbx_err *err);
void sandbox__insert(struct sandbox *sb);
/* lifecycle.c: arm the timers the sandbox's state calls for from its stored deadlines (lifetime
 * and idle while running, paused while paused or hibernated); stop the others. */
void sandbox__start_timers(struct sandbox *sb);
void sandbox__stop_timers(struct sandbox *sb);
/* 409: "sandbox_paused" (with the autoResume hint) for a paused sandbox, else invalid_state. */
int manager__not_running_error(struct sandbox *sb, struct sbx_err *err);
/* Begin a stop (state stopping, processes killed; the op finishes when they are gone). */
void manager__begin_stop(struct op *op);
/* Delete now (the reply does not wait for the cleanup). reason: the state reason, may be NULL. */
int manager__delete(struct sandbox *sb, manager_done_fn done, void *data, const char *reason, struct sbx_err *err);
void manager__op_finish(struct op *op, int r, const struct sbx_err *err, json_t *result);
void manager__op_finish_sandbox(struct op *op);
/* After a stop's processes are gone: finish as stopped (or hibernated/deleted by op kind). */
void manager__after_stopped(struct op *op);

/* lifecycle.c */
void lifecycle__json(const struct sandbox *sb, json_t *o);      /* expiresAt, terminatesAt, pausedAt, ... */
void lifecycle__hibernated(struct op *op);                      /* OP_HIBERNATE's processes are gone */
int lifecycle__stop_hibernated(struct sandbox *sb, manager_done_fn done, void *data, struct sbx_err *err);
void lifecycle__woken(struct sandbox *sb);                      /* a wake's launch succeeded */
/* The sandbox's memory cgroup killed something since the last look: event sandbox.oom {kills,
 * new, victim} and true. what: the command or process that died of SIGKILL, for the event. */
bool manager__check_oom(struct sandbox *sb, const char *what);

/* snapshots.c, snapshot-use.c */
struct snapshot;
typedef void (*snapshot_done_fn)(void *data, int r, const struct sbx_err *err, struct snapshot *s);
/* What a create from a snapshot needs of it (borrowed from the index; valid until it returns). */
struct snapshot_ref {
        char id[SBX_ID_MAX];
        char template_name[SBX_MAX_TEMPLATE_NAME + 1];
        const char (*layers)[SBX_LAYER_DIGEST_MAX];  /* the template layers below it, bottom first */
        size_t n_layers;
        json_t *spec;                                /* the source sandbox's spec */
        json_t *patches;                             /* NULL = none */
};
int snapshots__load(struct manager *m, struct sbx_err *err);  /* before sandboxes are recovered */
void snapshots__free_all(struct manager *m);
/* The chain of snapshot id (itself, then its parents): malloc'd array of *ret_n ids. */
int snapshots__chain(struct manager *m, const char *id, char (**ret)[SBX_ID_MAX], size_t *ret_n, struct sbx_err *err);
/* The overlay lowers of sb, topmost first (its snapshots, then tmpl's layers), and the id base of
 * each (sandbox.h lower_bases; optional); one malloc'd block. */
int manager__lower_paths(struct sandbox *sb, const struct template_info *tmpl, char ***ret, uint32_t **ret_bases,
                         size_t *ret_n);
/* The host id of snapshot id's tree root (0 if unknown). */
uint32_t snapshots__id_base(struct manager *m, const char *id);
int snapshots__take(struct manager *m, const char *id, const char *kind, const char *name, const char *description,
                    json_t *tags, snapshot_done_fn done, void *data, struct sbx_err *err);
const char *snapshots__id(const struct snapshot *s);
uint64_t snapshots__frozen_us(const struct snapshot *s);
int snapshots__resolve(struct manager *m, const char *ref, struct snapshot_ref *ret, struct sbx_err *err);
int snapshots__checkpoint_id(struct manager *m, const char *sandbox_id, const char *name, char *buf, size_t size,
                             struct sbx_err *err);
/* manager_create with spec->snapshot set: the snapshot's template, layers and spec, then patches. */
int snapshots__create(struct manager *m, struct sandbox_spec *spec, manager_done_fn done, void *data,
                      struct sbx_err *err);
/* A sandbox left the table: fork bases nobody stands on any more go. */
void snapshots__sandbox_gone(struct manager *m, struct sandbox *sb);
/* OP_RESTORE once the processes are gone. */
void snapshots__restore_files(struct op *op);
/* storage.c: plain directories or btrfs subvolumes (manager_config.btrfs). Blocking (worker pool). */
/* <dir>/upper, work, merged for a new sandbox (on btrfs <dir> is a subvolume). */
int storage__prepare(struct manager *m, const char *dir, uid_t uid, struct sbx_err *err);
/* rm -rf a sandbox dir (a subvolume deleted whole). */
void storage__remove_dir(struct manager *m, const char *dir);
/* Snapshot the sandbox dir into <tmp>/root (tmp exists): a read-only subvolume snapshot of the
 * whole dir on btrfs, else a copy of its upper keeping ids; *st filled by a copy only. */
int storage__snapshot(struct manager *m, const char *dir, const char *tmp, struct tree_stats *st,
                      struct sbx_err *err);
/* Below a snapshot's dir, where its layer tree is: "/root" or (btrfs) "/root/upper". */
const char *storage__layer_subdir(const struct manager *m);
/* Put a checkpoint's files (snapshot_dir) in place of the sandbox dir's (ids from..→to); crash-safe
 * with storage__recover. */
int storage__restore(struct manager *m, const char *snapshot_dir, const char *dir, uid_t from, uid_t to,
                     struct sbx_err *err);
/* Recovery: finish or undo a restore a crash interrupted. */
void storage__recover(struct manager *m, const char *dir);
/* rm -rf a snapshot's dir (<snapshots>/<id> or tmp-*). */
void storage__remove_snapshot(struct manager *m, const char *path);
/* "dir" or "btrfs" */
const char *storage__name(const struct manager *m);

/* manager_maybe_free for the other files (jobs on the worker pool end) */
void manager_maybe_free_pub(struct manager *m);

/* events.c */
void manager__event(struct manager *m, const char *sandbox_id, const char *type, json_t *data);
/* "sandbox.<new state>" {from, to, reason} */
void manager__event_state(struct sandbox *sb, enum sandbox_state from, const char *reason);
void manager__events_free(struct manager *m);
int manager__slot_alloc(struct manager *m, uint32_t *ret);
void manager__slot_set(struct manager *m, uint32_t slot, bool used);
struct op *op_new(struct sandbox *sb, enum op_kind kind, manager_done_fn done, void *data);
void manager__work_launch(uv_work_t *w);
void manager__after_launch(uv_work_t *w, int status);
/* Launch a stopped or hibernated sandbox again (start, wake): state `during` until it runs; the
 * state it had comes back if the launch cannot even be queued. */
int manager__relaunch(struct sandbox *sb, enum op_kind kind, enum sandbox_state during, manager_done_fn done,
                      void *data, struct sbx_err *err);
/* New sandbox object from a record (copied); inserted into the table. */
int manager__adopt_record(struct manager *m, const struct sandbox_record *rec, struct sandbox **ret,
                          struct sbx_err *err);
void sandbox_ref(struct sandbox *sb);
void sandbox_unref(struct sandbox *sb);
/* Persist rec (updated_ms set); logs nothing: failures are returned. */
int sandbox__save(struct sandbox *sb, struct sbx_err *err);
void sandbox__set_state(struct sandbox *sb, enum sandbox_state st, const char *reason);
/* Start watching a running sandbox: pidfd + control connection + timers. */
int sandbox__attach_running(struct sandbox *sb, int pidfd, struct sbx_err *err);
/* Kill everything, detach handles, remove cgroups (best effort, bounded wait). Synchronous. */
void sandbox__teardown_sync(struct sandbox *sb);
void sandbox__close_ctl(struct sandbox *sb);
void sandbox__remove(struct sandbox *sb);
/* Same, but the uid slot stays taken (its processes may still be dying). */
void sandbox__remove_keep_slot(struct sandbox *sb);
json_t *sandbox__to_json(const struct sandbox *sb);
void sandbox__idle_touch(struct sandbox *sb);

/* The stored spec text: spec's canonical JSON plus "layers" (malloc'd, NULL on ENOMEM). */
char *manager__spec_text(const struct sandbox_spec *spec, const char (*layers)[SBX_LAYER_DIGEST_MAX], size_t n_layers);
/* The template a launch of sb uses: its pinned layers, or (host, older records) a lookup. */
int manager__launch_template(struct manager *m, struct sandbox *sb, struct template_info *ret, struct sbx_err *err);

/* manager_create with the template already resolved (build.c runs setup steps on partial templates). */
int manager__create_from(struct manager *m, struct sandbox_spec *spec, const struct template_info *tmpl,
                         manager_done_fn done, void *data, struct sbx_err *err);

/* build.c: template builds from specs */
bool build__running(struct manager *m, const char *name);  /* a first build of name runs */
void build__free_all(struct manager *m);
void build__append_unlisted(struct manager *m, json_t *arr); /* template list entries of unpublished builds */
bool build__forget_failed(struct manager *m, const char *name); /* drop a failed build's record */

/* pool.c: sandboxes launched ahead, per template, handed out by manager_create */
struct pool;
/* Take a ready sandbox of template (NULL if none) and top the pool up again. */
struct sandbox *pool__take(struct manager *m, const char *template_name, const struct template_info *tmpl);
/* Launch sandboxes until the pool of template holds m->pool_size (no-op if 0). */
void pool__refill(struct manager *m, const char *template_name);
void pool__launched(struct sandbox *sb, int r, const struct sbx_err *err, uint64_t usec);
/* Kill and remove every pooled sandbox (shutdown). Blocking. */
void pool__drain(struct manager *m);
/* Free the pool bookkeeping (no launch may be in flight). */
void pool__free_all(struct manager *m);

/* exec.c */
void exec__on_ctl_message(struct sandbox *sb, struct init_client_msg *msg);
/* A cgroup of the unified tree for one command or process (from the sandbox's pool of empty ones, else
 * made, named after seq): *ret_group (0 = none: no unified tree) and an fd to spawn into. */
int exec__group_take(struct sandbox *sb, uint64_t seq, uint64_t *ret_group, int *ret_fd);
/* Back to the pool once empty (a group that was killed is removed instead). */
void exec__group_put(struct sandbox *sb, uint64_t group, bool killed);
/* The environment of a command: defaults, then extra, then the sandbox's env, then the spec's (later
 * entries win). The strings are borrowed; free() only the array. NULL on ENOMEM. */
char **exec__build_env(const struct sandbox *sb, const struct exec_spec *spec, const char *const *extra,
                       size_t n_extra);

/* process-store.c: processes (core/process.h) */
struct process;
/* sbx-init's message about a process: true if it was one (exec.c need not look). */
bool process__on_ctl_message(struct sandbox *sb, struct init_client_msg *msg);
bool process__owns_seq(struct sandbox *sb, uint64_t seq);
/* The sandbox stopped (lost: its sbx-init went away instead; the processes' ends are unknown). */
void process__sandbox_stopped(struct sandbox *sb, bool lost);
void process__sandbox_remove(struct sandbox *sb);
/* After an sbxd restart: the sandbox's processes from the store (before sbx-init's LIST). */
void process__recover(struct sandbox *sb);

/* session.c (core/session.h) */
struct session;
void session__sandbox_remove(struct sandbox *sb);
void session__recover(struct sandbox *sb);

/* code.c: contexts (core/code.h) */
struct code_context;
void code__sandbox_remove(struct sandbox *sb);
/* After process__recover(): the contexts whose interpreters still run. */
void code__recover(struct sandbox *sb);
void exec__fail_all(struct sandbox *sb, const char *why);
