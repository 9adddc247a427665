/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Capabilities kept in a sandbox: the bounding set is reduced to Docker's default set (no
 * CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_ADMIN, CAP_SYS_MODULE, ...), so root inside the sandbox's
 * user namespace cannot mount, trace or reconfigure even where seccomp would allow it.
 * Child side (runs between clone and exec): async-signal-safe, no allocation.
 */
#pragma once

/* Drop every capability not in the kept set from the bounding set. Returns 0 or -errno. */
int caps_drop_bounding_child(void);
/* True if cap is in the kept set (for tests and docs). */
int caps_is_kept(int cap);
