/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every limit on a user-controllable size or count, with the reason and a hard ceiling.
 * Change a value here, nowhere else (docs/design/limits.md lists them for users).
 */
#pragma once

/* HTTP */
#define SBX_MAX_HEADER_BYTES (16 * 1024)           /* request line + headers (431 beyond; checked by server.c) */
#define SBX_HTTP_POOL_BYTES (1024 * 1024)          /* MHD per-connection pool: parsed headers + IO buffers. Half
                                                    * is the read buffer: 512 KiB pieces of upload bodies (1 GiB
                                                    * uploads went 0.48 -> 1.0 GB/s from 64 KiB; docs/design/
                                                    * decisions.md). mmap'd: only touched pages are resident */
#define SBX_MAX_JSON_BODY (1024 * 1024)            /* JSON request bodies; exec stdin travels here too */
#define SBX_MAX_CONNECTIONS 10000                  /* below RLIMIT_NOFILE hard (20000) on these hosts */
#define SBX_HTTP_CONNECTION_TIMEOUT_S 300          /* idle keep-alive connections are closed after this */
#define SBX_MAX_URL_BYTES 12288                    /* raw request target: a 4 KiB file path, %-encoded */
#define SBX_MAX_UPLOAD (64ULL << 30)               /* streamed upload bodies (image import), bytes */
#define SBX_MAX_LAYER_BYTES (64ULL << 30)          /* apparent size of the files of one imported layer: bounds
                                                    * decompression bombs and sparse giants (a commit reads
                                                    * every byte back to hash it) */
#define SBX_MIN_FREE_BYTES (1ULL << 30)            /* an import stops before the templates disk has less free */
#define SBX_MAX_PATH_PARAMS 4
#define SBX_WS_MAX_MESSAGE (1024 * 1024)           /* one assembled WebSocket message from a client (1009 beyond) */

/* Sandbox spec */
#define SBX_MAX_NAME 128                           /* sandbox name, bytes */
#define SBX_MAX_TEMPLATE_NAME 64
#define SBX_MAX_ENV 256                            /* env entries per sandbox / exec */
#define SBX_MAX_ENV_KEY 256
#define SBX_MAX_ENV_VALUE (32 * 1024)
#define SBX_MAX_METADATA 64                        /* metadata pairs */
#define SBX_MAX_METADATA_KEY 128
#define SBX_MAX_METADATA_VALUE 1024
#define SBX_MAX_ARGV 4096                          /* argv entries per exec */
#define SBX_MAX_ARG_BYTES (256 * 1024)             /* total argv+env bytes per exec (kernel ARG_MAX is 2 MiB) */
#define SBX_MAX_CWD 4096

/* Resources: defaults and ceilings */
#define SBX_DEFAULT_MEMORY (512ULL << 20)          /* bytes */
#define SBX_MIN_MEMORY (8ULL << 20)
#define SBX_MAX_MEMORY (64ULL << 30)
#define SBX_DEFAULT_PIDS 512
#define SBX_MAX_PIDS 65536
#define SBX_DEFAULT_CPU 1.0                        /* cores */
#define SBX_MAX_CPU 256.0
#define SBX_MAX_LIFETIME_S (30 * 24 * 3600)        /* timeout.lifetime ceiling */

/* Exec */
#define SBX_MAX_EXEC_OUTPUT (1024 * 1024)          /* per stream kept in a buffered exec response */
#define SBX_DEFAULT_EXEC_TIMEOUT_S 60
#define SBX_MAX_EXEC_TIMEOUT_S (24 * 3600)
#define SBX_MAX_EXECS_PER_SANDBOX 256              /* concurrent execs in flight per sandbox */

/* Processes and their output streams (core/process.c, core/stream.c, docs/processes.md) */
#define SBX_DEFAULT_STREAM_LOG (16ULL << 20)       /* bytes of output kept per stream (sbxd --stream-log) */
#define SBX_MIN_STREAM_LOG (1ULL << 20)
#define SBX_MAX_STREAM_LOG (4ULL << 30)
#define SBX_STREAM_PUNCH (1ULL << 20)              /* the log's head is dropped in pieces of this size */
#define SBX_MAX_PROCESSES 256                      /* processes running at once per sandbox */
#define SBX_MAX_PROCESSES_KEPT 128                 /* finished processes (and their logs) kept per sandbox */
#define SBX_MAX_PROCESS_ROWS (SBX_MAX_PROCESSES + SBX_MAX_PROCESSES_KEPT + 64)
#define SBX_MAX_PROCESS_TIMEOUT_S (30 * 24 * 3600) /* timeout of one process (0 = none) */
#define SBX_MAX_USER 64                            /* bytes of a user name (or numeric uid) to run as */
#define SBX_MAX_PROCESS_TAG 128                    /* bytes of a process's tag */
#define SBX_MAX_STDIN_QUEUE (1024 * 1024)          /* bytes of stdin waiting for the process to read */
#define SBX_MAX_PTY_SIZE 10000                     /* columns or rows of a terminal */
#define SBX_MAX_SESSIONS 64                        /* sessions per sandbox */
#define SBX_MAX_SESSION_ID 64                      /* bytes of a session's name */
#define SBX_MAX_WAIT_S 3600                        /* one long-poll for a process's exit */

/* Code runs in a context (core/code-demux.c, docs/internals/code.md) */
#define SBX_MAX_CODE_RESULT (16 * 1024 * 1024)     /* bytes of one driver marker's JSON: a run's result with
                                                    * `output` (a big repr) and the error's traceback; the
                                                    * drivers cut their text to stay under 15 MiB */

/* Daemon */
#define SBX_MAX_SANDBOXES 10000                    /* live (not deleted) sandboxes per daemon */
#define SBX_MAX_LIST_LIMIT 1000                    /* page size of GET /v1/sandboxes */
#define SBX_DEFAULT_LIST_LIMIT 100
#define SBX_MAX_LIST_OFFSET 1000000                /* offset paging beyond this: use the cursor */

#define SBX_MAX_SNAPSHOTS 10000                    /* snapshots, checkpoints and fork bases per daemon */
#define SBX_MAX_SNAPSHOT_DEPTH 64                  /* snapshots stacked in one sandbox's lower layers */
#define SBX_MAX_FORK 64                            /* sandboxes one fork makes */
#define SBX_MAX_PATCHES 64                         /* patch scripts per snapshot */
#define SBX_MAX_PATCH_BYTES (256 * 1024)           /* bytes of one patch script */
#define SBX_MAX_SNAPSHOT_TAGS 32                   /* tags per snapshot */
#define SBX_MAX_TAG 128                            /* bytes of a tag or a snapshot/checkpoint name */
#define SBX_MAX_DESCRIPTION 1024                   /* bytes of a snapshot's description */
#define SBX_MAX_EVENTS_KEPT 100000                 /* newest events the store keeps (older ones pruned) */
#define SBX_MAX_EVENT_SUBSCRIBERS 1024             /* live GET /v1/events and .../events?follow clients */
#define SBX_MAX_FREEZE_MS 5000                     /* a pause waits this long for the freezer, then fails */

#define SBX_DEFAULT_STORAGE_SIZE (64ULL << 30)    /* a new btrfs image (sparse) */
#define SBX_MIN_STORAGE_SIZE (1ULL << 30)

#define SBX_DEFAULT_POOL_SIZE 2                    /* sandboxes kept ready per template in use */
#define SBX_MAX_POOL_SIZE 16

/* sbx-init control channel */
#define SBX_INIT_MAX_MSG (SBX_MAX_ARG_BYTES + 8192) /* one seqpacket message */
#define SBX_INIT_MAX_PROCS 1024                    /* tracked processes per sandbox */
#define SBX_INIT_MAX_CONNS 8                       /* control connections per sbx-init */

/* User namespaces: every sandbox gets 65536 ids starting at SBX_UID_BASE + slot * 65536 */
#define SBX_UID_BASE (1U << 20)
#define SBX_UID_RANGE 65536U
#define SBX_MAX_UID_SLOTS 65000U

/* Files API (src/files, docs/files.md) */
#define SBX_UPLOAD_WRITE_BEHIND (64ULL << 20)      /* piece of a file upload written back while the rest
                                                    * arrives (1 GiB PUT 0.93 -> see decisions.md) */
#define SBX_MAX_FILE_PATH 4096                     /* bytes of a path inside a sandbox, NUL excluded: PATH_MAX - 1 */
#define SBX_MAX_FS_LIST_LIMIT 10000                /* entries per page of a listing */
#define SBX_DEFAULT_FS_LIST_LIMIT 1000
#define SBX_MAX_FS_WALK 1000000                    /* entries one recursive walk visits (list, search, tar) */
#define SBX_MAX_FS_DEPTH 256                       /* directory depth of a recursive walk */
#define SBX_MAX_SEARCH_RESULTS 10000               /* matches per search */
#define SBX_DEFAULT_SEARCH_RESULTS 1000
#define SBX_MAX_SEARCH_FILE (64ULL << 20)          /* bigger files are skipped by search / refused by replace */
#define SBX_MAX_SEARCH_LINE 1024                   /* bytes of a matching line returned as content */
#define SBX_MAX_PATTERN 4096                       /* bytes of a search pattern or replacement */
#define SBX_MAX_REPLACE_FILES 1000                 /* files per replace request */
#define SBX_MAX_BATCH_OPS 1000                     /* operations per batch request */
#define SBX_MAX_WATCHERS 64                        /* watchers per sandbox */
#define SBX_MAX_WATCH_DIRS 65536                   /* directories one recursive watcher follows */
#define SBX_MAX_WATCH_IGNORE 64                    /* ignore globs per watcher */
#define SBX_MAX_WATCH_CONTENT (1024 * 1024)        /* bytes of file content one watch event carries */
