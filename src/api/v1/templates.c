// SPDX-License-Identifier: Apache-2.0
/* GET /v1/templates and GET /v1/templates/{name}: the built-in catalog and the state of each. */
#include <errno.h>
#include <string.h>

#include "api/api.h"
#include "api/handlers.h"

static json_t *template_json(const struct template_status *st)
{
        json_t *o = json_object(), *pkgs = json_array();
        char buf[512];

        if (!o || !pkgs) {
                json_decref(o);
                json_decref(pkgs);
                return NULL;
        }
        if (st->packages) {
                snprintf(buf, sizeof buf, "%s", st->packages);
                for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
                        json_array_append_new(pkgs, json_string(t));
        }
        json_object_set_new(o, "name", json_string(st->name));
        json_object_set_new(o, "state", json_string(template_state_to_string(st->state)));
        json_object_set_new(o, "description", json_string(st->description ? st->description : ""));
        json_object_set_new(o, "packages", pkgs);
        json_object_set_new(o, "sizeBytes",
                            st->state == TEMPLATE_AVAILABLE && st->size_bytes ? json_integer((json_int_t)st->size_bytes)
                                                                             : json_null());
        json_object_set_new(o, "builtAt", st->built_at[0] ? json_string(st->built_at) : json_null());
        json_object_set_new(o, "progress",
                            st->state == TEMPLATE_BUILDING
                                    ? json_pack("{s:i,s:s}", "percent", (int)st->percent, "stage", st->stage)
                                    : json_null());
        json_object_set_new(o, "error", st->state == TEMPLATE_FAILED ? json_string(st->error) : json_null());
        return o;
}

void v1_template_list(struct http_request *req)
{
        struct template_status st[SBX_MAX_TEMPLATES];
        size_t n = 0;
        json_t *arr = json_array();

        if (!arr || template_status_list(api_ctx(req)->templates, st, SBX_MAX_TEMPLATES, &n) < 0) {
                json_decref(arr);
                http_reply_errorf(req, -ENOMEM, NULL, "cannot list templates");
                return;
        }
        for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, template_json(&st[i]));
        http_reply_json(req, 200, json_pack("{s:o}", "templates", arr));
}

void v1_template_get(struct http_request *req)
{
        struct template_status st[SBX_MAX_TEMPLATES];
        struct sbx_err err = { 0 };
        struct template_info info;
        const char *name = http_request_param(req, 0);
        size_t n = 0;
        int r;

        /* resolves aliases and answers 404 (naming what exists) for unknown names */
        r = template_lookup(api_ctx(req)->templates, name, &info, &err);
        if (r == -SBX_E_NOT_FOUND) {
                http_reply_error(req, &err);
                return;
        }
        if (template_status_list(api_ctx(req)->templates, st, SBX_MAX_TEMPLATES, &n) < 0) {
                http_reply_errorf(req, -ENOMEM, NULL, "cannot list templates");
                return;
        }
        for (size_t i = 0; i < n; i++)
                if (template_canonical_name(name) && strcmp(st[i].name, template_canonical_name(name)) == 0) {
                        http_reply_json(req, 200, template_json(&st[i]));
                        return;
                }
        http_reply_errorf(req, -SBX_E_NOT_FOUND, "template_not_found", "unknown template '%.64s'", name);
}
