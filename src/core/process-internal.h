/* SPDX-License-Identifier: Apache-2.0 */
/* Private to src/core/process*.c (and the manager's hooks in manager-internal.h). */
#pragma once

#include <uv.h>

#include "core/process.h"
#include "core/stream.h"
#include "manager-internal.h"

struct pstream {
        struct stream log;
        struct process *p;
        int fd;                   /* source: pipe read end or terminal master, -EBADF when done */
        uv_poll_t poll;
        bool poll_init;
};

struct process {
        struct process *next;     /* sb->procs, by seq */
        unsigned refs;            /* sb->procs holds one while listed */
        unsigned handles;         /* uv handles not yet closed */
        struct sandbox *sb;       /* holds a ref */
        char id[SBX_ID_MAX];
        char kind[16];
        uint64_t seq;             /* sbx-init's id */
        int pid;                  /* in the sandbox, 0 before sbx-init answered */
        enum process_status status;
        int exit_code, signal;    /* -1 / 0 until known */
        uint64_t started_ms, ended_ms;
        json_t *info;             /* what it was started with: argv, cwd, user, tag, ... (as in its JSON) */
        char argv0[256];
        char cwd[SBX_MAX_CWD];
        bool pty;
        uint16_t cols, rows;
        bool stdin_keep;
        char *stdin_data;         /* written once it runs, then stdin closes */
        size_t stdin_len;
        bool keep_after_disconnect;
        int64_t max_run_s;        /* -1 = no limit */
        uint64_t timeout_s;       /* 0 = none */
        uint64_t group;           /* its cgroup e<group> in the unified tree, 0 = none */

        struct pstream s[_PROCESS_STREAM_MAX];
        uv_pipe_t in;             /* stdin (a pipe, or a dup of the terminal master) */
        bool in_init;
        int in_fd;                /* owned by `in` */
        size_t in_queued;
        struct stdin_write *stdin_waiting; /* writes made while adopting, sent once the pipe is back */
        bool stdin_closed;

        uv_timer_t timer, grace_timer, detach_timer;
        bool timer_init, grace_init, detach_init;

        struct process_listener *listeners;
        struct process_listener *notify_next;
        unsigned n_attached;
        bool had_attached;        /* a client was attached once (keepAfterDisconnect) */

        process_done_fn done;     /* until the start is answered */
        void *done_data;

        int wait_status;
        bool exited;              /* sbx-init reported its exit */
        bool finished;            /* exited and its output is complete: status final */
        bool killed, timed_out;
        bool cancelled;           /* process_stop() asked for its end */
        bool lost;                /* sbx-init no longer knew it after an sbxd restart */
        bool adopting;            /* recovered from the store, waiting for sbx-init's list and fds */
        bool exit_pending;        /* sbx-init reported the exit while adopting */
        int pending_status;
};

/* process.c */
void process__notify(struct process *p, unsigned events);
void process__kill_tree(struct process *p);
void process__spawned(struct process *p, struct init_client_msg *msg);
void process__exited(struct process *p, int wait_status);
void process__lost(struct process *p);
/* It exited with wait_status (unless it did already): drain the pipes now and finish. */
void process__end_now(struct process *p, int wait_status);
void process__on_timeout(uv_timer_t *t);
int process__attach_fds(struct process *p, int in_fd, int out_fd, int err_fd);
int process__stdin_open(struct process *p, int fd);
void process__on_stdin_shutdown(uv_shutdown_t *sd, int status);
/* Send the writes that waited for the adoption (or fail them if no stdin came back). */
void process__stdin_flush(struct process *p);
int process__timers_init(struct process *p);
void process__close(struct process *p);

/* process-store.c */
/* Make (or, after a restart, open) stream s's log: at its first byte. */
int process__log_create(struct process *p, enum process_stream s);
void process__save(struct process *p);
void process__evict(struct sandbox *sb);
void process__start_failed(struct process *p, const struct sbx_err *err);
int process__forget_kept_stdin(struct process *p);
