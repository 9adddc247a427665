/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Wire protocol between sbxd and sbx-init (PID 1 in each sandbox), over a SOCK_SEQPACKET unix socket
 * bound by sbx-init at the abstract address "\0sbx-init" in the sandbox's network namespace.
 * One message = one packet: struct init_msg header + payload; fds travel as SCM_RIGHTS.
 * Both sides treat every packet from the other as untrusted: sizes are checked against the header and
 * SBX_INIT_MAX_MSG, strings must be NUL-terminated inside the payload, counts are bounded.
 * Native byte order (both ends run on the same host). Version field lets a newer sbxd refuse an
 * older sbx-init.
 */
#pragma once

#include <stdint.h>

#include "common/limits.h"

#define SBX_INIT_SOCKET_NAME "sbx-init"   /* abstract: sun_path[0] = '\0' then this */
#define SBX_INIT_PROTO_VERSION 2          /* 2: PTY, USER, KEEP_STDIN, CLOSE_STDIN, the INIT_FDS mask */
#define SBX_INIT_READY_FD 3               /* inherited by sbx-init; it writes INIT_READY_BYTE then closes it */
#define SBX_INIT_READY_BYTE 'R'
#define SBX_INIT_SECCOMP_FD 4             /* inherited: the sealed seccomp blob (sandbox/seccomp.h) */
#define SBX_INIT_MAX_ENVC (SBX_MAX_ENV * 2) /* env strings per INIT_SPAWN (exec env + sandbox env) */
#define SBX_INIT_MAX_ID (SBX_UID_RANGE - 2) /* uid/gid inside the sandbox: 65535 is the 16-bit "no id" */
#define SBX_INIT_PTY_COLS 80              /* terminal size when INIT_SPAWN_PTY asks for 0 */
#define SBX_INIT_PTY_ROWS 24

enum init_msg_type {
        /* sbxd -> sbx-init */
        INIT_HELLO = 1,   /* payload: none. Reply INIT_HELLO_REPLY {u32 version} */
        INIT_SPAWN,       /* payload: struct init_spawn + strings; optional SCM_RIGHTS: [cgroup dir fd] */
        INIT_SIGNAL,      /* payload: struct init_signal. Reply INIT_RESULT */
        INIT_RELEASE,     /* payload: none (id in header): forget an exited process, close its fd copies. No reply */
        INIT_LIST,        /* payload: none. Reply INIT_LIST_REPLY */
        INIT_GET_FDS,     /* payload: none (id in header): new copies of the fds sbx-init keeps for a
                             tracked process (after an sbxd restart). Reply INIT_FDS */
        INIT_CLOSE_STDIN, /* v2. payload: none (id in header): close the kept stdin write end
                             (INIT_SPAWN_KEEP_STDIN). Reply INIT_RESULT: 0, or ESRCH for an unknown id */
        /* sbx-init -> sbxd */
        INIT_HELLO_REPLY = 100,
        INIT_SPAWNED,     /* payload: struct init_spawned; on success SCM_RIGHTS: [stdin_w, stdout_r, stderr_r],
                             or [pty master] with INIT_SPAWNED_PTY */
        INIT_EXITED,      /* payload: struct init_exited; sent to every connection when a spawned process exits */
        INIT_RESULT,      /* payload: struct init_result */
        INIT_LIST_REPLY,  /* payload: u32 count + count * struct init_proc_info */
        INIT_FDS,         /* payload: struct init_fds; on success SCM_RIGHTS: the fds of its mask, in bit order */
};

struct init_msg {
        uint32_t type;    /* enum init_msg_type */
        uint32_t len;     /* payload bytes following this header */
        uint64_t id;      /* caller-chosen process id (exec sequence), echoed in replies and events */
};

enum init_spawn_flags {
        INIT_SPAWN_INTO_CGROUP = 1 << 0, /* an SCM_RIGHTS cgroup2 dir fd is attached: clone3(CLONE_INTO_CGROUP) */
        INIT_SPAWN_PTY         = 1 << 1, /* v2: a new terminal on 0/1/2 instead of pipes (ext: cols, rows) */
        INIT_SPAWN_USER        = 1 << 2, /* v2: run as ext.uid/ext.gid instead of root */
        INIT_SPAWN_KEEP_STDIN  = 1 << 3, /* v2: sbx-init keeps a copy of the stdin write end until
                                            INIT_CLOSE_STDIN or INIT_RELEASE; pipes only (not with PTY) */
};
#define INIT_SPAWN_FLAGS_ALL \
        (INIT_SPAWN_INTO_CGROUP | INIT_SPAWN_PTY | INIT_SPAWN_USER | INIT_SPAWN_KEEP_STDIN)
#define INIT_SPAWN_FLAGS_EXT (INIT_SPAWN_PTY | INIT_SPAWN_USER) /* these bring a struct init_spawn_ext */

/*
 * Followed by a struct init_spawn_ext iff flags has INIT_SPAWN_PTY or INIT_SPAWN_USER, then argc
 * NUL-terminated argv strings, envc env strings, then the NUL-terminated cwd, and nothing else.
 * argv+env bytes (with their NULs) <= SBX_MAX_ARG_BYTES; cwd is absolute and at most SBX_MAX_CWD
 * bytes. Unknown flags, PTY with KEEP_STDIN, or a non-zero reserved field make the packet
 * malformed. Without PTY and USER the packet is exactly as in version 1.
 */
struct init_spawn {
        uint32_t flags;   /* enum init_spawn_flags */
        uint32_t argc;    /* 1..SBX_MAX_ARGV */
        uint32_t envc;    /* 0..SBX_INIT_MAX_ENVC */
        uint32_t reserved;
};

/* v2: the extension of struct init_spawn (see there for when it is present). */
struct init_spawn_ext {
        uint32_t uid;     /* with INIT_SPAWN_USER: 0..SBX_INIT_MAX_ID, in the sandbox; else ignored */
        uint32_t gid;     /* same */
        uint16_t cols;    /* with INIT_SPAWN_PTY: the terminal size, 0 = 80x24 per field; */
        uint16_t rows;    /*   <= SBX_MAX_PTY_SIZE with or without PTY */
        uint32_t reserved;
};

enum init_spawn_step {
        INIT_STEP_NONE = 0,
        INIT_STEP_FORK,   /* clone3/fork failed in sbx-init */
        INIT_STEP_CWD,    /* chdir(cwd) failed in the child */
        INIT_STEP_EXEC,   /* execve failed in the child */
        INIT_STEP_SETUP,  /* stdio/session/terminal/user/seccomp setup failed in the child */
        INIT_STEP_LIMIT,  /* too many tracked processes */
        INIT_STEP_PROTO,  /* malformed request */
};

enum init_spawned_flags {
        INIT_SPAWNED_PTY = 1 << 0, /* the one fd is the terminal's master (O_RDWR); else three pipes */
};

struct init_spawned {
        int32_t pid;      /* pid inside the sandbox, 0 on failure */
        int32_t error;    /* 0 or a positive errno */
        uint32_t step;    /* enum init_spawn_step when error != 0 */
        uint32_t flags;   /* enum init_spawned_flags, 0 on failure (v1: reserved, always 0) */
};

struct init_exited {
        int32_t pid;
        int32_t status;   /* raw wait status (WIFEXITED/WTERMSIG apply) */
};

struct init_signal {
        int32_t signo;
        uint32_t reserved;
};

struct init_result {
        int32_t error;    /* 0 or positive errno */
        uint32_t reserved;
};

/* The fds of an INIT_FDS reply: they follow in this bit order, one per set bit. */
enum init_fd_mask {
        INIT_FD_STDIN  = 1 << 0, /* the kept stdin write end (INIT_SPAWN_KEEP_STDIN, not closed yet) */
        INIT_FD_STDOUT = 1 << 1, /* stdout read end */
        INIT_FD_STDERR = 1 << 2, /* stderr read end */
        INIT_FD_PTY    = 1 << 3, /* the terminal's master (O_RDWR) */
};

/*
 * INIT_FDS payload. error 0: mask is STDOUT|STDERR, STDIN|STDOUT|STDERR, or PTY, with that many
 * fds; else mask is 0 and no fds come (ESRCH unknown id, EBADF released). A version-1 sbx-init
 * sends {0, 0} with [stdout_r, stderr_r] (its struct init_result), which sbxd reads as
 * STDOUT|STDERR.
 */
struct init_fds {
        int32_t error;    /* 0 or positive errno */
        uint32_t mask;    /* enum init_fd_mask */
};

struct init_proc_info {
        uint64_t id;
        int32_t pid;
        int32_t status;   /* valid if exited */
        uint32_t exited;  /* 0 running, 1 exited */
        uint32_t reserved;
};
