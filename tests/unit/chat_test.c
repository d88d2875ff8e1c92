/* The internal chat form: the inbound adapters (OpenAI chat, legacy
 * completions, Anthropic Messages), the Anthropic stream encoder fed by an
 * OpenAI stream (an Anthropic client in front of an OpenAI-dialect provider),
 * and the OpenAI-dialect providers' URLs (azure, presets). */
#include "test.h"

#include "provider_fixture.h"

static void openai_inbound(void)
{
    fx_req f;
    CHECK(fx_parse(&f, FX_OPENAI_REQUEST, 0, 0) == 0);
    CHECK_STR(f.q.system.data, "You are terse.");
    CHECK(f.q.nmsgs == 5);
    CHECK(f.q.msgs[0].nparts == 2 && f.q.msgs[0].parts[1].kind == PART_IMAGE);
    CHECK(f.q.msgs[0].parts[1].media_type.n == 9 && !memcmp(f.q.msgs[0].parts[1].media_type.p, "image/png", 9));
    CHECK(f.q.msgs[3].parts[0].kind == PART_TOOL_CALL && f.q.msgs[4].role == ROLE_TOOL);
    CHECK(f.q.has_temperature && f.q.temperature == 0.5 && f.q.max_tokens == 300 && f.q.nstop == 1);
    CHECK(f.q.ntools == 1 && f.q.tool_choice == TOOL_CHOICE_AUTO);
    gw_str name = chat_req_tool_name(&f.q, (gw_str){ "call_1", 6 });
    CHECK(name.n == 11 && !memcmp(name.p, "get_weather", 11));
    fx_free(&f);
    /* what cannot travel is a 400 naming the field */
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"n\":2,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 0, 0) == -1);
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}", 0, 0) == -1);
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 0, 0) == -1);
    fx_free(&f);
}

static void anthropic_inbound(void)
{
    static const char req[] =
        "{\"model\":\"m\",\"max_tokens\":100,\"system\":[{\"type\":\"text\",\"text\":\"Be nice.\"}],\"top_k\":5,"
        "\"stop_sequences\":[\"Human:\"],\"metadata\":{\"user_id\":\"u-1\"},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Checking.\"},{\"type\":\"tool_use\",\"id\":\"toolu_1\","
        "\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":[{\"type\":\"text\",\"text\":\"sunny\"}]},"
        "{\"type\":\"text\",\"text\":\"And tomorrow?\"}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"input_schema\":{\"type\":\"object\"}}],\"tool_choice\":{\"type\":\"any\"}}";
    fx_req f;
    CHECK(fx_parse(&f, req, 1, 0) == 0);
    CHECK_STR(f.q.system.data, "Be nice.");
    CHECK(f.q.nmsgs == 4);   /* the tool result became a tool message of its own, before the text */
    CHECK(f.q.msgs[2].role == ROLE_TOOL && f.q.msgs[2].parts[0].text.n == 5);
    CHECK(f.q.msgs[3].role == ROLE_USER && f.q.msgs[3].parts[0].kind == PART_TEXT);
    CHECK(f.q.msgs[1].parts[1].args.n == 16 && !memcmp(f.q.msgs[1].parts[1].args.p, "{\"city\":\"Paris\"}", 16));
    CHECK(f.q.tool_choice == TOOL_CHOICE_REQUIRED && f.q.has_top_k && f.q.top_k == 5 && f.q.include_usage);
    buf_t b; buf_init(&b);
    char err[200];
    provider_call call = { .chat = &f.q };
    CHECK(openai_build_chat_body(&call, "gpt-x", &b, err, sizeof err) == 0);
    CHECK_STR(b.data, "{\"model\":\"gpt-x\",\"messages\":[{\"role\":\"system\",\"content\":\"Be nice.\"},{\"role\":\"user\",\"content\":"
                      "\"Weather?\"},{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":[{\"id\":\"toolu_1\",\"type\":"
                      "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"role\":"
                      "\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"sunny\"},{\"role\":\"user\",\"content\":\"And tomorrow?\"}],"
                      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}],"
                      "\"tool_choice\":\"required\",\"max_tokens\":100,\"stop\":[\"Human:\"],\"user\":\"u-1\"}");
    buf_free(&b);
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 1, 0) == -1);   /* max_tokens */
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", 1, 0) == -1);
    fx_free(&f);
}

/* An OpenAI stream (text, then a tool call) as Anthropic's event sequence. */
static void openai_stream_to_anthropic_events(void)
{
    static const char t[] =
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\":1}\"}}]},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n"
        "data: [DONE]\n\n";
    static const char want[] =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"id-1\",\"type\":\"message\",\"role\":\"assistant\","
        "\"model\":\"model-x\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":0,"
        "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":0}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"call_9\",\"name\":\"f\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":1}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},"
        "\"usage\":{\"input_tokens\":5,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":4,\"output_tokens\":3}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    int rc;
    for (size_t split = 1; split < sizeof t; split += 29) {
        char *out = fx_stream(&provider_openai, t, sizeof t - 1, split, CLIENT_ANTHROPIC, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(out, want);
        free(out);
    }
    /* no [DONE] and no finish: cut */
    char *out = fx_stream(&provider_openai, t, 200, 50, CLIENT_ANTHROPIC, 1, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\""));
    free(out);
}

static void legacy_completion_stream(void)
{
    fx_req f;
    chat_req_init(&f.q);
    static const char req[] = "{\"model\":\"m\",\"prompt\":\"Say hi\"}";
    f.doc = json_parse(req, sizeof req - 1, NULL, NULL);
    char msg[200];
    const char *param;
    CHECK(chat_from_openai(json_root(f.doc), req, 1, &f.q, msg, sizeof msg, &param) == 0);
    CHECK(f.q.nmsgs == 1 && f.q.max_tokens == 16);
    fx_free(&f);
    static const char t[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    int rc;
    char *out = fx_stream(&provider_openai, t, sizeof t - 1, 7, CLIENT_OPENAI_COMPLETIONS, 0, &rc, NULL);
    CHECK_STR(out, "data: {\"id\":\"id-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"model-x\",\"choices\":"
                   "[{\"index\":0,\"text\":\"hi\",\"logprobs\":null,\"finish_reason\":null}]}\n\n"
                   "data: {\"id\":\"id-1\",\"object\":\"text_completion\",\"created\":1700000000,\"model\":\"model-x\",\"choices\":"
                   "[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    free(out);
}

static void azure_and_presets(void)
{
    char err[200];
    gw_deployment d = { .provider_name = "azure", .model = "my-gpt4o", .api_key = "az-secret", .base_url = strdup("https://res.openai.azure.com/") };
    CHECK(provider_azure.prepare(&d, err, sizeof err) == 0);
    static const char req[] = "{\"model\":\"alias\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    json_doc *doc = json_parse(req, sizeof req - 1, NULL, NULL);
    provider_call call = { .route = ROUTE_CHAT, .dep = &d, .body = req, .body_len = sizeof req - 1, .root = json_root(doc),
                           .model = json_get(json_root(doc), "model") };
    provider_http h;
    memset(&h, 0, sizeof h);
    buf_init(&h.url); buf_init(&h.body); buf_init(&h.hdrs);
    CHECK(provider_azure.build(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21");
    CHECK_STR(h.headers[1], "api-key: az-secret");
    CHECK(h.same_dialect == 1);
    free(d.base_url); free(d.auth_header); free(d.api_version);
    gw_deployment v1 = { .provider_name = "azure", .model = "gpt-4o", .base_url = strdup("https://res.openai.azure.com/openai/v1") };
    CHECK(provider_azure.prepare(&v1, err, sizeof err) == 0);
    call.dep = &v1;
    CHECK(provider_azure.build(&call, &h, err, sizeof err) == 0);
    CHECK_STR(h.url.data, "https://res.openai.azure.com/openai/v1/chat/completions");
    free(v1.base_url); free(v1.api_version);
    gw_deployment bad = { .provider_name = "azure", .model = "x", .base_url = strdup("https://r"), .api_version = strdup("2024&x=1") };
    CHECK(provider_azure.prepare(&bad, err, sizeof err) == -1);
    free(bad.base_url); free(bad.api_version);
    buf_free(&h.url); buf_free(&h.body); buf_free(&h.hdrs);
    json_doc_free(doc);

    CHECK_STR(openai_preset_base_url("groq"), "https://api.groq.com/openai/v1");
    CHECK_STR(openai_preset_base_url("openrouter"), "https://openrouter.ai/api/v1");
    CHECK(openai_preset_base_url("nope") == NULL);
    gw_deployment p = { .provider_name = "openai_compatible", .model = "llama-3.1-8b-instant", .preset = "mistral" };
    CHECK(provider_openai_compatible.prepare(&p, err, sizeof err) == 0);
    CHECK_STR(p.base_url, "https://api.mistral.ai/v1");
    free(p.base_url);
    gw_deployment q = { .provider_name = "openai_compatible", .model = "m", .preset = "nope" };
    CHECK(provider_openai_compatible.prepare(&q, err, sizeof err) == -1);
}

int main(void)
{
    RUN(openai_inbound);
    RUN(anthropic_inbound);
    RUN(openai_stream_to_anthropic_events);
    RUN(legacy_completion_stream);
    RUN(azure_and_presets);
    TEST_MAIN_END();
}
