// SPDX-License-Identifier: Apache-2.0
/*
 * cgroup v1 backend: memory, cpu, cpuacct, pids and freezer hierarchies, each with a parent
 * "sbx-<instance>" below sbxd's own cgroup of that hierarchy. The unified (cgroup2) tree, when
 * mounted beside them, is opened here too (front uses it for kill and exec groups).
 * Parent side only; no logging.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "common/cleanup.h"
#include "common/util.h"

static const char *const v1_names[_CGV1_MAX] = {
        [CGV1_MEMORY] = "memory", [CGV1_CPU] = "cpu", [CGV1_CPUACCT] = "cpuacct",
        [CGV1_PIDS] = "pids",     [CGV1_FREEZER] = "freezer",
};

static int open_parent(const char *mount, const char *controller, const char *instance, int *ret_fd,
                       struct sbx_err *err)
{
        _cleanup_close_ int mfd = -EBADF;
        char own[4096];
        int r;

        mfd = open(mount, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (mfd < 0)
                return -errno;
        r = cgroup__own_path(controller, own, sizeof own);
        if (r < 0)
                return sbx_err_set(err, r, "cannot find sbxd's own '%s' cgroup: %s", controller[0] ? controller : "unified",
                                   strerror(-r));
        return cgroup__mkdir_parent(mfd, own, instance, ret_fd, err);
}

int cgroup_v1__init(struct cgroup_root *root, const char *instance, struct sbx_err *err)
{
        char mount[128];
        int r;

        for (int i = 0; i < _CGV1_MAX; i++) {
                snprintf(mount, sizeof mount, "/sys/fs/cgroup/%s", v1_names[i]);
                r = open_parent(mount, v1_names[i], instance, &root->v1_fd[i], err);
                if (r == -ENOENT && i != CGV1_MEMORY && i != CGV1_PIDS) {
                        sbx_err_clear(err); /* optional hierarchy absent */
                        root->v1_fd[i] = -EBADF;
                        continue;
                }
                if (r < 0)
                        return r;
        }
        if (root->unified_mount[0]) {
                r = open_parent(root->unified_mount, "", instance, &root->unified_fd, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int cgroup_v1__create(const struct cgroup_root *root, const char *name, const struct cgroup_limits *l,
                      struct sbx_err *err)
{
        char buf[64];
        int r;

        for (int i = 0; i < _CGV1_MAX; i++) {
                _cleanup_close_ int fd = -EBADF;

                if (root->v1_fd[i] < 0)
                        continue;
                if (mkdirat(root->v1_fd[i], name, 0755) < 0 && errno != EEXIST)
                        return sbx_err_set(err, -errno, "cannot create %s cgroup '%s': %m", v1_names[i], name);
                fd = openat(root->v1_fd[i], name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return sbx_err_set(err, -errno, "cannot open %s cgroup '%s': %m", v1_names[i], name);
                r = 0;
                switch (i) {
                case CGV1_MEMORY:
                        if (l->memory_bytes) {
                                snprintf(buf, sizeof buf, "%llu", (unsigned long long)l->memory_bytes);
                                r = write_file_at(fd, "memory.limit_in_bytes", buf);
                                /* no swap accounting on these hosts: memsw may be absent */
                                if (r == 0) {
                                        int q = write_file_at(fd, "memory.memsw.limit_in_bytes", buf);
                                        if (q < 0 && q != -ENOENT)
                                                r = q;
                                }
                        }
                        break;
                case CGV1_CPU:
                        if (l->cpu > 0) {
                                r = write_file_at(fd, "cpu.cfs_period_us", "100000");
                                snprintf(buf, sizeof buf, "%lld", (long long)(l->cpu * 100000.0));
                                if (r == 0)
                                        r = write_file_at(fd, "cpu.cfs_quota_us", buf);
                        }
                        break;
                case CGV1_PIDS:
                        if (l->pids) {
                                snprintf(buf, sizeof buf, "%llu", (unsigned long long)l->pids);
                                r = write_file_at(fd, "pids.max", buf);
                        }
                        break;
                default:
                        break;
                }
                if (r < 0)
                        return sbx_err_set(err, r, "cannot set %s limits of cgroup '%s': %s", v1_names[i], name,
                                           strerror(-r));
        }
        return 0;
}

int cgroup_v1__oom_kills(const struct cgroup_root *root, const char *name, uint64_t *ret)
{
        if (root->v1_fd[CGV1_MEMORY] < 0)
                return -EOPNOTSUPP;
        return cgroup__read_oom_kill(root->v1_fd[CGV1_MEMORY], name, "memory.oom_control", ret);
}
