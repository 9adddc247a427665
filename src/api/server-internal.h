/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the HTTP server (server.c and its helpers sse.c, listen.c): the pure Server-Sent
 * Events formatter behind http_sse_send/http_sse_comment, and the code that opens the listening
 * sockets and the upload directory before libmicrohttpd takes them over. Nothing here knows
 * struct http_server or libmicrohttpd; none of it logs.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/err.h"

/* --- sse.c --- */

/*
 * One event as http_sse_send() queues it ("event: ", "id: ", "data: " lines, then "\n"), without
 * a NUL: stores at most size bytes of it in buf (buf may be NULL when size is 0) and returns the
 * full length. CR and LF in event and id are left out.
 */
size_t server__sse_format_event(char *buf, size_t size, const char *event, const char *id, const char *data);

/* A comment as http_sse_comment() queues it (": LINE\n" per line of text, then "\n"), without a
 * NUL; same buffer contract as server__sse_format_event. */
size_t server__sse_format_comment(char *buf, size_t size, const char *text);

/* --- listen.c --- */

/*
 * Create, bind and listen on a TCP socket for addr ("IPV4:PORT" or "[IPV6]:PORT"; port 0 picks
 * one). Returns the fd (CLOEXEC, non-blocking; the caller owns it) and sets *ret_v6, or -EINVAL
 * (reason "invalid_value") for a malformed address, or -errno.
 */
int server__listen_tcp(const char *addr, bool *ret_v6, struct sbx_err *err);

/*
 * Create, bind and listen on a unix socket at path with mode 0600, first removing a stale socket
 * file there (refused: -EADDRINUSE if a server answers, -EEXIST if it is not a socket). Returns the
 * fd (CLOEXEC, non-blocking; the caller owns it) and fills *ret_path (a copy of path, the
 * caller's to free), *ret_dev and *ret_ino (to recognise the file at stop); or -ENAMETOOLONG
 * (reason "invalid_value"), -ENOMEM, -errno. On failure no socket file of ours is left behind.
 */
int server__listen_unix(const char *path, char **ret_path, dev_t *ret_dev, ino_t *ret_ino, struct sbx_err *err);

/*
 * Open the upload directory at path (O_PATH) for O_TMPFILE bodies, and check once that its file
 * system supports them (not every one does) so a misconfiguration shows at start, not at the first
 * upload; ENOSPC and EDQUOT pass (a full disk may have room later). Returns the fd (the caller
 * owns it) or -errno.
 */
int server__upload_dir_open(const char *path, struct sbx_err *err);
