// SPDX-License-Identifier: Apache-2.0
/*
 * Pools of sandboxes launched ahead of demand (DESIGN §8), one per template that has been asked
 * for, each topped up to manager->pool_size. manager_create() takes a ready one when the request
 * can use it and turns it into the requested sandbox (id, env, metadata, limits, timers) in well
 * under a millisecond. Pooled sandboxes have no store row: if sbxd dies, recovery sweeps them
 * like any other directory without a live record; a clean shutdown kills them (pool__drain).
 * Loop thread only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "manager-internal.h"

#define POOL_MAX_TEMPLATES 8
#define POOL_MAX_READY 16

struct pool {
        struct pool *next;
        struct manager *m;
        char template_name[SBX_MAX_TEMPLATE_NAME + 1];
        struct sandbox *ready[POOL_MAX_READY]; /* each holds a ref */
        unsigned n_ready;
        unsigned launching;
        unsigned failures;                      /* consecutive failed launches: stop refilling at 3 */
};

static struct pool *pool_find(struct manager *m, const char *template_name, bool create)
{
        unsigned n = 0;
        struct pool *p;

        for (p = m->pools; p; p = p->next, n++)
                if (strcmp(p->template_name, template_name) == 0)
                        return p;
        if (!create || n >= POOL_MAX_TEMPLATES)
                return NULL;
        p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        p->m = m;
        snprintf(p->template_name, sizeof p->template_name, "%s", template_name);
        p->next = m->pools;
        m->pools = p;
        return p;
}

/* Launch one sandbox for p. Returns 0 or -errno (nothing started then). */
static int pool_launch(struct pool *p)
{
        struct manager *m = p->m;
        struct sandbox_record rec = { 0 };
        struct sandbox_spec spec;
        struct template_info tmpl;
        struct sandbox *sb;
        struct op *op;
        int r;

        r = template_lookup(m->templates, p->template_name, &tmpl, NULL);
        if (r < 0)
                return r;
        r = sandbox_spec_parse(NULL, &spec, NULL); /* the defaults */
        if (r < 0)
                return r;
        snprintf(spec.template_name, sizeof spec.template_name, "%s", p->template_name);
        r = sbx_id_new("sbx_", rec.id, sizeof rec.id);
        if (r >= 0)
                r = manager__slot_alloc(m, &rec.uid_slot);
        if (r < 0) {
                sandbox_spec_release(&spec);
                return r;
        }
        snprintf(rec.template_name, sizeof rec.template_name, "%s", p->template_name);
        rec.state = SANDBOX_CREATING;
        rec.spec_json = manager__spec_text(&spec, (const char(*)[SBX_LAYER_DIGEST_MAX])tmpl.layers, tmpl.n_layers);
        rec.metadata_json = strdup("{}");
        sandbox_spec_release(&spec);
        r = rec.spec_json && rec.metadata_json ? sandbox__new(m, &rec, &sb, NULL) : -ENOMEM;
        manager__slot_set(m, rec.uid_slot, r >= 0); /* sandbox__new marked it; undo on failure */
        sandbox_record_release(&rec);
        if (r < 0)
                return r;
        sb->pooled = true;
        op = op_new(sb, OP_POOL, NULL, p);
        if (!op) {
                sandbox__remove(sb);
                return -ENOMEM;
        }
        op->tmpl = tmpl;
        r = uv_queue_work(m->loop, &op->work, manager__work_launch, manager__after_launch);
        if (r == 0)
                m->pending_launches++;
        if (r < 0) {
                sb->op = NULL;
                sandbox_unref(sb); /* op's ref */
                free(op);
                sandbox__remove(sb);
                return -EIO;
        }
        p->launching++;
        return 0;
}

void pool__refill(struct manager *m, const char *template_name)
{
        struct pool *p;

        if (m->pool_size == 0 || m->freeing)
                return;
        p = pool_find(m, template_name, true);
        if (!p)
                return;
        while (p->failures < 3 && p->n_ready + p->launching < m->pool_size && p->n_ready + p->launching < POOL_MAX_READY)
                if (pool_launch(p) < 0) {
                        p->failures++;
                        break;
                }
}

void pool__launched(struct sandbox *sb, int r, const struct sbx_err *err, uint64_t usec)
{
        struct pool *p = sb->op ? sb->op->data : NULL;
        struct manager *m = sb->m;

        if (!p)
                return;
        p->launching--;
        if (r < 0 || m->freeing || p->n_ready >= POOL_MAX_READY) {
                if (r < 0) {
                        p->failures++;
                        log_debug("pool %s: launch failed: %s", p->template_name, err ? err->msg : "?");
                } else {
                        sandbox__teardown_sync(sb);
                        storage__remove_dir(sb->m, sb->dir);
                }
                sandbox__remove(sb);
                return;
        }
        p->failures = 0;
        sb->rec.state = SANDBOX_RUNNING;
        p->ready[p->n_ready++] = sb; /* the ref sandbox__new() returned is now the pool's */
        log_debug("pool %s: ready %s in %.2f ms (%u ready)", p->template_name, sb->rec.id, usec / 1000.0,
                  p->n_ready);
}

/* Does sb run on exactly the layers of tmpl (the template may have been rebuilt since)? */
static bool same_layers(const struct sandbox *sb, const struct template_info *tmpl)
{
        if (sb->n_layers != tmpl->n_layers)
                return false;
        for (size_t i = 0; i < sb->n_layers; i++)
                if (strcmp(sb->layers[i], tmpl->layers[i]) != 0)
                        return false;
        return true;
}

struct sandbox *pool__take(struct manager *m, const char *template_name, const struct template_info *tmpl)
{
        struct pool *p = m->pool_size ? pool_find(m, template_name, false) : NULL;
        struct sandbox *sb = NULL;

        while (p && p->n_ready > 0 && !sb) {
                struct sandbox *c = p->ready[--p->n_ready];
                /* it may have died while it waited (pidfd fired), or its template changed: then drop it */
                if (c->rec.state == SANDBOX_RUNNING && c->ctl_fd >= 0 && !c->op && same_layers(c, tmpl)) {
                        sb = c;
                        break;
                }
                sandbox__teardown_sync(c);
                storage__remove_dir(m, c->dir);
                sandbox__remove(c);
        }
        pool__refill(m, template_name);
        return sb;
}

void pool__drain(struct manager *m)
{
        /* launches still in flight are torn down as they land (pool__launched sees m->freeing) */
        for (struct pool *p = m->pools; p; p = p->next)
                while (p->n_ready > 0) {
                        struct sandbox *sb = p->ready[--p->n_ready];
                        sandbox__teardown_sync(sb);
                        storage__remove_dir(sb->m, sb->dir);
                        sandbox__remove(sb);
                }
}

void pool__free_all(struct manager *m)
{
        while (m->pools) {
                struct pool *p = m->pools;
                m->pools = p->next;
                free(p);
        }
}
