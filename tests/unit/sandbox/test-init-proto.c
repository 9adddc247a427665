// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for the pure halves of the sbx-init protocol: init_client_build_spawn() and
 * init_client_parse() (src/sandbox/init-client.c), and sbx-init's request checks
 * (src/init/request.c, included here since sbx-init is not a library). Crafted buffers; the fd
 * checks of init_client_recv() get crafted packets over a socketpair. No processes: the live
 * protocol is tested in test-init.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* A SPAWN packet with the v2 extension: struct init_spawn, ext, then the given bytes. */
static size_t mk_spawn_ext(char *buf, uint32_t flags, const struct init_spawn_ext *ext, const char *strs, size_t slen)
{
        struct init_spawn s = { .flags = flags, .argc = 1 };
        struct init_msg h = { .type = INIT_SPAWN, .len = (uint32_t)(sizeof s + sizeof *ext + slen), .id = 7 };
        char *p = buf;

        memcpy(p, &h, sizeof h);
        p += sizeof h;
        memcpy(p, &s, sizeof s);
        p += sizeof s;
        memcpy(p, ext, sizeof *ext);
        p += sizeof *ext;
        memcpy(p, strs, slen);
        return (size_t)(p - buf) + slen;
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

        assert_int_equal(init_client_build_spawn(42, argv, envp, "/tmp",
                                                 &(struct init_spawn_opts){ .flags = INIT_SPAWN_INTO_CGROUP }, &buf,
                                                 &len),
                         0);
        /* without PTY and USER the packet is exactly version 1's: no extension */
        assert_int_equal(len, sizeof h + sizeof(struct init_spawn) + sizeof "sh" + sizeof "-c" + sizeof "echo hi" +
                                      sizeof "PATH=/bin" + sizeof "A=" + sizeof "/tmp");
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

        assert_int_equal(init_client_build_spawn(1, argv, NULL, NULL, NULL, &buf, &len), 0);
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

        assert_int_equal(init_client_build_spawn(1, none, NULL, "/", NULL, &buf, &len), -EINVAL);
        assert_int_equal(init_client_build_spawn(1, NULL, NULL, "/", NULL, &buf, &len), -EINVAL);
        assert_int_equal(init_client_build_spawn(1, argv, NULL, "relative", NULL, &buf, &len), -EINVAL);
        assert_int_equal(init_client_build_spawn(1, argv, NULL, "/", &(struct init_spawn_opts){ .flags = 1u << 5 },
                                                 &buf, &len),
                         -EINVAL);

        _cleanup_free_ char *longcwd = malloc(SBX_MAX_CWD + 2);
        assert_non_null(longcwd);
        memset(longcwd, 'a', SBX_MAX_CWD + 1);
        longcwd[0] = '/';
        longcwd[SBX_MAX_CWD + 1] = '\0';
        assert_int_equal(init_client_build_spawn(1, argv, NULL, longcwd, NULL, &buf, &len), -E2BIG);
        longcwd[SBX_MAX_CWD] = '\0'; /* exactly SBX_MAX_CWD bytes is fine */
        assert_int_equal(init_client_build_spawn(1, argv, NULL, longcwd, NULL, &buf, &len), 0);
        free(buf);

        /* too many argv entries */
        _cleanup_free_ char **many = calloc(SBX_MAX_ARGV + 2, sizeof(char *));
        assert_non_null(many);
        for (size_t i = 0; i <= SBX_MAX_ARGV; i++)
                many[i] = "x";
        assert_int_equal(init_client_build_spawn(1, many, NULL, "/", NULL, &buf, &len), -E2BIG);
        many[SBX_MAX_ARGV] = NULL;
        assert_int_equal(init_client_build_spawn(1, many, NULL, "/", NULL, &buf, &len), 0);
        free(buf);

        /* too many bytes: argv + env over SBX_MAX_ARG_BYTES */
        _cleanup_free_ char *big = malloc(SBX_MAX_ARG_BYTES);
        assert_non_null(big);
        memset(big, 'b', SBX_MAX_ARG_BYTES - 1);
        big[SBX_MAX_ARG_BYTES - 1] = '\0';
        char *bargv[] = { big, NULL };
        assert_int_equal(init_client_build_spawn(1, bargv, NULL, "/", NULL, &buf, &len), 0);
        struct init_spawn_req req;
        assert_int_equal(server_parse(buf, len, 0, &req), 0);
        assert_true(len <= SBX_INIT_MAX_MSG);
        free(buf);
        char *benv[] = { "A=1", NULL };
        assert_int_equal(init_client_build_spawn(1, bargv, benv, "/", NULL, &buf, &len), -E2BIG);
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
        n = mk_spawn(pkt, 1u << 4, 1, 0, 0, "a\0/", 4);
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
                bool known = t == INIT_HELLO || t == INIT_RELEASE || t == INIT_LIST || t == INIT_GET_FDS ||
                             t == INIT_CLOSE_STDIN;
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

        /* a reserved field on a RESULT */
        res = (struct init_result){ .reserved = 1 };
        n = mk(pkt, INIT_RESULT, sizeof res, 3, &res, sizeof res);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);

        /* HELLO_REPLY: version 0 does not exist */
        v = 0;
        n = mk(pkt, INIT_HELLO_REPLY, 4, 9, &v, 4);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        v = SBX_INIT_PROTO_VERSION;
        n = mk(pkt, INIT_HELLO_REPLY, 4, 9, &v, 4);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.version, 2);
}

/* INIT_FDS: a fixed header + mask; the fds follow in bit order, popcount(mask) of them. */
static void test_parse_fds(void **state)
{
        char pkt[256];
        struct init_client_msg m;
        struct init_fds f;
        size_t n;

        f = (struct init_fds){ .mask = INIT_FD_STDOUT | INIT_FD_STDERR };
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), 0);
        assert_int_equal(m.result.error, 0);
        assert_int_equal(m.fd_mask, INIT_FD_STDOUT | INIT_FD_STDERR);
        assert_false(m.pty);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 1, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG);

        f.mask = INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR;
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), 0);
        assert_int_equal(m.fd_mask, INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), -EBADMSG);

        f.mask = INIT_FD_PTY;
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 1, &m), 0);
        assert_int_equal(m.fd_mask, INIT_FD_PTY);
        assert_true(m.pty);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), -EBADMSG);

        /* masks sbx-init never sends: pty with pipes, partial pipe sets, unknown bits */
        static const uint32_t bad[] = {
                INIT_FD_PTY | INIT_FD_STDOUT, INIT_FD_PTY | INIT_FD_STDIN, INIT_FD_STDOUT, INIT_FD_STDERR,
                INIT_FD_STDIN, INIT_FD_STDIN | INIT_FD_STDOUT, INIT_FD_STDOUT | INIT_FD_STDERR | (1u << 4),
                1u << 31,
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                f.mask = bad[i];
                n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
                for (unsigned k = 0; k <= 3; k++)
                        assert_int_equal(init_client_parse(pkt, n, k, &m), -EBADMSG);
        }

        /* a version-1 sbx-init: {0, 0} with two fds is stdout+stderr; mask 0 with any other count is not */
        f = (struct init_fds){ 0 };
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), 0);
        assert_int_equal(m.fd_mask, INIT_FD_STDOUT | INIT_FD_STDERR);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 1, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG);

        /* errors: no mask, no fds */
        f = (struct init_fds){ .error = EBADF };
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), 0);
        assert_int_equal(m.result.error, EBADF);
        assert_int_equal(m.fd_mask, 0);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), -EBADMSG);
        f.mask = INIT_FD_STDOUT | INIT_FD_STDERR;
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 2, &m), -EBADMSG);
        f = (struct init_fds){ .error = -1 };
        n = mk(pkt, INIT_FDS, sizeof f, 3, &f, sizeof f);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        /* the old 8-byte size only */
        n = mk(pkt, INIT_FDS, 4, 3, &f, 4);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
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
        assert_int_equal(m.fd_mask, INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR);
        assert_false(m.pty);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG); /* success needs 3 fds */
        assert_int_equal(init_client_parse(pkt, n, 1, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 4, &m), -EBADMSG);

        /* a terminal: exactly one fd, the master */
        sp.flags = INIT_SPAWNED_PTY;
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 1, &m), 0);
        assert_true(m.pty);
        assert_int_equal(m.fd_mask, INIT_FD_PTY);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG);
        sp.flags = 2; /* unknown */
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 3, &m), -EBADMSG);
        assert_int_equal(init_client_parse(pkt, n, 1, &m), -EBADMSG);
        sp = (struct init_spawned){ .error = EIO, .step = INIT_STEP_SETUP, .flags = INIT_SPAWNED_PTY };
        n = mk(pkt, INIT_SPAWNED, sizeof sp, 5, &sp, sizeof sp);
        assert_int_equal(init_client_parse(pkt, n, 0, &m), -EBADMSG); /* flags on a failure */
        sp = (struct init_spawned){ .pid = 12 };

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

/* ---- version 2: the spawn extension ---- */

static void test_server_spawn_ext(void **state)
{
        static char pkt[SBX_INIT_MAX_MSG];
        struct init_spawn_ext ext;
        struct init_spawn_req req;
        size_t n;

        /* PTY: the size comes through; 0 means 80x24 */
        ext = (struct init_spawn_ext){ .cols = 100, .rows = 30 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);
        assert_int_equal(req.flags, INIT_SPAWN_PTY);
        assert_int_equal(req.cols, 100);
        assert_int_equal(req.rows, 30);
        assert_int_equal(req.uid, 0);
        assert_string_equal(req.argv[0], "a");
        assert_string_equal(req.cwd, "/");
        ext = (struct init_spawn_ext){ .uid = 99999, .gid = 99999 }; /* ids ignored without USER */
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);
        assert_int_equal(req.cols, SBX_INIT_PTY_COLS);
        assert_int_equal(req.rows, SBX_INIT_PTY_ROWS);
        assert_int_equal(req.uid, 0);
        assert_int_equal(req.gid, 0);

        /* USER: ids up to 65534; the size ignored but bounded */
        ext = (struct init_spawn_ext){ .uid = 1000, .gid = 1001, .cols = 7 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);
        assert_int_equal(req.uid, 1000);
        assert_int_equal(req.gid, 1001);
        assert_int_equal(req.cols, 0);
        ext = (struct init_spawn_ext){ .uid = SBX_INIT_MAX_ID, .gid = SBX_INIT_MAX_ID, .cols = SBX_MAX_PTY_SIZE };
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER | INIT_SPAWN_PTY, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);
        assert_int_equal(req.uid, 65534);
        assert_int_equal(req.cols, SBX_MAX_PTY_SIZE);
        assert_int_equal(req.rows, SBX_INIT_PTY_ROWS);
        ext = (struct init_spawn_ext){ .uid = 65535 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        ext = (struct init_spawn_ext){ .gid = 65535 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        ext = (struct init_spawn_ext){ .uid = 0xffffffffu };
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);

        /* bad sizes, with and without PTY; a non-zero reserved field */
        ext = (struct init_spawn_ext){ .cols = SBX_MAX_PTY_SIZE + 1 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        ext = (struct init_spawn_ext){ .rows = 0xffff };
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        ext = (struct init_spawn_ext){ .reserved = 1 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);

        /* PTY with KEEP_STDIN is malformed; KEEP_STDIN alone has no extension */
        ext = (struct init_spawn_ext){ 0 };
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY | INIT_SPAWN_KEEP_STDIN, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, INIT_SPAWN_KEEP_STDIN, 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);
        assert_int_equal(req.flags, INIT_SPAWN_KEEP_STDIN);
        n = mk_spawn_ext(pkt, INIT_SPAWN_USER | INIT_SPAWN_KEEP_STDIN, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), 0);

        /* the extension missing (too short for it), and one where none belongs */
        n = mk_spawn(pkt, INIT_SPAWN_PTY, 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn(pkt, INIT_SPAWN_USER, 1, 0, 0, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn_ext(pkt, 0, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        n = mk_spawn_ext(pkt, INIT_SPAWN_KEEP_STDIN, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* with the extension but no strings after it */
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY, &ext, "", 0);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
        /* the cgroup fd rule still holds */
        n = mk_spawn_ext(pkt, INIT_SPAWN_PTY | INIT_SPAWN_INTO_CGROUP, &ext, "a\0/", 4);
        assert_int_equal(server_parse(pkt, n, 1, &req), 0);
        assert_int_equal(server_parse(pkt, n, 0, &req), -EBADMSG);
}

static void test_build_spawn_ext(void **state)
{
        char *argv[] = { "sh", NULL };
        void *buf = NULL;
        struct init_spawn_req req;
        size_t len, len_v1;

        assert_int_equal(init_client_build_spawn(1, argv, NULL, "/", NULL, &buf, &len_v1), 0);
        free(buf);

        assert_int_equal(init_client_build_spawn(1, argv, NULL, "/",
                                                 &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY | INIT_SPAWN_USER,
                                                                            .uid = 1000, .gid = 1001, .cols = 132,
                                                                            .rows = 43, .cgroup_fd = 5 },
                                                 &buf, &len),
                         0);
        assert_int_equal(len, len_v1 + sizeof(struct init_spawn_ext));
        assert_int_equal(server_parse(buf, len, 0, &req), 0); /* cgroup_fd is send_spawn's business */
        assert_int_equal(req.flags, INIT_SPAWN_PTY | INIT_SPAWN_USER);
        assert_int_equal(req.uid, 1000);
        assert_int_equal(req.gid, 1001);
        assert_int_equal(req.cols, 132);
        assert_int_equal(req.rows, 43);
        assert_string_equal(req.argv[0], "sh");
        free(buf);

        /* KEEP_STDIN alone: a version-1 sized packet */
        assert_int_equal(init_client_build_spawn(1, argv, NULL, "/",
                                                 &(struct init_spawn_opts){ .flags = INIT_SPAWN_KEEP_STDIN }, &buf,
                                                 &len),
                         0);
        assert_int_equal(len, len_v1);
        assert_int_equal(server_parse(buf, len, 0, &req), 0);
        assert_int_equal(req.flags, INIT_SPAWN_KEEP_STDIN);
        free(buf);
        buf = NULL;

        /* what the protocol refuses is refused before sending */
        static const struct init_spawn_opts bad[] = {
                { .flags = INIT_SPAWN_PTY | INIT_SPAWN_KEEP_STDIN },
                { .flags = INIT_SPAWN_USER, .uid = 65535 },
                { .flags = INIT_SPAWN_USER, .gid = 70000 },
                { .flags = INIT_SPAWN_PTY, .cols = SBX_MAX_PTY_SIZE + 1 },
                { .flags = INIT_SPAWN_PTY, .rows = SBX_MAX_PTY_SIZE + 1 },
                { .flags = 1u << 4 },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(init_client_build_spawn(1, argv, NULL, "/", &bad[i], &buf, &len), -EINVAL);
        assert_null(buf);

        assert_int_equal(init_client_spawn_version(0), 1);
        assert_int_equal(init_client_spawn_version(INIT_SPAWN_INTO_CGROUP), 1);
        assert_int_equal(init_client_spawn_version(INIT_SPAWN_PTY), 2);
        assert_int_equal(init_client_spawn_version(INIT_SPAWN_USER | INIT_SPAWN_INTO_CGROUP), 2);
        assert_int_equal(init_client_spawn_version(INIT_SPAWN_KEEP_STDIN), 2);
}

/* ---- init_client_recv(): fd types, over a socketpair ---- */

static unsigned count_fds(void)
{
        unsigned n = 0;

        for (int fd = 0; fd < 1024; fd++)
                if (fcntl(fd, F_GETFD) >= 0)
                        n++;
        return n;
}

/* Send one packet (type, payload) with fds on s; receive it on r. */
static int roundtrip(int s, int r, uint32_t type, const void *payload, uint32_t len, const int *fds, unsigned n_fds,
                     struct init_client_msg *ret)
{
        char pkt[256];
        union {
                struct cmsghdr align;
                char b[CMSG_SPACE(sizeof(int) * 4)];
        } cbuf;
        struct iovec iov = { .iov_base = pkt, .iov_len = mk(pkt, type, len, 3, payload, len) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        if (n_fds > 0) {
                memset(&cbuf, 0, sizeof cbuf);
                mh.msg_control = cbuf.b;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }
        assert_int_equal(sendmsg(s, &mh, MSG_NOSIGNAL), (ssize_t)iov.iov_len);
        init_client_msg_init(ret);
        return init_client_recv(r, ret);
}

static void test_recv_fd_types(void **state)
{
        _cleanup_close_ int master = -EBADF, master_ro = -EBADF, devnull = -EBADF;
        int sp[2], in[2], out[2], err[2];
        struct init_spawned ok = { .pid = 9 }, okpty = { .pid = 9, .flags = INIT_SPAWNED_PTY };
        struct init_fds f;
        struct init_client_msg m;
        unsigned before;

        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
        assert_int_equal(pipe2(in, O_CLOEXEC), 0);
        assert_int_equal(pipe2(out, O_CLOEXEC), 0);
        assert_int_equal(pipe2(err, O_CLOEXEC), 0);
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        assert_true(devnull >= 0);
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        master_ro = open("/dev/ptmx", O_RDONLY | O_NOCTTY | O_CLOEXEC);
        before = count_fds();

        /* pipes as today */
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_SPAWNED, &ok, sizeof ok, (int[]){ in[1], out[0], err[0] }, 3, &m),
                         0);
        assert_int_equal(m.n_fds, 3);
        assert_true(fcntl(m.fds[1], F_GETFL) & O_NONBLOCK);
        init_client_msg_release(&m);
        assert_int_equal(count_fds(), before);
        /* a pty master where a pipe belongs */
        if (master >= 0) {
                assert_int_equal(roundtrip(sp[0], sp[1], INIT_SPAWNED, &ok, sizeof ok,
                                           (int[]){ master, out[0], err[0] }, 3, &m),
                                 -EBADMSG);
                assert_int_equal(count_fds(), before);
        }

        /* the pty master: a ptmx character device, O_RDWR */
        if (master >= 0) {
                assert_int_equal(roundtrip(sp[0], sp[1], INIT_SPAWNED, &okpty, sizeof okpty, &master, 1, &m), 0);
                assert_true(m.pty);
                assert_int_equal(m.n_fds, 1);
                assert_true(fcntl(m.fds[0], F_GETFL) & O_NONBLOCK);
                init_client_msg_release(&m);
                assert_int_equal(count_fds(), before);
        }
        if (master_ro >= 0) {
                assert_int_equal(roundtrip(sp[0], sp[1], INIT_SPAWNED, &okpty, sizeof okpty, &master_ro, 1, &m),
                                 -EBADMSG);
                assert_int_equal(count_fds(), before);
        }
        /* a pipe, or another character device opened O_RDWR, is no pty master */
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_SPAWNED, &okpty, sizeof okpty, &out[0], 1, &m), -EBADMSG);
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_SPAWNED, &okpty, sizeof okpty, &devnull, 1, &m), -EBADMSG);
        assert_int_equal(count_fds(), before);

        /* INIT_FDS: kept stdin is a write end, in bit order before stdout/stderr */
        f = (struct init_fds){ .mask = INIT_FD_STDIN | INIT_FD_STDOUT | INIT_FD_STDERR };
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, (int[]){ in[1], out[0], err[0] }, 3, &m), 0);
        assert_int_equal(m.fd_mask, f.mask);
        assert_int_equal(fcntl(m.fds[0], F_GETFL) & O_ACCMODE, O_WRONLY);
        init_client_msg_release(&m);
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, (int[]){ out[0], in[1], err[0] }, 3, &m),
                         -EBADMSG);
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, (int[]){ in[0], out[0], err[0] }, 3, &m),
                         -EBADMSG);
        /* the mask and the fds that came disagree: all of them closed */
        f.mask = INIT_FD_STDOUT | INIT_FD_STDERR;
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, (int[]){ in[1], out[0], err[0] }, 3, &m),
                         -EBADMSG);
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, (int[]){ out[0] }, 1, &m), -EBADMSG);
        assert_int_equal(count_fds(), before);
        f.mask = INIT_FD_PTY;
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, &out[0], 1, &m), -EBADMSG);
        assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, &devnull, 1, &m), -EBADMSG);
        if (master >= 0) {
                assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, &master, 1, &m), 0);
                assert_true(m.pty);
                init_client_msg_release(&m);
                assert_int_equal(roundtrip(sp[0], sp[1], INIT_FDS, &f, sizeof f, (int[]){ master, master }, 2, &m),
                                 -EBADMSG);
        }
        assert_int_equal(count_fds(), before);

        for (int i = 0; i < 2; i++) {
                (void)close(sp[i]);
                (void)close(in[i]);
                (void)close(out[i]);
                (void)close(err[i]);
        }
}

/* send_spawn: the cgroup flag follows cgroup_fd; flags a known older sbx-init lacks are refused. */
static void test_send_version(void **state)
{
        static char pkt[SBX_INIT_MAX_MSG];
        char *argv[] = { "sh", NULL };
        _cleanup_close_ int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        struct init_spawn_req req;
        struct init_msg h;
        int sp[2];
        ssize_t n;

        assert_true(dir >= 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp), 0);

        assert_int_equal(init_client_send_spawn(sp[0], 1, argv, NULL, "/",
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY, .cgroup_fd = -1,
                                                                           .version = 1 }),
                         -EPROTONOSUPPORT);
        assert_int_equal(init_client_send_spawn(sp[0], 1, argv, NULL, "/",
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_KEEP_STDIN,
                                                                           .cgroup_fd = -1, .version = 1 }),
                         -EPROTONOSUPPORT);
        assert_int_equal(init_client_send_spawn(sp[0], 1, argv, NULL, "/",
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY |
                                                                                    INIT_SPAWN_KEEP_STDIN,
                                                                           .cgroup_fd = -1 }),
                         -EINVAL);
        assert_int_equal(recv(sp[1], pkt, sizeof pkt, MSG_DONTWAIT), -1); /* nothing was sent */
        assert_int_equal(errno, EAGAIN);

        /* a version-1 sbx-init still gets plain spawns */
        assert_int_equal(init_client_send_spawn(sp[0], 2, argv, NULL, "/",
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_INTO_CGROUP,
                                                                           .cgroup_fd = -1, .version = 1 }),
                         0);
        n = recv(sp[1], pkt, sizeof pkt, 0);
        assert_true(n > 0);
        assert_int_equal(server_parse(pkt, (size_t)n, 0, &req), 0);
        assert_int_equal(req.flags, 0); /* no fd: no cgroup flag */

        assert_int_equal(init_client_send_spawn(sp[0], 3, argv, NULL, "/",
                                                &(struct init_spawn_opts){ .flags = INIT_SPAWN_PTY, .cols = 90,
                                                                           .cgroup_fd = dir, .version = 2 }),
                         0);
        n = recv(sp[1], pkt, sizeof pkt, 0); /* the fd is dropped by plain recv */
        assert_true(n > 0);
        assert_int_equal(server_parse(pkt, (size_t)n, 1, &req), 0);
        assert_int_equal(req.flags, INIT_SPAWN_PTY | INIT_SPAWN_INTO_CGROUP);
        assert_int_equal(req.cols, 90);

        assert_int_equal(init_client_send_spawn(sp[0], 4, argv, NULL, "/", NULL), 0);
        n = recv(sp[1], pkt, sizeof pkt, 0);
        assert_true(n > 0);
        assert_int_equal(server_parse(pkt, (size_t)n, 0, &req), 0);
        assert_int_equal(req.flags, 0);

        /* CLOSE_STDIN: header only */
        assert_int_equal(init_client_send_close_stdin(sp[0], 5), 0);
        n = recv(sp[1], pkt, sizeof pkt, 0);
        assert_int_equal(n, sizeof(struct init_msg));
        memcpy(&h, pkt, sizeof h);
        assert_int_equal(h.type, INIT_CLOSE_STDIN);
        assert_int_equal(h.id, 5);
        assert_int_equal(init_req_check(&h, (size_t)n, 0), 0);
        assert_int_equal(init_req_check(&h, (size_t)n, 1), -EBADMSG);

        (void)close(sp[0]);
        (void)close(sp[1]);
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
                cmocka_unit_test(test_parse_fds),
                cmocka_unit_test(test_server_spawn_ext),
                cmocka_unit_test(test_build_spawn_ext),
                cmocka_unit_test(test_recv_fd_types),
                cmocka_unit_test(test_send_version),
                cmocka_unit_test(test_parse_list),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
