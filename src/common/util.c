// SPDX-License-Identifier: Apache-2.0
/* Pure helpers used by every module; see util.h. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"

static const char base32[] = "abcdefghijklmnopqrstuvwxyz234567";

int sbx_random_bytes(void *buf, size_t n)
{
        size_t done = 0;

        while (done < n) {
                ssize_t r = getrandom((char *)buf + done, n - done, 0);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                done += (size_t)r;
        }
        return 0;
}

int sbx_id_new(const char *prefix, char *buf, size_t size)
{
        unsigned char rnd[SBX_ID_RANDOM_CHARS];
        size_t plen = strlen(prefix);
        int r;

        if (plen + SBX_ID_RANDOM_CHARS + 1 > size)
                return -ENOBUFS;
        r = sbx_random_bytes(rnd, sizeof rnd);
        if (r < 0)
                return r;
        memcpy(buf, prefix, plen);
        for (size_t i = 0; i < SBX_ID_RANDOM_CHARS; i++)
                buf[plen + i] = base32[rnd[i] & 31];
        buf[plen + SBX_ID_RANDOM_CHARS] = '\0';
        return 0;
}

bool sbx_id_valid(const char *prefix, const char *s)
{
        size_t plen = strlen(prefix);

        if (!s || strncmp(s, prefix, plen) != 0 || strlen(s) != plen + SBX_ID_RANDOM_CHARS)
                return false;
        for (const char *p = s + plen; *p; p++)
                if (!memchr(base32, *p, 32))
                        return false;
        return true;
}

uint64_t now_usec(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_realtime_ms(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)ts.tv_nsec / 1000000;
}

void format_rfc3339_ms(uint64_t unix_ms, char *buf, size_t size)
{
        time_t secs = (time_t)(unix_ms / 1000);
        struct tm tm;

        (void)gmtime_r(&secs, &tm);
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(unix_ms % 1000));
}

/* Length of the valid UTF-8 sequence at s (max n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
        unsigned char c = s[0];
        size_t len;
        uint32_t cp;

        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                len = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
                len = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
                len = 4, cp = c & 0x07;
        else
                return 0;
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return len;
}

size_t utf8_sanitize(const char *src, size_t len, char *dst)
{
        const unsigned char *s = (const unsigned char *)src;
        size_t i = 0, o = 0;

        while (i < len) {
                size_t l = utf8_seq_len(s + i, len - i);
                if (l == 0) {
                        dst[o++] = (char)0xef, dst[o++] = (char)0xbf, dst[o++] = (char)0xbd;
                        i++;
                        continue;
                }
                memcpy(dst + o, s + i, l);
                o += l;
                i += l;
        }
        return o;
}

bool utf8_valid(const char *src, size_t len)
{
        const unsigned char *s = (const unsigned char *)src;

        for (size_t i = 0; i < len;) {
                size_t l = utf8_seq_len(s + i, len - i);
                if (l == 0)
                        return false;
                i += l;
        }
        return true;
}

int parse_u64(const char *s, uint64_t *ret)
{
        uint64_t v = 0;

        if (!s || !*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *ret = v;
        return 0;
}

int parse_u64_prefix(const char *s, uint64_t *ret)
{
        char digits[24];
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9' && n < sizeof digits - 1) {
                digits[n] = s[n];
                n++;
        }
        if (n == 0)
                return -EINVAL;
        if (s[n] >= '0' && s[n] <= '9')
                return -ERANGE;
        digits[n] = '\0';
        return parse_u64(digits, ret);
}

int write_all(int fd, const void *buf, size_t len)
{
        const char *p = buf;

        while (len > 0) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int write_file_at(int dirfd, const char *path, const char *s)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return -errno;
        /* one write: kernel files take the whole value at once */
        ssize_t n = write(fd, s, strlen(s));
        if (n < 0)
                return -errno;
        return (size_t)n == strlen(s) ? 0 : -EIO;
}

int read_file_at(int dirfd, const char *path, char *buf, size_t size)
{
        _cleanup_close_ int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t got = 0;

        if (fd < 0)
                return -errno;
        while (got + 1 < size) {
                ssize_t n = read(fd, buf + got, size - 1 - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                got += (size_t)n;
        }
        buf[got] = '\0';
        return (int)got;
}

int mkdir_p(const char *path, mode_t parent_mode, mode_t mode)
{
        char buf[PATH_MAX];
        size_t n = strlen(path);

        if (n == 0 || n >= sizeof buf)
                return -ENAMETOOLONG;
        memcpy(buf, path, n + 1);
        for (char *p = buf + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = '\0';
                if (mkdir(buf, parent_mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

size_t cmsg_take_fds(struct msghdr *mh, int *fds, size_t max, bool *ret_bad)
{
        size_t n = 0;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) {
                        *ret_bad = true;
                        continue;
                }
                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int f;

                        memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
                        if (n < max)
                                fds[n++] = f;
                        else
                                (void)safe_close(f);
                }
        }
        return n;
}

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encode(const void *src, size_t len, char *dst)
{
        const unsigned char *in = src;
        size_t n = 0;

        for (size_t i = 0; i < len; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16;

                if (i + 1 < len)
                        v |= (uint32_t)in[i + 1] << 8;
                if (i + 2 < len)
                        v |= in[i + 2];
                dst[n++] = b64_alphabet[(v >> 18) & 63];
                dst[n++] = b64_alphabet[(v >> 12) & 63];
                dst[n++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
                dst[n++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
        }
        dst[n] = '\0';
        return n;
}

static int b64_value(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

ssize_t base64_decode(const char *src, size_t len, void *dst)
{
        unsigned char *out = dst;
        size_t n = 0;

        if (len % 4 != 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i += 4) {
                int v[4], pad = 0;
                bool last = i + 4 == len;

                for (int k = 0; k < 4; k++) {
                        char c = src[i + k];

                        if (c == '=' && last && k >= 2 && (k == 3 || src[i + 3] == '=')) {
                                v[k] = 0;
                                pad++;
                                continue;
                        }
                        if (pad || (v[k] = b64_value(c)) < 0)
                                return -EINVAL;
                }
                uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
                out[n++] = (unsigned char)(w >> 16);
                if (pad < 2)
                        out[n++] = (unsigned char)(w >> 8);
                if (pad < 1)
                        out[n++] = (unsigned char)w;
        }
        return (ssize_t)n;
}
