/* gemini: the Gemini API (generateContent, streamGenerateContent?alt=sse).
 *
 * Contents with user/model roles and parts (text, inlineData, functionCall,
 * functionResponse), the system prompt as systemInstruction, tools as
 * functionDeclarations (with the JSON Schema keywords Gemini rejects left
 * out), sampling in generationConfig. Safety and recitation blocks become the
 * content_filter finish reason; Gemini names no tool calls, so the gateway
 * gives them ids.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "embed.h"
#include "sse.h"

#define RESPONSE_LIMITS { .max_depth = 64, .max_bytes = 0 }

static int prepare(gw_deployment *d, char *err, size_t errlen)
{
    if (provider_base_url(d, "https://generativelanguage.googleapis.com", err, errlen) < 0) return -1;
    if (d->api_key) {
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "x-goog-api-key: %s", d->api_key) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->auth_header = buf_steal(&b);
    }
    return 0;
}

static void put_str(buf_t *b, gw_str s) { buf_json_str(b, s.p ? s.p : "", s.n); }

/* Keywords of JSON Schema that Gemini's Schema object does not take. */
static const char *const schema_drop[] = {
    "additionalProperties", "$schema", "$id", "$defs", "definitions", "strict", "const", "examples",
    "exclusiveMinimum", "exclusiveMaximum", "patternProperties", "unevaluatedProperties", NULL
};

static int put_part(buf_t *b, const chat_req *q, const chat_part *p, int first, char *err, size_t errlen)
{
    if (p->kind == PART_TEXT && p->text.n == 0) return 0;
    if (!first) buf_putc(b, ',');
    switch (p->kind) {
    case PART_TEXT:
        buf_puts(b, "{\"text\":");
        put_str(b, p->text);
        buf_putc(b, '}');
        break;
    case PART_IMAGE:
        if (p->url.p) { snprintf(err, errlen, "Gemini takes images as base64 data, not URLs: send a data: URL."); return -1; }
        buf_puts(b, "{\"inlineData\":{\"mimeType\":");
        put_str(b, p->media_type);
        buf_puts(b, ",\"data\":");
        put_str(b, p->data);
        buf_puts(b, "}}");
        break;
    case PART_TOOL_CALL:
        buf_puts(b, "{\"functionCall\":{\"name\":");
        put_str(b, p->name);
        buf_puts(b, ",\"args\":");
        provider_put_args_object(b, p->args);
        buf_puts(b, "}}");
        break;
    case PART_TOOL_RESULT: {
        gw_str name = chat_req_tool_name(q, p->id);
        if (!name.p) { snprintf(err, errlen, "A tool result answers no earlier tool call (id '%.*s').", (int)(p->id.n > 64 ? 64 : p->id.n), p->id.p); return -1; }
        buf_puts(b, "{\"functionResponse\":{\"name\":");
        put_str(b, name);
        buf_puts(b, ",\"response\":{\"content\":");
        put_str(b, p->text);
        buf_puts(b, "}}}");
        break;
    }
    }
    return 1;
}

static const provider_turn_style turns = {
    "{\"role\":\"user\",\"parts\":[", "{\"role\":\"model\",\"parts\":[", "{\"text\":\" \"}", "]}",
};

static int put_contents(buf_t *b, const chat_req *q, char *err, size_t errlen)
{
    buf_puts(b, "\"contents\":");
    return provider_put_turns(b, q, &turns, put_part, err, errlen);
}

int gemini_build_body(const chat_req *q, buf_t *b, char *err, size_t errlen)
{
    buf_reset(b);
    buf_putc(b, '{');
    if (put_contents(b, q, err, errlen) < 0) return -1;
    if (q->system.len) {
        buf_puts(b, ",\"systemInstruction\":{\"parts\":[{\"text\":");
        buf_json_str(b, q->system.data, q->system.len);
        buf_puts(b, "}]}");
    }
    if (q->ntools) {
        buf_puts(b, ",\"tools\":[{\"functionDeclarations\":[");
        for (size_t i = 0; i < q->ntools; i++) {
            const chat_tool *t = &q->tools[i];
            buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
            put_str(b, t->name);
            if (t->description.p) { buf_puts(b, ",\"description\":"); put_str(b, t->description); }
            /* an object schema without properties is refused: leave it out */
            const json_value *props = t->parameters ? json_get(t->parameters, "properties") : NULL;
            if (props && props->type == JSON_OBJECT && props->count) {
                buf_puts(b, ",\"parameters\":");
                provider_put_json_without(b, t->src, t->parameters, schema_drop);
            }
            buf_putc(b, '}');
        }
        buf_puts(b, "]}]");
        const char *mode = q->tool_choice == TOOL_CHOICE_NONE ? "NONE"
                         : q->tool_choice == TOOL_CHOICE_REQUIRED || q->tool_choice == TOOL_CHOICE_NAMED ? "ANY" : NULL;
        if (mode) {
            buf_puts(b, ",\"toolConfig\":{\"functionCallingConfig\":{\"mode\":\"");
            buf_puts(b, mode);
            buf_putc(b, '"');
            if (q->tool_choice == TOOL_CHOICE_NAMED) {
                buf_puts(b, ",\"allowedFunctionNames\":[");
                put_str(b, q->tool_choice_name);
                buf_putc(b, ']');
            }
            buf_puts(b, "}}");
        }
    }
    buf_puts(b, ",\"generationConfig\":{\"candidateCount\":1");
    if (q->has_temperature) buf_printf(b, ",\"temperature\":%.17g", q->temperature);
    if (q->has_top_p) buf_printf(b, ",\"topP\":%.17g", q->top_p);
    if (q->has_top_k) buf_printf(b, ",\"topK\":%ld", q->top_k);
    if (q->has_seed) buf_printf(b, ",\"seed\":%lld", q->seed);
    if (q->max_tokens > 0) buf_printf(b, ",\"maxOutputTokens\":%ld", q->max_tokens);
    if (q->nstop) {
        buf_puts(b, ",\"stopSequences\":[");
        for (size_t i = 0; i < q->nstop; i++) { if (i) buf_putc(b, ','); put_str(b, q->stop[i]); }
        buf_putc(b, ']');
    }
    if (q->response_format != RESPONSE_TEXT) buf_puts(b, ",\"responseMimeType\":\"application/json\"");
    if (q->response_format == RESPONSE_JSON_SCHEMA) {
        buf_puts(b, ",\"responseSchema\":");
        provider_put_json_without(b, q->src, q->response_schema, schema_drop);
    }
    buf_puts(b, "}}");
    if (b->oom) { snprintf(err, errlen, "out of memory"); return -1; }
    return 0;
}

static int build_chat(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    const char *model = d->model;
    if (!strncmp(model, "models/", 7)) model += 7;
    int h = 0;
    buf_reset(&out->url);
    buf_puts(&out->url, d->base_url);
    buf_puts(&out->url, "/v1beta/models/");
    buf_puts(&out->url, model);
    buf_puts(&out->url, call->chat->stream ? ":streamGenerateContent?alt=sse" : ":generateContent");
    if (out->url.oom) { snprintf(err, errlen, "out of memory"); return -1; }
    if (gemini_build_body(call->chat, &out->body, err, errlen) < 0) return -1;
    out->headers[h++] = "Content-Type: application/json";
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    return 0;
}

/* ---- answers ---- */

static chat_finish finish_of(const char *s, int tools)
{
    if (!s) return FINISH_NONE;
    if (!strcmp(s, "MAX_TOKENS")) return FINISH_LENGTH;
    if (!strcmp(s, "SAFETY") || !strcmp(s, "RECITATION") || !strcmp(s, "BLOCKLIST") || !strcmp(s, "PROHIBITED_CONTENT") ||
        !strcmp(s, "SPII") || !strcmp(s, "IMAGE_SAFETY") || !strcmp(s, "LANGUAGE"))
        return FINISH_CONTENT_FILTER;
    return tools ? FINISH_TOOL_CALLS : FINISH_STOP;
}

static long count_of(const json_value *o, const char *k)
{
    const json_value *v = o ? json_get(o, k) : NULL;
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 && v->i64 < (1LL << 40) ? (long)v->i64 : 0;
}

static void usage_of(const json_value *u, long *prompt, long *completion, long *cached)
{
    *prompt = count_of(u, "promptTokenCount") + count_of(u, "toolUsePromptTokenCount");
    *completion = count_of(u, "candidatesTokenCount") + count_of(u, "thoughtsTokenCount");
    *cached = count_of(u, "cachedContentTokenCount");
}

static unsigned long long next_call_seq(void)
{
    static unsigned long long seq;
    if (!seq) seq = (unsigned long long)time(NULL) << 16;
    return ++seq;
}

/* The parts of candidates[0] (NULL if none) and its finish reason. */
static const json_value *candidate_parts(const json_value *root, const char **finish)
{
    const json_value *cands = json_get(root, "candidates");
    const json_value *c0 = cands ? json_at(cands, 0) : NULL;
    const json_value *content = c0 ? json_get(c0, "content") : NULL;
    *finish = c0 ? json_get_str(c0, "finishReason") : NULL;
    if (!c0) {
        /* the whole prompt was blocked: no candidates, a blockReason */
        const json_value *pf = json_get(root, "promptFeedback");
        if (pf && json_get_str(pf, "blockReason")) *finish = "SAFETY";
    }
    const json_value *parts = content ? json_get(content, "parts") : NULL;
    return parts && parts->type == JSON_ARRAY ? parts : NULL;
}

static int parse_response(const char *body, size_t len, chat_resp *r, char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_error je;
    json_doc *doc = json_parse(body, len, &lim, &je);
    if (!doc) { snprintf(err, errlen, "the provider's answer is not valid JSON (%s at byte %zu)", je.message, je.offset); return -1; }
    const json_value *root = json_root(doc);
    const char *finish = NULL;
    const json_value *parts = candidate_parts(root, &finish);
    int rc = -1;
    if (!parts && !finish) { snprintf(err, errlen, "the provider's answer has no candidates"); goto out; }
    unsigned long long seq = next_call_seq();
    for (const json_value *p = parts ? parts->first : NULL; p; p = p->next) {
        const json_value *t = json_get(p, "text"), *fc = json_get(p, "functionCall");
        if (t && t->type == JSON_STRING && !json_get_bool(p, "thought")) {
            if (buf_append(&r->text, t->str, t->str_len) < 0) goto oom;
        } else if (fc && fc->type == JSON_OBJECT) {
            const json_value *name = json_get(fc, "name"), *args = json_get(fc, "args"), *fid = json_get(fc, "id");
            if (!name || name->type != JSON_STRING || (args && args->type != JSON_OBJECT)) {
                snprintf(err, errlen, "the provider's answer has a malformed functionCall");
                goto out;
            }
            char id[64];
            if (fid && fid->type == JSON_STRING) snprintf(id, sizeof id, "%s", fid->str);
            else chat_call_id(id, sizeof id, seq, (int)r->ncalls);
            const char *a = args ? body + args->start : "{}";
            size_t an = args ? args->end - args->start : 2;
            if (chat_resp_add_call(r, id, strlen(id), name->str, name->str_len, a, an) < 0) {
                snprintf(err, errlen, "the provider's answer has too many tool calls");
                goto out;
            }
        }
    }
    r->finish = finish_of(finish ? finish : "STOP", r->ncalls > 0);
    const json_value *u = json_get(root, "usageMetadata");
    if (u && u->type == JSON_OBJECT) {
        usage_of(u, &r->usage.prompt_tokens, &r->usage.completion_tokens, &r->usage.cached_tokens);
        r->usage.present = 1;
    }
    const char *rid = json_get_str(root, "responseId");
    if (rid && !(r->id = strdup(rid))) goto oom;
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "out of memory");
out:
    json_doc_free(doc);
    return rc;
}

static void error_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(body, len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    const json_value *e = root && root->type == JSON_ARRAY ? json_at(root, 0) : root;   /* some errors come in a list */
    e = e ? json_get(e, "error") : NULL;
    const char *m = e ? json_get_str(e, "message") : NULL;
    snprintf(msg, msglen, "%s", m ? m : "");
    json_doc_free(doc);
}

/* ---- streams: each SSE event is a whole GenerateContentResponse ---- */

typedef struct gm_stream {
    provider_sse_stream base;   /* first: the shared SSE framing */
    int          finished, ntools;
    unsigned long long seq;
} gm_stream;

static void on_event(void *ud, const char *event, const char *data, size_t len)
{
    gm_stream *s = ud;
    (void)event;
    if (s->base.failed) return;
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(data, len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    if (!root || root->type != JSON_OBJECT) { s->base.failed = 1; json_doc_free(doc); return; }
    const json_value *e = json_get(root, "error");
    if (e) {
        const char *m = json_get_str(e, "message");
        chat_event ev = { .type = CEV_ERROR, .text = { m ? m : "the provider reported an error", m ? strlen(m) : 30 } };
        s->base.emit(s->base.ud, &ev);
        s->base.failed = 1;
        json_doc_free(doc);
        return;
    }
    const char *finish = NULL;
    const json_value *parts = candidate_parts(root, &finish);
    for (const json_value *p = parts ? parts->first : NULL; p; p = p->next) {
        const json_value *t = json_get(p, "text"), *fc = json_get(p, "functionCall");
        if (t && t->type == JSON_STRING && !json_get_bool(p, "thought")) {
            chat_event ev = { .type = CEV_TEXT, .text = { t->str, t->str_len } };
            s->base.emit(s->base.ud, &ev);
        } else if (fc && fc->type == JSON_OBJECT) {
            const json_value *name = json_get(fc, "name"), *args = json_get(fc, "args"), *fid = json_get(fc, "id");
            if (!name || name->type != JSON_STRING || (args && args->type != JSON_OBJECT) || s->ntools >= CHAT_MAX_TOOL_CALLS) {
                s->base.failed = 1;
                break;
            }
            char id[64];
            if (fid && fid->type == JSON_STRING) snprintf(id, sizeof id, "%s", fid->str);
            else chat_call_id(id, sizeof id, s->seq, s->ntools);
            /* Gemini sends a call whole: its start and all of its arguments at once */
            chat_event ev = { .type = CEV_TOOL_START, .index = s->ntools, .id = { id, strlen(id) }, .name = { name->str, name->str_len } };
            s->base.emit(s->base.ud, &ev);
            chat_event ea = { .type = CEV_TOOL_ARGS, .index = s->ntools,
                              .text = args ? (gw_str){ data + args->start, args->end - args->start } : (gw_str){ "{}", 2 } };
            s->base.emit(s->base.ud, &ea);
            s->ntools++;
        }
    }
    const json_value *u = json_get(root, "usageMetadata");
    if (u && u->type == JSON_OBJECT) {
        chat_event ev = { .type = CEV_USAGE };
        usage_of(u, &ev.prompt_tokens, &ev.completion_tokens, &ev.cached_tokens);
        s->base.emit(s->base.ud, &ev);
    }
    if (finish) {
        chat_event ev = { .type = CEV_FINISH, .finish = finish_of(finish, s->ntools > 0) };
        s->base.emit(s->base.ud, &ev);
        s->finished = 1;
    }
    json_doc_free(doc);
}

static void *stream_new(void)
{
    gm_stream *s = provider_sse_stream_new(sizeof(gm_stream), on_event);
    if (s) s->seq = next_call_seq();
    return s;
}

static int stream_end(void *st, chat_emit_fn emit, void *ud)
{
    return provider_sse_stream_end(st, emit, ud) == 0 && ((gm_stream *)st)->finished ? 0 : -1;
}

/* ---- embeddings: batchEmbedContents ---- */

static int build_embed(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    const char *model = !strncmp(d->model, "models/", 7) ? d->model + 7 : d->model;
    const json_value *items;
    size_t n;
    if (embed_inputs(call->root, &items, &n, err, errlen) < 0) return -1;
    const json_value *dims = json_get(call->root, "dimensions");
    buf_reset(&out->url);
    buf_printf(&out->url, "%s/v1beta/models/%s:batchEmbedContents", d->base_url, model);
    buf_t *b = &out->body;
    buf_reset(b);
    buf_puts(b, "{\"requests\":[");
    for (size_t i = 0; i < n; i++, items = items->next) {
        buf_puts(b, i ? ",{\"model\":\"models/" : "{\"model\":\"models/");
        buf_puts(b, model);
        buf_puts(b, "\",\"content\":{\"parts\":[{\"text\":");
        buf_json_str(b, items->str, items->str_len);
        buf_puts(b, "}]}");
        if (dims && dims->type == JSON_NUMBER && dims->is_int && dims->i64 > 0) buf_printf(b, ",\"outputDimensionality\":%lld", (long long)dims->i64);
        buf_putc(b, '}');
    }
    buf_puts(b, "]}");
    if (b->oom || out->url.oom) { snprintf(err, errlen, "out of memory"); return -1; }
    int h = 0;
    out->headers[h++] = "Content-Type: application/json";
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    return 0;
}

static int parse_embed(const char *body, size_t len, int base64, const char *model, buf_t *out, usage_t *u,
                       char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(body, len, &lim, NULL);
    const json_value *embs = doc ? json_get(json_root(doc), "embeddings") : NULL;
    int rc = -1;
    if (!embs || embs->type != JSON_ARRAY) { snprintf(err, errlen, "the provider's answer has no embeddings"); goto out; }
    embed_begin(out);
    size_t i = 0;
    for (const json_value *e = embs->first; e; e = e->next, i++)
        if (embed_vector(out, i, json_get(e, "values"), base64) < 0) { snprintf(err, errlen, "the provider's answer has a malformed embedding"); goto out; }
    embed_end(out, model, 0);   /* Gemini does not count embedding tokens */
    u->present = 1;
    rc = out->oom ? -1 : 0;
out:
    json_doc_free(doc);
    return rc;
}

const provider provider_gemini = {
    .name = "gemini", .dialect = DIALECT_OTHER, .prepare = prepare,
    .build_chat = build_chat, .parse_response = parse_response,
    .stream_new = stream_new, .stream_feed = provider_sse_stream_feed, .stream_end = stream_end, .stream_free = provider_sse_stream_free,
    .error_message = error_message, .build_embed = build_embed, .parse_embed = parse_embed,
};
