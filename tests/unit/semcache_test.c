/* semcache, semprompt and the semantic config: lookups by similarity,
 * expiry, bounded memory, guards, the canonical prompt text, partitions. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "cache.h"
#include "config.h"
#include "hnsw.h"
#include "json.h"
#include "providers/provider.h"
#include "semcache.h"
#include "semembed.h"
#include "semprompt.h"
#include "test.h"

#define DIM 32

static void vec_of(unsigned seed, float *v)
{
    for (int i = 0; i < DIM; i++) { seed = seed * 1103515245u + 12345u; v[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f; }
    hnsw_normalize(v, DIM);
}

/* v moved a little: cosine with the original stays high */
static void near_of(const float *v, unsigned seed, float eps, float *out)
{
    float d[DIM];
    vec_of(seed, d);
    for (int i = 0; i < DIM; i++) out[i] = v[i] + eps * d[i];
    hnsw_normalize(out, DIM);
}

static cache_entry entry(const char *body)
{
    return (cache_entry){ .content_type = "application/json", .provider = "mock", .upstream_model = "m",
                          .body = body, .len = strlen(body) };
}

static void part_of(int n, uint8_t k[32]) { memset(k, 0, 32); k[0] = (uint8_t)n; k[31] = 7; }

static void test_hit_miss_threshold(void)
{
    struct event_base *base = event_base_new();
    semcache *s = semcache_new(base, NULL, 100, 1 << 20, 16, 64);
    CHECK(s != NULL);
    uint8_t p1[32], p2[32];
    part_of(1, p1); part_of(2, p2);
    float a[DIM], b[DIM], near[DIM], far[DIM];
    vec_of(1, a); vec_of(2, b); near_of(a, 99, 0.15f, near); vec_of(3, far);
    cache_entry ea = entry("{\"answer\":\"a\"}"), eb = entry("{\"answer\":\"b\"}"), got;
    semcache_lookup *pending;
    double sim;
    CHECK(semcache_get(s, p1, a, DIM, 0.9, &got, &sim, NULL, NULL, &pending) == 0 && sim == 0 && !pending);
    semcache_put(s, p1, a, DIM, 60, &ea);
    semcache_put(s, p1, b, DIM, 60, &eb);
    CHECK(semcache_count(s) == 2);
    CHECK(semcache_get(s, p1, near, DIM, 0.9, &got, &sim, NULL, NULL, &pending) == 1);
    CHECK(sim >= 0.9 && sim < 1 && got.len == ea.len && !memcmp(got.body, ea.body, ea.len));
    CHECK(!strcmp(got.provider, "mock") && !strcmp(got.content_type, "application/json"));
    double s_near = sim;
    /* above the score: a miss that still reports it */
    CHECK(semcache_get(s, p1, near, DIM, s_near + 0.001, &got, &sim, NULL, NULL, &pending) == 0 && fabs(sim - s_near) < 1e-6);
    CHECK(semcache_get(s, p1, far, DIM, 0.9, &got, &sim, NULL, NULL, &pending) == 0 && sim < 0.9);
    /* another partition sees nothing */
    CHECK(semcache_get(s, p2, a, DIM, 0.5, &got, &sim, NULL, NULL, &pending) == 0 && sim == 0);
    /* another dimension (the embedding model changed) is not comparable */
    float big[DIM * 2];
    for (int i = 0; i < DIM * 2; i++) big[i] = a[i % DIM];
    hnsw_normalize(big, DIM * 2);
    CHECK(semcache_get(s, p1, big, DIM * 2, 0.5, &got, &sim, NULL, NULL, &pending) == 0);
    semcache_put(s, p1, big, DIM * 2, 60, &ea);   /* replaces the partition's old vectors */
    CHECK(semcache_count(s) == 1);
    CHECK(semcache_get(s, p1, a, DIM, 0.5, &got, &sim, NULL, NULL, &pending) == 0);
    semcache_free(s);
    event_base_free(base);
}

static void test_bounded_entries_and_bytes(void)
{
    struct event_base *base = event_base_new();
    semcache *s = semcache_new(base, NULL, 50, 1 << 20, 8, 32);
    uint8_t p[32];
    part_of(3, p);
    float v[DIM];
    cache_entry e = entry("{\"x\":1}"), got;
    semcache_lookup *pending;
    double sim;
    for (unsigned i = 0; i < 500; i++) { vec_of(1000 + i, v); semcache_put(s, p, v, DIM, 60, &e); }
    CHECK(semcache_count(s) == 50);
    vec_of(1000, v);   /* the oldest went first */
    CHECK(semcache_get(s, p, v, DIM, 0.999, &got, &sim, NULL, NULL, &pending) == 0);
    vec_of(1499, v);
    CHECK(semcache_get(s, p, v, DIM, 0.999, &got, &sim, NULL, NULL, &pending) == 1);
    semcache_free(s);
    /* bytes: large answers evict more */
    s = semcache_new(base, NULL, 1000000, 64 << 10, 8, 32);
    char *body = malloc(8000);
    memset(body, 'x', 7999);
    body[7999] = '\0';
    cache_entry big = entry(body);
    for (unsigned i = 0; i < 100; i++) { vec_of(5000 + i, v); semcache_put(s, p, v, DIM, 60, &big); }
    CHECK(semcache_bytes(s) <= 64 << 10 && semcache_count(s) >= 5 && semcache_count(s) < 10);
    /* larger than everything: not stored, nothing evicted for it */
    char *huge = malloc(70 << 10);
    memset(huge, 'y', (70 << 10) - 1);
    huge[(70 << 10) - 1] = '\0';
    size_t before = semcache_count(s);
    cache_entry h = entry(huge);
    vec_of(9, v);
    semcache_put(s, p, v, DIM, 60, &h);
    CHECK(semcache_count(s) == before);
    free(body); free(huge);
    semcache_free(s);
    CHECK(semcache_new(base, NULL, 10, 10, 2, 10) == NULL);   /* M out of range */
    event_base_free(base);
}

static void test_ttl_expiry(void)
{
    struct event_base *base = event_base_new();
    semcache *s = semcache_new(base, NULL, 100, 1 << 20, 8, 32);
    uint8_t p[32];
    part_of(4, p);
    float a[DIM], b[DIM];
    vec_of(11, a); vec_of(12, b);
    cache_entry e = entry("{}"), got;
    semcache_lookup *pending;
    double sim;
    semcache_put(s, p, a, DIM, 1, &e);
    semcache_put(s, p, b, DIM, 3600, &e);
    CHECK(semcache_get(s, p, a, DIM, 0.99, &got, &sim, NULL, NULL, &pending) == 1);
    /* the loop's cached clock moves once the loop runs: let 1.1 s pass */
    struct timeval tv = { 1, 100000 };
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    CHECK(semcache_get(s, p, a, DIM, 0.99, &got, &sim, NULL, NULL, &pending) == 0);   /* expired: skipped */
    semcache_sweep(s, 1000);
    CHECK(semcache_count(s) == 1);
    CHECK(semcache_get(s, p, b, DIM, 0.99, &got, &sim, NULL, NULL, &pending) == 1);
    semcache_put(s, p, a, DIM, 0, &e);   /* no lifetime: not stored */
    CHECK(semcache_count(s) == 1);
    semcache_free(s);
    event_base_free(base);
}

static json_doc *doc(const char *j)
{
    json_error err;
    json_limits lim = { 0 };
    return json_parse(j, strlen(j), &lim, &err);
}

static int text_of(const char *j, int route, double maxt, buf_t *out)
{
    json_doc *d = doc(j);
    buf_reset(out);
    int rc = d ? semprompt_text(json_root(d), route, maxt, out) : -1;
    json_doc_free(d);
    return rc;
}

static void test_prompt_text_and_guards(void)
{
    buf_t b;
    buf_init(&b);
    CHECK(text_of("{\"messages\":[{\"role\":\"system\",\"content\":\"Be  brief.\"},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\\n\\n there\"},"
                  "{\"type\":\"text\",\"text\":\"friend\"}]}]}", ROUTE_CHAT, 1.0, &b) == SEM_SKIP_NONE);
    buf_putc(&b, 0);
    CHECK_STR(b.data, "system: Be brief.\nuser: Hello there friend\n");
    /* the same conversation spaced differently, as one string: the same text */
    buf_t b2;
    buf_init(&b2);
    CHECK(text_of("{\"messages\":[{\"role\":\"developer\",\"content\":\" Be brief. \"},"
                  "{\"role\":\"user\",\"content\":\"Hello there\\tfriend\"}]}", ROUTE_CHAT, 1.0, &b2) == SEM_SKIP_NONE);
    buf_putc(&b2, 0);
    CHECK_STR(b2.data, b.data);
    /* Anthropic: the top-level system first */
    CHECK(text_of("{\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\"}],\"messages\":[{\"role\":\"user\","
                  "\"content\":\"Hello there friend\"}]}", ROUTE_MESSAGES, 1.0, &b2) == SEM_SKIP_NONE);
    buf_putc(&b2, 0);
    CHECK_STR(b2.data, b.data);
    /* guards */
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[]}", ROUTE_CHAT, 1, &b) == SEM_SKIP_TOOLS);
    CHECK(text_of("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\",\"tool_call_id\":\"a\"}]}", ROUTE_CHAT, 1, &b) == SEM_SKIP_TOOLS);
    CHECK(text_of("{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[]}]}", ROUTE_CHAT, 1, &b) == SEM_SKIP_TOOLS);
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"content\":\"x\"}]}]}",
                  ROUTE_MESSAGES, 1, &b) == SEM_SKIP_TOOLS);
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
                  ROUTE_CHAT, 1, &b) == SEM_SKIP_CONTENT);
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":0.8}", ROUTE_CHAT, 0.7, &b) == SEM_SKIP_TEMPERATURE);
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":0.7}", ROUTE_CHAT, 0.7, &b) == SEM_SKIP_NONE);
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", ROUTE_CHAT, 0.7, &b) == SEM_SKIP_TEMPERATURE);   /* absent: 1.0 */
    CHECK(text_of("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", ROUTE_CHAT, 1, &b) == SEM_SKIP_CONTENT);
    CHECK(text_of("{\"prompt\":\"x\"}", ROUTE_COMPLETIONS, 1, &b) == SEM_SKIP_CONTENT);
    /* too long */
    size_t n = SEMPROMPT_MAX_TEXT + 100;
    char *big = malloc(n + 64);
    int k = snprintf(big, 64, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(big + k, 'a', n);
    strcpy(big + k + n, "\"}]}");
    CHECK(text_of(big, ROUTE_CHAT, 1, &b) == SEM_SKIP_CONTENT);
    free(big);
    buf_free(&b);
    buf_free(&b2);
    /* opt-outs */
    CHECK(semprompt_optout(NULL, NULL, NULL) == 0);
    CHECK(semprompt_optout("max-age=60", "on", "on") == 0);
    CHECK(semprompt_optout("public, no-cache", NULL, NULL) == 1);
    CHECK(semprompt_optout("NO-STORE", NULL, NULL) == 1);
    CHECK(semprompt_optout(NULL, " bypass ", NULL) == 1);
    CHECK(semprompt_optout(NULL, NULL, "off") == 1);
    CHECK(!strcmp(semprompt_skip_name(SEM_SKIP_TOOLS), "tools") && !strcmp(semprompt_skip_name(99), "other"));
}

static void partition(const char *j, int stream, const char *ns, uint8_t k[32])
{
    json_doc *d = doc(j);
    semprompt_partition(json_root(d), ROUTE_CHAT, stream, "alias", ns, k);
    json_doc_free(d);
}

static void test_partitions(void)
{
    uint8_t a[32], b[32];
    partition("{\"model\":\"x\",\"messages\":[1],\"temperature\":0.1,\"max_tokens\":5}", 0, "t:1", a);
    partition("{\"max_tokens\":5,\"messages\":[2],\"model\":\"y\",\"temperature\":0.9,\"seed\":3}", 0, "t:1", b);
    CHECK(!memcmp(a, b, 32));   /* the conversation and sampling do not split partitions */
    partition("{\"messages\":[1],\"max_tokens\":6}", 0, "t:1", b);
    CHECK(memcmp(a, b, 32));    /* another max_tokens does */
    partition("{\"messages\":[1],\"max_tokens\":5}", 1, "t:1", b);
    CHECK(memcmp(a, b, 32));    /* streamed answers apart */
    partition("{\"messages\":[1],\"max_tokens\":5}", 0, "t:2", b);
    CHECK(memcmp(a, b, 32));    /* another team apart */
}

static void test_embedding_answers(void)
{
    uint32_t dim = 0;
    const char *ok = "{\"data\":[{\"embedding\":[3,4]}]}";
    float *v = semembed_parse(ok, strlen(ok), &dim);
    CHECK(v && dim == 2 && fabsf(v[0] - 0.6f) < 1e-6f && fabsf(v[1] - 0.8f) < 1e-6f);
    free(v);
    const char *bad[] = { "", "{}", "{\"data\":[]}", "{\"data\":[{\"embedding\":[]}]}", "{\"data\":[{\"embedding\":[0,0]}]}",
                          "{\"data\":[{\"embedding\":[1,\"x\"]}]}", "{\"data\":[{\"embedding\":\"AAAA\"}]}",
                          "{\"data\":[{\"embedding\":[1e300,1]}]}", "[1,2]" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK(semembed_parse(bad[i], strlen(bad[i]), &dim) == NULL);
}

static void test_config(void)
{
    char err[512];
    const char *y = "cache: { semantic_max_entries: 500, semantic_memory_mb: 3, semantic_m: 12, semantic_ef: 40 }\n"
                    "models:\n"
                    "  - alias: a\n    cache: { ttl_s: 90, semantic: { embedding_model: e, threshold: 0.95 } }\n"
                    "    deployments: [ {provider: mock, model: m} ]\n"
                    "  - alias: e\n    deployments: [ {provider: mock, model: m} ]\n";
    gw_config *c = config_parse(y, strlen(y), "t.yaml", err, sizeof err);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", err); return; }
    const gw_model *a = config_find_model(c, "a", 1);
    CHECK(a && a->semantic && !strcmp(a->semantic->embedding_model, "e") && a->semantic->threshold == 0.95);
    CHECK(a && a->semantic && a->semantic->ttl_s == 90 && a->semantic->max_temperature == 1.0);   /* ttl from the alias */
    CHECK(c->sem_max_entries == 500 && c->sem_memory_bytes == 3u << 20 && c->sem_m == 12 && c->sem_ef == 40);
    CHECK(config_find_model(c, "e", 1)->semantic == NULL);
    config_unref(c);
    struct { const char *sem, *want; } bad[] = {
        { "{ threshold: 0.9 }", "models[0].cache.semantic.embedding_model: is required" },
        { "{ embedding_model: nope }", "models[0].cache.semantic.embedding_model: unknown alias" },
        { "{ embedding_model: a }", "models[0].cache.semantic.embedding_model: unknown alias or the alias itself" },
        { "{ embedding_model: e, threshold: 0.2 }", "models[0].cache.semantic.threshold: must be a number between 0.5 and 1" },
        { "{ embedding_model: e, max_temperature: 3 }", "models[0].cache.semantic.max_temperature: must be a number between 0 and 2" },
        { "{ embedding_model: e, ttl_s: 0 }", "models[0].cache.semantic.ttl_s: must be an integer between 1 and 2592000" },
        { "{ embedding_model: e, nope: 1 }", "models[0].cache.semantic.nope: unknown field" },
        { "5", "models[0].cache.semantic: must be a mapping" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char doc[512];
        snprintf(doc, sizeof doc, "models:\n  - alias: a\n    cache: { semantic: %s }\n"
                 "    deployments: [ {provider: mock, model: m} ]\n"
                 "  - alias: e\n    deployments: [ {provider: mock, model: m} ]\n", bad[i].sem);
        gw_config *x = config_parse(doc, strlen(doc), "t.yaml", err, sizeof err);
        CHECK(x == NULL);
        if (x) { config_unref(x); continue; }
        if (!strstr(err, bad[i].want)) fprintf(stderr, "  got: %s\n  want: %s\n", err, bad[i].want);
        CHECK(strstr(err, bad[i].want) != NULL);
    }
    /* an embedding alias that cannot embed: Anthropic has no embeddings API */
    const char *na = "models:\n  - alias: a\n    cache: { semantic: { embedding_model: e } }\n"
                     "    deployments: [ {provider: mock, model: m} ]\n"
                     "  - alias: e\n    deployments: [ {provider: anthropic, model: c, api_key: sk-ant-xxxxxxxx} ]\n";
    gw_config *x = config_parse(na, strlen(na), "t.yaml", err, sizeof err);
    CHECK(x == NULL && strstr(err, "has no deployment that serves embeddings"));
    if (x) config_unref(x);
}

int main(void)
{
    RUN(test_hit_miss_threshold);
    RUN(test_bounded_entries_and_bytes);
    RUN(test_ttl_expiry);
    RUN(test_prompt_text_and_guards);
    RUN(test_partitions);
    RUN(test_embedding_answers);
    RUN(test_config);
    TEST_MAIN_END();
}
