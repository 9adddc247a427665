// SPDX-License-Identifier: Apache-2.0
/*
 * Offset-addressed output logs (stream.h): splice in, pread out, punch the head.
 */
#include "core/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"

/* Drop whole SBX_STREAM_PUNCH pieces from the head while more than cap + one piece is kept. A
 * filesystem that cannot punch holes keeps the bytes on disk, but they count as dropped all the
 * same: readers see the documented window, whatever the disk holds. */
static void stream_trim(struct stream *s)
{
        uint64_t want;

        if (s->end <= s->cap + SBX_STREAM_PUNCH)
                return;
        want = (s->end - s->cap) / SBX_STREAM_PUNCH * SBX_STREAM_PUNCH;
        if (want <= s->start)
                return;
        (void)fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)s->start,
                        (off_t)(want - s->start));
        s->start = want;
}

int stream_open(struct stream *s, int dirfd, const char *name, uint64_t cap, bool create)
{
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        off_t data;

        *s = (struct stream){ .fd = -EBADF, .cap = cap };
        fd = openat(dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_EXCL : 0), 0600);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        s->end = (uint64_t)st.st_size;
        data = s->end ? lseek(fd, 0, SEEK_DATA) : 0;
        /* all hole (ENXIO): everything before the end was dropped */
        s->start = data < 0 ? s->end : (uint64_t)data / SBX_STREAM_PUNCH * SBX_STREAM_PUNCH;
        if (s->start > s->end)
                s->start = s->end;
        s->fd = TAKE_FD(fd);
        stream_trim(s);
        return 0;
}

void stream_close(struct stream *s)
{
        s->fd = safe_close(s->fd);
}

ssize_t stream_splice(struct stream *s, int pipe_fd, size_t max)
{
        loff_t off = (loff_t)s->end;
        ssize_t n;

        do
                n = splice(pipe_fd, NULL, s->fd, &off, max, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : -errno;
        s->end += (uint64_t)n;
        stream_trim(s);
        return n;
}

ssize_t stream_append(struct stream *s, const void *buf, size_t len)
{
        size_t done = 0;

        while (done < len) {
                ssize_t n = pwrite(s->fd, (const char *)buf + done, len - done, (off_t)(s->end + done));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        /* what was written counts: the file's size says so after a restart */
                        s->end += done;
                        stream_trim(s);
                        return n < 0 ? -errno : -EIO;
                }
                done += (size_t)n;
        }
        s->end += done;
        stream_trim(s);
        return (ssize_t)len;
}

ssize_t stream_read(const struct stream *s, uint64_t off, void *buf, size_t len)
{
        ssize_t n;

        if (off > s->end)
                return -EINVAL;
        if (off < s->start)
                return -ERANGE;
        if (len > s->end - off)
                len = (size_t)(s->end - off);
        if (len == 0)
                return 0;
        do
                n = pread(s->fd, buf, len, (off_t)off);
        while (n < 0 && errno == EINTR);
        return n < 0 ? -errno : n;
}
