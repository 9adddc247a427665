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
#define SBX_INIT_PROTO_VERSION 1
#define SBX_INIT_READY_FD 3               /* inherited by sbx-init; it writes INIT_READY_BYTE then closes it */
#define SBX_INIT_READY_BYTE 'R'
#define SBX_INIT_SECCOMP_FD 4             /* inherited: the sealed seccomp blob (sandbox/seccomp.h) */
#define SBX_INIT_MAX_ENVC (SBX_MAX_ENV * 2) /* env strings per INIT_SPAWN (exec env + sandbox env) */

enum init_msg_type {
        /* sbxd -> sbx-init */
        INIT_HELLO = 1,   /* payload: none. Reply INIT_HELLO_REPLY {u32 version} */
        INIT_SPAWN,       /* payload: struct init_spawn + strings; optional SCM_RIGHTS: [cgroup dir fd] */
        INIT_SIGNAL,      /* payload: struct init_signal. Reply INIT_RESULT */
        INIT_RELEASE,     /* payload: none (id in header): forget an exited process, close its fd copies. No reply */
        INIT_LIST,        /* payload: none. Reply INIT_LIST_REPLY */
        INIT_GET_FDS,     /* payload: none (id in header): new copies of a tracked process's stdout/stderr
                             read ends (after an sbxd restart). Reply INIT_FDS */
        /* sbx-init -> sbxd */
        INIT_HELLO_REPLY = 100,
        INIT_SPAWNED,     /* payload: struct init_spawned; on success SCM_RIGHTS: [stdin_w, stdout_r, stderr_r] */
        INIT_EXITED,      /* payload: struct init_exited; sent to every connection when a spawned process exits */
        INIT_RESULT,      /* payload: struct init_result */
        INIT_LIST_REPLY,  /* payload: u32 count + count * struct init_proc_info */
        INIT_FDS,         /* payload: struct init_result; on success SCM_RIGHTS: [stdout_r, stderr_r] */
};

struct init_msg {
        uint32_t type;    /* enum init_msg_type */
        uint32_t len;     /* payload bytes following this header */
        uint64_t id;      /* caller-chosen process id (exec sequence), echoed in replies and events */
};

enum init_spawn_flags {
        INIT_SPAWN_INTO_CGROUP = 1 << 0, /* an SCM_RIGHTS cgroup2 dir fd is attached: clone3(CLONE_INTO_CGROUP) */
};

/*
 * Followed by argc NUL-terminated argv strings, envc env strings, then the NUL-terminated cwd, and
 * nothing else. argv+env bytes (with their NULs) <= SBX_MAX_ARG_BYTES; cwd is absolute and at most
 * SBX_MAX_CWD bytes. Unknown flags or a non-zero reserved field make the packet malformed.
 */
struct init_spawn {
        uint32_t flags;   /* enum init_spawn_flags */
        uint32_t argc;    /* 1..SBX_MAX_ARGV */
        uint32_t envc;    /* 0..SBX_INIT_MAX_ENVC */
        uint32_t reserved;
};

enum init_spawn_step {
        INIT_STEP_NONE = 0,
        INIT_STEP_FORK,   /* clone3/fork failed in sbx-init */
        INIT_STEP_CWD,    /* chdir(cwd) failed in the child */
        INIT_STEP_EXEC,   /* execve failed in the child */
        INIT_STEP_SETUP,  /* stdio/session/seccomp setup failed in the child */
        INIT_STEP_LIMIT,  /* too many tracked processes */
        INIT_STEP_PROTO,  /* malformed request */
};

struct init_spawned {
        int32_t pid;      /* pid inside the sandbox, 0 on failure */
        int32_t error;    /* 0 or a positive errno */
        uint32_t step;    /* enum init_spawn_step when error != 0 */
        uint32_t reserved;
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

struct init_proc_info {
        uint64_t id;
        int32_t pid;
        int32_t status;   /* valid if exited */
        uint32_t exited;  /* 0 running, 1 exited */
        uint32_t reserved;
};
