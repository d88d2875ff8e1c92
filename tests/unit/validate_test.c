/* request validation: a client's mistake is a 400 naming the parameter */
#include <string.h>

#include "json.h"
#include "test.h"
#include "validate.h"

static char model_seen[64];

/* v->model points into the freed doc afterwards: its text is kept in model_seen */
static int run(gw_route route, const char *body, const char **param, char *msg, size_t msglen, validated *v)
{
    json_doc *d = json_parse(body, strlen(body), NULL, NULL);
    if (!d) return -2;
    int rc = validate_request(route, json_root(d), v, msg, msglen, param);
    snprintf(model_seen, sizeof model_seen, "%s", rc == 0 && v->model ? v->model->str : "");
    v->model = NULL;
    json_doc_free(d);
    return rc;
}

static void expect_bad(gw_route route, const char *body, const char *want_param, const char *want_msg)
{
    const char *param = NULL;
    char msg[200];
    validated v;
    int rc = run(route, body, &param, msg, sizeof msg, &v);
    CHECK(rc == -1);
    if (want_param) CHECK(param && !strcmp(param, want_param));
    else CHECK(param == NULL);
    if (rc == -1 && !strstr(msg, want_msg)) { fprintf(stderr, "  msg: %s\n", msg); t_cur_failed = 1; }
}

static void test_chat(void)
{
    const char *param;
    char msg[200];
    validated v;
    CHECK(run(ROUTE_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &param, msg, sizeof msg, &v) == 0);
    CHECK(!v.stream);
    CHECK_STR(model_seen, "m");
    CHECK(run(ROUTE_CHAT, "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\"}]}", &param, msg, sizeof msg, &v) == 0);
    CHECK(v.stream);
    expect_bad(ROUTE_CHAT, "{\"messages\":[]}", "model", "Missing required parameter: 'model'");
    expect_bad(ROUTE_CHAT, "{\"model\":\"\",\"messages\":[]}", "model", "non-empty string");
    expect_bad(ROUTE_CHAT, "{\"model\":3,\"messages\":[]}", "model", "non-empty string");
    expect_bad(ROUTE_CHAT, "{\"model\":\"m\"}", "messages", "Missing required parameter: 'messages'");
    expect_bad(ROUTE_CHAT, "{\"model\":\"m\",\"messages\":[]}", "messages", "non-empty array");
    expect_bad(ROUTE_CHAT, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages", "messages[0]");
    expect_bad(ROUTE_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}],\"stream\":\"yes\"}", "stream", "boolean");
    expect_bad(ROUTE_CHAT, "[1,2]", NULL, "JSON object");
}

static void test_completions_and_embeddings(void)
{
    const char *param;
    char msg[200];
    validated v;
    CHECK(run(ROUTE_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"x\"}", &param, msg, sizeof msg, &v) == 0);
    CHECK(run(ROUTE_EMBEDDINGS, "{\"model\":\"m\",\"input\":[\"a\",\"b\"]}", &param, msg, sizeof msg, &v) == 0);
    expect_bad(ROUTE_COMPLETIONS, "{\"model\":\"m\"}", "prompt", "'prompt'");
    expect_bad(ROUTE_COMPLETIONS, "{\"model\":\"m\",\"prompt\":5}", "prompt", "string or an array");
    expect_bad(ROUTE_EMBEDDINGS, "{\"model\":\"m\"}", "input", "'input'");
    expect_bad(ROUTE_EMBEDDINGS, "{\"model\":\"m\",\"input\":[]}", "input", "non-empty array");
    expect_bad(ROUTE_EMBEDDINGS, "{\"model\":\"m\",\"input\":\"a\",\"stream\":true}", "stream", "cannot be streamed");
}

/* The gateway reads the first of duplicate members, upstream parsers the
 * last: a second "model" would escape the key's scope (found by
 * tests/fuzz/validate_request), a second include_usage would hide usage. */
static void test_duplicate_members(void)
{
    expect_bad(ROUTE_CHAT, "{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":\"b\"}",
               "model", "more than once");
    expect_bad(ROUTE_EMBEDDINGS, "{\"model\":\"a\",\"input\":\"x\",\"model\":\"a\"}", "model", "more than once");
    expect_bad(ROUTE_CHAT, "{\"model\":\"a\",\"stream\":false,\"messages\":[{\"role\":\"user\"}],\"stream\":true}",
               "stream", "more than once");
    expect_bad(ROUTE_CHAT, "{\"model\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":true,\"include_usage\":false},"
               "\"messages\":[{\"role\":\"user\"}]}", "stream_options", "more than once");
    expect_bad(ROUTE_COMPLETIONS, "{\"model\":\"a\",\"prompt\":\"x\",\"stream_options\":{},\"stream_options\":{}}",
               "stream_options", "more than once");
    const char *param;
    char msg[200];
    validated v;
    /* duplicates elsewhere are the upstream's business */
    CHECK(run(ROUTE_CHAT, "{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"role\":\"user\"}],\"n\":1,\"n\":2}",
              &param, msg, sizeof msg, &v) == 0);
}

int main(void)
{
    RUN(test_chat);
    RUN(test_duplicate_members);
    RUN(test_completions_and_embeddings);
    TEST_MAIN_END();
}
