/* router: which deployment serves the next attempt, and whether to try again.
 *
 * One router per worker (single-threaded, no locks). It keeps per-deployment
 * state keyed by gw_deployment.route_id, so breakers, latency and usage
 * survive config reloads that keep a deployment. The request layer drives it:
 *
 *   router_begin -> router_pick -> router_attempt_start -> (upstream)
 *   -> router_attempt_done(classified outcome) -> router_may_retry ->
 *   router_backoff_ms -> router_pick ... -> router_end
 *
 * Strategies (per alias): weighted (smooth WRR, as nginx), least_latency
 * (EWMA of time to first byte), least_cost (price table), usage (headroom
 * against the deployment's rpm_limit/tpm_limit). classifier aliases pick a
 * tier alias with classify.h before this runs.
 *
 * Around them: a breaker per deployment (closed -> open after N consecutive
 * failures or a failure ratio over a window -> half-open: one probe after a
 * cooldown -> closed on success), Retry-After holds (a 429'd deployment is
 * skipped until then), and a retry budget (retries in flight at most
 * max(budget_min, ratio x active requests), as Envoy's retry budget).
 */
#ifndef GW_ROUTER_H
#define GW_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "upstream.h"

typedef enum { BREAKER_CLOSED = 0, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state;

/* What an attempt's outcome means for the request. */
typedef enum {
    OUTCOME_OK = 0,
    OUTCOME_RETRY,       /* 5xx, timeout, connect/reset, 429: another attempt may succeed */
    OUTCOME_CLIENT,      /* the client's own 4xx: final, and not the deployment's fault */
    OUTCOME_CONTEXT      /* context length exceeded: only a larger-context alias helps */
} attempt_outcome;

#define LATENCY_RING 64

typedef struct router_dep {
    uint64_t id;                   /* gw_deployment.route_id; 0: empty slot */
    int64_t  swrr;                 /* smooth WRR current weight */
    double   ewma_ms;              /* time to first byte; 0: no sample yet */
    float    lat[LATENCY_RING];    /* recent samples for p95 (hedging) */
    uint32_t lat_n;
    breaker_state state;
    int      consecutive;          /* failures in a row */
    uint32_t win_ok, win_fail;     /* failure-ratio window */
    int64_t  win_start_ms;
    int64_t  open_until_ms;        /* open: no traffic until then */
    int      probing;              /* half-open: the probe is in flight */
    int64_t  hold_until_ms;        /* upstream Retry-After */
    int64_t  minute;               /* usage: current minute (ms / 60000) */
    int64_t  req_cur, req_prev;    /* requests this minute and the last */
    int64_t  tok_cur, tok_prev;
    uint32_t inflight;
    /* counters for metrics (read by whoever exports them) */
    uint64_t attempts, failures, opens;
} router_dep;

typedef struct router {
    router_dep *deps;
    size_t      cap, n;            /* open addressing, cap a power of two */
    uint64_t    rng;
    size_t      active;            /* requests in flight */
    size_t      retries_active;    /* retries in flight */
    double      budget_ratio;      /* retries in flight <= max(budget_min, ratio x active) */
    size_t      budget_min;
    int         workers;           /* workers on the node: each counts 1/workers of a deployment's caps */
    /* counters for metrics (monotonic, this worker) */
    uint64_t    retries;           /* retry slots granted */
    uint64_t    budget_denied;     /* retries refused by the budget */
    uint64_t    fallbacks;         /* requests moved to another alias */
    uint64_t    hedges, hedge_wins;
    uint64_t    breaker_skips;     /* picks that passed over an open breaker */
} router_t;

/* workers: how many share the node's traffic (the usage strategy's caps are split evenly). */
int   router_init(router_t *r, uint64_t seed, int workers);
void  router_free(router_t *r);

/* The state of one deployment (created on first use); NULL on out of memory. */
router_dep *router_dep_get(router_t *r, const gw_deployment *d);

/* Picks a deployment of m for the next attempt, or -1. `tried` has bit i set
 * for deployments this request already used (they are avoided while others
 * remain). `est_tokens` feeds the usage strategy. On -1, *wait_ms > 0 says
 * the earliest a held (429) deployment frees up; 0: nothing to wait for
 * (every breaker open). */
int   router_pick(router_t *r, const gw_model *m, uint64_t tried, int64_t now_ms, long *wait_ms);

/* Bookkeeping around one attempt on m->deployments[i]. */
void  router_attempt_start(router_t *r, const gw_model *m, size_t i, int64_t est_tokens, int64_t now_ms);
/* ttfb_ms: time to first byte (< 0 unknown); retry_after_ms: upstream's, or 0. */
void  router_attempt_done(router_t *r, const gw_model *m, size_t i, attempt_outcome o,
                          double ttfb_ms, long retry_after_ms, int64_t now_ms);
/* An attempt cancelled before its outcome was known (client gone, hedge lost). */
void  router_attempt_abandon(router_t *r, const gw_model *m, size_t i);
/* Tokens the provider reported for a finished attempt (usage strategy). */
void  router_add_tokens(router_t *r, const gw_model *m, size_t i, int64_t tokens, int64_t now_ms);

/* Classifies an attempt: transport result, upstream status, and (for 400s)
 * the error body, which may say the context was too long. */
attempt_outcome router_classify(upstream_result res, int status, const char *body, size_t len);
/* Retry-After: delta seconds (or an HTTP date: treated as 1 s); 0 if absent/bad. */
long  router_retry_after_ms(const char *value);

/* One request in flight / done (the retry budget's denominator). */
void  router_begin(router_t *r);
void  router_end(router_t *r);
/* May this request retry now? Takes a slot of the budget (release it with
 * router_retry_done when that retry's attempt ends). */
int   router_may_retry(router_t *r);
void  router_retry_done(router_t *r);

/* Exponential backoff with jitter for retry number n (1-based), at least retry_after_ms. */
long  router_backoff_ms(router_t *r, const gw_route_policy *p, int n, long retry_after_ms);

/* Recent p95 time to first byte of a deployment (0: too few samples). */
double router_p95_ms(router_t *r, const gw_deployment *d);

/* Uniform in [0, 1). */
double router_random(router_t *r);

const char *router_breaker_name(breaker_state s);

/* Every deployment state this worker holds (for a metrics exporter). */
void router_each_dep(const router_t *r, void (*fn)(const router_dep *d, void *ud), void *ud);

#endif
