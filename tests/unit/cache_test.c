/* cache: request directives, the normalized key, and the in-worker LRU
 * (memory tier only: the Redis tier is covered by suite_obs). */
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "cache.h"
#include "json.h"
#include "test.h"

static void test_directives(void)
{
    long ttl;
    CHECK(cache_parse_directives(NULL, NULL, 0, 300, &ttl) == CACHE_OFF);
    CHECK(cache_parse_directives(NULL, NULL, 60, 300, &ttl) == CACHE_USE && ttl == 60);
    CHECK(cache_parse_directives(NULL, "on", 0, 300, &ttl) == CACHE_USE && ttl == 300);
    CHECK(cache_parse_directives(NULL, " ON ", 0, 300, &ttl) == CACHE_USE);
    CHECK(cache_parse_directives(NULL, "off", 60, 300, &ttl) == CACHE_OFF);
    CHECK(cache_parse_directives(NULL, "bypass", 60, 300, &ttl) == CACHE_OFF);
    CHECK(cache_parse_directives("no-cache", NULL, 60, 300, &ttl) == CACHE_REFRESH);
    CHECK(cache_parse_directives("no-cache", NULL, 0, 300, &ttl) == CACHE_OFF);   /* nothing opted in */
    CHECK(cache_parse_directives("no-store", NULL, 60, 300, &ttl) == CACHE_NO_STORE);
    CHECK(cache_parse_directives("private, max-age=120", NULL, 0, 300, &ttl) == CACHE_USE && ttl == 120);
    CHECK(cache_parse_directives("max-age=0", NULL, 60, 300, &ttl) == CACHE_REFRESH);
    CHECK(cache_parse_directives("max-age=99999999999999999999999", NULL, 0, 300, &ttl) == CACHE_OFF);
    CHECK(ttl >= 1 && ttl <= 30L * 86400);
    CHECK(cache_parse_directives("max-age=-5", NULL, 60, 300, &ttl) == CACHE_USE && ttl == 60);
    CHECK(cache_parse_directives(",,, ,", "garbage", 60, 300, &ttl) == CACHE_USE);
}

static void key_of(const char *body, int stream, const char *ns, uint8_t out[32])
{
    json_error err;
    json_doc *d = json_parse(body, strlen(body), NULL, &err);
    CHECK(d != NULL);
    cache_key(d ? json_root(d) : NULL, 0, stream, "alias", ns, out);
    json_doc_free(d);
}

static void test_key_normalized(void)
{
    uint8_t a[32], b[32], c[32];
    key_of("{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5}", 0, "t:1", a);
    key_of("{ \"temperature\" : 0.50, \"messages\":[{\"content\":\"hi\",\"role\":\"user\"}], \"model\":\"y\", \"user\":\"u\" }",
           0, "t:1", b);
    CHECK(memcmp(a, b, 32) == 0);   /* spacing, member order, model spelling, user: same request */
    key_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.7}", 0, "t:1", c);
    CHECK(memcmp(a, c, 32) != 0);   /* sampling parameters are part of it */
    key_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5}", 0, "t:2", c);
    CHECK(memcmp(a, c, 32) != 0);   /* another team */
    key_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5}", 1, "t:1", c);
    CHECK(memcmp(a, c, 32) != 0);   /* streamed answers are stored apart */
    key_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5,\"tools\":[]}", 0, "t:1", c);
    CHECK(memcmp(a, c, 32) != 0);
}

static void test_lru(void)
{
    struct event_base *base = event_base_new();
    CHECK(base != NULL);
    if (!base) return;
    cache *c = cache_new(base, NULL, 4096, 1024);
    CHECK(c != NULL);
    if (!c) { event_base_free(base); return; }
    uint8_t k[4][32];
    for (int i = 0; i < 4; i++) memset(k[i], i + 1, 32);
    char body[600];
    memset(body, 'x', sizeof body);
    cache_entry in = { .content_type = "application/json", .provider = "mock", .upstream_model = "m",
                       .body = body, .len = sizeof body };
    cache_entry out;
    cache_lookup *pend;
    CHECK(cache_get(c, k[0], &out, NULL, NULL, &pend) == 0 && pend == NULL);
    cache_put(c, k[0], 60, &in);
    CHECK(cache_get(c, k[0], &out, NULL, NULL, &pend) == 1);
    CHECK(out.len == sizeof body && memcmp(out.body, body, out.len) == 0);
    CHECK(!strcmp(out.content_type, "application/json") && !strcmp(out.provider, "mock") && !strcmp(out.upstream_model, "m"));
    /* bounded: 4096 bytes hold a few 600-byte entries; the least recently used goes first */
    cache_put(c, k[1], 60, &in);
    cache_put(c, k[2], 60, &in);
    CHECK(cache_get(c, k[0], &out, NULL, NULL, &pend) == 1);   /* k[0] is now the most recent */
    for (int i = 0; i < 8; i++) { uint8_t kk[32]; memset(kk, 0x40 + i, 32); cache_put(c, kk, 60, &in); }
    CHECK(cache_get(c, k[1], &out, NULL, NULL, &pend) == 0);
    /* entries larger than max_entry are never stored */
    char big[2000];
    memset(big, 'y', sizeof big);
    cache_entry bigin = in;
    bigin.body = big;
    bigin.len = sizeof big;
    cache_put(c, k[3], 60, &bigin);
    CHECK(cache_get(c, k[3], &out, NULL, NULL, &pend) == 0);
    /* ttl 0: not stored */
    cache_put(c, k[2], 0, &in);
    cache_free(c);
    event_base_free(base);
}

int main(void)
{
    RUN(test_directives);
    RUN(test_key_normalized);
    RUN(test_lru);
    TEST_MAIN_END();
}
