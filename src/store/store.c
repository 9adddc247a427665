/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backend-neutral half of the store: picking a backend from a store url, and the value
 * helpers for struct sandbox_record and enum sandbox_state. No SQL and no I/O here; each
 * backend (store-sqlite.c, later store-pg.c) owns its connection behind struct store_ops.
 */
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"

static const char *const sandbox_state_table[_SANDBOX_STATE_MAX] = {
        [SANDBOX_CREATING] = "creating", [SANDBOX_RUNNING] = "running",   [SANDBOX_STOPPING] = "stopping",
        [SANDBOX_STOPPED] = "stopped",   [SANDBOX_STARTING] = "starting", [SANDBOX_FAILED] = "failed",
        [SANDBOX_DELETED] = "deleted",   [SANDBOX_PAUSED] = "paused",     [SANDBOX_HIBERNATING] = "hibernating",
        [SANDBOX_HIBERNATED] = "hibernated", [SANDBOX_WAKING] = "waking",
};

const char *sandbox_state_to_string(enum sandbox_state s)
{
        if ((int)s < 0 || s >= _SANDBOX_STATE_MAX)
                return NULL;
        return sandbox_state_table[s];
}

enum sandbox_state sandbox_state_from_string(const char *s)
{
        if (!s)
                return _SANDBOX_STATE_INVALID;
        for (int i = 0; i < _SANDBOX_STATE_MAX; i++)
                if (strcmp(sandbox_state_table[i], s) == 0)
                        return (enum sandbox_state)i;
        return _SANDBOX_STATE_INVALID;
}

void sandbox_record_release(struct sandbox_record *r)
{
        if (!r)
                return;
        free(r->spec_json);
        free(r->metadata_json);
        memset(r, 0, sizeof *r);
}

void sandbox_record_array_free(struct sandbox_record *a, size_t n)
{
        if (!a)
                return;
        for (size_t i = 0; i < n; i++)
                sandbox_record_release(&a[i]);
        free(a);
}

int sandbox_record_copy(struct sandbox_record *dst, const struct sandbox_record *src)
{
        _cleanup_free_ char *spec = NULL, *meta = NULL;

        if (src->spec_json) {
                spec = strdup(src->spec_json);
                if (!spec)
                        return -ENOMEM;
        }
        if (src->metadata_json) {
                meta = strdup(src->metadata_json);
                if (!meta)
                        return -ENOMEM;
        }
        *dst = *src;
        dst->spec_json = TAKE_PTR(spec);
        dst->metadata_json = TAKE_PTR(meta);
        return 0;
}

/*
 * Length of the url's scheme ("sqlite" in "sqlite:/x"), or 0 if it has none. A scheme is
 * RFC 3986's ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) followed by ':'. A single letter is
 * not taken for a scheme, and a path that starts with '/' or '.' never has one.
 */
static size_t url_scheme_len(const char *url)
{
        size_t i;

        if (!((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z')))
                return 0;
        for (i = 1; url[i]; i++) {
                char c = url[i];

                if (c == ':')
                        return i >= 2 ? i : 0;
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' ||
                      c == '-' || c == '.'))
                        return 0;
        }
        return 0;
}

int store_open(struct store *s, const char *url, struct sbx_err *err)
{
        const struct store_ops *ops;
        size_t n;
        int r;

        if (!url || !url[0])
                return sbx_err_set(err, -SBX_E_INVALID, "empty store url");

        n = url_scheme_len(url);
        if (n == 0 || (n == strlen("sqlite") && strncasecmp(url, "sqlite", n) == 0))
                ops = &store_sqlite_ops;
        else
                /* Only the scheme is echoed: the rest of a url may hold a password. */
                return sbx_err_set(err, -SBX_E_INVALID, "unsupported store url scheme '%.*s'", (int)n, url);

        s->ops = ops;
        s->impl = NULL;
        r = ops->open(s, url, err);
        if (r < 0) {
                s->ops = NULL;
                s->impl = NULL;
                return r;
        }
        return 0;
}

void store_close(struct store *s)
{
        if (!s || !s->ops)
                return;
        s->ops->close(s);
        s->ops = NULL;
        s->impl = NULL;
}

void event_row_array_free(struct event_row *a, size_t n)
{
        for (size_t i = 0; a && i < n; i++)
                free(a[i].data_json);
        free(a);
}

void snapshot_row_array_free(struct snapshot_row *a, size_t n)
{
        for (size_t i = 0; a && i < n; i++)
                free(a[i].data_json);
        free(a);
}
