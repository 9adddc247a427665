/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A files_root on a fresh temp directory for the src/files unit tests (include after cmocka.h and
 * files/files.h): every created file belongs to OWNER, which is also the id base. teardown detaches
 * the mounts a test may have made below it (relative names, NULL-terminated) and removes the tree
 * without crossing into any other filesystem.
 */
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef OWNER
#define OWNER 12345
#endif

extern char **environ;

struct fixture {
        char dir[64];
        struct files_root r;
};

static inline void rm_rf(const char *path)
{
        const char *argv[] = { "rm", "-rf", "--one-file-system", path, NULL };
        pid_t pid;
        int status;

        if (posix_spawnp(&pid, "rm", NULL, NULL, (char *const *)argv, environ) == 0)
                (void)waitpid(pid, &status, 0);
}

/* tmpl: a mkdtemp template ("/tmp/test-x-XXXXXX") */
static inline int fixture_setup(void **state, const char *tmpl)
{
        struct fixture *f = calloc(1, sizeof *f);

        assert_non_null(f);
        snprintf(f->dir, sizeof f->dir, "%s", tmpl);
        assert_non_null(mkdtemp(f->dir));
        f->r.fd = open(f->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_true(f->r.fd >= 0);
        f->r.uid = f->r.gid = f->r.base_uid = f->r.base_gid = OWNER;
        *state = f;
        return 0;
}

static inline int fixture_teardown(void **state, const char *const *mounts)
{
        struct fixture *f = *state;
        char p[128];

        for (; mounts && *mounts; mounts++) {
                snprintf(p, sizeof p, "%s/%s", f->dir, *mounts);
                (void)umount2(p, MNT_DETACH);
        }
        close(f->r.fd);
        rm_rf(f->dir);
        free(f);
        return 0;
}
