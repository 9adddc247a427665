/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The persistent catalog behind one interface (a vtable, like redis ConnectionType):
 * store-sqlite.c is the embedded default; store-pg.c comes with scale-out.
 * The store knows nothing about namespaces or HTTP; it persists records the core hands it.
 * All calls are synchronous; with SQLite in WAL mode and synchronous=NORMAL they take
 * microseconds (docs/internals/store.md). Errors: -SBX_E_NOT_FOUND, -SBX_E_CONFLICT, -SBX_E_INTERNAL,
 * and -SBX_E_INVALID for arguments the store itself checks (filter, cursor, record fields).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/limits.h"
#include "common/util.h"

/* Sandbox states (DESIGN §5). The string forms are the API's. */
enum sandbox_state {
        SANDBOX_CREATING,
        SANDBOX_RUNNING,
        SANDBOX_STOPPING,
        SANDBOX_STOPPED,
        SANDBOX_STARTING,
        SANDBOX_FAILED,
        SANDBOX_DELETED,
        SANDBOX_PAUSED,                       /* frozen (cgroup freezer): no CPU, memory kept */
        SANDBOX_HIBERNATING,                  /* being checkpointed to disk */
        SANDBOX_HIBERNATED,                   /* no process; memory on disk (CRIU) or not (filesystem only) */
        SANDBOX_WAKING,                       /* being restored */
        _SANDBOX_STATE_MAX,
        _SANDBOX_STATE_INVALID = -22,
};

const char *sandbox_state_to_string(enum sandbox_state s);
enum sandbox_state sandbox_state_from_string(const char *s);

#define SBX_MAX_REASON 256
#define SBX_MAX_CGROUP_NAME 256

struct sandbox_record {
        char id[SBX_ID_MAX];
        char name[SBX_MAX_NAME + 1];          /* "" if none; unique among non-deleted */
        char template_name[SBX_MAX_TEMPLATE_NAME + 1];
        enum sandbox_state state;
        char state_reason[SBX_MAX_REASON];    /* why it is failed/stopped, "" otherwise */
        char owner[64];                       /* API key id; multi-tenancy later */
        char project[64];
        char *spec_json;                      /* owned: validated spec, canonical JSON (env, resources, timeout) */
        char *metadata_json;                  /* owned: JSON object of string→string */
        uint32_t uid_slot;                    /* uid range = SBX_UID_BASE + slot * SBX_UID_RANGE */
        int64_t init_pid;                     /* host pid of sbx-init, 0 if none */
        uint64_t init_start_time;             /* /proc/PID/stat field 22, to detect pid reuse */
        char cgroup_name[SBX_MAX_CGROUP_NAME];/* path below each hierarchy root, e.g. "/x/sbx-abcd/sbx_..." */
        uint64_t created_ms, updated_ms, started_ms, deleted_ms; /* unix ms; 0 = never */
        /* deadlines and the instants they derive from (unix ms; 0 = none), stored so timers
         * survive a restart: expires_ms ends the lifetime; active_ms is the last activity (idle
         * timeout); paused_ms is when the sandbox was paused (paused timeout) */
        uint64_t expires_ms, active_ms, paused_ms;
};

/* Free the owned strings and zero the record. */
void sandbox_record_release(struct sandbox_record *r);
/* Deep copy into uninitialised dst (dst is not released first). Returns 0 or -ENOMEM; dst is
 * untouched on failure. */
int sandbox_record_copy(struct sandbox_record *dst, const struct sandbox_record *src);
/* Release each of the n records of a (as returned by sandbox_list / sandbox_list_live) and free
 * the array. NULL-safe. */
void sandbox_record_array_free(struct sandbox_record *a, size_t n);

struct sandbox_filter {
        int state;                            /* enum sandbox_state, or -1 for "all but deleted" */
        const char *meta_key[SBX_MAX_METADATA];  /* metadata key=value pairs, all must match */
        const char *meta_value[SBX_MAX_METADATA];
        size_t n_meta;
        const char *after_id;                 /* cursor: ids ordered by (created_ms, id); NULL = start */
        size_t offset;
        size_t limit;                         /* 1..SBX_MAX_LIST_LIMIT */
};

/* One event (core/events.c). */
#define SBX_MAX_EVENT_TYPE 64
struct event_row {
        uint64_t id;                          /* assigned by event_append: increasing, from 1 */
        char sandbox_id[SBX_ID_MAX];          /* "" = daemon-wide */
        char type[SBX_MAX_EVENT_TYPE];        /* "sandbox.paused", "snapshot.created", ... */
        char *data_json;                      /* owned; NULL = none */
        uint64_t at_ms;                       /* unix ms, set by the caller */
};

struct event_query {
        const char *sandbox_id;               /* NULL = every event */
        uint64_t after, before;               /* ids strictly between (before 0 = no bound) */
        bool desc;                            /* newest first */
        size_t limit;                         /* 1..SBX_MAX_LIST_LIMIT */
};

void event_row_array_free(struct event_row *a, size_t n);

/* A snapshot record (core/snapshots.c): the core's JSON, stored as is. */
struct snapshot_row {
        char id[SBX_ID_MAX];
        char kind[16];                        /* snapshot | checkpoint | fork */
        char sandbox_id[SBX_ID_MAX];          /* the sandbox it was taken of */
        char parent_id[SBX_ID_MAX];           /* "" = none */
        char *data_json;                      /* owned */
        uint64_t created_ms;
};
void snapshot_row_array_free(struct snapshot_row *a, size_t n);

/* A process record (core/process-store.c): the core's JSON, stored as is, keyed by id. */
struct process_row {
        char id[SBX_ID_MAX];
        char sandbox_id[SBX_ID_MAX];
        uint64_t seq;                         /* sbx-init's id of the process, 1..INT64_MAX */
        char *data_json;                      /* owned */
};

/* Free each row's data and the array. NULL-safe. */
void process_row_array_free(struct process_row *a, size_t n);

struct store;

struct store_ops {
        const char *name;
        int (*open)(struct store *s, const char *url, struct sbx_err *err);
        void (*close)(struct store *s);
        int (*sandbox_insert)(struct store *s, const struct sandbox_record *r, struct sbx_err *err);
        /* Replaces every column of the row with r->id. -SBX_E_NOT_FOUND if none. */
        int (*sandbox_update)(struct store *s, const struct sandbox_record *r, struct sbx_err *err);
        /* Fills *ret (caller releases). -SBX_E_NOT_FOUND if none. Deleted rows are returned too. */
        int (*sandbox_get)(struct store *s, const char *id, struct sandbox_record *ret, struct sbx_err *err);
        /* Rows matching f, ordered by created_ms, id. *ret is an array of *ret_n records (caller
         * releases each and frees the array). *ret_more = true if more rows follow. */
        int (*sandbox_list)(struct store *s, const struct sandbox_filter *f, struct sandbox_record **ret,
                            size_t *ret_n, bool *ret_more, struct sbx_err *err);
        /* Every record not in state deleted (for recovery and the in-memory index). */
        int (*sandbox_list_live)(struct store *s, struct sandbox_record **ret, size_t *ret_n, struct sbx_err *err);
        /* Append e (sandbox_id "" = daemon-wide; data_json may be NULL); sets e->id. Keeps the
         * newest SBX_MAX_EVENTS_KEPT events: older ones are pruned now and then. */
        int (*event_append)(struct store *s, struct event_row *e, struct sbx_err *err);
        /* Events matching q, in id order (q->desc: newest first); *ret_more if more match. */
        int (*event_list)(struct store *s, const struct event_query *q, struct event_row **ret, size_t *ret_n,
                          bool *ret_more, struct sbx_err *err);
        /* Daemon settings (e.g. "daemon.instance"). -SBX_E_NOT_FOUND if key unset. */
        int (*setting_get)(struct store *s, const char *key, char *buf, size_t size, struct sbx_err *err);
        int (*setting_set)(struct store *s, const char *key, const char *value, struct sbx_err *err);
        /* Insert or replace the record with p->id (its sandbox and seq never change: a row with the
         * same id and another sandbox or seq -> -SBX_E_CONFLICT). */
        int (*process_put)(struct store *s, const struct process_row *p, struct sbx_err *err);
        /* Every process row of a sandbox, by seq (at most SBX_MAX_PROCESS_ROWS). */
        int (*process_list)(struct store *s, const char *sandbox_id, struct process_row **ret, size_t *ret_n,
                            struct sbx_err *err);
        /* Delete the row with id, or (id NULL) every row of sandbox_id. Absent rows are no error. */
        int (*process_delete)(struct store *s, const char *id, const char *sandbox_id, struct sbx_err *err);
        /* Insert or replace the snapshot with r->id (its sandbox, parent and kind never change). A
         * parent that does not exist -> -SBX_E_NOT_FOUND. */
        int (*snapshot_put)(struct store *s, const struct snapshot_row *r, struct sbx_err *err);
        /* Every snapshot, oldest first (at most SBX_MAX_SNAPSHOTS). */
        int (*snapshot_list)(struct store *s, struct snapshot_row **ret, size_t *ret_n, struct sbx_err *err);
        /* Absent is no error; one that is still a parent -> -SBX_E_CONFLICT. */
        int (*snapshot_delete)(struct store *s, const char *id, struct sbx_err *err);
};

struct store {
        const struct store_ops *ops;
        void *impl;                           /* owned by the backend */
};

/* Open the store named by url: "sqlite:PATH" or a plain path (SQLite). Applies migrations.
 * Any other "scheme:" prefix -> -SBX_E_INVALID. On failure *s is left closed (ops == NULL). */
int store_open(struct store *s, const char *url, struct sbx_err *err);
/* Close the backend; NULL-safe and idempotent. */
void store_close(struct store *s);

extern const struct store_ops store_sqlite_ops;

/* Compiled-in migrations (generated from store/migrations/NNNN-name.sql, in order). */
struct store_migration {
        int version;
        const char *name;
        const char *sql;
};
extern const struct store_migration store_migrations[];
extern const size_t store_migrations_count;
