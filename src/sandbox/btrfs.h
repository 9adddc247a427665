/* SPDX-License-Identifier: Apache-2.0 */
/*
 * btrfs for sandbox state (DESIGN §3 disk limits, §5 snapshots): subvolumes and their snapshots
 * (a read-only snapshot of a sandbox's upper is an immutable layer in milliseconds, whatever its
 * size), qgroup limits for resources.disk, and a btrfs filesystem in a loop-mounted image file for
 * hosts whose data directory is not btrfs. Everything goes through the btrfs ioctls of
 * <linux/btrfs.h>; btrfs-progs is needed only to make a new image (mkfs.btrfs, spawned with an
 * explicit argv, no shell). Parent side (sbxd), blocking (a snapshot commits a transaction:
 * milliseconds; a mount: tens of ms), any thread. No logging.
 *
 * Subvolume delete needs CAP_SYS_ADMIN (the image is mounted without user_subvol_rm_allowed,
 * which sbxd does not need and which would let any owner of a directory there delete
 * subvolumes). Qgroup usage is what the last transaction commit recorded (the kernel writes it at
 * commit: at most the commit interval, 30 s, old; syncfs() the filesystem first for a fresh one).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* True if fd is on btrfs. */
bool btrfs_is(int fd);
/* True if fd (a directory) is the root of a btrfs subvolume. */
bool btrfs_is_subvol(int fd);

/* Make the empty subvolume parent_fd/name (parent_fd: an O_RDONLY directory on btrfs; name: one
 * path component). Returns 0 or -errno (-EEXIST if the name exists). */
int btrfs_subvol_create(int parent_fd, const char *name, struct sbx_err *err);

/* Snapshot the subvolume src_fd (its root directory, O_RDONLY) as dst_parent_fd/name, read-only
 * if asked (atomically: no write can slip in between). Same filesystem only (-EXDEV). Commits a
 * transaction: a few ms. Returns 0 or -errno. */
int btrfs_subvol_snapshot(int src_fd, int dst_parent_fd, const char *name, bool readonly, struct sbx_err *err);

/* Make the subvolume fd (its root directory) read-only or writable. Returns 0 or -errno. */
int btrfs_subvol_set_readonly(int fd, bool readonly, struct sbx_err *err);

/* Delete the subvolume parent_fd/name, read-only or not (needs CAP_SYS_ADMIN). Its space is
 * freed in the background. A subvolume holding other subvolumes is refused (-ENOTEMPTY): delete
 * those first. A name that is not a subvolume: -EINVAL; a missing one: -ENOENT. */
int btrfs_subvol_delete(int parent_fd, const char *name, struct sbx_err *err);

/* Turn quota groups on for the filesystem of mnt_fd (idempotent) and wait for the first rescan,
 * before which no limit holds. simple: "simple quotas" (Linux >= 6.7): no rescan and cheaper
 * snapshots/deletes, but a shared extent is charged to the subvolume that wrote it first; falls
 * back to full qgroups (returns 1) where the kernel has none. Qgroups make every snapshot and
 * delete cost more (bench/tree-copy.c measures it). Returns 0 (or 1) or -errno. */
int btrfs_quota_enable(int mnt_fd, bool simple, struct sbx_err *err);

/* Limit the data the subvolume fd references to bytes (0: no limit). Writes past it fail with
 * EDQUOT (the kernel reserves at write time, so the limit holds within a few MiB). Needs
 * quotas enabled. Returns 0 or -errno. */
int btrfs_qgroup_limit(int subvol_fd, uint64_t bytes, struct sbx_err *err);

struct btrfs_usage {
        uint64_t referenced; /* bytes the subvolume references (shared ones included) */
        uint64_t exclusive;  /* bytes only it references */
};

/* The qgroup numbers of the subvolume fd as of the last transaction commit (one tree search,
 * CAP_SYS_ADMIN). -ENOENT if quotas are off. */
int btrfs_qgroup_usage(int subvol_fd, struct btrfs_usage *ret, struct sbx_err *err);

/*
 * Mount the btrfs image file `image` on the existing directory `mountpoint`. If the image does not
 * exist it is made: a sparse file of `size` bytes (>= 128 MiB) formatted by mkfs.btrfs (made as
 * image + ".new" and renamed, so a crash never leaves a half-made image under the real name); an
 * existing image keeps its size. The image goes on a free loop device (LOOP_CONFIGURE with
 * autoclear, so the device is released by the unmount, and direct I/O where the kernel allows,
 * so its data is not cached twice), mounted with noatime (no metadata writes for reads, which
 * would also make snapshots diverge from their source). Idempotent: returns 0 if that image is
 * already mounted there; -EBUSY if something else is. Returns 0 or -errno / -SBX_E_INTERNAL
 * (mkfs failed; its message is in *err).
 */
int btrfs_image_mount(const char *image, uint64_t size, const char *mountpoint, struct sbx_err *err);

/* Unmount what btrfs_image_mount mounted on mountpoint and wait (up to 2 s) until its loop device
 * is released. 0 if nothing is mounted there; -EBUSY while something still uses it. */
int btrfs_image_umount(const char *mountpoint, struct sbx_err *err);
