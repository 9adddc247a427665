/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A process's output stream as an offset-addressed log file (DESIGN §6). The file position of a
 * byte is its offset in the stream, so the file's size is the stream's end and survives an sbxd
 * restart exactly; the log keeps at least `cap` bytes by punching holes into its head in
 * SBX_STREAM_PUNCH pieces (the file stays sparse, its disk use bounded). Output arrives by
 * splice() straight from the process's pipe into the file: a byte leaves the pipe only once it is
 * in the log, so a kill -9 of sbxd can neither lose nor duplicate output. No I/O here blocks on
 * anything but the page cache. Not thread-safe: the loop thread owns a stream.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct stream {
        int fd;          /* the log file, -EBADF when closed */
        uint64_t start;  /* oldest offset still kept (multiple of SBX_STREAM_PUNCH) */
        uint64_t end;    /* next offset: the file's size */
        uint64_t cap;    /* bytes kept at least (the head is dropped beyond cap + SBX_STREAM_PUNCH) */
};

/* Open (create = a new empty log, O_EXCL) the log `name` in dirfd. An existing log's end is its
 * size and its start the first byte that is not a hole. 0 or -errno. */
int stream_open(struct stream *s, int dirfd, const char *name, uint64_t cap, bool create);
void stream_close(struct stream *s);

/* Move up to max bytes from pipe_fd (non-blocking) to the end of the log. Bytes moved (> 0),
 * 0 at end of file (every writer closed the pipe), -EAGAIN if it is empty, or -errno. */
ssize_t stream_splice(struct stream *s, int pipe_fd, size_t max);

/* Append len bytes (for output that cannot be spliced: a terminal). len or -errno. */
ssize_t stream_append(struct stream *s, const void *buf, size_t len);

/* Copy up to len bytes from offset off into buf. Bytes copied (0 at the end; a log that was never
 * made, fd < 0 and end 0, is empty), or -ERANGE if off was dropped already (off < start), -EINVAL
 * if off > end. */
ssize_t stream_read(const struct stream *s, uint64_t off, void *buf, size_t len);

/* The file descriptor to sendfile() from, for offsets within [start, end). */
static inline int stream_fd(const struct stream *s)
{
        return s->fd;
}
