/* abjudge: evaluated A/B for an alias with a traffic split.
 *
 * An alias with router.split_alias and router.judge has router.judge_sample_ratio
 * of its chat and /v1/messages requests (streamed or not) judged: after the
 * client's answer is written, the worker asks the other variant the same
 * (decorated) prompt through that alias's router pick and provider, then asks
 * the judge alias, with the rubric, which answer is better. The two answers
 * are shown in a random order (position bias) and the verdict mapped back.
 * Verdicts (alias, variant A = the alias, variant B = its split alias,
 * winner a/b/tie, judge model, request id, time; never prompt or answer
 * text) go to the control plane with the usage events (usagelog.h), and to
 * the gateway's log.
 *
 * Nothing here is on a client's path: jobs start from a timer after the
 * reply, are bounded in number per worker (ABJUDGE_MAX_JOBS; beyond it a
 * sample is dropped), and die with the worker.
 */
#ifndef GW_ABJUDGE_H
#define GW_ABJUDGE_H

#include <stddef.h>
#include <stdint.h>

#include "providers/provider.h"

#define ABJUDGE_MAX_JOBS    32
#define ABJUDGE_TEXT_MAX    (32u << 10)   /* bytes of each answer and of the question shown to the judge */

struct event_base;
struct upstream;
struct router;
struct usagelog;
struct gw_config;
struct gw_model;

typedef struct abjudge abjudge;

abjudge *abjudge_new(struct event_base *base, struct upstream *up, struct router *router, struct usagelog *usage);
/* Cancels the jobs in flight (their verdicts are lost). */
void     abjudge_free(abjudge *j);

typedef struct abjudge_sample {
    struct gw_config      *cfg;        /* the job takes its own ref */
    const struct gw_model *model;      /* the alias with the split and the judge */
    const struct gw_model *served;     /* the variant that answered the client */
    gw_route               route;      /* ROUTE_CHAT or ROUTE_MESSAGES */
    const char            *body;       /* the client's (decorated) body; copied */
    size_t                 body_len;
    const char            *answer;     /* the client's answer as sent (client dialect, SSE when stream); copied */
    size_t                 answer_len;
    int                    stream;
    const char            *request_id;
    int64_t                ts_ms;
} abjudge_sample;

/* Queues a judged sample; 0 queued, -1 dropped (too many in flight, memory). */
int  abjudge_start(abjudge *j, const abjudge_sample *s);
/* Decides whether this request is sampled (the alias's judge_sample_ratio). */
int  abjudge_wanted(const struct gw_model *model, gw_route route, double random01);
/* The text of a streamed answer as the client got it (OpenAI chunks or
 * Anthropic events), bounded by ABJUDGE_TEXT_MAX; -1 out of memory. */
int  abjudge_stream_text(gw_route route, const char *sse, size_t len, buf_t *out);

/* The judge's answer read robustly: 1 the first answer shown ("A"), 2 the
 * second ("B"), 0 a tie, -1 no verdict found. */
int  abjudge_parse_verdict(const char *text, size_t len);

typedef struct abjudge_stats { uint64_t started, verdicts, dropped, failed, unparsed; } abjudge_stats;
void abjudge_get_stats(const abjudge *j, abjudge_stats *out);

#endif
