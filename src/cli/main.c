// SPDX-License-Identifier: Apache-2.0
/*
 * sbx, the command-line client of sbxd: global options, dispatch to one verb, help texts, the
 * option-value parsers every verb shares, and turning a verb's error into one "sbx: ..." line
 * and an exit status. Verbs live in cmd-*.c; HTTP lives in client.c. Nothing here talks to the
 * network directly, and --help never needs a server.
 */
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "output.h"

#define GLOBAL_OPTIONS_HELP                                                                           \
        "Global options (accepted before or after the command):\n"                                    \
        "      --url URL    API address: http://HOST:PORT, https://HOST:PORT or unix:/path/to.sock\n" \
        "                   (default: $SBX_URL, else " SBX_CLI_DEFAULT_URL ")\n"                      \
        "      --key KEY    API key, sent as a Bearer token (default: $SBX_KEY)\n"                    \
        "      --json       print the raw JSON response instead of the human format\n"                \
        "  -h, --help       show help\n"

struct verb {
        const char *name;
        int (*run)(struct cli *cli, int argc, char **argv, struct cli_err *err);
        const char *summary;
        const char *help;
};

static const struct verb verbs[] = {
        { "create", cmd_create, "create a sandbox and print its id",
          "usage: sbx create [--template T] [--name N] [--env K=V]... [--metadata K=V]...\n"
          "                  [--cpu X] [--memory MIB] [--pids N] [--lifetime S] [--idle S]\n"
          "                  [--workdir DIR] [--snapshot REF]\n"
          "\n"
          "Create a sandbox, wait until it can run commands, and print its id\n"
          "(with --json, the whole sandbox object).\n"
          "\n"
          "      --template T   template to start from (server default: base)\n"
          "      --name N       a unique name: up to 128 of [A-Za-z0-9._-]\n"
          "      --env K=V      environment variable for every command (repeatable; over the\n"
          "                     template's own)\n"
          "      --workdir DIR  default directory of commands (default: the template's, else /root)\n"
          "      --metadata K=V label, usable as a filter in 'sbx ls' (repeatable)\n"
          "      --cpu X        CPU limit in cores, e.g. 0.5\n"
          "      --memory MIB   memory limit in MiB\n"
          "      --pids N       maximum number of processes\n"
          "      --lifetime S   delete the sandbox S seconds after creation\n"
          "      --idle S       stop the sandbox after S seconds without activity\n"
          "      --snapshot REF boot from a snapshot or checkpoint (id or tag) instead of a template\n" },
        { "ls", cmd_ls_any, "list sandboxes, or the files in a sandbox",
          "usage: sbx ls [--state S] [--metadata K=V]... [--limit N]\n"
          "       sbx ls [-l] [-R] SANDBOX:PATH\n"
          "\n"
          "Without an argument: list sandboxes as a table (ID NAME STATE TEMPLATE CREATED).\n"
          "Without --limit, every page is fetched; with --json, one object\n"
          "{\"sandboxes\":[...],\"nextCursor\":...}.\n"
          "\n"
          "      --state S      only sandboxes in state S (running, stopped, ...)\n"
          "      --metadata K=V only sandboxes whose metadata K is V (repeatable: all must match)\n"
          "      --limit N      at most N sandboxes, one request (1..1000)\n"
          "\n"
          "With SANDBOX:PATH (SANDBOX: an id or name): list the directory PATH in that sandbox,\n"
          "one name a line, directories with a trailing '/' (a file: just that file). With\n"
          "--json, the array of entries {name,path,type,size,mode,mtime,uid,gid,symlinkTarget}.\n"
          "\n"
          "  -l, --long         mode, size, modification time, name (-> target for symlinks)\n"
          "  -R, --recursive    the whole tree, names relative to PATH\n" },
        { "inspect", cmd_inspect, "show a sandbox as JSON",
          "usage: sbx inspect ID\n"
          "\n"
          "Print the sandbox object as indented JSON (with --json, on one line).\n" },
        { "exec", cmd_exec, "run a command in a sandbox, streaming its output",
          "usage: sbx exec [options] ID -- CMD [ARGS...]\n"
          "       sbx exec [options] ID -c 'SHELL COMMAND'\n"
          "       sbx exec -d [--tag T] [--user U] [options] ID -- CMD [ARGS...]\n"
          "\n"
          "Run a command in a running sandbox. Its stdout and stderr are written to sbx's own\n"
          "stdout and stderr as they arrive, and sbx exits with the command's exit status\n"
          "(124 if it timed out, 137 if it was killed for lack of memory). With --json the\n"
          "output is not streamed: the whole result object is printed when the command ends.\n"
          "\n"
          "With -d the command is started as a background process and sbx prints its process\n"
          "id (with --json, the process object) and exits 0; see 'sbx ps', 'sbx logs' and\n"
          "'sbx kill'.\n"
          "\n"
          "  -c, --cmd STRING   run STRING with /bin/sh -c instead of an argv after '--'\n"
          "      --cwd DIR      working directory, absolute (server default: /root)\n"
          "      --env K=V      environment variable (repeatable)\n"
          "      --timeout S    kill the command after S seconds (server default: 60; with -d,\n"
          "                     none)\n"
          "      --stdin        send sbx's standard input (UTF-8 text, up to 1 MiB) to the command\n"
          "  -d, --detach       start a background process, print its id\n"
          "      --tag T        -d: a label of yours, shown in the process object\n"
          "      --user U       -d: run as user U (a name or uid of the sandbox; default root)\n" },
        { "ps", cmd_ps, "list the processes of a sandbox",
          "usage: sbx ps [-a|--all] ID\n"
          "\n"
          "List the running processes of a sandbox as a table (PROCESS ID, PID, STATUS, EXIT,\n"
          "STARTED, COMMAND; the command is cut to the terminal's width). With --json, one\n"
          "object {\"processes\":[...]} with the same processes.\n"
          "\n"
          "  -a, --all          also the processes that ended (the server keeps the last ones)\n" },
        { "logs", cmd_logs, "print the output of a process",
          "usage: sbx logs [-f] [--stderr] [--from N] ID PROCESS\n"
          "\n"
          "Write the stdout (or stderr) a process has produced so far to standard output, byte\n"
          "for byte. PROCESS is a process id (prc_...) or its pid in the sandbox. A terminal\n"
          "process has one stream, read as stdout.\n"
          "\n"
          "  -f, --follow       go on writing output as it comes, until the process ends\n"
          "      --stderr       the process's stderr instead of its stdout\n"
          "      --from N       start at byte offset N of the stream (default 0)\n" },
        { "kill", cmd_kill, "send a signal to a process",
          "usage: sbx kill [-s SIGNAL] ID PROCESS\n"
          "\n"
          "Send a signal to a process (its process group). The default, KILL, ends the\n"
          "process and everything it started. Prints nothing (with --json, the process).\n"
          "\n"
          "  -s, --signal SIG   a name (TERM, SIGTERM, int, ...) or a number 1..64\n" },
        { "shell", cmd_shell, "open an interactive terminal in a sandbox",
          "usage: sbx shell [--user U] [--cwd DIR] ID [-- CMD [ARGS...]]\n"
          "\n"
          "Run CMD (default: a login shell, bash if the sandbox has it, else sh) on a terminal\n"
          "in the sandbox, sized like ours, and connect our terminal to it until it exits; sbx\n"
          "then exits with its exit status. Our terminal is in raw mode meanwhile: keys such\n"
          "as ^C and ^D go to the sandbox. When standard input is not a terminal, it is sent\n"
          "as typed input and its end as ^D (once a second until the process exits); the\n"
          "size is then 80x24. The process is killed when sbx goes away.\n"
          "\n"
          "      --user U       run as user U (a name or uid of the sandbox; default root)\n"
          "      --cwd DIR      working directory, absolute\n" },
        { "cp", cmd_cp, "copy files and directories between here and a sandbox",
          "usage: sbx cp [--progress | -q] SRC DST\n"
          "\n"
          "Copy a file or a directory tree into or out of a sandbox. Exactly one of SRC and DST\n"
          "is SANDBOX:PATH (SANDBOX: an id or name; PATH relative means from /); the other is a\n"
          "local path ('./a:b' for one with a colon), or '-' for standard input or output (a\n"
          "single file's content). Like docker cp: a copy into an existing directory (or a\n"
          "DST ending in '/') goes inside it under SRC's name; a directory copied to a path\n"
          "that does not exist becomes that path; 'DIR/.' copies DIR's content. Modes are kept\n"
          "(times too, inside directories); owners are not, nor setuid bits on the way out. A\n"
          "failed download of a file leaves nothing behind.\n"
          "\n"
          "      --progress     show progress on standard error even when it is no terminal\n"
          "                     (default: on a terminal, for transfers over 1 MiB)\n"
          "  -q, --quiet        no progress, no warnings about skipped files\n"
          "      --json         print the server's reply (into a sandbox) or\n"
          "                     {path,bytes,...} (out of it)\n" },
        { "cat", cmd_cat, "print files from a sandbox",
          "usage: sbx cat SANDBOX:PATH...\n"
          "\n"
          "Write the content of each file to standard output, as it arrives. An error about\n"
          "one file is printed and sbx goes on with the next; it then exits 1.\n" },
        { "stop", cmd_stop, "stop a sandbox (its filesystem is kept)",
          "usage: sbx stop ID...\n"
          "\n"
          "Stop sandboxes: their processes end, their filesystems are kept. Prints each id\n"
          "(with --json, each sandbox object).\n" },
        { "start", cmd_start, "start a stopped sandbox",
          "usage: sbx start ID...\n"
          "\n"
          "Start stopped sandboxes again. Prints each id (with --json, each sandbox object).\n" },
        { "pause", cmd_pause, "freeze sandboxes (their streams stay open)",
          "usage: sbx pause ID...\n"
          "\n"
          "Freeze every process of each sandbox: no CPU, memory kept, attached streams stay\n"
          "open. Prints each id and its state. Requests that need it running answer 409\n"
          "sandbox_paused until 'sbx resume' (or a request with autoResume).\n" },
        { "resume", cmd_resume, "thaw paused sandboxes",
          "usage: sbx resume ID...\n" },
        { "hibernate", cmd_hibernate, "checkpoint sandboxes to disk and free their memory",
          "usage: sbx hibernate ID...\n"
          "\n"
          "sbx does not checkpoint processes yet: only the files are kept (the processes end); sbx\n"
          "says so: \"memory not kept\". 'sbx wake' brings them back.\n" },
        { "wake", cmd_wake, "bring hibernated sandboxes back",
          "usage: sbx wake ID...\n" },
        { "timeout", cmd_timeout, "change a sandbox's timers",
          "usage: sbx timeout ID [SECONDS] [--idle S|none] [--paused S|none] [--execution S|none]\n"
          "\n"
          "SECONDS: delete the sandbox after that many more seconds of running time. The\n"
          "options change the idle, paused and default command timeouts ('none' removes one).\n"
          "Prints when it expires and when a timer would delete it.\n" },
        { "events", cmd_events, "list a sandbox's events, or follow every event",
          "usage: sbx events ID [--limit N] [--desc]\n"
          "       sbx events [ID] -f\n"
          "\n"
          "One line per event: time, type, sandbox, reason or data. -f/--follow prints events\n"
          "as they happen (of ID, or all), reconnecting where it left off.\n" },
        { "snapshot", cmd_snapshot, "snapshots: create, list, tag, lineage, patches",
          "usage: sbx snapshot create ID [--name N] [--tag T]... [--description D]\n"
          "       sbx snapshot ls [--sandbox ID] [--tag T] [--kind snapshot|checkpoint|fork]\n"
          "       sbx snapshot inspect|lineage REF\n"
          "       sbx snapshot rm REF...\n"
          "       sbx snapshot tag|untag REF TAG\n"
          "       sbx snapshot patch add REF (--file PATH | --script TEXT) [--name N]\n"
          "       sbx snapshot patch ls REF\n"
          "       sbx snapshot patch rm REF PATCH_ID\n"
          "\n"
          "REF is a snapshot id or tag. 'sbx create --snapshot REF' boots from one.\n" },
        { "fork", cmd_fork, "copy a running sandbox into new ones",
          "usage: sbx fork ID [-n COUNT] [--name N]\n"
          "\n"
          "COUNT (default 1) sandboxes with ID's files and settings; ID keeps running. Prints\n"
          "the new ids.\n" },
        { "checkpoint", cmd_checkpoint, "named checkpoints of a sandbox, restored in place",
          "usage: sbx checkpoint create ID NAME [--description D]\n"
          "       sbx checkpoint ls ID\n"
          "       sbx checkpoint rm ID NAME\n"
          "       sbx checkpoint restore ID NAME\n" },
        { "rm", cmd_rm, "delete sandboxes",
          "usage: sbx rm ID...\n"
          "\n"
          "Delete sandboxes, running or not, and print each id deleted (with --json, nothing:\n"
          "the API answers 204 No Content). Goes on after an error; exits 1 if any failed.\n" },
        { "template", cmd_template, "list, build, remove and export templates",
          "usage: sbx template ls\n"
          "       sbx template inspect NAME\n"
          "       sbx template build SPEC.json [--name NAME] [--no-wait] [--verbose]\n"
          "       sbx template rm NAME...\n"
          "       sbx template export NAME [-o FILE]\n"
          "\n"
          "ls       the templates as a table (NAME STATE SIZE LAYERS SOURCE DESCRIPTION)\n"
          "inspect  one template as indented JSON; aliases such as python:3 or node:18 work\n"
          "build    build a template from a JSON spec ('-': standard input) and follow the\n"
          "         build: a progress bar on a terminal, one line per stage otherwise; exits 1\n"
          "         if a step fails, showing the step, its exit code and the end of its log.\n"
          "         A files[] entry may give \"src\": \"PATH\" (relative to the spec's directory)\n"
          "         instead of its content: sbx sends that local file (1 MiB in all)\n"
          "rm       remove templates; prints the layers and space that freed\n"
          "export   an OCI image tarball of the template, to FILE or standard output\n"
          "\n"
          "      --name NAME      build: the template's name (replaces the spec's \"name\")\n"
          "      --no-wait        build: print the server's reply and do not follow the build\n"
          "  -v, --verbose        build: print the build's log on standard error as it runs\n"
          "  -o, --output FILE    export: write to FILE (via FILE.tmp, renamed when complete)\n" },
        { "image", cmd_image, "import an OCI or docker-save tarball as a template",
          "usage: sbx image import FILE.tar [--name NAME]\n"
          "\n"
          "Import an OCI image layout or 'docker save' tarball ('-': standard input) as a\n"
          "template and print its name, layer count and size. The file is streamed to the\n"
          "server, never loaded into memory.\n"
          "\n"
          "      --name NAME      template name (default: the image's reference, e.g. alpine:3.19)\n" },
        { "layer", cmd_layer, "list the layer store or collect unused layers",
          "usage: sbx layer ls\n"
          "       sbx layer gc\n"
          "\n"
          "'ls' lists the layers (DIGEST SIZE TEMPLATES REFS, the digest shortened to 12 hex\n"
          "digits) and a TOTAL line; 'gc' removes every layer that no template uses and no\n"
          "sandbox or build holds, and prints how many and the space freed.\n" },
};

static const struct verb *verb_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(verbs[i].name, name) == 0)
                        return &verbs[i];
        return NULL;
}

void cli_usage(const char *verb, FILE *f)
{
        const struct verb *v = verb ? verb_find(verb) : NULL;

        if (v) {
                fputs(v->help, f);
                fputs("\n" GLOBAL_OPTIONS_HELP, f);
                return;
        }
        fputs("usage: sbx [--url URL] [--key KEY] [--json] COMMAND [ARGS...]\n"
              "\n"
              "Create and use sandboxes, and manage the templates they start from, on an sbxd\n"
              "server.\n"
              "\n"
              "Commands:\n",
              f);
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-9s%s\n", verbs[i].name, verbs[i].summary);
        fputs("  help     show the help of a command\n"
              "\n" GLOBAL_OPTIONS_HELP "      --version    show the version\n"
              "\n"
              "Environment: SBX_URL, SBX_KEY. Exit status: 0 ok, 1 error (template build: the\n"
              "build failed), 2 usage error; exec and shell exit with the command's status.\n"
              "Run 'sbx COMMAND --help' for more.\n",
              f);
}

/* The option getopt just rejected, as the user typed it, for messages. */
static const char *bad_option(char *const *argv, char *buf, size_t size)
{
        const char *arg = optind > 0 ? argv[optind - 1] : NULL;

        if (arg && strncmp(arg, "--", 2) == 0) {
                snprintf(buf, size, "%.*s", (int)strcspn(arg, "="), arg);
                return buf;
        }
        if (optopt > 0 && optopt < 0x80) {
                snprintf(buf, size, "-%c", optopt);
                return buf;
        }
        return arg ? arg : "?";
}

int cli_show(struct cli *cli, const char *path, struct cli_err *err)
{
        _cleanup_json_ json_t *reply = NULL;
        struct client *client;
        int r;

        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        r = client_request(client, "GET", path, NULL, &reply, err);
        if (r < 0)
                return r;
        if (!reply)
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply is empty");
        r = cli->json ? output_json(reply) : output_json_pretty(reply);
        return r < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
}

int cli_getopt_id(int argc, char **argv, const char *optstring, const struct option *options, const char **id,
                  bool *dashdash, struct cli_err *err)
{
        char opts[32];

        snprintf(opts, sizeof opts, "+%s", optstring);
        /* '+' stops at the first non-option, so options may come before and after ID and
         * everything after '--' is the command's own argv, options included */
        for (;;) {
                int prev = optind > 0 ? optind : 1;
                int c = getopt_long(argc, argv, opts, options, NULL);

                if (c != -1)
                        return c;
                if (optind == prev + 1 && strcmp(argv[prev], "--") == 0) {
                        *dashdash = true;
                        return -1;
                }
                if (optind >= argc)
                        return -1;
                if (*id)
                        return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (put the command after '--')",
                                           argv[optind]);
                *id = argv[optind++];
        }
}

int cli_parse_plain(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = { CLI_COMMON_OPTIONS, {} };
        int c, r;

        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                r = cli_common_option(cli, argv[0], c, argv, err);
                if (r != 0)
                        return r;
        }
        return 0;
}

int cli_common_option(struct cli *cli, const char *verb, int c, char *const *argv, struct cli_err *err)
{
        const char *arg = optind > 0 ? argv[optind - 1] : NULL;
        char name[64], see[64];

        if (verb)
                snprintf(see, sizeof see, "see 'sbx %s --help'", verb);
        else
                snprintf(see, sizeof see, "see 'sbx --help'");

        switch (c) {
        case OPT_URL:
                cli->url = optarg;
                return 0;
        case OPT_KEY:
                cli->key = optarg;
                return 0;
        case OPT_JSON:
                cli->json = true;
                return 0;
        case 'h':
                cli_usage(verb, stdout);
                return 1;
        case ':':
                return cli_err_set(err, -CLI_E_USAGE, "option '%s' needs a value (%s)",
                                   bad_option(argv, name, sizeof name), see);
        case '?':
                /* glibc sets optopt to the option's value when a long option got "=value" it
                 * does not take, and to 0 when the option is unknown. */
                if (optopt != 0 && arg && strncmp(arg, "--", 2) == 0 && strchr(arg, '='))
                        return cli_err_set(err, -CLI_E_USAGE, "option '%s' takes no value (%s)",
                                           bad_option(argv, name, sizeof name), see);
                return cli_err_set(err, -CLI_E_USAGE, "unknown option '%s' (%s)", bad_option(argv, name, sizeof name),
                                   see);
        default:
                return cli_err_set(err, -CLI_E_USAGE, "unhandled option %d (%s)", c, see);
        }
}

int cli_client(struct cli *cli, struct client **ret, struct cli_err *err)
{
        int r;

        if (!cli->client) {
                r = client_new(cli->url, cli->key, &cli->client, err);
                if (r < 0)
                        return r;
        }
        *ret = cli->client;
        return 0;
}

int cli_parse_kv(const char *opt, const char *s, json_t *obj, struct cli_err *err)
{
        const char *eq = strchr(s, '=');
        _cleanup_free_ char *key = NULL;
        json_t *v;

        if (!obj)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (!eq || eq == s)
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s' expects KEY=VALUE, got '%s'", opt, s);
        key = strndup(s, (size_t)(eq - s));
        if (!key)
                return cli_err_set(err, -ENOMEM, "out of memory");
        v = json_string(eq + 1);
        if (!v)
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s': '%s' is not valid UTF-8", opt, s);
        if (json_object_set_new(obj, key, v) < 0)
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s': key '%s' is not valid UTF-8", opt, key);
        return 0;
}

int cli_parse_int(const char *opt, const char *s, json_int_t *ret, struct cli_err *err)
{
        unsigned long long v;
        char *end;

        if (*s < '0' || *s > '9')
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s' expects a non-negative integer, got '%s'", opt, s);
        errno = 0;
        v = strtoull(s, &end, 10);
        if (*end != '\0')
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s' expects a non-negative integer, got '%s'", opt, s);
        if (errno == ERANGE || v > (unsigned long long)LLONG_MAX)
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s': '%s' is too large", opt, s);
        *ret = (json_int_t)v;
        return 0;
}

int cli_parse_number(const char *opt, const char *s, double *ret, struct cli_err *err)
{
        double v;
        char *end;

        errno = 0;
        v = strtod(s, &end);
        if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s' expects a number, got '%s'", opt, s);
        *ret = v;
        return 0;
}

static const char *env_nonempty(const char *name)
{
        const char *v = getenv(name);

        return v && *v ? v : NULL;
}

/* Global options up to the command; returns the index of the command in argv, 0 if the process
 * should exit 0 now (help, version), or a negative code. */
static int parse_global(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "version", no_argument, NULL, OPT_VERSION },
                {},
        };
        int c, r;

        opterr = 0;
        /* '+': stop at the command; its own options are parsed by the verb */
        while ((c = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
                if (c == OPT_VERSION) {
                        printf("sbx %s\n", SBX_CLI_VERSION);
                        return 0;
                }
                r = cli_common_option(cli, NULL, c, argv, err);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 0;
        }
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing command (see 'sbx --help')");
        return optind;
}

static int run(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        const struct verb *v;
        int first;

        first = parse_global(cli, argc, argv, err);
        if (first <= 0)
                return first;

        if (strcmp(argv[first], "help") == 0) {
                if (first + 1 < argc && !verb_find(argv[first + 1]))
                        return cli_err_set(err, -CLI_E_USAGE, "unknown command '%s' (see 'sbx --help')",
                                           argv[first + 1]);
                cli_usage(first + 1 < argc ? argv[first + 1] : NULL, stdout);
                return 0;
        }
        v = verb_find(argv[first]);
        if (!v)
                return cli_err_set(err, -CLI_E_USAGE, "unknown command '%s' (see 'sbx --help')", argv[first]);

        optind = 0; /* glibc: start afresh, argv[0] of the verb is its name */
        return v->run(cli, argc - first, argv + first, err);
}

int main(int argc, char **argv)
{
        struct cli cli = {
                .url = env_nonempty("SBX_URL") ?: SBX_CLI_DEFAULT_URL,
                .key = env_nonempty("SBX_KEY"),
        };
        struct cli_err err = {};
        int r;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                output_errorf("cannot initialise libcurl");
                return CLI_EXIT_FAILURE;
        }
        r = run(&cli, argc, argv, &err);
        cli.client = client_free(cli.client);
        curl_global_cleanup();

        if (r < 0) {
                (void)fflush(stdout);
                if (err.code != 0)
                        output_errorf("%s", err.msg);
                else
                        output_errorf("%s", strerror(-r));
                return r == -CLI_E_USAGE ? CLI_EXIT_USAGE : CLI_EXIT_FAILURE;
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
                output_errorf("cannot write to standard output: %s", strerror(errno));
                return CLI_EXIT_FAILURE;
        }
        return r;
}
