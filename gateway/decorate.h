/* decorate: an alias's prompt decoration (YAML `models[].prompt`).
 *
 * A system prompt prefix and suffix and default sampling parameters, applied
 * to the client's body before routing, so every deployment of the alias (and
 * a split or fallback alias it routes to) receives the same decorated
 * request whatever dialect it speaks: the pass-through path forwards the
 * rewritten bytes, the translated path parses them. A default is added only
 * when the client did not set that parameter.
 */
#ifndef GW_DECORATE_H
#define GW_DECORATE_H

#include <stddef.h>

#include "buf.h"
#include "json.h"
#include "promptcfg.h"

/* The body decorated for the client's dialect (anthropic: /v1/messages, else
 * an OpenAI chat or completions body); 1 written to out, 0 nothing to change,
 * -1 out of memory. src/len is the body root was parsed from. */
int  decorate_body(const gw_prompt *p, int anthropic, const char *src, size_t len, const json_value *root, buf_t *out);

/* The same decoration on a request already in the internal chat form (the
 * Responses API, whose body is not a chat body): the system prompt gets the
 * prefix and suffix, and temperature, top_p, top_k, max_tokens (or
 * max_completion_tokens) and seed their defaults when unset. The penalties
 * have no place in the chat form and are not applied. -1 out of memory. */
struct chat_req;
int  decorate_chat(const gw_prompt *p, struct chat_req *q);

#endif
