// SPDX-License-Identifier: Apache-2.0
/*
 * The native API's route table: routes.def (generated from api/schema/api.json) expanded into
 * struct route rows. Nothing else belongs here; the server gets the table through
 * http_server_config, so only the daemon pulls this file (and every handler) into its link.
 */
#include "api/handlers.h"
#include "api/router.h"
#include "common/cleanup.h"

const struct route api_routes[] = {
#define ROUTE(m, p, h, a, u, g) \
        { .method = HTTP_##m, .pattern = p, .handler = h, .auth = a, .name = #h, .upload = u, .resume = g },
#include "api/routes.def"
#undef ROUTE
};

const size_t api_routes_count = ELEMENTSOF(api_routes);
