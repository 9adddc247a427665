// SPDX-License-Identifier: Apache-2.0
/*
 * Sessions (session.h): named shells whose working directory and exported environment persist
 * from one command to the next. Each command is a process of its own (kind "session", tag = the
 * session), so it has its own id, output logs, exit code and signals, and commands may run at
 * once. Persistence is a small state file in the sandbox, written by the command's shell wrapper
 * after the command (`export -p` and the directory) and sourced before the next one: a `cd` or an
 * `export` in one command holds in the next, as in an interactive shell. The sessions themselves
 * are kept in the store's settings, so they survive an sbxd restart. Loop thread only.
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
#include "core/code.h"
#include "core/process.h"
#include "core/session.h"
#include "files/files.h"
#include "manager-internal.h"

#define SESSION_STATE_DIR "/tmp"

/*
 * $1 the state file, $2 the command. The state is sourced (it cd's and exports), the command runs
 * in this same shell (eval), then the state is written again atomically, readable by the
 * session's user only. A command that exits the shell itself (exit, exec) leaves the state as it was.
 */
static const char session_wrapper[] =
        "f=$1; if [ -r \"$f\" ]; then . \"$f\"; fi\n"
        "eval \"$2\"\n"
        "__sbx_rc=$?\n"
        "(umask 077; { export -p; printf 'cd -- %s\\n' \"'$(pwd | sed \"s/'/'\\\\\\\\''/g\")'\"; } > \"$f.$$\") "
        "2>/dev/null && mv -f \"$f.$$\" \"$f\"\n"
        "exit $__sbx_rc\n";

struct session {
        struct session *next;
        char id[SBX_MAX_SESSION_ID + 1];
        json_t *spec;           /* {cwd, env, user}: what its commands start with */
        uint64_t created_ms;
};

static char *settings_key(const struct sandbox *sb, char *buf, size_t size)
{
        snprintf(buf, size, "sessions/%s", sb->rec.id);
        return buf;
}

static json_t *session_json(const struct session *s)
{
        json_t *o = json_deep_copy(s->spec);

        if (o) {
                json_object_set_new(o, "sessionId", json_string(s->id));
                json_object_set_new(o, "createdAt", json_time_ms(s->created_ms));
        }
        return o;
}

/* Write every session of sb to the store (a failure costs only persistence across a restart). */
static void sessions_save(struct sandbox *sb)
{
        struct store *st = sb->m->store;
        json_t *arr = json_array();
        _cleanup_free_ char *text = NULL;
        char key[64];

        for (struct session *s = sb->sessions; arr && s; s = s->next) {
                json_t *o = session_json(s);
                if (o)
                        json_object_set_new(o, "createdMs", json_integer((json_int_t)s->created_ms));
                json_array_append_new(arr, o);
        }
        text = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
        json_decref(arr);
        if (text && st->ops->setting_set(st, settings_key(sb, key, sizeof key), text, &(struct sbx_err){ 0 }) < 0)
                log_warn("sandbox %s: cannot save its sessions", sb->rec.id);
}

static void session_free(struct session *s)
{
        json_decref(s->spec);
        free(s);
}

static struct session *session_find(struct sandbox *sb, const char *sid)
{
        for (struct session *s = sb->sessions; s; s = s->next)
                if (strcmp(s->id, sid) == 0)
                        return s;
        return NULL;
}

static bool session_id_valid(const char *s)
{
        size_t n = strlen(s);

        if (n == 0 || n > SBX_MAX_SESSION_ID || s[0] == '.' || s[0] == '-')
                return false;
        return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

static struct session *session_lookup(struct manager *m, const char *id, const char *sid, struct sandbox **ret_sb,
                                      struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct session *s = sb ? session_find(sb, sid) : NULL;

        if (sb && !s)
                sbx_err_setr(err, -SBX_E_NOT_FOUND, "session_not_found", "session '%.64s' not found in sandbox '%s'",
                             sid, sb->rec.id);
        if (ret_sb)
                *ret_sb = sb;
        return s;
}

int manager_session_create(struct manager *m, const char *id, const char *sid, const struct exec_spec *spec,
                           json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct session *s;
        unsigned n = 0;
        json_t *env;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sid && !session_id_valid(sid))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "'sessionId' must be 1 to %d of A-Z a-z 0-9 _ . - (not starting with . or -)",
                                    SBX_MAX_SESSION_ID);
        for (s = sb->sessions; s; s = s->next)
                n++;
        if (n >= SBX_MAX_SESSIONS)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "sandbox '%s' has %d sessions already",
                                    sb->rec.id, SBX_MAX_SESSIONS);
        if (sid && session_find(sb, sid))
                return sbx_err_setr(err, -SBX_E_CONFLICT, "session_exists", "session '%s' exists already", sid);
        s = calloc(1, sizeof *s);
        if (!s)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (sid)
                snprintf(s->id, sizeof s->id, "%s", sid);
        else if (sbx_id_new("ses_", s->id, sizeof s->id) < 0) {
                free(s);
                return sbx_err_set(err, -EIO, "cannot make a session id");
        }
        env = json_object();
        for (size_t i = 0; env && i < spec->n_env; i++) {
                const char *eq = strchr(spec->env[i], '=');
                char name[SBX_MAX_ENV_KEY + 1];
                snprintf(name, sizeof name, "%.*s", (int)(eq - spec->env[i]), spec->env[i]);
                json_object_set_new(env, name, json_string(eq + 1));
        }
        s->spec = env ? json_pack("{s:s,s:o,s:s?}", "cwd", spec->cwd_given ? spec->cwd : "", "env", env, "user",
                                  spec->user[0] ? spec->user : NULL)
                      : NULL;
        if (!s->spec) {
                free(s);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        s->created_ms = now_realtime_ms();
        s->next = sb->sessions;
        sb->sessions = s;
        sessions_save(sb);
        *ret = session_json(s);
        return 0;
}

int manager_session_list(struct manager *m, const char *id, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        json_t *arr;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        arr = json_array();
        for (struct session *s = sb->sessions; arr && s; s = s->next)
                json_array_append_new(arr, session_json(s));
        *ret = arr ? json_pack("{s:o}", "sessions", arr) : NULL;
        return *ret ? 0 : -ENOMEM;
}

int manager_session_get(struct manager *m, const char *id, const char *sid, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb;
        struct session *s = session_lookup(m, id, sid, &sb, err);
        json_t *procs = NULL, *cmds, *o, *pj;
        size_t i;

        if (!s)
                return err->code;
        if (manager_process_list(m, id, "session", &procs, err) < 0)
                return err->code;
        cmds = json_array();
        json_array_foreach (json_object_get(procs, "processes"), i, pj)
                if (json_is_string(json_object_get(pj, "tag")) &&
                    strcmp(json_string_value(json_object_get(pj, "tag")), s->id) == 0) {
                        json_object_set(pj, "commandId", json_object_get(pj, "processId"));
                        json_array_append(cmds, pj);
                }
        json_decref(procs);
        o = session_json(s);
        if (!o || !cmds) {
                json_decref(o);
                json_decref(cmds);
                return -ENOMEM;
        }
        json_object_set_new(o, "commands", cmds);
        *ret = o;
        return 0;
}

/* The command's process: the wrapper around cmd, with the session's cwd, env and user. */
static int command_spec(const struct sandbox *sb, const struct session *s, const char *cmd, uint64_t timeout_s,
                        struct exec_spec *ret, struct sbx_err *err)
{
        const char *cwd = json_string_value(json_object_get(s->spec, "cwd"));
        const char *user = json_string_value(json_object_get(s->spec, "user"));
        json_t *env = json_object_get(s->spec, "env"), *v;
        char state[128];
        const char *k;
        size_t n = 0;

        snprintf(state, sizeof state, SESSION_STATE_DIR "/.sbx-session-%s-%s", sb->rec.id, s->id);
        *ret = (struct exec_spec){ .timeout_s = timeout_s, .keep_after_disconnect = true,
                                   .max_run_after_disconnect_s = -1, .cols = 80, .rows = 24 };
        ret->argv = calloc(7, sizeof *ret->argv);
        ret->env = calloc(json_object_size(env) + 1, sizeof *ret->env);
        if (!ret->argv || !ret->env)
                goto nomem;
        const char *args[] = { "/bin/sh", "-c", session_wrapper, "sbx-session", state, cmd };
        for (size_t i = 0; i < ELEMENTSOF(args); i++)
                if (!(ret->argv[ret->argc++] = strdup(args[i])))
                        goto nomem;
        json_object_foreach (env, k, v) {
                if (asprintf(&ret->env[n], "%s=%s", k, json_string_value(v)) < 0) {
                        ret->env[n] = NULL;
                        goto nomem;
                }
                ret->n_env = ++n;
        }
        if (cwd && cwd[0]) {
                snprintf(ret->cwd, sizeof ret->cwd, "%s", cwd);
                ret->cwd_given = true;
        } else
                snprintf(ret->cwd, sizeof ret->cwd, "/root");
        if (user)
                snprintf(ret->user, sizeof ret->user, "%s", user);
        snprintf(ret->tag, sizeof ret->tag, "%s", s->id);
        return 0;
nomem:
        exec_spec_release(ret);
        return sbx_err_set(err, -ENOMEM, "out of memory");
}

int manager_session_exec(struct manager *m, const char *id, const char *sid, const char *cmd, uint64_t timeout_s,
                         bool async, code_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb;
        struct session *s = session_lookup(m, id, sid, &sb, err);
        struct exec_spec spec;
        int r;

        if (!s)
                return err->code;
        r = command_spec(sb, s, cmd, timeout_s, &spec, err);
        if (r < 0)
                return r;
        r = async ? manager_process_start(m, id, &spec, "session", done, data, err)
                  : manager_process_run(m, id, &spec, "session", done, data, err);
        if (r < 0)
                exec_spec_release(&spec);
        return r;
}

/* On the worker pool: the state file goes (absent is fine). */
static int unlink_state(const struct files_root *root, void *data, json_t **ret, struct sbx_err *err)
{
        struct sbx_err e = { 0 };
        int r = files_delete(root, data, false, &e);

        return r == -SBX_E_NOT_FOUND ? 0 : r;
}

static void unlink_state_done(void *data, int r, const struct sbx_err *err, json_t *result)
{
        json_decref(result);
        free(data);
}

int manager_session_delete(struct manager *m, const char *id, const char *sid, struct sbx_err *err)
{
        struct sandbox *sb;
        struct session *s = session_lookup(m, id, sid, &sb, err);
        json_t *procs = NULL, *pj;
        size_t i;

        if (!s)
                return err->code;
        /* its commands still running end with it */
        if (manager_process_list(m, id, "session", &procs, &(struct sbx_err){ 0 }) >= 0)
                json_array_foreach (json_object_get(procs, "processes"), i, pj) {
                        const char *tag = json_string_value(json_object_get(pj, "tag"));
                        struct process *p;
                        if (!tag || strcmp(tag, s->id) != 0)
                                continue;
                        p = manager_process_find(m, id, json_string_value(json_object_get(pj, "processId")),
                                                 &(struct sbx_err){ 0 });
                        if (p && !process_ended(p))
                                (void)process_signal(p, SIGKILL, &(struct sbx_err){ 0 });
                        process_unref(p);
                }
        json_decref(procs);
        /* and its state file, through the files library (in-root, as the sandbox's root; also while
         * the sandbox is stopped); best effort */
        char *state = malloc(128);
        if (state) {
                snprintf(state, 128, SESSION_STATE_DIR "/.sbx-session-%s-%s", sb->rec.id, s->id);
                if (manager_files_run(m, id, false, NULL, unlink_state, state, unlink_state_done, state,
                                      &(struct sbx_err){ 0 }) < 0)
                        free(state);
        }
        for (struct session **pp = &sb->sessions; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        session_free(s);
        sessions_save(sb);
        return 0;
}

void session__sandbox_remove(struct sandbox *sb)
{
        char key[64];

        while (sb->sessions) {
                struct session *s = sb->sessions;
                sb->sessions = s->next;
                session_free(s);
        }
        if (sb->rec.state == SANDBOX_DELETED)
                (void)sb->m->store->ops->setting_set(sb->m->store, settings_key(sb, key, sizeof key), "[]",
                                                     &(struct sbx_err){ 0 });
}

void session__recover(struct sandbox *sb)
{
        struct store *st = sb->m->store;
        _cleanup_free_ char *text = malloc(SBX_MAX_JSON_BODY);
        char key[64];
        json_t *arr, *o;
        size_t i;

        if (!text || st->ops->setting_get(st, settings_key(sb, key, sizeof key), text, SBX_MAX_JSON_BODY,
                                          &(struct sbx_err){ 0 }) < 0)
                return;
        arr = json_loads(text, 0, NULL);
        json_array_foreach (arr, i, o) {
                const char *sid = json_string_value(json_object_get(o, "sessionId"));
                struct session *s;
                if (!sid || !session_id_valid(sid) || session_find(sb, sid) || !(s = calloc(1, sizeof *s)))
                        continue;
                snprintf(s->id, sizeof s->id, "%s", sid);
                s->created_ms = (uint64_t)json_integer_value(json_object_get(o, "createdMs"));
                s->spec = json_pack("{s:O*,s:O*,s:O*}", "cwd", json_object_get(o, "cwd"), "env",
                                    json_object_get(o, "env"), "user", json_object_get(o, "user"));
                if (!s->spec) {
                        free(s);
                        continue;
                }
                s->next = sb->sessions;
                sb->sessions = s;
        }
        json_decref(arr);
}
