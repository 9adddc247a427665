/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI's HTTP client: a thin libcurl wrapper that sends one JSON request and hands back the
 * status and the parsed JSON reply, or streams an NDJSON reply line by line. One CURL handle is
 * reused for every request so the connection is kept alive. It turns transport failures and API
 * error objects into one-line messages in struct cli_err; it never prints anything itself.
 */
#pragma once

#include <jansson.h>

#include "cli.h"

struct client;

/*
 * Make a client for url: "http://HOST[:PORT][/PREFIX]", "https://...", or "unix:/path/to.sock"
 * (HTTP over that unix socket). key, if non-NULL, is sent as "Authorization: Bearer KEY".
 * Returns 0 and sets *ret (owned by the caller, free with client_free()), or -CLI_E_USAGE for a
 * malformed url or key, or -ENOMEM.
 */
int client_new(const char *url, const char *key, struct client **ret, struct cli_err *err);
/* NULL-safe; returns NULL. */
struct client *client_free(struct client *c);

/*
 * Send `method path` (path starts with '/', query included) with an optional JSON body.
 * On a 2xx reply returns the status and sets *ret_json (if ret_json is non-NULL) to the parsed
 * body, or to NULL when the body is empty (204); the caller owns it. Otherwise returns
 * -CLI_E_CONNECT, -CLI_E_API (err holds "<server message> (<code>)"), -CLI_E_PROTOCOL, -EFBIG
 * (reply over SBX_CLI_MAX_RESPONSE) or -ENOMEM, and leaves *ret_json untouched.
 */
int client_request(struct client *c, const char *method, const char *path, const json_t *body, json_t **ret_json,
                   struct cli_err *err);

/*
 * Called for each line of a streamed reply, parsed; line is borrowed for the call only.
 * Returns 0 to go on or a negative code (with err filled) to abort the transfer.
 */
typedef int (*client_line_fn)(const json_t *line, void *userdata, struct cli_err *err);

/*
 * Like client_request() but sends "Accept: application/x-ndjson". If the server answers 2xx with
 * that content type, each non-empty line is parsed and passed to fn as it arrives (lines are at
 * most SBX_CLI_MAX_STREAM_LINE bytes) and *ret_json is set to NULL. If it answers 2xx with a
 * plain JSON body instead, fn is never called and the body is returned in *ret_json. An error
 * from fn aborts the transfer and is returned as is.
 */
int client_stream(struct client *c, const char *method, const char *path, const json_t *body, client_line_fn fn,
                  void *userdata, json_t **ret_json, struct cli_err *err);

/*
 * Append "key=value" to the query string *query (malloc'd, or NULL for none yet), starting it
 * with '?' or adding '&', both parts percent-encoded. Returns 0 or -ENOMEM (*query unchanged).
 */
int client_query_add(char **query, const char *key, const char *value);

/* Percent-encode s for use as one path segment or query part. Returns a malloc'd string or NULL. */
char *client_escape(const char *s);
