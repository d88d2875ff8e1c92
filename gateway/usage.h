/* usage: the token counts a provider reported for one request. */
#ifndef GW_USAGE_H
#define GW_USAGE_H

#include <stddef.h>

#include "json.h"

typedef struct usage {
    long prompt_tokens;
    long completion_tokens;
    long cached_tokens;
    int  present;
} usage_t;

/* From an OpenAI-shaped object that has "usage" (a response or a stream chunk). */
int usage_from_json(const json_value *root, usage_t *u);
/* Same from raw bytes; cheap when there is no "usage" in them. */
int usage_from_bytes(const char *p, size_t n, usage_t *u);

#endif
