/* cost engine: price lookup, overrides, cost arithmetic, formatting; the
 * stream_options rewrite and the usage-chunk filter that make stream costs known */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "pricing.h"
#include "providers/provider.h"
#include "usagestrip.h"
#include "test.h"

static int near(double a, double b) { return fabs(a - b) < 1e-12; }

static void test_lookup_exact_and_prefix(void)
{
    gw_price p;
    CHECK(pricing_lookup("gpt-4o-mini", &p) == 1 && near(p.input, 0.15) && near(p.cached_input, 0.075) && near(p.output, 0.60));
    CHECK(pricing_lookup("gpt-4o-2024-08-06", &p) == 1 && near(p.input, 2.50));            /* dated -> gpt-4o */
    CHECK(pricing_lookup("gpt-4o-2024-05-13", &p) == 1 && near(p.input, 5.00));            /* exact entry wins */
    CHECK(pricing_lookup("gpt-4o-mini-2024-07-18", &p) == 1 && near(p.input, 0.15));       /* longest prefix */
    CHECK(pricing_lookup("GPT-4O-MINI", &p) == 1 && near(p.output, 0.60));                 /* case-insensitive */
    CHECK(pricing_lookup("gpt-4.1-nano-2025-04-14", &p) == 1 && near(p.input, 0.10));
    CHECK(pricing_lookup("o3-mini", &p) == 1 && near(p.input, 1.10));
    CHECK(pricing_lookup("o1-preview", &p) == 1 && near(p.input, 15.00));
    CHECK(pricing_lookup("gpt-4.5-preview", &p) == 0 && p.input == 0);                    /* '.' is no boundary */
    CHECK(pricing_lookup("gpt-4oo", &p) == 0);
    CHECK(pricing_lookup("mock-1", &p) == 0 && p.output == 0);
    CHECK(pricing_lookup(NULL, &p) == 0);
    CHECK(pricing_lookup("text-embedding-3-small", &p) == 1 && near(p.input, 0.02) && near(p.cached_input, 0.02) && p.output == 0);
}

static void test_lookup_other_providers(void)
{
    gw_price p;
    CHECK(pricing_lookup("claude-3-5-sonnet-20241022", &p) == 1 && near(p.input, 3) && near(p.output, 15) && near(p.cached_input, 0.3));
    CHECK(pricing_lookup("claude-3-5-sonnet@20240620", &p) == 1 && near(p.input, 3));      /* Vertex */
    CHECK(pricing_lookup("claude-3-5-haiku-latest", &p) == 1 && near(p.input, 0.80));
    CHECK(pricing_lookup("claude-opus-4-1-20250805", &p) == 1 && near(p.output, 75));
    CHECK(pricing_lookup("anthropic.claude-sonnet-4-20250514-v1:0", &p) == 1 && near(p.input, 3));   /* Bedrock */
    CHECK(pricing_lookup("us.anthropic.claude-3-7-sonnet-20250219-v1:0", &p) == 1 && near(p.output, 15));
    CHECK(pricing_lookup("meta.llama3-1-70b-instruct-v1:0", &p) == 1 && near(p.input, 0.72));
    CHECK(pricing_lookup("amazon.nova-lite-v1:0", &p) == 1 && near(p.input, 0.06));
    CHECK(pricing_lookup("models/gemini-1.5-pro", &p) == 1 && near(p.input, 1.25));
    CHECK(pricing_lookup("gemini-2.5-flash-preview-05-20", &p) == 1 && near(p.output, 2.50));
    CHECK(pricing_lookup("gemini-2.5-flash-lite", &p) == 1 && near(p.output, 0.40));
    CHECK(pricing_lookup("gemini-1.5-flash-8b-001", &p) == 1 && near(p.input, 0.0375));
    CHECK(pricing_lookup("mistral-large-latest", &p) == 1 && near(p.input, 2));
    CHECK(pricing_lookup("llama-3.1-8b-instant", &p) == 1 && near(p.output, 0.08));
    CHECK(pricing_lookup("meta-llama/llama-4-scout-17b-16e-instruct", &p) == 1 && near(p.input, 0.11));
    CHECK(pricing_lookup("gpt-4-turbo-2024-04-09", &p) == 1 && near(p.input, 10));
    /* no cached price published: cached tokens bill at the input rate */
    CHECK(pricing_lookup("gpt-3.5-turbo", &p) == 1 && near(p.cached_input, 0.50));
}

static void test_overrides(void)
{
    gw_price p;
    gw_price_override none = PRICE_OVERRIDE_NONE;
    CHECK(pricing_resolve("gpt-4o", &none, &p) == 1 && near(p.input, 2.5));
    CHECK(pricing_resolve("mock-1", &none, &p) == 0 && p.input == 0 && p.output == 0);
    gw_price_override o = { 1.0, -1, 2.0 };
    CHECK(pricing_resolve("mock-1", &o, &p) == 1 && near(p.input, 1) && near(p.cached_input, 1) && near(p.output, 2));
    gw_price_override o2 = { -1, -1, 100 };
    CHECK(pricing_resolve("gpt-4o-mini", &o2, &p) == 1 && near(p.input, 0.15) && near(p.cached_input, 0.075) && near(p.output, 100));
    gw_price_override o3 = { 0.01, -1, -1 };   /* cheaper than the table's cached rate */
    CHECK(pricing_resolve("gpt-4o", &o3, &p) == 1 && near(p.input, 0.01) && near(p.cached_input, 0.01));
    gw_price_override o4 = { 0, 0, 0 };        /* explicitly free */
    CHECK(pricing_resolve("gpt-4o", &o4, &p) == 1 && p.input == 0 && p.output == 0);
}

static void test_cost(void)
{
    gw_price p = { 2.50, 1.25, 10.00 };
    usage_t u = { .prompt_tokens = 1000, .completion_tokens = 500, .cached_tokens = 0, .present = 1 };
    /* 1000 * 2.5e-6 + 500 * 1e-5 = 0.0025 + 0.005 */
    CHECK(pricing_cost_e10(&p, &u) == 75000000);
    u.cached_tokens = 400;   /* 600 * 2.5e-6 + 400 * 1.25e-6 + 0.005 = 0.0015 + 0.0005 + 0.005 */
    CHECK(pricing_cost_e10(&p, &u) == 70000000);
    u.cached_tokens = 5000;  /* more cached than prompt: capped */
    CHECK(pricing_cost_e10(&p, &u) == 12500000 + 50000000);
    u.present = 0;
    CHECK(pricing_cost_e10(&p, &u) == 0);
    usage_t neg = { .prompt_tokens = -5, .completion_tokens = -1, .present = 1 };
    CHECK(pricing_cost_e10(&p, &neg) == 0);
    usage_t huge = { .prompt_tokens = 0x7fffffffffffffffL, .completion_tokens = 0x7fffffffffffffffL, .present = 1 };
    gw_price dear = { 1e6, 1e6, 1e6 };
    CHECK(pricing_cost_e10(&dear, &huge) == (int64_t)9e18);   /* saturates, no overflow */
    gw_price cheap = { 0.02, 0.02, 0 };
    usage_t one = { .prompt_tokens = 1, .present = 1 };
    CHECK(pricing_cost_e10(&cheap, &one) == 200);              /* 2e-8 USD */
}

static void test_format(void)
{
    char s[32];
    CHECK(pricing_format_usd(0, s) == 12); CHECK_STR(s, "0.0000000000");
    pricing_format_usd(75000000, s); CHECK_STR(s, "0.0075000000");
    pricing_format_usd(1, s); CHECK_STR(s, "0.0000000001");
    pricing_format_usd(123456789012345LL, s); CHECK_STR(s, "12345.6789012345");
    pricing_format_usd(-3, s); CHECK_STR(s, "0.0000000000");
    pricing_format_usd(9000000000000000000LL, s); CHECK_STR(s, "900000000.0000000000");
}

static char *rewrite(const char *body, int inject)
{
    json_doc *d = json_parse(body, strlen(body), NULL, NULL);
    if (!d) return NULL;
    provider_call c = { .route = ROUTE_CHAT, .body = body, .body_len = strlen(body), .root = json_root(d), .stream = 1 };
    c.model = json_get(c.root, "model");
    buf_t out; buf_init(&out);
    char *res = provider_rewrite_body(&c, "up-model", inject, &out) == 0 ? buf_steal(&out) : NULL;
    buf_free(&out);
    json_doc_free(d);
    return res;
}

static void check_rewrite(const char *in, int inject, const char *want)
{
    char *got = rewrite(in, inject);
    CHECK_STR(got, want);
    free(got);
}

static void test_rewrite_body(void)
{
    check_rewrite("{\"model\":\"a\",\"stream\":true}", 0, "{\"model\":\"up-model\",\"stream\":true}");
    check_rewrite("{\"model\":\"a\",\"stream\":true}", 1,
                  "{\"model\":\"up-model\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    check_rewrite("{\"stream\":true, \"model\" : \"a\" }", 1,
                  "{\"stream\":true, \"model\" : \"up-model\" ,\"stream_options\":{\"include_usage\":true}}");
    check_rewrite("{\"model\":\"a\",\"stream_options\":{\"include_usage\":false},\"stream\":true}", 1,
                  "{\"model\":\"up-model\",\"stream_options\":{\"include_usage\":true},\"stream\":true}");
    check_rewrite("{\"stream_options\":{},\"model\":\"a\"}", 1,
                  "{\"stream_options\":{\"include_usage\":true},\"model\":\"up-model\"}");
    check_rewrite("{\"stream_options\":{\"x\":1},\"model\":\"a\"}", 1,
                  "{\"stream_options\":{\"include_usage\":true,\"x\":1},\"model\":\"up-model\"}");
    check_rewrite("{\"model\":\"a\",\"stream_options\":null}", 1,
                  "{\"model\":\"up-model\",\"stream_options\":{\"include_usage\":true}}");
}

typedef struct { buf_t out; int pieces; } sink;
static void emit(void *ud, const char *p, size_t n) { sink *s = ud; buf_append(&s->out, p, n); s->pieces++; }

#define EV1 "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n"
#define EVU "data: {\"id\":\"x\",\"choices\": [ ],\"usage\": {\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n"
#define EVD "data: [DONE]\n\n"

static void test_strip_whole_and_split(void)
{
    const char *stream = EV1 EV1 EVU EVD;
    size_t n = strlen(stream);
    /* every split position, fed in two and in byte-sized pieces */
    for (size_t cut = 0; cut <= n; cut++) {
        usagestrip st; usagestrip_init(&st);
        sink s; buf_init(&s.out); s.pieces = 0;
        usagestrip_feed(&st, stream, cut, emit, &s);
        usagestrip_feed(&st, stream + cut, n - cut, emit, &s);
        usagestrip_flush(&st, emit, &s);
        CHECK_STR(s.out.data ? s.out.data : "", EV1 EV1 EVD);
        usagestrip_free(&st);
        buf_free(&s.out);
    }
    usagestrip st; usagestrip_init(&st);
    sink s; buf_init(&s.out); s.pieces = 0;
    for (size_t i = 0; i < n; i++) usagestrip_feed(&st, stream + i, 1, emit, &s);
    usagestrip_flush(&st, emit, &s);
    CHECK_STR(s.out.data, EV1 EV1 EVD);
    usagestrip_free(&st); buf_free(&s.out);
}

static void test_strip_keeps_other_events(void)
{
    /* CRLF framing, a content chunk that merely mentions usage, no usage chunk at all */
    const char *stream = "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\": {\"}}]}\r\n\r\n" EVD;
    usagestrip st; usagestrip_init(&st);
    sink s; buf_init(&s.out); s.pieces = 0;
    usagestrip_feed(&st, stream, strlen(stream), emit, &s);
    usagestrip_flush(&st, emit, &s);
    CHECK_STR(s.out.data, stream);
    usagestrip_free(&st); buf_free(&s.out);
    CHECK(usagestrip_is_usage_chunk(EVU, strlen(EVU)) == 1);
    CHECK(usagestrip_is_usage_chunk(EV1, strlen(EV1)) == 0);
    CHECK(usagestrip_is_usage_chunk(": comment \"choices\":[] \"usage\":{}", 34) == 0);
}

/* The reference: every "key" : <open> found by a plain forward search. */
static int ref_opening(const char *p, size_t n, const char *key, char open, int empty_array)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl <= n; i++) {
        if (memcmp(p + i, key, kl)) continue;
        size_t j = i + kl;
        while (j < n && strchr(" \t\r\n", p[j])) j++;
        if (j >= n || p[j] != ':') continue;
        j++;
        while (j < n && strchr(" \t\r\n", p[j])) j++;
        if (j >= n || p[j] != open) continue;
        if (!empty_array) return 1;
        j++;
        while (j < n && strchr(" \t\r\n", p[j])) j++;
        if (j < n && p[j] == ']') return 1;
    }
    return 0;
}

static int ref_is_usage_chunk(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && strchr(" \t\r\n", p[i])) i++;
    if (n - i < 5 || memcmp(p + i, "data:", 5)) return 0;
    return ref_opening(p + i, n - i, "\"choices\"", '[', 1) && ref_opening(p + i, n - i, "\"usage\"", '{', 0);
}

/* The usage-chunk test (searched from the end on 'g') against the plain
 * forward search, over chunks assembled from the pieces streams are made of. */
static void test_strip_matches_reference(void)
{
    static const char *const parts[] = {
        "\"usage\"", "\"usage\":null", "\"usage\":{}", "\"usage\" : {\"prompt_tokens\":1}", "\"usage\":[]",
        "\"choices\":[]", "\"choices\" :[ ]", "\"choices\":[{\"delta\":{}}]", "\"logprobs\":null",
        "\"model\":\"gpt-4o-mini\"", "\"fingerprint\":\"g\"", "g", "\"", ":", "{", "}", ",", " ", "\n", "usage",
    };
    const size_t np = sizeof parts / sizeof parts[0];
    uint32_t x = 7;
    int mismatches = 0, positives = 0;
    for (int k = 0; k < 20000; k++) {
        char chunk[512];
        size_t n = 0;
        if (k % 4) { memcpy(chunk, "data: ", 6); n = 6; }
        int pieces = 1 + (int)((x = x * 1103515245u + 12345u) >> 16) % 8;
        for (int i = 0; i < pieces; i++) {
            const char *s = parts[((x = x * 1103515245u + 12345u) >> 16) % np];
            size_t l = strlen(s);
            if (n + l >= sizeof chunk) break;
            memcpy(chunk + n, s, l);
            n += l;
        }
        int want = ref_is_usage_chunk(chunk, n), got = usagestrip_is_usage_chunk(chunk, n);
        positives += want;
        if (want != got && mismatches++ < 3) fprintf(stderr, "  chunk %.*s: want %d got %d\n", (int)n, chunk, want, got);
    }
    CHECK(mismatches == 0);
    CHECK(positives > 100);   /* the generator does reach the usage chunk */
}

static void test_strip_bounded(void)
{
    /* an event that never ends is not held back forever */
    usagestrip st; usagestrip_init(&st);
    sink s; buf_init(&s.out); s.pieces = 0;
    char *big = malloc(USAGESTRIP_MAX_PENDING + 10);
    memset(big, 'a', USAGESTRIP_MAX_PENDING + 10);
    memcpy(big, "data: ", 6);
    usagestrip_feed(&st, big, 100, emit, &s);
    CHECK(s.out.len == 0);
    usagestrip_feed(&st, big + 100, USAGESTRIP_MAX_PENDING - 90, emit, &s);
    CHECK(s.out.len == USAGESTRIP_MAX_PENDING + 10);
    usagestrip_feed(&st, EVU, strlen(EVU), emit, &s);    /* passed through once it gave up */
    CHECK(s.out.len == USAGESTRIP_MAX_PENDING + 10 + strlen(EVU));
    free(big);
    usagestrip_free(&st); buf_free(&s.out);
}

int main(void)
{
    RUN(test_lookup_exact_and_prefix);
    RUN(test_lookup_other_providers);
    RUN(test_overrides);
    RUN(test_cost);
    RUN(test_format);
    RUN(test_rewrite_body);
    RUN(test_strip_whole_and_split);
    RUN(test_strip_keeps_other_events);
    RUN(test_strip_matches_reference);
    RUN(test_strip_bounded);
    TEST_MAIN_END();
}
