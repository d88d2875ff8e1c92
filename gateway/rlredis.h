/* rlredis: the shared store behind ratelimit, Redis through hiredis async on
 * the worker's libevent loop.
 *
 * One lease is one EVAL round trip (INCRBY + grant capped at the limit).
 * Redis down, refusing, or slower than RLREDIS_TIMEOUT_MS: pending leases are
 * granted locally (ratelimit's fallback), the connection is dropped and
 * re-made in the background with backoff (redislink.h).
 */
#ifndef GW_RLREDIS_H
#define GW_RLREDIS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct ratelimit;

#define RLREDIS_TIMEOUT_MS 100

typedef struct rlredis rlredis;

/* url: redis://host[:port][/db]. NULL (logged) when the url is unusable. */
rlredis *rlredis_new(struct event_base *base, const char *url);
/* Where answers go; set once, before the first lease. */
void     rlredis_attach(rlredis *rr, struct ratelimit *rl);
void     rlredis_free(rlredis *rr);
/* 1 while connected and answering (metrics). */
int      rlredis_connected(const rlredis *rr);

/* An rl_lease_fn (ud: the rlredis). */
int      rlredis_lease(void *ud, const char *sid, int kind, int64_t window, int64_t want,
                       int64_t limit, uint64_t token);

#endif
