/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sessions (docs/processes.md): named shells whose working directory and exported environment
 * persist between commands. Every command is a process (kind "session", tag = the session id)
 * with its own id, logs and exit code. Loop thread only.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "core/code.h"
#include "sandbox/spec.h"

struct manager;

/* sid NULL = a new "ses_..." id. spec gives cwd (if cwd_given), env and user (borrowed). */
int manager_session_create(struct manager *m, const char *id, const char *sid, const struct exec_spec *spec,
                           json_t **ret, struct sbx_err *err);
int manager_session_list(struct manager *m, const char *id, json_t **ret, struct sbx_err *err);
/* The session and its commands (the processes it ran that are still kept). */
int manager_session_get(struct manager *m, const char *id, const char *sid, json_t **ret, struct sbx_err *err);
/* Run cmd in the session: async, done gets the process JSON once it started; else once it ended,
 * {commandId, stdout, stderr, exitCode, ...} (manager_process_run). timeout_s 0 = none. */
int manager_session_exec(struct manager *m, const char *id, const char *sid, const char *cmd, uint64_t timeout_s,
                         bool async, code_done_fn done, void *data, struct sbx_err *err);
/* Forget it: its running commands are killed, its state file removed. */
int manager_session_delete(struct manager *m, const char *id, const char *sid, struct sbx_err *err);
