/* trace: request spans, batched to an OTLP/HTTP collector (trace.h; the
 * encodings are otlp_pb.c and otlp_json.c). */
#include "trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "otlp.h"
#include "upstream.h"

struct tracer {
    struct event_base *base;
    upstream_t        *up;
    char              *url, *service;
    double             ratio;
    int                protocol;     /* TRACE_PROTO_* */
    otlp_pb            pb;           /* the batch header's constant bytes */
    size_t             max_spans, batch;
    otlp_rec          *ring;         /* one record per sampled request, max_spans of them */
    size_t             head, count;  /* records */
    size_t             spans;        /* spans in the ring */
    uint64_t           rng[2];
    struct event      *timer;
    upstream_req_t    *inflight;
    int                inflight_status;
    size_t             inflight_spans;
    buf_t              body;        /* the batch being sent (must outlive the call) */
    uint64_t           dropped_logged;
    int64_t            mono_to_unix_ns;   /* wall clock minus monotonic, re-read every flush tick */
};

static int64_t ts_ns(const struct timespec *ts) { return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec; }

/* Span times are wall-clock; a request's phases are timed on the monotonic
 * clock. Their difference is read once a tick rather than once a request. */
static void sync_clocks(tracer *t)
{
    struct timespec wall, mono;
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    t->mono_to_unix_ns = ts_ns(&wall) - ts_ns(&mono);
}

/* ---- ids ---- */

static uint64_t next_rand(tracer *t)
{
    /* xorshift128+: ids need to be unique, not secret */
    uint64_t s1 = t->rng[0];
    const uint64_t s0 = t->rng[1];
    t->rng[0] = s0;
    s1 ^= s1 << 23;
    t->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return t->rng[1] + s0;
}

/* A span id (8 bytes) or a trace id (16): never all zeros, which is invalid. */
static void rand_id(tracer *t, uint8_t *out, size_t n)
{
    uint64_t v = next_rand(t), w = n > 8 ? next_rand(t) : 0;
    if (!v && !w) v = 1;
    memcpy(out, &v, 8);
    if (n > 8) memcpy(out + 8, &w, 8);
}

/* ---- traceparent ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;   /* W3C: lowercase only */
}

static int parse_hex(const char *s, uint8_t *out, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hi < 0 ? -1 : hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i];
    }
    return nonzero ? 0 : -1;   /* all zeros is invalid */
}

int trace_parse_traceparent(const char *s, uint8_t trace_id[16], uint8_t parent_id[8], int *sampled)
{
    /* vv-<32 hex>-<16 hex>-ff, 55 bytes; a later version may append "-..." */
    if (!s) return -1;
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strnlen(s, 128);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n < 55) return -1;
    int v1 = hexval(s[0]), v0 = v1 < 0 ? -1 : hexval(s[1]);
    if (v1 < 0 || v0 < 0 || (v1 == 15 && v0 == 15)) return -1;   /* ff is forbidden */
    int version = v1 << 4 | v0;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-') return -1;
    if (version == 0 && n != 55) return -1;
    if (version > 0 && n > 55 && s[55] != '-') return -1;
    uint8_t tid[16], pid[8], fl;
    if (parse_hex(s + 3, tid, 16) < 0 || parse_hex(s + 36, pid, 8) < 0) return -1;
    int f1 = hexval(s[53]), f0 = f1 < 0 ? -1 : hexval(s[54]);
    if (f1 < 0 || f0 < 0) return -1;
    fl = (uint8_t)(f1 << 4 | f0);
    memcpy(trace_id, tid, 16);
    memcpy(parent_id, pid, 8);
    *sampled = fl & 1;
    return 0;
}

void trace_format_traceparent(const uint8_t trace_id[16], const uint8_t span_id[8], int sampled, char out[56])
{
    memcpy(out, "00-", 3);
    hex_lower(out + 3, trace_id, 16);
    out[35] = '-';
    hex_lower(out + 36, span_id, 8);
    out[52] = '-';
    out[53] = '0';
    out[54] = sampled ? '1' : '0';
    out[55] = '\0';
}

/* ---- per request ---- */

const char *trace_id_hex(trace_ctx *c)
{
    if (!c->hex_ready) { hex_lower(c->trace_hex, c->trace_id, 16); c->hex_ready = 1; }
    return c->trace_hex;
}

void trace_format_upstream(trace_ctx *c, char out[56])
{
    memcpy(out, "00-", 3);
    memcpy(out + 3, trace_id_hex(c), 32);
    out[35] = '-';
    hex_lower(out + 36, c->up_span_id, 8);
    out[52] = '-';
    out[53] = '0';
    out[54] = c->up_sampled ? '1' : '0';
    out[55] = '\0';
}

static int64_t ns_between(const struct timespec *a, const struct timespec *b)
{
    return (int64_t)(b->tv_sec - a->tv_sec) * 1000000000 + (b->tv_nsec - a->tv_nsec);
}

static int64_t since_t0_ns(const trace_ctx *c)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ns_between(&c->t0, &now);
}

void trace_begin(tracer *t, trace_ctx *c, const struct timespec *t0, const char *tp)
{
    memset(c, 0, sizeof *c);
    int parent_sampled = 0;
    int has_parent = trace_parse_traceparent(tp, c->trace_id, c->parent_id, &parent_sampled) == 0;
    if (!t) {
        /* no tracing here: the client's context still reaches the upstream unchanged */
        c->propagate = has_parent;
        memcpy(c->up_span_id, c->parent_id, 8);
        c->up_sampled = parent_sampled;
        return;
    }
    if (!has_parent) rand_id(t, c->trace_id, 16);
    c->sampled = has_parent ? parent_sampled
                            : (t->ratio >= 1.0 || (double)(next_rand(t) >> 11) * 0x1.0p-53 < t->ratio);
    rand_id(t, c->span_id, 8);
    rand_id(t, c->up_span_id, 8);
    c->propagate = 1;
    c->up_sampled = c->sampled;
    if (!c->sampled) return;
    c->t0 = *t0;
    c->start_unix_ns = ts_ns(t0) + t->mono_to_unix_ns;
}



static inline uint8_t copy_str(char *dst, size_t cap, const char *s) { return (uint8_t)str_copy_trunc(dst, cap, s); }

void trace_end(tracer *t, trace_ctx *c, const trace_attrs *a)
{
    if (!t || !c->sampled) return;
    c->sampled = 0;   /* once */
    int64_t end = since_t0_ns(c);
    unsigned phases = 0, n = 1;
    for (int p = 0; p < TR_PHASES; p++)
        if (c->mark_ns[p][0]) { phases |= 1u << p; n++; }
    if (t->spans + n > t->max_spans) { metrics_trace_spans(0, n); return; }   /* full: drop, count */
    otlp_rec *r = &t->ring[(t->head + t->count) % t->max_spans];
    t->count++;
    t->spans += n;
    memcpy(r->trace_id, c->trace_id, 16);
    memcpy(r->span_id, c->span_id, 8);
    memcpy(r->parent_id, c->parent_id, 8);
    r->has_parent = !!(c->parent_id[0] | c->parent_id[1] | c->parent_id[2] | c->parent_id[3] |
                       c->parent_id[4] | c->parent_id[5] | c->parent_id[6] | c->parent_id[7]);
    r->start_ns = c->start_unix_ns;
    r->end_ns = c->start_unix_ns + end;
    r->phases = (uint8_t)phases;
    r->nspans = (uint8_t)n;
    for (int p = 0; p < TR_PHASES; p++) {
        if (!(phases & (1u << p))) continue;
        if (p == TR_UPSTREAM) memcpy(r->child_id[p], c->up_span_id, 8);
        else rand_id(t, r->child_id[p], 8);
        r->phase_ns[p][0] = c->start_unix_ns + c->mark_ns[p][0] - 1;
        r->phase_ns[p][1] = c->start_unix_ns + (c->mark_ns[p][1] ? c->mark_ns[p][1] - 1 : end);
    }
    r->status = a->status;
    r->up_status = a->upstream_status;
    r->up_failed = (uint8_t)a->upstream_failed;
    r->stream = (uint8_t)a->stream;
    r->cache_hit = (uint8_t)a->cache_hit;
    r->in_tok = a->input_tokens;
    r->out_tok = a->output_tokens;
    r->route = a->route ? a->route : "";
    r->route_len = (uint8_t)strnlen(r->route, OTLP_ROUTE_MAX);
    r->model_len = copy_str(r->model, sizeof r->model, a->model);
    r->provider_len = copy_str(r->provider, sizeof r->provider, a->provider);
    r->upstream_model_len = copy_str(r->upstream_model, sizeof r->upstream_model, a->upstream_model);
    r->request_id_len = copy_str(r->request_id, sizeof r->request_id, a->request_id);
    r->err_len = copy_str(r->err, sizeof r->err, a->error);
    if (t->spans >= t->batch && !t->inflight) event_active(t->timer, EV_TIMEOUT, 0);
}

/* ---- export ---- */

static void on_export_response(void *ud, upstream_req_t *u, int status)
{
    tracer *t = ud;
    (void)u;
    t->inflight_status = status;
}

static int on_export_data(void *ud, upstream_req_t *u, const char *d, size_t n)
{
    (void)ud; (void)u; (void)d; (void)n;
    return 0;   /* the collector's answer body is not needed */
}

static void on_export_done(void *ud, upstream_req_t *u, upstream_result res, const char *err)
{
    tracer *t = ud;
    (void)u;
    t->inflight = NULL;
    int ok = res == UPSTREAM_OK && t->inflight_status >= 200 && t->inflight_status < 300;
    if (ok) metrics_trace_spans(t->inflight_spans, 0);
    else {
        metrics_trace_spans(0, t->inflight_spans);   /* bounded memory: a failed batch is not retried */
        if (t->dropped_logged++ % 100 == 0)
            log_warn("tracing: collector %s: %s; %zu spans dropped", t->url,
                     res != UPSTREAM_OK ? (err && *err ? err : upstream_result_name(res)) : "non-2xx answer",
                     t->inflight_spans);
    }
    t->inflight_spans = 0;
    if (t->spans >= t->batch) event_active(t->timer, EV_TIMEOUT, 0);
}

static const upstream_callbacks export_cb = {
    .on_response = on_export_response, .on_data = on_export_data, .on_done = on_export_done,
};

const char *trace_content_type(const tracer *t)
{
    return t->protocol == TRACE_PROTO_JSON ? "application/json" : "application/x-protobuf";
}

size_t trace_take_batch(tracer *t, const char **body, size_t *len)
{
    if (!t || t->count == 0) return 0;
    buf_t *b = &t->body;
    int json = t->protocol == TRACE_PROTO_JSON;
    if (json) otlp_json_begin(b, t->service);
    else otlp_pb_begin(&t->pb, b);
    size_t recs = 0, spans = 0;
    while (recs < t->count) {   /* whole requests, up to batch spans (at least one request) */
        const otlp_rec *r = &t->ring[(t->head + recs) % t->max_spans];
        if (recs && spans + r->nspans > t->batch) break;
        if (json) otlp_json_put(b, r, recs == 0);
        else otlp_pb_put(b, r);
        recs++;
        spans += r->nspans;
    }
    t->head = (t->head + recs) % t->max_spans;
    t->count -= recs;
    t->spans -= spans;
    /* emptied (the steady state): start again at slot 0, so the records in
     * use stay the same few cache-warm kilobytes instead of walking the
     * whole ring (MBs) and missing the cache on every record */
    if (t->count == 0) t->head = 0;
    *body = json ? otlp_json_end(b, len) : otlp_pb_end(&t->pb, b, len);
    if (!*body) {   /* out of memory: the batch is lost */
        metrics_trace_spans(0, spans);
        buf_free(b);
        buf_init(b);
        return 0;
    }
    return spans;
}

void trace_flush(tracer *t)
{
    if (!t || t->inflight || t->count == 0) return;
    const char *body;
    size_t len, n = trace_take_batch(t, &body, &len);
    if (!n) return;
    const char *headers[] = { t->protocol == TRACE_PROTO_JSON ? "Content-Type: application/json"
                                                              : "Content-Type: application/x-protobuf", NULL };
    upstream_request req = {
        .method = "POST", .url = t->url, .headers = headers, .body = body, .body_len = len,
        .max_response_bytes = 1 << 20,
        .timeouts = { .connect_ms = 1000, .first_byte_ms = 5000, .idle_ms = 5000, .total_ms = 10000 },
    };
    t->inflight_status = 0;
    t->inflight_spans = n;
    if (!(t->inflight = upstream_start(t->up, &req, &export_cb, t))) {
        metrics_trace_spans(0, n);
        t->inflight_spans = 0;
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    sync_clocks(arg);
    trace_flush(arg);
}

tracer *tracer_new(struct event_base *base, upstream_t *up, const trace_settings *s)
{
    if (!s->endpoint || !*s->endpoint) return NULL;
    tracer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->base = base;
    t->up = up;
    t->ratio = s->sample_ratio;
    t->protocol = s->protocol;
    sync_clocks(t);
    t->max_spans = s->queue_spans ? s->queue_spans : 4096;
    t->batch = s->batch_spans ? s->batch_spans : 512;
    if (t->batch > t->max_spans) t->batch = t->max_spans;
    buf_init(&t->body);
    if (RAND_bytes((unsigned char *)t->rng, sizeof t->rng) != 1 || (!t->rng[0] && !t->rng[1])) {
        t->rng[0] = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
        t->rng[1] = (uint64_t)time(NULL) | 1;
    }
    long ms = s->flush_ms > 0 ? s->flush_ms : 1000;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    if (!(t->url = strdup(s->endpoint)) || !(t->service = strdup(s->service_name ? s->service_name : "gateway")) ||
        otlp_pb_init(&t->pb, t->service) < 0 ||
        !(t->ring = calloc(t->max_spans, sizeof *t->ring)) ||
        !(t->timer = event_new(base, -1, EV_PERSIST, on_timer, t)) || event_add(t->timer, &tv) < 0) {
        tracer_free(t);
        return NULL;
    }
    return t;
}

void tracer_free(tracer *t)
{
    if (!t) return;
    if (t->inflight) upstream_cancel(t->inflight);
    if (t->timer) event_free(t->timer);
    free(t->ring);
    free(t->url);
    free(t->service);
    otlp_pb_free(&t->pb);
    buf_free(&t->body);
    free(t);
}
