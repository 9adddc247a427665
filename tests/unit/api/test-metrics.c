// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/core/metrics.c: the rendered text parses as Prometheus text format 0.0.4
 * (HELP and TYPE before each family's samples, one sample per line, label values escaped), every
 * histogram has cumulative buckets ending in +Inf, a _sum in seconds and a _count equal to the
 * +Inf bucket, observations land in the right bucket (upper bounds inclusive), counters count.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/metrics.h"

/* Value of the sample line "name{labels} value" / "name value", or -1 if absent. */
static double sample(const char *text, const char *name_and_labels)
{
        size_t n = strlen(name_and_labels);

        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
                if (strncmp(l, name_and_labels, n) == 0 && l[n] == ' ')
                        return strtod(l + n + 1, NULL);
        return -1;
}

/* Every line is a comment or "metric[{labels}] value"; every family has HELP then TYPE first. */
static void check_format(const char *text)
{
        char family[128] = "";
        char type[32] = "";
        bool help_seen = false;

        assert_true(strlen(text) > 0);
        assert_int_equal(text[strlen(text) - 1], '\n');
        for (const char *l = text; *l;) {
                const char *end = strchr(l, '\n');
                char line[512];
                size_t len;

                assert_non_null(end);
                len = (size_t)(end - l);
                assert_true(len < sizeof line);
                memcpy(line, l, len);
                line[len] = '\0';
                l = end + 1;

                if (strncmp(line, "# HELP ", 7) == 0) {
                        assert_int_equal(sscanf(line + 7, "%127s", family), 1);
                        help_seen = true;
                        type[0] = '\0';
                        continue;
                }
                if (strncmp(line, "# TYPE ", 7) == 0) {
                        char fam[128];

                        assert_true(help_seen);
                        assert_int_equal(sscanf(line + 7, "%127s %31s", fam, type), 2);
                        assert_string_equal(fam, family);
                        assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                                    strcmp(type, "histogram") == 0);
                        continue;
                }
                assert_int_not_equal(line[0], '#');
                assert_true(type[0] != '\0'); /* a sample needs its TYPE line before it */
                assert_memory_equal(line, family, strlen(family));
                {
                        const char *rest = line + strlen(family);
                        const char *sp;
                        char *num_end;

                        if (strcmp(type, "histogram") == 0)
                                assert_true(strncmp(rest, "_bucket{le=\"", 12) == 0 || strncmp(rest, "_sum ", 5) == 0 ||
                                            strncmp(rest, "_count ", 7) == 0);
                        else
                                assert_true(rest[0] == ' ' || rest[0] == '{');
                        sp = strrchr(line, ' ');
                        assert_non_null(sp);
                        (void)strtod(sp + 1, &num_end);
                        assert_int_equal(*num_end, '\0');
                        assert_true(num_end > sp + 1);
                }
        }
}

static void check_histogram(const char *text, const char *name, uint64_t count, double sum)
{
        static const char *const le[] = { "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                                          "0.25",   "0.5",   "1",      "2.5",   "5",    "10",    "+Inf" };
        double prev = 0;
        char key[160];

        for (size_t i = 0; i < sizeof le / sizeof le[0]; i++) {
                double v;

                snprintf(key, sizeof key, "%s_bucket{le=\"%s\"}", name, le[i]);
                v = sample(text, key);
                assert_true(v >= 0);
                assert_true(v >= prev); /* cumulative */
                prev = v;
        }
        assert_true(prev == (double)count);
        snprintf(key, sizeof key, "%s_count", name);
        assert_true(sample(text, key) == (double)count);
        snprintf(key, sizeof key, "%s_sum", name);
        assert_float_equal(sample(text, key), sum, 1e-9);
}

static int setup(void **state)
{
        metrics_reset();
        return 0;
}

static void test_empty(void **state)
{
        char *t = metrics_render(NULL, 0);

        assert_non_null(t);
        check_format(t);
        assert_non_null(strstr(t, "# TYPE sbx_http_requests_total counter\n"));
        assert_non_null(strstr(t, "# TYPE sbx_sandboxes gauge\n"));
        check_histogram(t, "sbx_http_request_duration_seconds", 0, 0);
        check_histogram(t, "sbx_sandbox_create_duration_seconds", 0, 0);
        check_histogram(t, "sbx_exec_duration_seconds", 0, 0);
        assert_true(sample(t, "sbx_sandbox_creates_total") == 0);
        free(t);
}

static void test_http(void **state)
{
        char *t;

        metrics_http_request(200, 300);      /* 0.0003 s: first bucket */
        metrics_http_request(200, 500);      /* exactly 0.0005: first bucket (le is inclusive) */
        metrics_http_request(404, 501);      /* second bucket */
        metrics_http_request(500, 20000000); /* 20 s: only +Inf */
        metrics_http_request(42, 1);         /* nonsense status: counted as code 0 */
        t = metrics_render(NULL, 0);
        assert_non_null(t);
        check_format(t);
        assert_true(sample(t, "sbx_http_requests_total{code=\"200\"}") == 2);
        assert_true(sample(t, "sbx_http_requests_total{code=\"404\"}") == 1);
        assert_true(sample(t, "sbx_http_requests_total{code=\"500\"}") == 1);
        assert_true(sample(t, "sbx_http_requests_total{code=\"0\"}") == 1);
        assert_true(sample(t, "sbx_http_requests_total{code=\"201\"}") == -1);
        assert_true(sample(t, "sbx_http_request_duration_seconds_bucket{le=\"0.0005\"}") == 3);
        assert_true(sample(t, "sbx_http_request_duration_seconds_bucket{le=\"0.001\"}") == 4);
        assert_true(sample(t, "sbx_http_request_duration_seconds_bucket{le=\"10\"}") == 4);
        check_histogram(t, "sbx_http_request_duration_seconds", 5, 20.001302);
        free(t);
}

static void test_create_exec(void **state)
{
        char *t;

        metrics_create(true, 1500000);
        metrics_create(true, 500000);
        metrics_create(false, 100);
        metrics_exec(2500);
        metrics_exec(10000000);
        t = metrics_render(NULL, 0);
        assert_non_null(t);
        check_format(t);
        assert_true(sample(t, "sbx_sandbox_creates_total") == 3);
        assert_true(sample(t, "sbx_sandbox_create_failures_total") == 1);
        assert_true(sample(t, "sbx_execs_total") == 2);
        check_histogram(t, "sbx_sandbox_create_duration_seconds", 2, 2.0);
        assert_true(sample(t, "sbx_sandbox_create_duration_seconds_bucket{le=\"0.25\"}") == 0);
        assert_true(sample(t, "sbx_sandbox_create_duration_seconds_bucket{le=\"0.5\"}") == 1);
        assert_true(sample(t, "sbx_sandbox_create_duration_seconds_bucket{le=\"2.5\"}") == 2);
        check_histogram(t, "sbx_exec_duration_seconds", 2, 10.0025);
        assert_true(sample(t, "sbx_exec_duration_seconds_bucket{le=\"0.0025\"}") == 1);
        assert_true(sample(t, "sbx_exec_duration_seconds_bucket{le=\"10\"}") == 2);
        free(t);
}

static void test_states(void **state)
{
        const struct metrics_state_count states[] = {
                { "running", 3 },
                { "stopped", 0 },
                { "we\"ird\\\nname", 1 },
        };
        char *t = metrics_render(states, 3);

        assert_non_null(t);
        check_format(t);
        assert_true(sample(t, "sbx_sandboxes{state=\"running\"}") == 3);
        assert_true(sample(t, "sbx_sandboxes{state=\"stopped\"}") == 0);
        assert_true(sample(t, "sbx_sandboxes{state=\"we\\\"ird\\\\\\nname\"}") == 1);
        free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_empty, setup),
                cmocka_unit_test_setup(test_http, setup),
                cmocka_unit_test_setup(test_create_exec, setup),
                cmocka_unit_test_setup(test_states, setup),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
