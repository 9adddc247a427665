// SPDX-License-Identifier: Apache-2.0
/*
 * tree-copy: how long a snapshot of a sandbox's upper directory takes (issue 6: 10,000 changed
 * files in <= 50 ms on btrfs, <= 1 s on plain directories). Makes an "upper" of N small files
 * (100 B - 8 KiB of random bytes, in N/100 directories, owned by a sandbox's host ids) and times,
 * over -n runs each into a fresh destination:
 *   - tree_copy with the id shift to 0..65535 (a layer), tree_copy keeping the ids (what
 *     core/snapshots.c does), and `cp -a`, on the data directory's filesystem (--dir) and tmpfs;
 *   - on a btrfs loop image: a read-only snapshot of the upper subvolume alone; snapshot +
 *     tree_shift_ids of the snapshot (writable snapshot, shift, set read-only); tree_copy with
 *     shift (reflinks); cp -a; the two snapshot cases again with qgroups on, and on a second
 *     image with simple quotas (Linux >= 6.7).
 * Percentiles by nearest rank (bench-stats.h). Needs root (chown, loop devices, mount).
 *
 * The ext4 caveat (shared/research/feasibility.md §3): right after ~10k deletes, creating files on
 * ext4 is ~10x slower for a while. So the ext4 destinations are kept until all ext4 runs are done
 * and removed at the end (a second run of this program soon after the first sees the effect); on
 * tmpfs and btrfs each destination is removed after its run, untimed.
 *
 * Build and run (from the repository root):
 *   cc -O2 -D_GNU_SOURCE -Isrc -o build/tree-copy bench/tree-copy.c src/sandbox/tree.c \
 *      src/sandbox/btrfs.c src/common/err.c -lm
 *   sudo build/tree-copy [-n RUNS] [--files N] [--dir DIR] [--no-btrfs] [--no-tmpfs]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-stats.h"
#include "common/cleanup.h"
#include "sandbox/btrfs.h"
#include "sandbox/tree.h"

#define HOST_BASE (1U << 20) /* SBX_UID_BASE: slot 0 */
#define MAX_RUNS 1000
#define MAX_FILES 1000000

extern char **environ;

static unsigned arg_runs = 7, arg_files = 10000;
static const char *arg_dir = "/var/tmp";
static bool arg_btrfs = true, arg_tmpfs = true;

struct row {
        char name[80];
        struct summary s;
};

static struct row rows[32];
static size_t n_rows;

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static void die(const char *what, int r)
{
        fprintf(stderr, "tree-copy: %s: %s\n", what, strerror(r < 0 ? -r : r));
        exit(1); /* checksrc: allow(exit) because a one-shot benchmark gives up on any error */
}

static void die_err(const char *what, const struct sbx_err *e)
{
        fprintf(stderr, "tree-copy: %s: %s\n", what, e->msg);
        exit(1); /* checksrc: allow(exit) because a one-shot benchmark gives up on any error */
}

/* N files of 100 B - 8 KiB in N/100 dirs, owned by the sandbox's root (a tenth by its uid 1000). */
static void make_tree(int root)
{
        char buf[8192];
        unsigned dirs = arg_files / 100 ? arg_files / 100 : 1;

        if (fchown(root, HOST_BASE, HOST_BASE) < 0)
                die("chown", errno);
        for (unsigned d = 0; d < dirs; d++) {
                char name[32];
                int dfd;

                snprintf(name, sizeof name, "d%03u", d);
                if (mkdirat(root, name, 0755) < 0 || fchownat(root, name, HOST_BASE, HOST_BASE, 0) < 0)
                        die("mkdir", errno);
                dfd = openat(root, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (dfd < 0)
                        die("open", errno);
                for (unsigned f = 0; f < arg_files / dirs; f++) {
                        size_t size = 100 + rnd() % (8192 - 100 + 1);
                        uid_t u = HOST_BASE + (f % 10 == 0 ? 1000 : 0);
                        int fd;

                        for (size_t i = 0; i < size; i += 8) {
                                uint64_t v = rnd();
                                memcpy(buf + i, &v, size - i < 8 ? size - i : 8);
                        }
                        snprintf(name, sizeof name, "f%03u", f);
                        fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                        if (fd < 0 || write(fd, buf, size) != (ssize_t)size || fchown(fd, u, u) < 0)
                                die("write", errno);
                        (void)close(fd);
                }
                (void)close(dfd);
        }
}

static int open_dir(const char *path)
{
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                die(path, errno);
        return fd;
}

static void add_row(const char *name, struct samples *s)
{
        if (n_rows >= ELEMENTSOF(rows))
                return;
        snprintf(rows[n_rows].name, sizeof rows[n_rows].name, "%s", name);
        samples_summarize(s, &rows[n_rows].s);
        n_rows++;
        fprintf(stderr, "  %-48s p50 %8.1f ms\n", name, rows[n_rows - 1].s.p50);
}

static void run_cp(const char *src, const char *dst)
{
        char *const argv[] = { (char *)"cp", (char *)"-a", (char *)"--no-target-directory",
                               (char *)src,  (char *)dst,  NULL };
        int status;
        pid_t pid;

        if (posix_spawn(&pid, "/bin/cp", NULL, NULL, argv, environ) != 0)
                die("spawn cp", errno);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                die("cp -a", EIO);
}

/* tree_copy (or cp -a) of upper into base/<prefix>-N, N runs; each copy removed right away
 * (untimed) if remove_each. */
static void bench_copy(const char *label, const char *prefix, const char *base, const char *upper, uid_t from, uid_t to,
                       bool remove_each, bool cp)
{
        struct samples s _samples_cleanup_ = { 0 };
        _cleanup_close_ int bfd = open_dir(base), src = open_dir(upper);
        uint64_t reflinked = 0;

        if (samples_init(&s, arg_runs) < 0)
                die("alloc", ENOMEM);
        for (unsigned i = 0; i < arg_runs; i++) {
                char name[64], path[4200];
                struct sbx_err e = { 0 };
                struct tree_stats st;
                double t0;

                snprintf(name, sizeof name, "%s-%u", prefix, i);
                snprintf(path, sizeof path, "%s/%s", base, name);
                if (cp) {
                        t0 = bench_now_ms();
                        run_cp(upper, path);
                } else {
                        struct tree_copy_opts o = { .id_from = from, .id_to = to };
                        _cleanup_close_ int dst = -EBADF;

                        t0 = bench_now_ms();
                        if (mkdirat(bfd, name, 0700) < 0)
                                die("mkdir", errno);
                        dst = openat(bfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (dst < 0)
                                die("open", errno);
                        if (tree_copy(src, dst, &o, &st, &e) < 0)
                                die_err("tree_copy", &e);
                        reflinked = st.reflinked;
                }
                (void)samples_add(&s, bench_now_ms() - t0);
                if (remove_each && tree_remove(bfd, name) < 0)
                        die("tree_remove", EIO);
        }
        if (reflinked)
                fprintf(stderr, "  (%s: %llu files reflinked)\n", label, (unsigned long long)reflinked);
        if (label)
                add_row(label, &s);
}

/* The upper and all copies in base/plain, removed at the end. */
static void bench_plain(const char *label, const char *top, bool remove_each)
{
        char base[4200], upper[4300], name[128];
        _cleanup_close_ int tfd = open_dir(top), ufd = -EBADF;

        snprintf(base, sizeof base, "%s/plain", top);
        snprintf(upper, sizeof upper, "%s/upper", base);
        if (mkdir(base, 0755) < 0 || mkdir(upper, 0755) < 0)
                die(upper, errno);
        ufd = open_dir(upper);
        make_tree(ufd);
        sync();
        bench_copy(NULL, "warm-up", base, upper, HOST_BASE, 0, remove_each, false);
        snprintf(name, sizeof name, "%s: tree_copy, shift to 0..65535", label);
        bench_copy(name, "shift", base, upper, HOST_BASE, 0, remove_each, false);
        snprintf(name, sizeof name, "%s: tree_copy, ids kept", label);
        bench_copy(name, "keep", base, upper, HOST_BASE, HOST_BASE, remove_each, false);
        snprintf(name, sizeof name, "%s: cp -a", label);
        bench_copy(name, "cp", base, upper, HOST_BASE, HOST_BASE, remove_each, true);
        if (tree_remove(tfd, "plain") < 0)
                die("tree_remove", EIO);
}

static void bench_snapshots(const char *label, int mnt, int ufd, bool shift)
{
        struct samples s _samples_cleanup_ = { 0 }, sh _samples_cleanup_ = { 0 };
        char name[128];

        if (samples_init(&s, arg_runs) < 0 || samples_init(&sh, arg_runs) < 0)
                die("alloc", ENOMEM);
        for (unsigned i = 0; i < arg_runs; i++) {
                struct sbx_err e = { 0 };
                char snap[32];
                double t0, t1;

                snprintf(snap, sizeof snap, "snap-%u", i);
                t0 = bench_now_ms();
                if (btrfs_subvol_snapshot(ufd, mnt, snap, !shift, &e) < 0)
                        die_err("snapshot", &e);
                t1 = bench_now_ms();
                if (shift) {
                        _cleanup_close_ int sfd = openat(mnt, snap, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                        if (sfd < 0)
                                die("open snapshot", errno);
                        if (tree_shift_ids(sfd, HOST_BASE, 0, &e) < 0)
                                die_err("tree_shift_ids", &e);
                        if (btrfs_subvol_set_readonly(sfd, true, &e) < 0)
                                die_err("set ro", &e);
                }
                (void)samples_add(&s, bench_now_ms() - t0);
                if (shift)
                        (void)samples_add(&sh, bench_now_ms() - t1);
                if (btrfs_subvol_delete(mnt, snap, &e) < 0)
                        die_err("delete", &e);
        }
        snprintf(name, sizeof name, "btrfs%s: snapshot%s", label, shift ? " + shift + set ro" : " (ro)");
        add_row(name, &s);
        if (shift) {
                snprintf(name, sizeof name, "btrfs%s:   of which shift + set ro", label);
                add_row(name, &sh);
        }
}

/* simple: a second image with simple quotas (Linux >= 6.7) from the start, snapshots only */
static void bench_btrfs(const char *base, bool simple)
{
        char img[4200], mnt[4200], upper[4300];
        _cleanup_close_ int mfd = -EBADF, ufd = -EBADF;
        struct sbx_err e = { 0 };

        snprintf(img, sizeof img, "%s/%s.img", base, simple ? "squota" : "btrfs");
        snprintf(mnt, sizeof mnt, "%s/%s", base, simple ? "mnt-squota" : "mnt");
        if (mkdir(mnt, 0755) < 0)
                die(mnt, errno);
        if (btrfs_image_mount(img, 4ULL << 30, mnt, &e) < 0)
                die_err("btrfs_image_mount", &e);
        mfd = open_dir(mnt);
        if (simple && btrfs_quota_enable(mfd, true, &e) != 0) {
                fprintf(stderr, "  (no simple quotas here: %s)\n", e.msg[0] ? e.msg : "full qgroups instead");
                goto out;
        }
        if (btrfs_subvol_create(mfd, "upper", &e) < 0)
                die_err("subvol create", &e);
        snprintf(upper, sizeof upper, "%s/upper", mnt);
        ufd = open_dir(upper);
        make_tree(ufd);
        if (syncfs(mfd) < 0)
                die("syncfs", errno);

        if (simple) {
                bench_snapshots(" squota", mfd, ufd, false);
                bench_snapshots(" squota", mfd, ufd, true);
                goto out;
        }
        bench_snapshots("", mfd, ufd, false);
        bench_snapshots("", mfd, ufd, true);
        bench_copy("btrfs: tree_copy, shift (reflinks)", "shift", mnt, upper, HOST_BASE, 0, true, false);
        bench_copy("btrfs: cp -a", "cp", mnt, upper, HOST_BASE, HOST_BASE, true, true);
        if (btrfs_quota_enable(mfd, false, &e) < 0)
                die_err("quota enable", &e);
        bench_snapshots(" qgroups", mfd, ufd, false);
        bench_snapshots(" qgroups", mfd, ufd, true);
out:
        ufd = safe_close(ufd);
        mfd = safe_close(mfd);
        if (btrfs_image_umount(mnt, &e) < 0)
                die_err("umount", &e);
        (void)unlink(img);
        (void)rmdir(mnt);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "files", required_argument, NULL, 'f' },
                { "dir", required_argument, NULL, 'd' },
                { "no-btrfs", no_argument, NULL, 'B' },
                { "no-tmpfs", no_argument, NULL, 'T' },
                { NULL, 0, NULL, 0 },
        };
        char base[4096];
        int c;

        while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1)
                switch (c) {
                case 'n':
                        arg_runs = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'f':
                        arg_files = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'd':
                        arg_dir = optarg;
                        break;
                case 'B':
                        arg_btrfs = false;
                        break;
                case 'T':
                        arg_tmpfs = false;
                        break;
                default:
                        fprintf(stderr,
                                "usage: tree-copy [-n RUNS] [--files N] [--dir DIR] [--no-btrfs] [--no-tmpfs]\n");
                        return 2;
                }
        if (arg_runs < 1 || arg_runs > MAX_RUNS || arg_files < 1 || arg_files > MAX_FILES) {
                fprintf(stderr, "tree-copy: -n 1..%d, --files 1..%d\n", MAX_RUNS, MAX_FILES);
                return 2;
        }
        if (geteuid() != 0) {
                fprintf(stderr, "tree-copy: needs root (chown, loop devices, mount)\n");
                return 1;
        }
        fprintf(stderr, "%u files, %u runs per case\n", arg_files, arg_runs);

        snprintf(base, sizeof base, "%s/sbx-tree-copy-XXXXXX", arg_dir);
        if (!mkdtemp(base))
                die(base, errno);
        bench_plain(arg_dir, base, false);
        if (arg_tmpfs) {
                char shm[64] = "/dev/shm/sbx-tree-copy-XXXXXX";

                if (!mkdtemp(shm))
                        die(shm, errno);
                bench_plain("tmpfs", shm, true);
                (void)rmdir(shm);
        }
        if (arg_btrfs) {
                bench_btrfs(base, false);
                bench_btrfs(base, true);
        }
        (void)rmdir(base);

        printf("%-52s %5s %9s %9s %9s %9s\n", "case", "runs", "p50 ms", "p99 ms", "min ms", "max ms");
        for (size_t i = 0; i < n_rows; i++)
                printf("%-52s %5zu %9.1f %9.1f %9.1f %9.1f\n", rows[i].name, rows[i].s.n, rows[i].s.p50, rows[i].s.p99,
                       rows[i].s.min, rows[i].s.max);
        return 0;
}
