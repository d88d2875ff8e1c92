/* respredis: the Redis tier of stored Responses, against a scripted fake
 * Redis on a loopback port in this process (RESP replies chosen per test):
 * key format, SET with PX, size bounds, hostile replies as misses, DEL,
 * cancel and shutdown. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "respredis.h"
#include "test.h"

static struct event_base *base;
static struct evconnlistener *lst;
static struct bufferevent *srv;      /* the gateway's connection, server side */
static char last_cmd[4][256];        /* the last command's arguments */
static size_t last_len[4];
static int last_argc, commands;
static const char *next_reply = "+OK\r\n";
static size_t next_reply_len;        /* 0: strlen */

/* One complete RESP array of bulk strings at the front of in: consumed, 1. */
static int take_command(struct evbuffer *in)
{
    size_t n = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1), *end = p + n, *q = p;
    if (!n || *q != '*') return 0;
    int argc = atoi(q + 1);
    if (!(q = memchr(q, '\n', (size_t)(end - q)))) return 0;
    q++;
    for (int i = 0; i < argc; i++) {
        if (q >= end || *q != '$') return 0;
        size_t len = (size_t)atol(q + 1);
        if (!(q = memchr(q, '\n', (size_t)(end - q)))) return 0;
        q++;
        if ((size_t)(end - q) < len + 2) return 0;
        if (i < 4) {
            size_t c = len < sizeof last_cmd[i] - 1 ? len : sizeof last_cmd[i] - 1;
            memcpy(last_cmd[i], q, c);
            last_cmd[i][c] = '\0';
            last_len[i] = len;
        }
        q += len + 2;
    }
    last_argc = argc;
    evbuffer_drain(in, (size_t)(q - p));
    return 1;
}

static void srv_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    while (take_command(bufferevent_get_input(bev))) {
        commands++;
        if (next_reply) bufferevent_write(bev, next_reply, next_reply_len ? next_reply_len : strlen(next_reply));
    }
}

static void srv_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what; (void)arg;
    if (bev == srv) srv = NULL;
    bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    (void)l; (void)sa; (void)len; (void)arg;
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) return;
    bufferevent_setcb(bev, srv_read, NULL, srv_event, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    srv = bev;
}

/* Turns the loop until cond or a bounded number of turns. */
#define SPIN_UNTIL(cond) do { for (int i_ = 0; i_ < 2000 && !(cond); i_++) { \
    struct timeval tv_ = { 0, 1000 }; event_base_loopexit(base, &tv_); event_base_dispatch(base); } } while (0)

static int results[64], nresults;
static char got[256];
static size_t got_len;

static void cb(void *ud, int result, const char *data, size_t len)
{
    (void)ud;
    if (nresults < 64) results[nresults++] = result;
    got_len = data && len < sizeof got ? len : 0;
    if (got_len) memcpy(got, data, len);
}

static respredis *rr;

static int ask(int del, const char *reply, size_t reply_len)
{
    respredis_op *op;
    next_reply = reply;
    next_reply_len = reply_len;
    int before = nresults;
    int started = del ? respredis_del(rr, "y:abc", "resp_1", cb, NULL, &op) : respredis_get(rr, "y:abc", "resp_1", cb, NULL, &op);
    CHECK(started == 1);
    SPIN_UNTIL(nresults > before);
    if (nresults == before) fprintf(stderr, "  no answer (up %d, commands %d)\n", respredis_up(rr), commands);
    return nresults > before ? results[nresults - 1] : 99;
}

static void test_no_url_no_tier(void)
{
    respredis_op *op = (respredis_op *)1;
    CHECK(respredis_new(base, NULL, 60, 100) == NULL);
    CHECK(respredis_new(base, "", 60, 100) == NULL);
    CHECK(!respredis_up(NULL));
    CHECK(respredis_get(NULL, "y:a", "resp_1", cb, NULL, &op) == 0 && op == NULL);
    respredis_put(NULL, "y:a", "resp_1", "{}", 2);   /* a no-op */
    respredis_cancel(NULL);
}

static const char *g_url;

static void test_connects(void)
{
    rr = respredis_new(base, g_url, 60, 100);
    CHECK(rr != NULL);
    SPIN_UNTIL(respredis_up(rr) && srv);
    CHECK(respredis_up(rr));
}

static void test_put_sets_namespaced_key_with_px(void)
{
    int before = commands;
    const char *v = "{\"input\":[],\"response\":{}}";
    respredis_put(rr, "y:abc", "resp_1", v, strlen(v));
    SPIN_UNTIL(commands > before);
    CHECK(last_argc == 5);
    CHECK_STR(last_cmd[0], "SET");
    CHECK_STR(last_cmd[1], "gwresp:y:abc:resp_1");
    CHECK_STR(last_cmd[2], v);
    CHECK_STR(last_cmd[3], "PX");
}

static void test_put_bounds(void)
{
    char big[101];
    memset(big, 'x', sizeof big);
    char subj[80];
    memset(subj, 's', sizeof subj - 1);
    subj[sizeof subj - 1] = '\0';
    int before = commands;
    respredis_put(rr, "y:abc", "resp_1", big, sizeof big);   /* > max_entry */
    respredis_put(rr, subj, "resp_1", "{}", 2);              /* subject too long */
    respredis_put(rr, "y:abc", "", "{}", 2);                 /* no id */
    respredis_op *op;
    CHECK(respredis_get(rr, subj, "resp_1", cb, NULL, &op) == 0);
    CHECK(ask(0, "$-1\r\n", 0) == RESPREDIS_MISS);   /* the next thing Redis sees is this GET */
    CHECK(commands == before + 1);
    CHECK_STR(last_cmd[0], "GET");
}

static void test_get_hit_and_hostile_replies(void)
{
    CHECK(ask(0, "$5\r\nhello\r\n", 0) == RESPREDIS_HIT);
    CHECK(got_len == 5 && !memcmp(got, "hello", 5));
    CHECK_STR(last_cmd[1], "gwresp:y:abc:resp_1");
    CHECK(ask(0, "-ERR wrong\r\n", 0) == RESPREDIS_MISS);
    CHECK(ask(0, ":7\r\n", 0) == RESPREDIS_MISS);
    CHECK(ask(0, "*1\r\n$1\r\na\r\n", 0) == RESPREDIS_MISS);
    CHECK(ask(0, "$0\r\n\r\n", 0) == RESPREDIS_MISS);
    static char big[160];   /* a 120-byte value: over max_entry (100) */
    int n = snprintf(big, sizeof big, "$120\r\n%0120d\r\n", 0);
    CHECK(ask(0, big, (size_t)n) == RESPREDIS_MISS);
    CHECK(ask(0, "$5\r\nagain\r\n", 0) == RESPREDIS_HIT);   /* the link is still fine */
}

static void test_del(void)
{
    CHECK(ask(1, ":1\r\n", 0) == RESPREDIS_HIT);
    CHECK_STR(last_cmd[0], "DEL");
    CHECK(ask(1, ":0\r\n", 0) == RESPREDIS_MISS);
    CHECK(ask(1, "$-1\r\n", 0) == RESPREDIS_MISS);
}

static void test_cancel_runs_gone(void)
{
    respredis_op *op;
    next_reply = "$5\r\nhello\r\n";
    next_reply_len = 0;
    int before = nresults;
    CHECK(respredis_get(rr, "y:abc", "resp_1", cb, NULL, &op) == 1);
    respredis_cancel(op);
    SPIN_UNTIL(nresults > before);
    CHECK(nresults == before + 1 && results[before] == RESPREDIS_GONE);
}

static void test_free_with_pending_runs_gone(void)
{
    respredis_op *op;
    next_reply = NULL;   /* the fake never answers */
    int before = nresults;
    CHECK(respredis_get(rr, "y:abc", "resp_1", cb, NULL, &op) == 1);
    respredis_free(rr);
    rr = NULL;
    CHECK(nresults == before + 1 && results[before] == RESPREDIS_GONE);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    base = event_base_new();
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = 0 };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lst = base ? evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                         (struct sockaddr *)&sin, sizeof sin) : NULL;
    if (!lst) { fprintf(stderr, "cannot listen on loopback\n"); return 1; }
    struct sockaddr_in bound;
    socklen_t bl = sizeof bound;
    if (getsockname(evconnlistener_get_fd(lst), (struct sockaddr *)&bound, &bl) < 0) return 1;
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", ntohs(bound.sin_port));
    RUN(test_no_url_no_tier);
    g_url = url;
    RUN(test_connects);
    if (!rr) TEST_MAIN_END();
    RUN(test_put_sets_namespaced_key_with_px);
    RUN(test_put_bounds);
    RUN(test_get_hit_and_hostile_replies);
    RUN(test_del);
    RUN(test_cancel_runs_gone);
    RUN(test_free_with_pending_runs_gone);
    if (srv) bufferevent_free(srv);
    evconnlistener_free(lst);
    event_base_free(base);
    TEST_MAIN_END();
}
