// SPDX-License-Identifier: Apache-2.0
/*
 * Parent side of a sandbox launch (see sandbox.h) and the per-sandbox directories.
 * Blocking; runs on a worker thread of the daemon. No logging.
 */
#include "sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child-internal.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "init-proto.h"

#define LAUNCH_TIMEOUT_MS 10000

/* Map ids from..from+65535 of pid's new user namespace to base..base+65535. */
static int write_id_maps_from(pid_t pid, uid_t from, uid_t base, struct sbx_err *err)
{
        char path[64], map[64];
        int r;

        snprintf(map, sizeof map, "%u %u %u\n", (unsigned)from, (unsigned)base, SBX_UID_RANGE);
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int)pid);
        r = write_file_at(AT_FDCWD, path, map);
        if (r < 0)
                return sbx_err_set(err, r, "cannot write uid map of pid %d: %s", (int)pid, strerror(-r));
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int)pid);
        r = write_file_at(AT_FDCWD, path, map);
        if (r < 0)
                return sbx_err_set(err, r, "cannot write gid map of pid %d: %s", (int)pid, strerror(-r));
        return 0;
}

static int write_id_maps(pid_t pid, uid_t base, struct sbx_err *err)
{
        return write_id_maps_from(pid, 0, base, err);
}

/* A user namespace (fd) mapping from.. to base..: what an idmapped mount of a tree owned by
 * from.. needs to show it owned by the sandbox's ids. A throwaway child holds it while the maps
 * are written; the fd keeps it alive after the child is gone. */
static int userns_for_map(uid_t from, uid_t base, int *ret_fd, struct sbx_err *err)
{
        struct clone_args ca = { .flags = CLONE_NEWUSER, .exit_signal = SIGCHLD };
        int r = 0, status;
        char path[64];
        pid_t pid;

        pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (pid < 0)
                return sbx_err_set(err, -errno, "cannot clone into a new user namespace: %m");
        if (pid == 0) {
                /* only async-signal-safe calls here; the parent kills us when it has the fd (not
                 * a pipe's EOF: other launches fork meanwhile and would hold its write end) */
                for (;;)
                        pause();
        }
        r = write_id_maps_from(pid, from, base, err);
        if (r >= 0) {
                snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
                *ret_fd = open(path, O_RDONLY | O_CLOEXEC);
                if (*ret_fd < 0)
                        r = sbx_err_set(err, -errno, "cannot open '%s': %m", path);
        }
        (void)kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return r;
}

/* A detached, idmapped, read-only copy of the tree at path. */
static int idmapped_tree(const char *path, int userns_fd, bool recursive, int *ret_fd, struct sbx_err *err)
{
        struct mount_attr attr = {
                .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                .userns_fd = (uint64_t)userns_fd,
        };
        _cleanup_close_ int fd = -EBADF;

        fd = (int)syscall(SYS_open_tree, AT_FDCWD, path,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot clone mount tree '%s': %m", path);
        if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof attr) < 0)
                return sbx_err_set(err, -errno, "cannot idmap '%s': %m", path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int send_go(int sock)
{
        struct child_msg m = { .type = CHILD_MSG_GO };

        return send(sock, &m, sizeof m, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* Staging mount points inside the sandbox dir: "l0".."l<n_lowers-1>" (the layers, topmost
 * first, as overlay's lowerdir lists them), then "bind0".."bind3". */
static void stage_name(const struct sandbox_launch *l, size_t i, char *buf, size_t size)
{
        if (i < l->n_lowers)
                snprintf(buf, size, "l%u", (unsigned)i);
        else
                snprintf(buf, size, "bind%u", (unsigned)((i - l->n_lowers) % 10));
}

/* Detach the staged mounts from sbxd's mount namespace (the sandbox has its own copies by now). */
static void unstage(const struct sandbox_launch *l, int dir_fd, size_t n)
{
        char name[16];

        for (size_t i = 0; i < n; i++) {
                stage_name(l, i, name, sizeof name);
                _cleanup_close_ int fd = openat(dir_fd, name, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                char proc[64];
                if (fd < 0)
                        continue;
                snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
                (void)umount2(proc, MNT_DETACH);
        }
}

/*
 * Attach idmapped read-only copies of the layers (and the first n_binds binds) inside the sandbox
 * dir, in sbxd's private mount namespace (daemon/main.c unshares it at start); a child's
 * unshare(CLONE_NEWNS) copies them. (Kernel 6.18 refuses move_mount of a detached tree into a
 * namespace owned by another user namespace, so they cannot simply be passed as fds.)
 * *n_staged counts what is attached, also on failure (for unstage).
 */
static int stage_mounts(const struct sandbox_launch *l, int userns_fd, int dir_fd, size_t n_binds, size_t *n_staged,
                        struct sbx_err *err)
{
        for (size_t i = 0; i < l->n_lowers + n_binds; i++) {
                _cleanup_close_ int fd = -EBADF, own_ns = -EBADF;
                char name[16];
                int r = 0;

                /* a snapshot layer owned by another sandbox's ids gets a map of its own */
                if (i < l->n_lowers && l->lower_bases && l->lower_bases[i] != 0)
                        r = userns_for_map(l->lower_bases[i], l->uid_base, &own_ns, err);
                if (r < 0)
                        return r;
                if (i < l->n_lowers)
                        r = idmapped_tree(l->lowers[i], own_ns >= 0 ? own_ns : userns_fd, false, &fd, err);
                else
                        r = idmapped_tree(l->binds[i - l->n_lowers].source, userns_fd, true, &fd, err);
                if (r < 0)
                        return r;
                stage_name(l, i, name, sizeof name);
                if (mkdirat(dir_fd, name, 0755) < 0 && errno != EEXIST)
                        return sbx_err_set(err, -errno, "cannot create staging dir '%s/%s': %m", l->dir, name);
                if (syscall(SYS_move_mount, fd, "", dir_fd, name, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                        return sbx_err_set(err, -errno, "cannot attach the template layer at '%s/%s': %m", l->dir,
                                           name);
                (*n_staged)++;
        }
        return 0;
}

/* "lowerdir=l0:l1:...,upperdir=upper,workdir=work,userxattr" */
static int overlay_options(const struct sandbox_launch *l, char *buf, size_t size)
{
        size_t n = 0;
        int k;

        k = snprintf(buf, size, "lowerdir=");
        if (k < 0 || (size_t)k >= size)
                return -ENAMETOOLONG;
        n = (size_t)k;
        for (size_t i = 0; i < l->n_lowers; i++) {
                k = snprintf(buf + n, size - n, "%sl%u", i ? ":" : "", (unsigned)i);
                if (k < 0 || (size_t)k >= size - n)
                        return -ENAMETOOLONG;
                n += (size_t)k;
        }
        k = snprintf(buf + n, size - n, ",upperdir=upper,workdir=work,userxattr");
        if (k < 0 || (size_t)k >= size - n)
                return -ENAMETOOLONG;
        return 0;
}

/* Receive one launch message; ret_len = its size. -ETIMEDOUT, or 0 with *ret_len 0 on EOF. */
static int recv_launch_msg(int sock, uint64_t deadline, struct child_msg *m, size_t *ret_len)
{
        for (;;) {
                uint64_t now = now_usec();
                int timeout = now >= deadline ? 0 : (int)((deadline - now) / 1000) + 1;
                struct pollfd p = { .fd = sock, .events = POLLIN };
                int r = poll(&p, 1, timeout);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return -ETIMEDOUT;
                ssize_t n = recv(sock, m, sizeof *m, 0);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0)
                        return -errno;
                *ret_len = (size_t)n;
                return 0;
        }
}

static void kill_and_reap(pid_t pid)
{
        if (pid <= 0)
                return;
        (void)kill(pid, SIGKILL);
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
                ;
}

/* What both children of a launch or a volume need: the layer count checked, the launch socket pair
 * (SEQPACKET) and the sandbox dir opened (O_NOFOLLOW). */
static int launch_prepare(const struct sandbox_launch *l, int *ret_parent, int *ret_child, int *ret_dir,
                          struct sbx_err *err)
{
        int sv[2];

        if (l->n_lowers == 0 || l->n_lowers > SBX_SANDBOX_MAX_LOWERS)
                return sbx_err_set(err, -E2BIG, "a sandbox needs 1 to %d layers, not %zu", SBX_SANDBOX_MAX_LOWERS,
                                   l->n_lowers);
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
                return sbx_err_set(err, -errno, "cannot create launch socket: %m");
        *ret_parent = sv[0];
        *ret_child = sv[1];
        *ret_dir = open(l->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (*ret_dir < 0)
                return sbx_err_set(err, -errno, "cannot open sandbox dir '%s': %m", l->dir);
        return 0;
}

int sandbox_launch(const struct sandbox_launch *l, struct sandbox_proc *ret, struct sbx_err *err)
{
        _cleanup_close_ int sock_parent = -EBADF, sock_child = -EBADF, userns_fd = -EBADF;
        _cleanup_close_ int pidfd = -EBADF, dir_fd_rw = -EBADF;
        size_t n_staged = 0;
        struct child_args args = { .l = l };
        struct clone_args ca = { .flags = CLONE_NEWUSER, .exit_signal = SIGCHLD };
        pid_t outer = -1, init_pid = -1;
        uint64_t t0 = now_usec(), t1 = 0, t2 = 0;
        uint64_t deadline = t0 + LAUNCH_TIMEOUT_MS * 1000ULL;
        struct child_msg m;
        size_t len;
        char path[64];
        int r;

        if (l->n_binds > SBX_SANDBOX_MAX_BINDS)
                return sbx_err_set(err, -E2BIG, "too many binds");
        r = launch_prepare(l, &sock_parent, &sock_child, &dir_fd_rw, err);
        if (r < 0)
                return r;
        args.sync_fd = sock_child;
        args.parent_pid = getpid();
        if (overlay_options(l, args.overlay_opts, sizeof args.overlay_opts) < 0)
                return sbx_err_set(err, -ENAMETOOLONG, "overlay options too long");
        snprintf(args.tmp_opts, sizeof args.tmp_opts, "mode=1777,size=%llu", (unsigned long long)l->tmp_size);

        outer = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (outer < 0)
                return sbx_err_set(err, -errno, "cannot clone into a new user namespace: %m");
        if (outer == 0)
                child_outer(&args); /* never returns */
        sock_child = safe_close(sock_child);

        r = write_id_maps(outer, l->uid_base, err);
        if (r < 0)
                goto fail;
        r = cgroup_attach(l->cg, l->cg_name, outer, err);
        if (r < 0)
                goto fail;
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)outer);
        userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (userns_fd < 0) {
                r = sbx_err_set(err, -errno, "cannot open '%s': %m", path);
                goto fail;
        }
        r = stage_mounts(l, userns_fd, dir_fd_rw, l->n_binds, &n_staged, err);
        if (r < 0)
                goto fail;
        /* sync #1: maps written, cgroups joined, mounts staged */
        r = send_go(sock_parent);
        if (r < 0) {
                sbx_err_set(err, r, "cannot start the sandbox child: %s", strerror(-r));
                goto fail;
        }

        t1 = now_usec();
        /* sync #2: the outer child reports PID 1, or an error */
        r = recv_launch_msg(sock_parent, deadline, &m, &len);
        if (r == 0 && len == sizeof m && m.type == CHILD_MSG_PID && m.pid > 0)
                init_pid = m.pid;
        else if (r == 0 && len == sizeof m && m.type == CHILD_MSG_ERROR) {
                r = sbx_err_set(err, -(m.error ? m.error : EIO), "sandbox setup failed at '%s': %s",
                                child_step_to_string(m.step), strerror(m.error));
                goto fail;
        } else {
                r = sbx_err_set(err, r < 0 ? r : -EPROTO, "sandbox child vanished before reporting PID 1");
                goto fail;
        }
        while (waitpid(outer, NULL, 0) < 0 && errno == EINTR)
                ;
        outer = -1;
        unstage(l, dir_fd_rw, n_staged);
        n_staged = 0;
        pidfd = (int)syscall(SYS_pidfd_open, init_pid, 0);
        if (pidfd < 0) {
                r = sbx_err_set(err, -errno, "cannot open pidfd of sandbox PID 1: %m");
                goto fail;
        }
        r = cgroup_attach_init(l->cg, l->cg_name, init_pid, err);
        if (r < 0)
                goto fail;

        t2 = now_usec();
        /* sync #3: PID 1 built the root and sbx-init listens (ready byte), or an error */
        r = recv_launch_msg(sock_parent, deadline, &m, &len);

        if (r == 0 && len == 1 && ((char *)&m)[0] == SBX_INIT_READY_BYTE) {
                ret->pid = init_pid;
                ret->pidfd = TAKE_FD(pidfd);
                ret->us_prepare = (uint32_t)(t1 - t0);
                ret->us_namespaces = (uint32_t)(t2 - t1);
                ret->us_root = (uint32_t)(now_usec() - t2);
                if (proc_start_time(init_pid, &ret->start_time) < 0)
                        ret->start_time = 0;
                return 0;
        }
        if (r == 0 && len == sizeof m && m.type == CHILD_MSG_ERROR)
                r = sbx_err_set(err, -(m.error ? m.error : EIO), "sandbox setup failed at '%s': %s",
                                child_step_to_string(m.step), strerror(m.error));
        else
                r = sbx_err_set(err, r < 0 ? r : -EPROTO, "sbx-init did not become ready%s",
                                r == -ETIMEDOUT ? " in time" : "");
fail:
        unstage(l, dir_fd_rw, n_staged);
        kill_and_reap(outer);
        kill_and_reap(init_pid);
        return r;
}

int sandbox_volume_open(const struct sandbox_launch *l, int *ret_fd, struct sbx_err *err)
{
        _cleanup_close_ int sock_parent = -EBADF, sock_child = -EBADF, userns_fd = -EBADF, dir_fd = -EBADF;
        struct child_args args = { .l = l };
        struct clone_args ca = { .flags = CLONE_NEWUSER, .exit_signal = SIGCHLD };
        uint64_t deadline = now_usec() + LAUNCH_TIMEOUT_MS * 1000ULL;
        char path[64], cbuf[CMSG_SPACE(sizeof(int))];
        size_t n_staged = 0, n = 0;
        struct child_msg m;
        pid_t pid;
        int r, fds[1] = { -EBADF };

        r = launch_prepare(l, &sock_parent, &sock_child, &dir_fd, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < l->n_lowers; i++) {
                int k = snprintf(args.overlay_opts + n, sizeof args.overlay_opts - n, "%sl%u", i ? ":" : "",
                                 (unsigned)i);
                if (k < 0 || (size_t)k >= sizeof args.overlay_opts - n)
                        return sbx_err_set(err, -ENAMETOOLONG, "overlay options too long");
                n += (size_t)k;
        }
        args.sync_fd = sock_child;
        args.parent_pid = getpid();

        pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (pid < 0)
                return sbx_err_set(err, -errno, "cannot clone into a new user namespace: %m");
        if (pid == 0)
                child_volume(&args); /* never returns */
        sock_child = safe_close(sock_child);

        r = write_id_maps(pid, l->uid_base, err);
        if (r < 0)
                goto out;
        snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
        userns_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (userns_fd < 0) {
                r = sbx_err_set(err, -errno, "cannot open '%s': %m", path);
                goto out;
        }
        r = stage_mounts(l, userns_fd, dir_fd, 0, &n_staged, err);
        if (r < 0)
                goto out;
        r = send_go(sock_parent);
        if (r < 0) {
                sbx_err_set(err, r, "cannot start the volume child: %s", strerror(-r));
                goto out;
        }
        for (;;) {
                struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                                     .msg_controllen = sizeof cbuf };
                struct pollfd p = { .fd = sock_parent, .events = POLLIN };
                uint64_t now = now_usec();
                bool bad = false;
                ssize_t got;

                r = poll(&p, 1, now >= deadline ? 0 : (int)((deadline - now) / 1000) + 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0) {
                        r = sbx_err_set(err, r < 0 ? -errno : -ETIMEDOUT, "the volume child did not answer");
                        goto out;
                }
                got = recvmsg(sock_parent, &mh, MSG_CMSG_CLOEXEC);
                if (got < 0 && errno == EINTR)
                        continue;
                (void)cmsg_take_fds(&mh, fds, 1, &bad);
                if (got == (ssize_t)sizeof m && m.type == CHILD_MSG_VOLUME && fds[0] >= 0 && !bad) {
                        r = 0;
                } else if (got == (ssize_t)sizeof m && m.type == CHILD_MSG_ERROR) {
                        r = sbx_err_set(err, -(m.error ? m.error : EIO), "cannot mount the stopped sandbox's files at '%s': %s",
                                        child_step_to_string(m.step), strerror(m.error));
                } else {
                        r = sbx_err_set(err, -EPROTO, "the volume child vanished");
                }
                break;
        }
out:
        unstage(l, dir_fd, n_staged);
        kill_and_reap(pid);
        if (r < 0) {
                safe_close(fds[0]);
                return r;
        }
        *ret_fd = fds[0];
        return 0;
}

int sandbox_dirs_prepare(const char *dir, uid_t uid, struct sbx_err *err)
{
        static const char *const subs[] = { "upper", "work", "merged" };
        _cleanup_close_ int dfd = -EBADF;

        if (mkdir(dir, 0711) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create '%s': %m", dir);
        dfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (dfd < 0)
                return sbx_err_set(err, -errno, "cannot open '%s': %m", dir);
        for (size_t i = 0; i < ELEMENTSOF(subs); i++) {
                if (mkdirat(dfd, subs[i], 0755) < 0 && errno != EEXIST)
                        return sbx_err_set(err, -errno, "cannot create '%s/%s': %m", dir, subs[i]);
                /* the sandbox's root owns its upper and work dirs */
                if (i < 2 && fchownat(dfd, subs[i], uid, uid, AT_SYMLINK_NOFOLLOW) < 0)
                        return sbx_err_set(err, -errno, "cannot chown '%s/%s': %m", dir, subs[i]);
        }
        return 0;
}

static int remove_at(int parent, const char *name, int depth)
{
        _cleanup_close_ int fd = -EBADF;
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR && errno != EPERM)
                return -errno;
        if (depth > 4096)
                return -ELOOP;
        fd = openat(parent, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int q = remove_at(dirfd(d), de->d_name, depth + 1);
                if (q < 0 && r == 0)
                        r = q;
        }
        closedir(d);
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

/* A staging mount point name: "lower" (older layout), "merged", "l<N>", "bind<N>". */
static bool staged_name(const char *n)
{
        if (strcmp(n, "lower") == 0 || strcmp(n, "merged") == 0)
                return true;
        if (n[0] == 'l' && n[1])
                return strspn(n + 1, "0123456789") == strlen(n + 1);
        if (strncmp(n, "bind", 4) == 0 && n[4])
                return strspn(n + 4, "0123456789") == strlen(n + 4);
        return false;
}

int sandbox_dirs_remove(const char *dir)
{
        /* a stale mount (crash mid-create) would make the removal fail or reach into it */
        _cleanup_close_ int fd = -EBADF;
        char sub[PATH_MAX];
        DIR *d;
        struct dirent *de;

        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while ((de = readdir(d)))
                if (staged_name(de->d_name) &&
                    (size_t)snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) < sizeof sub)
                        (void)umount2(sub, MNT_DETACH | UMOUNT_NOFOLLOW);
        closedir(d);
        return remove_at(AT_FDCWD, dir, 0);
}

int proc_start_time(pid_t pid, uint64_t *ret)
{
        char path[64], buf[1024], *p;
        int r;

        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        r = read_file_at(AT_FDCWD, path, buf, sizeof buf);
        if (r < 0)
                return r;
        /* comm may contain spaces and parens: fields start after the last ')' */
        p = strrchr(buf, ')');
        if (!p)
                return -EINVAL;
        p++;
        /* field 3 is state; starttime is field 22 */
        for (int field = 2; field < 22 && p; field++)
                p = strchr(p + 1, ' ');
        if (!p)
                return -EINVAL;
        *ret = strtoull(p + 1, NULL, 10);
        return 0;
}

int proc_pidfd_verified(pid_t pid, uint64_t start_time, int *ret_pidfd)
{
        _cleanup_close_ int fd = -EBADF;
        uint64_t st;
        int r;

        fd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return -errno;
        /* the pidfd pins the pid: if the start time matches now, it is the same process */
        r = proc_start_time(pid, &st);
        if (r < 0)
                return r;
        if (start_time && st != start_time)
                return -ESRCH;
        *ret_pidfd = TAKE_FD(fd);
        return 0;
}
