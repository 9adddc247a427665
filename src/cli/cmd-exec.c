// SPDX-License-Identifier: Apache-2.0
/*
 * `sbx exec`: run a command in a sandbox. The reply is streamed (NDJSON): each stdout/stderr
 * chunk is written to our own stdout/stderr as it arrives, and the "exit" line gives the exit
 * status sbx itself exits with. With --json the reply is the buffered result object instead.
 * With -d (--detach) the same request starts a background process instead (cmd-process.c sends
 * it). This file builds the request and interprets the result; HTTP and line splitting are in
 * client.c.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "client.h"
#include "output.h"

enum {
        OPT_CWD = OPT_VERB_BASE,
        OPT_ENV,
        OPT_TIMEOUT,
        OPT_STDIN,
        OPT_TAG,
        OPT_USER,
};

/* What the "exit" line (or the buffered result) said. */
struct exec_result {
        bool exited; /* an exit line arrived */
        json_int_t code;
        bool timed_out;
        bool oom_killed;
        bool truncated;
};

/* Read all of stdin into a JSON string; at most SBX_CLI_MAX_STDIN bytes of UTF-8. */
static int read_stdin(json_t **ret, struct cli_err *err)
{
        _cleanup_free_ char *data = malloc(SBX_CLI_MAX_STDIN + 1);
        size_t len = 0;
        json_t *s;

        if (!data)
                return cli_err_set(err, -ENOMEM, "out of memory");
        for (;;) {
                ssize_t k = read(STDIN_FILENO, data + len, SBX_CLI_MAX_STDIN + 1 - len);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return cli_err_set(err, -errno, "cannot read standard input: %s", strerror(errno));
                }
                if (k == 0)
                        break;
                len += (size_t)k;
                if (len > SBX_CLI_MAX_STDIN)
                        return cli_err_set(err, -EFBIG, "standard input is larger than %lu MiB, the limit of --stdin",
                                           SBX_CLI_MAX_STDIN >> 20);
        }
        s = json_stringn(data, len);
        if (!s)
                return cli_err_set(err, -EINVAL, "standard input is not UTF-8 text, which --stdin requires");
        *ret = s;
        return 0;
}

/* Take the exit fields from an "exit" line or a buffered result object. */
static int result_read(const json_t *v, struct exec_result *res, struct cli_err *err)
{
        const json_t *code = json_object_get(v, "exitCode");

        if (!json_is_integer(code))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's exec result has no exit code");
        res->exited = true;
        res->code = json_integer_value(code);
        res->timed_out = json_is_true(json_object_get(v, "timedOut"));
        res->oom_killed = json_is_true(json_object_get(v, "oomKilled"));
        res->truncated = json_is_true(json_object_get(v, "truncated"));
        return 0;
}

static int write_data(int fd, const json_t *data, struct cli_err *err)
{
        int r;

        if (!json_is_string(data))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server sent output that is not a string");
        r = output_write_all(fd, json_string_value(data), json_string_length(data));
        if (r < 0)
                return cli_err_set(err, r, "cannot write the command's %s: %s",
                                   fd == STDOUT_FILENO ? "stdout" : "stderr", strerror(-r));
        return 0;
}

static int on_line(const json_t *line, void *userdata, struct cli_err *err)
{
        struct exec_result *res = userdata;
        const char *type = json_string_value(json_object_get(line, "type"));

        if (!type || res->exited) /* nothing is expected after "exit" */
                return 0;
        if (strcmp(type, "stdout") == 0)
                return write_data(STDOUT_FILENO, json_object_get(line, "data"), err);
        if (strcmp(type, "stderr") == 0)
                return write_data(STDERR_FILENO, json_object_get(line, "data"), err);
        if (strcmp(type, "exit") == 0)
                return result_read(line, res, err);
        return 0; /* unknown types (heartbeats, later additions) are skipped */
}

/* The exit status sbx itself ends with. */
static int exit_status(const struct exec_result *res)
{
        if (res->timed_out)
                return CLI_EXIT_TIMEOUT;
        if (res->oom_killed)
                return CLI_EXIT_OOM;
        if (res->code < 0 || res->code > 255)
                return 255;
        return (int)res->code;
}

static int build_body(int argc, char **argv, const char *cmd, bool dashdash, json_t *body, struct cli_err *err)
{
        json_t *args;

        if (cmd) {
                if (dashdash)
                        return cli_err_set(err, -CLI_E_USAGE,
                                           "give the command either with -c or after '--', not both");
                if (json_object_set_new(body, "cmd", json_string(cmd)) < 0)
                        return cli_err_set(err, -CLI_E_USAGE, "option '-c': value is not valid UTF-8");
                return 0;
        }
        if (!dashdash || optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE,
                                   "missing command: use 'sbx exec ID -- CMD [ARGS...]' or 'sbx exec ID -c STRING'");
        args = json_array();
        if (!args || json_object_set_new(body, "argv", args) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        for (int i = optind; i < argc; i++)
                if (json_array_append_new(args, json_string(argv[i])) < 0)
                        return cli_err_set(err, -CLI_E_USAGE, "argument '%s' is not valid UTF-8", argv[i]);
        return 0;
}

int cmd_exec(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "cmd", required_argument, NULL, 'c' },
                { "cwd", required_argument, NULL, OPT_CWD },
                { "env", required_argument, NULL, OPT_ENV },
                { "timeout", required_argument, NULL, OPT_TIMEOUT },
                { "stdin", no_argument, NULL, OPT_STDIN },
                { "detach", no_argument, NULL, 'd' },
                { "tag", required_argument, NULL, OPT_TAG },
                { "user", required_argument, NULL, OPT_USER },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *env = json_object(), *reply = NULL;
        _cleanup_free_ char *escaped = NULL, *path = NULL;
        struct exec_result res = {};
        const char *id = NULL, *cmd = NULL, *tag = NULL, *user = NULL;
        bool dashdash = false, want_stdin = false, detach = false;
        json_int_t timeout = -1;
        struct client *client;
        int c, r;

        if (!body || !env)
                return cli_err_set(err, -ENOMEM, "out of memory");

        while ((c = cli_getopt_id(argc, argv, ":hc:d", options, &id, &dashdash, err)) != -1) {
                if (c < -1)
                        return c;
                switch (c) {
                case 'c':
                        cmd = optarg;
                        break;
                case OPT_CWD:
                        if (json_object_set_new(body, "cwd", json_string(optarg)) < 0)
                                return cli_err_set(err, -CLI_E_USAGE, "option '--cwd': value is not valid UTF-8");
                        break;
                case OPT_ENV:
                        r = cli_parse_kv("env", optarg, env, err);
                        if (r < 0)
                                return r;
                        break;
                case OPT_TIMEOUT:
                        r = cli_parse_int("timeout", optarg, &timeout, err);
                        if (r < 0)
                                return r;
                        break;
                case OPT_STDIN:
                        want_stdin = true;
                        break;
                case 'd':
                        detach = true;
                        break;
                case OPT_TAG:
                        tag = optarg;
                        break;
                case OPT_USER:
                        user = optarg;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
        if (!id)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx exec --help')");
        r = build_body(argc, argv, cmd, dashdash, body, err);
        if (r < 0)
                return r;
        if (json_object_size(env) > 0 && json_object_set(body, "env", env) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (timeout >= 0 && json_object_set_new(body, "timeout", json_integer(timeout)) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (want_stdin) {
                json_t *in = NULL;

                r = read_stdin(&in, err);
                if (r < 0)
                        return r;
                if (json_object_set_new(body, "stdin", in) < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        }

        if (!detach && (tag || user))
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s' needs -d (see 'sbx exec --help')",
                                   tag ? "tag" : "user");
        if (detach) {
                if (tag && json_object_set_new(body, "tag", json_string(tag)) < 0)
                        return cli_err_set(err, -CLI_E_USAGE, "option '--tag': value is not valid UTF-8");
                if (user && json_object_set_new(body, "user", json_string(user)) < 0)
                        return cli_err_set(err, -CLI_E_USAGE, "option '--user': value is not valid UTF-8");
                return cli_process_start(cli, id, body, err);
        }

        escaped = client_escape(id);
        if (!escaped || asprintf(&path, "/v1/sandboxes/%s/exec", escaped) < 0) {
                path = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;

        if (cli->json) {
                r = client_request(client, "POST", path, body, &reply, err);
                if (r < 0)
                        return r;
                if (output_json(reply) < 0)
                        return cli_err_set(err, -EIO, "cannot write to standard output");
                r = result_read(reply, &res, err);
                return r < 0 ? r : exit_status(&res);
        }

        /* Output written straight to fd 1 must not overtake anything still in stdout's buffer. */
        (void)fflush(stdout);
        r = client_stream(client, "POST", path, body, on_line, &res, &reply, err);
        if (r < 0)
                return r;
        if (reply) {
                /* The server answered with the buffered result instead of a stream. */
                r = write_data(STDOUT_FILENO, json_object_get(reply, "stdout"), err);
                if (r >= 0)
                        r = write_data(STDERR_FILENO, json_object_get(reply, "stderr"), err);
                if (r >= 0)
                        r = result_read(reply, &res, err);
                if (r < 0)
                        return r;
        }
        if (!res.exited)
                return cli_err_set(err, -CLI_E_PROTOCOL, "the output stream ended before the command exited");

        if (res.truncated)
                output_errorf("some output was dropped (more than 1 MiB per stream)");
        if (res.timed_out) {
                output_errorf("command timed out after %llds",
                              (long long)(timeout >= 0 ? timeout : SBX_CLI_DEFAULT_EXEC_TIMEOUT_S));
                return CLI_EXIT_TIMEOUT;
        }
        if (res.oom_killed) {
                output_errorf("command was killed: the sandbox ran out of memory");
                return CLI_EXIT_OOM;
        }
        return exit_status(&res);
}
