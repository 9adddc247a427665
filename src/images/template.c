// SPDX-License-Identifier: Apache-2.0
/*
 * The template store (template.h, DESIGN §3): the built-in catalog and its aliases, the host
 * template's skeleton, and template manifests (TEMPLATES_DIR/templates/<name>.json: an ordered
 * list of layers from the layer store plus the image config). A catalog template is built on
 * demand from its Debian layer (template-debian.c) and then published like any other. Manifests
 * are small files written with one rename, so a template exists either complete or not at all.
 * No logging, no mounts; never follows a symlink.
 */
#include "images/template-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/util.h"

/* At most this many packages are listed in a catalog manifest. */
#define TEMPLATE_MAX_PACKAGES 4096
/* A manifest file is at most this big. */
#define MANIFEST_MAX (1024 * 1024)

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

/* ---- the host template's skeleton ---- */

/* mkdir + fix the mode; fails if path exists as something other than a directory. ret_fd optional. */
int template__ensure_dir(int parent, const char *path, mode_t mode, int *ret_fd, struct sbx_err *err)
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

        r = template__ensure_dir(ts->dirfd, name, 0755, &name_fd, err);
        if (r >= 0)
                r = template__ensure_dir(name_fd, "rootfs", 0755, &root_fd, err);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(host_dirs); i++)
                r = template__ensure_dir(root_fd, host_dirs[i].path, host_dirs[i].mode, NULL, err);
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


#define N_TEMPLATES ELEMENTSOF(template_defs)

struct cwaiter {
        struct cwaiter *next;
        template_progress_fn progress;
        template_done_fn done;
        void *data;
};

/* A catalog template waiting for its Debian layer. Freed when the layer arrives (or fails). */
struct cbuild {
        struct template_store *ts; /* NULL once detached (store freed) */
        size_t idx;                /* in template_defs */
        struct cwaiter *waiters;
        unsigned percent;
        char stage[64];
        bool notifying; /* inside cbuild_progress: cbuild_done leaves freeing cb to it */
        bool finished;
};

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

const char *template_canonical_name(const char *name)
{
        const struct template_def *def = template_def_find(name);

        return def ? def->name : NULL;
}

bool template_known(const char *name)
{
        return template_def_find(name) != NULL;
}

static bool name_char(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool template_name_valid(const char *name)
{
        const char *colon;
        size_t n;

        if (!name)
                return false;
        n = strlen(name);
        if (n == 0 || n > SBX_MAX_TEMPLATE_NAME || !strcmp(name, "host"))
                return false;
        if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
                return false;
        colon = strchr(name, ':');
        for (const char *p = name; p < (colon ? colon : name + n); p++)
                if (!name_char(*p))
                        return false;
        if (!colon)
                return true;
        if (!colon[1] || colon[1] == '.' || colon[1] == '-')
                return false;
        for (const char *p = colon + 1; *p; p++)
                if (!name_char(*p) && !(*p >= 'A' && *p <= 'Z'))
                        return false;
        return true;
}

/* ---- manifests ---- */

static int manifest_path(const char *name, char *buf, size_t size)
{
        if (!template_name_valid(name) && !template_def_find(name))
                return -EINVAL;
        return (size_t)snprintf(buf, size, "templates/%s.json", name) < size ? 0 : -ENAMETOOLONG;
}

static bool slot_matches(const struct manifest_slot *sl, const char *name, const struct stat *st)
{
        return sl->json && strcmp(sl->name, name) == 0 && sl->dev == st->st_dev && sl->ino == st->st_ino &&
               sl->size == st->st_size && sl->mtim.tv_sec == st->st_mtim.tv_sec &&
               sl->mtim.tv_nsec == st->st_mtim.tv_nsec;
}

/* The manifest of exactly name (no alias, no :latest), or NULL: a new reference to a shared,
 * read-only object (callers never modify manifests). */
static json_t *manifest_read(struct template_store *ts, const char *name)
{
        _cleanup_free_ char *buf = NULL;
        char path[SBX_MAX_TEMPLATE_NAME + 32];
        struct manifest_slot *sl;
        struct stat st;
        json_t *j = NULL;
        int n;

        if (manifest_path(name, path, sizeof path) < 0 ||
            fstatat(ts->dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_size <= 0 || st.st_size >= MANIFEST_MAX)
                return NULL;
        pthread_mutex_lock(&ts->mlock);
        for (size_t i = 0; i < MANIFEST_CACHE_SLOTS && !j; i++)
                if (slot_matches(&ts->mcache[i], name, &st))
                        j = json_incref(ts->mcache[i].json);
        pthread_mutex_unlock(&ts->mlock);
        if (j)
                return j;

        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return NULL;
        n = read_file_at(ts->dirfd, path, buf, (size_t)st.st_size + 1);
        if (n < 0)
                return NULL;
        j = json_loads(buf, JSON_REJECT_DUPLICATES, NULL);
        if (j && (!json_is_object(j) || !json_is_array(json_object_get(j, "layers")))) {
                json_decref(j);
                return NULL;
        }
        if (!j)
                return NULL;
        /* remember it under the stat taken before the read: if the file was replaced meanwhile,
         * the next lookup sees another inode and reads again */
        pthread_mutex_lock(&ts->mlock);
        sl = NULL;
        for (size_t i = 0; i < MANIFEST_CACHE_SLOTS && !sl; i++)
                if (strcmp(ts->mcache[i].name, name) == 0)
                        sl = &ts->mcache[i];
        if (!sl)
                sl = &ts->mcache[ts->mnext++ % MANIFEST_CACHE_SLOTS];
        json_decref(sl->json);
        snprintf(sl->name, sizeof sl->name, "%s", name);
        sl->dev = st.st_dev;
        sl->ino = st.st_ino;
        sl->mtim = st.st_mtim;
        sl->size = st.st_size;
        sl->json = json_incref(j);
        pthread_mutex_unlock(&ts->mlock);
        return j;
}

/* The name a lookup of name means: aliases resolved; "x:latest" and "x" are the same template. */
static json_t *manifest_find(struct template_store *ts, const char *name, char *ret_name, size_t size)
{
        const char *canon = template_canonical_name(name);
        char alt[SBX_MAX_TEMPLATE_NAME + 16];
        const char *colon;
        json_t *j;

        if (canon)
                name = canon;
        j = manifest_read(ts, name);
        if (j) {
                snprintf(ret_name, size, "%s", name);
                return j;
        }
        colon = strchr(name, ':');
        if (colon && !strcmp(colon, ":latest"))
                snprintf(alt, sizeof alt, "%.*s", (int)(colon - name), name);
        else if (!colon)
                snprintf(alt, sizeof alt, "%s:latest", name);
        else
                return NULL;
        j = manifest_read(ts, alt);
        if (j)
                snprintf(ret_name, size, "%s", alt);
        return j;
}

static int names_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the published templates that are not in the catalog, sorted. *ret: malloc'd array of
 * malloc'd strings (free each, then the array). */
static int published_names(struct template_store *ts, char ***ret, size_t *ret_n)
{
        _cleanup_close_ int fd = -EBADF;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;

        *ret = NULL;
        *ret_n = 0;
        fd = openat(ts->dirfd, "templates", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);
                char name[SBX_MAX_TEMPLATE_NAME + 1];

                if (len < 6 || strcmp(de->d_name + len - 5, ".json") || len - 5 > SBX_MAX_TEMPLATE_NAME)
                        continue;
                snprintf(name, sizeof name, "%.*s", (int)(len - 5), de->d_name);
                if (template_def_find(name) || !template_name_valid(name))
                        continue;
                if (n == SBX_MAX_TEMPLATES)
                        break;
                if (n == cap) {
                        char **p = realloc(names, (cap ? cap * 2 : 16) * sizeof *names);
                        if (!p)
                                break;
                        names = p;
                        cap = cap ? cap * 2 : 16;
                }
                names[n] = strdup(name);
                if (names[n])
                        n++;
        }
        (void)closedir(d);
        if (n > 0)
                qsort(names, n, sizeof *names, names_cmp);
        *ret = names;
        *ret_n = n;
        return 0;
}

static void names_free(char **names, size_t n)
{
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* 404 naming the templates there are. */
static int unknown_template(struct template_store *ts, const char *name, struct sbx_err *err)
{
        char names[400], **pub = NULL;
        size_t off = 0, n_pub = 0;

        names[0] = '\0';
        for (size_t i = 0; i < N_TEMPLATES && off < sizeof names; i++) {
                int n = snprintf(names + off, sizeof names - off, "%s%s", i ? ", " : "", template_defs[i].name);
                if (n < 0)
                        break;
                off += (size_t)n;
        }
        if (ts)
                (void)published_names(ts, &pub, &n_pub);
        for (size_t i = 0; i < n_pub && off < sizeof names; i++) {
                int n = snprintf(names + off, sizeof names - off, ", %s", pub[i]);
                if (n < 0)
                        break;
                off += (size_t)n;
        }
        names_free(pub, n_pub);
        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "template_not_found", "unknown template '%.64s' (available: %s)",
                            name ? name : "", names);
}

static int manifest_write(struct template_store *ts, const char *name, json_t *m, struct sbx_err *err)
{
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[SBX_MAX_TEMPLATE_NAME + 32], tmp[SBX_MAX_TEMPLATE_NAME + 48];
        int r;

        r = manifest_path(name, path, sizeof path);
        if (r < 0)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "invalid template name '%.64s'", name);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (!text)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (strlen(text) >= MANIFEST_MAX)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "template manifest of '%s' is too large",
                                    name);
        fd = openat(ts->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot create '%s/%s': %m", ts->path, tmp);
        r = write_all(fd, text, strlen(text));
        if (r == 0)
                r = write_all(fd, "\n", 1);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && renameat(ts->dirfd, tmp, ts->dirfd, path) < 0)
                r = -errno;
        if (r < 0) {
                (void)unlinkat(ts->dirfd, tmp, 0);
                return sbx_err_set(err, r, "cannot write '%s/%s': %s", ts->path, path, strerror(-r));
        }
        return 0;
}

int template_publish(struct template_store *ts, const char *name, const char (*layers)[SBX_LAYER_DIGEST_MAX],
                     size_t n_layers, json_t *config, json_t *extra, struct sbx_err *err)
{
        json_t *m, *arr;
        char now[40];
        uint64_t size = 0;
        int r;

        if (!template_name_valid(name))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value",
                                    "invalid template name '%.64s' (lower-case letters, digits, '.', '_', '-', an optional ':tag')",
                                    name ? name : "");
        if (n_layers == 0 || n_layers > SBX_MAX_IMAGE_LAYERS)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "a template has 1 to %d layers, not %zu",
                                    SBX_MAX_IMAGE_LAYERS, n_layers);
        arr = json_array();
        for (size_t i = 0; arr && i < n_layers; i++) {
                struct layer_info info;

                r = layer_get(ts->layers, layers[i], &info, err);
                if (r < 0) {
                        json_decref(arr);
                        return r;
                }
                size += info.size_bytes;
                (void)json_array_append_new(arr, json_string(layers[i]));
        }
        if (!arr)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        format_rfc3339_ms(now_realtime_ms(), now, sizeof now);
        m = json_object();
        if (!m) {
                json_decref(arr);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        if (extra)
                (void)json_object_update(m, extra);
        json_object_set_new(m, "name", json_string(name));
        json_object_set_new(m, "layers", arr);
        json_object_set_new(m, "config", config ? json_deep_copy(config) : json_object());
        json_object_set_new(m, "createdAt", json_string(now));
        json_object_set_new(m, "sizeBytes", json_integer((json_int_t)size));
        r = manifest_write(ts, name, m, err);
        json_decref(m);
        return r;
}

json_t *template_manifest(struct template_store *ts, const char *name, struct sbx_err *err)
{
        char found[SBX_MAX_TEMPLATE_NAME + 16];
        json_t *j = manifest_find(ts, name, found, sizeof found);

        if (!j)
                (void)unknown_template(ts, name, err);
        return j;
}

int template_remove(struct template_store *ts, const char *name, struct sbx_err *err)
{
        char found[SBX_MAX_TEMPLATE_NAME + 16], path[SBX_MAX_TEMPLATE_NAME + 32];
        const struct template_def *def = template_def_find(name);
        json_t *j;

        if (def && def->kind == TEMPLATE_HOST)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "conflict", "template 'host' cannot be removed");
        j = manifest_find(ts, name, found, sizeof found);
        if (!j)
                return unknown_template(ts, name, err);
        json_decref(j);
        if (manifest_path(found, path, sizeof path) < 0 || unlinkat(ts->dirfd, path, 0) < 0)
                return sbx_err_set(err, -errno, "cannot remove template '%s': %m", found);
        return 0;
}

int template_referenced_layers(struct template_store *ts, char (**ret)[SBX_LAYER_DIGEST_MAX], size_t *ret_n,
                               struct sbx_err *err)
{
        char **pub = NULL, (*out)[SBX_LAYER_DIGEST_MAX] = NULL;
        size_t n_pub = 0, n = 0, cap = 0;
        int r;

        r = published_names(ts, &pub, &n_pub);
        if (r < 0)
                return sbx_err_set(err, r, "cannot list templates: %s", strerror(-r));
        for (size_t i = 0; i < N_TEMPLATES + n_pub; i++) {
                const char *name = i < N_TEMPLATES ? template_defs[i].name : pub[i - N_TEMPLATES];
                json_t *m = manifest_read(ts, name), *v;
                size_t k;

                if (!m)
                        continue;
                json_array_foreach (json_object_get(m, "layers"), k, v) {
                        const char *d = json_string_value(v);
                        bool seen = false;

                        if (!d || !layer_digest_valid(d))
                                continue;
                        for (size_t q = 0; q < n && !seen; q++)
                                seen = !strcmp(out[q], d);
                        if (seen)
                                continue;
                        if (n == cap) {
                                void *p = realloc(out, (cap ? cap * 2 : 32) * sizeof *out);
                                if (!p) {
                                        json_decref(m);
                                        names_free(pub, n_pub);
                                        free(out);
                                        return sbx_err_set(err, -ENOMEM, "out of memory");
                                }
                                out = p;
                                cap = cap ? cap * 2 : 32;
                        }
                        snprintf(out[n++], SBX_LAYER_DIGEST_MAX, "%s", d);
                }
                json_decref(m);
        }
        names_free(pub, n_pub);
        *ret = out;
        *ret_n = n;
        return 0;
}

/* ---- the store ---- */

void template__ls_unref(struct ls_ref *r)
{
        if (r && --r->refs == 0) {
                layer_store_free(r->ls);
                free(r);
        }
}

int template_store_open(const char *dir, uv_loop_t *loop, struct template_store **ret, struct sbx_err *err)
{
        _cleanup_free_ struct template_store *ts = NULL;
        char real[PATH_MAX], layers[PATH_MAX + 16];
        int r;

        if (!dir || !*dir || !loop || !ret)
                return sbx_err_set(err, -EINVAL, "invalid arguments to template_store_open");
        r = mkdir_p(dir, 0755, 0755);
        if (r < 0)
                return sbx_err_set(err, r, "cannot create templates directory '%s': %s", dir, strerror(-r));
        if (!realpath(dir, real))
                return sbx_err_set(err, -errno, "cannot resolve templates directory '%s': %s", dir, strerror(errno));
        /* room for "/layers/<64 hex>/root/..." below it */
        if (strlen(real) + 128 >= PATH_MAX)
                return sbx_err_set(err, -ENAMETOOLONG, "templates directory path '%s' is too long", dir);

        ts = calloc(1, sizeof *ts);
        if (!ts)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        ts->loop = loop;
        pthread_mutex_init(&ts->mlock, NULL);
        snprintf(ts->path, sizeof ts->path, "%s", real);
        ts->dirfd = open(ts->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ts->dirfd < 0)
                return sbx_err_set(err, -errno, "cannot open templates directory '%s': %s", ts->path, strerror(errno));
        ts->cbuilds = calloc(N_TEMPLATES, sizeof *ts->cbuilds);
        ts->cfailed = calloc(N_TEMPLATES, sizeof *ts->cfailed);
        ts->clast_error = calloc(N_TEMPLATES, sizeof *ts->clast_error);
        ts->clog = calloc(N_TEMPLATES, sizeof *ts->clog);
        ts->lsr = calloc(1, sizeof *ts->lsr);
        r = ts->cbuilds && ts->cfailed && ts->clast_error && ts->clog && ts->lsr ? 0 : -ENOMEM;
        if (r < 0)
                (void)sbx_err_set(err, r, "out of memory");
        if (r >= 0)
                r = template__ensure_dir(ts->dirfd, "templates", 0755, NULL, err);
        if (r >= 0)
                r = template__ensure_dir(ts->dirfd, "cache", 0755, NULL, err);
        if (r >= 0) {
                snprintf(layers, sizeof layers, "%s/layers", ts->path);
                r = layer_store_open(layers, &ts->lsr->ls, err);
        }
        for (size_t i = 0; r >= 0 && i < N_TEMPLATES; i++)
                if (template_defs[i].kind == TEMPLATE_HOST)
                        r = host_prepare(ts, template_defs[i].name, err);
        if (r < 0) {
                (void)safe_close(ts->dirfd);
                free(ts->cbuilds);
                free(ts->cfailed);
                free(ts->clast_error);
                free(ts->clog);
                if (ts->lsr)
                        layer_store_free(ts->lsr->ls);
                free(ts->lsr);
                return r;
        }
        ts->lsr->refs = 1;
        ts->layers = ts->lsr->ls;
        *ret = TAKE_PTR(ts);
        return 0;
}

struct layer_store *template_store_layers(struct template_store *ts)
{
        return ts ? ts->layers : NULL;
}

int template_lookup(struct template_store *ts, const char *name, struct template_info *ret, struct sbx_err *err)
{
        const struct template_def *def = template_def_find(name);
        struct template_info info = {};
        char found[SBX_MAX_TEMPLATE_NAME + 16];
        json_t *m, *v;
        size_t i;

        if (!ts)
                return sbx_err_set(err, -EINVAL, "no template store");
        if (def && def->kind == TEMPLATE_HOST) {
                static const char *const binds[] = { "/usr", "/etc" };

                snprintf(info.name, sizeof info.name, "%s", def->name);
                if ((size_t)snprintf(info.rootfs, sizeof info.rootfs, "%s/%s/rootfs", ts->path, def->name) >=
                    sizeof info.rootfs)
                        return sbx_err_set(err, -ENAMETOOLONG, "template '%s': path too long", name);
                for (size_t k = 0; k < ELEMENTSOF(binds); k++) {
                        snprintf(info.binds[k].source, sizeof info.binds[k].source, "%s", binds[k]);
                        snprintf(info.binds[k].target, sizeof info.binds[k].target, "%s", binds[k]);
                }
                info.n_binds = ELEMENTSOF(binds);
                *ret = info;
                return 0;
        }
        m = manifest_find(ts, name, found, sizeof found);
        if (!m) {
                size_t idx = def ? (size_t)(def - template_defs) : 0;

                if (!def)
                        return unknown_template(ts, name, err);
                if (ts->cbuilds[idx])
                        return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_not_ready",
                                            "template '%s' is being built (%u%%, %s)", def->name,
                                            ts->cbuilds[idx]->percent, ts->cbuilds[idx]->stage);
                if (ts->cfailed[idx])
                        return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_not_ready",
                                            "template '%s' is not built yet (last build failed: %s)", def->name,
                                            ts->clast_error[idx]);
                return sbx_err_setr(err, -SBX_E_UNAVAILABLE, "template_not_ready", "template '%s' is not built yet",
                                    def->name);
        }
        snprintf(info.name, sizeof info.name, "%.64s", found);
        json_array_foreach (json_object_get(m, "layers"), i, v) {
                const char *d = json_string_value(v);

                if (!d || !layer_digest_valid(d) || info.n_layers == SBX_MAX_IMAGE_LAYERS) {
                        json_decref(m);
                        return sbx_err_set(err, -SBX_E_INTERNAL, "template '%s': its manifest is damaged", found);
                }
                snprintf(info.layers[info.n_layers++], SBX_LAYER_DIGEST_MAX, "%s", d);
        }
        json_decref(m);
        if (info.n_layers == 0)
                return sbx_err_set(err, -SBX_E_INTERNAL, "template '%s' has no layers", found);
        *ret = info;
        return 0;
}

int template_lower_paths(struct template_store *ts, const struct template_info *info, char ***ret, size_t *ret_n)
{
        const char *dir = layer_store_dir(ts->layers);
        size_t n = info->n_layers ? info->n_layers : 1, each = strlen(dir) + 2 + 64 + 8;
        char **paths, *buf;

        paths = malloc(n * sizeof *paths + n * each);
        if (!paths)
                return -ENOMEM;
        buf = (char *)(paths + n);
        if (info->n_layers == 0) {
                paths[0] = buf;
                snprintf(buf, each, "%.*s", (int)each - 1, info->rootfs);
                if (strlen(info->rootfs) >= each) {
                        free(paths);
                        return -ENAMETOOLONG;
                }
        }
        for (size_t i = 0; i < info->n_layers; i++) {
                /* overlay lists the topmost layer first */
                const char *d = info->layers[info->n_layers - 1 - i];

                paths[i] = buf + i * each;
                snprintf(paths[i], each, "%s/%s/root", dir, d + strlen("sha256:"));
        }
        *ret = paths;
        *ret_n = n;
        return 0;
}

int template_status_list(struct template_store *ts, struct template_status *ret, size_t max, size_t *ret_n)
{
        char **pub = NULL;
        size_t n = 0, n_pub = 0;

        (void)published_names(ts, &pub, &n_pub);
        for (size_t i = 0; i < N_TEMPLATES + n_pub && n < max; i++) {
                const struct template_def *def = i < N_TEMPLATES ? &template_defs[i] : NULL;
                const char *name = def ? def->name : pub[i - N_TEMPLATES];
                struct template_status *st = &ret[n++];
                json_t *m;

                memset(st, 0, sizeof *st);
                snprintf(st->name, sizeof st->name, "%s", name);
                st->catalog = def != NULL;
                snprintf(st->source, sizeof st->source, "%s", def ? "catalog" : "spec");
                if (def) {
                        st->description = def->description;
                        st->packages = def->include;
                }
                if (def && def->kind == TEMPLATE_HOST) {
                        st->state = TEMPLATE_AVAILABLE;
                        continue;
                }
                m = manifest_read(ts, name);
                if (m) {
                        const char *src = json_string_value(json_object_get(m, "source"));

                        const char *desc = json_string_value(json_object_get(m, "description"));

                        if (!def && desc) {
                                snprintf(st->desc, sizeof st->desc, "%s", desc);
                                st->description = st->desc;
                        }
                        st->state = TEMPLATE_AVAILABLE;
                        st->size_bytes = (uint64_t)json_integer_value(json_object_get(m, "sizeBytes"));
                        st->n_layers = json_array_size(json_object_get(m, "layers"));
                        snprintf(st->built_at, sizeof st->built_at, "%s",
                                 json_string_value(json_object_get(m, "createdAt")) ?: "");
                        if (src)
                                snprintf(st->source, sizeof st->source, "%s", src);
                        json_decref(m);
                } else if (def && ts->cbuilds[i]) {
                        st->state = TEMPLATE_BUILDING;
                        st->percent = ts->cbuilds[i]->percent;
                        snprintf(st->stage, sizeof st->stage, "%s", ts->cbuilds[i]->stage);
                } else if (def && ts->cfailed[i]) {
                        st->state = TEMPLATE_FAILED;
                        snprintf(st->error, sizeof st->error, "%s", ts->clast_error[i]);
                } else
                        st->state = TEMPLATE_NOT_BUILT;
        }
        names_free(pub, n_pub);
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

/* ---- catalog builds ---- */

static void cbuild_progress(const char *label, unsigned percent, const char *stage, void *data)
{
        struct cbuild *cb = data;

        cb->percent = percent;
        snprintf(cb->stage, sizeof cb->stage, "%s", stage);
        cb->notifying = true;
        for (struct cwaiter *w = cb->waiters; w && cb->ts;) {
                if (w->progress)
                        w->progress(template_defs[cb->idx].name, percent, stage, w->data);
                if (cb->finished) /* a callback freed the store: cbuild_done ran and freed the waiters */
                        break;
                w = w->next;
        }
        cb->notifying = false;
        if (cb->finished)
                free(cb);
}

static void cbuild_done(int result, const char *digest, const struct sbx_err *lerr, void *data)
{
        struct cbuild *cb = data;
        struct template_store *ts = cb->ts;
        const struct template_def *def = &template_defs[cb->idx];
        struct sbx_err err = {};
        struct cwaiter *list = cb->waiters;

        if (lerr && lerr->code)
                err = *lerr;
        if (result >= 0 && ts) {
                char layer[1][SBX_LAYER_DIGEST_MAX];
                struct layer_info info;
                json_t *extra, *inc = json_array();
                char buf[256], *save = NULL;

                snprintf(layer[0], sizeof layer[0], "%s", digest);
                snprintf(buf, sizeof buf, "%s", def->include);
                for (char *t = strtok_r(buf, ",", &save); t && inc; t = strtok_r(NULL, ",", &save))
                        (void)json_array_append_new(inc, json_string(t));
                extra = json_pack("{s:s, s:s, s:s, s:s, s:o*}", "source", "catalog", "description", def->description,
                                  "suite", def->suite, "variant", def->variant, "include", inc);
                if (layer_get(ts->layers, digest, &info, NULL) >= 0 && extra) {
                        _cleanup_close_ int rootfd = open(info.root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        json_t *pk = rootfd >= 0 ? dpkg_packages_at(rootfd) : NULL;
                        if (pk)
                                json_object_set_new(extra, "packages", pk);
                }
                result = template_publish(ts, def->name, (const char(*)[SBX_LAYER_DIGEST_MAX])layer, 1, NULL, extra,
                                          &err);
                json_decref(extra);
        }
        if (digest && ts)
                layer_release(ts->layers, digest); /* the manifest references it now (or it failed) */
        if (result < 0 && !err.code)
                (void)sbx_err_set(&err, result, "cannot build template '%s'", def->name);
        else if (result < 0 && strncmp(err.msg, "cannot build template", 21) != 0)
                (void)sbx_err_wrap(&err, "cannot build template '%s'", def->name);
        if (ts) {
                ts->cbuilds[cb->idx] = NULL;
                ts->cfailed[cb->idx] = result < 0;
                snprintf(ts->clog[cb->idx], sizeof ts->clog[0], "%s", result < 0 ? ts->last_log : "");
                snprintf(ts->clast_error[cb->idx], sizeof ts->clast_error[0], "%s", result < 0 ? err.msg : "");
        }
        if (cb->notifying)
                cb->finished = true;
        else
                free(cb);
        while (list) {
                struct cwaiter *w = list;

                list = w->next;
                w->done(def->name, result, result < 0 ? &err : NULL, w->data);
                free(w);
        }
}

int template_build(struct template_store *ts, const char *name, template_progress_fn progress, template_done_fn done,
                   void *data, struct sbx_err *err)
{
        const struct template_def *def = template_def_find(name);
        struct template_info info;
        struct cwaiter *w;
        size_t idx;
        int r;

        if (!ts || !done)
                return sbx_err_set(err, -EINVAL, "invalid arguments to template_build");
        if (!def)
                return unknown_template(ts, name, err);
        if (ts->closing)
                return sbx_err_set(err, -ECANCELED, "template store is closing");
        if (template_lookup(ts, def->name, &info, NULL) >= 0) {
                done(def->name, 0, NULL, data);
                return 0;
        }
        idx = (size_t)(def - template_defs);
        w = calloc(1, sizeof *w);
        if (!w)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        w->progress = progress;
        w->done = done;
        w->data = data;
        if (!ts->cbuilds[idx]) {
                struct cbuild *cb = calloc(1, sizeof *cb);

                if (!cb) {
                        free(w);
                        return sbx_err_set(err, -ENOMEM, "out of memory");
                }
                cb->ts = ts;
                cb->idx = idx;
                snprintf(cb->stage, sizeof cb->stage, "starting");
                cb->waiters = w;
                ts->cbuilds[idx] = cb;
                ts->cfailed[idx] = false;
                r = template_debian_layer(ts, def->suite, def->variant, def->include, cbuild_progress, cbuild_done, cb,
                                          err);
                if (r < 0) {
                        ts->cbuilds[idx] = NULL;
                        free(cb);
                        free(w);
                        (void)sbx_err_wrap(err, "cannot build template '%s'", def->name);
                        return r;
                }
                return 0; /* a cache hit may already have called done */
        }
        w->next = ts->cbuilds[idx]->waiters;
        ts->cbuilds[idx]->waiters = w;
        return 0;
}

int template_build_log(struct template_store *ts, const char *name, char *buf, size_t size)
{
        const struct template_def *def = ts ? template_def_find(name) : NULL;

        if (!def)
                return -SBX_E_NOT_FOUND;
        if (size == 0)
                return -ENOBUFS;
        snprintf(buf, size, "%s", ts->clog[def - template_defs]);
        return (int)strlen(buf);
}

void template_store_free(struct template_store *ts)
{
        if (!ts || ts->closing) /* a done callback below freeing the store again is a no-op */
                return;
        ts->closing = true;
        for (size_t i = 0; i < N_TEMPLATES; i++)
                if (ts->cbuilds[i])
                        ts->cbuilds[i]->ts = NULL;
        template__debian_stop_all(ts); /* the catalog builds hear -ECANCELED through cbuild_done */
        for (size_t i = 0; i < MANIFEST_CACHE_SLOTS; i++)
                json_decref(ts->mcache[i].json);
        pthread_mutex_destroy(&ts->mlock);
        (void)safe_close(ts->dirfd);
        free(ts->cbuilds);
        free(ts->cfailed);
        free(ts->clast_error);
        free(ts->clog);
        template__ls_unref(ts->lsr);
        free(ts);
}
