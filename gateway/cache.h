/* cache: the exact-match response cache.
 *
 * Key: SHA-256 of the normalized request (route, alias, stream flag and
 * every body member but model/stream/user/metadata, object members sorted,
 * whitespace gone), namespaced per team (or per key) unless the alias is
 * shared. Two tiers: a bounded LRU in the worker, answered synchronously,
 * and Redis (hiredis async on the worker loop) shared by every worker and
 * node. Redis down, slow or erroring is a miss, never a failure.
 *
 * An entry is the reply as the client got it: status 200, content type,
 * body (a JSON document, or the SSE bytes of a stream), and the provider
 * and upstream model that made it.
 */
#ifndef GW_CACHE_H
#define GW_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct json_value;

typedef struct cache cache;
typedef struct cache_lookup cache_lookup;

typedef struct cache_entry {
    const char *content_type, *provider, *upstream_model;
    const char *body;
    size_t      len;
} cache_entry;

/* What a request asked for, with the alias's setting. */
enum { CACHE_OFF, CACHE_USE, CACHE_REFRESH /* no-cache: skip the lookup, store */, CACHE_NO_STORE };
/* From the request's Cache-Control (no-cache, no-store, max-age=N) and
 * X-Gateway-Cache (on, off|bypass|no-cache, no-store) values, either NULL,
 * and the alias's ttl (0: off unless asked). *ttl_s: the lifetime of what
 * gets stored. Hostile input: bounded, never fails. */
int  cache_parse_directives(const char *cc, const char *xgc, long alias_ttl_s, long default_ttl_s, long *ttl_s);

void cache_key(const struct json_value *root, int route, int stream, const char *alias, const char *ns,
               uint8_t key[32]);

/* Same with the top-level members left out named by skip (NULL-terminated). */
void cache_key_skip(const struct json_value *root, int route, int stream, const char *alias, const char *ns,
                    const char *const *skip, uint8_t key[32]);

/* The stored form of an entry (a header, the strings, the body), shared with
 * the semantic cache. cache_blob_read checks bytes from outside before
 * trusting them: 0, or -1 when they are not a whole blob. */
size_t cache_blob_size(const cache_entry *e);
void   cache_blob_write(char *out, const cache_entry *e, int64_t expires_ms);
int    cache_blob_read(const char *in, size_t n, cache_entry *e, int64_t *expires_ms);

/* redis_url may be NULL (memory only). NULL on out of memory. */
cache *cache_new(struct event_base *base, const char *redis_url, size_t memory_bytes, size_t max_entry_bytes);
void   cache_free(cache *c);
int    cache_redis_ok(const cache *c);   /* 1 connected, or no Redis configured */
size_t cache_max_entry(const cache *c);

/* 1: hit, *e valid until the callback returns / the caller returns to the
 * loop; 0: miss; 2: asked Redis: cb runs later (hit or NULL), *pending is
 * the handle to cancel it. */
typedef void (*cache_cb)(void *ud, const cache_entry *e);
int  cache_get(cache *c, const uint8_t key[32], cache_entry *e, cache_cb cb, void *ud, cache_lookup **pending);
void cache_cancel(cache_lookup *l);
void cache_put(cache *c, const uint8_t key[32], long ttl_s, const cache_entry *e);

/* One Redis command on the cache's connection (its timeouts and reconnects):
 * 0 sent, fn runs once later with the reply, or NULL when Redis did not
 * answer (down, too slow, shutting down); -1 not sent (down or busy). */
struct redisReply;
typedef void (*cache_redis_fn)(void *priv, const struct redisReply *reply);
int cache_redis_argv(cache *c, cache_redis_fn fn, void *priv, int argc, const char **argv, const size_t *lens);

#endif
