#include "usage.h"

#include <string.h>

static long int_member(const json_value *o, const char *k)
{
    const json_value *v = json_get(o, k);
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 ? (long)v->i64 : 0;
}

static int usage_from_object(const json_value *us, usage_t *u)
{
    if (!us || us->type != JSON_OBJECT) return -1;
    u->prompt_tokens = int_member(us, "prompt_tokens");
    u->completion_tokens = int_member(us, "completion_tokens");
    const json_value *d = json_get(us, "prompt_tokens_details");
    u->cached_tokens = d && d->type == JSON_OBJECT ? int_member(d, "cached_tokens") : 0;
    u->present = 1;
    return 0;
}

int usage_from_json(const json_value *root, usage_t *u)
{
    return usage_from_object(json_get(root, "usage"), u);
}

/* The usage object is small and near the end of a response: find the last
 * "usage" key and parse only the object after it, not the whole completion. */
int usage_from_bytes(const char *p, size_t n, usage_t *u)
{
    /* The usage object is last in a response or a chunk: look in the tail
     * first (memmem is vectorised), then in the whole body; take the last hit. */
    const char *k = NULL;
    size_t from = n > 1024 ? n - 1024 : 0;
    for (int pass = 0; pass < 2 && !k; pass++, from = 0) {
        for (const char *s = p + from; (s = memmem(s, n - (size_t)(s - p), "\"usage\"", 7)); s += 7) k = s;
        if (from == 0) break;
    }
    if (!k) return -1;
    const char *q = k + 7, *end = p + n;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
    if (q >= end || *q != ':') return -1;
    q++;
    while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')) q++;
    if (q >= end || *q != '{') return -1;
    /* find the matching brace; strings may hold braces */
    int depth = 0, in_str = 0;
    const char *o = q;
    for (; q < end; q++) {
        char c = *q;
        if (in_str) {
            if (c == '\\') q++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') in_str = 1;
        else if (c == '{') depth++;
        else if (c == '}' && --depth == 0) break;
    }
    if (q >= end) return -1;
    json_limits lim = { .max_depth = 8, .max_bytes = 0 };
    json_doc *d = json_parse(o, (size_t)(q - o) + 1, &lim, NULL);
    if (!d) return -1;
    int rc = usage_from_object(json_root(d), u);
    json_doc_free(d);
    return rc;
}
