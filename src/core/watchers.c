// SPDX-License-Identifier: Apache-2.0
/*
 * Watchers (manager.h, "watchers"): a recursive inotify watch (files/watch.c) on a running
 * sandbox's files, polled on the loop, its recent events kept in a bounded ring so a subscriber
 * (SSE or WebSocket in the API) can resume after a reconnect, and fanned out to every subscriber.
 * A watcher ends when it is deleted, when the sandbox leaves the running state or is deleted, or
 * when its directory goes away: subscribers get an "end" event and nothing after.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "core/manager-internal.h"
#include "files/files.h"

#define WATCH_RING 1024                 /* events kept for resuming subscribers */
#define WATCH_RING_BYTES (8 << 20)      /* ... and at most this much content among them */

struct watcher_sub {
        struct watcher *w;
        struct watcher_sub *next;
        watcher_event_fn fn;
        void *data;
};

struct watcher {
        struct watcher *next;
        struct sandbox *sb;             /* through the lease's ref */
        char id[SBX_ID_MAX];
        char path[SBX_MAX_FILE_PATH + 2];
        json_t *info;                   /* the watcher's JSON (without events) */
        struct files_lease *lease;
        struct files_watch *fw;
        enum files_watch_content content;
        uv_poll_t poll;
        bool poll_init;
        json_t *ring[WATCH_RING];       /* event with seq s is ring[s % WATCH_RING] */
        size_t ring_bytes;
        uint64_t seq;                   /* last event's seq */
        struct watcher_sub *subs;
        bool ended;
};

static struct watcher *watcher_find(struct sandbox *sb, const char *wid, struct sbx_err *err)
{
        for (struct watcher *w = sb->watchers; w; w = w->next)
                if (strcmp(w->id, wid) == 0)
                        return w;
        (void)sbx_err_setr(err, -SBX_E_NOT_FOUND, "watcher_not_found", "watcher '%.64s' not found in sandbox '%s'",
                           wid, sb->rec.id);
        return NULL;
}

static json_t *watcher_json(const struct watcher *w)
{
        json_t *o = json_deep_copy(w->info);

        if (o)
                json_object_set_new(o, "events", json_integer((json_int_t)w->seq));
        return o;
}

static void watcher_free(struct watcher *w)
{
        for (size_t i = 0; i < WATCH_RING; i++)
                json_decref(w->ring[i]);
        json_decref(w->info);
        free(w);
}

static void poll_closed(uv_handle_t *h)
{
        watcher_free(h->data);
}

/* Tell subscribers, drop the inotify watch and the lease; freed once the poll handle closed. */
static void watcher_end(struct watcher *w, const char *reason)
{
        struct sandbox *sb = w->sb;
        json_t *ev;

        if (w->ended)
                return;
        w->ended = true;
        for (struct watcher **pp = &sb->watchers; *pp; pp = &(*pp)->next)
                if (*pp == w) {
                        *pp = w->next;
                        sb->n_watchers--;
                        break;
                }
        ev = json_pack("{s:s,s:s}", "type", "end", "reason", reason);
        while (w->subs) {
                struct watcher_sub *s = w->subs;

                w->subs = s->next;
                s->fn(s->data, "end", ev, w->seq + 1);
                free(s);
        }
        json_decref(ev);
        files_watch_free(w->fw);
        w->fw = NULL;
        files_lease_release(w->lease);
        w->lease = NULL;
        if (w->poll_init) {
                w->poll.data = w;
                uv_close((uv_handle_t *)&w->poll, poll_closed);
        } else
                watcher_free(w);
}

void watchers__end_all(struct sandbox *sb, const char *reason)
{
        while (sb->watchers)
                watcher_end(sb->watchers, reason);
}

static void ring_push(struct watcher *w, json_t *ev, size_t bytes)
{
        json_t **slot;

        w->seq++;
        slot = &w->ring[w->seq % WATCH_RING];
        if (*slot) {
                json_t *c = json_object_get(*slot, "content") ?: json_object_get(*slot, "contentBase64");
                w->ring_bytes -= c ? json_string_length(c) : 0;
                json_decref(*slot);
        }
        *slot = ev;
        w->ring_bytes += bytes;
        /* too much content kept: drop it from the oldest events (they stay, without content) */
        for (uint64_t s = w->seq > WATCH_RING ? w->seq - WATCH_RING + 1 : 1; w->ring_bytes > WATCH_RING_BYTES && s < w->seq;
             s++) {
                json_t *old = w->ring[s % WATCH_RING];
                json_t *c = old ? (json_object_get(old, "content") ?: json_object_get(old, "contentBase64")) : NULL;

                if (!c)
                        continue;
                w->ring_bytes -= json_string_length(c);
                json_object_del(old, "content");
                json_object_del(old, "contentBase64");
                json_object_set_new(old, "contentDropped", json_true());
        }
}

static void on_event(void *data, const struct files_event *e)
{
        struct watcher *w = data;
        char now[40];
        size_t bytes = 0;
        json_t *ev;

        format_rfc3339_ms(now_realtime_ms(), now, sizeof now);
        ev = json_pack("{s:s,s:s,s:s}", "type", files_event_type_to_string(e->type), "path", e->path, "time", now);
        if (!ev)
                return;
        if (e->content && w->content != FILES_CONTENT_NONE) {
                if (w->content == FILES_CONTENT_TEXT && utf8_valid(e->content, e->len)) {
                        json_object_set_new(ev, "content", json_stringn(e->content, e->len));
                        bytes = e->len;
                } else {
                        char *b64 = malloc(base64_encoded_len(e->len) + 1);
                        if (b64) {
                                bytes = base64_encode(e->content, e->len, b64);
                                json_object_set_new(ev, "contentBase64", json_stringn(b64, bytes));
                                free(b64);
                        }
                }
                if (e->truncated)
                        json_object_set_new(ev, "truncated", json_true());
        }
        ring_push(w, ev, bytes);
        for (struct watcher_sub *s = w->subs, *next; s; s = next) {
                next = s->next; /* fn may cancel s */
                s->fn(s->data, json_string_value(json_object_get(ev, "type")), ev, w->seq);
        }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
        struct watcher *w = p->data;
        int r;

        if (w->ended)
                return;
        r = status < 0 ? -EIO : files_watch_read(w->fw, on_event, w);
        if (r == -ENOENT)
                watcher_end(w, "the watched directory was removed");
        else if (r < 0)
                watcher_end(w, r == -ENOSPC ? "the inotify watch limit was reached" : "the watch failed");
}

static const char *content_name(enum files_watch_content c)
{
        return c == FILES_CONTENT_TEXT ? "text" : c == FILES_CONTENT_BASE64 ? "base64" : "none";
}

int manager_watcher_create(struct manager *m, const char *id, const char *path, const struct files_watch_opts *o,
                           json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        _cleanup_free_ struct watcher *w = NULL;
        char norm[SBX_MAX_FILE_PATH + 2], created[40];
        json_t *ignore;
        int r;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        if (sb->rec.state != SANDBOX_RUNNING || sb->op)
                return sbx_err_setr(err, -SBX_E_CONFLICT, "sandbox_not_running",
                                    "sandbox '%s' is %s: watchers need a running sandbox", sb->rec.id,
                                    sandbox_state_to_string(sb->rec.state));
        if (sb->n_watchers >= SBX_MAX_WATCHERS)
                return sbx_err_setr(err, -SBX_E_LIMIT, "too_many_watchers", "sandbox '%s' already has %d watchers",
                                    sb->rec.id, SBX_MAX_WATCHERS);
        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        r = sbx_id_new("wch_", w->id, sizeof w->id);
        if (r < 0)
                return sbx_err_set(err, r, "cannot make a watcher id");
        snprintf(w->path, sizeof w->path, "%s", norm);
        w->content = o->content;
        r = manager_files_acquire(m, id, &w->lease, err);
        if (r < 0)
                return r;
        r = files_watch_new(files_lease_root(w->lease), norm, o, &w->fw, err);
        if (r < 0)
                goto fail;
        r = uv_poll_init(m->loop, &w->poll, files_watch_fd(w->fw));
        if (r < 0) {
                r = sbx_err_set(err, -EIO, "cannot poll the watch: %s", uv_strerror(r));
                goto fail;
        }
        w->poll_init = true;
        w->poll.data = w;
        ignore = json_array();
        for (size_t i = 0; ignore && i < o->n_ignore; i++)
                json_array_append_new(ignore, json_string(o->ignore[i]));
        format_rfc3339_ms(now_realtime_ms(), created, sizeof created);
        w->info = json_pack("{s:s,s:s,s:s,s:b,s:o,s:s,s:s}", "id", w->id, "sandboxId", sb->rec.id, "path", norm,
                            "recursive", o->recursive, "ignore", ignore ?: json_array(), "content",
                            content_name(o->content), "createdAt", created);
        if (!w->info || uv_poll_start(&w->poll, UV_READABLE, on_poll) < 0) {
                r = sbx_err_set(err, -ENOMEM, "cannot start the watcher");
                goto fail;
        }
        w->sb = sb;
        w->next = sb->watchers;
        sb->watchers = w;
        sb->n_watchers++;
        *ret = watcher_json(w);
        TAKE_PTR(w);
        return *ret ? 0 : -ENOMEM;
fail:
        files_watch_free(w->fw);
        w->fw = NULL;
        files_lease_release(w->lease);
        w->lease = NULL;
        if (w->poll_init) {
                struct watcher *x = TAKE_PTR(w);

                x->poll.data = x;
                uv_close((uv_handle_t *)&x->poll, poll_closed);
        } else
                json_decref(w->info);
        return r;
}

int manager_watcher_list(struct manager *m, const char *id, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        json_t *arr;

        if (!sb)
                return -SBX_E_NOT_FOUND;
        arr = json_array();
        for (struct watcher *w = sb->watchers; arr && w; w = w->next)
                json_array_append_new(arr, watcher_json(w));
        *ret = arr ? json_pack("{s:o}", "watchers", arr) : NULL;
        return *ret ? 0 : -ENOMEM;
}

int manager_watcher_get(struct manager *m, const char *id, const char *wid, json_t **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct watcher *w = sb ? watcher_find(sb, wid, err) : NULL;

        if (!w)
                return -SBX_E_NOT_FOUND;
        *ret = watcher_json(w);
        return *ret ? 0 : -ENOMEM;
}

int manager_watcher_delete(struct manager *m, const char *id, const char *wid, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct watcher *w = sb ? watcher_find(sb, wid, err) : NULL;

        if (!w)
                return -SBX_E_NOT_FOUND;
        watcher_end(w, "the watcher was deleted");
        return 0;
}

int manager_watcher_subscribe(struct manager *m, const char *id, const char *wid, uint64_t after,
                              watcher_event_fn fn, void *data, struct watcher_sub **ret, struct sbx_err *err)
{
        struct sandbox *sb = manager__lookup(m, id, err);
        struct watcher *w = sb ? watcher_find(sb, wid, err) : NULL;
        struct watcher_sub *s;
        uint64_t first;

        if (!w)
                return -SBX_E_NOT_FOUND;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        first = w->seq > WATCH_RING ? w->seq - WATCH_RING + 1 : 1;
        if (after + 1 < first) {
                json_t *t = json_pack("{s:s,s:I}", "type", "truncated", "firstAvailable", (json_int_t)first);
                fn(data, "truncated", t, after);
                json_decref(t);
        }
        for (uint64_t q = after + 1 > first ? after + 1 : first; q <= w->seq; q++) {
                json_t *ev = w->ring[q % WATCH_RING];
                if (ev)
                        fn(data, json_string_value(json_object_get(ev, "type")), ev, q);
        }
        s->w = w;
        s->fn = fn;
        s->data = data;
        s->next = w->subs;
        w->subs = s;
        *ret = s;
        return 0;
}

void watcher_sub_cancel(struct watcher_sub *s)
{
        struct watcher *w;

        if (!s)
                return;
        w = s->w;
        for (struct watcher_sub **pp = &w->subs; *pp; pp = &(*pp)->next)
                if (*pp == s) {
                        *pp = s->next;
                        break;
                }
        free(s);
}
