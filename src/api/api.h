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

static inline struct api_context *api_ctx(const struct http_request *req)
{
        return http_request_app(req);
}
