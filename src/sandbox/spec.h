/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Untrusted API JSON -> validated plain structs (parse, then validate, then apply: STYLE B8.2).
 * Pure functions: no I/O, no logging; fuzzed (fuzz/spec.c) and unit tested.
 * Every string and count is bounded by src/common/limits.h. Errors name the field.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/limits.h"

/* POST /v1/sandboxes body. */
struct sandbox_spec {
        char template_name[SBX_MAX_TEMPLATE_NAME + 1]; /* default "base"; [a-z0-9][a-z0-9._:-]* */
        char name[SBX_MAX_NAME + 1];                   /* "" = none; [A-Za-z0-9._-], not starting with '.' or '-' */
        char **env;                                    /* owned: n_env "KEY=VALUE" strings, keys valid POSIX names */
        size_t n_env;
        json_t *metadata;                              /* owned ref: object of string->string (may be empty) */
        double cpu;                                    /* cores, default SBX_DEFAULT_CPU */
        uint64_t memory_mib;                           /* default SBX_DEFAULT_MEMORY >> 20 */
        uint64_t pids;                                 /* default SBX_DEFAULT_PIDS */
        uint64_t lifetime_s;                           /* 0 = none */
        uint64_t idle_s;                               /* 0 = none */
        uint64_t paused_s;                             /* delete after this long paused or hibernated; 0 = never */
        uint64_t execution_s;                          /* default timeout of execs and processes; 0 = theirs */
        char workdir[SBX_MAX_CWD];                     /* default cwd of execs; "" = the template's, else /root */
        char snapshot[SBX_MAX_TAG + 1];                /* boot from this snapshot (id or tag); "" = none */
        unsigned given;                                /* SPEC_GIVEN_*: which fields the body named */
};

#define SPEC_GIVEN_TEMPLATE 1u
#define SPEC_GIVEN_RESOURCES 2u
#define SPEC_GIVEN_TIMEOUT 4u
#define SPEC_GIVEN_WORKDIR 8u
#define SPEC_GIVEN_ENV 16u

/* 1..SBX_MAX_NAME bytes of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool sandbox_name_valid(const char *s);
/* True for a snapshot reference: an id ("snp_...") or a tag, [A-Za-z0-9._:-]{1,SBX_MAX_TAG},
 * not starting with '.' or '-'. */
bool snapshot_ref_valid(const char *s);

/* Parse and validate; on success *ret is filled (release with sandbox_spec_release). body may be NULL
 * (empty body = all defaults). Unknown fields are rejected (reason unknown_field). */
int sandbox_spec_parse(const json_t *body, struct sandbox_spec *ret, struct sbx_err *err);
void sandbox_spec_release(struct sandbox_spec *s);
/* Canonical JSON of the whole spec (what the store keeps and what GET returns under env/resources/timeout):
 * {"template":..,"name":..|null,"env":{..},"metadata":{..},"resources":{"cpu":..,"memory":..,"pids":..},
 *  "timeout":{"lifetime":..|null,"idle":..|null},"workdir":..|null}. New reference. */
json_t *sandbox_spec_to_json(const struct sandbox_spec *s);

/* PATCH /v1/sandboxes/{id} body: {"timeout": N} (lifetime: N more seconds from now) or {"timeout":
 * {"lifetime", "idle", "paused", "execution"}} (each a number, or null to remove that timer), and
 * "metadata" (replaces the labels). Absent fields stay as they are. */
struct sandbox_patch {
        bool has_lifetime, has_idle, has_paused, has_execution;
        uint64_t lifetime_s, idle_s, paused_s, execution_s; /* 0 = none (null) */
        json_t *metadata;                              /* owned ref, NULL = unchanged */
};
int sandbox_patch_parse(const json_t *body, struct sandbox_patch *ret, struct sbx_err *err);
void sandbox_patch_release(struct sandbox_patch *p);

/* POST /v1/sandboxes/{id}/exec body. */
struct exec_spec {
        char **argv;            /* owned, NULL-terminated; cmd form becomes {"/bin/sh","-c",cmd} */
        size_t argc;
        char **env;             /* owned "KEY=VALUE", n_env entries (exec-level overrides only) */
        size_t n_env;
        char cwd[SBX_MAX_CWD];  /* absolute, normalised, no ".." or NUL; default "/root" */
        bool cwd_given;         /* the request named cwd (else the sandbox's workdir applies) */
        uint64_t timeout_s;     /* default SBX_DEFAULT_EXEC_TIMEOUT_S */
        bool timeout_given;     /* the request named a timeout (else the sandbox's timeout.execution applies) */
        char *stdin_data;       /* owned, NULL = no stdin (EOF at once) */
        size_t stdin_len;

        /* POST /v1/sandboxes/{id}/processes only (process_spec_parse) */
        bool stdin_keep;        /* "stdin": true: stdin stays open for later writes */
        bool pty;               /* "pty": {cols, rows}: a terminal instead of pipes */
        uint16_t cols, rows;    /* 1..SBX_MAX_PTY_SIZE, default 80x24 */
        char user[SBX_MAX_USER + 1]; /* "" = root; a name or a numeric uid in the sandbox */
        char tag[SBX_MAX_PROCESS_TAG + 1];
        bool keep_after_disconnect;  /* default true; false: killed when its last attached client leaves */
        int64_t max_run_after_disconnect_s; /* -1 = no limit: seconds it may run once no client is attached */
        json_t *meta;           /* owned, NULL: the starter's own fields, kept in the process record
                                 * (keys starting with '_' are not shown by the API) */
};

int exec_spec_parse(const json_t *body, struct exec_spec *ret, struct sbx_err *err);
/* The body of POST .../processes: exec's fields (timeout 0..SBX_MAX_PROCESS_TIMEOUT_S, default 0 =
 * none; stdin a string of data or a bool) plus user, pty, tag, keepAfterDisconnect,
 * maxRunAfterDisconnect. */
int process_spec_parse(const json_t *body, struct exec_spec *ret, struct sbx_err *err);
/* Only cwd, env and user of a process (what a session or a code context starts its processes
 * with; env at most SBX_MAX_ARG_BYTES / 2: the rest is for the command). fields: the body's
 * allowed keys (unknown ones are refused), which the caller's own fields are among. No argv. */
int process_base_parse(const json_t *body, const char *const *fields, struct exec_spec *ret, struct sbx_err *err);
void exec_spec_release(struct exec_spec *s);

/* An absolute path with "//" and "/./" collapsed and no trailing '/' ("/" stays "/") into out;
 * ".." is refused, not resolved (lexical ".." is wrong across symlinks). -SBX_E_INVALID
 * (invalid_value, naming field) if in is relative, has "..", or does not fit in size bytes. */
int spec_path_normalize(const char *field, const char *in, char *out, size_t size, struct sbx_err *err);

/* True if s is a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*, <= SBX_MAX_ENV_KEY). */
bool env_name_valid(const char *s);
