/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sandbox seccomp filters (docs/design/seccomp.md lists every rule and why). Two filters:
 * the sandbox deny-list, which sbx-init loads into itself at start so every process of the
 * sandbox inherits it, and a small exec-child filter stacked on top in each process sbx-init
 * spawns (clone3 -> ENOSYS, so glibc falls back to clone(), whose flags the first filter checks).
 * Built with libseccomp; no logging, no allocation that outlives a call.
 */
#pragma once

#include <linux/filter.h>

#define SBX_SECCOMP_MAX_INSNS 256 /* the exec-child filter is ~10 instructions */

/* A compiled classic-BPF program, kept in caller storage so it can be loaded after fork. */
struct seccomp_bpf {
        unsigned short len;                           /* instructions used */
        struct sock_filter insns[SBX_SECCOMP_MAX_INSNS];
};

/*
 * Load the sandbox deny-list filter into the calling thread (it sets no_new_privs first).
 * Runs in sbx-init before it serves requests. Returns 0 or -errno.
 */
int seccomp_load_sandbox(void);

/* Build the exec-child filter and load it into the calling thread. Returns 0 or -errno. */
int seccomp_load_exec_child(void);

/*
 * Compile the exec-child filter into *ret without loading it. Runs in sbx-init at start; the
 * result is loaded in each spawned child with seccomp_bpf_load(). Returns 0 or -errno
 * (-E2BIG if it does not fit in struct seccomp_bpf).
 */
int seccomp_bpf_compile_exec_child(struct seccomp_bpf *ret);

/*
 * Set no_new_privs and load bpf into the calling thread: two prctl() calls, nothing else, so it
 * is safe in a child between clone and execve. Returns 0 or -errno.
 */
int seccomp_bpf_load(const struct seccomp_bpf *bpf);
