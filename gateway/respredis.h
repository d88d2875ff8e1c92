/* respredis: the Redis tier of the stored Responses (respstore.h is the
 * node's tier), so a follow-up that lands on another gateway node finds
 * what this one stored.
 *
 * One per worker, on its own redislink (redislink.h). Keys are
 * gwresp:<subject>:<id> (the subject is the key's, so another key never
 * reads it); values are the stored bytes as respstore keeps them, set with
 * PX = the store's ttl and never larger than its max entry. Redis down,
 * slow (the link drops it after its timeout) or answering garbage is a
 * miss: nothing here waits longer than that or fails a request.
 */
#ifndef GW_RESPREDIS_H
#define GW_RESPREDIS_H

#include <stddef.h>

struct event_base;

typedef struct respredis respredis;
typedef struct respredis_op respredis_op;

enum { RESPREDIS_GONE = -1 /* cancelled or shutting down: only free your state */,
       RESPREDIS_MISS = 0, RESPREDIS_HIT = 1 };

/* Runs exactly once per op that was started. GET: data/len the stored bytes
 * on a hit (valid until the callback returns; only their size is checked
 * here, the caller parses them). DEL: HIT when Redis removed it. */
typedef void (*respredis_cb)(void *ud, int result, const char *data, size_t len);

/* NULL url or "": NULL (no Redis tier, every call below is a no-op/miss). */
respredis *respredis_new(struct event_base *base, const char *url, long ttl_s, size_t max_entry);
void       respredis_free(respredis *rr);
int        respredis_up(const respredis *rr);

/* Fire and forget (a later GET on another node may miss if it fails). */
void respredis_put(respredis *rr, const char *subject, const char *id, const char *data, size_t len);
/* 1 started (cb runs later, *op is the handle), 0 not (no Redis, down,
 * too many in flight, out of memory): a miss now, cb never runs. cb may be
 * NULL for a DEL nobody waits on. */
int  respredis_get(respredis *rr, const char *subject, const char *id, respredis_cb cb, void *ud, respredis_op **op);
int  respredis_del(respredis *rr, const char *subject, const char *id, respredis_cb cb, void *ud, respredis_op **op);
/* Its callback then runs with RESPREDIS_GONE (when Redis answers or the
 * connection goes). NULL is a no-op. */
void respredis_cancel(respredis_op *op);

#endif
