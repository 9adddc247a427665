/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between template.c (store, catalog, manifests) and template-debian.c (mmdebstrap
 * layers). Private to src/images/. */
#pragma once

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#include "images/template.h"

/* Output kept from a build: the last BUILD_LOG_LINES lines, each cut at BUILD_LINE_MAX bytes. */
#define BUILD_LOG_LINES 20
#define BUILD_LINE_MAX 256

struct dbuild; /* template-debian.c: one mmdebstrap run */

/* The layer store outlives the template store while a build's commit step may still use it:
 * the store and every build hold a reference (loop thread only). */
struct ls_ref {
        struct layer_store *ls;
        unsigned refs;
};
void template__ls_unref(struct ls_ref *r);
struct cbuild; /* template.c: a catalog template waiting for its layer */

/* Parsed manifests, valid while the file's (dev, ino, mtime, size) match: a lookup on the create
 * path costs one fstatat instead of a read and a parse. Publishing renames a new file into place,
 * so a change is always a new inode, whoever wrote it. */
#define MANIFEST_CACHE_SLOTS 64
struct manifest_slot {
        char name[SBX_MAX_TEMPLATE_NAME + 1]; /* "" = free */
        dev_t dev;
        ino_t ino;
        struct timespec mtim;
        off_t size;
        json_t *json; /* owned; shared read-only with callers (they get references) */
};

struct template_store {
        uv_loop_t *loop;
        int dirfd;              /* owns: TEMPLATES_DIR */
        char path[PATH_MAX];    /* absolute path of TEMPLATES_DIR */
        char builder[PATH_MAX]; /* mmdebstrap to run; "" = look it up in BUILD_PATH (tests set it) */
        bool closing;
        struct layer_store *layers; /* = lsr->ls */
        struct ls_ref *lsr;
        struct dbuild *dbuilds;    /* running mmdebstrap builds */
        struct cbuild **cbuilds;   /* per catalog entry: its running build, or NULL */
        bool *cfailed;             /* per catalog entry: the last build failed */
        char (*clast_error)[SBX_ERR_MSG_MAX];
        char (*clog)[BUILD_LOG_LINES * BUILD_LINE_MAX];
        char last_log[BUILD_LOG_LINES * BUILD_LINE_MAX]; /* output tail of the last failed Debian build */
        pthread_mutex_t mlock; /* the manifest cache: lookups also run on worker threads (GC, import) */
        struct manifest_slot mcache[MANIFEST_CACHE_SLOTS];
        unsigned mnext;
};

/* mkdir + fix the mode; fails if path exists as something other than a directory. ret_fd optional. */
int template__ensure_dir(int parent, const char *path, mode_t mode, int *ret_fd, struct sbx_err *err);

/* template-debian.c */
/* Stop every running mmdebstrap build (store closing): waiters get done(-ECANCELED). */
void template__debian_stop_all(struct template_store *ts);
