/* ratelimit: per-worker RPM/TPM admission with quota leased from a shared store.
 *
 * Fixed one-minute windows. For each subject (a key, or a team) a worker
 * leases a slice of the window's quota from the shared store (Redis, through
 * the lease function) and admits requests against its local grant, so the
 * request path never waits on the network. While a lease is in flight the
 * worker may admit on credit, at most one slice, which the next lease pays
 * back. The store never grants more than the limit in total, so in one window:
 *
 *     admitted <= limit + W * (slice + max_cost - 1)
 *
 * for W workers sharing the store (max_cost = 1 for RPM, the largest token
 * estimate for TPM). When the store cannot answer, a lease is granted
 * locally from a per-worker share of limit / node_workers.
 *
 * No I/O and no clock here: times are passed in, so the arithmetic is unit
 * tested without Redis. Single-threaded, like the worker that owns it.
 */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

enum { RL_RPM = 0, RL_TPM = 1 };

#define RL_WINDOW_MS   60000
#define RL_ID_MAX      47          /* longest subject id kept ("k:" + key id or name) */

/* Starts a lease of `want` units of sid's quota for `window` (a minute
 * number). Returns 0 when the answer will come later through
 * ratelimit_lease_done(token, ...), -1 when the store is unavailable (the
 * lease is then granted locally, at once). */
typedef int (*rl_lease_fn)(void *ud, const char *sid, int kind, int64_t window, int64_t want,
                           int64_t limit, uint64_t token);

/* capacity: subjects tracked at once (rounded up to a power of two; the
 * least recently used of a probe run is evicted when full). */
ratelimit *ratelimit_new(size_t capacity, int node_workers, rl_lease_fn lease, void *ud);
void       ratelimit_free(ratelimit *rl);

/* What one request was charged, for the response headers and the settle. */
typedef struct rl_ticket {
    int      active;                 /* the key has a limit: headers go out */
    int      refused;                /* 0, or 1 + RL_RPM / RL_TPM */
    int      retry_after;            /* seconds, when refused */
    int64_t  limit[2], remaining[2]; /* -1: no such limit */
    uint32_t slot, gen;              /* the TPM entry charged, to settle */
    int64_t  window, charged;        /* tokens charged at admission */
    uint32_t rslot, rgen;            /* the RPM entry charged, to release */
    int      rpm_charged;
} rl_ticket;

/* Checks RPM then TPM for one subject (sid: at most RL_ID_MAX bytes) and
 * charges both when admitted. rpm/tpm < 0: no such limit. Fills *t. Returns
 * 1 admitted, 0 refused. */
int  ratelimit_admit(ratelimit *rl, const char *sid, int64_t rpm, int64_t tpm, int64_t est_tokens,
                     int64_t now_ms, rl_ticket *t);
/* Gives back what an admitted ticket charged (a later check refused the
 * request); the ticket then charges nothing. Same window only. */
void ratelimit_release(ratelimit *rl, rl_ticket *t, int64_t now_ms);
/* Replaces the estimate charged by the actual tokens (same window only). */
void ratelimit_settle(ratelimit *rl, const rl_ticket *t, int64_t actual_tokens, int64_t now_ms);

/* A lease's answer: granted units (0..want), the store's total for the
 * window (for remaining estimates), or granted < 0 when the store failed
 * (the lease is then granted locally). Stale tokens are ignored. */
void ratelimit_lease_done(ratelimit *rl, uint64_t token, int64_t granted, int64_t total);

/* The slice a worker leases at a time for this limit. */
int64_t ratelimit_slice(const ratelimit *rl, int64_t limit);

/* Counters since start, for logs. */
typedef struct rl_stats {
    uint64_t leases, local_leases, stale_replies, evictions, refused;
} rl_stats;
void ratelimit_stats(const ratelimit *rl, rl_stats *out);

#endif
