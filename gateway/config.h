/* config: the gateway's configuration as one immutable, refcounted snapshot.
 *
 * A worker serves every request from the snapshot it started with; a reload
 * (SIGHUP, or a push from the control plane) builds a new snapshot off to
 * the side and swaps one pointer. Virtual keys are hashed on load: the plain
 * key never outlives parsing.
 *
 * The key table is the exception to "immutable": with a control plane it
 * holds up to millions of keys and deltas change it in place (keytab.h), so
 * a request copies what it needs of its key at auth time.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "decorate.h"
#include "keytab.h"
#include "pricing.h"
#include "trace.h"
#include "upstream.h"

struct provider;

typedef struct gw_deployment {
    const struct provider *provider;
    char  *provider_name;
    char  *model;              /* upstream model name */
    char  *base_url;           /* without trailing slash */
    char  *api_key;            /* resolved secret; never logged */
    char  *auth_header;        /* precomputed "Authorization: Bearer ..." (or NULL) */
    char  *preset;             /* openai_compatible: a known provider's defaults (groq, mistral, ...) */
    char  *api_version;        /* azure */
    char  *region;             /* bedrock */
    char  *aws_access_key_id;  /* bedrock; resolved secrets, never logged */
    char  *aws_secret_access_key;
    char  *aws_session_token;
    int    weight;
    long   latency_ms;         /* mock only: simulated latency */
    int64_t rpm_limit;         /* the deployment's own caps for the usage strategy; < 0: none */
    int64_t tpm_limit;
    uint64_t route_id;         /* identity for the router's per-worker state (alias, provider, url, model) */
    upstream_timeouts timeouts;
    gw_price_override price_override;   /* as configured (< 0: not set) */
    gw_price          price;            /* resolved at load: table + override (pricing.h) */
} gw_deployment;

/* How an alias routes and recovers (router.h); YAML `router:` per alias. */
typedef enum { STRATEGY_WEIGHTED, STRATEGY_LEAST_LATENCY, STRATEGY_LEAST_COST, STRATEGY_USAGE,
               STRATEGY_CLASSIFIER } gw_strategy;

typedef struct gw_route_policy {
    int    max_attempts;         /* per request, over every deployment and fallback (default 3) */
    long   backoff_base_ms;      /* first retry waits about this (doubling, with jitter) */
    long   backoff_max_ms;
    long   max_retry_after_ms;   /* a longer upstream Retry-After is not waited for */
    int    breaker_failures;     /* consecutive failures that open a deployment's breaker */
    double breaker_ratio;        /* ... or this failure ratio over a window of at least breaker_min_requests */
    int    breaker_min_requests;
    long   breaker_cooldown_ms;  /* open this long, then one half-open probe */
    long   hedge_ms;             /* 0: no hedging; > 0 fixed delay; < 0: the deployment's recent p95 */
    char  *context_fallback;     /* alias for context-length errors (or NULL) */
    char  *split_alias;          /* traffic split: split_percent of requests go to this alias */
    double split_percent;
    char  *cheap_alias;          /* classifier: tiers by complexity score */
    char  *flagship_alias;
    double classifier_threshold; /* score >= threshold: flagship */
    int    schema_retries;       /* structured output: attempts after an answer failing its schema (default 1) */
    char  *judge_alias;          /* evaluated A/B (abjudge.h): the alias judging split_alias against this one */
    char  *judge_rubric;         /* what "better" means, for the judge (NULL: a generic rubric) */
    double judge_sample_ratio;   /* fraction of requests judged (default 0.1 when judge is set) */
} gw_route_policy;

void config_route_policy_defaults(gw_route_policy *p);
/* Sets one router setting by its YAML name from its text ("3", "0.5",
 * "p95", an alias); -1 with the reason (unknown name, out of range). */
int  config_route_policy_set(gw_route_policy *p, const char *key, const char *value, char *err, size_t errlen);

/* Semantic cache of an alias (YAML cache: { semantic: {...} }; semcache.h). */
typedef struct gw_semantic {
    char  *embedding_model;      /* alias of this config that embeds the prompt */
    double threshold;            /* cosine similarity that counts as the same question */
    long   ttl_s;
    double max_temperature;      /* hotter requests are never answered from it (absent: 1.0) */
} gw_semantic;

gw_semantic *config_semantic_new(void);   /* the defaults; NULL on out of memory */
void         config_semantic_free(gw_semantic *s);
/* Sets one semantic setting by its YAML name from its text; -1 with the
 * reason (unknown name, out of range). */
int          config_semantic_set(gw_semantic *s, const char *key, const char *value, char *err, size_t errlen);

typedef struct gw_model {
    char          *alias;
    char          *strategy;
    gw_strategy    strategy_id;
    gw_deployment *deployments;
    size_t         ndeployments;
    int            total_weight;
    long           cache_ttl_s;    /* response cache for this alias: 0 = only when a request asks */
    int            cache_shared;   /* one cache for every team (default: per team) */
    gw_semantic   *semantic;       /* NULL: no semantic cache */
    char         **fallbacks;    /* aliases tried in order when every deployment failed */
    size_t         nfallbacks;
    gw_route_policy policy;
    gw_prompt     *prompt;       /* prompt decoration (decorate.h), or NULL */
    char         **guardrails;   /* policy names (guardcfg.h) */
    size_t         nguardrails;
} gw_model;

typedef struct gw_config {
    int        refcount;
    uint64_t   version;        /* bumped by every load in this process */
    char      *path;
    char      *listen_host;
    int        listen_port;
    int        workers;        /* 0 = one per core */
    long       busy_poll_us;   /* evloop.h: poll this long after traffic before blocking; 0 = off */
    char      *metrics_listen;
    char      *redis_url;
    char      *state_dir;
    char      *control_plane;
    char      *dataplane_id;   /* how this node names itself to the control plane (default: hostname) */
    /* mutual TLS to a tls+tcp:// control plane (cplinktls.h): PEM files */
    char      *control_plane_ca_file, *control_plane_cert_file, *control_plane_key_file;
    char      *control_plane_server_name;   /* default: the host of control_plane */
    int        control_plane_insecure;      /* plain tcp:// beyond loopback, on purpose */
    char      *access_log;     /* "stdout" (default), "off", or a file path */
    size_t     max_body_bytes;
    size_t     max_header_bytes;
    long       client_timeout_ms;
    upstream_timeouts timeouts;
    size_t     cache_memory_bytes; /* per-worker LRU in front of Redis (cache: memory_mb) */
    size_t     cache_max_entry_bytes;
    long       cache_default_ttl_s;/* a request that opts in on an alias without cache: */
    /* responses: stored /v1/responses answers, shared by the node's workers (respstore.h);
     * mapped once by the master: a reload does not resize it */
    size_t     responses_store_bytes;      /* store_mb (0: nothing is stored) */
    size_t     responses_max_entry_bytes;  /* max_entry_kb */
    long       responses_max_per_key;
    long       responses_ttl_s;
    size_t     sem_max_entries;    /* semantic cache, per worker (cache: semantic_*) */
    size_t     sem_memory_bytes;
    long       sem_m, sem_ef;
    char      *trace_endpoint;     /* tracing: otlp_endpoint (NULL: off) */
    char      *trace_service;
    double     trace_sample_ratio;
    long       trace_queue_spans, trace_batch_spans, trace_flush_ms;
    int        trace_protocol;     /* tracing: protocol, TRACE_PROTO_* (default http/protobuf) */
    double     log_prompts_ratio;  /* log_prompts: sample_ratio (0: off) */

    struct guard_set *guard;   /* guardrails: policies and who uses them (guardcfg.h); NULL: none */

    gw_model  *models;
    size_t     nmodels;
    keytab    *keys;           /* shared (refcounted) by the snapshots of one worker */
    int        awaiting_cp;    /* control-plane mode, nothing received yet: not ready */

    /* open-addressing index built on load */
    gw_model **model_index;    size_t model_index_cap;
} gw_config;

/* Loads and validates a file. On error returns NULL and writes a message that
 * names the exact field ("models[0].deployments[1].provider: unknown provider
 * \"foo\"") into err. */
gw_config *config_load(const char *path, char *err, size_t errlen);
/* Same, from a YAML string (tests). */
gw_config *config_parse(const char *yaml, size_t len, const char *path, char *err, size_t errlen);

gw_config *config_ref(gw_config *c);
void       config_unref(gw_config *c);

/* Control-plane mode: a config with base's settings, no models and the given
 * key table (a ref is taken; NULL: an empty one). NULL on out of memory. */
gw_config *config_with_settings(const gw_config *base, keytab *keys);
/* Takes ownership of models[0..n) and indexes them; -1 (models freed) on a
 * duplicate alias or out of memory, with the reason in err. */
int        config_set_models(gw_config *c, gw_model *models, size_t n, char *err, size_t errlen);
/* Resolves and prepares a deployment whose provider, model, base_url and
 * weight are set: finds the provider and runs its prepare(). -1 with a reason. */
int        config_deployment_prepare(gw_deployment *d, char *err, size_t errlen);
void       config_deployment_free(gw_deployment *d);
/* Once every alias is indexed: the alias's embedding model exists and can
 * embed, and its ttl is settled. -1 with the reason. */
int        config_semantic_resolve(const gw_config *c, gw_model *m, char *err, size_t errlen);
/* 1 when the deployment's provider serves embeddings (semantic cache). */
int        config_deployment_embeds(const gw_deployment *d);
/* Resolves d->price from the built-in table and d->price_override (warns
 * once when an upstream model has no known price). */
void       config_deployment_price(gw_deployment *d);
void       config_model_free(gw_model *m);
/* Strategy name -> id; -1 unknown. */
int        config_strategy_id(const char *name);
/* Fills what the router derives from a model once it is built (strategy id,
 * each deployment's route_id). */
void       config_model_finish(gw_model *m);
size_t     config_key_count(const gw_config *c);

/* Lookups: O(1). key_sha256 is the SHA-256 of the presented key; *view is
 * filled and returned when a usable (unexpired, unblocked) key matches. */
const gw_key   *config_find_key(const gw_config *c, const uint8_t key_sha256[32], gw_key *view);
const gw_model *config_find_model(const gw_config *c, const char *alias, size_t len);
int             config_key_allows(const gw_key *k, const char *alias, size_t len);

#endif
