// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for the pure halves of the sbx-init protocol: init_client_build_spawn() and
 * init_client_parse() (src/sandbox/init-client.c), and sbx-init's request checks
 * (src/init/request.c, included here since sbx-init is not a library). Crafted buffers only: no
 * sockets, no processes. The live protocol is tested in test-init.c.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "sandbox/init-client.h"

#include "init/request.c"

static char *req_argv[SBX_MAX_ARGV + 1];
static char *req_envp[SBX_INIT_MAX_ENVC + 1];

/* Build a packet from header fields and a payload. */
static size_t mk(void *buf, uint32_t type, uint32_t len, uint64_t id, const void *payload, size_t plen)
{
        struct init_msg h = { .type = type, .len = len, .id = id };

        memcpy(buf, &h, sizeof h);
        if (plen)
                memcpy((char *)buf + sizeof h, payload, plen);
        return sizeof h + plen;
}

/* Run sbx-init's checks on a whole SPAWN packet. */
static int server_parse(void *pkt, size_t n, unsigned n_fds, struct init_spawn_req *req)
{
        struct init_msg h;
        int r;

        if (n < sizeof h)
                return -EBADMSG;
        memcpy(&h, pkt, sizeof h);
        r = init_req_check(&h, n, n_fds);
        if (r < 0)
                return r;
        *req = (struct init_spawn_req){ .argv = req_argv, .envp = req_envp };
        return init_spawn_req_parse((char *)pkt + sizeof h, h.len, n_fds, req);
}

/* A SPAWN packet from raw pieces: struct init_spawn then the given bytes. */
static size_t mk_spawn(char *buf, uint32_t flags, uint32_t argc, uint32_t envc, uint32_t reserved, const char *strs,
                       size_t slen)
{
        struct init_spawn s = { .flags = flags, .argc = argc, .envc = envc, .reserved = reserved };
        struct init_msg h = { .type = INIT_SPAWN, .len = (uint32_t)(sizeof s + slen), .id = 7 };

        memcpy(buf, &h, sizeof h);
        memcpy(buf + sizeof h, &s, sizeof s);
        memcpy(buf + sizeof h + sizeof s, strs, slen);
        return sizeof h + sizeof s + slen;
}

static void test_build_spawn_roundtrip(void **state)
{
        char *argv[] = { "sh", "-c", "echo hi", NULL };
        char *envp[] = { "PATH=/bin", "A=", NULL };
        _cleanup_free_ void *buf = NULL;
        struct init_spawn_req req;
        struct init_msg h;
        size_t len;

        assert_int_equal(init_client_build_spawn(42, argv, envp, "/tmp", INIT_SPAWN_INTO_CGROUP, &buf, &len), 0);
        memcpy(&h, buf, sizeof h);
        assert_int_equal(h.type, INIT_SPAWN);
        assert_int_equal(h.id, 42);
        assert_int_equal(h.len, len - sizeof h);

        assert_int_equal(server_parse(buf, len, 1, &req), 0);
        assert_int_equal(req.flags, INIT_SPAWN_INTO_CGROUP);
        assert_int_equal(req.argc, 3);
        assert_int_equal(req.envc, 2);
        assert_string_equal(req.argv[0], "sh");
        assert_string_equal(req.argv[2], "echo hi");
        assert_null(req.argv[3]);
        assert_string_equal(req.envp[1], "A=");
        assert_null(req.envp[2]);
        assert_string_equal(req.cwd, "/tmp");
        /* the cgroup flag demands exactly one fd */
        assert_int_equal(server_parse(buf, len, 0, &req), -EBADMSG);
}

static void test_build_spawn_defaults(void **state)
{
        char *argv[] = { "true", NULL };
        _cleanup_free_ void *buf = NULL;
        struct init_spawn_req req;
        size_t len;

        assert_int_equal(init_client_build_spawn(1, argv, NULL, NULL, 0, &buf, &len), 0);
        assert_int_equal(server_parse(buf, len, 0, &req), 0);
        assert_int_equal(req.envc, 0);
        assert_null(req.envp[0]);
        assert_string_equal(req.cwd, "/");
}

static void test_build_spawn_limits(void **state)
{
        char *argv[] = { "true", NULL };
        char *none[] = { NULL };
        void *buf = NULL;
        size_t len;

        assert_int_equal(init_client_build_spawn(1, none, NULL, "/", 0, &buf, &len), -EINVAL);
        assert_int_equal(init_client_build_spawn(1, NULL, NULL, "/", 0, &buf, &len), -EINVAL);
        assert_int_equal(init_client_build_spawn(1, argv, NULL, "relative", 0, &buf, &len), -EINVAL);
        assert_int_equal(init_client_build_spawn(1, argv, NULL, "/", 1u << 5, &buf, &len), -EINVAL);

        _cleanup_free_ char *longcwd = malloc(SBX_MAX_CWD + 2);
        assert_non_null(longcwd);
        memset(longcwd, 'a', SBX_MAX_CWD + 1);
        longcwd[0] = '/';
        longcwd[SBX_MAX_CWD + 1] = '\0';
        assert_int_equal(init_client_build_spawn(1, argv, NULL, longcwd, 0, &buf, &len), -E2BIG);
        longcwd[SBX_MAX_CWD] = '\0'; /* exactly SBX_MAX_CWD bytes is fine */
        assert_int_equal(init_client_build_spawn(1, argv, NULL, longcwd, 0, &buf, &len), 0);
        free(buf);

        /* too many argv entries */
        _cleanup_free_ char **many = calloc(SBX_MAX_ARGV + 2, sizeof(char *));
        assert_non_null(many);
        for (size_t i = 0; i <= SBX_MAX_ARGV; i++)
                many[i] = "x";
        assert_int_equal(init_client_build_spawn(1, many, NULL, "/", 0, &buf, &len), -E2BIG);
        many[SBX_MAX_ARGV] = NULL;
        assert_int_equal(init_client_build_spawn(1, many, NULL, "/", 0, &buf, &len), 0);
        free(buf);

        /* too many bytes: argv + env over SBX_MAX_ARG_BYTES */
        _cleanup_free_ char *big = malloc(SBX_MAX_ARG_BYTES);
        assert_non_null(big);
        memset(big, 'b', SBX_MAX_ARG_BYTES - 1);
        big[SBX_MAX_ARG_BYTES - 1] = '\0';
        char *bargv[] = { big, NULL };
        assert_int_equal(init_client_build_spawn(1, bargv, NULL, "/", 0, &buf, &len), 0);
        struct init_spawn_req req;
        assert_int_equal(server_parse(buf, len, 0, &req), 0);
        assert_true(len <= SBX_INIT_MAX_MSG);
        free(buf);
        char *benv[] = { "A=1", NULL };
        assert_int_equal(init_client_build_spawn(1, bargv, benv, "/", 0, &buf, &len), -E2BIG);
}

static void test_server_spawn_malformed(void **state)
{
        static char pkt[SBX_INIT_MAX_MSG];
        struct init_spawn_req req;
        size_t n;

        /* baseline: argv {"a"}, cwd "/" */
        n = mk_spawn(pkt, 0, 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);

        /* argc 0, argc and envc beyond the limits, huge counts */
        n = mk_spawn(pkt, 0, 0, 0, 0, "/", 2);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, SBX_MAX_ARGV + 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 1, SBX_INIT_MAX_ENVC + 1, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 0xffffffffu, 0xffffffffu, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* more strings announced than present */
        n = mk_spawn(pkt, 0, 2, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* unterminated cwd, unterminated argv, nothing after argv */
        n = mk_spawn(pkt, 0, 1, 0, 0, "a\0/x", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 1, 0, 0, "abc", 3);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 1, 0, 0, "a", 2);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* trailing bytes after cwd */
        n = mk_spawn(pkt, 0, 1, 0, 0, "a\0/\0z", 6);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* relative and empty cwd */
        n = mk_spawn(pkt, 0, 1, 0, 0, "a\0tmp", 6);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 1, 0, 0, "a\0", 3);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* unknown flag, reserved set, an fd without the flag */
        n = mk_spawn(pkt, 2, 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 1, 0, 1, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, 0, 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 1, &req), -EBADMSG);
        assert_int_equal(server_parse(pkt, n, 2, &req), -EBADMSG);
        /* payload shorter than struct init_spawn */
        n = mk(pkt, INIT_SPAWN, 8, 1, "\0\0\0\0\0\0\0\0", 8);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);

        /* argv+env bytes over SBX_MAX_ARG_BYTES, though the packet fits */
        size_t sl = SBX_MAX_ARG_BYTES + 2;
        char *strs = calloc(1, sl + 2);
        assert_non_null(strs);
        memset(strs, 'x', SBX_MAX_ARG_BYTES); /* one string of SBX_MAX_ARG_BYTES + 1 with its NUL */
        strs[SBX_MAX_ARG_BYTES + 1] = '/';
        n = mk_spawn(pkt, 0, 1, 0, 0, strs, sl + 1);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        free(strs);
}

static void test_server_header(void **state)
{
        struct init_msg h = { .type = INIT_HELLO, .len = 0 };
        struct init_signal sig = { .signo = 15 };

        assert_int_equal(init_req_check(&h, sizeof h, 0), 0);
        assert_int_equal(init_req_check(&h, sizeof h - 1, 0), -EBADMSG);  /* short */
        assert_int_equal(init_req_check(&h, sizeof h + 4, 0), -EBADMSG);  /* len mismatch */
        assert_int_equal(init_req_check(&h, sizeof h, 1), -EBADMSG);      /* fd on HELLO */
        h.len = 4;
        assert_int_equal(init_req_check(&h, sizeof h + 4, 0), -EBADMSG);  /* payload on HELLO */
        h = (struct init_msg){ .type = INIT_SIGNAL, .len = sizeof sig };
        assert_int_equal(init_req_check(&h, sizeof h + sizeof sig, 0), 0);
        h.len = 4;
        assert_int_equal(init_req_check(&h, sizeof h + 4, 0), -EBADMSG);
        for (uint32_t t = 0; t < 300; t++) {
                h = (struct init_msg){ .type = t };
                bool known = t == INIT_HELLO || t == INIT_RELEASE || t == INIT_LIST || t == INIT_GET_FDS;
                assert_int_equal(init_req_check(&h, sizeof h, 0), known ? 0 : -EBADMSG);
        }
}

/* ---- client-side parsing of replies ---- */

static void test_parse_simple(void **state)
{
        char pkt[256];
        struct init_client_msg m;
        uint32_t v = 1;
        size_t n;

        n = mk(pkt, INIT_HELLO_REPLY, 4, 9, &v, 4);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.type, INIT_HELLO_REPLY);
        assert_int_equal(m.version, 1);
        assert_int_equal(m.id, 9);
        assert_int_equal(m.fds[0], -EBADF);
        init_client_msg_release(&m);

        assert_int_equal(init_client_parse(pkt, n, 1, &m), -EBADMSG);     /* fd on HELLO_REPLY */
        assert_int_equal(init_client_parse(pkt, n - 1, 0, &m), -EBADMSG); /* len mismatch */
        assert_int_equal(init_client_parse(pkt, 8, 0, &m), -EBADMSG);     /* short header */
        n = mk(pkt, INIT_HELLO_REPLY, 2, 9, &v, 2);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);     /* wrong payload size */
        n = mk(pkt, INIT_SPAWN, 0, 9, NULL, 0);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);     /* a request type */
        n = mk(pkt, 12345, 0, 9, NULL, 0);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);

        struct init_result res = { .error = 0 };
        n = mk(pkt, INIT_RESULT, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        res.error = ESRCH;
        n = mk(pkt, INIT_RESULT, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.result.error, ESRCH);
        res.error = -1;
        n = mk(pkt, INIT_RESULT, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        res.error = 100000;
        n = mk(pkt, INIT_RESULT, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);

        /* INIT_FDS: two fds exactly when error == 0 */
        res.error = 0;
        n = mk(pkt, INIT_FDS, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), 0);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG);
        res.error = EBADF;
        n = mk(pkt, INIT_FDS, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), -EBADMSG);
}

static void test_parse_spawned_exited(void **state)
{
        char pkt[256];
        struct init_client_msg m;
        struct init_spawned sp = { .pid = 12 };
        struct init_exited ex = { .pid = 12, .status = 3 << 8 };
        size_t n;

        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), 0);
        assert_int_equal(m.spawned.pid, 12);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG); /* success needs 3 fds */
        assert_int_equal(init_client_parse(pkt, n, 4, &m), -EBADMSG);

        sp = (struct init_spawned){ .error = ENOENT, .step = INIT_STEP_EXEC };
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.spawned.step, INIT_STEP_EXEC);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG); /* failure carries no fds */
        sp.step = 99;
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        sp = (struct init_spawned){ .pid = 5, .error = ENOENT, .step = INIT_STEP_EXEC };
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG); /* pid with an error */
        sp = (struct init_spawned){ .pid = -3 };
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG);

        n = mk(pkt, INIT_EXITED, sizeof ex, 5, &ex, sizeof ex);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(WEXITSTATUS(m.exited.status), 3);
        ex.status = SIGKILL;
        n = mk(pkt, INIT_EXITED, sizeof ex, 5, &ex, sizeof ex);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        ex.status = 0x137f; /* stopped, not exited */
        n = mk(pkt, INIT_EXITED, sizeof ex, 5, &ex, sizeof ex);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        ex = (struct init_exited){ .pid = 0 };
        n = mk(pkt, INIT_EXITED, sizeof ex, 5, &ex, sizeof ex);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
}

static void test_parse_list(void **state)
{
        static char pkt[SBX_INIT_MAX_REPLY + 64];
        static char payload[sizeof(uint32_t) + (SBX_INIT_MAX_PROCS + 1) * sizeof(struct init_proc_info)];
        struct init_client_msg m;
        struct init_proc_info pi = { .id = 1, .pid = 10 };
        uint32_t count;
        size_t n;

        count = 0;
        memcpy(payload, &count, 4);
        n = mk(pkt, INIT_LIST_REPLY, 4, 0, payload, 4);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.n_procs, 0);
        assert_null(m.procs);

        count = 2;
        memcpy(payload, &count, 4);
        memcpy(payload + 4, &pi, sizeof pi);
        pi = (struct init_proc_info){ .id = 2, .pid = 11, .exited = 1, .status = 0 };
        memcpy(payload + 4 + sizeof pi, &pi, sizeof pi);
        n = mk(pkt, INIT_LIST_REPLY, 4 + 2 * sizeof pi, 0, payload, 4 + 2 * sizeof pi);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.n_procs, 2);
        assert_int_equal(m.procs[1].id, 2);
        assert_int_equal(m.procs[1].exited, 1);
        init_client_msg_release(&m);
        assert_null(m.procs);

        /* count disagrees with the length, both ways */
        n = mk(pkt, INIT_LIST_REPLY, 4 + sizeof pi, 0, payload, 4 + sizeof pi);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        count = 1;
        memcpy(payload, &count, 4);
        n = mk(pkt, INIT_LIST_REPLY, 4 + 2 * sizeof pi, 0, payload, 4 + 2 * sizeof pi);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        /* bad entries: pid 0, exited 2 */
        pi = (struct init_proc_info){ .id = 1, .pid = 0 };
        memcpy(payload + 4, &pi, sizeof pi);
        n = mk(pkt, INIT_LIST_REPLY, 4 + sizeof pi, 0, payload, 4 + sizeof pi);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        pi = (struct init_proc_info){ .id = 1, .pid = 3, .exited = 2 };
        memcpy(payload + 4, &pi, sizeof pi);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        /* a huge count with a short packet */
        count = 0xffffffffu;
        memcpy(payload, &count, 4);
        n = mk(pkt, INIT_LIST_REPLY, 4, 0, payload, 4);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        /* SBX_INIT_MAX_PROCS is fine, one more is not (the packet is too big either way) */
        pi = (struct init_proc_info){ .id = 1, .pid = 3 };
        for (uint32_t i = 0; i <= SBX_INIT_MAX_PROCS; i++)
                memcpy(payload + 4 + i * sizeof pi, &pi, sizeof pi);
        count = SBX_INIT_MAX_PROCS;
        memcpy(payload, &count, 4);
        n = mk(pkt, INIT_LIST_REPLY, 4 + count * sizeof pi, 0, payload, 4 + count * sizeof pi);
        assert_int_equal(n, SBX_INIT_MAX_REPLY);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.n_procs, SBX_INIT_MAX_PROCS);
        init_client_msg_release(&m);
        count = SBX_INIT_MAX_PROCS + 1;
        memcpy(payload, &count, 4);
        n = mk(pkt, INIT_LIST_REPLY, 4 + count * sizeof pi, 0, payload, 4 + count * sizeof pi);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_build_spawn_roundtrip),
                cmocka_unit_test(test_build_spawn_defaults),
                cmocka_unit_test(test_build_spawn_limits),
                cmocka_unit_test(test_server_spawn_malformed),
                cmocka_unit_test(test_server_header),
                cmocka_unit_test(test_parse_simple),
                cmocka_unit_test(test_parse_spawned_exited),
                cmocka_unit_test(test_parse_list),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
