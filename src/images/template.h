/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Templates: what sandboxes boot from (DESIGN §3). A template is an ordered list of read-only
 * layers from the layer store (layer.h) plus metadata (image config: env, workdir, user,
 * entrypoint, cmd, labels; description, source), kept as a manifest file:
 *   TEMPLATES_DIR/layers/...            the layer store
 *   TEMPLATES_DIR/templates/<name>.json {name, layers:[digest, bottom first], config, ...}
 *   TEMPLATES_DIR/cache/<key>           build cache: a build step's key -> the layer it made
 *   TEMPLATES_DIR/host/rootfs           the host template's skeleton (not a layer)
 * The catalog (host, base, python, node, full) is built on demand: each Debian template is one
 * layer made by mmdebstrap from Debian's packages (template-debian.c), cached by (suite, variant,
 * packages), so templates with the same package set share it. Other templates come from specs
 * (core/build.c) or OCI imports and are published with template_publish().
 * No logging: progress goes through callbacks.
 */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <jansson.h>

#include "common/err.h"
#include "common/limits.h"
#include "images/layer.h"
#include "images/oci.h"

#define SBX_TEMPLATE_MAX_BINDS 4

struct template_bind {
        char source[PATH_MAX];   /* host path, bound read-only */
        char target[64];         /* absolute path inside the sandbox, e.g. "/usr" */
};

struct template_info {
        char name[SBX_MAX_TEMPLATE_NAME + 1];  /* the canonical name (aliases resolved) */
        size_t n_layers;                       /* 0 only for host (then rootfs is the lower) */
        char layers[SBX_MAX_IMAGE_LAYERS][SBX_LAYER_DIGEST_MAX]; /* bottom first */
        char rootfs[PATH_MAX];                 /* host only: the skeleton */
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

struct layer_store *template_store_layers(struct template_store *ts);

/* Host paths of info's lower layers for overlay, topmost first, into one malloc'd block:
 * (*ret)[0..n) point into it; free(*ret). host: its skeleton. */
int template_lower_paths(struct template_store *ts, const struct template_info *info, char ***ret, size_t *ret_n);

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

#define SBX_MAX_TEMPLATES 256             /* templates listed (catalog + published) */

struct template_status {
        char name[SBX_MAX_TEMPLATE_NAME + 1];
        enum template_state state;
        const char *description;   /* static (catalog) or desc below (published), NULL if none */
        char desc[256];            /* a published template's description (cut) */
        const char *packages;      /* static, comma-separated Debian packages; NULL for host */
        unsigned percent;          /* while building */
        char stage[64];            /* while building */
        char error[SBX_ERR_MSG_MAX]; /* failed: why */
        uint64_t size_bytes;       /* available: sum of its layers' disk usage (0 for host) */
        char built_at[40];         /* available: RFC 3339, "" if unknown */
        bool catalog;              /* one of the built-in catalog */
        char source[16];           /* "catalog", "spec", "import" */
        size_t n_layers;
};

/* Every template of the catalog with its state, then every published template that is not in the
 * catalog (sorted by name). Fills at most max entries. Blocking (reads the manifests). */
int template_status_list(struct template_store *ts, struct template_status *ret, size_t max, size_t *ret_n);
const char *template_state_to_string(enum template_state s);

/* The catalog name behind name (itself, or what an alias like "python:3" stands for); NULL if
 * unknown. */
const char *template_canonical_name(const char *name);

/* True if name is a template (or an alias like "python:3") this build knows how to make. */
bool template_known(const char *name);

/* True for a Debian package name: [a-z0-9][a-z0-9+.-]+, 2..128 bytes (Debian policy 5.6.1). */
bool template_package_name_valid(const char *s);

/* True for a valid template name: [a-z0-9][a-z0-9._-]* with an optional ":tag" ([A-Za-z0-9._-],
 * not starting with '.' or '-'), at most SBX_MAX_TEMPLATE_NAME bytes, not "host". */
bool template_name_valid(const char *name);

/* Publish (or replace) the template name: layers bottom first (each must exist), config (may be
 * NULL; not stolen), extra (may be NULL; not stolen: its keys are added to the manifest, e.g.
 * description, spec, specDigest, source). Atomic (tmp file + rename). Catalog names may be
 * published too (a catalog build does). */
int template_publish(struct template_store *ts, const char *name, const char (*layers)[SBX_LAYER_DIGEST_MAX],
                     size_t n_layers, json_t *config, json_t *extra, struct sbx_err *err);

/* The manifest of a published template (a new reference), or NULL (-SBX_E_NOT_FOUND in err). */
json_t *template_manifest(struct template_store *ts, const char *name, struct sbx_err *err);

/* Remove a published template's manifest (its layers stay until layer_gc finds them unused).
 * host cannot be removed; a catalog template is only unpublished (the next use builds it again). */
int template_remove(struct template_store *ts, const char *name, struct sbx_err *err);

/* The digests every published template references (each once), for layer_gc's keep list.
 * *ret is malloc'd (free it). */
int template_referenced_layers(struct template_store *ts, char (**ret)[SBX_LAYER_DIGEST_MAX], size_t *ret_n,
                               struct sbx_err *err);

/* The build cache (TEMPLATES_DIR/cache/<name>; name: [a-z0-9-]{1,79}): the layer a build step
 * made for a key. get: true if it is still in the layer store, then held for the caller (release
 * with layer_release). put: best effort. */
bool template_cache_get(struct template_store *ts, const char *name, char *digest, size_t size);
void template_cache_put(struct template_store *ts, const char *name, const char *digest);
/* Remove cache entries whose layer is gone (after a GC). Returns how many. Blocking. */
int template_cache_prune(struct template_store *ts);

/* One mmdebstrap layer (suite, variant, comma-separated packages), from the build cache or built
 * now; concurrent calls with the same parameters share one build. done gets the layer digest
 * (with one hold on it that the callee must release: layer_release) or an error. Same callback
 * rules as template_build. */
typedef void (*template_layer_done_fn)(int result, const char *digest, const struct sbx_err *err, void *data);
int template_debian_layer(struct template_store *ts, const char *suite, const char *variant, const char *packages,
                          template_progress_fn progress, template_layer_done_fn done, void *data,
                          struct sbx_err *err);

/* Start building name in the background (child process on the loop) if it is not ready and not already
 * building. progress/done are called on the loop thread; done exactly once per call that returned 0
 * (also when the template was already ready: then synchronously with result 0). */
int template_build(struct template_store *ts, const char *name, template_progress_fn progress,
                   template_done_fn done, void *data, struct sbx_err *err);

/* Copy the kept output of name's last failed catalog build (its last ~20 lines, oldest first,
 * '\n'-separated; "" after a success) into buf, NUL-terminated and cut to size. Returns the length
 * or -SBX_E_NOT_FOUND. For the daemon's log when a build fails (the done callback's err has only the
 * key lines). */
int template_build_log(struct template_store *ts, const char *name, char *buf, size_t size);
