/* metrics: Prometheus counters shared by every process of one gateway.
 *
 * The master maps one anonymous shared region before it forks; each worker
 * owns one slot of it (its index) and is the only writer of that slot, so
 * counting is a plain load and store, no lock and no atomic read-modify-
 * write. Whoever answers GET /metrics (any worker: they all accept on the
 * metrics listener) sums the slots. The agent writes the node-wide gauges
 * (control-plane link, spool depth). A respawned worker keeps its slot's
 * counts, so counters never go back.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct event_base;
struct worker;

enum { MX_CACHE_HIT, MX_CACHE_MISS, MX_CACHE_BYPASS, MX_CACHE_KINDS };
enum { MX_LIMIT_RPM, MX_LIMIT_TPM, MX_LIMIT_BUDGET, MX_LIMIT_KINDS };
/* semantic cache: hit, miss, then one skip per reason of semprompt.h (SEM_SKIP_OPTOUT.. in order) */
enum { MX_SEM_HIT, MX_SEM_MISS, MX_SEM_SKIP_FIRST, MX_SEM_KINDS = MX_SEM_SKIP_FIRST + 5 };
/* evaluated A/B (abjudge.h): judgements started, verdicts recorded, dropped
 * (too many in flight), failed (a call failed), unparsed (no verdict read) */
enum { MX_AB_STARTED, MX_AB_VERDICT, MX_AB_DROPPED, MX_AB_FAILED, MX_AB_UNPARSED, MX_AB_KINDS };

/* One finished API request, as request.c saw it. */
typedef struct mx_request {
    const char *model;          /* alias, or NULL before it was resolved */
    const char *provider;
    const char *upstream_model;
    int         status;
    int64_t     input_tokens, output_tokens;
    int64_t     cost_e10;       /* 1e-10 USD */
    double      total_ms;
    double      ttft_ms;        /* 0: no first byte */
    double      upstream_ms;    /* time spent waiting on the provider */
    int         upstream_failed;/* transport error, timeout or 5xx from the deployment */
    int         attempted;      /* a deployment was called */
} mx_request;

/* Master, before the first fork: maps the region (0, or -1 logged). */
int  metrics_init(int max_workers);
/* Master: the bound metrics listener every worker accepts on (-1: none). */
void metrics_set_listener(int fd);
int  metrics_listener(void);

/* Worker: claim slot index, serve /metrics on the listener, refresh the
 * worker's gauges once a second. 0, or -1 (logged). */
int  metrics_worker_start(struct worker *w);
void metrics_worker_stop(void);

/* Hot path: no allocation, no syscall. No-ops before metrics_init. */
void metrics_request(const mx_request *m);
void metrics_cache(int result);
void metrics_judge(int result);
void metrics_semcache(int result);
/* One upstream attempt's outcome for the deployment's health and failure
 * counts, and whether this worker's breaker now keeps traffic away from it. */
void metrics_attempt(const char *model, const char *provider, const char *upstream_model, int index, int failed,
                     int breaker_open);
/* A request moved from alias `from` to alias `to` (gatewayllm_fallbacks_total{from,to}). */
void metrics_fallback(const char *from, const char *to);
void metrics_rate_limited(int kind);
/* Guardrail verdicts: gatewayllm_guardrail_verdicts_total{stage,detector,action} += n. */
void metrics_guard(const char *stage, const char *detector, const char *action, uint64_t n);
void metrics_trace_spans(uint64_t exported, uint64_t dropped);

/* Agent: node-wide gauges. */
void metrics_set_controlplane(int connected);
void metrics_set_spool(uint64_t files);

/* Renders the Prometheus text format (tests and the /metrics route). */
void metrics_render(buf_t *out);

#endif
