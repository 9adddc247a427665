/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Templates: the read-only root filesystems sandboxes boot from (DESIGN §3).
 *   host  read-only binds of the host's /usr and /etc over a tiny skeleton (zero setup; for tests and
 *         trials: it exposes the host's binaries and /etc, the docs say so)
 *   base  Debian bookworm minbase + bash, coreutils, ca-certificates, built with mmdebstrap from
 *         Debian's packages on first use and cached (the default template)
 * Layout: TEMPLATES_DIR/<name>/rootfs (the lower layer) + TEMPLATES_DIR/<name>/template.json.
 * A build writes into <name>/rootfs.tmp-XXXX and renames on success, so a crash never leaves a
 * half-built rootfs in place; leftovers are removed by template_store_open().
 * No logging: progress goes through a callback.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/err.h"
#include "common/limits.h"

#define SBX_TEMPLATE_MAX_BINDS 4

struct template_bind {
        char source[PATH_MAX];   /* host path, bound read-only */
        char target[64];         /* absolute path inside the sandbox, e.g. "/usr" */
};

struct template_info {
        char name[SBX_MAX_TEMPLATE_NAME + 1];
        char rootfs[PATH_MAX];   /* host path of the lower layer */
        struct template_bind binds[SBX_TEMPLATE_MAX_BINDS];
        size_t n_binds;
};

struct template_store;

typedef void (*template_progress_fn)(const char *name, unsigned percent, const char *stage, void *data);
typedef void (*template_done_fn)(const char *name, int result, const struct sbx_err *err, void *data);

/* Open (create) the templates dir; removes half-built leftovers; prepares the host template. */
int template_store_open(const char *dir, uv_loop_t *loop, struct template_store **ret, struct sbx_err *err);
/* Frees the store. A running build is stopped (SIGTERM to its process group, SIGKILL 5 s later, reaped
 * on the loop); its waiters get done(-ECANCELED) before this returns; its tmp dir goes at the next open.
 * Keep running the loop afterwards until its handles are closed. NULL-safe. */
void template_store_free(struct template_store *ts);

/* Fill *ret for a ready template. -SBX_E_NOT_FOUND (reason "template_not_found") for an unknown name,
 * -SBX_E_UNAVAILABLE (reason "template_not_ready") while it is being built or not built yet. */
int template_lookup(struct template_store *ts, const char *name, struct template_info *ret, struct sbx_err *err);

enum template_state {
        TEMPLATE_AVAILABLE,
        TEMPLATE_BUILDING,
        TEMPLATE_FAILED,   /* the last build failed; a create or build tries again */
        TEMPLATE_NOT_BUILT,
        _TEMPLATE_STATE_MAX,
};

#define SBX_MAX_TEMPLATES 16

struct template_status {
        char name[SBX_MAX_TEMPLATE_NAME + 1];
        enum template_state state;
        const char *description;   /* static */
        const char *packages;      /* static, comma-separated Debian packages; NULL for host */
        unsigned percent;          /* while building */
        char stage[64];            /* while building */
        char error[SBX_ERR_MSG_MAX]; /* failed: why */
        uint64_t size_bytes;       /* available: as measured by the build (0 for host) */
        char built_at[40];         /* available: RFC 3339, "" if unknown */
};

/* Every template of the catalog with its state. Fills at most max entries. */
int template_status_list(struct template_store *ts, struct template_status *ret, size_t max, size_t *ret_n);
const char *template_state_to_string(enum template_state s);

/* The catalog name behind name (itself, or what an alias like "python:3" stands for); NULL if
 * unknown. */
const char *template_canonical_name(const char *name);

/* True if name is a template (or an alias like "python:3") this build knows how to make. */
bool template_known(const char *name);

/* Start building name in the background (child process on the loop) if it is not ready and not already
 * building. progress/done are called on the loop thread; done exactly once per call that returned 0
 * (also when the template was already ready: then synchronously with result 0). */
int template_build(struct template_store *ts, const char *name, template_progress_fn progress,
                   template_done_fn done, void *data, struct sbx_err *err);

/* Copy the kept output of name's running or last finished build (its last ~20 lines, oldest first,
 * '\n'-separated) into buf, NUL-terminated and cut to size. Returns the length or -SBX_E_NOT_FOUND.
 * For the daemon's log when a build fails (the done callback's err has only the key lines). */
int template_build_log(struct template_store *ts, const char *name, char *buf, size_t size);
