/* /api/spend: what spent the money, from spend_log (written by ingest.c).
 *
 *   GET /api/spend?group_by=key|team|model|provider|day&from=&to=&team_id=&key_id=
 *       totals per group (requests, tokens, cost) and over all groups,
 *       optionally of one team's or one key's requests only
 *   GET /api/spend/logs?key_id=&team_id=&model=&status=&from=&to=&limit=&offset=
 *       per-request rows, newest first, paged
 *
 * from is inclusive and to exclusive (RFC 3339 or a date; days are UTC).
 * Every filter is a bound parameter; group_by only picks one of the fixed
 * expressions below, so no client text ever becomes SQL.
 */
#include "api.h"

#include <string.h>

#define TIME_FILTER "($1::timestamptz IS NULL OR ts >= $1::timestamptz) AND ($2::timestamptz IS NULL OR ts < $2::timestamptz)"

static const struct { const char *name, *expr; } g_groups[] = {
    { "key",      "key_id::text" },
    { "team",     "team_id::text" },
    { "model",    "model_alias" },
    { "provider", "provider" },
    { "day",      "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')" },
};

void api_spend_summary(api_req *r)
{
    const char *by = api_query(r, "group_by");
    const char *expr = NULL;
    if (!by) by = "model";
    for (size_t i = 0; i < sizeof g_groups / sizeof g_groups[0]; i++)
        if (!strcmp(by, g_groups[i].name)) expr = g_groups[i].expr;
    if (!expr) {
        api_error(r, 400, "invalid_request_error", "group_by must be one of key, team, model, provider, day");
        return;
    }
    const char *team = api_query(r, "team_id"), *key = api_query(r, "key_id");
    if (team && !*team) team = NULL;
    if (key && !*key) key = NULL;
    if ((team && !cp_uuid_valid(team)) || (key && !cp_uuid_valid(key))) {
        api_error(r, 400, "invalid_request_error", "%s must be a UUID", team && !cp_uuid_valid(team) ? "team_id" : "key_id");
        return;
    }
    const char *params[] = { api_query(r, "from"), api_query(r, "to"), by, team, key };
    buf_t sql;
    buf_init(&sql);
    buf_printf(&sql,
        "WITH g AS (SELECT %s AS grp, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens, "
        "  sum(completion_tokens) AS completion_tokens, sum(cached_tokens) AS cached_tokens, sum(cost_usd) AS cost_usd "
        "  FROM spend_log WHERE " TIME_FILTER
        "  AND ($4::uuid IS NULL OR team_id = $4::uuid) AND ($5::uuid IS NULL OR key_id = $5::uuid) GROUP BY 1) "
        "SELECT json_build_object('group_by', $3::text, 'from', $1::timestamptz, 'to', $2::timestamptz, "
        "  'data', coalesce((SELECT json_agg(json_build_object('group', grp, 'requests', requests, "
        "      'prompt_tokens', prompt_tokens, 'completion_tokens', completion_tokens, 'cached_tokens', cached_tokens, "
        "      'cost_usd', cost_usd) ORDER BY cost_usd DESC, grp) FROM g), '[]'), "
        "  'totals', (SELECT json_build_object('requests', coalesce(sum(requests), 0), "
        "      'prompt_tokens', coalesce(sum(prompt_tokens), 0), 'completion_tokens', coalesce(sum(completion_tokens), 0), "
        "      'cached_tokens', coalesce(sum(cached_tokens), 0), 'cost_usd', coalesce(sum(cost_usd), 0)) FROM g))",
        expr);
    if (sql.oom) { buf_free(&sql); api_error(r, 503, "server_error", "out of memory"); return; }
    PGresult *res = cp_db_exec(r->db, sql.data, 5, params);
    buf_free(&sql);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply(r, 200, cp_db_value(res));
    PQclear(res);
}

#define LOG_FILTER TIME_FILTER \
    " AND ($3::uuid IS NULL OR key_id = $3::uuid) AND ($4::uuid IS NULL OR team_id = $4::uuid)" \
    " AND ($5::text IS NULL OR model_alias = $5::text) AND ($6::integer IS NULL OR status = $6::integer)"

#define LOG_JSON \
    "json_build_object('request_id', request_id, 'ts', ts, 'key_id', key_id, 'team_id', team_id, " \
    "'model_alias', model_alias, 'provider', provider, 'upstream_model', upstream_model, " \
    "'prompt_tokens', prompt_tokens, 'completion_tokens', completion_tokens, 'cached_tokens', cached_tokens, " \
    "'cost_usd', cost_usd, 'latency_ms', latency_ms, 'ttft_ms', ttft_ms, 'status', status, " \
    "'cache_hit', cache_hit, 'attempts', attempts, 'dataplane_id', dataplane_id, " \
    "'routed_alias', routed_alias, 'guard', guard, 'cache_similarity', cache_similarity)"

void api_spend_logs(api_req *r)
{
    char limit[24], offset[24];
    if (api_paging(r, limit, offset) < 0) return;
    const char *params[] = {
        api_query(r, "from"), api_query(r, "to"), api_query(r, "key_id"), api_query(r, "team_id"),
        api_query(r, "model"), api_query(r, "status"), limit, offset,
    };
    PGresult *res = cp_db_exec(r->db,
        "SELECT (SELECT count(*) FROM spend_log WHERE " LOG_FILTER "), "
        "  coalesce((SELECT json_agg(" LOG_JSON " ORDER BY ts DESC, request_id) FROM "
        "    (SELECT * FROM spend_log WHERE " LOG_FILTER " ORDER BY ts DESC, request_id "
        "     LIMIT $7::bigint OFFSET $8::bigint) s), '[]')",
        8, params);
    if (!res) { api_db_error(r, NULL); return; }
    api_reply_page(r, res, limit, offset);
    PQclear(res);
}
