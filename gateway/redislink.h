/* redislink: one resilient hiredis async connection on a worker's loop.
 *
 * Shared by the rate limits (rlredis.c) and the response cache (cache.c).
 * It connects in the background with backoff, treats a Redis that does not
 * answer within timeout_ms as down (the connection is dropped: every pending
 * command's callback runs at once with a NULL reply, so nothing on the
 * request path waits), and bounds the commands in flight. Redis answers in
 * order, so the pending commands are a FIFO of (callback, argument, send
 * time) and the oldest one decides the timeout. Nothing here blocks the loop
 * except resolving a host name at connect (use an address in redis_url).
 */
#ifndef GW_REDISLINK_H
#define GW_REDISLINK_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct redisReply;

typedef struct redislink redislink;

typedef struct redislink_opts {
    const char *name;        /* log prefix: "redis", "cache" */
    const char *when_down;   /* says what users get meanwhile, for the log: "local rate limits" */
    int         timeout_ms;  /* a command unanswered this long: Redis is down */
    int         tick_ms;     /* how often that is checked */
    unsigned    max_pending; /* commands in flight at most; more are refused */
} redislink_opts;

/* The link's owner, the reply (NULL: no answer, the connection went) and
 * the argument given to redislink_command. The reply belongs to hiredis. */
typedef void (*redislink_cb)(void *owner, const struct redisReply *reply, void *arg);

/* url: redis://host[:port][/db]. NULL when the url is unusable (logged) or
 * on out of memory. owner is handed to every callback. */
redislink *redislink_new(struct event_base *base, const char *url, const redislink_opts *o, void *owner);
/* Pending callbacks run (NULL reply) before it returns. */
void       redislink_free(redislink *l);
/* 1 while connected (and not known to be stalled). */
int        redislink_up(const redislink *l);
/* Sends one command (hiredis format); 0 sent, -1 not (down, too many in
 * flight, out of memory): then cb never runs. */
int        redislink_command(redislink *l, redislink_cb cb, void *arg, const char *fmt, ...);
/* The same with the arguments as an array (binary-safe, no format). */
int        redislink_command_argv(redislink *l, redislink_cb cb, void *arg, int argc, const char **argv,
                                  const size_t *lens);
/* Writes what is queued now rather than at the next loop turn. */
void       redislink_flush(redislink *l);
/* A reply made sense: the reconnect backoff starts over (a frozen Redis
 * accepts connections, so connecting alone proves nothing). */
void       redislink_healthy(redislink *l);

/* Parses a redis url; 0 ok. host gets at most hostlen-1 bytes. */
int        redislink_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db);

#endif
