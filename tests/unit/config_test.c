/* config parsing, secret references, key hashing and lookup */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/sha.h>

#include "config.h"
#include "providers/provider.h"
#include "test.h"

static const char *good =
    "listen: 127.0.0.1:9999\n"
    "workers: 3\n"
    "busy_poll_us: 150\n"
    "max_body_bytes: 65536\n"
    "timeouts: { connect_ms: 1500, first_byte_ms: 2500 }\n"
    "models:\n"
    "  - alias: gpt-4o-mini\n"
    "    strategy: weighted\n"
    "    deployments:\n"
    "      - provider: openai_compatible\n"
    "        model: up-model\n"
    "        base_url: http://127.0.0.1:1/v1/\n"
    "        api_key: env:CONFIG_TEST_KEY\n"
    "        weight: 3\n"
    "      - provider: mock\n"
    "        model: mock-1\n"
    "        timeouts: { first_byte_ms: 700 }\n"
    "  - alias: other\n"
    "    deployments: [ { provider: mock, model: m } ]\n"
    "keys:\n"
    "  - name: team-a\n"
    "    key: sk-gw-team-a-secret\n"
    "    models: [gpt-4o-mini]\n"
    "    rpm_limit: 600\n"
    "  - name: team-b\n"
    "    key_sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8\n";

static gw_config *parse(const char *y, char *err, size_t errlen)
{
    return config_parse(y, strlen(y), "test.yaml", err, errlen);
}

static void test_parses_settings_and_models(void)
{
    char err[256];
    setenv("CONFIG_TEST_KEY", "sk-upstream-xyz", 1);
    gw_config *c = parse(good, err, sizeof err);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", err); return; }
    CHECK_STR(c->listen_host, "127.0.0.1");
    CHECK(c->listen_port == 9999);
    CHECK(c->workers == 3);
    CHECK(c->busy_poll_us == 150);
    CHECK(c->max_body_bytes == 65536);
    CHECK(c->nmodels == 2);
    const gw_model *m = config_find_model(c, "gpt-4o-mini", 11);
    CHECK(m != NULL);
    if (m) {
        CHECK(m->ndeployments == 2);
        CHECK(m->total_weight == 4);
        CHECK_STR(m->deployments[0].base_url, "http://127.0.0.1:1/v1");   /* trailing slash trimmed */
        CHECK_STR(m->deployments[0].api_key, "sk-upstream-xyz");          /* env: resolved */
        CHECK_STR(m->deployments[0].auth_header, "Authorization: Bearer sk-upstream-xyz");
        CHECK(m->deployments[0].timeouts.connect_ms == 1500);             /* inherited default */
        CHECK(m->deployments[1].timeouts.first_byte_ms == 700);           /* per-deployment override */
        CHECK(m->deployments[1].provider == &provider_mock);
    }
    CHECK(config_find_model(c, "gpt-4o", 6) == NULL);
    config_unref(c);
}

static void test_keys_are_hashed_and_found(void)
{
    char err[256];
    setenv("CONFIG_TEST_KEY", "x", 1);
    gw_config *c = parse(good, err, sizeof err);
    CHECK(c != NULL);
    if (!c) return;
    uint8_t h[32];
    SHA256((const unsigned char *)"sk-gw-team-a-secret", 19, h);
    gw_key view;
    const gw_key *k = config_find_key(c, h, &view);
    CHECK(k != NULL && !strcmp(k->name, "team-a"));
    CHECK(k && k->rpm_limit == 600);
    CHECK(k && config_key_allows(k, "gpt-4o-mini", 11));
    CHECK(k && !config_key_allows(k, "other", 5));
    SHA256((const unsigned char *)"password", 8, h);   /* key_sha256 given directly */
    k = config_find_key(c, h, &view);
    CHECK(k != NULL && !strcmp(k->name, "team-b"));
    CHECK(k && config_key_allows(k, "other", 5));       /* no models = all */
    SHA256((const unsigned char *)"sk-gw-unknown", 13, h);
    CHECK(config_find_key(c, h, &view) == NULL);
    config_unref(c);
}

static void expect_error(const char *yaml, const char *needle)
{
    char err[512];
    gw_config *c = parse(yaml, err, sizeof err);
    CHECK(c == NULL);
    if (c) { config_unref(c); return; }
    if (!strstr(err, needle)) { fprintf(stderr, "  error was: %s\n  expected: %s\n", err, needle); t_cur_failed = 1; }
}

static void test_errors_name_the_field(void)
{
    expect_error("models:\n  - alias: a\n    deployments:\n      - provider: nope\n        model: m\n",
                 "models[0].deployments[0].provider: unknown provider \"nope\"");
    expect_error("models:\n  - alias: a\n    deployments:\n      - provider: mock\n", "models[0].deployments[0].model: is required");
    expect_error("models:\n  - deployments: [ {provider: mock, model: m} ]\n", "models[0].alias: is required");
    expect_error("workers: lots\n", "workers: must be an integer");
    expect_error("busy_poll_us: 20000\n", "busy_poll_us: must be between 0 and 10000, got 20000");
    expect_error("busy_poll_us: -1\n", "busy_poll_us: must be between 0 and 10000");
    expect_error("listen: nowhere\n", "listen: must be host:port");
    expect_error("bogus: 1\n", "bogus: unknown field");
    expect_error("models:\n  - alias: a\n    strategy: fastest\n    deployments: [ {provider: mock, model: m} ]\n",
                 "models[0].strategy: unknown strategy");
    expect_error("keys:\n  - name: k\n    key: env:CONFIG_TEST_UNSET_VAR\n",
                 "keys[0].key: environment variable CONFIG_TEST_UNSET_VAR is not set");
    expect_error("keys:\n  - name: k\n    key: sk-gw-aaaaaaaa\n  - name: j\n    key: sk-gw-aaaaaaaa\n",
                 "keys[1].key: duplicate key");
    expect_error("keys:\n  - name: k\n    key: sk-gw-aaaaaaaa\n    models: [missing]\n", "keys[0].models[0]: unknown alias");
    expect_error("models:\n  - alias: a\n    deployments: [ {provider: openai_compatible, model: m} ]\n",
                 "base_url is required");
    expect_error("models: [ {alias: a, deployments: [ {provider: mock, model: m} ]}, {alias: a, deployments: [ {provider: mock, model: m} ]} ]\n",
                 "models[1].alias: duplicate alias");
    expect_error("tracing: { otlp_endpoint: http://127.0.0.1:4318/v1/traces, protocol: grpc }\n",
                 "tracing.protocol: unknown protocol \"grpc\" (known: http/protobuf, http/json");
    expect_error("tracing: { protocol: [http/json] }\n", "tracing.protocol: must be http/protobuf or http/json");
    expect_error("listen: [unclosed\n", "yaml:");
    expect_error("- just\n- a list\n", "top level must be a mapping");
}

static void test_tracing_protocol(void)
{
    char err[256];
    gw_config *c = parse("tracing: { otlp_endpoint: http://127.0.0.1:4318/v1/traces }\n", err, sizeof err);
    CHECK(c && c->trace_protocol == TRACE_PROTO_PROTOBUF);   /* the OTLP default */
    if (c) config_unref(c);
    c = parse("tracing: { otlp_endpoint: http://127.0.0.1:4318/v1/traces, protocol: http/json }\n", err, sizeof err);
    CHECK(c && c->trace_protocol == TRACE_PROTO_JSON);
    if (c) config_unref(c);
    c = parse("tracing: { protocol: http/protobuf }\n", err, sizeof err);
    CHECK(c && c->trace_protocol == TRACE_PROTO_PROTOBUF);
    if (c) config_unref(c);
}

static void test_router_settings(void)
{
    char err[256];
    const char *y =
        "models:\n"
        "  - alias: main\n"
        "    strategy: least_latency\n"
        "    deployments: [ {provider: mock, model: a, rpm_limit: 60, tpm_limit: 100000}, {provider: mock, model: b} ]\n"
        "    fallbacks: [backup]\n"
        "    router: { max_attempts: 4, backoff_ms: 10, breaker_failures: 3, breaker_ratio: 0.25,\n"
        "              breaker_cooldown_ms: 2000, hedge_ms: p95, context_fallback: big,\n"
        "              split_alias: backup, split_percent: 12.5 }\n"
        "  - alias: backup\n"
        "    deployments: [ {provider: mock, model: c} ]\n"
        "  - alias: big\n"
        "    deployments: [ {provider: mock, model: d} ]\n"
        "  - alias: auto\n"
        "    strategy: classifier\n"
        "    router: { cheap: backup, flagship: big, threshold: 0.4 }\n";
    gw_config *c = parse(y, err, sizeof err);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", err); return; }
    const gw_model *m = config_find_model(c, "main", 4);
    CHECK(m && m->strategy_id == STRATEGY_LEAST_LATENCY && m->nfallbacks == 1 && !strcmp(m->fallbacks[0], "backup"));
    CHECK(m && m->policy.max_attempts == 4 && m->policy.backoff_base_ms == 10 && m->policy.breaker_failures == 3);
    CHECK(m && m->policy.breaker_ratio == 0.25 && m->policy.breaker_cooldown_ms == 2000 && m->policy.hedge_ms == -1);
    CHECK(m && !strcmp(m->policy.context_fallback, "big") && m->policy.split_percent == 12.5);
    CHECK(m && m->policy.breaker_min_requests == 20 && m->policy.backoff_max_ms == 1000);   /* defaults kept */
    CHECK(m && m->deployments[0].rpm_limit == 60 && m->deployments[0].tpm_limit == 100000 && m->deployments[1].rpm_limit == -1);
    CHECK(m && m->deployments[0].route_id != m->deployments[1].route_id && m->deployments[0].route_id != 0);
    const gw_model *a = config_find_model(c, "auto", 4);
    CHECK(a && a->ndeployments == 0 && a->strategy_id == STRATEGY_CLASSIFIER && a->policy.classifier_threshold == 0.4);
    config_unref(c);

    const char *dep = "    deployments: [ {provider: mock, model: m} ]\n";
    char buf[512];
    snprintf(buf, sizeof buf, "models:\n  - alias: a\n%s    fallbacks: [nowhere]\n", dep);
    expect_error(buf, "models[0].fallbacks[0]: unknown alias or the alias itself");
    snprintf(buf, sizeof buf, "models:\n  - alias: a\n%s    router: { retries: 3 }\n", dep);
    expect_error(buf, "models[0].router.retries: unknown field");
    snprintf(buf, sizeof buf, "models:\n  - alias: a\n%s    router: { max_attempts: 0 }\n", dep);
    expect_error(buf, "models[0].router.max_attempts: must be an integer from 1 to 10");
    snprintf(buf, sizeof buf, "models:\n  - alias: a\n%s    router: { hedge_ms: soon }\n", dep);
    expect_error(buf, "or \"p95\"");
    snprintf(buf, sizeof buf, "models:\n  - alias: a\n%s    router: { breaker_ratio: 1.5 }\n", dep);
    expect_error(buf, "models[0].router.breaker_ratio: must be a number from 0.01 to 1");
    snprintf(buf, sizeof buf, "models:\n  - alias: a\n%s    router: { split_alias: a, split_percent: 5 }\n", dep);
    expect_error(buf, "models[0].router.split_alias: unknown alias or the alias itself");
    expect_error("models:\n  - alias: auto\n    strategy: classifier\n", "strategy classifier needs cheap and flagship");
    expect_error("models:\n  - alias: a\n    deployments: [ {provider: mock, model: m, rpm_limit: 0} ]\n",
                 "models[0].deployments[0].rpm_limit: must be between 1");
}

static void test_price_overrides(void)
{
    char err[512];
    const char *y =
        "models:\n"
        "  - alias: a\n"
        "    deployments:\n"
        "      - { provider: mock, model: gpt-4o-2024-08-06, output_cost_per_mtok: 12.5 }\n"
        "      - { provider: mock, model: mock-1, input_cost_per_mtok: 1, cached_input_cost_per_mtok: 0.5 }\n"
        "      - { provider: mock, model: mock-2 }\n";
    gw_config *c = parse(y, err, sizeof err);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", err); return; }
    const gw_deployment *d = c->models[0].deployments;
    CHECK(d[0].price.input == 2.5 && d[0].price.cached_input == 1.25 && d[0].price.output == 12.5);
    CHECK(d[1].price.input == 1 && d[1].price.cached_input == 0.5 && d[1].price.output == 0);
    CHECK(d[2].price.input == 0 && d[2].price.output == 0);
    config_unref(c);
    expect_error("models:\n  - alias: a\n    deployments: [ {provider: mock, model: m, input_cost_per_mtok: -1} ]\n",
                 "models[0].deployments[0].input_cost_per_mtok: must be a non-negative number");
    expect_error("models:\n  - alias: a\n    deployments: [ {provider: mock, model: m, output_cost_per_mtok: 2e6} ]\n",
                 "models[0].deployments[0].output_cost_per_mtok: must be at most");
    expect_error("models:\n  - alias: a\n    deployments: [ {provider: mock, model: m, output_cost_per_mtok: nan} ]\n",
                 "models[0].deployments[0].output_cost_per_mtok:");
}

static void test_file_secret_and_defaults(void)
{
    char path[] = "/tmp/gw-secret-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, "sk-from-file\n", 13) == 13);
    close(fd);
    char y[512], err[256];
    snprintf(y, sizeof y, "models:\n  - alias: a\n    deployments:\n      - provider: openai\n        model: gpt-4o\n        api_key: file:%s\n", path);
    gw_config *c = parse(y, err, sizeof err);
    unlink(path);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", err); return; }
    CHECK_STR(c->models[0].deployments[0].api_key, "sk-from-file");
    CHECK_STR(c->models[0].deployments[0].base_url, "https://api.openai.com/v1");
    CHECK(c->max_body_bytes == 4u << 20);
    CHECK(c->listen_port == 8080);
    config_unref(c);
}

static void test_refcount(void)
{
    char err[256];
    gw_config *c = parse("workers: 1\n", err, sizeof err);
    CHECK(c != NULL);
    if (!c) return;
    gw_config *r = config_ref(c);
    CHECK(r == c && c->refcount == 2);
    config_unref(c);
    CHECK(r->refcount == 1);
    config_unref(r);
}

static void test_cache_settings(void)
{
    char err[512];
    const char *y = "cache: { memory_mb: 8, max_entry_kb: 16, default_ttl_s: 42 }\n"
                    "models:\n  - alias: a\n    cache: { ttl_s: 300, shared: true }\n"
                    "    deployments: [ {provider: mock, model: m} ]\n"
                    "  - alias: b\n    deployments: [ {provider: mock, model: m} ]\n";
    gw_config *c = config_parse(y, strlen(y), "t.yaml", err, sizeof err);
    CHECK(c != NULL);
    if (!c) { fprintf(stderr, "  %s\n", err); return; }
    CHECK(c->cache_memory_bytes == 8u << 20);
    CHECK(c->cache_max_entry_bytes == 16u << 10);
    CHECK(c->cache_default_ttl_s == 42);
    const gw_model *a = config_find_model(c, "a", 1), *b = config_find_model(c, "b", 1);
    CHECK(a && a->cache_ttl_s == 300 && a->cache_shared == 1);
    CHECK(b && b->cache_ttl_s == 0 && b->cache_shared == 0);
    config_unref(c);
    expect_error("models:\n  - alias: a\n    cache: { ttl_s: -1 }\n    deployments: [ {provider: mock, model: m} ]\n",
                 "models[0].cache.ttl_s: must be between");
    expect_error("models:\n  - alias: a\n    cache: { ttl: 5 }\n    deployments: [ {provider: mock, model: m} ]\n",
                 "models[0].cache.ttl: unknown field");
    expect_error("models:\n  - alias: a\n    cache: 5\n    deployments: [ {provider: mock, model: m} ]\n",
                 "models[0].cache: must be a mapping");
    expect_error("cache: { memory_mb: lots }\n", "cache.memory_mb: must be an integer");
}

int main(void)
{
    RUN(test_cache_settings);
    RUN(test_parses_settings_and_models);
    RUN(test_keys_are_hashed_and_found);
    RUN(test_errors_name_the_field);
    RUN(test_file_secret_and_defaults);
    RUN(test_price_overrides);
    RUN(test_router_settings);
    RUN(test_tracing_protocol);
    RUN(test_refcount);
    TEST_MAIN_END();
}
