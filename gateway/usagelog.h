/* usagelog: a worker's usage events, handed to the agent in batches.
 *
 * Control-plane mode only. After each request the worker copies one event
 * into a fixed ring (no allocation, no syscall). Every USAGELOG_FLUSH_MS,
 * or when USAGELOG_BATCH events are waiting, the ring is packed as one
 * UsageBatch and written to state_dir/usage/ as a file of its own (written
 * to a .tmp name, then renamed: the agent never sees half a batch). Names
 * sort by time: <unix ms>-<pid>-<seq>.ub.
 *
 * The agent (usageship.h) owns the files from then on: it fsyncs, sends and
 * deletes each one after the control plane acked it. A spool directory is
 * the handoff, so nothing waits for the agent and nothing is lost when the
 * agent or the control plane is away, or across a gateway restart. What can
 * be lost: the events of a worker killed with SIGKILL (at most one flush
 * interval), and batches that never reached the disk on a machine crash
 * (the worker does not fsync; the agent does before sending).
 */
#ifndef GW_USAGELOG_H
#define GW_USAGELOG_H

#include <stdint.h>

#include "usage.h"

#define USAGELOG_BATCH     500
#define USAGELOG_VERDICTS  64      /* A/B verdicts per batch (abjudge.h) */
#define USAGELOG_FLUSH_MS  100

struct event_base;
typedef struct usagelog usagelog;

/* One request's event; strings are copied (and truncated to their bounds). */
typedef struct usage_event_in {
    const char *request_id;
    int64_t     ts_ms;
    const char *key_id, *team_id;      /* "" when none */
    const char *model_alias, *provider, *upstream_model;   /* NULL when none */
    const char *routed_alias;          /* the alias that served it when not model_alias (fallback, split, tier) */
    usage_t     usage;
    int64_t     cost_e10;
    double      latency_ms, ttft_ms;
    int         status;
    int         attempts;
    int         cache_hit;
    const char *guard;                 /* guardrail verdicts without matched text, NULL when none */
    double      cache_similarity;      /* semantic cache lookup score, 0 when none */
} usage_event_in;

/* One A/B verdict (abjudge.h); strings are copied. */
typedef struct ab_verdict_in {
    const char *request_id;
    int64_t     ts_ms;
    const char *alias, *variant_a, *variant_b;
    const char *winner;                /* "a", "b", "tie" */
    const char *judge_alias, *judge_model;
} ab_verdict_in;

/* NULL on failure (logged). */
usagelog *usagelog_open(struct event_base *base, const char *state_dir, const char *dataplane_id, int worker);
void      usagelog_add(usagelog *l, const usage_event_in *e);
/* Verdicts travel in the same batches and spool (NULL l: dropped). */
void      usagelog_add_verdict(usagelog *l, const ab_verdict_in *v);
/* Writes what is waiting now (drain, exit). */
void      usagelog_flush(usagelog *l);
/* Flushes, then frees. */
void      usagelog_close(usagelog *l);

/* state_dir/usage: where batches wait for the agent. */
int       usagelog_dir(const char *state_dir, char *out, size_t outlen);

#endif
