// SPDX-License-Identifier: Apache-2.0
/*
 * cgroup v2 backend: one unified tree at /sys/fs/cgroup with memory, cpu and pids controllers.
 * The daemon's parent "sbx-<instance>" must have those controllers in its subtree_control; v2's
 * "no internal processes" rule means sbxd's own cgroup cannot delegate controllers while sbxd sits in
 * it, so sbxd first moves itself into the leaf "<own>/sbxd".
 * NEEDSWORK: these hosts have v1 controllers; this backend is exercised only on pure-v2 hosts.
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

static const char controllers[] = "+memory +pids +cpu";

int cgroup_v2__init(struct cgroup_root *root, const char *instance, struct sbx_err *err)
{
        _cleanup_close_ int mfd = -EBADF, ownfd = -EBADF, leaf = -EBADF;
        char own[4096], buf[64];
        int r;

        mfd = open(root->unified_mount, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (mfd < 0)
                return sbx_err_set(err, -errno, "cannot open '%s': %m", root->unified_mount);
        r = cgroup__own_path("", own, sizeof own);
        if (r < 0)
                return sbx_err_set(err, r, "cannot find sbxd's own cgroup: %s", strerror(-r));
        ownfd = openat(mfd, own[1] ? own + 1 : ".", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
        if (ownfd < 0)
                return sbx_err_set(err, -errno, "cannot open own cgroup '%s': %m", own);
        if (strcmp(own, "/") != 0) {
                /* leave our own cgroup so that it may delegate controllers */
                if (mkdirat(ownfd, "sbxd", 0755) < 0 && errno != EEXIST)
                        return sbx_err_set(err, -errno, "cannot create cgroup '%s/sbxd': %m", own);
                leaf = openat(ownfd, "sbxd", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
                if (leaf < 0)
                        return sbx_err_set(err, -errno, "cannot open cgroup '%s/sbxd': %m", own);
                snprintf(buf, sizeof buf, "%d", (int)getpid());
                r = write_file_at(leaf, "cgroup.procs", buf);
                if (r < 0)
                        return sbx_err_set(err, r, "cannot move sbxd into '%s/sbxd': %s", own, strerror(-r));
                r = write_file_at(ownfd, "cgroup.subtree_control", controllers);
                if (r < 0)
                        return sbx_err_set(err, r, "cannot enable controllers in '%s': %s", own, strerror(-r));
                if (cgroup__own_path("", own, sizeof own) < 0)
                        return sbx_err_set(err, -EIO, "cannot re-read own cgroup");
                /* the parent goes beside the leaf: strip "/sbxd" */
                char *slash = strrchr(own, '/');
                if (slash && slash != own)
                        *slash = '\0';
        }
        r = cgroup__mkdir_parent(mfd, own, instance, &root->unified_fd, err);
        if (r < 0)
                return r;
        r = write_file_at(root->unified_fd, "cgroup.subtree_control", controllers);
        if (r < 0)
                return sbx_err_set(err, r, "cannot enable controllers for sandboxes: %s", strerror(-r));
        return 0;
}

int cgroup_v2__set_limits(int dirfd, const struct cgroup_limits *l, struct sbx_err *err)
{
        char buf[64];
        int r = 0;

        if (l->memory_bytes) {
                snprintf(buf, sizeof buf, "%llu", (unsigned long long)l->memory_bytes);
                r = write_file_at(dirfd, "memory.max", buf);
                if (r == 0)
                        (void)write_file_at(dirfd, "memory.swap.max", "0");
        }
        if (r == 0 && l->cpu > 0) {
                snprintf(buf, sizeof buf, "%lld 100000", (long long)(l->cpu * 100000.0));
                r = write_file_at(dirfd, "cpu.max", buf);
        }
        if (r == 0 && l->pids) {
                snprintf(buf, sizeof buf, "%llu", (unsigned long long)l->pids);
                r = write_file_at(dirfd, "pids.max", buf);
        }
        if (r < 0)
                return sbx_err_set(err, r, "cannot set cgroup v2 limits: %s", strerror(-r));
        return 0;
}

int cgroup_v2__oom_kills(const struct cgroup_root *root, const char *name, uint64_t *ret)
{
        return cgroup__read_oom_kill(root->unified_fd, name, "memory.events", ret);
}
