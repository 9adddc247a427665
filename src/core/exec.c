// SPDX-License-Identifier: Apache-2.0
/*
 * Running a command in a sandbox: ask sbx-init to spawn it (in its own cgroup of the unified tree,
 * so a timeout kills the whole process tree), pump its stdin/stdout/stderr pipes through libuv,
 * enforce the timeout, and report the exit. Loop thread only. See manager.h (manager_exec).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "core/metrics.h"
#include "manager-internal.h"

#define EXEC_READ_CHUNK (64 * 1024)
#define EXEC_EXIT_GRACE_MS 100  /* after the process exited, wait this long for its pipes to drain */

enum exec_phase {
        EXEC_SPAWNING,  /* request sent, no reply yet */
        EXEC_RUNNING,
        EXEC_DRAINING,  /* exited; reading what is left in the pipes */
        EXEC_FINISHED,
};

struct exec_handle {
        struct exec_handle *next;
        struct sandbox *sb;               /* holds a ref */
        uint64_t seq;
        struct exec_spec spec;
        struct exec_callbacks cb;
        void *data;
        enum exec_phase phase;
        uv_pipe_t in, out, err;
        bool in_open, out_open, err_open, paused;
        uv_write_t wreq;
        uv_timer_t timer;
        unsigned handles;                 /* uv handles not yet closed */
        uint64_t t0;
        uint64_t group;                   /* its cgroup <id>/e<group> in the unified tree, 0 = none */
        uint64_t t_spawned, t_exited;     /* for the debug log */
        int status;                       /* raw wait status */
        bool timed_out, cancelled, done_called, exited;
        bool killed;                      /* its group got cgroup.kill: never reuse it */
        char buf[EXEC_READ_CHUNK];
};

static void exec_maybe_free(struct exec_handle *h)
{
        if (h->handles > 0 || h->phase != EXEC_FINISHED)
                return;
        exec_spec_release(&h->spec);
        sandbox_unref(h->sb);
        free(h);
}

static void on_exec_handle_closed(uv_handle_t *uh)
{
        struct exec_handle *h = uh->data;

        h->handles--;
        exec_maybe_free(h);
}

static void close_exec_handle(struct exec_handle *h, uv_handle_t *uh, bool *open)
{
        if (open && !*open)
                return;
        if (open)
                *open = false;
        if (uv_is_closing(uh))
                return;
        uv_close(uh, on_exec_handle_closed);
}

static void unlink_exec(struct exec_handle *h)
{
        struct sandbox *sb = h->sb;

        for (struct exec_handle **pp = &sb->execs; *pp; pp = &(*pp)->next)
                if (*pp == h) {
                        *pp = h->next;
                        sb->n_execs--;
                        break;
                }
}

static void call_done(struct exec_handle *h, int r, const struct sbx_err *err, const struct exec_result *res)
{
        if (h->done_called)
                return;
        h->done_called = true;
        if (!h->cancelled && h->cb.done)
                h->cb.done(h->data, r, err, res);
}

/* Everything ends here exactly once. */
static void exec_finish(struct exec_handle *h, int r, const struct sbx_err *err)
{
        struct sandbox *sb = h->sb;
        struct exec_result res = { 0 };

        if (h->phase == EXEC_FINISHED)
                return;
        h->phase = EXEC_FINISHED;
        uv_timer_stop(&h->timer);
        close_exec_handle(h, (uv_handle_t *)&h->timer, NULL);
        close_exec_handle(h, (uv_handle_t *)&h->in, &h->in_open);
        close_exec_handle(h, (uv_handle_t *)&h->out, &h->out_open);
        close_exec_handle(h, (uv_handle_t *)&h->err, &h->err_open);
        unlink_exec(h);

        if (r >= 0) {
                res.duration_usec = now_usec() - h->t0;
                res.timed_out = h->timed_out;
                if (WIFEXITED(h->status))
                        res.exit_code = WEXITSTATUS(h->status);
                else if (WIFSIGNALED(h->status))
                        res.exit_code = 128 + WTERMSIG(h->status);
                /* a SIGKILL while the memory cgroup's OOM count rose: the OOM killer did it
                 * (NEEDSWORK: two execs SIGKILLed at once may both be blamed) */
                if (WIFSIGNALED(h->status) && WTERMSIG(h->status) == SIGKILL && !h->timed_out)
                        res.oom_killed = manager__check_oom(sb, "exec");
                metrics_exec(res.duration_usec);
        }
        /* answer first: the housekeeping below is off the client's critical path */
        call_done(h, r, err, r >= 0 ? &res : NULL);
        if (sb->ctl_fd >= 0)
                (void)init_client_send_release(sb->ctl_fd, h->seq);
        exec__group_put(sb, h->group, h->killed);
        log_debug("exec %s/%llu: %.3f ms (spawn %.3f, run %.3f, drain %.3f)", sb->rec.id, (unsigned long long)h->seq,
                  (now_usec() - h->t0) / 1000.0, h->t_spawned ? (h->t_spawned - h->t0) / 1000.0 : 0.0,
                  h->t_exited && h->t_spawned ? (h->t_exited - h->t_spawned) / 1000.0 : 0.0,
                  h->t_exited ? (now_usec() - h->t_exited) / 1000.0 : 0.0);
        sandbox__idle_touch(sb);
        exec_maybe_free(h);
}

static void maybe_complete(struct exec_handle *h)
{
        if (h->phase == EXEC_DRAINING && !h->out_open && !h->err_open)
                exec_finish(h, 0, NULL);
}

static void on_grace(uv_timer_t *t)
{
        struct exec_handle *h = t->data;

        /* the caller paused the output (back-pressure): what waits in the pipes is not lost to a
         * grace period the caller spent; exec_handle_resume() re-arms it */
        if (h->paused)
                return;
        /* background children still hold the pipes: stop reading, report the exit */
        close_exec_handle(h, (uv_handle_t *)&h->out, &h->out_open);
        close_exec_handle(h, (uv_handle_t *)&h->err, &h->err_open);
        exec_finish(h, 0, NULL);
}

static void kill_tree(struct exec_handle *h)
{
        struct sandbox *sb = h->sb;

        h->killed = true;
        if ((!h->group || cgroup_exec_kill(&sb->m->cg, sb->rec.id, h->group) < 0) && sb->ctl_fd >= 0)
                (void)init_client_send_signal(sb->ctl_fd, h->seq, SIGKILL);
}

static void on_timeout(uv_timer_t *t)
{
        struct exec_handle *h = t->data;

        if (h->phase != EXEC_RUNNING && h->phase != EXEC_SPAWNING)
                return;
        h->timed_out = true;
        kill_tree(h);
}

static void on_alloc(uv_handle_t *uh, size_t suggested, uv_buf_t *buf)
{
        struct exec_handle *h = uh->data;

        buf->base = h->buf;
        buf->len = sizeof h->buf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct exec_handle *h = s->data;
        bool is_out = s == (uv_stream_t *)&h->out;

        if (n > 0) {
                if (h->cb.output && !h->cancelled &&
                    !h->cb.output(h->data, is_out ? EXEC_STDOUT : EXEC_STDERR, buf->base, (size_t)n)) {
                        h->paused = true;
                        (void)uv_read_stop((uv_stream_t *)&h->out);
                        (void)uv_read_stop((uv_stream_t *)&h->err);
                }
                if (h->phase == EXEC_DRAINING)
                        uv_timer_start(&h->timer, on_grace, EXEC_EXIT_GRACE_MS, 0);
                return;
        }
        if (n == 0)
                return;
        /* EOF or error: this stream is done */
        close_exec_handle(h, (uv_handle_t *)s, is_out ? &h->out_open : &h->err_open);
        maybe_complete(h);
}

void exec_handle_resume(struct exec_handle *h)
{
        if (!h->paused || h->phase == EXEC_FINISHED)
                return;
        h->paused = false;
        if (h->phase == EXEC_DRAINING)
                uv_timer_start(&h->timer, on_grace, EXEC_EXIT_GRACE_MS, 0);
        if (h->out_open)
                (void)uv_read_start((uv_stream_t *)&h->out, on_alloc, on_read);
        if (h->err_open)
                (void)uv_read_start((uv_stream_t *)&h->err, on_alloc, on_read);
}

void exec_handle_cancel(struct exec_handle *h)
{
        if (!h || h->phase == EXEC_FINISHED)
                return;
        h->cancelled = true;
        kill_tree(h);
        /* the exit arrives as usual and frees everything; nobody is told */
        if (h->paused)
                exec_handle_resume(h);
}

static void on_stdin_written(uv_write_t *w, int status)
{
        struct exec_handle *h = w->data;

        close_exec_handle(h, (uv_handle_t *)&h->in, &h->in_open);
}

static int open_pipe(struct exec_handle *h, uv_pipe_t *p, int fd, bool *open)
{
        int r = uv_pipe_init(h->sb->m->loop, p, 0);

        if (r < 0) {
                safe_close(fd);
                return r;
        }
        p->data = h;
        h->handles++;
        *open = true;
        r = uv_pipe_open(p, fd);
        if (r < 0)
                safe_close(fd);
        return r;
}

static void on_spawned(struct exec_handle *h, struct init_client_msg *msg)
{
        struct sbx_err err = { 0 };
        int r;

        h->t_spawned = now_usec();
        if (msg->spawned.error) {
                int e = msg->spawned.error;
                if (msg->spawned.step == INIT_STEP_CWD) {
                        exec_finish(h, sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value",
                                                    "'cwd' '%s' cannot be entered in the sandbox: %s", h->spec.cwd,
                                                    strerror(e)),
                                    &err);
                        return;
                }
                if (msg->spawned.step == INIT_STEP_EXEC) {
                        /* like a shell: 127 not found, 126 not executable; the message goes to stderr */
                        char line[512];
                        int n = snprintf(line, sizeof line, "sbx: cannot execute '%s': %s\n", h->spec.argv[0],
                                         strerror(e));
                        if (h->cb.output && !h->cancelled)
                                (void)h->cb.output(h->data, EXEC_STDERR, line,
                                                   (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
                        h->status = (e == ENOENT ? 127 : 126) << 8;
                        exec_finish(h, 0, NULL);
                        return;
                }
                exec_finish(h, sbx_err_setr(&err, e == EAGAIN ? -SBX_E_LIMIT : -SBX_E_INTERNAL,
                                            e == EAGAIN ? "limit_exceeded" : NULL,
                                            "cannot start the process in the sandbox: %s", strerror(e)),
                            &err);
                return;
        }
        h->phase = EXEC_RUNNING;
        /* no stdin: closing sbxd's end gives the process EOF at once, no pipe handle needed */
        if (h->spec.stdin_data && h->spec.stdin_len > 0)
                r = open_pipe(h, &h->in, TAKE_FD(msg->fds[0]), &h->in_open);
        else
                r = 0, msg->fds[0] = safe_close(msg->fds[0]);
        if (r >= 0)
                r = open_pipe(h, &h->out, TAKE_FD(msg->fds[1]), &h->out_open);
        if (r >= 0)
                r = open_pipe(h, &h->err, TAKE_FD(msg->fds[2]), &h->err_open);
        if (r < 0) {
                kill_tree(h);
                exec_finish(h, sbx_err_set(&err, -EIO, "cannot read the process's output: %s", uv_strerror(r)),
                            &err);
                return;
        }
        (void)uv_read_start((uv_stream_t *)&h->out, on_alloc, on_read);
        (void)uv_read_start((uv_stream_t *)&h->err, on_alloc, on_read);
        if (h->in_open) {
                uv_buf_t b = uv_buf_init(h->spec.stdin_data, (unsigned)h->spec.stdin_len);
                h->wreq.data = h;
                if (uv_write(&h->wreq, (uv_stream_t *)&h->in, &b, 1, on_stdin_written) < 0)
                        close_exec_handle(h, (uv_handle_t *)&h->in, &h->in_open);
        }
}

static void on_exited(struct exec_handle *h, const struct init_exited *ex)
{
        h->t_exited = now_usec();
        h->status = ex->status;
        h->exited = true;
        h->phase = EXEC_DRAINING;
        uv_timer_start(&h->timer, on_grace, EXEC_EXIT_GRACE_MS, 0);
        maybe_complete(h);
}

static struct exec_handle *find_exec(struct sandbox *sb, uint64_t seq)
{
        for (struct exec_handle *h = sb->execs; h; h = h->next)
                if (h->seq == seq)
                        return h;
        return NULL;
}

void exec__on_ctl_message(struct sandbox *sb, struct init_client_msg *msg)
{
        struct exec_handle *h = find_exec(sb, msg->id);

        switch (msg->type) {
        case INIT_SPAWNED:
                if (h && h->phase == EXEC_SPAWNING)
                        on_spawned(h, msg);
                break;
        case INIT_EXITED:
                if (h && (h->phase == EXEC_RUNNING || h->phase == EXEC_SPAWNING))
                        on_exited(h, &msg->exited);
                else if (!h && !process__owns_seq(sb, msg->id)) /* an exec from before an sbxd restart */
                        (void)init_client_send_release(sb->ctl_fd, msg->id);
                break;
        case INIT_LIST_REPLY:
                /* after a restart: processes started by the previous sbxd have no client left */
                for (uint32_t i = 0; i < msg->n_procs; i++)
                        if (!find_exec(sb, msg->procs[i].id) && msg->procs[i].exited &&
                            !process__owns_seq(sb, msg->procs[i].id))
                                (void)init_client_send_release(sb->ctl_fd, msg->procs[i].id);
                if (msg->n_procs > 0)
                        for (uint32_t i = 0; i < msg->n_procs; i++)
                                if (sb->exec_seq < msg->procs[i].id)
                                        sb->exec_seq = msg->procs[i].id;
                break;
        default:
                break;
        }
}

void exec__fail_all(struct sandbox *sb, const char *why)
{
        struct sbx_err err = { 0 };

        while (sb->execs) {
                struct exec_handle *h = sb->execs;
                if (h->phase == EXEC_SPAWNING) {
                        sbx_err_setr(&err, -SBX_E_CONFLICT, "invalid_state", "%s", why);
                        exec_finish(h, err.code, &err);
                        sbx_err_clear(&err);
                        continue;
                }
                /* the process died with the sandbox: report it as killed */
                if (!h->exited)
                        h->status = SIGKILL;
                close_exec_handle(h, (uv_handle_t *)&h->out, &h->out_open);
                close_exec_handle(h, (uv_handle_t *)&h->err, &h->err_open);
                exec_finish(h, 0, NULL);
        }
}

int exec__group_take(struct sandbox *sb, uint64_t seq, uint64_t *ret_group, int *ret_fd)
{
        struct manager *m = sb->m;
        uint64_t group;
        int r;

        *ret_group = 0;
        if (!cgroup_has_exec_groups(&m->cg))
                return 0;
        group = sb->n_free_groups > 0 ? sb->free_groups[--sb->n_free_groups] : seq;
        r = cgroup_exec_open(&m->cg, sb->rec.id, group, SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE, ret_fd);
        if (r < 0)
                return r;
        *ret_group = group;
        return 0;
}

void exec__group_put(struct sandbox *sb, uint64_t group, bool killed)
{
        struct manager *m = sb->m;

        /* an empty group goes back to the pool (or away); one with leftover background
         * processes stays until the sandbox stops */
        if (!group || cgroup_exec_populated(&m->cg, sb->rec.id, group))
                return;
        /* a group that was killed may still be killing (cgroup.kill also kills whatever forks into
         * it meanwhile): remove it instead of reusing it */
        if (!killed && sb->n_free_groups < EXEC_GROUP_POOL)
                sb->free_groups[sb->n_free_groups++] = group;
        else
                (void)cgroup_exec_remove(&m->cg, sb->rec.id, group);
}

char **exec__build_env(const struct sandbox *sb, const struct exec_spec *spec, const char *const *extra,
                       size_t n_extra)
{
        static const char *const defaults[] = {
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root",
                "LANG=C.UTF-8",
        };
        size_t n = ELEMENTSOF(defaults) + n_extra + sb->spec.n_env + spec->n_env, k = 0;
        char **env = calloc(n + 1, sizeof *env);

        if (!env)
                return NULL;
        /* later entries override earlier ones with the same name */
        const char *const *lists[4] = { defaults, extra, (const char *const *)sb->spec.env,
                                        (const char *const *)spec->env };
        size_t counts[4] = { ELEMENTSOF(defaults), n_extra, sb->spec.n_env, spec->n_env };
        for (int l = 0; l < 4; l++)
                for (size_t i = 0; i < counts[l]; i++) {
                        const char *e = lists[l][i];
                        size_t klen = strcspn(e, "=");
                        size_t j;
                        for (j = 0; j < k; j++)
                                if (strncmp(env[j], e, klen) == 0 && env[j][klen] == '=')
                                        break;
                        env[j] = (char *)e;
                        if (j == k)
                                k++;
                }
        env[k] = NULL;
        return env;
}

int manager_exec(struct manager *m, const char *id, struct exec_spec *spec, const struct exec_callbacks *cb,
                 void *data, struct exec_handle **ret, struct sbx_err *err)
{
        struct sandbox *sb = sbx_id_valid("sbx_", id) ? manager__find(m, id) : NULL;
        _cleanup_free_ char **env = NULL;
        _cleanup_close_ int cg_fd = -EBADF;
        struct exec_handle *h;
        int r;

        if (!sb)
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "sandbox_not_found", "sandbox '%.64s' not found", id);
        if (sb->rec.state != SANDBOX_RUNNING || sb->ctl_fd < 0 || (sb->op && sb->op->kind != OP_CREATE))
                return manager__not_running_error(sb, err);
        if (!spec->timeout_given && sb->spec.execution_s)
                spec->timeout_s = sb->spec.execution_s;
        if (sb->n_execs >= SBX_MAX_EXECS_PER_SANDBOX)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded",
                                    "sandbox '%s' already runs %d commands at once", sb->rec.id,
                                    SBX_MAX_EXECS_PER_SANDBOX);
        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        env = exec__build_env(sb, spec, NULL, 0);
        if (!env) {
                free(h);
                return -ENOMEM;
        }
        h->seq = ++sb->exec_seq;
        r = exec__group_take(sb, h->seq, &h->group, &cg_fd);
        if (r < 0) {
                free(h);
                return sbx_err_set(err, r, "cannot create the command's cgroup: %s", strerror(-r));
        }
        if (!spec->cwd_given && sb->spec.workdir[0])
                snprintf(spec->cwd, sizeof spec->cwd, "%s", sb->spec.workdir);
        r = init_client_send_spawn(sb->ctl_fd, h->seq, spec->argv, env, spec->cwd,
                                   &(struct init_spawn_opts){ .cgroup_fd = cg_fd });
        if (r < 0) {
                exec__group_put(sb, h->group, false);
                free(h);
                return sbx_err_set(err, r == -EAGAIN ? -SBX_E_LIMIT : r, "cannot send the command to sbx-init: %s",
                                   strerror(-r));
        }
        /* from here the handle owns the spec */
        h->spec = *spec;
        memset(spec, 0, sizeof *spec);
        h->sb = sb;
        sandbox_ref(sb);
        h->cb = *cb;
        h->data = data;
        h->t0 = now_usec();
        uv_timer_init(m->loop, &h->timer);
        h->timer.data = h;
        h->handles = 1;
        uv_timer_start(&h->timer, on_timeout, h->spec.timeout_s * 1000, 0);
        h->next = sb->execs;
        sb->execs = h;
        sb->n_execs++;
        uv_timer_stop(&sb->idle_timer);
        if (ret)
                *ret = h;
        return 0;
}
