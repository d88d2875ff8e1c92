/* upstream: the HTTP client that calls providers.
 *
 * libcurl's multi interface driven by the worker's libevent loop
 * (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION): keep-alive connection
 * pooling per worker, TLS with verification, four timeouts, streaming bodies
 * with backpressure (pause/resume), and cancel when the client goes away.
 * It knows nothing of dialects or providers: bytes in, bytes out.
 */
#ifndef GW_UPSTREAM_H
#define GW_UPSTREAM_H

#include <stddef.h>

struct event_base;

typedef struct upstream upstream_t;          /* one per worker */
typedef struct upstream_req upstream_req_t;  /* one in-flight call */

typedef enum {
    UPSTREAM_OK = 0,
    UPSTREAM_ERR_CONNECT,           /* refused, unreachable, DNS failure */
    UPSTREAM_ERR_TLS,               /* handshake or certificate verification */
    UPSTREAM_ERR_TIMEOUT_CONNECT,
    UPSTREAM_ERR_TIMEOUT_FIRST_BYTE,
    UPSTREAM_ERR_TIMEOUT_IDLE,      /* gap between body chunks too long */
    UPSTREAM_ERR_TIMEOUT_TOTAL,
    UPSTREAM_ERR_IO,                /* reset / closed mid-response */
    UPSTREAM_ERR_TOO_LARGE,         /* response exceeded max_response_bytes (non-streaming only) */
    UPSTREAM_ERR_INTERNAL
} upstream_result;

const char *upstream_result_name(upstream_result r);   /* "connect", "timeout_first_byte", ... */

typedef struct upstream_opts {
    long max_host_connections;      /* 0 = no cap; idle pool per host is kept alive */
    const char *ca_file;            /* NULL = system store */
    int  insecure_skip_verify;      /* tests only; never the default */
} upstream_opts;

typedef struct upstream_timeouts {
    long connect_ms;                /* 0 = default 10000 */
    long first_byte_ms;             /* from request start to first response byte; 0 = default 600000 */
    long idle_ms;                   /* max gap between response bytes; 0 = default 300000 */
    long total_ms;                  /* 0 = default 900000 */
} upstream_timeouts;

typedef struct upstream_request {
    const char *method;             /* "POST" or "GET" */
    const char *url;
    const char *const *headers;     /* "Name: value" lines, NULL-terminated; copied */
    const char *body;               /* NOT copied: must stay valid until on_done or cancel */
    size_t body_len;
    size_t max_response_bytes;      /* 0 = unlimited; enforced only when the caller buffers */
    upstream_timeouts timeouts;
} upstream_request;

typedef struct upstream_callbacks {
    /* Status line and all headers received. Optional. */
    void (*on_response)(void *ud, upstream_req_t *r, int status);
    /* Response body bytes as they arrive (already de-chunked).
     * Return 0 to go on, 1 to pause delivery until upstream_resume(). */
    int  (*on_data)(void *ud, upstream_req_t *r, const char *data, size_t len);
    /* Exactly once per request that was not cancelled, never from inside
     * upstream_start. res == UPSTREAM_OK means the whole body was delivered. */
    void (*on_done)(void *ud, upstream_req_t *r, upstream_result res, const char *errmsg);
} upstream_callbacks;

upstream_t *upstream_new(struct event_base *base, const upstream_opts *opts);
void        upstream_free(upstream_t *u);      /* cancels whatever is in flight */

/* Starts a call; NULL if it could not even be started (then no callback runs). */
upstream_req_t *upstream_start(upstream_t *u, const upstream_request *req,
                               const upstream_callbacks *cb, void *ud);

/* Response header by name (case-insensitive), valid from on_response until
 * on_done returns / cancel. NULL if absent. */
const char *upstream_header(const upstream_req_t *r, const char *name);
int         upstream_status(const upstream_req_t *r);

/* Safe to call from inside any callback of the same request. */
void upstream_pause(upstream_req_t *r);
void upstream_resume(upstream_req_t *r);
/* Aborts the call and closes its connection (never returned to the pool);
 * no callback runs for r afterwards; r is invalid after this call. */
void upstream_cancel(upstream_req_t *r);

size_t upstream_active(const upstream_t *u);

#endif
