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

#define SBX_SECCOMP_MAX_INSNS 1024 /* the sandbox filter is a few hundred instructions */

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

/* Compile the sandbox deny-list into *ret without loading it. Returns 0 or -errno. */
int seccomp_bpf_compile_sandbox(struct seccomp_bpf *ret);

/*
 * Both filters, compiled once by sbxd and handed to every sbx-init as a sealed memfd (fd
 * SBX_INIT_SECCOMP_FD), so sbx-init starts without running libseccomp (about 1.5 ms saved per
 * sandbox). Layout: struct seccomp_blob_header, the sandbox filter, the exec-child filter.
 */
#define SBX_SECCOMP_BLOB_MAGIC 0x53425853u /* "SBXS" */
struct seccomp_blob_header {
        unsigned int magic;
        unsigned short sandbox_len; /* instructions */
        unsigned short child_len;
};
/* sbxd: compile both and return a sealed memfd (CLOEXEC). Returns 0 or -errno. */
int seccomp_blob_create(int *ret_fd);
/* sbx-init: validate the blob at fd, load the sandbox filter into the calling thread and fill
 * *ret_child with the exec-child filter. Returns 0, -EBADMSG for a malformed blob, or -errno. */
int seccomp_blob_load(int fd, struct seccomp_bpf *ret_child);

/*
 * Set no_new_privs and load bpf into the calling thread: two prctl() calls, nothing else, so it
 * is safe in a child between clone and execve. Returns 0 or -errno.
 */
int seccomp_bpf_load(const struct seccomp_bpf *bpf);
