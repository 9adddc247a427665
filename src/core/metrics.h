/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Process-wide metrics registry (counters, fixed-bucket histograms) rendered in the Prometheus
 * text format 0.0.4. Pure: no I/O, no logging, no loop; core/ and api/ record into it and the
 * /metrics handler renders it. Updates are relaxed atomics, so any thread may record; a render
 * concurrent with updates may see a count and its sum from slightly different moments.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Histogram bucket upper bounds in seconds (the +Inf bucket is implicit). */
#define METRICS_BUCKETS_SECONDS "0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10"
#define METRICS_N_BUCKETS 14

/* One value of the sbx_sandboxes{state="..."} gauge, supplied by the caller at render time. */
struct metrics_state_count {
        const char *state; /* label value, e.g. "running" */
        uint64_t count;
};

/* An HTTP request finished with status (100..599; others are counted as "0") after usec. */
void metrics_http_request(unsigned status, uint64_t usec);
/* A sandbox create finished: counted in sbx_sandbox_creates_total, failures also in
 * sbx_sandbox_create_failures_total; the duration histogram observes successful creates only. */
void metrics_create(bool ok, uint64_t usec);
/* An exec finished (any exit status) after usec. */
void metrics_exec(uint64_t usec);

/*
 * Render every metric as Prometheus text (HELP and TYPE lines, cumulative buckets, _sum, _count).
 * states may be NULL when n_states is 0. Returns a malloc'd NUL-terminated string, NULL on OOM.
 */
char *metrics_render(const struct metrics_state_count *states, size_t n_states);

/* Zero everything (tests). */
void metrics_reset(void);
