// SPDX-License-Identifier: Apache-2.0
/*
 * Search and replace inside a files_root (files.h). The search walks the tree fd by fd (openat
 * with O_NOFOLLOW from the parent directory, never by path), stays on the file system it started
 * on, never follows a symlink and never opens anything but a regular file (O_NONBLOCK, then
 * fstat: a FIFO planted in the tree cannot hang the worker). Files are read through a bounded
 * buffer, never mmap'ed: the sandbox may truncate a file under us and a SIGBUS would take the
 * daemon down. Replace reads each file whole (bounded), builds the new content in memory
 * (bounded) and puts it in place through files_writer. No logging.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files.h"

#define SEARCH_BUF_INIT (256 * 1024) /* first size of the read buffer; grows for longer lines */
#define SEARCH_GROUPS 10             /* \0..\9 */
#define SYMLINK_HOPS 40              /* like the kernel's MAXSYMLINKS */
/* absolute path of an entry of the walk: the start path plus SBX_MAX_FS_DEPTH names */
#define SEARCH_PATH_MAX (SBX_MAX_FILE_PATH + 2 + (size_t)SBX_MAX_FS_DEPTH * (NAME_MAX + 1))

static unsigned char ascii_lower(unsigned char c)
{
        return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static void lower_copy(char *dst, const char *src, size_t len)
{
        for (size_t i = 0; i < len; i++)
                dst[i] = (char)ascii_lower((unsigned char)src[i]);
}

/* Bytes of the character starting at s[i] (1 for anything that is not a well-formed sequence). */
static size_t char_len(const char *s, size_t len, size_t i)
{
        unsigned char c = (unsigned char)s[i];
        size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

        if (n == 1 || i + n > len)
                return 1;
        for (size_t k = 1; k < n; k++)
                if (((unsigned char)s[i + k] & 0xc0) != 0x80)
                        return 1;
        return n;
}

static bool is_text(const char *s, size_t len)
{
        return !memchr(s, '\0', len) && utf8_valid(s, len);
}

/* ---------- matching ---------- */

/* Regexes are compiled and run in C.UTF-8 (thread-locally, with uselocale): "." is one character,
 * not one byte, whatever sbxd's own locale is. (0 if the locale is missing: bytes then.) */
static locale_t utf8_loc;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_loc_init(void)
{
        utf8_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static locale_t utf8_enter(void)
{
        (void)pthread_once(&utf8_once, utf8_loc_init);
        return utf8_loc ? uselocale(utf8_loc) : (locale_t)0;
}

static void utf8_leave(locale_t old)
{
        if (old)
                (void)uselocale(old);
}

struct matcher {
        bool regex, icase;
        bool compiled;
        regex_t re;
        char *pat; /* literal: the pattern, lower-cased when icase */
        size_t plen;
        char *low; /* icase literal: lower-cased copy of the current text */
        size_t low_cap;
};

static int check_text_opt(const char *v, const char *what, bool allow_empty, struct sbx_err *err)
{
        size_t n;

        if (!v || (!allow_empty && !*v))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' must not be empty", what);
        n = strnlen(v, SBX_MAX_PATTERN + 1);
        if (n > SBX_MAX_PATTERN)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'%s' is longer than %d bytes", what,
                                    SBX_MAX_PATTERN);
        return 0;
}

static int matcher_init(struct matcher *m, const char *pattern, bool regex, bool icase, struct sbx_err *err)
{
        int q;

        *m = (struct matcher){ .regex = regex, .icase = icase };
        q = check_text_opt(pattern, "pattern", false, err);
        if (q < 0)
                return q;
        if (regex) {
                locale_t old = utf8_enter();

                q = regcomp(&m->re, pattern, REG_EXTENDED | REG_NEWLINE | (icase ? REG_ICASE : 0));
                utf8_leave(old);
                if (q != 0) {
                        char msg[256];

                        (void)regerror(q, &m->re, msg, sizeof msg);
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "invalid 'pattern': %s", msg);
                }
                m->compiled = true;
                return 0;
        }
        m->plen = strlen(pattern);
        m->pat = strdup(pattern);
        if (!m->pat)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (icase)
                lower_copy(m->pat, pattern, m->plen);
        return 0;
}

static void matcher_done(struct matcher *m)
{
        if (m->compiled)
                regfree(&m->re);
        free(m->pat);
        free(m->low);
        *m = (struct matcher){};
}

/* Get ready to search text[0..len). */
static int matcher_set_text(struct matcher *m, const char *text, size_t len)
{
        if (m->regex || !m->icase)
                return 0;
        if (len > m->low_cap) {
                size_t cap = m->low_cap ? m->low_cap : 4096;
                char *p;

                while (cap < len)
                        cap *= 2;
                p = realloc(m->low, cap);
                if (!p)
                        return -ENOMEM;
                m->low = p;
                m->low_cap = cap;
        }
        lower_copy(m->low, text, len);
        return 0;
}

/*
 * The first match in text[0..len) at or after start: 1 with pm[0] (and, for a regex, the groups up
 * to npm) filled, 0 if there is none, -ENOMEM. text is the same as given to matcher_set_text; a
 * regex sees all of it (so "^" and "$" keep their meaning at start).
 */
static int matcher_find(struct matcher *m, const char *text, size_t len, size_t start, regmatch_t *pm, size_t npm)
{
        if (start > len)
                return 0;
        if (m->regex) {
                int q;

                pm[0].rm_so = (regoff_t)start;
                pm[0].rm_eo = (regoff_t)len;
                locale_t old = utf8_enter();

                q = regexec(&m->re, text, npm, pm, REG_STARTEND);
                utf8_leave(old);
                if (q == REG_NOMATCH)
                        return 0;
                return q == 0 ? 1 : -ENOMEM;
        } else {
                const char *hay = m->icase ? m->low : text;
                const char *p = memmem(hay + start, len - start, m->pat, m->plen);

                if (!p)
                        return 0;
                pm[0].rm_so = (regoff_t)(p - hay);
                pm[0].rm_eo = (regoff_t)((size_t)(p - hay) + m->plen);
                return 1;
        }
}

/* ---------- the walk's directory listing ---------- */

struct names {
        char *buf; /* per entry: d_type byte, name, NUL */
        size_t len, cap;
        size_t *offs;
        size_t n, offs_cap;
};

static void names_done(struct names *l)
{
        free(l->buf);
        free(l->offs);
}

static int names_cmp(const void *a, const void *b, void *data)
{
        const char *buf = data;

        return strcmp(buf + *(const size_t *)a + 1, buf + *(const size_t *)b + 1);
}

/* Read the names of the directory dfd (sorted bytewise); *entries counts them against
 * SBX_MAX_FS_WALK (-SBX_E_LIMIT past it). */
static int names_read(int dfd, struct names *l, uint64_t *entries)
{
        _cleanup_close_ int fd = -EBADF;
        DIR *d;
        struct dirent *de;
        int q = 0;

        fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        TAKE_FD(fd);
        for (;;) {
                size_t n;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        q = errno ? -errno : 0;
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (++*entries > SBX_MAX_FS_WALK) {
                        q = -SBX_E_LIMIT;
                        break;
                }
                n = strlen(de->d_name) + 2;
                if (l->len + n > l->cap) {
                        size_t cap = l->cap ? l->cap * 2 : 4096;
                        char *p;

                        while (cap < l->len + n)
                                cap *= 2;
                        p = realloc(l->buf, cap);
                        if (!p) {
                                q = -ENOMEM;
                                break;
                        }
                        l->buf = p;
                        l->cap = cap;
                }
                if (l->n == l->offs_cap) {
                        size_t cap = l->offs_cap ? l->offs_cap * 2 : 64;
                        size_t *p = reallocarray(l->offs, cap, sizeof *p);

                        if (!p) {
                                q = -ENOMEM;
                                break;
                        }
                        l->offs = p;
                        l->offs_cap = cap;
                }
                l->offs[l->n++] = l->len;
                l->buf[l->len] = (char)de->d_type;
                memcpy(l->buf + l->len + 1, de->d_name, n - 1);
                l->len += n;
        }
        closedir(d);
        if (q < 0)
                return q;
        if (l->n > 1)
                qsort_r(l->offs, l->n, sizeof *l->offs, names_cmp, l->buf);
        return 0;
}

/* ---------- search ---------- */

struct search {
        const struct files_root *r;
        const char *glob;
        struct matcher m;
        struct sbx_err *err;
        json_t *matches;
        size_t max;
        bool stop; /* max reached and one more match seen */
        uint64_t searched, skipped, entries;
        dev_t dev;
        char *path; /* absolute path of the current entry */
        size_t path_len;
        char *buf; /* file contents */
        size_t cap;
};

static int add_match(struct search *s, const char *line, size_t len, bool text, uint64_t lineno, uint64_t column)
{
        size_t cut = len < SBX_MAX_SEARCH_LINE ? len : SBX_MAX_SEARCH_LINE;
        json_t *o, *content;

        if (text) {
                /* back off to a character boundary */
                while (cut < len && cut > 0 && ((unsigned char)line[cut] & 0xc0) == 0x80)
                        cut--;
                content = json_stringn(line, cut);
        } else {
                char b64[base64_encoded_len(SBX_MAX_SEARCH_LINE) + 1];

                (void)base64_encode(line, cut, b64);
                content = json_string(b64);
        }
        o = json_pack("{s:s,s:I,s:I,s:o?}", "file", s->path, "line", (json_int_t)lineno, "column", (json_int_t)column,
                      text ? "content" : "contentBase64", content);
        if (!o || json_array_append_new(s->matches, o) < 0)
                return -ENOMEM;
        return 0;
}

static int search_line(struct search *s, const char *line, size_t len, uint64_t lineno)
{
        regmatch_t pm[1];
        size_t start = 0, counted = 0, last_eo = SIZE_MAX;
        uint64_t chars = 0;
        int text = -1; /* not known yet */
        int q;

        q = matcher_set_text(&s->m, line, len);
        if (q < 0)
                return q;
        for (;;) {
                size_t so, eo;

                q = matcher_find(&s->m, line, len, start, pm, 1);
                if (q <= 0)
                        return q;
                so = (size_t)pm[0].rm_so;
                eo = (size_t)pm[0].rm_eo;
                if (so == eo && so == last_eo) {
                        /* an empty match right after a match is not another one (as in replace) */
                        if (so >= len)
                                return 0;
                        start = so + char_len(line, len, so);
                        continue;
                }
                last_eo = eo;
                if (json_array_size(s->matches) >= s->max) {
                        s->stop = true;
                        return 0;
                }
                if (text < 0)
                        text = is_text(line, len);
                if (text) {
                        /* columns in characters: count the lead bytes up to the match */
                        for (; counted < so; counted++)
                                if (((unsigned char)line[counted] & 0xc0) != 0x80)
                                        chars++;
                }
                q = add_match(s, line, len, text, lineno, text ? chars + 1 : so + 1);
                if (q < 0)
                        return q;
                if (eo > so)
                        start = eo;
                else if (so < len)
                        start = so + char_len(line, len, so);
                else
                        return 0;
        }
}

static int grow_buf(char **buf, size_t *cap, size_t want)
{
        size_t cap2 = *cap ? *cap : SEARCH_BUF_INIT;
        char *p;

        while (cap2 < want)
                cap2 *= 2;
        if (cap2 == *cap)
                return 0;
        p = realloc(*buf, cap2);
        if (!p)
                return -ENOMEM;
        *buf = p;
        *cap = cap2;
        return 0;
}

/* Search the open regular file fd line by line. Reads at most SBX_MAX_SEARCH_FILE bytes (a file
 * growing while it is read is cut there). */
static int search_fd(struct search *s, int fd)
{
        uint64_t total = 0, lineno = 0;
        size_t len = 0;
        bool eof = false;
        int q;

        while (!eof && !s->stop) {
                size_t start = 0, room;
                ssize_t n;

                if (len == s->cap) {
                        q = grow_buf(&s->buf, &s->cap, len + 1);
                        if (q < 0)
                                return q;
                }
                room = s->cap - len;
                if (room > SBX_MAX_SEARCH_FILE - total)
                        room = (size_t)(SBX_MAX_SEARCH_FILE - total);
                if (room == 0) {
                        eof = true;
                } else {
                        n = read(fd, s->buf + len, room);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        if (n == 0)
                                eof = true;
                        len += (size_t)n;
                        total += (uint64_t)n;
                }
                for (;;) {
                        char *nl = memchr(s->buf + start, '\n', len - start);

                        if (!nl)
                                break;
                        q = search_line(s, s->buf + start, (size_t)(nl - (s->buf + start)), ++lineno);
                        if (q < 0)
                                return q;
                        if (s->stop)
                                return 0;
                        start = (size_t)(nl - s->buf) + 1;
                }
                if (eof) {
                        if (start < len)
                                return search_line(s, s->buf + start, len - start, ++lineno);
                        return 0;
                }
                memmove(s->buf, s->buf + start, len - start);
                len -= start;
        }
        return 0;
}

/* Search the regular file fd if it qualifies (st: its fstat). */
static int search_file(struct search *s, int fd, const struct stat *st, const char *name)
{
        int q;

        if (s->glob && fnmatch(s->glob, name, 0) != 0)
                return 0;
        if (!S_ISREG(st->st_mode) || st->st_dev != s->dev || (uint64_t)st->st_size > SBX_MAX_SEARCH_FILE ||
            !utf8_valid(s->path, s->path_len)) {
                s->skipped++;
                return 0;
        }
        q = search_fd(s, fd);
        if (q == -ENOMEM)
                return q;
        if (q < 0)
                s->skipped++; /* unreadable (EIO ...): the rest of the tree is still searched */
        else
                s->searched++;
        return 0;
}

static bool path_push(struct search *s, const char *name, size_t *ret_old)
{
        size_t n = strlen(name);

        if (s->path_len + 1 + n + 1 > SEARCH_PATH_MAX)
                return false;
        *ret_old = s->path_len;
        if (s->path_len > 1)
                s->path[s->path_len++] = '/';
        memcpy(s->path + s->path_len, name, n + 1);
        s->path_len += n;
        return true;
}

static void path_pop(struct search *s, size_t old)
{
        s->path_len = old;
        s->path[old] = '\0';
}

static int search_dir(struct search *s, int dfd, unsigned depth)
{
        struct names l = {};
        int q;

        q = names_read(dfd, &l, &s->entries);
        if (q == -SBX_E_LIMIT) {
                names_done(&l);
                return sbx_err_setr(s->err, -SBX_E_LIMIT, "too_many_entries",
                                    "the search passed %d entries; narrow 'path' or 'glob'", SBX_MAX_FS_WALK);
        }
        if (q < 0) {
                names_done(&l);
                return q == -ENOMEM ? sbx_err_set(s->err, q, "out of memory") : 0; /* unreadable: skip */
        }
        for (size_t i = 0; i < l.n && !s->stop; i++) {
                unsigned char type = (unsigned char)l.buf[l.offs[i]];
                const char *name = l.buf + l.offs[i] + 1;
                _cleanup_close_ int fd = -EBADF;
                struct stat st;
                size_t old;

                if (type == DT_LNK)
                        continue;
                if (type == DT_DIR || type == DT_UNKNOWN) {
                        /* no automount, no crossing into another file system */
                        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) < 0)
                                continue;
                        type = S_ISDIR(st.st_mode)   ? DT_DIR
                               : S_ISREG(st.st_mode) ? DT_REG
                               : S_ISLNK(st.st_mode) ? DT_LNK
                                                     : DT_FIFO;
                        if (type == DT_LNK)
                                continue;
                }
                if (type != DT_DIR && type != DT_REG) {
                        s->skipped++; /* FIFO, socket, device: never opened */
                        continue;
                }
                if (!path_push(s, name, &old)) {
                        s->skipped += type == DT_REG;
                        continue;
                }
                if (type == DT_DIR) {
                        if (st.st_dev != s->dev || !utf8_valid(name, strlen(name))) {
                                path_pop(s, old);
                                continue;
                        }
                        if (depth + 1 > SBX_MAX_FS_DEPTH) {
                                names_done(&l);
                                return sbx_err_setr(s->err, -SBX_E_LIMIT, "too_many_entries",
                                                    "'%s' is nested deeper than %d directories", s->path,
                                                    SBX_MAX_FS_DEPTH);
                        }
                        fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
                        if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_dev == s->dev &&
                            files_check_fs(fd, s->path, NULL) == 0)
                                q = search_dir(s, fd, depth + 1);
                        else
                                q = 0;
                } else {
                        fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
                        if (fd >= 0 && fstat(fd, &st) == 0)
                                q = search_file(s, fd, &st, name);
                        else {
                                s->skipped++;
                                q = 0;
                        }
                }
                path_pop(s, old);
                if (q < 0) {
                        names_done(&l);
                        return q == -ENOMEM ? sbx_err_set(s->err, q, "out of memory") : q;
                }
        }
        names_done(&l);
        return 0;
}

int files_search(const struct files_root *r, const struct files_search_opts *o, json_t **ret, struct sbx_err *err)
{
        struct search s = { .r = r, .err = err };
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        json_t *res;
        int q;

        q = files_path_check(o->path, o->path ? strlen(o->path) : 0, "path", err);
        if (q < 0)
                return q;
        if (o->max_results > SBX_MAX_SEARCH_RESULTS)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'maxResults' must be 1..%d",
                                    SBX_MAX_SEARCH_RESULTS);
        s.max = o->max_results ? o->max_results : SBX_DEFAULT_SEARCH_RESULTS;
        if (o->glob && *o->glob) {
                q = check_text_opt(o->glob, "glob", false, err);
                if (q < 0)
                        return q;
                s.glob = o->glob;
        }
        q = matcher_init(&s.m, o->pattern, o->regex, o->ignore_case, err);
        if (q < 0)
                goto out;
        s.path = malloc(SEARCH_PATH_MAX);
        s.matches = json_array();
        if (!s.path || !s.matches) {
                q = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        q = files_path_normalize(o->path, s.path, SEARCH_PATH_MAX);
        if (q < 0) {
                q = files_errno(err, -q, o->path);
                goto out;
        }
        s.path_len = strlen(s.path);

        q = files_open(r, o->path, O_RDONLY | O_NONBLOCK, &fd, err);
        if (q < 0)
                goto out;
        if (fstat(fd, &st) < 0) {
                q = files_errno(err, errno, o->path);
                goto out;
        }
        s.dev = st.st_dev;
        if (S_ISDIR(st.st_mode)) {
                q = search_dir(&s, fd, 0);
        } else {
                const char *base = strrchr(s.path, '/') + 1;

                q = search_file(&s, fd, &st, base);
                if (q < 0)
                        q = sbx_err_set(err, q, "out of memory");
        }
        if (q < 0)
                goto out;

        res = json_pack("{s:O,s:b,s:I,s:I}", "matches", s.matches, "truncated", s.stop, "filesSearched",
                        (json_int_t)s.searched, "filesSkipped", (json_int_t)s.skipped);
        if (!res) {
                q = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        *ret = res;
        q = 0;
out:
        json_decref(s.matches);
        matcher_done(&s.m);
        free(s.path);
        free(s.buf);
        return q;
}

/* ---------- replace ---------- */

struct obuf {
        char *p;
        size_t len, cap;
};

/* -E2BIG past SBX_MAX_SEARCH_FILE */
static int obuf_add(struct obuf *b, const char *s, size_t n)
{
        if (n == 0)
                return 0;
        if (b->len + n > SBX_MAX_SEARCH_FILE)
                return -E2BIG;
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *p;

                while (cap < b->len + n)
                        cap *= 2;
                p = realloc(b->p, cap);
                if (!p)
                        return -ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        memcpy(b->p + b->len, s, n);
        b->len += n;
        return 0;
}

/* The replacement for one regex match: \0..\9 are groups, "\\" a backslash, any other backslash
 * stays as it is. */
static int expand(struct obuf *b, const char *repl, const char *text, const regmatch_t *pm, size_t npm)
{
        int q = 0;

        for (const char *p = repl; *p && q >= 0; p++) {
                if (p[0] == '\\' && p[1] >= '0' && p[1] <= '9') {
                        size_t g = (size_t)(p[1] - '0');

                        if (g < npm && pm[g].rm_so >= 0)
                                q = obuf_add(b, text + pm[g].rm_so, (size_t)(pm[g].rm_eo - pm[g].rm_so));
                        p++;
                } else if (p[0] == '\\' && p[1] == '\\') {
                        q = obuf_add(b, "\\", 1);
                        p++;
                } else {
                        q = obuf_add(b, p, 1);
                }
        }
        return q;
}

/* New content of text[0..len) into b; *ret_count replacements. */
static int replace_buf(struct matcher *m, const char *repl, const char *text, size_t len, struct obuf *b,
                       uint64_t *ret_count)
{
        regmatch_t pm[SEARCH_GROUPS];
        size_t npm = m->regex ? (m->re.re_nsub + 1 < SEARCH_GROUPS ? m->re.re_nsub + 1 : SEARCH_GROUPS) : 1;
        size_t rlen = strlen(repl), pos = 0, start = 0, last_eo = SIZE_MAX;
        uint64_t count = 0;
        int q;

        q = matcher_set_text(m, text, len);
        if (q < 0)
                return q;
        for (;;) {
                size_t so, eo;

                q = matcher_find(m, text, len, start, pm, npm);
                if (q < 0)
                        return q;
                if (q == 0)
                        break;
                so = (size_t)pm[0].rm_so;
                eo = (size_t)pm[0].rm_eo;
                /* after the last newline there is no line: "^" -> "#" must not add a "#" there */
                if (so == len && len > 0 && text[len - 1] == '\n')
                        break;
                if (so == eo && so == last_eo) {
                        /* "x*" on "xxa": the empty match right after "xx" is not another one (sed) */
                        if (so >= len)
                                break;
                        start = so + char_len(text, len, so);
                        continue;
                }
                last_eo = eo;
                q = obuf_add(b, text + pos, so - pos);
                if (q >= 0)
                        q = m->regex ? expand(b, repl, text, pm, npm) : obuf_add(b, repl, rlen);
                if (q < 0)
                        return q;
                count++;
                pos = eo;
                if (eo > so) {
                        start = eo;
                } else {
                        /* an empty match: keep the next character and look after it */
                        if (so >= len)
                                break;
                        start = so + char_len(text, len, so);
                        q = obuf_add(b, text + so, start - so);
                        if (q < 0)
                                return q;
                        pos = start;
                }
        }
        q = obuf_add(b, text + pos, len - pos);
        if (q < 0)
                return q;
        *ret_count = count;
        return 0;
}

/*
 * A replace target that is a symlink stands for the file it points to (like an editor, not like
 * a rename): follow the final component's links here, textually and inside the root (the files
 * API resolves ".." lexically anyway), so files_writer replaces the target, not the link.
 */
static int resolve_final(const struct files_root *r, const char *path, char *norm, size_t size, struct sbx_err *err)
{
        char target[SBX_MAX_FILE_PATH + 1], next[2 * SBX_MAX_FILE_PATH + 4];
        int q;

        q = files_path_normalize(path, norm, size);
        if (q < 0)
                return files_errno(err, -q, path);
        for (int hop = 0;; hop++) {
                _cleanup_close_ int fd = -EBADF;
                struct stat st;
                ssize_t n;

                q = files_open(r, hop == 0 ? path : norm, O_PATH | O_NOFOLLOW, &fd, err);
                if (q < 0)
                        return q;
                if (fstat(fd, &st) < 0)
                        return files_errno(err, errno, path);
                if (!S_ISLNK(st.st_mode))
                        return 0;
                if (hop == SYMLINK_HOPS)
                        return files_errno(err, ELOOP, path);
                n = readlinkat(fd, "", target, sizeof target - 1);
                if (n < 0)
                        return files_errno(err, errno, path);
                if ((size_t)n >= sizeof target - 1)
                        return files_errno(err, ENAMETOOLONG, path);
                target[n] = '\0';
                if (target[0] == '/') {
                        snprintf(next, sizeof next, "%s", target);
                } else {
                        char *slash = strrchr(norm, '/');

                        snprintf(next, sizeof next, "%.*s/%s", (int)(slash - norm), norm, target);
                }
                q = files_path_normalize(next, norm, size);
                if (q < 0)
                        return files_errno(err, -q, path);
        }
}

static int read_whole(int fd, const struct stat *st, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *buf = NULL;
        size_t cap = 0, len = 0;
        int q;

        q = grow_buf(&buf, &cap, (size_t)st->st_size + 1);
        if (q < 0)
                return q;
        for (;;) {
                ssize_t n;

                if (len == cap) {
                        q = grow_buf(&buf, &cap, cap + 1);
                        if (q < 0)
                                return q;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > SBX_MAX_SEARCH_FILE)
                        return -E2BIG;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static int replace_one(const struct files_root *r, struct matcher *m, const char *repl, const char *path,
                       uint64_t *ret_count, struct sbx_err *err)
{
        char norm[SBX_MAX_FILE_PATH + 2];
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *text = NULL;
        struct obuf b = {};
        struct files_write_opts wo = {};
        struct files_writer *w = NULL;
        struct stat st;
        uint64_t count = 0;
        size_t len = 0;
        int q;

        q = files_path_check(path, path ? strlen(path) : 0, "file", err);
        if (q < 0)
                return q;
        q = resolve_final(r, path, norm, sizeof norm, err);
        if (q < 0)
                return q;
        q = files_open_read(r, norm, &fd, &st, err);
        if (q < 0)
                return q;
        if (!S_ISREG(st.st_mode))
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_regular_file", "'%s' is not a regular file", path);
        if ((uint64_t)st.st_size > SBX_MAX_SEARCH_FILE)
                return sbx_err_setr(err, -SBX_E_TOO_LARGE, "too_large", "'%s' is larger than %llu bytes", path,
                                    (unsigned long long)SBX_MAX_SEARCH_FILE);
        q = read_whole(fd, &st, &text, &len);
        if (q == -E2BIG)
                return sbx_err_setr(err, -SBX_E_TOO_LARGE, "too_large", "'%s' is larger than %llu bytes", path,
                                    (unsigned long long)SBX_MAX_SEARCH_FILE);
        if (q < 0)
                return files_errno(err, -q, path);
        fd = safe_close(fd);
        if (m->regex && memchr(text, '\0', len))
                return sbx_err_setr(err, -SBX_E_INVALID, "not_a_text_file",
                                    "'%s' contains NUL bytes: regex replace works on text files only", path);
        q = replace_buf(m, repl, text, len, &b, &count);
        if (q == -E2BIG) {
                free(b.p);
                return sbx_err_setr(err, -SBX_E_TOO_LARGE, "too_large",
                                    "replacing in '%s' would make it larger than %llu bytes", path,
                                    (unsigned long long)SBX_MAX_SEARCH_FILE);
        }
        if (q < 0) {
                free(b.p);
                return sbx_err_set(err, q, "out of memory");
        }
        if (count > 0) {
                q = files_writer_open(r, norm, &wo, &w, err);
                if (q >= 0) {
                        q = write_all(files_writer_fd(w), b.p, b.len);
                        if (q < 0) {
                                files_writer_abort(w);
                                q = sbx_err_set(err, q, "cannot write '%s': %s", path, strerror(-q));
                        } else {
                                q = files_writer_commit(w, err);
                        }
                }
        }
        free(b.p);
        if (q < 0)
                return q;
        *ret_count = count;
        return 0;
}

/* {"code", "message"} of a per-file error, valid UTF-8 whatever the message quotes */
static json_t *error_json(const struct sbx_err *e)
{
        char msg[3 * SBX_ERR_MSG_MAX];
        const char *code = e->reason;

        if (!*code) {
                switch (e->code) {
                case -ENOSPC:
                case -EDQUOT:
                        code = "insufficient_storage";
                        break;
                case -SBX_E_NOT_FOUND:
                        code = "not_found";
                        break;
                case -SBX_E_TOO_LARGE:
                        code = "too_large";
                        break;
                default:
                        code = e->code <= -SBX_E_BASE && e->code != -SBX_E_INTERNAL ? "invalid" : "internal";
                }
        }
        msg[utf8_sanitize(e->msg, strnlen(e->msg, sizeof e->msg), msg)] = '\0';
        return json_pack("{s:s,s:s}", "code", code, "message", msg);
}

static json_t *path_json(const char *path)
{
        size_t n = path ? strnlen(path, SBX_MAX_FILE_PATH + 1) : 0;
        _cleanup_free_ char *buf = malloc(3 * n + 1);

        if (!buf)
                return NULL;
        buf[utf8_sanitize(path ? path : "", n, buf)] = '\0';
        return json_string(buf);
}

static int check_replacement(const struct matcher *m, const char *repl, struct sbx_err *err)
{
        int q = check_text_opt(repl, "replacement", true, err);

        if (q < 0 || !m->regex)
                return q;
        for (const char *p = repl; *p; p++) {
                if (p[0] != '\\' || !p[1])
                        continue;
                if (p[1] >= '0' && p[1] <= '9' && (size_t)(p[1] - '0') > m->re.re_nsub)
                        return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                            "'replacement' refers to group \\%c but 'pattern' has %zu", p[1],
                                            m->re.re_nsub);
                p++;
        }
        return 0;
}

int files_replace(const struct files_root *r, const struct files_replace_opts *o, json_t **ret, struct sbx_err *err)
{
        struct matcher m;
        json_t *results = NULL, *res;
        uint64_t total = 0;
        int q;

        if (!o->files || o->n_files == 0 || o->n_files > SBX_MAX_REPLACE_FILES)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'files' must list 1..%d files",
                                    SBX_MAX_REPLACE_FILES);
        q = matcher_init(&m, o->pattern, o->regex, o->ignore_case, err);
        if (q < 0)
                goto out;
        q = check_replacement(&m, o->replacement, err);
        if (q < 0)
                goto out;
        results = json_array();
        if (!results) {
                q = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        for (size_t i = 0; i < o->n_files; i++) {
                struct sbx_err ferr = {};
                uint64_t count = 0;
                json_t *item;

                q = replace_one(r, &m, o->replacement, o->files[i], &count, &ferr);
                if (q == -ENOMEM) {
                        q = sbx_err_set(err, q, "out of memory");
                        goto out;
                }
                if (q < 0) {
                        item = json_pack("{s:o,s:o}", "file", path_json(o->files[i]), "error", error_json(&ferr));
                } else {
                        total += count;
                        item = json_pack("{s:o,s:I}", "file", path_json(o->files[i]), "replacements",
                                         (json_int_t)count);
                }
                if (!item || json_array_append_new(results, item) < 0) {
                        q = sbx_err_set(err, -ENOMEM, "out of memory");
                        goto out;
                }
        }
        res = json_pack("{s:O,s:I}", "results", results, "totalReplacements", (json_int_t)total);
        if (!res) {
                q = sbx_err_set(err, -ENOMEM, "out of memory");
                goto out;
        }
        *ret = res;
        q = 0;
out:
        json_decref(results);
        matcher_done(&m);
        return q;
}
