// SPDX-License-Identifier: Apache-2.0
/*
 * The cgroup front: mode detection, the daemon's parent cgroups, and the operations that live in the
 * unified tree (kill, per-exec groups, sbx-init's leaf). Limits are the backends' job
 * (cgroup-v1.c, cgroup-v2.c). Parent side only; no logging.
 */
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "common/cleanup.h"
#include "common/util.h"

static const char *const mode_names[_CGROUP_MODE_MAX] = { "v1", "v2" };

const char *cgroup_mode_to_string(enum cgroup_mode m)
{
        return m >= 0 && m < _CGROUP_MODE_MAX ? mode_names[m] : "invalid";
}

/* Own cgroup path for a v1 controller ("memory") or the unified tree (controller ""). */
int cgroup__own_path(const char *controller, char *buf, size_t size)
{
        _cleanup_(fclosep) FILE *f = NULL;
        char line[4096];

        f = fopen("/proc/self/cgroup", "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof line, f)) {
                char *c1 = strchr(line, ':'), *c2, *nl;
                if (!c1 || !(c2 = strchr(c1 + 1, ':')))
                        continue;
                *c2 = '\0';
                nl = strchr(c2 + 1, '\n');
                if (nl)
                        *nl = '\0';
                const char *ctrls = c1 + 1;
                bool match = false;
                if (controller[0] == '\0')
                        match = ctrls[0] == '\0' && strncmp(line, "0:", 2) == 0;
                else {
                        char tmp[256];
                        snprintf(tmp, sizeof tmp, "%s", ctrls);
                        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
                                if (strcmp(t, controller) == 0)
                                        match = true;
                }
                if (match) {
                        if ((size_t)snprintf(buf, size, "%s", c2 + 1) >= size)
                                return -ENAMETOOLONG;
                        return 0;
                }
        }
        return -ENOENT;
}

/* mkdir -p <own>/sbx-<instance> below mount_fd and open it. */
int cgroup__mkdir_parent(int mount_fd, const char *own, const char *instance, int *ret_fd, struct sbx_err *err)
{
        char path[4096];
        _cleanup_close_ int fd = -EBADF;

        /* own starts with '/'; strip it for openat relative to the mount */
        if ((size_t)snprintf(path, sizeof path, "%s/sbx-%s", own[1] ? own + 1 : ".", instance) >= sizeof path)
                return sbx_err_set(err, -ENAMETOOLONG, "cgroup path too long");
        if (mkdirat(mount_fd, path, 0755) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create cgroup '%s': %m", path);
        fd = openat(mount_fd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open cgroup '%s': %m", path);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/*
 * Moving a task between cgroups takes cgroup_threadgroup_rwsem for writing; in its default mode
 * the first writer after a quiet spell waits for an RCU grace period: 11-15 ms per sandbox create
 * here, measured (docs/design/decisions.md). "favordynmods" trades that for slightly dearer
 * fork/exit. It is a flag of the cgroup2 superblock, so the remount keeps every other option.
 * Best effort: kernels before 6.0 do not know it.
 */
static void favor_dynmods(const char *mount_point)
{
        _cleanup_(fclosep) FILE *f = fopen("/proc/self/mountinfo", "re");
        char line[4096], opts[512];

        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                char mp[256], fstype[64], super[512];
                /* id parent maj:min root mountpoint options [optional...] - fstype source super */
                if (sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1 || strcmp(mp, mount_point) != 0)
                        continue;
                const char *sep = strstr(line, " - ");
                if (!sep || sscanf(sep + 3, "%63s %*s %511s", fstype, super) != 2 || strcmp(fstype, "cgroup2") != 0)
                        return;
                if (strstr(super, "favordynmods"))
                        return;
                /* keep the superblock flags (nsdelegate, memory_recursiveprot, ...), drop rw */
                size_t n = 0;
                for (char *save = NULL, *t = strtok_r(super, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        if (strcmp(t, "rw") != 0) {
                                int w = snprintf(opts + n, sizeof opts - n, "%s,", t);
                                if (w < 0 || (size_t)w >= sizeof opts - n)
                                        return;
                                n += (size_t)w;
                        }
                if ((size_t)snprintf(opts + n, sizeof opts - n, "favordynmods") >= sizeof opts - n)
                        return;
                (void)mount(NULL, mount_point, NULL, MS_REMOUNT, opts);
                return;
        }
}

int cgroup_root_init(struct cgroup_root *root, const char *instance, struct sbx_err *err)
{
        struct statfs sfs;

        memset(root, 0, sizeof *root);
        for (int i = 0; i < _CGV1_MAX; i++)
                root->v1_fd[i] = -EBADF;
        root->unified_fd = -EBADF;

        if (statfs("/sys/fs/cgroup", &sfs) < 0)
                return sbx_err_set(err, -errno, "cannot stat '/sys/fs/cgroup': %m");
        if ((unsigned long)sfs.f_type == CGROUP2_SUPER_MAGIC) {
                root->mode = CGROUP_MODE_V2;
                snprintf(root->unified_mount, sizeof root->unified_mount, "/sys/fs/cgroup");
                favor_dynmods(root->unified_mount);
                return cgroup_v2__init(root, instance, err);
        }
        root->mode = CGROUP_MODE_V1;
        if (statfs("/sys/fs/cgroup/unified", &sfs) == 0 && (unsigned long)sfs.f_type == CGROUP2_SUPER_MAGIC) {
                snprintf(root->unified_mount, sizeof root->unified_mount, "/sys/fs/cgroup/unified");
                favor_dynmods(root->unified_mount);
        }
        return cgroup_v1__init(root, instance, err);
}

/* Remove the daemon's parent cgroup behind fd if no sandbox is left in it, and close fd. */
static int release_parent(int fd)
{
        char proc[64], path[4096];
        ssize_t n;

        if (fd < 0)
                return -EBADF;
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        n = readlink(proc, path, sizeof path - 1);
        if (n > 0) {
                path[n] = '\0';
                (void)rmdir(path); /* EBUSY while sandboxes (which outlive sbxd) remain */
        }
        return safe_close(fd);
}

void cgroup_root_release(struct cgroup_root *root)
{
        for (int i = 0; i < _CGV1_MAX; i++)
                root->v1_fd[i] = release_parent(root->v1_fd[i]);
        root->unified_fd = release_parent(root->unified_fd);
}

/* Open the unified-tree dir of a sandbox (optionally a child like "init"). */
static int unified_open(const struct cgroup_root *root, const char *name, const char *child)
{
        char path[512];

        if (root->unified_fd < 0)
                return -EOPNOTSUPP;
        snprintf(path, sizeof path, "%s%s%s", name, child ? "/" : "", child ? child : "");
        int fd = openat(root->unified_fd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int cgroup_create(const struct cgroup_root *root, const char *name, const struct cgroup_limits *l, uid_t uid,
                  struct sbx_err *err)
{
        _cleanup_close_ int sfd = -EBADF;
        int r;

        if (root->mode == CGROUP_MODE_V1) {
                r = cgroup_v1__create(root, name, l, err);
                if (r < 0)
                        return r;
        }
        if (root->unified_fd < 0)
                return 0;
        if (mkdirat(root->unified_fd, name, 0755) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create cgroup '%s' in '%s': %m", name, root->unified_mount);
        sfd = unified_open(root, name, NULL);
        if (sfd < 0)
                return sbx_err_set(err, sfd, "cannot open cgroup '%s': %s", name, strerror(-sfd));
        if (root->mode == CGROUP_MODE_V2) {
                r = cgroup_v2__set_limits(sfd, l, err);
                if (r < 0)
                        return r;
        }
        if (mkdirat(sfd, "init", 0755) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create cgroup '%s/init': %m", name);
        /* Delegate only the right to move processes between the sandbox's existing groups:
         * sbx-init (sandbox root) needs it for clone3(CLONE_INTO_CGROUP) into <name>/e<seq>. */
        if (fchownat(sfd, "cgroup.procs", uid, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0)
                return sbx_err_set(err, -errno, "cannot delegate cgroup '%s': %m", name);
        return 0;
}

static int write_pid(int dirfd, pid_t pid)
{
        char buf[32];

        snprintf(buf, sizeof buf, "%d", (int)pid);
        return write_file_at(dirfd, "cgroup.procs", buf);
}

int cgroup_attach(const struct cgroup_root *root, const char *name, pid_t pid, struct sbx_err *err)
{
        int r;

        for (int i = 0; i < _CGV1_MAX; i++) {
                if (root->v1_fd[i] < 0)
                        continue;
                _cleanup_close_ int fd = openat(root->v1_fd[i], name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return sbx_err_set(err, -errno, "cannot open v1 cgroup '%s': %m", name);
                r = write_pid(fd, pid);
                if (r < 0)
                        return sbx_err_set(err, r, "cannot move pid %d into v1 cgroup '%s': %s", (int)pid, name,
                                           strerror(-r));
        }
        if (root->unified_fd >= 0) {
                _cleanup_close_ int fd = unified_open(root, name, NULL);
                if (fd < 0)
                        return sbx_err_set(err, fd, "cannot open cgroup '%s': %s", name, strerror(-fd));
                r = write_pid(fd, pid);
                if (r < 0)
                        return sbx_err_set(err, r, "cannot move pid %d into cgroup '%s': %s", (int)pid, name,
                                           strerror(-r));
        }
        return 0;
}

int cgroup_attach_init(const struct cgroup_root *root, const char *name, pid_t pid, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (root->unified_fd < 0)
                return 0;
        fd = unified_open(root, name, "init");
        if (fd < 0)
                return sbx_err_set(err, fd, "cannot open cgroup '%s/init': %s", name, strerror(-fd));
        r = write_pid(fd, pid);
        if (r < 0)
                return sbx_err_set(err, r, "cannot move pid %d into cgroup '%s/init': %s", (int)pid, name,
                                   strerror(-r));
        return 0;
}

/* v1 fallback for hosts without a unified tree: freeze, SIGKILL every member, thaw. */
static int kill_v1(const struct cgroup_root *root, const char *name)
{
        _cleanup_close_ int pfd = -EBADF, ffd = -EBADF;
        char buf[65536];
        int r;

        if (root->v1_fd[CGV1_PIDS] < 0)
                return -EOPNOTSUPP;
        pfd = openat(root->v1_fd[CGV1_PIDS], name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (pfd < 0)
                return errno == ENOENT ? 0 : -errno;
        if (root->v1_fd[CGV1_FREEZER] >= 0) {
                ffd = openat(root->v1_fd[CGV1_FREEZER], name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                if (ffd >= 0)
                        (void)write_file_at(ffd, "freezer.state", "FROZEN");
        }
        r = read_file_at(pfd, "cgroup.procs", buf, sizeof buf);
        if (r >= 0)
                for (char *save = NULL, *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
                        uint64_t pid;
                        if (parse_u64(t, &pid) == 0 && pid > 1)
                                (void)kill((pid_t)pid, SIGKILL);
                }
        if (ffd >= 0)
                (void)write_file_at(ffd, "freezer.state", "THAWED");
        return 0;
}

int cgroup_kill(const struct cgroup_root *root, const char *name)
{
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (root->unified_fd < 0)
                return kill_v1(root, name);
        fd = unified_open(root, name, NULL);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0)
                return fd;
        r = write_file_at(fd, "cgroup.kill", "1");
        if (r == -ENOENT) /* kernel < 5.14: no cgroup.kill */
                return kill_v1(root, name);
        return r;
}

static int freezer_v1_open(const struct cgroup_root *root, const char *name)
{
        int fd;

        if (root->v1_fd[CGV1_FREEZER] < 0)
                return -EOPNOTSUPP;
        fd = openat(root->v1_fd[CGV1_FREEZER], name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

int cgroup_freeze(const struct cgroup_root *root, const char *name, bool freeze)
{
        _cleanup_close_ int fd = -EBADF;

        if (root->unified_fd >= 0) {
                fd = unified_open(root, name, NULL);
                if (fd < 0)
                        return fd;
                return write_file_at(fd, "cgroup.freeze", freeze ? "1" : "0");
        }
        fd = freezer_v1_open(root, name);
        if (fd < 0)
                return fd;
        return write_file_at(fd, "freezer.state", freeze ? "FROZEN" : "THAWED");
}

int cgroup_events_path(const struct cgroup_root *root, const char *name, char *buf, size_t size)
{
        if (root->unified_fd < 0)
                return -EOPNOTSUPP;
        if ((size_t)snprintf(buf, size, "/proc/self/fd/%d/%s/cgroup.events", root->unified_fd, name) >= size)
                return -ENAMETOOLONG;
        return 0;
}

int cgroup_frozen(const struct cgroup_root *root, const char *name)
{
        _cleanup_close_ int fd = -EBADF;
        char buf[256];
        int r;

        if (root->unified_fd >= 0) {
                fd = unified_open(root, name, NULL);
                if (fd < 0)
                        return fd;
                r = read_file_at(fd, "cgroup.events", buf, sizeof buf);
                if (r < 0)
                        return r;
                return strstr(buf, "frozen 1") != NULL;
        }
        fd = freezer_v1_open(root, name);
        if (fd < 0)
                return fd;
        r = read_file_at(fd, "freezer.state", buf, sizeof buf);
        if (r < 0)
                return r;
        return strncmp(buf, "FROZEN", 6) == 0;
}

bool cgroup_populated(const struct cgroup_root *root, const char *name)
{
        char buf[256];

        if (root->unified_fd >= 0) {
                _cleanup_close_ int fd = unified_open(root, name, NULL);
                if (fd < 0 || read_file_at(fd, "cgroup.events", buf, sizeof buf) < 0)
                        return false;
                return strstr(buf, "populated 1") != NULL;
        }
        if (root->v1_fd[CGV1_PIDS] >= 0) {
                _cleanup_close_ int fd = openat(root->v1_fd[CGV1_PIDS], name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                if (fd < 0 || read_file_at(fd, "cgroup.procs", buf, sizeof buf) < 0)
                        return false;
                return buf[0] != '\0';
        }
        return false;
}

/* rmdir every child cgroup of dirfd/name, then name itself. */
static int rmdir_tree(int parent_fd, const char *name)
{
        _cleanup_close_ int fd = openat(parent_fd, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        DIR *d;
        struct dirent *de;
        int r = 0;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF; /* owned by d now */
        while ((de = readdir(d))) {
                if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                int q = rmdir_tree(dirfd(d), de->d_name);
                if (q < 0 && r == 0)
                        r = q;
        }
        closedir(d);
        if (unlinkat(parent_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

int cgroup_destroy(const struct cgroup_root *root, const char *name)
{
        int r = 0, q;

        if (root->unified_fd >= 0) {
                q = rmdir_tree(root->unified_fd, name);
                if (q < 0 && r == 0)
                        r = q;
        }
        for (int i = 0; i < _CGV1_MAX; i++) {
                if (root->v1_fd[i] < 0)
                        continue;
                q = rmdir_tree(root->v1_fd[i], name);
                if (q < 0 && r == 0)
                        r = q;
        }
        return r;
}

bool cgroup_has_exec_groups(const struct cgroup_root *root)
{
        return root->unified_fd >= 0;
}

static void exec_group_name(const char *name, uint64_t seq, char *buf, size_t size)
{
        snprintf(buf, size, "%s/e%llu", name, (unsigned long long)seq);
}

int cgroup_exec_open(const struct cgroup_root *root, const char *name, uint64_t seq, uid_t uid, int *ret_fd)
{
        char path[512];
        int fd;

        if (root->unified_fd < 0)
                return -EOPNOTSUPP;
        exec_group_name(name, seq, path, sizeof path);
        /* a group made earlier (reused from the sandbox's pool) is ready: just open it */
        fd = openat(root->unified_fd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                *ret_fd = fd;
                return 0;
        }
        if (errno != ENOENT)
                return -errno;
        if (mkdirat(root->unified_fd, path, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(root->unified_fd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchownat(fd, "cgroup.procs", uid, (gid_t)-1, AT_SYMLINK_NOFOLLOW) < 0) {
                int r = -errno;
                close(fd);
                (void)unlinkat(root->unified_fd, path, AT_REMOVEDIR);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

int cgroup_exec_kill(const struct cgroup_root *root, const char *name, uint64_t seq)
{
        char path[512];
        _cleanup_close_ int fd = -EBADF;

        if (root->unified_fd < 0)
                return -EOPNOTSUPP;
        exec_group_name(name, seq, path, sizeof path);
        fd = openat(root->unified_fd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return write_file_at(fd, "cgroup.kill", "1");
}

bool cgroup_exec_populated(const struct cgroup_root *root, const char *name, uint64_t seq)
{
        char path[512], buf[256];
        _cleanup_close_ int fd = -EBADF;

        if (root->unified_fd < 0)
                return false;
        exec_group_name(name, seq, path, sizeof path);
        fd = openat(root->unified_fd, path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read_file_at(fd, "cgroup.events", buf, sizeof buf) < 0)
                return true; /* unknown: do not reuse it */
        return strstr(buf, "populated 1") != NULL;
}

int cgroup_exec_remove(const struct cgroup_root *root, const char *name, uint64_t seq)
{
        char path[512];

        if (root->unified_fd < 0)
                return -EOPNOTSUPP;
        exec_group_name(name, seq, path, sizeof path);
        if (unlinkat(root->unified_fd, path, AT_REMOVEDIR) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int cgroup__read_oom_kill(int parent_fd, const char *name, const char *file, uint64_t *ret)
{
        _cleanup_close_ int fd = -EBADF;
        char buf[1024];
        const char *p;
        int r;

        fd = openat(parent_fd, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = read_file_at(fd, file, buf, sizeof buf);
        if (r < 0)
                return r;
        /* both v1's memory.oom_control and v2's memory.events have an "oom_kill N" line */
        p = strstr(buf, "oom_kill ");
        if (!p)
                return -ENODATA;
        return parse_u64_prefix(p + strlen("oom_kill "), ret);
}

int cgroup_oom_kills(const struct cgroup_root *root, const char *name, uint64_t *ret)
{
        return root->mode == CGROUP_MODE_V1 ? cgroup_v1__oom_kills(root, name, ret)
                                            : cgroup_v2__oom_kills(root, name, ret);
}
