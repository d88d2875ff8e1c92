-- 002: data planes report how many workers they run (shown by GET /api/dataplanes).
ALTER TABLE dataplanes ADD COLUMN workers integer CHECK (workers >= 0);
