-- 001_init: the control plane's schema.
--
-- Applied by `controlplane migrate` (and on start) inside one transaction and
-- recorded in schema_migrations; do not put BEGIN/COMMIT in migration files.
-- Conventions: ids are UUIDs (gen_random_uuid is built in since PG 13) except
-- where a natural key exists; timestamps are timestamptz; secrets are never
-- stored in plain form (keys and admin tokens as SHA-256, credentials as
-- AES-256-GCM ciphertext under a master key that is not in the database).

-- One counter for the whole configuration: every mutation bumps it in the same
-- transaction, so a data plane can tell which snapshot it runs and the row
-- lock orders concurrent mutations (deltas are published in version order).
CREATE TABLE config_version (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    version    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO config_version (id, version) VALUES (true, 0);

CREATE TABLE teams (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    budget_usd    numeric CHECK (budget_usd >= 0),
    budget_period text CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total')),
    rpm_limit     bigint CHECK (rpm_limit >= 0),
    tpm_limit     bigint CHECK (tpm_limit >= 0),
    metadata      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE virtual_keys (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_sha256    bytea NOT NULL UNIQUE CHECK (length(key_sha256) = 32),
    key_prefix    text NOT NULL,                 -- "sk-gw-AbCd": enough to recognise a key, not to use it
    -- A deleted team leaves its (revoked) keys behind, unattached; deleting a
    -- team with active keys is refused by the API.
    team_id       uuid REFERENCES teams (id) ON DELETE SET NULL,
    models        text[],                        -- NULL: every alias
    rpm_limit     bigint CHECK (rpm_limit >= 0),
    tpm_limit     bigint CHECK (tpm_limit >= 0),
    budget_usd    numeric CHECK (budget_usd >= 0),
    budget_period text CHECK (budget_period IN ('daily', 'weekly', 'monthly', 'total')),
    expires_at    timestamptz,
    metadata      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);
CREATE INDEX virtual_keys_team_idx ON virtual_keys (team_id);
CREATE INDEX virtual_keys_created_idx ON virtual_keys (created_at DESC, id);

CREATE TABLE models (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alias       text NOT NULL UNIQUE CHECK (length(alias) BETWEEN 1 AND 200),
    strategy    text NOT NULL DEFAULT 'weighted'
                CHECK (strategy IN ('weighted', 'least_latency', 'least_cost', 'usage', 'classifier')),
    deployments jsonb NOT NULL CHECK (jsonb_typeof(deployments) = 'array'),  -- secrets only by reference
    fallbacks   text[] NOT NULL DEFAULT '{}',
    cache       jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    id              uuid PRIMARY KEY,            -- chosen by the control plane: it is the AES-GCM AAD
    name            text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    provider        text NOT NULL,
    ciphertext      bytea NOT NULL,
    nonce           bytea NOT NULL CHECK (length(nonce) = 12),
    tag             bytea NOT NULL CHECK (length(tag) = 16),
    key_fingerprint text NOT NULL,               -- which master key encrypted it (first bytes of its SHA-256)
    hint            text,                        -- "****abcd" for humans; never more than 4 characters
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE admin_tokens (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    token_prefix text,
    role         text NOT NULL CHECK (role IN ('admin', 'viewer')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);

CREATE TABLE audit_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ts             timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,                -- admin token id (never the token)
    actor_name     text,
    action         text NOT NULL,                -- create | update | delete | revoke | rotate
    resource       text NOT NULL,                -- keys | teams | models | credentials | admin_tokens
    resource_id    text,
    before         jsonb,                        -- secrets masked: no hashes, no plaintext, no ciphertext
    after          jsonb,
    config_version bigint
);
CREATE INDEX audit_log_resource_idx ON audit_log (resource, id DESC);

CREATE TABLE dataplanes (
    id             text PRIMARY KEY,             -- the data plane's own id
    hostname       text,
    version        text,
    config_version bigint,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now()
);

-- Usage: one row per request, partitioned by month on ts so old months can be
-- detached or dropped cheaply and "last month" queries touch one partition.
--
-- Idempotency: a unique constraint on a partitioned table must include the
-- partition key, so UNIQUE (request_id) cannot live on spend_log itself, and
-- UNIQUE (request_id, ts) would let a replayed event whose ts differs (or
-- falls into another month) be counted twice. Instead spend_request_ids holds
-- every request id ever ingested with a real primary key; an insert claims
-- the id there first (ON CONFLICT DO NOTHING) and writes the spend row only
-- for ids it claimed, in one statement: see spend_log_insert_batch below.
CREATE TABLE spend_log (
    request_id        text NOT NULL,
    ts                timestamptz NOT NULL,
    key_id            uuid,                      -- no FK: spend outlives keys and teams
    team_id           uuid,
    model_alias       text,
    provider          text,
    upstream_model    text,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    cached_tokens     bigint NOT NULL DEFAULT 0,
    cost_usd          numeric NOT NULL DEFAULT 0,
    latency_ms        integer,
    ttft_ms           integer,
    status            integer,                   -- HTTP status returned to the client
    cache_hit         boolean NOT NULL DEFAULT false,
    attempts          integer NOT NULL DEFAULT 1,
    dataplane_id      text
) PARTITION BY RANGE (ts);
CREATE INDEX spend_log_ts_idx ON spend_log (ts);
CREATE INDEX spend_log_key_idx ON spend_log (key_id, ts);
CREATE INDEX spend_log_team_idx ON spend_log (team_id, ts);
CREATE INDEX spend_log_request_idx ON spend_log (request_id);
-- Catches rows for months nobody created yet, so an insert never fails.
CREATE TABLE spend_log_default PARTITION OF spend_log DEFAULT;

CREATE TABLE spend_request_ids (
    request_id text PRIMARY KEY,
    ts         timestamptz NOT NULL
);

-- Creates the partition for the month containing m (spend_log_yYYYYmMM) if it
-- is missing, moving any rows the default partition holds for that month.
-- The control plane calls it on start for this month and the next two.
CREATE FUNCTION spend_log_ensure_partition(m date) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    lo   date := date_trunc('month', m)::date;
    hi   date := (date_trunc('month', m) + interval '1 month')::date;
    name text := format('spend_log_y%sm%s', to_char(lo, 'YYYY'), to_char(lo, 'MM'));
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    CREATE TEMP TABLE spend_log_moving (LIKE spend_log) ON COMMIT DROP;
    WITH moved AS (DELETE FROM spend_log_default WHERE ts >= lo AND ts < hi RETURNING *)
    INSERT INTO spend_log_moving SELECT * FROM moved;
    EXECUTE format('CREATE TABLE %I PARTITION OF spend_log FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    INSERT INTO spend_log SELECT * FROM spend_log_moving;
    DROP TABLE spend_log_moving;
    RETURN name;
END $$;

-- Idempotent batched insert: events is a JSON array of objects with the
-- spend_log columns. Returns how many rows were new; replays return 0.
CREATE FUNCTION spend_log_insert_batch(events jsonb) RETURNS integer
LANGUAGE sql AS $$
    WITH ev AS (
        SELECT DISTINCT ON (e.request_id) e.*
        FROM jsonb_to_recordset(events) AS e(
            request_id text, ts timestamptz, key_id uuid, team_id uuid, model_alias text,
            provider text, upstream_model text, prompt_tokens bigint, completion_tokens bigint,
            cached_tokens bigint, cost_usd numeric, latency_ms integer, ttft_ms integer,
            status integer, cache_hit boolean, attempts integer, dataplane_id text)
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
                               ttft_ms, status, cache_hit, attempts, dataplane_id)
        SELECT ev.request_id, coalesce(ev.ts, now()), ev.key_id, ev.team_id, ev.model_alias, ev.provider,
               ev.upstream_model, coalesce(ev.prompt_tokens, 0), coalesce(ev.completion_tokens, 0),
               coalesce(ev.cached_tokens, 0), coalesce(ev.cost_usd, 0), ev.latency_ms, ev.ttft_ms,
               ev.status, coalesce(ev.cache_hit, false), coalesce(ev.attempts, 1), ev.dataplane_id
        FROM ev JOIN claimed USING (request_id)
        RETURNING 1
    )
    SELECT count(*)::integer FROM ins;
$$;

SELECT spend_log_ensure_partition((now() + make_interval(months => i))::date)
FROM generate_series(0, 2) AS i;
