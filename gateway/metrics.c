/* metrics: shared-memory counters and the Prometheus text format (metrics.h). */
#include "metrics.h"

#include <inttypes.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <evhtp.h>
#include <event2/event.h>

#include "cache.h"
#include "config.h"
#include "httputil.h"
#include "log.h"
#include "rlredis.h"
#include "worker.h"

#define MX_SERIES   256    /* (model, provider, status) per worker; more fold into "other" */
#define MX_DEPS     128    /* deployments tracked for health per worker */
#define MX_LABEL    64
#define MX_FALLBACKS 32    /* (from, to) alias pairs per worker; more go to ("other", "other") */
#define MX_PROV     24
#define MX_GUARD    64     /* (stage, detector, action) per worker; more fold into "other" */

/* Seconds; the same bounds for all three histograms. */
static const double g_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
#define MX_BUCKETS (sizeof g_bounds / sizeof g_bounds[0])

typedef struct mx_hist {
    uint64_t bucket[MX_BUCKETS + 1];   /* non-cumulative; the last is +Inf */
    uint64_t sum_us, count;
} mx_hist;

typedef struct mx_series {
    uint32_t used;                     /* set last (release): the labels are complete */
    int      status;
    char     model[MX_LABEL], provider[MX_PROV];
    uint64_t requests, tok_in, tok_out, cost_e10;
} mx_series;

typedef struct mx_dep {
    uint32_t used;
    char     model[MX_LABEL], provider[MX_PROV], upstream[MX_LABEL];
    int      index;                    /* position in the alias's deployments: two may share the rest */
    uint64_t ok, fail;
    uint64_t last_seq;                 /* node-wide order of the last outcome */
    int      last_ok;
    int      breaker_open;             /* this worker's router keeps traffic away from it */
} mx_dep;

/* Requests moved from one alias to another, per (from, to). */
typedef struct mx_fallback {
    uint32_t used;
    char     from[MX_LABEL], to[MX_LABEL];
    uint64_t n;
} mx_fallback;

/* Guardrail verdicts, per (stage, detector, action). */
typedef struct mx_guard {
    uint32_t used;
    char     stage[8], detector[MX_LABEL], action[8];
    uint64_t n;
} mx_guard;

typedef struct mx_slot {
    int32_t  pid;                      /* 0: never used */
    int32_t  redis;                    /* -1: no redis_url; 0 down; 1 up */
    uint64_t config_version;
    uint64_t rate_limited[MX_LIMIT_KINDS];
    uint64_t cache[MX_CACHE_KINDS];
    uint64_t semcache[MX_SEM_KINDS];
    uint64_t judge[MX_AB_KINDS];
    uint64_t spans_exported, spans_dropped;
    mx_fallback fallbacks[MX_FALLBACKS];
    mx_guard guard[MX_GUARD];
    mx_hist  total, ttft, overhead;
    mx_series series[MX_SERIES];
    mx_dep   deps[MX_DEPS];
} mx_slot;

typedef struct mx_shm {
    int32_t  cp_connected;             /* -1: standalone */
    uint64_t spool_files;
    uint64_t health_seq;               /* the one cross-process RMW: once per upstream outcome */
    int      nslots;
    mx_slot  slots[];
} mx_shm;

static mx_shm  *g_shm;
static mx_slot *g_me;                  /* this worker's slot */
static int      g_listen_fd = -1;

/* Single writer per field: a relaxed load and store, never a locked add. */
static inline void add(uint64_t *p, uint64_t d) { __atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + d, __ATOMIC_RELAXED); }
static inline uint64_t rd(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

int metrics_init(int max_workers)
{
    if (g_shm) return 0;
    size_t size = sizeof(mx_shm) + (size_t)max_workers * sizeof(mx_slot);
    /* pages are committed only when a worker touches its slot */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { log_error("metrics: mmap of %zu bytes failed", size); return -1; }
    g_shm = p;
    g_shm->nslots = max_workers;
    g_shm->cp_connected = -1;
    return 0;
}

void metrics_set_listener(int fd) { g_listen_fd = fd; }
int  metrics_listener(void) { return g_listen_fd; }

static void hist_observe(mx_hist *h, double ms)
{
    if (!(ms >= 0)) ms = 0;
    double s = ms / 1e3;
    size_t i = 0;
    while (i < MX_BUCKETS && s > g_bounds[i]) i++;
    add(&h->bucket[i], 1);
    add(&h->sum_us, (uint64_t)(ms * 1e3));
    add(&h->count, 1);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void copy_label(char *dst, size_t cap, const char *src)
{
    size_t n = src ? utf8_prefix(src, strlen(src), cap - 1) : 0;
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

static int label_eq(const char *stored, size_t cap, const char *s)
{
    s = s ? s : "";
    size_t n = strlen(s);
    if (n >= cap) n = utf8_prefix(s, n, cap - 1);
    return strncmp(stored, s, n) == 0 && stored[n] == '\0';
}

/* Open addressing in the worker's own slot; the reader sees an entry only
 * once its labels are written (used is stored with release). */
static mx_series *series_for(const char *model, const char *provider, int status)
{
    uint64_t h = fnv(fnv(1469598103934665603ull ^ (uint64_t)status, model ? model : ""), provider ? provider : "");
    for (unsigned probe = 0; probe < MX_SERIES - 1; probe++) {
        mx_series *s = &g_me->series[(h + probe) % (MX_SERIES - 1)];
        if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) {
            s->status = status;
            copy_label(s->model, sizeof s->model, model);
            copy_label(s->provider, sizeof s->provider, provider);
            __atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
            return s;
        }
        if (s->status == status && label_eq(s->model, sizeof s->model, model) &&
            label_eq(s->provider, sizeof s->provider, provider))
            return s;
    }
    /* full: the last entry is the overflow bucket, labelled "other" when first needed */
    mx_series *o = &g_me->series[MX_SERIES - 1];
    if (!__atomic_load_n(&o->used, __ATOMIC_ACQUIRE)) {
        o->status = 0;
        copy_label(o->model, sizeof o->model, "other");
        copy_label(o->provider, sizeof o->provider, "other");
        __atomic_store_n(&o->used, 1, __ATOMIC_RELEASE);
    }
    return o;
}

static mx_dep *dep_for(const char *model, const char *provider, const char *upstream, int index)
{
    uint64_t h = fnv(fnv(fnv(1469598103934665603ull, model), provider), upstream) + (uint64_t)index;
    for (unsigned probe = 0; probe < MX_DEPS; probe++) {
        mx_dep *d = &g_me->deps[(h + probe) % MX_DEPS];
        if (!__atomic_load_n(&d->used, __ATOMIC_ACQUIRE)) {
            copy_label(d->model, sizeof d->model, model);
            copy_label(d->provider, sizeof d->provider, provider);
            copy_label(d->upstream, sizeof d->upstream, upstream);
            d->index = index;
            __atomic_store_n(&d->used, 1, __ATOMIC_RELEASE);
            return d;
        }
        if (d->index == index && label_eq(d->model, sizeof d->model, model) &&
            label_eq(d->provider, sizeof d->provider, provider) && label_eq(d->upstream, sizeof d->upstream, upstream))
            return d;
    }
    return NULL;
}

void metrics_request(const mx_request *m)
{
    if (!g_me) return;
    mx_series *s = series_for(m->model, m->provider, m->status);
    add(&s->requests, 1);
    if (m->input_tokens > 0) add(&s->tok_in, (uint64_t)m->input_tokens);
    if (m->output_tokens > 0) add(&s->tok_out, (uint64_t)m->output_tokens);
    if (m->cost_e10 > 0) add(&s->cost_e10, (uint64_t)m->cost_e10);
    hist_observe(&g_me->total, m->total_ms);
    if (m->ttft_ms > 0) hist_observe(&g_me->ttft, m->ttft_ms);
    double over = m->total_ms - m->upstream_ms;
    hist_observe(&g_me->overhead, over > 0 ? over : 0);
}

void metrics_attempt(const char *model, const char *provider, const char *upstream_model, int index, int failed,
                     int breaker_open)
{
    if (!g_me || !model || !provider || !upstream_model) return;
    mx_dep *d = dep_for(model, provider, upstream_model, index);
    if (!d) return;
    add(failed ? &d->fail : &d->ok, 1);
    /* which worker saw the deployment last decides its health */
    __atomic_store_n(&d->last_seq, __atomic_add_fetch(&g_shm->health_seq, 1, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    __atomic_store_n(&d->last_ok, !failed, __ATOMIC_RELAXED);
    __atomic_store_n(&d->breaker_open, breaker_open, __ATOMIC_RELAXED);
}

void metrics_fallback(const char *from, const char *to)
{
    if (!g_me || !from || !to) return;
    mx_fallback *other = &g_me->fallbacks[MX_FALLBACKS - 1];
    for (int i = 0; i < MX_FALLBACKS - 1; i++) {
        mx_fallback *f = &g_me->fallbacks[i];
        if (!__atomic_load_n(&f->used, __ATOMIC_ACQUIRE)) {
            copy_label(f->from, sizeof f->from, from);
            copy_label(f->to, sizeof f->to, to);
            __atomic_store_n(&f->used, 1, __ATOMIC_RELEASE);
        } else if (!label_eq(f->from, sizeof f->from, from) || !label_eq(f->to, sizeof f->to, to)) {
            continue;
        }
        add(&f->n, 1);
        return;
    }
    if (!__atomic_load_n(&other->used, __ATOMIC_ACQUIRE)) {   /* the overflow pair */
        copy_label(other->from, sizeof other->from, "other");
        copy_label(other->to, sizeof other->to, "other");
        __atomic_store_n(&other->used, 1, __ATOMIC_RELEASE);
    }
    add(&other->n, 1);
}

void metrics_guard(const char *stage, const char *detector, const char *action, uint64_t n)
{
    if (!g_me || !stage || !detector || !action) return;
    for (int i = 0; i < MX_GUARD; i++) {
        mx_guard *gd = &g_me->guard[i];
        const char *det = i == MX_GUARD - 1 ? "other" : detector;   /* the last slot takes the overflow */
        if (!__atomic_load_n(&gd->used, __ATOMIC_ACQUIRE)) {
            copy_label(gd->stage, sizeof gd->stage, stage);
            copy_label(gd->detector, sizeof gd->detector, det);
            copy_label(gd->action, sizeof gd->action, action);
            __atomic_store_n(&gd->used, 1, __ATOMIC_RELEASE);
        } else if (i < MX_GUARD - 1 && (!label_eq(gd->stage, sizeof gd->stage, stage) ||
                   !label_eq(gd->detector, sizeof gd->detector, det) || !label_eq(gd->action, sizeof gd->action, action))) {
            continue;
        }
        add(&gd->n, n);
        return;
    }
}

void metrics_cache(int result)
{
    if (g_me && result >= 0 && result < MX_CACHE_KINDS) add(&g_me->cache[result], 1);
}

void metrics_semcache(int result)
{
    if (g_me && result >= 0 && result < MX_SEM_KINDS) add(&g_me->semcache[result], 1);
}

void metrics_judge(int result)
{
    if (g_me && result >= 0 && result < MX_AB_KINDS) add(&g_me->judge[result], 1);
}

void metrics_rate_limited(int kind)
{
    if (g_me && kind >= 0 && kind < MX_LIMIT_KINDS) add(&g_me->rate_limited[kind], 1);
}

void metrics_trace_spans(uint64_t exported, uint64_t dropped)
{
    if (!g_me) return;
    if (exported) add(&g_me->spans_exported, exported);
    if (dropped) add(&g_me->spans_dropped, dropped);
}

void metrics_set_controlplane(int connected)
{
    if (g_shm) __atomic_store_n(&g_shm->cp_connected, connected, __ATOMIC_RELAXED);
}

void metrics_set_spool(uint64_t files)
{
    if (g_shm) __atomic_store_n(&g_shm->spool_files, files, __ATOMIC_RELAXED);
}

/* ---- rendering ---- */

/* A label value: Prometheus escapes backslash, quote and newline. */
static void put_label(buf_t *b, const char *name, const char *v)
{
    buf_puts(b, name);
    buf_puts(b, "=\"");
    for (; *v; v++) {
        if (*v == '\\') buf_puts(b, "\\\\");
        else if (*v == '"') buf_puts(b, "\\\"");
        else if (*v == '\n') buf_puts(b, "\\n");
        else buf_putc(b, *v);
    }
    buf_putc(b, '"');
}

static void put_cost(buf_t *b, uint64_t e10)
{
    buf_printf(b, "%" PRIu64 ".%010" PRIu64, e10 / (uint64_t)10000000000, e10 % (uint64_t)10000000000);
}

static int slot_live(const mx_slot *s) { return __atomic_load_n(&s->pid, __ATOMIC_RELAXED) != 0; }

static void render_hist(buf_t *b, const char *name, const char *help, size_t off)
{
    mx_hist sum;
    memset(&sum, 0, sizeof sum);
    for (int i = 0; i < g_shm->nslots; i++) {
        const mx_slot *s = &g_shm->slots[i];
        if (!slot_live(s)) continue;
        const mx_hist *h = (const mx_hist *)((const char *)s + off);
        for (size_t k = 0; k <= MX_BUCKETS; k++) sum.bucket[k] += rd(&h->bucket[k]);
        sum.sum_us += rd(&h->sum_us);
        sum.count += rd(&h->count);
    }
    buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t k = 0; k < MX_BUCKETS; k++) {
        cum += sum.bucket[k];
        buf_printf(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name, g_bounds[k], cum);
    }
    cum += sum.bucket[MX_BUCKETS];
    buf_printf(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
    buf_printf(b, "%s_sum %" PRIu64 ".%06" PRIu64 "\n", name, sum.sum_us / 1000000, sum.sum_us % 1000000);
    buf_printf(b, "%s_count %" PRIu64 "\n", name, sum.count);
}

/* The series of every worker merged by their labels (scrape time only). */
typedef struct merged {
    const mx_series *first;
    uint64_t requests, tok_in, tok_out, cost_e10;
} merged;

static size_t merge_series(merged *out, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < g_shm->nslots; i++) {
        const mx_slot *sl = &g_shm->slots[i];
        if (!slot_live(sl)) continue;
        for (int k = 0; k < MX_SERIES; k++) {
            const mx_series *s = &sl->series[k];
            if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) continue;
            size_t j = 0;
            while (j < n && !(out[j].first->status == s->status && !strcmp(out[j].first->model, s->model) &&
                              !strcmp(out[j].first->provider, s->provider)))
                j++;
            if (j == n) {
                if (n == cap) continue;
                out[n++] = (merged){ .first = s };
            }
            out[j].requests += rd(&s->requests);
            out[j].tok_in += rd(&s->tok_in);
            out[j].tok_out += rd(&s->tok_out);
            out[j].cost_e10 += rd(&s->cost_e10);
        }
    }
    return n;
}

/* Same model and provider as an earlier entry: tokens and cost are per (model, provider). */
static int seen_pair(const merged *m, size_t j)
{
    for (size_t i = 0; i < j; i++)
        if (!strcmp(m[i].first->model, m[j].first->model) && !strcmp(m[i].first->provider, m[j].first->provider))
            return 1;
    return 0;
}

static void render_series(buf_t *b)
{
    size_t cap = (size_t)MX_SERIES * 4;
    merged *m = calloc(cap, sizeof *m);
    size_t n = m ? merge_series(m, cap) : 0;

    buf_puts(b, "# HELP gatewayllm_requests_total API requests by model alias, provider and HTTP status.\n"
                "# TYPE gatewayllm_requests_total counter\n");
    for (size_t j = 0; j < n; j++) {
        buf_puts(b, "gatewayllm_requests_total{");
        put_label(b, "model", m[j].first->model);
        buf_putc(b, ',');
        put_label(b, "provider", m[j].first->provider);
        buf_printf(b, ",status=\"%d\"} %" PRIu64 "\n", m[j].first->status, m[j].requests);
    }
    buf_puts(b, "# HELP gatewayllm_tokens_total Tokens reported by providers.\n"
                "# TYPE gatewayllm_tokens_total counter\n");
    for (size_t j = 0; j < n; j++) {
        if (!m[j].first->provider[0] || seen_pair(m, j)) continue;
        uint64_t in = 0, out = 0;
        for (size_t k = j; k < n; k++)
            if (!strcmp(m[k].first->model, m[j].first->model) && !strcmp(m[k].first->provider, m[j].first->provider)) {
                in += m[k].tok_in;
                out += m[k].tok_out;
            }
        for (int dir = 0; dir < 2; dir++) {
            buf_puts(b, "gatewayllm_tokens_total{");
            put_label(b, "model", m[j].first->model);
            buf_putc(b, ',');
            put_label(b, "provider", m[j].first->provider);
            buf_printf(b, ",direction=\"%s\"} %" PRIu64 "\n", dir ? "output" : "input", dir ? out : in);
        }
    }
    buf_puts(b, "# HELP gatewayllm_cost_usd_total Cost of the requests, USD.\n"
                "# TYPE gatewayllm_cost_usd_total counter\n");
    for (size_t j = 0; j < n; j++) {
        if (!m[j].first->provider[0] || seen_pair(m, j)) continue;
        uint64_t c = 0;
        for (size_t k = j; k < n; k++)
            if (!strcmp(m[k].first->model, m[j].first->model) && !strcmp(m[k].first->provider, m[j].first->provider))
                c += m[k].cost_e10;
        buf_puts(b, "gatewayllm_cost_usd_total{");
        put_label(b, "model", m[j].first->model);
        buf_putc(b, ',');
        put_label(b, "provider", m[j].first->provider);
        buf_puts(b, "} ");
        put_cost(b, c);
        buf_putc(b, '\n');
    }
    free(m);
}

/* Prometheus wants each family in one group: one pass per family. */
enum { DEP_HEALTHY, DEP_FAILURES, DEP_BREAKER };

static void render_deps_family(buf_t *b, int family)
{
    /* deployments are few: for each first sighting, scan every slot for the freshest outcome */
    for (int i = 0; i < g_shm->nslots; i++) {
        const mx_slot *sl = &g_shm->slots[i];
        if (!slot_live(sl)) continue;
        for (int k = 0; k < MX_DEPS; k++) {
            const mx_dep *d = &sl->deps[k];
            if (!__atomic_load_n(&d->used, __ATOMIC_ACQUIRE)) continue;
            int earlier = 0;
            uint64_t best_seq = 0, ok = 0, fail = 0;
            int healthy = 1, open = 0;
            for (int i2 = 0; i2 < g_shm->nslots && !earlier; i2++) {
                const mx_slot *s2 = &g_shm->slots[i2];
                if (!slot_live(s2)) continue;
                for (int k2 = 0; k2 < MX_DEPS; k2++) {
                    const mx_dep *e = &s2->deps[k2];
                    if (!__atomic_load_n(&e->used, __ATOMIC_ACQUIRE) || e->index != d->index || strcmp(e->model, d->model) ||
                        strcmp(e->provider, d->provider) || strcmp(e->upstream, d->upstream))
                        continue;
                    if (i2 < i || (i2 == i && k2 < k)) { earlier = 1; break; }
                    ok += rd(&e->ok);
                    fail += rd(&e->fail);
                    open |= __atomic_load_n(&e->breaker_open, __ATOMIC_RELAXED);
                    uint64_t seq = rd(&e->last_seq);
                    if (seq >= best_seq) { best_seq = seq; healthy = __atomic_load_n(&e->last_ok, __ATOMIC_RELAXED); }
                }
            }
            if (earlier) continue;
            buf_puts(b, family == DEP_FAILURES ? "gatewayllm_deployment_failures_total{"
                        : family == DEP_BREAKER ? "gatewayllm_deployment_breaker_open{" : "gatewayllm_deployment_healthy{");
            put_label(b, "model", d->model);
            buf_putc(b, ',');
            put_label(b, "provider", d->provider);
            buf_putc(b, ',');
            put_label(b, "upstream_model", d->upstream);
            buf_printf(b, ",deployment=\"%d\"", d->index);
            if (family == DEP_FAILURES) buf_printf(b, "} %" PRIu64 "\n", fail);
            else if (family == DEP_BREAKER) buf_printf(b, "} %d\n", open ? 1 : 0);
            else buf_printf(b, "} %d\n", healthy ? 1 : 0);
            (void)ok;
        }
    }
}

/* A per-slot table of labelled counters (fallbacks, guardrail verdicts):
 * every entry starts with its `used` flag; each distinct label set is
 * printed once, summed over the live workers. */
typedef struct mx_table {
    const char *name;
    size_t      off, size, count, n_off;   /* in mx_slot; one entry; entries; its counter */
    int       (*same)(const void *a, const void *b);
    void      (*labels)(buf_t *b, const void *e);
} mx_table;

static const void *table_entry(const mx_table *t, const mx_slot *sl, size_t k)
{
    return (const char *)sl + t->off + k * t->size;
}

static int entry_used(const void *e) { return __atomic_load_n((const uint32_t *)e, __ATOMIC_ACQUIRE) != 0; }

static void render_table(buf_t *b, const mx_table *t)
{
    for (int i = 0; i < g_shm->nslots; i++) {
        const mx_slot *sl = &g_shm->slots[i];
        if (!slot_live(sl)) continue;
        for (size_t k = 0; k < t->count; k++) {
            const void *f = table_entry(t, sl, k);
            if (!entry_used(f)) continue;
            int earlier = 0;   /* printed with the first slot and entry that has these labels */
            uint64_t n = 0;
            for (int i2 = 0; i2 < g_shm->nslots && !earlier; i2++) {
                const mx_slot *s2 = &g_shm->slots[i2];
                if (!slot_live(s2)) continue;
                for (size_t k2 = 0; k2 < t->count; k2++) {
                    const void *e = table_entry(t, s2, k2);
                    if (!entry_used(e) || !t->same(e, f)) continue;
                    if (i2 < i || (i2 == i && k2 < k)) { earlier = 1; break; }
                    n += rd((const uint64_t *)((const char *)e + t->n_off));
                }
            }
            if (earlier) continue;
            buf_puts(b, t->name);
            buf_putc(b, '{');
            t->labels(b, f);
            buf_printf(b, "} %" PRIu64 "\n", n);
        }
    }
}

static int same_fallback(const void *a, const void *b)
{
    const mx_fallback *x = a, *y = b;
    return !strcmp(x->from, y->from) && !strcmp(x->to, y->to);
}

static void fallback_labels(buf_t *b, const void *e)
{
    const mx_fallback *f = e;
    put_label(b, "from", f->from);
    buf_putc(b, ',');
    put_label(b, "to", f->to);
}

static int same_guard(const void *a, const void *b)
{
    const mx_guard *x = a, *y = b;
    return !strcmp(x->stage, y->stage) && !strcmp(x->detector, y->detector) && !strcmp(x->action, y->action);
}

static void guard_labels(buf_t *b, const void *e)
{
    const mx_guard *g = e;
    put_label(b, "stage", g->stage);
    buf_putc(b, ',');
    put_label(b, "detector", g->detector);
    buf_putc(b, ',');
    put_label(b, "action", g->action);
}

static const mx_table fallback_table = {
    "gatewayllm_fallbacks_total", offsetof(mx_slot, fallbacks), sizeof(mx_fallback), MX_FALLBACKS,
    offsetof(mx_fallback, n), same_fallback, fallback_labels,
};
static const mx_table guard_table = {
    "gatewayllm_guardrail_verdicts_total", offsetof(mx_slot, guard), sizeof(mx_guard), MX_GUARD,
    offsetof(mx_guard, n), same_guard, guard_labels,
};

static void render_deps(buf_t *b)
{
    buf_puts(b, "# HELP gatewayllm_deployment_healthy 1 when the last call to the deployment (on any worker) succeeded.\n"
                "# TYPE gatewayllm_deployment_healthy gauge\n");
    render_deps_family(b, DEP_HEALTHY);
    buf_puts(b, "# HELP gatewayllm_deployment_failures_total Calls to the deployment that failed (transport, timeout, 5xx).\n"
                "# TYPE gatewayllm_deployment_failures_total counter\n");
    render_deps_family(b, DEP_FAILURES);
    buf_puts(b, "# HELP gatewayllm_deployment_breaker_open 1 while a worker's circuit breaker keeps traffic away from the deployment (open or half-open).\n"
                "# TYPE gatewayllm_deployment_breaker_open gauge\n");
    render_deps_family(b, DEP_BREAKER);
}

void metrics_render(buf_t *b)
{
    if (!g_shm) return;
    render_series(b);
    render_hist(b, "gatewayllm_request_duration_seconds", "Whole request, first byte in to last byte out.",
                offsetof(mx_slot, total));
    render_hist(b, "gatewayllm_time_to_first_token_seconds", "Request start to the provider's first byte.",
                offsetof(mx_slot, ttft));
    render_hist(b, "gatewayllm_overhead_seconds", "Gateway time, excluding the time spent waiting on the provider.",
                offsetof(mx_slot, overhead));

    uint64_t rl[MX_LIMIT_KINDS] = { 0 }, cache[MX_CACHE_KINDS] = { 0 }, sem[MX_SEM_KINDS] = { 0 }, judge[MX_AB_KINDS] = { 0 }, exp = 0, drop = 0, version = 0;
    int redis_up = 0, redis_any = 0, redis_down = 0;
    for (int i = 0; i < g_shm->nslots; i++) {
        const mx_slot *s = &g_shm->slots[i];
        if (!slot_live(s)) continue;
        for (int k = 0; k < MX_LIMIT_KINDS; k++) rl[k] += rd(&s->rate_limited[k]);
        for (int k = 0; k < MX_CACHE_KINDS; k++) cache[k] += rd(&s->cache[k]);
        for (int k = 0; k < MX_SEM_KINDS; k++) sem[k] += rd(&s->semcache[k]);
        for (int k = 0; k < MX_AB_KINDS; k++) judge[k] += rd(&s->judge[k]);
        exp += rd(&s->spans_exported);
        drop += rd(&s->spans_dropped);
        uint64_t v = rd(&s->config_version);
        if (v > version) version = v;
        int r = __atomic_load_n(&s->redis, __ATOMIC_RELAXED);
        if (r >= 0) { redis_any = 1; if (r) redis_up = 1; else redis_down = 1; }
    }
    static const char *const lk[] = { "rpm", "tpm", "budget" };
    buf_puts(b, "# HELP gatewayllm_rate_limited_total Requests refused with 429, by limit kind.\n"
                "# TYPE gatewayllm_rate_limited_total counter\n");
    for (int k = 0; k < MX_LIMIT_KINDS; k++)
        buf_printf(b, "gatewayllm_rate_limited_total{kind=\"%s\"} %" PRIu64 "\n", lk[k], rl[k]);
    static const char *const ck[] = { "hit", "miss", "bypass" };
    buf_puts(b, "# HELP gatewayllm_cache_requests_total Response-cache lookups by result.\n"
                "# TYPE gatewayllm_cache_requests_total counter\n");
    for (int k = 0; k < MX_CACHE_KINDS; k++)
        buf_printf(b, "gatewayllm_cache_requests_total{result=\"%s\"} %" PRIu64 "\n", ck[k], cache[k]);
    static const char *const sk[] = { "optout", "tools", "temperature", "content", "embedding" };
    buf_puts(b, "# HELP gatewayllm_semantic_cache_total Semantic-cache lookups by result; skips by reason.\n"
                "# TYPE gatewayllm_semantic_cache_total counter\n");
    buf_printf(b, "gatewayllm_semantic_cache_total{result=\"hit\",reason=\"\"} %" PRIu64 "\n", sem[MX_SEM_HIT]);
    buf_printf(b, "gatewayllm_semantic_cache_total{result=\"miss\",reason=\"\"} %" PRIu64 "\n", sem[MX_SEM_MISS]);
    for (int k = MX_SEM_SKIP_FIRST; k < MX_SEM_KINDS; k++)
        buf_printf(b, "gatewayllm_semantic_cache_total{result=\"skip\",reason=\"%s\"} %" PRIu64 "\n",
                   sk[k - MX_SEM_SKIP_FIRST], sem[k]);
    static const char *const jk[] = { "started", "verdict", "dropped", "failed", "unparsed" };
    buf_puts(b, "# HELP gatewayllm_ab_judgements_total Evaluated A/B judgements by outcome.\n"
                "# TYPE gatewayllm_ab_judgements_total counter\n");
    for (int k = 0; k < MX_AB_KINDS; k++)
        buf_printf(b, "gatewayllm_ab_judgements_total{result=\"%s\"} %" PRIu64 "\n", jk[k], judge[k]);
    buf_puts(b, "# HELP gatewayllm_fallbacks_total Requests moved from one alias to another.\n"
                "# TYPE gatewayllm_fallbacks_total counter\n");
    render_table(b, &fallback_table);
    buf_puts(b, "# HELP gatewayllm_guardrail_verdicts_total Guardrail verdicts by stage, detector and action.\n"
                "# TYPE gatewayllm_guardrail_verdicts_total counter\n");
    render_table(b, &guard_table);
    buf_printf(b, "# HELP gatewayllm_config_version Config snapshot version served.\n"
                  "# TYPE gatewayllm_config_version gauge\ngatewayllm_config_version %" PRIu64 "\n", version);
    int cp = __atomic_load_n(&g_shm->cp_connected, __ATOMIC_RELAXED);
    buf_printf(b, "# HELP gatewayllm_controlplane_connected 1 while the control plane answers (0 standalone).\n"
                  "# TYPE gatewayllm_controlplane_connected gauge\ngatewayllm_controlplane_connected %d\n", cp > 0);
    buf_printf(b, "# HELP gatewayllm_redis_connected 1 while every worker reaches Redis (absent without redis_url).\n"
                  "# TYPE gatewayllm_redis_connected gauge\n");
    if (redis_any) buf_printf(b, "gatewayllm_redis_connected %d\n", redis_up && !redis_down);
    buf_printf(b, "# HELP gatewayllm_usage_spool_files Usage batches on disk waiting for the control plane.\n"
                  "# TYPE gatewayllm_usage_spool_files gauge\ngatewayllm_usage_spool_files %" PRIu64 "\n",
               (uint64_t)__atomic_load_n(&g_shm->spool_files, __ATOMIC_RELAXED));
    buf_printf(b, "# HELP gatewayllm_trace_spans_exported_total Spans accepted by the OTLP collector.\n"
                  "# TYPE gatewayllm_trace_spans_exported_total counter\ngatewayllm_trace_spans_exported_total %" PRIu64 "\n", exp);
    buf_printf(b, "# HELP gatewayllm_trace_spans_dropped_total Spans dropped (collector away or queue full).\n"
                  "# TYPE gatewayllm_trace_spans_dropped_total counter\ngatewayllm_trace_spans_dropped_total %" PRIu64 "\n", drop);
    render_deps(b);
}

/* ---- the worker side: /metrics and its gauges ---- */

static struct evhtp *g_htp;
static struct event *g_tick;
static struct worker *g_w;

static void refresh_gauges(void)
{
    if (!g_me || !g_w) return;
    __atomic_store_n(&g_me->config_version, g_w->cfg ? g_w->cfg->version : 0, __ATOMIC_RELAXED);
    int r = -1;
    if (g_w->cfg && g_w->cfg->redis_url && *g_w->cfg->redis_url)
        r = rlredis_connected(g_w->rlstore) && cache_redis_ok(g_w->cache);
    __atomic_store_n(&g_me->redis, r, __ATOMIC_RELAXED);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what; (void)arg;
    refresh_gauges();
}

static void on_metrics(evhtp_request_t *req, void *arg)
{
    (void)arg;
    refresh_gauges();
    buf_t b;
    buf_init(&b);
    metrics_render(&b);
    if (b.oom) {
        http_send_json(req, 503, "{\"error\":\"out of memory\"}", 25);
    } else {
        evhtp_headers_add_header(req->headers_out,
            evhtp_header_new("Content-Type", "text/plain; version=0.0.4; charset=utf-8", 0, 0));
        evbuffer_add(req->buffer_out, b.data, b.len);
        http_send_reply(req, 200);
    }
    buf_free(&b);
}

static void on_other(evhtp_request_t *req, void *arg)
{
    (void)arg;
    static const char nf[] = "{\"error\":\"not found: try /metrics\"}";
    http_send_json(req, 404, nf, sizeof nf - 1);
}

int metrics_worker_start(struct worker *w)
{
    if (!g_shm) return 0;
    if (w->index < 0 || w->index >= g_shm->nslots) return -1;
    g_w = w;
    g_me = &g_shm->slots[w->index];
    __atomic_store_n(&g_me->pid, (int32_t)getpid(), __ATOMIC_RELAXED);
    refresh_gauges();
    struct timeval sec = { 1, 0 };
    if (!(g_tick = event_new(w->base, -1, EV_PERSIST, on_tick, NULL)) || event_add(g_tick, &sec) < 0) return -1;
    if (g_listen_fd < 0) return 0;
    if (!(g_htp = evhtp_new(w->base, NULL))) return -1;
    struct timeval idle = { 10, 0 };
    evhtp_set_timeouts(g_htp, &idle, &idle);
    evhtp_set_max_body_size(g_htp, 4096);   /* scrapes are GETs */
    if (!evhtp_set_cb(g_htp, "/metrics", on_metrics, NULL)) return -1;
    evhtp_set_gencb(g_htp, on_other, NULL);
    if (evhtp_accept_socket(g_htp, g_listen_fd, 1024) < 0) { log_error("metrics: cannot accept on the listener"); return -1; }
    return 0;
}

void metrics_worker_stop(void)
{
    if (g_tick) { event_free(g_tick); g_tick = NULL; }
    if (g_htp) { evhtp_free(g_htp); g_htp = NULL; }
    g_w = NULL;
}
