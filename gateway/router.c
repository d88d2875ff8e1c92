/* router: strategies, breakers, retry budget, error classes (see router.h). */
#include "router.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define RATIO_WINDOW_MS  10000   /* failure-ratio window */
#define EWMA_ALPHA       0.3     /* weight of a new latency sample */
#define EXPLORE_ONE_IN   32      /* least_latency: 1 pick in 32 refreshes another deployment's latency */
#define HOLD_MAX_MS      60000   /* cap on a Retry-After hold */

int router_init(router_t *r, uint64_t seed, int workers)
{
    memset(r, 0, sizeof *r);
    r->workers = workers > 0 ? workers : 1;
    r->cap = 64;
    if (!(r->deps = calloc(r->cap, sizeof *r->deps))) return -1;
    r->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
    r->budget_ratio = 0.2;
    r->budget_min = 10;   /* per worker: a handful of concurrent retries is never a storm */
    return 0;
}

void router_free(router_t *r)
{
    free(r->deps);
    r->deps = NULL;
    r->cap = r->n = 0;
}

/* xorshift64*: cheap, good enough for jitter and exploration */
static uint64_t next_rand(router_t *r)
{
    uint64_t x = r->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    r->rng = x;
    return x * 2685821657736338717ULL;
}

double router_random(router_t *r) { return (double)(next_rand(r) >> 11) * (1.0 / 9007199254740992.0); }

static router_dep *slot_for(router_dep *tab, size_t cap, uint64_t id)
{
    size_t i = (size_t)(id ^ (id >> 29)) & (cap - 1);
    while (tab[i].id && tab[i].id != id) i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int grow(router_t *r)
{
    size_t cap = r->cap * 2;
    router_dep *t = calloc(cap, sizeof *t);
    if (!t) return -1;
    for (size_t i = 0; i < r->cap; i++)
        if (r->deps[i].id) *slot_for(t, cap, r->deps[i].id) = r->deps[i];
    free(r->deps);
    r->deps = t;
    r->cap = cap;
    return 0;
}

router_dep *router_dep_get(router_t *r, const gw_deployment *d)
{
    uint64_t id = d->route_id ? d->route_id : 1;
    router_dep *s = slot_for(r->deps, r->cap, id);
    if (s->id) return s;
    if ((r->n + 1) * 4 > r->cap * 3) {   /* keep the load under 3/4 */
        if (grow(r) < 0) return NULL;
        s = slot_for(r->deps, r->cap, id);
    }
    s->id = id;
    r->n++;
    return s;
}

const char *router_breaker_name(breaker_state s)
{
    return s == BREAKER_OPEN ? "open" : s == BREAKER_HALF_OPEN ? "half_open" : "closed";
}

void router_each_dep(const router_t *r, void (*fn)(const router_dep *d, void *ud), void *ud)
{
    for (size_t i = 0; i < r->cap; i++)
        if (r->deps[i].id) fn(&r->deps[i], ud);
}

/* ---- eligibility ---- */

enum { ELIGIBLE, HELD, BROKEN };

/* May d take an attempt now? An open breaker whose cooldown has passed turns
 * half-open, and the one request that sees it first becomes the probe. */
static int eligibility(const router_dep *s, int64_t now_ms)
{
    if (s->state == BREAKER_OPEN) return now_ms >= s->open_until_ms ? ELIGIBLE : BROKEN;
    if (s->state == BREAKER_HALF_OPEN) return s->probing ? BROKEN : ELIGIBLE;
    if (now_ms < s->hold_until_ms) return HELD;
    return ELIGIBLE;
}

/* ---- usage: requests and tokens over a sliding minute ---- */

static void roll_minute(router_dep *s, int64_t now_ms)
{
    int64_t m = now_ms / 60000;
    if (m == s->minute) return;
    if (m == s->minute + 1) { s->req_prev = s->req_cur; s->tok_prev = s->tok_cur; }
    else { s->req_prev = 0; s->tok_prev = 0; }
    s->req_cur = s->tok_cur = 0;
    s->minute = m;
}

/* The previous minute counts for the part of it still inside the window. */
static double sliding(int64_t cur, int64_t prev, int64_t now_ms)
{
    double frac = (double)(now_ms % 60000) / 60000.0;
    return (double)cur + (double)prev * (1.0 - frac);
}

/* 1: untouched caps (or none) ... 0 and below: at this worker's share of the
 * caps (the node's workers split them evenly, as the rate limits do) */
static double headroom(const router_t *r, router_dep *s, const gw_deployment *d, int64_t now_ms)
{
    roll_minute(s, now_ms);
    double h = 1.0;
    if (d->rpm_limit > 0) {
        double x = 1.0 - sliding(s->req_cur, s->req_prev, now_ms) * r->workers / (double)d->rpm_limit;
        if (x < h) h = x;
    }
    if (d->tpm_limit > 0) {
        double x = 1.0 - sliding(s->tok_cur, s->tok_prev, now_ms) * r->workers / (double)d->tpm_limit;
        if (x < h) h = x;
    }
    return h;
}

/* ---- picking ---- */

int router_pick(router_t *r, const gw_model *m, uint64_t tried, int64_t now_ms, long *wait_ms)
{
    enum { MAXD = 64 };
    router_dep *st[MAXD];
    size_t idx[MAXD], n = 0, untried = 0;
    size_t nd = m->ndeployments < MAXD ? m->ndeployments : MAXD;
    int64_t first_free = 0;
    *wait_ms = 0;
    for (size_t i = 0; i < nd; i++) {
        const gw_deployment *d = &m->deployments[i];
        if (d->weight <= 0 && m->strategy_id == STRATEGY_WEIGHTED) continue;
        router_dep *s = router_dep_get(r, d);
        if (!s) continue;
        int e = eligibility(s, now_ms);
        if (e == HELD && (!first_free || s->hold_until_ms < first_free)) first_free = s->hold_until_ms;
        if (e == BROKEN) r->breaker_skips++;
        if (e != ELIGIBLE) continue;
        st[n] = s;
        idx[n] = i;
        if (!(tried >> i & 1)) untried++;
        n++;
    }
    if (n == 0) {
        if (first_free) *wait_ms = (long)(first_free - now_ms);
        return -1;
    }
    /* prefer deployments this request has not tried; all tried: any may serve again */
    if (untried && untried < n) {
        size_t k = 0;
        for (size_t j = 0; j < n; j++)
            if (!(tried >> idx[j] & 1)) { st[k] = st[j]; idx[k] = idx[j]; k++; }
        n = k;
    }
    size_t best = 0;
    switch (m->strategy_id) {
    case STRATEGY_LEAST_LATENCY:
        if (n > 1 && next_rand(r) % EXPLORE_ONE_IN == 0) { best = (size_t)(next_rand(r) % n); break; }
        for (size_t j = 1; j < n; j++) {
            /* no sample yet counts as fastest: every deployment gets measured */
            double a = st[j]->ewma_ms, b = st[best]->ewma_ms;
            if (a < b || (a == b && st[j]->inflight < st[best]->inflight)) best = j;
        }
        break;
    case STRATEGY_LEAST_COST:
        for (size_t j = 1; j < n; j++) {
            const gw_price *a = &m->deployments[idx[j]].price, *b = &m->deployments[idx[best]].price;
            if (a->input + a->output < b->input + b->output) best = j;
        }
        break;
    case STRATEGY_USAGE: {
        double hb = headroom(r, st[0], &m->deployments[idx[0]], now_ms);
        for (size_t j = 1; j < n; j++) {
            double h = headroom(r, st[j], &m->deployments[idx[j]], now_ms);
            if (h > hb) { hb = h; best = j; }
        }
        break;
    }
    default: {   /* weighted: smooth weighted round robin over the eligible ones */
        int64_t total = 0;
        for (size_t j = 0; j < n; j++) {
            int64_t w = m->deployments[idx[j]].weight;
            st[j]->swrr += w;
            total += w;
            if (st[j]->swrr > st[best]->swrr) best = j;
        }
        st[best]->swrr -= total;
        break;
    }
    }
    return (int)idx[best];
}

/* ---- attempts ---- */

void router_attempt_start(router_t *r, const gw_model *m, size_t i, int64_t est_tokens, int64_t now_ms)
{
    router_dep *s = router_dep_get(r, &m->deployments[i]);
    if (!s) return;
    s->attempts++;
    s->inflight++;
    if (s->state == BREAKER_OPEN && now_ms >= s->open_until_ms) s->state = BREAKER_HALF_OPEN;
    if (s->state == BREAKER_HALF_OPEN) s->probing = 1;
    roll_minute(s, now_ms);
    s->req_cur++;
    s->tok_cur += est_tokens > 0 ? est_tokens : 0;
}

static void trip(router_t *r, router_dep *s, const gw_route_policy *p, int64_t now_ms)
{
    (void)r;
    s->state = BREAKER_OPEN;
    s->open_until_ms = now_ms + p->breaker_cooldown_ms;
    s->probing = 0;
    s->opens++;
    s->consecutive = 0;
    s->win_ok = s->win_fail = 0;
    s->win_start_ms = now_ms;
}

void router_attempt_done(router_t *r, const gw_model *m, size_t i, attempt_outcome o,
                         double ttfb_ms, long retry_after_ms, int64_t now_ms)
{
    router_dep *s = router_dep_get(r, &m->deployments[i]);
    if (!s) return;
    const gw_route_policy *p = &m->policy;
    if (s->inflight) s->inflight--;
    if (ttfb_ms >= 0 && o == OUTCOME_OK) {
        s->ewma_ms = s->ewma_ms == 0 ? ttfb_ms : s->ewma_ms + EWMA_ALPHA * (ttfb_ms - s->ewma_ms);
        if (s->ewma_ms <= 0) s->ewma_ms = 1e-3;   /* 0 means "no sample" */
        s->lat[s->lat_n++ % LATENCY_RING] = (float)ttfb_ms;
    }
    if (now_ms - s->win_start_ms > RATIO_WINDOW_MS) { s->win_ok = s->win_fail = 0; s->win_start_ms = now_ms; }
    if (retry_after_ms > 0) {
        long hold = retry_after_ms < HOLD_MAX_MS ? retry_after_ms : HOLD_MAX_MS;
        if (now_ms + hold > s->hold_until_ms) s->hold_until_ms = now_ms + hold;
    }
    /* the client's own errors and a provider that is merely busy (429, held
     * above) say nothing about the deployment's health */
    int failed = o == OUTCOME_RETRY && retry_after_ms <= 0;
    if (!failed) {
        if (o == OUTCOME_RETRY) { if (s->state == BREAKER_HALF_OPEN) s->probing = 0; return; }
        s->consecutive = 0;
        s->win_ok++;
        if (s->state == BREAKER_HALF_OPEN) { s->state = BREAKER_CLOSED; s->probing = 0; }
        return;
    }
    s->failures++;
    s->consecutive++;
    s->win_fail++;
    if (s->state == BREAKER_HALF_OPEN) { trip(r, s, p, now_ms); return; }   /* the probe failed */
    if (s->state == BREAKER_OPEN) return;   /* an attempt started before it opened */
    uint32_t total = s->win_ok + s->win_fail;
    if (s->consecutive >= p->breaker_failures ||
        (total >= (uint32_t)p->breaker_min_requests && (double)s->win_fail >= p->breaker_ratio * (double)total))
        trip(r, s, p, now_ms);
}

void router_attempt_abandon(router_t *r, const gw_model *m, size_t i)
{
    router_dep *s = router_dep_get(r, &m->deployments[i]);
    if (!s) return;
    if (s->inflight) s->inflight--;
    if (s->state == BREAKER_HALF_OPEN) s->probing = 0;   /* let another request probe */
}

void router_add_tokens(router_t *r, const gw_model *m, size_t i, int64_t tokens, int64_t now_ms)
{
    router_dep *s = router_dep_get(r, &m->deployments[i]);
    if (!s) return;
    roll_minute(s, now_ms);
    s->tok_cur += tokens;
    if (s->tok_cur < 0) s->tok_cur = 0;
}

/* ---- classification ---- */

static int contains_ci(const char *h, size_t hn, const char *needle)
{
    size_t nn = strlen(needle);
    if (nn > hn) return 0;
    for (size_t i = 0; i + nn <= hn; i++) {
        size_t j = 0;
        while (j < nn && tolower((unsigned char)h[i + j]) == needle[j]) j++;
        if (j == nn) return 1;
    }
    return 0;
}

attempt_outcome router_classify(upstream_result res, int status, const char *body, size_t len)
{
    if (res != UPSTREAM_OK && status == 0) return OUTCOME_RETRY;   /* connect, TLS, timeouts, resets */
    if (status >= 500 || status == 429 || status == 408 || status == 409 || status == 425) return OUTCOME_RETRY;
    if (res != UPSTREAM_OK) return OUTCOME_RETRY;   /* a 2xx that broke before its end */
    if (status == 400 || status == 413 || status == 422) {
        /* how OpenAI, Anthropic, Gemini, Bedrock and vLLM say it; only the first 4 KiB are read */
        static const char *const phrases[] = {
            "context_length_exceeded", "maximum context length", "context length", "prompt is too long",
            "too many tokens", "input is too long", "exceeds the context window", "token count",
        };
        size_t n = len < 4096 ? len : 4096;
        for (size_t i = 0; body && i < sizeof phrases / sizeof phrases[0]; i++)
            if (contains_ci(body, n, phrases[i])) return OUTCOME_CONTEXT;
    }
    if (status >= 400) return OUTCOME_CLIENT;
    return OUTCOME_OK;
}

long router_retry_after_ms(const char *v)
{
    if (!v) return 0;
    while (*v == ' ') v++;
    if (!isdigit((unsigned char)*v)) return *v ? 1000 : 0;   /* an HTTP date: wait a little, not until then */
    long s = 0;
    for (; isdigit((unsigned char)*v); v++) {
        s = s * 10 + (*v - '0');
        if (s > 86400) return 86400000;
    }
    if (*v == '.' ) return s * 1000 + 500;   /* fractional seconds: round up */
    return s * 1000;
}

/* ---- retry budget ---- */

void router_begin(router_t *r) { r->active++; }
void router_end(router_t *r) { if (r->active) r->active--; }

int router_may_retry(router_t *r)
{
    double cap = r->budget_ratio * (double)r->active;
    if (cap < (double)r->budget_min) cap = (double)r->budget_min;
    if ((double)r->retries_active + 1 > cap) { r->budget_denied++; return 0; }
    r->retries_active++;
    r->retries++;
    return 1;
}

void router_retry_done(router_t *r) { if (r->retries_active) r->retries_active--; }

long router_backoff_ms(router_t *r, const gw_route_policy *p, int n, long retry_after_ms)
{
    long d = p->backoff_base_ms;
    for (int i = 1; i < n && d < p->backoff_max_ms; i++) d *= 2;
    if (d > p->backoff_max_ms) d = p->backoff_max_ms;
    /* "equal jitter": half fixed, half random, so retries of many requests spread out */
    long half = d / 2;   /* jitter: half the delay fixed, half random */
    d = half + (long)(router_random(r) * (double)(half + 1));
    return d > retry_after_ms ? d : retry_after_ms;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

double router_p95_ms(router_t *r, const gw_deployment *d)
{
    router_dep *s = router_dep_get(r, d);
    if (!s || s->lat_n < 10) return 0;
    uint32_t n = s->lat_n < LATENCY_RING ? s->lat_n : LATENCY_RING;
    if (n == 0) return 0;
    float v[LATENCY_RING];
    memcpy(v, s->lat, n * sizeof v[0]);
    qsort(v, n, sizeof v[0], cmp_float);
    return v[(n * 95) / 100 < n ? (n * 95) / 100 : n - 1];
}
