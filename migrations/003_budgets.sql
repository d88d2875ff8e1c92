-- 003: budgets enforced from the usage stream.
--
-- Every key and team with a budget carries the spend of its current period
-- (budget_spent_usd, until budget_resets_at). Ingestion adds each new
-- spend_log row's cost to it in the same statement that stores the row
-- (spend_log_insert_batch, 005), so
-- a replayed batch (claimed request ids) is never counted twice. When the
-- spend reaches the budget the row is flagged budget_blocked and an audit row
-- bumps config_version: the delta publisher then pushes the key (or team)
-- with the flag to every data plane, which refuses it with 429 kind
-- `budget`. The flag is lifted the same way when the period resets
-- (budget_roll_periods, called every second by the control plane) or when an
-- admin raises the budget (the trigger below recomputes the spend).
--
-- Periods are calendar periods in UTC: daily from midnight, weekly from
-- Monday, monthly from the 1st; total never resets. A budget without a
-- period is a total budget.

ALTER TABLE virtual_keys
    ADD COLUMN budget_spent_usd numeric NOT NULL DEFAULT 0,
    ADD COLUMN budget_resets_at timestamptz,
    ADD COLUMN budget_blocked   boolean NOT NULL DEFAULT false;
ALTER TABLE teams
    ADD COLUMN budget_spent_usd numeric NOT NULL DEFAULT 0,
    ADD COLUMN budget_resets_at timestamptz,
    ADD COLUMN budget_blocked   boolean NOT NULL DEFAULT false;
CREATE INDEX virtual_keys_budget_resets_idx ON virtual_keys (budget_resets_at) WHERE budget_usd IS NOT NULL;
CREATE INDEX teams_budget_resets_idx ON teams (budget_resets_at) WHERE budget_usd IS NOT NULL;

CREATE FUNCTION budget_period_start(period text, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE period
        WHEN 'daily'   THEN date_trunc('day', at, 'UTC')
        WHEN 'weekly'  THEN date_trunc('week', at, 'UTC')
        WHEN 'monthly' THEN date_trunc('month', at, 'UTC')
        ELSE '-infinity'::timestamptz END
$$;

CREATE FUNCTION budget_period_end(period text, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE period
        WHEN 'daily'   THEN (date_trunc('day', at, 'UTC') AT TIME ZONE 'UTC' + interval '1 day') AT TIME ZONE 'UTC'
        WHEN 'weekly'  THEN (date_trunc('week', at, 'UTC') AT TIME ZONE 'UTC' + interval '1 week') AT TIME ZONE 'UTC'
        WHEN 'monthly' THEN (date_trunc('month', at, 'UTC') AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC'
        ELSE 'infinity'::timestamptz END
$$;

-- A budget set or changed: recompute the period's spend from spend_log, so
-- raising a budget unblocks at once and lowering it below the spend blocks.
CREATE FUNCTION budget_on_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.budget_usd IS NOT DISTINCT FROM OLD.budget_usd
       AND NEW.budget_period IS NOT DISTINCT FROM OLD.budget_period THEN
        RETURN NEW;
    END IF;
    IF NEW.budget_usd IS NULL THEN
        NEW.budget_spent_usd := 0;
        NEW.budget_resets_at := NULL;
        NEW.budget_blocked := false;
        RETURN NEW;
    END IF;
    NEW.budget_resets_at := budget_period_end(NEW.budget_period, now());
    IF TG_OP = 'INSERT' THEN
        NEW.budget_spent_usd := 0;
    ELSIF TG_TABLE_NAME = 'virtual_keys' THEN
        SELECT coalesce(sum(cost_usd), 0) INTO NEW.budget_spent_usd FROM spend_log
        WHERE key_id = NEW.id AND ts >= budget_period_start(NEW.budget_period, now());
    ELSE
        SELECT coalesce(sum(cost_usd), 0) INTO NEW.budget_spent_usd FROM spend_log
        WHERE team_id = NEW.id AND ts >= budget_period_start(NEW.budget_period, now());
    END IF;
    NEW.budget_blocked := NEW.budget_spent_usd >= NEW.budget_usd;
    RETURN NEW;
END $$;
CREATE TRIGGER virtual_keys_budget BEFORE INSERT OR UPDATE OF budget_usd, budget_period ON virtual_keys
    FOR EACH ROW EXECUTE FUNCTION budget_on_change();
CREATE TRIGGER teams_budget BEFORE INSERT OR UPDATE OF budget_usd, budget_period ON teams
    FOR EACH ROW EXECUTE FUNCTION budget_on_change();

-- Brings budget_blocked in line with the spend for these keys and teams
-- (resetting the spend of any whose period ended) and, for every flag that
-- flips, writes an audit row under one new config version so the change is
-- pushed to the data planes. Returns how many flags flipped.
CREATE FUNCTION budget_enforce(key_ids uuid[], team_ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v   bigint;
    n   integer := 0;
    rec record;
BEGIN
    UPDATE virtual_keys SET budget_spent_usd = 0, budget_resets_at = budget_period_end(budget_period, now())
    WHERE id = ANY (key_ids) AND budget_usd IS NOT NULL AND budget_resets_at <= now();
    UPDATE teams SET budget_spent_usd = 0, budget_resets_at = budget_period_end(budget_period, now())
    WHERE id = ANY (team_ids) AND budget_usd IS NOT NULL AND budget_resets_at <= now();
    FOR rec IN
        WITH k AS (
            UPDATE virtual_keys SET budget_blocked = NOT budget_blocked
            WHERE id = ANY (key_ids) AND status = 'active'
              AND budget_blocked <> (budget_usd IS NOT NULL AND budget_spent_usd >= budget_usd)
            RETURNING 'keys' AS resource, id, budget_blocked, budget_usd, budget_period, budget_spent_usd
        ), t AS (
            UPDATE teams SET budget_blocked = NOT budget_blocked
            WHERE id = ANY (team_ids)
              AND budget_blocked <> (budget_usd IS NOT NULL AND budget_spent_usd >= budget_usd)
            RETURNING 'teams' AS resource, id, budget_blocked, budget_usd, budget_period, budget_spent_usd
        )
        SELECT * FROM k UNION ALL SELECT * FROM t
    LOOP
        IF v IS NULL THEN
            UPDATE config_version SET version = version + 1, updated_at = now() RETURNING version INTO v;
        END IF;
        INSERT INTO audit_log (actor, actor_name, action, resource, resource_id, after, config_version)
        VALUES ('system', 'budget', CASE WHEN rec.budget_blocked THEN 'budget_exceeded' ELSE 'budget_reset' END,
                rec.resource, rec.id::text,
                jsonb_build_object('budget_usd', rec.budget_usd, 'budget_period', rec.budget_period,
                                   'spent_usd', rec.budget_spent_usd, 'blocked', rec.budget_blocked),
                v);
        n := n + 1;
    END LOOP;
    RETURN n;
END $$;

-- Periods that ended: reset their spend and lift their blocks. Only rows
-- due (budget_resets_at in the past) are touched, through the partial index.
CREATE FUNCTION budget_roll_periods() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    kids uuid[];
    tids uuid[];
BEGIN
    SELECT array_agg(id) INTO kids FROM virtual_keys WHERE budget_usd IS NOT NULL AND budget_resets_at <= now();
    SELECT array_agg(id) INTO tids FROM teams WHERE budget_usd IS NOT NULL AND budget_resets_at <= now();
    IF kids IS NULL AND tids IS NULL THEN
        RETURN 0;
    END IF;
    RETURN budget_enforce(coalesce(kids, '{}'), coalesce(tids, '{}'));
END $$;

-- spend_log_insert_batch adds each new row's cost to these: see 005.

-- Budgets set before this migration: start counting from what spend_log
-- already holds for the current period, and have every data plane fetch a
-- full snapshot (a version bump with no audit row asks for a resync).
UPDATE virtual_keys k SET budget_resets_at = budget_period_end(k.budget_period, now()),
    budget_spent_usd = (SELECT coalesce(sum(s.cost_usd), 0) FROM spend_log s
                        WHERE s.key_id = k.id AND s.ts >= budget_period_start(k.budget_period, now()))
WHERE k.budget_usd IS NOT NULL;
UPDATE teams t SET budget_resets_at = budget_period_end(t.budget_period, now()),
    budget_spent_usd = (SELECT coalesce(sum(s.cost_usd), 0) FROM spend_log s
                        WHERE s.team_id = t.id AND s.ts >= budget_period_start(t.budget_period, now()))
WHERE t.budget_usd IS NOT NULL;
UPDATE virtual_keys SET budget_blocked = true WHERE budget_usd IS NOT NULL AND budget_spent_usd >= budget_usd;
UPDATE teams SET budget_blocked = true WHERE budget_usd IS NOT NULL AND budget_spent_usd >= budget_usd;
UPDATE config_version SET version = version + 1, updated_at = now()
WHERE EXISTS (SELECT 1 FROM virtual_keys WHERE budget_usd IS NOT NULL)
   OR EXISTS (SELECT 1 FROM teams WHERE budget_usd IS NOT NULL);
