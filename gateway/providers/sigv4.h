/* sigv4: AWS Signature Version 4 request signing (OpenSSL HMAC-SHA256). */
#ifndef GW_SIGV4_H
#define GW_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "buf.h"

typedef struct sigv4_request {
    const char *method;
    const char *url;               /* scheme://host[:port]/path[?query]; the path already URI-encoded */
    const char *content_type;      /* signed when not NULL */
    const char *body;
    size_t      body_len;
    const char *region;
    const char *service;           /* "bedrock" */
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token;     /* NULL without temporary credentials */
    time_t      now;
} sigv4_request;

/* Appends the header lines the request must carry, each one NUL-terminated:
 * "X-Amz-Date: ...", "X-Amz-Security-Token: ..." (with a session token) and
 * "Authorization: AWS4-HMAC-SHA256 ...". Returns how many, -1 on failure. */
int sigv4_sign(const sigv4_request *q, buf_t *out);

#endif
