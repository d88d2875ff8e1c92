/* fuzz target: the Responses inbound parser (/v1/responses) on any JSON a
 * client may send, optionally after a stored previous response, then every
 * provider's request body rendered from the result (each valid JSON), the
 * echoed members and the kept input items (valid JSON), and an answer and an
 * event stream rendered with that echo (valid JSON, every data: line).
 *
 * Input: byte 0 bit 0 set: the rest is "<request>\0<stored previous>". */
#include "provider_fuzz.h"

static void check_stream_of(const chat_req *q, buf_t *out)
{
    chat_enc e;
    chat_enc_init(&e, CLIENT_OPENAI_RESPONSES, "resp_1", "m", 1);
    e.echo = q->responses->echo.data;
    chat_event evs[] = {
        { .type = CEV_TEXT, .text = { "hi", 2 } },
        { .type = CEV_TOOL_START, .index = 0, .id = { "c", 1 }, .name = { "f", 1 } },
        { .type = CEV_TOOL_ARGS, .index = 0, .text = { "{}", 2 } },
        { .type = CEV_FINISH, .finish = FINISH_TOOL_CALLS },
    };
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++) chat_enc_event(&e, &evs[i], out);
    chat_enc_end(&e, NULL, out);
    check_stream_output(out);
    chat_enc_free(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1, pn = 0;
    const char *ps = NULL;
    if (data[0] & 1) {
        const char *z = memchr(s, '\0', n);
        if (!z) return 0;
        ps = z + 1;
        pn = n - (size_t)(ps - s);
        n = (size_t)(z - s);
    }
    json_limits lim = { .max_depth = 64, .max_bytes = 0 };
    json_doc *doc = json_parse(s, n, &lim, NULL), *prev = NULL;
    if (!doc) return 0;
    if (ps && !(prev = json_parse(ps, pn, &lim, NULL))) { json_doc_free(doc); return 0; }
    chat_req q;
    chat_req_init(&q);
    char msg[256], err[256];
    const char *param;
    int rc = chat_from_responses(json_root(doc), s, prev ? json_root(prev) : NULL, ps, &q, msg, sizeof msg, &param);
    if (rc == 0) {
        buf_t b; buf_init(&b);
        provider_call call = { .chat = &q };
        q.stream = data[0] >> 7;
        CHECK(openai_build_chat_body(&call, "m", &b, err, sizeof err) == 0);
        check_json(b.data, b.len);
        CHECK(anthropic_build_body(&q, "m", &b, err, sizeof err) == 0);
        check_json(b.data, b.len);
        if (gemini_build_body(&q, &b, err, sizeof err) == 0) check_json(b.data, b.len);
        if (ollama_build_body(&q, "m", &b, err, sizeof err) == 0) check_json(b.data, b.len);
        if (bedrock_build_body(&q, &b, err, sizeof err) == 0) check_json(b.data, b.len);
        check_json(q.responses->input.data, q.responses->input.len);
        CHECK(!memchr(q.responses->echo.data, '\n', q.responses->echo.len));   /* SSE-safe */
        buf_reset(&b);
        chat_resp r;
        chat_resp_init(&r);
        buf_puts(&r.text, "answer");
        CHECK(rsp_render_response(&r, "resp_1", "m", q.responses->echo.data, 1, &b) == 0);
        check_json(b.data, b.len);
        chat_resp_free(&r);
        buf_reset(&b);
        check_stream_of(&q, &b);
        buf_free(&b);
    } else {
        CHECK(msg[0] != '\0');
    }
    chat_req_free(&q);
    json_doc_free(doc);
    json_doc_free(prev);
    return 0;
}
