/* trace: OpenTelemetry spans for API requests, exported over OTLP/HTTP
 * (protobuf by default, JSON on request; the encodings are in otlp.h).
 *
 * A request carries a trace_ctx (no allocation): its trace id (the client's,
 * from a W3C traceparent, or a new one), the ids of its spans, and the
 * monotonic times at which its phases ended. When it finishes, trace_end
 * writes one record (otlp_rec) into a fixed ring in the worker: it becomes
 * the root span (SERVER) and its children (auth, limits, routing, the
 * upstream attempt as a CLIENT span) when the batch is encoded.
 * A timer sends the ring in batches with the worker's own HTTP client, on
 * the loop, never blocking a request; while the collector is away (or
 * slow) the ring fills and further spans are dropped and counted
 * (gatewayllm_trace_spans_dropped_total).
 */
#ifndef GW_TRACE_H
#define GW_TRACE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct event_base;
struct upstream;

typedef struct tracer tracer;

enum { TRACE_PROTO_PROTOBUF = 0, TRACE_PROTO_JSON = 1 };   /* tracing: protocol */

typedef struct trace_settings {
    const char *endpoint;       /* http://host:port/v1/traces; NULL or "": tracing off */
    const char *service_name;
    double      sample_ratio;   /* for requests without a sampled parent */
    size_t      queue_spans;    /* ring size */
    size_t      batch_spans;
    long        flush_ms;
    int         protocol;       /* TRACE_PROTO_*: application/x-protobuf or application/json */
} trace_settings;

enum { TR_AUTH, TR_LIMITS, TR_ROUTE, TR_UPSTREAM, TR_PHASES };

typedef struct trace_ctx {
    uint8_t  trace_id[16];
    uint8_t  parent_id[8];      /* the client's span, or zeros */
    uint8_t  span_id[8];        /* the request's root span */
    uint8_t  up_span_id[8];     /* the upstream attempt, sent upstream as the parent */
    int      sampled;           /* spans are recorded */
    int      propagate;         /* a traceparent goes upstream (trace id, up_span_id, up_sampled) */
    int      up_sampled;
    int64_t  start_unix_ns;     /* wall clock at t0 */
    struct timespec t0;         /* monotonic, the request's own t0 */
    int64_t  mark_ns[TR_PHASES][2];   /* [phase][start, end] since t0; 0 = not reached */
    int      hex_ready;
    char     trace_hex[32];     /* the trace id in hex, made once (access log, upstream header) */
} trace_ctx;

/* What the root span says (GenAI semantic conventions). */
typedef struct trace_attrs {
    const char *route, *request_id, *model, *provider, *upstream_model, *error;
    int         status, stream, cache_hit;
    int         upstream_status, upstream_failed;
    int64_t     input_tokens, output_tokens;   /* < 0: unknown */
} trace_attrs;

/* Parses a W3C traceparent (version 00 rules; later versions by their
 * first four fields). 0 ok, -1 malformed (then a new trace starts). */
int  trace_parse_traceparent(const char *s, uint8_t trace_id[16], uint8_t parent_id[8], int *sampled);
/* "00-<trace>-<span>-01": out must hold 56 bytes. */
void trace_format_traceparent(const uint8_t trace_id[16], const uint8_t span_id[8], int sampled, char out[56]);

tracer *tracer_new(struct event_base *base, struct upstream *up, const trace_settings *s);
void    tracer_free(tracer *t);

/* Request start: t0 is the request's monotonic start. tp: the client's
 * traceparent header or NULL. No-op (ctx->sampled = 0) without a tracer. */
void trace_begin(tracer *t, trace_ctx *ctx, const struct timespec *t0, const char *tp);
/* A phase starts (end 0) or ends (end 1) at now, a monotonic time the
 * caller read. Inline: a traced request marks eight times. */
static inline void trace_mark_at(trace_ctx *ctx, int phase, int end, const struct timespec *now)
{
    if (!ctx->sampled || phase < 0 || phase >= TR_PHASES) return;
    ctx->mark_ns[phase][end ? 1 : 0] = (int64_t)(now->tv_sec - ctx->t0.tv_sec) * 1000000000 +
                                       (now->tv_nsec - ctx->t0.tv_nsec) + 1;   /* +1: 0 means "not reached" */
}
/* The trace id as 32 hex digits (not terminated). */
const char *trace_id_hex(trace_ctx *ctx);
/* The traceparent for the upstream call: 55 chars + NUL. */
void trace_format_upstream(trace_ctx *ctx, char out[56]);
static inline void trace_mark(trace_ctx *ctx, int phase, int end)   /* the same, now */
{
    if (!ctx->sampled) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    trace_mark_at(ctx, phase, end, &now);
}
void trace_end(tracer *t, trace_ctx *ctx, const trace_attrs *a);

/* Flushes what is queued now (tests, drain). */
void trace_flush(tracer *t);

/* Encodes the next batch (up to batch_spans spans) and takes it off the
 * ring: *body, *len is the request body (valid until the next call), the
 * result the number of spans in it (0: nothing queued). trace_flush sends
 * what this makes; tests decode it. */
size_t trace_take_batch(tracer *t, const char **body, size_t *len);
const char *trace_content_type(const tracer *t);

#endif
