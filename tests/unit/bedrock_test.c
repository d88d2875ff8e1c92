/* bedrock provider: golden Converse body, a signed request, answers and a
 * ConverseStream transcript (AWS event stream frames built here with their
 * CRCs, payloads as in the Bedrock API reference) into exact OpenAI output;
 * bad CRCs, oversized or cut frames and exceptions refused. */
#include "test.h"

#include "provider_fixture.h"
#include "providers/eventstream.h"

static void put_be32(buf_t *b, uint32_t v)
{
    char c[4] = { (char)(v >> 24), (char)(v >> 16), (char)(v >> 8), (char)v };
    buf_append(b, c, 4);
}

static void header(buf_t *h, const char *name, const char *value)
{
    size_t n = strlen(name), v = strlen(value);
    buf_putc(h, (char)n);
    buf_append(h, name, n);
    buf_putc(h, 7);
    buf_putc(h, (char)(v >> 8));
    buf_putc(h, (char)v);
    buf_append(h, value, v);
}

/* One frame: prelude, prelude CRC, headers, payload, message CRC. */
static void frame(buf_t *out, const char *msg_type, const char *type_header, const char *type, const char *payload)
{
    buf_t h; buf_init(&h);
    header(&h, type_header, type);
    header(&h, ":content-type", "application/json");
    header(&h, ":message-type", msg_type);
    size_t start = out->len, pl = strlen(payload);
    put_be32(out, (uint32_t)(12 + h.len + pl + 4));
    put_be32(out, (uint32_t)h.len);
    put_be32(out, es_crc32(out->data + start, 8));
    buf_append(out, h.data, h.len);
    buf_append(out, payload, pl);
    put_be32(out, es_crc32(out->data + start, out->len - start));
    buf_free(&h);
}

static void event(buf_t *out, const char *type, const char *payload) { frame(out, "event", ":event-type", type, payload); }

static void transcript(buf_t *t)
{
    event(t, "messageStart", "{\"role\":\"assistant\"}");
    event(t, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hello\"}}");
    event(t, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\" there\"}}");
    event(t, "contentBlockStop", "{\"contentBlockIndex\":0}");
    event(t, "contentBlockStart", "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q\",\"name\":\"top_song\"}}}");
    event(t, "contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{\\\"sign\\\": \"}}}");
    event(t, "contentBlockDelta", "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"\\\"WZPZ\\\"}\"}}}");
    event(t, "contentBlockStop", "{\"contentBlockIndex\":1}");
    event(t, "messageStop", "{\"stopReason\":\"tool_use\"}");
    event(t, "metadata", "{\"usage\":{\"inputTokens\":375,\"outputTokens\":36,\"totalTokens\":511,\"cacheReadInputTokens\":100},"
                         "\"metrics\":{\"latencyMs\":2012}}");
}

#define CHUNK(delta, finish) "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\"," \
    "\"choices\":[{\"index\":0,\"delta\":{" delta "},\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

static const char STREAM_AS_OPENAI[] =
    CHUNK("\"role\":\"assistant\",\"content\":\"\"", "null")
    CHUNK("\"content\":\"Hello\"", "null")
    CHUNK("\"content\":\" there\"", "null")
    CHUNK("\"tool_calls\":[{\"index\":0,\"id\":\"tooluse_kZJMlvQmRJ6eAyJE5GIl7Q\",\"type\":\"function\",\"function\":{\"name\":\"top_song\",\"arguments\":\"\"}}]", "null")
    CHUNK("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"sign\\\": \"}}]", "null")
    CHUNK("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"WZPZ\\\"}\"}}]", "null")
    CHUNK("", "\"tool_calls\"")
    "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":475,\"completion_tokens\":36,\"total_tokens\":511,\"prompt_tokens_details\":{\"cached_tokens\":100}}}\n\n"
    "data: [DONE]\n\n";

static void golden_request(void)
{
    fx_req f;
    buf_t b; buf_init(&b);
    char err[200];
    CHECK(fx_parse(&f, FX_OPENAI_REQUEST, 0, 0) == 0);
    CHECK(bedrock_build_body(&f.q, &b, err, sizeof err) == 0);
    CHECK_STR(b.data,
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"What is in this image?\"},{\"image\":{\"format\":\"png\",\"source\":"
        "{\"bytes\":\"iVBORw0KGgo=\"}}}]},{\"role\":\"assistant\",\"content\":[{\"text\":\"A cat.\"}]},{\"role\":\"user\",\"content\":"
        "[{\"text\":\"Weather in Paris?\"}]},{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"call_1\",\"name\":"
        "\"get_weather\",\"input\":{\"city\":\"Paris\"}}}]},{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"call_1\","
        "\"content\":[{\"text\":\"sunny 21C\"}]}}]}],\"system\":[{\"text\":\"You are terse.\"}],\"inferenceConfig\":{\"maxTokens\":300,"
        "\"temperature\":0.5,\"stopSequences\":[\"END\"]},\"toolConfig\":{\"tools\":[{\"toolSpec\":{\"name\":\"get_weather\","
        "\"description\":\"Weather for a city\",\"inputSchema\":{\"json\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
        "\"string\"}},\"required\":[\"city\"],\"additionalProperties\":false}}}}]}}");
    fx_free(&f);
    buf_free(&b);
}

static void signed_request(void)
{
    gw_deployment d = { .provider_name = "bedrock", .model = "anthropic.claude-3-haiku-20240307-v1:0", .region = "eu-west-1",
                        .aws_access_key_id = "AKIDEXAMPLE", .aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" };
    char err[200];
    CHECK(provider_bedrock.prepare(&d, err, sizeof err) == 0);
    CHECK_STR(d.base_url, "https://bedrock-runtime.eu-west-1.amazonaws.com");
    fx_req f;
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, 1) == 0);
    provider_call call = { .route = ROUTE_CHAT, .dep = &d, .chat = &f.q };
    provider_http h;
    memset(&h, 0, sizeof h);
    buf_init(&h.url); buf_init(&h.body); buf_init(&h.hdrs);
    CHECK(provider_bedrock.build_chat(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream");
    CHECK(!strncmp(h.headers[1], "X-Amz-Date: ", 12));
    CHECK(!strncmp(h.headers[2], "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 55));
    CHECK(strstr(h.headers[2], "/eu-west-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=") != NULL);
    CHECK(h.headers[3] == NULL);
    for (int i = 0; h.headers[i]; i++) CHECK(strstr(h.headers[i], "EXAMPLEKEY") == NULL);   /* the secret is never sent */
    fx_free(&f);
    buf_free(&h.url); buf_free(&h.body); buf_free(&h.hdrs);
    free(d.base_url);
    /* a region is required */
    gw_deployment n = { .provider_name = "bedrock", .model = "m", .aws_access_key_id = "a", .aws_secret_access_key = "b" };
    CHECK(provider_bedrock.prepare(&n, err, sizeof err) == -1);
}

static void response_to_openai(void)
{
    char err[200];
    usage_t u;
    static const char body[] =
        "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":\"Here is the top song.\"}]}},"
        "\"stopReason\":\"end_turn\",\"usage\":{\"inputTokens\":125,\"outputTokens\":60,\"totalTokens\":185},\"metrics\":{\"latencyMs\":1175}}";
    char *out = fx_response(&provider_bedrock, body, CLIENT_OPENAI_CHAT, &u, err, sizeof err);
    const char *tail = out ? strstr(out, ",\"model\"") : NULL;
    CHECK_STR(tail, ",\"model\":\"model-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                    "\"Here is the top song.\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                    "\"usage\":{\"prompt_tokens\":125,\"completion_tokens\":60,\"total_tokens\":185,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    free(out);
    out = fx_response(&provider_bedrock, "{\"output\":{\"message\":{\"content\":[{\"text\":\"\"}]}},\"stopReason\":\"guardrail_intervened\"}",
                      CLIENT_ANTHROPIC, NULL, err, sizeof err);
    CHECK(out && strstr(out, "\"stop_reason\":\"refusal\""));
    free(out);
}

static void stream_to_openai(void)
{
    buf_t t; buf_init(&t);
    transcript(&t);
    int rc;
    for (size_t split = 1; split <= t.len; split += 37) {
        char *out = fx_stream(&provider_bedrock, t.data, t.len, split, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(out, STREAM_AS_OPENAI);
        free(out);
    }
    buf_free(&t);
}

static void broken_frames(void)
{
    buf_t t; buf_init(&t);
    transcript(&t);
    int rc;
    /* a flipped payload byte: the message CRC no longer matches */
    t.data[40] ^= 0x20;
    char *out = fx_stream(&provider_bedrock, t.data, t.len, 64, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "\"error\""));
    free(out);
    t.data[40] ^= 0x20;
    /* a flipped length: the prelude CRC no longer matches */
    t.data[2] ^= 0x01;
    out = fx_stream(&provider_bedrock, t.data, t.len, 64, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
    CHECK(rc == -1);
    free(out);
    t.data[2] ^= 0x01;
    /* cut in the middle of a frame */
    out = fx_stream(&provider_bedrock, t.data, t.len - 5, 64, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
    CHECK(rc == -1);
    free(out);
    buf_free(&t);
    /* an exception mid-stream */
    buf_init(&t);
    event(&t, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hel\"}}");
    frame(&t, "exception", ":exception-type", "throttlingException", "{\"message\":\"Too many requests\"}");
    out = fx_stream(&provider_bedrock, t.data, t.len, 10, CLIENT_ANTHROPIC, 1, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "throttlingException: Too many requests"));
    free(out);
    buf_free(&t);
    /* a frame announcing more than the bound */
    es_decoder d;
    es_init(&d, 1024);
    char big[12] = { 0, 0, 0x10, 0, 0, 0, 0, 0 };
    uint32_t c = es_crc32(big, 8);
    big[8] = (char)(c >> 24); big[9] = (char)(c >> 16); big[10] = (char)(c >> 8); big[11] = (char)c;
    CHECK(es_feed(&d, big, 12, NULL, NULL) == -1);
    es_free(&d);
}

static void crc32_known_value(void)
{
    CHECK(es_crc32("123456789", 9) == 0xCBF43926u);   /* the CRC-32 check value */
}

static void embeddings(void)
{
    gw_deployment d = { .provider_name = "bedrock", .model = "amazon.titan-embed-text-v2:0", .region = "us-east-1",
                        .aws_access_key_id = "AKIDEXAMPLE", .aws_secret_access_key = "secret" };
    char err[200];
    CHECK(provider_bedrock.prepare(&d, err, sizeof err) == 0);
    static const char one[] = "{\"model\":\"e\",\"input\":\"hello\",\"dimensions\":256}";
    static const char two[] = "{\"model\":\"e\",\"input\":[\"a\",\"b\"]}";
    json_doc *d1 = json_parse(one, sizeof one - 1, NULL, NULL), *d2 = json_parse(two, sizeof two - 1, NULL, NULL);
    provider_call call = { .route = ROUTE_EMBEDDINGS, .dep = &d, .root = json_root(d1) };
    provider_http h;
    memset(&h, 0, sizeof h);
    buf_init(&h.url); buf_init(&h.body); buf_init(&h.hdrs);
    CHECK(provider_bedrock.build_embed(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke");
    CHECK_STR(h.body.data, "{\"inputText\":\"hello\",\"dimensions\":256}");
    CHECK(!strncmp(h.headers[2], "Authorization: AWS4-HMAC-SHA256 ", 32));
    call.root = json_root(d2);
    CHECK(provider_bedrock.build_embed(&call, &h, err, sizeof err) == -1);   /* Titan: one input */
    gw_deployment c = d;
    c.model = "cohere.embed-english-v3";
    call.dep = &c;
    CHECK(provider_bedrock.build_embed(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.body.data, "{\"texts\":[\"a\",\"b\"],\"input_type\":\"search_document\"}");
    buf_t out; buf_init(&out);
    usage_t u = { 0 };
    static const char titan[] = "{\"embedding\":[0.5,-1],\"inputTextTokenCount\":3}";
    CHECK(provider_bedrock.parse_embed(titan, sizeof titan - 1, 0, "e", &out, &u, err, sizeof err) == 0);
    CHECK_STR(out.data, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5,-1]}],"
                        "\"model\":\"e\",\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}");
    buf_reset(&out);
    static const char cohere[] = "{\"id\":\"x\",\"embeddings\":[[0.5],[1]],\"texts\":[\"a\",\"b\"],\"response_type\":\"embeddings_floats\"}";
    CHECK(provider_bedrock.parse_embed(cohere, sizeof cohere - 1, 1, "e", &out, &u, err, sizeof err) == 0);
    CHECK(strstr(out.data, "\"index\":1,\"embedding\":\"AACAPw==\"") != NULL);   /* 1.0f, base64 */
    buf_reset(&out);
    CHECK(provider_bedrock.parse_embed("{}", 2, 0, "e", &out, &u, err, sizeof err) == -1);
    gw_deployment x = d;
    x.model = "meta.llama3";
    call.dep = &x;
    CHECK(provider_bedrock.build_embed(&call, &h, err, sizeof err) == -1);
    buf_free(&out);
    buf_free(&h.url); buf_free(&h.body); buf_free(&h.hdrs);
    json_doc_free(d1); json_doc_free(d2);
    free(d.base_url);
}

int main(void)
{
    RUN(embeddings);
    RUN(crc32_known_value);
    RUN(golden_request);
    RUN(signed_request);
    RUN(response_to_openai);
    RUN(stream_to_openai);
    RUN(broken_frames);
    TEST_MAIN_END();
}
