// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/core/stream.c, the offset-addressed output logs: splice from a pipe and
 * append keep offsets contiguous, reads from any offset, the head dropped past the cap (holes
 * punched, start moving in whole pieces, reads below it refused), a reopened log has the same
 * window (what an sbxd restart relies on), end of file and empty pipes. Each test works in its own
 * mkdtemp dir under /tmp and removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/limits.h"
#include "core/stream.h"

struct fixture {
        char dir[64];
        int dfd;
};

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/sbx-stream-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->dfd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->dfd >= 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;
        char cmd[128];

        close(f->dfd);
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static void fill(char *buf, size_t len, uint64_t off)
{
        for (size_t i = 0; i < len; i++)
                buf[i] = (char)('a' + (off + i) % 23);
}

static void check_range(const struct stream *s, uint64_t from, uint64_t to)
{
        static char buf[256 * 1024], want[256 * 1024];

        while (from < to) {
                size_t n = to - from < sizeof buf ? (size_t)(to - from) : sizeof buf;
                ssize_t r = stream_read(s, from, buf, n);
                assert_int_equal(r, (ssize_t)n);
                fill(want, n, from);
                assert_memory_equal(buf, want, n);
                from += n;
        }
}

static void test_splice_and_read(void **state)
{
        struct fixture *f = *state;
        struct stream s;
        int p[2];
        char buf[1000], out[16];

        assert_int_equal(stream_open(&s, f->dfd, "a.stdout", 4 << 20, true), 0);
        assert_int_equal(s.start, 0);
        assert_int_equal(s.end, 0);
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        /* an empty pipe: nothing yet */
        assert_int_equal(stream_splice(&s, p[0], 1 << 20), -EAGAIN);
        for (uint64_t off = 0; off < 10000; off += sizeof buf) {
                fill(buf, sizeof buf, off);
                assert_int_equal(write(p[1], buf, sizeof buf), sizeof buf);
                assert_int_equal(stream_splice(&s, p[0], 1 << 20), (ssize_t)sizeof buf);
        }
        assert_int_equal(s.end, 10000);
        check_range(&s, 0, 10000);
        check_range(&s, 4321, 10000);
        /* reads at the end give nothing; past it is an error */
        assert_int_equal(stream_read(&s, 10000, out, sizeof out), 0);
        assert_int_equal(stream_read(&s, 10001, out, sizeof out), -EINVAL);
        /* end of file once every writer closed */
        close(p[1]);
        assert_int_equal(stream_splice(&s, p[0], 1 << 20), 0);
        close(p[0]);
        /* append continues at the same offsets */
        fill(buf, 500, 10000);
        assert_int_equal(stream_append(&s, buf, 500), 500);
        assert_int_equal(s.end, 10500);
        check_range(&s, 0, 10500);
        stream_close(&s);
        /* create refuses an existing log */
        assert_int_equal(stream_open(&s, f->dfd, "a.stdout", 4 << 20, true), -EEXIST);
}

static void test_cap_and_reopen(void **state)
{
        struct fixture *f = *state;
        const uint64_t cap = 2 * SBX_STREAM_PUNCH;
        static char buf[128 * 1024];
        struct stream s, again;
        struct stat st;
        uint64_t total = 7 * SBX_STREAM_PUNCH + 12345;
        char one;

        assert_int_equal(stream_open(&s, f->dfd, "b.stdout", cap, true), 0);
        for (uint64_t off = 0; off < total;) {
                size_t n = total - off < sizeof buf ? (size_t)(total - off) : sizeof buf;
                fill(buf, n, off);
                assert_int_equal(stream_append(&s, buf, n), (ssize_t)n);
                off += n;
                /* the window always holds at least cap bytes, at most cap + one piece */
                assert_true(s.end - s.start >= (s.end < cap ? s.end : cap));
                assert_true(s.end - s.start <= cap + SBX_STREAM_PUNCH);
                assert_int_equal(s.start % SBX_STREAM_PUNCH, 0);
        }
        assert_int_equal(s.end, total);
        assert_true(s.start > 0);
        assert_int_equal(stream_read(&s, s.start - 1, &one, 1), -ERANGE);
        assert_int_equal(stream_read(&s, 0, &one, 1), -ERANGE);
        check_range(&s, s.start, s.end);
        /* the dropped head takes no disk: the file is sparse */
        assert_int_equal(fstatat(f->dfd, "b.stdout", &st, 0), 0);
        assert_int_equal((uint64_t)st.st_size, total);
        assert_true((uint64_t)st.st_blocks * 512 <= cap + 2 * SBX_STREAM_PUNCH);
        /* reopened (an sbxd restart): the same window */
        assert_int_equal(stream_open(&again, f->dfd, "b.stdout", cap, false), 0);
        assert_int_equal(again.end, s.end);
        assert_int_equal(again.start, s.start);
        check_range(&again, again.start, again.end);
        stream_close(&again);
        stream_close(&s);
        assert_int_equal(stream_open(&s, f->dfd, "missing.stdout", cap, false), -ENOENT);
}

static void test_big_splice(void **state)
{
        struct fixture *f = *state;
        static char buf[65536];
        struct stream s;
        uint64_t written = 0;
        int p[2];

        assert_int_equal(stream_open(&s, f->dfd, "c.stdout", 64 << 20, true), 0);
        assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        (void)fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
        for (int round = 0; round < 64; round++) {
                ssize_t n;
                fill(buf, sizeof buf, written);
                n = write(p[1], buf, sizeof buf);
                assert_true(n > 0);
                written += (uint64_t)n;
                /* splice takes what is there, whatever the size asked for */
                while (s.end < written) {
                        ssize_t m = stream_splice(&s, p[0], 3 * 4096);
                        assert_true(m > 0);
                }
        }
        assert_int_equal(s.end, written);
        check_range(&s, 0, written);
        close(p[0]);
        close(p[1]);
        stream_close(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_splice_and_read, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cap_and_reopen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_big_splice, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
