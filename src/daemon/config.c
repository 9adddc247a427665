// SPDX-License-Identifier: Apache-2.0
/* sbxd's command line; see config.h. */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <errno.h>
#include <string.h>

#include "common/limits.h"
#include "common/util.h"

enum {
        OPT_LISTEN = 256,
        OPT_UNIX,
        OPT_DATA_DIR,
        OPT_TEMPLATES_DIR,
        OPT_API_KEY,
        OPT_LOG_LEVEL,
        OPT_INIT,
        OPT_DEFAULT_TEMPLATE,
        OPT_POOL_SIZE,
        OPT_STREAM_LOG,
        OPT_STORAGE,
        OPT_STORAGE_SIZE,
};

static const struct option options[] = {
        { "listen", required_argument, NULL, OPT_LISTEN },
        { "unix-socket", required_argument, NULL, OPT_UNIX },
        { "data-dir", required_argument, NULL, OPT_DATA_DIR },
        { "templates-dir", required_argument, NULL, OPT_TEMPLATES_DIR },
        { "api-key", required_argument, NULL, OPT_API_KEY },
        { "log-level", required_argument, NULL, OPT_LOG_LEVEL },
        { "init", required_argument, NULL, OPT_INIT },
        { "default-template", required_argument, NULL, OPT_DEFAULT_TEMPLATE },
        { "pool-size", required_argument, NULL, OPT_POOL_SIZE },
        { "stream-log", required_argument, NULL, OPT_STREAM_LOG },
        { "storage", required_argument, NULL, OPT_STORAGE },
        { "storage-size", required_argument, NULL, OPT_STORAGE_SIZE },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        {},
};

void daemon_config_usage(const char *prog)
{
        printf("Usage: %s [OPTIONS]\n"
               "Self-hosted sandboxes for AI agents: the daemon.\n\n"
               "  --listen ADDR:PORT       TCP listener (default 127.0.0.1:7070; port 0 picks one)\n"
               "  --unix-socket PATH       unix socket listener (default DATA/sbxd.sock; '' for none)\n"
               "  --data-dir DIR           state: database, sandboxes, api key (default /var/lib/sbx)\n"
               "  --templates-dir DIR      template root filesystems (default DATA/templates)\n"
               "  --api-key KEY            bearer token (default: generated once into DATA/api-key)\n"
               "  --default-template NAME  template built at start if missing (default base; '' none)\n"
               "  --pool-size N            sandboxes kept ready per template in use (default 2, max 16; 0 off)\n"
"  --stream-log SIZE        output kept per process stream, e.g. 16M (default; 1M to 4G)\n"
"  --storage KIND           where sandbox files and snapshots live: dir (default: plain\n"
"                           directories, snapshots copy) or btrfs (subvolumes, snapshots in ms;\n"
"                           DATA itself if it is btrfs, else an image DATA/btrfs.img on DATA/btrfs)\n"
"  --storage-size SIZE      size of a new btrfs image, e.g. 64G (default 64G; sparse)\n"
               "  --init PATH              the sbx-init binary (default: beside sbxd)\n"
               "  --log-level LEVEL        error, warn, info or debug (default info)\n"
               "  -h, --help               this text\n"
               "  -V, --version            print the version\n",
               prog);
}

/* "64G", "512M", "1024K" or bytes -> bytes. */
static int parse_size(const char *s, uint64_t *ret)
{
        size_t digits = strspn(s, "0123456789");
        const char *suffix = s + digits;
        uint64_t n, unit = 1;

        if (suffix[0] && !suffix[1])
                unit = strchr("Kk", suffix[0]) ? 1ULL << 10
                       : strchr("Mm", suffix[0]) ? 1ULL << 20
                       : strchr("Gg", suffix[0]) ? 1ULL << 30
                       : strchr("Tt", suffix[0]) ? 1ULL << 40
                                                 : 0;
        if (digits == 0 || unit == 0 || strlen(suffix) > 1 || parse_u64_prefix(s, &n) < 0 || n > UINT64_MAX / unit)
                return -EINVAL;
        *ret = n * unit;
        return 0;
}

int daemon_config_parse(struct daemon_config *c, int argc, char **argv, struct sbx_err *err)
{
        int opt;

        *c = (struct daemon_config){
                .listen = "127.0.0.1:7070",
                .data_dir = "/var/lib/sbx",
                .default_template = "base",
                .pool_size = SBX_DEFAULT_POOL_SIZE,
                .stream_log = SBX_DEFAULT_STREAM_LOG,
                .storage_size = SBX_DEFAULT_STORAGE_SIZE,
                .log_level = LOG_LEVEL_INFO,
        };
        optind = 1;
        opterr = 0;
        while ((opt = getopt_long(argc, argv, ":hV", options, NULL)) >= 0) {
                switch (opt) {
                case OPT_LISTEN:
                        c->listen = optarg;
                        break;
                case OPT_UNIX:
                        c->unix_path = optarg;
                        break;
                case OPT_DATA_DIR:
                        if (optarg[0] == '\0')
                                return sbx_err_set(err, -SBX_E_INVALID, "'--data-dir' must not be empty");
                        c->data_dir = optarg;
                        break;
                case OPT_TEMPLATES_DIR:
                        c->templates_dir = optarg;
                        break;
                case OPT_API_KEY:
                        if (strlen(optarg) < 16 || strlen(optarg) > 256 || strpbrk(optarg, " \t\r\n"))
                                return sbx_err_set(err, -SBX_E_INVALID,
                                                   "'--api-key' must be 16 to 256 characters without spaces");
                        c->api_key = optarg;
                        break;
                case OPT_LOG_LEVEL:
                        c->log_level = log_level_from_string(optarg);
                        if (c->log_level == LOG_LEVEL_INVALID)
                                return sbx_err_set(err, -SBX_E_INVALID,
                                                   "'--log-level' must be error, warn, info or debug, not '%.32s'",
                                                   optarg);
                        break;
                case OPT_INIT:
                        c->init_path = optarg;
                        break;
                case OPT_POOL_SIZE: {
                        uint64_t n;
                        if (parse_u64(optarg, &n) < 0 || n > SBX_MAX_POOL_SIZE)
                                return sbx_err_set(err, -SBX_E_INVALID, "'--pool-size' must be 0 to %d, not '%.32s'",
                                                   SBX_MAX_POOL_SIZE, optarg);
                        c->pool_size = (unsigned)n;
                        break;
                }
                case OPT_STORAGE:
                        if (strcmp(optarg, "dir") != 0 && strcmp(optarg, "btrfs") != 0)
                                return sbx_err_set(err, -SBX_E_INVALID, "'--storage' must be dir or btrfs, not '%.32s'",
                                                   optarg);
                        c->storage_btrfs = strcmp(optarg, "btrfs") == 0;
                        break;
                case OPT_STORAGE_SIZE:
                        if (parse_size(optarg, &c->storage_size) < 0 || c->storage_size < SBX_MIN_STORAGE_SIZE)
                                return sbx_err_set(err, -SBX_E_INVALID,
                                                   "'--storage-size' must be a size of at least 1G, like 64G, not '%.32s'",
                                                   optarg);
                        break;
                case OPT_STREAM_LOG: {
                        uint64_t n, unit = 1;
                        size_t digits = strspn(optarg, "0123456789");
                        const char *suffix = optarg + digits;
                        if (suffix[0] && !suffix[1])
                                unit = strchr("Kk", suffix[0]) ? 1ULL << 10
                                       : strchr("Mm", suffix[0]) ? 1ULL << 20
                                       : strchr("Gg", suffix[0]) ? 1ULL << 30
                                                                 : 0;
                        if (digits == 0 || unit == 0 || strlen(suffix) > 1 || parse_u64_prefix(optarg, &n) < 0 ||
                            n > SBX_MAX_STREAM_LOG / unit || n * unit < SBX_MIN_STREAM_LOG)
                                return sbx_err_set(err, -SBX_E_INVALID,
                                                   "'--stream-log' must be a size from 1M to 4G, not '%.32s'", optarg);
                        c->stream_log = n * unit;
                        break;
                }
                case OPT_DEFAULT_TEMPLATE:
                        c->default_template = optarg;
                        break;
                case 'h':
                        c->help = true;
                        break;
                case 'V':
                        c->version = true;
                        break;
                case ':':
                        return sbx_err_set(err, -SBX_E_INVALID, "option '%s' needs a value", argv[optind - 1]);
                default:
                        return sbx_err_set(err, -SBX_E_INVALID, "unknown option '%s'", argv[optind - 1]);
                }
        }
        if (optind < argc)
                return sbx_err_set(err, -SBX_E_INVALID, "unexpected argument '%s'", argv[optind]);
        return 0;
}
