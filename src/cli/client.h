/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI's HTTP client: a thin libcurl wrapper that sends one JSON request and hands back the
 * status and the parsed JSON reply, streams an NDJSON reply line by line, follows a Server-Sent
 * Events stream event by event, and moves large bodies (image tarballs) between a file
 * descriptor and the server without holding them in memory. One CURL handle is reused for every
 * request so the connection is kept alive. It turns transport failures and API error objects
 * into one-line messages in struct cli_err; it never prints anything itself.
 */
#pragma once

#include <jansson.h>
#include <stdint.h>

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
 * -CLI_E_CONNECT, -CLI_E_API (err holds "<server message> (<code>)" and err->api_code the code,
 * "" when the reply had none), -CLI_E_PROTOCOL, -EFBIG
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
 * Called for each Server-Sent Event as it is dispatched (at its blank line). type is the
 * "event:" field ("message" when there was none); id is the last "id:" seen on this stream so
 * far ("" if none), which is what a reconnect sends as Last-Event-ID; data is the event's "data:"
 * lines joined with '\n' and parsed as JSON, or a JSON string holding the text when it is not
 * JSON. All are borrowed for the call only. Returns 0 to go on or a negative code (with err
 * filled) to abort the transfer. Events without a data line are not dispatched (as in the
 * WHATWG EventSource rules), and an event cut off by the end of the stream is dropped.
 */
typedef int (*client_event_fn)(const char *type, const char *id, const json_t *data, void *userdata,
                               struct cli_err *err);

/*
 * GET path as an event stream ("Accept: text/event-stream"), sending "Last-Event-ID: last_id"
 * when last_id is non-NULL, and call fn for each event as it arrives. One event is at most
 * SBX_CLI_MAX_SSE_EVENT bytes of data. Returns the HTTP status once the server ended the stream;
 * -CLI_E_CONNECT if it could not connect or the connection broke off mid-stream (both worth a
 * reconnect); -CLI_E_API for an error reply; -CLI_E_PROTOCOL if a 2xx reply is not an event
 * stream or is malformed; -EFBIG; -ENOMEM; or fn's error as is.
 */
int client_events(struct client *c, const char *path, const char *last_id, client_event_fn fn, void *userdata,
                  struct cli_err *err);

/*
 * Send `method path` with the bytes read from in_fd as the body, read as libcurl sends them
 * (never loaded into memory), with "Content-Type: content_type". size >= 0 is sent as the
 * Content-Length (in_fd must then yield exactly that many bytes); size < 0 sends the body
 * chunked, up to end of file. in_name names the source in messages. The reply is handled as by
 * client_request(); a read error on in_fd is -errno with err naming in_name.
 */
int client_upload(struct client *c, const char *method, const char *path, int in_fd, int64_t size,
                  const char *content_type, const char *in_name, json_t **ret_json, struct cli_err *err);

/*
 * GET path and write a 2xx body to out_fd as it arrives; out_name names the destination in
 * messages. Returns the HTTP status and sets *ret_bytes (if non-NULL) to the bytes written. A
 * non-2xx reply is not written: it is buffered and turned into an error as by client_request(),
 * and nothing has been written to out_fd then. A write error on out_fd is -errno.
 */
int client_download(struct client *c, const char *path, int out_fd, const char *out_name, uint64_t *ret_bytes,
                    struct cli_err *err);

/*
 * Called while an upload or download moves its body: now is the body bytes sent or written so
 * far, total their expected count (the Content-Length; 0 when unknown, as for a chunked body).
 * Called often (libcurl's progress meter: at least once a second, and after each chunk), so it
 * should be cheap; it cannot fail.
 */
typedef void (*client_progress_fn)(uint64_t now, uint64_t total, void *userdata);

/*
 * Report the progress of the client_upload() and client_download() calls that follow to fn,
 * until called again with fn NULL. Other requests are not reported.
 */
void client_set_progress(struct client *c, client_progress_fn fn, void *userdata);

/*
 * Append "key=value" to the query string *query (malloc'd, or NULL for none yet), starting it
 * with '?' or adding '&', both parts percent-encoded. Returns 0 or -ENOMEM (*query unchanged).
 */
int client_query_add(char **query, const char *key, const char *value);

/* Percent-encode s for use as one path segment or query part. Returns a malloc'd string or NULL. */
char *client_escape(const char *s);
