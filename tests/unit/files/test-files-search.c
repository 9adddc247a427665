// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for files_search and files_replace (src/files/search.c): literal and regex matching,
 * ignoreCase, glob, columns in characters, binary lines as base64, truncation, bad options, a FIFO
 * and a symlink to the host's /etc inside the tree, and replace (back-references, untouched files,
 * per-file errors, owner and mode kept, symlinks edited through). Needs root (chown); skipped
 * otherwise. Every test works in its own mkdtemp root under /tmp and removes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files/files.h"

#define OWNER 12345 /* files-fixture.h: the owner of everything created */

#include "files-fixture.h"

static int setup(void **state)
{
        return fixture_setup(state, "/tmp/test-files-search-XXXXXX");
}

static int teardown(void **state)
{
        static const char *const mounts[] = { "mnt", NULL };

        return fixture_teardown(state, mounts);
}

/* write rel (parents created) under the root with content */
static void put(struct fixture *f, const char *rel, const void *data, size_t len)
{
        char p[512];
        int fd;

        for (const char *s = strchr(rel, '/'); s; s = strchr(s + 1, '/')) {
                snprintf(p, sizeof p, "%s/%.*s", f->dir, (int)(s - rel), rel);
                (void)mkdir(p, 0755);
        }
        snprintf(p, sizeof p, "%s/%s", f->dir, rel);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write_all(fd, data, len), 0);
        close(fd);
}

static void puts_(struct fixture *f, const char *rel, const char *s)
{
        put(f, rel, s, strlen(s));
}

/* content of rel, NUL-terminated; *len its size */
static char *get(struct fixture *f, const char *rel, size_t *len)
{
        char p[512];
        struct stat st;
        char *buf;
        int fd;

        snprintf(p, sizeof p, "%s/%s", f->dir, rel);
        fd = open(p, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        buf = calloc(1, (size_t)st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
        close(fd);
        if (len)
                *len = (size_t)st.st_size;
        return buf;
}

static json_t *search(struct fixture *f, const struct files_search_opts *o)
{
        struct sbx_err err = {};
        json_t *res = NULL;
        int q = files_search(&f->r, o, &res, &err);

        if (q < 0)
                fprintf(stderr, "files_search: %d %s: %s\n", q, err.reason, err.msg);
        assert_int_equal(q, 0);
        assert_non_null(res);
        return res;
}

static json_t *match(json_t *res, size_t i)
{
        return json_array_get(json_object_get(res, "matches"), i);
}

static size_t n_matches(json_t *res)
{
        return json_array_size(json_object_get(res, "matches"));
}

static void assert_match(json_t *m, const char *file, long line, long column, const char *content)
{
        assert_non_null(m);
        assert_string_equal(json_string_value(json_object_get(m, "file")), file);
        assert_int_equal(json_integer_value(json_object_get(m, "line")), line);
        assert_int_equal(json_integer_value(json_object_get(m, "column")), column);
        if (content)
                assert_string_equal(json_string_value(json_object_get(m, "content")), content);
}

static void test_literal(void **state)
{
        struct fixture *f = *state;
        struct files_search_opts o = { .path = "/", .pattern = "hello" };
        json_t *res;

        puts_(f, "a.txt", "hello world\nfoo hello hello\nnothing\n");
        puts_(f, "sub/b.c", "int hello;");
        puts_(f, "sub/c.md", "HELLO\n");
        res = search(f, &o);
        assert_int_equal(n_matches(res), 4);
        assert_match(match(res, 0), "/a.txt", 1, 1, "hello world");
        /* every match of a line, one entry each */
        assert_match(match(res, 1), "/a.txt", 2, 5, "foo hello hello");
        assert_match(match(res, 2), "/a.txt", 2, 11, "foo hello hello");
        assert_match(match(res, 3), "/sub/b.c", 1, 5, "int hello;");
        assert_false(json_boolean_value(json_object_get(res, "truncated")));
        assert_int_equal(json_integer_value(json_object_get(res, "filesSearched")), 3);
        json_decref(res);

        /* a sub-directory, a relative path, one file */
        o.path = "sub";
        res = search(f, &o);
        assert_int_equal(n_matches(res), 1);
        assert_match(match(res, 0), "/sub/b.c", 1, 5, NULL);
        json_decref(res);
        o.path = "/sub/../a.txt";
        res = search(f, &o);
        assert_int_equal(n_matches(res), 3);
        assert_match(match(res, 0), "/a.txt", 1, 1, NULL);
        json_decref(res);

        /* ignoreCase */
        o = (struct files_search_opts){ .path = "/", .pattern = "HeLLo", .ignore_case = true };
        res = search(f, &o);
        assert_int_equal(n_matches(res), 5);
        assert_match(match(res, 4), "/sub/c.md", 1, 1, "HELLO");
        json_decref(res);

        /* glob on the base name */
        o.glob = "*.md";
        res = search(f, &o);
        assert_int_equal(n_matches(res), 1);
        assert_match(match(res, 0), "/sub/c.md", 1, 1, NULL);
        assert_int_equal(json_integer_value(json_object_get(res, "filesSearched")), 1);
        json_decref(res);
}

static void test_regex(void **state)
{
        struct fixture *f = *state;
        struct files_search_opts o = { .path = "/", .pattern = "^fo+ [a-z]+$", .regex = true };
        json_t *res;

        puts_(f, "a.txt", "foo bar\nxfoo bar\nfoooo baz\nfoo BAR\n");
        res = search(f, &o);
        assert_int_equal(n_matches(res), 2);
        assert_match(match(res, 0), "/a.txt", 1, 1, "foo bar");
        assert_match(match(res, 1), "/a.txt", 3, 1, "foooo baz");
        json_decref(res);

        o.ignore_case = true;
        res = search(f, &o);
        assert_int_equal(n_matches(res), 3);
        assert_match(match(res, 2), "/a.txt", 4, 1, "foo BAR");
        json_decref(res);

        /* several matches per line; "^" only at the start of the line */
        o = (struct files_search_opts){ .path = "/a.txt", .pattern = "^o|f", .regex = true };
        res = search(f, &o);
        assert_int_equal(n_matches(res), 4);
        assert_match(match(res, 0), "/a.txt", 1, 1, NULL);
        assert_match(match(res, 1), "/a.txt", 2, 2, NULL);
        json_decref(res);

        /* an empty match per character does not loop */
        o = (struct files_search_opts){ .path = "/a.txt", .pattern = "z*", .regex = true, .max_results = 100 };
        res = search(f, &o);
        assert_int_equal(n_matches(res), 8 + 9 + 9 + 8);
        json_decref(res);
}

static void test_utf8_and_binary(void **state)
{
        struct fixture *f = *state;
        static const char bin[] = "ab\0c\xff needle\nnext needle\n";
        struct files_search_opts o = { .path = "/", .pattern = "ü" };
        char b64[64];
        json_t *res, *m;

        puts_(f, "u.txt", "héllo wörld ü\n日本語テキスト\n");
        res = search(f, &o);
        assert_int_equal(n_matches(res), 1);
        /* 13th character, 16th byte */
        assert_match(match(res, 0), "/u.txt", 1, 13, "héllo wörld ü");
        json_decref(res);
        o.pattern = "テ";
        res = search(f, &o);
        assert_match(match(res, 0), "/u.txt", 2, 4, "日本語テキスト");
        json_decref(res);

        put(f, "bin.dat", bin, sizeof bin - 1);
        o = (struct files_search_opts){ .path = "/bin.dat", .pattern = "needle" };
        res = search(f, &o);
        assert_int_equal(n_matches(res), 2);
        m = match(res, 0);
        /* not UTF-8: column in bytes, the line as base64 */
        assert_match(m, "/bin.dat", 1, 7, NULL);
        assert_null(json_object_get(m, "content"));
        base64_encode(bin, 12, b64);
        assert_string_equal(json_string_value(json_object_get(m, "contentBase64")), b64);
        assert_match(match(res, 1), "/bin.dat", 2, 6, "next needle");
        json_decref(res);

        /* the same with a regex (explicit bounds: NUL bytes inside the line) */
        o.regex = true;
        o.pattern = "ne+dle";
        res = search(f, &o);
        assert_int_equal(n_matches(res), 2);
        assert_match(match(res, 0), "/bin.dat", 1, 7, NULL);
        json_decref(res);
}

static void test_long_line(void **state)
{
        struct fixture *f = *state;
        struct files_search_opts o = { .path = "/", .pattern = "needle" };
        size_t n = 3 * 1024 * 1024;
        char *big = malloc(n + 16);
        const char *content;
        json_t *res;

        /* a line longer than the first read buffer; content cut at a character boundary */
        assert_non_null(big);
        memset(big, 'a', n);
        memcpy(big + SBX_MAX_SEARCH_LINE - 1, "é", 2);
        memcpy(big + n - 6, "needle\n", 7);
        put(f, "long.txt", big, n + 1);
        res = search(f, &o);
        assert_int_equal(n_matches(res), 1);
        content = json_string_value(json_object_get(match(res, 0), "content"));
        assert_non_null(content);
        assert_int_equal(strlen(content), SBX_MAX_SEARCH_LINE - 1);
        assert_int_equal(json_integer_value(json_object_get(match(res, 0), "column")), (json_int_t)(n - 6));
        json_decref(res);
        free(big);
}

static void test_truncated(void **state)
{
        struct fixture *f = *state;
        struct files_search_opts o = { .path = "/", .pattern = "x", .max_results = 5 };
        json_t *res;

        puts_(f, "a", "x x\nx x\nx x\n");
        res = search(f, &o);
        assert_int_equal(n_matches(res), 5);
        assert_true(json_boolean_value(json_object_get(res, "truncated")));
        json_decref(res);

        o.max_results = 6;
        res = search(f, &o);
        assert_int_equal(n_matches(res), 6);
        assert_false(json_boolean_value(json_object_get(res, "truncated")));
        json_decref(res);
}

static void assert_search_fails(struct fixture *f, const struct files_search_opts *o, int code, const char *reason,
                                const char *needle)
{
        struct sbx_err err = {};
        json_t *res = NULL;

        assert_int_equal(files_search(&f->r, o, &res, &err), code);
        assert_null(res);
        assert_string_equal(err.reason, reason);
        if (needle)
                assert_non_null(strstr(err.msg, needle));
}

static void test_bad_options(void **state)
{
        struct fixture *f = *state;

        puts_(f, "a", "x\n");
        assert_search_fails(f, &(struct files_search_opts){ .path = "/", .pattern = "a(", .regex = true },
                            -SBX_E_INVALID, "invalid_value", "pattern");
        assert_search_fails(f, &(struct files_search_opts){ .path = "/", .pattern = "" }, -SBX_E_INVALID,
                            "invalid_value", "pattern");
        assert_search_fails(f, &(struct files_search_opts){ .path = "/", .pattern = "x", .max_results = 1000000 },
                            -SBX_E_INVALID, "invalid_value", "maxResults");
        assert_search_fails(f, &(struct files_search_opts){ .path = "/nope", .pattern = "x" }, -SBX_E_NOT_FOUND,
                            "file_not_found", "/nope");
        assert_search_fails(f, &(struct files_search_opts){ .path = "", .pattern = "x" }, -SBX_E_INVALID,
                            "invalid_path", NULL);
}

static void test_hostile_tree(void **state)
{
        struct fixture *f = *state;
        struct files_search_opts o = { .path = "/", .pattern = "root:" };
        char p[256];
        json_t *res;

        puts_(f, "a.txt", "root: mine\n");
        snprintf(p, sizeof p, "%s/fifo", f->dir);
        assert_int_equal(mkfifo(p, 0644), 0);
        snprintf(p, sizeof p, "%s/hostetc", f->dir);
        assert_int_equal(symlink("/etc", p), 0);
        snprintf(p, sizeof p, "%s/passwd", f->dir);
        assert_int_equal(symlink("/etc/passwd", p), 0);
        snprintf(p, sizeof p, "%s/esc", f->dir);
        assert_int_equal(symlink("../../../../etc", p), 0);

        /* another file system mounted in the tree is not entered */
        snprintf(p, sizeof p, "%s/mnt", f->dir);
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(mount("tmpfs", p, "tmpfs", 0, "size=1m"), 0);
        puts_(f, "mnt/other", "root: other fs\n");
        /* a name that is not UTF-8 cannot be reported: skipped */
        puts_(f, "bad\xff", "root: bad name\n");

        alarm(20); /* a FIFO opened for reading would block forever */
        res = search(f, &o);
        alarm(0);
        /* only the file of the tree: no symlink followed, the FIFO skipped */
        assert_int_equal(n_matches(res), 1);
        assert_match(match(res, 0), "/a.txt", 1, 1, "root: mine");
        assert_int_equal(json_integer_value(json_object_get(res, "filesSearched")), 1);
        assert_int_equal(json_integer_value(json_object_get(res, "filesSkipped")), 2);
        json_decref(res);

        /* a start path through the symlink resolves inside the root: there is no /etc there */
        assert_search_fails(f, &(struct files_search_opts){ .path = "/hostetc", .pattern = "root:" }, -SBX_E_NOT_FOUND,
                            "file_not_found", NULL);
        assert_search_fails(f, &(struct files_search_opts){ .path = "/esc/passwd", .pattern = "root:" },
                            -SBX_E_NOT_FOUND, "file_not_found", NULL);
        /* the FIFO as the start path is refused at once */
        alarm(20);
        assert_search_fails(f, &(struct files_search_opts){ .path = "/fifo", .pattern = "x" }, -SBX_E_INVALID,
                            "not_a_regular_file", NULL);
        alarm(0);
}

/* ---------- replace ---------- */

static json_t *replace(struct fixture *f, const char *const *files, size_t n, const char *pattern, const char *repl,
                       bool regex, bool icase)
{
        struct files_replace_opts o = {
                .files = files,
                .n_files = n,
                .pattern = pattern,
                .replacement = repl,
                .regex = regex,
                .ignore_case = icase,
        };
        struct sbx_err err = {};
        json_t *res = NULL;
        int q = files_replace(&f->r, &o, &res, &err);

        if (q < 0)
                fprintf(stderr, "files_replace: %d %s: %s\n", q, err.reason, err.msg);
        assert_int_equal(q, 0);
        assert_non_null(res);
        return res;
}

static json_t *result(json_t *res, size_t i)
{
        return json_array_get(json_object_get(res, "results"), i);
}

static void assert_content(struct fixture *f, const char *rel, const char *want)
{
        char *got = get(f, rel, NULL);

        assert_string_equal(got, want);
        free(got);
}

static void test_replace_literal(void **state)
{
        struct fixture *f = *state;
        const char *files[] = { "/a.txt", "b.txt", "/missing", "/c.txt" };
        struct stat st, st_c, st_c2;
        char p[256];
        json_t *res;

        puts_(f, "a.txt", "foo bar foo\nfoofoo\n");
        puts_(f, "b.txt", "FOO Foo\n");
        puts_(f, "c.txt", "nothing here\n");
        snprintf(p, sizeof p, "%s/a.txt", f->dir);
        assert_int_equal(chown(p, OWNER + 7, OWNER + 8), 0);
        assert_int_equal(chmod(p, 0640), 0);
        snprintf(p, sizeof p, "%s/c.txt", f->dir);
        assert_int_equal(stat(p, &st_c), 0);
        usleep(20000);

        res = replace(f, files, 4, "foo", "baz", false, false);
        assert_int_equal(json_integer_value(json_object_get(result(res, 0), "replacements")), 4);
        assert_string_equal(json_string_value(json_object_get(result(res, 0), "file")), "/a.txt");
        assert_int_equal(json_integer_value(json_object_get(result(res, 1), "replacements")), 0);
        /* a missing file is an error of its own, the others go on */
        assert_string_equal(json_string_value(json_object_get(json_object_get(result(res, 2), "error"), "code")),
                            "file_not_found");
        assert_null(json_object_get(result(res, 2), "replacements"));
        assert_int_equal(json_integer_value(json_object_get(result(res, 3), "replacements")), 0);
        assert_int_equal(json_integer_value(json_object_get(res, "totalReplacements")), 4);
        json_decref(res);
        assert_content(f, "a.txt", "baz bar baz\nbazbaz\n");

        /* owner and mode kept */
        snprintf(p, sizeof p, "%s/a.txt", f->dir);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_uid, OWNER + 7);
        assert_int_equal(st.st_gid, OWNER + 8);
        assert_int_equal(st.st_mode & 07777, 0640);

        /* no match: not rewritten at all */
        snprintf(p, sizeof p, "%s/c.txt", f->dir);
        assert_int_equal(stat(p, &st_c2), 0);
        assert_int_equal(st_c.st_ino, st_c2.st_ino);
        assert_int_equal(st_c.st_mtim.tv_sec, st_c2.st_mtim.tv_sec);
        assert_int_equal(st_c.st_mtim.tv_nsec, st_c2.st_mtim.tv_nsec);

        /* ignoreCase */
        res = replace(f, (const char *[]){ "/b.txt" }, 1, "foo", "x", false, true);
        assert_int_equal(json_integer_value(json_object_get(res, "totalReplacements")), 2);
        json_decref(res);
        assert_content(f, "b.txt", "x x\n");
}

static void test_replace_regex(void **state)
{
        struct fixture *f = *state;
        static const char bin[] = "k=v\0\xff k=v\n";
        struct sbx_err err = {};
        json_t *res = NULL;
        size_t len;
        char *got;

        puts_(f, "kv", "alpha=one\nbeta=two # beta=x\n");
        res = replace(f, (const char *[]){ "/kv" }, 1, "([a-z]+)=([a-z]+)", "\\2=\\1 \\\\ \\0", true, false);
        assert_int_equal(json_integer_value(json_object_get(res, "totalReplacements")), 3);
        json_decref(res);
        assert_content(f, "kv", "one=alpha \\ alpha=one\ntwo=beta \\ beta=two # x=beta \\ beta=x\n");

        /* anchors per line; empty matches: one per character, none right after a match (sed) */
        puts_(f, "e", "abc\nxxa\n");
        res = replace(f, (const char *[]){ "/e" }, 1, "x*", "-", true, false);
        json_decref(res);
        assert_content(f, "e", "-a-b-c-\n-a-\n");
        puts_(f, "e", "abc\nabc\n");
        res = replace(f, (const char *[]){ "/e" }, 1, "^A", "Z", true, true);
        json_decref(res);
        assert_content(f, "e", "Zbc\nZbc\n");
        puts_(f, "e", "é\n");
        res = replace(f, (const char *[]){ "/e" }, 1, "x*", "-", true, false);
        json_decref(res);
        assert_content(f, "e", "-é-\n");

        /* NUL bytes: regex refused for that file, literal works on bytes */
        put(f, "bin", bin, sizeof bin - 1);
        res = replace(f, (const char *[]){ "/bin" }, 1, "k=v", "K", true, false);
        assert_string_equal(json_string_value(json_object_get(json_object_get(result(res, 0), "error"), "code")),
                            "not_a_text_file");
        json_decref(res);
        res = replace(f, (const char *[]){ "/bin" }, 1, "k=v", "K", false, false);
        assert_int_equal(json_integer_value(json_object_get(res, "totalReplacements")), 2);
        json_decref(res);
        got = get(f, "bin", &len);
        assert_int_equal(len, 6);
        assert_memory_equal(got, "K\0\xff K\n", 6);
        free(got);

        /* bad options fail the whole request */
        struct files_replace_opts o = { .files = (const char *[]){ "/kv" },
                                        .n_files = 1,
                                        .pattern = "(a)",
                                        .replacement = "\\2",
                                        .regex = true };
        assert_int_equal(files_replace(&f->r, &o, &res, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_value");
        assert_non_null(strstr(err.msg, "replacement"));
        sbx_err_clear(&err);
        o.pattern = "[";
        assert_int_equal(files_replace(&f->r, &o, &res, &err), -SBX_E_INVALID);
        assert_non_null(strstr(err.msg, "pattern"));
        sbx_err_clear(&err);
        o.pattern = "";
        assert_int_equal(files_replace(&f->r, &o, &res, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        o.pattern = "a";
        o.n_files = 0;
        assert_int_equal(files_replace(&f->r, &o, &res, &err), -SBX_E_INVALID);
}

static void test_replace_symlink(void **state)
{
        struct fixture *f = *state;
        char p[256], target[64];
        json_t *res;
        ssize_t n;

        puts_(f, "dir/real", "old\n");
        snprintf(p, sizeof p, "%s/link", f->dir);
        assert_int_equal(symlink("dir/real", p), 0);
        snprintf(p, sizeof p, "%s/dir/abs", f->dir);
        assert_int_equal(symlink("/link", p), 0);
        /* a link out of the root resolves inside it: no such file there */
        snprintf(p, sizeof p, "%s/pw", f->dir);
        assert_int_equal(symlink("../../../etc/passwd", p), 0);

        res = replace(f, (const char *[]){ "/dir/abs", "/pw", "/dir" }, 3, "old", "new", false, false);
        assert_int_equal(json_integer_value(json_object_get(result(res, 0), "replacements")), 1);
        assert_string_equal(json_string_value(json_object_get(json_object_get(result(res, 1), "error"), "code")),
                            "file_not_found");
        assert_string_equal(json_string_value(json_object_get(json_object_get(result(res, 2), "error"), "code")),
                            "is_a_directory");
        json_decref(res);
        assert_content(f, "dir/real", "new\n");
        /* the links are still links */
        snprintf(p, sizeof p, "%s/link", f->dir);
        n = readlink(p, target, sizeof target - 1);
        assert_int_equal(n, 8);
        snprintf(p, sizeof p, "%s/dir/abs", f->dir);
        n = readlink(p, target, sizeof target - 1);
        assert_int_equal(n, 5);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_literal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_regex, setup, teardown),
                cmocka_unit_test_setup_teardown(test_utf8_and_binary, setup, teardown),
                cmocka_unit_test_setup_teardown(test_long_line, setup, teardown),
                cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hostile_tree, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replace_literal, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replace_regex, setup, teardown),
                cmocka_unit_test_setup_teardown(test_replace_symlink, setup, teardown),
        };

        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 0;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
