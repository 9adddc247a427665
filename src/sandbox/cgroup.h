/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroups for sandboxes: one front, two backends (DESIGN §3).
 *   v1 ("hybrid"): limits in the v1 memory, cpu and pids hierarchies; if a cgroup2 tree is mounted
 *       beside them (/sys/fs/cgroup/unified) it is used for kill, freeze and per-exec groups, which
 *       need no v2 controller.
 *   v2: everything in the unified tree at /sys/fs/cgroup (memory.max, cpu.max, pids.max).
 * Every sandbox gets a cgroup named after its id under the daemon's parent in each hierarchy; the
 * parent is <sbxd's own cgroup>/sbx-<instance>, so sandboxes sit under sbxd's own cgroup.
 * In the unified tree, sbx-init lives in <id>/init and each exec in <id>/e<seq> (killable as a whole);
 * <id>/cgroup.procs is chowned to the sandbox's root uid so sbx-init may clone3(CLONE_INTO_CGROUP)
 * into those (the directory itself stays root's: the sandbox cannot create or remove cgroups).
 * Runs in the daemon (parent side); no logging.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

enum cgroup_mode {
        CGROUP_MODE_V1,
        CGROUP_MODE_V2,
        _CGROUP_MODE_MAX,
        _CGROUP_MODE_INVALID = -22,
};

enum cgroup_v1_controller {
        CGV1_MEMORY,
        CGV1_CPU,
        CGV1_CPUACCT,
        CGV1_PIDS,
        CGV1_FREEZER,
        _CGV1_MAX,
};

struct cgroup_limits {
        uint64_t memory_bytes; /* 0 = unlimited */
        double cpu;            /* cores; 0 = unlimited */
        uint64_t pids;         /* 0 = unlimited */
};

struct cgroup_root {
        enum cgroup_mode mode;
        int v1_fd[_CGV1_MAX];             /* owned: dir fd of <hierarchy mount>/<parent>, -1 if absent */
        int unified_fd;                   /* owned: dir fd of <cgroup2 mount>/<parent>, -1 if none */
        char unified_mount[64];           /* where the cgroup2 tree is mounted */
};

/* Detect the mode, create the parent "sbx-<instance>" below sbxd's own cgroup in each hierarchy.
 * In v2 mode the needed controllers are enabled on the way (sbxd moves itself into a leaf
 * "<own>/sbxd" first if its own cgroup must delegate controllers). */
int cgroup_root_init(struct cgroup_root *root, const char *instance, struct sbx_err *err);
/* Close the parent dirs; each is removed if no sandbox cgroup is left in it. */
void cgroup_root_release(struct cgroup_root *root);
const char *cgroup_mode_to_string(enum cgroup_mode m);

/* Create the sandbox cgroup `name` with limits; uid is the sandbox root's host uid (delegation of
 * <name>/cgroup.procs in the unified tree). Idempotent (existing dirs are reused). */
int cgroup_create(const struct cgroup_root *root, const char *name, const struct cgroup_limits *l, uid_t uid,
                  struct sbx_err *err);
/* Move pid into the sandbox cgroup in every hierarchy. */
int cgroup_attach(const struct cgroup_root *root, const char *name, pid_t pid, struct sbx_err *err);
/* Move pid into <name>/init of the unified tree (sbx-init's home); no-op without a unified tree. */
int cgroup_attach_init(const struct cgroup_root *root, const char *name, pid_t pid, struct sbx_err *err);
/* Kill every process of the sandbox (cgroup.kill; v1 fallback: freeze, SIGKILL each, thaw). */
int cgroup_kill(const struct cgroup_root *root, const char *name);
/* Freeze (or thaw) every process of the sandbox: cgroup.freeze in the unified tree, else the v1
 * freezer. Returns once asked; cgroup_frozen() says when the kernel is done (a thaw needs no wait).
 * Frozen processes still die of SIGKILL (cgroup_kill). */
int cgroup_freeze(const struct cgroup_root *root, const char *name, bool freeze);
/* A path to the sandbox's cgroup.events (unified tree only; -EOPNOTSUPP without): the kernel
 * signals a change of "frozen" or "populated" as a modification (inotify). */
int cgroup_events_path(const struct cgroup_root *root, const char *name, char *buf, size_t size);
/* 1 = every process is frozen, 0 = not (yet), < 0 error. */
int cgroup_frozen(const struct cgroup_root *root, const char *name);
/* True if any process is left in the sandbox cgroup. */
bool cgroup_populated(const struct cgroup_root *root, const char *name);
/* Remove the sandbox cgroup (and its init/e* children) in every hierarchy. -EBUSY if populated.
 * Missing dirs are fine. */
int cgroup_destroy(const struct cgroup_root *root, const char *name);

/* Per-exec group <name>/e<seq> in the unified tree. ret_fd: O_DIRECTORY fd for CLONE_INTO_CGROUP.
 * Its cgroup.procs is chowned to uid (the kernel checks write access to the target's and the
 * common ancestor's cgroup.procs for CLONE_INTO_CGROUP). -EOPNOTSUPP without a unified tree. */
bool cgroup_has_exec_groups(const struct cgroup_root *root);
int cgroup_exec_open(const struct cgroup_root *root, const char *name, uint64_t seq, uid_t uid, int *ret_fd);
int cgroup_exec_kill(const struct cgroup_root *root, const char *name, uint64_t seq);
/* True if processes are left in <name>/e<seq>. */
bool cgroup_exec_populated(const struct cgroup_root *root, const char *name, uint64_t seq);
int cgroup_exec_remove(const struct cgroup_root *root, const char *name, uint64_t seq);

/* Number of OOM kills so far in the sandbox's memory cgroup. */
int cgroup_oom_kills(const struct cgroup_root *root, const char *name, uint64_t *ret);

/* --- internal to sandbox/: the backends --- */
int cgroup_v1__init(struct cgroup_root *root, const char *instance, struct sbx_err *err);
int cgroup_v1__create(const struct cgroup_root *root, const char *name, const struct cgroup_limits *l,
                      struct sbx_err *err);
int cgroup_v1__oom_kills(const struct cgroup_root *root, const char *name, uint64_t *ret);
int cgroup_v2__init(struct cgroup_root *root, const char *instance, struct sbx_err *err);
int cgroup_v2__set_limits(int dirfd, const struct cgroup_limits *l, struct sbx_err *err);
int cgroup_v2__oom_kills(const struct cgroup_root *root, const char *name, uint64_t *ret);
/* Helpers shared by the backends. */
int cgroup__own_path(const char *controller, char *buf, size_t size);
int cgroup__mkdir_parent(int mount_fd, const char *own, const char *instance, int *ret_fd, struct sbx_err *err);
/* The "oom_kill N" counter of cgroup `name` below parent_fd, read from `file`. */
int cgroup__read_oom_kill(int parent_fd, const char *name, const char *file, uint64_t *ret);
