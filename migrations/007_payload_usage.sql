-- 007: payload-aware features. What the guardrails decided for a request
-- ("stage:action:detector,..." without the matched text) and, for semantic
-- cache lookups, the similarity of the nearest cached prompt. NULL: none.
ALTER TABLE spend_log ADD COLUMN guard text;
ALTER TABLE spend_log ADD COLUMN cache_similarity real;

-- The batched insert of 006, storing the two new columns too.
CREATE OR REPLACE FUNCTION spend_log_insert_batch(events jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n    integer;
    kids uuid[];
    tids uuid[];
BEGIN
    WITH ev AS (
        SELECT DISTINCT ON (e.request_id) e.*
        FROM jsonb_to_recordset(events) AS e(
            request_id text, ts timestamptz, key_id uuid, team_id uuid, model_alias text,
            provider text, upstream_model text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, cost_usd numeric, latency_ms integer, ttft_ms integer,
            status integer, cache_hit boolean, attempts integer, dataplane_id text, routed_alias text,
            guard text, cache_similarity real)
        WHERE e.request_id IS NOT NULL
        ORDER BY e.request_id
    ), claimed AS (
        INSERT INTO spend_request_ids (request_id, ts)
        SELECT request_id, coalesce(ts, now()) FROM ev
        ON CONFLICT (request_id) DO NOTHING
        RETURNING request_id
    ), ins AS (
        INSERT INTO spend_log (request_id, ts, key_id, team_id, model_alias, provider, upstream_model,
                               prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms,
                               ttft_ms, status, cache_hit, attempts, dataplane_id, routed_alias,
                               guard, cache_similarity)
        SELECT ev.request_id, coalesce(ev.ts, now()), ev.key_id, ev.team_id, ev.model_alias, ev.provider,
               ev.upstream_model, coalesce(ev.prompt_tokens, 0), coalesce(ev.completion_tokens, 0),
               coalesce(ev.cached_tokens, 0), coalesce(ev.cost_usd, 0), ev.latency_ms, ev.ttft_ms,
               ev.status, coalesce(ev.cache_hit, false), coalesce(ev.attempts, 1), ev.dataplane_id,
               ev.routed_alias, ev.guard, ev.cache_similarity
        FROM ev JOIN claimed USING (request_id)
        RETURNING key_id, team_id, ts, cost_usd, model_alias, status, latency_ms,
                  prompt_tokens + completion_tokens AS tokens
    ), daily AS (
        INSERT INTO spend_daily AS d (day, team_id, key_id, model_alias, requests, errors, tokens, cost_usd)
        SELECT (ts AT TIME ZONE 'UTC')::date, team_id, key_id, model_alias, count(*),
               count(*) FILTER (WHERE status >= 400), sum(tokens), sum(cost_usd)
        FROM ins GROUP BY 1, 2, 3, 4
        ON CONFLICT (day, team_id, key_id, model_alias) DO UPDATE SET
            requests = d.requests + EXCLUDED.requests, errors = d.errors + EXCLUDED.errors,
            tokens = d.tokens + EXCLUDED.tokens, cost_usd = d.cost_usd + EXCLUDED.cost_usd
        RETURNING 1
    ), latency AS (
        INSERT INTO spend_latency_daily AS l (day, team_id, key_id, bucket, n)
        SELECT (ts AT TIME ZONE 'UTC')::date, team_id, key_id, latency_bucket(latency_ms), count(*)
        FROM ins WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4
        ON CONFLICT (day, team_id, key_id, bucket) DO UPDATE SET n = l.n + EXCLUDED.n
        RETURNING 1
    ), kspend AS (
        SELECT i.key_id AS id, sum(i.cost_usd) AS cost
        FROM ins i JOIN virtual_keys k ON k.id = i.key_id
        WHERE k.budget_usd IS NOT NULL AND i.ts >= budget_period_start(k.budget_period, now())
        GROUP BY i.key_id
    ), kupd AS (
        UPDATE virtual_keys k
        SET budget_spent_usd = CASE WHEN k.budget_resets_at > now() THEN k.budget_spent_usd ELSE 0 END + s.cost,
            budget_resets_at = budget_period_end(k.budget_period, now())
        FROM kspend s WHERE k.id = s.id
        RETURNING k.id
    ), tspend AS (
        SELECT i.team_id AS id, sum(i.cost_usd) AS cost
        FROM ins i JOIN teams t ON t.id = i.team_id
        WHERE t.budget_usd IS NOT NULL AND i.ts >= budget_period_start(t.budget_period, now())
        GROUP BY i.team_id
    ), tupd AS (
        UPDATE teams t
        SET budget_spent_usd = CASE WHEN t.budget_resets_at > now() THEN t.budget_spent_usd ELSE 0 END + s.cost,
            budget_resets_at = budget_period_end(t.budget_period, now())
        FROM tspend s WHERE t.id = s.id
        RETURNING t.id
    )
    SELECT (SELECT count(*) FROM ins)::integer, (SELECT array_agg(id) FROM kupd), (SELECT array_agg(id) FROM tupd)
    INTO n, kids, tids;
    IF kids IS NOT NULL OR tids IS NOT NULL THEN
        PERFORM budget_enforce(coalesce(kids, '{}'), coalesce(tids, '{}'));
    END IF;
    RETURN n;
END $$;
