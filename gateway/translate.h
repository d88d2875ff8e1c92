/* translate: the request layer's door to the dialect adapters. It decides
 * whether a request can pass through (client and provider speak the same
 * wire format) and otherwise carries it through the internal chat form:
 * the client's body in, the provider's answer or stream out in the client's
 * dialect, usage counted on the way. */
#ifndef GW_TRANSLATE_H
#define GW_TRANSLATE_H

#include <stddef.h>

#include "buf.h"
#include "providers/chat.h"
#include "providers/provider.h"

chat_client xlate_client(gw_route route);
/* 1 when the provider cannot take the client's bytes as they are. */
int         xlate_needed(const provider *p, gw_route route);
/* The client's body in the internal form; -1 with a 400 message and param. */
int         xlate_parse_request(gw_route route, const json_value *root, const char *body, chat_req *out,
                                char *msg, size_t msglen, const char **param);
/* The id the client sees for request id rid: "chatcmpl-..", "cmpl-..", "msg_..". */
void        xlate_client_id(gw_route route, const char *rid, char *out, size_t len);

/* A whole 2xx answer, rendered for the client; -1 with a reason (a 502).
 * q: the request in the internal form (Responses: what the answer echoes,
 * and whether it is stored), or NULL. */
int         xlate_response(const provider *p, gw_route route, const chat_req *q, const char *id, const char *model,
                           const char *body, size_t len, buf_t *out, usage_t *usage, char *err, size_t errlen);
/* The client's status for a provider error status. */
int         xlate_error_status(int up_status);

typedef struct xlate_stream {
    const provider *p;
    void           *dec;
    chat_enc        enc;
    buf_t           out;        /* bytes for the client, drained by the caller */
    const chat_req *q;          /* the request (Responses: stored at a clean end), or NULL */
    int             failed;     /* the provider's stream was malformed or reported an error */
    char            error[256];
} xlate_stream;

int  xlate_stream_start(xlate_stream *x, const provider *p, gw_route route, const chat_req *q, const char *id,
                        const char *model, int include_usage);
void xlate_stream_feed(xlate_stream *x, const char *data, size_t len);
/* upstream_ok: the provider's bytes all arrived; else why names the failure. */
void xlate_stream_end(xlate_stream *x, int upstream_ok, const char *why);
void xlate_stream_free(xlate_stream *x);

#endif
