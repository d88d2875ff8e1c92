/* abjudge's verdict reading and decorate's body rewrite. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "abjudge.h"
#include "buf.h"
#include "config.h"
#include "decorate.h"
#include "json.h"
#include "test.h"

static int v(const char *s) { return abjudge_parse_verdict(s, strlen(s)); }

static void test_verdicts(void)
{
    CHECK(v("A") == 1);
    CHECK(v("B") == 2);
    CHECK(v("tie") == 0);
    CHECK(v("  b.\n") == 2);
    CHECK(v("**A**") == 1);
    CHECK(v("Tie.") == 0);
    CHECK(v("After comparing both, the better one is **Answer B**.") == 2);
    CHECK(v("Answer A is wrong about the date. Answer B is better.") == 2);
    CHECK(v("Answer B rambles. I prefer Answer A.") == 1);
    CHECK(v("Winner: A") == 1);
    CHECK(v("Verdict: B") == 2);
    CHECK(v("{\"winner\": \"B\", \"reason\": \"Answer A is shorter\"}") == 2);
    CHECK(v("```json\n{\"verdict\":\"tie\"}\n```") == 0);
    CHECK(v("Both are equally good: tie.") == 0);
    CHECK(v("It is a tie.") == 0);                      /* "a" as an article */
    CHECK(v("Response A") == 1);
    CHECK(v("I think this is a hard question with a long answer") == -1);
    CHECK(v("") == -1);
    CHECK(v("Answer A and Answer B are both fine") == -1 || v("Answer A and Answer B are both fine") == 0);
    CHECK(abjudge_parse_verdict(NULL, 0) == -1);
    /* hostile: long text, many tokens, nested JSON strings */
    buf_t b; buf_init(&b);
    for (int i = 0; i < 20000; i++) buf_puts(&b, "blah ");
    buf_puts(&b, "winner: B");
    CHECK(abjudge_parse_verdict(b.data, b.len) == 2);   /* the tail is read */
    buf_reset(&b);
    for (int i = 0; i < 5000; i++) buf_puts(&b, "{\"winner\":");
    CHECK(abjudge_parse_verdict(b.data, b.len) == -1);
    buf_free(&b);
}

static void test_sampling(void)
{
    gw_model m;
    memset(&m, 0, sizeof m);
    config_route_policy_defaults(&m.policy);
    CHECK(!abjudge_wanted(&m, ROUTE_CHAT, 0.0));                  /* no judge */
    m.policy.judge_alias = "j";
    m.policy.split_alias = "b";
    m.policy.judge_sample_ratio = 0.25;
    CHECK(abjudge_wanted(&m, ROUTE_CHAT, 0.2));
    CHECK(!abjudge_wanted(&m, ROUTE_CHAT, 0.3));
    CHECK(abjudge_wanted(&m, ROUTE_MESSAGES, 0.0));
    CHECK(!abjudge_wanted(&m, ROUTE_EMBEDDINGS, 0.0));
    CHECK(!abjudge_wanted(&m, ROUTE_COMPLETIONS, 0.0));
}

/* A streamed answer's text, from either client dialect, split anywhere. */
static void test_stream_text(void)
{
    static const char oa[] =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"}}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n"
        "data: [DONE]\n\n";
    static const char an[] =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" there\"}}\n\n";
    buf_t out; buf_init(&out);
    CHECK(abjudge_stream_text(ROUTE_CHAT, oa, sizeof oa - 1, &out) == 0);
    CHECK_STR(out.data, "Hello \xc3\xa9");
    CHECK(abjudge_stream_text(ROUTE_MESSAGES, an, sizeof an - 1, &out) == 0);
    CHECK_STR(out.data, "Hi there");
    CHECK(abjudge_stream_text(ROUTE_CHAT, "data: {nope\n\n", 14, &out) == 0 && out.len == 0);
    buf_free(&out);
}

static int deco(const gw_prompt *p, int anthropic, const char *body, buf_t *out)
{
    json_doc *d = json_parse(body, strlen(body), NULL, NULL);
    if (!d) return -2;
    int rc = decorate_body(p, anthropic, body, strlen(body), json_root(d), out);
    json_doc_free(d);
    return rc;
}

static void test_decorate(void)
{
    gw_prompt p;
    memset(&p, 0, sizeof p);
    char err[200];
    CHECK(prompt_set(&p, "system_prefix", "P", err, sizeof err) == 0);
    CHECK(prompt_set(&p, "defaults.temperature", "0.5", err, sizeof err) == 0);
    CHECK(prompt_set(&p, "defaults.seed", "7", err, sizeof err) == 0);
    CHECK(prompt_set(&p, "defaults.seed", "7.5", err, sizeof err) < 0 && strstr(err, "integer"));
    CHECK(prompt_set(&p, "defaults.temperature", "3", err, sizeof err) < 0);
    CHECK(prompt_set(&p, "defaults.logit_bias", "1", err, sizeof err) < 0 && strstr(err, "unknown parameter"));
    CHECK(prompt_set(&p, "colour", "x", err, sizeof err) < 0);
    buf_t out; buf_init(&out);
    CHECK(deco(&p, 0, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &out) == 1);
    CHECK_STR(out.data, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"P\"},"
                        "{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5,\"seed\":7}");
    CHECK(deco(&p, 0, "{\"model\":\"m\",\"seed\":1,\"temperature\":1,\"messages\":[{\"role\":\"developer\","
                      "\"content\":[{\"type\":\"text\",\"text\":\"d\"}]}]}", &out) == 1);
    CHECK_STR(out.data, "{\"model\":\"m\",\"seed\":1,\"temperature\":1,\"messages\":[{\"role\":\"developer\","
                        "\"content\":[{\"type\":\"text\",\"text\":\"P\"},{\"type\":\"text\",\"text\":\"d\"}]}]}");
    /* Anthropic: seed is not one of its parameters */
    CHECK(deco(&p, 1, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[]}", &out) == 1);
    CHECK_STR(out.data, "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"system\":\"P\",\"temperature\":0.5}");
    /* completions: no messages, only the defaults */
    CHECK(deco(&p, 0, "{\"model\":\"m\",\"prompt\":\"x\",\"temperature\":0,\"seed\":3}", &out) == 0);
    gw_prompt *j = prompt_from_json("{\"system_suffix\":\"S\",\"defaults\":{\"top_p\":0.9}}", err, sizeof err);
    CHECK(j && j->system_suffix && !strcmp(j->system_suffix, "S") && j->ndefaults == 1);
    prompt_free(j);
    CHECK(!prompt_from_json("{\"defaults\":{\"top_p\":9}}", err, sizeof err) && strstr(err, "top_p"));
    CHECK(!prompt_from_json("[1]", err, sizeof err));
    /* the cost per request of a decorated alias: rewrite + parse again, a 1.3 KB chat body (printed) */
    buf_t body; buf_init(&body);
    buf_puts(&body, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"}");
    for (int i = 0; i < 10; i++) buf_printf(&body, ",{\"role\":\"%s\",\"content\":\"message number %d of the conversation, "
                                                   "with some words in it to look like a real turn\"}", i % 2 ? "assistant" : "user", i);
    buf_puts(&body, "]}");
    json_doc *d = json_parse(body.data, body.len, NULL, NULL);
    CHECK(d != NULL);
    struct timespec t0, t1;
    int rounds = 20000, ok = 1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds && d; i++) {
        ok &= decorate_body(&p, 0, body.data, body.len, json_root(d), &out) == 1;
        json_doc *again = json_parse(out.data, out.len, NULL, NULL);
        ok &= again != NULL;
        json_doc_free(again);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(ok);
    printf("  decorate + parse again a %zu-byte body: %.2f us\n", body.len,
           ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3) / rounds);
    json_doc_free(d);
    buf_free(&body);
    free(p.system_prefix);
    buf_free(&out);
}

int main(void)
{
    RUN(test_verdicts);
    RUN(test_sampling);
    RUN(test_stream_text);
    RUN(test_decorate);
    TEST_MAIN_END();
}
