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
#include "chat.h"
#include "json.h"
#include "sse.h"

struct gw_deployment;

typedef enum { ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_EMBEDDINGS, ROUTE_MESSAGES, ROUTE_RESPONSES } gw_route;

/* The wire format a provider speaks natively: a client speaking the same one
 * takes the pass-through path (bytes forwarded, only the model rewritten). */
typedef enum { DIALECT_OPENAI, DIALECT_ANTHROPIC, DIALECT_OTHER } gw_dialect;

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
    const chat_req              *chat;      /* translated path: the request in the internal form */
    const char                  *anthropic_beta; /* the client's anthropic-beta header (pass-through), or NULL */
} provider_call;

#define PROVIDER_MAX_HEADERS 8

/* An HTTP call for upstream.c. url/body are filled by the provider. */
typedef struct provider_http {
    buf_t       url;
    buf_t       body;
    const char *headers[PROVIDER_MAX_HEADERS + 1];   /* NULL-terminated; point into deployment, statics or hdrs */
    buf_t       hdrs;           /* header lines computed per call (signatures, dates), NUL-separated */
    int         same_dialect;   /* response is already OpenAI-shaped: relay bytes as they are */
    int         usage_injected; /* the body asks for stream usage on the gateway's behalf: the
                                   usage-only chunk is for the gateway, not the client */
} provider_http;

typedef struct provider {
    const char *name;
    gw_dialect  dialect;
    /* Config time: defaults (base_url), precomputed auth header; -1 with a reason. */
    int (*prepare)(struct gw_deployment *d, char *err, size_t errlen);
    /* Upstream providers: render the call. 0 ok, -1 with a reason (a 400 for the client). */
    int (*build)(const provider_call *call, provider_http *out, char *err, size_t errlen);
    /* Local providers: render the whole answer (JSON, or the SSE text when streaming). */
    int (*local_reply)(const provider_call *call, int *status, buf_t *out);

    /* The translated path (client and provider dialects differ). */
    /* Renders call->chat; 0 ok, -1 with a reason (a 400 for the client). */
    int (*build_chat)(const provider_call *call, provider_http *out, char *err, size_t errlen);
    /* A whole 2xx answer into r; -1 with a reason when it is malformed. */
    int (*parse_response)(const char *body, size_t len, chat_resp *r, char *err, size_t errlen);
    /* Stream decoding: feed bytes as they come (any split); events go to emit.
     * feed returns -1 when the stream is malformed (stop feeding); end
     * returns -1 when the stream stopped before its end (truncated). */
    void *(*stream_new)(void);
    int   (*stream_feed)(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud);
    int   (*stream_end)(void *st, chat_emit_fn emit, void *ud);
    void  (*stream_free)(void *st);
    /* The message in an error body (never a secret), or "" if none is found. */
    void  (*error_message)(const char *body, size_t len, char *msg, size_t msglen);
    /* Embeddings through the provider's own API (NULL: not offered). build_embed
     * reads the OpenAI body (call->root); parse_embed writes the OpenAI list. */
    int (*build_embed)(const provider_call *call, provider_http *out, char *err, size_t errlen);
    int (*parse_embed)(const char *body, size_t len, int base64, const char *model, buf_t *out, usage_t *u,
                       char *err, size_t errlen);
} provider;

const provider *provider_find(const char *name);
const char     *provider_names(void);            /* "openai, openai_compatible, mock" */

/* Shared by OpenAI-dialect providers: the client body with "model" replaced. */
int provider_rewrite_model(const provider_call *call, const char *model, buf_t *out);
/* Same, and when inject_usage, with stream_options.include_usage set to true
 * (added or replaced; nothing else in the body changes). */
int provider_rewrite_body(const provider_call *call, const char *model, int inject_usage, buf_t *out);

/* The OpenAI wire format, shared by openai, openai_compatible, azure and mock. */
int   openai_build_chat_body(const provider_call *call, const char *model, buf_t *out, char *err, size_t errlen);
int   openai_parse_response(const char *body, size_t len, chat_resp *r, char *err, size_t errlen);
void *openai_stream_new(void);
int   openai_stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud);
int   openai_stream_end(void *st, chat_emit_fn emit, void *ud);
void  openai_stream_free(void *st);
void  openai_error_message(const char *body, size_t len, char *msg, size_t msglen);
/* openai_compatible presets: the base URL of a known service, or NULL. */
const char *openai_preset_base_url(const char *name);

/* Anthropic pass-through accounting: merges the usage of a Messages answer
 * or of one stream event (message_start, message_delta) into u. */
void  anthropic_usage(const char *json, size_t len, usage_t *u);

/* Shared by providers: base_url defaulted, checked and without trailing '/'. */
int   provider_base_url(struct gw_deployment *d, const char *default_base, char *err, size_t errlen);
/* Appends the tool arguments text as a JSON object ({} when it is not one). */
void  provider_put_args_object(buf_t *out, gw_str args);
/* The SSE-framed stream decoders (OpenAI, Anthropic, Gemini): a provider's
 * stream state starts with this, and its on_event callback gets that state.
 * feed and end return -1 once the stream failed (an event over 1 MiB, or
 * on_event set failed); end feeds the blank line a last event may lack. */
typedef struct provider_sse_stream {
    sse_parser   sse;
    chat_emit_fn emit;
    void        *ud;
    int          failed;
} provider_sse_stream;
void *provider_sse_stream_new(size_t size, sse_event_cb on_event);
int   provider_sse_stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud);
int   provider_sse_stream_end(void *st, chat_emit_fn emit, void *ud);
void  provider_sse_stream_free(void *st);

/* Providers that want strictly alternating user/assistant turns (Anthropic,
 * Gemini, Bedrock): consecutive user and tool messages merge into one user
 * turn, consecutive assistant ones into one. The style says how a turn opens
 * per side, what stands in for a turn without parts, and how a turn closes;
 * put writes one part (first: the turn's first, so no comma yet) and returns
 * how many it wrote (0 or 1), or -1 with err set. Appends "[...]". */
typedef struct provider_turn_style {
    const char *user_open, *assistant_open, *empty, *close;
} provider_turn_style;
typedef int (*provider_part_fn)(buf_t *b, const chat_req *q, const chat_part *p, int first, char *err, size_t errlen);
int   provider_put_turns(buf_t *b, const chat_req *q, const provider_turn_style *st, provider_part_fn put,
                         char *err, size_t errlen);
/* Appends the JSON value v (from src) without the listed object keys, at any depth. */
void  provider_put_json_without(buf_t *out, const char *src, const json_value *v, const char *const *drop);

extern const provider provider_openai;
extern const provider provider_openai_compatible;
extern const provider provider_mock;
extern const provider provider_anthropic;
extern const provider provider_gemini;
extern const provider provider_ollama;
extern const provider provider_azure;
extern const provider provider_bedrock;

/* Request bodies, exposed for the golden tests. */
int anthropic_build_body(const chat_req *q, const char *model, buf_t *out, char *err, size_t errlen);
int gemini_build_body(const chat_req *q, buf_t *out, char *err, size_t errlen);
int ollama_build_body(const chat_req *q, const char *model, buf_t *out, char *err, size_t errlen);
int bedrock_build_body(const chat_req *q, buf_t *out, char *err, size_t errlen);
/* Bedrock's ConverseStream decoder, exposed for its fuzz target. */
void *bedrock_stream_new(void);
int   bedrock_stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud);
int   bedrock_stream_end(void *st, chat_emit_fn emit, void *ud);
void  bedrock_stream_free(void *st);

#endif
