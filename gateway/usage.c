#include "usage.h"

#include <string.h>

static long int_member(const json_value *o, const char *k)
{
    const json_value *v = json_get(o, k);
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 ? (long)v->i64 : 0;
}

int usage_from_json(const json_value *root, usage_t *u)
{
    const json_value *us = json_get(root, "usage");
    if (!us || us->type != JSON_OBJECT) return -1;
    u->prompt_tokens = int_member(us, "prompt_tokens");
    u->completion_tokens = int_member(us, "completion_tokens");
    const json_value *d = json_get(us, "prompt_tokens_details");
    u->cached_tokens = d && d->type == JSON_OBJECT ? int_member(d, "cached_tokens") : 0;
    u->present = 1;
    return 0;
}

int usage_from_bytes(const char *p, size_t n, usage_t *u)
{
    if (!memmem(p, n, "\"usage\"", 7)) return -1;
    json_limits lim = { .max_depth = 32, .max_bytes = 0 };
    json_doc *d = json_parse(p, n, &lim, NULL);
    if (!d) return -1;
    int rc = usage_from_json(json_root(d), u);
    json_doc_free(d);
    return rc;
}
