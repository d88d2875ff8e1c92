/* upstream_h1: the lean HTTP/1.1 engine behind upstream.h for plain http://
 * upstreams (internal to upstream.c and its tests).
 *
 * Connections stay registered with the event loop for their whole life, a
 * request goes out with one sendmsg, a response comes in with one recv per
 * readiness; keep-alive pool per host:port.  Semantics are those of
 * upstream.h; upstream.c dispatches to it by URL scheme.
 */
#ifndef GW_UPSTREAM_H1_H
#define GW_UPSTREAM_H1_H

#include "upstream.h"

#include <stddef.h>
#include <stdint.h>

/* Both request kinds begin with an int tag so that upstream.c can tell an
 * opaque upstream_req_t apart without another allocation. */
enum { UPREQ_CURL = 0x63726c31, UPREQ_H1 = 0x68315f31 };

static inline int upreq_kind(const upstream_req_t *r)
{
    return *(const int *)(const void *)r;
}

typedef struct h1_client h1_client;

h1_client *h1_new(struct event_base *base, long max_host_connections);
void       h1_free(h1_client *c);   /* cancels in-flight requests, closes pooled connections */

/* 0: started, *out set.  1: not a URL this engine takes (userinfo, odd
 * characters...): use curl.  -1: could not start (no callback will run). */
int h1_start(h1_client *c, const upstream_request *req, const upstream_callbacks *cb,
             void *ud, upstream_req_t **out);

const char *h1_header(const upstream_req_t *r, const char *name);
int         h1_status(const upstream_req_t *r);
void        h1_pause(upstream_req_t *r);
void        h1_resume(upstream_req_t *r);
void        h1_cancel(upstream_req_t *r);
size_t      h1_active(const h1_client *c);

/* For tests and diagnostics. */
typedef struct h1_stats {
    size_t conns;          /* open, all hosts (connecting, busy, idle) */
    size_t idle;           /* pooled idle connections */
    unsigned long connects;    /* connect() calls since h1_new */
    unsigned long retries;     /* stale keep-alive retries */
} h1_stats;
void h1_get_stats(const h1_client *c, h1_stats *out);
/* Moves this engine's clock forward (tests of the pooled-connection age limit). */
void h1_test_clock_advance(int64_t us);

#endif
