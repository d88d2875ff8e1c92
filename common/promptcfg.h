/* promptcfg: an alias's prompt decoration settings (YAML `models[].prompt`,
 * or the control plane's `prompt` object): a system prompt prefix and
 * suffix and default sampling parameters, checked the same way on both
 * sides. gateway/decorate.h applies them to request bodies. */
#ifndef GW_PROMPTCFG_H
#define GW_PROMPTCFG_H

#include <stddef.h>

#define PROMPT_TEXT_MAX     16384   /* bytes of a prefix or suffix */
#define PROMPT_MAX_DEFAULTS 8

typedef struct gw_prompt {
    char  *system_prefix;            /* NULL: none */
    char  *system_suffix;
    struct {
        int    id;                   /* index in prompt_param_* */
        double value;
    } defaults[PROMPT_MAX_DEFAULTS];
    size_t ndefaults;
} gw_prompt;

/* Sets one field by name: "system_prefix", "system_suffix" or
 * "defaults.<parameter>" (temperature, top_p, top_k, max_tokens,
 * max_completion_tokens, presence_penalty, frequency_penalty, seed) from its
 * text; -1 with the reason. */
int  prompt_set(gw_prompt *p, const char *key, const char *value, char *err, size_t errlen);
/* The settings from a JSON object (same fields, defaults as a nested
 * object); NULL with the reason (or NULL and no reason for ""). */
gw_prompt *prompt_from_json(const char *text, char *err, size_t errlen);
void prompt_free(gw_prompt *p);

/* The default parameters' table, for decorate.c. */
enum { PROMPT_FOR_CHAT = 1, PROMPT_FOR_MESSAGES = 2 };
const char *prompt_param_name(int id);
int         prompt_param_integer(int id);
int         prompt_param_dialects(int id);

#endif
