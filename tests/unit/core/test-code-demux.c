// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/core/code-demux.c: the marker demux (markers split across feeds at every byte
 * position, output without a trailing newline before a marker, fake markers with another token,
 * back-to-back runs, markers of the two streams in either order, over-limit and broken markers,
 * the end of a stream), request lines and their escaping, tokens, language detection (a table),
 * language names and the compiled-in driver sources. Pure: no I/O.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "common/err.h"
#include "common/limits.h"
#include "core/code-demux.h"

#define TOKEN "0123456789abcdef0123456789abcdef"
#define OTHER "fedcba9876543210fedcba9876543210"
#define MARK "\x1eSBX" TOKEN " "

/* ---- a recorder for the callbacks ---- */

struct rec {
        char out[2][1 << 16];
        size_t out_len[2];
        int markers[2];
        uint64_t done_ids[32];
        json_t *done_results[32];
        int n_done;
        int errors[16];
        int n_errors;
        char last_error[SBX_ERR_MSG_MAX];
};

static void rec_output(void *u, enum code_stream stream, const char *buf, size_t len)
{
        struct rec *r = u;

        assert_true(len > 0);
        assert_true(r->out_len[stream] + len <= sizeof r->out[stream]);
        memcpy(r->out[stream] + r->out_len[stream], buf, len);
        r->out_len[stream] += len;
}

static void rec_marker(void *u, enum code_stream stream, uint64_t id, const json_t *json)
{
        struct rec *r = u;

        assert_int_equal(json_integer_value(json_object_get(json, "id")), id);
        r->markers[stream]++;
}

static void rec_done(void *u, uint64_t id, const json_t *result)
{
        struct rec *r = u;

        assert_true(r->n_done < 32);
        r->done_ids[r->n_done] = id;
        r->done_results[r->n_done] = json_deep_copy(result);
        r->n_done++;
}

static void rec_error(void *u, enum code_stream stream, int code, const char *msg)
{
        struct rec *r = u;

        assert_true(r->n_errors < 16);
        r->errors[r->n_errors++] = code;
        assert_true(strlen(msg) > 0);
        snprintf(r->last_error, sizeof r->last_error, "%s", msg);
}

static struct code_demux_callbacks rec_cb(struct rec *r)
{
        return (struct code_demux_callbacks){
                .userdata = r,
                .output = rec_output,
                .marker = rec_marker,
                .done = rec_done,
                .error = rec_error,
        };
}

static void rec_release(struct rec *r)
{
        for (int i = 0; i < r->n_done; i++)
                json_decref(r->done_results[i]);
        free(r);
}

static struct rec *rec_new(void)
{
        struct rec *r = calloc(1, sizeof *r);

        assert_non_null(r);
        return r;
}

static void feed(struct code_demux *d, enum code_stream s, const char *buf, size_t len, struct rec *r)
{
        struct code_demux_callbacks cb = rec_cb(r);

        assert_int_equal(code_demux_feed(d, s, buf, len, &cb), 0);
}

static void feed_str(struct code_demux *d, enum code_stream s, const char *text, struct rec *r)
{
        feed(d, s, text, strlen(text), r);
}

static const char *result_output(const json_t *result)
{
        return json_string_value(json_object_get(result, "output"));
}

/* ---- the demux ---- */

static const char out_stream[] = "hello " MARK "{\"id\":1,\"ok\":true,\"output\":\"2\",\"error\":null}\n"
                                 "after\n";
static const char err_stream[] = "warn" MARK "{\"id\":1}\n";

/* Feed out_stream in pieces cut at a and b, err_stream whole, and check everything. */
static void check_split(size_t a, size_t b)
{
        struct code_demux d;
        struct rec *r = rec_new();
        size_t len = sizeof out_stream - 1;

        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        feed(&d, CODE_STDOUT, out_stream, a, r);
        feed(&d, CODE_STDOUT, out_stream + a, b - a, r);
        feed_str(&d, CODE_STDERR, err_stream, r);
        feed(&d, CODE_STDOUT, out_stream + b, len - b, r);
        assert_int_equal(r->out_len[CODE_STDOUT], strlen("hello after\n"));
        assert_memory_equal(r->out[CODE_STDOUT], "hello after\n", r->out_len[CODE_STDOUT]);
        assert_int_equal(r->out_len[CODE_STDERR], 4);
        assert_memory_equal(r->out[CODE_STDERR], "warn", 4);
        assert_int_equal(r->markers[CODE_STDOUT], 1);
        assert_int_equal(r->markers[CODE_STDERR], 1);
        assert_int_equal(r->n_done, 1);
        assert_int_equal(r->done_ids[0], 1);
        assert_string_equal(result_output(r->done_results[0]), "2");
        assert_int_equal(r->n_errors, 0);
        code_demux_done(&d);
        rec_release(r);
}

static void test_split_everywhere(void **state)
{
        size_t len = sizeof out_stream - 1;

        for (size_t a = 0; a <= len; a++)
                for (size_t b = a; b <= len; b++)
                        check_split(a, b);
}

static void test_byte_by_byte(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();

        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        for (size_t i = 0; i < sizeof err_stream - 1; i++)
                feed(&d, CODE_STDERR, err_stream + i, 1, r);
        for (size_t i = 0; i < sizeof out_stream - 1; i++) {
                feed(&d, CODE_STDOUT, out_stream + i, 1, r);
                /* never more held back than a marker prefix could need */
                assert_true(r->out_len[CODE_STDOUT] + CODE_MARKER_PREFIX_LEN > i + 1 ||
                            d.streams[CODE_STDOUT].in_marker || r->n_done == 1);
        }
        assert_int_equal(r->n_done, 1);
        assert_memory_equal(r->out[CODE_STDOUT], "hello after\n", 12);
        assert_memory_equal(r->out[CODE_STDERR], "warn", 4);
        code_demux_done(&d);
        rec_release(r);
}

static void test_streaming(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();

        /* output is passed on at once, not held until a newline */
        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        feed_str(&d, CODE_STDOUT, "par", r);
        assert_int_equal(r->out_len[CODE_STDOUT], 3);
        feed_str(&d, CODE_STDOUT, "tial\x1eSB", r);
        assert_int_equal(r->out_len[CODE_STDOUT], 7); /* "\x1eSB" held back */
        feed_str(&d, CODE_STDOUT, "X" TOKEN " {\"id\":3,\"ok\":true,\"output\":null,\"error\":null}\n", r);
        assert_int_equal(r->out_len[CODE_STDOUT], 7);
        assert_memory_equal(r->out[CODE_STDOUT], "partial", 7);
        feed_str(&d, CODE_STDERR, MARK "{\"id\":3}\n", r);
        assert_int_equal(r->n_done, 1);
        assert_true(json_is_null(json_object_get(r->done_results[0], "output")));
        code_demux_done(&d);
        rec_release(r);
}

static void test_fake_markers(void **state)
{
        static const char *const fakes[] = {
                "\x1eSBX" OTHER " {\"id\":1}\n", /* another token */
                "\x1eSBX" TOKEN "{\"id\":1}\n",  /* no blank */
                "\x1eSBX0123 {\"id\":1}\n",      /* short token */
                "\x1eSBY" TOKEN " x\n",          /* not SBX */
                "\x1e\x1e\x1e",                  /* separators only */
                "SBX" TOKEN " {\"id\":1}\n",     /* no separator */
                "\x1eSBX"
                "0123456789abcdef0123456789abcdeF {}\n", /* upper case */
        };

        for (size_t i = 0; i < sizeof fakes / sizeof fakes[0]; i++) {
                size_t len = strlen(fakes[i]);

                /* whole, and split at every position */
                for (size_t cut = 0; cut <= len; cut++) {
                        struct code_demux d;
                        struct rec *r = rec_new();
                        struct code_demux_callbacks cb = rec_cb(r);

                        assert_int_equal(code_demux_init(&d, TOKEN), 0);
                        feed(&d, CODE_STDOUT, fakes[i], cut, r);
                        feed(&d, CODE_STDOUT, fakes[i] + cut, len - cut, r);
                        assert_int_equal(code_demux_end(&d, CODE_STDOUT, &cb), 0);
                        assert_int_equal(r->out_len[CODE_STDOUT], len);
                        assert_memory_equal(r->out[CODE_STDOUT], fakes[i], len);
                        assert_int_equal(r->markers[CODE_STDOUT], 0);
                        assert_int_equal(r->n_errors, 0);
                        code_demux_done(&d);
                        rec_release(r);
                }
        }
}

static void test_separator_before_marker(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();

        /* a lone \x1e, then a real marker: the first is output, the second starts the marker */
        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        feed_str(&d, CODE_STDERR, "a\x1e\x1eSBX" TOKEN " {\"id\":9}\nb", r);
        assert_int_equal(r->out_len[CODE_STDERR], 3);
        assert_memory_equal(r->out[CODE_STDERR],
                            "a\x1e"
                            "b",
                            3);
        assert_int_equal(r->markers[CODE_STDERR], 1);
        /* a prefix of the other token held back, then its mismatch */
        feed_str(&d, CODE_STDERR, "\x1eSBX0123", r);
        assert_int_equal(r->out_len[CODE_STDERR], 3);
        feed_str(&d, CODE_STDERR, "X", r);
        assert_int_equal(r->out_len[CODE_STDERR], 3 + 8 + 1);
        assert_memory_equal(r->out[CODE_STDERR] + 3, "\x1eSBX0123X", 9);
        code_demux_done(&d);
        rec_release(r);
}

static void test_back_to_back(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();

        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        /* both results in one read, the end markers later and in another read */
        feed_str(
                &d, CODE_STDOUT,
                "one\n" MARK "{\"id\":1,\"ok\":true,\"output\":\"1\",\"error\":null}\n"
                "two" MARK
                "{\"id\":2,\"ok\":false,\"output\":null,\"error\":{\"name\":\"E\",\"value\":\"v\",\"traceback\":\"t\"}}\n",
                r);
        assert_int_equal(r->n_done, 0);
        feed_str(&d, CODE_STDERR, MARK "{\"id\":1}\n" MARK "{\"id\":2}\n", r);
        assert_int_equal(r->n_done, 2);
        assert_int_equal(r->done_ids[0], 1);
        assert_int_equal(r->done_ids[1], 2);
        assert_string_equal(result_output(r->done_results[0]), "1");
        assert_true(json_is_false(json_object_get(r->done_results[1], "ok")));
        assert_memory_equal(r->out[CODE_STDOUT], "one\ntwo", 7);
        assert_int_equal(r->out_len[CODE_STDERR], 0);
        /* text with NUL and non-ASCII characters */
        feed_str(&d, CODE_STDOUT,
                 MARK "{\"id\":4,\"ok\":false,\"output\":null,\"error\":{\"name\":\"E\",\"value\":\"a\\u0000b \u00e9\","
                      "\"traceback\":\"\"}}\n",
                 r);
        feed_str(&d, CODE_STDERR, MARK "{\"id\":4}\n", r);
        assert_int_equal(r->n_done, 3);
        assert_int_equal(json_string_length(json_object_get(json_object_get(r->done_results[2], "error"), "value")), 6);
        /* end marker first this time */
        feed_str(&d, CODE_STDERR, MARK "{\"id\":5}\n", r);
        assert_int_equal(r->n_done, 3);
        feed_str(&d, CODE_STDOUT, MARK "{\"id\":5,\"ok\":true,\"output\":\"'x'\",\"error\":null}\n", r);
        assert_int_equal(r->n_done, 4);
        assert_string_equal(result_output(r->done_results[3]), "'x'");
        assert_int_equal(r->n_errors, 0);
        code_demux_done(&d);
        rec_release(r);
}

static char *big_marker(uint64_t id, size_t output_len, size_t *ret_len)
{
        size_t cap = output_len + 256, n;
        char *s = malloc(cap);

        assert_non_null(s);
        if (id == UINT64_MAX)
                n = (size_t)snprintf(s, cap, MARK "{\"ok\":true,\"output\":\"");
        else
                n = (size_t)snprintf(s, cap, MARK "{\"id\":%llu,\"ok\":true,\"output\":\"", (unsigned long long)id);
        memset(s + n, 'x', output_len);
        n += output_len;
        n += (size_t)snprintf(s + n, cap - n, "\",\"error\":null}\nnext");
        *ret_len = n;
        return s;
}

static void test_over_limit(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();
        size_t len;
        char *m;

        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        d.max_marker = 1024;
        m = big_marker(5, 2000, &len);
        for (size_t i = 0; i < len; i += 100)
                feed(&d, CODE_STDOUT, m + i, len - i < 100 ? len - i : 100, r);
        assert_true(d.streams[CODE_STDOUT].line_cap <= 1024);
        assert_int_equal(r->n_errors, 1);
        assert_int_equal(r->errors[0], -SBX_E_TOO_LARGE);
        assert_non_null(strstr(r->last_error, "run 5"));
        assert_int_equal(r->out_len[CODE_STDOUT], 4);
        assert_memory_equal(r->out[CODE_STDOUT], "next", 4);
        /* the run still ends, with an error result */
        feed_str(&d, CODE_STDERR, MARK "{\"id\":5}\n", r);
        assert_int_equal(r->n_done, 1);
        assert_string_equal(json_string_value(json_object_get(json_object_get(r->done_results[0], "error"), "name")),
                            "ResultTooLarge");
        assert_true(json_is_false(json_object_get(r->done_results[0], "ok")));
        free(m);

        /* no readable id: an error only */
        m = big_marker(UINT64_MAX, 2000, &len);
        feed(&d, CODE_STDOUT, m, len, r);
        assert_int_equal(r->n_errors, 2);
        assert_int_equal(r->errors[1], -SBX_E_TOO_LARGE);
        free(m);

        /* and the demux goes on */
        feed_str(&d, CODE_STDOUT, MARK "{\"id\":6,\"ok\":true,\"output\":\"6\",\"error\":null}\n", r);
        feed_str(&d, CODE_STDERR, MARK "{\"id\":6}\n", r);
        assert_int_equal(r->n_done, 2);
        assert_int_equal(r->done_ids[1], 6);
        code_demux_done(&d);
        rec_release(r);
}

static void test_over_real_limit(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();
        size_t len, ok_len;
        char *m, *ok;

        /* just under SBX_MAX_CODE_RESULT passes, just over does not; the buffer stays bounded */
        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        ok = big_marker(1, SBX_MAX_CODE_RESULT - 64, &ok_len);
        for (size_t i = 0; i < ok_len; i += 65536)
                feed(&d, CODE_STDOUT, ok + i, ok_len - i < 65536 ? ok_len - i : 65536, r);
        assert_int_equal(r->n_errors, 0);
        assert_int_equal(r->markers[CODE_STDOUT], 1);
        m = big_marker(2, SBX_MAX_CODE_RESULT, &len);
        for (size_t i = 0; i < len; i += 65536)
                feed(&d, CODE_STDOUT, m + i, len - i < 65536 ? len - i : 65536, r);
        assert_true(d.streams[CODE_STDOUT].line_cap <= SBX_MAX_CODE_RESULT);
        assert_int_equal(r->n_errors, 1);
        assert_int_equal(r->errors[0], -SBX_E_TOO_LARGE);
        feed_str(&d, CODE_STDERR, MARK "{\"id\":1}\n" MARK "{\"id\":2}\n", r);
        assert_int_equal(r->n_done, 2);
        /* a marker that big is not kept around after it */
        assert_true(d.streams[CODE_STDOUT].line_cap <= 64 * 1024);
        free(m);
        free(ok);
        code_demux_done(&d);
        rec_release(r);
}

static void test_broken_markers(void **state)
{
        static const char *const bad[] = {
                MARK "not json\n",
                MARK "[1]\n",
                MARK "{\"id\":-1,\"ok\":true,\"output\":null,\"error\":null}\n",
                MARK "{\"id\":\"1\",\"ok\":true,\"output\":null,\"error\":null}\n",
                MARK "{\"id\":1,\"ok\":1,\"output\":null,\"error\":null}\n",
                MARK "{\"id\":1,\"ok\":true,\"output\":2,\"error\":null}\n",
                MARK "{\"id\":1,\"ok\":true,\"output\":null,\"error\":{}}\n",
                MARK "{\"id\":1,\"ok\":false,\"output\":null,\"error\":null}\n",
                MARK "{\"id\":1,\"ok\":false,\"output\":null,\"error\":{\"name\":\"E\",\"value\":\"v\"}}\n",
                MARK "{\"id\":1,\"id\":2,\"ok\":true,\"output\":null,\"error\":null}\n",
                MARK "{\"id\":9007199254740992,\"ok\":true,\"output\":null,\"error\":null}\n",
        };

        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                struct code_demux d;
                struct rec *r = rec_new();

                assert_int_equal(code_demux_init(&d, TOKEN), 0);
                feed_str(&d, CODE_STDOUT, bad[i], r);
                feed_str(&d, CODE_STDERR, MARK "{\"id\":1}\n", r);
                if (r->n_errors != 1 || r->errors[0] != -EBADMSG)
                        fail_msg("case %zu: %d errors", i, r->n_errors);
                assert_int_equal(r->n_done, 0);
                assert_int_equal(r->out_len[CODE_STDOUT], 0);
                code_demux_done(&d); /* the unpaired end marker is released */
                rec_release(r);
        }
}

static void test_out_of_step(void **state)
{
        struct code_demux d;
        struct rec *r = rec_new();
        struct code_demux_callbacks cb = rec_cb(r);
        char line[128];

        assert_int_equal(code_demux_init(&d, TOKEN), 0);
        feed_str(&d, CODE_STDOUT, MARK "{\"id\":1,\"ok\":true,\"output\":null,\"error\":null}\n", r);
        feed_str(&d, CODE_STDERR, MARK "{\"id\":2}\n", r);
        assert_int_equal(r->n_errors, 1);
        assert_int_equal(r->errors[0], -EBADMSG);
        assert_int_equal(r->n_done, 0);

        /* too many waiting for the other stream */
        for (int i = 0; i <= CODE_DEMUX_MAX_PENDING; i++) {
                snprintf(line, sizeof line, MARK "{\"id\":%d}\n", 10 + i);
                feed_str(&d, CODE_STDERR, line, r);
        }
        assert_int_equal(r->n_errors, 2);
        assert_int_equal(r->errors[1], -EBADMSG);

        /* a marker cut short by the end of the stream */
        feed_str(&d, CODE_STDOUT, "x" MARK "{\"id\":3,", r);
        assert_int_equal(code_demux_end(&d, CODE_STDOUT, &cb), 0);
        assert_int_equal(r->n_errors, 3);
        assert_int_equal(r->errors[2], -EBADMSG);
        assert_int_equal(r->out_len[CODE_STDOUT], 1);
        code_demux_done(&d);
        rec_release(r);
}

static void test_args(void **state)
{
        struct code_demux d;
        struct code_demux_callbacks none = {};
        char token[CODE_TOKEN_LEN + 1], again[CODE_TOKEN_LEN + 1];

        assert_int_equal(code_demux_init(&d, "0123"), -EINVAL);
        assert_int_equal(code_demux_init(&d, TOKEN "0"), -EINVAL);
        assert_int_equal(code_demux_init(&d, "0123456789ABCDEF0123456789abcdef"), -EINVAL);
        assert_int_equal(code_demux_init(&d, NULL), -EINVAL);
        assert_int_equal(code_token_new(token), 0);
        assert_int_equal(code_token_new(again), 0);
        assert_int_equal(strlen(token), CODE_TOKEN_LEN);
        assert_string_not_equal(token, again);
        assert_int_equal(code_demux_init(&d, token), 0);
        assert_int_equal(code_demux_feed(&d, _CODE_STREAM_MAX, "x", 1, &none), -EINVAL);
        assert_int_equal(code_demux_feed(&d, CODE_STDOUT, NULL, 1, &none), -EINVAL);
        assert_int_equal(code_demux_end(&d, _CODE_STREAM_MAX, &none), -EINVAL);
        /* no callbacks at all is fine */
        assert_int_equal(code_demux_feed(&d, CODE_STDOUT, "x\x1eSBX", 5, NULL), 0);
        assert_int_equal(code_demux_end(&d, CODE_STDOUT, NULL), 0);
        code_demux_done(&d);
        code_demux_done(NULL);
}

/* ---- requests ---- */

static void check_request(uint64_t id, const char *code, size_t len)
{
        json_error_t e;
        char *line = NULL;
        size_t n = 0;
        json_t *j;

        assert_int_equal(code_request_build(id, code, len, &line, &n), 0);
        assert_int_equal(n, strlen(line));
        assert_true(n > 0 && line[n - 1] == '\n');
        assert_null(memchr(line, '\n', n - 1));
        for (size_t i = 0; i < n - 1; i++)
                assert_true((unsigned char)line[i] >= 0x20);
        j = json_loadb(line, n, JSON_ALLOW_NUL, &e);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "id")), id);
        assert_int_equal(json_string_length(json_object_get(j, "code")), len);
        assert_memory_equal(json_string_value(json_object_get(j, "code")), code, len);
        json_decref(j);
        free(line);
}

static void test_request(void **state)
{
        static const char tricky[] =
                "print(\"a\\\\b\")\n\tx = '\x01\x1f'\r\n# é ✓ \xe2\x80\xa8 \xf0\x9f\x98\x80\x1eSBX";
        static const char nul[] = "a\0b";
        char *line = NULL, *big;
        size_t n;

        check_request(1, "x = 1", 5);
        check_request(0, "", 0);
        check_request(CODE_MAX_ID, "1", 1);
        check_request(7, tricky, sizeof tricky - 1);
        check_request(8, nul, 3);
        assert_int_equal(code_request_build(1, "x", 1, &line, &n), 0);
        assert_string_equal(line, "{\"id\":1,\"code\":\"x\"}\n");
        free(line);
        line = NULL;
        assert_int_equal(code_request_build(1, "\xff", 1, &line, &n), -EINVAL);
        assert_int_equal(code_request_build(1, "\xc3", 1, &line, &n), -EINVAL);
        assert_int_equal(code_request_build(CODE_MAX_ID + 1, "x", 1, &line, &n), -EINVAL);
        assert_int_equal(code_request_build(1, NULL, 1, &line, &n), -EINVAL);
        big = malloc(SBX_MAX_JSON_BODY + 1);
        assert_non_null(big);
        memset(big, 'a', SBX_MAX_JSON_BODY + 1);
        assert_int_equal(code_request_build(1, big, SBX_MAX_JSON_BODY + 1, &line, &n), -SBX_E_TOO_LARGE);
        assert_null(line);
        check_request(2, big, SBX_MAX_JSON_BODY);
        free(big);
}

/* ---- languages ---- */

static const struct {
        const char *code;
        const char *language;
} detect_cases[] = {
        /* shebangs first, whatever follows */
        { "#!/usr/bin/env python3\nconsole.log(1)", "python" },
        { "#!/usr/bin/python\necho hi", "python" },
        { "#!/usr/bin/env node\nprint('x')", "node" },
        { "#!/usr/bin/env -S node --no-warnings\nx", "node" },
        { "#!/bin/bash\nprint(1)", "bash" },
        { "#!/bin/sh\nx = 1", "bash" },
        { "#!/usr/bin/env zsh\n", "bash" },
        { "#!/usr/bin/ruby\necho hi", "bash" }, /* unknown shebang: the rest decides */
        /* python */
        { "print('hello')", "python" },
        { "import os\nprint(os.getcwd())", "python" },
        { "import numpy as np\nnp.zeros(3)", "python" },
        { "from pathlib import Path\nPath('.').exists()", "python" },
        { "def f(x):\n    return x * 2\nf(3)", "python" },
        { "for i in range(3):\n    print(i)", "python" },
        { "if x > 1:\n    y = 2\nelif x:\n    y = 3\nelse:\n    y = 4", "python" },
        { "try:\n    risky()\nexcept ValueError as e:\n    print(e)", "python" },
        { "class A:\n    def __init__(self):\n        self.x = None", "python" },
        { "x = [i * 2 for i in range(10)]\nx", "python" },
        { "with open('f') as f:\n    data = f.read()", "python" },
        { "async def main():\n    await asyncio.sleep(1)", "python" },
        { "x = 5", "python" }, /* nothing to go on: python */
        { "1 + 1", "python" },
        { "", "python" },
        { "   \n\n", "python" },
        { "# just a comment", "python" },
        { "squares = {n: n ** 2 for n in range(5)}\nprint(squares)", "python" },
        { "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])", "python" },
        { "os.listdir('.')", "python" },
        { "await asyncio.sleep(1)", "python" },
        { "nums = [1, 2, 3]\ntotal = sum(nums)\ntotal", "python" },
        /* node */
        { "console.log('hello')", "node" },
        { "const fs = require('fs');\nfs.readdirSync('.')", "node" },
        { "let x = 5;\nx * 2;", "node" },
        { "[1, 2, 3].map(x => x * 2)", "node" },
        { "function add(a, b) {\n  return a + b;\n}\nadd(1, 2)", "node" },
        { "import fs from 'fs'\nfs.existsSync('/')", "node" },
        { "import { readFile } from \"fs/promises\"", "node" },
        { "const r = await fetch('http://example.com')\nawait r.text()", "node" },
        { "try {\n  x()\n} catch (e) {\n  console.error(e)\n}", "node" },
        { "class A {\n  constructor() {\n    this.x = 1;\n  }\n}", "node" },
        { "if (a === b) { x = null }", "node" },
        { "// sum\nMath.max(1, 2)", "node" },
        { "process.env.HOME", "node" },
        { "const { a, b } = obj;", "node" },
        { "module.exports = { x: 1 };", "node" },
        { "switch (x) {\n  case 1:\n    break;\n}", "node" },
        { "new Date().toISOString()", "node" },
        { "Object.keys({ a: 1 })", "node" },
        { "\"hello\".toUpperCase()", "node" },
        { "const sum = (a, b) => a + b\nsum(1, 2)", "node" },
        /* bash */
        { "echo hello", "bash" },
        { "ls -la", "bash" },
        { "pwd", "bash" },
        { "cat /etc/os-release | grep ID", "bash" },
        { "for i in 1 2 3; do echo $i; done", "bash" },
        { "if [ -f /etc/passwd ]; then\n  echo yes\nfi", "bash" },
        { "export PATH=$PATH:/opt/bin\nwhich node", "bash" },
        { "x=$(date +%s)\necho $x", "bash" },
        { "npm install lodash", "bash" },
        { "pip install requests", "bash" },
        { "apt-get update && apt-get install -y curl", "bash" },
        { "curl -s https://example.com > /dev/null 2>&1", "bash" },
        { "mkdir -p /tmp/x && cd /tmp/x", "bash" },
        { "set -euo pipefail\nmake", "bash" },
        { "greet() {\n  echo \"hi $1\"\n}\ngreet you", "bash" },
        { "while read line; do\n  echo \"$line\"\ndone < file", "bash" },
        { "git status", "bash" },
        { "python3 script.py --verbose", "bash" },
        { "ps aux | sort | head", "bash" },
        { "python3 -c 'print(1)'", "bash" },
        { "find . -name '*.py' | xargs wc -l", "bash" },
        { "while true; do sleep 1; done", "bash" },
        { "case \"$1\" in\n  start) echo start;;\nesac", "bash" },
        /* look-alikes */
        { "ls = [1, 2]\nprint(ls)", "python" }, /* a python name that is a command */
        { "date = today()\nprint(date)", "python" },
        { "echo = 1\nprint(echo)", "python" },
        { "x = a | b", "python" },     /* a pipe-like operator: too weak alone */
        { "print(`${x}`)", "python" }, /* node 2 (template) vs python 2 (print) vs bash 2 ($): tie */
};

static void test_detect(void **state)
{
        for (size_t i = 0; i < sizeof detect_cases / sizeof detect_cases[0]; i++) {
                const char *got = code_detect_language(detect_cases[i].code, strlen(detect_cases[i].code));

                if (strcmp(got, detect_cases[i].language) != 0)
                        fail_msg("case %zu: %s for \"%s\" (expected %s)", i, got, detect_cases[i].code,
                                 detect_cases[i].language);
        }
        assert_true(sizeof detect_cases / sizeof detect_cases[0] >= 30);
        assert_string_equal(code_detect_language(NULL, 0), "python");
        /* only the first 64 KiB count, and a huge input is fine */
        {
                size_t n = 1 << 20;
                char *big = malloc(n);

                assert_non_null(big);
                memset(big, '\n', n);
                memcpy(big, "echo hi", 7);
                memcpy(big + n - 20, "console.log(1)", 14);
                assert_string_equal(code_detect_language(big, n), "bash");
                free(big);
        }
        /* not NUL-terminated: len counts */
        assert_string_equal(code_detect_language("echo hi; console.log(1)", 7), "bash");
}

static void test_language_parse(void **state)
{
        static const char *const cases[][2] = {
                { "python", "python" }, { "python3", "python" }, { "py", "python" },   { "PY", "python" },
                { "Python", "python" }, { "node", "node" },      { "nodejs", "node" }, { "javascript", "node" },
                { "js", "node" },       { "JS", "node" },        { "bash", "bash" },   { "sh", "bash" },
                { "shell", "bash" },
        };

        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                assert_string_equal(code_language_parse(cases[i][0]), cases[i][1]);
        assert_null(code_language_parse("ruby"));
        assert_null(code_language_parse(""));
        assert_null(code_language_parse("python2"));
        assert_null(code_language_parse("typescript"));
        assert_null(code_language_parse(NULL));
}

static void test_driver_source(void **state)
{
        const char *py = code_driver_source("python"), *js = code_driver_source("javascript");

        assert_non_null(py);
        assert_non_null(js);
        assert_ptr_equal(code_driver_source("py"), py);
        assert_ptr_equal(code_driver_source("node"), js);
        assert_true(strncmp(py, "# SPDX-License-Identifier: Apache-2.0\n", 38) == 0);
        assert_true(strncmp(js, "// SPDX-License-Identifier: Apache-2.0\n", 39) == 0);
        assert_non_null(strstr(py, "SBX_CODE_TOKEN"));
        assert_non_null(strstr(js, "SBX_CODE_TOKEN"));
        assert_non_null(strstr(py, "\n_sbx_driver()\n"));
        assert_non_null(strstr(js, "\n})();\n"));
        assert_null(code_driver_source("bash"));
        assert_null(code_driver_source("ruby"));
        assert_null(code_driver_source(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_split_everywhere),
                cmocka_unit_test(test_byte_by_byte),
                cmocka_unit_test(test_streaming),
                cmocka_unit_test(test_fake_markers),
                cmocka_unit_test(test_separator_before_marker),
                cmocka_unit_test(test_back_to_back),
                cmocka_unit_test(test_over_limit),
                cmocka_unit_test(test_over_real_limit),
                cmocka_unit_test(test_broken_markers),
                cmocka_unit_test(test_out_of_step),
                cmocka_unit_test(test_args),
                cmocka_unit_test(test_request),
                cmocka_unit_test(test_detect),
                cmocka_unit_test(test_language_parse),
                cmocka_unit_test(test_driver_source),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
