/* rlredis: Redis as ratelimit's shared store (see rlredis.h). */
#include "rlredis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "ratelimit.h"

#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000
#define CONNECT_TIMEOUT_MS 1000
#define TICK_MS            25
#define RING               4096   /* commands in flight at most; more: local */

/* Grants min(want, what is left of the limit) and returns {granted, total};
 * the counter lives two windows so a late lease never resets it. */
static const char LEASE_LUA[] =
    "local want = tonumber(ARGV[1]) local lim = tonumber(ARGV[2]) "
    "local cur = redis.call('INCRBY', KEYS[1], want) "
    "if cur == want then redis.call('PEXPIRE', KEYS[1], 120000) end "
    "local prior = cur - want local g = 0 "
    "if prior < lim then g = math.min(want, lim - prior) end "
    "return {g, math.min(cur, lim)}";

struct rlredis {
    struct event_base *base;
    ratelimit         *rl;
    redisAsyncContext *ac;
    int                connected;
    char               host[256];
    int                port, db;
    struct event      *tick, *retry;
    int64_t            connect_started_ms;
    int                backoff_ms;
    int64_t            sent_ms[RING];   /* FIFO of send times: Redis answers in order */
    unsigned           head, count;
    uint64_t           timeouts, errors, disconnects;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int rlredis_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db)
{
    *port = 6379; *db = 0;
    if (!url || strncmp(url, "redis://", 8) != 0) return -1;
    const char *p = url + 8;
    if (strchr(p, '@')) return -1;           /* credentials: not supported yet */
    size_t n = strcspn(p, ":/");
    if (n == 0 || n >= hostlen) return -1;
    memcpy(host, p, n);
    host[n] = '\0';
    p += n;
    if (*p == ':') {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v < 1 || v > 65535) return -1;
        *port = (int)v;
        p = end;
    }
    if (*p == '/') {
        if (p[1]) {
            char *end;
            long v = strtol(p + 1, &end, 10);
            if (end == p + 1 || *end || v < 0 || v > 1000) return -1;
            *db = (int)v;
        }
    } else if (*p) return -1;
    return 0;
}

static void pop_sent(rlredis *rr)
{
    if (!rr->count) return;
    rr->head = (rr->head + 1) % RING;
    rr->count--;
}

static void schedule_retry(rlredis *rr)
{
    struct timeval tv = { rr->backoff_ms / 1000, (rr->backoff_ms % 1000) * 1000 };
    if (rr->retry) event_add(rr->retry, &tv);
    rr->backoff_ms = rr->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rr->backoff_ms * 2;
}

/* Gives up on the connection: pending callbacks run now with no reply. */
static void drop(rlredis *rr, const char *why)
{
    redisAsyncContext *ac = rr->ac;
    if (!ac) return;
    if (rr->connected) log_warn("redis: %s; local rate limits until it is back", why);
    rr->ac = NULL;
    rr->connected = 0;
    rr->disconnects++;
    redisAsyncFree(ac);
    rr->head = rr->count = 0;
    schedule_retry(rr);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rlredis *rr = ac->data;
    if (rr->ac != ac) return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this returns */
        rr->ac = NULL;
        schedule_retry(rr);
        return;
    }
    rr->connected = 1;   /* the backoff resets on the first good answer: a frozen Redis accepts connections */
    log_info("redis: connected to %s:%d, shared rate limits", rr->host, rr->port);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rlredis *rr = ac->data;
    (void)status;
    if (rr->ac != ac) return;   /* dropped by us */
    log_warn("redis: connection lost; local rate limits until it is back");
    rr->ac = NULL;
    rr->connected = 0;
    rr->disconnects++;
    rr->head = rr->count = 0;
    schedule_retry(rr);
}

static void connect_now(rlredis *rr)
{
    redisAsyncContext *ac = redisAsyncConnect(rr->host, rr->port);
    if (!ac) { schedule_retry(rr); return; }
    if (ac->err) { redisAsyncFree(ac); schedule_retry(rr); return; }
    ac->data = rr;
    if (redisLibeventAttach(ac, rr->base) != REDIS_OK) { redisAsyncFree(ac); schedule_retry(rr); return; }
    rr->ac = ac;
    rr->connected = 0;
    rr->connect_started_ms = mono_ms();
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (rr->db && redisAsyncCommand(ac, NULL, NULL, "SELECT %d", rr->db) != REDIS_OK) drop(rr, "SELECT failed");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    rlredis *rr = arg;
    if (!rr->ac) connect_now(rr);
}

/* Slow Redis is treated as down: the request path must not wait for it. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    rlredis *rr = arg;
    if (!rr->ac) return;
    int64_t now = mono_ms();
    if (!rr->connected && now - rr->connect_started_ms > CONNECT_TIMEOUT_MS) {
        redisAsyncContext *ac = rr->ac;
        rr->ac = NULL;
        redisAsyncFree(ac);
        schedule_retry(rr);
    } else if (rr->connected && rr->count && now - rr->sent_ms[rr->head] > RLREDIS_TIMEOUT_MS) {
        rr->timeouts++;
        drop(rr, "no answer within the timeout");
    }
}

/* A hostile-input check of the script's answer: {granted >= 0, total >= 0}. */
static int parse_reply(const redisReply *r, int64_t *g, int64_t *total)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !r->element) return -1;
    const redisReply *a = r->element[0], *b = r->element[1];
    if (!a || !b || a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER) return -1;
    if (a->integer < 0 || b->integer < 0) return -1;
    *g = a->integer;
    *total = b->integer;
    return 0;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    rlredis *rr = ac->data;
    uint64_t token = (uint64_t)(uintptr_t)priv;
    int64_t g = -1, total = 0;
    if (rr->ac == ac) pop_sent(rr);
    if (reply && parse_reply(reply, &g, &total) == 0) rr->backoff_ms = BACKOFF_MIN_MS;
    else if (reply) {
        g = -1;
        if (rr->errors++ % 1000 == 0) {
            const redisReply *r = reply;
            log_warn("redis: unexpected lease answer (type %d%s%.*s); granted locally", r->type,
                     r->type == REDIS_REPLY_ERROR ? ": " : "",
                     r->type == REDIS_REPLY_ERROR ? (int)(r->len > 200 ? 200 : r->len) : 0,
                     r->type == REDIS_REPLY_ERROR && r->str ? r->str : "");
        }
    }
    if (rr->rl) ratelimit_lease_done(rr->rl, token, g, total);
}

int rlredis_lease(void *ud, const char *sid, int kind, int64_t window, int64_t want,
                  int64_t limit, uint64_t token)
{
    rlredis *rr = ud;
    if (!rr || !rr->ac || !rr->connected || rr->count >= RING) return -1;
    char key[96];
    snprintf(key, sizeof key, "gwrl:%c:%s:%" PRId64, kind == RL_TPM ? 't' : 'r', sid, window);
    char swant[24], slimit[24];
    snprintf(swant, sizeof swant, "%" PRId64, want);
    snprintf(slimit, sizeof slimit, "%" PRId64, limit);
    if (redisAsyncCommand(rr->ac, on_reply, (void *)(uintptr_t)token, "EVAL %s 1 %s %s %s",
                          LEASE_LUA, key, swant, slimit) != REDIS_OK)
        return -1;
    rr->sent_ms[(rr->head + rr->count) % RING] = mono_ms();
    rr->count++;
    return 0;
}

rlredis *rlredis_new(struct event_base *base, const char *url)
{
    rlredis *rr = calloc(1, sizeof *rr);
    if (!rr) return NULL;
    if (rlredis_parse_url(url, rr->host, sizeof rr->host, &rr->port, &rr->db) < 0) {
        log_error("redis_url \"%s\" is not redis://host[:port][/db]: local rate limits only", url ? url : "");
        free(rr);
        return NULL;
    }
    rr->base = base;
    rr->backoff_ms = BACKOFF_MIN_MS;
    struct timeval tv = { 0, TICK_MS * 1000 };
    if (!(rr->tick = event_new(base, -1, EV_PERSIST, on_tick, rr)) || event_add(rr->tick, &tv) < 0 ||
        !(rr->retry = evtimer_new(base, on_retry, rr))) {
        rlredis_free(rr);
        return NULL;
    }
    connect_now(rr);
    return rr;
}

void rlredis_attach(rlredis *rr, ratelimit *rl) { if (rr) rr->rl = rl; }

int rlredis_connected(const rlredis *rr) { return rr && rr->ac && rr->connected; }

void rlredis_free(rlredis *rr)
{
    if (!rr) return;
    rr->rl = NULL;   /* pending callbacks run during the free: nothing to tell */
    if (rr->ac) { redisAsyncContext *ac = rr->ac; rr->ac = NULL; redisAsyncFree(ac); }
    if (rr->tick) event_free(rr->tick);
    if (rr->retry) event_free(rr->retry);
    free(rr);
}
