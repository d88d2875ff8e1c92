/* fuzz target: the inbound adapters (OpenAI chat / legacy completions,
 * Anthropic Messages) on any JSON a client may send, then every provider's
 * request body rendered from the result: each one must be valid JSON. */
#include "provider_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int kind = data[0] % 3;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    json_limits lim = { .max_depth = 64, .max_bytes = 0 };
    json_doc *doc = json_parse(s, n, &lim, NULL);
    if (!doc) return 0;
    chat_req q;
    chat_req_init(&q);
    char msg[256], err[256];
    const char *param;
    int rc = kind == 2 ? chat_from_anthropic(json_root(doc), s, &q, msg, sizeof msg, &param)
                       : chat_from_openai(json_root(doc), s, kind == 1, &q, msg, sizeof msg, &param);
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
        buf_free(&b);
    } else {
        CHECK(msg[0] != '\0');
    }
    chat_req_free(&q);
    json_doc_free(doc);
    return 0;
}
