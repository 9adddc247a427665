// SPDX-License-Identifier: Apache-2.0
/*
 * sbxd's client of the sbx-init protocol (init-client.h). Encodes requests, sends them without
 * blocking, and validates every reply before handing it over: sbx-init runs under the sandbox's
 * root, so a reply is as trustworthy as the sandbox's own code. Nothing here logs or blocks.
 */
#include "init-client.h"

#include <assert.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"

static_assert(sizeof(struct init_msg) + sizeof(struct init_spawn) + sizeof(struct init_spawn_ext) +
                              SBX_MAX_ARG_BYTES + SBX_MAX_CWD + 1 <=
                      SBX_INIT_MAX_MSG,
              "the largest valid INIT_SPAWN must fit in one packet");
static_assert(SBX_INIT_MAX_REPLY <= SBX_INIT_MAX_MSG, "the largest reply must fit in one packet");

#define ERRNO_MAX 4095 /* larger "errno" values from sbx-init are lies */
#define PTMX_MAJOR 5   /* TTYAUX_MAJOR: /dev/ptmx is 5:2, and so is every master opened from it */
#define PTMX_MINOR 2

void init_client_msg_init(struct init_client_msg *m)
{
        memset(m, 0, sizeof *m);
        for (size_t i = 0; i < ELEMENTSOF(m->fds); i++)
                m->fds[i] = -EBADF;
}

void init_client_msg_release(struct init_client_msg *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < ELEMENTSOF(m->fds); i++)
                m->fds[i] = safe_close(m->fds[i]);
        free(m->procs);
        init_client_msg_init(m);
}

int init_client_connect(int netns_fd, int *ret_fd)
{
        _cleanup_close_ int orig = -EBADF, fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t name_len = strlen(SBX_INIT_SOCKET_NAME);
        int sndbuf = SBX_INIT_MAX_MSG, r = 0;

        orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        if (orig < 0)
                return -errno;
        if (setns(netns_fd, CLONE_NEWNET) < 0)
                return -errno;
        /* a socket stays in the netns it was created in, abstract names included */
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                r = -errno;
        if (setns(orig, CLONE_NEWNET) < 0)
                return -errno;
        if (r < 0)
                return r;

        /* The kernel doubles this and caps the request at wmem_max (212992 by default), which
         * still leaves room for the largest INIT_SPAWN; a failure shows up as -EMSGSIZE later. */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

        memcpy(sa.sun_path + 1, SBX_INIT_SOCKET_NAME, name_len);
        if (connect(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + name_len)) <
            0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int send_packet(int fd, const void *buf, size_t len, const int *fds, unsigned n_fds)
{
        union {
                struct cmsghdr h;
                char b[CMSG_SPACE(sizeof(int))];
        } cbuf;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        assert(n_fds <= 1);
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
                n = sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if ((size_t)n != len)
                return -EIO; /* seqpacket sends are atomic; never seen */
        return 0;
}

static int send_simple(int fd, uint32_t type, uint64_t id, const void *payload, uint32_t len)
{
        union {
                struct init_msg h;
                char b[sizeof(struct init_msg) + 16];
        } buf;

        assert(len <= 16);
        buf.h = (struct init_msg){ .type = type, .len = len, .id = id };
        if (len > 0)
                memcpy(buf.b + sizeof buf.h, payload, len);
        return send_packet(fd, buf.b, sizeof buf.h + len, NULL, 0);
}

int init_client_send_hello(int fd)
{
        return send_simple(fd, INIT_HELLO, 0, NULL, 0);
}

int init_client_send_list(int fd)
{
        return send_simple(fd, INIT_LIST, 0, NULL, 0);
}

int init_client_send_release(int fd, uint64_t id)
{
        return send_simple(fd, INIT_RELEASE, id, NULL, 0);
}

int init_client_send_get_fds(int fd, uint64_t id)
{
        return send_simple(fd, INIT_GET_FDS, id, NULL, 0);
}

int init_client_send_close_stdin(int fd, uint64_t id)
{
        return send_simple(fd, INIT_CLOSE_STDIN, id, NULL, 0);
}

uint32_t init_client_spawn_version(uint32_t flags)
{
        return flags & (INIT_SPAWN_PTY | INIT_SPAWN_USER | INIT_SPAWN_KEEP_STDIN) ? 2 : 1;
}

int init_client_send_signal(int fd, uint64_t id, int signo)
{
        struct init_signal s = { .signo = signo };

        if (signo < 0 || signo >= _NSIG)
                return -EINVAL;
        return send_simple(fd, INIT_SIGNAL, id, &s, sizeof s);
}

/* Count a NULL-terminated string vector into *ret_n and add its bytes (with NULs) to *bytes,
 * stopping early once a limit is passed. */
static int strv_measure(char *const v[], size_t max_n, size_t *bytes, size_t *ret_n)
{
        size_t n = 0;

        for (; v && v[n]; n++) {
                if (n >= max_n)
                        return -E2BIG;
                size_t room = SBX_MAX_ARG_BYTES - *bytes;
                size_t l = strnlen(v[n], room);
                if (l >= room)
                        return -E2BIG;
                *bytes += l + 1;
        }
        *ret_n = n;
        return 0;
}

/* The extension's fields for these flags, or -EINVAL where they leave the protocol's bounds. */
static int spawn_ext(uint32_t flags, const struct init_spawn_opts *o, struct init_spawn_ext *ret)
{
        if ((flags & ~(uint32_t)INIT_SPAWN_FLAGS_ALL) ||
            ((flags & INIT_SPAWN_PTY) && (flags & INIT_SPAWN_KEEP_STDIN)))
                return -EINVAL;
        *ret = (struct init_spawn_ext){ 0 };
        if (flags & INIT_SPAWN_USER) {
                if (o->uid > SBX_INIT_MAX_ID || o->gid > SBX_INIT_MAX_ID)
                        return -EINVAL;
                ret->uid = o->uid;
                ret->gid = o->gid;
        }
        if (flags & INIT_SPAWN_PTY) {
                if (o->cols > SBX_MAX_PTY_SIZE || o->rows > SBX_MAX_PTY_SIZE)
                        return -EINVAL;
                ret->cols = o->cols;
                ret->rows = o->rows;
        }
        return 0;
}

int init_client_build_spawn(uint64_t id, char *const argv[], char *const envp[], const char *cwd,
                            const struct init_spawn_opts *opts, void **ret_buf, size_t *ret_len)
{
        static const struct init_spawn_opts none = { .cgroup_fd = -1 };
        size_t argc = 0, envc = 0, bytes = 0, cwd_len, ext_len, total;
        struct init_spawn_ext ext;
        uint32_t flags;
        char *buf, *p;
        int r;

        if (!opts)
                opts = &none;
        flags = opts->flags;
        r = spawn_ext(flags, opts, &ext);
        if (r < 0)
                return r;
        ext_len = flags & INIT_SPAWN_FLAGS_EXT ? sizeof ext : 0;
        r = strv_measure(argv, SBX_MAX_ARGV, &bytes, &argc);
        if (r < 0)
                return r;
        if (argc == 0)
                return -EINVAL;
        r = strv_measure(envp, SBX_INIT_MAX_ENVC, &bytes, &envc);
        if (r < 0)
                return r;
        if (!cwd)
                cwd = "/";
        if (cwd[0] != '/')
                return -EINVAL;
        cwd_len = strnlen(cwd, SBX_MAX_CWD + 1);
        if (cwd_len > SBX_MAX_CWD)
                return -E2BIG;

        total = sizeof(struct init_msg) + sizeof(struct init_spawn) + ext_len + bytes + cwd_len + 1;
        buf = malloc(total);
        if (!buf)
                return -ENOMEM;
        struct init_msg h = { .type = INIT_SPAWN, .len = (uint32_t)(total - sizeof h), .id = id };
        struct init_spawn s = { .flags = flags, .argc = (uint32_t)argc, .envc = (uint32_t)envc };
        memcpy(buf, &h, sizeof h);
        memcpy(buf + sizeof h, &s, sizeof s);
        p = buf + sizeof h + sizeof s;
        memcpy(p, &ext, ext_len);
        p += ext_len;
        for (size_t i = 0; i < argc; i++) {
                size_t l = strlen(argv[i]) + 1;
                memcpy(p, argv[i], l);
                p += l;
        }
        for (size_t i = 0; i < envc; i++) {
                size_t l = strlen(envp[i]) + 1;
                memcpy(p, envp[i], l);
                p += l;
        }
        memcpy(p, cwd, cwd_len + 1);
        *ret_buf = buf;
        *ret_len = total;
        return 0;
}

int init_client_send_spawn(int fd, uint64_t id, char *const argv[], char *const envp[], const char *cwd,
                           const struct init_spawn_opts *opts)
{
        struct init_spawn_opts o = opts ? *opts : (struct init_spawn_opts){ .cgroup_fd = -1 };
        _cleanup_free_ void *buf = NULL;
        size_t len;
        int r;

        o.flags &= ~(uint32_t)INIT_SPAWN_INTO_CGROUP;
        if (o.cgroup_fd >= 0)
                o.flags |= INIT_SPAWN_INTO_CGROUP;
        /* an older sbx-init takes unknown flags for a malformed packet and drops the connection */
        if (o.version != 0 && o.version < init_client_spawn_version(o.flags))
                return -EPROTONOSUPPORT;
        r = init_client_build_spawn(id, argv, envp, cwd, &o, &buf, &len);
        if (r < 0)
                return r;
        return send_packet(fd, buf, len, &o.cgroup_fd, o.cgroup_fd >= 0 ? 1 : 0);
}

static bool errno_valid(int32_t e)
{
        return e >= 0 && e <= ERRNO_MAX;
}

/* A raw wait status the kernel can produce for a terminated child. */
static bool wait_status_valid(int32_t st)
{
        return WIFEXITED(st) || (WIFSIGNALED(st) && WTERMSIG(st) < _NSIG);
}

static unsigned fd_count(uint32_t mask)
{
        return (unsigned)__builtin_popcount(mask);
}

/* INIT_FDS: {error, mask}; the mask must be one sbx-init can send, with that many fds. */
static int parse_fds(const uint8_t *p, uint32_t len, unsigned n_fds, struct init_client_msg *m)
{
        struct init_fds f;

        if (len != sizeof f)
                return -EBADMSG;
        memcpy(&f, p, sizeof f);
        if (!errno_valid(f.error))
                return -EBADMSG;
        m->result = (struct init_result){ .error = f.error };
        if (f.error != 0)
                return f.mask == 0 && n_fds == 0 ? 0 : -EBADMSG;
        /* a version-1 sbx-init: {0, reserved 0} and [stdout_r, stderr_r] (v2 never sends mask 0) */
        if (f.mask == 0 && n_fds == 2)
                f.mask = INIT_FD_STDOUT | INIT_FD_STDERR;
        switch (f.mask) {
        case INIT_FD_STDOUT | INIT_FD_STDERR:
        case INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR:
        case INIT_FD_PTY:
                break;
        default:
                return -EBADMSG;
        }
        if (n_fds != fd_count(f.mask))
                return -EBADMSG;
        m->fd_mask = f.mask;
        m->pty = f.mask == INIT_FD_PTY;
        return 0;
}

static int parse_list(const uint8_t *p, uint32_t len, struct init_client_msg *m)
{
        uint32_t count;

        if (len < sizeof count)
                return -EBADMSG;
        memcpy(&count, p, sizeof count);
        if (count > SBX_INIT_MAX_PROCS || len != sizeof count + (size_t)count * sizeof(struct init_proc_info))
                return -EBADMSG;
        if (count == 0)
                return 0;
        m->procs = calloc(count, sizeof(struct init_proc_info));
        if (!m->procs)
                return -ENOMEM;
        memcpy(m->procs, p + sizeof count, (size_t)count * sizeof(struct init_proc_info));
        m->n_procs = count;
        for (uint32_t i = 0; i < count; i++) {
                const struct init_proc_info *pi = &m->procs[i];
                if (pi->pid <= 0 || pi->exited > 1 || pi->reserved != 0 ||
                    (pi->exited && !wait_status_valid(pi->status)))
                        return -EBADMSG;
        }
        return 0;
}

static int parse_payload(uint32_t type, const uint8_t *p, uint32_t len, unsigned n_fds, struct init_client_msg *m)
{
        switch (type) {
        case INIT_HELLO_REPLY:
                if (len != sizeof m->version || n_fds != 0)
                        return -EBADMSG;
                memcpy(&m->version, p, len);
                return m->version >= 1 ? 0 : -EBADMSG;
        case INIT_SPAWNED: {
                struct init_spawned *s = &m->spawned;
                if (len != sizeof *s)
                        return -EBADMSG;
                memcpy(s, p, len);
                if (s->error == 0) {
                        if (s->pid <= 0 || s->step != INIT_STEP_NONE || (s->flags & ~(uint32_t)INIT_SPAWNED_PTY))
                                return -EBADMSG;
                        m->pty = s->flags & INIT_SPAWNED_PTY;
                        m->fd_mask = m->pty ? INIT_FD_PTY : INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR;
                        return n_fds == fd_count(m->fd_mask) ? 0 : -EBADMSG;
                }
                return s->pid == 0 && s->flags == 0 && s->error > 0 && errno_valid(s->error) &&
                                       s->step > INIT_STEP_NONE && s->step <= INIT_STEP_PROTO && n_fds == 0
                               ? 0
                               : -EBADMSG;
        }
        case INIT_EXITED:
                if (len != sizeof m->exited || n_fds != 0)
                        return -EBADMSG;
                memcpy(&m->exited, p, len);
                return m->exited.pid > 0 && wait_status_valid(m->exited.status) ? 0 : -EBADMSG;
        case INIT_RESULT:
                if (len != sizeof m->result)
                        return -EBADMSG;
                memcpy(&m->result, p, len);
                if (!errno_valid(m->result.error) || m->result.reserved != 0)
                        return -EBADMSG;
                return n_fds == 0 ? 0 : -EBADMSG;
        case INIT_FDS:
                return parse_fds(p, len, n_fds, m);
        case INIT_LIST_REPLY:
                if (n_fds != 0)
                        return -EBADMSG;
                return parse_list(p, len, m);
        default:
                return -EBADMSG;
        }
}

int init_client_parse(const void *buf, size_t len, unsigned n_fds, struct init_client_msg *ret)
{
        struct init_client_msg m;
        struct init_msg h;
        int r;

        if (len < sizeof h || len > SBX_INIT_MAX_REPLY || n_fds > SBX_INIT_MAX_FDS)
                return -EBADMSG;
        memcpy(&h, buf, sizeof h);
        if (h.len != len - sizeof h)
                return -EBADMSG;
        init_client_msg_init(&m);
        m.type = h.type;
        m.id = h.id;
        r = parse_payload(h.type, (const uint8_t *)buf + sizeof h, h.len, n_fds, &m);
        if (r < 0) {
                init_client_msg_release(&m);
                return r;
        }
        *ret = m;
        return 0;
}

/* Every pty master is an open of a ptmx node (5:2, /dev/ptmx or devpts' own); only then is
 * TIOCGPTN asked, since another driver could give that ioctl number another meaning. */
static bool is_pty_master(int fd, const struct stat *st)
{
        unsigned ptn;

        return S_ISCHR(st->st_mode) && major(st->st_rdev) == PTMX_MAJOR && minor(st->st_rdev) == PTMX_MINOR &&
               ioctl(fd, TIOCGPTN, &ptn) == 0;
}

/*
 * Received fds must be what fd_mask says, in its bit order: pipe ends with the expected access
 * mode (stdin write-only, stdout/stderr read-only), or a pty master (a character device, O_RDWR,
 * that answers TIOCGPTN). They become non-blocking.
 */
static int check_fds(struct init_client_msg *m)
{
        static const struct {
                uint32_t bit;
                int mode;
                bool chr;
        } kinds[] = {
                { INIT_FD_STDIN, O_WRONLY, false },
                { INIT_FD_STDOUT, O_RDONLY, false },
                { INIT_FD_STDERR, O_RDONLY, false },
                { INIT_FD_PTY, O_RDWR, true },
        };
        unsigned i = 0;

        if (m->n_fds != fd_count(m->fd_mask))
                return -EBADMSG;
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                struct stat st;
                int fl;

                if (!(m->fd_mask & kinds[k].bit))
                        continue;
                if (fstat(m->fds[i], &st) < 0)
                        return -EBADMSG;
                if (kinds[k].chr ? !is_pty_master(m->fds[i], &st) : !S_ISFIFO(st.st_mode))
                        return -EBADMSG;
                fl = fcntl(m->fds[i], F_GETFL);
                if (fl < 0 || (fl & O_ACCMODE) != kinds[k].mode)
                        return -EBADMSG;
                if (!(fl & O_NONBLOCK) && fcntl(m->fds[i], F_SETFL, fl | O_NONBLOCK) < 0)
                        return -errno;
                i++;
        }
        return 0;
}

static void close_all(int *fds, unsigned n)
{
        for (unsigned i = 0; i < n; i++)
                (void)safe_close(fds[i]);
}

int init_client_recv(int fd, struct init_client_msg *ret)
{
        union {
                struct init_msg align;
                char b[SBX_INIT_MAX_REPLY];
        } buf;
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(sizeof(int) * SBX_INIT_MAX_FDS)];
        } cbuf;
        struct iovec iov = { .iov_base = buf.b, .iov_len = sizeof buf.b };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = cbuf.b,
                .msg_controllen = sizeof cbuf.b,
        };
        /* CMSG_SPACE rounds up, so one header may hold a few more fds than asked for */
        int fds[SBX_INIT_MAX_FDS + 8];
        unsigned n_fds = 0;
        bool bad = false;
        struct init_client_msg m;
        ssize_t n;
        int r;

        do
                n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;

        n_fds = (unsigned)cmsg_take_fds(&mh, fds, ELEMENTSOF(fds), &bad);
        if (n == 0 && n_fds == 0 && !bad)
                return -ECONNRESET;
        if (bad || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n_fds > SBX_INIT_MAX_FDS) {
                close_all(fds, n_fds);
                return -EBADMSG;
        }
        r = init_client_parse(buf.b, (size_t)n, n_fds, &m);
        if (r < 0) {
                close_all(fds, n_fds);
                return r;
        }
        for (unsigned i = 0; i < n_fds; i++)
                m.fds[i] = fds[i];
        m.n_fds = n_fds;
        r = check_fds(&m);
        if (r < 0) {
                init_client_msg_release(&m);
                return r;
        }
        *ret = m;
        return 0;
}
