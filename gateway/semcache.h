/* semcache: the semantic response cache of one worker.
 *
 * Entries (a prompt's embedding and the answer it got, in the exact cache's
 * stored form) live in partitions: one per namespace (team, key, or shared)
 * + alias + route + stream flag + the request's other parameters, each with
 * its own HNSW index (hnsw.h). A lookup finds the nearest earlier prompt of
 * its partition and hits when the cosine similarity reaches the alias's
 * threshold. Bounded: at most max_entries and max_bytes per worker, the
 * oldest entry evicted first; expired entries are skipped and swept.
 *
 * With Redis (through the exact cache's connection, cache.h) every entry is
 * also appended to a per-partition stream (gwsc:<hex>, trimmed to
 * max_entries, expiring with its newest entry) and a lookup first reads the
 * partition's new stream entries, so an answer stored by any worker of any
 * node is found by the others. Redis down, slow or erroring: the worker's
 * own entries only, never a failure.
 */
#ifndef GW_SEMCACHE_H
#define GW_SEMCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cache.h"

struct event_base;

typedef struct semcache semcache;
typedef struct semcache_lookup semcache_lookup;

/* redis may be NULL (or have no Redis): per worker only. Answers larger
 * than its max entry (cache_max_entry) are not kept. NULL on bad parameters
 * or out of memory. */
semcache *semcache_new(struct event_base *base, cache *redis, size_t max_entries, size_t max_bytes, int M, int ef);
void      semcache_free(semcache *s);

/* e NULL: a miss; sim is the best similarity found (0: nothing comparable). */
typedef void (*semcache_cb)(void *ud, const cache_entry *e, double sim);

/* 1 hit (*e valid until the caller returns to the loop), 0 miss, both with
 * *sim set; 2: reading Redis first, cb runs later and *pending cancels it. */
int  semcache_get(semcache *s, const uint8_t part[32], const float *v, uint32_t dim, double threshold,
                  cache_entry *e, double *sim, semcache_cb cb, void *ud, semcache_lookup **pending);
void semcache_cancel(semcache_lookup *l);
void semcache_put(semcache *s, const uint8_t part[32], const float *v, uint32_t dim, long ttl_s, const cache_entry *e);

size_t semcache_count(const semcache *s);
size_t semcache_bytes(const semcache *s);
/* Removes expired entries (the oldest first, at most limit looked at) and
 * empty partitions; a timer runs it every second. */
void   semcache_sweep(semcache *s, size_t limit);

#endif
