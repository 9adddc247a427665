// SPDX-License-Identifier: Apache-2.0
/*
 * Validation of requests sbx-init receives (init-internal.h). Pure: no syscalls, no allocation,
 * so the unit tests include this file directly and feed it crafted packets. A request that fails
 * here is malformed and costs the sender its connection; nothing here decides policy.
 */
#include "init-internal.h"

#include <errno.h>
#include <string.h>

int init_req_check(const struct init_msg *h, size_t n, unsigned n_fds)
{
        if (n < sizeof *h || h->len != n - sizeof *h)
                return -EBADMSG;
        switch (h->type) {
        case INIT_HELLO:
        case INIT_RELEASE:
        case INIT_LIST:
        case INIT_GET_FDS:
        case INIT_CLOSE_STDIN:
                return h->len == 0 && n_fds == 0 ? 0 : -EBADMSG;
        case INIT_SIGNAL:
                return h->len == sizeof(struct init_signal) && n_fds == 0 ? 0 : -EBADMSG;
        case INIT_SPAWN:
                /* the rest is init_spawn_req_parse()'s */
                return h->len >= sizeof(struct init_spawn) && n_fds <= 1 ? 0 : -EBADMSG;
        default:
                return -EBADMSG;
        }
}

/* Point out[0..count) at the next count NUL-terminated strings of [*pos, end), adding their sizes
 * to *bytes (bounded by max_bytes). */
static int take_strings(char **pos, char *end, uint32_t count, char **out, size_t *bytes, size_t max_bytes)
{
        char *p = *pos;

        for (uint32_t i = 0; i < count; i++) {
                char *nul = memchr(p, '\0', (size_t)(end - p));
                if (!nul)
                        return -EBADMSG;
                *bytes += (size_t)(nul - p) + 1;
                if (*bytes > max_bytes)
                        return -EBADMSG;
                out[i] = p;
                p = nul + 1;
        }
        out[count] = NULL;
        *pos = p;
        return 0;
}

/* The v2 extension at *pos (if the flags call for one) into req; advances *pos past it. */
static int take_ext(char **pos, char *end, uint32_t flags, struct init_spawn_req *req)
{
        struct init_spawn_ext ext;

        req->uid = req->gid = 0;
        req->cols = req->rows = 0;
        if (!(flags & INIT_SPAWN_FLAGS_EXT))
                return 0;
        if ((size_t)(end - *pos) < sizeof ext)
                return -EBADMSG;
        memcpy(&ext, *pos, sizeof ext);
        *pos += sizeof ext;
        /* the size is bounded even where it is ignored, so no future use finds junk there */
        if (ext.reserved != 0 || ext.cols > SBX_MAX_PTY_SIZE || ext.rows > SBX_MAX_PTY_SIZE)
                return -EBADMSG;
        if (flags & INIT_SPAWN_USER) {
                if (ext.uid > SBX_INIT_MAX_ID || ext.gid > SBX_INIT_MAX_ID)
                        return -EBADMSG;
                req->uid = ext.uid;
                req->gid = ext.gid;
        }
        if (flags & INIT_SPAWN_PTY) {
                req->cols = ext.cols ? ext.cols : SBX_INIT_PTY_COLS;
                req->rows = ext.rows ? ext.rows : SBX_INIT_PTY_ROWS;
        }
        return 0;
}

int init_spawn_req_parse(char *p, size_t len, unsigned n_fds, struct init_spawn_req *req)
{
        struct init_spawn s;
        char *pos, *end, *nul;
        size_t bytes = 0;
        int r;

        if (len < sizeof s || len > SBX_INIT_MAX_MSG)
                return -EBADMSG;
        memcpy(&s, p, sizeof s);
        if ((s.flags & ~(uint32_t)INIT_SPAWN_FLAGS_ALL) || s.reserved != 0)
                return -EBADMSG;
        /* a terminal has no separate stdin to keep: sbxd writes to the master */
        if ((s.flags & INIT_SPAWN_PTY) && (s.flags & INIT_SPAWN_KEEP_STDIN))
                return -EBADMSG;
        if (n_fds != ((s.flags & INIT_SPAWN_INTO_CGROUP) ? 1u : 0u))
                return -EBADMSG;
        if (s.argc < 1 || s.argc > SBX_MAX_ARGV || s.envc > SBX_INIT_MAX_ENVC)
                return -EBADMSG;

        pos = p + sizeof s;
        end = p + len;
        r = take_ext(&pos, end, s.flags, req);
        if (r < 0)
                return r;
        r = take_strings(&pos, end, s.argc, req->argv, &bytes, SBX_MAX_ARG_BYTES);
        if (r < 0)
                return r;
        r = take_strings(&pos, end, s.envc, req->envp, &bytes, SBX_MAX_ARG_BYTES);
        if (r < 0)
                return r;

        /* cwd: the last string, absolute, and exactly at the end of the packet */
        nul = memchr(pos, '\0', (size_t)(end - pos));
        if (!nul || nul + 1 != end || pos[0] != '/' || (size_t)(nul - pos) > SBX_MAX_CWD)
                return -EBADMSG;

        req->flags = s.flags;
        req->argc = s.argc;
        req->envc = s.envc;
        req->cwd = pos;
        return 0;
}
