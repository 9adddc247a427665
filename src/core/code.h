/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Code runs and contexts (docs/processes.md, docs/internals/code.md): run a snippet of python,
 * node or bash in a sandbox and get {stdout, stderr, output, exitCode, language, error}; with a
 * context, in a persistent interpreter (a driver process, core/code-drivers/) whose variables
 * survive between runs, like a notebook. Built on processes (process.h). Loop thread only.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "common/err.h"
#include "sandbox/spec.h"

struct manager;

struct code_request {
        const char *code;       /* valid UTF-8, len bytes */
        size_t len;
        const char *language;   /* a name code_language_parse() accepts; NULL = the context's, or guessed */
        uint64_t timeout_s;     /* 0 = SBX_DEFAULT_EXEC_TIMEOUT_S */
        const char *context_id; /* NULL = a one-shot process */
};

/* result: {stdout, stderr, output, exitCode, language, contextId, error, timedOut, truncated,
 * durationMs}. Called once, later, unless this returns < 0. */
typedef void (*code_done_fn)(void *data, int r, const struct sbx_err *err, json_t *result);
int manager_code_run(struct manager *m, const char *id, const struct code_request *rq, code_done_fn done, void *data,
                     struct sbx_err *err);

/* Start spec (as manager_process_start) and answer once it ended, with {commandId, processId,
 * stdout, stderr, exitCode, timedOut, truncated, durationMs} (at most SBX_MAX_EXEC_OUTPUT per
 * stream). For sessions and anything else that waits for a process's output as a whole. */
int manager_process_run(struct manager *m, const char *id, struct exec_spec *spec, const char *kind, code_done_fn done,
                        void *data, struct sbx_err *err);

/* A context: a driver for language (python or node) started with base's cwd, env and user (base
 * is released). done gets the context JSON {contextId, language, processId, status, createdAt}. */
int manager_context_create(struct manager *m, const char *id, const char *language, struct exec_spec *base,
                           code_done_fn done, void *data, struct sbx_err *err);
int manager_context_list(struct manager *m, const char *id, json_t **ret, struct sbx_err *err);
int manager_context_get(struct manager *m, const char *id, const char *cid, json_t **ret, struct sbx_err *err);
/* Kill its interpreter and forget it; runs waiting in it end with an error. */
int manager_context_delete(struct manager *m, const char *id, const char *cid, struct sbx_err *err);
