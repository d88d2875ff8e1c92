/* The table of known providers; a new provider adds one line here. */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const provider *const all[] = {
    &provider_openai,
    &provider_openai_compatible,
    &provider_mock,
    &provider_anthropic,
    &provider_gemini,
    &provider_ollama,
    &provider_azure,
    &provider_bedrock,
};

const provider *provider_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(all[i]->name, name)) return all[i];
    return NULL;
}

const char *provider_names(void) { return "openai, openai_compatible, mock, anthropic, gemini, ollama, azure, bedrock"; }

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

int provider_base_url(gw_deployment *d, const char *default_base, char *err, size_t errlen)
{
    if (!d->base_url) {
        if (!default_base) { snprintf(err, errlen, "base_url is required for provider %s", d->provider_name); return -1; }
        if (!(d->base_url = strdup(default_base))) { snprintf(err, errlen, "out of memory"); return -1; }
    }
    if (strncmp(d->base_url, "http://", 7) && strncmp(d->base_url, "https://", 8)) {
        snprintf(err, errlen, "base_url must start with http:// or https://");
        return -1;
    }
    size_t n = strlen(d->base_url);
    while (n > 0 && d->base_url[n - 1] == '/') d->base_url[--n] = '\0';
    return 0;
}

#define SSE_STREAM_MAX_EVENT (1u << 20)

void *provider_sse_stream_new(size_t size, sse_event_cb on_event)
{
    provider_sse_stream *s = calloc(1, size);
    if (s) sse_init(&s->sse, SSE_STREAM_MAX_EVENT, on_event, s);
    return s;
}

int provider_sse_stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud)
{
    provider_sse_stream *s = st;
    s->emit = emit;
    s->ud = ud;
    if (!s->failed) sse_feed(&s->sse, p, n);
    if (s->sse.dropped) s->failed = 1;
    return s->failed ? -1 : 0;
}

int provider_sse_stream_end(void *st, chat_emit_fn emit, void *ud)
{
    provider_sse_stream *s = st;
    s->emit = emit;
    s->ud = ud;
    if (!s->failed) sse_feed(&s->sse, "\n\n", 2);
    return s->failed ? -1 : 0;
}

void provider_sse_stream_free(void *st)
{
    provider_sse_stream *s = st;
    if (!s) return;
    sse_free(&s->sse);
    free(s);
}

int provider_put_turns(buf_t *b, const chat_req *q, const provider_turn_style *st, provider_part_fn put,
                       char *err, size_t errlen)
{
    buf_putc(b, '[');
    int open = 0, cur_user = 0, parts = 0;
    for (size_t i = 0; i < q->nmsgs; i++) {
        const chat_msg *m = &q->msgs[i];
        int user = m->role != ROLE_ASSISTANT;
        if (!open || user != cur_user) {
            if (open) {
                if (!parts) buf_puts(b, st->empty);
                buf_puts(b, st->close);
                buf_putc(b, ',');
            }
            buf_puts(b, user ? st->user_open : st->assistant_open);
            open = 1;
            cur_user = user;
            parts = 0;
        }
        for (size_t k = 0; k < m->nparts; k++) {
            int n = put(b, q, &m->parts[k], parts == 0, err, errlen);
            if (n < 0) return -1;
            parts += n;
        }
    }
    if (open) {
        if (!parts) buf_puts(b, st->empty);
        buf_puts(b, st->close);
    }
    buf_putc(b, ']');
    return 0;
}

void provider_put_args_object(buf_t *out, gw_str args)
{
    json_limits lim = { .max_depth = 64, .max_bytes = 0 };
    json_doc *d = args.n ? json_parse(args.p, args.n, &lim, NULL) : NULL;
    if (d && json_root(d)->type == JSON_OBJECT) buf_append(out, args.p, args.n);
    else buf_puts(out, "{}");
    json_doc_free(d);
}

void provider_put_json_without(buf_t *out, const char *src, const json_value *v, const char *const *drop)
{
    if (v->type == JSON_OBJECT) {
        int first = 1;
        buf_putc(out, '{');
        for (const json_value *m = v->first; m; m = m->next) {
            int skip = 0;
            for (const char *const *k = drop; *k && !skip; k++) skip = !strcmp(m->key, *k);
            if (skip) continue;
            if (!first) buf_putc(out, ',');
            first = 0;
            buf_json_str(out, m->key, m->key_len);
            buf_putc(out, ':');
            provider_put_json_without(out, src, m, drop);
        }
        buf_putc(out, '}');
    } else if (v->type == JSON_ARRAY) {
        buf_putc(out, '[');
        for (const json_value *e = v->first; e; e = e->next) {
            if (e != v->first) buf_putc(out, ',');
            provider_put_json_without(out, src, e, drop);
        }
        buf_putc(out, ']');
    } else {
        buf_append(out, src + v->start, v->end - v->start);
    }
}
