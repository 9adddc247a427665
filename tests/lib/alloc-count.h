/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counting allocation wrappers for unit tests that #include a pure .c file (STYLE B7): the test
 * redirects malloc/calloc/strdup/asprintf/free in that file to t_*() with macros around the
 * #include, and jansson may get them too (json_set_alloc_funcs). alloc_live counts blocks handed
 * out and not yet freed, so "nothing leaks on failure" is checked without a sanitizer;
 * alloc_arm(n) makes the n-th allocation after it fail (alloc_failed says it happened).
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long alloc_live;         /* blocks allocated through the wrappers and not yet freed */
static long alloc_fail_at = -1; /* index of the allocation to fail after arming; -1 = never */
static long alloc_count;
static bool alloc_failed;

static inline bool alloc_fail_now(void)
{
        if (alloc_fail_at >= 0 && alloc_count++ == alloc_fail_at) {
                alloc_failed = true;
                return true;
        }
        return false;
}

static inline void *t_malloc(size_t n)
{
        void *p = alloc_fail_now() ? NULL : malloc(n);

        if (p)
                alloc_live++;
        return p;
}

static inline void *t_calloc(size_t n, size_t size)
{
        void *p = alloc_fail_now() ? NULL : calloc(n, size);

        if (p)
                alloc_live++;
        return p;
}

static inline char *t_strdup(const char *s)
{
        char *p = alloc_fail_now() ? NULL : strdup(s);

        if (p)
                alloc_live++;
        return p;
}

static inline int t_asprintf(char **ret, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int t_asprintf(char **ret, const char *fmt, ...)
{
        va_list ap;
        int r;

        if (alloc_fail_now())
                return -1;
        va_start(ap, fmt);
        r = vasprintf(ret, fmt, ap);
        va_end(ap);
        if (r >= 0)
                alloc_live++;
        return r;
}

static inline void t_free(void *p)
{
        if (p)
                alloc_live--;
        free(p);
}

static inline void alloc_arm(long n)
{
        alloc_fail_at = n;
        alloc_count = 0;
        alloc_failed = false;
}

static inline void alloc_disarm(void)
{
        alloc_fail_at = -1;
}

/* A failed parse leaves *ret as the test painted it (0xa5). */
static inline bool untouched(const void *p, size_t n)
{
        const unsigned char *b = p;

        for (size_t i = 0; i < n; i++)
                if (b[i] != 0xa5)
                        return false;
        return true;
}
