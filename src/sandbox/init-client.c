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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"

static_assert(sizeof(struct init_msg) + sizeof(struct init_spawn) + SBX_MAX_ARG_BYTES + SBX_MAX_CWD + 1 <=
                      SBX_INIT_MAX_MSG,
              "the largest valid INIT_SPAWN must fit in one packet");
static_assert(SBX_INIT_MAX_REPLY <= SBX_INIT_MAX_MSG, "the largest reply must fit in one packet");

#define ERRNO_MAX 4095 /* larger "errno" values from sbx-init are lies */

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

int init_client_build_spawn(uint64_t id, char *const argv[], char *const envp[], const char *cwd, uint32_t flags,
                            void **ret_buf, size_t *ret_len)
{
        size_t argc = 0, envc = 0, bytes = 0, cwd_len, total;
        char *buf, *p;
        int r;

        if (flags & ~(uint32_t)INIT_SPAWN_INTO_CGROUP)
                return -EINVAL;
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

        total = sizeof(struct init_msg) + sizeof(struct init_spawn) + bytes + cwd_len + 1;
        buf = malloc(total);
        if (!buf)
                return -ENOMEM;
        struct init_msg h = { .type = INIT_SPAWN, .len = (uint32_t)(total - sizeof h), .id = id };
        struct init_spawn s = { .flags = flags, .argc = (uint32_t)argc, .envc = (uint32_t)envc };
        memcpy(buf, &h, sizeof h);
        memcpy(buf + sizeof h, &s, sizeof s);
        p = buf + sizeof h + sizeof s;
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
                           int cgroup_fd)
{
        _cleanup_free_ void *buf = NULL;
        size_t len;
        int r;

        r = init_client_build_spawn(id, argv, envp, cwd, cgroup_fd >= 0 ? INIT_SPAWN_INTO_CGROUP : 0, &buf, &len);
        if (r < 0)
                return r;
        return send_packet(fd, buf, len, &cgroup_fd, cgroup_fd >= 0 ? 1 : 0);
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
                return 0;
        case INIT_SPAWNED: {
                struct init_spawned *s = &m->spawned;
                if (len != sizeof *s)
                        return -EBADMSG;
                memcpy(s, p, len);
                if (s->reserved != 0)
                        return -EBADMSG;
                if (s->error == 0)
                        return s->pid > 0 && s->step == INIT_STEP_NONE && n_fds == 3 ? 0 : -EBADMSG;
                return s->pid == 0 && s->error > 0 && errno_valid(s->error) && s->step > INIT_STEP_NONE &&
                                       s->step <= INIT_STEP_PROTO && n_fds == 0
                               ? 0
                               : -EBADMSG;
        }
        case INIT_EXITED:
                if (len != sizeof m->exited || n_fds != 0)
                        return -EBADMSG;
                memcpy(&m->exited, p, len);
                return m->exited.pid > 0 && wait_status_valid(m->exited.status) ? 0 : -EBADMSG;
        case INIT_RESULT:
        case INIT_FDS:
                if (len != sizeof m->result)
                        return -EBADMSG;
                memcpy(&m->result, p, len);
                if (!errno_valid(m->result.error) || m->result.reserved != 0)
                        return -EBADMSG;
                if (type == INIT_FDS && m->result.error == 0)
                        return n_fds == 2 ? 0 : -EBADMSG;
                return n_fds == 0 ? 0 : -EBADMSG;
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

/* Received fds must be pipe ends with the expected access mode; they become non-blocking. */
static int check_fds(struct init_client_msg *m)
{
        static const int spawned_modes[] = { O_WRONLY, O_RDONLY, O_RDONLY };
        static const int fds_modes[] = { O_RDONLY, O_RDONLY };
        const int *modes = m->type == INIT_SPAWNED ? spawned_modes : fds_modes;

        for (unsigned i = 0; i < m->n_fds; i++) {
                struct stat st;
                int fl;

                if (fstat(m->fds[i], &st) < 0 || !S_ISFIFO(st.st_mode))
                        return -EBADMSG;
                fl = fcntl(m->fds[i], F_GETFL);
                if (fl < 0 || (fl & O_ACCMODE) != modes[i])
                        return -EBADMSG;
                if (!(fl & O_NONBLOCK) && fcntl(m->fds[i], F_SETFL, fl | O_NONBLOCK) < 0)
                        return -errno;
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
