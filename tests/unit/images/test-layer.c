// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for the layer store (src/images/layer.c, layer-tar.c): commit of a tree with every
 * kind of entry, the canonical tar stream read back with libarchive, determinism (same tree, a
 * cp -a copy, another locale), rejection of what a layer cannot hold, holds and gc, leftovers,
 * and tamper detection. Needs root (whiteouts, chown, trusted.* xattrs); skipped otherwise. Every
 * test works in its own mkdtemp dir under /tmp and removes it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <locale.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "images/layer.h"

extern char **environ;

#define MTIME 1700000000

struct fixture {
        char dir[64];   /* scratch dir */
        char store[96]; /* dir/store */
        struct layer_store *ls;
};

static int run(const char *const argv[])
{
        pid_t pid;
        int status;

        if (posix_spawnp(&pid, argv[0], NULL, NULL, (char *const *)argv, environ) != 0)
                return -1;
        if (waitpid(pid, &status, 0) < 0)
                return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* rm -rf: also takes trees deeper than PATH_MAX (a failed test may leave one) */
static void rm_rf(const char *path)
{
        (void)run((const char *const[]){ "rm", "-rf", "--one-file-system", path, NULL });
}

static int setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);
        struct sbx_err err = {};

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/test-layer-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->store, sizeof f->store, "%s/store", f->dir);
        assert_int_equal(layer_store_open(f->store, &f->ls, &err), 0);
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fixture *f = *state;

        layer_store_free(f->ls);
        rm_rf(f->dir);
        free(f);
        return 0;
}

/* ---- tree helpers ---- */

static char *join(char *buf, size_t size, const char *a, const char *b)
{
        int n = snprintf(buf, size, "%s/%s", a, b);

        assert_true(n > 0 && (size_t)n < size);
        return buf;
}

static void put_file(const char *root, const char *rel, const char *content)
{
        char p[PATH_MAX];
        int fd;

        join(p, sizeof p, root, rel);
        fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
        close(fd);
}

static void set_mtime(const char *root, const char *rel, time_t t)
{
        struct timespec ts[2] = { { .tv_sec = t }, { .tv_sec = t } };
        char p[PATH_MAX];

        join(p, sizeof p, root, rel);
        assert_int_equal(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
}

static void make_socket(const char *root, const char *rel)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", root, rel);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd);
}

/*
 * The reference tree: a file (with overlay xattrs to strip and one to keep), a dir with a file
 * and a hard link to the first file, a symlink, a symlink to /etc, a fifo, a whiteout, an opaque
 * dir, a socket. Fixed mtimes, so two builds hash the same.
 */
static void build_tree(const char *root)
{
        char p[PATH_MAX], q[PATH_MAX];

        put_file(root, "a.txt", "hello\n");
        join(p, sizeof p, root, "a.txt");
        assert_int_equal(setxattr(p, "user.overlay.origin", "x", 1, 0), 0);
        assert_int_equal(setxattr(p, "user.keep", "k", 1, 0), 0);
        join(p, sizeof p, root, "d");
        assert_int_equal(mkdir(p, 0750), 0);
        assert_int_equal(setxattr(p, "trusted.overlay.redirect", "r", 1, 0), 0);
        put_file(root, "d/f", "f\n");
        join(p, sizeof p, root, "a.txt");
        join(q, sizeof q, root, "d/hl");
        assert_int_equal(link(p, q), 0);
        join(p, sizeof p, root, "link");
        assert_int_equal(symlink("a.txt", p), 0);
        assert_int_equal(lsetxattr(p, "trusted.overlay.origin", "o", 1, 0), 0);
        join(p, sizeof p, root, "etc");
        assert_int_equal(symlink("/etc", p), 0);
        join(p, sizeof p, root, "fifo");
        assert_int_equal(mkfifo(p, 0640), 0);
        join(p, sizeof p, root, "gone");
        assert_int_equal(mknod(p, S_IFCHR | 0, makedev(0, 0)), 0);
        join(p, sizeof p, root, "o");
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(setxattr(p, "user.overlay.opaque", "y", 1, 0), 0);
        put_file(root, "o/x", "x\n");
        make_socket(root, "sock");

        static const char *const leaves[] = { "a.txt", "d/f", "link", "etc", "fifo", "gone", "o/x" };
        for (size_t i = 0; i < ELEMENTSOF(leaves); i++)
                set_mtime(root, leaves[i], MTIME + (time_t)i);
        set_mtime(root, "d", MTIME + 100);
        set_mtime(root, "o", MTIME + 101);
}

static void new_tmp(struct fixture *f, char *tmp, size_t size, char *root, size_t root_size)
{
        struct sbx_err err = {};
        struct stat st;

        assert_int_equal(layer_tmp_new(f->ls, tmp, size, &err), 0);
        snprintf(root, root_size, "%s/root", tmp);
        assert_int_equal(lstat(root, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_gid, 0);
}

static void commit_ok(struct fixture *f, const char *tmp, const char *source, struct layer_info *info)
{
        struct sbx_err err = {};
        int r = layer_commit(f->ls, tmp, source, info, &err);

        if (r != 0)
                fail_msg("layer_commit: %d %s", r, err.msg);
}

/* ---- the stream, read back ---- */

struct membuf {
        char *p;
        size_t len, cap;
        size_t calls;
        size_t fail_at; /* the call that fails with -ENOSPC (1-based); 0: none */
};

static int mem_write(const void *buf, size_t len, void *data)
{
        struct membuf *m = data;

        m->calls++;
        if (m->fail_at && m->calls == m->fail_at)
                return -ENOSPC;
        if (m->len + len > m->cap) {
                m->cap = (m->len + len) * 2;
                m->p = realloc(m->p, m->cap);
                assert_non_null(m->p);
        }
        memcpy(m->p + m->len, buf, len);
        m->len += len;
        return 0;
}

static void sha256_hex(const void *p, size_t len, char out[SBX_LAYER_DIGEST_MAX])
{
        unsigned char md[32];
        unsigned n = 0;

        assert_int_equal(EVP_Digest(p, len, md, &n, EVP_sha256(), NULL), 1);
        memcpy(out, "sha256:", 8);
        for (unsigned i = 0; i < n; i++)
                snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
}

struct tar_item {
        char path[256];
        mode_t type;
        mode_t perm;
        int64_t size, uid, gid, mtime;
        char link[256]; /* symlink target */
        char hardlink[256];
};

static size_t tar_parse(const struct membuf *m, struct tar_item *items, size_t max)
{
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        size_t n = 0;

        assert_non_null(a);
        assert_int_equal(archive_read_support_format_tar(a), ARCHIVE_OK);
        assert_int_equal(archive_read_open_memory(a, m->p, m->len), ARCHIVE_OK);
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                assert_true(n < max);
                struct tar_item *it = &items[n++];
                memset(it, 0, sizeof *it);
                snprintf(it->path, sizeof it->path, "%s", archive_entry_pathname(e));
                it->type = archive_entry_filetype(e);
                it->perm = archive_entry_perm(e);
                it->size = archive_entry_size(e);
                it->uid = archive_entry_uid(e);
                it->gid = archive_entry_gid(e);
                it->mtime = archive_entry_mtime(e);
                assert_false(archive_entry_atime_is_set(e));
                assert_false(archive_entry_ctime_is_set(e));
                assert_true(!archive_entry_uname(e) || !*archive_entry_uname(e));
                assert_true(!archive_entry_gname(e) || !*archive_entry_gname(e));
                if (archive_entry_symlink(e))
                        snprintf(it->link, sizeof it->link, "%s", archive_entry_symlink(e));
                if (archive_entry_hardlink(e))
                        snprintf(it->hardlink, sizeof it->hardlink, "%s", archive_entry_hardlink(e));
        }
        assert_int_equal(archive_read_free(a), ARCHIVE_OK);
        return n;
}

static void write_tar(struct fixture *f, const char *digest, struct membuf *m)
{
        struct sbx_err err = {};
        int r;

        memset(m, 0, sizeof *m);
        r = layer_write_tar(f->ls, digest, mem_write, m, &err);
        if (r != 0)
                fail_msg("layer_write_tar: %d %s", r, err.msg);
}

static bool exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

/* ---- tests ---- */

static void test_digest_valid(void **state)
{
        (void)state;
        assert_true(layer_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_false(layer_digest_valid("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"));
        assert_false(layer_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"));
        assert_false(layer_digest_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555"));
        assert_false(layer_digest_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_false(layer_digest_valid("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
        assert_false(layer_digest_valid(""));
        assert_false(layer_digest_valid(NULL));
}

static void test_open_empty(void **state)
{
        struct fixture *f = *state;
        struct layer_info *v = NULL, info;
        struct sbx_err err = {};
        struct stat st;
        size_t n = 99;

        assert_string_equal(layer_store_dir(f->ls), f->store);
        assert_int_equal(stat(f->store, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(layer_list(f->ls, &v, &n, &err), 0);
        assert_int_equal(n, 0);
        free(v);

        assert_int_equal(layer_get(f->ls, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                   &info, &err),
                         -SBX_E_NOT_FOUND);
        assert_string_equal(err.reason, "layer_not_found");
        sbx_err_clear(&err);
        assert_int_equal(
                layer_hold(f->ls, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", &err),
                -SBX_E_NOT_FOUND);
        assert_string_equal(err.reason, "layer_not_found");
        sbx_err_clear(&err);
        assert_int_equal(layer_get(f->ls, "nope", &info, &err), -SBX_E_NOT_FOUND);
        /* a path that is not one of our work dirs is refused, and discard ignores it */
        sbx_err_clear(&err);
        assert_int_equal(layer_commit(f->ls, f->dir, "x", &info, &err), -EINVAL);
        layer_discard(f->ls, f->dir);
        assert_true(exists(f->dir));
}

static void test_commit_tree(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX], p[PATH_MAX], hex_dir[PATH_MAX], digest[SBX_LAYER_DIGEST_MAX];
        struct layer_info info, got, *v = NULL;
        struct sbx_err err = {};
        struct tar_item items[32];
        struct membuf m;
        char v2[8];
        size_t n;

        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        build_tree(root);
        commit_ok(f, tmp, "unit test", &info);

        assert_true(layer_digest_valid(info.digest));
        join(hex_dir, sizeof hex_dir, f->store, info.digest + 7);
        join(p, sizeof p, hex_dir, "root");
        assert_string_equal(info.root, p);
        assert_false(exists(tmp));
        assert_int_equal(info.entries, 11);
        assert_true(info.tar_bytes > 0 && info.tar_bytes % 512 == 0);
        assert_true(info.size_bytes > 0);
        assert_string_equal(info.source, "unit test");
        assert_int_equal(strlen(info.created_at), 24);
        assert_int_equal(info.holds, 1);

        /* normalised: the socket is gone, overlay xattrs stripped except the opaque marker */
        join(p, sizeof p, info.root, "sock");
        assert_false(exists(p));
        join(p, sizeof p, info.root, "a.txt");
        assert_int_equal(getxattr(p, "user.overlay.origin", v2, sizeof v2), -1);
        assert_int_equal(errno, ENODATA);
        assert_int_equal(getxattr(p, "user.keep", v2, sizeof v2), 1);
        join(p, sizeof p, info.root, "d");
        assert_int_equal(getxattr(p, "trusted.overlay.redirect", v2, sizeof v2), -1);
        join(p, sizeof p, info.root, "link");
        assert_int_equal(lgetxattr(p, "trusted.overlay.origin", v2, sizeof v2), -1);
        assert_int_equal(errno, ENODATA);
        join(p, sizeof p, info.root, "o");
        assert_int_equal(getxattr(p, "user.overlay.opaque", v2, sizeof v2), 1);

        /* layer.json */
        join(p, sizeof p, hex_dir, "layer.json");
        json_error_t jerr;
        json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &jerr);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "digest")), info.digest);
        assert_int_equal(json_integer_value(json_object_get(j, "tarBytes")), info.tar_bytes);
        assert_int_equal(json_integer_value(json_object_get(j, "sizeBytes")), info.size_bytes);
        assert_int_equal(json_integer_value(json_object_get(j, "entries")), 11);
        assert_string_equal(json_string_value(json_object_get(j, "createdAt")), info.created_at);
        assert_string_equal(json_string_value(json_object_get(j, "source")), "unit test");
        json_decref(j);

        assert_int_equal(layer_get(f->ls, info.digest, &got, &err), 0);
        assert_memory_equal(&got, &info, sizeof got);
        assert_int_equal(layer_list(f->ls, &v, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_memory_equal(&v[0], &info, sizeof info);
        free(v);

        /* the canonical stream */
        write_tar(f, info.digest, &m);
        assert_int_equal(m.len, info.tar_bytes);
        sha256_hex(m.p, m.len, digest);
        assert_string_equal(digest, info.digest);
        n = tar_parse(&m, items, ELEMENTSOF(items));
        static const char *const names[] = { "a.txt",    "d/",   "d/f", "d/hl",           "etc", "fifo",
                                             ".wh.gone", "link", "o/",  "o/.wh..wh..opq", "o/x" };
        assert_int_equal(n, ELEMENTSOF(names));
        for (size_t i = 0; i < n; i++)
                assert_string_equal(items[i].path, names[i]);
        assert_int_equal(items[0].type, AE_IFREG);
        assert_int_equal(items[0].size, 6);
        assert_int_equal(items[0].perm, 0644);
        assert_int_equal(items[0].mtime, MTIME);
        assert_int_equal(items[1].type, AE_IFDIR);
        assert_int_equal(items[1].perm, 0750);
        assert_int_equal(items[1].mtime, MTIME + 100);
        assert_string_equal(items[3].hardlink, "a.txt");
        assert_int_equal(items[3].size, 0);
        assert_int_equal(items[4].type, AE_IFLNK);
        assert_string_equal(items[4].link, "/etc");
        assert_int_equal(items[5].type, AE_IFIFO);
        assert_int_equal(items[5].perm, 0640);
        for (size_t i = 6; i < 10; i += 3) { /* the whiteout and the opaque marker */
                assert_int_equal(items[i].type, AE_IFREG);
                assert_int_equal(items[i].perm, 0);
                assert_int_equal(items[i].size, 0);
                assert_int_equal(items[i].uid, 0);
                assert_int_equal(items[i].mtime, 0);
        }
        assert_int_equal(items[7].type, AE_IFLNK);
        assert_string_equal(items[7].link, "a.txt");
        free(m.p);

        /* the digest is the tar's: the same tree streamed again gives the same bytes */
        write_tar(f, info.digest, &m);
        sha256_hex(m.p, m.len, digest);
        assert_string_equal(digest, info.digest);
        free(m.p);
        layer_release(f->ls, info.digest);
        assert_int_equal(layer_get(f->ls, info.digest, &got, &err), 0);
        assert_int_equal(got.holds, 0);
}

static void test_deterministic(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX], tmp2[PATH_MAX], root2[PATH_MAX], p[PATH_MAX];
        struct layer_info a, b, c, d;
        struct sbx_err err = {};

        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        build_tree(root);
        commit_ok(f, tmp, "one", &a);

        /* the same tree again: the existing layer comes back (held twice), the work dir is removed */
        new_tmp(f, tmp2, sizeof tmp2, root2, sizeof root2);
        build_tree(root2);
        commit_ok(f, tmp2, "two", &b);
        assert_string_equal(a.digest, b.digest);
        assert_string_equal(b.source, "one");
        assert_int_equal(b.holds, 2);
        assert_false(exists(tmp2));

        /* a cp -a copy of the layer's tree */
        new_tmp(f, tmp2, sizeof tmp2, root2, sizeof root2);
        assert_int_equal(rmdir(root2), 0);
        assert_int_equal(run((const char *const[]){ "cp", "-a", a.root, root2, NULL }), 0);
        commit_ok(f, tmp2, "copy", &c);
        assert_string_equal(a.digest, c.digest);
        assert_int_equal(c.holds, 3);

        /* one mtime changed */
        new_tmp(f, tmp2, sizeof tmp2, root2, sizeof root2);
        assert_int_equal(rmdir(root2), 0);
        assert_int_equal(run((const char *const[]){ "cp", "-a", a.root, root2, NULL }), 0);
        set_mtime(root2, "d/f", MTIME + 1000);
        commit_ok(f, tmp2, "touched", &d);
        assert_string_not_equal(a.digest, d.digest);
        assert_int_equal(d.holds, 1);

        /* the digest does not depend on the caller's locale (non-ASCII and non-UTF-8 names) */
        char dg[2][SBX_LAYER_DIGEST_MAX];
        for (int i = 0; i < 2; i++) {
                assert_non_null(setlocale(LC_ALL, i == 0 ? "C" : "C.UTF-8"));
                new_tmp(f, tmp2, sizeof tmp2, root2, sizeof root2);
                put_file(root2, "caf\xc3\xa9", "utf8\n");
                put_file(root2, "bad\xff", "latin1\n");
                join(p, sizeof p, root2, "l\xc3\xa9");
                assert_int_equal(symlink("caf\xc3\xa9", p), 0);
                set_mtime(root2, "caf\xc3\xa9", MTIME);
                set_mtime(root2, "bad\xff", MTIME);
                set_mtime(root2, "l\xc3\xa9", MTIME);
                commit_ok(f, tmp2, "locale", &d);
                snprintf(dg[i], sizeof dg[i], "%s", d.digest);
                layer_release(f->ls, d.digest);
                assert_int_equal(layer_gc(f->ls, NULL, 0, NULL, &err) >= 1, 1);
        }
        assert_string_equal(dg[0], dg[1]);

        /* names that need pax headers read back unchanged */
        struct membuf m;
        struct tar_item items[8];
        new_tmp(f, tmp2, sizeof tmp2, root2, sizeof root2);
        put_file(root2, "caf\xc3\xa9", "utf8\n");
        char longname[201];
        memset(longname, 'n', 200);
        longname[200] = '\0';
        put_file(root2, longname, "long\n");
        commit_ok(f, tmp2, "names", &d);
        write_tar(f, d.digest, &m);
        assert_int_equal(tar_parse(&m, items, ELEMENTSOF(items)), 2);
        assert_string_equal(items[0].path, "caf\xc3\xa9");
        assert_int_equal(strlen(items[1].path), 200);
        free(m.p);
}

static void test_reject(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX], p[PATH_MAX];
        struct layer_info info;
        struct sbx_err err = {};

        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        put_file(root, "ok", "ok\n");
        put_file(root, "big-uid", "x\n");
        join(p, sizeof p, root, "big-uid");
        assert_int_equal(lchown(p, 70000, 0), 0);
        assert_int_equal(layer_commit(f->ls, tmp, "x", &info, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_layer");
        assert_non_null(strstr(err.msg, "big-uid"));
        assert_true(exists(tmp)); /* left for the caller */

        assert_int_equal(lchown(p, 0, 70000), 0);
        sbx_err_clear(&err);
        assert_int_equal(layer_commit(f->ls, tmp, "x", &info, &err), -SBX_E_INVALID);
        assert_int_equal(lchown(p, 65535, 65535), 0);

        /* a real file named like a whiteout would be read back as one */
        put_file(root, ".wh.x", "");
        sbx_err_clear(&err);
        assert_int_equal(layer_commit(f->ls, tmp, "x", &info, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_layer");
        join(p, sizeof p, root, ".wh.x");
        assert_int_equal(unlink(p), 0);

        sbx_err_clear(&err);
        assert_int_equal(layer_commit(f->ls, tmp, "x", &info, &err), 0);
        layer_release(f->ls, info.digest);

        layer_discard(f->ls, NULL);
        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        put_file(root, "f", "f\n");
        layer_discard(f->ls, tmp);
        assert_false(exists(tmp));
}

static void test_gc(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX];
        struct layer_info l[3], *v = NULL;
        struct sbx_err err = {};
        uint64_t freed = 0;
        size_t n;

        for (int i = 0; i < 3; i++) {
                char content[16];

                new_tmp(f, tmp, sizeof tmp, root, sizeof root);
                snprintf(content, sizeof content, "layer %d\n", i);
                put_file(root, "f", content);
                commit_ok(f, tmp, "gc", &l[i]);
        }
        /* l0 stays held, l1 is listed in keep[], l2 is neither */
        layer_release(f->ls, l[1].digest);
        layer_release(f->ls, l[2].digest);
        const char *keep[] = { l[1].digest };
        assert_int_equal(layer_gc(f->ls, keep, 1, &freed, &err), 1);
        assert_int_equal(freed, l[2].size_bytes);
        assert_int_equal(layer_get(f->ls, l[2].digest, &l[2], &err), -SBX_E_NOT_FOUND);
        assert_int_equal(layer_get(f->ls, l[0].digest, &l[0], &err), 0);
        assert_int_equal(layer_get(f->ls, l[1].digest, &l[1], &err), 0);

        /* a hold taken by layer_hold protects as well */
        assert_int_equal(layer_hold(f->ls, l[1].digest, &err), 0);
        layer_release(f->ls, l[0].digest);
        assert_int_equal(layer_gc(f->ls, NULL, 0, &freed, &err), 1);
        assert_int_equal(freed, l[0].size_bytes);
        layer_release(f->ls, l[1].digest);
        assert_int_equal(layer_gc(f->ls, NULL, 0, NULL, &err), 1);
        assert_int_equal(layer_list(f->ls, &v, &n, &err), 0);
        assert_int_equal(n, 0);
        free(v);

        /* nothing but the store's own dir is left: no tmp-gc-* */
        DIR *d = opendir(f->store);
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d)))
                assert_true(de->d_name[0] == '.');
        closedir(d);
}

static void test_leftovers(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX], p[PATH_MAX], half[PATH_MAX], gcd[PATH_MAX];
        struct layer_info info, *v = NULL;
        struct sbx_err err = {};
        size_t n;

        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        put_file(root, "kept", "kept\n");
        commit_ok(f, tmp, "x", &info);

        /* an interrupted commit, an interrupted gc, a layer dir without layer.json */
        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        join(p, sizeof p, root, "sub");
        assert_int_equal(mkdir(p, 0755), 0);
        put_file(p, "x", "x\n");
        join(p, sizeof p, root, "lnk");
        assert_int_equal(symlink(f->dir, p), 0); /* never followed by the remover */
        join(gcd, sizeof gcd, f->store, "tmp-gc-abcdef");
        assert_int_equal(mkdir(gcd, 0700), 0);
        put_file(gcd, "y", "y\n");
        assert_true((size_t)snprintf(half, sizeof half, "%s/%064x", f->store, 7) < sizeof half);
        assert_int_equal(mkdir(half, 0700), 0);
        join(p, sizeof p, half, "root");
        assert_int_equal(mkdir(p, 0755), 0);

        layer_store_free(f->ls);
        f->ls = NULL;
        assert_int_equal(layer_store_open(f->store, &f->ls, &err), 0);
        assert_false(exists(tmp));
        assert_false(exists(gcd));
        assert_false(exists(half));
        assert_true(exists(f->dir));
        assert_int_equal(layer_list(f->ls, &v, &n, &err), 0);
        assert_int_equal(n, 1);
        assert_string_equal(v[0].digest, info.digest);
        assert_int_equal(v[0].holds, 0); /* holds are in memory only */
        free(v);
}

static void test_tampered(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX], p[PATH_MAX];
        struct layer_info info;
        struct sbx_err err = {};
        struct membuf m = {};

        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        build_tree(root);
        commit_ok(f, tmp, "x", &info);

        /* the sink's error stops the stream and is returned */
        m.fail_at = 1;
        assert_int_equal(layer_write_tar(f->ls, info.digest, mem_write, &m, &err), -ENOSPC);
        assert_int_equal(m.calls, 1);
        free(m.p);

        join(p, sizeof p, info.root, "d/f");
        int fd = open(p, O_WRONLY | O_APPEND | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, "!", 1), 1);
        close(fd);
        memset(&m, 0, sizeof m);
        sbx_err_clear(&err);
        assert_int_equal(layer_write_tar(f->ls, info.digest, mem_write, &m, &err), -EIO);
        assert_string_equal(err.reason, "layer_corrupt");
        free(m.p);

        sbx_err_clear(&err);
        assert_int_equal(layer_write_tar(f->ls,
                                         "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                         mem_write, &m, &err),
                         -SBX_E_NOT_FOUND);
        layer_release(f->ls, info.digest);
}

/* n nested dirs "d" below root, a file at the bottom; returns an fd of the dir above the last one */
static int make_chain(const char *root, unsigned n)
{
        int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), nfd, above = -1;

        assert_true(fd >= 0);
        for (unsigned i = 0; i < n; i++) {
                assert_int_equal(mkdirat(fd, "d", 0755), 0);
                nfd = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(nfd >= 0);
                if (i == n - 1)
                        above = fd;
                else
                        close(fd);
                fd = nfd;
        }
        nfd = openat(fd, "bottom", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(nfd >= 0);
        close(nfd);
        close(fd);
        return above;
}

static void test_deep(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX];
        struct rlimit old, low;
        struct layer_info info;
        struct sbx_err err = {};
        int above;

        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        above = make_chain(root, 4097);

        /* a walk holds O(1) fds whatever the depth */
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
        low = old;
        low.rlim_cur = 64;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

        assert_int_equal(layer_commit(f->ls, tmp, "deep", &info, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_layer");
        assert_non_null(strstr(err.msg, "too deep"));

        assert_int_equal(unlinkat(above, "d/bottom", 0), 0);
        assert_int_equal(unlinkat(above, "d", AT_REMOVEDIR), 0);
        close(above);
        commit_ok(f, tmp, "deep", &info);
        assert_int_equal(info.entries, 4096);
        layer_release(f->ls, info.digest);
        /* the remover moves deep subtrees up to the store dir and gets them all */
        assert_int_equal(layer_gc(f->ls, NULL, 0, NULL, &err), 1);
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);

        DIR *d = opendir(f->store);
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d)))
                assert_true(de->d_name[0] == '.');
        closedir(d);
}

static void test_mount_inside(void **state)
{
        struct fixture *f = *state;
        char tmp[PATH_MAX], root[PATH_MAX], outside[PATH_MAX], p[PATH_MAX];
        struct layer_info info;
        struct sbx_err err = {};

        /* a bind mount of the same file system inside a work tree */
        join(outside, sizeof outside, f->dir, "outside");
        assert_int_equal(mkdir(outside, 0755), 0);
        put_file(outside, "precious", "keep me\n");
        new_tmp(f, tmp, sizeof tmp, root, sizeof root);
        join(p, sizeof p, root, "mnt");
        assert_int_equal(mkdir(p, 0755), 0);
        assert_int_equal(mount(outside, p, NULL, MS_BIND, NULL), 0);

        assert_int_equal(layer_commit(f->ls, tmp, "x", &info, &err), -SBX_E_INVALID);
        assert_non_null(strstr(err.msg, "another mount"));
        layer_discard(f->ls, tmp); /* never descends into it */
        join(p, sizeof p, outside, "precious");
        assert_true(exists(p));
        assert_true(exists(tmp));

        join(p, sizeof p, root, "mnt");
        assert_int_equal(umount2(p, MNT_DETACH), 0);
        layer_discard(f->ls, tmp);
        assert_false(exists(tmp));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_digest_valid),
                cmocka_unit_test_setup_teardown(test_open_empty, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit_tree, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reject, setup, teardown),
                cmocka_unit_test_setup_teardown(test_gc, setup, teardown),
                cmocka_unit_test_setup_teardown(test_leftovers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_tampered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deep, setup, teardown),
                cmocka_unit_test_setup_teardown(test_mount_inside, setup, teardown),
        };

        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 0;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
