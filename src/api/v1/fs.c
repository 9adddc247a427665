// SPDX-License-Identifier: Apache-2.0
/*
 * Filesystem operations on a sandbox (docs/files.md):
 *   GET  /v1/sandboxes/{id}/fs?op=stat|exists|list&path=   (list: recursive, limit, cursor)
 *   POST /v1/sandboxes/{id}/fs          {op: mkdir|move|copy|delete|chmod, ...}
 *   POST /v1/sandboxes/{id}/fs/search   {path, pattern, regex, ignoreCase, glob, maxResults}
 *   POST /v1/sandboxes/{id}/fs/replace  {files, pattern, replacement, regex, ignoreCase}
 *   POST /v1/sandboxes/{id}/fs/batch    [{path, op: write|delete, content|contentBase64, mode}]
 * Parsing happens here (errors name the field); the work runs on the worker pool through
 * manager_files_run with the request's JSON kept alive until the reply.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "api/v1/files-common.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files/files.h"

enum fs_op { FS_LIST, FS_MKDIR, FS_MOVE, FS_COPY, FS_DELETE, FS_CHMOD, FS_SEARCH, FS_REPLACE, FS_BATCH };

struct fs_job {
        struct http_request *req;
        enum fs_op op;
        json_t *body;                   /* keeps the strings below alive */
        const char *path, *to;
        bool flag1, flag2;              /* list: recursive; move/copy: overwrite, parents; mkdir: parents;
                                         * delete: recursive */
        bool has_mode;
        mode_t mode;
        struct files_list_opts list;
        struct files_search_opts search;
        struct files_replace_opts replace;
        const char *user;               /* act as this sandbox user (NULL: root) */
        const char **files;             /* replace */
        struct files_batch_op *batch;
        size_t n_batch;
        void **blobs;                   /* batch: decoded contentBase64 */
};

static void fs_job_free(struct fs_job *j)
{
        for (size_t i = 0; j->blobs && i < j->n_batch; i++)
                free(j->blobs[i]);
        free(j->blobs);
        free(j->batch);
        free(j->files);
        json_decref(j->body);
        free(j);
}

static int fs_fn(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err)
{
        struct fs_job *j = data;
        const char *result_path = j->path;
        int r;

        switch (j->op) {
        case FS_LIST:
                return files_list(root, j->path, &j->list, ret, err);
        case FS_SEARCH:
                return files_search(root, &j->search, ret, err);
        case FS_REPLACE:
                return files_replace(root, &j->replace, ret, err);
        case FS_BATCH:
                return files_batch(root, j->batch, j->n_batch, ret, err);
        case FS_MKDIR:
                r = files_mkdir(root, j->path, j->flag1, j->has_mode ? j->mode : 0755, err);
                break;
        case FS_MOVE:
                r = files_move(root, j->path, j->to, j->flag1, j->flag2, err);
                result_path = j->to;
                break;
        case FS_COPY:
                r = files_copy(root, j->path, j->to, j->flag1, j->flag2, err);
                result_path = j->to;
                break;
        case FS_DELETE:
                return files_delete(root, j->path, j->flag1, err); /* 204 */
        case FS_CHMOD:
                r = files_chmod(root, j->path, j->mode, err);
                break;
        default:
                return -EINVAL;
        }
        return r < 0 ? r : files_stat(root, result_path, ret, err);
}

static void fs_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct fs_job *j = data;

        if (r < 0)
                http_reply_error(j->req, err);
        else if (!result)
                http_reply_json(j->req, 204, NULL);
        else
                http_reply_json(j->req, 200, result);
        fs_job_free(j);
}

static void fs_run(struct http_request *req, struct fs_job *j)
{
        struct sbx_err err = {};
        bool exclusive = j->op == FS_BATCH || j->op == FS_REPLACE;

        if (manager_files_run(api_ctx(req)->manager, http_request_param(req, 0), exclusive, j->user, fs_fn, j, fs_done,
                              j, &err) < 0) {
                fs_job_free(j);
                http_reply_error(req, &err);
        }
}

static struct fs_job *fs_job_new(struct http_request *req, enum fs_op op, json_t *body)
{
        struct fs_job *j = calloc(1, sizeof *j);

        if (!j) {
                json_decref(body);
                http_reply_errorf(req, -ENOMEM, NULL, "out of memory");
                return NULL;
        }
        j->req = req;
        j->op = op;
        j->body = body;
        return j;
}

/* ---------- GET /fs ---------- */

void v1_fs_get(struct http_request *req)
{
        struct api_context *ctx = api_ctx(req);
        struct files_lease *lease = NULL;
        struct sbx_err err = {};
        const char *op = http_request_query(req, "op") ?: "stat", *path;
        uint64_t limit, depth;
        json_t *res = NULL;
        struct fs_job *j;
        bool acquired;
        int r;

        if (strcmp(op, "stat") && strcmp(op, "exists") && strcmp(op, "list")) {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_value",
                                  "query argument 'op' must be stat, exists or list, not '%.32s'", op);
                return;
        }
        if (files_query_path(req, "path", &path, &err) < 0) {
                http_reply_error(req, &err);
                return;
        }
        if (strcmp(op, "list") == 0) {
                j = fs_job_new(req, FS_LIST, NULL);
                if (!j)
                        return;
                j->path = path; /* query strings live as long as the request */
                if (files_query_bool(req, "recursive", false, &j->list.recursive, &err) < 0 ||
                    files_query_u64(req, "depth", 0, SBX_MAX_FS_DEPTH, &depth, &err) < 0 ||
                    files_query_u64(req, "limit", SBX_DEFAULT_FS_LIST_LIMIT, SBX_MAX_FS_LIST_LIMIT, &limit, &err) < 0) {
                        fs_job_free(j);
                        http_reply_error(req, &err);
                        return;
                }
                /* depth N: N levels (implies recursive); 0 or absent: one level, or all with recursive */
                if (depth > 0) {
                        j->list.recursive = true;
                        j->list.max_depth = (unsigned)depth;
                }
                j->list.limit = limit ? limit : SBX_DEFAULT_FS_LIST_LIMIT;
                j->list.cursor = http_request_query(req, "cursor");
                if (j->list.cursor && *j->list.cursor == '\0')
                        j->list.cursor = NULL;
                fs_run(req, j);
                return;
        }
        /* stat and exists: a few syscalls, answered right here */
        r = manager_files_acquire(ctx->manager, http_request_param(req, 0), &lease, &err);
        acquired = r >= 0;
        if (r >= 0)
                r = files_stat(files_lease_root(lease), path, &res, &err);
        files_lease_release(lease);
        if (strcmp(op, "exists") == 0 && acquired && (r >= 0 || err.code == -SBX_E_NOT_FOUND)) {
                json_t *o = json_pack("{s:b}", "exists", r >= 0);
                if (o && res)
                        json_object_set(o, "type", json_object_get(res, "type"));
                json_decref(res);
                http_reply_json(req, 200, o);
                return;
        }
        if (r < 0) {
                http_reply_error(req, &err);
                return;
        }
        http_reply_json(req, 200, res);
}

/* ---------- POST /fs ---------- */

void v1_fs_post(struct http_request *req)
{
        static const char *const k_mkdir[] = { "op", "path", "parents", "mode", "user", NULL };
        static const char *const k_move[] = { "op", "from", "to", "overwrite", "parents", "user", NULL };
        static const char *const k_delete[] = { "op", "path", "recursive", "user", NULL };
        static const char *const k_chmod[] = { "op", "path", "mode", "user", NULL };
        json_t *body = http_request_json(req), *opv;
        struct sbx_err err = {};
        const char *op;
        struct fs_job *j;
        int r;

        if (!body)
                return;
        opv = json_object_get(body, "op");
        op = json_string_value(opv);
        if (!op) {
                json_decref(body);
                http_reply_errorf(req, -SBX_E_INVALID, opv ? "invalid_type" : "missing_field",
                                  "'op' must be one of mkdir, move, copy, delete, chmod");
                return;
        }
        if (strcmp(op, "mkdir") == 0)
                j = fs_job_new(req, FS_MKDIR, body);
        else if (strcmp(op, "move") == 0 || strcmp(op, "rename") == 0)
                j = fs_job_new(req, FS_MOVE, body);
        else if (strcmp(op, "copy") == 0)
                j = fs_job_new(req, FS_COPY, body);
        else if (strcmp(op, "delete") == 0 || strcmp(op, "remove") == 0)
                j = fs_job_new(req, FS_DELETE, body);
        else if (strcmp(op, "chmod") == 0)
                j = fs_job_new(req, FS_CHMOD, body);
        else {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_value",
                                  "'op' must be one of mkdir, move, copy, delete, chmod, not '%.32s'", op);
                json_decref(body);
                return;
        }
        if (!j)
                return;
        switch (j->op) {
        case FS_MKDIR:
                r = files_json_only(body, k_mkdir, &err);
                if (r >= 0)
                        r = files_json_path(body, "path", false, &j->path, &err);
                if (r >= 0)
                        r = files_json_bool(body, "parents", false, &j->flag1, &err);
                if (r >= 0)
                        r = files_json_mode(body, "mode", &j->has_mode, &j->mode, &err);
                break;
        case FS_MOVE:
        case FS_COPY:
                r = files_json_only(body, k_move, &err);
                if (r >= 0)
                        r = files_json_path(body, "from", false, &j->path, &err);
                if (r >= 0)
                        r = files_json_path(body, "to", false, &j->to, &err);
                if (r >= 0)
                        r = files_json_bool(body, "overwrite", false, &j->flag1, &err);
                if (r >= 0)
                        r = files_json_bool(body, "parents", false, &j->flag2, &err);
                break;
        case FS_DELETE:
                r = files_json_only(body, k_delete, &err);
                if (r >= 0)
                        r = files_json_path(body, "path", false, &j->path, &err);
                if (r >= 0)
                        r = files_json_bool(body, "recursive", false, &j->flag1, &err);
                break;
        default: /* FS_CHMOD */
                r = files_json_only(body, k_chmod, &err);
                if (r >= 0)
                        r = files_json_path(body, "path", false, &j->path, &err);
                if (r >= 0)
                        r = files_json_mode(body, "mode", &j->has_mode, &j->mode, &err);
                if (r >= 0 && !j->has_mode)
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "missing_field", "'mode' is required");
                break;
        }
        if (r >= 0)
                r = files_json_user(body, &j->user, &err);
        if (r < 0) {
                fs_job_free(j);
                http_reply_error(req, &err);
                return;
        }
        fs_run(req, j);
}

/* ---------- search / replace ---------- */

static int json_str(json_t *o, const char *name, bool opt, size_t max, const char **ret, struct sbx_err *err)
{
        json_t *v = json_object_get(o, name);

        *ret = NULL;
        if (!v || json_is_null(v)) {
                if (opt)
                        return 0;
                return sbx_err_setr(err, -SBX_E_INVALID, "missing_field", "'%s' is required", name);
        }
        if (!json_is_string(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'%s' must be a string", name);
        if (strlen(json_string_value(v)) != json_string_length(v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' must not contain NUL", name);
        if (json_string_length(v) > max)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'%s' is longer than %zu bytes", name, max);
        *ret = json_string_value(v);
        return 0;
}

void v1_fs_search(struct http_request *req)
{
        static const char *const known[] = { "path", "pattern", "regex", "ignoreCase", "glob", "maxResults", NULL };
        json_t *body = http_request_json(req);
        struct sbx_err err = {};
        uint64_t max = 0;
        struct fs_job *j;
        int r;

        if (!body || !(j = fs_job_new(req, FS_SEARCH, body)))
                return;
        r = files_json_only(body, known, &err);
        if (r >= 0)
                r = files_json_path(body, "path", true, &j->search.path, &err);
        if (r >= 0)
                r = json_str(body, "pattern", false, SBX_MAX_PATTERN, &j->search.pattern, &err);
        if (r >= 0)
                r = files_json_bool(body, "regex", false, &j->search.regex, &err);
        if (r >= 0)
                r = files_json_bool(body, "ignoreCase", false, &j->search.ignore_case, &err);
        if (r >= 0)
                r = json_str(body, "glob", true, SBX_MAX_PATTERN, &j->search.glob, &err);
        if (r >= 0)
                r = files_json_u64(body, "maxResults", SBX_DEFAULT_SEARCH_RESULTS, SBX_MAX_SEARCH_RESULTS, &max, &err);
        if (r >= 0 && j->search.pattern[0] == '\0')
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value", "'pattern' must not be empty");
        if (r < 0) {
                fs_job_free(j);
                http_reply_error(req, &err);
                return;
        }
        if (!j->search.path)
                j->search.path = "/";
        j->search.max_results = max ? max : SBX_DEFAULT_SEARCH_RESULTS;
        fs_run(req, j);
}

void v1_fs_replace(struct http_request *req)
{
        static const char *const known[] = { "files", "pattern", "replacement", "regex", "ignoreCase", NULL };
        json_t *body = http_request_json(req), *files, *f;
        struct sbx_err err = {};
        struct fs_job *j;
        size_t i;
        int r;

        if (!body || !(j = fs_job_new(req, FS_REPLACE, body)))
                return;
        r = files_json_only(body, known, &err);
        files = json_object_get(body, "files");
        if (r >= 0 && !files)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "missing_field", "'files' is required");
        if (r >= 0 && (!json_is_array(files) || json_array_size(files) == 0))
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'files' must be a non-empty array of paths");
        if (r >= 0 && json_array_size(files) > SBX_MAX_REPLACE_FILES)
                r = sbx_err_setr(&err, -SBX_E_INVALID, "out_of_range", "'files' has more than %d entries",
                                 SBX_MAX_REPLACE_FILES);
        if (r >= 0 && !(j->files = calloc(json_array_size(files), sizeof *j->files)))
                r = -ENOMEM;
        json_array_foreach (files, i, f) {
                if (r < 0)
                        break;
                if (!json_is_string(f))
                        r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_type", "'files[%zu]' must be a string", i);
                else {
                        char name[32];
                        snprintf(name, sizeof name, "files[%zu]", i);
                        r = files_path_check(json_string_value(f), json_string_length(f), name, &err);
                        j->files[i] = json_string_value(f);
                }
        }
        if (r >= 0)
                r = json_str(body, "pattern", false, SBX_MAX_PATTERN, &j->replace.pattern, &err);
        if (r >= 0)
                r = json_str(body, "replacement", false, SBX_MAX_PATTERN, &j->replace.replacement, &err);
        if (r >= 0)
                r = files_json_bool(body, "regex", false, &j->replace.regex, &err);
        if (r >= 0)
                r = files_json_bool(body, "ignoreCase", false, &j->replace.ignore_case, &err);
        if (r >= 0 && j->replace.pattern[0] == '\0')
                r = sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value", "'pattern' must not be empty");
        if (r < 0) {
                if (r == -ENOMEM && err.code == 0)
                        sbx_err_set(&err, r, "out of memory");
                fs_job_free(j);
                http_reply_error(req, &err);
                return;
        }
        j->replace.files = j->files;
        j->replace.n_files = json_array_size(files);
        fs_run(req, j);
}

/* ---------- batch ---------- */

static int batch_op_parse(struct fs_job *j, json_t *o, size_t i, struct sbx_err *err)
{
        static const char *const known[] = { "path", "op", "content", "contentBase64", "mode", NULL };
        struct files_batch_op *b = &j->batch[i];
        json_t *content = json_object_get(o, "content"), *b64 = json_object_get(o, "contentBase64");
        const char *op;
        int r;

        if (!json_is_object(o))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type", "'operations[%zu]' must be an object", i);
        r = files_json_only(o, known, err);
        if (r >= 0)
                r = files_json_path(o, "path", false, &b->path, err);
        if (r < 0)
                return sbx_err_wrap(err, "operations[%zu]", i);
        op = json_string_value(json_object_get(o, "op")) ?: (content || b64 ? "write" : NULL);
        if (!op || (strcmp(op, "write") && strcmp(op, "delete")))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'operations[%zu].op' must be write or delete", i);
        b->kind = strcmp(op, "write") == 0 ? FILES_BATCH_WRITE : FILES_BATCH_DELETE;
        r = files_json_mode(o, "mode", &b->has_mode, &b->mode, err);
        if (r < 0)
                return sbx_err_wrap(err, "operations[%zu]", i);
        if (b->kind == FILES_BATCH_DELETE)
                return 0;
        if (!!content == !!b64)
                return sbx_err_setr(err, -SBX_E_INVALID, "missing_field",
                                    "'operations[%zu]' needs exactly one of 'content' and 'contentBase64'", i);
        if (content) {
                if (!json_is_string(content))
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type",
                                            "'operations[%zu].content' must be a string", i);
                b->data = json_string_value(content);
                b->len = json_string_length(content);
                return 0;
        }
        if (!json_is_string(b64))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_type",
                                    "'operations[%zu].contentBase64' must be a string", i);
        j->blobs[i] = malloc(json_string_length(b64) / 4 * 3 + 1);
        if (!j->blobs[i])
                return -ENOMEM;
        ssize_t n = base64_decode(json_string_value(b64), json_string_length(b64), j->blobs[i]);
        if (n < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'operations[%zu].contentBase64' is not valid base64", i);
        b->data = j->blobs[i];
        b->len = (size_t)n;
        return 0;
}

void v1_fs_batch(struct http_request *req)
{
        size_t len, i;
        const char *text = http_request_body(req, &len);
        struct sbx_err err = {};
        json_error_t jerr;
        json_t *body, *ops, *o;
        struct fs_job *j;
        int r = 0;

        /* the body is the array itself, or {"operations": [...]} */
        body = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!body) {
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_json", "invalid JSON at line %d column %d: %s",
                                  jerr.line, jerr.column, jerr.text);
                return;
        }
        ops = json_is_array(body) ? body : json_object_get(body, "operations");
        if (!json_is_array(ops)) {
                json_decref(body);
                http_reply_errorf(req, -SBX_E_INVALID, "invalid_type",
                                  "the body must be an array of operations, or {\"operations\": [...]}");
                return;
        }
        if (json_array_size(ops) > SBX_MAX_BATCH_OPS) {
                json_decref(body);
                http_reply_errorf(req, -SBX_E_INVALID, "out_of_range", "a batch holds at most %d operations",
                                  SBX_MAX_BATCH_OPS);
                return;
        }
        if (!(j = fs_job_new(req, FS_BATCH, body)))
                return;
        if (json_is_object(body)) {
                static const char *const known[] = { "operations", "user", NULL };

                r = files_json_only(body, known, &err);
                if (r >= 0)
                        r = files_json_user(body, &j->user, &err);
        }
        if (r >= 0 && !j->user)
                j->user = http_request_query(req, "user");
        j->n_batch = json_array_size(ops);
        j->batch = calloc(j->n_batch + 1, sizeof *j->batch);
        j->blobs = calloc(j->n_batch + 1, sizeof *j->blobs);
        if (!j->batch || !j->blobs)
                r = sbx_err_set(&err, -ENOMEM, "out of memory");
        json_array_foreach (ops, i, o) {
                if (r < 0)
                        break;
                r = batch_op_parse(j, o, i, &err);
        }
        if (r < 0) {
                if (err.code == 0)
                        sbx_err_set(&err, r, "out of memory");
                fs_job_free(j);
                http_reply_error(req, &err);
                return;
        }
        fs_run(req, j);
}
