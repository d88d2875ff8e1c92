/* Read-only endpoints for the admin UI.
 *
 *   GET /api/me        the calling admin token: {"id","name","role"} (the UI
 *                      hides write controls from viewers; the API enforces)
 *   GET /api/overview?days=14&key_id=&team_id=
 *       the dashboard in one round trip, aggregated in SQL over spend_log
 *       (never in the browser): spend and requests today / this month (UTC),
 *       requests, errors (status >= 400), cost and p50/p95 latency over the
 *       last `days` days (1..366, today included; percentiles from a log
 *       histogram, at most 5.1% above the exact value), a zero-filled per-day
 *       series, the top 5 teams, keys and models by cost, and, without
 *       filters, the teams and active keys with a budget and their spend in
 *       the budget's current period (daily, weekly, monthly or total), and
 *       the current config_version (data planes' lag is measured against it).
 *
 * Cost: independent of spend_log's size. Money and counts come from
 * spend_daily and percentiles from spend_latency_daily (rollups kept by
 * ingestion, migrations/005), budgets from the spend each key and team
 * carries for its current period (003): a few thousand small rows.
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_me(api_req *r)
{
    const cp_actor *a = r->actor;
    if (!a) { api_error(r, 401, "authentication_error", "not authenticated"); return; }
    buf_reset(&r->out);
    buf_puts(&r->out, "{\"id\":");
    buf_json_str(&r->out, a->id, strlen(a->id));
    buf_puts(&r->out, ",\"name\":");
    buf_json_str(&r->out, a->name, strlen(a->name));
    buf_puts(&r->out, a->role == CP_ROLE_ADMIN ? ",\"role\":\"admin\"}" : ",\"role\":\"viewer\"}");
    r->status = 200;
}

#define FILTERS "($2::uuid IS NULL OR s.key_id = $2::uuid) AND ($3::uuid IS NULL OR s.team_id = $3::uuid)"

/* Latency histogram bucket of a request (latency_bucket() in SQL):
 * floor(ln(ms + 1) * 20), so buckets are 5.1% wide; a percentile is
 * reported as its bucket's upper bound (never below the true value, at most
 * 5.1% above it). */
#define LAT_MS(b)  "round(exp((" b " + 1) / 20.0) - 1)::bigint"

/* The rollups per (day, team, key, model) with the money (everything else
 * sums these small rows), and per (day, latency bucket) for the
 * percentiles, from the earlier of the month's start and the range's
 * ("in range" is day >= since_day). */
static const char g_overview_sql[] =
    "WITH b AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AS d0, "
    "                  date_trunc('month', now() AT TIME ZONE 'UTC') AS m0, "
    "                  date_trunc('week', now() AT TIME ZONE 'UTC') AS w0), "
    "w AS (SELECT d0 AT TIME ZONE 'UTC' AS today, m0 AT TIME ZONE 'UTC' AS month, w0 AT TIME ZONE 'UTC' AS week, "
    "             (d0 - ($1::int - 1) * interval '1 day') AT TIME ZONE 'UTC' AS since, "
    "             d0 - ($1::int - 1) * interval '1 day' AS since_day FROM b), "
    "fine AS (SELECT s.day, s.team_id, s.key_id, s.model_alias, s.requests, s.errors, s.cost_usd, s.tokens "
    "         FROM b, w, spend_daily s WHERE s.day >= least(b.m0, w.since_day)::date AND " FILTERS "), "
    "inr AS (SELECT fine.* FROM fine, w WHERE day >= w.since_day), "
    "days AS (SELECT day, sum(requests) AS requests, sum(errors) AS errors, sum(cost_usd) AS cost_usd, "
    "                sum(tokens) AS tokens FROM fine GROUP BY day), "
    "lat AS (SELECT s.day, s.bucket AS lb, sum(s.n) AS n "
    "        FROM w, spend_latency_daily s WHERE s.day >= w.since_day::date AND " FILTERS " GROUP BY 1, 2), "
    "hist AS (SELECT day, lb, sum(n) OVER (PARTITION BY day ORDER BY lb) AS cum, "
    "                sum(n) OVER (PARTITION BY day) AS tot FROM lat), "
    "dpct AS (SELECT day, " LAT_MS("min(lb) FILTER (WHERE cum >= 0.5 * tot)") " AS p50, "
    "                " LAT_MS("min(lb) FILTER (WHERE cum >= 0.95 * tot)") " AS p95 FROM hist GROUP BY day), "
    "rpct AS (SELECT " LAT_MS("min(lb) FILTER (WHERE cum >= 0.5 * tot)") " AS p50, "
    "                " LAT_MS("min(lb) FILTER (WHERE cum >= 0.95 * tot)") " AS p95 "
    "         FROM (SELECT lb, sum(n) OVER (ORDER BY lb) AS cum, sum(n) OVER () AS tot "
    "               FROM (SELECT lb, sum(n) AS n FROM lat GROUP BY lb) r) c), "
    "bud AS (SELECT 'team' AS kind, t.id, t.name, t.budget_usd, coalesce(t.budget_period, 'total') AS budget_period, "
    "               CASE WHEN t.budget_resets_at > now() THEN t.budget_spent_usd ELSE 0 END AS spent_usd "
    "        FROM teams t WHERE t.budget_usd IS NOT NULL AND $2::uuid IS NULL AND $3::uuid IS NULL "
    "        UNION ALL "
    "        SELECT 'key', k.id, k.name, k.budget_usd, coalesce(k.budget_period, 'total'), "
    "               CASE WHEN k.budget_resets_at > now() THEN k.budget_spent_usd ELSE 0 END "
    "        FROM virtual_keys k "
    "        WHERE k.budget_usd IS NOT NULL AND k.status = 'active' AND $2::uuid IS NULL AND $3::uuid IS NULL) "
    "SELECT json_build_object("
    "  'days', $1::int, 'since', w.since, 'now', now(), "
    "  'config_version', (SELECT version FROM config_version), "
    "  'today', (SELECT json_build_object('requests', coalesce(sum(requests), 0), 'errors', coalesce(sum(errors), 0), "
    "            'cost_usd', coalesce(sum(cost_usd), 0)) FROM days, b WHERE day = b.d0), "
    "  'month', (SELECT json_build_object('requests', coalesce(sum(requests), 0), 'errors', coalesce(sum(errors), 0), "
    "            'cost_usd', coalesce(sum(cost_usd), 0)) FROM days, b WHERE day >= b.m0), "
    "  'range', (SELECT json_build_object('requests', coalesce(sum(requests), 0), 'errors', coalesce(sum(errors), 0), "
    "            'cost_usd', coalesce(sum(cost_usd), 0), 'tokens', coalesce(sum(tokens), 0), "
    "            'p50_ms', (SELECT p50 FROM rpct), 'p95_ms', (SELECT p95 FROM rpct)) FROM days WHERE day >= w.since_day), "
    "  'series', (SELECT json_agg(json_build_object('day', to_char(g.day, 'YYYY-MM-DD'), "
    "            'requests', coalesce(d.requests, 0), 'errors', coalesce(d.errors, 0), "
    "            'cost_usd', coalesce(d.cost_usd, 0), 'p50_ms', p.p50, 'p95_ms', p.p95) ORDER BY g.day) "
    "            FROM b, generate_series(w.since_day, b.d0, interval '1 day') g(day) "
    "            LEFT JOIN days d ON d.day = g.day LEFT JOIN dpct p ON p.day = g.day), "
    "  'top_teams', coalesce((SELECT json_agg(json_build_object('id', x.team_id, 'name', t.name, "
    "            'requests', x.requests, 'cost_usd', x.cost_usd) ORDER BY x.cost_usd DESC, x.requests DESC) "
    "            FROM (SELECT team_id, sum(requests) AS requests, sum(cost_usd) AS cost_usd FROM inr GROUP BY 1 "
    "                  ORDER BY 3 DESC, 2 DESC LIMIT 5) x LEFT JOIN teams t ON t.id = x.team_id), '[]'), "
    "  'top_keys', coalesce((SELECT json_agg(json_build_object('id', x.key_id, 'name', k.name, "
    "            'key_prefix', k.key_prefix, 'requests', x.requests, 'cost_usd', x.cost_usd) "
    "            ORDER BY x.cost_usd DESC, x.requests DESC) "
    "            FROM (SELECT key_id, sum(requests) AS requests, sum(cost_usd) AS cost_usd FROM inr GROUP BY 1 "
    "                  ORDER BY 3 DESC, 2 DESC LIMIT 5) x LEFT JOIN virtual_keys k ON k.id = x.key_id), '[]'), "
    "  'top_models', coalesce((SELECT json_agg(json_build_object('model', x.model_alias, "
    "            'requests', x.requests, 'cost_usd', x.cost_usd) ORDER BY x.cost_usd DESC, x.requests DESC) "
    "            FROM (SELECT model_alias, sum(requests) AS requests, sum(cost_usd) AS cost_usd FROM inr GROUP BY 1 "
    "                  ORDER BY 3 DESC, 2 DESC LIMIT 5) x), '[]'), "
    "  'budgets', coalesce((SELECT json_agg(json_build_object('kind', kind, 'id', id, 'name', name, "
    "            'budget_usd', budget_usd, 'budget_period', budget_period, 'spent_usd', spent_usd) "
    "            ORDER BY spent_usd / nullif(budget_usd, 0) DESC NULLS LAST, name) "
    "            FROM (SELECT * FROM bud ORDER BY spent_usd / nullif(budget_usd, 0) DESC NULLS LAST, name LIMIT 12) x), '[]')"
    ") FROM w";

void api_overview(api_req *r)
{
    const char *ds = api_query(r, "days"), *key = api_query(r, "key_id"), *team = api_query(r, "team_id");
    long days = 14;
    if (ds) {
        char *end = NULL;
        days = strlen(ds) <= 3 ? strtol(ds, &end, 10) : -1;
        if (!end || end == ds || *end || days < 1 || days > 366) {
            api_error(r, 400, "invalid_request_error", "days must be an integer between 1 and 366");
            return;
        }
    }
    if (key && !*key) key = NULL;
    if (team && !*team) team = NULL;
    if (key && !cp_uuid_valid(key)) {
        api_error(r, 400, "invalid_request_error", "key_id must be a UUID");
        return;
    }
    if (team && !cp_uuid_valid(team)) {
        api_error(r, 400, "invalid_request_error", "team_id must be a UUID");
        return;
    }
    char dbuf[8];
    snprintf(dbuf, sizeof dbuf, "%ld", days);
    const char *params[] = { dbuf, key, team };
    /* For this transaction only: JIT compiling the plan costs more (~0.2 s) than
     * it saves, and the planner's group estimates (rows, not distinct days x
     * keys x models) would pick a sort of every row over a small hash table. */
    PGresult *res = NULL;
    if (cp_db_begin(r->db) < 0) { api_db_error(r, NULL); return; }
    if (!(res = cp_db_exec(r->db, "SELECT set_config('jit', 'off', true), set_config('enable_sort', 'off', true), "
                                  "set_config('work_mem', '32MB', true)", 0, NULL))) {
        api_db_error(r, NULL);
        return;
    }
    PQclear(res);
    if (!(res = cp_db_exec(r->db, g_overview_sql, 3, params))) { api_db_error(r, NULL); return; }
    if (cp_db_commit(r->db) < 0) { PQclear(res); api_db_error(r, NULL); return; }
    const char *json = cp_db_value(res);
    if (json) api_reply(r, 200, json);
    else api_error(r, 500, "server_error", "overview query returned nothing");
    PQclear(res);
}
