/* ratelimit: lease arithmetic, window math and the stated bound, with a fake
 * shared store in place of Redis (answers queued until the test delivers them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keytab.h"
#include "ratelimit.h"
#include "redislink.h"
#include "rlredis.h"
#include "test.h"

#define MAXQ 4096
typedef struct pending { ratelimit *rl; uint64_t token; int kind; int64_t window, want, limit; } pending;

/* One subject's counters, per kind and window, and the grant rule of the Lua script. */
static struct {
    int     down;                 /* the lease fn says "unavailable" */
    int     defer;                /* answers wait for deliver() */
    int     fail_answers;         /* deliver() answers with an error */
    int64_t counter[2], window[2];
    pending q[MAXQ];
    int     nq, calls;
} S;

static void store_reset(void) { memset(&S, 0, sizeof S); S.window[0] = S.window[1] = -1; }

static void answer(const pending *p)
{
    if (S.fail_answers) { ratelimit_lease_done(p->rl, p->token, -1, 0); return; }
    if (S.window[p->kind] != p->window) { S.window[p->kind] = p->window; S.counter[p->kind] = 0; }
    int64_t prior = S.counter[p->kind];
    S.counter[p->kind] += p->want;
    int64_t g = prior < p->limit ? (p->want < p->limit - prior ? p->want : p->limit - prior) : 0;
    int64_t total = S.counter[p->kind] < p->limit ? S.counter[p->kind] : p->limit;
    ratelimit_lease_done(p->rl, p->token, g, total);
}

/* ud: where the owning limiter's pointer is stored (it does not exist yet at ratelimit_new). */
static int fake_lease(void *ud, const char *sid, int kind, int64_t window, int64_t want, int64_t limit, uint64_t token)
{
    (void)sid;
    S.calls++;
    if (S.down) return -1;
    pending p = { *(ratelimit **)ud, token, kind, window, want, limit };
    if (S.defer && S.nq < MAXQ) { S.q[S.nq++] = p; return 0; }
    answer(&p);
    return 0;
}

static void deliver(void)
{
    int n = S.nq;
    S.nq = 0;
    for (int i = 0; i < n; i++) answer(&S.q[i]);
}

#define T0 (1000LL * 60000 + 5000)   /* 5 s into minute 1000 */
#define MAXW 8
static ratelimit *W[MAXW];

static void mk(int workers, int node_workers)
{
    for (int i = 0; i < workers; i++) W[i] = ratelimit_new(64, node_workers, fake_lease, &W[i]);
}
static void rm(int workers) { for (int i = 0; i < workers; i++) { ratelimit_free(W[i]); W[i] = NULL; } }

static void test_slice(void)
{
    ratelimit *rl = ratelimit_new(64, 2, NULL, NULL);
    CHECK(ratelimit_slice(rl, 100) == 6);
    CHECK(ratelimit_slice(rl, 3) == 1);
    CHECK(ratelimit_slice(rl, 0) == 1);
    CHECK(ratelimit_slice(rl, 160000) == 10000);
    ratelimit_free(rl);
}

/* No store: every lease is local, limit / node_workers per worker and window. */
static void test_local_only(void)
{
    ratelimit *rl = ratelimit_new(64, 2, NULL, NULL);
    rl_ticket t;
    int ok = 0;
    for (int i = 0; i < 100; i++) ok += ratelimit_admit(rl, "k:a", 10, -1, 0, T0, &t);
    CHECK(ok == 5);
    CHECK(t.refused == 1 + RL_RPM);
    CHECK(t.retry_after == 55);         /* seconds to the next minute */
    CHECK(t.limit[RL_RPM] == 10 && t.remaining[RL_RPM] == 0 && t.limit[RL_TPM] == -1);
    ok = 0;                             /* the next window starts afresh */
    for (int i = 0; i < 100; i++) ok += ratelimit_admit(rl, "k:a", 10, -1, 0, T0 + 60000, &t);
    CHECK(ok == 5);
    CHECK(ratelimit_admit(rl, "k:b", -1, -1, 0, T0, &t) == 1 && !t.active);
    ratelimit_free(rl);
}

static void test_window_math(void)
{
    ratelimit *rl = ratelimit_new(64, 1, NULL, NULL);
    rl_ticket t;
    CHECK(ratelimit_admit(rl, "k:w", 1, -1, 0, 60000LL * 7 + 59999, &t) == 1);
    CHECK(ratelimit_admit(rl, "k:w", 1, -1, 0, 60000LL * 7 + 59999, &t) == 0);
    CHECK(t.retry_after == 1);          /* 1 ms left: rounds up, never 0 */
    CHECK(ratelimit_admit(rl, "k:w", 1, -1, 0, 60000LL * 8, &t) == 1);   /* new minute */
    CHECK(ratelimit_admit(rl, "k:w", 1, -1, 0, 60000LL * 8 + 1, &t) == 0);
    CHECK(t.retry_after == 60);
    ratelimit_free(rl);
}

/* Workers on one store, requests interleaved, answers either immediate or
 * held back (a burst inside one round trip): admitted stays within
 * [limit, limit + W * slice]. */
static int run_shared(int workers, int64_t limit, int defer, int requests)
{
    store_reset();
    S.defer = defer;
    mk(workers, workers);
    rl_ticket t;
    int ok = 0;
    for (int i = 0; i < requests; i++) {
        ok += ratelimit_admit(W[i % workers], "k:s", limit, -1, 0, T0, &t);
        if (defer && i % 7 == 6) deliver();   /* answers arrive now and then */
    }
    deliver();
    for (int i = 0; i < requests; i++) ok += ratelimit_admit(W[i % workers], "k:s", limit, -1, 0, T0 + 1, &t);
    rm(workers);
    return ok;
}

static void test_shared_bound(void)
{
    int limits[] = { 1, 7, 100, 1000, 12345 };
    for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
        for (int workers = 1; workers <= 4; workers++) {
            for (int defer = 0; defer <= 1; defer++) {
                int64_t lim = limits[k];
                ratelimit *probe = ratelimit_new(64, workers, NULL, NULL);
                int64_t slice = ratelimit_slice(probe, lim);
                ratelimit_free(probe);
                int ok = run_shared(workers, lim, defer, (int)lim * 2 + 50);
                if (ok < lim || ok > lim + workers * slice) {
                    fprintf(stderr, "  limit %lld workers %d defer %d: admitted %d (slice %lld)\n",
                            (long long)lim, workers, defer, ok, (long long)slice);
                    CHECK(0);
                }
            }
        }
    }
}

/* The store's total is what the remaining header estimates from. */
static void test_remaining(void)
{
    store_reset();
    mk(1, 1);
    rl_ticket t;
    CHECK(ratelimit_admit(W[0], "k:r", 100, -1, 0, T0, &t) == 1);
    /* one lease of slice 12 (+1 debt): the store saw 13, we used 1 */
    CHECK(t.remaining[RL_RPM] == 100 - 13 + 12);
    rm(1);
}

/* TPM: admitted on the estimate, then corrected with the actual usage. */
static void test_tpm_settle(void)
{
    store_reset();
    mk(1, 1);
    rl_ticket t;
    CHECK(ratelimit_admit(W[0], "k:t", -1, 1000, 400, T0, &t) == 1);
    CHECK(t.charged == 400 && t.limit[RL_TPM] == 1000);
    ratelimit_settle(W[0], &t, 50, T0 + 10);                  /* used 50: 350 given back */
    int ok = 0;
    for (int i = 0; i < 100; i++) ok += ratelimit_admit(W[0], "k:t", -1, 1000, 100, T0 + 20, &t);
    /* 950 left in the window, slice 125 of credit at most: 9 or 10 more */
    CHECK(ok >= 9 && ok <= 10);
    CHECK(t.refused == 1 + RL_TPM);
    /* settling in another window touches nothing */
    rl_ticket old = t;
    old.refused = 0; old.charged = 100;
    ratelimit_settle(W[0], &old, 0, T0 + 60000);
    CHECK(ratelimit_admit(W[0], "k:t", -1, 1000, 100, T0 + 30, &t) == 0);
    rm(1);
}

/* RPM is checked first; a TPM refusal gives the request back to RPM. */
static void test_order(void)
{
    store_reset();
    mk(1, 1);
    rl_ticket t;
    CHECK(ratelimit_admit(W[0], "k:o", 2, 1000000, 5000000, T0, &t) == 0);
    CHECK(t.refused == 1 + RL_TPM);
    CHECK(ratelimit_admit(W[0], "k:o", 2, 1000000, 10, T0, &t) == 1);
    CHECK(ratelimit_admit(W[0], "k:o", 2, 1000000, 10, T0, &t) == 1);
    CHECK(ratelimit_admit(W[0], "k:o", 2, 1000000, 10, T0, &t) == 0);
    CHECK(t.refused == 1 + RL_RPM);
    rm(1);
}

/* Store down, or its answers are errors: local share, never more. */
static void test_store_failures(void)
{
    store_reset();
    S.down = 1;
    mk(2, 2);
    rl_ticket t;
    int ok = 0;
    for (int i = 0; i < 300; i++) ok += ratelimit_admit(W[i % 2], "k:d", 100, -1, 0, T0, &t);
    CHECK(ok == 100);                   /* 50 per worker */
    rm(2);

    store_reset();
    S.defer = 1; S.fail_answers = 1;
    mk(2, 2);
    ok = 0;
    for (int i = 0; i < 300; i++) { ok += ratelimit_admit(W[i % 2], "k:e", 100, -1, 0, T0, &t); deliver(); }
    CHECK(ok >= 100 && ok <= 100 + 2 * 6);
    rm(2);
}

/* An answer for a lease of a past window, or for an evicted slot, is ignored. */
static void test_stale_answers(void)
{
    store_reset();
    S.defer = 1;
    mk(1, 1);
    rl_ticket t;
    CHECK(ratelimit_admit(W[0], "k:x", 100, -1, 0, T0, &t) == 1);   /* on credit */
    CHECK(S.nq == 1);
    pending old = S.q[0];
    S.nq = 0;
    CHECK(ratelimit_admit(W[0], "k:x", 100, -1, 0, T0 + 60000, &t) == 1);   /* new window, new lease */
    answer(&old);                       /* late: ignored */
    rl_stats st;
    ratelimit_stats(W[0], &st);
    CHECK(st.stale_replies == 1);
    ratelimit_lease_done(W[0], (uint64_t)1 << 40, 5, 5);   /* slot out of range */
    ratelimit_stats(W[0], &st);
    CHECK(st.stale_replies == 2);
    rm(1);
}

/* More subjects than slots: evicts, stays bounded, never crashes. */
static void test_eviction(void)
{
    ratelimit *rl = ratelimit_new(64, 1, NULL, NULL);
    rl_ticket t;
    char sid[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(sid, sizeof sid, "k:%d", i);
        CHECK(ratelimit_admit(rl, sid, 10, 100, 5, T0 + i, &t) == 1);
    }
    rl_stats st;
    ratelimit_stats(rl, &st);
    CHECK(st.evictions > 0);
    /* a too-long id is not limited rather than truncated into another's */
    char longid[100];
    memset(longid, 'x', sizeof longid - 1); longid[sizeof longid - 1] = '\0';
    CHECK(ratelimit_admit(rl, longid, 0, -1, 0, T0, &t) == 1 && !t.active);
    ratelimit_free(rl);
}

static void test_url(void)
{
    char host[64]; int port, db;
    CHECK(redislink_parse_url("redis://127.0.0.1:6390/0", host, sizeof host, &port, &db) == 0);
    CHECK_STR(host, "127.0.0.1"); CHECK(port == 6390 && db == 0);
    CHECK(redislink_parse_url("redis://cache", host, sizeof host, &port, &db) == 0);
    CHECK_STR(host, "cache"); CHECK(port == 6379 && db == 0);
    CHECK(redislink_parse_url("redis://h:1/3", host, sizeof host, &port, &db) == 0 && db == 3);
    CHECK(redislink_parse_url("http://h:1", host, sizeof host, &port, &db) < 0);
    CHECK(redislink_parse_url("redis://:pw@h:1", host, sizeof host, &port, &db) < 0);
    CHECK(redislink_parse_url("redis://h:0", host, sizeof host, &port, &db) < 0);
    CHECK(redislink_parse_url("redis://h:99999", host, sizeof host, &port, &db) < 0);
    CHECK(redislink_parse_url("redis://h:12x", host, sizeof host, &port, &db) < 0);
    CHECK(redislink_parse_url("redis://", host, sizeof host, &port, &db) < 0);
    CHECK(redislink_parse_url(NULL, host, sizeof host, &port, &db) < 0);
}

/* A team's refusal gives back what the key was charged (request.c's order). */
static void test_release(void)
{
    store_reset();
    mk(1, 1);
    rl_ticket k, t;
    for (int i = 0; i < 50; i++) {
        CHECK(ratelimit_admit(W[0], "k:rel", 10, 1000, 40, T0, &k) == 1);
        ratelimit_release(W[0], &k, T0);
        CHECK(k.charged == 0 && k.rpm_charged == 0);
        ratelimit_release(W[0], &k, T0);   /* twice: nothing more */
    }
    /* nothing was spent: the whole limit is still there */
    int ok = 0;
    for (int i = 0; i < 10; i++) ok += ratelimit_admit(W[0], "k:rel", 10, 1000, 40, T0, &t);
    CHECK(ok == 10);
    CHECK(ratelimit_admit(W[0], "k:rel", 10, 1000, 40, T0, &t) == 0 && t.refused == 1 + RL_RPM);
    rm(1);
}

/* The key table exposes its team's limits; a team it names but that was
 * never sent has none (not a limit of 0). */
static void test_keytab_team_limits(void)
{
    keytab *tab = keytab_new(0);
    uint8_t team_a[16] = { 1 }, team_b[16] = { 2 };
    keytab_team ta = { .name = "a", .rpm_limit = 7, .tpm_limit = -1, .budget_usd = -1 };
    memcpy(ta.id, team_a, 16);
    CHECK(keytab_team_upsert(tab, &ta) == 0);
    keytab_key k1 = { .has_id = 1, .name = "k1", .team_id = team_a, .all_models = 1, .rpm_limit = -1,
                      .tpm_limit = 5, .budget_usd = -1 };
    keytab_key k2 = { .has_id = 1, .name = "k2", .team_id = team_b, .all_models = 1, .rpm_limit = -1,
                      .tpm_limit = -1, .budget_usd = -1 };
    k1.id[0] = 1; k2.id[0] = 2;
    memset(k1.sha256, 0x11, 32); memset(k2.sha256, 0x22, 32);
    CHECK(keytab_upsert(tab, &k1, NULL) == 0 && keytab_upsert(tab, &k2, NULL) == 0);
    gw_key v;
    CHECK(keytab_find(tab, k1.sha256, 0, &v) == 1);
    CHECK(v.team_rpm_limit == 7 && v.team_tpm_limit == -1 && v.tpm_limit == 5 && v.team_id[0]);
    CHECK(keytab_find(tab, k2.sha256, 0, &v) == 1);
    CHECK(v.team_rpm_limit == -1 && v.team_tpm_limit == -1);
    keytab_unref(tab);
}

int main(void)
{
    RUN(test_slice);
    RUN(test_local_only);
    RUN(test_window_math);
    RUN(test_shared_bound);
    RUN(test_remaining);
    RUN(test_tpm_settle);
    RUN(test_order);
    RUN(test_store_failures);
    RUN(test_stale_answers);
    RUN(test_eviction);
    RUN(test_url);
    RUN(test_release);
    RUN(test_keytab_team_limits);
    TEST_MAIN_END();
}
