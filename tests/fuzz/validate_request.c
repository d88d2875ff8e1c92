/* fuzz target: an inbound request body as the gateway sees it. json_parse
 * with the gateway's limits, then validate_request for each route, then the
 * OpenAI provider's body rewrite (model replaced, stream usage injected) and
 * the mock provider's answer.
 *
 * Invariants: what the upstream receives is valid JSON in which EVERY
 * top-level "model" member is the deployment's model and every "stream"
 * member says what the gateway decided (an upstream takes the last of
 * duplicate members, the gateway the first: they must never disagree), and
 * an injected stream_options.include_usage is true wherever it appears. The
 * mock's answer is valid JSON (or SSE whose data lines are JSON). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "json.h"
#include "providers/provider.h"
#include "validate.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static json_doc *parse_exact(const char *p, size_t n)
{
    char *copy = malloc(n ? n : 1);
    CHECK(copy);
    memcpy(copy, p, n);
    json_error err;
    json_doc *d = json_parse(copy, n, NULL, &err);
    if (!d) fprintf(stderr, "invalid JSON produced: %s at %zu: %.*s\n", err.message, err.offset, (int)(n > 400 ? 400 : n), p);
    free(copy);
    return d;
}

static void check_upstream_body(const buf_t *out, const char *model, int stream, int injected)
{
    json_doc *d = parse_exact(out->data, out->len);
    CHECK(d);
    const json_value *root = json_root(d);
    CHECK(root->type == JSON_OBJECT);
    int seen_model = 0;
    for (const json_value *m = root->first; m; m = m->next) {
        if (!strcmp(m->key, "model")) {
            seen_model = 1;
            CHECK(m->type == JSON_STRING && !strcmp(m->str, model));
        } else if (!strcmp(m->key, "stream")) {
            CHECK(stream ? m->type == JSON_TRUE : m->type != JSON_TRUE);
        } else if (!strcmp(m->key, "stream_options") && injected) {
            CHECK(m->type == JSON_OBJECT);
            int iu = 0;
            for (const json_value *o = m->first; o; o = o->next)
                if (!strcmp(o->key, "include_usage")) { iu = 1; CHECK(o->type == JSON_TRUE); }
            CHECK(iu);
        }
    }
    CHECK(seen_model);
    json_doc_free(d);
}

/* The mock's reply must be valid JSON, valid UTF-8 included (it once quoted
 * 60 bytes of the user's text and could cut a UTF-8 sequence; regression
 * input: corpus/validate_request/mock-utf8-cut). */
static void mock_json(const char *p, size_t n)
{
    char *copy = malloc(n ? n : 1);
    CHECK(copy);
    memcpy(copy, p, n);
    json_error err;
    json_doc *d = json_parse(copy, n, NULL, &err);
    free(copy);
    if (!d) fprintf(stderr, "mock reply is not JSON: %s at %zu: %.*s\n", err.message, err.offset, (int)(n > 400 ? 400 : n), p);
    CHECK(d);
    json_doc_free(d);
}

static void check_mock_reply(const buf_t *out, int stream)
{
    if (!stream) {
        mock_json(out->data, out->len);
        return;
    }
    const char *p = out->data, *end = out->data + out->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        CHECK(nl);
        if (nl - p > 6 && !memcmp(p, "data: ", 6) && memcmp(p + 6, "[DONE]", 6)) {
            mock_json(p + 6, (size_t)(nl - p - 6));
        }
        p = nl + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_limits lim = { .max_depth = 64, .max_bytes = 4 << 20 };
    json_error jerr;
    json_doc *doc = json_parse((const char *)data, size, &lim, &jerr);
    if (!doc) return 0;
    const json_value *root = json_root(doc);
    static const gw_route routes[] = { ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_EMBEDDINGS };
    gw_deployment dep;
    memset(&dep, 0, sizeof dep);
    dep.model = "upstream-model";
    dep.base_url = "http://127.0.0.1:9";
    dep.provider_name = "openai";
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        validated v;
        char msg[256];
        const char *param = NULL;
        memset(&v, 0, sizeof v);
        if (validate_request(routes[i], root, &v, msg, sizeof msg, &param) < 0) {
            CHECK(memchr(msg, '\0', sizeof msg));
            continue;
        }
        CHECK(v.model && v.model->type == JSON_STRING && v.model->str_len > 0);
        for (int want_usage = 0; want_usage < 2; want_usage++) {
            provider_call call = {
                .route = routes[i], .dep = &dep, .body = (const char *)data, .body_len = size,
                .root = root, .model = v.model, .stream = v.stream, .want_usage = want_usage,
            };
            provider_http http;
            memset(&http, 0, sizeof http);
            buf_init(&http.url);
            buf_init(&http.body);
            char err[128];
            CHECK(provider_openai.build(&call, &http, err, sizeof err) == 0);
            check_upstream_body(&http.body, dep.model, v.stream, http.usage_injected);
            buf_free(&http.url);
            buf_free(&http.body);

            buf_t out;
            buf_init(&out);
            int status = 0;
            if (provider_mock.local_reply(&call, &status, &out) == 0) {
                CHECK(status == 200);
                check_mock_reply(&out, v.stream && routes[i] != ROUTE_EMBEDDINGS);
            }
            buf_free(&out);
        }
    }
    json_doc_free(doc);
    return 0;
}
