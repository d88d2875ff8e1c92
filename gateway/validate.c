#include "validate.h"

#include <stdio.h>
#include <string.h>

static int bad(char *msg, size_t msglen, const char **param, const char *p, const char *text)
{
    *param = p;
    snprintf(msg, msglen, "%s", text);
    return -1;
}

static int validate_messages(const json_value *m, char *msg, size_t msglen, const char **param)
{
    if (!m) return bad(msg, msglen, param, "messages", "Missing required parameter: 'messages'.");
    if (m->type != JSON_ARRAY || m->count == 0)
        return bad(msg, msglen, param, "messages", "'messages' must be a non-empty array.");
    size_t i = 0;
    for (const json_value *e = m->first; e; e = e->next, i++) {
        const char *role = e->type == JSON_OBJECT ? json_get_str(e, "role") : NULL;
        if (!role) {
            *param = "messages";
            snprintf(msg, msglen, "'messages[%zu]' must be an object with a string 'role'.", i);
            return -1;
        }
    }
    return 0;
}

/* The name of a member the gateway decides on ("model", "stream",
 * "stream_options", "include_usage") that appears twice in obj, or NULL.
 * The gateway reads the first of duplicate members and most upstream JSON
 * parsers the last: {"model":"allowed",...,"model":"other"} would pass the
 * key's scope check and run "other" with the deployment's credentials. */
static const char *duplicate_member(const json_value *obj, const char *const *names)
{
    for (const char *const *n = names; *n; n++) {
        int seen = 0;
        for (const json_value *m = obj->first; m; m = m->next)
            if (!strcmp(m->key, *n) && seen++) return *n;
    }
    return NULL;
}

int validate_request(gw_route route, const json_value *root, validated *out,
                     char *msg, size_t msglen, const char **param)
{
    static const char *const top[] = { "model", "stream", "stream_options", NULL };
    static const char *const so_names[] = { "include_usage", NULL };
    *param = NULL;
    if (root->type != JSON_OBJECT) return bad(msg, msglen, param, NULL, "The request body must be a JSON object.");
    const char *dup = duplicate_member(root, top);
    const json_value *so = dup ? NULL : json_get(root, "stream_options");
    if (!dup && so && so->type == JSON_OBJECT && duplicate_member(so, so_names)) dup = "stream_options";
    if (dup) {
        *param = dup;
        snprintf(msg, msglen, "'%s' appears more than once.", dup);
        return -1;
    }
    out->model = json_get(root, "model");
    if (!out->model) return bad(msg, msglen, param, "model", "Missing required parameter: 'model'.");
    if (out->model->type != JSON_STRING || out->model->str_len == 0)
        return bad(msg, msglen, param, "model", "'model' must be a non-empty string.");
    const json_value *s = json_get(root, "stream");
    if (s && s->type != JSON_TRUE && s->type != JSON_FALSE && s->type != JSON_NULL)
        return bad(msg, msglen, param, "stream", "'stream' must be a boolean.");
    out->stream = s && s->type == JSON_TRUE;
    switch (route) {
    case ROUTE_CHAT:
        return validate_messages(json_get(root, "messages"), msg, msglen, param);
    case ROUTE_MESSAGES: {
        const json_value *mt = json_get(root, "max_tokens");
        if (!mt || mt->type != JSON_NUMBER || !mt->is_int || mt->i64 < 1)
            return bad(msg, msglen, param, "max_tokens", "max_tokens: Field required (a positive integer).");
        return validate_messages(json_get(root, "messages"), msg, msglen, param);
    }
    case ROUTE_RESPONSES:
        return 0;   /* the input items are checked as they are translated (responses_in.c) */
    case ROUTE_COMPLETIONS: {
        const json_value *p = json_get(root, "prompt");
        if (!p) return bad(msg, msglen, param, "prompt", "Missing required parameter: 'prompt'.");
        if (p->type != JSON_STRING && p->type != JSON_ARRAY)
            return bad(msg, msglen, param, "prompt", "'prompt' must be a string or an array.");
        return 0;
    }
    case ROUTE_EMBEDDINGS: {
        const json_value *in = json_get(root, "input");
        if (out->stream) return bad(msg, msglen, param, "stream", "Embeddings cannot be streamed.");
        if (!in) return bad(msg, msglen, param, "input", "Missing required parameter: 'input'.");
        if ((in->type != JSON_STRING && in->type != JSON_ARRAY) || (in->type == JSON_ARRAY && in->count == 0))
            return bad(msg, msglen, param, "input", "'input' must be a string or a non-empty array.");
        return 0;
    }
    }
    return 0;
}
