// SPDX-License-Identifier: Apache-2.0
/*
 * The layer store (layer.h): content-addressed read-only trees under one directory, their
 * layer.json records, in-memory holds and garbage collection. The canonical tar stream and the
 * tree walk that produces it live in layer-tar.c (layer-internal.h); this file publishes a work dir
 * with one rename and removes layers by first renaming them out of the namespace, so a crash at
 * any point leaves either a whole layer or a tmp-* dir that the next layer_store_open() removes.
 * It never follows a symlink, never deletes across a mount point and does not log.
 */
#include "images/layer.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/util.h"
#include "images/layer-internal.h"

/* layer.json is a few hundred bytes; anything past this is not ours. */
#define LAYER_JSON_MAX (64 * 1024)
/* Distinct digests held at once (each hold is one live reference: a sandbox, an export ...). */
#define LAYER_MAX_HELD 65536
/* Layers listed by layer_list / considered by one layer_gc. */
#define LAYER_MAX_LAYERS (1U << 20)
#define LAYER_HEX_LEN 64
#define LAYER_TMP_PREFIX "tmp-"
#define LAYER_GC_PREFIX "tmp-gc-"
#define LAYER_RM_PREFIX "tmp-rm-"
/* The remover descends this deep, then moves the rest up to DIR (bounds fds and DIR buffers). */
#define REMOVE_MAX_DEPTH 16

struct layer_hold_slot {
        char hex[LAYER_HEX_LEN + 1];
        unsigned count;
};

struct layer_store {
        char dir[PATH_MAX];
        int dir_fd;                    /* owned: DIR, O_RDONLY | O_DIRECTORY */
        locale_t utf8;                 /* owned: pins libarchive's header charset (layer-tar.c) */
        pthread_mutex_t lock;          /* serialises the hold table and every rename in or out of DIR */
        struct layer_hold_slot *holds; /* under lock */
        size_t n_holds, cap_holds;
};

/* ---- small helpers ---- */

bool layer_digest_valid(const char *digest)
{
        if (!digest || strncmp(digest, "sha256:", 7) != 0)
                return false;
        for (size_t i = 0; i < LAYER_HEX_LEN; i++) {
                char c = digest[7 + i];

                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                        return false;
        }
        return digest[7 + LAYER_HEX_LEN] == '\0';
}

static bool hex_name_valid(const char *name)
{
        char digest[SBX_LAYER_DIGEST_MAX];

        if (strlen(name) != LAYER_HEX_LEN)
                return false;
        snprintf(digest, sizeof digest, "sha256:%s", name);
        return layer_digest_valid(digest);
}

/* DIR/<hex>/root (layer_store_open checked that it fits). */
static void root_path_of(const struct layer_store *ls, const char *hex, char *buf, size_t size)
{
        int n = snprintf(buf, size, "%s/%.64s/root", ls->dir, hex);

        if (n < 0 || (size_t)n >= size)
                buf[0] = '\0'; /* not reached */
}

static bool has_prefix(const char *s, const char *prefix)
{
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The name of a work dir below DIR ("tmp-XXXXXX"), or NULL if tmp is not one of ours. */
static const char *tmp_name(const struct layer_store *ls, const char *tmp)
{
        size_t n = strlen(ls->dir);
        const char *name;

        if (!tmp || strncmp(tmp, ls->dir, n) != 0 || tmp[n] != '/')
                return NULL;
        name = tmp + n + 1;
        if (!has_prefix(name, LAYER_TMP_PREFIX) || has_prefix(name, LAYER_GC_PREFIX) ||
            has_prefix(name, LAYER_RM_PREFIX) || strchr(name, '/') || strlen(name) > NAME_MAX)
                return NULL;
        return name;
}

static int mnt_id_of(int fd, uint64_t *ret_dev, uint64_t *ret_mnt)
{
        struct statx sx;

        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) < 0)
                return -errno;
        *ret_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
        *ret_mnt = (sx.stx_mask & STATX_MNT_ID) ? sx.stx_mnt_id : 0; /* 0: kernel < 5.8, compare devices only */
        return 0;
}

struct remover {
        int top_fd;        /* DIR */
        char (*moved)[32]; /* subtrees moved up to DIR to bound the depth (names below DIR) */
        size_t n_moved, cap_moved;
};

/* Move parent/name up to DIR/tmp-rm-XXXXXXXXXXXX, to be removed from there (the depth stays bounded). */
static int remove_later(struct remover *rm, int parent, const char *name)
{
        uint8_t rnd[6];
        int r;

        if (rm->n_moved == rm->cap_moved) {
                size_t cap = rm->cap_moved ? rm->cap_moved * 2 : 8;
                char(*n)[32] = reallocarray(rm->moved, cap, sizeof *n);

                if (!n)
                        return -ENOMEM;
                rm->moved = n;
                rm->cap_moved = cap;
        }
        for (int attempt = 0; attempt < 16; attempt++) {
                r = sbx_random_bytes(rnd, sizeof rnd);
                if (r < 0)
                        return r;
                snprintf(rm->moved[rm->n_moved], sizeof rm->moved[0], LAYER_RM_PREFIX "%02x%02x%02x%02x%02x%02x",
                         rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
                /* fails (EXDEV, EBUSY) for a mount point: then it stays where it is */
                if (renameat2(parent, name, rm->top_fd, rm->moved[rm->n_moved], RENAME_NOREPLACE) == 0) {
                        rm->n_moved++;
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

/*
 * Remove parent/name and everything below it. Never follows a symlink and never descends into a
 * directory on another mount than its parent (parent_dev/parent_mnt): such a subtree is left in
 * place and -EBUSY returned. Subtrees deeper than REMOVE_MAX_DEPTH are moved up to DIR and
 * removed from there (store_remove), so the stack, the fds and the DIR buffers stay bounded.
 */
static int tree_remove_at(struct remover *rm, int parent, uint64_t parent_dev, uint64_t parent_mnt, const char *name,
                          unsigned depth)
{
        _cleanup_close_ int fd = -EBADF;
        uint64_t dev, mnt;
        struct dirent *de;
        bool retried = false;
        DIR *d;
        int r = 0, q;

        if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
                return 0;
        if (errno != EISDIR)
                return -errno;
        fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        q = mnt_id_of(fd, &dev, &mnt);
        if (q < 0)
                return q;
        if (dev != parent_dev || (mnt && parent_mnt && mnt != parent_mnt))
                return -EBUSY;
        if (depth >= REMOVE_MAX_DEPTH)
                return remove_later(rm, parent, name);
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF; /* d owns it */
again:
        while ((errno = 0, de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN)
                        q = tree_remove_at(rm, dirfd(d), dev, mnt, de->d_name, depth + 1);
                else if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT)
                        q = errno == EISDIR ? tree_remove_at(rm, dirfd(d), dev, mnt, de->d_name, depth + 1) : -errno;
                else
                        q = 0;
                if (q < 0 && r == 0)
                        r = q;
        }
        if (errno != 0 && r == 0)
                r = -errno;
        if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT) {
                /* readdir may miss entries that moved while we deleted: one more pass */
                if (errno == ENOTEMPTY && r == 0 && !retried) {
                        retried = true;
                        rewinddir(d);
                        goto again;
                }
                if (r == 0)
                        r = -errno;
        }
        (void)closedir(d);
        return r;
}

/* Remove DIR/name (a tmp-* dir) entirely. */
static int store_remove(struct layer_store *ls, const char *name)
{
        struct remover rm = { .top_fd = ls->dir_fd };
        uint64_t dev, mnt;
        int r, q;

        r = mnt_id_of(ls->dir_fd, &dev, &mnt);
        if (r < 0)
                return r;
        r = tree_remove_at(&rm, ls->dir_fd, dev, mnt, name, 0);
        for (size_t i = 0; i < rm.n_moved; i++) { /* n_moved grows while deep trees are taken apart */
                char moved[sizeof rm.moved[0]];

                memcpy(moved, rm.moved[i], sizeof moved);
                q = tree_remove_at(&rm, ls->dir_fd, dev, mnt, moved, 0);
                if (q < 0 && r == 0)
                        r = q;
        }
        free(rm.moved);
        return r;
}

/* ---- holds (callers hold ls->lock) ---- */

static struct layer_hold_slot *hold_find(struct layer_store *ls, const char *hex)
{
        for (size_t i = 0; i < ls->n_holds; i++)
                if (!strcmp(ls->holds[i].hex, hex))
                        return &ls->holds[i];
        return NULL;
}

static unsigned hold_count(struct layer_store *ls, const char *hex)
{
        struct layer_hold_slot *h = hold_find(ls, hex);

        return h ? h->count : 0;
}

/* Make room for one more slot, so that hold_add() cannot fail after a rename. */
static int hold_reserve(struct layer_store *ls)
{
        struct layer_hold_slot *n;
        size_t cap;

        if (ls->n_holds < ls->cap_holds)
                return 0;
        if (ls->n_holds >= LAYER_MAX_HELD)
                return -SBX_E_LIMIT;
        cap = ls->cap_holds ? ls->cap_holds * 2 : 16;
        n = reallocarray(ls->holds, cap, sizeof *n);
        if (!n)
                return -ENOMEM;
        ls->holds = n;
        ls->cap_holds = cap;
        return 0;
}

static void hold_add(struct layer_store *ls, const char *hex)
{
        struct layer_hold_slot *h = hold_find(ls, hex);

        if (h) {
                h->count++;
                return;
        }
        assert(ls->n_holds < ls->cap_holds); /* hold_reserve() ran */
        h = &ls->holds[ls->n_holds++];
        snprintf(h->hex, sizeof h->hex, "%s", hex);
        h->count = 1;
}

/* ---- layer.json ---- */

/*
 * Read DIR/<hex>: layer.json and root/. Anything that is not a complete layer (absent, no or an
 * invalid layer.json, no root/ dir) is -SBX_E_NOT_FOUND; other errors are passed on. holds is
 * left 0 (the caller fills it under the lock).
 */
static int info_read(struct layer_store *ls, const char *hex, struct layer_info *ret, struct sbx_err *err)
{
        _cleanup_close_ int dfd = -EBADF, fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        json_t *root = NULL;
        json_error_t jerr;
        struct stat st;
        const char *digest, *created, *source;
        json_int_t tar_bytes, size_bytes, entries;
        size_t len = 0;
        ssize_t n;
        int r;

        dfd = openat(ls->dir_fd, hex, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd < 0) {
                if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found", "layer 'sha256:%s' not found",
                                            hex);
                return sbx_err_set(err, -errno, "cannot open layer '%s/%s': %m", ls->dir, hex);
        }
        fd = openat(dfd, "layer.json", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT || errno == ELOOP)
                        return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found",
                                            "layer 'sha256:%s' not found (no layer.json)", hex);
                return sbx_err_set(err, -errno, "cannot open '%s/%s/layer.json': %m", ls->dir, hex);
        }
        buf = malloc(LAYER_JSON_MAX + 1);
        if (!buf)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        while (len <= LAYER_JSON_MAX) {
                n = read(fd, buf + len, LAYER_JSON_MAX + 1 - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return sbx_err_set(err, -errno, "cannot read '%s/%s/layer.json': %m", ls->dir, hex);
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        if (len > LAYER_JSON_MAX)
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found",
                                    "layer 'sha256:%s' not found (layer.json is too large)", hex);

        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        r = json_unpack(root, "{s:s, s:I, s:I, s:I, s:s, s:s}", "digest", &digest, "tarBytes", &tar_bytes, "sizeBytes",
                        &size_bytes, "entries", &entries, "createdAt", &created, "source", &source);
        if (!root || r < 0 || strncmp(digest, "sha256:", 7) != 0 || strcmp(digest + 7, hex) != 0 || tar_bytes < 0 ||
            size_bytes < 0 || entries < 0 || strlen(created) >= sizeof ret->created_at ||
            strlen(source) >= sizeof ret->source) {
                json_decref(root);
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found",
                                    "layer 'sha256:%s' not found (invalid layer.json)", hex);
        }
        if (fstatat(dfd, "root", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
                json_decref(root);
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found",
                                    "layer 'sha256:%s' not found (no root directory)", hex);
        }

        memset(ret, 0, sizeof *ret);
        snprintf(ret->digest, sizeof ret->digest, "%s", digest);
        root_path_of(ls, hex, ret->root, sizeof ret->root);
        ret->tar_bytes = (uint64_t)tar_bytes;
        ret->size_bytes = (uint64_t)size_bytes;
        ret->entries = (uint64_t)entries;
        snprintf(ret->created_at, sizeof ret->created_at, "%s", created);
        snprintf(ret->source, sizeof ret->source, "%s", source);
        json_decref(root);
        return 0;
}

/* Write <tmp>/layer.json durably. */
static int info_write(int tmp_fd, const char *tmp, const struct layer_info *info, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *s = NULL;
        json_t *o;
        int r;

        o = json_pack("{s:s, s:I, s:I, s:I, s:s, s:s}", "digest", info->digest, "tarBytes", (json_int_t)info->tar_bytes,
                      "sizeBytes", (json_int_t)info->size_bytes, "entries", (json_int_t)info->entries, "createdAt",
                      info->created_at, "source", info->source);
        if (!o)
                return sbx_err_set(err, -ENOMEM, "cannot build layer.json for '%s'", tmp);
        s = json_dump_compact(o);
        json_decref(o);
        if (!s)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        fd = openat(tmp_fd, "layer.json", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot create '%s/layer.json': %m", tmp);
        r = write_all(fd, s, strlen(s));
        if (r == 0)
                r = write_all(fd, "\n", 1);
        if (r < 0)
                return sbx_err_set(err, r, "cannot write '%s/layer.json': %s", tmp, strerror(-r));
        if (fsync(fd) < 0)
                return sbx_err_set(err, -errno, "cannot sync '%s/layer.json': %m", tmp);
        return 0;
}

/* ---- the store ---- */

/* Remove DIR/tmp-* (interrupted commits and collections) and DIR/<hex> without layer.json. */
static void leftovers_remove(struct layer_store *ls)
{
        _cleanup_close_ int fd = -EBADF;
        struct dirent *de;
        DIR *d;

        fd = openat(ls->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return;
        d = fdopendir(fd);
        if (!d)
                return;
        fd = -EBADF;
        while ((de = readdir(d))) {
                char json[LAYER_HEX_LEN + 16];
                struct stat st;

                if (has_prefix(de->d_name, LAYER_TMP_PREFIX)) {
                        (void)store_remove(ls, de->d_name);
                        continue;
                }
                if (!hex_name_valid(de->d_name))
                        continue;
                if (fstatat(ls->dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                /* commit writes layer.json before the rename: a published layer always has one */
                snprintf(json, sizeof json, "%s/layer.json", de->d_name);
                if (fstatat(ls->dir_fd, json, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
                        (void)store_remove(ls, de->d_name);
        }
        (void)closedir(d);
}

int layer_store_open(const char *dir, struct layer_store **ret, struct sbx_err *err)
{
        struct layer_store *ls;
        char real[PATH_MAX];
        int r;

        if (!dir || !*dir || !ret)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_store_open");
        /* DIR itself is root-only: an imported layer may hold set-uid files owned by host uid 0
         * (trees keep sandbox-relative ids), which no host user may reach. */
        r = mkdir_p(dir, 0755, 0700);
        if (r < 0)
                return sbx_err_set(err, r, "cannot create layer directory '%s': %s", dir, strerror(-r));
        if (!realpath(dir, real))
                return sbx_err_set(err, -errno, "cannot resolve layer directory '%s': %m", dir);
        /* room for "/<64 hex>/root" and "/<64 hex>/layer.json" below it */
        if (strlen(real) + LAYER_HEX_LEN + 16 >= PATH_MAX)
                return sbx_err_set(err, -ENAMETOOLONG, "layer directory path '%s' is too long", dir);

        ls = calloc(1, sizeof *ls);
        if (!ls)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        snprintf(ls->dir, sizeof ls->dir, "%s", real);
        ls->dir_fd = open(ls->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ls->dir_fd < 0) {
                r = sbx_err_set(err, -errno, "cannot open layer directory '%s': %m", ls->dir);
                free(ls);
                return r;
        }
        ls->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
        if (ls->utf8 == (locale_t)0) {
                r = sbx_err_set(err, -errno, "cannot load the C.UTF-8 locale: %m");
                (void)close(ls->dir_fd);
                free(ls);
                return r;
        }
        r = pthread_mutex_init(&ls->lock, NULL);
        if (r != 0) {
                freelocale(ls->utf8);
                (void)close(ls->dir_fd);
                free(ls);
                return sbx_err_set(err, -r, "cannot create the layer store lock");
        }
        leftovers_remove(ls);
        *ret = ls;
        return 0;
}

void layer_store_free(struct layer_store *ls)
{
        if (!ls)
                return;
        (void)pthread_mutex_destroy(&ls->lock);
        freelocale(ls->utf8);
        (void)safe_close(ls->dir_fd);
        free(ls->holds);
        free(ls);
}

const char *layer_store_dir(const struct layer_store *ls)
{
        return ls->dir;
}

int layer_tmp_new(struct layer_store *ls, char *ret_tmp, size_t size, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF, rfd = -EBADF;
        char path[PATH_MAX];
        struct stat st;
        int r;

        if (!ls || !ret_tmp)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_tmp_new");
        if ((size_t)snprintf(path, sizeof path, "%s/" LAYER_TMP_PREFIX "XXXXXX", ls->dir) >= sizeof path ||
            strlen(path) >= size)
                return sbx_err_set(err, -ENAMETOOLONG, "no room for a work dir path below '%s'", ls->dir);
        if (!mkdtemp(path))
                return sbx_err_set(err, -errno, "cannot create a work dir below '%s': %m", ls->dir);
        fd = openat(ls->dir_fd, strrchr(path, '/') + 1, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || mkdirat(fd, "root", 0755) < 0)
                goto fail;
        rfd = openat(fd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rfd < 0 || fstat(rfd, &st) < 0)
                goto fail;
        /* mkdir's mode went through the umask; a set-gid DIR would pass its group on */
        if ((st.st_mode & 07777) != 0755 && fchmod(rfd, 0755) < 0)
                goto fail;
        if ((st.st_uid != 0 || st.st_gid != 0) && fchown(rfd, 0, 0) < 0)
                goto fail;
        snprintf(ret_tmp, size, "%s", path);
        return 0;
fail:
        r = sbx_err_set(err, -errno, "cannot prepare work dir '%s': %m", path);
        (void)store_remove(ls, strrchr(path, '/') + 1);
        return r;
}

void layer_discard(struct layer_store *ls, const char *tmp)
{
        const char *name;

        if (!ls || !tmp)
                return;
        name = tmp_name(ls, tmp);
        if (name)
                (void)store_remove(ls, name);
}

int layer_commit(struct layer_store *ls, const char *tmp, const char *source, struct layer_info *ret,
                 struct sbx_err *err)
{
        _cleanup_close_ int tmp_fd = -EBADF, root_fd = -EBADF;
        struct layer_tree_result res;
        struct layer_info info;
        const char *name, *hex;
        char root_path[PATH_MAX];
        int r;

        if (!ls || !ret)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_commit");
        name = tmp_name(ls, tmp);
        if (!name)
                return sbx_err_set(err, -EINVAL, "'%s' is not a work dir of the layer store '%s'", tmp ? tmp : "",
                                   ls->dir);
        if (!source)
                source = "";
        if (strlen(source) >= SBX_LAYER_SOURCE_MAX || !utf8_valid(source, strlen(source)))
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_layer",
                                    "layer source must be valid UTF-8 of at most %d bytes", SBX_LAYER_SOURCE_MAX - 1);
        tmp_fd = openat(ls->dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (tmp_fd < 0)
                return sbx_err_set(err, -errno, "cannot open work dir '%s': %m", tmp);
        root_fd = openat(tmp_fd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0)
                return sbx_err_set(err, -errno, "cannot open '%s/root': %m", tmp);
        if ((size_t)snprintf(root_path, sizeof root_path, "%s/root", tmp) >= sizeof root_path)
                return sbx_err_set(err, -ENAMETOOLONG, "work dir path '%s' is too long", tmp);

        r = layer__tree_stream(root_fd, root_path, LAYER_TREE_NORMALISE, ls->utf8, NULL, NULL, &res, err);
        if (r < 0)
                return r;

        memset(&info, 0, sizeof info);
        snprintf(info.digest, sizeof info.digest, "%s", res.digest);
        hex = info.digest + 7;
        root_path_of(ls, hex, info.root, sizeof info.root);
        info.tar_bytes = res.tar_bytes;
        info.size_bytes = res.size_bytes;
        info.entries = res.entries;
        format_rfc3339_ms(now_realtime_ms(), info.created_at, sizeof info.created_at);
        snprintf(info.source, sizeof info.source, "%s", source);
        r = info_write(tmp_fd, tmp, &info, err);
        if (r < 0)
                return r;

        /* the rename and the hold are one step for layer_gc, which decides under the same lock */
        pthread_mutex_lock(&ls->lock);
        r = hold_reserve(ls);
        if (r < 0) {
                pthread_mutex_unlock(&ls->lock);
                return sbx_err_set(err, r, "cannot hold layer '%s': too many held layers", info.digest);
        }
        if (renameat2(ls->dir_fd, name, ls->dir_fd, hex, RENAME_NOREPLACE) == 0) {
                hold_add(ls, hex);
                info.holds = hold_count(ls, hex);
                pthread_mutex_unlock(&ls->lock);
                if (fsync(ls->dir_fd) < 0) {
                        r = sbx_err_set(err, -errno, "cannot sync '%s': %m", ls->dir);
                        layer_release(ls, info.digest);
                        return r;
                }
                *ret = info;
                return 0;
        }
        if (errno != EEXIST) {
                r = -errno;
                pthread_mutex_unlock(&ls->lock);
                return sbx_err_set(err, r, "cannot publish '%s' as '%s/%s': %s", tmp, ls->dir, hex, strerror(-r));
        }
        /* Same content exists already: hold and return it, drop ours. */
        hold_add(ls, hex);
        pthread_mutex_unlock(&ls->lock);
        r = info_read(ls, hex, &info, err);
        if (r < 0) {
                layer_release(ls, res.digest);
                return r;
        }
        tmp_fd = safe_close(tmp_fd);
        root_fd = safe_close(root_fd);
        (void)store_remove(ls, name);
        pthread_mutex_lock(&ls->lock);
        info.holds = hold_count(ls, hex);
        pthread_mutex_unlock(&ls->lock);
        *ret = info;
        return 0;
}

int layer_get(struct layer_store *ls, const char *digest, struct layer_info *ret, struct sbx_err *err)
{
        struct layer_info info;
        int r;

        if (!ls || !ret)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_get");
        if (!layer_digest_valid(digest))
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found", "layer '%s' not found",
                                    digest ? digest : "");
        r = info_read(ls, digest + 7, &info, err);
        if (r < 0)
                return r;
        pthread_mutex_lock(&ls->lock);
        info.holds = hold_count(ls, digest + 7);
        pthread_mutex_unlock(&ls->lock);
        *ret = info;
        return 0;
}

static int info_cmp(const void *a, const void *b)
{
        return strcmp(((const struct layer_info *)a)->digest, ((const struct layer_info *)b)->digest);
}

int layer_list(struct layer_store *ls, struct layer_info **ret, size_t *ret_n, struct sbx_err *err)
{
        _cleanup_free_ struct layer_info *v = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (!ls || !ret || !ret_n)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_list");
        fd = openat(ls->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open layer directory '%s': %m", ls->dir);
        d = fdopendir(fd);
        if (!d)
                return sbx_err_set(err, -errno, "cannot read layer directory '%s': %m", ls->dir);
        fd = -EBADF;
        while ((errno = 0, de = readdir(d))) {
                if (!hex_name_valid(de->d_name))
                        continue;
                if (n == cap) {
                        struct layer_info *nv;

                        if (cap >= LAYER_MAX_LAYERS) {
                                r = sbx_err_set(err, -SBX_E_LIMIT, "more than %u layers in '%s'", LAYER_MAX_LAYERS,
                                                ls->dir);
                                break;
                        }
                        cap = cap ? cap * 2 : 16;
                        nv = reallocarray(v, cap, sizeof *v);
                        if (!nv) {
                                r = sbx_err_set(err, -ENOMEM, "out of memory");
                                break;
                        }
                        v = nv;
                }
                r = info_read(ls, de->d_name, &v[n], NULL);
                if (r == -SBX_E_NOT_FOUND) { /* not (or no longer) a layer */
                        r = 0;
                        continue;
                }
                if (r < 0) {
                        r = sbx_err_set(err, r, "cannot read layer '%s/%s': %s", ls->dir, de->d_name, strerror(-r));
                        break;
                }
                n++;
        }
        if (r == 0 && errno != 0)
                r = sbx_err_set(err, -errno, "cannot read layer directory '%s': %m", ls->dir);
        (void)closedir(d);
        if (r < 0)
                return r;
        if (n > 0)
                qsort(v, n, sizeof *v, info_cmp);
        pthread_mutex_lock(&ls->lock);
        for (size_t i = 0; i < n; i++)
                v[i].holds = hold_count(ls, v[i].digest + 7);
        pthread_mutex_unlock(&ls->lock);
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

int layer_hold(struct layer_store *ls, const char *digest, struct sbx_err *err)
{
        char json[LAYER_HEX_LEN + 16];
        struct stat st;
        int r;

        if (!ls)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_hold");
        if (!layer_digest_valid(digest))
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found", "layer '%s' not found",
                                    digest ? digest : "");
        snprintf(json, sizeof json, "%s/layer.json", digest + 7);
        /* checked under the lock: gc renames layers away only while holding it */
        pthread_mutex_lock(&ls->lock);
        if (fstatat(ls->dir_fd, json, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode)) {
                pthread_mutex_unlock(&ls->lock);
                return sbx_err_setr(err, -SBX_E_NOT_FOUND, "layer_not_found", "layer '%s' not found", digest);
        }
        r = hold_reserve(ls);
        if (r == 0)
                hold_add(ls, digest + 7);
        pthread_mutex_unlock(&ls->lock);
        if (r < 0)
                return sbx_err_set(err, r, "cannot hold layer '%s': too many held layers", digest);
        return 0;
}

void layer_release(struct layer_store *ls, const char *digest)
{
        struct layer_hold_slot *h;

        if (!ls || !layer_digest_valid(digest))
                return;
        pthread_mutex_lock(&ls->lock);
        h = hold_find(ls, digest + 7);
        if (h && --h->count == 0)
                *h = ls->holds[--ls->n_holds];
        pthread_mutex_unlock(&ls->lock);
}

static bool digest_listed(const char *digest, const char *const *keep, size_t n_keep)
{
        for (size_t i = 0; i < n_keep; i++)
                if (keep[i] && !strcmp(keep[i], digest))
                        return true;
        return false;
}

static bool digest_in(const char *digest, const char (*keep)[SBX_LAYER_DIGEST_MAX], size_t n_keep)
{
        for (size_t i = 0; i < n_keep; i++)
                if (strcmp(keep[i], digest) == 0)
                        return true;
        return false;
}

static int gc(struct layer_store *ls, const char *const *keep, size_t n_keep, layer_keep_fn keep_fn, void *data,
              uint64_t *ret_freed, struct sbx_err *err)
{
        _cleanup_free_ struct layer_info *v = NULL;
        _cleanup_free_ char(*victims)[sizeof LAYER_GC_PREFIX + 16] = NULL;
        _cleanup_free_ char(*keep2)[SBX_LAYER_DIGEST_MAX] = NULL;
        size_t n = 0, n_victims = 0, n_keep2 = 0;
        uint64_t freed = 0;
        int r;

        if (!ls || (n_keep > 0 && !keep))
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_gc");
        /* layer.json never changes, so it is read outside the lock; only the decision is inside */
        r = layer_list(ls, &v, &n, err);
        if (r < 0)
                return r;
        if (n == 0)
                goto done;
        victims = calloc(n, sizeof *victims);
        if (!victims)
                return sbx_err_set(err, -ENOMEM, "out of memory");

        pthread_mutex_lock(&ls->lock);
        /* the keep list is made under the lock: a release (which takes it too) that follows a
         * publish is then seen either as a hold or through the published reference */
        if (keep_fn) {
                r = keep_fn(data, &keep2, &n_keep2);
                if (r < 0) {
                        pthread_mutex_unlock(&ls->lock);
                        return sbx_err_set(err, r, "cannot list the layers in use: %s", strerror(-r));
                }
        }
        for (size_t i = 0; i < n; i++) {
                const char *hex = v[i].digest + 7;
                uint8_t rnd[8];

                if (hold_count(ls, hex) > 0 || digest_listed(v[i].digest, keep, n_keep) ||
                    digest_in(v[i].digest, (const char(*)[SBX_LAYER_DIGEST_MAX])keep2, n_keep2))
                        continue;
                /* out of the namespace first: a crash mid-removal leaves a tmp-* dir, never half a layer */
                for (int attempt = 0; attempt < 16; attempt++) {
                        r = sbx_random_bytes(rnd, sizeof rnd);
                        if (r < 0)
                                break;
                        snprintf(victims[n_victims], sizeof victims[0], LAYER_GC_PREFIX "%02x%02x%02x%02x%02x%02x",
                                 rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
                        if (renameat2(ls->dir_fd, hex, ls->dir_fd, victims[n_victims], RENAME_NOREPLACE) == 0) {
                                r = 0;
                                break;
                        }
                        r = -errno;
                        if (r != -EEXIST)
                                break;
                }
                if (r < 0)
                        continue; /* vanished meanwhile, or cannot be moved: not collected this time */
                n_victims++;
                freed += v[i].size_bytes;
        }
        pthread_mutex_unlock(&ls->lock);

        for (size_t i = 0; i < n_victims; i++)
                (void)store_remove(ls, victims[i]); /* what stays (another mount below) goes at the next open */
done:
        if (ret_freed)
                *ret_freed = freed;
        return (int)n_victims;
}

int layer_gc(struct layer_store *ls, const char *const *keep, size_t n_keep, uint64_t *ret_freed, struct sbx_err *err)
{
        return gc(ls, keep, n_keep, NULL, NULL, ret_freed, err);
}

int layer_gc_with(struct layer_store *ls, layer_keep_fn keep_fn, void *data, uint64_t *ret_freed,
                  struct sbx_err *err)
{
        if (!keep_fn)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_gc_with");
        return gc(ls, NULL, 0, keep_fn, data, ret_freed, err);
}

int layer_write_tar(struct layer_store *ls, const char *digest, layer_write_fn write_fn, void *data,
                    struct sbx_err *err)
{
        _cleanup_close_ int root_fd = -EBADF;
        struct layer_tree_result res;
        struct layer_info info;
        int r;

        if (!ls || !write_fn)
                return sbx_err_set(err, -EINVAL, "invalid arguments to layer_write_tar");
        /* held while streaming so that a concurrent gc cannot pull the tree away */
        r = layer_hold(ls, digest, err);
        if (r < 0)
                return r;
        r = info_read(ls, digest + 7, &info, err);
        if (r < 0)
                goto out;
        root_fd = open(info.root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (root_fd < 0) {
                r = sbx_err_set(err, -errno, "cannot open '%s': %m", info.root);
                goto out;
        }
        r = layer__tree_stream(root_fd, info.root, 0, ls->utf8, write_fn, data, &res, err);
        if (r < 0)
                goto out;
        if (strcmp(res.digest, info.digest) != 0 || res.tar_bytes != info.tar_bytes)
                r = sbx_err_setr(err, -EIO, "layer_corrupt",
                                 "layer '%s' is corrupt: its tree hashes to '%s' (%llu bytes, expected %llu)",
                                 info.digest, res.digest, (unsigned long long)res.tar_bytes,
                                 (unsigned long long)info.tar_bytes);
out:
        layer_release(ls, digest);
        return r;
}
