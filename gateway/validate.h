/* validate: checks an OpenAI-dialect request body before anything is spent
 * on it, so a client's mistake is a clear 400 naming the parameter. */
#ifndef GW_VALIDATE_H
#define GW_VALIDATE_H

#include <stddef.h>

#include "json.h"
#include "providers/provider.h"

typedef struct validated {
    const json_value *model;    /* the "model" string */
    int               stream;
} validated;

/* 0 if valid; -1 with a message and the offending parameter (or NULL). */
int validate_request(gw_route route, const json_value *root, validated *out,
                     char *msg, size_t msglen, const char **param);

#endif
