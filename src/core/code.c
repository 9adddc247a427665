// SPDX-License-Identifier: Apache-2.0
/*
 * Code runs and contexts (code.h). A run without a context is a process (`python3 -c`, `node -e`,
 * `bash -c`) whose logs are read back once it ended. A context is a driver process
 * (code-drivers/, docs/internals/code.md) with its stdin kept open: a run is one request line
 * written to it, and its stdout/stderr go through the demux (code-demux.h) that splits the user's
 * output from the driver's markers. Runs of one context go one at a time, in order. A context
 * survives an sbxd restart with its process (its token and language are in the process record).
 * Loop thread only.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "core/code-demux.h"
#include "core/code.h"
#include "core/process.h"
#include "manager-internal.h"

#define CODE_READ_CHUNK (64 * 1024)
#define CODE_INTERRUPT_GRACE_MS 3000 /* after a timeout's SIGINT, kill the interpreter if the run goes on */
#define CODE_MAX_CONTEXTS 32         /* per sandbox */

struct code_run {
        struct code_run *next;
        uint64_t id;
        char *line;                     /* the request line, until sent */
        size_t line_len;
        code_done_fn done;
        void *data;
        char *buf[2];                   /* stdout, stderr: at most SBX_MAX_EXEC_OUTPUT each */
        size_t len[2];
        bool truncated, timed_out, sent;
        uint64_t timeout_s;
        uint64_t t0;
};

struct code_context {
        struct code_context *next;
        struct sandbox *sb;             /* holds a ref */
        char id[SBX_ID_MAX];
        char language[16];
        char token[CODE_TOKEN_LEN + 1];
        struct process *p;              /* the interpreter, with a ref; NULL until it started */
        struct process_listener l;
        uint64_t off[2];                /* fed to the demux so far */
        struct code_demux demux;
        uint64_t next_id;
        struct code_run *runs;          /* the first is in flight once sent */
        code_done_fn done;              /* creation, until answered */
        void *data;
        uint64_t created_ms;
        uv_timer_t timer;               /* the first run's timeout, then the interrupt's grace */
        bool interrupted, dead, freed;
};

static const char *const stream_names[2] = { "stdout", "stderr" };

/* ---------- results ---------- */

static void run_append(struct code_run *run, int s, const char *buf, size_t len)
{
        size_t room;

        if (!run->buf[s]) {
                run->buf[s] = malloc(SBX_MAX_EXEC_OUTPUT);
                if (!run->buf[s]) {
                        run->truncated = true;
                        return;
                }
        }
        room = SBX_MAX_EXEC_OUTPUT - run->len[s];
        if (len > room) {
                run->truncated = true;
                len = room;
        }
        memcpy(run->buf[s] + run->len[s], buf, len);
        run->len[s] += len;
}

static json_t *run_result(struct code_run *run, const char *language, const char *context_id, int exit_code,
                          const json_t *output, const json_t *error)
{
        json_t *o = json_object();

        if (!o)
                return NULL;
        for (int s = 0; s < 2; s++)
                json_object_set_new(o, stream_names[s], json_string_utf8(run->buf[s] ? run->buf[s] : "", run->len[s]));
        json_object_set_new(o, "output", output ? json_deep_copy(output) : json_null());
        json_object_set_new(o, "error", error && !json_is_null(error) ? json_deep_copy(error) : json_null());
        json_object_set_new(o, "exitCode", json_integer(exit_code));
        json_object_set_new(o, "language", language ? json_string(language) : json_null());
        json_object_set_new(o, "contextId", context_id ? json_string(context_id) : json_null());
        json_object_set_new(o, "timedOut", json_boolean(run->timed_out));
        json_object_set_new(o, "truncated", json_boolean(run->truncated));
        json_object_set_new(o, "durationMs", json_real((double)(now_usec() - run->t0) / 1000.0));
        return o;
}

static void run_free(struct code_run *run)
{
        free(run->line);
        free(run->buf[0]);
        free(run->buf[1]);
        free(run);
}

/* ---------- contexts ---------- */

static struct code_context *context_find(struct sandbox *sb, const char *cid)
{
        for (struct code_context *c = sb->contexts; c; c = c->next)
                if (strcmp(c->id, cid) == 0)
                        return c;
        return NULL;
}

static json_t *context_json(const struct code_context *c)
{
        return json_pack("{s:s,s:s,s:s?,s:s,s:o,s:I}", "contextId", c->id, "language", c->language, "processId",
                         c->p ? process_id(c->p) : NULL, "status", c->dead ? "exited" : "running", "createdAt",
                         json_time_ms(c->created_ms),
                         "runs", (json_int_t)(c->next_id > 0 ? c->next_id - 1 : 0));
}

static void context_send_next(struct code_context *c);

/* The first run is over: answer it and start the next. */
static void context_finish_run(struct code_context *c, int exit_code, const json_t *output, const json_t *error)
{
        struct code_run *run = c->runs;
        json_t *res;

        if (!run || !run->sent)
                return;
        c->runs = run->next;
        (void)uv_timer_stop(&c->timer);
        c->interrupted = false;
        res = run_result(run, c->language, c->id, exit_code, output, error);
        run->done(run->data, 0, NULL, res);
        run_free(run);
        context_send_next(c);
}

/* Every run waiting in c ends with error (its interpreter is gone). */
static void context_fail_runs(struct code_context *c, const char *name, const char *value)
{
        json_t *error = json_pack("{s:s,s:s,s:n}", "name", name, "value", value, "traceback");

        while (c->runs) {
                struct code_run *run = c->runs;
                c->runs = run->next;
                json_t *res = run_result(run, c->language, c->id, 1, NULL, error);
                run->done(run->data, 0, NULL, res);
                run_free(run);
        }
        json_decref(error);
}

static void on_demux_output(void *userdata, enum code_stream stream, const char *buf, size_t len)
{
        struct code_context *c = userdata;

        /* bytes outside a run (a background thread printing late) belong to nobody */
        if (c->runs && c->runs->sent)
                run_append(c->runs, stream == CODE_STDOUT ? 0 : 1, buf, len);
}

static void on_demux_done(void *userdata, uint64_t id, const json_t *result)
{
        struct code_context *c = userdata;
        bool ok = json_is_true(json_object_get(result, "ok"));

        if (c->runs && c->runs->sent && c->runs->id == id)
                context_finish_run(c, ok ? 0 : 1, json_object_get(result, "output"), json_object_get(result, "error"));
}

static void on_demux_error(void *userdata, enum code_stream stream, int code, const char *msg)
{
        struct code_context *c = userdata;

        log_warn("code context %s: %s", c->id, msg);
        if (code == -EBADMSG && c->p)
                (void)process_signal(c->p, SIGKILL, &(struct sbx_err){ 0 });
}

static const struct code_demux_callbacks demux_cb = {
        .output = on_demux_output,
        .done = on_demux_done,
        .error = on_demux_error,
};

static void context_pull(struct code_context *c)
{
        static char buf[CODE_READ_CHUNK];

        for (int s = 0; s < 2; s++) {
                const struct code_demux_callbacks cb = { .userdata = c, .output = demux_cb.output,
                                                         .done = demux_cb.done, .error = demux_cb.error };
                for (;;) {
                        ssize_t n = process_read(c->p, (enum process_stream)s, c->off[s], buf, sizeof buf);
                        if (n == -ERANGE) {
                                /* the driver printed more than the log keeps between two reads */
                                uint64_t start, end;
                                process_stream_range(c->p, (enum process_stream)s, &start, &end);
                                c->off[s] = start;
                                if (c->runs)
                                        c->runs->truncated = true;
                                continue;
                        }
                        if (n <= 0)
                                break;
                        c->off[s] += (uint64_t)n;
                        (void)code_demux_feed(&c->demux, (enum code_stream)s, buf, (size_t)n, &cb);
                        if (c->freed)
                                return;
                }
        }
}

static void context_on_process(struct process_listener *l, unsigned events)
{
        struct code_context *c = (struct code_context *)((char *)l - offsetof(struct code_context, l));

        context_pull(c);
        if ((events & PROCESS_EV_END) && !c->dead) {
                const struct code_demux_callbacks cb = { .userdata = c, .output = demux_cb.output,
                                                         .done = demux_cb.done, .error = demux_cb.error };
                c->dead = true;
                (void)code_demux_end(&c->demux, CODE_STDOUT, &cb);
                (void)code_demux_end(&c->demux, CODE_STDERR, &cb);
                context_fail_runs(c, "ContextExited", "the interpreter of this context exited");
        }
}

static void on_context_timer(uv_timer_t *t)
{
        struct code_context *c = t->data;

        if (!c->runs || !c->p)
                return;
        if (!c->interrupted) {
                /* a timeout interrupts the run and keeps the context (the driver turns SIGINT into
                 * an error of that run) */
                c->runs->timed_out = true;
                c->interrupted = true;
                (void)process_signal(c->p, SIGINT, &(struct sbx_err){ 0 });
                (void)uv_timer_start(&c->timer, on_context_timer, CODE_INTERRUPT_GRACE_MS, 0);
                return;
        }
        /* it did not stop: the interpreter goes, the context with it */
        (void)process_signal(c->p, SIGKILL, &(struct sbx_err){ 0 });
}

static void context_send_next(struct code_context *c)
{
        struct code_run *run = c->runs;
        struct sbx_err err = { 0 };

        if (!run || run->sent || c->dead || !c->p)
                return;
        run->sent = true;
        run->t0 = now_usec();
        if (process_write_stdin(c->p, run->line, run->line_len, NULL, NULL, &err) < 0) {
                c->runs = run->next;
                run->done(run->data, err.code, &err, NULL);
                run_free(run);
                context_send_next(c);
                return;
        }
        free(run->line);
        run->line = NULL;
        (void)uv_timer_start(&c->timer, on_context_timer, run->timeout_s * 1000, 0);
}

static void on_context_timer_closed(uv_handle_t *h)
{
        struct code_context *c = h->data;

        sandbox_unref(c->sb);
        free(c);
}

static void context_free(struct code_context *c)
{
        struct sandbox *sb = c->sb;

        for (struct code_context **pp = &sb->contexts; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        c->freed = true;
        context_fail_runs(c, "ContextDeleted", "the context was deleted");
        if (c->done) {
                struct sbx_err err = { 0 };
                sbx_err_setr(&err, -SBX_E_CONFLICT, "invalid_state", "the sandbox went away");
                c->done(c->data, err.code, &err, NULL);
                c->done = NULL;
        }
        if (c->p) {
                process_unlisten(&c->l);
                process_unref(c->p);
                c->p = NULL;
        }
        code_demux_done(&c->demux);
        uv_close((uv_handle_t *)&c->timer, on_context_timer_closed);
}

static struct code_context *context_new(struct sandbox *sb, const char *language, const char *id, const char *token)
{
        struct code_context *c = calloc(1, sizeof *c);

        if (!c)
                return NULL;
        if (uv_timer_init(sb->m->loop, &c->timer) < 0) {
                free(c);
                return NULL;
        }
        c->timer.data = c;
        c->sb = sb;
        sandbox_ref(sb);
        snprintf(c->language, sizeof c->language, "%s", language);
        snprintf(c->id, sizeof c->id, "%s", id);
        snprintf(c->token, sizeof c->token, "%s", token);
        c->next_id = 1;
        c->created_ms = now_realtime_ms();
        c->l.notify = context_on_process;
        (void)code_demux_init(&c->demux, c->token);
        c->next = sb->contexts;
        sb->contexts = c;
        return c;
}

/* Follow the interpreter from offsets off (what earlier runs left is not a run's). */
static void context_attach(struct code_context *c, struct process *p)
{
        uint64_t start, end;

        c->p = p;
        for (int s = 0; s < 2; s++) {
                process_stream_range(p, (enum process_stream)s, &start, &end);
                c->off[s] = end;
        }
        process_listen(p, &c->l);
        if (process_ended(p))
                context_on_process(&c->l, PROCESS_EV_END);
}

static void on_driver_started(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct code_context *c = data;
        struct sbx_err e = { 0 };
        code_done_fn done = c->done;
        struct process *p;

        c->done = NULL;
        if (r < 0) {
                done(c->data, r, err, NULL);
                context_free(c);
                return;
        }
        p = manager_process_find(c->sb->m, c->sb->rec.id, json_string_value(json_object_get(result, "processId")), &e);
        json_decref(result);
        if (!p) {
                done(c->data, e.code, &e, NULL);
                context_free(c);
                return;
        }
        context_attach(c, p);
        done(c->data, 0, NULL, context_json(c));
}

static void argv_free(char **argv)
{
        for (size_t i = 0; argv && argv[i]; i++)
                free(argv[i]);
        free(argv);
}

/* The interpreter's argv: its driver (code NULL) or the code itself (which has no NUL: checked). */
static int build_argv(const char *language, const char *code, size_t len, char ***ret, size_t *ret_argc)
{
        const char *src = code ? NULL : code_driver_source(language);
        char **argv = calloc(5, sizeof *argv);
        size_t n = 0;

        if (!argv)
                return -ENOMEM;
        if (strcmp(language, "python") == 0) {
                argv[n++] = strdup("python3");
                argv[n++] = strdup("-u");
                argv[n++] = strdup("-c");
        } else if (strcmp(language, "node") == 0) {
                argv[n++] = strdup("node");
                argv[n++] = strdup("-e");
        } else {
                argv[n++] = strdup("/bin/bash");
                argv[n++] = strdup("-c");
        }
        argv[n++] = code ? strndup(code, len) : strdup(src ? src : "");
        for (size_t i = 0; i < n; i++)
                if (!argv[i]) {
                        argv_free(argv);
                        return -ENOMEM;
                }
        *ret = argv;
        *ret_argc = n;
        return 0;
}

int manager_context_create(struct manager *m, const char *id, const char *language, struct exec_spec *base,
                           code_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        const char *lang = code_language_parse(language ? language : "python");
        char cid[SBX_ID_MAX], token[CODE_TOKEN_LEN + 1], env_token[CODE_TOKEN_LEN + 32];
        struct code_context *c;
        unsigned n = 0;
        char **env;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (!lang || !code_driver_source(lang))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'language' of a context must be python or node");
        for (c = sb->contexts; c; c = c->next)
                n++;
        if (n >= CODE_MAX_CONTEXTS)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "sandbox '%s' has %d contexts already",
                                    sb->rec.id, CODE_MAX_CONTEXTS);
        if (sbx_id_new("ctx_", cid, sizeof cid) < 0 || code_token_new(token) < 0)
                return sbx_err_set(err, -EIO, "cannot make a context id");
        snprintf(env_token, sizeof env_token, "SBX_CODE_TOKEN=%s", token);
        /* the interpreter: argv from the language, env + the token, stdin kept, tag = the context */
        argv_free(base->argv);
        base->argv = NULL;
        r = build_argv(lang, NULL, 0, &base->argv, &base->argc);
        if (r < 0)
                return sbx_err_set(err, r, "out of memory");
        env = realloc(base->env, (base->n_env + 2) * sizeof *env);
        if (!env)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        base->env = env;
        base->env[base->n_env] = strdup(env_token);
        base->env[base->n_env + 1] = NULL;
        if (!base->env[base->n_env])
                return sbx_err_set(err, -ENOMEM, "out of memory");
        base->n_env++;
        base->stdin_keep = true;
        base->keep_after_disconnect = true;
        base->max_run_after_disconnect_s = -1;
        base->timeout_s = 0;
        snprintf(base->tag, sizeof base->tag, "%s", cid);
        json_decref(base->meta);
        base->meta = json_pack("{s:s,s:s,s:s}", "_codeToken", token, "_codeLanguage", lang, "_codeContext", cid);
        if (!base->meta)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        c = context_new(sb, lang, cid, token);
        if (!c)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        c->done = done;
        c->data = data;
        r = manager_process_start(m, id, base, "context", on_driver_started, c, err);
        if (r < 0) {
                c->done = NULL;
                context_free(c);
                return r;
        }
        return 0;
}

int manager_context_list(struct manager *m, const char *id, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        json_t *arr;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        arr = json_array();
        for (struct code_context *c = sb->contexts; arr && c; c = c->next)
                if (c->p)
                        json_array_append_new(arr, context_json(c));
        *ret = arr ? json_pack("{s:o}", "contexts", arr) : NULL;
        return *ret ? 0 : -ENOMEM;
}

static struct code_context *context_lookup(struct manager *m, const char *id, const char *cid, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct code_context *c = sb ? context_find(sb, cid) : NULL;

        if (sb && (!c || !c->p))
                sbx_err_setr(err, -SBX_E_NOT_FOUND, "context_not_found", "context '%.64s' not found in sandbox '%s'",
                             cid, sb->rec.id);
        return c && c->p ? c : NULL;
}

int manager_context_get(struct manager *m, const char *id, const char *cid, json_t **ret, struct sbx_err *err)
{
        struct code_context *c = context_lookup(m, id, cid, err);

        if (!c)
                return err->code;
        *ret = context_json(c);
        return *ret ? 0 : -ENOMEM;
}

int manager_context_delete(struct manager *m, const char *id, const char *cid, struct sbx_err *err)
{
        struct code_context *c = context_lookup(m, id, cid, err);

        if (!c)
                return err->code;
        if (!process_ended(c->p))
                (void)process_signal(c->p, SIGKILL, &(struct sbx_err){ 0 });
        context_free(c);
        return 0;
}

/* ---------- runs ---------- */

struct oneshot {
        struct process_listener l;
        struct manager *m;
        char sandbox[SBX_ID_MAX];
        char language[16];      /* "" = not a code run: manager_process_run()'s result */
        struct process *p;
        struct code_run run;
};

static void oneshot_on_process(struct process_listener *l, unsigned events)
{
        struct oneshot *o = (struct oneshot *)l;
        static char buf[CODE_READ_CHUNK];
        json_t *res, *pj;
        int code;

        if (!(events & PROCESS_EV_END))
                return;
        for (int s = 0; s < 2; s++) {
                uint64_t start, end, off;
                process_stream_range(o->p, (enum process_stream)s, &start, &end);
                if (start > 0)
                        o->run.truncated = true;
                for (off = start; off < end;) {
                        ssize_t n = process_read(o->p, (enum process_stream)s, off, buf, sizeof buf);
                        if (n <= 0)
                                break;
                        run_append(&o->run, s, buf, (size_t)n);
                        off += (uint64_t)n;
                }
        }
        pj = process_to_json(o->p);
        code = (int)json_integer_value(json_object_get(pj, "exitCode"));
        o->run.timed_out = process_status(o->p) == PROCESS_TIMEOUT;
        json_decref(pj);
        res = run_result(&o->run, o->language[0] ? o->language : NULL, NULL, code, NULL, NULL);
        if (res && !o->language[0]) {
                json_object_del(res, "language");
                json_object_del(res, "contextId");
                json_object_del(res, "output");
                json_object_del(res, "error");
                json_object_set_new(res, "commandId", json_string(process_id(o->p)));
                json_object_set_new(res, "processId", json_string(process_id(o->p)));
        }
        o->run.done(o->run.data, 0, NULL, res);
        process_unlisten(&o->l);
        process_unref(o->p);
        free(o->run.buf[0]);
        free(o->run.buf[1]);
        free(o);
}

static void oneshot_started(void *data, int r, const struct sbx_err *err, json_t *result)
{
        struct oneshot *o = data;
        struct sbx_err e = { 0 };

        if (r >= 0) {
                o->p = manager_process_find(o->m, o->sandbox, json_string_value(json_object_get(result, "processId")), &e);
                json_decref(result);
                if (o->p) {
                        o->l.notify = oneshot_on_process;
                        process_listen(o->p, &o->l);
                        if (process_ended(o->p))
                                oneshot_on_process(&o->l, PROCESS_EV_END);
                        return;
                }
                r = e.code;
                err = &e;
        }
        o->run.done(o->run.data, r, err, NULL);
        free(o);
}

int manager_code_run(struct manager *m, const char *id, const struct code_request *rq, code_done_fn done, void *data,
                     struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        const char *lang = NULL;
        uint64_t timeout_s = rq->timeout_s ? rq->timeout_s : SBX_DEFAULT_EXEC_TIMEOUT_S;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (rq->language && !(lang = code_language_parse(rq->language)))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'language' must be python, node or bash (or an alias: py, js, sh, ...)");
        if (rq->context_id) {
                struct code_context *c = context_lookup(m, id, rq->context_id, err);
                struct code_run *run;
                if (!c)
                        return err->code;
                if (lang && strcmp(lang, c->language) != 0)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'language' %s does not match context '%s' (%s)", lang, c->id, c->language);
                if (c->dead)
                        return sbx_err_setr(err, -SBX_E_CONFLICT, "context_not_running",
                                            "the interpreter of context '%s' exited: create a new context", c->id);
                run = calloc(1, sizeof *run);
                if (!run)
                        return sbx_err_set(err, -ENOMEM, "out of memory");
                run->id = c->next_id;
                r = code_request_build(run->id, rq->code, rq->len, &run->line, &run->line_len);
                if (r < 0) {
                        free(run);
                        return sbx_err_setr(err, r == -SBX_E_TOO_LARGE ? r : -SBX_E_INVALID, "invalid_value",
                                            "'code' must be UTF-8 text of at most %d bytes", SBX_MAX_JSON_BODY);
                }
                c->next_id++;
                run->done = done;
                run->data = data;
                run->timeout_s = timeout_s;
                run->t0 = now_usec();
                struct code_run **pp = &c->runs;
                while (*pp)
                        pp = &(*pp)->next;
                *pp = run;
                context_send_next(c);
                return 0;
        }
        if (memchr(rq->code, '\0', rq->len))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'code' must not contain NUL bytes");
        if (rq->len > 128 * 1024 - 1)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range",
                                    "'code' of a run without a context must be under 128 KiB (a context takes up to 1 MiB)");
        if (!lang)
                lang = code_detect_language(rq->code, rq->len);
        struct exec_spec spec = { .timeout_s = timeout_s, .keep_after_disconnect = true,
                                  .max_run_after_disconnect_s = -1, .cols = 80, .rows = 24 };
        struct oneshot *o = calloc(1, sizeof *o);
        if (!o)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        snprintf(spec.cwd, sizeof spec.cwd, "/root");
        r = build_argv(lang, rq->code, rq->len, &spec.argv, &spec.argc);
        if (r < 0) {
                free(o);
                return sbx_err_set(err, r, "out of memory");
        }
        o->m = m;
        snprintf(o->sandbox, sizeof o->sandbox, "%s", sb->rec.id);
        snprintf(o->language, sizeof o->language, "%s", lang);
        o->run.done = done;
        o->run.data = data;
        o->run.t0 = now_usec();
        r = manager_process_start(m, id, &spec, "code", oneshot_started, o, err);
        if (r < 0) {
                exec_spec_release(&spec);
                free(o);
        }
        return r;
}

int manager_process_run(struct manager *m, const char *id, struct exec_spec *spec, const char *kind, code_done_fn done,
                        void *data, struct sbx_err *err)
{
        struct oneshot *o = calloc(1, sizeof *o);
        int r;

        if (!o)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        o->m = m;
        snprintf(o->sandbox, sizeof o->sandbox, "%.*s", SBX_ID_MAX - 1, id);
        o->run.done = done;
        o->run.data = data;
        o->run.t0 = now_usec();
        r = manager_process_start(m, id, spec, kind, oneshot_started, o, err);
        if (r < 0)
                free(o);
        return r;
}

/* ---------- the sandbox's hooks ---------- */

void code__sandbox_remove(struct sandbox *sb)
{
        while (sb->contexts)
                context_free(sb->contexts);
}

void code__recover(struct sandbox *sb)
{
        json_t *procs = NULL;

        if (manager_process_list(sb->m, sb->rec.id, "context", &procs, &(struct sbx_err){ 0 }) < 0)
                return;
        size_t i;
        json_t *pj;
        json_array_foreach (json_object_get(procs, "processes"), i, pj) {
                struct process *p = manager_process_find(sb->m, sb->rec.id,
                                                         json_string_value(json_object_get(pj, "processId")),
                                                         &(struct sbx_err){ 0 });
                const json_t *meta = p ? process_meta(p) : NULL;
                const char *token = json_string_value(json_object_get(meta, "_codeToken"));
                const char *lang = json_string_value(json_object_get(meta, "_codeLanguage"));
                const char *cid = json_string_value(json_object_get(meta, "_codeContext"));
                struct code_context *c;

                if (!p || process_ended(p) || !token || !lang || !cid || !sbx_id_valid("ctx_", cid) ||
                    strlen(token) != CODE_TOKEN_LEN || !(c = context_new(sb, lang, cid, token))) {
                        process_unref(p);
                        continue;
                }
                context_attach(c, p);
        }
        json_decref(procs);
}
