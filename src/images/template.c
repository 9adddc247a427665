// SPDX-License-Identifier: Apache-2.0
/*
 * The template store (template.h, DESIGN §3): prepares the host template's skeleton, builds the
 * base template by running mmdebstrap as a child process on the caller's libuv loop, turns its
 * "I: ..." stage lines into progress, and publishes a finished rootfs with one rename. Slow file
 * work (measuring, removing a failed tree) runs on the libuv thread pool, never on the loop. It
 * does not log, does not mount anything itself and never follows a symlink or crosses a mount
 * point while it deletes.
 */
#include "images/template.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

/* Output kept from a build: the last BUILD_LOG_LINES lines, each cut at BUILD_LINE_MAX bytes. */
#define BUILD_LOG_LINES 20
#define BUILD_LINE_MAX 256
#define BUILD_READ_BUF 4096
/* After SIGTERM (store freed mid-build) the process group gets SIGKILL this much later. */
#define BUILD_KILL_GRACE_MS 5000
/* After the child exits, how long to wait for its output pipe to reach EOF (a grandchild may hold it). */
#define BUILD_EOF_GRACE_MS 2000
/* Deeper trees than this are not walked (Debian rootfs trees are < 20 deep). */
#define TREE_MAX_DEPTH 256
/* At most this many packages are listed in template.json. */
#define TEMPLATE_MAX_PACKAGES 4096
/* Where builders are looked up, and the PATH the child gets. */
#define BUILD_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum template_kind {
        TEMPLATE_HOST,   /* skeleton + read-only binds of host dirs */
        TEMPLATE_DEBIAN, /* built by mmdebstrap */
};

struct template_def {
        const char *name;
        enum template_kind kind;
        const char *suite;   /* TEMPLATE_DEBIAN only */
        const char *variant; /* TEMPLATE_DEBIAN only */
        const char *include; /* TEMPLATE_DEBIAN only: comma-separated extra packages */
        const char *description;
};

/* The built-in catalog: everything comes from Debian's packages, built on first use and cached. */
static const struct template_def template_defs[] = {
        { .name = "host",
          .kind = TEMPLATE_HOST,
          .description = "the host's /usr and /etc, read-only (tests and trials; exposes the host's files)" },
        { .name = "base",
          .kind = TEMPLATE_DEBIAN,
          .suite = "bookworm",
          .variant = "minbase",
          .include = "bash,coreutils,ca-certificates",
          .description = "Debian 12 minbase with bash, coreutils and ca-certificates" },
        { .name = "python",
          .kind = TEMPLATE_DEBIAN,
          .suite = "bookworm",
          .variant = "minbase",
          .include = "bash,coreutils,ca-certificates,python3,python3-pip,python3-venv",
          .description = "base + Python 3.11 with pip and venv" },
        { .name = "node",
          .kind = TEMPLATE_DEBIAN,
          .suite = "bookworm",
          .variant = "minbase",
          .include = "bash,coreutils,ca-certificates,nodejs,npm",
          .description = "base + Node.js 18 and npm (Debian's)" },
        { .name = "full",
          .kind = TEMPLATE_DEBIAN,
          .suite = "bookworm",
          .variant = "minbase",
          .include = "bash,coreutils,ca-certificates,git,curl,build-essential,python3,python3-pip,python3-venv,"
                     "nodejs,npm,jq,ripgrep",
          .description = "base + git, curl, build-essential, Python 3, Node.js, jq and ripgrep" },
};

/* Names the vendor APIs use for the same runtimes ("runtime:tag"). */
static const struct {
        const char *alias, *name;
} template_aliases[] = {
        { "debian", "base" },   { "debian:12", "base" },  { "debian:bookworm", "base" },
        { "python:3", "python" }, { "python3", "python" }, { "python:3.11", "python" },
        { "node:18", "node" },  { "nodejs", "node" },
};

#define N_TEMPLATES ELEMENTSOF(template_defs)

struct build_waiter {
        struct build_waiter *next;
        template_progress_fn progress;
        template_done_fn done;
        void *data;
};

/*
 * One mmdebstrap run. Owned by its libuv handles and work request: it is freed when the last of
 * them is closed/finished, which may be after the store is gone (ts == NULL: detached).
 */
struct build {
        struct template_store *ts; /* NULL once detached */
        const struct template_def *def;
        struct build_waiter *waiters; /* FIFO; each gets done exactly once */
        struct build_waiter **waiters_tail;

        uv_process_t proc;
        uv_pipe_t out; /* read end of the child's stdout+stderr */
        uv_timer_t timer;
        uv_work_t work;
        unsigned open_handles;
        bool work_pending;
        bool pipe_closing;
        bool timer_closing;

        bool exited;
        bool eof;
        bool spawned;   /* the child was started (it reports through build_exit_cb) */
        bool finishing; /* the after-exit step was started */
        int pid;
        int64_t exit_status;
        int term_signal;

        int name_fd;             /* owns: TEMPLATES_DIR/<name> */
        char tmp_name[32];       /* "rootfs.tmp-XXXXXX" inside name_fd */
        char tmp_path[PATH_MAX]; /* absolute path of the same */

        unsigned percent;
        char stage[64];

        char line[BUILD_LINE_MAX];
        size_t line_len;
        char tail[BUILD_LOG_LINES][BUILD_LINE_MAX];
        unsigned tail_next;
        unsigned tail_count;
        char first_error[BUILD_LINE_MAX]; /* first "E: " line */
        char readbuf[BUILD_READ_BUF];

        int result; /* 0 or negative, set before the done callbacks */
        struct sbx_err result_err;
};

struct template_slot {
        const struct template_def *def;
        struct build *build; /* the running build, or NULL */
        bool failed;         /* the last build failed */
        char last_error[SBX_ERR_MSG_MAX];
        char log[BUILD_LOG_LINES * BUILD_LINE_MAX]; /* output tail of the last finished build */
};

struct template_store {
        uv_loop_t *loop;
        int dirfd;              /* owns: TEMPLATES_DIR */
        char path[PATH_MAX];    /* absolute path of TEMPLATES_DIR */
        char builder[PATH_MAX]; /* mmdebstrap to run; "" = look it up in BUILD_PATH (tests set it) */
        bool closing;
        struct template_slot slots[N_TEMPLATES];
};

/* ---- small file helpers ---- */

struct fs_id {
        uint64_t dev;
        uint64_t mnt;
        bool has_mnt;
};

static int fs_id_of(int fd, struct fs_id *ret)
{
        struct statx sx;

        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) < 0)
                return -errno;
        ret->dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
        ret->has_mnt = (sx.stx_mask & STATX_MNT_ID) != 0;
        ret->mnt = ret->has_mnt ? sx.stx_mnt_id : 0;
        return 0;
}

static bool fs_id_same(const struct fs_id *a, const struct fs_id *b)
{
        if (a->dev != b->dev)
                return false;
        return !(a->has_mnt && b->has_mnt) || a->mnt == b->mnt;
}

/*
 * Remove dirfd/name and everything below it. Never follows symlinks and never descends into a
 * directory on another mount (a killed mmdebstrap could have left /proc, /sys or /dev binds behind
 * if it ran outside its own mount namespace): such a subtree is left alone and -EBUSY returned.
 */
static int tree_remove_at(int parent, const char *name, const struct fs_id *top, unsigned depth)
{
        _cleanup_close_ int fd = -EBADF;
        struct fs_id id;
        struct dirent *de;
        DIR *d;
        int r = 0, q;

        if (depth > TREE_MAX_DEPTH)
                return -ELOOP;
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOTDIR || errno == ELOOP)
                        return unlinkat(parent, name, 0) < 0 && errno != ENOENT ? -errno : 0;
                return errno == ENOENT ? 0 : -errno;
        }
        q = fs_id_of(fd, &id);
        if (q < 0)
                return q;
        if (!top)
                top = &id;
        else if (!fs_id_same(top, &id))
                return -EBUSY;

        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF; /* d owns it now */
        while ((errno = 0, de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
                        q = tree_remove_at(dirfd(d), de->d_name, top, depth + 1);
                else
                        q = unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT ? -errno : 0;
                if (q < 0 && r == 0)
                        r = q;
        }
        if (errno != 0 && r == 0)
                r = -errno;
        (void)closedir(d);
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                r = -errno;
        return r;
}

/* Sum of the sizes of the non-directory entries below fd (hard links counted once per name). */
static int tree_size_at(int fd, uint64_t *acc, unsigned depth)
{
        struct dirent *de;
        DIR *d;
        int dfd, r = 0;

        if (depth > TREE_MAX_DEPTH)
                return -ELOOP;
        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d) {
                (void)safe_close(dfd);
                return -errno;
        }
        while ((de = readdir(d))) {
                struct stat st;

                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_close_ int sub = -EBADF;

                        sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (sub >= 0 && r == 0)
                                r = tree_size_at(sub, acc, depth + 1);
                } else {
                        *acc += (uint64_t)st.st_size;
                }
        }
        (void)closedir(d);
        return r;
}

/* Installed packages from the rootfs's dpkg status file, as [{name, version}]. NULL on failure. */
static json_t *dpkg_packages_at(int rootfd)
{
        _cleanup_close_ int fd = -EBADF;
        char line[1024], pkg[128] = "", ver[128] = "";
        bool installed = false, at_start = true;
        json_t *arr;
        FILE *f;

        fd = openat(rootfd, "var/lib/dpkg/status", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        f = fdopen(fd, "re");
        if (!f)
                return NULL;
        fd = -EBADF; /* f owns it now */
        arr = json_array();
        if (!arr) {
                (void)fclose(f);
                return NULL;
        }
        for (;;) {
                bool eof = !fgets(line, sizeof line, f);
                bool start = at_start;
                size_t n = eof ? 0 : strlen(line);

                /* A line longer than the buffer arrives in pieces; only a piece at a line start counts. */
                at_start = n > 0 && line[n - 1] == '\n';
                if (at_start)
                        line[--n] = '\0';
                if (eof || (start && n == 0)) {
                        if (installed && pkg[0] && json_array_size(arr) < TEMPLATE_MAX_PACKAGES)
                                (void)json_array_append_new(arr, json_pack("{s:s, s:s}", "name", pkg, "version", ver));
                        pkg[0] = ver[0] = '\0';
                        installed = false;
                        if (eof)
                                break;
                        continue;
                }
                if (!start)
                        continue;
                if (!strncmp(line, "Package: ", 9))
                        snprintf(pkg, sizeof pkg, "%.127s", line + 9);
                else if (!strncmp(line, "Version: ", 9))
                        snprintf(ver, sizeof ver, "%.127s", line + 9);
                else if (!strncmp(line, "Status: ", 8))
                        installed = !strcmp(line + 8, "install ok installed");
        }
        (void)fclose(f);
        return arr;
}

/* Write name_fd/template.json atomically (tmp file + rename). Best effort: returns 0 or -errno. */
static int template_json_write(int name_fd, const struct template_def *def, int rootfd)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        char built_at[32], inc[128], *save = NULL, *tok;
        uint64_t size = 0;
        json_t *obj, *include;
        int r;

        format_rfc3339_ms(now_realtime_ms(), built_at, sizeof built_at);
        (void)tree_size_at(rootfd, &size, 0);
        include = json_array();
        snprintf(inc, sizeof inc, "%s", def->include ? def->include : "");
        for (tok = strtok_r(inc, ",", &save); tok && include; tok = strtok_r(NULL, ",", &save))
                (void)json_array_append_new(include, json_string(tok));
        obj = json_pack("{s:s, s:s, s:s, s:s, s:o*, s:o*, s:I}", "name", def->name, "builtAt", built_at, "suite",
                        def->suite ? def->suite : "", "variant", def->variant ? def->variant : "", "include", include,
                        "packages", dpkg_packages_at(rootfd), "sizeBytes", (json_int_t)size);
        if (!obj)
                return -ENOMEM;
        text = json_dumps(obj, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(obj);
        if (!text)
                return -ENOMEM;
        fd = openat(name_fd, "template.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        r = write_all(fd, text, strlen(text));
        if (r == 0)
                r = write_all(fd, "\n", 1);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && renameat(name_fd, "template.json.tmp", name_fd, "template.json") < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(name_fd, "template.json.tmp", 0);
        return r;
}

/* ---- the host template's skeleton ---- */

/* mkdir + fix the mode; fails if path exists as something other than a directory. ret_fd optional. */
static int ensure_dir(int parent, const char *path, mode_t mode, int *ret_fd, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (mkdirat(parent, path, mode) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create '%s': %s", path, strerror(errno));
        fd = openat(parent, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open directory '%s': %s", path, strerror(errno));
        if (fstat(fd, &st) < 0)
                return sbx_err_set(err, -errno, "cannot stat '%s': %s", path, strerror(errno));
        /* mkdir's mode went through the umask, and sticky bits are not set by mkdir everywhere */
        if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0)
                return sbx_err_set(err, -errno, "cannot chmod '%s': %s", path, strerror(errno));
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Make path a symlink to target, replacing a symlink that points elsewhere. */
static int ensure_symlink(int parent, const char *path, const char *target, struct sbx_err *err)
{
        char buf[PATH_MAX];
        ssize_t n;

        n = readlinkat(parent, path, buf, sizeof buf - 1);
        if (n >= 0) {
                buf[n] = '\0';
                if (!strcmp(buf, target))
                        return 0;
                if (unlinkat(parent, path, 0) < 0)
                        return sbx_err_set(err, -errno, "cannot replace symlink '%s': %s", path, strerror(errno));
        } else if (errno == EINVAL) {
                return sbx_err_set(err, -EEXIST, "'%s' exists and is not a symlink", path);
        } else if (errno != ENOENT) {
                return sbx_err_set(err, -errno, "cannot read symlink '%s': %s", path, strerror(errno));
        }
        if (symlinkat(target, parent, path) < 0)
                return sbx_err_set(err, -errno, "cannot create symlink '%s': %s", path, strerror(errno));
        return 0;
}

static const struct {
        const char *path;
        mode_t mode;
} host_dirs[] = {
        { "proc", 0755 }, { "dev", 0755 }, { "sys", 0755 }, { "tmp", 01777 },     { "root", 0700 },
        { "home", 0755 }, { "run", 0755 }, { "var", 0755 }, { "var/tmp", 01777 }, { "etc", 0755 },
        { "usr", 0755 },  { "mnt", 0755 }, { "opt", 0755 }, { "srv", 0755 },
};

static const struct {
        const char *path;
        const char *target;
        const char *only_if; /* create only if this host path exists (NULL: always) */
} host_links[] = {
        { "bin", "usr/bin", NULL },
        { "sbin", "usr/sbin", NULL },
        { "lib", "usr/lib", NULL },
        { "lib64", "usr/lib64", NULL },
        { "lib32", "usr/lib32", "/usr/lib32" },
        { "libx32", "usr/libx32", "/usr/libx32" },
};

/* Create or repair TEMPLATES_DIR/host/rootfs. Idempotent; a few dozen syscalls. */
static int host_prepare(struct template_store *ts, const char *name, struct sbx_err *err)
{
        _cleanup_close_ int name_fd = -EBADF, root_fd = -EBADF;
        int r;

        r = ensure_dir(ts->dirfd, name, 0755, &name_fd, err);
        if (r >= 0)
                r = ensure_dir(name_fd, "rootfs", 0755, &root_fd, err);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(host_dirs); i++)
                r = ensure_dir(root_fd, host_dirs[i].path, host_dirs[i].mode, NULL, err);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(host_links); i++) {
                if (host_links[i].only_if && access(host_links[i].only_if, F_OK) < 0)
                        continue;
                r = ensure_symlink(root_fd, host_links[i].path, host_links[i].target, err);
        }
        if (r < 0) {
                (void)sbx_err_wrap(err, "cannot prepare template '%s'", name);
                return r;
        }
        return 0;
}

/* Remove <name>/rootfs.tmp-* and <name>/template.json.tmp left by a crash or a killed build. Best effort. */
static void leftovers_remove(struct template_store *ts, const char *name)
{
        _cleanup_close_ int name_fd = -EBADF;
        struct dirent *de;
        DIR *d;

        name_fd = openat(ts->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (name_fd < 0)
                return;
        d = fdopendir(name_fd);
        if (!d)
                return;
        name_fd = -EBADF; /* d owns it now */
        while ((de = readdir(d))) {
                if (!strncmp(de->d_name, "rootfs.tmp-", 11))
                        (void)tree_remove_at(dirfd(d), de->d_name, NULL, 0);
                else if (!strcmp(de->d_name, "template.json.tmp"))
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        }
        (void)closedir(d);
}

/* ---- the store ---- */

static const struct template_def *template_def_find(const char *name)
{
        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(template_aliases); i++)
                if (!strcmp(template_aliases[i].alias, name)) {
                        name = template_aliases[i].name;
                        break;
                }
        for (size_t i = 0; i < N_TEMPLATES; i++)
                if (!strcmp(template_defs[i].name, name))
                        return &template_defs[i];
        return NULL;
}

static struct template_slot *template_slot_find(struct template_store *ts, const char *name)
{
        const struct template_def *def = template_def_find(name);

        return def ? &ts->slots[def - template_defs] : NULL;
}

/* 404 naming the templates there are. */
static int unknown_template(const char *name, struct sbx_err *err)
{
        char names[256];
        size_t off = 0;

        names[0] = '\0';
        for (size_t i = 0; i < N_TEMPLATES && off < sizeof names; i++) {
                int n = snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "", template_defs[i].name);
                if (n < 0)
                        break;
                off += (size_t)n;
        }
        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "template_not_found", "unknown template '%.64s' (available: %s)",
                            name ? name : "", names);
}

const char *template_canonical_name(const char *name)
{
        const struct template_def *def = template_def_find(name);

        return def ? def->name : NULL;
}

bool template_known(const char *name)
{
        return template_def_find(name) != NULL;
}

static int mkdir_parents(const char *path, mode_t mode)
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
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int template_store_open(const char *dir, uv_loop_t *loop, struct template_store **ret, struct sbx_err *err)
{
        _cleanup_free_ struct template_store *ts = NULL;
        char real[PATH_MAX];
        int r;

        if (!dir || !*dir || !loop || !ret)
                return sbx_err_set(err, -EINVAL, "invalid arguments to template_store_open");
        r = mkdir_parents(dir, 0755);
        if (r < 0)
                return sbx_err_set(err, r, "cannot create templates directory '%s': %s", dir, strerror(-r));
        if (!realpath(dir, real))
                return sbx_err_set(err, -errno, "cannot resolve templates directory '%s': %s", dir, strerror(errno));
        /* room for "/<name>/rootfs.tmp-XXXXXX" below it */
        if (strlen(real) + SBX_MAX_TEMPLATE_NAME + 32 >= PATH_MAX)
                return sbx_err_set(err, -ENAMETOOLONG, "templates directory path '%s' is too long", dir);

        ts = calloc(1, sizeof *ts);
        if (!ts)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        ts->loop = loop;
        snprintf(ts->path, sizeof ts->path, "%s", real);
        ts->dirfd = open(ts->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ts->dirfd < 0)
                return sbx_err_set(err, -errno, "cannot open templates directory '%s': %s", ts->path, strerror(errno));
        for (size_t i = 0; i < N_TEMPLATES; i++) {
                ts->slots[i].def = &template_defs[i];
                leftovers_remove(ts, template_defs[i].name);
                if (template_defs[i].kind == TEMPLATE_HOST) {
                        r = host_prepare(ts, template_defs[i].name, err);
                        if (r < 0) {
                                (void)safe_close(ts->dirfd);
                                return r;
                        }
                }
        }
        *ret = TAKE_PTR(ts);
        return 0;
}

static bool template_ready(struct template_store *ts, const struct template_slot *slot)
{
        char path[SBX_MAX_TEMPLATE_NAME + 16];
        struct stat st;

        snprintf(path, sizeof path, "%s/rootfs", slot->def->name);
        return fstatat(ts->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int template_lookup(struct template_store *ts, const char *name, struct template_info *ret, struct sbx_err *err)
{
        struct template_slot *slot = ts ? template_slot_find(ts, name) : NULL;
        struct template_info info = {};
        int n;

        if (!slot)
                return unknown_template(name, err);
        if (!template_ready(ts, slot)) {
                if (slot->build)
                        return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_not_ready",
                                            "template '%s' is being built (%u%%, %s)", name, slot->build->percent,
                                            slot->build->stage);
                if (slot->failed)
                        return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_not_ready",
                                            "template '%s' is not built yet (last build failed: %s)", name,
                                            slot->last_error);
                return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_not_ready", "template '%s' is not built yet",
                                    name);
        }
        snprintf(info.name, sizeof info.name, "%s", slot->def->name);
        n = snprintf(info.rootfs, sizeof info.rootfs, "%s/%s/rootfs", ts->path, slot->def->name);
        if (n < 0 || (size_t)n >= sizeof info.rootfs)
                return sbx_err_set(err, -ENAMETOOLONG, "template '%s': path too long", name);
        if (slot->def->kind == TEMPLATE_HOST) {
                static const char *const binds[] = { "/usr", "/etc" };

                for (size_t i = 0; i < ELEMENTSOF(binds); i++) {
                        snprintf(info.binds[i].source, sizeof info.binds[i].source, "%s", binds[i]);
                        snprintf(info.binds[i].target, sizeof info.binds[i].target, "%s", binds[i]);
                }
                info.n_binds = ELEMENTSOF(binds);
        }
        *ret = info;
        return 0;
}

int template_status_list(struct template_store *ts, struct template_status *ret, size_t max, size_t *ret_n)
{
        size_t n = 0;

        for (size_t i = 0; i < N_TEMPLATES && n < max; i++) {
                struct template_slot *slot = &ts->slots[i];
                struct template_status *st = &ret[n++];
                char path[PATH_MAX + 32];
                char buf[64 * 1024];
                json_t *j;

                memset(st, 0, sizeof *st);
                snprintf(st->name, sizeof st->name, "%s", slot->def->name);
                st->description = slot->def->description;
                st->packages = slot->def->include;
                if (template_ready(ts, slot))
                        st->state = TEMPLATE_AVAILABLE;
                else if (slot->build) {
                        st->state = TEMPLATE_BUILDING;
                        st->percent = slot->build->percent;
                        snprintf(st->stage, sizeof st->stage, "%s", slot->build->stage);
                } else if (slot->failed) {
                        st->state = TEMPLATE_FAILED;
                        snprintf(st->error, sizeof st->error, "%s", slot->last_error);
                } else
                        st->state = TEMPLATE_NOT_BUILT;
                if (st->state != TEMPLATE_AVAILABLE || slot->def->kind != TEMPLATE_DEBIAN)
                        continue;
                /* size and build time, as the build recorded them */
                snprintf(path, sizeof path, "%s/template.json", slot->def->name);
                if (read_file_at(ts->dirfd, path, buf, sizeof buf) < 0)
                        continue;
                j = json_loads(buf, 0, NULL);
                if (!j)
                        continue;
                st->size_bytes = (uint64_t)json_integer_value(json_object_get(j, "sizeBytes"));
                snprintf(st->built_at, sizeof st->built_at, "%s", json_string_value(json_object_get(j, "builtAt")) ?: "");
                json_decref(j);
        }
        *ret_n = n;
        return 0;
}

const char *template_state_to_string(enum template_state s)
{
        static const char *const names[] = {
                [TEMPLATE_AVAILABLE] = "available",
                [TEMPLATE_BUILDING] = "building",
                [TEMPLATE_FAILED] = "failed",
                [TEMPLATE_NOT_BUILT] = "not_built",
        };
        return s >= 0 && s < _TEMPLATE_STATE_MAX ? names[s] : "invalid";
}

/* ---- building ---- */

static const struct build_stage {
        const char *prefix; /* after "I: " */
        unsigned percent;
        const char *stage;
} build_stages[] = {
        /* Weights from a warm-cache run here (19 s): extracting ~8 s, essential ~5 s, remaining ~4 s.
         * Downloading is short with a local mirror and long without, so it gets a wide band too. */
        { "chroot architecture", 1, "preparing" },
        { "running apt-get update", 5, "updating package lists" },
        { "downloading packages", 10, "downloading packages" },
        { "extracting archives", 35, "extracting archives" },
        { "installing essential packages", 60, "installing essential packages" },
        { "installing remaining packages", 80, "installing remaining packages" },
        { "running --customize-hook", 94, "running customize hook" },
        { "cleaning package lists", 96, "cleaning package lists and apt cache" },
        { "success", 98, "finishing" },
};

/* Map one mmdebstrap output line to a stage. Returns false for lines that are not a known stage. */
static bool build_stage_parse(const char *line, unsigned *ret_percent, const char **ret_stage)
{
        if (strncmp(line, "I: ", 3) != 0)
                return false;
        line += 3;
        for (size_t i = 0; i < ELEMENTSOF(build_stages); i++)
                if (!strncmp(line, build_stages[i].prefix, strlen(build_stages[i].prefix))) {
                        *ret_percent = build_stages[i].percent;
                        *ret_stage = build_stages[i].stage;
                        return true;
                }
        return false;
}

static struct template_slot *build_slot(struct build *b)
{
        return &b->ts->slots[b->def - template_defs];
}

/* Call every waiter's progress callback. Stops if a callback freed the store (detaching b). */
static void build_notify_progress(struct build *b)
{
        for (struct build_waiter *w = b->waiters, *next; w; w = next) {
                if (w->progress)
                        w->progress(b->def->name, b->percent, b->stage, w->data);
                if (!b->ts)
                        return;
                next = w->next;
        }
}

/* Hand every waiter its done callback and free the list. Does not touch b or the store afterwards. */
static void waiters_finish(struct build_waiter *list, const char *name, int result, const struct sbx_err *err)
{
        while (list) {
                struct build_waiter *w = list;

                list = w->next;
                w->done(name, result, result < 0 ? err : NULL, w->data);
                free(w);
        }
}

static struct build_waiter *build_take_waiters(struct build *b)
{
        struct build_waiter *list = b->waiters;

        b->waiters = NULL;
        b->waiters_tail = &b->waiters;
        return list;
}

/* Lines are kept printable ASCII so they can go into an API error message as they are. */
static void build_line_end(struct build *b)
{
        unsigned percent;
        const char *stage;
        char *line;

        if (b->line_len == 0)
                return;
        b->line[b->line_len] = '\0';
        b->line_len = 0;
        line = b->tail[b->tail_next];
        snprintf(line, BUILD_LINE_MAX, "%s", b->line);
        b->tail_next = (b->tail_next + 1) % BUILD_LOG_LINES;
        if (b->tail_count < BUILD_LOG_LINES)
                b->tail_count++;
        if (!b->first_error[0] && !strncmp(line, "E: ", 3))
                snprintf(b->first_error, sizeof b->first_error, "%s", line);
        if (build_stage_parse(line, &percent, &stage) && percent > b->percent) {
                b->percent = percent;
                snprintf(b->stage, sizeof b->stage, "%s", stage);
                if (b->ts)
                        build_notify_progress(b);
        }
}

static void build_feed(struct build *b, const char *buf, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)buf[i];

                if (c == '\n' || c == '\r') {
                        build_line_end(b);
                        continue;
                }
                if (b->line_len >= BUILD_LINE_MAX - 1)
                        continue; /* cut long lines */
                b->line[b->line_len++] = (c == '\t' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
        }
}

static const char *build_last_line(const struct build *b)
{
        if (b->tail_count == 0)
                return "";
        return b->tail[(b->tail_next + BUILD_LOG_LINES - 1) % BUILD_LOG_LINES];
}

/* The kept output, oldest line first, '\n'-separated, NUL-terminated. */
static void build_log_copy(const struct build *b, char *buf, size_t size)
{
        size_t off = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        for (unsigned i = 0; i < b->tail_count; i++) {
                unsigned idx = (b->tail_next + BUILD_LOG_LINES - b->tail_count + i) % BUILD_LOG_LINES;
                int n = snprintf(buf + off, size - off, "%s\n", b->tail[idx]);

                if (n < 0 || (size_t)n >= size - off)
                        return;
                off += (size_t)n;
        }
}

static void build_maybe_free(struct build *b)
{
        struct sbx_err err = {};

        if (b->open_handles > 0 || b->work_pending)
                return;
        (void)safe_close(b->name_fd);
        if (b->waiters) { /* not expected: every path hands the waiters their result first */
                (void)sbx_err_set(&err, -ECANCELED, "build of template '%s' was abandoned", b->def->name);
                waiters_finish(build_take_waiters(b), b->def->name, -ECANCELED, &err);
        }
        free(b);
}

static void build_close_cb(uv_handle_t *h)
{
        struct build *b = h->data;

        b->open_handles--;
        build_maybe_free(b);
}

static void build_close_pipe_and_timer(struct build *b)
{
        if (!b->pipe_closing) {
                b->pipe_closing = true;
                uv_close((uv_handle_t *)&b->out, build_close_cb);
        }
        if (!b->timer_closing) {
                b->timer_closing = true;
                uv_close((uv_handle_t *)&b->timer, build_close_cb);
        }
}

/* Runs on the thread pool: publish the rootfs, or remove the failed tree. Touches only b's own data. */
static void build_work_cb(uv_work_t *req)
{
        struct build *b = req->data;
        _cleanup_close_ int root_fd = -EBADF;
        int r;

        if (b->result < 0)
                goto remove;
        root_fd = openat(b->name_fd, b->tmp_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0) {
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "cannot open built rootfs '%s': %s",
                                        b->tmp_path, strerror(errno));
                goto remove;
        }
        /* sandboxes start in /root; minbase has it, but a template without it would fail late */
        r = ensure_dir(root_fd, "root", 0700, NULL, &b->result_err);
        if (r < 0) {
                b->result = b->result_err.code = -SBX_E_INTERNAL;
                goto remove;
        }
        if (fchmod(root_fd, 0755) < 0) {
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "cannot chmod '%s': %s", b->tmp_path,
                                        strerror(errno));
                goto remove;
        }
        (void)template_json_write(b->name_fd, b->def, root_fd); /* metadata is best effort */
        /* the commit point: before this rename the template does not exist, after it it is complete */
        if (renameat2(b->name_fd, b->tmp_name, b->name_fd, "rootfs", RENAME_NOREPLACE) < 0) {
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "cannot rename '%s' to 'rootfs': %s",
                                        b->tmp_path, strerror(errno));
                goto remove;
        }
        return;
remove:
        root_fd = safe_close(root_fd);
        (void)tree_remove_at(b->name_fd, b->tmp_name, NULL, 0);
}

static void build_after_work_cb(uv_work_t *req, int status)
{
        struct build *b = req->data;
        struct template_slot *slot;
        struct sbx_err err;

        if (status < 0 && b->result >= 0)
                b->result = sbx_err_set(&b->result_err, -SBX_E_INTERNAL, "the last build step was cancelled");
        if (b->result < 0 && strncmp(b->result_err.msg, "cannot build template", 21) != 0)
                (void)sbx_err_wrap(&b->result_err, "cannot build template '%s'", b->def->name);
        if (b->result < 0 && !b->result_err.reason[0])
                snprintf(b->result_err.reason, sizeof b->result_err.reason, "template_build_failed");
        if (b->ts) {
                slot = build_slot(b);
                slot->failed = b->result < 0;
                snprintf(slot->last_error, sizeof slot->last_error, "%s", b->result < 0 ? b->result_err.msg : "");
                build_log_copy(b, slot->log, sizeof slot->log);
                if (b->result >= 0) {
                        b->percent = 100;
                        snprintf(b->stage, sizeof b->stage, "ready");
                        build_notify_progress(b);
                }
        }
        if (b->ts) {
                /* the store forgets the build before anyone hears about it: a done callback may
                 * start a new build or free the store */
                build_slot(b)->build = NULL;
                b->ts = NULL;
                err = b->result_err;
                waiters_finish(build_take_waiters(b), b->def->name, b->result, &err);
        }
        b->work_pending = false;
        build_maybe_free(b);
}

/* The child exited and its output is drained (or the grace period ran out). */
static void build_finish(struct build *b)
{
        int r;

        if (b->finishing)
                return;
        b->finishing = true;
        if (b->line_len > 0)
                build_line_end(b);
        build_close_pipe_and_timer(b);
        if (!b->ts)
                return; /* detached: the tmp dir goes at the next template_store_open() */

        if (b->term_signal != 0)
                b->result =
                        sbx_err_set(&b->result_err, -SBX_E_INTERNAL,
                                    "cannot build template '%s': mmdebstrap was killed by signal %d (last line '%s')",
                                    b->def->name, b->term_signal, build_last_line(b));
        else if (b->exit_status != 0 && b->first_error[0] && strcmp(b->first_error, build_last_line(b)) != 0)
                b->result = sbx_err_set(
                        &b->result_err, -SBX_E_INTERNAL,
                        "cannot build template '%s': mmdebstrap exited with status %lld: '%s' (last line '%s')",
                        b->def->name, (long long)b->exit_status, b->first_error, build_last_line(b));
        else if (b->exit_status != 0)
                b->result =
                        sbx_err_set(&b->result_err, -SBX_E_INTERNAL,
                                    "cannot build template '%s': mmdebstrap exited with status %lld (last line '%s')",
                                    b->def->name, (long long)b->exit_status, build_last_line(b));

        b->work.data = b;
        r = uv_queue_work(b->ts->loop, &b->work, build_work_cb, build_after_work_cb);
        if (r < 0) {
                struct sbx_err err = {};

                build_slot(b)->build = NULL;
                b->ts = NULL;
                (void)sbx_err_set(&err, -SBX_E_INTERNAL, "cannot queue the last build step of '%s': %s", b->def->name,
                                  uv_strerror(r));
                waiters_finish(build_take_waiters(b), b->def->name, err.code, &err);
                return;
        }
        b->work_pending = true;
}

static void build_timer_cb(uv_timer_t *t)
{
        struct build *b = t->data;

        if (!b->exited) {
                /* SIGTERM was not enough: take the whole process group (apt, dpkg) down */
                (void)kill(-b->pid, SIGKILL);
                return;
        }
        build_finish(b); /* exited, but something still holds the pipe open */
}

static void build_exit_cb(uv_process_t *proc, int64_t exit_status, int term_signal)
{
        struct build *b = proc->data;

        b->exited = true;
        b->exit_status = exit_status;
        b->term_signal = term_signal;
        uv_close((uv_handle_t *)proc, build_close_cb);
        if (b->eof) {
                build_finish(b);
                return;
        }
        if (!b->timer_closing) {
                (void)uv_timer_stop(&b->timer);
                (void)uv_timer_start(&b->timer, build_timer_cb, BUILD_EOF_GRACE_MS, 0);
        }
}

static void build_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        struct build *b = h->data;

        *buf = uv_buf_init(b->readbuf, sizeof b->readbuf);
}

static void build_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        struct build *b = s->data;

        if (n > 0) {
                build_feed(b, buf->base, (size_t)n);
                return;
        }
        if (n == 0)
                return;
        /* EOF or a read error: either way there is nothing more to read */
        (void)uv_read_stop(s);
        b->eof = true;
        if (b->exited)
                build_finish(b);
}

/* Find an executable called name in BUILD_PATH. */
static int find_program(const char *name, char *ret, size_t size)
{
        char paths[] = BUILD_PATH, *save = NULL;

        for (char *dir = strtok_r(paths, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
                int n = snprintf(ret, size, "%s/%s", dir, name);

                if (n > 0 && (size_t)n < size && access(ret, X_OK) == 0)
                        return 0;
        }
        return -ENOENT;
}

static const char *apt_sources_path(void)
{
        static const char *const candidates[] = { "/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list" };

        for (size_t i = 0; i < ELEMENTSOF(candidates); i++)
                if (access(candidates[i], R_OK) == 0)
                        return candidates[i];
        return NULL;
}

/* Spawn the child for b. On failure the caller closes whatever handles are open. */
static int build_spawn(struct build *b, const char *builder, const char *setpriv, const char *unshare,
                       const char *sources, struct sbx_err *err)
{
        static const char *const pass_env[] = { "http_proxy", "https_proxy", "no_proxy",
                                                "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY" };
        char variant[64], include[160], env_store[ELEMENTSOF(pass_env)][1024];
        char *env[ELEMENTSOF(pass_env) + 8];
        size_t n_env = 0;
        int pipefd[2], r;
        uv_stdio_container_t stdio[3];
        uv_process_options_t opts = {};

        snprintf(variant, sizeof variant, "--variant=%s", b->def->variant);
        snprintf(include, sizeof include, "--include=%s", b->def->include);
        /* setpriv: the build dies with the daemon; unshare: mmdebstrap's /proc, /sys and /dev
         * mounts live in a private mount namespace and vanish with it, even on SIGKILL */
        /* clang-format off */
        const char *args[] = {
                setpriv, "--pdeathsig", "TERM", "--", unshare, "--mount", "--propagation", "private", "--",
                builder, variant, include, "--mode=root",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-include=/usr/share/locale/locale.alias",
                "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/*",
                b->def->suite, b->tmp_path, sources, NULL,
        };
        /* clang-format on */

        env[n_env++] = (char *)"PATH=" BUILD_PATH;
        env[n_env++] = (char *)"LC_ALL=C";
        env[n_env++] = (char *)"HOME=/root";
        env[n_env++] = (char *)"DEBIAN_FRONTEND=noninteractive";
        for (size_t i = 0; i < ELEMENTSOF(pass_env); i++) {
                const char *v = getenv(pass_env[i]);
                int n;

                if (!v)
                        continue;
                n = snprintf(env_store[i], sizeof env_store[i], "%s=%s", pass_env[i], v);
                if (n > 0 && (size_t)n < sizeof env_store[i])
                        env[n_env++] = env_store[i];
        }
        env[n_env] = NULL;

        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return sbx_err_set(err, -errno, "cannot create a pipe: %s", strerror(errno));
        r = uv_pipe_open(&b->out, pipefd[0]);
        if (r < 0) {
                (void)safe_close(pipefd[0]);
                (void)safe_close(pipefd[1]);
                return sbx_err_set(err, r, "cannot watch the build's output: %s", uv_strerror(r));
        }
        stdio[0].flags = UV_IGNORE;
        stdio[1].flags = UV_INHERIT_FD;
        stdio[1].data.fd = pipefd[1];
        stdio[2].flags = UV_INHERIT_FD;
        stdio[2].data.fd = pipefd[1];
        opts.exit_cb = build_exit_cb;
        opts.file = setpriv;
        opts.args = (char **)args;
        opts.env = env;
        opts.cwd = "/";
        opts.flags = UV_PROCESS_DETACHED; /* own session and process group: one kill reaches apt and dpkg */
        opts.stdio_count = 3;
        opts.stdio = stdio;
        b->proc.data = b;
        r = uv_spawn(b->ts->loop, &b->proc, &opts);
        b->open_handles++; /* uv_spawn initialises the handle even when it fails */
        (void)safe_close(pipefd[1]);
        if (r < 0)
                return sbx_err_set(err, r, "cannot start '%s': %s", builder, uv_strerror(r));
        b->spawned = true;
        b->pid = b->proc.pid;
        r = uv_read_start((uv_stream_t *)&b->out, build_alloc_cb, build_read_cb);
        if (r < 0) {
                (void)kill(-b->pid, SIGKILL);
                return sbx_err_set(err, r, "cannot read the build's output: %s", uv_strerror(r));
        }
        return 0;
}

static int build_start(struct template_store *ts, struct template_slot *slot, struct sbx_err *err)
{
        const struct template_def *def = slot->def;
        char builder[PATH_MAX], setpriv[PATH_MAX], unshare[PATH_MAX], path[PATH_MAX];
        const char *sources;
        struct build *b;
        int r, n;

        if (ts->builder[0])
                r = access(ts->builder, X_OK) < 0 ? -errno : snprintf(builder, sizeof builder, "%s", ts->builder);
        else
                r = find_program("mmdebstrap", builder, sizeof builder);
        if (r < 0)
                return sbx_err_setr(
                        err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                        "cannot build template '%s': mmdebstrap is not installed (install the Debian package 'mmdebstrap')",
                        def->name);
        if (find_program("setpriv", setpriv, sizeof setpriv) < 0 ||
            find_program("unshare", unshare, sizeof unshare) < 0)
                return sbx_err_setr(
                        err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                        "cannot build template '%s': setpriv or unshare is missing (install the Debian package 'util-linux')",
                        def->name);
        sources = apt_sources_path();
        if (!sources)
                return sbx_err_setr(
                        err, -SBX_E_UNAVAILABLE, "template_builder_missing",
                        "cannot build template '%s': no apt sources in '/etc/apt/sources.list.d/debian.sources' or '/etc/apt/sources.list'",
                        def->name);

        b = calloc(1, sizeof *b);
        if (!b)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        b->ts = ts;
        b->def = def;
        b->waiters_tail = &b->waiters;
        b->name_fd = -EBADF;
        snprintf(b->stage, sizeof b->stage, "starting");

        r = ensure_dir(ts->dirfd, def->name, 0755, &b->name_fd, err);
        if (r < 0) {
                free(b);
                (void)sbx_err_wrap(err, "cannot build template '%s'", def->name);
                return r;
        }
        n = snprintf(path, sizeof path, "%s/%s/rootfs.tmp-XXXXXX", ts->path, def->name);
        if (n < 0 || (size_t)n >= sizeof path) {
                (void)safe_close(b->name_fd);
                free(b);
                return sbx_err_set(err, -ENAMETOOLONG, "cannot build template '%s': path too long", def->name);
        }
        if (!mkdtemp(path)) {
                r = sbx_err_set(err, -errno, "cannot build template '%s': cannot create '%s': %s", def->name, path,
                                strerror(errno));
                (void)safe_close(b->name_fd);
                free(b);
                return r;
        }
        snprintf(b->tmp_path, sizeof b->tmp_path, "%s", path);
        snprintf(b->tmp_name, sizeof b->tmp_name, "%s", strrchr(path, '/') + 1);
        (void)chmod(b->tmp_path, 0755); /* mkdtemp made it 0700; it becomes the rootfs's / */

        /* from here on b is freed through its handles' close callbacks */
        b->out.data = b;
        b->timer.data = b;
        (void)uv_pipe_init(ts->loop, &b->out, 0);
        (void)uv_timer_init(ts->loop, &b->timer);
        b->open_handles = 2;
        r = build_spawn(b, builder, setpriv, unshare, sources, err);
        if (r < 0) {
                (void)sbx_err_wrap(err, "cannot build template '%s'", def->name);
                b->ts = NULL;
                if (b->open_handles == 3 && !b->spawned)
                        uv_close((uv_handle_t *)&b->proc, build_close_cb);
                build_close_pipe_and_timer(b);
                b->finishing = true;
                (void)unlinkat(b->name_fd, b->tmp_name, AT_REMOVEDIR);
                return r;
        }
        slot->build = b;
        slot->failed = false;
        return 0;
}

int template_build(struct template_store *ts, const char *name, template_progress_fn progress, template_done_fn done,
                   void *data, struct sbx_err *err)
{
        struct template_slot *slot;
        struct build_waiter *w;
        int r;

        if (!ts || !done)
                return sbx_err_set(err, -EINVAL, "invalid arguments to template_build");
        slot = template_slot_find(ts, name);
        if (!slot)
                return unknown_template(name, err);
        if (ts->closing)
                return sbx_err_set(err, -ECANCELED, "template store is closing");
        if (slot->def->kind == TEMPLATE_HOST || template_ready(ts, slot)) {
                done(slot->def->name, 0, NULL, data);
                return 0;
        }
        w = calloc(1, sizeof *w);
        if (!w)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        w->progress = progress;
        w->done = done;
        w->data = data;
        if (!slot->build) {
                r = build_start(ts, slot, err);
                if (r < 0) {
                        free(w);
                        return r;
                }
        }
        *slot->build->waiters_tail = w;
        slot->build->waiters_tail = &w->next;
        return 0;
}

int template_build_log(struct template_store *ts, const char *name, char *buf, size_t size)
{
        struct template_slot *slot = ts ? template_slot_find(ts, name) : NULL;

        if (!slot)
                return -SBX_E_NOT_FOUND;
        if (size == 0)
                return -ENOBUFS;
        if (slot->build)
                build_log_copy(slot->build, buf, size);
        else
                snprintf(buf, size, "%s", slot->log);
        return (int)strlen(buf);
}

void template_store_free(struct template_store *ts)
{
        if (!ts || ts->closing) /* a done callback below freeing the store again is a no-op */
                return;
        ts->closing = true;
        for (size_t i = 0; i < N_TEMPLATES; i++) {
                struct template_slot *slot = &ts->slots[i];
                struct build *b = slot->build;
                struct sbx_err err = {};

                if (!b)
                        continue;
                slot->build = NULL;
                b->ts = NULL;
                if (!b->exited) {
                        /* mmdebstrap cleans up on SIGTERM; the timer escalates to SIGKILL */
                        (void)kill(-b->pid, SIGTERM);
                        if (!b->timer_closing) {
                                (void)uv_timer_stop(&b->timer);
                                (void)uv_timer_start(&b->timer, build_timer_cb, BUILD_KILL_GRACE_MS, 0);
                        }
                }
                (void)sbx_err_set(&err, -ECANCELED, "template store closed while building '%s'", b->def->name);
                waiters_finish(build_take_waiters(b), b->def->name, -ECANCELED, &err);
        }
        (void)safe_close(ts->dirfd);
        free(ts);
}
