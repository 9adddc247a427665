// SPDX-License-Identifier: Apache-2.0
/*
 * The only code that runs between clone() and execve() (STYLE B8.7). Two processes run it:
 *   the outer child (in the new user namespace, still in every other host namespace) and
 *   PID 1 of the sandbox, forked by the outer child after it unshared the other namespaces.
 * Rules: no allocation, no stdio, no logging; every failure sends (step, errno) on the launch socket
 * and _exit()s (the only "die" pattern allowed in the project). Paths are relative to the
 * sandbox dir; every ancestor of the data dir must be searchable by others (sbxd checks at start).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "child-internal.h"
#include "init-proto.h"

static const char *const step_names[_STEP_MAX] = {
        [STEP_RECV_GO] = "receive go",           [STEP_SETID] = "become root in the user namespace",
        [STEP_UNSHARE] = "unshare namespaces",   [STEP_FORK_INIT] = "fork PID 1",
        [STEP_MOUNT_PRIVATE] = "make mounts private", [STEP_MOUNT_LOWER] = "attach the template layer",
        [STEP_MOUNT_OVERLAY] = "mount the overlay root", [STEP_MOUNT_BIND] = "attach a read-only bind",
        [STEP_MOUNT_PROC] = "mount /proc",        [STEP_MOUNT_DEV] = "set up /dev",
        [STEP_MOUNT_TMP] = "mount /tmp",          [STEP_MOUNT_SYS] = "mount /sys",
        [STEP_MASK_PROC] = "mask /proc paths",    [STEP_PIVOT_ROOT] = "pivot_root",
        [STEP_HOSTNAME] = "set the hostname",     [STEP_LOOPBACK] = "bring up lo",
        [STEP_STDIO] = "set up stdio",            [STEP_RLIMITS] = "set resource limits",
        [STEP_CAPS] = "drop capabilities",       [STEP_VOLUME_MOUNT] = "mount the overlay volume",
        [STEP_VOLUME_SEND] = "hand over the volume",
        [STEP_NO_NEW_PRIVS] = "set no_new_privs", [STEP_EXEC_INIT] = "execute sbx-init",
};

const char *child_step_to_string(int step)
{
        return step > 0 && step < _STEP_MAX && step_names[step] ? step_names[step] : "unknown step";
}

/* clock_gettime is a vDSO call: safe here */
static uint64_t mono_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static _Noreturn void child_die(const struct child_args *a, int step, int error)
{
        struct child_msg m = { .type = CHILD_MSG_ERROR, .step = step, .error = error };

        (void)!send(a->sync_fd, &m, sizeof m, MSG_NOSIGNAL);
        _exit(1);
}

#define CHECK(a, step, expr)                                  \
        do {                                                  \
                if ((expr) < 0)                               \
                        child_die((a), (step), errno);        \
        } while (0)

/* Bind the host device node at src onto an empty file at dst (mknod is not allowed in a user ns). */
static int bind_dev(const char *src, const char *dst)
{
        int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0666);

        if (fd < 0)
                return -1;
        close(fd);
        return mount(src, dst, NULL, MS_BIND, NULL);
}

static void setup_dev(const struct child_args *a)
{
        static const char *const nodes[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                                             "/dev/tty" };

        CHECK(a, STEP_MOUNT_DEV, mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536"));
        for (unsigned i = 0; i < sizeof nodes / sizeof nodes[0]; i++)
                CHECK(a, STEP_MOUNT_DEV, bind_dev(nodes[i], nodes[i] + 1)); /* "/dev/x" onto "dev/x" */
        CHECK(a, STEP_MOUNT_DEV, mkdir("dev/pts", 0755));
        CHECK(a, STEP_MOUNT_DEV, mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                                       "newinstance,ptmxmode=0666,mode=0620,gid=5"));
        CHECK(a, STEP_MOUNT_DEV, symlink("pts/ptmx", "dev/ptmx"));
        CHECK(a, STEP_MOUNT_DEV, mkdir("dev/shm", 01777));
        CHECK(a, STEP_MOUNT_DEV, mount("tmpfs", "dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"));
        CHECK(a, STEP_MOUNT_DEV, symlink("/proc/self/fd", "dev/fd"));
        CHECK(a, STEP_MOUNT_DEV, symlink("/proc/self/fd/0", "dev/stdin"));
        CHECK(a, STEP_MOUNT_DEV, symlink("/proc/self/fd/1", "dev/stdout"));
        CHECK(a, STEP_MOUNT_DEV, symlink("/proc/self/fd/2", "dev/stderr"));
}

/* Hide kernel interfaces that leak host information or allow host-wide effects. */
static void mask_proc(const struct child_args *a)
{
        static const char *const files[] = { "proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug",
                                             "proc/sysrq-trigger", "proc/latency_stats", "proc/kallsyms" };
        static const char *const dirs[] = { "proc/acpi", "proc/scsi", "sys/firmware" };
        static const char *const ro[] = { "proc/sys", "proc/irq", "proc/bus", "proc/fs" };
        struct stat st;

        for (unsigned i = 0; i < sizeof files / sizeof files[0]; i++)
                if (lstat(files[i], &st) == 0)
                        CHECK(a, STEP_MASK_PROC, mount("dev/null", files[i], NULL, MS_BIND, NULL));
        for (unsigned i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
                if (lstat(dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
                        CHECK(a, STEP_MASK_PROC, mount("tmpfs", dirs[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                                       "size=0"));
        for (unsigned i = 0; i < sizeof ro / sizeof ro[0]; i++) {
                if (lstat(ro[i], &st) != 0)
                        continue;
                CHECK(a, STEP_MASK_PROC, mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL));
                CHECK(a, STEP_MASK_PROC, mount(NULL, ro[i], NULL,
                                               MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
        }
}

static void loopback_up(const struct child_args *a)
{
        struct ifreq ifr = { 0 };
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                child_die(a, STEP_LOOPBACK, errno);
        memcpy(ifr.ifr_name, "lo", 3);
        CHECK(a, STEP_LOOPBACK, ioctl(fd, SIOCGIFFLAGS, &ifr));
        ifr.ifr_flags |= IFF_UP;
        CHECK(a, STEP_LOOPBACK, ioctl(fd, SIOCSIFFLAGS, &ifr));
        close(fd);
}

/*
 * Per-process limits inherited by everything in the sandbox (cgroups bound the sandbox as a whole):
 * no core dumps (they would fill the upper layer), open files capped at the host's hard limit
 * (root here lacks CAP_SYS_RESOURCE, so it cannot raise it anyway), and processes per user capped
 * at the sandbox's pids limit as a second line behind the pids cgroup.
 */
static void set_rlimits(const struct child_args *a)
{
        struct rlimit core = { 0, 0 }, nofile, nproc;

        CHECK(a, STEP_RLIMITS, setrlimit(RLIMIT_CORE, &core));
        CHECK(a, STEP_RLIMITS, getrlimit(RLIMIT_NOFILE, &nofile));
        if (nofile.rlim_max > SBX_SANDBOX_MAX_NOFILE)
                nofile.rlim_max = SBX_SANDBOX_MAX_NOFILE;
        nofile.rlim_cur = nofile.rlim_max;
        CHECK(a, STEP_RLIMITS, setrlimit(RLIMIT_NOFILE, &nofile));
        if (a->l->nproc) {
                nproc.rlim_cur = nproc.rlim_max = a->l->nproc;
                CHECK(a, STEP_RLIMITS, setrlimit(RLIMIT_NPROC, &nproc));
        }
}

/* PID 1 of the sandbox: build the root, pivot into it, become sbx-init. */
static _Noreturn void child_init(const struct child_args *a)
{

        const struct sandbox_launch *l = a->l;
        static char *const argv[] = { "sbx-init", NULL };
        static char *const envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NULL };
        sigset_t all;
        int fd;

        CHECK(a, STEP_MOUNT_PRIVATE, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
        /* by path, not fchdir(dir_fd): an fd opened before the unshare points into sbxd's mount
         * namespace, and overlayfs refuses layers from another namespace (clone_private_mount) */
        CHECK(a, STEP_MOUNT_LOWER, chdir(a->l->dir));
        CHECK(a, STEP_MOUNT_OVERLAY, mount("overlay", "merged", "overlay", 0, a->overlay_opts));
        CHECK(a, STEP_MOUNT_OVERLAY, chdir("merged"));
        for (size_t i = 0; i < l->n_binds; i++) {
                char src[16] = "../bind0";
                src[7] = (char)('0' + i);
                CHECK(a, STEP_MOUNT_BIND, mount(src, l->binds[i].target + 1, NULL, MS_BIND | MS_REC, NULL));
        }
        CHECK(a, STEP_MOUNT_PROC, mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
        setup_dev(a);
        CHECK(a, STEP_MOUNT_TMP, mount("tmpfs", "tmp", "tmpfs", MS_NOSUID | MS_NODEV, a->tmp_opts));
        CHECK(a, STEP_MOUNT_SYS, mount("sysfs", "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL));
        mask_proc(a);

        /* sync #3: the root is complete; swap it in and drop the host's tree */
        CHECK(a, STEP_PIVOT_ROOT, (int)syscall(SYS_pivot_root, ".", "."));
        CHECK(a, STEP_PIVOT_ROOT, umount2(".", MNT_DETACH));
        CHECK(a, STEP_PIVOT_ROOT, chdir("/"));

        CHECK(a, STEP_HOSTNAME, sethostname(l->id, strlen(l->id) > 63 ? 63 : strlen(l->id)));
        loopback_up(a);

        fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                child_die(a, STEP_STDIO, errno);
        CHECK(a, STEP_STDIO, dup2(fd, 0));
        CHECK(a, STEP_STDIO, dup2(fd, 1));
        CHECK(a, STEP_STDIO, dup2(fd, 2));
        /* fd 3 = the launch socket: sbx-init writes its ready byte there; fd 4 = the seccomp
         * blob it loads; fd 5 = its binary (closed by the exec) */
        {
                /* move them out of the way first, so no dup2 below clobbers another */
                int sync_hi = fcntl(a->sync_fd, F_DUPFD_CLOEXEC, 100);
                int exe_hi = fcntl(l->init_exe_fd, F_DUPFD_CLOEXEC, 100);
                int sec_hi = fcntl(l->seccomp_fd, F_DUPFD_CLOEXEC, 100);
                if (sync_hi < 0 || exe_hi < 0 || sec_hi < 0)
                        child_die(a, STEP_STDIO, errno);
                CHECK(a, STEP_STDIO, dup3(exe_hi, 5, O_CLOEXEC));
                CHECK(a, STEP_STDIO, dup2(sync_hi, SBX_INIT_READY_FD));
                CHECK(a, STEP_STDIO, dup2(sec_hi, SBX_INIT_SECCOMP_FD));
                CHECK(a, STEP_STDIO, (int)syscall(SYS_close_range, 6, ~0U, 0));
        }
        ((struct child_args *)a)->sync_fd = SBX_INIT_READY_FD;

        set_rlimits(a);
        CHECK(a, STEP_CAPS, caps_drop_bounding_child());
        CHECK(a, STEP_NO_NEW_PRIVS, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
        (void)setsid();
        sigemptyset(&all);
        (void)sigprocmask(SIG_SETMASK, &all, NULL);

        (void)syscall(SYS_execveat, 5, "", argv, envp, AT_EMPTY_PATH);
        child_die(a, STEP_EXEC_INIT, errno);
}

/* Close every fd but 0-2 and the n (<= 3) in keep: the clone copied all of sbxd's (listening
 * sockets, the database, the parent's end of the launch socket), and none may outlive sbxd here. */
static void close_all_but(const int *keep, int n)
{
        int k[3], next = 3;

        for (int i = 0; i < n; i++)
                k[i] = keep[i];
        for (int i = 0; i < n; i++) /* sort the (at most 3) fds to keep */
                for (int j = i + 1; j < n; j++)
                        if (k[j] < k[i]) {
                                int t = k[i];
                                k[i] = k[j];
                                k[j] = t;
                        }
        for (int i = 0; i < n; i++) {
                if (k[i] > next)
                        (void)syscall(SYS_close_range, next, k[i] - 1, 0);
                if (k[i] + 1 > next)
                        next = k[i] + 1;
        }
        (void)syscall(SYS_close_range, next, ~0U, 0);
}

int child_outer(void *arg)
{
        const struct child_args *a = arg;
        struct child_msg m = { 0 };
        pid_t pid;
        int null_fd;

        /* Die with the thread that cloned us if sbxd goes away before sync #2 (then nobody would
         * ever send the go message). Cleared again in PID 1: a sandbox must outlive sbxd. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != a->parent_pid)
                _exit(1);
        close_all_but((const int[]){ a->sync_fd, a->l->init_exe_fd, a->l->seccomp_fd }, 3);
        null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null_fd >= 0) {
                (void)dup2(null_fd, 0);
                (void)dup2(null_fd, 1);
                (void)dup2(null_fd, 2);
                if (null_fd > 2)
                        close(null_fd);
        }

        /* sync #1: the parent wrote our uid/gid maps, put us in the cgroups and staged the mounts */
        if (recv(a->sync_fd, &m, sizeof m, 0) != (ssize_t)sizeof m || m.type != CHILD_MSG_GO)
                child_die(a, STEP_RECV_GO, errno ? errno : EPROTO);

        uint64_t t0 = mono_usec(), t1, t2, t3;
        /* raw syscalls: glibc's wrappers would try to change the ids of sbxd's other threads
         * (setxid broadcast), whose copies do not exist in this process */
        CHECK(a, STEP_SETID, (int)syscall(SYS_setresgid, 0, 0, 0));
        CHECK(a, STEP_SETID, (int)syscall(SYS_setresuid, 0, 0, 0));
        CHECK(a, STEP_SETID, (int)syscall(SYS_setgroups, 0, NULL));
        t1 = mono_usec();
        CHECK(a, STEP_UNSHARE, unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP |
                                       CLONE_NEWPID));

        t2 = mono_usec();
        /* PID 1 becomes sbxd's child (CLONE_PARENT), so sbxd reaps it and holds its pidfd */
        pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
        if (pid < 0)
                child_die(a, STEP_FORK_INIT, errno);
        if (pid == 0) {
                (void)prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
                child_init(a);
        }

        /* sync #2: report PID 1's host pid and leave; the parent then unstages its mounts */
        t3 = mono_usec();
        m = (struct child_msg){ .type = CHILD_MSG_PID, .pid = pid, .us_setid = (uint32_t)(t1 - t0),
                                .us_unshare = (uint32_t)(t2 - t1), .us_fork = (uint32_t)(t3 - t2) };
        (void)!send(a->sync_fd, &m, sizeof m, MSG_NOSIGNAL);
        _exit(0);
}

/*
 * The volume child (sandbox_volume_open): in the sandbox's user namespace, build the same overlay
 * as PID 1 does, but as a detached mount (fsmount), hand its fd to sbxd and leave. The mount
 * lives as long as sbxd holds the fd.
 */
int child_volume(void *arg)
{
        const struct child_args *a = arg;
        struct child_msg m = { 0 };
        char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
        struct iovec iov;
        struct msghdr mh = { 0 };
        struct cmsghdr *c;
        int fs, mnt;

        (void)prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != a->parent_pid)
                _exit(1);
        close_all_but((const int[]){ a->sync_fd }, 1);
        if (recv(a->sync_fd, &m, sizeof m, 0) != (ssize_t)sizeof m || m.type != CHILD_MSG_GO)
                child_die(a, STEP_RECV_GO, errno ? errno : EPROTO);
        CHECK(a, STEP_SETID, (int)syscall(SYS_setresgid, 0, 0, 0));
        CHECK(a, STEP_SETID, (int)syscall(SYS_setresuid, 0, 0, 0));
        CHECK(a, STEP_SETID, (int)syscall(SYS_setgroups, 0, NULL));
        CHECK(a, STEP_UNSHARE, unshare(CLONE_NEWNS));
        CHECK(a, STEP_VOLUME_MOUNT, chdir(a->l->dir));
        fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
        if (fs < 0)
                child_die(a, STEP_VOLUME_MOUNT, errno);
        CHECK(a, STEP_VOLUME_MOUNT, (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir", a->overlay_opts, 0));
        CHECK(a, STEP_VOLUME_MOUNT, (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", "upper", 0));
        CHECK(a, STEP_VOLUME_MOUNT, (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", "work", 0));
        CHECK(a, STEP_VOLUME_MOUNT, (int)syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "userxattr", NULL, 0));
        CHECK(a, STEP_VOLUME_MOUNT, (int)syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0));
        mnt = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        if (mnt < 0)
                child_die(a, STEP_VOLUME_MOUNT, errno);

        m = (struct child_msg){ .type = CHILD_MSG_VOLUME };
        iov = (struct iovec){ .iov_base = &m, .iov_len = sizeof m };
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof cbuf;
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &mnt, sizeof mnt);
        if (sendmsg(a->sync_fd, &mh, MSG_NOSIGNAL) < 0)
                child_die(a, STEP_VOLUME_SEND, errno);
        _exit(0);
}
