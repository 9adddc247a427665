// SPDX-License-Identifier: Apache-2.0
/* GET /v1/health and GET /metrics. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"
#include "core/metrics.h"

void v1_health(struct http_request *req)
{
        http_reply_json(req, 200, json_pack("{s:s,s:s}", "status", "ok", "version", api_ctx(req)->version));
}

void v1_metrics(struct http_request *req)
{
        struct metrics_state_count states[_SANDBOX_STATE_MAX];
        unsigned counts[_SANDBOX_STATE_MAX];
        size_t n = 0;
        char *text;

        manager_state_counts(api_ctx(req)->manager, counts);
        for (int s = 0; s < _SANDBOX_STATE_MAX; s++) {
                if (s == SANDBOX_DELETED)
                        continue;
                states[n].state = sandbox_state_to_string((enum sandbox_state)s);
                states[n++].count = counts[s];
        }
        text = metrics_render(states, n);
        if (!text) {
                http_reply_errorf(req, -ENOMEM, NULL, "cannot render metrics");
                return;
        }
        http_reply_data(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
        free(text);
}
