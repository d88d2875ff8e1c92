#include "metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

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
    pthread_mutex_unlock(&g_mu);
    buf_printf(out, "# HELP controlplane_db_errors_total Failed Postgres statements (SQL errors and lost connections).\n"
                    "# TYPE controlplane_db_errors_total counter\n"
                    "controlplane_db_errors_total %lu\n", cp_db_error_count());
    buf_printf(out, "# HELP controlplane_db_reconnects_total Postgres connection resets.\n"
                    "# TYPE controlplane_db_reconnects_total counter\n"
                    "controlplane_db_reconnects_total %lu\n", cp_db_reconnect_count());
}
