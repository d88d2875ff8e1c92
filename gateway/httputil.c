#include "httputil.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "buf.h"

void http_send_json(evhtp_request_t *req, int status, const char *body, size_t len)
{
    evhtp_headers_add_header(req->headers_out, evhtp_header_new("Content-Type", "application/json", 0, 0));
    evbuffer_add(req->buffer_out, body, len);
    evhtp_send_reply(req, (evhtp_res)status);
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
