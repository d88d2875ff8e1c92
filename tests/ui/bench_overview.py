#!/usr/bin/env python3
"""How fast GET /api/overview answers over a large spend_log (not part of
`make test`: inserting a million rows takes about half a minute).

  UI_SUITE_SERVE=1 UI_SUITE_SERVE_FILE=/tmp/ui.txt bash tests/integration/suite_ui.sh &
  read CP_URL CP_ADMIN_TOKEN viewer CP_PG_PORT </tmp/ui.txt   # once the file is written
  CP_URL=$CP_URL CP_ADMIN_TOKEN=$CP_ADMIN_TOKEN CP_PG_PORT=$CP_PG_PORT python3 tests/ui/bench_overview.py [ROWS]

Inserts ROWS (default 1,000,000) rows over the last 60 days with
generate_series, ANALYZEs, then prints the time of three calls for each
range. Prints, asserts nothing."""
import os
import subprocess
import sys
import time
import urllib.request

URL = os.environ["CP_URL"]
TOKEN = os.environ["CP_ADMIN_TOKEN"]
PG_PORT = os.environ["CP_PG_PORT"]
ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000

SQL = f"""
INSERT INTO spend_log (request_id, ts, key_id, team_id, model_alias, provider, prompt_tokens,
                       completion_tokens, cost_usd, latency_ms, status)
SELECT 'bench-' || g, now() - random() * interval '60 days', k.ids[1 + g % array_length(k.ids, 1)], NULL,
       (ARRAY['gpt-4o-mini', 'claude-haiku', 'gpt-b', 'llama'])[1 + g % 4], 'mock', 100 + g % 900, 10 + g % 300,
       (g % 1000) / 100000.0, 50 + g % 2000, CASE WHEN g % 37 = 0 THEN 500 ELSE 200 END
FROM generate_series(1, {ROWS}) g, (SELECT array_agg(id) AS ids FROM virtual_keys) k;
-- ingestion keeps these rollups (migrations/005); rows written straight into
-- spend_log need the same aggregation the migration's backfill does
INSERT INTO spend_daily AS d (day, team_id, key_id, model_alias, requests, errors, tokens, cost_usd)
SELECT (ts AT TIME ZONE 'UTC')::date, team_id, key_id, model_alias, count(*), count(*) FILTER (WHERE status >= 400),
       sum(prompt_tokens + completion_tokens), sum(cost_usd)
FROM spend_log WHERE request_id LIKE 'bench-%' GROUP BY 1, 2, 3, 4
ON CONFLICT (day, team_id, key_id, model_alias) DO UPDATE SET requests = d.requests + EXCLUDED.requests,
    errors = d.errors + EXCLUDED.errors, tokens = d.tokens + EXCLUDED.tokens, cost_usd = d.cost_usd + EXCLUDED.cost_usd;
INSERT INTO spend_latency_daily AS l (day, team_id, key_id, bucket, n)
SELECT (ts AT TIME ZONE 'UTC')::date, team_id, key_id, latency_bucket(latency_ms), count(*)
FROM spend_log WHERE request_id LIKE 'bench-%' AND latency_ms IS NOT NULL GROUP BY 1, 2, 3, 4
ON CONFLICT (day, team_id, key_id, bucket) DO UPDATE SET n = l.n + EXCLUDED.n;
ANALYZE spend_log;
ANALYZE spend_daily;
ANALYZE spend_latency_daily;
"""

t0 = time.time()
subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "gateway",
                "-d", "gateway", "-c", SQL], check=True, timeout=600)
print(f"inserted {ROWS} rows in {time.time() - t0:.1f} s")
for days in (14, 30, 90):
    times = []
    for _ in range(3):
        req = urllib.request.Request(f"{URL}/api/overview?days={days}", headers={"Authorization": f"Bearer {TOKEN}"})
        t = time.time()
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
        times.append(time.time() - t)
    print(f"GET /api/overview?days={days}: " + ", ".join(f"{x:.3f} s" for x in times))
