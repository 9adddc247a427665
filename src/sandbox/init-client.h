/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sbxd's side of the sbx-init control protocol (init-proto.h, docs/internals/init.md). Runs on
 * the daemon's loop thread: every socket is non-blocking, nothing here blocks, sleeps or logs.
 * Everything received is untrusted (root in the sandbox controls sbx-init): packets are checked
 * against the protocol before anything is returned, and a packet that fails a check is dropped
 * with -EBADMSG, its fds closed. The parse/build halves are pure and take plain buffers, so the
 * unit tests and fuzzers can feed them crafted bytes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/init-proto.h"

/* Largest valid reply: an INIT_LIST_REPLY with SBX_INIT_MAX_PROCS entries. */
#define SBX_INIT_MAX_REPLY \
        (sizeof(struct init_msg) + sizeof(uint32_t) + SBX_INIT_MAX_PROCS * sizeof(struct init_proc_info))
#define SBX_INIT_MAX_FDS 3 /* fds one reply may carry (INIT_SPAWNED, INIT_FDS) */

/* One validated message from sbx-init. */
struct init_client_msg {
        uint32_t type;                       /* INIT_HELLO_REPLY .. INIT_FDS */
        uint64_t id;                         /* from the header; sbxd must look it up itself */
        union {
                uint32_t version;            /* INIT_HELLO_REPLY: >= 1 */
                struct init_spawned spawned; /* INIT_SPAWNED: error==0 <=> pid>0 and fds (see fd_mask) */
                struct init_exited exited;   /* INIT_EXITED: pid > 0 */
                struct init_result result;   /* INIT_RESULT; INIT_FDS: its error (reserved 0), the
                                                mask is in fd_mask */
        };
        uint32_t fd_mask;                    /* INIT_SPAWNED and INIT_FDS on success: enum init_fd_mask,
                                                what fds[] holds in that order: STDIN|STDOUT|STDERR,
                                                STDOUT|STDERR (FDS only) or PTY; else 0 */
        bool pty;                            /* fd_mask is INIT_FD_PTY: fds[0] is a terminal's master */
        struct init_proc_info *procs;        /* owned: INIT_LIST_REPLY entries, NULL otherwise */
        uint32_t n_procs;                    /* <= SBX_INIT_MAX_PROCS */
        int fds[SBX_INIT_MAX_FDS];           /* owned, -EBADF when unused; n_fds == popcount(fd_mask).
                                                O_CLOEXEC|O_NONBLOCK. Pipes with their access mode
                                                checked (stdin write-only, others read-only); a pty
                                                master is a character device, O_RDWR, TIOCGPTN works */
        unsigned n_fds;
};

/* How to start a process (init_client_send_spawn). Every field may stay 0 but cgroup_fd: 0 is an
 * fd, say -1 for none. */
struct init_spawn_opts {
        uint32_t flags;     /* INIT_SPAWN_PTY, _USER, _KEEP_STDIN (not PTY with KEEP_STDIN);
                               INIT_SPAWN_INTO_CGROUP is set or cleared from cgroup_fd */
        uint32_t uid, gid;  /* with INIT_SPAWN_USER: 0..SBX_INIT_MAX_ID inside the sandbox */
        uint16_t cols, rows; /* with INIT_SPAWN_PTY: 0..SBX_MAX_PTY_SIZE, 0 = 80 columns / 24 rows */
        int cgroup_fd;      /* a cgroup2 directory fd inside the sandbox's own cgroup subtree (O_PATH is
                               enough) to start the process in, or < 0. Borrowed */
        uint32_t version;   /* sbx-init's protocol version (INIT_HELLO_REPLY), 0 = unknown: not checked.
                               Flags that version does not know fail with -EPROTONOSUPPORT */
};

/* Initialise an empty message (no fds, no procs). */
void init_client_msg_init(struct init_client_msg *m);
/* Close every fd still in m->fds (claim one with TAKE_FD(m->fds[i]) first), free m->procs, and
 * re-initialise m. NULL-safe. */
void init_client_msg_release(struct init_client_msg *m);

/*
 * Connect to sbx-init's control socket in the network namespace netns_fd. The socket is created
 * while the calling thread is setns()'d into netns_fd and the thread returns to its original
 * netns before this returns (if that step fails, -errno is returned and the thread may be left in
 * netns_fd: treat it as fatal for that thread). The returned fd is SOCK_CLOEXEC|SOCK_NONBLOCK and
 * belongs to the caller. Needs CAP_SYS_ADMIN over netns_fd. Returns 0 or -errno (-EAGAIN if
 * sbx-init's backlog is full, -ECONNREFUSED if it does not listen).
 */
int init_client_connect(int netns_fd, int *ret_fd);

/*
 * Requests. Each sends exactly one packet with MSG_DONTWAIT|MSG_NOSIGNAL. Returns 0, -EAGAIN
 * (socket buffer full: retry when writable), -EINVAL/-E2BIG for arguments outside the protocol's
 * limits (nothing sent), or another -errno from sendmsg (the connection is unusable).
 */
int init_client_send_hello(int fd);
/* argv: NULL-terminated, 1..SBX_MAX_ARGV entries. envp: NULL-terminated (NULL = empty), at most
 * SBX_INIT_MAX_ENVC. cwd: absolute, NULL = "/". opts: NULL = pipes, as root, no cgroup. Reply
 * INIT_SPAWNED. -EPROTONOSUPPORT (nothing sent) if opts->version is known and too old for the
 * flags: a version-1 sbx-init would drop the connection instead. */
int init_client_send_spawn(int fd, uint64_t id, char *const argv[], char *const envp[], const char *cwd,
                           const struct init_spawn_opts *opts);
/* Signal a tracked process's process group. signo 0..64. Reply INIT_RESULT. */
int init_client_send_signal(int fd, uint64_t id, int signo);
/* Forget process id in sbx-init and close its fd copies. No reply. */
int init_client_send_release(int fd, uint64_t id);
int init_client_send_list(int fd);
/* Ask for new copies of the fds sbx-init keeps for process id. Reply INIT_FDS. */
int init_client_send_get_fds(int fd, uint64_t id);
/* v2: sbx-init closes its kept copy of process id's stdin write end (INIT_SPAWN_KEEP_STDIN); the
 * process reads EOF once sbxd's copies are closed too. Reply INIT_RESULT (ESRCH: unknown id). */
int init_client_send_close_stdin(int fd, uint64_t id);

/* The protocol version sbx-init must speak (INIT_HELLO_REPLY) for a spawn with these
 * INIT_SPAWN_* flags: 1, or 2 for PTY, USER and KEEP_STDIN. Pure. */
uint32_t init_client_spawn_version(uint32_t flags);

/*
 * Receive and validate one packet. On success fills *ret (which the caller then owns and releases
 * with init_client_msg_release()) and returns 0. Returns -EAGAIN if no packet is queued,
 * -ECONNRESET when sbx-init closed the connection, -EBADMSG for a packet that breaks the
 * protocol (its fds are closed; the connection should be dropped), or another -errno.
 */
int init_client_recv(int fd, struct init_client_msg *ret);

/*
 * Pure halves, exposed for tests and fuzzing.
 *
 * init_client_parse: validate the packet buf[0..len) that arrived with n_fds descriptors and fill
 * *ret (fds left at -EBADF; the caller attaches them). Returns 0, -EBADMSG, or -ENOMEM.
 *
 * init_client_build_spawn: encode an INIT_SPAWN packet into a new malloc'ed buffer (*ret_buf,
 * caller frees; *ret_len bytes). opts->flags go on the wire as they are (INIT_SPAWN_INTO_CGROUP
 * included; cgroup_fd and version are not looked at); NULL = no flags. Returns 0, -EINVAL (unknown
 * or clashing flags, ids or sizes out of range, relative cwd, no argv), -E2BIG or -ENOMEM.
 */
int init_client_parse(const void *buf, size_t len, unsigned n_fds, struct init_client_msg *ret);
int init_client_build_spawn(uint64_t id, char *const argv[], char *const envp[], const char *cwd,
                            const struct init_spawn_opts *opts, void **ret_buf, size_t *ret_len);
