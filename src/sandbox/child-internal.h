/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between sandbox.c (parent side) and child.c (child side). Private to src/sandbox/. */
#pragma once

#include <stdint.h>

#include "sandbox/sandbox.h"

/* Messages on the launch socket (SOCK_SEQPACKET). sbx-init's ready byte is a 1-byte packet. */
enum child_msg_type {
        CHILD_MSG_GO = 'G',    /* parent -> outer child, (the layers are staged in the sandbox dir) */
        CHILD_MSG_PID = 'P',   /* outer child -> parent: host pid of PID 1 */
        CHILD_MSG_ERROR = 'E', /* either child -> parent: step + errno */
        CHILD_MSG_VOLUME = 'V', /* volume child -> parent: the overlay's mount fd (SCM_RIGHTS) */
};

enum child_step {
        STEP_RECV_GO = 1,
        STEP_SETID,
        STEP_UNSHARE,
        STEP_FORK_INIT,
        STEP_MOUNT_PRIVATE,
        STEP_MOUNT_LOWER,
        STEP_MOUNT_OVERLAY,
        STEP_MOUNT_BIND,
        STEP_MOUNT_PROC,
        STEP_MOUNT_DEV,
        STEP_MOUNT_TMP,
        STEP_MOUNT_SYS,
        STEP_MASK_PROC,
        STEP_PIVOT_ROOT,
        STEP_HOSTNAME,
        STEP_LOOPBACK,
        STEP_STDIO,
        STEP_RLIMITS,
        STEP_CAPS,
        STEP_NO_NEW_PRIVS,
        STEP_EXEC_INIT,
        STEP_VOLUME_MOUNT,
        STEP_VOLUME_SEND,
        _STEP_MAX,
};

const char *child_step_to_string(int step);

struct child_msg {
        uint8_t type;
        uint8_t pad[3];
        int32_t step;
        int32_t error; /* positive errno */
        int32_t pid;
        uint32_t us_setid, us_unshare, us_fork; /* CHILD_MSG_PID: the outer child's timing */
};

struct child_args {
        const struct sandbox_launch *l;
        int sync_fd;    /* child's end of the launch socket */
        pid_t parent_pid; /* sbxd, to detect that it died before PDEATHSIG was armed */
        char overlay_opts[1024]; /* "lowerdir=l0:l1:...": fits SBX_SANDBOX_MAX_LOWERS; for a
                                  * volume only "l0:l1:..." */
        char tmp_opts[64];
};
