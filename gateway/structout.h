/* structout: structured outputs checked against the client's JSON schema.
 *
 * A chat request with response_format {type: "json_schema", json_schema:
 * {schema, strict: true}} gets its answer's content validated (jschema.h)
 * before anything is sent to the client; a violation is retried by the
 * request layer (router.schema_retries, default 1) and then answered 502
 * schema_validation_failed naming the first violation's JSON path.
 */
#ifndef GW_STRUCTOUT_H
#define GW_STRUCTOUT_H

#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "providers/provider.h"
#include "sse.h"

/* The schema a chat body asks its answer to follow in strict mode, or NULL. */
const json_value *structout_schema(const json_value *root);

enum { STRUCTOUT_OK = 1, STRUCTOUT_VIOLATION = 0 };

/* Checks a provider's whole 2xx answer (its own dialect, read with
 * p->parse_response). VIOLATION with a message naming the JSON path; OK also
 * when there is nothing to check (tool calls, an unreadable answer: the
 * normal path reports that) or the schema is too large to check. */
int structout_check(const provider *p, const json_value *schema, const char *body, size_t len,
                    char *msg, size_t msglen);
/* Same for the content text itself (streams). */
int structout_check_text(const json_value *schema, const char *text, size_t len, char *msg, size_t msglen);

/* Streams cannot be retried once the client has bytes: the content of a
 * streamed answer (the client's OpenAI chunks) is gathered as it is relayed
 * and checked at the end; the [DONE] is held back until then, and a
 * violation ends the stream with an error event (code
 * schema_validation_failed) instead, as a broken upstream stream does. */
#define STRUCTOUT_STREAM_MAX (1u << 20)   /* longer content is not checked */

typedef void (*structout_emit_fn)(void *ud, const char *p, size_t n);

typedef struct structout_stream {
    sse_parser        sse;
    buf_t             text;        /* choices[0].delta.content so far */
    int               too_large;
    int               done_seen;   /* the held-back [DONE] */
    structout_emit_fn emit;
    void             *ud;
} structout_stream;

void structout_stream_init(structout_stream *s, structout_emit_fn emit, void *ud);
/* Client-bound SSE bytes: every event is passed on to emit but [DONE]. */
void structout_stream_feed(structout_stream *s, const char *p, size_t n);
/* The stream's end (ok: it ended cleanly): emits [DONE], or the error event
 * for a violation (then returns VIOLATION with msg). */
int  structout_stream_end(structout_stream *s, const json_value *schema, int ok, char *msg, size_t msglen);
void structout_stream_free(structout_stream *s);

#endif
