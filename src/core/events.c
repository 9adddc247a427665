// SPDX-License-Identifier: Apache-2.0
/*
 * Lifecycle events (DESIGN §5, docs/lifecycle.md): every state change, timeout, OOM kill,
 * recovery, snapshot and quota refusal is appended to the store's event log and handed to the
 * live subscribers (the API's event streams) in the same call, on the loop thread. Replay is the
 * store's job (manager_events_list): a subscriber that fell behind reads the log again from its
 * last id, so nothing is buffered here and nothing is lost while the store keeps it.
 * Event ids are "evt_" + the log's row id: increasing, so "after this id" means something.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"
#include "manager-internal.h"

struct event_sub {
        struct manager *m;
        struct event_sub *next;
        char sandbox_id[SBX_ID_MAX];     /* "" = every event */
        manager_event_fn fn;
        void *data;
        bool dead;                       /* cancelled during a notification: freed after it */
};

bool event_id_parse(const char *s, uint64_t *ret)
{
        uint64_t n;

        if (!s)
                return false;
        if (strncmp(s, "evt_", 4) == 0)
                s += 4;
        if (!s[0] || strspn(s, "0123456789") != strlen(s) || parse_u64(s, &n) < 0 || n > INT64_MAX)
                return false;
        *ret = n;
        return true;
}

json_t *event_row_json(const struct event_row *e)
{
        char id[32];
        json_t *data = e->data_json ? json_loads(e->data_json, 0, NULL) : NULL;

        snprintf(id, sizeof id, "evt_%llu", (unsigned long long)e->id);
        return json_pack("{s:s,s:o,s:s,s:o,s:o}", "id", id, "sandboxId",
                         e->sandbox_id[0] ? json_string(e->sandbox_id) : json_null(), "type", e->type, "at",
                         json_time_ms(e->at_ms), "data", data ? data : json_object());
}

static void subs_sweep(struct manager *m)
{
        struct event_sub **pp = &m->event_subs;

        while (*pp) {
                struct event_sub *s = *pp;

                if (s->dead) {
                        *pp = s->next;
                        free(s);
                        m->n_event_subs--;
                } else
                        pp = &s->next;
        }
}

void manager__event(struct manager *m, const char *sandbox_id, const char *type, json_t *data)
{
        struct event_row e = { .at_ms = now_realtime_ms() };
        struct sbx_err err = { 0 };
        json_t *j;

        snprintf(e.sandbox_id, sizeof e.sandbox_id, "%s", sandbox_id ? sandbox_id : "");
        snprintf(e.type, sizeof e.type, "%s", type);
        e.data_json = data ? json_dump_compact(data) : NULL;
        json_decref(data);
        if (m->store->ops->event_append(m->store, &e, &err) < 0 || !m->event_subs) {
                /* an event the store refused is not shown live either: ids must match the log */
                free(e.data_json);
                return;
        }
        j = event_row_json(&e);
        free(e.data_json);
        if (!j)
                return;
        m->event_notifying++;
        for (struct event_sub *s = m->event_subs; s; s = s->next)
                if (!s->dead && (!s->sandbox_id[0] || strcmp(s->sandbox_id, e.sandbox_id) == 0))
                        s->fn(s->data, j, e.id);
        if (--m->event_notifying == 0)
                subs_sweep(m);
        json_decref(j);
}

void manager__event_state(struct sandbox *sb, enum sandbox_state from, const char *reason)
{
        char type[SBX_MAX_EVENT_TYPE];

        snprintf(type, sizeof type, "sandbox.%s", sandbox_state_to_string(sb->rec.state));
        manager__event(sb->m, sb->rec.id, type,
                       json_pack("{s:s,s:s,s:o}", "from", sandbox_state_to_string(from), "to",
                                 sandbox_state_to_string(sb->rec.state), "reason",
                                 reason && reason[0] ? json_string(reason) : json_null()));
}

int manager_events_list(struct manager *m, const struct event_query *q, json_t **ret, struct sbx_err *err)
{
        struct event_row *rows = NULL;
        size_t n = 0;
        bool more = false;
        json_t *arr;
        char cursor[32];
        int r;

        r = m->store->ops->event_list(m->store, q, &rows, &n, &more, err);
        if (r < 0)
                return r;
        arr = json_array();
        for (size_t i = 0; arr && i < n; i++)
                if (json_array_append_new(arr, event_row_json(&rows[i])) < 0) {
                        json_decref(arr);
                        arr = NULL;
                }
        if (n > 0)
                snprintf(cursor, sizeof cursor, "evt_%llu", (unsigned long long)rows[n - 1].id);
        event_row_array_free(rows, n);
        if (!arr)
                return -ENOMEM;
        *ret = json_pack("{s:o,s:o}", "events", arr, "nextCursor", more ? json_string(cursor) : json_null());
        return *ret ? 0 : -ENOMEM;
}

int manager_events_subscribe(struct manager *m, const char *sandbox_id, manager_event_fn fn, void *data,
                             struct event_sub **ret, struct sbx_err *err)
{
        struct event_sub *s;

        if (m->n_event_subs >= SBX_MAX_EVENT_SUBSCRIBERS)
                return sbx_err_setr(err, -SBX_E_LIMIT, "limit_exceeded", "at most %d event streams may be open",
                                    SBX_MAX_EVENT_SUBSCRIBERS);
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->m = m;
        s->fn = fn;
        s->data = data;
        snprintf(s->sandbox_id, sizeof s->sandbox_id, "%s", sandbox_id ? sandbox_id : "");
        s->next = m->event_subs;
        m->event_subs = s;
        m->n_event_subs++;
        *ret = s;
        return 0;
}

void event_sub_cancel(struct event_sub *s)
{
        if (!s)
                return;
        s->dead = true;
        if (s->m->event_notifying == 0)
                subs_sweep(s->m);
}

void manager__events_free(struct manager *m)
{
        for (struct event_sub *s = m->event_subs; s; s = s->next)
                s->dead = true;
        subs_sweep(m);
}
