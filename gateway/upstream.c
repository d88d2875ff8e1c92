/* upstream: libcurl multi driven by a libevent base.
 *
 * Threading: everything here runs on the worker thread that owns the base.
 *
 * Delivery model (exactly once): the write callback always consumes what
 * curl hands it and never returns CURL_WRITEFUNC_PAUSE, so curl never
 * redelivers bytes the caller has already seen.  When the caller pauses
 * (on_data returns 1 or upstream_pause()), further bytes curl still pushes
 * at us go into a per-request pending buffer and we ask curl to stop reading
 * the socket with curl_easy_pause(CURLPAUSE_RECV).  upstream_resume() only
 * schedules a per-request "kick" event; the kick delivers the pending bytes
 * and then unpauses curl outside of any curl callback.
 *
 * Ownership: a request that is cancelled while a curl call or one of its own
 * user callbacks is on the stack is parked on a reap list and released from
 * a zero-delay event, never from inside curl.
 *
 * For callers: on_response fires once the final header block is complete
 * (so before any body byte); errmsg is "" on success, never NULL; time spent
 * paused counts toward total_ms but not idle_ms; upstream_free must not be
 * called from inside a callback.
 */
#include "upstream.h"
#include "upstream_h1.h"
#include "evloop.h"
#include "log.h"
#include "monoclock.h"

#include <curl/curl.h>
#include <event2/event.h>

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEF_CONNECT_MS      10000L
#define DEF_FIRST_BYTE_MS   600000L
#define DEF_IDLE_MS         300000L
#define DEF_TOTAL_MS        900000L
#define MAX_CONNECTS        256L
#define FREE_LIST_MAX       64
#define HDR_STORE_MAX       (256u * 1024u)   /* response header bytes we keep */

enum rstate {
    RS_IDLE = 0,     /* on the free list */
    RS_QUEUED,       /* started from inside curl; waiting to be added */
    RS_RUNNING,      /* in the multi handle */
    RS_DRAINING,     /* transfer finished; pending bytes still owed to caller */
    RS_FINISHED      /* on_done called or cancelled; waiting for release */
};

typedef struct hdr_ent {
    uint32_t name;   /* offsets into hdr_buf, both NUL-terminated */
    uint32_t value;
} hdr_ent;

struct upstream_req {
    int kind;                       /* UPREQ_CURL: first, see upstream_h1.h */
    upstream_t *u;
    CURL *easy;
    struct curl_slist *req_hdrs;
    upstream_callbacks cb;
    void *ud;
    enum rstate state;

    struct event *first_byte_ev;
    struct event *idle_ev;
    struct event *kick_ev;
    long idle_ms;
    long first_byte_ms;
    int64_t last_rx_ms;

    size_t max_resp;
    size_t body_bytes;
    int status;

    unsigned in_multi : 1;
    unsigned cancelled : 1;
    unsigned got_byte : 1;
    unsigned headers_done : 1;
    unsigned resp_fired : 1;
    unsigned user_paused : 1;
    unsigned curl_paused : 1;
    unsigned on_reap : 1;
    unsigned on_addq : 1;
    int busy;                       /* our frames that reference this request */
    upstream_result err;            /* our own failure (e.g. TOO_LARGE) */
    upstream_result final_res;      /* held while draining */

    /* response headers */
    char *hdr_buf;
    size_t hdr_len, hdr_cap;
    hdr_ent *hdrs;
    size_t nhdrs, hdrs_cap;

    /* bytes received while the caller is paused */
    char *pend;
    size_t pend_len, pend_cap;

    char errbuf[CURL_ERROR_SIZE];   /* curl's own words (CURLOPT_ERRORBUFFER) */
    char msg[CURL_ERROR_SIZE];      /* what on_done gets; curl may overwrite errbuf */

    upstream_req_t *prev, *next;    /* u->live list */
    upstream_req_t *link;           /* free list / reap list / add queue */
};

typedef struct usock {
    struct event *ev;
    short kind;
    upstream_t *u;
    struct usock *prev, *next;
} usock;

struct upstream {
    struct event_base *base;
    CURLM *multi;
    CURLSH *share;
    struct event *timer_ev;         /* curl's single timeout */
    struct event *post_ev;          /* deferred reaps and adds */
    upstream_opts opts;
    char *ca_file;
    int no_proxy_env;               /* no *_proxy variable set: skip curl's per-request getenv */
    h1_client *h1;                  /* plain http:// without a proxy goes here, not to curl */

    int in_curl;                    /* depth of curl calls that may call back */
    size_t active;

    upstream_req_t *live;
    upstream_req_t *free_list;
    int nfree;
    upstream_req_t *reap;
    upstream_req_t *addq, *addq_tail;
    usock *socks;
};

static void drive(upstream_t *u, curl_socket_t fd, int flags);
static void release(upstream_req_t *r);

const char *upstream_result_name(upstream_result r)
{
    switch (r) {
    case UPSTREAM_OK:                     return "ok";
    case UPSTREAM_ERR_CONNECT:            return "connect";
    case UPSTREAM_ERR_TLS:                return "tls";
    case UPSTREAM_ERR_TIMEOUT_CONNECT:    return "timeout_connect";
    case UPSTREAM_ERR_TIMEOUT_FIRST_BYTE: return "timeout_first_byte";
    case UPSTREAM_ERR_TIMEOUT_IDLE:       return "timeout_idle";
    case UPSTREAM_ERR_TIMEOUT_TOTAL:      return "timeout_total";
    case UPSTREAM_ERR_IO:                 return "io";
    case UPSTREAM_ERR_TOO_LARGE:          return "too_large";
    case UPSTREAM_ERR_INTERNAL:           return "internal";
    }
    return "unknown";
}

static int arm_ms(struct event *ev, long ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
    return event_add(ev, &tv);
}

static void stop_timers(upstream_req_t *r)
{
    event_del(r->first_byte_ev);
    event_del(r->idle_ev);
    event_del(r->kick_ev);
}

/* ---- socket and timer glue ------------------------------------------- */

static void sock_event_cb(evutil_socket_t fd, short what, void *arg)
{
    evloop_note_traffic();
    usock *s = arg;
    int flags = 0;
    if (what & EV_READ)  flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE) flags |= CURL_CSELECT_OUT;
    drive(s->u, fd, flags);
}

static void usock_free(upstream_t *u, usock *s)
{
    event_free(s->ev);
    if (s->prev) s->prev->next = s->next; else u->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    free(s);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    upstream_t *u = userp;
    usock *s = socketp;
    (void)e;

    if (what == CURL_POLL_REMOVE) {
        if (s)
            usock_free(u, s);   /* curl forgets socketp on REMOVE */
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->u = u;
        s->ev = event_new(u->base, fd, 0, sock_event_cb, s);
        if (!s->ev) {
            free(s);
            return -1;
        }
        if (curl_multi_assign(u->multi, fd, s) != CURLM_OK) {
            event_free(s->ev);
            free(s);
            return -1;
        }
        s->next = u->socks;
        if (u->socks) u->socks->prev = s;
        u->socks = s;
    }
    short kind = 0;
    if (what & CURL_POLL_IN)  kind |= EV_READ;
    if (what & CURL_POLL_OUT) kind |= EV_WRITE;
    if (kind == s->kind && event_pending(s->ev, EV_READ | EV_WRITE, NULL))
        return 0;
    event_del(s->ev);
    s->kind = kind;
    if (!kind)
        return 0;
    if (event_assign(s->ev, u->base, fd, (short)(kind | EV_PERSIST), sock_event_cb, s) != 0 ||
        event_add(s->ev, NULL) != 0)
        return -1;
    return 0;
}

/* curl wants socket_action(CURL_SOCKET_TIMEOUT) after timeout_ms; never
 * call it from here, just (re)arm the event. */
static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    upstream_t *u = userp;
    (void)m;
    if (timeout_ms < 0) {
        event_del(u->timer_ev);
        return 0;
    }
    if (timeout_ms == 0) {
        /* "now": run in this loop pass instead of after another epoll_wait */
        event_del(u->timer_ev);
        event_active(u->timer_ev, EV_TIMEOUT, 1);
        return 0;
    }
    return arm_ms(u->timer_ev, timeout_ms) == 0 ? 0 : -1;
}

static void timer_event_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd; (void)what;
    drive(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* ---- request bookkeeping ------------------------------------------------ */

static void defer_post(upstream_t *u)
{
    event_active(u->post_ev, EV_TIMEOUT, 1);
}

/* Call after any user callback: 1 if the caller cancelled r meanwhile. */
static int gone(const upstream_req_t *r) { return r->cancelled; }

static void fire_response(upstream_req_t *r)
{
    if (r->resp_fired)
        return;
    r->resp_fired = 1;
    if (r->status == 0) {
        long code = 0;
        if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK)
            r->status = (int)code;
    }
    if (r->cb.on_response) {
        r->busy++;
        r->cb.on_response(r->ud, r, r->status);
        r->busy--;
    }
}

static void set_user_paused(upstream_req_t *r)
{
    if (r->user_paused)
        return;
    r->user_paused = 1;
    event_del(r->idle_ev);   /* a paused caller is not an idle upstream */
}

/* Hands bytes to the caller: -1 cancelled meanwhile, 1 caller paused, 0 go on. */
static int deliver(upstream_req_t *r, const char *p, size_t n)
{
    int rc = 0;
    if (r->cb.on_data && n) {
        r->busy++;
        rc = r->cb.on_data(r->ud, r, p, n);
        r->busy--;
    }
    if (gone(r))
        return -1;
    if (rc == 1)
        set_user_paused(r);
    return r->user_paused ? 1 : 0;
}

/* Takes r's easy handle out of the multi.  Outside curl callbacks only.
 * forbid_reuse: the connection may hold unread response bytes, so it must
 * be closed rather than pooled (curl also closes on premature removal). */
static void detach(upstream_req_t *r, int forbid_reuse)
{
    if (!r->in_multi)
        return;
    if (forbid_reuse && curl_easy_setopt(r->easy, CURLOPT_FORBID_REUSE, 1L) != CURLE_OK)
        log_warn("upstream: cannot set FORBID_REUSE");
    CURLMcode mc = curl_multi_remove_handle(r->u->multi, r->easy);
    if (mc != CURLM_OK)
        log_warn("upstream: curl_multi_remove_handle: %s", curl_multi_strerror(mc));
    r->in_multi = 0;
    r->curl_paused = 0;
}

/* Runs on_done (unless cancelled) and releases r.  Outside curl only. */
static void complete(upstream_req_t *r, upstream_result res, const char *msg)
{
    upstream_t *u = r->u;
    stop_timers(r);
    r->state = RS_FINISHED;
    if (u->active) u->active--;
    if (r->cb.on_done) {
        r->busy++;
        r->cb.on_done(r->ud, r, res, msg ? msg : "");
        r->busy--;
    }
    release(r);
}

/* Aborts a transfer from outside curl (our own timers). */
static void fail_now(upstream_req_t *r, upstream_result res, const char *msg)
{
    detach(r, 1);
    complete(r, res, msg);
}

static void mark_rx(upstream_req_t *r)
{
    r->last_rx_ms = mono_ms();
    if (!r->got_byte) {
        r->got_byte = 1;
        event_del(r->first_byte_ev);
        if (!r->user_paused)
            (void)arm_ms(r->idle_ev, r->idle_ms);
    }
}

static void first_byte_cb(evutil_socket_t fd, short what, void *arg)
{
    upstream_req_t *r = arg;
    (void)fd; (void)what;
    if (r->state != RS_RUNNING && r->state != RS_QUEUED)
        return;
    snprintf(r->msg, sizeof r->msg, "no response from upstream within %ld ms",
             r->first_byte_ms);
    fail_now(r, UPSTREAM_ERR_TIMEOUT_FIRST_BYTE, r->msg);
}

/* Re-armed lazily: mark_rx only stamps the time, this decides. */
static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    upstream_req_t *r = arg;
    (void)fd; (void)what;
    if (r->state != RS_RUNNING || r->user_paused)
        return;
    int64_t quiet = mono_ms() - r->last_rx_ms;
    if (quiet < r->idle_ms) {
        if (arm_ms(r->idle_ev, (long)(r->idle_ms - quiet)) == 0)
            return;
    }
    snprintf(r->msg, sizeof r->msg, "upstream sent nothing for %ld ms", r->idle_ms);
    fail_now(r, UPSTREAM_ERR_TIMEOUT_IDLE, r->msg);
}

static void unpause_curl(upstream_req_t *r)
{
    upstream_t *u = r->u;
    if (!r->curl_paused || !r->in_multi)
        return;
    r->curl_paused = 0;
    u->in_curl++;
    /* May run write_cb synchronously; it copes with a re-pause. */
    CURLcode cc = curl_easy_pause(r->easy, CURLPAUSE_CONT);
    u->in_curl--;
    if (cc != CURLE_OK && !gone(r) && r->state == RS_RUNNING) {
        /* write_cb refused bytes (too large) or curl failed: end it now. */
        upstream_result res = r->err ? r->err : UPSTREAM_ERR_INTERNAL;
        if (!r->err)
            snprintf(r->msg, sizeof r->msg, "resume failed: %s", curl_easy_strerror(cc));
        fail_now(r, res, r->msg);
    }
}

/* Resume path: pending bytes first, then let curl read again. */
static void kick_cb(evutil_socket_t fd, short what, void *arg)
{
    upstream_req_t *r = arg;
    upstream_t *u = r->u;
    (void)fd; (void)what;
    if (gone(r) || r->user_paused)
        return;
    if (r->pend_len) {
        size_t n = r->pend_len;
        r->pend_len = 0;     /* nothing can append while we are outside curl */
        if (deliver(r, r->pend, n) != 0)
            return;          /* paused again or cancelled */
    }
    if (r->state == RS_DRAINING) {
        complete(r, r->final_res, r->msg);
        return;
    }
    if (r->state != RS_RUNNING)
        return;
    if (r->got_byte && !event_pending(r->idle_ev, EV_TIMEOUT, NULL)) {
        r->last_rx_ms = mono_ms();
        (void)arm_ms(r->idle_ev, r->idle_ms);
    }
    if (r->curl_paused) {
        unpause_curl(r);
        /* Do not touch r below: drive may complete and release it. */
        drive(u, CURL_SOCKET_TIMEOUT, 0);
    }
}

/* ---- curl callbacks ----------------------------------------------------- */

static int store_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static void hdr_add(upstream_req_t *r, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon || colon == line)
        return;                      /* folded or malformed line: ignored */
    size_t nlen = (size_t)(colon - line);
    while (nlen && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
        nlen--;
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    size_t need = r->hdr_len + nlen + 1 + vlen + 1;
    if (need > HDR_STORE_MAX)
        return;
    if (store_grow((void **)&r->hdr_buf, &r->hdr_cap, need, 1) != 0 ||
        store_grow((void **)&r->hdrs, &r->hdrs_cap, r->nhdrs + 1, sizeof *r->hdrs) != 0)
        return;                      /* lookup misses it; the body still flows */
    hdr_ent *h = &r->hdrs[r->nhdrs++];
    h->name = (uint32_t)r->hdr_len;
    memcpy(r->hdr_buf + r->hdr_len, line, nlen);
    r->hdr_buf[r->hdr_len + nlen] = '\0';
    h->value = (uint32_t)(r->hdr_len + nlen + 1);
    memcpy(r->hdr_buf + h->value, v, vlen);
    r->hdr_buf[h->value + vlen] = '\0';
    r->hdr_len = need;
}

static size_t header_cb(char *buf, size_t size, size_t nmemb, void *ud)
{
    upstream_req_t *r = ud;
    size_t len = size * nmemb;
    if (gone(r))
        return 0;                    /* abort: cancel is reaped after curl returns */
    mark_rx(r);
    if (r->headers_done)
        return len;                  /* trailers: keep the store stable */
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* New status line (1xx, or the final one): start over. */
        r->hdr_len = 0;
        r->nhdrs = 0;
        r->status = 0;
        const char *p = memchr(buf, ' ', len);
        if (p) {
            int code = 0, digits = 0;
            for (p++; p < buf + len && isdigit((unsigned char)*p) && digits < 3; p++, digits++)
                code = code * 10 + (*p - '0');
            if (digits == 3)
                r->status = code;
        }
        return len;
    }
    if (buf[0] == '\r' || buf[0] == '\n') {
        if (r->status >= 200 || r->status == 0) {
            r->headers_done = 1;
            fire_response(r);
            if (gone(r))
                return 0;
        }
        return len;
    }
    hdr_add(r, buf, len);
    return len;
}

static void pause_curl(upstream_req_t *r)
{
    /* Legal from inside this handle's own write callback. */
    if (!r->curl_paused && curl_easy_pause(r->easy, CURLPAUSE_RECV) == CURLE_OK)
        r->curl_paused = 1;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *ud)
{
    upstream_req_t *r = ud;
    size_t n = size * nmemb;
    if (gone(r))
        return 0;
    mark_rx(r);
    if (!r->resp_fired) {
        r->headers_done = 1;
        fire_response(r);
        if (gone(r))
            return 0;
    }
    r->body_bytes += n;
    if (r->max_resp && r->body_bytes > r->max_resp) {
        r->err = UPSTREAM_ERR_TOO_LARGE;
        snprintf(r->msg, sizeof r->msg, "response larger than %zu bytes", r->max_resp);
        return 0;
    }
    if (r->user_paused || r->pend_len) {
        /* Caller is paused: keep the bytes ourselves, never make curl redeliver. */
        if (store_grow((void **)&r->pend, &r->pend_cap, r->pend_len + n, 1) != 0) {
            r->err = UPSTREAM_ERR_INTERNAL;
            snprintf(r->msg, sizeof r->msg, "out of memory buffering response");
            return 0;
        }
        memcpy(r->pend + r->pend_len, p, n);
        r->pend_len += n;
        pause_curl(r);
        return n;
    }
    int rc = deliver(r, p, n);
    if (rc < 0)
        return 0;
    if (rc == 1)
        pause_curl(r);
    return n;
}

/* ---- completion --------------------------------------------------------- */

static upstream_result map_curl(upstream_req_t *r, CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return UPSTREAM_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return UPSTREAM_ERR_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: {
        curl_off_t pre = 0;
        if (r->got_byte)
            return UPSTREAM_ERR_TIMEOUT_TOTAL;
        /* pretransfer is stamped once TCP (and TLS) are up */
        if (curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) != CURLE_OK || pre == 0)
            return UPSTREAM_ERR_TIMEOUT_CONNECT;
        return UPSTREAM_ERR_TIMEOUT_TOTAL;
    }
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_USE_SSL_FAILED:
        return UPSTREAM_ERR_TLS;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return UPSTREAM_ERR_IO;
    default:
        return UPSTREAM_ERR_INTERNAL;
    }
}

static void transfer_done(upstream_req_t *r, CURLcode cc)
{
    upstream_result res = r->err ? r->err : map_curl(r, cc);
    if (res == UPSTREAM_OK)
        r->msg[0] = '\0';
    else if (!r->err)                /* our own failures already wrote r->msg */
        snprintf(r->msg, sizeof r->msg, "%s", r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc));
    stop_timers(r);
    detach(r, res != UPSTREAM_OK);

    if (!r->resp_fired && r->headers_done) {
        fire_response(r);
        if (gone(r))
            return;
    }
    if (r->pend_len) {
        /* The caller still owes itself bytes: on_done after they are drained. */
        r->state = RS_DRAINING;
        r->final_res = res;
        if (!r->user_paused)
            event_active(r->kick_ev, EV_TIMEOUT, 1);
        return;
    }
    complete(r, res, r->msg);
}

static void process_done(upstream_t *u)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(u->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURLcode cc = m->data.result;       /* m dies with remove_handle */
        char *priv = NULL;
        if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
            continue;
        upstream_req_t *r = (upstream_req_t *)(void *)priv;
        if (gone(r) || r->state != RS_RUNNING)
            continue;                       /* reap list owns it */
        transfer_done(r, cc);
    }
}

static void add_now(upstream_req_t *r)
{
    upstream_t *u = r->u;
    if (curl_multi_add_handle(u->multi, r->easy) != CURLM_OK) {
        snprintf(r->msg, sizeof r->msg, "could not start transfer");
        complete(r, UPSTREAM_ERR_INTERNAL, r->msg);
        return;
    }
    r->in_multi = 1;
    r->state = RS_RUNNING;
}

static void post_cb(evutil_socket_t fd, short what, void *arg)
{
    upstream_t *u = arg;
    (void)fd; (void)what;
    while (u->reap) {
        upstream_req_t *r = u->reap;
        u->reap = r->link;
        r->link = NULL;
        r->on_reap = 0;
        release(r);
    }
    while (u->addq) {
        upstream_req_t *r = u->addq;
        u->addq = r->link;
        if (!u->addq) u->addq_tail = NULL;
        r->link = NULL;
        r->on_addq = 0;
        add_now(r);
    }
}

static void drive(upstream_t *u, curl_socket_t fd, int flags)
{
    int running = 0;
    u->in_curl++;
    CURLMcode mc = curl_multi_socket_action(u->multi, fd, flags, &running);
    u->in_curl--;
    /* Transfers that failed still report through info_read: just go on. */
    if (mc != CURLM_OK)
        log_warn("upstream: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    process_done(u);
    if (u->reap || u->addq)
        defer_post(u);
}

/* ---- request objects -------------------------------------------------- */

static void addq_unlink(upstream_t *u, upstream_req_t *r)
{
    if (!r->on_addq)
        return;
    upstream_req_t **pp = &u->addq, *prev = NULL;
    while (*pp && *pp != r) { prev = *pp; pp = &(*pp)->link; }
    if (*pp) {
        *pp = r->link;
        if (u->addq_tail == r) u->addq_tail = prev;
    }
    r->link = NULL;
    r->on_addq = 0;
}

static void req_destroy(upstream_req_t *r)
{
    if (r->first_byte_ev) event_free(r->first_byte_ev);
    if (r->idle_ev) event_free(r->idle_ev);
    if (r->kick_ev) event_free(r->kick_ev);
    if (r->easy) curl_easy_cleanup(r->easy);
    free(r->hdr_buf);
    free(r->hdrs);
    free(r->pend);
    free(r);
}

static upstream_req_t *req_get(upstream_t *u)
{
    upstream_req_t *r = u->free_list;
    if (r) {
        u->free_list = r->link;
        u->nfree--;
        r->link = NULL;
        return r;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->kind = UPREQ_CURL;
    r->u = u;
    r->easy = curl_easy_init();
    r->first_byte_ev = evtimer_new(u->base, first_byte_cb, r);
    r->idle_ev = evtimer_new(u->base, idle_cb, r);
    r->kick_ev = event_new(u->base, -1, 0, kick_cb, r);
    if (!r->easy || !r->first_byte_ev || !r->idle_ev || !r->kick_ev) {
        req_destroy(r);
        return NULL;
    }
    return r;
}

/* Detaches r from curl and from u, and recycles it. Outside curl only. */
static void release(upstream_req_t *r)
{
    upstream_t *u = r->u;
    stop_timers(r);
    addq_unlink(u, r);
    detach(r, 1);      /* still in the multi here only when cancelled */
    curl_slist_free_all(r->req_hdrs);
    r->req_hdrs = NULL;
    if (r->prev) r->prev->next = r->next; else if (u->live == r) u->live = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->state = RS_IDLE;

    if (u->nfree >= FREE_LIST_MAX) {
        req_destroy(r);
        return;
    }
    curl_easy_reset(r->easy);
    r->pend_len = 0;
    r->hdr_len = 0;
    r->nhdrs = 0;
    r->link = u->free_list;
    u->free_list = r;
    u->nfree++;
}

static void req_reset_fields(upstream_req_t *r)
{
    r->state = RS_IDLE;
    r->in_multi = r->cancelled = r->got_byte = r->headers_done = 0;
    r->resp_fired = r->user_paused = r->curl_paused = r->on_reap = r->on_addq = 0;
    r->busy = 0;
    r->err = UPSTREAM_OK;
    r->final_res = UPSTREAM_OK;
    r->status = 0;
    r->body_bytes = 0;
    r->pend_len = 0;
    r->hdr_len = 0;
    r->nhdrs = 0;
    r->errbuf[0] = '\0';
    r->msg[0] = '\0';
    r->link = r->prev = r->next = NULL;
}

#define SET(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(e, opt, val); } while (0)

static int configure(upstream_req_t *r, const upstream_request *req)
{
    upstream_t *u = r->u;
    CURL *e = r->easy;
    CURLcode cc = CURLE_OK;
    const upstream_timeouts *t = &req->timeouts;
    const char *method = req->method ? req->method : "GET";

    for (const char *const *h = req->headers; h && *h; h++) {
        struct curl_slist *n = curl_slist_append(r->req_hdrs, *h);
        if (!n)
            return -1;
        r->req_hdrs = n;
    }
    /* An empty "Expect:" stops curl from waiting for 100-continue. */
    struct curl_slist *n = curl_slist_append(r->req_hdrs, "Expect:");
    if (!n)
        return -1;
    r->req_hdrs = n;

    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (void *)r);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_HTTPHEADER, r->req_hdrs);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, (void *)r);
    SET(CURLOPT_HEADERFUNCTION, header_cb);
    SET(CURLOPT_HEADERDATA, (void *)r);
    SET(CURLOPT_CONNECTTIMEOUT_MS, t->connect_ms > 0 ? t->connect_ms : DEF_CONNECT_MS);
    SET(CURLOPT_TIMEOUT_MS, t->total_ms > 0 ? t->total_ms : DEF_TOTAL_MS);
    SET(CURLOPT_SSL_VERIFYPEER, u->opts.insecure_skip_verify ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, u->opts.insecure_skip_verify ? 0L : 2L);
    if (u->ca_file)
        SET(CURLOPT_CAINFO, u->ca_file);
    if (u->share)
        SET(CURLOPT_SHARE, u->share);
    if (u->no_proxy_env)
        SET(CURLOPT_PROXY, "");

    if (strcmp(method, "GET") == 0 && !req->body) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        if (req->body || strcmp(method, "POST") == 0) {
            SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
            SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
        }
        if (strcmp(method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, method);
    }
    return cc == CURLE_OK ? 0 : -1;
}

#undef SET

/* ---- public API ------------------------------------------------------- */

upstream_t *upstream_new(struct event_base *base, const upstream_opts *opts)
{
    if (!base)
        return NULL;
    /* Refcounted and thread-safe since 7.84; main should still call it first. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    upstream_t *u = calloc(1, sizeof *u);
    if (!u)
        goto fail_global;
    u->base = base;
    if (opts)
        u->opts = *opts;
    if (u->opts.ca_file) {
        u->ca_file = strdup(u->opts.ca_file);
        if (!u->ca_file)
            goto fail;
    }
    u->opts.ca_file = u->ca_file;
    u->timer_ev = evtimer_new(base, timer_event_cb, u);
    u->post_ev = event_new(base, -1, 0, post_cb, u);
    u->multi = curl_multi_init();
    if (!u->timer_ev || !u->post_ev || !u->multi)
        goto fail;
    if (curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, socket_cb) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, timer_cb) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u) != CURLM_OK ||
        curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS, MAX_CONNECTS) != CURLM_OK)
        goto fail;
    if (u->opts.max_host_connections > 0 &&
        curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          u->opts.max_host_connections) != CURLM_OK)
        goto fail;
    /* TLS session resumption across this worker's handles (one thread: no locks). */
    static const char *const proxy_vars[] = { "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                                              "all_proxy", "ALL_PROXY" };
    u->no_proxy_env = 1;
    for (size_t i = 0; i < sizeof proxy_vars / sizeof proxy_vars[0]; i++)
        if (getenv(proxy_vars[i])) u->no_proxy_env = 0;
    if (!(u->h1 = h1_new(base, u->opts.max_host_connections)))
        goto fail;
    u->share = curl_share_init();
    if (u->share && curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK) {
        curl_share_cleanup(u->share);
        u->share = NULL;             /* optional: go on without resumption */
    }
    return u;
fail:
    h1_free(u->h1);
    if (u->multi) curl_multi_cleanup(u->multi);
    if (u->timer_ev) event_free(u->timer_ev);
    if (u->post_ev) event_free(u->post_ev);
    free(u->ca_file);
    free(u);
fail_global:
    curl_global_cleanup();
    return NULL;
}

void upstream_free(upstream_t *u)
{
    if (!u)
        return;
    h1_free(u->h1);
    while (u->live) {
        upstream_req_t *r = u->live;
        r->cancelled = 1;
        release(r);
    }
    u->reap = NULL;                  /* all of them were live, now released */
    u->addq = u->addq_tail = NULL;
    while (u->free_list) {
        upstream_req_t *r = u->free_list;
        u->free_list = r->link;
        req_destroy(r);
    }
    /* May still call socket_cb / timer_cb while closing cached connections. */
    (void)curl_multi_cleanup(u->multi);
    while (u->socks)
        usock_free(u, u->socks);
    event_free(u->timer_ev);
    event_free(u->post_ev);
    if (u->share)
        (void)curl_share_cleanup(u->share);
    free(u->ca_file);
    free(u);
    curl_global_cleanup();
}

upstream_req_t *upstream_start(upstream_t *u, const upstream_request *req,
                               const upstream_callbacks *cb, void *ud)
{
    if (!u || !req || !req->url || !cb)
        return NULL;
    if (u->no_proxy_env && strncasecmp(req->url, "http://", 7) == 0) {
        upstream_req_t *hr = NULL;
        int rc = h1_start(u->h1, req, cb, ud, &hr);
        if (rc <= 0)
            return rc == 0 ? hr : NULL;   /* else a URL only curl takes */
    }
    upstream_req_t *r = req_get(u);
    if (!r)
        return NULL;
    req_reset_fields(r);
    r->cb = *cb;
    r->ud = ud;
    r->max_resp = req->max_response_bytes;
    r->first_byte_ms = req->timeouts.first_byte_ms > 0 ? req->timeouts.first_byte_ms : DEF_FIRST_BYTE_MS;
    r->idle_ms = req->timeouts.idle_ms > 0 ? req->timeouts.idle_ms : DEF_IDLE_MS;

    if (configure(r, req) != 0 || arm_ms(r->first_byte_ev, r->first_byte_ms) != 0)
        goto fail;

    if (u->in_curl) {
        /* Inside a curl callback add_handle is refused: add right after. */
        r->state = RS_QUEUED;
        r->on_addq = 1;
        if (u->addq_tail) u->addq_tail->link = r; else u->addq = r;
        u->addq_tail = r;
        defer_post(u);
    } else {
        /* add_handle only arms curl's timer; nothing completes in here. */
        if (curl_multi_add_handle(u->multi, r->easy) != CURLM_OK)
            goto fail;
        r->in_multi = 1;
        r->state = RS_RUNNING;
    }
    r->next = u->live;
    if (u->live) u->live->prev = r;
    u->live = r;
    u->active++;
    return r;
fail:
    stop_timers(r);
    curl_slist_free_all(r->req_hdrs);
    r->req_hdrs = NULL;
    curl_easy_reset(r->easy);
    r->link = u->free_list;
    u->free_list = r;
    u->nfree++;
    return NULL;
}

const char *upstream_header(const upstream_req_t *r, const char *name)
{
    if (!r || !name)
        return NULL;
    if (upreq_kind(r) == UPREQ_H1)
        return h1_header(r, name);
    for (size_t i = 0; i < r->nhdrs; i++)
        if (strcasecmp(r->hdr_buf + r->hdrs[i].name, name) == 0)
            return r->hdr_buf + r->hdrs[i].value;
    return NULL;
}

int upstream_status(const upstream_req_t *r)
{
    if (r && upreq_kind(r) == UPREQ_H1)
        return h1_status(r);
    return r ? r->status : 0;
}

void upstream_pause(upstream_req_t *r)
{
    if (r && upreq_kind(r) == UPREQ_H1) {
        h1_pause(r);
        return;
    }
    if (!r || r->cancelled || r->state == RS_FINISHED)
        return;
    /* curl itself is paused lazily, from write_cb, where it is always legal. */
    set_user_paused(r);
}

void upstream_resume(upstream_req_t *r)
{
    if (r && upreq_kind(r) == UPREQ_H1) {
        h1_resume(r);
        return;
    }
    if (!r || r->cancelled || r->state == RS_FINISHED || !r->user_paused)
        return;
    r->user_paused = 0;
    if (r->state == RS_RUNNING && r->got_byte) {
        r->last_rx_ms = mono_ms();
        (void)arm_ms(r->idle_ev, r->idle_ms);
    }
    /* Never unpause curl here: we may be inside a callback. */
    if (r->pend_len || r->curl_paused || r->state == RS_DRAINING)
        event_active(r->kick_ev, EV_TIMEOUT, 1);
}

void upstream_cancel(upstream_req_t *r)
{
    if (r && upreq_kind(r) == UPREQ_H1) {
        h1_cancel(r);
        return;
    }
    if (!r || r->cancelled || r->state == RS_FINISHED || r->state == RS_IDLE)
        return;
    upstream_t *u = r->u;
    r->cancelled = 1;
    if (u->active) u->active--;
    stop_timers(r);
    addq_unlink(u, r);
    r->state = RS_FINISHED;
    if (u->in_curl || r->busy) {
        /* A curl call or our own frame still uses r: release it later. */
        r->on_reap = 1;
        r->link = u->reap;
        u->reap = r;
        defer_post(u);
        return;
    }
    release(r);
}

size_t upstream_active(const upstream_t *u)
{
    return u ? u->active + h1_active(u->h1) : 0;
}
