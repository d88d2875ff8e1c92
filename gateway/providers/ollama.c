/* ollama: the native chat API (POST {base}/api/chat).
 *
 * Messages with string content and base64 images beside it, tools in the
 * OpenAI shape but arguments as objects, tool results named by function
 * (tool_name), sampling in "options". It streams newline-delimited JSON
 * objects (not SSE), the last one with done: true and the token counts.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "embed.h"

#define RESPONSE_LIMITS { .max_depth = 64, .max_bytes = 0 }
#define MAX_LINE (1u << 20)

static int prepare(gw_deployment *d, char *err, size_t errlen)
{
    if (provider_base_url(d, "http://127.0.0.1:11434", err, errlen) < 0) return -1;
    if (d->api_key) {   /* a hosted Ollama or an authenticating proxy in front of one */
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "Authorization: Bearer %s", d->api_key) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->auth_header = buf_steal(&b);
    }
    return 0;
}

static void put_str(buf_t *b, gw_str s) { buf_json_str(b, s.p ? s.p : "", s.n); }

static int put_message(buf_t *b, const chat_req *q, const chat_msg *m, char *err, size_t errlen)
{
    if (m->role == ROLE_TOOL) {
        gw_str name = chat_req_tool_name(q, m->parts[0].id);
        buf_puts(b, "{\"role\":\"tool\",\"content\":");
        put_str(b, m->parts[0].text);
        if (name.p) { buf_puts(b, ",\"tool_name\":"); put_str(b, name); }
        buf_putc(b, '}');
        return 0;
    }
    buf_puts(b, m->role == ROLE_USER ? "{\"role\":\"user\",\"content\":" : "{\"role\":\"assistant\",\"content\":");
    buf_t t; buf_init(&t);   /* text parts joined: Ollama takes one string */
    for (size_t k = 0; k < m->nparts; k++)
        if (m->parts[k].kind == PART_TEXT) {
            if (t.len) buf_putc(&t, '\n');
            buf_append(&t, m->parts[k].text.p, m->parts[k].text.n);
        }
    buf_json_str(b, t.data ? t.data : "", t.len);
    if (t.oom) b->oom = 1;
    buf_free(&t);
    int nimg = 0, ncalls = 0;
    for (size_t k = 0; k < m->nparts; k++) {
        const chat_part *p = &m->parts[k];
        if (p->kind == PART_IMAGE) {
            if (p->url.p) { snprintf(err, errlen, "Ollama takes images as base64 data, not URLs: send a data: URL."); return -1; }
            buf_puts(b, nimg++ ? "," : ",\"images\":[");
            put_str(b, p->data);
        }
    }
    if (nimg) buf_putc(b, ']');
    for (size_t k = 0; k < m->nparts; k++) {
        const chat_part *p = &m->parts[k];
        if (p->kind != PART_TOOL_CALL) continue;
        buf_puts(b, ncalls++ ? ",{\"function\":{\"name\":" : ",\"tool_calls\":[{\"function\":{\"name\":");
        put_str(b, p->name);
        buf_puts(b, ",\"arguments\":");
        provider_put_args_object(b, p->args);
        buf_puts(b, "}}");
    }
    if (ncalls) buf_putc(b, ']');
    buf_putc(b, '}');
    return 0;
}

int ollama_build_body(const chat_req *q, const char *model, buf_t *b, char *err, size_t errlen)
{
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
        if (!first) buf_putc(b, ',');
        first = 0;
        if (put_message(b, q, &q->msgs[i], err, errlen) < 0) return -1;
    }
    buf_putc(b, ']');
    if (q->ntools && q->tool_choice != TOOL_CHOICE_NONE) {
        buf_puts(b, ",\"tools\":[");
        for (size_t i = 0; i < q->ntools; i++) {
            const chat_tool *t = &q->tools[i];
            buf_puts(b, i ? ",{\"type\":\"function\",\"function\":{\"name\":" : "{\"type\":\"function\",\"function\":{\"name\":");
            put_str(b, t->name);
            if (t->description.p) { buf_puts(b, ",\"description\":"); put_str(b, t->description); }
            buf_puts(b, ",\"parameters\":");
            if (t->parameters) buf_append(b, t->src + t->parameters->start, t->parameters->end - t->parameters->start);
            else buf_puts(b, "{\"type\":\"object\",\"properties\":{}}");
            buf_puts(b, "}}");
        }
        buf_putc(b, ']');
    }
    if (q->response_format == RESPONSE_JSON_OBJECT) buf_puts(b, ",\"format\":\"json\"");
    if (q->response_format == RESPONSE_JSON_SCHEMA) {
        buf_puts(b, ",\"format\":");
        buf_append(b, q->src + q->response_schema->start, q->response_schema->end - q->response_schema->start);
    }
    buf_puts(b, ",\"options\":{");
    size_t opt = b->len;
    if (q->has_temperature) buf_printf(b, ",\"temperature\":%.17g", q->temperature);
    if (q->has_top_p) buf_printf(b, ",\"top_p\":%.17g", q->top_p);
    if (q->has_top_k) buf_printf(b, ",\"top_k\":%ld", q->top_k);
    if (q->has_seed) buf_printf(b, ",\"seed\":%lld", q->seed);
    if (q->max_tokens > 0) buf_printf(b, ",\"num_predict\":%ld", q->max_tokens);
    if (q->nstop) {
        buf_puts(b, ",\"stop\":[");
        for (size_t i = 0; i < q->nstop; i++) { if (i) buf_putc(b, ','); put_str(b, q->stop[i]); }
        buf_putc(b, ']');
    }
    if (!b->oom && b->len > opt) {   /* drop the first option's leading comma */
        memmove(b->data + opt, b->data + opt + 1, b->len - opt - 1);
        b->data[--b->len] = '\0';
    }
    buf_putc(b, '}');
    buf_puts(b, q->stream ? ",\"stream\":true}" : ",\"stream\":false}");
    if (b->oom) { snprintf(err, errlen, "out of memory"); return -1; }
    return 0;
}

static int build_chat(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    int h = 0;
    buf_reset(&out->url);
    if (buf_puts(&out->url, d->base_url) < 0 || buf_puts(&out->url, "/api/chat") < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    if (ollama_build_body(call->chat, d->model, &out->body, err, errlen) < 0) return -1;
    out->headers[h++] = "Content-Type: application/json";
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    return 0;
}

/* ---- answers ---- */

static long count_of(const json_value *o, const char *k)
{
    const json_value *v = o ? json_get(o, k) : NULL;
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 && v->i64 < (1LL << 40) ? (long)v->i64 : 0;
}

static chat_finish finish_of(const char *reason, int tools)
{
    if (tools) return FINISH_TOOL_CALLS;
    return reason && !strcmp(reason, "length") ? FINISH_LENGTH : FINISH_STOP;
}

static unsigned long long next_call_seq(void)
{
    static unsigned long long seq;
    if (!seq) seq = (unsigned long long)time(NULL) << 16;
    return ++seq;
}

static int parse_response(const char *body, size_t len, chat_resp *r, char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_error je;
    json_doc *doc = json_parse(body, len, &lim, &je);
    if (!doc) { snprintf(err, errlen, "the provider's answer is not valid JSON (%s at byte %zu)", je.message, je.offset); return -1; }
    const json_value *root = json_root(doc), *msg = json_get(root, "message");
    int rc = -1;
    if (!msg || msg->type != JSON_OBJECT) { snprintf(err, errlen, "the provider's answer has no message"); goto out; }
    const json_value *content = json_get(msg, "content");
    if (content && content->type == JSON_STRING && buf_append(&r->text, content->str, content->str_len) < 0) goto oom;
    const json_value *calls = json_get(msg, "tool_calls");
    unsigned long long seq = next_call_seq();
    for (const json_value *c = calls && calls->type == JSON_ARRAY ? calls->first : NULL; c; c = c->next) {
        const json_value *fn = json_get(c, "function");
        const json_value *name = fn ? json_get(fn, "name") : NULL, *args = fn ? json_get(fn, "arguments") : NULL;
        if (!name || name->type != JSON_STRING || (args && args->type != JSON_OBJECT)) {
            snprintf(err, errlen, "the provider's answer has a malformed tool call");
            goto out;
        }
        char id[64];
        chat_call_id(id, sizeof id, seq, (int)r->ncalls);
        if (chat_resp_add_call(r, id, strlen(id), name->str, name->str_len,
                               args ? body + args->start : "{}", args ? args->end - args->start : 2) < 0) {
            snprintf(err, errlen, "the provider's answer has too many tool calls");
            goto out;
        }
    }
    r->finish = finish_of(json_get_str(root, "done_reason"), r->ncalls > 0);
    r->usage.prompt_tokens = count_of(root, "prompt_eval_count");
    r->usage.completion_tokens = count_of(root, "eval_count");
    r->usage.present = 1;
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
    const char *m = doc ? json_get_str(json_root(doc), "error") : NULL;
    snprintf(msg, msglen, "%s", m ? m : "");
    json_doc_free(doc);
}

/* ---- streams: one JSON object per line ---- */

typedef struct ol_stream {
    buf_t        line;      /* an incomplete line carried to the next feed */
    int          failed, done, ntools;
    unsigned long long seq;
} ol_stream;

static int on_line(ol_stream *s, const char *p, size_t n, chat_emit_fn emit, void *ud)
{
    while (n && (p[n - 1] == '\r' || p[n - 1] == ' ')) n--;
    if (n == 0) return 0;
    if (s->done) return -1;   /* nothing may follow the last object */
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(p, n, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    if (!root || root->type != JSON_OBJECT) { json_doc_free(doc); return -1; }
    const char *e = json_get_str(root, "error");
    if (e) {
        chat_event ev = { .type = CEV_ERROR, .text = { e, strlen(e) } };
        emit(ud, &ev);
        json_doc_free(doc);
        return -1;
    }
    const json_value *msg = json_get(root, "message");
    const json_value *content = msg ? json_get(msg, "content") : NULL;
    if (content && content->type == JSON_STRING && content->str_len) {
        chat_event ev = { .type = CEV_TEXT, .text = { content->str, content->str_len } };
        emit(ud, &ev);
    }
    const json_value *calls = msg ? json_get(msg, "tool_calls") : NULL;
    for (const json_value *c = calls && calls->type == JSON_ARRAY ? calls->first : NULL; c; c = c->next) {
        const json_value *fn = json_get(c, "function");
        const json_value *name = fn ? json_get(fn, "name") : NULL, *args = fn ? json_get(fn, "arguments") : NULL;
        if (!name || name->type != JSON_STRING || (args && args->type != JSON_OBJECT) || s->ntools >= CHAT_MAX_TOOL_CALLS) {
            json_doc_free(doc);
            return -1;
        }
        char id[64];
        chat_call_id(id, sizeof id, s->seq, s->ntools);
        chat_event ev = { .type = CEV_TOOL_START, .index = s->ntools, .id = { id, strlen(id) }, .name = { name->str, name->str_len } };
        emit(ud, &ev);
        chat_event ea = { .type = CEV_TOOL_ARGS, .index = s->ntools,
                          .text = args ? (gw_str){ p + args->start, args->end - args->start } : (gw_str){ "{}", 2 } };
        emit(ud, &ea);
        s->ntools++;
    }
    if (json_get_bool(root, "done")) {
        chat_event ev = { .type = CEV_FINISH, .finish = finish_of(json_get_str(root, "done_reason"), s->ntools > 0) };
        emit(ud, &ev);
        chat_event eu = { .type = CEV_USAGE, .prompt_tokens = count_of(root, "prompt_eval_count"),
                          .completion_tokens = count_of(root, "eval_count"), .cached_tokens = 0 };
        emit(ud, &eu);
        s->done = 1;
    }
    json_doc_free(doc);
    return 0;
}

static void *stream_new(void)
{
    ol_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    buf_init(&s->line);
    s->seq = next_call_seq();
    return s;
}

static int stream_feed(void *st, const char *p, size_t n, chat_emit_fn emit, void *ud)
{
    ol_stream *s = st;
    while (!s->failed && n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (s->line.len + take > MAX_LINE) { s->failed = 1; break; }
        if (!nl) { if (buf_append(&s->line, p, take) < 0) s->failed = 1; break; }
        if (s->line.len) {
            if (buf_append(&s->line, p, take) < 0 || on_line(s, s->line.data, s->line.len, emit, ud) < 0) s->failed = 1;
            buf_reset(&s->line);
        } else if (on_line(s, p, take, emit, ud) < 0) {
            s->failed = 1;
        }
        p += take + 1;
        n -= take + 1;
    }
    return s->failed ? -1 : 0;
}

static int stream_end(void *st, chat_emit_fn emit, void *ud)
{
    ol_stream *s = st;
    if (!s->failed && s->line.len && on_line(s, s->line.data, s->line.len, emit, ud) < 0) s->failed = 1;
    buf_reset(&s->line);
    return !s->failed && s->done ? 0 : -1;
}

static void stream_free(void *st)
{
    ol_stream *s = st;
    if (!s) return;
    buf_free(&s->line);
    free(s);
}

/* ---- embeddings: /api/embed ---- */

static int build_embed(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    const json_value *items;
    size_t n;
    if (embed_inputs(call->root, &items, &n, err, errlen) < 0) return -1;
    buf_reset(&out->url);
    buf_printf(&out->url, "%s/api/embed", d->base_url);
    buf_t *b = &out->body;
    buf_reset(b);
    buf_puts(b, "{\"model\":");
    buf_json_str(b, d->model, strlen(d->model));
    buf_puts(b, ",\"input\":[");
    for (size_t i = 0; i < n; i++, items = items->next) {
        if (i) buf_putc(b, ',');
        buf_json_str(b, items->str, items->str_len);
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
    const json_value *root = doc ? json_root(doc) : NULL;
    const json_value *embs = root ? json_get(root, "embeddings") : NULL;
    int rc = -1;
    if (!embs || embs->type != JSON_ARRAY) { snprintf(err, errlen, "the provider's answer has no embeddings"); goto out; }
    embed_begin(out);
    size_t i = 0;
    for (const json_value *e = embs->first; e; e = e->next, i++)
        if (embed_vector(out, i, e, base64) < 0) { snprintf(err, errlen, "the provider's answer has a malformed embedding"); goto out; }
    u->prompt_tokens = count_of(root, "prompt_eval_count");
    u->present = 1;
    embed_end(out, model, u->prompt_tokens);
    rc = out->oom ? -1 : 0;
out:
    json_doc_free(doc);
    return rc;
}

const provider provider_ollama = {
    .name = "ollama", .dialect = DIALECT_OTHER, .prepare = prepare,
    .build_chat = build_chat, .parse_response = parse_response,
    .stream_new = stream_new, .stream_feed = stream_feed, .stream_end = stream_end, .stream_free = stream_free,
    .error_message = error_message, .build_embed = build_embed, .parse_embed = parse_embed,
};
