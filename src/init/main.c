// SPDX-License-Identifier: Apache-2.0
/*
 * sbx-init: PID 1 inside every sandbox (docs/internals/init.md). It reaps every process that
 * ends up as its child, and serves sbxd's requests on an abstract SOCK_SEQPACKET socket in the
 * sandbox's netns: spawn a process (spawn.c), signal it, list them, hand out and forget the
 * stdio fds (pipes or a terminal) it keeps for them. Root in the sandbox controls it, so it
 * holds nothing that matters outside: no host fds but what sbxd passes in for one request, its
 * own stdio pipes and its sockets. It must never exit on bad input: a malformed packet costs
 * only that connection, and once serving, sbx-init runs until sbxd stops the sandbox.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"
#include "init-internal.h"

#define EPOLL_BATCH 16
#define LISTEN_BACKLOG 16
#define MAX_RECV_FDS 4 /* a request carries at most 1; room to see and refuse more */

enum ev_kind {
        EV_LISTEN = 1,
        EV_SIGNAL,
        EV_CONN,
};

/* epoll data: kind | slot << 8 | generation << 32, so an event for a closed and reused
 * connection slot is recognised as stale within one epoll batch. */
#define EV_TAG(kind, slot, gen) ((uint64_t)(kind) | ((uint64_t)(slot) << 8) | ((uint64_t)(gen) << 32))

struct init_conn {
        int fd;          /* owned; -EBADF when the slot is free */
        uint32_t gen;    /* bumped on close */
        bool outside;    /* peer is outside our pid namespace: sbxd */
};

struct init_proc {
        bool used;
        bool exited;     /* reaped; status is valid and pid may already be reused */
        bool released;   /* RELEASE came while running: forget it once INIT_EXITED is sent */
        uint64_t id;     /* sbxd's id, unique among used entries */
        pid_t pid;
        int status;      /* raw wait status */
        int in_fd;       /* owned: the kept stdin write end (INIT_SPAWN_KEEP_STDIN), or -EBADF */
        int out_fd;      /* owned: sbx-init's copy of the stdout read end, or -EBADF */
        int err_fd;      /* owned: same for stderr */
        int pty_fd;      /* owned: sbx-init's copy of the terminal's master (INIT_SPAWN_PTY), or -EBADF */
        bool pty;        /* spawned with a terminal: pty_fd instead of the pipes */
};

#define PROC_EMPTY ((struct init_proc){ .in_fd = -EBADF, .out_fd = -EBADF, .err_fd = -EBADF, .pty_fd = -EBADF })

struct init_server {
        int epfd;                                   /* owned */
        int listen_fd;                              /* owned */
        int sig_fd;                                 /* owned: signalfd for SIGCHLD */
        bool have_filters;                          /* seccomp filters came from sbxd */
        int reserve_fd;                             /* owned: /dev/null, given up to refuse a
                                                       connection when out of fds */
        struct init_conn conns[SBX_INIT_MAX_CONNS];
        struct init_proc procs[SBX_INIT_MAX_PROCS];
        struct init_spawn_ctx spawn_ctx;
        char *argv[SBX_MAX_ARGV + 1];               /* storage for the request being parsed */
        char *envp[SBX_INIT_MAX_ENVC + 1];
        union {
                struct init_msg align;
                char b[SBX_INIT_MAX_MSG];
        } rbuf;                                     /* one request */
        union {
                struct init_msg align;
                char b[sizeof(struct init_msg) + sizeof(uint32_t) +
                       SBX_INIT_MAX_PROCS * sizeof(struct init_proc_info)];
        } wbuf;                                     /* the largest reply (LIST) */
};

/* ---- process table ---- */

static struct init_proc *proc_by_id(struct init_server *s, uint64_t id)
{
        for (size_t i = 0; i < ELEMENTSOF(s->procs); i++)
                if (s->procs[i].used && s->procs[i].id == id)
                        return &s->procs[i];
        return NULL;
}

/* Only running entries: an exited entry's pid may belong to someone else by now. */
static struct init_proc *proc_by_pid(struct init_server *s, pid_t pid)
{
        for (size_t i = 0; i < ELEMENTSOF(s->procs); i++)
                if (s->procs[i].used && !s->procs[i].exited && s->procs[i].pid == pid)
                        return &s->procs[i];
        return NULL;
}

/* A free slot (not yet marked used), or NULL when SBX_INIT_MAX_PROCS are tracked. */
static struct init_proc *proc_unused(struct init_server *s)
{
        for (size_t i = 0; i < ELEMENTSOF(s->procs); i++)
                if (!s->procs[i].used)
                        return &s->procs[i];
        return NULL;
}

static void proc_close_fds(struct init_proc *p)
{
        p->in_fd = safe_close(p->in_fd);
        p->out_fd = safe_close(p->out_fd);
        p->err_fd = safe_close(p->err_fd);
        p->pty_fd = safe_close(p->pty_fd);
}

static void proc_free(struct init_proc *p)
{
        proc_close_fds(p);
        *p = PROC_EMPTY;
}

/* ---- connections ---- */

static void conn_close(struct init_server *s, unsigned i)
{
        struct init_conn *c = &s->conns[i];

        if (c->fd < 0)
                return;
        c->fd = safe_close(c->fd); /* also leaves the epoll set */
        c->gen++;
        c->outside = false;
}

/* Send one packet; a connection that cannot take it is closed (sbxd reconnects and LISTs). */
static int conn_send(struct init_server *s, unsigned i, uint32_t type, uint64_t id, const void *payload,
                     uint32_t len, const int *fds, unsigned n_fds)
{
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(sizeof(int) * 3)];
        } cbuf;
        struct init_msg h = { .type = type, .len = len, .id = id };
        struct iovec iov[2] = {
                { .iov_base = &h, .iov_len = sizeof h },
                { .iov_base = (void *)payload, .iov_len = len },
        };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = len > 0 ? 2 : 1 };
        ssize_t n;

        if (s->conns[i].fd < 0)
                return -ENOTCONN;
        if (n_fds > 0) {
                memset(&cbuf, 0, sizeof cbuf);
                mh.msg_control = cbuf.b;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        do
                n = sendmsg(s->conns[i].fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                int r = -errno;
                conn_close(s, i);
                return r;
        }
        return 0;
}

static void send_spawned(struct init_server *s, unsigned i, uint64_t id, const struct init_spawn_result *res)
{
        struct init_spawned sp = { .pid = res->pid, .error = res->error, .step = res->step };

        if (res->error == 0 && res->pty_master >= 0) {
                sp.flags = INIT_SPAWNED_PTY;
                (void)conn_send(s, i, INIT_SPAWNED, id, &sp, sizeof sp, &res->pty_master, 1);
        } else if (res->error == 0) {
                int fds[3] = { res->stdin_w, res->stdout_r, res->stderr_r };
                (void)conn_send(s, i, INIT_SPAWNED, id, &sp, sizeof sp, fds, 3);
        } else {
                sp.pid = 0;
                (void)conn_send(s, i, INIT_SPAWNED, id, &sp, sizeof sp, NULL, 0);
        }
}

static void spawn_refuse(struct init_server *s, unsigned i, uint64_t id, enum init_spawn_step step, int error)
{
        struct init_spawn_result res = { .error = error, .step = step };

        send_spawned(s, i, id, &res);
}

/* ---- requests ---- */

static void handle_spawn(struct init_server *s, unsigned i, const struct init_msg *h, unsigned n_fds,
                         int cgroup_fd)
{
        struct init_spawn_req req = { .argv = s->argv, .envp = s->envp };
        struct init_spawn_result res;
        struct init_proc *p;

        if (init_spawn_req_parse(s->rbuf.b + sizeof *h, h->len, n_fds, &req) < 0) {
                conn_close(s, i);
                return;
        }
        if (proc_by_id(s, h->id)) {
                spawn_refuse(s, i, h->id, INIT_STEP_PROTO, EEXIST);
                return;
        }
        p = proc_unused(s);
        if (!p) {
                spawn_refuse(s, i, h->id, INIT_STEP_LIMIT, EAGAIN);
                return;
        }

        init_spawn(&req, cgroup_fd, &s->spawn_ctx, &res);
        if (res.error != 0) {
                send_spawned(s, i, h->id, &res);
                return;
        }

        *p = PROC_EMPTY;
        p->used = true;
        p->id = h->id;
        p->pid = res.pid;
        p->pty = res.pty_master >= 0;
        p->out_fd = res.stdout_r;
        p->err_fd = res.stderr_r;
        /* the master, like the read ends, stays open here so output waits while sbxd is away */
        p->pty_fd = res.pty_master;
        send_spawned(s, i, h->id, &res);
        /* stdin is sbxd's alone unless asked to keep it: when sbxd closes its end, the child sees
         * EOF. A kept copy holds that off until CLOSE_STDIN or RELEASE. */
        if (req.flags & INIT_SPAWN_KEEP_STDIN)
                p->in_fd = res.stdin_w;
        else
                (void)safe_close(res.stdin_w);
}

static void handle_signal(struct init_server *s, unsigned i, const struct init_msg *h)
{
        struct init_signal sig;
        struct init_result res = { 0 };
        struct init_proc *p;

        memcpy(&sig, s->rbuf.b + sizeof *h, sizeof sig);
        p = proc_by_id(s, h->id);
        if (!p || p->exited)
                res.error = ESRCH; /* never signal a reaped pid: it may be reused */
        else if (sig.signo < 0 || sig.signo >= _NSIG || sig.reserved != 0)
                res.error = EINVAL;
        else if (kill(-p->pid, sig.signo) < 0 && (errno != ESRCH || kill(p->pid, sig.signo) < 0))
                res.error = errno;
        (void)conn_send(s, i, INIT_RESULT, h->id, &res, sizeof res, NULL, 0);
}

static void handle_release(struct init_server *s, const struct init_msg *h)
{
        struct init_proc *p = proc_by_id(s, h->id);

        if (!p)
                return;
        if (p->exited) {
                proc_free(p);
                return;
        }
        /* still running: stop holding its output; the entry goes when it exits */
        proc_close_fds(p);
        p->released = true;
}

/* New references to what is kept for the process, in enum init_fd_mask order. */
static void handle_get_fds(struct init_server *s, unsigned i, const struct init_msg *h)
{
        struct init_fds res = { 0 };
        struct init_proc *p = proc_by_id(s, h->id);
        int fds[3];
        unsigned n = 0;

        if (!p)
                res.error = ESRCH;
        else if (p->pty ? p->pty_fd < 0 : (p->out_fd < 0 || p->err_fd < 0))
                res.error = EBADF; /* released */
        if (res.error != 0) {
                (void)conn_send(s, i, INIT_FDS, h->id, &res, sizeof res, NULL, 0);
                return;
        }
        if (p->pty) {
                res.mask = INIT_FD_PTY;
                fds[n++] = p->pty_fd;
        } else {
                if (p->in_fd >= 0) {
                        res.mask |= INIT_FD_STDIN;
                        fds[n++] = p->in_fd;
                }
                res.mask |= INIT_FD_STDOUT | INIT_FD_STDERR;
                fds[n++] = p->out_fd;
                fds[n++] = p->err_fd;
        }
        (void)conn_send(s, i, INIT_FDS, h->id, &res, sizeof res, fds, n);
}

/* Let go of the kept stdin: once sbxd's copies are closed too, the child reads EOF. */
static void handle_close_stdin(struct init_server *s, unsigned i, const struct init_msg *h)
{
        struct init_result res = { 0 };
        struct init_proc *p = proc_by_id(s, h->id);

        if (!p)
                res.error = ESRCH;
        else
                p->in_fd = safe_close(p->in_fd); /* nothing kept (any more) is fine too */
        (void)conn_send(s, i, INIT_RESULT, h->id, &res, sizeof res, NULL, 0);
}

static void handle_list(struct init_server *s, unsigned i, const struct init_msg *h)
{
        char *out = s->wbuf.b;
        uint32_t count = 0;

        for (size_t k = 0; k < ELEMENTSOF(s->procs); k++) {
                const struct init_proc *p = &s->procs[k];
                if (!p->used)
                        continue;
                struct init_proc_info pi = {
                        .id = p->id,
                        .pid = p->pid,
                        .status = p->exited ? p->status : 0,
                        .exited = p->exited,
                };
                memcpy(out + sizeof count + count * sizeof pi, &pi, sizeof pi);
                count++;
        }
        memcpy(out, &count, sizeof count);
        (void)conn_send(s, i, INIT_LIST_REPLY, h->id, out,
                        (uint32_t)(sizeof count + count * sizeof(struct init_proc_info)), NULL, 0);
}

static void close_fds(int *fds, unsigned n)
{
        for (unsigned k = 0; k < n; k++)
                fds[k] = safe_close(fds[k]);
}

/* Read and serve one packet from connection i. */
static void conn_read(struct init_server *s, unsigned i)
{
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(sizeof(int) * MAX_RECV_FDS)];
        } cbuf;
        struct iovec iov = { .iov_base = s->rbuf.b, .iov_len = sizeof s->rbuf.b };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b };
        int fds[MAX_RECV_FDS + 4];
        unsigned n_fds = 0;
        bool bad = false;
        struct init_msg h;
        ssize_t n;

        n = recvmsg(s->conns[i].fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        conn_close(s, i);
                return;
        }
        n_fds = (unsigned)cmsg_take_fds(&mh, fds, ELEMENTSOF(fds), &bad);
        /* n == 0 is EOF (a zero-length packet is not a request either) */
        if (n == 0 || bad || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                close_fds(fds, n_fds);
                conn_close(s, i);
                return;
        }
        if ((size_t)n >= sizeof h)
                memcpy(&h, s->rbuf.b, sizeof h);
        if ((size_t)n < sizeof h || init_req_check(&h, (size_t)n, n_fds) < 0) {
                close_fds(fds, n_fds);
                conn_close(s, i);
                return;
        }

        switch (h.type) {
        case INIT_HELLO: {
                uint32_t version = SBX_INIT_PROTO_VERSION;
                (void)conn_send(s, i, INIT_HELLO_REPLY, h.id, &version, sizeof version, NULL, 0);
                break;
        }
        case INIT_SPAWN:
                handle_spawn(s, i, &h, n_fds, n_fds > 0 ? fds[0] : -EBADF);
                break;
        case INIT_SIGNAL:
                handle_signal(s, i, &h);
                break;
        case INIT_RELEASE:
                handle_release(s, &h);
                break;
        case INIT_LIST:
                handle_list(s, i, &h);
                break;
        case INIT_GET_FDS:
                handle_get_fds(s, i, &h);
                break;
        case INIT_CLOSE_STDIN:
                handle_close_stdin(s, i, &h);
                break;
        }
        close_fds(fds, n_fds); /* the cgroup fd is needed for one clone only */
}

/* Accept the peer if it may control sbx-init: root in the sandbox (who could take sbx-init
 * over anyway) or a process outside the sandbox's pid namespace (sbxd, whose host uid shows up
 * as the overflow uid here). Other sandbox users must not spawn processes as root. */
static bool peer_allowed(int fd, bool *ret_outside)
{
        struct ucred cred;
        socklen_t len = sizeof cred;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred)
                return false;
        if (cred.pid != 0 && cred.uid != 0)
                return false;
        *ret_outside = cred.pid == 0;
        return true;
}

static void on_accept(struct init_server *s)
{
        for (;;) {
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                unsigned slot = SBX_INIT_MAX_CONNS;
                bool outside = false;

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if ((errno == EMFILE || errno == ENFILE) && s->reserve_fd >= 0) {
                                /* the listener stays readable: take the connection and drop it
                                 * rather than spin */
                                s->reserve_fd = safe_close(s->reserve_fd);
                                (void)safe_close(accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC));
                                s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                        }
                        return;
                }
                if (!peer_allowed(fd, &outside)) {
                        (void)safe_close(fd);
                        continue;
                }
                for (unsigned k = 0; k < SBX_INIT_MAX_CONNS && slot == SBX_INIT_MAX_CONNS; k++)
                        if (s->conns[k].fd < 0)
                                slot = k;
                /* full: sbxd still gets in, at the expense of a connection from inside */
                for (unsigned k = 0; outside && k < SBX_INIT_MAX_CONNS && slot == SBX_INIT_MAX_CONNS; k++)
                        if (!s->conns[k].outside) {
                                conn_close(s, k);
                                slot = k;
                        }
                if (slot == SBX_INIT_MAX_CONNS) {
                        (void)safe_close(fd);
                        continue;
                }
                struct epoll_event ev = { .events = EPOLLIN, .data.u64 = EV_TAG(EV_CONN, slot, s->conns[slot].gen) };
                if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
                        (void)safe_close(fd);
                        continue;
                }
                s->conns[slot].fd = fd;
                s->conns[slot].outside = outside;
        }
}

/* ---- children ---- */

static void broadcast_exited(struct init_server *s, const struct init_proc *p)
{
        struct init_exited ex = { .pid = p->pid, .status = p->status };

        for (unsigned i = 0; i < SBX_INIT_MAX_CONNS; i++)
                if (s->conns[i].fd >= 0)
                        (void)conn_send(s, i, INIT_EXITED, p->id, &ex, sizeof ex, NULL, 0);
}

/* As PID 1, every orphan in the sandbox becomes our child: reap them all, report ours. */
static void on_sigchld(struct init_server *s)
{
        struct signalfd_siginfo si;

        while (read(s->sig_fd, &si, sizeof si) > 0)
                ;
        for (;;) {
                int status;
                pid_t pid = waitpid(-1, &status, WNOHANG);
                if (pid < 0 && errno == EINTR)
                        continue;
                if (pid <= 0)
                        break;
                struct init_proc *p = proc_by_pid(s, pid);
                if (!p)
                        continue;
                p->exited = true;
                p->status = status;
                broadcast_exited(s, p);
                if (p->released)
                        proc_free(p);
        }
}

/* ---- start-up ---- */

static void die(enum init_exit code)
{
        exit(code);
}

/* fds 0..2 stay open (sbxd passes /dev/null) so pipe fds never land on them; any other
 * inherited fd (but the ready fd) is closed so nothing leaks into the sandbox's processes. */
static void setup_fds(void)
{
        for (int fd = 0; fd <= 2; fd++)
                if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
                        die(INIT_EXIT_SETUP);
        if (close_range(SBX_INIT_READY_FD + 1, ~0U, 0) < 0 && errno != ENOSYS)
                die(INIT_EXIT_SETUP);
}

static int setup_signals(struct init_server *s)
{
        struct sigaction sa = { .sa_handler = SIG_DFL };
        sigset_t mask;

        /* ignored signals survive execve: start from the defaults whatever sbxd ignored */
        for (int sig = 1; sig < _NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        (void)sigaction(sig, &sa, NULL);
        /* sends use MSG_NOSIGNAL; this covers the ready-pipe write */
        sa.sa_handler = SIG_IGN;
        if (sigaction(SIGPIPE, &sa, NULL) < 0)
                return -errno;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_SETMASK, &mask, NULL) < 0)
                return -errno;
        s->sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        return s->sig_fd < 0 ? -errno : 0;
}

static int setup_socket(struct init_server *s)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t name_len = strlen(SBX_INIT_SOCKET_NAME);
        struct epoll_event ev;

        s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->listen_fd < 0)
                return -errno;
        memcpy(sa.sun_path + 1, SBX_INIT_SOCKET_NAME, name_len);
        if (bind(s->listen_fd, (struct sockaddr *)&sa,
                 (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len)) < 0)
                return -errno;
        if (listen(s->listen_fd, LISTEN_BACKLOG) < 0)
                return -errno;

        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epfd < 0)
                return -errno;
        ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = EV_TAG(EV_LISTEN, 0, 0) };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) < 0)
                return -errno;
        ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = EV_TAG(EV_SIGNAL, 0, 0) };
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sig_fd, &ev) < 0)
                return -errno;
        return 0;
}

/* fd 3 is the ready pipe (or socket) when sbxd started us; anything else there, or nothing, means
 * we were started by hand. Returns the fd to report on, or -EBADF. */
static int take_ready_fd(void)
{
        struct stat st;

        if (fstat(SBX_INIT_READY_FD, &st) < 0)
                return -EBADF;
        if (!S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
                (void)close(SBX_INIT_READY_FD);
                return -EBADF;
        }
        if (fcntl(SBX_INIT_READY_FD, F_SETFD, FD_CLOEXEC) < 0)
                die(INIT_EXIT_SETUP);
        return SBX_INIT_READY_FD;
}

/* sync: tell whoever started us that the socket is up. A gone reader is fine (SIGPIPE is
 * ignored): sbxd will find the sandbox through its socket or stop it. */
static void signal_ready(int fd)
{
        char c = SBX_INIT_READY_BYTE;

        if (fd < 0)
                return;
        while (write(fd, &c, 1) < 0 && errno == EINTR)
                ;
        (void)close(fd);
}

static void setup(struct init_server *s)
{
        struct rlimit rl;
        int ready_fd;

        /* sbxd runs us from a memfd, which would name us "memfd:sbx-init" in ps */
        (void)prctl(PR_SET_NAME, "sbx-init", 0, 0, 0);
        /* s is in .bss, already zero: set only what is not, so the ~0.3 MiB request buffer is not
         * touched (and faulted in, about 0.3 ms) at start */
        s->epfd = s->listen_fd = s->sig_fd = s->reserve_fd = -EBADF;
        for (size_t i = 0; i < ELEMENTSOF(s->conns); i++)
                s->conns[i].fd = -EBADF;
        for (size_t i = 0; i < ELEMENTSOF(s->procs); i++)
                s->procs[i] = PROC_EMPTY;

        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                die(INIT_EXIT_SETUP);
        /* orphans come to PID 1 anyway; this makes a hand-started sbx-init behave the same */
        (void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        /* the filters sbxd compiled (fd SBX_INIT_SECCOMP_FD), before setup_fds() closes it;
         * started by hand, sbx-init compiles them itself below */
        s->have_filters = seccomp_blob_load(SBX_INIT_SECCOMP_FD, &s->spawn_ctx.filter) == 0;
        (void)close(SBX_INIT_SECCOMP_FD);
        setup_fds();
        ready_fd = take_ready_fd();

        /* up to three kept fds per tracked process: raise the soft limit, give children the old one */
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                die(INIT_EXIT_SETUP);
        s->spawn_ctx.nofile = rl;
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);

        if (setup_signals(s) < 0)
                die(INIT_EXIT_SETUP);
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

        /* fail closed: without its filters no process may run in the sandbox */
        if (!s->have_filters && (seccomp_bpf_compile_exec_child(&s->spawn_ctx.filter) < 0 ||
                                 seccomp_load_sandbox() < 0))
                die(INIT_EXIT_SECCOMP);

        if (setup_socket(s) < 0)
                die(INIT_EXIT_SOCKET);
        signal_ready(ready_fd);
}

static struct init_server server; /* ~0.3 MiB: request buffer and tables, in .bss */

int main(int argc, char *argv[])
{
        struct init_server *s = &server;

        setup(s);
        for (;;) {
                struct epoll_event evs[EPOLL_BATCH];
                int n = epoll_wait(s->epfd, evs, EPOLL_BATCH, -1);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die(INIT_EXIT_LOOP);
                }
                for (int k = 0; k < n; k++) {
                        uint64_t tag = evs[k].data.u64;
                        unsigned slot = (unsigned)((tag >> 8) & 0xffffff);

                        switch (tag & 0xff) {
                        case EV_LISTEN:
                                on_accept(s);
                                break;
                        case EV_SIGNAL:
                                on_sigchld(s);
                                break;
                        case EV_CONN:
                                if (slot >= SBX_INIT_MAX_CONNS || s->conns[slot].fd < 0 ||
                                    s->conns[slot].gen != (uint32_t)(tag >> 32))
                                        break; /* stale: closed earlier in this batch */
                                if (evs[k].events & EPOLLIN)
                                        conn_read(s, slot);
                                else if (evs[k].events & (EPOLLHUP | EPOLLERR))
                                        conn_close(s, slot);
                                break;
                        }
                }
        }
}
