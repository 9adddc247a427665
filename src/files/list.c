// SPDX-License-Identifier: Apache-2.0
/*
 * Listing (files.h: files_list): one directory or a whole tree, a page at a time, sorted by path.
 * A plain listing reads the directory's names into one block, sorts them once (radix) and keeps
 * them a few seconds in a small process-wide cache keyed by the root and the directory's identity
 * and change times, so the next pages skip the read; a recursive one keeps a bounded heap of the
 * page's smallest paths. Only the page's entries are stat'ed, always anew. Walks are fd-based
 * (files-internal.h): no symlink is followed, no mount crossed. No logging.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/util.h"
#include "files-internal.h"
#include "files.h"

/* ---------- list ---------- */

struct list_item {
        char *key;       /* the path relative to the listed directory as shown (UTF-8) */
        const char *raw; /* the same on disk (== key unless a name is not valid UTF-8) */
};

/*
 * A plain listing's names: all of the directory's, in one block (no allocation per name), sorted
 * once by their shown form. Kept a few seconds for the next pages (the cache below): a client
 * paging through a directory of 100,000 entries would otherwise read and sort it once per page.
 */
struct list_name {
        uint32_t key, raw;   /* offsets in list_names.buf of NUL-terminated text */
        uint16_t klen, rlen; /* NAME_MAX bytes, 3 * NAME_MAX once sanitised */
};

struct list_names {
        unsigned refs; /* list_cache.lock guards it */
        size_t n, cap;
        struct list_name *v;
        char *buf;
        size_t used, size;
};

#define LIST_NAMES_MAX_BYTES ((size_t)16 << 20)  /* one directory's names in memory, and the whole cache */
#define LIST_CACHE_SLOTS 4                       /* directories kept */
#define LIST_CACHE_TTL_USEC (5 * 1000000ULL)     /* how long: a client's next pages come sooner */
#define LIST_CACHE_SETTLE_NSEC (100 * 1000000LL) /* see list_cache_key */

/*
 * A listing's page: the smallest limit + 1 keys after the cursor. A plain listing takes them from
 * its sorted names. A recursive one (and a plain one with more than LIST_NAMES_MAX_BYTES of names)
 * keeps only the page, in a max-heap, so a tree of a million entries costs its names once and
 * never a sort of all of them; subtrees that lie wholly before the cursor or after the heap's
 * largest key are not entered.
 */
struct lister {
        struct files__walk w; /* w.path: the listed directory */
        bool recursive;
        unsigned max_depth; /* recursive: levels listed, 0 = all */
        const char *cursor;     /* relative to the listed directory; NULL: from the start */
        size_t max_rel;         /* longest relative path that makes a path the API accepts */
        struct list_item *heap; /* keys owned (one block each) */
        size_t n, cap;
        struct list_names *names; /* a plain listing's names, a reference; NULL: the heap */
        struct list_item *page;   /* the page in order (at most limit + 1): the heap, or into names */
        size_t n_page;
        size_t klen, rlen;
        char key[SBX_MAX_FILE_PATH + 3 * NAME_MAX + 2];
        char raw[SBX_MAX_FILE_PATH + NAME_MAX + 2];
        char target[SBX_MAX_FILE_PATH + 1];
};

static void list_item_swap(struct list_item *a, struct list_item *b)
{
        struct list_item t = *a;

        *a = *b;
        *b = t;
}

static void heap_up(struct list_item *h, size_t i)
{
        while (i > 0) {
                size_t p = (i - 1) / 2;

                if (strcmp(h[p].key, h[i].key) >= 0)
                        break;
                list_item_swap(&h[p], &h[i]);
                i = p;
        }
}

static void heap_down(struct list_item *h, size_t n, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, m = i;

                if (l < n && strcmp(h[l].key, h[m].key) > 0)
                        m = l;
                if (l + 1 < n && strcmp(h[l + 1].key, h[m].key) > 0)
                        m = l + 1;
                if (m == i)
                        return;
                list_item_swap(&h[m], &h[i]);
                i = m;
        }
}

static int list_item_cmp(const void *a, const void *b)
{
        return strcmp(((const struct list_item *)a)->key, ((const struct list_item *)b)->key);
}

/* Append name to key and raw. False (nothing appended) when the path would be too long. */
static bool list_append(struct lister *l, const char *name)
{
        size_t n = strlen(name), sep = l->rlen > 0;

        if (l->rlen + sep + n > l->max_rel)
                return false;
        if (sep) {
                l->raw[l->rlen] = '/';
                l->key[l->klen] = '/';
        }
        memcpy(l->raw + l->rlen + sep, name, n + 1);
        if (utf8_valid(name, n)) {
                memcpy(l->key + l->klen + sep, name, n + 1);
        } else {
                size_t k = utf8_sanitize(name, n, l->key + l->klen + sep);

                if (l->klen + sep + k > l->max_rel) {
                        l->raw[l->rlen] = '\0';
                        l->key[l->klen] = '\0';
                        return false;
                }
                l->key[l->klen + sep + k] = '\0';
                n = k;
        }
        l->rlen += sep + strlen(name);
        l->klen += sep + n;
        return true;
}

static void list_cut(struct lister *l, size_t klen, size_t rlen)
{
        l->klen = klen;
        l->rlen = rlen;
        l->key[klen] = '\0';
        l->raw[rlen] = '\0';
}

/* Offer the entry in key/raw to the page. */
static int list_offer(struct lister *l)
{
        struct list_item it;
        bool same;

        if (l->cursor && strcmp(l->key, l->cursor) <= 0)
                return 0;
        if (l->n == l->cap && strcmp(l->key, l->heap[0].key) >= 0)
                return 0;
        same = l->klen == l->rlen && memcmp(l->key, l->raw, l->rlen) == 0;
        it.key = malloc(l->klen + 1 + (same ? 0 : l->rlen + 1));
        if (!it.key)
                return -ENOMEM;
        memcpy(it.key, l->key, l->klen + 1);
        it.raw = it.key;
        if (!same)
                it.raw = memcpy(it.key + l->klen + 1, l->raw, l->rlen + 1);
        if (l->n == l->cap) {
                free(l->heap[0].key);
                l->heap[0] = it;
                heap_down(l->heap, l->n, 0);
        } else {
                l->heap[l->n] = it;
                heap_up(l->heap, l->n++);
        }
        return 0;
}

/* Whether the subtree of the directory in key can hold an entry of the page. */
static bool list_subtree_wanted(struct lister *l)
{
        bool want = true;

        /* every key below is key + "/" + ...: compare with that prefix */
        l->key[l->klen] = '/';
        l->key[l->klen + 1] = '\0';
        if (l->cursor && strncmp(l->cursor, l->key, l->klen + 1) != 0 && strcmp(l->key, l->cursor) < 0)
                want = false; /* all before the cursor */
        else if (l->n == l->cap && strcmp(l->key, l->heap[0].key) > 0)
                want = false; /* all after the page */
        l->key[l->klen] = '\0';
        return want;
}

static int list_dir(struct lister *l, int fd, struct sbx_err *err);

static int list_enter(struct lister *l, int parentfd, const char *name, struct sbx_err *err)
{
        int fd = -EBADF, q;

        q = files__walk_enter(&l->w, parentfd, name, &fd, err);
        if (q != WALK_ENTERED)
                return q < 0 ? q : 0;
        l->w.depth++;
        q = list_dir(l, fd, err);
        l->w.depth--;
        return q;
}

/* Read the directory fd (owned) into the page, and its subdirectories when recursive. */
static int list_dir(struct lister *l, int fd, struct sbx_err *err)
{
        _cleanup_(files__closedirp) DIR *d = NULL;
        struct dirent *de;
        int q;

        d = fdopendir(fd);
        if (!d) {
                q = errno;
                safe_close(fd);
                return files_errno(err, q, l->w.path.s);
        }
        while ((de = files__next_entry(d))) {
                size_t klen = l->klen, rlen = l->rlen;

                q = files__walk_count(&l->w, err);
                if (q < 0)
                        return q;
                if (!list_append(l, de->d_name))
                        continue; /* a path the API cannot name: not listed, not entered */
                q = list_offer(l);
                if (q < 0)
                        return sbx_err_set(err, q, "out of memory");
                if (l->recursive && (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) &&
                    (l->max_depth == 0 || l->w.depth + 1 < l->max_depth) && list_subtree_wanted(l))
                        q = list_enter(l, dirfd(d), de->d_name, err);
                list_cut(l, klen, rlen);
                if (q < 0)
                        return q;
        }
        if (errno != 0)
                return files_errno(err, errno, l->w.path.s);
        return 0;
}

/* ---------- list: a plain directory's names, and their cache ---------- */

static size_t list_names_bytes(const struct list_names *ns)
{
        return sizeof *ns + ns->size + ns->cap * sizeof *ns->v;
}

static void list_names_free(struct list_names *ns)
{
        if (!ns)
                return;
        free(ns->v);
        free(ns->buf);
        free(ns);
}

/* Grow *p (n elements of size bytes, *cap allocated) to hold need; -E2BIG past the budget of ns. */
static int list_names_grow(struct list_names *ns, void **p, size_t *cap, size_t size, size_t need, size_t first)
{
        size_t c = *cap ? *cap : first, others = list_names_bytes(ns) - *cap * size;
        void *q;

        if (others >= LIST_NAMES_MAX_BYTES)
                return -E2BIG;
        while (c < need)
                c *= 2;
        if (c > (LIST_NAMES_MAX_BYTES - others) / size) {
                c = (LIST_NAMES_MAX_BYTES - others) / size; /* the last step: up to the budget */
                if (c < need)
                        return -E2BIG;
        }
        q = realloc(*p, c * size);
        if (!q)
                return -ENOMEM;
        *p = q;
        *cap = c;
        return 0;
}

/* Append a name read from the directory. -E2BIG: the names would pass LIST_NAMES_MAX_BYTES. */
static int list_names_add(struct list_names *ns, const char *name)
{
        size_t n = strlen(name), k = n;
        bool valid = utf8_valid(name, n);
        struct list_name *it;
        int q;

        if (ns->n == ns->cap) {
                q = list_names_grow(ns, (void **)&ns->v, &ns->cap, sizeof *ns->v, ns->n + 1, 1024);
                if (q < 0)
                        return q;
        }
        if (ns->size - ns->used < n + 1 + (valid ? 0 : 3 * n + 1)) {
                q = list_names_grow(ns, (void **)&ns->buf, &ns->size, 1, ns->used + n + 1 + (valid ? 0 : 3 * n + 1),
                                    64 * 1024);
                if (q < 0)
                        return q;
        }
        it = &ns->v[ns->n];
        it->raw = (uint32_t)ns->used;
        memcpy(ns->buf + ns->used, name, n + 1);
        ns->used += n + 1;
        it->key = it->raw;
        if (!valid) {
                it->key = (uint32_t)ns->used;
                k = utf8_sanitize(name, n, ns->buf + ns->used);
                ns->buf[ns->used + k] = '\0';
                ns->used += k + 1;
        }
        it->klen = (uint16_t)k;
        it->rlen = (uint16_t)n;
        ns->n++;
        return 0;
}

static int list_name_cmp(const void *a, const void *b, void *buf)
{
        return strcmp((const char *)buf + ((const struct list_name *)a)->key,
                      (const char *)buf + ((const struct list_name *)b)->key);
}

struct list_sort {
        uint64_t head; /* 8 bytes of the key past the prefix all keys share, big-endian, NUL-padded */
        uint32_t i;    /* in list_names.v */
};

static int list_sort_cmp(const void *pa, const void *pb, void *arg)
{
        const struct list_sort *a = pa, *b = pb;
        const struct list_names *ns = arg;

        if (a->head != b->head)
                return a->head < b->head ? -1 : 1;
        return strcmp(ns->buf + ns->v[a->i].key, ns->buf + ns->v[b->i].key);
}

/*
 * Sort the names by key (strcmp order): a radix sort on 8 bytes of each key past the prefix they
 * all share, then strcmp among the keys alike in those. glibc's qsort with a strcmp callback took
 * 20 ms for 100,000 names, about as long as reading them; this takes a few.
 */
static void list_names_sort(struct list_names *ns)
{
        _cleanup_free_ struct list_sort *tmp = NULL;
        struct list_sort *a, *b;
        struct list_name *v;
        uint32_t count[8][256] = {};
        size_t n = ns->n, lcp;

        if (n < 2)
                return;
        tmp = malloc(2 * n * sizeof *tmp);
        v = malloc(n * sizeof *v);
        if (!tmp || !v) {
                free(v);
                qsort_r(ns->v, n, sizeof *ns->v, list_name_cmp, ns->buf);
                return;
        }
        lcp = ns->v[0].klen;
        for (size_t i = 1; i < n && lcp > 0; i++) {
                const char *k0 = ns->buf + ns->v[0].key, *k = ns->buf + ns->v[i].key;
                size_t j = 0;

                while (j < lcp && k[j] == k0[j])
                        j++;
                lcp = j;
        }
        a = tmp;
        b = tmp + n;
        for (size_t i = 0; i < n; i++) {
                const unsigned char *k = (const unsigned char *)ns->buf + ns->v[i].key;
                uint64_t h = 0;

                for (size_t j = lcp; j < lcp + 8; j++)
                        h = h << 8 | (j < ns->v[i].klen ? k[j] : 0);
                a[i] = (struct list_sort){ .head = h, .i = (uint32_t)i };
                for (unsigned p = 0; p < 8; p++)
                        count[p][h >> (8 * p) & 0xff]++;
        }
        /* least significant byte first; a byte all heads share moves nothing */
        for (unsigned p = 0; p < 8; p++) {
                struct list_sort *t;
                size_t at = 0;

                if (count[p][a[0].head >> (8 * p) & 0xff] == n)
                        continue;
                for (size_t c = 0; c < 256; c++) {
                        size_t k = count[p][c];

                        count[p][c] = (uint32_t)at;
                        at += k;
                }
                for (size_t i = 0; i < n; i++)
                        b[count[p][a[i].head >> (8 * p) & 0xff]++] = a[i];
                t = a;
                a = b;
                b = t;
        }
        for (size_t i = 0, j; i < n; i = j) {
                for (j = i + 1; j < n && a[j].head == a[i].head; j++)
                        ;
                if (j - i > 1)
                        qsort_r(a + i, j - i, sizeof *a, list_sort_cmp, ns);
        }
        for (size_t i = 0; i < n; i++)
                v[i] = ns->v[a[i].i];
        free(ns->v);
        ns->v = v;
        ns->cap = n;
}

/* All names read: give back what the growth left over, sort. */
static void list_names_done(struct list_names *ns)
{
        void *p;

        if (ns->used < ns->size && (p = realloc(ns->buf, ns->used ? ns->used : 1))) {
                ns->buf = p;
                ns->size = ns->used ? ns->used : 1;
        }
        list_names_sort(ns);
}

/*
 * What a directory's names are kept under: the directory (device, inode, birth, change and
 * modification times) and the root it was reached from (two sandboxes never share an entry, even
 * for a directory both see, like the host template's).
 */
struct list_cache_key {
        dev_t root_dev, dev;
        ino_t root_ino, ino;
        struct statx_timestamp btime, mtime, ctime;
};

struct list_cache_slot {
        struct list_cache_key key;
        uint64_t born;            /* now_usec() when read */
        struct list_names *names; /* a reference; NULL: a free slot */
};

/* Process-wide: the worker threads share it. */
static struct {
        pthread_mutex_t lock;
        struct list_cache_slot slot[LIST_CACHE_SLOTS];
        size_t bytes; /* list_names_bytes of what the slots hold */
        uint64_t hits, misses;
} list_cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool ts_eq(const struct statx_timestamp *a, const struct statx_timestamp *b)
{
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool list_cache_key_eq(const struct list_cache_key *a, const struct list_cache_key *b)
{
        return a->root_dev == b->root_dev && a->root_ino == b->root_ino && a->dev == b->dev && a->ino == b->ino &&
               ts_eq(&a->btime, &b->btime) && ts_eq(&a->mtime, &b->mtime) && ts_eq(&a->ctime, &b->ctime);
}

static void list_names_unref(struct list_names *ns)
{
        bool last;

        if (!ns)
                return;
        (void)pthread_mutex_lock(&list_cache.lock);
        last = --ns->refs == 0;
        (void)pthread_mutex_unlock(&list_cache.lock);
        if (last)
                list_names_free(ns);
}

/* Empty slot i. Under the lock. */
static void list_cache_drop(size_t i)
{
        struct list_names *ns = list_cache.slot[i].names;

        list_cache.slot[i].names = NULL;
        list_cache.bytes -= list_names_bytes(ns);
        if (--ns->refs == 0)
                list_names_free(ns);
}

/* Drop what is older than the TTL. Under the lock. */
static void list_cache_expire(uint64_t now)
{
        for (size_t i = 0; i < LIST_CACHE_SLOTS; i++)
                if (list_cache.slot[i].names && now - list_cache.slot[i].born >= LIST_CACHE_TTL_USEC)
                        list_cache_drop(i);
}

/* The names kept under key (a new reference), or NULL. */
static struct list_names *list_cache_get(const struct list_cache_key *key)
{
        struct list_names *ns = NULL;

        (void)pthread_mutex_lock(&list_cache.lock);
        list_cache_expire(now_usec());
        for (size_t i = 0; i < LIST_CACHE_SLOTS && !ns; i++)
                if (list_cache.slot[i].names && list_cache_key_eq(&list_cache.slot[i].key, key)) {
                        ns = list_cache.slot[i].names;
                        ns->refs++;
                }
        if (ns)
                list_cache.hits++;
        else
                list_cache.misses++;
        (void)pthread_mutex_unlock(&list_cache.lock);
        return ns;
}

/* Keep ns (takes another reference) under key; the oldest entries make room. */
static void list_cache_put(const struct list_cache_key *key, struct list_names *ns)
{
        size_t bytes = list_names_bytes(ns), free_slot = SIZE_MAX;
        uint64_t now = now_usec();

        if (bytes > LIST_NAMES_MAX_BYTES)
                return;
        (void)pthread_mutex_lock(&list_cache.lock);
        list_cache_expire(now);
        for (size_t i = 0; i < LIST_CACHE_SLOTS; i++)
                if (list_cache.slot[i].names && list_cache_key_eq(&list_cache.slot[i].key, key))
                        list_cache_drop(i); /* read twice at once: the newer stays */
        for (;;) {
                size_t oldest = SIZE_MAX;

                free_slot = SIZE_MAX;
                for (size_t i = 0; i < LIST_CACHE_SLOTS; i++) {
                        if (!list_cache.slot[i].names)
                                free_slot = i;
                        else if (oldest == SIZE_MAX || list_cache.slot[i].born < list_cache.slot[oldest].born)
                                oldest = i;
                }
                if (free_slot != SIZE_MAX && list_cache.bytes + bytes <= LIST_NAMES_MAX_BYTES)
                        break;
                list_cache_drop(oldest); /* something is there: else the first test held */
        }
        list_cache.slot[free_slot] = (struct list_cache_slot){ .key = *key, .born = now, .names = ns };
        list_cache.bytes += bytes;
        ns->refs++;
        (void)pthread_mutex_unlock(&list_cache.lock);
}

void files__list_cache_stats(uint64_t *ret_hits, uint64_t *ret_misses)
{
        (void)pthread_mutex_lock(&list_cache.lock);
        *ret_hits = list_cache.hits;
        *ret_misses = list_cache.misses;
        (void)pthread_mutex_unlock(&list_cache.lock);
}

/*
 * The cache key of the directory fd reached from r. *ret_keep: whether names read now may be kept.
 * Any change to a directory's entries sets its ctime to the current (coarse, one clock tick) time,
 * so a change made after this call gives a ctime other than the key's, unless the key's ctime is
 * that recent itself: two changes in one tick share a ctime, and names read between them must not
 * be kept. Hence a directory changed in the last LIST_CACHE_SETTLE_NSEC is read but not kept.
 * (A real-time clock stepped back could make a later change repeat an old ctime exactly: the TTL
 * bounds what that could show.)
 */
static int list_cache_key(const struct files_root *r, int fd, struct list_cache_key *ret, bool *ret_keep)
{
        struct timespec now;
        struct statx sx;
        struct stat rst;
        int64_t c;

        if (clock_gettime(CLOCK_REALTIME, &now) < 0 || fstat(r->fd, &rst) < 0)
                return -errno;
        if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_BTIME, &sx) < 0)
                return -errno;
        *ret = (struct list_cache_key){
                .root_dev = rst.st_dev,
                .root_ino = rst.st_ino,
                .dev = makedev(sx.stx_dev_major, sx.stx_dev_minor),
                .ino = sx.stx_ino,
                .mtime = sx.stx_mtime,
                .ctime = sx.stx_ctime,
        };
        if (sx.stx_mask & STATX_BTIME)
                ret->btime = sx.stx_btime;
        c = (int64_t)sx.stx_ctime.tv_sec * 1000000000 + sx.stx_ctime.tv_nsec;
        *ret_keep =
                (sx.stx_mask & (STATX_CTIME | STATX_MTIME | STATX_INO)) == (STATX_CTIME | STATX_MTIME | STATX_INO) &&
                c <= (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - LIST_CACHE_SETTLE_NSEC;
        return 0;
}

/* Offer one name of the listed directory itself to the heap. */
static int list_offer_name(struct lister *l, const char *name)
{
        int q;

        if (!list_append(l, name))
                return 0; /* a path the API cannot name: not listed */
        q = list_offer(l);
        list_cut(l, 0, 0);
        return q;
}

/* The names outgrew LIST_NAMES_MAX_BYTES: the heap takes over, starting with what was read. */
static int list_names_to_heap(struct lister *l)
{
        struct list_names *ns = TAKE_PTR(l->names);
        int q = 0;

        for (size_t i = 0; i < ns->n && q >= 0; i++)
                q = list_offer_name(l, ns->buf + ns->v[i].raw);
        list_names_unref(ns);
        return q;
}

/* Read the directory fd (owned) into l->names, sorted; or, when they do not fit, into the heap
 * (l->names NULL). */
static int list_read_plain(struct lister *l, int fd, struct sbx_err *err)
{
        _cleanup_(files__closedirp) DIR *d = NULL;
        struct dirent *de;
        int q;

        d = fdopendir(fd);
        if (!d) {
                q = errno;
                safe_close(fd);
                return files_errno(err, q, l->w.path.s);
        }
        l->names = calloc(1, sizeof *l->names);
        if (!l->names)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        l->names->refs = 1;
        while ((de = files__next_entry(d))) {
                q = files__walk_count(&l->w, err);
                if (q < 0)
                        return q;
                if (l->names) {
                        q = list_names_add(l->names, de->d_name);
                        if (q == 0)
                                continue;
                        if (q == -E2BIG)
                                q = list_names_to_heap(l);
                        if (q < 0)
                                return sbx_err_set(err, q, "out of memory");
                }
                q = list_offer_name(l, de->d_name);
                if (q < 0)
                        return sbx_err_set(err, q, "out of memory");
        }
        if (errno != 0)
                return files_errno(err, errno, l->w.path.s);
        if (l->names)
                list_names_done(l->names);
        return 0;
}

/* The page of a plain listing of the directory fd: from the cache, else from one read. */
static int list_plain(struct lister *l, const struct files_root *r, int fd, size_t limit, struct sbx_err *err)
{
        const struct list_names *ns;
        struct list_cache_key key;
        size_t lo = 0, hi;
        bool keep = false;
        int q;

        q = list_cache_key(r, fd, &key, &keep);
        if (q < 0)
                return files_errno(err, -q, l->w.path.s);
        l->names = list_cache_get(&key);
        if (!l->names) {
                /* a second open file: the read moves its offset, fd stays for the stats of the page */
                int rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

                if (rfd < 0)
                        return files_errno(err, errno, l->w.path.s);
                q = list_read_plain(l, rfd, err);
                if (q < 0)
                        return q;
                if (!l->names)
                        return 0; /* the heap has the page */
        } else {
                keep = false; /* it is there */
        }
        ns = l->names;
        /* the first name after the cursor */
        hi = ns->n;
        while (l->cursor && lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(ns->buf + ns->v[mid].key, l->cursor) <= 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        l->page = calloc(limit + 1, sizeof *l->page);
        if (!l->page)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        for (size_t i = lo; i < ns->n && l->n_page <= limit; i++) {
                const struct list_name *nm = &ns->v[i];

                if (nm->rlen > l->max_rel || nm->klen > l->max_rel)
                        continue; /* a path the API cannot name: not listed */
                l->page[l->n_page++] = (struct list_item){ .key = ns->buf + nm->key, .raw = ns->buf + nm->raw };
        }
        /* only a listing with more pages to come is kept: reading a smaller one costs little, and
         * it would push a larger one out */
        if (keep && l->n_page > limit)
                list_cache_put(&key, l->names);
        return 0;
}

/* openat2 beneath top without following anything: re-finds a directory the walk went through. */
static int open_beneath(int top, const char *rel)
{
        struct open_how how = {
                .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
        };

        for (int i = 0; i < 32; i++) {
                int fd = (int)syscall(SYS_openat2, top, rel, &how, sizeof how);
                if (fd >= 0)
                        return fd;
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
        }
        return -EAGAIN;
}

/* Stat the page: only now, and only its entries. Entries gone meanwhile are left out. */
static int list_page(struct lister *l, const struct files_root *r, int top, const char *pre, size_t limit,
                     json_t *entries, struct sbx_err *err)
{
        struct files__mtime_memo memo = { .sec = -1 };
        _cleanup_close_ int pfd = -EBADF;
        char path[SBX_MAX_FILE_PATH + 1];
        size_t plen = strlen(pre);
        bool have_parent = false, utf8;

        /* keys are valid UTF-8: so is pre + key when pre is */
        utf8 = utf8_valid(pre, plen);
        memcpy(path, pre, plen);
        for (size_t i = 0; i < l->n_page && i < limit; i++) {
                const struct list_item *it = &l->page[i];
                const char *slash = strrchr(it->raw, '/'), *name = slash ? slash + 1 : it->raw, *shown;
                size_t klen = strlen(it->key);
                int dfd = top;
                ssize_t tn = 0;
                struct stat st;
                json_t *e;

                if (plen + klen >= sizeof path)
                        continue; /* cannot happen: keys are at most max_rel long */
                if (slash) {
                        /* the parent (in raw) is cached in key: consecutive entries share it */
                        size_t dlen = (size_t)(slash - it->raw);

                        if (!have_parent || strlen(l->key) != dlen || memcmp(l->key, it->raw, dlen) != 0) {
                                pfd = safe_close(pfd);
                                memcpy(l->key, it->raw, dlen);
                                l->key[dlen] = '\0';
                                have_parent = true;
                                pfd = open_beneath(top, l->key);
                        }
                        if (pfd < 0)
                                continue;
                        dfd = pfd;
                }
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT || errno == ENOTDIR)
                                continue;
                        return files_errno(err, errno, l->w.path.s);
                }
                if (S_ISLNK(st.st_mode)) {
                        tn = readlinkat(dfd, name, l->target, sizeof l->target);
                        if (tn < 0 || (size_t)tn == sizeof l->target)
                                tn = 0; /* changed meanwhile, or longer than any path: shown empty */
                }
                memcpy(path + plen, it->key, klen + 1);
                shown = strrchr(path + plen, '/');
                shown = shown ? shown + 1 : path + plen;
                e = files__entry_json(r, path, plen + klen, shown, (size_t)(path + plen + klen - shown), utf8, &st,
                               S_ISLNK(st.st_mode) ? l->target : NULL, (size_t)tn, &memo);
                if (json_array_append_new(entries, e) < 0)
                        return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        return 0;
}

static void lister_free(struct lister *l)
{
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->heap[i].key);
        if (l->page != l->heap)
                free(l->page);
        free(l->heap);
        list_names_unref(l->names);
        free(l);
}
DEFINE_FREEP(struct lister, lister_free)

int files_list(const struct files_root *r, const char *path, const struct files_list_opts *o, json_t **ret,
               struct sbx_err *err)
{
        size_t limit = o && o->limit ? o->limit : SBX_DEFAULT_FS_LIST_LIMIT;
        char norm[SBX_MAX_FILE_PATH + 2], pre[SBX_MAX_FILE_PATH + 3], cur[SBX_MAX_FILE_PATH + 2];
        _cleanup_(lister_freep) struct lister *l = NULL;
        _cleanup_close_ int fd = -EBADF, rfd = -EBADF;
        bool nothing = false;
        json_t *entries, *res;
        size_t plen;
        struct stat st;
        int q;

        if (limit > SBX_MAX_FS_LIST_LIMIT)
                return sbx_err_setr(err, -SBX_E_INVALID, "invalid_value", "'limit' must be between 1 and %d",
                                    SBX_MAX_FS_LIST_LIMIT);
        if (files_path_normalize(path, norm, sizeof norm) < 0)
                return files_errno(err, ENAMETOOLONG, path);
        snprintf(pre, sizeof pre, "%s%s", norm, strcmp(norm, "/") == 0 ? "" : "/");
        plen = strlen(pre);
        l = calloc(1, sizeof *l);
        if (!l)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (o && o->cursor) {
                q = files_path_check(o->cursor, strlen(o->cursor), "cursor", err);
                if (q < 0)
                        return q;
                if (files_path_normalize(o->cursor, cur, sizeof cur) < 0)
                        return files_errno(err, ENAMETOOLONG, "cursor");
                /* entries are pre + key: a cursor outside pre lies before or after all of them */
                if (strncmp(cur, pre, plen) == 0)
                        l->cursor = cur + plen;
                else if (strcmp(cur, pre) > 0)
                        nothing = true;
        }
        q = files_open(r, path, O_RDONLY | O_DIRECTORY, &fd, err);
        if (q < 0)
                return q;
        if (fstat(fd, &st) < 0)
                return files_errno(err, errno, path);
        l->recursive = o && o->recursive && o->max_depth != 1;
        l->max_depth = o ? o->max_depth : 0;
        l->w.dev = st.st_dev;
        files__pathbuf_init(&l->w.path, path);
        l->max_rel = plen < SBX_MAX_FILE_PATH ? SBX_MAX_FILE_PATH - plen : 0;
        l->cap = limit + 1; /* one more than the page tells whether anything follows */
        l->heap = calloc(l->cap, sizeof *l->heap);
        if (!l->heap)
                return sbx_err_set(err, -ENOMEM, "out of memory");
        if (!nothing && !l->recursive) {
                q = list_plain(l, r, fd, limit, err);
                if (q < 0)
                        return q;
        } else if (!nothing) {
                /* a second open file: the walk reads it, fd stays for the stats of the page */
                rfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (rfd < 0)
                        return files_errno(err, errno, path);
                q = list_dir(l, TAKE_FD(rfd), err);
                if (q < 0)
                        return q;
        }
        if (!l->page) {
                qsort(l->heap, l->n, sizeof *l->heap, list_item_cmp);
                l->page = l->heap;
                l->n_page = l->n;
        }

        entries = json_array();
        res = json_object();
        if (json_object_set_new(res, "entries", entries) < 0) {
                json_decref(res);
                return sbx_err_set(err, -ENOMEM, "out of memory");
        }
        q = list_page(l, r, fd, pre, limit, entries, err);
        if (q >= 0) {
                json_t *next = json_null();

                if (l->n_page > limit) {
                        char last[SBX_MAX_FILE_PATH + 1];

                        snprintf(last, sizeof last, "%s%s", pre, l->page[limit - 1].key);
                        next = json_string(last);
                }
                if (json_object_set_new(res, "nextCursor", next) < 0)
                        q = sbx_err_set(err, -ENOMEM, "out of memory");
        }
        if (q < 0) {
                json_decref(res);
                return q;
        }
        *ret = res;
        return 0;
}

