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

typedef struct edit { size_t start, end; const char *text; size_t len; const char *text2; } edit;

/* Copies the body with non-overlapping edits applied (sorted by start here). */
static int apply_edits(const provider_call *call, edit *e, size_t n, buf_t *out)
{
    if (n == 2 && e[1].start < e[0].start) { edit t = e[0]; e[0] = e[1]; e[1] = t; }
    size_t extra = 0, at = 0;
    for (size_t i = 0; i < n; i++) extra += e[i].len + 64;
    buf_reset(out);
    if (buf_reserve(out, call->body_len + extra) < 0) return -1;
    for (size_t i = 0; i < n; i++) {
        buf_append(out, call->body + at, e[i].start - at);
        if (e[i].text) buf_append(out, e[i].text, e[i].len);
        else buf_json_str(out, e[i].text2, e[i].len);
        at = e[i].end;
    }
    return buf_append(out, call->body + at, call->body_len - at);
}

int provider_rewrite_body(const provider_call *call, const char *model, int inject_usage, buf_t *out)
{
    static const char so_full[] = ",\"stream_options\":{\"include_usage\":true}";
    static const char so_obj[] = "{\"include_usage\":true}";
    static const char iu_first[] = "\"include_usage\":true,";
    edit e[2];
    size_t n = 0;
    e[n++] = (edit){ call->model->start, call->model->end, NULL, strlen(model), model };
    if (inject_usage) {
        const json_value *root = call->root;
        const json_value *so = json_get(root, "stream_options");
        const json_value *iu = so ? json_get(so, "include_usage") : NULL;
        if (!so) {
            /* before the root object's closing brace */
            e[n++] = (edit){ root->end - 1, root->end - 1, so_full, sizeof so_full - 1, NULL };
        } else if (so->type != JSON_OBJECT) {
            e[n++] = (edit){ so->start, so->end, so_obj, sizeof so_obj - 1, NULL };
        } else if (iu) {
            e[n++] = (edit){ iu->start, iu->end, "true", 4, NULL };
        } else {
            /* right after '{': with a comma unless the object is empty */
            e[n++] = (edit){ so->start + 1, so->start + 1, iu_first, sizeof iu_first - (so->count ? 1 : 2), NULL };
        }
    }
    return apply_edits(call, e, n, out);
}

int provider_rewrite_model(const provider_call *call, const char *model, buf_t *out)
{
    const json_value *m = call->model;
    buf_reset(out);
    if (buf_reserve(out, call->body_len + strlen(model) + 8) < 0) return -1;
    buf_append(out, call->body, m->start);
    buf_json_str(out, model, strlen(model));
    return buf_append(out, call->body + m->end, call->body_len - m->end);
}
