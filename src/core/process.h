/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Processes of a sandbox (DESIGN §1, §6; docs/processes.md): started through sbx-init, owned by
 * no client, with stdout/stderr (or a terminal) kept as offset-addressed logs (stream.h) that any
 * number of listeners read from any offset, live or after the fact, also across an sbxd restart.
 * Loop thread only. The API layer (api/v1/processes.c) reads and follows them through
 * process_listen() and process_read(); it never sees fds.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "sandbox/spec.h"

struct manager;
struct process;

enum process_status {
        PROCESS_STARTING,  /* asked sbx-init, no answer yet */
        PROCESS_RUNNING,
        PROCESS_EXITED,    /* exited by itself: exit_code */
        PROCESS_KILLED,    /* ended by a signal: signal */
        PROCESS_TIMEOUT,   /* killed by its timeout */
        _PROCESS_STATUS_MAX,
};
const char *process_status_to_string(enum process_status s);

enum process_stream { PROCESS_STDOUT, PROCESS_STDERR, _PROCESS_STREAM_MAX };
const char *process_stream_to_string(enum process_stream s); /* "stdout", "stderr" ("pty" for a terminal) */

/* What a listener is told (a bit set): new output, the process ended (its output is complete). */
enum { PROCESS_EV_DATA = 1, PROCESS_EV_END = 2 };

/*
 * A listener: embedded in the caller's object, registered with process_listen(). notify runs on the
 * loop thread after output was appended or once the process ended and all its output is in the
 * logs; it pulls with process_read() at its own pace (nothing waits for it: the log keeps the
 * last cap bytes). attached: counts as an attached client for keepAfterDisconnect /
 * maxRunAfterDisconnect (a WebSocket or SSE follower; not a long-poll).
 */
struct process_listener {
        void (*notify)(struct process_listener *l, unsigned events);
        bool attached;
        /* private */
        struct process_listener *next;
        struct process *p;
};

/* Start spec (taken on success: released; the caller's to release on failure) in running sandbox id; kind names what it serves ("process", "job",
 * "session", "context"). done(data, r, err, json) is called once with the process JSON when
 * sbx-init answered (or the start failed), unless this returns < 0. */
typedef void (*process_done_fn)(void *data, int r, const struct sbx_err *err, json_t *result);
int manager_process_start(struct manager *m, const char *id, struct exec_spec *spec, const char *kind,
                          process_done_fn done, void *data, struct sbx_err *err);

/* {processes: [...]}: running ones and the last SBX_MAX_PROCESSES_KEPT that ended, oldest first;
 * kind NULL = every kind. */
int manager_process_list(struct manager *m, const char *id, const char *kind, json_t **ret, struct sbx_err *err);

/* A process by its id ("prc_...") or its pid in the sandbox (the running one first, else the
 * newest). Returns it with a reference (process_unref), or NULL with 404 process_not_found. */
struct process *manager_process_find(struct manager *m, const char *id, const char *which, struct sbx_err *err);
void process_ref(struct process *p);
void process_unref(struct process *p);

json_t *process_to_json(const struct process *p);
/* What it was started with, including the starter's private '_' fields (borrowed). */
const json_t *process_meta(const struct process *p);
enum process_status process_status(const struct process *p);
const char *process_id(const struct process *p);
const char *process_kind(const struct process *p);
bool process_is_pty(const struct process *p);
/* The process exited and every byte of its output is in the logs (its streams are complete). */
bool process_ended(const struct process *p);

/* Send a signal (1..64) to its process group; SIGKILL kills its whole tree through its cgroup
 * (processes that left the group too). 409 process_not_running once it ended. */
int process_signal(struct process *p, int signo, struct sbx_err *err);
/* Stop it: SIGTERM to its group, then its tree killed after grace_ms (0: at once). It counts as
 * cancelled (process_cancelled). 409 process_not_running once it ended. */
int process_stop(struct process *p, unsigned grace_ms, struct sbx_err *err);
bool process_cancelled(const struct process *p);
/* Write to its stdin (or terminal). done(data, r) once the bytes are in the pipe (r < 0: the
 * process closed it). 409 stdin_closed if its stdin is closed; 429-like -SBX_E_LIMIT if more than
 * SBX_MAX_STDIN_QUEUE bytes would wait. */
int process_write_stdin(struct process *p, const void *buf, size_t len, void (*done)(void *data, int r), void *data,
                        struct sbx_err *err);
/* Close stdin: the process reads end of file (a terminal gets ^D). Idempotent. */
int process_close_stdin(struct process *p, struct sbx_err *err);
int process_resize(struct process *p, unsigned cols, unsigned rows, struct sbx_err *err);

void process_listen(struct process *p, struct process_listener *l);
void process_unlisten(struct process_listener *l);

/* The window of a stream: [*start, *end). A terminal process has only PROCESS_STDOUT. */
void process_stream_range(const struct process *p, enum process_stream s, uint64_t *start, uint64_t *end);
bool process_has_stream(const struct process *p, enum process_stream s);
/* Copy up to len bytes of stream s from offset off. Bytes (0 = nothing more now), -ERANGE if off
 * was dropped from the log (< start), -EINVAL if off > end, or -errno. */
ssize_t process_read(struct process *p, enum process_stream s, uint64_t off, void *buf, size_t len);

/* Parse a signal name ("KILL", "SIGTERM", "term") or number; -SBX_E_INVALID naming field. */
int signal_parse(const char *field, const char *s, int *ret, struct sbx_err *err);
const char *signal_to_name(int signo); /* "SIGKILL", or NULL */
