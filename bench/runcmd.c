// SPDX-License-Identifier: Apache-2.0
/*
 * runcmd: run one command N times and print its latency summary as one JSON line. Each run is
 * timed with CLOCK_MONOTONIC from just before the spawn (posix_spawn: clone + exec) to just
 * after waitpid() returns, so the number is what a caller of "X run /bin/true" waits for. The
 * child's stdout goes to /dev/null; its stderr is kept in a memfd and printed for the first failed
 * run only. Warm-up runs are not counted. A run fails when the command does not exit 0; the
 * summary covers successful runs and counts the failures. Exit status: 0 when every counted run
 * succeeded, 1 when some failed, 2 on usage or setup errors.
 *
 * Usage: runcmd [-n RUNS] [-w WARMUP] [-N NAME] [-r RAWFILE] -- COMMAND [ARGS...]
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-stats.h"

extern char **environ;

#define MAX_RUNS 1000000
#define STDERR_SHOWN 4096

struct runner {
        char **argv;
        int null_fd; /* owned: /dev/null */
        int err_fd;  /* owned: memfd that collects the child's stderr */
        bool shown;  /* stderr of a failed run already printed */
};

static long parse_count(const char *s, const char *what)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < 0 || v > MAX_RUNS) {
                fprintf(stderr, "runcmd: invalid %s '%s'\n", what, s);
                exit(2);
        }
        return v;
}

static void show_stderr(struct runner *r, int status)
{
        char buf[STDERR_SHOWN + 1];
        ssize_t n;

        if (r->shown)
                return;
        r->shown = true;
        if (WIFEXITED(status))
                fprintf(stderr, "runcmd: '%s' exited with status %d\n", r->argv[0], WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                fprintf(stderr, "runcmd: '%s' was killed by signal %d\n", r->argv[0], WTERMSIG(status));
        n = pread(r->err_fd, buf, STDERR_SHOWN, 0);
        if (n > 0) {
                buf[n] = '\0';
                fprintf(stderr, "runcmd: its stderr:\n%s%s", buf, buf[n - 1] == '\n' ? "" : "\n");
        }
}

/* One run: returns the latency in ms (>= 0), or -1 if it failed. */
static double run_once(struct runner *r)
{
        posix_spawn_file_actions_t fa;
        double t0, t1;
        pid_t pid;
        int status, e;

        if (ftruncate(r->err_fd, 0) < 0)
                return -1;
        if (posix_spawn_file_actions_init(&fa) != 0)
                return -1;
        (void)posix_spawn_file_actions_adddup2(&fa, r->null_fd, STDIN_FILENO);
        (void)posix_spawn_file_actions_adddup2(&fa, r->null_fd, STDOUT_FILENO);
        (void)posix_spawn_file_actions_adddup2(&fa, r->err_fd, STDERR_FILENO);

        t0 = bench_now_ms();
        e = posix_spawnp(&pid, r->argv[0], &fa, NULL, r->argv, environ);
        if (e == 0) {
                while (waitpid(pid, &status, 0) < 0)
                        if (errno != EINTR) {
                                e = errno;
                                break;
                        }
        }
        t1 = bench_now_ms();
        posix_spawn_file_actions_destroy(&fa);

        if (e != 0) {
                fprintf(stderr, "runcmd: cannot run '%s': %s\n", r->argv[0], strerror(e));
                exit(2);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                show_stderr(r, status);
                return -1;
        }
        return t1 - t0;
}

static void json_str(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;

                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

int main(int argc, char **argv)
{
        struct runner r = { .null_fd = -1, .err_fd = -1 };
        const char *name = NULL, *raw = NULL;
        long runs = 200, warmup = 5, failures = 0;
        struct samples s _samples_cleanup_ = {};
        struct summary sum;
        int c;

        while ((c = getopt(argc, argv, "+n:w:N:r:h")) != -1) {
                switch (c) {
                case 'n':
                        runs = parse_count(optarg, "run count");
                        break;
                case 'w':
                        warmup = parse_count(optarg, "warm-up count");
                        break;
                case 'N':
                        name = optarg;
                        break;
                case 'r':
                        raw = optarg;
                        break;
                default:
                        fprintf(stderr, "usage: runcmd [-n RUNS] [-w WARMUP] [-N NAME] [-r RAWFILE] -- CMD [ARGS...]\n");
                        return 2;
                }
        }
        if (optind >= argc || runs < 1) {
                fprintf(stderr, "runcmd: no command given (or -n 0)\n");
                return 2;
        }
        r.argv = argv + optind;
        if (!name)
                name = r.argv[0];

        r.null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        r.err_fd = memfd_create("runcmd-stderr", MFD_CLOEXEC);
        if (r.null_fd < 0 || r.err_fd < 0 || samples_init(&s, (size_t)runs) < 0) {
                perror("runcmd: setup");
                return 2;
        }

        /* A command that fails its first warm-up run is broken, not slow: stop right there. */
        for (long i = 0; i < warmup; i++)
                if (run_once(&r) < 0)
                        return 1;
        for (long i = 0; i < runs; i++) {
                double ms = run_once(&r);

                if (ms < 0)
                        failures++;
                else
                        (void)samples_add(&s, ms);
        }
        if (s.n == 0) {
                fprintf(stderr, "runcmd: every run of '%s' failed\n", r.argv[0]);
                return 1;
        }
        if (raw) {
                int e = samples_write(&s, raw);

                if (e < 0)
                        fprintf(stderr, "runcmd: cannot write '%s': %s, ignoring\n", raw, strerror(-e));
        }

        samples_summarize(&s, &sum);
        printf("{\"name\":");
        json_str(name);
        printf(",\"runs\":%zu,\"failures\":%ld,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"mean_ms\":%.3f,\"min_ms\":%.3f,\"max_ms\":%.3f}\n",
               sum.n, failures, sum.p50, sum.p90, sum.p99, sum.mean, sum.min, sum.max);
        return failures ? 1 : 0;
}
