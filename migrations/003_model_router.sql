-- 003: the router. Per-alias router settings (retries, breaker, hedging, split, classifier tiers),
-- the YAML `router:` mapping as a JSON object; NULL: the defaults.
ALTER TABLE models ADD COLUMN router jsonb CHECK (router IS NULL OR jsonb_typeof(router) = 'object');

-- The alias that served a request when the router sent it elsewhere (a
-- fallback, a traffic split's target, a classifier tier): A/B results compare
-- by it. NULL: model_alias served it.
ALTER TABLE spend_log ADD COLUMN routed_alias text;

CREATE OR REPLACE FUNCTION spend_log_insert_batch(events jsonb) RETURNS integer
LANGUAGE sql AS $$
    WITH ev AS (
        SELECT DISTINCT ON (e.request_id) e.*
        FROM jsonb_to_recordset(events) AS e(
            request_id text, ts timestamptz, key_id uuid, team_id uuid, model_alias text,
            provider text, upstream_model text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, cost_usd numeric, latency_ms integer, ttft_ms integer,
            status integer, cache_hit boolean, attempts integer, dataplane_id text, routed_alias text)
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
                               ttft_ms, status, cache_hit, attempts, dataplane_id, routed_alias)
        SELECT ev.request_id, coalesce(ev.ts, now()), ev.key_id, ev.team_id, ev.model_alias, ev.provider,
               ev.upstream_model, coalesce(ev.prompt_tokens, 0), coalesce(ev.completion_tokens, 0),
               coalesce(ev.cached_tokens, 0), coalesce(ev.cost_usd, 0), ev.latency_ms, ev.ttft_ms,
               ev.status, coalesce(ev.cache_hit, false), coalesce(ev.attempts, 1), ev.dataplane_id,
               ev.routed_alias
        FROM ev JOIN claimed USING (request_id)
        RETURNING 1
    )
    SELECT count(*)::integer FROM ins;
$$;
