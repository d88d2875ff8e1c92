/* guardjson: where the text is in requests, answers and streams, and
 * rewriting it in place.
 *
 * Bodies are parsed (json.h keeps every value's byte span), each text
 * string goes through guard_text(), and only changed strings are spliced
 * back into the original bytes, so everything else (fields a provider needs,
 * number formatting) is forwarded as it came and the result is valid JSON
 * for pass-through and translated calls alike.
 *
 * Text is: chat messages' content (string or text parts) and tool-call
 * arguments, the legacy prompt, /v1/messages system and content blocks
 * (text, tool_result content), embeddings input; in answers the choices'
 * message content / tool-call arguments / text and Anthropic's content
 * blocks; in streams OpenAI's choices[].delta.content / text and tool-call
 * arguments, per choice and tool call, and Anthropic's text_delta and
 * input_json_delta per block.
 */
#ifndef GW_GUARDJSON_H
#define GW_GUARDJSON_H

#include <stddef.h>

#include "buf.h"
#include "guard.h"
#include "json.h"

/* The request body (route: providers/chat.h's gw_route as an int). Returns
 * 1 with the rewritten body in out, 0 unchanged, -1 out of memory. The text
 * seen is counted in res->bytes / res->chars (for the caps). */
int guardjson_input(const guard_chain *c, int route, const char *body, const json_value *root, buf_t *out,
                    guard_result *res);
/* A whole answer in the client's dialect: same contract. */
int guardjson_output(const guard_chain *c, const char *body, size_t len, buf_t *out, guard_result *res);

/* Replaces, in every text string of the request, each occurrence of the
 * given strings by placeholder (a webhook's "mask" verdict). */
int guardjson_mask_literals(int route, const char *body, const json_value *root, const char *const *lits, size_t n,
                            const char *placeholder, buf_t *out);

/* The request's text joined by newlines (what a webhook is sent). */
int guardjson_collect(int route, const json_value *root, buf_t *out);

#define GUARD_SSE_STREAMS 16  /* text streams (choices, tool calls' arguments, content blocks) at once */

typedef void (*guard_emit_fn)(void *ud, const char *p, size_t n);

/* A client-dialect SSE stream, rewritten event by event. */
typedef struct guard_sse {
    const guard_chain *chain;
    guard_result      *res;
    int                anthropic;
    int                blocked;     /* an output block ended it: the rest is dropped */
    buf_t              ev;          /* the event being read */
    struct {
        int          on;
        long         key;           /* which stream (guardjson.c: find_slot) */
        guard_stream gs;
        buf_t        tmpl;          /* the last text event of this index, for a synthetic flush */
        size_t       span_start, span_end;
    } s[GUARD_SSE_STREAMS];
    buf_t              tmp, text;
} guard_sse;

void guard_sse_init(guard_sse *g, const guard_chain *c, guard_result *res, int anthropic);
void guard_sse_free(guard_sse *g);
void guard_sse_feed(guard_sse *g, const char *p, size_t n, guard_emit_fn emit, void *ud);
/* The stream ended: releases held text (and a partial last event). */
void guard_sse_end(guard_sse *g, guard_emit_fn emit, void *ud);

#endif
