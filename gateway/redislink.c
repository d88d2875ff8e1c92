/* redislink: a resilient hiredis async connection (see redislink.h). */
#include "redislink.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#include "log.h"
#include "monoclock.h"

#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000
#define CONNECT_TIMEOUT_MS 1000

typedef struct pending {
    redislink_cb cb;
    void        *arg;
    int64_t      sent_ms;
} pending;

struct redislink {
    struct event_base *base;
    redislink_opts     o;
    void              *owner;
    redisAsyncContext *ac;
    int                connected;
    char               host[256];
    int                port, db;
    struct event      *tick, *retry;
    int64_t            connect_started_ms;
    int                backoff_ms;
    pending           *ring;          /* o.max_pending slots, in send order */
    unsigned           head, count;
};

int redislink_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db)
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

static void schedule_retry(redislink *l)
{
    struct timeval tv = { l->backoff_ms / 1000, (l->backoff_ms % 1000) * 1000 };
    if (l->retry) event_add(l->retry, &tv);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

/* Every reply, in send order, and every pending command when a connection
 * is freed (reply NULL). */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    redislink *l = priv;
    (void)ac;
    if (!l->count) return;
    pending p = l->ring[l->head];
    l->head = (l->head + 1) % l->o.max_pending;
    l->count--;
    if (p.cb) p.cb(l->owner, reply, p.arg);
}

/* Gives up on the connection: pending callbacks run now with no reply. */
static void drop(redislink *l, const char *why)
{
    redisAsyncContext *ac = l->ac;
    if (!ac) return;
    if (l->connected) log_warn("%s: redis %s; %s until it is back", l->o.name, why, l->o.when_down);
    l->ac = NULL;
    l->connected = 0;
    redisAsyncFree(ac);
    l->head = l->count = 0;
    schedule_retry(l);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redislink *l = ac->data;
    if (l->ac != ac) return;
    if (status != REDIS_OK) {
        l->ac = NULL;   /* hiredis frees the context after this returns */
        schedule_retry(l);
        return;
    }
    l->connected = 1;
    log_info("%s: redis connected (%s:%d)", l->o.name, l->host, l->port);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redislink *l = ac->data;
    (void)status;
    if (l->ac != ac) return;   /* dropped by us */
    if (l->connected) log_warn("%s: redis connection lost; %s until it is back", l->o.name, l->o.when_down);
    l->ac = NULL;
    l->connected = 0;
    l->head = l->count = 0;    /* hiredis answered the pending ones (NULL) before this */
    schedule_retry(l);
}

static void connect_now(redislink *l)
{
    redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);
    if (!ac) { schedule_retry(l); return; }
    if (ac->err) { redisAsyncFree(ac); schedule_retry(l); return; }
    ac->data = l;
    if (redisLibeventAttach(ac, l->base) != REDIS_OK) { redisAsyncFree(ac); schedule_retry(l); return; }
    l->ac = ac;
    l->connected = 0;
    l->connect_started_ms = mono_ms();
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (l->db && redisAsyncCommand(ac, NULL, NULL, "SELECT %d", l->db) != REDIS_OK) drop(l, "SELECT failed");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    redislink *l = arg;
    if (!l->ac) connect_now(l);
}

/* A slow Redis is a down Redis: requests must not wait on it. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    redislink *l = arg;
    if (!l->ac) return;
    int64_t now = mono_ms();
    if (!l->connected && now - l->connect_started_ms > CONNECT_TIMEOUT_MS) {
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac);
        schedule_retry(l);
    } else if (l->connected && l->count && now - l->ring[l->head].sent_ms > l->o.timeout_ms) {
        drop(l, "did not answer in time");
    }
}

redislink *redislink_new(struct event_base *base, const char *url, const redislink_opts *o, void *owner)
{
    redislink *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->o = *o;
    l->owner = owner;
    if (redislink_parse_url(url, l->host, sizeof l->host, &l->port, &l->db) < 0) {
        log_error("%s: redis_url is not redis://host[:port][/db]; %s only", o->name, o->when_down);
        free(l);
        return NULL;
    }
    l->base = base;
    l->backoff_ms = BACKOFF_MIN_MS;
    struct timeval tv = { 0, o->tick_ms * 1000 };
    if (!o->max_pending || !(l->ring = calloc(o->max_pending, sizeof *l->ring)) ||
        !(l->tick = event_new(base, -1, EV_PERSIST, on_tick, l)) || event_add(l->tick, &tv) < 0 ||
        !(l->retry = evtimer_new(base, on_retry, l))) {
        redislink_free(l);
        return NULL;
    }
    connect_now(l);
    return l;
}

void redislink_free(redislink *l)
{
    if (!l) return;
    if (l->ac) { redisAsyncContext *ac = l->ac; l->ac = NULL; redisAsyncFree(ac); }
    if (l->tick) event_free(l->tick);
    if (l->retry) event_free(l->retry);
    free(l->ring);
    free(l);
}

int redislink_up(const redislink *l) { return l && l->ac && l->connected; }

static int room(const redislink *l) { return redislink_up(l) && l->count < l->o.max_pending; }

static void track(redislink *l, redislink_cb cb, void *arg)
{
    l->ring[(l->head + l->count) % l->o.max_pending] = (pending){ cb, arg, mono_ms() };
    l->count++;
}

int redislink_command(redislink *l, redislink_cb cb, void *arg, const char *fmt, ...)
{
    if (!room(l)) return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(l->ac, on_reply, l, fmt, ap);
    va_end(ap);
    if (rc != REDIS_OK) return -1;
    track(l, cb, arg);
    return 0;
}

int redislink_command_argv(redislink *l, redislink_cb cb, void *arg, int argc, const char **argv, const size_t *lens)
{
    if (!room(l) || redisAsyncCommandArgv(l->ac, on_reply, l, argc, argv, lens) != REDIS_OK) return -1;
    track(l, cb, arg);
    return 0;
}

void redislink_flush(redislink *l) { if (redislink_up(l)) redisAsyncHandleWrite(l->ac); }

void redislink_healthy(redislink *l) { if (l) l->backoff_ms = BACKOFF_MIN_MS; }
