// SPDX-License-Identifier: Apache-2.0
/*
 * The HTTP server's listening sockets and upload directory (server-internal.h): parses a listen
 * address, creates, binds and listens on TCP and unix sockets (CLOEXEC, non-blocking; a unix
 * socket gets mode 0600 before listen() and replaces only a provably stale socket file), and opens
 * the O_TMPFILE upload directory. It hands each fd to server.c, which passes the sockets to
 * libmicrohttpd; it knows nothing of struct http_server or libmicrohttpd and does not log.
 */
#include "api/server-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

#define HTTP_LISTEN_BACKLOG 1024

static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *ret_len, struct sbx_err *err)
{
        char host[INET6_ADDRSTRLEN + 1];
        const char *port_s;
        size_t hlen;
        uint64_t port;

        memset(ss, 0, sizeof *ss);
        if (s[0] == '[') {
                const char *end = strchr(s, ']');

                if (!end || end[1] != ':')
                        goto invalid;
                hlen = (size_t)(end - s - 1);
                if (hlen == 0 || hlen >= sizeof host)
                        goto invalid;
                memcpy(host, s + 1, hlen);
                host[hlen] = '\0';
                port_s = end + 2;
        } else {
                const char *colon = strrchr(s, ':');

                if (!colon)
                        goto invalid;
                hlen = (size_t)(colon - s);
                if (hlen == 0 || hlen >= sizeof host)
                        goto invalid;
                memcpy(host, s, hlen);
                host[hlen] = '\0';
                port_s = colon + 1;
        }
        if (parse_u64(port_s, &port) < 0 || port > 65535)
                goto invalid;
        if (s[0] == '[') {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t)port);
                if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
                        goto invalid;
                *ret_len = sizeof *a;
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *)ss;

                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t)port);
                if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
                        goto invalid;
                *ret_len = sizeof *a;
        }
        return 0;
invalid:
        return sbx_err_setr(err, -EINVAL, "invalid_value",
                            "invalid listen address '%.64s' (want IPV4:PORT or [IPV6]:PORT)", s);
}

int server__listen_tcp(const char *addr, bool *ret_v6, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage ss;
        socklen_t len = 0;
        int one = 1, r;

        r = parse_listen(addr, &ss, &len, err);
        if (r < 0)
                return r;
        fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot create socket for '%s': %m", addr);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
                return sbx_err_set(err, -errno, "cannot set SO_REUSEADDR on '%s': %m", addr);
        if (bind(fd, (struct sockaddr *)&ss, len) < 0)
                return sbx_err_set(err, -errno, "cannot bind '%s': %m", addr);
        if (listen(fd, HTTP_LISTEN_BACKLOG) < 0)
                return sbx_err_set(err, -errno, "cannot listen on '%s': %m", addr);
        *ret_v6 = ss.ss_family == AF_INET6;
        return TAKE_FD(fd);
}

/* Replace a stale socket file at path; refuse if something is listening there or the path is not
 * a socket. */
static int unix_remove_stale(const char *path, const struct sockaddr_un *sa, struct sbx_err *err)
{
        _cleanup_close_ int probe = -EBADF;
        struct stat st;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        return 0;
                return sbx_err_set(err, -errno, "cannot stat '%s': %m", path);
        }
        if (!S_ISSOCK(st.st_mode))
                return sbx_err_set(err, -EEXIST, "'%s' exists and is not a socket", path);
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0)
                return sbx_err_set(err, -errno, "cannot create socket: %m");
        if (connect(probe, (const struct sockaddr *)sa, sizeof *sa) == 0 || errno == EAGAIN)
                return sbx_err_set(err, -EADDRINUSE, "'%s' is in use by another server", path);
        /* only a refused connection proves the file is stale; anything else is left alone */
        if (errno != ECONNREFUSED)
                return sbx_err_set(err, -errno, "cannot probe socket '%s': %m", path);
        if (unlink(path) < 0 && errno != ENOENT)
                return sbx_err_set(err, -errno, "cannot remove stale socket '%s': %m", path);
        return 0;
}

int server__listen_unix(const char *path, char **ret_path, dev_t *ret_dev, ino_t *ret_ino, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        char *copy;
        int r;

        if (strlen(path) >= sizeof sa.sun_path)
                return sbx_err_setr(err, -ENAMETOOLONG, "invalid_value", "unix socket path '%s' is too long", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        r = unix_remove_stale(path, &sa, err);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot create unix socket: %m");
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                return sbx_err_set(err, -errno, "cannot bind '%s': %m", path);
        /* nobody can connect before listen(): tighten the mode in between */
        if (chmod(path, 0600) < 0 || stat(path, &st) < 0) {
                r = sbx_err_set(err, -errno, "cannot chmod '%s': %m", path);
                (void)unlink(path);
                return r;
        }
        if (listen(fd, HTTP_LISTEN_BACKLOG) < 0) {
                r = sbx_err_set(err, -errno, "cannot listen on '%s': %m", path);
                (void)unlink(path);
                return r;
        }
        copy = strdup(path);
        if (!copy) {
                (void)unlink(path);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        *ret_path = copy;
        *ret_dev = st.st_dev;
        *ret_ino = st.st_ino;
        return TAKE_FD(fd);
}

int server__upload_dir_open(const char *path, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF, probe = -EBADF;

        fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open upload directory '%s': %m", path);
        probe = openat(fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        /* a full disk now may have room later: not a reason to refuse to start */
        if (probe < 0 && errno != ENOSPC && errno != EDQUOT)
                return sbx_err_set(err, -errno,
                                   "cannot create an unnamed file (O_TMPFILE) in upload directory '%s': %m", path);
        return TAKE_FD(fd);
}
