/* Shared by the provider fuzz targets: one provider's answer parser and
 * stream decoder on hostile bytes.
 *
 * Input: byte 0 picks the mode (answer or stream) and the client dialect,
 * the next bytes pick split points, the rest is the provider's output.
 * Properties: nothing crashes or leaks; whatever the gateway writes for the
 * client is valid JSON (every answer, every data: line of a stream); feeding
 * a stream whole or in pieces gives the same client bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "providers/chat.h"
#include "providers/provider.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static void check_json(const char *p, size_t n)
{
    json_doc *d = json_parse(p, n, NULL, NULL);
    if (!d) fprintf(stderr, "not JSON: %.*s\n", (int)n, p);
    CHECK(d != NULL);
    json_doc_free(d);
}

/* Every "data: " line of a client stream holds JSON (or [DONE]). */
static void check_stream_output(const buf_t *out)
{
    const char *p = out->data, *end = out->data + out->len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 6 && !memcmp(p, "data: ", 6) && !(n == 12 && !memcmp(p + 6, "[DONE]", 6))) check_json(p + 6, n - 6);
        p = nl ? nl + 1 : NULL;
    }
}

typedef struct fz_out { chat_enc enc; buf_t out; int errors; } fz_out;

static void fz_emit(void *ud, const chat_event *ev)
{
    fz_out *o = ud;
    if (ev->type == CEV_ERROR) { o->errors++; return; }
    chat_enc_event(&o->enc, ev, &o->out);
}

static void run_stream(const provider *p, chat_client cl, const char *s, size_t n, const uint8_t *cuts, size_t ncuts, buf_t *result)
{
    fz_out o;
    memset(&o, 0, sizeof o);
    buf_init(&o.out);
    chat_enc_init(&o.enc, cl, "id", "model", 1);
    o.enc.created = 1;
    void *d = p->stream_new();
    CHECK(d != NULL);
    int bad = 0;
    size_t off = 0;
    for (size_t i = 0; i < ncuts && off < n && !bad; i++) {
        size_t k = cuts[i] % 23;
        if (k > n - off) k = n - off;
        char *piece = malloc(k ? k : 1);   /* exact size: ASan sees any over-read */
        memcpy(piece, s + off, k);
        bad = p->stream_feed(d, piece, k, fz_emit, &o) < 0;
        free(piece);
        off += k;
    }
    if (!bad && off < n) {
        char *piece = malloc(n - off);
        memcpy(piece, s + off, n - off);
        bad = p->stream_feed(d, piece, n - off, fz_emit, &o) < 0;
        free(piece);
    }
    if (!bad) bad = p->stream_end(d, fz_emit, &o) < 0;
    chat_enc_end(&o.enc, bad || o.errors ? "stream failed" : NULL, &o.out);
    p->stream_free(d);
    chat_enc_free(&o.enc);
    check_stream_output(&o.out);
    buf_reset(result);
    buf_append(result, o.out.data ? o.out.data : "", o.out.len);
    buf_free(&o.out);
}

/* Gemini and Ollama name no tool calls: the gateway's generated ids
 * ("call_<hex>_<n>") differ from run to run, so they are dropped before comparing. */
static void drop_generated_ids(buf_t *b)
{
    size_t w = 0;
    for (size_t r = 0; r < b->len;) {
        if (b->len - r > 5 && !memcmp(b->data + r, "call_", 5)) {
            r += 5;
            while (r < b->len && ((b->data[r] >= '0' && b->data[r] <= '9') || (b->data[r] >= 'a' && b->data[r] <= 'f'))) r++;
            continue;
        }
        b->data[w++] = b->data[r++];
    }
    b->len = w;
}

static __attribute__((unused)) int fuzz_provider(const provider *p, const uint8_t *data, size_t size, size_t max_line)
{
    if (size < 1) return 0;
    chat_client cl = (chat_client)(data[0] % 4);   /* OpenAI chat, completions, Anthropic, Responses */
    int stream = (data[0] >> 2) & 1;
    size_t ncuts = (data[0] >> 3) % 32;
    if (ncuts > size - 1) ncuts = size - 1;
    const uint8_t *cuts = data + 1;
    const char *s = (const char *)data + 1 + ncuts;
    size_t n = size - 1 - ncuts;
    if (!stream) {
        chat_resp r;
        chat_resp_init(&r);
        char err[256];
        char *copy = malloc(n ? n : 1);
        memcpy(copy, s, n);
        if (p->parse_response(copy, n, &r, err, sizeof err) == 0) {
            buf_t out; buf_init(&out);
            CHECK(chat_render_response(cl, &r, "id", "model", &out) == 0);
            check_json(out.data, out.len);
            buf_free(&out);
        } else {
            CHECK(err[0] != '\0');
        }
        if (p->parse_embed) {   /* the same bytes as an embeddings answer */
            buf_t eo; buf_init(&eo);
            usage_t eu = { 0 };
            if (p->parse_embed(copy, n, cl == CLIENT_ANTHROPIC, "model", &eo, &eu, err, sizeof err) == 0) check_json(eo.data, eo.len);
            buf_free(&eo);
        }
        char msg[200];
        p->error_message(copy, n, msg, sizeof msg);
        free(copy);
        chat_resp_free(&r);
        return 0;
    }
    size_t longest = 0, cur = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || s[i] == '\r') cur = 0;
        else if (++cur > longest) longest = cur;
    }
    buf_t whole, split;
    buf_init(&whole); buf_init(&split);
    run_stream(p, cl, s, n, NULL, 0, &whole);
    run_stream(p, cl, s, n, cuts, ncuts, &split);
    drop_generated_ids(&whole);
    drop_generated_ids(&split);
    if (longest <= max_line)
        CHECK(whole.len == split.len && (whole.len == 0 || !memcmp(whole.data, split.data, whole.len)));
    buf_free(&whole); buf_free(&split);
    return 0;
}
