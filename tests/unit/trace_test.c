/* trace: the W3C traceparent parser and formatter, and the OTLP export.
 *
 * The hand-written protobuf is decoded with protoc-c's code for the OTLP
 * messages (tests/proto/otlp_trace.proto), packed again and compared byte
 * for byte (protobuf-c writes fields in order with the shortest varints, so
 * equal bytes mean a canonical encoding), and compared span by span with
 * the JSON encoding of the same records. */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "otlp.h"
#include "otlp_trace.pb-c.h"
#include "test.h"
#include "trace.h"

typedef Otlptest__ExportTraceServiceRequest Req;
typedef Otlptest__Span Span;
typedef Otlptest__AnyValue Any;

static void test_traceparent(void)
{
    uint8_t t[16], p[8];
    int s = -1;
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p, &s) == 0);
    CHECK(s == 1 && t[0] == 0x4b && t[15] == 0x36 && p[0] == 0x00 && p[7] == 0xb7);
    char out[56];
    trace_format_traceparent(t, p, 0, out);
    CHECK_STR(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
    CHECK(trace_parse_traceparent(out, t, p, &s) == 0 && s == 0);
    /* a later version may add fields; version 00 may not */
    CHECK(trace_parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz", t, p, &s) == 0);
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-zz", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", t, p, &s) < 0);
    CHECK(trace_parse_traceparent("", t, p, &s) < 0);
    CHECK(trace_parse_traceparent(NULL, t, p, &s) < 0);
}

static void hexs(char *out, const uint8_t *in, size_t n)
{
    for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", in[i]);
}

/* The word-at-a-time hex against snprintf, every byte value in every position. */
static void test_traceparent_hex(void)
{
    uint8_t t[16], p[8];
    char out[56], want[56], th[33], ph[17];
    uint32_t x = 12345;
    for (int k = 0; k < 2000; k++) {
        for (int i = 0; i < 16; i++) t[i] = (uint8_t)(k < 256 ? (uint32_t)(k + i) : (x = x * 1103515245u + 12345u) >> 16);
        for (int i = 0; i < 8; i++) p[i] = (uint8_t)(k < 256 ? (uint32_t)(255 - k - i) : (x = x * 1103515245u + 12345u) >> 16);
        trace_format_traceparent(t, p, k & 1, out);
        hexs(th, t, 16);
        hexs(ph, p, 8);
        snprintf(want, sizeof want, "00-%s-%s-0%d", th, ph, k & 1);
        if (strcmp(out, want)) { CHECK_STR(out, want); break; }
    }
}

/* ---- decoding ---- */

static Req *decode(const char *body, size_t len)
{
    Req *r = otlptest__export_trace_service_request__unpack(NULL, len, (const uint8_t *)body);
    CHECK(r != NULL);
    if (!r) return NULL;
    /* canonical: protobuf-c packs the decoded message into the same bytes */
    size_t n = otlptest__export_trace_service_request__get_packed_size(r);
    uint8_t *again = malloc(n ? n : 1);
    CHECK(again && n == len);
    if (again && n == len) {
        otlptest__export_trace_service_request__pack(r, again);
        CHECK(memcmp(again, body, len) == 0);
    }
    free(again);
    return r;
}

static size_t nspans(const Req *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_resource_spans; i++)
        for (size_t j = 0; j < r->resource_spans[i]->n_scope_spans; j++) n += r->resource_spans[i]->scope_spans[j]->n_spans;
    return n;
}

static Span *span_at(const Req *r, size_t k)
{
    Otlptest__ScopeSpans *ss = r->resource_spans[0]->scope_spans[0];
    return k < ss->n_spans ? ss->spans[k] : NULL;
}

static const Any *attr(const Span *s, const char *key)
{
    const Any *found = NULL;
    for (size_t i = 0; i < s->n_attributes; i++)
        if (!strcmp(s->attributes[i]->key, key)) { CHECK(!found); found = s->attributes[i]->value; }
    return found;
}

static int attr_is_str(const Span *s, const char *key, const char *want)
{
    const Any *a = attr(s, key);
    int ok = a && a->value_case == OTLPTEST__ANY_VALUE__VALUE_STRING_VALUE && !strcmp(a->string_value, want);
    if (!ok) fprintf(stderr, "    attribute %s: want \"%s\", have %s\n", key, want,
                     a && a->value_case == OTLPTEST__ANY_VALUE__VALUE_STRING_VALUE ? a->string_value : "(none or not a string)");
    return ok;
}

static int attr_is_int(const Span *s, const char *key, int64_t want)
{
    const Any *a = attr(s, key);
    return a && a->value_case == OTLPTEST__ANY_VALUE__VALUE_INT_VALUE && a->int_value == want;
}

static int attr_is_bool(const Span *s, const char *key, int want)
{
    const Any *a = attr(s, key);
    return a && a->value_case == OTLPTEST__ANY_VALUE__VALUE_BOOL_VALUE && !!a->bool_value == !!want;
}

static int id_eq(const ProtobufCBinaryData *b, const uint8_t *id, size_t n)
{
    return b->len == n && !memcmp(b->data, id, n);
}

static int utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
        if (n < 0) return 0;
        p++;
        for (int i = 0; i < n; i++, p++) if ((*p & 0xc0) != 0x80) return 0;
    }
    return 1;
}

/* ---- the tracer, end to end ---- */

typedef struct fixture {
    struct event_base *base;
    tracer            *t;
} fixture;

static void fx_open(fixture *f, int protocol, size_t queue, size_t batch)
{
    f->base = event_base_new();
    trace_settings s = { .endpoint = "http://127.0.0.1:9/v1/traces", .service_name = "svc-under-test",
                         .sample_ratio = 1.0, .queue_spans = queue, .batch_spans = batch, .flush_ms = 60000,
                         .protocol = protocol };
    f->t = tracer_new(f->base, NULL, &s);   /* the timer never runs: batches are taken by hand */
    CHECK(f->t != NULL);
}

static void fx_close(fixture *f)
{
    tracer_free(f->t);
    event_base_free(f->base);
}

static void now(struct timespec *ts) { clock_gettime(CLOCK_MONOTONIC, ts); }

/* One request through begin, marks and end. phases: bit p = phase p reached. */
static void run_request(tracer *t, trace_ctx *c, const char *tp, unsigned phases, const trace_attrs *a)
{
    struct timespec t0;
    now(&t0);
    trace_begin(t, c, &t0, tp);
    for (int p = 0; p < TR_PHASES; p++) {
        if (!(phases & (1u << p))) continue;
        trace_mark(c, p, 0);
        if (p != TR_ROUTE || !(phases & (1u << TR_UPSTREAM))) trace_mark(c, p, 1);
    }
    if (phases & (1u << TR_UPSTREAM) && phases & (1u << TR_ROUTE)) trace_mark(c, TR_ROUTE, 1);
    trace_end(t, c, a);
}

static Req *take(tracer *t, size_t want_spans)
{
    const char *body = NULL;
    size_t len = 0, n = trace_take_batch(t, &body, &len);
    CHECK(n == want_spans);
    if (!n) return NULL;
    return decode(body, len);
}

static void test_export_full_request(void)
{
    fixture f;
    fx_open(&f, TRACE_PROTO_PROTOBUF, 0, 0);
    CHECK_STR(trace_content_type(f.t), "application/x-protobuf");
    trace_ctx c;
    trace_attrs a = {
        .route = "/v1/chat/completions", .request_id = "req_0123456789abcdef", .model = "gpt-4o-mini",
        .provider = "openai_compatible", .upstream_model = "gpt-4o-mini-2024-07-18", .status = 200,
        .stream = 1, .cache_hit = 0, .upstream_status = 200, .input_tokens = 25, .output_tokens = 0,
    };
    run_request(f.t, &c, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0xf, &a);
    Req *r = take(f.t, 5);
    if (!r) { fx_close(&f); return; }
    CHECK(r->n_resource_spans == 1 && r->resource_spans[0]->n_scope_spans == 1);
    Otlptest__Resource *res = r->resource_spans[0]->resource;
    CHECK(res && res->n_attributes == 1 && !strcmp(res->attributes[0]->key, "service.name") &&
          !strcmp(res->attributes[0]->value->string_value, "svc-under-test"));
    CHECK_STR(r->resource_spans[0]->scope_spans[0]->scope->name, "gatewayllm");
    CHECK(nspans(r) == 5);

    static const uint8_t tid[16] = { 0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                     0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36 };
    static const uint8_t pid[8] = { 0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7 };
    Span *root = span_at(r, 0);
    CHECK(id_eq(&root->trace_id, tid, 16) && id_eq(&root->span_id, c.span_id, 8) && id_eq(&root->parent_span_id, pid, 8));
    CHECK_STR(root->name, "POST /v1/chat/completions");
    CHECK(root->kind == OTLPTEST__SPAN__SPAN_KIND__SPAN_KIND_SERVER);
    CHECK(root->start_time_unix_nano > 1600000000ull * 1000000000ull && root->start_time_unix_nano <= root->end_time_unix_nano);
    CHECK(root->status && root->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_UNSET);
    static const char *const root_keys[] = {
        "http.request.method", "url.path", "http.response.status_code", "gateway.request_id", "gen_ai.operation.name",
        "gen_ai.request.model", "gen_ai.system", "gen_ai.provider.name", "gen_ai.response.model", "gateway.stream",
        "gateway.cache_hit", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
    };
    CHECK(root->n_attributes == sizeof root_keys / sizeof *root_keys);
    for (size_t i = 0; i < root->n_attributes && i < sizeof root_keys / sizeof *root_keys; i++)
        CHECK_STR(root->attributes[i]->key, root_keys[i]);
    CHECK(attr_is_str(root, "http.request.method", "POST"));
    CHECK(attr_is_str(root, "url.path", "/v1/chat/completions"));
    CHECK(attr_is_int(root, "http.response.status_code", 200));
    CHECK(attr_is_str(root, "gateway.request_id", "req_0123456789abcdef"));
    CHECK(attr_is_str(root, "gen_ai.operation.name", "chat"));
    CHECK(attr_is_str(root, "gen_ai.request.model", "gpt-4o-mini"));
    CHECK(attr_is_str(root, "gen_ai.system", "openai_compatible"));
    CHECK(attr_is_str(root, "gen_ai.provider.name", "openai_compatible"));
    CHECK(attr_is_str(root, "gen_ai.response.model", "gpt-4o-mini-2024-07-18"));
    CHECK(attr_is_bool(root, "gateway.stream", 1));
    CHECK(attr_is_bool(root, "gateway.cache_hit", 0));
    CHECK(attr_is_int(root, "gen_ai.usage.input_tokens", 25));
    CHECK(attr_is_int(root, "gen_ai.usage.output_tokens", 0));
    CHECK(!attr(root, "error.type"));

    static const char *const names[] = { "gateway.auth", "gateway.limits", "gateway.route", "chat gpt-4o-mini-2024-07-18" };
    for (int p = 0; p < TR_PHASES; p++) {
        Span *s = span_at(r, (size_t)p + 1);
        if (!s) { CHECK(s); continue; }
        CHECK_STR(s->name, names[p]);
        CHECK(id_eq(&s->trace_id, tid, 16) && id_eq(&s->parent_span_id, c.span_id, 8) && s->span_id.len == 8);
        CHECK(memcmp(s->span_id.data, c.span_id, 8) != 0);
        CHECK(s->start_time_unix_nano >= root->start_time_unix_nano && s->start_time_unix_nano <= s->end_time_unix_nano &&
              s->end_time_unix_nano <= root->end_time_unix_nano);
        CHECK(s->status && s->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_UNSET);
        if (p != TR_UPSTREAM) {
            CHECK(s->kind == OTLPTEST__SPAN__SPAN_KIND__SPAN_KIND_INTERNAL && s->n_attributes == 0);
            continue;
        }
        /* the upstream attempt: its id is the one sent upstream in traceparent */
        CHECK(s->kind == OTLPTEST__SPAN__SPAN_KIND__SPAN_KIND_CLIENT && id_eq(&s->span_id, c.up_span_id, 8));
        CHECK(s->n_attributes == 7);
        CHECK(attr_is_str(s, "gen_ai.operation.name", "chat"));
        CHECK(attr_is_str(s, "gen_ai.system", "openai_compatible"));
        CHECK(attr_is_str(s, "gen_ai.provider.name", "openai_compatible"));
        CHECK(attr_is_str(s, "gen_ai.request.model", "gpt-4o-mini-2024-07-18"));
        CHECK(attr_is_int(s, "http.response.status_code", 200));
        CHECK(attr_is_int(s, "gen_ai.usage.input_tokens", 25));
        CHECK(attr_is_int(s, "gen_ai.usage.output_tokens", 0));
    }
    /* the three INTERNAL children have distinct ids */
    CHECK(memcmp(span_at(r, 1)->span_id.data, span_at(r, 2)->span_id.data, 8) &&
          memcmp(span_at(r, 2)->span_id.data, span_at(r, 3)->span_id.data, 8));
    otlptest__export_trace_service_request__free_unpacked(r, NULL);
    const char *body;
    size_t len;
    CHECK(trace_take_batch(f.t, &body, &len) == 0);   /* nothing left */
    fx_close(&f);
}

static void test_export_error_and_odd_inputs(void)
{
    fixture f;
    fx_open(&f, TRACE_PROTO_PROTOBUF, 0, 0);
    /* an upstream error, no parent, no tokens, empty and missing strings, two phases */
    trace_ctx c1;
    trace_attrs a1 = { .route = "/v1/chat/completions", .request_id = "req_e", .model = "", .provider = NULL,
                       .upstream_model = "m", .error = "upstream_status", .status = 502, .upstream_status = 502,
                       .upstream_failed = 1, .input_tokens = -1, .output_tokens = -1 };
    run_request(f.t, &c1, NULL, 1u << TR_AUTH | 1u << TR_UPSTREAM, &a1);
    /* a long model name and a non-ASCII one, cut to fit at a character boundary */
    char longm[200], uni[200] = "";
    memset(longm, 'x', sizeof longm - 1);
    longm[sizeof longm - 1] = '\0';
    while (strlen(uni) < 120) strcat(uni, "mod\xc3\xa8le-\xe6\x97\xa5\xe6\x9c\xac-");   /* "modèle-日本-" */
    trace_ctx c2;
    trace_attrs a2 = { .route = "/v1/messages", .request_id = "req_u", .model = uni, .provider = "anthropic",
                       .upstream_model = longm, .status = 200, .input_tokens = 1234567890123ll, .output_tokens = 7 };
    run_request(f.t, &c2, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1u << TR_UPSTREAM, &a2);
    /* a request refused before any phase (e.g. 405): the root alone, a 4xx is no error */
    trace_ctx c3;
    trace_attrs a3 = { .route = "/v1/embeddings", .request_id = "req_405", .error = "method_not_allowed",
                       .status = 405, .input_tokens = -1, .output_tokens = -1 };
    run_request(f.t, &c3, NULL, 0, &a3);

    Req *r = take(f.t, 3 + 2 + 1);
    if (!r) { fx_close(&f); return; }
    Span *root = span_at(r, 0), *auth = span_at(r, 1), *up = span_at(r, 2);
    CHECK(root->parent_span_id.len == 0 && id_eq(&root->trace_id, c1.trace_id, 16));
    CHECK(root->status && root->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    CHECK(attr_is_int(root, "http.response.status_code", 502) && attr_is_str(root, "error.type", "upstream_status"));
    CHECK(!attr(root, "gen_ai.request.model") && !attr(root, "gen_ai.system") && !attr(root, "gen_ai.provider.name"));
    CHECK(!attr(root, "gen_ai.usage.input_tokens") && !attr(root, "gen_ai.usage.output_tokens"));
    CHECK(attr_is_str(root, "gen_ai.response.model", "m"));
    CHECK_STR(auth->name, "gateway.auth");
    CHECK(auth->status && auth->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_UNSET);
    CHECK_STR(up->name, "chat m");
    CHECK(up->kind == OTLPTEST__SPAN__SPAN_KIND__SPAN_KIND_CLIENT && id_eq(&up->span_id, c1.up_span_id, 8));
    CHECK(up->status && up->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    CHECK(attr_is_int(up, "http.response.status_code", 502) && !attr(up, "gen_ai.usage.input_tokens"));
    CHECK(id_eq(&up->parent_span_id, c1.span_id, 8) && id_eq(&auth->parent_span_id, c1.span_id, 8));

    Span *r2 = span_at(r, 3), *up2 = span_at(r, 4);
    CHECK_STR(r2->name, "POST /v1/messages");
    const Any *m = attr(r2, "gen_ai.request.model");
    CHECK(m && strlen(m->string_value) <= OTLP_MODEL_CAP - 1 && strlen(m->string_value) > OTLP_MODEL_CAP - 5 &&
          utf8_ok(m->string_value) && !strncmp(m->string_value, uni, strlen(m->string_value)));
    const Any *um = attr(r2, "gen_ai.response.model");
    CHECK(um && strlen(um->string_value) == OTLP_MODEL_CAP - 1 && um->string_value[0] == 'x');
    CHECK(attr_is_int(r2, "gen_ai.usage.input_tokens", 1234567890123ll) && attr_is_int(r2, "gen_ai.usage.output_tokens", 7));
    CHECK(r2->status && r2->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_UNSET);
    CHECK(!strncmp(up2->name, "chat xxxx", 9) && strlen(up2->name) == 5 + OTLP_MODEL_CAP - 1);
    CHECK(!attr(up2, "http.response.status_code"));   /* no answer recorded: left out */
    CHECK(id_eq(&up2->parent_span_id, c2.span_id, 8) && id_eq(&up2->span_id, c2.up_span_id, 8));

    Span *r3 = span_at(r, 5);
    CHECK(r3 && r3->parent_span_id.len == 0 && r3->status && r3->status->code == OTLPTEST__STATUS__STATUS_CODE__STATUS_CODE_UNSET);
    CHECK(r3 && attr_is_str(r3, "error.type", "method_not_allowed") && attr_is_int(r3, "http.response.status_code", 405));
    otlptest__export_trace_service_request__free_unpacked(r, NULL);
    fx_close(&f);
}

/* Whole requests go into a batch, up to batch_spans; a full ring drops a
 * whole request; nothing is exported for an unsampled one. */
static void test_export_batches_and_ring(void)
{
    fixture f;
    fx_open(&f, TRACE_PROTO_PROTOBUF, 16, 7);
    trace_attrs a = { .route = "/v1/chat/completions", .request_id = "r", .status = 200, .input_tokens = -1, .output_tokens = -1 };
    trace_ctx c[5];
    for (int i = 0; i < 4; i++) run_request(f.t, &c[i], NULL, 0xf, &a);   /* 3 fit (15 spans), the 4th is dropped */
    run_request(f.t, &c[4], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 0xf, &a);   /* not sampled */
    CHECK(!c[4].sampled && c[4].propagate && !c[4].up_sampled);
    for (int i = 0; i < 3; i++) {
        Req *r = take(f.t, 5);
        if (!r) break;
        CHECK(nspans(r) == 5 && id_eq(&span_at(r, 0)->span_id, c[i].span_id, 8));
        otlptest__export_trace_service_request__free_unpacked(r, NULL);
    }
    const char *body;
    size_t len;
    CHECK(trace_take_batch(f.t, &body, &len) == 0);
    /* room again: one-span requests fill a batch up to 7 */
    for (int i = 0; i < 9; i++) run_request(f.t, &c[0], NULL, 0, &a);
    Req *r = take(f.t, 7);
    if (r) otlptest__export_trace_service_request__free_unpacked(r, NULL);
    r = take(f.t, 2);
    if (r) otlptest__export_trace_service_request__free_unpacked(r, NULL);
    fx_close(&f);
}

/* ---- protobuf and JSON say the same ---- */

static void rec_init(otlp_rec *r, uint8_t seed, unsigned phases)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < 16; i++) r->trace_id[i] = (uint8_t)(seed * 31 + i);
    for (int i = 0; i < 8; i++) r->span_id[i] = (uint8_t)(seed * 17 + i + 1);
    r->start_ns = 1700000000123456789ll + seed;
    r->end_ns = r->start_ns + 5000000;
    r->phases = (uint8_t)phases;
    r->nspans = 1;
    for (int p = 0; p < TR_PHASES; p++) {
        if (!(phases & (1u << p))) continue;
        r->nspans++;
        for (int i = 0; i < 8; i++) r->child_id[p][i] = (uint8_t)(seed * 7 + p * 40 + i + 1);
        r->phase_ns[p][0] = r->start_ns + 1000 * (p + 1);
        r->phase_ns[p][1] = r->start_ns + 1000 * (p + 1) + 999;
    }
    r->route = "/v1/chat/completions";
    r->route_len = (uint8_t)strlen(r->route);
    r->in_tok = r->out_tok = -1;
}

#define SET(r, field, s) do { snprintf((r)->field, sizeof (r)->field, "%s", (s)); (r)->field##_len = (uint8_t)strlen((r)->field); } while (0)

static void span_text_pb(char *out, size_t cap, const Span *s)
{
    char tid[33], sid[17], pid[17] = "-";
    hexs(tid, s->trace_id.data, s->trace_id.len);
    hexs(sid, s->span_id.data, s->span_id.len);
    if (s->parent_span_id.len) hexs(pid, s->parent_span_id.data, s->parent_span_id.len);
    int n = snprintf(out, cap, "%s %s %s [%s] %d %" PRIu64 " %" PRIu64 " status=%d", tid, sid, pid, s->name, (int)s->kind,
                     s->start_time_unix_nano, s->end_time_unix_nano, s->status ? (int)s->status->code : -1);
    for (size_t i = 0; i < s->n_attributes && n > 0 && (size_t)n < cap; i++) {
        const Any *v = s->attributes[i]->value;
        if (v->value_case == OTLPTEST__ANY_VALUE__VALUE_STRING_VALUE)
            n += snprintf(out + n, cap - (size_t)n, " %s=s:%s", s->attributes[i]->key, v->string_value);
        else if (v->value_case == OTLPTEST__ANY_VALUE__VALUE_INT_VALUE)
            n += snprintf(out + n, cap - (size_t)n, " %s=i:%" PRId64, s->attributes[i]->key, v->int_value);
        else
            n += snprintf(out + n, cap - (size_t)n, " %s=b:%d", s->attributes[i]->key, (int)v->bool_value);
    }
}

static void span_text_json(char *out, size_t cap, const json_value *s)
{
    const json_value *st = json_get(s, "status");
    const json_value *code = st ? json_get(st, "code") : NULL, *kind = json_get(s, "kind");
    const char *pid = json_get_str(s, "parentSpanId");
    int n = snprintf(out, cap, "%s %s %s [%s] %d %s %s status=%d", json_get_str(s, "traceId"), json_get_str(s, "spanId"),
                     pid ? pid : "-", json_get_str(s, "name"), kind ? (int)kind->i64 : -1,
                     json_get_str(s, "startTimeUnixNano"), json_get_str(s, "endTimeUnixNano"), code ? (int)code->i64 : -1);
    const json_value *attrs = json_get(s, "attributes");
    for (const json_value *a = attrs ? attrs->first : NULL; a && n > 0 && (size_t)n < cap; a = a->next) {
        const json_value *v = json_get(a, "value");
        const char *key = json_get_str(a, "key");
        const json_value *b = json_get(v, "boolValue");
        if (json_get_str(v, "stringValue")) n += snprintf(out + n, cap - (size_t)n, " %s=s:%s", key, json_get_str(v, "stringValue"));
        else if (json_get_str(v, "intValue")) n += snprintf(out + n, cap - (size_t)n, " %s=i:%s", key, json_get_str(v, "intValue"));
        else n += snprintf(out + n, cap - (size_t)n, " %s=b:%d", key, b && b->type == JSON_TRUE);
    }
}

static void test_pb_matches_json(void)
{
    otlp_rec recs[4];
    rec_init(&recs[0], 1, 0xf);
    SET(&recs[0], model, "gpt-4o-mini");
    SET(&recs[0], provider, "openai");
    SET(&recs[0], upstream_model, "gpt-4o-mini");
    SET(&recs[0], request_id, "req_1");
    recs[0].status = 200; recs[0].up_status = 200; recs[0].in_tok = 10; recs[0].out_tok = 0; recs[0].stream = 1;
    recs[0].has_parent = 1;
    memset(recs[0].parent_id, 0xab, 8);
    rec_init(&recs[1], 2, 1u << TR_UPSTREAM);
    SET(&recs[1], model, "a \"quoted\" \\ name\twith\x01 controls");
    SET(&recs[1], upstream_model, "mod\xc3\xa8le-\xe6\x97\xa5\xe6\x9c\xac");
    SET(&recs[1], err, "upstream_timeout");
    recs[1].status = 504; recs[1].up_failed = 1; recs[1].cache_hit = 1;
    rec_init(&recs[2], 3, 0);
    recs[2].status = 401;
    SET(&recs[2], err, "invalid_api_key");
    rec_init(&recs[3], 4, 1u << TR_AUTH | 1u << TR_LIMITS);
    memset(recs[3].model, 'q', OTLP_MODEL_CAP - 1);
    recs[3].model_len = OTLP_MODEL_CAP - 1;
    recs[3].status = 429; recs[3].in_tok = 0; recs[3].out_tok = 1ll << 40;

    otlp_pb e;
    CHECK(otlp_pb_init(&e, "svc \"q\"") == 0);
    buf_t pb, js;
    buf_init(&pb);
    buf_init(&js);
    otlp_pb_begin(&e, &pb);
    otlp_json_begin(&js, "svc \"q\"");
    for (int i = 0; i < 4; i++) {
        otlp_pb_put(&pb, &recs[i]);
        otlp_json_put(&js, &recs[i], i == 0);
    }
    size_t plen = 0, jlen = 0;
    const char *pbody = otlp_pb_end(&e, &pb, &plen), *jbody = otlp_json_end(&js, &jlen);
    CHECK(pbody && jbody);
    Req *r = pbody ? decode(pbody, plen) : NULL;
    json_doc *doc = jbody ? json_parse(jbody, jlen, NULL, NULL) : NULL;
    CHECK(doc != NULL);
    if (r && doc) {
        const json_value *rs = json_at(json_get(json_root(doc), "resourceSpans"), 0);
        const json_value *svc = json_get(json_at(json_get(json_get(rs, "resource"), "attributes"), 0), "value");
        CHECK_STR(json_get_str(svc, "stringValue"), r->resource_spans[0]->resource->attributes[0]->value->string_value);
        const json_value *ss = json_at(json_get(rs, "scopeSpans"), 0);
        CHECK_STR(json_get_str(json_get(ss, "scope"), "name"), r->resource_spans[0]->scope_spans[0]->scope->name);
        const json_value *spans = json_get(ss, "spans");
        CHECK(spans && spans->count == nspans(r) && nspans(r) == 5 + 2 + 1 + 3);
        size_t k = 0;
        for (const json_value *s = spans ? spans->first : NULL; s; s = s->next, k++) {
            char a[2048], b[2048];
            span_text_pb(a, sizeof a, span_at(r, k));
            span_text_json(b, sizeof b, s);
            CHECK_STR(a, b);
        }
    }
    if (r) otlptest__export_trace_service_request__free_unpacked(r, NULL);
    json_doc_free(doc);
    buf_free(&pb);
    buf_free(&js);
    otlp_pb_free(&e);
}

/* A batch whose spans take more than 2^14 bytes (3-byte lengths outside). */
static void test_pb_big_batch(void)
{
    otlp_pb e;
    CHECK(otlp_pb_init(&e, "gateway") == 0);
    buf_t b;
    buf_init(&b);
    otlp_pb_begin(&e, &b);
    otlp_rec rec;
    rec_init(&rec, 9, 0xf);
    memset(rec.model, 'm', OTLP_MODEL_CAP - 1);
    rec.model_len = OTLP_MODEL_CAP - 1;
    for (int i = 0; i < 300; i++) otlp_pb_put(&b, &rec);
    size_t len = 0;
    const char *body = otlp_pb_end(&e, &b, &len);
    CHECK(body && len > 100000);
    Req *r = body ? decode(body, len) : NULL;
    CHECK(r && nspans(r) == 1500);
    if (r) otlptest__export_trace_service_request__free_unpacked(r, NULL);
    buf_free(&b);
    otlp_pb_free(&e);
}

static void test_export_json_protocol(void)
{
    fixture f;
    fx_open(&f, TRACE_PROTO_JSON, 0, 0);
    CHECK_STR(trace_content_type(f.t), "application/json");
    trace_ctx c;
    trace_attrs a = { .route = "/v1/chat/completions", .request_id = "req_j", .model = "m", .status = 200,
                      .input_tokens = -1, .output_tokens = -1 };
    run_request(f.t, &c, NULL, 0xf, &a);
    const char *body = NULL;
    size_t len = 0;
    CHECK(trace_take_batch(f.t, &body, &len) == 5);
    json_doc *doc = body ? json_parse(body, len, NULL, NULL) : NULL;
    CHECK(doc != NULL);
    if (doc) {
        const json_value *spans = json_get(json_at(json_get(json_at(json_get(json_root(doc), "resourceSpans"), 0),
                                                            "scopeSpans"), 0), "spans");
        CHECK(spans && spans->count == 5);
        CHECK_STR(json_get_str(json_at(spans, 0), "name"), "POST /v1/chat/completions");
    }
    json_doc_free(doc);
    fx_close(&f);
}

int main(void)
{
    RUN(test_traceparent);
    RUN(test_traceparent_hex);
    RUN(test_export_full_request);
    RUN(test_export_error_and_odd_inputs);
    RUN(test_export_batches_and_ring);
    RUN(test_pb_matches_json);
    RUN(test_pb_big_batch);
    RUN(test_export_json_protocol);
    TEST_MAIN_END();
}
