/* gemini provider: golden generateContent body, answers and an alt=sse
 * stream transcript (as in the Gemini API reference) into exact OpenAI output,
 * safety blocks as content_filter, malformed or cut output refused. */
#include "test.h"

#include "provider_fixture.h"

static void golden_request(void)
{
    fx_req f;
    buf_t b; buf_init(&b);
    char err[200];
    CHECK(fx_parse(&f, FX_OPENAI_REQUEST, 0, 0) == 0);
    CHECK(gemini_build_body(&f.q, &b, err, sizeof err) == 0);
    CHECK_STR(b.data,
        "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"What is in this image?\"},{\"inlineData\":{\"mimeType\":\"image/png\","
        "\"data\":\"iVBORw0KGgo=\"}}]},{\"role\":\"model\",\"parts\":[{\"text\":\"A cat.\"}]},{\"role\":\"user\",\"parts\":"
        "[{\"text\":\"Weather in Paris?\"}]},{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":"
        "{\"city\":\"Paris\"}}}]},{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"get_weather\",\"response\":"
        "{\"content\":\"sunny 21C\"}}}]}],\"systemInstruction\":{\"parts\":[{\"text\":\"You are terse.\"}]},\"tools\":"
        "[{\"functionDeclarations\":[{\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}]}],"
        "\"generationConfig\":{\"candidateCount\":1,\"temperature\":0.5,\"maxOutputTokens\":300,\"stopSequences\":[\"END\"]}}");
    fx_free(&f);
    /* a named tool choice, JSON mode, an image URL refused */
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":\"json_object\"},"
                       "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                       "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", 0, 1) == 0);
    CHECK(gemini_build_body(&f.q, &b, err, sizeof err) == 0);
    CHECK_STR(b.data, "{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"hi\"}]}],\"tools\":[{\"functionDeclarations\":[{\"name\":\"f\"}]}],"
                      "\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"f\"]}},"
                      "\"generationConfig\":{\"candidateCount\":1,\"responseMimeType\":\"application/json\"}}");
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\"}}]}]}", 0, 0) == 0);
    CHECK(gemini_build_body(&f.q, &b, err, sizeof err) == -1);
    CHECK(strstr(err, "base64") != NULL);
    fx_free(&f);
    buf_free(&b);
}

static void url_and_key_header(void)
{
    gw_deployment d = { .provider_name = "gemini", .model = "models/gemini-2.0-flash", .api_key = "AIzaSECRET" };
    char err[200];
    CHECK(provider_gemini.prepare(&d, err, sizeof err) == 0);
    fx_req f;
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 0, 1) == 0);
    provider_call call = { .route = ROUTE_CHAT, .dep = &d, .chat = &f.q };
    provider_http h;
    memset(&h, 0, sizeof h);
    buf_init(&h.url); buf_init(&h.body); buf_init(&h.hdrs);
    CHECK(provider_gemini.build_chat(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    CHECK_STR(h.headers[1], "x-goog-api-key: AIzaSECRET");
    CHECK(strstr(h.url.data, "SECRET") == NULL);   /* the key never goes in the URL */
    fx_free(&f);
    buf_free(&h.url); buf_free(&h.body); buf_free(&h.hdrs);
    free(d.base_url); free(d.auth_header);
}

static const char RESPONSE[] =
    "{\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Let me check. \"},{\"functionCall\": {\"name\": \"get_weather\","
    "\"args\": {\"city\": \"Paris\"}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],"
    "\"usageMetadata\": {\"promptTokenCount\": 30,\"candidatesTokenCount\": 12,\"totalTokenCount\": 42,\"cachedContentTokenCount\": 10},"
    "\"modelVersion\": \"gemini-2.0-flash\",\"responseId\": \"resp-1\"}";

static void response_to_openai(void)
{
    char err[200];
    usage_t u;
    char *out = fx_response(&provider_gemini, RESPONSE, CLIENT_OPENAI_CHAT, &u, err, sizeof err);
    CHECK(out && strstr(out, "\"content\":\"Let me check. \",\"tool_calls\":[{\"id\":\"call_"));
    CHECK(out && strstr(out, "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]"));
    CHECK(out && strstr(out, "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12,"
                             "\"total_tokens\":42,\"prompt_tokens_details\":{\"cached_tokens\":10}}}"));
    CHECK(u.prompt_tokens == 30 && u.cached_tokens == 10);
    free(out);
    /* a blocked prompt: no candidates, a blockReason */
    out = fx_response(&provider_gemini, "{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":7}}",
                      CLIENT_ANTHROPIC, NULL, err, sizeof err);
    CHECK(out && strstr(out, "\"stop_reason\":\"refusal\""));
    free(out);
    out = fx_response(&provider_gemini, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"MAX_TOKENS\"}]}",
                      CLIENT_OPENAI_CHAT, NULL, err, sizeof err);
    CHECK(out && strstr(out, "\"finish_reason\":\"length\""));
    free(out);
}

static const char STREAM[] =
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"The\"}],\"role\": \"model\"},\"index\": 0}],"
    "\"usageMetadata\": {\"promptTokenCount\": 8,\"totalTokenCount\": 8},\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n"
    "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" sky is blue\"}],\"role\": \"model\"},\"finishReason\": \"STOP\","
    "\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 8,\"candidatesTokenCount\": 4,\"totalTokenCount\": 12},"
    "\"modelVersion\": \"gemini-2.0-flash\"}\r\n\r\n";

#define CHUNK(delta, finish) "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\"," \
    "\"choices\":[{\"index\":0,\"delta\":{" delta "},\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

static const char STREAM_AS_OPENAI[] =
    CHUNK("\"role\":\"assistant\",\"content\":\"\"", "null")
    CHUNK("\"content\":\"The\"", "null")
    CHUNK("\"content\":\" sky is blue\"", "null")
    CHUNK("", "\"stop\"")
    "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":4,\"total_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n"
    "data: [DONE]\n\n";

static void stream_to_openai(void)
{
    int rc;
    for (size_t split = 1; split <= sizeof STREAM; split += 13) {
        char *out = fx_stream(&provider_gemini, STREAM, sizeof STREAM - 1, split, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(out, STREAM_AS_OPENAI);
        free(out);
    }
    /* a function call arrives whole: start and arguments at once; safety ends as content_filter */
    static const char tool[] =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Paris\"}}}],"
        "\"role\":\"model\"},\"finishReason\":\"STOP\"}]}\n\n";
    char *out = fx_stream(&provider_gemini, tool, sizeof tool - 1, 9, CLIENT_ANTHROPIC, 1, &rc, NULL);
    CHECK(rc == 0 && out);
    CHECK(out && strstr(out, "\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_"));
    CHECK(out && strstr(out, "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\\\"Paris\\\"}\"}"));
    CHECK(out && strstr(out, "\"stop_reason\":\"tool_use\""));
    free(out);
    static const char safety[] = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"I\"}]},\"finishReason\":\"SAFETY\"}]}\n\n";
    out = fx_stream(&provider_gemini, safety, sizeof safety - 1, 100, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == 0 && out && strstr(out, "\"finish_reason\":\"content_filter\""));
    free(out);
}

static void malformed_and_truncated(void)
{
    char err[200];
    int rc;
    CHECK(fx_response(&provider_gemini, "{\"candidates\":[", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    CHECK(fx_response(&provider_gemini, "{}", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    CHECK(fx_response(&provider_gemini, "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"args\":[]}}]}}]}",
                      CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    /* no finishReason before the end: cut */
    size_t cut = (size_t)(strstr(STREAM + 10, "data:") - STREAM);
    char *out = fx_stream(&provider_gemini, STREAM, cut, 50, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
    CHECK(rc == -1 && out && !strstr(out, "[DONE]"));
    free(out);
    static const char bad[] = "data: {\"candidates\": [\n\n";
    out = fx_stream(&provider_gemini, bad, sizeof bad - 1, 3, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == -1);
    free(out);
    static const char e[] = "data: {\"error\":{\"code\":429,\"message\":\"Resource exhausted\",\"status\":\"RESOURCE_EXHAUSTED\"}}\n\n";
    out = fx_stream(&provider_gemini, e, sizeof e - 1, 100, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "Resource exhausted"));
    free(out);
    char msg[100];
    static const char body[] = "[{\"error\":{\"code\":400,\"message\":\"API key not valid.\",\"status\":\"INVALID_ARGUMENT\"}}]";
    provider_gemini.error_message(body, sizeof body - 1, msg, sizeof msg);
    CHECK_STR(msg, "API key not valid.");
}

static void embeddings(void)
{
    gw_deployment d = { .provider_name = "gemini", .model = "text-embedding-004", .api_key = "k" };
    char err[200];
    CHECK(provider_gemini.prepare(&d, err, sizeof err) == 0);
    static const char req[] = "{\"model\":\"e\",\"input\":[\"a\",\"b\"],\"dimensions\":2}";
    json_doc *doc = json_parse(req, sizeof req - 1, NULL, NULL);
    provider_call call = { .route = ROUTE_EMBEDDINGS, .dep = &d, .root = json_root(doc) };
    provider_http h;
    memset(&h, 0, sizeof h);
    buf_init(&h.url); buf_init(&h.body); buf_init(&h.hdrs);
    CHECK(provider_gemini.build_embed(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://generativelanguage.googleapis.com/v1beta/models/text-embedding-004:batchEmbedContents");
    CHECK_STR(h.body.data, "{\"requests\":[{\"model\":\"models/text-embedding-004\",\"content\":{\"parts\":[{\"text\":\"a\"}]},"
                           "\"outputDimensionality\":2},{\"model\":\"models/text-embedding-004\",\"content\":{\"parts\":"
                           "[{\"text\":\"b\"}]},\"outputDimensionality\":2}]}");
    static const char ans[] = "{\"embeddings\":[{\"values\":[0.5,-1]},{\"values\":[0.25,1]}]}";
    buf_t out; buf_init(&out);
    usage_t u = { 0 };
    CHECK(provider_gemini.parse_embed(ans, sizeof ans - 1, 0, "e", &out, &u, err, sizeof err) == 0);
    CHECK_STR(out.data, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.5,-1]},"
                        "{\"object\":\"embedding\",\"index\":1,\"embedding\":[0.25,1]}],\"model\":\"e\","
                        "\"usage\":{\"prompt_tokens\":0,\"total_tokens\":0}}");
    buf_reset(&out);
    /* base64: little-endian float32s; 0.5 = 00 00 00 3f, -1 = 00 00 80 bf */
    CHECK(provider_gemini.parse_embed(ans, sizeof ans - 1, 1, "e", &out, &u, err, sizeof err) == 0);
    CHECK(strstr(out.data, "\"embedding\":\"AAAAPwAAgL8=\"") != NULL);
    buf_reset(&out);
    CHECK(provider_gemini.parse_embed("{\"embeddings\":[{\"values\":[\"x\"]}]}", 34, 0, "e", &out, &u, err, sizeof err) == -1);
    static const char tokens[] = "{\"model\":\"e\",\"input\":[[1,2]]}";
    json_doc *d2 = json_parse(tokens, sizeof tokens - 1, NULL, NULL);
    call.root = json_root(d2);
    CHECK(provider_gemini.build_embed(&call, &h, err, sizeof err) == -1);
    json_doc_free(d2);
    buf_free(&out);
    buf_free(&h.url); buf_free(&h.body); buf_free(&h.hdrs);
    json_doc_free(doc);
    free(d.base_url); free(d.auth_header);
}

int main(void)
{
    RUN(embeddings);
    RUN(golden_request);
    RUN(url_and_key_header);
    RUN(response_to_openai);
    RUN(stream_to_openai);
    RUN(malformed_and_truncated);
    TEST_MAIN_END();
}
