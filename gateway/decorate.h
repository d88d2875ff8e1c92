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

#define PROMPT_TEXT_MAX    16384   /* bytes of a prefix or suffix */
#define PROMPT_MAX_DEFAULTS 8

typedef struct gw_prompt {
    char  *system_prefix;            /* NULL: none */
    char  *system_suffix;
    struct {
        int    id;                   /* index in decorate's table of parameters */
        double value;
    } defaults[PROMPT_MAX_DEFAULTS];
    size_t ndefaults;
} gw_prompt;

/* Sets one field by name: "system_prefix", "system_suffix" or
 * "defaults.<parameter>" (temperature, top_p, top_k, max_tokens,
 * max_completion_tokens, presence_penalty, frequency_penalty, seed) from its
 * text; -1 with the reason. YAML and the control plane's JSON both use it. */
int  prompt_set(gw_prompt *p, const char *key, const char *value, char *err, size_t errlen);
/* The decoration from the control plane's JSON object (same fields, defaults
 * as a nested object); NULL with the reason (or NULL and no reason for ""). */
gw_prompt *prompt_from_json(const char *text, char *err, size_t errlen);
void prompt_free(gw_prompt *p);

/* The body decorated for the client's dialect (anthropic: /v1/messages, else
 * an OpenAI chat or completions body); 1 written to out, 0 nothing to change,
 * -1 out of memory. src/len is the body root was parsed from. */
int  decorate_body(const gw_prompt *p, int anthropic, const char *src, size_t len, const json_value *root, buf_t *out);

#endif
