// SPDX-License-Identifier: Apache-2.0
/*
 * The sandbox lifecycle verbs: create, ls, inspect, rm, stop, start. Each parses its options,
 * builds one API request (ls: one per page), and prints the reply in the human form or, with
 * --json, as the raw JSON. Range checks are the server's: its messages name the field, so the
 * CLI only checks that numbers are numbers.
 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "output.h"

enum {
        OPT_TEMPLATE = OPT_VERB_BASE,
        OPT_NAME,
        OPT_ENV,
        OPT_METADATA,
        OPT_CPU,
        OPT_MEMORY,
        OPT_PIDS,
        OPT_LIFETIME,
        OPT_IDLE,
        OPT_WORKDIR,
        OPT_SNAPSHOT,
        OPT_STATE,
        OPT_LIMIT,
};

/* Parse options that none of these verbs has beyond the common ones; collect positionals. */
static int no_arguments(int argc, char **argv, struct cli_err *err)
{
        if (optind < argc)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (see 'sbx %s --help')", argv[optind],
                                   argv[0]);
        return 0;
}

/* Set obj[key] to a new object (or the existing one) and return it; NULL on OOM. */
static json_t *object_child(json_t *obj, const char *key)
{
        json_t *o = json_object_get(obj, key);

        if (o)
                return o;
        o = json_object();
        if (!o || json_object_set_new(obj, key, o) < 0)
                return NULL;
        return o;
}

static int set_new(json_t *obj, const char *key, json_t *v, struct cli_err *err)
{
        if (!obj) {
                json_decref(v);
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        if (!v || json_object_set_new(obj, key, v) < 0)
                return cli_err_set(err, -CLI_E_USAGE, "option '--%s': value is not valid UTF-8", key);
        return 0;
}

int cmd_create(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "template", required_argument, NULL, OPT_TEMPLATE },
                { "name", required_argument, NULL, OPT_NAME },
                { "env", required_argument, NULL, OPT_ENV },
                { "metadata", required_argument, NULL, OPT_METADATA },
                { "cpu", required_argument, NULL, OPT_CPU },
                { "memory", required_argument, NULL, OPT_MEMORY },
                { "pids", required_argument, NULL, OPT_PIDS },
                { "lifetime", required_argument, NULL, OPT_LIFETIME },
                { "idle", required_argument, NULL, OPT_IDLE },
                { "workdir", required_argument, NULL, OPT_WORKDIR },
                { "snapshot", required_argument, NULL, OPT_SNAPSHOT },
                {},
        };
        _cleanup_json_ json_t *body = json_object(), *reply = NULL;
        struct client *client;
        json_int_t i;
        double d;
        int c, r;

        if (!body)
                return cli_err_set(err, -ENOMEM, "out of memory");
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case OPT_TEMPLATE:
                        r = set_new(body, "template", json_string(optarg), err);
                        break;
                case OPT_NAME:
                        r = set_new(body, "name", json_string(optarg), err);
                        break;
                case OPT_WORKDIR:
                        r = set_new(body, "workdir", json_string(optarg), err);
                        break;
                case OPT_SNAPSHOT:
                        r = set_new(body, "snapshot", json_string(optarg), err);
                        break;
                case OPT_ENV:
                        r = cli_parse_kv("env", optarg, object_child(body, "env"), err);
                        break;
                case OPT_METADATA:
                        r = cli_parse_kv("metadata", optarg, object_child(body, "metadata"), err);
                        break;
                case OPT_CPU:
                        r = cli_parse_number("cpu", optarg, &d, err);
                        if (r >= 0)
                                r = set_new(object_child(body, "resources"), "cpu", json_real(d), err);
                        break;
                case OPT_MEMORY:
                case OPT_PIDS:
                case OPT_LIFETIME:
                case OPT_IDLE: {
                        const char *key = c == OPT_MEMORY     ? "memory"
                                          : c == OPT_PIDS     ? "pids"
                                          : c == OPT_LIFETIME ? "lifetime"
                                                              : "idle";

                        r = cli_parse_int(key, optarg, &i, err);
                        if (r >= 0)
                                r = set_new(
                                        object_child(body, c == OPT_MEMORY || c == OPT_PIDS ? "resources" : "timeout"),
                                        key, json_integer(i), err);
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
        r = no_arguments(argc, argv, err);
        if (r < 0)
                return r;

        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;
        r = client_request(client, "POST", "/v1/sandboxes", body, &reply, err);
        if (r < 0)
                return r;
        if (cli->json)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        if (!json_is_string(json_object_get(reply, "id")))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no sandbox id");
        output_line(json_string_value(json_object_get(reply, "id")));
        return 0;
}

/* GET one page of the list. */
static int list_page(struct client *client, const char *query, const char *cursor, json_t **ret, struct cli_err *err)
{
        _cleanup_free_ char *q = query ? strdup(query) : NULL, *path = NULL;

        if (query && !q)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (cursor && client_query_add(&q, "cursor", cursor) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");
        if (asprintf(&path, "/v1/sandboxes%s", q ? q : "") < 0) {
                path = NULL;
                return cli_err_set(err, -ENOMEM, "out of memory");
        }
        return client_request(client, "GET", path, NULL, ret, err);
}

int cmd_ls(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        static const struct option options[] = {
                CLI_COMMON_OPTIONS,
                { "state", required_argument, NULL, OPT_STATE },
                { "metadata", required_argument, NULL, OPT_METADATA },
                { "limit", required_argument, NULL, OPT_LIMIT },
                {},
        };
        _cleanup_json_ json_t *all = json_array(), *out = NULL;
        _cleanup_free_ char *query = NULL, *cursor = NULL;
        struct client *client;
        json_int_t limit = -1;
        char num[32];
        int c, r;

        if (!all)
                return cli_err_set(err, -ENOMEM, "out of memory");
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
                switch (c) {
                case OPT_STATE:
                        r = client_query_add(&query, "state", optarg);
                        if (r < 0)
                                return cli_err_set(err, r, "out of memory");
                        break;
                case OPT_METADATA: {
                        _cleanup_free_ char *key = NULL;
                        const char *eq = strchr(optarg, '=');

                        if (!eq || eq == optarg)
                                return cli_err_set(err, -CLI_E_USAGE, "option '--metadata' expects KEY=VALUE, got '%s'",
                                                   optarg);
                        if (asprintf(&key, "metadata.%.*s", (int)(eq - optarg), optarg) < 0) {
                                key = NULL;
                                return cli_err_set(err, -ENOMEM, "out of memory");
                        }
                        r = client_query_add(&query, key, eq + 1);
                        if (r < 0)
                                return cli_err_set(err, r, "out of memory");
                        break;
                }
                case OPT_LIMIT:
                        r = cli_parse_int("limit", optarg, &limit, err);
                        if (r < 0)
                                return r;
                        break;
                default:
                        r = cli_common_option(cli, argv[0], c, argv, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
        r = no_arguments(argc, argv, err);
        if (r < 0)
                return r;
        snprintf(num, sizeof num, "%lld", limit >= 0 ? (long long)limit : (long long)SBX_CLI_LIST_PAGE);
        if (client_query_add(&query, "limit", num) < 0)
                return cli_err_set(err, -ENOMEM, "out of memory");

        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;

        for (unsigned pages = 0;; pages++) {
                _cleanup_json_ json_t *page = NULL;
                const json_t *list, *next;

                if (pages >= SBX_CLI_MAX_PAGES)
                        return cli_err_set(err, -CLI_E_PROTOCOL, "listing did not end after %d pages",
                                           SBX_CLI_MAX_PAGES);
                r = list_page(client, query, cursor, &page, err);
                if (r < 0)
                        return r;
                list = json_object_get(page, "sandboxes");
                next = json_object_get(page, "nextCursor");
                if (!json_is_array(list) || (next && !json_is_null(next) && !json_is_string(next)))
                        return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply is not a sandbox list");
                if (limit >= 0 && cli->json) /* one page, printed as it came */
                        return output_json(page) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
                if (json_array_extend(all, (json_t *)list) < 0)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                if (json_array_size(all) > SBX_CLI_MAX_LIST)
                        return cli_err_set(err, -EFBIG, "more than %d sandboxes; use --limit or filters",
                                           SBX_CLI_MAX_LIST);
                if (limit >= 0 || !json_is_string(next))
                        break;
                if (cursor && strcmp(cursor, json_string_value(next)) == 0)
                        return cli_err_set(err, -CLI_E_PROTOCOL, "the server returned cursor '%s' twice", cursor);
                free(cursor);
                cursor = strdup(json_string_value(next));
                if (!cursor)
                        return cli_err_set(err, -ENOMEM, "out of memory");
        }

        if (cli->json) {
                out = json_pack("{s:O,s:n}", "sandboxes", all, "nextCursor");
                if (!out)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                return output_json(out) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        }
        output_sandbox_table(all);
        return 0;
}

/* "/v1/sandboxes/<id><suffix>" with the id percent-encoded, so it is always one path segment. */
static char *sandbox_path(const char *id, const char *suffix)
{
        _cleanup_free_ char *e = client_escape(id);
        char *path;

        if (!e || asprintf(&path, "/v1/sandboxes/%s%s", e, suffix) < 0)
                return NULL;
        return path;
}

int cmd_inspect(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        _cleanup_free_ char *path = NULL;
        int r;

        r = cli_parse_plain(cli, argc, argv, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx inspect --help')");
        if (optind + 1 < argc)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (see 'sbx inspect --help')",
                                   argv[optind + 1]);
        path = sandbox_path(argv[optind], "");
        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        return cli_show(cli, path, err);
}

/*
 * Send `method /v1/sandboxes/ID<suffix>` for every ID argument. Errors are printed as they
 * happen and the rest still run; the exit status is 1 if any failed.
 */
static int for_each_id(struct cli *cli, int argc, char **argv, const char *method, const char *suffix,
                       struct cli_err *err)
{
        struct client *client;
        int r, failed = 0;

        r = cli_parse_plain(cli, argc, argv, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing sandbox ID (see 'sbx %s --help')", argv[0]);
        r = cli_client(cli, &client, err);
        if (r < 0)
                return r;

        for (int i = optind; i < argc; i++) {
                _cleanup_json_ json_t *reply = NULL;
                _cleanup_free_ char *path = sandbox_path(argv[i], suffix);
                struct cli_err one = {};

                if (!path)
                        return cli_err_set(err, -ENOMEM, "out of memory");
                r = client_request(client, method, path, NULL, &reply, &one);
                if (r == -CLI_E_CONNECT) /* fails every id alike: stop at the first */
                        return cli_err_set(err, r, "%s", one.msg);
                if (r < 0) {
                        output_errorf("%s", one.msg);
                        failed = 1;
                        continue;
                }
                if (cli->json) {
                        if (reply && output_json(reply) < 0)
                                return cli_err_set(err, -EIO, "cannot write to standard output");
                } else {
                        output_line(argv[i]);
                }
        }
        return failed ? CLI_EXIT_FAILURE : 0;
}

int cmd_rm(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return for_each_id(cli, argc, argv, "DELETE", "", err);
}

int cmd_stop(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return for_each_id(cli, argc, argv, "POST", "/stop", err);
}

int cmd_start(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        return for_each_id(cli, argc, argv, "POST", "/start", err);
}
