/* upstream_h1 tests: what is specific to the lean HTTP/1.1 engine (framing
 * split at every byte, pool hygiene, keep-alive races, hostile upstreams).
 * A scripted raw-socket server lives in the same event_base, so the test
 * decides exactly which bytes arrive in which read. */
#include "test.h"
#include "upstream_h1.h"

#include <event2/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- scripted server ---------------------------------------------------- */

typedef struct tsrv tsrv;

typedef struct tconn {
    tsrv *s;
    int fd;
    struct event *ev;
    struct event *tmr;
    char in[16384];
    size_t inlen;
    int nreq;                 /* requests seen on this connection */
    const char *out;          /* scripted bytes still to send */
    size_t outlen, outpos;
    int close_after;
    struct tconn *next;
} tconn;

struct tsrv {
    struct event_base *base;
    int lfd;
    struct event *lev;
    int port;
    int accepted, closed, requests, open, max_open;
    char last_req[8192];
    /* the script */
    const char *resp;         /* NULL: never answer */
    size_t resp_len;
    size_t split_at;          /* > 0: first resp[0, split_at), the rest gap_ms later */
    int trickle;              /* one byte per tick */
    int gap_ms;
    int close_after;          /* close once the response is out */
    int drop_from;            /* > 0: the nreq-th request on a connection and later get closed unanswered */
    tconn *conns;
};

static void tconn_free(tconn *c)
{
    tsrv *s = c->s;
    for (tconn **pp = &s->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    event_free(c->ev);
    event_free(c->tmr);
    close(c->fd);
    s->open--;
    s->closed++;
    free(c);
}

static void send_some(tconn *c)
{
    size_t n = c->outlen - c->outpos;
    if (c->s->trickle && n > 1)
        n = 1;
    else if (c->s->split_at && c->outpos < c->s->split_at && c->outlen > c->s->split_at)
        n = c->s->split_at - c->outpos;
    ssize_t w = send(c->fd, c->out + c->outpos, n, MSG_NOSIGNAL);
    if (w > 0)
        c->outpos += (size_t)w;
    if (c->outpos < c->outlen) {
        struct timeval tv = { 0, c->s->gap_ms * 1000 };
        event_add(c->tmr, &tv);
        return;
    }
    c->out = NULL;
    if (c->close_after)
        tconn_free(c);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    send_some(arg);
}

static void tconn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    tconn *c = arg;
    tsrv *s = c->s;
    ssize_t n = recv(fd, c->in + c->inlen, sizeof c->in - 1 - c->inlen, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        tconn_free(c);
        return;
    }
    c->inlen += (size_t)n;
    c->in[c->inlen] = '\0';
    for (;;) {
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end)
            return;
        size_t hlen = (size_t)(end - c->in) + 4, clen = 0;
        const char *cl = strcasestr(c->in, "\r\ncontent-length:");
        if (cl && cl < end)
            clen = strtoul(cl + 17, NULL, 10);
        if (c->inlen < hlen + clen)
            return;
        size_t take = hlen + clen;
        snprintf(s->last_req, sizeof s->last_req, "%.*s", (int)take, c->in);
        memmove(c->in, c->in + take, c->inlen - take + 1);
        c->inlen -= take;
        s->requests++;
        c->nreq++;
        if (s->drop_from && c->nreq >= s->drop_from) {
            tconn_free(c);                    /* the keep-alive race: gone as the request lands */
            return;
        }
        if (!s->resp)
            continue;
        c->out = s->resp;
        c->outlen = s->resp_len;
        c->outpos = 0;
        c->close_after = s->close_after;
        send_some(c);
        return;                               /* one at a time: no pipelining here */
    }
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    tsrv *s = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    int one = 1;                              /* each scripted piece leaves at once */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    tconn *c = calloc(1, sizeof *c);
    c->s = s;
    c->fd = fd;
    c->ev = event_new(s->base, fd, EV_READ | EV_PERSIST, tconn_read_cb, c);
    c->tmr = evtimer_new(s->base, tick_cb, c);
    event_add(c->ev, NULL);
    c->next = s->conns;
    s->conns = c;
    s->accepted++;
    if (++s->open > s->max_open)
        s->max_open = s->open;
}

static tsrv *srv_new(struct event_base *base)
{
    tsrv *s = calloc(1, sizeof *s);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    s->base = base;
    s->gap_ms = 1;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
        listen(s->lfd, 64) != 0 || getsockname(s->lfd, (struct sockaddr *)&sin, &sl) != 0) {
        free(s);
        return NULL;
    }
    s->port = ntohs(sin.sin_port);
    s->lev = event_new(base, s->lfd, EV_READ | EV_PERSIST, accept_cb, s);
    event_add(s->lev, NULL);
    return s;
}

static void srv_close_all(tsrv *s)
{
    while (s->conns)
        tconn_free(s->conns);
}

static void srv_free(tsrv *s)
{
    srv_close_all(s);
    event_free(s->lev);
    close(s->lfd);
    free(s);
}

static void srv_script(tsrv *s, const char *resp)
{
    s->resp = resp;
    s->resp_len = resp ? strlen(resp) : 0;
}

/* ---- loop helpers ------------------------------------------------------- */

static void flag_cb(evutil_socket_t fd, short what, void *arg) { *(int *)arg = 1; }

static int run_until(struct event_base *b, const int *flag, int want, int ms)
{
    int expired = 0;
    struct event *dl = evtimer_new(b, flag_cb, &expired);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(dl, &tv);
    while (*flag < want && !expired)
        event_base_loop(b, EVLOOP_ONCE);
    event_free(dl);
    return *flag >= want;
}

static void run_for(struct event_base *b, int ms)
{
    int never = 0;
    run_until(b, &never, 1, ms);
}

/* ---- client side -------------------------------------------------------- */

typedef struct ctx {
    h1_client *c;
    upstream_req_t *r;
    int done, responses, data_calls, status;
    upstream_result res;
    char errmsg[256];
    char body[4096];
    size_t body_len;
    char hdr[64];
    /* chaining: start the next request from on_done until chain_left is 0 */
    int chain_left;
    const char *chain_url;
    int chain_ok;
} ctx;

static upstream_callbacks cbs;

static void on_response(void *ud, upstream_req_t *r, int status)
{
    ctx *c = ud;
    c->responses++;
    c->status = status;
    const char *h = h1_header(r, "x-a");
    snprintf(c->hdr, sizeof c->hdr, "%s", h ? h : "(none)");
}

static int on_data(void *ud, upstream_req_t *r, const char *d, size_t n)
{
    ctx *c = ud;
    c->data_calls++;
    if (c->body_len + n < sizeof c->body) {
        memcpy(c->body + c->body_len, d, n);
        c->body_len += n;
        c->body[c->body_len] = '\0';
    }
    return 0;
}

static int start(ctx *c, const char *method, const char *url, const char *const *hdrs,
                 const char *body, size_t blen, size_t maxb);

static void on_done(void *ud, upstream_req_t *r, upstream_result res, const char *msg)
{
    ctx *c = ud;
    c->done++;
    c->res = res;
    snprintf(c->errmsg, sizeof c->errmsg, "%s", msg);
    if (c->chain_left > 0) {
        if (res == UPSTREAM_OK && strcmp(c->body, "ok") == 0)
            c->chain_ok++;
        c->chain_left--;
        if (c->chain_left > 0) {
            c->body_len = 0;
            c->body[0] = '\0';
            start(c, "GET", c->chain_url, NULL, NULL, 0, 0);
        }
    }
}

static int start(ctx *c, const char *method, const char *url, const char *const *hdrs,
                 const char *body, size_t blen, size_t maxb)
{
    upstream_request req = {
        .method = method, .url = url, .headers = hdrs, .body = body, .body_len = blen,
        .max_response_bytes = maxb,
    };
    c->r = NULL;
    return h1_start(c->c, &req, &cbs, c, &c->r);
}

static void ctx_reset(ctx *c, h1_client *cl)
{
    memset(c, 0, sizeof *c);
    c->c = cl;
    c->res = (upstream_result)-1;
}

typedef struct fixture {
    struct event_base *base;
    tsrv *s;
    h1_client *c;
    char url[128];
} fixture;

static int fx_init(fixture *f, long max_host)
{
    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    f->s = f->base ? srv_new(f->base) : NULL;
    f->c = f->base ? h1_new(f->base, max_host) : NULL;
    return f->base && f->s && f->c ? 0 : -1;
}

static const char *fx_url(fixture *f, const char *path)
{
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d%s", f->s->port, path);
    return f->url;
}

static void fx_fini(fixture *f)
{
    if (f->c) h1_free(f->c);
    if (f->s) srv_free(f->s);
    if (f->base) event_base_free(f->base);
}

static h1_stats stats(fixture *f)
{
    h1_stats st;
    h1_get_stats(f->c, &st);
    return st;
}

/* One GET on f; returns its ctx result. */
static upstream_result get_once(fixture *f, ctx *c, const char *path, size_t maxb)
{
    ctx_reset(c, f->c);
    if (start(c, "GET", fx_url(f, path), NULL, NULL, 0, maxb) != 0)
        return (upstream_result)-2;
    if (!run_until(f->base, &c->done, 1, 3000))
        return (upstream_result)-3;
    return c->res;
}

/* ---- tests -------------------------------------------------------------- */

static const char chunked_resp[] =
    "HTTP/1.1 100 Continue\r\nX-A: interim\r\n\r\n"
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: final\r\n\r\n"
    "5;name=value\r\nhello\r\n"
    "a \r\n, chunked!\r\n"
    "1C\r\n0123456789abcdefghijklmnopqr\r\n"
    "0\r\nX-Trailer: t\r\n\r\n";
static const char chunked_body[] = "hello, chunked!0123456789abcdefghijklmnopqr";

static const char cl_resp[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: cl\r\n\r\nhello world";

/* A fixture whose first call (/a, cl_resp) has finished: its connection is
 * now in the pool.  0 if both steps worked. */
static int fx_init_pooled(fixture *f, ctx *c)
{
    if (fx_init(f, 0) != 0)
        return -1;
    srv_script(f->s, cl_resp);
    return get_once(f, c, "/a", 0) == UPSTREAM_OK ? 0 : -1;
}

/* Every split point of both framings, all on one keep-alive connection:
 * a framing bug would either corrupt a body or poison the next response. */
static void test_split_every_byte(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    int bad = 0, n = 0;
    const char *resps[2] = { chunked_resp, cl_resp };
    const char *bodies[2] = { chunked_body, "hello world" };
    for (int k = 0; k < 2; k++) {
        srv_script(f.s, resps[k]);
        for (size_t i = 1; i < f.s->resp_len; i++, n++) {
            f.s->split_at = i;
            upstream_result res = get_once(&f, &c, "/split", 0);
            if (res != UPSTREAM_OK || strcmp(c.body, bodies[k]) != 0 || c.status != 200 ||
                c.responses != 1 || strcmp(c.hdr, k ? "cl" : "final") != 0) {
                if (bad++ < 3)
                    fprintf(stderr, "  split %zu of %d: res %d status %d body '%s' (%s)\n", i, k,
                            (int)res, c.status, c.body, c.errmsg);
            }
        }
    }
    CHECK(bad == 0);
    CHECK(f.s->accepted == 1);
    CHECK(f.s->requests == n);
    /* and one byte per read */
    f.s->split_at = 0;
    f.s->trickle = 1;
    f.s->gap_ms = 0;
    srv_script(f.s, chunked_resp);
    CHECK(get_once(&f, &c, "/trickle", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, chunked_body);
    CHECK(c.data_calls >= 10);
    CHECK(f.s->accepted == 1);
    fx_fini(&f);
}

/* The server closes a pooled connection: the read event on the idle
 * connection drops it at once, and the next call dials afresh. */
static void test_idle_close_dropped(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init_pooled(&f, &c) == 0);
    CHECK(stats(&f).idle == 1);
    srv_close_all(f.s);
    run_for(f.base, 30);
    CHECK(stats(&f).idle == 0);
    CHECK(stats(&f).conns == 0);
    CHECK(get_once(&f, &c, "/b", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, "hello world");
    CHECK(f.s->accepted == 2);
    CHECK(stats(&f).retries == 0);
    /* garbage on an idle connection also drops it */
    CHECK(f.s->conns != NULL);
    if (f.s->conns)
        CHECK(send(f.s->conns->fd, "junk", 4, MSG_NOSIGNAL) == 4);
    run_for(f.base, 30);
    CHECK(stats(&f).idle == 0);
    fx_fini(&f);
}

/* A pooled connection idle past the age limit is replaced, and the pool
 * still works after that: the next calls share the new connection. */
static void test_aged_idle_replaced(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init_pooled(&f, &c) == 0);
    CHECK(stats(&f).idle == 1);
    h1_test_clock_advance(111LL * 1000000);
    CHECK(get_once(&f, &c, "/b", 0) == UPSTREAM_OK);
    CHECK(stats(&f).connects == 2);
    CHECK(stats(&f).idle == 1);
    for (int i = 0; i < 5; i++) {
        CHECK(get_once(&f, &c, "/c", 0) == UPSTREAM_OK);
        CHECK_STR(c.body, "hello world");
    }
    CHECK(stats(&f).connects == 2);
    CHECK(stats(&f).idle == 1);
    CHECK(stats(&f).conns == 1);
    fx_fini(&f);
}

/* The keep-alive race: the server gives up on an idle connection just as
 * the next request is written.  Nothing came back, so one retry on a fresh
 * connection is safe. */
static void test_keepalive_race_retry(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init_pooled(&f, &c) == 0);

    /* (a) closed before the client's loop could notice */
    srv_close_all(f.s);
    CHECK(get_once(&f, &c, "/b", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, "hello world");
    CHECK(f.s->accepted == 2);

    /* (b) closed by the server on reading the request */
    unsigned long retries = stats(&f).retries;
    f.s->drop_from = 2;                       /* 2nd request on any connection */
    CHECK(get_once(&f, &c, "/c", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, "hello world");
    CHECK(stats(&f).retries == retries + 1);
    CHECK(f.s->accepted == 3);

    /* (c) only once: the fresh connection failing too is an error */
    f.s->drop_from = 1;
    retries = stats(&f).retries;
    CHECK(get_once(&f, &c, "/d", 0) == UPSTREAM_ERR_IO);
    CHECK(c.errmsg[0] != '\0');
    CHECK(stats(&f).retries == retries + 1);
    CHECK(c.responses == 0);
    fx_fini(&f);
}

/* A reused connection that fails after response bytes arrived is not retried. */
static void test_no_retry_after_bytes(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init_pooled(&f, &c) == 0);
    srv_script(f.s, "HTTP/1.1 200 OK\r\nContent-Le");
    f.s->close_after = 1;
    CHECK(get_once(&f, &c, "/b", 0) == UPSTREAM_ERR_IO);
    CHECK(stats(&f).retries == 0);
    CHECK(f.s->requests == 2);
    fx_fini(&f);
}

typedef struct bad_case {
    const char *name;
    const char *resp;
} bad_case;

static char *repeat_headers(int n, size_t value_len)
{
    size_t cap = 64 + (size_t)n * (value_len + 16);
    char *b = malloc(cap), *o = b;
    o += sprintf(o, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < n; i++) {
        o += sprintf(o, "X-H%d: ", i);
        memset(o, 'v', value_len);
        o += value_len;
        o += sprintf(o, "\r\n");
    }
    sprintf(o, "Content-Length: 0\r\n\r\n");
    return b;
}

static void test_malformed_responses(void)
{
    static const bad_case cases[] = {
        { "bad status digits", "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n" },
        { "not http", "FOO 200 OK\r\nContent-Length: 0\r\n\r\n" },
        { "http/2 line", "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n" },
        { "no space after code", "HTTP/1.1 200OK\r\nContent-Length: 0\r\n\r\n" },
        { "leading zero status", "HTTP/1.1 099 Hmm\r\nContent-Length: 0\r\n\r\n" },
        { "negative length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n" },
        { "overflowing length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n" },
        { "length with junk", "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n" },
        { "empty length", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n" },
        { "conflicting lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab" },
        { "header without colon", "HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n" },
        { "space in header name", "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n" },
        { "invalid chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n" },
        { "empty chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhi\r\n0\r\n\r\n" },
        { "overflowing chunk size",
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nhi\r\n" },
        { "chunk without CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n" },
        { "bare CR after size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\rhi\r\n0\r\n\r\n" },
    };
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_script(f.s, cases[i].resp);
        upstream_result res = get_once(&f, &c, "/bad", 0);
        if (res != UPSTREAM_ERR_IO || !c.errmsg[0]) {
            fprintf(stderr, "  %s: got %d (%s)\n", cases[i].name, (int)res, c.errmsg);
            CHECK(res == UPSTREAM_ERR_IO);
        }
        CHECK(stats(&f).conns == 0);          /* a confused connection is never pooled */
    }
    CHECK(f.s->accepted == (int)(sizeof cases / sizeof cases[0]));

    /* too many headers, and a header section over the size bound */
    char *many = repeat_headers(300, 4), *huge = repeat_headers(40, 2000);
    char *ext = malloc(8000);                 /* a chunk extension over its bound */
    int off = sprintf(ext, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;");
    memset(ext + off, 'e', 6000);
    strcpy(ext + off + 6000, "\r\nhi\r\n0\r\n\r\n");
    const char *big[3] = { many, huge, ext };
    for (int i = 0; i < 3; i++) {
        srv_script(f.s, big[i]);
        CHECK(get_once(&f, &c, "/big", 0) == UPSTREAM_ERR_IO);
        CHECK(c.errmsg[0] != '\0');
    }
    free(many);
    free(huge);
    free(ext);

    /* max_response_bytes counts de-chunked bytes */
    srv_script(f.s, chunked_resp);
    CHECK(get_once(&f, &c, "/max", 10) == UPSTREAM_ERR_TOO_LARGE);
    CHECK(c.body_len <= 10);
    srv_script(f.s, chunked_resp);
    CHECK(get_once(&f, &c, "/max", sizeof chunked_body - 1) == UPSTREAM_OK);
    fx_fini(&f);
}

static void test_connection_close_not_pooled(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok");
    CHECK(get_once(&f, &c, "/a", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, "ok");
    CHECK(stats(&f).conns == 0 && stats(&f).idle == 0);
    srv_script(f.s, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    CHECK(get_once(&f, &c, "/b", 0) == UPSTREAM_OK);
    CHECK(stats(&f).conns == 0);
    srv_script(f.s, cl_resp);
    CHECK(get_once(&f, &c, "/c", 0) == UPSTREAM_OK);
    CHECK(stats(&f).idle == 1);
    CHECK(f.s->accepted == 3);
    fx_fini(&f);
}

static void test_read_until_close(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, "HTTP/1.1 200 OK\r\nX-A: rc\r\n\r\nall of this, until the end");
    f.s->close_after = 1;
    f.s->split_at = 30;
    CHECK(get_once(&f, &c, "/a", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, "all of this, until the end");
    CHECK_STR(c.hdr, "rc");
    CHECK(stats(&f).conns == 0);
    /* a non-chunked Transfer-Encoding also means "until close" */
    srv_script(f.s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nraw");
    CHECK(get_once(&f, &c, "/b", 0) == UPSTREAM_OK);
    CHECK_STR(c.body, "raw");
    fx_fini(&f);
}

/* HEAD, 204 and 304 carry no body whatever their headers say; the
 * connection stays usable. */
static void test_no_body_statuses(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    ctx_reset(&c, f.c);
    CHECK(start(&c, "HEAD", fx_url(&f, "/h"), NULL, NULL, 0, 0) == 0);
    CHECK(run_until(f.base, &c.done, 1, 3000));
    CHECK(c.res == UPSTREAM_OK && c.status == 200 && c.body_len == 0);
    srv_script(f.s, "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n");
    CHECK(get_once(&f, &c, "/n", 0) == UPSTREAM_OK);
    CHECK(c.status == 304 && c.body_len == 0);
    srv_script(f.s, cl_resp);
    CHECK(get_once(&f, &c, "/c", 0) == UPSTREAM_OK);
    CHECK(f.s->accepted == 1);
    fx_fini(&f);
}

/* 1000 calls, each started from the previous one's on_done, share one
 * connection: exactly one connect. */
static void test_thousand_on_one_connection(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    ctx_reset(&c, f.c);
    c.chain_left = 1000;
    c.chain_url = fx_url(&f, "/seq");
    CHECK(start(&c, "GET", c.chain_url, NULL, NULL, 0, 0) == 0);
    CHECK(run_until(f.base, &c.done, 1000, 10000));
    CHECK(c.chain_ok == 1000);
    CHECK(f.s->requests == 1000);
    CHECK(f.s->accepted == 1);
    CHECK(stats(&f).connects == 1);
    CHECK(h1_active(f.c) == 0);
    fx_fini(&f);
}

/* Cap of 2 per host: six calls queue and share two connections; a queued
 * call can be cancelled. */
static void test_max_host_queue(void)
{
    enum { N = 6 };
    fixture f;
    ctx c[N];
    CHECK(fx_init(&f, 2) == 0);
    srv_script(f.s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
    f.s->split_at = 2;
    f.s->gap_ms = 10;
    for (int i = 0; i < N; i++) {
        ctx_reset(&c[i], f.c);
        CHECK(start(&c[i], "GET", fx_url(&f, "/q"), NULL, NULL, 0, 0) == 0);
    }
    CHECK(stats(&f).conns == 2);
    CHECK(h1_active(f.c) == N);
    h1_cancel(c[4].r);                        /* still queued */
    CHECK(h1_active(f.c) == N - 1);
    int total = 0;
    for (int i = 0; i < N; i++) {
        if (i == 4)
            continue;
        CHECK(run_until(f.base, &c[i].done, 1, 3000));
        CHECK(c[i].res == UPSTREAM_OK);
        CHECK_STR(c[i].body, "slow");
        total += c[i].done;
    }
    run_for(f.base, 20);
    CHECK(total == N - 1);
    CHECK(c[4].done == 0);
    CHECK(f.s->accepted == 2);
    CHECK(f.s->max_open == 2);
    CHECK(f.s->requests == N - 1);
    CHECK(h1_active(f.c) == 0);
    fx_fini(&f);
}

/* The request head: exact bytes, memcpy-built. */
static void test_request_bytes(void)
{
    fixture f;
    ctx c;
    char want[512];
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, cl_resp);
    const char *hdrs[] = { "X-A: 1", "Authorization: Bearer k", "X-Empty:", "X-Inject: a\r\nEvil: 1", NULL };
    ctx_reset(&c, f.c);
    CHECK(start(&c, "GET", fx_url(&f, "/p?q=1#frag"), hdrs, NULL, 0, 0) == 0);
    CHECK(run_until(f.base, &c.done, 1, 3000));
    snprintf(want, sizeof want, "GET /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nX-A: 1\r\n"
             "Authorization: Bearer k\r\nX-Inject: a\r\n\r\n", f.s->port);
    CHECK_STR(f.s->last_req, want);
    ctx_reset(&c, f.c);
    CHECK(start(&c, "POST", fx_url(&f, "?x"), NULL, "abc", 3, 0) == 0);
    CHECK(run_until(f.base, &c.done, 1, 3000));
    snprintf(want, sizeof want, "POST /?x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 3\r\n\r\nabc",
             f.s->port);
    CHECK_STR(f.s->last_req, want);
    const char *host[] = { "Host: example.test", NULL };
    ctx_reset(&c, f.c);
    CHECK(start(&c, "POST", fx_url(&f, "/e"), host, NULL, 0, 0) == 0);
    CHECK(run_until(f.base, &c.done, 1, 3000));
    CHECK_STR(f.s->last_req, "POST /e HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n\r\n");
    /* what it does not take, curl does */
    ctx_reset(&c, f.c);
    CHECK(start(&c, "GET", "http://user:pw@127.0.0.1/", NULL, NULL, 0, 0) == 1);
    CHECK(start(&c, "GET", "https://127.0.0.1/", NULL, NULL, 0, 0) == 1);
    CHECK(start(&c, "GET", "http://127.0.0.1/a b", NULL, NULL, 0, 0) == 1);
    CHECK(start(&c, "GET", "http://127.0.0.1:99999/", NULL, NULL, 0, 0) == 1);
    CHECK(h1_active(f.c) == 0);
    fx_fini(&f);
}

static void test_resolve(void)
{
    fixture f;
    ctx c;
    char url[128];
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, cl_resp);
    snprintf(url, sizeof url, "http://localhost:%d/r", f.s->port);
    ctx_reset(&c, f.c);
    CHECK(start(&c, "GET", url, NULL, NULL, 0, 0) == 0);
    CHECK(run_until(f.base, &c.done, 1, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, "hello world");
    ctx_reset(&c, f.c);
    CHECK(start(&c, "GET", "http://nonexistent.invalid/", NULL, NULL, 0, 0) == 0);
    CHECK(c.done == 0);                       /* never from inside start */
    CHECK(run_until(f.base, &c.done, 1, 5000));
    CHECK(c.res == UPSTREAM_ERR_CONNECT);
    CHECK(strstr(c.errmsg, "resolve") != NULL);
    fx_fini(&f);
}

/* A paused call leaves its bytes in the socket; resume from a timer gets
 * every byte once, and the connection returns to the pool. */
static int pausing_data(void *ud, upstream_req_t *r, const char *d, size_t n)
{
    on_data(ud, r, d, n);
    return 1;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    ctx *c = arg;
    if (!c->done)
        h1_resume(c->r);
}

static void test_pause_then_pool(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f, 0) == 0);
    srv_script(f.s, chunked_resp);
    f.s->trickle = 1;
    f.s->gap_ms = 0;
    upstream_callbacks saved = cbs;
    cbs.on_data = pausing_data;
    ctx_reset(&c, f.c);
    CHECK(start(&c, "GET", fx_url(&f, "/p"), NULL, NULL, 0, 0) == 0);
    cbs = saved;
    struct event *ev = event_new(f.base, -1, EV_PERSIST, resume_cb, &c);
    struct timeval tv = { 0, 2000 };
    event_add(ev, &tv);
    CHECK(run_until(f.base, &c.done, 1, 5000));
    event_free(ev);
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, chunked_body);
    CHECK(stats(&f).idle == 1);
    fx_fini(&f);
}

int main(void)
{
    cbs.on_response = on_response;
    cbs.on_data = on_data;
    cbs.on_done = on_done;
    RUN(test_split_every_byte);
    RUN(test_idle_close_dropped);
    RUN(test_aged_idle_replaced);
    RUN(test_keepalive_race_retry);
    RUN(test_no_retry_after_bytes);
    RUN(test_malformed_responses);
    RUN(test_connection_close_not_pooled);
    RUN(test_read_until_close);
    RUN(test_no_body_statuses);
    RUN(test_thousand_on_one_connection);
    RUN(test_max_host_queue);
    RUN(test_request_bytes);
    RUN(test_resolve);
    RUN(test_pause_then_pool);
    TEST_MAIN_END();
}
