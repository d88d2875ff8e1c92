#include "metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "db.h"

/* Series are few (routes x methods x statuses), so a small table searched
 * linearly under one mutex is plenty for an admin API. */
#define MAX_SERIES 256

typedef struct {
    const char   *route;
    char          method[8];
    int           status;
    unsigned long count;
} series;

static const double g_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
#define NBUCKETS (sizeof g_bounds / sizeof g_bounds[0])

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static series          g_series[MAX_SERIES];
static int             g_nseries;
static unsigned long   g_overflow;
static unsigned long   g_buckets[NBUCKETS];   /* non-cumulative; summed when rendered */
static unsigned long   g_count;
static double          g_sum;

void cp_metrics_observe(const char *route, const char *method, int status, double seconds)
{
    pthread_mutex_lock(&g_mu);
    int i = 0;
    while (i < g_nseries && !(g_series[i].route == route && g_series[i].status == status &&
                              strcmp(g_series[i].method, method) == 0))
        i++;
    if (i == g_nseries && g_nseries < MAX_SERIES) {
        g_series[i].route = route;
        snprintf(g_series[i].method, sizeof g_series[i].method, "%s",
                 strlen(method) < sizeof g_series[i].method ? method : "OTHER");
        g_series[i].status = status;
        g_nseries++;
    }
    if (i < g_nseries) g_series[i].count++;
    else g_overflow++;
    for (size_t b = 0; b < NBUCKETS; b++) {
        if (seconds <= g_bounds[b]) { g_buckets[b]++; break; }
    }
    g_count++;
    g_sum += seconds;
    pthread_mutex_unlock(&g_mu);
}

/* Data planes by the hash of their id: a few hundred at most per control plane. */
#define MAX_DATAPLANES   4096
#define DP_CONNECTED_S   15     /* three missed Hellos: gone */

static uint64_t      g_dp_hash[MAX_DATAPLANES];
static time_t        g_dp_seen[MAX_DATAPLANES];
static unsigned long g_usage_events, g_usage_inserted, g_usage_batches_ok, g_usage_batches_failed;
static double        g_usage_lag_s;

void cp_metrics_dataplane_seen(const char *id)
{
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 1099511628211ull;
    if (!h) h = 1;
    time_t now = time(NULL);
    pthread_mutex_lock(&g_mu);
    size_t i = h % MAX_DATAPLANES, free_slot = MAX_DATAPLANES;
    for (size_t probe = 0; probe < MAX_DATAPLANES; probe++, i = (i + 1) % MAX_DATAPLANES) {
        if (g_dp_hash[i] == h) { free_slot = i; break; }
        if (!g_dp_hash[i] || now - g_dp_seen[i] > 3600) { if (free_slot == MAX_DATAPLANES) free_slot = i; if (!g_dp_hash[i]) break; }
    }
    if (free_slot < MAX_DATAPLANES) { g_dp_hash[free_slot] = h; g_dp_seen[free_slot] = now; }
    pthread_mutex_unlock(&g_mu);
}

void cp_metrics_usage_batch(size_t events, size_t inserted, int64_t newest_ts_ms, int ok)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double lag = newest_ts_ms > 0 ? (double)now.tv_sec + (double)now.tv_nsec / 1e9 - (double)newest_ts_ms / 1e3 : 0;
    pthread_mutex_lock(&g_mu);
    if (ok) {
        g_usage_batches_ok++;
        g_usage_events += events;
        g_usage_inserted += inserted;
        if (newest_ts_ms > 0) g_usage_lag_s = lag > 0 ? lag : 0;
    } else {
        g_usage_batches_failed++;
    }
    pthread_mutex_unlock(&g_mu);
}

void cp_metrics_render(buf_t *out)
{
    pthread_mutex_lock(&g_mu);
    buf_puts(out, "# HELP controlplane_http_requests_total Admin API requests by route, method and status.\n"
                  "# TYPE controlplane_http_requests_total counter\n");
    for (int i = 0; i < g_nseries; i++) {
        buf_puts(out, "controlplane_http_requests_total{route=");
        buf_json_str(out, g_series[i].route, strlen(g_series[i].route));
        buf_printf(out, ",method=\"%s\",status=\"%d\"} %lu\n", g_series[i].method, g_series[i].status,
                   g_series[i].count);
    }
    if (g_overflow)
        buf_printf(out, "controlplane_http_requests_total{route=\"other\",method=\"OTHER\",status=\"0\"} %lu\n",
                   g_overflow);
    buf_puts(out, "# HELP controlplane_http_request_duration_seconds Admin API request latency.\n"
                  "# TYPE controlplane_http_request_duration_seconds histogram\n");
    unsigned long cum = 0;
    for (size_t b = 0; b < NBUCKETS; b++) {
        cum += g_buckets[b];
        buf_printf(out, "controlplane_http_request_duration_seconds_bucket{le=\"%g\"} %lu\n", g_bounds[b], cum);
    }
    buf_printf(out, "controlplane_http_request_duration_seconds_bucket{le=\"+Inf\"} %lu\n", g_count);
    buf_printf(out, "controlplane_http_request_duration_seconds_sum %.6f\n", g_sum);
    buf_printf(out, "controlplane_http_request_duration_seconds_count %lu\n", g_count);
    time_t now = time(NULL);
    unsigned long dps = 0;
    for (size_t i = 0; i < MAX_DATAPLANES; i++) dps += g_dp_hash[i] && now - g_dp_seen[i] <= DP_CONNECTED_S;
    buf_printf(out, "# HELP controlplane_dataplanes_connected Data planes heard from in the last %d s.\n"
                    "# TYPE controlplane_dataplanes_connected gauge\ncontrolplane_dataplanes_connected %lu\n",
               DP_CONNECTED_S, dps);
    buf_printf(out, "# HELP controlplane_usage_events_total Usage events received in stored batches (rate = ingestion rate).\n"
                    "# TYPE controlplane_usage_events_total counter\ncontrolplane_usage_events_total %lu\n", g_usage_events);
    buf_printf(out, "# HELP controlplane_usage_events_inserted_total Usage events new to spend_log (replays excluded).\n"
                    "# TYPE controlplane_usage_events_inserted_total counter\ncontrolplane_usage_events_inserted_total %lu\n",
               g_usage_inserted);
    buf_printf(out, "# HELP controlplane_usage_batches_total Usage batches by result.\n"
                    "# TYPE controlplane_usage_batches_total counter\n"
                    "controlplane_usage_batches_total{result=\"stored\"} %lu\n"
                    "controlplane_usage_batches_total{result=\"failed\"} %lu\n", g_usage_batches_ok, g_usage_batches_failed);
    buf_printf(out, "# HELP controlplane_usage_lag_seconds Age of the newest event of the last stored batch.\n"
                    "# TYPE controlplane_usage_lag_seconds gauge\ncontrolplane_usage_lag_seconds %.3f\n", g_usage_lag_s);
    pthread_mutex_unlock(&g_mu);
    buf_printf(out, "# HELP controlplane_db_errors_total Failed Postgres statements (SQL errors and lost connections).\n"
                    "# TYPE controlplane_db_errors_total counter\n"
                    "controlplane_db_errors_total %lu\n", cp_db_error_count());
    buf_printf(out, "# HELP controlplane_db_reconnects_total Postgres connection resets.\n"
                    "# TYPE controlplane_db_reconnects_total counter\n"
                    "controlplane_db_reconnects_total %lu\n", cp_db_reconnect_count());
}
