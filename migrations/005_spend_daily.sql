-- 005: daily rollups of spend_log, kept by ingestion (spend_log_insert_batch,
-- 006), so dashboards read a
-- few thousand rows instead of scanning millions (GET /api/overview).
--
-- spend_daily: one row per UTC day x team x key x model alias with requests,
-- errors (status >= 400), tokens and cost. spend_latency_daily: the same days
-- x team x key with a latency histogram, one row per bucket
-- (latency_bucket: floor(ln(ms + 1) * 20), buckets 5.1% wide, so a
-- percentile read from it is at most 5.1% above the true value). NULL team,
-- key or alias is a group of its own (NULLS NOT DISTINCT).

CREATE TABLE spend_daily (
    day         date NOT NULL,
    team_id     uuid,
    key_id      uuid,
    model_alias text,
    requests    bigint NOT NULL DEFAULT 0,
    errors      bigint NOT NULL DEFAULT 0,
    tokens      bigint NOT NULL DEFAULT 0,
    cost_usd    numeric NOT NULL DEFAULT 0,
    UNIQUE NULLS NOT DISTINCT (day, team_id, key_id, model_alias)
);
CREATE INDEX spend_daily_key_idx ON spend_daily (key_id, day);
CREATE INDEX spend_daily_team_idx ON spend_daily (team_id, day);

CREATE TABLE spend_latency_daily (
    day     date NOT NULL,
    team_id uuid,
    key_id  uuid,
    bucket  integer NOT NULL,
    n       bigint NOT NULL DEFAULT 0,
    UNIQUE NULLS NOT DISTINCT (day, team_id, key_id, bucket)
);

CREATE FUNCTION latency_bucket(ms integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT floor(ln(greatest(ms, 0) + 1) * 20)::integer $$;

-- what spend_log already holds
INSERT INTO spend_daily (day, team_id, key_id, model_alias, requests, errors, tokens, cost_usd)
SELECT (ts AT TIME ZONE 'UTC')::date, team_id, key_id, model_alias, count(*), count(*) FILTER (WHERE status >= 400),
       sum(prompt_tokens + completion_tokens), sum(cost_usd)
FROM spend_log GROUP BY 1, 2, 3, 4;
INSERT INTO spend_latency_daily (day, team_id, key_id, bucket, n)
SELECT (ts AT TIME ZONE 'UTC')::date, team_id, key_id, latency_bucket(latency_ms), count(*)
FROM spend_log WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4;

-- spend_log_insert_batch keeps both tables from here on: see 006.
