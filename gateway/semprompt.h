/* semprompt: what the semantic cache embeds, which requests it must leave
 * alone, and which requests may share answers at all.
 *
 * The text is every message's text, system prompt included, in one
 * canonical form ("role: text" lines, whitespace runs folded), so the same
 * conversation spelled with other spacing or content-part splits embeds the
 * same. Requests with tools or tool messages, non-text parts, a temperature
 * above the alias's bound, or a client opt-out are never answered from it.
 */
#ifndef GW_SEMPROMPT_H
#define GW_SEMPROMPT_H

#include <stdint.h>

#include "buf.h"
#include "json.h"

enum { SEM_SKIP_NONE, SEM_SKIP_OPTOUT, SEM_SKIP_TOOLS, SEM_SKIP_TEMPERATURE, SEM_SKIP_CONTENT, SEM_SKIP_EMBED,
       SEM_SKIP_KINDS };

#define SEMPROMPT_MAX_TEXT (64u << 10)   /* longer prompts are not embedded */

const char *semprompt_skip_name(int reason);   /* "optout", "tools", ... */

/* 1 when the client opted out: Cache-Control no-cache / no-store,
 * X-Gateway-Cache bypass / off / no-cache / no-store, or
 * X-Gateway-Semantic-Cache off. Any argument may be NULL. */
int semprompt_optout(const char *cache_control, const char *x_gateway_cache, const char *x_semantic);

/* SEM_SKIP_NONE with the canonical text appended to out, or the reason the
 * request is left alone. route: ROUTE_CHAT or ROUTE_MESSAGES (provider.h).
 * A temperature that is absent counts as 1.0, the providers' default. */
int semprompt_text(const json_value *root, int route, double max_temperature, buf_t *out);

/* The partition: namespace, alias, route, stream flag and every request
 * member that shapes the answer other than the conversation and sampling
 * (max_tokens, response_format, stop, n, ... must match exactly). */
void semprompt_partition(const json_value *root, int route, int stream, const char *alias, const char *ns,
                         uint8_t key[32]);

#endif
