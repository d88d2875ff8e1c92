/* http: the admin API server (libmicrohttpd).
 *
 * A pool of MHD threads (internal polling) serves requests; each request
 * borrows its own Postgres connection from the pool in db.c for its whole
 * life, so no PGconn is ever shared between threads. This file owns the
 * routing table, body accumulation (bounded: 413 beyond 1 MiB), bearer-token
 * authentication and roles, JSON error responses, the one-shot retry of a
 * request whose database connection was lost, and request metrics.
 */
#ifndef CP_HTTP_H
#define CP_HTTP_H

#include <stddef.h>

#include "crypto.h"
#include "db.h"

typedef struct cp_http cp_http;

/* listen: "host:port", "[v6addr]:port" or ":port" (all interfaces).
 * NULL on failure with a reason in err. */
cp_http *cp_http_start(const char *listen, int threads, cp_db *db,
                       const unsigned char master_key[CP_MASTER_KEY_LEN],
                       char *err, size_t errlen);
/* Stops accepting, waits for the request threads, frees. */
void     cp_http_stop(cp_http *h);

#endif
