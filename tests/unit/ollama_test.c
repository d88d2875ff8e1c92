/* ollama provider: golden /api/chat body, answers and an NDJSON stream
 * transcript (as in Ollama's API docs) into exact OpenAI output; broken or cut
 * lines refused. */
#include "test.h"

#include "provider_fixture.h"

static void golden_request(void)
{
    fx_req f;
    buf_t b; buf_init(&b);
    char err[200];
    CHECK(fx_parse(&f, FX_OPENAI_REQUEST, 0, 1) == 0);
    CHECK(ollama_build_body(&f.q, "llama3.1", &b, err, sizeof err) == 0);
    CHECK_STR(b.data,
        "{\"model\":\"llama3.1\",\"messages\":[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"user\",\"content\":"
        "\"What is in this image?\",\"images\":[\"iVBORw0KGgo=\"]},{\"role\":\"assistant\",\"content\":\"A cat.\"},{\"role\":\"user\","
        "\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":"
        "\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},{\"role\":\"tool\",\"content\":\"sunny 21C\",\"tool_name\":"
        "\"get_weather\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather for a city\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"],"
        "\"additionalProperties\":false}}}],\"options\":{\"temperature\":0.5,\"num_predict\":300,\"stop\":[\"END\"]},\"stream\":true}");
    fx_free(&f);
    CHECK(fx_parse(&f, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"seed\":7,"
                       "\"response_format\":{\"type\":\"json_object\"}}", 0, 0) == 0);
    CHECK(ollama_build_body(&f.q, "m", &b, err, sizeof err) == 0);
    CHECK_STR(b.data, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"format\":\"json\","
                      "\"options\":{\"seed\":7},\"stream\":false}");
    fx_free(&f);
    buf_free(&b);
}

static void response_to_openai(void)
{
    char err[200];
    usage_t u;
    static const char body[] =
        "{\"model\":\"llama3.2\",\"created_at\":\"2023-12-12T14:13:43.416799Z\",\"message\":{\"role\":\"assistant\","
        "\"content\":\"Hello! How are you today?\"},\"done\":true,\"done_reason\":\"stop\",\"total_duration\":5191566416,"
        "\"load_duration\":2154458,\"prompt_eval_count\":26,\"prompt_eval_duration\":383809000,\"eval_count\":298,"
        "\"eval_duration\":4799921000}";
    char *out = fx_response(&provider_ollama, body, CLIENT_OPENAI_CHAT, &u, err, sizeof err);
    const char *tail = out ? strstr(out, ",\"model\"") : NULL;
    CHECK_STR(tail, ",\"model\":\"model-x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
                    "\"Hello! How are you today?\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                    "\"usage\":{\"prompt_tokens\":26,\"completion_tokens\":298,\"total_tokens\":324,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":0}}}");
    free(out);
    static const char tools[] =
        "{\"model\":\"llama3.2\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":"
        "{\"name\":\"get_current_weather\",\"arguments\":{\"format\":\"celsius\",\"location\":\"Paris, FR\"}}}]},"
        "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":10,\"eval_count\":5}";
    out = fx_response(&provider_ollama, tools, CLIENT_ANTHROPIC, NULL, err, sizeof err);
    CHECK(out && strstr(out, "\"name\":\"get_current_weather\",\"input\":{\"format\":\"celsius\",\"location\":\"Paris, FR\"}"));
    CHECK(out && strstr(out, "\"stop_reason\":\"tool_use\""));
    free(out);
}

static const char STREAM[] =
    "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\"The\"},\"done\":false}\n"
    "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T08:52:19.385406455-07:00\",\"message\":{\"role\":\"assistant\",\"content\":\" sky\"},\"done\":false}\n"
    "{\"model\":\"llama3.2\",\"created_at\":\"2023-08-04T19:22:45.499127Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"done\":true,\"done_reason\":\"length\",\"total_duration\":4883583458,\"load_duration\":1334875,\"prompt_eval_count\":26,"
    "\"prompt_eval_duration\":342546000,\"eval_count\":282,\"eval_duration\":4535599000}\n";

#define CHUNK(delta, finish) "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\"," \
    "\"choices\":[{\"index\":0,\"delta\":{" delta "},\"logprobs\":null,\"finish_reason\":" finish "}]}\n\n"

static void stream_to_openai(void)
{
    static const char want[] =
        CHUNK("\"role\":\"assistant\",\"content\":\"\"", "null")
        CHUNK("\"content\":\"The\"", "null")
        CHUNK("\"content\":\" sky\"", "null")
        CHUNK("", "\"length\"")
        "data: {\"id\":\"id-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"model-x\",\"choices\":[],"
        "\"usage\":{\"prompt_tokens\":26,\"completion_tokens\":282,\"total_tokens\":308,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n"
        "data: [DONE]\n\n";
    int rc;
    for (size_t split = 1; split <= sizeof STREAM; split += 11) {
        char *out = fx_stream(&provider_ollama, STREAM, sizeof STREAM - 1, split, CLIENT_OPENAI_CHAT, 1, &rc, NULL);
        CHECK(rc == 0);
        CHECK_STR(out, want);
        free(out);
    }
    /* the last line without its newline still counts */
    char *out = fx_stream(&provider_ollama, STREAM, sizeof STREAM - 2, 64, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == 0);
    free(out);
}

static void malformed_and_truncated(void)
{
    char err[200];
    int rc;
    CHECK(fx_response(&provider_ollama, "{\"message\":", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    CHECK(fx_response(&provider_ollama, "{\"done\":true}", CLIENT_OPENAI_CHAT, NULL, err, sizeof err) == NULL);
    size_t cut = (size_t)(strstr(STREAM, "\"done\":true") - STREAM);
    cut = (size_t)((const char *)memrchr(STREAM, 0x0a, cut) - STREAM) + 1;   /* whole lines, but not the last */
    char *out = fx_stream(&provider_ollama, STREAM, cut, 50, CLIENT_ANTHROPIC, 1, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "event: error"));
    free(out);
    static const char bad[] = "{\"model\": \n";
    out = fx_stream(&provider_ollama, bad, sizeof bad - 1, 2, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == -1);
    free(out);
    static const char e[] = "{\"error\":\"model 'llama9' not found\"}\n";
    out = fx_stream(&provider_ollama, e, sizeof e - 1, 100, CLIENT_OPENAI_CHAT, 0, &rc, NULL);
    CHECK(rc == -1 && out && strstr(out, "not found"));
    free(out);
    char msg[100];
    provider_ollama.error_message(e, sizeof e - 2, msg, sizeof msg);
    CHECK_STR(msg, "model 'llama9' not found");
}

static void embeddings(void)
{
    char err[200];
    static const char ans[] = "{\"model\":\"all-minilm\",\"embeddings\":[[0.010071029,-0.0017594862],[-0.5,0.5]],"
                              "\"total_duration\":14143917,\"load_duration\":1019500,\"prompt_eval_count\":8}";
    buf_t out; buf_init(&out);
    usage_t u = { 0 };
    CHECK(provider_ollama.parse_embed(ans, sizeof ans - 1, 0, "m", &out, &u, err, sizeof err) == 0);
    CHECK_STR(out.data, "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,\"embedding\":[0.010071029,-0.0017594862]},"
                        "{\"object\":\"embedding\",\"index\":1,\"embedding\":[-0.5,0.5]}],\"model\":\"m\","
                        "\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}");
    CHECK(u.prompt_tokens == 8);
    buf_reset(&out);
    CHECK(provider_ollama.parse_embed("{\"error\":\"x\"}", 13, 0, "m", &out, &u, err, sizeof err) == -1);
    buf_free(&out);
}

int main(void)
{
    RUN(embeddings);
    RUN(golden_request);
    RUN(response_to_openai);
    RUN(stream_to_openai);
    RUN(malformed_and_truncated);
    TEST_MAIN_END();
}
