// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for src/images/template.c: the host skeleton, lookups, leftover removal, stage
 * parsing, and the build machinery driven by a fake mmdebstrap script (fast). The real mmdebstrap
 * build (~20 s, needs the network or a mirror) runs only with SBX_TEST_SLOW=1. Builds need root
 * (the child runs under unshare --mount); those tests are skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/mount.h>
#include <sys/wait.h>

#include "images/template.c"

struct collect {
        unsigned n_progress;
        unsigned percents[64];
        char stages[64][64];
        uint64_t at_usec[64];
        unsigned n_done;
        int result;
        struct sbx_err err;
        bool monotonic;
};

static void collect_init(struct collect *c)
{
        memset(c, 0, sizeof *c);
        c->monotonic = true;
        c->result = 1;
}

static void on_progress(const char *name, unsigned percent, const char *stage, void *data)
{
        struct collect *c = data;

        assert_string_equal(name, "base");
        if (c->n_progress > 0 && percent < c->percents[c->n_progress - 1])
                c->monotonic = false;
        if (c->n_progress < ELEMENTSOF(c->percents)) {
                c->percents[c->n_progress] = percent;
                snprintf(c->stages[c->n_progress], sizeof c->stages[0], "%s", stage);
                c->at_usec[c->n_progress] = now_usec();
                c->n_progress++;
        }
}

static void on_done(const char *name, int result, const struct sbx_err *err, void *data)
{
        struct collect *c = data;

        c->n_done++;
        c->result = result;
        if (err)
                c->err = *err;
        if (result < 0)
                assert_non_null(err);
}

static bool collect_saw(const struct collect *c, const char *stage)
{
        for (unsigned i = 0; i < c->n_progress; i++)
                if (!strcmp(c->stages[i], stage))
                        return true;
        return false;
}

struct fixture {
        char dir[64]; /* scratch dir; templates live in dir/t */
        char tdir[96];
        uv_loop_t loop;
        struct template_store *ts;
        struct collect c[3]; /* here, not on a test's stack: a failed test's build still reports in teardown */
};

static int fixture_setup(void **state)
{
        struct fixture *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "/tmp/sbx-test-template-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->tdir, sizeof f->tdir, "%s/t", f->dir);
        assert_int_equal(uv_loop_init(&f->loop), 0);
        *state = f;
        return 0;
}

static int fixture_teardown(void **state)
{
        struct fixture *f = *state;

        template_store_free(f->ts);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        assert_int_equal(tree_remove_at(AT_FDCWD, f->dir, NULL, 0), 0);
        free(f);
        return 0;
}

static void store_open(struct fixture *f)
{
        struct sbx_err err = {};

        template_store_free(f->ts);
        f->ts = NULL;
        assert_int_equal(template_store_open(f->tdir, &f->loop, &f->ts, &err), 0);
}

static void path_in(const struct fixture *f, const char *rel, char *buf, size_t size)
{
        snprintf(buf, size, "%s/%s", f->tdir, rel);
}

static void assert_dir_mode(const struct fixture *f, const char *rel, mode_t mode)
{
        char p[PATH_MAX];
        struct stat st;

        path_in(f, rel, p, sizeof p);
        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, mode);
}

static void assert_symlink(const struct fixture *f, const char *rel, const char *target)
{
        char p[PATH_MAX], buf[PATH_MAX];
        ssize_t n;

        path_in(f, rel, p, sizeof p);
        n = readlink(p, buf, sizeof buf - 1);
        assert_true(n > 0);
        buf[n] = '\0';
        assert_string_equal(buf, target);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write_all(fd, text, strlen(text)), 0);
        assert_int_equal(close(fd), 0);
}

static bool exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

static unsigned count_tmp_dirs(const struct fixture *f)
{
        char p[PATH_MAX];
        struct dirent *de;
        unsigned n = 0;
        DIR *d;

        path_in(f, "base", p, sizeof p);
        d = opendir(p);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (!strncmp(de->d_name, "rootfs.tmp-", 11))
                        n++;
        closedir(d);
        return n;
}

/* ---- host template ---- */

static void check_host_layout(const struct fixture *f)
{
        static const char *const plain[] = { "proc", "dev", "sys", "home", "run", "var",
                                             "etc",  "usr", "mnt", "opt",  "srv" };

        assert_dir_mode(f, "host/rootfs", 0755);
        for (size_t i = 0; i < ELEMENTSOF(plain); i++) {
                char rel[64];

                snprintf(rel, sizeof rel, "host/rootfs/%s", plain[i]);
                assert_dir_mode(f, rel, 0755);
        }
        assert_dir_mode(f, "host/rootfs/tmp", 01777);
        assert_dir_mode(f, "host/rootfs/var/tmp", 01777);
        assert_dir_mode(f, "host/rootfs/root", 0700);
        assert_symlink(f, "host/rootfs/bin", "usr/bin");
        assert_symlink(f, "host/rootfs/sbin", "usr/sbin");
        assert_symlink(f, "host/rootfs/lib", "usr/lib");
        assert_symlink(f, "host/rootfs/lib64", "usr/lib64");

        char p[PATH_MAX];
        path_in(f, "host/rootfs/lib32", p, sizeof p);
        assert_int_equal(exists(p), access("/usr/lib32", F_OK) == 0);
        path_in(f, "host/rootfs/libx32", p, sizeof p);
        assert_int_equal(exists(p), access("/usr/libx32", F_OK) == 0);
}

static void test_host_skeleton(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];
        char p[PATH_MAX], expect[PATH_MAX];

        store_open(f);
        check_host_layout(f);

        assert_int_equal(template_lookup(f->ts, "host", &info, &err), 0);
        assert_string_equal(info.name, "host");
        snprintf(expect, sizeof expect, "%s/host/rootfs", f->tdir);
        assert_string_equal(info.rootfs, expect);
        assert_int_equal(info.n_binds, 2);
        assert_string_equal(info.binds[0].source, "/usr");
        assert_string_equal(info.binds[0].target, "/usr");
        assert_string_equal(info.binds[1].source, "/etc");
        assert_string_equal(info.binds[1].target, "/etc");

        /* idempotent, and repairs what was changed */
        store_open(f);
        check_host_layout(f);
        path_in(f, "host/rootfs/tmp", p, sizeof p);
        assert_int_equal(chmod(p, 0755), 0);
        path_in(f, "host/rootfs/srv", p, sizeof p);
        assert_int_equal(rmdir(p), 0);
        path_in(f, "host/rootfs/bin", p, sizeof p);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(symlink("elsewhere", p), 0);
        store_open(f);
        check_host_layout(f);

        /* a directory where a symlink belongs is an error, not silently deleted */
        assert_int_equal(unlink(p), 0);
        assert_int_equal(mkdir(p, 0755), 0);
        template_store_free(f->ts);
        f->ts = NULL;
        assert_int_equal(template_store_open(f->tdir, &f->loop, &f->ts, &err), -EEXIST);
        assert_non_null(strstr(err.msg, "'bin'"));
        assert_null(f->ts);
        assert_int_equal(rmdir(p), 0);
        store_open(f);

        /* host is always ready: build completes synchronously */
        collect_init(c);
        assert_int_equal(template_build(f->ts, "host", on_progress, on_done, c, &err), 0);
        assert_int_equal(c->n_done, 1);
        assert_int_equal(c->result, 0);
}

static void test_lookup_unknown(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];

        store_open(f);
        assert_true(template_known("host"));
        assert_true(template_known("base"));
        assert_false(template_known("ubuntu"));
        assert_false(template_known(NULL));
        assert_int_equal(template_lookup(f->ts, "ubuntu", &info, &err), -SBX_E_NOT_FOUND);
        assert_string_equal(err.reason, "template_not_found");
        assert_non_null(strstr(err.msg, "'ubuntu'"));

        collect_init(c);
        sbx_err_clear(&err);
        assert_int_equal(template_build(f->ts, "ubuntu", on_progress, on_done, c, &err), -SBX_E_NOT_FOUND);
        assert_int_equal(c->n_done, 0);
}

static void test_lookup_base_not_built(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};

        store_open(f);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_not_ready");
        assert_non_null(strstr(err.msg, "not built yet"));
}

static void test_leftovers_removed(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        char p[PATH_MAX], keep[PATH_MAX], mnt[PATH_MAX], inmnt[PATH_MAX + 16];
        bool mounted;

        store_open(f);
        /* a half-built tree with nested dirs, files, and symlinks pointing out of it */
        path_in(f, "base/rootfs.tmp-abc123/usr/share/deep/er", p, sizeof p);
        assert_int_equal(mkdir_parents(p, 0755), 0);
        path_in(f, "base/rootfs.tmp-abc123/usr/share/deep/er/file", p, sizeof p);
        write_file(p, "x", 0644);
        snprintf(keep, sizeof keep, "%s/keep", f->dir);
        write_file(keep, "precious", 0644);
        path_in(f, "base/rootfs.tmp-abc123/link-to-file", p, sizeof p);
        assert_int_equal(symlink(keep, p), 0);
        path_in(f, "base/rootfs.tmp-abc123/link-to-dir", p, sizeof p);
        assert_int_equal(symlink(f->dir, p), 0);
        path_in(f, "base/rootfs.tmp-abc123/usr/readonly", p, sizeof p);
        assert_int_equal(mkdir(p, 0555), 0);
        path_in(f, "base/template.json.tmp", p, sizeof p);
        write_file(p, "{", 0644);
        /* a second leftover with a mount inside (what a killed mmdebstrap outside a mount namespace
         * would leave): its contents must survive, the rest goes */
        path_in(f, "base/rootfs.tmp-def456/proc", mnt, sizeof mnt);
        assert_int_equal(mkdir_parents(mnt, 0755), 0);
        mounted = geteuid() == 0 && mount("none", mnt, "tmpfs", 0, "size=1m") == 0;
        snprintf(inmnt, sizeof inmnt, "%s/inside", mnt);
        if (mounted)
                write_file(inmnt, "do not delete", 0644);
        /* a finished rootfs is kept */
        path_in(f, "base/rootfs", p, sizeof p);
        assert_int_equal(mkdir(p, 0755), 0);

        store_open(f);
        path_in(f, "base/rootfs.tmp-abc123", p, sizeof p);
        assert_false(exists(p));
        path_in(f, "base/template.json.tmp", p, sizeof p);
        assert_false(exists(p));
        assert_true(exists(keep));
        assert_true(exists(f->dir));
        if (mounted) {
                assert_true(exists(inmnt));
                assert_int_equal(umount2(mnt, MNT_DETACH), 0);
                store_open(f);
        }
        path_in(f, "base/rootfs.tmp-def456", p, sizeof p);
        assert_false(exists(p));
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), 0);
        assert_int_equal(info.n_binds, 0);
}

static void test_stage_parse(void **state)
{
        static const char *const lines[] = {
                "I: chroot architecture amd64 is equal to the host's architecture",
                "I: finding correct signed-by value...",
                "I: automatically chosen format: directory",
                "I: running apt-get update...",
                "I: downloading packages with apt...",
                "I: extracting archives...",
                "I: installing essential packages...",
                "I: installing remaining packages inside the chroot...",
                "I: running --customize-hook in shell: sh -c 'rm -rf \"$1\"/var/lib/apt/lists/*' exec /x",
                "I: cleaning package lists and apt cache...",
                "I: success in 18.8146 seconds",
        };
        unsigned last = 0, percent, known = 0;
        const char *stage;

        for (size_t i = 0; i < ELEMENTSOF(lines); i++) {
                if (!build_stage_parse(lines[i], &percent, &stage))
                        continue;
                known++;
                assert_true(percent > last);
                assert_true(percent < 100);
                last = percent;
        }
        assert_int_equal(known, 9);
        assert_false(build_stage_parse("E: extracting archives", &percent, &stage));
        assert_false(build_stage_parse("Reading package lists...", &percent, &stage));
        assert_false(build_stage_parse("", &percent, &stage));
        assert_true(build_stage_parse("I: extracting archives...", &percent, &stage));
        assert_string_equal(stage, "extracting archives");
}

/* ---- builds with a fake mmdebstrap ---- */

/* The script gets mmdebstrap's arguments; the target dir is the one before last. */
#define FAKE_PROLOGUE                          \
        "#!/bin/sh\n"                          \
        "for a; do tgt=$prev; prev=$a; done\n" \
        "printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n"

static const char fake_success[] = FAKE_PROLOGUE
        "echo \"I: chroot architecture amd64 is equal to the host's architecture\" >&2\n"
        "echo 'I: running apt-get update...' >&2\n"
        "echo 'I: downloading packages with apt...' >&2\n"
        "sleep 0.2\n"
        "echo 'I: extracting archives...' >&2\n"
        "mkdir -p \"$tgt/usr/bin\" \"$tgt/etc\" \"$tgt/var/lib/dpkg\"\n"
        "echo hello > \"$tgt/usr/bin/hello\"\n"
        "printf 'Package: bash\\nStatus: install ok installed\\nVersion: 5.2.15-2+b7\\n\\n"
        "Package: gone\\nStatus: deinstall ok config-files\\nVersion: 1\\n\\n' > \"$tgt/var/lib/dpkg/status\"\n"
        "echo 'I: installing essential packages...' >&2\n"
        "echo 'Reading package lists...'\n"
        "echo 'I: installing remaining packages inside the chroot...' >&2\n"
        "echo 'I: cleaning package lists and apt cache...' >&2\n"
        "printf 'I: success in 0.2 seconds' >&2\n" /* no final newline */
        "exit 0\n";

static const char fake_failure[] = FAKE_PROLOGUE "echo 'I: running apt-get update...' >&2\n"
                                                 "echo 'I: installing remaining packages inside the chroot...' >&2\n"
                                                 "mkdir -p \"$tgt/usr/bin\"\n"
                                                 "head -c 600 /dev/zero | tr '\\0' 'x' >&2; echo >&2\n"
                                                 "printf 'bin\\001ary\\377\\n' >&2\n"
                                                 "echo 'E: Unable to locate package nonexistentpkgxyz' >&2\n"
                                                 "echo 'E: mmdebstrap failed to run' >&2\n"
                                                 "exit 25\n";

/* Ignores SIGTERM (so does its child), so only the SIGKILL escalation stops it. */
static const char fake_stubborn[] = FAKE_PROLOGUE "trap '' TERM\n"
                                                  "echo $$ > \"$(dirname \"$0\")/pid\"\n"
                                                  "mkdir -p \"$tgt/usr\"\n"
                                                  "sleep 60 & echo $! > \"$(dirname \"$0\")/childpid\"\n"
                                                  "echo 'I: extracting archives...' >&2\n"
                                                  "wait\n";

static const char fake_polite[] = FAKE_PROLOGUE "echo $$ > \"$(dirname \"$0\")/pid\"\n"
                                                "sleep 60 & echo $! > \"$(dirname \"$0\")/childpid\"\n"
                                                "echo 'I: extracting archives...' >&2\n"
                                                "wait\n";

static void use_fake(struct fixture *f, const char *script)
{
        snprintf(f->ts->builder, sizeof f->ts->builder, "%s/fake-mmdebstrap", f->dir);
        write_file(f->ts->builder, script, 0755);
}

static void run_until_done(struct fixture *f, const struct collect *c, unsigned n)
{
        while (c->n_done < n)
                assert_true(uv_run(&f->loop, UV_RUN_ONCE) != 0 || c->n_done >= n);
}

static void read_small(const char *path, char *buf, size_t size)
{
        assert_true(read_file_at(AT_FDCWD, path, buf, size) >= 0);
}

static void test_build_fake_success(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct collect *c1 = &f->c[0], *c2 = &f->c[1], *c3 = &f->c[2];
        char p[PATH_MAX], buf[4096];
        json_t *j, *pkgs;
        struct stat st;

        if (geteuid() != 0)
                skip();
        store_open(f);
        use_fake(f, fake_success);
        collect_init(c1);
        collect_init(c2);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c1, &err), 0);
        /* a second caller attaches to the same build */
        assert_int_equal(template_build(f->ts, "base", NULL, on_done, c2, &err), 0);
        assert_int_equal(count_tmp_dirs(f), 1);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_not_ready");
        assert_non_null(strstr(err.msg, "is being built"));

        run_until_done(f, c1, 1);
        run_until_done(f, c2, 1);
        assert_int_equal(c1->result, 0);
        assert_int_equal(c2->result, 0);
        assert_true(c1->monotonic);
        assert_true(collect_saw(c1, "extracting archives"));
        assert_true(collect_saw(c1, "installing remaining packages"));
        assert_true(collect_saw(c1, "finishing")); /* the unterminated last line counts too */
        assert_int_equal(c1->percents[c1->n_progress - 1], 100);
        assert_string_equal(c1->stages[c1->n_progress - 1], "ready");

        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), 0);
        snprintf(p, sizeof p, "%s/base/rootfs", f->tdir);
        assert_string_equal(info.rootfs, p);
        assert_int_equal(info.n_binds, 0);
        assert_int_equal(count_tmp_dirs(f), 0);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_dir_mode(f, "base/rootfs/root", 0700);
        path_in(f, "base/rootfs/usr/bin/hello", p, sizeof p);
        assert_true(exists(p));

        /* the arguments mmdebstrap got */
        snprintf(p, sizeof p, "%s/args", f->dir);
        read_small(p, buf, sizeof buf);
        assert_non_null(strstr(buf, "--variant=minbase\n"));
        assert_non_null(strstr(buf, "--include=bash,coreutils,ca-certificates\n"));
        assert_non_null(strstr(buf, "--mode=root\n"));
        assert_non_null(strstr(buf, "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/*\n"));
        assert_non_null(strstr(buf, "\nbookworm\n"));
        assert_non_null(strstr(buf, apt_sources_path()));

        /* template.json */
        path_in(f, "base/template.json", p, sizeof p);
        j = json_load_file(p, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "name")), "base");
        assert_non_null(json_string_value(json_object_get(j, "builtAt")));
        assert_true(json_integer_value(json_object_get(j, "sizeBytes")) > 0);
        pkgs = json_object_get(j, "packages");
        assert_int_equal(json_array_size(pkgs), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(pkgs, 0), "name")), "bash");
        assert_string_equal(json_string_value(json_object_get(json_array_get(pkgs, 0), "version")), "5.2.15-2+b7");
        json_decref(j);

        /* ready now: synchronous done, no new child */
        collect_init(c3);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c3, &err), 0);
        assert_int_equal(c3->n_done, 1);
        assert_int_equal(c3->result, 0);
        assert_int_equal(template_build_log(f->ts, "base", buf, sizeof buf) > 0, true);
        assert_non_null(strstr(buf, "I: success in 0.2 seconds\n"));
        assert_non_null(strstr(buf, "Reading package lists...\n")); /* stdout is captured too */
}

static void test_build_fake_failure(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];
        char buf[8192];

        if (geteuid() != 0)
                skip();
        store_open(f);
        use_fake(f, fake_failure);
        collect_init(c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), 0);
        run_until_done(f, c, 1);
        assert_int_equal(c->result, -SBX_E_INTERNAL);
        assert_int_equal(c->err.code, -SBX_E_INTERNAL);
        assert_string_equal(c->err.reason, "template_build_failed");
        assert_non_null(strstr(c->err.msg, "cannot build template 'base'"));
        assert_non_null(strstr(c->err.msg, "status 25"));
        assert_non_null(strstr(c->err.msg, "Unable to locate package nonexistentpkgxyz"));
        assert_non_null(strstr(c->err.msg, "E: mmdebstrap failed to run"));
        assert_false(collect_saw(c, "ready"));
        assert_true(c->monotonic);

        /* the failed tree is gone and lookups say why */
        while (uv_run(&f->loop, UV_RUN_NOWAIT))
                ;
        assert_int_equal(count_tmp_dirs(f), 0);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_non_null(strstr(err.msg, "last build failed"));

        /* the log: long lines cut, odd bytes replaced */
        assert_true(template_build_log(f->ts, "base", buf, sizeof buf) > 0);
        assert_non_null(strstr(buf, "bin?ary?\n"));
        assert_non_null(strstr(buf, "E: mmdebstrap failed to run\n"));
        for (char *line = buf, *nl; (nl = strchr(line, '\n')); line = nl + 1)
                assert_true((size_t)(nl - line) < BUILD_LINE_MAX);
        assert_int_equal(template_build_log(f->ts, "nope", buf, sizeof buf), -SBX_E_NOT_FOUND);

        /* a retry starts a new build */
        use_fake(f, fake_success);
        collect_init(c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), 0);
        run_until_done(f, c, 1);
        assert_int_equal(c->result, 0);
}

static void test_builder_missing(void **state)
{
        struct fixture *f = *state;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];

        store_open(f);
        snprintf(f->ts->builder, sizeof f->ts->builder, "%s/no-such-mmdebstrap", f->dir);
        collect_init(c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), -SBX_E_UNAVAILABLE);
        assert_non_null(strstr(err.msg, "mmdebstrap is not installed"));
        assert_non_null(strstr(err.msg, "'mmdebstrap'"));
        assert_int_equal(c->n_done, 0);
        assert_int_equal(count_tmp_dirs(f), 0);
}

static int read_pid(const struct fixture *f, const char *file)
{
        char p[PATH_MAX], buf[32];
        uint64_t v;

        snprintf(p, sizeof p, "%s/%s", f->dir, file);
        read_small(p, buf, sizeof buf);
        buf[strcspn(buf, "\n")] = '\0';
        assert_int_equal(parse_u64(buf, &v), 0);
        return (int)v;
}

/* Gone, or a zombie waiting for a reaper that is not us. */
static bool process_gone(int pid)
{
        char p[64], buf[512], *s;

        snprintf(p, sizeof p, "/proc/%d/stat", pid);
        if (read_file_at(AT_FDCWD, p, buf, sizeof buf) < 0)
                return true;
        s = strrchr(buf, ')');
        return s && s[1] == ' ' && s[2] == 'Z';
}

static void free_while_building(struct fixture *f, const char *script, uint64_t min_ms, uint64_t max_ms)
{
        struct sbx_err err = {};
        struct collect *c = &f->c[0];
        uint64_t t0;
        int pid, child;

        store_open(f);
        use_fake(f, script);
        collect_init(c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), 0);
        while (!collect_saw(c, "extracting archives"))
                assert_true(uv_run(&f->loop, UV_RUN_ONCE) != 0);
        pid = read_pid(f, "pid");
        child = read_pid(f, "childpid");
        assert_int_equal(count_tmp_dirs(f), 1);

        t0 = now_usec();
        template_store_free(f->ts);
        f->ts = NULL;
        assert_int_equal(c->n_done, 1); /* waiters hear before free returns */
        assert_int_equal(c->result, -ECANCELED);
        assert_non_null(strstr(c->err.msg, "closed while building"));
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* every handle closes */
        assert_true((now_usec() - t0) / 1000 >= min_ms);
        assert_true((now_usec() - t0) / 1000 <= max_ms);
        assert_int_equal(c->n_done, 1);
        assert_true(process_gone(pid));
        assert_true(kill(pid, 0) < 0 && errno == ESRCH); /* reaped by libuv */
        for (int i = 0; i < 100 && !process_gone(child); i++)
                usleep(10 * 1000);
        assert_true(process_gone(child));

        /* the tmp dir stays until the next open */
        assert_int_equal(count_tmp_dirs(f), 1);
        store_open(f);
        assert_int_equal(count_tmp_dirs(f), 0);
}

static void test_free_while_building(void **state)
{
        if (geteuid() != 0)
                skip();
        free_while_building(*state, fake_polite, 0, BUILD_KILL_GRACE_MS - 1000);
}

static void test_free_while_building_stubborn(void **state)
{
        if (geteuid() != 0)
                skip();
        free_while_building(*state, fake_stubborn, BUILD_KILL_GRACE_MS, BUILD_KILL_GRACE_MS + 3000);
}

/* A progress callback that frees the store mid-build: the build is stopped, every waiter hears once. */
static void on_progress_free_store(const char *name, unsigned percent, const char *stage, void *data)
{
        struct fixture *f = data;

        if (strcmp(stage, "extracting archives") != 0 || !f->ts)
                return;
        template_store_free(f->ts);
        f->ts = NULL;
}

static void on_done_count(const char *name, int result, const struct sbx_err *err, void *data)
{
        struct fixture *f = data;

        on_done(name, result, err, &f->c[0]);
}

/* A done callback that starts the next build right away. */
static void on_done_rebuild(const char *name, int result, const struct sbx_err *err, void *data)
{
        struct fixture *f = data;
        struct sbx_err e = {};

        on_done(name, result, err, &f->c[1]);
        use_fake(f, fake_success);
        assert_int_equal(template_build(f->ts, name, NULL, on_done, &f->c[2], &e), 0);
}

static void test_reentrant_callbacks(void **state)
{
        struct fixture *f = *state;
        struct sbx_err err = {};

        if (geteuid() != 0)
                skip();
        store_open(f);
        use_fake(f, fake_polite);
        collect_init(&f->c[0]);
        collect_init(&f->c[1]);
        assert_int_equal(template_build(f->ts, "base", on_progress_free_store, on_done_count, f, &err), 0);
        assert_int_equal(template_build(f->ts, "base", NULL, on_done, &f->c[1], &err), 0);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_null(f->ts);
        assert_int_equal(f->c[0].n_done, 1);
        assert_int_equal(f->c[0].result, -ECANCELED);
        assert_int_equal(f->c[1].n_done, 1);
        assert_int_equal(f->c[1].result, -ECANCELED);

        store_open(f);
        use_fake(f, fake_failure);
        collect_init(&f->c[1]);
        collect_init(&f->c[2]);
        assert_int_equal(template_build(f->ts, "base", NULL, on_done_rebuild, f, &err), 0);
        run_until_done(f, &f->c[2], 1);
        assert_int_equal(f->c[1].result, -SBX_E_INTERNAL);
        assert_int_equal(f->c[2].result, 0);
}

/* ---- the real thing (SBX_TEST_SLOW=1) ---- */

static void test_build_real(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];
        char p[PATH_MAX + 64];
        struct stat st;
        uint64_t t0;
        json_t *j;

        if (!getenv("SBX_TEST_SLOW") || strcmp(getenv("SBX_TEST_SLOW"), "1") != 0 || geteuid() != 0 ||
            access("/usr/bin/mmdebstrap", X_OK) != 0)
                skip();
        store_open(f);
        collect_init(c);
        t0 = now_usec();
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), 0);
        run_until_done(f, c, 1);
        if (c->result != 0)
                print_message("build failed: %s\n", c->err.msg);
        assert_int_equal(c->result, 0);
        assert_true(c->monotonic);
        print_message("real build: %.1f s\n", (double)(now_usec() - t0) / 1e6);
        for (unsigned i = 0; i < c->n_progress; i++)
                print_message("  %5.1f s %3u%% %s\n", (double)(c->at_usec[i] - t0) / 1e6, c->percents[i], c->stages[i]);

        assert_int_equal(template_lookup(f->ts, "base", &info, &err), 0);
        snprintf(p, sizeof p, "%s/bin/bash", info.rootfs);
        assert_int_equal(stat(p, &st), 0); /* through the relative bin -> usr/bin link */
        assert_true(S_ISREG(st.st_mode) && (st.st_mode & 0111));
        snprintf(p, sizeof p, "%s/usr/bin/env", info.rootfs);
        assert_int_equal(stat(p, &st), 0);
        snprintf(p, sizeof p, "%s/etc/ssl/certs/ca-certificates.crt", info.rootfs);
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 100000);
        assert_dir_mode(f, "base/rootfs/root", 0700);
        snprintf(p, sizeof p, "%s/var/lib/apt/lists", info.rootfs);
        assert_int_equal(stat(p, &st), 0); /* emptied by the hook, not removed */
        snprintf(p, sizeof p, "%s/usr/share/man", info.rootfs);
        assert_true(stat(p, &st) != 0 || st.st_nlink <= 2);

        path_in(f, "base/template.json", p, sizeof p);
        j = json_load_file(p, 0, NULL);
        assert_non_null(j);
        print_message("size %lld bytes, %zu packages\n", (long long)json_integer_value(json_object_get(j, "sizeBytes")),
                      json_array_size(json_object_get(j, "packages")));
        assert_true(json_array_size(json_object_get(j, "packages")) > 50);
        json_decref(j);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_host_skeleton, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_lookup_unknown, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_lookup_base_not_built, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_leftovers_removed, fixture_setup, fixture_teardown),
                cmocka_unit_test(test_stage_parse),
                cmocka_unit_test_setup_teardown(test_build_fake_success, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_build_fake_failure, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_builder_missing, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_free_while_building, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_free_while_building_stubborn, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_reentrant_callbacks, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_build_real, fixture_setup, fixture_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
