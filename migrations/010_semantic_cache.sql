-- 010: the semantic cache. An alias's settings live in its cache object, as
-- in YAML: cache: {"semantic": {"embedding_model": "emb", "threshold": 0.92,
-- "ttl_s": 3600, "max_temperature": 1.0}}; the admin API checks them, this
-- keeps the shape in the table whatever writes to it.
ALTER TABLE models ADD CONSTRAINT models_cache_semantic_object CHECK (
    cache IS NULL OR NOT (cache ? 'semantic') OR jsonb_typeof(cache -> 'semantic') IN ('object', 'null'));
