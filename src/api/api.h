/* SPDX-License-Identifier: Apache-2.0 */
/* What the API handlers reach through http_request_app(): the daemon's core objects. */
#pragma once

#include "api/server.h"
#include "core/manager.h"
#include "images/template.h"

struct api_context {
        struct manager *manager;
        struct template_store *templates;
        const char *version;
        const char *upload_dir;      /* O_TMPFILE files for uploads and exports (on the templates disk) */
};

/* The server's upload_open (api/v1/files.c): PUT .../files/{path*} streams into the sandbox's file,
 * every other upload route into an O_TMPFILE in upload_dir. */
int v1_upload_open(struct http_request *req, int *ret_fd, uint64_t *ret_max, struct sbx_err *err);

/* The server's gate (api/v1/gate.c) for routes that need a running sandbox: a paused sandbox
 * answers 409 sandbox_paused, or is resumed first when the request says autoResume (query
 * "?autoResume=true", or "autoResume": true in a JSON body); the reply then carries
 * "autoResumed": true and the header X-Sbx-Auto-Resumed. */
int v1_gate(struct http_request *req, struct sbx_err *err);

static inline struct api_context *api_ctx(const struct http_request *req)
{
        return http_request_app(req);
}
