/* Responses API: the inbound parser (input items, tools, formats, a stored
 * previous response, hostile bodies -> 400 with the param), the answer and
 * the typed event stream (golden bytes, the same under any split of the
 * provider's stream, failures end with response.failed), and the shared
 * store (per key, bounded, oldest evicted). */
#include "test.h"

#include <time.h>

#include "provider_fixture.h"
#include "respstore.h"

static int parse(fx_req *f, const char *json, const char *prev, json_doc **pdoc, char *msg, size_t msglen, const char **param)
{
    chat_req_init(&f->q);
    f->doc = json_parse(json, strlen(json), NULL, NULL);
    if (!f->doc) return -2;
    const json_value *pv = NULL;
    if (prev) {
        *pdoc = json_parse(prev, strlen(prev), NULL, NULL);
        if (!*pdoc) return -2;
        pv = json_root(*pdoc);
    }
    return chat_from_responses(json_root(f->doc), json, pv, prev, &f->q, msg, msglen, param);
}

static const char REQUEST[] =
    "{\"model\":\"m\",\"instructions\":\"You are terse.\",\"temperature\":0.5,\"top_p\":0.9,\"max_output_tokens\":300,"
    "\"user\":\"u-1\",\"store\":false,\"parallel_tool_calls\":false,\"metadata\":{\"a\":\"b\"},"
    "\"input\":["
    "{\"role\":\"developer\",\"content\":\"Use metric units.\"},"
    "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"What is in this image?\"},"
    "{\"type\":\"input_image\",\"image_url\":\"data:image/png;base64,iVBORw0KGgo=\",\"detail\":\"auto\"}]},"
    "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"A cat.\",\"annotations\":[]}]},"
    "{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
    "{\"type\":\"function_call\",\"id\":\"fc_1\",\"call_id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"},"
    "{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"sunny 21C\"}],"
    "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"strict\":true,"
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}],"
    "\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},"
    "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"w\",\"schema\":{\"type\":\"object\"},\"strict\":true}}}";

/* What the parsed request becomes for Anthropic: every item, in order. */
static void parse_items_tools_formats(void)
{
    fx_req f;
    char msg[256], err[200];
    const char *param = NULL;
    CHECK(parse(&f, REQUEST, NULL, NULL, msg, sizeof msg, &param) == 0);
    CHECK(f.q.nmsgs == 5 && f.q.ntools == 1 && f.q.max_tokens == 300 && f.q.parallel_tool_calls == 0);
    CHECK(f.q.tool_choice == TOOL_CHOICE_NAMED && f.q.response_format == RESPONSE_JSON_SCHEMA);
    CHECK(f.q.has_temperature && f.q.temperature == 0.5 && f.q.has_top_p && f.q.include_usage == 1);
    CHECK(f.q.responses && f.q.responses->store == 0);
    buf_t b; buf_init(&b);
    CHECK(anthropic_build_body(&f.q, "claude-x", &b, err, sizeof err) == 0);
    CHECK_STR(b.data,
        "{\"model\":\"claude-x\",\"max_tokens\":300,\"system\":\"You are terse.\\n\\nUse metric units.\\n\\n"
        "Respond with a single JSON object and nothing else. It must match this JSON Schema: {\\\"type\\\":\\\"object\\\"}\",\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is in this image?\"},{\"type\":\"image\",\"source\":"
        "{\"type\":\"base64\",\"media_type\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"A cat.\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather in Paris?\"}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"call_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"call_1\",\"content\":\"sunny 21C\"}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"input_schema\":{\"type\":\"object\","
        "\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}],"
        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"get_weather\",\"disable_parallel_tool_use\":true},"
        "\"temperature\":0.5,\"top_p\":0.90000000000000002,\"metadata\":{\"user_id\":\"u-1\"}}");
    /* what the answer echoes, compact */
    CHECK_STR(f.q.responses->echo.data,
        ",\"instructions\":\"You are terse.\",\"max_output_tokens\":300,\"max_tool_calls\":null,\"metadata\":{\"a\":\"b\"},"
        "\"parallel_tool_calls\":false,\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},"
        "\"service_tier\":\"default\",\"store\":false,\"temperature\":0.5,\"text\":{\"format\":{\"type\":\"json_schema\","
        "\"name\":\"w\",\"schema\":{\"type\":\"object\"},\"strict\":true}},\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},"
        "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"Weather for a city\",\"strict\":true,"
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}],"
        "\"top_p\":0.9,\"truncation\":\"disabled\",\"user\":\"u-1\"");
    fx_free(&f);
    buf_free(&b);
}

/* A string input, pretty-printed JSON (echo and items come out on one line),
 * and a stored previous response whose input and output come first. */
static void parse_string_input_and_previous(void)
{
    fx_req f;
    json_doc *pd = NULL;
    char msg[256];
    const char *param = NULL;
    CHECK(parse(&f, "{\n \"model\": \"m\",\n \"input\": \"hi\",\n \"tools\": [\n  {\"type\": \"function\", \"name\": \"f\"}\n ]\n}",
                NULL, NULL, msg, sizeof msg, &param) == 0);
    CHECK(f.q.nmsgs == 1 && f.q.msgs[0].role == ROLE_USER && f.q.responses->store == 1);
    CHECK_STR(f.q.responses->input.data, "[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"hi\"}]}]");
    CHECK(strstr(f.q.responses->echo.data, ",\"tools\":[{\"type\":\"function\",\"name\":\"f\"}],") != NULL);
    CHECK(!strchr(f.q.responses->echo.data, '\n'));
    fx_free(&f);

    static const char prev[] =
        "{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"weather?\"}]}],"
        "\"response\":{\"id\":\"resp_1\",\"output\":[{\"id\":\"fc_1_0\",\"type\":\"function_call\",\"status\":\"completed\","
        "\"arguments\":\"{}\",\"call_id\":\"call_7\",\"name\":\"get_weather\"}]}}";
    CHECK(parse(&f, "{\"model\":\"m\",\"previous_response_id\":\"resp_1\",\"input\":[{\"type\":\"function_call_output\","
                    "\"call_id\":\"call_7\",\"output\":[{\"type\":\"input_text\",\"text\":\"sunny\"}]}]}",
                prev, &pd, msg, sizeof msg, &param) == 0);
    CHECK(f.q.nmsgs == 3);
    CHECK(f.q.nmsgs == 3 && f.q.msgs[0].role == ROLE_USER && f.q.msgs[1].role == ROLE_ASSISTANT && f.q.msgs[2].role == ROLE_TOOL);
    CHECK(f.q.nmsgs == 3 && f.q.msgs[1].parts[0].kind == PART_TOOL_CALL && f.q.msgs[2].parts[0].text.n == 5);
    gw_str name = chat_req_tool_name(&f.q, (gw_str){ "call_7", 6 });
    CHECK(name.n == 11 && !memcmp(name.p, "get_weather", 11));
    CHECK_STR(f.q.responses->input.data,
        "[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"weather?\"}]},"
        "{\"id\":\"fc_1_0\",\"type\":\"function_call\",\"status\":\"completed\",\"arguments\":\"{}\",\"call_id\":\"call_7\",\"name\":\"get_weather\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"call_7\",\"output\":[{\"type\":\"input_text\",\"text\":\"sunny\"}]}]");
    fx_free(&f);
    json_doc_free(pd);
}

static void hostile_bodies_name_the_param(void)
{
    static const struct { const char *body, *param; } cases[] = {
        { "{\"model\":\"m\"}", "input" },
        { "{\"model\":\"m\",\"input\":42}", "input" },
        { "{\"model\":\"m\",\"input\":[]}", "input" },
        { "{\"model\":\"m\",\"input\":[7]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"role\":\"user\"}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"type\":\"function_call\",\"name\":\"f\"}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\",\"output\":{}}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\"}]}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"file_id\":\"f\"}]}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"data:x;base64,@@\"}]}]}", "input" },
        { "{\"model\":\"m\",\"input\":[{\"role\":\"system\",\"content\":[{\"type\":\"input_image\",\"image_url\":\"http://x\"}]}]}", "input" },
        { "{\"model\":\"m\",\"input\":\"x\",\"instructions\":5}", "instructions" },
        { "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"file_search\"}]}", "tools" },
        { "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\"}]}", "tools" },
        { "{\"model\":\"m\",\"input\":\"x\",\"tools\":[{\"type\":\"function\",\"name\":\"f\",\"parameters\":[]}]}", "tools" },
        { "{\"model\":\"m\",\"input\":\"x\",\"tools\":{}}", "tools" },
        { "{\"model\":\"m\",\"input\":\"x\",\"tool_choice\":\"sometimes\"}", "tool_choice" },
        { "{\"model\":\"m\",\"input\":\"x\",\"tool_choice\":{\"type\":\"web_search\"}}", "tool_choice" },
        { "{\"model\":\"m\",\"input\":\"x\",\"temperature\":3}", "temperature" },
        { "{\"model\":\"m\",\"input\":\"x\",\"top_p\":\"1\"}", "top_p" },
        { "{\"model\":\"m\",\"input\":\"x\",\"max_output_tokens\":1.5}", "max_output_tokens" },
        { "{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"yaml\"}}}", "text.format" },
        { "{\"model\":\"m\",\"input\":\"x\",\"text\":{\"format\":{\"type\":\"json_schema\"}}}", "text.format.schema" },
        { "{\"model\":\"m\",\"input\":\"x\",\"text\":7}", "text" },
        { "{\"model\":\"m\",\"input\":\"x\",\"metadata\":{\"k\":1}}", "metadata" },
        { "{\"model\":\"m\",\"input\":\"x\",\"metadata\":[]}", "metadata" },
        { "{\"model\":\"m\",\"input\":\"x\",\"store\":\"yes\"}", "store" },
        { "{\"model\":\"m\",\"input\":\"x\",\"parallel_tool_calls\":1}", "parallel_tool_calls" },
        { "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":7}", "previous_response_id" },
        { "{\"model\":\"m\",\"input\":\"x\",\"previous_response_id\":\"\"}", "previous_response_id" },
        { "{\"model\":\"m\",\"input\":\"x\",\"background\":true}", "background" },
        { "{\"model\":\"m\",\"input\":\"x\",\"user\":[]}", "user" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fx_req f;
        char msg[256] = "";
        const char *param = NULL;
        int rc = parse(&f, cases[i].body, NULL, NULL, msg, sizeof msg, &param);
        if (rc != -1 || !param || strcmp(param, cases[i].param))
            fprintf(stderr, "  case %zu: rc %d param %s msg %s\n", i, rc, param ? param : "(null)", msg);
        CHECK(rc == -1 && param && !strcmp(param, cases[i].param) && msg[0]);
        fx_free(&f);
    }
    /* bounded: 16 metadata keys, 512 tools, 4096 items */
    buf_t b; buf_init(&b);
    buf_puts(&b, "{\"model\":\"m\",\"input\":[");
    for (int i = 0; i < 4097; i++) buf_puts(&b, i ? ",{\"role\":\"user\",\"content\":\"x\"}" : "{\"role\":\"user\",\"content\":\"x\"}");
    buf_puts(&b, "]}");
    fx_req f;
    char msg[256];
    const char *param = NULL;
    CHECK(parse(&f, b.data, NULL, NULL, msg, sizeof msg, &param) == -1 && param && !strcmp(param, "input"));
    CHECK(strstr(msg, "at most 4096") != NULL);
    fx_free(&f);
    buf_free(&b);
}

static const char ECHO_TAIL[] =
    ",\"instructions\":null,\"max_output_tokens\":null,\"max_tool_calls\":null,\"metadata\":{},"
    "\"parallel_tool_calls\":true,\"previous_response_id\":null,\"reasoning\":{\"effort\":null,\"summary\":null},"
    "\"service_tier\":\"default\",\"store\":true,\"temperature\":1.0,\"text\":{\"format\":{\"type\":\"text\"}},"
    "\"tool_choice\":\"auto\",\"tools\":[],\"top_p\":1.0,\"truncation\":\"disabled\",\"user\":null}";

static void answer_golden(void)
{
    chat_resp r;
    chat_resp_init(&r);
    buf_puts(&r.text, "Let me check.");
    CHECK(chat_resp_add_call(&r, "call_1", 6, "get_weather", 11, "{\"city\":\"Paris\"}", 16) == 0);
    r.finish = FINISH_TOOL_CALLS;
    r.usage = (usage_t){ .present = 1, .prompt_tokens = 40, .completion_tokens = 9, .cached_tokens = 8 };
    buf_t out; buf_init(&out);
    CHECK(rsp_render_response(&r, "resp_abc", "model-x", NULL, 1700000000, &out) == 0);
    buf_t want; buf_init(&want);
    buf_puts(&want,
        "{\"id\":\"resp_abc\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"completed\",\"background\":false,"
        "\"error\":null,\"incomplete_details\":null,\"model\":\"model-x\",\"output\":["
        "{\"id\":\"msg_abc_0\",\"type\":\"message\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":["
        "{\"type\":\"output_text\",\"text\":\"Let me check.\",\"annotations\":[],\"logprobs\":[]}]},"
        "{\"id\":\"fc_abc_1\",\"type\":\"function_call\",\"status\":\"completed\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\","
        "\"call_id\":\"call_1\",\"name\":\"get_weather\"}],"
        "\"usage\":{\"input_tokens\":40,\"input_tokens_details\":{\"cached_tokens\":8},\"output_tokens\":9,"
        "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":49}");
    buf_puts(&want, ECHO_TAIL);
    CHECK_STR(out.data, want.data);
    /* a length stop is incomplete, with its reason */
    chat_resp_free(&r);
    chat_resp_init(&r);
    buf_puts(&r.text, "Once upon");
    r.finish = FINISH_LENGTH;
    buf_reset(&out);
    CHECK(rsp_render_response(&r, "resp_abc", "model-x", NULL, 1700000000, &out) == 0);
    CHECK(strstr(out.data, "\"status\":\"incomplete\",\"background\":false,\"error\":null,\"incomplete_details\":{\"reason\":\"max_output_tokens\"}") != NULL);
    CHECK(strstr(out.data, "\"type\":\"message\",\"status\":\"incomplete\"") != NULL);
    chat_resp_free(&r);
    buf_free(&out);
    buf_free(&want);
}

static const char OAI_TEXT_STREAM[] =
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there\"},\"finish_reason\":null}]}\n\n"
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n"
    "data: [DONE]\n\n";

#define RESP_OBJ(status, output, usage) \
    "{\"id\":\"id-1\",\"object\":\"response\",\"created_at\":1700000000,\"status\":\"" status "\",\"background\":false," \
    "\"error\":null,\"incomplete_details\":null,\"model\":\"model-x\",\"output\":[" output "],\"usage\":" usage
#define MSG_ITEM(status, content) \
    "{\"id\":\"msg_id-1_0\",\"type\":\"message\",\"status\":\"" status "\",\"role\":\"assistant\",\"content\":[" content "]}"
#define TEXT_PART(t) "{\"type\":\"output_text\",\"text\":\"" t "\",\"annotations\":[],\"logprobs\":[]}"
#define REF ",\"item_id\":\"msg_id-1_0\",\"output_index\":0,\"content_index\":0"

static void stream_golden_any_split(void)
{
    int rc;
    usage_t u;
    char *whole = fx_stream(&provider_openai, OAI_TEXT_STREAM, sizeof OAI_TEXT_STREAM - 1, sizeof OAI_TEXT_STREAM,
                            CLIENT_OPENAI_RESPONSES, 1, &rc, &u);
    buf_t want; buf_init(&want);
    buf_puts(&want,
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":"
        RESP_OBJ("in_progress", "", "null"));
    buf_puts(&want, ECHO_TAIL);
    buf_puts(&want, "}\n\nevent: response.in_progress\ndata: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":"
        RESP_OBJ("in_progress", "", "null"));
    buf_puts(&want, ECHO_TAIL);
    buf_puts(&want, "}\n\n"
        "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":2,\"output_index\":0,"
        "\"item\":" MSG_ITEM("in_progress", "") "}\n\n"
        "event: response.content_part.added\ndata: {\"type\":\"response.content_part.added\",\"sequence_number\":3" REF
        ",\"part\":" TEXT_PART("") "}\n\n"
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4" REF
        ",\"delta\":\"Hi \",\"logprobs\":[]}\n\n"
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":5" REF
        ",\"delta\":\"there\",\"logprobs\":[]}\n\n"
        "event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"sequence_number\":6" REF
        ",\"text\":\"Hi there\",\"logprobs\":[]}\n\n"
        "event: response.content_part.done\ndata: {\"type\":\"response.content_part.done\",\"sequence_number\":7" REF
        ",\"part\":" TEXT_PART("Hi there") "}\n\n"
        "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":8,\"output_index\":0,"
        "\"item\":" MSG_ITEM("completed", TEXT_PART("Hi there")) "}\n\n"
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":"
        RESP_OBJ("completed", MSG_ITEM("completed", TEXT_PART("Hi there")),
                 "{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":2,"
                 "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":7}"));
    buf_puts(&want, ECHO_TAIL);
    buf_puts(&want, "}\n\n");
    CHECK(rc == 0 && u.prompt_tokens == 5 && u.completion_tokens == 2);
    CHECK_STR(whole, want.data);
    for (size_t split = 1; split < 50; split += 3) {
        char *part = fx_stream(&provider_openai, OAI_TEXT_STREAM, sizeof OAI_TEXT_STREAM - 1, split, CLIENT_OPENAI_RESPONSES, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(part, whole);
        free(part);
    }
    free(whole);
    buf_free(&want);
}

static const char ANTHROPIC_TOOL_STREAM[] =
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\","
    "\"content\":[],\"model\":\"c\",\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n"
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":15}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/* The n-th "event: " line's type, or NULL. */
static int count_events(const char *s, const char *type)
{
    int n = 0;
    char pat[96];
    snprintf(pat, sizeof pat, "event: %s\n", type);
    for (const char *p = s; (p = strstr(p, pat)); p++) n++;
    return n;
}

static void stream_tool_call_from_anthropic(void)
{
    int rc;
    char *whole = fx_stream(&provider_anthropic, ANTHROPIC_TOOL_STREAM, sizeof ANTHROPIC_TOOL_STREAM - 1,
                            sizeof ANTHROPIC_TOOL_STREAM, CLIENT_OPENAI_RESPONSES, 1, &rc, NULL);
    CHECK(rc == 0 && whole);
    if (!whole) return;
    if (getenv("DUMP")) fputs(whole, stderr);
    CHECK(count_events(whole, "response.output_item.added") == 2 && count_events(whole, "response.output_item.done") == 2);
    CHECK(count_events(whole, "response.function_call_arguments.delta") == 2);
    CHECK(strstr(whole, "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":8,"
                        "\"output_index\":1,\"item\":{\"id\":\"fc_id-1_1\",\"type\":\"function_call\",\"status\":\"in_progress\","
                        "\"arguments\":\"\",\"call_id\":\"toolu_1\",\"name\":\"get_weather\"}}\n\n") != NULL);
    CHECK(strstr(whole, "\"type\":\"response.function_call_arguments.done\",\"sequence_number\":11,\"item_id\":\"fc_id-1_1\","
                        "\"output_index\":1,\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}") != NULL);
    CHECK(strstr(whole, "event: response.completed\n") && strstr(whole, "\"input_tokens\":20,") && strstr(whole, "\"output_tokens\":15,"));
    /* sequence numbers run 0..n-1 without a gap */
    int events = count_events(whole, "response.created") + 0;
    int seq = 0;
    for (const char *p = whole; (p = strstr(p, "\"sequence_number\":")); p++) {
        CHECK(atoi(p + 18) == seq);
        seq++;
    }
    CHECK(events == 1 && seq == 14);
    for (size_t split = 1; split < 64; split += 5) {
        char *part = fx_stream(&provider_anthropic, ANTHROPIC_TOOL_STREAM, sizeof ANTHROPIC_TOOL_STREAM - 1, split,
                               CLIENT_OPENAI_RESPONSES, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(part, whole);
        free(part);
    }
    free(whole);
}

static void stream_failure_ends_failed(void)
{
    int rc;
    /* cut after the first text delta: no [DONE] */
    size_t cut = (size_t)(strstr(OAI_TEXT_STREAM, "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"there") - OAI_TEXT_STREAM);
    char *out = fx_stream(&provider_openai, OAI_TEXT_STREAM, cut, 7, CLIENT_OPENAI_RESPONSES, 1, &rc, NULL);
    CHECK(rc == -1 && out);
    if (!out) return;
    CHECK(count_events(out, "response.completed") == 0 && count_events(out, "response.failed") == 1);
    CHECK(strstr(out, "\"status\":\"failed\",\"background\":false,\"error\":{\"code\":\"server_error\",\"message\":") != NULL);
    size_t n = strlen(out);
    const char *last = strstr(out, "event: error\ndata: {\"type\":\"error\",\"sequence_number\":");
    CHECK(last && out[n - 1] == '\n' && !strstr(last + 1, "event: "));
    free(out);
    /* nothing from the provider at all: created, in_progress, failed, error */
    out = fx_stream(&provider_openai, "", 0, 1, CLIENT_OPENAI_RESPONSES, 1, &rc, NULL);
    CHECK(rc == -1 && out && count_events(out, "response.created") == 1 && count_events(out, "response.failed") == 1);
    free(out);
}

/* A length stop ends with response.incomplete and its reason; the message is incomplete too. */
static void stream_length_is_incomplete(void)
{
    static const char t[] =
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Once\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
        "data: [DONE]\n\n";
    int rc;
    char *out = fx_stream(&provider_openai, t, sizeof t - 1, 9, CLIENT_OPENAI_RESPONSES, 1, &rc, NULL);
    CHECK(rc == 0 && out);
    if (!out) return;
    CHECK(count_events(out, "response.incomplete") == 1 && count_events(out, "response.completed") == 0);
    CHECK(strstr(out, "\"status\":\"incomplete\",\"background\":false,\"error\":null,\"incomplete_details\":{\"reason\":\"max_output_tokens\"}") != NULL);
    CHECK(strstr(out, "\"type\":\"response.output_item.done\",\"sequence_number\":7,\"output_index\":0,\"item\":{\"id\":\"msg_id-1_0\",\"type\":\"message\",\"status\":\"incomplete\"") != NULL);
    free(out);
}

static void store_per_key_bounded(void)
{
    respstore_limits lim = { .total_bytes = 64 << 10, .max_entry_bytes = 8 << 10, .max_per_key = 3, .ttl_s = 3600 };
    CHECK(respstore_init(&lim) == 0);
    buf_t b; buf_init(&b);
    CHECK(respstore_put("k:a", "resp_1", "{\"x\":1}", 7) == 0);
    CHECK(respstore_get("k:a", "resp_1", &b) == 1 && b.len == 7 && !memcmp(b.data, "{\"x\":1}", 7));
    buf_reset(&b);
    CHECK(respstore_get("k:b", "resp_1", &b) == 0 && b.len == 0);   /* another key: not found */
    CHECK(respstore_del("k:b", "resp_1") == 0 && respstore_get("k:a", "resp_1", &b) == 1);
    /* a key keeps its newest max_per_key */
    char id[16];
    for (int i = 2; i <= 5; i++) {
        snprintf(id, sizeof id, "resp_%d", i);
        CHECK(respstore_put("k:a", id, "abc", 3) == 0);
    }
    buf_reset(&b);
    CHECK(respstore_get("k:a", "resp_1", &b) == 0 && respstore_get("k:a", "resp_2", &b) == 0);
    CHECK(respstore_get("k:a", "resp_3", &b) == 1 && respstore_get("k:a", "resp_5", &b) == 1);
    /* too large: not stored */
    static char big[9 << 10];
    memset(big, 'x', sizeof big);
    CHECK(respstore_put("k:c", "resp_big", big, sizeof big) == -1);
    /* the ring: old entries are overwritten when the bytes wrap (64 KiB, 8 KiB entries) */
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "resp_w%d", i);
        CHECK(respstore_put(i % 2 ? "k:d" : "k:e", id, big, 8 << 10) == 0);
    }
    buf_reset(&b);
    CHECK(respstore_get("k:e", "resp_w0", &b) == 0);
    CHECK(respstore_get("k:d", "resp_w19", &b) == 1 && b.len == (8 << 10));
    CHECK(respstore_count() <= 3 + 8);
    CHECK(respstore_del("k:d", "resp_w19") == 1 && respstore_del("k:d", "resp_w19") == 0);
    buf_free(&b);
}

/* Random puts, gets and deletes: whatever is found is exactly what was put
 * under that id, a key's newest entry is always found, a key never holds
 * more than max_per_key, and deleted entries stay gone. (The store of the
 * test above is the same region: it is reused, with its bounds.) */
static void store_random_ops_keep_invariants(void)
{
    enum { KEYS = 5, IDS = 400 };
    static int stored[IDS];   /* 1: put and not deleted since */
    static int owner[IDS];
    int newest[KEYS];
    for (int k = 0; k < KEYS; k++) newest[k] = -1;
    unsigned x = 12345;
    char id[24], subj[8], data[3000];
    buf_t b; buf_init(&b);
    for (int op = 0; op < 20000; op++) {
        x = x * 1103515245u + 12345u;
        int i = (int)((x >> 8) % IDS), k = (int)((x >> 20) % KEYS), what = (int)((x >> 4) % 4);
        snprintf(id, sizeof id, "resp_r%d", i);
        if (what <= 1 && !stored[i]) {   /* put: the bytes say whose and which */
            size_t n = 16 + (x >> 12) % 2900;
            memset(data, 'a' + i % 26, n);
            snprintf(subj, sizeof subj, "k:%d", k);
            memcpy(data, id, strlen(id));
            CHECK(respstore_put(subj, id, data, n) == 0);
            stored[i] = 1;
            owner[i] = k;
            newest[k] = i;
        } else if (what == 2 && stored[i]) {
            snprintf(subj, sizeof subj, "k:%d", owner[i]);
            buf_reset(&b);
            int rc = respstore_get(subj, id, &b);
            CHECK(rc == 0 || (rc == 1 && b.len >= 16 && !memcmp(b.data, id, strlen(id)) && b.data[b.len - 1] == 'a' + i % 26));
            snprintf(subj, sizeof subj, "k:%d", (owner[i] + 1) % KEYS);
            CHECK(respstore_get(subj, id, &b) == 0);   /* never another key's */
        } else if (what == 3 && stored[i]) {
            snprintf(subj, sizeof subj, "k:%d", owner[i]);
            respstore_del(subj, id);
            CHECK(respstore_get(subj, id, &b) == 0);
            stored[i] = 0;
            if (newest[owner[i]] == i) newest[owner[i]] = -1;
        }
        if (newest[k] >= 0) {
            snprintf(id, sizeof id, "resp_r%d", newest[k]);
            snprintf(subj, sizeof subj, "k:%d", k);
            buf_reset(&b);
            CHECK(respstore_get(subj, id, &b) == 1);
        }
    }
    CHECK(respstore_count() <= (size_t)KEYS * 3 + 4);   /* max_per_key 3 (+ the other test's keys) */
    buf_free(&b);
}

/* Prints what a put and a get cost (informational: no timing is asserted). */
static void store_cost_printed(void)
{
    enum { N = 200000 };
    static char data[2048];
    memset(data, 'x', sizeof data);
    char id[32], subj[16];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof id, "resp_bench%d", i);
        snprintf(subj, sizeof subj, "k:%d", i % 50);
        CHECK(respstore_put(subj, id, data, sizeof data) == 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double put_ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
    buf_t b; buf_init(&b);
    int found = 0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = N - 1000; i < N; i++) {
        snprintf(id, sizeof id, "resp_bench%d", i);
        snprintf(subj, sizeof subj, "k:%d", i % 50);
        buf_reset(&b);
        found += respstore_get(subj, id, &b) == 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double get_ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1000;
    CHECK(found > 0);
    fprintf(stderr, "  respstore: %.0f ns per 2 KiB put, %.0f ns per get (%d of the last 1000 still stored)\n", put_ns, get_ns, found);
    buf_free(&b);
}

int main(void)
{
    RUN(parse_items_tools_formats);
    RUN(parse_string_input_and_previous);
    RUN(hostile_bodies_name_the_param);
    RUN(answer_golden);
    RUN(stream_golden_any_split);
    RUN(stream_tool_call_from_anthropic);
    RUN(stream_failure_ends_failed);
    RUN(stream_length_is_incomplete);
    RUN(store_per_key_bounded);
    RUN(store_random_ops_keep_invariants);
    RUN(store_cost_printed);
    TEST_MAIN_END();
}
