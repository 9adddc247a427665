// SPDX-License-Identifier: Apache-2.0
/*
 * Latency samples and their summary, shared by the benchmark tools runcmd.c and sbx-bench.c.
 * Percentiles use the nearest-rank method on the sorted samples (p50 of 200 runs is the 100th
 * smallest, p99 the 198th), so every reported number is a latency that was actually measured.
 * Header-only on purpose: the bench tools are single-file programs that bench/run.sh compiles;
 * they are not part of the daemon's CMake tree and link nothing from src/.
 */
#pragma once

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct samples {
        double *ms; /* owned; n of cap used */
        size_t n;
        size_t cap;
};

struct summary {
        size_t n;
        double p50, p90, p99, min, max, mean;
};

static inline double bench_now_ms(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Reserve room for cap samples up front so that adding one never allocates while timing. */
static inline int samples_init(struct samples *s, size_t cap)
{
        s->n = 0;
        s->cap = cap ? cap : 1;
        s->ms = calloc(s->cap, sizeof *s->ms);
        return s->ms ? 0 : -ENOMEM;
}

static inline void samples_done(struct samples *s)
{
        free(s->ms);
        s->ms = NULL;
        s->n = s->cap = 0;
}

/* For locals: struct samples s _samples_cleanup_ = {}; freed on every return path. */
#define _samples_cleanup_ __attribute__((cleanup(samples_done)))

/* Returns 0, or -ENOBUFS when full (the sample is dropped). */
static inline int samples_add(struct samples *s, double ms)
{
        if (s->n >= s->cap)
                return -ENOBUFS;
        s->ms[s->n++] = ms;
        return 0;
}

static inline int samples_cmp(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;

        return (x > y) - (x < y);
}

static inline double samples_rank(const struct samples *sorted, double pct)
{
        size_t rank = (size_t)ceil(pct / 100.0 * (double)sorted->n);

        if (rank < 1)
                rank = 1;
        if (rank > sorted->n)
                rank = sorted->n;
        return sorted->ms[rank - 1];
}

/* Sorts s in place and fills *ret; all zero when there are no samples. */
static inline void samples_summarize(struct samples *s, struct summary *ret)
{
        double sum = 0;

        *ret = (struct summary){ .n = s->n };
        if (s->n == 0)
                return;
        qsort(s->ms, s->n, sizeof *s->ms, samples_cmp);
        for (size_t i = 0; i < s->n; i++)
                sum += s->ms[i];
        ret->p50 = samples_rank(s, 50);
        ret->p90 = samples_rank(s, 90);
        ret->p99 = samples_rank(s, 99);
        ret->min = s->ms[0];
        ret->max = s->ms[s->n - 1];
        ret->mean = sum / (double)s->n;
}

/* Writes the raw samples, one per line in milliseconds, in the order they were taken (call
 * before samples_summarize, which sorts). */
static inline int samples_write(const struct samples *s, const char *path)
{
        FILE *f = fopen(path, "we");

        if (!f)
                return -errno;
        for (size_t i = 0; i < s->n; i++)
                fprintf(f, "%.4f\n", s->ms[i]);
        return fclose(f) == 0 ? 0 : -errno;
}
