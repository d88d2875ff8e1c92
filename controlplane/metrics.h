/* metrics: the control plane's own Prometheus counters (thread-safe). */
#ifndef CP_METRICS_H
#define CP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* route is the pattern ("/api/keys/{id}") or "unmatched"; a static string. */
void cp_metrics_observe(const char *route, const char *method, int status, double seconds);
/* A data plane said Hello (it does every 5 s while connected). */
void cp_metrics_dataplane_seen(const char *dataplane_id);
/* One usage batch: its events, how many were new, the newest event's time
 * (ms since the epoch) for the ingestion lag; ok = 0: refused or not stored. */
void cp_metrics_usage_batch(size_t events, size_t inserted, int64_t newest_ts_ms, int ok);
/* Appends the text exposition format (version 0.0.4). */
void cp_metrics_render(buf_t *out);

#endif
