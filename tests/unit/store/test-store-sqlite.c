/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests for the SQLite store (src/store/store-sqlite.c) and the backend-neutral helpers in
 * store.c. Each test opens a fresh database in its own temporary directory; a second, plain
 * SQLite connection inspects or tampers with the file where a test needs to look behind the
 * interface. test_latency prints the per-call numbers quoted in docs/internals/store.md.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/cleanup.h"
#include "store/store.h"

struct fixture {
        char dir[256];
        char path[300];
        struct store store;
};

static int setup(void **state)
{
        struct fixture *fx = calloc(1, sizeof *fx);
        const char *tmp = getenv("TMPDIR");
        struct sbx_err err = {};

        assert_non_null(fx);
        snprintf(fx->dir, sizeof fx->dir, "%s/sbx-store-test-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        assert_non_null(mkdtemp(fx->dir));
        snprintf(fx->path, sizeof fx->path, "%s/sbx.db", fx->dir);
        if (store_open(&fx->store, fx->path, &err) < 0) {
                print_error("store_open: %s\n", err.msg);
                fail();
        }
        *state = fx;
        return 0;
}

static void remove_db(const char *path)
{
        char p[320];

        (void)unlink(path);
        snprintf(p, sizeof p, "%s-wal", path);
        (void)unlink(p);
        snprintf(p, sizeof p, "%s-shm", path);
        (void)unlink(p);
}

static int teardown(void **state)
{
        struct fixture *fx = *state;

        store_close(&fx->store);
        remove_db(fx->path);
        (void)rmdir(fx->dir);
        free(fx);
        return 0;
}

/* A record with every field set; created_ms orders it. */
static void make_record(struct sandbox_record *r, const char *id, const char *name, enum sandbox_state st,
                        uint32_t slot, uint64_t created_ms, const char *metadata_json)
{
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", id);
        snprintf(r->name, sizeof r->name, "%s", name);
        snprintf(r->template_name, sizeof r->template_name, "debian");
        r->state = st;
        snprintf(r->owner, sizeof r->owner, "key_owner");
        snprintf(r->project, sizeof r->project, "proj");
        r->spec_json = strdup("{\"resources\":{\"memory\":536870912}}");
        r->metadata_json = metadata_json ? strdup(metadata_json) : NULL;
        r->uid_slot = slot;
        r->created_ms = created_ms;
        r->updated_ms = created_ms;
}

static int insert(struct store *s, const char *id, const char *name, enum sandbox_state st, uint32_t slot,
                  uint64_t created_ms, const char *metadata_json, struct sbx_err *err)
{
        struct sandbox_record r;
        int k;

        make_record(&r, id, name, st, slot, created_ms, metadata_json);
        k = s->ops->sandbox_insert(s, &r, err);
        sandbox_record_release(&r);
        return k;
}

/* A second connection for looking behind the interface. */
static sqlite3 *raw_open(const char *path)
{
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
        return db;
}

static long long raw_int(sqlite3 *db, const char *sql)
{
        sqlite3_stmt *st = NULL;
        long long v;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

/* buf += sep + s, which must fit. */
static void append(char *buf, size_t size, const char *sep, const char *s)
{
        size_t n = strlen(buf), a = strlen(sep), b = strlen(s);

        assert_true(n + a + b < size);
        memcpy(buf + n, sep, a);
        memcpy(buf + n + a, s, b + 1);
}

static void list_ids(struct store *s, const struct sandbox_filter *f, char *out, size_t size, bool *more)
{
        struct sandbox_record *a = NULL;
        struct sbx_err err = {};
        size_t n = 0;

        assert_int_equal(s->ops->sandbox_list(s, f, &a, &n, more, &err), 0);
        out[0] = '\0';
        for (size_t i = 0; i < n; i++)
                append(out, size, i > 0 ? "," : "", a[i].id);
        sandbox_record_array_free(a, n);
}

/* ---- tests ---- */

static void test_state_strings(void **state)
{
        (void)state;
        for (int i = 0; i < _SANDBOX_STATE_MAX; i++) {
                const char *str = sandbox_state_to_string((enum sandbox_state)i);

                assert_non_null(str);
                assert_int_equal(sandbox_state_from_string(str), i);
        }
        assert_string_equal(sandbox_state_to_string(SANDBOX_STOPPING), "stopping");
        assert_null(sandbox_state_to_string(_SANDBOX_STATE_MAX));
        assert_null(sandbox_state_to_string(_SANDBOX_STATE_INVALID));
        assert_int_equal(sandbox_state_from_string("Running"), _SANDBOX_STATE_INVALID);
        assert_int_equal(sandbox_state_from_string(""), _SANDBOX_STATE_INVALID);
        assert_int_equal(sandbox_state_from_string(NULL), _SANDBOX_STATE_INVALID);
}

static void test_record_copy(void **state)
{
        struct sandbox_record a, b;

        (void)state;
        make_record(&a, "sbx_a", "n", SANDBOX_RUNNING, 3, 10, "{\"k\":\"v\"}");
        assert_int_equal(sandbox_record_copy(&b, &a), 0);
        assert_ptr_not_equal(a.spec_json, b.spec_json);
        assert_string_equal(a.spec_json, b.spec_json);
        assert_string_equal(a.metadata_json, b.metadata_json);
        assert_string_equal(b.name, "n");
        sandbox_record_release(&a);
        assert_null(a.spec_json);
        assert_int_equal(a.uid_slot, 0);
        sandbox_record_release(&b);
        sandbox_record_release(NULL);
        sandbox_record_array_free(NULL, 0);
}

static void test_url(void **state)
{
        struct fixture *fx = *state;
        struct store s = {};
        struct sbx_err err = {};
        char url[400];

        assert_int_equal(store_open(&s, "postgres://user:secret@db/sbx", &err), -SBX_E_INVALID);
        assert_non_null(strstr(err.msg, "unsupported store url"));
        assert_null(strstr(err.msg, "secret"));
        assert_null(s.ops);

        sbx_err_clear(&err);
        assert_int_equal(store_open(&s, "", &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        assert_int_equal(store_open(&s, "sqlite:", &err), -SBX_E_INVALID);

        /* The fixture's store already has this file open: WAL lets a second connection in. */
        snprintf(url, sizeof url, "sqlite:%s", fx->path);
        sbx_err_clear(&err);
        assert_int_equal(store_open(&s, url, &err), 0);
        assert_string_equal(s.ops->name, "sqlite");
        store_close(&s);
        store_close(&s); /* idempotent */
}

static void test_open_other_paths(void **state)
{
        struct fixture *fx = *state;
        struct sandbox_record got = {};
        struct store s = {};
        struct sbx_err err = {};
        char p[320];
        FILE *f;

        /* In memory: no WAL, otherwise the same store. */
        assert_int_equal(store_open(&s, "sqlite::memory:", &err), 0);
        assert_int_equal(insert(&s, "sbx_m", "m", SANDBOX_RUNNING, 1, 1, NULL, &err), 0);
        assert_int_equal(s.ops->sandbox_get(&s, "sbx_m", &got, &err), 0);
        sandbox_record_release(&got);
        store_close(&s);

        /* Not a database: refused, nothing leaked. */
        snprintf(p, sizeof p, "%s/garbage.db", fx->dir);
        f = fopen(p, "we");
        assert_non_null(f);
        for (int i = 0; i < 64; i++)
                fputs("this is not an SQLite database\n", f);
        fclose(f);
        assert_int_equal(store_open(&s, p, &err), -SBX_E_INTERNAL);
        assert_non_null(strstr(err.msg, "garbage.db"));
        assert_null(s.ops);
        (void)unlink(p);

        /* A directory that does not exist. */
        sbx_err_clear(&err);
        snprintf(p, sizeof p, "%s/nope/sbx.db", fx->dir);
        assert_int_equal(store_open(&s, p, &err), -ENOENT);
        assert_null(s.ops);
}

static void test_embedded_sql_matches_files(void **state)
{
        /* tests/unit/store/ -> src/store/migrations/ */
        char dir[512], p[600];

        (void)state;
        snprintf(dir, sizeof dir, "%s", __FILE__);
        *strrchr(dir, '/') = '\0';
        assert_true(store_migrations_count >= 1);
        for (size_t i = 0; i < store_migrations_count; i++) {
                const struct store_migration *m = &store_migrations[i];
                static char buf[256 * 1024];
                FILE *f;
                size_t n;

                snprintf(p, sizeof p, "%s/../../../src/store/migrations/%04d-%s.sql", dir, m->version, m->name);
                f = fopen(p, "re");
                if (!f)
                        skip(); /* built from an installed copy of the tests */
                n = fread(buf, 1, sizeof buf - 1, f);
                buf[n] = '\0';
                fclose(f);
                assert_string_equal(buf, m->sql);
                if (i > 0)
                        assert_true(m->version > store_migrations[i - 1].version);
        }
}

static void test_open_migrations(void **state)
{
        struct fixture *fx = *state;
        struct sbx_err err = {};
        long long applied_at;
        struct stat stb;
        sqlite3 *db;

        db = raw_open(fx->path);
        assert_int_equal(raw_int(db, "SELECT count(*) FROM schema_migrations"), (long long)store_migrations_count);
        assert_int_equal(raw_int(db, "SELECT max(version) FROM schema_migrations"),
                         store_migrations[store_migrations_count - 1].version);
        applied_at = raw_int(db, "SELECT min(applied_at) FROM schema_migrations");
        assert_true(applied_at > 0);
        assert_int_equal(raw_int(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'sandboxes'"), 1);
        /* journal_mode=WAL is persistent in the file. */
        assert_int_equal(raw_int(db, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), 1);
        sqlite3_close(db);

        assert_int_equal(stat(fx->path, &stb), 0);
        assert_int_equal(stb.st_mode & 0777, 0600);

        /* Reopen: nothing applied twice, nothing rewritten. */
        store_close(&fx->store);
        assert_int_equal(store_open(&fx->store, fx->path, &err), 0);
        store_close(&fx->store);
        assert_int_equal(store_open(&fx->store, fx->path, &err), 0);
        db = raw_open(fx->path);
        assert_int_equal(raw_int(db, "SELECT count(*) FROM schema_migrations"), (long long)store_migrations_count);
        assert_int_equal(raw_int(db, "SELECT min(applied_at) FROM schema_migrations"), applied_at);
        sqlite3_close(db);
}

static void test_newer_schema_refused(void **state)
{
        struct fixture *fx = *state;
        struct sbx_err err = {};
        sqlite3 *db;

        store_close(&fx->store);
        db = raw_open(fx->path);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (9999, 'future', 1)", NULL, NULL, NULL),
                         SQLITE_OK);
        sqlite3_close(db);

        assert_int_equal(store_open(&fx->store, fx->path, &err), -SBX_E_INTERNAL);
        assert_non_null(strstr(err.msg, "9999"));
        assert_non_null(strstr(err.msg, "newer"));
        assert_null(fx->store.ops);
}

static void assert_records_equal(const struct sandbox_record *a, const struct sandbox_record *b)
{
        assert_string_equal(a->id, b->id);
        assert_string_equal(a->name, b->name);
        assert_string_equal(a->template_name, b->template_name);
        assert_int_equal(a->state, b->state);
        assert_string_equal(a->state_reason, b->state_reason);
        assert_string_equal(a->owner, b->owner);
        assert_string_equal(a->project, b->project);
        if (a->spec_json || b->spec_json)
                assert_string_equal(a->spec_json, b->spec_json);
        if (a->metadata_json || b->metadata_json)
                assert_string_equal(a->metadata_json, b->metadata_json);
        assert_int_equal(a->uid_slot, b->uid_slot);
        assert_int_equal(a->init_pid, b->init_pid);
        assert_true(a->init_start_time == b->init_start_time);
        assert_string_equal(a->cgroup_name, b->cgroup_name);
        assert_true(a->created_ms == b->created_ms);
        assert_true(a->updated_ms == b->updated_ms);
        assert_true(a->started_ms == b->started_ms);
        assert_true(a->deleted_ms == b->deleted_ms);
}

static void test_insert_get_update(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sandbox_record r, got = {};
        struct sbx_err err = {};

        make_record(&r, "sbx_aaaaaaaaaaaaaaaaaaaa", "web", SANDBOX_CREATING, 7, 1700000000000ULL,
                    "{\"team\":\"ml\",\"emoji\":\"\xc3\xa9\"}");
        snprintf(r.cgroup_name, sizeof r.cgroup_name, "/sbx.slice/sbx_aaaaaaaaaaaaaaaaaaaa");
        r.init_pid = 4242;
        r.init_start_time = UINT64_MAX - 5; /* survives the int64 column */
        r.started_ms = 1700000000500ULL;
        assert_int_equal(s->ops->sandbox_insert(s, &r, &err), 0);

        assert_int_equal(s->ops->sandbox_get(s, r.id, &got, &err), 0);
        assert_records_equal(&r, &got);
        sandbox_record_release(&got);

        /* Same id again. */
        assert_int_equal(s->ops->sandbox_insert(s, &r, &err), -SBX_E_CONFLICT);
        assert_string_equal(err.reason, "id_taken");
        sbx_err_clear(&err);

        r.state = SANDBOX_FAILED;
        snprintf(r.state_reason, sizeof r.state_reason, "oom_killed");
        snprintf(r.name, sizeof r.name, "web-2");
        free(r.metadata_json);
        r.metadata_json = NULL;
        r.init_pid = 0;
        r.updated_ms++;
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), 0);
        assert_int_equal(s->ops->sandbox_get(s, r.id, &got, &err), 0);
        assert_records_equal(&r, &got);
        assert_null(got.metadata_json);
        sandbox_record_release(&got);

        /* Not valid JSON: the schema's CHECK refuses it. */
        r.metadata_json = strdup("{\"a\":");
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        free(r.metadata_json);
        r.metadata_json = strdup("[\"not an object\"]");
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);

        /* Invalid state never reaches SQL. */
        r.state = _SANDBOX_STATE_MAX;
        assert_int_equal(s->ops->sandbox_insert(s, &r, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);

        snprintf(r.id, sizeof r.id, "sbx_nope");
        r.state = SANDBOX_RUNNING;
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), -SBX_E_NOT_FOUND);
        sandbox_record_release(&r);
}

static void test_get_unknown(void **state)
{
        struct fixture *fx = *state;
        struct sandbox_record got = {};
        struct sbx_err err = {};

        assert_int_equal(fx->store.ops->sandbox_get(&fx->store, "sbx_unknown", &got, &err), -SBX_E_NOT_FOUND);
        assert_non_null(strstr(err.msg, "sbx_unknown"));
        assert_null(got.spec_json);
        sbx_err_clear(&err);
        /* A value that would break formatted SQL is just an unknown id. */
        assert_int_equal(fx->store.ops->sandbox_get(&fx->store, "x' OR '1'='1", &got, &err), -SBX_E_NOT_FOUND);
}

static void test_name_and_slot_conflicts(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sandbox_record r;
        struct sbx_err err = {};

        assert_int_equal(insert(s, "sbx_1", "web", SANDBOX_RUNNING, 1, 1, NULL, &err), 0);
        assert_int_equal(insert(s, "sbx_2", "web", SANDBOX_CREATING, 2, 2, NULL, &err), -SBX_E_CONFLICT);
        assert_string_equal(err.reason, "name_taken");
        assert_string_equal(err.msg, "sandbox name 'web' is already in use");
        sbx_err_clear(&err);

        /* Unnamed sandboxes never conflict on name. */
        assert_int_equal(insert(s, "sbx_3", "", SANDBOX_RUNNING, 3, 3, NULL, &err), 0);
        assert_int_equal(insert(s, "sbx_4", "", SANDBOX_RUNNING, 4, 4, NULL, &err), 0);

        /* uid slot 3 is sbx_3's. */
        assert_int_equal(insert(s, "sbx_5", "other", SANDBOX_RUNNING, 3, 5, NULL, &err), -SBX_E_CONFLICT);
        assert_string_equal(err.reason, "uid_slot_taken");
        sbx_err_clear(&err);

        /* Renaming onto a taken name is a conflict too. */
        make_record(&r, "sbx_3", "web", SANDBOX_RUNNING, 3, 3, NULL);
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), -SBX_E_CONFLICT);
        assert_string_equal(err.reason, "name_taken");
        sbx_err_clear(&err);
        sandbox_record_release(&r);

        /* Deleting sbx_1 frees its name and slot. */
        make_record(&r, "sbx_1", "web", SANDBOX_DELETED, 1, 1, NULL);
        r.deleted_ms = 9;
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), 0);
        sandbox_record_release(&r);
        assert_int_equal(insert(s, "sbx_2", "web", SANDBOX_CREATING, 1, 2, NULL, &err), 0);
        /* Two deleted rows may share a name and a slot. */
        make_record(&r, "sbx_2", "web", SANDBOX_DELETED, 1, 2, NULL);
        assert_int_equal(s->ops->sandbox_update(s, &r, &err), 0);
        sandbox_record_release(&r);
}

static void test_list_state_filter(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sandbox_filter f = { .state = -1, .limit = 100 };
        struct sbx_err err = {};
        struct sandbox_record *a = NULL;
        char ids[512];
        size_t n = 0;
        bool more = true;

        assert_int_equal(insert(s, "sbx_a", "", SANDBOX_RUNNING, 1, 10, NULL, &err), 0);
        assert_int_equal(insert(s, "sbx_b", "", SANDBOX_STOPPED, 2, 20, NULL, &err), 0);
        assert_int_equal(insert(s, "sbx_c", "", SANDBOX_DELETED, 3, 30, NULL, &err), 0);
        assert_int_equal(insert(s, "sbx_d", "", SANDBOX_RUNNING, 4, 40, NULL, &err), 0);

        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_a,sbx_b,sbx_d");
        assert_false(more);
        f.state = SANDBOX_RUNNING;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_a,sbx_d");
        f.state = SANDBOX_DELETED;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_c");
        f.state = SANDBOX_FAILED;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "");

        f.state = 42;
        assert_int_equal(s->ops->sandbox_list(s, &f, &a, &n, &more, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        f.state = -1;
        f.limit = 0;
        assert_int_equal(s->ops->sandbox_list(s, &f, &a, &n, &more, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        f.limit = SBX_MAX_LIST_LIMIT + 1;
        assert_int_equal(s->ops->sandbox_list(s, &f, &a, &n, &more, &err), -SBX_E_INVALID);
        assert_null(a);

        /* list_live: everything but deleted, in order. */
        assert_int_equal(s->ops->sandbox_list_live(s, &a, &n, &err), 0);
        assert_int_equal(n, 3);
        assert_string_equal(a[0].id, "sbx_a");
        assert_string_equal(a[2].id, "sbx_d");
        assert_int_equal(a[1].state, SANDBOX_STOPPED);
        sandbox_record_array_free(a, n);
}

static void test_list_metadata_filter(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sandbox_filter f = { .state = -1, .limit = 100 };
        struct sbx_err err = {};
        char ids[512];
        bool more;

        assert_int_equal(insert(s, "sbx_a", "", SANDBOX_RUNNING, 1, 10,
                                "{\"app.tier\":\"web\",\"env\":\"prod\",\"quote\":\"it's \\\"x\\\"\"}", &err),
                         0);
        assert_int_equal(insert(s, "sbx_b", "", SANDBOX_RUNNING, 2, 20,
                                "{\"app.tier\":\"db\",\"env\":\"prod\",\"a\\\"b\":\"1\"}", &err),
                         0);
        assert_int_equal(insert(s, "sbx_c", "", SANDBOX_RUNNING, 3, 30, "{\"app\":{\"tier\":\"web\"},\"n\":1}", &err),
                         0);
        assert_int_equal(insert(s, "sbx_d", "", SANDBOX_RUNNING, 4, 40, NULL, &err), 0);

        /* A dotted key is one key, not a path: sbx_c's nested {"app":{"tier":...}} must not match. */
        f.meta_key[0] = "app.tier";
        f.meta_value[0] = "web";
        f.n_meta = 1;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_a");

        f.meta_key[0] = "env";
        f.meta_value[0] = "prod";
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_a,sbx_b");

        /* All pairs must match. */
        f.meta_key[1] = "app.tier";
        f.meta_value[1] = "db";
        f.n_meta = 2;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_b");

        /* The same key twice with different values matches nothing. */
        f.meta_key[1] = "env";
        f.meta_value[1] = "dev";
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "");

        /* Values and keys with quotes. */
        f.meta_key[0] = "quote";
        f.meta_value[0] = "it's \"x\"";
        f.n_meta = 1;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_a");
        f.meta_key[0] = "a\"b";
        f.meta_value[0] = "1";
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "sbx_b");
        /* Only string values match: sbx_c's "n" is the number 1. */
        f.meta_key[0] = "n";
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "");
        /* JSON-path syntax in a key is just characters. */
        f.meta_key[0] = "$";
        f.meta_value[0] = "x";
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "");

        /* Combined with a state filter. */
        f.meta_key[0] = "env";
        f.meta_value[0] = "prod";
        f.state = SANDBOX_STOPPED;
        list_ids(s, &f, ids, sizeof ids, &more);
        assert_string_equal(ids, "");

        f.state = -1;
        f.meta_value[0] = "\xff";
        {
                struct sandbox_record *a = NULL;
                size_t n = 0;

                assert_int_equal(s->ops->sandbox_list(s, &f, &a, &n, &more, &err), -SBX_E_INVALID);
        }
}

static void test_list_paging(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sandbox_filter f = { .state = -1, .limit = 10 };
        struct sandbox_record *a = NULL;
        struct sbx_err err = {};
        char all[1024] = "", page[1024], paged[1024] = "", id[32];
        size_t n;
        bool more;

        /* 25 rows; created_ms ties (i / 3) so the id breaks them. Inserted out of id order. */
        for (int i = 24; i >= 0; i--) {
                snprintf(id, sizeof id, "sbx_%02d", i);
                assert_int_equal(insert(s, id, "", i == 12 ? SANDBOX_DELETED : SANDBOX_RUNNING, (uint32_t)i,
                                        (uint64_t)(100 + i / 3), NULL, &err),
                                 0);
        }
        f.limit = 100;
        list_ids(s, &f, all, sizeof all, &more);
        assert_false(more);
        assert_non_null(strstr(all, "sbx_00,sbx_01,sbx_02,sbx_03"));
        assert_null(strstr(all, "sbx_12"));

        /* Cursor paging walks the same order. */
        f.limit = 10;
        list_ids(s, &f, page, sizeof page, &more);
        assert_true(more);
        append(paged, sizeof paged, "", page);
        for (int pages = 1; more; pages++) {
                assert_true(pages < 10);
                snprintf(id, sizeof id, "%s", strrchr(page, ',') + 1);
                f.after_id = id;
                list_ids(s, &f, page, sizeof page, &more);
                append(paged, sizeof paged, ",", page);
        }
        assert_string_equal(paged, all);
        assert_int_equal(strlen(page), 4 * 7 - 1); /* last page: 24 live rows = 10 + 10 + 4 */

        /* A deleted row is still a valid cursor position. */
        f.after_id = "sbx_12";
        f.limit = 2;
        list_ids(s, &f, page, sizeof page, &more);
        assert_string_equal(page, "sbx_13,sbx_14");
        assert_true(more);

        /* Offset, alone and after a cursor. */
        f.after_id = NULL;
        f.offset = 20;
        f.limit = 10;
        list_ids(s, &f, page, sizeof page, &more);
        assert_string_equal(page, "sbx_21,sbx_22,sbx_23,sbx_24");
        assert_false(more);
        f.offset = 1;
        f.limit = 2;
        f.after_id = "sbx_20";
        list_ids(s, &f, page, sizeof page, &more);
        assert_string_equal(page, "sbx_22,sbx_23");
        assert_true(more);

        /* Exactly the remaining rows: no more. */
        f.offset = 0;
        f.limit = 4;
        list_ids(s, &f, page, sizeof page, &more);
        assert_string_equal(page, "sbx_21,sbx_22,sbx_23,sbx_24");
        assert_false(more);

        f.offset = 1000;
        list_ids(s, &f, page, sizeof page, &more);
        assert_string_equal(page, "");
        assert_false(more);

        /* Unknown cursor. */
        f.offset = 0;
        f.after_id = "sbx_zz";
        assert_int_equal(s->ops->sandbox_list(s, &f, &a, &n, &more, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_cursor");
        assert_null(a);
}

/* A test event; at_ms 1234 unless given. */
static int event_add(struct store *s, const char *sid, const char *type, const char *data, uint64_t *ret_id,
                  struct sbx_err *err)
{
        struct event_row e = { .at_ms = 1234, .data_json = (char *)data };
        int r;

        snprintf(e.sandbox_id, sizeof e.sandbox_id, "%s", sid ? sid : "");
        snprintf(e.type, sizeof e.type, "%s", type);
        r = s->ops->event_append(s, &e, err);
        if (ret_id)
                *ret_id = e.id;
        return r;
}

static void test_events(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sbx_err err = {};
        struct event_row *rows = NULL;
        size_t n = 0;
        bool more = false;
        uint64_t id = 0;
        sqlite3 *db;

        assert_int_equal(insert(s, "sbx_a", "", SANDBOX_RUNNING, 1, 10, NULL, &err), 0);
        assert_int_equal(event_add(s, "sbx_a", "sandbox.created", "{\"template\":\"debian\"}", &id, &err), 0);
        assert_int_equal(id, 1);
        assert_int_equal(event_add(s, "sbx_a", "sandbox.started", NULL, &id, &err), 0);
        assert_int_equal(id, 2);
        assert_int_equal(event_add(s, NULL, "daemon.started", NULL, &id, &err), 0);
        assert_int_equal(id, 3);

        assert_int_equal(event_add(s, "sbx_nope", "sandbox.created", NULL, NULL, &err), -SBX_E_NOT_FOUND);
        sbx_err_clear(&err);
        assert_int_equal(event_add(s, "sbx_a", "x", "{bad", NULL, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        assert_int_equal(event_add(s, "sbx_a", "", NULL, NULL, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);

        db = raw_open(fx->path);
        assert_int_equal(raw_int(db, "SELECT count(*) FROM events"), 3);
        assert_int_equal(raw_int(db, "SELECT count(*) FROM events WHERE sandbox_id = 'sbx_a'"), 2);
        assert_int_equal(raw_int(db, "SELECT type = 'sandbox.started' FROM events WHERE id = 2"), 1);
        assert_int_equal(raw_int(db, "SELECT min(created_ms) = 1234 FROM events"), 1);
        assert_int_equal(
                raw_int(db, "SELECT json_extract(data_json, '$.template') = 'debian' FROM events WHERE id = 1"), 1);
        sqlite3_close(db);

        /* one sandbox's, oldest first, paged */
        struct event_query q = { .sandbox_id = "sbx_a", .limit = 1 };
        assert_int_equal(s->ops->event_list(s, &q, &rows, &n, &more, &err), 0);
        assert_int_equal(n, 1);
        assert_true(more);
        assert_int_equal(rows[0].id, 1);
        assert_string_equal(rows[0].type, "sandbox.created");
        assert_string_equal(rows[0].data_json, "{\"template\":\"debian\"}");
        assert_int_equal(rows[0].at_ms, 1234);
        event_row_array_free(rows, n);
        q.after = 1;
        assert_int_equal(s->ops->event_list(s, &q, &rows, &n, &more, &err), 0);
        assert_int_equal(n, 1);
        assert_false(more);
        assert_int_equal(rows[0].id, 2);
        assert_null(rows[0].data_json);
        event_row_array_free(rows, n);
        /* every event, newest first, before 3 */
        q = (struct event_query){ .before = 3, .desc = true, .limit = 10 };
        assert_int_equal(s->ops->event_list(s, &q, &rows, &n, &more, &err), 0);
        assert_int_equal(n, 2);
        assert_int_equal(rows[0].id, 2);
        assert_int_equal(rows[1].id, 1);
        event_row_array_free(rows, n);
        q = (struct event_query){ .limit = 10 };
        assert_int_equal(s->ops->event_list(s, &q, &rows, &n, &more, &err), 0);
        assert_int_equal(n, 3);
        assert_string_equal(rows[2].sandbox_id, "");
        event_row_array_free(rows, n);
        q.limit = 0;
        assert_int_equal(s->ops->event_list(s, &q, &rows, &n, &more, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
}

static void test_settings(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sbx_err err = {};
        char buf[64], tiny[4];

        assert_int_equal(s->ops->setting_get(s, "daemon.instance", buf, sizeof buf, &err), -SBX_E_NOT_FOUND);
        sbx_err_clear(&err);
        assert_int_equal(s->ops->setting_set(s, "daemon.instance", "inst_1", &err), 0);
        assert_int_equal(s->ops->setting_get(s, "daemon.instance", buf, sizeof buf, &err), 0);
        assert_string_equal(buf, "inst_1");
        assert_int_equal(s->ops->setting_set(s, "daemon.instance", "inst_2", &err), 0);
        assert_int_equal(s->ops->setting_get(s, "daemon.instance", buf, sizeof buf, &err), 0);
        assert_string_equal(buf, "inst_2");
        assert_int_equal(s->ops->setting_set(s, "empty", "", &err), 0);
        assert_int_equal(s->ops->setting_get(s, "empty", buf, sizeof buf, &err), 0);
        assert_string_equal(buf, "");

        assert_int_equal(s->ops->setting_get(s, "daemon.instance", tiny, sizeof tiny, &err), -ENOBUFS);
        sbx_err_clear(&err);
        assert_int_equal(s->ops->setting_set(s, "", "v", &err), -SBX_E_INVALID);

        /* Settings survive a reopen. */
        store_close(s);
        sbx_err_clear(&err);
        assert_int_equal(store_open(s, fx->path, &err), 0);
        assert_int_equal(s->ops->setting_get(s, "daemon.instance", buf, sizeof buf, &err), 0);
        assert_string_equal(buf, "inst_2");
}

/* Not a pass/fail test: prints the latency quoted in docs/internals/store.md. */
static void test_latency(void **state)
{
        struct fixture *fx = *state;
        struct store *s = &fx->store;
        struct sandbox_filter f = { .state = -1, .limit = 100 };
        enum {
                N = 2000
        };
        struct sandbox_record r, got;
        struct sandbox_record *a;
        struct sbx_err err = {};
        uint64_t t0, t_insert, t_update, t_get, t_list, t_event;
        char id[32];
        size_t n;
        bool more;

        make_record(&r, "", "", SANDBOX_RUNNING, 0, 0, "{\"env\":\"prod\",\"team\":\"ml\"}");
        t0 = now_usec();
        for (int i = 0; i < N; i++) {
                snprintf(r.id, sizeof r.id, "sbx_%020d", i);
                snprintf(r.name, sizeof r.name, "name-%d", i);
                r.uid_slot = (uint32_t)i;
                r.created_ms = 1700000000000ULL + (uint64_t)i;
                assert_int_equal(s->ops->sandbox_insert(s, &r, &err), 0);
        }
        t_insert = now_usec() - t0;

        t0 = now_usec();
        for (int i = 0; i < N; i++) {
                snprintf(r.id, sizeof r.id, "sbx_%020d", i);
                snprintf(r.name, sizeof r.name, "name-%d", i);
                r.uid_slot = (uint32_t)i;
                r.created_ms = 1700000000000ULL + (uint64_t)i;
                r.state = SANDBOX_STOPPED;
                assert_int_equal(s->ops->sandbox_update(s, &r, &err), 0);
        }
        t_update = now_usec() - t0;

        t0 = now_usec();
        for (int i = 0; i < N; i++) {
                snprintf(id, sizeof id, "sbx_%020d", (i * 7919) % N);
                assert_int_equal(s->ops->sandbox_get(s, id, &got, &err), 0);
                sandbox_record_release(&got);
        }
        t_get = now_usec() - t0;

        t0 = now_usec();
        for (int i = 0; i < 100; i++) {
                f.meta_key[0] = "team";
                f.meta_value[0] = "ml";
                f.n_meta = 1;
                assert_int_equal(s->ops->sandbox_list(s, &f, &a, &n, &more, &err), 0);
                assert_int_equal(n, 100);
                sandbox_record_array_free(a, n);
        }
        t_list = now_usec() - t0;

        t0 = now_usec();
        for (int i = 0; i < N; i++) {
                snprintf(id, sizeof id, "sbx_%020d", i);
                assert_int_equal(event_add(s, id, "sandbox.stopped", "{\"reason\":\"api\"}", NULL, &err), 0);
        }
        t_event = now_usec() - t0;
        sandbox_record_release(&r);

        print_message("store latency over %d rows (%s): insert %.1f us, update %.1f us, get %.1f us, "
                      "event %.1f us, list of 100 with a metadata filter %.1f us\n",
                      N, fx->dir, (double)t_insert / N, (double)t_update / N, (double)t_get / N, (double)t_event / N,
                      (double)t_list / 100);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_state_strings),
                cmocka_unit_test(test_record_copy),
                cmocka_unit_test(test_embedded_sql_matches_files),
                cmocka_unit_test_setup_teardown(test_url, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_other_paths, setup, teardown),
                cmocka_unit_test_setup_teardown(test_open_migrations, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_insert_get_update, setup, teardown),
                cmocka_unit_test_setup_teardown(test_get_unknown, setup, teardown),
                cmocka_unit_test_setup_teardown(test_name_and_slot_conflicts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_state_filter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_metadata_filter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_paging, setup, teardown),
                cmocka_unit_test_setup_teardown(test_events, setup, teardown),
                cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
                cmocka_unit_test_setup_teardown(test_latency, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
