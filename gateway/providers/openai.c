/* openai and openai_compatible: the same dialect as the client, so the body
 * is forwarded as it came with only "model" rewritten, and the response is
 * relayed byte for byte (the pass-through path). */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sse.h"

static int prepare_common(gw_deployment *d, const char *default_base, char *err, size_t errlen)
{
    if (provider_base_url(d, default_base, err, errlen) < 0) return -1;
    if (d->api_key) {
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "Authorization: Bearer %s", d->api_key) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->auth_header = buf_steal(&b);
    }
    return 0;
}

static int prepare_openai(gw_deployment *d, char *err, size_t errlen)
{
    return prepare_common(d, "https://api.openai.com/v1", err, errlen);
}

/* OpenAI-compatible services by name: "preset: groq" stands for its base URL. */
static const struct { const char *name, *base_url; } presets[] = {
    { "groq", "https://api.groq.com/openai/v1" },
    { "mistral", "https://api.mistral.ai/v1" },
    { "deepinfra", "https://api.deepinfra.com/v1/openai" },
    { "together", "https://api.together.xyz/v1" },
    { "fireworks", "https://api.fireworks.ai/inference/v1" },
    { "xai", "https://api.x.ai/v1" },
    { "openrouter", "https://openrouter.ai/api/v1" },
    { "cerebras", "https://api.cerebras.ai/v1" },
    { "vllm", "http://127.0.0.1:8000/v1" },
};

const char *openai_preset_base_url(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return presets[i].base_url;
    return NULL;
}

static int prepare_compatible(gw_deployment *d, char *err, size_t errlen)
{
    const char *base = NULL;
    if (d->preset && !(base = openai_preset_base_url(d->preset))) {
        snprintf(err, errlen, "unknown preset \"%s\" (known: groq, mistral, deepinfra, together, fireworks, xai, "
                 "openrouter, cerebras, vllm)", d->preset);
        return -1;
    }
    return prepare_common(d, base, err, errlen);
}

static const char *route_path(gw_route r)
{
    switch (r) {
    case ROUTE_CHAT: case ROUTE_MESSAGES: case ROUTE_RESPONSES: return "/chat/completions";
    case ROUTE_COMPLETIONS: return "/completions";
    case ROUTE_EMBEDDINGS: return "/embeddings";
    }
    return "/";
}

static int build(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    int h = 0;
    /* OpenAI and compatible servers (vLLM, Groq, ...) stream usage on request */
    int inject = call->stream && call->want_usage && call->route != ROUTE_EMBEDDINGS;
    buf_reset(&out->url);
    if (buf_puts(&out->url, d->base_url) < 0 || buf_puts(&out->url, route_path(call->route)) < 0 ||
        provider_rewrite_body(call, d->model, inject, &out->body) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* every extra header costs curl a scan per header it checks: keep only what matters */
    out->headers[h++] = "Content-Type: application/json";
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    out->same_dialect = 1;
    out->usage_injected = inject;
    return 0;
}

/* ---- the translated path: an Anthropic client in front of an OpenAI-dialect provider ---- */

static void put_str(buf_t *b, gw_str s) { buf_json_str(b, s.p ? s.p : "", s.n); }

static void put_content(buf_t *b, const chat_msg *m)
{
    size_t ntext = 0, nimg = 0;
    for (size_t i = 0; i < m->nparts; i++) {
        ntext += m->parts[i].kind == PART_TEXT;
        nimg += m->parts[i].kind == PART_IMAGE;
    }
    if (nimg == 0 && ntext <= 1) {
        for (size_t i = 0; i < m->nparts; i++)
            if (m->parts[i].kind == PART_TEXT) { put_str(b, m->parts[i].text); return; }
        buf_puts(b, m->role == ROLE_ASSISTANT ? "null" : "\"\"");
        return;
    }
    buf_putc(b, '[');
    int first = 1;
    for (size_t i = 0; i < m->nparts; i++) {
        const chat_part *p = &m->parts[i];
        if (p->kind != PART_TEXT && p->kind != PART_IMAGE) continue;
        if (!first) buf_putc(b, ',');
        first = 0;
        if (p->kind == PART_TEXT) {
            buf_puts(b, "{\"type\":\"text\",\"text\":");
            put_str(b, p->text);
            buf_putc(b, '}');
        } else {
            buf_puts(b, "{\"type\":\"image_url\",\"image_url\":{\"url\":");
            if (p->url.p) put_str(b, p->url);
            else {
                buf_t u; buf_init(&u);
                buf_puts(&u, "data:");
                buf_append(&u, p->media_type.p, p->media_type.n);
                buf_puts(&u, ";base64,");
                buf_append(&u, p->data.p, p->data.n);
                buf_json_str(b, u.data ? u.data : "", u.len);
                if (u.oom) b->oom = 1;
                buf_free(&u);
            }
            buf_puts(b, "}}");
        }
    }
    buf_putc(b, ']');
}

int openai_build_chat_body(const provider_call *call, const char *model, buf_t *b, char *err, size_t errlen)
{
    const chat_req *q = call->chat;
    buf_reset(b);
    buf_puts(b, "{\"model\":");
    buf_json_str(b, model, strlen(model));
    buf_puts(b, ",\"messages\":[");
    int first = 1;
    if (q->system.len) {
        buf_puts(b, "{\"role\":\"system\",\"content\":");
        buf_json_str(b, q->system.data, q->system.len);
        buf_putc(b, '}');
        first = 0;
    }
    for (size_t i = 0; i < q->nmsgs; i++) {
        const chat_msg *m = &q->msgs[i];
        if (!first) buf_putc(b, ',');
        first = 0;
        if (m->role == ROLE_TOOL) {
            buf_puts(b, "{\"role\":\"tool\",\"tool_call_id\":");
            put_str(b, m->parts[0].id);
            buf_puts(b, ",\"content\":");
            put_str(b, m->parts[0].text);
            buf_putc(b, '}');
            continue;
        }
        buf_puts(b, m->role == ROLE_USER ? "{\"role\":\"user\",\"content\":" : "{\"role\":\"assistant\",\"content\":");
        put_content(b, m);
        int ncalls = 0;
        for (size_t k = 0; k < m->nparts; k++) {
            const chat_part *p = &m->parts[k];
            if (p->kind != PART_TOOL_CALL) continue;
            buf_puts(b, ncalls++ ? ",{\"id\":" : ",\"tool_calls\":[{\"id\":");
            put_str(b, p->id);
            buf_puts(b, ",\"type\":\"function\",\"function\":{\"name\":");
            put_str(b, p->name);
            buf_puts(b, ",\"arguments\":");
            put_str(b, p->args);
            buf_puts(b, "}}");
        }
        if (ncalls) buf_putc(b, ']');
        buf_putc(b, '}');
    }
    buf_putc(b, ']');
    if (q->ntools) {
        buf_puts(b, ",\"tools\":[");
        for (size_t i = 0; i < q->ntools; i++) {
            const chat_tool *t = &q->tools[i];
            buf_puts(b, i ? ",{\"type\":\"function\",\"function\":{\"name\":" : "{\"type\":\"function\",\"function\":{\"name\":");
            put_str(b, t->name);
            if (t->description.p) { buf_puts(b, ",\"description\":"); put_str(b, t->description); }
            if (t->parameters) {
                buf_puts(b, ",\"parameters\":");
                buf_append(b, t->src + t->parameters->start, t->parameters->end - t->parameters->start);
            }
            buf_puts(b, "}}");
        }
        buf_putc(b, ']');
    }
    switch (q->tool_choice) {
    case TOOL_CHOICE_AUTO: buf_puts(b, ",\"tool_choice\":\"auto\""); break;
    case TOOL_CHOICE_NONE: buf_puts(b, ",\"tool_choice\":\"none\""); break;
    case TOOL_CHOICE_REQUIRED: buf_puts(b, ",\"tool_choice\":\"required\""); break;
    case TOOL_CHOICE_NAMED:
        buf_puts(b, ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":");
        put_str(b, q->tool_choice_name);
        buf_puts(b, "}}");
        break;
    case TOOL_CHOICE_UNSET: break;
    }
    if (q->parallel_tool_calls == 0 && q->ntools) buf_puts(b, ",\"parallel_tool_calls\":false");
    if (q->has_temperature) buf_printf(b, ",\"temperature\":%.17g", q->temperature);
    if (q->has_top_p) buf_printf(b, ",\"top_p\":%.17g", q->top_p);
    if (q->has_seed) buf_printf(b, ",\"seed\":%lld", q->seed);
    /* OpenAI's reasoning models take only max_completion_tokens; compatible servers know max_tokens */
    if (q->max_tokens > 0)
        buf_printf(b, call->dep && call->dep->provider == &provider_openai ? ",\"max_completion_tokens\":%ld" : ",\"max_tokens\":%ld",
                   q->max_tokens);
    if (q->nstop) {
        buf_puts(b, ",\"stop\":[");
        for (size_t i = 0; i < q->nstop; i++) { if (i) buf_putc(b, ','); put_str(b, q->stop[i]); }
        buf_putc(b, ']');
    }
    if (q->response_format == RESPONSE_JSON_OBJECT) buf_puts(b, ",\"response_format\":{\"type\":\"json_object\"}");
    if (q->response_format == RESPONSE_JSON_SCHEMA) {
        buf_puts(b, ",\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":");
        put_str(b, q->response_schema_name.p ? q->response_schema_name : (gw_str){ "response", 8 });
        buf_puts(b, ",\"schema\":");
        buf_append(b, q->src + q->response_schema->start, q->response_schema->end - q->response_schema->start);
        buf_puts(b, "}}");
    }
    if (q->user.p) { buf_puts(b, ",\"user\":"); put_str(b, q->user); }
    /* the gateway needs usage for accounting whether or not the client asked */
    if (q->stream) buf_puts(b, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
    buf_putc(b, '}');
    if (b->oom) { snprintf(err, errlen, "out of memory"); return -1; }
    return 0;
}

static int build_chat(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    int h = 0;
    buf_reset(&out->url);
    if (buf_puts(&out->url, d->base_url) < 0 || buf_puts(&out->url, "/chat/completions") < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (openai_build_chat_body(call, d->model, &out->body, err, errlen) < 0) return -1;
    out->headers[h++] = "Content-Type: application/json";
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    return 0;
}

static chat_finish finish_of(const char *s)
{
    if (!s) return FINISH_NONE;
    if (!strcmp(s, "length")) return FINISH_LENGTH;
    if (!strcmp(s, "tool_calls") || !strcmp(s, "function_call")) return FINISH_TOOL_CALLS;
    if (!strcmp(s, "content_filter")) return FINISH_CONTENT_FILTER;
    return FINISH_STOP;
}

static long count_of(const json_value *o, const char *k)
{
    const json_value *v = o ? json_get(o, k) : NULL;
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 && v->i64 < (1LL << 40) ? (long)v->i64 : 0;
}

static void usage_of(const json_value *u, long *prompt, long *completion, long *cached)
{
    *prompt = count_of(u, "prompt_tokens");
    *completion = count_of(u, "completion_tokens");
    *cached = count_of(json_get(u, "prompt_tokens_details"), "cached_tokens");
}

#define RESPONSE_LIMITS { .max_depth = 64, .max_bytes = 0 }

int openai_parse_response(const char *body, size_t len, chat_resp *r, char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_error je;
    json_doc *doc = json_parse(body, len, &lim, &je);
    if (!doc) { snprintf(err, errlen, "the provider's answer is not valid JSON (%s at byte %zu)", je.message, je.offset); return -1; }
    const json_value *root = json_root(doc);
    const json_value *choices = json_get(root, "choices");
    const json_value *c0 = choices ? json_at(choices, 0) : NULL;
    const json_value *msg = c0 ? json_get(c0, "message") : NULL;
    int rc = -1;
    if (!msg || msg->type != JSON_OBJECT) { snprintf(err, errlen, "the provider's answer has no choices[0].message"); goto out; }
    const char *id = json_get_str(root, "id");
    if (id && !(r->id = strdup(id))) goto oom;
    const json_value *content = json_get(msg, "content");
    if (content && content->type == JSON_STRING && buf_append(&r->text, content->str, content->str_len) < 0) goto oom;
    const json_value *calls = json_get(msg, "tool_calls");
    for (const json_value *c = calls && calls->type == JSON_ARRAY ? calls->first : NULL; c; c = c->next) {
        const json_value *fn = json_get(c, "function");
        const json_value *cid = json_get(c, "id"), *name = fn ? json_get(fn, "name") : NULL;
        const json_value *args = fn ? json_get(fn, "arguments") : NULL;
        if (!cid || cid->type != JSON_STRING || !name || name->type != JSON_STRING) {
            snprintf(err, errlen, "the provider's answer has a tool call without id or name");
            goto out;
        }
        const char *a = args && args->type == JSON_STRING ? args->str : "{}";
        if (chat_resp_add_call(r, cid->str, cid->str_len, name->str, name->str_len, a, strlen(a)) < 0) {
            snprintf(err, errlen, "the provider's answer has too many tool calls");
            goto out;
        }
    }
    r->finish = finish_of(json_get_str(c0, "finish_reason"));
    const json_value *u = json_get(root, "usage");
    if (u && u->type == JSON_OBJECT) {
        usage_of(u, &r->usage.prompt_tokens, &r->usage.completion_tokens, &r->usage.cached_tokens);
        r->usage.present = 1;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    json_doc_free(doc);
    return rc;
}

void openai_error_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(body, len, &lim, NULL);
    const json_value *e = doc ? json_get(json_root(doc), "error") : NULL;
    const char *m = e && e->type == JSON_OBJECT ? json_get_str(e, "message") : (e && e->type == JSON_STRING ? e->str : NULL);
    snprintf(msg, msglen, "%s", m ? m : "");
    json_doc_free(doc);
}

typedef struct oai_stream {
    provider_sse_stream base;   /* first: the shared SSE framing */
    int          done, finished;
} oai_stream;


static void oai_on_event(void *ud, const char *event, const char *data, size_t len)
{
    oai_stream *s = ud;
    (void)event;
    if (s->base.failed || s->done) return;
    if (len == 6 && !memcmp(data, "[DONE]", 6)) { s->done = 1; return; }
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(data, len, &lim, NULL);
    if (!doc || json_root(doc)->type != JSON_OBJECT) { s->base.failed = 1; json_doc_free(doc); return; }
    const json_value *root = json_root(doc);
    const json_value *e = json_get(root, "error");
    if (e) {
        const char *m = e->type == JSON_OBJECT ? json_get_str(e, "message") : NULL;
        chat_event ev = { .type = CEV_ERROR, .text = { m ? m : "the provider reported an error", m ? strlen(m) : 30 } };
        s->base.emit(s->base.ud, &ev);
        s->base.failed = 1;
        json_doc_free(doc);
        return;
    }
    const json_value *choices = json_get(root, "choices");
    const json_value *c0 = choices ? json_at(choices, 0) : NULL;
    const json_value *delta = c0 ? json_get(c0, "delta") : NULL;
    if (delta && delta->type == JSON_OBJECT) {
        const json_value *content = json_get(delta, "content");
        if (content && content->type == JSON_STRING && content->str_len) {
            chat_event ev = { .type = CEV_TEXT, .text = { content->str, content->str_len } };
            s->base.emit(s->base.ud, &ev);
        }
        const json_value *calls = json_get(delta, "tool_calls");
        for (const json_value *c = calls && calls->type == JSON_ARRAY ? calls->first : NULL; c; c = c->next) {
            const json_value *idx = json_get(c, "index"), *fn = json_get(c, "function");
            const json_value *cid = json_get(c, "id"), *name = fn ? json_get(fn, "name") : NULL;
            const json_value *args = fn ? json_get(fn, "arguments") : NULL;
            if (!idx || idx->type != JSON_NUMBER || !idx->is_int || idx->i64 < 0 || idx->i64 >= CHAT_MAX_TOOL_CALLS) { s->base.failed = 1; break; }
            if (cid && cid->type == JSON_STRING && name && name->type == JSON_STRING) {
                chat_event ev = { .type = CEV_TOOL_START, .index = (int)idx->i64,
                                  .id = { cid->str, cid->str_len }, .name = { name->str, name->str_len } };
                s->base.emit(s->base.ud, &ev);
            }
            if (args && args->type == JSON_STRING && args->str_len) {
                chat_event ev = { .type = CEV_TOOL_ARGS, .index = (int)idx->i64, .text = { args->str, args->str_len } };
                s->base.emit(s->base.ud, &ev);
            }
        }
    } else if (c0 && c0->type == JSON_OBJECT) {
        const json_value *t = json_get(c0, "text");   /* legacy completions */
        if (t && t->type == JSON_STRING && t->str_len) {
            chat_event ev = { .type = CEV_TEXT, .text = { t->str, t->str_len } };
            s->base.emit(s->base.ud, &ev);
        }
    }
    const char *fr = c0 ? json_get_str(c0, "finish_reason") : NULL;
    if (fr) {
        chat_event ev = { .type = CEV_FINISH, .finish = finish_of(fr) };
        s->base.emit(s->base.ud, &ev);
        s->finished = 1;
    }
    const json_value *u = json_get(root, "usage");
    if (u && u->type == JSON_OBJECT) {
        chat_event ev = { .type = CEV_USAGE };
        usage_of(u, &ev.prompt_tokens, &ev.completion_tokens, &ev.cached_tokens);
        s->base.emit(s->base.ud, &ev);
    }
    json_doc_free(doc);
}

void *openai_stream_new(void) { return provider_sse_stream_new(sizeof(oai_stream), oai_on_event); }

int openai_stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud)
{
    return provider_sse_stream_feed(st, p, n, emit, ud);
}

int openai_stream_end(void *st, chat_emit_fn emit, void *ud)
{
    const oai_stream *s = st;
    return provider_sse_stream_end(st, emit, ud) == 0 && (s->done || s->finished) ? 0 : -1;
}

void openai_stream_free(void *st) { provider_sse_stream_free(st); }

#define OPENAI_DIALECT_OPS \
    .dialect = DIALECT_OPENAI, .build = build, .build_chat = build_chat, .parse_response = openai_parse_response, \
    .stream_new = openai_stream_new, .stream_feed = openai_stream_feed, .stream_end = openai_stream_end, \
    .stream_free = openai_stream_free, .error_message = openai_error_message

const provider provider_openai = { .name = "openai", .prepare = prepare_openai, OPENAI_DIALECT_OPS };
const provider provider_openai_compatible = { .name = "openai_compatible", .prepare = prepare_compatible, OPENAI_DIALECT_OPS };
