/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Scope-bound cleanup helpers (_cleanup_free_, _cleanup_close_, TAKE_PTR, TAKE_FD).
 * Header-only; no allocation and no logging here.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
        free(*(void **)p);
}

static inline void closep(int *fd)
{
        if (*fd >= 0) {
                int saved = errno;
                (void)close(*fd);
                errno = saved;
        }
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Hand the value over to someone else and leave NULL / -EBADF behind. */
#define TAKE_PTR(p)                                    \
        ({                                             \
                __typeof__(p) *_pp = &(p);             \
                __typeof__(p) _v = *_pp;               \
                *_pp = NULL;                           \
                _v;                                    \
        })
#define TAKE_FD(fd)                                    \
        ({                                             \
                int *_pfd = &(fd);                     \
                int _v = *_pfd;                        \
                *_pfd = -EBADF;                        \
                _v;                                    \
        })

/* Close fd if valid; always returns -EBADF so callers can write fd = safe_close(fd). */
static inline int safe_close(int fd)
{
        if (fd >= 0) {
                int saved = errno;
                (void)close(fd);
                errno = saved;
        }
        return -EBADF;
}

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define DEFINE_FREEP(type, func)                       \
        static inline void func##p(type **p)           \
        {                                              \
                if (*p)                                \
                        func(*p);                      \
        }

#include <stdio.h>
static inline void fclosep(FILE **f)
{
        if (*f)
                (void)fclose(*f);
}
