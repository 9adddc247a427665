// SPDX-License-Identifier: Apache-2.0
/*
 * sbx-init's fork+exec of one requested process (init-internal.h). The parent half makes the
 * pipes, clones, and waits on a CLOEXEC error pipe until the child has exec'd; the child half
 * is the only code in sbx-init that runs between clone and execve, and it may only use
 * async-signal-safe calls: it reports (step, errno) on the error pipe and _exit()s on failure.
 */
#include "init-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h> /* struct clone_args, CLONE_INTO_CGROUP */
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"

#define CHILD_EXIT_FAILED 127

/* What the child writes to the error pipe before it gives up: one atomic pipe write. */
struct child_report {
        int32_t step;  /* enum init_spawn_step */
        int32_t error; /* positive errno */
};

/* The pipes of one spawn; the _child ends go to the child's 0/1/2. */
struct spawn_pipes {
        int in_child, in_parent;   /* stdin: child reads, sbxd writes */
        int out_parent, out_child; /* stdout */
        int err_parent, err_child; /* stderr */
        int report_r, report_w;    /* error pipe */
};

static void spawn_pipes_close(struct spawn_pipes *sp)
{
        sp->in_child = safe_close(sp->in_child);
        sp->in_parent = safe_close(sp->in_parent);
        sp->out_parent = safe_close(sp->out_parent);
        sp->out_child = safe_close(sp->out_child);
        sp->err_parent = safe_close(sp->err_parent);
        sp->err_child = safe_close(sp->err_child);
        sp->report_r = safe_close(sp->report_r);
        sp->report_w = safe_close(sp->report_w);
}

static int pipe_pair(int *r, int *w)
{
        int p[2];

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        *r = p[0];
        *w = p[1];
        return 0;
}

static int spawn_pipes_open(struct spawn_pipes *sp)
{
        int r;

        *sp = (struct spawn_pipes){ -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF };
        r = pipe_pair(&sp->in_child, &sp->in_parent);
        if (r >= 0)
                r = pipe_pair(&sp->out_parent, &sp->out_child);
        if (r >= 0)
                r = pipe_pair(&sp->err_parent, &sp->err_child);
        if (r >= 0)
                r = pipe_pair(&sp->report_r, &sp->report_w);
        if (r < 0)
                spawn_pipes_close(sp);
        return r;
}

/* ---- child side: async-signal-safe only ---- */

static _Noreturn void child_fail(int report_fd, enum init_spawn_step step, int error)
{
        struct child_report rep = { .step = (int32_t)step, .error = error > 0 ? error : EIO };

        (void)!write(report_fd, &rep, sizeof rep);
        _exit(CHILD_EXIT_FAILED);
}

static const char *env_path(char *const envp[])
{
        for (size_t i = 0; envp[i]; i++)
                if (strncmp(envp[i], "PATH=", 5) == 0)
                        return envp[i] + 5;
        return NULL;
}

/*
 * execve argv[0], looked up in the PATH of the *given* environment when it has no '/'
 * (execvpe would search sbx-init's own environment). Returns the errno to report. Unlike
 * execvp there is no /bin/sh retry on ENOEXEC.
 */
static int child_exec(char *const argv[], char *const envp[])
{
        /* the default of Docker and most init systems, for an env without PATH */
        static const char default_path[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        const char *file = argv[0], *path, *p;
        size_t flen = strlen(file);
        bool eacces = false;
        char buf[PATH_MAX];

        if (flen == 0)
                return ENOENT;
        if (strchr(file, '/')) {
                execve(file, argv, envp);
                return errno;
        }
        if (flen >= sizeof buf - 1)
                return ENAMETOOLONG;
        path = env_path(envp);
        if (!path)
                path = default_path;

        for (p = path;; p++) {
                const char *colon = strchrnul(p, ':');
                size_t dlen = (size_t)(colon - p);

                if (dlen == 0) {
                        /* an empty element is the current directory */
                        memcpy(buf, file, flen + 1);
                } else if (dlen + 1 + flen < sizeof buf) {
                        memcpy(buf, p, dlen);
                        buf[dlen] = '/';
                        memcpy(buf + dlen + 1, file, flen + 1);
                } else {
                        goto next;
                }
                execve(buf, argv, envp);
                switch (errno) {
                case EACCES:
                        eacces = true;
                        break;
                case ENOENT:
                case ENOTDIR:
                case ESTALE:
                case ENODEV:
                case ETIMEDOUT:
                case ELOOP:
                case ENAMETOOLONG:
                        break;
                default:
                        return errno;
                }
        next:
                p = colon;
                if (*p == '\0')
                        break;
        }
        return eacces ? EACCES : ENOENT;
}

static _Noreturn void spawn_child(const struct init_spawn_req *req, const struct spawn_pipes *sp,
                                  const struct init_spawn_ctx *ctx)
{
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;
        int r;

        /* its own session and process group, so SIGNAL can reach everything it starts */
        if (setsid() < 0)
                child_fail(sp->report_w, INIT_STEP_SETUP, errno);

        /* sbx-init keeps fds 0..2 open (/dev/null), so pipe fds are >= 3 and dup2 never hits one of
         * its own sources; dup2 clears O_CLOEXEC on the copies */
        if (dup2(sp->in_child, STDIN_FILENO) < 0 || dup2(sp->out_child, STDOUT_FILENO) < 0 ||
            dup2(sp->err_child, STDERR_FILENO) < 0)
                child_fail(sp->report_w, INIT_STEP_SETUP, errno);

        /* sbx-init changed only SIGPIPE (ignored) and the mask (SIGCHLD blocked); handlers do
         * not survive execve, ignored signals and the mask would */
        (void)sigaction(SIGPIPE, &dfl, NULL);
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                child_fail(sp->report_w, INIT_STEP_SETUP, errno);
        /* sbx-init raised its own soft limit to hold two fds per process; select() users expect
         * the usual one */
        if (setrlimit(RLIMIT_NOFILE, &ctx->nofile) < 0)
                child_fail(sp->report_w, INIT_STEP_SETUP, errno);

        if (chdir(req->cwd) < 0)
                child_fail(sp->report_w, INIT_STEP_CWD, errno);

        /* last step before execve, so the filter constrains only the requested program */
        r = seccomp_bpf_load(&ctx->filter);
        if (r < 0)
                child_fail(sp->report_w, INIT_STEP_SETUP, -r);

        child_fail(sp->report_w, INIT_STEP_EXEC, child_exec(req->argv, req->envp));
}

/* ---- parent side ---- */

static pid_t clone_child(int cgroup_fd)
{
        if (cgroup_fd < 0)
                return fork();

        /* raw clone3: glibc has no wrapper. Without CLONE_VM the child gets a copy of the stack
         * and returns here like fork(); it then only makes raw syscalls until execve. */
        struct clone_args args = {
                .flags = CLONE_INTO_CGROUP,
                .exit_signal = SIGCHLD,
                .cgroup = (uint64_t)cgroup_fd,
        };
        return (pid_t)syscall(SYS_clone3, &args, sizeof args);
}

static void fail(struct init_spawn_result *ret, enum init_spawn_step step, int error)
{
        ret->pid = 0;
        ret->step = step;
        ret->error = error > 0 ? error : EIO;
}

void init_spawn(const struct init_spawn_req *req, int cgroup_fd, const struct init_spawn_ctx *ctx,
                struct init_spawn_result *ret)
{
        struct spawn_pipes sp;
        struct child_report rep;
        size_t got = 0;
        pid_t pid;
        int r;

        *ret = (struct init_spawn_result){ .stdin_w = -EBADF, .stdout_r = -EBADF, .stderr_r = -EBADF };

        r = spawn_pipes_open(&sp);
        if (r < 0) {
                fail(ret, INIT_STEP_FORK, -r);
                return;
        }

        pid = clone_child(cgroup_fd);
        if (pid < 0) {
                fail(ret, INIT_STEP_FORK, errno);
                spawn_pipes_close(&sp);
                return;
        }
        if (pid == 0)
                spawn_child(req, &sp, ctx);

        /* the child's ends live on in the child only; the write end of the error pipe must go
         * before the read below or EOF never comes */
        sp.in_child = safe_close(sp.in_child);
        sp.out_child = safe_close(sp.out_child);
        sp.err_child = safe_close(sp.err_child);
        sp.report_w = safe_close(sp.report_w);

        /* sync: EOF = execve succeeded (CLOEXEC closed the write end); a full report = failure */
        while (got < sizeof rep) {
                ssize_t n = read(sp.report_r, (char *)&rep + got, sizeof rep - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        if (got != 0) {
                if (got != sizeof rep || rep.step <= INIT_STEP_NONE || rep.step > INIT_STEP_PROTO)
                        rep = (struct child_report){ .step = INIT_STEP_SETUP, .error = EIO };
                /* the child is at its _exit(); reap it now so it is never reported as running */
                (void)kill(pid, SIGKILL);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                fail(ret, (enum init_spawn_step)rep.step, rep.error);
                spawn_pipes_close(&sp);
                return;
        }

        ret->pid = pid;
        ret->stdin_w = TAKE_FD(sp.in_parent);
        ret->stdout_r = TAKE_FD(sp.out_parent);
        ret->stderr_r = TAKE_FD(sp.err_parent);
        spawn_pipes_close(&sp);
}
