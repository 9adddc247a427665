// SPDX-License-Identifier: Apache-2.0
/*
 * Directories on the wire for `sbx cp` (cmd-files.c): a tar.gz of a local tree staged in an
 * unnamed temporary file, and the extraction of one the server sent. Extraction refuses absolute
 * names, ".." and paths through symlinks (libarchive's SECURE flags, from inside the target), and
 * creates only files, directories and symlinks, never device nodes, whatever the server sends.
 */
#include "tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"

#define COPY_CHUNK (64 * 1024)
#define GZIP_LEVEL "1"          /* directory uploads: most go to a daemon on this host, where speed beats size */

static int oom(struct cli_err *err)
{
        return cli_err_set(err, -ENOMEM, "out of memory");
}

/* ---------- staging files and archives ---------- */

/* An unnamed read-write temporary file in $TMPDIR (or /tmp); it vanishes with its fd. */
int cli_staging_open(int *ret_fd, struct cli_err *err)
{
        const char *dir = getenv("TMPDIR");
        _cleanup_free_ char *tmpl = NULL;
        int fd;

        if (!dir || !*dir)
                dir = "/tmp";
        fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) { /* a filesystem without O_TMPFILE */
                if (asprintf(&tmpl, "%s/sbx-cp-XXXXXX", dir) < 0) {
                        tmpl = NULL;
                        return oom(err);
                }
                fd = mkostemp(tmpl, O_CLOEXEC);
                if (fd >= 0)
                        (void)unlink(tmpl);
        }
        if (fd < 0)
                return cli_err_set(err, -errno, "cannot create a temporary file in '%s': %s", dir, strerror(errno));
        *ret_fd = fd;
        return 0;
}

static void archive_read_freep(struct archive **a)
{
        if (*a)
                (void)archive_read_free(*a);
}

static void archive_write_freep(struct archive **a)
{
        if (*a)
                (void)archive_write_free(*a);
}

static void archive_entry_freep(struct archive_entry **e)
{
        if (*e)
                archive_entry_free(*e);
}

static const char *archive_msg(struct archive *a)
{
        return archive_error_string(a) ?: strerror(archive_errno(a) > 0 ? archive_errno(a) : EIO);
}


/* Add the content of the regular file the disk reader is on to w. */
static int pack_data(struct archive *disk, struct archive *w, const char *name, uint64_t *bytes, struct cli_err *err)
{
        char buf[COPY_CHUNK];

        for (;;) {
                la_ssize_t k = archive_read_data(disk, buf, sizeof buf);

                if (k == 0)
                        return 0;
                if (k < 0)
                        return cli_err_set(err, -EIO, "cannot read '%s': %s", name, archive_msg(disk));
                if (archive_write_data(w, buf, (size_t)k) < 0)
                        return cli_err_set(err, -EIO, "cannot write the archive of '%s': %s", name, archive_msg(w));
                *bytes += (uint64_t)k;
        }
}

/*
 * Write a tar.gz of the local directory src (not following symlinks below it; src itself is
 * followed) to fd. Names are relative to src, without src's own entry (the server creates the
 * directory). Sockets, FIFOs and devices are skipped with a warning unless quiet. Returns 0 or a
 * negative code with err filled.
 */
int cli_pack_dir(const char *src, int fd, bool quiet, struct tree_stats *st, struct cli_err *err)
{
        _cleanup_(archive_read_freep) struct archive *disk = archive_read_disk_new();
        _cleanup_(archive_write_freep) struct archive *w = archive_write_new();
        _cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
        _cleanup_free_ char *root = strdup(src);
        size_t n;
        int r;

        if (!disk || !w || !e || !root)
                return oom(err);
        /* "dir/" and "dir/." would walk as "dir//x" and "dir/./x" */
        n = strlen(root);
        for (;;) {
                if (n > 1 && root[n - 1] == '/')
                        root[--n] = '\0';
                else if (n > 2 && root[n - 1] == '.' && root[n - 2] == '/')
                        root[n -= 2] = '\0';
                else
                        break;
        }
        if (archive_read_disk_set_symlink_hybrid(disk) != ARCHIVE_OK ||
            archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_XATTR | ARCHIVE_READDISK_NO_ACL |
                                                         ARCHIVE_READDISK_NO_FFLAGS) != ARCHIVE_OK ||
            archive_write_add_filter_gzip(w) != ARCHIVE_OK ||
            archive_write_set_filter_option(w, "gzip", "compression-level", GZIP_LEVEL) != ARCHIVE_OK ||
            archive_write_set_format_pax_restricted(w) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(w, 1) != ARCHIVE_OK)
                return cli_err_set(err, -EIO, "cannot set up the archive of '%s': %s", src, archive_msg(w));
        if (archive_write_open_fd(w, fd) != ARCHIVE_OK)
                return cli_err_set(err, -EIO, "cannot write the archive of '%s': %s", src, archive_msg(w));
        if (archive_read_disk_open(disk, root) != ARCHIVE_OK)
                return cli_err_set(err, -EIO, "cannot read '%s': %s", src, archive_msg(disk));

        for (;;) {
                const char *name, *rel;
                mode_t type;

                archive_entry_clear(e);
                r = archive_read_next_header2(disk, e);
                if (r == ARCHIVE_EOF)
                        break;
                name = archive_entry_pathname(e) ?: "?";
                if (r < ARCHIVE_WARN)
                        return cli_err_set(err, -EIO, "cannot read '%s': %s", name, archive_msg(disk));
                if (archive_read_disk_can_descend(disk) && archive_read_disk_descend(disk) != ARCHIVE_OK)
                        return cli_err_set(err, -EIO, "cannot read directory '%s': %s", name, archive_msg(disk));
                rel = name;
                if (strncmp(name, root, n) == 0 && (name[n] == '/' || name[n] == '\0' || n == 1))
                        rel = name + n;
                while (*rel == '/')
                        rel++;
                if (!*rel) /* src itself */
                        continue;
                type = archive_entry_filetype(e);
                if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
                        if (!quiet)
                                output_errorf("'%s' is not a regular file, directory or symlink, skipping", name);
                        st->skipped++;
                        continue;
                }
                archive_entry_copy_pathname(e, rel);
                /* the sandbox's root owns what is copied in (the server maps entry ids into the
                 * sandbox, and a local uid means nothing there) */
                archive_entry_set_uid(e, 0);
                archive_entry_set_gid(e, 0);
                archive_entry_copy_uname(e, NULL);
                archive_entry_copy_gname(e, NULL);
                if (archive_write_header(w, e) < ARCHIVE_WARN)
                        return cli_err_set(err, -EIO, "cannot archive '%s': %s", name, archive_msg(w));
                if (type == AE_IFREG) {
                        r = pack_data(disk, w, name, &st->bytes, err);
                        if (r < 0)
                                return r;
                        st->files++;
                } else if (type == AE_IFDIR) {
                        st->dirs++;
                } else {
                        st->symlinks++;
                }
        }
        if (archive_write_close(w) != ARCHIVE_OK)
                return cli_err_set(err, -EIO, "cannot write the archive of '%s': %s", src, archive_msg(w));
        return 0;
}

/* A name from the server's archive that may be extracted: relative, no ".." component. */
static bool archive_name_safe(const char *name)
{
        if (!name || !*name || name[0] == '/')
                return false;
        for (const char *p = name; *p;) {
                size_t len = strcspn(p, "/");

                if (len == 2 && p[0] == '.' && p[1] == '.')
                        return false;
                p += len;
                while (*p == '/')
                        p++;
        }
        return true;
}

static int unpack_data(struct archive *a, struct archive *w, const char *name, uint64_t *bytes, struct cli_err *err)
{
        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t off;
                int r = archive_read_data_block(a, &buf, &size, &off);

                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return cli_err_set(err, -CLI_E_PROTOCOL, "cannot read '%s' from the server's archive: %s", name,
                                           archive_msg(a));
                if (archive_write_data_block(w, buf, size, off) < ARCHIVE_WARN)
                        return cli_err_set(err, -EIO, "cannot write '%s': %s", name, archive_msg(w));
                *bytes += size;
        }
}

/*
 * Extract the tar(.gz) read from fd into the current directory: modes and times restored, owners
 * not; entries with absolute names, ".." or a path through a symlink refused (an error: the
 * server never sends them); anything but files, directories, symlinks and hard links skipped.
 */
static int unpack_here(int fd, struct tree_stats *st, struct cli_err *err)
{
        _cleanup_(archive_read_freep) struct archive *a = archive_read_new();
        _cleanup_(archive_write_freep) struct archive *w = archive_write_disk_new();
        struct archive_entry *e;
        int r;

        if (!a || !w)
                return oom(err);
        if (archive_read_support_filter_gzip(a) != ARCHIVE_OK || archive_read_support_format_tar(a) != ARCHIVE_OK ||
            archive_write_disk_set_options(
                    w, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                               ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS) != ARCHIVE_OK)
                return cli_err_set(err, -EIO, "cannot set up extraction: %s",
                                   archive_error_string(a) ?: archive_error_string(w) ?: "libarchive error");
        if (archive_read_open_fd(a, fd, COPY_CHUNK) != ARCHIVE_OK)
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's archive cannot be read: %s", archive_msg(a));
        for (;;) {
                const char *name, *link;
                mode_t type;

                r = archive_read_next_header(a, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r < ARCHIVE_WARN)
                        return cli_err_set(err, -CLI_E_PROTOCOL, "the server's archive cannot be read: %s",
                                           archive_msg(a));
                name = archive_entry_pathname(e);
                link = archive_entry_hardlink(e);
                if (!archive_name_safe(name) || (link && !archive_name_safe(link)))
                        return cli_err_set(err, -CLI_E_PROTOCOL, "refusing the archive entry '%s': unsafe name",
                                           name ?: "");
                type = archive_entry_filetype(e);
                if (!link && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
                        st->skipped++;
                        continue;
                }
                /* owners are not restored, so neither are setuid/setgid bits: a file from the
                 * sandbox must not become a setuid program of whoever runs sbx */
                archive_entry_set_perm(e, archive_entry_perm(e) & 01777);
                if (archive_write_header(w, e) < ARCHIVE_WARN)
                        return cli_err_set(err, -EIO, "cannot extract '%s': %s", name, archive_msg(w));
                if (type == AE_IFREG && !link) {
                        r = unpack_data(a, w, name, &st->bytes, err);
                        if (r < 0)
                                return r;
                }
                if (archive_write_finish_entry(w) < ARCHIVE_WARN)
                        return cli_err_set(err, -EIO, "cannot extract '%s': %s", name, archive_msg(w));
                if (type == AE_IFDIR)
                        st->dirs += strcmp(name, ".") != 0 && strcmp(name, "./") != 0;
                else if (type == AE_IFLNK)
                        st->symlinks++;
                else
                        st->files++;
        }
        /* directory modes and times are set here, last, so a read-only directory could be filled */
        if (archive_write_close(w) != ARCHIVE_OK)
                return cli_err_set(err, -EIO, "cannot finish extraction: %s", archive_msg(w));
        return 0;
}

/* unpack_here() in the local directory target, then back to the current directory. */
int cli_unpack(int fd, const char *target, struct tree_stats *st, struct cli_err *err)
{
        _cleanup_close_ int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int r;

        if (cwd < 0)
                return cli_err_set(err, -errno, "cannot open the current directory: %s", strerror(errno));
        /* chdir so that every name the archive holds stays relative and libarchive can check
         * each for "..", absolute paths and symlinks; the target's own path may hold symlinks */
        if (chdir(target) < 0)
                return cli_err_set(err, -errno, "cannot enter '%s': %s", target, strerror(errno));
        r = unpack_here(fd, st, err);
        if (fchdir(cwd) < 0 && r >= 0)
                r = cli_err_set(err, -errno, "cannot return to the current directory: %s", strerror(errno));
        return r;
}

