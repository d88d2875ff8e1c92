/* httputil: small reply helpers shared by the routes and the worker. */
#ifndef GW_HTTPUTIL_H
#define GW_HTTPUTIL_H

#include <stddef.h>
#include <evhtp.h>

/* The request headers the gateway reads, found in one pass over the list
 * (each evhtp_header_find walks it with a strcasecmp per field, and a
 * request asks for up to eight). The first occurrence wins, as there. */
typedef struct http_req_headers {
    const char *authorization, *x_api_key, *api_key, *traceparent, *anthropic_beta;
    const char *cache_control, *x_gateway_cache, *x_gateway_semantic_cache;
} http_req_headers;
void   http_index_headers(evhtp_headers_t *headers, http_req_headers *out);

/* evhtp_send_reply's answer, byte for byte (status line, the headers, the
 * Content-Length / Connection / Content-Type it would add, the body), built
 * in one flat buffer and handed to the connection in one append instead of
 * four evbuffer pieces per header: a third of what a proxied request costs
 * in libevhtp. */
void   http_send_reply(evhtp_request_t *req, int code);
void   http_send_json(evhtp_request_t *req, int status, const char *body, size_t len);
/* OpenAI error shape {"error":{"message","type","param","code"}}; returns the body length. */
size_t http_send_openai_error(evhtp_request_t *req, int status, const char *type, const char *code,
                              const char *param, const char *message);
/* Anthropic error shape {"type":"error","error":{"type","message"}}, the
 * type derived from the status; returns the body length. */
size_t http_send_anthropic_error(evhtp_request_t *req, int status, const char *message);
/* Before evhtp has a request to reply on (oversized headers or body): take
 * the socket from evhtp, write a complete response with Connection: close,
 * and close once it is flushed. */
void   http_reject_connection(evhtp_connection_t *conn, int status, const char *reason, const char *message);

/* Replies without the event-loop round trips evhtp would add.
 *
 * Client connections keep EV_WRITE disabled (http_conn_accept): output is
 * written to the socket right away by these functions, with one writev, and
 * only a short write hands the rest to the bufferevent. That saves, per
 * reply, adding and removing EPOLLOUT interest and a wakeup to learn what we
 * knew: a fresh socket is writable.
 *
 * hold: the request goes async. evhtp's pause flag keeps pipelined bytes
 * unparsed, but reading stays enabled (the disable and re-enable fold into
 * nothing in the epoll changelist), so a client that hangs up is seen at
 * once; the idle read timeout is suspended while the provider works, and a
 * read high-water mark bounds what a pipelining client can queue meanwhile.
 *
 * flush: writes pending output now (streams call it per chunk).
 *
 * release: an async reply is complete: restores the idle timeout, flushes,
 * and lets evhtp finish the request (keep-alive reset or close) at once.
 * The evhtp request may be freed when it returns.
 *
 * sync_done: same for a reply made inside evhtp's request callback, where
 * evhtp's finishing step must wait until its parser has returned. */
void http_conn_accept(evhtp_connection_t *c);
void http_conn_expect_continue(evhtp_request_t *req);
void http_conn_hold(evhtp_request_t *req);
void http_conn_flush(evhtp_request_t *req);
void http_conn_release(evhtp_request_t *req, const struct timeval *idle_timeout);
void http_conn_sync_done(evhtp_request_t *req);

#endif
