// SPDX-License-Identifier: Apache-2.0
/*
 * sbx-init's fork+exec of one requested process (init-internal.h). The parent half makes the
 * pipes (or the terminal), clones, and waits on a CLOEXEC error pipe until the child has exec'd; the child half
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
#include <sys/ioctl.h>
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

/* The fds of one spawn: three pipes or a terminal, and the error pipe. The _child ends (or the
 * terminal's slave) go to the child's 0/1/2; -EBADF where unused. */
struct spawn_fds {
        int in_child, in_parent;   /* stdin: child reads, sbxd writes */
        int out_parent, out_child; /* stdout */
        int err_parent, err_child; /* stderr */
        int pty_master, pty_slave; /* INIT_SPAWN_PTY */
        int report_r, report_w;    /* error pipe */
};

static void spawn_fds_close(struct spawn_fds *sf)
{
        sf->in_child = safe_close(sf->in_child);
        sf->in_parent = safe_close(sf->in_parent);
        sf->out_parent = safe_close(sf->out_parent);
        sf->out_child = safe_close(sf->out_child);
        sf->err_parent = safe_close(sf->err_parent);
        sf->err_child = safe_close(sf->err_child);
        sf->pty_master = safe_close(sf->pty_master);
        sf->pty_slave = safe_close(sf->pty_slave);
        sf->report_r = safe_close(sf->report_r);
        sf->report_w = safe_close(sf->report_w);
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

/*
 * A new terminal of cols x rows from the sandbox's own devpts (/dev/ptmx leads there). The slave
 * comes from TIOCGPTPEER, not from a path under /dev/pts that sandbox code could swap. Neither
 * end becomes sbx-init's controlling tty (O_NOCTTY).
 */
static int pty_open(uint16_t cols, uint16_t rows, int *ret_master, int *ret_slave)
{
        struct winsize ws = { .ws_row = rows, .ws_col = cols };
        int master, slave, unlock = 0;

        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                return -errno;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ioctl(master, TIOCSWINSZ, &ws) < 0) {
                int r = -errno;
                (void)safe_close(master);
                return r;
        }
        slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
                int r = -errno;
                (void)safe_close(master);
                return r;
        }
        *ret_master = master;
        *ret_slave = slave;
        return 0;
}

static int spawn_fds_open(const struct init_spawn_req *req, struct spawn_fds *sf)
{
        int r;

        *sf = (struct spawn_fds){ -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF, -EBADF };
        if (req->flags & INIT_SPAWN_PTY) {
                r = pty_open(req->cols, req->rows, &sf->pty_master, &sf->pty_slave);
        } else {
                r = pipe_pair(&sf->in_child, &sf->in_parent);
                if (r >= 0)
                        r = pipe_pair(&sf->out_parent, &sf->out_child);
                if (r >= 0)
                        r = pipe_pair(&sf->err_parent, &sf->err_child);
        }
        if (r >= 0)
                r = pipe_pair(&sf->report_r, &sf->report_w);
        if (r < 0)
                spawn_fds_close(sf);
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

/* 0/1/2 of the child: its pipe ends, or the terminal's slave as its controlling tty. The child
 * is a session leader already. */
static void child_stdio(const struct init_spawn_req *req, const struct spawn_fds *sf)
{
        /* sbx-init keeps fds 0..2 open (/dev/null), so these fds are >= 3 and dup2 never hits one
         * of its own sources; dup2 clears O_CLOEXEC on the copies */
        if (!(req->flags & INIT_SPAWN_PTY)) {
                if (dup2(sf->in_child, STDIN_FILENO) < 0 || dup2(sf->out_child, STDOUT_FILENO) < 0 ||
                    dup2(sf->err_child, STDERR_FILENO) < 0)
                        child_fail(sf->report_w, INIT_STEP_SETUP, errno);
                return;
        }
        /* the user gets its own terminal, as login does: tty(1), re-opening /dev/tty and
         * /dev/pts/N work for it; root stays the owner otherwise */
        if ((req->flags & INIT_SPAWN_USER) && fchown(sf->pty_slave, req->uid, req->gid) < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, errno);
        if (dup2(sf->pty_slave, STDIN_FILENO) < 0 || dup2(sf->pty_slave, STDOUT_FILENO) < 0 ||
            dup2(sf->pty_slave, STDERR_FILENO) < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, errno);
        if (ioctl(STDIN_FILENO, TIOCSCTTY, 0) < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, errno);
}

/*
 * Drop root for req->uid/gid: supplementary groups first (that needs CAP_SETGID), then the gid,
 * then the uid, which also clears every capability. Raw syscalls: glibc's wrappers go through
 * its all-threads setxid machinery, whose bookkeeping a raw clone3 child must not rely on.
 */
static void child_user(const struct init_spawn_req *req, int report_fd)
{
        gid_t groups[1] = { req->gid };

        if (syscall(SYS_setgroups, 1, groups) < 0 || syscall(SYS_setresgid, req->gid, req->gid, req->gid) < 0 ||
            syscall(SYS_setresuid, req->uid, req->uid, req->uid) < 0)
                child_fail(report_fd, INIT_STEP_SETUP, errno);
}

static _Noreturn void spawn_child(const struct init_spawn_req *req, const struct spawn_fds *sf,
                                  const struct init_spawn_ctx *ctx)
{
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigset_t none;
        int r;

        /* its own session and process group, so SIGNAL can reach everything it starts (and a
         * terminal can become its controlling tty) */
        if (setsid() < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, errno);
        child_stdio(req, sf);

        /* sbx-init changed only SIGPIPE (ignored) and the mask (SIGCHLD blocked); handlers do
         * not survive execve, ignored signals and the mask would */
        (void)sigaction(SIGPIPE, &dfl, NULL);
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, errno);
        /* sbx-init raised its own soft limit to hold its kept fds; select() users expect the
         * usual one */
        if (setrlimit(RLIMIT_NOFILE, &ctx->nofile) < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, errno);

        /* after everything that needs root; before chdir, so the directory is checked with the
         * user's permissions */
        if (req->flags & INIT_SPAWN_USER)
                child_user(req, sf->report_w);

        if (chdir(req->cwd) < 0)
                child_fail(sf->report_w, INIT_STEP_CWD, errno);

        /* last step before execve, so the filter constrains only the requested program */
        r = seccomp_bpf_load(&ctx->filter);
        if (r < 0)
                child_fail(sf->report_w, INIT_STEP_SETUP, -r);

        child_fail(sf->report_w, INIT_STEP_EXEC, child_exec(req->argv, req->envp));
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
        struct spawn_fds sf;
        struct child_report rep;
        size_t got = 0;
        pid_t pid;
        int r;

        *ret = (struct init_spawn_result){
                .stdin_w = -EBADF, .stdout_r = -EBADF, .stderr_r = -EBADF, .pty_master = -EBADF,
        };

        r = spawn_fds_open(req, &sf);
        if (r < 0) {
                fail(ret, INIT_STEP_FORK, -r);
                return;
        }

        pid = clone_child(cgroup_fd);
        if (pid < 0) {
                fail(ret, INIT_STEP_FORK, errno);
                spawn_fds_close(&sf);
                return;
        }
        if (pid == 0)
                spawn_child(req, &sf, ctx);

        /* the child's ends live on in the child only; the write end of the error pipe must go
         * before the read below or EOF never comes */
        sf.in_child = safe_close(sf.in_child);
        sf.out_child = safe_close(sf.out_child);
        sf.err_child = safe_close(sf.err_child);
        sf.pty_slave = safe_close(sf.pty_slave);
        sf.report_w = safe_close(sf.report_w);

        /* sync: EOF = execve succeeded (CLOEXEC closed the write end); a full report = failure */
        while (got < sizeof rep) {
                ssize_t n = read(sf.report_r, (char *)&rep + got, sizeof rep - got);
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
                spawn_fds_close(&sf);
                return;
        }

        ret->pid = pid;
        ret->stdin_w = TAKE_FD(sf.in_parent);
        ret->stdout_r = TAKE_FD(sf.out_parent);
        ret->stderr_r = TAKE_FD(sf.err_parent);
        ret->pty_master = TAKE_FD(sf.pty_master);
        spawn_fds_close(&sf);
}
