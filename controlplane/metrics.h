/* metrics: the control plane's own Prometheus counters (thread-safe). */
#ifndef CP_METRICS_H
#define CP_METRICS_H

#include "buf.h"

/* route is the pattern ("/api/keys/{id}") or "unmatched"; a static string. */
void cp_metrics_observe(const char *route, const char *method, int status, double seconds);
/* Appends the text exposition format (version 0.0.4). */
void cp_metrics_render(buf_t *out);

#endif
