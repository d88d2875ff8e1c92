/* worker: one pre-forked process: its own libevent loop, libevhtp server on
 * the listener the master bound, upstream client, and the config snapshot
 * it serves from. Everything here is single-threaded: no locks. */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "router.h"

struct event_base;
struct event;
struct evhtp;
struct gw_config;
struct upstream;
struct accesslog;
struct cpsync;
struct usagelog;
struct ratelimit;
struct rlredis;
struct budget_local;
struct cache;
struct respredis;
struct tracer;

typedef struct worker {
    int                 index;
    const char         *config_path;
    struct event_base  *base;
    struct evhtp       *htp;
    struct gw_config   *cfg;        /* current snapshot; requests hold their own ref */
    struct upstream    *up;
    struct accesslog   *alog;
    struct cpsync      *cp;         /* control-plane mode: follows the agent */
    struct usagelog    *usage;      /* control-plane mode: usage events for the agent */
    struct ratelimit   *rl;         /* RPM/TPM admission (ratelimit.h) */
    struct rlredis     *rlstore;    /* its shared store, when redis_url is set */
    struct budget_local *budget;    /* this worker's own spend per budgeted key (budget.h) */
    struct cache       *cache;      /* response cache: LRU + Redis (cache.h) */
    struct semcache    *semcache;   /* semantic cache: HNSW per partition + Redis streams (semcache.h) */
    struct respredis   *respredis;  /* stored Responses shared by every node (respredis.h), or NULL */
    struct tracer      *tracer;     /* OTLP span export, when tracing is configured (trace.h) */
    router_t            router;     /* deployment health, latency and usage; retry budget (router.h) */
    struct abjudge     *ab;         /* evaluated A/B: judge jobs off the request path (abjudge.h) */
    uint64_t            id_prefix;  /* random per worker: request ids are unique across workers */
    uint64_t            req_seq;
    size_t              active;     /* requests in flight (async) */
    void               *req_pool;   /* freed request states kept for reuse (request.c) */
    size_t              req_pool_n;
    int                 draining;
    long                busy_poll_us;   /* evloop.h; follows the config on reload */
    buf_t               logline;    /* reused to format access-log lines */
    struct event       *ev_term, *ev_int, *ev_hup, *ev_drain_check;
} worker_t;

/* Serves until drained; returns the process exit code. Takes a ref on cfg. */
int  worker_run(int listen_fd, struct gw_config *cfg, const char *config_path, int index);

/* Called by the request layer when an async request ends. */
void worker_request_done(worker_t *w);

#endif
