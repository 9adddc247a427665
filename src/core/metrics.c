// SPDX-License-Identifier: Apache-2.0
/*
 * Metrics registry and Prometheus text rendering; see metrics.h. Durations are kept in whole
 * microseconds so bucket comparisons are exact and sums never lose precision to floats.
 */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_MAX_STATUS 600           /* statuses 100..599; slot 0 collects the rest */
#define METRICS_MAX_OUTPUT (1024 * 1024) /* a render larger than this is a bug: fail */
#define METRICS_MAX_LABEL 64             /* state label values are cut here */

struct histogram {
        uint64_t buckets[METRICS_N_BUCKETS + 1]; /* per bucket (not cumulative); last is +Inf */
        uint64_t sum_usec;
        uint64_t count;
};

static const uint64_t bucket_usec[METRICS_N_BUCKETS] = {
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};
static const char *const bucket_le[METRICS_N_BUCKETS + 1] = {
        "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25",   "0.5",   "1",      "2.5",   "5",    "10",    "+Inf",
};

static struct {
        uint64_t http_by_status[METRICS_MAX_STATUS];
        struct histogram http_duration;
        uint64_t creates;
        uint64_t create_failures;
        struct histogram create_duration;
        uint64_t execs;
        struct histogram exec_duration;
} reg;

static void counter_add(uint64_t *c, uint64_t v)
{
        (void)__atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

static uint64_t counter_get(const uint64_t *c)
{
        return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static void histogram_observe(struct histogram *h, uint64_t usec)
{
        size_t i = 0;

        while (i < METRICS_N_BUCKETS && usec > bucket_usec[i])
                i++;
        counter_add(&h->buckets[i], 1);
        counter_add(&h->sum_usec, usec);
        counter_add(&h->count, 1);
}

void metrics_http_request(unsigned status, uint64_t usec)
{
        counter_add(&reg.http_by_status[status >= 100 && status < METRICS_MAX_STATUS ? status : 0], 1);
        histogram_observe(&reg.http_duration, usec);
}

void metrics_create(bool ok, uint64_t usec)
{
        counter_add(&reg.creates, 1);
        if (ok)
                histogram_observe(&reg.create_duration, usec);
        else
                counter_add(&reg.create_failures, 1);
}

void metrics_exec(uint64_t usec)
{
        counter_add(&reg.execs, 1);
        histogram_observe(&reg.exec_duration, usec);
}

void metrics_reset(void)
{
        memset(&reg, 0, sizeof reg);
}

/* --- rendering --- */

struct out {
        char *data;
        size_t len, cap;
        bool failed;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
        va_list ap;
        int n;

        if (o->failed)
                return;
        for (;;) {
                size_t avail = o->cap - o->len;

                va_start(ap, fmt);
                n = vsnprintf(o->data ? o->data + o->len : NULL, avail, fmt, ap);
                va_end(ap);
                if (n < 0) {
                        o->failed = true;
                        return;
                }
                if ((size_t)n < avail) {
                        o->len += (size_t)n;
                        return;
                }
                size_t want = o->cap ? o->cap * 2 : 4096;
                while (want < o->len + (size_t)n + 1)
                        want *= 2;
                if (want > METRICS_MAX_OUTPUT) {
                        o->failed = true;
                        return;
                }
                char *p = realloc(o->data, want);
                if (!p) {
                        o->failed = true;
                        return;
                }
                o->data = p;
                o->cap = want;
        }
}

static void out_header(struct out *o, const char *name, const char *type, const char *help)
{
        out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void out_counter(struct out *o, const char *name, const char *help, const uint64_t *c)
{
        out_header(o, name, "counter", help);
        out_printf(o, "%s %" PRIu64 "\n", name, counter_get(c));
}

static void out_histogram(struct out *o, const char *name, const char *help, const struct histogram *h)
{
        uint64_t cum = 0, sum;

        out_header(o, name, "histogram", help);
        for (size_t i = 0; i <= METRICS_N_BUCKETS; i++) {
                cum += counter_get(&h->buckets[i]);
                out_printf(o, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", name, bucket_le[i], cum);
        }
        sum = counter_get(&h->sum_usec);
        out_printf(o, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name, sum / 1000000, sum % 1000000);
        /* _count equals the +Inf bucket by definition; print that value so they always agree */
        out_printf(o, "%s_count %" PRIu64 "\n", name, cum);
}

/* Prometheus label value escaping: backslash, double quote and newline. */
static void escape_label(const char *s, char *buf, size_t size)
{
        size_t n = 0;

        for (; s && *s && n + 3 < size && n < 2 * METRICS_MAX_LABEL; s++) {
                if (*s == '\\' || *s == '"') {
                        buf[n++] = '\\';
                        buf[n++] = *s;
                } else if (*s == '\n') {
                        buf[n++] = '\\';
                        buf[n++] = 'n';
                } else {
                        buf[n++] = *s;
                }
        }
        buf[n] = '\0';
}

char *metrics_render(const struct metrics_state_count *states, size_t n_states)
{
        struct out o = { 0 };

        out_header(&o, "sbx_http_requests_total", "counter", "HTTP requests answered, by status code.");
        for (unsigned s = 0; s < METRICS_MAX_STATUS; s++) {
                uint64_t v = counter_get(&reg.http_by_status[s]);
                if (v)
                        out_printf(&o, "sbx_http_requests_total{code=\"%u\"} %" PRIu64 "\n", s, v);
        }
        out_histogram(&o, "sbx_http_request_duration_seconds", "Time from the request line to the end of the response.",
                      &reg.http_duration);
        out_counter(&o, "sbx_sandbox_creates_total", "Sandbox create attempts.", &reg.creates);
        out_counter(&o, "sbx_sandbox_create_failures_total", "Sandbox create attempts that failed.",
                    &reg.create_failures);
        out_histogram(&o, "sbx_sandbox_create_duration_seconds", "Time to create a sandbox (successful creates).",
                      &reg.create_duration);
        out_counter(&o, "sbx_execs_total", "Commands executed in sandboxes.", &reg.execs);
        out_histogram(&o, "sbx_exec_duration_seconds", "Time from exec request to process exit.", &reg.exec_duration);
        out_header(&o, "sbx_sandboxes", "gauge", "Sandboxes by state.");
        for (size_t i = 0; i < n_states; i++) {
                char label[2 * METRICS_MAX_LABEL + 4];

                escape_label(states[i].state, label, sizeof label);
                out_printf(&o, "sbx_sandboxes{state=\"%s\"} %" PRIu64 "\n", label, states[i].count);
        }
        if (o.failed || !o.data) {
                free(o.data);
                return NULL;
        }
        return o.data;
}
