/* fuzz target: gateway/guard.c and guardjson.c, the matcher and maskers.
 *
 * The input's first byte chooses how many split points follow; the rest is
 * text (invalid UTF-8 replaced, as the JSON decoder guarantees valid text).
 * It is masked whole and as a stream cut at the chosen points (on character
 * boundaries, as decoded deltas are): without a block both must give the
 * same text. The same bytes are then fed as a client SSE stream, in the same
 * pieces, to the event rewriter (no crash, bounded output). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "guard.h"
#include "guardjson.h"
#include "json.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static guard_policy *g_pol;

static guard_policy *policy(void)
{
    static const char *const deny[] = { "forbidden phrase" };
    static const char *const allow[] = { "ok@example.com" };
    static const char *const allow_re[] = { "4242[ -]?4242[ -]?4242[ -]?4242" };
    static const guard_custom custom[] = { { .name = "ticket", .pattern = "TCK-[0-9]{4,8}", .action = GUARD_MASK },
                                           { .name = "word", .pattern = "(?i)sec(?:ret)?", .action = GUARD_LOG } };
    guard_spec s = { .name = "fuzz", .custom = custom, .ncustom = 2, .deny_words = deny, .ndeny_words = 1,
                     .deny_action = GUARD_MASK, .allow_words = allow, .nallow_words = 1,
                     .allow_regex = allow_re, .nallow_regex = 1, .stream_window = 512 };
    const char *names[] = { "email", "card", "iban", "phone", "private_key", "anthropic_key", "openai_key", "aws_key",
                            "github_token", "slack_token", "google_key", "bearer", "jwt" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) s.detector_action[guard_detector_id(names[i])] = GUARD_MASK;
    char err[256];
    guard_policy *p = guard_policy_compile(&s, err, sizeof err);
    if (!p) { fprintf(stderr, "compile: %s\n", err); abort(); }
    return p;
}

/* Invalid UTF-8 becomes '?': the guard's callers hand it decoded JSON strings. */
static size_t sanitize(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = in[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        int ok = len && i + len <= n && c != 0xC0 && c != 0xC1 && c < 0xF5;
        for (size_t k = 1; ok && k < len; k++) ok = (in[i + k] & 0xC0) == 0x80;
        if (ok && len == 3) {
            uint32_t cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(in[i + 1] & 0x3F) << 6 | (in[i + 2] & 0x3F);
            ok = cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
        }
        if (ok && len == 4) {
            uint32_t cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(in[i + 1] & 0x3F) << 12 | (uint32_t)(in[i + 2] & 0x3F) << 6;
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (ok && len == 2) ok = c >= 0xC2;
        if (!ok) { out[o++] = '?'; i++; continue; }
        memcpy(out + o, in + i, len);
        o += len;
        i += len;
    }
    return o;
}

static void sink(void *ud, const char *p, size_t n)
{
    buf_t *b = ud;
    buf_append(b, p, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_pol) g_pol = policy();
    if (size < 1 || size > 65536) return 0;
    size_t ncuts = data[0] % 16;
    if (ncuts > size - 1) ncuts = size - 1;
    const uint8_t *cuts = data + 1;
    const uint8_t *raw = data + 1 + ncuts;
    size_t rn = size - 1 - ncuts;
    char *t = malloc(rn ? rn : 1);
    size_t n = sanitize(raw, rn, t);
    guard_chain c = { .p = { g_pol }, .n = 1 };

    guard_result whole_res = { 0 };
    buf_t whole;
    buf_init(&whole);
    int rc = guard_text(&c, GUARD_OUTPUT, t, n, &whole, &whole_res);
    CHECK(rc >= 0);
    if (rc == 0) { buf_reset(&whole); buf_append(&whole, t, n); }

    guard_result split_res = { 0 };
    guard_stream g;
    guard_stream_init(&g, &c, &split_res);
    buf_t split;
    buf_init(&split);
    size_t off = 0;
    for (size_t i = 0; i < ncuts && off < n; i++) {
        size_t k = cuts[i] % 64;
        if (k > n - off) k = n - off;
        while (off + k < n && ((unsigned char)t[off + k] & 0xC0) == 0x80) k++;   /* whole characters */
        char *piece = malloc(k ? k : 1);   /* exact size: ASan sees any over-read */
        memcpy(piece, t + off, k);
        CHECK(guard_stream_feed(&g, piece, k, &split) == 0);
        free(piece);
        off += k;
    }
    CHECK(guard_stream_feed(&g, t + off, n - off, &split) == 0);
    CHECK(guard_stream_flush(&g, &split) == 0);
    CHECK(!guard_stream_pending(&g));
    guard_stream_free(&g);
    /* the stream decides on held text only past its window: short texts must mask the same */
    if (whole_res.action < GUARD_BLOCK && split_res.action < GUARD_BLOCK && n < 512) {
        if (whole.len != split.len || (whole.len && memcmp(whole.data, split.data, whole.len))) {
            fprintf(stderr, "whole: %.*s\nsplit: %.*s\n", (int)whole.len, whole.data, (int)split.len, split.data ? split.data : "");
            CHECK(!"stream masking differs from whole masking");
        }
    }
    buf_free(&whole);
    buf_free(&split);

    /* the text as a request body (every route) and as an answer: a rewrite is valid JSON */
    json_error je;
    json_doc *doc = json_parse(t, n, NULL, &je);
    if (doc) {
        for (int route = 0; route <= 4; route++) {
            guard_result r = { 0 };
            buf_t nb;
            buf_init(&nb);
            int jr = route < 4 ? guardjson_input(&c, route, t, json_root(doc), &nb, &r)
                               : guardjson_output(&c, t, n, &nb, &r);
            CHECK(jr >= 0);
            if (jr == 1) {
                json_doc *again = json_parse(nb.data, nb.len, NULL, &je);
                CHECK(again != NULL);
                json_doc_free(again);
            }
            buf_free(&nb);
        }
        json_doc_free(doc);
    }

    /* the raw bytes as a client stream, both dialects */
    for (int anth = 0; anth < 2; anth++) {
        guard_result r = { 0 };
        guard_sse s;
        guard_sse_init(&s, &c, &r, anth);
        buf_t out;
        buf_init(&out);
        off = 0;
        for (size_t i = 0; i < ncuts && off < rn; i++) {
            size_t k = cuts[i] % 64;
            if (k > rn - off) k = rn - off;
            guard_sse_feed(&s, (const char *)raw + off, k, sink, &out);
            off += k;
        }
        guard_sse_feed(&s, (const char *)raw + off, rn - off, sink, &out);
        guard_sse_end(&s, sink, &out);
        CHECK(out.len <= 4 * rn + 4096);
        guard_sse_free(&s);
        buf_free(&out);
    }
    free(t);
    return 0;
}
