// SPDX-License-Identifier: Apache-2.0
/*
 * sbxd: wires store, templates, the sandbox manager and the HTTP API onto one libuv loop.
 * Start-up order matters: the private mount namespace must exist before any thread does, and
 * recovery runs before the API listens.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "api/auth.h"
#include "api/router.h"
#include "api/server.h"
#include "common/cleanup.h"
#include "common/log.h"
#include "common/util.h"
#include "config.h"
#include "core/manager.h"
#include "images/template.h"
#include "sandbox/btrfs.h"
#include "store/store.h"

#define SBX_VERSION "0.1.0"

struct daemon {
        uv_loop_t *loop;
        struct daemon_config cfg;
        char data_dir[PATH_MAX];
        char state_dir[PATH_MAX + 16];       /* sandboxes/ and snapshots/: data_dir, or the btrfs mount */
        char templates_dir[PATH_MAX + 32];
        char unix_path[PATH_MAX + 32];
        char init_path[PATH_MAX + 32];
        char api_key[300];
        char instance[32];
        struct store store;
        bool store_open;
        struct template_store *templates;
        char upload_dir[PATH_MAX + 48];
        struct manager *manager;
        struct http_server *http;
        struct api_context api;
        uv_signal_t sigint, sigterm;
        bool signals_init;
        bool tty;
        int last_percent;
};

/* Every ancestor of the data dir must be searchable by others: sandbox roots are mapped uids. */
static int check_traversable(const char *dir, struct sbx_err *err)
{
        char path[PATH_MAX];
        struct stat st;

        snprintf(path, sizeof path, "%s", dir);
        for (;;) {
                char *slash = strrchr(path, '/');
                if (!slash || slash == path)
                        break;
                *slash = '\0';
                if (stat(path, &st) == 0 && !(st.st_mode & S_IXOTH))
                        return sbx_err_set(err, -EACCES,
                                           "'%s' is not searchable by other users (mode %o); sandboxes under '%s' "
                                           "could not reach their files: chmod o+x it or choose another --data-dir",
                                           path, st.st_mode & 07777, dir);
        }
        return 0;
}

static int prepare_data_dir(struct daemon *d, struct sbx_err *err)
{
        char tmp[PATH_MAX];

        snprintf(tmp, sizeof tmp, "%s", d->cfg.data_dir);
        for (char *p = tmp + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        (void)mkdir(tmp, 0755);
                        *p = '/';
                }
        if (mkdir(tmp, 0711) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create data dir '%s': %m", tmp);
        if (!realpath(tmp, d->data_dir))
                return sbx_err_set(err, -errno, "cannot resolve data dir '%s': %m", tmp);
        if (chmod(d->data_dir, 0711) < 0)
                return sbx_err_set(err, -errno, "cannot chmod data dir '%s': %m", d->data_dir);
        return check_traversable(d->data_dir, err);
}

/* --storage btrfs: the data dir if it is btrfs, else an image DATA/btrfs.img mounted on DATA/btrfs.
 * Mounted in the host's mount namespace (before sbxd makes its own): sandboxes outlive sbxd and
 * hold that filesystem, and the next sbxd finds the mount where it was. */
static int prepare_storage(struct daemon *d, struct sbx_err *err)
{
        _cleanup_close_ int fd = -EBADF;
        char image[PATH_MAX + 16];
        int r;

        snprintf(d->state_dir, sizeof d->state_dir, "%s", d->data_dir);
        if (!d->cfg.storage_btrfs)
                return 0;
        fd = open(d->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot open data dir '%s': %m", d->data_dir);
        if (btrfs_is(fd))
                return 0;
        snprintf(d->state_dir, sizeof d->state_dir, "%s/btrfs", d->data_dir);
        snprintf(image, sizeof image, "%s/btrfs.img", d->data_dir);
        if (mkdir(d->state_dir, 0711) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create '%s': %m", d->state_dir);
        r = btrfs_image_mount(image, d->cfg.storage_size, d->state_dir, err);
        if (r < 0)
                return r;
        if (chmod(d->state_dir, 0711) < 0)
                return sbx_err_set(err, -errno, "cannot chmod '%s': %m", d->state_dir);
        return 0;
}

static int load_api_key(struct daemon *d, struct sbx_err *err)
{
        char path[PATH_MAX + 16];
        int r;

        if (d->cfg.api_key) {
                snprintf(d->api_key, sizeof d->api_key, "%s", d->cfg.api_key);
                return 0;
        }
        snprintf(path, sizeof path, "%s/api-key", d->data_dir);
        r = read_file_at(AT_FDCWD, path, d->api_key, sizeof d->api_key);
        if (r > 0) {
                d->api_key[strcspn(d->api_key, "\r\n")] = '\0';
                if (strlen(d->api_key) >= 16)
                        return 0;
        }
        r = api_key_generate(d->api_key, sizeof d->api_key);
        if (r < 0)
                return sbx_err_set(err, r, "cannot generate an API key: %s", strerror(-r));
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return sbx_err_set(err, -errno, "cannot write '%s': %m", path);
        r = write_all(fd, d->api_key, strlen(d->api_key));
        if (r == 0)
                r = write_all(fd, "\n", 1);
        if (r < 0)
                return sbx_err_set(err, r, "cannot write '%s': %s", path, strerror(-r));
        return 0;
}

static int load_instance(struct daemon *d, struct sbx_err *err)
{
        int r = d->store.ops->setting_get(&d->store, "daemon.instance", d->instance, sizeof d->instance, err);

        if (r >= 0 && d->instance[0])
                return 0;
        sbx_err_clear(err);
        r = sbx_id_new("", d->instance, sizeof d->instance);
        if (r < 0)
                return sbx_err_set(err, r, "cannot generate the instance id");
        d->instance[8] = '\0'; /* 40 bits is plenty to tell daemons on one host apart */
        return d->store.ops->setting_set(&d->store, "daemon.instance", d->instance, err);
}

static void on_template_progress(const char *name, unsigned percent, const char *stage, void *data)
{
        struct daemon *d = data;

        if (d->tty) {
                char bar[41];
                unsigned fill = percent * 40 / 100;
                for (unsigned i = 0; i < 40; i++)
                        bar[i] = i < fill ? '#' : '.';
                bar[40] = '\0';
                fprintf(stderr, "\rbuilding template '%s' [%s] %3u%% %-40.40s", name, bar, percent, stage);
                fflush(stderr);
        } else if ((int)percent / 10 != d->last_percent / 10) {
                log_info("building template '%s': %u%% (%s)", name, percent, stage);
        }
        d->last_percent = (int)percent;
}

static void on_template_done(const char *name, int result, const struct sbx_err *err, void *data)
{
        struct daemon *d = data;

        if (d->tty)
                fprintf(stderr, "\n");
        if (result < 0)
                log_error("building template '%s' failed: %s", name, err ? err->msg : "unknown error");
        else
                log_info("template '%s' is ready", name);
}

static void shutdown_daemon(struct daemon *d)
{
        log_info("shutting down (sandboxes keep running)");
        if (d->signals_init) {
                uv_close((uv_handle_t *)&d->sigint, NULL);
                uv_close((uv_handle_t *)&d->sigterm, NULL);
                d->signals_init = false;
        }
        http_server_stop(d->http);
        d->http = NULL;
        manager_free(d->manager);
        d->manager = NULL;
        template_store_free(d->templates);
        d->templates = NULL;
}

static void on_signal(uv_signal_t *s, int signum)
{
        shutdown_daemon(s->data);
}

static int run(struct daemon *d, struct sbx_err *err)
{
        struct manager_config mc;
        struct http_server_config hc;
        char db[PATH_MAX + 16];
        int r;

        r = prepare_data_dir(d, err);
        if (r < 0)
                return r;
        snprintf(db, sizeof db, "%s/sbx.db", d->data_dir);
        r = store_open(&d->store, db, err);
        if (r < 0)
                return r;
        d->store_open = true;
        r = load_instance(d, err);
        if (r < 0)
                return r;
        r = load_api_key(d, err);
        if (r < 0)
                return r;
        if (d->cfg.templates_dir)
                snprintf(d->templates_dir, sizeof d->templates_dir, "%s", d->cfg.templates_dir);
        else
                snprintf(d->templates_dir, sizeof d->templates_dir, "%s/templates", d->data_dir);
        r = template_store_open(d->templates_dir, d->loop, &d->templates, err);
        if (r < 0)
                return r;
        struct rlimit nofile = { 0 };
        unsigned max_sandboxes = SBX_MAX_SANDBOXES;
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
                /* keep 1024 fds for connections and the daemon itself; 2 per sandbox */
                uint64_t fit = nofile.rlim_cur > 1024 + 2 ? (nofile.rlim_cur - 1024) / 2 : 1;
                if (fit < max_sandboxes)
                        max_sandboxes = (unsigned)fit;
        }
        if (max_sandboxes < SBX_MAX_SANDBOXES)
                log_info("at most %u sandboxes at once (RLIMIT_NOFILE %llu)", max_sandboxes,
                         (unsigned long long)nofile.rlim_cur);
        mc = (struct manager_config){
                .max_sandboxes = max_sandboxes,
                .data_dir = d->data_dir,
                .init_path = d->init_path,
                .instance = d->instance,
                .pool_size = d->cfg.pool_size,
                .stream_log = d->cfg.stream_log,
                .state_dir = d->state_dir,
                .btrfs = d->cfg.storage_btrfs,
        };
        r = manager_new(d->loop, &d->store, d->templates, &mc, &d->manager, err);
        if (r < 0)
                return r;
        r = manager_recover(d->manager, err);
        if (r < 0)
                return r;

        snprintf(d->upload_dir, sizeof d->upload_dir, "%s/uploads", d->templates_dir);
        if (mkdir(d->upload_dir, 0700) < 0 && errno != EEXIST)
                return sbx_err_set(err, -errno, "cannot create '%s': %m", d->upload_dir);
        d->api = (struct api_context){
                .manager = d->manager,
                .templates = d->templates,
                .version = SBX_VERSION,
                .upload_dir = d->upload_dir,
        };
        if (d->cfg.unix_path)
                snprintf(d->unix_path, sizeof d->unix_path, "%s", d->cfg.unix_path);
        else
                snprintf(d->unix_path, sizeof d->unix_path, "%s/sbxd.sock", d->data_dir);
        hc = (struct http_server_config){
                .listen = d->cfg.listen[0] ? d->cfg.listen : NULL,
                .unix_path = d->unix_path[0] ? d->unix_path : NULL,
                .api_key = d->api_key,
                .app = &d->api,
                .routes = api_routes,
                .n_routes = api_routes_count,
                .upload_dir = d->upload_dir,
                .max_upload = SBX_MAX_UPLOAD,
                .upload_open = v1_upload_open,
                .gate = v1_gate,
        };
        r = http_server_start(d->loop, &hc, &d->http, err);
        if (r < 0)
                return r;

        uv_signal_init(d->loop, &d->sigint);
        uv_signal_init(d->loop, &d->sigterm);
        d->sigint.data = d->sigterm.data = d;
        uv_signal_start(&d->sigint, on_signal, SIGINT);
        uv_signal_start(&d->sigterm, on_signal, SIGTERM);
        d->signals_init = true;

        if (hc.listen) {
                char host[64];
                const char *colon = strrchr(d->cfg.listen, ':');
                size_t hl = colon ? (size_t)(colon - d->cfg.listen) : 0;
                snprintf(host, sizeof host, "%.*s", (int)hl, d->cfg.listen);
                if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
                        snprintf(host, sizeof host, "127.0.0.1");
                else if (strcmp(host, "[::]") == 0)
                        snprintf(host, sizeof host, "[::1]");
                printf("sbxd %s ready\n  URL:     http://%s:%u\n  API key: %s\n  socket:  %s\n", SBX_VERSION, host,
                       http_server_port(d->http), d->api_key, d->unix_path[0] ? d->unix_path : "(none)");
                printf("SBX_URL=http://%s:%u\nSBX_KEY=%s\n", host, http_server_port(d->http), d->api_key);
        } else
                printf("sbxd %s ready\n  socket:  %s\n  API key: %s\nSBX_URL=unix:%s\nSBX_KEY=%s\n", SBX_VERSION,
                       d->unix_path, d->api_key, d->unix_path, d->api_key);
        fflush(stdout);

        if (d->cfg.default_template[0]) {
                struct sbx_err e = { 0 };
                if (template_build(d->templates, d->cfg.default_template, on_template_progress, on_template_done, d,
                                   &e) < 0)
                        log_warn("cannot build template '%s': %s, ignoring", d->cfg.default_template, e.msg);
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct daemon d = { .loop = NULL };
        struct sbx_err err = { 0 };
        int r;

        r = daemon_config_parse(&d.cfg, argc, argv, &err);
        if (r < 0) {
                fprintf(stderr, "sbxd: %s (see --help)\n", err.msg);
                return 2;
        }
        if (d.cfg.help) {
                daemon_config_usage(argv[0]);
                return 0;
        }
        if (d.cfg.version) {
                printf("sbxd %s\n", SBX_VERSION);
                return 0;
        }
        log_set_level(d.cfg.log_level);
        if (geteuid() != 0) {
                fprintf(stderr, "sbxd: must run as root (it creates namespaces, cgroups and mounts)\n");
                return 1;
        }
        /* btrfs storage is mounted where everyone (the next sbxd too) sees it */
        if (prepare_data_dir(&d, &err) < 0 || prepare_storage(&d, &err) < 0) {
                fprintf(stderr, "sbxd: %s\n", err.msg);
                return 1;
        }
        /* A private mount namespace, before any thread exists: the template layers sbxd stages
         * for each new sandbox never show up on the host and vanish with sbxd if it crashes. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                fprintf(stderr, "sbxd: cannot create a private mount namespace: %s\n", strerror(errno));
                return 1;
        }
        (void)signal(SIGPIPE, SIG_IGN);
        /* every live sandbox holds two fds here (its PID 1's pidfd, the sbx-init connection) and
         * a running exec three more: take the whole hard limit, and size the sandbox cap by it */
        struct rlimit nofile;
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
                nofile.rlim_cur = nofile.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &nofile);
        }
        if (d.cfg.init_path)
                snprintf(d.init_path, sizeof d.init_path, "%s", d.cfg.init_path);
        else {
                char self[PATH_MAX];
                ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
                if (n <= 0) {
                        fprintf(stderr, "sbxd: cannot find its own binary: %s\n", strerror(errno));
                        return 1;
                }
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash)
                        *slash = '\0';
                snprintf(d.init_path, sizeof d.init_path, "%s/sbx-init", self);
        }
        d.tty = isatty(STDERR_FILENO);
        d.last_percent = -10;
        d.loop = uv_default_loop();
        r = run(&d, &err);
        if (r < 0) {
                log_error("%s", err.msg[0] ? err.msg : strerror(-r));
                if (d.http || d.manager || d.templates)
                        shutdown_daemon(&d);
                (void)uv_run(d.loop, UV_RUN_DEFAULT);
                if (d.store_open)
                        store_close(&d.store);
                return 1;
        }
        (void)uv_run(d.loop, UV_RUN_DEFAULT);
        if (d.store_open)
                store_close(&d.store);
        (void)uv_loop_close(d.loop);
        return 0;
}
