/* upstream tests against a tiny HTTP/1.1 server living in the same
 * event_base (raw bufferevents, so the test controls framing, stalls and
 * connection counts exactly). */
#include "test.h"
#include "upstream.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- test server ------------------------------------------------------ */

typedef struct srv srv_t;

typedef struct sconn {
    srv_t *s;
    struct bufferevent *bev;
    struct event *tick;
    int chunks_left;      /* -1 = forever */
    int chunk_no;
    long tick_ms;
    int close_when_flushed;
    struct sconn *prev, *next;
} sconn;

struct srv {
    struct event_base *base;
    struct evconnlistener *lst;
    int port;
    int accepted, closed, requests;
    char last_req[4096];          /* request line + headers of the last request */
    char last_body[4096];
    size_t last_body_len;
    const int *gate;              /* if set: send chunk k only once *gate >= k */
    sconn *conns;
};

static void conn_free(sconn *c)
{
    srv_t *s = c->s;
    if (c->tick) event_free(c->tick);
    bufferevent_free(c->bev);
    if (c->prev) c->prev->next = c->next; else s->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    sconn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char chunk[64];
    if (c->s->gate && *c->s->gate < c->chunk_no) {
        /* lockstep with the client so each chunk is its own delivery */
        struct timeval tv = { 0, 1000 };
        event_add(c->tick, &tv);
        return;
    }
    int n = snprintf(chunk, sizeof chunk, "data: %d\n\n", c->chunk_no++);
    evbuffer_add_printf(out, "%x\r\n%s\r\n", n, chunk);
    if (c->chunks_left > 0 && --c->chunks_left == 0) {
        evbuffer_add_printf(out, "0\r\n\r\n");
        return;
    }
    struct timeval tv = { 0, c->tick_ms * 1000 };
    event_add(c->tick, &tv);
}

static long qparam(const char *path, const char *key, long def)
{
    const char *q = strchr(path, '?');
    size_t kl = strlen(key);
    for (const char *p = q; p; p = strchr(p + 1, '&'))
        if (strncmp(p + 1, key, kl) == 0 && p[1 + kl] == '=')
            return strtol(p + 2 + kl, NULL, 10);
    return def;
}

static void respond(sconn *c, const char *method, const char *path, const char *body, size_t blen)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (strncmp(path, "/echo", 5) == 0) {
        char alt[300];
        if (!blen) {
            snprintf(alt, sizeof alt, "%s %s", method, path);
            body = alt;
            blen = strlen(alt);
        }
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            "X-Test-Reply: yes\r\nX-Method: %s\r\nContent-Length: %zu\r\n\r\n",
                            method, blen);
        evbuffer_add(out, body, blen);
    } else if (strncmp(path, "/nobody", 7) == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 204 No Content\r\nX-Empty: 1\r\n\r\n");
    } else if (strncmp(path, "/interim", 8) == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                            "HTTP/1.1 200 OK\r\nX-Final: 1\r\nContent-Length: 2\r\n\r\nok");
    } else if (strncmp(path, "/redirect", 9) == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 302 Found\r\nLocation: /echo\r\n"
                            "Content-Length: 5\r\n\r\nmoved");
    } else if (strncmp(path, "/truncated", 10) == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        c->close_when_flushed = 1;
    } else if (strncmp(path, "/big", 4) == 0) {
        long n = qparam(path, "n", 1000);
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n", n);
        char *b = malloc((size_t)n);
        for (long i = 0; i < n; i++)
            b[i] = (char)('a' + (i * 7) % 26);
        evbuffer_add(out, b, (size_t)n);
        free(b);
    } else if (strncmp(path, "/stream", 7) == 0 || strncmp(path, "/stall", 6) == 0) {
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n");
        if (path[2] == 't' && path[3] == 'a') {          /* /stall: one chunk, then silence */
            evbuffer_add_printf(out, "5\r\nhello\r\n");
            return;
        }
        c->chunks_left = (int)qparam(path, "n", 5);
        if (c->chunks_left == 0) c->chunks_left = -1;
        c->tick_ms = qparam(path, "ms", 10);
        c->chunk_no = 0;
        if (!c->tick) c->tick = evtimer_new(c->s->base, tick_cb, c);
        struct timeval tv = { 0, 0 };
        event_add(c->tick, &tv);
    }
    /* "/never": no answer at all */
}

static void srv_read_cb(struct bufferevent *bev, void *arg)
{
    sconn *c = arg;
    srv_t *s = c->s;
    struct evbuffer *in = bufferevent_get_input(bev);
    unsigned char first;
    if (evbuffer_copyout(in, &first, 1) == 1 && first == 0x16) {
        /* a TLS ClientHello: answer in plaintext, as a misconfigured port would */
        evbuffer_drain(in, evbuffer_get_length(in));
        evbuffer_add_printf(bufferevent_get_output(bev),
                            "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    for (;;) {
        struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
        if (p.pos < 0)
            return;
        size_t hlen = (size_t)p.pos + 4;
        char *hdr = malloc(hlen + 1);
        evbuffer_copyout(in, hdr, hlen);
        hdr[hlen] = '\0';
        size_t clen = 0;
        const char *cl = strcasestr(hdr, "\ncontent-length:");
        if (cl)
            clen = (size_t)strtoul(cl + 16, NULL, 10);
        if (evbuffer_get_length(in) < hlen + clen) {
            free(hdr);
            return;
        }
        evbuffer_drain(in, hlen);
        char body[4096];
        size_t blen = clen < sizeof body ? clen : sizeof body;
        evbuffer_remove(in, body, blen);
        evbuffer_drain(in, clen - blen);
        s->requests++;
        snprintf(s->last_req, sizeof s->last_req, "%s", hdr);
        memcpy(s->last_body, body, blen);
        s->last_body_len = blen;
        char method[16] = "", path[256] = "";
        sscanf(hdr, "%15s %255s", method, path);
        free(hdr);
        respond(c, method, path, body, blen);
    }
}

static void srv_write_cb(struct bufferevent *bev, void *arg)
{
    sconn *c = arg;
    if (c->close_when_flushed)
        conn_free(c);
}

static void srv_event_cb(struct bufferevent *bev, short what, void *arg)
{
    sconn *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        c->s->closed++;
        conn_free(c);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    srv_t *s = arg;
    sconn *c = calloc(1, sizeof *c);
    c->s = s;
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, srv_read_cb, srv_write_cb, srv_event_cb, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = s->conns;
    if (s->conns) s->conns->prev = c;
    s->conns = c;
    s->accepted++;
}

static srv_t *srv_new(struct event_base *base)
{
    srv_t *s = calloc(1, sizeof *s);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->base = base;
    s->lst = evconnlistener_new_bind(base, accept_cb, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                     16, (struct sockaddr *)&sin, sizeof sin);
    if (!s->lst) {
        free(s);
        return NULL;
    }
    socklen_t sl = sizeof sin;
    getsockname(evconnlistener_get_fd(s->lst), (struct sockaddr *)&sin, &sl);
    s->port = ntohs(sin.sin_port);
    return s;
}

static void srv_free(srv_t *s)
{
    while (s->conns)
        conn_free(s->conns);
    evconnlistener_free(s->lst);
    free(s);
}

/* ---- loop helpers ----------------------------------------------------- */

static void flag_cb(evutil_socket_t fd, short what, void *arg) { *(int *)arg = 1; }

/* Runs the loop until *flag becomes nonzero or ms elapse; returns *flag. */
static int run_until(struct event_base *b, const int *flag, int ms)
{
    int expired = 0;
    struct event *dl = evtimer_new(b, flag_cb, &expired);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(dl, &tv);
    while (!*flag && !expired)
        event_base_loop(b, EVLOOP_ONCE);
    event_free(dl);
    return *flag;
}

static void run_for(struct event_base *b, int ms)
{
    int never = 0;
    run_until(b, &never, ms);
}

/* Waits until *counter >= want. */
static int run_until_count(struct event_base *b, const int *counter, int want, int ms)
{
    int expired = 0;
    struct event *dl = evtimer_new(b, flag_cb, &expired);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    event_add(dl, &tv);
    while (*counter < want && !expired)
        event_base_loop(b, EVLOOP_ONCE);
    event_free(dl);
    return *counter >= want;
}

/* ---- client side ------------------------------------------------------ */

typedef struct ctx {
    struct event_base *base;
    upstream_t *u;
    upstream_req_t *r;
    int in_start;
    int done_in_start;
    int done;
    upstream_result res;
    char errmsg[256];
    int status;
    int status_done;              /* upstream_status() inside on_done */
    int responses;
    int data_calls;
    char *body;
    size_t body_len, body_cap;
    char hdr_reply[64];           /* X-Test-Reply seen in on_response */
    char hdr_reply_done[64];      /* ... and still there in on_done */

    int pause_in_response;
    int pause_every;              /* on_data returns 1 each time */
    int pause_first_ms;           /* only the first on_data pauses, for this long */
    long resume_ms;
    struct event *resume_ev;
    int pauses;
    int paused_now;
    int data_while_paused;

    int cancel_after;             /* cancel inside on_data after N calls */
    int cancel_in_response;
    int cancelled;
    int calls_after_cancel;

    const char *chain_url;        /* start another request from on_done */
    struct ctx *chain;
    const char *spawn_url;        /* start another request from on_data */
    struct ctx *spawn;
    int spawn_cancel;             /* ... and cancel it right away */
} ctx;

static upstream_callbacks cbs;

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    ctx *c = arg;
    c->paused_now = 0;
    upstream_resume(c->r);
}

static void schedule_resume(ctx *c, long ms)
{
    if (!c->resume_ev)
        c->resume_ev = evtimer_new(c->base, resume_cb, c);
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    c->paused_now = 1;
    c->pauses++;
    event_add(c->resume_ev, &tv);
}

static void on_response(void *ud, upstream_req_t *r, int status)
{
    ctx *c = ud;
    if (c->cancelled) c->calls_after_cancel++;
    c->responses++;
    c->status = status;
    const char *h = upstream_header(r, "x-TEST-reply");
    snprintf(c->hdr_reply, sizeof c->hdr_reply, "%s", h ? h : "(none)");
    if (c->cancel_in_response) {
        c->cancelled = 1;
        upstream_cancel(r);
        return;
    }
    if (c->pause_in_response) {
        upstream_pause(r);
        schedule_resume(c, c->resume_ms);
    }
}

static upstream_req_t *start(ctx *c, const char *method, const char *url,
                             const char *const *hdrs, const char *body, size_t blen,
                             upstream_timeouts to, size_t maxb);

static int on_data(void *ud, upstream_req_t *r, const char *d, size_t n)
{
    ctx *c = ud;
    if (c->cancelled) c->calls_after_cancel++;
    if (c->paused_now) c->data_while_paused++;
    c->data_calls++;
    if (c->body_len + n + 1 > c->body_cap) {
        c->body_cap = (c->body_len + n + 1) * 2;
        c->body = realloc(c->body, c->body_cap);
    }
    memcpy(c->body + c->body_len, d, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    if (c->spawn_url && !c->spawn->r) {
        upstream_timeouts to = { 0, 0, 0, 0 };
        c->spawn->r = start(c->spawn, "GET", c->spawn_url, NULL, NULL, 0, to, 0);
        if (c->spawn_cancel && c->spawn->r) {
            c->spawn->cancelled = 1;
            upstream_cancel(c->spawn->r);
        }
    }
    if (c->cancel_after && c->data_calls >= c->cancel_after) {
        c->cancelled = 1;
        upstream_cancel(r);
        return 0;
    }
    if (c->pause_every) {
        schedule_resume(c, c->resume_ms);
        return 1;
    }
    if (c->pause_first_ms && c->pauses == 0) {
        schedule_resume(c, c->pause_first_ms);
        return 1;
    }
    return 0;
}

static void on_done(void *ud, upstream_req_t *r, upstream_result res, const char *msg)
{
    ctx *c = ud;
    if (c->cancelled) c->calls_after_cancel++;
    if (c->in_start) c->done_in_start = 1;
    c->done++;
    c->res = res;
    c->status_done = upstream_status(r);
    snprintf(c->errmsg, sizeof c->errmsg, "%s", msg ? msg : "(null)");
    const char *h = upstream_header(r, "X-Test-Reply");
    snprintf(c->hdr_reply_done, sizeof c->hdr_reply_done, "%s", h ? h : "(none)");
    if (c->chain_url) {
        upstream_timeouts to = { 0, 0, 0, 0 };
        c->chain->r = start(c->chain, "GET", c->chain_url, NULL, NULL, 0, to, 0);
    }
}

static upstream_req_t *start(ctx *c, const char *method, const char *url,
                             const char *const *hdrs, const char *body, size_t blen,
                             upstream_timeouts to, size_t maxb)
{
    upstream_request req = {
        .method = method, .url = url, .headers = hdrs, .body = body, .body_len = blen,
        .max_response_bytes = maxb, .timeouts = to,
    };
    c->in_start = 1;
    c->r = upstream_start(c->u, &req, &cbs, c);
    c->in_start = 0;
    return c->r;
}

static void ctx_init(ctx *c, struct event_base *b, upstream_t *u)
{
    memset(c, 0, sizeof *c);
    c->base = b;
    c->u = u;
    c->res = (upstream_result)-1;
}

static void ctx_fini(ctx *c)
{
    if (c->resume_ev) event_free(c->resume_ev);
    free(c->body);
}

typedef struct fixture {
    struct event_base *base;
    srv_t *srv;
    upstream_t *u;
    char url[128];
} fixture;

static int fx_init_opts(fixture *f, const upstream_opts *o)
{
    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    if (!f->base) return -1;
    f->srv = srv_new(f->base);
    f->u = upstream_new(f->base, o);
    if (!f->srv || !f->u) return -1;
    return 0;
}

static int fx_init(fixture *f)
{
    upstream_opts o = { 0, NULL, 0 };
    return fx_init_opts(f, &o);
}

static const char *fx_url(fixture *f, const char *path)
{
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d%s", f->srv->port, path);
    return f->url;
}

static void fx_fini(fixture *f)
{
    if (f->u) upstream_free(f->u);
    if (f->srv) srv_free(f->srv);
    if (f->base) event_base_free(f->base);
}

static const upstream_timeouts no_to = { 0, 0, 0, 0 };

static char *big_pattern(long n)
{
    char *b = malloc((size_t)n + 1);
    for (long i = 0; i < n; i++)
        b[i] = (char)('a' + (i * 7) % 26);
    b[n] = '\0';
    return b;
}

/* ---- tests ------------------------------------------------------------ */

static void test_result_names(void)
{
    CHECK_STR(upstream_result_name(UPSTREAM_OK), "ok");
    CHECK_STR(upstream_result_name(UPSTREAM_ERR_CONNECT), "connect");
    CHECK_STR(upstream_result_name(UPSTREAM_ERR_TIMEOUT_FIRST_BYTE), "timeout_first_byte");
    CHECK_STR(upstream_result_name(UPSTREAM_ERR_TOO_LARGE), "too_large");
    CHECK_STR(upstream_result_name(UPSTREAM_ERR_INTERNAL), "internal");
}

static void test_get_echo(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    const char *hdrs[] = { "X-Trace: t-1", NULL };
    CHECK(start(&c, "GET", fx_url(&f, "/echo?q=1"), hdrs, NULL, 0, no_to, 0) != NULL);
    CHECK(upstream_active(f.u) == 1);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.errmsg, "");
    CHECK(c.status == 200);
    CHECK(c.responses == 1);
    CHECK_STR(c.body, "GET /echo?q=1");
    CHECK_STR(c.hdr_reply, "yes");
    CHECK_STR(c.hdr_reply_done, "yes");
    CHECK(strstr(f.srv->last_req, "\r\nX-Trace: t-1\r\n") != NULL);
    CHECK(upstream_active(f.u) == 0);
    CHECK(!c.done_in_start);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_post_echo(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    const char *hdrs[] = { "Authorization: Bearer sk-secret", "Content-Type: application/json", NULL };
    const char *body = "{\"model\":\"m\",\"stream\":false}";
    CHECK(start(&c, "POST", fx_url(&f, "/echo"), hdrs, body, strlen(body), no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.status == 200);
    CHECK_STR(c.body, body);
    CHECK(f.srv->last_body_len == strlen(body));
    CHECK(strncmp(f.srv->last_req, "POST /echo HTTP/1.1\r\n", 21) == 0);
    CHECK(strstr(f.srv->last_req, "\r\nAuthorization: Bearer sk-secret\r\n") != NULL);
    CHECK(strstr(f.srv->last_req, "\r\nContent-Type: application/json\r\n") != NULL);
    CHECK(strcasestr(f.srv->last_req, "\r\nExpect:") == NULL);
    CHECK_STR(c.hdr_reply, "yes");
    /* lookups from on_response stay valid until on_done */
    CHECK_STR(c.hdr_reply_done, "yes");
    ctx_fini(&c);
    fx_fini(&f);
}

/* Large enough that curl would ask for 100-continue if we let it. */
static void test_post_large_no_expect(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    size_t n = 2 * 1024 * 1024;
    char *body = big_pattern((long)n);
    const char *hdrs[] = { "Content-Type: text/plain", NULL };
    CHECK(start(&c, "POST", fx_url(&f, "/echo"), hdrs, body, n, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 5000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.status == 200);
    CHECK(strcasestr(f.srv->last_req, "\r\nExpect:") == NULL);
    CHECK(f.srv->requests == 1);
    free(body);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_keepalive_reuse(void)
{
    fixture f;
    ctx a, b, d;
    CHECK(fx_init(&f) == 0);
    ctx_init(&a, f.base, f.u);
    ctx_init(&b, f.base, f.u);
    ctx_init(&d, f.base, f.u);
    char url2[128];
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d/echo?n=2", f.srv->port);
    a.chain_url = url2;            /* second request starts from inside on_done */
    a.chain = &b;
    CHECK(start(&a, "GET", fx_url(&f, "/echo?n=1"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &b.done, 3000));
    CHECK(a.res == UPSTREAM_OK);
    CHECK(b.res == UPSTREAM_OK);
    CHECK(!b.done_in_start);
    CHECK_STR(b.body, "GET /echo?n=2");
    CHECK(start(&d, "POST", fx_url(&f, "/echo"), NULL, "x", 1, no_to, 0) != NULL);
    CHECK(run_until(f.base, &d.done, 3000));
    CHECK(d.res == UPSTREAM_OK);
    CHECK(f.srv->requests == 3);
    CHECK(f.srv->accepted == 1);
    CHECK(f.srv->closed == 0);
    ctx_fini(&a);
    ctx_fini(&b);
    ctx_fini(&d);
    fx_fini(&f);
}

static const char *expected_stream(int n)
{
    static char s[4096];
    s[0] = '\0';
    for (int i = 0; i < n; i++)
        snprintf(s + strlen(s), sizeof s - strlen(s), "data: %d\n\n", i);
    return s;
}

static void test_stream_chunks(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    f.srv->gate = &c.data_calls;
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=6&ms=1"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.data_calls == 6);
    CHECK_STR(c.body, expected_stream(6));
    CHECK(c.responses == 1);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_pause_resume_stream(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    c.pause_every = 1;
    c.resume_ms = 30;              /* slower than the server: data queues up */
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=8&ms=5"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 5000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, expected_stream(8));
    CHECK(c.data_while_paused == 0);
    CHECK(c.pauses == c.data_calls);
    ctx_fini(&c);
    fx_fini(&f);
}

/* One big write: curl splits it, we pause in on_response and on every
 * piece; every byte must arrive exactly once, in order. */
static void test_pause_big_body(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    c.pause_in_response = 1;
    c.pause_every = 1;
    c.resume_ms = 1;
    long n = 300000;
    CHECK(start(&c, "GET", fx_url(&f, "/big?n=300000"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 5000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.body_len == (size_t)n);
    char *want = big_pattern(n);
    CHECK(c.body && memcmp(c.body, want, (size_t)n) == 0);
    free(want);
    CHECK(c.data_while_paused == 0);
    CHECK(c.data_calls >= 2);
    ctx_fini(&c);
    fx_fini(&f);
}

/* A caller that stays paused longer than idle_ms must not trip the idle timer. */
static void test_pause_is_not_idle(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    c.pause_first_ms = 300;
    upstream_timeouts to = { 0, 0, 100, 0 };
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=4&ms=5"), NULL, NULL, 0, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.pauses == 1);
    CHECK(c.data_while_paused == 0);
    CHECK_STR(c.body, expected_stream(4));
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_connect_refused(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    /* grab a free port, then close it so nobody listens there */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    const char *hdrs[] = { "Authorization: Bearer sk-secret", NULL };
    CHECK(start(&c, "GET", url, hdrs, NULL, 0, no_to, 0) != NULL);
    CHECK(!c.done);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_CONNECT);
    CHECK(c.errmsg[0] != '\0');
    CHECK(strstr(c.errmsg, "sk-secret") == NULL);
    CHECK(c.responses == 0);
    CHECK(!c.done_in_start);
    ctx_fini(&c);
    fx_fini(&f);
}

/* A listener whose accept queue is full drops SYNs: connect hangs. */
static void test_connect_timeout(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sin;
    CHECK(bind(lfd, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(listen(lfd, 0) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sin, &sl) == 0);
    int fill[3];
    for (int i = 0; i < 3; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM, 0);
        fcntl(fill[i], F_SETFL, O_NONBLOCK);
        int rc = connect(fill[i], (struct sockaddr *)&sin, sizeof sin);
        CHECK(rc == 0 || errno == EINPROGRESS);
    }
    run_for(f.base, 20);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ntohs(sin.sin_port));
    upstream_timeouts to = { 150, 0, 0, 0 };
    CHECK(start(&c, "GET", url, NULL, NULL, 0, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_TIMEOUT_CONNECT);
    if (c.res != UPSTREAM_ERR_TIMEOUT_CONNECT)
        fprintf(stderr, "  got %s: %s\n", upstream_result_name(c.res), c.errmsg);
    for (int i = 0; i < 3; i++)
        close(fill[i]);
    close(lfd);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_first_byte_timeout(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    upstream_timeouts to = { 0, 150, 0, 0 };
    const char *hdrs[] = { "Authorization: Bearer sk-secret", NULL };
    CHECK(start(&c, "POST", fx_url(&f, "/never"), hdrs, "{}", 2, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_TIMEOUT_FIRST_BYTE);
    CHECK(strstr(c.errmsg, "150 ms") != NULL);
    CHECK(strstr(c.errmsg, "sk-secret") == NULL);
    CHECK(c.responses == 0);
    /* the half-used connection is closed, not pooled */
    CHECK(run_until_count(f.base, &f.srv->closed, 1, 2000));
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_idle_timeout(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    upstream_timeouts to = { 0, 0, 150, 0 };
    CHECK(start(&c, "GET", fx_url(&f, "/stall"), NULL, NULL, 0, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_TIMEOUT_IDLE);
    CHECK(strstr(c.errmsg, "150 ms") != NULL);
    CHECK(c.responses == 1);
    CHECK_STR(c.body, "hello");
    CHECK(run_until_count(f.base, &f.srv->closed, 1, 2000));
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_total_timeout(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    upstream_timeouts to = { 0, 0, 0, 200 };
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=0&ms=10"), NULL, NULL, 0, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_TIMEOUT_TOTAL);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_too_large(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    CHECK(start(&c, "GET", fx_url(&f, "/big?n=5000"), NULL, NULL, 0, no_to, 1000) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_TOO_LARGE);
    CHECK(strstr(c.errmsg, "larger than 1000") != NULL);
    CHECK(c.body_len <= 1000);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_cancel_in_callback(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    c.cancel_after = 3;
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=0&ms=5"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.cancelled, 3000));
    CHECK(upstream_active(f.u) == 0);
    CHECK(run_until_count(f.base, &f.srv->closed, 1, 2000));
    run_for(f.base, 50);
    CHECK(c.calls_after_cancel == 0);
    CHECK(c.done == 0);
    CHECK(c.data_calls == 3);
    ctx_fini(&c);
    fx_fini(&f);
}

static void cancel_cb(evutil_socket_t fd, short what, void *arg)
{
    ctx *c = arg;
    c->cancelled = 1;
    upstream_cancel(c->r);
}

/* Cancel from outside any callback while curl has the transfer paused. */
static void test_cancel_while_paused(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    c.pause_first_ms = 10000;      /* resume never comes in time */
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=0&ms=5"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.pauses, 3000));
    run_for(f.base, 30);
    CHECK(c.data_calls == 1);
    struct event *ev = evtimer_new(f.base, cancel_cb, &c);
    struct timeval tv = { 0, 1000 };
    event_add(ev, &tv);
    CHECK(run_until(f.base, &c.cancelled, 1000));
    event_del(c.resume_ev);
    CHECK(upstream_active(f.u) == 0);
    CHECK(run_until_count(f.base, &f.srv->closed, 1, 2000));
    CHECK(c.calls_after_cancel == 0);
    CHECK(c.done == 0);
    event_free(ev);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_active_counts(void)
{
    fixture f;
    ctx c[3];
    CHECK(fx_init(&f) == 0);
    CHECK(upstream_active(f.u) == 0);
    for (int i = 0; i < 3; i++) {
        ctx_init(&c[i], f.base, f.u);
        CHECK(start(&c[i], "GET", fx_url(&f, "/stream?n=3&ms=10"), NULL, NULL, 0, no_to, 0) != NULL);
    }
    CHECK(upstream_active(f.u) == 3);
    upstream_cancel(c[1].r);       /* straight after start, before any I/O */
    c[1].cancelled = 1;
    CHECK(upstream_active(f.u) == 2);
    CHECK(run_until(f.base, &c[0].done, 3000));
    CHECK(run_until(f.base, &c[2].done, 3000));
    CHECK(c[0].res == UPSTREAM_OK && c[2].res == UPSTREAM_OK);
    CHECK(c[1].calls_after_cancel == 0 && c[1].done == 0);
    CHECK(upstream_active(f.u) == 0);
    for (int i = 0; i < 3; i++)
        ctx_fini(&c[i]);
    fx_fini(&f);
}

static void test_free_in_flight(void)
{
    fixture f;
    ctx c[3];
    CHECK(fx_init(&f) == 0);
    const char *paths[3] = { "/stream?n=0&ms=5", "/never", "/stall" };
    for (int i = 0; i < 3; i++) {
        ctx_init(&c[i], f.base, f.u);
        CHECK(start(&c[i], "GET", fx_url(&f, paths[i]), NULL, NULL, 0, no_to, 0) != NULL);
    }
    CHECK(run_until_count(f.base, &f.srv->requests, 3, 2000));
    CHECK(run_until_count(f.base, &c[0].data_calls, 2, 2000));
    upstream_free(f.u);
    f.u = NULL;
    CHECK(run_until_count(f.base, &f.srv->closed, 3, 2000));
    for (int i = 0; i < 3; i++) {
        CHECK(c[i].done == 0);
        ctx_fini(&c[i]);
    }
    fx_fini(&f);
}

static void test_no_body_response(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    CHECK(start(&c, "GET", fx_url(&f, "/nobody"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.responses == 1);
    CHECK(c.status == 204);
    CHECK(c.data_calls == 0);
    ctx_fini(&c);
    fx_fini(&f);
}

static void hdr_cb_check(void *ud, upstream_req_t *r, int status)
{
    ctx *c = ud;
    c->responses++;
    c->status = status;
    const char *a = upstream_header(r, "x-interim"), *b = upstream_header(r, "X-FINAL");
    snprintf(c->hdr_reply, sizeof c->hdr_reply, "%s/%s", a ? a : "-", b ? b : "-");
}

/* 1xx headers are dropped when the final status line arrives; redirects are
 * returned, not followed. */
static void test_interim_and_redirect(void)
{
    fixture f;
    ctx c, d;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    ctx_init(&d, f.base, f.u);
    upstream_callbacks saved = cbs;
    cbs.on_response = hdr_cb_check;
    CHECK(start(&c, "GET", fx_url(&f, "/interim"), NULL, NULL, 0, no_to, 0) != NULL);
    cbs = saved;
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK(c.status == 200);
    CHECK_STR(c.hdr_reply, "-/1");
    CHECK_STR(c.body, "ok");
    CHECK(start(&d, "GET", fx_url(&f, "/redirect"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &d.done, 3000));
    CHECK(d.res == UPSTREAM_OK);
    CHECK(d.status == 302);
    CHECK_STR(d.body, "moved");
    CHECK(f.srv->requests == 2);
    ctx_fini(&c);
    ctx_fini(&d);
    fx_fini(&f);
}

/* upstream_start from inside another request's on_data (inside curl). */
static void test_start_from_callback(void)
{
    fixture f;
    ctx a, b;
    CHECK(fx_init(&f) == 0);
    ctx_init(&a, f.base, f.u);
    ctx_init(&b, f.base, f.u);
    char url2[128];
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d/echo?spawned", f.srv->port);
    a.spawn_url = url2;
    a.spawn = &b;
    CHECK(start(&a, "GET", fx_url(&f, "/stream?n=3&ms=10"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &a.done, 3000));
    CHECK(b.r != NULL);
    CHECK(run_until(f.base, &b.done, 3000));
    CHECK(a.res == UPSTREAM_OK);
    CHECK(b.res == UPSTREAM_OK);
    CHECK_STR(b.body, "GET /echo?spawned");
    CHECK(upstream_active(f.u) == 0);
    ctx_fini(&a);
    ctx_fini(&b);
    fx_fini(&f);
}

/* A failure curl detects on its first run still reports from the loop. */
static void test_done_never_inside_start(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    CHECK(start(&c, "GET", "ftp://127.0.0.1/", NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(c.done == 0);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(!c.done_in_start);
    CHECK(c.res != UPSTREAM_OK);
    CHECK(c.errmsg[0] != '\0');
    ctx_fini(&c);
    fx_fini(&f);
}


static void pause_cb(evutil_socket_t fd, short what, void *arg)
{
    ctx *c = arg;
    upstream_pause(c->r);
    c->paused_now = 1;
    c->pauses++;
}

/* upstream_pause from a timer (outside callbacks) while bytes keep coming. */
static void test_pause_from_outside(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=12&ms=5"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until_count(f.base, &c.data_calls, 2, 3000));
    struct event *ev = evtimer_new(f.base, pause_cb, &c);
    struct timeval tv = { 0, 0 };
    event_add(ev, &tv);
    CHECK(run_until(f.base, &c.pauses, 1000));
    int before = c.data_calls;
    run_for(f.base, 80);           /* the server finishes meanwhile */
    CHECK(c.data_calls == before);
    CHECK(c.data_while_paused == 0);
    CHECK(!c.done);
    c.paused_now = 0;
    upstream_resume(c.r);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, expected_stream(12));
    event_free(ev);
    ctx_fini(&c);
    fx_fini(&f);
}

/* Small body while paused from on_response: delivered once, then on_done. */
static void test_pause_small_body(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    c.pause_in_response = 1;
    c.resume_ms = 60;
    CHECK(start(&c, "POST", fx_url(&f, "/echo"), NULL, "abc", 3, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, "abc");
    CHECK(c.data_calls == 1);
    CHECK(c.data_while_paused == 0);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_cancel_in_on_response(void)
{
    fixture f;
    ctx c, d;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    ctx_init(&d, f.base, f.u);
    c.cancel_in_response = 1;
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=0&ms=5"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.cancelled, 3000));
    CHECK(run_until_count(f.base, &f.srv->closed, 1, 2000));
    run_for(f.base, 30);
    CHECK(c.calls_after_cancel == 0 && c.done == 0 && c.data_calls == 0);
    CHECK(upstream_active(f.u) == 0);
    /* the pooled handle is clean for the next call */
    CHECK(start(&d, "GET", fx_url(&f, "/echo?after"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &d.done, 3000));
    CHECK(d.res == UPSTREAM_OK);
    CHECK_STR(d.body, "GET /echo?after");
    CHECK(f.srv->accepted == 2);   /* the cancelled connection was not reused */
    ctx_fini(&c);
    ctx_fini(&d);
    fx_fini(&f);
}

static void test_tls_error(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/echo", f.srv->port);
    /* default timeouts: loading the CA store is slow under valgrind */
    CHECK(start(&c, "GET", url, NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 20000));
    CHECK(c.res == UPSTREAM_ERR_TLS);
    if (c.res != UPSTREAM_ERR_TLS)
        fprintf(stderr, "  got %s: %s\n", upstream_result_name(c.res), c.errmsg);
    CHECK(c.errmsg[0] != '\0');
    CHECK(c.responses == 0);
    ctx_fini(&c);
    fx_fini(&f);
}

/* With a cap of one connection per host, concurrent calls queue and share it. */
static void test_max_host_connections(void)
{
    fixture f;
    ctx c[3];
    upstream_opts o = { 1, NULL, 0 };
    CHECK(fx_init_opts(&f, &o) == 0);
    for (int i = 0; i < 3; i++) {
        ctx_init(&c[i], f.base, f.u);
        CHECK(start(&c[i], "GET", fx_url(&f, "/stream?n=2&ms=5"), NULL, NULL, 0, no_to, 0) != NULL);
    }
    for (int i = 0; i < 3; i++) {
        CHECK(run_until(f.base, &c[i].done, 3000));
        CHECK(c[i].res == UPSTREAM_OK);
        CHECK_STR(c[i].body, expected_stream(2));
    }
    CHECK(f.srv->accepted == 1);
    CHECK(f.srv->requests == 3);
    for (int i = 0; i < 3; i++)
        ctx_fini(&c[i]);
    fx_fini(&f);
}

static void test_custom_method(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    CHECK(start(&c, "PUT", fx_url(&f, "/echo"), NULL, "put-body", 8, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, "put-body");
    CHECK(strncmp(f.srv->last_req, "PUT /echo HTTP/1.1\r\n", 20) == 0);
    CHECK(c.status == 200);
    CHECK(c.status_done == 200);
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_start_invalid(void)
{
    fixture f;
    CHECK(fx_init(&f) == 0);
    upstream_request req = { .method = "GET", .url = NULL };
    CHECK(upstream_start(f.u, &req, &cbs, NULL) == NULL);
    CHECK(upstream_active(f.u) == 0);
    CHECK(upstream_header(NULL, "x") == NULL);
    CHECK(upstream_status(NULL) == 0);
    upstream_pause(NULL);
    upstream_resume(NULL);
    upstream_cancel(NULL);
    fx_fini(&f);
}

/* Started and cancelled inside another request's on_data: never runs. */
static void test_spawn_then_cancel(void)
{
    fixture f;
    ctx a, b;
    CHECK(fx_init(&f) == 0);
    ctx_init(&a, f.base, f.u);
    ctx_init(&b, f.base, f.u);
    char url2[128];
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d/echo?spawned", f.srv->port);
    a.spawn_url = url2;
    a.spawn = &b;
    a.spawn_cancel = 1;
    CHECK(start(&a, "GET", fx_url(&f, "/stream?n=3&ms=10"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &a.done, 3000));
    run_for(f.base, 30);
    CHECK(a.res == UPSTREAM_OK);
    CHECK(b.r != NULL);
    CHECK(b.done == 0 && b.calls_after_cancel == 0 && b.responses == 0);
    CHECK(f.srv->requests == 1);
    CHECK(upstream_active(f.u) == 0);
    ctx_fini(&a);
    ctx_fini(&b);
    fx_fini(&f);
}

/* Bytes every 10 ms keep a 200 ms idle timer from firing over ~300 ms. */
static void test_idle_resets_on_data(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    upstream_timeouts to = { 0, 0, 200, 0 };
    CHECK(start(&c, "GET", fx_url(&f, "/stream?n=30&ms=10"), NULL, NULL, 0, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_OK);
    CHECK_STR(c.body, expected_stream(30));
    ctx_fini(&c);
    fx_fini(&f);
}

static void test_truncated_is_io(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    CHECK(start(&c, "GET", fx_url(&f, "/truncated"), NULL, NULL, 0, no_to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_IO);
    CHECK_STR(c.body, "0123456789");
    CHECK(c.errmsg[0] != '\0');
    ctx_fini(&c);
    fx_fini(&f);
}

/* Connected, request sent, nothing back: the total timeout is not a connect one. */
static void test_total_timeout_before_first_byte(void)
{
    fixture f;
    ctx c;
    CHECK(fx_init(&f) == 0);
    ctx_init(&c, f.base, f.u);
    upstream_timeouts to = { 0, 0, 0, 150 };
    CHECK(start(&c, "GET", fx_url(&f, "/never"), NULL, NULL, 0, to, 0) != NULL);
    CHECK(run_until(f.base, &c.done, 3000));
    CHECK(c.res == UPSTREAM_ERR_TIMEOUT_TOTAL);
    ctx_fini(&c);
    fx_fini(&f);
}

/* Many paused transfers at once, on several connections: still exactly once. */
static void test_concurrent_pause(void)
{
    enum { N = 16 };
    fixture f;
    ctx c[N];
    CHECK(fx_init(&f) == 0);
    long n = 100000;
    for (int i = 0; i < N; i++) {
        ctx_init(&c[i], f.base, f.u);
        c[i].pause_every = i % 2;
        c[i].pause_in_response = i % 3 == 0;
        c[i].resume_ms = i % 4;
        CHECK(start(&c[i], "GET", fx_url(&f, "/big?n=100000"), NULL, NULL, 0, no_to, 0) != NULL);
    }
    char *want = big_pattern(n);
    for (int i = 0; i < N; i++) {
        CHECK(run_until(f.base, &c[i].done, 5000));
        CHECK(c[i].res == UPSTREAM_OK);
        CHECK(c[i].body_len == (size_t)n && memcmp(c[i].body, want, (size_t)n) == 0);
        CHECK(c[i].data_while_paused == 0);
    }
    free(want);
    CHECK(upstream_active(f.u) == 0);
    for (int i = 0; i < N; i++)
        ctx_fini(&c[i]);
    fx_fini(&f);
}

int main(void)
{
    static const char *proxies[] = { "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                     "all_proxy", "ALL_PROXY" };
    for (size_t i = 0; i < sizeof proxies / sizeof *proxies; i++)
        unsetenv(proxies[i]);
    cbs.on_response = on_response;
    cbs.on_data = on_data;
    cbs.on_done = on_done;

    RUN(test_result_names);
    RUN(test_get_echo);
    RUN(test_post_echo);
    RUN(test_post_large_no_expect);
    RUN(test_keepalive_reuse);
    RUN(test_stream_chunks);
    RUN(test_pause_resume_stream);
    RUN(test_pause_big_body);
    RUN(test_pause_is_not_idle);
    RUN(test_connect_refused);
    RUN(test_connect_timeout);
    RUN(test_first_byte_timeout);
    RUN(test_idle_timeout);
    RUN(test_total_timeout);
    RUN(test_too_large);
    RUN(test_cancel_in_callback);
    RUN(test_cancel_while_paused);
    RUN(test_active_counts);
    RUN(test_free_in_flight);
    RUN(test_no_body_response);
    RUN(test_interim_and_redirect);
    RUN(test_start_from_callback);
    RUN(test_done_never_inside_start);
    RUN(test_pause_from_outside);
    RUN(test_pause_small_body);
    RUN(test_cancel_in_on_response);
    RUN(test_tls_error);
    RUN(test_max_host_connections);
    RUN(test_custom_method);
    RUN(test_start_invalid);
    RUN(test_spawn_then_cancel);
    RUN(test_idle_resets_on_data);
    RUN(test_truncated_is_io);
    RUN(test_total_timeout_before_first_byte);
    RUN(test_concurrent_pause);
    TEST_MAIN_END();
}
