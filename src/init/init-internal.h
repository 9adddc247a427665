/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to sbx-init (src/init/): request parsing (request.c, pure), process spawning
 * (spawn.c) and the server loop (main.c). sbx-init is a static, single-threaded binary; it links
 * nothing from src/ but sandbox/seccomp.c and header-only common code.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/limits.h"
#include "sandbox/init-proto.h"
#include "sandbox/seccomp.h"

/* Exit codes of sbx-init when start-up fails (it never exits once it serves). */
enum init_exit {
        INIT_EXIT_SETUP = 10,   /* prctl, signals, stdio */
        INIT_EXIT_SECCOMP = 11, /* the sandbox filter could not be built or loaded */
        INIT_EXIT_SOCKET = 12,  /* control socket or epoll */
        INIT_EXIT_LOOP = 13,    /* epoll_wait failed for good */
};

/* A parsed INIT_SPAWN. Strings point into the receive buffer; vectors are caller storage. */
struct init_spawn_req {
        uint32_t flags;     /* enum init_spawn_flags */
        uint32_t argc;      /* 1..SBX_MAX_ARGV */
        uint32_t envc;      /* 0..SBX_INIT_MAX_ENVC */
        uint32_t uid, gid;  /* with INIT_SPAWN_USER: 0..SBX_INIT_MAX_ID; else 0 */
        uint16_t cols, rows; /* with INIT_SPAWN_PTY: 1..SBX_MAX_PTY_SIZE (0 became 80x24); else 0 */
        char **argv;        /* SBX_MAX_ARGV + 1 slots; NULL-terminated on success */
        char **envp;        /* SBX_INIT_MAX_ENVC + 1 slots; NULL-terminated on success */
        const char *cwd;    /* absolute, <= SBX_MAX_CWD bytes */
};

/*
 * Check a request header h that arrived as a packet of n bytes with n_fds descriptors: known
 * request type, h->len == n - header, fixed payload sizes, fds only where allowed. Pure.
 * Returns 0 or -EBADMSG.
 */
int init_req_check(const struct init_msg *h, size_t n, unsigned n_fds);

/*
 * Parse the INIT_SPAWN payload p[0..len) (which arrived with n_fds descriptors) into *req, whose
 * argv/envp must point to storage of the documented sizes. Flags known and consistent (PTY not
 * with KEEP_STDIN), the extension present exactly with PTY or USER and within its bounds, every
 * string ending with a NUL inside the payload, counts and total sizes within limits.h, nothing
 * after cwd. Pure; on failure *req is left partly written. Returns 0 or -EBADMSG.
 */
int init_spawn_req_parse(char *p, size_t len, unsigned n_fds, struct init_spawn_req *req);

/* Outcome of one spawn. On success either the three pipe ends or the pty master are set, the
 * others are -EBADF. */
struct init_spawn_result {
        pid_t pid;          /* > 0 on success */
        int error;          /* 0 or a positive errno */
        uint32_t step;      /* enum init_spawn_step when error != 0 */
        int stdin_w;        /* owned, on success: write end of the child's stdin */
        int stdout_r;       /* owned, on success: read end of the child's stdout */
        int stderr_r;       /* owned, on success: read end of the child's stderr */
        int pty_master;     /* owned, on success with INIT_SPAWN_PTY: the terminal's master, O_RDWR */
};

/* What every spawn needs, set up once at start. */
struct init_spawn_ctx {
        struct seccomp_bpf filter;  /* the exec-child filter, compiled once */
        struct rlimit nofile;       /* RLIMIT_NOFILE as sbx-init found it (it raises its own) */
};

/*
 * Start req as a new session leader with fresh pipes for stdio (or, with INIT_SPAWN_PTY, a new
 * terminal from /dev/ptmx as its controlling tty and 0/1/2), in the cgroup cgroup_fd (or
 * sbx-init's own with -1), as req->uid/gid with INIT_SPAWN_USER, with ctx->filter stacked on top
 * of sbx-init's own seccomp filter and ctx->nofile as its RLIMIT_NOFILE. Blocks until the child
 * has exec'd or failed (its error pipe reaches EOF); a child that failed before execve is reaped
 * here. Runs in sbx-init; cgroup_fd is borrowed. Always fills *ret.
 */
void init_spawn(const struct init_spawn_req *req, int cgroup_fd, const struct init_spawn_ctx *ctx,
                struct init_spawn_result *ret);
