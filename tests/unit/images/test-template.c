// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests for the template store (src/images/template.c, template-debian.c): the host skeleton,
 * lookups, manifests over the layer store (publish, aliases and tags, remove, referenced layers,
 * lower paths), leftover removal, stage parsing, and the Debian layer build machinery driven by a
 * fake mmdebstrap script (fast): build cache, shared builds, failures, stopping. The real
 * mmdebstrap build (~20 s, needs the network or a mirror) runs only with SBX_TEST_SLOW=1. Builds
 * and layers need root (the child runs under unshare --mount; layer trees are owned by 0:0);
 * those tests are skipped otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sys/mount.h>
#include <sys/wait.h>

/* Both files of the template store, to reach their static functions. */
#include "images/template.c"
#include "images/template-debian.c"

#define BASE_PACKAGES "bash,ca-certificates,coreutils" /* base's include list, normalised */

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

static void collect_progress(struct collect *c, unsigned percent, const char *stage)
{
        if (c->n_progress > 0 && percent < c->percents[c->n_progress - 1])
                c->monotonic = false;
        if (c->n_progress < ELEMENTSOF(c->percents)) {
                c->percents[c->n_progress] = percent;
                snprintf(c->stages[c->n_progress], sizeof c->stages[0], "%s", stage);
                c->at_usec[c->n_progress] = now_usec();
                c->n_progress++;
        }
}

static void on_progress(const char *name, unsigned percent, const char *stage, void *data)
{
        assert_string_equal(name, "base");
        collect_progress(data, percent, stage);
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

/* What template_debian_layer reports. */
struct lcollect {
        struct collect c;
        char digest[SBX_LAYER_DIGEST_MAX];
};

static void on_layer_progress(const char *label, unsigned percent, const char *stage, void *data)
{
        struct lcollect *lc = data;

        assert_non_null(strstr(label, "bookworm minbase"));
        collect_progress(&lc->c, percent, stage);
}

static void on_layer_done(int result, const char *digest, const struct sbx_err *err, void *data)
{
        struct lcollect *lc = data;

        lc->c.n_done++;
        lc->c.result = result;
        if (err)
                lc->c.err = *err;
        if (result < 0) {
                assert_non_null(err);
                assert_null(digest);
                return;
        }
        assert_non_null(digest);
        assert_true(layer_digest_valid(digest));
        snprintf(lc->digest, sizeof lc->digest, "%s", digest);
}

struct fixture {
        char dir[64]; /* scratch dir; templates live in dir/t */
        char tdir[96];
        uv_loop_t loop;
        struct template_store *ts;
        struct collect c[3]; /* here, not on a test's stack: a failed test's build still reports in teardown */
        struct lcollect lc[2];
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

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        if (type == FTW_DP)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

static bool exists(const char *path)
{
        struct stat st;

        return lstat(path, &st) == 0;
}

static int fixture_teardown(void **state)
{
        struct fixture *f = *state;

        template_store_free(f->ts);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(uv_loop_close(&f->loop), 0);
        assert_int_equal(nftw(f->dir, rm_one, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT), 0);
        assert_false(exists(f->dir));
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

static void assert_path_mode(const char *p, mode_t mode)
{
        struct stat st;

        assert_int_equal(lstat(p, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, mode);
}

static void assert_dir_mode(const struct fixture *f, const char *rel, mode_t mode)
{
        char p[PATH_MAX];

        path_in(f, rel, p, sizeof p);
        assert_path_mode(p, mode);
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

static void read_small(const char *path, char *buf, size_t size)
{
        assert_true(read_file_at(AT_FDCWD, path, buf, size) >= 0);
}

/* Layer work dirs (layers/tmp-*) there are now. */
static unsigned count_tmp_dirs(const struct fixture *f)
{
        char p[PATH_MAX];
        struct dirent *de;
        unsigned n = 0;
        DIR *d;

        path_in(f, "layers", p, sizeof p);
        d = opendir(p);
        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (!strncmp(de->d_name, "tmp-", 4))
                        n++;
        closedir(d);
        return n;
}

/* Layers in the store now. */
static size_t count_layers(const struct fixture *f)
{
        struct layer_info *list = NULL;
        struct sbx_err err = {};
        size_t n = 0;

        assert_int_equal(layer_list(template_store_layers(f->ts), &list, &n, &err), 0);
        free(list);
        return n;
}

static void layer_of(const struct fixture *f, const char *digest, struct layer_info *ret)
{
        struct sbx_err err = {};

        assert_int_equal(layer_get(template_store_layers(f->ts), digest, ret, &err), 0);
}

/* Commit a one-file layer ("file" holding content) into the store; no hold is left on it. */
static void make_layer(const struct fixture *f, const char *content, char digest[SBX_LAYER_DIGEST_MAX])
{
        struct layer_store *ls = template_store_layers(f->ts);
        char tmp[PATH_MAX], p[PATH_MAX + 16];
        struct layer_info info;
        struct sbx_err err = {};

        assert_int_equal(layer_tmp_new(ls, tmp, sizeof tmp, &err), 0);
        snprintf(p, sizeof p, "%s/root/file", tmp);
        write_file(p, content, 0644);
        assert_int_equal(layer_commit(ls, tmp, "test", &info, &err), 0);
        layer_release(ls, info.digest);
        snprintf(digest, SBX_LAYER_DIGEST_MAX, "%s", info.digest);
}

/* template_publish without config or extra keys. */
static int publish(const struct fixture *f, const char *name, char (*layers)[SBX_LAYER_DIGEST_MAX], size_t n,
                   struct sbx_err *err)
{
        return template_publish(f->ts, name, (const char(*)[SBX_LAYER_DIGEST_MAX])layers, n, NULL, NULL, err);
}

static const struct template_status *status_of(const struct template_status *list, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (!strcmp(list[i].name, name))
                        return &list[i];
        return NULL;
}

/* The status of name now (a copy). */
static struct template_status status_now(const struct fixture *f, const char *name)
{
        static struct template_status list[SBX_MAX_TEMPLATES];
        const struct template_status *st;
        size_t n = 0;

        assert_int_equal(template_status_list(f->ts, list, ELEMENTSOF(list), &n), 0);
        st = status_of(list, n, name);
        if (!st) {
                fail_msg("'%s' is not in the status list", name);
                return (struct template_status){};
        }
        return *st;
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
        char p[PATH_MAX], expect[PATH_MAX], **paths = NULL;
        size_t n_paths = 0;

        store_open(f);
        check_host_layout(f);
        assert_dir_mode(f, "templates", 0755);
        assert_dir_mode(f, "cache", 0755);
        path_in(f, "layers", p, sizeof p);
        assert_true(exists(p));

        assert_int_equal(template_lookup(f->ts, "host", &info, &err), 0);
        assert_string_equal(info.name, "host");
        assert_int_equal(info.n_layers, 0);
        snprintf(expect, sizeof expect, "%s/host/rootfs", f->tdir);
        assert_string_equal(info.rootfs, expect);
        assert_int_equal(info.n_binds, 2);
        assert_string_equal(info.binds[0].source, "/usr");
        assert_string_equal(info.binds[0].target, "/usr");
        assert_string_equal(info.binds[1].source, "/etc");
        assert_string_equal(info.binds[1].target, "/etc");

        /* its one lower layer is the skeleton */
        assert_int_equal(template_lower_paths(f->ts, &info, &paths, &n_paths), 0);
        assert_int_equal(n_paths, 1);
        assert_string_equal(paths[0], expect);
        free(paths);
        assert_int_equal(status_now(f, "host").state, TEMPLATE_AVAILABLE);

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

        /* host is always ready: build completes synchronously; it cannot be removed */
        collect_init(c);
        assert_int_equal(template_build(f->ts, "host", on_progress, on_done, c, &err), 0);
        assert_int_equal(c->n_done, 1);
        assert_int_equal(c->result, 0);
        sbx_err_clear(&err);
        assert_int_equal(template_remove(f->ts, "host", &err), -SBX_E_CONFLICT);
        assert_int_equal(template_lookup(f->ts, "host", &info, &err), 0);
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
        assert_true(template_known("python:3"));
        assert_false(template_known("ubuntu"));
        assert_false(template_known(NULL));
        assert_string_equal(template_canonical_name("debian:12"), "base");
        assert_string_equal(template_canonical_name("node"), "node");
        assert_null(template_canonical_name("ubuntu"));
        assert_int_equal(template_lookup(f->ts, "ubuntu", &info, &err), -SBX_E_NOT_FOUND);
        assert_string_equal(err.reason, "template_not_found");
        assert_non_null(strstr(err.msg, "'ubuntu'"));
        assert_non_null(strstr(err.msg, "available: host, base, python, node, full"));

        collect_init(c);
        sbx_err_clear(&err);
        assert_int_equal(template_build(f->ts, "ubuntu", on_progress, on_done, c, &err), -SBX_E_NOT_FOUND);
        assert_string_equal(err.reason, "template_not_found");
        assert_int_equal(c->n_done, 0);

        sbx_err_clear(&err);
        assert_null(template_manifest(f->ts, "ubuntu", &err));
        assert_int_equal(err.code, -SBX_E_NOT_FOUND);
        sbx_err_clear(&err);
        assert_int_equal(template_remove(f->ts, "ubuntu", &err), -SBX_E_NOT_FOUND);
        assert_int_equal(template_build_log(f->ts, "ubuntu", (char[8]){ 0 }, 8), -SBX_E_NOT_FOUND);
}

static void test_lookup_base_not_built(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct template_status st;

        store_open(f);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_not_ready");
        assert_non_null(strstr(err.msg, "not built yet"));
        assert_non_null(strstr(err.msg, "'base'"));
        /* an alias means the same template */
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "debian:12", &info, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_not_ready");
        assert_non_null(strstr(err.msg, "'base'"));

        st = status_now(f, "base");
        assert_int_equal(st.state, TEMPLATE_NOT_BUILT);
        assert_true(st.catalog);
        assert_string_equal(st.source, "catalog");
        assert_string_equal(st.packages, "bash,coreutils,ca-certificates");
        assert_string_equal(template_state_to_string(st.state), "not_built");
        /* not in the catalog's manifests either: nothing is referenced */
        sbx_err_clear(&err);
        assert_null(template_manifest(f->ts, "base", &err));
}

static void test_leftovers_removed(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        char p[PATH_MAX], keep[PATH_MAX], mnt[PATH_MAX], inmnt[PATH_MAX + 16], digest[SBX_LAYER_DIGEST_MAX];
        char layer[1][SBX_LAYER_DIGEST_MAX];
        bool mounted;

        if (geteuid() != 0)
                skip();
        store_open(f);
        /* a finished layer and a template using it are kept */
        make_layer(f, "kept", digest);
        snprintf(layer[0], sizeof layer[0], "%s", digest);
        assert_int_equal(publish(f, "base", layer, 1, &err), 0);

        /* a half-built tree with nested dirs, files, and symlinks pointing out of it */
        path_in(f, "layers/tmp-abc123/root/usr/share/deep/er", p, sizeof p);
        assert_int_equal(mkdir_p(p, 0755, 0755), 0);
        path_in(f, "layers/tmp-abc123/root/usr/share/deep/er/file", p, sizeof p);
        write_file(p, "x", 0644);
        snprintf(keep, sizeof keep, "%s/keep", f->dir);
        write_file(keep, "precious", 0644);
        path_in(f, "layers/tmp-abc123/root/link-to-file", p, sizeof p);
        assert_int_equal(symlink(keep, p), 0);
        path_in(f, "layers/tmp-abc123/root/link-to-dir", p, sizeof p);
        assert_int_equal(symlink(f->dir, p), 0);
        path_in(f, "layers/tmp-abc123/root/usr/readonly", p, sizeof p);
        assert_int_equal(mkdir(p, 0555), 0);
        /* a second leftover with a mount inside (what a killed mmdebstrap outside a mount namespace
         * would leave): its contents must survive, the rest goes */
        path_in(f, "layers/tmp-def456/root/proc", mnt, sizeof mnt);
        assert_int_equal(mkdir_p(mnt, 0755, 0755), 0);
        mounted = mount("none", mnt, "tmpfs", 0, "size=1m") == 0;
        snprintf(inmnt, sizeof inmnt, "%s/inside", mnt);
        if (mounted)
                write_file(inmnt, "do not delete", 0644);
        assert_int_equal(count_tmp_dirs(f), 2);

        store_open(f);
        path_in(f, "layers/tmp-abc123", p, sizeof p);
        assert_false(exists(p));
        assert_true(exists(keep));
        assert_true(exists(f->dir));
        if (mounted) {
                assert_true(exists(inmnt));
                assert_int_equal(umount2(mnt, MNT_DETACH), 0);
                store_open(f);
        }
        path_in(f, "layers/tmp-def456", p, sizeof p);
        assert_false(exists(p));
        assert_int_equal(count_tmp_dirs(f), 0);

        assert_int_equal(template_lookup(f->ts, "base", &info, &err), 0);
        assert_int_equal(info.n_binds, 0);
        assert_int_equal(info.n_layers, 1);
        assert_string_equal(info.layers[0], digest);
        assert_int_equal(count_layers(f), 1);
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
        char norm[DEBIAN_PACKAGES_MAX];
        struct sbx_err err = {};

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

        /* the cache key's package list: sorted, without duplicates, names checked */
        assert_int_equal(packages_normalise("coreutils,bash,ca-certificates,bash", norm, sizeof norm, &err), 0);
        assert_string_equal(norm, BASE_PACKAGES);
        assert_int_equal(packages_normalise("", norm, sizeof norm, &err), 0);
        assert_string_equal(norm, "");
        assert_int_equal(packages_normalise("g++,libstdc++6", norm, sizeof norm, &err), 0);
        assert_string_equal(norm, "g++,libstdc++6");
        assert_int_equal(packages_normalise("bash,Bash", norm, sizeof norm, &err), -SBX_E_INVALID);
        assert_non_null(strstr(err.msg, "'Bash'"));
        assert_int_equal(packages_normalise("bash,x", norm, sizeof norm, &err), -SBX_E_INVALID);
        assert_int_equal(packages_normalise("bash;rm -rf /", norm, sizeof norm, &err), -SBX_E_INVALID);
}

/* ---- manifests ---- */

static void test_name_valid(void **state)
{
        static const char *const valid[] = { "myapp", "my-app.v2:1.0", "a:Latest", "0", "a_b", "x:latest",
                                             "python:3.11-slim" };
        static const char *const invalid[] = { "", "Host", "host", "-x", "a/b", "a:", "a:.x", "a:-x", ".a", "a b",
                                               "a:b:c", "a:b/c", "../x", "MyApp" };
        char name[SBX_MAX_TEMPLATE_NAME + 2];

        for (size_t i = 0; i < ELEMENTSOF(valid); i++)
                if (!template_name_valid(valid[i]))
                        fail_msg("'%s' should be valid", valid[i]);
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                if (template_name_valid(invalid[i]))
                        fail_msg("'%s' should be invalid", invalid[i]);
        assert_false(template_name_valid(NULL));
        memset(name, 'a', SBX_MAX_TEMPLATE_NAME + 1);
        name[SBX_MAX_TEMPLATE_NAME + 1] = '\0';
        assert_int_equal(strlen(name), 65);
        assert_false(template_name_valid(name));
        name[SBX_MAX_TEMPLATE_NAME] = '\0';
        assert_true(template_name_valid(name));
}

static void test_publish(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct template_status st;
        struct layer_info li;
        struct sbx_err err = {};
        char l[3][SBX_LAYER_DIGEST_MAX], two[2][SBX_LAYER_DIGEST_MAX], p[PATH_MAX], buf[64], **paths = NULL;
        char (*refs)[SBX_LAYER_DIGEST_MAX] = NULL;
        const char *missing = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        size_t n = 0;
        json_t *config, *extra, *m;

        if (geteuid() != 0)
                skip();
        store_open(f);
        make_layer(f, "one", l[0]);
        make_layer(f, "two", l[1]);
        make_layer(f, "three", l[2]);

        /* refused: bad names, no layers, layers that are not in the store */
        assert_int_equal(publish(f, "Bad", l, 1, &err), -SBX_E_INVALID);
        assert_string_equal(err.reason, "invalid_value");
        sbx_err_clear(&err);
        assert_int_equal(publish(f, "host", l, 1, &err), -SBX_E_INVALID);
        sbx_err_clear(&err);
        assert_int_equal(publish(f, "myapp", l, 0, &err), -SBX_E_INVALID);
        snprintf(two[0], sizeof two[0], "%s", l[0]);
        snprintf(two[1], sizeof two[1], "%s", missing);
        sbx_err_clear(&err);
        assert_int_equal(publish(f, "myapp", two, 2, &err), -SBX_E_NOT_FOUND);
        path_in(f, "templates/myapp.json", p, sizeof p);
        assert_false(exists(p));

        /* myapp = [one, two] with a config and extra keys */
        config = json_pack("{s:[s], s:s}", "env", "A=1", "workdir", "/app");
        extra = json_pack("{s:s, s:s}", "description", "my app", "source", "spec");
        assert_non_null(config);
        assert_non_null(extra);
        sbx_err_clear(&err);
        assert_int_equal(
                template_publish(f->ts, "myapp", (const char(*)[SBX_LAYER_DIGEST_MAX])l, 2, config, extra, &err), 0);
        assert_true(exists(p));
        path_in(f, "templates/myapp.json.tmp", p, sizeof p);
        assert_false(exists(p));
        m = template_manifest(f->ts, "myapp", &err);
        assert_non_null(m);
        assert_string_equal(json_string_value(json_object_get(m, "name")), "myapp");
        assert_int_equal(json_array_size(json_object_get(m, "layers")), 2);
        assert_string_equal(json_string_value(json_array_get(json_object_get(m, "layers"), 0)), l[0]);
        assert_string_equal(json_string_value(json_array_get(json_object_get(m, "layers"), 1)), l[1]);
        assert_true(json_equal(json_object_get(m, "config"), config));
        assert_string_equal(json_string_value(json_object_get(m, "description")), "my app");
        assert_non_null(json_string_value(json_object_get(m, "createdAt")));
        assert_true(json_integer_value(json_object_get(m, "sizeBytes")) > 0);
        json_decref(m);
        json_decref(config);
        json_decref(extra);

        /* lookup: layers bottom first; lower paths topmost first */
        assert_int_equal(template_lookup(f->ts, "myapp", &info, &err), 0);
        assert_string_equal(info.name, "myapp");
        assert_int_equal(info.n_layers, 2);
        assert_string_equal(info.layers[0], l[0]);
        assert_string_equal(info.layers[1], l[1]);
        assert_int_equal(info.n_binds, 0);
        assert_string_equal(info.rootfs, "");
        assert_int_equal(template_lower_paths(f->ts, &info, &paths, &n), 0);
        assert_int_equal(n, 2);
        layer_of(f, l[1], &li);
        assert_string_equal(paths[0], li.root);
        layer_of(f, l[0], &li);
        assert_string_equal(paths[1], li.root);
        snprintf(p, sizeof p, "%s/file", paths[0]);
        read_small(p, buf, sizeof buf);
        assert_string_equal(buf, "two");
        free(paths);

        /* manifests are cached by inode: a republish, and a manifest replaced behind the store's
         * back (another daemon, an admin), are both seen by the next lookup */
        assert_int_equal(publish(f, "myapp", &l[2], 1, &err), 0);
        assert_int_equal(template_lookup(f->ts, "myapp", &info, &err), 0);
        assert_int_equal(info.n_layers, 1);
        assert_string_equal(info.layers[0], l[2]);
        {
                char text[512];
                int fd;

                snprintf(text, sizeof text,
                         "{\"name\":\"myapp\",\"layers\":[\"%s\",\"%s\"],\"source\":\"spec\",\"sizeBytes\":4096,"
                         "\"createdAt\":\"2026-01-01T00:00:00.000Z\"}",
                         l[0], l[1]);
                path_in(f, "templates/myapp.json.new", p, sizeof p);
                fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                assert_true(fd >= 0);
                assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
                close(fd);
                {
                        char to[PATH_MAX];
                        path_in(f, "templates/myapp.json", to, sizeof to);
                        assert_int_equal(rename(p, to), 0);
                }
        }
        assert_int_equal(template_lookup(f->ts, "myapp", &info, &err), 0);
        assert_int_equal(info.n_layers, 2);
        assert_string_equal(info.layers[1], l[1]);

        /* "x" and "x:latest" are the same template */
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "myapp:latest", &info, &err), 0);
        assert_string_equal(info.name, "myapp");
        assert_int_equal(publish(f, "tool:latest", &l[2], 1, &err), 0);
        assert_int_equal(template_lookup(f->ts, "tool", &info, &err), 0);
        assert_string_equal(info.name, "tool:latest");
        assert_int_equal(info.n_layers, 1);
        assert_string_equal(info.layers[0], l[2]);
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "tool:1.0", &info, &err), -SBX_E_NOT_FOUND);

        /* the 404 lists what was published */
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "nope", &info, &err), -SBX_E_NOT_FOUND);
        assert_non_null(strstr(err.msg, "available: host, base, python, node, full, myapp, tool:latest"));

        /* status: published templates after the catalog */
        st = status_now(f, "myapp");
        assert_int_equal(st.state, TEMPLATE_AVAILABLE);
        assert_false(st.catalog);
        assert_string_equal(st.source, "spec");
        assert_int_equal(st.n_layers, 2);
        assert_true(st.size_bytes > 0);
        assert_true(st.built_at[0] != '\0');
        assert_int_equal(status_now(f, "tool:latest").state, TEMPLATE_AVAILABLE);

        /* a catalog name can be published (a catalog build does) */
        assert_int_equal(publish(f, "base", &l[1], 2, &err), 0);
        assert_int_equal(template_lookup(f->ts, "debian", &info, &err), 0);
        assert_string_equal(info.name, "base");
        assert_int_equal(info.n_layers, 2);

        /* referenced layers: each once */
        assert_int_equal(template_referenced_layers(f->ts, &refs, &n, &err), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < 3; i++) {
                bool found = false;

                for (size_t k = 0; k < n; k++)
                        found = found || !strcmp(refs[k], l[i]);
                assert_true(found);
        }
        free(refs);

        /* replace: myapp = [three] */
        assert_int_equal(publish(f, "myapp", &l[2], 1, &err), 0);
        assert_int_equal(template_lookup(f->ts, "myapp", &info, &err), 0);
        assert_int_equal(info.n_layers, 1);
        assert_string_equal(info.layers[0], l[2]);

        /* remove: the manifest goes, the layers stay (gc's business) */
        assert_int_equal(template_remove(f->ts, "myapp:latest", &err), 0);
        path_in(f, "templates/myapp.json", p, sizeof p);
        assert_false(exists(p));
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "myapp", &info, &err), -SBX_E_NOT_FOUND);
        sbx_err_clear(&err);
        assert_int_equal(template_remove(f->ts, "myapp", &err), -SBX_E_NOT_FOUND);
        assert_int_equal(template_remove(f->ts, "tool", &err), 0);
        assert_int_equal(template_remove(f->ts, "base", &err), 0);
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE); /* unpublished only */
        assert_string_equal(err.reason, "template_not_ready");
        assert_int_equal(template_referenced_layers(f->ts, &refs, &n, &err), 0);
        assert_int_equal(n, 0);
        free(refs);
        assert_int_equal(count_layers(f), 3);

        /* a damaged manifest is an error, not a crash */
        path_in(f, "templates/broken.json", p, sizeof p);
        write_file(p, "{\"name\":\"broken\",\"layers\":[\"sha256:xyz\"]}", 0644);
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "broken", &info, &err), -SBX_E_INTERNAL);
        path_in(f, "templates/empty.json", p, sizeof p);
        write_file(p, "{\"name\":\"empty\",\"layers\":[]}", 0644);
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "empty", &info, &err), -SBX_E_INTERNAL);
        path_in(f, "templates/junk.json", p, sizeof p);
        write_file(p, "not json", 0644);
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "junk", &info, &err), -SBX_E_NOT_FOUND);
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

/* The build cache's entry for (bookworm, minbase, packages). */
static void cache_path(const struct fixture *f, const char *packages, char *buf, size_t size)
{
        char key[256], hex[65];

        snprintf(key, sizeof key, "bookworm\nminbase\n%s", packages);
        sha256_hex(key, hex);
        snprintf(buf, size, "%s/cache/debian-%s", f->tdir, hex);
}

static void test_build_fake_success(void **state)
{
        struct fixture *f = *state;
        struct template_info info, info2;
        struct template_status st;
        struct layer_info li;
        struct sbx_err err = {};
        struct collect *c1 = &f->c[0], *c2 = &f->c[1], *c3 = &f->c[2];
        struct lcollect *lc = &f->lc[0];
        char p[PATH_MAX + 32], buf[4096], **paths = NULL;
        size_t n_paths = 0;
        json_t *j, *pkgs;

        if (geteuid() != 0)
                skip();
        store_open(f);
        use_fake(f, fake_success);
        collect_init(c1);
        collect_init(c2);
        collect_init(&lc->c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c1, &err), 0);
        /* a second caller attaches to the same build, and so does a layer request with the same
         * packages in another order */
        assert_int_equal(template_build(f->ts, "debian:12", NULL, on_done, c2, &err), 0);
        assert_int_equal(template_debian_layer(f->ts, "bookworm", "minbase", "coreutils,bash,ca-certificates",
                                               on_layer_progress, on_layer_done, lc, &err),
                         0);
        assert_int_equal(count_tmp_dirs(f), 1);
        assert_int_equal(c1->n_done + c2->n_done + lc->c.n_done, 0);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_not_ready");
        assert_non_null(strstr(err.msg, "is being built"));
        assert_int_equal(status_now(f, "base").state, TEMPLATE_BUILDING);

        run_until_done(f, c1, 1);
        run_until_done(f, c2, 1);
        run_until_done(f, &lc->c, 1);
        assert_int_equal(c1->result, 0);
        assert_int_equal(c2->result, 0);
        assert_int_equal(lc->c.result, 0);
        assert_true(c1->monotonic);
        assert_true(collect_saw(c1, "extracting archives"));
        assert_true(collect_saw(c1, "installing remaining packages"));
        assert_true(collect_saw(c1, "finishing")); /* the unterminated last line counts too */
        assert_int_equal(c1->percents[c1->n_progress - 1], 100);
        assert_string_equal(c1->stages[c1->n_progress - 1], "ready");
        assert_true(lc->c.monotonic);
        assert_true(collect_saw(&lc->c, "extracting archives"));

        /* one layer, holding the tree the builder wrote */
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), 0);
        assert_string_equal(info.name, "base");
        assert_int_equal(info.n_layers, 1);
        assert_int_equal(info.n_binds, 0);
        assert_string_equal(info.layers[0], lc->digest);
        assert_int_equal(count_tmp_dirs(f), 0);
        assert_int_equal(count_layers(f), 1);
        layer_of(f, info.layers[0], &li);
        assert_int_equal(li.holds, 1); /* the layer request's; the catalog build released its own */
        layer_release(template_store_layers(f->ts), lc->digest);
        layer_of(f, info.layers[0], &li);
        assert_int_equal(li.holds, 0);
        assert_non_null(strstr(li.source, "mmdebstrap bookworm minbase"));
        assert_path_mode(li.root, 0755);
        snprintf(p, sizeof p, "%s/root", li.root);
        assert_path_mode(p, 0700);
        snprintf(p, sizeof p, "%s/usr/bin/hello", li.root);
        read_small(p, buf, sizeof buf);
        assert_string_equal(buf, "hello\n");
        assert_int_equal(template_lower_paths(f->ts, &info, &paths, &n_paths), 0);
        assert_int_equal(n_paths, 1);
        assert_string_equal(paths[0], li.root);
        free(paths);

        /* the arguments mmdebstrap got */
        snprintf(p, sizeof p, "%s/args", f->dir);
        read_small(p, buf, sizeof buf);
        assert_non_null(strstr(buf, "--variant=minbase\n"));
        assert_non_null(strstr(buf, "--include=" BASE_PACKAGES "\n"));
        assert_non_null(strstr(buf, "--mode=root\n"));
        assert_non_null(strstr(buf, "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/*\n"));
        assert_non_null(strstr(buf, "\nbookworm\n"));
        assert_non_null(strstr(buf, apt_sources_path()));

        /* the manifest */
        path_in(f, "templates/base.json", p, sizeof p);
        j = json_load_file(p, 0, NULL);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "name")), "base");
        assert_string_equal(json_string_value(json_object_get(j, "source")), "catalog");
        assert_string_equal(json_string_value(json_object_get(j, "suite")), "bookworm");
        assert_string_equal(json_string_value(json_object_get(j, "variant")), "minbase");
        assert_int_equal(json_array_size(json_object_get(j, "include")), 3);
        assert_int_equal(json_array_size(json_object_get(j, "layers")), 1);
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "layers"), 0)), info.layers[0]);
        assert_non_null(json_string_value(json_object_get(j, "createdAt")));
        assert_true(json_integer_value(json_object_get(j, "sizeBytes")) > 0);
        pkgs = json_object_get(j, "packages");
        assert_int_equal(json_array_size(pkgs), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(pkgs, 0), "name")), "bash");
        assert_string_equal(json_string_value(json_object_get(json_array_get(pkgs, 0), "version")), "5.2.15-2+b7");
        json_decref(j);
        st = status_now(f, "base");
        assert_int_equal(st.state, TEMPLATE_AVAILABLE);
        assert_int_equal(st.n_layers, 1);
        assert_string_equal(st.source, "catalog");
        assert_true(st.built_at[0] != '\0');

        /* the build cache remembers the layer under the normalised key */
        cache_path(f, BASE_PACKAGES, p, sizeof p);
        read_small(p, buf, sizeof buf);
        assert_string_equal(buf, info.layers[0]);

        /* ready now: synchronous done, no new child */
        collect_init(c3);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c3, &err), 0);
        assert_int_equal(c3->n_done, 1);
        assert_int_equal(c3->result, 0);
        assert_int_equal(count_tmp_dirs(f), 0);

        /* from here on no builder can run: whatever succeeds comes from the cache */
        snprintf(f->ts->builder, sizeof f->ts->builder, "%s/no-such-mmdebstrap", f->dir);

        /* the same packages in another order (and twice): a cache hit, synchronous, with a hold */
        collect_init(&lc->c);
        assert_int_equal(template_debian_layer(f->ts, "bookworm", "minbase", "ca-certificates,coreutils,bash,bash",
                                               on_layer_progress, on_layer_done, lc, &err),
                         0);
        assert_int_equal(lc->c.n_done, 1);
        assert_int_equal(lc->c.result, 0);
        assert_string_equal(lc->digest, info.layers[0]);
        layer_of(f, lc->digest, &li);
        assert_int_equal(li.holds, 1);
        layer_release(template_store_layers(f->ts), lc->digest);

        /* another package set is not */
        collect_init(&lc->c);
        sbx_err_clear(&err);
        assert_int_equal(template_debian_layer(f->ts, "bookworm", "minbase", "bash", on_layer_progress, on_layer_done,
                                               lc, &err),
                         -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_builder_missing");
        assert_int_equal(lc->c.n_done, 0);

        /* the cache is keyed by what is built, not by the template's name: a catalog template with
         * the same include list gets the same layer without a build (here: base again, unpublished) */
        assert_int_equal(template_remove(f->ts, "base", &err), 0);
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "base", &info2, &err), -SBX_E_UNAVAILABLE);
        collect_init(c3);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c3, &err), 0);
        assert_int_equal(c3->n_done, 1); /* synchronous: a cache hit */
        assert_int_equal(c3->result, 0);
        assert_int_equal(template_lookup(f->ts, "base", &info2, &err), 0);
        assert_int_equal(info2.n_layers, 1);
        assert_string_equal(info2.layers[0], info.layers[0]);
        assert_int_equal(count_layers(f), 1);
        layer_of(f, info.layers[0], &li);
        assert_int_equal(li.holds, 0);

        /* a cache entry whose layer is gone is a miss */
        assert_int_equal(template_remove(f->ts, "base", &err), 0);
        assert_int_equal(layer_gc(template_store_layers(f->ts), NULL, 0, NULL, &err), 1);
        collect_init(c3);
        sbx_err_clear(&err);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c3, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_builder_missing");
        assert_int_equal(c3->n_done, 0);

        /* invalid parameters are refused before anything runs */
        sbx_err_clear(&err);
        assert_int_equal(template_debian_layer(f->ts, "bookworm", "minbase", "Bash", NULL, on_layer_done, lc, &err),
                         -SBX_E_INVALID);
        sbx_err_clear(&err);
        assert_int_equal(template_debian_layer(f->ts, "bookworm", "huge", "bash", NULL, on_layer_done, lc, &err),
                         -SBX_E_INVALID);
        sbx_err_clear(&err);
        assert_int_equal(template_debian_layer(f->ts, "../x", "minbase", "bash", NULL, on_layer_done, lc, &err),
                         -SBX_E_INVALID);
        assert_int_equal(lc->c.n_done, 0);
}

static void test_build_fake_failure(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct template_status st;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];
        char buf[8192], p[PATH_MAX];

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
        assert_non_null(strstr(c->err.msg, "cannot build"));
        assert_non_null(strstr(c->err.msg, "bookworm minbase"));
        assert_non_null(strstr(c->err.msg, "status 25"));
        assert_non_null(strstr(c->err.msg, "Unable to locate package nonexistentpkgxyz"));
        assert_non_null(strstr(c->err.msg, "E: mmdebstrap failed to run"));
        assert_false(collect_saw(c, "ready"));
        assert_true(c->monotonic);

        /* the failed tree is gone, nothing was committed or cached, and lookups say why */
        while (uv_run(&f->loop, UV_RUN_NOWAIT))
                ;
        assert_int_equal(count_tmp_dirs(f), 0);
        assert_int_equal(count_layers(f), 0);
        cache_path(f, BASE_PACKAGES, p, sizeof p);
        assert_false(exists(p));
        path_in(f, "templates/base.json", p, sizeof p);
        assert_false(exists(p));
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_not_ready");
        assert_non_null(strstr(err.msg, "last build failed"));
        assert_non_null(strstr(err.msg, "status 25"));
        st = status_now(f, "base");
        assert_int_equal(st.state, TEMPLATE_FAILED);
        assert_string_equal(template_state_to_string(st.state), "failed");
        assert_non_null(strstr(st.error, "status 25"));
        assert_int_equal(status_now(f, "python").state, TEMPLATE_NOT_BUILT);

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
        assert_int_equal(status_now(f, "base").state, TEMPLATE_BUILDING);
        run_until_done(f, c, 1);
        assert_int_equal(c->result, 0);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), 0);
        assert_int_equal(status_now(f, "base").state, TEMPLATE_AVAILABLE);
}

static void test_builder_missing(void **state)
{
        struct fixture *f = *state;
        struct template_info info;
        struct sbx_err err = {};
        struct collect *c = &f->c[0];

        store_open(f);
        snprintf(f->ts->builder, sizeof f->ts->builder, "%s/no-such-mmdebstrap", f->dir);
        collect_init(c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), -SBX_E_UNAVAILABLE);
        assert_string_equal(err.reason, "template_builder_missing");
        assert_non_null(strstr(err.msg, "mmdebstrap is not installed"));
        assert_non_null(strstr(err.msg, "'mmdebstrap'"));
        assert_non_null(strstr(err.msg, "'base'"));
        assert_int_equal(c->n_done, 0);
        assert_int_equal(count_tmp_dirs(f), 0);
        /* nothing is left running: still "not built", and a retry fails the same way */
        sbx_err_clear(&err);
        assert_int_equal(template_lookup(f->ts, "base", &info, &err), -SBX_E_UNAVAILABLE);
        assert_non_null(strstr(err.msg, "not built yet"));
        assert_int_equal(status_now(f, "base").state, TEMPLATE_NOT_BUILT);
        sbx_err_clear(&err);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), -SBX_E_UNAVAILABLE);
        assert_int_equal(c->n_done, 0);
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
        struct lcollect *lc = &f->lc[0];
        uint64_t t0;
        int pid, child;

        store_open(f);
        use_fake(f, script);
        collect_init(c);
        collect_init(&lc->c);
        assert_int_equal(template_build(f->ts, "base", on_progress, on_done, c, &err), 0);
        assert_int_equal(template_debian_layer(f->ts, "bookworm", "minbase", BASE_PACKAGES, NULL, on_layer_done, lc,
                                               &err),
                         0);
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
        assert_int_equal(lc->c.n_done, 1);
        assert_int_equal(lc->c.result, -ECANCELED);
        assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* every handle closes */
        assert_true((now_usec() - t0) / 1000 >= min_ms);
        assert_true((now_usec() - t0) / 1000 <= max_ms);
        assert_int_equal(c->n_done, 1);
        assert_int_equal(lc->c.n_done, 1);
        assert_true(process_gone(pid));
        assert_true(kill(pid, 0) < 0 && errno == ESRCH); /* reaped by libuv */
        for (int i = 0; i < 100 && !process_gone(child); i++)
                usleep(10 * 1000);
        assert_true(process_gone(child));

        /* the tmp dir stays until the next open */
        assert_int_equal(count_tmp_dirs(f), 1);
        store_open(f);
        assert_int_equal(count_tmp_dirs(f), 0);
        assert_int_equal(count_layers(f), 0);
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
        struct layer_info li;
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
        assert_int_equal(info.n_layers, 1);
        layer_of(f, info.layers[0], &li);
        snprintf(p, sizeof p, "%s/bin/bash", li.root);
        assert_int_equal(stat(p, &st), 0); /* through the relative bin -> usr/bin link */
        assert_true(S_ISREG(st.st_mode) && (st.st_mode & 0111));
        snprintf(p, sizeof p, "%s/usr/bin/env", li.root);
        assert_int_equal(stat(p, &st), 0);
        snprintf(p, sizeof p, "%s/etc/ssl/certs/ca-certificates.crt", li.root);
        assert_int_equal(stat(p, &st), 0);
        assert_true(st.st_size > 100000);
        snprintf(p, sizeof p, "%s/root", li.root);
        assert_path_mode(p, 0700);
        snprintf(p, sizeof p, "%s/var/lib/apt/lists", li.root);
        assert_int_equal(stat(p, &st), 0); /* emptied by the hook, not removed */
        snprintf(p, sizeof p, "%s/usr/share/man", li.root);
        assert_true(stat(p, &st) != 0 || st.st_nlink <= 2);

        path_in(f, "templates/base.json", p, sizeof p);
        j = json_load_file(p, 0, NULL);
        assert_non_null(j);
        print_message("size %lld bytes (tar %llu), %zu packages\n",
                      (long long)json_integer_value(json_object_get(j, "sizeBytes")), (unsigned long long)li.tar_bytes,
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
                cmocka_unit_test(test_name_valid),
                cmocka_unit_test_setup_teardown(test_publish, fixture_setup, fixture_teardown),
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
