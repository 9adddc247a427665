// SPDX-License-Identifier: Apache-2.0
/*
 * sbx pause | resume | hibernate | wake | timeout | events | snapshot | fork | checkpoint
 * (docs/lifecycle.md): thin wrappers over the API's lifecycle routes. Human output is one line
 * per thing; --json prints the server's reply.
 */
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "output.h"

enum {
        OPT_LIMIT = OPT_VERB_BASE,
        OPT_DESC,
        OPT_FOLLOW,
        OPT_NAME,
        OPT_TAG,
        OPT_DESCRIPTION,
        OPT_COUNT,
        OPT_IDLE,
        OPT_PAUSED,
        OPT_EXECUTION,
        OPT_SANDBOX,
        OPT_KIND,
        OPT_FILE,
        OPT_SCRIPT,
};

static int request(struct cli *cli, const char *method, const char *path, const json_t *body, json_t **ret,
                   struct cli_err *err)
{
        struct client *client;
        int r = cli_client(cli, &client, err);

        return r < 0 ? r : client_request(client, method, path, body, ret, err);
}

static const char *str(const json_t *o, const char *key)
{
        const char *s = json_string_value(json_object_get(o, key));

        return s ? s : "-";
}

/* ---------- pause, resume, hibernate, wake ---------- */

static int verb_each(struct cli *cli, int argc, char **argv, const char *verb, struct cli_err *err)
{
        int r, failed = 0;

        r = cli_parse_plain(cli, argc, argv, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx %s --help')", argv[0]);
        for (int i = optind; i < argc; i++) {
                _cleanup_json_ json_t *reply = NULL;
                struct cli_err one = {};
                char path[256];

                snprintf(path, sizeof path, "/v1/sandboxes/%.64s/%s", argv[i], verb);
                r = request(cli, "POST", path, NULL, &reply, &one);
                if (r == -CLI_E_CONNECT)
                        return cli_err_set(err, r, "%s", one.msg);
                if (r < 0) {
                        output_errorf("%s", one.msg);
                        failed = 1;
                        continue;
                }
                if (cli->json) {
                        if (output_json(reply) < 0)
                                return cli_err_set(err, -EIO, "cannot write to standard output");
                        continue;
                }
                json_t *h = json_object_get(reply, "hibernation");
                printf("%s %s%s\n", str(reply, "id"), str(reply, "state"),
                       h && !json_is_true(json_object_get(h, "memory")) ? " (memory not kept: files only)" : "");
        }
        return failed ? CLI_EXIT_FAILURE : 0;
}

int cmd_pause(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return verb_each(cli, argc, argv, "pause", err);
}

int cmd_resume(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return verb_each(cli, argc, argv, "resume", err);
}

int cmd_hibernate(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return verb_each(cli, argc, argv, "hibernate", err);
}

int cmd_wake(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return verb_each(cli, argc, argv, "wake", err);
}

/* ---------- timeout ---------- */

/* "none" -> null, else seconds. */
static int timer_value(const char *opt, const char *s, json_t **ret, struct cli_err *err)
{
        json_int_t n;
        int r;

        if (!strcmp(s, "none")) {
                *ret = json_null();
                return 0;
        }
        r = cli_parse_int(opt, s, &n, err);
        if (r >= 0)
                *ret = json_integer(n);
        return r;
}

int cmd_timeout(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "idle", required_argument, NULL, OPT_IDLE },
                { "paused", required_argument, NULL, OPT_PAUSED },
                { "execution", required_argument, NULL, OPT_EXECUTION },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *timers = json_object(), *reply = NULL;
        const char *id = NULL;
        bool dashdash = false;
        char path[256];
        int c, r;

        if (!body || !timers)
                return cli_err_set(err, -ENOMEM, "out of memory");
        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                json_t *v = NULL;

                switch (c) {
                case OPT_IDLE:
                case OPT_PAUSED:
                case OPT_EXECUTION: {
                        const char *key = c == OPT_IDLE ? "idle" : c == OPT_PAUSED ? "paused" : "execution";

                        r = timer_value(key, optarg, &v, err);
                        if (r >= 0)
                                (void)json_object_set_new(timers, key, v);
                        break;
                }
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r > 0)
                                return 0;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                id = argv[optind++];
        if (!id)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx timeout --help')");
        if (optind < argc) {
                json_int_t n;

                r = cli_parse_int("SECONDS", argv[optind++], &n, err);
                if (r < 0)
                        return r;
                (void)json_object_set_new(timers, "lifetime", json_integer(n));
        }
        (void)dashdash;
        if (optind < argc)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s'", argv[optind]);
        if (json_object_size(timers) == 0)
                return cli_err_set(err, -CLI_E_USAGE, "give SECONDS or one of --idle, --paused, --execution");
        (void)json_object_set(body, "timeout", timers);
        snprintf(path, sizeof path, "/v1/sandboxes/%.64s", id);
        r = request(cli, "PATCH", path, body, &reply, err);
        if (r < 0)
                return r;
        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        printf("%s expires %s, terminates %s\n", str(reply, "id"), str(reply, "expiresAt"), str(reply, "terminatesAt"));
        return 0;
}

/* ---------- events ---------- */

static void print_event(const json_t *e)
{
        const char *reason = json_string_value(json_object_get(json_object_get(e, "data"), "reason"));
        _cleanup_free_ char *data = json_dumps(json_object_get(e, "data"), JSON_COMPACT | JSON_SORT_KEYS);

        printf("%s  %-22s %-24s %s\n", str(e, "at"), str(e, "type"), str(e, "sandboxId"),
               reason ? reason : data ? data : "");
}

static int on_event(const char *type, const char *id, const json_t *data, void *userdata, struct cli_err *err)
{
        struct cli *cli = userdata;

        if (cli->json)
                return output_json(data) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        print_event(data);
        fflush(stdout);
        return 0;
}

int cmd_events(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "limit", required_argument, NULL, OPT_LIMIT },
                { "desc", no_argument, NULL, OPT_DESC },
                { "follow", no_argument, NULL, OPT_FOLLOW },
                {},
        };
        _cleanup_json_ json_t *reply = NULL;
        const char *id = NULL, *limit = "100";
        bool desc = false, follow = false;
        char path[256];
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":hf", options, NULL)) != -1) {
                switch (c) {
                case OPT_LIMIT:
                        limit = optarg;
                        r = 0;
                        break;
                case OPT_DESC:
                        desc = true;
                        r = 0;
                        break;
                case 'f':
                case OPT_FOLLOW:
                        follow = true;
                        r = 0;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r > 0)
                                return 0;
                }
                if (r < 0)
                        return r;
        }
        if (optind < argc)
                id = argv[optind++];
        if (optind < argc)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s'", argv[optind]);
        if (follow) {
                struct client *client;
                char last[SBX_CLI_MAX_EVENT_ID] = "";

                r = cli_client(cli, &client, err);
                if (r < 0)
                        return r;
                snprintf(path, sizeof path, "/v1/events%s%.64s", id ? "?sandbox=" : "", id ? id : "");
                for (int tries = 0;; tries++) {
                        struct cli_err one = {};

                        r = client_events(client, path, last[0] ? last : NULL, on_event, cli, &one);
                        if (r != -CLI_E_CONNECT || tries >= SBX_CLI_SSE_RECONNECTS)
                                return r < 0 ? cli_err_set(err, r, "%s", one.msg) : 0;
                }
        }
        if (!id)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (or -f to follow every event)");
        snprintf(path, sizeof path, "/v1/sandboxes/%.64s/events?limit=%.16s%s", id, limit, desc ? "&direction=desc" : "");
        r = request(cli, "GET", path, NULL, &reply, err);
        if (r < 0)
                return r;
        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        json_t *e;
        size_t i;
        json_array_foreach (json_object_get(reply, "events"), i, e)
                print_event(e);
        return 0;
}

/* ---------- snapshot, fork, checkpoint ---------- */

static void print_snapshot(const json_t *s)
{
        json_t *tags = json_object_get(s, "tags"), *t;
        json_t *size = json_object_get(s, "sizeBytes");
        size_t i;

        printf("%s  %-10s %-24s %-10s ", str(s, "id"), str(s, "kind"), str(s, "sandboxId"),
               json_is_string(json_object_get(s, "name")) ? str(s, "name") : "-");
        if (json_is_integer(size))
                printf("%" JSON_INTEGER_FORMAT "B ", json_integer_value(size));
        json_array_foreach (tags, i, t)
                printf("%s%s", i ? "," : "#", json_string_value(t));
        printf("\n");
}

static int print_reply(struct cli *cli, json_t *reply, const char *list_key, struct cli_err *err)
{
        json_t *v;
        size_t i;

        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        if (!list_key) {
                print_snapshot(reply);
                return 0;
        }
        json_array_foreach (json_object_get(reply, list_key), i, v)
                print_snapshot(v);
        return 0;
}

static int snapshot_patch(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "file", required_argument, NULL, OPT_FILE },
                { "script", required_argument, NULL, OPT_SCRIPT },
                { "name", required_argument, NULL, OPT_NAME },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *reply = NULL;
        _cleanup_free_ char *text = NULL;
        const char *sub, *ref, *file = NULL;
        char path[512];
        int c, r = 0;

        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case OPT_FILE:
                        file = optarg;
                        break;
                case OPT_SCRIPT:
                        (void)json_object_set_new(body, "script", json_string(optarg));
                        break;
                case OPT_NAME:
                        (void)json_object_set_new(body, "name", json_string(optarg));
                        break;
                default:
                        r = cli_common_option(cli, "snapshot", c, argv, err);
                        if (r > 0)
                                return 0;
                }
                if (r < 0)
                        return r;
        }
        if (argc - optind < 2)
                return cli_err_set(err, -CLI_E_USAGE, "usage: sbx snapshot patch add|ls|rm REF [PATCH_ID]");
        sub = argv[optind];
        ref = argv[optind + 1];
        snprintf(path, sizeof path, "/v1/snapshots/%.128s/patches", ref);
        if (!strcmp(sub, "ls")) {
                json_t *p;
                size_t i;

                r = request(cli, "GET", path, NULL, &reply, err);
                if (r < 0 || cli->json)
                        return r < 0 ? r : (output_json(reply), 0);
                json_array_foreach (json_object_get(reply, "patches"), i, p)
                        printf("%s  %s\n", str(p, "id"), json_is_string(json_object_get(p, "name")) ? str(p, "name") : "-");
                return 0;
        }
        if (!strcmp(sub, "rm")) {
                if (argc - optind < 3)
                        return cli_err_set(err, -CLI_E_USAGE, "missing PATCH_ID");
                snprintf(path, sizeof path, "/v1/snapshots/%.128s/patches/%.64s", ref, argv[optind + 2]);
                r = request(cli, "DELETE", path, NULL, &reply, err);
                return r < 0 ? r : 0;
        }
        if (strcmp(sub, "add") != 0)
                return cli_err_set(err, -CLI_E_USAGE, "unknown 'snapshot patch' command '%s'", sub);
        if (file) {
                FILE *f = fopen(file, "re");
                size_t n;

                if (!f)
                        return cli_err_set(err, -errno, "cannot open '%s': %m", file);
                text = calloc(1, SBX_CLI_MAX_SPEC + 1);
                n = text ? fread(text, 1, SBX_CLI_MAX_SPEC, f) : 0;
                fclose(f);
                if (!text)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                if (n == SBX_CLI_MAX_SPEC)
                        return cli_err_set(err, -EFBIG, "'%s' is larger than %lu bytes", file, SBX_CLI_MAX_SPEC);
                (void)json_object_set_new(body, "script", json_stringn(text, n));
        }
        if (!json_object_get(body, "script"))
                return cli_err_set(err, -CLI_E_USAGE, "give --file PATH or --script TEXT");
        r = request(cli, "POST", path, body, &reply, err);
        if (r < 0)
                return r;
        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        output_line(str(reply, "id"));
        return 0;
}

int cmd_snapshot(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "name", required_argument, NULL, OPT_NAME },
                { "tag", required_argument, NULL, OPT_TAG },
                { "description", required_argument, NULL, OPT_DESCRIPTION },
                { "sandbox", required_argument, NULL, OPT_SANDBOX },
                { "kind", required_argument, NULL, OPT_KIND },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *tags = json_array(), *reply = NULL;
        _cleanup_free_ char *query = NULL;
        const char *sub;
        char path[512];
        int c, r = 0;

        if (argc < 2)
                return cli_err_set(err, -CLI_E_USAGE, "missing command (see 'sbx snapshot --help')");
        sub = argv[1];
        if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
                cli_usage("snapshot", stdout);
                return 0;
        }
        if (!strcmp(sub, "patch"))
                return snapshot_patch(cli, argc - 1, argv + 1, err);
        /* the options after "snapshot SUB": argv + 1 puts SUB where getopt expects a name */
        argc--;
        argv++;
        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case OPT_NAME:
                        (void)json_object_set_new(body, "name", json_string(optarg));
                        break;
                case OPT_DESCRIPTION:
                        (void)json_object_set_new(body, "description", json_string(optarg));
                        break;
                case OPT_TAG:
                        (void)json_array_append_new(tags, json_string(optarg));
                        (void)client_query_add(&query, "tag", optarg);
                        break;
                case OPT_SANDBOX:
                        (void)client_query_add(&query, "sandbox", optarg);
                        break;
                case OPT_KIND:
                        (void)client_query_add(&query, "kind", optarg);
                        break;
                default:
                        r = cli_common_option(cli, "snapshot", c, argv, err);
                        if (r > 0)
                                return 0;
                }
                if (r < 0)
                        return r;
        }
        if (!strcmp(sub, "ls")) {
                snprintf(path, sizeof path, "/v1/snapshots%s", query ? query : "");
                r = request(cli, "GET", path, NULL, &reply, err);
                return r < 0 ? r : print_reply(cli, reply, "snapshots", err);
        }
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "'sbx snapshot %s' needs an id (see 'sbx snapshot --help')", sub);
        if (!strcmp(sub, "create")) {
                if (json_array_size(tags) > 0)
                        (void)json_object_set(body, "tags", tags);
                snprintf(path, sizeof path, "/v1/sandboxes/%.64s/snapshots", argv[optind]);
                r = request(cli, "POST", path, body, &reply, err);
                if (r < 0)
                        return r;
                if (cli->json)
                        return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
                output_line(str(reply, "id"));
                return 0;
        }
        if (!strcmp(sub, "inspect")) {
                snprintf(path, sizeof path, "/v1/snapshots/%.128s", argv[optind]);
                return cli_show(cli, path, err);
        }
        if (!strcmp(sub, "lineage")) {
                json_t *a, *v;
                size_t i;

                snprintf(path, sizeof path, "/v1/snapshots/%.128s/lineage", argv[optind]);
                r = request(cli, "GET", path, NULL, &reply, err);
                if (r < 0 || cli->json)
                        return r < 0 ? r : (output_json(reply), 0);
                print_snapshot(json_object_get(reply, "snapshot"));
                a = json_object_get(reply, "ancestors");
                json_array_foreach (a, i, v) {
                        printf("%*s└─ ", (int)(2 * i), "");
                        print_snapshot(v);
                }
                printf("%*s└─ template %s\n", (int)(2 * json_array_size(a)), "", str(reply, "template"));
                json_array_foreach (json_object_get(reply, "children"), i, v)
                        printf("child snapshot  %s\n", json_string_value(v));
                json_array_foreach (json_object_get(reply, "sandboxes"), i, v)
                        printf("sandbox         %s\n", json_string_value(v));
                return 0;
        }
        if (!strcmp(sub, "rm")) {
                int failed = 0;

                for (int i = optind; i < argc; i++) {
                        _cleanup_json_ json_t *none = NULL;
                        struct cli_err one = {};

                        snprintf(path, sizeof path, "/v1/snapshots/%.128s", argv[i]);
                        if (request(cli, "DELETE", path, NULL, &none, &one) < 0) {
                                output_errorf("%s", one.msg);
                                failed = 1;
                        } else
                                output_line(argv[i]);
                }
                return failed ? CLI_EXIT_FAILURE : 0;
        }
        if (!strcmp(sub, "tag") || !strcmp(sub, "untag")) {
                if (argc - optind < 2)
                        return cli_err_set(err, -CLI_E_USAGE, "usage: sbx snapshot %s REF TAG", sub);
                _cleanup_json_ json_t *tb = json_pack("{s:s}", "tag", argv[optind + 1]);
                if (!strcmp(sub, "tag")) {
                        snprintf(path, sizeof path, "/v1/snapshots/%.128s/tags", argv[optind]);
                        r = request(cli, "POST", path, tb, &reply, err);
                } else {
                        snprintf(path, sizeof path, "/v1/snapshots/%.128s/tags/%.128s", argv[optind], argv[optind + 1]);
                        r = request(cli, "DELETE", path, NULL, &reply, err);
                }
                return r < 0 ? r : print_reply(cli, reply, NULL, err);
        }
        return cli_err_set(err, -CLI_E_USAGE, "unknown 'snapshot' command '%s' (see 'sbx snapshot --help')", sub);
}

int cmd_fork(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "count", required_argument, NULL, OPT_COUNT },
                { "name", required_argument, NULL, OPT_NAME },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *reply = NULL;
        const char *id = NULL;
        bool dashdash = false;
        char path[256];
        json_int_t n;
        json_t *v;
        size_t i;
        int c, r;

        while ((c = cli_getopt_id(argc, argv, ":hn:", options, &id, &dashdash, err)) != -1) {
                if (c < -1)
                        return c;
                switch (c) {
                case 'n':
                case OPT_COUNT:
                        r = cli_parse_int("count", optarg, &n, err);
                        if (r >= 0)
                                (void)json_object_set_new(body, "count", json_integer(n));
                        break;
                case OPT_NAME:
                        r = json_object_set_new(body, "name", json_string(optarg)) < 0 ? -ENOMEM : 0;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r > 0)
                                return 0;
                }
                if (r < 0)
                        return r;
        }
        if (!id || dashdash)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx fork --help')");
        snprintf(path, sizeof path, "/v1/sandboxes/%.64s/fork", id);
        r = request(cli, "POST", path, body, &reply, err);
        if (r < 0)
                return r;
        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        json_array_foreach (json_object_get(reply, "sandboxes"), i, v)
                output_line(str(v, "id"));
        json_array_foreach (json_object_get(reply, "errors"), i, v)
                output_errorf("a fork failed: %s", str(v, "message"));
        return json_array_size(json_object_get(reply, "errors")) ? CLI_EXIT_FAILURE : 0;
}

int cmd_checkpoint(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "description", required_argument, NULL, OPT_DESCRIPTION },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *reply = NULL;
        const char *sub, *id;
        char path[512];
        int c, r = 0;

        if (argc < 2)
                return cli_err_set(err, -CLI_E_USAGE, "missing command (see 'sbx checkpoint --help')");
        sub = argv[1];
        if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
                cli_usage("checkpoint", stdout);
                return 0;
        }
        argc--;
        argv++;
        optind = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                if (c == OPT_DESCRIPTION)
                        (void)json_object_set_new(body, "description", json_string(optarg));
                else {
                        r = cli_common_option(cli, "checkpoint", c, argv, err);
                        if (r > 0)
                                return 0;
                        if (r < 0)
                                return r;
                }
        }
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx checkpoint --help')");
        id = argv[optind];
        if (!strcmp(sub, "ls")) {
                snprintf(path, sizeof path, "/v1/sandboxes/%.64s/checkpoints", id);
                r = request(cli, "GET", path, NULL, &reply, err);
                return r < 0 ? r : print_reply(cli, reply, "checkpoints", err);
        }
        if (argc - optind < 2)
                return cli_err_set(err, -CLI_E_USAGE, "usage: sbx checkpoint %s ID NAME", sub);
        if (!strcmp(sub, "create")) {
                (void)json_object_set_new(body, "name", json_string(argv[optind + 1]));
                snprintf(path, sizeof path, "/v1/sandboxes/%.64s/checkpoints", id);
                r = request(cli, "POST", path, body, &reply, err);
                if (r < 0)
                        return r;
                if (cli->json)
                        return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
                output_line(str(reply, "id"));
                return 0;
        }
        snprintf(path, sizeof path, "/v1/sandboxes/%.64s/checkpoints/%.128s%s", id, argv[optind + 1],
                 !strcmp(sub, "restore") ? "/restore" : "");
        if (!strcmp(sub, "rm")) {
                r = request(cli, "DELETE", path, NULL, &reply, err);
                return r < 0 ? r : 0;
        }
        if (!strcmp(sub, "restore")) {
                r = request(cli, "POST", path, NULL, &reply, err);
                if (r < 0)
                        return r;
                if (cli->json)
                        return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
                printf("%s %s\n", str(reply, "id"), str(reply, "state"));
                return 0;
        }
        return cli_err_set(err, -CLI_E_USAGE, "unknown 'checkpoint' command '%s' (see 'sbx checkpoint --help')", sub);
}
