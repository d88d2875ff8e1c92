-- 008: evaluated A/B verdicts, and the prompt decoration of an alias.
--
-- Evaluated A/B (gateway/abjudge.h): one row per judged request, idempotent
-- by request_id (a replayed usage batch inserts nothing). No prompt or
-- answer text is ever stored.
-- Prompt decoration (gateway/decorate.h) per alias: the YAML `prompt:`
-- mapping as a JSON object; NULL: none.
ALTER TABLE models ADD COLUMN prompt jsonb CHECK (prompt IS NULL OR jsonb_typeof(prompt) = 'object');

CREATE TABLE ab_verdicts (
    request_id   text PRIMARY KEY,
    ts           timestamptz NOT NULL,
    alias        text NOT NULL,
    variant_a    text NOT NULL,
    variant_b    text NOT NULL,
    winner       text NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
    judge_alias  text NOT NULL,
    judge_model  text NOT NULL,
    dataplane_id text
);
CREATE INDEX ab_verdicts_alias_ts ON ab_verdicts (alias, ts);

CREATE OR REPLACE FUNCTION ab_verdicts_insert_batch(verdicts jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    INSERT INTO ab_verdicts (request_id, ts, alias, variant_a, variant_b, winner, judge_alias, judge_model, dataplane_id)
    SELECT DISTINCT ON (v.request_id) v.request_id, coalesce(v.ts, now()), v.alias, v.variant_a, v.variant_b,
           v.winner, v.judge_alias, v.judge_model, v.dataplane_id
    FROM jsonb_to_recordset(verdicts) AS v(request_id text, ts timestamptz, alias text, variant_a text,
                                           variant_b text, winner text, judge_alias text, judge_model text,
                                           dataplane_id text)
    WHERE v.request_id IS NOT NULL AND v.alias IS NOT NULL AND v.variant_a IS NOT NULL
      AND v.variant_b IS NOT NULL AND v.winner IN ('a', 'b', 'tie')
      AND v.judge_alias IS NOT NULL AND v.judge_model IS NOT NULL
    ORDER BY v.request_id
    ON CONFLICT (request_id) DO NOTHING;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END;
$$;

-- One variant's standing for GET /api/ab: a tie counts half a win for each
-- side; the interval is Wilson's score interval at 95%.
CREATE OR REPLACE FUNCTION ab_variant_json(variant text, alias text, wins bigint, ties bigint, n bigint)
RETURNS json LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object(
        'variant', variant, 'alias', alias, 'wins', wins, 'ties', ties, 'losses', n - wins - ties,
        'win_rate', round(p::numeric, 4),
        'ci95_low', round(greatest(0, (p + z * z / (2 * n) - z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
                                   / (1 + z * z / n))::numeric, 4),
        'ci95_high', round(least(1, (p + z * z / (2 * n) + z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)))
                                 / (1 + z * z / n))::numeric, 4))
    FROM (SELECT (wins + ties / 2.0)::float8 / n AS p, 1.959964::float8 AS z) c
$$;
