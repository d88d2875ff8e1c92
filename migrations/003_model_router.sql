-- 003: per-alias router settings (retries, breaker, hedging, split, classifier tiers),
-- the YAML `router:` mapping as a JSON object; NULL: the defaults.
ALTER TABLE models ADD COLUMN router jsonb CHECK (router IS NULL OR jsonb_typeof(router) = 'object');
