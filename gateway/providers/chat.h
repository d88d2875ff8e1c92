/* chat: the one internal form every dialect translates through.
 *
 * Inbound adapters (inbound.c) turn an OpenAI chat / legacy completions or an
 * Anthropic Messages request into a chat_req; outbound providers render a
 * chat_req in their own wire format, parse their answer into a chat_resp and
 * decode their stream into chat_events; render.c writes a chat_resp or a run
 * of chat_events back in the client's dialect. N + M adapters, not N x M.
 *
 * Strings point into the client's parsed JSON (which outlives the chat_req)
 * or into memory the chat_req owns (chat_req_strdup); nothing is copied twice.
 */
#ifndef GW_CHAT_H
#define GW_CHAT_H

#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "usage.h"

typedef struct gw_str { const char *p; size_t n; } gw_str;

typedef enum { PART_TEXT, PART_IMAGE, PART_TOOL_CALL, PART_TOOL_RESULT } chat_part_kind;

typedef struct chat_part {
    chat_part_kind kind;
    gw_str text;          /* TEXT; TOOL_RESULT: the result as text */
    /* IMAGE: a URL (http(s)) or inline base64 data with its media type */
    gw_str url;
    gw_str media_type;
    gw_str data;
    /* TOOL_CALL: id, name, arguments as JSON object text; TOOL_RESULT: id */
    gw_str id;
    gw_str name;
    gw_str args;
    int    is_error;      /* TOOL_RESULT */
} chat_part;

typedef enum { ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL } chat_role;

typedef struct chat_msg {
    chat_role  role;
    chat_part *parts;
    size_t     nparts;
} chat_msg;

typedef struct chat_tool {
    gw_str            name;
    gw_str            description;
    const json_value *parameters;   /* JSON Schema object, or NULL */
    const char       *src;          /* the document parameters' spans refer to */
} chat_tool;

typedef enum { TOOL_CHOICE_UNSET, TOOL_CHOICE_AUTO, TOOL_CHOICE_NONE, TOOL_CHOICE_REQUIRED, TOOL_CHOICE_NAMED } chat_tool_choice;
typedef enum { RESPONSE_TEXT, RESPONSE_JSON_OBJECT, RESPONSE_JSON_SCHEMA } chat_response_format;

#define CHAT_MAX_STOP 8

typedef struct chat_req {
    const char      *src;            /* the client's body: spans (args, schemas) refer to it */
    chat_msg        *msgs;
    size_t           nmsgs;
    buf_t            system;         /* system prompt(s), joined with "\n\n" */
    chat_tool       *tools;
    size_t           ntools;
    chat_tool_choice tool_choice;
    gw_str           tool_choice_name;
    int              parallel_tool_calls;   /* -1 unset, 0, 1 */
    chat_response_format response_format;
    const json_value *response_schema;      /* RESPONSE_JSON_SCHEMA: the schema object */
    gw_str           response_schema_name;
    int              has_temperature, has_top_p, has_top_k, has_seed;
    double           temperature, top_p;
    long             top_k;
    long long        seed;
    long             max_tokens;     /* -1: not given */
    gw_str           stop[CHAT_MAX_STOP];
    size_t           nstop;
    int              stream;
    int              include_usage;  /* the client asked for usage in the stream */
    gw_str           user;
    int              legacy_completion;   /* came in as /v1/completions */
    struct chat_responses *responses;     /* came in as /v1/responses (responses_in.c), else NULL */
    /* allocations the request owns (strings built while parsing) */
    struct chat_owned *owned;
} chat_req;

void        chat_req_init(chat_req *r);
void        chat_req_free(chat_req *r);
/* A copy owned by r (freed with it); NULL on out of memory. */
const char *chat_req_strdup(chat_req *r, const char *s, size_t n);
/* The name of the tool call a tool result answers (Gemini and Ollama name
 * results by function, not by call id); {NULL,0} if no earlier call has it. */
gw_str      chat_req_tool_name(const chat_req *r, gw_str call_id);

/* ---- answers ---- */

typedef enum { FINISH_NONE, FINISH_STOP, FINISH_LENGTH, FINISH_TOOL_CALLS, FINISH_CONTENT_FILTER } chat_finish;

typedef struct chat_tool_call {
    char  *id;
    char  *name;
    buf_t  args;
} chat_tool_call;

#define CHAT_MAX_TOOL_CALLS 64

typedef struct chat_resp {
    char           *id;
    buf_t           text;
    chat_tool_call  calls[CHAT_MAX_TOOL_CALLS];
    size_t          ncalls;
    chat_finish     finish;
    usage_t         usage;
} chat_resp;

void chat_resp_init(chat_resp *r);
void chat_resp_free(chat_resp *r);
/* Appends a tool call; -1 when there are too many or memory ran out. */
int  chat_resp_add_call(chat_resp *r, const char *id, size_t idn, const char *name, size_t namen,
                        const char *args, size_t argsn);

const char *chat_finish_openai(chat_finish f);     /* "stop", "length", "tool_calls", "content_filter" */
const char *chat_finish_anthropic(chat_finish f);  /* "end_turn", "max_tokens", "tool_use", "refusal" */

/* ---- streams ---- */

typedef enum {
    CEV_TEXT,          /* text delta */
    CEV_TOOL_START,    /* a tool call begins: index, id, name */
    CEV_TOOL_ARGS,     /* argument JSON fragment for tool call index */
    CEV_FINISH,        /* finish reason known */
    CEV_USAGE,         /* usage so far (fields < 0 are unknown, keep the previous value) */
    CEV_ERROR          /* the provider reported an error mid-stream: text is its message */
} chat_event_type;

typedef struct chat_event {
    chat_event_type type;
    int             index;
    gw_str          text;     /* TEXT, TOOL_ARGS, ERROR */
    gw_str          id, name; /* TOOL_START */
    chat_finish     finish;
    long            prompt_tokens, completion_tokens, cached_tokens;   /* USAGE */
} chat_event;

typedef void (*chat_emit_fn)(void *ud, const chat_event *ev);

/* Generated ids for calls a provider does not name (Gemini, Ollama): "call_<n>_<idx>". */
void chat_call_id(char *out, size_t len, unsigned long long seq, int index);



/* ---- inbound adapters (inbound.c) ----
 * 0 ok; -1 with a message for a 400 and the offending parameter (or NULL).
 * root must outlive out (strings point into it); src is the body root came from. */
int chat_from_openai(const json_value *root, const char *src, int legacy_completion, chat_req *out,
                     char *msg, size_t msglen, const char **param);
int chat_from_anthropic(const json_value *root, const char *src, chat_req *out,
                        char *msg, size_t msglen, const char **param);

/* OpenAI Responses (/v1/responses). What the dialect carries besides the chat:
 * the members the answer echoes, the conversation's input items (kept with a
 * stored answer) and the stored previous response the chat may point into. */
typedef struct chat_responses {
    buf_t     echo;          /* ,"instructions":...,"tools":[...],... members of the response object */
    buf_t     input;         /* the conversation's input items, a JSON array (previous ones first) */
    int       store;         /* keep the answer (store, default true) */
    char      subject[72];   /* whose answer it is (set by the gateway; only that key reads it back) */
    char     *prev_src;      /* the stored previous response ({"input":[..],"response":{..}}) */
    json_doc *prev;          /* ... parsed: the chat's strings point into it */
} chat_responses;

/* prev: the stored previous response's {"input":[...],"response":{...}} root
 * (its input and output items come first), or NULL. */
int  chat_from_responses(const json_value *root, const char *src, const json_value *prev, const char *prev_src,
                         chat_req *out, char *msg, size_t msglen, const char **param);
void chat_responses_free(chat_responses *x);

/* ---- client dialects (render.c) ---- */

typedef enum { CLIENT_OPENAI_CHAT, CLIENT_OPENAI_COMPLETIONS, CLIENT_ANTHROPIC, CLIENT_OPENAI_RESPONSES } chat_client;

/* A whole answer as the client's dialect has it (chat.completion,
 * text_completion or an Anthropic message); id and model are what the
 * client sees. -1 on out of memory. */
int chat_render_response(chat_client cl, const chat_resp *r, const char *id, const char *model, buf_t *out);

/* A stream in the client's dialect, written event by event. */
typedef struct chat_enc {
    chat_client cl;
    const char *model;
    char        id[64];
    long        created;
    int         include_usage;
    int         started;        /* first chunk / message_start written */
    int         block_open;     /* Anthropic: a content block is open */
    int         block_tool;     /* ... and it is the tool call with index block_tool_index */
    int         block_tool_index;
    int         next_block;     /* Anthropic: index of the next content block */
    int         finished;       /* a finish was written (OpenAI) / known (Anthropic) */
    chat_finish finish;
    usage_t     usage;
    size_t      ntools;         /* tool calls started */
    const char *echo;           /* Responses: the request's echoed members (chat_responses.echo), or NULL */
    struct rsp_enc *rsp;        /* Responses: items and sequence numbers (render_responses.c) */
} chat_enc;

void chat_enc_init(chat_enc *e, chat_client cl, const char *id, const char *model, int include_usage);
void chat_enc_event(chat_enc *e, const chat_event *ev, buf_t *out);
/* Ends the stream: error NULL for a clean end, else the message of an error
 * event in the client's dialect (the status line has already gone). */
void chat_enc_end(chat_enc *e, const char *error, buf_t *out);
void chat_enc_free(chat_enc *e);

/* Responses (render_responses.c): the whole answer object, echo as in
 * chat_responses.echo (NULL: the defaults). created: Unix seconds. */
int  rsp_render_response(const chat_resp *r, const char *id, const char *model, const char *echo, long created,
                         buf_t *out);
void rsp_enc_start(chat_enc *e);
void rsp_enc_event(chat_enc *e, const chat_event *ev, buf_t *out);
void rsp_enc_end(chat_enc *e, const char *error, buf_t *out);
/* After a clean end: the final response object (what response.completed carried), or NULL. */
const buf_t *rsp_enc_final(const chat_enc *e);

#endif
