/* rlredis: Redis as ratelimit's shared store (see rlredis.h). */
#include "rlredis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "log.h"
#include "ratelimit.h"
#include "redislink.h"

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
    redislink *link;
    ratelimit *rl;
    uint64_t   errors;
};

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

/* One lease's answer (NULL: Redis went away: granted locally). */
static void on_reply(void *owner, const redisReply *reply, void *arg)
{
    rlredis *rr = owner;
    uint64_t token = (uint64_t)(uintptr_t)arg;
    int64_t g = -1, total = 0;
    if (reply && parse_reply(reply, &g, &total) == 0) redislink_healthy(rr->link);
    else if (reply) {
        g = -1;
        if (rr->errors++ % 1000 == 0)
            log_warn("redis: unexpected lease answer (type %d%s%.*s); granted locally", reply->type,
                     reply->type == REDIS_REPLY_ERROR ? ": " : "",
                     reply->type == REDIS_REPLY_ERROR ? (int)(reply->len > 200 ? 200 : reply->len) : 0,
                     reply->type == REDIS_REPLY_ERROR && reply->str ? reply->str : "");
    }
    if (rr->rl) ratelimit_lease_done(rr->rl, token, g, total);
}

int rlredis_lease(void *ud, const char *sid, int kind, int64_t window, int64_t want,
                  int64_t limit, uint64_t token)
{
    rlredis *rr = ud;
    if (!rr || !redislink_up(rr->link)) return -1;
    char key[96];
    snprintf(key, sizeof key, "gwrl:%c:%s:%" PRId64, kind == RL_TPM ? 't' : 'r', sid, window);
    char swant[24], slimit[24];
    snprintf(swant, sizeof swant, "%" PRId64, want);
    snprintf(slimit, sizeof slimit, "%" PRId64, limit);
    return redislink_command(rr->link, on_reply, (void *)(uintptr_t)token, "EVAL %s 1 %s %s %s",
                             LEASE_LUA, key, swant, slimit);
}

rlredis *rlredis_new(struct event_base *base, const char *url)
{
    static const redislink_opts opts = { "limits", "local rate limits", RLREDIS_TIMEOUT_MS, TICK_MS, RING };
    rlredis *rr = calloc(1, sizeof *rr);
    if (!rr) return NULL;
    if (!(rr->link = redislink_new(base, url, &opts, rr))) { free(rr); return NULL; }
    return rr;
}

void rlredis_attach(rlredis *rr, ratelimit *rl) { if (rr) rr->rl = rl; }

int rlredis_connected(const rlredis *rr) { return rr && redislink_up(rr->link); }

void rlredis_free(rlredis *rr)
{
    if (!rr) return;
    rr->rl = NULL;   /* pending callbacks run during the free: nothing to tell */
    redislink_free(rr->link);
    free(rr);
}
