// SPDX-License-Identifier: Apache-2.0
/*
 * Processes (process.h), the kept side: starting one (its record, logs and cgroup), its JSON, its
 * store row, listing and lookup, dropping old ones, sbx-init's messages about them, and adopting
 * them again after an sbxd restart (DESIGN §1: the previous sbxd's processes keep running; their
 * output waited in the pipes, which sbx-init kept open). Loop thread only.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "files/files.h"
#include "process-internal.h"

#define STREAMS_DIR "streams"

/* ---------- signals by name ---------- */

static const char *const signal_names[] = {
        [SIGHUP] = "HUP",   [SIGINT] = "INT",       [SIGQUIT] = "QUIT", [SIGILL] = "ILL",   [SIGTRAP] = "TRAP",
        [SIGABRT] = "ABRT", [SIGBUS] = "BUS",       [SIGFPE] = "FPE",   [SIGKILL] = "KILL", [SIGUSR1] = "USR1",
        [SIGSEGV] = "SEGV", [SIGUSR2] = "USR2",     [SIGPIPE] = "PIPE", [SIGALRM] = "ALRM", [SIGTERM] = "TERM",
        [SIGSTKFLT] = "STKFLT", [SIGCHLD] = "CHLD", [SIGCONT] = "CONT", [SIGSTOP] = "STOP", [SIGTSTP] = "TSTP",
        [SIGTTIN] = "TTIN", [SIGTTOU] = "TTOU",     [SIGURG] = "URG",   [SIGXCPU] = "XCPU", [SIGXFSZ] = "XFSZ",
        [SIGVTALRM] = "VTALRM", [SIGPROF] = "PROF", [SIGWINCH] = "WINCH", [SIGIO] = "IO",   [SIGPWR] = "PWR",
        [SIGSYS] = "SYS",
};

const char *signal_to_name(int signo)
{
        static char names[ELEMENTSOF(signal_names)][12];

        if (signo <= 0 || (size_t)signo >= ELEMENTSOF(signal_names) || !signal_names[signo])
                return NULL;
        if (!names[signo][0])
                snprintf(names[signo], sizeof names[signo], "SIG%s", signal_names[signo]);
        return names[signo];
}

int signal_parse(const char *field, const char *s, int *ret, struct sbx_err *err)
{
        const char *name = s;

        if (s[0] >= '0' && s[0] <= '9') {
                char *end;
                unsigned long v = strtoul(s, &end, 10);
                if (*end || v < 1 || v > 64)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' must be a signal 1..64",
                                            field);
                *ret = (int)v;
                return 0;
        }
        if (strncasecmp(name, "SIG", 3) == 0)
                name += 3;
        for (size_t i = 1; i < ELEMENTSOF(signal_names); i++)
                if (signal_names[i] && strcasecmp(name, signal_names[i]) == 0) {
                        *ret = (int)i;
                        return 0;
                }
        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' is not a signal name like SIGTERM or KILL",
                            field);
}

/* ---------- JSON and the store ---------- */

const char *process_id(const struct process *p)
{
        return p->id;
}

const char *process_kind(const struct process *p)
{
        return p->kind;
}

enum process_status process_status(const struct process *p)
{
        return p->status;
}

bool process_ended(const struct process *p)
{
        return p->finished;
}

bool process_has_stream(const struct process *p, enum process_stream s)
{
        return s == PROCESS_STDOUT || (s == PROCESS_STDERR && !p->pty);
}

void process_stream_range(const struct process *p, enum process_stream s, uint64_t *start, uint64_t *end)
{
        *start = p->s[s].log.start;
        *end = p->s[s].log.end;
}

static int streams_dir(struct sandbox *sb, bool create)
{
        _cleanup_close_ int dfd = open(sb->dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        int fd;

        if (dfd < 0)
                return -errno;
        if (create && mkdirat(dfd, STREAMS_DIR, 0700) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(dfd, STREAMS_DIR, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        return fd < 0 ? -errno : fd;
}

static void log_name(const struct process *p, enum process_stream s, char *buf, size_t size)
{
        snprintf(buf, size, "%s.%s", p->id, process_stream_to_string(s));
}

/* Open the logs that exist (a process that wrote nothing to a stream has none: it reads as empty). */
static int logs_open(struct process *p)
{
        _cleanup_close_ int dfd = streams_dir(p->sb, false);
        uint64_t cap = p->sb->m->stream_log_bytes;
        char name[64];

        if (dfd == -ENOENT)
                return 0;
        if (dfd < 0)
                return dfd;
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++) {
                if (!process_has_stream(p, i) || p->s[i].log.fd >= 0)
                        continue;
                log_name(p, i, name, sizeof name);
                int r = stream_open(&p->s[i].log, dfd, name, cap, false);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

/* A stream's log is made when its first byte comes: most commands leave one of their streams (or
 * both) empty, and a start then costs no file creation. */
int process__log_create(struct process *p, enum process_stream s)
{
        _cleanup_close_ int dfd = streams_dir(p->sb, true);
        char name[64];
        int r;

        if (dfd < 0)
                return dfd;
        log_name(p, s, name, sizeof name);
        r = stream_open(&p->s[s].log, dfd, name, p->sb->m->stream_log_bytes, true);
        if (r == -EEXIST)
                r = stream_open(&p->s[s].log, dfd, name, p->sb->m->stream_log_bytes, false);
        return r;
}

static void logs_close(struct process *p)
{
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                stream_close(&p->s[i].log);
}

static void logs_remove(struct process *p)
{
        _cleanup_close_ int dfd = streams_dir(p->sb, false);
        char name[64];

        logs_close(p);
        for (int i = 0; dfd >= 0 && i < _PROCESS_STREAM_MAX; i++) {
                log_name(p, i, name, sizeof name);
                (void)unlinkat(dfd, name, 0);
        }
}

ssize_t process_read(struct process *p, enum process_stream s, uint64_t off, void *buf, size_t len)
{
        if (!process_has_stream(p, s))
                return -ENOENT;
        if (p->s[s].log.fd < 0 && p->s[s].log.end > 0) {
                int r = logs_open(p);
                if (r < 0)
                        return r;
        }
        return stream_read(&p->s[s].log, off, buf, len);
}

/* The record's fields: what the API shows plus the starter's private ones ('_' keys). */
static json_t *process_record(const struct process *p, bool private)
{
        json_t *o = json_copy(p->info), *streams = json_object();
        const char *sig = p->finished ? signal_to_name(p->signal) : NULL;
        const char *k;
        json_t *v;
        void *it;

        if (!o || !streams) {
                json_decref(o);
                json_decref(streams);
                return NULL;
        }
        json_object_set_new(o, "processId", json_string(p->id));
        json_object_set_new(o, "pid", p->pid > 0 ? json_integer(p->pid) : json_null());
        json_object_set_new(o, "kind", json_string(p->kind));
        json_object_set_new(o, "status", json_string(process_status_to_string(p->status)));
        json_object_set_new(o, "exitCode", p->finished && p->exit_code >= 0 ? json_integer(p->exit_code) : json_null());
        json_object_set_new(o, "signal", sig ? json_string(sig) : json_null());
        json_object_set_new(o, "startedAt", json_time_ms(p->started_ms));
        json_object_set_new(o, "endedAt", json_time_ms(p->ended_ms));
        json_object_set_new(o, "durationMs",
                            p->ended_ms ? json_integer((json_int_t)(p->ended_ms - p->started_ms)) : json_null());
        json_object_set_new(o, "stdinOpen", json_boolean(p->status == PROCESS_RUNNING && !p->stdin_closed &&
                                                         (p->in_init || p->adopting)));
        json_object_set_new(o, "attached", json_integer(p->n_attached));
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++) {
                if (!process_has_stream(p, i))
                        continue;
                json_object_set_new(streams, p->pty ? "pty" : process_stream_to_string(i),
                                    json_pack("{s:I,s:I}", "start", (json_int_t)p->s[i].log.start, "end",
                                              (json_int_t)p->s[i].log.end));
        }
        json_object_set_new(o, "streams", streams);
        if (p->pty)
                json_object_set_new(o, "pty", json_pack("{s:i,s:i}", "cols", p->cols, "rows", p->rows));
        if (!private)
                json_object_foreach_safe (o, it, k, v)
                        if (k[0] == '_')
                                json_object_del(o, k);
        return o;
}

json_t *process_to_json(const struct process *p)
{
        return process_record(p, false);
}

const json_t *process_meta(const struct process *p)
{
        return p->info;
}

void process__save(struct process *p)
{
        struct store *st = p->sb->m->store;
        struct sbx_err err = { 0 };
        json_t *o = process_record(p, true);
        _cleanup_free_ char *text = NULL;

        if (!o)
                return;
        json_object_set_new(o, "seq", json_integer((json_int_t)p->seq));
        json_object_set_new(o, "group", json_integer((json_int_t)p->group));
        json_object_set_new(o, "startedMs", json_integer((json_int_t)p->started_ms));
        json_object_set_new(o, "endedMs", json_integer((json_int_t)p->ended_ms));
        json_object_set_new(o, "signalNumber", json_integer(p->signal));
        json_object_set_new(o, "stdinKept", json_boolean(p->stdin_keep && !p->stdin_closed));
        json_object_set_new(o, "cancelled", json_boolean(p->cancelled));
        text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!text)
                return;
        struct process_row row = { .seq = p->seq, .data_json = text };
        snprintf(row.id, sizeof row.id, "%s", p->id);
        snprintf(row.sandbox_id, sizeof row.sandbox_id, "%s", p->sb->rec.id);
        if (st->ops->process_put(st, &row, &err) < 0)
                log_warn("process %s: cannot save its record: %s", p->id, err.msg);
}

/* ---------- the sandbox's list ---------- */

static struct process *find_seq(struct sandbox *sb, uint64_t seq)
{
        for (struct process *p = sb->procs; p; p = p->next)
                if (p->seq == seq)
                        return p;
        return NULL;
}

bool process__owns_seq(struct sandbox *sb, uint64_t seq)
{
        return find_seq(sb, seq) != NULL;
}

static void list_append(struct sandbox *sb, struct process *p)
{
        struct process **pp = &sb->procs;

        while (*pp)
                pp = &(*pp)->next;
        *pp = p;
        sb->n_procs++;
}

static void list_remove(struct process *p)
{
        struct sandbox *sb = p->sb;

        for (struct process **pp = &sb->procs; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        sb->n_procs--;
                        return;
                }
}

/* Forget the oldest ended processes beyond SBX_MAX_PROCESSES_KEPT: their rows and their logs. */
void process__evict(struct sandbox *sb)
{
        struct store *st = sb->m->store;
        unsigned ended = 0;

        for (struct process *p = sb->procs; p; p = p->next)
                ended += p->finished;
        for (struct process *p = sb->procs, *next; p && ended > SBX_MAX_PROCESSES_KEPT; p = next) {
                next = p->next;
                if (!p->finished)
                        continue;
                ended--;
                list_remove(p);
                (void)st->ops->process_delete(st, p->id, NULL, &(struct sbx_err){ 0 });
                logs_remove(p);
                process__close(p);
                process_unref(p);
        }
}

int manager_process_list(struct manager *m, const char *id, const char *kind, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        json_t *arr, *o;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        arr = json_array();
        if (!arr)
                return -ENOMEM;
        for (struct process *p = sb->procs; p; p = p->next) {
                if (kind && strcmp(kind, p->kind) != 0)
                        continue;
                if (json_array_append_new(arr, process_to_json(p)) < 0) {
                        json_decref(arr);
                        return -ENOMEM;
                }
        }
        o = json_pack("{s:o}", "processes", arr);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

struct process *manager_process_find(struct manager *m, const char *id, const char *which, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct process *found = NULL;
        char *end;
        long pid = -1;

        if (!sb)
                return NULL;
        if (which[0] >= '1' && which[0] <= '9') {
                pid = strtol(which, &end, 10);
                if (*end || pid > INT32_MAX)
                        pid = -1;
        }
        for (struct process *p = sb->procs; p; p = p->next) {
                if (pid < 0 ? strcmp(p->id, which) == 0 : p->pid == pid) {
                        /* by pid: the running one, else the newest (later in the list) */
                        if (!found || found->finished)
                                found = p;
                }
        }
        if (!found) {
                sbx_err_setr(err, -SBX_E_NOT_FOUND, "process_not_found", "process '%.64s' not found in sandbox '%s'",
                             which, sb->rec.id);
                return NULL;
        }
        process_ref(found);
        return found;
}

/* ---------- starting ---------- */

/* The start failed after the process was listed: drop it and answer. */
void process__start_failed(struct process *p, const struct sbx_err *err)
{
        struct sandbox *sb = p->sb;
        struct store *st = sb->m->store;
        process_done_fn done = p->done;

        p->done = NULL;
        p->finished = true;
        list_remove(p);
        (void)st->ops->process_delete(st, p->id, NULL, &(struct sbx_err){ 0 });
        exec__group_put(sb, p->group, false);
        p->group = 0;
        logs_remove(p);
        process__close(p);
        if (done)
                done(p->done_data, err->code, err, NULL);
        process_unref(p);
}

int process__forget_kept_stdin(struct process *p)
{
        struct sandbox *sb = p->sb;

        if (!p->stdin_keep)
                return 0;
        p->stdin_keep = false;
        if (sb->ctl_fd >= 0)
                (void)init_client_send_close_stdin(sb->ctl_fd, p->seq);
        process__save(p);
        return 0;
}

/* The user to run as: uid, gid and home from the sandbox's /etc/passwd; *home_ok if that home is
 * a directory in the sandbox (else a process started without cwd starts in "/"). */
static int resolve_user(struct sandbox *sb, const char *user, struct files_user *ret, bool *home_ok,
                        struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF, dir = -EBADF;
        struct files_root root = { .fd = -EBADF };
        char path[64];
        int r;

        snprintf(path, sizeof path, "/proc/%d/root", (int)sb->rec.init_pid);
        fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot reach the root of sandbox '%s': %m", sb->rec.id);
        root.fd = fd;
        root.uid = root.base_uid = SBX_UID_BASE + sb->rec.uid_slot * SBX_UID_RANGE;
        root.gid = root.base_gid = root.uid;
        r = files_user_lookup(&root, user, ret, err);
        if (r < 0)
                return r;
        *home_ok = files_open(&root, ret->home, O_PATH | O_DIRECTORY, &dir, &(struct sbx_err){ 0 }) >= 0;
        return 0;
}

static json_t *info_json(const struct exec_spec *spec)
{
        json_t *argv = json_array(), *o;

        if (!argv)
                return NULL;
        for (size_t i = 0; i < spec->argc; i++)
                json_array_append_new(argv, json_string_utf8(spec->argv[i], strlen(spec->argv[i])));
        o = json_pack("{s:o,s:s,s:s?,s:s?,s:I,s:b,s:o}", "argv", argv, "cwd", spec->cwd, "user",
                      spec->user[0] ? spec->user : NULL, "tag", spec->tag[0] ? spec->tag : NULL, "timeout",
                      (json_int_t)spec->timeout_s, "keepAfterDisconnect", spec->keep_after_disconnect,
                      "maxRunAfterDisconnect",
                      spec->max_run_after_disconnect_s >= 0 ? json_integer(spec->max_run_after_disconnect_s)
                                                            : json_null());
        if (o && spec->meta && json_object_update(o, spec->meta) < 0) {
                json_decref(o);
                return NULL;
        }
        return o;
}

static int spawn(struct process *p, struct exec_spec *spec, const struct files_user *user, struct sbx_err *err)
{
        struct sandbox *sb = p->sb;
        _cleanup_close_ int cg_fd = -EBADF;
        _cleanup_free_ char **env = NULL;
        char home[sizeof user->home + 8], uname[sizeof user->name + 8], lname[sizeof user->name + 8];
        const char *extra[4];
        size_t n_extra = 0;
        int r;

        if (user) {
                snprintf(home, sizeof home, "HOME=%s", user->home);
                snprintf(uname, sizeof uname, "USER=%.255s", user->name);
                snprintf(lname, sizeof lname, "LOGNAME=%.255s", user->name);
                extra[n_extra++] = home;
                extra[n_extra++] = uname;
                extra[n_extra++] = lname;
        }
        if (p->pty)
                extra[n_extra++] = "TERM=xterm-256color";
        env = exec__build_env(sb, spec, extra, n_extra);
        if (!env)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        r = exec__group_take(sb, p->seq, &p->group, &cg_fd);
        if (r < 0)
                return sbx_err_set(err, r, "cannot create the process's cgroup: %s", strerror(-r));
        struct init_spawn_opts opts = {
                .flags = (p->pty ? INIT_SPAWN_PTY : 0) | (user ? INIT_SPAWN_USER : 0) |
                         (p->stdin_keep ? INIT_SPAWN_KEEP_STDIN : 0),
                .uid = user ? user->uid : 0,
                .gid = user ? user->gid : 0,
                .cols = p->cols,
                .rows = p->rows,
                .cgroup_fd = cg_fd,
                .version = sb->init_version,
        };
        r = init_client_send_spawn(sb->ctl_fd, p->seq, spec->argv, env, spec->cwd, &opts);
        if (r == -EPROTONOSUPPORT)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "invalid_state",
                                    "sandbox '%s' runs an older sbx-init without terminals, users or kept stdin: "
                                    "stop and start it", sb->rec.id);
        if (r < 0)
                return sbx_err_set(err, r == -EAGAIN ? -SBX_E_LIMIT : r, "cannot send the process to sbx-init: %s",
                                   strerror(-r));
        return 0;
}

static struct process *process_new(struct sandbox *sb)
{
        struct process *p = calloc(1, sizeof *p);

        if (!p)
                return NULL;
        p->sb = sb;
        sandbox_ref(sb);
        p->refs = 1; /* the list's */
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++)
                p->s[i].log.cap = sb->m->stream_log_bytes;
        p->exit_code = -1;
        p->in_fd = -EBADF;
        p->max_run_s = -1;
        for (int i = 0; i < _PROCESS_STREAM_MAX; i++) {
                p->s[i].log.fd = -EBADF;
                p->s[i].fd = -EBADF;
                p->s[i].p = p;
        }
        return p;
}

int manager_process_start(struct manager *m, const char *id, struct exec_spec *spec, const char *kind,
                          process_done_fn done, void *data, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct files_user user = { 0 };
        bool home_ok = false;
        struct process *p;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->rec.state != SANDBOX_RUNNING || sb->ctl_fd < 0 || (sb->op && sb->op->kind != OP_CREATE))
                return manager__not_running_error(sb, err);
        /* a code context's interpreter is no command: timeout.execution is for what runs in it */
        if (!spec->timeout_given && sb->spec.execution_s && strcmp(kind, "context") != 0)
                spec->timeout_s = sb->spec.execution_s;
        if (sb->n_procs_running >= SBX_MAX_PROCESSES)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "sandbox '%s' already runs %d processes",
                                    sb->rec.id, SBX_MAX_PROCESSES);
        if (spec->user[0]) {
                r = resolve_user(sb, spec->user, &user, &home_ok, err);
                if (r < 0)
                        return r;
        }
        if (!spec->cwd_given) {
                if (sb->spec.workdir[0])
                        snprintf(spec->cwd, sizeof spec->cwd, "%s", sb->spec.workdir);
                else if (spec->user[0] && user.uid != 0)
                        snprintf(spec->cwd, sizeof spec->cwd, "%.*s", (int)sizeof spec->cwd - 1,
                                 home_ok ? user.home : "/");
        }
        p = process_new(sb);
        if (!p)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        r = sbx_id_new("prc_", p->id, sizeof p->id);
        if (r < 0) {
                process_unref(p);
                return sbx_err_set(err, r, "cannot make a process id: %s", strerror(-r));
        }
        snprintf(p->kind, sizeof p->kind, "%s", kind);
        snprintf(p->argv0, sizeof p->argv0, "%s", spec->argv[0]);
        snprintf(p->cwd, sizeof p->cwd, "%s", spec->cwd);
        p->seq = ++sb->exec_seq;
        p->pty = spec->pty;
        p->cols = spec->cols;
        p->rows = spec->rows;
        p->stdin_keep = spec->stdin_keep && !spec->pty; /* a terminal's input is always open */
        p->keep_after_disconnect = spec->keep_after_disconnect;
        p->max_run_s = spec->max_run_after_disconnect_s;
        p->timeout_s = spec->timeout_s;
        p->started_ms = now_realtime_ms();
        p->status = PROCESS_STARTING;
        p->info = info_json(spec);
        if (!p->info) {
                process_unref(p);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        r = process__timers_init(p);
        if (r < 0) {
                logs_remove(p);
                process__close(p);
                process_unref(p);
                return sbx_err_set(err, -ENOMEM, "cannot create timers: %s", uv_strerror(r));
        }
        list_append(sb, p);
        /* the row goes first: an sbxd that dies right after the spawn finds it again */
        process__save(p);
        r = spawn(p, spec, spec->user[0] ? &user : NULL, err);
        if (r < 0) {
                struct sbx_err e = *err;
                p->done = NULL;
                process__start_failed(p, &e);
                return r;
        }
        if (spec->stdin_data) {
                p->stdin_data = TAKE_PTR(spec->stdin_data);
                p->stdin_len = spec->stdin_len;
        }
        p->done = done;
        p->done_data = data;
        sandbox__idle_touch(sb);
        exec_spec_release(spec);
        return 0;
}

/* ---------- sbx-init's messages ---------- */

static void on_fds(struct process *p, struct init_client_msg *msg)
{
        int in_fd = -EBADF, out_fd = -EBADF, err_fd = -EBADF;
        unsigned k = 0;

        p->adopting = false;
        if (msg->result.error == 0) {
                if (msg->fd_mask & INIT_FD_STDIN)
                        in_fd = TAKE_FD(msg->fds[k++]);
                if (msg->fd_mask & (INIT_FD_STDOUT | INIT_FD_PTY))
                        out_fd = TAKE_FD(msg->fds[k++]);
                if (msg->fd_mask & INIT_FD_STDERR)
                        err_fd = TAKE_FD(msg->fds[k++]);
                if (p->pty && out_fd >= 0) {
                        in_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 3);
                        if (in_fd < 0)
                                in_fd = -EBADF;
                }
                (void)process__attach_fds(p, in_fd, out_fd, err_fd);
        }
        if (!p->in_init)
                p->stdin_closed = true;
        process__stdin_flush(p);
        if (p->exit_pending)
                process__end_now(p, p->pending_status);
        else if (msg->result.error)
                process__lost(p);
        else if (p->timeout_s && p->timer_init) {
                /* the timeout counts from the start, not from the adoption */
                uint64_t due = p->started_ms + p->timeout_s * 1000, now = now_realtime_ms();
                (void)uv_timer_start(&p->timer, process__on_timeout, due > now ? due - now : 0, 0);
        }
}

static void on_list(struct sandbox *sb, struct init_client_msg *msg)
{
        for (struct process *p = sb->procs, *next; p; p = next) {
                const struct init_proc_info *found = NULL;
                next = p->next;
                if (!p->adopting)
                        continue;
                for (uint32_t i = 0; i < msg->n_procs; i++)
                        if (msg->procs[i].id == p->seq)
                                found = &msg->procs[i];
                if (found) {
                        p->pid = found->pid;
                        if (found->exited) {
                                p->exit_pending = true;
                                p->pending_status = found->status;
                        }
                }
                if (!found || init_client_send_get_fds(sb->ctl_fd, p->seq) < 0) {
                        p->adopting = false;
                        process__lost(p);
                }
        }
        for (uint32_t i = 0; i < msg->n_procs; i++)
                if (sb->exec_seq < msg->procs[i].id)
                        sb->exec_seq = msg->procs[i].id;
}

bool process__on_ctl_message(struct sandbox *sb, struct init_client_msg *msg)
{
        struct process *p = msg->type == INIT_LIST_REPLY ? NULL : find_seq(sb, msg->id);

        switch (msg->type) {
        case INIT_HELLO_REPLY:
                sb->init_version = msg->version;
                return true;
        case INIT_SPAWNED:
                if (p && p->status == PROCESS_STARTING && !p->adopting)
                        process__spawned(p, msg);
                break;
        case INIT_EXITED:
                if (p && p->adopting) {
                        p->exit_pending = true;
                        p->pending_status = msg->exited.status;
                } else if (p)
                        process__exited(p, msg->exited.status);
                break;
        case INIT_FDS:
                if (p && p->adopting)
                        on_fds(p, msg);
                break;
        case INIT_LIST_REPLY:
                on_list(sb, msg);
                return false; /* exec.c reads it too */
        default:
                return false;
        }
        return p != NULL;
}

/* ---------- the sandbox's lifecycle ---------- */

/* The sandbox stopped: what ran is gone (killed, unless sbx-init saw it exit first); keep what it
 * wrote. lost: sbx-init went away instead, so how they end is unknown. */
void process__sandbox_stopped(struct sandbox *sb, bool lost)
{
        for (struct process *p = sb->procs, *next; p; p = next) {
                next = p->next;
                if (p->finished)
                        continue;
                process_ref(p);
                if (p->status == PROCESS_STARTING && p->done) {
                        struct sbx_err err = { 0 };
                        sbx_err_setr(&err, -SBX_E_CONFLICT, "invalid_state", "the sandbox stopped");
                        process__start_failed(p, &err);
                } else if (p->exit_pending) {
                        p->adopting = false;
                        process__end_now(p, p->pending_status);
                } else if (lost && !p->exited) {
                        p->adopting = false;
                        process__lost(p);
                } else {
                        p->adopting = false;
                        p->killed = true;
                        process__end_now(p, SIGKILL);
                }
                process_unref(p);
        }
}

/* The sandbox leaves this sbxd (deleted, or sbxd stops): close handles, keep the processes
 * running (sbx-init holds their pipes) unless the sandbox is deleted. */
void process__sandbox_remove(struct sandbox *sb)
{
        struct store *st = sb->m->store;

        while (sb->procs) {
                struct process *p = sb->procs;
                list_remove(p);
                process__close(p);
                p->done = NULL;
                process_unref(p);
        }
        if (sb->rec.state == SANDBOX_DELETED)
                (void)st->ops->process_delete(st, NULL, sb->rec.id, &(struct sbx_err){ 0 });
}

static enum process_status status_from_string(const char *s)
{
        for (int i = 0; i < _PROCESS_STATUS_MAX; i++)
                if (s && strcmp(s, process_status_to_string(i)) == 0)
                        return i;
        return PROCESS_KILLED;
}

/* One stored row back as a process: ended ones as they were, the others to adopt. */
static int recover_row(struct sandbox *sb, const struct process_row *row)
{
        json_t *o = json_loads(row->data_json, 0, NULL), *info;
        struct process *p;
        const char *kind, *status;
        int r;

        if (!o)
                return -EINVAL;
        p = process_new(sb);
        if (!p) {
                json_decref(o);
                return -ENOMEM;
        }
        snprintf(p->id, sizeof p->id, "%s", row->id);
        p->seq = row->seq;
        kind = json_string_value(json_object_get(o, "kind"));
        snprintf(p->kind, sizeof p->kind, "%s", kind ? kind : "process");
        status = json_string_value(json_object_get(o, "status"));
        p->status = status_from_string(status);
        p->pid = (int)json_integer_value(json_object_get(o, "pid"));
        p->group = (uint64_t)json_integer_value(json_object_get(o, "group"));
        p->started_ms = (uint64_t)json_integer_value(json_object_get(o, "startedMs"));
        p->ended_ms = (uint64_t)json_integer_value(json_object_get(o, "endedMs"));
        p->exit_code = json_is_integer(json_object_get(o, "exitCode"))
                               ? (int)json_integer_value(json_object_get(o, "exitCode"))
                               : -1;
        p->signal = (int)json_integer_value(json_object_get(o, "signalNumber"));
        p->stdin_keep = json_is_true(json_object_get(o, "stdinKept"));
        p->cancelled = json_is_true(json_object_get(o, "cancelled"));
        p->keep_after_disconnect = !json_is_false(json_object_get(o, "keepAfterDisconnect"));
        p->max_run_s = json_is_integer(json_object_get(o, "maxRunAfterDisconnect"))
                               ? json_integer_value(json_object_get(o, "maxRunAfterDisconnect"))
                               : -1;
        p->timeout_s = (uint64_t)json_integer_value(json_object_get(o, "timeout"));
        if (json_is_object(json_object_get(o, "pty"))) {
                p->pty = true;
                p->cols = (uint16_t)json_integer_value(json_object_get(json_object_get(o, "pty"), "cols"));
                p->rows = (uint16_t)json_integer_value(json_object_get(json_object_get(o, "pty"), "rows"));
        }
        const char *a0 = json_string_value(json_array_get(json_object_get(o, "argv"), 0));
        snprintf(p->argv0, sizeof p->argv0, "%s", a0 ? a0 : "");
        info = json_pack("{s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*}", "argv", json_object_get(o, "argv"), "cwd",
                         json_object_get(o, "cwd"), "user", json_object_get(o, "user"), "tag",
                         json_object_get(o, "tag"), "timeout", json_object_get(o, "timeout"), "keepAfterDisconnect",
                         json_object_get(o, "keepAfterDisconnect"), "maxRunAfterDisconnect",
                         json_object_get(o, "maxRunAfterDisconnect"));
        if (info) {
                const char *k;
                json_t *v;
                json_object_foreach (o, k, v)
                        if (k[0] == '_')
                                json_object_set(info, k, v);
        }
        json_decref(o);
        p->info = info;
        r = p->info ? process__timers_init(p) : -ENOMEM;
        if (r >= 0)
                r = logs_open(p);
        if (r < 0) {
                process__close(p);
                process_unref(p);
                return r;
        }
        list_append(sb, p);
        if (sb->exec_seq < p->seq)
                sb->exec_seq = p->seq;
        if (p->status != PROCESS_STARTING && p->status != PROCESS_RUNNING) {
                p->finished = p->exited = true;
                logs_close(p);
                return 0;
        }
        p->status = PROCESS_RUNNING;
        sb->n_procs_running++;
        if (sb->rec.state == SANDBOX_RUNNING && sb->ctl_fd >= 0)
                p->adopting = true; /* on_list() and on_fds() finish the job */
        else {
                /* the sandbox stopped while sbxd was down: everything in it was killed */
                p->killed = true;
                process__end_now(p, SIGKILL);
        }
        return 0;
}

void process__recover(struct sandbox *sb)
{
        struct store *st = sb->m->store;
        struct process_row *rows = NULL;
        struct sbx_err err = { 0 };
        size_t n = 0;

        if (st->ops->process_list(st, sb->rec.id, &rows, &n, &err) < 0) {
                log_warn("sandbox %s: cannot read its processes: %s", sb->rec.id, err.msg);
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (recover_row(sb, &rows[i]) < 0)
                        log_warn("sandbox %s: process %s: unreadable record, dropped", sb->rec.id, rows[i].id);
        process_row_array_free(rows, n);
}
