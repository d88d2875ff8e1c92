/* otlp_pb: spans as an OTLP ExportTraceServiceRequest in protobuf (otlp.h).
 *
 * Written by hand for speed: every sampled request turns into five spans,
 * and a generic packer would build and walk a tree of messages for them.
 * Here a record is written straight into the batch buffer: constant pieces
 * (tags, attribute keys, the two constant attributes) are literals of known
 * size, the rest is ids, fixed64 times and a few short strings.
 *
 * Field numbers (opentelemetry-proto):
 *   ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
 *   ResourceSpans  { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
 *   Resource       { repeated KeyValue attributes = 1; }
 *   ScopeSpans     { InstrumentationScope scope = 1; repeated Span spans = 2; }
 *   InstrumentationScope { string name = 1; }
 *   Span   { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4;
 *            string name = 5; SpanKind kind = 6; fixed64 start_time_unix_nano = 7;
 *            fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9;
 *            Status status = 15; }
 *   Status   { StatusCode code = 3; }
 *   KeyValue { string key = 1; AnyValue value = 2; }
 *   AnyValue { string string_value = 1; bool bool_value = 2; int64 int_value = 3; }
 *
 * Lengths are canonical (shortest) varints. A span's length is known only
 * once it is written: room for a guessed width is left in front of it and
 * the body is moved in the rare case the guess was wrong. The batch header
 * (ResourceSpans and ScopeSpans lengths) is written last, into a gap left in
 * front of the first span, so the body ends up contiguous without a copy.
 */
#include "otlp.h"

#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "pbwire.h"

/* tags: (field << 3) | wire type */
#define T_SPAN        0x12   /* ScopeSpans.spans = 2, LEN */
#define T_TRACE_ID    0x0a   /* Span.trace_id = 1, LEN */
#define T_SPAN_ID     0x12   /* Span.span_id = 2, LEN */
#define T_PARENT_ID   0x22   /* Span.parent_span_id = 4, LEN */
#define T_NAME        0x2a   /* Span.name = 5, LEN */
#define T_KIND        0x30   /* Span.kind = 6, VARINT */
#define T_START       0x39   /* Span.start_time_unix_nano = 7, I64 */
#define T_END         0x41   /* Span.end_time_unix_nano = 8, I64 */
#define T_ATTR        0x4a   /* Span.attributes = 9, LEN */
#define T_STATUS      0x7a   /* Span.status = 15, LEN */
#define T_STATUS_CODE 0x18   /* Status.code = 3, VARINT */
#define T_KEY         0x0a   /* KeyValue.key = 1, LEN */
#define T_VALUE       0x12   /* KeyValue.value = 2, LEN */
#define T_STRING      0x0a   /* AnyValue.string_value = 1, LEN */
#define T_BOOL        0x10   /* AnyValue.bool_value = 2, VARINT */
#define T_INT         0x18   /* AnyValue.int_value = 3, VARINT */

/* Room reserved per record: with every string at its longest a root span
 * is under 900 bytes, the upstream span under 500, each INTERNAL one under
 * 100, plus up to 64 bytes written past the end by a fixed-size copy. */
#define REC_MAX 4096

static inline size_t vlen(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) { v >>= 7; n++; }
    return n;
}

static inline uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) { *p++ = (uint8_t)(v | 0x80); v >>= 7; }
    *p++ = (uint8_t)v;
    return p;
}

static inline uint8_t *put_fixed64(uint8_t *p, uint8_t tag, uint64_t v)
{
    *p++ = tag;
    v = htole64(v);   /* the wire is little endian */
    memcpy(p, &v, 8);
    return p + 8;
}

static inline uint8_t *put_id(uint8_t *p, uint8_t tag, const uint8_t *id, size_t n)
{
    p[0] = tag;
    p[1] = (uint8_t)n;
    memcpy(p + 2, id, n);
    return p + 2 + n;
}

/* Span.attributes: KeyValue{ key, value: AnyValue{ one of its values } }.
 * Keys are literals of at most 32 bytes and string values at most 64 (the
 * record's capacities), so a KeyValue is shorter than 128 bytes and each of
 * its lengths is one byte. */
_Static_assert(OTLP_MODEL_CAP <= 64 && OTLP_PROVIDER_CAP <= 64 && OTLP_REQID_CAP <= 64 && OTLP_ERR_CAP <= 64 &&
               OTLP_ROUTE_MAX <= 64, "attribute values must stay under 64 bytes: one-byte lengths");
#define KEY_OK(key) (sizeof(key) - 1 <= 32)

/* KeyValue tag and length, the key, the AnyValue's tag and length. */
static inline uint8_t *kv_head(uint8_t *p, const char *key, size_t kn, size_t kv_len, size_t any_len)
{
    p[0] = T_ATTR;
    p[1] = (uint8_t)kv_len;
    p[2] = T_KEY;
    p[3] = (uint8_t)kn;
    memcpy(p + 4, key, kn);
    p += 4 + kn;
    p[0] = T_VALUE;
    p[1] = (uint8_t)any_len;
    return p + 2;
}

/* A string attribute; writes n bytes of v (n < 64). */
static inline uint8_t *attr_str(uint8_t *p, const char *key, size_t kn, const char *v, size_t n)
{
    if (!n) return p;   /* empty strings are left out, as in JSON */
    p = kv_head(p, key, kn, kn + n + 6, n + 2);
    p[0] = T_STRING;
    p[1] = (uint8_t)n;
    memcpy(p + 2, v, n);
    return p + 2 + n;
}

static inline uint8_t *attr_int(uint8_t *p, const char *key, size_t kn, int64_t v)
{
    size_t vl = vlen((uint64_t)v);   /* int64: a negative one takes 10 bytes */
    p = kv_head(p, key, kn, kn + vl + 5, vl + 1);
    *p++ = T_INT;
    return put_varint(p, (uint64_t)v);
}

static inline uint8_t *attr_bool(uint8_t *p, const char *key, size_t kn, int v)
{
    p = kv_head(p, key, kn, kn + 6, 2);
    p[0] = T_BOOL;
    p[1] = v ? 1 : 0;   /* a oneof member is written even when false */
    return p + 2;
}

/* A string attribute from one of the record's arrays: the whole array is
 * copied (a fixed-size copy is a few moves, a call is dozens of
 * instructions) and what is past n is overwritten by what follows. */
#define ATTR_ARR(p, key, arr, n) do { \
        _Static_assert(KEY_OK(key), "key too long"); \
        if (n) { \
            uint8_t *v_ = kv_head((p), key, sizeof(key) - 1, sizeof(key) - 1 + (n) + 6, (n) + 2); \
            v_[0] = T_STRING; v_[1] = (uint8_t)(n); \
            memcpy(v_ + 2, (arr), sizeof(arr)); \
            (p) = v_ + 2 + (n); \
        } \
    } while (0)
#define ATTR_STR(p, key, v, n)  attr_str((p), key, sizeof(key) - 1, (v), (n))
#define ATTR_LIT(p, key, lit)   attr_str((p), key, sizeof(key) - 1, lit, sizeof(lit) - 1)
#define ATTR_INT(p, key, v)     attr_int((p), key, sizeof(key) - 1, (v))
#define ATTR_BOOL(p, key, v)    attr_bool((p), key, sizeof(key) - 1, (v))

/* Span fields 1, 2, 4 (ids), then after the name 6, 7, 8 (kind, times). */
static inline uint8_t *span_ids(uint8_t *p, const otlp_rec *r, const uint8_t *span_id, const uint8_t *parent_id)
{
    p = put_id(p, T_TRACE_ID, r->trace_id, 16);
    p = put_id(p, T_SPAN_ID, span_id, 8);
    if (parent_id) p = put_id(p, T_PARENT_ID, parent_id, 8);
    return p;
}

static inline uint8_t *span_kind_times(uint8_t *p, int kind, int64_t start, int64_t end)
{
    p[0] = T_KIND;
    p[1] = (uint8_t)kind;
    p = put_fixed64(p + 2, T_START, (uint64_t)start);
    return put_fixed64(p, T_END, (uint64_t)end);
}

static inline uint8_t *put_name(uint8_t *p, const char *a, size_t an, const char *b, size_t bn)
{
    p[0] = T_NAME;
    p[1] = (uint8_t)(an + bn);   /* under 128: see above */
    memcpy(p + 2, a, an);
    memcpy(p + 2 + an, b, bn);
    return p + 2 + an + bn;
}

static inline uint8_t *put_status(uint8_t *p, int error)
{
    /* Status{} for UNSET (as JSON's {"code":0}), Status{code: ERROR} */
    p[0] = T_STATUS;
    if (!error) { p[1] = 0; return p + 2; }
    p[1] = 2;
    p[2] = T_STATUS_CODE;
    p[3] = 2;
    return p + 4;
}

/* Span body from body on, its tag at at with guess bytes of room for the
 * length in between: writes tag and length, moves the body if the length
 * needs another width. Returns the new end. */
static inline uint8_t *span_close(uint8_t *at, size_t guess, uint8_t *end)
{
    uint8_t *body = at + 1 + guess;
    size_t n = (size_t)(end - body), w = vlen(n);
    at[0] = T_SPAN;
    if (w != guess) {
        memmove(at + 1 + w, body, n);
        end = at + 1 + w + n;
    }
    put_varint(at + 1, n);
    return end;
}

static uint8_t *put_root(uint8_t *p, const otlp_rec *r)
{
    uint8_t *at = p;
    p = span_ids(at + 3, r, r->span_id, r->has_parent ? r->parent_id : NULL);
    p = put_name(p, "POST ", 5, r->route, r->route_len);
    p = span_kind_times(p, OTLP_KIND_SERVER, r->start_ns, r->end_ns);
    p = ATTR_LIT(p, "http.request.method", "POST");
    p = ATTR_STR(p, "url.path", r->route, r->route_len);
    p = ATTR_INT(p, "http.response.status_code", r->status);
    ATTR_ARR(p, "gateway.request_id", r->request_id, r->request_id_len);
    p = ATTR_LIT(p, "gen_ai.operation.name", "chat");
    ATTR_ARR(p, "gen_ai.request.model", r->model, r->model_len);
    ATTR_ARR(p, "gen_ai.system", r->provider, r->provider_len);
    ATTR_ARR(p, "gen_ai.provider.name", r->provider, r->provider_len);
    ATTR_ARR(p, "gen_ai.response.model", r->upstream_model, r->upstream_model_len);
    p = ATTR_BOOL(p, "gateway.stream", r->stream);
    p = ATTR_BOOL(p, "gateway.cache_hit", r->cache_hit);
    if (r->in_tok >= 0) p = ATTR_INT(p, "gen_ai.usage.input_tokens", r->in_tok);
    if (r->out_tok >= 0) p = ATTR_INT(p, "gen_ai.usage.output_tokens", r->out_tok);
    ATTR_ARR(p, "error.type", r->err, r->err_len);
    p = put_status(p, r->status >= 500);
    return span_close(at, 2, p);
}

#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) + sizeof(lit) - 1)

static uint8_t *put_phase(uint8_t *p, const otlp_rec *r, int ph)
{
    uint8_t *at = p;
    p = span_ids(at + 2, r, r->child_id[ph], r->span_id);
    switch (ph) {   /* Span.name, tag and length included */
    case TR_AUTH:   p = PUT_LIT(p, "\x2a\x0cgateway.auth"); break;
    case TR_LIMITS: p = PUT_LIT(p, "\x2a\x0egateway.limits"); break;
    default:        p = PUT_LIT(p, "\x2a\x0dgateway.route"); break;
    }
    p = span_kind_times(p, OTLP_KIND_INTERNAL, r->phase_ns[ph][0], r->phase_ns[ph][1]);
    p = put_status(p, 0);
    return span_close(at, 1, p);
}

static uint8_t *put_upstream(uint8_t *p, const otlp_rec *r)
{
    uint8_t *at = p;
    p = span_ids(at + 3, r, r->child_id[TR_UPSTREAM], r->span_id);
    p[0] = T_NAME;   /* "chat <model>": GenAI's "{operation} {model}" */
    p[1] = (uint8_t)(5 + r->upstream_model_len);
    memcpy(p + 2, "chat ", 5);
    memcpy(p + 7, r->upstream_model, sizeof r->upstream_model);
    p += 7 + r->upstream_model_len;
    p = span_kind_times(p, OTLP_KIND_CLIENT, r->phase_ns[TR_UPSTREAM][0], r->phase_ns[TR_UPSTREAM][1]);
    p = ATTR_LIT(p, "gen_ai.operation.name", "chat");
    ATTR_ARR(p, "gen_ai.system", r->provider, r->provider_len);
    ATTR_ARR(p, "gen_ai.provider.name", r->provider, r->provider_len);
    ATTR_ARR(p, "gen_ai.request.model", r->upstream_model, r->upstream_model_len);
    if (r->up_status) p = ATTR_INT(p, "http.response.status_code", r->up_status);
    if (r->in_tok >= 0) p = ATTR_INT(p, "gen_ai.usage.input_tokens", r->in_tok);
    if (r->out_tok >= 0) p = ATTR_INT(p, "gen_ai.usage.output_tokens", r->out_tok);
    p = put_status(p, r->up_failed);
    return span_close(at, 2, p);
}

void otlp_pb_put(buf_t *b, const otlp_rec *r)
{
    if (buf_reserve(b, REC_MAX) < 0) return;   /* b->oom: the batch is dropped at the end */
    uint8_t *start = (uint8_t *)b->data + b->len, *p = put_root(start, r);
    for (int ph = 0; ph < TR_PHASES; ph++) {
        if (!(r->phases & (1u << ph))) continue;
        p = ph == TR_UPSTREAM ? put_upstream(p, r) : put_phase(p, r, ph);
    }
    b->len += (size_t)(p - start);
    b->data[b->len] = '\0';
}

void otlp_pb_begin(const otlp_pb *e, buf_t *b)
{
    buf_reset(b);
    if (buf_reserve(b, e->gap) < 0) return;
    b->len = e->gap;   /* the header goes here at the end */
}

const char *otlp_pb_end(const otlp_pb *e, buf_t *b, size_t *len)
{
    if (b->oom || b->len < e->gap) return NULL;
    size_t spans = b->len - e->gap;
    size_t ss = e->scope_len + spans;                            /* ScopeSpans */
    size_t rs = e->resource_len + 1 + vlen(ss) + ss;             /* ResourceSpans */
    size_t hlen = 1 + vlen(rs) + e->resource_len + 1 + vlen(ss) + e->scope_len;
    uint8_t *h = (uint8_t *)b->data + e->gap - hlen, *p = h;
    *p++ = 0x0a;   /* ExportTraceServiceRequest.resource_spans = 1 */
    p = put_varint(p, rs);
    memcpy(p, e->resource, e->resource_len);
    p += e->resource_len;
    *p++ = 0x12;   /* ResourceSpans.scope_spans = 2 */
    p = put_varint(p, ss);
    memcpy(p, e->scope, e->scope_len);
    *len = hlen + spans;
    return (const char *)h;
}

int otlp_pb_init(otlp_pb *e, const char *service_name)
{
    memset(e, 0, sizeof *e);
    const char *svc = service_name ? service_name : "";
    buf_t any, kv, res, name, rs_res, ss_scope;
    buf_init(&any); buf_init(&kv); buf_init(&res); buf_init(&name); buf_init(&rs_res); buf_init(&ss_scope);
    /* ResourceSpans.resource = Resource{ attributes: [{ key: "service.name", value: { string_value } }] } */
    pbw_put_bytes_field(&any, 1, svc, strlen(svc));
    pbw_put_bytes_field(&kv, 1, "service.name", 12);
    pbw_put_bytes_field(&kv, 2, any.data, any.len);
    pbw_put_bytes_field(&res, 1, kv.data, kv.len);
    pbw_put_bytes_field(&rs_res, 1, res.data, res.len);
    /* ScopeSpans.scope = InstrumentationScope{ name: "gatewayllm" } */
    pbw_put_bytes_field(&name, 1, "gatewayllm", 10);
    pbw_put_bytes_field(&ss_scope, 1, name.data, name.len);
    int oom = any.oom || kv.oom || res.oom || name.oom || rs_res.oom || ss_scope.oom;
    e->resource_len = rs_res.len;
    e->resource = (uint8_t *)buf_steal(&rs_res);
    e->scope_len = ss_scope.len;
    e->scope = (uint8_t *)buf_steal(&ss_scope);
    e->gap = 1 + 10 + e->resource_len + 1 + 10 + e->scope_len;
    buf_free(&any); buf_free(&kv); buf_free(&res); buf_free(&name);
    if (oom || !e->resource || !e->scope) { otlp_pb_free(e); return -1; }
    return 0;
}

void otlp_pb_free(otlp_pb *e)
{
    free(e->resource);
    free(e->scope);
    memset(e, 0, sizeof *e);
}
