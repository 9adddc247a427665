// SPDX-License-Identifier: Apache-2.0
/*
 * Applies one image layer (a tar stream read through libarchive) into a fresh layer work tree
 * (oci-internal.h). Entries are written with archive_write_disk under names this file rewrites to
 * "<root>/<cleaned relative name>", so nothing depends on the process's working directory (the
 * daemon's threads share it) and ".." never reaches the disk; libarchive's SECURE_SYMLINKS check
 * refuses writing through a symlink made earlier in the layer. Whiteout entries are collected
 * and applied after the layer's other entries with openat chains that never follow a symlink.
 * Parents missing from the tar are made here (0755, mtime 0) so that importing the same image
 * twice gives the same tree. It never changes the working directory and does not log.
 */
#include "images/oci-internal.h"

#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "common/cleanup.h"

/* Entries in one layer tar (a full Debian tree has ~100k; the largest public images ~1M). */
#define APPLY_MAX_ENTRIES (4U << 20)
/* Whiteouts and opaque markers in one layer. */
#define APPLY_MAX_WHITEOUTS (1U << 20)
/* Parent directories the tar does not list, made by us. */
#define APPLY_MAX_IMPLICIT_DIRS (1U << 18)
/* Layer trees hold sandbox-relative ids; anything above maps to the overflow id. */
#define APPLY_ID_RANGE 65536
#define APPLY_OVERFLOW_ID 65534

#define WHITEOUT_PREFIX ".wh."
#define WHITEOUT_META_PREFIX ".wh..wh."
#define WHITEOUT_OPAQUE ".wh..wh..opq"
#define OPAQUE_XATTR "user.overlay.opaque"

/* archive_write_disk flags: owner, mode (suid too: we run as root), mtime; refuse writing
 * through symlinks and ".." (we reject ".." ourselves first). Overwriting stays allowed: a later
 * entry for the same name wins, as in docker. */
#define APPLY_DISK_FLAGS                                                                                         \
        (ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_SYMLINKS | \
         ARCHIVE_EXTRACT_SECURE_NODOTDOT)

struct whiteout {
        char *parent; /* relative, "" = root */
        char *name;   /* NULL: the parent is opaque */
};

struct dirset_slot {
        char *path;    /* NULL = free slot */
        bool explicit; /* the tar listed it after we made it: libarchive owns its metadata */
};

/* Open-addressing set of the directories we made (paths relative to root). */
struct dirset {
        struct dirset_slot *slots;
        size_t cap; /* power of two, or 0 */
        size_t n;
};

struct apply {
        const char *root; /* real path, no trailing '/' */
        size_t root_len;
        int rootfd; /* owned */
        const char *what;
        struct sbx_err *err;
        struct archive *aw;  /* owned */
        struct whiteout *wh; /* owned */
        size_t n_wh, cap_wh;
        struct dirset made;
        bool have_parent_ok;
        char parent_ok[PATH_MAX]; /* the last parent seen to be a directory */
        char rel[PATH_MAX];
        char rel_link[PATH_MAX];
        char full[PATH_MAX];
        char full_link[PATH_MAX];
};

int oci__path_clean(const char *in, char *out, size_t size)
{
        const char *p = in;
        size_t n = 0;

        if (size == 0)
                return -ENAMETOOLONG;
        for (;;) {
                const char *s;
                size_t len;

                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                s = p;
                while (*p && *p != '/')
                        p++;
                len = (size_t)(p - s);
                if (len == 1 && s[0] == '.')
                        continue;
                if (len == 2 && s[0] == '.' && s[1] == '.')
                        return -EINVAL;
                if (n + (n > 0) + len + 1 > size || n + len > INT_MAX / 2)
                        return -ENAMETOOLONG;
                if (n > 0)
                        out[n++] = '/';
                memcpy(out + n, s, len);
                n += len;
        }
        out[n] = '\0';
        return (int)n;
}

static uint64_t hash_str(const char *s)
{
        uint64_t h = 14695981039346656037ULL; /* FNV-1a */

        for (; *s; s++)
                h = (h ^ (unsigned char)*s) * 1099511628211ULL;
        return h;
}

static struct dirset_slot *dirset_find(const struct dirset *set, const char *path)
{
        if (set->cap == 0)
                return NULL;
        for (size_t i = hash_str(path) & (set->cap - 1);; i = (i + 1) & (set->cap - 1)) {
                if (!set->slots[i].path)
                        return NULL;
                if (strcmp(set->slots[i].path, path) == 0)
                        return &set->slots[i];
        }
}

static void dirset_place(struct dirset_slot *slots, size_t cap, struct dirset_slot s)
{
        size_t i = hash_str(s.path) & (cap - 1);

        while (slots[i].path)
                i = (i + 1) & (cap - 1);
        slots[i] = s;
}

static int dirset_add(struct dirset *set, const char *path)
{
        char *copy;

        if (dirset_find(set, path))
                return 0;
        if (set->n >= APPLY_MAX_IMPLICIT_DIRS)
                return -E2BIG;
        if ((set->n + 1) * 2 > set->cap) {
                size_t cap = set->cap ? set->cap * 2 : 64;
                struct dirset_slot *slots = calloc(cap, sizeof *slots);

                if (!slots)
                        return -ENOMEM;
                for (size_t i = 0; i < set->cap; i++)
                        if (set->slots[i].path)
                                dirset_place(slots, cap, set->slots[i]);
                free(set->slots);
                set->slots = slots;
                set->cap = cap;
        }
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        dirset_place(set->slots, set->cap, (struct dirset_slot){ .path = copy });
        set->n++;
        return 0;
}

static void apply_free(struct apply *ap)
{
        if (!ap)
                return;
        if (ap->aw)
                archive_write_free(ap->aw); /* runs pending fixups only inside our root */
        for (size_t i = 0; i < ap->n_wh; i++) {
                free(ap->wh[i].parent);
                free(ap->wh[i].name);
        }
        free(ap->wh);
        for (size_t i = 0; i < ap->made.cap; i++)
                free(ap->made.slots[i].path);
        free(ap->made.slots);
        (void)safe_close(ap->rootfd);
        free(ap);
}
DEFINE_FREEP(struct apply, apply_free)

static bool errno_is_host(int e)
{
        /* failures of the host rather than of the archive's content */
        return e == ENOSPC || e == EDQUOT || e == EIO || e == ENOMEM || e == EROFS || e == EMFILE || e == ENFILE ||
               e == EFBIG;
}

static int invalid(struct apply *ap, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* -SBX_E_INVALID, reason invalid_image, message "<what>: <fmt ...>". */
static int invalid(struct apply *ap, const char *fmt, ...)
{
        char msg[SBX_ERR_MSG_MAX];
        va_list va;

        va_start(va, fmt);
        vsnprintf(msg, sizeof msg, fmt, va);
        va_end(va);
        return sbx_err_setr(ap->err, -SBX_E_INVALID, "invalid_image", "%s: %s", ap->what, msg);
}

static int sys_fail(struct apply *ap, int e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* -e with a message "<what>: <fmt ...>: <strerror(e)>". */
static int sys_fail(struct apply *ap, int e, const char *fmt, ...)
{
        char msg[SBX_ERR_MSG_MAX];
        va_list va;

        va_start(va, fmt);
        vsnprintf(msg, sizeof msg, fmt, va);
        va_end(va);
        return sbx_err_set(ap->err, -e, "%s: %s: %s", ap->what, msg, strerror(e));
}

/* An error reported by libarchive (reader or disk writer) on entry `name`. */
static int archive_fail(struct apply *ap, struct archive *a, const char *name)
{
        int e = archive_errno(a);
        const char *s = oci__archive_error(a);

        if (e > 0 && errno_is_host(e))
                return sbx_err_set(ap->err, -e, "%s: cannot write '%s': %s", ap->what, name, s);
        return sbx_err_setr(ap->err, -SBX_E_INVALID, "invalid_image", "%s: entry '%s': %s", ap->what, name, s);
}

/* Open the directory rel ("" = root) one component at a time, never following a symlink. With
 * create, missing components are made (0755) and remembered. Returns an fd or -errno. */
static int apply_open_dir(struct apply *ap, const char *rel, bool create)
{
        _cleanup_close_ int fd = -EBADF;
        char comp[NAME_MAX + 1];
        const char *p = rel;

        fd = openat(ap->rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        while (*p) {
                const char *s = p;
                size_t len;
                int nfd;

                while (*p && *p != '/')
                        p++;
                len = (size_t)(p - s);
                if (len == 0 || len > NAME_MAX)
                        return -ENAMETOOLONG;
                memcpy(comp, s, len);
                comp[len] = '\0';
                nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0 && errno == ENOENT && create) {
                        char prefix[PATH_MAX];
                        int r;

                        if (mkdirat(fd, comp, 0755) < 0)
                                return -errno;
                        nfd = openat(fd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                        if (nfd < 0)
                                return -errno;
                        /* exact mode whatever the umask (libarchive flips it while it works) */
                        (void)fchmod(nfd, 0755);
                        snprintf(prefix, sizeof prefix, "%.*s", (int)(p - rel), rel);
                        r = dirset_add(&ap->made, prefix);
                        if (r < 0) {
                                (void)close(nfd);
                                return r;
                        }
                }
                if (nfd < 0)
                        return -errno;
                (void)close(fd);
                fd = nfd;
                if (*p == '/')
                        p++;
        }
        return TAKE_FD(fd);
}

static int open_dir_fail(struct apply *ap, int r, const char *rel)
{
        if (r == -ELOOP || r == -ENOTDIR || r == -ENAMETOOLONG || r == -E2BIG)
                return invalid(ap, "'%s' is not a directory inside the layer%s", rel,
                               r == -E2BIG ? " (too many implied directories)" : "");
        return sbx_err_set(ap->err, r, "%s: cannot open directory '%s': %s", ap->what, rel, strerror(-r));
}

/* Make sure the parent of the entry (rel[0..len)) exists as a real directory; make it if it is
 * missing (the tar need not list parents). */
static int apply_ensure_parent(struct apply *ap, const char *rel, size_t len)
{
        char parent[PATH_MAX];
        struct stat st;
        int fd;

        if (len == 0)
                return 0;
        if (ap->have_parent_ok && strlen(ap->parent_ok) == len && memcmp(ap->parent_ok, rel, len) == 0)
                return 0;
        memcpy(parent, rel, len);
        parent[len] = '\0';
        if (fstatat(ap->rootfd, parent, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
                fd = apply_open_dir(ap, parent, true);
                if (fd < 0)
                        return open_dir_fail(ap, fd, parent);
                (void)close(fd);
        }
        memcpy(ap->parent_ok, parent, len + 1);
        ap->have_parent_ok = true;
        return 0;
}

/* A hard link's target must be a non-directory already in this layer, reached without a symlink. */
static int apply_check_link_target(struct apply *ap, const char *entry)
{
        _cleanup_close_ int fd = -EBADF;
        char parent[PATH_MAX];
        const char *base = strrchr(ap->rel_link, '/');
        struct stat st;

        snprintf(parent, sizeof parent, "%.*s", base ? (int)(base - ap->rel_link) : 0, ap->rel_link);
        base = base ? base + 1 : ap->rel_link;
        fd = apply_open_dir(ap, parent, false);
        if (fd < 0 || fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
                return invalid(ap, "hard link '%s' to '%s' does not name a file earlier in the layer", entry,
                               ap->rel_link);
        return 0;
}

static int apply_note_whiteout(struct apply *ap, const char *base, size_t parent_len)
{
        struct whiteout w = {};
        const char *name = NULL;

        if (strcmp(base, WHITEOUT_OPAQUE) == 0) {
                /* the parent (the layer root too) becomes opaque */
        } else if (strncmp(base, WHITEOUT_META_PREFIX, strlen(WHITEOUT_META_PREFIX)) == 0) {
                return 0; /* aufs bookkeeping (.wh..wh.plnk, ...), meaningless here */
        } else {
                name = base + strlen(WHITEOUT_PREFIX);
                if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                        return invalid(ap, "whiteout '%s' names nothing", ap->rel);
        }
        if (ap->n_wh >= APPLY_MAX_WHITEOUTS)
                return invalid(ap, "more than %u whiteouts", APPLY_MAX_WHITEOUTS);
        if (ap->n_wh == ap->cap_wh) {
                size_t cap = ap->cap_wh ? ap->cap_wh * 2 : 16;
                struct whiteout *wh = reallocarray(ap->wh, cap, sizeof *wh);

                if (!wh)
                        return sbx_err_set(ap->err, -ENOMEM, "out of memory");
                ap->wh = wh;
                ap->cap_wh = cap;
        }
        w.parent = strndup(ap->rel, parent_len);
        w.name = name ? strdup(name) : NULL;
        if (!w.parent || (name && !w.name)) {
                free(w.parent);
                free(w.name);
                return sbx_err_set(ap->err, -ENOMEM, "out of memory");
        }
        ap->wh[ap->n_wh++] = w;
        return 0;
}

static int apply_copy_data(struct apply *ap, struct archive *in, const char *name)
{
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t off;
                int r;

                r = archive_read_data_block(in, &buf, &size, &off);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return archive_fail(ap, in, name);
                if (archive_write_data_block(ap->aw, buf, size, off) != ARCHIVE_OK)
                        return archive_fail(ap, ap->aw, name);
        }
}

/* out = root + "/" + rel; the caller checked that it fits in PATH_MAX. */
static void join_root(const struct apply *ap, const char *rel, size_t len, char out[static PATH_MAX])
{
        memcpy(out, ap->root, ap->root_len);
        out[ap->root_len] = '/';
        memcpy(out + ap->root_len + 1, rel, len + 1);
}

static int apply_entry(struct apply *ap, struct archive *in, struct archive_entry *e)
{
        const char *name = archive_entry_pathname(e);
        const char *link = archive_entry_hardlink(e);
        mode_t type = archive_entry_filetype(e);
        const char *base;
        size_t len, parent_len;
        int r, n;

        if (!name)
                return invalid(ap, "an entry has no name");
        n = oci__path_clean(name, ap->rel, sizeof ap->rel);
        if (n == -EINVAL)
                return invalid(ap, "entry '%s' leaves the layer", name);
        if (n < 0 || ap->root_len + 1 + (size_t)n >= PATH_MAX)
                return invalid(ap, "entry name '%.128s...' is too long", name);
        if (n == 0) {
                if (type == AE_IFDIR && !link)
                        return 0; /* "./": the root is ours (0755, 0:0) */
                return invalid(ap, "entry '%s' has an empty name", name);
        }
        len = (size_t)n;

        base = strrchr(ap->rel, '/');
        parent_len = base ? (size_t)(base - ap->rel) : 0;
        base = base ? base + 1 : ap->rel;
        if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
                return apply_note_whiteout(ap, base, parent_len);
        /* Device nodes are kept (Debian trees carry /dev/null & co.; layer trees must round-trip
         * to the same digest): sandboxes mount every layer nodev, and the store dir is 0700. A
         * char 0/0 is a whiteout to overlayfs, as its ".wh." name would be. Sockets are skipped.
         * A hard link's own type is whatever the tar writer left in its mode bits: often none. */
        if (!link && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK && type != AE_IFIFO &&
            type != AE_IFCHR && type != AE_IFBLK)
                return 0;

        if (link) {
                n = oci__path_clean(link, ap->rel_link, sizeof ap->rel_link);
                if (n <= 0)
                        return invalid(ap, "hard link '%s' to '%s' leaves the layer", ap->rel, link);
                if (ap->root_len + 1 + (size_t)n >= PATH_MAX)
                        return invalid(ap, "hard link target '%.128s...' is too long", link);
                r = apply_check_link_target(ap, ap->rel);
                if (r < 0)
                        return r;
                join_root(ap, ap->rel_link, (size_t)n, ap->full_link);
                archive_entry_copy_hardlink(e, ap->full_link);
        }
        if (archive_entry_uid(e) < 0 || archive_entry_uid(e) >= APPLY_ID_RANGE)
                archive_entry_set_uid(e, APPLY_OVERFLOW_ID);
        if (archive_entry_gid(e) < 0 || archive_entry_gid(e) >= APPLY_ID_RANGE)
                archive_entry_set_gid(e, APPLY_OVERFLOW_ID);
        /* no name lookups: the ids are the layer's, never the host's */
        archive_entry_set_uname(e, NULL);
        archive_entry_set_gname(e, NULL);

        if (type == AE_IFDIR && ap->made.n > 0) {
                struct dirset_slot *s = dirset_find(&ap->made, ap->rel);

                if (s)
                        s->explicit = true;
        }
        /* this entry may replace the directory we last checked (or one of its ancestors) */
        if (ap->have_parent_ok && strncmp(ap->parent_ok, ap->rel, len) == 0 &&
            (ap->parent_ok[len] == '\0' || ap->parent_ok[len] == '/'))
                ap->have_parent_ok = false;
        r = apply_ensure_parent(ap, ap->rel, parent_len);
        if (r < 0)
                return r;

        /* An absolute name under root, shorter than PATH_MAX: libarchive never chdir()s for it
         * (its deep-directory path changes the cwd of the whole process). */
        join_root(ap, ap->rel, len, ap->full);
        archive_entry_copy_pathname(e, ap->full);

        if (archive_write_header(ap->aw, e) != ARCHIVE_OK)
                return archive_fail(ap, ap->aw, ap->rel);
        /* pax lets a hard link carry the data of the file it links to */
        if ((type == AE_IFREG || link) && archive_entry_size(e) > 0) {
                r = apply_copy_data(ap, in, ap->rel);
                if (r < 0)
                        return r;
        }
        if (archive_write_finish_entry(ap->aw) != ARCHIVE_OK)
                return archive_fail(ap, ap->aw, ap->rel);
        return 0;
}

/* After the layer's entries: whiteouts (unless the layer also has the name) and opaque marks. */
static int apply_whiteouts(struct apply *ap)
{
        for (size_t i = 0; i < ap->n_wh; i++) {
                const struct whiteout *w = &ap->wh[i];
                _cleanup_close_ int fd = -EBADF;
                struct stat st;

                fd = apply_open_dir(ap, w->parent, true);
                if (fd < 0)
                        return open_dir_fail(ap, fd, w->parent);
                if (!w->name) {
                        if (fsetxattr(fd, OPAQUE_XATTR, "y", 1, 0) < 0)
                                return sys_fail(ap, errno, "cannot mark '%s' opaque", w->parent);
                        continue;
                }
                if (fstatat(fd, w->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                        continue;
                if (errno != ENOENT)
                        return sys_fail(ap, errno, "cannot stat '%s/%s'", w->parent, w->name);
                if (mknodat(fd, w->name, S_IFCHR | 0, makedev(0, 0)) < 0 && errno != EEXIST)
                        return sys_fail(ap, errno, "cannot make whiteout '%s/%s'", w->parent, w->name);
        }
        return 0;
}

/* Directories we made and the tar never listed get mtime 0, after everything inside them is
 * written (the same image imported twice must give the same layer digest). */
static void apply_made_times(struct apply *ap)
{
        static const struct timespec zero[2] = { { 0, 0 }, { 0, 0 } };

        for (size_t i = 0; i < ap->made.cap; i++) {
                const struct dirset_slot *s = &ap->made.slots[i];
                int fd;

                if (!s->path || s->explicit)
                        continue;
                fd = apply_open_dir(ap, s->path, false);
                if (fd < 0)
                        continue; /* replaced by a later entry: not ours any more */
                (void)futimens(fd, zero);
                (void)close(fd);
        }
}

int oci__apply_layer(struct archive *in, const char *root, const char *what, struct sbx_err *err)
{
        _cleanup_(apply_freep) struct apply *ap = NULL;
        uint64_t n = 0;
        int r;

        ap = calloc(1, sizeof *ap);
        if (!ap)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        ap->rootfd = -EBADF;
        ap->root = root;
        ap->root_len = strlen(root);
        ap->what = what;
        ap->err = err;
        ap->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (ap->rootfd < 0)
                return sbx_err_set(err, -errno, "cannot open '%s': %s", root, strerror(errno));
        /* NEEDSWORK: archive_write_header() flips the process umask to 0 and back to read it; other
         * threads creating files in that window get no umask. Our own files use explicit modes. */
        ap->aw = archive_write_disk_new();
        if (!ap->aw)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (archive_write_disk_set_options(ap->aw, APPLY_DISK_FLAGS) != ARCHIVE_OK)
                return sbx_err_set(err, -SBX_E_INTERNAL, "cannot set extraction options: %s",
                                   oci__archive_error(ap->aw));

        for (;;) {
                struct archive_entry *e;

                r = archive_read_next_header(in, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN) /* ARCHIVE_WARN: e.g. a name not in this locale; still usable */
                        return archive_fail(ap, in, "(header)");
                if (++n > APPLY_MAX_ENTRIES)
                        return invalid(ap, "more than %u entries", APPLY_MAX_ENTRIES);
                r = apply_entry(ap, in, e);
                if (r < 0)
                        return r;
        }
        r = apply_whiteouts(ap);
        if (r < 0)
                return r;
        /* sets the listed directories' modes and mtimes, after everything inside them was made */
        if (archive_write_close(ap->aw) != ARCHIVE_OK)
                return archive_fail(ap, ap->aw, "(directories)");
        apply_made_times(ap);
        return 0;
}
