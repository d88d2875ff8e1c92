/* upstream_h1: a lean HTTP/1.1 client for plain http:// upstreams.
 *
 * Why not curl for these: per request curl polls its socket for liveness,
 * removes and re-adds its epoll interest and reads through extra layers.
 * Here a connection is registered with the loop once (a persistent read
 * event) and stays registered while it sits in the pool, so the steady
 * keep-alive path is: one sendmsg for head + body, one epoll_wait, one recv.
 *
 * Threading: everything runs on the worker thread that owns the base.
 *
 * Objects:
 *   h1_host  per host:port: cached addresses, idle pool (LIFO), wait queue
 *            when max_host_connections is reached.
 *   h1_conn  one TCP connection: read event always on (except while its
 *            request is paused), write event only for connect and short
 *            writes.  A read event on an idle connection means the server
 *            closed it or sent garbage: it is dropped from the pool.
 *   h1_req   one call.  Recycled through a free list with its buffers.
 *
 * Delivery: bytes are parsed in place in the request's read buffer; body
 * bytes (chunk framing removed by moving data down over it) are handed to
 * on_data straight from that buffer, once per read.  While paused nothing
 * is parsed and the socket is not read; resume goes through a zero-delay
 * "kick" event, so it is safe from any callback.
 *
 * Callback safety: a request whose callback is running has busy > 0; a
 * cancel from inside it only marks it, and the frame that called out
 * notices (every callback is followed by a cancelled check) and releases
 * it.  Such frames never touch the connection after a callback that
 * cancelled: cancel has already closed it.
 *
 * Failures found while starting (DNS, refused connect, a failed first
 * write) are reported through the kick event: on_done never runs inside
 * h1_start.
 */
#include "upstream_h1.h"
#include "evloop.h"
#include "log.h"
#include "monoclock.h"

#include <event2/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define DEF_CONNECT_MS      10000L
#define DEF_FIRST_BYTE_MS   600000L
#define DEF_IDLE_MS         300000L
#define DEF_TOTAL_MS        900000L

#define IDLE_PER_HOST_MAX   256
#define IDLE_MAX_AGE_US     (110LL * 1000000)   /* silently dropped NAT state: don't trust older */
#define DNS_TTL_US          (60LL * 1000000)
#define HDR_BYTES_MAX       (64u * 1024u)       /* status line + headers (and, separately, trailers) */
#define HDR_COUNT_MAX       128
#define CHUNK_EXT_MAX       4096
#define RBUF_INIT           (16u * 1024u)
#define RBUF_MAX            (2u * HDR_BYTES_MAX)
#define READS_PER_WAKE      8
#define FREE_REQ_MAX        64
#define FREE_CONN_MAX       64
#define MAX_ADDRS           4
#define HOSTS_SOFT_MAX      256

typedef struct h1_host h1_host;
typedef struct h1_conn h1_conn;
typedef struct h1_req  h1_req;

enum cstate { C_CONNECTING, C_BUSY, C_IDLE };

struct h1_conn {
    h1_client *c;
    h1_host *h;
    int fd;
    enum cstate state;
    struct event *rev;           /* EV_READ|EV_PERSIST for the connection's whole life */
    struct event *wev;           /* EV_WRITE: connect completion and short writes only */
    unsigned rev_on : 1;
    unsigned confirmed : 1;      /* a send went through: the TCP connect is known good */
    unsigned reused : 1;         /* served a response before, so it may have gone stale */
    int addr_idx;
    int64_t idle_since;
    h1_req *req;
    h1_conn *prev, *next;        /* h->idle, or the free list */
};

struct h1_host {
    char *key;                   /* authority as written in the URL: the lookup key */
    size_t key_len;
    char *name;                  /* for the resolver and messages (no brackets) */
    char port_str[8];
    int numeric;
    char *host_line;             /* "Host: ...\r\n" */
    size_t host_line_len;
    int naddrs;
    struct sockaddr_storage addrs[MAX_ADDRS];
    socklen_t addrlens[MAX_ADDRS];
    int64_t resolved_at;
    h1_conn *idle;               /* most recently used first */
    size_t nidle, nconns, refs;
    h1_req *waitq, *waitq_tail;
    int dispatching;
    h1_host *next;
};

struct h1_client {
    struct event_base *base;
    long max_host;
    h1_host *hosts;
    size_t nhosts;
    h1_req *live;
    h1_req *free_reqs;
    int nfree_reqs;
    h1_conn *free_conns;
    int nfree_conns;
    size_t active, nconns, nidle;
    unsigned long connects, retries;
};

enum rstate { R_FREE, R_WAIT, R_CONN, R_DONE };

enum pstate {
    P_STATUS, P_HEADER, P_BODY_LEN, P_BODY_CLOSE,
    P_CHUNK_SIZE, P_CHUNK_EXT, P_CHUNK_LF, P_CHUNK_DATA, P_CHUNK_DATA_CR, P_CHUNK_DATA_LF,
    P_TRAILER, P_DONE
};

typedef struct hdr_ent {
    uint32_t name, value;        /* offsets into hdr_buf, NUL-terminated */
} hdr_ent;

struct h1_req {
    int kind;                    /* UPREQ_H1: must stay the first member */
    h1_client *c;
    h1_host *h;
    h1_conn *k;
    upstream_callbacks cb;
    void *ud;
    enum rstate state;
    int busy;

    unsigned cancelled : 1;
    unsigned paused : 1;
    unsigned got_byte : 1;
    unsigned retried : 1;
    unsigned fail_pending : 1;
    unsigned is_head : 1;
    unsigned keep : 1;           /* the response allows pooling the connection */
    unsigned have_cl : 1;
    unsigned te_present : 1;
    unsigned te_chunked : 1;
    unsigned conn_close : 1;

    /* request: head in obuf, body borrowed from the caller */
    char *obuf;
    size_t ocap, olen;
    const char *body;
    size_t body_len;
    size_t sent;

    /* response */
    char *rbuf;
    size_t rcap, rpos, rend;
    enum pstate ps;
    int status, minor;
    uint64_t cl, left;           /* Content-Length; body or chunk bytes still due */
    size_t hdr_bytes, nlines, chunk_ext;
    int chunk_digits;
    size_t body_bytes, max_resp;

    char *hdr_buf;
    size_t hdr_len, hdr_cap;
    hdr_ent *hdrs;
    size_t nhdrs, hdrs_cap;

    /* one timer for all four timeouts, re-armed lazily */
    struct event *tmr;
    struct event *kick;
    int64_t t_conn, t_fb, t_total, last_rx, armed;
    long connect_ms, first_byte_ms, idle_ms, total_ms;

    upstream_result fail_res;
    char msg[192];
    h1_req *prev, *next;         /* c->live */
    h1_req *qnext;               /* h->waitq or the free list */
};

static void conn_read_cb(evutil_socket_t fd, short what, void *arg);
static void conn_write_cb(evutil_socket_t fd, short what, void *arg);
static void acquire(h1_req *r, int force_new);
static void send_now(h1_req *r);
static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void kick_cb(evutil_socket_t fd, short what, void *arg);
static void complete(h1_req *r, upstream_result res, const char *msg);

static int64_t clock_skew_us;                    /* h1_test_clock_advance */

static int64_t now_us(void)
{
    return mono_us() + clock_skew_us;
}

void h1_test_clock_advance(int64_t us)
{
    clock_skew_us += us;
}

static h1_req *from_pub(const upstream_req_t *r)
{
    return (h1_req *)(void *)(uintptr_t)r;
}

static upstream_req_t *to_pub(h1_req *r)
{
    return (upstream_req_t *)(void *)r;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : first;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

/* ---- timers ------------------------------------------------------------ */

static int64_t next_deadline(const h1_req *r)
{
    int64_t d = r->t_total;
    if (r->k && r->k->state == C_CONNECTING && r->t_conn < d)
        d = r->t_conn;
    if (!r->got_byte) {
        if (r->t_fb < d)
            d = r->t_fb;
    } else if (!r->paused) {
        int64_t i = r->last_rx + (int64_t)r->idle_ms * 1000;
        if (i < d)
            d = i;
    }
    return d;
}

static void arm_at(h1_req *r, int64_t when, int64_t now)
{
    int64_t us = when - now;
    if (us < 0)
        us = 0;
    struct timeval tv = { (time_t)(us / 1000000), (suseconds_t)(us % 1000000) };
    if (event_add(r->tmr, &tv) == 0)
        r->armed = when;
    else
        log_warn("upstream_h1: cannot arm timer");
}

/* Only ever pulls the timer earlier; a later deadline is found when it fires. */
static void arm_earlier(h1_req *r, int64_t when)
{
    if (when < r->armed)
        arm_at(r, when, now_us());
}

/* ---- hosts ------------------------------------------------------------- */

typedef struct url_parts {
    const char *auth;            /* authority, e.g. "127.0.0.1:8080" */
    size_t auth_len;
    const char *host;            /* without IPv6 brackets */
    size_t host_len;
    int v6;
    unsigned port;
    const char *path;            /* "/..." or "?..." up to '#'; empty means "/" */
    size_t path_len;
} url_parts;

/* 0 if url is plain http:// this engine can send verbatim; otherwise curl. */
static int parse_url(const char *url, url_parts *u)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return -1;
    const char *a = url + 7;
    const char *e = a + strcspn(a, "/?#");
    if (e == a || memchr(a, '@', (size_t)(e - a)))
        return -1;                               /* no host, or userinfo */
    const char *hend;
    u->v6 = 0;
    if (*a == '[') {
        const char *cb = memchr(a, ']', (size_t)(e - a));
        if (!cb || cb == a + 1)
            return -1;
        u->host = a + 1;
        u->host_len = (size_t)(cb - a - 1);
        u->v6 = 1;
        hend = cb + 1;
    } else {
        hend = memchr(a, ':', (size_t)(e - a));
        if (!hend)
            hend = e;
        u->host = a;
        u->host_len = (size_t)(hend - a);
        if (!u->host_len)
            return -1;
    }
    for (size_t i = 0; i < u->host_len; i++) {
        unsigned char ch = (unsigned char)u->host[i];
        if (!(ch == '.' || ch == '-' || ch == '_' || (ch >= '0' && ch <= '9') ||
              (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (u->v6 && ch == ':')))
            return -1;
    }
    u->port = 80;
    if (hend < e) {
        if (*hend != ':' || e - hend > 6)
            return -1;
        if (e - hend > 1) {
            unsigned p = 0;
            for (const char *q = hend + 1; q < e; q++) {
                if (*q < '0' || *q > '9')
                    return -1;
                p = p * 10 + (unsigned)(*q - '0');
            }
            if (p == 0 || p > 65535)
                return -1;
            u->port = p;
        }
    }
    u->auth = a;
    u->auth_len = (size_t)(e - a);
    u->path = e;
    u->path_len = strcspn(e, "#");
    for (size_t i = 0; i < u->path_len; i++) {
        unsigned char ch = (unsigned char)e[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return -1;                           /* would need encoding: curl's job */
    }
    return 0;
}

static void host_destroy(h1_host *h)
{
    free(h->key);
    free(h->name);
    free(h->host_line);
    free(h);
}

/* Frees hosts nobody uses when a config churned through many of them. */
static void hosts_gc(h1_client *c)
{
    h1_host **pp = &c->hosts;
    while (*pp) {
        h1_host *h = *pp;
        if (!h->refs && !h->nconns && !h->waitq) {
            *pp = h->next;
            host_destroy(h);
            c->nhosts--;
        } else {
            pp = &h->next;
        }
    }
}

static h1_host *host_get(h1_client *c, const url_parts *u)
{
    h1_host **pp = &c->hosts;
    for (h1_host *h = c->hosts; h; pp = &h->next, h = h->next) {
        if (h->key_len == u->auth_len && memcmp(h->key, u->auth, u->auth_len) == 0) {
            if (h != c->hosts) {                 /* move to front: hot hosts are found first */
                *pp = h->next;
                h->next = c->hosts;
                c->hosts = h;
            }
            return h;
        }
    }
    if (c->nhosts >= HOSTS_SOFT_MAX)
        hosts_gc(c);
    h1_host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->key = strndup(u->auth, u->auth_len);
    h->key_len = u->auth_len;
    h->name = strndup(u->host, u->host_len);
    /* "Host: " + [host] + ":65535" + CRLF */
    size_t cap = 6 + u->host_len + 2 + 6 + 2 + 1;
    h->host_line = malloc(cap);
    if (!h->key || !h->name || !h->host_line) {
        host_destroy(h);
        return NULL;
    }
    snprintf(h->port_str, sizeof h->port_str, "%u", u->port);
    int n = snprintf(h->host_line, cap, "Host: %s%s%s%s%s\r\n", u->v6 ? "[" : "", h->name,
                     u->v6 ? "]" : "", u->port != 80 ? ":" : "", u->port != 80 ? h->port_str : "");
    h->host_line_len = n > 0 ? (size_t)n : 0;

    /* Numeric hosts never touch the resolver. */
    struct sockaddr_in *s4 = (struct sockaddr_in *)&h->addrs[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&h->addrs[0];
    if (!u->v6 && inet_pton(AF_INET, h->name, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)u->port);
        h->addrlens[0] = sizeof *s4;
        h->naddrs = 1;
        h->numeric = 1;
    } else if (inet_pton(AF_INET6, h->name, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)u->port);
        h->addrlens[0] = sizeof *s6;
        h->naddrs = 1;
        h->numeric = 1;
    }
    h->next = c->hosts;
    c->hosts = h;
    c->nhosts++;
    return h;
}

/* Blocking getaddrinfo, once per host per DNS_TTL_US; keeps stale addresses
 * when a refresh fails.  0 ok, -1 with r->msg set. */
static int resolve(h1_req *r)
{
    h1_host *h = r->h;
    int64_t now = now_us();
    if (h->numeric || (h->naddrs && now - h->resolved_at < DNS_TTL_US))
        return 0;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    int rc = getaddrinfo(h->name, h->port_str, &hints, &res);
    if (rc != 0) {
        if (h->naddrs)
            return 0;
        snprintf(r->msg, sizeof r->msg, "could not resolve host %s: %s", h->name, gai_strerror(rc));
        return -1;
    }
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof h->addrs[0])
            continue;
        memcpy(&h->addrs[n], ai->ai_addr, ai->ai_addrlen);
        h->addrlens[n] = (socklen_t)ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    if (!n) {
        if (h->naddrs)
            return 0;
        snprintf(r->msg, sizeof r->msg, "could not resolve host %s: no usable address", h->name);
        return -1;
    }
    h->naddrs = n;
    h->resolved_at = now;
    return 0;
}

/* ---- connections --------------------------------------------------------- */

static void conn_destroy(h1_conn *k)
{
    if (k->rev) event_free(k->rev);
    if (k->wev) event_free(k->wev);
    free(k);
}

static void idle_unlink(h1_conn *k)
{
    h1_host *h = k->h;
    if (k->prev) k->prev->next = k->next; else h->idle = k->next;
    if (k->next) k->next->prev = k->prev;
    k->prev = k->next = NULL;
    h->nidle--;
    k->c->nidle--;
}

static void dispatch_waiters(h1_host *h);

/* Closes k for good.  dispatch: let a queued request have the freed slot
 * (0 when the caller is about to take the slot itself). */
static void conn_drop(h1_conn *k, int dispatch)
{
    h1_client *c = k->c;
    h1_host *h = k->h;
    event_del(k->rev);
    event_del(k->wev);
    if (k->state == C_IDLE)
        idle_unlink(k);
    if (close(k->fd) != 0)
        log_warn("upstream_h1: close: %s", strerror(errno));
    k->fd = -1;
    k->req = NULL;
    h->nconns--;
    c->nconns--;
    if (c->nfree_conns < FREE_CONN_MAX) {
        k->next = c->free_conns;
        c->free_conns = k;
        c->nfree_conns++;
    } else {
        conn_destroy(k);
    }
    if (dispatch)
        dispatch_waiters(h);
}

static h1_conn *conn_alloc(h1_client *c)
{
    h1_conn *k = c->free_conns;
    if (k) {
        c->free_conns = k->next;
        c->nfree_conns--;
    } else {
        k = calloc(1, sizeof *k);
        if (!k)
            return NULL;
        k->rev = event_new(c->base, -1, 0, conn_read_cb, k);
        k->wev = event_new(c->base, -1, 0, conn_write_cb, k);
        if (!k->rev || !k->wev) {
            conn_destroy(k);
            return NULL;
        }
    }
    k->c = c;
    k->prev = k->next = NULL;
    k->req = NULL;
    k->rev_on = k->confirmed = k->reused = 0;
    return k;
}

/* Opens a connection to address idx of r's host and attaches it to r.
 * 0 ok (connecting, or already connected: state C_BUSY), -1 with r->msg. */
static int conn_open(h1_req *r, int idx)
{
    h1_client *c = r->c;
    h1_host *h = r->h;
    const struct sockaddr *sa = (const struct sockaddr *)&h->addrs[idx];
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(r->msg, sizeof r->msg, "socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0)
        log_warn("upstream_h1: setsockopt: %s", strerror(errno));   /* slower, still correct */
    c->connects++;
    int rc = connect(fd, sa, h->addrlens[idx]);
    if (rc != 0 && errno != EINPROGRESS) {
        snprintf(r->msg, sizeof r->msg, "connect to %s port %s failed: %s", h->name, h->port_str,
                 strerror(errno));
        close(fd);
        return -1;
    }
    h1_conn *k = conn_alloc(c);
    if (!k) {
        snprintf(r->msg, sizeof r->msg, "out of memory");
        close(fd);
        return -1;
    }
    k->fd = fd;
    k->h = h;
    k->addr_idx = idx;
    k->state = rc == 0 ? C_BUSY : C_CONNECTING;
    if (event_assign(k->rev, c->base, fd, EV_READ | EV_PERSIST, conn_read_cb, k) != 0 ||
        event_assign(k->wev, c->base, fd, EV_WRITE, conn_write_cb, k) != 0 ||
        event_add(k->rev, NULL) != 0 ||
        (rc != 0 && event_add(k->wev, NULL) != 0)) {
        snprintf(r->msg, sizeof r->msg, "cannot watch upstream socket");
        event_del(k->rev);
        close(fd);
        conn_destroy(k);
        return -1;
    }
    k->rev_on = 1;
    k->req = r;
    r->k = k;
    h->nconns++;
    c->nconns++;
    if (rc != 0) {
        r->t_conn = now_us() + (int64_t)r->connect_ms * 1000;
        arm_earlier(r, r->t_conn);
    }
    return 0;
}

/* Tries addresses from idx on. */
static int dial(h1_req *r, int idx)
{
    for (; idx < r->h->naddrs; idx++)
        if (conn_open(r, idx) == 0)
            return 0;
    return -1;
}

static h1_conn *pool_get(h1_host *h)
{
    h1_conn *k;
    int64_t now = 0;
    while ((k = h->idle)) {
        idle_unlink(k);
        k->state = C_BUSY;                       /* off the idle list: conn_drop must not unlink it again */
        if (!now)
            now = now_us();
        if (now - k->idle_since > IDLE_MAX_AGE_US) {
            conn_drop(k, 0);
            continue;
        }
        return k;
    }
    return NULL;
}

static void pool_put(h1_conn *k)
{
    h1_host *h = k->h;
    k->req = NULL;
    k->reused = 1;
    if (h->nidle >= IDLE_PER_HOST_MAX) {
        conn_drop(k, 1);
        return;
    }
    if (!k->rev_on) {                            /* turned off by a pause */
        if (event_add(k->rev, NULL) != 0) {
            conn_drop(k, 1);
            return;
        }
        k->rev_on = 1;
    }
    k->state = C_IDLE;
    k->idle_since = now_us();
    k->prev = NULL;
    k->next = h->idle;
    if (h->idle) h->idle->prev = k;
    h->idle = k;
    h->nidle++;
    k->c->nidle++;
    dispatch_waiters(h);
}

/* ---- requests ------------------------------------------------------------ */

static void req_destroy(h1_req *r)
{
    if (r->tmr) event_free(r->tmr);
    if (r->kick) event_free(r->kick);
    free(r->obuf);
    free(r->rbuf);
    free(r->hdr_buf);
    free(r->hdrs);
    free(r);
}

static void waitq_unlink(h1_req *r)
{
    h1_host *h = r->h;
    h1_req **pp = &h->waitq, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (*pp) {
        *pp = r->qnext;
        if (h->waitq_tail == r)
            h->waitq_tail = prev;
    }
    r->qnext = NULL;
}

static void req_release(h1_req *r)
{
    h1_client *c = r->c;
    event_del(r->tmr);
    event_del(r->kick);
    if (r->prev) r->prev->next = r->next; else if (c->live == r) c->live = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    if (r->h) {
        r->h->refs--;
        r->h = NULL;
    }
    r->k = NULL;
    r->state = R_FREE;
    if (c->nfree_reqs >= FREE_REQ_MAX || r->rcap > RBUF_INIT) {
        req_destroy(r);                          /* an outsized buffer is not worth keeping */
        return;
    }
    r->qnext = c->free_reqs;
    c->free_reqs = r;
    c->nfree_reqs++;
}

static h1_req *req_get(h1_client *c)
{
    h1_req *r = c->free_reqs;
    if (r) {
        c->free_reqs = r->qnext;
        c->nfree_reqs--;
        r->qnext = NULL;
        return r;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = UPREQ_H1;
    r->c = c;
    r->tmr = evtimer_new(c->base, timer_cb, r);
    r->kick = event_new(c->base, -1, 0, kick_cb, r);
    r->rbuf = malloc(RBUF_INIT);
    r->rcap = RBUF_INIT;
    if (!r->tmr || !r->kick || !r->rbuf) {
        req_destroy(r);
        return NULL;
    }
    return r;
}

/* Reports a failure from the loop, not from the current frame (which may be
 * h1_start or another request's callback).  The connection goes now. */
static void fail_later(h1_req *r, upstream_result res)
{
    if (r->k) {
        h1_conn *k = r->k;
        r->k = NULL;
        conn_drop(k, 1);
    }
    event_del(r->tmr);
    r->armed = INT64_MAX;
    r->fail_res = res;
    r->fail_pending = 1;
    event_active(r->kick, EV_TIMEOUT, 1);
}

static void reset_response(h1_req *r)
{
    r->rpos = r->rend = 0;
    r->ps = P_STATUS;
    r->status = 0;
    r->hdr_bytes = r->nlines = 0;
    r->hdr_len = r->nhdrs = 0;
    r->keep = r->have_cl = r->te_present = r->te_chunked = r->conn_close = 0;
}

/* Stale keep-alive connection (the server closed it as we wrote): nothing
 * came back, so sending again on a fresh connection is safe. */
static void retry(h1_req *r)
{
    h1_conn *k = r->k;
    r->k = NULL;
    conn_drop(k, 0);
    r->retried = 1;
    r->c->retries++;
    r->sent = 0;
    reset_response(r);
    acquire(r, 1);
    if (r->h)
        dispatch_waiters(r->h);                  /* in case the fresh connect failed */
}

/* A send failed with err. */
static void send_failed(h1_req *r, int err)
{
    h1_conn *k = r->k;
    if (!k->confirmed) {
        /* The connect itself failed: next address, else a connect error. */
        int idx = k->addr_idx + 1;
        snprintf(r->msg, sizeof r->msg, "connect to %s port %s failed: %s", r->h->name,
                 r->h->port_str, strerror(err));
        r->k = NULL;
        conn_drop(k, 0);
        if (idx < r->h->naddrs && dial(r, idx) == 0) {
            if (r->k->state == C_BUSY)
                send_now(r);
            return;
        }
        if (!r->h->numeric)
            r->h->resolved_at = 0;               /* re-resolve next time */
        fail_later(r, UPSTREAM_ERR_CONNECT);
        dispatch_waiters(r->h);
        return;
    }
    if (r->got_byte) {
        /* An early answer (e.g. 413 mid-upload): let the read side finish
         * it; sent < total keeps the connection out of the pool. */
        event_del(k->wev);
        return;
    }
    if (k->reused && !r->retried && (err == EPIPE || err == ECONNRESET)) {
        retry(r);
        return;
    }
    snprintf(r->msg, sizeof r->msg, "sending to upstream failed: %s", strerror(err));
    fail_later(r, UPSTREAM_ERR_IO);
}

/* Writes what is left of the request with one sendmsg; a short write waits
 * for EV_WRITE.  Never runs a callback. */
static void send_now(h1_req *r)
{
    h1_conn *k = r->k;
    size_t total = r->olen + r->body_len;
    if (r->sent >= total)
        return;
    struct iovec iov[2];
    int n = 0;
    if (r->sent < r->olen) {
        iov[n].iov_base = r->obuf + r->sent;
        iov[n].iov_len = r->olen - r->sent;
        n++;
    }
    size_t boff = r->sent > r->olen ? r->sent - r->olen : 0;
    if (r->body_len > boff) {
        iov[n].iov_base = (void *)(uintptr_t)(r->body + boff);
        iov[n].iov_len = r->body_len - boff;
        n++;
    }
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)n;
    ssize_t w;
    do
        w = sendmsg(k->fd, &mh, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (event_add(k->wev, NULL) != 0) {
                snprintf(r->msg, sizeof r->msg, "cannot watch upstream socket");
                fail_later(r, UPSTREAM_ERR_INTERNAL);
            }
            return;
        }
        send_failed(r, errno);
        return;
    }
    k->confirmed = 1;
    r->sent += (size_t)w;
    if (r->sent < total && event_add(k->wev, NULL) != 0) {
        snprintf(r->msg, sizeof r->msg, "cannot watch upstream socket");
        fail_later(r, UPSTREAM_ERR_INTERNAL);
    }
}

/* Gets r a connection: pooled, new, or a place in the host's queue. */
static void acquire(h1_req *r, int force_new)
{
    h1_client *c = r->c;
    h1_host *h = r->h;
    h1_conn *k = force_new ? NULL : pool_get(h);
    if (k) {
        k->req = r;
        r->k = k;
        r->state = R_CONN;
        send_now(r);
        return;
    }
    if (c->max_host > 0 && h->nconns >= (size_t)c->max_host) {
        r->state = R_WAIT;
        r->qnext = NULL;
        if (h->waitq_tail) h->waitq_tail->qnext = r; else h->waitq = r;
        h->waitq_tail = r;
        return;
    }
    r->state = R_CONN;
    if (resolve(r) != 0 || dial(r, 0) != 0) {
        if (!h->numeric)
            h->resolved_at = 0;
        fail_later(r, UPSTREAM_ERR_CONNECT);
        return;
    }
    if (r->k->state == C_BUSY)
        send_now(r);
}

/* Hands free slots and idle connections to queued requests, in order. */
static void dispatch_waiters(h1_host *h)
{
    if (h->dispatching || !h->waitq)
        return;
    h->dispatching = 1;
    while (h->waitq) {
        long max = h->waitq->c->max_host;
        if (!h->idle && max > 0 && h->nconns >= (size_t)max)
            break;
        h1_req *r = h->waitq;
        h->waitq = r->qnext;
        if (!h->waitq)
            h->waitq_tail = NULL;
        r->qnext = NULL;
        acquire(r, 0);
    }
    h->dispatching = 0;
}

/* ---- callbacks out ------------------------------------------------------- */

/* After a callback: 1 if the caller cancelled r meanwhile (r is released
 * here unless an outer frame still holds it). */
static int gone(h1_req *r)
{
    if (!r->cancelled)
        return 0;
    if (!r->busy)
        req_release(r);
    return 1;
}

static int fire_response(h1_req *r)
{
    if (!r->cb.on_response)
        return 0;
    r->busy++;
    r->cb.on_response(r->ud, to_pub(r), r->status);
    r->busy--;
    return gone(r);
}

static void fail_now(h1_req *r, upstream_result res)
{
    complete(r, res, r->msg);
}

/* 0 go on, 1 r is finished or gone. */
static int deliver(h1_req *r, const char *p, size_t n)
{
    if (r->max_resp && r->body_bytes + n > r->max_resp) {
        snprintf(r->msg, sizeof r->msg, "response larger than %zu bytes", r->max_resp);
        fail_now(r, UPSTREAM_ERR_TOO_LARGE);
        return 1;
    }
    r->body_bytes += n;
    if (!r->cb.on_data)
        return 0;
    r->busy++;
    int rc = r->cb.on_data(r->ud, to_pub(r), p, n);
    r->busy--;
    if (gone(r))
        return 1;
    if (rc == 1)
        r->paused = 1;
    return 0;
}

/* Ends r: pools or closes its connection first (so on_done may start the
 * next call on it), then on_done, then recycles r. */
static void complete(h1_req *r, upstream_result res, const char *msg)
{
    h1_client *c = r->c;
    event_del(r->tmr);
    event_del(r->kick);
    r->fail_pending = 0;
    if (r->state == R_WAIT)
        waitq_unlink(r);
    if (r->k) {
        h1_conn *k = r->k;
        r->k = NULL;
        int reuse = res == UPSTREAM_OK && r->keep && r->ps == P_DONE &&
                    r->sent == r->olen + r->body_len && r->rpos == r->rend;
        if (reuse)
            pool_put(k);
        else
            conn_drop(k, 1);
    }
    r->state = R_DONE;
    if (c->active)
        c->active--;
    if (r->cb.on_done) {
        r->busy++;
        r->cb.on_done(r->ud, to_pub(r), res, msg ? msg : "");
        r->busy--;
    }
    req_release(r);
}

/* ---- response parsing ---------------------------------------------------- */

static int bad(h1_req *r, const char *what)
{
    snprintf(r->msg, sizeof r->msg, "malformed response from upstream: %s", what);
    return -1;
}

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static int name_is(const char *n, size_t nl, const char *want)
{
    size_t wl = strlen(want);
    return nl == wl && strncasecmp(n, want, wl) == 0;
}

/* Whether a comma-separated list holds token tok. */
static int has_token(const char *v, size_t vl, const char *tok, int last_only)
{
    size_t tl = strlen(tok);
    const char *end = v + vl;
    int found = 0;
    while (v < end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *te = comma ? comma : end;
        const char *a = v, *b = te;
        while (a < b && (*a == ' ' || *a == '\t')) a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
        int match = (size_t)(b - a) == tl && strncasecmp(a, tok, tl) == 0;
        if (last_only)
            found = match;
        else if (match)
            return 1;
        v = comma ? comma + 1 : end;
    }
    return found;
}

static int parse_status(h1_req *r, const char *p, size_t n)
{
    /* "HTTP/1.x NNN[ reason]" */
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ' ||
        p[9] < '1' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (n > 12 && p[12] != ' '))
        return bad(r, "status line");
    r->minor = p[7] - '0';
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    r->hdr_len = r->nhdrs = 0;                   /* 1xx headers are dropped */
    r->nlines = 0;
    r->have_cl = r->te_present = r->te_chunked = r->conn_close = 0;
    r->ps = P_HEADER;
    return 0;
}

static int store_header(h1_req *r, const char *n, size_t nl, const char *v, size_t vl)
{
    size_t need = r->hdr_len + nl + 1 + vl + 1;
    if (grow((void **)&r->hdr_buf, &r->hdr_cap, need, 1, 1024) != 0 ||
        grow((void **)&r->hdrs, &r->hdrs_cap, r->nhdrs + 1, sizeof *r->hdrs, 16) != 0) {
        snprintf(r->msg, sizeof r->msg, "out of memory storing response headers");
        return -1;
    }
    hdr_ent *e = &r->hdrs[r->nhdrs++];
    e->name = (uint32_t)r->hdr_len;
    memcpy(r->hdr_buf + r->hdr_len, n, nl);
    r->hdr_buf[r->hdr_len + nl] = '\0';
    e->value = (uint32_t)(r->hdr_len + nl + 1);
    memcpy(r->hdr_buf + e->value, v, vl);
    r->hdr_buf[e->value + vl] = '\0';
    r->hdr_len = need;
    return 0;
}

static int parse_header(h1_req *r, const char *p, size_t n)
{
    if (++r->nlines > HDR_COUNT_MAX) {
        snprintf(r->msg, sizeof r->msg, "upstream sent too many response headers");
        return -1;
    }
    if (*p == ' ' || *p == '\t')
        return 0;                                /* obsolete line folding: ignored */
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return bad(r, "header line");
    size_t nl = (size_t)(colon - p);
    for (size_t i = 0; i < nl; i++)
        if ((unsigned char)p[i] <= 0x20 || p[i] == 0x7f)
            return bad(r, "header name");
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t vl = (size_t)(end - v);

    if (name_is(p, nl, "content-length")) {
        uint64_t cl = 0;
        if (!vl)
            return bad(r, "Content-Length");
        for (size_t i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9' || cl > (UINT64_MAX / 2 - 9) / 10)
                return bad(r, "Content-Length");
            cl = cl * 10 + (uint64_t)(v[i] - '0');
        }
        if (r->have_cl && r->cl != cl)
            return bad(r, "conflicting Content-Length");
        r->have_cl = 1;
        r->cl = cl;
    } else if (name_is(p, nl, "transfer-encoding")) {
        r->te_present = 1;
        r->te_chunked = has_token(v, vl, "chunked", 1);
    } else if (name_is(p, nl, "connection")) {
        if (has_token(v, vl, "close", 0))
            r->conn_close = 1;
    }
    return store_header(r, p, nl, v, vl);
}

/* End of a header block: 0 interim (1xx) skipped, 1 final. */
static int headers_end(h1_req *r)
{
    if (r->status < 200) {
        r->ps = P_STATUS;
        return 0;
    }
    r->keep = r->minor >= 1 && !r->conn_close;
    if (r->is_head || r->status == 204 || r->status == 304) {
        r->ps = P_DONE;
    } else if (r->te_present) {
        if (r->have_cl)
            r->keep = 0;                         /* both framings: don't trust the rest */
        if (r->te_chunked) {
            r->ps = P_CHUNK_SIZE;
            r->left = 0;
            r->chunk_digits = 0;
        } else {
            r->ps = P_BODY_CLOSE;
            r->keep = 0;
        }
    } else if (r->have_cl) {
        r->left = r->cl;
        r->ps = r->cl ? P_BODY_LEN : P_DONE;
    } else {
        r->ps = P_BODY_CLOSE;
        r->keep = 0;
    }
    return 1;
}

static void chunk_size_done(h1_req *r)
{
    r->chunk_digits = 0;
    if (r->left == 0) {
        r->ps = P_TRAILER;
        r->hdr_bytes = 0;
        r->nlines = 0;
    } else {
        r->ps = P_CHUNK_DATA;
    }
}

/* Body bytes at rpos join the region [*d0, *d1) delivered after this pass;
 * chunk framing between them is overwritten by moving the data down. */
static void take(h1_req *r, size_t *d0, size_t *d1, size_t n)
{
    if (*d0 == *d1)
        *d0 = *d1 = r->rpos;
    else if (*d1 != r->rpos)
        memmove(r->rbuf + *d1, r->rbuf + r->rpos, n);
    *d1 += n;
    r->rpos += n;
}

enum { PASS_MORE, PASS_DONE, PASS_ERR, PASS_GONE, PASS_PAUSED };

/* One pass over rbuf[rpos, rend). */
static int parse_pass(h1_req *r, size_t *d0, size_t *d1)
{
    while (r->rpos < r->rend) {
        char *p = r->rbuf + r->rpos;
        size_t avail = r->rend - r->rpos;
        switch (r->ps) {
        case P_STATUS:
        case P_HEADER:
        case P_TRAILER: {
            char *nl = memchr(p, '\n', avail);
            if (!nl) {
                if (r->hdr_bytes + avail > HDR_BYTES_MAX) {
                    snprintf(r->msg, sizeof r->msg, "upstream response header too large");
                    return PASS_ERR;
                }
                return PASS_MORE;
            }
            size_t len = (size_t)(nl - p) + 1;
            r->hdr_bytes += len;
            if (r->hdr_bytes > HDR_BYTES_MAX) {
                snprintf(r->msg, sizeof r->msg, "upstream response header too large");
                return PASS_ERR;
            }
            r->rpos += len;
            size_t ll = len - 1;
            if (ll && p[ll - 1] == '\r')
                ll--;
            if (r->ps == P_STATUS) {
                if (ll == 0)
                    break;                       /* stray CRLF before a status line */
                if (parse_status(r, p, ll) != 0)
                    return PASS_ERR;
            } else if (r->ps == P_TRAILER) {
                if (ll == 0) {
                    r->ps = P_DONE;
                    return PASS_DONE;
                }
                if (++r->nlines > HDR_COUNT_MAX) {
                    snprintf(r->msg, sizeof r->msg, "upstream sent too many trailers");
                    return PASS_ERR;
                }
            } else if (ll) {
                if (parse_header(r, p, ll) != 0)
                    return PASS_ERR;
            } else if (headers_end(r)) {
                if (fire_response(r))
                    return PASS_GONE;
                if (r->ps == P_DONE)
                    return PASS_DONE;
                if (r->paused)
                    return PASS_PAUSED;
            }
            break;
        }
        case P_BODY_LEN: {
            size_t n = r->left < avail ? (size_t)r->left : avail;
            take(r, d0, d1, n);
            r->left -= n;
            if (!r->left) {
                r->ps = P_DONE;
                return PASS_DONE;
            }
            break;
        }
        case P_BODY_CLOSE:
            take(r, d0, d1, avail);
            break;
        case P_CHUNK_SIZE: {
            int v = hexval((unsigned char)*p);
            if (v >= 0) {
                if (r->left >> 56) {
                    snprintf(r->msg, sizeof r->msg, "malformed response from upstream: chunk size too large");
                    return PASS_ERR;
                }
                r->left = r->left * 16 + (uint64_t)v;
                r->chunk_digits = 1;
                r->rpos++;
            } else if (!r->chunk_digits || !*p || !strchr("; \t\r\n", *p)) {
                bad(r, "chunk size");   /* no digits yet, or a byte that cannot follow them */
                return PASS_ERR;
            } else if (*p == '\r') {
                r->ps = P_CHUNK_LF;
                r->rpos++;
            } else if (*p == '\n') {
                r->rpos++;
                chunk_size_done(r);
            } else {                    /* ';', ' ' or '\t': an extension follows */
                r->ps = P_CHUNK_EXT;
                r->chunk_ext = 0;
                r->rpos++;
            }
            break;
        }
        case P_CHUNK_EXT: {
            char *nl = memchr(p, '\n', avail);
            size_t n = nl ? (size_t)(nl - p) + 1 : avail;
            r->chunk_ext += n;
            if (r->chunk_ext > CHUNK_EXT_MAX) {
                bad(r, "chunk extension too long");
                return PASS_ERR;
            }
            r->rpos += n;
            if (nl)
                chunk_size_done(r);
            break;
        }
        case P_CHUNK_LF:
            if (*p != '\n') {
                bad(r, "chunk size line");
                return PASS_ERR;
            }
            r->rpos++;
            chunk_size_done(r);
            break;
        case P_CHUNK_DATA: {
            size_t n = r->left < avail ? (size_t)r->left : avail;
            take(r, d0, d1, n);
            r->left -= n;
            if (!r->left)
                r->ps = P_CHUNK_DATA_CR;
            break;
        }
        case P_CHUNK_DATA_CR:
        case P_CHUNK_DATA_LF:
            if (*p == '\r' && r->ps == P_CHUNK_DATA_CR) {
                r->ps = P_CHUNK_DATA_LF;
            } else if (*p == '\n') {
                r->ps = P_CHUNK_SIZE;
                r->left = 0;
            } else {
                bad(r, "chunk not followed by CRLF");
                return PASS_ERR;
            }
            r->rpos++;
            break;
        case P_DONE:
            return PASS_DONE;
        }
    }
    return PASS_MORE;
}

/* Parses and delivers what rbuf holds.  0: wants more bytes or is paused;
 * 1: r is finished or gone (touch neither r nor its connection). */
static int process(h1_req *r)
{
    while (!r->paused) {
        size_t d0 = r->rpos, d1 = r->rpos;
        int st = parse_pass(r, &d0, &d1);
        if (st == PASS_GONE)
            return 1;
        if (st == PASS_ERR) {
            fail_now(r, UPSTREAM_ERR_IO);
            return 1;
        }
        if (d1 > d0 && deliver(r, r->rbuf + d0, d1 - d0))
            return 1;
        if (st == PASS_DONE) {
            complete(r, UPSTREAM_OK, "");
            return 1;
        }
        if (st == PASS_MORE) {
            if (r->rpos == r->rend)
                r->rpos = r->rend = 0;
            return 0;
        }
        /* PASS_PAUSED: go round; stops while paused */
    }
    return 0;
}

/* ---- events -------------------------------------------------------------- */

static void on_eof(h1_req *r)
{
    if (r->ps == P_BODY_CLOSE) {
        r->ps = P_DONE;
        complete(r, UPSTREAM_OK, "");
        return;
    }
    if (!r->got_byte && r->k->reused && !r->retried) {
        retry(r);
        return;
    }
    snprintf(r->msg, sizeof r->msg, r->got_byte ? "upstream closed the connection mid-response"
                                                : "upstream closed the connection without a response");
    fail_now(r, UPSTREAM_ERR_IO);
}

/* Room for the next recv; -1 if a header line would not fit. */
static int make_room(h1_req *r)
{
    if (r->rpos == r->rend)
        r->rpos = r->rend = 0;
    if (r->rcap - r->rend >= RBUF_INIT / 4)
        return 0;
    if (r->rpos > 0) {
        memmove(r->rbuf, r->rbuf + r->rpos, r->rend - r->rpos);
        r->rend -= r->rpos;
        r->rpos = 0;
        if (r->rcap - r->rend >= RBUF_INIT / 4)
            return 0;
    }
    if (r->rcap >= RBUF_MAX)
        return r->rend < r->rcap ? 0 : -1;
    return grow((void **)&r->rbuf, &r->rcap, r->rcap * 2, 1, RBUF_INIT);
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    evloop_note_traffic();
    h1_conn *k = arg;
    h1_req *r = k->req;
    (void)what;
    if (!r) {
        /* Idle in the pool: EOF, an error or unsolicited bytes.  Either
         * way this connection cannot carry another request. */
        conn_drop(k, 1);
        return;
    }
    if (k->state == C_CONNECTING)
        return;                                  /* the write event reports the outcome */
    if (r->paused) {
        event_del(k->rev);                       /* lazily, on the first read while paused */
        k->rev_on = 0;
        return;
    }
    for (int i = 0; i < READS_PER_WAKE; i++) {
        if (make_room(r) != 0) {
            snprintf(r->msg, sizeof r->msg, "upstream response header too large");
            fail_now(r, UPSTREAM_ERR_IO);
            return;
        }
        size_t room = r->rcap - r->rend;
        ssize_t n = recv(fd, r->rbuf + r->rend, room, 0);
        if (n > 0) {
            r->rend += (size_t)n;
            r->last_rx = now_us();
            if (!r->got_byte) {
                r->got_byte = 1;
                arm_earlier(r, r->last_rx + (int64_t)r->idle_ms * 1000);
            }
            if (process(r))
                return;
            if ((size_t)n < room || r->paused)
                return;                          /* drained: the next readiness says when */
            continue;
        }
        if (n == 0) {
            on_eof(r);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        int err = errno;
        if (!r->got_byte && k->reused && !r->retried) {
            retry(r);
            return;
        }
        snprintf(r->msg, sizeof r->msg, "reading from upstream failed: %s", strerror(err));
        fail_now(r, UPSTREAM_ERR_IO);
        return;
    }
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    evloop_note_traffic();
    h1_conn *k = arg;
    (void)fd; (void)what;
    if (!k->req)
        return;
    if (k->state == C_CONNECTING)
        k->state = C_BUSY;                       /* the send below tells whether it worked */
    send_now(k->req);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    h1_req *r = arg;
    (void)fd; (void)what;
    int64_t now = now_us();
    r->armed = INT64_MAX;
    int connecting = r->k && r->k->state == C_CONNECTING;
    upstream_result res;
    if (connecting && (now >= r->t_conn || now >= r->t_total)) {
        res = UPSTREAM_ERR_TIMEOUT_CONNECT;
        snprintf(r->msg, sizeof r->msg, "connect to %s port %s timed out after %ld ms", r->h->name,
                 r->h->port_str, now >= r->t_conn ? r->connect_ms : r->total_ms);
    } else if (now >= r->t_total) {
        res = UPSTREAM_ERR_TIMEOUT_TOTAL;
        snprintf(r->msg, sizeof r->msg, "upstream call took longer than %ld ms", r->total_ms);
    } else if (!r->got_byte && now >= r->t_fb) {
        res = UPSTREAM_ERR_TIMEOUT_FIRST_BYTE;
        snprintf(r->msg, sizeof r->msg, "no response from upstream within %ld ms", r->first_byte_ms);
    } else if (r->got_byte && !r->paused && now >= r->last_rx + (int64_t)r->idle_ms * 1000) {
        res = UPSTREAM_ERR_TIMEOUT_IDLE;
        snprintf(r->msg, sizeof r->msg, "upstream sent nothing for %ld ms", r->idle_ms);
    } else {
        arm_at(r, next_deadline(r), now);
        return;
    }
    fail_now(r, res);
}

/* Deferred failures, and the resume path: parse what was held back, then
 * read the socket again. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    h1_req *r = arg;
    (void)fd; (void)what;
    if (r->fail_pending) {
        r->fail_pending = 0;
        complete(r, r->fail_res, r->msg);
        return;
    }
    if (r->state != R_CONN || r->paused || r->cancelled || !r->k)
        return;
    h1_conn *k = r->k;
    if (process(r))
        return;
    if (!r->paused && !k->rev_on) {
        if (event_add(k->rev, NULL) != 0) {
            snprintf(r->msg, sizeof r->msg, "cannot watch upstream socket");
            fail_now(r, UPSTREAM_ERR_INTERNAL);
            return;
        }
        k->rev_on = 1;
    }
}

/* ---- request head -------------------------------------------------------- */

static size_t line_len(const char *h)
{
    return strcspn(h, "\r\n");                   /* a CR or LF would inject headers */
}

static int hdr_named(const char *h, size_t len, const char *name, size_t nl)
{
    return len > nl && h[nl] == ':' && strncasecmp(h, name, nl) == 0;
}


/* curl semantics for "Name:" with nothing after it: send nothing. */
static int hdr_empty(const char *h, size_t len)
{
    const char *colon = memchr(h, ':', len);
    if (!colon)
        return 0;
    for (const char *p = colon + 1; p < h + len; p++)
        if (*p != ' ' && *p != '\t')
            return 0;
    return 1;
}

/* Every header line's sendable length, found once (0: skipped: empty, or
 * "Name:" with nothing after it). Past the first HEAD_SCAN lines, the
 * second pass measures again. */
#define HEAD_SCAN 32

static size_t sendable_len(const char *h)
{
    size_t l = line_len(h);
    return l && !hdr_empty(h, l) ? l : 0;
}

static char *put(char *o, const char *s, size_t n)
{
    memcpy(o, s, n);
    return o + n;
}

static int build_head(h1_req *r, const char *method, const url_parts *u, const upstream_request *req)
{
    size_t ml = strlen(method);
    int own_host = 1, own_cl = 1;
    size_t need = ml + 1 + 1 + u->path_len + 11 + 2;
    size_t lens[HEAD_SCAN], nh = 0;
    for (const char *const *hp = req->headers; hp && *hp; hp++, nh++) {
        size_t l = line_len(*hp);
        size_t send = l && !hdr_empty(*hp, l) ? l : 0;
        if (nh < HEAD_SCAN) lens[nh] = send;
        if (!l)
            continue;
        char c0 = (char)(**hp | 0x20);   /* only names starting like these two need the compare */
        if (c0 == 'h' && hdr_named(*hp, l, "Host", 4)) own_host = 0;
        if (c0 == 'c' && hdr_named(*hp, l, "Content-Length", 14)) own_cl = 0;
        need += send ? send + 2 : 0;
    }
    int send_cl = own_cl && (req->body || strcmp(method, "POST") == 0);
    if (own_host)
        need += r->h->host_line_len;
    if (send_cl)
        need += 16 + 20 + 2;
    if (grow((void **)&r->obuf, &r->ocap, need, 1, 1024) != 0)
        return -1;
    char *o = r->obuf;
    o = put(o, method, ml);
    *o++ = ' ';
    if (!u->path_len || u->path[0] != '/')
        *o++ = '/';                              /* "http://h" or "http://h?q" */
    o = put(o, u->path, u->path_len);
    o = put(o, " HTTP/1.1\r\n", 11);
    if (own_host)
        o = put(o, r->h->host_line, r->h->host_line_len);
    nh = 0;
    for (const char *const *hp = req->headers; hp && *hp; hp++, nh++) {
        size_t l = nh < HEAD_SCAN ? lens[nh] : sendable_len(*hp);
        if (!l)
            continue;
        o = put(o, *hp, l);
        o = put(o, "\r\n", 2);
    }
    if (send_cl) {
        char num[24];
        size_t v = req->body ? req->body_len : 0, i = sizeof num;
        do {
            num[--i] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        o = put(o, "Content-Length: ", 16);
        o = put(o, num + i, sizeof num - i);
        o = put(o, "\r\n", 2);
    }
    o = put(o, "\r\n", 2);
    r->olen = (size_t)(o - r->obuf);
    return 0;
}

static int method_ok(const char *m)
{
    if (!*m)
        return 0;
    for (; *m; m++)
        if ((unsigned char)*m <= 0x20 || (unsigned char)*m >= 0x7f)
            return 0;
    return 1;
}

/* ---- public (to upstream.c) ---------------------------------------------- */

h1_client *h1_new(struct event_base *base, long max_host_connections)
{
    if (!base)
        return NULL;
    h1_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    c->max_host = max_host_connections;
    return c;
}

void h1_free(h1_client *c)
{
    if (!c)
        return;
    while (c->live) {
        h1_req *r = c->live;
        r->cancelled = 1;
        if (r->state == R_WAIT)
            waitq_unlink(r);
        if (r->k) {
            h1_conn *k = r->k;
            r->k = NULL;
            conn_drop(k, 0);
        }
        r->busy = 0;
        req_release(r);
    }
    while (c->hosts) {
        h1_host *h = c->hosts;
        c->hosts = h->next;
        while (h->idle)
            conn_drop(h->idle, 0);
        host_destroy(h);
    }
    while (c->free_reqs) {
        h1_req *r = c->free_reqs;
        c->free_reqs = r->qnext;
        req_destroy(r);
    }
    while (c->free_conns) {
        h1_conn *k = c->free_conns;
        c->free_conns = k->next;
        conn_destroy(k);
    }
    free(c);
}

int h1_start(h1_client *c, const upstream_request *req, const upstream_callbacks *cb,
             void *ud, upstream_req_t **out)
{
    url_parts u;
    const char *method = req->method ? req->method : "GET";
    if (parse_url(req->url, &u) != 0 || !method_ok(method))
        return 1;
    h1_host *h = host_get(c, &u);
    if (!h)
        return -1;
    h1_req *r = req_get(c);
    if (!r)
        return -1;
    r->h = h;
    h->refs++;
    if (build_head(r, method, &u, req) != 0) {
        req_release(r);
        return -1;
    }
    r->cb = *cb;
    r->ud = ud;
    r->busy = 0;
    r->cancelled = r->paused = r->got_byte = r->retried = r->fail_pending = 0;
    r->is_head = strcmp(method, "HEAD") == 0;
    r->body = req->body;
    r->body_len = req->body ? req->body_len : 0;
    r->sent = 0;
    r->body_bytes = 0;
    r->max_resp = req->max_response_bytes;
    r->msg[0] = '\0';
    reset_response(r);

    const upstream_timeouts *t = &req->timeouts;
    r->connect_ms = t->connect_ms > 0 ? t->connect_ms : DEF_CONNECT_MS;
    r->first_byte_ms = t->first_byte_ms > 0 ? t->first_byte_ms : DEF_FIRST_BYTE_MS;
    r->idle_ms = t->idle_ms > 0 ? t->idle_ms : DEF_IDLE_MS;
    r->total_ms = t->total_ms > 0 ? t->total_ms : DEF_TOTAL_MS;
    int64_t now = now_us();
    r->t_fb = now + (int64_t)r->first_byte_ms * 1000;
    r->t_total = now + (int64_t)r->total_ms * 1000;
    r->t_conn = INT64_MAX;
    r->last_rx = now;
    r->k = NULL;
    arm_at(r, r->t_fb < r->t_total ? r->t_fb : r->t_total, now);

    r->state = R_CONN;
    r->prev = NULL;
    r->next = c->live;
    if (c->live) c->live->prev = r;
    c->live = r;
    c->active++;
    acquire(r, 0);
    *out = to_pub(r);
    return 0;
}

const char *h1_header(const upstream_req_t *pub, const char *name)
{
    const h1_req *r = from_pub(pub);
    for (size_t i = 0; i < r->nhdrs; i++)
        if (strcasecmp(r->hdr_buf + r->hdrs[i].name, name) == 0)
            return r->hdr_buf + r->hdrs[i].value;
    return NULL;
}

int h1_status(const upstream_req_t *pub)
{
    return from_pub(pub)->status;
}

void h1_pause(upstream_req_t *pub)
{
    h1_req *r = from_pub(pub);
    if (r->cancelled || r->state == R_DONE || r->state == R_FREE)
        return;
    r->paused = 1;                               /* the read event goes off lazily */
}

void h1_resume(upstream_req_t *pub)
{
    h1_req *r = from_pub(pub);
    if (r->cancelled || r->state == R_DONE || r->state == R_FREE || !r->paused)
        return;
    r->paused = 0;
    if (r->got_byte) {
        r->last_rx = now_us();                   /* time paused is not idle time */
        arm_earlier(r, r->last_rx + (int64_t)r->idle_ms * 1000);
    }
    event_active(r->kick, EV_TIMEOUT, 1);
}

void h1_cancel(upstream_req_t *pub)
{
    h1_req *r = from_pub(pub);
    if (r->cancelled || r->state == R_DONE || r->state == R_FREE)
        return;
    h1_client *c = r->c;
    r->cancelled = 1;
    r->fail_pending = 0;
    if (c->active)
        c->active--;
    event_del(r->tmr);
    event_del(r->kick);
    if (r->state == R_WAIT)
        waitq_unlink(r);
    r->state = R_DONE;
    if (r->k) {
        h1_conn *k = r->k;                       /* may hold unread bytes: never pooled */
        r->k = NULL;
        conn_drop(k, 1);
    }
    if (!r->busy)
        req_release(r);                          /* else the frame in the callback does */
}

size_t h1_active(const h1_client *c)
{
    return c ? c->active : 0;
}

void h1_get_stats(const h1_client *c, h1_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    out->conns = c->nconns;
    out->idle = c->nidle;
    out->connects = c->connects;
    out->retries = c->retries;
}
