/* semcache: semantic cache partitions, HNSW per partition, Redis streams behind (semcache.h). */
#include "semcache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "hnsw.h"
#include "log.h"

#define PART_BUCKETS  4096
#define SYNC_COUNT    "32"      /* stream entries read per lookup at most (answers can be large) */
#define SWEEP_MS      1000
#define SWEEP_LIMIT   4096
#define EF_CONSTRUCTION 100
#define MAX_FIELD     (64u << 20)   /* one answer at most, without the exact cache's bound */

typedef struct part part;

typedef struct sem_ent {
    part           *p;
    uint32_t        id;            /* slot in p->idx */
    int64_t         expires_ms;    /* wall clock */
    size_t          size;          /* what it counts against max_bytes */
    struct sem_ent *older, *newer; /* every entry of the worker, oldest first */
    size_t          blob_len;
    char            blob[];
} sem_ent;

struct semcache_lookup {
    semcache_lookup *next;
    float           *v;
    uint32_t         dim;
    double           threshold;
    semcache_cb      cb;            /* NULL: cancelled */
    void            *ud;
};

struct part {
    uint8_t          key[32];
    part            *hnext;
    hnsw            *idx;
    uint32_t         dim;
    sem_ent        **ents;          /* by slot id */
    size_t           ents_cap;
    char             last_id[48];   /* stream position read so far */
    int              syncing;
    semcache_lookup *waiters, **wtail;
};

typedef struct sync_op {
    semcache       *s;             /* NULL once the cache is gone */
    uint8_t         key[32];
    struct sync_op *prev, *next;
} sync_op;

struct semcache {
    struct event_base *base;
    cache             *redis;
    size_t             max_entries, max_bytes, count, bytes;
    size_t             max_answer;   /* the exact cache's max_entry_kb: one answer at most this big */
    int                M, ef;
    uint64_t           writer;      /* tells this worker's own stream entries apart */
    part              *parts[PART_BUCKETS];
    sem_ent           *oldest, *newest;
    sync_op           *ops;
    struct event      *sweep;
};

static int64_t wall_ms(semcache *s)
{
    struct timeval now;
    if (event_base_gettimeofday_cached(s->base, &now) < 0) gettimeofday(&now, NULL);
    return (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
}

/* ---- partitions ---- */

static size_t bucket_of(const uint8_t key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return (size_t)(h % PART_BUCKETS);
}

static part *part_find(semcache *s, const uint8_t key[32], int create)
{
    size_t b = bucket_of(key);
    for (part *p = s->parts[b]; p; p = p->hnext)
        if (!memcmp(p->key, key, 32)) return p;
    if (!create) return NULL;
    part *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    memcpy(p->key, key, 32);
    strcpy(p->last_id, "0-0");
    p->wtail = &p->waiters;
    p->hnext = s->parts[b];
    s->parts[b] = p;
    return p;
}

static void ent_remove(semcache *s, sem_ent *e)
{
    part *p = e->p;
    hnsw_remove(p->idx, e->id);
    p->ents[e->id] = NULL;
    if (e->older) e->older->newer = e->newer; else s->oldest = e->newer;
    if (e->newer) e->newer->older = e->older; else s->newest = e->older;
    s->bytes -= e->size;
    s->count--;
    free(e);
}

static void part_clear(semcache *s, part *p)
{
    if (!p->idx) return;
    for (size_t i = 0; i < p->ents_cap; i++) if (p->ents[i]) ent_remove(s, p->ents[i]);
    hnsw_free(p->idx);
    p->idx = NULL;
    p->dim = 0;
}

static void part_free(semcache *s, part *p)
{
    part_clear(s, p);
    while (p->waiters) {
        semcache_lookup *l = p->waiters;
        p->waiters = l->next;
        free(l->v);
        free(l);
    }
    free(p->ents);
    free(p);
}

/* ---- the local tier ---- */

typedef struct accept_ctx { part *p; int64_t now; } accept_ctx;

static int unexpired(void *ud, uint32_t id)
{
    const accept_ctx *a = ud;
    return id < a->p->ents_cap && a->p->ents[id] && a->p->ents[id]->expires_ms > a->now;
}

static int search(semcache *s, part *p, const float *v, uint32_t dim, double threshold, cache_entry *e, double *sim)
{
    *sim = 0;
    if (!p->idx || p->dim != dim || hnsw_count(p->idx) == 0) return 0;
    accept_ctx a = { p, wall_ms(s) };
    uint32_t id;
    float best;
    if (hnsw_search(p->idx, v, 1, (size_t)s->ef, unexpired, &a, &id, &best) != 1) return 0;
    *sim = best > 1 ? 1 : best;
    if (best < threshold) return 0;
    int64_t exp;
    const sem_ent *x = p->ents[id];
    return cache_blob_read(x->blob, x->blob_len, e, &exp) == 0;
}

static void insert_local(semcache *s, part *p, const float *v, uint32_t dim, const char *blob, size_t n, int64_t exp)
{
    if (p->idx && p->dim != dim) part_clear(s, p);   /* the embedding model changed: old vectors mean nothing */
    /* the vector, its level-0 links and the entry itself count with the answer */
    size_t need = sizeof(sem_ent) + n + (size_t)dim * sizeof(float) + (size_t)(2 * s->M + 1) * sizeof(uint32_t);
    if (need > s->max_bytes || s->max_entries == 0) return;
    /* ent_remove moves s->oldest to the next entry before freeing this one */
    // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): the analyzer cannot see that s->oldest has no older entry
    while (s->oldest && (s->count >= s->max_entries || s->bytes + need > s->max_bytes)) ent_remove(s, s->oldest);
    if (!p->idx) {
        uint64_t seed;
        memcpy(&seed, p->key, sizeof seed);
        if (!(p->idx = hnsw_new(dim, (uint32_t)s->M, EF_CONSTRUCTION, seed))) return;
        p->dim = dim;
    }
    sem_ent *e = malloc(sizeof *e + n);
    if (!e) return;
    int64_t id = hnsw_add(p->idx, v);
    if (id < 0) { free(e); return; }
    if ((size_t)id >= p->ents_cap) {
        size_t cap = p->ents_cap ? p->ents_cap * 2 : 16;
        while (cap <= (size_t)id) cap *= 2;
        // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
        sem_ent **ne = realloc(p->ents, cap * sizeof *ne);
        if (!ne) { hnsw_remove(p->idx, (uint32_t)id); free(e); return; }
        // NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers
        memset(ne + p->ents_cap, 0, (cap - p->ents_cap) * sizeof *ne);
        p->ents = ne;
        p->ents_cap = cap;
    }
    *e = (sem_ent){ .p = p, .id = (uint32_t)id, .expires_ms = exp, .size = need, .older = s->newest, .blob_len = n };
    memcpy(e->blob, blob, n);
    if (s->newest) s->newest->newer = e; else s->oldest = e;
    s->newest = e;
    p->ents[id] = e;
    s->count++;
    s->bytes += need;
}

void semcache_sweep(semcache *s, size_t limit)
{
    int64_t now = wall_ms(s);
    for (sem_ent *e = s->oldest, *next; e && limit; e = next, limit--) {
        next = e->newer;
        if (e->expires_ms <= now) ent_remove(s, e);
    }
    for (size_t b = 0; b < PART_BUCKETS; b++)
        for (part **pp = &s->parts[b]; *pp;) {
            part *p = *pp;
            if ((!p->idx || hnsw_count(p->idx) == 0) && !p->syncing && !p->waiters) { *pp = p->hnext; part_free(s, p); }
            else pp = &p->hnext;
        }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) { (void)fd; (void)what; semcache_sweep(arg, SWEEP_LIMIT); }

/* ---- Redis streams ---- */

static void stream_key(char out[70], const uint8_t key[32])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "gwsc:", 5);
    for (int i = 0; i < 32; i++) { out[5 + 2 * i] = hex[key[i] >> 4]; out[6 + 2 * i] = hex[key[i] & 15]; }
    out[69] = '\0';
}

/* One stream entry from outside: checked field by field before it is used. */
static void ingest_entry(semcache *s, part *p, const redisReply *fields)
{
    const redisReply *w = NULL, *v = NULL, *b = NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *x = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || x->type != REDIS_REPLY_STRING || k->len != 1) continue;
        if (k->str[0] == 'w') w = x; else if (k->str[0] == 'v') v = x; else if (k->str[0] == 'b') b = x;
    }
    if (!w || !v || !b || w->len != sizeof s->writer || !memcmp(w->str, &s->writer, sizeof s->writer)) return;
    if (v->len == 0 || v->len % sizeof(float) || v->len / sizeof(float) > HNSW_MAX_DIM) return;
    uint32_t dim = (uint32_t)(v->len / sizeof(float));
    cache_entry e;
    int64_t exp;
    if (cache_blob_read(b->str, b->len, &e, &exp) < 0 || exp <= wall_ms(s) || e.len > s->max_answer) return;
    float *vec = malloc(v->len);
    if (!vec) return;
    memcpy(vec, v->str, v->len);
    if (hnsw_normalize(vec, dim) == 0) insert_local(s, p, vec, dim, b->str, b->len, exp);
    free(vec);
}

/* XREAD's answer: [[key, [[id, [field, value, ...]], ...]]], or nil when nothing is new. */
static void ingest(semcache *s, part *p, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1) return;
    const redisReply *kv = r->element[0];
    if (kv->type != REDIS_REPLY_ARRAY || kv->elements != 2 || kv->element[1]->type != REDIS_REPLY_ARRAY) return;
    const redisReply *list = kv->element[1];
    for (size_t i = 0; i < list->elements; i++) {
        const redisReply *en = list->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 || en->element[0]->type != REDIS_REPLY_STRING ||
            en->element[0]->len >= sizeof p->last_id || en->element[1]->type != REDIS_REPLY_ARRAY)
            return;
        memcpy(p->last_id, en->element[0]->str, en->element[0]->len);
        p->last_id[en->element[0]->len] = '\0';
        ingest_entry(s, p, en->element[1]);
    }
}

static void answer_waiters(semcache *s, part *p)
{
    semcache_lookup *l = p->waiters;   /* detached: a callback may start a new lookup here */
    p->waiters = NULL;
    p->wtail = &p->waiters;
    while (l) {
        semcache_lookup *next = l->next;
        if (l->cb) {
            cache_entry e;
            double sim;
            int hit = search(s, p, l->v, l->dim, l->threshold, &e, &sim);
            l->cb(l->ud, hit ? &e : NULL, sim);
        }
        free(l->v);
        free(l);
        l = next;
    }
}

static void on_sync(void *priv, const redisReply *r)
{
    sync_op *op = priv;
    semcache *s = op->s;
    if (!s) { free(op); return; }
    if (op->prev) op->prev->next = op->next; else s->ops = op->next;
    if (op->next) op->next->prev = op->prev;
    part *p = part_find(s, op->key, 0);
    free(op);
    if (!p) return;
    p->syncing = 0;
    if (r) ingest(s, p, r);
    answer_waiters(s, p);
}

static int send_sync(semcache *s, part *p)
{
    sync_op *op = calloc(1, sizeof *op);
    if (!op) return -1;
    op->s = s;
    memcpy(op->key, p->key, 32);
    char key[70];
    stream_key(key, p->key);
    const char *argv[] = { "XREAD", "COUNT", SYNC_COUNT, "STREAMS", key, p->last_id };
    size_t lens[] = { 5, 5, strlen(SYNC_COUNT), 7, strlen(key), strlen(p->last_id) };
    if (cache_redis_argv(s->redis, on_sync, op, 6, argv, lens) < 0) { free(op); return -1; }
    op->next = s->ops;
    if (s->ops) s->ops->prev = op;
    s->ops = op;
    return 0;
}

static void on_written(void *priv, const redisReply *r) { (void)priv; (void)r; }

/* ---- the interface ---- */

semcache *semcache_new(struct event_base *base, cache *redis, size_t max_entries, size_t max_bytes, int M, int ef)
{
    if (M < 4 || M > 64 || ef < 1) return NULL;
    semcache *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    *s = (semcache){ .base = base, .redis = redis, .max_entries = max_entries, .max_bytes = max_bytes, .M = M, .ef = ef,
                     .max_answer = redis ? cache_max_entry(redis) : MAX_FIELD };
    if (getrandom(&s->writer, sizeof s->writer, 0) != sizeof s->writer) s->writer = (uint64_t)(uintptr_t)s ^ (uint64_t)wall_ms(s);
    struct timeval tv = { SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000 };
    if (!(s->sweep = event_new(base, -1, EV_PERSIST, on_sweep, s)) || event_add(s->sweep, &tv) < 0) {
        semcache_free(s);
        return NULL;
    }
    return s;
}

void semcache_free(semcache *s)
{
    if (!s) return;
    for (sync_op *op = s->ops; op; op = op->next) op->s = NULL;   /* freed when Redis answers or goes */
    for (size_t b = 0; b < PART_BUCKETS; b++)
        while (s->parts[b]) {
            part *p = s->parts[b];
            s->parts[b] = p->hnext;
            part_free(s, p);
        }
    if (s->sweep) event_free(s->sweep);
    free(s);
}

int semcache_get(semcache *s, const uint8_t key[32], const float *v, uint32_t dim, double threshold, cache_entry *e,
                 double *sim, semcache_cb cb, void *ud, semcache_lookup **pending)
{
    *pending = NULL;
    *sim = 0;
    part *p = part_find(s, key, 1);
    if (!p) return 0;
    if (s->redis && (p->syncing || send_sync(s, p) == 0)) {
        p->syncing = 1;
        semcache_lookup *l = calloc(1, sizeof *l);
        float *copy = l ? malloc((size_t)dim * sizeof *copy) : NULL;
        if (copy) {
            memcpy(copy, v, (size_t)dim * sizeof *copy);
            *l = (semcache_lookup){ .v = copy, .dim = dim, .threshold = threshold, .cb = cb, .ud = ud };
            *p->wtail = l;
            p->wtail = &l->next;
            *pending = l;
            return 2;
        }
        free(l);   /* out of memory: answered from memory alone */
    }
    return search(s, p, v, dim, threshold, e, sim);
}

void semcache_cancel(semcache_lookup *l)
{
    if (l) { l->cb = NULL; l->ud = NULL; }
}

void semcache_put(semcache *s, const uint8_t key[32], const float *v, uint32_t dim, long ttl_s, const cache_entry *e)
{
    if (!s || ttl_s <= 0 || strlen(e->content_type) > 255 || strlen(e->provider) > 255 || strlen(e->upstream_model) > 1024 ||
        e->len > s->max_answer)
        return;
    part *p = part_find(s, key, 1);
    size_t n = cache_blob_size(e);
    char *blob = p ? malloc(n) : NULL;
    if (!blob) return;
    int64_t exp = wall_ms(s) + (int64_t)ttl_s * 1000;
    cache_blob_write(blob, e, exp);
    insert_local(s, p, v, dim, blob, n, exp);
    if (s->redis) {
        char skey[70], maxlen[24], ttl[24];
        stream_key(skey, key);
        snprintf(maxlen, sizeof maxlen, "%zu", s->max_entries ? s->max_entries : 1);
        snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_s * 1000);
        const char *xadd[] = { "XADD", skey, "MAXLEN", "~", maxlen, "*", "w", (const char *)&s->writer, "v",
                               (const char *)v, "b", blob };
        size_t xl[] = { 4, strlen(skey), 6, 1, strlen(maxlen), 1, 1, sizeof s->writer, 1, (size_t)dim * sizeof(float), 1, n };
        const char *pexp[] = { "PEXPIRE", skey, ttl };
        size_t pl[] = { 7, strlen(skey), strlen(ttl) };
        if (cache_redis_argv(s->redis, on_written, NULL, 12, xadd, xl) == 0)
            cache_redis_argv(s->redis, on_written, NULL, 3, pexp, pl);
    }
    free(blob);
}

size_t semcache_count(const semcache *s) { return s ? s->count : 0; }
size_t semcache_bytes(const semcache *s)
{
    return s ? s->bytes : 0;
}
