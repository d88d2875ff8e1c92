/* cache: exact-match response cache, an LRU in the worker and Redis behind it (cache.h). */
#include "cache.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "redislink.h"

#define BUCKETS            16384
#define REDIS_TIMEOUT_MS   50     /* a lookup waits at most this long, then it is a miss */
#define TICK_MS            10
#define RING               1024   /* Redis commands in flight at most; more: miss */
#define ENTRY_MAGIC        0x31435747u   /* "GWC1" */
#define MAX_TTL_S          (30L * 86400)

/* ---- policy ---- */

/* Case-insensitive token match at p (len n); the next byte must end the token. */
static int token_is(const char *p, size_t n, const char *tok)
{
    return strlen(tok) == n && strncasecmp(p, tok, n) == 0;
}

int cache_parse_directives(const char *cc, const char *xgc, long alias_ttl_s, long default_ttl_s, long *ttl_s)
{
    int on = alias_ttl_s > 0, refresh = 0, no_store = 0, off = 0;
    long ttl = alias_ttl_s > 0 ? alias_ttl_s : default_ttl_s;
    if (xgc) {
        size_t n = strlen(xgc);
        while (n && isspace((unsigned char)xgc[n - 1])) n--;
        while (n && isspace((unsigned char)*xgc)) { xgc++; n--; }
        if (token_is(xgc, n, "on") || token_is(xgc, n, "true") || token_is(xgc, n, "use")) on = 1;
        else if (token_is(xgc, n, "off") || token_is(xgc, n, "bypass") || token_is(xgc, n, "false")) off = 1;
        else if (token_is(xgc, n, "no-cache") || token_is(xgc, n, "refresh")) { on = on || alias_ttl_s > 0; refresh = 1; }
        else if (token_is(xgc, n, "no-store")) no_store = 1;
    }
    /* Cache-Control: comma-separated directives; unknown ones are ignored */
    for (const char *p = cc ? cc : ""; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        const char *s = p;
        while (*p && *p != ',') p++;
        size_t n = (size_t)(p - s);
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        if (token_is(s, n, "no-cache")) refresh = 1;
        else if (token_is(s, n, "no-store")) no_store = 1;
        else if (n > 8 && strncasecmp(s, "max-age=", 8) == 0) {
            long v = 0;
            size_t i = 8;
            for (; i < n && isdigit((unsigned char)s[i]) && v <= MAX_TTL_S; i++) v = v * 10 + (s[i] - '0');
            if (i == n && v > 0) { on = 1; ttl = v > MAX_TTL_S ? MAX_TTL_S : v; }
            else if (i == n && v == 0) refresh = 1;   /* max-age=0: do not serve a stored answer */
        }
    }
    *ttl_s = ttl > MAX_TTL_S ? MAX_TTL_S : ttl;
    if (off || !on) return no_store && on ? CACHE_NO_STORE : CACHE_OFF;
    if (no_store) return CACHE_NO_STORE;
    return refresh ? CACHE_REFRESH : CACHE_USE;
}

/* ---- key ---- */

static int cmp_members(const void *a, const void *b)
{
    const json_value *x = *(const json_value *const *)a, *y = *(const json_value *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* Compact JSON with object members sorted: the same request always hashes
 * the same, however the client spaced or ordered it. Depth is bounded by
 * the parser's limit. Numbers are kept as parsed values so 1.0 and 1 differ
 * only if their doubles do. */
static const char *const default_skip[] = { "model", "stream", "user", "metadata", NULL };

static int skipped(const char *const *skip, const char *k)
{
    for (; skip && *skip; skip++) if (!strcmp(*skip, k)) return 1;
    return 0;
}

static void canon(buf_t *b, const json_value *v, const char *const *top_skip)
{
    switch (v->type) {
    case JSON_NULL: buf_puts(b, "null"); return;
    case JSON_TRUE: buf_puts(b, "true"); return;
    case JSON_FALSE: buf_puts(b, "false"); return;
    case JSON_NUMBER: buf_printf(b, "%.17g", v->num); return;
    case JSON_STRING: buf_json_str(b, v->str, v->str_len); return;
    case JSON_ARRAY:
        buf_putc(b, '[');
        for (const json_value *e = v->first; e; e = e->next) {
            if (e != v->first) buf_putc(b, ',');
            canon(b, e, NULL);
        }
        buf_putc(b, ']');
        return;
    case JSON_OBJECT: {
        const json_value *small[32];
        const json_value **m = v->count <= 32 ? small : malloc(v->count * sizeof(const json_value *));
        if (!m) { b->oom = 1; return; }
        size_t n = 0;
        for (const json_value *e = v->first; e && n < v->count; e = e->next) {
            /* what does not change the answer is not part of the key */
            if (skipped(top_skip, e->key)) continue;
            m[n++] = e;
        }
        qsort(m, n, sizeof(const json_value *), cmp_members);
        buf_putc(b, '{');
        for (size_t i = 0; i < n; i++) {
            if (i) buf_putc(b, ',');
            buf_json_str(b, m[i]->key, m[i]->key_len);
            buf_putc(b, ':');
            canon(b, m[i], NULL);
        }
        buf_putc(b, '}');
        if (m != small) free(m);
        return;
    }
    }
}

void cache_key(const json_value *root, int route, int stream, const char *alias, const char *ns, uint8_t key[32])
{
    cache_key_skip(root, route, stream, alias, ns, default_skip, key);
}

void cache_key_skip(const json_value *root, int route, int stream, const char *alias, const char *ns,
                    const char *const *skip, uint8_t key[32])
{
    static buf_t b;           /* a worker is single-threaded: one buffer, grown once */
    static EVP_MD *md;
    static EVP_MD_CTX *ctx;
    buf_reset(&b);
    buf_printf(&b, "gwc1\n%s\n%d\n%d\n", ns ? ns : "", route, stream);
    buf_json_str(&b, alias, strlen(alias));
    buf_putc(&b, '\n');
    if (root) canon(&b, root, skip);
    if (b.oom) {   /* a key nobody else can have: the request simply misses */
        memset(key, 0, 32);
        buf_free(&b);
        buf_init(&b);
        return;
    }
    unsigned int len = 32;
    if (!ctx) { md = EVP_MD_fetch(NULL, "SHA256", NULL); ctx = EVP_MD_CTX_new(); }
    if (!md || !ctx || EVP_DigestInit_ex2(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, b.data, b.len) != 1 ||
        EVP_DigestFinal_ex(ctx, key, &len) != 1)
        SHA256((const unsigned char *)b.data, b.len, key);
    if (b.cap > (8u << 20)) { buf_free(&b); buf_init(&b); }   /* do not keep a huge prompt's buffer */
}

/* ---- stored form: header, then the strings and the body ---- */

typedef struct blob_hdr {
    uint32_t magic;
    uint32_t body_len;
    int64_t  expires_ms;      /* wall clock: Redis entries cross processes */
    uint16_t ct_len, prov_len, model_len, pad;
} blob_hdr;

size_t cache_blob_size(const cache_entry *e)
{
    return sizeof(blob_hdr) + strlen(e->content_type) + strlen(e->provider) + strlen(e->upstream_model) + 3 + e->len;
}

void cache_blob_write(char *out, const cache_entry *e, int64_t expires_ms)
{
    blob_hdr h = { .magic = ENTRY_MAGIC, .body_len = (uint32_t)e->len, .expires_ms = expires_ms,
                   .ct_len = (uint16_t)strlen(e->content_type), .prov_len = (uint16_t)strlen(e->provider),
                   .model_len = (uint16_t)strlen(e->upstream_model) };
    memcpy(out, &h, sizeof h);
    char *p = out + sizeof h;
    memcpy(p, e->content_type, h.ct_len + 1u); p += h.ct_len + 1;
    memcpy(p, e->provider, h.prov_len + 1u); p += h.prov_len + 1;
    memcpy(p, e->upstream_model, h.model_len + 1u); p += h.model_len + 1;
    memcpy(p, e->body, e->len);
}

/* Checks a blob from outside (Redis) before trusting a byte of it. */
int cache_blob_read(const char *in, size_t n, cache_entry *e, int64_t *expires_ms)
{
    blob_hdr h;
    if (n < sizeof h) return -1;
    memcpy(&h, in, sizeof h);
    if (h.magic != ENTRY_MAGIC) return -1;
    size_t want = sizeof h + (size_t)h.ct_len + h.prov_len + h.model_len + 3 + h.body_len;
    if (want != n) return -1;
    const char *p = in + sizeof h;
    if (p[h.ct_len] || p[h.ct_len + 1 + h.prov_len] || p[h.ct_len + 1 + h.prov_len + 1 + h.model_len]) return -1;
    e->content_type = p; p += h.ct_len + 1;
    e->provider = p; p += h.prov_len + 1;
    e->upstream_model = p; p += h.model_len + 1;
    e->body = p;
    e->len = h.body_len;
    *expires_ms = h.expires_ms;
    return 0;
}

/* ---- the in-worker LRU ---- */

typedef struct lru_ent {
    uint8_t         key[32];
    struct lru_ent *hnext;          /* bucket chain */
    struct lru_ent *prev, *next;    /* recency list, most recent first */
    int64_t         expires_ms;
    size_t          size;
    char            blob[];
} lru_ent;

struct cache_lookup {
    cache   *c;
    cache_cb cb;
    void    *ud;
    uint8_t  key[32];
};

struct cache {
    struct event_base *base;
    size_t             max_bytes, max_entry, bytes;
    lru_ent           *buckets[BUCKETS];
    lru_ent           *head, *tail;
    redislink         *redis;          /* NULL: memory tier only */
    int                use_redis, closing;
};

static int64_t wall_ms(cache *c)
{
    struct timeval now;   /* the loop's cached time: no syscall per request */
    if (event_base_gettimeofday_cached(c->base, &now) < 0) gettimeofday(&now, NULL);
    return (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
}

static size_t bucket_of(const uint8_t key[32])
{
    uint64_t h;
    memcpy(&h, key, sizeof h);
    return (size_t)(h % BUCKETS);
}

static void lru_unlink(cache *c, lru_ent *e)
{
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(cache *c, lru_ent *e)
{
    e->next = c->head;
    e->prev = NULL;
    if (c->head) c->head->prev = e;
    c->head = e;
    if (!c->tail) c->tail = e;
}

static void lru_remove(cache *c, lru_ent *e)
{
    lru_ent **pp = &c->buckets[bucket_of(e->key)];
    while (*pp && *pp != e) pp = &(*pp)->hnext;
    if (*pp) *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= e->size;
    free(e);
}

static lru_ent *lru_find(cache *c, const uint8_t key[32])
{
    for (lru_ent *e = c->buckets[bucket_of(key)]; e; e = e->hnext)
        if (!memcmp(e->key, key, 32)) return e;
    return NULL;
}

static void lru_insert(cache *c, const uint8_t key[32], const char *blob, size_t n, int64_t expires_ms)
{
    if (c->max_bytes == 0 || n + sizeof(lru_ent) > c->max_bytes) return;
    lru_ent *old = lru_find(c, key);
    if (old) lru_remove(c, old);
    while (c->tail && c->bytes + n + sizeof(lru_ent) > c->max_bytes) lru_remove(c, c->tail);
    lru_ent *e = malloc(sizeof *e + n);
    if (!e) return;
    memcpy(e->key, key, 32);
    memcpy(e->blob, blob, n);
    e->size = sizeof *e + n;
    e->expires_ms = expires_ms;
    size_t b = bucket_of(key);
    e->hnext = c->buckets[b];
    c->buckets[b] = e;
    e->prev = e->next = NULL;
    lru_push_front(c, e);
    c->bytes += e->size;
}

/* ---- Redis tier ---- */

static void on_set_reply(void *owner, const redisReply *reply, void *arg) { (void)owner; (void)reply; (void)arg; }

static void on_get_reply(void *owner, const redisReply *r, void *arg)
{
    cache *c = owner;
    cache_lookup *l = arg;
    cache_entry e;
    int64_t exp;
    int hit = 0;
    if (!c->closing && l->cb && r && r->type == REDIS_REPLY_STRING && cache_blob_read(r->str, r->len, &e, &exp) == 0 &&
        exp > wall_ms(c) && e.len <= c->max_entry) {
        lru_insert(c, l->key, r->str, r->len, exp);   /* the next one is answered from memory */
        hit = 1;
    }
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL)) redislink_healthy(c->redis);
    if (!c->closing && l->cb) l->cb(l->ud, hit ? &e : NULL);
    free(l);
}

static void redis_key(char out[70], const uint8_t key[32])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "gwc:", 4);
    for (int i = 0; i < 32; i++) { out[4 + 2 * i] = hex[key[i] >> 4]; out[5 + 2 * i] = hex[key[i] & 15]; }
    out[68] = '\0';
}

/* ---- the interface ---- */

cache *cache_new(struct event_base *base, const char *redis_url, size_t memory_bytes, size_t max_entry_bytes)
{
    cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = base;
    c->max_bytes = memory_bytes;
    c->max_entry = max_entry_bytes;
    if (redis_url && *redis_url) {
        static const redislink_opts opts = { "cache", "memory tier only", REDIS_TIMEOUT_MS, TICK_MS, RING };
        c->use_redis = 1;
        c->redis = redislink_new(base, redis_url, &opts, c);   /* NULL: a bad url (logged), memory only */
    }
    return c;
}

void cache_free(cache *c)
{
    if (!c) return;
    c->closing = 1;
    redislink_free(c->redis);   /* pending lookups are freed by their callbacks */
    while (c->head) lru_remove(c, c->head);
    free(c);
}

int cache_redis_ok(const cache *c) { return !c || !c->use_redis || redislink_up(c->redis); }
size_t cache_max_entry(const cache *c) { return c ? c->max_entry : 0; }

int cache_get(cache *c, const uint8_t key[32], cache_entry *e, cache_cb cb, void *ud, cache_lookup **pending)
{
    *pending = NULL;
    lru_ent *le = lru_find(c, key);
    if (le) {
        int64_t exp;
        if (le->expires_ms > wall_ms(c) && cache_blob_read(le->blob, le->size - sizeof *le, e, &exp) == 0) {
            lru_unlink(c, le);
            lru_push_front(c, le);
            return 1;
        }
        lru_remove(c, le);   /* expired */
    }
    if (!redislink_up(c->redis)) return 0;
    cache_lookup *l = malloc(sizeof *l);
    if (!l) return 0;
    *l = (cache_lookup){ .c = c, .cb = cb, .ud = ud };
    memcpy(l->key, key, 32);
    char rk[70];
    redis_key(rk, key);
    if (redislink_command(c->redis, on_get_reply, l, "GET %s", rk) < 0) { free(l); return 0; }
    *pending = l;
    return 2;
}

void cache_cancel(cache_lookup *l)
{
    if (l) { l->cb = NULL; l->ud = NULL; }   /* freed when Redis answers (or the connection goes) */
}

void cache_put(cache *c, const uint8_t key[32], long ttl_s, const cache_entry *e)
{
    if (!c || ttl_s <= 0 || e->len > c->max_entry || strlen(e->content_type) > 255 || strlen(e->provider) > 255 ||
        strlen(e->upstream_model) > 1024)
        return;
    size_t n = cache_blob_size(e);
    char *blob = malloc(n);
    if (!blob) return;
    int64_t exp = wall_ms(c) + (int64_t)ttl_s * 1000;
    cache_blob_write(blob, e, exp);
    lru_insert(c, key, blob, n, exp);
    if (redislink_up(c->redis)) {
        char rk[70];
        redis_key(rk, key);
        if (redislink_command(c->redis, on_set_reply, NULL, "SET %s %b PX %lld", rk, blob, n,
                              (long long)ttl_s * 1000) == 0)
            /* on the wire before the client has its answer: a repeat sent to
             * another worker right after finds it */
            redislink_flush(c->redis);
    }
    free(blob);
}

/* ---- the connection lent to the semantic cache ---- */

typedef struct argv_call {
    cache_redis_fn fn;
    void          *priv;
} argv_call;

static void on_argv_reply(void *owner, const redisReply *reply, void *arg)
{
    cache *c = owner;
    argv_call *a = arg;
    a->fn(a->priv, c->closing ? NULL : reply);
    free(a);
}

int cache_redis_argv(cache *c, cache_redis_fn fn, void *priv, int argc, const char **argv, const size_t *lens)
{
    if (!c || !redislink_up(c->redis)) return -1;
    argv_call *a = malloc(sizeof *a);
    if (!a) return -1;
    *a = (argv_call){ fn, priv };
    if (redislink_command_argv(c->redis, on_argv_reply, a, argc, argv, lens) < 0) { free(a); return -1; }
    redislink_flush(c->redis);
    return 0;
}
