/* provider: the interface every upstream dialect implements (one file each).
 *
 * The request layer parses and validates the client's request, picks a
 * deployment, then asks the deployment's provider to render the upstream
 * call. An upstream provider renders an HTTP request for upstream.c; a local
 * provider (mock) answers in-process. Providers know nothing of auth, limits
 * or usage accounting.
 */
#ifndef GW_PROVIDER_H
#define GW_PROVIDER_H

#include <stddef.h>

#include "buf.h"
#include "json.h"

struct gw_deployment;

typedef enum { ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_EMBEDDINGS } gw_route;

/* What the client asked for, already parsed and validated (OpenAI dialect). */
typedef struct provider_call {
    gw_route                     route;
    const struct gw_deployment  *dep;
    const char                  *body;      /* the client's raw JSON body */
    size_t                       body_len;
    const json_value            *root;      /* parsed body */
    const json_value            *model;     /* root's "model" member value */
    int                          stream;
    int                          want_usage; /* streaming: the gateway needs a usage chunk the client did
                                                not ask for (the provider asks for it; see usage_injected) */
} provider_call;

#define PROVIDER_MAX_HEADERS 8

/* An HTTP call for upstream.c. url/body are filled by the provider. */
typedef struct provider_http {
    buf_t       url;
    buf_t       body;
    const char *headers[PROVIDER_MAX_HEADERS + 1];   /* NULL-terminated; point into deployment or statics */
    int         same_dialect;   /* response is already OpenAI-shaped: relay bytes as they are */
    int         usage_injected; /* the body asks for stream usage on the gateway's behalf: the
                                   usage-only chunk is for the gateway, not the client */
} provider_http;

typedef struct provider {
    const char *name;
    /* Config time: defaults (base_url), precomputed auth header; -1 with a reason. */
    int (*prepare)(struct gw_deployment *d, char *err, size_t errlen);
    /* Upstream providers: render the call. 0 ok, -1 with a reason (a 400 for the client). */
    int (*build)(const provider_call *call, provider_http *out, char *err, size_t errlen);
    /* Local providers: render the whole answer (JSON, or the SSE text when streaming). */
    int (*local_reply)(const provider_call *call, int *status, buf_t *out);
} provider;

const provider *provider_find(const char *name);
const char     *provider_names(void);            /* "openai, openai_compatible, mock" */

/* Shared by OpenAI-dialect providers: the client body with "model" replaced. */
int provider_rewrite_model(const provider_call *call, const char *model, buf_t *out);
/* Same, and when inject_usage, with stream_options.include_usage set to true
 * (added or replaced; nothing else in the body changes). */
int provider_rewrite_body(const provider_call *call, const char *model, int inject_usage, buf_t *out);

extern const provider provider_openai;
extern const provider provider_openai_compatible;
extern const provider provider_mock;

#endif
