/* otlp_json: spans as an OTLP ExportTraceServiceRequest in the OTLP/JSON
 * mapping (otlp.h): ids as lowercase hex, 64-bit integers as strings.
 *
 * No printf, and every fixed piece (a key with its JSON around it) is one
 * literal of known length. */
#include "otlp.h"

#include <string.h>

#define PUT(b, lit) buf_append((b), (lit), sizeof(lit) - 1)
#define ATTR_HEAD(key, type) "{\"key\":\"" key "\",\"value\":{\"" type "\":"
#define ATTR_STR(b, first, key, v, n) attr_str((b), (first), ATTR_HEAD(key, "stringValue"), sizeof(ATTR_HEAD(key, "stringValue")) - 1, (v), (n))
#define ATTR_INT(b, first, key, v)    attr_int((b), (first), ATTR_HEAD(key, "intValue"), sizeof(ATTR_HEAD(key, "intValue")) - 1, (v))
#define ATTR_BOOL(b, first, key, v)   attr_bool((b), (first), ATTR_HEAD(key, "boolValue"), sizeof(ATTR_HEAD(key, "boolValue")) - 1, (v))

static void attr_head(buf_t *b, int *first, const char *head, size_t n)
{
    if (!*first) buf_putc(b, ',');
    *first = 0;
    buf_append(b, head, n);
}

static void attr_str(buf_t *b, int *first, const char *head, size_t hn, const char *v, size_t n)
{
    if (!n) return;
    attr_head(b, first, head, hn);
    buf_json_str(b, v, n);
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
    char id[32];
    hex_lower(id, in, n);
    buf_append(b, id, 2 * n);
}

/* Everything up to the attributes' opening bracket. */
static void span_head(buf_t *b, const otlp_rec *r, const uint8_t *span_id, const uint8_t *parent_id,
                      const char *name_a, size_t an, const char *name_b, size_t bn, int kind, int64_t start, int64_t end)
{
    buf_reserve(b, 1536);   /* one growth check for most spans */
    PUT(b, "{\"traceId\":\"");
    put_hex(b, r->trace_id, 16);
    PUT(b, "\",\"spanId\":\"");
    put_hex(b, span_id, 8);
    buf_putc(b, '"');
    if (parent_id) {
        PUT(b, ",\"parentSpanId\":\"");
        put_hex(b, parent_id, 8);
        buf_putc(b, '"');
    }
    char name[5 + OTLP_MODEL_CAP + OTLP_ROUTE_MAX];
    memcpy(name, name_a, an);
    memcpy(name + an, name_b, bn);
    PUT(b, ",\"name\":");
    buf_json_str(b, name, an + bn);
    PUT(b, ",\"kind\":");
    buf_put_i64(b, kind);
    PUT(b, ",\"startTimeUnixNano\":\"");
    buf_put_i64(b, start);
    PUT(b, "\",\"endTimeUnixNano\":\"");
    buf_put_i64(b, end);
    PUT(b, "\",\"attributes\":[");
}

static void span_tail(buf_t *b, int error)
{
    if (error) PUT(b, "],\"status\":{\"code\":2}}");
    else PUT(b, "],\"status\":{\"code\":0}}");
}

void otlp_json_put(buf_t *b, const otlp_rec *r, int first_span)
{
    static const struct { const char *s; size_t n; } phase_name[TR_PHASES] = {
        { "gateway.auth", 12 }, { "gateway.limits", 14 }, { "gateway.route", 13 }, { "", 0 },
    };
    if (!first_span) buf_putc(b, ',');
    span_head(b, r, r->span_id, r->has_parent ? r->parent_id : NULL, "POST ", 5, r->route, r->route_len,
              OTLP_KIND_SERVER, r->start_ns, r->end_ns);
    int first = 1;
    ATTR_STR(b, &first, "http.request.method", "POST", 4);
    ATTR_STR(b, &first, "url.path", r->route, r->route_len);
    ATTR_INT(b, &first, "http.response.status_code", r->status);
    ATTR_STR(b, &first, "gateway.request_id", r->request_id, r->request_id_len);
    ATTR_STR(b, &first, "gen_ai.operation.name", "chat", 4);
    ATTR_STR(b, &first, "gen_ai.request.model", r->model, r->model_len);
    ATTR_STR(b, &first, "gen_ai.system", r->provider, r->provider_len);
    ATTR_STR(b, &first, "gen_ai.provider.name", r->provider, r->provider_len);
    ATTR_STR(b, &first, "gen_ai.response.model", r->upstream_model, r->upstream_model_len);
    ATTR_BOOL(b, &first, "gateway.stream", r->stream);
    ATTR_BOOL(b, &first, "gateway.cache_hit", r->cache_hit);
    if (r->in_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.input_tokens", r->in_tok);
    if (r->out_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.output_tokens", r->out_tok);
    ATTR_STR(b, &first, "error.type", r->err, r->err_len);
    span_tail(b, r->status >= 500);
    for (int ph = 0; ph < TR_PHASES; ph++) {
        if (!(r->phases & (1u << ph))) continue;
        buf_putc(b, ',');
        if (ph != TR_UPSTREAM) {
            span_head(b, r, r->child_id[ph], r->span_id, phase_name[ph].s, phase_name[ph].n, "", 0,
                      OTLP_KIND_INTERNAL, r->phase_ns[ph][0], r->phase_ns[ph][1]);
            span_tail(b, 0);
            continue;
        }
        /* "chat <model>", as the GenAI conventions name it */
        span_head(b, r, r->child_id[ph], r->span_id, "chat ", 5, r->upstream_model, r->upstream_model_len,
                  OTLP_KIND_CLIENT, r->phase_ns[ph][0], r->phase_ns[ph][1]);
        first = 1;
        ATTR_STR(b, &first, "gen_ai.operation.name", "chat", 4);
        ATTR_STR(b, &first, "gen_ai.system", r->provider, r->provider_len);
        ATTR_STR(b, &first, "gen_ai.provider.name", r->provider, r->provider_len);
        ATTR_STR(b, &first, "gen_ai.request.model", r->upstream_model, r->upstream_model_len);
        if (r->up_status) ATTR_INT(b, &first, "http.response.status_code", r->up_status);
        if (r->in_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.input_tokens", r->in_tok);
        if (r->out_tok >= 0) ATTR_INT(b, &first, "gen_ai.usage.output_tokens", r->out_tok);
        span_tail(b, r->up_failed);
    }
}

void otlp_json_begin(buf_t *b, const char *service_name)
{
    const char *svc = service_name ? service_name : "";
    buf_reset(b);
    PUT(b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
    buf_json_str(b, svc, strlen(svc));
    PUT(b, "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"gatewayllm\"},\"spans\":[");
}

const char *otlp_json_end(buf_t *b, size_t *len)
{
    PUT(b, "]}]}]}");
    if (b->oom) return NULL;
    *len = b->len;
    return b->data;
}
