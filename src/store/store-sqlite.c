/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded store backend: one SQLite database file in WAL mode with synchronous=NORMAL,
 * so a write is a commit to the WAL without an fsync and every call can run synchronously on
 * the loop thread (numbers in docs/internals/store.md). It applies the compiled-in migrations
 * at open and keeps every statement prepared for the life of the connection. Every value that
 * comes from a caller is bound as a parameter, never formatted into SQL. It must not log, and
 * a connection must only be used by one thread at a time (opened with SQLITE_OPEN_NOMUTEX).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "store/store.h"

#define SQLITE_BUSY_TIMEOUT_MS 5000

/* Column list shared by every statement that reads or writes a whole row, in enum order. */
#define SANDBOX_COLUMNS                                                                                      \
        "id, name, template_name, state, state_reason, owner, project, spec_json, metadata_json, uid_slot, " \
        "init_pid, init_start_time, cgroup_name, created_ms, updated_ms, started_ms, deleted_ms, expires_ms, " \
        "active_ms, paused_ms"

enum sandbox_column {
        COL_ID,
        COL_NAME,
        COL_TEMPLATE_NAME,
        COL_STATE,
        COL_STATE_REASON,
        COL_OWNER,
        COL_PROJECT,
        COL_SPEC_JSON,
        COL_METADATA_JSON,
        COL_UID_SLOT,
        COL_INIT_PID,
        COL_INIT_START_TIME,
        COL_CGROUP_NAME,
        COL_CREATED_MS,
        COL_UPDATED_MS,
        COL_STARTED_MS,
        COL_DELETED_MS,
        COL_EXPIRES_MS,
        COL_ACTIVE_MS,
        COL_PAUSED_MS,
        _COL_MAX,
};

enum stmt_id {
        ST_SANDBOX_INSERT,
        ST_SANDBOX_UPDATE,
        ST_SANDBOX_GET,
        ST_SANDBOX_CURSOR,
        ST_SANDBOX_LIST,
        ST_SANDBOX_LIST_LIVE,
        ST_ID_HOLDER,
        ST_NAME_HOLDER,
        ST_UID_SLOT_HOLDER,
        ST_EVENT_APPEND,
        ST_EVENT_LIST_ASC,
        ST_EVENT_LIST_DESC,
        ST_EVENT_PRUNE,
        ST_SETTING_GET,
        ST_SETTING_SET,
        ST_PROCESS_PUT,
        ST_PROCESS_LIST,
        ST_PROCESS_DELETE,
        ST_PROCESS_DELETE_SANDBOX,
        ST_SNAPSHOT_PUT,
        ST_SNAPSHOT_LIST,
        ST_SNAPSHOT_DELETE,
        _ST_MAX,
};

/*
 * Parameters ?1..?20 of insert and update are the columns in enum sandbox_column order
 * (parameter = column + 1), so one binder serves both.
 */
static const char *const stmt_sql[_ST_MAX] = {
        [ST_SANDBOX_INSERT] = "INSERT INTO sandboxes (" SANDBOX_COLUMNS ") "
                              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, "
                              "?19, ?20)",
        [ST_SANDBOX_UPDATE] = "UPDATE sandboxes SET name = ?2, template_name = ?3, state = ?4, state_reason = ?5, "
                              "owner = ?6, project = ?7, spec_json = ?8, metadata_json = ?9, uid_slot = ?10, "
                              "init_pid = ?11, init_start_time = ?12, cgroup_name = ?13, created_ms = ?14, "
                              "updated_ms = ?15, started_ms = ?16, deleted_ms = ?17, expires_ms = ?18, active_ms = ?19, "
                              "paused_ms = ?20 WHERE id = ?1",
        [ST_SANDBOX_GET] = "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE id = ?1",
        [ST_SANDBOX_CURSOR] = "SELECT created_ms FROM sandboxes WHERE id = ?1",
        /*
         * ?1 state (NULL = all but deleted), (?2, ?3) the cursor position (created_ms, id),
         * ?4 a JSON array of [key, value] pairs every row's metadata must contain (NULL = none),
         * ?5 limit, ?6 offset. json_each() compares keys as plain strings, so a key with a dot,
         * a quote or a '$' needs no JSON-path quoting. The row-value comparison lets SQLite
         * start the (created_ms, id) index scan at the cursor.
         */
        [ST_SANDBOX_LIST] = "SELECT " SANDBOX_COLUMNS " FROM sandboxes AS s "
                            "WHERE CASE WHEN ?1 IS NULL THEN s.state != 'deleted' ELSE s.state = ?1 END "
                            "AND (s.created_ms, s.id) > (?2, ?3) "
                            "AND NOT EXISTS (SELECT 1 FROM json_each(?4) AS f WHERE NOT EXISTS ("
                            "SELECT 1 FROM json_each(s.metadata_json) AS m "
                            "WHERE m.key = json_extract(f.value, '$[0]') AND m.type = 'text' "
                            "AND m.value = json_extract(f.value, '$[1]'))) "
                            "ORDER BY s.created_ms, s.id LIMIT ?5 OFFSET ?6",
        [ST_SANDBOX_LIST_LIVE] = "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE state != 'deleted' "
                                 "ORDER BY created_ms, id",
        /* Which row holds an id, or which live row a name or uid slot, after a UNIQUE violation
         * (see sandbox_write_error). ?2 is the writer's own id, which does not count. */
        [ST_ID_HOLDER] = "SELECT 1 FROM sandboxes WHERE id = ?1",
        [ST_NAME_HOLDER] = "SELECT id FROM sandboxes WHERE name = ?1 AND name != '' AND state != 'deleted' "
                           "AND id != ?2 LIMIT 1",
        [ST_UID_SLOT_HOLDER] = "SELECT id FROM sandboxes WHERE uid_slot = ?1 AND state != 'deleted' "
                               "AND id != ?2 LIMIT 1",
        [ST_EVENT_APPEND] = "INSERT INTO events (sandbox_id, type, data_json, created_ms) VALUES (?1, ?2, ?3, ?4)",
        /* ?1 sandbox id (NULL = all), ids in (?2, ?3), ?4 limit */
        [ST_EVENT_LIST_ASC] = "SELECT id, coalesce(sandbox_id, ''), type, data_json, created_ms FROM events "
                              "WHERE (?1 IS NULL OR sandbox_id = ?1) AND id > ?2 AND id < ?3 ORDER BY id LIMIT ?4",
        [ST_EVENT_LIST_DESC] = "SELECT id, coalesce(sandbox_id, ''), type, data_json, created_ms FROM events "
                               "WHERE (?1 IS NULL OR sandbox_id = ?1) AND id > ?2 AND id < ?3 "
                               "ORDER BY id DESC LIMIT ?4",
        [ST_EVENT_PRUNE] = "DELETE FROM events WHERE id <= ?1",
        [ST_SETTING_GET] = "SELECT value FROM settings WHERE key = ?1",
        [ST_SETTING_SET] = "INSERT INTO settings (key, value) VALUES (?1, ?2) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [ST_PROCESS_PUT] = "INSERT INTO processes (id, sandbox_id, seq, data_json, updated_ms) "
                           "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO UPDATE SET "
                           "data_json = excluded.data_json, updated_ms = excluded.updated_ms "
                           "WHERE processes.sandbox_id = excluded.sandbox_id AND processes.seq = excluded.seq",
        [ST_PROCESS_LIST] = "SELECT id, seq, data_json FROM processes WHERE sandbox_id = ?1 ORDER BY seq",
        [ST_PROCESS_DELETE] = "DELETE FROM processes WHERE id = ?1",
        [ST_PROCESS_DELETE_SANDBOX] = "DELETE FROM processes WHERE sandbox_id = ?1",
        [ST_SNAPSHOT_PUT] = "INSERT INTO snapshots (id, kind, sandbox_id, parent_id, data_json, created_ms) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET "
                            "data_json = excluded.data_json WHERE snapshots.kind = excluded.kind AND "
                            "snapshots.sandbox_id = excluded.sandbox_id AND "
                            "snapshots.parent_id IS excluded.parent_id",
        [ST_SNAPSHOT_LIST] = "SELECT id, kind, sandbox_id, coalesce(parent_id, ''), data_json, created_ms "
                             "FROM snapshots ORDER BY created_ms, id",
        [ST_SNAPSHOT_DELETE] = "DELETE FROM snapshots WHERE id = ?1",
};

struct sqlite_store {
        sqlite3 *db;
        sqlite3_stmt *stmt[_ST_MAX]; /* prepared once at open, finalized at close */
};

/* A cached statement borrowed for one call: reset and unbound when the borrow ends. */
static void stmt_donep(sqlite3_stmt **st)
{
        if (*st) {
                (void)sqlite3_reset(*st);
                (void)sqlite3_clear_bindings(*st);
        }
}
#define _cleanup_stmt_ _cleanup_(stmt_donep)

static void stmt_finalizep(sqlite3_stmt **st)
{
        (void)sqlite3_finalize(*st);
}

static void sqlite_store_free(struct sqlite_store *q)
{
        if (!q)
                return;
        for (size_t i = 0; i < _ST_MAX; i++)
                (void)sqlite3_finalize(q->stmt[i]);
        (void)sqlite3_close(q->db); /* NULL-safe; every statement is finalized above */
        free(q);
}
DEFINE_FREEP(struct sqlite_store, sqlite_store_free)

static struct sqlite_store *impl(struct store *s)
{
        return s->impl;
}

/*
 * Fill err from a failed SQLite call: "<what>: <sqlite message>". Out of memory stays
 * -ENOMEM and a lock held past the busy timeout is -SBX_E_UNAVAILABLE (retryable); all else,
 * including a full disk or an I/O error (the message says which), is -SBX_E_INTERNAL.
 */
static int sql_error(const struct sqlite_store *q, int rc, struct sbx_err *err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int sql_error(const struct sqlite_store *q, int rc, struct sbx_err *err, const char *fmt, ...)
{
        char what[SBX_ERR_MSG_MAX];
        const char *msg;
        va_list ap;
        int code;

        switch (rc & 0xff) {
        case SQLITE_NOMEM:
                code = -ENOMEM;
                break;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                code = -SBX_E_UNAVAILABLE;
                break;
        default:
                code = -SBX_E_INTERNAL;
                break;
        }
        va_start(ap, fmt);
        (void)vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        /* errmsg describes the last call on the connection; bind errors do not set it. */
        msg = q && q->db && sqlite3_extended_errcode(q->db) == rc ? sqlite3_errmsg(q->db) : sqlite3_errstr(rc);
        return sbx_err_set(err, code, "%s: %s", what, msg);
}

/* ---- binding and reading rows ---- */

/* Bind a fixed-size record field; it must be NUL-terminated inside its array. */
static int bind_field(sqlite3_stmt *st, int idx, const char *field, size_t size)
{
        size_t n = strnlen(field, size);

        if (n == size)
                return SQLITE_TOOBIG;
        return sqlite3_bind_text(st, idx, field, (int)n, SQLITE_STATIC);
}

static int bind_text_or_null(sqlite3_stmt *st, int idx, const char *s)
{
        return s ? sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, idx);
}

static int bind_sandbox(struct sqlite_store *q, sqlite3_stmt *st, const struct sandbox_record *r, struct sbx_err *err)
{
        const char *state = sandbox_state_to_string(r->state);
        int rc = SQLITE_OK;

        if (strnlen(r->id, sizeof r->id) == 0 || strnlen(r->id, sizeof r->id) == sizeof r->id)
                return sbx_err_set(err, -SBX_E_INVALID, "sandbox record has no valid id");
        if (!state)
                return sbx_err_set(err, -SBX_E_INVALID, "sandbox '%s' has invalid state %d", r->id, (int)r->state);

#define B(expr)                      \
        do {                         \
                if (rc == SQLITE_OK) \
                        rc = (expr); \
        } while (0)
        B(bind_field(st, COL_ID + 1, r->id, sizeof r->id));
        B(bind_field(st, COL_NAME + 1, r->name, sizeof r->name));
        B(bind_field(st, COL_TEMPLATE_NAME + 1, r->template_name, sizeof r->template_name));
        B(sqlite3_bind_text(st, COL_STATE + 1, state, -1, SQLITE_STATIC));
        B(bind_field(st, COL_STATE_REASON + 1, r->state_reason, sizeof r->state_reason));
        B(bind_field(st, COL_OWNER + 1, r->owner, sizeof r->owner));
        B(bind_field(st, COL_PROJECT + 1, r->project, sizeof r->project));
        B(bind_text_or_null(st, COL_SPEC_JSON + 1, r->spec_json));
        B(bind_text_or_null(st, COL_METADATA_JSON + 1, r->metadata_json));
        B(sqlite3_bind_int64(st, COL_UID_SLOT + 1, (sqlite3_int64)r->uid_slot));
        B(sqlite3_bind_int64(st, COL_INIT_PID + 1, (sqlite3_int64)r->init_pid));
        /* uint64 values travel as their int64 bit pattern and come back unchanged. */
        B(sqlite3_bind_int64(st, COL_INIT_START_TIME + 1, (sqlite3_int64)r->init_start_time));
        B(bind_field(st, COL_CGROUP_NAME + 1, r->cgroup_name, sizeof r->cgroup_name));
        B(sqlite3_bind_int64(st, COL_CREATED_MS + 1, (sqlite3_int64)r->created_ms));
        B(sqlite3_bind_int64(st, COL_UPDATED_MS + 1, (sqlite3_int64)r->updated_ms));
        B(sqlite3_bind_int64(st, COL_STARTED_MS + 1, (sqlite3_int64)r->started_ms));
        B(sqlite3_bind_int64(st, COL_DELETED_MS + 1, (sqlite3_int64)r->deleted_ms));
        B(sqlite3_bind_int64(st, COL_EXPIRES_MS + 1, (sqlite3_int64)r->expires_ms));
        B(sqlite3_bind_int64(st, COL_ACTIVE_MS + 1, (sqlite3_int64)r->active_ms));
        B(sqlite3_bind_int64(st, COL_PAUSED_MS + 1, (sqlite3_int64)r->paused_ms));
#undef B
        if (rc == SQLITE_TOOBIG)
                return sbx_err_set(err, -SBX_E_INVALID, "sandbox '%s' has an unterminated text field", r->id);
        if (rc != SQLITE_OK)
                return sql_error(q, rc, err, "cannot bind sandbox '%s'", r->id);
        return 0;
}

/* Copy a text column into a fixed field. NULL reads as "". Too long means the row is not ours. */
static int column_to_field(sqlite3_stmt *st, int col, char *buf, size_t size)
{
        const unsigned char *t;
        size_t n;

        if (sqlite3_column_type(st, col) == SQLITE_NULL) {
                buf[0] = '\0';
                return 0;
        }
        t = sqlite3_column_text(st, col);
        if (!t)
                return -ENOMEM;
        n = (size_t)sqlite3_column_bytes(st, col);
        if (n >= size)
                return -SBX_E_INTERNAL;
        memcpy(buf, t, n);
        buf[n] = '\0';
        return 0;
}

/* Duplicate a text column; NULL stays NULL. */
static int column_dup(sqlite3_stmt *st, int col, char **ret)
{
        const unsigned char *t;

        if (sqlite3_column_type(st, col) == SQLITE_NULL) {
                *ret = NULL;
                return 0;
        }
        t = sqlite3_column_text(st, col);
        if (!t)
                return -ENOMEM;
        *ret = strndup((const char *)t, (size_t)sqlite3_column_bytes(st, col));
        return *ret ? 0 : -ENOMEM;
}

/* Read the current row of a SANDBOX_COLUMNS statement into *ret (filled only on success). */
static int read_sandbox(sqlite3_stmt *st, struct sandbox_record *ret, struct sbx_err *err)
{
        _cleanup_(sandbox_record_release) struct sandbox_record r = {};
        char state[16];
        sqlite3_int64 slot;
        int k = 0;

#define F(col, field)                                                           \
        do {                                                                    \
                if (k >= 0)                                                     \
                        k = column_to_field(st, (col), (field), sizeof(field)); \
        } while (0)
        F(COL_ID, r.id);
        F(COL_NAME, r.name);
        F(COL_TEMPLATE_NAME, r.template_name);
        F(COL_STATE, state);
        F(COL_STATE_REASON, r.state_reason);
        F(COL_OWNER, r.owner);
        F(COL_PROJECT, r.project);
        F(COL_CGROUP_NAME, r.cgroup_name);
#undef F
        if (k >= 0)
                k = column_dup(st, COL_SPEC_JSON, &r.spec_json);
        if (k >= 0)
                k = column_dup(st, COL_METADATA_JSON, &r.metadata_json);
        if (k == -ENOMEM)
                return sbx_err_set(err, -ENOMEM, "cannot read sandbox row: out of memory");
        if (k < 0)
                return sbx_err_set(err, -SBX_E_INTERNAL, "sandbox row '%s' has a field longer than its limit", r.id);

        r.state = sandbox_state_from_string(state);
        slot = sqlite3_column_int64(st, COL_UID_SLOT);
        if (r.state == _SANDBOX_STATE_INVALID || slot < 0 || slot > UINT32_MAX)
                return sbx_err_set(err, -SBX_E_INTERNAL, "sandbox row '%s' is corrupt", r.id);
        r.uid_slot = (uint32_t)slot;
        r.init_pid = sqlite3_column_int64(st, COL_INIT_PID);
        r.init_start_time = (uint64_t)sqlite3_column_int64(st, COL_INIT_START_TIME);
        r.created_ms = (uint64_t)sqlite3_column_int64(st, COL_CREATED_MS);
        r.updated_ms = (uint64_t)sqlite3_column_int64(st, COL_UPDATED_MS);
        r.started_ms = (uint64_t)sqlite3_column_int64(st, COL_STARTED_MS);
        r.deleted_ms = (uint64_t)sqlite3_column_int64(st, COL_DELETED_MS);
        r.expires_ms = (uint64_t)sqlite3_column_int64(st, COL_EXPIRES_MS);
        r.active_ms = (uint64_t)sqlite3_column_int64(st, COL_ACTIVE_MS);
        r.paused_ms = (uint64_t)sqlite3_column_int64(st, COL_PAUSED_MS);

        *ret = r;
        memset(&r, 0, sizeof r);
        return 0;
}

/* A growing array of records for list results. */
struct record_vec {
        struct sandbox_record *v;
        size_t n, cap;
};

static void record_vec_done(struct record_vec *a)
{
        sandbox_record_array_free(a->v, a->n);
        *a = (struct record_vec){};
}

/* Step st to the end, appending each row, at most max rows. */
static int read_sandboxes(struct sqlite_store *q, sqlite3_stmt *st, size_t max, struct record_vec *a,
                          struct sbx_err *err)
{
        int rc, r;

        while (a->n < max) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return sql_error(q, rc, err, "cannot list sandboxes");
                if (a->n == a->cap) {
                        size_t cap = a->cap ? a->cap * 2 : 16;
                        struct sandbox_record *v = reallocarray(a->v, cap, sizeof *v);

                        if (!v)
                                return sbx_err_set(err, -ENOMEM, "cannot list sandboxes: out of memory");
                        a->v = v;
                        a->cap = cap;
                }
                r = read_sandbox(st, &a->v[a->n], err);
                if (r < 0)
                        return r;
                a->n++;
        }
        return 0;
}

/* ---- sandboxes ---- */

/* Is there a row with r's id / a live row other than r with its name or uid slot? 1 yes, 0 no,
 * < 0 error. */
static int holder_exists(struct sqlite_store *q, enum stmt_id which, const struct sandbox_record *r,
                         struct sbx_err *err)
{
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[which];
        int rc;

        if (which == ST_ID_HOLDER)
                rc = sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
        else if (which == ST_NAME_HOLDER)
                rc = sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
        else
                rc = sqlite3_bind_int64(st, 1, (sqlite3_int64)r->uid_slot);
        if (rc == SQLITE_OK && which != ST_ID_HOLDER)
                rc = sqlite3_bind_text(st, 2, r->id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return sql_error(q, rc, err, "cannot check sandbox '%s' for conflicts", r->id);
}

/* Turn a failed insert/update of r into the error the API shows. */
static int sandbox_write_error(struct sqlite_store *q, int rc, const struct sandbox_record *r, bool insert,
                               struct sbx_err *err)
{
        const char *verb = insert ? "insert" : "update";
        int k;

        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
                /* SQLite reports whichever index it checked first, by column names, not by our
                 * partial indexes: ask which one it was, most fundamental first. */
                if (insert) {
                        k = holder_exists(q, ST_ID_HOLDER, r, err);
                        if (k < 0)
                                return k;
                        if (k > 0)
                                return sbx_err_setr(err, -SBX_E_CONFLICT, "id_taken", "sandbox '%s' already exists",
                                                    r->id);
                }
                if (r->name[0] && r->state != SANDBOX_DELETED) {
                        k = holder_exists(q, ST_NAME_HOLDER, r, err);
                        if (k < 0)
                                return k;
                        if (k > 0)
                                return sbx_err_setr(err, -SBX_E_CONFLICT, "name_taken",
                                                    "sandbox name '%s' is already in use", r->name);
                }
                if (r->state != SANDBOX_DELETED) {
                        k = holder_exists(q, ST_UID_SLOT_HOLDER, r, err);
                        if (k < 0)
                                return k;
                        if (k > 0)
                                return sbx_err_setr(err, -SBX_E_CONFLICT, "uid_slot_taken",
                                                    "uid slot %u is already in use", r->uid_slot);
                }
        }
        if (rc == SQLITE_CONSTRAINT_CHECK)
                return sbx_err_set(err, -SBX_E_INVALID,
                                   "cannot %s sandbox '%s': spec_json or metadata_json is not valid JSON", verb, r->id);
        return sql_error(q, rc, err, "cannot %s sandbox '%s'", verb, r->id);
}

static int sqlite_sandbox_write(struct store *s, enum stmt_id which, const struct sandbox_record *r,
                                struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[which];
        int rc, k;

        k = bind_sandbox(q, st, r, err);
        if (k < 0)
                return k;
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
                /* End the failed statement before asking the database why it failed. */
                (void)sqlite3_reset(st);
                return sandbox_write_error(q, rc, r, which == ST_SANDBOX_INSERT, err);
        }
        if (which == ST_SANDBOX_UPDATE && sqlite3_changes(q->db) == 0)
                return sbx_err_set(err, -SBX_E_NOT_FOUND, "sandbox '%s' not found", r->id);
        return 0;
}

static int sqlite_sandbox_insert(struct store *s, const struct sandbox_record *r, struct sbx_err *err)
{
        return sqlite_sandbox_write(s, ST_SANDBOX_INSERT, r, err);
}

static int sqlite_sandbox_update(struct store *s, const struct sandbox_record *r, struct sbx_err *err)
{
        return sqlite_sandbox_write(s, ST_SANDBOX_UPDATE, r, err);
}

static int sqlite_sandbox_get(struct store *s, const char *id, struct sandbox_record *ret, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SANDBOX_GET];
        int rc;

        rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return sbx_err_set(err, -SBX_E_NOT_FOUND, "sandbox '%s' not found", id);
        if (rc != SQLITE_ROW)
                return sql_error(q, rc, err, "cannot read sandbox '%s'", id);
        return read_sandbox(st, ret, err);
}

/* Find the cursor row's created_ms. An id the store never saw is the caller's mistake. */
static int cursor_position(struct sqlite_store *q, const char *after_id, sqlite3_int64 *ret_ms, struct sbx_err *err)
{
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SANDBOX_CURSOR];
        int rc;

        rc = sqlite3_bind_text(st, 1, after_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_cursor", "unknown cursor '%s'", after_id);
        if (rc != SQLITE_ROW)
                return sql_error(q, rc, err, "cannot look up cursor '%s'", after_id);
        *ret_ms = sqlite3_column_int64(st, 0);
        return 0;
}

/* The metadata filter as a JSON array of [key, value] pairs (duplicate keys must all match). */
static int metadata_filter_json(const struct sandbox_filter *f, char **ret, struct sbx_err *err)
{
        _cleanup_(json_decrefp) json_t *a = json_array();

        if (!a)
                return sbx_err_set(err, -ENOMEM, "cannot build metadata filter: out of memory");
        for (size_t i = 0; i < f->n_meta; i++) {
                const char *k = f->meta_key[i], *v = f->meta_value[i];

                if (!k || !v)
                        return sbx_err_set(err, -SBX_E_INVALID, "metadata filter %zu has no key or value", i);
                if (strlen(k) > SBX_MAX_METADATA_KEY || strlen(v) > SBX_MAX_METADATA_VALUE)
                        return sbx_err_set(err, -SBX_E_INVALID, "metadata filter '%.64s' is too long", k);
                /* json_pack refuses invalid UTF-8, which no stored metadata can contain either. */
                if (json_array_append_new(a, json_pack("[ss]", k, v)) < 0)
                        return sbx_err_set(err, -SBX_E_INVALID, "metadata filter %zu is not valid UTF-8", i);
        }
        *ret = json_dump_compact(a);
        if (!*ret)
                return sbx_err_set(err, -ENOMEM, "cannot build metadata filter: out of memory");
        return 0;
}

static int sqlite_sandbox_list(struct store *s, const struct sandbox_filter *f, struct sandbox_record **ret,
                               size_t *ret_n, bool *ret_more, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SANDBOX_LIST];
        _cleanup_(record_vec_done) struct record_vec a = {};
        _cleanup_free_ char *meta = NULL;
        sqlite3_int64 after_ms = INT64_MIN;
        const char *state = NULL;
        int rc, k;

        if (f->limit < 1 || f->limit > SBX_MAX_LIST_LIMIT)
                return sbx_err_set(err, -SBX_E_INVALID, "list limit %zu is not in 1..%d", f->limit, SBX_MAX_LIST_LIMIT);
        if (f->state != -1) {
                state = sandbox_state_to_string((enum sandbox_state)f->state);
                if (!state)
                        return sbx_err_set(err, -SBX_E_INVALID, "invalid sandbox state filter %d", f->state);
        }
        if (f->n_meta > SBX_MAX_METADATA)
                return sbx_err_set(err, -SBX_E_INVALID, "too many metadata filters (%zu, at most %d)", f->n_meta,
                                   SBX_MAX_METADATA);
        if (f->n_meta > 0) {
                k = metadata_filter_json(f, &meta, err);
                if (k < 0)
                        return k;
        }
        if (f->after_id) {
                k = cursor_position(q, f->after_id, &after_ms, err);
                if (k < 0)
                        return k;
        }

        rc = sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC); /* NULL binds NULL */
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, after_ms);
        /* Without a cursor: (INT64_MIN, "") sorts before every row (ids are never ""). */
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, f->after_id ? f->after_id : "", -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 4, meta, -1, SQLITE_STATIC);
        /* One row more than asked tells whether another page follows. */
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 5, (sqlite3_int64)f->limit + 1);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 6, f->offset > INT64_MAX ? INT64_MAX : (sqlite3_int64)f->offset);
        if (rc != SQLITE_OK)
                return sql_error(q, rc, err, "cannot list sandboxes");

        k = read_sandboxes(q, st, f->limit + 1, &a, err);
        if (k < 0)
                return k;

        *ret_more = a.n > f->limit;
        if (a.n > f->limit) {
                sandbox_record_release(&a.v[f->limit]);
                a.n = f->limit;
        }
        *ret_n = a.n;
        *ret = TAKE_PTR(a.v);
        a = (struct record_vec){};
        return 0;
}

static int sqlite_sandbox_list_live(struct store *s, struct sandbox_record **ret, size_t *ret_n, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SANDBOX_LIST_LIVE];
        _cleanup_(record_vec_done) struct record_vec a = {};
        int k;

        k = read_sandboxes(q, st, SIZE_MAX, &a, err);
        if (k < 0)
                return k;
        *ret_n = a.n;
        *ret = TAKE_PTR(a.v);
        a = (struct record_vec){};
        return 0;
}

/* ---- events and settings ---- */

#define EVENT_PRUNE_EVERY 1024

static int sqlite_event_append(struct store *s, struct event_row *e, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_EVENT_APPEND];
        int rc;

        if (!e->type[0] || strnlen(e->type, sizeof e->type) == sizeof e->type ||
            strnlen(e->sandbox_id, sizeof e->sandbox_id) == sizeof e->sandbox_id)
                return sbx_err_set(err, -SBX_E_INVALID, "event has no valid type or sandbox id");
        rc = bind_text_or_null(st, 1, e->sandbox_id[0] ? e->sandbox_id : NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, e->type, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(st, 3, e->data_json);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)e->at_ms);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return sbx_err_set(err, -SBX_E_NOT_FOUND, "sandbox '%s' not found", e->sandbox_id);
        if (rc == SQLITE_CONSTRAINT_CHECK)
                return sbx_err_set(err, -SBX_E_INVALID, "event '%s' data is not valid JSON", e->type);
        if (rc != SQLITE_DONE)
                return sql_error(q, rc, err, "cannot append event '%s'", e->type);
        e->id = (uint64_t)sqlite3_last_insert_rowid(q->db);
        if (e->id % EVENT_PRUNE_EVERY == 0 && e->id > SBX_MAX_EVENTS_KEPT) {
                _cleanup_stmt_ sqlite3_stmt *pr = q->stmt[ST_EVENT_PRUNE];

                /* best effort: a failed prune is retried EVENT_PRUNE_EVERY events later */
                if (sqlite3_bind_int64(pr, 1, (sqlite3_int64)(e->id - SBX_MAX_EVENTS_KEPT)) == SQLITE_OK)
                        (void)sqlite3_step(pr);
        }
        return 0;
}

static int sqlite_event_list(struct store *s, const struct event_query *eq, struct event_row **ret, size_t *ret_n,
                             bool *ret_more, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[eq->desc ? ST_EVENT_LIST_DESC : ST_EVENT_LIST_ASC];
        struct event_row *v = NULL;
        size_t n = 0;
        int rc;

        if (eq->limit < 1 || eq->limit > SBX_MAX_LIST_LIMIT)
                return sbx_err_set(err, -SBX_E_INVALID, "event list limit out of range");
        rc = bind_text_or_null(st, 1, eq->sandbox_id);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, (sqlite3_int64)(eq->after > INT64_MAX ? INT64_MAX : eq->after));
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, eq->before && eq->before <= INT64_MAX ? (sqlite3_int64)eq->before
                                                                                      : INT64_MAX);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, (sqlite3_int64)eq->limit + 1);
        if (rc != SQLITE_OK)
                return sql_error(q, rc, err, "cannot list events");
        v = calloc(eq->limit + 1, sizeof *v);
        if (!v)
                return sbx_err_set(err, -ENOMEM, "cannot list events: out of memory");
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct event_row *e = &v[n];
                int k;

                e->id = (uint64_t)sqlite3_column_int64(st, 0);
                k = column_to_field(st, 1, e->sandbox_id, sizeof e->sandbox_id);
                if (k >= 0)
                        k = column_to_field(st, 2, e->type, sizeof e->type);
                if (k >= 0)
                        k = column_dup(st, 3, &e->data_json);
                e->at_ms = (uint64_t)sqlite3_column_int64(st, 4);
                n++;
                if (k < 0) {
                        event_row_array_free(v, n);
                        return sbx_err_set(err, k == -ENOMEM ? -ENOMEM : -SBX_E_INTERNAL, "cannot read event row");
                }
        }
        if (rc != SQLITE_DONE) {
                event_row_array_free(v, n);
                return sql_error(q, rc, err, "cannot list events");
        }
        *ret_more = n > eq->limit;
        if (n > eq->limit) {
                free(v[eq->limit].data_json);
                n = eq->limit;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

static int sqlite_setting_get(struct store *s, const char *key, char *buf, size_t size, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SETTING_GET];
        const unsigned char *v;
        size_t n;
        int rc;

        rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return sbx_err_set(err, -SBX_E_NOT_FOUND, "setting '%s' is not set", key);
        if (rc != SQLITE_ROW)
                return sql_error(q, rc, err, "cannot read setting '%s'", key);
        v = sqlite3_column_text(st, 0);
        if (!v)
                return sbx_err_set(err, -ENOMEM, "cannot read setting '%s': out of memory", key);
        n = (size_t)sqlite3_column_bytes(st, 0);
        if (n >= size)
                return sbx_err_set(err, -ENOBUFS, "setting '%s' is longer than %zu bytes", key, size ? size - 1 : 0);
        memcpy(buf, v, n);
        buf[n] = '\0';
        return 0;
}

static int sqlite_setting_set(struct store *s, const char *key, const char *value, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SETTING_SET];
        int rc;

        if (!key || !key[0] || !value)
                return sbx_err_set(err, -SBX_E_INVALID, "setting needs a key and a value");
        rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return sql_error(q, rc, err, "cannot write setting '%s'", key);
        return 0;
}

/* ---- processes ---- */

static int sqlite_process_put(struct store *s, const struct process_row *p, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_PROCESS_PUT];
        int rc;

        if (!p->id[0] || !p->sandbox_id[0] || p->seq == 0 || p->seq > INT64_MAX || !p->data_json)
                return sbx_err_set(err, -SBX_E_INVALID, "process record needs an id, a sandbox, a seq and data");
        rc = sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, p->sandbox_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)p->seq);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 4, p->data_json, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 5, (sqlite3_int64)now_realtime_ms());
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return sqlite3_changes(q->db) == 1
                               ? 0
                               : sbx_err_set(err, -SBX_E_CONFLICT, "process '%s' belongs to another sandbox", p->id);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return sbx_err_set(err, -SBX_E_NOT_FOUND, "sandbox '%s' not found", p->sandbox_id);
        if (rc == SQLITE_CONSTRAINT_CHECK)
                return sbx_err_set(err, -SBX_E_INVALID, "process '%s' data is not valid JSON", p->id);
        return sql_error(q, rc, err, "cannot write process '%s'", p->id);
}

void process_row_array_free(struct process_row *a, size_t n)
{
        for (size_t i = 0; a && i < n; i++)
                free(a[i].data_json);
        free(a);
}

static int sqlite_process_list(struct store *s, const char *sandbox_id, struct process_row **ret, size_t *ret_n,
                               struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_PROCESS_LIST];
        struct process_row *a = NULL;
        size_t n = 0, cap = 0;
        int rc;

        rc = sqlite3_bind_text(st, 1, sandbox_id, -1, SQLITE_STATIC);
        while (rc == SQLITE_OK || rc == SQLITE_ROW) {
                rc = sqlite3_step(st);
                if (rc != SQLITE_ROW)
                        break;
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        struct process_row *b = ncap <= SBX_MAX_PROCESS_ROWS ? realloc(a, ncap * sizeof *a) : NULL;
                        if (!b) {
                                process_row_array_free(a, n);
                                return sbx_err_set(err, -ENOMEM, "cannot list the processes of '%s'", sandbox_id);
                        }
                        a = b;
                        cap = ncap;
                }
                struct process_row *p = &a[n];
                memset(p, 0, sizeof *p);
                if (column_to_field(st, 0, p->id, sizeof p->id) < 0 || column_dup(st, 2, &p->data_json) < 0) {
                        process_row_array_free(a, n);
                        return sbx_err_set(err, -SBX_E_INTERNAL, "process row of '%s' is unreadable", sandbox_id);
                }
                snprintf(p->sandbox_id, sizeof p->sandbox_id, "%s", sandbox_id);
                p->seq = (uint64_t)sqlite3_column_int64(st, 1);
                n++;
        }
        if (rc != SQLITE_DONE) {
                process_row_array_free(a, n);
                return sql_error(q, rc, err, "cannot list the processes of '%s'", sandbox_id);
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

static int sqlite_process_delete(struct store *s, const char *id, const char *sandbox_id, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[id ? ST_PROCESS_DELETE : ST_PROCESS_DELETE_SANDBOX];
        int rc;

        rc = sqlite3_bind_text(st, 1, id ? id : sandbox_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return sql_error(q, rc, err, "cannot delete process records");
        return 0;
}

/* ---- snapshots ---- */

static int sqlite_snapshot_put(struct store *s, const struct snapshot_row *r, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SNAPSHOT_PUT];
        int rc;

        if (!r->id[0] || !r->sandbox_id[0] || !r->kind[0] || !r->data_json)
                return sbx_err_set(err, -SBX_E_INVALID, "snapshot record needs an id, a kind, a sandbox and data");
        rc = sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, r->kind, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, r->sandbox_id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = bind_text_or_null(st, 4, r->parent_id[0] ? r->parent_id : NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 5, r->data_json, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 6, (sqlite3_int64)r->created_ms);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return sqlite3_changes(q->db) == 1
                               ? 0
                               : sbx_err_set(err, -SBX_E_CONFLICT, "snapshot '%s' exists with another origin", r->id);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return sbx_err_set(err, -SBX_E_NOT_FOUND, "the sandbox or parent of snapshot '%s' is not there", r->id);
        if (rc == SQLITE_CONSTRAINT_CHECK)
                return sbx_err_set(err, -SBX_E_INVALID, "snapshot '%s' has a bad kind or data", r->id);
        return sql_error(q, rc, err, "cannot write snapshot '%s'", r->id);
}

static int sqlite_snapshot_list(struct store *s, struct snapshot_row **ret, size_t *ret_n, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SNAPSHOT_LIST];
        struct snapshot_row *a = NULL;
        size_t n = 0, cap = 0;
        int rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct snapshot_row *r;

                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 16;
                        struct snapshot_row *b = ncap <= 2 * SBX_MAX_SNAPSHOTS ? realloc(a, ncap * sizeof *a) : NULL;

                        if (!b) {
                                snapshot_row_array_free(a, n);
                                return sbx_err_set(err, -ENOMEM, "cannot list snapshots");
                        }
                        a = b;
                        cap = ncap;
                }
                r = &a[n];
                memset(r, 0, sizeof *r);
                if (column_to_field(st, 0, r->id, sizeof r->id) < 0 || column_to_field(st, 1, r->kind, sizeof r->kind) < 0 ||
                    column_to_field(st, 2, r->sandbox_id, sizeof r->sandbox_id) < 0 ||
                    column_to_field(st, 3, r->parent_id, sizeof r->parent_id) < 0 || column_dup(st, 4, &r->data_json) < 0) {
                        snapshot_row_array_free(a, n + 1);
                        return sbx_err_set(err, -SBX_E_INTERNAL, "a snapshot row is unreadable");
                }
                r->created_ms = (uint64_t)sqlite3_column_int64(st, 5);
                n++;
        }
        if (rc != SQLITE_DONE) {
                snapshot_row_array_free(a, n);
                return sql_error(q, rc, err, "cannot list snapshots");
        }
        *ret = a;
        *ret_n = n;
        return 0;
}

static int sqlite_snapshot_delete(struct store *s, const char *id, struct sbx_err *err)
{
        struct sqlite_store *q = impl(s);
        _cleanup_stmt_ sqlite3_stmt *st = q->stmt[ST_SNAPSHOT_DELETE];
        int rc;

        rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
                return sbx_err_set(err, -SBX_E_CONFLICT, "snapshot '%s' is the parent of another snapshot", id);
        if (rc != SQLITE_DONE)
                return sql_error(q, rc, err, "cannot delete snapshot '%s'", id);
        return 0;
}

/* ---- open, migrations, close ---- */

/* Run a statement without parameters that returns one value; copy it as text. */
static int query_text(struct sqlite_store *q, const char *sql, char *buf, size_t size, struct sbx_err *err)
{
        _cleanup_(stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
                buf[0] = '\0';
                return 0;
        }
        if (rc != SQLITE_ROW)
                return sql_error(q, rc, err, "cannot run '%s'", sql);
        if (column_to_field(st, 0, buf, size) < 0)
                return sbx_err_set(err, -SBX_E_INTERNAL, "unexpected result from '%s'", sql);
        return 0;
}

static int exec_sql(struct sqlite_store *q, const char *sql, struct sbx_err *err)
{
        int rc = sqlite3_exec(q->db, sql, NULL, NULL, NULL);

        if (rc != SQLITE_OK)
                return sql_error(q, rc, err, "cannot run '%s'", sql);
        return 0;
}

static int max_applied_version(struct sqlite_store *q, sqlite3_int64 *ret, struct sbx_err *err)
{
        char buf[32];
        int k;

        k = query_text(q, "SELECT coalesce(max(version), 0) FROM schema_migrations", buf, sizeof buf, err);
        if (k < 0)
                return k;
        *ret = strtoll(buf, NULL, 10);
        return 0;
}

/* A migration that rebuilds a table other tables reference says so on a line of its own:
 * "-- sbx: foreign_keys=off". SQLite can switch foreign keys only outside a transaction, so the
 * runner does it around the migration and runs PRAGMA foreign_key_check before the commit. */
static bool migration_wants_fk_off(const struct store_migration *m)
{
        return strstr(m->sql, "\n-- sbx: foreign_keys=off\n") != NULL;
}

/* Any row foreign_key_check reports fails the migration. */
static int check_foreign_keys(struct sqlite_store *q, const struct store_migration *m, struct sbx_err *err)
{
        _cleanup_(stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(q->db, "PRAGMA foreign_key_check", -1, &st, NULL);

        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return sbx_err_set(err, -SBX_E_INTERNAL, "migration %04d-%s leaves a dangling reference in table '%s'",
                                   m->version, m->name, (const char *)sqlite3_column_text(st, 0));
        if (rc != SQLITE_DONE)
                return sql_error(q, rc, err, "cannot check foreign keys after migration %04d-%s", m->version, m->name);
        return 0;
}

static int apply_migration_tx(struct sqlite_store *q, const struct store_migration *m, struct sbx_err *err);

static int apply_migration(struct sqlite_store *q, const struct store_migration *m, struct sbx_err *err)
{
        bool fk_off = migration_wants_fk_off(m);
        int k;

        if (fk_off) {
                k = exec_sql(q, "PRAGMA foreign_keys = OFF", err);
                if (k < 0)
                        return k;
        }
        k = apply_migration_tx(q, m, err);
        if (fk_off) {
                struct sbx_err e2 = { 0 };
                int k2 = exec_sql(q, "PRAGMA foreign_keys = ON", &e2);

                if (k >= 0 && k2 < 0) {
                        *err = e2;
                        k = k2;
                }
        }
        return k;
}

static int apply_migration_tx(struct sqlite_store *q, const struct store_migration *m, struct sbx_err *err)
{
        _cleanup_(stmt_finalizep) sqlite3_stmt *st = NULL;
        sqlite3_int64 applied;
        int rc, k;

        /* IMMEDIATE takes the write lock first, so two daemons racing here apply it once. */
        k = exec_sql(q, "BEGIN IMMEDIATE", err);
        if (k < 0)
                return k;
        k = max_applied_version(q, &applied, err);
        if (k < 0)
                goto out_rollback;
        if (applied >= m->version)
                return exec_sql(q, "COMMIT", err);

        rc = sqlite3_exec(q->db, m->sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
                k = sql_error(q, rc, err, "migration %04d-%s failed", m->version, m->name);
                goto out_rollback;
        }
        if (migration_wants_fk_off(m)) {
                k = check_foreign_keys(q, m, err);
                if (k < 0)
                        goto out_rollback;
        }
        rc = sqlite3_prepare_v2(q->db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 1, m->version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, (sqlite3_int64)now_realtime_ms());
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE) {
                k = sql_error(q, rc, err, "cannot record migration %04d-%s", m->version, m->name);
                goto out_rollback;
        }
        k = exec_sql(q, "COMMIT", err);
        if (k < 0)
                goto out_rollback;
        return 0;

out_rollback:
        (void)sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
        return k;
}

static int migrate(struct sqlite_store *q, struct sbx_err *err)
{
        sqlite3_int64 applied;
        int known = 0, k;

        for (size_t i = 0; i < store_migrations_count; i++) {
                if (store_migrations[i].version <= known)
                        return sbx_err_set(err, -SBX_E_INTERNAL, "compiled-in migrations are out of order at %d",
                                           store_migrations[i].version);
                known = store_migrations[i].version;
        }

        /* The runner's own table; its shape never changes, so no migration creates it. */
        k = exec_sql(q,
                     "CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "version INTEGER PRIMARY KEY, name TEXT, applied_at INTEGER)",
                     err);
        if (k < 0)
                return k;
        k = max_applied_version(q, &applied, err);
        if (k < 0)
                return k;
        if (applied > known)
                return sbx_err_set(err, -SBX_E_INTERNAL,
                                   "store schema version %lld is newer than this sbx knows (%d); "
                                   "refusing to use it with an older binary",
                                   (long long)applied, known);

        for (size_t i = 0; i < store_migrations_count; i++) {
                if (store_migrations[i].version <= applied)
                        continue;
                k = apply_migration(q, &store_migrations[i], err);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int configure(struct sqlite_store *q, struct sbx_err *err)
{
        char buf[16];
        int k;

        (void)sqlite3_extended_result_codes(q->db, 1);
        (void)sqlite3_busy_timeout(q->db, SQLITE_BUSY_TIMEOUT_MS);
        /* No writable_schema or other ways to corrupt the file through SQL. The schema stays
         * trusted (the default): its CHECKs call json_valid(), which SQLite 3.40 does not mark
         * innocuous, and the file is 0600 so whoever can edit it is root already. */
        (void)sqlite3_db_config(q->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

        k = query_text(q, "PRAGMA journal_mode = WAL", buf, sizeof buf, err);
        if (k < 0)
                return k;
        /* An in-memory database (tests) reports "memory"; a file must really be in WAL. */
        if (strcasecmp(buf, "wal") != 0 && strcasecmp(buf, "memory") != 0)
                return sbx_err_set(err, -SBX_E_INTERNAL, "cannot switch store to WAL mode (journal_mode is '%s')", buf);
        /* In WAL mode NORMAL syncs only at checkpoints: a commit survives a daemon crash, the
         * last few may be lost on power failure, and the database is never corrupted. */
        k = exec_sql(q, "PRAGMA synchronous = NORMAL", err);
        if (k < 0)
                return k;
        k = exec_sql(q, "PRAGMA foreign_keys = ON", err);
        if (k < 0)
                return k;
        k = query_text(q, "PRAGMA foreign_keys", buf, sizeof buf, err);
        if (k < 0)
                return k;
        if (strcmp(buf, "1") != 0)
                return sbx_err_set(err, -SBX_E_INTERNAL, "this SQLite cannot enforce foreign keys");
        return 0;
}

/* Create the file 0600 before SQLite does (it would use 0644); its -wal and -shm copy the mode. */
static int precreate(const char *path, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;

        if (strcmp(path, ":memory:") == 0)
                return 0;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open store database '%s': %m", path);
        return 0;
}

static int sqlite_open(struct store *s, const char *url, struct sbx_err *err)
{
        _cleanup_(sqlite_store_freep) struct sqlite_store *q = NULL;
        const char *path = url;
        int rc, k;

        if (strncasecmp(path, "sqlite:", strlen("sqlite:")) == 0)
                path += strlen("sqlite:");
        if (!path[0])
                return sbx_err_set(err, -SBX_E_INVALID, "store url '%s' has no path", url);
        if (strlen(path) >= PATH_MAX)
                return sbx_err_set(err, -SBX_E_INVALID, "store path is longer than %d bytes", PATH_MAX - 1);

        q = calloc(1, sizeof *q);
        if (!q)
                return sbx_err_set(err, -ENOMEM, "cannot open store: out of memory");
        k = precreate(path, err);
        if (k < 0)
                return k;
        /* SQLite opens its files O_CLOEXEC. No URI flag: the path is only ever a path. */
        rc = sqlite3_open_v2(path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc != SQLITE_OK)
                return sql_error(q, rc, err, "cannot open store database '%s'", path);

        k = configure(q, err);
        if (k >= 0)
                k = migrate(q, err);
        if (k < 0) {
                (void)sbx_err_wrap(err, "cannot open store database '%s'", path);
                return k;
        }

        for (size_t i = 0; i < _ST_MAX; i++) {
                rc = sqlite3_prepare_v3(q->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &q->stmt[i], NULL);
                if (rc != SQLITE_OK)
                        return sql_error(q, rc, err, "cannot prepare store statement %zu", i);
        }

        s->impl = TAKE_PTR(q);
        return 0;
}

static void sqlite_close(struct store *s)
{
        struct sqlite_store *q = impl(s);

        /* Only on a store that opened fully (never on a database we refused): cheap when there
         * is nothing to do, and keeps the planner's statistics fresh. */
        if (q)
                (void)sqlite3_exec(q->db, "PRAGMA optimize", NULL, NULL, NULL);
        sqlite_store_free(q);
        s->impl = NULL;
}

const struct store_ops store_sqlite_ops = {
        .name = "sqlite",
        .open = sqlite_open,
        .close = sqlite_close,
        .sandbox_insert = sqlite_sandbox_insert,
        .sandbox_update = sqlite_sandbox_update,
        .sandbox_get = sqlite_sandbox_get,
        .sandbox_list = sqlite_sandbox_list,
        .sandbox_list_live = sqlite_sandbox_list_live,
        .event_append = sqlite_event_append,
        .event_list = sqlite_event_list,
        .snapshot_put = sqlite_snapshot_put,
        .snapshot_list = sqlite_snapshot_list,
        .snapshot_delete = sqlite_snapshot_delete,
        .setting_get = sqlite_setting_get,
        .setting_set = sqlite_setting_set,
        .process_put = sqlite_process_put,
        .process_list = sqlite_process_list,
        .process_delete = sqlite_process_delete,
};
