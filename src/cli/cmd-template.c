// SPDX-License-Identifier: Apache-2.0
/*
 * The image verbs: `sbx template` (ls, inspect, build, rm, export), `sbx image import` and
 * `sbx layer` (ls, gc). build reads a JSON spec, inlines the local files its entries name with
 * "src", posts it and follows the build's event stream (a progress bar on a terminal, one line
 * per stage otherwise), reconnecting with Last-Event-ID when the stream drops. Images move as
 * streams in both directions: export writes the body to a file as it arrives, import sends the
 * file as it is read; neither holds an image in memory. HTTP is in client.c; nothing here
 * checks what the server checks (spec fields, names), its messages name the field.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "output.h"

enum {
        OPT_NAME = OPT_VERB_BASE,
        OPT_NO_WAIT,
};

/* The verb-specific options given, so a subcommand can refuse those that are not its own. */
enum arg_flags {
        ARG_NAME = 1 << 0,    /* --name NAME */
        ARG_NO_WAIT = 1 << 1, /* --no-wait */
        ARG_VERBOSE = 1 << 2, /* -v, --verbose */
        ARG_OUTPUT = 1 << 3,  /* -o, --output FILE */
};

struct args {
        unsigned given; /* enum arg_flags */
        const char *name;
        const char *output;
};

#define BAR_WIDTH 10
#define STAGE_MAX 256

/* ---------- small helpers ---------- */

static int parse_args(struct cli *cli, int argc, char **argv, struct args *a, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "name", required_argument, NULL, OPT_NAME },
                { "no-wait", no_argument, NULL, OPT_NO_WAIT },
                { "verbose", no_argument, NULL, 'v' },
                { "output", required_argument, NULL, 'o' },
                {},
        };
        int c, r;

        while ((c = getopt_long(argc, argv, ":hvo:", options, NULL)) != -1) {
                switch (c) {
                case OPT_NAME:
                        a->given |= ARG_NAME;
                        a->name = optarg;
                        break;
                case OPT_NO_WAIT:
                        a->given |= ARG_NO_WAIT;
                        break;
                case 'v':
                        a->given |= ARG_VERBOSE;
                        break;
                case 'o':
                        a->given |= ARG_OUTPUT;
                        a->output = optarg;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r;
                }
        }
        return 0;
}

/* Refuse the options of a->given that `sbx VERB SUB` does not take. */
static int args_only(const struct args *a, unsigned allowed, const char *verb, const char *sub, struct cli_err *err)
{
        static const struct {
                unsigned flag;
                const char *name;
        } names[] = {
                { ARG_NAME, "--name" },
                { ARG_NO_WAIT, "--no-wait" },
                { ARG_VERBOSE, "--verbose" },
                { ARG_OUTPUT, "--output" },
        };

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if ((a->given & names[i].flag) && !(allowed & names[i].flag))
                        return cli_err_set(err, -CLI_E_USAGE,
                                           "option '%s' does not apply to 'sbx %s %s' (see 'sbx %s --help')",
                                           names[i].name, verb, sub, verb);
        return 0;
}

/* Check that `sbx VERB SUB` got between min and max operands (max < 0: no limit). */
static int operands(int n, char **ops, int min, int max, const char *verb, const char *sub, const char *what,
                    struct cli_err *err)
{
        if (n < min)
                return cli_err_set(err, -CLI_E_USAGE, "'sbx %s %s' needs %s (see 'sbx %s --help')", verb, sub, what,
                                   verb);
        if (max >= 0 && n > max)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (see 'sbx %s --help')", ops[max], verb);
        return 0;
}

/* Put "<prefix>: " before the message err already holds (an upper layer adding its context). */
static void err_prefix(struct cli_err *err, const char *prefix)
{
        size_t n = strlen(prefix) + 2, len;

        if (!err || err->code == 0 || n >= sizeof err->msg)
                return;
        len = strnlen(err->msg, sizeof err->msg - 1);
        if (len > sizeof err->msg - 1 - n) /* the end of an over-long message gives way */
                len = sizeof err->msg - 1 - n;
        memmove(err->msg + n, err->msg, len);
        memcpy(err->msg, prefix, n - 2);
        memcpy(err->msg + n - 2, ": ", 2);
        err->msg[n + len] = '\0';
}

/* "/v1/templates/<name><suffix>" with the name percent-encoded (one path segment). NULL on OOM. */
static char *template_path(const char *name, const char *suffix)
{
        _cleanup_free_ char *e = client_escape(name);
        char *path;

        if (!e || asprintf(&path, "/v1/templates/%s%s", e, suffix) < 0)
                return NULL;
        return path;
}

/* A table cell for a size in bytes: "1.2G", "148M", "12K", "0"; "-" when v is not an integer. */
static void human_size(const json_t *v, char *buf, size_t size)
{
        double b;

        if (!json_is_integer(v)) {
                snprintf(buf, size, "-");
                return;
        }
        b = (double)json_integer_value(v);
        if (b >= 1e9)
                snprintf(buf, size, "%.1fG", b / 1e9);
        else if (b >= 1e6)
                snprintf(buf, size, "%.0fM", b / 1e6);
        else if (b > 0)
                snprintf(buf, size, "%.0fK", b < 1e3 ? 1.0 : b / 1e3);
        else
                snprintf(buf, size, "0");
}

/* Bytes in messages: "147.7 MB" (decimal, like the tables; kB and GB at the ends of the range). */
static void mega(const json_t *v, char *buf, size_t size)
{
        double b = json_is_integer(v) ? (double)json_integer_value(v) : 0.0;

        if (b >= 1e9)
                snprintf(buf, size, "%.1f GB", b / 1e9);
        else if (b >= 1e6 || b == 0)
                snprintf(buf, size, "%.1f MB", b / 1e6);
        else
                snprintf(buf, size, "%.1f kB", b / 1e3);
}

static const char *plural(json_int_t n)
{
        return n == 1 ? "" : "s";
}

static int stdout_error(struct cli_err *err)
{
        return cli_err_set(err, -EIO, "cannot write to standard output");
}

/* Read fd to its end: at most max bytes, NUL-terminated. Returns 0, -EFBIG past max, or -errno. */
static int read_all(int fd, size_t max, char **ret, size_t *ret_len)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, cap = 0;

        for (;;) {
                ssize_t k;

                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : 65536;
                        char *n;

                        if (ncap > max + 1)
                                ncap = max + 1;
                        if (ncap <= len)
                                return -EFBIG;
                        n = realloc(buf, ncap + 1);
                        if (!n)
                                return -ENOMEM;
                        buf = n;
                        cap = ncap;
                }
                k = read(fd, buf + len, cap - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                len += (size_t)k;
                if (len > max)
                        return -EFBIG;
        }
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

static char *base64_encode(const unsigned char *p, size_t n)
{
        static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        char *out, *o;
        size_t i;

        if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
                return NULL;
        out = malloc((n + 2) / 3 * 4 + 1);
        if (!out)
                return NULL;
        o = out;
        for (i = 0; i + 3 <= n; i += 3) {
                *o++ = tab[p[i] >> 2];
                *o++ = tab[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)];
                *o++ = tab[((p[i + 1] & 0x0f) << 2) | (p[i + 2] >> 6)];
                *o++ = tab[p[i + 2] & 0x3f];
        }
        if (n - i == 1) {
                *o++ = tab[p[i] >> 2];
                *o++ = tab[(p[i] & 0x03) << 4];
                *o++ = '=';
                *o++ = '=';
        } else if (n - i == 2) {
                *o++ = tab[p[i] >> 2];
                *o++ = tab[((p[i] & 0x03) << 4) | (p[i + 1] >> 4)];
                *o++ = tab[(p[i + 1] & 0x0f) << 2];
                *o++ = '=';
        }
        *o = '\0';
        return out;
}

/*
 * Copy s into buf with control characters (C0, DEL, C1 as UTF-8) replaced by '?', so text from
 * the server cannot drive the terminal, and cut at max_cols characters (0: no cut). Never splits
 * a UTF-8 sequence. Returns the columns written (one per character).
 */
static size_t clean_text(char *buf, size_t size, const char *s, size_t max_cols)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t n = 0, cols = 0;

        while (*p) {
                size_t k = 1;
                bool ctrl = *p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f);

                if (ctrl && p[0] == 0xc2)
                        k = 2;
                else if (!ctrl)
                        while (p[k] && (p[k] & 0xc0) == 0x80)
                                k++;
                if ((max_cols && cols + 1 > max_cols) || n + (ctrl ? 1 : k) + 1 > size)
                        break;
                if (ctrl) {
                        buf[n++] = '?';
                } else {
                        memcpy(buf + n, p, k);
                        n += k;
                }
                cols++;
                p += k;
        }
        if (size > 0)
                buf[n] = '\0';
        return cols;
}

/* Columns s takes once cleaned: one per character, a C0 or C1 control included (as its '?'). */
static size_t text_width(const char *s)
{
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                w += (*p & 0xc0) != 0x80;
        return w;
}

/* ---------- tables ---------- */

#define TABLE_MAX_COLS 8

/* Append a row of n cells (copied; invalid UTF-8 becomes "?") to rows. */
static int table_add(json_t *rows, size_t n, const char *const *cells, struct cli_err *err)
{
        json_t *row = json_array();

        if (!row || json_array_append_new(rows, row) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                json_t *s = json_string(cells[i] ? cells[i] : "-");

                if (json_array_append_new(row, s ? s : json_string("?")) < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Print the header and rows, columns padded to their widest cell plus a two-space gutter, the
 * last one unpadded and no line with trailing blanks. Cells are cleaned by output_line(). */
static int table_print(const char *const *heads, size_t n, const json_t *rows, struct cli_err *err)
{
        size_t widths[TABLE_MAX_COLS], total = 1, i;
        const json_t *row;

        for (size_t c = 0; c < n; c++) {
                widths[c] = strlen(heads[c]);
                json_array_foreach(rows, i, row) {
                        size_t w = text_width(json_string_value(json_array_get(row, c)));

                        if (w > widths[c])
                                widths[c] = w;
                }
                total += widths[c] + 2;
        }
        for (i = 0; i <= json_array_size(rows); i++) {
                _cleanup_free_ char *line = NULL;
                const json_t *r = i > 0 ? json_array_get(rows, i - 1) : NULL;
                size_t len = 0, size = total;

                for (size_t c = 0; c < n; c++)
                        size += r ? json_string_length(json_array_get(r, c)) : 0;
                line = malloc(size);
                if (!line)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                for (size_t c = 0; c < n; c++) {
                        const char *cell = r ? json_string_value(json_array_get(r, c)) : heads[c];
                        size_t k = strlen(cell);

                        memcpy(line + len, cell, k);
                        len += k;
                        if (c + 1 < n)
                                for (size_t w = text_width(cell); w < widths[c] + 2; w++)
                                        line[len++] = ' ';
                }
                while (len > 0 && line[len - 1] == ' ')
                        len--;
                line[len] = '\0';
                output_line(line);
        }
        return 0;
}

/* ---------- template ls ---------- */

static int template_ls(struct client *client, bool json_out, struct cli_err *err)
{
        static const char *const heads[] = { "NAME", "STATE", "SIZE", "LAYERS", "SOURCE", "DESCRIPTION" };
        _cleanup_json_ json_t *reply = NULL, *rows = json_array();
        json_t *arr, *t;
        size_t i;
        int r;

        if (!rows)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = client_request(client, "GET", "/v1/templates", NULL, &reply, err);
        if (r < 0)
                return r;
        arr = json_object_get(reply, "templates");
        if (!json_is_array(arr))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no 'templates' list");
        if (json_out)
                return output_json(reply) < 0 ? stdout_error(err) : 0;
        json_array_foreach(arr, i, t) {
                const json_t *prog = json_object_get(t, "progress"), *layers = json_object_get(t, "layers");
                char size[32], nlayers[32];
                const char *cells[ELEMENTSOF(heads)];

                human_size(json_object_get(t, "sizeBytes"), size, sizeof size);
                if (json_is_object(prog))
                        snprintf(size, sizeof size, "%d%%", (int)json_integer_value(json_object_get(prog, "percent")));
                /* a count in the list, the digests in a single template */
                if (json_is_array(layers))
                        snprintf(nlayers, sizeof nlayers, "%zu", json_array_size(layers));
                else if (json_is_integer(layers) && json_integer_value(layers) > 0)
                        snprintf(nlayers, sizeof nlayers, "%lld", (long long)json_integer_value(layers));
                else
                        snprintf(nlayers, sizeof nlayers, "-");
                cells[0] = json_string_value(json_object_get(t, "name"));
                cells[1] = json_string_value(json_object_get(t, "state"));
                cells[2] = size;
                cells[3] = nlayers;
                cells[4] = json_string_value(json_object_get(t, "source"));
                cells[5] = json_string_value(json_object_get(t, "description")) ?: "";
                r = table_add(rows, ELEMENTSOF(heads), cells, err);
                if (r < 0)
                        return r;
        }
        return table_print(heads, ELEMENTSOF(heads), rows, err);
}

/* ---------- template build ---------- */

/* What following a build has seen so far. */
struct follow {
        const char *name;
        bool tty;     /* standard error is a terminal: one bar, rewritten in place */
        bool verbose; /* print log lines as they come */
        bool quiet;   /* --json: no progress, no log */
        size_t columns;
        bool bar_drawn;
        int percent;
        char stage[STAGE_MAX];
        char printed[STAGE_MAX]; /* not a terminal: the last stage printed */
        char last_id[SBX_CLI_MAX_EVENT_ID];
        bool got_event;   /* since the last (re)connect */
        char end_type[8]; /* "done" or "failed" once the build ended */
        json_t *end;      /* that event's data */
};

static void bar_draw(struct follow *f)
{
        static const char hashes[] = "##########", dots[] = "..........";
        const size_t head = sizeof "[..........] 100% " - 1;
        int fill = f->percent / (100 / BAR_WIDTH);
        char stage[STAGE_MAX * 2];

        if (fill < 0)
                fill = 0;
        if (fill > BAR_WIDTH)
                fill = BAR_WIDTH;
        /* one column short of the width, so the terminal never wraps and \r stays on this line */
        (void)clean_text(stage, sizeof stage, f->stage, f->columns > head + 1 ? f->columns - head - 1 : 1);
        fprintf(stderr, "\r[%.*s%.*s] %3d%% %s\033[K", fill, hashes, BAR_WIDTH - fill, dots, f->percent, stage);
        (void)fflush(stderr);
        f->bar_drawn = true;
}

static void bar_clear(struct follow *f)
{
        if (!f->bar_drawn)
                return;
        fputs("\r\033[K", stderr);
        (void)fflush(stderr);
        f->bar_drawn = false;
}

/* One line on standard error, cleaned: a log line or a stage. */
static void err_line(struct follow *f, const char *prefix, const char *s)
{
        char text[4096];

        (void)clean_text(text, sizeof text, s, 0);
        bar_clear(f);
        fprintf(stderr, "%s%s\n", prefix, text);
        if (f->tty && !f->quiet && !f->end)
                bar_draw(f);
}

static void on_progress(struct follow *f, const json_t *data)
{
        const json_t *pct = json_object_get(data, "percent");
        const char *stage = json_string_value(json_object_get(data, "stage"));

        if (json_is_integer(pct))
                f->percent = (int)json_integer_value(pct);
        if (stage)
                snprintf(f->stage, sizeof f->stage, "%s", stage);
        if (f->quiet)
                return;
        if (f->tty) {
                bar_draw(f);
        } else if (strcmp(f->stage, f->printed) != 0) {
                char line[STAGE_MAX + 16];

                snprintf(f->printed, sizeof f->printed, "%s", f->stage);
                snprintf(line, sizeof line, "%3d%% %s", f->percent, f->stage);
                err_line(f, "", line);
        }
}

static int on_event(const char *type, const char *id, const json_t *data, void *userdata, struct cli_err *err)
{
        struct follow *f = userdata;

        f->got_event = true;
        snprintf(f->last_id, sizeof f->last_id, "%s", id);
        if (f->end) /* nothing is expected after the end */
                return 0;
        if (strcmp(type, "progress") == 0) {
                on_progress(f, data);
        } else if (strcmp(type, "log") == 0) {
                const char *line = json_string_value(json_object_get(data, "line"));

                if (f->verbose && !f->quiet && line)
                        err_line(f, "  | ", line);
        } else if (strcmp(type, "step") == 0) {
                const char *step = json_string_value(json_object_get(data, "step"));
                const char *layer = json_string_value(json_object_get(data, "layer"));
                char line[256];

                if (f->verbose && !f->quiet && step) {
                        snprintf(line, sizeof line, "  %s: %slayer %.19s", step,
                                 json_is_true(json_object_get(data, "cached")) ? "cached " : "", layer ? layer : "-");
                        err_line(f, "", line);
                }
        } else if (strcmp(type, "done") == 0 || strcmp(type, "failed") == 0) {
                f->end = json_deep_copy(data);
                if (!f->end)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                snprintf(f->end_type, sizeof f->end_type, "%s", type);
        } else if (strcmp(type, "error") == 0) {
                return cli_err_set(err, -CLI_E_API, "following the build of '%s': %s", f->name,
                                   json_is_string(data) ? json_string_value(data) : "the server reported an error");
        }
        /* "truncated" (old events were dropped) and unknown types: nothing to show */
        return 0;
}

static void sleep_ms(unsigned ms)
{
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Follow the build's events until done or failed, reconnecting with Last-Event-ID. */
static int follow_events(struct client *client, struct follow *f, struct cli_err *err)
{
        _cleanup_free_ char *path = template_path(f->name, "/build/events");
        unsigned tries = 0;

        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        for (;;) {
                struct cli_err one = {};
                int r;

                f->got_event = false;
                r = client_events(client, path, f->last_id[0] ? f->last_id : NULL, on_event, f, &one);
                if (f->end)
                        return 0;
                if (r < 0 && r != -CLI_E_CONNECT)
                        return cli_err_set(err, r, "%s", one.msg);
                /* the stream dropped (or ended early): the count restarts once events flow again */
                if (f->got_event)
                        tries = 0;
                if (++tries > SBX_CLI_SSE_RECONNECTS) {
                        bar_clear(f);
                        return cli_err_set(
                                err, -CLI_E_CONNECT,
                                "lost the event stream of the build of '%s' (%s); see 'sbx template inspect %s'",
                                f->name, r < 0 ? one.msg : "it ended without a result", f->name);
                }
                sleep_ms(200 * tries);
        }
}

/* The build ended: print the result. Returns the exit status, or an error for a failed build. */
static int build_result(const struct follow *f, bool json_out, struct cli_err *err)
{
        const json_t *log = json_object_get(f->end, "log"), *line, *code;
        const char *step, *msg;
        size_t i;

        if (strcmp(f->end_type, "done") == 0) {
                const json_t *layers = json_object_get(f->end, "layers");
                const json_t *ms = json_object_get(f->end, "durationMs");
                char out[512];

                if (json_out)
                        return output_json(f->end) < 0 ? stdout_error(err) : 0;
                snprintf(out, sizeof out, "template %s built in %.1fs (%zu layer%s%s)", f->name,
                         json_is_integer(ms) ? (double)json_integer_value(ms) / 1000.0 : 0.0, json_array_size(layers),
                         plural((json_int_t)json_array_size(layers)),
                         json_is_true(json_object_get(f->end, "cached")) ? ", cached" : "");
                output_line(out);
                return 0;
        }

        if (json_out && output_json(f->end) < 0)
                return stdout_error(err);
        /* the log tail (the verbose run showed it already) */
        if (!json_out && !f->verbose && json_array_size(log) > 0) {
                char text[4096];

                fputs("last lines of the build log:\n", stderr);
                json_array_foreach(log, i, line) {
                        (void)clean_text(text, sizeof text, json_string_value(line) ?: "", 0);
                        fprintf(stderr, "  | %s\n", text);
                }
        }
        step = json_string_value(json_object_get(f->end, "step")) ?: "build";
        msg = json_string_value(json_object_get(f->end, "message")) ?: "no reason given";
        code = json_object_get(f->end, "exitCode");
        if (json_is_integer(code))
                return cli_err_set(err, -CLI_E_API, "build of template '%s' failed at step '%s' (exit code %lld): %s",
                                   f->name, step, (long long)json_integer_value(code), msg);
        return cli_err_set(err, -CLI_E_API, "build of template '%s' failed at step '%s': %s", f->name, step, msg);
}

/* Inline the local files named by files[].src (relative to dirfd) as contentBase64. */
static int inline_files(json_t *spec, int dirfd, const char *spec_name, struct cli_err *err)
{
        json_t *files = json_object_get(spec, "files"), *f;
        size_t i, used = 0;

        if (!json_is_array(files)) /* absent, or wrong: the server names the problem */
                return 0;
        json_array_foreach(files, i, f) {
                const json_t *src = json_object_get(f, "src");
                _cleanup_free_ char *data = NULL, *b64 = NULL;
                _cleanup_close_ int fd = -EBADF;
                const char *path, *other;
                struct stat st;
                size_t len = 0;
                int r;

                if (!src)
                        continue;
                path = json_string_value(src);
                if (!path || !*path || strlen(path) != json_string_length(src))
                        return cli_err_set(err, -EINVAL, "spec '%s': 'files[%zu].src' must be a file path", spec_name,
                                           i);
                other = json_object_get(f, "content")         ? "content"
                        : json_object_get(f, "contentBase64") ? "contentBase64"
                                                              : NULL;
                if (other)
                        return cli_err_set(err, -EINVAL, "spec '%s': 'files[%zu]' has both 'src' and '%s'; give one",
                                           spec_name, i, other);
                fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return cli_err_set(err, -errno, "spec '%s': cannot open '%s' (files[%zu].src): %s", spec_name,
                                           path, i, strerror(errno));
                if (fstat(fd, &st) < 0)
                        return cli_err_set(err, -errno, "spec '%s': cannot stat '%s': %s", spec_name, path,
                                           strerror(errno));
                if (!S_ISREG(st.st_mode))
                        return cli_err_set(err, -EINVAL, "spec '%s': '%s' (files[%zu].src) is not a regular file",
                                           spec_name, path, i);
                r = read_all(fd, SBX_CLI_MAX_SPEC - used, &data, &len);
                if (r == -EFBIG)
                        return cli_err_set(err, r,
                                           "spec '%s': its files are larger than %lu KiB in all, the API's limit",
                                           spec_name, SBX_CLI_MAX_SPEC >> 10);
                if (r < 0)
                        return cli_err_set(err, r, "spec '%s': cannot read '%s': %s", spec_name, path, strerror(-r));
                used += len;
                b64 = base64_encode((const unsigned char *)data, len);
                if (!b64 || json_object_set_new(f, "contentBase64", json_string(b64)) < 0 ||
                    json_object_del(f, "src") < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

/* Read and parse the spec file ("-": standard input); *ret_dirfd is where "src" paths start. */
static int spec_load(const char *file, json_t **ret, int *ret_dirfd, struct cli_err *err)
{
        _cleanup_close_ int fd = -EBADF, dirfd = -EBADF;
        _cleanup_free_ char *text = NULL, *dir = NULL;
        const char *slash;
        json_error_t jerr;
        size_t len = 0;
        json_t *spec;
        int r;

        if (strcmp(file, "-") == 0) {
                r = read_all(STDIN_FILENO, SBX_CLI_MAX_SPEC, &text, &len);
        } else {
                fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return cli_err_set(err, -errno, "cannot open spec '%s': %s", file, strerror(errno));
                slash = strrchr(file, '/');
                dir = slash ? strndup(file, slash == file ? 1 : (size_t)(slash - file)) : strdup(".");
                if (!dir)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (dirfd < 0)
                        return cli_err_set(err, -errno, "cannot open the directory of spec '%s': %s", file,
                                           strerror(errno));
                r = read_all(fd, SBX_CLI_MAX_SPEC, &text, &len);
        }
        if (r == -EFBIG)
                return cli_err_set(err, r, "spec '%s' is larger than %lu KiB, the API's limit", file,
                                   SBX_CLI_MAX_SPEC >> 10);
        if (r < 0)
                return cli_err_set(err, r, "cannot read spec '%s': %s", file, strerror(-r));
        spec = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!spec)
                return cli_err_set(err, -EINVAL, "spec '%s' is not valid JSON: %s (line %d, column %d)", file,
                                   jerr.text, jerr.line, jerr.column);
        if (!json_is_object(spec)) {
                json_decref(spec);
                return cli_err_set(err, -EINVAL, "spec '%s' must be a JSON object", file);
        }
        *ret = spec;
        *ret_dirfd = dirfd >= 0 ? dirfd : AT_FDCWD;
        dirfd = -EBADF; /* handed over */
        return 0;
}

static size_t terminal_columns(void)
{
        struct winsize ws;

        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
                return ws.ws_col;
        return 80;
}

static int template_build(struct cli *cli, const char *file, const struct args *a, struct cli_err *err)
{
        _cleanup_json_ json_t *spec = NULL, *reply = NULL;
        _cleanup_close_ int dirfd = -EBADF;
        struct follow f = {};
        struct client *client;
        const char *name;
        size_t size;
        int r;

        r = spec_load(file, &spec, &dirfd, err);
        if (r < 0)
                return r;
        r = inline_files(spec, dirfd, file, err); /* dirfd may be AT_FDCWD: the cleanup skips it */
        if (r < 0)
                return r;
        if ((a->given & ARG_NAME) && json_object_set_new(spec, "name", json_string(a->name)) < 0)
                return cli_err_set(err, -CLI_E_USAGE, "option '--name': value is not valid UTF-8");
        size = json_dumpb(spec, NULL, 0, JSON_COMPACT);
        if (size > SBX_CLI_MAX_SPEC)
                return cli_err_set(err, -EFBIG, "spec '%s' with its files is %zu KiB; the API takes at most %lu KiB",
                                   file, size >> 10, SBX_CLI_MAX_SPEC >> 10);

        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        r = client_request(client, "POST", "/v1/templates", spec, &reply, err);
        if (r == -CLI_E_API) {
                char what[256];

                if (strcmp(file, "-") == 0)
                        snprintf(what, sizeof what, "spec on standard input");
                else
                        snprintf(what, sizeof what, "spec '%s'", file);
                err_prefix(err, what);
        }
        if (r < 0)
                return r;
        name = json_string_value(json_object_get(reply, "name"));
        if (!name)
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no template name");
        if (a->given & ARG_NO_WAIT)
                return (cli->json ? output_json(reply) : output_json_pretty(reply)) < 0 ? stdout_error(err) : 0;

        f.name = name;
        f.verbose = a->given & ARG_VERBOSE;
        f.quiet = cli->json;
        f.tty = isatty(STDERR_FILENO);
        f.columns = f.tty ? terminal_columns() : 0;
        r = follow_events(client, &f, err);
        bar_clear(&f);
        if (r >= 0)
                r = build_result(&f, cli->json, err);
        json_decref(f.end);
        return r;
}

/* ---------- template rm ---------- */

static int template_rm(struct cli *cli, int n, char **names, struct cli_err *err)
{
        struct client *client;
        int r, failed = 0;

        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *path = template_path(names[i], "");
                _cleanup_json_ json_t *reply = NULL;
                struct cli_err one = {};
                json_int_t layers;
                char mb[32], line[512];

                if (!path)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                r = client_request(client, "DELETE", path, NULL, &reply, &one);
                if (r == -CLI_E_CONNECT) /* fails every name alike: stop at the first */
                        return cli_err_set(err, r, "%s", one.msg);
                if (r < 0) {
                        output_errorf("%s", one.msg);
                        failed = 1;
                        continue;
                }
                if (cli->json) {
                        if (reply && output_json(reply) < 0)
                                return stdout_error(err);
                        continue;
                }
                layers = json_integer_value(json_object_get(reply, "layersRemoved"));
                mega(json_object_get(reply, "bytesFreed"), mb, sizeof mb);
                snprintf(line, sizeof line, "removed %s (%lld layer%s, %s freed)",
                         json_string_value(json_object_get(reply, "name")) ?: names[i], (long long)layers,
                         plural(layers), mb);
                output_line(line);
        }
        return failed ? CLI_EXIT_FAILURE : 0;
}

/* ---------- template export ---------- */

static int template_export(struct cli *cli, const char *name, const char *output, struct cli_err *err)
{
        _cleanup_free_ char *path = template_path(name, "/export"), *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        bool to_stdout = !output || strcmp(output, "-") == 0;
        struct client *client;
        uint64_t bytes = 0;
        char mb[32], line[4200];
        int r;

        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (to_stdout && isatty(STDOUT_FILENO))
                return cli_err_set(err, -CLI_E_USAGE,
                                   "refusing to write an image to a terminal; use -o FILE or redirect");
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        if (to_stdout) {
                (void)fflush(stdout); /* the body goes straight to fd 1 */
                r = client_download(client, path, STDOUT_FILENO, "standard output", NULL, err);
                return r < 0 ? r : 0;
        }

        /* FILE appears only once complete: written as FILE.tmp, renamed at the end */
        if (asprintf(&tmp, "%s.tmp", output) < 0) {
                tmp = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0666);
        if (fd < 0)
                return cli_err_set(err, -errno, "cannot create '%s': %s", tmp, strerror(errno));
        r = client_download(client, path, fd, tmp, &bytes, err);
        if (r >= 0 && fsync(fd) < 0)
                r = cli_err_set(err, -errno, "cannot write '%s': %s", tmp, strerror(errno));
        if (r >= 0) {
                r = close(TAKE_FD(fd));
                if (r < 0)
                        r = cli_err_set(err, -errno, "cannot write '%s': %s", tmp, strerror(errno));
        }
        if (r >= 0 && rename(tmp, output) < 0)
                r = cli_err_set(err, -errno, "cannot rename '%s' to '%s': %s", tmp, output, strerror(errno));
        if (r < 0) {
                (void)unlink(tmp);
                return r;
        }
        if (cli->json) {
                _cleanup_json_ json_t *o =
                        json_pack("{s:s, s:s, s:I}", "name", name, "file", output, "bytes", (json_int_t)bytes);

                if (!o)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                return output_json(o) < 0 ? stdout_error(err) : 0;
        }
        {
                json_t *b = json_integer((json_int_t)bytes);

                mega(b, mb, sizeof mb);
                json_decref(b);
        }
        snprintf(line, sizeof line, "exported %s to %s (%s)", name, output, mb);
        output_line(line);
        return 0;
}

/* ---------- image import ---------- */

static int image_import(struct cli *cli, const char *file, const struct args *a, struct cli_err *err)
{
        _cleanup_free_ char *query = NULL, *path = NULL;
        _cleanup_json_ json_t *reply = NULL;
        _cleanup_close_ int fd = -EBADF;
        const json_t *layers;
        struct client *client;
        const char *shown = file;
        json_int_t n;
        struct stat st;
        char mb[32], line[512];
        int in, r;

        if (strcmp(file, "-") == 0) {
                if (isatty(STDIN_FILENO))
                        return cli_err_set(err, -CLI_E_USAGE,
                                           "refusing to read an image from a terminal; give FILE or redirect");
                in = STDIN_FILENO;
                shown = "standard input";
        } else {
                fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return cli_err_set(err, -errno, "cannot open '%s': %s", file, strerror(errno));
                in = fd;
        }
        if (fstat(in, &st) < 0)
                return cli_err_set(err, -errno, "cannot stat '%s': %s", shown, strerror(errno));
        if (S_ISDIR(st.st_mode))
                return cli_err_set(err, -EISDIR,
                                   "'%s' is a directory; give a tarball (an OCI layout: tar -C DIR -cf FILE.tar .)",
                                   shown);
        if ((a->given & ARG_NAME) && client_query_add(&query, "name", a->name) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (asprintf(&path, "/v1/templates/import%s", query ? query : "") < 0) {
                path = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        /* a regular file has a known length; a pipe goes chunked */
        r = client_upload(client, "POST", path, in, S_ISREG(st.st_mode) ? (int64_t)st.st_size : -1, "application/x-tar",
                          shown, &reply, err);
        if (r < 0)
                return r;
        if (cli->json)
                return output_json(reply) < 0 ? stdout_error(err) : 0;
        layers = json_object_get(reply, "layers");
        n = json_is_array(layers) ? (json_int_t)json_array_size(layers) : json_integer_value(layers);
        mega(json_object_get(reply, "sizeBytes"), mb, sizeof mb);
        snprintf(line, sizeof line, "imported %s (%lld layer%s, %s)",
                 json_string_value(json_object_get(reply, "name")) ?: "?", (long long)n, plural(n), mb);
        output_line(line);
        return 0;
}

/* ---------- layer ls / gc ---------- */

static int layer_ls(struct client *client, bool json_out, struct cli_err *err)
{
        static const char *const heads[] = { "DIGEST", "SIZE", "TEMPLATES", "REFS" };
        _cleanup_json_ json_t *reply = NULL, *rows = json_array();
        const json_t *arr, *l;
        char size[32], count[48];
        const char *total[ELEMENTSOF(heads)];
        size_t i;
        int r;

        if (!rows)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = client_request(client, "GET", "/v1/layers", NULL, &reply, err);
        if (r < 0)
                return r;
        arr = json_object_get(reply, "layers");
        if (!json_is_array(arr))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no 'layers' list");
        if (json_out)
                return output_json(reply) < 0 ? stdout_error(err) : 0;
        json_array_foreach(arr, i, l) {
                const char *digest = json_string_value(json_object_get(l, "digest")) ?: "-";
                const char *colon = strchr(digest, ':');
                const json_t *users = json_object_get(l, "templates"), *u;
                char shortd[16], refs[32], names[1024] = "";
                const char *cells[ELEMENTSOF(heads)];
                size_t k, len = 0;

                snprintf(shortd, sizeof shortd, "%.12s", colon ? colon + 1 : digest);
                human_size(json_object_get(l, "sizeBytes"), size, sizeof size);
                json_array_foreach(users, k, u) {
                        int w = snprintf(names + len, sizeof names - len, "%s%s", k ? "," : "",
                                         json_string_value(u) ?: "?");

                        if (w < 0 || (size_t)w >= sizeof names - len)
                                break; /* a very long list is cut */
                        len += (size_t)w;
                }
                snprintf(refs, sizeof refs, "%lld", (long long)json_integer_value(json_object_get(l, "refs")));
                cells[0] = shortd;
                cells[1] = size;
                cells[2] = len ? names : "-";
                cells[3] = refs;
                r = table_add(rows, ELEMENTSOF(heads), cells, err);
                if (r < 0)
                        return r;
        }
        human_size(json_object_get(reply, "totalBytes"), size, sizeof size);
        snprintf(count, sizeof count, "%zu layer%s", json_array_size(arr), plural((json_int_t)json_array_size(arr)));
        total[0] = "TOTAL";
        total[1] = size;
        total[2] = count;
        total[3] = "";
        r = table_add(rows, ELEMENTSOF(heads), total, err);
        if (r < 0)
                return r;
        return table_print(heads, ELEMENTSOF(heads), rows, err);
}

static int layer_gc(struct client *client, bool json_out, struct cli_err *err)
{
        _cleanup_json_ json_t *reply = NULL;
        json_int_t n;
        char mb[32], line[128];
        int r;

        r = client_request(client, "POST", "/v1/layers/gc", NULL, &reply, err);
        if (r < 0)
                return r;
        if (!json_is_object(reply))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply is not an object");
        if (json_out)
                return output_json(reply) < 0 ? stdout_error(err) : 0;
        n = json_integer_value(json_object_get(reply, "layersRemoved"));
        mega(json_object_get(reply, "bytesFreed"), mb, sizeof mb);
        snprintf(line, sizeof line, "removed %lld layer%s, %s freed", (long long)n, plural(n), mb);
        output_line(line);
        return 0;
}

/* ---------- verbs ---------- */

int cmd_template(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        _cleanup_free_ char *path = NULL;
        struct client *client;
        struct args a = {};
        const char *sub;
        char **ops;
        int n, r;

        r = parse_args(cli, argc, argv, &a, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE,
                                   "missing command: ls, inspect, build, rm or export (see 'sbx template --help')");
        sub = argv[optind];
        ops = argv + optind + 1;
        n = argc - optind - 1;

        if (strcmp(sub, "ls") == 0) {
                if ((r = args_only(&a, 0, "template", sub, err)) < 0 ||
                    (r = operands(n, ops, 0, 0, "template", sub, "", err)) < 0)
                        return r;
                r = cli_client(cli, &client, err);
                return r < 0 ? r : template_ls(client, cli->json, err);
        }
        if (strcmp(sub, "inspect") == 0) {
                if ((r = args_only(&a, 0, "template", sub, err)) < 0 ||
                    (r = operands(n, ops, 1, 1, "template", sub, "a template NAME", err)) < 0)
                        return r;
                path = template_path(ops[0], "");
                if (!path)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                return cli_show(cli, path, err);
        }
        if (strcmp(sub, "build") == 0) {
                if ((r = args_only(&a, ARG_NAME | ARG_NO_WAIT | ARG_VERBOSE, "template", sub, err)) < 0 ||
                    (r = operands(n, ops, 1, 1, "template", sub, "a SPEC.json file ('-': standard input)", err)) < 0)
                        return r;
                return template_build(cli, ops[0], &a, err);
        }
        if (strcmp(sub, "rm") == 0) {
                if ((r = args_only(&a, 0, "template", sub, err)) < 0 ||
                    (r = operands(n, ops, 1, -1, "template", sub, "at least one template NAME", err)) < 0)
                        return r;
                return template_rm(cli, n, ops, err);
        }
        if (strcmp(sub, "export") == 0) {
                if ((r = args_only(&a, ARG_OUTPUT, "template", sub, err)) < 0 ||
                    (r = operands(n, ops, 1, 1, "template", sub, "a template NAME", err)) < 0)
                        return r;
                return template_export(cli, ops[0], a.output, err);
        }
        return cli_err_set(err, -CLI_E_USAGE, "unknown template command '%s' (see 'sbx template --help')", sub);
}

int cmd_image(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        struct args a = {};
        char **ops;
        int n, r;

        r = parse_args(cli, argc, argv, &a, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing command: import (see 'sbx image --help')");
        if (strcmp(argv[optind], "import") != 0)
                return cli_err_set(err, -CLI_E_USAGE, "unknown image command '%s' (see 'sbx image --help')",
                                   argv[optind]);
        ops = argv + optind + 1;
        n = argc - optind - 1;
        if ((r = args_only(&a, ARG_NAME, "image", "import", err)) < 0 ||
            (r = operands(n, ops, 1, 1, "image", "import", "a FILE.tar ('-': standard input)", err)) < 0)
                return r;
        return image_import(cli, ops[0], &a, err);
}

int cmd_layer(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        struct client *client;
        struct args a = {};
        const char *sub;
        int r;

        r = parse_args(cli, argc, argv, &a, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing command: ls or gc (see 'sbx layer --help')");
        sub = argv[optind];
        if (strcmp(sub, "ls") != 0 && strcmp(sub, "gc") != 0)
                return cli_err_set(err, -CLI_E_USAGE, "unknown layer command '%s' (see 'sbx layer --help')", sub);
        if ((r = args_only(&a, 0, "layer", sub, err)) < 0 ||
            (r = operands(argc - optind - 1, argv + optind + 1, 0, 0, "layer", sub, "", err)) < 0)
                return r;
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        return strcmp(sub, "ls") == 0 ? layer_ls(client, cli->json, err) : layer_gc(client, cli->json, err);
}
