/* request: one API request's life, start to end.
 *
 *   authenticate -> parse + validate -> resolve alias and scope -> pick a
 *   deployment -> render the provider call -> attempt (upstream or local)
 *   -> relay (streamed chunk by chunk, or buffered) -> access log.
 *
 * Clients speak OpenAI (chat, completions, embeddings) or Anthropic
 * (/v1/messages). When the provider speaks the same, its call is the client's
 * body with the model rewritten and its answer is relayed as it comes;
 * otherwise (r->translate) the body goes through the internal chat form and
 * the answer or stream through translate.h into the client's dialect.
 *
 * A request that finishes synchronously (an error, /v1/models) never pauses
 * its connection. One that goes upstream pauses it (so pipelined bytes wait
 * in the socket and the idle timeout does not fire while the provider
 * thinks), holds a ref on the config snapshot it started with, and resumes
 * the connection once the reply is written. If the client goes away first,
 * evhtp's error/fini hooks cancel the upstream call.
 */
#include "request.h"
#include "evloop.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <evhtp.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/sha.h>

#include "abjudge.h"
#include "accesslog.h"
#include "auth.h"
#include "buf.h"
#include "cache.h"
#include "classify.h"
#include "config.h"
#include "decorate.h"
#include "guard.h"
#include "guardcfg.h"
#include "guardhook.h"
#include "guardjson.h"
#include "httputil.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pricing.h"
#include "promptlog.h"
#include "providers/embed.h"
#include "providers/provider.h"
#include "ratelimit.h"
#include "respredis.h"
#include "responses.h"
#include "budget.h"
#include "router.h"
#include "semcache.h"
#include "semembed.h"
#include "semprompt.h"
#include "sse.h"
#include "structout.h"
#include "trace.h"
#include "translate.h"
#include "upstream.h"
#include "usage.h"
#include "usagelog.h"
#include "usagestrip.h"
#include "validate.h"
#include "worker.h"

#define MAX_BUFFERED_RESPONSE (64u << 20)  /* non-streaming upstream bodies */
#define OUTPUT_HIGH_WATER     (1u << 20)   /* pause the upstream above this much unsent to the client */
#define OUTPUT_LOW_WATER      (256u << 10)
#define JSON_MAX_DEPTH        64
#define MAX_ATTEMPTS_TOTAL    10           /* over every alias of a fallback chain */

struct hedge;

typedef struct gw_req {
    worker_t            *w;
    struct gw_req       *pool_next;    /* in the worker's pool of freed states */
    evhtp_request_t     *req;          /* NULL once evhtp freed it (client gone) */
    gw_config           *cfg;          /* the snapshot this request started with */
    const gw_key        *key;          /* valid only during the synchronous part */
    char                 key_name[64]; /* copied: a config push may replace the key mid-request */
    char                 key_id[37], team_id[37];
    int64_t              ts_ms;        /* wall clock at start, for usage events */
    const gw_model      *model;
    const gw_deployment *dep;
    gw_route             route;
    int                  stream;
    json_doc            *doc;
    provider_http        http;
    upstream_req_t      *up;
    struct event        *timer;        /* mock latency, or backpressure polling */
    buf_t                local;        /* a local provider's answer */
    buf_t                resp;         /* buffered non-streaming upstream body */
    struct evbuffer     *chunk;        /* reused for relaying stream chunks */
    sse_parser           sse;          /* watches a relayed stream for its usage chunk */
    usagestrip           strip;        /* drops the usage chunk the gateway asked for (strip_usage) */
    usage_t              usage;
    int64_t              cost_e10;     /* 1e-10 USD, from usage and the deployment's price */
    rl_ticket            rl;           /* what the key's rate limits charged (rl.active: it has limits) */
    rl_ticket            rl_team;      /* same for the key's team */
    budget_ticket        budget;       /* whose budgets the cost is charged to */
    int                  budget_on;
    int                  want_usage;   /* stream without include_usage: ask upstream for it anyway */
    chat_client          client;       /* the dialect the client speaks (errors, answers) */
    int                  translate;    /* client and provider dialects differ: through the chat form */
    chat_req             chat;         /* translate: the request in the internal form */
    xlate_stream         xs;           /* translate + stream: decoder and encoder */
    int                  xs_on;        /* xs is started (and must be freed) */
    int                  strip_usage;
    int                  up_status;
    int                  status;       /* what the client got */
    int                  relaying;     /* chunked reply started */
    int                  up_paused;
    int                  conn_paused;
    const char          *error;        /* short reason for the access log */
    size_t               bytes_out;
    char                 id[40];
    struct timespec      t0;
    struct timespec      t_up;         /* the provider call started (metrics: overhead excludes it) */
    double               ttft_ms;
    double               total_ms;     /* read once when the request finishes (log, usage, metrics) */
    double               up_ms;        /* time spent waiting on the provider */
    int                  up_failed;    /* transport error, timeout or 5xx: the deployment's health */
    int                  cache_mode;   /* CACHE_OFF unless the alias or the request asked (cache.h) */
    int                  cache_hit;
    int                  cache_rec;    /* recording a stream to store it */
    long                 cache_ttl_s;
    uint8_t              cache_key[32];
    cache_lookup        *cache_wait;   /* a Redis lookup in flight */
    struct respredis_op *prev_wait;    /* previous_response_id asked of Redis (responses.h) */
    buf_t                cache_buf;    /* the recorded stream */
    int                  log_prompt;   /* sampled for the prompt log (promptlog.h) */
    trace_ctx            tr;           /* spans (trace.h) */
    http_req_headers     hdr;          /* the request headers read, indexed once */
    char                 tp_line[72];  /* "traceparent: ..." for the upstream */
    /* routing (router.h): one attempt at a time; a failed one before the
     * client saw a byte moves on to another deployment or fallback alias */
    const gw_model      *serving;      /* alias being tried: the requested one or a fallback */
    size_t               dep_index;    /* r->dep == &serving->deployments[dep_index] */
    uint64_t             tried;        /* deployments of `serving` used (bit per index) */
    int                  attempts;     /* upstream attempts, every alias */
    int                  alias_attempts;
    size_t               next_fallback;
    int                  ctx_fallback_used;
    const char          *fallback;     /* alias fallen back to (header, log), or NULL */
    int                  routed;       /* counted in the router's active requests */
    int                  in_attempt;   /* started and not yet reported to the router */
    int                  retry_slot;   /* holds a retry-budget slot */
    int                  chat_parsed;
    int64_t              est_tokens;   /* usage strategy: tokens charged at the start */
    long                 held_ms;      /* every deployment is held by Retry-After this long */
    struct event        *retry_timer;
    struct timespec      attempt_t0;
    double               attempt_ttfb_ms;
    upstream_result      last_res;
    char                 last_errmsg[160];
    char                 last_ctype[128];
    const char          *err_param;    /* a deployment could not render the call: the 400's */
    const char          *err_code;     /* param, code and message if none can */
    char                 err_msg[256];
    struct hedge        *hedge;        /* a second attempt racing the first (policy.hedge_ms) */
    struct event        *hedge_timer;
    const char          *tier;         /* classifier: "cheap" or "flagship" */
    double               complexity;   /* classifier: the prompt's score */
    const char          *split;        /* traffic split: the alias this request was sent to */
    char                 guard[128];   /* guardrail verdicts for the usage event (no matched text) */
    guard_chain          gchain;       /* the alias's then the key's policies (guardcfg.h) */
    guard_result         gres;         /* what they decided, input and output */
    guard_sse           *gsse;         /* an answer stream being guarded */
    guard_hook          *ghook;        /* the guard webhook in flight */
    double               cache_similarity;  /* semantic cache: nearest cached prompt's score, 0: none */
    int                  schema_retries;   /* structured output (structout.h): answers retried */
    int                  schema_pending;   /* the last answer broke the schema: the reply if none follows */
    char                 schema_msg[300];
    structout_stream    *sos;          /* a streamed answer checked against its schema at the end */
    int                  ab_sampled;   /* evaluated A/B: this request is judged (abjudge.h) */
    buf_t                ab_answer;    /* ... its answer as the client got it */
    /* semantic cache (semcache.h): embed, look up, store with the vector */
    int                  sem_on;       /* the alias's semantic cache was consulted */
    uint8_t              sem_part[32];
    semembed            *sem_embed;    /* the embedding call in flight */
    semcache_lookup     *sem_wait;     /* a Redis catch-up in flight */
    float               *sem_vec;      /* the prompt's embedding, kept to store the answer */
    uint32_t             sem_dim;
} gw_req;

/* What one attempt owns; a hedge swaps its own in and out of gw_req. */
typedef struct attempt_slot {
    upstream_req_t      *up;
    provider_http        http;
    buf_t                resp;
    int                  up_status;
    const gw_deployment *dep;
    size_t               dep_index;
    int                  translate;
    int                  strip_usage;
    usagestrip           strip;
    struct timespec      t0;
    double               ttfb_ms;
    int                  in_attempt;
    int                  retry_slot;
    const char          *error;
} attempt_slot;

typedef struct hedge {
    struct gw_req       *r;
    attempt_slot         s;            /* the racing attempt; once it won, the loser's leftovers */
    int                  racing;       /* s.up is in flight as the hedge */
    int                  promoted;     /* the hedge's upstream callbacks serve the request now */
} hedge_t;

static double ms_between(const struct timespec *t0, const struct timespec *t1)
{
    return (double)(t1->tv_sec - t0->tv_sec) * 1e3 + (double)(t1->tv_nsec - t0->tv_nsec) / 1e6;
}

static double ms_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return ms_between(t0, &now);
}

static const char *route_path(gw_route r)
{
    switch (r) {
    case ROUTE_CHAT: return "/v1/chat/completions";
    case ROUTE_COMPLETIONS: return "/v1/completions";
    case ROUTE_EMBEDDINGS: return "/v1/embeddings";
    case ROUTE_MESSAGES: return "/v1/messages";
    case ROUTE_RESPONSES: return "/v1/responses";
    }
    return "";
}

/* "2026-01-02T03:04:05Z", formatted once per second */
static const char *utc_now(void)
{
    static time_t cached_sec = -1;
    static char cached[32];
    time_t now = time(NULL);
    if (now != cached_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%SZ", &tm);
        cached_sec = now;
    }
    return cached;
}

static void put_field_str(buf_t *b, const char *name, const char *v)
{
    buf_puts(b, name);
    buf_json_str(b, v, strlen(v));
}

/* One JSON line per request; built without printf: this runs for every request. */
static void access_log(gw_req *r)
{
    if (!accesslog_enabled(r->w->alog)) return;
    buf_t *b = &r->w->logline;
    buf_reset(b);
    buf_puts(b, "{\"ts\":\"");
    buf_puts(b, utc_now());
    buf_puts(b, "\",\"level\":\"");
    buf_puts(b, r->status >= 500 ? "error" : r->status >= 400 ? "warn" : "info");
    buf_puts(b, "\",\"request_id\":\"");
    buf_puts(b, r->id);
    if (r->tr.propagate) {   /* joins the line to its trace */
        buf_puts(b, "\",\"trace_id\":\"");
        buf_append(b, trace_id_hex(&r->tr), 32);
    }
    buf_puts(b, "\",\"method\":\"POST\",\"path\":\"");
    buf_puts(b, route_path(r->route));
    buf_puts(b, "\",\"status\":");
    buf_put_i64(b, r->status);
    if (r->key_name[0]) put_field_str(b, ",\"key_name\":", r->key_name);
    if (r->model) put_field_str(b, ",\"model\":", r->model->alias);
    if (r->dep) {
        put_field_str(b, ",\"provider\":", r->dep->provider->name);
        put_field_str(b, ",\"upstream_model\":", r->dep->model);
        buf_puts(b, ",\"upstream_status\":");
        buf_put_i64(b, r->up_status);
        buf_puts(b, ",\"attempts\":");
        buf_put_i64(b, r->cache_hit ? 0 : r->attempts);
        if (r->cache_hit) buf_puts(b, ",\"cache_hit\":true");
        if (r->fallback) put_field_str(b, ",\"fallback\":", r->fallback);
    }
    if (r->tier) {
        put_field_str(b, ",\"classifier\":", r->tier);
        buf_puts(b, ",\"complexity\":");
        buf_put_fixed3(b, r->complexity);
    }
    if (r->split) put_field_str(b, ",\"split\":", r->split);
    if (r->sem_on) { buf_puts(b, ",\"cache_similarity\":"); buf_put_fixed3(b, r->cache_similarity); }
    buf_puts(b, r->stream ? ",\"stream\":true,\"latency_ms\":" : ",\"stream\":false,\"latency_ms\":");
    buf_put_fixed3(b, r->total_ms);
    if (r->ttft_ms > 0) { buf_puts(b, ",\"ttft_ms\":"); buf_put_fixed3(b, r->ttft_ms); }
    if (r->usage.present) {
        buf_puts(b, ",\"prompt_tokens\":"); buf_put_i64(b, r->usage.prompt_tokens);
        buf_puts(b, ",\"completion_tokens\":"); buf_put_i64(b, r->usage.completion_tokens);
        buf_puts(b, ",\"cached_tokens\":"); buf_put_i64(b, r->usage.cached_tokens);
        char usd[32];
        buf_puts(b, ",\"cost_usd\":");
        buf_append(b, usd, pricing_format_usd(r->cost_e10, usd));
    }
    buf_puts(b, ",\"bytes_out\":");
    buf_put_u64(b, r->bytes_out);
    if (r->error) put_field_str(b, ",\"error\":", r->error);
    if (r->guard[0]) put_field_str(b, ",\"guard\":", r->guard);
    buf_puts(b, "}\n");
    if (!b->oom) accesslog_write(r->w->alog, b->data, b->len);
    else { buf_free(b); buf_init(b); }
}

static void add_gateway_headers(gw_req *r)
{
    evhtp_headers_t *h = r->req->headers_out;
    evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Request-Id", r->id, 0, 1));
    if (r->dep) {
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Provider", r->dep->provider->name, 0, 0));
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Model", r->dep->model, 0, 1));
        char n[16];
        snprintf(n, sizeof n, "%d", r->cache_hit ? 0 : r->attempts);
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Attempts", n, 0, 1));
        if (r->fallback) evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Fallback", r->fallback, 0, 1));
    }
    if (r->cache_mode != CACHE_OFF || r->sem_on)
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Cache", r->cache_hit ? "HIT" : "MISS", 0, 0));
    if (r->sem_on) {
        char v[16];
        snprintf(v, sizeof v, "%.4f", r->cache_similarity);
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Cache-Similarity", v, 0, 1));
    }
    if (r->tier) {
        char v[48];
        snprintf(v, sizeof v, "%s; score=%.3f", r->tier, r->complexity);
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Classifier", v, 0, 1));
    }
    if (r->split) evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Split", r->split, 0, 1));
    if (r->rl.active || r->rl_team.active) {
        static const char *const names[2][2] = {
            { "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests" },
            { "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens" },
        };
        for (int k = RL_RPM; k <= RL_TPM; k++) {
            /* the tighter of the key's and the team's limit */
            const rl_ticket *t = r->rl.active && r->rl.limit[k] >= 0 ? &r->rl : NULL;
            const rl_ticket *tt = &r->rl_team;
            if (tt->active && tt->limit[k] >= 0 && (!t || tt->remaining[k] < t->remaining[k])) t = tt;
            if (!t) continue;
            char v[24];
            snprintf(v, sizeof v, "%" PRId64, t->limit[k]);
            evhtp_headers_add_header(h, evhtp_header_new(names[k][0], v, 0, 1));
            snprintf(v, sizeof v, "%" PRId64, t->remaining[k] < 0 ? 0 : t->remaining[k]);
            evhtp_headers_add_header(h, evhtp_header_new(names[k][1], v, 0, 1));
        }
    }
    if (r->w->draining) evhtp_request_set_keepalive(r->req, 0);
}

static void hedge_free(gw_req *r);
static void hedge_cancel(gw_req *r);
static void hedge_arm(gw_req *r);

/* A request's state is ~3 KB: a worker keeps the last few freed ones rather
 * than going through malloc for each request. */
#define REQ_POOL_MAX 64

static gw_req *req_acquire(worker_t *w)
{
    gw_req *r = w->req_pool;
    if (!r) return calloc(1, sizeof *r);
    w->req_pool = r->pool_next;
    w->req_pool_n--;
    memset(r, 0, sizeof *r);
    return r;
}

static void req_release(gw_req *r)
{
    worker_t *w = r->w;
    if (w->req_pool_n >= REQ_POOL_MAX) { free(r); return; }
    r->pool_next = w->req_pool;
    w->req_pool = r;
    w->req_pool_n++;
}

void request_pool_free(worker_t *w)
{
    while (w->req_pool) {
        gw_req *r = w->req_pool;
        w->req_pool = r->pool_next;
        free(r);
    }
    w->req_pool_n = 0;
}

/* Frees everything the request owns; the evhtp request is not touched. */
static void req_free(gw_req *r)
{
    if (r->up) upstream_cancel(r->up);
    guard_hook_cancel(r->ghook);
    if (r->gsse) { guard_sse_free(r->gsse); free(r->gsse); }
    cache_cancel(r->cache_wait);
    respredis_cancel(r->prev_wait);
    buf_free(&r->cache_buf);
    semembed_cancel(r->sem_embed);
    semcache_cancel(r->sem_wait);
    free(r->sem_vec);
    hedge_free(r);
    if (r->in_attempt) router_attempt_abandon(&r->w->router, r->serving, r->dep_index);
    if (r->retry_slot) router_retry_done(&r->w->router);
    if (r->routed) router_end(&r->w->router);
    if (r->timer) event_free(r->timer);
    if (r->retry_timer) event_free(r->retry_timer);
    if (r->hedge_timer) event_free(r->hedge_timer);
    if (r->chunk) evbuffer_free(r->chunk);
    if (r->relaying) sse_free(&r->sse);
    if (r->sos) { structout_stream_free(r->sos); free(r->sos); }
    if (r->strip_usage) usagestrip_free(&r->strip);
    if (r->xs_on) xlate_stream_free(&r->xs);
    chat_req_free(&r->chat);
    json_doc_free(r->doc);
    buf_free(&r->http.url);
    buf_free(&r->http.body);
    buf_free(&r->http.hdrs);
    buf_free(&r->local);
    buf_free(&r->resp);
    buf_free(&r->ab_answer);
    config_unref(r->cfg);
    req_release(r);
}

/* The reply is fully handed to evhtp: log, detach from evhtp, free. */
/* Tokens and cost, once the usage is known (idempotent). */
static void account(gw_req *r)
{
    if (r->dep && r->usage.present) r->cost_e10 = pricing_cost_e10(&r->dep->price, &r->usage);
    if (r->gres.nhits) guard_result_summary(&r->gres, r->guard, sizeof r->guard);   /* names only, never text */
}

/* The usage event for the control plane (control-plane mode only). */
static void record_usage(gw_req *r)
{
    if (!r->w->usage) return;
    usage_event_in e = {
        .request_id = r->id, .ts_ms = r->ts_ms, .key_id = r->key_id, .team_id = r->team_id,
        .model_alias = r->model ? r->model->alias : NULL,
        .routed_alias = r->serving && r->serving != r->model ? r->serving->alias : NULL,
        .provider = r->dep ? r->dep->provider->name : NULL,
        .upstream_model = r->dep ? r->dep->model : NULL,
        .usage = r->usage, .cost_e10 = r->cost_e10,
        .latency_ms = r->total_ms, .ttft_ms = r->ttft_ms,
        .status = r->status, .attempts = r->cache_hit ? 0 : r->attempts, .cache_hit = r->cache_hit,
        .guard = r->guard[0] ? r->guard : NULL, .cache_similarity = r->cache_similarity,
    };
    usagelog_add(r->w->usage, &e);
}

/* Corrects the tokens charged at admission with what the provider reported;
 * a request that failed without usage spent nothing. */
static void settle_one(gw_req *r, rl_ticket *t, int64_t now_ms)
{
    if (!t->active || t->refused || t->charged <= 0) return;
    int64_t actual = t->charged;
    if (r->usage.present) actual = (int64_t)r->usage.prompt_tokens + r->usage.completion_tokens;
    else if ((r->status >= 400 && r->status != 499) || r->cache_hit) actual = 0;   /* a hit spends no tokens */
    ratelimit_settle(r->w->rl, t, actual, now_ms);
}

static int64_t loop_now_ms(worker_t *w)
{
    struct timeval now;   /* the loop's cached time: no syscall */
    event_base_gettimeofday_cached(w->base, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
}

static void settle_limits(gw_req *r)
{
    if (!r->rl.active && !r->rl_team.active) return;
    int64_t now = loop_now_ms(r->w);
    settle_one(r, &r->rl, now);
    settle_one(r, &r->rl_team, now);
}

/* Shared-memory counters (metrics.h): no allocation, no syscall. */
static void observe(gw_req *r)
{
    if (r->t_up.tv_sec && r->up_ms == 0) r->up_ms = ms_since(&r->t_up);   /* still waiting (client gone) */
    mx_request m = {
        .model = r->model ? r->model->alias : NULL,
        .provider = r->dep ? r->dep->provider->name : NULL,
        .upstream_model = r->dep ? r->dep->model : NULL,
        .status = r->status,
        .input_tokens = r->usage.present ? r->usage.prompt_tokens : 0,
        .output_tokens = r->usage.present ? r->usage.completion_tokens : 0,
        .cost_e10 = r->cost_e10,
        .total_ms = r->total_ms, .ttft_ms = r->ttft_ms, .upstream_ms = r->up_ms,
        .upstream_failed = r->up_failed, .attempted = r->t_up.tv_sec != 0 && r->status != 499,
    };
    metrics_request(&m);
    for (size_t i = 0; i < r->gres.nhits; i++) {   /* one verdict per request and (stage, detector, action) */
        const guard_hit *h = &r->gres.hits[i];
        metrics_guard(h->stage == GUARD_INPUT ? "input" : "output", h->detector, guard_action_name(h->action), 1);
    }
    if (r->tr.sampled) {
        trace_attrs a = {
            .route = route_path(r->route), .request_id = r->id, .model = m.model, .provider = m.provider,
            .upstream_model = m.upstream_model, .error = r->error, .status = r->status, .stream = r->stream,
            .cache_hit = r->cache_hit, .upstream_status = r->up_status, .upstream_failed = r->up_failed,
            .input_tokens = r->usage.present ? r->usage.prompt_tokens : -1,
            .output_tokens = r->usage.present ? r->usage.completion_tokens : -1,
        };
        trace_end(r->w->tracer, &r->tr, &a);
    }
}

/* Tells the router how the current attempt went (once per attempt). */
static void attempt_report(gw_req *r, attempt_outcome o, long retry_after_ms)
{
    if (!r->in_attempt) return;
    r->in_attempt = 0;
    double ttfb = r->up_status ? r->attempt_ttfb_ms : -1;
    router_attempt_done(&r->w->router, r->serving, r->dep_index, o, ttfb, retry_after_ms, loop_now_ms(r->w));
    const router_dep *rd = router_dep_get(&r->w->router, r->dep);
    metrics_attempt(r->serving->alias, r->dep->provider->name, r->dep->model, (int)r->dep_index, o == OUTCOME_RETRY,
                    rd && rd->state != BREAKER_CLOSED);
    if (r->retry_slot) { router_retry_done(&r->w->router); r->retry_slot = 0; }
}

/* A judged request's sample goes to abjudge (which works on it later, from a timer). */
static void ab_sample(gw_req *r)
{
    const buf_t *a = r->stream ? &r->cache_buf : &r->ab_answer;   /* a stream: its recorded bytes */
    if (!r->ab_sampled || !r->req || r->status != 200 || r->error || !a->len || r->fallback || !r->serving) return;
    struct evbuffer *in = r->req->buffer_in;
    abjudge_sample s = {
        .cfg = r->cfg, .model = r->model, .served = r->serving, .route = r->route,
        .body = (const char *)evbuffer_pullup(in, -1), .body_len = evbuffer_get_length(in),
        .answer = a->data, .answer_len = a->len, .stream = r->stream, .request_id = r->id, .ts_ms = r->ts_ms,
    };
    if (s.body) abjudge_start(r->w->ab, &s);
}

/* One finished request's records: access log line, usage event, metrics;
 * they share one reading of its total time. */
static void record_finished(gw_req *r)
{
    r->total_ms = ms_since(&r->t0);
    access_log(r);
    record_usage(r);
    observe(r);
}

static void req_finish(gw_req *r)
{
    account(r);
    ab_sample(r);
    /* the reply goes to the socket first; the bookkeeping below then runs
     * off the client's critical path (and the access log's latency
     * includes the write) */
    if (r->req) {
        evhtp_request_unset_hook(r->req, evhtp_hook_on_error);
        evhtp_request_unset_hook(r->req, evhtp_hook_on_request_fini);
        if (r->conn_paused) {
            long ms = r->cfg->client_timeout_ms;
            struct timeval idle = { ms / 1000, (ms % 1000) * 1000 };
            http_conn_release(r->req, &idle);
        } else {
            http_conn_sync_done(r->req);
        }
    }
    if (r->budget_on) budget_charge(r->w->budget, &r->budget, r->cost_e10, (time_t)(loop_now_ms(r->w) / 1000));
    if (r->dep && r->usage.present && r->serving && r->serving->strategy_id == STRATEGY_USAGE)   /* the real count replaces the estimate */
        router_add_tokens(&r->w->router, r->serving, r->dep_index,
                          (int64_t)r->usage.prompt_tokens + r->usage.completion_tokens - r->est_tokens, loop_now_ms(r->w));
    settle_limits(r);
    record_finished(r);
    worker_t *w = r->w;
    int async = r->conn_paused;
    req_free(r);
    if (async) worker_request_done(w);
}

static void reply_error(gw_req *r, int status, const char *type, const char *code,
                        const char *param, const char *message)
{
    r->status = status;
    if (!r->error) r->error = code ? code : type;
    add_gateway_headers(r);
    if (r->client == CLIENT_ANTHROPIC) r->bytes_out += http_send_anthropic_error(r->req, status, message);
    else r->bytes_out += http_send_openai_error(r->req, status, type, code, param, message);
}

/* ---- guardrails (guard.h, guardjson.h): the input before routing, the
 * answer on its way out; refusals in the client's dialect ---- */

static int guard_wants(const gw_req *r, int stage)
{
    for (size_t i = 0; i < r->gchain.n; i++) if (guard_policy_stages(r->gchain.p[i]) & stage) return 1;
    return 0;
}

/* A non-streaming answer's usage (a translation brought its own along). */
static void take_usage(gw_req *r, const char *body, size_t len)
{
    if (r->translate || !r->dep) return;
    if (r->client == CLIENT_ANTHROPIC) anthropic_usage(body, len, &r->usage);
    else usage_from_bytes(body, len, &r->usage);
}

/* 403 for a deny list, 400 for the rest (detectors, caps, a webhook's block). */
static void guard_refuse(gw_req *r, int stage)
{
    char msg[200];
    const char *det = r->gres.block_detector ? r->gres.block_detector : "guard_error";
    int st = r->gres.block_is_deny ? 403 : 400;
    if (stage == GUARD_OUTPUT)
        snprintf(msg, sizeof msg, "The answer was blocked by a guardrail (%s).", det);
    else
        snprintf(msg, sizeof msg, "The request was blocked by a guardrail (%s).", det);
    r->error = stage == GUARD_OUTPUT ? "guardrail_output_blocked" : "guardrail_blocked";
    reply_error(r, st, st == 403 ? "permission_error" : "invalid_request_error",
                stage == GUARD_OUTPUT ? "output_blocked" : "guardrail_blocked", NULL, msg);
}

/* The body the provider gets from now on (parsed again for the render). */
static int replace_body(gw_req *r, const buf_t *nb)
{
    struct evbuffer *in = r->req->buffer_in;
    json_error je;
    json_limits lim = { .max_depth = JSON_MAX_DEPTH };
    json_doc *d = json_parse(nb->data, nb->len, &lim, &je);
    if (!d || evbuffer_drain(in, evbuffer_get_length(in)) < 0 || evbuffer_add(in, nb->data, nb->len) < 0) {
        json_doc_free(d);
        return -1;
    }
    json_doc_free(r->doc);
    r->doc = d;
    return 0;
}

/* Local detectors, caps and lists over the request's text. 0: go on; 1: refused. */
static int guard_input(gw_req *r)
{
    if (!guard_wants(r, GUARD_INPUT)) return 0;
    const char *body = (const char *)evbuffer_pullup(r->req->buffer_in, -1);
    buf_t nb;
    buf_init(&nb);
    int rc = guardjson_input(&r->gchain, r->route, body ? body : "", json_root(r->doc), &nb, &r->gres);
    const char *what = NULL;
    if (rc >= 0 && guard_caps_exceeded(&r->gchain, r->gres.bytes, r->gres.chars, &what)) {
        guard_result_add(&r->gres, GUARD_INPUT, what, GUARD_BLOCK, 0);
        char msg[160];
        snprintf(msg, sizeof msg, "The prompt is larger than a guardrail allows (%s).", what);
        r->error = "guardrail_blocked";
        reply_error(r, 400, "invalid_request_error", "prompt_too_large", NULL, msg);
        rc = 2;
    } else if (rc >= 0 && r->gres.action == GUARD_BLOCK) {
        guard_refuse(r, GUARD_INPUT);
        rc = 2;
    } else if (rc == 1 && replace_body(r, &nb) < 0) rc = -1;
    if (rc < 0) reply_error(r, 500, "server_error", "internal_error", NULL, "Out of memory.");
    buf_free(&nb);
    return rc < 0 || rc == 2;
}

/* ---- the response cache (cache.h) ---- */

/* Stores a complete 200 answer when the request used the cache; a stream
 * only if it ended with its [DONE] (partial streams never are). */
static void cache_store(gw_req *r, const char *content_type, const char *body, size_t len)
{
    int exact = r->cache_mode == CACHE_USE || r->cache_mode == CACHE_REFRESH;
    if (!exact && !r->sem_vec) return;
    /* a stream's last event says it ended well: OpenAI's [DONE], Anthropic's message_stop */
    const char *end = r->client == CLIENT_ANTHROPIC ? "event: message_stop" : "data: [DONE]";
    if (r->stream && r->route != ROUTE_EMBEDDINGS &&
        (len < 14 || !memmem(body + (len > 256 ? len - 256 : 0), len > 256 ? 256 : len, end, strlen(end))))
        return;
    cache_entry e = { .content_type = content_type, .provider = r->dep->provider->name,
                      .upstream_model = r->dep->model, .body = body, .len = len };
    if (exact) cache_put(r->w->cache, r->cache_key, r->cache_ttl_s, &e);
    if (r->sem_vec) semcache_put(r->w->semcache, r->sem_part, r->sem_vec, r->sem_dim, r->model->semantic->ttl_s, &e);
}

static void prompt_log(gw_req *r, const char *answer, size_t len)
{
    struct evbuffer *in = r->req->buffer_in;
    size_t plen = evbuffer_get_length(in);
    const char *prompt = (const char *)evbuffer_pullup(in, -1);
    promptlog_write(r->w->alog, &r->w->logline, utc_now(), r->id, r->model ? r->model->alias : NULL,
                    prompt, prompt ? plen : 0, answer, len, r->stream);
}

static void relay_start(gw_req *r, int status, const char *content_type);
static void relay_sink(void *ud, const char *p, size_t n);
static void relay_out(void *ud, const char *p, size_t n);
static int relay_chunk(gw_req *r, const char *data, size_t len);
static void relay_end(gw_req *r, upstream_result res);

/* A hit: the stored bytes, no upstream, no cost; the deployment that made
 * the answer is named when the alias still has it. */
static void reply_cached(gw_req *r, const cache_entry *e)
{
    r->cache_hit = 1;
    r->cache_rec = r->log_prompt && r->stream;   /* a replay is not stored again */
    for (size_t i = 0; i < r->model->ndeployments; i++) {
        const gw_deployment *d = &r->model->deployments[i];
        if (!strcmp(d->provider->name, e->provider) && !strcmp(d->model, e->upstream_model)) { r->dep = d; break; }
    }
    r->ttft_ms = ms_since(&r->t0);
    if (r->stream) {
        relay_start(r, 200, e->content_type);
        relay_chunk(r, e->body, e->len);
        relay_end(r, UPSTREAM_OK);
    } else {
        r->status = 200;
        add_gateway_headers(r);
        evhtp_headers_t *h = r->req->headers_out;
        evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Cost-Usd", "0.0000000000", 0, 0));
        evhtp_headers_add_header(h, evhtp_header_new("Content-Type", e->content_type, 0, 1));
        evbuffer_add(r->req->buffer_out, e->body, e->len);
        r->bytes_out += e->len;
        http_send_reply(r->req, 200);
    }
    memset(&r->usage, 0, sizeof r->usage);   /* nothing was spent */
    r->cost_e10 = 0;
}

/* ---- relaying a response (shared by upstream and local providers) ---- */

static void on_backpressure_poll(evutil_socket_t fd, short what, void *arg);

static size_t client_unsent(gw_req *r)
{
    struct bufferevent *bev = evhtp_request_get_bev(r->req);
    return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

static void on_stream_event(void *ud, const char *event, const char *data, size_t len)
{
    gw_req *r = ud;
    (void)event;
    if (len == 0 || data[0] != '{') return;
    if (r->client == CLIENT_ANTHROPIC) anthropic_usage(data, len, &r->usage);   /* pass-through */
    else usage_from_bytes(data, len, &r->usage);
}

static void relay_start(gw_req *r, int status, const char *content_type)
{
    r->status = status;
    r->relaying = 1;
    sse_init(&r->sse, 1u << 20, on_stream_event, r);
    if (r->route == ROUTE_CHAT && status == 200 && structout_schema(json_root(r->doc)) && (r->sos = malloc(sizeof *r->sos)))
        structout_stream_init(r->sos, relay_sink, r);
    if (guard_wants(r, GUARD_OUTPUT) && r->route != ROUTE_EMBEDDINGS && status < 300 && (r->gsse = malloc(sizeof *r->gsse)))
        guard_sse_init(r->gsse, &r->gchain, &r->gres, r->client == CLIENT_ANTHROPIC);
    add_gateway_headers(r);
    evhtp_headers_add_header(r->req->headers_out,
        evhtp_header_new("Content-Type", content_type ? content_type : "text/event-stream", 0, 1));
    evhtp_headers_add_header(r->req->headers_out, evhtp_header_new("Cache-Control", "no-cache", 0, 0));
    evhtp_send_reply_chunk_start(r->req, (evhtp_res)status);
    http_conn_flush(r->req);   /* the client sees the status line before the first token */
}

/* Client-bound stream bytes pass, in order: relay_out (the entry) -> the
 * output guard, when the request has one -> relay_checked -> the strict
 * schema's checker, when the request asked for one -> relay_sink (the reply
 * chunk, and the cache's recording). */
static void relay_sink(void *ud, const char *p, size_t n)
{
    gw_req *r = ud;
    evbuffer_add(r->chunk, p, n);
    r->bytes_out += n;
    if (r->cache_rec) {   /* bounded: a stream larger than an entry is not cached */
        if (r->cache_buf.len + n > cache_max_entry(r->w->cache) || buf_append(&r->cache_buf, p, n) < 0) {
            r->cache_rec = 0;
            buf_free(&r->cache_buf);
        }
    }
}

static void relay_checked(void *ud, const char *p, size_t n)
{
    gw_req *r = ud;
    if (r->sos) structout_stream_feed(r->sos, p, n);
    else relay_sink(r, p, n);
}

static void relay_out(void *ud, const char *p, size_t n)
{
    gw_req *r = ud;
    if (!r->gsse) { relay_checked(r, p, n); return; }
    int was = r->gsse->blocked;
    guard_sse_feed(r->gsse, p, n, relay_checked, r);
    if (!was && r->gsse->blocked) r->error = "guardrail_output_blocked";
}

static void relay_guard_end(gw_req *r)
{
    if (!r->gsse || !r->chunk) return;
    int was = r->gsse->blocked;
    guard_sse_end(r->gsse, relay_checked, r);
    if (!was && r->gsse->blocked) r->error = "guardrail_output_blocked";
    if (evbuffer_get_length(r->chunk)) evhtp_send_reply_chunk(r->req, r->chunk);
}

/* Returns 1 when the producer should pause (the client reads slower than the provider writes). */
static int relay_chunk(gw_req *r, const char *data, size_t len)
{
    if (!r->chunk && !(r->chunk = evbuffer_new())) return 0;
    if (r->xs_on) {
        /* translated: the provider's events become the client's, usage counted by the encoder */
        xlate_stream_feed(&r->xs, data, len);
        relay_out(r, r->xs.out.data, r->xs.out.len);
        buf_reset(&r->xs.out);
    } else {
        sse_feed(&r->sse, data, len);
        if (r->strip_usage) usagestrip_feed(&r->strip, data, len, relay_out, r);
        else relay_out(r, data, len);
    }
    if (evbuffer_get_length(r->chunk) == 0) return 0;
    evhtp_send_reply_chunk(r->req, r->chunk);
    http_conn_flush(r->req);
    return client_unsent(r) > OUTPUT_HIGH_WATER;
}

/* A checked stream's end: its [DONE], or the schema's error event (structout.h). */
static void schema_stream_end(gw_req *r, int ok)
{
    if (!r->sos || (!r->chunk && !(r->chunk = evbuffer_new()))) return;
    if (structout_stream_end(r->sos, structout_schema(json_root(r->doc)), ok, r->schema_msg, sizeof r->schema_msg)
        == STRUCTOUT_VIOLATION) r->error = "schema_validation_failed";
}

static void relay_end(gw_req *r, upstream_result res)
{
    if (r->xs_on) {
        xlate_stream_end(&r->xs, res == UPSTREAM_OK, upstream_result_name(res));
        if (r->xs.enc.usage.present) r->usage = r->xs.enc.usage;
        if (r->xs.failed || res != UPSTREAM_OK) r->error = res != UPSTREAM_OK ? upstream_result_name(res) : "upstream_stream_malformed";
        if (r->chunk || (r->chunk = evbuffer_new())) {
            relay_out(r, r->xs.out.data, r->xs.out.len);
            buf_reset(&r->xs.out);
            relay_guard_end(r);   /* held text first: the schema checker sees the whole answer */
            schema_stream_end(r, res == UPSTREAM_OK && !r->xs.failed);
            if (evbuffer_get_length(r->chunk)) evhtp_send_reply_chunk(r->req, r->chunk);
        }
        if (r->cache_rec && !r->cache_hit && res == UPSTREAM_OK && !r->xs.failed && r->status == 200)
            cache_store(r, "text/event-stream", r->cache_buf.data, r->cache_buf.len);
        evhtp_send_reply_chunk_end(r->req);
        return;
    }
    if (r->strip_usage && r->chunk) {
        usagestrip_flush(&r->strip, relay_out, r);
        if (evbuffer_get_length(r->chunk)) evhtp_send_reply_chunk(r->req, r->chunk);
    }
    relay_guard_end(r);   /* held text before an error event, and before the recording is stored */
    if (res != UPSTREAM_OK) {
        /* the status line is gone: end the stream with an error event the SDKs surface */
        char ev[256];
        int n = r->client == CLIENT_ANTHROPIC
            ? snprintf(ev, sizeof ev,
                "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"upstream stream failed: %s\"}}\n\n",
                upstream_result_name(res))
            : snprintf(ev, sizeof ev,
                "data: {\"error\":{\"message\":\"upstream stream failed: %s\",\"type\":\"upstream_error\",\"code\":\"%s\",\"param\":null}}\n\n",
                upstream_result_name(res), upstream_result_name(res));
        relay_chunk(r, ev, (size_t)n);
        r->error = upstream_result_name(res);
    }
    if (r->sos) {
        schema_stream_end(r, res == UPSTREAM_OK);
        if (r->chunk && evbuffer_get_length(r->chunk)) evhtp_send_reply_chunk(r->req, r->chunk);
    }
    if (r->cache_rec && !r->cache_hit && res == UPSTREAM_OK && r->status == 200)
        cache_store(r, "text/event-stream", r->cache_buf.data, r->cache_buf.len);
    if (r->log_prompt) prompt_log(r, r->cache_buf.data, r->cache_buf.len);
    evhtp_send_reply_chunk_end(r->req);
}

static void reply_buffered(gw_req *r, int status, const char *content_type, const char *body, size_t len)
{
    buf_t guarded;
    buf_init(&guarded);
    if (status == 200 && r->route != ROUTE_EMBEDDINGS && guard_wants(r, GUARD_OUTPUT)) {
        int rc = guardjson_output(&r->gchain, body, len, &guarded, &r->gres);
        if (rc < 0 || r->gres.action == GUARD_BLOCK) {
            take_usage(r, body, len);   /* the answer was paid for even though the client does not get it */
            if (r->route == ROUTE_RESPONSES) responses_rekeep(&r->chat, body, len, 1);
            guard_refuse(r, GUARD_OUTPUT);
            buf_free(&guarded);
            return;
        }
        if (rc == 1) {
            body = guarded.data;
            len = guarded.len;
            if (r->route == ROUTE_RESPONSES) responses_rekeep(&r->chat, body, len, 0);   /* GET shows what the client saw */
        }
    }
    r->status = status;
    add_gateway_headers(r);
    /* the cost header goes out with the reply: usage_from_bytes parses only the usage object */
    if (status < 300 && r->dep) {
        take_usage(r, body, len);
        account(r);
        char usd[32];
        pricing_format_usd(r->cost_e10, usd);
        evhtp_headers_add_header(r->req->headers_out, evhtp_header_new("X-Gateway-Cost-Usd", usd, 0, 1));
    }
    evhtp_headers_add_header(r->req->headers_out,
        evhtp_header_new("Content-Type", content_type ? content_type : "application/json", 0, 1));
    if (status == 200 && r->dep && !r->cache_hit) cache_store(r, content_type ? content_type : "application/json", body, len);
    if (r->log_prompt) prompt_log(r, body, len);
    if (r->ab_sampled && status == 200 && len <= (1u << 20)) buf_append(&r->ab_answer, body, len);
    evbuffer_add(r->req->buffer_out, body, len);
    r->bytes_out += len;
    http_send_reply(r->req, status);
    buf_free(&guarded);
}

/* ---- upstream callbacks ---- */

static int is_stream_ok(gw_req *r, int status) { return r->stream && status >= 200 && status < 300; }

static void start_translated_stream(gw_req *r)
{
    char id[64];
    xlate_client_id(r->route, r->id, id, sizeof id);
    /* without a decoder the stream still ends cleanly, with an error event */
    r->xs_on = 1;
    if (xlate_stream_start(&r->xs, r->dep->provider, r->route, &r->chat, id, r->dep->model, r->chat.include_usage) < 0) {
        r->xs.failed = 1;
        snprintf(r->xs.error, sizeof r->xs.error, "out of memory");
    }
}

/* A whole translated answer (or the provider's error in the client's dialect). */
static void reply_translated(gw_req *r)
{
    const provider *p = r->dep->provider;
    const char *body = r->resp.data ? r->resp.data : "";
    char msg[300];
    if (r->up_status >= 300) {
        char pm[200] = "";
        if (p->error_message) p->error_message(body, r->resp.len, pm, sizeof pm);
        if (pm[0]) snprintf(msg, sizeof msg, "%s", pm);
        else snprintf(msg, sizeof msg, "The upstream provider returned HTTP %d.", r->up_status);
        r->error = "upstream_status";
        int st = xlate_error_status(r->up_status);
        reply_error(r, st, st == 400 ? "invalid_request_error" : st == 429 ? "rate_limit_error" : "upstream_error",
                    "upstream_status", NULL, msg);
        return;
    }
    char id[64], err[200];
    buf_t out; buf_init(&out);
    xlate_client_id(r->route, r->id, id, sizeof id);
    int rc = r->route == ROUTE_EMBEDDINGS
        ? p->parse_embed(body, r->resp.len, embed_wants_base64(json_root(r->doc)), r->dep->model, &out, &r->usage, err, sizeof err)
        : xlate_response(p, r->route, &r->chat, id, r->dep->model, body, r->resp.len, &out, &r->usage, err, sizeof err);
    if (rc < 0) {
        snprintf(msg, sizeof msg, "The upstream provider %s sent an answer the gateway could not read: %s", p->name, err);
        r->error = "upstream_malformed";
        reply_error(r, 502, "upstream_error", "upstream_malformed", NULL, msg);
    } else {
        reply_buffered(r, 200, "application/json", out.data, out.len);
    }
    buf_free(&out);
}

static void up_on_response(void *ud, upstream_req_t *u, int status)
{
    gw_req *r = ud;
    (void)u;
    r->up_status = status;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->ttft_ms = ms_between(&r->t0, &now);
    r->attempt_ttfb_ms = ms_between(&r->attempt_t0, &now);
    /* a stream is committed (status line to the client) only with its first
     * byte: until then a stall or a cut can still fail over */
}

/* The first byte of a good stream: from here on the client has it. */
static void stream_commit(gw_req *r, upstream_req_t *u)
{
    hedge_cancel(r);   /* the client has this one: a racing attempt is closed at once */
    if (r->translate) start_translated_stream(r);
    relay_start(r, r->up_status, r->translate || !u ? "text/event-stream" : upstream_header(u, "content-type"));
}

static int up_on_data(void *ud, upstream_req_t *u, const char *data, size_t len)
{
    gw_req *r = ud;
    if (!r->relaying && len > 0 && is_stream_ok(r, r->up_status)) stream_commit(r, u);
    if (r->relaying) {
        if (relay_chunk(r, data, len)) {
            r->up_paused = 1;
            struct timeval tv = { 0, 5000 };
            if (!r->timer) r->timer = event_new(r->w->base, -1, EV_PERSIST, on_backpressure_poll, r);
            if (r->timer) event_add(r->timer, &tv);
            return r->timer ? 1 : 0;
        }
        return 0;
    }
    if (r->resp.len + len > MAX_BUFFERED_RESPONSE) {
        r->error = "upstream response too large";
        return 0;  /* dropped; on_done replies 502 */
    }
    buf_append(&r->resp, data, len);
    return 0;
}

static void on_backpressure_poll(evutil_socket_t fd, short what, void *arg)
{
    gw_req *r = arg;
    (void)fd; (void)what;
    if (!r->req || !r->up_paused || client_unsent(r) > OUTPUT_LOW_WATER) return;
    event_del(r->timer);
    r->up_paused = 0;
    if (r->up) upstream_resume(r->up);
}

/* An upstream that rejects the gateway's own credentials is the operator's
 * problem, not the client's: do not let an SDK think its key is wrong. */
static int client_status_for(int up_status)
{
    if (up_status == 401 || up_status == 403) return 502;
    if (up_status >= 500) return 502;   /* the provider failed (no failover left): a gateway error */
    return up_status;
}

/* The client's answer from the last attempt, when no other attempt follows. */
static void reply_attempt(gw_req *r)
{
    upstream_result res = r->last_res;
    if (res == UPSTREAM_OK && is_stream_ok(r, r->up_status)) {   /* a good stream without a byte */
        stream_commit(r, NULL);
        relay_end(r, UPSTREAM_OK);
    } else if (res != UPSTREAM_OK) {
        int timeout = res == UPSTREAM_ERR_TIMEOUT_CONNECT || res == UPSTREAM_ERR_TIMEOUT_FIRST_BYTE ||
                      res == UPSTREAM_ERR_TIMEOUT_IDLE || res == UPSTREAM_ERR_TIMEOUT_TOTAL;
        char msg[300];
        snprintf(msg, sizeof msg, "The upstream provider %s %s: %s", r->dep->provider->name,
                 timeout ? "timed out" : "failed", r->last_errmsg[0] ? r->last_errmsg : upstream_result_name(res));
        r->error = upstream_result_name(res);
        reply_error(r, timeout ? 504 : 502, "upstream_error", upstream_result_name(res), NULL, msg);
    } else if (r->error && !strcmp(r->error, "upstream response too large")) {
        reply_error(r, 502, "upstream_error", "upstream_too_large", NULL, "The upstream response was too large.");
    } else if (r->translate) {
        reply_translated(r);
    } else if (r->up_status >= 400 && (r->resp.len == 0 || r->resp.data[0] != '{')) {
        char msg[128];
        snprintf(msg, sizeof msg, "The upstream provider returned HTTP %d.", r->up_status);
        r->error = "upstream_status";
        reply_error(r, client_status_for(r->up_status) >= 500 ? client_status_for(r->up_status) : r->up_status,
                    "upstream_error", "upstream_status", NULL, msg);
    } else {
        if (r->up_status >= 400) r->error = "upstream_status";
        reply_buffered(r, client_status_for(r->up_status), r->last_ctype[0] ? r->last_ctype : NULL,
                       r->resp.data ? r->resp.data : "", r->resp.len);
    }
}

static int plan_retry(gw_req *r, attempt_outcome o);
static int hedge_take_over(gw_req *r);
static int schedule_attempt(gw_req *r, long delay_ms);

/* ---- structured outputs (structout.h): a whole chat answer checked
 * against the request's strict JSON schema before the client sees it ---- */

/* 1: nothing to check or the answer holds; 0: r->schema_msg says why not. */
static int schema_holds(gw_req *r)
{
    if (r->stream || r->route != ROUTE_CHAT || r->up_status < 200 || r->up_status >= 300 || r->error) return 1;
    const json_value *s = structout_schema(json_root(r->doc));
    if (!s) return 1;
    return structout_check(r->dep->provider, s, r->resp.data, r->resp.len, r->schema_msg, sizeof r->schema_msg)
           == STRUCTOUT_OK;
}

/* Asks again (router.schema_retries times, on any deployment of the alias):
 * 1 if another attempt is on its way. */
static int schema_retry(gw_req *r)
{
    const gw_route_policy *p = &r->model->policy;
    if (!r->req || r->schema_retries >= p->schema_retries || r->attempts >= MAX_ATTEMPTS_TOTAL) return 0;
    r->schema_retries++;
    r->schema_pending = 1;
    /* a bad answer is no failure of the deployment: not charged to the failover budget */
    if (r->alias_attempts >= r->serving->policy.max_attempts) r->alias_attempts = r->serving->policy.max_attempts - 1;
    return schedule_attempt(r, 0);
}

static void reply_schema_error(gw_req *r)
{
    char msg[420];
    snprintf(msg, sizeof msg, "The model's answer does not match the response_format JSON schema after %d attempt%s: %s",
             r->attempts, r->attempts == 1 ? "" : "s", r->schema_msg);
    r->error = "schema_validation_failed";
    reply_error(r, 502, "upstream_error", "schema_validation_failed", "response_format", msg);
}

static void up_on_done(void *ud, upstream_req_t *u, upstream_result res, const char *errmsg)
{
    gw_req *r = ud;
    r->up = NULL;  /* upstream frees it after this returns */
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    r->up_ms = ms_between(&r->t_up, &now);
    r->up_failed = res != UPSTREAM_OK || r->up_status >= 500;
    trace_mark_at(&r->tr, TR_UPSTREAM, 1, &now);
    if (r->relaying) {   /* the client has bytes: no failover, the stream ends (with an error event if it broke) */
        attempt_report(r, res == UPSTREAM_OK ? OUTCOME_OK : OUTCOME_RETRY, 0);
        relay_end(r, res);
        req_finish(r);
        return;
    }
    r->last_res = res;
    str_copy_trunc(r->last_errmsg, sizeof r->last_errmsg, errmsg);
    const char *ct = r->up_status ? upstream_header(u, "content-type") : NULL;
    str_copy_trunc(r->last_ctype, sizeof r->last_ctype, ct);
    attempt_outcome o = router_classify(res, r->up_status, r->resp.data, r->resp.len);
    long ra = r->up_status == 429 || r->up_status == 503 ? router_retry_after_ms(upstream_header(u, "retry-after")) : 0;
    attempt_report(r, o, ra);
    if (o != OUTCOME_OK && o != OUTCOME_CLIENT && hedge_take_over(r)) return;   /* the racing attempt carries on */
    hedge_cancel(r);
    if ((o == OUTCOME_RETRY || o == OUTCOME_CONTEXT) && plan_retry(r, o)) return;   /* another attempt follows */
    if (o == OUTCOME_OK && !schema_holds(r)) {
        if (schema_retry(r)) return;
        reply_schema_error(r);
    } else reply_attempt(r);
    req_finish(r);
}

static const upstream_callbacks up_callbacks = {
    .on_response = up_on_response,
    .on_data = up_on_data,
    .on_done = up_on_done,
};

/* ---- local providers (mock) ---- */

static void local_deliver(evutil_socket_t fd, short what, void *arg)
{
    gw_req *r = arg;
    (void)fd; (void)what;
    r->up_status = 200;
    r->ttft_ms = ms_since(&r->t0);
    r->up_ms = ms_since(&r->t_up);
    trace_mark(&r->tr, TR_UPSTREAM, 1);
    r->attempt_ttfb_ms = ms_since(&r->attempt_t0);
    attempt_report(r, OUTCOME_OK, 0);
    if (r->translate && !r->stream) {
        buf_t t = r->resp; r->resp = r->local; r->local = t;   /* the answer, as if from upstream */
        reply_translated(r);
    } else if (r->stream) {
        if (r->translate) start_translated_stream(r);
        relay_start(r, 200, "text/event-stream");
        relay_chunk(r, r->local.data, r->local.len);
        relay_end(r, UPSTREAM_OK);
    } else {
        reply_buffered(r, 200, "application/json", r->local.data, r->local.len);
    }
    req_finish(r);
}

/* ---- client-side hooks while a request is in flight ---- */

static void on_client_error(evhtp_request_t *req, evhtp_error_flags errtype, void *arg)
{
    gw_req *r = arg;
    (void)errtype;
    /* The connection died while paused: stop the upstream now, then resume so
     * evhtp frees the connection (it waits for a resume); on_client_fini runs
     * from inside that and frees r, so r is not touched after the resume. */
    if (r->up) { upstream_cancel(r->up); r->up = NULL; }
    evhtp_request_resume(req);
}

/* Only installed while a request is async: evhtp is freeing it under us. */
static evhtp_res on_client_fini(evhtp_request_t *req, void *arg)
{
    gw_req *r = arg;
    (void)req;
    r->req = NULL;
    r->status = 499;  /* nginx's "client closed request" */
    r->error = "client_gone";
    account(r);
    settle_limits(r);
    record_finished(r);
    worker_t *w = r->w;
    req_free(r);
    worker_request_done(w);
    return EVHTP_RES_OK;
}

/* ---- the pipeline ---- */

/* "req_" + 16 hex digits of a per-worker random prefix + 8 of a counter */
static void new_request_id(worker_t *w, char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t seq = ++w->req_seq;
    if (len < 4 + 16 + 8 + 1) { out[0] = '\0'; return; }
    memcpy(out, "req_", 4);
    for (int i = 0; i < 16; i++) out[4 + i] = hex[(w->id_prefix >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 8; i++) out[20 + i] = hex[(seq >> (28 - 4 * i)) & 15];
    out[28] = '\0';
}

/* 0 started; 1 the provider refused to render the call (msg: a 400); -1 failed to start. */
static int start_attempt(gw_req *r, char *msg, size_t msglen, const upstream_callbacks *cb, void *ud)
{
    provider_call call = {
        .route = r->route, .dep = r->dep,
        .body = r->http.body.data, /* replaced below */
        .root = json_root(r->doc), .stream = r->stream, .want_usage = r->want_usage,
    };
    struct evbuffer *in = r->req->buffer_in;
    call.body_len = evbuffer_get_length(in);
    call.body = (const char *)evbuffer_pullup(in, -1);
    call.model = json_get(call.root, "model");
    const provider *p = r->dep->provider;
    clock_gettime(CLOCK_MONOTONIC, &r->t_up);
    trace_mark_at(&r->tr, TR_UPSTREAM, 0, &r->t_up);
    if (r->route == ROUTE_MESSAGES) call.anthropic_beta = r->hdr.anthropic_beta;
    if (r->translate) {
        call.chat = &r->chat;
        call.want_usage = p->local_reply != NULL;   /* the mock's answer is translated: it must carry usage */
        if (call.route == ROUTE_MESSAGES || call.route == ROUTE_RESPONSES) call.route = ROUTE_CHAT;   /* the mock answers it as a chat */
    }

    if (p->local_reply) {
        int status;
        if (p->local_reply(&call, &status, &r->local) < 0) return -1;
        if (!r->translate && (r->strip_usage = r->want_usage)) usagestrip_init(&r->strip);   /* mock honours want_usage */
        long delay = r->dep->latency_ms;
        struct timeval tv = { delay / 1000, (delay % 1000) * 1000 };
        r->timer = event_new(r->w->base, -1, 0, local_deliver, r);
        return r->timer && event_add(r->timer, &tv) == 0 ? 0 : -1;
    }
    if (r->translate && r->route == ROUTE_EMBEDDINGS) {
        if (p->build_embed(&call, &r->http, msg, msglen) < 0) return 1;
    } else if (r->translate) {
        if (!p->build_chat) { snprintf(msg, msglen, "Provider %s cannot serve %s.", p->name, route_path(r->route)); return 1; }
        if (p->build_chat(&call, &r->http, msg, msglen) < 0) return 1;
    } else {
        if (!p->build || p->build(&call, &r->http, msg, msglen) < 0) return -1;   /* out of memory: nothing the client did */
        if ((r->strip_usage = r->http.usage_injected)) usagestrip_init(&r->strip);
    }
    if (r->tr.propagate) {   /* W3C trace context: the upstream call is a child of ours */
        size_t nh = 0;
        while (nh < PROVIDER_MAX_HEADERS && r->http.headers[nh]) nh++;
        if (nh < PROVIDER_MAX_HEADERS) {
            _Static_assert(sizeof r->tp_line >= 13 + 56, "tp_line holds the header line");
            memcpy(r->tp_line, "traceparent: ", 13);   /* no printf: every upstream call has one */
            trace_format_upstream(&r->tr, r->tp_line + 13);
            r->http.headers[nh] = r->tp_line;
            r->http.headers[nh + 1] = NULL;
        }
    }
    upstream_request ureq = {
        .method = "POST",
        .url = r->http.url.data,
        .headers = r->http.headers,
        .body = r->http.body.data,
        .body_len = r->http.body.len,
        .max_response_bytes = r->stream ? 0 : MAX_BUFFERED_RESPONSE,
        .timeouts = r->dep->timeouts,
    };
    r->up = upstream_start(r->w->up, &ureq, cb, ud);
    return r->up ? 0 : -1;
}

/* Prompt bytes / 4 plus the output asked for (or a default): what TPM
 * admits on before the provider reports the real count. */
#define DEFAULT_MAX_OUTPUT 256
static int64_t estimate_tokens(const gw_req *r, size_t body_len)
{
    int64_t est = (int64_t)(body_len / 4);
    if (r->route == ROUTE_EMBEDDINGS) return est + 1;
    const json_value *root = json_root(r->doc);
    const json_value *mt = json_get(root, "max_completion_tokens");
    if (!mt || mt->type != JSON_NUMBER) mt = json_get(root, "max_tokens");
    if (!mt || mt->type != JSON_NUMBER) mt = json_get(root, "max_output_tokens");   /* /v1/responses */
    double out = mt && mt->type == JSON_NUMBER ? mt->num : DEFAULT_MAX_OUTPUT;
    if (!(out >= 0)) out = 0;
    if (out > 1e9) out = 1e9;
    return est + (int64_t)out;
}

/* ---- hedging: after policy.hedge_ms (or the deployment's p95) a second
 * attempt on another deployment races the first; the first good answer
 * (first byte, for streams) wins and the other is cancelled at once ---- */

/* fields of the same type in gw_req and attempt_slot */
#define SWAP_FIELD(a, b) do { __typeof__(a) swap_tmp_ = (a); (a) = (b); (b) = swap_tmp_; } while (0)

/* Exchanges the request's current attempt with s. */
static void slot_swap(gw_req *r, attempt_slot *s)
{
    SWAP_FIELD(r->up, s->up);
    SWAP_FIELD(r->http, s->http);
    SWAP_FIELD(r->resp, s->resp);
    SWAP_FIELD(r->up_status, s->up_status);
    SWAP_FIELD(r->dep, s->dep);
    SWAP_FIELD(r->dep_index, s->dep_index);
    SWAP_FIELD(r->translate, s->translate);
    SWAP_FIELD(r->strip_usage, s->strip_usage);
    SWAP_FIELD(r->strip, s->strip);
    SWAP_FIELD(r->attempt_t0, s->t0);
    SWAP_FIELD(r->attempt_ttfb_ms, s->ttfb_ms);
    SWAP_FIELD(r->in_attempt, s->in_attempt);
    SWAP_FIELD(r->retry_slot, s->retry_slot);
    SWAP_FIELD(r->error, s->error);
}

static void hedge_free(gw_req *r)
{
    hedge_t *h = r->hedge;
    if (!h) return;
    if (h->s.up) upstream_cancel(h->s.up);
    if (h->s.in_attempt) router_attempt_abandon(&r->w->router, r->serving, h->s.dep_index);
    if (h->s.retry_slot) router_retry_done(&r->w->router);
    buf_free(&h->s.http.url);
    buf_free(&h->s.http.body);
    buf_free(&h->s.http.hdrs);
    buf_free(&h->s.resp);
    if (h->s.strip_usage) usagestrip_free(&h->s.strip);
    free(h);
    r->hedge = NULL;
}

/* The racing attempt loses: closed now, its deployment neither blamed nor credited. */
static void hedge_cancel(gw_req *r)
{
    hedge_t *h = r->hedge;
    if (!h || !h->racing) return;
    h->racing = 0;
    if (h->s.up) { upstream_cancel(h->s.up); h->s.up = NULL; }
    if (h->s.in_attempt) { router_attempt_abandon(&r->w->router, r->serving, h->s.dep_index); h->s.in_attempt = 0; }
    if (h->s.retry_slot) { router_retry_done(&r->w->router); h->s.retry_slot = 0; }
}

/* The hedge becomes the request's attempt; from now on its callbacks serve r. */
static void hedge_promote(gw_req *r)
{
    hedge_t *h = r->hedge;
    slot_swap(r, &h->s);
    h->racing = 0;
    h->promoted = 1;
}

/* The hedge answered first: the first attempt is cancelled at once. */
static void hedge_win(gw_req *r)
{
    if (r->up) { upstream_cancel(r->up); r->up = NULL; }
    if (r->in_attempt) { router_attempt_abandon(&r->w->router, r->serving, r->dep_index); r->in_attempt = 0; }
    if (r->retry_slot) { router_retry_done(&r->w->router); r->retry_slot = 0; }
    hedge_promote(r);
    if (r->up_status) r->ttft_ms = ms_since(&r->t0);   /* the client's first byte comes from the hedge */
    r->w->router.hedge_wins++;
}

/* The first attempt failed while a hedge races: the hedge carries on alone. */
static int hedge_take_over(gw_req *r)
{
    if (!r->hedge || !r->hedge->racing) return 0;
    hedge_promote(r);
    return 1;
}

static void hedge_on_response(void *ud, upstream_req_t *u, int status)
{
    hedge_t *h = ud;
    if (h->promoted) { up_on_response(h->r, u, status); return; }
    h->s.up_status = status;
    h->s.ttfb_ms = ms_since(&h->s.t0);
}

static int hedge_on_data(void *ud, upstream_req_t *u, const char *data, size_t len)
{
    hedge_t *h = ud;
    gw_req *r = h->r;
    if (!h->promoted && len > 0 && is_stream_ok(r, h->s.up_status)) hedge_win(r);   /* first byte wins */
    if (h->promoted) return up_on_data(r, u, data, len);
    if (h->s.resp.len + len > MAX_BUFFERED_RESPONSE) h->s.error = "upstream response too large";
    else buf_append(&h->s.resp, data, len);
    return 0;
}

static void hedge_on_done(void *ud, upstream_req_t *u, upstream_result res, const char *errmsg)
{
    hedge_t *h = ud;
    gw_req *r = h->r;
    if (!h->promoted) {
        h->s.up = NULL;
        h->racing = 0;
        attempt_outcome o = router_classify(res, h->s.up_status, h->s.resp.data, h->s.resp.len);
        if (o == OUTCOME_OK) {
            hedge_win(r);
        } else {   /* the hedge failed: the first attempt goes on alone */
            router_attempt_done(&r->w->router, r->serving, h->s.dep_index, o, -1, 0, loop_now_ms(r->w));
            h->s.in_attempt = 0;
            if (h->s.retry_slot) { router_retry_done(&r->w->router); h->s.retry_slot = 0; }
            return;
        }
    }
    up_on_done(r, u, res, errmsg);
}

static const upstream_callbacks hedge_callbacks = {
    .on_response = hedge_on_response,
    .on_data = hedge_on_data,
    .on_done = hedge_on_done,
};

static int hedge_parse_chat(gw_req *r)
{
    char msg[256];
    const char *param = NULL;
    const char *body = (const char *)evbuffer_pullup(r->req->buffer_in, -1);
    if (xlate_parse_request(r->route, json_root(r->doc), body, &r->chat, msg, sizeof msg, &param) < 0) {
        chat_req_free(&r->chat);   /* nothing half-parsed is left for a later attempt */
        chat_req_init(&r->chat);
        return -1;
    }
    r->chat_parsed = 1;
    return 0;
}

static void on_hedge_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_req *r = arg;
    (void)fd; (void)what;
    if (!r->up || r->relaying || r->hedge || !r->req) return;   /* answered, committed, or hedged already */
    long wait;
    int i = router_pick(&r->w->router, r->serving, r->tried, loop_now_ms(r->w), &wait);
    if (i < 0 || (i < 64 && (r->tried >> i & 1))) return;        /* no other deployment to race */
    const gw_deployment *d = &r->serving->deployments[i];
    if (d->provider->local_reply) return;
    if (xlate_needed(d->provider, r->route)) {   /* another dialect: the request in the internal form */
        if (r->route == ROUTE_EMBEDDINGS ? !d->provider->build_embed : !r->chat_parsed && hedge_parse_chat(r) < 0) return;
    }
    if (!router_may_retry(&r->w->router)) return;                /* hedges spend the retry budget too */
    hedge_t *h = calloc(1, sizeof *h);
    if (!h) { router_retry_done(&r->w->router); return; }
    h->r = r;
    buf_init(&h->s.http.url); buf_init(&h->s.http.body); buf_init(&h->s.http.hdrs); buf_init(&h->s.resp);
    r->hedge = h;
    slot_swap(r, &h->s);   /* r holds a fresh attempt while the hedge is set up */
    r->dep = d;
    r->dep_index = (size_t)i;
    r->translate = xlate_needed(d->provider, r->route);
    clock_gettime(CLOCK_MONOTONIC, &r->attempt_t0);
    char msg[256];
    int rc = start_attempt(r, msg, sizeof msg, &hedge_callbacks, h);
    if (rc == 0) {
        if (i < 64) r->tried |= 1ull << i;
        r->attempts++;
        r->in_attempt = 1;
        r->retry_slot = 1;
        router_attempt_start(&r->w->router, r->serving, (size_t)i, r->est_tokens, loop_now_ms(r->w));
        r->w->router.hedges++;
    }
    slot_swap(r, &h->s);
    h->racing = rc == 0;
    if (rc != 0) { router_retry_done(&r->w->router); hedge_free(r); }
}

static void hedge_arm(gw_req *r)
{
    long ms = r->serving->policy.hedge_ms;
    if (!ms || r->serving->ndeployments < 2 || !r->up) return;
    if (ms < 0) {   /* the deployment's recent p95: hedge only the slow tail */
        double p95 = router_p95_ms(&r->w->router, r->dep);
        if (p95 <= 0) return;
        ms = (long)p95 + 1;
    }
    if (!r->hedge_timer && !(r->hedge_timer = evtimer_new(r->w->base, on_hedge_timer, r))) return;
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    evtimer_add(r->hedge_timer, &tv);
}

/* ---- the attempt loop: pick (router.h), start, and on a failure before the
 * client saw a byte, retry elsewhere or fall back ---- */


/* What rendering a call writes: cleared before each attempt renders. */
static void render_reset(gw_req *r)
{
    buf_reset(&r->http.url);
    buf_reset(&r->http.body);
    buf_reset(&r->http.hdrs);
    r->http.headers[0] = NULL;
    r->http.same_dialect = r->http.usage_injected = 0;
    buf_reset(&r->local);
    if (r->strip_usage) usagestrip_free(&r->strip);
    r->strip_usage = 0;
}

/* What an answer leaves: cleared once the next attempt has started (the
 * last failure is the reply when none does). */
static void answer_reset(gw_req *r)
{
    buf_reset(&r->resp);
    r->up_status = 0;
    r->error = NULL;
    r->attempt_ttfb_ms = 0;
    r->schema_pending = 0;
    memset(&r->usage, 0, sizeof r->usage);
}

static void switch_alias(gw_req *r, const gw_model *m)
{
    metrics_fallback(r->serving->alias, m->alias);
    r->serving = m;
    r->tried = 0;
    r->alias_attempts = 0;
    r->fallback = m->alias;
    r->w->router.fallbacks++;
}

/* The requested alias's next fallback that exists in this config. */
static const gw_model *next_fallback(gw_req *r)
{
    while (r->next_fallback < r->model->nfallbacks) {
        const char *a = r->model->fallbacks[r->next_fallback++];
        const gw_model *m = config_find_model(r->cfg, a, strlen(a));
        if (m && m != r->serving && m != r->model) return m;
    }
    return NULL;
}

/* 0 started; 1 this deployment cannot serve the request (r->err_msg says
 * why: a 400 if nothing else can); -1 failed to start. */
static int attempt_on(gw_req *r, size_t i)
{
    const gw_deployment *prev_dep = r->dep;
    size_t prev_index = r->dep_index;
    int prev_translate = r->translate;
    r->dep = &r->serving->deployments[i];
    r->dep_index = i;
    if (i < 64) r->tried |= 1ull << i;
    render_reset(r);
    r->translate = xlate_needed(r->dep->provider, r->route);
    int rc = 1;
    if (r->translate && r->route == ROUTE_EMBEDDINGS && !r->dep->provider->build_embed) {
        snprintf(r->err_msg, sizeof r->err_msg, "Embeddings are not available from provider %s.", r->dep->provider->name);
        r->err_code = "unsupported_route";
        goto refused;
    }
    if (r->translate && r->route != ROUTE_EMBEDDINGS && !r->chat_parsed) {
        const char *body = (const char *)evbuffer_pullup(r->req->buffer_in, -1);
        r->err_code = "invalid_request";
        if (xlate_parse_request(r->route, json_root(r->doc), body, &r->chat, r->err_msg, sizeof r->err_msg, &r->err_param) < 0) {
            chat_req_free(&r->chat);   /* nothing half-parsed is left for another deployment */
            chat_req_init(&r->chat);
            goto refused;
        }
        r->chat_parsed = 1;
    }
    int64_t now = loop_now_ms(r->w);
    r->est_tokens = r->serving->strategy_id == STRATEGY_USAGE
        ? estimate_tokens(r, evbuffer_get_length(r->req->buffer_in)) : 0;
    clock_gettime(CLOCK_MONOTONIC, &r->attempt_t0);
    r->err_code = "invalid_request";
    r->err_param = NULL;
    if ((rc = start_attempt(r, r->err_msg, sizeof r->err_msg, &up_callbacks, r)) != 0) goto refused;
    answer_reset(r);
    r->attempts++;
    r->alias_attempts++;
    r->in_attempt = 1;
    router_attempt_start(&r->w->router, r->serving, i, r->est_tokens, now);
    if (r->attempts == 1) hedge_arm(r);
    return 0;
refused:
    if (r->attempts > 0) {   /* the last failure stays the answer if nothing else starts */
        r->dep = prev_dep;
        r->dep_index = prev_index;
        r->translate = prev_translate;
    }
    return rc;
}

enum { NEXT_STARTED, NEXT_WAITING, NEXT_NONE, NEXT_FAILED };

static void on_retry_timer(evutil_socket_t fd, short what, void *arg);

static int schedule_attempt(gw_req *r, long delay_ms)
{
    if (!r->retry_timer && !(r->retry_timer = evtimer_new(r->w->base, on_retry_timer, r))) return 0;
    struct timeval tv = { delay_ms / 1000, (delay_ms % 1000) * 1000 };
    return evtimer_add(r->retry_timer, &tv) == 0;
}

/* Picks and starts the next attempt: this alias's deployments (as the
 * strategy and the breakers allow), then the fallbacks in order. */
static int attempt_next(gw_req *r)
{
    for (int guard = 0; guard < 4 * MAX_ATTEMPTS_TOTAL; guard++) {
        const gw_route_policy *p = &r->serving->policy;
        if (r->attempts >= MAX_ATTEMPTS_TOTAL) return NEXT_NONE;
        long wait = 0;
        int i = r->alias_attempts < p->max_attempts
            ? router_pick(&r->w->router, r->serving, r->tried, loop_now_ms(r->w), &wait) : -1;
        if (i >= 0) {
            int rc = attempt_on(r, (size_t)i);
            if (rc == 0) return NEXT_STARTED;
            if (rc < 0) return NEXT_FAILED;
            r->alias_attempts++;   /* this deployment cannot render it: count it so the loop ends */
            continue;
        }
        /* held by a 429's Retry-After: a retry may wait that long */
        if (wait > 0 && r->attempts > 0 && wait <= p->max_retry_after_ms && r->alias_attempts < p->max_attempts)
            return schedule_attempt(r, wait) ? NEXT_WAITING : NEXT_FAILED;
        if (wait > 0 && (!r->held_ms || wait < r->held_ms)) r->held_ms = wait;
        const gw_model *m = next_fallback(r);
        if (!m) return NEXT_NONE;
        switch_alias(r, m);
    }
    return NEXT_NONE;
}

/* Nothing started and nothing to relay: why, in the client's dialect. */
static void reply_no_attempt(gw_req *r, int rc)
{
    char msg[300];
    if (rc == NEXT_FAILED) {
        reply_error(r, 500, "server_error", "internal_error", NULL, "The gateway could not start the upstream call.");
    } else if (r->err_msg[0]) {
        reply_error(r, 400, "invalid_request_error", r->err_code ? r->err_code : "invalid_request", r->err_param, r->err_msg);
    } else if (r->held_ms > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%ld", (r->held_ms + 999) / 1000);
        evhtp_headers_add_header(r->req->headers_out, evhtp_header_new("Retry-After", ra, 0, 1));
        snprintf(msg, sizeof msg, "Every deployment of '%s' is rate limited by its provider. Please try again in %ss.",
                 r->model->alias, ra);
        reply_error(r, 429, "rate_limit_error", "upstream_rate_limited", NULL, msg);
    } else {
        snprintf(msg, sizeof msg, "No deployment of '%s' is available: every one is failing (circuit open).", r->model->alias);
        reply_error(r, 503, "upstream_error", "no_healthy_deployment", NULL, msg);
    }
}

/* After a failed attempt: 1 if another one is on its way. */
static int plan_retry(gw_req *r, attempt_outcome o)
{
    if (!r->req || r->attempts >= MAX_ATTEMPTS_TOTAL) return 0;
    if (o == OUTCOME_CONTEXT) {   /* only a larger context helps, and it is no retry storm */
        const char *a = r->serving->policy.context_fallback;
        const gw_model *m = a && !r->ctx_fallback_used ? config_find_model(r->cfg, a, strlen(a)) : NULL;
        if (!m) return 0;
        r->ctx_fallback_used = 1;
        switch_alias(r, m);
        return schedule_attempt(r, 0);
    }
    if (!router_may_retry(&r->w->router)) return 0;
    r->retry_slot = 1;
    long d = router_backoff_ms(&r->w->router, &r->serving->policy, r->attempts, 0);
    if (schedule_attempt(r, d)) return 1;
    router_retry_done(&r->w->router);
    r->retry_slot = 0;
    return 0;
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    gw_req *r = arg;
    (void)fd; (void)what;
    /* keep the failed attempt's answer until another one starts: it is the reply if none does */
    int rc = attempt_next(r);
    if (rc == NEXT_STARTED || rc == NEXT_WAITING) return;
    if (r->retry_slot) { router_retry_done(&r->w->router); r->retry_slot = 0; }
    if (r->attempts > 0 && r->schema_pending) reply_schema_error(r);
    else if (r->attempts > 0) reply_attempt(r);
    else reply_no_attempt(r, rc);
    req_finish(r);
}

/* A classifier alias sends the request to its cheap or flagship tier; a
 * traffic split sends split_percent of an alias's requests to another. */
static void route_alias(gw_req *r)
{
    const gw_route_policy *p = &r->model->policy;
    const char *to = NULL;
    if (r->model->strategy_id == STRATEGY_CLASSIFIER && p->cheap_alias && p->flagship_alias) {
        r->complexity = classify_request(json_root(r->doc), NULL);
        r->tier = r->complexity >= p->classifier_threshold ? "flagship" : "cheap";
        to = r->tier[0] == 'f' ? p->flagship_alias : p->cheap_alias;
    } else if (p->split_alias && p->split_percent > 0 && router_random(&r->w->router) * 100.0 < p->split_percent) {
        to = p->split_alias;
    }
    const gw_model *m = to ? config_find_model(r->cfg, to, strlen(to)) : NULL;
    if (!m) return;
    r->serving = m;
    if (!r->tier) r->split = m->alias;
}

/* "k:" + the control plane's key id; YAML keys have none, so a hash of the name. */
static void limit_subject(const gw_req *r, char *out, size_t len)
{
    auth_subject(r->key, out, len);
}

static void refuse(gw_req *r, const rl_ticket *t, int team)
{
    int kind = t->refused - 1;
    char ra[16], msg[200];
    metrics_rate_limited(kind == RL_RPM ? MX_LIMIT_RPM : MX_LIMIT_TPM);
    snprintf(ra, sizeof ra, "%d", t->retry_after);
    evhtp_headers_t *h = r->req->headers_out;
    evhtp_headers_add_header(h, evhtp_header_new("Retry-After", ra, 0, 1));
    evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Limit-Kind", kind == RL_RPM ? "rpm" : "tpm", 0, 0));
    snprintf(msg, sizeof msg, "Rate limit reached for %s per minute (%s)%s: limit %" PRId64 ". Please try again in %ss.",
             kind == RL_RPM ? "requests" : "tokens", kind == RL_RPM ? "RPM" : "TPM", team ? " of your team" : "",
             t->limit[kind], ra);
    reply_error(r, 429, kind == RL_RPM ? "requests" : "tokens", "rate_limit_exceeded", NULL, msg);
}

static void refuse_budget(gw_req *r, const budget_refusal *why)
{
    static const char *const period[] = { "total", "daily", "weekly", "monthly", "total" };
    char ra[16], msg[240];
    snprintf(ra, sizeof ra, "%d", why->retry_after_s);
    evhtp_headers_t *h = r->req->headers_out;
    evhtp_headers_add_header(h, evhtp_header_new("Retry-After", ra, 0, 1));
    evhtp_headers_add_header(h, evhtp_header_new("X-Gateway-Limit-Kind", "budget", 0, 0));
    snprintf(msg, sizeof msg, "Budget exceeded for %s: spent %.4f of %.4f USD (%s budget).%s",
             why->team ? "your team" : "this key", why->spent_usd, why->limit_usd,
             period[why->period >= 0 && why->period <= KT_PERIOD_TOTAL ? why->period : 0],
             why->period == KT_PERIOD_TOTAL || why->period == KT_PERIOD_NONE ? " Ask an admin to raise it."
                                                                             : " It resets with the period.");
    metrics_rate_limited(MX_LIMIT_BUDGET);
    reply_error(r, 429, "insufficient_quota", "budget_exceeded", NULL, msg);
}

/* The key's budget, then its team's (after RPM and TPM). 1: go on; 0: refused. */
static int check_budget(gw_req *r)
{
    const gw_key *k = r->key;
    if (!(k->budget.limit_usd >= 0) && !(k->team_budget.limit_usd >= 0)) return 1;
    budget_refusal why;
    int64_t now_ms = loop_now_ms(r->w);
    if (budget_check(r->w->budget, k, (time_t)(now_ms / 1000), &r->budget, &why)) {
        r->budget_on = 1;
        return 1;
    }
    ratelimit_release(r->w->rl, &r->rl, now_ms);        /* refused: nothing was spent */
    ratelimit_release(r->w->rl, &r->rl_team, now_ms);
    refuse_budget(r, &why);
    return 0;
}

/* The key's RPM and TPM, then its team's, then the budgets. 1: go on; 0:
 * refused with a 429. */
static int check_limits(gw_req *r, size_t body_len)
{
    const gw_key *k = r->key;
    int key_lim = k->rpm_limit >= 0 || k->tpm_limit >= 0;
    int team_lim = r->team_id[0] && (k->team_rpm_limit >= 0 || k->team_tpm_limit >= 0);
    if (!key_lim && !team_lim) return check_budget(r);
    char sid[RL_ID_MAX + 1];
    int64_t now_ms = loop_now_ms(r->w);
    int64_t est = k->tpm_limit >= 0 || (team_lim && k->team_tpm_limit >= 0) ? estimate_tokens(r, body_len) : 0;
    if (key_lim) {
        limit_subject(r, sid, sizeof sid);
        if (!ratelimit_admit(r->w->rl, sid, k->rpm_limit, k->tpm_limit, est, now_ms, &r->rl)) {
            refuse(r, &r->rl, 0);
            return 0;
        }
    }
    if (team_lim) {
        snprintf(sid, sizeof sid, "t:%s", r->team_id);
        if (!ratelimit_admit(r->w->rl, sid, k->team_rpm_limit, k->team_tpm_limit, est, now_ms, &r->rl_team)) {
            ratelimit_release(r->w->rl, &r->rl, now_ms);   /* the key did not spend it */
            refuse(r, &r->rl_team, 1);
            return 0;
        }
    }
    return check_budget(r);
}

static const gw_key *authenticate(gw_req *r)
{
    const char *token = auth_extract_token(&r->hdr);
    if (!token) {
        reply_error(r, 401, "invalid_request_error", "missing_api_key", NULL,
                    "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.");
        return NULL;
    }
    if (r->cfg->awaiting_cp) {
        reply_error(r, 503, "server_error", "no_config", NULL,
                    "The gateway has not received its configuration from the control plane yet.");
        return NULL;
    }
    const gw_key *k = auth_lookup(r->cfg, token);
    if (!k) reply_error(r, 401, "invalid_request_error", "invalid_api_key", NULL, "Incorrect API key provided.");
    else {
        size_t kn = utf8_prefix(k->name, strlen(k->name), sizeof r->key_name - 1);
        memcpy(r->key_name, k->name, kn);   /* never cut a UTF-8 sequence: it goes into JSON logs */
        r->key_name[kn] = '\0';
        memcpy(r->key_id, k->id, sizeof r->key_id);
        memcpy(r->team_id, k->team_id, sizeof r->team_id);
    }
    return k;
}

/* From here the connection waits for us (upstream call or Redis lookup). */
static void go_async(gw_req *r)
{
    evhtp_request_set_hook(r->req, evhtp_hook_on_error, (evhtp_hook)(void (*)(void))on_client_error, r);
    evhtp_request_set_hook(r->req, evhtp_hook_on_request_fini, (evhtp_hook)on_client_fini, r);
    http_conn_hold(r->req);
    r->conn_paused = 1;
    r->w->active++;
}

/* Hands the request to the router: 1 an attempt started; 0 none could
 * (the client has its answer already). */
static int route_start(gw_req *r)
{
    r->serving = r->model;
    route_alias(r);
    if (r->model->policy.judge_alias && (r->ab_sampled = abjudge_wanted(r->model, r->route, router_random(&r->w->router))))
        r->cache_rec |= r->stream;   /* a judged stream's bytes are kept (bounded) for the judge */
    router_begin(&r->w->router);
    r->routed = 1;
    int next = attempt_next(r);
    if (next == NEXT_STARTED) return 1;
    reply_no_attempt(r, next);
    return 0;
}

/* Both caches: per team (or per key without a team) unless the alias shares one. */
static void cache_namespace(const gw_req *r, char *ns, size_t len)
{
    if (r->model->cache_shared) snprintf(ns, len, "shared");
    else if (r->team_id[0]) snprintf(ns, len, "t:%s", r->team_id);
    else limit_subject(r, ns, len);
}

/* ---- the semantic cache: embed the prompt, find the nearest earlier one ---- */

static void on_sem_result(gw_req *r, const cache_entry *e, double sim)
{
    r->cache_similarity = sim;
    metrics_semcache(e ? MX_SEM_HIT : MX_SEM_MISS);
    if (e) reply_cached(r, e);
    else if (route_start(r)) return;
    req_finish(r);
}

static void on_sem_answer(void *ud, const cache_entry *e, double sim)
{
    gw_req *r = ud;
    r->sem_wait = NULL;   /* freed by the semantic cache after this returns */
    on_sem_result(r, e, sim);
}

static void on_sem_embedded(void *ud, float *v, uint32_t dim)
{
    gw_req *r = ud;
    r->sem_embed = NULL;
    if (!v) {   /* the embedding failed: the request goes on without the semantic cache */
        r->sem_on = 0;
        metrics_semcache(MX_SEM_SKIP_FIRST + SEM_SKIP_EMBED - 1);
        if (!route_start(r)) req_finish(r);
        return;
    }
    r->sem_vec = v;
    r->sem_dim = dim;
    cache_entry e;
    double sim;
    int rc = semcache_get(r->w->semcache, r->sem_part, v, dim, r->model->semantic->threshold, &e, &sim,
                          on_sem_answer, r, &r->sem_wait);
    if (rc != 2) on_sem_result(r, rc == 1 ? &e : NULL, sim);
}

/* 1: the prompt is being embedded (the request is async from here); 0: the
 * alias has no semantic cache or this request must not use it. */
static int semantic_begin(gw_req *r)
{
    const gw_semantic *sc = r->model->semantic;
    if (!sc || !r->w->semcache || (r->route != ROUTE_CHAT && r->route != ROUTE_MESSAGES)) return 0;
    int why = semprompt_optout(r->hdr.cache_control, r->hdr.x_gateway_cache, r->hdr.x_gateway_semantic_cache)
              ? SEM_SKIP_OPTOUT : SEM_SKIP_NONE;
    buf_t text;
    buf_init(&text);
    if (!why) why = semprompt_text(json_root(r->doc), (int)r->route, sc->max_temperature, &text);
    const gw_model *emb = why ? NULL : config_find_model(r->cfg, sc->embedding_model, strlen(sc->embedding_model));
    if (!why && !(r->sem_embed = emb ? semembed_start(r->w->base, r->w->up, emb, text.data, text.len, on_sem_embedded, r) : NULL))
        why = SEM_SKIP_EMBED;
    buf_free(&text);
    if (why) { metrics_semcache(MX_SEM_SKIP_FIRST + why - 1); return 0; }
    char ns[RL_ID_MAX + 8];
    cache_namespace(r, ns, sizeof ns);
    semprompt_partition(json_root(r->doc), (int)r->route, r->stream, r->model->alias, ns, r->sem_part);
    r->sem_on = 1;
    r->cache_rec = r->stream;   /* the stream is recorded to be stored */
    return 1;
}

static void on_cache_answer(void *ud, const cache_entry *e)
{
    gw_req *r = ud;
    r->cache_wait = NULL;   /* the cache frees its handle after this returns */
    if (e) { metrics_cache(MX_CACHE_HIT); reply_cached(r, e); }
    else {
        metrics_cache(MX_CACHE_MISS);
        if (semantic_begin(r) || route_start(r)) return;
    }
    req_finish(r);
}

/* 0: go upstream (miss, bypass or no cache), 1: answered (hit), 2: waiting on Redis. */
static int cache_begin(gw_req *r)
{
    const char *cc = r->hdr.cache_control, *xg = r->hdr.x_gateway_cache;
    if (!cc && !xg && r->model->cache_ttl_s <= 0) return 0;   /* the common case */
    r->cache_mode = cache_parse_directives(cc, xg, r->model->cache_ttl_s, r->cfg->cache_default_ttl_s, &r->cache_ttl_s);
    if (r->cache_mode == CACHE_OFF) return 0;
    if (r->cache_mode == CACHE_NO_STORE) { metrics_cache(MX_CACHE_BYPASS); return 0; }
    char ns[RL_ID_MAX + 8];
    cache_namespace(r, ns, sizeof ns);
    cache_key(json_root(r->doc), (int)r->route, r->stream, r->model->alias, ns, r->cache_key);
    r->cache_rec = r->stream;
    if (r->cache_mode == CACHE_REFRESH) { metrics_cache(MX_CACHE_BYPASS); return 0; }
    cache_entry e;
    int rc = cache_get(r->w->cache, r->cache_key, &e, on_cache_answer, r, &r->cache_wait);
    if (rc == 1) { metrics_cache(MX_CACHE_HIT); reply_cached(r, &e); return 1; }
    if (rc == 2) return 2;
    metrics_cache(MX_CACHE_MISS);
    return 0;
}

/* The alias's prompt decoration (decorate.h): the body is replaced by the
 * decorated one, so pass-through, translation, hedges and the cache key all
 * see it. 0 go on, -1 answered (out of memory). */
static int decorate(gw_req *r)
{
    if (r->route == ROUTE_EMBEDDINGS) return 0;
    struct evbuffer *in = r->req->buffer_in;
    size_t len = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    buf_t out; buf_init(&out);
    int rc = decorate_body(r->model->prompt, r->route == ROUTE_MESSAGES, body ? body : "", len, json_root(r->doc), &out);
    if (rc > 0 && replace_body(r, &out) < 0) rc = -1;
    buf_free(&out);
    if (rc < 0) reply_error(r, 500, "server_error", "internal_error", NULL, "Out of memory while decorating the prompt.");
    return rc < 0 ? -1 : 0;
}

/* Cache, then the router. 1: the connection waits for an answer; 0: answered. */
static int cache_and_route(gw_req *r)
{
    if (r->cfg->log_prompts_ratio > 0 && (r->log_prompt = promptlog_sampled(r->cfg->log_prompts_ratio, r->w->req_seq)))
        r->cache_rec = r->stream;   /* the stream's text is kept for the log line */
    switch (cache_begin(r)) {
    case 1: trace_mark(&r->tr, TR_ROUTE, 1); return 0;   /* answered from memory */
    case 2: return 1;                                    /* Redis answers later: on_cache_answer */
    }
    if (semantic_begin(r)) return 1;                     /* the embedding answers later: on_sem_embedded */
    int started = route_start(r);
    trace_mark(&r->tr, TR_ROUTE, 1);
    return started;
}

/* The webhook's verdict (guardhook.h): allow, block, mask the listed text;
 * a timeout or error is allowed with fail_open, refused (503) without. */
static void on_guard_verdict(void *ud, const guard_verdict *v)
{
    gw_req *r = ud;
    r->ghook = NULL;   /* the hook frees itself after this returns */
    const guard_policy *p = NULL;
    for (size_t i = 0; i < r->gchain.n && !p; i++)
        if (guard_policy_webhook(r->gchain.p[i], NULL, NULL) && (guard_policy_stages(r->gchain.p[i]) & GUARD_INPUT)) p = r->gchain.p[i];
    int fail_open = 0;
    if (p) guard_policy_webhook(p, NULL, &fail_open);
    int64_t now = loop_now_ms(r->w);
    if (v->action == HOOK_ERROR && !fail_open) {
        guard_result_add(&r->gres, GUARD_INPUT, "webhook_error", GUARD_BLOCK, 0);
        ratelimit_release(r->w->rl, &r->rl, now);
        ratelimit_release(r->w->rl, &r->rl_team, now);
        r->error = "guardrail_unavailable";
        reply_error(r, 503, "server_error", "guardrail_unavailable", NULL,
                    "The guardrail service could not check this request; please try again.");
        req_finish(r);
        return;
    }
    if (v->action == HOOK_ERROR) guard_result_add(&r->gres, GUARD_INPUT, "webhook_error", GUARD_LOG, 0);
    else if (v->action == HOOK_BLOCK) {
        guard_result_add(&r->gres, GUARD_INPUT, "webhook", GUARD_BLOCK, 0);
        ratelimit_release(r->w->rl, &r->rl, now);
        ratelimit_release(r->w->rl, &r->rl_team, now);
        guard_refuse(r, GUARD_INPUT);
        req_finish(r);
        return;
    } else if (v->action == HOOK_MASK) {
        guard_result_add(&r->gres, GUARD_INPUT, "webhook", GUARD_MASK, 0);
        const char *body = (const char *)evbuffer_pullup(r->req->buffer_in, -1);
        buf_t nb;
        buf_init(&nb);
        int rc = guardjson_mask_literals(r->route, body ? body : "", json_root(r->doc), v->mask, v->nmask, "[REDACTED]", &nb);
        if (rc < 0 || (rc == 1 && replace_body(r, &nb) < 0)) {
            buf_free(&nb);
            reply_error(r, 500, "server_error", "internal_error", NULL, "Out of memory.");
            req_finish(r);
            return;
        }
        buf_free(&nb);
    } else guard_result_add(&r->gres, GUARD_INPUT, "webhook", GUARD_LOG, 0);
    if (!cache_and_route(r)) req_finish(r);
}

/* The first input policy with a webhook gets the (already masked) text.
 * 0: none; 1: in flight; 2: refused (it could not start, fail-closed). */
static int guard_webhook_start(gw_req *r)
{
    for (size_t i = 0; i < r->gchain.n; i++) {
        long tmo;
        int fail_open;
        const char *url = guard_policy_webhook(r->gchain.p[i], &tmo, &fail_open);
        if (!url || !(guard_policy_stages(r->gchain.p[i]) & GUARD_INPUT)) continue;
        buf_t text;
        buf_init(&text);
        if (guardjson_collect(r->route, json_root(r->doc), &text) == 0)
            r->ghook = guard_hook_start(r->w->up, url, tmo, r->model->alias, text.data ? text.data : "", text.len,
                                        on_guard_verdict, r);
        buf_free(&text);
        if (r->ghook) return 1;
        if (fail_open) { guard_result_add(&r->gres, GUARD_INPUT, "webhook_error", GUARD_LOG, 0); return 0; }
        guard_result_add(&r->gres, GUARD_INPUT, "webhook_error", GUARD_BLOCK, 0);
        r->error = "guardrail_unavailable";
        reply_error(r, 503, "server_error", "guardrail_unavailable", NULL,
                    "The guardrail service could not check this request; please try again.");
        return 2;
    }
    return 0;
}

/* After responses_prepare: 0 go on, -1 answered (the error). */
static int responses_prepared(gw_req *r, int st, const char *msg, const char *param)
{
    if (st) {
        reply_error(r, st, st >= 500 ? "server_error" : "invalid_request_error",
                    st == 404 ? "not_found" : st >= 500 ? "internal_error" : "invalid_request", param, msg);
        return -1;
    }
    r->chat_parsed = 1;
    if (r->stream && guard_wants(r, GUARD_OUTPUT)) {   /* its typed events carry the text several times over */
        reply_error(r, 400, "invalid_request_error", "unsupported_with_guardrails", "stream",
                    "This model's output guardrails cannot check a streamed Responses answer yet; send stream: false.");
        return -1;
    }
    if (r->model->prompt && decorate_chat(r->model->prompt, &r->chat) < 0) {
        reply_error(r, 500, "server_error", "internal_error", NULL, "Out of memory while decorating the prompt.");
        return -1;
    }
    return 0;
}

/* Limits, the guard's webhook, the response cache and the router: 2 async
 * (the connection is held), else the client has its answer and the caller
 * finishes r. */
static int admit_and_route(gw_req *r)
{
    trace_mark(&r->tr, TR_LIMITS, 0);
    int admitted = check_limits(r, evbuffer_get_length(r->req->buffer_in));
    trace_mark(&r->tr, TR_LIMITS, 1);
    if (!admitted) return 0;
    switch (r->gchain.n ? guard_webhook_start(r) : 0) {
    case 1: if (!r->conn_paused) go_async(r); return 2;   /* on_guard_verdict goes on */
    case 2: return 0;
    }
    if (!cache_and_route(r)) return 0;
    if (!r->conn_paused) go_async(r);
    return 2;
}

/* The previous response came from Redis (or did not): on as handle_api. */
static void on_responses_prepared(void *ud, int status, const char *msg, const char *param)
{
    gw_req *r = ud;
    r->prev_wait = NULL;   /* freed by respredis after this returns */
    if (responses_prepared(r, status, msg, param) == 0 && admit_and_route(r) == 2) return;
    req_finish(r);
}

static void handle_api(evhtp_request_t *req, gw_route route, worker_t *w)
{
    evloop_note_traffic();
    gw_req *r = req_acquire(w);
    if (!r) {
        http_send_openai_error(req, 503, "server_error", "overloaded", NULL, "Out of memory.");
        http_conn_sync_done(req);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    if (w->usage) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        r->ts_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    r->w = w;
    r->req = req;
    r->route = route;
    r->client = xlate_client(route);
    chat_req_init(&r->chat);
    r->cfg = config_ref(w->cfg);
    new_request_id(w, r->id, sizeof r->id);
    http_index_headers(req->headers_in, &r->hdr);
    trace_begin(w->tracer, &r->tr, &r->t0, r->hdr.traceparent);
    buf_init(&r->http.url); buf_init(&r->http.body); buf_init(&r->http.hdrs); buf_init(&r->local); buf_init(&r->resp);

    char msg[256];
    const char *param = NULL;
    if (evhtp_request_get_method(req) != htp_method_POST) {
        reply_error(r, 405, "invalid_request_error", "method_not_allowed", NULL, "Use POST for this route.");
        goto done;
    }
    trace_mark(&r->tr, TR_AUTH, 0);
    r->key = authenticate(r);
    trace_mark(&r->tr, TR_AUTH, 1);
    if (!r->key) goto done;

    struct evbuffer *in = req->buffer_in;
    size_t len = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    json_error jerr;
    json_limits lim = { .max_depth = JSON_MAX_DEPTH, .max_bytes = r->cfg->max_body_bytes };
    if (!(r->doc = json_parse(body ? body : "", len, &lim, &jerr))) {
        snprintf(msg, sizeof msg, "We could not parse the JSON body of your request: %s at line %d column %d (byte %zu).",
                 jerr.message, jerr.line, jerr.column, jerr.offset);
        reply_error(r, 400, "invalid_request_error", "invalid_json", NULL, msg);
        goto done;
    }
    validated v;
    if (validate_request(route, json_root(r->doc), &v, msg, sizeof msg, &param) < 0) {
        reply_error(r, 400, "invalid_request_error", "invalid_request", param, msg);
        goto done;
    }
    const json_value *model = v.model;
    r->stream = v.stream;
    if (r->stream && route != ROUTE_EMBEDDINGS && route != ROUTE_MESSAGES) {
        const json_value *so = json_get(json_root(r->doc), "stream_options");
        const json_value *iu = so ? json_get(so, "include_usage") : NULL;
        r->want_usage = !(iu && iu->type == JSON_TRUE);
    }
    trace_mark(&r->tr, TR_ROUTE, 0);
    if (!(r->model = config_find_model(r->cfg, model->str, model->str_len))) {
        snprintf(msg, sizeof msg, "The model '%.*s' does not exist or you do not have access to it.",
                 (int)(model->str_len > 100 ? 100 : model->str_len), model->str);
        reply_error(r, 404, "invalid_request_error", "model_not_found", "model", msg);
        goto done;
    }
    if (!config_key_allows(r->key, model->str, model->str_len)) {
        snprintf(msg, sizeof msg, "This key is not allowed to use the model '%s'.", r->model->alias);
        reply_error(r, 403, "permission_error", "model_not_allowed", "model", msg);
        goto done;
    }
    guard_set_chain(r->cfg->guard, r->model->alias, r->key->name, &r->gchain);
    if (r->gchain.n && guard_input(r)) goto done;   /* the client's text, before the alias's own is added */
    if (route == ROUTE_RESPONSES) {   /* parsed now: its previous response is looked up before any limit is spent */
        const char *cur = (const char *)evbuffer_pullup(in, -1);   /* the guard may have replaced the body */
        int st = responses_prepare(&r->chat, json_root(r->doc), cur ? cur : "", r->key, msg, sizeof msg, &param,
                                   on_responses_prepared, r, &r->prev_wait);
        if (st == RESPONSES_PENDING) { go_async(r); return; }   /* on another node's: Redis answers later */
        if (responses_prepared(r, st, msg, param) < 0) goto done;
    } else if (r->model->prompt && decorate(r) < 0) goto done;   /* before routing: every variant gets it */
    if (admit_and_route(r) == 2) return;
done:
    req_finish(r);
}

static void on_chat(evhtp_request_t *req, void *arg) { handle_api(req, ROUTE_CHAT, arg); }
static void on_completions(evhtp_request_t *req, void *arg) { handle_api(req, ROUTE_COMPLETIONS, arg); }
static void on_embeddings(evhtp_request_t *req, void *arg) { handle_api(req, ROUTE_EMBEDDINGS, arg); }
static void on_messages(evhtp_request_t *req, void *arg) { handle_api(req, ROUTE_MESSAGES, arg); }
static void on_responses(evhtp_request_t *req, void *arg) { handle_api(req, ROUTE_RESPONSES, arg); }

static void on_models(evhtp_request_t *req, void *arg)
{
    worker_t *w = arg;
    const gw_config *cfg = w->cfg;
    if (evhtp_request_get_method(req) != htp_method_GET) {
        http_send_openai_error(req, 405, "invalid_request_error", "method_not_allowed", NULL, "Use GET for this route.");
        http_conn_sync_done(req);
        return;
    }
    http_req_headers hdr;
    http_index_headers(req->headers_in, &hdr);
    const char *token = auth_extract_token(&hdr);
    const gw_key *k = token ? auth_lookup(cfg, token) : NULL;
    if (!k) {
        http_send_openai_error(req, 401, "invalid_request_error", token ? "invalid_api_key" : "missing_api_key",
                               NULL, token ? "Incorrect API key provided." : "You didn't provide an API key.");
        http_conn_sync_done(req);
        return;
    }
    buf_t b; buf_init(&b);
    buf_puts(&b, "{\"object\":\"list\",\"data\":[");
    int first = 1;
    for (size_t i = 0; i < cfg->nmodels; i++) {
        const char *a = cfg->models[i].alias;
        if (!config_key_allows(k, a, strlen(a))) continue;
        buf_puts(&b, first ? "{\"id\":" : ",{\"id\":");
        buf_json_str(&b, a, strlen(a));
        buf_puts(&b, ",\"object\":\"model\",\"created\":0,\"owned_by\":\"gateway\"}");
        first = 0;
    }
    buf_puts(&b, "]}");
    http_send_json(req, 200, b.data, b.len);
    http_conn_sync_done(req);
    buf_free(&b);
}

static void on_healthz(evhtp_request_t *req, void *arg)
{
    (void)arg;
    static const char ok[] = "{\"status\":\"ok\"}";
    http_send_json(req, 200, ok, sizeof ok - 1);
    http_conn_sync_done(req);
}

static void on_readyz(evhtp_request_t *req, void *arg)
{
    worker_t *w = arg;
    char body[128];
    int ready = w->cfg && !w->cfg->awaiting_cp && !w->draining;
    int n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"config_version\":%" PRIu64 ",\"worker\":%d}",
                     ready ? "ready" : (w->draining ? "draining" : "no_config"), w->cfg ? w->cfg->version : 0, w->index);
    http_send_json(req, ready ? 200 : 503, body, (size_t)n);
    http_conn_sync_done(req);
}

static void on_not_found(evhtp_request_t *req, void *arg)
{
    (void)arg;
    http_send_openai_error(req, 404, "invalid_request_error", "not_found", NULL, "Unknown route.");
    http_conn_sync_done(req);
}

int request_register_routes(worker_t *w)
{
    struct { const char *path; evhtp_callback_cb cb; } routes[] = {
        { "/v1/chat/completions", on_chat },
        { "/v1/completions", on_completions },
        { "/v1/embeddings", on_embeddings },
        { "/v1/messages", on_messages },
        { "/v1/responses", on_responses },
        { "/v1/models", on_models },
        { "/healthz", on_healthz },
        { "/readyz", on_readyz },
    };
    /* first: evhtp matches path callbacks by prefix, and "/v1/responses" would take these */
    if (responses_register_routes(w) < 0) return -1;   /* GET / DELETE /v1/responses/{id} */
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!evhtp_set_cb(w->htp, routes[i].path, routes[i].cb, w)) return -1;
    evhtp_set_gencb(w->htp, on_not_found, w);
    return 0;
}
