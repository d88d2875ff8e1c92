-- 004: whether the control plane serves a data plane, and why not
-- (version compatibility), shown by GET /api/dataplanes.
ALTER TABLE dataplanes
    ADD COLUMN status text NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'refused')),
    ADD COLUMN status_reason text;
