/* Shared by the per-provider unit tests: a representative client request in
 * the internal form, and helpers that run a provider's answer or stream
 * transcript through the client-dialect encoders (fixed ids and clock). */
#ifndef GW_PROVIDER_FIXTURE_H
#define GW_PROVIDER_FIXTURE_H

#include <stdlib.h>
#include <string.h>

#include "providers/chat.h"
#include "config.h"
#include "providers/provider.h"

/* System, multi-turn, an image, a tool call and its result, tools, stop, temperature. */
static const char FX_OPENAI_REQUEST[] =
    "{\"model\":\"alias\",\"temperature\":0.5,\"max_tokens\":300,\"stop\":[\"END\"],"
    "\"messages\":["
    "{\"role\":\"system\",\"content\":\"You are terse.\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in this image?\"},"
    "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0KGgo=\"}}]},"
    "{\"role\":\"assistant\",\"content\":\"A cat.\"},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
    "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny 21C\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather for a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"],"
    "\"additionalProperties\":false}}}],\"tool_choice\":\"auto\"}";

typedef struct fx_req { json_doc *doc; chat_req q; } fx_req;

static __attribute__((unused)) int fx_parse(fx_req *f, const char *json, int anthropic, int stream)
{
    char msg[256];
    const char *param;
    chat_req_init(&f->q);
    f->doc = json_parse(json, strlen(json), NULL, NULL);
    if (!f->doc) return -1;
    int rc = anthropic ? chat_from_anthropic(json_root(f->doc), json, &f->q, msg, sizeof msg, &param)
                       : chat_from_openai(json_root(f->doc), json, 0, &f->q, msg, sizeof msg, &param);
    if (rc < 0) fprintf(stderr, "  fixture refused: %s\n", msg);
    f->q.stream = stream;
    return rc;
}

static __attribute__((unused)) void fx_free(fx_req *f)
{
    chat_req_free(&f->q);
    json_doc_free(f->doc);
}

/* A whole answer rendered for cl; NULL (err filled) when the provider refuses it. Caller frees. */
static __attribute__((unused)) char *fx_response(const provider *p, const char *body, chat_client cl, usage_t *u, char *err, size_t errlen)
{
    chat_resp r;
    chat_resp_init(&r);
    buf_t out; buf_init(&out);
    char *res = NULL;
    if (p->parse_response(body, strlen(body), &r, err, errlen) == 0 &&
        chat_render_response(cl, &r, "id-1", "model-x", &out) == 0) {
        if (u) *u = r.usage;
        res = buf_steal(&out);
    }
    chat_resp_free(&r);
    buf_free(&out);
    return res;
}

typedef struct fx_stream_out { chat_enc enc; buf_t out; int errors; char error[256]; } fx_stream_out;

static void fx_emit(void *ud, const chat_event *ev)
{
    fx_stream_out *s = ud;
    if (ev->type == CEV_ERROR) {
        s->errors++;
        snprintf(s->error, sizeof s->error, "%.*s", (int)ev->text.n, ev->text.p);
        return;
    }
    chat_enc_event(&s->enc, ev, &s->out);
}

/* Feeds the transcript to p's decoder `split` bytes at a time and ends the
 * client stream. Returns what the client would read; *rc: 0 clean, -1 when the
 * decoder refused the stream (malformed, truncated or a provider error). */
static __attribute__((unused)) char *fx_stream(const provider *p, const char *t, size_t len, size_t split, chat_client cl, int include_usage,
                       int *rc, usage_t *u)
{
    fx_stream_out s;
    memset(&s, 0, sizeof s);
    buf_init(&s.out);
    chat_enc_init(&s.enc, cl, "id-1", "model-x", include_usage);
    s.enc.created = 1700000000;
    void *d = p->stream_new();
    int bad = 0;
    for (size_t i = 0; i < len && !bad; i += split)
        bad = p->stream_feed(d, t + i, len - i < split ? len - i : split, fx_emit, &s) < 0;
    if (!bad) bad = p->stream_end(d, fx_emit, &s) < 0;
    bad = bad || s.errors;
    chat_enc_end(&s.enc, bad ? (s.error[0] ? s.error : "stream failed") : NULL, &s.out);
    p->stream_free(d);
    *rc = bad ? -1 : 0;
    if (u) *u = s.enc.usage;
    chat_enc_free(&s.enc);
    return buf_steal(&s.out);
}

#endif
