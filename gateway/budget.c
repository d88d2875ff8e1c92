#include "budget.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"

#define TABLE_CAP (1u << 17)   /* slots; at most half are used: 65,536 budgeted keys and teams per node */
#define TOTAL_RETRY_S 3600     /* a total budget never resets: ask again in an hour */
#define BASE_UNITS 1e6         /* the control plane's figure in the tag: micro-USD, 40 bits (1.1M USD) */
#define BASE_MAX   ((1ull << 40) - 1)

/* The node's own spend for one key or team since the control plane's figure
 * (the low 40 bits of `tag`, micro-USD) for the period starting on the day
 * in its high 24 bits. Another figure or period starts the count over: the
 * control plane's figure includes whatever was counted before it. ident 0:
 * free slot. */
typedef struct own_spend {
    _Atomic uint64_t ident;
    _Atomic uint64_t tag;
    _Atomic int64_t  spent_e10;
    uint64_t         pad;
} own_spend;
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "shared-memory counters need lock-free 64-bit atomics");

typedef struct spend_table {
    own_spend        slot[TABLE_CAP];
    _Atomic uint32_t used;
    _Atomic int      warned;
} spend_table;

struct budget_local {
    spend_table *t;
    int          own;        /* 1: private table, freed with the handle */
};

static spend_table *g_node;  /* set by the master before fork, inherited by workers */

int budget_node_init(void)
{
    void *m = mmap(NULL, sizeof(spend_table), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return -1;
    g_node = m;   /* anonymous mappings are zero-filled: every slot free */
    return 0;
}

budget_local *budget_local_new(void)
{
    budget_local *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    if (g_node) { b->t = g_node; return b; }
    if (!(b->t = calloc(1, sizeof *b->t))) { free(b); return NULL; }
    b->own = 1;
    return b;
}

void budget_local_free(budget_local *b)
{
    if (!b) return;
    if (b->own) free(b->t);
    free(b);
}

/* ---- calendar (UTC, proleptic Gregorian) ---- */

/* Days since 1970-01-01 of y-m-01. */
static int64_t days_from_civil(int64_t y, int m)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5;   /* day 1 of the month */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t month_start(time_t now, int add)
{
    struct tm tm;
    if (!gmtime_r(&now, &tm)) return 0;
    int64_t y = tm.tm_year + 1900;
    int m = tm.tm_mon + 1 + add;
    if (m > 12) { m -= 12; y++; }
    return days_from_civil(y, m) * 86400;
}

int64_t budget_period_start(int period, time_t now)
{
    int64_t day = (int64_t)now / 86400;
    switch (period) {
    case KT_PERIOD_DAILY: return day * 86400;
    case KT_PERIOD_WEEKLY: return (day - (day + 3) % 7) * 86400;   /* 1970-01-01 was a Thursday */
    case KT_PERIOD_MONTHLY: return month_start(now, 0);
    default: return 0;
    }
}

int64_t budget_period_end(int period, time_t now)
{
    switch (period) {
    case KT_PERIOD_DAILY: return budget_period_start(period, now) + 86400;
    case KT_PERIOD_WEEKLY: return budget_period_start(period, now) + 7 * 86400;
    case KT_PERIOD_MONTHLY: return month_start(now, 1);
    default: return INT64_MAX;
    }
}

/* ---- the table: open addressing, linear probing, slots never freed ---- */

static own_spend *find(spend_table *t, uint64_t ident, int create)
{
    if (!ident) return NULL;
    size_t mask = TABLE_CAP - 1;
    for (size_t i = (size_t)(ident * 0x9E3779B97F4A7C15ull >> 40) & mask;; i = (i + 1) & mask) {
        own_spend *s = &t->slot[i];
        uint64_t cur = atomic_load_explicit(&s->ident, memory_order_acquire);
        if (cur == ident) return s;
        if (cur) continue;
        if (!create) return NULL;
        if (atomic_load(&t->used) >= TABLE_CAP / 2) {
            /* more budgeted keys than a node should see: these go uncounted
             * here (the control plane's verdict still stops them) */
            if (!atomic_exchange(&t->warned, 1))
                log_warn("budget: more than %u keys and teams with budgets on this node; the rest are not counted "
                         "locally", TABLE_CAP / 2);
            return NULL;
        }
        uint64_t expect = 0;
        if (atomic_compare_exchange_strong(&s->ident, &expect, ident)) {
            atomic_fetch_add(&t->used, 1);
            return s;
        }
        if (expect == ident) return s;   /* another worker claimed it for the same key */
    }
}

static uint64_t tag_of(const gw_budget *g, int64_t start)
{
    double base = g->spent_usd >= 0 ? g->spent_usd * BASE_UNITS : 0;   /* NaN: 0 */
    uint64_t b = base >= (double)BASE_MAX ? BASE_MAX : (uint64_t)base;
    return (uint64_t)(start / 86400) << 40 | b;
}

/* The spend the node knows for g in the current period, in USD. */
static double known_spend(spend_table *t, const gw_budget *g, int64_t start)
{
    double base = g->spent_usd >= 0 ? g->spent_usd : 0;   /* NaN: nothing known */
    const own_spend *s = find(t, g->ident, 0);
    if (!s || atomic_load(&s->tag) != tag_of(g, start)) return base;
    return base + (double)atomic_load(&s->spent_e10) / 1e10;
}

int budget_check(budget_local *b, const gw_key *k, time_t now, budget_ticket *t, budget_refusal *why)
{
    t->who[0] = k->budget;
    t->who[1] = k->team_budget;
    for (int i = 0; i < 2; i++) {
        const gw_budget *g = &t->who[i];
        if (!(g->limit_usd >= 0)) continue;
        double spent = known_spend(b->t, g, budget_period_start(g->period, now));
        if (g->exceeded || spent >= g->limit_usd) {
            int64_t end = budget_period_end(g->period, now);
            int64_t wait = end == INT64_MAX ? TOTAL_RETRY_S : end - (int64_t)now;
            *why = (budget_refusal){
                .team = i, .limit_usd = g->limit_usd, .spent_usd = spent, .period = g->period,
                .retry_after_s = wait < 1 ? 1 : wait > 31 * 86400 ? 31 * 86400 : (int)wait,
            };
            return 0;
        }
    }
    return 1;
}

void budget_charge(budget_local *b, const budget_ticket *t, int64_t cost_e10, time_t now)
{
    if (cost_e10 <= 0) return;
    for (int i = 0; i < 2; i++) {
        const gw_budget *g = &t->who[i];
        if (!(g->limit_usd >= 0)) continue;
        own_spend *s = find(b->t, g->ident, 1);
        if (!s) continue;
        uint64_t want = tag_of(g, budget_period_start(g->period, now));
        uint64_t cur = atomic_load(&s->tag);
        /* While a delta is being applied workers may briefly disagree on the
         * figure and restart the count more than once: a few requests go
         * uncounted here, never counted twice. */
        if (cur != want && atomic_compare_exchange_strong(&s->tag, &cur, want)) atomic_store(&s->spent_e10, 0);
        atomic_fetch_add(&s->spent_e10, cost_e10);
    }
}
