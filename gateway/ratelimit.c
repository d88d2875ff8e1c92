/* ratelimit: lease arithmetic and the per-worker table of subjects (see ratelimit.h). */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#define PROBE_MAX 16

typedef struct rl_entry {
    char     sid[RL_ID_MAX + 1];
    uint8_t  in_use, kind, exhausted, inflight, local;  /* local: a lease came from the local share */
    uint32_t gen;           /* bumped when the slot is given to another subject */
    uint32_t lease_seq;     /* of the lease in flight (0: none) */
    int64_t  window, limit;
    int64_t  granted;       /* leased for this window (store + local) */
    int64_t  used;          /* admitted here in this window */
    int64_t  store_total;   /* the store's window total at the last answer */
    int64_t  want;          /* of the lease in flight */
    int64_t  last_ms;       /* for eviction */
} rl_entry;

struct ratelimit {
    rl_entry   *e;
    size_t      mask;
    int         node_workers;
    rl_lease_fn lease;
    void       *ud;
    uint32_t    seq;
    rl_stats    st;
};

static uint64_t sid_hash(const char *sid, int kind)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)kind;
    for (const unsigned char *p = (const unsigned char *)sid; *p; p++) h = (h ^ *p) * 1099511628211ull;
    return h ^ (h >> 29);
}

ratelimit *ratelimit_new(size_t capacity, int node_workers, rl_lease_fn lease, void *ud)
{
    size_t cap = 64;
    while (cap < capacity && cap < ((size_t)1 << 24)) cap <<= 1;
    ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) return NULL;
    if (!(rl->e = calloc(cap, sizeof *rl->e))) { free(rl); return NULL; }
    rl->mask = cap - 1;
    rl->node_workers = node_workers > 0 ? node_workers : 1;
    rl->lease = lease;
    rl->ud = ud;
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl) return;
    free(rl->e);
    free(rl);
}

void ratelimit_stats(const ratelimit *rl, rl_stats *out) { *out = rl->st; }

/* Small enough that W slices are a small share of the limit, large enough
 * that a busy key needs few round trips (8 leases per node-worker-minute). */
int64_t ratelimit_slice(const ratelimit *rl, int64_t limit)
{
    int64_t s = limit / (8 * (int64_t)rl->node_workers);
    return s > 0 ? s : 1;
}

static int64_t local_share(const ratelimit *rl, int64_t limit)
{
    int64_t s = limit / rl->node_workers;
    return s > 0 ? s : 1;
}

static rl_entry *find(ratelimit *rl, const char *sid, int kind, int64_t now_ms)
{
    size_t i = (size_t)sid_hash(sid, kind) & rl->mask;
    rl_entry *victim = NULL;
    for (int n = 0; n < PROBE_MAX; n++, i = (i + 1) & rl->mask) {
        rl_entry *e = &rl->e[i];
        if (e->in_use && e->kind == kind && !strcmp(e->sid, sid)) { e->last_ms = now_ms; return e; }
        if (!e->in_use) { if (!victim || victim->in_use) victim = e; continue; }
        if (!victim || (victim->in_use && e->last_ms < victim->last_ms)) victim = e;
    }
    if (victim->in_use) rl->st.evictions++;
    uint32_t gen = victim->gen + 1;
    memset(victim, 0, sizeof *victim);
    victim->gen = gen;
    victim->in_use = 1;
    victim->kind = (uint8_t)kind;
    strcpy(victim->sid, sid);   /* length checked by the caller */
    victim->window = -1;
    victim->last_ms = now_ms;
    return victim;
}

/* A new window starts from nothing; a lease still in flight for the old
 * one is forgotten (its answer will not match lease_seq). */
static void roll(rl_entry *e, int64_t window)
{
    if (e->window == window) return;
    e->window = window;
    e->granted = e->used = e->store_total = e->want = 0;
    e->exhausted = e->inflight = e->local = 0;
    e->lease_seq = 0;
}

static void grant(rl_entry *e, int64_t g, int64_t total)
{
    if (g > e->want) g = e->want;
    e->granted += g;
    if (total > e->store_total) e->store_total = total;
    if (g < e->want) e->exhausted = 1;
    e->inflight = 0;
    e->lease_seq = 0;
    e->want = 0;
}

/* The store failed: lease from this worker's share of the node's quota. */
static void grant_local(ratelimit *rl, rl_entry *e)
{
    int64_t room = local_share(rl, e->limit) - e->granted;
    rl->st.local_leases++;
    e->local = 1;
    grant(e, room > 0 ? room : 0, 0);
}

static void lease(ratelimit *rl, rl_entry *e, int64_t cost)
{
    int64_t slice = ratelimit_slice(rl, e->limit);
    int64_t debt = e->used + cost - e->granted;
    e->want = slice + (debt > 0 ? debt : 0);
    e->inflight = 1;
    if (++rl->seq == 0) rl->seq = 1;
    e->lease_seq = rl->seq;
    rl->st.leases++;
    uint64_t token = ((uint64_t)(e - rl->e) << 32) | e->lease_seq;
    if (!rl->lease || rl->lease(rl->ud, e->sid, e->kind, e->window, e->want, e->limit, token) < 0)
        grant_local(rl, e);
}

void ratelimit_lease_done(ratelimit *rl, uint64_t token, int64_t granted, int64_t total)
{
    size_t slot = (size_t)(token >> 32);
    uint32_t seq = (uint32_t)token;
    rl_entry *e = slot <= rl->mask ? &rl->e[slot] : NULL;
    if (!e || !e->in_use || !e->inflight || e->lease_seq != seq) { rl->st.stale_replies++; return; }
    if (granted < 0) grant_local(rl, e);
    else grant(e, granted, total);
}

/* Admits `cost` units against e; 1 yes, 0 no. */
static int take(ratelimit *rl, rl_entry *e, int64_t limit, int64_t cost, int64_t window)
{
    roll(e, window);
    e->limit = limit;
    int64_t slice = ratelimit_slice(rl, limit);
    if (!e->inflight && !e->exhausted && e->granted - e->used < slice / 2 + cost) lease(rl, e, cost);
    if (e->used + cost <= e->granted || (!e->exhausted && e->used - e->granted < slice)) {
        e->used += cost;
        return 1;
    }
    return 0;
}

/* Best local estimate: what this worker holds, plus what the store had
 * left at its last answer (or, on the local fallback, the rest of the share). */
static int64_t remaining(const ratelimit *rl, const rl_entry *e)
{
    int64_t held = e->granted - e->used;
    if (held < 0) held = 0;
    int64_t r = held;
    if (e->local) {
        int64_t rest = local_share(rl, e->limit) - e->granted;
        if (!e->exhausted && rest > 0) r += rest;
    } else if (!e->exhausted && e->limit > e->store_total) {
        r += e->limit - e->store_total;
    }
    return r > e->limit ? e->limit : r;
}

static int retry_after(const rl_entry *e, int64_t now_ms)
{
    if (!e->exhausted) return 1;   /* only the credit ran out: a lease is on its way */
    int64_t ms = (e->window + 1) * RL_WINDOW_MS - now_ms;
    int s = (int)((ms + 999) / 1000);
    return s > 0 ? s : 1;
}

int ratelimit_admit(ratelimit *rl, const char *sid, int64_t rpm, int64_t tpm, int64_t est_tokens,
                    int64_t now_ms, rl_ticket *t)
{
    memset(t, 0, sizeof *t);
    t->limit[0] = t->limit[1] = t->remaining[0] = t->remaining[1] = -1;
    if ((rpm < 0 && tpm < 0) || strlen(sid) > RL_ID_MAX) return 1;
    t->active = 1;
    int64_t window = now_ms / RL_WINDOW_MS;
    rl_entry *er = NULL, *et = NULL;
    uint32_t er_gen = 0;
    if (rpm >= 0) {
        er = find(rl, sid, RL_RPM, now_ms);
        er_gen = er->gen;
        t->limit[RL_RPM] = rpm;
        if (!take(rl, er, rpm, 1, window)) {
            t->refused = 1 + RL_RPM;
            t->retry_after = retry_after(er, now_ms);
        } else {
            t->rslot = (uint32_t)(er - rl->e);
            t->rgen = er->gen;
            t->rpm_charged = 1;
            t->window = window;
        }
    }
    if (tpm >= 0 && !t->refused) {
        if (est_tokens < 1) est_tokens = 1;
        et = find(rl, sid, RL_TPM, now_ms);
        /* find() may have evicted er's slot when both probe the same run */
        if (er && er->gen != er_gen) er = NULL;
        t->limit[RL_TPM] = tpm;
        if (take(rl, et, tpm, est_tokens, window)) {
            t->slot = (uint32_t)(et - rl->e);
            t->gen = et->gen;
            t->window = window;
            t->charged = est_tokens;
        } else {
            t->refused = 1 + RL_TPM;
            t->retry_after = retry_after(et, now_ms);
            if (er && er->used > 0) er->used--;   /* a refused request spends no RPM */
            t->rpm_charged = 0;
        }
    } else if (tpm >= 0) {
        et = find(rl, sid, RL_TPM, now_ms);
        roll(et, window);
        et->limit = tpm;
        if (er && er->gen != er_gen) er = NULL;
        t->limit[RL_TPM] = tpm;
    }
    if (er) t->remaining[RL_RPM] = remaining(rl, er);
    if (et) t->remaining[RL_TPM] = remaining(rl, et);
    if (t->refused) rl->st.refused++;
    return !t->refused;
}

static rl_entry *ticket_entry(ratelimit *rl, uint32_t slot, uint32_t gen, int kind, int64_t window, int64_t now_ms)
{
    if (slot > rl->mask) return NULL;
    rl_entry *e = &rl->e[slot];
    if (!e->in_use || e->gen != gen || e->kind != kind || e->window != window ||
        e->window != now_ms / RL_WINDOW_MS) return NULL;
    return e;
}

void ratelimit_release(ratelimit *rl, rl_ticket *t, int64_t now_ms)
{
    if (!t->active || t->refused) return;
    rl_entry *e;
    if (t->rpm_charged && (e = ticket_entry(rl, t->rslot, t->rgen, RL_RPM, t->window, now_ms)) && e->used > 0)
        e->used--;
    if (t->charged > 0 && (e = ticket_entry(rl, t->slot, t->gen, RL_TPM, t->window, now_ms))) {
        e->used -= t->charged;
        if (e->used < 0) e->used = 0;
    }
    t->rpm_charged = 0;
    t->charged = 0;
}

void ratelimit_settle(ratelimit *rl, const rl_ticket *t, int64_t actual_tokens, int64_t now_ms)
{
    if (!t->active || t->refused || t->charged <= 0) return;
    rl_entry *e = ticket_entry(rl, t->slot, t->gen, RL_TPM, t->window, now_ms);
    if (!e) return;
    if (actual_tokens < 0) actual_tokens = 0;
    e->used += actual_tokens - t->charged;
    if (e->used < 0) e->used = 0;
}
