// SPDX-License-Identifier: Apache-2.0
/* stderr logger with levels; one line per call, written with a single write(2). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level current_level = LOG_LEVEL_INFO;
static const char *const level_names[LOG_LEVEL_MAX] = { "error", "warn", "info", "debug" };

void log_set_level(enum log_level level)
{
        if (level >= 0 && level < LOG_LEVEL_MAX)
                current_level = level;
}

enum log_level log_get_level(void)
{
        return current_level;
}

enum log_level log_level_from_string(const char *s)
{
        for (int i = 0; i < LOG_LEVEL_MAX; i++)
                if (s && strcmp(s, level_names[i]) == 0)
                        return (enum log_level)i;
        return LOG_LEVEL_INVALID;
}

void log_emit(enum log_level level, const char *fmt, ...)
{
        char line[2048];
        struct timespec ts;
        struct tm tm;
        va_list ap;
        int n, m;

        if (level > current_level || level < 0)
                return;
        (void)clock_gettime(CLOCK_REALTIME, &ts);
        (void)gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld sbxd[%s] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level]);
        va_start(ap, fmt);
        m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (m < 0)
                return;
        n += m;
        if ((size_t)n > sizeof line - 2)
                n = sizeof line - 2;
        line[n++] = '\n';
        (void)!write(STDERR_FILENO, line, (size_t)n);
}
