// SPDX-License-Identifier: Apache-2.0
/*
 * Component test of sbx-init and init-client against a real kernel: starts build/sbx-init as
 * PID 1 of fresh net+pid namespaces (so its abstract socket and its children are private), talks
 * to it through init-client, and checks spawn, stdio, exit reports, signals, LIST, GET_FDS,
 * RELEASE, the connection limit, malformed packets, CLONE_INTO_CGROUP, the seccomp filters, and
 * version 2: terminals (a private devpts, as in a sandbox), running as a user, kept stdin.
 * Needs root (unshare, setns); skips otherwise. sbx-init dies with the test: it is killed in the
 * group teardown, and a parent-death signal covers a crashed test.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "sandbox/init-client.h"

#define TIMEOUT_MS 10000
#define CGROUP2_MAGIC 0x63677270

static char *env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", NULL };

/* sandbox root's uid/gid on the host in the user-namespace run: a slot far from sbxd's */
#define TEST_UID_BASE (SBX_UID_BASE + 4000U * SBX_UID_RANGE)

static struct {
        bool userns;         /* this group runs sbx-init as root of a new user namespace */
        pid_t holder;        /* our child: parent of sbx-init, outside the new pid ns */
        pid_t init_pid;      /* sbx-init, as seen from here */
        int netns_fd;
        char cgroup[PATH_MAX]; /* cgroup2 dir sbx-init runs in, "" if none */
        const char *cgroup_name; /* its path below the cgroup2 root */
        uint64_t next_id;
} T;

static bool find_init(char *buf, size_t size)
{
        const char *dir = getenv("SBX_BUILD_DIR");
        char self[PATH_MAX];
        ssize_t n;

        if (dir && snprintf(buf, size, "%s/sbx-init", dir) < (int)size && access(buf, X_OK) == 0)
                return true;
        /* ctest runs us from build/tests; the binaries all land in build/ */
        n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        if (snprintf(buf, size, "%s/sbx-init", self) < (int)size && access(buf, X_OK) == 0)
                                return true;
                }
        }
        for (const char *const *p = (const char *const[]){ "build/sbx-init", "./sbx-init", "../sbx-init", NULL }; *p; p++)
                if (access(*p, X_OK) == 0 && snprintf(buf, size, "%s", *p) < (int)size)
                        return true;
        return false;
}

/* A devpts instance of our own at /dev/pts with /dev/ptmx leading to it, as sandbox/child.c sets
 * up a sandbox's /dev (there /dev/ptmx is a symlink; here the host's node is bind-mounted over). */
static int private_devpts(void)
{
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") <
                    0 ||
            mount("/dev/pts/ptmx", "/dev/ptmx", NULL, MS_BIND, NULL) < 0)
                return -errno;
        return 0;
}

/*
 * Holder: unshare (user+)mount+net+pid, wait until the parent has written the id maps and moved
 * it into the test cgroup (sync #1, #2), become root of the namespace, mount a private devpts,
 * fork sbx-init as PID 1 with the ready pipe as fd 3, report its pid (sync #3), wait. Both die
 * with their parent.
 */
static _Noreturn void holder_main(const char *path, int ready_w, int info_w, int go_r)
{
        int flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | (T.userns ? CLONE_NEWUSER : 0);
        char c;
        pid_t pid;

        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || unshare(flags) < 0)
                _exit(1);
        if (write(info_w, "u", 1) != 1 || read(go_r, &c, 1) != 1)
                _exit(1);
        if (T.userns && (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0))
                _exit(1);
        if (private_devpts() < 0)
                _exit(1);
        pid = fork();
        if (pid < 0)
                _exit(1);
        if (pid == 0) {
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                        _exit(1);
                if (dup2(ready_w, 3) < 0)
                        _exit(1);
                execl(path, "sbx-init", (char *)NULL);
                _exit(127);
        }
        (void)close(ready_w);
        (void)!write(info_w, &pid, sizeof pid);
        (void)close(info_w);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        _exit(0);
}

static int write_proc(pid_t pid, const char *file, const char *s)
{
        char path[64];

        snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
        return write_file_at(AT_FDCWD, path, s);
}

/* A cgroup2 directory for this run, delegated to the sandbox's root in the userns run. */
static void make_cgroup(void)
{
        static const char *const roots[] = { "/sys/fs/cgroup/unified", "/sys/fs/cgroup" };
        static char name[64];
        struct statfs sf;

        T.cgroup[0] = '\0';
        snprintf(name, sizeof name, "sbx-test-init-%d-%s", (int)getpid(), T.userns ? "userns" : "root");
        for (size_t i = 0; i < ELEMENTSOF(roots); i++) {
                if (statfs(roots[i], &sf) < 0 || sf.f_type != CGROUP2_MAGIC)
                        continue;
                snprintf(T.cgroup, sizeof T.cgroup, "%s/%s", roots[i], name);
                if (mkdir(T.cgroup, 0755) < 0) {
                        T.cgroup[0] = '\0';
                        return;
                }
                T.cgroup_name = name;
                return;
        }
}

/* Hand cgroup dir to the sandbox's root: the directory and the files a migration writes. */
static int delegate_cgroup(const char *dir)
{
        char path[PATH_MAX + 32];

        if (!T.userns)
                return 0;
        snprintf(path, sizeof path, "%s/cgroup.procs", dir);
        if (chown(dir, TEST_UID_BASE, TEST_UID_BASE) < 0 || chown(path, TEST_UID_BASE, TEST_UID_BASE) < 0)
                return -errno;
        return 0;
}

static int start_group(bool userns)
{
        char path[PATH_MAX], nspath[64], map[64], pidstr[32], c;
        int ready[2], info[2], go[2];
        struct pollfd p;

        memset(&T, 0, sizeof T);
        T = (typeof(T)){ .userns = userns, .holder = -1, .init_pid = -1, .netns_fd = -1, .next_id = 1 };
        if (!find_init(path, sizeof path)) {
                fprintf(stderr, "test-init: sbx-init not found (set SBX_BUILD_DIR)\n");
                return -1;
        }
        make_cgroup();
        if (T.cgroup[0] && delegate_cgroup(T.cgroup) < 0)
                return -1;
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(info, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0)
                return -1;
        T.holder = fork();
        if (T.holder < 0)
                return -1;
        if (T.holder == 0) {
                (void)close(ready[0]);
                (void)close(info[0]);
                (void)close(go[1]);
                holder_main(path, ready[1], info[1], go[0]);
        }
        (void)close(ready[1]);
        (void)close(info[1]);
        (void)close(go[0]);

        /* sync #1: the holder has unshared */
        if (read(info[0], &c, 1) != 1)
                return -1;
        if (userns) {
                snprintf(map, sizeof map, "0 %u %u\n", TEST_UID_BASE, SBX_UID_RANGE);
                if (write_proc(T.holder, "uid_map", map) < 0 || write_proc(T.holder, "gid_map", map) < 0)
                        return -1;
        }
        if (T.cgroup[0]) {
                snprintf(path, sizeof path, "%s/cgroup.procs", T.cgroup);
                snprintf(pidstr, sizeof pidstr, "%d", (int)T.holder);
                if (write_file_at(AT_FDCWD, path, pidstr) < 0)
                        return -1;
        }
        /* sync #2: maps written, cgroup joined */
        if (write(go[1], "g", 1) != 1)
                return -1;
        (void)close(go[1]);

        p = (struct pollfd){ .fd = ready[0], .events = POLLIN };
        if (poll(&p, 1, TIMEOUT_MS) != 1 || read(ready[0], &c, 1) != 1 || c != SBX_INIT_READY_BYTE) {
                fprintf(stderr, "test-init: sbx-init did not report ready\n");
                return -1;
        }
        /* sync #3: sbx-init's pid */
        if (read(info[0], &T.init_pid, sizeof T.init_pid) != sizeof T.init_pid)
                return -1;
        (void)close(ready[0]);
        (void)close(info[0]);
        snprintf(nspath, sizeof nspath, "/proc/%d/ns/net", (int)T.init_pid);
        T.netns_fd = open(nspath, O_RDONLY | O_CLOEXEC);
        return T.netns_fd < 0 ? -1 : 0;
}

static int group_setup_root(void **state)
{
        return start_group(false);
}

static int group_setup_userns(void **state)
{
        return start_group(true);
}

static int group_teardown(void **state)
{
        if (T.holder > 0) {
                /* sbx-init gets SIGKILL from its parent-death signal; as PID 1 it takes its
                 * whole pid namespace with it */
                (void)kill(T.holder, SIGKILL);
                (void)waitpid(T.holder, NULL, 0);
        }
        if (T.netns_fd >= 0)
                (void)close(T.netns_fd);
        /* the cgroup empties as the pid namespace dies */
        for (int i = 0; T.cgroup[0] && i < 200 && rmdir(T.cgroup) < 0 && errno == EBUSY; i++)
                usleep(10 * 1000);
        return 0;
}

/* ---- helpers ---- */

static int conn(void)
{
        int fd = -1;

        assert_int_equal(init_client_connect(T.netns_fd, &fd), 0);
        assert_true(fd >= 0);
        return fd;
}

/* Wait for the next message of this type and id, dropping others (EXITED of other tests). */
static int wait_msg(int fd, uint32_t type, uint64_t id, struct init_client_msg *ret)
{
        for (int i = 0; i < 10000; i++) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                struct init_client_msg m;
                int r;

                if (poll(&p, 1, TIMEOUT_MS) != 1)
                        return -ETIMEDOUT;
                r = init_client_recv(fd, &m);
                if (r == -EAGAIN)
                        continue;
                if (r < 0)
                        return r;
                if (m.type == type && m.id == id) {
                        *ret = m;
                        return 0;
                }
                init_client_msg_release(&m);
        }
        return -ETIMEDOUT;
}

/* Read fd to EOF (it is non-blocking) into buf, NUL-terminated. */
static size_t read_all(int fd, char *buf, size_t size)
{
        size_t got = 0;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                assert_int_equal(poll(&p, 1, TIMEOUT_MS), 1);
                ssize_t n = read(fd, buf + got, size - 1 - got);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                assert_true(n >= 0);
                if (n == 0)
                        break;
                got += (size_t)n;
                assert_true(got < size - 1);
        }
        buf[got] = '\0';
        return got;
}

/* Spawn with opts (cwd "/"); a pty process comes with its master only, others with 3 pipes. */
static uint64_t spawn_opts_ok(int fd, char *const argv[], char *const envp[], const struct init_spawn_opts *opts,
                              struct init_client_msg *ret)
{
        uint64_t id = T.next_id++;
        bool pty = opts && (opts->flags & INIT_SPAWN_PTY);

        assert_int_equal(init_client_send_spawn(fd, id, argv, envp, "/", opts), 0);
        assert_int_equal(wait_msg(fd, INIT_SPAWNED, id, ret), 0);
        assert_int_equal(ret->spawned.error, 0);
        assert_true(ret->spawned.pid > 0);
        assert_int_equal(ret->n_fds, pty ? 1 : 3);
        assert_int_equal(ret->pty, pty);
        assert_int_equal(ret->spawned.flags, pty ? INIT_SPAWNED_PTY : 0);
        return id;
}

static uint64_t spawn_ok(int fd, char *const argv[], const char *cwd, int cgroup_fd, struct init_client_msg *ret)
{
        uint64_t id = T.next_id++;

        assert_int_equal(
                init_client_send_spawn(fd, id, argv, env, cwd, &(struct init_spawn_opts){ .cgroup_fd = cgroup_fd }), 0);
        assert_int_equal(wait_msg(fd, INIT_SPAWNED, id, ret), 0);
        assert_int_equal(ret->spawned.error, 0);
        assert_true(ret->spawned.pid > 0);
        assert_int_equal(ret->n_fds, 3);
        assert_int_equal(ret->fd_mask, INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR);
        return id;
}

static int wait_exit(int fd, uint64_t id)
{
        struct init_client_msg m;

        assert_int_equal(wait_msg(fd, INIT_EXITED, id, &m), 0);
        return m.exited.status;
}

/* Run argv to completion; returns the wait status, output in out/err. */
static int run(int fd, char *const argv[], char *out, size_t out_size, char *err, size_t err_size)
{
        struct init_client_msg m;
        uint64_t id = spawn_ok(fd, argv, "/", -1, &m);
        int st;

        m.fds[0] = safe_close(m.fds[0]);
        read_all(m.fds[1], out, out_size);
        read_all(m.fds[2], err, err_size);
        init_client_msg_release(&m);
        st = wait_exit(fd, id);
        assert_int_equal(init_client_send_release(fd, id), 0);
        return st;
}

/* The connection was dropped by sbx-init. */
static void assert_closed(int fd)
{
        struct init_client_msg m;
        int r = -EAGAIN;

        for (int i = 0; i < 100 && r == -EAGAIN; i++) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                assert_int_equal(poll(&p, 1, TIMEOUT_MS), 1);
                r = init_client_recv(fd, &m);
        }
        assert_int_equal(r, -ECONNRESET);
}

static void assert_hello(int fd)
{
        struct init_client_msg m;

        assert_int_equal(init_client_send_hello(fd), 0);
        assert_int_equal(wait_msg(fd, INIT_HELLO_REPLY, 0, &m), 0);
        assert_int_equal(m.version, SBX_INIT_PROTO_VERSION);
}

/* ---- tests ---- */

static void test_hello(void **state)
{
        _cleanup_close_ int fd = conn();
        char path[64], buf[4096], want[64];

        assert_hello(fd);

        /* sbx-init itself: filtered, non-dumpable (its /proc files belong to root:root) */
        snprintf(path, sizeof path, "/proc/%d/status", (int)T.init_pid);
        assert_true(read_file_at(AT_FDCWD, path, buf, sizeof buf) > 0);
        assert_non_null(strstr(buf, "\nSeccomp:\t2\n"));
        assert_non_null(strstr(buf, "\nNoNewPrivs:\t1\n"));
        snprintf(want, sizeof want, "\nUid:\t%u\t", T.userns ? TEST_UID_BASE : 0U);
        assert_non_null(strstr(buf, want));
}

static void test_spawn_output_and_exit(void **state)
{
        _cleanup_close_ int fd = conn();
        char *argv[] = { "sh", "-c", "echo out; echo err >&2; exit 3", NULL };
        char out[256], err[256];
        int st;

        st = run(fd, argv, out, sizeof out, err, sizeof err);
        assert_string_equal(out, "out\n");
        assert_string_equal(err, "err\n");
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 3);
}

static void test_spawn_stdin(void **state)
{
        _cleanup_close_ int fd = conn();
        char *argv[] = { "cat", NULL };
        struct init_client_msg m;
        char out[256];
        uint64_t id;

        id = spawn_ok(fd, argv, "/", -1, &m);
        assert_int_equal(write(m.fds[0], "hello\n", 6), 6);
        m.fds[0] = safe_close(m.fds[0]); /* EOF for cat: sbx-init kept no copy */
        read_all(m.fds[1], out, sizeof out);
        assert_string_equal(out, "hello\n");
        init_client_msg_release(&m);
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);
}

static void test_spawn_env_cwd_session(void **state)
{
        _cleanup_close_ int fd = conn();
        /* cwd is applied; the env is exactly the given one (PATH found sh, HOME is not
         * inherited from sbx-init); the child leads its own session and process group */
        char *argv[] = { "sh", "-c",
                         "pwd; echo $LC_ALL ${HOME-unset}; read -r s </proc/self/stat; set -- $s; "
                         "[ $1 = $5 ] && [ $1 = $6 ] && echo leader",
                         NULL };
        char out[256], err[256];
        struct init_client_msg m;
        uint64_t id;

        id = spawn_ok(fd, argv, "/tmp", -1, &m);
        m.fds[0] = safe_close(m.fds[0]);
        read_all(m.fds[1], out, sizeof out);
        read_all(m.fds[2], err, sizeof err);
        init_client_msg_release(&m);
        assert_string_equal(out, "/tmp\nC unset\nleader\n");
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);
}

static void assert_spawn_fails(int fd, char *const argv[], const char *cwd, uint32_t step, int error)
{
        struct init_client_msg m;
        uint64_t id = T.next_id++;

        assert_int_equal(init_client_send_spawn(fd, id, argv, env, cwd, NULL), 0);
        assert_int_equal(wait_msg(fd, INIT_SPAWNED, id, &m), 0);
        assert_int_equal(m.spawned.step, step);
        assert_int_equal(m.spawned.error, error);
        assert_int_equal(m.spawned.pid, 0);
        assert_int_equal(m.n_fds, 0);
}

static void test_spawn_failures(void **state)
{
        _cleanup_close_ int fd = conn();
        char *missing_abs[] = { "/nonexistent/bin/x", NULL };
        char *missing_path[] = { "sbx-no-such-command", NULL };
        char *empty[] = { "", NULL };
        char *dir[] = { "/", NULL };
        char *ok[] = { "true", NULL };

        assert_spawn_fails(fd, missing_abs, "/", INIT_STEP_EXEC, ENOENT);
        assert_spawn_fails(fd, missing_path, "/", INIT_STEP_EXEC, ENOENT);
        assert_spawn_fails(fd, empty, "/", INIT_STEP_EXEC, ENOENT);
        assert_spawn_fails(fd, dir, "/", INIT_STEP_EXEC, EACCES);
        assert_spawn_fails(fd, ok, "/nonexistent-dir", INIT_STEP_CWD, ENOENT);
        assert_spawn_fails(fd, ok, "/etc/passwd", INIT_STEP_CWD, ENOTDIR);
        /* the failed children were reaped by the spawn itself: nothing is tracked */
        assert_hello(fd);
}

static void test_signal(void **state)
{
        _cleanup_close_ int fd = conn();
        char *argv[] = { "sleep", "100", NULL };
        struct init_client_msg m;
        uint64_t id;
        int st;

        id = spawn_ok(fd, argv, "/", -1, &m);
        init_client_msg_release(&m);
        assert_int_equal(init_client_send_signal(fd, id, SIGTERM), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, id, &m), 0);
        assert_int_equal(m.result.error, 0);
        st = wait_exit(fd, id);
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGTERM);

        /* an exited process is never signalled (its pid may be reused); unknown ids neither */
        assert_int_equal(init_client_send_signal(fd, id, SIGTERM), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, id, &m), 0);
        assert_int_equal(m.result.error, ESRCH);
        assert_int_equal(init_client_send_signal(fd, 999999, SIGTERM), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, 999999, &m), 0);
        assert_int_equal(m.result.error, ESRCH);
        assert_int_equal(init_client_send_signal(fd, id, 65), -EINVAL);
        assert_int_equal(init_client_send_release(fd, id), 0);
}

static void test_signal_group(void **state)
{
        _cleanup_close_ int fd = conn();
        /* the grandchild holds stdout open: only a group signal lets the pipe reach EOF */
        char *argv[] = { "sh", "-c", "sleep 100 & wait", NULL };
        struct init_client_msg m;
        char out[16];
        uint64_t id;

        id = spawn_ok(fd, argv, "/", -1, &m);
        assert_int_equal(init_client_send_signal(fd, id, SIGKILL), 0);
        struct init_client_msg r;
        assert_int_equal(wait_msg(fd, INIT_RESULT, id, &r), 0);
        assert_int_equal(r.result.error, 0);
        read_all(m.fds[1], out, sizeof out);
        init_client_msg_release(&m);
        assert_true(WIFSIGNALED(wait_exit(fd, id)));
        assert_int_equal(init_client_send_release(fd, id), 0);
}

static const struct init_proc_info *list_find(const struct init_client_msg *m, uint64_t id)
{
        for (uint32_t i = 0; i < m->n_procs; i++)
                if (m->procs[i].id == id)
                        return &m->procs[i];
        return NULL;
}

static void test_list_release_dup(void **state)
{
        _cleanup_close_ int fd = conn();
        char *sleeper[] = { "sleep", "100", NULL };
        char *quick[] = { "true", NULL };
        struct init_client_msg m, l;
        const struct init_proc_info *pi;
        uint64_t a, b;

        a = spawn_ok(fd, sleeper, "/", -1, &m);
        init_client_msg_release(&m);
        b = spawn_ok(fd, quick, "/", -1, &m);
        init_client_msg_release(&m);
        assert_int_equal(wait_exit(fd, b), 0);

        /* a second SPAWN with a live id is refused */
        assert_int_equal(init_client_send_spawn(fd, a, quick, env, "/", NULL), 0);
        assert_int_equal(wait_msg(fd, INIT_SPAWNED, a, &m), 0);
        assert_int_equal(m.spawned.error, EEXIST);
        assert_int_equal(m.spawned.step, INIT_STEP_PROTO);

        assert_int_equal(init_client_send_list(fd), 0);
        assert_int_equal(wait_msg(fd, INIT_LIST_REPLY, 0, &l), 0);
        pi = list_find(&l, a);
        if (!pi) {
                fail_msg("id %llu not listed", (unsigned long long)a);
                return;
        }
        assert_int_equal(pi->exited, 0);
        pi = list_find(&l, b);
        if (!pi) {
                fail_msg("id %llu not listed", (unsigned long long)b);
                return;
        }
        assert_int_equal(pi->exited, 1);
        assert_true(WIFEXITED(pi->status));
        init_client_msg_release(&l);

        /* RELEASE of an exited process forgets it; of a running one, once it exits */
        assert_int_equal(init_client_send_release(fd, b), 0);
        assert_int_equal(init_client_send_release(fd, a), 0);
        assert_int_equal(init_client_send_list(fd), 0);
        assert_int_equal(wait_msg(fd, INIT_LIST_REPLY, 0, &l), 0);
        assert_null(list_find(&l, b));
        assert_non_null(list_find(&l, a));
        init_client_msg_release(&l);
        assert_int_equal(init_client_send_signal(fd, a, SIGKILL), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, a, &m), 0);
        assert_int_equal(m.result.error, 0);
        assert_true(WIFSIGNALED(wait_exit(fd, a)));
        assert_int_equal(init_client_send_list(fd), 0);
        assert_int_equal(wait_msg(fd, INIT_LIST_REPLY, 0, &l), 0);
        assert_null(list_find(&l, a));
        init_client_msg_release(&l);
}

static void test_output_survives_reconnect(void **state)
{
        int fd = conn();
        char *argv[] = { "sh", "-c", "echo kept; echo kept-err >&2", NULL };
        struct init_client_msg m;
        char out[64];
        uint64_t id;

        /* sbxd "restarts": it drops its fds and its connection before reading anything */
        id = spawn_ok(fd, argv, "/", -1, &m);
        init_client_msg_release(&m);
        assert_int_equal(wait_exit(fd, id), 0);
        (void)close(fd);

        fd = conn();
        assert_int_equal(init_client_send_list(fd), 0);
        assert_int_equal(wait_msg(fd, INIT_LIST_REPLY, 0, &m), 0);
        assert_non_null(list_find(&m, id));
        init_client_msg_release(&m);
        assert_int_equal(init_client_send_get_fds(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_FDS, id, &m), 0);
        assert_int_equal(m.result.error, 0);
        assert_int_equal(m.n_fds, 2);
        assert_int_equal(m.fd_mask, INIT_FD_STDOUT | INIT_FD_STDERR);
        read_all(m.fds[0], out, sizeof out);
        assert_string_equal(out, "kept\n");
        read_all(m.fds[1], out, sizeof out);
        assert_string_equal(out, "kept-err\n");
        init_client_msg_release(&m);

        assert_int_equal(init_client_send_release(fd, id), 0);
        assert_int_equal(init_client_send_get_fds(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_FDS, id, &m), 0);
        assert_int_equal(m.result.error, ESRCH);
        assert_int_equal(m.n_fds, 0);
        (void)close(fd);
}

static void test_large_spawn(void **state)
{
        _cleanup_close_ int fd = conn();
        _cleanup_free_ char *a = malloc(100001), *b = malloc(100001);
        char out[64], err[64];

        assert_non_null(a);
        assert_non_null(b);
        memset(a, 'a', 100000);
        a[100000] = '\0';
        memset(b, 'b', 100000);
        b[100000] = '\0';
        char *argv[] = { "sh", "-c", "echo $((${#1} + ${#2}))", "sh", a, b, NULL };
        assert_int_equal(run(fd, argv, out, sizeof out, err, sizeof err), 0);
        assert_string_equal(out, "200000\n");
}

/* Send raw bytes (and optionally one fd) on a fresh connection; sbx-init must drop it. */
static void assert_malformed(const void *buf, size_t len, int pass_fd)
{
        _cleanup_close_ int fd = conn();
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(sizeof(int))];
        } cbuf;
        struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (pass_fd >= 0) {
                memset(&cbuf, 0, sizeof cbuf);
                mh.msg_control = cbuf.b;
                mh.msg_controllen = sizeof cbuf.b;
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)len);
        assert_closed(fd);
}

static size_t mk_spawn(char *buf, uint32_t flags, uint32_t argc, uint32_t envc, const char *strs, size_t slen)
{
        struct init_spawn s = { .flags = flags, .argc = argc, .envc = envc };
        struct init_msg h = { .type = INIT_SPAWN, .len = (uint32_t)(sizeof s + slen), .id = 77 };

        memcpy(buf, &h, sizeof h);
        memcpy(buf + sizeof h, &s, sizeof s);
        memcpy(buf + sizeof h + sizeof s, strs, slen);
        return sizeof h + sizeof s + slen;
}

static void test_malformed(void **state)
{
        char buf[256];
        struct init_msg h;
        size_t n;

        h = (struct init_msg){ .type = INIT_HELLO };
        assert_malformed(&h, 8, -1);                               /* short header */
        h.len = 4;
        assert_malformed(&h, sizeof h, -1);                        /* len mismatch */
        h = (struct init_msg){ .type = 4242 };
        assert_malformed(&h, sizeof h, -1);                        /* unknown type */
        h = (struct init_msg){ .type = INIT_HELLO_REPLY };
        assert_malformed(&h, sizeof h, -1);                        /* a reply type */
        h = (struct init_msg){ .type = INIT_HELLO };
        assert_malformed(&h, sizeof h, STDIN_FILENO);              /* fd on HELLO */
        n = mk_spawn(buf, 0, 0, 0, "/", 2);
        assert_malformed(buf, n, -1);                              /* argc 0 */
        n = mk_spawn(buf, 0, 1, 0, "true", 4);
        assert_malformed(buf, n, -1);                              /* unterminated */
        n = mk_spawn(buf, 0, 1, 0, "true\0/tmp", 9);
        assert_malformed(buf, n, -1);                              /* unterminated cwd */
        n = mk_spawn(buf, 0, 0xffffffffu, 0xffffffffu, "true\0/", 7);
        assert_malformed(buf, n, -1);                              /* huge counts */
        n = mk_spawn(buf, INIT_SPAWN_INTO_CGROUP, 1, 0, "true\0/", 7);
        assert_malformed(buf, n, -1);                              /* flag without fd */
        n = mk_spawn(buf, 0, 1, 0, "true\0/", 7);
        assert_malformed(buf, n, STDIN_FILENO);                    /* fd without flag */
        n = mk_spawn(buf, INIT_SPAWN_PTY, 1, 0, "true\0/", 7);
        assert_malformed(buf, n, -1);                              /* PTY without extension */
        struct init_spawn_ext ext = { .cols = 80, .rows = 24 };
        char strs[sizeof ext + 7];
        memcpy(strs, &ext, sizeof ext);
        memcpy(strs + sizeof ext, "true\0/", 7);
        n = mk_spawn(buf, INIT_SPAWN_PTY | INIT_SPAWN_KEEP_STDIN, 1, 0, strs, sizeof strs);
        assert_malformed(buf, n, -1);                              /* PTY with KEEP_STDIN */
        ext.cols = SBX_MAX_PTY_SIZE + 1;
        memcpy(strs, &ext, sizeof ext);
        n = mk_spawn(buf, INIT_SPAWN_PTY, 1, 0, strs, sizeof strs);
        assert_malformed(buf, n, -1);                              /* too wide */
        ext = (struct init_spawn_ext){ .uid = 65535 };
        memcpy(strs, &ext, sizeof ext);
        n = mk_spawn(buf, INIT_SPAWN_USER, 1, 0, strs, sizeof strs);
        assert_malformed(buf, n, -1);                              /* uid out of range */
        h = (struct init_msg){ .type = INIT_CLOSE_STDIN, .len = 4 };
        memcpy(buf, &h, sizeof h);
        memset(buf + sizeof h, 0, 4);
        assert_malformed(buf, sizeof h + 4, -1);                   /* payload on CLOSE_STDIN */

        /* still serving */
        _cleanup_close_ int fd = conn();
        assert_hello(fd);
}

static void test_conn_limit(void **state)
{
        int fds[SBX_INIT_MAX_CONNS];
        int extra;

        /* other tests closed theirs; make sure sbx-init has seen that */
        usleep(100 * 1000);
        for (size_t i = 0; i < SBX_INIT_MAX_CONNS; i++) {
                fds[i] = conn();
                assert_hello(fds[i]);
        }
        extra = conn();
        assert_closed(extra);
        (void)close(extra);
        (void)close(fds[0]);
        usleep(100 * 1000);
        fds[0] = conn();
        assert_hello(fds[0]);
        for (size_t i = 0; i < SBX_INIT_MAX_CONNS; i++)
                (void)close(fds[i]);
        usleep(100 * 1000);
}

/* Run a perl one-liner in the sandbox; return its stdout as an int. */
static int probe(int fd, const char *code)
{
        char *argv[] = { "perl", "-e", (char *)code, NULL };
        char out[64], err[256];
        int st = run(fd, argv, out, sizeof out, err, sizeof err);

        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
        return (int)strtol(out, NULL, 10);
}

static void test_seccomp(void **state)
{
        _cleanup_close_ int fd = conn();
        char *unshare_argv[] = { "unshare", "-m", "true", NULL };
        char out[256], err[512];
        int st;

        if (access("/usr/bin/perl", X_OK) != 0) {
                skip();
                return;
        }
        /* the exec-child filter: clone3 -> ENOSYS (without it: EINVAL for size 0) */
        assert_int_equal(probe(fd, "syscall(435, 0, 0); print $!+0"), ENOSYS);
        /* the sandbox filter, inherited from sbx-init: unshare, setns, mount, clone(NEW*) */
        assert_int_equal(probe(fd, "syscall(272, 0x20000); print $!+0"), EPERM);
        assert_int_equal(probe(fd, "syscall(272, 0x10000000); print $!+0"), EPERM);
        assert_int_equal(probe(fd, "syscall(308, 0, 0); print $!+0"), EPERM);
        assert_int_equal(probe(fd, "syscall(165, 0, 0, 0, 0, 0); print $!+0"), EPERM);
        assert_int_equal(probe(fd, "$r = syscall(56, 0x10000011, 0, 0, 0, 0); exit 0 if $r == 0; print $!+0"),
                         EPERM);
        assert_int_equal(probe(fd, "syscall(321, 0, 0, 0); print $!+0"), EPERM); /* bpf */
        /* personality: the query and PER_LINUX pass, ADDR_NO_RANDOMIZE does not */
        assert_int_equal(probe(fd, "$r = syscall(135, 0xffffffff); print $r >= 0 ? 0 : $!+0"), 0);
        assert_int_equal(probe(fd, "$r = syscall(135, 0); print $r >= 0 ? 0 : $!+0"), 0);
        assert_int_equal(probe(fd, "syscall(135, 0x0040000); print $!+0"), EPERM);
        assert_int_equal(probe(fd, "syscall(135, 0x80000000); print $!+0"), EPERM);
        /* ordinary forks still work, and threads: glibc's pthread_create falls back from clone3 */
        assert_int_equal(probe(fd, "$p = fork(); exit 0 if $p == 0; waitpid($p, 0); print $? >> 8"), 0);
        if (access("/usr/bin/python3", X_OK) == 0) {
                char *py[] = { "python3", "-c",
                               "import threading; t = threading.Thread(target=print, args=('thread',)); "
                               "t.start(); t.join()",
                               NULL };
                st = run(fd, py, out, sizeof out, err, sizeof err);
                assert_int_equal(st, 0);
                assert_string_equal(out, "thread\n");
        }

        if (access("/usr/bin/unshare", X_OK) == 0) {
                st = run(fd, unshare_argv, out, sizeof out, err, sizeof err);
                assert_true(WIFEXITED(st));
                assert_int_not_equal(WEXITSTATUS(st), 0);
                assert_non_null(strstr(err, "Operation not permitted"));
        }
}

static void test_cgroup(void **state)
{
        _cleanup_close_ int fd = conn(), cg = -EBADF;
        char dir[PATH_MAX + 8], want[PATH_MAX], out[1024];
        char *argv[] = { "cat", "/proc/self/cgroup", NULL };
        struct init_client_msg m;
        uint64_t id;

        if (!T.cgroup[0]) {
                skip();
                return;
        }
        snprintf(dir, sizeof dir, "%s/exec", T.cgroup);
        assert_int_equal(mkdir(dir, 0755), 0);
        assert_int_equal(delegate_cgroup(dir), 0);
        cg = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(cg >= 0);

        id = spawn_ok(fd, argv, "/", cg, &m);
        m.fds[0] = safe_close(m.fds[0]);
        read_all(m.fds[1], out, sizeof out);
        init_client_msg_release(&m);
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);
        snprintf(want, sizeof want, "0::/%s/exec\n", T.cgroup_name);
        assert_non_null(strstr(out, want));
        assert_int_equal(rmdir(dir), 0);
}

static void test_orphans_reaped(void **state)
{
        _cleanup_close_ int fd = conn();
        /* the background sleep outlives sh and is re-parented to sbx-init, which reaps it */
        char *argv[] = { "sh", "-c", "sleep 0.2 >/dev/null 2>&1 & exit 0", NULL };
        char out[16], err[16], path[96], buf[256];

        assert_int_equal(run(fd, argv, out, sizeof out, err, sizeof err), 0);
        snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)T.init_pid, (int)T.init_pid);
        if (access(path, R_OK) != 0) {
                skip();
                return;
        }
        for (int i = 0; i < 100; i++) {
                usleep(50 * 1000);
                if (read_file_at(AT_FDCWD, path, buf, sizeof buf) == 0)
                        return; /* no children left: the orphan was reaped */
        }
        fail_msg("sbx-init still has children: %s", buf);
}

/* ---- version 2: terminals, users, kept stdin ---- */

/* Read fd (non-blocking: a pty master or a pipe) until buf holds needle, or with needle NULL to
 * the end: EOF, or EIO from a master once its terminal's last slave is gone. Returns the bytes
 * read, NUL-terminated. */
static size_t read_until(int fd, char *buf, size_t size, const char *needle)
{
        size_t got = 0;

        buf[0] = '\0';
        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (needle && strstr(buf, needle))
                        return got;
                if (poll(&p, 1, TIMEOUT_MS) != 1)
                        fail_msg("timed out waiting for '%s'; got '%s'", needle ? needle : "the end", buf);
                n = read(fd, buf + got, size - 1 - got);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n == 0 || (n < 0 && errno == EIO)) {
                        if (needle)
                                fail_msg("the end before '%s'; got '%s'", needle, buf);
                        return got;
                }
                assert_true(n > 0);
                got += (size_t)n;
                buf[got] = '\0';
                assert_true(got < size - 1);
        }
}

static const struct init_proc_info *list_find(const struct init_client_msg *m, uint64_t id);

/* Whether sbx-init lists process id as running. */
static bool still_running(int fd, uint64_t id)
{
        struct init_client_msg l;
        const struct init_proc_info *pi;
        bool running;

        assert_int_equal(init_client_send_list(fd), 0);
        assert_int_equal(wait_msg(fd, INIT_LIST_REPLY, 0, &l), 0);
        pi = list_find(&l, id);
        running = pi && !pi->exited;
        init_client_msg_release(&l);
        return running;
}

static void test_pty_tty_size(void **state)
{
        _cleanup_close_ int fd = conn();
        char *argv[] = { "/bin/sh", "-c", "tty; stty size", NULL };
        struct init_client_msg m;
        char out[256], *nl;
        uint64_t id;

        id = spawn_opts_ok(fd, argv, env,
                           &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY, .cols = 100, .rows = 30,
                                                      .cgroup_fd = -1 },
                           &m);
        assert_int_equal(m.fd_mask, INIT_FD_PTY);
        assert_int_equal(fcntl(m.fds[0], F_GETFL) & O_ACCMODE, O_RDWR);
        read_until(m.fds[0], out, sizeof out, NULL);
        init_client_msg_release(&m);
        /* "/dev/pts/N" of the sandbox's own devpts, then "rows cols" (the terminal turns \n into \r\n) */
        assert_true(strncmp(out, "/dev/pts/", 9) == 0);
        nl = strstr(out, "\r\n");
        assert_non_null(nl);
        assert_true(nl > out + 9);
        for (const char *c = out + 9; c < nl; c++)
                assert_true(*c >= '0' && *c <= '9');
        assert_string_equal(nl + 2, "30 100\r\n");
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);

        /* 0 x 0 is 80 x 24 */
        char *size[] = { "stty", "size", NULL };
        id = spawn_opts_ok(fd, size, env, &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY, .cgroup_fd = -1 }, &m);
        read_until(m.fds[0], out, sizeof out, NULL);
        init_client_msg_release(&m);
        assert_string_equal(out, "24 80\r\n");
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);
}

static void test_pty_interactive(void **state)
{
        _cleanup_close_ int fd = conn();
        char *penv[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C", "PS1=sbx> ", NULL };
        /* no -i: sh is interactive because its stdin is a terminal */
        char *argv[] = { "/bin/sh", NULL };
        struct winsize ws = { .ws_row = 40, .ws_col = 120 };
        struct init_client_msg m;
        char out[1024];
        uint64_t id;
        int st, master;

        id = spawn_opts_ok(fd, argv, penv, &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY, .cgroup_fd = -1 },
                           &m);
        master = m.fds[0];
        read_until(master, out, sizeof out, "sbx> ");
        /* the terminal echoes the line, then sh runs it */
        assert_int_equal(write(master, "echo hi\n", 8), 8);
        read_until(master, out, sizeof out, "echo hi\r\nhi\r\nsbx> ");

        /* a resize on the master is what the program sees */
        assert_int_equal(ioctl(master, TIOCSWINSZ, &ws), 0);
        assert_int_equal(write(master, "stty size\n", 10), 10);
        read_until(master, out, sizeof out, "\r\n40 120\r\nsbx> ");

        assert_int_equal(write(master, "exit 7\n", 7), 7);
        read_until(master, out, sizeof out, NULL);
        init_client_msg_release(&m);
        st = wait_exit(fd, id);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 7);
        assert_int_equal(init_client_send_release(fd, id), 0);
}

static void test_user(void **state)
{
        _cleanup_close_ int fd = conn();
        char *ids[] = { "sh", "-c", "id -u; id -g; id -G; grep ^Cap[EP] /proc/self/status", NULL };
        char *tty_owner[] = { "sh", "-c", "id -u; stat -c %u:%g \"$(tty)\"", NULL };
        char *ok[] = { "true", NULL };
        char out[512], err[256], dir[] = "/tmp/sbx-test-init-XXXXXX";
        struct init_client_msg m;
        uint64_t id;

        /* pipes: the ids, one group, no capabilities left */
        id = spawn_opts_ok(fd, ids, env,
                           &(struct init_spawn_opts){ .flags = INIT_SPAWN_USER, .uid = 1000, .gid = 1001,
                                                      .cgroup_fd = -1 },
                           &m);
        m.fds[0] = safe_close(m.fds[0]);
        read_all(m.fds[1], out, sizeof out);
        read_all(m.fds[2], err, sizeof err);
        init_client_msg_release(&m);
        assert_string_equal(out, "1000\n1001\n1001\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n");
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);

        /* a terminal: it belongs to the user */
        id = spawn_opts_ok(fd, tty_owner, env,
                           &(struct init_spawn_opts){ .flags = INIT_SPAWN_USER | INIT_SPAWN_PTY, .uid = 1000,
                                                      .gid = 1001, .cgroup_fd = -1 },
                           &m);
        read_until(m.fds[0], out, sizeof out, NULL);
        init_client_msg_release(&m);
        assert_string_equal(out, "1000\r\n1000:1001\r\n");
        assert_int_equal(wait_exit(fd, id), 0);
        assert_int_equal(init_client_send_release(fd, id), 0);

        /* cwd is entered as the user: a directory only root may enter fails with EACCES */
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chmod(dir, 0700), 0);
        id = T.next_id++;
        assert_int_equal(init_client_send_spawn(fd, id, ok, env, dir,
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_USER, .uid = 1000,
                                                                           .gid = 1000, .cgroup_fd = -1 }),
                         0);
        assert_int_equal(wait_msg(fd, INIT_SPAWNED, id, &m), 0);
        assert_int_equal(m.spawned.step, INIT_STEP_CWD);
        assert_int_equal(m.spawned.error, EACCES);
        assert_int_equal(m.n_fds, 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_keep_stdin(void **state)
{
        _cleanup_close_ int fd = conn();
        char *argv[] = { "cat", NULL };
        const struct init_spawn_opts keep = { .flags = INIT_SPAWN_KEEP_STDIN, .cgroup_fd = -1 };
        struct init_client_msg m, r;
        char out[64];
        uint64_t id;

        /* sbxd "restarts": drops every fd; stdin survives in sbx-init */
        id = spawn_opts_ok(fd, argv, env, &keep, &m);
        assert_int_equal(m.fd_mask, INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR);
        init_client_msg_release(&m);
        usleep(100 * 1000);
        assert_true(still_running(fd, id));

        assert_int_equal(init_client_send_get_fds(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_FDS, id, &m), 0);
        assert_int_equal(m.result.error, 0);
        assert_int_equal(m.n_fds, 3);
        assert_int_equal(m.fd_mask, INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR);
        assert_int_equal(write(m.fds[0], "hello\n", 6), 6);
        read_until(m.fds[1], out, sizeof out, "hello\n");
        assert_string_equal(out, "hello\n");

        /* sbx-init lets go; sbxd's copy still holds EOF off */
        assert_int_equal(init_client_send_close_stdin(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, id, &r), 0);
        assert_int_equal(r.result.error, 0);
        usleep(100 * 1000);
        assert_true(still_running(fd, id));
        /* nothing kept any more: GET_FDS gives only the read ends */
        assert_int_equal(init_client_send_get_fds(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_FDS, id, &r), 0);
        assert_int_equal(r.fd_mask, INIT_FD_STDOUT | INIT_FD_STDERR);
        assert_int_equal(r.n_fds, 2);
        init_client_msg_release(&r);

        m.fds[0] = safe_close(m.fds[0]); /* the last write end: cat reads EOF */
        read_until(m.fds[1], out, sizeof out, NULL);
        assert_string_equal(out, "");
        init_client_msg_release(&m);
        assert_int_equal(wait_exit(fd, id), 0);

        /* again (nothing to close) is fine; an unknown id is not */
        assert_int_equal(init_client_send_close_stdin(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, id, &r), 0);
        assert_int_equal(r.result.error, 0);
        assert_int_equal(init_client_send_close_stdin(fd, 999999), 0);
        assert_int_equal(wait_msg(fd, INIT_RESULT, 999999, &r), 0);
        assert_int_equal(r.result.error, ESRCH);
        assert_int_equal(init_client_send_release(fd, id), 0);

        /* RELEASE closes the kept stdin too: cat ends */
        id = spawn_opts_ok(fd, argv, env, &keep, &m);
        init_client_msg_release(&m);
        assert_int_equal(init_client_send_release(fd, id), 0);
        assert_int_equal(wait_exit(fd, id), 0);

        /* a terminal has no stdin to keep: refused before sending */
        assert_int_equal(init_client_send_spawn(fd, T.next_id++, argv, env, "/",
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY |
                                                                                    INIT_SPAWN_KEEP_STDIN,
                                                                           .cgroup_fd = -1 }),
                         -EINVAL);
}

static void test_pty_kept(void **state)
{
        _cleanup_close_ int fd = conn();
        char *echo[] = { "sh", "-c", "echo kept", NULL };
        char *sleeper[] = { "sleep", "100", NULL };
        const struct init_spawn_opts pty = { .flags = INIT_SPAWN_PTY, .cgroup_fd = -1 };
        struct init_client_msg m;
        char out[64];
        uint64_t id;
        int st;

        /* output waits in the terminal while sbxd is away; GET_FDS gives the master back */
        id = spawn_opts_ok(fd, echo, env, &pty, &m);
        init_client_msg_release(&m);
        assert_int_equal(wait_exit(fd, id), 0);
        (void)close(TAKE_FD(fd));
        fd = conn();
        assert_int_equal(init_client_send_get_fds(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_FDS, id, &m), 0);
        assert_int_equal(m.result.error, 0);
        assert_int_equal(m.fd_mask, INIT_FD_PTY);
        assert_true(m.pty);
        assert_int_equal(m.n_fds, 1);
        read_until(m.fds[0], out, sizeof out, NULL);
        assert_string_equal(out, "kept\r\n");
        init_client_msg_release(&m);
        assert_int_equal(init_client_send_release(fd, id), 0);
        assert_int_equal(init_client_send_get_fds(fd, id), 0);
        assert_int_equal(wait_msg(fd, INIT_FDS, id, &m), 0);
        assert_int_equal(m.result.error, ESRCH);

        /* sbx-init's master keeps the terminal up without sbxd; RELEASE closes it, and the kernel
         * hangs the terminal up: SIGHUP for its session leader */
        id = spawn_opts_ok(fd, sleeper, env, &pty, &m);
        init_client_msg_release(&m);
        usleep(100 * 1000);
        assert_true(still_running(fd, id));
        assert_int_equal(init_client_send_release(fd, id), 0);
        st = wait_exit(fd, id);
        assert_true(WIFSIGNALED(st));
        assert_int_equal(WTERMSIG(st), SIGHUP);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_hello),
                cmocka_unit_test(test_spawn_output_and_exit),
                cmocka_unit_test(test_spawn_stdin),
                cmocka_unit_test(test_spawn_env_cwd_session),
                cmocka_unit_test(test_spawn_failures),
                cmocka_unit_test(test_signal),
                cmocka_unit_test(test_signal_group),
                cmocka_unit_test(test_list_release_dup),
                cmocka_unit_test(test_output_survives_reconnect),
                cmocka_unit_test(test_large_spawn),
                cmocka_unit_test(test_malformed),
                cmocka_unit_test(test_conn_limit),
                cmocka_unit_test(test_seccomp),
                cmocka_unit_test(test_cgroup),
                cmocka_unit_test(test_orphans_reaped),
                cmocka_unit_test(test_pty_tty_size),
                cmocka_unit_test(test_pty_interactive),
                cmocka_unit_test(test_user),
                cmocka_unit_test(test_keep_stdin),
                cmocka_unit_test(test_pty_kept),
        };
        int failed;

        if (geteuid() != 0) {
                printf("test-init: needs root (unshare, setns), skipping\n");
                return 0;
        }
        /* as real root in fresh net+pid namespaces, then as root of a user namespace whose ids
         * map to an unprivileged host range, as sbxd runs it */
        failed = cmocka_run_group_tests_name("sbx-init as root", tests, group_setup_root, group_teardown);
        failed += cmocka_run_group_tests_name("sbx-init in a user namespace", tests, group_setup_userns,
                                              group_teardown);
        return failed;
}
