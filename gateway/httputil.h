/* httputil: small reply helpers shared by the routes and the worker. */
#ifndef GW_HTTPUTIL_H
#define GW_HTTPUTIL_H

#include <stddef.h>
#include <evhtp.h>

void   http_send_json(evhtp_request_t *req, int status, const char *body, size_t len);
/* OpenAI error shape {"error":{"message","type","param","code"}}; returns the body length. */
size_t http_send_openai_error(evhtp_request_t *req, int status, const char *type, const char *code,
                              const char *param, const char *message);
/* Before evhtp has a request to reply on (oversized headers or body): take
 * the socket from evhtp, write a complete response with Connection: close,
 * and close once it is flushed. */
void   http_reject_connection(evhtp_connection_t *conn, int status, const char *reason, const char *message);

#endif
