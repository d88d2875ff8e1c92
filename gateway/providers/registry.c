/* The table of known providers; a new provider adds one line here. */
#include "provider.h"

#include <string.h>

static const provider *const all[] = {
    &provider_openai,
    &provider_openai_compatible,
    &provider_mock,
};

const provider *provider_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(all[i]->name, name)) return all[i];
    return NULL;
}

const char *provider_names(void) { return "openai, openai_compatible, mock"; }

int provider_rewrite_model(const provider_call *call, const char *model, buf_t *out)
{
    const json_value *m = call->model;
    buf_reset(out);
    if (buf_reserve(out, call->body_len + strlen(model) + 8) < 0) return -1;
    buf_append(out, call->body, m->start);
    buf_json_str(out, model, strlen(model));
    return buf_append(out, call->body + m->end, call->body_len - m->end);
}
