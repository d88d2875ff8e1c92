/* budget: refuses a key or team whose money for the period is spent.
 *
 * Two sources decide. The control plane aggregates the usage stream; when a
 * key's (or team's) spend reaches its budget it pushes the key with
 * `exceeded` set, and every worker of every node refuses it until the period
 * rolls or the budget is raised. That verdict trails the spend by the usage
 * ship interval + ingestion + one delta, so each worker also counts what it
 * spent itself since the control plane's figure (spent_usd) was sent, and
 * refuses as soon as figure + own count reaches the budget. The own count is
 * per node: a table in shared memory (created by the master before fork,
 * updated with atomics by every worker), so one node stops at the crossing,
 * overshooting by at most what its requests in flight then cost; other
 * nodes stop at the verdict.
 *
 * Periods are calendar periods in UTC, as the control plane computes them
 * (daily, weekly from Monday, monthly, total).
 */
#ifndef GW_BUDGET_H
#define GW_BUDGET_H

#include <stdint.h>
#include <time.h>

#include "keytab.h"

typedef struct budget_local budget_local;

/* What a request needs to charge its cost after the key view is gone. */
typedef struct budget_ticket {
    gw_budget who[2];       /* the key's, the team's; limit_usd < 0: none */
} budget_ticket;

/* What a refusal says. */
typedef struct budget_refusal {
    int    team;            /* 1: the team's budget */
    double limit_usd, spent_usd;
    int    period;          /* KT_PERIOD_* */
    int    retry_after_s;   /* until the period resets (an hour for total budgets) */
} budget_refusal;

/* Master, before forking workers: the node's shared table. Without it each
 * worker counts alone (unit tests, or if the mapping failed). -1: failed. */
int           budget_node_init(void);

/* A worker's handle: on the node's table if there is one. */
budget_local *budget_local_new(void);
void          budget_local_free(budget_local *b);

/* 1: within budget (the ticket is filled for budget_charge); 0: refused,
 * *why says which and until when. Keys without budgets cost one branch. */
int  budget_check(budget_local *b, const gw_key *k, time_t now, budget_ticket *t, budget_refusal *why);
/* Counts a finished request's cost against its key and team. */
void budget_charge(budget_local *b, const budget_ticket *t, int64_t cost_e10, time_t now);

/* Start and end (unix seconds) of the period containing now; a total
 * budget's period is [0, INT64_MAX). */
int64_t budget_period_start(int period, time_t now);
int64_t budget_period_end(int period, time_t now);

#endif
