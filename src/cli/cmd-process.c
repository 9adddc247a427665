// SPDX-License-Identifier: Apache-2.0
/*
 * The process verbs (docs/processes.md): `exec -d` (its request is built by cmd-exec.c and sent
 * here), ps, logs, kill, and shell, an interactive terminal over the attach WebSocket. Each parses
 * its options, makes its requests and prints; HTTP is client.c's and WebSocket framing
 * ws-client.c's. shell is the one verb that changes the terminal: it puts it in raw mode and puts
 * it back on every way out, signals included (they are read from a signalfd in its poll loop, so
 * nothing runs in a signal handler).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "output.h"
#include "ws-client.h"

enum {
        OPT_ALL = OPT_VERB_BASE,
        OPT_STDERR,
        OPT_FROM,
        OPT_USER,
        OPT_CWD,
};

#define PS_MIN_COMMAND 10 /* columns the COMMAND of `ps` keeps however narrow the terminal */

/* "/v1/sandboxes/ID/processes[/PROCESS][SUFFIX]", both parts escaped; NULL on OOM. */
static char *process_path(const char *id, const char *process, const char *suffix)
{
        _cleanup_free_ char *eid = client_escape(id), *epr = process ? client_escape(process) : NULL;
        char *path;

        if (!eid || (process && !epr))
                return NULL;
        if (asprintf(&path, "/v1/sandboxes/%s/processes%s%s%s", eid, process ? "/" : "", process ? epr : "",
                     suffix ? suffix : "") < 0)
                return NULL;
        return path;
}

/* Exactly n operands left after the options, named by usage for the message. */
static int operands(int argc, char **argv, int n, const char *usage, struct cli_err *err)
{
        if (argc - optind < n)
                return cli_err_set(err, -CLI_E_USAGE, "missing %s (usage: %s)",
                                   argc - optind == 0 ? "operands" : "operand", usage);
        if (argc - optind > n)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (see 'sbx %s --help')",
                                   argv[optind + n], argv[0]);
        return 0;
}

int cli_process_start(struct cli *cli, const char *id, const json_t *body, struct cli_err *err)
{
        _cleanup_free_ char *path = process_path(id, NULL, NULL);
        _cleanup_json_ json_t *reply = NULL;
        struct client *client;
        const char *pid;
        int r;

        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        r = client_request(client, "POST", path, body, &reply, err);
        if (r < 0)
                return r;
        pid = json_string_value(json_object_get(reply, "processId"));
        if (!pid)
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no processId");
        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        output_line(pid);
        return 0;
}

/* ---------- ps ---------- */

enum {
        PS_ID,
        PS_PID,
        PS_STATUS,
        PS_EXIT,
        PS_STARTED,
        PS_COMMAND,
        PS_COLS
};

static const char *const ps_heads[PS_COLS] = { "PROCESS ID", "PID", "STATUS", "EXIT", "STARTED", "COMMAND" };

/* Columns s takes: one per character (UTF-8 continuation bytes are not counted). */
static size_t text_width(const char *s)
{
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                w += (*p & 0xc0) != 0x80;
        return w;
}

/*
 * s as a table cell: control characters and bytes that are not UTF-8 become '?' (so the server
 * cannot drive the terminal), at most max columns (0: no limit), ending in "..." when cut.
 * Returns a malloc'd string or NULL.
 */
static char *cell_clean(const char *s, size_t max)
{
        size_t o = 0, cols = 0, cut = 0;
        char *out = malloc(strlen(s) + 1); /* cleaning never makes it longer */

        if (!out)
                return NULL;
        for (const unsigned char *p = (const unsigned char *)s; *p;) {
                size_t k = 1;

                if (*p >= 0xc2 && *p <= 0xf4) { /* a multibyte sequence is copied whole */
                        size_t want = *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;

                        while (k < want && (p[k] & 0xc0) == 0x80)
                                k++;
                        if (k < want)
                                k = 1;
                }
                if (max > 3 && cols == max - 3)
                        cut = o; /* where "..." goes if the rest does not fit */
                if (max && cols == max) {
                        if (max > 3)
                                memcpy(out + cut, "...", 4);
                        else
                                out[o] = '\0';
                        return out;
                }
                if ((k == 1 && (*p < 0x20 || *p >= 0x7f)) || (k == 2 && p[0] == 0xc2 && p[1] <= 0x9f))
                        out[o++] = '?'; /* C0, DEL, C1, not UTF-8 */
                else {
                        memcpy(out + o, p, k);
                        o += k;
                }
                cols++;
                p += k;
        }
        out[o] = '\0';
        return out;
}

static char *cell_int(const json_t *v)
{
        char *s;

        if (!json_is_integer(v))
                return strdup("-");
        if (asprintf(&s, "%lld", (long long)json_integer_value(v)) < 0)
                return NULL;
        return s;
}

static char *cell_string(const json_t *v)
{
        const char *s = json_string_value(v);

        return cell_clean(s && *s ? s : "-", 0);
}

/* argv joined with spaces, cleaned and cut to max columns. */
static char *cell_command(const json_t *argv, size_t max)
{
        _cleanup_free_ char *joined = NULL;
        size_t len = 0, i;
        const json_t *a;

        json_array_foreach(argv, i, a)
                len += json_string_length(a) + 1;
        joined = malloc(len + 2);
        if (!joined)
                return NULL;
        len = 0;
        json_array_foreach(argv, i, a) {
                const char *s = json_string_value(a);
                size_t n = json_string_length(a);

                if (!s)
                        continue;
                if (len > 0)
                        joined[len++] = ' ';
                /* an argument with a NUL in it ends there */
                n = strnlen(s, n);
                memcpy(joined + len, s, n);
                len += n;
        }
        joined[len] = '\0';
        return cell_clean(len ? joined : "-", max);
}

static bool ps_running(const json_t *p)
{
        const char *st = json_string_value(json_object_get(p, "status"));

        return st && (strcmp(st, "running") == 0 || strcmp(st, "starting") == 0);
}

struct ps_table {
        size_t n;
        char *(*cells)[PS_COLS];
};

static void ps_table_release(struct ps_table *t)
{
        for (size_t i = 0; i < t->n; i++)
                for (size_t c = 0; c < PS_COLS; c++)
                        free(t->cells[i][c]);
        free(t->cells);
}

/* The terminal's width if stdout is one, else 0 (no cut). */
static size_t stdout_columns(void)
{
        struct winsize w;

        if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0 && w.ws_col > 0)
                return w.ws_col;
        return 0;
}

static int ps_print(const json_t *procs, struct cli_err *err)
{
        _cleanup_(ps_table_release) struct ps_table t = {};
        size_t widths[PS_COLS], prefix = 0, cols = stdout_columns(), i;
        const json_t *p;

        t.cells = calloc(json_array_size(procs) + 1, sizeof *t.cells);
        if (!t.cells)
                return cli_err_set(err, -ENOMEM, "out of memory");
        json_array_foreach(procs, i, p) {
                char **row = t.cells[t.n++];

                row[PS_ID] = cell_string(json_object_get(p, "processId"));
                row[PS_PID] = cell_int(json_object_get(p, "pid"));
                row[PS_STATUS] = cell_string(json_object_get(p, "status"));
                row[PS_EXIT] = cell_int(json_object_get(p, "exitCode"));
                row[PS_STARTED] = cell_string(json_object_get(p, "startedAt"));
                for (size_t c = 0; c < PS_COMMAND; c++)
                        if (!row[c])
                                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        for (size_t c = 0; c < PS_COLS; c++) {
                widths[c] = strlen(ps_heads[c]);
                for (i = 0; c < PS_COMMAND && i < t.n; i++) {
                        size_t w = text_width(t.cells[i][c]);

                        if (w > widths[c])
                                widths[c] = w;
                }
                if (c < PS_COMMAND)
                        prefix += widths[c] + 2;
        }
        /* the command takes what the other columns leave of the terminal's width */
        json_array_foreach(procs, i, p) {
                size_t max = cols ? (cols > prefix + PS_MIN_COMMAND ? cols - prefix : PS_MIN_COMMAND) : 0;

                t.cells[i][PS_COMMAND] = cell_command(json_object_get(p, "argv"), max);
                if (!t.cells[i][PS_COMMAND])
                        return cli_err_set(err, -ENOMEM, "out of memory");
        }
        for (i = 0; i <= t.n; i++) {
                const char *const *row = i == 0 ? ps_heads : (const char *const *)t.cells[i - 1];

                for (size_t c = 0; c < PS_COLS; c++) {
                        fputs(row[c], stdout);
                        if (c + 1 < PS_COLS)
                                for (size_t w = text_width(row[c]); w < widths[c] + 2; w++)
                                        fputc(' ', stdout);
                }
                fputc('\n', stdout);
        }
        return 0;
}

int cmd_ps(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "all", no_argument, NULL, 'a' },
                {},
        };
        _cleanup_json_ json_t *reply = NULL, *shown = NULL;
        _cleanup_free_ char *path = NULL;
        struct client *client;
        const json_t *procs, *p;
        bool all = false;
        size_t i;
        int c, r;

        while ((c = getopt_long(argc, argv, ":ha", options, NULL)) != -1) {
                if (c == 'a') {
                        all = true;
                        continue;
                }
                r = cli_common_option(cli, argv[0], c, argv, err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = operands(argc, argv, 1, "sbx ps [--all] ID", err);
        if (r < 0)
                return r;
        path = process_path(argv[optind], NULL, NULL);
        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        r = client_request(client, "GET", path, NULL, &reply, err);
        if (r < 0)
                return r;
        procs = json_object_get(reply, "processes");
        if (!json_is_array(procs))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no processes array");

        shown = json_array();
        if (!shown)
                return cli_err_set(err, -ENOMEM, "out of memory");
        json_array_foreach(procs, i, p)
                if ((all || ps_running(p)) && json_array_append(shown, (json_t *)p) < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        if (cli->json) {
                json_t *o = json_pack("{sO}", "processes", shown);
                int w;

                if (!o)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                w = output_json(o);
                json_decref(o);
                return w < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        }
        return ps_print(shown, err);
}

/* ---------- logs ---------- */

int cmd_logs(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "follow", no_argument, NULL, 'f' },
                { "stderr", no_argument, NULL, OPT_STDERR },
                { "from", required_argument, NULL, OPT_FROM },
                {},
        };
        _cleanup_free_ char *path = NULL, *query = NULL, *suffix = NULL;
        const char *from = NULL;
        bool follow = false, err_stream = false;
        struct client *client;
        json_int_t offset;
        int c, r;

        while ((c = getopt_long(argc, argv, ":hf", options, NULL)) != -1) {
                switch (c) {
                case 'f':
                        follow = true;
                        break;
                case OPT_STDERR:
                        err_stream = true;
                        break;
                case OPT_FROM:
                        r = cli_parse_int("from", optarg, &offset, err);
                        if (r < 0)
                                return r;
                        from = optarg;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
        r = operands(argc, argv, 2, "sbx logs [-f] [--stderr] [--from N] ID PROCESS", err);
        if (r < 0)
                return r;
        if ((from && client_query_add(&query, "from", from) < 0) ||
            (!follow && client_query_add(&query, "follow", "false") < 0) ||
            asprintf(&suffix, "/%s%s", err_stream ? "stderr" : "stdout", query ? query : "") < 0) {
                suffix = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        path = process_path(argv[optind], argv[optind + 1], suffix);
        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        /* bytes go straight to fd 1: nothing may still wait in stdout's buffer */
        (void)fflush(stdout);
        r = client_download(client, path, STDOUT_FILENO, "standard output", NULL, err);
        return r < 0 ? r : 0;
}

/* ---------- kill ---------- */

/* A signal as the API takes it: a number 1..64, or a name (with or without SIG, any case). */
static int signal_value(const char *s, json_t **ret, struct cli_err *err)
{
        const char *name = s;

        if (*s >= '0' && *s <= '9') {
                char *end;
                unsigned long v = strtoul(s, &end, 10);

                if (*end || v < 1 || v > 64)
                        return cli_err_set(err, -CLI_E_USAGE, "invalid signal '%s': a number is 1..64", s);
                *ret = json_integer((json_int_t)v);
                return *ret ? 0 : cli_err_set(err, -ENOMEM, "out of memory");
        }
        if (strncasecmp(name, "SIG", 3) == 0)
                name += 3;
        /* the standard signals 1..31; the server knows them by these names */
        for (int i = 1; i < 32; i++) {
                const char *abbrev = sigabbrev_np(i);

                if (abbrev && strcasecmp(name, abbrev) == 0) {
                        *ret = json_string(abbrev);
                        return *ret ? 0 : cli_err_set(err, -ENOMEM, "out of memory");
                }
        }
        return cli_err_set(err, -CLI_E_USAGE, "invalid signal '%s' (a name like TERM or SIGKILL, or a number)", s);
}

int cmd_kill(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "signal", required_argument, NULL, 's' },
                {},
        };
        _cleanup_json_ json_t *body = NULL, *reply = NULL;
        _cleanup_free_ char *path = NULL;
        const char *sig = "KILL";
        struct client *client;
        json_t *v = NULL;
        int c, r;

        while ((c = getopt_long(argc, argv, ":hs:", options, NULL)) != -1) {
                if (c == 's') {
                        sig = optarg;
                        continue;
                }
                r = cli_common_option(cli, argv[0], c, argv, err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = signal_value(sig, &v, err);
        if (r < 0)
                return r;
        body = json_pack("{so}", "signal", v);
        if (!body)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = operands(argc, argv, 2, "sbx kill [-s SIGNAL] ID PROCESS", err);
        if (r < 0)
                return r;
        path = process_path(argv[optind], argv[optind + 1], "/signal");
        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        r = client_request(client, "POST", path, body, &reply, err);
        if (r < 0)
                return r;
        if (cli->json && reply && output_json(reply) < 0)
                return cli_err_set(err, -EIO, "cannot write to standard output");
        return 0;
}

/* ---------- shell ---------- */

/* Our terminal, in raw mode while `raw`; shell_term_restore() puts it back. */
struct shell_term {
        int fd; /* standard input, when it is a terminal; else -EBADF */
        bool raw;
        struct termios saved;
};

static void shell_term_restore(struct shell_term *t)
{
        if (t->raw) {
                (void)tcsetattr(t->fd, TCSADRAIN, &t->saved);
                t->raw = false;
        }
}

/* Restores the signal mask and closes the signalfd. */
struct shell_signals {
        int fd; /* signalfd of INT, TERM, HUP, WINCH; -EBADF when not set up */
        sigset_t old_mask;
        struct sigaction old_pipe;
};

static void shell_signals_release(struct shell_signals *s)
{
        if (s->fd < 0)
                return;
        (void)close(s->fd);
        s->fd = -EBADF;
        (void)sigaction(SIGPIPE, &s->old_pipe, NULL);
        /* a signal still pending in the mask (one that arrived after we stopped reading) stays
         * pending: its default action then ends sbx, after the terminal was put back */
        (void)sigprocmask(SIG_SETMASK, &s->old_mask, NULL);
}

struct shell {
        struct ws_client *ws;
        bool exited;  /* the "exit" message arrived */
        int exitcode; /* its exitCode, 0..255 */
};

/* The size of our terminal (stdin's, else stdout's); 80x24 and false when neither is one. */
static bool terminal_size(int *cols, int *rows)
{
        struct winsize w;

        *cols = 80;
        *rows = 24;
        if ((ioctl(STDIN_FILENO, TIOCGWINSZ, &w) == 0 || ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0) && w.ws_col > 0 &&
            w.ws_row > 0) {
                *cols = w.ws_col;
                *rows = w.ws_row;
                return true;
        }
        return false;
}

static int exit_code_of(const json_t *proc)
{
        const json_t *code = json_object_get(proc, "exitCode");

        if (!json_is_integer(code))
                return -1;
        if (json_integer_value(code) < 0 || json_integer_value(code) > 255)
                return 255;
        return (int)json_integer_value(code);
}

static int shell_on_message(bool binary, const uint8_t *data, size_t len, void *userdata, struct cli_err *err)
{
        struct shell *sh = userdata;
        _cleanup_json_ json_t *msg = NULL;
        const char *type;
        int r;

        if (binary) {
                int fd = len > 0 && data[0] == 2 ? STDERR_FILENO : STDOUT_FILENO;

                if (len < 9) /* [stream][offset: 8 bytes][bytes] */
                        return cli_err_set(err, -CLI_E_PROTOCOL, "the server sent an output frame of %zu bytes", len);
                r = output_write_all(fd, (const char *)data + 9, len - 9);
                if (r < 0)
                        return cli_err_set(err, r, "cannot write to standard %s: %s",
                                           fd == STDOUT_FILENO ? "output" : "error", strerror(-r));
                return 0;
        }
        msg = json_loadb((const char *)data, len, 0, NULL);
        type = json_string_value(json_object_get(msg, "type"));
        if (!type)
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server sent a text message that is not JSON with a type");
        if (strcmp(type, "exit") == 0) {
                int code = exit_code_of(msg);

                sh->exited = true;
                sh->exitcode = code >= 0 ? code : 255;
        } else if (strcmp(type, "error") == 0) {
                const char *m = json_string_value(json_object_get(msg, "message"));

                output_errorf("server: %s", m ? m : "error");
        }
        /* replayed, truncated and later additions need nothing */
        return 0;
}

static int shell_send_json(struct shell *sh, json_t *msg, struct cli_err *err)
{
        _cleanup_free_ char *s = NULL;
        int r;

        if (!msg)
                return cli_err_set(err, -ENOMEM, "out of memory");
        s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!s)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = ws_client_send(sh->ws, false, s, strlen(s));
        return r == -ENOMEM ? cli_err_set(err, r, "out of memory") : 0; /* -EPIPE: the end is near anyway */
}

/* Read what stdin has and queue it. Returns 1 at its end (or an error such as EIO from a terminal
 * that hung up), else 0 or a negative error. */
static int shell_stdin(struct shell *sh, char *buf, struct cli_err *err)
{
        ssize_t n = read(STDIN_FILENO, buf, SBX_CLI_SHELL_READ);
        int r;

        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (n <= 0)
                return 1;
        r = ws_client_send(sh->ws, true, buf, (size_t)n);
        return r == -ENOMEM ? cli_err_set(err, r, "out of memory") : 0;
}

/* Handle the signals the signalfd has. Returns 128 + signal for one that ends sbx, else 0. */
static int shell_signal(struct shell *sh, int sfd, struct cli_err *err)
{
        struct signalfd_siginfo si;
        int r, cols, rows;

        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo != SIGWINCH)
                        return 128 + (int)si.ssi_signo;
                if (terminal_size(&cols, &rows)) {
                        r = shell_send_json(sh, json_pack("{sssisi}", "type", "resize", "cols", cols, "rows", rows),
                                            err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static uint64_t now_ms(void)
{
        struct timespec ts;

        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * The session: stdin to the server, output to stdout, resizes, until the process exits (returns
 * its exit code), sbx gets INT/TERM/HUP (returns 128 + signal), the connection ends (returns -1:
 * the caller asks the server how the process ended) or fails (a negative error).
 */
static int shell_loop(struct shell *sh, int sfd, struct cli_err *err)
{
        _cleanup_free_ char *buf = malloc(SBX_CLI_SHELL_READ);
        bool stdin_done = false, closing = false;
        uint64_t close_deadline = 0, eof_next = 0;
        int r;

        if (!buf)
                return cli_err_set(err, -ENOMEM, "out of memory");
        for (;;) {
                struct pollfd pfd[3] = {
                        [1] = { .fd = sfd, .events = POLLIN },
                        [2] = { .fd = -1 },
                };
                int timeout;

                r = ws_client_prepare(sh->ws, &pfd[0]);
                if (r < 0)
                        break;
                timeout = r > 0 ? 0 : -1;
                if (sh->exited && !closing) {
                        /* everything came before the exit message: say goodbye, briefly */
                        (void)ws_client_close(sh->ws, 1000);
                        closing = true;
                        close_deadline = now_ms() + SBX_CLI_WS_CLOSE_WAIT_MS;
                        continue;
                }
                if (closing) {
                        uint64_t now = now_ms();
                        int left = now >= close_deadline ? 0 : (int)(close_deadline - now);

                        if (left == 0)
                                break;
                        if (timeout < 0 || left < timeout)
                                timeout = left;
                } else if (stdin_done) {
                        /*
                         * Our input ended: the process gets a terminal's end of file, ^D. Unlike a
                         * pipe's, it is read once, and lost if it comes while the terminal is
                         * between modes (a shell starting up, before its prompt), so it is sent
                         * again every SBX_CLI_SHELL_EOF_REPEAT_MS until the process ends.
                         */
                        uint64_t now = now_ms();

                        if (now >= eof_next) {
                                r = shell_send_json(sh, json_pack("{ss}", "type", "eof"), err);
                                if (r < 0)
                                        return r;
                                eof_next = now + SBX_CLI_SHELL_EOF_REPEAT_MS;
                                continue;
                        }
                        if (timeout < 0 || (int)(eof_next - now) < timeout)
                                timeout = (int)(eof_next - now);
                }
                if (!stdin_done && !closing && ws_client_queued(sh->ws) < SBX_CLI_WS_MAX_QUEUE)
                        pfd[2] = (struct pollfd){ .fd = STDIN_FILENO, .events = POLLIN };

                if (poll(pfd, ELEMENTSOF(pfd), timeout) < 0) {
                        if (errno == EINTR)
                                continue;
                        return cli_err_set(err, -errno, "poll: %s", strerror(errno));
                }
                if (pfd[1].revents) {
                        r = shell_signal(sh, sfd, err);
                        if (r != 0)
                                return r;
                }
                if (pfd[2].revents) {
                        r = shell_stdin(sh, buf, err);
                        if (r < 0)
                                return r;
                        stdin_done = r > 0;
                }
                r = ws_client_dispatch(sh->ws, &pfd[0], err);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
        }
        return sh->exited ? sh->exitcode : -1;
}

/* argv of the login shell: bash if the sandbox has it, else sh (POST .../exec of a test). */
static int shell_default_argv(struct client *client, const char *id, json_t **ret, struct cli_err *err)
{
        _cleanup_json_ json_t *body = json_pack("{sssi}", "cmd", "test -x /bin/bash", "timeout", 30);
        _cleanup_json_ json_t *reply = NULL;
        _cleanup_free_ char *eid = client_escape(id), *path = NULL;
        int r;

        if (!body || !eid || asprintf(&path, "/v1/sandboxes/%s/exec", eid) < 0) {
                path = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        r = client_request(client, "POST", path, body, &reply, err);
        if (r < 0)
                return r;
        if (exit_code_of(reply) == 0)
                *ret = json_pack("[ss]", "/bin/bash", "-l");
        else
                *ret = json_pack("[ss]", "/bin/sh", "-l");
        return *ret ? 0 : cli_err_set(err, -ENOMEM, "out of memory");
}

/* The exit code of an ended process, asked of the server when the connection ended early. */
static int shell_exit_from_server(struct client *client, const char *id, const char *pid, struct cli_err *err)
{
        _cleanup_free_ char *path = process_path(id, pid, "/wait?timeout=5");
        _cleanup_json_ json_t *reply = NULL;
        int r, code;

        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = client_request(client, "GET", path, NULL, &reply, err);
        if (r < 0)
                return r;
        code = exit_code_of(reply);
        if (code < 0)
                return cli_err_set(err, -CLI_E_CONNECT, "the connection to the server closed while the process runs");
        return code;
}

static void ws_client_freep(struct ws_client **ws)
{
        ws_client_free(*ws);
}

/* Attach to the started process pid and run the session. */
static int shell_attach(struct cli *cli, struct client *client, const char *id, const char *pid, struct cli_err *err)
{
        _cleanup_(shell_signals_release) struct shell_signals sig = { .fd = -EBADF };
        _cleanup_(shell_term_restore) struct shell_term term = { .fd = -EBADF };
        _cleanup_(ws_client_freep) struct ws_client *ws = NULL;
        _cleanup_free_ char *path = process_path(id, pid, "/attach");
        struct shell sh = {};
        struct sigaction ign = { .sa_handler = SIG_IGN };
        sigset_t mask;
        int r;

        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = ws_client_connect(cli->url, cli->key, path, shell_on_message, &sh, &ws, err);
        if (r < 0)
                return r;
        sh.ws = ws;

        /* signals become readable events before the terminal goes raw: none can catch us in it */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGWINCH);
        if (sigprocmask(SIG_BLOCK, &mask, &sig.old_mask) < 0)
                return cli_err_set(err, -errno, "cannot block signals: %s", strerror(errno));
        sig.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (sig.fd < 0) {
                r = -errno;
                (void)sigprocmask(SIG_SETMASK, &sig.old_mask, NULL);
                return cli_err_set(err, r, "cannot make a signalfd: %s", strerror(-r));
        }
        /* a closed stdout is an EPIPE error, which restores the terminal, not a silent death */
        (void)sigaction(SIGPIPE, &ign, &sig.old_pipe);

        if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &term.saved) == 0) {
                struct termios raw = term.saved;

                cfmakeraw(&raw);
                term.fd = STDIN_FILENO;
                if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) < 0)
                        return cli_err_set(err, -errno, "cannot put the terminal in raw mode: %s", strerror(errno));
                term.raw = true;
        }

        r = shell_loop(&sh, sig.fd, err);
        shell_term_restore(&term);
        if (r == -1) /* the connection ended without the exit message */
                r = shell_exit_from_server(client, id, pid, err);
        return r;
}

int cmd_shell(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "user", required_argument, NULL, OPT_USER },
                { "cwd", required_argument, NULL, OPT_CWD },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *reply = NULL;
        _cleanup_free_ char *path = NULL, *pid = NULL;
        const char *id = NULL;
        bool dashdash = false;
        struct client *client;
        json_t *args = NULL;
        int c, r, cols, rows;

        if (!body)
                return cli_err_set(err, -ENOMEM, "out of memory");
        while ((c = cli_getopt_id(argc, argv, ":h", options, &id, &dashdash, err)) != -1) {
                if (c < -1)
                        return c;
                switch (c) {
                case OPT_USER:
                        if (json_object_set_new(body, "user", json_string(optarg)) < 0)
                                return cli_err_set(err, -CLI_E_USAGE, "option '--user': value is not valid UTF-8");
                        break;
                case OPT_CWD:
                        if (json_object_set_new(body, "cwd", json_string(optarg)) < 0)
                                return cli_err_set(err, -CLI_E_USAGE, "option '--cwd': value is not valid UTF-8");
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
        if (!id)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx shell --help')");
        if (dashdash && optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing command after '--' (see 'sbx shell --help')");

        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        if (dashdash) {
                args = json_array();
                if (!args)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                for (int i = optind; i < argc; i++)
                        if (json_array_append_new(args, json_string(argv[i])) < 0) {
                                json_decref(args);
                                return cli_err_set(err, -CLI_E_USAGE, "argument '%s' is not valid UTF-8", argv[i]);
                        }
        } else {
                r = shell_default_argv(client, id, &args, err);
                if (r < 0)
                        return r;
        }
        /* no "stdin": true: a terminal's input is always open (sbxd refuses the pair, init-client.c) */
        (void)terminal_size(&cols, &rows);
        if (json_object_set_new(body, "argv", args) < 0 ||
            json_object_set_new(body, "pty", json_pack("{sisi}", "cols", cols, "rows", rows)) < 0 ||
            json_object_set_new(body, "keepAfterDisconnect", json_false()) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");

        path = process_path(id, NULL, NULL);
        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        r = client_request(client, "POST", path, body, &reply, err);
        if (r < 0)
                return r;
        if (!json_is_string(json_object_get(reply, "processId")))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no processId");
        pid = strdup(json_string_value(json_object_get(reply, "processId")));
        if (!pid)
                return cli_err_set(err, -ENOMEM, "out of memory");

        (void)fflush(stdout);
        r = shell_attach(cli, client, id, pid, err);
        if (r < 0 && r != -CLI_E_USAGE) {
                /* nobody will type into it now: do not leave it waiting for input forever */
                _cleanup_free_ char *kill_path = process_path(id, pid, "/signal");
                _cleanup_json_ json_t *kill = json_pack("{ss}", "signal", "KILL");

                if (kill_path && kill)
                        (void)client_request(client, "POST", kill_path, kill, NULL, NULL);
        }
        return r;
}
