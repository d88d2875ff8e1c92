#include "httputil.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "buf.h"

void http_index_headers(evhtp_headers_t *headers, http_req_headers *out)
{
    memset(out, 0, sizeof *out);
    evhtp_header_t *h;
    TAILQ_FOREACH(h, headers, next) {
        const char **slot = NULL, *name = NULL;
        switch (h->klen) {   /* the length picks the candidate; one compare confirms it */
        case 7:  slot = &out->api_key; name = "api-key"; break;
        case 9:  slot = &out->x_api_key; name = "x-api-key"; break;
        case 11: slot = &out->traceparent; name = "traceparent"; break;
        case 13:
            if (h->key[0] == 'a' || h->key[0] == 'A') { slot = &out->authorization; name = "authorization"; }
            else { slot = &out->cache_control; name = "cache-control"; }
            break;
        case 14: slot = &out->anthropic_beta; name = "anthropic-beta"; break;
        case 15: slot = &out->x_gateway_cache; name = "x-gateway-cache"; break;
        case 24: slot = &out->x_gateway_semantic_cache; name = "x-gateway-semantic-cache"; break;
        default: continue;
        }
        if (!*slot && !strncasecmp(h->key, name, h->klen)) *slot = h->val;
    }
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default:  return code < 300 ? "OK" : code < 500 ? "Client Error" : "Server Error";
    }
}

static int key_is(const evhtp_header_t *h, const char *name, size_t n)
{
    return h->klen == n && !strncasecmp(h->key, name, n);
}

void http_send_reply(evhtp_request_t *req, int code)
{
    evhtp_connection_t *c = req->conn;
    static buf_t head;   /* a worker is single-threaded; reused for every reply */
    size_t body = evbuffer_get_length(req->buffer_out);
    int chunked = req->flags & EVHTP_REQ_FLAG_CHUNKED, keepalive = req->flags & EVHTP_REQ_FLAG_KEEPALIVE;
    req->flags |= EVHTP_REQ_FLAG_FINISHED;
    req->status = (evhtp_res)code;
    if (req->proto != EVHTP_PROTO_10 && req->proto != EVHTP_PROTO_11) {   /* as evhtp: answered before the version was read */
        htparser_set_major(c->parser, 1);
        htparser_set_minor(c->parser, 0);
    }
    buf_reset(&head);
    char v[24];
    v[0] = 'H'; v[1] = 'T'; v[2] = 'T'; v[3] = 'P'; v[4] = '/';
    v[5] = (char)('0' + htparser_get_major(c->parser) % 10);
    v[6] = '.';
    v[7] = (char)('0' + htparser_get_minor(c->parser) % 10);
    v[8] = ' ';
    buf_append(&head, v, 9);
    buf_put_u64(&head, (unsigned)code % 1000);
    buf_putc(&head, ' ');
    buf_puts(&head, reason_phrase(code));
    buf_append(&head, "\r\n", 2);
    int have_ct = 0, have_cl = 0;
    evhtp_header_t *h;
    TAILQ_FOREACH(h, req->headers_out, next) {
        have_ct |= key_is(h, "Content-Type", 12);
        have_cl |= key_is(h, "Content-Length", 14);
        buf_append(&head, h->key, h->klen);
        buf_append(&head, ": ", 2);
        buf_append(&head, h->val, h->vlen);
        buf_append(&head, "\r\n", 2);
    }
    if (body && !chunked && !have_cl && htparser_get_multipart(c->parser) != 1) {
        buf_puts(&head, "Content-Length: ");
        buf_put_u64(&head, body);
        buf_append(&head, "\r\n", 2);
        have_cl = 1;
    }
    if (req->proto == EVHTP_PROTO_11) {
        if (!keepalive) buf_puts(&head, "Connection: close\r\n");
        if (!have_cl && !chunked) buf_puts(&head, "Content-Length: 0\r\n");
    } else if (req->proto == EVHTP_PROTO_10 && keepalive) {
        buf_puts(&head, "Connection: keep-alive\r\n");
    }
    if (!have_ct) buf_puts(&head, "Content-Type: text/plain\r\n");
    buf_append(&head, "\r\n", 2);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (head.oom) { buf_free(&head); buf_init(&head); evhtp_send_reply(req, (evhtp_res)code); return; }
    evbuffer_add(out, head.data, head.len);
    if (body) evbuffer_add_buffer(out, req->buffer_out);
    if (head.cap > (64u << 10)) { buf_free(&head); buf_init(&head); }   /* one huge header set does not pin memory */
}

void http_send_json(evhtp_request_t *req, int status, const char *body, size_t len)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Content-Type", "application/json", 0, 0));
    evbuffer_add(req->buffer_out, body, len);
    http_send_reply(req, status);
}

static void error_body(buf_t *b, const char *type, const char *code, const char *param, const char *message)
{
    buf_puts(b, "{\"error\":{\"message\":");
    buf_json_str(b, message, strlen(message));
    buf_puts(b, ",\"type\":");
    buf_json_str(b, type, strlen(type));
    buf_puts(b, ",\"param\":");
    if (param) buf_json_str(b, param, strlen(param)); else buf_puts(b, "null");
    buf_puts(b, ",\"code\":");
    if (code) buf_json_str(b, code, strlen(code)); else buf_puts(b, "null");
    buf_puts(b, "}}");
}

size_t http_send_openai_error(evhtp_request_t *req, int status, const char *type, const char *code,
                              const char *param, const char *message)
{
    buf_t b; buf_init(&b);
    error_body(&b, type, code, param, message);
    size_t n = b.len;
    http_send_json(req, status, b.oom ? "{}" : b.data, b.oom ? 2 : b.len);
    buf_free(&b);
    return n;
}

static const char *anthropic_error_type(int status)
{
    switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 405: return "invalid_request_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 529: return "overloaded_error";
    }
    return status < 500 ? "invalid_request_error" : "api_error";
}

size_t http_send_anthropic_error(evhtp_request_t *req, int status, const char *message)
{
    buf_t b; buf_init(&b);
    buf_puts(&b, "{\"type\":\"error\",\"error\":{\"type\":\"");
    buf_puts(&b, anthropic_error_type(status));
    buf_puts(&b, "\",\"message\":");
    buf_json_str(&b, message, strlen(message));
    buf_puts(&b, "}}");
    size_t n = b.len;
    http_send_json(req, status, b.oom ? "{}" : b.data, b.oom ? 2 : b.len);
    buf_free(&b);
    return n;
}

static void discard_input(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void close_on_event(struct bufferevent *bev, short what, void *arg);

/* Lingering close, as nginx does: closing with unread request bytes in the
 * socket would send a RST that can destroy our response before the client
 * reads it. So half-close, then read and discard until EOF or a timeout. */
static void close_when_flushed(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0) return;
    shutdown(bufferevent_getfd(bev), SHUT_WR);
    bufferevent_setcb(bev, discard_input, NULL, close_on_event, NULL);
    bufferevent_enable(bev, EV_READ);
}

static void close_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what; (void)arg;
    bufferevent_free(bev);
}

void http_reject_connection(evhtp_connection_t *conn, int status, const char *reason, const char *message)
{
    struct bufferevent *bev = evhtp_connection_take_ownership(conn);
    if (!bev) return;
    buf_t body; buf_init(&body);
    error_body(&body, "invalid_request_error", NULL, NULL, message);
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n", status, reason, body.len);
    evbuffer_add(out, body.data ? body.data : "", body.len);
    buf_free(&body);
    struct timeval tv = { 5, 0 };  /* a client that never reads must not hold the socket */
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, NULL, close_when_flushed, close_on_event, NULL);
    bufferevent_enable(bev, EV_WRITE);
}

#define PIPELINE_HIGH_WATER (256u << 10)

static struct bufferevent *req_bev(evhtp_request_t *req)
{
    evhtp_connection_t *c = evhtp_request_get_connection(req);
    return c ? c->bev : NULL;
}

void http_conn_accept(evhtp_connection_t *c)
{
    if (c->bev) bufferevent_disable(c->bev, EV_WRITE);
}

/* evhtp queues "100 Continue" itself after the headers: let the bufferevent
 * send it, since the client waits for it before sending the body. */
void http_conn_expect_continue(evhtp_request_t *req)
{
    struct bufferevent *bev = req_bev(req);
    if (bev) bufferevent_enable(bev, EV_WRITE);
}

void http_conn_hold(evhtp_request_t *req)
{
    evhtp_connection_t *c = evhtp_request_get_connection(req);
    if (!c || !c->bev) { evhtp_request_pause(req); return; }
    /* evhtp_request_pause() minus its read disable: the same two fields it
     * sets. Disabling and re-enabling would still cost an EPOLL_CTL_MOD. */
    req->status = EVHTP_RES_PAUSE;
    c->flags |= EVHTP_CONN_FLAG_PAUSED;
    bufferevent_setwatermark(c->bev, EV_READ, 0, PIPELINE_HIGH_WATER);
    bufferevent_set_timeouts(c->bev, NULL, &c->htp->send_timeo);
}

/* 1 when nothing is left to send */
static int flush_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) > 0) {
        /* a bufferevent freezes the front of its output (only it drains
         * it); we are draining on its behalf, on the same thread */
        evbuffer_unfreeze(out, 1);
        (void)evbuffer_write(out, bufferevent_getfd(bev));
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) == 0) return 1;
    /* short write or error: the bufferevent finishes it, or reports the
     * error through evhtp's event callback */
    bufferevent_enable(bev, EV_WRITE);
    return 0;
}

void http_conn_flush(evhtp_request_t *req)
{
    struct bufferevent *bev = req_bev(req);
    if (bev) flush_now(bev);
}

void http_conn_release(evhtp_request_t *req, const struct timeval *idle_timeout)
{
    evhtp_connection_t *c = evhtp_request_get_connection(req);
    struct bufferevent *bev = c ? c->bev : NULL;
    if (!bev) { evhtp_request_resume(req); return; }
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_set_timeouts(bev, idle_timeout, &c->htp->send_timeo);
    int flushed = flush_now(bev);
    evhtp_request_resume(req);   /* clears the pause now; its event runs later */
    if (!flushed) return;        /* evhtp finishes once the bufferevent drained */
    /* Everything is on the wire: run evhtp's write-done step (keep-alive
     * reset or close) now; we are not inside evhtp's parser here. */
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *arg;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &arg);
    if (writecb) writecb(bev, arg);
}

/* evhtp's write callback (the same function for every connection), saved
 * while a connection's write callback is swapped for after_sync_reply. */
static bufferevent_data_cb evhtp_writecb;

/* Runs deferred after a reply written synchronously, inside libevent's
 * deferred-callback run (which holds a reference on bev). evhtp's write-done
 * step resets the connection for keep-alive, but evhtp stops parsing after
 * each request and resumes only a paused connection: a request pipelined
 * behind this one is already in the input buffer, where no read event will
 * ever announce it, and the connection would stall until its timeout. So
 * once the step is done, and if evhtp did not free the connection (freeing
 * a bufferevent clears its callbacks), parse what is waiting. */
static void after_sync_reply(struct bufferevent *bev, void *arg)
{
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *cbarg;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &cbarg);
    bufferevent_setcb(bev, readcb, evhtp_writecb, eventcb, cbarg);
    evhtp_writecb(bev, arg);
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &cbarg);
    if (readcb && writecb == evhtp_writecb && evbuffer_get_length(bufferevent_get_input(bev)) > 0)
        readcb(bev, cbarg);
}

void http_conn_sync_done(evhtp_request_t *req)
{
    struct bufferevent *bev = req_bev(req);
    if (!bev || !flush_now(bev)) return;
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *arg;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &arg);
    if (writecb && writecb != after_sync_reply) {
        evhtp_writecb = writecb;
        bufferevent_setcb(bev, readcb, after_sync_reply, eventcb, arg);
    }
    bufferevent_trigger(bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}
