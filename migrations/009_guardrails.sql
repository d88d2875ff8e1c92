-- 009: guardrails. An alias's guardrail policies as a JSON array of policy
-- objects shaped like the YAML `guardrails:` entries (README "Guardrails");
-- NULL: none. Checked by the admin API (with the gateway's own compiler) and
-- carried in the snapshot (ModelAlias.guardrails_json).
ALTER TABLE models ADD COLUMN guardrails jsonb CHECK (guardrails IS NULL OR jsonb_typeof(guardrails) = 'array');
