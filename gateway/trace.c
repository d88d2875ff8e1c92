/* trace: request spans, batched to an OTLP/HTTP collector as JSON (trace.h). */
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
#include "upstream.h"

#define LABEL 64

enum { K_INTERNAL = 1, K_SERVER = 2, K_CLIENT = 3 };

/* One finished span, fixed size: the ring never allocates. */
typedef struct span_rec {
    uint8_t     trace_id[16], span_id[8], parent_id[8];
    uint8_t     kind, phase;        /* phase: TR_* for children, TR_PHASES for the root */
    uint8_t     error, stream, cache_hit;
    int64_t     start_ns, end_ns;   /* unix ns */
    int         status;
    int64_t     in_tok, out_tok;
    const char *route;              /* a static string */
    char        model[LABEL], provider[24], upstream_model[LABEL], request_id[40], err[32];
} span_rec;

struct tracer {
    struct event_base *base;
    upstream_t        *up;
    char              *url, *service;
    double             ratio;
    size_t             cap, batch;
    span_rec          *ring;
    size_t             head, count;
    uint64_t           rng[2];
    struct event      *timer;
    upstream_req_t    *inflight;
    int                inflight_status;
    size_t             inflight_spans;
    buf_t              body;        /* the batch being sent (must outlive the call) */
    uint64_t           dropped_logged;
};

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

static void rand_id(tracer *t, uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = next_rand(t);
            memcpy(out + i, &v, n - i < 8 ? n - i : 8);
        }
    } while (!memcmp(out, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", n));   /* all-zero ids are invalid */
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

static void hex(char *out, const uint8_t *in, size_t n)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) { out[2 * i] = h[in[i] >> 4]; out[2 * i + 1] = h[in[i] & 15]; }
}

void trace_format_traceparent(const uint8_t trace_id[16], const uint8_t span_id[8], int sampled, char out[56])
{
    memcpy(out, "00-", 3);
    hex(out + 3, trace_id, 16);
    out[35] = '-';
    hex(out + 36, span_id, 8);
    out[52] = '-';
    out[53] = '0';
    out[54] = sampled ? '1' : '0';
    out[55] = '\0';
}

/* ---- per request ---- */

static int64_t since_t0_ns(const trace_ctx *c)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)(now.tv_sec - c->t0.tv_sec) * 1000000000 + (now.tv_nsec - c->t0.tv_nsec);
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
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    c->start_unix_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec - since_t0_ns(c);
}

void trace_mark(trace_ctx *c, int phase, int end)
{
    if (!c->sampled || phase < 0 || phase >= TR_PHASES) return;
    c->mark_ns[phase][end ? 1 : 0] = since_t0_ns(c) + 1;   /* +1: 0 means "not reached" */
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = s ? utf8_prefix(s, strlen(s), cap - 1) : 0;
    if (n) memcpy(dst, s, n);
    dst[n] = '\0';
}

static span_rec *push(tracer *t)
{
    if (t->count == t->cap) { metrics_trace_spans(0, 1); return NULL; }   /* full: drop, count */
    span_rec *s = &t->ring[(t->head + t->count) % t->cap];
    t->count++;
    memset(s, 0, offsetof(span_rec, model));
    s->model[0] = s->provider[0] = s->upstream_model[0] = s->request_id[0] = s->err[0] = '\0';
    return s;
}

void trace_end(tracer *t, trace_ctx *c, const trace_attrs *a)
{
    if (!t || !c->sampled) return;
    c->sampled = 0;   /* once */
    int64_t end = since_t0_ns(c);
    span_rec *root = push(t);
    if (root) {
        memcpy(root->trace_id, c->trace_id, 16);
        memcpy(root->span_id, c->span_id, 8);
        memcpy(root->parent_id, c->parent_id, 8);
        root->kind = K_SERVER;
        root->phase = TR_PHASES;
        root->start_ns = c->start_unix_ns;
        root->end_ns = c->start_unix_ns + end;
        root->status = a->status;
        root->error = a->status >= 500;
        root->stream = (uint8_t)a->stream;
        root->cache_hit = (uint8_t)a->cache_hit;
        root->in_tok = a->input_tokens;
        root->out_tok = a->output_tokens;
        root->route = a->route;
        copy_str(root->model, sizeof root->model, a->model);
        copy_str(root->provider, sizeof root->provider, a->provider);
        copy_str(root->upstream_model, sizeof root->upstream_model, a->upstream_model);
        copy_str(root->request_id, sizeof root->request_id, a->request_id);
        copy_str(root->err, sizeof root->err, a->error);
    }
    for (int p = 0; p < TR_PHASES; p++) {
        if (!c->mark_ns[p][0]) continue;
        span_rec *s = push(t);
        if (!s) break;
        memcpy(s->trace_id, c->trace_id, 16);
        if (p == TR_UPSTREAM) memcpy(s->span_id, c->up_span_id, 8);
        else rand_id(t, s->span_id, 8);
        memcpy(s->parent_id, c->span_id, 8);
        s->kind = p == TR_UPSTREAM ? K_CLIENT : K_INTERNAL;
        s->phase = (uint8_t)p;
        s->start_ns = c->start_unix_ns + c->mark_ns[p][0] - 1;
        s->end_ns = c->start_unix_ns + (c->mark_ns[p][1] ? c->mark_ns[p][1] - 1 : end);
        if (p == TR_UPSTREAM) {
            s->status = a->upstream_status;
            s->error = (uint8_t)a->upstream_failed;
            s->in_tok = a->input_tokens;
            s->out_tok = a->output_tokens;
            s->stream = (uint8_t)a->stream;
            copy_str(s->provider, sizeof s->provider, a->provider);
            copy_str(s->upstream_model, sizeof s->upstream_model, a->upstream_model);
        }
    }
    if (t->count >= t->batch && !t->inflight) event_active(t->timer, EV_TIMEOUT, 0);
}

/* ---- export ---- */

/* Export formats tens of thousands of spans a second: no printf, and every
 * fixed piece (a key with its JSON around it) is one literal of known length. */
#define PUT(b, lit) buf_append((b), (lit), sizeof(lit) - 1)
#define ATTR_HEAD(key, type) "{\"key\":\"" key "\",\"value\":{\"" type "\":"
#define ATTR_STR(b, first, key, v)  attr_str((b), (first), ATTR_HEAD(key, "stringValue"), sizeof(ATTR_HEAD(key, "stringValue")) - 1, (v))
#define ATTR_INT(b, first, key, v)  attr_int((b), (first), ATTR_HEAD(key, "intValue"), sizeof(ATTR_HEAD(key, "intValue")) - 1, (v))
#define ATTR_BOOL(b, first, key, v) attr_bool((b), (first), ATTR_HEAD(key, "boolValue"), sizeof(ATTR_HEAD(key, "boolValue")) - 1, (v))

static void attr_head(buf_t *b, int *first, const char *head, size_t n)
{
    if (!*first) buf_putc(b, ',');
    *first = 0;
    buf_append(b, head, n);
}

static void attr_str(buf_t *b, int *first, const char *head, size_t n, const char *v)
{
    if (!v || !*v) return;
    attr_head(b, first, head, n);
    buf_json_str(b, v, strlen(v));
    PUT(b, "}}");
}

static void attr_int(buf_t *b, int *first, const char *head, size_t n, int64_t v)
{
    attr_head(b, first, head, n);
    buf_putc(b, '"');
    buf_put_i64(b, v);
    PUT(b, "\"}}");
}

static void attr_bool(buf_t *b, int *first, const char *head, size_t n, int v)
{
    attr_head(b, first, head, n);
    if (v) PUT(b, "true}}");
    else PUT(b, "false}}");
}

static void put_hex(buf_t *b, const uint8_t *in, size_t n)
{
    char id[33];
    hex(id, in, n);
    buf_append(b, id, 2 * n);
}

static void put_span(buf_t *b, const span_rec *s)
{
    static const struct { const char *s; size_t n; } phase_name[TR_PHASES] = {
        { "gateway.auth", 12 }, { "gateway.limits", 14 }, { "gateway.route", 13 }, { "", 0 },
    };
    buf_reserve(b, 1536);   /* one growth check for most spans */
    PUT(b, "{\"traceId\":\"");
    put_hex(b, s->trace_id, 16);
    PUT(b, "\",\"spanId\":\"");
    put_hex(b, s->span_id, 8);
    buf_putc(b, '"');
    static const uint8_t zero[8];
    if (memcmp(s->parent_id, zero, 8)) {
        PUT(b, ",\"parentSpanId\":\"");
        put_hex(b, s->parent_id, 8);
        buf_putc(b, '"');
    }
    if (s->phase == TR_PHASES) {
        PUT(b, ",\"name\":\"POST ");
        buf_puts(b, s->route ? s->route : "");   /* a static route path: nothing to escape */
        buf_putc(b, '"');
    } else if (s->phase == TR_UPSTREAM) {
        char name[LABEL + 8];   /* "chat <model>", as the GenAI conventions name it */
        size_t mn = strnlen(s->upstream_model, sizeof name - 6);
        memcpy(name, "chat ", 5);
        memcpy(name + 5, s->upstream_model, mn);
        PUT(b, ",\"name\":");
        buf_json_str(b, name, 5 + mn);
    } else {
        PUT(b, ",\"name\":\"");
        buf_append(b, phase_name[s->phase].s, phase_name[s->phase].n);
        buf_putc(b, '"');
    }
    PUT(b, ",\"kind\":");
    buf_put_i64(b, s->kind);
    PUT(b, ",\"startTimeUnixNano\":\"");
    buf_put_i64(b, s->start_ns);
    PUT(b, "\",\"endTimeUnixNano\":\"");
    buf_put_i64(b, s->end_ns);
    PUT(b, "\",\"attributes\":[");
    int first = 1;
    if (s->phase == TR_PHASES) {
        ATTR_STR(b, &first, "http.request.method", "POST");
        ATTR_STR(b, &first, "url.path", s->route);
        ATTR_INT(b, &first, "http.response.status_code", s->status);
        ATTR_STR(b, &first, "gateway.request_id", s->request_id);
        ATTR_STR(b, &first, "gen_ai.operation.name", "chat");
        ATTR_STR(b, &first, "gen_ai.request.model", s->model);
        ATTR_STR(b, &first, "gen_ai.system", s->provider);
        ATTR_STR(b, &first, "gen_ai.provider.name", s->provider);
        ATTR_STR(b, &first, "gen_ai.response.model", s->upstream_model);
        ATTR_BOOL(b, &first, "gateway.stream", s->stream);
        ATTR_BOOL(b, &first, "gateway.cache_hit", s->cache_hit);
        if (s->in_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.input_tokens", s->in_tok);
        if (s->out_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.output_tokens", s->out_tok);
        ATTR_STR(b, &first, "error.type", s->err);
    } else if (s->phase == TR_UPSTREAM) {
        ATTR_STR(b, &first, "gen_ai.operation.name", "chat");
        ATTR_STR(b, &first, "gen_ai.system", s->provider);
        ATTR_STR(b, &first, "gen_ai.provider.name", s->provider);
        ATTR_STR(b, &first, "gen_ai.request.model", s->upstream_model);
        if (s->status) ATTR_INT(b, &first, "http.response.status_code", s->status);
        if (s->in_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.input_tokens", s->in_tok);
        if (s->out_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.output_tokens", s->out_tok);
    }
    if (s->error) PUT(b, "],\"status\":{\"code\":2}}");
    else PUT(b, "],\"status\":{\"code\":0}}");
}

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
    if (t->count >= t->batch) event_active(t->timer, EV_TIMEOUT, 0);
}

static const upstream_callbacks export_cb = {
    .on_response = on_export_response, .on_data = on_export_data, .on_done = on_export_done,
};

void trace_flush(tracer *t)
{
    if (!t || t->inflight || t->count == 0) return;
    buf_t *b = &t->body;
    buf_reset(b);
    buf_puts(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
    buf_json_str(b, t->service, strlen(t->service));
    buf_puts(b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"gatewayllm\"},\"spans\":[");
    size_t n = t->count < t->batch ? t->count : t->batch;
    for (size_t i = 0; i < n; i++) {
        if (i) buf_putc(b, ',');
        put_span(b, &t->ring[(t->head + i) % t->cap]);
    }
    buf_puts(b, "]}]}]}");
    t->head = (t->head + n) % t->cap;
    t->count -= n;
    if (b->oom) { metrics_trace_spans(0, n); buf_free(b); buf_init(b); return; }
    static const char *const headers[] = { "Content-Type: application/json", NULL };
    upstream_request req = {
        .method = "POST", .url = t->url, .headers = headers, .body = b->data, .body_len = b->len,
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
    t->cap = s->queue_spans ? s->queue_spans : 4096;
    t->batch = s->batch_spans ? s->batch_spans : 512;
    if (t->batch > t->cap) t->batch = t->cap;
    buf_init(&t->body);
    if (RAND_bytes((unsigned char *)t->rng, sizeof t->rng) != 1 || (!t->rng[0] && !t->rng[1])) {
        t->rng[0] = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ull;
        t->rng[1] = (uint64_t)time(NULL) | 1;
    }
    long ms = s->flush_ms > 0 ? s->flush_ms : 1000;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    if (!(t->url = strdup(s->endpoint)) || !(t->service = strdup(s->service_name ? s->service_name : "gateway")) ||
        !(t->ring = calloc(t->cap, sizeof *t->ring)) ||
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
    buf_free(&t->body);
    free(t);
}
