// SPDX-License-Identifier: Apache-2.0
/*
 * The sandbox seccomp filters, built with libseccomp (see seccomp.h; the rule list and its
 * reasons are in docs/design/seccomp.md). Default-allow deny-lists: the kernel's own checks
 * (capabilities in the sandbox's user namespace) stay the main barrier, and these rules remove
 * kernel surface that a sandbox never needs. This file must not log and must not keep state.
 */
#include "seccomp.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

static inline void seccomp_releasep(scmp_filter_ctx *ctx)
{
        if (*ctx)
                seccomp_release(*ctx);
}

/* Every syscall here fails with EPERM in every sandbox process (docs/design/seccomp.md). */
static const int deny_eperm[] = {
        /* mounts and the new mount API: a sandbox never changes its mount table */
        SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(umount), SCMP_SYS(pivot_root),
        SCMP_SYS(move_mount), SCMP_SYS(open_tree), SCMP_SYS(fsopen), SCMP_SYS(fsconfig),
        SCMP_SYS(fsmount), SCMP_SYS(fspick), SCMP_SYS(mount_setattr),
        /* other processes' memory */
        SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
        /* kernel keyrings are not namespaced */
        SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key),
        /* large, often-exploited kernel surface */
        SCMP_SYS(bpf), SCMP_SYS(perf_event_open), SCMP_SYS(userfaultfd),
        SCMP_SYS(io_uring_setup), SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
        /* the host kernel itself */
        SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load), SCMP_SYS(init_module),
        SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(reboot),
        SCMP_SYS(swapon), SCMP_SYS(swapoff), SCMP_SYS(acct), SCMP_SYS(syslog),
        SCMP_SYS(lookup_dcookie), SCMP_SYS(quotactl), SCMP_SYS(quotactl_fd),
        SCMP_SYS(nfsservctl), SCMP_SYS(uselib),
        /* namespaces: entering or creating one (clone is filtered on its flags below) */
        SCMP_SYS(setns), SCMP_SYS(unshare),
        /* file handles bypass path-based confinement */
        SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at),
        /* hardware and clocks shared with the host */
        SCMP_SYS(iopl), SCMP_SYS(ioperm), SCMP_SYS(vm86), SCMP_SYS(vm86old),
        SCMP_SYS(settimeofday), SCMP_SYS(clock_settime), SCMP_SYS(clock_adjtime),
        SCMP_SYS(adjtimex),
};

/* clone() flags that create namespaces; CLONE_NEWTIME is 0x80, inside CSIGNAL for clone(). */
static const uint32_t clone_ns_flags[] = {
        CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
        CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};

/* personality(2) values the sandbox may use, as in Docker's profile: PER_LINUX, PER_LINUX32,
 * UNAME26, PER_LINUX32|UNAME26 and 0xffffffff (query). Bits 3 and 17 make up all four. */
#define PERSONALITY_OK_BITS 0x00020008u

static int add_arches(scmp_filter_ctx ctx)
{
        int r;

        /* The native arch (x86_64) is in the context already. i386 binaries run with the same
         * rules; any other arch, x32 included, kills the process. */
        r = seccomp_arch_add(ctx, SCMP_ARCH_X86);
        if (r < 0 && r != -EEXIST)
                return r;
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        if (r < 0)
                return r;
        /* return the kernel's errno from seccomp_load() instead of -ECANCELED */
        return seccomp_attr_set(ctx, SCMP_FLTATR_API_SYSRAWRC, 1);
}

static int add_personality_rules(scmp_filter_ctx ctx)
{
        int r;

        /*
         * libseccomp cannot say "a0 not in {...}" in one rule (one comparison per argument), so
         * the complement is a union of single masked compares on the low 32 bits:
         *  - bit 31 clear and any bit outside PERSONALITY_OK_BITS set;
         *  - bit 31 set and any bit below 31 clear (everything with bit 31 but 0xffffffff).
         * What is left is exactly the five allowed values.
         */
        for (unsigned bit = 0; bit < 31; bit++) {
                uint32_t m = 1u << bit;

                if (!(m & PERSONALITY_OK_BITS)) {
                        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                                             SCMP_A0_32(SCMP_CMP_MASKED_EQ, m | 0x80000000u, m));
                        if (r < 0)
                                return r;
                }
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                                     SCMP_A0_32(SCMP_CMP_MASKED_EQ, m | 0x80000000u, 0x80000000u));
                if (r < 0)
                        return r;
        }
        return 0;
}

static int build_sandbox(scmp_filter_ctx ctx)
{
        int r;

        r = add_arches(ctx);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(deny_eperm); i++) {
                /* a name missing on one arch (vm86 on x86_64) is skipped there by libseccomp */
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), deny_eperm[i], 0);
                if (r < 0)
                        return r;
        }
        /* clone(2) takes its flags in a0 on x86_64 and i386; only the low 32 bits count */
        for (size_t i = 0; i < ELEMENTSOF(clone_ns_flags); i++) {
                r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                     SCMP_A0_32(SCMP_CMP_MASKED_EQ, clone_ns_flags[i], clone_ns_flags[i]));
                if (r < 0)
                        return r;
        }
        return add_personality_rules(ctx);
}

static int build_exec_child(scmp_filter_ctx ctx)
{
        int r;

        r = add_arches(ctx);
        if (r < 0)
                return r;
        /* clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes glibc
         * (>= 2.34) and others fall back to clone(), whose flags the sandbox filter checks */
        return seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
}

int seccomp_load_sandbox(void)
{
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return -ENOMEM;
        r = build_sandbox(ctx);
        if (r < 0)
                return r;
        return seccomp_load(ctx);
}

int seccomp_load_exec_child(void)
{
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return -ENOMEM;
        r = build_exec_child(ctx);
        if (r < 0)
                return r;
        return seccomp_load(ctx);
}

/* Compile ctx into *ret. libseccomp 2.5 exports only to an fd: a non-blocking pipe holds 64 KiB,
 * more than SBX_SECCOMP_MAX_INSNS, so a bigger program fails with -E2BIG instead of hanging. */
static int export_bpf(scmp_filter_ctx ctx, struct seccomp_bpf *ret)
{
        _cleanup_close_ int rfd = -EBADF, wfd = -EBADF;
        size_t have = 0;
        int p[2], r;

        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
                return -errno;
        rfd = p[0];
        wfd = p[1];
        r = seccomp_export_bpf(ctx, wfd);
        if (r < 0)
                return r == -EAGAIN ? -E2BIG : r;
        wfd = safe_close(wfd);

        ret->len = 0;
        for (;;) {
                ssize_t n = read(rfd, (char *)ret->insns + have, sizeof ret->insns - have);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                if (n == 0)
                        break;
                have += (size_t)n;
                if (have == sizeof ret->insns) {
                        char extra;
                        if (read(rfd, &extra, 1) > 0)
                                return -E2BIG;
                        break;
                }
        }
        if (have == 0 || have % sizeof(struct sock_filter) != 0)
                return -EIO;
        ret->len = (unsigned short)(have / sizeof(struct sock_filter));
        return 0;
}

static int compile(int (*build)(scmp_filter_ctx), struct seccomp_bpf *ret)
{
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        int r;

        ctx = seccomp_init(SCMP_ACT_ALLOW);
        if (!ctx)
                return -ENOMEM;
        r = build(ctx);
        if (r < 0)
                return r;
        return export_bpf(ctx, ret);
}

int seccomp_bpf_compile_exec_child(struct seccomp_bpf *ret)
{
        return compile(build_exec_child, ret);
}

int seccomp_bpf_compile_sandbox(struct seccomp_bpf *ret)
{
        return compile(build_sandbox, ret);
}

int seccomp_blob_create(int *ret_fd)
{
        _cleanup_free_ struct seccomp_bpf *sandbox = calloc(1, sizeof *sandbox);
        _cleanup_free_ struct seccomp_bpf *child = calloc(1, sizeof *child);
        _cleanup_close_ int fd = -EBADF;
        struct seccomp_blob_header h = { .magic = SBX_SECCOMP_BLOB_MAGIC };
        int r;

        if (!sandbox || !child)
                return -ENOMEM;
        r = seccomp_bpf_compile_sandbox(sandbox);
        if (r >= 0)
                r = seccomp_bpf_compile_exec_child(child);
        if (r < 0)
                return r;
        h.sandbox_len = sandbox->len;
        h.child_len = child->len;
        fd = memfd_create("sbx-seccomp", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        r = write_all(fd, &h, sizeof h);
        if (r == 0)
                r = write_all(fd, sandbox->insns, sandbox->len * sizeof(struct sock_filter));
        if (r == 0)
                r = write_all(fd, child->insns, child->len * sizeof(struct sock_filter));
        if (r < 0)
                return r;
        /* shared by every sandbox's sbx-init: nobody may change it afterwards */
        if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int seccomp_blob_load(int fd, struct seccomp_bpf *ret_child)
{
        _cleanup_free_ struct seccomp_bpf *sandbox = calloc(1, sizeof *sandbox);
        struct seccomp_blob_header h;
        size_t ins = sizeof(struct sock_filter);
        int r;

        if (!sandbox)
                return -ENOMEM;
        /* pread: the open file (and its offset) is shared by every sandbox */
        if (pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || h.magic != SBX_SECCOMP_BLOB_MAGIC ||
            h.sandbox_len == 0 || h.sandbox_len > SBX_SECCOMP_MAX_INSNS || h.child_len == 0 ||
            h.child_len > SBX_SECCOMP_MAX_INSNS)
                return -EBADMSG;
        if (pread(fd, sandbox->insns, h.sandbox_len * ins, sizeof h) != (ssize_t)(h.sandbox_len * ins) ||
            pread(fd, ret_child->insns, h.child_len * ins, (off_t)(sizeof h + h.sandbox_len * ins)) !=
                    (ssize_t)(h.child_len * ins))
                return -EBADMSG;
        sandbox->len = h.sandbox_len;
        ret_child->len = h.child_len;
        r = seccomp_bpf_load(sandbox);
        return r;
}

int seccomp_bpf_load(const struct seccomp_bpf *bpf)
{
        struct sock_fprog prog = {
                .len = bpf->len,
                .filter = (struct sock_filter *)bpf->insns,
        };

        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
                return -errno;
        return 0;
}
