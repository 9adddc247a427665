/* SPDX-License-Identifier: Apache-2.0 */
/* sbxd's command line (arg_* values). Parsing is pure and unit tested. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/log.h"

struct daemon_config {
        const char *listen;         /* ADDR:PORT, default 127.0.0.1:7070 */
        const char *unix_path;      /* default <data>/sbxd.sock; "" = none */
        const char *data_dir;       /* default /var/lib/sbx */
        const char *templates_dir;  /* default <data>/templates */
        const char *api_key;        /* default: <data>/api-key, generated once */
        const char *init_path;      /* default: sbx-init beside the sbxd binary */
        const char *default_template; /* built at start if missing; "" = none. default "base" */
        uint64_t stream_log;        /* bytes of output kept per process stream */
        bool storage_btrfs;         /* --storage btrfs (default dir) */
        uint64_t storage_size;      /* bytes of a new btrfs image */
        unsigned pool_size;         /* sandboxes kept ready per template in use; default 2 */
        enum log_level log_level;
        bool help, version;
};

/* Parse argv. Returns 0, or -SBX_E_INVALID with err naming the flag. */
int daemon_config_parse(struct daemon_config *c, int argc, char **argv, struct sbx_err *err);
void daemon_config_usage(const char *prog);
