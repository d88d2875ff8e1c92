/* worker: one pre-forked process serving the shared listener.
 *
 * Signals (delivered through the event loop, so handlers run as ordinary
 * callbacks): SIGHUP reloads the config file into a new snapshot; SIGTERM or
 * SIGINT drains: stop accepting, let in-flight requests and streams finish,
 * then exit.
 */
#include "worker.h"
#include "evloop.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <evhtp.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/rand.h>

#include "abjudge.h"
#include "accesslog.h"
#include "cache.h"
#include "semcache.h"
#include "respredis.h"
#include "responses.h"
#include "respstore.h"
#include "config.h"
#include "cpagent.h"
#include "cpsync.h"
#include "httputil.h"
#include "json.h"
#include "ratelimit.h"
#include "budget.h"
#include "rlredis.h"
#include "trace.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "upstream.h"
#include "usagelog.h"

#define MAX_HEADERS       100
#define DRAIN_DEADLINE_S  600   /* longest a drain waits for streams before giving up */
#define DRAIN_LINGER_MS   200   /* lets the last replies flush before exit */

/* Per-connection counters for the request being parsed: header and body
 * sizes are enforced here, before evhtp buffers them. */
typedef struct conn_guard {
    worker_t *w;
    size_t    header_bytes;
    size_t    headers;
    size_t    body_bytes;
} conn_guard;

static void reject(evhtp_request_t *req, conn_guard *g, int status, const char *reason, const char *msg)
{
    evhtp_connection_t *c = evhtp_request_get_connection(req);
    /* take_ownership drops evhtp's hooks, so the fini hook that frees g never runs */
    http_reject_connection(c, status, reason, msg);
    free(g);
}

static evhtp_res on_headers_start(evhtp_request_t *req, void *arg)
{
    conn_guard *g = arg;
    (void)req;
    g->header_bytes = g->headers = g->body_bytes = 0;
    return EVHTP_RES_OK;
}

static evhtp_res on_header(evhtp_request_t *req, evhtp_header_t *h, void *arg)
{
    conn_guard *g = arg;
    g->header_bytes += h->klen + h->vlen + 4;
    if (++g->headers > MAX_HEADERS || g->header_bytes > g->w->cfg->max_header_bytes) {
        reject(req, g, 431, "Request Header Fields Too Large", "Request headers are too large.");
        return EVHTP_RES_ERROR;
    }
    return EVHTP_RES_OK;
}

/* The framing fields in one pass: the first Content-Length and
 * Transfer-Encoding (what evhtp_header_find would return), how many of each
 * there are (it sees only the first), and whether Expect is present. */
typedef struct framing {
    const char *cl, *te;
    int         ncl, nte, expect;
} framing;

static void scan_framing(evhtp_headers_t *hdrs, framing *f)
{
    evhtp_header_t *h;
    memset(f, 0, sizeof *f);
    TAILQ_FOREACH(h, hdrs, next) {
        if (h->klen == 14 && !strncasecmp(h->key, "content-length", 14)) { if (!f->ncl++) f->cl = h->val; }
        else if (h->klen == 17 && !strncasecmp(h->key, "transfer-encoding", 17)) { if (!f->nte++) f->te = h->val; }
        else if (h->klen == 6 && !strncasecmp(h->key, "expect", 6)) f->expect = 1;
    }
}

static evhtp_res on_headers(evhtp_request_t *req, evhtp_headers_t *hdrs, void *arg)
{
    conn_guard *g = arg;
    framing f;
    scan_framing(hdrs, &f);
    if (f.expect) http_conn_expect_continue(req);
    const char *cl = f.cl, *te = f.te;
    int ncl = f.ncl, nte = f.nte;
    if (ncl > 1 || nte > 1) {
        /* evhtp frames the body by one of them, a proxy in front may have
         * used the other: ambiguous framing is refused (RFC 9112 6.3) */
        reject(req, g, 400, "Bad Request", "Content-Length or Transfer-Encoding is repeated.");
        return EVHTP_RES_ERROR;
    }
    if (cl && te) {
        /* both framings at once is the classic request-smuggling setup: refuse */
        reject(req, g, 400, "Bad Request", "Content-Length and Transfer-Encoding must not both be set.");
        return EVHTP_RES_ERROR;
    }
    if (te && strcasecmp(te, "chunked") != 0) {
        reject(req, g, 501, "Not Implemented", "Only chunked Transfer-Encoding is supported.");
        return EVHTP_RES_ERROR;
    }
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || *end || end == cl || cl[0] == '-') {
            reject(req, g, 400, "Bad Request", "Invalid Content-Length.");
            return EVHTP_RES_ERROR;
        }
        if (n > g->w->cfg->max_body_bytes) {
            char msg[128];
            snprintf(msg, sizeof msg, "Request body too large: the limit is %zu bytes.", g->w->cfg->max_body_bytes);
            reject(req, g, 413, "Payload Too Large", msg);
            return EVHTP_RES_ERROR;
        }
    }
    return EVHTP_RES_OK;
}

/* A chunk announced larger than the whole body may be is refused before its
 * bytes arrive: otherwise the parser would wait for them (a 2^63 chunk
 * swallows every later request on the connection). */
static evhtp_res on_new_chunk(evhtp_request_t *req, uint64_t len, void *arg)
{
    conn_guard *g = arg;
    if (len > g->w->cfg->max_body_bytes || g->body_bytes + len > g->w->cfg->max_body_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "Request body too large: the limit is %zu bytes.", g->w->cfg->max_body_bytes);
        reject(req, g, 413, "Payload Too Large", msg);
        return EVHTP_RES_ERROR;
    }
    return EVHTP_RES_OK;
}

static evhtp_res on_body(evhtp_request_t *req, struct evbuffer *buf, void *arg)
{
    conn_guard *g = arg;
    g->body_bytes += evbuffer_get_length(buf);
    if (g->body_bytes > g->w->cfg->max_body_bytes) {  /* chunked bodies have no length up front */
        char msg[128];
        snprintf(msg, sizeof msg, "Request body too large: the limit is %zu bytes.", g->w->cfg->max_body_bytes);
        reject(req, g, 413, "Payload Too Large", msg);
        return EVHTP_RES_ERROR;
    }
    return EVHTP_RES_OK;
}

static evhtp_res on_conn_fini(evhtp_connection_t *c, void *arg)
{
    (void)c;
    free(arg);
    return EVHTP_RES_OK;
}

static evhtp_res on_accept(evhtp_connection_t *c, void *arg)
{
    conn_guard *g = calloc(1, sizeof *g);
    if (!g) return EVHTP_RES_ERROR;
    g->w = arg;
    http_conn_accept(c);
    evhtp_connection_set_hook(c, evhtp_hook_on_headers_start, (evhtp_hook)on_headers_start, g);
    evhtp_connection_set_hook(c, evhtp_hook_on_header, (evhtp_hook)on_header, g);
    evhtp_connection_set_hook(c, evhtp_hook_on_headers, (evhtp_hook)on_headers, g);
    evhtp_connection_set_hook(c, evhtp_hook_on_read, (evhtp_hook)on_body, g);
    evhtp_connection_set_hook(c, evhtp_hook_on_new_chunk, (evhtp_hook)on_new_chunk, g);
    evhtp_connection_set_hook(c, evhtp_hook_on_connection_fini, (evhtp_hook)on_conn_fini, g);
    return EVHTP_RES_OK;
}

/* ---- drain and reload ---- */

static void drain_exit(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd; (void)what;
    if (w->active == 0) {
        log_info("drained, exiting");
        event_base_loopexit(w->base, NULL);
    }
}

static void maybe_finish_drain(worker_t *w)
{
    if (!w->draining || w->active > 0) return;
    struct timeval tv = { 0, DRAIN_LINGER_MS * 1000 };
    event_add(w->ev_drain_check, &tv);
}

void worker_request_done(worker_t *w)
{
    if (w->active > 0) w->active--;
    maybe_finish_drain(w);
}

static void drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd; (void)what;
    log_warn("drain deadline reached with %zu requests in flight, exiting", w->active);
    event_base_loopexit(w->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    worker_t *w = arg;
    (void)what;
    if (w->draining) return;
    w->draining = 1;
    log_info("signal %d: draining %zu in-flight requests", (int)sig, w->active);
    /* closes only this process's copy of the listener */
    evhtp_unbind_socket(w->htp);
    struct timeval dl = { DRAIN_DEADLINE_S, 0 };
    struct event *deadline = evtimer_new(w->base, drain_deadline, w);
    if (deadline) event_add(deadline, &dl);  /* freed with the base at exit */
    maybe_finish_drain(w);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    worker_t *w = arg;
    (void)sig; (void)what;
    char err[512];
    gw_config *next = config_load(w->config_path, err, sizeof err);
    if (!next) {
        log_error("reload failed, keeping config version %llu: %s", (unsigned long long)w->cfg->version, err);
        return;
    }
    if (w->cp) {
        /* models and keys come from the control plane: only settings change */
        if (!next->control_plane) log_warn("control_plane removed from the file: restart to run standalone");
        else if (cpagent_prepare_config(next, err, sizeof err) < 0) log_error("reload refused: %s", err);
        else { cpsync_settings(w->cp, next); w->busy_poll_us = next->busy_poll_us; log_info("settings reloaded"); }
        config_unref(next);
        return;
    }
    /* in-flight requests keep their own ref on the old snapshot */
    config_unref(w->cfg);
    w->cfg = next;
    w->busy_poll_us = next->busy_poll_us;
    log_info("config reloaded (%zu models, %zu keys)", next->nmodels, config_key_count(next));
}

#define RL_SUBJECTS 4096   /* keys and teams a worker tracks at once */

/* The workers this node runs (main.c's count): the local fallback share. */
static int node_workers(const gw_config *c)
{
    if (c->workers > 0) return c->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int setup_limits(worker_t *w)
{
    const gw_config *cfg = w->cfg;
    if (cfg->redis_url && *cfg->redis_url) w->rlstore = rlredis_new(w->base, cfg->redis_url);
    if (!(w->rl = ratelimit_new(RL_SUBJECTS, node_workers(cfg), w->rlstore ? rlredis_lease : NULL, w->rlstore)))
        return -1;
    rlredis_attach(w->rlstore, w->rl);
    if (!(w->budget = budget_local_new())) return -1;
    return 0;
}

static int setup_server(worker_t *w, int listen_fd)
{
    gw_config *cfg = w->cfg;
    if (!(w->htp = evhtp_new(w->base, NULL))) return -1;
    struct timeval client_tv = { cfg->client_timeout_ms / 1000, (cfg->client_timeout_ms % 1000) * 1000 };
    evhtp_set_timeouts(w->htp, &client_tv, &client_tv);
    /* evhtp's own body cap drops the connection without a reply; on_body
     * enforces the limit instead and answers 413, chunked bodies included */
    evhtp_set_max_body_size(w->htp, 0);
    evhtp_set_max_keepalive_requests(w->htp, 0);
    evhtp_set_post_accept_cb(w->htp, on_accept, w);
    if (request_register_routes(w) < 0) return -1;
    if (evhtp_accept_socket(w->htp, listen_fd, 4096) < 0) return -1;
    return 0;
}

/* The epoll changelist folds the add/del/modify calls made during one loop
 * iteration into one epoll_ctl per fd at dispatch: curl flips a socket
 * between read and write interest within a request, evhtp pauses and
 * resumes the client, and most of those flips cancel out. */
static struct event_base *new_event_base(void)
{
    struct event_config *ec = event_config_new();
    if (!ec) return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *b = event_base_new_with_config(ec);
    event_config_free(ec);
    return b;
}

int worker_run(int listen_fd, gw_config *cfg, const char *config_path, int index)
{
    worker_t w;
    memset(&w, 0, sizeof w);
    char name[32];
    snprintf(name, sizeof name, "worker-%d", index);
    log_set_component(name);
    /* a worker outliving a SIGKILLed master would hold the port forever */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1) return 1;

    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_IGN);

    json_enable_block_cache();   /* a worker is single-threaded */
    w.index = index;
    w.config_path = config_path;
    w.cfg = config_ref(cfg);
    if (RAND_bytes((unsigned char *)&w.id_prefix, sizeof w.id_prefix) != 1) w.id_prefix = (uint64_t)getpid() << 32;

    int rc = 1;
    upstream_opts uopts = { .max_host_connections = 0 };
    if (!(w.base = new_event_base())) { log_error("event_base_new failed"); goto out; }
    if (!(w.up = upstream_new(w.base, &uopts))) { log_error("upstream_new failed"); goto out; }
    if (!(w.alog = accesslog_open(w.base, cfg->access_log))) goto out;
    if (cfg->control_plane && !(w.cp = cpsync_start(w.base, cfg, &w.cfg))) goto out;
    if (cfg->control_plane && !(w.usage = usagelog_open(w.base, cfg->state_dir, cfg->dataplane_id, index))) goto out;
    if (setup_limits(&w) < 0) { log_error("cannot set up rate limits"); goto out; }
    if (cfg->trace_endpoint && *cfg->trace_endpoint) {
        trace_settings ts = { .endpoint = cfg->trace_endpoint, .service_name = cfg->trace_service,
                              .sample_ratio = cfg->trace_sample_ratio, .queue_spans = (size_t)cfg->trace_queue_spans,
                              .batch_spans = (size_t)cfg->trace_batch_spans, .flush_ms = cfg->trace_flush_ms,
                              .protocol = cfg->trace_protocol };
        if (!(w.tracer = tracer_new(w.base, w.up, &ts))) { log_error("cannot set up tracing"); goto out; }
    }
    if (!(w.cache = cache_new(w.base, cfg->redis_url, cfg->cache_memory_bytes, cfg->cache_max_entry_bytes))) {
        log_error("cannot set up the response cache");
        goto out;
    }
    if (!(w.semcache = semcache_new(w.base, w.cache, cfg->sem_max_entries, cfg->sem_memory_bytes, (int)cfg->sem_m,
                                    (int)cfg->sem_ef))) {
        log_error("cannot set up the semantic cache");
        goto out;
    }
    if (respstore_enabled() && cfg->redis_url && *cfg->redis_url) {   /* stored Responses, for every node */
        if (!(w.respredis = respredis_new(w.base, cfg->redis_url, cfg->responses_ttl_s, cfg->responses_max_entry_bytes))) {
            log_error("cannot set up the responses' Redis tier");
            goto out;
        }
        responses_set_redis(w.respredis);
    }
    if (router_init(&w.router, w.id_prefix ^ (uint64_t)getpid(), node_workers(cfg)) < 0) { log_error("cannot set up the router"); goto out; }
    if (!(w.ab = abjudge_new(w.base, w.up, &w.router, w.usage))) { log_error("out of memory"); goto out; }
    if (setup_server(&w, listen_fd) < 0) { log_error("cannot start the HTTP server"); goto out; }
    if (metrics_worker_start(&w) < 0) { log_error("cannot start metrics"); goto out; }
    w.ev_term = evsignal_new(w.base, SIGTERM, on_stop_signal, &w);
    w.ev_int = evsignal_new(w.base, SIGINT, on_stop_signal, &w);
    w.ev_hup = evsignal_new(w.base, SIGHUP, on_reload_signal, &w);
    w.ev_drain_check = evtimer_new(w.base, drain_exit, &w);
    if (!w.ev_term || !w.ev_int || !w.ev_hup || !w.ev_drain_check ||
        event_add(w.ev_term, NULL) < 0 || event_add(w.ev_int, NULL) < 0 || event_add(w.ev_hup, NULL) < 0) {
        log_error("cannot install signal events");
        goto out;
    }
    log_debug("serving");
    w.busy_poll_us = cfg->busy_poll_us;
    if (evloop_run(w.base, &w.busy_poll_us) < 0) log_error("event loop failed");
    else rc = 0;
out:
    abjudge_free(w.ab);        /* judge calls in flight are dropped with their verdicts */
    usagelog_close(w.usage);   /* the last batch goes to the spool */
    metrics_worker_stop();
    if (w.htp) evhtp_free(w.htp);
    tracer_free(w.tracer);   /* before the HTTP client it sends with */
    if (w.up) upstream_free(w.up);
    rlredis_free(w.rlstore);
    semcache_free(w.semcache);   /* before the cache whose Redis connection it borrows */
    cache_free(w.cache);
    responses_set_redis(NULL);
    respredis_free(w.respredis);   /* after the server: no request waits on it */
    ratelimit_free(w.rl);
    budget_local_free(w.budget);
    router_free(&w.router);
    if (w.alog) accesslog_close(w.alog);
    if (w.ev_term) event_free(w.ev_term);
    if (w.ev_int) event_free(w.ev_int);
    if (w.ev_hup) event_free(w.ev_hup);
    if (w.ev_drain_check) event_free(w.ev_drain_check);
    cpsync_stop(w.cp);
    request_pool_free(&w);     /* after evhtp and upstream: nothing frees a request later */
    if (w.base) event_base_free(w.base);
    config_unref(w.cfg);
    buf_free(&w.logline);
    return rc;
}
