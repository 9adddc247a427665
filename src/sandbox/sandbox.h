/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Launching a sandbox's namespaces and its PID 1 (sbx-init), and the per-sandbox directories.
 * The isolation library knows nothing about HTTP or SQL (STYLE B8.1).
 *
 * sandbox_launch() runs in the daemon (parent side) and blocks for a few milliseconds: call it from a
 * worker thread. It clones an outer child into a new user namespace, maps uid/gid 0..65535 to
 * uid_base.., puts it into the sandbox cgroups, hands it idmapped read-only mounts of the template
 * (open_tree + mount_setattr(MOUNT_ATTR_IDMAP)), and the outer child unshares the remaining
 * namespaces and forks PID 1 (as sbxd's child, CLONE_PARENT), which builds the overlay root,
 * pivots into it and executes sbx-init. Returns when sbx-init listens on its control socket.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "sandbox/cgroup.h"

#define SBX_SANDBOX_MAX_BINDS 4
#define SBX_SANDBOX_MAX_LOWERS 128              /* overlay lower layers (= SBX_MAX_IMAGE_LAYERS) */

struct sandbox_bind {
        const char *source;   /* host path, mounted read-only, idmapped */
        const char *target;   /* absolute path inside the sandbox; must exist in the lower layer */
};

struct sandbox_launch {
        const char *id;                         /* becomes the hostname */
        const char *const *lowers;              /* template layers (host paths), topmost first */
        size_t n_lowers;                        /* 1..SBX_SANDBOX_MAX_LOWERS */
        /* per lower (NULL = all 0): the host id its tree's root user has. 0: owned by 0..65535
         * (template layers); else a snapshot keeping its source sandbox's ids (uid base..base+65535),
         * mounted with a map from those to this sandbox's */
        const uint32_t *lower_bases;
        struct sandbox_bind binds[SBX_SANDBOX_MAX_BINDS];
        size_t n_binds;
        const char *dir;                        /* per-sandbox dir holding upper/, work/, merged/ (+ staging l*, b*) */
        uid_t uid_base;                         /* host uid of root inside */
        int init_exe_fd;                        /* fd of the sbx-init binary (O_PATH ok) */
        int seccomp_fd;                         /* the sealed seccomp blob for sbx-init */
        const struct cgroup_root *cg;
        const char *cg_name;                    /* the sandbox's cgroup name (its id) */
        uint64_t tmp_size;                      /* bytes for the /tmp tmpfs */
        uint64_t nproc;                         /* RLIMIT_NPROC inside, 0 = leave as is */
};

#define SBX_SANDBOX_MAX_NOFILE 1048576          /* RLIMIT_NOFILE ceiling inside a sandbox */

struct sandbox_proc {
        pid_t pid;                              /* host pid of sbx-init */
        int pidfd;                              /* owned */
        uint64_t start_time;                    /* /proc/PID/stat starttime, to detect pid reuse */
        /* where the launch spent its time (µs), for debug logs and benchmarks */
        uint32_t us_prepare;                    /* clone, id maps, cgroups, idmapped mounts */
        uint32_t us_namespaces;                 /* outer child: unshare + fork PID 1 (sync #2) */
        uint32_t us_root;                       /* PID 1: mounts, pivot, exec sbx-init, ready (sync #3) */
};

/* Parent side. Fills *ret on success (caller owns ret->pidfd). On failure everything it started is
 * killed and reaped (cgroups are the caller's to remove). */
int sandbox_launch(const struct sandbox_launch *l, struct sandbox_proc *ret, struct sbx_err *err);

/*
 * The files of a stopped sandbox: its overlay (l->lowers over <dir>/upper, as a launch would mount
 * it, without binds) mounted by a short-lived child in a user namespace with the sandbox's id map,
 * as a detached mount whose fd (*ret_fd, the root directory; owned by the caller) keeps it alive.
 * Uses only l->dir, lowers, n_lowers, uid_base. Never while the sandbox runs: the upper dir must
 * not be in two overlays at once (the caller serialises with start). Blocking, a few ms.
 */
int sandbox_volume_open(const struct sandbox_launch *l, int *ret_fd, struct sbx_err *err);

/* mkdir <dir>/{upper,work,merged} owned by uid (upper/work) — idempotent. */
int sandbox_dirs_prepare(const char *dir, uid_t uid, struct sbx_err *err);
/* rm -rf dir without following symlinks (the upper is written by the sandbox). Blocking. */
int sandbox_dirs_remove(const char *dir);

/* starttime (clock ticks since boot) of pid, from /proc/PID/stat. */
int proc_start_time(pid_t pid, uint64_t *ret);
/* Open a pidfd for pid and check that it is still the process that started at start_time. */
int proc_pidfd_verified(pid_t pid, uint64_t start_time, int *ret_pidfd);

/* --- internal to sandbox/ --- */
struct child_args;
int child_outer(void *arg);  /* runs in the cloned outer child; never returns */
int child_volume(void *arg); /* the child of sandbox_volume_open; never returns */
