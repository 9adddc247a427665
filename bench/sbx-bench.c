// SPDX-License-Identifier: Apache-2.0
/*
 * sbx-bench: time sbx's HTTP API from a C client, the way a program that embeds sbx would call it:
 * one libcurl easy handle reused for every request (HTTP/1.1 keep-alive, so after the first
 * request no TCP connect is timed), CLOCK_MONOTONIC around each curl_easy_perform(). Response
 * parsing and untimed clean-up happen outside the timed region. Each mode prints one JSON object
 * on stdout (percentiles by nearest rank, see bench-stats.h) and exits 0, or explains on stderr and
 * exits 1. The number of new TCP connections is reported so a daemon that drops keep-alive shows.
 *
 * Usage: sbx-bench [--url URL] [--key KEY] [-n RUNS] [-w WARMUP] [--template T] [--count M]
 *                  [--pid SBXD_PID] [--timeout S] [--path P] MODE
 * Modes: freeport | wait | health | get (--path) | create | exec | spawn | cycle | density | cleanup
 * URL and KEY default to $SBX_URL and $SBX_KEY.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-stats.h"

static inline void freep(void *p)
{
        free(*(void **)p);
}
#define _cleanup_free_ __attribute__((cleanup(freep)))

#define MAX_BODY (8 << 20) /* responses larger than this are an error here */
#define MAX_ID 64
#define MAX_RUNS 1000000
#define MAX_COUNT 10000 /* the daemon's SBX_MAX_SANDBOXES */

struct opts {
        const char *url;
        const char *key;
        const char *template;
        long runs;
        long warmup;
        long count;
        long pid;
        long timeout_s;
        const char *path; /* get: the path to time (default /v1/health) */
};

struct client {
        CURL *h;
        struct curl_slist *hdrs;
        const char *base;
        char *body; /* owned: the last response, NUL-terminated, at most MAX_BODY */
        size_t len;
        size_t cap;
        long status;
        long connects; /* new TCP connections opened so far */
        char errbuf[CURL_ERROR_SIZE];
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *userdata)
{
        struct client *c = userdata;
        size_t n = size * nmemb;

        if (c->len + n + 1 > MAX_BODY)
                return 0; /* makes curl fail with CURLE_WRITE_ERROR */
        if (c->len + n + 1 > c->cap) {
                size_t cap = c->cap ? c->cap : 4096;
                char *b;

                while (cap < c->len + n + 1)
                        cap *= 2;
                b = realloc(c->body, cap);
                if (!b)
                        return 0;
                c->body = b;
                c->cap = cap;
        }
        memcpy(c->body + c->len, p, n);
        c->len += n;
        c->body[c->len] = '\0';
        return n;
}

static int client_init(struct client *c, const struct opts *o)
{
        char auth[512];

        *c = (struct client){ .base = o->url };
        c->h = curl_easy_init();
        if (!c->h)
                return -ENOMEM;
        if (o->key && *o->key) {
                snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->key);
                c->hdrs = curl_slist_append(c->hdrs, auth);
        }
        c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
        c->hdrs = curl_slist_append(c->hdrs, "Expect:");
        curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
        curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c->h, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, c->errbuf);
        curl_easy_setopt(c->h, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->h, CURLOPT_TIMEOUT, 60L); /* a create takes milliseconds; a minute means a hang */
        curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT, 10L);
        return 0;
}

static void client_done(struct client *c)
{
        curl_slist_free_all(c->hdrs);
        curl_easy_cleanup(c->h);
        free(c->body);
}

/* One request. Returns 0 when an HTTP response arrived (status in c->status, body in c->body),
 * -EIO on a transport error (message on stderr unless quiet). */
static int http(struct client *c, const char *method, const char *path, const char *body, bool quiet)
{
        char url[1024];
        long nc = 0;
        CURLcode rc;

        snprintf(url, sizeof url, "%s%s", c->base, path);
        c->len = 0;
        if (c->body)
                c->body[0] = '\0';
        c->status = 0;
        c->errbuf[0] = '\0';
        curl_easy_setopt(c->h, CURLOPT_URL, url);
        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, NULL);
        if (strcmp(method, "POST") == 0) {
                curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, body ? body : "");
                curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
        } else {
                curl_easy_setopt(c->h, CURLOPT_HTTPGET, 1L);
                if (strcmp(method, "GET") != 0)
                        curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
        }
        rc = curl_easy_perform(c->h);
        if (curl_easy_getinfo(c->h, CURLINFO_NUM_CONNECTS, &nc) == CURLE_OK)
                c->connects += nc;
        if (rc != CURLE_OK) {
                if (!quiet)
                        fprintf(stderr, "sbx-bench: %s %s: %s\n", method, path,
                                c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
                return -EIO;
        }
        curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &c->status);
        return 0;
}

static int unexpected(const struct client *c, const char *what)
{
        fprintf(stderr, "sbx-bench: %s: HTTP %ld: %.500s\n", what, c->status, c->body ? c->body : "");
        return -EPROTO;
}

/* The "id" of the sandbox in the last response. */
static int body_id(const struct client *c, char ret_id[static MAX_ID])
{
        json_t *j = json_loads(c->body ? c->body : "", 0, NULL);
        const char *id = j ? json_string_value(json_object_get(j, "id")) : NULL;
        int r = -EPROTO;

        if (id && strlen(id) < MAX_ID) {
                memcpy(ret_id, id, strlen(id) + 1);
                r = 0;
        }
        json_decref(j);
        return r;
}

static int sandbox_create(struct client *c, const char *template, char ret_id[static MAX_ID])
{
        json_t *req = json_pack("{s:s}", "template", template);
        char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
        int r;

        json_decref(req);
        if (!body)
                return -ENOMEM;
        r = http(c, "POST", "/v1/sandboxes", body, false);
        free(body);
        if (r < 0)
                return r;
        if (c->status != 201)
                return c->status == 503 || c->status == 429 ? -EAGAIN : unexpected(c, "POST /v1/sandboxes");
        if (body_id(c, ret_id) < 0)
                return unexpected(c, "POST /v1/sandboxes: no \"id\" in the reply");
        return 0;
}

static int sandbox_delete(struct client *c, const char *id)
{
        char path[128];
        int r;

        snprintf(path, sizeof path, "/v1/sandboxes/%s", id);
        r = http(c, "DELETE", path, NULL, false);
        if (r < 0)
                return r;
        return c->status == 204 || c->status == 200 ? 0 : unexpected(c, "DELETE /v1/sandboxes/ID");
}

static int sandbox_exec_true(struct client *c, const char *id)
{
        char path[128];
        int r;

        snprintf(path, sizeof path, "/v1/sandboxes/%s/exec", id);
        r = http(c, "POST", path, "{\"argv\":[\"true\"]}", false);
        if (r < 0)
                return r;
        if (c->status != 200)
                return unexpected(c, "POST /v1/sandboxes/ID/exec");
        return 0;
}

/* Checked outside the timed region: the exec really ran and exited 0. */
static int exec_reply_ok(const struct client *c)
{
        json_t *j = json_loads(c->body ? c->body : "", 0, NULL);
        json_t *code = j ? json_object_get(j, "exitCode") : NULL;
        int r = json_is_integer(code) && json_integer_value(code) == 0 ? 0 : -EPROTO;

        json_decref(j);
        return r < 0 ? unexpected(c, "exec of 'true' did not report exitCode 0") : 0;
}

static double round3(double v)
{
        return (double)(long long)(v * 1000.0 + (v < 0 ? -0.5 : 0.5)) / 1000.0;
}

static json_t *summary_json(struct samples *s)
{
        struct summary m;

        samples_summarize(s, &m);
        return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "runs", (json_int_t)m.n, "p50_ms", round3(m.p50),
                         "p90_ms", round3(m.p90), "p99_ms", round3(m.p99), "mean_ms", round3(m.mean), "min_ms",
                         round3(m.min), "max_ms", round3(m.max));
}

static int emit(json_t *out)
{
        char *s = out ? json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9)) : NULL;

        json_decref(out);
        if (!s)
                return -ENOMEM;
        puts(s);
        free(s);
        return 0;
}

/* Sandbox-level result: {"name", stats..., "connections"}. */
static int emit_stats(const char *name, struct samples *s, long connects, json_t *extra)
{
        json_t *out = summary_json(s);

        if (!out)
                return -ENOMEM;
        json_object_set_new(out, "name", json_string(name));
        json_object_set_new(out, "connections", json_integer(connects));
        if (extra)
                json_object_update(out, extra);
        json_decref(extra);
        return emit(out);
}

static int mode_freeport(void)
{
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
                perror("sbx-bench: freeport");
                return -errno;
        }
        printf("%u\n", ntohs(a.sin_port));
        close(fd);
        return 0;
}

static bool pid_gone(long pid)
{
        return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* Wait for GET /v1/health = 200, then until a create of o->template stops returning 503 (the
 * template is still being built) or 429; the sandbox made to find out is deleted again. */
static int mode_wait(struct client *c, const struct opts *o)
{
        double start = bench_now_ms(), last_note = start;
        char id[MAX_ID];
        bool healthy = false;
        int r;

        for (;;) {
                double now = bench_now_ms();

                if (pid_gone(o->pid)) {
                        fprintf(stderr, "sbx-bench: sbxd (pid %ld) exited\n", o->pid);
                        return -ESRCH;
                }
                if (now - start > (double)o->timeout_s * 1000) {
                        fprintf(stderr, "sbx-bench: gave up after %ld s (%s)\n", o->timeout_s,
                                healthy ? "template never became ready" : "no healthy reply");
                        return -ETIMEDOUT;
                }
                if (now - last_note > 10000) {
                        fprintf(stderr, "sbx-bench: waiting for %s (%.0f s)\n",
                                healthy ? "the template" : "/v1/health", (now - start) / 1000);
                        last_note = now;
                }
                if (!healthy) {
                        healthy = http(c, "GET", "/v1/health", NULL, true) == 0 && c->status == 200;
                        if (!healthy) {
                                usleep(100 * 1000);
                                continue;
                        }
                }
                r = sandbox_create(c, o->template, id);
                if (r == 0) {
                        r = sandbox_delete(c, id);
                        if (r < 0)
                                return r;
                        return emit(json_pack("{s:s, s:s, s:f}", "name", "wait", "template", o->template,
                                              "ready_after_s", round3((bench_now_ms() - start) / 1000)));
                }
                if (r != -EAGAIN)
                        return r;
                usleep(500 * 1000);
        }
}

/* GET o->path (health: /v1/health), 200 expected */
static int mode_get(struct client *c, const struct opts *o, const char *name)
{
        struct samples s _samples_cleanup_ = {};
        long conn0 = 0;

        if (samples_init(&s, (size_t)o->runs) < 0)
                return -ENOMEM;
        for (long i = 0; i < o->warmup + o->runs; i++) {
                double t0, t1;

                if (i == o->warmup)
                        conn0 = c->connects;
                t0 = bench_now_ms();
                if (http(c, "GET", o->path, NULL, false) < 0)
                        return -EIO;
                t1 = bench_now_ms();
                if (c->status != 200)
                        return unexpected(c, o->path);
                if (i >= o->warmup)
                        (void)samples_add(&s, t1 - t0);
        }
        return emit_stats(name, &s, c->connects - conn0, NULL);
}

/* create -> ready: the POST returns once the sandbox can take an exec. DELETE is not timed. */
static int mode_create(struct client *c, const struct opts *o)
{
        struct samples s _samples_cleanup_ = {};
        long conn0 = 0;
        char id[MAX_ID];
        int r;

        if (samples_init(&s, (size_t)o->runs) < 0)
                return -ENOMEM;
        for (long i = 0; i < o->warmup + o->runs; i++) {
                double t0, t1;

                if (i == o->warmup)
                        conn0 = c->connects;
                t0 = bench_now_ms();
                r = sandbox_create(c, o->template, id);
                t1 = bench_now_ms();
                if (r < 0)
                        return r == -EAGAIN ? unexpected(c, "POST /v1/sandboxes") : r;
                if (i >= o->warmup)
                        (void)samples_add(&s, t1 - t0);
                r = sandbox_delete(c, id);
                if (r < 0)
                        return r;
        }
        return emit_stats("create", &s, c->connects - conn0, json_pack("{s:s}", "template", o->template));
}

/* Exec round trip of `true` on one running sandbox. */
static int mode_exec(struct client *c, const struct opts *o)
{
        struct samples s _samples_cleanup_ = {};
        long conn0 = 0;
        char id[MAX_ID];
        int r;

        if (samples_init(&s, (size_t)o->runs) < 0)
                return -ENOMEM;
        r = sandbox_create(c, o->template, id);
        if (r < 0)
                return r == -EAGAIN ? unexpected(c, "POST /v1/sandboxes") : r;
        for (long i = 0; i < o->warmup + o->runs; i++) {
                double t0, t1;

                if (i == o->warmup)
                        conn0 = c->connects;
                t0 = bench_now_ms();
                r = sandbox_exec_true(c, id);
                t1 = bench_now_ms();
                if (r < 0 || (r = exec_reply_ok(c)) < 0)
                        break;
                if (i >= o->warmup)
                        (void)samples_add(&s, t1 - t0);
        }
        if (sandbox_delete(c, id) < 0 && r == 0)
                r = -EIO;
        if (r < 0)
                return r;
        return emit_stats("exec", &s, c->connects - conn0, json_pack("{s:s}", "template", o->template));
}

/* Background process start: POST .../processes {"argv":["/bin/true"]} until its 201 (sbx-init
 * has forked and exec'd it; it runs on, nobody waits for its end). */
static int mode_spawn(struct client *c, const struct opts *o)
{
        struct samples s _samples_cleanup_ = {};
        char id[MAX_ID], path[128];
        long conn0 = 0;
        int r;

        if (samples_init(&s, (size_t)o->runs) < 0)
                return -ENOMEM;
        r = sandbox_create(c, o->template, id);
        if (r < 0)
                return r == -EAGAIN ? unexpected(c, "POST /v1/sandboxes") : r;
        snprintf(path, sizeof path, "/v1/sandboxes/%s/processes", id);
        for (long i = 0; i < o->warmup + o->runs; i++) {
                double t0, t1;

                if (i == o->warmup)
                        conn0 = c->connects;
                t0 = bench_now_ms();
                r = http(c, "POST", path, "{\"argv\":[\"/bin/true\"]}", false);
                t1 = bench_now_ms();
                if (r < 0)
                        break;
                if (c->status != 201) {
                        r = unexpected(c, "POST /v1/sandboxes/ID/processes");
                        break;
                }
                if (i >= o->warmup)
                        (void)samples_add(&s, t1 - t0);
        }
        if (sandbox_delete(c, id) < 0 && r == 0)
                r = -EIO;
        if (r < 0)
                return r;
        return emit_stats("spawn", &s, c->connects - conn0, json_pack("{s:s}", "template", o->template));
}

/* create + exec true + delete, all timed: the counterpart of `crun run /bin/true`. */
static int mode_cycle(struct client *c, const struct opts *o)
{
        struct samples s _samples_cleanup_ = {};
        long conn0 = 0;
        char id[MAX_ID];
        int r;

        if (samples_init(&s, (size_t)o->runs) < 0)
                return -ENOMEM;
        for (long i = 0; i < o->warmup + o->runs; i++) {
                double t0, t1, check0, check1 = 0;
                int rd;

                if (i == o->warmup)
                        conn0 = c->connects;
                t0 = bench_now_ms();
                r = sandbox_create(c, o->template, id);
                if (r < 0)
                        return r == -EAGAIN ? unexpected(c, "POST /v1/sandboxes") : r;
                r = sandbox_exec_true(c, id);
                if (r == 0) {
                        /* Checking the reply is the client's cost, not sbx's: keep it off the clock. */
                        check0 = bench_now_ms();
                        r = exec_reply_ok(c);
                        check1 = bench_now_ms() - check0;
                }
                rd = sandbox_delete(c, id);
                t1 = bench_now_ms();
                if (r < 0 || rd < 0)
                        return r < 0 ? r : rd;
                if (i >= o->warmup)
                        (void)samples_add(&s, t1 - t0 - check1);
        }
        return emit_stats("cycle", &s, c->connects - conn0, json_pack("{s:s}", "template", o->template));
}

static long meminfo_kib(const char *key)
{
        char line[256];
        size_t klen = strlen(key);
        long v = -1;
        FILE *f = fopen("/proc/meminfo", "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
                        v = strtol(line + klen + 1, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

static long rss_kib(long pid)
{
        char path[64], line[256];
        long v = -1;
        FILE *f;

        if (pid <= 0)
                return -1;
        snprintf(path, sizeof path, "/proc/%ld/status", pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, "VmRSS:", 6) == 0) {
                        v = strtol(line + 6, NULL, 10);
                        break;
                }
        fclose(f);
        return v;
}

/* Drop clean caches so that MemAvailable reflects memory that is really in use, then let the
 * system settle. Returns false when not permitted (the numbers are then noisier). */
static bool settle(void)
{
        FILE *f;
        bool ok;

        sync();
        f = fopen("/proc/sys/vm/drop_caches", "we");
        ok = f && fputs("3\n", f) >= 0;
        if (f && fclose(f) != 0)
                ok = false;
        sleep(1);
        return ok;
}

/* Create o->count sandboxes, measure host memory per sandbox and health latency while they all
 * exist, then delete them all. A create failure (say, a limit) ends the ramp early: what was
 * reached is measured and the error reported. */
static int mode_density(struct client *c, const struct opts *o)
{
        struct samples create_s _samples_cleanup_ = {}, health_s _samples_cleanup_ = {}, delete_s _samples_cleanup_ = {};
        _cleanup_free_ char (*ids)[MAX_ID] = calloc((size_t)o->count, MAX_ID);
        long avail0, avail1, rss0, rss1, created = 0, conn0 = c->connects;
        char err[600] = "";
        bool dropped;
        json_t *out;
        int r = 0;

        if (!ids || samples_init(&create_s, (size_t)o->count) < 0 || samples_init(&delete_s, (size_t)o->count) < 0 ||
            samples_init(&health_s, (size_t)o->runs) < 0)
                return -ENOMEM;

        dropped = settle();
        avail0 = meminfo_kib("MemAvailable");
        rss0 = rss_kib(o->pid);

        for (; created < o->count; created++) {
                double t0 = bench_now_ms();

                r = sandbox_create(c, o->template, ids[created]);
                if (r < 0) {
                        snprintf(err, sizeof err, "create #%ld failed: HTTP %ld %.400s", created + 1, c->status,
                                 c->body ? c->body : "");
                        break;
                }
                (void)samples_add(&create_s, bench_now_ms() - t0);
        }

        (void)settle();
        avail1 = meminfo_kib("MemAvailable");
        rss1 = rss_kib(o->pid);

        for (long i = 0; i < o->runs; i++) {
                double t0 = bench_now_ms();

                if (http(c, "GET", "/v1/health", NULL, false) < 0 || c->status != 200) {
                        snprintf(err, sizeof err, "GET /v1/health failed with %ld sandboxes", created);
                        break;
                }
                (void)samples_add(&health_s, bench_now_ms() - t0);
        }

        double d0 = bench_now_ms();
        for (long i = 0; i < created; i++) {
                double t0 = bench_now_ms();

                if (sandbox_delete(c, ids[i]) < 0) {
                        if (!err[0])
                                snprintf(err, sizeof err, "delete of %s failed", ids[i]);
                        continue;
                }
                (void)samples_add(&delete_s, bench_now_ms() - t0);
        }
        double delete_total = bench_now_ms() - d0;

        out = json_pack("{s:s, s:s, s:I, s:I, s:b, s:I, s:I, s:I, s:I, s:f, s:I}", "name", "density", "template",
                        o->template, "requested", (json_int_t)o->count, "created", (json_int_t)created,
                        "drop_caches", dropped, "mem_available_before_kib", (json_int_t)avail0,
                        "mem_available_after_kib", (json_int_t)avail1, "sbxd_rss_before_kib", (json_int_t)rss0,
                        "sbxd_rss_after_kib", (json_int_t)rss1, "delete_total_ms", round3(delete_total),
                        "connections", (json_int_t)(c->connects - conn0));
        if (!out)
                return -ENOMEM;
        if (created > 0 && avail0 >= 0 && avail1 >= 0)
                json_object_set_new(out, "host_kib_per_sandbox",
                                    json_real(round3((double)(avail0 - avail1) / (double)created)));
        if (created > 0 && rss0 >= 0 && rss1 >= 0)
                json_object_set_new(out, "sbxd_rss_kib_per_sandbox",
                                    json_real(round3((double)(rss1 - rss0) / (double)created)));
        json_object_set_new(out, "create", summary_json(&create_s));
        json_object_set_new(out, "health", summary_json(&health_s));
        json_object_set_new(out, "delete", summary_json(&delete_s));
        if (err[0])
                json_object_set_new(out, "error", json_string(err));
        r = emit(out);
        if (r == 0 && err[0]) {
                fprintf(stderr, "sbx-bench: density: %s\n", err);
                r = created > 0 ? 0 : -EIO;
        }
        return r;
}

/* Delete every sandbox the daemon lists (bench/run.sh's daemon has a throw-away data dir, and a
 * sandbox outlives its sbxd by design). Repeats until a listing shows none left, at most 10 times. */
static int mode_cleanup(struct client *c)
{
        long deleted = 0, left = 0;

        for (int round = 0; round < 10; round++) {
                char path[256] = "/v1/sandboxes?limit=1000";
                json_t *list = NULL;

                left = 0;
                for (;;) {
                        json_t *j, *arr, *sb;
                        const char *next;
                        size_t i;

                        if (http(c, "GET", path, NULL, false) < 0)
                                return -EIO;
                        if (c->status != 200)
                                return unexpected(c, "GET /v1/sandboxes");
                        j = json_loads(c->body ? c->body : "", 0, NULL);
                        arr = json_object_get(j, "sandboxes");
                        if (!list)
                                list = json_array();
                        json_array_foreach (arr, i, sb) {
                                const char *state = json_string_value(json_object_get(sb, "state"));

                                if (!state || strcmp(state, "deleted") != 0)
                                        json_array_append(list, json_object_get(sb, "id"));
                        }
                        next = json_string_value(json_object_get(j, "nextCursor"));
                        if (next)
                                snprintf(path, sizeof path, "/v1/sandboxes?limit=1000&cursor=%s", next);
                        json_decref(j);
                        if (!next)
                                break;
                }
                left = (long)json_array_size(list);
                for (size_t i = 0; i < json_array_size(list); i++) {
                        const char *id = json_string_value(json_array_get(list, i));

                        if (id && sandbox_delete(c, id) == 0)
                                deleted++;
                }
                json_decref(list);
                if (left == 0)
                        break;
        }
        return emit(json_pack("{s:s, s:I, s:I}", "name", "cleanup", "deleted", (json_int_t)deleted, "left",
                              (json_int_t)left));
}

static long parse_long(const char *s, const char *what, long min, long max)
{
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || end == s || *end || v < min || v > max) {
                fprintf(stderr, "sbx-bench: invalid %s '%s' (%ld..%ld)\n", what, s, min, max);
                exit(2);
        }
        return v;
}

static void usage(void)
{
        fprintf(stderr, "usage: sbx-bench [--url URL] [--key KEY] [-n RUNS] [-w WARMUP] [--template T] [--count M]\n"
                        "                 [--pid SBXD_PID] [--timeout S] [--path P]\n"
                        "                 freeport|wait|health|get|create|exec|cycle|density|cleanup\n");
        exit(2);
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "url", required_argument, NULL, 'u' },     { "key", required_argument, NULL, 'k' },
                { "runs", required_argument, NULL, 'n' },    { "warmup", required_argument, NULL, 'w' },
                { "template", required_argument, NULL, 't' }, { "count", required_argument, NULL, 'c' },
                { "pid", required_argument, NULL, 'p' },     { "timeout", required_argument, NULL, 'T' },
                { "path", required_argument, NULL, 'P' },    { "help", no_argument, NULL, 'h' },
                {},
        };
        struct opts o = {
                .url = getenv("SBX_URL") ? getenv("SBX_URL") : "http://127.0.0.1:7070",
                .key = getenv("SBX_KEY"),
                .template = "base",
                .runs = 200,
                .warmup = 5,
                .count = 1000,
                .timeout_s = 900,
                .path = "/v1/health",
        };
        struct client c;
        const char *mode;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "n:w:h", longopts, NULL)) != -1) {
                switch (opt) {
                case 'u':
                        o.url = optarg;
                        break;
                case 'k':
                        o.key = optarg;
                        break;
                case 'n':
                        o.runs = parse_long(optarg, "run count", 1, MAX_RUNS);
                        break;
                case 'w':
                        o.warmup = parse_long(optarg, "warm-up count", 0, MAX_RUNS);
                        break;
                case 't':
                        o.template = optarg;
                        break;
                case 'c':
                        o.count = parse_long(optarg, "sandbox count", 1, MAX_COUNT);
                        break;
                case 'p':
                        o.pid = parse_long(optarg, "pid", 1, 1L << 30);
                        break;
                case 'T':
                        o.timeout_s = parse_long(optarg, "timeout", 1, 86400);
                        break;
                case 'P':
                        o.path = optarg;
                        break;
                default:
                        usage();
                }
        }
        if (optind + 1 != argc)
                usage();
        mode = argv[optind];
        if (strcmp(mode, "freeport") == 0)
                return mode_freeport() < 0;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || client_init(&c, &o) < 0) {
                fprintf(stderr, "sbx-bench: cannot initialise libcurl\n");
                return 1;
        }
        if (strcmp(mode, "wait") == 0)
                r = mode_wait(&c, &o);
        else if (strcmp(mode, "health") == 0) {
                o.path = "/v1/health";
                r = mode_get(&c, &o, "health");
        } else if (strcmp(mode, "get") == 0)
                r = mode_get(&c, &o, "get");
        else if (strcmp(mode, "create") == 0)
                r = mode_create(&c, &o);
        else if (strcmp(mode, "exec") == 0)
                r = mode_exec(&c, &o);
        else if (strcmp(mode, "spawn") == 0)
                r = mode_spawn(&c, &o);
        else if (strcmp(mode, "cycle") == 0)
                r = mode_cycle(&c, &o);
        else if (strcmp(mode, "density") == 0)
                r = mode_density(&c, &o);
        else if (strcmp(mode, "cleanup") == 0)
                r = mode_cleanup(&c);
        else
                usage();
        client_done(&c);
        curl_global_cleanup();
        return r < 0;
}
