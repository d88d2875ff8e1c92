/* router: strategies, breaker, retry budget, error classes, backoff; and
 * what one decision costs (printed, never asserted). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "router.h"
#include "test.h"

/* A model with n mock deployments, route ids as config_model_finish gives them. */
static gw_model make_model(const char *alias, const char *strategy, const int *weights, size_t n)
{
    gw_model m;
    memset(&m, 0, sizeof m);
    m.alias = strdup(alias);
    m.strategy = strdup(strategy);
    m.deployments = calloc(n, sizeof *m.deployments);
    m.ndeployments = n;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "m-%zu", i);
        m.deployments[i].provider_name = strdup("mock");
        m.deployments[i].model = strdup(name);
        m.deployments[i].weight = weights ? weights[i] : 1;
        m.deployments[i].rpm_limit = m.deployments[i].tpm_limit = -1;
        m.total_weight += m.deployments[i].weight;
    }
    config_route_policy_defaults(&m.policy);
    config_model_finish(&m);
    return m;
}

static void free_model(gw_model *m) { config_model_free(m); }

static void test_weighted_split_within_2pct(void)
{
    static const int w[] = { 5, 3, 2 };
    gw_model m = make_model("a", "weighted", w, 3);
    router_t r;
    CHECK(router_init(&r, 42, 1) == 0);
    long got[3] = { 0 }, wait;
    for (int i = 0; i < 10000; i++) {
        int d = router_pick(&r, &m, 0, 1000, &wait);
        CHECK(d >= 0 && d < 3);
        if (d >= 0) got[d]++;
    }
    for (int i = 0; i < 3; i++) {
        double share = (double)got[i] / 10000.0, want = (double)w[i] / 10.0;
        CHECK(share > want - 0.02 && share < want + 0.02);
    }
    /* smooth: with 5:3:2 no deployment gets more than 2 in a row (nginx's property) */
    int last = -1, run = 0, maxrun = 0;
    for (int i = 0; i < 100; i++) {
        int d = router_pick(&r, &m, 0, 1000, &wait);
        run = d == last ? run + 1 : 1;
        last = d;
        if (run > maxrun) maxrun = run;
    }
    CHECK(maxrun <= 2);
    router_free(&r);
    free_model(&m);
}

static void count_dep(const router_dep *d, void *ud) { (void)d; ++*(int *)ud; }

static void test_breaker_opens_probes_and_closes(void)
{
    gw_model m = make_model("b", "weighted", NULL, 2);
    m.policy.breaker_failures = 3;
    m.policy.breaker_cooldown_ms = 1000;
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    int64_t now = 10000;
    long wait;
    for (int i = 0; i < 3; i++) {
        router_attempt_start(&r, &m, 0, 0, now);
        router_attempt_done(&r, &m, 0, OUTCOME_RETRY, -1, 0, now);
    }
    CHECK(router_dep_get(&r, &m.deployments[0])->state == BREAKER_OPEN);
    /* open: every pick goes to deployment 1, whatever it tried */
    for (int i = 0; i < 50; i++) CHECK(router_pick(&r, &m, 0, now + 500, &wait) == 1);
    CHECK(router_pick(&r, &m, 2, now + 500, &wait) == 1);   /* all tried: 1 again, never the open one */
    /* after the cooldown: exactly one probe */
    int probes = 0;
    for (int i = 0; i < 10; i++) {
        int d = router_pick(&r, &m, 0, now + 1001, &wait);
        router_attempt_start(&r, &m, (size_t)d, 0, now + 1001);
        if (d == 0) probes++;
    }
    CHECK(probes == 1);
    CHECK(router_dep_get(&r, &m.deployments[0])->state == BREAKER_HALF_OPEN);
    /* the probe fails: open again for a cooldown */
    router_attempt_done(&r, &m, 0, OUTCOME_RETRY, -1, 0, now + 1100);
    CHECK(router_dep_get(&r, &m.deployments[0])->state == BREAKER_OPEN);
    CHECK(router_pick(&r, &m, 0, now + 1500, &wait) == 1);
    /* the next probe passes: closed, traffic returns */
    int d;
    do { d = router_pick(&r, &m, 0, now + 2200, &wait); router_attempt_start(&r, &m, (size_t)d, 0, now + 2200); } while (d != 0);
    router_attempt_done(&r, &m, 0, OUTCOME_OK, 5, 0, now + 2210);
    CHECK(router_dep_get(&r, &m.deployments[0])->state == BREAKER_CLOSED);
    int zero = 0;
    for (int i = 0; i < 20; i++) zero += router_pick(&r, &m, 0, now + 2300, &wait) == 0;
    CHECK(zero >= 9 && zero <= 11);
    CHECK(router_dep_get(&r, &m.deployments[0])->opens == 2);
    CHECK(r.breaker_skips > 50);
    int n = 0;
    router_each_dep(&r, count_dep, &n);
    CHECK(n == 2);
    router_free(&r);
    free_model(&m);
}

static void test_breaker_failure_ratio_and_client_errors(void)
{
    gw_model m = make_model("c", "weighted", NULL, 1);
    m.policy.breaker_failures = 1000;
    m.policy.breaker_ratio = 0.5;
    m.policy.breaker_min_requests = 20;
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    router_dep *s = router_dep_get(&r, &m.deployments[0]);
    /* the client's own errors and 429s never open it */
    for (int i = 0; i < 50; i++) router_attempt_done(&r, &m, 0, OUTCOME_CLIENT, -1, 0, 100);
    for (int i = 0; i < 50; i++) router_attempt_done(&r, &m, 0, OUTCOME_RETRY, -1, 1000, 100);
    CHECK(s->state == BREAKER_CLOSED);
    /* alternate ok/fail: ratio 0.5 reached at 20 requests in the window */
    for (int i = 0; i < 18; i++) router_attempt_done(&r, &m, 0, i % 2 ? OUTCOME_RETRY : OUTCOME_OK, 1, 0, 20000 + i);
    CHECK(s->state == BREAKER_CLOSED);
    router_attempt_done(&r, &m, 0, OUTCOME_OK, 1, 0, 20020);
    router_attempt_done(&r, &m, 0, OUTCOME_RETRY, 1, 0, 20021);
    CHECK(s->state == BREAKER_OPEN);
    long wait = 0;
    CHECK(router_pick(&r, &m, 0, 20100, &wait) == -1 && wait == 0);   /* nothing to wait for: fail fast */
    router_free(&r);
    free_model(&m);
}

static void test_retry_after_holds(void)
{
    gw_model m = make_model("d", "weighted", NULL, 2);
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    long wait;
    router_attempt_done(&r, &m, 0, OUTCOME_RETRY, -1, 2000, 5000);
    for (int i = 0; i < 10; i++) CHECK(router_pick(&r, &m, 0, 6000, &wait) == 1);
    router_attempt_done(&r, &m, 1, OUTCOME_RETRY, -1, 500, 6000);
    CHECK(router_pick(&r, &m, 0, 6100, &wait) == -1 && wait == 400);   /* deployment 1 frees first */
    CHECK(router_pick(&r, &m, 0, 7001, &wait) >= 0);
    CHECK(router_retry_after_ms("2") == 2000);
    CHECK(router_retry_after_ms(" 0") == 0);
    CHECK(router_retry_after_ms("1.5") == 1500);
    CHECK(router_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT") == 1000);
    CHECK(router_retry_after_ms(NULL) == 0);
    CHECK(router_retry_after_ms("99999999999999999999") == 86400000);
    router_free(&r);
    free_model(&m);
}

static void test_least_latency_moves(void)
{
    gw_model m = make_model("e", "least_latency", NULL, 2);
    router_t r;
    CHECK(router_init(&r, 7, 1) == 0);
    long wait;
    int64_t now = 1000;
    double lat[2] = { 50, 80 };
    int to0 = 0;
    for (int i = 0; i < 400; i++, now += 10) {
        if (i == 200) lat[0] = 400;   /* deployment 0 slows down */
        int d = router_pick(&r, &m, 0, now, &wait);
        router_attempt_start(&r, &m, (size_t)d, 0, now);
        router_attempt_done(&r, &m, (size_t)d, OUTCOME_OK, lat[d], 0, now);
        if (i >= 100 && i < 200) to0 += d == 0;
        if (i == 199) { CHECK(to0 > 85); to0 = 0; }
        if (i >= 230) to0 += d == 0;
    }
    CHECK(to0 < 170 * 10 / 100);   /* after the slowdown, under 10% still goes to the slow one */
    router_free(&r);
    free_model(&m);
}

static void test_least_cost_and_usage(void)
{
    gw_model m = make_model("f", "least_cost", NULL, 3);
    m.deployments[0].price = (gw_price){ 2.5, 1.25, 10 };
    m.deployments[1].price = (gw_price){ 0.15, 0.075, 0.6 };
    m.deployments[2].price = (gw_price){ 0.8, 0.08, 4 };
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    long wait;
    CHECK(router_pick(&r, &m, 0, 1, &wait) == 1);
    CHECK(router_pick(&r, &m, 1u << 1, 1, &wait) == 2);   /* tried the cheapest: next cheapest */
    m.policy.breaker_failures = 1;
    router_attempt_done(&r, &m, 1, OUTCOME_RETRY, -1, 0, 1);
    CHECK(router_pick(&r, &m, 0, 2, &wait) == 2);          /* cheapest is broken */
    router_free(&r);
    free_model(&m);

    gw_model u = make_model("g", "usage", NULL, 2);
    u.strategy_id = STRATEGY_USAGE;
    u.deployments[0].rpm_limit = 100;
    u.deployments[1].rpm_limit = 50;
    CHECK(router_init(&r, 1, 1) == 0);
    int64_t now = 60000 * 10;
    long got[2] = { 0 };
    for (int i = 0; i < 120; i++) {
        int d = router_pick(&r, &u, 0, now, &wait);
        router_attempt_start(&r, &u, (size_t)d, 10, now);
        got[d]++;
    }
    /* most headroom first: both end near their caps' shares (100:50) */
    CHECK(got[0] >= 78 && got[0] <= 82);
    /* two workers: each fills at half the caps */
    u.deployments[1].rpm_limit = 50;
    router_t r2;
    CHECK(router_init(&r2, 1, 2) == 0);
    got[0] = got[1] = 0;
    for (int i = 0; i < 60; i++) {
        int d = router_pick(&r2, &u, 0, now, &wait);
        router_attempt_start(&r2, &u, (size_t)d, 10, now);
        got[d]++;
    }
    CHECK(got[0] >= 38 && got[0] <= 42);
    router_dep *s0 = router_dep_get(&r2, &u.deployments[0]);
    CHECK(s0 && s0->req_cur == got[0]);
    router_free(&r2);
    /* tokens: a tpm cap fills from reported usage */
    u.deployments[1].rpm_limit = -1;
    u.deployments[1].tpm_limit = 1000;
    router_add_tokens(&r, &u, 1, 5000, now);
    CHECK(router_pick(&r, &u, 0, now, &wait) == 0);
    router_free(&r);
    free_model(&u);
}

static void test_retry_budget(void)
{
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    for (int i = 0; i < 100; i++) router_begin(&r);
    int granted = 0;
    for (int i = 0; i < 100; i++) granted += router_may_retry(&r);
    CHECK(granted == 20);                /* 20% of 100 active */
    CHECK(r.budget_denied == 80);
    router_retry_done(&r);
    CHECK(router_may_retry(&r) == 1);
    for (int i = 0; i < 100; i++) router_end(&r);
    for (int i = 0; i < 30; i++) router_retry_done(&r);
    granted = 0;
    for (int i = 0; i < 10; i++) granted += router_may_retry(&r);
    CHECK(granted == 10);                /* the floor when little is active */
    router_free(&r);
}

static void test_classify(void)
{
    CHECK(router_classify(UPSTREAM_ERR_CONNECT, 0, NULL, 0) == OUTCOME_RETRY);
    CHECK(router_classify(UPSTREAM_ERR_TIMEOUT_FIRST_BYTE, 0, NULL, 0) == OUTCOME_RETRY);
    CHECK(router_classify(UPSTREAM_ERR_IO, 200, NULL, 0) == OUTCOME_RETRY);
    CHECK(router_classify(UPSTREAM_OK, 503, "", 0) == OUTCOME_RETRY);
    CHECK(router_classify(UPSTREAM_OK, 500, "", 0) == OUTCOME_RETRY);
    CHECK(router_classify(UPSTREAM_OK, 429, "", 0) == OUTCOME_RETRY);
    CHECK(router_classify(UPSTREAM_OK, 200, "{}", 2) == OUTCOME_OK);
    const char *b = "{\"error\":{\"message\":\"bad temperature\"}}";
    CHECK(router_classify(UPSTREAM_OK, 400, b, strlen(b)) == OUTCOME_CLIENT);
    CHECK(router_classify(UPSTREAM_OK, 401, "", 0) == OUTCOME_CLIENT);
    CHECK(router_classify(UPSTREAM_OK, 404, "", 0) == OUTCOME_CLIENT);
    b = "{\"error\":{\"message\":\"This model's maximum context length is 8192 tokens\",\"code\":\"context_length_exceeded\"}}";
    CHECK(router_classify(UPSTREAM_OK, 400, b, strlen(b)) == OUTCOME_CONTEXT);
    b = "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"prompt is too long: 210000 tokens\"}}";
    CHECK(router_classify(UPSTREAM_OK, 400, b, strlen(b)) == OUTCOME_CONTEXT);
}

static void test_backoff(void)
{
    router_t r;
    CHECK(router_init(&r, 3, 1) == 0);
    gw_route_policy p;
    config_route_policy_defaults(&p);
    p.backoff_base_ms = 100;
    p.backoff_max_ms = 1000;
    for (int i = 0; i < 200; i++) {
        long a = router_backoff_ms(&r, &p, 1, 0), b = router_backoff_ms(&r, &p, 3, 0), c = router_backoff_ms(&r, &p, 9, 0);
        CHECK(a >= 50 && a <= 100);
        CHECK(b >= 200 && b <= 400);
        CHECK(c >= 500 && c <= 1000);
        CHECK(router_backoff_ms(&r, &p, 1, 3000) == 3000);
    }
    router_free(&r);
}

static void test_table_survives_many_deployments(void)
{
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    gw_model m = make_model("h", "weighted", NULL, 60);
    gw_model m2 = make_model("h2", "weighted", NULL, 60);
    for (size_t i = 0; i < 60; i++) {
        router_dep *s = router_dep_get(&r, &m.deployments[i]);
        CHECK(s != NULL);
        if (s) s->attempts = i + 1;
        CHECK(router_dep_get(&r, &m2.deployments[i]) != NULL);
    }
    CHECK(r.n == 120);
    for (size_t i = 0; i < 60; i++) CHECK(router_dep_get(&r, &m.deployments[i])->attempts == i + 1);
    CHECK(router_dep_get(&r, &m2.deployments[3])->attempts == 0);   /* another alias: its own state */
    router_free(&r);
    free_model(&m);
    free_model(&m2);
}

static void test_p95(void)
{
    gw_model m = make_model("p", "weighted", NULL, 1);
    router_t r;
    CHECK(router_init(&r, 1, 1) == 0);
    CHECK(router_p95_ms(&r, &m.deployments[0]) == 0);   /* too few samples: no hedge delay from it */
    for (int i = 1; i <= 100; i++) router_attempt_done(&r, &m, 0, OUTCOME_OK, i, 0, 1);
    double p = router_p95_ms(&r, &m.deployments[0]);   /* the last 64 samples: 37..100 */
    CHECK(p >= 96 && p <= 98);
    router_attempt_done(&r, &m, 0, OUTCOME_RETRY, 5000, 0, 1);   /* failures are no latency sample */
    CHECK(router_p95_ms(&r, &m.deployments[0]) == p);
    router_free(&r);
    free_model(&m);
}

/* ns per decision: pick + attempt start + done, as a request does. */
static void bench(const char *strategy)
{
    static const int w[] = { 3, 2, 1, 1 };
    gw_model m = make_model("bench", strategy, w, 4);
    router_t r;
    if (router_init(&r, 9, 1) < 0) { free_model(&m); return; }
    enum { N = 200000 };
    struct timespec t0, t1;
    long wait;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++) {
        int d = router_pick(&r, &m, 0, 1000 + i / 1000, &wait);
        router_attempt_start(&r, &m, (size_t)d, 100, 1000 + i / 1000);
        router_attempt_done(&r, &m, (size_t)d, OUTCOME_OK, 20 + d, 0, 1000 + i / 1000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / N;
    fprintf(stderr, "  bench: %-13s %.0f ns/decision (4 deployments)\n", strategy, ns);
    router_free(&r);
    free_model(&m);
}

static void test_bench(void)
{
    bench("weighted");
    bench("least_latency");
    bench("least_cost");
    bench("usage");
}

int main(void)
{
    RUN(test_weighted_split_within_2pct);
    RUN(test_breaker_opens_probes_and_closes);
    RUN(test_breaker_failure_ratio_and_client_errors);
    RUN(test_retry_after_holds);
    RUN(test_least_latency_moves);
    RUN(test_least_cost_and_usage);
    RUN(test_retry_budget);
    RUN(test_classify);
    RUN(test_backoff);
    RUN(test_table_survives_many_deployments);
    RUN(test_p95);
    RUN(test_bench);
    TEST_MAIN_END();
}
