/* anthropic: the Messages API (POST {base}/v1/messages).
 *
 * An Anthropic client (/v1/messages) passes through: its body goes up with
 * only "model" rewritten and the answer comes back byte for byte. Any other
 * client is translated: a top-level system prompt, strictly alternating
 * user/assistant turns (tool results ride in user turns), a required
 * max_tokens, content blocks, tool_use / tool_result. Upstream always gets
 * anthropic-version 2023-06-01 whatever the client sent.
 */
#include "provider.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "sse.h"

#define ANTHROPIC_VERSION_HEADER "anthropic-version: 2023-06-01"
#define DEFAULT_MAX_TOKENS 4096   /* Anthropic requires max_tokens; OpenAI clients may omit it */
#define MAX_BLOCKS 1024

static int prepare(gw_deployment *d, char *err, size_t errlen)
{
    if (provider_base_url(d, "https://api.anthropic.com", err, errlen) < 0) return -1;
    if (d->api_key) {
        buf_t b; buf_init(&b);
        if (buf_printf(&b, "x-api-key: %s", d->api_key) < 0) { buf_free(&b); snprintf(err, errlen, "out of memory"); return -1; }
        d->auth_header = buf_steal(&b);
    }
    return 0;
}

static int common(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    const gw_deployment *d = call->dep;
    int h = 0;
    buf_reset(&out->url);
    if (buf_puts(&out->url, d->base_url) < 0 || buf_puts(&out->url, "/v1/messages") < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    out->headers[h++] = "Content-Type: application/json";
    out->headers[h++] = ANTHROPIC_VERSION_HEADER;
    if (d->auth_header) out->headers[h++] = d->auth_header;
    out->headers[h] = NULL;
    return 0;
}

/* Pass-through: an Anthropic client. */
static int build(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    if (call->route != ROUTE_MESSAGES) {
        snprintf(err, errlen, "provider anthropic serves chat only");
        return -1;
    }
    if (common(call, out, err, errlen) < 0) return -1;
    if (provider_rewrite_model(call, call->dep->model, &out->body) < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    /* an Anthropic client's beta features go along (printable ASCII only: it becomes a header line) */
    const char *beta = call->anthropic_beta;
    int ok = beta && *beta && strlen(beta) <= 512;
    for (const char *c = beta; ok && *c; c++) ok = *c >= 0x20 && *c < 0x7f;
    if (ok) {
        int h = 0;
        while (out->headers[h]) h++;
        buf_reset(&out->hdrs);
        if (buf_printf(&out->hdrs, "anthropic-beta: %s", beta) < 0) { snprintf(err, errlen, "out of memory"); return -1; }
        out->headers[h++] = out->hdrs.data;
        out->headers[h] = NULL;
    }
    out->same_dialect = 1;
    return 0;
}

static void put_str(buf_t *b, gw_str s) { buf_json_str(b, s.p ? s.p : "", s.n); }

static int put_block(buf_t *b, const chat_req *q, const chat_part *p, int first, char *err, size_t errlen)
{
    if (p->kind == PART_TEXT && p->text.n == 0) return 0;   /* Anthropic refuses empty text blocks */
    if (!first) buf_putc(b, ',');
    switch (p->kind) {
    case PART_TEXT:
        buf_puts(b, "{\"type\":\"text\",\"text\":");
        put_str(b, p->text);
        buf_putc(b, '}');
        break;
    case PART_IMAGE:
        if (p->url.p) {
            buf_puts(b, "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":");
            put_str(b, p->url);
        } else {
            buf_puts(b, "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":");
            put_str(b, p->media_type);
            buf_puts(b, ",\"data\":");
            put_str(b, p->data);
        }
        buf_puts(b, "}}");
        break;
    case PART_TOOL_CALL:
        buf_puts(b, "{\"type\":\"tool_use\",\"id\":");
        put_str(b, p->id);
        buf_puts(b, ",\"name\":");
        put_str(b, p->name);
        buf_puts(b, ",\"input\":");
        provider_put_args_object(b, p->args);
        buf_putc(b, '}');
        break;
    case PART_TOOL_RESULT:
        buf_puts(b, "{\"type\":\"tool_result\",\"tool_use_id\":");
        put_str(b, p->id);
        buf_puts(b, ",\"content\":");
        put_str(b, p->text);
        if (p->is_error) buf_puts(b, ",\"is_error\":true");
        buf_putc(b, '}');
        break;
    }
    return 1;
}

static const provider_turn_style turns = {
    "{\"role\":\"user\",\"content\":[", "{\"role\":\"assistant\",\"content\":[",
    "{\"type\":\"text\",\"text\":\"(empty)\"}", "]}",
};

static int build_chat(const provider_call *call, provider_http *out, char *err, size_t errlen)
{
    if (common(call, out, err, errlen) < 0) return -1;
    return anthropic_build_body(call->chat, call->dep->model, &out->body, err, errlen);
}

int anthropic_build_body(const chat_req *q, const char *model, buf_t *b, char *err, size_t errlen)
{
    buf_reset(b);
    buf_puts(b, "{\"model\":");
    buf_json_str(b, model, strlen(model));
    buf_printf(b, ",\"max_tokens\":%ld", q->max_tokens > 0 ? q->max_tokens : DEFAULT_MAX_TOKENS);
    if (q->system.len || q->response_format != RESPONSE_TEXT) {
        buf_puts(b, ",\"system\":");
        buf_t s; buf_init(&s);
        buf_append(&s, q->system.data ? q->system.data : "", q->system.len);
        /* no JSON mode in the Messages API: say it in the system prompt */
        if (q->response_format != RESPONSE_TEXT) {
            buf_puts(&s, s.len ? "\n\nRespond with a single JSON object and nothing else." : "Respond with a single JSON object and nothing else.");
            if (q->response_format == RESPONSE_JSON_SCHEMA) {
                buf_puts(&s, " It must match this JSON Schema: ");
                buf_append(&s, q->src + q->response_schema->start, q->response_schema->end - q->response_schema->start);
            }
        }
        buf_json_str(b, s.data ? s.data : "", s.len);
        int oom = s.oom;
        buf_free(&s);
        if (oom) b->oom = 1;
    }
    buf_puts(b, ",\"messages\":");
    provider_put_turns(b, q, &turns, put_block, err, errlen);   /* put_block never fails */
    if (q->ntools && q->tool_choice != TOOL_CHOICE_NONE) {
        buf_puts(b, ",\"tools\":[");
        for (size_t i = 0; i < q->ntools; i++) {
            const chat_tool *t = &q->tools[i];
            buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
            put_str(b, t->name);
            if (t->description.p) { buf_puts(b, ",\"description\":"); put_str(b, t->description); }
            buf_puts(b, ",\"input_schema\":");
            if (t->parameters) buf_append(b, t->src + t->parameters->start, t->parameters->end - t->parameters->start);
            else buf_puts(b, "{\"type\":\"object\",\"properties\":{}}");
            buf_putc(b, '}');
        }
        buf_putc(b, ']');
        const char *dp = q->parallel_tool_calls == 0 ? ",\"disable_parallel_tool_use\":true}" : "}";
        switch (q->tool_choice) {
        case TOOL_CHOICE_REQUIRED: buf_puts(b, ",\"tool_choice\":{\"type\":\"any\""); buf_puts(b, dp); break;
        case TOOL_CHOICE_NAMED:
            buf_puts(b, ",\"tool_choice\":{\"type\":\"tool\",\"name\":");
            put_str(b, q->tool_choice_name);
            buf_puts(b, dp);
            break;
        default:
            if (q->parallel_tool_calls == 0) { buf_puts(b, ",\"tool_choice\":{\"type\":\"auto\""); buf_puts(b, dp); }
            break;
        }
    }
    if (q->has_temperature) buf_printf(b, ",\"temperature\":%.17g", q->temperature > 1 ? 1.0 : q->temperature);
    if (q->has_top_p) buf_printf(b, ",\"top_p\":%.17g", q->top_p);
    if (q->has_top_k) buf_printf(b, ",\"top_k\":%ld", q->top_k);
    if (q->nstop) {
        buf_puts(b, ",\"stop_sequences\":[");
        for (size_t i = 0; i < q->nstop; i++) { if (i) buf_putc(b, ','); put_str(b, q->stop[i]); }
        buf_putc(b, ']');
    }
    if (q->user.p) { buf_puts(b, ",\"metadata\":{\"user_id\":"); put_str(b, q->user); buf_putc(b, '}'); }
    if (q->stream) buf_puts(b, ",\"stream\":true");
    buf_putc(b, '}');
    if (b->oom) { snprintf(err, errlen, "out of memory"); return -1; }
    return 0;
}

/* ---- answers ---- */

static chat_finish finish_of(const char *s)
{
    if (!s) return FINISH_NONE;
    if (!strcmp(s, "max_tokens")) return FINISH_LENGTH;
    if (!strcmp(s, "tool_use")) return FINISH_TOOL_CALLS;
    if (!strcmp(s, "refusal")) return FINISH_CONTENT_FILTER;
    return FINISH_STOP;   /* end_turn, stop_sequence, pause_turn */
}

static long count_of(const json_value *o, const char *k)
{
    const json_value *v = o ? json_get(o, k) : NULL;
    return v && v->type == JSON_NUMBER && v->is_int && v->i64 >= 0 && v->i64 < (1LL << 40) ? (long)v->i64 : -1;
}

static long nonneg(long v) { return v < 0 ? 0 : v; }

/* Anthropic counts cache reads and writes apart from input_tokens; the
 * internal form (OpenAI's) counts every prompt token, cached ones included. */
static void usage_of(const json_value *u, long *prompt, long *completion, long *cached)
{
    long in = count_of(u, "input_tokens"), cr = count_of(u, "cache_read_input_tokens");
    long cw = count_of(u, "cache_creation_input_tokens");
    *prompt = in < 0 && cr < 0 && cw < 0 ? -1 : nonneg(in) + nonneg(cr) + nonneg(cw);
    *cached = cr < 0 ? (in < 0 ? -1 : 0) : cr;
    *completion = count_of(u, "output_tokens");
}

#define RESPONSE_LIMITS { .max_depth = 64, .max_bytes = 0 }

static int parse_response(const char *body, size_t len, chat_resp *r, char *err, size_t errlen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_error je;
    json_doc *doc = json_parse(body, len, &lim, &je);
    if (!doc) { snprintf(err, errlen, "the provider's answer is not valid JSON (%s at byte %zu)", je.message, je.offset); return -1; }
    const json_value *root = json_root(doc), *content = json_get(root, "content");
    int rc = -1;
    if (!content || content->type != JSON_ARRAY) { snprintf(err, errlen, "the provider's answer has no content array"); goto out; }
    const char *id = json_get_str(root, "id");
    if (id && !(r->id = strdup(id))) goto oom;
    for (const json_value *b = content->first; b; b = b->next) {
        const char *type = json_get_str(b, "type");
        if (!type) { snprintf(err, errlen, "the provider's answer has a content block without a type"); goto out; }
        if (!strcmp(type, "text")) {
            const json_value *t = json_get(b, "text");
            if (!t || t->type != JSON_STRING) { snprintf(err, errlen, "a text block without text"); goto out; }
            if (buf_append(&r->text, t->str, t->str_len) < 0) goto oom;
        } else if (!strcmp(type, "tool_use")) {
            const json_value *tid = json_get(b, "id"), *name = json_get(b, "name"), *input = json_get(b, "input");
            if (!tid || tid->type != JSON_STRING || !name || name->type != JSON_STRING || !input || input->type != JSON_OBJECT) {
                snprintf(err, errlen, "the provider's answer has a malformed tool_use block");
                goto out;
            }
            if (chat_resp_add_call(r, tid->str, tid->str_len, name->str, name->str_len,
                                   body + input->start, input->end - input->start) < 0) {
                snprintf(err, errlen, "the provider's answer has too many tool calls");
                goto out;
            }
        }   /* thinking blocks stay with Anthropic */
    }
    r->finish = finish_of(json_get_str(root, "stop_reason"));
    const json_value *u = json_get(root, "usage");
    if (u && u->type == JSON_OBJECT) {
        usage_of(u, &r->usage.prompt_tokens, &r->usage.completion_tokens, &r->usage.cached_tokens);
        r->usage.prompt_tokens = nonneg(r->usage.prompt_tokens);
        r->usage.completion_tokens = nonneg(r->usage.completion_tokens);
        r->usage.cached_tokens = nonneg(r->usage.cached_tokens);
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

static void error_message(const char *body, size_t len, char *msg, size_t msglen)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(body, len, &lim, NULL);
    const json_value *e = doc ? json_get(json_root(doc), "error") : NULL;
    const char *m = e && e->type == JSON_OBJECT ? json_get_str(e, "message") : NULL;
    snprintf(msg, msglen, "%s", m ? m : "");
    json_doc_free(doc);
}

/* ---- streams: message_start, content_block_{start,delta,stop}, message_delta, message_stop ---- */

typedef struct an_stream {
    provider_sse_stream base;   /* first: the shared SSE framing */
    int          done;
    int          ntools;
    short        tool_of_block[MAX_BLOCKS];   /* content block index -> tool call ordinal + 1 */
} an_stream;

static void emit_usage(an_stream *s, const json_value *u)
{
    if (!u || u->type != JSON_OBJECT) return;
    chat_event ev = { .type = CEV_USAGE };
    usage_of(u, &ev.prompt_tokens, &ev.completion_tokens, &ev.cached_tokens);
    s->base.emit(s->base.ud, &ev);
}

static int block_index(const json_value *root)
{
    const json_value *i = json_get(root, "index");
    return i && i->type == JSON_NUMBER && i->is_int && i->i64 >= 0 && i->i64 < MAX_BLOCKS ? (int)i->i64 : -1;
}

static void on_event(void *ud, const char *event, const char *data, size_t len)
{
    an_stream *s = ud;
    (void)event;
    if (s->base.failed || s->done) return;
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(data, len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    const char *type = root ? json_get_str(root, "type") : NULL;
    if (!type) { s->base.failed = 1; json_doc_free(doc); return; }
    if (!strcmp(type, "message_start")) {
        const json_value *m = json_get(root, "message");
        emit_usage(s, m ? json_get(m, "usage") : NULL);
    } else if (!strcmp(type, "content_block_start")) {
        const json_value *cb = json_get(root, "content_block");
        const char *bt = cb ? json_get_str(cb, "type") : NULL;
        int bi = block_index(root);
        if (bi < 0 || !bt) s->base.failed = 1;
        else if (!strcmp(bt, "tool_use")) {
            const json_value *id = json_get(cb, "id"), *name = json_get(cb, "name");
            if (!id || id->type != JSON_STRING || !name || name->type != JSON_STRING || s->ntools >= CHAT_MAX_TOOL_CALLS) s->base.failed = 1;
            else {
                s->tool_of_block[bi] = (short)(++s->ntools);
                chat_event ev = { .type = CEV_TOOL_START, .index = s->ntools - 1,
                                  .id = { id->str, id->str_len }, .name = { name->str, name->str_len } };
                s->base.emit(s->base.ud, &ev);
            }
        } else if (!strcmp(bt, "text")) {
            const json_value *t = json_get(cb, "text");
            if (t && t->type == JSON_STRING && t->str_len) {
                chat_event ev = { .type = CEV_TEXT, .text = { t->str, t->str_len } };
                s->base.emit(s->base.ud, &ev);
            }
        }
    } else if (!strcmp(type, "content_block_delta")) {
        const json_value *d = json_get(root, "delta");
        const char *dt = d ? json_get_str(d, "type") : NULL;
        int bi = block_index(root);
        if (bi < 0 || !dt) s->base.failed = 1;
        else if (!strcmp(dt, "text_delta")) {
            const json_value *t = json_get(d, "text");
            if (!t || t->type != JSON_STRING) s->base.failed = 1;
            else {
                chat_event ev = { .type = CEV_TEXT, .text = { t->str, t->str_len } };
                s->base.emit(s->base.ud, &ev);
            }
        } else if (!strcmp(dt, "input_json_delta")) {
            const json_value *t = json_get(d, "partial_json");
            if (!t || t->type != JSON_STRING || !s->tool_of_block[bi]) s->base.failed = 1;
            else if (t->str_len) {
                chat_event ev = { .type = CEV_TOOL_ARGS, .index = s->tool_of_block[bi] - 1, .text = { t->str, t->str_len } };
                s->base.emit(s->base.ud, &ev);
            }
        }   /* thinking_delta, signature_delta, citations: not carried across dialects */
    } else if (!strcmp(type, "message_delta")) {
        const json_value *d = json_get(root, "delta");
        const char *sr = d ? json_get_str(d, "stop_reason") : NULL;
        if (sr) {
            chat_event ev = { .type = CEV_FINISH, .finish = finish_of(sr) };
            s->base.emit(s->base.ud, &ev);
        }
        emit_usage(s, json_get(root, "usage"));
    } else if (!strcmp(type, "message_stop")) {
        s->done = 1;
    } else if (!strcmp(type, "error")) {
        const json_value *e = json_get(root, "error");
        const char *m = e ? json_get_str(e, "message") : NULL;
        chat_event ev = { .type = CEV_ERROR, .text = { m ? m : "the provider reported an error", m ? strlen(m) : 30 } };
        s->base.emit(s->base.ud, &ev);
        s->base.failed = 1;
    }   /* ping, content_block_stop */
    json_doc_free(doc);
}

static void *stream_new(void) { return provider_sse_stream_new(sizeof(an_stream), on_event); }

static int stream_end(void *st, chat_emit_fn emit, void *ud)
{
    return provider_sse_stream_end(st, emit, ud) == 0 && ((an_stream *)st)->done ? 0 : -1;
}

void anthropic_usage(const char *json, size_t len, usage_t *u)
{
    json_limits lim = RESPONSE_LIMITS;
    json_doc *doc = json_parse(json, len, &lim, NULL);
    const json_value *root = doc ? json_root(doc) : NULL;
    const char *type = root ? json_get_str(root, "type") : NULL;
    const json_value *us = NULL;
    if (type && !strcmp(type, "message_start")) {
        const json_value *m = json_get(root, "message");
        us = m ? json_get(m, "usage") : NULL;
    } else if (type && (!strcmp(type, "message_delta") || !strcmp(type, "message"))) {
        us = json_get(root, "usage");
    }
    if (us && us->type == JSON_OBJECT) {
        long p, c, k;
        usage_of(us, &p, &c, &k);
        if (p >= 0) u->prompt_tokens = p;
        if (c >= 0) u->completion_tokens = c;
        if (k >= 0) u->cached_tokens = k;
        u->present = 1;
    }
    json_doc_free(doc);
}

const provider provider_anthropic = {
    .name = "anthropic", .dialect = DIALECT_ANTHROPIC, .prepare = prepare, .build = build,
    .build_chat = build_chat, .parse_response = parse_response,
    .stream_new = stream_new, .stream_feed = provider_sse_stream_feed, .stream_end = stream_end, .stream_free = provider_sse_stream_free,
    .error_message = error_message,
};
