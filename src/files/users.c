// SPDX-License-Identifier: Apache-2.0
/*
 * Users of a sandbox (files.h, "users"): a name or number -> ids and home, read from the sandbox's
 * own /etc/passwd and /etc/group through files_open (never the host's). The files are the
 * sandbox's, so hostile: bounded size, bounded line length, fields checked, nothing trusted beyond
 * the ids (which must fit the sandbox's range).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files.h"

#define USERS_MAX_FILE (1024 * 1024) /* bytes of /etc/passwd or /etc/group read */

/* Read the sandbox's file at path (at most USERS_MAX_FILE bytes, NUL-terminated) into *ret. */
static int read_small(const struct files_root *r, const char *path, char **ret, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        struct stat st;
        int q;

        q = files_open_read(r, path, &fd, &st, err);
        if (q < 0)
                return q;
        buf = malloc(USERS_MAX_FILE + 1);
        if (!buf)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        while (len < USERS_MAX_FILE) {
                ssize_t n = read(fd, buf + len, USERS_MAX_FILE - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return files_errno(err, errno, path);
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Field i (0-based) of a ':'-separated line into out; false if it has fewer fields. */
static bool field(const char *line, unsigned i, char *out, size_t size)
{
        const char *p = line, *e;
        size_t n;

        for (; i > 0; i--) {
                p = strchr(p, ':');
                if (!p)
                        return false;
                p++;
        }
        e = strchrnul(p, ':');
        n = (size_t)(e - p);
        if (n >= size)
                return false;
        memcpy(out, p, n);
        out[n] = '\0';
        return true;
}

static bool parse_id(const char *s, uint64_t *ret)
{
        return parse_u64(s, ret) >= 0 && *ret < SBX_UID_RANGE;
}

int files_user_lookup(const struct files_root *r, const char *user, struct files_user *ret, struct sbx_err *err)
{
        _cleanup_free_ char *passwd = NULL;
        uint64_t num = 0, id, gid;
        bool numeric;
        char name[256], idbuf[32], gidbuf[32], home[SBX_MAX_FILE_PATH + 1];
        int q;

        if (!user || !*user || strlen(user) > 255 || strchr(user, ':') || strchr(user, '\n'))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'user' must be a user name or id");
        numeric = parse_u64(user, &num) >= 0;
        if (numeric && num >= SBX_UID_RANGE)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'user' %s is outside the sandbox's ids (0..%u)",
                                    user, SBX_UID_RANGE - 1);
        q = read_small(r, "/etc/passwd", &passwd, NULL);
        for (char *line = q >= 0 ? passwd : NULL, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                if (!field(line, 0, name, sizeof name) || !field(line, 2, idbuf, sizeof idbuf) ||
                    !field(line, 3, gidbuf, sizeof gidbuf) || !field(line, 5, home, sizeof home) ||
                    !parse_id(idbuf, &id) || !parse_id(gidbuf, &gid))
                        continue;
                if (numeric ? id != num : strcmp(name, user) != 0)
                        continue;
                *ret = (struct files_user){ .uid = (uid_t)id, .gid = (gid_t)gid };
                snprintf(ret->name, sizeof ret->name, "%s", name);
                snprintf(ret->home, sizeof ret->home, "%s", home[0] == '/' ? home : "/");
                return 0;
        }
        if (numeric) {
                /* a bare id without an entry: its own group, "/" as home (like `docker exec -u 1234`) */
                *ret = (struct files_user){ .uid = (uid_t)num, .gid = (gid_t)num };
                snprintf(ret->name, sizeof ret->name, "%s", user);
                snprintf(ret->home, sizeof ret->home, "/");
                return 0;
        }
        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "user_not_found", "user '%s' does not exist in the sandbox", user);
}

int files_root_as(const struct files_root *r, const struct files_user *u, struct files_root *ret)
{
        *ret = *r;
        ret->uid = r->base_uid + u->uid;
        ret->gid = r->base_gid + u->gid;
        return 0;
}
