/* Read-only endpoints for the admin UI.
 *
 *   GET /api/me        the calling admin token: {"id","name","role"} (the UI
 *                      hides write controls from viewers; the API enforces)
 *   GET /api/overview?days=14&key_id=&team_id=
 *       the dashboard in one round trip, aggregated in SQL over spend_log
 *       (never in the browser): spend and requests today / this month (UTC),
 *       requests, errors (status >= 400), cost and p50/p95 latency over the
 *       last `days` days (1..366, today included), a zero-filled per-day
 *       series, the top 5 teams, keys and models by cost, and, without
 *       filters, the teams and active keys with a budget and their spend in
 *       the budget's current period (daily, weekly, monthly or total), and
 *       the current config_version (data planes' lag is measured against it).
 *
 * Cost: three range scans of spend_log on (ts) (or (key_id, ts) /
 * (team_id, ts) when filtered): per day, the latency percentiles, and the
 * top lists as one GROUPING SETS pass; plus one indexed sum per budget.
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

static const char g_overview_sql[] =
    "WITH b AS (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AS d0, "
    "                  date_trunc('month', now() AT TIME ZONE 'UTC') AS m0, "
    "                  date_trunc('week', now() AT TIME ZONE 'UTC') AS w0), "
    "w AS (SELECT d0 AT TIME ZONE 'UTC' AS today, m0 AT TIME ZONE 'UTC' AS month, w0 AT TIME ZONE 'UTC' AS week, "
    "             (d0 - ($1::int - 1) * interval '1 day') AT TIME ZONE 'UTC' AS since, "
    "             d0 - ($1::int - 1) * interval '1 day' AS since_day FROM b), "
    "days AS (SELECT date_trunc('day', s.ts AT TIME ZONE 'UTC') AS day, count(*) AS requests, "
    "                count(*) FILTER (WHERE s.status >= 400) AS errors, sum(s.cost_usd) AS cost_usd, "
    "                sum(s.prompt_tokens + s.completion_tokens) AS tokens, "
    "                percentile_disc(0.5) WITHIN GROUP (ORDER BY s.latency_ms) AS p50, "
    "                percentile_disc(0.95) WITHIN GROUP (ORDER BY s.latency_ms) AS p95 "
    "         FROM spend_log s, w WHERE s.ts >= least(w.month, w.since) AND " FILTERS " GROUP BY 1), "
    "lat AS (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY s.latency_ms) AS p50, "
    "               percentile_disc(0.95) WITHIN GROUP (ORDER BY s.latency_ms) AS p95 "
    "        FROM spend_log s, w WHERE s.ts >= w.since AND " FILTERS "), "
    "top AS (SELECT GROUPING(s.team_id, s.key_id, s.model_alias) AS g, s.team_id, s.key_id, s.model_alias, "
    "               count(*) AS requests, sum(s.cost_usd) AS cost_usd "
    "        FROM spend_log s, w WHERE s.ts >= w.since AND " FILTERS
    "        GROUP BY GROUPING SETS ((s.team_id), (s.key_id), (s.model_alias))), "
    "bud AS (SELECT 'team' AS kind, t.id, t.name, t.budget_usd, coalesce(t.budget_period, 'total') AS budget_period, "
    "               sp.spent AS spent_usd FROM teams t, w, LATERAL (SELECT coalesce(sum(s.cost_usd), 0) AS spent "
    "               FROM spend_log s WHERE s.team_id = t.id AND s.ts >= CASE t.budget_period "
    "                 WHEN 'daily' THEN w.today WHEN 'weekly' THEN w.week WHEN 'monthly' THEN w.month "
    "                 ELSE '-infinity'::timestamptz END) sp "
    "        WHERE t.budget_usd IS NOT NULL AND $2::uuid IS NULL AND $3::uuid IS NULL "
    "        UNION ALL "
    "        SELECT 'key', k.id, k.name, k.budget_usd, coalesce(k.budget_period, 'total'), sp.spent "
    "        FROM virtual_keys k, w, LATERAL (SELECT coalesce(sum(s.cost_usd), 0) AS spent "
    "               FROM spend_log s WHERE s.key_id = k.id AND s.ts >= CASE k.budget_period "
    "                 WHEN 'daily' THEN w.today WHEN 'weekly' THEN w.week WHEN 'monthly' THEN w.month "
    "                 ELSE '-infinity'::timestamptz END) sp "
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
    "            'p50_ms', (SELECT p50 FROM lat), 'p95_ms', (SELECT p95 FROM lat)) FROM days WHERE day >= w.since_day), "
    "  'series', (SELECT json_agg(json_build_object('day', to_char(g.day, 'YYYY-MM-DD'), "
    "            'requests', coalesce(d.requests, 0), 'errors', coalesce(d.errors, 0), "
    "            'cost_usd', coalesce(d.cost_usd, 0), 'p50_ms', d.p50, 'p95_ms', d.p95) ORDER BY g.day) "
    "            FROM b, generate_series(w.since_day, b.d0, interval '1 day') g(day) LEFT JOIN days d ON d.day = g.day), "
    "  'top_teams', coalesce((SELECT json_agg(json_build_object('id', x.team_id, 'name', t.name, "
    "            'requests', x.requests, 'cost_usd', x.cost_usd) ORDER BY x.cost_usd DESC, x.requests DESC) "
    "            FROM (SELECT * FROM top WHERE g = 3 ORDER BY cost_usd DESC, requests DESC LIMIT 5) x "
    "            LEFT JOIN teams t ON t.id = x.team_id), '[]'), "
    "  'top_keys', coalesce((SELECT json_agg(json_build_object('id', x.key_id, 'name', k.name, "
    "            'key_prefix', k.key_prefix, 'requests', x.requests, 'cost_usd', x.cost_usd) "
    "            ORDER BY x.cost_usd DESC, x.requests DESC) "
    "            FROM (SELECT * FROM top WHERE g = 5 ORDER BY cost_usd DESC, requests DESC LIMIT 5) x "
    "            LEFT JOIN virtual_keys k ON k.id = x.key_id), '[]'), "
    "  'top_models', coalesce((SELECT json_agg(json_build_object('model', x.model_alias, "
    "            'requests', x.requests, 'cost_usd', x.cost_usd) ORDER BY x.cost_usd DESC, x.requests DESC) "
    "            FROM (SELECT * FROM top WHERE g = 6 ORDER BY cost_usd DESC, requests DESC LIMIT 5) x), '[]'), "
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
    PGresult *res = cp_db_exec(r->db, g_overview_sql, 3, params);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply(r, 200, cp_db_value(res));
    PQclear(res);
}
