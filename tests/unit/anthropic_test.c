/* anthropic provider: golden request bodies, answers and stream transcripts
 * (shaped as in Anthropic's Messages API reference) into exactly the
 * OpenAI/Anthropic output, and clean refusals of malformed or cut output. */
#include "test.h"

#include "provider_fixture.h"

static const char GOLDEN_BODY[] =
    "{\"model\":\"claude-x\",\"max_tokens\":300,\"system\":\"You are terse.\",\"messages\":["
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in this image?\"},{\"type\":\"image\",\"source\":"
    "{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"A cat.\"}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather in Paris?\"}]},"
    "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}]},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"sunny 21C\"}]}],"
    "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"input_schema\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"],\"additionalProperties\":false}}],"
    "\"temperature\":0.5,\"stop_sequences\":[\"END\"]}";

static void golden_request(void)
{
    fx_req f;
    buf_t b; buf_init(&b);
    char err[200];
    CHECK(fx_parse(&f, FX_OPENAI_REQUEST, 0, 0) == 0);
    CHECK(anthropic_build_body(&f.q, "claude-x", &b, err, sizeof err) == 0);
    CHECK_STR(b.data, GOLDEN_BODY);
    /* streaming, required tool choice, no max_tokens from the client: the default */
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"tool_choice\":\"required\","
                       "\"parallel_tool_calls\":false,\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", 0, 1) == 0);
    CHECK(anthropic_build_body(&f.q, "claude-x", &b, err, sizeof err) == 0);
    CHECK_STR(b.data, "{\"model\":\"claude-x\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
                      "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\",\"properties\":{}}}],"
                      "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},\"stream\":true}");
    fx_free(&f);
    buf_free(&b);
}

static void upstream_headers_pin_the_version(void)
{
    gw_deployment d = { .provider_name = "anthropic", .model = "claude-x", .api_key = "sk-ant-secret" };
    char err[200];
    CHECK(provider_anthropic.prepare(&d, err, sizeof err) == 0);
    CHECK_STR(d.base_url, "https://api.anthropic.com");
    fx_req f;
    CHECK(fx_parse(&f, FX_OPENAI_REQUEST, 0, 0) == 0);
    provider_call call = { .route = ROUTE_CHAT, .dep = &d, .chat = &f.q };
    provider_http h;
    memset(&h, 0, sizeof h);
    buf_init(&h.url); buf_init(&h.body); buf_init(&h.hdrs);
    CHECK(provider_anthropic.build_chat(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://api.anthropic.com/v1/messages");
    int version = 0, key = 0;
    for (int i = 0; h.headers[i]; i++) {
        version += !strcmp(h.headers[i], "anthropic-version: 2023-06-01");
        key += !strcmp(h.headers[i], "x-api-key: sk-ant-secret");
    }
    CHECK(version == 1 && key == 1);
    fx_free(&f);
    buf_free(&h.url); buf_free(&h.body); buf_free(&h.hdrs);
    free(d.base_url); free(d.auth_header);
}

static const char RESPONSE[] =
    "{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-sonnet-20241022\","
    "\"content\":[{\"type\":\"text\",\"text\":\"I'll check.\"},{\"type\":\"tool_use\",\"id\":\"toolu_01A09q90qw90lq917835lq9\","
    "\"name\":\"get_weather\",\"input\":{\"location\":\"San Francisco, CA\"}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":100,\"output_tokens\":89}}";

static void response_to_openai(void)
{
    char err[200];
    usage_t u;
    char *out = fx_response(&provider_anthropic, RESPONSE, CLIENT_OPENAI_CHAT, &u, err, sizeof err);
    CHECK(out != NULL);
    /* "created" is the clock: compare around it */
    const char *tail = out ? strstr(out, ",\"model\"") : NULL;
    CHECK(out && !strncmp(out, "{\"id\":\"id-1\",\"object\":\"chat.completion\",\"created\":", 50));
    CHECK_STR(tail, ",\"model\":\"model-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"I'll check.\","
                    "\"tool_calls\":[{\"id\":\"toolu_01A09q90qw90lq917835lq9\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                    "\"arguments\":\"{\\\"location\\\":\\\"San Francisco, CA\\\"}\"}}],\"refusal\":null},\"logprobs\":null,"
                    "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":572,\"completion_tokens\":89,\"total_tokens\":661,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":100}}}");
    CHECK(u.prompt_tokens == 572 && u.cached_tokens == 100 && u.completion_tokens == 89);
    free(out);
    /* back to an Anthropic client: the same blocks and the split usage */
    out = fx_response(&provider_anthropic, RESPONSE, CLIENT_ANTHROPIC, NULL, err, sizeof err);
    CHECK_STR(out, "{\"id\":\"id-1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"model-x\",\"content\":["
                   "{\"type\":\"text\",\"text\":\"I'll check.\"},{\"type\":\"tool_use\",\"id\":\"toolu_01A09q90qw90lq917835lq9\","
                   "\"name\":\"get_weather\",\"input\":{\"location\":\"San Francisco, CA\"}}],\"stop_reason\":\"tool_use\","
                   "\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"cache_creation_input_tokens\":0,"
                   "\"cache_read_input_tokens\":100,\"output_tokens\":89}}");
    free(out);
}

static const char STREAM[] =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\","
    "\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-sonnet-20241022\",\"stop_reason\":null,\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: ping\n"
    "data: {\"type\": \"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"!\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\","
    "\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"Paris\\\"}\"}}\n\n"
    "event: content_block_stop\n"
    "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\n"
    "data: {\"type\":\"message_stop\"}\n\n";

#define CHUNK(delta, finish) "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\"," \
    "\"choices\":[{\"index\":0,\"delta\":{" delta "},\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

static const char STREAM_AS_OPENAI[] =
    CHUNK("\"role\":\"assistant\",\"content\":\"\"", "null")
    CHUNK("\"content\":\"Hello\"", "null")
    CHUNK("\"content\":\"!\"", "null")
    CHUNK("\"tool_calls\":[{\"index\":0,\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]", "null")
    CHUNK("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"location\\\":\"}}]", "null")
    CHUNK("\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\"Paris\\\"}\"}}]", "null")
    CHUNK("", "\"tool_calls\"")
    "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\",\"choices\":[],"
    "\"usage\":{\"prompt_tokens\":25,\"completion_tokens\":15,\"total_tokens\":40,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n"
    "data: [DONE]\n\n";

static void stream_to_openai(void)
{
    int rc;
    usage_t u;
    char *whole = fx_stream(&provider_anthropic, STREAM, sizeof STREAM - 1, sizeof STREAM, CLIENT_OPENAI_CHAT, 1, &rc, &u);
    CHECK(rc == 0);
    CHECK_STR(whole, STREAM_AS_OPENAI);
    CHECK(u.prompt_tokens == 25 && u.completion_tokens == 15);
    /* any split of the bytes gives the same stream */
    for (size_t split = 1; split < 40; split += 7) {
        char *part = fx_stream(&provider_anthropic, STREAM, sizeof STREAM - 1, split, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(part, STREAM_AS_OPENAI);
        free(part);
    }
    free(whole);
}

static void malformed_and_truncated(void)
{
    char err[200];
    int rc;
    CHECK(fx_response(&provider_anthropic, "{\"type\":\"message\",\"content\":", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "not valid JSON") != NULL);
    CHECK(fx_response(&provider_anthropic, "{\"content\":[{\"type\":\"tool_use\",\"id\":1}]}", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    CHECK(fx_response(&provider_anthropic, "[]", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    /* cut before message_stop: the client gets an error event, not a clean end */
    size_t cut = (size_t)(strstr(STREAM, "event: message_delta") - STREAM);
    char *out = fx_stream(&provider_anthropic, STREAM, cut, 64, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
    CHECK(rc == -1);
    CHECK(out && strstr(out, "\"error\"") && !strstr(out, "[DONE]"));
    free(out);
    /* a broken event */
    static const char bad[] = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":\n\n";
    out = fx_stream(&provider_anthropic, bad, sizeof bad - 1, 5, CLIENT_ANTHROPIC, 1, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "event: error"));
    free(out);
    /* an input_json_delta for a block that is no tool call */
    static const char orphan[] = "data: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n";
    out = fx_stream(&provider_anthropic, orphan, sizeof orphan - 1, 100, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == -1);
    free(out);
}

static void error_event_and_body(void)
{
    static const char t[] =
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    int rc;
    char *out = fx_stream(&provider_anthropic, t, sizeof t - 1, 10, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "Overloaded"));
    free(out);
    char msg[100];
    static const char body[] = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"max_tokens: Field required\"}}";
    provider_anthropic.error_message(body, sizeof body - 1, msg, sizeof msg);
    CHECK_STR(msg, "max_tokens: Field required");
    provider_anthropic.error_message("<html>", 6, msg, sizeof msg);
    CHECK_STR(msg, "");
}

static void passthrough_usage(void)
{
    usage_t u = { 0 };
    static const char start[] = "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}";
    static const char delta[] = "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":42}}";
    anthropic_usage(start, sizeof start - 1, &u);
    anthropic_usage(delta, sizeof delta - 1, &u);
    CHECK(u.present && u.prompt_tokens == 15 && u.cached_tokens == 5 && u.completion_tokens == 42);
}

int main(void)
{
    RUN(golden_request);
    RUN(upstream_headers_pin_the_version);
    RUN(response_to_openai);
    RUN(stream_to_openai);
    RUN(malformed_and_truncated);
    RUN(error_event_and_body);
    RUN(passthrough_usage);
    TEST_MAIN_END();
}
