// SPDX-License-Identifier: Apache-2.0
/*
 * The gate in front of every route that needs a running sandbox (routes marked "resume" in
 * api/schema/api.json): a paused sandbox refuses them with 409 sandbox_paused unless the request
 * asks for autoResume, in which case it is resumed first and the reply says "autoResumed": true.
 * Reads stay open on a paused sandbox (they are not gated): its files are all there.
 */
#include <string.h>

#include "api/api.h"

static bool truthy(const char *v)
{
        return v && (!strcmp(v, "") || !strcmp(v, "true") || !strcmp(v, "1"));
}

/* "autoResume": true at the top of a JSON object body. Malformed bodies say no: the handler
 * reports them. */
static bool body_asks(struct http_request *req)
{
        size_t len = 0;
        const char *body = http_request_body(req, &len);
        json_t *j, *v;
        bool yes;

        if (!body || len == 0 || !memmem(body, len, "autoResume", 10))
                return false;
        j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        v = json_object_get(j, "autoResume");
        yes = json_is_true(v);
        json_decref(j);
        return yes;
}

int v1_gate(struct http_request *req, struct sbx_err *err)
{
        struct manager *m = api_ctx(req)->manager;
        const char *id = http_request_param(req, 0);
        int r;

        if (!id || !manager_is_paused(m, id))
                return 0; /* the handler says what else is wrong */
        if (!truthy(http_request_query(req, "autoResume")) && !body_asks(req))
                return sbx_err_setr(err, -SBX_E_CONFLICT, "sandbox_paused",
                                    "sandbox '%s' is paused: resume it (POST /v1/sandboxes/%s/resume) or send the "
                                    "request with autoResume (?autoResume=true or \"autoResume\": true)",
                                    id, id);
        r = manager_resume_if_paused(m, id, err);
        if (r < 0)
                return r;
        http_reply_field(req, "autoResumed", json_true());
        (void)http_reply_header(req, "X-Sbx-Auto-Resumed", "true");
        return 0;
}
