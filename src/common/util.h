/* SPDX-License-Identifier: Apache-2.0 */
/* Small pure helpers: ids, time, strings, UTF-8. No logging, no daemon knowledge. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SBX_ID_RANDOM_CHARS 20 /* base32 chars after the prefix: 100 bits */
#define SBX_ID_MAX 32

/* Fill buf with prefix + 20 random base32 chars ("sbx_" + ...). Returns 0 or -errno. */
int sbx_id_new(const char *prefix, char *buf, size_t size);
/* True if s is prefix followed by exactly the random part in [a-z2-7]. */
bool sbx_id_valid(const char *prefix, const char *s);

/* Random bytes from getrandom(2). Returns 0 or -errno. */
int sbx_random_bytes(void *buf, size_t n);

uint64_t now_usec(void);     /* CLOCK_MONOTONIC */
uint64_t now_realtime_ms(void);
/* RFC 3339 UTC with milliseconds: "2026-11-22T01:02:03.456Z". buf >= 32 bytes. */
void format_rfc3339_ms(uint64_t unix_ms, char *buf, size_t size);

/*
 * Copy len bytes of src into dst as valid UTF-8, replacing every invalid sequence with U+FFFD.
 * dst must hold 3 * len bytes. Returns the number of bytes written.
 */
size_t utf8_sanitize(const char *src, size_t len, char *dst);
bool utf8_valid(const char *s, size_t len);

/* Base64 (RFC 4648 §4, with padding). encode: dst holds base64_encoded_len(len) + 1 bytes; writes a
 * NUL-terminated string, returns its length. decode: strict (alphabet only, length a multiple of 4,
 * '=' only at the end); dst holds len / 4 * 3 bytes; returns the decoded length or -EINVAL. */
#define base64_encoded_len(n) (((n) + 2) / 3 * 4)
size_t base64_encode(const void *src, size_t len, char *dst);
ssize_t base64_decode(const char *src, size_t len, void *dst);

/* Parse a non-negative decimal integer that fits in uint64 (no sign, no spaces). */
int parse_u64(const char *s, uint64_t *ret);
/* Same, but stops at the first non-digit (at least one digit is required). */
int parse_u64_prefix(const char *s, uint64_t *ret);

/* Write all of buf to fd, retrying on EINTR. Returns 0 or -errno. */
int write_all(int fd, const void *buf, size_t len);
struct msghdr;
/* Take the SCM_RIGHTS fds a recvmsg() delivered into fds[0..max), closing any beyond max; returns
 * how many were taken. *ret_bad is set if a control message of another kind came along (its fds,
 * if any, are lost: the caller treats the message as hostile and drops the connection). */
size_t cmsg_take_fds(struct msghdr *mh, int *fds, size_t max, bool *ret_bad);

/* mkdir -p: every missing parent of path with mode parent_mode, path itself with mode (EEXIST is
 * fine; an existing directory's mode is left alone). Returns 0 or -errno. */
int mkdir_p(const char *path, mode_t parent_mode, mode_t mode);
/* Write a string to a (sysfs/cgroupfs/procfs) file. Returns 0 or -errno. */
int write_file_at(int dirfd, const char *path, const char *s);
/* Read up to size-1 bytes of a small file and NUL-terminate. Returns bytes read or -errno. */
int read_file_at(int dirfd, const char *path, char *buf, size_t size);
