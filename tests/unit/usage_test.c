/* usage: the scanner that reads a provider's usage object out of raw bytes
 * agrees with a full JSON parse, and refuses what is not JSON. */
#include <string.h>

#include "json.h"
#include "test.h"
#include "usage.h"

/* usage_from_bytes and usage_from_json on the same document agree. */
static int agree(const char *doc)
{
    usage_t a = { 0 }, b = { 0 };
    int ra = usage_from_bytes(doc, strlen(doc), &a);
    json_doc *d = json_parse(doc, strlen(doc), NULL, NULL);
    int rb = d ? usage_from_json(json_root(d), &b) : -1;
    json_doc_free(d);
    if (ra != rb) return 0;
    return ra < 0 || (a.prompt_tokens == b.prompt_tokens && a.completion_tokens == b.completion_tokens &&
                      a.cached_tokens == b.cached_tokens && a.present == b.present);
}

static void test_agrees_with_the_parser(void)
{
    CHECK(agree("{\"id\":\"x\",\"usage\":{\"prompt_tokens\":23,\"completion_tokens\":16,\"total_tokens\":39,"
                "\"prompt_tokens_details\":{\"cached_tokens\":7,\"audio_tokens\":0},"
                "\"completion_tokens_details\":{\"reasoning_tokens\":0}},\"service_tier\":\"default\"}"));
    CHECK(agree("{\"usage\": { \"completion_tokens\" : 5 ,\n\"prompt_tokens\":\t9 } }"));
    CHECK(agree("{\"usage\":{}}"));
    CHECK(agree("{\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2.5,\"x\":[1,{\"a\":[]},\"}\"]}}"));
    CHECK(agree("{\"usage\":{\"prompt_tokens\":\"12\",\"completion_tokens\":null,\"z\":true,\"y\":false}}"));
    CHECK(agree("{\"usage\":{\"prompt_tokens\":1e3,\"completion_tokens\":0,\"prompt_tokens_details\":null}}"));
    CHECK(agree("{\"usage\":{\"pr\\u006fmpt_tokens\":4,\"s\":\"a\\\"b\\\\\",\"completion_tokens\":8}}"));
    /* a stream chunk before the last: "usage":null is no usage, found without a whole parse */
    CHECK(agree("{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}"));
    CHECK(agree("{\"usage\" : null }"));
}

static void test_values(void)
{
    const char *doc = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":40,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":100}}}";
    usage_t u = { 0 };
    CHECK(usage_from_bytes(doc, strlen(doc), &u) == 0);
    CHECK(u.present && u.prompt_tokens == 120 && u.completion_tokens == 40 && u.cached_tokens == 100);
    /* the last usage wins (a stream's final chunk) */
    const char *two = "{\"usage\":{\"prompt_tokens\":1}} {\"usage\":{\"prompt_tokens\":2}}";
    CHECK(usage_from_bytes(two, strlen(two), &u) == 0 && u.prompt_tokens == 2);
}

static void test_refuses_what_is_not_json(void)
{
    static const char *const bad[] = {
        "{\"usage\":{\"prompt_tokens\":12",            /* truncated */
        "{\"usage\":{\"prompt_tokens\":12,}}",          /* trailing comma */
        "{\"usage\":{prompt_tokens:12}}",               /* bare key */
        "{\"usage\":{\"a\":01x}}",
        "{\"usage\":{\"a\":tru}}",
        "{\"usage\":{\"a\":\"\x01\"}}",                 /* control character in a string */
        "{\"usage\":{\"a\":-}}",
        "{\"usage\":{\"a\":1.}}",
        "{\"usage\":{\"a\":1e}}",
        "{\"usage\":[1,2]}",
        "{\"usage\"",
        "\"usage\":",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        usage_t u = { 0 };
        int rc = usage_from_bytes(bad[i], strlen(bad[i]), &u);
        if (rc != -1) fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(rc == -1 && !u.present);
    }
}

/* Nesting deeper than the scanner goes: the whole parse decides (fuzz finding: the answer went unpriced). */
static void test_falls_back_to_the_parser(void)
{
    const char *deep = "{\"usage\":{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]],\"prompt_tokens\":7,\"completion_tokens\":2}}";
    usage_t u = { 0 };
    CHECK(usage_from_bytes(deep, strlen(deep), &u) == 0 && u.present && u.prompt_tokens == 7 && u.completion_tokens == 2);
    const char *broken = "{\"usage\":{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]]}";   /* deep and not JSON */
    memset(&u, 0, sizeof u);
    CHECK(usage_from_bytes(broken, strlen(broken), &u) == -1 && !u.present);
}

int main(void)
{
    RUN(test_falls_back_to_the_parser);
    RUN(test_agrees_with_the_parser);
    RUN(test_values);
    RUN(test_refuses_what_is_not_json);
    TEST_MAIN_END();
}
