// SPDX-License-Identifier: Apache-2.0
/* sbx template ls | inspect NAME: the template catalog (GET /v1/templates[/NAME]). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "output.h"

static void human_size(json_t *v, char *buf, size_t size)
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
        else
                snprintf(buf, size, "%.0fK", b / 1e3);
}

static int template_ls(struct client *client, bool json_out, struct cli_err *err)
{
        _cleanup_json_ json_t *reply = NULL;
        json_t *arr, *t;
        size_t i;
        int r;

        r = client_request(client, "GET", "/v1/templates", NULL, &reply, err);
        if (r < 0)
                return r;
        arr = reply ? json_object_get(reply, "templates") : NULL;
        if (!json_is_array(arr))
                return cli_err_set(err, -CLI_E_PROTOCOL, "the server's reply has no 'templates' list");
        if (json_out)
                return output_json(reply) < 0 ? cli_err_set(err, -EIO, "cannot write to standard output") : 0;
        output_line("NAME      STATE       SIZE    DESCRIPTION");
        json_array_foreach(arr, i, t) {
                char line[512], sz[32];
                const char *state = json_string_value(json_object_get(t, "state"));
                json_t *prog = json_object_get(t, "progress");

                human_size(json_object_get(t, "sizeBytes"), sz, sizeof sz);
                if (json_is_object(prog))
                        snprintf(sz, sizeof sz, "%d%%", (int)json_integer_value(json_object_get(prog, "percent")));
                snprintf(line, sizeof line, "%-9s %-11s %-7s %s", json_string_value(json_object_get(t, "name")) ?: "-",
                         state ? state : "-", sz, json_string_value(json_object_get(t, "description")) ?: "");
                output_line(line);
        }
        return 0;
}

int cmd_template(struct cli *cli, int argc, char **argv, struct cli_err *err)
{
        _cleanup_free_ char *esc = NULL, *path = NULL;
        struct client *client;
        const char *sub;
        int r;

        r = cli_parse_plain(cli, argc, argv, err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (optind >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing 'ls' or 'inspect NAME' (see 'sbx template --help')");
        sub = argv[optind];
        if (strcmp(sub, "ls") == 0) {
                if (optind + 1 < argc)
                        return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (see 'sbx template --help')",
                                           argv[optind + 1]);
                r = cli_client(cli, &client, err);
                return r < 0 ? r : template_ls(client, cli->json, err);
        }
        if (strcmp(sub, "inspect") != 0)
                return cli_err_set(err, -CLI_E_USAGE, "unknown template command '%s' (see 'sbx template --help')", sub);
        if (optind + 1 >= argc)
                return cli_err_set(err, -CLI_E_USAGE, "missing template NAME (see 'sbx template --help')");
        if (optind + 2 < argc)
                return cli_err_set(err, -CLI_E_USAGE, "unexpected argument '%s' (see 'sbx template --help')",
                                   argv[optind + 2]);
        esc = client_escape(argv[optind + 1]);
        path = esc ? malloc(strlen(esc) + sizeof "/v1/templates/") : NULL;
        if (!path)
                return cli_err_set(err, -ENOMEM, "out of memory");
        snprintf(path, strlen(esc) + sizeof "/v1/templates/", "/v1/templates/%s", esc);
        return cli_show(cli, path, err);
}
