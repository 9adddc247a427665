// SPDX-License-Identifier: Apache-2.0
/*
 * Processes (process.h): start through sbx-init, pump their pipes (or terminal) into stream logs,
 * tell listeners, enforce timeouts and the keep-after-disconnect rules, and report the exit. What
 * is kept (records, listing, recovery after an sbxd restart) is in process-store.c. Loop thread
 * only.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "files/files.h"
#include "process-internal.h"

#define PUMP_BUDGET (4u << 20)     /* bytes moved per readiness event before the loop gets a turn */
#define PUMP_CHUNK (1u << 20)      /* one splice */
#define PIPE_BYTES (1 << 20)       /* pipe capacity asked for: fewer wakeups at high rates */
#define EXIT_GRACE_MS 100          /* after the exit, wait this long for the pipes' last bytes */

static const char *const status_names[_PROCESS_STATUS_MAX] = {
        [PROCESS_STARTING] = "starting",
        [PROCESS_RUNNING] = "running",
        [PROCESS_EXITED] = "exited",
        [PROCESS_KILLED] = "killed",
        [PROCESS_TIMEOUT] = "timeout",
};

const char *process_status_to_string(enum process_status s)
{
        return s >= 0 && s < _PROCESS_STATUS_MAX ? status_names[s] : "unknown";
}

const char *process_stream_to_string(enum process_stream s)
{
        return s == PROCESS_STDOUT ? "stdout" : s == PROCESS_STDERR ? "stderr" : "unknown";
}

/* ---------- references and handles ---------- */

static void process_maybe_free(struct process *p)
{
        if (p->refs > 0 || p->handles > 0)
                return;
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                stream_close(&p->s[i].log);
        json_decref(p->info);
        sandbox_unref(p->sb);
        free(p);
}

void process_ref(struct process *p)
{
        p->refs++;
}

void process_unref(struct process *p)
{
        if (!p)
                return;
        assert(p->refs > 0);
        p->refs--;
        process_maybe_free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
        struct process *p = h->data;

        p->handles--;
        process_maybe_free(p);
}

static void close_handle(struct process *p, uv_handle_t *h, bool *init)
{
        if (!*init)
                return;
        *init = false;
        if (uv_is_closing(h))
                return;
        h->data = p;
        uv_close(h, on_handle_closed);
}

static int init_timer(struct process *p, uv_timer_t *t, bool *init)
{
        int r = uv_timer_init(p->sb->m->loop, t);

        if (r < 0)
                return r;
        t->data = p;
        p->handles++;
        *init = true;
        return 0;
}

/* ---------- listeners ---------- */

void process_listen(struct process *p, struct process_listener *l)
{
        l->p = p;
        l->next = p->listeners;
        p->listeners = l;
        process_ref(p);
        if (l->attached) {
                p->n_attached++;
                p->sb->n_attached++;
                p->had_attached = true;
                if (p->detach_init && !p->cancelled)
                        (void)uv_timer_stop(&p->detach_timer);
        }
}

static void on_detached_too_long(uv_timer_t *t);

/* The last attached client left: apply keepAfterDisconnect / maxRunAfterDisconnect. */
static void process_detached(struct process *p)
{
        if (p->status != PROCESS_RUNNING || p->n_attached > 0 || p->cancelled)
                return;
        if (!p->keep_after_disconnect) {
                /* like a terminal closing: only once someone was there */
                if (p->had_attached)
                        process__kill_tree(p);
                return;
        }
        if (p->max_run_s >= 0 && p->detach_init)
                (void)uv_timer_start(&p->detach_timer, on_detached_too_long, (uint64_t)p->max_run_s * 1000, 0);
}

void process_unlisten(struct process_listener *l)
{
        struct process *p = l->p;

        if (!p)
                return;
        for (struct process_listener **pp = &p->listeners; *pp; pp = &(*pp)->next)
                if (*pp == l) {
                        *pp = l->next;
                        break;
                }
        if (p->notify_next == l)
                p->notify_next = l->next;
        l->p = NULL;
        l->next = NULL;
        if (l->attached) {
                p->n_attached--;
                p->sb->n_attached--;
                sandbox__idle_touch(p->sb); /* the idle clock starts when the last client leaves */
                if (p->n_attached == 0)
                        process_detached(p);
        }
        process_unref(p);
}

void process__notify(struct process *p, unsigned events)
{
        process_ref(p);
        for (struct process_listener *l = p->listeners; l; l = p->notify_next) {
                /* a listener may leave (or make another leave) from inside its callback */
                p->notify_next = l->next;
                l->notify(l, events);
        }
        p->notify_next = NULL;
        process_unref(p);
}

/* ---------- reading output ---------- */

static void source_close(struct process *p, struct pstream *ps)
{
        if (ps->poll_init) {
                (void)uv_poll_stop(&ps->poll);
                close_handle(p, (uv_handle_t *)&ps->poll, &ps->poll_init);
        }
        ps->fd = safe_close(ps->fd);
}

/* A pipe with no byte in it is readable only once every writer closed it. */
static bool pipe_hung_up(int fd)
{
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLHUP);
}

/* Move what the source holds into the log; true if anything came. Closes the source at its end. */
static bool pump(struct process *p, struct pstream *ps)
{
        static char buf[PUMP_CHUNK / 4];
        size_t moved = 0;

        while (ps->fd >= 0 && moved < PUMP_BUDGET) {
                ssize_t n;
                int r;

                if (p->pty) {
                        do
                                n = read(ps->fd, buf, sizeof buf);
                        while (n < 0 && errno == EINTR);
                        if (n < 0)
                                n = errno == EAGAIN ? -EAGAIN : -errno;
                        if (n > 0 && ps->log.fd < 0 && (r = process__log_create(p, PROCESS_STDOUT)) < 0) {
                                log_warn("process %s: cannot create its output log: %s", p->id, strerror(-r));
                                n = r;
                        } else if (n > 0) {
                                ssize_t w = stream_append(&ps->log, buf, (size_t)n);
                                if (w < 0)
                                        log_warn("process %s: cannot write its output log: %s", p->id,
                                                 strerror((int)-w));
                        }
                } else if (ps->log.fd < 0) {
                        /* no log yet: made once there is a byte for it; readable and empty is the end */
                        int avail = 0;
                        if (ioctl(ps->fd, FIONREAD, &avail) < 0 || avail <= 0)
                                n = pipe_hung_up(ps->fd) ? 0 : -EAGAIN;
                        else if ((r = process__log_create(p, (enum process_stream)(ps - p->s))) < 0) {
                                log_warn("process %s: cannot create its output log: %s", p->id, strerror(-r));
                                n = r;
                        } else
                                continue;
                } else
                        n = stream_splice(&ps->log, ps->fd, PUMP_CHUNK);
                if (n > 0) {
                        moved += (size_t)n;
                        continue;
                }
                if (n == -EAGAIN)
                        break;
                /* end of file; or EIO: a terminal whose every user is gone */
                if (n < 0 && n != -EIO)
                        log_debug("process %s: reading its output: %s", p->id, strerror((int)-n));
                source_close(p, ps);
        }
        return moved > 0;
}

static void maybe_finish(struct process *p);

/* Take what the pipes hold now, stop reading, and finish once the exit is known. */
static void drain_and_finish(struct process *p)
{
        bool more = false;

        /* background children still hold the pipes: take what is there and stop reading */
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++) {
                more |= pump(p, &p->s[i]);
                source_close(p, &p->s[i]);
        }
        if (more)
                process__notify(p, PROCESS_EV_DATA);
        maybe_finish(p);
}

static void on_grace(uv_timer_t *t)
{
        drain_and_finish(t->data);
}

static void on_readable(uv_poll_t *h, int status, int events)
{
        struct pstream *ps = h->data;
        struct process *p = ps->p;

        process_ref(p);
        if (pump(p, ps))
                process__notify(p, PROCESS_EV_DATA);
        if (p->exited && p->grace_init)
                (void)uv_timer_start(&p->grace_timer, on_grace, EXIT_GRACE_MS, 0);
        maybe_finish(p);
        process_unref(p);
}

static int source_open(struct process *p, struct pstream *ps, int fd)
{
        int r;

        ps->fd = fd;
        ps->p = p;
        if (!p->pty)
                (void)fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES); /* best effort */
        r = uv_poll_init(p->sb->m->loop, &ps->poll, fd);
        if (r < 0)
                return r;
        ps->poll.data = ps;
        p->handles++;
        ps->poll_init = true;
        return uv_poll_start(&ps->poll, UV_READABLE, on_readable);
}

/* ---------- stdin ---------- */

struct stdin_write {
        uv_write_t req;
        struct stdin_write *next;   /* while it waits for an adoption (process__stdin_flush) */
        struct process *p;
        size_t len;
        void (*done)(void *data, int r);
        void *data;
        char buf[];
};

static void on_stdin_written(uv_write_t *w, int status)
{
        struct stdin_write *sw = (struct stdin_write *)w;
        struct process *p = sw->p;

        p->in_queued -= sw->len;
        if (sw->done)
                sw->done(sw->data, status < 0 ? -EPIPE : 0);
        free(sw);
        process_unref(p);
}

static void stdin_close_handle(struct process *p)
{
        close_handle(p, (uv_handle_t *)&p->in, &p->in_init);
        p->in_fd = -EBADF; /* the handle owned it */
}

static int stdin_send(struct process *p, struct stdin_write *sw)
{
        uv_buf_t b = uv_buf_init(sw->buf, (unsigned)sw->len);

        return uv_write(&sw->req, (uv_stream_t *)&p->in, &b, 1, on_stdin_written);
}

int process_write_stdin(struct process *p, const void *buf, size_t len, void (*done)(void *data, int r), void *data,
                        struct sbx_err *err)
{
        struct stdin_write *sw;
        int r;

        /* after an sbxd restart the pipe comes back a moment later (adoption): the bytes wait */
        if (p->status != PROCESS_RUNNING || p->stdin_closed || (!p->in_init && !p->adopting))
                return sbx_err_setr(err, -SBX_E_CONFLICT, "stdin_closed", "the stdin of process '%s' is closed",
                                    p->id);
        if (len > SBX_MAX_STDIN_QUEUE || p->in_queued + len > SBX_MAX_STDIN_QUEUE)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded",
                                    "more than %d bytes wait for process '%s' to read its stdin",
                                    SBX_MAX_STDIN_QUEUE, p->id);
        sw = malloc(sizeof *sw + len);
        if (!sw)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        memcpy(sw->buf, buf, len);
        sw->next = NULL;
        sw->p = p;
        sw->len = len;
        sw->done = done;
        sw->data = data;
        if (p->in_init) {
                r = stdin_send(p, sw);
                if (r < 0) {
                        free(sw);
                        return sbx_err_setr(err, -SBX_E_CONFLICT, "stdin_closed",
                                            "the stdin of process '%s' is closed: %s", p->id, uv_strerror(r));
                }
        } else {
                struct stdin_write **pp = &p->stdin_waiting;
                while (*pp)
                        pp = &(*pp)->next;
                *pp = sw;
        }
        p->in_queued += len;
        process_ref(p);
        return 0;
}

void process__stdin_flush(struct process *p)
{
        while (p->stdin_waiting) {
                struct stdin_write *sw = p->stdin_waiting;
                p->stdin_waiting = sw->next;
                if (!p->in_init || stdin_send(p, sw) < 0)
                        on_stdin_written(&sw->req, UV_EPIPE);
        }
}

int process_close_stdin(struct process *p, struct sbx_err *err)
{
        if (p->stdin_closed || p->status != PROCESS_RUNNING)
                return 0;
        if (p->pty) {
                /* a terminal has no end of file of its own: the line discipline's EOF character */
                static const char eof = 4;
                return process_write_stdin(p, &eof, 1, NULL, NULL, err);
        }
        p->stdin_closed = true;
        /* uv_close would cancel writes still queued: a shutdown lets them out first */
        if (p->in_init && !uv_is_closing((uv_handle_t *)&p->in)) {
                uv_shutdown_t *sd = calloc(1, sizeof *sd);
                if (sd) {
                        sd->data = p;
                        process_ref(p);
                        if (uv_shutdown(sd, (uv_stream_t *)&p->in, process__on_stdin_shutdown) == 0)
                                return process__forget_kept_stdin(p);
                        process_unref(p);
                        free(sd);
                }
                stdin_close_handle(p);
        }
        return process__forget_kept_stdin(p);
}

void process__on_stdin_shutdown(uv_shutdown_t *sd, int status)
{
        struct process *p = sd->data;

        free(sd);
        stdin_close_handle(p);
        process_unref(p);
}

int process__stdin_open(struct process *p, int fd)
{
        int r = uv_pipe_init(p->sb->m->loop, &p->in, 0);

        if (r < 0) {
                safe_close(fd);
                return r;
        }
        p->in.data = p;
        p->handles++;
        p->in_init = true;
        r = uv_pipe_open(&p->in, fd);
        if (r < 0) {
                safe_close(fd);
                stdin_close_handle(p);
                return r;
        }
        p->in_fd = fd;
        return 0;
}

int process_resize(struct process *p, unsigned cols, unsigned rows, struct sbx_err *err)
{
        struct winsize ws = { .ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols };

        if (!p->pty)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "not_a_terminal", "process '%s' has no terminal", p->id);
        if (cols < 1 || rows < 1 || cols > SBX_MAX_PTY_SIZE || rows > SBX_MAX_PTY_SIZE)
                return sbx_err_setr(err, -SBX_E_INVALID, "out_of_range", "'cols' and 'rows' must be 1..%d",
                                    SBX_MAX_PTY_SIZE);
        if (p->status != PROCESS_RUNNING || p->s[PROCESS_STDOUT].fd < 0)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "process_not_running", "process '%s' is %s", p->id,
                                    process_status_to_string(p->status));
        if (ioctl(p->s[PROCESS_STDOUT].fd, TIOCSWINSZ, &ws) < 0)
                return sbx_err_set(err, -errno, "cannot resize the terminal of '%s': %m", p->id);
        p->cols = (uint16_t)cols;
        p->rows = (uint16_t)rows;
        return 0;
}

/* ---------- signals, timeouts, the end ---------- */

void process__kill_tree(struct process *p)
{
        struct sandbox *sb = p->sb;

        if (p->status != PROCESS_RUNNING && p->status != PROCESS_STARTING)
                return;
        p->killed = true;
        if ((!p->group || cgroup_exec_kill(&sb->m->cg, sb->rec.id, p->group) < 0) && sb->ctl_fd >= 0)
                (void)init_client_send_signal(sb->ctl_fd, p->seq, SIGKILL);
}

int process_signal(struct process *p, int signo, struct sbx_err *err)
{
        struct sandbox *sb = p->sb;
        int r;

        if (p->status != PROCESS_RUNNING)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "process_not_running", "process '%s' is %s", p->id,
                                    process_status_to_string(p->status));
        if (signo == SIGKILL) {
                process__kill_tree(p);
                return 0;
        }
        if (sb->ctl_fd < 0)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "invalid_state", "sandbox '%s' cannot be reached",
                                    sb->rec.id);
        r = init_client_send_signal(sb->ctl_fd, p->seq, signo);
        if (r < 0)
                return sbx_err_set(err, r, "cannot signal process '%s': %s", p->id, strerror(-r));
        return 0;
}

void process__on_timeout(uv_timer_t *t)
{
        struct process *p = t->data;

        if (p->status != PROCESS_RUNNING && p->status != PROCESS_STARTING)
                return;
        p->timed_out = true;
        process__kill_tree(p);
}

static void on_detached_too_long(uv_timer_t *t)
{
        process__kill_tree(t->data);
}

int process_stop(struct process *p, unsigned grace_ms, struct sbx_err *err)
{
        int r;

        if (p->status != PROCESS_RUNNING)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "process_not_running", "process '%s' is %s", p->id,
                                    process_status_to_string(p->status));
        p->cancelled = true;
        r = grace_ms ? process_signal(p, SIGTERM, err) : 0;
        if (r < 0 || !grace_ms || !p->detach_init) {
                process__kill_tree(p);
                return 0;
        }
        /* the same timer as maxRunAfterDisconnect: either way it ends in a kill */
        (void)uv_timer_start(&p->detach_timer, on_detached_too_long, grace_ms, 0);
        return 0;
}

bool process_cancelled(const struct process *p)
{
        return p->cancelled;
}

/* The process is gone and its output is in the logs: record how it ended, tell everyone. */
static void process_finish(struct process *p)
{
        struct sandbox *sb = p->sb;
        int st = p->wait_status;

        if (p->finished)
                return;
        p->finished = true;
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                source_close(p, &p->s[i]);
        if (p->in_init)
                stdin_close_handle(p);
        process__stdin_flush(p); /* what waited for an adoption that never came fails */
        p->stdin_closed = true;
        if (p->timer_init)
                (void)uv_timer_stop(&p->timer);
        if (p->detach_init)
                (void)uv_timer_stop(&p->detach_timer);
        if (p->lost) {
                p->status = PROCESS_KILLED;
                p->exit_code = -1;
                p->signal = 0;
        } else if (WIFEXITED(st)) {
                p->status = PROCESS_EXITED;
                p->exit_code = WEXITSTATUS(st);
        } else {
                p->signal = WIFSIGNALED(st) ? WTERMSIG(st) : SIGKILL;
                p->exit_code = 128 + p->signal;
                if (p->signal == SIGKILL && !p->timed_out && !p->killed)
                        (void)manager__check_oom(sb, p->id);
                p->status = p->timed_out ? PROCESS_TIMEOUT : PROCESS_KILLED;
        }
        p->ended_ms = now_realtime_ms();
        if (sb->ctl_fd >= 0)
                (void)init_client_send_release(sb->ctl_fd, p->seq);
        if (!p->lost)
                exec__group_put(sb, p->group, p->killed);
        sb->n_procs_running--;
        process__save(p);
        sandbox__idle_touch(sb);
        process__notify(p, PROCESS_EV_END);
        if (p->done) {
                /* it ended before anyone was told it started (sbx-init refused it) */
                process_done_fn done = p->done;
                p->done = NULL;
                done(p->done_data, 0, NULL, process_to_json(p));
        }
        process__evict(sb);
}

static void maybe_finish(struct process *p)
{
        if (p->finished || !p->exited)
                return;
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                if (p->s[i].fd >= 0)
                        return;
        process_finish(p);
}

void process__exited(struct process *p, int wait_status)
{
        if (p->exited)
                return;
        p->exited = true;
        p->wait_status = wait_status;
        /* what the pipes hold now is the process's; a background child may add more for a while */
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                if (pump(p, &p->s[i]))
                        process__notify(p, PROCESS_EV_DATA);
        if (p->grace_init)
                (void)uv_timer_start(&p->grace_timer, on_grace, EXIT_GRACE_MS, 0);
        maybe_finish(p);
}

void process__end_now(struct process *p, int wait_status)
{
        process__exited(p, wait_status);
        if (!p->finished)
                drain_and_finish(p);
}

void process__lost(struct process *p)
{
        p->lost = true;
        process__end_now(p, SIGKILL);
}

/* ---------- starting ---------- */

bool process_is_pty(const struct process *p)
{
        return p->pty;
}

int process__attach_fds(struct process *p, int in_fd, int out_fd, int err_fd)
{
        int r = 0;

        if (in_fd >= 0)
                r = process__stdin_open(p, in_fd);
        if (out_fd >= 0) {
                int q = source_open(p, &p->s[PROCESS_STDOUT], out_fd);
                if (r >= 0)
                        r = q;
        }
        if (err_fd >= 0) {
                int q = source_open(p, &p->s[PROCESS_STDERR], err_fd);
                if (r >= 0)
                        r = q;
        }
        return r;
}

/* sbx-init answered the spawn. */
void process__spawned(struct process *p, struct init_client_msg *msg)
{
        struct sbx_err err = { 0 };
        int r, in_fd = -EBADF, out_fd, err_fd = -EBADF;

        if (msg->spawned.error) {
                int e = msg->spawned.error;
                if (msg->spawned.step == INIT_STEP_EXEC) {
                        /* like a shell: 127 not found, 126 not executable; the reason goes to stderr */
                        char line[512];
                        int n = snprintf(line, sizeof line, "sbx: cannot execute '%s': %s\n", p->argv0, strerror(e));
                        enum process_stream s = p->pty ? PROCESS_STDOUT : PROCESS_STDERR;
                        if (process__log_create(p, s) >= 0)
                                (void)stream_append(&p->s[s].log, line,
                                                    (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
                        p->status = PROCESS_RUNNING; /* for process_finish's bookkeeping */
                        p->sb->n_procs_running++;
                        p->exited = true;
                        p->wait_status = (e == ENOENT ? 127 : 126) << 8;
                        process_finish(p);
                        return;
                }
                if (msg->spawned.step == INIT_STEP_CWD)
                        sbx_err_setr(&err, -SBX_E_INVALID, "invalid_value",
                                     "'cwd' '%s' cannot be entered in the sandbox: %s", p->cwd, strerror(e));
                else
                        sbx_err_setr(&err, e == EAGAIN ? -SBX_E_LIMIT : -SBX_E_INTERNAL,
                                     e == EAGAIN ? "limit_exceeded" : NULL, "cannot start the process: %s",
                                     strerror(e));
                process__start_failed(p, &err);
                return;
        }
        p->pid = msg->spawned.pid;
        p->status = PROCESS_RUNNING;
        p->sb->n_procs_running++;
        if (p->pty) {
                out_fd = TAKE_FD(msg->fds[0]);
                in_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3); /* the write side: its own uv handle */
                if (in_fd < 0)
                        in_fd = -EBADF;
        } else {
                in_fd = TAKE_FD(msg->fds[0]);
                out_fd = TAKE_FD(msg->fds[1]);
                err_fd = TAKE_FD(msg->fds[2]);
        }
        r = process__attach_fds(p, in_fd, out_fd, err_fd);
        if (r < 0)
                log_warn("process %s: cannot watch its pipes: %s", p->id, uv_strerror(r));
        /* no stdin asked for: the process reads end of file at once */
        if (!p->pty && !p->stdin_keep) {
                if (p->stdin_data) {
                        struct sbx_err e = { 0 };
                        (void)process_write_stdin(p, p->stdin_data, p->stdin_len, NULL, NULL, &e);
                }
                (void)process_close_stdin(p, &(struct sbx_err){ 0 });
        }
        free(p->stdin_data);
        p->stdin_data = NULL;
        if (p->timeout_s && p->timer_init)
                (void)uv_timer_start(&p->timer, process__on_timeout, (uint64_t)p->timeout_s * 1000, 0);
        if (p->n_attached == 0)
                process_detached(p);
        /* answer first: the record's update (pid, running) is off the caller's critical path */
        if (p->done) {
                process_done_fn done = p->done;
                p->done = NULL;
                done(p->done_data, 0, NULL, process_to_json(p));
        }
        process__save(p);
}

int process__timers_init(struct process *p)
{
        int r = init_timer(p, &p->timer, &p->timer_init);

        if (r >= 0)
                r = init_timer(p, &p->grace_timer, &p->grace_init);
        if (r >= 0)
                r = init_timer(p, &p->detach_timer, &p->detach_init);
        return r;
}

/* Close every handle: the sandbox is going away from this sbxd (delete, or sbxd shutting down). */
void process__close(struct process *p)
{
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                source_close(p, &p->s[i]);
        if (p->in_init)
                stdin_close_handle(p);
        close_handle(p, (uv_handle_t *)&p->timer, &p->timer_init);
        close_handle(p, (uv_handle_t *)&p->grace_timer, &p->grace_init);
        close_handle(p, (uv_handle_t *)&p->detach_timer, &p->detach_init);
}
