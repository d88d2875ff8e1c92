/* budget: calendar periods, the node's own count, and the refusal. */
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "budget.h"
#include "test.h"

/* 2026-11-25 (a Wednesday) 16:47:31 UTC */
#define NOW ((time_t)1795625251)

static void test_periods(void)
{
    CHECK(budget_period_start(KT_PERIOD_DAILY, NOW) == 1795564800);     /* 2026-11-25 00:00 */
    CHECK(budget_period_end(KT_PERIOD_DAILY, NOW) == 1795651200);       /* 2026-11-26 00:00 */
    CHECK(budget_period_start(KT_PERIOD_WEEKLY, NOW) == 1795392000);    /* Monday 2026-11-23 */
    CHECK(budget_period_end(KT_PERIOD_WEEKLY, NOW) == 1795996800);      /* Monday 2026-11-30 */
    CHECK(budget_period_start(KT_PERIOD_MONTHLY, NOW) == 1793491200);   /* 2026-11-01 */
    CHECK(budget_period_end(KT_PERIOD_MONTHLY, NOW) == 1796083200);     /* 2026-12-01 */
    time_t dec = 1798675200 + 3600;                                      /* 2026-12-31 01:00 */
    CHECK(budget_period_start(KT_PERIOD_MONTHLY, dec) == 1796083200);
    CHECK(budget_period_end(KT_PERIOD_MONTHLY, dec) == 1798761600);     /* 2027-01-01 */
    time_t feb29 = 1709164800;                                           /* 2024-02-29 00:00, leap year */
    CHECK(budget_period_start(KT_PERIOD_MONTHLY, feb29) == 1706745600);  /* 2024-02-01 */
    CHECK(budget_period_end(KT_PERIOD_MONTHLY, feb29) == 1709251200);    /* 2024-03-01 */
    CHECK(budget_period_start(KT_PERIOD_WEEKLY, 1709164800) == 1708905600);   /* Monday 2024-02-26 */
    CHECK(budget_period_start(KT_PERIOD_TOTAL, NOW) == 0);
    CHECK(budget_period_end(KT_PERIOD_TOTAL, NOW) == INT64_MAX);
}

static gw_key key_with(double limit, double spent, int period)
{
    gw_key k;
    memset(&k, 0, sizeof k);
    k.budget = (gw_budget){ .limit_usd = limit, .spent_usd = spent, .period = period, .ident = 0x1235 };
    k.team_budget = (gw_budget){ .limit_usd = -1 };
    return k;
}

static void test_no_budget_always_passes(void)
{
    budget_local *b = budget_local_new();
    gw_key k = key_with(-1, 0, KT_PERIOD_NONE);
    budget_ticket t;
    budget_refusal why;
    CHECK(budget_check(b, &k, NOW, &t, &why) == 1);
    budget_charge(b, &t, 1000000000000LL, NOW);
    CHECK(budget_check(b, &k, NOW, &t, &why) == 1);
    budget_local_free(b);
}

static void test_own_count_stops_at_the_crossing(void)
{
    budget_local *b = budget_local_new();
    gw_key k = key_with(0.01, 0.004, KT_PERIOD_DAILY);   /* the control plane saw 0.004 spent */
    budget_ticket t;
    budget_refusal why;
    int admitted = 0;
    for (int i = 0; i < 100 && budget_check(b, &k, NOW, &t, &why); i++) {
        admitted++;
        budget_charge(b, &t, 10000000, NOW);              /* 0.001 USD each */
    }
    CHECK(admitted == 6);                                 /* 0.004 + 6 x 0.001 reaches 0.01 */
    CHECK(why.team == 0 && why.limit_usd == 0.01 && fabs(why.spent_usd - 0.01) < 1e-9);
    CHECK(why.retry_after_s == 1795651200 - NOW);         /* until midnight UTC */
    /* a newer figure from the control plane starts the own count over */
    k.budget.spent_usd = 0.007;
    CHECK(budget_check(b, &k, NOW, &t, &why) == 1);
    budget_charge(b, &t, 30000000, NOW);
    CHECK(budget_check(b, &k, NOW, &t, &why) == 0);
    /* the next day: the period rolled, the old count no longer applies */
    k.budget.spent_usd = 0;
    CHECK(budget_check(b, &k, NOW + 86400, &t, &why) == 1);
    budget_local_free(b);
}

static void test_control_plane_verdict_and_team(void)
{
    budget_local *b = budget_local_new();
    gw_key k = key_with(5, 0, KT_PERIOD_TOTAL);
    budget_ticket t;
    budget_refusal why;
    k.budget.exceeded = 1;
    CHECK(budget_check(b, &k, NOW, &t, &why) == 0);
    CHECK(why.retry_after_s == 3600);                     /* a total budget never resets */
    k.budget.exceeded = 0;
    k.team_budget = (gw_budget){ .limit_usd = 1, .spent_usd = 0.5, .period = KT_PERIOD_MONTHLY, .ident = 0x88 };
    CHECK(budget_check(b, &k, NOW, &t, &why) == 1);
    budget_charge(b, &t, 6000000000LL, NOW);              /* 0.6 USD: crosses the team's, not the key's */
    CHECK(budget_check(b, &k, NOW, &t, &why) == 0);
    CHECK(why.team == 1 && why.period == KT_PERIOD_MONTHLY && why.retry_after_s == 1796083200 - NOW);
    /* another key of the same team shares the team's count */
    gw_key k2 = key_with(-1, 0, KT_PERIOD_NONE);
    k2.team_budget = k.team_budget;
    CHECK(budget_check(b, &k2, NOW, &t, &why) == 0);
    budget_local_free(b);
}

static void test_hostile_figures(void)
{
    budget_local *b = budget_local_new();
    gw_key k = key_with(1, NAN, KT_PERIOD_DAILY);
    budget_ticket t;
    budget_refusal why;
    CHECK(budget_check(b, &k, NOW, &t, &why) == 1);       /* NaN spend: nothing known */
    k.budget.spent_usd = 1e300;                           /* beyond the tag's range: still refused */
    CHECK(budget_check(b, &k, NOW, &t, &why) == 0);
    k = key_with(NAN, 0, KT_PERIOD_DAILY);                /* NaN limit: no budget */
    CHECK(budget_check(b, &k, NOW, &t, &why) == 1);
    budget_local_free(b);
}

static void test_shared_node_table(void)
{
    CHECK(budget_node_init() == 0);
    budget_local *w1 = budget_local_new(), *w2 = budget_local_new();
    gw_key k = key_with(0.01, 0, KT_PERIOD_DAILY);
    budget_ticket t;
    budget_refusal why;
    CHECK(budget_check(w1, &k, NOW, &t, &why) == 1);
    budget_charge(w1, &t, 60000000, NOW);                 /* worker 1 spends 0.006 */
    CHECK(budget_check(w2, &k, NOW, &t, &why) == 1);
    budget_charge(w2, &t, 60000000, NOW);                 /* worker 2 another 0.006 */
    CHECK(budget_check(w1, &k, NOW, &t, &why) == 0);      /* each sees the node's 0.012 */
    budget_local_free(w1);
    budget_local_free(w2);
}

int main(void)
{
    RUN(test_periods);
    RUN(test_no_budget_always_passes);
    RUN(test_own_count_stops_at_the_crossing);
    RUN(test_control_plane_verdict_and_team);
    RUN(test_hostile_figures);
    RUN(test_shared_node_table);
    TEST_MAIN_END();
}
