/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared declarations of the sbx command-line client: its limits, exit statuses, error
 * convention, the options every verb accepts and the verb entry points. The CLI talks to sbxd
 * over HTTP only and must not include anything from src/ (rule of dependency, STYLE.md B1), so
 * the few helpers it needs from src/common are restated here in CLI form.
 */
#pragma once

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* NEEDSWORK: take this from project(VERSION) in CMakeLists.txt once the CLI gets a define. */
#define SBX_CLI_VERSION "0.1.0"
#define SBX_CLI_DEFAULT_URL "http://127.0.0.1:7070"

/*
 * Limits. The server-side ones are in src/common/limits.h; the values marked "API" must match
 * them by hand because the CLI cannot include that header.
 */
#define SBX_CLI_MAX_RESPONSE (64UL << 20)   /* one HTTP response body, bytes */
#define SBX_CLI_MAX_STREAM_LINE (8UL << 20) /* one NDJSON line of a streamed exec (a JSON-escaped chunk) */
#define SBX_CLI_MAX_STDIN (1UL << 20)       /* exec --stdin; API: SBX_MAX_JSON_BODY */
#define SBX_CLI_MAX_LIST 100000             /* sandboxes gathered by `sbx ls` across pages */
#define SBX_CLI_MAX_PAGES 10000             /* pages followed by `sbx ls` (guards against cursor loops) */
#define SBX_CLI_LIST_PAGE 1000              /* page size asked for while following cursors; API: SBX_MAX_LIST_LIMIT */
#define SBX_CLI_DEFAULT_EXEC_TIMEOUT_S 60   /* API: SBX_DEFAULT_EXEC_TIMEOUT_S, only used in messages */
#define SBX_CLI_CONNECT_TIMEOUT_S 10        /* TCP/unix connect; requests themselves have no timeout */
#define SBX_CLI_MAX_SPEC (1UL << 20)        /* build: spec file, and request with its files; API: SBX_MAX_JSON_BODY */
#define SBX_CLI_MAX_SSE_EVENT (1UL << 20)   /* one Server-Sent Event's data (a failed build's carries a log tail) */
#define SBX_CLI_MAX_EVENT_ID 128            /* one SSE "id:" value with its NUL (the build's are decimal counters) */
#define SBX_CLI_SSE_RECONNECTS 5            /* build: reconnects in a row without an event before giving up */
#define SBX_CLI_ERR_MSG_MAX 1024
#define SBX_CLI_MAX_FILE_PATH 4096         /* a path inside a sandbox, NUL excluded; API: SBX_MAX_FILE_PATH */
#define SBX_CLI_FS_LIST_PAGE 1000          /* ls SANDBOX:PATH page size; API: SBX_DEFAULT_FS_LIST_LIMIT */
#define SBX_CLI_MAX_SYMLINKS 40            /* sandbox symlinks cp follows to find what a path names (Linux's) */
#define SBX_CLI_PROGRESS_MIN (1UL << 20)   /* cp: a transfer shows progress on a terminal past this many bytes */
#define SBX_CLI_WS_MAX_HEAD (16UL << 10)   /* the server's answer to a WebSocket handshake, headers */
#define SBX_CLI_WS_MAX_MESSAGE (1UL << 20) /* one WebSocket message from the server */
#define SBX_CLI_WS_MAX_QUEUE (1UL << 20)   /* shell: stdin queued for the server before sbx stops reading it */
#define SBX_CLI_WS_HANDSHAKE_TIMEOUT_S 30  /* connect + handshake of a WebSocket */
#define SBX_CLI_WS_CLOSE_WAIT_MS 2000      /* shell: wait for the server's close after the exit message */
#define SBX_CLI_SHELL_READ (64UL << 10)    /* shell: bytes of stdin read (and sent as one frame) at a time */
#define SBX_CLI_SHELL_EOF_REPEAT_MS 1000   /* shell: ^D sent again this often once stdin ended */

/* Exit statuses of the sbx process (docs/man/sbx.1.md, EXIT STATUS). */
enum cli_exit {
        CLI_EXIT_OK = 0,
        CLI_EXIT_FAILURE = 1,   /* API error, connection failure, bad response */
        CLI_EXIT_USAGE = 2,     /* bad command line */
        CLI_EXIT_TIMEOUT = 124, /* exec: the command hit its timeout (like timeout(1)) */
        CLI_EXIT_OOM = 137,     /* exec: the command was killed for lack of memory */
};

/* Error codes above the errno range; functions return >= 0 or -errno / -CLI_E_*. */
enum cli_errc {
        CLI_E_BASE = 2000,
        CLI_E_USAGE = CLI_E_BASE, /* bad command line: exit status 2 */
        CLI_E_API,                /* the server answered with an error object or a non-2xx status */
        CLI_E_CONNECT,            /* could not reach the server */
        CLI_E_PROTOCOL,           /* the server's reply is not what the API promises */
};

/* Filled once, by the lowest layer that knows the context; main() prints "sbx: <msg>". */
struct cli_err {
        int code;                      /* negative: -errno or -CLI_E_* */
        char msg[SBX_CLI_ERR_MSG_MAX]; /* git style: lower-case, subject in quotes, no full stop */
        char api_code[64];             /* -CLI_E_API: the server's error code ("file_not_found"), else "" */
};

/* Fill err (if non-NULL and not yet set) and return code, which must be negative. (output.c) */
int cli_err_set(struct cli_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Scope-bound cleanup, as in src/common/cleanup.h. */
#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void cli_freep(void *p)
{
        free(*(void **)p);
}

static inline void cli_json_decrefp(json_t **p)
{
        json_decref(*p);
}

/* Closes fds >= 0 (initialise with -EBADF), keeping errno. */
static inline void cli_closep(const int *fd)
{
        if (*fd >= 0) {
                int saved = errno;

                (void)close(*fd);
                errno = saved;
        }
}

#define _cleanup_free_ _cleanup_(cli_freep)
#define _cleanup_json_ _cleanup_(cli_json_decrefp)
#define _cleanup_close_ _cleanup_(cli_closep)

#define TAKE_PTR(p)                        \
        ({                                 \
                __typeof__(p) *_pp = &(p); \
                __typeof__(p) _v = *_pp;   \
                *_pp = NULL;               \
                _v;                        \
        })

#define TAKE_FD(fd)                            \
        ({                                     \
                int *_fdp = &(fd), _f = *_fdp; \
                *_fdp = -EBADF;                \
                _f;                            \
        })

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

struct client;

/* State shared by every verb: the global options and the one HTTP client (keep-alive). */
struct cli {
        const char *url;       /* --url, else $SBX_URL, else SBX_CLI_DEFAULT_URL */
        const char *key;       /* --key, else $SBX_KEY; NULL = send no Authorization header */
        bool json;             /* --json: print the raw JSON response instead of the human form */
        struct client *client; /* made by cli_client() on first use, freed by main() */
};

/* getopt_long values of the options every verb accepts, besides 'h' (-h/--help). */
enum {
        OPT_URL = 0x100,
        OPT_KEY,
        OPT_JSON,
        OPT_VERSION,
        OPT_VERB_BASE = 0x200, /* verbs number their long-only options from here */
};

/* clang-format off */
#define CLI_COMMON_OPTIONS                                     \
        { "url", required_argument, NULL, OPT_URL },           \
        { "key", required_argument, NULL, OPT_KEY },           \
        { "json", no_argument, NULL, OPT_JSON },               \
        { "help", no_argument, NULL, 'h' }
/* clang-format on */

/*
 * Handle a getopt_long() result that is not specific to `verb`: the common options, 'h', and the
 * '?' / ':' errors (optstrings start with ':' and opterr is 0, so the messages are ours).
 * Returns 0 if the option was consumed, 1 if help was printed (the verb then exits 0), or
 * -CLI_E_USAGE with err filled. (main.c)
 */
int cli_common_option(struct cli *cli, const char *verb, int c, char *const *argv, struct cli_err *err);

/* Print the help text of `verb` (NULL: the global help) to f. (main.c) */
void cli_usage(const char *verb, FILE *f);

/* The client for cli->url and cli->key, created on first use; borrowed. Returns 0 or negative. (main.c) */
int cli_client(struct cli *cli, struct client **ret, struct cli_err *err);

/*
 * Option value parsers; opt names the option in messages. All fail with -CLI_E_USAGE. (main.c)
 * cli_parse_kv: "KEY=VALUE" (KEY non-empty) stored into obj, a later KEY replacing an earlier one.
 * cli_parse_int: a decimal integer 0..LLONG_MAX (json_int_t) (ranges are the server's to check).
 * cli_parse_number: a finite decimal number.
 */
int cli_parse_kv(const char *opt, const char *s, json_t *obj, struct cli_err *err);
int cli_parse_int(const char *opt, const char *s, json_int_t *ret, struct cli_err *err);
int cli_parse_number(const char *opt, const char *s, double *ret, struct cli_err *err);

/*
 * Verbs. argv[0] is the verb's name. Each returns the exit status (>= 0) on success, or a
 * negative code with err filled, which main() prints; -CLI_E_USAGE exits 2, others exit 1.
 */
int cmd_create(struct cli *cli, int argc, char **argv, struct cli_err *err); /* cmd-sandbox.c */
/* Parse a verb's arguments when it has only the common options (--json, --url, --key, --help).
 * Returns 0 to go on (operands start at optind), 1 if help was printed, or a negative error. */
int cli_parse_plain(struct cli *cli, int argc, char **argv, struct cli_err *err);
/*
 * getopt_long for "VERB [options] ID [options] [-- CMD [ARGS...]]" ('+' is prepended to optstring):
 * the next option, or -1 at the end. The first operand goes to *id, a second one is a usage error
 * (-CLI_E_USAGE, which is below -1); '--' ends the options and sets *dashdash, with optind at the
 * command. (main.c)
 */
int cli_getopt_id(int argc, char **argv, const char *optstring, const struct option *options, const char **id,
                  bool *dashdash, struct cli_err *err);
/* GET path and print the object: indented JSON, or one line with --json. Returns 0 or an error. */
int cli_show(struct cli *cli, const char *path, struct cli_err *err);
int cmd_ls(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_inspect(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_template(struct cli *cli, int argc, char **argv, struct cli_err *err); /* cmd-template.c */
int cmd_image(struct cli *cli, int argc, char **argv, struct cli_err *err);    /* cmd-template.c */
int cmd_layer(struct cli *cli, int argc, char **argv, struct cli_err *err);    /* cmd-template.c */
int cmd_rm(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_stop(struct cli *cli, int argc, char **argv, struct cli_err *err);
/* cmd-lifecycle.c */
int cmd_pause(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_resume(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_hibernate(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_wake(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_timeout(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_events(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_snapshot(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_fork(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_checkpoint(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_start(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_exec(struct cli *cli, int argc, char **argv, struct cli_err *err); /* cmd-exec.c */
int cmd_cp(struct cli *cli, int argc, char **argv, struct cli_err *err);   /* cmd-files.c */
int cmd_cat(struct cli *cli, int argc, char **argv, struct cli_err *err);  /* cmd-files.c */
int cmd_ps(struct cli *cli, int argc, char **argv, struct cli_err *err);   /* cmd-process.c */
int cmd_logs(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_kill(struct cli *cli, int argc, char **argv, struct cli_err *err);
int cmd_shell(struct cli *cli, int argc, char **argv, struct cli_err *err);
/*
 * `sbx exec -d`: POST body (a processes request: cmd or argv, cwd, env, ...) to
 * /v1/sandboxes/ID/processes and print the new processId (with --json, the Process). Returns 0
 * or an error. (cmd-process.c)
 */
int cli_process_start(struct cli *cli, const char *id, const json_t *body, struct cli_err *err);
/* `sbx ls`: with a SANDBOX:PATH operand it lists files (cmd-files.c), else sandboxes (cmd_ls). */
int cmd_ls_any(struct cli *cli, int argc, char **argv, struct cli_err *err);
