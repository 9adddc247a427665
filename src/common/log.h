/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging for api/ and daemon/ only (other modules return errors and may use log_debug).
 * Lines go to stderr as "sbxd[level] message".
 */
#pragma once

enum log_level {
        LOG_LEVEL_ERROR,
        LOG_LEVEL_WARN,
        LOG_LEVEL_INFO,
        LOG_LEVEL_DEBUG,
        LOG_LEVEL_MAX,
        LOG_LEVEL_INVALID = -22,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parse "error|warn|info|debug"; returns LOG_LEVEL_INVALID otherwise. */
enum log_level log_level_from_string(const char *s);
void log_emit(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_emit(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_emit(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_emit(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                          \
        do {                                                    \
                if (log_get_level() >= LOG_LEVEL_DEBUG)         \
                        log_emit(LOG_LEVEL_DEBUG, __VA_ARGS__); \
        } while (0)
