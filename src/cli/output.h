/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the CLI prints: JSON (raw or pretty), the sandbox table, and "sbx: ..." messages on
 * stderr. Text that came from the server is printed with control characters replaced, so a
 * sandbox name or an error message cannot drive the terminal. No network, no option parsing.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

/* v as one line of compact JSON on stdout (the --json form). Returns 0 or -EIO. */
int output_json(const json_t *v);
/* v as indented JSON on stdout. Returns 0 or -EIO. */
int output_json_pretty(const json_t *v);
/* The string s and a newline on stdout, control characters replaced. */
void output_line(const char *s);

/* A table with the header ID NAME STATE TEMPLATE CREATED and one row per Sandbox object of the
 * array; missing or null fields print as "-". */
void output_sandbox_table(const json_t *sandboxes);

/* All of p (n bytes) to fd, retrying short writes and EINTR. Returns 0 or -errno. */
int output_write_all(int fd, const char *p, size_t n);

/* "sbx: <formatted message>" and a newline on stderr, control characters replaced. */
void output_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
