/* respredis: stored Responses in Redis, shared by every node (respredis.h). */
#include "respredis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>

#include "redislink.h"
#include "respstore.h"

#define REDIS_TIMEOUT_MS 100   /* an unanswered lookup is a miss after this (a 404, as without Redis) */
#define TICK_MS          20
#define MAX_PENDING      1024
#define KEY_MAX          (8 + RESPSTORE_SUBJECT_MAX + 1 + RESPSTORE_ID_MAX + 1)

struct respredis {
    redislink *link;
    long       ttl_s;
    size_t     max_entry;
    int        closing;
};

struct respredis_op {
    respredis   *rr;
    respredis_cb cb;
    void        *ud;
    int          cancelled, del;
};

respredis *respredis_new(struct event_base *base, const char *url, long ttl_s, size_t max_entry)
{
    if (!url || !*url) return NULL;
    respredis *rr = calloc(1, sizeof *rr);
    if (!rr) return NULL;
    static const redislink_opts opts = { "responses", "stored responses from this node only",
                                         REDIS_TIMEOUT_MS, TICK_MS, MAX_PENDING };
    rr->ttl_s = ttl_s > 0 ? ttl_s : 1;
    rr->max_entry = max_entry;
    rr->link = redislink_new(base, url, &opts, rr);   /* NULL: a bad url (logged): node-local only */
    return rr;
}

void respredis_free(respredis *rr)
{
    if (!rr) return;
    rr->closing = 1;
    redislink_free(rr->link);   /* pending ops get their callbacks (GONE) and are freed */
    free(rr);
}

int respredis_up(const respredis *rr) { return rr && redislink_up(rr->link); }

/* 0 ok; -1 when the subject or id could not be a stored one's. */
static int make_key(char out[KEY_MAX], const char *subject, const char *id)
{
    size_t s = strlen(subject), i = strlen(id);
    if (!s || s > RESPSTORE_SUBJECT_MAX || !i || i > RESPSTORE_ID_MAX) return -1;
    snprintf(out, KEY_MAX, "gwresp:%s:%s", subject, id);
    return 0;
}

static void on_reply(void *owner, const redisReply *r, void *arg)
{
    respredis *rr = owner;
    respredis_op *op = arg;
    int result = RESPREDIS_MISS;
    const char *data = NULL;
    size_t len = 0;
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_NIL || r->type == REDIS_REPLY_INTEGER))
        redislink_healthy(rr->link);
    if (rr->closing || op->cancelled) result = RESPREDIS_GONE;
    else if (!r) result = RESPREDIS_MISS;   /* down or too slow */
    else if (op->del) result = r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? RESPREDIS_HIT : RESPREDIS_MISS;
    else if (r->type == REDIS_REPLY_STRING && r->len > 0 && (size_t)r->len <= rr->max_entry) {
        result = RESPREDIS_HIT;   /* anything else (an error, a wrong type, too large) is a miss */
        data = r->str;
        len = (size_t)r->len;
    }
    if (op->cb) op->cb(op->ud, result, data, len);
    free(op);
}

static int start(respredis *rr, int del, const char *subject, const char *id, respredis_cb cb, void *ud,
                 respredis_op **out)
{
    if (out) *out = NULL;
    char key[KEY_MAX];
    if (!respredis_up(rr) || make_key(key, subject, id) < 0) return 0;
    respredis_op *op = calloc(1, sizeof *op);
    if (!op) return 0;
    *op = (respredis_op){ .rr = rr, .cb = cb, .ud = ud, .del = del };
    if (redislink_command(rr->link, on_reply, op, del ? "DEL %s" : "GET %s", key) < 0) { free(op); return 0; }
    redislink_flush(rr->link);
    if (out) *out = op;
    return 1;
}

int respredis_get(respredis *rr, const char *subject, const char *id, respredis_cb cb, void *ud, respredis_op **op)
{
    return start(rr, 0, subject, id, cb, ud, op);
}

int respredis_del(respredis *rr, const char *subject, const char *id, respredis_cb cb, void *ud, respredis_op **op)
{
    return start(rr, 1, subject, id, cb, ud, op);
}

void respredis_cancel(respredis_op *op)
{
    if (op) op->cancelled = 1;
}

static void on_set_reply(void *owner, const redisReply *r, void *arg)
{
    (void)arg;
    if (r && r->type == REDIS_REPLY_STATUS) redislink_healthy(((respredis *)owner)->link);
}

void respredis_put(respredis *rr, const char *subject, const char *id, const char *data, size_t len)
{
    char key[KEY_MAX];
    if (!respredis_up(rr) || !len || len > rr->max_entry || make_key(key, subject, id) < 0) return;
    /* on the wire before the client has its answer: a follow-up sent to
     * another node right after finds it */
    if (redislink_command(rr->link, on_set_reply, NULL, "SET %s %b PX %lld", key, data, len,
                          (long long)rr->ttl_s * 1000) == 0)
        redislink_flush(rr->link);
}
